//! End-to-end: macvlan networks on links inside the private host namespace.

use wharf_tests::{Host, Netns};

/// A parent link in the host namespace: one end of a veth pair, both ends up. (This
/// machine's kernel has no dummy links.)
fn parent(h: &Host, name: &str) {
    let peer = format!("{name}p");
    h.in_host_ok(&["ip", "link", "add", name, "type", "veth", "peer", "name", &peer]);
    h.in_host_ok(&["ip", "link", "set", name, "up"]);
    h.in_host_ok(&["ip", "link", "set", &peer, "up"]);
}

/// Whether the kernel can make 802.1Q sub-interfaces.
fn kernel_has_vlans() -> bool {
    let probe = Netns::new("vlq");
    probe.exec(&["ip", "link", "add", "a", "type", "veth", "peer", "name", "b"]);
    probe.exec(&["ip", "link", "add", "link", "a", "name", "a.5", "type", "vlan", "id", "5"]).status.success()
}

#[test]
fn bridge_mode_connects_sandboxes_and_private_mode_separates_them() {
    wharf_tests::require_root!();
    let h = Host::start();
    parent(&h, "par0");
    parent(&h, "par1");
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.80.0.0/24", "-o", "parent=par0", "mvb"]);
    h.wharf_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.81.0.0/24",
        "-o",
        "parent=par1",
        "-o",
        "macvlan_mode=private",
        "mvp",
    ]);
    for sb in ["a", "b", "c", "d"] {
        h.wharf_ok(&["sandbox", "create", sb]);
    }
    h.wharf_ok(&["network", "connect", "mvb", "a"]);
    h.wharf_ok(&["network", "connect", "mvb", "b", "--mac-address", "02:00:00:00:00:0b"]);
    h.wharf_ok(&["network", "connect", "mvp", "c"]);
    h.wharf_ok(&["network", "connect", "mvp", "d"]);
    let link = String::from_utf8_lossy(&h.in_sandbox("b", &["ip", "-d", "link", "show", "eth0"]).stdout).into_owned();
    assert!(link.contains("macvlan mode bridge") && link.contains("02:00:00:00:00:0b"), "{link}");
    assert!(h.ping("a", "10.80.0.3"), "bridge mode: a reaches b\n{}", h.log());
    assert!(!h.ping("c", "10.81.0.3"), "private mode: c cannot reach d");
    h.wharf_ok(&["network", "disconnect", "mvb", "b"]);
    assert!(!h.ping("a", "10.80.0.3"));
    let links = String::from_utf8_lossy(&h.in_sandbox("b", &["ip", "-o", "link"]).stdout).into_owned();
    assert!(!links.contains("eth0"), "{links}");
}

#[test]
fn a_sandbox_reconnects_at_once_with_the_same_mac_and_retired_links_go_away() {
    wharf_tests::require_root!();
    let h = Host::start();
    parent(&h, "par0");
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.79.0.0/24", "-o", "parent=par0", "mv"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "mv", "b", "--ip", "10.79.0.20"]);
    for round in 0..4 {
        h.wharf_ok(&["network", "connect", "mv", "a", "--ip", "10.79.0.10", "--mac-address", "02:00:00:00:00:0a"]);
        assert!(h.ping("a", "10.79.0.20"), "round {round}\n{}", wharf_tests::tail(&h.log(), 30));
        h.wharf_ok(&["network", "disconnect", "mv", "a"]);
        assert!(!h.ping("b", "10.79.0.10"), "disconnected: no traffic, at once");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let links = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "link", "show"]).stdout).into_owned();
        if !links.contains("wgc") && !links.contains("eth0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retired links stay in the sandbox: {links}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    h.wharf_ok(&["sandbox", "rm", "a"]);
}

#[test]
fn a_restart_removes_links_a_crash_left_retired_in_a_sandbox() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    parent(&h, "par0");
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.78.0.0/24", "-o", "parent=par0", "mv"]);
    for sb in ["a", "b"] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", "mv", sb]);
    }
    // What a crash between a macvlan's retirement and its deletion leaves behind: a link
    // carrying wharf's mark (the alias of the endpoint's own link) that no endpoint names.
    let eth0 =
        String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "link", "show", "dev", "eth0"]).stdout).into_owned();
    let mark = eth0.split(" alias ").nth(1).expect("wharf marks the macvlan").trim().to_string();
    for cmd in [
        &["ip", "link", "add", "wgc9001", "type", "veth", "peer", "name", "wgc9002"][..],
        &["ip", "link", "set", "wgc9001", "alias", &mark][..],
        // Another program's link, named like a retired one.
        &["ip", "link", "add", "wgc9003", "type", "veth", "peer", "name", "other9003"][..],
    ] {
        let out = h.in_sandbox("a", cmd);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    h.kill_daemon();
    h.start_daemon();
    let links = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "link", "show"]).stdout).into_owned();
    assert!(!links.contains("wgc9001") && !links.contains("wgc9002"), "{links}\n{}", h.log());
    assert!(links.contains("wgc9003"), "a link without wharf's mark stays: {links}");
    assert!(links.contains("eth0"), "the endpoint's own link stays: {links}");
    assert!(h.ping("a", &h.sandbox_ip("b", "mv")));
}

