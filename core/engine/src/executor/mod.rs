//! The executor: the only door from wharf to the kernel.
//!
//! [`Executor`] carries out one [`Op`] at a time and says whether it made the object or
//! found it there ([`Outcome`]). [`run_plan`] runs a plan's steps in order, reports each
//! step's outcome as it completes, and when one fails undoes the completed steps that
//! created something, in reverse order: what was found is left alone. The kernel
//! implementation is the Linux crate's (`wharf_linux::kernel::Kernel`); [`Recording`] keeps a
//! log for tests without root.

mod ports;

use ipnet::IpNet;
pub use ports::{HostPort, PortState};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wharf_sdk::{FirewallFact, HostFacts, HostLink, Netns, Op, Plan, Step};

/// The host links a network call concerns (see [`wharf_sdk::FactsScope::Concerned`]): those
/// named, those holding one of the addresses, and the default-route interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkQuery {
    /// Link names.
    pub names: BTreeSet<String>,
    /// Addresses whose links are wanted.
    pub addresses: BTreeSet<IpAddr>,
}

impl LinkQuery {
    /// Whether `link` is selected by name or address (the default-route interfaces are
    /// selected apart, by [`LinkQuery::narrow`]).
    pub fn wants(&self, name: &str, addresses: &[IpNet]) -> bool {
        self.names.contains(name) || addresses.iter().any(|a| self.addresses.contains(&a.addr()))
    }

    /// Leave in `facts` only the links selected, the default-route interfaces among them.
    pub fn narrow(&self, facts: &mut HostFacts) {
        let defaults = [facts.default_route_v4.take(), facts.default_route_v6.take()];
        facts.links.retain(|l| self.wants(&l.name, &l.addresses) || defaults.iter().flatten().any(|d| *d == l.name));
        [facts.default_route_v4, facts.default_route_v6] = defaults;
    }
}

/// Why one operation failed: what was being done, naming the object; whose fault it is; and
/// the system error it came from when there is one (kept as the source, so its errno is not
/// lost).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{context}")]
pub struct ExecError {
    context: String,
    kind: ExecErrorKind,
    #[source]
    source: Option<Arc<std::io::Error>>,
}

/// Whose fault a failed operation is: the host's, or the request's that the plan came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecErrorKind {
    /// The host failed to do what it should be able to.
    #[default]
    Failed,
    /// What the operation asks for is taken by something that cannot be adopted (a link of
    /// another kind under the name): the request collides with the host.
    Taken,
    /// The kernel refuses what the request asked for (a mount of a source that is not
    /// there or not a block device, options the filesystem does not take).
    Refused,
}

impl ExecError {
    /// An error with a message and no system error behind it.
    pub fn new(message: impl Into<String>) -> Self {
        ExecError { context: message.into(), kind: ExecErrorKind::Failed, source: None }
    }

    /// The name or object the operation asks for is taken by something else.
    pub fn taken(message: impl Into<String>) -> Self {
        ExecError { kind: ExecErrorKind::Taken, ..ExecError::new(message) }
    }

    /// The kernel refuses what the request asked for.
    pub fn refused(message: impl Into<String>) -> Self {
        ExecError { kind: ExecErrorKind::Refused, ..ExecError::new(message) }
    }

    /// `context` failed with a system error (an errno, or an I/O error carrying one).
    pub fn os(context: impl Into<String>, error: impl Into<std::io::Error>) -> Self {
        ExecError { context: context.into(), kind: ExecErrorKind::Failed, source: Some(Arc::new(error.into())) }
    }

    /// The errno behind this error, if a system call failed.
    pub fn errno(&self) -> Option<i32> {
        self.source.as_ref().and_then(|e| e.raw_os_error())
    }

    /// What was being done, without the system error.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Whose fault it is.
    pub fn kind(&self) -> ExecErrorKind {
        self.kind
    }

    /// The same error, blamed on the request: the kernel refused what it asked for.
    pub fn as_refused(self) -> Self {
        ExecError { kind: ExecErrorKind::Refused, ..self }
    }
}

impl PartialEq for ExecError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string() && report(self) == report(other)
    }
}

impl Eq for ExecError {}

