//! Engine tests against the recording executor: no root, no kernel.
//!
//! Longer than 600 lines on purpose: the fixture (test drivers, `Fixture`) that other
//! crates' tests share (feature `testing`) sits with the engine's general behaviour tests;
//! topics of their own have files of their own (`recovery_tests.rs`, `failure_tests.rs`).

use super::*;
use crate::drivers::{Host, Null};
use crate::executor::Recording;
use crate::registry::Source;
use serde_json::{json, Value};
use wharf_sdk::*;

/// A small bridge-like driver: one link per network, one address step per endpoint.
#[derive(Debug)]
pub struct TestNet;

impl NetworkDriver for TestNet {
    fn name(&self) -> &str {
        "testnet"
    }
    fn validate(&self, n: &NetworkSpec, _: &HostFacts) -> DriverResult<()> {
        match n.options.keys().find(|k| !matches!(k.as_str(), "ok" | "bridge" | "stubborn")) {
            Some(k) => Err(DriverError::unknown_option("testnet", k)),
            None => Ok(()),
        }
    }
    fn create_network(&self, r: CreateNetwork) -> DriverResult<Outcome<()>> {
        let name = r.network.options.get("bridge").cloned().unwrap_or_else(|| format!("br-{}", r.network.short_id()));
        let plan = [Step::link_add(Netns::Host, LinkSpec::new(&name, LinkKind::Bridge))].into_iter().collect();
        Ok(Outcome::new((), plan, json!({ "bridge": name })))
    }
    fn delete_network(&self, r: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let name = r.state.to_value()["bridge"].as_str().unwrap_or_default().to_string();
        let plan: Plan = [Step::link_add(Netns::Host, LinkSpec::new(&name, LinkKind::Bridge))].into_iter().collect();
        Ok(Outcome::new((), plan.inverse(), Value::Null))
    }
    fn create_endpoint(&self, r: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        Ok(Outcome::new(EndpointInfo { mac: Some(mac_from_seed(&r.endpoint.id)) }, Plan::new(), json!({})))
    }
    fn delete_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::default())
    }
    fn join(&self, r: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        let ifname = next_interface_name("eth", &r.sandbox.interfaces);
        let ns = Netns::Path(r.sandbox.netns.clone());
        let plan = [Step::addr_add(ns, &ifname, r.endpoint.ipv4.unwrap())].into_iter().collect();
        let info = JoinInfo { interface: Some(ifname), ports: r.endpoint.ports.clone(), ..Default::default() };
        Ok(Outcome::new(info, plan, r.endpoint_state))
    }
    fn leave(&self, r: EndpointRequest) -> DriverResult<Outcome<()>> {
        if r.network.options.contains_key("stubborn") {
            return Err(DriverError::internal("leave refused"));
        }
        let ns = Netns::Path(r.sandbox.netns.clone());
        let plan: Plan = [Step::addr_add(ns, "eth0", r.endpoint.ipv4.unwrap())].into_iter().collect();
        Ok(Outcome::new((), plan.inverse(), r.endpoint_state))
    }
}

/// A volume driver keeping data in a directory per volume.
#[derive(Debug)]
pub struct TestVol;

