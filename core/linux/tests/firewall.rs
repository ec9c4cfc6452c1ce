//! The nftables firewall against real traffic. Root only. Every test builds its own network
//! namespaces ("host", sandboxes, "upstream"), runs the firewall inside its private host
//! namespace and removes everything when it ends, even on a panic.

mod lab;

use lab::*;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wharf_linux::firewall::nftables::Nftables;
use wharf_linux::firewall::{Firewall, HostPort, Policy, PortState};
use wharf_sdk::{FirewallFact, GatewayMode, Protocol};

#[test]
fn masquerade_isolation_and_internal_networks() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab_servers = Lab::new();
    lab_servers.serve_tcp(&t.u, 7000, "U");

    assert!(!ping(&t.a, "192.0.2.2"), "without masquerade upstream cannot answer");
    let n0 = nat("br-test0", &["10.77.0.0/24"]);
    let n1 = nat("br-test1", &["10.78.0.0/24"]);
    fw.add(&n0).unwrap();
    fw.add(&n0).unwrap();
    fw.add(&n1).unwrap();
    assert!(ping(&t.a, "192.0.2.2"), "masquerade gives A egress");
    assert_eq!(tcp(&t.a, "192.0.2.2:7000").as_deref(), Some("U 192.0.2.1"));
    assert!(ping(&t.c, "192.0.2.2"));
    assert!(ping(&t.a, "10.77.0.3"), "ICC is on");
    assert!(!ping(&t.a, "10.78.0.2"), "networks are isolated from each other");
    assert!(!ping(&t.c, "10.77.0.2"), "networks are isolated from each other");

    fw.remove(&n0).unwrap();
    fw.remove(&n0).unwrap();
    let internal = network("br-test0", &["10.77.0.0/24"], true, true, GatewayMode::Nat);
    fw.add(&internal).unwrap();
    assert!(!ping(&t.a, "192.0.2.2"), "an internal network has no egress");
    assert!(tcp(&t.a, "192.0.2.2:7000").is_none());
    assert!(ping(&t.a, "10.77.0.3"), "inside an internal network traffic flows");
    assert!(!ping(&t.c, "10.77.0.2"));
    assert!(ping(&t.a, "10.77.0.1"), "the gateway answers");
    assert!(ping(&t.c, "192.0.2.2"), "the other network is unaffected");
    drop(fw);
    drop(lab_servers);
}

#[test]
fn a_firewall_idle_long_enough_to_give_back_its_context_still_applies_and_removes() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let n0 = nat("br-test0", &["10.77.0.0/24"]);
    fw.add(&n0).unwrap();
    assert!(ping(&t.a, "192.0.2.2"), "masquerade gives A egress");
    // Longer than the worker keeps libnftables' context with no job (2 s): the next
    // commands run on a context opened again, in the firewall's namespace.
    std::thread::sleep(Duration::from_millis(2500));
    fw.remove(&n0).unwrap();
    assert!(!ping(&t.a, "192.0.2.2"), "the fact is gone after the context was opened again");
    std::thread::sleep(Duration::from_millis(2500));
    fw.add(&n0).unwrap();
    assert!(ping(&t.a, "192.0.2.2"), "and added again");
    drop(fw);
}

#[test]
fn icc_off_blocks_traffic_between_endpoints_of_one_bridge() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let no_icc = network("br-test0", &["10.77.0.0/24", "fd77::/64"], false, false, GatewayMode::Nat);
    fw.add(&no_icc).unwrap();
    assert!(!ping(&t.a, "10.77.0.3"), "ICC off");
    assert!(!ping(&t.a, "fd77::3"), "ICC off over IPv6");
    assert!(ping(&t.a, "10.77.0.1"), "the gateway still answers");
    assert!(ping(&t.a, "192.0.2.2"), "egress still works");
    for key in ["net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0"] {
        if Path::new("/proc/sys/net/bridge").exists() {
            ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", key]);
        }
    }
    assert!(!ping(&t.a, "10.77.0.3"), "ICC off (bridge family only)");
    assert!(!ping(&t.b, "fd77::2"), "ICC off over IPv6 (bridge family only)");
    assert!(ping(&t.b, "10.77.0.1"));
    fw.remove(&no_icc).unwrap();
    fw.add(&nat("br-test0", &["10.77.0.0/24", "fd77::/64"])).unwrap();
    assert!(ping(&t.a, "10.77.0.3"), "ICC back on");
    assert!(ping(&t.a, "fd77::3"));
}

