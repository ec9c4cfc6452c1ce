//! The kernel executor: carries out plan operations on the real kernel through netlink
//! (rtnetlink), the firewall backend, mount(2) and the filesystem.
//!
//! Netlink work for a namespace goes through that namespace's socket (see [`sockets`]):
//! sockets are opened inside their namespace once and driven by one runtime thread; those
//! of sandboxes are closed when idle, so they never keep a removed namespace alive for long.
//!
//! Deleting a link costs the kernel RCU grace periods (~20 ms for a veth, more for a
//! bridge), which would make most of a disconnect or a network removal. Links this executor
//! made that nothing else can be waiting on are therefore retired instead: set down and
//! renamed to `wgc<n>` at once, and deleted afterwards in the background. That covers a host
//! veth with its peer in a sandbox (both ends are retired, each from its own namespace,
//! which frees the sandbox's `eth0` for the next connect), a host bridge, and a macvlan
//! inside a sandbox. A macvlan is retired without being set down, which alone would wait
//! for a grace period: its addresses are taken away and it is renamed and stops answering
//! ARP, all while up (see [`netlink::link_retire_live`]); a new macvlan with its MAC waits
//! for its deletion before it comes up. Retired links are deleted by a reaper: a runtime thread of its own with
//! its own sockets, so the grace periods it waits for never hold up other requests.
//! Removing a namespace, deleting any other link (a VXLAN device, say, whose VNI must be
//! free at once for the next one) and dropping the executor first wait until every retired
//! link is gone, so none outlives what it belonged to; a daemon that dies in between leaves
//! `wgc*` links that reconciliation removes by their mark, and that go with their sandbox.
//!
//! Every link this executor makes carries its owner's mark (see [`netlink::Mark`]): the
//! interface alias `wharf:<instance id>`, and a link group set in the creation message
//! itself, both kept through renames and moves between namespaces. A link that was there
//! before is found, never marked, and never retired.

mod dump;
pub mod facts;
pub mod files;
pub mod mount;
pub mod named;
pub mod netlink;
pub mod netns_socket;
pub mod sockets;

pub use files::max_file_size;
use named::{create_named, remove_named};

use crate::firewall::{Firewall, HostPort, PortState};
use sockets::{Ctx, Sockets};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wharf_engine::executor::{ExecError, Executor, LinkQuery, Outcome, PendingSockets};
use wharf_sdk::{FirewallFact, HostFacts, LinkChange, LinkKind, Netns, Op};

/// How long the socket of an idle sandbox namespace stays open.
const IDLE: Duration = Duration::from_secs(2);

/// `NSFS_MAGIC` from `<linux/magic.h>`.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// How long to wait for the reaper before going on regardless.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The kernel executor.
#[derive(Debug)]
pub struct Kernel {
    /// Sockets for the executor's own work.
    netlink: Sockets,
    /// Sockets for deleting retired links in the background.
    reaper: Sockets,
    /// Retired links the reaper has not deleted yet.
    retired: Arc<(Mutex<usize>, Condvar)>,
    /// Host links made by this executor that are retired when deleted: name -> the
    /// sandbox namespace file and peer name of a veth, `None` for a bridge.
    retirable: Mutex<HashMap<String, Option<(String, String)>>>,
    /// Macvlans made by this executor inside sandboxes: (namespace file, name).
    sandboxed: Mutex<HashSet<(String, String)>>,
    firewall: Arc<dyn Firewall>,
    /// What marks a link as made by this daemon.
    mark: netlink::Mark,
    /// The host namespace's links, addresses and routes, kept current.
    facts: facts::Mirror,
}

static RETIRED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh name for a retired link: `wgc`, then digits unique to this process.
fn grave_name() -> String {
    format!("wgc{}{}", std::process::id() % 1000, RETIRED.fetch_add(1, Ordering::Relaxed))
}