impl VolumeDriver for TestVol {
    fn name(&self) -> &str {
        "local"
    }
    fn validate(&self, r: &VolumeRequest) -> DriverResult<()> {
        match r.volume.options.keys().next() {
            Some(k) => Err(DriverError::unknown_option("local", k)),
            None => Ok(()),
        }
    }
    fn create(&self, r: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let path = format!("{}/{}", r.facts.volumes_dir, r.volume.name);
        let plan = [Step::dir_create(&path, None, None, None)].into_iter().collect();
        Ok(Outcome::new(VolumeInfo { mountpoint: path, ..Default::default() }, plan, Value::Null))
    }
    fn remove(&self, r: VolumeRequest) -> DriverResult<Outcome<()>> {
        let path = format!("{}/{}", r.facts.volumes_dir, r.volume.name);
        let plan = [Step::new(Op::DirRemove { path }, Op::Noop)].into_iter().collect();
        Ok(Outcome::new((), plan, Value::Null))
    }
    fn mount(&self, r: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let path = format!("{}/{}", r.facts.volumes_dir, r.volume.name);
        let plan = [Step::mount("tmpfs", &path, "tmpfs", "")].into_iter().collect();
        Ok(Outcome::new(VolumeInfo { mountpoint: path, ..Default::default() }, plan, Value::Null))
    }
    fn unmount(&self, r: VolumeRequest) -> DriverResult<Outcome<()>> {
        let path = format!("{}/{}", r.facts.volumes_dir, r.volume.name);
        let plan: Plan = [Step::mount("tmpfs", &path, "tmpfs", "")].into_iter().collect();
        Ok(Outcome::new((), plan.inverse(), Value::Null))
    }
    fn path(&self, r: VolumeRequest) -> DriverResult<String> {
        Ok(format!("{}/{}", r.facts.volumes_dir, r.volume.name))
    }
    fn get(&self, r: VolumeRequest) -> DriverResult<VolumeInfo> {
        Ok(VolumeInfo { mountpoint: self.path(r)?, ..Default::default() })
    }
}

/// A volume driver whose volumes would be mounted outside the volume root.
struct MountsOutside;

impl VolumeDriver for MountsOutside {
    fn name(&self) -> &str {
        "outside"
    }
    fn validate(&self, r: &VolumeRequest) -> DriverResult<()> {
        TestVol.validate(r)
    }
    fn create(&self, r: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        TestVol.create(r)
    }
    fn remove(&self, r: VolumeRequest) -> DriverResult<Outcome<()>> {
        TestVol.remove(r)
    }
    fn mount(&self, _: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let plan = [Step::mount("tmpfs", "/mnt", "tmpfs", "")].into_iter().collect();
        Ok(Outcome::new(VolumeInfo { mountpoint: "/mnt".into(), ..Default::default() }, plan, Value::Null))
    }
    fn unmount(&self, r: VolumeRequest) -> DriverResult<Outcome<()>> {
        TestVol.unmount(r)
    }
    fn path(&self, r: VolumeRequest) -> DriverResult<String> {
        TestVol.path(r)
    }
    fn get(&self, r: VolumeRequest) -> DriverResult<VolumeInfo> {
        TestVol.get(r)
    }
}

#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rec: Arc<Recording>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

impl Fixture {
    pub fn new() -> Self {
        let facts = HostFacts { routes: vec!["10.200.0.0/16".parse().unwrap()], ..Default::default() };
        Fixture { dir: tempfile::tempdir().unwrap(), rec: Arc::new(Recording::with_facts(facts)) }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            netns_dir: self.dir.path().join("netns"),
            netns_etc_dir: self.dir.path().join("etc-netns"),
            host_resolv_conf: self.dir.path().join("resolv.conf"),
            volumes_dir: self.dir.path().join("volumes"),
            volumes_max_file_size: None,
            pools_v4: crate::ipam::docker_default_pools(),
            pools_v6: Vec::new(),
            default_mtu: None,
            bind_allowed_bases: Vec::new(),
            default_bridge: None,
        }
    }

    pub fn engine(&self) -> Engine {
        self.engine_on(self.rec.clone())
    }

    /// The engine over this fixture's store, carrying plans out on `exec`.
    pub fn engine_on(&self, exec: Arc<dyn Executor>) -> Engine {
        let mut reg = Registry::new();
        reg.add_network(Arc::new(Host), Source::Builtin).unwrap();
        reg.add_network(Arc::new(Null), Source::Builtin).unwrap();
        reg.add_network(Arc::new(TestNet), Source::Builtin).unwrap();
        reg.add_volume(Arc::new(TestVol), Source::Builtin).unwrap();
        reg.add_volume(Arc::new(MountsOutside), Source::Builtin).unwrap();
        let store = Store::open(&self.dir.path().join("state.redb")).unwrap();
        Engine::start(store, reg, exec, self.settings()).unwrap()
    }
}

pub fn net(name: &str) -> NetworkCreateRequest {
    NetworkCreateRequest { name: name.into(), driver: "testnet".into(), ..Default::default() }
}

