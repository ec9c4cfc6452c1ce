//! The same behaviour asked of both stores: in memory without root, and in a real etcd
//! started in a private network namespace (root).

use super::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_tests::{require_root, Netns};

fn host(n: u8) -> HostRecord {
    HostRecord { id: format!("host{n}id"), name: format!("host{n}"), vtep: IpAddr::from([192, 168, 50, n]) }
}

fn network(name: &str) -> NetworkRecord {
    NetworkRecord {
        id: format!("{name:0>64}"),
        name: name.to_string(),
        vni: 0,
        created_by: host(1).id,
        definition: serde_json::json!({"driver": "overlay", "subnets": ["10.90.0.0/24"]}),
    }
}

fn endpoint(net: &NetworkRecord, h: &HostRecord, n: u8) -> EndpointRecord {
    EndpointRecord {
        network_id: net.id.clone(),
        endpoint_id: format!("ep{n:0>62}"),
        host: h.id.clone(),
        vtep: h.vtep,
        mac: format!("02:42:0a:5a:00:{n:02x}"),
        ipv4: Some(IpAddr::from([10, 90, 0, n])),
        ipv6: None,
        names: vec![format!("sb{n}")],
        sandbox: format!("sb{n:0>62}"),
    }
}

fn range24() -> Vec<AddressRange> {
    vec![AddressRange {
        range: "10.90.0.0/24".parse().unwrap(),
        reserved: vec!["10.90.0.0".parse().unwrap(), "10.90.0.255".parse().unwrap()],
    }]
}

/// Wait for the first event that `want` accepts, applying every event to `view`.
fn wait_for(watch: &Watch, view: &mut Snapshot, want: impl Fn(&ClusterEvent) -> bool) -> ClusterEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(e) = watch.next_timeout(Duration::from_millis(200)) {
            view.apply(&e);
            if want(&e) {
                return e;
            }
        }
    }
    panic!("no matching cluster event within 20s; view: {view:?}");
}

/// Networks are created once: names and VNIs are unique in the cluster, and every host
/// sees the same record.
fn networks_once(a: &dyn ClusterStore, b: &dyn ClusterStore) {
    let first = a.create_network(network("ov1"), None).unwrap();
    assert_eq!(first.vni, FIRST_VNI);
    assert_eq!(b.snapshot().unwrap().networks.get(&first.id), Some(&first));
    let e = b.create_network(network("ov1"), None).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)) && e.to_string().contains("ov1"), "{e}");
    let e = b.create_network(network("ov2"), Some(FIRST_VNI)).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)) && e.to_string().contains("used by network ov1"), "{e}");
    assert!(matches!(b.create_network(network("ov2"), Some(0)), Err(Error::Invalid(_))));
    let second = b.create_network(network("ov2"), None).unwrap();
    assert_eq!(second.vni, FIRST_VNI + 1);
    let third = a.create_network(network("ov3"), Some(77)).unwrap();
    assert_eq!(third.vni, 77);
    // A removed network's name and VNI are free again.
    a.remove_network(&second.id).unwrap();
    assert!(matches!(a.remove_network(&second.id), Err(Error::NotFound(_))));
    assert_eq!(b.create_network(network("ov2"), None).unwrap().vni, FIRST_VNI + 1);
}

