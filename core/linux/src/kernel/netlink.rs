//! Netlink operations: links, addresses, routes, neighbour and FDB entries, and the host
//! facts. Each function takes the netlink handle of one namespace (see [`super::sockets`]) and is
//! idempotent: making what exists or removing what is absent succeeds.

use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use nix::errno::Errno::{EADDRNOTAVAIL, EEXIST, ENODEV, ENOENT, ESRCH};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkDummy, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan, LinkVxlan,
    RouteMessageBuilder,
};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use wharf_engine::executor::{ExecError, Outcome};
use wharf_sdk::{LinkChange, LinkKind, LinkSpec, MacvlanMode, RouteSpec};

/// The errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<nix::errno::Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(nix::errno::Errno::from_raw(m.raw_code().abs())),
        _ => None,
    }
}

pub(super) fn fail(what: &str, e: &rtnetlink::Error) -> ExecError {
    match errno(e) {
        Some(code) => ExecError::os(what, code),
        None => ExecError::new(format!("{what}: {e}")),
    }
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(mac: &str) -> Result<Vec<u8>, ExecError> {
    let bytes: Result<Vec<u8>, _> = mac.split(':').map(|p| u8::from_str_radix(p, 16)).collect();
    match bytes {
        Ok(b) if b.len() == 6 => Ok(b),
        _ => Err(ExecError::new(format!("invalid MAC address {mac:?}"))),
    }
}

pub(super) fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The index of link `name`, or `None` if absent.
pub async fn index(h: &Handle, name: &str) -> Result<Option<u32>, ExecError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if matches!(errno(&e), Some(ENODEV)) => Ok(None),
        Err(e) => Err(fail(&format!("link {name:?}"), &e)),
    }
}

/// Every link in this namespace. Without counters the kernel writes (and we parse) about
/// half as much per link, which counts once a host has hundreds of bridges and veths.
pub(super) async fn dump_links(h: &Handle) -> Result<Vec<LinkMessage>, ExecError> {
    h.link()
        .get()
        .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
        .execute()
        .try_collect()
        .await
        .map_err(|e| fail("list links", &e))
}

/// What marks a link as made by one wharfd: its alias, `wharf:<instance id>`, set right
/// after creation (the kernel ignores an alias in the creation message), and its link
/// group, a number taken from the instance id and set in the creation message itself. The
/// group speaks for a link only while it has no alias: it covers a daemon killed between
/// making a link and naming it, and a link whose alias someone else set is not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The alias.
    pub alias: String,
    /// The link group.
    pub group: u32,
}

impl Mark {
    /// The mark of the wharfd whose instance id (hex digits) is `instance`.
    pub fn new(instance: &str) -> Mark {
        let digits: String = instance.chars().filter(char::is_ascii_hexdigit).take(8).collect();
        // Clear of the small group numbers people pick by hand, and below 2^31, which
        // `ip` prints (and reads back) as a negative number.
        let group = u32::from_str_radix(&digits, 16).unwrap_or(0) & 0x3fff_ffff | 0x4000_0000;
        Mark { alias: format!("wharf:{instance}"), group }
    }

    /// Whether a link with `alias` and `group` carries this mark.
    pub(super) fn on(&self, alias: Option<&str>, group: u32) -> bool {
        match alias {
            Some(a) => a == self.alias,
            None => group == self.group,
        }
    }
}

/// The name, alias and group of a link message.
fn identity(l: &LinkMessage) -> (Option<&str>, Option<&str>, u32) {
    let (mut name, mut alias, mut group) = (None, None, 0);
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.as_str()),
            LinkAttribute::IfAlias(x) => alias = Some(x.as_str()),
            LinkAttribute::Group(g) => group = *g,
            _ => {}
        }
    }
    (name, alias, group)
}

/// The names of the links in this namespace that carry `mark`.
/// The names of every link in the namespace `h` talks to.
pub async fn link_names(h: &Handle) -> Result<Vec<String>, ExecError> {
    let links = dump_links(h).await?;
    Ok(links.iter().filter_map(|l| identity(l).0.map(str::to_string)).collect())
}