pub fn connect(network: &str, sandbox: &str) -> ConnectRequest {
    ConnectRequest { network: network.into(), sandbox: sandbox.into(), ..Default::default() }
}

#[cfg(test)]
fn snapshot(e: &Engine) -> (Vec<Network>, Vec<Sandbox>, Vec<Volume>, usize) {
    let endpoints = e.lock().endpoints().len();
    (e.networks(), e.sandboxes(), e.volumes(), endpoints)
}

#[test]
fn predefined_networks_exist_and_cannot_be_removed() {
    let f = Fixture::new();
    let e = f.engine();
    let names: Vec<String> = e.networks().into_iter().map(|n| n.name).collect();
    assert!(names.contains(&"host".to_string()) && names.contains(&"none".to_string()));
    let err = e.network_remove("host").unwrap_err();
    assert_eq!(err.status(), 403);
    let err = e.network_create(NetworkCreateRequest { name: "h2".into(), driver: "host".into(), ..Default::default() });
    assert_eq!(err.unwrap_err().status(), 403);
}

#[test]
fn create_picks_the_first_free_default_pool() {
    let f = Fixture::new();
    let e = f.engine();
    let a = e.network_create(net("a")).unwrap();
    let b = e.network_create(net("b")).unwrap();
    assert_eq!(a.ipv4[0].subnet, Some("172.17.0.0/16".parse().unwrap()));
    assert_eq!(a.ipv4[0].gateway, Some("172.17.0.1".parse().unwrap()));
    assert_eq!(b.ipv4[0].subnet, Some("172.18.0.0/16".parse().unwrap()));
    assert_eq!(e.network(&a.id[..10]).unwrap().name, "a");
}

#[test]
fn bad_requests_change_nothing() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(NetworkCreateRequest {
        pools: vec![PoolRequest { subnet: Some("10.1.0.0/16".parse().unwrap()), ..Default::default() }],
        ..net("taken")
    })
    .unwrap();
    f.rec.clear();
    let before = snapshot(&e);
    let cases: Vec<(NetworkCreateRequest, u16)> = vec![
        (net("bad/name"), 400),
        (net("  "), 400),
        (net("taken"), 409),
        (NetworkCreateRequest { driver: "nope".into(), ..net("x") }, 404),
        (NetworkCreateRequest { options: [("bogus".to_string(), "1".to_string())].into(), ..net("x") }, 400),
        (
            NetworkCreateRequest {
                pools: vec![PoolRequest { subnet: Some("10.1.2.0/24".parse().unwrap()), ..Default::default() }],
                ..net("x")
            },
            403,
        ),
        (
            NetworkCreateRequest {
                pools: vec![PoolRequest {
                    subnet: Some("10.3.0.0/24".parse().unwrap()),
                    gateway: Some("10.4.0.1".parse().unwrap()),
                    ..Default::default()
                }],
                ..net("x")
            },
            400,
        ),
    ];
    for (req, status) in cases {
        let name = req.name.clone();
        let err = e.network_create(req).unwrap_err();
        assert_eq!(err.status(), status, "{name}: {err}");
    }
    assert_eq!(snapshot(&e), before);
    assert!(f.rec.log().is_empty(), "{:?}", f.rec.log());
    let option_err = e
        .network_create(NetworkCreateRequest { options: [("bogus".to_string(), "1".to_string())].into(), ..net("y") })
        .unwrap_err();
    assert!(option_err.to_string().contains("bogus"));
}

#[test]
fn connect_allocates_and_disconnect_releases_without_immediate_reuse() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    e.sandbox_create("s2", None, Default::default()).unwrap();
    let ep1 = e.connect(connect("n", "s1")).unwrap();
    assert_eq!(ep1.ipv4, Some("172.17.0.2/16".parse().unwrap()));
    assert_eq!(ep1.join.interface.as_deref(), Some("eth0"));
    assert!(ep1.mac.is_some());
    assert_eq!(e.connect(connect("n", "s1")).unwrap_err().status(), 403);
    assert_eq!(e.network_remove("n").unwrap_err().status(), 403);
    e.disconnect("n", "s1", false).unwrap();
    let ep2 = e.connect(connect("n", "s2")).unwrap();
    assert_eq!(ep2.ipv4, Some("172.17.0.3/16".parse().unwrap()));
    let static_ip = ConnectRequest { ipv4: Some("172.17.0.2".parse().unwrap()), ..connect("n", "s1") };
    assert_eq!(e.connect(static_ip).unwrap().ipv4, Some("172.17.0.2/16".parse().unwrap()));
    let taken = ConnectRequest { ipv4: Some("172.17.0.3".parse().unwrap()), ..connect("n", "s1") };
    assert!(e.connect(taken).is_err());
}

