//! Dry runs: what an operation would do, and nothing done. The operation runs, through the
//! very same code, on a throwaway engine over a copy of the store whose executor reads the
//! host as the real one does but only writes down the steps it is given. The steps, with the
//! firewall elements of each firewall fact, are the answer; the copy is then thrown away.

use super::{Engine, Settings};
use crate::error::{Error, Result};
use crate::executor::{ExecError, Executor, LinkQuery, Outcome};
use crate::executor::{HostPort, PortState};
use crate::store::{Store, Table};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wharf_sdk::{FirewallFact, HostFacts, Netns, Op};

/// The tables a dry run copies: every object, not the journal of plans in flight.
const COPIED: [Table; 5] = [Table::Networks, Table::Endpoints, Table::Sandboxes, Table::Volumes, Table::Meta];

/// An executor that asks the host what the real one asks it and writes steps down instead of
/// carrying them out.
struct Planning {
    real: Arc<dyn Executor>,
    steps: Mutex<Vec<Op>>,
}

impl Planning {
    fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.steps.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Executor for Planning {
    fn apply(&self, op: &Op) -> std::result::Result<Outcome, ExecError> {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).push(op.clone());
        Ok(Outcome::Created)
    }
    fn host_facts(&self, only: Option<&LinkQuery>) -> std::result::Result<HostFacts, ExecError> {
        self.real.host_facts(only)
    }
    fn create_netns(&self, dir: &Path, name: &str) -> std::result::Result<PathBuf, ExecError> {
        Ok(dir.join(name))
    }
    fn remove_netns(&self, _: &Path) -> std::result::Result<(), ExecError> {
        Ok(())
    }
    fn check_netns(&self, path: &Path) -> std::result::Result<(), ExecError> {
        self.real.check_netns(path)
    }
    fn firewall_reload(&self, _: &[FirewallFact]) -> std::result::Result<(), ExecError> {
        Ok(())
    }
    fn host_port_state(&self, hp: &HostPort) -> std::result::Result<PortState, ExecError> {
        self.real.host_port_state(hp)
    }
    fn sweep(&self, _: &Netns, _: &BTreeSet<&str>) -> std::result::Result<Vec<String>, ExecError> {
        Ok(Vec::new())
    }
    fn link_names(&self, netns: &Path) -> std::result::Result<Vec<String>, ExecError> {
        self.real.link_names(netns)
    }
    fn path_exists(&self, path: &Path) -> bool {
        self.real.path_exists(path)
    }
    fn read_file(&self, path: &Path) -> Option<String> {
        self.real.read_file(path)
    }
    fn disk_usage(&self, path: &Path) -> u64 {
        self.real.disk_usage(path)
    }
    fn locate(&self, path: &Path) -> Option<PathBuf> {
        self.real.locate(path)
    }
}

impl Engine {
    /// Run `operation` as a dry run (see the module): returns the steps it would carry out,
    /// one line each, firewall facts followed by their elements. Its own errors are returned
    /// as they would be.
    pub fn dry_run(&self, operation: impl FnOnce(&Engine) -> Result<()>) -> Result<Vec<String>> {
        let _span = tracing::info_span!("dry-run").entered();
        // The copy of the store is the engine's own file, like the store itself, not a
        // kernel object: it is made and removed here, not through the executor.
        let dir = self.root_dir().join(format!("dry-run-{}", super::new_id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Internal(format!("{}: {e}", dir.display())))?;
        let planned = self.plan_in(&dir, operation);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!("removing {}: {e}", dir.display());
        }
        planned
    }

    fn plan_in(&self, dir: &Path, operation: impl FnOnce(&Engine) -> Result<()>) -> Result<Vec<String>> {
        let copy = Store::open(&dir.join("state.redb"))?;
        {
            // Between operations, so the copy is one consistent state.
            let _between = self.lock();
            for table in COPIED {
                let rows = self.store.list::<serde_json::Value>(table)?;
                copy.write(|t| rows.iter().try_for_each(|(k, v)| t.put(table, k, v)))?;
            }
        }
        let planning = Arc::new(Planning { real: self.exec.clone(), steps: Mutex::new(Vec::new()) });
        let settings: Settings = self.settings.clone();
        let shadow = Engine::start(copy, self.registry.clone(), planning.clone(), settings)?;
        // What starting wrote down is the re-application of what exists: not the operation's.
        planning.take();
        operation(&shadow)?;
        let mut lines = Vec::new();
        for op in planning.take() {
            lines.push(op.describe());
            if let Op::FirewallAdd { fact } | Op::FirewallDel { fact } = &op {
                let elements = self.exec.firewall_inspect(std::slice::from_ref(fact)).unwrap_or_default();
                lines.extend(elements.into_iter().flatten().map(|(element, _)| format!("  {element}")));
            }
        }
        Ok(lines)
    }
}
