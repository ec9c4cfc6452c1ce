//! wharf's `bridge` network driver: Docker's bridge networks as a plugin.
//!
//! One Linux bridge per network carries the gateway addresses; each endpoint is a veth
//! pair whose sandbox end is created directly inside the sandbox, with the endpoint's
//! addresses and a default route through the gateway (none on internal networks). NAT,
//! isolation, ICC and published ports are firewall facts that core's nftables backend
//! turns into set and map elements. A bridge the driver creates gets a fixed MAC, so its
//! address does not follow its ports. The driver only plans; it never touches the kernel.

mod options;

use options::{FoundBridge, Settings};
use std::net::IpAddr;
use wharf_sdk::{
    join_addresses, mac_from_seed, state_from_value, state_to_value, CreateNetwork, DeleteNetwork, DriverError,
    DriverResult, DriverState, EndpointInfo, EndpointRequest, FactsScope, FirewallFact, HostFacts, JoinInfo,
    LinkChange, LinkKind, LinkSpec, Netns, NetworkCapabilities, NetworkDriver, NetworkSpec, Op, Outcome, Plan,
    PortBinding, Step, VethEndpoint,
};

const DRIVER: &str = "bridge";

/// The bridge driver. Stateless: everything it remembers lives in the state core keeps.
#[derive(Debug, Default, Clone, Copy)]
pub struct BridgeDriver;

/// The key of a bridge's `route_localnet` sysctl.
fn route_localnet(bridge: &str) -> String {
    wharf_sdk::link_sysctl_key("ipv4", bridge, "route_localnet")
}

/// The plan that makes a network: bridge, gateway addresses, forwarding, firewall fact. A
/// bridge that stood there is changed by steps of their own, each undone by putting back
/// the value found, so removing the network leaves the bridge as it was.
fn network_plan(network: &NetworkSpec, s: &Settings) -> Plan {
    let mut plan = Plan::new();
    let mut bridge = LinkSpec::new(&s.bridge, LinkKind::Bridge);
    match &s.found {
        None => {
            bridge.mtu = Some(s.mtu);
            bridge.mac = s.mac.clone();
            bridge.up = true;
            plan.push(Step::link_add(Netns::Host, bridge));
        }
        Some(found) => {
            plan.push(Step::link_add(Netns::Host, bridge));
            if found.mtu != s.mtu {
                let set =
                    |mtu| Op::LinkSet { netns: Netns::Host, name: s.bridge.clone(), change: LinkChange::Mtu(mtu) };
                plan.push(Step::new(set(s.mtu), set(found.mtu)));
            }
            if !found.up {
                plan.push(Step::link_up(Netns::Host, &s.bridge));
            }
        }
    }
    let v4 = network.ipv4.iter().filter(|_| !s.inhibit_ipv4);
    let v6 = network.ipv6.iter().filter(|_| network.enable_ipv6);
    for gw in v4.chain(v6.clone()).filter_map(|p| p.gateway_cidr()) {
        plan.push(Step::addr_add(Netns::Host, &s.bridge, gw));
    }
    if !network.internal {
        plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", None));
        if v6.clone().next().is_some() {
            plan.push(Step::sysctl(Netns::Host, "net.ipv6.conf.all.forwarding", "1", None));
        }
        // Lets DNAT from 127.0.0.1 reach the bridge, for ports published on localhost. The
        // firewall drops whatever arrives on a bridge addressed to the host's loopback, so
        // sandboxes do not reach services the host binds to 127.0.0.1 through it.
        let previous = s.found.as_ref().and_then(|f| f.route_localnet.clone());
        plan.push(Step::sysctl(Netns::Host, route_localnet(&s.bridge), "1", previous));
    }
    plan.push(Step::firewall_add(FirewallFact::Network {
        bridge: s.bridge.clone(),
        subnets: network.ipv4.iter().chain(v6).map(|p| p.subnet).collect(),
        masquerade: s.masquerade,
        icc: s.icc,
        internal: network.internal,
        gateway_mode_v4: s.gateway_mode_v4,
        gateway_mode_v6: s.gateway_mode_v6,
        snat_v4: None,
        trusted: s.trusted.clone(),
    }));
    plan
}

