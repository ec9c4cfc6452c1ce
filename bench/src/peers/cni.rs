//! The CNI reference plugins (`containernetworking-plugins`), run the way a CNI runtime runs a
//! network configuration list: each plugin of the list in turn, with the runtime's variables
//! in the environment and its configuration, plus the previous plugin's result, on stdin.

use super::netavark::HostNetns;
use super::{Endpoints, Kind, NetSpec, Port};
use crate::daemons::PrivateNetns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where Debian installs the plugins.
const CNI_PATH: &str = "/usr/lib/cni";

/// The specification version used; the 1.1.x plugins support 0.1.0 to 1.0.0.
const CNI_VERSION: &str = "1.0.0";

/// The network configuration list for `spec`, with IPAM state under `data_dir`: the `bridge`
/// plugin (gateway on the bridge, masquerading), chained with `portmap` when `publish`, or the
/// `macvlan` plugin in bridge mode on the parent link. Both use `host-local` IPAM.
pub fn conflist(spec: &NetSpec, data_dir: &Path, publish: bool) -> Value {
    let ipam = json!({
        "type": "host-local",
        "ranges": [[{ "subnet": spec.subnet, "gateway": spec.gateway }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": data_dir,
    });
    let plugins = match spec.kind {
        Kind::Bridge => {
            let bridge = json!({
                "type": "bridge",
                "bridge": spec.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": ipam,
            });
            if publish {
                json!([bridge, { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }])
            } else {
                json!([bridge])
            }
        }
        Kind::Macvlan => json!([{ "type": "macvlan", "master": spec.parent, "mode": "bridge", "ipam": ipam }]),
    };
    json!({ "cniVersion": CNI_VERSION, "name": spec.name, "plugins": plugins })
}

/// The stdin of plugin `index` of `list`, as libcni builds it: the plugin's own entry with the
/// list's `name` and `cniVersion`, `prevResult` when there is one, and `runtimeConfig` with the
/// port mappings when the plugin declares the `portMappings` capability.
pub fn plugin_config(list: &Value, index: usize, ports: &[Port], prev: Option<&Value>) -> Value {
    let mut conf = list["plugins"][index].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if conf["capabilities"]["portMappings"] == json!(true) {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| json!({ "hostPort": p.host_port, "containerPort": p.container_port, "protocol": "tcp" }))
            .collect();
        conf["runtimeConfig"] = json!({ "portMappings": mappings });
    }
    conf
}

/// One endpoint: its namespace, the list it was added with, the ports and the ADD result
/// (the `prevResult` of every plugin on DEL, as libcni passes its cached result).
#[derive(Debug)]
struct Attached {
    list: Value,
    ports: Vec<Port>,
    result: Value,
    netns: PrivateNetns,
}

/// The CNI plugins in a private host namespace, attaching endpoints of one network.
#[derive(Debug)]
pub struct Cni {
    spec: NetSpec,
    dir: PathBuf,
    attached: BTreeMap<usize, Attached>,
    host: HostNetns,
}

impl Cni {
    /// Whether the plugins are installed.
    pub fn available() -> bool {
        Path::new(CNI_PATH).join("bridge").is_file()
    }

    /// Make a private host namespace for networks like `spec`, with IPAM state under `work`.
    pub fn new(spec: &NetSpec, work: &Path) -> Result<Cni, String> {
        if !Cni::available() {
            return Err(format!("the CNI plugins are not installed in {CNI_PATH}"));
        }
        let host = HostNetns::new("cni", spec)?;
        let dir = work.join(host.name());
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Cni { spec: spec.clone(), dir, attached: BTreeMap::new(), host })
    }

    /// Run every plugin of endpoint `id`'s list for `command` (in reverse order for DEL, each
    /// with the ADD result as `prevResult`); return the time of the whole chain and the last
    /// plugin's result.
    fn chain(&self, command: &str, id: usize, a: &Attached) -> Result<(Duration, Value), String> {
        let count = a.list["plugins"].as_array().map_or(0, Vec::len);
        let del = command == "DEL";
        let order: Vec<usize> = if del { (0..count).rev().collect() } else { (0..count).collect() };
        let mut total = Duration::ZERO;
        let mut prev = del.then(|| a.result.clone());
        for index in order {
            let conf = plugin_config(&a.list, index, &a.ports, prev.as_ref());
            let plugin = conf["type"].as_str().unwrap_or_default().to_string();
            let mut cmd = Command::new(Path::new(CNI_PATH).join(&plugin));
            cmd.env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", format!("wbc{id}"))
                .env("CNI_NETNS", a.netns.path())
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", CNI_PATH);
            let body = serde_json::to_vec(&conf).map_err(|e| e.to_string())?;
            let (took, out) =
                self.host.run(cmd, &body).map_err(|e| format!("CNI {plugin} {command} endpoint {id}: {e}"))?;
            total += took;
            if !del {
                prev = Some(serde_json::from_str(&out).map_err(|e| format!("CNI {plugin} result: {e}: {out}"))?);
            }
        }
        Ok((total, prev.unwrap_or(Value::Null)))
    }
}

