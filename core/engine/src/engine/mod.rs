//! The engine: every operation on networks, endpoints, sandboxes and volumes.
//!
//! An operation asks a driver for a plan, journals it, carries it out through the
//! [`Executor`], and commits the new objects and clears the journal in one store
//! transaction. Operations are serialised by one lock over the in-memory mirror of the
//! store; drivers and the executor are synchronous, so API handlers call in from blocking
//! threads.

mod cluster;
mod config_only;
mod dns;
mod dry_run;
pub mod events;
mod firewall;
mod gateway;
mod network;
mod policy;
mod reconcile;
mod sandbox;
mod sysctls;
mod volume;

pub use cluster::VNI_OPTION;
pub use dns::ENABLE_DNS;
pub use firewall::FirewallReport;
pub use network::{ConnectRequest, NetworkCreateRequest, PoolRequest};
pub use volume::{volume_size, PruneReport, VolumeCreateRequest};

use crate::error::{Error, Result};
use crate::executor::{found_steps, run_plan, undo_steps, without_found, Executor};
use crate::ipam::DefaultPool;
use crate::model::{Endpoint, JournalEntry, Network, Sandbox, Volume};
use crate::registry::Registry;
use crate::store::{Store, Table, Txn};
use ipnet::IpNet;
use policy::Author;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use wharf_sdk::{HostFacts, LinkKind, Op, Plan, Step};

/// Settings the engine needs from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where named sandboxes' namespace files live.
    pub netns_dir: PathBuf,
    /// Where per-sandbox `resolv.conf` files go (`/etc/netns`).
    pub netns_etc_dir: PathBuf,
    /// The host's resolver configuration, copied into sandboxes.
    pub host_resolv_conf: PathBuf,
    /// Directory under which volume data lives.
    pub volumes_dir: PathBuf,
    /// The largest file the filesystem of `volumes_dir` can hold, when known.
    pub volumes_max_file_size: Option<u64>,
    /// Default IPv4 pools.
    pub pools_v4: Vec<DefaultPool>,
    /// Default IPv6 pools; empty means a ULA /48 chosen at first start.
    pub pools_v6: Vec<DefaultPool>,
    /// Operator's default MTU.
    pub default_mtu: Option<u32>,
    /// Base directories `bind` volumes may point under.
    pub bind_allowed_bases: Vec<String>,
    /// The predefined `bridge` network, when enabled.
    pub default_bridge: Option<DefaultBridge>,
}

/// The predefined `bridge` network.
#[derive(Debug, Clone)]
pub struct DefaultBridge {
    /// Bridge device name.
    pub device: String,
    /// Subnet.
    pub subnet: IpNet,
}

/// The in-memory mirror of the store. Its objects are shared between the state and its
/// published copies: a copy costs a pointer per object, and a change replaces only the
/// objects it touches.
#[derive(Default, Clone)]
struct State {
    networks: BTreeMap<String, Arc<Network>>,
    endpoints: BTreeMap<String, Arc<Endpoint>>,
    sandboxes: BTreeMap<String, Arc<Sandbox>>,
    volumes: BTreeMap<String, Arc<Volume>>,
    /// The host port picked last for a binding that left it to wharf.
    port_cursor: u16,
}

/// The engine.
pub struct Engine {
    store: Store,
    registry: Registry,
    exec: Arc<dyn Executor>,
    settings: Settings,
    state: Mutex<State>,
    /// The embedded resolver, when the daemon runs one.
    dns: Option<Arc<wharf_dns::Resolver>>,
    /// The state as every finished operation left it, published by [`StateGuard`], so reads
    /// never wait for an operation in flight (plugin calls, kernel I/O).
    published: RwLock<Arc<State>>,
    /// What happened, for `GET /events`.
    events: events::Events,
    /// Each network driver's capabilities, asked once at start (a plugin call costs tens of
    /// microseconds, and the answer never changes).
    capabilities: BTreeMap<String, wharf_sdk::NetworkCapabilities>,
    /// The cluster store global-scope networks live in, once joined.
    cluster: OnceLock<cluster::Cluster>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("registry", &self.registry).field("exec", &self.exec).finish_non_exhaustive()
    }
}

/// The engine's state, locked for an operation. Dropping it after a change publishes the
/// new state for reads, before the lock is let go, so snapshots follow operations in order.
struct StateGuard<'a> {
    state: MutexGuard<'a, State>,
    published: &'a RwLock<Arc<State>>,
    changed: bool,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            let snapshot = Arc::new(self.state.clone());
            *self.published.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        }
    }
}

