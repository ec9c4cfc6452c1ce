//! End-to-end: hosts sharing an etcd cluster store. Each host is a private namespace
//! running its own wharfd, with a link to an underlay bridge in a namespace of its own,
//! where a private etcd (temporary data dir) listens.

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wharf_tests::{Host, Underlay};

/// The host's lease TTL in these tests, in seconds.
const TTL: u64 = 3;

fn inspect(h: &Host, name: &str) -> Option<Value> {
    let out = h.wharf(&["network", "inspect", name]);
    out.status.success().then(|| serde_json::from_slice::<Value>(&out.stdout).ok()).flatten().map(|v| v[0].clone())
}

/// Wait until `f` holds, at most `secs` seconds; say what did not happen.
fn until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs}s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The MAC of sandbox `sb`'s interface on the overlay.
fn mac(h: &Host, sb: &str) -> String {
    let v: Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", sb])).unwrap();
    v[0]["Networks"]["ov"]["MacAddress"].as_str().unwrap_or_default().to_string()
}

/// The unicast FDB entries of the VXLAN device: `(mac, dst)`, and whether any other entry
/// (a flood or learned one) is there.
fn fdb(h: &Host, dev: &str) -> BTreeSet<(String, String)> {
    let out = h.in_host_ok(&["bridge", "fdb", "show", "dev", dev]);
    out.lines()
        .filter(|l| l.contains(" dst "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let dst = w.iter().position(|x| *x == "dst").map(|i| w[i + 1].to_string()).unwrap_or_default();
            (w[0].to_string(), dst)
        })
        .collect()
}

fn neigh(h: &Host, dev: &str) -> BTreeSet<(String, String)> {
    let out = h.in_host_ok(&["ip", "neigh", "show", "dev", dev]);
    out.lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w.get(2).map(|s| s.to_string()).unwrap_or_default())
        })
        .collect()
}

fn pings(h: &Host, from: &str, to: &str) -> bool {
    // 1450 bytes of IP: the underlay's 1500 less VXLAN's 50, sent unfragmented.
    h.in_sandbox(from, &["ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1422", to]).status.success()
}