pub async fn marked_links(h: &Handle, mark: &Mark) -> Result<Vec<String>, ExecError> {
    let links = dump_links(h).await?;
    Ok(links
        .iter()
        .map(identity)
        .filter(|(_, alias, group)| mark.on(*alias, *group))
        .filter_map(|(name, _, _)| name.map(str::to_string))
        .collect())
}

async fn need_index(h: &Handle, name: &str) -> Result<u32, ExecError> {
    index(h, name).await?.ok_or_else(|| ExecError::new(format!("link {name:?} does not exist")))
}

fn macvlan_mode(m: MacvlanMode) -> MacVlanMode {
    match m {
        MacvlanMode::Bridge => MacVlanMode::Bridge,
        MacvlanMode::Private => MacVlanMode::Private,
        MacvlanMode::Vepa => MacVlanMode::Vepa,
        MacvlanMode::Passthru => MacVlanMode::Passthrough,
    }
}

/// Build the creation message for `link`, in link group `group` (for a veth, both ends).
/// `target_fd` is the namespace of a veth peer or of a macvlan's target, already opened
/// by the caller.
async fn link_message(
    h: &Handle,
    link: &LinkSpec,
    target_fd: Option<i32>,
    group: u32,
) -> Result<LinkMessage, ExecError> {
    let mut b: LinkMessageBuilder<LinkUnspec> = match &link.kind {
        LinkKind::Bridge => retype(LinkBridge::new(&link.name).build()),
        LinkKind::Dummy => retype(LinkDummy::new(&link.name).build()),
        LinkKind::Veth { peer, peer_mac, .. } => {
            let mut p = LinkUnspec::new_with_name(peer).append_extra_attribute(LinkAttribute::Group(group));
            if let Some(fd) = target_fd {
                p = p.setns_by_fd(fd);
            }
            if let Some(mac) = peer_mac {
                p = p.address(parse_mac(mac)?);
            }
            if let Some(mtu) = link.mtu {
                p = p.mtu(mtu);
            }
            // The peer cannot be set up in the creation message (the kernel refuses to open
            // a veth end whose pair is not linked yet); the caller brings it up afterwards.
            let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth).name(link.name.clone());
            b = b.set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())));
            b
        }
        LinkKind::Vlan { parent, id } => retype(LinkVlan::new(&link.name, need_index(h, parent).await?, *id).build()),
        LinkKind::Macvlan { parent, mode, .. } => {
            let msg = LinkMacVlan::new(&link.name, need_index(h, parent).await?, macvlan_mode(*mode)).build();
            let mut b = retype(msg);
            if let Some(fd) = target_fd {
                b = b.setns_by_fd(fd);
            }
            b
        }
        LinkKind::Vxlan { vni, port, local, underlay, learning, proxy } => {
            let mut v = LinkVxlan::new(&link.name, *vni).port(*port).learning(*learning).proxy(*proxy);
            match local {
                Some(IpAddr::V4(a)) => v = v.local(*a),
                Some(IpAddr::V6(a)) => v = v.local6(*a),
                None => {}
            }
            if let Some(dev) = underlay {
                v = v.dev(need_index(h, dev).await?);
            }
            retype(v.build())
        }
    };
    b = b.append_extra_attribute(LinkAttribute::Group(group));
    if let Some(mtu) = link.mtu {
        b = b.mtu(mtu);
    }
    if let Some(mac) = &link.mac {
        b = b.address(parse_mac(mac)?);
    }
    if let Some(master) = &link.master {
        b = b.controller(need_index(h, master).await?);
    }
    if link.up {
        b = b.up();
    }
    Ok(b.build())
}

/// Continue building a finished message with the generic builder.
fn retype(msg: LinkMessage) -> LinkMessageBuilder<LinkUnspec> {
    let mut b = LinkMessageBuilder::<LinkUnspec>::new().set_header(msg.header.clone());
    for attr in msg.attributes {
        b = b.append_extra_attribute(attr);
    }
    b
}