/// An error and every error it came from, joined by `": "`: the one line a user sees.
pub fn report(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

/// Sockets for a sandbox's resolver being opened: the call waits for them.
pub type PendingSockets<'a> = Box<dyn FnOnce() -> Result<wharf_dns::Sockets, ExecError> + Send + 'a>;

/// Carries out kernel operations and reports on the host.
pub trait Executor: Send + Sync {
    /// Carry out one operation. Operations are idempotent: making something that exists
    /// succeeds with [`Outcome::Found`], removing something absent succeeds. A link is
    /// found only if it is of the kind asked for; a link this executor makes carries its
    /// owner's mark (see [`Executor::sweep`]).
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError>;

    /// Read the host facts drivers get: links with their addresses, default-route
    /// interfaces and route destinations, in the daemon's own namespace. With `only`, the
    /// links are those it selects (see [`LinkQuery`]); the routes are all of them either way.
    fn host_facts(&self, only: Option<&LinkQuery>) -> Result<HostFacts, ExecError>;

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

    /// The value of sysctl `key` in `netns`; `None` when the key does not exist.
    fn sysctl_read(&self, _netns: &Netns, _key: &str) -> Result<Option<String>, ExecError> {
        Ok(None)
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

    /// [`Executor::dns_sockets`] begun now and finished by the call returned, so that the
    /// caller does other work meanwhile (a connect runs its plan). By default all is done
    /// at once.
    fn dns_sockets_begin(&self, netns: &Path, at: std::net::SocketAddr) -> PendingSockets<'_> {
        let sockets = self.dns_sockets(netns, at);
        Box::new(move || sockets)
    }

    /// What opens sockets inside namespace `netns` for the resolver to reach a sandbox's
    /// upstream servers from there.
    fn dns_opener(&self, netns: &Path) -> wharf_dns::Opener {
        let netns = netns.display().to_string();
        std::sync::Arc::new(move |_, _| Err(std::io::Error::other(format!("netns {netns}: no sockets here"))))
    }

    /// Whether anything (a file, a directory, a namespace file; a symlink is not followed)
    /// is at `path` on the host.
    fn path_exists(&self, path: &Path) -> bool;

    /// The text of the host file at `path`; `None` when it is absent or unreadable.
    fn read_file(&self, path: &Path) -> Option<String>;

    /// Bytes used by the files under `path` (0 when absent), not following symlinks.
    fn disk_usage(&self, path: &Path) -> u64;

    /// The place an operation on `path` acts on: the symlinks of its directories resolved,
    /// its last component as it is. `None` for a path without a parent or a last component,
    /// such as `/`. The plan policy judges paths by it.
    fn locate(&self, path: &Path) -> Option<PathBuf>;
}

impl std::fmt::Debug for dyn Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Executor")
    }
}

/// A plan step that failed, after the steps before it were rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} failed")]
pub struct PlanError {
    /// Description of the failed step.
    pub step: String,
    /// Why it failed.
    #[source]
    pub cause: ExecError,
    /// Undo steps that also failed during rollback, each with its cause.
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
        let started = std::time::Instant::now();
        let done = exec.apply(step.op());
        let micros = started.elapsed().as_micros() as u64;
        match &done {
            Ok(outcome) => {
                tracing::debug!(step = i + 1, op = %step.op().describe(), ?outcome, micros, "plan step done")
            }
            Err(e) => {
                tracing::debug!(step = i + 1, op = %step.op().describe(), error = %report(e), micros, "plan step failed")
            }
        }
        match done {
            Ok(outcome) => {
                record(i, outcome);
                outcomes.push(outcome);
            }
            Err(e) => {
                let rollback_failures = undo_steps(exec, plan, &outcomes);
                return Err(PlanError { step: step.op().describe(), cause: e, rollback_failures });
            }
        }
    }
    Ok(outcomes)
}