#[test]
fn a_failing_leave_blocks_a_plain_disconnect_but_not_a_forced_one() {
    let f = Fixture::new();
    let e = f.engine();
    let stubborn = [("stubborn".to_string(), "1".to_string())].into();
    e.network_create(NetworkCreateRequest { options: stubborn, ..net("n") }).unwrap();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    let ep = e.connect(connect("n", "s1")).unwrap();
    let err = e.disconnect("n", "s1", false).unwrap_err();
    assert!(err.to_string().contains("leave refused"), "{err}");
    assert!(e.sandbox_remove("s1", false).is_err(), "connected, and not forced");
    f.rec.clear();
    e.sandbox_remove("s1", true).unwrap();
    let log = f.rec.log();
    assert!(
        log.iter().any(|op| matches!(op, Op::AddrDel { address, .. } if Some(*address) == ep.ipv4)),
        "what the join made is taken away: {log:?}"
    );
    assert!(e.sandboxes().is_empty());
    e.network_remove("n").unwrap();
}

#[test]
fn steps_in_a_namespace_that_vanished_are_moot() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    let sandbox = e.sandbox_create("s1", None, Default::default()).unwrap();
    e.connect(connect("n", "s1")).unwrap();
    f.rec.vanish(std::path::Path::new(&sandbox.netns));
    f.rec.fail_on(Some(&sandbox.netns));
    f.rec.clear();
    e.disconnect("n", "s1", false).unwrap();
    let log = f.rec.log();
    assert!(log.iter().all(|op| op.netns() != Some(&Netns::Path(sandbox.netns.clone()))), "{log:?}");
    f.rec.fail_on(None);
    e.sandbox_remove("s1", false).unwrap();
    e.network_remove("n").unwrap();
}

#[test]
fn open_host_ports_are_picked_without_clashes_or_immediate_reuse() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    for s in ["s1", "s2", "s3", "s4"] {
        e.sandbox_create(s, None, Default::default()).unwrap();
    }
    let bind = |host_port, host_port_end| PortBinding { port: 80, host_port, host_port_end, ..Default::default() };
    let publish = |s: &str, ports: Vec<PortBinding>| ConnectRequest { ports, ..connect("n", s) };
    let host_ports = |ep: &crate::model::Endpoint| ep.join.ports.iter().map(|p| p.host_port).collect::<Vec<_>>();
    // `-p 80 -p 80`: two free ports from Docker's range, one after the other.
    let ep1 = e.connect(publish("s1", vec![bind(0, 0), bind(0, 0)])).unwrap();
    assert_eq!(host_ports(&ep1), [49153, 49154]);
    // A range takes its first free port; 8000 is published already.
    e.connect(publish("s2", vec![bind(8000, 0)])).unwrap();
    let ep3 = e.connect(publish("s3", vec![bind(8000, 8002)])).unwrap();
    assert_eq!(host_ports(&ep3), [8001]);
    assert_eq!(ep3.ports[0].host_port_end, 0, "what the driver sees is settled");
    let full = e.connect(publish("s4", vec![bind(8000, 8001)])).unwrap_err();
    assert_eq!(full.status(), 409);
    assert!(full.to_string().contains("8000-8001"), "{full}");
    // A freed port is not handed out again at once.
    e.disconnect("n", "s1", false).unwrap();
    assert_eq!(host_ports(&e.connect(publish("s1", vec![bind(0, 0)])).unwrap()), [49155]);
}

