//! The plan language: the typed kernel operations a driver asks core to carry out.
//!
//! A driver never touches the kernel. It returns a [`Plan`], an ordered list of [`Step`]s;
//! each step holds the operation to perform and the operation that undoes it. Every
//! operation is idempotent ("ensure present" / "ensure absent"), so core can replay a plan
//! after a crash or roll it back step by step without knowing what a driver meant.

use crate::mount_options::{IMAGE_FSTYPES, MOUNT_FSTYPES};
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

/// One kernel operation. Every operation is idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Does nothing; the inverse of an operation that needs no undo.
    Noop,
    /// Ensure a link exists as specified.
    LinkAdd {
        /// Namespace of the link.
        netns: Netns,
        /// The link.
        link: LinkSpec,
    },
    /// Ensure a link is absent (a veth peer goes with it).
    LinkDel {
        /// Namespace of the link.
        netns: Netns,
        /// Link name.
        name: String,
    },
    /// Change an existing link.
    LinkSet {
        /// Namespace of the link.
        netns: Netns,
        /// Link name.
        name: String,
        /// The change.
        change: LinkChange,
    },
    /// Ensure an address is on a link.
    AddrAdd {
        /// Namespace of the link.
        netns: Netns,
        /// Link name.
        link: String,
        /// Address with prefix length.
        address: IpNet,
    },
    /// Ensure an address is not on a link.
    AddrDel {
        /// Namespace of the link.
        netns: Netns,
        /// Link name.
        link: String,
        /// Address with prefix length.
        address: IpNet,
    },
    /// Ensure a route exists.
    RouteAdd {
        /// Namespace of the route.
        netns: Netns,
        /// The route.
        route: RouteSpec,
    },
    /// Ensure a route is absent.
    RouteDel {
        /// Namespace of the route.
        netns: Netns,
        /// The route.
        route: RouteSpec,
    },
    /// Ensure a permanent neighbour entry.
    NeighAdd {
        /// Namespace.
        netns: Netns,
        /// Device.
        device: String,
        /// Neighbour address.
        address: IpAddr,
        /// Neighbour MAC.
        mac: String,
    },
    /// Ensure a neighbour entry is absent.
    NeighDel {
        /// Namespace.
        netns: Netns,
        /// Device.
        device: String,
        /// Neighbour address.
        address: IpAddr,
    },
    /// Ensure the namespace answers ARP (IPv4) or neighbour solicitations (IPv6) for
    /// `address` on `device`: a proxy neighbour entry (`ip neigh add proxy`). For IPv6 the
    /// device also needs the sysctl `net.ipv6.conf.DEVICE.proxy_ndp=1`.
    NeighProxyAdd {
        /// Namespace.
        netns: Netns,
        /// Device the solicitations arrive on.
        device: String,
        /// Address to answer for.
        address: IpAddr,
    },
    /// Ensure a proxy neighbour entry is absent.
    NeighProxyDel {
        /// Namespace.
        netns: Netns,
        /// Device.
        device: String,
        /// Address.
        address: IpAddr,
    },
    /// Ensure a forwarding-database entry on a bridge port or VXLAN device.
    FdbAdd {
        /// Namespace.
        netns: Netns,
        /// Device.
        device: String,
        /// MAC address.
        mac: String,
        /// Remote VTEP, for VXLAN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<IpAddr>,
    },
    /// Ensure a forwarding-database entry is absent.
    FdbDel {
        /// Namespace.
        netns: Netns,
        /// Device.
        device: String,
        /// MAC address.
        mac: String,
        /// Remote VTEP, for VXLAN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<IpAddr>,
    },
    /// Set a sysctl, e.g. `net.ipv4.ip_forward`, in a namespace.
    Sysctl {
        /// Namespace.
        netns: Netns,
        /// Dotted key.
        key: String,
        /// Value to write.
        value: String,
    },
    /// Write back the value a sysctl had before the plans that set it with
    /// [`Step::sysctl_restoring`]: core keeps the value it found, and writes it back when the
    /// last object whose plan set the key is undone or removed.
    SysctlRestore {
        /// Namespace.
        netns: Netns,
        /// Dotted key.
        key: String,
    },
    /// Ensure a firewall fact is present.
    FirewallAdd {
        /// The fact.
        fact: FirewallFact,
    },
    /// Ensure a firewall fact is absent.
    FirewallDel {
        /// The fact.
        fact: FirewallFact,
    },
    /// Ensure a filesystem is mounted at `target`.
    Mount {
        /// Source device, directory or remote share.
        source: String,
        /// Mount point.
        target: String,
        /// Filesystem type; `none` with `bind` in `options` for a bind mount.
        fstype: String,
        /// Comma-separated mount options as `mount -o` takes them.
        #[serde(default)]
        options: String,
    },
    /// Ensure nothing is mounted at `target`.
    Unmount {
        /// Mount point.
        target: String,
    },
    /// Ensure a directory exists with this ownership and mode.
    DirCreate {
        /// Path.
        path: String,
        /// Permission bits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// Owner.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        /// Group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
    },
    /// Ensure a directory and everything in it is absent.
    DirRemove {
        /// Path.
        path: String,
    },
    /// Ensure a sparse file of `size` bytes holding an empty filesystem of `fstype` exists.
    ImageCreate {
        /// Path of the image file.
        path: String,
        /// Size in bytes.
        size: u64,
        /// Filesystem to make in it.
        fstype: String,
    },
    /// Ensure a file is absent.
    FileRemove {
        /// Path.
        path: String,
    },
    /// Ensure a persistent named network namespace is bound at `path`, with loopback up.
    /// Core's own operation for a sandbox; a driver's plan may not hold it.
    NetnsCreate {
        /// The namespace file, under the netns directory.
        path: String,
    },
    /// Ensure the named namespace at `path` is unbound and its file gone. Core's own.
    NetnsRemove {
        /// The namespace file.
        path: String,
    },
    /// Ensure a file holds exactly `contents` (written to a temporary file and renamed).
    /// Core's own operation, for a sandbox's `resolv.conf`.
    FileWrite {
        /// Path.
        path: String,
        /// Contents.
        contents: String,
    },
}

