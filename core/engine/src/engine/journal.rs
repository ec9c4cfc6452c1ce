//! Journaled plans: each plan is checked against the policy, journaled, carried out through
//! the executor and recorded in the store with the objects it made, or rolled back; a plan a
//! crash interrupted is finished or undone at the next start.

use super::{new_id, policy, sysctls, Author, Engine, Settings};
use crate::error::{Error, Result};
use crate::executor::{found_steps, run_plan, undo_steps, Executor};
use crate::model::JournalEntry;
use crate::store::{Table, Txn};
use std::collections::BTreeSet;
use std::path::Path;
use wharf_sdk::{Op, Plan, Step};

/// Check `plan` against `author`'s policy and `core` against core's; returns the two joined
/// when `core` has steps.
fn checked_and_joined<'a>(
    settings: &Settings,
    exec: &dyn Executor,
    author: Author<'_>,
    object: &str,
    plan: &'a Plan,
    core: &Plan,
) -> Result<std::borrow::Cow<'a, Plan>> {
    policy::check(plan, settings, exec, author, object)?;
    if core.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(plan));
    }
    policy::check(core, settings, exec, Author::Core, object)?;
    let mut joined = plan.clone();
    joined.extend(core.clone());
    Ok(std::borrow::Cow::Owned(joined))
}

/// `plan` with the undo of each directory it creates that exists already turned into
/// nothing: a directory wharf did not make is adopted, and a later failure never removes it.
pub(super) fn adopt_existing_directories(exec: &dyn Executor, mut plan: Plan) -> Plan {
    for step in &mut plan.steps {
        if let Op::DirCreate { path, .. } = step.op() {
            if exec.path_exists(Path::new(path)) {
                step.set_undo(Op::Noop);
            }
        }
    }
    plan
}

/// Run a plan for `object` through `run`, logging at debug its object, number of steps,
/// duration and result.
fn logged_plan<T, E: std::fmt::Display>(
    object: &str,
    plan: &Plan,
    run: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let started = std::time::Instant::now();
    let result = run();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let error = result.as_ref().err().map(ToString::to_string);
    tracing::debug!(object, steps = plan.steps.len(), duration_ms, error, "plan");
    result
}