/// Expand an endpoint's port bindings into firewall facts and the host ports bound.
fn port_facts(req: &EndpointRequest, s: &Settings) -> DriverResult<(Vec<FirewallFact>, Vec<PortBinding>)> {
    let mut facts = Vec::new();
    let mut bound = Vec::new();
    for p in &req.endpoint.ports {
        if p.host_port == 0 {
            return Err(DriverError::invalid(format!(
                "port {}/{}: give a host port (HOST:PORT)",
                p.port,
                p.protocol.as_str()
            )));
        }
        if p.host_port_end != 0 && p.host_port_end < p.host_port {
            return Err(DriverError::invalid(format!("host port range {}-{} is empty", p.host_port, p.host_port_end)));
        }
        let host_ip = p.host_ip.or(s.host_binding);
        if host_ip.is_some_and(|ip| ip.is_ipv6() && ip.is_loopback()) {
            // IPv6 has no route_localnet: the kernel never routes a packet from ::1 out of
            // the host, so a DNAT from ::1 to a sandbox cannot work.
            return Err(DriverError::invalid(format!(
                "port {}/{}: publishing on the IPv6 loopback address ::1 is not supported; \
                 publish on 127.0.0.1, or on :: and reach it from the host at its own address",
                p.port,
                p.protocol.as_str()
            )));
        }
        let targets: Vec<IpAddr> = match host_ip {
            Some(IpAddr::V4(_)) => req.endpoint.ipv4.map(|a| a.addr()).into_iter().collect(),
            Some(IpAddr::V6(_)) => req.endpoint.ipv6.map(|a| a.addr()).into_iter().collect(),
            None => req.endpoint.ipv4.iter().chain(&req.endpoint.ipv6).map(|a| a.addr()).collect(),
        };
        if targets.is_empty() {
            return Err(DriverError::invalid(format!(
                "port {}/{}: the endpoint has no address of the host IP's family",
                p.port,
                p.protocol.as_str()
            )));
        }
        for address in targets {
            facts.push(FirewallFact::Port {
                protocol: p.protocol,
                host_ip,
                host_port: p.host_port,
                address,
                port: p.port,
                bridge: s.bridge.clone(),
            });
        }
        bound.push(PortBinding { host_ip, host_port_end: 0, ..p.clone() });
    }
    Ok((facts, bound))
}

/// The plan that joins an endpoint to its sandbox, and what join reports.
fn join_plan(req: &EndpointRequest, s: &Settings, ep: &VethEndpoint) -> DriverResult<(Plan, JoinInfo)> {
    let sandbox = Netns::Path(req.sandbox.netns.clone());
    let mut plan = Plan::new();
    plan.push(ep.link_add(&sandbox, &s.bridge, s.mtu));
    plan.push(Step::hairpin(Netns::Host, &ep.host_if));
    let mut info = JoinInfo { interface: Some(ep.ifname.clone()), ..Default::default() };
    join_addresses(req, &sandbox, &ep.ifname, req.network.internal, &mut plan, &mut info);
    if !req.endpoint.ports.is_empty() && req.network.internal {
        return Err(DriverError::invalid(format!(
            "network {} is internal: ports cannot be published",
            req.network.name
        )));
    }
    let (facts, bound) = port_facts(req, s)?;
    for f in facts {
        plan.push(Step::firewall_add(f));
    }
    info.ports = bound;
    Ok((plan, info))
}

