//! The cost of one driver call through the plugin ABI (serialize, call across
//! `extern "C"`, deserialize) next to the same call on the same driver linked statically.

use std::collections::BTreeMap;
use wharf_sdk::{
    CreateNetwork, DriverState, EndpointRequest, EndpointSpec, HostFacts, HostLink, NetworkDriver, NetworkSpec,
    PortBinding, Protocol, SandboxSpec, Subnet,
};

/// A realistic endpoint-join request for the bridge driver, as core sends it: a
/// dual-stack network with labels and options, the network state the driver returned at
/// create (on a host with 64 links), an endpoint publishing two ports, and the operator
/// settings as facts (endpoint calls carry no link list; see `HostFacts`).
pub fn join_request(driver: &dyn NetworkDriver) -> EndpointRequest {
    let network = NetworkSpec {
        id: "5f0c1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7".into(),
        name: "web".into(),
        options: BTreeMap::from([("com.docker.network.driver.mtu".to_string(), "1450".to_string())]),
        ipv4: vec![Subnet { subnet: "172.20.0.0/16".parse().unwrap(), gateway: Some("172.20.0.1".parse().unwrap()) }],
        ipv6: vec![Subnet {
            subnet: "fd12:3456:789a::/64".parse().unwrap(),
            gateway: Some("fd12:3456:789a::1".parse().unwrap()),
        }],
        enable_ipv6: true,
        internal: false,
        labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
    };
    let links = (0..64)
        .map(|i| HostLink {
            name: format!("veth{i:011x}"),
            index: i + 2,
            kind: "veth".into(),
            mtu: 1450,
            up: true,
            master: Some("br-5f0c1a2b3c4d".into()),
            mac: Some(format!("02:42:ac:14:00:{:02x}", i)),
            ..Default::default()
        })
        .collect();
    let facts = HostFacts {
        links,
        default_route_v4: Some("eth0".into()),
        routes: vec!["10.0.0.0/8".parse().unwrap()],
        volumes_dir: "/var/lib/wharf/volumes".into(),
        ..Default::default()
    };
    let created = driver
        .create_network(CreateNetwork { network: network.clone(), facts: facts.clone(), ..Default::default() })
        .expect("bridge create_network");
    let endpoint = EndpointSpec {
        id: "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9".into(),
        network_id: network.id.clone(),
        ipv4: Some("172.20.0.5/16".parse().unwrap()),
        ipv6: Some("fd12:3456:789a::5/64".parse().unwrap()),
        aliases: vec!["api".into()],
        ports: vec![
            PortBinding { protocol: Protocol::Tcp, port: 80, host_port: 8080, ..Default::default() },
            PortBinding { protocol: Protocol::Udp, port: 53, host_port: 5353, ..Default::default() },
        ],
        ..Default::default()
    };
    let sandbox = SandboxSpec {
        id: "1234".repeat(16),
        name: "api-1".into(),
        netns: "/run/netns/api-1".into(),
        interfaces: vec!["eth0".into()],
    };
    let endpoint_facts = HostFacts { volumes_dir: facts.volumes_dir, ..Default::default() };
    let mut req = EndpointRequest {
        network,
        network_state: created.state,
        endpoint,
        endpoint_state: DriverState::null(),
        sandbox,
        facts: endpoint_facts,
    };
    req.endpoint_state = driver.create_endpoint(req.clone()).expect("bridge create_endpoint").state;
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::abi::{Driver, Exported, PluginClient};

    #[test]
    fn the_abi_path_returns_exactly_what_the_static_driver_returns() {
        let exported: &'static Exported =
            Box::leak(Exported::new(vec![Driver::network(wharf_network_bridge::BridgeDriver)]));
        // SAFETY: the table is leaked, so it stays valid for the rest of the process.
        let table = unsafe { &*exported.table() };
        // SAFETY: driver 0 of that table is the bridge driver.
        let client = unsafe { PluginClient::new(table, 0, "bridge".into()) };
        let direct = wharf_network_bridge::BridgeDriver;
        let req = join_request(&direct);
        let a = direct.join(req.clone()).unwrap();
        let b = client.join(req).unwrap();
        assert_eq!(a, b);
        assert!(!a.plan.is_empty());
    }

    #[test]
    fn measure_reports_ordered_percentiles() {
        let mut n = 0u64;
        let s = crate::measure(9, 10, || n += 1);
        assert_eq!(n, 90);
        assert!(s.p10 <= s.median && s.median <= s.p90);
    }
}