/// A link found by name: its index, kind (empty for a physical device), alias and group.
struct Found {
    index: u32,
    kind: String,
    alias: Option<String>,
    group: u32,
}

/// The link named `name`, or `None` if absent.
async fn find(h: &Handle, name: &str) -> Result<Option<Found>, ExecError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    let msg = match links.try_next().await {
        Ok(Some(msg)) => msg,
        Ok(None) => return Ok(None),
        Err(e) if matches!(errno(&e), Some(ENODEV)) => return Ok(None),
        Err(e) => return Err(fail(&format!("link {name:?}"), &e)),
    };
    let (_, alias, group) = identity(&msg);
    let mut found = Found { index: msg.header.index, kind: String::new(), alias: alias.map(str::to_string), group };
    for a in &msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos {
                if let LinkInfo::Kind(k) = i {
                    found.kind = k.to_string();
                }
            }
        }
    }
    Ok(Some(found))
}

/// The kernel's name for a link kind, as `ip -d link` prints it.
fn kind_name(kind: &LinkKind) -> &'static str {
    match kind {
        LinkKind::Bridge => "bridge",
        LinkKind::Veth { .. } => "veth",
        LinkKind::Vxlan { .. } => "vxlan",
        LinkKind::Macvlan { .. } => "macvlan",
        LinkKind::Vlan { .. } => "vlan",
        LinkKind::Dummy => "dummy",
    }
}

/// Ensure `link` exists with its settings. `target` is the opened namespace file of a
/// veth peer or macvlan target, when it is not this namespace. A link made here carries
/// `mark`: its group (both ends of a veth) from the start, its alias when `alias_here`
/// (a link that moves to `target` is given its alias there, by the caller). A link
/// already there is found, not made, and must be of the kind asked for; it keeps its
/// alias and group. Returns the outcome and whether the link carries `mark`.
pub async fn link_add(
    h: &Handle,
    link: &LinkSpec,
    target: Option<&std::fs::File>,
    mark: &Mark,
    alias_here: bool,
) -> Result<(Outcome, bool), ExecError> {
    // Create first and look only when the name is taken: most links are new, and a
    // lookup first would cost every one of them a netlink round trip.
    let msg = link_message(h, link, target.map(|f| f.as_raw_fd()), mark.group).await?;
    match h.link().add(msg).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(EEXIST) => match find(h, &link.name).await? {
            Some(found) => return adopt(h, found, link, mark).await,
            None => return Err(fail(&format!("create link {:?}", link.name), &e)),
        },
        Err(e) => return Err(fail(&format!("create link {:?}", link.name), &e)),
    }
    if alias_here {
        link_mark(h, &link.name, &mark.alias, false).await?;
    }
    Ok((Outcome::Created, true))
}

/// Take link `link`, which must be here already, without a creation message (a macvlan's
/// would name its parent, which lives in another namespace): see [`adopt`].
pub async fn link_adopt(h: &Handle, link: &LinkSpec, mark: &Mark) -> Result<(Outcome, bool), ExecError> {
    match find(h, &link.name).await? {
        Some(found) => adopt(h, found, link, mark).await,
        None => Err(ExecError::new(format!("link {:?} does not exist", link.name))),
    }
}

/// Take a link that was there already as `link`: refuse one of another kind, else bring
/// its settings in line.
async fn adopt(h: &Handle, found: Found, link: &LinkSpec, mark: &Mark) -> Result<(Outcome, bool), ExecError> {
    let want = kind_name(&link.kind);
    if found.kind != want {
        let kind = if found.kind.is_empty() { "physical" } else { &found.kind };
        return Err(ExecError::taken(format!("link {:?} exists and is a {kind} link, not a {want}", link.name)));
    }
    link_ensure(h, found.index, link).await?;
    Ok((Outcome::Found, mark.on(found.alias.as_deref(), found.group)))
}

