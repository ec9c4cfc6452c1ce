//! The built-in network drivers `host` and `null`, which implement the same SDK trait as
//! every plugin.

use wharf_sdk::{
    CreateNetwork, DeleteNetwork, DriverError, DriverResult, EndpointInfo, EndpointRequest, HostFacts, JoinInfo,
    LinkChange, Netns, NetworkCapabilities, NetworkDriver, NetworkSpec, Op, Outcome, Plan, Step,
};

fn no_options(driver: &str, network: &NetworkSpec) -> DriverResult<()> {
    match network.options.keys().next() {
        Some(k) => Err(DriverError::unknown_option(driver, k)),
        None => Ok(()),
    }
}

/// Docker's `host` network: the endpoint stays in the host's namespace; nothing to wire.
#[derive(Debug)]
pub struct Host;

impl NetworkDriver for Host {
    fn name(&self) -> &str {
        "host"
    }
    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities { uses_ipam: false, connects_sandboxes: false, ..Default::default() }
    }
    fn validate(&self, network: &NetworkSpec, _: &HostFacts) -> DriverResult<()> {
        no_options("host", network)
    }
    fn create_network(&self, _: CreateNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn create_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        Ok(Outcome::default())
    }
    fn delete_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        Ok(Outcome::default())
    }
    fn leave(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
}

/// Docker's `none` network: the sandbox gets its loopback and nothing else.
#[derive(Debug)]
pub struct Null;

impl NetworkDriver for Null {
    fn name(&self) -> &str {
        "null"
    }
    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities { uses_ipam: false, connects_sandboxes: false, ..Default::default() }
    }
    fn validate(&self, network: &NetworkSpec, _: &HostFacts) -> DriverResult<()> {
        no_options("null", network)
    }
    fn create_network(&self, _: CreateNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn create_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        Ok(Outcome::default())
    }
    fn delete_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        // Loopback must be up; leaving the network does not take it down again.
        let lo = Op::LinkSet { netns: Netns::Path(req.sandbox.netns), name: "lo".into(), change: LinkChange::Up };
        let plan: Plan = [Step::new(lo, Op::Noop)].into_iter().collect();
        Ok(Outcome::new(JoinInfo::default(), plan, req.endpoint_state))
    }
    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::new((), Plan::new(), req.endpoint_state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::SandboxSpec;

    fn req() -> EndpointRequest {
        EndpointRequest {
            sandbox: SandboxSpec { netns: "/run/netns/sb".into(), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn host_plans_nothing_and_uses_no_ipam() {
        assert!(!Host.capabilities().uses_ipam);
        assert!(Host.join(req()).unwrap().plan.is_empty());
        assert!(Host.leave(req()).unwrap().plan.is_empty());
        assert!(Host.create_network(CreateNetwork::default()).unwrap().plan.is_empty());
    }

    #[test]
    fn null_brings_loopback_up_and_leaves_it_up() {
        let join = Null.join(req()).unwrap().plan;
        assert_eq!(join.steps.len(), 1);
        assert_eq!(
            *join.steps[0].op(),
            Op::LinkSet { netns: Netns::Path("/run/netns/sb".into()), name: "lo".into(), change: LinkChange::Up }
        );
        assert_eq!(*join.steps[0].undo(), Op::Noop);
        assert!(Null.leave(req()).unwrap().plan.is_empty());
    }

    #[test]
    fn options_are_refused() {
        let mut n = NetworkSpec::default();
        n.options.insert("x".into(), "1".into());
        assert_eq!(Host.validate(&n, &HostFacts::default()).unwrap_err().option.as_deref(), Some("x"));
        assert!(Null.validate(&n, &HostFacts::default()).is_err());
    }
}
