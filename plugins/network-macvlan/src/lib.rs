//! wharf's `macvlan` network driver, compatible with Docker's.
//!
//! Each endpoint is a macvlan link on a parent interface, created directly inside the
//! sandbox with its own MAC address. The parent is `-o parent=IFACE` or the default-route
//! interface; `IFACE.VLAN` makes (and later removes) an 802.1Q sub-interface; with no
//! parent and no default route the network sits on a dummy link and is internal.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use wharf_sdk::{
    iface_prefix, join_addresses, mac_from_seed, mtu_option, sandbox_ifname, state_from_value, state_to_value,
    valid_ifname, CreateNetwork, DeleteNetwork, DriverError, DriverResult, DriverState, EndpointInfo, EndpointRequest,
    HostFacts, JoinInfo, LinkKind, LinkSpec, MacvlanMode, Netns, NetworkCapabilities, NetworkDriver, NetworkPeer,
    NetworkSpec, Op, Outcome, Plan, Step, IFACE_PREFIX, MTU,
};

const PARENT: &str = "parent";
const MODE: &str = "macvlan_mode";
const DRIVER: &str = "macvlan";

/// The macvlan driver; stateless like every wharf driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct MacvlanDriver;

/// What the driver keeps per network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NetworkState {
    /// The link endpoints hang off.
    parent: String,
    /// Whether this network made `parent` (a VLAN sub-interface or a dummy).
    created_parent: Option<LinkKind>,
    mode: MacvlanMode,
    mtu: u32,
    internal: bool,
    iface_prefix: String,
}

/// What the driver keeps per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EndpointState {
    ifname: String,
    mac: String,
}

fn parse_mode(v: &str) -> DriverResult<MacvlanMode> {
    match v {
        "bridge" => Ok(MacvlanMode::Bridge),
        "private" => Ok(MacvlanMode::Private),
        "vepa" => Ok(MacvlanMode::Vepa),
        "passthru" => Ok(MacvlanMode::Passthru),
        _ => Err(DriverError::invalid_option(MODE, format!("{v:?} is not one of bridge, private, vepa, passthru"))),
    }
}

/// Split `eth0.42` into the base link and the VLAN id, when it has that form.
fn vlan_parent(parent: &str) -> DriverResult<Option<(String, u16)>> {
    let Some((base, id)) = parent.rsplit_once('.') else { return Ok(None) };
    let Ok(id) = id.parse::<u16>() else { return Ok(None) };
    if !(1..=4094).contains(&id) || base.is_empty() {
        return Err(DriverError::invalid_option(PARENT, format!("{parent}: VLAN id must be between 1 and 4094")));
    }
    Ok(Some((base.to_string(), id)))
}

/// Decide the network's settings from its options, the host and the driver's other networks.
fn settle(network: &NetworkSpec, facts: &HostFacts, others: &[NetworkPeer]) -> DriverResult<NetworkState> {
    if let Some(bad) = network.options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(DriverError::unknown_option(DRIVER, bad));
    }
    let mode = network.options.get(MODE).map_or(Ok(MacvlanMode::Bridge), |v| parse_mode(v))?;
    let iface_prefix = iface_prefix(&network.options)?;
    let mut internal = network.internal;
    let (parent, created_parent, base_mtu) = match network.options.get(PARENT) {
        Some(p) => {
            if !valid_ifname(p) {
                return Err(DriverError::invalid_option(PARENT, format!("{p:?} is not a valid interface name")));
            }
            match (facts.link(p), vlan_parent(p)?) {
                (Some(link), _) => {
                    if link.loopback {
                        return Err(DriverError::invalid_option(PARENT, format!("{p} is a loopback device")));
                    }
                    if facts.wharf_bridges.contains(p) || link.kind == "bridge" && p.starts_with("br-") {
                        return Err(DriverError::invalid_option(PARENT, format!("{p} is a bridge of a wharf network")));
                    }
                    (p.clone(), None, link.mtu)
                }
                (None, Some((base, id))) => {
                    let base_link = facts.link(&base).ok_or_else(|| {
                        DriverError::invalid_option(PARENT, format!("{p}: base interface {base} does not exist"))
                    })?;
                    if base_link.loopback || facts.wharf_bridges.contains(&base) {
                        return Err(DriverError::invalid_option(
                            PARENT,
                            format!("{base} cannot carry a VLAN for macvlan"),
                        ));
                    }
                    (p.clone(), Some(LinkKind::Vlan { parent: base, id }), base_link.mtu)
                }
                (None, None) => return Err(DriverError::invalid_option(PARENT, format!("{p} does not exist"))),
            }
        }
        None => match facts.default_route_v4.as_deref().and_then(|d| facts.link(d)) {
            Some(link) => (link.name.clone(), None, link.mtu),
            None => {
                internal = true;
                (format!("dm-{}", network.short_id()), Some(LinkKind::Dummy), 1500)
            }
        },
    };
    let mtu = mtu_option(&network.options, base_mtu, base_mtu)?;
    for peer in others {
        let Ok(theirs) = state_from_value::<NetworkState>(DRIVER, &peer.state, "peer network") else { continue };
        if theirs.parent != parent {
            continue;
        }
        if mode == MacvlanMode::Passthru || theirs.mode == MacvlanMode::Passthru {
            return Err(DriverError::conflict(format!(
                "parent {parent} is used by network {} and passthru mode needs it alone",
                peer.network.name
            )));
        }
        let mine = network.ipv4.iter().chain(&network.ipv6).map(|s| s.subnet);
        for a in mine {
            if let Some(b) =
                peer.network.ipv4.iter().chain(&peer.network.ipv6).map(|s| s.subnet).find(|b| overlaps(&a, b))
            {
                return Err(DriverError::conflict(format!(
                    "subnet {a} overlaps {b} of network {} on the same parent {parent}",
                    peer.network.name
                )));
            }
        }
    }
    Ok(NetworkState { parent, created_parent, mode, mtu, internal, iface_prefix })
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The plan that makes the network's parent, when the network owns it.
fn parent_plan(s: &NetworkState) -> Plan {
    let mut plan = Plan::new();
    if let Some(kind) = &s.created_parent {
        let mut link = LinkSpec::new(&s.parent, kind.clone());
        link.up = true;
        plan.push(Step::link_add(Netns::Host, link));
    }
    plan
}

