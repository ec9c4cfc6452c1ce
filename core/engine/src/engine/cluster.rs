//! Global-scope networks: the engine's side of the cluster store.
//!
//! With a cluster store, a network whose driver has global scope is created once for the
//! cluster (the store gives it its VNI and makes its name unique), every host creates it
//! locally from the store's record with the same id, name, subnets and options, addresses
//! come from the store's IPAM, and each endpoint is published with its address, MAC and
//! this host's VTEP. A follower thread keeps the host in line with the store: it creates and
//! removes other hosts' networks, and programs a static FDB entry and neighbour entries on
//! the network's VXLAN device for every remote endpoint, through journaled plans. What it
//! programmed is kept in the state store, so a restarted daemon programs it again and takes
//! away what went meanwhile. Without a cluster store nothing here runs.

use super::{Author, Engine, State};
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network, Pool, Sandbox};
use crate::store::Table;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use wharf_cluster::{
    AddressOwner, AddressRange, ClusterEvent, ClusterStore, EndpointRecord, HostRecord, NetworkRecord, Snapshot,
};
use wharf_dns::{Entry, Origin};
use wharf_sdk::{LinkKind, Netns, Op, Plan, Step};

/// Docker's option naming an overlay network's VXLAN id, which `network inspect` shows; a
/// global network carries the VNI the cluster store gave it under this name.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The state-store key of the remote entries programmed on this host.
const PROGRAMMED: &str = "cluster_programmed";

/// How long the follower waits before trying an unreachable store again.
const RETRY: Duration = Duration::from_secs(1);

/// The cluster this engine belongs to.
#[derive(Debug)]
pub(super) struct Cluster {
    store: Arc<dyn ClusterStore>,
    host: HostRecord,
    /// The store as the follower last saw it; holding it serialises the follower's passes.
    view: Mutex<Snapshot>,
    /// The networks whose remote endpoints' names the resolver holds.
    named: Mutex<BTreeSet<String>>,
}

/// A remote endpoint as programmed on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Programmed {
    network_id: String,
    device: String,
    mac: String,
    vtep: IpAddr,
    addresses: Vec<IpAddr>,
}

impl Programmed {
    fn plan(&self) -> Plan {
        let mut plan = Plan::new();
        plan.push(Step::fdb_add(Netns::Host, &self.device, &self.mac, Some(self.vtep)));
        for address in &self.addresses {
            let op = Op::NeighAdd {
                netns: Netns::Host,
                device: self.device.clone(),
                address: *address,
                mac: self.mac.clone(),
            };
            let undo = op.plain_undo().expect("a neighbour entry has a plain undo");
            plan.push(Step::new(op, undo));
        }
        plan
    }
}

/// The resolver's entry for another host's endpoint: its first name is the sandbox's,
/// the others are aliases.
fn remote_entry(e: &EndpointRecord) -> Entry {
    let mut names = e.names.iter().cloned();
    Entry {
        sandbox: e.sandbox.clone(),
        name: names.next().unwrap_or_default(),
        aliases: names.collect(),
        ipv4: e.ipv4.iter().find_map(|a| if let IpAddr::V4(v4) = a { Some(*v4) } else { None }),
        ipv6: e.ipv6.iter().find_map(|a| if let IpAddr::V6(v6) = a { Some(*v6) } else { None }),
        origin: Origin::Cluster(e.host.clone()),
    }
}

/// The engine's error for a cluster store error: a store that cannot be reached is 503,
/// a network that still has endpoints 409.
pub(super) fn cluster_error(e: wharf_cluster::Error) -> Error {
    use wharf_cluster::Error as E;
    match e {
        E::Unavailable { .. } => Error::Unavailable(e.to_string()),
        E::Conflict(_) | E::InUse { .. } => Error::Conflict(e.to_string()),
        E::NotFound(_) => Error::NotFound(e.to_string()),
        E::Exhausted { .. } | E::AddressInUse { .. } => Error::Forbidden(e.to_string()),
        E::Invalid(_) => Error::InvalidArgument(e.to_string()),
        E::Corrupt { .. } | E::NotJoined(_) => Error::Internal(e.to_string()),
    }
}

