//! wharf's `overlay` network driver: one layer-2 network spanning several hosts, carried
//! over VXLAN.
//!
//! On each host a network is a Linux bridge with a VXLAN device as one of its ports;
//! endpoints are veth pairs on the bridge, as on a bridge network. The VXLAN device floods
//! broadcast, unknown-unicast and multicast frames to every peer host (one all-zero FDB
//! entry per peer, head-end replication) and learns where each remote MAC lives from the
//! traffic, so no multicast underlay and no control plane are needed. Every host creates
//! the network with the same VNI and the list of its peers; hosts that give each other
//! disjoint `--ip-range`s of one subnet never hand out the same address.
//!
//! With a cluster store (core hands the driver this host's VTEP in the host facts), hosts
//! find each other through the store instead: the VXLAN device neither learns nor floods,
//! and answers ARP and neighbour solicitations itself (proxy), from the static FDB and
//! neighbour entries core programs for every remote endpoint. A frame for an address no
//! host owns goes nowhere.
//!
//! The network has no gateway: it carries traffic between its endpoints, on any host.
//! A sandbox that needs to reach further joins a bridge network as well.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use wharf_sdk::{
    fnv1a, iface_prefix, mtu_option, state_from_value, state_to_value, CreateNetwork, DeleteNetwork, DriverError,
    DriverResult, DriverState, EndpointInfo, EndpointRequest, HostFacts, HostLink, JoinInfo, LinkKind, LinkSpec, Netns,
    NetworkCapabilities, NetworkDriver, NetworkPeer, NetworkSpec, Op, Outcome, Plan, Scope, Step, VethEndpoint,
    IFACE_PREFIX, MTU,
};

const DRIVER: &str = "overlay";

/// The VXLAN network identifier, with Docker's option name. Docker takes one per subnet;
/// wharf's overlay is one segment, so it takes one.
pub const VNI: &str = "com.docker.network.driver.overlay.vxlanid_list";
/// Comma-separated underlay addresses of the other hosts' VXLAN endpoints.
pub const PEERS: &str = "peers";
/// This host's underlay address; default: the first address of the default-route link.
pub const LOCAL: &str = "local";
/// UDP port of the VXLAN traffic.
pub const DSTPORT: &str = "dstport";

const KNOWN: [&str; 6] = [VNI, PEERS, LOCAL, DSTPORT, MTU, IFACE_PREFIX];

/// IANA's VXLAN port.
const DEFAULT_PORT: u16 = 4789;
/// Docker's first overlay VNI; the ones below are left to other users of VXLAN.
const FIRST_VNI: u32 = 4096;
const LAST_VNI: u32 = (1 << 24) - 1;
/// How often a sandbox on a cluster overlay asks again for an address it has no answer
/// for, in milliseconds (the kernel's default is 1000), and how many times.
const RETRANS_MS: u32 = 100;
const SOLICITS: u32 = 30;
/// The all-zero MAC: an FDB entry for it floods to a remote.
const FLOOD: &str = "00:00:00:00:00:00";

/// The overlay driver. Stateless: what it remembers lives in the state core keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct OverlayDriver;

/// What the driver keeps per network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkState {
    bridge: String,
    vxlan: String,
    vni: u32,
    port: u16,
    local: IpAddr,
    /// The link holding `local`.
    underlay: String,
    peers: Vec<IpAddr>,
    mtu: u32,
    iface_prefix: String,
    /// Remote endpoints come from the cluster store: no learning, no flooding.
    #[serde(default)]
    cluster: bool,
}

fn parse_ip(option: &str, v: &str) -> DriverResult<IpAddr> {
    v.trim().parse().map_err(|_| DriverError::invalid_option(option, format!("{v:?} is not an IP address")))
}

/// The VNI a network gets when the operator names none: derived from the network's name,
/// so every host that creates the same network by name lands on the same segment.
fn default_vni(name: &str) -> u32 {
    FIRST_VNI + (fnv1a(name.as_bytes()) % u64::from(LAST_VNI - FIRST_VNI + 1)) as u32
}

fn parse_vni(v: &str) -> DriverResult<u32> {
    if v.contains(',') {
        return Err(DriverError::invalid_option(
            VNI,
            format!("{v:?}: an overlay network is one segment, give one VNI"),
        ));
    }
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=LAST_VNI).contains(&n) => Ok(n),
        _ => Err(DriverError::invalid_option(VNI, format!("{v:?} is not a VNI between 1 and {LAST_VNI}"))),
    }
}

/// The host link holding `addr`.
fn link_with(facts: &HostFacts, addr: IpAddr) -> Option<&HostLink> {
    facts.links.iter().find(|l| l.addresses.iter().any(|a| a.addr() == addr))
}

