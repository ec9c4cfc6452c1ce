//! Plan tests: what the bridge driver asks core to do, without root.

use super::*;
use ipnet::IpNet;
use std::collections::BTreeMap;
use wharf_sdk::{
    EndpointSpec, GatewayMode, HostLink, LinkChange, PortBinding, Protocol, RouteSpec, SandboxSpec, Subnet,
};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EP: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn facts() -> HostFacts {
    HostFacts {
        links: vec![HostLink { name: "eth0".into(), mtu: 1450, kind: String::new(), ..Default::default() }],
        default_route_v4: Some("eth0".into()),
        ..Default::default()
    }
}

fn network(opts: &[(&str, &str)]) -> NetworkSpec {
    NetworkSpec {
        id: ID.into(),
        name: "web".into(),
        options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ipv4: vec![Subnet { subnet: "10.1.0.0/24".parse().unwrap(), gateway: Some("10.1.0.1".parse().unwrap()) }],
        ..Default::default()
    }
}

fn dual_stack() -> NetworkSpec {
    let mut n = network(&[]);
    n.enable_ipv6 = true;
    n.ipv6 = vec![Subnet { subnet: "fd00:1::/64".parse().unwrap(), gateway: Some("fd00:1::1".parse().unwrap()) }];
    n
}

fn create(n: &NetworkSpec) -> Outcome<()> {
    BridgeDriver.create_network(CreateNetwork { network: n.clone(), facts: facts(), ..Default::default() }).unwrap()
}