/// The network's VXLAN device, from the plan that created it.
fn vxlan_device(network: &Network) -> Option<String> {
    network.plan.ops().find_map(|op| match op {
        Op::LinkAdd { link, .. } if matches!(link.kind, LinkKind::Vxlan { .. }) => Some(link.name.clone()),
        _ => None,
    })
}

/// The ranges the cluster hands a pool's addresses out of.
fn ranges(pools: &[Pool]) -> Vec<AddressRange> {
    pools
        .iter()
        .filter_map(|p| {
            let subnet = p.subnet?;
            let mut reserved = vec![subnet.network()];
            if subnet.addr().is_ipv4() && subnet.prefix_len() < 31 {
                reserved.push(subnet.broadcast());
            }
            reserved.extend(p.gateway);
            reserved.extend(p.aux.values().copied());
            Some(AddressRange { range: p.ip_range.unwrap_or(subnet), reserved })
        })
        .collect()
}

/// What a network record defines: the network as every host creates it, without this
/// host's driver state, plan or allocations.
fn definition(network: &Network) -> serde_json::Value {
    let mut n = network.clone();
    n.state = wharf_sdk::DriverState::null();
    n.plan = Plan::new();
    n.found = Vec::new();
    for pool in n.ipv4.iter_mut().chain(n.ipv6.iter_mut()) {
        pool.allocated.clear();
        pool.cursor = None;
    }
    serde_json::to_value(&n).expect("a network serialises")
}

impl Engine {
    /// Join the cluster behind `store` as `host`: from now on, global-scope networks live
    /// in the store. A thread registers this host (again, until the store answers),
    /// publishes its endpoints and follows the store.
    pub fn join_cluster(self: &Arc<Self>, store: Arc<dyn ClusterStore>, host: HostRecord) -> Result<()> {
        let cluster = Cluster { store, host, view: Mutex::new(Snapshot::default()), named: Mutex::default() };
        self.cluster.set(cluster).map_err(|_| Error::Internal("this engine has joined a cluster already".into()))?;
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("wharf-cluster".into())
            .spawn(move || follow(weak))
            .map_err(|e| Error::Internal(format!("cannot start the cluster follower: {e}")))?;
        Ok(())
    }

    /// The cluster, when `network` lives in it.
    pub(super) fn global(&self, network: &Network) -> Option<&Cluster> {
        self.cluster.get().filter(|_| network.scope == wharf_sdk::Scope::Global.as_str())
    }

