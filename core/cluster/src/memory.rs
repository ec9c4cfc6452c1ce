//! [`MemoryStore`]: the cluster store in memory, for tests of the code above the store.
//! Several handles on one store stand for several hosts; a host's "lease" is its
//! registration, which [`MemoryStore::expire`] takes away as a lost etcd lease would.

use crate::error::{Error, Result};
use crate::ipam::next_free;
use crate::{
    check_vni, AddressOwner, AddressRange, ClusterEvent, ClusterStore, EndpointRecord, HostRecord, NetworkRecord,
    Snapshot, Watch, FIRST_VNI, LAST_VNI,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Shared {
    now: Snapshot,
    vnis: BTreeMap<u32, String>,
    addresses: BTreeMap<String, BTreeMap<IpAddr, AddressOwner>>,
    cursors: BTreeMap<String, IpAddr>,
    history: Vec<(i64, ClusterEvent)>,
    watchers: Vec<Sender<ClusterEvent>>,
}

impl Shared {
    fn emit(&mut self, event: ClusterEvent) {
        self.now.revision += 1;
        self.now.apply(&event);
        self.history.push((self.now.revision, event.clone()));
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }

    fn drop_host(&mut self, id: &str) {
        let gone: Vec<EndpointRecord> = self.now.endpoints.values().filter(|e| e.host == id).cloned().collect();
        for e in gone {
            self.emit(ClusterEvent::EndpointDown { network_id: e.network_id, endpoint_id: e.endpoint_id });
        }
        if self.now.hosts.contains_key(id) {
            self.emit(ClusterEvent::HostDown(id.to_string()));
        }
    }
}

/// The cluster store in memory; clone a handle with [`MemoryStore::another_host`].
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Mutex<Shared>>,
    host: Mutex<Option<HostRecord>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// An empty store, with a handle for one host.
    pub fn new() -> MemoryStore {
        MemoryStore { shared: Arc::default(), host: Mutex::new(None) }
    }

    /// A handle on the same store for another host.
    pub fn another_host(&self) -> MemoryStore {
        MemoryStore { shared: self.shared.clone(), host: Mutex::new(None) }
    }

    /// Take away host `id`'s registration and endpoints, as an expired lease does.
    pub fn expire(&self, id: &str) {
        self.lock().drop_host(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn host(&self) -> Result<HostRecord> {
        self.host.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(|| Error::NotJoined(self.name().into()))
    }
}

impl ClusterStore for MemoryStore {
    fn name(&self) -> &str {
        "memory"
    }

    fn join(&self, host: &HostRecord) -> Result<()> {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host.clone());
        self.lock().emit(ClusterEvent::HostUp(host.clone()));
        Ok(())
    }

    fn leave(&self) -> Result<()> {
        if let Some(h) = self.host.lock().unwrap_or_else(|p| p.into_inner()).take() {
            self.lock().drop_host(&h.id);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.lock().now.clone())
    }

    fn watch(&self, revision: i64) -> Result<Watch> {
        let (tx, rx) = channel();
        let mut shared = self.lock();
        for (_, e) in shared.history.iter().filter(|(r, _)| *r >= revision) {
            let _ = tx.send(e.clone());
        }
        shared.watchers.push(tx);
        Ok(Watch::new(rx, ()))
    }

    fn create_network(&self, mut network: NetworkRecord, vni: Option<u32>) -> Result<NetworkRecord> {
        let mut shared = self.lock();
        if shared.now.networks.values().any(|n| n.name == network.name) {
            return Err(Error::Conflict(format!("network with name {} already exists in the cluster", network.name)));
        }
        if shared.now.networks.contains_key(&network.id) {
            return Err(Error::Conflict(format!("network id {} already exists in the cluster", network.id)));
        }
        network.vni = match vni {
            Some(v) => {
                check_vni(v)?;
                if let Some(owner) = shared.vnis.get(&v) {
                    let name = shared.now.networks.get(owner).map_or(owner.as_str(), |n| n.name.as_str());
                    return Err(Error::Conflict(format!("VNI {v} is used by network {name}")));
                }
                v
            }
            None => (FIRST_VNI..=LAST_VNI)
                .find(|v| !shared.vnis.contains_key(v))
                .ok_or_else(|| Error::Conflict("every VNI is in use".into()))?,
        };
        shared.vnis.insert(network.vni, network.id.clone());
        shared.emit(ClusterEvent::NetworkUp(network.clone()));
        Ok(network)
    }

    fn remove_network(&self, id: &str) -> Result<()> {
        let mut shared = self.lock();
        let network =
            shared.now.networks.get(id).cloned().ok_or_else(|| Error::NotFound(format!("network {id} not found")))?;
        let hosts: BTreeSet<String> = shared
            .now
            .endpoints_of(id)
            .map(|e| shared.now.hosts.get(&e.host).map_or(e.host.clone(), |h| h.name.clone()))
            .collect();
        if !hosts.is_empty() {
            return Err(Error::InUse { network: network.name, hosts: hosts.into_iter().collect() });
        }
        shared.vnis.remove(&network.vni);
        shared.addresses.remove(id);
        shared.cursors.remove(id);
        shared.emit(ClusterEvent::NetworkDown(id.to_string()));
        Ok(())
    }

    fn allocate_address(
        &self,
        network_id: &str,
        ranges: &[AddressRange],
        wanted: Option<IpAddr>,
        owner: &AddressOwner,
    ) -> Result<IpAddr> {
        let mut shared = self.lock();
        let name = match shared.now.networks.get(network_id) {
            Some(n) => n.name.clone(),
            None => return Err(Error::NotFound(format!("network {network_id} not found in the cluster"))),
        };
        let taken: BTreeSet<IpAddr> =
            shared.addresses.get(network_id).into_iter().flat_map(|m| m.keys().copied()).collect();
        let ip = match wanted {
            Some(ip) if taken.contains(&ip) => return Err(Error::AddressInUse { network: name, address: ip }),
            Some(ip) => ip,
            None => next_free(ranges, &taken, shared.cursors.get(network_id).copied())
                .ok_or(Error::Exhausted { network: name })?,
        };
        shared.addresses.entry(network_id.to_string()).or_default().insert(ip, owner.clone());
        if wanted.is_none() {
            shared.cursors.insert(network_id.to_string(), ip);
        }
        Ok(ip)
    }

    fn release_address(&self, network_id: &str, address: IpAddr) -> Result<()> {
        if let Some(m) = self.lock().addresses.get_mut(network_id) {
            m.remove(&address);
        }
        Ok(())
    }

    fn addresses(&self, network_id: &str) -> Result<BTreeMap<IpAddr, AddressOwner>> {
        Ok(self.lock().addresses.get(network_id).cloned().unwrap_or_default())
    }

    fn publish_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
        let host = self.host()?;
        let mut shared = self.lock();
        if !shared.now.networks.contains_key(&endpoint.network_id) {
            return Err(Error::NotFound(format!("network {} not found in the cluster", endpoint.network_id)));
        }
        if !shared.now.hosts.contains_key(&host.id) {
            shared.emit(ClusterEvent::HostUp(host));
        }
        shared.emit(ClusterEvent::EndpointUp(endpoint.clone()));
        Ok(())
    }

    fn withdraw_endpoint(&self, network_id: &str, endpoint_id: &str) -> Result<()> {
        let mut shared = self.lock();
        if shared.now.endpoints.get(endpoint_id).is_some_and(|e| e.network_id == network_id) {
            shared.emit(ClusterEvent::EndpointDown {
                network_id: network_id.to_string(),
                endpoint_id: endpoint_id.to_string(),
            });
        }
        Ok(())
    }
}