impl Op {
    /// The namespace the operation runs in, for operations that have one.
    pub fn netns(&self) -> Option<&Netns> {
        match self {
            Op::LinkAdd { netns, .. }
            | Op::LinkDel { netns, .. }
            | Op::LinkSet { netns, .. }
            | Op::AddrAdd { netns, .. }
            | Op::AddrDel { netns, .. }
            | Op::RouteAdd { netns, .. }
            | Op::RouteDel { netns, .. }
            | Op::NeighAdd { netns, .. }
            | Op::NeighDel { netns, .. }
            | Op::FdbAdd { netns, .. }
            | Op::FdbDel { netns, .. }
            | Op::NeighProxyAdd { netns, .. }
            | Op::NeighProxyDel { netns, .. }
            | Op::Sysctl { netns, .. }
            | Op::SysctlRestore { netns, .. } => Some(netns),
            _ => None,
        }
    }

    /// The namespaces the operation works in: its own and, for a link, the one its far end
    /// goes to.
    pub fn namespaces(&self) -> impl Iterator<Item = &Netns> {
        let far = match self {
            Op::LinkAdd { link, .. } => match &link.kind {
                LinkKind::Veth { peer_netns, .. } => Some(peer_netns),
                LinkKind::Macvlan { target_netns, .. } => target_netns.as_ref(),
                _ => None,
            },
            _ => None,
        };
        self.netns().into_iter().chain(far)
    }