impl Kernel {
    /// An executor in the calling thread's network namespace, using `firewall`, for the
    /// wharfd whose instance id is `instance` (see [`netlink::Mark`]).
    pub fn new(firewall: Arc<dyn Firewall>, instance: &str) -> Result<Kernel, ExecError> {
        Ok(Kernel {
            netlink: Sockets::new("wharf-netlink", IDLE)?,
            reaper: Sockets::new("wharf-reaper", IDLE)?,
            retired: Arc::new((Mutex::new(0), Condvar::new())),
            retirable: Mutex::new(HashMap::new()),
            sandboxed: Mutex::new(HashSet::new()),
            firewall,
            mark: netlink::Mark::new(instance),
            facts: facts::Mirror::new()?,
        })
    }

    /// Delete host link `name`: a veth into a sandbox or a bridge is retired and left to the
    /// reaper; any other link is deleted now, once earlier retired links are gone.
    fn link_del_host(&self, name: &str) -> Result<(), ExecError> {
        let known = self.retirable.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(peer) = known {
            let grave = grave_name();
            let retired = || {
                if let Some((path, peer)) = &peer {
                    // A peer that is gone already (its namespace removed) leaves the host end.
                    self.retire(&Netns::Path(path.clone()), peer, &grave)?;
                    wharf_engine::crash::point("retired-sandbox-end");
                }
                self.retire(&Netns::Host, name, &grave)
            };
            match retired() {
                Ok(true) => return self.reap(&Netns::Host, grave),
                Ok(false) => {}
                Err(e) => tracing::debug!("deleting {name} at once: {e}"),
            }
        }
        self.drain();
        let n = name.to_string();
        let ctx = self.netlink.host();
        ctx.block_on(netlink::link_del(&ctx.handle, &n))
    }

    /// Delete link `name` inside sandbox `path`: a macvlan this executor made there is
    /// retired and left to the reaper.
    fn link_del_sandboxed(&self, path: &str, name: &str) -> Result<(), ExecError> {
        let netns = Netns::Path(path.to_string());
        let key = (path.to_string(), name.to_string());
        if self.sandboxed.lock().unwrap_or_else(|p| p.into_inner()).remove(&key) {
            let grave = grave_name();
            let (n, g) = (name.to_string(), grave.clone());
            let retired = self.on(&netns, move |ctx| ctx.block_on(netlink::link_retire_live(&ctx.handle, &n, &g)));
            match retired.and_then(|r| r) {
                Ok(true) => {
                    wharf_engine::crash::point("retired-macvlan");
                    return self.reap(&netns, grave);
                }
                Ok(false) => return Ok(()),
                Err(e) => tracing::debug!("deleting {name} in {path} at once: {e}"),
            }
        }
        let n = name.to_string();
        self.on(&netns, move |ctx| ctx.block_on(netlink::link_del(&ctx.handle, &n)))?
    }

    /// Set link `name` in `netns` down and rename it to `grave`. `Ok(false)`: it is gone.
    fn retire(&self, netns: &Netns, name: &str, grave: &str) -> Result<bool, ExecError> {
        let (n, g) = (name.to_string(), grave.to_string());
        self.on(netns, move |ctx| ctx.block_on(netlink::link_retire(&ctx.handle, &n, &g)))?
    }

    /// Count retired link `grave` in `netns` until the reaper has deleted it.
    fn reap(&self, netns: &Netns, grave: String) -> Result<(), ExecError> {
        let ctx = match netns {
            Netns::Host => self.reaper.host(),
            Netns::Path(p) => self.reaper.sandbox(p)?,
        };
        *self.retired.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        let retired = self.retired.clone();
        let handle = ctx.handle;
        self.reaper.spawn(async move {
            if let Err(e) = netlink::link_del(&handle, &grave).await {
                tracing::warn!("deleting retired link {grave}: {e}");
            }
            *retired.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            retired.1.notify_all();
        });
        Ok(())
    }

    /// Wait until every retired link is deleted.
    fn drain(&self) {
        let (count, done) = &*self.retired;
        let guard = count.lock().unwrap_or_else(|p| p.into_inner());
        let _ = done.wait_timeout_while(guard, DRAIN_LIMIT, |n| *n > 0);
    }

    /// Run `f` with the netlink socket of `netns`.
    fn on<T>(&self, netns: &Netns, f: impl FnOnce(&Ctx) -> T) -> Result<T, ExecError> {
        Ok(match netns {
            Netns::Host => f(&self.netlink.host()),
            Netns::Path(p) => f(&self.netlink.sandbox(p)?),
        })
    }

