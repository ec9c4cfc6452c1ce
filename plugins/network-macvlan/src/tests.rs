//! Plan tests for the macvlan driver, without root.

use super::*;
use wharf_sdk::{EndpointSpec, ErrorKind, HostLink, SandboxSpec, Subnet};

const ID: &str = "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";

fn link(name: &str, kind: &str, mtu: u32) -> HostLink {
    HostLink { name: name.into(), kind: kind.into(), mtu, loopback: name == "lo", ..Default::default() }
}

fn facts() -> HostFacts {
    HostFacts {
        links: vec![
            link("lo", "", 65536),
            link("eth0", "", 1500),
            link("up0", "veth", 9000),
            link("br-0123456789ab", "bridge", 1500),
        ],
        default_route_v4: Some("eth0".into()),
        wharf_bridges: vec!["br-0123456789ab".into()],
        ..Default::default()
    }
}

fn network(subnet: &str, opts: &[(&str, &str)]) -> NetworkSpec {
    NetworkSpec {
        id: ID.into(),
        name: "mv".into(),
        options: opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ipv4: vec![Subnet {
            subnet: subnet.parse().unwrap(),
            gateway: Some(subnet.replace(".0/24", ".1").parse().unwrap()),
        }],
        ..Default::default()
    }
}

fn create(n: &NetworkSpec, others: Vec<NetworkPeer>) -> DriverResult<Outcome<()>> {
    MacvlanDriver.create_network(CreateNetwork { network: n.clone(), facts: facts(), others })
}

fn peer(n: &NetworkSpec) -> NetworkPeer {
    NetworkPeer { network: n.clone(), state: create(n, vec![]).unwrap().state }
}

#[test]
fn the_default_parent_is_the_default_route_interface() {
    let out = create(&network("10.7.0.0/24", &[]), vec![]).unwrap();
    assert!(out.plan.is_empty(), "an existing parent is not touched");
    assert_eq!(out.state.to_value()["parent"], "eth0");
    assert_eq!(out.state.to_value()["mode"], "bridge");
    assert_eq!(out.state.to_value()["mtu"], 1500);
}

#[test]
fn a_vlan_parent_is_created_and_removed_with_its_network() {
    let n = network("10.7.0.0/24", &[(PARENT, "up0.42")]);
    let out = create(&n, vec![]).unwrap();
    let Op::LinkAdd { link, .. } = out.plan.steps[0].op() else { panic!() };
    assert_eq!(link.name, "up0.42");
    assert_eq!(link.kind, LinkKind::Vlan { parent: "up0".into(), id: 42 });
    assert_eq!(out.state.to_value()["mtu"], 9000, "MTU follows the base link");
    let del = MacvlanDriver
        .delete_network(DeleteNetwork { network: n.clone(), state: out.state.clone(), facts: facts(), others: vec![] })
        .unwrap();
    assert_eq!(*del.plan.steps[0].op(), Op::LinkDel { netns: Netns::Host, name: "up0.42".into() });
    let still_used = NetworkPeer { network: network("10.8.0.0/24", &[]), state: out.state.clone() };
    let del = MacvlanDriver
        .delete_network(DeleteNetwork { network: n, state: out.state, facts: facts(), others: vec![still_used] })
        .unwrap();
    assert!(del.plan.is_empty(), "a sub-interface another network uses stays");
}

#[test]
fn no_parent_and_no_default_route_means_an_internal_dummy() {
    let mut f = facts();
    f.default_route_v4 = None;
    let out = MacvlanDriver
        .create_network(CreateNetwork { network: network("10.7.0.0/24", &[]), facts: f, others: vec![] })
        .unwrap();
    let Op::LinkAdd { link, .. } = out.plan.steps[0].op() else { panic!() };
    assert_eq!((link.name.as_str(), &link.kind), ("dm-aaaabbbbcccc", &LinkKind::Dummy));
    assert_eq!(out.state.to_value()["internal"], true);
}