    /// A one-line description naming the object, for logs and errors.
    pub fn describe(&self) -> String {
        fn dst(d: &Option<IpAddr>) -> String {
            d.map(|d| format!(" via {d}")).unwrap_or_default()
        }
        fn ns(n: &Netns) -> String {
            match n {
                Netns::Host => String::new(),
                Netns::Path(p) => format!(" in netns {p}"),
            }
        }
        match self {
            Op::Noop => "nothing".into(),
            Op::LinkAdd { netns, link } => format!("create link {}{}", link.name, ns(netns)),
            Op::LinkDel { netns, name } => format!("delete link {name}{}", ns(netns)),
            Op::LinkSet { netns, name, change } => format!("set link {name} {change:?}{}", ns(netns)),
            Op::AddrAdd { netns, link, address } => format!("add address {address} to {link}{}", ns(netns)),
            Op::AddrDel { netns, link, address } => format!("remove address {address} from {link}{}", ns(netns)),
            Op::RouteAdd { netns, route } => format!("add route to {}{}", route.destination, ns(netns)),
            Op::RouteDel { netns, route } => format!("delete route to {}{}", route.destination, ns(netns)),
            Op::NeighAdd { netns, device, address, .. } => format!("add neighbour {address} on {device}{}", ns(netns)),
            Op::NeighDel { netns, device, address } => format!("delete neighbour {address} on {device}{}", ns(netns)),
            Op::FdbAdd { netns, device, mac, destination } => {
                format!("add fdb {mac}{} on {device}{}", dst(destination), ns(netns))
            }
            Op::FdbDel { netns, device, mac, destination } => {
                format!("delete fdb {mac}{} on {device}{}", dst(destination), ns(netns))
            }
            Op::NeighProxyAdd { netns, device, address } => {
                format!("add proxy neighbour {address} on {device}{}", ns(netns))
            }
            Op::NeighProxyDel { netns, device, address } => {
                format!("delete proxy neighbour {address} on {device}{}", ns(netns))
            }
            Op::Sysctl { netns, key, value } => format!("set sysctl {key}={value}{}", ns(netns)),
            Op::SysctlRestore { netns, key } => format!("restore sysctl {key}{}", ns(netns)),
            Op::FirewallAdd { fact } => format!("add firewall fact {}", fact_name(fact)),
            Op::FirewallDel { fact } => format!("remove firewall fact {}", fact_name(fact)),
            Op::Mount { target, fstype, .. } => format!("mount {fstype} at {target}"),
            Op::Unmount { target } => format!("unmount {target}"),
            Op::DirCreate { path, .. } => format!("create directory {path}"),
            Op::DirRemove { path } => format!("remove directory {path}"),
            Op::ImageCreate { path, .. } => format!("create image {path}"),
            Op::FileRemove { path } => format!("remove file {path}"),
            Op::NetnsCreate { path } => format!("create namespace {path}"),
            Op::NetnsRemove { path } => format!("remove namespace {path}"),
            Op::FileWrite { path, .. } => format!("write file {path}"),
        }
    }
}

impl Op {
    /// Why core's policy refuses this operation whoever asks and wherever it runs, if it
    /// does: a sysctl outside `net.` or with a malformed key, a route in the unspecified,
    /// default or local table, a mount or image of a filesystem type not allowed. (Where an
    /// operation may reach, paths and namespaces, depends on the call; see
    /// [`crate::testing::lint`].)
    pub fn rule_breach(&self) -> Option<String> {
        match self {
            Op::Sysctl { key, .. } | Op::SysctlRestore { key, .. } if !key.starts_with("net.") => {
                Some(format!("sysctl {key:?} is not under net."))
            }
            Op::Sysctl { key, .. } | Op::SysctlRestore { key, .. } if sysctl_path(key).is_none() => {
                Some(format!("sysctl key {key:?} is malformed"))
            }
            Op::RouteAdd { route, .. } | Op::RouteDel { route, .. } => match route.table {
                Some(t @ (0 | 253 | 255)) => {
                    Some(format!("route table {t} is not one a plan may use (the unspecified, default or local table)"))
                }
                _ => None,
            },
            Op::Mount { fstype, .. } if !MOUNT_FSTYPES.contains(&fstype.as_str()) => {
                Some(format!("filesystem type {fstype:?} is not one of {}", MOUNT_FSTYPES.join(", ")))
            }
            Op::ImageCreate { fstype, .. } if !IMAGE_FSTYPES.contains(&fstype.as_str()) => {
                Some(format!("image filesystem type {fstype:?} is not one of {}", IMAGE_FSTYPES.join(", ")))
            }
            _ => None,
        }
    }
}

