//! The executor: the only door from wharf to the kernel.
//!
//! [`Executor`] carries out one [`Op`] at a time and says whether it made the object or
//! found it there ([`Outcome`]). [`run_plan`] runs a plan's steps in order, reports each
//! step's outcome as it completes, and when one fails undoes the completed steps that
//! created something, in reverse order: what was found is left alone. The kernel
//! implementation lives in [`kernel`]; [`Recording`] keeps a log for tests without root.
//!
//! [`kernel`]: crate::kernel

use crate::firewall::{HostPort, PortState};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wharf_sdk::{FirewallFact, HostFacts, Netns, Op, Plan};

/// Why one operation failed; the message names the object and the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

impl ExecError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ExecError(message.into())
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step changed the kernel; its undo takes the change back.
    Created,
    /// What the step asks for was there already (a link, an address, a route, a
    /// directory): the step made nothing, so neither rollback nor removal undoes it.
    Found,
}

/// Carries out kernel operations and reports on the host.
pub trait Executor: Send + Sync {
    /// Carry out one operation. Operations are idempotent: making something that exists
    /// succeeds with [`Outcome::Found`], removing something absent succeeds. A link is
    /// found only if it is of the kind asked for; a link this executor makes carries its
    /// owner's mark (see [`Executor::sweep`]).
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError>;

    /// Read the host facts drivers get: links with their addresses, default-route
    /// interfaces and route destinations, in the daemon's own namespace.
    fn host_facts(&self) -> Result<HostFacts, ExecError>;

    /// Make a persistent named network namespace `dir/name` with loopback up; returns its path.
    fn create_netns(&self, dir: &Path, name: &str) -> Result<PathBuf, ExecError>;

    /// Remove a named namespace made by `create_netns`; absent is fine.
    fn remove_netns(&self, path: &Path) -> Result<(), ExecError>;

    /// Check that `path` names a network namespace.
    fn check_netns(&self, path: &Path) -> Result<(), ExecError>;

    /// Re-create wharf's firewall tables holding exactly `facts`.
    fn firewall_reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError>;

    /// Whether a host port can be published: nothing on the host uses it, and its address
    /// is the host's.
    fn host_port_state(&self, _hp: &HostPort) -> Result<PortState, ExecError> {
        Ok(PortState::Free)
    }

    /// For each fact, its firewall elements described for people and whether the kernel
    /// has each.
    fn firewall_inspect(&self, facts: &[FirewallFact]) -> Result<Vec<Vec<(String, bool)>>, ExecError> {
        Ok(facts.iter().map(|_| Vec::new()).collect())
    }

    /// wharf's firewall tables as the backend lists them.
    fn firewall_ruleset(&self) -> Result<String, ExecError> {
        Ok(String::new())
    }

    /// Delete the links in `netns` that carry this daemon's mark and whose names are not
    /// in `known`: what a crash left, retired links included. Links without the mark
    /// (another program's, another wharfd's, an adopted one) are never touched. Returns the
    /// names deleted.
    fn sweep(&self, _netns: &Netns, _known: &BTreeSet<&str>) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }

    /// Whether the object `op` makes is there and carries this daemon's mark: true only
    /// for a link this daemon created. Crash recovery asks it about a step whose outcome
    /// was never recorded.
    fn owns(&self, _op: &Op) -> bool {
        false
    }

    /// The names of the links in namespace `netns`, wharf's or not, so a new interface
    /// there gets a name that is free.
    fn link_names(&self, _netns: &Path) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }

    /// The sockets a sandbox's resolver answers on, bound at `at` inside namespace `netns`.
    fn dns_sockets(&self, netns: &Path, at: std::net::SocketAddr) -> Result<wharf_dns::Sockets, ExecError> {
        Err(ExecError::new(format!("netns {}: {at}: this executor opens no sockets", netns.display())))
    }

    /// What opens sockets inside namespace `netns` for the resolver to reach a sandbox's
    /// upstream servers from there.
    fn dns_opener(&self, netns: &Path) -> wharf_dns::Opener {
        let netns = netns.display().to_string();
        std::sync::Arc::new(move |_, _| Err(std::io::Error::other(format!("netns {netns}: no sockets here"))))
    }
}

