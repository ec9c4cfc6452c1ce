//! wharf's cluster store: what the hosts of a cluster share about global-scope (overlay)
//! networks, behind the [`ClusterStore`] trait.
//!
//! The store holds the hosts (each under a lease with a TTL, so a host that stops renewing
//! it disappears with everything it published), the network definitions (the same id, name,
//! subnets, options and VNI on every host), the VNIs in use, the addresses handed out on
//! each network, and the endpoints (address, MAC and the VTEP of the host holding them).
//! [`EtcdStore`] keeps all of it in etcd, changing several keys in one transaction where
//! they must agree; [`MemoryStore`] keeps it in memory with the same semantics, for tests
//! of the code above it. A host reads a [`Snapshot`] and then follows [`ClusterEvent`]s from
//! the snapshot's revision on, so it never misses a change.
//!
//! The API is synchronous: the engine calls it from blocking threads. Every call that needs
//! the store gives up after a few seconds with [`Error::Unavailable`], naming the store.

mod config;
mod error;
mod etcd;
mod ipam;
mod memory;

pub use config::{StoreConfig, TlsFiles};
pub use error::{Error, Result};
pub use etcd::EtcdStore;
pub use memory::MemoryStore;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The first VNI handed out, as Docker's overlay does; the ones below are left to other
/// users of VXLAN on the same underlay.
pub const FIRST_VNI: u32 = 4096;
/// The largest VNI VXLAN can carry (24 bits).
pub const LAST_VNI: u32 = (1 << 24) - 1;

/// A host of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's id: the wharfd instance id, stable across restarts.
    pub id: String,
    /// The host's name, for messages.
    pub name: String,
    /// The underlay address other hosts send VXLAN traffic for this host's endpoints to.
    pub vtep: IpAddr,
}

/// A global-scope network, as every host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// 64-hex network id.
    pub id: String,
    /// Network name, unique in the cluster.
    pub name: String,
    /// VXLAN network identifier, unique in the cluster.
    pub vni: u32,
    /// The host that created it.
    pub created_by: String,
    /// The network as the engine defines it (driver, subnets, options, labels), kept
    /// opaque here: every host builds its own from it.
    pub definition: serde_json::Value,
}

/// An endpoint on a global-scope network, as other hosts need it to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The network's id.
    pub network_id: String,
    /// 64-hex endpoint id.
    pub endpoint_id: String,
    /// The id of the host holding it.
    pub host: String,
    /// That host's VTEP address.
    pub vtep: IpAddr,
    /// The endpoint's MAC address.
    pub mac: String,
    /// Its IPv4 address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<IpAddr>,
    /// Its IPv6 address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<IpAddr>,
    /// The sandbox's name and aliases on the network, for name resolution across hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The id of the sandbox holding it, whose short form resolves as a name too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// Everything the store holds about hosts, networks and endpoints, as of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The store revision the snapshot was read at; follow changes from the next one.
    pub revision: i64,
    /// Live hosts, by id.
    pub hosts: BTreeMap<String, HostRecord>,
    /// Networks, by id.
    pub networks: BTreeMap<String, NetworkRecord>,
    /// Endpoints of live hosts, by endpoint id.
    pub endpoints: BTreeMap<String, EndpointRecord>,
}

impl Snapshot {
    /// Apply one change, as a host following the store does.
    pub fn apply(&mut self, event: &ClusterEvent) {
        match event {
            ClusterEvent::Resync(s) => *self = s.clone(),
            ClusterEvent::HostUp(h) => {
                self.hosts.insert(h.id.clone(), h.clone());
            }
            ClusterEvent::HostDown(id) => {
                self.hosts.remove(id);
            }
            ClusterEvent::NetworkUp(n) => {
                self.networks.insert(n.id.clone(), n.clone());
            }
            ClusterEvent::NetworkDown(id) => {
                self.networks.remove(id);
            }
            ClusterEvent::EndpointUp(e) => {
                self.endpoints.insert(e.endpoint_id.clone(), e.clone());
            }
            ClusterEvent::EndpointDown { endpoint_id, .. } => {
                self.endpoints.remove(endpoint_id);
            }
        }
    }

    /// The endpoints on network `id`.
    pub fn endpoints_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.endpoints.values().filter(move |e| e.network_id == id)
    }
}

/// One change in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// The changes since the last event cannot be told one by one (the store compacted
    /// its history past them): here is everything as it stands.
    Resync(Snapshot),
    /// A host joined, or came back.
    HostUp(HostRecord),
    /// A host left or its lease expired; its endpoints go with it (each has its own event).
    HostDown(String),
    /// A network was created.
    NetworkUp(NetworkRecord),
    /// A network was removed.
    NetworkDown(String),
    /// An endpoint was published.
    EndpointUp(EndpointRecord),
    /// An endpoint was withdrawn, or its host's lease expired.
    EndpointDown {
        /// The network's id.
        network_id: String,
        /// The endpoint's id.
        endpoint_id: String,
    },
}

/// The changes after a revision, in order, as a host receives them. Dropping it stops the
/// watch.
#[derive(Debug)]
pub struct Watch {
    events: Receiver<ClusterEvent>,
    _stop: Box<dyn std::any::Any + Send>,
}

