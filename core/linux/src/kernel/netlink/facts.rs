//! The host facts: links, addresses, default-route interfaces and route destinations of
//! one namespace, read in one pass for drivers to plan against.

use super::{dump_links, fail, format_mac};
use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::Handle;
use wharf_engine::executor::ExecError;
use wharf_sdk::{HostFacts, HostLink};

fn route_dest(msg: &RouteMessage) -> Option<IpNet> {
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

fn route_table(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(msg.header.table as u32)
}

const MAIN_TABLE: u32 = 254;

/// Links, addresses, default-route interfaces and route destinations of this namespace.
pub async fn host_facts(h: &Handle) -> Result<HostFacts, ExecError> {
    let links = dump_links(h).await?;
    let addrs: Vec<AddressMessage> =
        h.address().get().execute().try_collect().await.map_err(|e| fail("list addresses", &e))?;
    let mut addresses: std::collections::HashMap<u32, Vec<IpNet>> = std::collections::HashMap::new();
    for a in &addrs {
        let ip = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => IpNet::new(*ip, a.header.prefix_len).ok(),
            _ => None,
        });
        if let Some(ip) = ip {
            addresses.entry(a.header.index).or_default().push(ip);
        }
    }
    let mut facts = HostFacts::default();
    let mut names = std::collections::HashMap::new();
    for l in &links {
        for a in &l.attributes {
            if let LinkAttribute::IfName(n) = a {
                names.insert(l.header.index, n.clone());
            }
        }
    }
    for l in &links {
        let mut link = HostLink {
            index: l.header.index,
            up: l.header.flags.contains(LinkFlags::Up),
            loopback: l.header.flags.contains(LinkFlags::Loopback),
            ..Default::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::Address(b) if b.len() == 6 => link.mac = Some(format_mac(b)),
                LinkAttribute::Controller(i) => link.master = names.get(i).cloned(),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            link.kind = k.to_string();
                        }
                    }
                }
                _ => {}
            }
        }
        link.addresses = addresses.remove(&l.header.index).unwrap_or_default();
        if link.kind == "bridge" {
            link.sysctls = bridge_sysctls(&link.name);
        }
        facts.links.push(link);
    }
    for v6 in [false, true] {
        let routes: Vec<RouteMessage> =
            h.route().get(route_query(v6)).execute().try_collect().await.map_err(|e| fail("list routes", &e))?;
        for r in routes.iter().filter(|r| route_table(r) == MAIN_TABLE) {
            let oif = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => names.get(i).cloned(),
                _ => None,
            });
            match route_dest(r) {
                None if r.header.destination_prefix_length == 0 => {
                    let slot = if v6 { &mut facts.default_route_v6 } else { &mut facts.default_route_v4 };
                    if slot.is_none() {
                        *slot = oif;
                    }
                }
                Some(d) if d.prefix_len() > 0 && !d.addr().is_multicast() && !is_link_local(&d) => facts.routes.push(d),
                _ => {}
            }
        }
    }
    Ok(facts)
}

/// The per-bridge sysctls drivers change, read from the calling thread's namespace; a key
/// that cannot be read is left out.
fn bridge_sysctls(name: &str) -> std::collections::BTreeMap<String, String> {
    ["route_localnet"]
        .into_iter()
        .filter_map(|k| {
            let value = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/{k}")).ok()?;
            Some((wharf_sdk::link_sysctl_key("ipv4", name, k), value.trim().to_string()))
        })
        .collect()
}

fn is_link_local(n: &IpNet) -> bool {
    match n {
        IpNet::V6(v) => (v.addr().segments()[0] & 0xffc0) == 0xfe80,
        IpNet::V4(v) => v.addr().octets()[0] == 169 && v.addr().octets()[1] == 254,
    }
}

/// A dump request for the routes of one family.
/// A dump request for the main table's routes of one family; the socket's strict checking
/// makes the kernel leave out the other tables (the local table alone has a few entries per
/// address).
fn route_query(v6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.table = MAIN_TABLE as u8;
    msg
}