/// Mark link `name` as this daemon's by setting its alias to `mark`; also set it up when
/// `up`.
pub async fn link_mark(h: &Handle, name: &str, mark: &str, up: bool) -> Result<(), ExecError> {
    let mut b = LinkUnspec::new_with_name(name).alias(mark.to_string());
    if up {
        b = b.up();
    }
    h.link().set(b.build()).execute().await.map_err(|e| fail(&format!("mark link {name:?}"), &e))
}

/// Whether link `name` is here and carries `mark`.
pub async fn link_marked(h: &Handle, name: &str, mark: &Mark) -> Result<bool, ExecError> {
    Ok(find(h, name).await?.is_some_and(|f| mark.on(f.alias.as_deref(), f.group)))
}

/// Bring an existing link's settings in line with `link` (MTU, MAC, master, up).
async fn link_ensure(h: &Handle, idx: u32, link: &LinkSpec) -> Result<(), ExecError> {
    let mut b = LinkUnspec::new_with_index(idx);
    if let Some(mtu) = link.mtu {
        b = b.mtu(mtu);
    }
    if let Some(mac) = &link.mac {
        b = b.address(parse_mac(mac)?);
    }
    if let Some(master) = &link.master {
        b = b.controller(need_index(h, master).await?);
    }
    if link.up {
        b = b.up();
    }
    h.link().set(b.build()).execute().await.map_err(|e| fail(&format!("update link {:?}", link.name), &e))
}

/// Ensure link `name` is absent.
pub async fn link_del(h: &Handle, name: &str) -> Result<(), ExecError> {
    let Some(idx) = index(h, name).await? else { return Ok(()) };
    match h.link().del(idx).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENODEV) | Some(ENOENT)) => Ok(()),
        Err(e) => Err(fail(&format!("delete link {name:?}"), &e)),
    }
}

/// Set link `name` down and rename it to `to`; `Ok(false)` when it is absent.
pub async fn link_retire(h: &Handle, name: &str, to: &str) -> Result<bool, ExecError> {
    let Some(idx) = index(h, name).await? else { return Ok(false) };
    let what = format!("retire link {name:?}");
    h.link().set(LinkUnspec::new_with_index(idx).down().build()).execute().await.map_err(|e| fail(&what, &e))?;
    h.link()
        .set(LinkUnspec::new_with_index(idx).name(to.to_string()).build())
        .execute()
        .await
        .map_err(|e| fail(&what, &e))?;
    Ok(true)
}

/// Retire a link in a sandbox while it stays up: take its addresses away, then in one
/// message rename it to `to` and stop it answering ARP. Setting a macvlan down, and
/// changing its MAC, each wait for an RCU grace period; renaming a live link does not.
/// What is left holds neither the endpoint's name nor its addresses, but keeps its MAC
/// until deleted: a macvlan with the same MAC on the same parent cannot come up until then
/// (`EADDRINUSE`). `Ok(false)`: it is gone.
pub async fn link_retire_live(h: &Handle, name: &str, to: &str) -> Result<bool, ExecError> {
    let Some(idx) = index(h, name).await? else { return Ok(false) };
    let what = format!("retire link {name:?}");
    let addrs: Vec<AddressMessage> =
        h.address().get().set_link_index_filter(idx).execute().try_collect().await.map_err(|e| fail(&what, &e))?;
    for msg in addrs {
        match h.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(ENODEV)) => {}
            Err(e) => return Err(fail(&what, &e)),
        }
    }
    let msg = LinkUnspec::new_with_index(idx).name(to.to_string()).arp(false).build();
    h.link().set(msg).execute().await.map_err(|e| fail(&what, &e))?;
    Ok(true)
}

