//! The host facts, kept current from rtnetlink notifications instead of dumped per call.
//!
//! Dumping every link, address and route of the host namespace for each network call made
//! its cost grow with the number of networks (500 bridges: six times the cost of one). A
//! [`Mirror`] dumps once, then follows the kernel's multicast notifications (links, IPv4
//! and IPv6 addresses and routes) on a socket of its own, and drains them before each use.
//!
//! Why a drain is enough to see a change made just before a call (a link `ip` made, say):
//! the kernel broadcasts a notification from inside the request that made the change,
//! before it acknowledges that request, so by the time the other program learned its change
//! was done, the notification sits in our socket's queue. Nothing of a finished change is
//! still in flight; a change racing with the call may or may not be seen, as with a dump.
//! If the queue overflowed (`ENOBUFS`), what was lost is unknown: the mirror is dumped
//! afresh, and notifications queued meanwhile are applied on top (each carries the whole
//! object, so applying one twice is harmless).
//!
//! Routes the kernel removes without a notification are removed here by the same rule: the
//! routes through a link that goes down or away, and the IPv4 routes whose preferred source
//! was an address that is gone. A link's own sysctls are not announced at all, so they are
//! read at each call, for the bridges this daemon did not make (the only ones a driver
//! adopts, and so the only ones whose values it records).

use super::netlink::{self, Mark};
use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REPLACE};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use wharf_engine::executor::{ExecError, LinkQuery};
use wharf_sdk::{HostFacts, HostLink};

/// The multicast groups followed: `RTNLGRP_LINK`, `RTNLGRP_IPV4_IFADDR`,
/// `RTNLGRP_IPV4_ROUTE`, `RTNLGRP_IPV6_IFADDR`, `RTNLGRP_IPV6_ROUTE` (`<linux/rtnetlink.h>`).
const GROUPS: [u32; 5] = [1, 5, 7, 9, 11];

/// The receive buffer asked for; a burst beyond it costs a dump, not correctness.
const RCVBUF: usize = 4 << 20;

/// How many dumps in a row a call tries when the queue keeps overflowing.
const RESYNC_TRIES: usize = 3;

/// One link as the facts need it.
#[derive(Debug, Clone, Default)]
struct Link {
    fact: HostLink,
    master: Option<u32>,
    alias: Option<String>,
    group: u32,
}

/// What identifies a route to the kernel (a notification of its removal carries the same).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RouteKey {
    v6: bool,
    dest: Option<IpNet>,
    prefix_len: u8,
    tos: u8,
    priority: u32,
    oif: u32,
}

/// The mirrored state of one namespace.
#[derive(Debug, Default)]
struct State {
    links: BTreeMap<u32, Link>,
    addresses: HashMap<u32, Vec<IpNet>>,
    /// Main-table routes, with their preferred source.
    routes: BTreeMap<RouteKey, Option<IpAddr>>,
}

/// Links, addresses and main-table routes of one namespace, kept current.
#[derive(Debug)]
pub struct Mirror {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: Socket,
    /// Where dumps are asked for and read, one datagram at a time.
    dumper: Socket,
    state: State,
    /// The state must be dumped before it is used (at first, and after an overflow).
    stale: bool,
}

impl Mirror {
    /// Follow the calling thread's namespace. Nothing is read until the first use.
    pub fn new() -> Result<Mirror, ExecError> {
        let fail = |e| ExecError::os("netlink notification socket", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind(&SocketAddr::new(0, 0)).map_err(fail)?;
        for g in GROUPS {
            socket.add_membership(g).map_err(fail)?;
        }
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_rx_buf_sz(RCVBUF);
        socket.set_non_blocking(true).map_err(fail)?;
        let dumper = super::dump::socket()?;
        Ok(Mirror { inner: Mutex::new(Inner { socket, dumper, state: State::default(), stale: true }) })
    }

    /// The facts as they are now. Links carrying `mark` are this daemon's own. With `only`,
    /// the links it selects and the default-route interfaces; nothing is copied of the rest.
    pub fn facts(&self, mark: &Mark, only: Option<&LinkQuery>) -> Result<HostFacts, ExecError> {
        Ok(self.current()?.state.facts(mark, only))
    }

    /// The names of the links carrying `mark`, as they are now.
    pub fn marked(&self, mark: &Mark) -> Result<Vec<String>, ExecError> {
        let inner = self.current()?;
        let marked = inner.state.links.values().filter(|l| mark.on(l.alias.as_deref(), l.group));
        Ok(marked.map(|l| l.fact.name.clone()).collect())
    }

    /// The state brought up to date: queued notifications applied, dumped again if some
    /// were lost.
    fn current(&self) -> Result<std::sync::MutexGuard<'_, Inner>, ExecError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        let inner = &mut *inner;
        let mut tries = 0;
        loop {
            if drain(&inner.socket, &mut inner.state)? {
                inner.stale = true;
            }
            if !inner.stale {
                break;
            }
            tries += 1;
            if tries > RESYNC_TRIES {
                return Err(ExecError::new("host facts: the notification queue keeps overflowing"));
            }
            // Whatever is queued now predates the dump or races with it; it is applied by
            // the next drain, on top of the dump.
            inner.state = dump(&inner.dumper)?;
            inner.stale = false;
        }
        Ok(guard)
    }
}