fn endpoint_req(n: &NetworkSpec, taken: &[&str]) -> EndpointRequest {
    EndpointRequest {
        network: n.clone(),
        network_state: create(n).state,
        endpoint: EndpointSpec {
            id: EP.into(),
            network_id: ID.into(),
            ipv4: Some("10.1.0.2/24".parse().unwrap()),
            ipv6: n.ipv6.first().map(|_| "fd00:1::2/64".parse().unwrap()),
            ..Default::default()
        },
        sandbox: SandboxSpec {
            name: "sb".into(),
            netns: "/run/netns/sb".into(),
            interfaces: taken.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        facts: facts(),
        ..Default::default()
    }
}

fn joined(mut req: EndpointRequest) -> (EndpointRequest, Outcome<JoinInfo>) {
    req.endpoint_state = BridgeDriver.create_endpoint(req.clone()).unwrap().state;
    let out = BridgeDriver.join(req.clone()).unwrap();
    (req, out)
}

fn sandbox() -> Netns {
    Netns::Path("/run/netns/sb".into())
}

#[test]
fn a_default_network_is_a_bridge_with_its_gateway_forwarding_and_nat() {
    let plan = create(&network(&[])).plan;
    let ops: Vec<&Op> = plan.ops().collect();
    let Op::LinkAdd { netns: Netns::Host, link } = ops[0] else { panic!("{ops:?}") };
    assert_eq!(link.name, "br-0123456789ab");
    assert_eq!(link.kind, LinkKind::Bridge);
    assert_eq!(link.mtu, Some(1450), "MTU of the default-route interface");
    assert!(link.up);
    assert_eq!(
        *ops[1],
        Op::AddrAdd { netns: Netns::Host, link: "br-0123456789ab".into(), address: "10.1.0.1/24".parse().unwrap() }
    );
    assert!(ops.contains(&&Op::Sysctl { netns: Netns::Host, key: "net.ipv4.ip_forward".into(), value: "1".into() }));
    let fact = plan.ops().find_map(|o| match o {
        Op::FirewallAdd { fact } => Some((**fact).clone()),
        _ => None,
    });
    assert_eq!(
        fact,
        Some(FirewallFact::Network {
            bridge: "br-0123456789ab".into(),
            subnets: vec!["10.1.0.0/24".parse().unwrap()],
            masquerade: true,
            icc: true,
            internal: false,
            gateway_mode_v4: GatewayMode::Nat,
            gateway_mode_v6: GatewayMode::Nat,
            snat_v4: None,
            trusted: vec![],
        })
    );
}

#[test]
fn gateway_modes_and_trusted_interfaces_have_dockers_meanings() {
    let n = network(&[
        (options::GATEWAY_MODE_V4, "nat-unprotected"),
        (options::GATEWAY_MODE_V6, "routed"),
        (options::TRUSTED, "eth1:eth2::eth1"),
    ]);
    let plan = create(&n).plan;
    let fact = plan.ops().find_map(|o| match o {
        Op::FirewallAdd { fact } => match &**fact {
            FirewallFact::Network { gateway_mode_v4, gateway_mode_v6, trusted, .. } => {
                Some((*gateway_mode_v4, *gateway_mode_v6, trusted.clone()))
            }
            FirewallFact::Port { .. } => None,
        },
        _ => None,
    });
    assert_eq!(
        fact,
        Some((GatewayMode::NatUnprotected, GatewayMode::Routed, vec!["eth1".to_string(), "eth2".to_string()]))
    );
    let err = BridgeDriver.validate(&network(&[(options::TRUSTED, "eth1:bad name")]), &facts()).unwrap_err();
    assert_eq!(err.option.as_deref(), Some(options::TRUSTED), "{err}");
}

#[test]
fn publishing_on_the_ipv6_loopback_is_refused_with_a_reason() {
    let n = dual_stack();
    let mut req = endpoint_req(&n, &[]);
    req.endpoint.ports = vec![PortBinding {
        protocol: Protocol::Tcp,
        port: 80,
        host_ip: Some("::1".parse().unwrap()),
        host_port: 8080,
        ..Default::default()
    }];
    let created = BridgeDriver.create_endpoint(req.clone()).unwrap();
    req.endpoint_state = created.state;
    let err = BridgeDriver.join(req).unwrap_err();
    assert!(err.to_string().contains("::1") && err.to_string().contains("127.0.0.1"), "{err}");
}

#[test]
fn options_shape_the_network() {
    let n = network(&[
        (options::NAME, "mybr0"),
        (wharf_sdk::MTU, "1400"),
        (options::ICC, "false"),
        (options::MASQUERADE, "0"),
        (options::GATEWAY_MODE_V4, "routed"),
    ]);
    let plan = create(&n).plan;
    let Op::LinkAdd { link, .. } = plan.steps[0].op() else { panic!() };
    assert_eq!((link.name.as_str(), link.mtu), ("mybr0", Some(1400)));
    let fact = plan.ops().find_map(|o| match o {
        Op::FirewallAdd { fact } => match **fact {
            FirewallFact::Network { icc, masquerade, gateway_mode_v4, .. } => Some((icc, masquerade, gateway_mode_v4)),
            FirewallFact::Port { .. } => None,
        },
        _ => None,
    });
    assert_eq!(fact, Some((false, false, GatewayMode::Routed)));
}

#[test]
fn bad_and_unknown_options_are_refused_by_name() {
    let cases = [
        ("com.docker.network.bridge.bogus", "1"),
        (wharf_sdk::MTU, "9"),
        (wharf_sdk::MTU, "big"),
        (options::ICC, "maybe"),
        (options::GATEWAY_MODE_V4, "tunnel"),
        (options::NAME, "has space"),
        (options::NAME, "waytoolongname0123"),
        (options::HOST_BINDING, "localhost"),
    ];
    for (k, v) in cases {
        let err = BridgeDriver.validate(&network(&[(k, v)]), &facts()).unwrap_err();
        assert_eq!(err.option.as_deref(), Some(k), "{k}={v}: {err}");
    }
}

#[test]
fn a_bridge_name_in_use_is_refused() {
    let mut f = facts();
    f.wharf_bridges.push("br-0123456789ab".into());
    assert_eq!(BridgeDriver.validate(&network(&[]), &f).unwrap_err().kind, wharf_sdk::ErrorKind::Conflict);
    let err = BridgeDriver.validate(&network(&[(options::NAME, "eth0")]), &facts()).unwrap_err();
    assert!(err.message.contains("not a bridge"), "{err}");
}

#[test]
fn internal_networks_have_no_forwarding_and_no_default_route() {
    let mut n = network(&[]);
    n.internal = true;
    let plan = create(&n).plan;
    assert!(!plan.ops().any(|o| matches!(o, Op::Sysctl { .. })));
    assert!(plan.ops().any(
        |o| matches!(o, Op::FirewallAdd { fact } if matches!(**fact, FirewallFact::Network { internal: true, .. }))
    ));
    let (_, out) = joined(endpoint_req(&n, &[]));
    assert!(!out.plan.ops().any(|o| matches!(o, Op::RouteAdd { .. })));
    assert_eq!(out.response.gateway_v4, None);
    let mut req = endpoint_req(&n, &[]);
    req.endpoint.ports.push(PortBinding { port: 80, host_port: 8080, ..Default::default() });
    req.endpoint_state = BridgeDriver.create_endpoint(req.clone()).unwrap().state;
    assert!(BridgeDriver.join(req).is_err());
}

#[test]
fn dual_stack_gets_v6_gateway_forwarding_and_default_route() {
    let n = dual_stack();
    let plan = create(&n).plan;
    assert!(plan.ops().any(|o| matches!(o, Op::AddrAdd { address, .. } if address.to_string() == "fd00:1::1/64")));
    assert!(plan.ops().any(|o| matches!(o, Op::Sysctl { key, .. } if key == "net.ipv6.conf.all.forwarding")));
    let (_, out) = joined(endpoint_req(&n, &[]));
    assert!(out.plan.ops().any(|o| matches!(o, Op::AddrAdd { address, .. } if address.to_string() == "fd00:1::2/64")));
    assert_eq!(out.response.gateway_v6, Some("fd00:1::1".parse().unwrap()));
    assert_eq!(out.response.routes.len(), 2);
}

#[test]
fn inhibit_ipv4_leaves_the_bridge_without_an_ipv4_address() {
    let plan = create(&network(&[(options::INHIBIT_IPV4, "true")])).plan;
    assert!(!plan.ops().any(|o| matches!(o, Op::AddrAdd { address: IpNet::V4(_), .. })));
}

#[test]
fn join_creates_the_veth_peer_inside_the_sandbox() {
    let (_, out) = joined(endpoint_req(&network(&[]), &[]));
    let ops: Vec<&Op> = out.plan.ops().collect();
    let Op::LinkAdd { netns: Netns::Host, link } = ops[0] else { panic!("{ops:?}") };
    assert_eq!(link.name, "vethfedcba98765");
    assert_eq!(link.master.as_deref(), Some("br-0123456789ab"));
    assert_eq!(
        link.kind,
        LinkKind::Veth { peer: "eth0".into(), peer_netns: sandbox(), peer_mac: Some(wharf_sdk::mac_from_seed(EP)) }
    );
    let hairpin = Op::LinkSet { netns: Netns::Host, name: link.name.clone(), change: LinkChange::Hairpin(true) };
    assert_eq!(*ops[1], hairpin, "a sandbox can reach its own published ports");
    assert_eq!(*ops[2], Op::AddrAdd { netns: sandbox(), link: "eth0".into(), address: "10.1.0.2/24".parse().unwrap() });
    assert_eq!(
        *ops[3],
        Op::route_add(
            sandbox(),
            RouteSpec {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Some("10.1.0.1".parse().unwrap()),
                device: Some("eth0".into()),
                metric: None,
                ..Default::default()
            }
        )
    );
    assert_eq!(out.response.interface.as_deref(), Some("eth0"));
}

#[test]
fn interface_names_follow_what_the_sandbox_has_and_the_options() {
    let (_, out) = joined(endpoint_req(&network(&[]), &["eth0"]));
    assert_eq!(out.response.interface.as_deref(), Some("eth1"));
    let (_, out) = joined(endpoint_req(&network(&[(wharf_sdk::IFACE_PREFIX, "net")]), &[]));
    assert_eq!(out.response.interface.as_deref(), Some("net0"));
    let mut req = endpoint_req(&network(&[]), &[]);
    req.endpoint.options = BTreeMap::from([(wharf_sdk::ENDPOINT_IFNAME.to_string(), "web0".to_string())]);
    let (_, out) = joined(req);
    assert_eq!(out.response.interface.as_deref(), Some("web0"));
}

#[test]
fn a_given_mac_is_used() {
    let mut req = endpoint_req(&network(&[]), &[]);
    req.endpoint.mac = Some("02:00:00:00:00:07".into());
    let created = BridgeDriver.create_endpoint(req.clone()).unwrap();
    assert_eq!(created.response.mac.as_deref(), Some("02:00:00:00:00:07"));
}

#[test]
fn published_ports_become_port_facts() {
    let mut req = endpoint_req(&network(&[(options::HOST_BINDING, "192.0.2.10")]), &[]);
    req.endpoint.ports = vec![
        PortBinding { protocol: Protocol::Tcp, port: 80, host_port: 8080, ..Default::default() },
        PortBinding { protocol: Protocol::Udp, port: 53, host_port: 5300, host_port_end: 5310, ..Default::default() },
        PortBinding {
            protocol: Protocol::Sctp,
            port: 9,
            host_port: 9000,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
    ];
    let (_, out) = joined(req);
    let ports: Vec<(Protocol, Option<IpAddr>, u16, u16)> = out
        .plan
        .ops()
        .filter_map(|o| match o {
            Op::FirewallAdd { fact } => match **fact {
                FirewallFact::Port { protocol, host_ip, host_port, port, .. } => {
                    Some((protocol, host_ip, host_port, port))
                }
                FirewallFact::Network { .. } => None,
            },
            _ => None,
        })
        .collect();
    let default_ip = Some("192.0.2.10".parse().unwrap());
    assert_eq!(
        ports,
        vec![
            (Protocol::Tcp, default_ip, 8080, 80),
            (Protocol::Udp, default_ip, 5300, 53),
            (Protocol::Sctp, Some("127.0.0.1".parse().unwrap()), 9000, 9),
        ]
    );
    assert_eq!(out.response.ports.len(), 3);
}

#[test]
fn leave_removes_the_port_facts_and_then_the_veth() {
    let mut req = endpoint_req(&network(&[]), &[]);
    req.endpoint.ports = vec![PortBinding { port: 80, host_port: 8080, ..Default::default() }];
    let (req, join) = joined(req);
    let leave = BridgeDriver.leave(req).unwrap().plan;
    let ops: Vec<&Op> = leave.ops().collect();
    assert!(matches!(ops[0], Op::FirewallDel { .. }));
    assert_eq!(*ops.last().unwrap(), &Op::LinkDel { netns: Netns::Host, name: "vethfedcba98765".into() });
    assert_eq!(ops.len(), join.plan.ops().filter(|o| !matches!(o, Op::AddrAdd { .. } | Op::RouteAdd { .. })).count());
}

#[test]
fn delete_network_is_the_inverse_of_create() {
    let n = dual_stack();
    let created = create(&n);
    let deleted = BridgeDriver
        .delete_network(DeleteNetwork { network: n, state: created.state, facts: facts(), ..Default::default() })
        .unwrap()
        .plan;
    assert_eq!(deleted, created.plan.inverse());
    assert_eq!(deleted.ops().last(), Some(&Op::LinkDel { netns: Netns::Host, name: "br-0123456789ab".into() }));
}

#[test]
fn the_driver_answers_the_same_through_the_c_abi() {
    use wharf_sdk::abi::{Driver, Exported, PluginClient, KIND_NETWORK};
    let exported: &'static Exported = Box::leak(Exported::new(vec![Driver::network(BridgeDriver)]));
    // SAFETY: the table is leaked, so it lives for the rest of the test process.
    let table = unsafe { &*exported.table() };
    // SAFETY: a table made by `Exported`, valid for the process.
    let listed = unsafe { PluginClient::drivers(table) }.unwrap();
    assert_eq!((listed[0].name.as_str(), listed[0].kind), ("bridge", KIND_NETWORK));
    // SAFETY: driver 0 exists, as listed above.
    let client = unsafe { PluginClient::new(table, 0, "bridge".into()) };
    let (req, direct) = joined(endpoint_req(&network(&[]), &[]));
    assert_eq!(client.join(req).unwrap(), direct);
    let err = client.validate(&network(&[("nope", "1")]), &facts()).unwrap_err();
    assert_eq!(err.option.as_deref(), Some("nope"));
}

#[test]
fn a_new_bridge_gets_a_fixed_local_unicast_mac_kept_in_its_state() {
    let n = network(&[]);
    let out = create(&n);
    let Some(Op::LinkAdd { link, .. }) = out.plan.ops().next() else { panic!("{:?}", out.plan) };
    let mac = link.mac.clone().expect("the bridge has a MAC of its own");
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0b11, 0b10, "{mac}: locally administered and unicast");
    let s: Settings = state_from_value(DRIVER, &out.state, "network").unwrap();
    assert_eq!(s.mac.as_deref(), Some(mac.as_str()));
    let mut other = network(&[]);
    other.id = EP.into();
    let other = create(&other);
    let Some(Op::LinkAdd { link: other_link, .. }) = other.plan.ops().next() else { panic!("{:?}", other.plan) };
    assert_ne!(other_link.mac.as_deref(), Some(mac.as_str()), "each network has its own");
}

#[test]
fn an_existing_bridge_keeps_the_operators_mac() {
    let n = network(&[(options::NAME, "opbr0")]);
    let mut f = facts();
    f.links.push(HostLink { name: "opbr0".into(), mtu: 1500, kind: "bridge".into(), ..Default::default() });
    let out = BridgeDriver.create_network(CreateNetwork { network: n, facts: f, ..Default::default() }).unwrap();
    let Some(Op::LinkAdd { link, .. }) = out.plan.ops().next() else { panic!("{:?}", out.plan) };
    assert_eq!(link.mac, None);
}

#[test]
fn an_adopted_bridge_is_changed_by_steps_that_put_back_what_was_found() {
    let n = network(&[(options::NAME, "opbr0")]);
    let mut f = facts();
    let key = "net.ipv4.conf.opbr0.route_localnet";
    let sysctls = BTreeMap::from([(key.to_string(), "0".to_string())]);
    f.links.push(HostLink { name: "opbr0".into(), mtu: 1400, kind: "bridge".into(), sysctls, ..Default::default() });
    let out =
        BridgeDriver.create_network(CreateNetwork { network: n.clone(), facts: f, ..Default::default() }).unwrap();
    let Some(Op::LinkAdd { link, .. }) = out.plan.ops().next() else { panic!("{:?}", out.plan) };
    assert_eq!((link.mtu, link.up, &link.mac), (None, false, &None), "adopting the link changes nothing itself");
    let set = |change| Op::LinkSet { netns: Netns::Host, name: "opbr0".into(), change };
    assert_eq!(out.plan.steps[1], Step::new(set(LinkChange::Mtu(1450)), set(LinkChange::Mtu(1400))));
    assert_eq!(out.plan.steps[2], Step::new(set(LinkChange::Up), set(LinkChange::Down)));
    let localnet = out.plan.steps.iter().find(|s| matches!(s.op(), Op::Sysctl { key: k, .. } if k == key)).unwrap();
    assert_eq!(*localnet.undo(), Op::Sysctl { netns: Netns::Host, key: key.into(), value: "0".into() });

    // The removal, from the state alone, puts each back.
    let removal =
        BridgeDriver.delete_network(DeleteNetwork { network: n, state: out.state, ..Default::default() }).unwrap();
    assert_eq!(removal.plan, out.plan.inverse());

    // A bridge found up with the MTU asked for needs neither step.
    let n = network(&[(options::NAME, "opbr1")]);
    let mut f = facts();
    f.links.push(HostLink { name: "opbr1".into(), mtu: 1450, up: true, kind: "bridge".into(), ..Default::default() });
    let out = BridgeDriver.create_network(CreateNetwork { network: n, facts: f, ..Default::default() }).unwrap();
    assert!(!out.plan.ops().any(|op| matches!(op, Op::LinkSet { .. })), "{:?}", out.plan);
}

#[test]
fn an_endpoint_may_not_take_the_gateways_mac() {
    let n = network(&[]);
    let mut req = endpoint_req(&n, &[]);
    let s: Settings = state_from_value(DRIVER, &req.network_state, "network").unwrap();
    req.endpoint.mac = Some(s.mac.unwrap().to_uppercase());
    let err = BridgeDriver.create_endpoint(req.clone()).unwrap_err();
    assert_eq!(err.kind, wharf_sdk::ErrorKind::Conflict);
    assert!(err.to_string().contains("MacAddress"), "{err}");
    req.endpoint.mac = Some("02:00:00:00:00:01".into());
    assert!(BridgeDriver.create_endpoint(req).is_ok());
}