/// Bytes that arrive when sandbox `from` on `a` sends 1 MB over TCP to sandbox `to` on `b`
/// (address `ip`): full-size segments, as the overlay's MTU allows.
fn tcp_bytes(a: &Host, from: &str, b: &Host, to: &str, ip: &str) -> usize {
    let listener = Command::new("nsenter")
        .args([&format!("--net={}", b.sandbox_path(to)), "--", "timeout", "20", "sh", "-c", "nc -l 5001 | wc -c"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("listen");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&b.in_sandbox(to, &["ss", "-Htln"]).stdout).contains(":5001") {
        assert!(Instant::now() < deadline, "nc did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let send = format!("head -c 1000000 /dev/zero | nc -N {ip} 5001");
    let sent = a.in_sandbox(from, &["timeout", "20", "sh", "-c", &send]);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let out = listener.wait_with_output().expect("listener");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

#[test]
fn hosts_share_overlays_through_etcd_without_flooding() {
    wharf_tests::require_root!();
    let mut underlay = Underlay::start(TTL);
    let hosts: Vec<Host> = (1..=3).map(|n| underlay.host(n)).collect();

    // Created once, on the first host; every host shows it, the same, with scope global.
    hosts[0].wharf_ok(&["network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "ov"]);
    let first = inspect(&hosts[0], "ov").unwrap();
    assert_eq!(first["Scope"], "global");
    for h in &hosts[1..] {
        until(10, "the network reaches every host", || inspect(h, "ov").is_some());
        let seen = inspect(h, "ov").unwrap();
        for key in ["Id", "Name", "Scope", "Options", "IPAM"] {
            assert_eq!(seen[key], first[key], "{key}");
        }
    }
    let err = hosts[1].wharf_err(&["network", "create", "-d", "overlay", "ov"]);
    assert!(err.contains("already exists"), "{err}");
    let dev = format!("vx-{}", &first["Id"].as_str().unwrap()[..12]);
    let vx = hosts[0].in_host_ok(&["ip", "-d", "link", "show", &dev]);
    assert!(vx.contains("nolearning") && vx.contains("proxy") && vx.contains("mtu 1450"), "{vx}");

    // One sandbox per host; every one reaches every other at full MTU.
    let mut members: Vec<(usize, String, String, String)> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let sb = format!("s{}", i + 1);
        h.wharf_ok(&["sandbox", "create", &sb]);
        h.wharf_ok(&["network", "connect", "ov", &sb]);
        members.push((i, sb.clone(), h.sandbox_ip(&sb, "ov"), mac(h, &sb)));
    }
    let ips: BTreeSet<&String> = members.iter().map(|m| &m.2).collect();
    assert_eq!(ips.len(), members.len(), "{members:?}");
    let mesh = |hosts: &[Host], members: &[(usize, String, String, String)]| {
        for (i, sb, _, _) in members {
            for (j, _, ip, _) in members {
                if i != j {
                    until(5, &format!("{sb} reaches {ip}"), || pings(&hosts[*i], sb, ip));
                }
            }
        }
    };
    mesh(&hosts, &members);
    assert_eq!(tcp_bytes(&hosts[0], "s1", &hosts[1], "s2", &members[1].2), 1_000_000, "TCP across hosts");

    // Each host holds exactly the other hosts' endpoints, statically: no flood entry, and
    // nothing learned.
    let expect = |me: usize, members: &[(usize, String, String, String)]| {
        let f: BTreeSet<(String, String)> =
            members.iter().filter(|m| m.0 != me).map(|m| (m.3.clone(), format!("192.168.80.{}", m.0 + 1))).collect();
        let n: BTreeSet<(String, String)> =
            members.iter().filter(|m| m.0 != me).map(|m| (m.2.clone(), m.3.clone())).collect();
        (f, n)
    };
    for (i, h) in hosts.iter().enumerate() {
        let (f, n) = expect(i, &members);
        until(5, "the fdb holds the remote endpoints", || fdb(h, &dev) == f);
        assert_eq!(neigh(h, &dev), n);
        let all = h.in_host_ok(&["bridge", "fdb", "show", "dev", &dev]);
        assert!(!all.contains("00:00:00:00:00:00"), "no flood entry: {all}");
    }
    // A packet to an address no host owns goes nowhere.
    assert!(!hosts[0].ping("s1", "10.91.0.200"));

    // A fourth host joins later and reaches everyone; nobody else is touched.
    let mut hosts = hosts;
    hosts.push(underlay.host(4));
    until(10, "the network reaches the new host", || inspect(&hosts[3], "ov").is_some());
    hosts[3].wharf_ok(&["sandbox", "create", "s4"]);
    hosts[3].wharf_ok(&["network", "connect", "ov", "s4"]);
    members.push((3, "s4".into(), hosts[3].sandbox_ip("s4", "ov"), mac(&hosts[3], "s4")));
    mesh(&hosts, &members);
    for (i, h) in hosts.iter().enumerate() {
        let (f, n) = expect(i, &members);
        until(5, "every fdb holds the new endpoint", || fdb(h, &dev) == f);
        assert_eq!(neigh(h, &dev), n);
    }

    // etcd goes away: traffic on joined endpoints flows on; what needs the store fails at
    // once, naming it; when etcd is back, every host carries on.
    underlay.etcd.stop();
    assert!(pings(&hosts[0], "s1", &members[1].2));
    let started = Instant::now();
    let err = hosts[0].wharf_err(&["network", "create", "-d", "overlay", "--subnet", "10.92.0.0/24", "ov2"]);
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert!(err.contains(&format!("cluster store {} is unavailable", underlay.etcd.url())), "{err}");
    assert!(inspect(&hosts[0], "ov2").is_none(), "nothing changed");
    underlay.etcd.restart();
    until(15, "the store is usable again", || {
        hosts[1].wharf(&["network", "create", "-d", "overlay", "--subnet", "10.92.0.0/24", "ov2"]).status.success()
    });
    until(10, "the network made after the outage reaches every host", || {
        hosts.iter().all(|h| inspect(h, "ov2").is_some())
    });
    hosts[1].wharf_ok(&["network", "rm", "ov2"]);

    // kill -9 one host: its endpoint is gone from every other host within the TTL.
    hosts[2].kill_daemon();
    let killed = Instant::now();
    for (i, h) in hosts.iter().enumerate().filter(|(i, _)| *i != 2) {
        let left: Vec<_> = members.iter().filter(|m| m.0 != 2).cloned().collect();
        let (f, n) = expect(i, &left);
        until(TTL + 5, "the dead host's entries vanish", || fdb(h, &dev) == f);
        assert_eq!(neigh(h, &dev), n);
    }
    assert!(killed.elapsed() < Duration::from_secs(TTL + 3), "took {:?}", killed.elapsed());

    // Started again, it publishes what it still has, and everyone reaches it again.
    hosts[2].start_daemon();
    mesh(&hosts, &members);
    for (i, h) in hosts.iter().enumerate() {
        let (f, n) = expect(i, &members);
        until(5, "every fdb holds the restarted host's endpoint", || fdb(h, &dev) == f);
        assert_eq!(neigh(h, &dev), n);
    }

    // Removal waits for every host's endpoints, names the hosts that still have them, and
    // then takes the network away everywhere.
    hosts[1].wharf_ok(&["network", "disconnect", "ov", "s2"]);
    let err = hosts[1].wharf_err(&["network", "rm", "ov"]);
    for held in ["192.168.80.1", "192.168.80.3", "192.168.80.4"] {
        assert!(err.contains("has active endpoints on hosts") && err.contains(held), "{err}");
    }
    assert!(!err.contains("192.168.80.2"), "{err}");
    hosts[0].wharf_ok(&["network", "disconnect", "ov", "s1"]);
    hosts[2].wharf_ok(&["network", "disconnect", "ov", "s3"]);
    hosts[3].wharf_ok(&["network", "disconnect", "ov", "s4"]);
    hosts[1].wharf_ok(&["network", "rm", "ov"]);
    for (i, h) in hosts.iter().enumerate() {
        until(10, &format!("host {} drops the network", i + 1), || inspect(h, "ov").is_none());
    }
}

#[test]
fn concurrent_connects_on_every_host_get_distinct_addresses() {
    wharf_tests::require_root!();
    let underlay = Underlay::start(TTL);
    let hosts: Vec<Host> = (11..=13).map(|n| underlay.host(n)).collect();
    hosts[0].wharf_ok(&["network", "create", "-d", "overlay", "--subnet", "10.93.0.0/24", "ov"]);
    for h in &hosts {
        until(10, "the network reaches every host", || inspect(h, "ov").is_some());
    }
    let per_host = 8;
    for h in &hosts {
        for k in 0..per_host {
            h.wharf_ok(&["sandbox", "create", &format!("c{k}")]);
        }
    }
    std::thread::scope(|s| {
        for h in &hosts {
            for k in 0..per_host {
                s.spawn(move || h.wharf_ok(&["network", "connect", "ov", &format!("c{k}")]));
            }
        }
    });
    let mut ips = Vec::new();
    for h in &hosts {
        for k in 0..per_host {
            ips.push(h.sandbox_ip(&format!("c{k}"), "ov"));
        }
    }
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), ips.len(), "duplicate addresses: {ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.93.0.")), "{ips:?}");
}

#[test]
fn an_ipv6_underlay_carries_a_dual_stack_overlay_at_its_mtu() {
    wharf_tests::require_root!();
    let underlay = Underlay::start(TTL);
    let (a, b) = (underlay.host_advertising(21, "fd80::21"), underlay.host_advertising(22, "fd80::22"));
    a.wharf_ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--ipv6",
        "--subnet",
        "10.94.0.0/24",
        "--subnet",
        "fd94::/64",
        "ov",
    ]);
    until(10, "the network reaches the other host", || inspect(&b, "ov").is_some());
    let dev = format!("vx-{}", &inspect(&a, "ov").unwrap()["Id"].as_str().unwrap()[..12]);
    let vx = b.in_host_ok(&["ip", "-d", "link", "show", &dev]);
    assert!(vx.contains("local fd80::22") && vx.contains("mtu 1430"), "VXLAN over IPv6 costs 70 bytes: {vx}");
    for (h, sb) in [(&a, "s1"), (&b, "s2")] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", "ov", sb]);
    }
    let v: Value = serde_json::from_str(&b.wharf_ok(&["sandbox", "inspect", "s2"])).unwrap();
    let v6 = v[0]["Networks"]["ov"]["GlobalIPv6Address"].as_str().unwrap_or_default().to_string();
    assert!(v6.starts_with("fd94::"), "{v}");
    let v4 = b.sandbox_ip("s2", "ov");
    // 1430 bytes of IP: 1402 of ICMP payload over IPv4, 1382 over IPv6.
    until(5, "IPv4 across at full MTU", || {
        a.in_sandbox("s1", &["ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1402", &v4]).status.success()
    });
    until(5, "IPv6 across at full MTU", || {
        a.in_sandbox("s1", &["ping", "-6", "-c", "1", "-W", "1", "-M", "do", "-s", "1382", &v6]).status.success()
    });
    assert!(!a.in_sandbox("s1", &["ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1403", &v4]).status.success());
    let neigh = a.in_host_ok(&["ip", "-6", "neigh", "show", "dev", &dev]);
    assert!(neigh.contains(&v6), "the IPv6 neighbour entry is programmed: {neigh}");
    let fdb = a.in_host_ok(&["bridge", "fdb", "show", "dev", &dev]);
    assert!(fdb.contains("dst fd80::22") && !fdb.contains("00:00:00:00:00:00"), "{fdb}");
}

