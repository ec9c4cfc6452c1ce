//! The objects the engine keeps: networks, endpoints, sandboxes and volumes, as stored.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use wharf_sdk::{JoinInfo, PortBinding};

/// One address pool of a network and its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Pool {
    /// The subnet.
    pub subnet: Option<IpNet>,
    /// Sub-range dynamic addresses come from.
    pub ip_range: Option<IpNet>,
    /// Gateway address.
    pub gateway: Option<IpAddr>,
    /// Auxiliary addresses, reserved by name.
    pub aux: BTreeMap<String, IpAddr>,
    /// Addresses handed out: those of the network's endpoints. Not stored with the network,
    /// whose record is written on every connect and disconnect and would grow with each
    /// endpoint: the engine rebuilds it from the endpoints' records at start. A persistent
    /// set, so the copy of a network a connect makes shares it.
    #[serde(skip_serializing)]
    pub allocated: imbl::OrdSet<IpAddr>,
    /// Where the next dynamic search starts, so a freed address is not reused at once.
    pub cursor: Option<IpAddr>,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Network {
    /// 64-hex id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Driver name.
    pub driver: String,
    /// `local` or `global`.
    pub scope: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// No egress.
    pub internal: bool,
    /// Sandboxes may attach at will.
    pub attachable: bool,
    /// IPv4 enabled.
    pub enable_ipv4: bool,
    /// IPv6 enabled.
    pub enable_ipv6: bool,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Options no loaded driver reads: kept and shown, never passed to the driver.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unused_options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// IPAM driver options.
    pub ipam_options: BTreeMap<String, String>,
    /// IPv4 pools.
    pub ipv4: Vec<Pool>,
    /// IPv6 pools.
    pub ipv6: Vec<Pool>,
    /// Holds settings for other networks only (`--config-only`): no driver, no kernel object.
    pub config_only: bool,
    /// The configuration-only network this one took its settings from, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub config_from: String,
    /// Created by wharf itself (`host`, `none`, `bridge`); cannot be removed.
    pub predefined: bool,
    /// The driver's private state.
    pub state: wharf_sdk::DriverState,
    /// The plan that created the network in the kernel, re-applied to reconcile.
    pub plan: wharf_sdk::Plan,
    /// Indices of the plan's steps that found their object there (an adopted bridge, its
    /// address): removing the network leaves them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<usize>,
}

/// An endpoint: a sandbox's attachment to a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Endpoint {
    /// 64-hex id.
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// Sandbox id.
    pub sandbox_id: String,
    /// IPv4 address with prefix.
    pub ipv4: Option<IpNet>,
    /// IPv6 address with prefix.
    pub ipv6: Option<IpNet>,
    /// Whether the addresses were asked for (static) rather than allocated.
    pub static_ipv4: bool,
    /// Whether the IPv6 address was asked for.
    pub static_ipv6: bool,
    /// MAC address.
    pub mac: Option<String>,
    /// DNS aliases.
    pub aliases: Vec<String>,
    /// Published ports, each host port settled: a range or 0 is resolved to one port.
    pub ports: Vec<PortBinding>,
    /// Endpoint driver options.
    pub options: BTreeMap<String, String>,
    /// Endpoint options no loaded driver reads: kept and shown, never passed to the driver.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unused_options: BTreeMap<String, String>,
    /// Link-local addresses added to the endpoint's interface besides its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<IpAddr>,
    /// Gateway priority: of a sandbox's endpoints that offer a default route, the one with the
    /// highest gives it (Docker's `GwPriority`).
    pub gw_priority: i64,
    /// What the driver said at join.
    pub join: JoinInfo,
    /// The driver's private state.
    pub state: wharf_sdk::DriverState,
    /// The plan that connected the endpoint, re-applied to reconcile.
    pub plan: wharf_sdk::Plan,
    /// Indices of the plan's steps that found their object there: disconnecting leaves
    /// them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<usize>,
}

/// A sandbox: a network namespace wharf wires into networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Sandbox {
    /// 64-hex id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Path of the namespace file.
    pub netns: String,
    /// Whether wharf made the namespace (and removes it).
    pub owned: bool,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its own resolver settings (`--dns`, `--dns-search`, `--dns-option`).
    #[serde(skip_serializing_if = "DnsConfig::is_empty")]
    pub dns: DnsConfig,
}

/// A sandbox's own resolver settings; what is empty comes from the host's `resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DnsConfig {
    /// Upstream servers, in the order they are asked.
    pub servers: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
    /// Resolver options (`ndots:2`, `timeout:1`, ...).
    pub options: Vec<String>,
}

impl DnsConfig {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Volume {
    /// Name.
    pub name: String,
    /// Driver name.
    pub driver: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Where the data is.
    pub mountpoint: String,
    /// Ids currently holding a mount reference.
    pub mounts: BTreeSet<String>,
    /// The driver's private state.
    pub state: wharf_sdk::DriverState,
    /// Driver status, as last reported.
    pub status: BTreeMap<String, Value>,
    /// The plan that made the volume's directories and files. A record from before it was
    /// kept has none: all of its volume was made by wharf.
    #[serde(skip_serializing_if = "wharf_sdk::Plan::is_empty")]
    pub plan: wharf_sdk::Plan,
    /// Indices of the plan's steps that found their object there (a directory that stood
    /// before `volume create`): removing the volume, or a failed create, leaves them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<usize>,
}

/// The label that marks an anonymous volume.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

impl Volume {
    /// Whether the volume was created without a name.
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// A plan being carried out, written before its first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JournalEntry {
    /// What the plan is for.
    pub object: String,
    /// The plan.
    pub plan: wharf_sdk::Plan,
    /// A removal: the store already holds its outcome, so recovery after a crash carries
    /// the plan on to its end instead of undoing it.
    pub roll_forward: bool,
}
