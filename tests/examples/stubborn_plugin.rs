//! A test plugin whose driver never lets an endpoint go: `join` wires a veth into the
//! sandbox like any point-to-point driver, `leave` always fails. It shows that a forced
//! disconnect or sandbox removal still takes away what the endpoint's plans made.

use wharf_sdk::{
    export_plugin, DriverError, DriverResult, EndpointRequest, JoinInfo, LinkKind, LinkSpec, Netns, NetworkDriver,
    Outcome, Plan, Step,
};

/// Joins for real and refuses every leave.
#[derive(Debug)]
pub struct Stubborn;

impl NetworkDriver for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }
    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let sandbox = Netns::Path(req.sandbox.netns.clone());
        let host_if = format!("stb{}", &req.endpoint.id[..8]);
        let veth = LinkKind::Veth { peer: "eth0".into(), peer_netns: sandbox.clone(), peer_mac: None };
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec { up: true, ..LinkSpec::new(host_if, veth) }));
        if let Some(ip) = req.endpoint.ipv4 {
            plan.push(Step::addr_add(sandbox, "eth0", ip));
        }
        let info = JoinInfo { interface: Some("eth0".into()), ..Default::default() };
        Ok(Outcome::new(info, plan, req.endpoint_state))
    }
    fn leave(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
        Err(DriverError::internal("this driver never lets an endpoint go"))
    }
}

export_plugin!(network Stubborn);
