//! A test plugin whose driver misbehaves on request: it panics, to show a panic inside a
//! plugin becomes an error for that call only; takes its time, to hold an operation in
//! flight while a test checks what else the daemon answers; or plans what it should not,
//! without the checks a driver owes, to show what core and the executor make of it.

use wharf_sdk::{
    export_plugin, CreateNetwork, DeleteNetwork, DriverResult, EndpointRequest, JoinInfo, LinkKind, LinkSpec, Netns,
    NetworkDriver, Outcome, Plan, Step,
};

/// How long `create_network` takes for a network named `slow`.
const SLOW: std::time::Duration = std::time::Duration::from_secs(2);

/// Panics in `create_network` when the network is named `boom`; takes [`SLOW`] for `slow`;
/// for `kernel`, plans a sysctl outside `net.`; and given option `bridge`, plans that
/// bridge without looking at what the host has under its name.
#[derive(Debug)]
pub struct Panicky;

impl NetworkDriver for Panicky {
    fn name(&self) -> &str {
        "panicky"
    }
    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let mut plan = Plan::new();
        match req.network.name.as_str() {
            "boom" => panic!("asked to explode"),
            "slow" => std::thread::sleep(SLOW),
            "kernel" => {
                plan.push(Step::sysctl(Netns::Host, "kernel.panic", "1", None));
            }
            _ => {}
        }
        if let Some(bridge) = req.network.options.get("bridge") {
            plan.push(Step::link_add(Netns::Host, LinkSpec::new(bridge, LinkKind::Bridge)));
        }
        Ok(Outcome::new((), plan, serde_json::Value::Null))
    }
    fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        Ok(Outcome::default())
    }
}

export_plugin!(network Panicky);