impl Op {
    /// The operation that undoes this one when it follows from the operation alone: a
    /// create's delete, an add's remove, `up`'s `down`. `None` when undoing needs more (a
    /// sysctl's previous value) or nothing (a delete, whose inverse is the driver's choice).
    pub fn plain_undo(&self) -> Option<Op> {
        Some(match self {
            Op::LinkAdd { netns, link } => Op::LinkDel { netns: netns.clone(), name: link.name.clone() },
            Op::LinkSet { netns, name, change: LinkChange::Up } => {
                Op::LinkSet { netns: netns.clone(), name: name.clone(), change: LinkChange::Down }
            }
            Op::LinkSet { netns, name, change: LinkChange::Hairpin(true) } => {
                Op::LinkSet { netns: netns.clone(), name: name.clone(), change: LinkChange::Hairpin(false) }
            }
            Op::AddrAdd { netns, link, address } => {
                Op::AddrDel { netns: netns.clone(), link: link.clone(), address: *address }
            }
            Op::RouteAdd { netns, route } => Op::RouteDel { netns: netns.clone(), route: route.clone() },
            Op::NeighAdd { netns, device, address, .. } => {
                Op::NeighDel { netns: netns.clone(), device: device.clone(), address: *address }
            }
            Op::FdbAdd { netns, device, mac, destination } => {
                Op::FdbDel { netns: netns.clone(), device: device.clone(), mac: mac.clone(), destination: *destination }
            }
            Op::NeighProxyAdd { netns, device, address } => {
                Op::NeighProxyDel { netns: netns.clone(), device: device.clone(), address: *address }
            }
            Op::FirewallAdd { fact } => Op::FirewallDel { fact: fact.clone() },
            Op::Mount { target, .. } => Op::Unmount { target: target.clone() },
            Op::DirCreate { path, .. } => Op::DirRemove { path: path.clone() },
            _ => return None,
        })
    }

    /// Whether `undo` is [`Op::plain_undo`] of this operation, checked without building it.
    pub fn is_plain_undo(&self, undo: &Op) -> bool {
        match (self, undo) {
            (Op::LinkAdd { netns, link }, Op::LinkDel { netns: n, name }) => netns == n && link.name == *name,
            (Op::LinkSet { netns, name, change }, Op::LinkSet { netns: n, name: m, change: c }) => {
                netns == n
                    && name == m
                    && matches!(
                        (change, c),
                        (LinkChange::Up, LinkChange::Down) | (LinkChange::Hairpin(true), LinkChange::Hairpin(false))
                    )
            }
            (Op::AddrAdd { netns, link, address }, Op::AddrDel { netns: n, link: l, address: a }) => {
                netns == n && link == l && address == a
            }
            (Op::RouteAdd { netns, route }, Op::RouteDel { netns: n, route: r }) => netns == n && route == r,
            (Op::NeighAdd { netns, device, address, .. }, Op::NeighDel { netns: n, device: d, address: a }) => {
                netns == n && device == d && address == a
            }
            (
                Op::FdbAdd { netns, device, mac, destination },
                Op::FdbDel { netns: n, device: d, mac: m, destination: t },
            ) => netns == n && device == d && mac == m && destination == t,
            (Op::NeighProxyAdd { netns, device, address }, Op::NeighProxyDel { netns: n, device: d, address: a }) => {
                netns == n && device == d && address == a
            }
            (Op::FirewallAdd { fact }, Op::FirewallDel { fact: f }) => fact == f,
            (Op::Mount { target, .. }, Op::Unmount { target: t }) => target == t,
            (Op::DirCreate { path, .. }, Op::DirRemove { path: p }) => path == p,
            _ => false,
        }
    }
}

fn fact_name(fact: &FirewallFact) -> String {
    match fact {
        FirewallFact::Network { bridge, .. } => format!("network {bridge}"),
        FirewallFact::Port { protocol, host_ip, host_port, .. } => match host_ip {
            Some(ip) => format!("port {ip}:{host_port}/{}", protocol.as_str()),
            None => format!("port {host_port}/{}", protocol.as_str()),
        },
    }
}

/// The dotted key of interface `link`'s sysctl `leaf` for `family` (`ipv4`, `ipv6`):
/// `net.ipv4.conf.LINK.LEAF`, with each dot in the interface name written as `/`, the way
/// sysctl(8) reads it, so `br.0` stays one component.
pub fn link_sysctl_key(family: &str, link: &str, leaf: &str) -> String {
    format!("net.{family}.conf.{}.{leaf}", link.replace('.', "/"))
}

/// The path under `/proc/sys` that a dotted sysctl key names: dots separate the components,
/// and a `/` inside a component stands for a dot (see [`link_sysctl_key`]). `None` for a key
/// with a component that is empty or that would be `.` or `..`.
pub fn sysctl_path(key: &str) -> Option<String> {
    let parts: Vec<String> = key.split('.').map(|p| p.replace('/', ".")).collect();
    if parts.iter().any(|p| p.is_empty() || p == "." || p == "..") {
        return None;
    }
    Some(parts.join("/"))
}