#[test]
fn host_ports_a_host_process_uses_are_refused_or_skipped() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    for s in ["s1", "s2", "s3"] {
        e.sandbox_create(s, None, Default::default()).unwrap();
    }
    let any = "0.0.0.0".parse().unwrap();
    for port in [8080, 49153, 49154] {
        f.rec.occupy(crate::executor::HostPort { protocol: Protocol::Tcp, ip: any, port });
    }
    let bind = |host_port, host_port_end| PortBinding { port: 80, host_port, host_port_end, ..Default::default() };
    let publish = |s: &str, ports: Vec<PortBinding>| ConnectRequest { ports, ..connect("n", s) };
    let before = snapshot(&e);
    let err = e.connect(publish("s1", vec![bind(8080, 0)])).unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert!(err.to_string().contains("8080: address already in use"), "{err}");
    assert_eq!(snapshot(&e), before, "nothing changed");
    let ep = e.connect(publish("s1", vec![bind(0, 0)])).unwrap();
    assert_eq!(ep.join.ports[0].host_port, 49155, "picked ports skip those in use");
    let ep = e.connect(publish("s2", vec![bind(8080, 8081)])).unwrap();
    assert_eq!(ep.join.ports[0].host_port, 8081, "a range skips them too");
    let udp = PortBinding { protocol: Protocol::Udp, ..bind(8080, 0) };
    assert!(e.connect(publish("s3", vec![udp])).is_ok(), "the same port of another protocol is free");
}

#[test]
fn a_failed_plan_is_rolled_back_and_nothing_is_stored() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    let before = snapshot(&e);
    f.rec.fail_on(Some("add address"));
    let err = e.connect(connect("n", "s1")).unwrap_err();
    assert_eq!(err.status(), 500);
    assert!(err.message().contains("add address 172.17.0.2/16 to eth0"), "{}", err.message());
    assert_eq!(snapshot(&e), before);
    f.rec.fail_on(None);
    assert_eq!(e.connect(connect("n", "s1")).unwrap().ipv4, Some("172.17.0.2/16".parse().unwrap()));
}

#[test]
fn state_survives_a_restart() {
    let f = Fixture::new();
    {
        let e = f.engine();
        e.network_create(net("n")).unwrap();
        e.sandbox_create("s1", None, Default::default()).unwrap();
        e.connect(connect("n", "s1")).unwrap();
        e.volume_create(VolumeCreateRequest { name: "v1".into(), ..Default::default() }).unwrap();
        e.volume_mount("v1", "c1").unwrap();
    }
    f.rec.clear();
    let e = f.engine();
    assert_eq!(e.sandbox_endpoints(&e.sandbox("s1").unwrap().id).len(), 1);
    assert_eq!(e.volume("v1").unwrap().mounts.len(), 1);
    assert_eq!(e.networks().iter().filter(|n| n.name == "host").count(), 1);
    // Reconcile re-applied the network's and the endpoint's plans.
    let log = f.rec.log();
    assert!(log.iter().any(|op| matches!(op, Op::LinkAdd { .. })));
    assert!(log.iter().any(|op| matches!(op, Op::AddrAdd { .. })));
}

/// A three-step plan: a bridge, an address on it, a route through it.
#[cfg(test)]
fn three_steps() -> Plan {
    let mut plan = Plan::new();
    plan.push(Step::link_add(Netns::Host, LinkSpec::new("br-0123456789ab", LinkKind::Bridge)));
    plan.push(Step::addr_add(Netns::Host, "br-0123456789ab", "10.9.0.1/24".parse().unwrap()));
    let route = RouteSpec {
        destination: "10.8.0.0/24".parse().unwrap(),
        gateway: Some("10.9.0.2".parse().unwrap()),
        device: None,
        metric: None,
        ..Default::default()
    };
    plan.push(Step::route_add(Netns::Host, route));
    plan
}

