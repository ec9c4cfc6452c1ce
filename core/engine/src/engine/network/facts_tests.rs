//! What a network call hands its driver does not grow with the networks and links on the
//! host, for a driver that asks for only what the call concerns. Against the recording
//! executor, without root.

use super::super::tests::Fixture;
use super::*;
use crate::executor::Recording;
use crate::registry::{Registry, Source};
use crate::store::Store;
use serde_json::Value;
use std::sync::Mutex;
use wharf_sdk::{DriverResult, EndpointRequest, HostLink, JoinInfo, LinkKind, LinkSpec, Outcome, Step};

/// A bridge-like driver that records how many bytes each network call's request takes
/// and how many host links it was given.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    scope: FactsScope,
    seen: Arc<Mutex<Vec<(usize, usize)>>>,
}

impl Measured {
    fn record<T: serde::Serialize>(&self, req: &T, facts: &HostFacts) {
        let bytes = serde_json::to_vec(req).unwrap().len();
        self.seen.lock().unwrap().push((bytes, facts.links.len()));
    }
}

impl NetworkDriver for Measured {
    fn name(&self) -> &str {
        self.name
    }
    fn capabilities(&self) -> wharf_sdk::NetworkCapabilities {
        wharf_sdk::NetworkCapabilities {
            host_facts: self.scope,
            other_networks: self.scope == FactsScope::All,
            ..Default::default()
        }
    }
    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        self.record(&(network, facts), facts);
        Ok(())
    }
    fn create_network(&self, r: CreateNetwork) -> DriverResult<Outcome<()>> {
        self.record(&r, &r.facts);
        let name = format!("br-{}", r.network.short_id());
        let plan = [Step::link_add(Netns::Host, LinkSpec::new(&name, LinkKind::Bridge))].into_iter().collect();
        Ok(Outcome::new((), plan, Value::String(name)))
    }
    fn delete_network(&self, r: DeleteNetwork) -> DriverResult<Outcome<()>> {
        self.record(&r, &r.facts);
        Ok(Outcome::default())
    }
    fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        Ok(Outcome::default())
    }
}

fn pool(subnet: &str) -> Vec<PoolRequest> {
    vec![PoolRequest { subnet: Some(subnet.parse().unwrap()), ..Default::default() }]
}

/// Create and remove network `probe` of `driver`; what each call was handed.
fn probe(e: &Engine, seen: &Mutex<Vec<(usize, usize)>>, driver: &str) -> Vec<(usize, usize)> {
    seen.lock().unwrap().clear();
    let req = NetworkCreateRequest {
        name: "probe".into(),
        driver: driver.into(),
        pools: pool("10.99.0.0/24"),
        ..Default::default()
    };
    e.network_create(req).unwrap();
    e.network_remove("probe").unwrap();
    std::mem::take(&mut *seen.lock().unwrap())
}

#[test]
fn a_network_call_hands_over_as_much_with_100_networks_as_with_one() {
    let f = Fixture::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    for (name, scope) in [("concerned", FactsScope::Concerned), ("all", FactsScope::All)] {
        reg.add_network(Arc::new(Measured { name, scope, seen: seen.clone() }), Source::Builtin).unwrap();
    }
    let eth0 = HostLink { name: "eth0".into(), index: 2, mtu: 1500, up: true, ..Default::default() };
    let rec = Arc::new(Recording::with_facts(HostFacts {
        links: vec![eth0],
        default_route_v4: Some("eth0".into()),
        ..Default::default()
    }));
    let store = Store::open(&f.dir.path().join("state.redb")).unwrap();
    let e = Engine::start(store, reg, rec.clone(), f.settings()).unwrap();
    let (one, one_all) = (probe(&e, &seen, "concerned"), probe(&e, &seen, "all"));
    for i in 0..100 {
        let subnet = format!("10.100.{i}.0/24");
        let req = NetworkCreateRequest {
            name: format!("fill{i}"),
            driver: "all".into(),
            pools: pool(&subnet),
            ..Default::default()
        };
        let n = e.network_create(req).unwrap();
        let address = format!("10.100.{i}.1/24").parse().unwrap();
        let bridge = HostLink {
            name: format!("br-{}", &n.id[..12]),
            index: 10 + i,
            kind: "bridge".into(),
            addresses: vec![address],
            ..Default::default()
        };
        rec.add_link(bridge);
    }
    let (many, many_all) = (probe(&e, &seen, "concerned"), probe(&e, &seen, "all"));
    assert_eq!(one, [(one[0].0, 1), (one[1].0, 1), (one[2].0, 1)], "validate, create, delete: the default-route link");
    assert_eq!(many, one, "what the driver got, in bytes and links, per call");
    // A driver that asks for everything is handed every bridge: what the test would catch.
    assert!(many_all.iter().zip(&one_all).all(|(m, o)| m.0 > 10 * o.0 && m.1 >= 100), "{one_all:?} {many_all:?}");
}