#[test]
fn gateway_modes_decide_inbound_routing_and_masquerade() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    lab.serve_tcp(&t.u, 7000, "U");
    ok(&["ip", "-n", &t.u, "route", "add", "10.77.0.0/24", "via", "192.0.2.1"]);

    let nat_net = nat("br-test0", &["10.77.0.0/24"]);
    fw.add(&nat_net).unwrap();
    assert_eq!(tcp(&t.a, "192.0.2.2:7000").as_deref(), Some("U 192.0.2.1"));
    assert!(tcp(&t.u, "10.77.0.2:80").is_none(), "no direct routing into a nat network");
    assert!(!ping(&t.u, "10.77.0.2"));

    fw.remove(&nat_net).unwrap();
    let routed = network("br-test0", &["10.77.0.0/24"], true, false, GatewayMode::Routed);
    fw.add(&routed).unwrap();
    assert!(tcp(&t.u, "10.77.0.2:80").is_none(), "routed: only published ports are reachable");
    assert!(ping(&t.u, "10.77.0.2"), "routed: ICMP is");
    assert_eq!(tcp(&t.a, "192.0.2.2:7000").as_deref(), Some("U 10.77.0.2"), "routed: no masquerade");
    fw.add(&port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)).unwrap();
    assert_eq!(tcp(&t.u, "10.77.0.2:80").as_deref(), Some("A 192.0.2.2"), "routed: published, source kept");
    fw.remove(&port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)).unwrap();

    fw.remove(&routed).unwrap();
    let isolated = network("br-test0", &["10.77.0.0/24"], true, false, GatewayMode::Isolated);
    fw.add(&isolated).unwrap();
    assert!(tcp(&t.a, "192.0.2.2:7000").is_none(), "isolated: no egress");
    assert!(tcp(&t.u, "10.77.0.2:80").is_none(), "isolated: no ingress");
    assert!(ping(&t.a, "10.77.0.3"), "isolated: the bridge itself works");
}