/// A fresh 64-hex id.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The current time as Docker prints it (RFC 3339 with nanoseconds, UTC).
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Whether `name` is a valid object name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 bytes.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Find an object by exact id, then exact name, then unique id prefix.
fn lookup<'a, T>(
    kind: &str,
    key: &str,
    items: impl Iterator<Item = &'a T> + Clone,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'a T> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} name or id is empty")));
    }
    if let Some(t) = items.clone().find(|t| id(t) == key) {
        return Ok(t);
    }
    if let Some(t) = items.clone().find(|t| name(t) == key) {
        return Ok(t);
    }
    let mut prefixed = items.filter(|t| id(t).starts_with(key));
    match (prefixed.next(), prefixed.next()) {
        (Some(t), None) => Ok(t),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!("{kind} id prefix {key:?} is ambiguous"))),
        _ => Err(Error::NotFound(format!("{kind} {key} not found"))),
    }
}

impl State {
    fn network(&self, key: &str) -> Result<&Network> {
        lookup("network", key, self.networks.values().map(|n| &**n), |n| &n.id, |n| &n.name)
    }

    fn sandbox(&self, key: &str) -> Result<&Sandbox> {
        lookup("sandbox", key, self.sandboxes.values().map(|s| &**s), |s| &s.id, |s| &s.name)
    }

    fn endpoints_of_network<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().map(|e| &**e).filter(move |e| e.network_id == id)
    }

    fn endpoints_of_sandbox<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().map(|e| &**e).filter(move |e| e.sandbox_id == id)
    }
}

/// The installation's random ULA global id (RFC 4193), made at first start.
fn ula_global_id(store: &Store) -> Result<[u8; 5]> {
    if let Some(id) = store.get::<[u8; 5]>(Table::Meta, "ula_global_id")? {
        return Ok(id);
    }
    let id: [u8; 5] = rand::random();
    store.write(|t| t.put(Table::Meta, "ula_global_id", &id))?;
    Ok(id)
}

/// This installation's instance id, made at first start: what marks the kernel objects
/// this wharfd makes as its own (another wharfd, with another root, has another).
pub fn instance_id(store: &Store) -> Result<String> {
    if let Some(id) = store.get::<String>(Table::Meta, "instance_id")? {
        return Ok(id);
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    store.write(|t| t.put(Table::Meta, "instance_id", &id))?;
    Ok(id)
}

/// The links a plan creates, with their kinds.
fn plan_links(plan: &Plan) -> impl Iterator<Item = (&LinkKind, &str)> {
    plan.ops().filter_map(|op| match op {
        Op::LinkAdd { link, .. } => Some((&link.kind, link.name.as_str())),
        _ => None,
    })
}

/// Check `plan` against `author`'s policy and `core` against core's; returns the two joined
/// when `core` has steps.
fn checked_and_joined<'a>(
    settings: &Settings,
    author: Author<'_>,
    object: &str,
    plan: &'a Plan,
    core: &Plan,
) -> Result<std::borrow::Cow<'a, Plan>> {
    policy::check(plan, settings, author, object)?;
    if core.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(plan));
    }
    policy::check(core, settings, Author::Core, object)?;
    let mut joined = plan.clone();
    joined.extend(core.clone());
    Ok(std::borrow::Cow::Owned(joined))
}

