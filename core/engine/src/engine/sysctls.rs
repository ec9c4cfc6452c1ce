//! Sysctls set with [`Step::sysctl_restoring`](wharf_sdk::Step::sysctl_restoring): core keeps
//! the value each key had before, and writes it back when the last object whose plan set the
//! key is undone or removed.
//!
//! The value found is read and stored in the transaction that journals the plan, before any
//! step runs, so a crash at any later point leaves it in the store for the undo that recovery
//! replays. A restore writes the kernel first and the store after, so a crash in between
//! replays a write that changes nothing; a record stays after its last holder is gone (see
//! [`Restoring`]), one per key at most. Only the engine's plan runner touches this table.

use crate::error::{Error, Result};
use crate::executor::{ExecError, Executor, LinkQuery, Outcome};
use crate::store::{Store, Table, Txn};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wharf_sdk::{FirewallFact, HostFacts, Netns, Op, Plan};

/// What core remembers of one sysctl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    /// The value before the first plan set it; `None` when the key did not exist then (a
    /// per-link key of a link the plan itself makes, which goes with its link).
    original: Option<String>,
    /// The objects whose plans set the key, in the order they did.
    holders: Vec<String>,
}

fn record_key(netns: &Netns, key: &str) -> String {
    match netns {
        Netns::Host => format!("host {key}"),
        Netns::Path(p) => format!("{p} {key}"),
    }
}

/// In the transaction that journals `plan` for `object`: for every step that sets a sysctl
/// and restores it on undo, remember the value the key has now (unless an earlier object
/// holds it already, whose value is the one to go back to) and that `object` holds it.
pub(super) fn remember(t: &mut Txn<'_>, exec: &dyn Executor, plan: &Plan, object: &str) -> Result<()> {
    for step in &plan.steps {
        let undo = step.undo();
        let (Op::Sysctl { netns, key, .. }, Op::SysctlRestore { netns: n, key: k }) = (step.op(), &*undo) else {
            continue;
        };
        if netns != n || key != k {
            continue;
        }
        let rk = record_key(netns, key);
        let mut saved = match t.get::<Saved>(Table::Sysctls, &rk)? {
            Some(saved) if !saved.holders.is_empty() => saved,
            _ => {
                let original = exec
                    .sysctl_read(netns, key)
                    .map_err(|e| Error::Internal(format!("{object}: {}", crate::executor::report(&e))))?;
                Saved { original, holders: vec![] }
            }
        };
        if !saved.holders.iter().any(|h| h == object) {
            saved.holders.push(object.to_string());
        }
        t.put(Table::Sysctls, &rk, &saved)?;
    }
    Ok(())
}

/// The keys of the records of namespace file `netns`, to drop with its sandbox: the
/// namespace goes with every sysctl in it, so nothing is left to restore.
pub(super) fn records_of(store: &Store, netns: &str) -> Result<Vec<String>> {
    let prefix = record_key(&Netns::Path(netns.to_string()), "");
    store.keys_with_prefix(Table::Sysctls, &prefix)
}

/// An executor that carries out [`Op::SysctlRestore`] for `object` from what [`remember`]
/// kept, and hands every other operation to the executor it wraps.
pub(super) struct Restoring<'a> {
    pub(super) exec: &'a dyn Executor,
    pub(super) store: &'a Store,
    pub(super) object: &'a str,
}

impl std::fmt::Debug for Restoring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restoring").field("object", &self.object).finish()
    }
}

impl Restoring<'_> {
    /// `object` lets go of `key`; once no object holds it, the value found is written
    /// back. The record stays, holders or not: a removal rolled back after its restore ran
    /// sets the key again without taking hold of it, and its next removal restores once more.
    /// The next object to set the key reads the value afresh.
    fn restore(&self, netns: &Netns, key: &str) -> std::result::Result<Outcome, ExecError> {
        let rk = record_key(netns, key);
        let store_err = |e: Error| ExecError::new(format!("restore sysctl {key}: {}", e.message()));
        let Some(mut saved) = self.store.get::<Saved>(Table::Sysctls, &rk).map_err(store_err)? else {
            return Ok(Outcome::Created);
        };
        let held = saved.holders.len();
        saved.holders.retain(|h| h != self.object);
        if saved.holders.is_empty() {
            if let Some(value) = &saved.original {
                let write = Op::Sysctl { netns: netns.clone(), key: key.to_string(), value: value.clone() };
                self.exec.apply(&write)?;
            }
        }
        if saved.holders.len() != held {
            self.store.write(|t| t.put(Table::Sysctls, &rk, &saved)).map_err(store_err)?;
        }
        Ok(Outcome::Created)
    }
}