    /// The scope a new network of a driver with `scope` gets: global only with a cluster.
    pub(super) fn scope_of(&self, scope: wharf_sdk::Scope) -> &'static str {
        match scope {
            wharf_sdk::Scope::Global if self.cluster.get().is_some() => wharf_sdk::Scope::Global.as_str(),
            _ => wharf_sdk::Scope::Local.as_str(),
        }
    }

    /// The endpoints other hosts have on network `id` (any id, name or prefix), as the
    /// store last said: their addresses and the names (sandbox name, aliases) a resolver
    /// answers for them. Empty for a network that is not global.
    pub fn remote_endpoints(&self, id: &str) -> Result<Vec<EndpointRecord>> {
        let network = self.read().network(id)?.clone();
        let Some(cluster) = self.global(&network) else { return Ok(Vec::new()) };
        let view = cluster.view.lock().unwrap_or_else(|p| p.into_inner());
        Ok(view.endpoints_of(&network.id).filter(|e| e.host != cluster.host.id).cloned().collect())
    }

    /// This host's VTEP, for the drivers' host facts.
    pub(super) fn cluster_vtep(&self) -> Option<IpAddr> {
        self.cluster.get().map(|c| c.host.vtep)
    }

    /// Put a new global network in the store: it takes its name and a VNI there (the one
    /// its options ask for, or a free one), which it carries in its options.
    pub(super) fn publish_network(&self, network: &mut Network) -> Result<()> {
        let Some(cluster) = self.global(network) else { return Ok(()) };
        let vni = match network.options.get(VNI_OPTION) {
            Some(v) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| Error::InvalidArgument(format!("option {VNI_OPTION}={v:?} is not a VNI")))?,
            ),
            None => None,
        };
        let record = NetworkRecord {
            id: network.id.clone(),
            name: network.name.clone(),
            vni: 0,
            created_by: cluster.host.id.clone(),
            definition: definition(network),
        };
        let record = cluster.store.create_network(record, vni).map_err(cluster_error)?;
        network.options.insert(VNI_OPTION.to_string(), record.vni.to_string());
        Ok(())
    }

    /// Take a global network out of the store, unless a host still has endpoints on it. A
    /// network the store no longer has (removed by another host) goes locally as well.
    pub(super) fn unpublish_network(&self, network: &Network) -> Result<()> {
        let Some(cluster) = self.global(network) else { return Ok(()) };
        match cluster.store.remove_network(&network.id) {
            Ok(()) | Err(wharf_cluster::Error::NotFound(_)) => Ok(()),
            Err(e) => Err(cluster_error(e)),
        }
    }

    /// Connect to a global network: the addresses come from the store, then the endpoint
    /// is made as on any network, then published. A failure on the way gives the
    /// addresses back.
    pub(super) fn connect_global(
        &self,
        cluster: &Cluster,
        state: &mut State,
        network: &Network,
        mut req: super::ConnectRequest,
    ) -> Result<Endpoint> {
        let sandbox = state.sandbox(&req.sandbox)?.clone();
        let owner = AddressOwner { host: cluster.host.id.clone(), endpoint: sandbox.id.clone() };
        let store = &cluster.store;
        let mut taken = Vec::new();
        let families = [(&network.ipv4, req.ipv4, true), (&network.ipv6, req.ipv6, network.enable_ipv6)];
        for (pools, wanted, enabled) in families {
            if pools.is_empty() || !enabled {
                continue;
            }
            match store.allocate_address(&network.id, &ranges(pools), wanted, &owner) {
                Ok(ip) => taken.push(ip),
                Err(e) => {
                    self.release_addresses(cluster, &network.id, &taken);
                    return Err(cluster_error(e));
                }
            }
        }
        let static_v4 = req.ipv4.is_some();
        let static_v6 = req.ipv6.is_some();
        // An address asked for on a family the network does not hand out stays in the
        // request, for the connect to refuse as on any network.
        req.ipv4 = taken.iter().copied().find(IpAddr::is_ipv4).or(req.ipv4);
        req.ipv6 = taken.iter().copied().find(IpAddr::is_ipv6).or(req.ipv6);
        let mut endpoint = match self.connect_locked(state, req) {
            Ok(e) => e,
            Err(e) => {
                self.release_addresses(cluster, &network.id, &taken);
                return Err(e);
            }
        };
        endpoint.static_ipv4 = static_v4;
        endpoint.static_ipv6 = static_v6;
        self.store.write(|t| t.put(Table::Endpoints, &endpoint.id, &endpoint))?;
        state.put_endpoint(Arc::new(endpoint.clone()));
        if let Err(e) = cluster.store.publish_endpoint(&self.endpoint_record(cluster, &sandbox, &endpoint)) {
            // Not published, so not reachable from other hosts: take it away again.
            if let Err(undo) = self.disconnect_locked(state, &endpoint, true) {
                tracing::warn!(error = %undo, "cannot undo an endpoint that could not be published");
            }
            return Err(cluster_error(e));
        }
        Ok(endpoint)
    }

    fn endpoint_record(&self, cluster: &Cluster, sandbox: &Sandbox, endpoint: &Endpoint) -> EndpointRecord {
        let mut names = vec![sandbox.name.clone()];
        names.extend(endpoint.aliases.iter().cloned());
        EndpointRecord {
            network_id: endpoint.network_id.clone(),
            endpoint_id: endpoint.id.clone(),
            host: cluster.host.id.clone(),
            vtep: cluster.host.vtep,
            mac: endpoint.mac.clone().unwrap_or_default(),
            ipv4: endpoint.ipv4.map(|a| a.addr()),
            ipv6: endpoint.ipv6.map(|a| a.addr()),
            names,
            sandbox: sandbox.id.clone(),
        }
    }

    fn release_addresses(&self, cluster: &Cluster, network_id: &str, addresses: &[IpAddr]) {
        for ip in addresses {
            if let Err(e) = cluster.store.release_address(network_id, *ip) {
                tracing::warn!(network = network_id, address = %ip, error = %e, "cannot give an address back");
            }
        }
    }

    /// Before an endpoint of a global network goes: withdraw it from the store, so no host
    /// sends it traffic any more. Fails, changing nothing, when the store cannot be reached.
    pub(super) fn withdraw_endpoint(&self, network: &Network, endpoint: &Endpoint) -> Result<()> {
        let Some(cluster) = self.global(network) else { return Ok(()) };
        cluster.store.withdraw_endpoint(&network.id, &endpoint.id).map_err(cluster_error)
    }

    /// After an endpoint of a global network went: give its addresses back.
    pub(super) fn release_endpoint(&self, network: &Network, endpoint: &Endpoint) {
        let Some(cluster) = self.global(network) else { return };
        let addresses: Vec<IpAddr> = endpoint.ipv4.iter().chain(&endpoint.ipv6).map(|a| a.addr()).collect();
        self.release_addresses(cluster, &network.id, &addresses);
    }

    /// Register this host and publish its endpoints on global networks.
    fn register(&self, cluster: &Cluster) -> wharf_cluster::Result<()> {
        cluster.store.join(&cluster.host)?;
        let state = self.read();
        for e in state.endpoints().values() {
            let Some(network) = state.networks().get(&e.network_id).filter(|n| self.global(n).is_some()) else {
                continue;
            };
            let none = Sandbox::default();
            let sandbox = state.sandboxes().get(&e.sandbox_id).map_or(&none, |s| s);
            match cluster.store.publish_endpoint(&self.endpoint_record(cluster, sandbox, e)) {
                Ok(()) => {}
                Err(wharf_cluster::Error::NotFound(_)) => {
                    tracing::warn!(network = %network.name, "network is gone from the cluster; its endpoint stays local")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Bring this host in line with `view`: create the global networks it lacks, remove
    /// those the cluster no longer has, and program exactly the remote endpoints.
    fn converge(&self, cluster: &Cluster, view: &Snapshot, full: bool) {
        let mut seen = cluster.view.lock().unwrap_or_else(|p| p.into_inner());
        seen.clone_from(view);
        for record in view.networks.values() {
            if let Err(e) = self.adopt_network(record) {
                tracing::warn!(network = %record.name, error = %e.message(), "cannot create a cluster network here");
            }
        }
        let gone: Vec<Network> = self
            .read()
            .networks()
            .values()
            .filter(|n| self.global(n).is_some() && !view.networks.contains_key(&n.id))
            .map(|n| Network::clone(n))
            .collect();
        for network in gone {
            let mut state = self.lock();
            if state.endpoints_of_network(&network.id).next().is_some() {
                tracing::warn!(network = %network.name, "network left the cluster but has endpoints here; kept");
                continue;
            }
            match self.remove_network_locked(&mut state, &network) {
                Ok(()) => tracing::info!(network = %network.name, "network removed from the cluster"),
                Err(e) => tracing::warn!(network = %network.name, error = %e.message(), "cannot remove network"),
            }
        }
        if let Err(e) = self.program(cluster, view, full) {
            tracing::warn!(error = %e.message(), "cannot program remote endpoints");
        }
        self.remote_names(cluster, view);
    }

    /// Give the resolver the names of other hosts' endpoints on global networks with DNS,
    /// one [`Origin::Cluster`] per host, as `view` has them: a sandbox here then resolves a
    /// sandbox on another host that shares an overlay network with it, until that
    /// endpoint is withdrawn or its host's lease expires. Names on a network that went from
    /// this host, or that resolves no names, go.
    fn remote_names(&self, cluster: &Cluster, view: &Snapshot) {
        let Some(resolver) = &self.dns else { return };
        let table = resolver.table();
        // Per network, per host, the entries the table should hold.
        let mut want: BTreeMap<String, BTreeMap<String, Vec<Entry>>> = BTreeMap::new();
        {
            let state = self.read();
            for network in state.networks().values().filter(|n| self.global(n).is_some() && super::dns::has_dns(n)) {
                let hosts = want.entry(network.id.clone()).or_default();
                for e in view.endpoints_of(&network.id).filter(|e| e.host != cluster.host.id) {
                    hosts.entry(e.host.clone()).or_default().push(remote_entry(e));
                }
            }
        }
        let mut named = cluster.named.lock().unwrap_or_else(|p| p.into_inner());
        for id in named.iter() {
            want.entry(id.clone()).or_default();
        }
        for (network, mut hosts) in want {
            let mut have: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
            for e in table.entries(&network) {
                if let Origin::Cluster(host) = &e.origin {
                    have.entry(host.clone()).or_default().push(e);
                }
            }
            for host in have.keys() {
                hosts.entry(host.clone()).or_default();
            }
            let mut any = false;
            for (host, entries) in hosts {
                any |= !entries.is_empty();
                if have.get(&host).map_or(&[][..], Vec::as_slice) != entries.as_slice() {
                    table.replace(&network, &Origin::Cluster(host), entries);
                }
            }
            if any {
                named.insert(network);
            } else {
                named.remove(&network);
            }
        }
    }

    /// Create a network another host put in the cluster, with its id, unless it is here.
    fn adopt_network(&self, record: &NetworkRecord) -> Result<()> {
        let mut state = self.lock();
        if state.networks().contains_key(&record.id) {
            return Ok(());
        }
        if state.network_named(&record.name) {
            return Err(Error::Conflict(format!("a local network is named {} too", record.name)));
        }
        let mut network: Network = serde_json::from_value(record.definition.clone())
            .map_err(|e| Error::Internal(format!("network {} in the cluster store: {e}", record.name)))?;
        network.options.insert(VNI_OPTION.to_string(), record.vni.to_string());
        network.scope = wharf_sdk::Scope::Global.as_str().to_string();
        let mut facts = self.network_facts(&state, &network.driver, &network.options, &Plan::new())?;
        self.narrow_routes(&mut facts, &network);
        let created = self.realize_network(&mut state, network, facts)?;
        tracing::info!(network = %created.name, id = %created.id, "network joined from the cluster");
        Ok(())
    }

    /// Program the remote endpoints of `view` on the VXLAN devices of global networks, and
    /// take away what is programmed but no longer there. With `full`, entries already
    /// programmed are programmed again (every step is idempotent), for a restarted daemon
    /// whose devices may have been made anew.
    fn program(&self, cluster: &Cluster, view: &Snapshot, full: bool) -> Result<()> {
        // Plans are carried out one at a time: hold the engine's lock as every operation does.
        let guard = self.lock();
        let state: &State = &guard;
        let mut want: BTreeMap<String, Programmed> = BTreeMap::new();
        for e in view.endpoints.values().filter(|e| e.host != cluster.host.id) {
            let Some(network) = state.networks().get(&e.network_id).filter(|n| self.global(n).is_some()) else {
                continue;
            };
            let Some(device) = vxlan_device(network) else { continue };
            let entry = Programmed {
                network_id: e.network_id.clone(),
                device,
                mac: e.mac.clone(),
                vtep: e.vtep,
                addresses: e.ipv4.iter().chain(&e.ipv6).copied().collect(),
            };
            want.insert(e.endpoint_id.clone(), entry);
        }
        let have: BTreeMap<String, Programmed> = self.store.get(Table::Meta, PROGRAMMED)?.unwrap_or_default();
        // Entries of a network that went went with its device.
        let mut done: BTreeMap<String, Programmed> = have
            .iter()
            .filter(|(_, e)| state.networks().contains_key(&e.network_id))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if done != have {
            self.store.write(|t| t.put(Table::Meta, PROGRAMMED, &done))?;
        }
        // What changes, per network: one journaled plan and one commit for all of it.
        let mut changes: BTreeMap<String, Vec<Change>> = BTreeMap::new();
        for (id, entry) in &done {
            if want.get(id) != Some(entry) {
                changes.entry(entry.network_id.clone()).or_default().push(Change::Remove(id.clone(), entry.clone()));
            }
        }
        for (id, entry) in &want {
            if full || done.get(id) != Some(entry) {
                changes.entry(entry.network_id.clone()).or_default().push(Change::Add(id.clone(), entry.clone()));
            }
        }
        for (network_id, batch) in changes {
            let Some(network) = state.networks().get(&network_id) else { continue };
            if let Err(e) = self.apply_changes(network, &batch, &mut done) {
                // One bad entry must not hold the others back: one at a time, then.
                tracing::warn!(network = %network.name, error = %e.message(), "programming remote endpoints one by one");
                for change in batch {
                    if let Err(e) = self.apply_changes(network, std::slice::from_ref(&change), &mut done) {
                        tracing::warn!(network = %network.name, error = %e.message(), "cannot program a remote endpoint");
                    }
                }
            }
        }
        Ok(())
    }

    /// Carry out `changes` on `network`'s device as one journaled plan, committing what is
    /// programmed afterwards (`done`, updated) in the same transaction.
    fn apply_changes(
        &self,
        network: &Network,
        changes: &[Change],
        done: &mut BTreeMap<String, Programmed>,
    ) -> Result<()> {
        let mut plan = Plan::new();
        let mut after = done.clone();
        for change in changes {
            match change {
                Change::Remove(id, entry) => {
                    plan.extend(entry.plan().inverse());
                    after.remove(id);
                }
                Change::Add(id, entry) => {
                    plan.extend(entry.plan());
                    after.insert(id.clone(), entry.clone());
                }
            }
        }
        let object = format!("remote endpoints of network {}", network.name);
        self.apply(Author::Driver(&network.driver), &object, &plan, |t| t.put(Table::Meta, PROGRAMMED, &after))?;
        *done = after;
        Ok(())
    }
}

/// A change to the remote endpoints programmed on this host.
#[derive(Debug, Clone)]
enum Change {
    Add(String, Programmed),
    Remove(String, Programmed),
}

/// The follower: register, then read the store and follow it, converging after every
/// change; start over whenever the store cannot be read. Ends with the engine.
fn follow(engine: Weak<Engine>) {
    let mut registered = false;
    loop {
        let Some(e) = engine.upgrade() else { return };
        let cluster = e.cluster.get().expect("the follower runs for a cluster");
        if !registered {
            match e.register(cluster) {
                Ok(()) => registered = true,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot join the cluster yet; trying again");
                    drop(e);
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
        }
        let mut view = match cluster.store.snapshot() {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the cluster store; trying again");
                drop(e);
                std::thread::sleep(RETRY);
                continue;
            }
        };
        e.converge(cluster, &view, true);
        let watch = match cluster.store.watch(view.revision + 1) {
            Ok(w) => w,
            Err(err) => {
                tracing::warn!(error = %err, "cannot follow the cluster store; trying again");
                drop(e);
                std::thread::sleep(RETRY);
                continue;
            }
        };
        drop(e);
        loop {
            let Some(event) = watch.next_timeout(RETRY) else {
                if engine.strong_count() == 0 {
                    return;
                }
                continue;
            };
            let full = matches!(event, ClusterEvent::Resync(_));
            view.apply(&event);
            // Take in whatever else is queued before converging once.
            while let Some(more) = watch.next_timeout(Duration::ZERO) {
                view.apply(&more);
            }
            let Some(e) = engine.upgrade() else { return };
            let cluster = e.cluster.get().expect("the follower runs for a cluster");
            e.converge(cluster, &view, full);
        }
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
