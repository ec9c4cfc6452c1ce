//! Global-scope networks across engines sharing a memory cluster store.

use super::super::tests::{connect, Fixture, TestNet};
use super::*;
use crate::registry::Source;
use std::time::Instant;
use wharf_cluster::MemoryStore;
use wharf_sdk::*;

/// The test driver with global scope and a VXLAN device per network.
#[derive(Debug)]
struct TestVx;

impl NetworkDriver for TestVx {
    fn name(&self) -> &str {
        "testvx"
    }
    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities { scope: Scope::Global, ..Default::default() }
    }
    fn validate(&self, n: &NetworkSpec, f: &HostFacts) -> DriverResult<()> {
        match (n.options.keys().find(|k| k.as_str() != VNI_OPTION), f.cluster_vtep) {
            (Some(k), _) => Err(DriverError::unknown_option("testvx", k)),
            (None, None) => Err(DriverError::invalid("no cluster")),
            _ => Ok(()),
        }
    }
    fn create_network(&self, r: CreateNetwork) -> DriverResult<Outcome<()>> {
        let vni: u32 = r.network.options[VNI_OPTION].parse().unwrap();
        let kind = LinkKind::Vxlan { vni, port: 4789, local: None, underlay: None, learning: false, proxy: true };
        let plan = [Step::link_add(Netns::Host, LinkSpec::new(format!("vx-{}", r.network.short_id()), kind))]
            .into_iter()
            .collect();
        Ok(Outcome::new((), plan, json!({})))
    }
    fn delete_network(&self, r: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let plan: Plan =
            [Step::new(Op::LinkDel { netns: Netns::Host, name: format!("vx-{}", r.network.short_id()) }, Op::Noop)]
                .into_iter()
                .collect();
        Ok(Outcome::new((), plan, serde_json::Value::Null))
    }
    fn create_endpoint(&self, r: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        TestNet.create_endpoint(r)
    }
    fn delete_endpoint(&self, r: EndpointRequest) -> DriverResult<Outcome<()>> {
        TestNet.delete_endpoint(r)
    }
    fn join(&self, r: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        TestNet.join(r)
    }
    fn leave(&self, r: EndpointRequest) -> DriverResult<Outcome<()>> {
        TestNet.leave(r)
    }
}

use serde_json::json;

struct Member {
    fixture: Fixture,
    engine: Arc<Engine>,
}

fn member(store: &MemoryStore, n: u8) -> Member {
    let fixture = Fixture::new();
    let mut engine = fixture.engine();
    engine.registry.add_network(Arc::new(TestVx), Source::Builtin).unwrap();
    let engine = Arc::new(engine);
    let host = HostRecord { id: format!("host{n}"), name: format!("host{n}"), vtep: IpAddr::from([192, 0, 2, n]) };
    engine.join_cluster(Arc::new(store.another_host()), host).unwrap();
    Member { fixture, engine }
}

fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn overlay(name: &str) -> super::super::NetworkCreateRequest {
    super::super::NetworkCreateRequest {
        name: name.into(),
        driver: "testvx".into(),
        pools: vec![super::super::PoolRequest { subnet: Some("10.90.0.0/24".parse().unwrap()), ..Default::default() }],
        ..Default::default()
    }
}

fn fdb_for(m: &Member, mac: &str) -> (usize, usize) {
    let log = m.fixture.rec.log();
    let adds = log.iter().filter(|op| matches!(op, Op::FdbAdd { mac: m, .. } if m == mac)).count();
    let dels = log.iter().filter(|op| matches!(op, Op::FdbDel { mac: m, .. } if m == mac)).count();
    (adds, dels)
}