#[test]
fn refusals_name_their_cause() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![(PARENT, "lo")], PARENT),
        (vec![(PARENT, "br-0123456789ab")], PARENT),
        (vec![(PARENT, "nosuch0")], PARENT),
        (vec![(PARENT, "up0.5000")], PARENT),
        (vec![(MODE, "l2")], MODE),
        (vec![("bogus", "1")], "bogus"),
        (vec![(MTU, "9001"), (PARENT, "up0")], MTU),
    ];
    for (opts, option) in cases {
        let err = MacvlanDriver.validate(&network("10.7.0.0/24", &opts), &facts()).unwrap_err();
        assert_eq!(err.option.as_deref(), Some(option), "{opts:?}: {err}");
    }
    assert!(MacvlanDriver.validate(&network("10.7.0.0/24", &[(MTU, "1400")]), &facts()).is_ok());
}

#[test]
fn a_second_passthru_network_on_one_parent_is_refused() {
    let first = network("10.7.0.0/24", &[(PARENT, "up0"), (MODE, "passthru")]);
    let second = network("10.8.0.0/24", &[(PARENT, "up0"), (MODE, "passthru")]);
    let err = create(&second, vec![peer(&first)]).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert!(err.message.contains("passthru"), "{err}");
    let elsewhere = network("10.8.0.0/24", &[(PARENT, "eth0"), (MODE, "passthru")]);
    assert!(create(&elsewhere, vec![peer(&first)]).is_ok());
}

#[test]
fn overlapping_subnets_on_one_parent_are_refused() {
    let first = network("10.7.0.0/24", &[(PARENT, "up0")]);
    let err = create(&network("10.7.0.0/24", &[(PARENT, "up0")]), vec![peer(&first)]).unwrap_err();
    assert!(err.message.contains("overlaps"), "{err}");
    assert!(create(&network("10.9.0.0/24", &[(PARENT, "up0")]), vec![peer(&first)]).is_ok());
}

fn endpoint(n: &NetworkSpec) -> EndpointRequest {
    EndpointRequest {
        network: n.clone(),
        network_state: create(n, vec![]).unwrap().state,
        endpoint: EndpointSpec { id: ID.into(), ipv4: Some("10.7.0.5/24".parse().unwrap()), ..Default::default() },
        sandbox: SandboxSpec { netns: "/run/netns/sb".into(), interfaces: vec!["eth0".into()], ..Default::default() },
        ..Default::default()
    }
}

#[test]
fn join_makes_the_macvlan_inside_the_sandbox_and_leave_deletes_it_there() {
    let mut req = endpoint(&network("10.7.0.0/24", &[(PARENT, "up0"), (MODE, "private")]));
    req.endpoint_state = MacvlanDriver.create_endpoint(req.clone()).unwrap().state;
    let out = MacvlanDriver.join(req.clone()).unwrap();
    let sandbox = Netns::Path("/run/netns/sb".into());
    let Op::LinkAdd { netns: Netns::Host, link } = out.plan.steps[0].op() else { panic!() };
    assert_eq!(link.name, "eth1");
    assert_eq!(
        link.kind,
        LinkKind::Macvlan { parent: "up0".into(), mode: MacvlanMode::Private, target_netns: Some(sandbox.clone()) }
    );
    assert_eq!(link.mac.as_deref(), Some(mac_from_seed(ID).as_str()));
    assert_eq!(link.mtu, Some(9000));
    assert_eq!(*out.plan.steps[0].undo(), Op::LinkDel { netns: sandbox.clone(), name: "eth1".into() });
    assert_eq!(out.response.gateway_v4, Some("10.7.0.1".parse().unwrap()));
    let leave = MacvlanDriver.leave(req).unwrap().plan;
    assert_eq!(leave.ops().collect::<Vec<_>>(), vec![&Op::LinkDel { netns: sandbox, name: "eth1".into() }]);
}

#[test]
fn ports_cannot_be_published() {
    let mut req = endpoint(&network("10.7.0.0/24", &[]));
    req.endpoint.ports.push(wharf_sdk::PortBinding { port: 80, host_port: 80, ..Default::default() });
    assert!(MacvlanDriver.create_endpoint(req).is_err());
}