impl Executor for Restoring<'_> {
    fn apply(&self, op: &Op) -> std::result::Result<Outcome, ExecError> {
        match op {
            Op::SysctlRestore { netns, key } => self.restore(netns, key),
            other => self.exec.apply(other),
        }
    }

    fn host_facts(&self, only: Option<&LinkQuery>) -> std::result::Result<HostFacts, ExecError> {
        self.exec.host_facts(only)
    }

    fn create_netns(&self, dir: &Path, name: &str) -> std::result::Result<PathBuf, ExecError> {
        self.exec.create_netns(dir, name)
    }

    fn remove_netns(&self, path: &Path) -> std::result::Result<(), ExecError> {
        self.exec.remove_netns(path)
    }

    fn check_netns(&self, path: &Path) -> std::result::Result<(), ExecError> {
        self.exec.check_netns(path)
    }

    fn firewall_reload(&self, facts: &[FirewallFact]) -> std::result::Result<(), ExecError> {
        self.exec.firewall_reload(facts)
    }

    fn sysctl_read(&self, netns: &Netns, key: &str) -> std::result::Result<Option<String>, ExecError> {
        self.exec.sysctl_read(netns, key)
    }

    fn path_exists(&self, path: &Path) -> bool {
        self.exec.path_exists(path)
    }

    fn read_file(&self, path: &Path) -> Option<String> {
        self.exec.read_file(path)
    }

    fn disk_usage(&self, path: &Path) -> u64 {
        self.exec.disk_usage(path)
    }

    fn locate(&self, path: &Path) -> Option<PathBuf> {
        self.exec.locate(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{run_plan, undo_steps, Recording};
    use wharf_sdk::Step;

    const KEY: &str = "net.ipv4.conf.all.proxy_arp";

    fn plan() -> Plan {
        [Step::sysctl_restoring(Netns::Host, KEY, "1")].into_iter().collect()
    }

    /// Journal `plan` for `object` as the engine does and run it.
    fn set(store: &Store, rec: &Recording, object: &str) {
        store.write(|t| remember(t, rec, &plan(), object)).unwrap();
        run_plan(&Restoring { exec: rec, store, object }, &plan(), &mut |_, _| ()).unwrap();
    }

    fn undo(store: &Store, rec: &Recording, object: &str) {
        let failures = undo_steps(&Restoring { exec: rec, store, object }, &plan(), &[Outcome::Created]);
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn the_value_found_comes_back_after_the_last_holder_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let rec = Recording::default();
        rec.set_sysctl(&Netns::Host, KEY, "0");
        set(&store, &rec, "network a");
        set(&store, &rec, "network b");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("1"));
        undo(&store, &rec, "network a");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("1"), "network b still needs it");
        undo(&store, &rec, "network b");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("0"));
        // A removal rolled back after its restore ran sets the key again; the next removal
        // restores once more.
        rec.apply(&Op::Sysctl { netns: Netns::Host, key: KEY.into(), value: "1".into() }).unwrap();
        undo(&store, &rec, "network b");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("0"));
        // A new holder reads the value afresh.
        rec.set_sysctl(&Netns::Host, KEY, "2");
        set(&store, &rec, "network c");
        undo(&store, &rec, "network c");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("2"));
    }

    #[test]
    fn the_value_found_survives_a_restart_before_the_undo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let rec = Recording::default();
        rec.set_sysctl(&Netns::Host, KEY, "0");
        {
            let store = Store::open(&path).unwrap();
            store.write(|t| remember(t, &rec, &plan(), "network a")).unwrap();
            rec.apply(plan().steps[0].op()).unwrap();
        }
        let store = Store::open(&path).unwrap();
        undo(&store, &rec, "network a");
        assert_eq!(rec.sysctl(&Netns::Host, KEY).as_deref(), Some("0"));
    }

    #[test]
    fn the_records_of_a_namespace_are_found_by_its_path_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let rec = Recording::default();
        for (ns, object) in [("/run/netns/a", "endpoint x"), ("/run/netns/ab", "endpoint y")] {
            let plan: Plan = [Step::sysctl_restoring(Netns::Path(ns.into()), KEY, "1")].into_iter().collect();
            store.write(|t| remember(t, &rec, &plan, object)).unwrap();
        }
        assert_eq!(records_of(&store, "/run/netns/a").unwrap(), [format!("/run/netns/a {KEY}")]);
    }

    #[test]
    fn a_key_that_did_not_exist_is_left_to_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.redb")).unwrap();
        let rec = Recording::default();
        set(&store, &rec, "endpoint e");
        rec.clear();
        undo(&store, &rec, "endpoint e");
        assert!(rec.log().is_empty(), "{:?}", rec.log());
    }
}
