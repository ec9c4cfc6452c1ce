//! The executor: the only door from wharf to the kernel.
//!
//! [`Executor`] carries out one [`Op`] at a time. [`run_plan`] runs a plan's steps in order
//! and, when one fails, runs the undo of every completed step in reverse order. The kernel
//! implementation lives in [`kernel`]; [`Recording`] keeps a log for tests without root.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wharf_sdk::{FirewallFact, HostFacts, Op, Plan};

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

/// Carries out kernel operations and reports on the host.
pub trait Executor: Send + Sync {
    /// Carry out one operation. Operations are idempotent: making something that exists,
    /// or removing something absent, succeeds.
    fn apply(&self, op: &Op) -> Result<(), ExecError>;

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

    /// Delete links in namespace `netns` that were retired for deletion (see
    /// [`crate::kernel::retired_name`]) but not deleted, as a crash leaves them; returns
    /// their names.
    fn sweep_retired(&self, _netns: &Path) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }

    /// The names of the links in namespace `netns`, wharf's or not, so a new interface
    /// there gets a name that is free.
    fn link_names(&self, _netns: &Path) -> Result<Vec<String>, ExecError> {
        Ok(Vec::new())
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

/// Run `plan` on `exec`. On failure the completed steps are undone in reverse order.
pub fn run_plan(exec: &dyn Executor, plan: &Plan) -> Result<(), PlanError> {
    for (i, step) in plan.steps.iter().enumerate() {
        if let Err(e) = exec.apply(&step.op) {
            let rollback_failures = undo_steps(exec, plan, i);
            return Err(PlanError { step: step.op.describe(), cause: e.0, rollback_failures });
        }
    }
    Ok(())
}

/// Undo the first `done` steps of `plan`, last first. Returns the undo steps that failed,
/// after trying every one of them.
pub fn undo_steps(exec: &dyn Executor, plan: &Plan, done: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for step in plan.steps[..done].iter().rev() {
        if let Err(e) = exec.apply(&step.undo) {
            tracing::warn!(step = %step.undo.describe(), error = %e, "rollback step failed");
            failures.push(format!("{}: {}", step.undo.describe(), e));
        }
    }
    failures
}

/// An executor that records operations instead of carrying them out. `fail_on` makes the
/// first operation whose description contains the text fail, to test rollback.
#[derive(Default)]
pub struct Recording {
    log: Mutex<Vec<Op>>,
    fail_on: Mutex<Option<String>>,
    facts: HostFacts,
    reloads: Mutex<Vec<Vec<FirewallFact>>>,
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

    /// Every operation applied so far.
    pub fn log(&self) -> Vec<Op> {
        self.log.lock().unwrap().clone()
    }

    /// The fact sets of every firewall reload so far.
    pub fn reloads(&self) -> Vec<Vec<FirewallFact>> {
        self.reloads.lock().unwrap().clone()
    }

    /// Forget the log.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Executor for Recording {
    fn apply(&self, op: &Op) -> Result<(), ExecError> {
        if let Some(text) = self.fail_on.lock().unwrap().as_deref() {
            if op.describe().contains(text) {
                return Err(ExecError::new("injected failure"));
            }
        }
        self.log.lock().unwrap().push(op.clone());
        Ok(())
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
        let err = run_plan(&rec, &plan()).unwrap_err();
        assert_eq!(err.step, "set link br0 Up");
        let log = rec.log();
        assert_eq!(log.len(), 4);
        assert!(matches!(&log[2], Op::AddrDel { .. }));
        assert!(matches!(&log[3], Op::LinkDel { name, .. } if name == "br0"));
    }

    #[test]
    fn a_good_plan_runs_in_order() {
        let rec = Recording::default();
        run_plan(&rec, &plan()).unwrap();
        assert_eq!(rec.log(), plan().ops().cloned().collect::<Vec<_>>());
    }
}
