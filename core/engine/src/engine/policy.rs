//! The plan policy: what any plan may ask of the kernel, checked by core before the plan is
//! journaled, whoever wrote it.
//!
//! Files and directories only under wharf's own directories (a driver's under the volume
//! root, core's under the per-sandbox `/etc/netns`, namespaces under the netns directory),
//! mounts only onto targets under the volume root and only of allowed filesystem types,
//! sysctls only under `net.`, routes in any table but the local and default ones, network operations only in the host namespace or in the
//! namespace of the sandbox the plan is for. Namespace and file writes are core's own
//! operations for sandboxes; a driver's plan may not hold them.

use super::Settings;
use crate::error::{Error, Result};
use crate::executor::Executor;
use std::path::{Component, Path};
use wharf_sdk::{Netns, Op, Plan};

/// Who wrote a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author<'a> {
    /// Core itself (sandboxes).
    Core,
    /// The named driver, for a network or a volume: host namespace only.
    Driver(&'a str),
    /// The named driver, for an endpoint of the sandbox whose namespace file is the second
    /// field: the host namespace and that one.
    Endpoint(&'a str, &'a str),
    /// Core, for the default routes of the sandbox whose namespace file is the field.
    Gateway(&'a str),
}

impl Author<'_> {
    fn describe(&self) -> String {
        match self {
            Author::Core | Author::Gateway(_) => "core".to_string(),
            Author::Driver(d) | Author::Endpoint(d, _) => format!("driver {d:?}"),
        }
    }
}

/// The directories a plan may touch.
struct Roots<'a> {
    volumes: &'a Path,
    netns: &'a Path,
    netns_etc: &'a Path,
}

impl Roots<'_> {
    fn of(settings: &Settings) -> Roots<'_> {
        Roots { volumes: &settings.volumes_dir, netns: &settings.netns_dir, netns_etc: &settings.netns_etc_dir }
    }
}

/// Whether `path` is a plain absolute path (no `..`) that leads strictly below `root`,
/// once the symlinks of its directories are resolved (see [`Executor::locate`]): a link
/// inside a root that points elsewhere does not take a step out of it.
fn below(exec: &dyn Executor, path: &str, root: &Path) -> bool {
    let p = Path::new(path);
    if !p.is_absolute() || !p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))) {
        return false;
    }
    let place = exec.locate(p).unwrap_or_else(|| p.to_path_buf());
    place.starts_with(root) && place != root
}

/// Why `op` breaks the policy, if it does.
fn violation(op: &Op, roots: &Roots<'_>, exec: &dyn Executor, author: Author<'_>) -> Option<String> {
    let under = |path: &str, allowed: &[&Path]| -> Option<String> {
        if allowed.iter().any(|root| below(exec, path, root)) {
            return None;
        }
        let names: Vec<String> = allowed.iter().map(|r| r.display().to_string()).collect();
        Some(format!("{path:?} is not below {}", names.join(" or ")))
    };
    // Drivers keep files in the volume root; core keeps a sandbox's resolver files.
    let files = match author {
        Author::Core => [roots.netns_etc],
        _ => [roots.volumes],
    };
    let core_only = || match author {
        Author::Core => None,
        _ => Some("only core may manage namespaces and write files".to_string()),
    };
    let sandbox = match author {
        Author::Endpoint(_, netns) | Author::Gateway(netns) => Some(netns),
        _ => None,
    };
    for ns in op.namespaces() {
        if let Netns::Path(p) = ns {
            if sandbox != Some(p.as_str()) {
                return Some(format!("namespace {p:?} is not the one of the sandbox the plan is for"));
            }
        }
    }
    if let Some(breach) = op.rule_breach() {
        return Some(breach);
    }
    match op {
        Op::Mount(m) => under(&m.target, &[roots.volumes]),
        Op::Unmount { target } => under(target, &[roots.volumes]),
        Op::DirCreate { path, .. }
        | Op::DirRemove { path }
        | Op::ImageCreate { path, .. }
        | Op::FileRemove { path } => under(path, &files),
        Op::NetnsCreate { path } | Op::NetnsRemove { path } => core_only().or_else(|| under(path, &[roots.netns])),
        Op::FileWrite { path, .. } => core_only().or_else(|| under(path, &[roots.netns_etc])),
        _ => None,
    }
}