/// Hosts allocating at once never get the same address; wanted addresses are honoured or
/// refused; released addresses come back only after the cursor went round.
fn addresses_unique(hosts: &[Arc<dyn ClusterStore>]) {
    let net = hosts[0].create_network(network("ipam"), None).unwrap();
    let per_host = 15;
    let got: Vec<IpAddr> = std::thread::scope(|s| {
        let workers: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, store)| {
                let net = &net;
                s.spawn(move || {
                    (0..per_host)
                        .map(|k| {
                            let owner = AddressOwner { host: format!("h{i}"), endpoint: format!("e{i}-{k}") };
                            store.allocate_address(&net.id, &range24(), None, &owner).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let distinct: BTreeSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "duplicate addresses: {got:?}");
    assert_eq!(hosts[0].addresses(&net.id).unwrap().len(), got.len());
    assert!(!distinct.contains(&"10.90.0.0".parse().unwrap()));
    let owner = AddressOwner { host: "h0".into(), endpoint: "static".into() };
    let taken = got[0];
    let e = hosts[1].allocate_address(&net.id, &range24(), Some(taken), &owner).unwrap_err();
    assert!(matches!(e, Error::AddressInUse { .. }) && e.to_string().contains(&taken.to_string()), "{e}");
    let wanted: IpAddr = "10.90.0.200".parse().unwrap();
    assert_eq!(hosts[1].allocate_address(&net.id, &range24(), Some(wanted), &owner).unwrap(), wanted);
    hosts[1].release_address(&net.id, taken).unwrap();
    let next = hosts[1].allocate_address(&net.id, &range24(), None, &owner).unwrap();
    assert_ne!(next, taken, "a freed address is not reused at once");
    // A full range says so.
    let tiny = vec![AddressRange { range: "10.90.0.200/31".parse().unwrap(), reserved: vec![] }];
    hosts[0].allocate_address(&net.id, &tiny, None, &owner).unwrap();
    let e = hosts[0].allocate_address(&net.id, &tiny, None, &owner).unwrap_err();
    assert!(matches!(e, Error::Exhausted { .. }), "{e}");
    // Removing the network frees its addresses.
    hosts[0].remove_network(&net.id).unwrap();
    assert!(hosts[0].addresses(&net.id).unwrap().is_empty());
    assert!(matches!(hosts[0].allocate_address(&net.id, &range24(), None, &owner), Err(Error::NotFound(_))));
}

/// Endpoints are published under their host, followed by watchers from a revision, hold
/// their network against removal, and go with their host.
fn endpoints_follow_hosts(a: &dyn ClusterStore, b: &dyn ClusterStore, kill_b: &dyn Fn()) {
    let net = a.create_network(network("eps"), None).unwrap();
    let mut view = a.snapshot().unwrap();
    let watch = a.watch(view.revision + 1).unwrap();
    let (ha, hb) = (host(1), host(2));
    a.join(&ha).unwrap();
    b.join(&hb).unwrap();
    let (ea, eb) = (endpoint(&net, &ha, 1), endpoint(&net, &hb, 2));
    a.publish_endpoint(&ea).unwrap();
    b.publish_endpoint(&eb).unwrap();
    wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::EndpointUp(r) if r.endpoint_id == eb.endpoint_id));
    assert_eq!(view.hosts.get(&hb.id), Some(&hb));
    assert_eq!(view.endpoints_of(&net.id).count(), 2);
    assert_eq!(view, {
        let mut s = a.snapshot().unwrap();
        s.revision = view.revision;
        s
    });
    // Publishing on a network that does not exist fails.
    let mut stray = endpoint(&net, &hb, 3);
    stray.network_id = network("nothere").id;
    assert!(matches!(b.publish_endpoint(&stray), Err(Error::NotFound(_))));
    let e = b.remove_network(&net.id).unwrap_err();
    assert_eq!(e.to_string(), "network eps has active endpoints on hosts host1, host2");
    a.withdraw_endpoint(&net.id, &ea.endpoint_id).unwrap();
    wait_for(
        &watch,
        &mut view,
        |e| matches!(e, ClusterEvent::EndpointDown { endpoint_id, .. } if *endpoint_id == ea.endpoint_id),
    );
    let e = a.remove_network(&net.id).unwrap_err();
    assert!(matches!(&e, Error::InUse { hosts, .. } if hosts == &["host2"]), "{e}");
    kill_b();
    wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::HostDown(id) if *id == hb.id));
    assert!(view.endpoints.is_empty(), "{view:?}");
    a.remove_network(&net.id).unwrap();
    wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::NetworkDown(id) if *id == net.id));
    a.leave().unwrap();
    wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::HostDown(id) if *id == ha.id));
    assert_eq!(view.hosts.len(), 0);
}

#[test]
fn memory_networks_are_created_once() {
    let a = MemoryStore::new();
    networks_once(&a, &a.another_host());
}

#[test]
fn memory_addresses_are_unique_across_hosts() {
    let a = MemoryStore::new();
    let hosts: Vec<Arc<dyn ClusterStore>> =
        vec![Arc::new(a.another_host()), Arc::new(a.another_host()), Arc::new(a.another_host()), Arc::new(a)];
    addresses_unique(&hosts);
}

#[test]
fn memory_endpoints_follow_their_hosts() {
    let a = MemoryStore::new();
    let b = a.another_host();
    endpoints_follow_hosts(&a, &b, &|| a.expire(&host(2).id));
}

/// A private etcd in a network namespace of its own, on its loopback.
struct Etcd {
    server: wharf_tests::Etcd,
    ns: Netns,
}

impl Etcd {
    fn start() -> Etcd {
        let ns = Netns::new("wc");
        Etcd { server: wharf_tests::Etcd::start(&ns, "127.0.0.1"), ns }
    }

    fn stop(&mut self) {
        self.server.stop();
    }

    fn run(&mut self) {
        self.server.restart();
    }

    fn config(&self) -> StoreConfig {
        let mut c = StoreConfig::parse(&self.server.url()).unwrap();
        c.ttl = Duration::from_secs(2);
        c.timeout = Duration::from_secs(2);
        c
    }

    /// Run `f` on a thread inside the namespace: the store's threads, started there, stay there.
    fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = PathBuf::from(self.ns.path());
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path).expect("open the namespace");
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the namespace");
                f()
            })
            .join()
            .unwrap()
        })
    }

    fn store(&self) -> EtcdStore {
        EtcdStore::open(self.config()).unwrap()
    }
}

#[test]
fn etcd_networks_are_created_once() {
    require_root!();
    let etcd = Etcd::start();
    etcd.in_ns(|| networks_once(&etcd.store(), &etcd.store()));
}

#[test]
fn etcd_addresses_are_unique_across_hosts() {
    require_root!();
    let etcd = Etcd::start();
    etcd.in_ns(|| {
        let hosts: Vec<Arc<dyn ClusterStore>> =
            (0..4).map(|_| Arc::new(etcd.store()) as Arc<dyn ClusterStore>).collect();
        addresses_unique(&hosts);
    });
}