/// Change an existing link. Setting down, releasing or un-hairpinning a link that is gone
/// succeeds.
pub async fn link_set(h: &Handle, name: &str, change: &LinkChange) -> Result<(), ExecError> {
    let idx = match index(h, name).await? {
        Some(i) => i,
        None if matches!(change, LinkChange::Down | LinkChange::NoMaster | LinkChange::Hairpin(false)) => return Ok(()),
        None => return Err(ExecError::new(format!("link {name:?} does not exist"))),
    };
    let b = LinkUnspec::new_with_index(idx);
    let b = match change {
        LinkChange::Up => b.up(),
        LinkChange::Down => b.down(),
        LinkChange::Mtu(m) => b.mtu(*m),
        LinkChange::Master(m) => b.controller(need_index(h, m).await?),
        LinkChange::NoMaster => b.nocontroller(),
        LinkChange::Mac(m) => b.address(parse_mac(m)?),
        LinkChange::Rename(n) => b.name(n.clone()),
        LinkChange::Hairpin(on) => {
            // Bridge port settings need RTM_NEWLINK with port data, not RTM_SETLINK.
            let port = LinkBridgePort::new(idx).hairpin(*on).build();
            let req = h.link().set_port(port).execute().await;
            return req.map_err(|e| fail(&format!("set link {name:?} {change:?}"), &e));
        }
    };
    h.link().set(b.build()).execute().await.map_err(|e| fail(&format!("set link {name:?} {change:?}"), &e))
}

/// Ensure `address` is on link `name`; found when it was there already.
pub async fn addr_add(h: &Handle, name: &str, address: IpNet) -> Result<Outcome, ExecError> {
    let idx = need_index(h, name).await?;
    let mut req = h.address().add(idx, address.addr(), address.prefix_len());
    if address.addr().is_ipv6() {
        req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
    }
    match req.execute().await {
        Ok(()) => Ok(Outcome::Created),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(Outcome::Found),
        Err(e) => Err(fail(&format!("add address {address} to {name:?}"), &e)),
    }
}

/// Ensure `address` is not on link `name`.
pub async fn addr_del(h: &Handle, name: &str, address: IpNet) -> Result<(), ExecError> {
    let Some(idx) = index(h, name).await? else { return Ok(()) };
    let mut found: Vec<AddressMessage> = h
        .address()
        .get()
        .set_link_index_filter(idx)
        .set_address_filter(address.addr())
        .set_prefix_length_filter(address.prefix_len())
        .execute()
        .try_collect()
        .await
        .map_err(|e| fail(&format!("list addresses of {name:?}"), &e))?;
    for msg in found.drain(..) {
        match h.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(ENODEV)) => {}
            Err(e) => return Err(fail(&format!("remove address {address} from {name:?}"), &e)),
        }
    }
    Ok(())
}

async fn route_message(h: &Handle, route: &RouteSpec, must_have_dev: bool) -> Result<Option<RouteMessage>, ExecError> {
    let d = route.destination;
    let bad = |e: &dyn std::fmt::Display| ExecError::new(format!("route to {d}: {e}"));
    let mut b =
        RouteMessageBuilder::<IpAddr>::new().destination_prefix(d.addr(), d.prefix_len()).map_err(|e| bad(&e))?;
    if let Some(gw) = route.gateway {
        b = b.gateway(gw).map_err(|e| bad(&e))?;
    }
    if let Some(dev) = &route.device {
        match index(h, dev).await? {
            Some(idx) => b = b.output_interface(idx),
            None if must_have_dev => return Err(ExecError::new(format!("route to {d}: link {dev:?} does not exist"))),
            None => return Ok(None),
        }
    }
    if let Some(m) = route.metric {
        b = b.priority(m);
    }
    if let Some(scope) = route.scope {
        b = b.scope(match scope {
            wharf_sdk::RouteScope::Universe => RouteScope::Universe,
            wharf_sdk::RouteScope::Site => RouteScope::Site,
            wharf_sdk::RouteScope::Link => RouteScope::Link,
            wharf_sdk::RouteScope::Host => RouteScope::Host,
        });
    }
    if route.onlink {
        b = b.onlink();
    }
    if let Some(src) = route.source {
        b = b.pref_source(src).map_err(|e| bad(&e))?;
    }
    if let Some(t) = route.table {
        b = b.table_id(t);
    }
    Ok(Some(b.build()))
}

