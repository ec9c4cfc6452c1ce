//! Crash recovery against the recording executor: an executor that "crashes" (panics) right
//! after a chosen step leaves the store as a kill -9 there would; a new engine over the same
//! store must then finish or undo the interrupted operation.

use super::tests::{connect, net, Fixture};
use super::*;
use crate::executor::{ExecError, LinkQuery, Outcome, Recording};
use crate::model::JournalEntry;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use wharf_sdk::{FirewallFact, HostFacts, Netns, Op, Step};

/// Delegates to a recorder and panics right after carrying out a step whose description
/// contains `after`.
struct CrashAfter {
    rec: Arc<Recording>,
    after: String,
}

impl Executor for CrashAfter {
    fn apply(&self, op: &Op) -> std::result::Result<Outcome, ExecError> {
        let outcome = self.rec.apply(op)?;
        if op.describe().contains(&self.after) {
            panic!("crash after {}", op.describe());
        }
        Ok(outcome)
    }
    fn host_facts(&self, only: Option<&LinkQuery>) -> std::result::Result<HostFacts, ExecError> {
        self.rec.host_facts(only)
    }
    fn create_netns(&self, dir: &Path, name: &str) -> std::result::Result<PathBuf, ExecError> {
        self.rec.create_netns(dir, name)
    }
    fn remove_netns(&self, path: &Path) -> std::result::Result<(), ExecError> {
        self.rec.remove_netns(path)
    }
    fn check_netns(&self, path: &Path) -> std::result::Result<(), ExecError> {
        self.rec.check_netns(path)
    }
    fn firewall_reload(&self, facts: &[FirewallFact]) -> std::result::Result<(), ExecError> {
        self.rec.firewall_reload(facts)
    }
    fn path_exists(&self, path: &Path) -> bool {
        self.rec.path_exists(path)
    }
    fn read_file(&self, path: &Path) -> Option<String> {
        self.rec.read_file(path)
    }
    fn disk_usage(&self, path: &Path) -> u64 {
        self.rec.disk_usage(path)
    }
    fn locate(&self, path: &Path) -> Option<PathBuf> {
        self.rec.locate(path)
    }
}

/// Run `op` on an engine whose executor crashes after the step described with `after`,
/// then start a fresh engine over the same store, as the restarted daemon would.
fn crash_then_restart(f: &Fixture, after: &str, op: impl FnOnce(&Engine)) -> Engine {
    {
        let e = f.engine_on(Arc::new(CrashAfter { rec: f.rec.clone(), after: after.into() }));
        let crashed = catch_unwind(AssertUnwindSafe(|| op(&e)));
        assert!(crashed.is_err(), "the operation never reached the step {after:?}");
    }
    f.rec.clear();
    let e = f.engine();
    assert!(e.store.list::<JournalEntry>(Table::Journal).unwrap().is_empty(), "the journal is settled");
    e
}

#[test]
fn a_volume_removal_cut_short_is_completed_at_start() {
    let f = Fixture::new();
    f.engine().volume_create(VolumeCreateRequest { name: "data".into(), ..Default::default() }).unwrap();
    let e = crash_then_restart(&f, "remove directory", |e| {
        let _ = e.volume_remove("data", false);
    });
    assert_eq!(e.volume("data").unwrap_err().status(), 404, "a volume whose data is gone is not listed");
    let path = f.settings().volumes_dir.join("data").display().to_string();
    assert!(f.rec.log().contains(&Op::DirRemove { path }), "recovery finished the removal");
    let again = e.volume_create(VolumeCreateRequest { name: "data".into(), ..Default::default() }).unwrap();
    assert!(f.rec.log().iter().any(|op| matches!(op, Op::DirCreate { .. })), "{again:?} is made afresh");
}

#[test]
fn a_disconnect_cut_short_is_completed_at_start() {
    let f = Fixture::new();
    {
        let e = f.engine();
        e.network_create(net("n")).unwrap();
        e.sandbox_create("s1", None, Default::default()).unwrap();
        e.connect(connect("n", "s1")).unwrap();
    }
    let e = crash_then_restart(&f, "remove address", |e| {
        let _ = e.disconnect("n", "s1", false);
    });
    let sandbox = e.sandbox("s1").unwrap();
    assert!(e.sandbox_endpoints(&sandbox.id).is_empty(), "no endpoint is left without its interface");
    assert!(f.rec.log().iter().any(|op| matches!(op, Op::AddrDel { .. })));
    let again = e.connect(connect("n", "s1")).unwrap();
    assert_eq!(again.join.interface.as_deref(), Some("eth0"));
}

#[test]
fn a_sandbox_create_cut_short_leaves_no_trace_and_the_name_free() {
    let f = Fixture::new();
    let e = crash_then_restart(&f, "create namespace", |e| {
        let _ = e.sandbox_create("s1", None, Default::default());
    });
    let path = f.settings().netns_dir.join("s1").display().to_string();
    assert!(f.rec.log().contains(&Op::NetnsRemove { path }), "the namespace is removed at start");
    assert!(e.sandboxes().is_empty());
    e.sandbox_create("s1", None, Default::default()).unwrap();
}

#[test]
fn a_sandbox_removal_cut_short_is_completed_at_start() {
    let f = Fixture::new();
    f.engine().sandbox_create("s1", None, Default::default()).unwrap();
    let e = crash_then_restart(&f, "remove directory", |e| {
        let _ = e.sandbox_remove("s1", false);
    });
    assert_eq!(e.sandbox("s1").unwrap_err().status(), 404);
    let path = f.settings().netns_dir.join("s1").display().to_string();
    assert!(f.rec.log().contains(&Op::NetnsRemove { path }), "recovery removed the namespace");
    e.sandbox_create("s1", None, Default::default()).unwrap();
}