/// `plan` with the undo of each directory it creates that exists already turned into
/// nothing: a directory wharf did not make is adopted, and a later failure never removes it.
pub(super) fn adopt_existing_directories(mut plan: Plan) -> Plan {
    for step in &mut plan.steps {
        if let Op::DirCreate { path, .. } = &step.op {
            if std::fs::symlink_metadata(path).is_ok() {
                step.undo = Op::Noop;
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
    /// Open the engine over `store`, roll back interrupted plans, reconcile the kernel with
    /// the store, and make the predefined networks.
    pub fn start(store: Store, registry: Registry, exec: Arc<dyn Executor>, settings: Settings) -> Result<Engine> {
        Engine::start_with_dns(store, registry, exec, settings, None)
    }

    /// [`Engine::start`], with the embedded resolver `dns`: every sandbox's resolver is
    /// serving again when this returns.
    pub fn start_with_dns(
        store: Store,
        registry: Registry,
        exec: Arc<dyn Executor>,
        mut settings: Settings,
        dns: Option<Arc<wharf_dns::Resolver>>,
    ) -> Result<Engine> {
        if settings.pools_v6.is_empty() {
            settings.pools_v6.push(crate::ipam::ula_pool(ula_global_id(&store)?));
        }
        let mut state = State::default();
        for (_, n) in store.list::<Network>(Table::Networks)? {
            state.networks.insert(n.id.clone(), Arc::new(n));
        }
        for (_, e) in store.list::<Endpoint>(Table::Endpoints)? {
            state.endpoints.insert(e.id.clone(), Arc::new(e));
        }
        for (_, s) in store.list::<Sandbox>(Table::Sandboxes)? {
            state.sandboxes.insert(s.id.clone(), Arc::new(s));
        }
        for (_, v) in store.list::<Volume>(Table::Volumes)? {
            state.volumes.insert(v.name.clone(), Arc::new(v));
        }
        let published = RwLock::new(Arc::new(state.clone()));
        let events = events::Events::default();
        let capabilities = registry
            .list()
            .into_iter()
            .filter(|d| d.kind == crate::registry::Kind::Network)
            .filter_map(|d| registry.network(&d.name).map(|n| (d.name, n.capabilities())))
            .collect();
        let engine = Engine {
            store,
            registry,
            exec,
            settings,
            state: Mutex::new(state),
            published,
            events,
            capabilities,
            cluster: OnceLock::new(),
            dns,
        };
        let touched = engine.recover_journal()?;
        engine.reconcile(&touched)?;
        engine.ensure_predefined()?;
        engine.dns_restore();
        Ok(engine)
    }

    /// The state, for an operation: one at a time.
    fn lock(&self) -> StateGuard<'_> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        StateGuard { state, published: &self.published, changed: false }
    }

    /// The state as the last finished operation left it, for reads.
    fn read(&self) -> Arc<State> {
        self.published.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The driver registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The event log.
    pub fn events(&self) -> &events::Events {
        &self.events
    }

    /// This installation's instance id (see [`instance_id`]).
    pub fn id(&self) -> Result<String> {
        instance_id(&self.store)
    }

    /// The root directory: where the store and the volumes live.
    pub fn root_dir(&self) -> PathBuf {
        self.settings.volumes_dir.parent().map(PathBuf::from).unwrap_or_default()
    }

    /// Host facts for network calls: the kernel's view, read fresh, plus the operator's
    /// settings and the bridges of wharf's networks.
    fn facts(&self, state: &State) -> Result<HostFacts> {
        let mut f = self
            .exec
            .host_facts()
            .map_err(|e| Error::Internal(format!("reading host facts: {}", crate::executor::report(&e))))?;
        f.default_mtu = self.settings.default_mtu;
        f.volumes_dir = self.settings.volumes_dir.display().to_string();
        f.volumes_max_file_size = self.settings.volumes_max_file_size;
        f.bind_allowed_bases = self.settings.bind_allowed_bases.clone();
        f.cluster_vtep = self.cluster_vtep();
        f.wharf_bridges = state
            .networks
            .values()
            .flat_map(|n| plan_links(&n.plan))
            .filter(|(k, _)| matches!(k, LinkKind::Bridge))
            .map(|(_, name)| name.to_string())
            .collect();
        Ok(f)
    }

    /// The facts endpoint calls get: the operator's settings without the host's links,
    /// routes and bridges (see [`HostFacts`]).
    pub(super) fn endpoint_facts(&self) -> HostFacts {
        HostFacts {
            default_mtu: self.settings.default_mtu,
            volumes_dir: self.settings.volumes_dir.display().to_string(),
            volumes_max_file_size: self.settings.volumes_max_file_size,
            bind_allowed_bases: self.settings.bind_allowed_bases.clone(),
            ..Default::default()
        }
    }

    /// Carry out `plan` for `object`, journaled; then run `commit` in the same store
    /// transaction that clears the journal. If the commit fails, the plan is undone. The plan
    /// is checked against the policy first.
    fn apply(
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
    fn apply_recorded(
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
    fn apply_recorded_with(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        core: &Plan,
        commit: impl FnOnce(&mut Txn<'_>, &[usize]) -> Result<()>,
    ) -> Result<()> {
        let plan = &*checked_and_joined(&self.settings, author, object, plan, core)?;
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
            undo_steps(&exec, plan, &outcomes);
            let _ = self.store.write(|t| t.delete(Table::Journal, &key));
            self.store.forget_progress();
            return Err(e);
        }
        self.store.forget_progress();
        Ok(())
    }

    /// Carry out removal `plan` for `object`. `commit`, the store without the object, is
    /// written together with the journal entry before the first step, so after a crash at any
    /// point the object is gone from the store and recovery finishes the plan (every step is
    /// idempotent). If a step fails, the completed ones are undone and `restore` puts the
    /// object back.
    fn apply_removal(
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
    fn apply_removal_with(
        &self,
        author: Author<'_>,
        object: &str,
        plan: &Plan,
        core: &Plan,
        commit: impl FnOnce(&mut Txn<'_>) -> Result<()>,
        restore: impl FnOnce(&mut Txn<'_>) -> Result<()>,
    ) -> Result<()> {
        let plan = &*checked_and_joined(&self.settings, author, object, plan, core)?;
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
    fn restoring<'a>(&'a self, object: &'a str) -> sysctls::Restoring<'a> {
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
    fn recover_journal(&self) -> Result<BTreeSet<String>> {
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
                        if let Err(e) = exec.apply(&step.undo) {
                            failures.push(format!("{}: {}", crate::executor::report(&e), step.undo.describe()));
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
    fn made_in_flight(&self, step: &Step) -> bool {
        match &step.op {
            Op::NetnsCreate { .. } | Op::FileWrite { .. } => true,
            Op::DirCreate { .. } => step.undo != Op::Noop,
            // A change whose undo writes back the value kept or found: right whether it ran or not.
            Op::Sysctl { .. } => matches!(step.undo, Op::SysctlRestore { .. } | Op::Sysctl { .. }),
            Op::LinkSet { change: wharf_sdk::LinkChange::Mtu(_), .. } => step.undo != Op::Noop,
            op => self.ours_alone(&self.lock(), op, ""),
        }
    }

    /// Whether `op` makes a link that carries this daemon's mark and that no stored network
    /// or endpoint but the one with id `except` names.
    fn ours_alone(&self, state: &State, op: &Op, except: &str) -> bool {
        let Op::LinkAdd { link, .. } = op else { return false };
        let networks = state.networks.values().filter(|n| n.id != except).map(|n| &n.plan);
        let endpoints = state.endpoints.values().filter(|e| e.id != except).map(|e| &e.plan);
        let mut named = networks.chain(endpoints).flat_map(plan_links);
        !named.any(|(_, name)| name == link.name) && self.exec.owns(op)
    }

    /// `removal`, a driver's plan to remove the object with id `id` that `made` made, less
    /// the steps that would take away what `made` found there (see [`without_found`]).
    /// A found link that carries this daemon's mark and that no other object names is
    /// wharf's all the same (a VLAN parent another of its networks made and left to this
    /// one), and goes.
    fn removal_plan(&self, state: &State, removal: Plan, made: &Plan, found: &[usize], id: &str) -> Plan {
        let foreign: Vec<usize> = found
            .iter()
            .copied()
            .filter(|&i| !made.steps.get(i).is_some_and(|s| self.ours_alone(state, &s.op, id)))
            .collect();
        without_found(removal, made, &foreign)
    }

    /// Every network.
    pub fn networks(&self) -> Vec<Network> {
        self.read().networks.values().map(|n| Network::clone(n)).collect()
    }

    /// One network by id, name or id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        self.read().network(key).cloned()
    }

    /// Every endpoint of a network, with its sandbox.
    pub fn network_endpoints(&self, id: &str) -> Vec<(Endpoint, Sandbox)> {
        let s = self.read();
        s.endpoints_of_network(id)
            .filter_map(|e| s.sandboxes.get(&e.sandbox_id).map(|sb| (e.clone(), Sandbox::clone(sb))))
            .collect()
    }

    /// Every sandbox.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.read().sandboxes.values().map(|s| Sandbox::clone(s)).collect()
    }

    /// One sandbox by id, name or id prefix.
    pub fn sandbox(&self, key: &str) -> Result<Sandbox> {
        self.read().sandbox(key).cloned()
    }

    /// Every endpoint of a sandbox, with its network.
    pub fn sandbox_endpoints(&self, id: &str) -> Vec<(Endpoint, Network)> {
        let s = self.read();
        s.endpoints_of_sandbox(id)
            .filter_map(|e| s.networks.get(&e.network_id).map(|n| (e.clone(), Network::clone(n))))
            .collect()
    }
}

/// An engine over the recording executor with small test drivers, for the engine's own
/// tests and for crates above it (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod tests;

#[cfg(test)]
mod recovery_tests;
