//! Plan tests for the overlay driver, without root.

use super::*;
use wharf_sdk::{EndpointSpec, ErrorKind, SandboxSpec, Subnet};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EP: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn facts() -> HostFacts {
    let link = |name: &str, mtu: u32, addrs: &[&str]| HostLink {
        name: name.into(),
        mtu,
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        ..Default::default()
    };
    HostFacts {
        links: vec![
            link("lo", 65536, &["127.0.0.1/8"]),
            link("eth0", 1500, &["192.0.2.10/24", "fe80::1/64", "2001:db8::10/64"]),
            link("jumbo0", 9000, &["198.51.100.1/24"]),
        ],
        default_route_v4: Some("eth0".into()),
        default_route_v6: Some("eth0".into()),
        ..Default::default()
    }
}

fn network(opts: &[(&str, &str)]) -> NetworkSpec {
    NetworkSpec {
        id: ID.into(),
        name: "ov".into(),
        options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ipv4: vec![Subnet { subnet: "10.90.0.0/24".parse().unwrap(), gateway: Some("10.90.0.1".parse().unwrap()) }],
        ..Default::default()
    }
}

fn create(n: &NetworkSpec, others: Vec<NetworkPeer>) -> DriverResult<Outcome<()>> {
    OverlayDriver.create_network(CreateNetwork { network: n.clone(), facts: facts(), others })
}

fn state(out: &Outcome<()>) -> NetworkState {
    out.state.read().unwrap()
}

fn endpoint_req(n: &NetworkSpec, network_state: DriverState) -> EndpointRequest {
    EndpointRequest {
        network: n.clone(),
        network_state,
        endpoint: EndpointSpec {
            id: EP.into(),
            network_id: ID.into(),
            ipv4: Some("10.90.0.5/24".parse().unwrap()),
            ..Default::default()
        },
        sandbox: SandboxSpec { id: "s".into(), name: "s".into(), netns: "/run/netns/s".into(), interfaces: vec![] },
        ..Default::default()
    }
}