impl Engine {
    /// Carry out `plan` for `object`, journaled; then run `commit` in the same store
    /// transaction that clears the journal. If the commit fails, the plan is undone. The plan
    /// is checked against the policy first.
    pub(super) fn apply(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        commit: impl FnOnce(&mut Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        self.apply_recorded(author, object, plan, |t, _| commit(t))
    }

    /// [`Engine::apply`], handing `commit` the indices of the steps that found their object
    /// there, for the object to keep: its removal must leave them (see
    /// [`crate::executor::without_found`]).
    ///
    /// Crash semantics: the journal entry is written (and synced) before the first step;
    /// each completed step's outcome is appended to the store's progress file before the
    /// next starts; the outcomes reach the object in the commit, which clears the journal.
    /// A crash before the commit leaves the entry, and recovery undoes exactly the steps
    /// recorded as created (see [`Engine::recover_journal`]).
    pub(super) fn apply_recorded(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        commit: impl FnOnce(&mut Txn<'_>, &[usize]) -> Result<()>,
    ) -> Result<()> {
        self.apply_recorded_with(author, object, plan, &Plan::new(), commit)
    }

    /// [`Engine::apply_recorded`] of `plan` followed by `core`, core's own steps for the same
    /// object (a sandbox's `resolv.conf`): one journaled plan, each part checked against the
    /// policy of its author.
    pub(super) fn apply_recorded_with(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        core: &Plan,
        commit: impl FnOnce(&mut Txn<'_>, &[usize]) -> Result<()>,
    ) -> Result<()> {
        let plan = &*checked_and_joined(&self.settings, &*self.exec, author, object, plan, core)?;
        if plan.is_empty() {
            return self.store.write(|t| commit(t, &[]));
        }
        let key = new_id();
        let entry = JournalEntry { object: object.to_string(), plan: plan.clone(), roll_forward: false };
        self.store.write(|t| {
            sysctls::remember(t, self.exec.as_ref(), plan, object)?;
            t.put(Table::Journal, &key, &entry)
        })?;
        crate::crash::point("journaled");
        let exec = self.restoring(object);
        let outcomes =
            match logged_plan(object, plan, || run_plan(&exec, plan, &mut |i, o| self.store.step_done(&key, i, o))) {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    self.store.write(|t| t.delete(Table::Journal, &key))?;
                    self.store.forget_progress();
                    return Err(Error::Plan { object: object.to_string(), error });
                }
            };
        let found = found_steps(&outcomes);
        let committed = self.store.write(|t| {
            commit(t, &found)?;
            t.delete(Table::Journal, &key)
        });
        if let Err(e) = committed {
            let rollback_failures = undo_steps(&exec, plan, &outcomes);
            let _ = self.store.write(|t| t.delete(Table::Journal, &key));
            self.store.forget_progress();
            return Err(Error::Unrecorded { object: object.to_string(), error: Box::new(e), rollback_failures });
        }
        self.store.forget_progress();
        Ok(())
    }

    /// Carry out removal `plan` for `object`. `commit`, the store without the object, is
    /// written together with the journal entry before the first step, so after a crash at any
    /// point the object is gone from the store and recovery finishes the plan (every step is
    /// idempotent). If a step fails, the completed ones are undone and `restore` puts the
    /// object back.
    pub(super) fn apply_removal(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        commit: impl FnOnce(&mut Txn<'_>) -> Result<()>,
        restore: impl FnOnce(&mut Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        self.apply_removal_with(author, object, plan, &Plan::new(), commit, restore)
    }

    /// [`Engine::apply_removal`] of `plan` followed by core's own steps `core` (see
    /// [`Engine::apply_recorded_with`]).
    pub(super) fn apply_removal_with(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        core: &Plan,
        commit: impl FnOnce(&mut Txn<'_>) -> Result<()>,
        restore: impl FnOnce(&mut Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        let plan = &*checked_and_joined(&self.settings, &*self.exec, author, object, plan, core)?;
        if plan.is_empty() {
            return self.store.write(commit);
        }
        let key = new_id();
        let entry = JournalEntry { object: object.to_string(), plan: plan.clone(), roll_forward: true };
        self.store.write(|t| {
            commit(t)?;
            sysctls::remember(t, self.exec.as_ref(), plan, object)?;
            t.put(Table::Journal, &key, &entry)
        })?;
        crate::crash::point("journaled");
        if let Err(error) = logged_plan(object, plan, || run_plan(&self.restoring(object), plan, &mut |_, _| ())) {
            self.store.write(|t| {
                restore(t)?;
                t.delete(Table::Journal, &key)
            })?;
            return Err(Error::Plan { object: object.to_string(), error });
        }
        // Should a crash lose this, recovery runs the finished plan once more, which changes
        // nothing: its steps are idempotent, and anything made since was journaled by a
        // durable write that also kept this one.
        self.store.write_lazily(|t| t.delete(Table::Journal, &key))
    }

    /// The executor plans for `object` run on: the kernel's, with sysctl restores
    /// carried out from the values kept in the store.
    pub(super) fn restoring<'a>(&'a self, object: &'a str) -> sysctls::Restoring<'a> {
        sysctls::Restoring { exec: self.exec.as_ref(), store: &self.store, object }
    }

    /// Settle the plans a crash interrupted. A removal is carried on to its end (every step
    /// is idempotent). Anything else is rolled back: each step recorded as having created
    /// something is undone, last first; steps that found their object, and steps that never
    /// ran, are left. The one step that may have been under way (the first without a record)
    /// is undone only when it made a link that carries this daemon's mark and that no stored
    /// object names; other objects it may have made are left for reconcile.
    ///
    /// Returns the sandbox namespaces whose links an interrupted plan deleted: a macvlan
    /// retired there may be left for reconcile to sweep.
    pub(super) fn recover_journal(&self) -> Result<BTreeSet<String>> {
        let mut touched = BTreeSet::new();
        for (key, entry) in self.store.list::<JournalEntry>(Table::Journal)? {
            touched.extend(entry.plan.ops().filter_map(|op| match op {
                Op::LinkDel { netns: wharf_sdk::Netns::Path(p), .. } => Some(p.clone()),
                _ => None,
            }));
            let exec = self.restoring(&entry.object);
            let steps = entry.plan.steps.len();
            let mut failures = Vec::new();
            if entry.roll_forward {
                tracing::warn!(object = %entry.object, steps, "completing an interrupted removal");
                failures.extend(entry.plan.ops().filter_map(|op| {
                    exec.apply(op).err().map(|e| format!("{}: {}", crate::executor::report(&e), op.describe()))
                }));
            } else {
                let done = self.store.steps_done(&key);
                tracing::warn!(object = %entry.object, steps, ran = done.len(), "rolling back an interrupted plan");
                if let Some(step) = entry.plan.steps.get(done.len()) {
                    if self.made_in_flight(step) {
                        let undo = step.undo();
                        if let Err(e) = exec.apply(&undo) {
                            failures.push(format!("{}: {}", crate::executor::report(&e), undo.describe()));
                        }
                    }
                }
                failures.extend(undo_steps(&exec, &entry.plan, &done));
            }
            for f in failures {
                tracing::warn!("recovery of {}: {f}", entry.object);
            }
            self.store.write(|t| t.delete(Table::Journal, &key))?;
        }
        self.store.clear_progress();
        Ok(touched)
    }

    /// Whether `step`, whose outcome was never recorded, made something of this daemon's: a
    /// link with its mark that no stored network or endpoint names; a sandbox's namespace or
    /// resolver file (made only where nothing stood: a name whose namespace file exists is
    /// refused before anything is journaled); a directory that was absent when the plan
    /// was made (one that stood there already was given no undo, see
    /// [`adopt_existing_directories`]); or a sysctl or MTU change whose undo puts back the
    /// value core kept or found.
    pub(super) fn made_in_flight(&self, step: &Step) -> bool {
        match step.op() {
            Op::NetnsCreate { .. } | Op::FileWrite { .. } => true,
            Op::DirCreate { .. } => *step.undo() != Op::Noop,
            // A change whose undo writes back the value kept or found: right whether it ran or not.
            Op::Sysctl { .. } => matches!(*step.undo(), Op::SysctlRestore { .. } | Op::Sysctl { .. }),
            Op::LinkSet { change: wharf_sdk::LinkChange::Mtu(_), .. } => *step.undo() != Op::Noop,
            op => self.ours_alone(&self.lock(), op, ""),
        }
    }
}
