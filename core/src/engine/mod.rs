//! The engine: every operation on networks, endpoints, sandboxes and volumes.
//!
//! An operation asks a driver for a plan, journals it, carries it out through the
//! [`Executor`], and commits the new objects and clears the journal in one store
//! transaction. Operations are serialised by one lock over the in-memory mirror of the
//! store; drivers and the executor are synchronous, so API handlers call in from blocking
//! threads.

mod network;
mod reconcile;
mod sandbox;
mod volume;

pub use network::{ConnectRequest, NetworkCreateRequest, PoolRequest};
pub use volume::{PruneReport, VolumeCreateRequest};

use crate::error::{Error, Result};
use crate::executor::{run_plan, undo_steps, Executor};
use crate::ipam::DefaultPool;
use crate::model::{Endpoint, JournalEntry, Network, Sandbox, Volume};
use crate::registry::Registry;
use crate::store::{Store, Table, Txn};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use wharf_sdk::{HostFacts, LinkKind, Op, Plan};

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

/// The in-memory mirror of the store.
#[derive(Default, Clone)]
struct State {
    networks: BTreeMap<String, Network>,
    endpoints: BTreeMap<String, Endpoint>,
    sandboxes: BTreeMap<String, Sandbox>,
    volumes: BTreeMap<String, Volume>,
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
    /// The state as every finished operation left it, published by [`StateGuard`], so reads
    /// never wait for an operation in flight (plugin calls, kernel I/O).
    published: RwLock<Arc<State>>,
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
        lookup("network", key, self.networks.values(), |n| &n.id, |n| &n.name)
    }

    fn sandbox(&self, key: &str) -> Result<&Sandbox> {
        lookup("sandbox", key, self.sandboxes.values(), |s| &s.id, |s| &s.name)
    }

    fn endpoints_of_network<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().filter(move |e| e.network_id == id)
    }

    fn endpoints_of_sandbox<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().filter(move |e| e.sandbox_id == id)
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

/// The links a plan creates, with their kinds.
fn plan_links(plan: &Plan) -> impl Iterator<Item = (&LinkKind, &str)> {
    plan.ops().filter_map(|op| match op {
        Op::LinkAdd { link, .. } => Some((&link.kind, link.name.as_str())),
        _ => None,
    })
}

impl Engine {
    /// Open the engine over `store`, roll back interrupted plans, reconcile the kernel with
    /// the store, and make the predefined networks.
    pub fn start(store: Store, registry: Registry, exec: Arc<dyn Executor>, mut settings: Settings) -> Result<Engine> {
        if settings.pools_v6.is_empty() {
            settings.pools_v6.push(crate::ipam::ula_pool(ula_global_id(&store)?));
        }
        let mut state = State::default();
        for (_, n) in store.list::<Network>(Table::Networks)? {
            state.networks.insert(n.id.clone(), n);
        }
        for (_, e) in store.list::<Endpoint>(Table::Endpoints)? {
            state.endpoints.insert(e.id.clone(), e);
        }
        for (_, s) in store.list::<Sandbox>(Table::Sandboxes)? {
            state.sandboxes.insert(s.id.clone(), s);
        }
        for (_, v) in store.list::<Volume>(Table::Volumes)? {
            state.volumes.insert(v.name.clone(), v);
        }
        let published = RwLock::new(Arc::new(state.clone()));
        let engine = Engine { store, registry, exec, settings, state: Mutex::new(state), published };
        engine.recover_journal()?;
        engine.reconcile()?;
        engine.ensure_predefined()?;
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

    /// Host facts for network calls: the kernel's view, read fresh, plus the operator's
    /// settings and the bridges of wharf's networks.
    fn facts(&self, state: &State) -> Result<HostFacts> {
        let mut f = self.exec.host_facts().map_err(|e| Error::Internal(format!("reading host facts: {e}")))?;
        f.default_mtu = self.settings.default_mtu;
        f.volumes_dir = self.settings.volumes_dir.display().to_string();
        f.volumes_max_file_size = self.settings.volumes_max_file_size;
        f.bind_allowed_bases = self.settings.bind_allowed_bases.clone();
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
    /// transaction that clears the journal. If the commit fails, the plan is undone.
    fn apply(&self, object: &str, plan: &Plan, commit: impl FnOnce(&mut Txn<'_>) -> Result<()>) -> Result<()> {
        if plan.is_empty() {
            return self.store.write(commit);
        }
        let key = new_id();
        let entry = JournalEntry { object: object.to_string(), plan: plan.clone() };
        self.store.write(|t| t.put(Table::Journal, &key, &entry))?;
        if let Err(error) = run_plan(self.exec.as_ref(), plan) {
            self.store.write(|t| t.delete(Table::Journal, &key))?;
            return Err(Error::Plan { object: object.to_string(), error });
        }
        let committed = self.store.write(|t| {
            commit(t)?;
            t.delete(Table::Journal, &key)
        });
        if let Err(e) = committed {
            undo_steps(self.exec.as_ref(), plan, plan.steps.len());
            let _ = self.store.write(|t| t.delete(Table::Journal, &key));
            return Err(e);
        }
        Ok(())
    }

    fn recover_journal(&self) -> Result<()> {
        for (key, entry) in self.store.list::<JournalEntry>(Table::Journal)? {
            tracing::warn!(object = %entry.object, steps = entry.plan.steps.len(), "rolling back an interrupted plan");
            let failures = undo_steps(self.exec.as_ref(), &entry.plan, entry.plan.steps.len());
            for f in failures {
                tracing::warn!("rollback of {}: {f}", entry.object);
            }
            self.store.write(|t| t.delete(Table::Journal, &key))?;
        }
        Ok(())
    }

    /// Every network.
    pub fn networks(&self) -> Vec<Network> {
        self.read().networks.values().cloned().collect()
    }

    /// One network by id, name or id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        self.read().network(key).cloned()
    }

    /// Every endpoint of a network, with its sandbox.
    pub fn network_endpoints(&self, id: &str) -> Vec<(Endpoint, Sandbox)> {
        let s = self.read();
        s.endpoints_of_network(id)
            .filter_map(|e| s.sandboxes.get(&e.sandbox_id).map(|sb| (e.clone(), sb.clone())))
            .collect()
    }

    /// Every sandbox.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.read().sandboxes.values().cloned().collect()
    }

    /// One sandbox by id, name or id prefix.
    pub fn sandbox(&self, key: &str) -> Result<Sandbox> {
        self.read().sandbox(key).cloned()
    }

    /// Every endpoint of a sandbox, with its network.
    pub fn sandbox_endpoints(&self, id: &str) -> Vec<(Endpoint, Network)> {
        let s = self.read();
        s.endpoints_of_sandbox(id)
            .filter_map(|e| s.networks.get(&e.network_id).map(|n| (e.clone(), n.clone())))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