#[test]
fn a_network_is_a_bridge_with_a_vxlan_port_flooding_to_each_peer() {
    let n = network(&[(PEERS, "192.0.2.11, 192.0.2.12,192.0.2.11,192.0.2.10"), (VNI, "5000")]);
    let out = create(&n, vec![]).unwrap();
    let ops: Vec<&Op> = out.plan.ops().collect();
    assert_eq!(ops.len(), 4, "{ops:#?}");
    let Op::LinkAdd { link: bridge, .. } = ops[0] else { panic!("{:?}", ops[0]) };
    assert_eq!((bridge.name.as_str(), &bridge.kind), ("br-0123456789ab", &LinkKind::Bridge));
    let Op::LinkAdd { link: vx, .. } = ops[1] else { panic!("{:?}", ops[1]) };
    assert_eq!(vx.name, "vx-0123456789ab");
    assert_eq!(
        vx.kind,
        LinkKind::Vxlan {
            vni: 5000,
            port: 4789,
            local: Some("192.0.2.10".parse().unwrap()),
            underlay: Some("eth0".into()),
            learning: true,
            proxy: false,
        }
    );
    assert_eq!(vx.master.as_deref(), Some("br-0123456789ab"));
    assert_eq!((vx.mtu, bridge.mtu), (Some(1450), Some(1450)), "VXLAN over IPv4 costs 50 bytes");
    // Duplicates and the host's own address drop out of the peer list.
    let floods: Vec<String> = ops[2..]
        .iter()
        .map(|op| match op {
            Op::FdbAdd { device, mac, destination: Some(d), .. } if device == "vx-0123456789ab" && mac == FLOOD => {
                d.to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(floods, ["192.0.2.11", "192.0.2.12"]);
    let delete =
        OverlayDriver.delete_network(DeleteNetwork { network: n, state: out.state.clone(), ..Default::default() });
    assert_eq!(delete.unwrap().plan, out.plan.inverse());
}

#[test]
fn the_vni_defaults_from_the_name_so_hosts_agree_without_talking() {
    let a = state(&create(&network(&[]), vec![]).unwrap());
    let mut renamed = network(&[]);
    renamed.id = "f".repeat(64);
    let b = state(&create(&renamed, vec![]).unwrap());
    assert_eq!(a.vni, b.vni, "same name, other host (other id): same VNI");
    assert!((FIRST_VNI..=LAST_VNI).contains(&a.vni));
    renamed.name = "other".into();
    assert_ne!(state(&create(&renamed, vec![]).unwrap()).vni, a.vni);
}

#[test]
fn a_vni_in_use_on_the_same_port_is_a_conflict() {
    let first = network(&[(VNI, "7000")]);
    let others = vec![NetworkPeer { network: first.clone(), state: create(&first, vec![]).unwrap().state }];
    let mut second = network(&[(VNI, "7000")]);
    second.name = "ov2".into();
    let e = create(&second, others.clone()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("VNI 7000") && e.message.contains("network ov"), "{}", e.message);
    second.options.insert(DSTPORT.into(), "8472".into());
    assert!(create(&second, others).is_ok(), "another port is another VXLAN socket");
}

#[test]
fn the_underlay_follows_the_local_option_and_the_peers_family() {
    let s = state(&create(&network(&[(LOCAL, "198.51.100.1")]), vec![]).unwrap());
    assert_eq!((s.underlay.as_str(), s.mtu), ("jumbo0", 8950));
    let s = state(&create(&network(&[(PEERS, "2001:db8::11")]), vec![]).unwrap());
    assert_eq!(s.local, "2001:db8::10".parse::<IpAddr>().unwrap(), "a global address, not fe80::1");
    assert_eq!(s.mtu, 1430, "VXLAN over IPv6 costs 70 bytes");
    let s = state(&create(&network(&[(MTU, "1400")]), vec![]).unwrap());
    assert_eq!(s.mtu, 1400);
}

#[test]
fn bad_options_are_refused_by_name() {
    for (opts, needle) in [
        (vec![("encrypted", "")], "\"encrypted\""),
        (vec![(VNI, "0")], VNI),
        (vec![(VNI, "16777216")], VNI),
        (vec![(VNI, "5000,5001")], "one VNI"),
        (vec![(PEERS, "10.0.0.1,nope")], PEERS),
        (vec![(PEERS, "224.0.0.1")], PEERS),
        (vec![(PEERS, "2001:db8::11"), (LOCAL, "192.0.2.10")], "same family"),
        (vec![(LOCAL, "203.0.113.9")], "not an address of this host"),
        (vec![(DSTPORT, "0")], DSTPORT),
        (vec![(MTU, "1451")], "between 68 and 1450"),
    ] {
        let e = OverlayDriver.validate(&network(&opts), &facts()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.contains(needle), "{opts:?}: {}", e.message);
    }
}

#[test]
fn without_a_default_route_the_local_address_must_be_given() {
    let mut f = facts();
    f.default_route_v4 = None;
    let e = OverlayDriver.validate(&network(&[]), &f).unwrap_err();
    assert!(e.message.contains("\"local\"") && e.message.contains("no IPv4 default route"), "{}", e.message);
    assert!(OverlayDriver.validate(&network(&[(LOCAL, "192.0.2.10")]), &f).is_ok());
}

#[test]
fn an_endpoint_is_a_veth_on_the_bridge_with_its_addresses_and_no_gateway() {
    let n = network(&[]);
    let ns = create(&n, vec![]).unwrap().state;
    let mut req = endpoint_req(&n, ns);
    let created = OverlayDriver.create_endpoint(req.clone()).unwrap();
    req.endpoint_state = created.state;
    let joined = OverlayDriver.join(req.clone()).unwrap();
    assert_eq!(joined.response, JoinInfo { interface: Some("eth0".into()), ..Default::default() });
    let ops: Vec<&Op> = joined.plan.ops().collect();
    let Op::LinkAdd { netns: Netns::Host, link } = ops[0] else { panic!("{:?}", ops[0]) };
    assert_eq!(link.name, "vethfedcba98765");
    assert_eq!(link.master.as_deref(), Some("br-0123456789ab"));
    assert_eq!(link.mtu, Some(1450));
    assert_eq!(
        link.kind,
        LinkKind::Veth {
            peer: "eth0".into(),
            peer_netns: Netns::Path("/run/netns/s".into()),
            peer_mac: Some(wharf_sdk::mac_from_seed(EP))
        }
    );
    assert!(
        matches!(ops[1], Op::AddrAdd { link, address, .. } if link == "eth0" && address.to_string() == "10.90.0.5/24")
    );
    assert_eq!(ops.len(), 2, "no route: the overlay has no gateway");
    let left = OverlayDriver.leave(req).unwrap();
    let ops: Vec<&Op> = left.plan.ops().collect();
    assert_eq!(ops, [&Op::LinkDel { netns: Netns::Host, name: "vethfedcba98765".into() }]);
}

#[test]
fn published_ports_are_refused() {
    let n = network(&[]);
    let mut req = endpoint_req(&n, create(&n, vec![]).unwrap().state);
    req.endpoint.ports = vec![wharf_sdk::PortBinding { port: 80, host_port: 8080, ..Default::default() }];
    let e = OverlayDriver.create_endpoint(req).unwrap_err();
    assert!(e.message.contains("network ov is an overlay"), "{}", e.message);
}

#[test]
fn with_a_cluster_store_the_device_neither_learns_nor_floods() {
    let n = network(&[(VNI, "4100")]);
    let mut f = facts();
    f.cluster_vtep = Some("198.51.100.1".parse().unwrap());
    let out =
        OverlayDriver.create_network(CreateNetwork { network: n.clone(), facts: f.clone(), others: vec![] }).unwrap();
    let ops: Vec<&Op> = out.plan.ops().collect();
    assert_eq!(ops.len(), 2, "a bridge and its VXLAN port, no flood entries: {ops:#?}");
    let Op::LinkAdd { link: vx, .. } = ops[1] else { panic!("{:?}", ops[1]) };
    assert_eq!(
        vx.kind,
        LinkKind::Vxlan {
            vni: 4100,
            port: 4789,
            local: Some("198.51.100.1".parse().unwrap()),
            underlay: Some("jumbo0".into()),
            learning: false,
            proxy: true,
        }
    );
    assert_eq!(vx.mtu, Some(8950), "the advertised address's link sets the MTU");
    let with_peers = network(&[(PEERS, "192.0.2.11")]);
    let e = OverlayDriver.create_network(CreateNetwork { network: with_peers, facts: f.clone(), others: vec![] });
    assert!(e.unwrap_err().to_string().contains("give no peers"));
    f.cluster_vtep = Some("203.0.113.9".parse().unwrap());
    let e = OverlayDriver.create_network(CreateNetwork { network: n, facts: f, others: vec![] }).unwrap_err();
    assert!(e.to_string().contains("203.0.113.9 is not an address of this host"), "{e}");
}

#[test]
fn on_a_cluster_overlay_a_sandbox_asks_again_for_a_neighbour_every_tenth_of_a_second() {
    let n = network(&[]);
    let mut f = facts();
    f.cluster_vtep = Some("192.0.2.10".parse().unwrap());
    let ns = OverlayDriver.create_network(CreateNetwork { network: n.clone(), facts: f, others: vec![] }).unwrap();
    let mut req = endpoint_req(&n, ns.state);
    req.endpoint_state = OverlayDriver.create_endpoint(req.clone()).unwrap().state;
    let joined = OverlayDriver.join(req.clone()).unwrap();
    let sysctls: Vec<(String, String)> = joined
        .plan
        .steps
        .iter()
        .filter_map(|s| match (s.op(), &*s.undo()) {
            (Op::Sysctl { netns: Netns::Path(p), key, value }, Op::Noop) if p == "/run/netns/s" => {
                Some((key.clone(), value.clone()))
            }
            _ => None,
        })
        .collect();
    let want = [("net.ipv4.neigh.eth0.retrans_time_ms", "100"), ("net.ipv4.neigh.eth0.mcast_solicit", "30")];
    assert_eq!(sysctls, want.map(|(k, v)| (k.to_string(), v.to_string())));
    let left = OverlayDriver.leave(req).unwrap();
    assert_eq!(left.plan.steps.len(), 1, "the settings go with the interface");
}
