//! The state store: one redb file holding every object as JSON, keyed by id or name.
//!
//! Only the engine touches the store. A change that spans several objects is one write
//! transaction ([`Store::write`]), so a crash leaves either all of it or none.
//!
//! Beside the database, a small progress file records which steps of the journaled plan
//! have run and what each found ([`Store::step_done`]). It is appended to with one
//! `write(2)` per step and never synced: a killed daemon leaves it whole in the page cache,
//! and a power loss takes the kernel objects (links, addresses, routes, mounts) it speaks
//! of as well. What it leaves out is never undone, so losing its tail can leak an object
//! but never removes one wharf did not make.
//!
//! These two files are the one place the engine opens files itself: they are its own
//! records, not host objects, so they do not go through the executor.

use crate::error::Result;
use crate::executor::Outcome;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Mutex;

/// The tables of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Networks by id.
    Networks,
    /// Endpoints by id.
    Endpoints,
    /// Sandboxes by id.
    Sandboxes,
    /// Volumes by name.
    Volumes,
    /// Plans being carried out, by operation id.
    Journal,
    /// Engine metadata by key.
    Meta,
    /// Values sysctls had before plans changed them, by namespace and key.
    Sysctls,
}

impl Table {
    const ALL: [Table; 7] = [
        Table::Networks,
        Table::Endpoints,
        Table::Sandboxes,
        Table::Volumes,
        Table::Journal,
        Table::Meta,
        Table::Sysctls,
    ];

    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(match self {
            Table::Networks => "networks",
            Table::Endpoints => "endpoints",
            Table::Sandboxes => "sandboxes",
            Table::Volumes => "volumes",
            Table::Journal => "journal",
            Table::Meta => "meta",
            Table::Sysctls => "sysctls",
        })
    }
}

/// How large the progress file may grow with the records of finished plans before it is
/// emptied.
const PROGRESS_LIMIT: u64 = 64 * 1024;

/// The store's page cache: redb's default (1 GiB) keeps every page read or written in the
/// daemon's memory, a restart reads them all, and the kernel's page cache holds them anyway.
/// The engine reads the store only at start (it keeps its state in memory), so the cache
/// mostly holds the tree's upper pages that a write goes through: 256 KiB holds those of a
/// store with thousands of endpoints.
const CACHE_BYTES: usize = 256 << 10;

/// The store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// The progress file of the plans being carried out.
    progress: Mutex<File>,
    /// Test hook: the number of writes from now to the one that fails (0: none fails).
    #[cfg(test)]
    fail_write: std::sync::atomic::AtomicUsize,
}