    /// Close the sockets of the namespace file `path`.
    fn forget_netns(&self, path: &str) {
        self.netlink.forget(path);
        self.reaper.forget(path);
    }

    fn netlink(&self, op: &Op) -> Result<Outcome, ExecError> {
        let netns = op.netns().cloned().unwrap_or_default();
        if let Op::LinkAdd { link, .. } = op {
            if let Some(target) = link_target(&link.kind) {
                return self.link_add_across(&netns, target, (**link).clone());
            }
            let (l, mark) = (link.clone(), self.mark.clone());
            let (outcome, ours) =
                self.on(&netns, move |ctx| ctx.block_on(netlink::link_add(&ctx.handle, &l, None, &mark, true)))??;
            if ours && netns == Netns::Host && link.kind == LinkKind::Bridge {
                self.retirable.lock().unwrap_or_else(|p| p.into_inner()).insert(link.name.clone(), None);
            }
            return Ok(outcome);
        }
        if let Op::LinkDel { name, .. } = op {
            return match &netns {
                Netns::Host => self.link_del_host(name),
                Netns::Path(p) => self.link_del_sandboxed(p, name),
            }
            .map(|()| Outcome::Created);
        }
        if let (Op::Sysctl { key, value, .. }, Netns::Path(p)) = (op, &netns) {
            let (key, value) = (key.clone(), value.clone());
            return sockets::in_netns(p, move || sysctl(&key, &value)).map(|()| Outcome::Created);
        }
        let op = op.clone();
        self.on(&netns, move |ctx| {
            let h = &ctx.handle;
            let created = |r: Result<(), ExecError>| r.map(|()| Outcome::Created);
            ctx.block_on(async {
                match &op {
                    Op::AddrAdd { link, address, .. } => netlink::addr_add(h, link, *address).await,
                    Op::RouteAdd { route, .. } => netlink::route_add(h, route).await,
                    Op::NeighProxyAdd { device, address, .. } => netlink::neigh_proxy_add(h, device, *address).await,
                    other => created(Self::netlink_change(h, other).await),
                }
            })
        })?
    }

    /// Carry out a netlink operation whose undo is safe whatever was there before.
    async fn netlink_change(h: &rtnetlink::Handle, op: &Op) -> Result<(), ExecError> {
        match op {
            Op::LinkSet { name, change, .. } => netlink::link_set(h, name, change).await,
            Op::AddrDel { link, address, .. } => netlink::addr_del(h, link, *address).await,
            Op::RouteDel { route, .. } => netlink::route_del(h, route).await,
            Op::NeighAdd { device, address, mac, .. } => netlink::neigh_add(h, device, *address, mac).await,
            Op::NeighDel { device, address, .. } => netlink::neigh_del(h, device, *address).await,
            Op::FdbAdd { device, mac, destination, .. } => netlink::fdb_add(h, device, mac, *destination).await,
            Op::FdbDel { device, mac, destination, .. } => netlink::fdb_del(h, device, mac, *destination).await,
            Op::NeighProxyDel { device, address, .. } => netlink::neigh_proxy_del(h, device, *address).await,
            Op::Sysctl { key, value, .. } => sysctl(key, value),
            other => Err(ExecError::new(format!("{} is not a netlink operation", other.describe()))),
        }
    }