/// Apply every queued notification. `Ok(true)`: some were lost (the queue overflowed).
fn drain(socket: &Socket, state: &mut State) -> Result<bool, ExecError> {
    let mut lost = false;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        match socket.recv(&mut buf, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(lost),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => lost = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ExecError::os("reading netlink notifications", e)),
        }
        for frame in crate::frames::frames(&buf) {
            if let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(frame) {
                let replace = msg.header.flags & NLM_F_REPLACE != 0;
                if let NetlinkPayload::InnerMessage(m) = msg.payload {
                    state.apply(m, replace);
                }
            }
        }
    }
}

/// A full dump of the namespace `socket` is in, each message applied as it is read (see
/// [`super::dump`]).
fn dump(socket: &Socket) -> Result<State, ExecError> {
    let mut state = State::default();
    let mut links = LinkMessage::default();
    links.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    super::dump::each(socket, RouteNetlinkMessage::GetLink(links), "list links", |m| {
        if let RouteNetlinkMessage::NewLink(l) = m {
            state.link(&l);
        }
    })?;
    let addresses = RouteNetlinkMessage::GetAddress(AddressMessage::default());
    super::dump::each(socket, addresses, "list addresses", |m| {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            state.address(&a, true);
        }
    })?;
    for v6 in [false, true] {
        super::dump::each(socket, RouteNetlinkMessage::GetRoute(route_query(v6)), "list routes", |m| {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                state.route(&r, true, false);
            }
        })?;
    }
    Ok(state)
}