#[test]
fn a_vlan_parent_tags_frames_and_goes_with_its_network() {
    wharf_tests::require_root!();
    let h = Host::start();
    let wire = Netns::new("wire");
    h.in_host_ok(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "w0", "netns", &wire.name]);
    h.in_host_ok(&["ip", "link", "set", "up0", "up"]);
    if !kernel_has_vlans() {
        // Without 802.1Q in the kernel the sub-interface cannot exist: wharf must say so in
        // one line and leave nothing behind.
        let before = h.snapshot();
        let err = h.wharf_err(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            "10.82.0.0/24",
            "-o",
            "parent=up0.42",
            "tagged",
        ]);
        assert!(err.contains("up0.42") && err.lines().count() == 1, "{err}");
        wharf_tests::assert_same_snapshot(&before, &h.snapshot());
        eprintln!("note: this kernel has no 802.1Q support; tagged frames were not checked");
        return;
    }
    for cmd in [
        &["ip", "link", "set", "w0", "up"][..],
        &["ip", "link", "add", "link", "w0", "name", "w0.42", "type", "vlan", "id", "42"][..],
        &["ip", "addr", "add", "10.82.0.100/24", "dev", "w0.42"][..],
        &["ip", "link", "set", "w0.42", "up"][..],
    ] {
        let out = wire.exec(cmd);
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.82.0.0/24", "-o", "parent=up0.42", "tagged"]);
    let vlan = h.in_host_ok(&["ip", "-d", "link", "show", "up0.42"]);
    assert!(vlan.contains("vlan protocol 802.1Q id 42"), "{vlan}");
    h.wharf_ok(&["sandbox", "create", "s"]);
    h.wharf_ok(&["network", "connect", "tagged", "s"]);
    assert!(h.ping("s", "10.82.0.100"), "the VLAN interface in the third namespace answers\n{}", h.log());
    h.wharf_ok(&["network", "disconnect", "tagged", "s"]);
    h.wharf_ok(&["network", "rm", "tagged"]);
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("up0.42") && links.contains("up0"), "only the sub-interface goes: {links}");
}

#[test]
fn conflicting_or_invalid_macvlan_networks_are_refused() {
    wharf_tests::require_root!();
    let h = Host::start();
    parent(&h, "par0");
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.83.0.0/24", "-o", "parent=par0", "first"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.84.0.0/24", "-o", "com.docker.network.bridge.name=brx", "br"]);
    let cases: &[(&[&str], &str)] = &[
        (&["--subnet", "10.83.0.0/25", "-o", "parent=par0"], "overlap"),
        (&["--subnet", "10.85.0.0/24", "-o", "parent=par0", "-o", "macvlan_mode=passthru"], "passthru"),
        (&["--subnet", "10.86.0.0/24", "-o", "parent=lo"], "loopback"),
        (&["--subnet", "10.87.0.0/24", "-o", "parent=brx"], "bridge"),
        (&["--subnet", "10.88.0.0/24", "-o", "parent=par0", "-o", "macvlan_mode=l3"], "macvlan_mode"),
        // Another driver's option; one no driver reads would be kept, with a warning.
        (&["--subnet", "10.89.0.0/24", "-o", "parent=par0", "-o", "com.docker.network.bridge.name=x"], "bridge.name"),
    ];
    for (args, why) in cases {
        let mut full = vec!["network", "create", "-d", "macvlan"];
        full.extend_from_slice(args);
        full.push("bad");
        let err = h.wharf_err(&full);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    parent(&h, "par2");
    h.wharf_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.90.0.0/24",
        "-o",
        "parent=par2",
        "-o",
        "macvlan_mode=passthru",
        "pt",
    ]);
    let err =
        h.wharf_err(&["network", "create", "-d", "macvlan", "--subnet", "10.91.0.0/24", "-o", "parent=par2", "pt2"]);
    assert!(err.contains("passthru"), "{err}");
}

#[test]
fn a_macvlan_network_lies_on_its_parents_own_lan() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    // The LAN: the parent's peer end is a router at 198.51.100.1 in a namespace of its own,
    // and the host has its own address on the parent, so the LAN is on the host's routes.
    let lan = Netns::new("wplan");
    h.in_host_ok(&["ip", "link", "add", "wpeth0", "type", "veth", "peer", "name", "wpgw", "netns", &lan.name]);
    h.in_host_ok(&["ip", "addr", "add", "198.51.100.2/24", "dev", "wpeth0"]);
    h.in_host_ok(&["ip", "link", "set", "wpeth0", "up"]);
    assert!(lan.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "wpgw"]).status.success());
    assert!(lan.exec(&["ip", "link", "set", "wpgw", "up"]).status.success());
    h.docker_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "198.51.100.0/24",
        "--gateway",
        "198.51.100.1",
        "--aux-address",
        "host=198.51.100.2",
        "-o",
        "parent=wpeth0",
        "lan",
    ]);
    h.wharf_ok(&["sandbox", "create", "m"]);
    h.wharf_ok(&["network", "connect", "lan", "m"]);
    let ip = h.sandbox_ip("m", "lan");
    assert!(ip.starts_with("198.51.100.") && ip != "198.51.100.2", "{ip}");
    assert!(h.ping("m", "198.51.100.1"), "the sandbox reaches the LAN's router\n{}", h.log());
    let route = String::from_utf8_lossy(&h.in_sandbox("m", &["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(route.contains("via 198.51.100.1"), "{route}");
}