    /// Create a veth whose peer, or a macvlan that, lives in another namespace: the link is
    /// made from `netns` with the target namespace's file, and the far end is then marked
    /// and brought up from inside its own namespace. A link that was there is found and
    /// left unmarked.
    fn link_add_across(&self, netns: &Netns, target: &Netns, link: wharf_sdk::LinkSpec) -> Result<Outcome, ExecError> {
        let target_path = match target {
            Netns::Path(p) => Some(p.clone()),
            Netns::Host => None,
        };
        let far_name = match &link.kind {
            LinkKind::Veth { peer, .. } => peer.clone(),
            _ => link.name.clone(),
        };
        let up = link.up;
        let moves = matches!(link.kind, LinkKind::Macvlan { .. });
        let (outcome, ours) = if moves && target_path.is_some() {
            // The link lives in the target namespace under its final name: look for it there.
            let (name, mark) = (link.name.clone(), self.mark.clone());
            let exists = self.on(target, move |ctx| ctx.block_on(netlink::index(&ctx.handle, &name)))??.is_some();
            if exists {
                // Present already: only bring its settings in line.
                let there = link.clone();
                self.on(target, move |ctx| ctx.block_on(netlink::link_adopt(&ctx.handle, &there, &mark)))??
            } else {
                self.link_add_from(netns, &target_path, &link, false)?
            }
        } else {
            // A veth's near end is marked where it is made; its far end below.
            self.link_add_from(netns, &target_path, &link, true)?
        };
        if outcome == Outcome::Created {
            let mark = || {
                let (far, alias) = (far_name.clone(), self.mark.alias.clone());
                self.on(target, move |ctx| ctx.block_on(netlink::link_mark(&ctx.handle, &far, &alias, up)))?
            };
            match mark() {
                // A retired macvlan with the same MAC on the same parent is still there.
                Err(e) if moves && e.errno() == Some(nix::errno::Errno::EADDRINUSE as i32) => {
                    self.drain();
                    mark()?
                }
                done => done?,
            }
        } else if up {
            let far = far_name.clone();
            self.on(target, move |ctx| ctx.block_on(netlink::link_set(&ctx.handle, &far, &LinkChange::Up)))??;
        }
        let ours = ours || outcome == Outcome::Created;
        match (&link.kind, netns, target) {
            (LinkKind::Veth { peer, .. }, Netns::Host, Netns::Path(p)) if ours => {
                let mut retirable = self.retirable.lock().unwrap_or_else(|p| p.into_inner());
                retirable.insert(link.name.clone(), Some((p.clone(), peer.clone())));
            }
            (LinkKind::Macvlan { .. }, _, Netns::Path(p)) if ours => {
                let mut sandboxed = self.sandboxed.lock().unwrap_or_else(|p| p.into_inner());
                sandboxed.insert((p.clone(), link.name.clone()));
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Make `link` from `netns`, its far end in the namespace file `target_path`; the near
    /// end gets its alias here when `alias_here`.
    fn link_add_from(
        &self,
        netns: &Netns,
        target_path: &Option<String>,
        link: &wharf_sdk::LinkSpec,
        alias_here: bool,
    ) -> Result<(Outcome, bool), ExecError> {
        let (creating, target_path, mark) = (link.clone(), target_path.clone(), self.mark.clone());
        self.on(netns, move |ctx| {
            let file = match &target_path {
                Some(p) => Some(std::fs::File::open(p).map_err(|e| ExecError::os(format!("netns {p}"), e))?),
                None => None,
            };
            ctx.block_on(netlink::link_add(&ctx.handle, &creating, file.as_ref(), &mark, alias_here))
        })?
    }

    /// Carry out one operation, saying whether it made its object or found it there.
    fn carry_out(&self, op: &Op) -> Result<Outcome, ExecError> {
        let created = |r: Result<(), ExecError>| r.map(|()| Outcome::Created);
        match op {
            Op::Noop => Ok(Outcome::Created),
            Op::FirewallAdd { fact } => created(self.firewall.add(fact)),
            Op::FirewallDel { fact } => created(self.firewall.remove(fact)),
            Op::Mount(m) => created(mount::mount_fs(&m.source, &m.target, &m.fstype, &m.options)),
            Op::Unmount { target } => created(mount::unmount_fs(target)),
            Op::DirCreate { path, mode, uid, gid } => {
                let existed = Path::new(path).exists();
                mount::dir_create(path, *mode, *uid, *gid)?;
                Ok(if existed { Outcome::Found } else { Outcome::Created })
            }
            Op::DirRemove { path } => created(mount::dir_remove(path)),
            Op::ImageCreate { path, size, fstype } => {
                let found = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == *size);
                mount::image_create(path, *size, fstype)?;
                Ok(if found { Outcome::Found } else { Outcome::Created })
            }
            Op::FileRemove { path } => created(mount::file_remove(path)),
            Op::FileWrite { path, contents } => created(mount::file_write(path, contents)),
            Op::NetnsCreate { path } => {
                let p = Path::new(path);
                let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
                    return Err(ExecError::new(format!("invalid namespace path {path:?}")));
                };
                created(self.create_netns(dir, name).map(|_| ()))
            }
            Op::NetnsRemove { path } => created(self.remove_netns(Path::new(path))),
            _ => self.netlink(op),
        }
    }
}

/// The namespace a link's far end is created in, when it is not the step's own.
fn link_target(kind: &LinkKind) -> Option<&Netns> {
    match kind {
        LinkKind::Veth { peer_netns, .. } => Some(peer_netns),
        LinkKind::Macvlan { target_netns: Some(t), .. } => Some(t),
        _ => None,
    }
}

/// The file of a sysctl under `/proc/sys` (see [`wharf_sdk::sysctl_path`]).
fn sysctl_path(key: &str) -> Result<String, ExecError> {
    match wharf_sdk::sysctl_path(key) {
        Some(path) => Ok(format!("/proc/sys/{path}")),
        None => Err(ExecError::new(format!("invalid sysctl key {key:?}"))),
    }
}

/// Write a sysctl from the current thread (so per-namespace keys hit its namespace).
fn sysctl(key: &str, value: &str) -> Result<(), ExecError> {
    std::fs::write(sysctl_path(key)?, value).map_err(|e| ExecError::os(format!("sysctl {key}={value}"), e))
}

/// Read a sysctl from the current thread; `None` when the key does not exist (yet: a
/// per-link key of a link still to be made).
fn sysctl_read(key: &str) -> Result<Option<String>, ExecError> {
    match std::fs::read_to_string(sysctl_path(key)?) {
        Ok(v) => Ok(Some(v.trim_end_matches('\n').to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ExecError::os(format!("read sysctl {key}"), e)),
    }
}

impl Executor for Kernel {
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError> {
        let done = self.carry_out(op);
        if done.is_ok() {
            wharf_engine::crash::after(op);
        }
        done
    }

    fn sysctl_read(&self, netns: &Netns, key: &str) -> Result<Option<String>, ExecError> {
        match netns {
            Netns::Host => sysctl_read(key),
            Netns::Path(p) => {
                let key = key.to_string();
                sockets::in_netns(p, move || sysctl_read(&key))
            }
        }
    }

    fn host_facts(&self, only: Option<&LinkQuery>) -> Result<HostFacts, ExecError> {
        self.facts.facts(&self.mark, only)
    }

    fn create_netns(&self, dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
        create_named(dir, name)?;
        let path = dir.join(name);
        let p = path.display().to_string();
        let lo = Op::LinkSet { netns: Netns::Path(p.clone()), name: "lo".into(), change: LinkChange::Up };
        if let Err(e) = self.netlink(&lo) {
            self.forget_netns(&p);
            let _ = remove_named(&path);
            return Err(e);
        }
        Ok(path)
    }

    fn remove_netns(&self, path: &Path) -> Result<(), ExecError> {
        self.drain();
        self.forget_netns(&path.display().to_string());
        remove_named(path)
    }

    fn check_netns(&self, path: &Path) -> Result<(), ExecError> {
        let st = nix::sys::statfs::statfs(path).map_err(|e| ExecError::new(format!("{}: {e}", path.display())))?;
        if st.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Err(ExecError::new(format!("{} is not a namespace file", path.display())));
        }
        // Wiring wharfd's own namespace as a sandbox would put sandbox interfaces, addresses
        // and routes on the host, and removing the sandbox would take them off it again.
        let same =
            |a: &nix::sys::stat::FileStat, b: &nix::sys::stat::FileStat| a.st_dev == b.st_dev && a.st_ino == b.st_ino;
        let given = nix::sys::stat::stat(path).map_err(|e| ExecError::new(format!("{}: {e}", path.display())))?;
        let own = nix::sys::stat::stat("/proc/self/ns/net").map_err(|e| ExecError::os("/proc/self/ns/net", e))?;
        if same(&given, &own) {
            return Err(ExecError::new(format!("{} is wharfd's own network namespace", path.display())));
        }
        Ok(())
    }

    fn firewall_reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        self.firewall.reload(facts)
    }