#[test]
fn sandbox_files_go_through_the_journal() {
    let f = Fixture::new();
    let e = f.engine();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    let s = f.settings();
    let ns = s.netns_dir.join("s1").display().to_string();
    let conf = s.netns_etc_dir.join("s1/resolv.conf").display().to_string();
    let log = f.rec.log();
    assert!(log.contains(&Op::NetnsCreate { path: ns }));
    assert!(log.iter().any(|op| matches!(op, Op::FileWrite { path, .. } if *path == conf)));
}

#[test]
fn a_name_taken_by_a_foreign_namespace_is_a_conflict_and_left_alone() {
    let f = Fixture::new();
    let e = f.engine();
    let foreign = f.settings().netns_dir.join("theirs");
    f.rec.write_file(&foreign, "");
    let err = e.sandbox_create("theirs", None, Default::default()).unwrap_err();
    assert_eq!(err.status(), 409);
    assert!(err.to_string().contains(&foreign.display().to_string()), "{err}");
    assert!(f.rec.path_exists(&foreign));
    assert!(!f.rec.log().iter().any(|op| matches!(op, Op::NetnsRemove { .. } | Op::NetnsCreate { .. })));
}

#[test]
fn a_volume_in_use_is_refused_even_with_force() {
    let f = Fixture::new();
    let e = f.engine();
    e.volume_create(VolumeCreateRequest { name: "busy".into(), ..Default::default() }).unwrap();
    e.volume_mount("busy", "c1").unwrap();
    f.rec.clear();
    let err = e.volume_remove("busy", true).unwrap_err();
    assert_eq!(err.status(), 409);
    assert!(err.to_string().contains("in use by c1"), "{err}");
    assert!(f.rec.log().is_empty(), "nothing is unmounted or removed");
    assert!(e.volume("busy").is_ok());
}

#[test]
fn a_failed_removal_puts_the_object_back() {
    let f = Fixture::new();
    let e = f.engine();
    e.volume_create(VolumeCreateRequest { name: "keep".into(), ..Default::default() }).unwrap();
    f.rec.fail_on(Some("remove directory"));
    assert_eq!(e.volume_remove("keep", false).unwrap_err().status(), 500);
    f.rec.fail_on(None);
    drop(e);
    let e = f.engine();
    assert!(e.volume("keep").is_ok(), "the store still holds it");
}

#[test]
fn directories_that_existed_are_adopted_not_undone() {
    let f = Fixture::new();
    let existing = f.dir.path().join("volumes/old").display().to_string();
    f.rec.existing(&existing);
    let fresh = f.dir.path().join("volumes/new").display().to_string();
    let plan: Plan = [Step::dir_create(&existing, None, None, None), Step::dir_create(&fresh, None, None, None)]
        .into_iter()
        .collect();
    let plan = adopt_existing_directories(&*f.rec, plan);
    assert_eq!(*plan.steps[0].undo(), Op::Noop);
    assert_eq!(*plan.steps[1].undo(), Op::DirRemove { path: fresh });
}

#[test]
fn a_plan_breaking_the_policy_is_refused_before_the_journal() {
    let f = Fixture::new();
    let e = f.engine();
    let mut plan = Plan::new();
    plan.push(Step::sysctl(Netns::Host, "kernel.panic", "1", None));
    let err = e.apply(policy::Author::Driver("testnet"), "network x", &plan, |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("step 1 (set sysctl kernel.panic=1)"), "{err}");
    assert!(f.rec.log().iter().all(|op| !matches!(op, Op::Sysctl { .. })));
    assert!(e.store.list::<JournalEntry>(Table::Journal).unwrap().is_empty());
}

#[test]
fn addresses_in_use_stay_taken_across_a_restart_and_freed_ones_stay_free() {
    let f = Fixture::new();
    let (first, second) = {
        let e = f.engine();
        e.network_create(net("n")).unwrap();
        for s in ["s1", "s2", "s3"] {
            e.sandbox_create(s, None, Default::default()).unwrap();
        }
        let first = e.connect(connect("n", "s1")).unwrap().ipv4.unwrap();
        let second = e.connect(connect("n", "s2")).unwrap().ipv4.unwrap();
        e.disconnect("n", "s1", false).unwrap();
        (first, second)
    };
    let stored = stored_network(&f, "n");
    assert!(stored.ipv4[0].allocated.is_empty(), "the network's record lists no addresses");
    let e = f.engine();
    let pool = &e.network("n").unwrap().ipv4[0];
    assert_eq!(pool.allocated.iter().copied().collect::<Vec<_>>(), [second.addr()], "rebuilt from the endpoints");
    let third = e.connect(connect("n", "s3")).unwrap().ipv4.unwrap();
    assert!(third != second && third != first, "neither the address in use nor the one just freed: {third}");
    let again = e.connect(ConnectRequest { ipv4: Some(second.addr()), ..connect("n", "s1") });
    assert_eq!(again.unwrap_err().status(), 409, "a static address another endpoint holds is refused");
}

/// Network `name` as its record in the store has it.
fn stored_network(f: &Fixture, name: &str) -> Network {
    let store = Store::open(&f.dir.path().join("state.redb")).unwrap();
    let networks = store.list::<Network>(Table::Networks).unwrap();
    networks.into_iter().map(|(_, n)| n).find(|n| n.name == name).unwrap()
}
