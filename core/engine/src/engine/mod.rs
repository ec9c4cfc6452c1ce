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
mod journal;
mod network;
mod policy;
mod reconcile;
mod sandbox;
mod state;
mod sysctls;
mod volume;

pub use cluster::VNI_OPTION;
pub use dns::ENABLE_DNS;
pub use firewall::FirewallReport;
pub use network::{ConnectRequest, NetworkCreateRequest, PoolRequest};
pub use volume::{PruneReport, VolumeCreateRequest};

use journal::adopt_existing_directories;
use state::State;

use crate::error::{Error, Result};
use crate::executor::{without_found, Executor, LinkQuery};
use crate::ipam::DefaultPool;
use crate::model::{Endpoint, Network, Sandbox, Volume};
use crate::registry::Registry;
use crate::store::{Store, Table};
use ipnet::IpNet;
use policy::Author;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
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

/// Each pool's allocated addresses, from the endpoints that hold them (see
/// [`crate::model::Pool::allocated`]); a record from before they were left out of it is
/// read the same way.
fn restore_allocations(networks: &mut BTreeMap<String, Network>, endpoints: &[Endpoint]) {
    fn pools(n: &mut Network) -> impl Iterator<Item = &mut crate::model::Pool> {
        n.ipv4.iter_mut().chain(n.ipv6.iter_mut())
    }
    for n in networks.values_mut() {
        pools(n).for_each(|p| p.allocated.clear());
    }
    for e in endpoints {
        let Some(n) = networks.get_mut(&e.network_id) else { continue };
        for ip in e.ipv4.iter().chain(&e.ipv6).map(IpNet::addr) {
            for pool in pools(n).filter(|p| p.contains(&ip)) {
                pool.allocated.insert(ip);
            }
        }
    }
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
        let endpoints: Vec<Endpoint> = store.list(Table::Endpoints)?.into_iter().map(|(_, e)| e).collect();
        let mut networks: BTreeMap<String, Network> =
            store.list::<Network>(Table::Networks)?.into_iter().map(|(_, n)| (n.id.clone(), n)).collect();
        restore_allocations(&mut networks, &endpoints);
        for n in networks.into_values() {
            state.put_network(n);
        }
        for (_, s) in store.list::<Sandbox>(Table::Sandboxes)? {
            state.put_sandbox(s);
        }
        for e in endpoints {
            state.put_endpoint(e);
        }
        for (_, v) in store.list::<Volume>(Table::Volumes)? {
            state.put_volume(v);
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
    /// settings and the bridges of wharf's networks. With `only` (for a driver that wants
    /// only what a call concerns, see [`wharf_sdk::FactsScope`]), the links it selects and
    /// the bridges among its names; the routes are all of them either way, for core's own
    /// checks (see [`Engine::narrow_routes`]).
    fn facts(&self, state: &State, only: Option<&LinkQuery>) -> Result<HostFacts> {
        let mut f = self
            .exec
            .host_facts(only)
            .map_err(|e| Error::Internal(format!("reading host facts: {}", crate::executor::report(&e))))?;
        f.default_mtu = self.settings.default_mtu;
        f.volumes_dir = self.settings.volumes_dir.display().to_string();
        f.volumes_max_file_size = self.settings.volumes_max_file_size;
        f.bind_allowed_bases = self.settings.bind_allowed_bases.clone();
        f.cluster_vtep = self.cluster_vtep();
        f.wharf_bridges = state.bridges(only.map(|q| &q.names));
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

    /// Whether `op` makes a link that carries this daemon's mark and that no stored network
    /// or endpoint but the one with id `except` names.
    fn ours_alone(&self, state: &State, op: &Op, except: &str) -> bool {
        let Op::LinkAdd { link, .. } = op else { return false };
        !state.link_named_by_other(&link.name, except) && self.exec.owns(op)
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
            .filter(|&i| !made.steps.get(i).is_some_and(|s| self.ours_alone(state, s.op(), id)))
            .collect();
        without_found(removal, made, &foreign)
    }

    /// Every network.
    pub fn networks(&self) -> Vec<Network> {
        self.read().networks().values().map(|n| Network::clone(n)).collect()
    }

    /// One network by id, name or id prefix.
    pub fn network(&self, key: &str) -> Result<Network> {
        self.read().network(key).cloned()
    }

    /// Every endpoint of a network, with its sandbox.
    pub fn network_endpoints(&self, id: &str) -> Vec<(Endpoint, Sandbox)> {
        let s = self.read();
        s.endpoints_of_network(id)
            .filter_map(|e| s.sandboxes().get(&e.sandbox_id).map(|sb| (e.clone(), Sandbox::clone(sb))))
            .collect()
    }

    /// Every sandbox.
    pub fn sandboxes(&self) -> Vec<Sandbox> {
        self.read().sandboxes().values().map(|s| Sandbox::clone(s)).collect()
    }

    /// One sandbox by id, name or id prefix.
    pub fn sandbox(&self, key: &str) -> Result<Sandbox> {
        self.read().sandbox(key).cloned()
    }

    /// Every endpoint of a sandbox, with its network.
    pub fn sandbox_endpoints(&self, id: &str) -> Vec<(Endpoint, Network)> {
        let s = self.read();
        s.endpoints_of_sandbox(id)
            .filter_map(|e| s.networks().get(&e.network_id).map(|n| (e.clone(), Network::clone(n))))
            .collect()
    }
}

/// An engine over the recording executor with small test drivers, for the engine's own
/// tests and for crates above it (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod tests;

#[cfg(test)]
mod failure_tests;

#[cfg(test)]
mod recovery_tests;
