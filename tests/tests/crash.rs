//! End-to-end: kill -9 at a chosen point of an operation (the debug build's
//! `WHARF_TEST_CRASH_AT`), restart, and check that the kernel and the API agree; and the
//! paths that must never let a removal reach through a mount or a symlink.

use serde_json::Value;
use std::path::Path;
use wharf_tests::{mounted_fstype, Host};

const CRASH_AT: &str = "WHARF_TEST_CRASH_AT";

/// Whether this build's wharfd has crash points (debug builds; the tests are built with
/// the same profile). A release build skips the tests that need them.
fn crash_points() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: release builds have no crash points");
    }
    cfg!(debug_assertions)
}

/// Restart wharfd set to abort at `point`, run the wharf command `args` (which must die
/// with it), then start it again normally.
fn crash_during(h: &mut Host, point: &str, args: &[&str]) {
    crash_during_after(h, point, &[], args)
}

/// [`crash_during`], running the wharf command `first` (which must succeed) on the daemon
/// that is to crash: for state that lives only in the running daemon.
fn crash_during_after(h: &mut Host, point: &str, first: &[&str], args: &[&str]) {
    h.stop_daemon();
    h.set_env(CRASH_AT, Some(point));
    let logged = h.log().len();
    h.start_daemon();
    if !first.is_empty() {
        h.wharf_ok(first);
    }
    let out = h.wharf(args);
    assert!(!out.status.success(), "{args:?} should have died at {point}:\n{}", h.log());
    h.kill_daemon();
    let log = h.log()[logged..].to_string();
    assert!(log.contains("aborting"), "wharfd never reached the crash point {point}:\n{log}");
    h.set_env(CRASH_AT, None);
    h.start_daemon();
}

fn mountpoint(h: &Host, name: &str) -> String {
    let v: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", name])).unwrap();
    v[0]["Mountpoint"].as_str().unwrap().to_string()
}

/// How many mounts sit exactly at `path` (the kernel's resolved path).
fn mounts_at(path: &Path) -> usize {
    let path = std::fs::canonicalize(path).unwrap().display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().filter(|l| l.split_whitespace().nth(4) == Some(path.as_str())).count()
}

#[test]
fn a_sandbox_create_killed_midway_leaves_the_name_free() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    let mut h = Host::start();
    for point in ["journaled", "after:create namespace", "after:create directory", "after:write file"] {
        crash_during(&mut h, point, &["sandbox", "create", "s1"]);
        assert!(!h.wharf_ok(&["sandbox", "ls"]).contains("s1"), "{point}");
        assert!(!h.netns_dir().join("s1").exists(), "{point}: the namespace is removed at start");
        assert!(!h.dir.join("etc-netns/s1").exists(), "{point}");
    }
    h.wharf_ok(&["sandbox", "create", "s1"]);
    assert!(h.in_sandbox("s1", &["ip", "link", "show", "lo"]).status.success());
}

#[test]
fn a_sandbox_rm_killed_midway_is_finished_at_start() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    let mut h = Host::start();
    for point in ["journaled", "after:remove directory", "after:remove namespace"] {
        h.wharf_ok(&["sandbox", "create", "s1"]);
        crash_during(&mut h, point, &["sandbox", "rm", "s1"]);
        assert!(!h.wharf_ok(&["sandbox", "ls"]).contains("s1"), "{point}");
        assert!(!h.netns_dir().join("s1").exists(), "{point}: {}", h.log());
        assert!(!h.dir.join("etc-netns/s1").exists(), "{point}");
    }
    h.wharf_ok(&["sandbox", "create", "s1"]);
}