#[test]
fn published_ports_from_outside_the_host_and_a_hairpin() {
    require_root!();
    let t = topology();
    // Made the way the brief describes: a thread that entered the namespace creates it;
    // afterwards it is used from this thread, which is still in the test's own namespace.
    let h = t.h.clone();
    let fw = in_ns(&h, || Nftables::new().expect("firewall"));
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    lab.serve_tcp(&t.b, 80, "B");
    // What the bridge driver does for published ports: loopback may be DNATed onto the bridge,
    // and with br_netfilter a DNATed frame goes back out of the port it came in on only in
    // hairpin mode (a sandbox reaching its own published port).
    ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", "net.ipv4.conf.br-test0.route_localnet=1"]);
    for veth in ["va", "vb"] {
        ok(&["ip", "-n", &t.h, "link", "set", veth, "type", "bridge_slave", "hairpin", "on"]);
    }

    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&nat("br-test1", &["10.78.0.0/24"])).unwrap();
    assert!(tcp(&t.u, "192.0.2.1:8080").is_none(), "nothing published yet");
    let web = port(Protocol::Tcp, None, 8080, "10.77.0.2", 80);
    fw.add(&web).unwrap();
    fw.add(&web).unwrap();
    let only_upstream = port(Protocol::Tcp, Some("192.0.2.1"), 8081, "10.77.0.3", 80);
    let only_local = port(Protocol::Tcp, Some("127.0.0.1"), 8082, "10.77.0.3", 80);
    fw.add(&only_upstream).unwrap();
    fw.add(&only_local).unwrap();

    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"), "from upstream, source kept");
    assert_eq!(tcp(&t.h, "127.0.0.1:8080").as_deref(), Some("A 10.77.0.1"), "from the host's loopback");
    assert_eq!(tcp(&t.h, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"), "from the host");
    assert_eq!(tcp(&t.a, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"), "hairpin to itself");
    assert_eq!(tcp(&t.b, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"), "hairpin from the same network");
    assert_eq!(tcp(&t.c, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"), "from another network");
    assert_eq!(tcp(&t.u, "192.0.2.1:8081").as_deref(), Some("B 192.0.2.2"));
    assert!(tcp(&t.h, "127.0.0.1:8081").is_none(), "bound to 192.0.2.1 only");
    assert_eq!(tcp(&t.h, "127.0.0.1:8082").as_deref(), Some("B 10.77.0.1"));
    assert!(tcp(&t.u, "192.0.2.1:8082").is_none(), "bound to 127.0.0.1 only");

    // Re-pointing a host port replaces the mapping.
    fw.add(&port(Protocol::Tcp, None, 8080, "10.77.0.3", 80)).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("B 192.0.2.2"));
    // Removing the old fact leaves the new mapping alone; removing the new one ends it.
    fw.remove(&web).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("B 192.0.2.2"));
    fw.remove(&port(Protocol::Tcp, None, 8080, "10.77.0.3", 80)).unwrap();
    fw.remove(&port(Protocol::Tcp, None, 8080, "10.77.0.3", 80)).unwrap();
    assert!(tcp(&t.u, "192.0.2.1:8080").is_none(), "unpublished");
    assert!(tcp(&t.a, "192.0.2.1:8080").is_none(), "unpublished");

    // A reload re-creates the tables holding exactly the facts given.
    let facts = [nat("br-test0", &["10.77.0.0/24"]), nat("br-test1", &["10.78.0.0/24"]), web.clone(), only_upstream];
    fw.reload(&facts).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"));
    assert_eq!(tcp(&t.u, "192.0.2.1:8081").as_deref(), Some("B 192.0.2.2"));
    assert!(tcp(&t.h, "127.0.0.1:8082").is_none(), "not among the reloaded facts");
    fw.reload(&facts).unwrap();
    assert_eq!(tcp(&t.a, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"));

    let tables = t.nft(&["list", "tables"]);
    let mut names: Vec<&str> = tables.lines().collect();
    names.sort();
    assert_eq!(names, ["table bridge wharf", "table inet wharf"], "{tables}");
    let listed = fw.list().unwrap();
    assert!(listed.contains("tcp . 8080 : 10.77.0.2 . 80"), "{listed}");
    println!("{}", t.nft(&["list", "ruleset"]));
}

#[test]
fn ipv6_published_port_and_masquerade() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    lab.serve_tcp(&t.u, 7000, "U");
    fw.add(&nat("br-test0", &["10.77.0.0/24", "fd77::/64"])).unwrap();
    fw.add(&port(Protocol::Tcp, None, 8080, "fd77::2", 80)).unwrap();
    fw.add(&port(Protocol::Tcp, Some("fd02::1"), 8081, "fd77::3", 80)).unwrap();
    lab.serve_tcp(&t.b, 80, "B");
    assert_eq!(tcp(&t.a, "[fd02::2]:7000").as_deref(), Some("U fd02::1"), "IPv6 masquerade");
    assert_eq!(tcp(&t.u, "[fd02::1]:8080").as_deref(), Some("A fd02::2"));
    assert_eq!(tcp(&t.u, "[fd02::1]:8081").as_deref(), Some("B fd02::2"));
    assert_eq!(tcp(&t.b, "[fd02::1]:8080").as_deref(), Some("A fd77::1"), "IPv6 hairpin");
    assert!(tcp(&t.u, "192.0.2.1:8080").is_none(), "an IPv6 mapping does not publish on IPv4");
}

#[test]
fn udp_mappings_take_effect_for_a_flow_that_already_exists() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_udp(&t.a, 53, "A");
    lab.serve_udp(&t.b, 53, "B");
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    // One client socket, so every datagram belongs to the same conntrack flow.
    let sock = in_ns(&t.u, || {
        let s = UdpSocket::bind("192.0.2.2:40000").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        s
    });
    assert_eq!(udp_ask(&sock, "192.0.2.1:5353"), None, "nothing published: the flow is tracked untranslated");
    let to_a = port(Protocol::Udp, None, 5353, "10.77.0.2", 53);
    fw.add(&to_a).unwrap();
    assert_eq!(udp_ask(&sock, "192.0.2.1:5353").as_deref(), Some("A 192.0.2.2"));
    fw.remove(&to_a).unwrap();
    let to_b = port(Protocol::Udp, None, 5353, "10.77.0.3", 53);
    fw.add(&to_b).unwrap();
    assert_eq!(udp_ask(&sock, "192.0.2.1:5353").as_deref(), Some("B 192.0.2.2"));
    let left = ok(&["ip", "netns", "exec", &t.h, "conntrack", "-L", "-p", "udp", "--orig-port-dst", "5353"]);
    assert!(left.contains("dst=10.77.0.3") || left.contains("10.77.0.3"), "{left}");
    fw.remove(&to_b).unwrap();
    let left = run(&["ip", "netns", "exec", &t.h, "conntrack", "-L", "-p", "udp", "--orig-port-dst", "5353"]);
    assert_eq!(String::from_utf8_lossy(&left.stdout).trim(), "", "flushed on remove");
}

#[test]
fn remove_of_an_absent_fact_and_reload_of_nothing_succeed() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    fw.remove(&port(Protocol::Sctp, Some("192.0.2.1"), 9, "10.77.0.2", 9)).unwrap();
    fw.remove(&network("br-test0", &["10.77.0.0/24", "fd77::/64"], false, true, GatewayMode::Nat)).unwrap();
    fw.reload(&[]).unwrap();
    let listed = fw.list().unwrap();
    assert!(listed.contains("chain forward") && !listed.contains("elements"), "{listed}");
    let bad = FirewallFact::Network {
        bridge: "br\"; flush ruleset".into(),
        subnets: vec![],
        masquerade: true,
        icc: true,
        internal: false,
        gateway_mode_v4: GatewayMode::Nat,
        gateway_mode_v6: GatewayMode::Nat,
        snat_v4: None,
        trusted: vec![],
    };
    assert!(fw.add(&bad).is_err());
    // A second instance in the same namespace keeps what the first one added.
    fw.add(&port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)).unwrap();
    drop(fw);
    let again = t.firewall();
    assert!(again.list().unwrap().contains("tcp . 8080 : 10.77.0.2 . 80"));
}

#[test]
fn a_port_published_on_loopback_is_reachable_from_the_host_only() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.b, 80, "B");
    ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", "net.ipv4.conf.br-test0.route_localnet=1"]);
    ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", "net.ipv4.conf.br-test1.route_localnet=1"]);
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&nat("br-test1", &["10.78.0.0/24"])).unwrap();
    fw.add(&port(Protocol::Tcp, Some("127.0.0.1"), 8082, "10.77.0.3", 80)).unwrap();
    assert_eq!(tcp(&t.h, "127.0.0.1:8082").as_deref(), Some("B 10.77.0.1"), "from the host itself");

    let arrived = |seen: &[String]| seen.iter().any(|l| l.contains("> 10.77.0.3:80 "));
    // A neighbour on the host's link sends a SYN for 127.0.0.1:8082 to the host's MAC.
    let from_lan = Crafted {
        from: (&t.u, "eth0"),
        to_mac: mac(&t.h, "up0"),
        src: "192.0.2.2",
        dst: "127.0.0.1",
        sport: 40001,
        dport: 8082,
        flags: "S",
    };
    let seen = from_lan.send_watching((&t.b, "eth0"), 80);
    assert!(!arrived(&seen), "a SYN for 127.0.0.1 from the LAN reached the sandbox: {seen:?}");
    // Sandboxes of the same and of another network send it to their gateway's MAC.
    for (ns, bridge, src) in [(&t.a, "br-test0", "10.77.0.2"), (&t.c, "br-test1", "10.78.0.2")] {
        let from_sandbox = Crafted {
            from: (ns, "eth0"),
            to_mac: mac(&t.h, bridge),
            src,
            dst: "127.0.0.1",
            sport: 40002,
            dport: 8082,
            flags: "S",
        };
        let seen = from_sandbox.send_watching((&t.b, "eth0"), 80);
        assert!(!arrived(&seen), "a SYN for 127.0.0.1 from {src} reached the sandbox: {seen:?}");
    }
    // With the prerouting chain of earlier versions (DNAT whatever the input interface),
    // the same SYN gets through: the probe is real.
    t.nft(&["flush", "chain", "inet", "wharf", "prerouting"]);
    t.nft(&["add", "rule", "inet", "wharf", "prerouting", "fib", "daddr", "type", "local", "jump", "published"]);
    let seen = from_lan.send_watching((&t.b, "eth0"), 80);
    assert!(arrived(&seen), "the probe itself does not work: {seen:?}");
}

