//! The recorder: a model of the kernel objects plans make and take away.

use crate::plan::{LinkChange, LinkKind, Netns, Op, Plan};
use std::collections::BTreeMap;

/// A model of the kernel objects plans make, and the log of every operation applied.
///
/// Each object is a line such as `link host br0` or `address /run/netns/s eth0
/// 10.0.0.2/24`; deleting a link takes its far end (a veth peer) and everything on it
/// (addresses, routes through it, neighbour and FDB entries) with it, removing a directory
/// takes what is below it, as the kernel and the filesystem do. Sysctls count as objects
/// only when their undo restores them ([`crate::Step::sysctl_restoring`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorder {
    objects: BTreeMap<String, Vec<String>>,
    log: Vec<Op>,
}

fn ns(netns: &Netns) -> &str {
    match netns {
        Netns::Host => "host",
        Netns::Path(p) => p,
    }
}

impl Recorder {
    /// An empty model.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Every operation applied so far, in order.
    pub fn log(&self) -> &[Op] {
        &self.log
    }

    /// The objects there now, one line each.
    pub fn objects(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    /// Whether an object line starting with `prefix` is there, e.g. `"link host br0"`.
    pub fn has(&self, prefix: &str) -> bool {
        self.objects.keys().any(|k| k.starts_with(prefix))
    }

    fn add(&mut self, key: String, owners: Vec<String>) {
        self.objects.insert(key, owners);
    }

    /// Remove `key` and everything that belongs to it.
    fn remove(&mut self, key: &str) {
        if self.objects.remove(key).is_none() {
            return;
        }
        let dependents: Vec<String> =
            self.objects.iter().filter(|(_, owners)| owners.iter().any(|o| o == key)).map(|(k, _)| k.clone()).collect();
        for d in dependents {
            self.remove(&d);
        }
    }

    fn remove_below(&mut self, kind: &str, path: &str) {
        let below: Vec<String> = self
            .objects
            .keys()
            .filter(|k| {
                k.strip_prefix(kind)
                    .is_some_and(|p| p == path || p.strip_prefix(path).is_some_and(|r| r.starts_with('/')))
            })
            .cloned()
            .collect();
        for k in below {
            self.remove(&k);
        }
    }

    /// Apply one operation to the model.
    pub fn apply(&mut self, op: &Op) {
        self.log.push(op.clone());
        let link = |netns: &Netns, name: &str| format!("link {} {name}", ns(netns));
        match op {
            Op::LinkAdd { netns, link: spec } => {
                let here = link(netns, &spec.name);
                match &spec.kind {
                    LinkKind::Veth { peer, peer_netns, .. } => {
                        let there = link(peer_netns, peer);
                        self.add(here.clone(), vec![there.clone()]);
                        self.add(there, vec![here]);
                    }
                    LinkKind::Macvlan { target_netns: Some(t), .. } => self.add(link(t, &spec.name), vec![]),
                    _ => self.add(here, vec![]),
                }
            }
            Op::LinkDel { netns, name } => self.remove(&link(netns, name)),
            Op::LinkSet { netns, name, change: LinkChange::Rename(to) } => {
                if let Some(owners) = self.objects.remove(&link(netns, name)) {
                    self.add(link(netns, to), owners);
                }
            }
            Op::AddrAdd { netns, link: l, address } => {
                self.add(format!("address {} {l} {address}", ns(netns)), vec![link(netns, l)])
            }
            Op::AddrDel { netns, link: l, address } => self.remove(&format!("address {} {l} {address}", ns(netns))),
            Op::RouteAdd { netns, route } | Op::RouteDel { netns, route } => {
                let key = format!("route {} {} table {}", ns(netns), route.destination, route.table.unwrap_or(254));
                if matches!(op, Op::RouteAdd { .. }) {
                    self.add(key, route.device.iter().map(|d| link(netns, d)).collect());
                } else {
                    self.remove(&key);
                }
            }
            Op::NeighAdd { netns, device, address, .. } => {
                self.add(format!("neighbour {} {device} {address}", ns(netns)), vec![link(netns, device)])
            }
            Op::NeighDel { netns, device, address } => {
                self.remove(&format!("neighbour {} {device} {address}", ns(netns)))
            }
            Op::NeighProxyAdd { netns, device, address } => {
                self.add(format!("proxy {} {device} {address}", ns(netns)), vec![link(netns, device)])
            }
            Op::NeighProxyDel { netns, device, address } => {
                self.remove(&format!("proxy {} {device} {address}", ns(netns)))
            }
            Op::FdbAdd { netns, device, mac, destination } | Op::FdbDel { netns, device, mac, destination } => {
                let dst = destination.map(|d| format!(" via {d}")).unwrap_or_default();
                let key = format!("fdb {} {device} {mac}{dst}", ns(netns));
                if matches!(op, Op::FdbAdd { .. }) {
                    self.add(key, vec![link(netns, device)]);
                } else {
                    self.remove(&key);
                }
            }
            Op::SysctlRestore { netns, key } => self.remove(&format!("sysctl {} {key}", ns(netns))),
            Op::FirewallAdd { fact } | Op::FirewallDel { fact } => {
                let key = format!("firewall {}", serde_json::to_string(fact).unwrap_or_default());
                if matches!(op, Op::FirewallAdd { .. }) {
                    self.add(key, vec![]);
                } else {
                    self.remove(&key);
                }
            }
            Op::Mount(m) => self.add(format!("mount {}", m.target), vec![]),
            Op::Unmount { target } => self.remove(&format!("mount {target}")),
            Op::DirCreate { path, .. } => self.add(format!("path {path}"), vec![]),
            Op::ImageCreate { path, .. } | Op::FileWrite { path, .. } => self.add(format!("path {path}"), vec![]),
            Op::DirRemove { path } | Op::FileRemove { path } => self.remove_below("path ", path),
            Op::NetnsCreate { path } => self.add(format!("namespace {path}"), vec![]),
            Op::NetnsRemove { path } => self.remove(&format!("namespace {path}")),
            Op::Noop | Op::LinkSet { .. } | Op::Sysctl { .. } => {}
        }
    }

    /// Apply every step of `plan`; a sysctl set with a restoring undo is an object until
    /// that undo runs.
    pub fn apply_plan(&mut self, plan: &Plan) {
        for step in &plan.steps {
            self.apply(step.op());
            if let (Op::Sysctl { netns, key, .. }, Op::SysctlRestore { .. }) = (step.op(), &*step.undo()) {
                self.add(format!("sysctl {} {key}", ns(netns)), vec![]);
            }
        }
    }

    /// Apply `plan`, then its undos in reverse, on a copy: what a failed plan's rollback
    /// leaves. `None` when that is exactly this model; else the objects that differ.
    pub fn rollback_leaves(&self, plan: &Plan) -> Option<Vec<String>> {
        let mut copy = self.clone();
        copy.apply_plan(plan);
        for step in plan.steps.iter().rev() {
            copy.apply(&step.undo());
            // Undoing a restore sets the key again, and core restores it at the next removal.
            if let (Op::SysctlRestore { netns, key }, Op::Sysctl { .. }) = (step.op(), &*step.undo()) {
                copy.add(format!("sysctl {} {key}", ns(netns)), vec![]);
            }
        }
        let before: Vec<String> = self.objects();
        let after: Vec<String> = copy.objects();
        let mut differ: Vec<String> = after.iter().filter(|o| !before.contains(o)).map(|o| format!("+ {o}")).collect();
        differ.extend(before.iter().filter(|o| !after.contains(o)).map(|o| format!("- {o}")));
        (!differ.is_empty()).then_some(differ)
    }
}
