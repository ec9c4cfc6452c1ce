//! An example third-party network driver: `ptp`, point-to-point veth links without a bridge.
//!
//! Each endpoint gets its own veth pair. The host end carries the network's gateway address
//! as a /32 (or /128) and a host route to the endpoint; the sandbox end gets the endpoint's
//! address as a /32 and a default route through the gateway, onlink since no prefix of the
//! sandbox's covers it. The host forwards between the endpoints' host routes: the network
//! turns forwarding on, and its removal puts back the value found. It shows every part of a
//! driver: option validation, private state, plans with inverses, and the export macro.
//!
//! Build it with `cargo build -p wharf-sdk --examples`, copy
//! `target/debug/examples/libwharf_example_driver.so` into a plugin directory owned by root
//! and not group- or world-writable, and restart wharfd.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::IpAddr;
use wharf_sdk::{
    export_plugin, mtu_option, next_interface_name, CreateNetwork, DeleteNetwork, DriverError, DriverResult,
    EndpointInfo, EndpointRequest, HostFacts, JoinInfo, LinkKind, LinkSpec, Netns, NetworkDriver, NetworkSpec, Outcome,
    Plan, RouteSpec, Step, MTU,
};

/// The driver. It keeps nothing of its own: everything it needs arrives in each request.
#[derive(Debug, Default)]
pub struct Ptp;

/// What the driver remembers about a network between calls.
#[derive(Serialize, Deserialize, Default)]
struct NetworkState {
    mtu: u32,
}

/// What the driver remembers about an endpoint between calls.
#[derive(Serialize, Deserialize, Default)]
struct EndpointState {
    host_if: String,
    sandbox_if: String,
}

fn parse_mtu(network: &NetworkSpec, facts: &HostFacts) -> DriverResult<u32> {
    mtu_option(&network.options, facts.mtu(), 65535)
}

fn state<T: for<'de> Deserialize<'de> + Default>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

fn host_prefix(ip: IpAddr) -> ipnet::IpNet {
    ipnet::IpNet::from(ip)
}

/// Turn on forwarding in the host for each family the network has; undo writes back the
/// value found.
fn forwarding(network: &NetworkSpec) -> Plan {
    let mut plan = Plan::new();
    if !network.ipv4.is_empty() {
        plan.push(Step::sysctl_restoring(Netns::Host, "net.ipv4.ip_forward", "1"));
    }
    if !network.ipv6.is_empty() {
        plan.push(Step::sysctl_restoring(Netns::Host, "net.ipv6.conf.all.forwarding", "1"));
    }
    plan
}

impl Ptp {
    fn join_plan(req: &EndpointRequest, ep: &EndpointState, mtu: u32) -> (Plan, JoinInfo) {
        let sandbox = Netns::Path(req.sandbox.netns.clone());
        let mut plan = Plan::new();
        let mut link = LinkSpec::new(
            ep.host_if.clone(),
            LinkKind::Veth {
                peer: ep.sandbox_if.clone(),
                peer_netns: sandbox.clone(),
                peer_mac: req.endpoint.mac.clone(),
            },
        );
        link.mtu = Some(mtu);
        link.up = true;
        plan.push(Step::link_add(Netns::Host, link));
        let mut info = JoinInfo { interface: Some(ep.sandbox_if.clone()), ..Default::default() };
        let pools = req.network.ipv4.iter().chain(&req.network.ipv6);
        for (addr, pool) in [req.endpoint.ipv4, req.endpoint.ipv6].into_iter().flatten().zip(pools) {
            let Some(gw) = pool.gateway else { continue };
            plan.push(Step::addr_add(Netns::Host, ep.host_if.clone(), host_prefix(gw)));
            plan.push(Step::route_add(Netns::Host, RouteSpec::host(addr.addr(), ep.host_if.clone())));
            plan.push(Step::addr_add(sandbox.clone(), ep.sandbox_if.clone(), host_prefix(addr.addr())));
            // The gateway is in no prefix of the sandbox's /32: the default route is onlink.
            let route = RouteSpec::default_via(gw, ep.sandbox_if.clone(), true);
            info.routes.push(route.clone());
            plan.push(Step::route_add(sandbox.clone(), route));
            if gw.is_ipv4() {
                info.gateway_v4 = Some(gw);
            } else {
                info.gateway_v6 = Some(gw);
            }
        }
        (plan, info)
    }
}

impl NetworkDriver for Ptp {
    fn name(&self) -> &str {
        "ptp"
    }

    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        if let Some(bad) = network.options.keys().find(|k| k.as_str() != MTU) {
            return Err(DriverError::unknown_option("ptp", bad));
        }
        parse_mtu(network, facts).map(|_| ())
    }

    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let mtu = parse_mtu(&req.network, &req.facts)?;
        let state = serde_json::to_value(NetworkState { mtu }).map_err(|e| DriverError::internal(e.to_string()))?;
        Ok(Outcome::new((), forwarding(&req.network), state))
    }

    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::new((), forwarding(&req.network).inverse(), req.state))
    }

    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        let ep = EndpointState {
            host_if: format!("ptp{}", &req.endpoint.id[..req.endpoint.id.len().min(11)]),
            sandbox_if: next_interface_name("eth", &req.sandbox.interfaces),
        };
        let info = EndpointInfo { mac: req.endpoint.mac.clone() };
        let state = serde_json::to_value(ep).map_err(|e| DriverError::internal(e.to_string()))?;
        Ok(Outcome::new(info, Plan::new(), state))
    }

    fn delete_endpoint(&self, _req: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }

    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let net: NetworkState = state(&req.network_state);
        let mut ep: EndpointState = state(&req.endpoint_state);
        ep.sandbox_if = next_interface_name("eth", &req.sandbox.interfaces);
        let (plan, info) = Ptp::join_plan(&req, &ep, net.mtu);
        let state = serde_json::to_value(ep).map_err(|e| DriverError::internal(e.to_string()))?;
        Ok(Outcome::new(info, plan, state))
    }

    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let net: NetworkState = state(&req.network_state);
        let ep: EndpointState = state(&req.endpoint_state);
        let (plan, _) = Ptp::join_plan(&req, &ep, net.mtu);
        Ok(Outcome::new((), plan.inverse(), req.endpoint_state))
    }
}

export_plugin!(network Ptp);