#[test]
fn sandboxes_do_not_reach_what_the_host_binds_to_loopback() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp_at(&t.h, "127.0.0.1:9999".parse().unwrap(), "H");
    // What the bridge driver does so that ports published on 127.0.0.1 work.
    ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", "net.ipv4.conf.br-test0.route_localnet=1"]);
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    let syn = Crafted {
        from: (&t.a, "eth0"),
        to_mac: mac(&t.h, "br-test0"),
        src: "10.77.0.2",
        dst: "127.0.0.1",
        sport: 40003,
        dport: 9999,
        flags: "S",
    };
    let answered = |seen: &[String]| seen.iter().any(|l| l.starts_with("127.0.0.1:9999 >"));
    let seen = syn.send_watching((&t.a, "eth0"), 9999);
    assert!(!answered(&seen), "the host's loopback-only service answered a sandbox: {seen:?}");
    // Without wharf's guard the same packet gets an answer: the probe is real.
    t.nft(&["flush", "chain", "inet", "wharf", "raw"]);
    let seen = syn.send_watching((&t.a, "eth0"), 9999);
    assert!(answered(&seen), "the probe itself does not work: {seen:?}");
}

#[test]
fn unpublished_ports_are_closed_to_other_interfaces_in_nat_and_routed_modes() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A80");
    lab.serve_tcp(&t.a, 81, "A81");
    lab.serve_tcp(&t.u, 7000, "U");
    ok(&["ip", "-n", &t.u, "route", "add", "10.77.0.0/24", "via", "192.0.2.1"]);
    let published = port(Protocol::Tcp, None, 8080, "10.77.0.2", 80);
    fw.add(&published).unwrap();
    // A crafted ACK with data for an unpublished port: conntrack picks it up mid-stream as
    // an established connection, which must not be a way in.
    let ack = Crafted {
        from: (&t.u, "eth0"),
        to_mac: mac(&t.h, "up0"),
        src: "192.0.2.2",
        dst: "10.77.0.2",
        sport: 40004,
        dport: 81,
        flags: "A",
    };
    let reached = |seen: &[String]| seen.iter().any(|l| l.contains("> 10.77.0.2:81 "));

    for mode in [GatewayMode::Nat, GatewayMode::Routed] {
        let net = network_fact("br-test0", &["10.77.0.0/24"], mode, &[]);
        fw.add(&net).unwrap();
        assert_eq!(tcp(&t.u, "10.77.0.2:80").as_deref(), Some("A80 192.0.2.2"), "{mode:?}: a published port");
        assert!(tcp(&t.u, "10.77.0.2:81").is_none(), "{mode:?}: an unpublished port");
        let seen = ack.send_watching((&t.a, "eth0"), 81);
        assert!(!reached(&seen), "{mode:?}: a crafted ACK reached the sandbox: {seen:?}");
        assert_eq!(ping(&t.u, "10.77.0.2"), mode == GatewayMode::Routed, "{mode:?}: ICMP only in routed mode");
        assert!(tcp(&t.a, "192.0.2.2:7000").is_some(), "{mode:?}: egress");
        fw.remove(&net).unwrap();
    }

    let unprotected = network_fact("br-test0", &["10.77.0.0/24"], GatewayMode::NatUnprotected, &[]);
    fw.add(&unprotected).unwrap();
    assert_eq!(tcp(&t.u, "10.77.0.2:81").as_deref(), Some("A81 192.0.2.2"), "nat-unprotected: every port");
    assert_eq!(tcp(&t.a, "192.0.2.2:7000").as_deref(), Some("U 192.0.2.1"), "nat-unprotected: masqueraded");
    let seen = ack.send_watching((&t.a, "eth0"), 81);
    assert!(reached(&seen), "the probe itself does not work: {seen:?}");
    fw.remove(&unprotected).unwrap();

    let trusting = network_fact("br-test0", &["10.77.0.0/24"], GatewayMode::Nat, &["up0"]);
    fw.add(&trusting).unwrap();
    assert_eq!(tcp(&t.u, "10.77.0.2:81").as_deref(), Some("A81 192.0.2.2"), "from a trusted interface");
    assert!(tcp(&t.c, "10.77.0.2:81").is_none(), "another network is not a trusted interface");
    fw.remove(&trusting).unwrap();

    // Unpublishing closes the direct way in as well.
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.remove(&published).unwrap();
    assert!(tcp(&t.u, "10.77.0.2:80").is_none(), "unpublished");
}