#[test]
fn a_call_concerns_the_links_its_options_name_or_address_and_its_plan_made() {
    let options: BTreeMap<String, String> =
        [("parent", "eth0.10"), ("local", "192.168.1.10"), ("trusted", "eth1, eth2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let plan: Plan = [Step::link_add(Netns::Host, LinkSpec::new("br-x", LinkKind::Bridge))].into_iter().collect();
    let q = concern(&options, &plan, Some("10.0.0.1".parse().unwrap()));
    for name in ["eth0.10", "eth0", "eth1", "eth2", "br-x"] {
        assert!(q.names.contains(name), "{name}: {q:?}");
    }
    assert!(
        q.addresses.contains(&"192.168.1.10".parse().unwrap()) && q.addresses.contains(&"10.0.0.1".parse().unwrap())
    );
    assert!(!q.wants("eth3", &[]));
    assert!(q.wants("lo", &["10.0.0.1/8".parse().unwrap()]));
}

/// A driver that names its bridge after the network (no option names it) and records
/// whether each create saw a host link of that name.
#[derive(Debug)]
struct SelfNamed {
    saw: Arc<Mutex<Vec<bool>>>,
}

impl NetworkDriver for SelfNamed {
    fn name(&self) -> &str {
        "selfnamed"
    }
    fn capabilities(&self) -> wharf_sdk::NetworkCapabilities {
        wharf_sdk::NetworkCapabilities {
            host_facts: FactsScope::Concerned,
            other_networks: false,
            ..Default::default()
        }
    }
    fn create_network(&self, r: CreateNetwork) -> DriverResult<Outcome<()>> {
        let name = format!("lk-{}", r.network.name);
        self.saw.lock().unwrap().push(r.facts.link(&name).is_some());
        let plan = [Step::link_add(Netns::Host, LinkSpec::new(&name, LinkKind::Bridge))].into_iter().collect();
        Ok(Outcome::new((), plan, Value::Null))
    }
    fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        Ok(Outcome::default())
    }
}

#[test]
fn a_link_of_a_name_the_driver_chose_is_shown_to_it_when_it_is_there() {
    let f = Fixture::new();
    let saw = Arc::new(Mutex::new(Vec::new()));
    let mut reg = Registry::new();
    reg.add_network(Arc::new(SelfNamed { saw: saw.clone() }), Source::Builtin).unwrap();
    let rec = Arc::new(Recording::with_facts(HostFacts::default()));
    rec.add_link(HostLink { name: "lk-taken".into(), index: 7, kind: "bridge".into(), ..Default::default() });
    let store = Store::open(&f.dir.path().join("state.redb")).unwrap();
    let e = Engine::start(store, reg, rec.clone(), f.settings()).unwrap();
    let create = |name: &str, subnet: &str| {
        let req = NetworkCreateRequest {
            name: name.into(),
            driver: "selfnamed".into(),
            pools: pool(subnet),
            ..Default::default()
        };
        e.network_create(req).unwrap();
        std::mem::take(&mut *saw.lock().unwrap())
    };
    assert_eq!(create("free", "10.98.0.0/24"), [false], "a name nobody holds: asked once");
    assert_eq!(create("taken", "10.98.1.0/24"), [false, true], "asked again, with the link");
}
