//! A test plugin whose driver panics on request, to show a panic inside a plugin becomes
//! an error for that call only.

use wharf_sdk::{
    export_plugin, CreateNetwork, DeleteNetwork, DriverResult, EndpointInfo, EndpointRequest, HostFacts, JoinInfo,
    NetworkDriver, NetworkSpec, Outcome,
};

/// Panics in `create_network` when the network is named `boom`.
pub struct Panicky;

impl NetworkDriver for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn validate(&self, _: &NetworkSpec, _: &HostFacts) -> DriverResult<()> {
        Ok(())
    }
    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        if req.network.name == "boom" {
            panic!("asked to explode");
        }
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

export_plugin!(network Panicky);