/// Journal `plan` as a crash leaves it, with the outcomes of the steps that ran, and
/// restart: returns what recovery did.
#[cfg(test)]
fn crash_and_recover(f: &Fixture, plan: &Plan, ran: &[crate::executor::Outcome]) -> Vec<Op> {
    {
        let e = f.engine();
        let entry = crate::model::JournalEntry { object: "network x".into(), plan: plan.clone(), ..Default::default() };
        e.store.write(|t| t.put(Table::Journal, "k", &entry)).unwrap();
        for (i, o) in ran.iter().enumerate() {
            e.store.step_done("k", i, *o);
        }
    }
    f.rec.clear();
    let e = f.engine();
    assert!(e.store.list::<crate::model::JournalEntry>(Table::Journal).unwrap().is_empty());
    assert!(e.store.steps_done("k").is_empty());
    f.rec.log().into_iter().filter(|op| !matches!(op, Op::FirewallAdd { .. })).collect()
}

#[test]
fn an_interrupted_plan_is_rolled_back_at_start() {
    use crate::executor::Outcome::Created;
    let f = Fixture::new();
    let plan = three_steps();
    let undone = crash_and_recover(&f, &plan, &[Created, Created, Created]);
    assert_eq!(undone, plan.inverse().ops().cloned().collect::<Vec<_>>());
}

#[test]
fn recovery_undoes_only_the_steps_that_ran() {
    use crate::executor::Outcome::Created;
    let plan = three_steps();
    for k in 0..plan.steps.len() {
        let f = Fixture::new();
        let ran = vec![Created; k + 1];
        let undone = crash_and_recover(&f, &plan, &ran);
        let want: Vec<Op> = plan.steps[..=k].iter().rev().map(|s| s.undo().into_owned()).collect();
        assert_eq!(undone, want, "crash after step {k}");
    }
}

#[test]
fn recovery_leaves_what_a_step_found() {
    use crate::executor::Outcome::{Created, Found};
    let f = Fixture::new();
    let plan = three_steps();
    let undone = crash_and_recover(&f, &plan, &[Found, Created]);
    assert_eq!(undone, [plan.steps[1].undo().into_owned()]);
}

#[test]
fn a_link_under_way_at_the_crash_is_undone_only_if_it_carries_our_mark() {
    let plan = three_steps();
    let f = Fixture::new();
    assert_eq!(crash_and_recover(&f, &plan, &[]), []);
    let f = Fixture::new();
    f.rec.marked("br-0123456789ab");
    assert_eq!(crash_and_recover(&f, &plan, &[]), [plan.steps[0].undo().into_owned()]);
}

#[test]
fn removing_a_network_leaves_the_bridge_it_adopted() {
    let f = Fixture::new();
    let e = f.engine();
    f.rec.existing("br-adopted");
    let adopt = || NetworkCreateRequest { options: [("bridge".into(), "br-adopted".into())].into(), ..net("n") };
    let n = e.network_create(adopt()).unwrap();
    assert_eq!(n.found, [0]);
    f.rec.clear();
    e.network_remove("n").unwrap();
    assert!(!f.rec.log().iter().any(|op| matches!(op, Op::LinkDel { .. })), "{:?}", f.rec.log());
    let again = Fixture::new();
    let e = again.engine();
    e.network_create(adopt()).unwrap();
    e.network_remove("n").unwrap();
    assert!(again.rec.log().iter().any(|op| matches!(op, Op::LinkDel { name, .. } if name == "br-adopted")));
}

#[test]
fn a_found_link_of_ours_goes_with_the_last_network_that_names_it() {
    let f = Fixture::new();
    let e = f.engine();
    let shared =
        |name: &str| NetworkCreateRequest { options: [("bridge".into(), "br-shared".into())].into(), ..net(name) };
    let deletes =
        |rec: &Recording| rec.log().iter().any(|op| matches!(op, Op::LinkDel { name, .. } if name == "br-shared"));
    e.network_create(shared("a")).unwrap();
    f.rec.existing("br-shared");
    f.rec.marked("br-shared");
    assert_eq!(e.network_create(shared("b")).unwrap().found, [0]);
    f.rec.clear();
    e.network_remove("b").unwrap();
    assert!(!deletes(&f.rec), "network a still names it");
    e.network_create(shared("b")).unwrap();
    e.network_remove("a").unwrap();
    f.rec.clear();
    e.network_remove("b").unwrap();
    assert!(deletes(&f.rec), "ours, and named by no other network");
}

