//! The lab the firewall tests run in: private namespaces for a "host", its sandboxes and an
//! "upstream", the firewall running inside the host namespace, and probes that send real
//! and crafted packets between them. Everything is removed when a lab is dropped.
//!
//! Each test binary uses part of it, so unused items are expected.
#![allow(dead_code)]

/// Return from the calling test, with one line saying why, unless it runs as root.
macro_rules! require_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (it makes network namespaces, links and nftables tables)");
            return;
        }
    };
}
pub(crate) use require_root;

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
use wharf_sdk::{FirewallFact, GatewayMode, Protocol};

pub static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn netns_path(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

/// Run `f` on a fresh thread inside namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
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
pub struct Lab {
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub stop: Arc<AtomicBool>,
    pub servers: Vec<JoinHandle<()>>,
}

impl Lab {
    pub fn new() -> Lab {
        let prefix = format!("wharf-fw-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        Lab { prefix, namespaces: Vec::new(), stop: Arc::new(AtomicBool::new(false)), servers: Vec::new() }
    }

    /// A new namespace with loopback up; returns its name.
    pub fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        ok(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Run `serve` on a new thread inside `ns` until the lab ends. `serve` binds its socket,
    /// then returns the loop body; this returns once the socket is bound.
    pub fn spawn_server<F, B>(&mut self, ns: &str, serve: F)
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
    pub fn serve_tcp(&mut self, ns: &str, port: u16, tag: &str) {
        self.serve_tcp_at(ns, SocketAddr::from(([0u16; 8], port)), tag);
    }

    /// Like [`Lab::serve_tcp`], bound to `at` only.
    pub fn serve_tcp_at(&mut self, ns: &str, at: SocketAddr, tag: &str) {
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
    pub fn serve_udp(&mut self, ns: &str, port: u16, tag: &str) {
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
pub fn tcp(ns: &str, to: &str) -> Option<String> {
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
pub fn ping(ns: &str, addr: &str) -> bool {
    run(&["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", addr]).status.success()
}

/// The standard topology: a host namespace with bridge `br-test0` (10.77.0.1/24, fd77::1/64)
/// holding sandboxes A (.2) and B (.3), bridge `br-test1` (10.78.0.1/24) holding sandbox C (.2),
/// and an upstream namespace U on veth `up0` (host 192.0.2.1/24, U 192.0.2.2, fd02::1/fd02::2)
/// with no route back to the bridges' subnets.
pub struct Topo {
    pub _lab: Lab,
    pub h: String,
    pub a: String,
    pub b: String,
    pub c: String,
    pub u: String,
}

/// A sandbox namespace on `bridge` through veth `port`, with `v4` (gateway: .1 of its subnet)
/// and, optionally, `v6` (gateway fd77::1).
pub fn sandbox(lab: &mut Lab, h: &str, role: &str, bridge: &str, port: &str, v4: &str, v6: Option<&str>) -> String {
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

pub fn topology() -> Topo {
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
    pub fn firewall(&self) -> Nftables {
        Nftables::in_netns(&netns_path(&self.h)).expect("firewall in the host namespace")
    }

    pub fn nft(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.h, "nft"];
        all.extend_from_slice(args);
        ok(&all)
    }
}

pub fn network(bridge: &str, subnets: &[&str], icc: bool, internal: bool, v4: GatewayMode) -> FirewallFact {
    network_with(bridge, subnets, icc, internal, v4, &[])
}

pub fn network_with(
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

pub fn nat(bridge: &str, subnets: &[&str]) -> FirewallFact {
    network(bridge, subnets, true, false, GatewayMode::Nat)
}

pub fn port(protocol: Protocol, host_ip: Option<&str>, host_port: u16, address: &str, port: u16) -> FirewallFact {
    FirewallFact::Port {
        protocol,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
        host_port,
        address: address.parse().unwrap(),
        port,
        bridge: "br-test0".into(),
    }
}

/// Send `msg` from `sock` to `to` and wait briefly for an answer.
pub fn udp_ask(sock: &UdpSocket, to: &str) -> Option<String> {
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        sock.send_to(b"?", to).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

/// Seconds per call of `f`: the best average over five batches of `n` calls, so that load
/// from tests running alongside does not count.
pub fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
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

/// The crafted-packet tool (see its own documentation).
pub const PACKETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/packets.py");

/// The MAC address of `link` in namespace `ns`.
pub fn mac(ns: &str, link: &str) -> String {
    let out = ok(&["ip", "-n", ns, "-o", "link", "show", link]);
    let mut words = out.split_whitespace().skip_while(|w| *w != "link/ether");
    words.nth(1).unwrap_or_else(|| panic!("no MAC address for {link}: {out}")).to_string()
}

/// A crafted IPv4 TCP segment, sent as an Ethernet frame to a chosen MAC address.
pub struct Crafted<'a> {
    /// Namespace and interface it leaves from.
    pub from: (&'a str, &'a str),
    pub to_mac: String,
    pub src: &'a str,
    pub dst: &'a str,
    pub sport: u16,
    pub dport: u16,
    /// `S` (SYN) or `A` (ACK with data).
    pub flags: &'a str,
}

impl Crafted<'_> {
    /// Send it while capturing on interface `watch.1` of namespace `watch.0`; returns the TCP
    /// segments seen there with source or destination port `port`, as
    /// `SRC:SPORT > DST:DPORT FLAGS` lines.
    pub fn send_watching(&self, watch: (&str, &str), port: u16) -> Vec<String> {
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
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

pub fn network_fact(bridge: &str, subnets: &[&str], v4: GatewayMode, trusted: &[&str]) -> FirewallFact {
    network_with(bridge, subnets, true, false, v4, trusted)
}