/// This host's underlay address and the link holding it: the `local` option, else the
/// first global address of the default-route link of the peers' address family.
fn underlay(network: &NetworkSpec, facts: &HostFacts, want_v6: bool) -> DriverResult<(IpAddr, HostLink)> {
    if let Some(v) = network.options.get(LOCAL) {
        let local = parse_ip(LOCAL, v)?;
        let link = link_with(facts, local)
            .ok_or_else(|| DriverError::invalid_option(LOCAL, format!("{local} is not an address of this host")))?;
        return Ok((local, link.clone()));
    }
    let (route, family) = if want_v6 { (&facts.default_route_v6, "IPv6") } else { (&facts.default_route_v4, "IPv4") };
    let link = route.as_deref().and_then(|d| facts.link(d)).ok_or_else(|| {
        DriverError::invalid_option(
            LOCAL,
            format!("this host has no {family} default route to take the underlay address from; set it"),
        )
    })?;
    let local =
        link.addresses.iter().map(|a| a.addr()).find(|a| a.is_ipv6() == want_v6 && !is_link_local(a)).ok_or_else(
            || {
                DriverError::invalid_option(
                    LOCAL,
                    format!("default-route link {} has no {family} address; set it", link.name),
                )
            },
        )?;
    Ok((local, link.clone()))
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Decide the network's settings from its options, the host and the driver's other
/// networks on this host.
fn settle(network: &NetworkSpec, facts: &HostFacts, others: &[NetworkPeer]) -> DriverResult<NetworkState> {
    if let Some(bad) = network.options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(DriverError::unknown_option(DRIVER, bad));
    }
    let mut peers = Vec::new();
    for p in network.options.get(PEERS).map(|v| v.split(',').filter(|p| !p.trim().is_empty())).into_iter().flatten() {
        let ip = parse_ip(PEERS, p)?;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(DriverError::invalid_option(PEERS, format!("{ip} cannot be a peer host's address")));
        }
        if !peers.contains(&ip) {
            peers.push(ip);
        }
    }
    if facts.cluster_vtep.is_some() && !peers.is_empty() {
        return Err(DriverError::invalid_option(
            PEERS,
            "hosts sharing a cluster store find each other through it; give no peers",
        ));
    }
    let want_v6 = match (network.options.get(LOCAL), facts.cluster_vtep) {
        (Some(v), _) => parse_ip(LOCAL, v)?.is_ipv6(),
        (None, Some(vtep)) => vtep.is_ipv6(),
        (None, None) => peers.first().is_some_and(IpAddr::is_ipv6),
    };
    let (local, link) = match (network.options.get(LOCAL), facts.cluster_vtep) {
        (None, Some(vtep)) => {
            let link = link_with(facts, vtep).ok_or_else(|| {
                DriverError::invalid(format!("the advertised address {vtep} is not an address of this host"))
            })?;
            (vtep, link.clone())
        }
        _ => underlay(network, facts, want_v6)?,
    };
    if let Some(p) = peers.iter().find(|p| p.is_ipv6() != local.is_ipv6()) {
        return Err(DriverError::invalid_option(
            PEERS,
            format!("{p} is not of the same family as local address {local}"),
        ));
    }
    // The same list can be given to every host: a host is not its own peer.
    peers.retain(|p| *p != local);
    let port = match network.options.get(DSTPORT) {
        None => DEFAULT_PORT,
        Some(v) => match v.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(DriverError::invalid_option(DSTPORT, format!("{v:?} is not a UDP port"))),
        },
    };
    let vni = match network.options.get(VNI) {
        Some(v) => parse_vni(v)?,
        None => default_vni(&network.name),
    };
    for other in others {
        let Ok(theirs) = state_from_value::<NetworkState>(DRIVER, &other.state, "peer network") else { continue };
        if theirs.vni == vni && theirs.port == port {
            let hint = if network.options.contains_key(VNI) {
                ""
            } else {
                "; choose another with -o com.docker.network.driver.overlay.vxlanid_list"
            };
            return Err(DriverError::conflict(format!(
                "VNI {vni} on port {port} is used by network {}{hint}",
                other.network.name
            )));
        }
    }
    // VXLAN adds 50 bytes over IPv4 (outer IP 20, UDP 8, VXLAN 8, inner Ethernet 14), 70 over IPv6.
    let overhead = if local.is_ipv6() { 70 } else { 50 };
    let max = link.mtu.saturating_sub(overhead).max(68);
    let mtu = mtu_option(&network.options, facts.default_mtu.map_or(max, |m| m.min(max)), max)?;
    let short = network.short_id();
    Ok(NetworkState {
        bridge: format!("br-{short}"),
        vxlan: format!("vx-{short}"),
        vni,
        port,
        local,
        underlay: link.name,
        peers,
        mtu,
        iface_prefix: iface_prefix(&network.options)?,
        cluster: facts.cluster_vtep.is_some(),
    })
}

