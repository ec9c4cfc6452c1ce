//! A test plugin whose driver misbehaves on request: it panics, to show a panic inside a
//! plugin becomes an error for that call only, or takes its time, to hold an operation in
//! flight while a test checks what else the daemon answers.

use wharf_sdk::{
    export_plugin, CreateNetwork, DeleteNetwork, DriverResult, EndpointRequest, JoinInfo, NetworkDriver, Outcome,
};

/// How long `create_network` takes for a network named `slow`.
const SLOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Panics in `create_network` when the network is named `boom`; takes [`SLOW`] for `slow`.
#[derive(Debug)]
pub struct Panicky;

impl NetworkDriver for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        match req.network.name.as_str() {
            "boom" => panic!("asked to explode"),
            "slow" => std::thread::sleep(SLOW),
            _ => {}
        }
        Ok(Outcome::default())
    }
    fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        Ok(Outcome::default())
    }
}

export_plugin!(network Panicky);
