//! What operations name: namespaces, links and their kinds and changes, routes, ports' protocols,
//! gateway modes, firewall facts and mounts.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Which network namespace an operation runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Netns {
    /// The namespace wharfd itself runs in (the "host").
    #[default]
    Host,
    /// A namespace named by a file, such as `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(String),
}

/// The mode of a macvlan link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MacvlanMode {
    /// Endpoints on one parent talk to each other through the parent.
    #[default]
    Bridge,
    /// Endpoints on one parent cannot talk to each other.
    Private,
    /// Traffic between endpoints is hairpinned by the upstream switch.
    Vepa,
    /// The single endpoint takes over the parent.
    Passthru,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The kind of link to create, with its kind-specific settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// A veth pair. The link is created in the step's namespace; its peer is created
    /// directly inside `peer_netns`, named `peer`.
    Veth {
        /// Name of the peer end.
        peer: String,
        /// Namespace the peer end is created in.
        peer_netns: Netns,
        /// MAC address of the peer end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer_mac: Option<String>,
    },
    /// A VXLAN device.
    Vxlan {
        /// VXLAN network identifier.
        vni: u32,
        /// UDP destination port.
        port: u16,
        /// Local underlay address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        local: Option<IpAddr>,
        /// Underlay device.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        underlay: Option<String>,
        /// Whether the device learns remote MACs from traffic.
        #[serde(default)]
        learning: bool,
        /// Whether the device answers ARP and neighbour solicitations from its own
        /// neighbour table instead of sending them to remote hosts.
        #[serde(default, skip_serializing_if = "is_false")]
        proxy: bool,
    },
    /// A macvlan link on `parent`.
    Macvlan {
        /// Parent link, in the step's namespace.
        parent: String,
        /// Macvlan mode.
        mode: MacvlanMode,
        /// Namespace to move the new link into, already named `name` there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_netns: Option<Netns>,
    },
    /// An 802.1Q sub-interface of `parent`.
    Vlan {
        /// Parent link.
        parent: String,
        /// VLAN id, 1 to 4094.
        id: u16,
    },
    /// A dummy link.
    Dummy,
}

/// A link to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Interface name (at most 15 bytes).
    pub name: String,
    /// Kind and kind-specific settings.
    pub kind: LinkKind,
    /// MTU; for a veth pair it applies to both ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Bridge to enslave the link to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Whether to bring the link up (for a veth pair: both ends).
    #[serde(default)]
    pub up: bool,
}

impl LinkSpec {
    /// A link named `name` of `kind`, down, with kernel defaults.
    pub fn new(name: impl Into<String>, kind: LinkKind) -> Self {
        LinkSpec { name: name.into(), kind, mtu: None, mac: None, master: None, up: false }
    }
}

/// One change to an existing link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkChange {
    /// Set the link up.
    Up,
    /// Set the link down.
    Down,
    /// Set the MTU.
    Mtu(u32),
    /// Enslave to a bridge.
    Master(String),
    /// Release from its bridge.
    NoMaster,
    /// Set the MAC address.
    Mac(String),
    /// Rename the link.
    Rename(String),
    /// Bridge port hairpin mode: let the bridge send a frame back out of the port it came in
    /// on. A sandbox reaching its own published port through the host's address needs it.
    Hairpin(bool),
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Destination prefix; `0.0.0.0/0` or `::/0` for a default route.
    #[serde(serialize_with = "crate::wire::addr")]
    pub destination: IpNet,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Output device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Route metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// Scope; by default the kernel's (`link` for a route without a gateway, else `universe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RouteScope>,
    /// Take the gateway as reachable on `device` even though no prefix of that device
    /// covers it, as a point-to-point link with a /32 address needs for its default route.
    #[serde(default, skip_serializing_if = "is_false")]
    pub onlink: bool,
    /// Preferred source address of packets sent along the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// Routing table; the main table (254) when left out. The local table (255) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