/// A plan step that failed, after the steps before it were rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} failed: {cause}")]
pub struct PlanError {
    /// Description of the failed step.
    pub step: String,
    /// Why it failed.
    pub cause: String,
    /// Undo steps that also failed during rollback.
    pub rollback_failures: Vec<String>,
}

/// Run `plan` on `exec`, handing each completed step's index and outcome to `record`
/// before the next step starts. Returns the outcomes, one per step. On failure the
/// completed steps that created something are undone in reverse order.
pub fn run_plan(
    exec: &dyn Executor,
    plan: &Plan,
    record: &mut dyn FnMut(usize, Outcome),
) -> Result<Vec<Outcome>, PlanError> {
    let mut outcomes = Vec::with_capacity(plan.steps.len());
    for (i, step) in plan.steps.iter().enumerate() {
        match exec.apply(&step.op) {
            Ok(outcome) => {
                record(i, outcome);
                outcomes.push(outcome);
            }
            Err(e) => {
                let rollback_failures = undo_steps(exec, plan, &outcomes);
                return Err(PlanError { step: step.op.describe(), cause: e.0, rollback_failures });
            }
        }
    }
    Ok(outcomes)
}

/// Undo the steps of `plan` that ran, last first: `outcomes` holds one outcome for each
/// step from the first on, and only steps that [`Outcome::Created`] something are undone.
/// Returns the undo steps that failed, after trying every one of them.
pub fn undo_steps(exec: &dyn Executor, plan: &Plan, outcomes: &[Outcome]) -> Vec<String> {
    let mut failures = Vec::new();
    for (step, _) in plan.steps.iter().zip(outcomes).filter(|(_, o)| **o == Outcome::Created).rev() {
        if let Err(e) = exec.apply(&step.undo) {
            tracing::warn!(step = %step.undo.describe(), error = %e, "rollback step failed");
            failures.push(format!("{}: {}", step.undo.describe(), e));
        }
    }
    failures
}

/// The indices of the steps whose outcome was [`Outcome::Found`]: what an object keeps in
/// the store so that removing it later leaves what it adopted.
pub fn found_steps(outcomes: &[Outcome]) -> Vec<usize> {
    outcomes.iter().enumerate().filter(|(_, o)| **o == Outcome::Found).map(|(i, _)| i).collect()
}

/// `plan` without the steps that would take away what `made` found rather than created:
/// a removal plan a driver wrote for an object whose making plan was `made`, with the
/// steps at indices `found` of it having found their object there.
pub fn without_found(plan: Plan, made: &Plan, found: &[usize]) -> Plan {
    if found.is_empty() {
        return plan;
    }
    let adopted: Vec<&Op> = found.iter().filter_map(|&i| made.steps.get(i)).map(|s| &s.undo).collect();
    plan.steps.into_iter().filter(|s| !adopted.contains(&&s.op)).collect()
}

/// An executor that records operations instead of carrying them out. `fail_on` makes the
/// first operation whose description contains the text fail, to test rollback; `existing`
/// names links that make a `LinkAdd` report [`Outcome::Found`]; `marked` names links that
/// carry this daemon's mark.
#[derive(Default)]
pub struct Recording {
    log: Mutex<Vec<Op>>,
    fail_on: Mutex<Option<String>>,
    existing: Mutex<BTreeSet<String>>,
    marked: Mutex<BTreeSet<String>>,
    facts: HostFacts,
    reloads: Mutex<Vec<Vec<FirewallFact>>>,
    busy_ports: Mutex<Vec<HostPort>>,
}

impl Recording {
    /// A recorder that reports `facts` as the host's.
    pub fn with_facts(facts: HostFacts) -> Self {
        Recording { facts, ..Default::default() }
    }

    /// Fail operations whose description contains `text`.
    pub fn fail_on(&self, text: Option<&str>) {
        *self.fail_on.lock().unwrap() = text.map(str::to_string);
    }

    /// Report link `name` as there already, made by someone else.
    pub fn existing(&self, name: &str) {
        self.existing.lock().unwrap().insert(name.to_string());
    }

    /// Report link `name` as carrying this daemon's mark.
    pub fn marked(&self, name: &str) {
        self.marked.lock().unwrap().insert(name.to_string());
    }

    /// Every operation applied so far.
    pub fn log(&self) -> Vec<Op> {
        self.log.lock().unwrap().clone()
    }