/// Check every step of `plan`, its operation and its undo, before it is journaled. The
/// error (403: nothing was done) names the object, the author and the step.
/// Paths are judged where they lead, as `exec` finds them.
pub fn check(plan: &Plan, settings: &Settings, exec: &dyn Executor, author: Author<'_>, object: &str) -> Result<()> {
    let roots = Roots::of(settings);
    for (i, step) in plan.steps.iter().enumerate() {
        for op in [step.op(), &step.undo()] {
            if let Some(reason) = violation(op, &roots, exec, author) {
                return Err(Error::Forbidden(format!(
                    "{object}: the plan from {} is refused at step {} ({}): {reason}",
                    author.describe(),
                    i + 1,
                    op.describe()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::Fixture;
    use wharf_sdk::{LinkKind, LinkSpec, Step};

    fn refused(f: &Fixture, step: Step, author: Author<'_>) -> String {
        let plan: Plan = [step].into_iter().collect();
        let err = check(&plan, &f.settings(), &*f.rec, author, "volume v").unwrap_err();
        assert_eq!(err.status(), 403, "a refused plan is no failure of wharf's: {err}");
        err.to_string()
    }

    fn accepted(f: &Fixture, step: Step, author: Author<'_>) {
        let plan: Plan = [step].into_iter().collect();
        check(&plan, &f.settings(), &*f.rec, author, "volume v").unwrap();
    }

    #[test]
    fn paths_must_stay_below_wharfs_directories() {
        let f = Fixture::new();
        let vols = f.settings().volumes_dir.display().to_string();
        accepted(&f, Step::dir_create(format!("{vols}/v/_data"), None, None, None), Author::Driver("local"));
        for path in ["/etc/passwd", "/", &vols, &format!("{vols}/../x"), "relative"] {
            let err = refused(&f, Step::new(Op::DirRemove { path: path.into() }, Op::Noop), Author::Driver("local"));
            assert!(err.contains("step 1 (remove directory"), "{err}");
            assert!(err.contains("driver \"local\""), "{err}");
        }
        let err = refused(&f, Step::new(Op::FileRemove { path: "/var/x".into() }, Op::Noop), Author::Driver("x"));
        assert!(err.contains("is not below"), "{err}");
        let etc = f.settings().netns_etc_dir.join("sb").display().to_string();
        let err = refused(&f, Step::new(Op::DirRemove { path: etc }, Op::Noop), Author::Driver("x"));
        assert!(err.contains("is not below"), "a driver has no business in /etc/netns: {err}");
    }

    #[test]
    fn a_link_inside_a_root_does_not_lead_out_of_it() {
        let f = Fixture::new();
        let vols = f.settings().volumes_dir;
        f.rec.symlink(&vols.join("out"), Path::new("/etc"));
        let into = vols.join("out/x").display().to_string();
        let err = refused(&f, Step::new(Op::DirRemove { path: into }, Op::Noop), Author::Driver("local"));
        assert!(err.contains("is not below"), "{err}");
        let link = vols.join("out").display().to_string();
        accepted(&f, Step::new(Op::DirRemove { path: link }, Op::Noop), Author::Driver("local"));
    }

    #[test]
    fn undo_steps_are_checked_too() {
        let f = Fixture::new();
        let vols = f.settings().volumes_dir.display().to_string();
        let step = Step::new(
            Op::DirCreate { path: format!("{vols}/v"), mode: None, uid: None, gid: None },
            Op::DirRemove { path: "/home".into() },
        );
        assert!(refused(&f, step, Author::Driver("local")).contains("remove directory /home"));
    }

    #[test]
    fn mounts_only_onto_the_volume_root_with_allowed_types() {
        let f = Fixture::new();
        let vols = f.settings().volumes_dir.display().to_string();
        accepted(&f, Step::mount("tmpfs", format!("{vols}/v/_data"), "tmpfs", "size=1m"), Author::Driver("local"));
        accepted(&f, Step::mount("/srv/data", format!("{vols}/v/_data"), "none", "bind"), Author::Driver("bind"));
        let err = refused(&f, Step::mount("tmpfs", "/etc", "tmpfs", ""), Author::Driver("local"));
        assert!(err.contains("step 1 (mount tmpfs at /etc)"), "{err}");
        let err = refused(&f, Step::mount("/dev/sda", format!("{vols}/v/_data"), "proc", ""), Author::Driver("x"));
        assert!(err.contains("filesystem type \"proc\""), "{err}");
        let err = refused(&f, Step::new(Op::Unmount { target: "/".into() }, Op::Noop), Author::Driver("x"));
        assert!(err.contains("unmount /"), "{err}");
    }

    #[test]
    fn sysctls_only_under_net() {
        let f = Fixture::new();
        accepted(&f, Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", None), Author::Driver("bridge"));
        let err = refused(&f, Step::sysctl(Netns::Host, "kernel.panic", "1", None), Author::Driver("bridge"));
        assert!(err.contains("set sysctl kernel.panic=1") && err.contains("not under net."), "{err}");
        let err = refused(&f, Step::sysctl(Netns::Host, "net..x", "1", None), Author::Driver("bridge"));
        assert!(err.contains("malformed"), "{err}");
    }

    #[test]
    fn sysctl_restores_only_under_net_and_routes_not_in_the_local_table() {
        let f = Fixture::new();
        accepted(&f, Step::sysctl_restoring(Netns::Host, "net.ipv4.conf.all.proxy_arp", "1"), Author::Driver("x"));
        let step = Step::new(Op::Noop, Op::SysctlRestore { netns: Netns::Host, key: "vm.swappiness".into() });
        assert!(refused(&f, step, Author::Driver("x")).contains("restore sysctl vm.swappiness"));
        let route =
            |table| wharf_sdk::RouteSpec { table, ..wharf_sdk::RouteSpec::host("10.0.0.2".parse().unwrap(), "v") };
        accepted(&f, Step::route_add(Netns::Host, route(Some(100))), Author::Driver("x"));
        accepted(&f, Step::route_add(Netns::Host, route(None)), Author::Driver("x"));
        let err = refused(&f, Step::route_add(Netns::Host, route(Some(255))), Author::Driver("x"));
        assert!(err.contains("route table 255"), "{err}");
    }

    #[test]
    fn network_steps_stay_in_the_host_and_the_plans_sandbox() {
        let f = Fixture::new();
        let mine = "/run/netns/mine";
        let addr = |ns: &str| Step::addr_add(Netns::Path(ns.into()), "eth0", "10.0.0.2/24".parse().unwrap());
        accepted(&f, addr(mine), Author::Endpoint("bridge", mine));
        accepted(&f, Step::link_up(Netns::Host, "br0"), Author::Driver("bridge"));
        let err = refused(&f, addr("/proc/1/ns/net"), Author::Endpoint("bridge", mine));
        assert!(err.contains("\"/proc/1/ns/net\" is not the one of the sandbox"), "{err}");
        assert!(refused(&f, addr(mine), Author::Driver("bridge")).contains("not the one of the sandbox"));
        let veth =
            LinkKind::Veth { peer: "eth0".into(), peer_netns: Netns::Path("/proc/1/ns/net".into()), peer_mac: None };
        let err = refused(&f, Step::link_add(Netns::Host, LinkSpec::new("veth0", veth)), Author::Endpoint("x", mine));
        assert!(err.contains("create link veth0"), "{err}");
    }

    #[test]
    fn images_are_made_only_of_known_filesystems() {
        let f = Fixture::new();
        let image = f.settings().volumes_dir.join("v/disk.img").display().to_string();
        let make = |fstype: &str| {
            Step::new(
                Op::ImageCreate { path: image.clone(), size: 1 << 24, fstype: fstype.into() },
                Op::FileRemove { path: image.clone() },
            )
        };
        accepted(&f, make("ext4"), Author::Driver("local"));
        assert!(refused(&f, make("../../tmp/x"), Author::Driver("local")).contains("image filesystem type"));
    }

    #[test]
    fn namespaces_and_file_writes_are_cores_alone() {
        let f = Fixture::new();
        let s = f.settings();
        let ns = s.netns_dir.join("sb").display().to_string();
        let conf = s.netns_etc_dir.join("sb/resolv.conf").display().to_string();
        let create = Step::new(Op::NetnsCreate { path: ns.clone() }, Op::NetnsRemove { path: ns });
        let write =
            Step::new(Op::FileWrite { path: conf.clone(), contents: String::new() }, Op::FileRemove { path: conf });
        accepted(&f, create.clone(), Author::Core);
        accepted(&f, write.clone(), Author::Core);
        assert!(refused(&f, create, Author::Driver("evil")).contains("only core"));
        assert!(refused(&f, write, Author::Driver("evil")).contains("only core"));
        let elsewhere = Step::new(Op::NetnsCreate { path: "/run/netns/x".into() }, Op::Noop);
        assert!(refused(&f, elsewhere, Author::Core).contains("is not below"));
    }
}