fn route_key(r: &RouteMessage) -> RouteKey {
    let mut key = RouteKey {
        v6: r.header.address_family == AddressFamily::Inet6,
        dest: route_dest(r),
        prefix_len: r.header.destination_prefix_length,
        tos: r.header.tos,
        priority: 0,
        oif: 0,
    };
    for a in &r.attributes {
        match a {
            RouteAttribute::Priority(p) => key.priority = *p,
            RouteAttribute::Oif(o) => key.oif = *o,
            _ => {}
        }
    }
    key
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

impl State {
    fn apply(&mut self, m: RouteNetlinkMessage, replace: bool) {
        match m {
            RouteNetlinkMessage::NewLink(l) => self.link(&l),
            RouteNetlinkMessage::DelLink(l) => {
                let i = l.header.index;
                self.links.remove(&i);
                self.addresses.remove(&i);
                self.routes.retain(|k, _| k.oif != i);
            }
            RouteNetlinkMessage::NewAddress(a) => self.address(&a, true),
            RouteNetlinkMessage::DelAddress(a) => self.address(&a, false),
            RouteNetlinkMessage::NewRoute(r) => self.route(&r, true, replace),
            RouteNetlinkMessage::DelRoute(r) => self.route(&r, false, false),
            _ => {}
        }
    }

    fn link(&mut self, l: &LinkMessage) {
        let i = l.header.index;
        let mut link = Link {
            fact: HostLink {
                index: i,
                up: l.header.flags.contains(LinkFlags::Up),
                loopback: l.header.flags.contains(LinkFlags::Loopback),
                ..Default::default()
            },
            ..Default::default()
        };
        for a in &l.attributes {
            match a {
                LinkAttribute::IfName(n) => link.fact.name = n.clone(),
                LinkAttribute::Mtu(m) => link.fact.mtu = *m,
                LinkAttribute::Address(b) if b.len() == 6 => link.fact.mac = Some(netlink::format_mac(b)),
                LinkAttribute::Controller(c) => link.master = Some(*c),
                LinkAttribute::IfAlias(x) => link.alias = Some(x.clone()),
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            link.fact.kind = k.to_string();
                        }
                    }
                }
                _ => {}
            }
        }
        // A link set down (or taken away) loses its routes without a notification of theirs.
        let was_up = self.links.get(&i).is_some_and(|old| old.fact.up);
        if was_up && !link.fact.up {
            self.routes.retain(|k, _| k.oif != i);
        }
        self.links.insert(i, link);
    }

    fn address(&mut self, a: &AddressMessage, present: bool) {
        let Some(ip) = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => IpNet::new(*ip, a.header.prefix_len).ok(),
            _ => None,
        }) else {
            return;
        };
        let list = self.addresses.entry(a.header.index).or_default();
        list.retain(|x| *x != ip);
        if present {
            list.push(ip);
            return;
        }
        // IPv4 routes preferring a source address the host no longer has go with it.
        let gone = ip.addr();
        if gone.is_ipv4() && !self.addresses.values().flatten().any(|x| x.addr() == gone) {
            self.routes.retain(|k, src| k.v6 || *src != Some(gone));
        }
    }

    fn route(&mut self, r: &RouteMessage, present: bool, replace: bool) {
        if route_table(r) != MAIN_TABLE {
            return;
        }
        let key = route_key(r);
        if !present {
            self.routes.remove(&key);
            return;
        }
        if replace {
            self.routes.retain(|k, _| {
                (k.v6, k.dest, k.prefix_len, k.tos, k.priority)
                    != (key.v6, key.dest, key.prefix_len, key.tos, key.priority)
            });
        }
        let src = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::PrefSource(s) => route_address(s),
            _ => None,
        });
        self.routes.insert(key, src);
    }

    /// The facts of this state, with every link or only those `only` selects (and the
    /// default-route interfaces); the sysctls of bridges not carrying `mark` are read now.
    fn facts(&self, mark: &Mark, only: Option<&LinkQuery>) -> HostFacts {
        let name = |i: &u32| self.links.get(i).map(|l| l.fact.name.clone());
        let mut facts = HostFacts::default();
        // The default route the kernel uses: the lowest metric.
        let mut defaults: [Option<(u32, u32)>; 2] = [None, None];
        for k in self.routes.keys() {
            match k.dest {
                None if k.prefix_len == 0 => {
                    let slot = &mut defaults[k.v6 as usize];
                    if self.links.contains_key(&k.oif) && slot.is_none_or(|(p, _)| k.priority < p) {
                        *slot = Some((k.priority, k.oif));
                    }
                }
                Some(d) if d.prefix_len() > 0 && !d.addr().is_multicast() && !is_link_local(&d) => facts.routes.push(d),
                _ => {}
            }
        }
        let default_links = defaults.map(|d| d.map(|(_, oif)| oif));
        let no_addresses = Vec::new();
        for l in self.links.values() {
            let addresses = self.addresses.get(&l.fact.index).unwrap_or(&no_addresses);
            let wanted =
                only.is_none_or(|q| q.wants(&l.fact.name, addresses)) || default_links.contains(&Some(l.fact.index));
            if !wanted {
                continue;
            }
            let mut link = l.fact.clone();
            link.master = l.master.as_ref().and_then(name);
            link.addresses = addresses.clone();
            if link.kind == "bridge" && !mark.on(l.alias.as_deref(), l.group) {
                link.sysctls = bridge_sysctls(&link.name);
            }
            facts.links.push(link);
        }
        let [v4, v6] = default_links;
        facts.default_route_v4 = v4.as_ref().and_then(name);
        facts.default_route_v6 = v6.as_ref().and_then(name);
        facts
    }
}

/// The kernel's main routing table.
const MAIN_TABLE: u32 = 254;

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