impl Default for RouteSpec {
    /// The IPv4 default route with nothing else set.
    fn default() -> Self {
        RouteSpec::new(IpNet::V4(ipnet::Ipv4Net::default()))
    }
}

impl RouteSpec {
    /// A route to `destination` with nothing else set.
    pub fn new(destination: IpNet) -> Self {
        RouteSpec {
            destination,
            gateway: None,
            device: None,
            metric: None,
            scope: None,
            onlink: false,
            source: None,
            table: None,
        }
    }

    /// A default route for the family of `gateway`, through it on `device`. With `onlink`
    /// the gateway need not be in a prefix of `device` (a /32 point-to-point link).
    pub fn default_via(gateway: IpAddr, device: impl Into<String>, onlink: bool) -> Self {
        let destination = match gateway {
            IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
        };
        RouteSpec { gateway: Some(gateway), device: Some(device.into()), onlink, ..RouteSpec::new(destination) }
    }

    /// A route to the single address `address` on `device`, scope link: a host route.
    pub fn host(address: IpAddr, device: impl Into<String>) -> Self {
        let destination = IpNet::from(address);
        RouteSpec { device: Some(device.into()), scope: Some(RouteScope::Link), ..RouteSpec::new(destination) }
    }
}

/// How far a route's destination is: the kernel's `rtm_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteScope {
    /// Anywhere (a route through a gateway).
    Universe,
    /// Inside this site (IPv4 only).
    Site,
    /// Directly attached to the device.
    Link,
    /// On this host.
    Host,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lower-case protocol name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// How a network's gateway forwards traffic (Docker's `gateway_mode_ipv4/6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayMode {
    /// Masquerade egress; from other interfaces, endpoints are reachable only on their
    /// published ports.
    #[default]
    Nat,
    /// Masquerade egress; every port of every endpoint is reachable from other interfaces.
    NatUnprotected,
    /// No masquerade; from other interfaces, endpoints are reachable on their published
    /// ports and by ICMP.
    Routed,
    /// No forwarding in or out.
    Isolated,
}

/// A firewall fact: an element of one of wharf's own nftables sets or maps.
///
/// Drivers never write rules. They declare facts; core's firewall keeps one fixed ruleset
/// in its own table whose sets and maps these facts fill, so a change costs the same with one
/// network or a thousand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallFact {
    /// A network bridge and how traffic through it is treated.
    Network {
        /// The bridge device.
        bridge: String,
        /// The network's subnets.
        #[serde(serialize_with = "crate::wire::addr_list")]
        subnets: Vec<IpNet>,
        /// Masquerade traffic leaving the subnets to other interfaces.
        masquerade: bool,
        /// Allow endpoints on this bridge to talk to each other.
        icc: bool,
        /// No traffic in or out of the network.
        internal: bool,
        /// IPv4 gateway mode.
        #[serde(default)]
        gateway_mode_v4: GatewayMode,
        /// IPv6 gateway mode.
        #[serde(default)]
        gateway_mode_v6: GatewayMode,
        /// Source address for masqueraded IPv4 traffic (`host_binding_ipv4`), when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snat_v4: Option<IpAddr>,
        /// Host interfaces from which every port of the network's endpoints is reachable
        /// (`trusted_host_interfaces`), whatever the gateway mode.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        trusted: Vec<String>,
    },
    /// A published port: traffic to `host_ip:host_port` goes to `address:port`.
    Port {
        /// Transport protocol.
        protocol: Protocol,
        /// Host address to match; none means every address of the family of `address`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_ip: Option<IpAddr>,
        /// Host port.
        host_port: u16,
        /// Endpoint address.
        address: IpAddr,
        /// Endpoint port.
        port: u16,
        /// Bridge the endpoint sits on.
        bridge: String,
    },
}

/// A filesystem to mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Source device, directory or remote share.
    pub source: String,
    /// Mount point.
    pub target: String,
    /// Filesystem type; `none` with `bind` in `options` for a bind mount.
    pub fstype: String,
    /// Comma-separated mount options as `mount -o` takes them.
    #[serde(default)]
    pub options: String,
}