/// Ensure a route exists; found when it was there already.
pub async fn route_add(h: &Handle, route: &RouteSpec) -> Result<Outcome, ExecError> {
    let Some(msg) = route_message(h, route, true).await? else { return Ok(Outcome::Created) };
    match h.route().add(msg).execute().await {
        Ok(()) => Ok(Outcome::Created),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(Outcome::Found),
        Err(e) => Err(fail(&format!("add route to {}", route.destination), &e)),
    }
}

/// Ensure a route is absent; a route through a vanished device is gone already.
pub async fn route_del(h: &Handle, route: &RouteSpec) -> Result<(), ExecError> {
    let Some(msg) = route_message(h, route, false).await? else { return Ok(()) };
    match h.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENOENT) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(fail(&format!("delete route to {}", route.destination), &e)),
    }
}

/// Ensure a permanent neighbour entry.
pub async fn neigh_add(h: &Handle, device: &str, address: IpAddr, mac: &str) -> Result<(), ExecError> {
    let idx = need_index(h, device).await?;
    h.neighbours()
        .add(idx, address)
        .link_layer_address(&parse_mac(mac)?)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(|e| fail(&format!("add neighbour {address} on {device:?}"), &e))
}

/// Ensure a neighbour entry is absent.
pub async fn neigh_del(h: &Handle, device: &str, address: IpAddr) -> Result<(), ExecError> {
    let Some(idx) = index(h, device).await? else { return Ok(()) };
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = idx;
    msg.header.family = if address.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    msg.attributes.push(NeighbourAttribute::Destination(address.into()));
    match h.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ESRCH) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(fail(&format!("delete neighbour {address} on {device:?}"), &e)),
    }
}

/// The message naming the proxy neighbour entry for `address` on link `idx`.
fn proxy_message(idx: u32, address: IpAddr) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = idx;
    msg.header.family = if address.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    msg.header.flags = NeighbourFlags::Proxy;
    msg.attributes.push(NeighbourAttribute::Destination(address.into()));
    msg
}

/// Ensure a proxy neighbour entry: the namespace answers for `address` on `device`. Found
/// when it was there already (the kernel takes a second add silently, so look first).
pub async fn neigh_proxy_add(h: &Handle, device: &str, address: IpAddr) -> Result<Outcome, ExecError> {
    let idx = need_index(h, device).await?;
    let what = || format!("add proxy neighbour {address} on {device:?}");
    let entries: Vec<NeighbourMessage> =
        h.neighbours().get().proxies().execute().try_collect().await.map_err(|e| fail(&what(), &e))?;
    let there = entries.iter().any(|m| {
        m.header.ifindex == idx
            && m.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Destination(d) if *d == address.into()))
    });
    if there {
        return Ok(Outcome::Found);
    }
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(proxy_message(idx, address)));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
    let mut responses = h.clone().request(req).map_err(|e| fail(&what(), &e))?;
    while let Some(m) = responses.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            return Err(fail(&what(), &rtnetlink::Error::NetlinkError(e)));
        }
    }
    Ok(Outcome::Created)
}

/// Ensure a proxy neighbour entry is absent.
pub async fn neigh_proxy_del(h: &Handle, device: &str, address: IpAddr) -> Result<(), ExecError> {
    let Some(idx) = index(h, device).await? else { return Ok(()) };
    match h.neighbours().del(proxy_message(idx, address)).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ESRCH) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(fail(&format!("delete proxy neighbour {address} on {device:?}"), &e)),
    }
}