fn join_plan(req: &EndpointRequest, s: &NetworkState, ep: &EndpointState) -> (Plan, JoinInfo) {
    let sandbox = Netns::Path(req.sandbox.netns.clone());
    let mut link = LinkSpec::new(
        &ep.ifname,
        LinkKind::Macvlan { parent: s.parent.clone(), mode: s.mode, target_netns: Some(sandbox.clone()) },
    );
    link.mtu = Some(s.mtu);
    link.mac = Some(ep.mac.clone());
    link.up = true;
    let mut plan = Plan::new();
    let remove = Op::LinkDel { netns: sandbox.clone(), name: ep.ifname.clone() };
    plan.push(Step::new(Op::link_add(Netns::Host, link), remove));
    let mut info = JoinInfo { interface: Some(ep.ifname.clone()), ..Default::default() };
    join_addresses(req, &sandbox, &ep.ifname, s.internal, &mut plan, &mut info);
    (plan, info)
}

/// The options the driver reads.
const KNOWN: [&str; 4] = [PARENT, MODE, MTU, IFACE_PREFIX];

impl NetworkDriver for MacvlanDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities {
            options: KNOWN.map(String::from).to_vec(),
            endpoint_options: vec![wharf_sdk::ENDPOINT_IFNAME.to_string()],
            // It reads the parent the options name (and a VLAN parent's base) and the
            // default-route interface.
            host_facts: wharf_sdk::FactsScope::Concerned,
            ..Default::default()
        }
    }

    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        settle(network, facts, &[]).map(|_| ())
    }

    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let s = settle(&req.network, &req.facts, &req.others)?;
        Ok(Outcome::new((), parent_plan(&s), state_to_value(DRIVER, &s)?))
    }

    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let s: NetworkState = state_from_value(DRIVER, &req.state, "network")?;
        let shared = req
            .others
            .iter()
            .any(|p| state_from_value::<NetworkState>(DRIVER, &p.state, "peer").is_ok_and(|o| o.parent == s.parent));
        let plan = if shared { Plan::new() } else { parent_plan(&s).inverse() };
        Ok(Outcome::new((), plan, DriverState::null()))
    }

    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ifname = sandbox_ifname(DRIVER, &req, &s.iface_prefix)?;
        if !req.endpoint.ports.is_empty() {
            return Err(DriverError::invalid("macvlan endpoints cannot publish ports: they are reachable directly"));
        }
        let mac = req.endpoint.mac.clone().unwrap_or_else(|| mac_from_seed(&req.endpoint.id));
        let ep = EndpointState { ifname, mac: mac.clone() };
        Ok(Outcome::new(EndpointInfo { mac: Some(mac) }, Plan::new(), state_to_value(DRIVER, &ep)?))
    }

    fn delete_endpoint(&self, _req: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }

    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ep: EndpointState = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        let (plan, info) = join_plan(&req, &s, &ep);
        Ok(Outcome::new(info, plan, req.endpoint_state))
    }

    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let s: NetworkState = state_from_value(DRIVER, &req.network_state, "network")?;
        let ep: EndpointState = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        let (plan, _) = join_plan(&req, &s, &ep);
        // Deleting the link takes its addresses and routes with it.
        let plan = plan.inverse().steps.into_iter().filter(|st| matches!(st.op(), Op::LinkDel { .. })).collect();
        Ok(Outcome::new((), plan, req.endpoint_state))
    }
}

wharf_sdk::export_plugin!(network MacvlanDriver);

#[cfg(test)]
mod tests;