/// Undo the steps of `plan` that ran, last first: `outcomes` holds one outcome for each
/// step from the first on, and only steps that [`Outcome::Created`] something are undone.
/// Returns the undo steps that failed, after trying every one of them.
pub fn undo_steps(exec: &dyn Executor, plan: &Plan, outcomes: &[Outcome]) -> Vec<String> {
    crate::metrics::global().plan_rolled_back();
    let mut failures = Vec::new();
    for (step, _) in plan.steps.iter().zip(outcomes).filter(|(_, o)| **o == Outcome::Created).rev() {
        let undo = step.undo();
        if let Err(e) = exec.apply(&undo) {
            tracing::warn!(step = %undo.describe(), error = %e, "rollback step failed");
            failures.push(format!("{}: {}", undo.describe(), report(&e)));
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
    let adopted: Vec<_> = found.iter().filter_map(|&i| made.steps.get(i)).map(Step::undo).collect();
    plan.steps.into_iter().filter(|s| !adopted.iter().any(|a| **a == *s.op())).collect()
}

/// An executor that records operations instead of carrying them out. `fail_on` makes the
/// first operation whose description contains the text fail, to test rollback; `existing`
/// names links and directories that make a `LinkAdd` or `DirCreate` report
/// [`Outcome::Found`]; `taken` names links of another kind, which a `LinkAdd` fails on;
/// `marked` names links that
/// carry this daemon's mark. It keeps a pretend filesystem too: files written by
/// `FileWrite` or [`Recording::write_file`], symlinks made by [`Recording::symlink`] and the
/// usage [`Recording::set_usage`] gives a directory.
#[derive(Debug, Default)]
pub struct Recording {
    log: Mutex<Vec<Op>>,
    fail_on: Mutex<Vec<String>>,
    existing: Mutex<BTreeSet<String>>,
    taken: Mutex<BTreeSet<String>>,
    marked: Mutex<BTreeSet<String>>,
    facts: Mutex<HostFacts>,
    reloads: Mutex<Vec<Vec<FirewallFact>>>,
    busy_ports: Mutex<Vec<HostPort>>,
    sysctls: Mutex<std::collections::HashMap<(Netns, String), String>>,
    namespaces: Mutex<BTreeSet<PathBuf>>,
    files: Mutex<std::collections::BTreeMap<PathBuf, String>>,
    symlinks: Mutex<std::collections::BTreeMap<PathBuf, PathBuf>>,
    usage: Mutex<std::collections::BTreeMap<PathBuf, u64>>,
    vanished: Mutex<BTreeSet<PathBuf>>,
}

impl Recording {
    /// A recorder that reports `facts` as the host's.
    pub fn with_facts(facts: HostFacts) -> Self {
        Recording { facts: Mutex::new(facts), ..Default::default() }
    }

    /// Report `link` as a host link from now on, and the route of each of its addresses.
    pub fn add_link(&self, link: HostLink) {
        let mut facts = self.facts.lock().unwrap();
        facts.routes.extend(link.addresses.iter().map(IpNet::trunc));
        facts.links.push(link);
    }

    /// Fail operations whose description contains `text`.
    pub fn fail_on(&self, text: Option<&str>) {
        self.fail_on_any(text.as_slice());
    }

    /// Fail operations whose description contains any of `texts`.
    pub fn fail_on_any(&self, texts: &[&str]) {
        *self.fail_on.lock().unwrap() = texts.iter().map(|t| t.to_string()).collect();
    }

    /// Report link or directory `name` as there already, made by someone else.
    pub fn existing(&self, name: &str) {
        self.existing.lock().unwrap().insert(name.to_string());
    }

    /// Report link `name` as there already and of another kind than any `LinkAdd` asks for.
    pub fn taken(&self, name: &str) {
        self.taken.lock().unwrap().insert(name.to_string());
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

    /// The value of sysctl `key` in `netns` as the operations applied so far left it.
    pub fn sysctl(&self, netns: &Netns, key: &str) -> Option<String> {
        self.sysctls.lock().unwrap().get(&(netns.clone(), key.to_string())).cloned()
    }

    /// Give sysctl `key` in `netns` the value `value`, as the kernel had it before.
    pub fn set_sysctl(&self, netns: &Netns, key: &str, value: &str) {
        self.sysctls.lock().unwrap().insert((netns.clone(), key.to_string()), value.to_string());
    }

    /// Make the namespace at `path` vanish, as `ip netns del` behind wharf's back does (or
    /// a runtime's container ending does to its `/proc/PID/ns/net`): it is no namespace any
    /// more, and an operation in it fails as on a missing file.
    pub fn vanish(&self, path: &Path) {
        self.namespaces.lock().unwrap().remove(path);
        self.vanished.lock().unwrap().insert(path.to_path_buf());
    }

    /// Put a file at `path` holding `contents`, as if someone had written it.
    pub fn write_file(&self, path: &Path, contents: &str) {
        self.files.lock().unwrap().insert(path.to_path_buf(), contents.to_string());
    }

    /// Make `link` a symlink to the directory `target`.
    pub fn symlink(&self, link: &Path, target: &Path) {
        self.symlinks.lock().unwrap().insert(link.to_path_buf(), target.to_path_buf());
    }

    /// Report `bytes` as the space the files under `path` take.
    pub fn set_usage(&self, path: &Path, bytes: u64) {
        self.usage.lock().unwrap().insert(path.to_path_buf(), bytes);
    }

    /// Forget the log.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Executor for Recording {
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError> {
        let description = op.describe();
        if self.fail_on.lock().unwrap().iter().any(|t| description.contains(t.as_str())) {
            return Err(ExecError::os(format!("{description} (injected)"), std::io::Error::from_raw_os_error(5)));
        }
        let vanished = self.vanished.lock().unwrap();
        if let Some(gone) = op.namespaces().find(|n| matches!(n, Netns::Path(p) if vanished.contains(Path::new(p)))) {
            return Err(ExecError::os(format!("{description}: {gone:?}"), std::io::Error::from_raw_os_error(2)));
        }
        drop(vanished);
        if let Op::LinkAdd { link, .. } = op {
            if self.taken.lock().unwrap().contains(&link.name) {
                return Err(ExecError::taken(format!("link {:?} exists and is of another kind", link.name)));
            }
        }
        self.log.lock().unwrap().push(op.clone());
        match op {
            Op::Sysctl { netns, key, value } => self.set_sysctl(netns, key, value),
            Op::NetnsCreate { path } => {
                self.vanished.lock().unwrap().remove(Path::new(path));
                self.namespaces.lock().unwrap().insert(PathBuf::from(path));
            }
            Op::NetnsRemove { path } => drop(self.namespaces.lock().unwrap().remove(Path::new(path))),
            Op::FileWrite { path, contents } => self.write_file(Path::new(path), contents),
            Op::FileRemove { path } => drop(self.files.lock().unwrap().remove(Path::new(path))),
            _ => {}
        }
        Ok(match op {
            Op::LinkAdd { link, .. } if self.existing.lock().unwrap().contains(&link.name) => Outcome::Found,
            Op::DirCreate { path, .. } if self.existing.lock().unwrap().contains(path) => Outcome::Found,
            _ => Outcome::Created,
        })
    }

    fn host_facts(&self, only: Option<&LinkQuery>) -> Result<HostFacts, ExecError> {
        let mut facts = self.facts.lock().unwrap().clone();
        if let Some(q) = only {
            q.narrow(&mut facts);
        }
        Ok(facts)
    }

    fn create_netns(&self, dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
        self.vanished.lock().unwrap().remove(&dir.join(name));
        self.namespaces.lock().unwrap().insert(dir.join(name));
        Ok(dir.join(name))
    }

    fn remove_netns(&self, path: &Path) -> Result<(), ExecError> {
        self.namespaces.lock().unwrap().remove(path);
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

    fn sysctl_read(&self, netns: &Netns, key: &str) -> Result<Option<String>, ExecError> {
        Ok(self.sysctl(netns, key))
    }

    fn owns(&self, op: &Op) -> bool {
        matches!(op, Op::LinkAdd { link, .. } if self.marked.lock().unwrap().contains(&link.name))
    }

    fn check_netns(&self, path: &Path) -> Result<(), ExecError> {
        if self.vanished.lock().unwrap().contains(path) {
            return Err(ExecError::os(path.display().to_string(), std::io::Error::from_raw_os_error(2)));
        }
        if self.namespaces.lock().unwrap().contains(path) {
            return Ok(());
        }
        match path.to_str() {
            Some(p) if p.starts_with("/proc/") || p.starts_with("/run/netns/") => Ok(()),
            _ => Err(ExecError::new("not a namespace file")),
        }
    }

    fn path_exists(&self, path: &Path) -> bool {
        path.to_str().is_some_and(|p| self.existing.lock().unwrap().contains(p))
            || self.namespaces.lock().unwrap().contains(path)
            || self.files.lock().unwrap().contains_key(path)
            || self.symlinks.lock().unwrap().contains_key(path)
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        self.files.lock().unwrap().get(path).cloned()
    }

    fn disk_usage(&self, path: &Path) -> u64 {
        self.usage.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn locate(&self, path: &Path) -> Option<PathBuf> {
        let name = path.file_name()?;
        let links = self.symlinks.lock().unwrap();
        let mut place = PathBuf::new();
        for part in path.parent()?.components() {
            place.push(part);
            if let Some(target) = links.get(&place) {
                place = target.clone();
            }
        }
        place.push(name);
        Some(place)
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
    fn a_failed_rollback_is_in_the_error_a_user_sees_and_the_errno_is_kept() {
        let rec = Recording::default();
        let del_addr = plan().steps[1].undo().describe();
        rec.fail_on_any(&["set link br0 Up", &del_addr]);
        let err = run_plan(&rec, &plan(), &mut |_, _| {}).unwrap_err();
        assert_eq!(err.cause.errno(), Some(5), "the errno stays with the error");
        assert_eq!(err.rollback_failures.len(), 1, "{err:?}");
        assert!(matches!(rec.log().last(), Some(Op::LinkDel { .. })), "rollback went on past the failure");
        let err = crate::error::Error::Plan { object: "network n".into(), error: err };
        let message = err.message();
        assert!(message.starts_with("network n: set link br0 Up failed: set link br0 Up (injected): "), "{message}");
        assert!(message.contains("Input/output error"), "{message}");
        assert!(message.contains(&format!("; rollback also failed: {del_addr}")), "{message}");
        assert_eq!(err.status(), 500);
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