/// The bridge, the VXLAN device on it, and one flood entry per peer host.
fn network_plan(s: &NetworkState) -> Plan {
    let mut plan = Plan::new();
    let mut bridge = LinkSpec::new(&s.bridge, LinkKind::Bridge);
    bridge.mtu = Some(s.mtu);
    bridge.up = true;
    plan.push(Step::link_add(Netns::Host, bridge));
    let mut vxlan = LinkSpec::new(
        &s.vxlan,
        LinkKind::Vxlan {
            vni: s.vni,
            port: s.port,
            local: Some(s.local),
            underlay: Some(s.underlay.clone()),
            learning: !s.cluster,
            proxy: s.cluster,
        },
    );
    vxlan.mtu = Some(s.mtu);
    vxlan.master = Some(s.bridge.clone());
    vxlan.up = true;
    plan.push(Step::link_add(Netns::Host, vxlan));
    for peer in &s.peers {
        plan.push(Step::fdb_add(Netns::Host, &s.vxlan, FLOOD, Some(*peer)));
    }
    plan
}

fn join_plan(req: &EndpointRequest, s: &NetworkState, ep: &VethEndpoint) -> Plan {
    let sandbox = Netns::Path(req.sandbox.netns.clone());
    let mut plan = Plan::new();
    plan.push(ep.link_add(&sandbox, &s.bridge, s.mtu));
    if s.cluster {
        // An address on another host answers ARP and neighbour solicitations once its
        // entry is programmed here; a sandbox that asked just before would otherwise wait
        // the kernel's 1 s before asking again. Ask every RETRANS_MS instead, as many times
        // more, so an address nobody owns still fails after as long as by default.
        let families = [("ipv4", req.endpoint.ipv4.is_some()), ("ipv6", req.endpoint.ipv6.is_some())];
        // In a sysctl key a `/` stands for a dot of the interface's name.
        let ifname = ep.ifname.replace('.', "/");
        for (family, _) in families.iter().filter(|(_, has)| *has) {
            let key = |what: &str| format!("net.{family}.neigh.{ifname}.{what}");
            plan.push(Step::sysctl(sandbox.clone(), key("retrans_time_ms"), RETRANS_MS.to_string(), None));
            plan.push(Step::sysctl(sandbox.clone(), key("mcast_solicit"), SOLICITS.to_string(), None));
        }
    }
    for addr in req.endpoint.ipv4.iter().chain(&req.endpoint.ipv6) {
        plan.push(Step::addr_add(sandbox.clone(), &ep.ifname, *addr));
    }
    plan
}

impl NetworkDriver for OverlayDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities {
            scope: Scope::Global,
            options: KNOWN.map(String::from).to_vec(),
            endpoint_options: vec![wharf_sdk::ENDPOINT_IFNAME.to_string()],
            // It reads the link holding the `local` address or the cluster VTEP, and the
            // default-route interfaces.
            host_facts: wharf_sdk::FactsScope::Concerned,
            ..Default::default()
        }
    }

    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        settle(network, facts, &[]).map(|_| ())
    }

    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let s = settle(&req.network, &req.facts, &req.others)?;
        Ok(Outcome::new((), network_plan(&s), state_to_value(DRIVER, &s)?))
    }

    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let s: NetworkState = state_from_value(DRIVER, &req.state, "network")?;
        Ok(Outcome::new((), network_plan(&s).inverse(), DriverState::null()))
    }

    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ep = VethEndpoint::new(DRIVER, &req, &s.iface_prefix)?;
        if !req.endpoint.ports.is_empty() {
            return Err(DriverError::invalid(format!(
                "network {} is an overlay: ports cannot be published on it; publish them on a bridge network",
                req.network.name
            )));
        }
        Ok(Outcome::new(ep.info(), Plan::new(), state_to_value(DRIVER, &ep)?))
    }

    fn delete_endpoint(&self, _req: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }

    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ep: VethEndpoint = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        let plan = join_plan(&req, &s, &ep);
        let info = JoinInfo { interface: Some(ep.ifname), ..Default::default() };
        Ok(Outcome::new(info, plan, req.endpoint_state))
    }

    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ep: VethEndpoint = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        // Deleting the veth takes its sandbox end and addresses with it.
        let plan = join_plan(&req, &s, &ep)
            .inverse()
            .steps
            .into_iter()
            .filter(|st| matches!(st.op(), Op::LinkDel { .. }))
            .collect();
        Ok(Outcome::new((), plan, req.endpoint_state))
    }
}

wharf_sdk::export_plugin!(network OverlayDriver);

#[cfg(test)]
mod tests;