/// One step of a plan: an operation and the operation that undoes it.
///
/// In JSON, `undo` may be left out when it is the op's [`Op::plain_undo`]: a reader fills it
/// in. Writers that do so are the plugin side of the ABI, and only for a core that speaks
/// message version 2 or later (see [`Plan::compact`]); a step's own `Serialize` always
/// writes both, so stored plans stay readable by older versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StepMessage")]
pub struct Step {
    /// What to do.
    #[serde(rename = "do")]
    pub op: Op,
    /// What undoes it.
    pub undo: Op,
}

/// A step as read from JSON, before a left-out `undo` is filled in.
#[derive(Deserialize)]
struct StepMessage {
    #[serde(rename = "do")]
    op: Op,
    #[serde(default)]
    undo: Option<Op>,
}

impl TryFrom<StepMessage> for Step {
    type Error = String;

    fn try_from(m: StepMessage) -> Result<Step, String> {
        let undo = match m.undo {
            Some(undo) => undo,
            None => m.op.plain_undo().ok_or_else(|| format!("step to {} lacks its undo", m.op.describe()))?,
        };
        Ok(Step { op: m.op, undo })
    }
}

/// A step that leaves out its undo when that is the plain one; see [`Plan::compact`].
struct CompactStep<'a>(&'a Step);

impl Serialize for CompactStep<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let plain = self.0.op.is_plain_undo(&self.0.undo);
        let mut s = serializer.serialize_struct("Step", if plain { 1 } else { 2 })?;
        s.serialize_field("do", &self.0.op)?;
        if !plain {
            s.serialize_field("undo", &self.0.undo)?;
        }
        s.end()
    }
}

/// A plan serialised with plain undos left out; see [`Plan::compact`].
#[derive(Debug)]
pub struct CompactPlan<'a>(&'a Plan);

impl Serialize for CompactPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Steps<'a>(&'a [Step]);
        impl Serialize for Steps<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(CompactStep))
            }
        }
        let mut s = serializer.serialize_struct("Plan", 1)?;
        s.serialize_field("steps", &Steps(&self.0.steps))?;
        s.end()
    }
}

impl Step {
    /// A step with an explicit inverse.
    pub fn new(op: Op, undo: Op) -> Self {
        Step { op, undo }
    }

    /// The same step run backwards: undo becomes do.
    pub fn inverse(&self) -> Step {
        Step { op: self.undo.clone(), undo: self.op.clone() }
    }

    /// Create a link; undo deletes it.
    pub fn link_add(netns: Netns, link: LinkSpec) -> Self {
        let undo = Op::LinkDel { netns: netns.clone(), name: link.name.clone() };
        Step::new(Op::LinkAdd { netns, link }, undo)
    }

    /// Add an address; undo removes it.
    pub fn addr_add(netns: Netns, link: impl Into<String>, address: IpNet) -> Self {
        let link = link.into();
        let undo = Op::AddrDel { netns: netns.clone(), link: link.clone(), address };
        Step::new(Op::AddrAdd { netns, link, address }, undo)
    }

    /// Add a route; undo deletes it.
    pub fn route_add(netns: Netns, route: RouteSpec) -> Self {
        let undo = Op::RouteDel { netns: netns.clone(), route: route.clone() };
        Step::new(Op::RouteAdd { netns, route }, undo)
    }

    /// Bring a link up; undo brings it down.
    pub fn link_up(netns: Netns, name: impl Into<String>) -> Self {
        let name = name.into();
        let undo = Op::LinkSet { netns: netns.clone(), name: name.clone(), change: LinkChange::Down };
        Step::new(Op::LinkSet { netns, name, change: LinkChange::Up }, undo)
    }

    /// Turn on hairpin mode on bridge port `name`; undo turns it off.
    pub fn hairpin(netns: Netns, name: impl Into<String>) -> Self {
        let name = name.into();
        let undo = Op::LinkSet { netns: netns.clone(), name: name.clone(), change: LinkChange::Hairpin(false) };
        Step::new(Op::LinkSet { netns, name, change: LinkChange::Hairpin(true) }, undo)
    }

