//! The harness's data-plane section: iperf3 between two sandboxes on a bridge network
//! against a bare veth pair, and through a published port against a direct (routed)
//! connection.

use crate::daemons::PrivateNetns;
use crate::iperf::{client as iperf, Iperf};
use crate::peers::wharf::{Via, Wharf};
use crate::peers::{Endpoints, NetSpec, Port};
use crate::report::Report;
use std::path::Path;
use std::process::Command;

fn ip(netns: &str, args: &[&str]) {
    let out = Command::new("ip").args(["-n", netns]).args(args).output().expect("ip");
    assert!(out.status.success(), "ip -n {netns} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Run the data-plane section: wharf's daemon from `bin_dir`, state under `work`, with a
/// bridge network like `spec`.
pub fn run(bin_dir: &Path, work: &Path, smoke: bool, spec: &NetSpec, report: &mut Report) {
    let section = "data plane";
    if crate::which("iperf3").is_none() {
        report.note("data plane: iperf3 is not installed (apt-get install iperf3, or --install-peers)");
        return;
    }
    let secs = if smoke { 1 } else { 5 };
    let rounds = if smoke { 1 } else { 3 };
    let mut w = Wharf::new(Via::Api, bin_dir, spec, work).unwrap_or_else(|e| panic!("{e}"));
    let host = w.daemon.netns().0.clone();
    let routed = serde_json::json!({
        "Name": "routed",
        "IPAM": { "Config": [{ "Subnet": "10.213.0.0/24" }] },
        "Options": { "com.docker.network.bridge.gateway_mode_ipv4": "routed" },
    });
    w.call("POST", "/networks/create", Some(&routed)).unwrap_or_else(|e| panic!("{e}"));
    w.connect(0, &[Port { host_port: 15201, container_port: 5201 }]).unwrap_or_else(|e| panic!("{e}"));
    w.connect(1, &[]).unwrap_or_else(|e| panic!("{e}"));
    w.call("POST", "/wharf/sandboxes", Some(&serde_json::json!({ "Name": "r" }))).unwrap_or_else(|e| panic!("{e}"));
    // In routed mode only published ports (and ICMP) are reachable from outside, as in Docker.
    let direct = serde_json::json!({ "Container": "r", "EndpointConfig": {
        "IPAMConfig": { "IPv4Address": "10.213.0.2" },
        "PortBindings": { "5201/tcp": [{ "HostIp": "", "HostPort": "25201" }] },
    } });
    w.call("POST", "/networks/routed/connect", Some(&direct)).unwrap_or_else(|e| panic!("{e}"));
    let sandbox = |name: &str| w.daemon.dir().join("netns").join(name).display().to_string();
    // An outside namespace wired to wharf's host namespace.
    let outside = PrivateNetns::new(&format!("wharf-bench-out{}", std::process::id())).expect("netns");
    ip(&host, &["link", "add", "wbup0", "type", "veth", "peer", "name", "wbup1", "netns", &outside.0]);
    ip(&host, &["addr", "add", "192.0.2.1/24", "dev", "wbup0"]);
    ip(&host, &["link", "set", "wbup0", "up"]);
    ip(&outside.0, &["addr", "add", "192.0.2.2/24", "dev", "wbup1"]);
    ip(&outside.0, &["link", "set", "wbup1", "up"]);
    ip(&outside.0, &["route", "add", "10.213.0.0/24", "via", "192.0.2.1"]);
    // A bare veth pair between two namespaces.
    let v1 = PrivateNetns::new(&format!("wharf-bench-v1-{}", std::process::id())).expect("netns");
    let v2 = PrivateNetns::new(&format!("wharf-bench-v2-{}", std::process::id())).expect("netns");
    ip(&v1.0, &["link", "add", "wbv1", "type", "veth", "peer", "name", "wbv2", "netns", &v2.0]);
    ip(&v1.0, &["addr", "add", "10.214.0.1/24", "dev", "wbv1"]);
    ip(&v1.0, &["link", "set", "wbv1", "up"]);
    ip(&v2.0, &["addr", "add", "10.214.0.2/24", "dev", "wbv2"]);
    ip(&v2.0, &["link", "set", "wbv2", "up"]);

    let servers = [sandbox("s0"), sandbox("r"), v1.path()];
    let _servers: Vec<Iperf> = servers.iter().map(|ns| Iperf::serve(ns).unwrap_or_else(|e| panic!("{e}"))).collect();
    let a_ip = {
        let net = w.call("GET", "/networks/bench3", None).unwrap_or_else(|e| panic!("{e}"));
        let containers = net["Containers"].as_object().cloned().unwrap_or_default();
        let ep = containers.values().find(|c| c["Name"] == "s0").cloned().unwrap_or_default();
        ep["IPv4Address"].as_str().unwrap_or_default().split('/').next().unwrap_or_default().to_string()
    };
    // (label, client namespace, address, port)
    let cases = [
        ("bridge: sandbox to sandbox", sandbox("s1"), a_ip.clone(), 5201),
        ("bare veth pair", v2.path(), "10.214.0.1".to_string(), 5201),
        ("published port, from outside", outside.path(), "192.0.2.1".to_string(), 15201),
        ("direct (routed), from outside", outside.path(), "10.213.0.2".to_string(), 5201),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (label, from, to, port)) in cases.iter().enumerate() {
            match iperf(from, to, *port, secs) {
                Ok(g) => results[i].push(g),
                Err(e) => report.note(format!("data plane, {label}: {e}")),
            }
        }
    }
    for (i, (label, ..)) in cases.iter().enumerate() {
        if !results[i].is_empty() {
            report.value(section, &format!("iperf3 TCP, {label}"), crate::report::median(&results[i]), "Gbit/s");
        }
    }
}