    fn host_port_state(&self, hp: &HostPort) -> Result<PortState, ExecError> {
        self.firewall.port_state(hp)
    }

    fn firewall_inspect(&self, facts: &[FirewallFact]) -> Result<Vec<Vec<(String, bool)>>, ExecError> {
        self.firewall.inspect(facts)
    }

    fn firewall_ruleset(&self) -> Result<String, ExecError> {
        self.firewall.ruleset()
    }

    fn dns_sockets(&self, netns: &Path, at: std::net::SocketAddr) -> Result<wharf_dns::Sockets, ExecError> {
        self.dns_sockets_begin(netns, at)()
    }

    /// The sockets are made by the namespace thread while the caller goes on; a namespace
    /// whose loopback is down gets it up and is entered again when the caller waits.
    fn dns_sockets_begin(&self, netns: &Path, at: std::net::SocketAddr) -> PendingSockets<'_> {
        let made = netns_socket::inside_later(netns, move || netns_socket::listening_here(at));
        let netns = netns.to_path_buf();
        Box::new(move || {
            let fail = |e| ExecError::os(format!("netns {}: {at}", netns.display()), e);
            match made().map_err(fail)? {
                Some(sockets) => Ok(sockets),
                None => self.dns_sockets_with_loopback_up(&netns, at),
            }
        })
    }

    fn dns_opener(&self, netns: &Path) -> wharf_dns::Opener {
        let netns = netns.to_path_buf();
        Arc::new(move |server, transport| netns_socket::towards(&netns, server, transport))
    }

    fn sweep(&self, netns: &Netns, known: &BTreeSet<&str>) -> Result<Vec<String>, ExecError> {
        let known: HashSet<String> = known.iter().map(|k| k.to_string()).collect();
        let mark = self.mark.clone();
        // The host's links are in the mirror, without a dump of a thousand ports.
        let host_marked = match netns {
            Netns::Host => Some(self.facts.marked(&mark)?),
            Netns::Path(_) => None,
        };
        self.on(netns, move |ctx| {
            ctx.block_on(async {
                let mut swept = Vec::new();
                let marked = match host_marked {
                    Some(names) => names,
                    None => netlink::marked_links(&ctx.handle, &mark).await?,
                };
                for name in marked {
                    if !known.contains(&name) {
                        netlink::link_del(&ctx.handle, &name).await?;
                        swept.push(name);
                    }
                }
                Ok(swept)
            })
        })?
    }

    fn owns(&self, op: &Op) -> bool {
        let Op::LinkAdd { netns, link } = op else { return false };
        let home = match &link.kind {
            LinkKind::Macvlan { target_netns: Some(t), .. } => t,
            _ => netns,
        };
        let (name, mark) = (link.name.clone(), self.mark.clone());
        matches!(self.on(home, move |ctx| ctx.block_on(netlink::link_marked(&ctx.handle, &name, &mark))), Ok(Ok(true)))
    }

    fn link_names(&self, netns: &Path) -> Result<Vec<String>, ExecError> {
        let netns = Netns::Path(netns.display().to_string());
        self.on(&netns, |ctx| ctx.block_on(netlink::link_names(&ctx.handle)))?
    }

    fn path_exists(&self, path: &Path) -> bool {
        files::exists(path)
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn disk_usage(&self, path: &Path) -> u64 {
        files::disk_usage(path)
    }

    fn locate(&self, path: &Path) -> Option<PathBuf> {
        files::located(path)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::NoFirewall;

    #[test]
    fn a_directory_that_existed_is_found_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let k = Kernel::new(Arc::new(NoFirewall), "test").unwrap();
        let path = dir.path().join("v").display().to_string();
        let create = Op::DirCreate { path: path.clone(), mode: None, uid: None, gid: None };
        assert_eq!(k.apply(&create).unwrap(), Outcome::Created);
        assert_eq!(k.apply(&create).unwrap(), Outcome::Found);
    }
}