    /// Add a forwarding-database entry (for a VXLAN device: `mac` reaches the remote VTEP
    /// `destination`); undo removes it.
    pub fn fdb_add(
        netns: Netns,
        device: impl Into<String>,
        mac: impl Into<String>,
        destination: Option<IpAddr>,
    ) -> Self {
        let (device, mac) = (device.into(), mac.into());
        let undo = Op::FdbDel { netns: netns.clone(), device: device.clone(), mac: mac.clone(), destination };
        Step::new(Op::FdbAdd { netns, device, mac, destination }, undo)
    }

    /// Set a sysctl; undo writes `previous`, or does nothing when `previous` is `None`.
    pub fn sysctl(netns: Netns, key: impl Into<String>, value: impl Into<String>, previous: Option<String>) -> Self {
        let key = key.into();
        let undo = match previous {
            Some(value) => Op::Sysctl { netns: netns.clone(), key: key.clone(), value },
            None => Op::Noop,
        };
        Step::new(Op::Sysctl { netns, key, value: value.into() }, undo)
    }

    /// Set a sysctl; undo writes back the value the key had before (see
    /// [`Op::SysctlRestore`]). Core reads that value and keeps it in its store, in the same
    /// transaction that journals the plan, so it survives a crash; when several objects set
    /// one key, the value found by the first is written back after the last is gone.
    pub fn sysctl_restoring(netns: Netns, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let undo = Op::SysctlRestore { netns: netns.clone(), key: key.clone() };
        Step::new(Op::Sysctl { netns, key, value: value.into() }, undo)
    }

    /// Answer ARP or neighbour solicitations for `address` on `device`; undo stops it.
    pub fn neigh_proxy(netns: Netns, device: impl Into<String>, address: IpAddr) -> Self {
        let device = device.into();
        let undo = Op::NeighProxyDel { netns: netns.clone(), device: device.clone(), address };
        Step::new(Op::NeighProxyAdd { netns, device, address }, undo)
    }

    /// Add a firewall fact; undo removes it.
    pub fn firewall_add(fact: FirewallFact) -> Self {
        Step::new(Op::FirewallAdd { fact: fact.clone() }, Op::FirewallDel { fact })
    }

    /// Create a directory; undo removes it.
    pub fn dir_create(path: impl Into<String>, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> Self {
        let path = path.into();
        Step::new(Op::DirCreate { path: path.clone(), mode, uid, gid }, Op::DirRemove { path })
    }

    /// Mount a filesystem; undo unmounts it.
    pub fn mount(
        source: impl Into<String>,
        target: impl Into<String>,
        fstype: impl Into<String>,
        options: impl Into<String>,
    ) -> Self {
        let target = target.into();
        let undo = Op::Unmount { target: target.clone() };
        Step::new(Op::Mount { source: source.into(), target, fstype: fstype.into(), options: options.into() }, undo)
    }
}

/// An ordered list of steps. Core runs them in order and, if one fails, runs the undo of
/// every completed step that created its object, in reverse order: a step that found its
/// object there already is not undone, then or by a later removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Plan::default()
    }

    /// Append a step.
    pub fn push(&mut self, step: Step) -> &mut Self {
        self.steps.push(step);
        self
    }

    /// Append every step of `other`.
    pub fn extend(&mut self, other: Plan) -> &mut Self {
        self.steps.extend(other.steps);
        self
    }

    /// The plan that takes away what this plan made: every step inverted, in reverse order.
    pub fn inverse(&self) -> Plan {
        Plan { steps: self.steps.iter().rev().map(Step::inverse).collect() }
    }

    /// Whether the plan has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operations to perform, in order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.steps.iter().map(|s| &s.op)
    }

    /// The plan as message version 2 carries it: a step's `undo` is left out when it is
    /// the op's [`Op::plain_undo`], which a reader fills back in. About half the bytes of a
    /// typical plan, so half the cost of encoding and decoding it.
    pub fn compact(&self) -> CompactPlan<'_> {
        CompactPlan(self)
    }
}

