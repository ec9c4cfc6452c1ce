//! End-to-end: one overlay network across two hosts, each a private namespace running its
//! own wharfd, joined by an underlay link between them.

use wharf_tests::Host;

/// Two hosts whose namespaces share an underlay link: `u0` with 192.168.77.1 on the first
/// and 192.168.77.2 on the second. The second host's default route points over it.
fn two_hosts() -> (Host, Host) {
    let (a, b) = (Host::start(), Host::start());
    a.in_host_ok(&["ip", "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", &b.ns.name]);
    for (h, addr) in [(&a, "192.168.77.1/24"), (&b, "192.168.77.2/24")] {
        h.in_host_ok(&["ip", "addr", "add", addr, "dev", "u0"]);
        h.in_host_ok(&["ip", "link", "set", "u0", "up"]);
    }
    b.in_host_ok(&["ip", "route", "add", "default", "via", "192.168.77.1"]);
    (a, b)
}

/// Create overlay `name` on `h` with the common peer list; `extra` adds per-host flags.
fn create(h: &Host, name: &str, subnet: &str, extra: &[&str]) -> String {
    let mut args =
        vec!["network", "create", "-d", "overlay", "--subnet", subnet, "-o", "peers=192.168.77.1,192.168.77.2"];
    args.extend_from_slice(extra);
    args.push(name);
    h.wharf_ok(&args);
    short_id(h, name)
}

/// The first 12 hex digits of network `name`'s id, as its device names use them.
fn short_id(h: &Host, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", name])).expect("inspect json");
    v[0]["Id"].as_str().expect("network id")[..12].to_string()
}

fn pings(h: &Host, from: &str, to: &str, size: &str) -> bool {
    h.in_sandbox(from, &["ping", "-c", "1", "-W", "2", "-M", "do", "-s", size, to]).status.success()
}

#[test]
fn sandboxes_on_two_hosts_share_one_overlay_and_survive_a_restart() {
    wharf_tests::require_root!();
    let (mut a, b) = two_hosts();
    // The same command on both hosts, but for the address ranges each hands out; the first
    // host names its underlay address, the second takes it from its default route.
    let short_a = create(&a, "ov", "10.90.0.0/24", &["--ip-range", "10.90.0.0/25", "-o", "local=192.168.77.1"]);
    create(&b, "ov", "10.90.0.0/24", &["--ip-range", "10.90.0.128/25"]);
    let vx = a.in_host_ok(&["ip", "-d", "link", "show", &format!("vx-{short_a}")]);
    assert!(vx.contains("vxlan id") && vx.contains("dstport 4789") && vx.contains("mtu 1450"), "{vx}");
    assert!(vx.contains(&format!("master br-{short_a}")), "{vx}");
    let fdb = a.in_host_ok(&["bridge", "fdb", "show", "dev", &format!("vx-{short_a}")]);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.168.77.2"), "flood to the peer, not to itself: {fdb}");
    assert!(!fdb.contains("dst 192.168.77.1"), "{fdb}");

    for (h, sb) in [(&a, "s1"), (&a, "s2"), (&b, "s3")] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", "ov", sb]);
    }
    let (ip2, ip3) = (a.sandbox_ip("s2", "ov"), b.sandbox_ip("s3", "ov"));
    assert!(ip3.starts_with("10.90.0.1") && ip3 != "10.90.0.1", "the second host hands out its own range: {ip3}");
    assert!(a.ping("s1", &ip2), "same host\n{}", a.log());
    assert!(a.ping("s1", &ip3), "across hosts\n{}\n{}", a.log(), b.log());
    assert!(b.ping("s3", &a.sandbox_ip("s1", "ov")), "and back");
    // 1450 bytes of IP fit the overlay's MTU unfragmented: 1422 of payload, 28 of headers.
    assert!(pings(&a, "s1", &ip3, "1422"), "a full-MTU packet crosses");
    let mtu = String::from_utf8_lossy(&b.in_sandbox("s3", &["ip", "link", "show", "eth0"]).stdout).into_owned();
    assert!(mtu.contains("mtu 1450"), "{mtu}");

    // A crash, and the VXLAN device gone meanwhile: the restart puts it and its flood
    // entry back, and traffic flows again.
    a.kill_daemon();
    a.in_host_ok(&["ip", "link", "del", &format!("vx-{short_a}")]);
    a.start_daemon();
    let fdb = a.in_host_ok(&["bridge", "fdb", "show", "dev", &format!("vx-{short_a}")]);
    assert!(fdb.contains("00:00:00:00:00:00 dst 192.168.77.2"), "{fdb}\n{}", a.log());
    assert!(a.ping("s1", &ip3), "across hosts after the restart\n{}", a.log());

    b.wharf_ok(&["network", "disconnect", "ov", "s3"]);
    assert!(!a.ping("s1", &ip3));
    for sb in ["s1", "s2"] {
        a.wharf_ok(&["network", "disconnect", "ov", sb]);
    }
    a.wharf_ok(&["network", "rm", "ov"]);
    let links = a.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains(&short_a), "the bridge and the VXLAN device go with the network: {links}");
}