impl BridgeDriver {
    fn settings(req: &EndpointRequest) -> DriverResult<Settings> {
        state_from_value(DRIVER, &req.network_state, "network")
    }
}

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        "bridge"
    }

    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities {
            options: options::KNOWN.map(String::from).to_vec(),
            endpoint_options: vec![wharf_sdk::ENDPOINT_IFNAME.to_string()],
            link_option: Some(options::NAME.to_string()),
            // The bridge named by its option (or a new one) and the default-route
            // interface are all the driver reads of the host; it never looks at its peers.
            host_facts: FactsScope::Concerned,
            other_networks: false,
            ..Default::default()
        }
    }

    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        let s = options::resolve(network, facts)?;
        if facts.wharf_bridges.contains(&s.bridge) {
            return Err(DriverError::conflict(format!("bridge {} is already used by another network", s.bridge)));
        }
        if let Some(link) = facts.link(&s.bridge) {
            if link.kind != "bridge" {
                return Err(DriverError::invalid_option(
                    options::NAME,
                    format!(
                        "{} exists and is a {} link, not a bridge",
                        s.bridge,
                        if link.kind.is_empty() { "physical" } else { &link.kind }
                    ),
                ));
            }
        }
        if network.ipv4.is_empty() && !network.enable_ipv6 {
            return Err(DriverError::invalid("a bridge network needs an IPv4 or an IPv6 subnet"));
        }
        Ok(())
    }

    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let mut s = options::resolve(&req.network, &req.facts)?;
        // A bridge without an address of its own takes the lowest MAC among its ports, so
        // its address would change as sandboxes join and leave and the others' neighbour
        // caches would point at a MAC that is gone. Fix one at creation, as Docker does;
        // the network id is random, so the MAC drawn from it is too, and it is kept in
        // the network's state so a re-created bridge gets the same one.
        match req.facts.link(&s.bridge) {
            None => s.mac = Some(mac_from_seed(&format!("bridge {}", req.network.id))),
            Some(link) => {
                let route_localnet = link.sysctls.get(&route_localnet(&s.bridge)).cloned();
                s.found = Some(FoundBridge { mtu: link.mtu, up: link.up, mac: link.mac.clone(), route_localnet });
            }
        }
        let plan = network_plan(&req.network, &s);
        Ok(Outcome::new((), plan, state_to_value(DRIVER, &s)?))
    }

    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let s: Settings = state_from_value(DRIVER, &req.state, "network")?;
        Ok(Outcome::new((), network_plan(&req.network, &s).inverse(), DriverState::null()))
    }

    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        let s = Self::settings(&req)?;
        if let (Some(mac), Some(gateway)) = (&req.endpoint.mac, s.gateway_mac()) {
            if mac.eq_ignore_ascii_case(gateway) {
                // Two ports with one address on a segment: the sandboxes' replies to the
                // gateway would come back to this endpoint.
                return Err(DriverError::conflict(format!(
                    "MacAddress {mac} is the address of the network's gateway, bridge {}",
                    s.bridge
                )));
            }
        }
        let ep = VethEndpoint::new(DRIVER, &req, &s.iface_prefix)?;
        Ok(Outcome::new(ep.info(), Plan::new(), state_to_value(DRIVER, &ep)?))
    }

    fn delete_endpoint(&self, _req: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }

    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let s = Self::settings(&req)?;
        let ep: VethEndpoint = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        let (plan, info) = join_plan(&req, &s, &ep)?;
        Ok(Outcome::new(info, plan, req.endpoint_state))
    }

    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let s = Self::settings(&req)?;
        let ep: VethEndpoint = state_from_value(DRIVER, &req.endpoint_state, "endpoint")?;
        let (plan, _) = join_plan(&req, &s, &ep)?;
        // Deleting the veth takes its sandbox end, addresses and routes with it; undo the
        // host-side facts first, then the link.
        let plan: Plan = plan
            .inverse()
            .steps
            .into_iter()
            .filter(|st| !matches!(st.op(), Op::AddrDel { .. } | Op::RouteDel { .. }))
            .collect();
        Ok(Outcome::new((), plan, req.endpoint_state))
    }
}

wharf_sdk::export_plugin!(network BridgeDriver);

#[cfg(test)]
mod tests;