#[test]
fn a_host_port_a_host_process_uses_is_refused_and_a_published_one_is_held() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    let listener = in_ns(&t.h, || TcpListener::bind("0.0.0.0:8090").unwrap());
    let taken = port(Protocol::Tcp, None, 8090, "10.77.0.2", 80);
    let err = fw.add(&taken).unwrap_err().to_string();
    assert!(err.contains("0.0.0.0:8090/tcp") && err.contains("address already in use"), "{err}");
    assert!(!t.nft(&["list", "map", "inet", "wharf", "dnat4"]).contains("8090"), "nothing was published");
    let hp = |proto, ip: &str, port| HostPort { protocol: proto, ip: ip.parse().unwrap(), port };
    assert_eq!(fw.port_state(&hp(Protocol::Tcp, "0.0.0.0", 8090)).unwrap(), PortState::InUse);
    assert_eq!(fw.port_state(&hp(Protocol::Tcp, "192.0.2.1", 8090)).unwrap(), PortState::InUse);
    assert_eq!(fw.port_state(&hp(Protocol::Tcp, "192.0.2.1", 8091)).unwrap(), PortState::Free);
    assert_eq!(fw.port_state(&hp(Protocol::Tcp, "203.0.113.9", 8091)).unwrap(), PortState::NotLocal);
    drop(listener);

    let held = port(Protocol::Tcp, None, 8091, "10.77.0.2", 80);
    fw.add(&held).unwrap();
    assert!(in_ns(&t.h, || TcpListener::bind("0.0.0.0:8091").is_err()), "wharf holds a published port");
    assert_eq!(fw.port_state(&hp(Protocol::Tcp, "0.0.0.0", 8091)).unwrap(), PortState::InUse);
    let udp = port(Protocol::Udp, Some("192.0.2.1"), 8091, "10.77.0.2", 53);
    fw.add(&udp).unwrap();
    assert!(in_ns(&t.h, || UdpSocket::bind("192.0.2.1:8091").is_err()), "and a UDP one");
    fw.remove(&held).unwrap();
    fw.remove(&udp).unwrap();
    assert!(in_ns(&t.h, || TcpListener::bind("0.0.0.0:8091").is_ok()), "released when unpublished");
    assert!(in_ns(&t.h, || UdpSocket::bind("192.0.2.1:8091").is_ok()), "released when unpublished");
}