impl Endpoints for Cni {
    fn label(&self) -> &str {
        "CNI"
    }

    /// The time of the whole chain: `bridge` (or `macvlan`) alone, or `bridge` then
    /// `portmap` when `ports` is not empty — two plugin executions.
    fn connect(&mut self, id: usize, ports: &[Port]) -> Result<Duration, String> {
        if self.attached.contains_key(&id) {
            return Err(format!("CNI: endpoint {id} is already attached"));
        }
        let ports = if self.spec.kind == Kind::Bridge { ports.to_vec() } else { Vec::new() };
        let list = conflist(&self.spec, &self.dir.join("ipam"), !ports.is_empty());
        let mut a = Attached { list, ports, result: Value::Null, netns: self.host.container(id)? };
        let (took, result) = self.chain("ADD", id, &a)?;
        a.result = result;
        self.attached.insert(id, a);
        Ok(took)
    }

    /// The time of the whole chain, as for [`Cni::connect`], run in reverse order.
    fn disconnect(&mut self, id: usize) -> Result<Duration, String> {
        let a = self.attached.get(&id).ok_or_else(|| format!("CNI: endpoint {id} is not attached"))?;
        let (took, _) = self.chain("DEL", id, a)?;
        self.attached.remove(&id);
        Ok(took)
    }
}

impl Drop for Cni {
    fn drop(&mut self) {
        self.attached.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> NetSpec {
        NetSpec {
            kind,
            name: "benchnet".into(),
            subnet: "10.200.0.0/16".into(),
            gateway: "10.200.0.1".into(),
            bridge: "wbbr0".into(),
            parent: "wbpar0".into(),
        }
    }

    #[test]
    fn bridge_chain_with_portmap_gets_the_ports_and_the_previous_result() {
        let list = conflist(&spec(Kind::Bridge), Path::new("/w/ipam"), true);
        assert_eq!(list["plugins"].as_array().unwrap().len(), 2);
        let ports = [Port { host_port: 8080, container_port: 80 }];
        let bridge = plugin_config(&list, 0, &ports, None);
        assert_eq!((bridge["type"].as_str(), bridge["bridge"].as_str()), (Some("bridge"), Some("wbbr0")));
        assert_eq!((bridge["name"].as_str(), bridge["cniVersion"].as_str()), (Some("benchnet"), Some("1.0.0")));
        assert_eq!((bridge["isGateway"].as_bool(), bridge["ipMasq"].as_bool()), (Some(true), Some(true)));
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["dataDir"], "/w/ipam");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.200.0.0/16");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.200.0.1");
        assert!(bridge.get("prevResult").is_none() && bridge.get("runtimeConfig").is_none());
        let prev = json!({ "cniVersion": "1.0.0", "ips": [{ "address": "10.200.0.2/16" }] });
        let portmap = plugin_config(&list, 1, &ports, Some(&prev));
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["name"], "benchnet");
        assert_eq!(portmap["prevResult"], prev);
        let mapping = &portmap["runtimeConfig"]["portMappings"][0];
        assert_eq!((mapping["hostPort"].as_u64(), mapping["containerPort"].as_u64()), (Some(8080), Some(80)));
        assert_eq!(mapping["protocol"], "tcp");
    }

    #[test]
    fn bridge_without_ports_is_the_bridge_alone() {
        let list = conflist(&spec(Kind::Bridge), Path::new("/w/ipam"), false);
        assert_eq!(list["plugins"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn macvlan_names_its_master_and_mode() {
        let list = conflist(&spec(Kind::Macvlan), Path::new("/w/ipam"), false);
        let conf = plugin_config(&list, 0, &[], None);
        assert_eq!(conf["type"], "macvlan");
        assert_eq!(conf["master"], "wbpar0");
        assert_eq!(conf["mode"], "bridge");
        assert_eq!(conf["ipam"]["type"], "host-local");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert!(conf.get("runtimeConfig").is_none());
    }
}