impl FromIterator<Step> for Plan {
    fn from_iter<I: IntoIterator<Item = Step>>(iter: I) -> Self {
        Plan { steps: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_dot_in_an_interface_name_stays_inside_its_sysctl_component() {
        let key = link_sysctl_key("ipv4", "br.0", "route_localnet");
        assert_eq!(key, "net.ipv4.conf.br/0.route_localnet");
        assert_eq!(sysctl_path(&key).as_deref(), Some("net/ipv4/conf/br.0/route_localnet"));
        assert_eq!(sysctl_path("net.ipv4.ip_forward").as_deref(), Some("net/ipv4/ip_forward"));
        for bad in ["net..x", "net.ipv4.conf.//.x", "net.ipv4.conf./.x", ".net", "net."] {
            assert_eq!(sysctl_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn inverse_reverses_order_and_swaps_each_step() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("br0", LinkKind::Bridge)));
        plan.push(Step::addr_add(Netns::Host, "br0", "10.0.0.1/24".parse().unwrap()));
        let inv = plan.inverse();
        assert_eq!(inv.steps.len(), 2);
        assert!(matches!(&inv.steps[0].op, Op::AddrDel { link, .. } if link == "br0"));
        assert!(matches!(&inv.steps[1].op, Op::LinkDel { name, .. } if name == "br0"));
        assert_eq!(inv.inverse(), plan);
    }

    #[test]
    fn plan_round_trips_through_json() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(
            Netns::Host,
            LinkSpec::new(
                "veth1",
                LinkKind::Veth { peer: "eth0".into(), peer_netns: Netns::Path("/run/netns/a".into()), peer_mac: None },
            ),
        ));
        plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", None));
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn a_compact_plan_leaves_out_plain_undos_and_reads_back_whole() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("br0", LinkKind::Bridge)));
        plan.push(Step::hairpin(Netns::Host, "veth0"));
        plan.push(Step::addr_add(Netns::Path("/run/netns/a".into()), "eth0", "10.0.0.2/24".parse().unwrap()));
        plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", Some("0".into())));
        plan.push(Step::new(Op::LinkDel { netns: Netns::Host, name: "old".into() }, Op::Noop));
        plan.push(Step::new(Op::DirCreate { path: "/v".into(), mode: None, uid: None, gid: None }, Op::Noop));
        let json = serde_json::to_value(plan.compact()).unwrap();
        let undos: Vec<bool> = json["steps"].as_array().unwrap().iter().map(|s| s.get("undo").is_some()).collect();
        assert_eq!(undos, [false, false, false, true, true, true]);
        let back: Plan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
        let full: Value = serde_json::to_value(&plan).unwrap();
        assert!(full["steps"].as_array().unwrap().iter().all(|s| s.get("undo").is_some()));
    }

    #[test]
    fn a_step_without_undo_needs_a_plain_one() {
        let json = r#"{"steps":[{"do":{"sysctl":{"netns":"host","key":"k","value":"1"}}}]}"#;
        let err = serde_json::from_str::<Plan>(json).unwrap_err();
        assert!(err.to_string().contains("lacks its undo"), "{err}");
    }

    #[test]
    fn a_route_written_by_an_older_sdk_reads_with_the_new_fields_at_their_defaults() {
        let old = r#"{"destination":"0.0.0.0/0","gateway":"10.0.0.1","device":"eth0"}"#;
        let route: RouteSpec = serde_json::from_str(old).unwrap();
        assert_eq!(route, RouteSpec::default_via("10.0.0.1".parse().unwrap(), "eth0", false));
        assert_eq!(serde_json::to_string(&route).unwrap(), old, "fields at their defaults are left out");
        let onlink = RouteSpec::default_via("fe80::1".parse().unwrap(), "eth0", true);
        assert_eq!(onlink.destination.to_string(), "::/0");
        assert!(serde_json::to_string(&onlink).unwrap().contains(r#""onlink":true"#));
    }

    #[test]
    fn a_restoring_sysctl_and_a_proxy_entry_undo_themselves() {
        let step = Step::sysctl_restoring(Netns::Host, "net.ipv4.conf.all.proxy_arp", "1");
        assert_eq!(step.undo, Op::SysctlRestore { netns: Netns::Host, key: "net.ipv4.conf.all.proxy_arp".into() });
        let proxy = Step::neigh_proxy(Netns::Host, "v0", "10.0.0.9".parse().unwrap());
        assert_eq!(proxy.op.plain_undo(), Some(proxy.undo.clone()));
        let plan: Plan = [step, proxy].into_iter().collect();
        let back: Plan = serde_json::from_value(serde_json::to_value(plan.compact()).unwrap()).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let json = r#"{"steps":[{"do":{"link_del":{"netns":"host","name":"x","future":1}},"undo":"noop","extra":true}],"v2":null}"#;
        let plan: Plan = serde_json::from_str(json).unwrap();
        assert_eq!(plan.steps.len(), 1);
    }
}
