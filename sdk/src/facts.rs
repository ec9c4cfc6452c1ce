//! Host facts: what core tells a driver about the host so the driver can decide without
//! looking at the kernel itself.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

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
    pub master: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// Addresses on the link.
    pub addresses: Vec<IpNet>,
}

/// Host facts handed to every driver call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HostFacts {
    /// Links in the host namespace.
    pub links: Vec<HostLink>,
    /// Interface of the IPv4 default route.
    pub default_route_v4: Option<String>,
    /// Interface of the IPv6 default route.
    pub default_route_v6: Option<String>,
    /// Destinations of the host's routes, default routes left out.
    pub routes: Vec<IpNet>,
    /// The operator's default MTU, if configured.
    pub default_mtu: Option<u32>,
    /// Bridge devices that belong to wharf networks.
    pub wharf_bridges: Vec<String>,
    /// Directory under which volume drivers keep their data.
    pub volumes_dir: String,
    /// Base directories under which `bind` volumes may point.
    pub bind_allowed_bases: Vec<String>,
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
