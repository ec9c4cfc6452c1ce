//! The kernel's own cost of a bridge port, with no engine at all: `ip` alone adds a veth
//! pair whose peer goes straight into the endpoint's namespace, enslaves its host end to the
//! bridge and sets it up (one `ip -batch`), and deletes it again. Measured beside the
//! engines so that their growth with the ports on a bridge can be told from the kernel's.

use super::netavark::HostNetns;
use super::{Endpoints, Kind, NetSpec, Port};
use crate::daemons::PrivateNetns;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Bridge ports made by `ip` alone in a private namespace of their own.
#[derive(Debug)]
pub struct IpAlone {
    sandboxes: BTreeMap<usize, PrivateNetns>,
    host: HostNetns,
    bridge: String,
}

impl IpAlone {
    /// A private namespace holding one bridge like `spec`'s, up. Bridge networks only.
    pub fn new(spec: &NetSpec) -> Result<IpAlone, String> {
        if spec.kind != Kind::Bridge {
            return Err("bridge networks only".into());
        }
        let host = HostNetns::new("ip", spec)?;
        let me = IpAlone { sandboxes: BTreeMap::new(), host, bridge: spec.bridge.clone() };
        me.batch(&format!("link add {0} type bridge\nlink set {0} up\n", me.bridge))?;
        Ok(me)
    }

    /// Run `commands` in one `ip -batch` in the host namespace; how long it took.
    fn batch(&self, commands: &str) -> Result<Duration, String> {
        let mut ip = Command::new("ip");
        ip.args(["-batch", "-"]);
        self.host.run(ip, commands.as_bytes()).map(|(took, _)| took)
    }
}

impl Endpoints for IpAlone {
    fn label(&self) -> &str {
        "ip alone (kernel)"
    }

    fn connect(&mut self, id: usize, _ports: &[Port]) -> Result<Duration, String> {
        let sandbox = self.host.container(id)?;
        let port = format!("wbk{id}");
        let took = self.batch(&format!(
            "link add {port} type veth peer name eth0 netns {}\nlink set {port} master {}\nlink set {port} up\n",
            sandbox.0, self.bridge
        ))?;
        self.sandboxes.insert(id, sandbox);
        Ok(took)
    }

    fn disconnect(&mut self, id: usize) -> Result<Duration, String> {
        let took = self.batch(&format!("link del wbk{id}\n"))?;
        self.sandboxes.remove(&id);
        Ok(took)
    }
}