/// Ensure a forwarding-database entry. Without `dst` it is a bridge port's entry, in its
/// bridge's table. With `dst` it is a VXLAN device's own entry (NTF_SELF) for a remote
/// VTEP, and it is appended: one address, above all the all-zero flood address, may have
/// several remotes, and appending one that is there already changes nothing.
pub async fn fdb_add(h: &Handle, device: &str, mac: &str, dst: Option<IpAddr>) -> Result<(), ExecError> {
    let idx = need_index(h, device).await?;
    let what = || format!("add fdb entry {mac} on {device:?}");
    let Some(dst) = dst else {
        let req = h.neighbours().add_bridge(idx, &parse_mac(mac)?).state(NeighbourState::Permanent);
        return match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(e) => Err(fail(&what(), &e)),
        };
    };
    let mut msg = fdb_message(idx, mac, Some(dst))?;
    msg.header.state = NeighbourState::Permanent;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut responses = h.clone().request(req).map_err(|e| fail(&what(), &e))?;
    while let Some(m) = responses.next().await {
        if let NetlinkPayload::Error(e) = m.payload {
            return Err(fail(&what(), &rtnetlink::Error::NetlinkError(e)));
        }
    }
    Ok(())
}

/// The FDB message naming `mac` on link `idx`, in the VXLAN device's own table when `dst`
/// (a remote VTEP) is given.
fn fdb_message(idx: u32, mac: &str, dst: Option<IpAddr>) -> Result<NeighbourMessage, ExecError> {
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = idx;
    msg.header.family = AddressFamily::Bridge;
    msg.attributes.push(NeighbourAttribute::LinkLayerAddress(parse_mac(mac)?));
    if let Some(d) = dst {
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes.push(NeighbourAttribute::Destination(d.into()));
    }
    Ok(msg)
}

/// Ensure a forwarding-database entry is absent (with `dst`: that one remote of it).
pub async fn fdb_del(h: &Handle, device: &str, mac: &str, dst: Option<IpAddr>) -> Result<(), ExecError> {
    let Some(idx) = index(h, device).await? else { return Ok(()) };
    match h.neighbours().del(fdb_message(idx, mac, dst)?).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ESRCH) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(fail(&format!("delete fdb entry {mac} on {device:?}"), &e)),
    }
}

pub(super) fn route_dest(msg: &RouteMessage) -> Option<IpNet> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => {
            IpNet::new((*v4).into(), msg.header.destination_prefix_length).ok()
        }
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => {
            IpNet::new((*v6).into(), msg.header.destination_prefix_length).ok()
        }
        _ => None,
    })
}

pub(super) fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table as u32)
}

pub(super) const MAIN_TABLE: u32 = 254;

/// The per-bridge sysctls drivers change, read from the calling thread's namespace; a key
/// that cannot be read is left out.
pub(super) fn bridge_sysctls(name: &str) -> std::collections::BTreeMap<String, String> {
    ["route_localnet"]
        .into_iter()
        .filter_map(|k| {
            let value = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/{k}")).ok()?;
            Some((wharf_sdk::link_sysctl_key("ipv4", name, k), value.trim().to_string()))
        })
        .collect()
}

pub(super) fn is_link_local(n: &IpNet) -> bool {
    match n {
        IpNet::V6(v) => (v.addr().segments()[0] & 0xffc0) == 0xfe80,
        IpNet::V4(v) => v.addr().octets()[0] == 169 && v.addr().octets()[1] == 254,
    }
}

/// A dump request for the main table's routes of one family; the socket's strict checking
/// makes the kernel leave out the other tables (the local table alone has a few entries per
/// address).
pub(super) fn route_query(v6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.table = MAIN_TABLE as u8;
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_speaks_by_alias_and_by_group_only_without_one() {
        let mark = Mark::new("0123456789abcdef");
        assert_eq!(mark.alias, "wharf:0123456789abcdef");
        assert_eq!(mark.group, 0x4123_4567);
        assert!(mark.on(Some("wharf:0123456789abcdef"), 0));
        assert!(mark.on(None, mark.group), "made, killed before its alias was set");
        assert!(!mark.on(Some("someone's"), mark.group));
        assert!(!mark.on(Some("wharf:fedcba9876543210"), 0), "another wharfd's");
        assert!(!mark.on(None, 0));
        assert_ne!(Mark::new("fedcba9876543210"), mark);
    }
}