#[test]
fn overlays_with_different_vnis_do_not_see_each_other() {
    wharf_tests::require_root!();
    let (a, b) = two_hosts();
    create(&a, "red", "10.92.0.0/24", &["--ip-range", "10.92.0.0/25", "-o", "local=192.168.77.1"]);
    create(&b, "red", "10.92.0.0/24", &["--ip-range", "10.92.0.128/25"]);
    // The same subnet under another name is another segment, with another VNI.
    create(&a, "blue", "10.93.0.0/24", &["--ip-range", "10.93.0.0/25", "-o", "local=192.168.77.1"]);
    create(
        &b,
        "blue",
        "10.93.0.0/24",
        &["--ip-range", "10.93.0.128/25", "-o", "com.docker.network.driver.overlay.vxlanid_list=4097"],
    );
    let vni = |h: &Host, name: &str| {
        let d = h.in_host_ok(&["ip", "-d", "link", "show", &format!("vx-{}", short_id(h, name))]);
        d.split_whitespace().skip_while(|w| *w != "id").nth(1).unwrap_or_default().to_string()
    };
    assert_eq!(vni(&a, "red"), vni(&b, "red"), "the same name gives the same VNI on both hosts");
    assert_ne!(vni(&a, "blue"), vni(&b, "blue"));
    for (h, sb, net) in [(&a, "r1", "red"), (&b, "r2", "red"), (&a, "b1", "blue"), (&b, "b2", "blue")] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", net, sb]);
    }
    assert!(a.ping("r1", &b.sandbox_ip("r2", "red")), "red reaches red\n{}", a.log());
    assert!(!a.ping("b1", &b.sandbox_ip("b2", "blue")), "blue's two halves have different VNIs");
    let err = a.wharf_err(&["network", "create", "-d", "overlay", "-o", "local=10.9.9.9", "bad"]);
    assert!(err.contains("local") && err.contains("10.9.9.9") && err.lines().count() == 1, "{err}");
}

#[test]
fn an_ipv6_underlay_carries_the_overlay() {
    wharf_tests::require_root!();
    let (a, b) = two_hosts();
    for (h, addr) in [(&a, "fd77::1/64"), (&b, "fd77::2/64")] {
        h.in_host_ok(&["ip", "addr", "add", addr, "dev", "u0", "nodad"]);
    }
    for (h, local, range) in [(&a, "fd77::1", "10.94.0.0/25"), (&b, "fd77::2", "10.94.0.128/25")] {
        let local = format!("local={local}");
        create(h, "v6", "10.94.0.0/24", &["--ip-range", range, "-o", "peers=fd77::1,fd77::2", "-o", &local]);
    }
    for (h, sb) in [(&a, "x"), (&b, "y")] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", "v6", sb]);
    }
    let y = b.sandbox_ip("y", "v6");
    // VXLAN over IPv6 costs 70 bytes: 1430 of IP, 1402 of ping payload.
    assert!(pings(&a, "x", &y, "1402"), "a full-MTU packet crosses the IPv6 underlay\n{}", a.log());
    assert!(!pings(&a, "x", &y, "1403"), "one byte more does not fit unfragmented");
}
