//! Addresses, routes, neighbour and forwarding-database entries of one namespace, each
//! function idempotent like the links' (see the parent module).

use super::{errno, fail, index, need_index, parse_mac};
use futures::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use nix::errno::Errno::{EADDRNOTAVAIL, EEXIST, ENODEV, ENOENT, ESRCH};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressHeaderFlags, AddressMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressGetRequest, Handle, RouteMessageBuilder};
use std::net::IpAddr;
use wharf_engine::executor::{ExecError, Outcome};
use wharf_sdk::RouteSpec;

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

/// A dump of the addresses of link `idx` (of one family, or of all with `None`) that the
/// kernel filters itself: the request names the link, which the socket's strict checking
/// makes it honour. (rtnetlink's own link filter, which callers add all the same, only
/// sorts out what the kernel sent, which without this was every address of every link in
/// the namespace: a cost that grew with the links.)
pub fn addresses_of(h: &Handle, idx: u32, family: Option<AddressFamily>) -> AddressGetRequest {
    let mut req = h.address().get();
    req.message_mut().header.index = idx;
    if let Some(family) = family {
        req.message_mut().header.family = family;
    }
    req
}

/// Ensure `address` is not on link `name`.
pub async fn addr_del(h: &Handle, name: &str, address: IpNet) -> Result<(), ExecError> {
    let Some(idx) = index(h, name).await? else { return Ok(()) };
    let family = if address.addr().is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let found: Vec<AddressMessage> = addresses_of(h, idx, Some(family))
        .set_link_index_filter(idx)
        .set_address_filter(address.addr())
        .set_prefix_length_filter(address.prefix_len())
        .execute()
        .try_collect()
        .await
        .map_err(|e| fail(&format!("list addresses of {name:?}"), &e))?;
    delete(h, found, || format!("remove address {address} from {name:?}")).await
}

/// Delete the addresses `found`; one gone meanwhile is no error. `what` names the
/// operation in an error.
pub(super) async fn delete(h: &Handle, found: Vec<AddressMessage>, what: impl Fn() -> String) -> Result<(), ExecError> {
    for msg in found {
        match h.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(ENODEV)) => {}
            Err(e) => return Err(fail(&what(), &e)),
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