/// `dig` inside sandbox `sb` at its embedded resolver: the `+short` answer, trimmed.
fn dig(h: &Host, sb: &str, name: &str) -> String {
    let out = h.in_sandbox(sb, &["dig", "@127.0.0.11", "+short", "+time=2", "+tries=1", name]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_sandbox_resolves_the_names_of_sandboxes_on_other_hosts_of_its_overlay() {
    wharf_tests::require_root!();
    let underlay = Underlay::start(TTL);
    let (mut a, b) = (underlay.host(1), underlay.host(2));
    a.wharf_ok(&["network", "create", "-d", "overlay", "--subnet", "10.96.0.0/24", "ov"]);
    a.wharf_ok(&["network", "create", "-d", "overlay", "--subnet", "10.97.0.0/24", "other"]);
    until(10, "the networks reach the other host", || inspect(&b, "ov").is_some() && inspect(&b, "other").is_some());
    a.wharf_ok(&["sandbox", "create", "web"]);
    a.wharf_ok(&["network", "connect", "--alias", "www", "--alias", "front", "ov", "web"]);
    a.wharf_ok(&["sandbox", "create", "hidden"]);
    a.wharf_ok(&["network", "connect", "other", "hidden"]);
    b.wharf_ok(&["sandbox", "create", "cli"]);
    b.wharf_ok(&["network", "connect", "ov", "cli"]);
    let web = a.sandbox_ip("web", "ov");
    let web_id: String = {
        let v: Value = serde_json::from_str(&a.wharf_ok(&["sandbox", "inspect", "web"])).unwrap();
        v[0]["Id"].as_str().unwrap()[..12].to_string()
    };

    // The name, each alias and the short id, at the address on the shared overlay.
    for name in ["web", "www", "FRONT", web_id.as_str()] {
        until(5, &format!("{name} resolves on the other host"), || dig(&b, "cli", name) == web);
    }
    until(5, "web is reachable at what its name resolves to", || b.ping("cli", &web));
    // A sandbox on a cluster overlay asks for a neighbour again after 100 ms, not 1 s.
    let retrans = b.in_sandbox("cli", &["cat", "/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms"]);
    assert_eq!(String::from_utf8_lossy(&retrans.stdout).trim(), "100");
    // Isolation holds across hosts: a sandbox on a network `cli` is not on does not resolve.
    assert_eq!(dig(&b, "cli", "hidden"), "");
    // And the other way round: the first host resolves the second host's sandbox.
    a.wharf_ok(&["network", "connect", "ov", "hidden"]);
    let cli = b.sandbox_ip("cli", "ov");
    until(5, "cli resolves on the first host", || dig(&a, "hidden", "cli") == cli);

    // Disconnected on its host: the name goes on the other host.
    a.wharf_ok(&["network", "disconnect", "ov", "web"]);
    until(5, "the name of a disconnected sandbox goes", || dig(&b, "cli", "web").is_empty());
    assert_eq!(dig(&b, "cli", "www"), "");
    // Its host killed: its names go when its lease expires.
    until(5, "hidden resolves on the second host", || !dig(&b, "cli", "hidden").is_empty());
    a.kill_daemon();
    until(TTL + 5, "the names of a dead host go", || dig(&b, "cli", "hidden").is_empty());
}
