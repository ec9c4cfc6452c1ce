//! The operations: one typed, idempotent kernel operation each, with its description, its
//! plain undo and the rules core checks it against.

use super::spec::{FirewallFact, LinkChange, LinkKind, LinkSpec, MountSpec, Netns, RouteSpec};
use crate::mount_options::{IMAGE_FSTYPES, MOUNT_FSTYPES};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One kernel operation. Every operation is idempotent.
///
/// Every endpoint and network keeps the plan that made it, so an operation is kept small: the
/// payloads that are large and seldom many in a plan (a link's spec, a route, a firewall fact, a
/// mount) are boxed, and the constructors below ([`Op::link_add`], [`Op::route_add`], ...) and
/// [`Step`]'s do the boxing. Boxing does not show in the JSON: a boxed payload is written and
/// read exactly as it was inline.
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
        link: Box<LinkSpec>,
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
        #[serde(serialize_with = "crate::wire::addr")]
        address: IpNet,
    },
    /// Ensure an address is not on a link.
    AddrDel {
        /// Namespace of the link.
        netns: Netns,
        /// Link name.
        link: String,
        /// Address with prefix length.
        #[serde(serialize_with = "crate::wire::addr")]
        address: IpNet,
    },
    /// Ensure a route exists.
    RouteAdd {
        /// Namespace of the route.
        netns: Netns,
        /// The route.
        route: Box<RouteSpec>,
    },
    /// Ensure a route is absent.
    RouteDel {
        /// Namespace of the route.
        netns: Netns,
        /// The route.
        route: Box<RouteSpec>,
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
        fact: Box<FirewallFact>,
    },
    /// Ensure a firewall fact is absent.
    FirewallDel {
        /// The fact.
        fact: Box<FirewallFact>,
    },
    /// Ensure a filesystem is mounted as [`MountSpec`] says (in JSON an object with its
    /// fields, as any other operation).
    Mount(Box<MountSpec>),
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
    /// Ensure link `link` exists in `netns`.
    pub fn link_add(netns: Netns, link: LinkSpec) -> Op {
        Op::LinkAdd { netns, link: Box::new(link) }
    }

    /// Ensure route `route` exists in `netns`.
    pub fn route_add(netns: Netns, route: RouteSpec) -> Op {
        Op::RouteAdd { netns, route: Box::new(route) }
    }

    /// Ensure route `route` is absent from `netns`.
    pub fn route_del(netns: Netns, route: RouteSpec) -> Op {
        Op::RouteDel { netns, route: Box::new(route) }
    }

    /// Ensure firewall fact `fact` is present.
    pub fn firewall_add(fact: FirewallFact) -> Op {
        Op::FirewallAdd { fact: Box::new(fact) }
    }

    /// Ensure firewall fact `fact` is absent.
    pub fn firewall_del(fact: FirewallFact) -> Op {
        Op::FirewallDel { fact: Box::new(fact) }
    }

    /// Ensure `source` of `fstype` is mounted at `target` with `options` (see [`MountSpec`]).
    pub fn mount(
        source: impl Into<String>,
        target: impl Into<String>,
        fstype: impl Into<String>,
        options: impl Into<String>,
    ) -> Op {
        let (source, target, fstype, options) = (source.into(), target.into(), fstype.into(), options.into());
        Op::Mount(Box::new(MountSpec { source, target, fstype, options }))
    }

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
            Op::Mount(m) => format!("mount {} at {}", m.fstype, m.target),
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
            Op::Mount(m) if !MOUNT_FSTYPES.contains(&m.fstype.as_str()) => {
                Some(format!("filesystem type {:?} is not one of {}", m.fstype, MOUNT_FSTYPES.join(", ")))
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
            Op::Mount(m) => Op::Unmount { target: m.target.clone() },
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
            (Op::Mount(m), Op::Unmount { target: t }) => m.target == *t,
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
