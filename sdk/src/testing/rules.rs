//! The lint: the rules core enforces on a plan, and what a plan needs to be undone.

use super::fixtures;
use crate::helpers::valid_ifname;
use crate::plan::{LinkChange, LinkKind, Netns, Op, Plan};
use std::fmt;
use std::path::{Component, Path};

/// One problem [`lint`] found in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The step, counted from 1.
    pub step: usize,
    /// The step's operation, described.
    pub op: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {} ({}): {}", self.step, self.op, self.problem)
    }
}

/// Where a plan may reach: the volume root for files and mounts, and for endpoint calls the
/// sandbox's namespace besides the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The volume root (`HostFacts::volumes_dir`).
    pub volumes_dir: String,
    /// The namespace file of the sandbox the plan is for, when it is for an endpoint.
    pub sandbox: Option<String>,
}

impl Reach {
    /// The reach of a network or volume call: host namespace, volume root [`fixtures::VOLUMES_DIR`].
    pub fn host() -> Self {
        Reach { volumes_dir: fixtures::VOLUMES_DIR.into(), sandbox: None }
    }

    /// The reach of an endpoint call for the sandbox whose namespace file is `netns`.
    pub fn sandbox(netns: &str) -> Self {
        Reach { sandbox: Some(netns.into()), ..Reach::host() }
    }
}

/// Whether `path` is a plain absolute path strictly below `root`.
fn lexically_below(path: &str, root: &str) -> bool {
    let p = Path::new(path);
    p.is_absolute()
        && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && p.starts_with(root)
        && p != Path::new(root)
}

fn valid_mac(mac: &str) -> bool {
    let octets: Vec<&str> = mac.split(':').collect();
    octets.len() == 6 && octets.iter().all(|o| o.len() == 2 && u8::from_str_radix(o, 16).is_ok())
}

/// Why `step`'s undo does not take back what its op does, if it does not.
fn undo_problem(op: &Op, undo: &Op) -> Option<String> {
    let makes = op.plain_undo().is_some() || matches!(op, Op::ImageCreate { .. });
    if *undo == Op::Noop {
        // A directory that stood there already is adopted with no undo; anything else made
        // would outlive a rollback.
        return (makes && !matches!(op, Op::DirCreate { .. } | Op::LinkSet { .. }))
            .then(|| "it makes something and has no undo".into());
    }
    let inverse = match (op, undo) {
        (Op::ImageCreate { path, .. }, Op::FileRemove { path: p }) => path == p,
        (
            Op::Sysctl { netns, key, .. },
            Op::Sysctl { netns: n, key: k, .. } | Op::SysctlRestore { netns: n, key: k },
        ) => netns == n && key == k,
        _ if op.plain_undo().is_some() => op.is_plain_undo(undo),
        // Removals and changes whose inverse is the driver's choice.
        _ => true,
    };
    (!inverse).then(|| format!("its undo ({}) is not its inverse", undo.describe()))
}

/// Why `op` breaks a rule, if it does.
fn op_problem(op: &Op, reach: &Reach) -> Option<String> {
    if let Some(breach) = op.rule_breach() {
        return Some(breach);
    }
    for netns in op.netns().into_iter().chain(match op {
        Op::LinkAdd { link, .. } => match &link.kind {
            LinkKind::Veth { peer_netns, .. } => Some(peer_netns),
            LinkKind::Macvlan { target_netns, .. } => target_netns.as_ref(),
            _ => None,
        },
        _ => None,
    }) {
        if let Netns::Path(p) = netns {
            if reach.sandbox.as_deref() != Some(p.as_str()) {
                return Some(format!("namespace {p:?} is not the one of the sandbox the plan is for"));
            }
        }
    }
    let path_problem = |path: &str| {
        (!lexically_below(path, &reach.volumes_dir)).then(|| format!("{path:?} is not below {}", reach.volumes_dir))
    };
    match op {
        Op::LinkAdd { link, .. } => {
            let peer = match &link.kind {
                LinkKind::Veth { peer, peer_mac, .. } => Some((peer, peer_mac)),
                _ => None,
            };
            let names = std::iter::once(&link.name).chain(peer.map(|(p, _)| p));
            let macs = link.mac.iter().chain(peer.and_then(|(_, m)| m.as_ref()));
            names
                .filter(|n| !valid_ifname(n))
                .map(|n| format!("{n:?} is not a valid interface name"))
                .chain(macs.filter(|m| !valid_mac(m)).map(|m| format!("{m:?} is not a MAC address")))
                .next()
        }
        Op::LinkSet { change: LinkChange::Rename(to), .. } if !valid_ifname(to) => {
            Some(format!("{to:?} is not a valid interface name"))
        }
        Op::LinkSet { change: LinkChange::Mac(m), .. } | Op::NeighAdd { mac: m, .. } | Op::FdbAdd { mac: m, .. }
            if !valid_mac(m) =>
        {
            Some(format!("{m:?} is not a MAC address"))
        }
        Op::Mount(m) => path_problem(&m.target),
        Op::Unmount { target: path }
        | Op::DirCreate { path, .. }
        | Op::DirRemove { path }
        | Op::ImageCreate { path, .. }
        | Op::FileRemove { path } => path_problem(path),
        Op::NetnsCreate { .. } | Op::NetnsRemove { .. } | Op::FileWrite { .. } => {
            Some("only core may manage namespaces and write files".into())
        }
        _ => None,
    }
}

/// Every problem of `plan` for a call with reach `reach`: what core's policy would refuse,
/// steps that make something without an undo or with an undo that is not their inverse,
/// and invalid interface names and MACs. Empty when the plan is fine.
pub fn lint(plan: &Plan, reach: &Reach) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let (op, undo) = (step.op(), step.undo());
        let problems = [op_problem(op, reach), op_problem(&undo, reach), undo_problem(op, &undo)];
        let mut seen: Vec<String> = Vec::new();
        for problem in problems.into_iter().flatten() {
            if !seen.contains(&problem) {
                seen.push(problem.clone());
                findings.push(Finding { step: i + 1, op: op.describe(), problem });
            }
        }
    }
    findings
}