#[test]
fn sandbox_removal_needs_force_while_connected() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    assert_eq!(e.sandbox_create("s1", None, Default::default()).unwrap_err().status(), 409);
    e.connect(connect("n", "s1")).unwrap();
    assert_eq!(e.sandbox_remove("s1", false).unwrap_err().status(), 403);
    e.sandbox_remove("s1", true).unwrap();
    assert!(e.sandboxes().is_empty());
    e.network_remove("n").unwrap();
}

#[test]
fn host_and_none_are_exclusive() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    e.sandbox_create("s1", None, Default::default()).unwrap();
    e.connect(connect("none", "s1")).unwrap();
    assert_eq!(e.connect(connect("n", "s1")).unwrap_err().status(), 403);
}

#[test]
fn volume_semantics() {
    let f = Fixture::new();
    let e = f.engine();
    let v = e.volume_create(VolumeCreateRequest { name: "v1".into(), ..Default::default() }).unwrap();
    assert_eq!(e.volume_create(VolumeCreateRequest { name: "v1".into(), ..Default::default() }).unwrap(), v);
    let other = VolumeCreateRequest { name: "v1".into(), driver: "other".into(), ..Default::default() };
    assert_eq!(e.volume_create(other).unwrap_err().status(), 409);
    assert_eq!(
        e.volume_create(VolumeCreateRequest { name: "../x".into(), ..Default::default() }).unwrap_err().status(),
        400
    );
    let anon = e.volume_create(VolumeCreateRequest::default()).unwrap();
    assert_eq!(anon.name.len(), 64);
    assert!(anon.anonymous());

    f.rec.clear();
    e.volume_mount("v1", "a").unwrap();
    e.volume_mount("v1", "b").unwrap();
    assert_eq!(f.rec.log().iter().filter(|o| matches!(o, Op::Mount { .. })).count(), 1);
    e.volume_unmount("v1", "a").unwrap();
    assert!(!f.rec.log().iter().any(|o| matches!(o, Op::Unmount { .. })));
    assert_eq!(e.volume_remove("v1", false).unwrap_err().status(), 409);
    e.volume_unmount("v1", "b").unwrap();
    assert_eq!(f.rec.log().iter().filter(|o| matches!(o, Op::Unmount { .. })).count(), 1);

    let report = e.volume_prune(false, |_| true).unwrap();
    assert_eq!(report.removed, vec![anon.name.clone()]);
    assert!(e.volume("v1").is_ok());
    let report = e.volume_prune(true, |_| true).unwrap();
    assert_eq!(report.removed, vec!["v1".to_string()]);
}

#[test]
fn a_volume_leaves_the_directory_it_found_on_removal_and_across_a_restart() {
    let f = Fixture::new();
    let found = f.settings().volumes_dir.join("theirs").display().to_string();
    f.rec.existing(&found);
    let e = f.engine();
    e.volume_create(VolumeCreateRequest { name: "theirs".into(), ..Default::default() }).unwrap();
    e.volume_create(VolumeCreateRequest { name: "ours".into(), ..Default::default() }).unwrap();
    drop(e);
    let e = f.engine();
    f.rec.clear();
    e.volume_remove("theirs", false).unwrap();
    assert!(!f.rec.log().iter().any(|o| matches!(o, Op::DirRemove { .. })), "{:?}", f.rec.log());
    e.volume_remove("ours", false).unwrap();
    let ours = f.settings().volumes_dir.join("ours").display().to_string();
    assert_eq!(f.rec.log(), [Op::DirRemove { path: ours }]);
}

#[test]
fn a_volume_stored_without_outcomes_was_all_made_by_wharf() {
    let f = Fixture::new();
    let e = f.engine();
    let mut v = e.volume_create(VolumeCreateRequest { name: "old".into(), ..Default::default() }).unwrap();
    drop(e);
    // A record as written before outcomes were kept: no plan, no found steps.
    let store = Store::open(&f.dir.path().join("state.redb")).unwrap();
    let mut old = serde_json::to_value(&v).unwrap();
    old.as_object_mut().unwrap().retain(|k, _| k != "plan" && k != "found");
    store.write(|t| t.put(Table::Volumes, "old", &old)).unwrap();
    drop(store);
    let e = f.engine();
    v.plan = Plan::new();
    assert_eq!(e.volume("old").unwrap(), v);
    f.rec.clear();
    e.volume_remove("old", false).unwrap();
    assert!(f.rec.log().iter().any(|o| matches!(o, Op::DirRemove { .. })), "{:?}", f.rec.log());
}

