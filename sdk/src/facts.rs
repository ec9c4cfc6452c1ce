//! Host facts: what core tells a driver about the host so the driver can decide without
//! looking at the kernel itself.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One link on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HostLink {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Link kind (`bridge`, `veth`, `vlan`, `dummy`, ...); empty for a physical device.
    pub kind: String,
    /// MTU.
    pub mtu: u32,
    /// Whether the link is administratively up.
    pub up: bool,
    /// Whether the link is the loopback device.
    pub loopback: bool,
    /// Name of the bridge the link is enslaved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// MAC address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses on the link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpNet>,
    /// The link's own sysctls that drivers change, by dotted key, as they are now (for a
    /// bridge: `net.ipv4.conf.NAME.route_localnet`), so a driver adopting the link can plan
    /// to put each back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
}

/// How much of the host a driver's network calls see in [`HostFacts`]: a driver says which
/// in [`crate::NetworkCapabilities::host_facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FactsScope {
    /// Every link of the host, every route and every bridge of a wharf network. The cost of
    /// a network call then grows with the links on the host (one bridge per bridge
    /// network). The default, and what a plugin that does not say gets.
    #[default]
    All,
    /// Only what concerns the call (see [`HostFacts`]), so a network call costs the same
    /// with 1 or 1000 networks.
    Concerned,
}

/// Host facts handed to driver calls.
///
/// Network calls (`validate`, `create_network`, `delete_network`) get every field; how
/// many links, routes and bridges depends on the driver's [`FactsScope`]:
///
/// - [`FactsScope::All`]: every link of the host, the destinations of all its routes and
///   the bridges of all wharf networks.
/// - [`FactsScope::Concerned`]: `links` holds the links the call concerns: each link named
///   by the value of one of the network's options (and, for a value `BASE.N`, the link
///   `BASE`: a VLAN's parent), each link holding an address given as an option value or
///   the cluster VTEP, the default-route interfaces, and the host links the network's
///   plan made (at delete). `routes` holds the routes that overlap one of the network's
///   subnets; `wharf_bridges` the bridges of wharf networks among the names the call
///   concerns. A link that is absent from `links` is absent from the host, for every name
///   the call concerns. When a network's plan makes a host link of a name no option gives
///   (one the driver chose) and a link of that name is there, core calls `validate` and
///   `create_network` again with that link in `links`, so a driver never plans as new a
///   link that exists.
///
/// Endpoint calls (`create_endpoint`, `join`, `leave`, `delete_endpoint`) get the operator
/// settings only: `links`, `routes` and `wharf_bridges` are empty, so the cost of a connect
/// does not grow with the number of links on the host. A driver that needs a host fact at
/// join time records it in the network's state at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HostFacts {
    /// Links in the host namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<HostLink>,
    /// Interface of the IPv4 default route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_route_v4: Option<String>,
    /// Interface of the IPv6 default route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_route_v6: Option<String>,
    /// Destinations of the host's routes, default routes left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<IpNet>,
    /// The operator's default MTU, if configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mtu: Option<u32>,
    /// Bridge devices that belong to wharf networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wharf_bridges: Vec<String>,
    /// Directory under which volume drivers keep their data.
    pub volumes_dir: String,
    /// The largest file the filesystem holding `volumes_dir` can hold, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volumes_max_file_size: Option<u64>,
    /// Base directories under which `bind` volumes may point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bind_allowed_bases: Vec<String>,
    /// This host's VTEP address when it shares a cluster store with other hosts: core then
    /// programs where each remote endpoint lives, so a global-scope network needs neither
    /// learning nor flooding. Given to network calls only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_vtep: Option<std::net::IpAddr>,
}

impl HostFacts {
    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&HostLink> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The MTU to use by default: the operator's, else the default-route interface's, else 1500.
    pub fn mtu(&self) -> u32 {
        self.default_mtu
            .or_else(|| self.default_route_v4.as_deref().and_then(|d| self.link(d)).map(|l| l.mtu))
            .unwrap_or(1500)
    }
}