#[test]
fn the_firewall_restores_itself_when_someone_flushes_the_ruleset() {
    require_root!();
    let t = topology();
    let fw = t.firewall();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    lab.serve_tcp(&t.b, 80, "B");
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"));

    // Someone flushes the whole ruleset; wharf notices without being called.
    t.nft(&["flush", "ruleset"]);
    let start = Instant::now();
    let mut back = None;
    while start.elapsed() < Duration::from_secs(5) {
        back = tcp(&t.u, "192.0.2.1:8080");
        if back.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(back.as_deref(), Some("A 192.0.2.2"), "restored within {:?}", start.elapsed());
    println!("restored after {:?}", start.elapsed());

    // Deleted again, the next change finds out at once and restores everything with it.
    t.nft(&["delete", "table", "inet", "wharf"]);
    fw.add(&port(Protocol::Tcp, None, 8081, "10.77.0.3", 80)).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8081").as_deref(), Some("B 192.0.2.2"));
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"));
    assert!(ping(&t.a, "192.0.2.2"), "masquerade is back too");
}

#[test]
fn published_ports_can_be_left_to_the_hosts_own_input_policy() {
    require_root!();
    let t = topology();
    let policy = Policy { respect_input: Some(0x100), ..Default::default() };
    let fw = Nftables::with_policy(Some(&netns_path(&t.h)), policy).unwrap();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    ok(&["ip", "netns", "exec", &t.h, "sysctl", "-qw", "net.ipv4.conf.br-test0.route_localnet=1"]);
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)).unwrap();
    assert!(tcp(&t.u, "192.0.2.1:8080").is_none(), "from outside: unmarked, so not let in");
    assert_eq!(tcp(&t.h, "127.0.0.1:8080").as_deref(), Some("A 10.77.0.1"), "from the host itself");
    assert_eq!(tcp(&t.b, "192.0.2.1:8080").as_deref(), Some("A 10.77.0.1"), "from a sandbox");
    // The operator's own firewall lets port 8080 in, in a table of its own.
    let rules = "table inet host {\n chain pre {\n  type filter hook prerouting priority mangle;\n  \
                 tcp dport 8080 meta mark set meta mark or 0x100\n }\n}\n";
    let mut nft =
        Command::new("ip").args(["netns", "exec", &t.h, "nft", "-f", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    nft.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success());
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"), "marked by the host's firewall");
}