#[test]
fn a_global_network_is_made_once_and_every_host_follows() {
    let store = MemoryStore::new();
    let (a, b) = (member(&store, 1), member(&store, 2));
    let created = a.engine.network_create(overlay("ov")).unwrap();
    assert_eq!(created.scope, "global");
    assert_eq!(created.options[VNI_OPTION], wharf_cluster::FIRST_VNI.to_string());
    until("host2 has the network", || b.engine.network("ov").is_ok());
    let seen = b.engine.network("ov").unwrap();
    assert_eq!(
        (seen.id.as_str(), seen.scope.as_str(), &seen.options),
        (created.id.as_str(), "global", &created.options)
    );
    assert_eq!(seen.ipv4[0].subnet, created.ipv4[0].subnet);
    // The name is the cluster's: another host cannot take it.
    let e = b.engine.network_create(overlay("ov")).unwrap_err();
    assert_eq!(e.status(), 409, "{e}");
    // Local networks stay local.
    let local = a.engine.network_create(super::super::tests::net("mine")).unwrap();
    assert_eq!(local.scope, "local");
    std::thread::sleep(Duration::from_millis(100));
    assert!(b.engine.network("mine").is_err());

    a.engine.sandbox_create("sa", None, Default::default()).unwrap();
    b.engine.sandbox_create("sb", None, Default::default()).unwrap();
    let ea = a.engine.connect(connect("ov", "sa")).unwrap();
    let eb = b.engine.connect(connect("ov", "sb")).unwrap();
    assert_ne!(ea.ipv4, eb.ipv4, "addresses are the cluster's");
    assert!(!ea.static_ipv4 && !eb.static_ipv4);
    let (mac_a, mac_b) = (ea.mac.clone().unwrap(), eb.mac.clone().unwrap());
    until("host2 programs host1's endpoint", || fdb_for(&b, &mac_a).0 == 1);
    until("host1 programs host2's endpoint", || fdb_for(&a, &mac_b).0 == 1);
    assert_eq!(fdb_for(&a, &mac_a), (0, 0), "a host programs no entry for its own endpoint");
    let neigh = b.fixture.rec.log().into_iter().find_map(|op| match op {
        Op::NeighAdd { device, address, mac, .. } if mac == mac_a => Some((device, address)),
        _ => None,
    });
    assert_eq!(neigh, Some((format!("vx-{}", &created.id[..12]), ea.ipv4.unwrap().addr())));
    // What a resolver on host2 answers for host1's sandbox.
    let remote = b.engine.remote_endpoints("ov").unwrap();
    assert_eq!(remote.len(), 1);
    assert_eq!((remote[0].names.as_slice(), remote[0].ipv4), (&["sa".to_string()][..], ea.ipv4.map(|a| a.addr())));
    assert!(b.engine.remote_endpoints("mine").is_err(), "mine is host1's own network");

    // Removal waits for every host's endpoints, and names the hosts.
    let e = b.engine.network_remove("ov").unwrap_err();
    assert_eq!(e.status(), 403, "this host's own endpoint is checked first: {e}");
    b.engine.disconnect("ov", "sb", false).unwrap();
    until("host1 takes host2's endpoint away", || fdb_for(&a, &mac_b).1 == 1);
    let e = b.engine.network_remove("ov").unwrap_err();
    assert_eq!((e.status(), e.to_string()), (409, "network ov has active endpoints on hosts host1".to_string()));
    a.engine.disconnect("ov", "sa", false).unwrap();
    b.engine.network_remove("ov").unwrap();
    until("host1 removes the network", || a.engine.network("ov").is_err());
}

#[test]
fn a_lost_host_takes_its_endpoints_and_a_later_host_gets_everything() {
    let store = MemoryStore::new();
    let (a, b) = (member(&store, 1), member(&store, 2));
    a.engine.network_create(overlay("ov")).unwrap();
    a.engine.sandbox_create("sa", None, Default::default()).unwrap();
    let ea = a.engine.connect(connect("ov", "sa")).unwrap();
    until("host2 has the network", || b.engine.network("ov").is_ok());
    b.engine.sandbox_create("sb", None, Default::default()).unwrap();
    let eb = b.engine.connect(connect("ov", "sb")).unwrap();
    let c = member(&store, 3);
    let (mac_a, mac_b) = (ea.mac.unwrap(), eb.mac.unwrap());
    until("host3 programs both endpoints", || fdb_for(&c, &mac_a).0 == 1 && fdb_for(&c, &mac_b).0 == 1);
    store.expire("host2");
    until("host1 drops host2's endpoint", || fdb_for(&a, &mac_b).1 == 1);
    until("host3 drops host2's endpoint", || fdb_for(&c, &mac_b).1 == 1);
    assert_eq!(fdb_for(&c, &mac_a).1, 0);
}

#[test]
fn refused_connects_leave_no_address_taken_in_the_cluster() {
    let store = MemoryStore::new();
    let a = member(&store, 1);
    let net = a.engine.network_create(overlay("ov")).unwrap();
    a.engine.sandbox_create("sa", None, Default::default()).unwrap();
    let mut req = connect("ov", "sa");
    req.ipv6 = Some("fd00::5".parse().unwrap());
    let e = a.engine.connect(req).unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    let mut req = connect("ov", "sa");
    req.ipv4 = Some("10.91.0.5".parse().unwrap());
    assert_eq!(a.engine.connect(req).unwrap_err().status(), 400, "outside the subnet");
    assert!(a.engine.connect(connect("ov", "nosuch")).is_err());
    assert!(store.addresses(&net.id).unwrap().is_empty(), "{:?}", store.addresses(&net.id));
    let mut req = connect("ov", "sa");
    req.ipv4 = Some("10.90.0.5".parse().unwrap());
    let ep = a.engine.connect(req).unwrap();
    assert!(ep.static_ipv4);
    assert_eq!(store.addresses(&net.id).unwrap().keys().collect::<Vec<_>>(), [&"10.90.0.5".parse::<IpAddr>().unwrap()]);
    a.engine.disconnect("ov", "sa", false).unwrap();
    assert!(store.addresses(&net.id).unwrap().is_empty());
}