/// A dump request for the main table's routes of one family; the socket's strict checking
/// makes the kernel leave out the other tables (the local table alone has a few entries per
/// address).
fn route_query(v6: bool) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.table = MAIN_TABLE as u8;
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::RouteHeader;

    fn link(index: u32, name: &str, up: bool) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        m.attributes.push(LinkAttribute::IfName(name.into()));
        RouteNetlinkMessage::NewLink(m)
    }

    fn route(dest: &str, oif: u32, metric: u32, src: Option<&str>) -> RouteMessage {
        let net: IpNet = dest.parse().unwrap();
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = net.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        if let IpAddr::V4(a) = net.addr() {
            if net.prefix_len() > 0 {
                m.attributes.push(RouteAttribute::Destination(RouteAddress::Inet(a)));
            }
        }
        m.attributes.push(RouteAttribute::Oif(oif));
        m.attributes.push(RouteAttribute::Priority(metric));
        if let Some(IpAddr::V4(s)) = src.map(|s| s.parse().unwrap()) {
            m.attributes.push(RouteAttribute::PrefSource(RouteAddress::Inet(s)));
        }
        m
    }

    fn address(index: u32, net: &str) -> AddressMessage {
        let net: IpNet = net.parse().unwrap();
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = index;
        m.header.prefix_len = net.prefix_len();
        m.attributes.push(AddressAttribute::Address(net.addr()));
        m
    }

    fn routes(s: &State) -> Vec<String> {
        s.facts(&Mark::new("00"), None).routes.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn routes_the_kernel_drops_unannounced_are_dropped_by_its_rules() {
        let mut s = State::default();
        s.apply(link(2, "a", true), false);
        s.apply(link(3, "b", false), false);
        s.apply(RouteNetlinkMessage::NewAddress(address(2, "10.1.0.1/24")), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("10.1.0.0/24", 2, 0, Some("10.1.0.1"))), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("10.2.0.0/24", 2, 0, None)), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("10.3.0.0/24", 3, 0, None)), false);
        assert_eq!(routes(&s), ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
        // Still down: a change that is no transition to down keeps b's route.
        s.apply(link(3, "b2", false), false);
        assert_eq!(routes(&s), ["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"]);
        // The address preferred by a route goes, and the route with it.
        s.apply(RouteNetlinkMessage::DelAddress(address(2, "10.1.0.1/24")), false);
        assert_eq!(routes(&s), ["10.2.0.0/24", "10.3.0.0/24"]);
        s.apply(link(2, "a", false), false);
        assert_eq!(routes(&s), ["10.3.0.0/24"], "a link set down loses its routes");
        let RouteNetlinkMessage::NewLink(gone) = link(3, "b2", false) else { unreachable!() };
        s.apply(RouteNetlinkMessage::DelLink(gone), false);
        assert!(routes(&s).is_empty());
        assert_eq!(s.facts(&Mark::new("00"), None).links.len(), 1);
    }

    #[test]
    fn a_query_gets_the_links_it_names_or_addresses_and_the_default_route_link_only() {
        let mut s = State::default();
        for i in 2..502 {
            s.apply(link(i, &format!("br{i}"), true), false);
            s.apply(RouteNetlinkMessage::NewAddress(address(i, &format!("10.{}.{}.1/24", i / 256, i % 256))), false);
        }
        s.apply(RouteNetlinkMessage::NewRoute(route("0.0.0.0/0", 7, 0, None)), false);
        let q = LinkQuery {
            names: ["br3".to_string(), "absent".to_string()].into(),
            addresses: ["10.1.244.1".parse().unwrap()].into(),
        };
        let f = s.facts(&Mark::new("00"), Some(&q));
        let names: Vec<&str> = f.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["br3", "br7", "br500"]);
        assert_eq!(f.default_route_v4.as_deref(), Some("br7"));
        assert_eq!(f.links[2].addresses, ["10.1.244.1/24".parse::<IpNet>().unwrap()]);
        assert_eq!(s.facts(&Mark::new("00"), None).links.len(), 500);
    }

    #[test]
    fn a_replaced_route_leaves_no_trace_and_the_lowest_metric_default_wins() {
        let mut s = State::default();
        s.apply(link(2, "a", true), false);
        s.apply(link(3, "b", true), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("10.5.0.0/24", 2, 0, None)), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("10.5.0.0/24", 3, 0, None)), true);
        assert_eq!(s.routes.len(), 1);
        s.apply(RouteNetlinkMessage::DelRoute(route("10.5.0.0/24", 3, 0, None)), false);
        assert!(s.routes.is_empty());
        s.apply(RouteNetlinkMessage::NewRoute(route("0.0.0.0/0", 2, 200, None)), false);
        s.apply(RouteNetlinkMessage::NewRoute(route("0.0.0.0/0", 3, 100, None)), false);
        let f = s.facts(&Mark::new("00"), None);
        assert_eq!(f.default_route_v4.as_deref(), Some("b"));
        assert!(f.routes.is_empty());
    }
}