#[test]
fn etcd_endpoints_follow_their_hosts() {
    require_root!();
    let etcd = Etcd::start();
    etcd.in_ns(|| {
        let (a, b) = (etcd.store(), etcd.store());
        // A host that stops renewing its lease without revoking it, as a killed daemon does:
        // its lease runs out after the TTL.
        let started = std::cell::Cell::new(None);
        endpoints_follow_hosts(&a, &b, &|| {
            started.set(Some(Instant::now()));
            b.stop_renewing();
        });
        let waited = started.get().unwrap().elapsed();
        assert!(waited < Duration::from_secs(6), "a dead host's endpoints went after {waited:?}");
    });
}

#[test]
fn etcd_unreachable_fails_at_once_naming_the_store() {
    require_root!();
    let etcd = Etcd::start();
    let mut etcd = etcd;
    etcd.stop();
    etcd.in_ns(|| {
        let store = etcd.store();
        let started = Instant::now();
        let e = store.create_network(network("down"), None).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(e.to_string().starts_with("cluster store etcd://127.0.0.1:2379 is unavailable"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        let started = Instant::now();
        assert!(store.join(&host(1)).is_err());
        assert!(store.snapshot().is_err());
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    });
}

#[test]
fn etcd_restarted_mid_run_loses_nothing() {
    require_root!();
    let mut etcd = Etcd::start();
    let (a, b) = etcd.in_ns(|| (etcd.store(), etcd.store()));
    let (ha, hb) = (host(1), host(2));
    let (net, watch, mut view) = etcd.in_ns(|| {
        let net = a.create_network(network("again"), None).unwrap();
        a.join(&ha).unwrap();
        b.join(&hb).unwrap();
        b.publish_endpoint(&endpoint(&net, &hb, 2)).unwrap();
        let view = a.snapshot().unwrap();
        let watch = a.watch(view.revision + 1).unwrap();
        (net, watch, view)
    });
    etcd.stop();
    // While etcd is away, calls fail at once and the watch waits.
    let e = b.publish_endpoint(&endpoint(&net, &hb, 3)).unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    std::thread::sleep(Duration::from_secs(1));
    etcd.run();
    etcd.in_ns(move || {
        b.publish_endpoint(&endpoint(&net, &hb, 4)).unwrap();
        wait_for(
            &watch,
            &mut view,
            |e| matches!(e, ClusterEvent::EndpointUp(r) if r.endpoint_id == endpoint(&net, &hb, 4).endpoint_id),
        );
        // Both hosts' leases are still renewed: after several TTLs they and b's endpoints are there.
        std::thread::sleep(Duration::from_secs(5));
        let now = a.snapshot().unwrap();
        assert_eq!(now.hosts.len(), 2, "{now:?}");
        assert_eq!(now.endpoints_of(&net.id).count(), 2, "{now:?}");
    });
}

#[test]
fn etcd_lost_lease_registers_again_with_its_endpoints() {
    require_root!();
    let etcd = Etcd::start();
    etcd.in_ns(|| {
        let a = etcd.store();
        let net = a.create_network(network("relet"), None).unwrap();
        a.join(&host(1)).unwrap();
        a.publish_endpoint(&endpoint(&net, &host(1), 1)).unwrap();
        let mut view = a.snapshot().unwrap();
        let watch = a.watch(view.revision + 1).unwrap();
        // Revoke the lease behind the store's back, as an outage longer than the TTL does.
        a.with_client(|mut c, lease| async move { c.lease_revoke(lease).await }).unwrap();
        wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::HostDown(_)));
        wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::EndpointUp(_)));
        assert_eq!(view.hosts.len(), 1);
        assert_eq!(view.endpoints.len(), 1);
    });
}

#[test]
fn etcd_watch_from_a_compacted_revision_resyncs() {
    require_root!();
    let etcd = Etcd::start();
    etcd.in_ns(|| {
        let a = etcd.store();
        let first = a.snapshot().unwrap().revision;
        let net = a.create_network(network("compact"), None).unwrap();
        a.join(&host(1)).unwrap();
        a.publish_endpoint(&endpoint(&net, &host(1), 1)).unwrap();
        let now = a.snapshot().unwrap();
        a.with_client(|mut c, _| async move { c.compact(now.revision, None).await }).unwrap();
        let watch = a.watch(first + 1).unwrap();
        let mut view = Snapshot::default();
        let e = wait_for(&watch, &mut view, |_| true);
        assert!(matches!(e, ClusterEvent::Resync(_)), "{e:?}");
        assert_eq!(view.networks.len(), 1);
        assert_eq!(view.endpoints.len(), 1);
        // And it follows on from there.
        a.withdraw_endpoint(&net.id, &endpoint(&net, &host(1), 1).endpoint_id).unwrap();
        wait_for(&watch, &mut view, |e| matches!(e, ClusterEvent::EndpointDown { .. }));
        assert!(view.endpoints.is_empty());
    });
}