#[test]
fn a_name_taken_by_a_foreign_namespace_is_a_conflict() {
    wharf_tests::require_root!();
    let h = Host::start();
    std::fs::create_dir_all(h.netns_dir()).unwrap();
    let theirs = h.netns_dir().join("theirs");
    std::fs::write(&theirs, "").unwrap();
    let (status, body) = h.api("POST", "/wharf/sandboxes", r#"{"Name":"theirs"}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(&theirs.display().to_string()), "{body}");
    assert!(theirs.exists(), "never deleted");
}

#[test]
fn a_volume_rm_killed_midway_is_finished_and_the_name_reusable() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    let mut h = Host::start();
    for point in ["journaled", "after:unmount", "after:remove directory"] {
        h.wharf_ok(&["volume", "create", "data", "-o", "type=tmpfs", "-o", "o=size=4m"]);
        let mp = mountpoint(&h, "data");
        std::fs::write(format!("{mp}/old"), "x").unwrap();
        crash_during(&mut h, point, &["volume", "rm", "data"]);
        let err = h.wharf_err(&["volume", "inspect", "data"]);
        assert!(err.contains("not found"), "{point}: not listed with its data gone: {err}");
        assert!(!Path::new(&mp).exists(), "{point}: the removal was finished");
        h.wharf_ok(&["volume", "create", "data"]);
        let mp = mountpoint(&h, "data");
        assert!(Path::new(&mp).is_dir(), "{point}: a working volume, not the broken one");
        assert!(!Path::new(&format!("{mp}/old")).exists(), "{point}");
        h.wharf_ok(&["volume", "rm", "data"]);
    }
}

#[test]
fn a_disconnect_killed_at_any_point_recovers_cleanly() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.91.0.0/24", "n"]);
    h.wharf_ok(&["sandbox", "create", "s1"]);
    // Before the first step, between retiring the sandbox end and the host end, and after
    // both are retired but maybe not yet deleted.
    for point in ["journaled", "retired-sandbox-end", "after:delete link"] {
        h.wharf_ok(&["network", "connect", "n", "s1"]);
        crash_during(&mut h, point, &["network", "disconnect", "n", "s1"]);
        let v: Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", "s1"])).unwrap();
        assert!(v[0]["Networks"].as_object().is_none_or(|n| n.is_empty()), "{point}: {v}");
        let links = String::from_utf8_lossy(&h.in_sandbox("s1", &["ip", "-o", "link"]).stdout).into_owned();
        assert_eq!(links.lines().count(), 1, "{point}: only lo is left: {links}");
        let host = h.in_host_ok(&["ip", "-o", "link"]);
        assert!(!host.contains(": veth") && !host.contains(": wgc"), "{point}: {host}");
        // A second restart finds nothing to repair or complain about.
        h.stop_daemon();
        let logged = h.log().len();
        h.start_daemon();
        let after = h.log()[logged..].to_string();
        assert!(!after.contains("WARN") && !after.contains("failed"), "{point}: {after}");
    }
    h.wharf_ok(&["network", "connect", "n", "s1"]);
    assert!(h.ping("s1", "10.91.0.1"));
}

#[test]
fn a_root_through_a_symlink_mounts_once_and_unmounts() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.stop_daemon();
    let real = h.dir.join("real-root");
    std::fs::rename(h.dir.join("root"), &real).unwrap();
    std::os::unix::fs::symlink(&real, h.dir.join("root")).unwrap();
    h.start_daemon();
    h.wharf_ok(&["volume", "create", "small", "-o", "size=16M"]);
    let mp = mountpoint(&h, "small");
    for _ in 0..3 {
        h.wharf_ok(&["volume", "mount", "small", "--id", "w"]);
        assert_eq!(mounts_at(Path::new(&mp)), 1, "one loop mount, never a stack");
        h.wharf_ok(&["volume", "unmount", "small", "--id", "w"]);
        assert_eq!(mounts_at(Path::new(&mp)), 0, "unmounted");
    }
    let image = real.join("volumes/small/disk.img").display().to_string();
    // The kernel detaches an autoclear loop device in the background after its last user.
    let detached = || wharf_tests::ok("losetup", &["-j", &image]).trim().is_empty();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !detached() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(detached(), "no loop device left: {}", wharf_tests::ok("losetup", &["-j", &image]));
    h.wharf_ok(&["volume", "rm", "small"]);
    assert!(!real.join("volumes/small").exists());

    // A bind source is unmounted for real, so removing the volume leaves its files alone.
    let src = h.dir.join("shared");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), "keep me").unwrap();
    let device = format!("device={}", src.display());
    h.wharf_ok(&["volume", "create", "shared", "-o", "type=none", "-o", "o=bind", "-o", &device]);
    let mp = h.wharf_ok(&["volume", "mount", "shared", "--id", "w"]).trim().to_string();
    assert_eq!(mounts_at(Path::new(&mp)), 1);
    h.wharf_ok(&["volume", "unmount", "shared", "--id", "w"]);
    assert_eq!(mounts_at(Path::new(&mp)), 0);
    h.wharf_ok(&["volume", "rm", "shared"]);
    assert_eq!(std::fs::read_to_string(src.join("file")).unwrap(), "keep me");
}