#[test]
fn a_name_taken_by_a_link_of_another_kind_is_a_conflict_and_changes_nothing() {
    let f = Fixture::new();
    let e = f.engine();
    f.rec.taken("opveth0");
    let before = snapshot(&e);
    let mut req = net("n");
    req.options.insert("bridge".into(), "opveth0".into());
    let err = e.network_create(req).unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert!(err.message().contains("opveth0"), "{}", err.message());
    assert_eq!(snapshot(&e), before);
}

#[test]
fn a_volume_whose_mount_the_policy_refuses_is_refused_at_create() {
    let f = Fixture::new();
    let e = f.engine();
    f.rec.clear();
    let req = VolumeCreateRequest { name: "vo".into(), driver: "outside".into(), ..Default::default() };
    let err = e.volume_create(req).unwrap_err();
    assert_eq!(err.status(), 403, "{err}");
    assert!(err.to_string().contains("volume vo") && err.to_string().contains("/mnt"), "{err}");
    assert_eq!(f.rec.log(), [], "nothing was made");
    assert!(e.volumes().is_empty());
}

#[test]
fn a_published_state_shares_the_objects_a_change_did_not_touch() {
    let f = Fixture::new();
    let e = f.engine();
    e.network_create(net("n")).unwrap();
    e.network_create(net("m")).unwrap();
    e.volume_create(VolumeCreateRequest { name: "v1".into(), ..Default::default() }).unwrap();
    for s in ["s1", "s2"] {
        e.sandbox_create(s, None, Default::default()).unwrap();
    }
    let first = e.connect(connect("n", "s1")).unwrap();
    let before = e.read();
    e.connect(connect("n", "s2")).unwrap();
    let after = e.read();
    assert!(!Arc::ptr_eq(&before, &after), "the change is published");
    let (b, a) = (before.endpoints().get(&first.id).unwrap(), after.endpoints().get(&first.id).unwrap());
    assert!(Arc::ptr_eq(b, a), "an endpoint it did not touch");
    let m = e.network("m").unwrap().id;
    let (b, a) = (before.networks().get(&m).unwrap(), after.networks().get(&m).unwrap());
    assert!(Arc::ptr_eq(b, a), "a network it did not touch");
    assert!(Arc::ptr_eq(before.volumes().get("v1").unwrap(), after.volumes().get("v1").unwrap()));
    let s1 = e.sandbox("s1").unwrap().id;
    assert!(Arc::ptr_eq(before.sandboxes().get(&s1).unwrap(), after.sandboxes().get(&s1).unwrap()));
    assert_eq!(after.endpoints().len(), 2);
}

/// How long publishing the state after a change takes, with 2 endpoints publishing 100
/// ports each and with 1000 endpoints: the median of 101 publishes. A measurement, not a
/// check: `cargo test --release -p wharf-core --lib publish_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn publish_cost() {
    for (n, ports) in [(2usize, 100usize), (1000, 0)] {
        let f = Fixture::new();
        let e = f.engine();
        e.network_create(net("n")).unwrap();
        for i in 0..n {
            let s = format!("s{i}");
            e.sandbox_create(&s, None, Default::default()).unwrap();
            let bind =
                |k: usize| PortBinding { port: 80, host_port: (10_000 + i * 100 + k) as u16, ..Default::default() };
            e.connect(ConnectRequest { ports: (0..ports).map(bind).collect(), ..connect("n", &s) }).unwrap();
        }
        let mut took: Vec<std::time::Duration> = (0..101)
            .map(|_| {
                let started = std::time::Instant::now();
                let mut changed = e.lock();
                let _: &mut State = &mut changed;
                drop(changed);
                started.elapsed()
            })
            .collect();
        took.sort();
        eprintln!("publish with {n} endpoints, {ports} ports each: {:?}", took[50]);
    }
}