impl Store {
    /// Open or create the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path)?;
        let txn = db.begin_write()?;
        for t in Table::ALL {
            txn.open_table(t.def())?;
        }
        txn.commit()?;
        let progress_path = path.with_extension("progress");
        let progress = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&progress_path)
            .map_err(|e| crate::error::Error::Store(format!("{}: {e}", progress_path.display()).into()))?;
        Ok(Store {
            db,
            progress: Mutex::new(progress),
            #[cfg(test)]
            fail_write: Default::default(),
        })
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, File> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record that step `step` of the plan journaled under `key` ran with `outcome`.
    pub fn step_done(&self, key: &str, step: usize, outcome: Outcome) {
        let code = match outcome {
            Outcome::Created => 'c',
            Outcome::Found => 'f',
        };
        if let Err(e) = self.progress().write_all(format!("{key} {step} {code}\n").as_bytes()) {
            tracing::warn!("recording step {step} of plan {key}: {e}");
        }
    }

    /// The outcomes recorded for the plan journaled under `key`, one per step from the
    /// first on, up to the first step with no record.
    pub fn steps_done(&self, key: &str) -> Vec<Outcome> {
        let mut text = String::new();
        let mut file = self.progress();
        if let Err(e) = file.rewind().and_then(|()| file.read_to_string(&mut text)) {
            tracing::warn!("reading the plan progress: {e}");
        }
        let mut done = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            if parts.next() != Some(key) {
                continue;
            }
            let outcome = match (parts.next().and_then(|i| i.parse::<usize>().ok()), parts.next()) {
                (Some(i), Some("c")) if i == done.len() => Outcome::Created,
                (Some(i), Some("f")) if i == done.len() => Outcome::Found,
                _ => break,
            };
            done.push(outcome);
        }
        done
    }

    /// Forget the recorded steps of the plan that just ended. Records are keyed by their
    /// plan's journal key, which is never used again, so those of finished plans are only
    /// dead weight: the file is emptied once it passes [`PROGRESS_LIMIT`] rather than after
    /// every plan, which would cost each operation a truncation. The engine runs one plan at
    /// a time, so no plan is under way when this is called.
    pub fn forget_progress(&self) {
        let file = self.progress();
        if file.metadata().is_ok_and(|m| m.len() < PROGRESS_LIMIT) {
            return;
        }
        drop(file);
        self.clear_progress();
    }

    /// Empty the progress file: no plan is under way, and the records of the plans that
    /// were have been acted on (recovery at start).
    pub fn clear_progress(&self) {
        if let Err(e) = self.progress().set_len(0) {
            tracing::warn!("clearing the plan progress: {e}");
        }
    }

    /// Every value of `table`, in key order.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            out.push((k.value().to_string(), serde_json::from_slice(v.value())?));
        }
        Ok(out)
    }

    /// The keys of `table` that begin with `prefix`, in order: a range of the table, not a
    /// walk of it.
    pub fn keys_with_prefix(&self, table: Table, prefix: &str) -> Result<Vec<String>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        let mut out = Vec::new();
        for row in t.range(prefix..)? {
            let key = row?.0.value().to_string();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key);
        }
        Ok(out)
    }

    /// The value at `key` in `table`.
    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        Ok(match t.get(key)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Run `f` in one write transaction and commit it if `f` succeeds.
    pub fn write<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<R> {
        let txn = self.db.begin_write()?;
        let r = f(&mut Txn { txn: &txn })?;
        #[cfg(test)]
        self.injected_failure()?;
        txn.commit()?;
        Ok(r)
    }

    /// Like [`Store::write`], without waiting for the disk: a crash loses the change unless a
    /// later [`Store::write`] has made it durable with its own. For changes whose loss costs
    /// only repeated idempotent work, such as clearing a finished removal from the journal.
    pub fn write_lazily<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<R> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None).map_err(|e| crate::error::Error::Store(Box::new(e)))?;
        let r = f(&mut Txn { txn: &txn })?;
        txn.commit()?;
        Ok(r)
    }
}

#[cfg(test)]
impl Store {
    /// Make the `n`th [`Store::write`] from now (1: the next) fail before it commits, as a
    /// full disk would; the transaction is dropped and nothing of it is kept.
    pub(crate) fn fail_write(&self, n: usize) {
        self.fail_write.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    fn injected_failure(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        match self.fail_write.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)) {
            Ok(1) => Err(crate::error::Error::Store("injected write failure".into())),
            _ => Ok(()),
        }
    }
}

/// An open write transaction.
pub struct Txn<'a> {
    txn: &'a WriteTransaction,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Txn")
    }
}

impl Txn<'_> {
    /// Store `value` at `key`.
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        self.txn.open_table(table.def())?.insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// The value at `key`, read inside this transaction.
    pub fn get<T: DeserializeOwned>(&mut self, table: Table, key: &str) -> Result<Option<T>> {
        let t = self.txn.open_table(table.def())?;
        let value = t.get(key)?;
        Ok(match value {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Remove `key`; absent is fine.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<()> {
        self.txn.open_table(table.def())?.remove(key)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::model::Network;

    #[test]
    fn values_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            let n = Network { id: "abc".into(), name: "n1".into(), ..Default::default() };
            store.write(|t| t.put(Table::Networks, &n.id, &n)).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let n: Network = store.get(Table::Networks, "abc").unwrap().unwrap();
        assert_eq!(n.name, "n1");
        assert_eq!(store.list::<Network>(Table::Networks).unwrap().len(), 1);
    }

    #[test]
    fn step_outcomes_are_read_back_in_order_until_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            store.step_done("k1", 0, Outcome::Found);
            store.step_done("k2", 0, Outcome::Created);
            store.step_done("k1", 1, Outcome::Created);
            store.step_done("k1", 3, Outcome::Created);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.steps_done("k1"), [Outcome::Found, Outcome::Created]);
        assert_eq!(store.steps_done("k3"), []);
        store.forget_progress();
        assert_eq!(store.steps_done("k1"), [Outcome::Found, Outcome::Created], "kept while the file is small");
        store.clear_progress();
        assert_eq!(store.steps_done("k1"), []);
        store.step_done("k1", 0, Outcome::Created);
        assert_eq!(store.steps_done("k1"), [Outcome::Created]);
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let r: Result<()> = store.write(|t| {
            t.put(Table::Meta, "k", &1)?;
            Err(Error::Internal("stop".into()))
        });
        assert!(r.is_err());
        assert_eq!(store.get::<i32>(Table::Meta, "k").unwrap(), None);
    }
}