#[test]
fn volume_rm_never_deletes_through_a_live_mount() {
    wharf_tests::require_root!();
    let h = Host::start();
    let src = h.dir.join("precious");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), "keep me").unwrap();
    h.wharf_ok(&["volume", "create", "vv"]);
    let mp = mountpoint(&h, "vv");
    // Someone else bind-mounts their directory onto the volume's data directory.
    nix::mount::mount(Some(&src), mp.as_str(), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let err = h.wharf_err(&["volume", "rm", "vv"]);
    assert!(err.contains("mount point"), "{err}");
    assert_eq!(std::fs::read_to_string(src.join("file")).unwrap(), "keep me");
    assert!(h.wharf_ok(&["volume", "ls"]).contains("vv"), "a refused removal keeps the volume");
    nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::empty()).unwrap();
    h.wharf_ok(&["volume", "rm", "vv"]);
    assert_eq!(std::fs::read_to_string(src.join("file")).unwrap(), "keep me");
}

#[test]
fn a_volume_in_use_is_refused_even_with_force() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["volume", "create", "busy", "-o", "type=tmpfs", "-o", "o=size=4m"]);
    let mp = h.wharf_ok(&["volume", "mount", "busy", "--id", "c1"]).trim().to_string();
    let (status, body) = h.api("DELETE", "/volumes/busy?force=1", "");
    assert_eq!(status, 409, "{body}");
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"));
    h.wharf_ok(&["volume", "unmount", "busy", "--id", "c1"]);
    let (status, _) = h.api("DELETE", "/volumes/busy?force=1", "");
    assert_eq!(status, 204);
}

#[test]
fn a_failed_create_never_removes_a_directory_that_was_already_there() {
    wharf_tests::require_root!();
    let h = Host::start();
    let dir = h.dir.join("root/volumes/pre");
    std::fs::create_dir_all(dir.join("_data")).unwrap();
    std::fs::write(dir.join("_data/theirs"), "keep").unwrap();
    // The image cannot be made where a directory sits, so the create fails after its
    // directory steps and is rolled back.
    std::fs::create_dir_all(dir.join("disk.img")).unwrap();
    h.wharf_err(&["volume", "create", "pre", "-o", "size=16M"]);
    assert_eq!(std::fs::read_to_string(dir.join("_data/theirs")).unwrap(), "keep");
    assert!(h.wharf_err(&["volume", "inspect", "pre"]).contains("not found"));
}

/// A small deterministic generator (xorshift), seeded per run and printed on failure.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One random sandbox, volume or connection operation; its outcome does not matter.
fn random_operation(h: &Host, dice: &mut Dice) {
    let s = format!("s{}", dice.below(3));
    let v = format!("v{}", dice.below(3));
    let id = format!("c{}", dice.below(2));
    let volume_options: &[&str] = match v.as_str() {
        "v0" => &["-o", "type=tmpfs", "-o", "o=size=4m"],
        "v1" => &["-o", "size=8M"],
        _ => &[],
    };
    let args: Vec<&str> = match dice.below(12) {
        0 => vec!["sandbox", "create", &s],
        1 => vec!["sandbox", "rm", "--force", &s],
        2 => [&["volume", "create", &v][..], volume_options].concat(),
        3 => vec!["volume", "rm", &v],
        4 => vec!["volume", "mount", &v, "--id", &id],
        5 => vec!["volume", "unmount", &v, "--id", &id],
        6 => vec!["network", "connect", "n", &s],
        7 => vec!["network", "connect", "n", &s, "-p", "80", "-p", "5353:53/udp"],
        8 => vec!["network", "create", "--subnet", "10.93.0.0/24", "m"],
        9 => vec!["network", "rm", "m"],
        10 => vec!["network", "connect", "m", &s],
        _ => vec!["network", "disconnect", if dice.below(2) == 0 { "n" } else { "m" }, &s],
    };
    h.wharf(&args);
}

