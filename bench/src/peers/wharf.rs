//! wharf itself, driven the two ways its users drive it: the `wharf` CLI (one process per
//! operation, like `docker network connect`) and the HTTP API on wharfd's socket.

use super::{Endpoints, Kind, NetSpec, Port};
use crate::daemons::Daemon;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use wharf_client::Client;

/// How the endpoints are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `wharf network connect` / `disconnect`, one process per operation.
    Cli,
    /// `POST /networks/{id}/connect` / `disconnect` on the socket.
    Api,
}

/// A wharfd of its own, in a private namespace, with one network of the benchmark's kind.
#[derive(Debug)]
pub struct Wharf {
    via: Via,
    label: String,
    net: String,
    cli: PathBuf,
    client: Client,
    rt: tokio::runtime::Runtime,
    sandboxes: std::collections::BTreeSet<usize>,
    /// The daemon; public so the harness can read its memory and restart it.
    pub daemon: Daemon,
}

/// The Docker API body that creates `spec` (wharf and Docker take the same).
pub fn create_body(spec: &NetSpec) -> Value {
    let options = match spec.kind {
        Kind::Bridge => json!({ "com.docker.network.bridge.name": spec.bridge }),
        Kind::Macvlan => json!({ "parent": spec.parent, "macvlan_mode": "bridge" }),
    };
    json!({
        "Name": spec.name,
        "Driver": spec.kind.as_str(),
        "IPAM": { "Config": [{ "Subnet": spec.subnet, "Gateway": spec.gateway }] },
        "Options": options,
    })
}

/// The Docker API body that connects sandbox `sandbox` publishing `ports` over TCP.
pub fn connect_body(sandbox: &str, ports: &[Port]) -> Value {
    let mut bindings = serde_json::Map::new();
    for p in ports {
        let key = format!("{}/tcp", p.container_port);
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        entry.as_array_mut().expect("array").push(json!({ "HostPort": p.host_port.to_string() }));
    }
    if bindings.is_empty() {
        return json!({ "Container": sandbox });
    }
    json!({ "Container": sandbox, "EndpointConfig": { "PortBindings": bindings } })
}

/// Make `name` (and its peer `name`-p) a veth pair in namespace `netns`, up: a macvlan parent.
pub fn veth_parent(netns: &str, name: &str) -> Result<(), String> {
    let peer = format!("{name}p");
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    };
    run(&["-n", netns, "link", "add", name, "type", "veth", "peer", "name", &peer])?;
    run(&["-n", netns, "link", "set", name, "up"])?;
    run(&["-n", netns, "link", "set", &peer, "up"])
}

impl Wharf {
    /// Start a wharfd from `bin_dir` with state under `work`, and create `spec` on it.
    pub fn new(via: Via, bin_dir: &Path, spec: &NetSpec, work: &Path) -> Result<Wharf, String> {
        let daemon = Daemon::wharfd(bin_dir, work)?;
        if spec.kind == Kind::Macvlan {
            veth_parent(&daemon.netns().0, &spec.parent)?;
        }
        let client = Client::new(&daemon.socket.display().to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(client.call("POST", "/networks/create", Some(&create_body(spec))))?;
        let label = match via {
            Via::Cli => "wharf CLI",
            Via::Api => "wharf API",
        };
        Ok(Wharf {
            via,
            label: label.into(),
            net: spec.name.clone(),
            cli: bin_dir.join("wharf"),
            client,
            rt,
            sandboxes: Default::default(),
            daemon,
        })
    }

    /// The same, reported as `label` (another build's, say).
    pub fn labelled(self, label: &str) -> Wharf {
        Wharf { label: label.into(), ..self }
    }

    /// One API call on the daemon.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        self.rt.block_on(self.client.call(method, path, body))
    }

    fn sandbox(&mut self, id: usize) -> Result<String, String> {
        let name = format!("s{id}");
        if self.sandboxes.insert(id) {
            self.call("POST", "/wharf/sandboxes", Some(&json!({ "Name": name })))?;
        }
        Ok(name)
    }

    fn cli(&self, args: &[String]) -> Result<Duration, String> {
        let t = Instant::now();
        let out = Command::new(&self.cli)
            .arg("-H")
            .arg(format!("unix://{}", self.daemon.socket.display()))
            .args(args)
            .output()
            .map_err(|e| format!("{}: {e}", self.cli.display()))?;
        let d = t.elapsed();
        if !out.status.success() {
            return Err(format!("wharf {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(d)
    }

    fn timed_call(&self, path: &str, body: &Value) -> Result<Duration, String> {
        let t = Instant::now();
        self.call("POST", path, Some(body))?;
        Ok(t.elapsed())
    }
}

impl Endpoints for Wharf {
    fn label(&self) -> &str {
        &self.label
    }

    fn connect(&mut self, id: usize, ports: &[Port]) -> Result<Duration, String> {
        let sandbox = self.sandbox(id)?;
        match self.via {
            Via::Api => self.timed_call(&format!("/networks/{}/connect", self.net), &connect_body(&sandbox, ports)),
            Via::Cli => {
                let mut args = vec!["network".to_string(), "connect".into(), self.net.clone(), sandbox];
                for p in ports {
                    args.push("-p".into());
                    args.push(format!("{}:{}/tcp", p.host_port, p.container_port));
                }
                self.cli(&args)
            }
        }
    }

    fn disconnect(&mut self, id: usize) -> Result<Duration, String> {
        let sandbox = format!("s{id}");
        match self.via {
            Via::Api => {
                self.timed_call(&format!("/networks/{}/disconnect", self.net), &json!({ "Container": sandbox }))
            }
            Via::Cli => self.cli(&["network".into(), "disconnect".into(), self.net.clone(), sandbox]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_become_docker_port_bindings() {
        let ports = [Port { host_port: 8080, container_port: 80 }, Port { host_port: 8081, container_port: 80 }];
        let body = connect_body("s1", &ports);
        assert_eq!(body["Container"], "s1");
        assert_eq!(body["EndpointConfig"]["PortBindings"]["80/tcp"][1]["HostPort"], "8081");
        assert_eq!(connect_body("s1", &[]), json!({ "Container": "s1" }));
    }

    #[test]
    fn a_macvlan_network_names_its_parent() {
        let spec = NetSpec {
            kind: Kind::Macvlan,
            name: "n".into(),
            subnet: "10.200.0.0/16".into(),
            gateway: "10.200.0.1".into(),
            bridge: "wbbr0".into(),
            parent: "wbpar0".into(),
        };
        let body = create_body(&spec);
        assert_eq!(body["Driver"], "macvlan");
        assert_eq!(body["Options"]["parent"], "wbpar0");
        assert_eq!(body["IPAM"]["Config"][0]["Gateway"], "10.200.0.1");
    }
}