impl Watch {
    fn new(events: Receiver<ClusterEvent>, stop: impl std::any::Any + Send) -> Watch {
        Watch { events, _stop: Box::new(stop) }
    }

    /// The next change, waiting at most `timeout`; `None` when none came in time.
    pub fn next_timeout(&self, timeout: Duration) -> Option<ClusterEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next change, waiting for it; `None` once the watch has ended.
    pub fn next(&self) -> Option<ClusterEvent> {
        self.events.recv().ok()
    }
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressOwner {
    /// The host's id.
    pub host: String,
    /// The endpoint's id.
    pub endpoint: String,
}

/// The addresses of one subnet that a network may hand out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRange {
    /// The range to take from (the subnet, or its `--ip-range`).
    pub range: IpNet,
    /// Addresses in it that are never handed out: the subnet's network and broadcast
    /// addresses, the gateway, auxiliary addresses.
    pub reserved: Vec<IpAddr>,
}

/// The store the hosts of a cluster share. One host and many go through the same calls.
pub trait ClusterStore: Send + Sync + std::fmt::Debug {
    /// The store's address, as errors name it (`etcd://10.0.0.1:2379`).
    fn name(&self) -> &str;

    /// Register this host under a lease that the store keeps renewing until
    /// [`ClusterStore::leave`]; when the lease is lost (the store was away longer than its
    /// TTL) the host and every endpoint it published are registered again.
    fn join(&self, host: &HostRecord) -> Result<()>;

    /// Revoke this host's lease: its registration and endpoints go at once.
    fn leave(&self) -> Result<()>;

    /// Everything as it stands, with the revision to follow changes from.
    fn snapshot(&self) -> Result<Snapshot>;

    /// Follow the changes made after `revision`. If the store no longer has them all, the
    /// watch starts with a [`ClusterEvent::Resync`]; if the store goes away, the watch
    /// carries on from where it was when it comes back.
    fn watch(&self, revision: i64) -> Result<Watch>;

    /// Create a network: its name must be free in the cluster. It gets the VNI `vni`
    /// asks for, or the lowest free one from [`FIRST_VNI`]. Returns the record as stored.
    fn create_network(&self, network: NetworkRecord, vni: Option<u32>) -> Result<NetworkRecord>;

    /// Remove a network, its VNI and its addresses, unless a host has endpoints on it:
    /// then [`Error::InUse`] names those hosts.
    fn remove_network(&self, id: &str) -> Result<()>;

    /// Hand out an address of network `network_id` to `owner`: `wanted` when it is free,
    /// else the next free one of `ranges` after the last one handed out.
    fn allocate_address(
        &self,
        network_id: &str,
        ranges: &[AddressRange],
        wanted: Option<IpAddr>,
        owner: &AddressOwner,
    ) -> Result<IpAddr>;

    /// Give an address of network `network_id` back; nothing happens if it is not held.
    fn release_address(&self, network_id: &str, address: IpAddr) -> Result<()>;

    /// The addresses handed out on a network, with their owners.
    fn addresses(&self, network_id: &str) -> Result<BTreeMap<IpAddr, AddressOwner>>;

    /// Publish an endpoint of this host, under its lease. Fails if the network is gone.
    fn publish_endpoint(&self, endpoint: &EndpointRecord) -> Result<()>;

    /// Withdraw an endpoint of this host.
    fn withdraw_endpoint(&self, network_id: &str, endpoint_id: &str) -> Result<()>;
}

/// The key layout, shared by both stores: everything lives under one prefix.
mod keys {
    pub const HOSTS: &str = "hosts/";
    pub const NETWORKS: &str = "networks/";
    pub const NAMES: &str = "names/";
    pub const VNIS: &str = "vnis/";
    pub const ADDRESSES: &str = "addresses/";
    pub const CURSORS: &str = "cursors/";
    pub const ENDPOINTS: &str = "endpoints/";

    /// A key below the prefix, read back into what it names.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Key<'a> {
        Host(&'a str),
        Network(&'a str),
        Endpoint { network: &'a str, endpoint: &'a str },
        Other,
    }

    pub fn parse(rest: &str) -> Key<'_> {
        if let Some(id) = rest.strip_prefix(HOSTS) {
            Key::Host(id)
        } else if let Some(id) = rest.strip_prefix(NETWORKS) {
            Key::Network(id)
        } else if let Some((network, endpoint)) = rest.strip_prefix(ENDPOINTS).and_then(|r| r.split_once('/')) {
            Key::Endpoint { network, endpoint }
        } else {
            Key::Other
        }
    }

    pub fn endpoint(network: &str, endpoint: &str) -> String {
        format!("{ENDPOINTS}{network}/{endpoint}")
    }

    pub fn endpoints_of(network: &str) -> String {
        format!("{ENDPOINTS}{network}/")
    }

    pub fn addresses_of(network: &str) -> String {
        format!("{ADDRESSES}{network}/")
    }

    pub fn address(network: &str, ip: std::net::IpAddr) -> String {
        format!("{ADDRESSES}{network}/{ip}")
    }
}

/// Check a VNI the operator asked for.
fn check_vni(vni: u32) -> Result<()> {
    if (1..=LAST_VNI).contains(&vni) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("VNI {vni} is not between 1 and {LAST_VNI}")))
    }
}

#[cfg(test)]
mod tests;
