//! An example third-party network driver: `ptp`, point-to-point veth links without a bridge.
//!
//! Each endpoint gets its own veth pair. The host end carries the network's gateway address
//! as a /32 (or /128) and a host route to the endpoint; the sandbox end gets the endpoint's
//! address as a /32 and a default route through the gateway, onlink since no prefix of the
//! sandbox's covers it. The host forwards between the endpoints' host routes: the network
//! turns forwarding on, and its removal puts back the value found. It shows every part of a
//! driver: option validation, typed private state, plans with inverses, the SDK's default
//! methods (`leave`, `delete_endpoint` and `delete_network` are the inverses of `join`,
//! `create_endpoint` and `create_network`), its test toolkit, and the export macro.
//!
//! Build it with `cargo build -p wharf-sdk --examples`, copy
//! `target/debug/examples/libwharf_example_driver.so` into a plugin directory owned by root
//! and not group- or world-writable, and restart wharfd.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use wharf_sdk::ipnet::IpNet;
use wharf_sdk::{
    export_plugin, mtu_option, next_interface_name, CreateNetwork, DriverError, DriverResult, EndpointInfo,
    EndpointRequest, HostFacts, JoinInfo, LinkKind, LinkSpec, Netns, NetworkDriver, NetworkSpec, Outcome, Plan,
    RouteSpec, Step, MTU,
};

/// The driver. It keeps nothing of its own: everything it needs arrives in each request.
#[derive(Debug, Default)]
pub struct Ptp;

/// What the driver remembers about a network between calls.
#[derive(Serialize, Deserialize, Default)]
struct NetworkState {
    mtu: u32,
}

/// What the driver remembers about an endpoint between calls: the names its links got,
/// so that `leave`, which sees no list of the sandbox's interfaces, plans the same links.
#[derive(Serialize, Deserialize, Default)]
struct EndpointState {
    host_if: String,
    sandbox_if: String,
}

fn parse_mtu(network: &NetworkSpec, facts: &HostFacts) -> DriverResult<u32> {
    mtu_option(&network.options, facts.mtu(), 65535)
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

/// The veth pair, the /32 addresses and the routes of an endpoint.
fn join_plan(req: &EndpointRequest, ep: &EndpointState, mtu: u32) -> (Plan, JoinInfo) {
    let sandbox = Netns::Path(req.sandbox.netns.clone());
    let mut plan = Plan::new();
    let veth =
        LinkKind::Veth { peer: ep.sandbox_if.clone(), peer_netns: sandbox.clone(), peer_mac: req.endpoint.mac.clone() };
    plan.push(Step::link_add(Netns::Host, LinkSpec { mtu: Some(mtu), up: true, ..LinkSpec::new(&ep.host_if, veth) }));
    let mut info = JoinInfo { interface: Some(ep.sandbox_if.clone()), ..Default::default() };
    let pools = req.network.ipv4.iter().chain(&req.network.ipv6);
    for (addr, pool) in [req.endpoint.ipv4, req.endpoint.ipv6].into_iter().flatten().zip(pools) {
        let Some(gw) = pool.gateway else { continue };
        plan.push(Step::addr_add(Netns::Host, &ep.host_if, IpNet::from(gw)));
        plan.push(Step::route_add(Netns::Host, RouteSpec::host(addr.addr(), &ep.host_if)));
        plan.push(Step::addr_add(sandbox.clone(), &ep.sandbox_if, IpNet::from(addr.addr())));
        // The gateway is in no prefix of the sandbox's /32: the default route is onlink.
        let route = RouteSpec::default_via(gw, &ep.sandbox_if, true);
        info.routes.push(route.clone());
        plan.push(Step::route_add(sandbox.clone(), route));
        match gw {
            IpAddr::V4(_) => info.gateway_v4 = Some(gw),
            IpAddr::V6(_) => info.gateway_v6 = Some(gw),
        }
    }
    (plan, info)
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
        Outcome::with_state((), forwarding(&req.network), &NetworkState { mtu })
    }

    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        let ep = EndpointState {
            host_if: format!("ptp{}", &req.endpoint.id[..req.endpoint.id.len().min(11)]),
            sandbox_if: next_interface_name("eth", &req.sandbox.interfaces),
        };
        Outcome::with_state(EndpointInfo { mac: req.endpoint.mac.clone() }, Plan::new(), &ep)
    }

    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let net: NetworkState = req.network_state_as()?;
        let ep: EndpointState = req.endpoint_state_as()?;
        let (plan, info) = join_plan(&req, &ep, net.mtu);
        wharf_sdk::tracing::debug!(sandbox = %req.sandbox.name, host_if = %ep.host_if, "ptp joins a sandbox");
        Ok(Outcome::new(info, plan, req.endpoint_state))
    }
}

export_plugin!(network Ptp);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::testing::{fixtures, Lifecycle};
    use wharf_sdk::SandboxSpec;

    #[test]
    fn an_endpoint_gets_a_veth_its_32_and_an_onlink_default_route_and_leaves_nothing() {
        let report = Lifecycle::new(&Ptp).run().unwrap();
        let join = &report.join;
        assert_eq!(join.response.interface.as_deref(), Some("eth0"));
        assert_eq!(join.response.gateway_v4, Some("10.10.0.1".parse().unwrap()));
        let default = &join.response.routes[0];
        assert!(default.onlink && default.destination.prefix_len() == 0, "{default:?}");
        let sandbox = Netns::Path(fixtures::sandbox("s").netns);
        assert!(join.plan.ops().any(|op| matches!(op,
            wharf_sdk::Op::AddrAdd { netns, address, .. } if *netns == sandbox && address.to_string() == "10.10.0.2/32")));
        assert_eq!(report.leave.plan, join.plan.inverse());
        assert!(report
            .network
            .plan
            .ops()
            .any(|op| matches!(op, wharf_sdk::Op::Sysctl { key, .. } if key == "net.ipv4.ip_forward")));
    }

    #[test]
    fn a_second_interface_in_a_sandbox_gets_the_next_name() {
        let sandbox = SandboxSpec { interfaces: vec!["eth0".into()], ..fixtures::sandbox("s") };
        let report = Lifecycle::new(&Ptp).sandbox(sandbox).run().unwrap();
        assert_eq!(report.join.response.interface.as_deref(), Some("eth1"));
    }

    #[test]
    fn unknown_options_and_bad_mtus_are_refused() {
        let mut network = fixtures::network("n", "10.10.0.0/24");
        network.options.insert("color".into(), "red".into());
        let err = Lifecycle::new(&Ptp).network(network.clone()).run().unwrap_err();
        assert!(err.call == "validate" && err.problem.contains("color"), "{err}");
        network.options = [(MTU.to_string(), "70000".to_string())].into();
        assert_eq!(Lifecycle::new(&Ptp).network(network).run().unwrap_err().call, "validate");
    }
}