#[test]
fn a_second_daemon_never_takes_over_the_tables_of_another() {
    require_root!();
    let t = topology();
    let mut lab = Lab::new();
    lab.serve_tcp(&t.a, 80, "A");
    let owned =
        |table: &str, owner: &str| Policy { table: table.into(), owner: Some(owner.into()), respect_input: None };
    let first = Nftables::with_policy(Some(&netns_path(&t.h)), owned("wharf", "wharf:first")).unwrap();
    first.reload(&[nat("br-test0", &["10.77.0.0/24"]), port(Protocol::Tcp, None, 8080, "10.77.0.2", 80)]).unwrap();
    assert!(t.nft(&["list", "table", "inet", "wharf"]).contains("comment \"wharf:first\""));

    let err = Nftables::with_policy(Some(&netns_path(&t.h)), owned("wharf", "wharf:second")).err().unwrap();
    assert!(err.to_string().contains("belongs to another wharfd (wharf:first)"), "{err}");
    let second = Nftables::with_policy(Some(&netns_path(&t.h)), owned("wharf2", "wharf:second")).unwrap();
    second.reload(&[nat("br-test1", &["10.78.0.0/24"])]).unwrap();
    assert_eq!(tcp(&t.u, "192.0.2.1:8080").as_deref(), Some("A 192.0.2.2"), "the first one's port is untouched");
    assert!(ping(&t.c, "192.0.2.2"), "the second one's network has egress");
    drop(second);
    assert!(t.nft(&["list", "table", "inet", "wharf"]).contains("tcp . 8080"), "{}", t.nft(&["list", "ruleset"]));
}
