//! The nftables firewall against real traffic. Root only. Every test builds its own network
//! namespaces ("host", sandboxes, "upstream"), runs the firewall inside its private host
//! namespace and removes everything when it ends, even on a panic.

use nix::sched::{setns, CloneFlags};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wharf_linux::firewall::nftables::Nftables;
use wharf_linux::firewall::{Firewall, HostPort, Policy, PortState};
use wharf_sdk::{FirewallFact, GatewayMode, Protocol};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Run `f` on a fresh thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = netns_path(ns);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Private namespaces and the servers running in them; all removed on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Lab {
    fn new() -> Lab {
        let prefix = format!("wharf-fw-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        Lab { prefix, namespaces: Vec::new(), stop: Arc::new(AtomicBool::new(false)), servers: Vec::new() }
    }

    /// A new namespace with loopback up; returns its name.
    fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        ok(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Run `serve` on a new thread inside `ns` until the lab ends. `serve` binds its socket,
    /// then returns the loop body; this returns once the socket is bound.
    fn spawn_server<F, B>(&mut self, ns: &str, serve: F)
    where
        F: FnOnce() -> B + Send + 'static,
        B: FnMut(),
    {
        let stop = self.stop.clone();
        let path = netns_path(ns);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.servers.push(std::thread::spawn(move || {
            setns(std::fs::File::open(&path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
            let mut body = serve();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                body();
            }
        }));
        ready_rx.recv().unwrap();
    }

    /// A TCP server in `ns` on `port` (both families) that answers each connection with
    /// `"<tag> <peer address>"` and closes it.
    fn serve_tcp(&mut self, ns: &str, port: u16, tag: &str) {
        self.serve_tcp_at(ns, SocketAddr::from(([0u16; 8], port)), tag);
    }

    /// Like [`Lab::serve_tcp`], bound to `at` only.
    fn serve_tcp_at(&mut self, ns: &str, at: SocketAddr, tag: &str) {
        let tag = tag.to_string();
        self.spawn_server(ns, move || {
            let listener = TcpListener::bind(at).unwrap();
            listener.set_nonblocking(true).unwrap();
            move || match listener.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = writeln!(s, "{tag} {}", peer.ip().to_canonical());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
    }

    /// A UDP server in `ns` on `port` that answers each datagram with `"<tag> <peer address>"`.
    fn serve_udp(&mut self, ns: &str, port: u16, tag: &str) {
        let tag = tag.to_string();
        self.spawn_server(ns, move || {
            let sock = UdpSocket::bind(("::", port)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 64];
            move || {
                if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(format!("{tag} {}", peer.ip().to_canonical()).as_bytes(), peer);
                }
            }
        });
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.servers.drain(..) {
            let _ = s.join();
        }
        for ns in self.namespaces.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
    }
}

/// Connect from `ns` to `to` and read the answer; `None` when no connection is made in time.
fn tcp(ns: &str, to: &str) -> Option<String> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(2500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer.trim().to_string())
    })
}

/// Whether `ns` gets an answer to a ping of `addr`.
fn ping(ns: &str, addr: &str) -> bool {
    run(&["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", addr]).status.success()
}

/// The standard topology: a host namespace with bridge `br-test0` (10.77.0.1/24, fd77::1/64)
/// holding sandboxes A (.2) and B (.3), bridge `br-test1` (10.78.0.1/24) holding sandbox C (.2),
/// and an upstream namespace U on veth `up0` (host 192.0.2.1/24, U 192.0.2.2, fd02::1/fd02::2)
/// with no route back to the bridges' subnets.
struct Topo {
    _lab: Lab,
    h: String,
    a: String,
    b: String,
    c: String,
    u: String,
}

/// A sandbox namespace on `bridge` through veth `port`, with `v4` (gateway: .1 of its subnet)
/// and, optionally, `v6` (gateway fd77::1).
fn sandbox(lab: &mut Lab, h: &str, role: &str, bridge: &str, port: &str, v4: &str, v6: Option<&str>) -> String {
    let ns = lab.ns(role);
    let host = v4.split('/').next().unwrap();
    let gw4 = format!("{}.1", &host[..host.rfind('.').unwrap()]);
    ok(&["ip", "-n", h, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
    ok(&["ip", "-n", h, "link", "set", port, "master", bridge, "up"]);
    ok(&["ip", "-n", &ns, "addr", "add", v4, "dev", "eth0"]);
    if let Some(v6) = v6 {
        ok(&["ip", "-n", &ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
    }
    ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
    ok(&["ip", "-n", &ns, "route", "add", "default", "via", &gw4]);
    if v6.is_some() {
        ok(&["ip", "-n", &ns, "-6", "route", "add", "default", "via", "fd77::1"]);
    }
    ns
}

fn topology() -> Topo {
    let mut lab = Lab::new();
    let h = lab.ns("h");
    for key in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
        ok(&["ip", "netns", "exec", &h, "sysctl", "-qw", key]);
    }
    for (br, v4, v6) in [("br-test0", "10.77.0.1/24", Some("fd77::1/64")), ("br-test1", "10.78.0.1/24", None)] {
        ok(&["ip", "-n", &h, "link", "add", br, "type", "bridge"]);
        ok(&["ip", "-n", &h, "addr", "add", v4, "dev", br]);
        if let Some(v6) = v6 {
            ok(&["ip", "-n", &h, "addr", "add", v6, "dev", br, "nodad"]);
        }
        ok(&["ip", "-n", &h, "link", "set", br, "up"]);
    }
    let a = sandbox(&mut lab, &h, "a", "br-test0", "va", "10.77.0.2/24", Some("fd77::2/64"));
    let b = sandbox(&mut lab, &h, "b", "br-test0", "vb", "10.77.0.3/24", Some("fd77::3/64"));
    let c = sandbox(&mut lab, &h, "c", "br-test1", "vc", "10.78.0.2/24", None);
    let u = lab.ns("u");
    ok(&["ip", "-n", &h, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &u]);
    ok(&["ip", "-n", &h, "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    ok(&["ip", "-n", &h, "addr", "add", "fd02::1/64", "dev", "up0", "nodad"]);
    ok(&["ip", "-n", &h, "link", "set", "up0", "up"]);
    ok(&["ip", "-n", &u, "addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    ok(&["ip", "-n", &u, "addr", "add", "fd02::2/64", "dev", "eth0", "nodad"]);
    ok(&["ip", "-n", &u, "link", "set", "eth0", "up"]);
    // Resolve neighbours up front, so the first packets of a check are not held up.
    for addr in ["10.77.0.2", "10.77.0.3", "fd77::2", "fd77::3", "10.78.0.2", "192.0.2.2", "fd02::2"] {
        ping(&h, addr);
    }
    Topo { _lab: lab, h, a, b, c, u }
}

impl Topo {
    fn firewall(&self) -> Nftables {
        Nftables::in_netns(&netns_path(&self.h)).expect("firewall in the host namespace")
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.h, "nft"];
        all.extend_from_slice(args);
        ok(&all)
    }
}

fn network(bridge: &str, subnets: &[&str], icc: bool, internal: bool, v4: GatewayMode) -> FirewallFact {
    network_with(bridge, subnets, icc, internal, v4, &[])
}

fn network_with(
    bridge: &str,
    subnets: &[&str],
    icc: bool,
    internal: bool,
    v4: GatewayMode,
    trusted: &[&str],
) -> FirewallFact {
    FirewallFact::Network {
        bridge: bridge.into(),
        subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
        masquerade: true,
        icc,
        internal,
        gateway_mode_v4: v4,
        gateway_mode_v6: GatewayMode::Nat,
        snat_v4: None,
        trusted: trusted.iter().map(|s| s.to_string()).collect(),
    }
}

fn nat(bridge: &str, subnets: &[&str]) -> FirewallFact {
    network(bridge, subnets, true, false, GatewayMode::Nat)
}

fn port(protocol: Protocol, host_ip: Option<&str>, host_port: u16, address: &str, port: u16) -> FirewallFact {
    FirewallFact::Port {
        protocol,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
        host_port,
        address: address.parse().unwrap(),
        port,
        bridge: "br-test0".into(),
    }
}

#[test]
fn masquerade_isolation_and_internal_networks() {
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
fn icc_off_blocks_traffic_between_endpoints_of_one_bridge() {
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

/// Send `msg` from `sock` to `to` and wait briefly for an answer.
fn udp_ask(sock: &UdpSocket, to: &str) -> Option<String> {
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        sock.send_to(b"?", to).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

#[test]
fn udp_mappings_take_effect_for_a_flow_that_already_exists() {
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

/// Seconds per call of `f`: the best average over five batches of `n` calls, so that load
/// from tests running alongside does not count.
fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    (0..5)
        .map(|batch| {
            let start = Instant::now();
            for i in 0..n {
                f(batch * n + i);
            }
            start.elapsed().as_secs_f64() / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn a_change_costs_the_same_with_one_or_a_thousand_published_ports() {
    raise_fd_limit();
    let t = topology();
    let fw = t.firewall();
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&port(Protocol::Tcp, None, 10000, "10.77.0.2", 80)).unwrap();
    let probe = |i: u32| port(Protocol::Tcp, None, 30000 + (i % 50) as u16, "10.77.0.3", 80);
    let n = 50;
    // Warm up, then measure add and remove separately.
    for i in 0..20 {
        fw.add(&probe(i)).unwrap();
        fw.remove(&probe(i)).unwrap();
    }
    let add_1 = per_call(n, |i| fw.add(&probe(i)).unwrap());
    let remove_1 = per_call(n, |i| fw.remove(&probe(i)).unwrap());

    let mut facts = vec![nat("br-test0", &["10.77.0.0/24"])];
    for i in 0..1000u32 {
        facts.push(port(Protocol::Tcp, None, 10000 + i as u16, &format!("10.77.{}.{}", i / 250, 2 + i % 250), 80));
    }
    fw.reload(&facts).unwrap();
    let listed = fw.list().unwrap();
    assert!(listed.contains("tcp . 10999 : 10.77.3.251 . 80"), "1000 ports are present");
    for i in 0..20 {
        fw.add(&probe(i)).unwrap();
        fw.remove(&probe(i)).unwrap();
    }
    let add_1000 = per_call(n, |i| fw.add(&probe(i)).unwrap());
    let remove_1000 = per_call(n, |i| fw.remove(&probe(i)).unwrap());

    // For comparison: network facts, which use interval sets.
    let net = |i: u32| nat(&format!("brx{i}"), &[&format!("10.{}.{}.0/24", 100 + i / 256, i % 256)]);
    let net_1 = per_call(20, |i| {
        fw.add(&net(5000 + i)).unwrap();
        fw.remove(&net(5000 + i)).unwrap();
    }) / 2.0;
    facts.extend((0..1000).map(net));
    fw.reload(&facts).unwrap();
    let net_1000 = per_call(20, |i| {
        fw.add(&net(5000 + i)).unwrap();
        fw.remove(&net(5000 + i)).unwrap();
    }) / 2.0;

    let us = |s: f64| s * 1e6;
    println!(
        "per call: port add {:.0} µs / remove {:.0} µs with 1 port; add {:.0} µs / remove {:.0} µs with 1000 ports",
        us(add_1),
        us(remove_1),
        us(add_1000),
        us(remove_1000)
    );
    println!("per call: network add or remove {:.0} µs with 1 network; {:.0} µs with 1000", us(net_1), us(net_1000));
    let udp = |i: u32| port(Protocol::Udp, None, 30000 + (i % 50) as u16, "10.77.0.3", 53);
    let udp_add = per_call(5, |i| fw.add(&udp(i)).unwrap());
    let udp_remove = per_call(5, |i| fw.remove(&udp(i)).unwrap());
    println!("per call, UDP (with the conntrack flush): add {:.0} µs / remove {:.0} µs", us(udp_add), us(udp_remove));
    assert!(net_1000 < 3.0 * net_1, "network: {net_1} s with 1 network, {net_1000} s with 1000");
    assert!(add_1000 < 3.0 * add_1, "add: {add_1} s with 1 port, {add_1000} s with 1000");
    assert!(remove_1000 < 3.0 * remove_1, "remove: {remove_1} s with 1 port, {remove_1000} s with 1000");
}

#[test]
fn remove_of_an_absent_fact_and_reload_of_nothing_succeed() {
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

/// The crafted-packet tool (see its own documentation).
const PACKETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/packets.py");

/// The MAC address of `link` in namespace `ns`.
fn mac(ns: &str, link: &str) -> String {
    let out = ok(&["ip", "-n", ns, "-o", "link", "show", link]);
    let mut words = out.split_whitespace().skip_while(|w| *w != "link/ether");
    words.nth(1).unwrap_or_else(|| panic!("no MAC address for {link}: {out}")).to_string()
}

/// A crafted IPv4 TCP segment, sent as an Ethernet frame to a chosen MAC address.
struct Crafted<'a> {
    /// Namespace and interface it leaves from.
    from: (&'a str, &'a str),
    to_mac: String,
    src: &'a str,
    dst: &'a str,
    sport: u16,
    dport: u16,
    /// `S` (SYN) or `A` (ACK with data).
    flags: &'a str,
}

impl Crafted<'_> {
    /// Send it while capturing on interface `watch.1` of namespace `watch.0`; returns the TCP
    /// segments seen there with source or destination port `port`, as
    /// `SRC:SPORT > DST:DPORT FLAGS` lines.
    fn send_watching(&self, watch: (&str, &str), port: u16) -> Vec<String> {
        let port = port.to_string();
        let mut sniffer = Command::new("ip")
            .args(["netns", "exec", watch.0, "python3", PACKETS, "sniff", watch.1, "1.5", &port])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the packet sniffer");
        let mut out = BufReader::new(sniffer.stdout.take().unwrap());
        let mut ready = String::new();
        out.read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "the sniffer did not start");
        let (sport, dport) = (self.sport.to_string(), self.dport.to_string());
        let (ns, iface) = self.from;
        ok(&[
            "ip",
            "netns",
            "exec",
            ns,
            "python3",
            PACKETS,
            "send",
            iface,
            &self.to_mac,
            self.src,
            self.dst,
            &sport,
            &dport,
            self.flags,
        ]);
        let mut seen = String::new();
        out.read_to_string(&mut seen).unwrap();
        let _ = sniffer.wait();
        seen.lines().map(str::to_string).collect()
    }
}

/// Lift this process's open-files limit: every published port holds a socket.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

fn network_fact(bridge: &str, subnets: &[&str], v4: GatewayMode, trusted: &[&str]) -> FirewallFact {
    network_with(bridge, subnets, true, false, v4, trusted)
}

#[test]
fn a_port_published_on_loopback_is_reachable_from_the_host_only() {
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