    /// The fact sets of every firewall reload so far.
    pub fn reloads(&self) -> Vec<Vec<FirewallFact>> {
        self.reloads.lock().unwrap().clone()
    }

    /// Report `hp` as used by a host process from now on.
    pub fn occupy(&self, hp: HostPort) {
        self.busy_ports.lock().unwrap().push(hp);
    }

    /// Forget the log.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Executor for Recording {
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError> {
        if let Some(text) = self.fail_on.lock().unwrap().as_deref() {
            if op.describe().contains(text) {
                return Err(ExecError::new("injected failure"));
            }
        }
        self.log.lock().unwrap().push(op.clone());
        Ok(match op {
            Op::LinkAdd { link, .. } if self.existing.lock().unwrap().contains(&link.name) => Outcome::Found,
            _ => Outcome::Created,
        })
    }

    fn host_facts(&self) -> Result<HostFacts, ExecError> {
        Ok(self.facts.clone())
    }

    fn create_netns(&self, dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
        Ok(dir.join(name))
    }

    fn remove_netns(&self, _: &Path) -> Result<(), ExecError> {
        Ok(())
    }

    fn firewall_reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        self.reloads.lock().unwrap().push(facts.to_vec());
        Ok(())
    }

    fn host_port_state(&self, hp: &HostPort) -> Result<PortState, ExecError> {
        let busy = self.busy_ports.lock().unwrap().contains(hp);
        Ok(if busy { PortState::InUse } else { PortState::Free })
    }

    fn owns(&self, op: &Op) -> bool {
        matches!(op, Op::LinkAdd { link, .. } if self.marked.lock().unwrap().contains(&link.name))
    }

    fn check_netns(&self, path: &Path) -> Result<(), ExecError> {
        match path.to_str() {
            Some(p) if p.starts_with("/proc/") || p.starts_with("/run/netns/") => Ok(()),
            _ => Err(ExecError::new("not a namespace file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::{LinkKind, LinkSpec, Netns, Step};

    fn plan() -> Plan {
        let mut p = Plan::new();
        p.push(Step::link_add(Netns::Host, LinkSpec::new("br0", LinkKind::Bridge)));
        p.push(Step::addr_add(Netns::Host, "br0", "10.1.0.1/24".parse().unwrap()));
        p.push(Step::link_up(Netns::Host, "br0"));
        p
    }

    #[test]
    fn a_failed_step_rolls_back_the_completed_ones_in_reverse() {
        let rec = Recording::default();
        rec.fail_on(Some("set link br0 Up"));
        let err = run_plan(&rec, &plan(), &mut |_, _| {}).unwrap_err();
        assert_eq!(err.step, "set link br0 Up");
        let log = rec.log();
        assert_eq!(log.len(), 4);
        assert!(matches!(&log[2], Op::AddrDel { .. }));
        assert!(matches!(&log[3], Op::LinkDel { name, .. } if name == "br0"));
    }

    #[test]
    fn a_good_plan_runs_in_order() {
        let rec = Recording::default();
        let mut recorded = Vec::new();
        let outcomes = run_plan(&rec, &plan(), &mut |i, o| recorded.push((i, o))).unwrap();
        assert_eq!(rec.log(), plan().ops().cloned().collect::<Vec<_>>());
        assert_eq!(outcomes, [Outcome::Created; 3]);
        assert_eq!(recorded, [(0, Outcome::Created), (1, Outcome::Created), (2, Outcome::Created)]);
    }

    #[test]
    fn rollback_leaves_a_link_that_was_found() {
        let rec = Recording::default();
        rec.existing("br0");
        rec.fail_on(Some("set link br0 Up"));
        run_plan(&rec, &plan(), &mut |_, _| {}).unwrap_err();
        let log = rec.log();
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(matches!(&log[2], Op::AddrDel { .. }));
    }

    #[test]
    fn a_removal_plan_keeps_what_was_found() {
        let made = plan();
        let removal = without_found(made.inverse(), &made, &[0]);
        assert!(removal.ops().all(|op| !matches!(op, Op::LinkDel { .. })), "{removal:?}");
        assert_eq!(removal.steps.len(), 2);
        assert_eq!(without_found(made.inverse(), &made, &[]), made.inverse());
    }
}