fn json(h: &Host, args: &[&str]) -> Value {
    serde_json::from_str(&h.wharf_ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `wharf WHAT ls --format json`: one object per line.
fn ls(h: &Host, what: &str) -> Vec<Value> {
    let out = h.wharf_ok(&[what, "ls", "--format", "json"]);
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} ls: {e}: {l}"))).collect()
}

/// Names of the entries of `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The kernel and the files against the API: every namespace, resolver directory, volume
/// directory, mount, loop device and interface belongs to something listed, and the other
/// way round.
fn census(h: &Host) {
    let sandboxes = ls(h, "sandbox");
    let mut names: Vec<String> = sandboxes.iter().map(|s| s["Name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(entries(&h.netns_dir()), names, "namespaces against sandboxes");
    assert_eq!(entries(&h.dir.join("etc-netns")), names, "resolver directories against sandboxes");
    let mut endpoints = 0;
    for name in &names {
        // The interfaces the API names against those in the namespace: a sandbox connected
        // to two networks and disconnected from the first keeps `eth1`, as in Docker.
        let networks = json(h, &["sandbox", "inspect", name])[0]["Networks"].clone();
        let mut named: Vec<String> = networks
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, ep)| ep["Interface"].as_str().unwrap_or_default().to_string())
            .collect();
        named.sort();
        endpoints += named.len();
        let links = String::from_utf8_lossy(&h.in_sandbox(name, &["ip", "-o", "link"]).stdout).into_owned();
        let mut present: Vec<String> = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n != "lo")
            .collect();
        present.sort();
        assert_eq!(present, named, "sandbox {name}: {links}");
    }
    let host_links = h.in_host_ok(&["ip", "-o", "link"]);
    assert_eq!(host_links.matches(": veth").count(), endpoints, "host ends against endpoints: {host_links}");
    assert!(!host_links.contains(": wgc"), "retired links left: {host_links}");

    // Bridges, their addresses and the firewall's elements against the networks and ports.
    let networks = ls(h, "network");
    let mut bridges = Vec::new();
    for n in networks.iter().filter(|n| n["Driver"] == "bridge") {
        let name = n["Name"].as_str().unwrap();
        let info = &json(h, &["network", "inspect", name])[0];
        let id = info["Id"].as_str().unwrap();
        let bridge = info["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .map_or_else(|| format!("br-{}", &id[..12]), str::to_string);
        let gateway = info["IPAM"]["Config"][0]["Gateway"].as_str().unwrap();
        let addrs = h.in_host_ok(&["ip", "-o", "-4", "addr", "show", "dev", &bridge]);
        assert_eq!(addrs.matches(" inet ").count(), 1, "network {name}: {addrs}");
        assert!(addrs.contains(&format!(" {gateway}/")), "network {name}: {addrs}");
        bridges.push(bridge);
    }
    let bridge_links = h.in_host_ok(&["ip", "-o", "link", "show", "type", "bridge"]);
    assert_eq!(bridge_links.lines().count(), bridges.len(), "bridges against networks: {bridge_links}");
    let set = h.in_host_ok(&["nft", "list", "set", "inet", "wharf", "bridges"]);
    for b in &bridges {
        assert!(set.contains(&format!("\"{b}\"")), "{b} in the firewall: {set}");
    }
    assert_eq!(set.matches("\"").count(), 2 * bridges.len(), "no firewall element of a removed network: {set}");
    let mut published = 0;
    for name in &names {
        let networks = json(h, &["sandbox", "inspect", name])[0]["Networks"].clone();
        for (_, ep) in networks.as_object().into_iter().flatten() {
            published += ep["Ports"].as_array().map_or(0, Vec::len);
        }
    }
    let dnat = h.in_host_ok(&["nft", "list", "map", "inet", "wharf", "dnat4"]);
    assert_eq!(dnat.matches(" : 10.").count(), published, "published ports against the firewall: {dnat}");
    let shown = h.wharf_ok(&["firewall", "show"]);
    assert!(!shown.contains("MISSING"), "{shown}");

    let volumes = ls(h, "volume");
    let mut listed: Vec<String> = volumes.iter().map(|v| v["Name"].as_str().unwrap().to_string()).collect();
    listed.sort();
    let volumes_dir = std::fs::canonicalize(h.dir.join("root/volumes")).unwrap();
    assert_eq!(entries(&volumes_dir), listed, "volume directories against volumes");
    let mut mounted = 0;
    for v in &listed {
        let info = &json(h, &["volume", "inspect", v])[0];
        let in_use = info["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0;
        let mp = info["Mountpoint"].as_str().unwrap();
        let backed = v != "v2";
        assert_eq!(mounts_at(Path::new(mp)), usize::from(in_use && backed), "volume {v} ({info})");
        mounted += usize::from(in_use && backed);
    }
    let prefix = volumes_dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let under = info.lines().filter(|l| l.split_whitespace().nth(4).is_some_and(|p| p.starts_with(&prefix))).count();
    assert_eq!(under, mounted, "mounts under the volume root");
    let image = volumes_dir.join("v1/disk.img").display().to_string();
    let loops = wharf_tests::run("losetup", &["-j", &image]);
    let attached = String::from_utf8_lossy(&loops.stdout).lines().count();
    let v1_mounted = listed.contains(&"v1".to_string()) && mounts_at(&volumes_dir.join("v1/_data")) == 1;
    assert_eq!(attached, usize::from(v1_mounted), "loop devices of v1");
}

#[test]
fn a_crash_loop_leaves_sandboxes_volumes_and_connections_consistent() {
    wharf_tests::require_root!();
    let kills: usize = std::env::var("WHARF_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(100);
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash loop seed {seed}");
    let mut dice = Dice(seed);
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.92.0.0/24", "n"]);
    let operations = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..kills {
        let delay = std::time::Duration::from_millis(dice.below(200));
        let mut worker = Dice(dice.below(u64::MAX) | 1);
        let started = std::time::Instant::now();
        let pid = nix::unistd::Pid::from_raw(h.daemon_pid().expect("running") as i32);
        let killed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (h, killed, operations) = (&h, &killed, &operations);
            let ops = scope.spawn(move || {
                while !killed.load(std::sync::atomic::Ordering::SeqCst) {
                    random_operation(h, &mut worker);
                    operations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            while started.elapsed() < delay && !ops.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            killed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        h.kill_daemon();
        h.start_daemon();
    }
    eprintln!("{} operations under {kills} kills", operations.into_inner());
    // Let the last start's background deletions settle before counting.
    std::thread::sleep(std::time::Duration::from_millis(300));
    census(&h);
    for s in ["s0", "s1", "s2"] {
        let _ = h.wharf(&["sandbox", "rm", "--force", s]);
    }
    for v in ["v0", "v1", "v2"] {
        for id in ["c0", "c1"] {
            let _ = h.wharf(&["volume", "unmount", v, "--id", id]);
        }
        let _ = h.wharf(&["volume", "rm", v]);
    }
    census(&h);
    let _ = h.wharf(&["network", "rm", "m"]);
    census(&h);
    h.wharf_ok(&["network", "create", "--subnet", "10.93.0.0/24", "m"]);
    for s in ["s0", "s1", "s2"] {
        h.wharf_ok(&["sandbox", "create", s]);
        h.wharf_ok(&["network", "connect", "n", s, "-p", "80"]);
        h.wharf_ok(&["network", "connect", "m", s]);
    }
    h.wharf_ok(&["volume", "create", "v0", "-o", "type=tmpfs", "-o", "o=size=4m"]);
    h.wharf_ok(&["volume", "create", "v1", "-o", "size=8M"]);
    h.wharf_ok(&["volume", "create", "v2"]);
    census(&h);
}

#[test]
fn a_sysctl_set_by_a_plan_killed_midway_comes_back_to_the_value_found() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    // ptp turns forwarding on with a restoring sysctl; no predefined bridge touches it.
    let plugins = wharf_tests::PluginDir::with(&["wharf_example_driver"]);
    let mut h = Host::start_with_config_and("[bridge]\nenabled = false\n", &["--plugin-dir", plugins.arg()]);
    let forwarding = |h: &Host| h.in_host_ok(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim().to_string();
    let create = ["network", "create", "-d", "ptp", "--subnet", "10.72.0.0/24", "p"];
    for point in ["journaled", "after:set sysctl net.ipv4.ip_forward=1"] {
        crash_during(&mut h, point, &create);
        assert!(h.wharf(&["network", "inspect", "p"]).status.code() != Some(0), "{point}: rolled back");
        assert_eq!(forwarding(&h), "0", "{point}: the value found is back");
    }
    h.wharf_ok(&create);
    assert_eq!(forwarding(&h), "1");
    crash_during(&mut h, "after:set sysctl net.ipv4.ip_forward=0", &["network", "rm", "p"]);
    assert_eq!(forwarding(&h), "0", "the removal is finished at start");
    assert!(h.wharf(&["network", "inspect", "p"]).status.code() != Some(0));
    h.wharf_ok(&create);
    assert_eq!(forwarding(&h), "1", "a new network takes hold of the key afresh");
    h.wharf_ok(&["network", "rm", "p"]);
    assert_eq!(forwarding(&h), "0");
}

#[test]
fn a_macvlan_disconnect_killed_after_the_live_retirement_leaves_a_clean_kernel() {
    wharf_tests::require_root!();
    if !crash_points() {
        return;
    }
    let mut h = Host::start();
    h.in_host_ok(&["ip", "link", "add", "mvpar", "type", "veth", "peer", "name", "mvparp"]);
    h.in_host_ok(&["ip", "link", "set", "mvpar", "up"]);
    h.in_host_ok(&["ip", "link", "set", "mvparp", "up"]);
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.92.0.0/24", "-o", "parent=mvpar", "mv"]);
    for sb in ["s1", "s2"] {
        h.wharf_ok(&["sandbox", "create", sb]);
    }
    h.wharf_ok(&["network", "connect", "mv", "s2", "--ip", "10.92.0.20"]);
    let connect = ["network", "connect", "mv", "s1", "--ip", "10.92.0.10", "--mac-address", "02:00:00:00:00:0a"];
    // Retired while up (renamed, addresses gone, a fresh MAC), not yet deleted; the daemon
    // retires only the macvlans it made itself.
    for point in ["retired-macvlan", "after:delete link"] {
        crash_during_after(&mut h, point, &connect, &["network", "disconnect", "mv", "s1"]);
        let links = String::from_utf8_lossy(&h.in_sandbox("s1", &["ip", "-o", "link"]).stdout).into_owned();
        assert_eq!(links.lines().count(), 1, "{point}: only lo is left: {links}\n{}", h.log());
        let v: Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", "s1"])).unwrap();
        assert!(v[0]["Networks"].as_object().is_none_or(|n| n.is_empty()), "{point}: {v}");
        // A second restart finds nothing to repair or complain about (a macvlan that is
        // there already is taken as it is, without looking for its parent in the sandbox).
        h.stop_daemon();
        let logged = h.log().len();
        h.start_daemon();
        let after = h.log()[logged..].to_string();
        assert!(!after.contains("WARN") && !after.contains("failed"), "{point}: {after}");
        // The same address and MAC come back at once.
        h.wharf_ok(&connect);
        assert!(h.ping("s1", "10.92.0.20"), "{point}\n{}", h.log());
        h.wharf_ok(&["network", "disconnect", "mv", "s1"]);
    }
}
