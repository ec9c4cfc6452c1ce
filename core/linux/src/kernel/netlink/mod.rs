//! Netlink operations: links, addresses, routes, neighbour and FDB entries, and the host
//! facts. Each function takes the netlink handle of one namespace (see [`super::sockets`]) and is
//! idempotent: making what exists or removing what is absent succeeds. Links live here;
//! addresses, routes, neighbours and FDB entries in [`addresses`]. The host facts are kept
//! by [`super::facts`].

use futures::TryStreamExt;
use nix::errno::Errno::{EEXIST, ENODEV, ENOENT};
use rtnetlink::packet_route::address::AddressMessage;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkDummy, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan, LinkVxlan,
};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use wharf_engine::executor::{ExecError, Outcome};
use wharf_sdk::{LinkChange, LinkKind, LinkSpec, MacvlanMode};

mod addresses;

pub use addresses::{
    addr_add, addr_del, addresses_of, fdb_add, fdb_del, neigh_add, neigh_del, neigh_proxy_add, neigh_proxy_del,
    route_add, route_del,
};

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

/// The names of every link in the namespace `h` talks to.
pub async fn link_names(h: &Handle) -> Result<Vec<String>, ExecError> {
    names_where(h, |_, _| true).await
}

/// The names of the links in the namespace `h` talks to that carry `mark`.
pub async fn marked_links(h: &Handle, mark: &Mark) -> Result<Vec<String>, ExecError> {
    names_where(h, |alias, group| mark.on(alias, group)).await
}

/// The names of the links whose alias and group `keep` accepts, of each link message only
/// its name kept. Statistics are left out of the dump (the kernel writes, and we parse, about
/// half as much per link). rtnetlink reads a whole dump before handing it over, which suits
/// a sandbox's few links; the host's many are read through its facts mirror (`dump.rs`).
async fn names_where(h: &Handle, keep: impl Fn(Option<&str>, u32) -> bool) -> Result<Vec<String>, ExecError> {
    let mut links = h.link().get().set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats]).execute();
    let mut names = Vec::new();
    while let Some(l) = links.try_next().await.map_err(|e| fail("list links", &e))? {
        if let (Some(name), alias, group) = identity(&l) {
            if keep(alias, group) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
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
    Ok(settings(h, b, link).await?.build())
}

/// `b` with `link`'s own settings: MTU, MAC, master, up.
async fn settings(
    h: &Handle,
    mut b: LinkMessageBuilder<LinkUnspec>,
    link: &LinkSpec,
) -> Result<LinkMessageBuilder<LinkUnspec>, ExecError> {
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
    Ok(b)
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
    let b = settings(h, LinkUnspec::new_with_index(idx), link).await?;
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
    let addrs: Vec<AddressMessage> = addresses_of(h, idx, None)
        .set_link_index_filter(idx)
        .execute()
        .try_collect()
        .await
        .map_err(|e| fail(&what, &e))?;
    addresses::delete(h, addrs, || what.clone()).await?;
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
