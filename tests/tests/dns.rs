//! End-to-end: the embedded resolver at 127.0.0.11, asked with `dig` and `getent` from
//! inside real sandboxes. Names, aliases and ids on shared networks and nowhere else; AAAA
//! and PTR; forwarding over UDP and TCP to an upstream in an "outside" namespace and to a
//! loopback upstream of wharfd's own namespace; names gone at disconnect; the resolver back
//! after kill -9; queries while sandboxes come and go; malformed packets.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_tests::{unique, Host, Netns};

/// The outside upstream's address, and the loopback one in wharfd's namespace.
const OUTSIDE: &str = "10.250.0.2";
const LOOPBACK: &str = "127.0.0.53";

/// A dnsmasq serving a test zone, stopped on drop.
struct Dnsmasq(Child);

impl Dnsmasq {
    /// dnsmasq in namespace `ns` (a path) at `listen`, answering `records` (dnsmasq options
    /// such as `--address=/name/ip`) and nothing else.
    fn start(ns: &str, listen: &str, records: &[&str]) -> Dnsmasq {
        let child = Command::new("nsenter")
            .arg(format!("--net={ns}"))
            .args(["--", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null"])
            .args(["--user=root", "--pid-file=", "--bind-interfaces", "--except-interface=none"])
            .arg(format!("--listen-address={listen}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let d = Dnsmasq(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = Command::new("nsenter")
                .arg(format!("--net={ns}"))
                .args(["--", "dig", "+short", "+time=1", "+tries=1", &format!("@{listen}"), "ready.test"])
                .output()
                .unwrap();
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("10.7.7.7") {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("dnsmasq at {listen} did not start");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A wharfd whose host `resolv.conf` names a loopback dnsmasq in its own namespace, with
/// an "outside" namespace holding a second dnsmasq behind the host's veth.
struct Setup {
    h: Host,
    _outside: Netns,
    _servers: Vec<Dnsmasq>,
    resolv: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.resolv);
    }
}

fn setup() -> Setup {
    let resolv = std::env::temp_dir().join(format!("{}-resolv.conf", unique("wd")));
    std::fs::write(&resolv, format!("nameserver {LOOPBACK}\nsearch wd.example\noptions edns0\n")).unwrap();
    let h = Host::start_with(&["--resolv-conf", &resolv.display().to_string()]);
    let outside = Netns::new("wdo");
    h.in_host_ok(&["ip", "link", "add", "wdout", "type", "veth", "peer", "name", "wdin", "netns", &outside.name]);
    h.in_host_ok(&["ip", "addr", "add", "10.250.0.1/30", "dev", "wdout"]);
    h.in_host_ok(&["ip", "link", "set", "wdout", "up"]);
    for cmd in [
        &["ip", "addr", "add", "10.250.0.2/30", "dev", "wdin"][..],
        &["ip", "link", "set", "wdin", "up"][..],
        &["ip", "route", "add", "default", "via", "10.250.0.1"][..],
    ] {
        assert!(outside.exec(cmd).status.success());
    }
    let big: Vec<String> = (0..12).map(|i| format!("--txt-record=big.test,{}", format!("{i:02}").repeat(40))).collect();
    let mut outside_records = vec!["--address=/ready.test/10.7.7.7", "--address=/outside.test/10.9.9.9"];
    outside_records.extend(big.iter().map(String::as_str));
    let servers = vec![
        Dnsmasq::start(&outside.path(), OUTSIDE, &outside_records),
        Dnsmasq::start(&h.ns.path(), LOOPBACK, &["--address=/ready.test/10.7.7.7", "--address=/host.test/10.8.8.8"]),
    ];
    Setup { h, _outside: outside, _servers: servers, resolv }
}

/// `dig` inside sandbox `sb` at the resolver; returns its `+short` output, trimmed.
fn dig(h: &Host, sb: &str, args: &[&str]) -> String {
    let mut full = vec!["dig", "@127.0.0.11", "+short", "+time=2", "+tries=1"];
    full.extend_from_slice(args);
    let out = h.in_sandbox(sb, &full);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The response code `dig` reports for a query inside sandbox `sb`.
fn status(h: &Host, sb: &str, args: &[&str]) -> String {
    let mut full = vec!["dig", "@127.0.0.11", "+time=3", "+tries=1"];
    full.extend_from_slice(args);
    let out = String::from_utf8_lossy(&h.in_sandbox(sb, &full).stdout).into_owned();
    out.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap_or("no answer").to_string()
}

/// `getent hosts NAME` inside sandbox `sb`, reading the sandbox's own `resolv.conf` (bound
/// over /etc/resolv.conf in a private mount namespace, as `ip netns exec` does).
fn getent(h: &Host, sb: &str, name: &str) -> String {
    let conf = h.dir.join("etc-netns").join(sb).join("resolv.conf");
    let script = format!("mount --bind {} /etc/resolv.conf && getent hosts {name}", conf.display());
    let out = h.in_sandbox(sb, &["unshare", "-m", "sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn resolv_conf(h: &Host, sb: &str) -> String {
    std::fs::read_to_string(h.dir.join("etc-netns").join(sb).join("resolv.conf")).unwrap()
}

fn inspect(h: &Host, sb: &str) -> serde_json::Value {
    let out = h.wharf_ok(&["sandbox", "inspect", sb]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

/// Network `network` on `subnet`, with each sandbox of `members` made and connected at its
/// address with its extra connect flags.
fn network_with(h: &Host, network: &str, subnet: &str, members: &[(&str, &str, &[&str])]) {
    h.wharf_ok(&["network", "create", "--subnet", subnet, network]);
    for (sb, ip, extra) in members {
        h.wharf_ok(&["sandbox", "create", sb]);
        let mut args = vec!["network", "connect", network, sb, "--ip", ip];
        args.extend_from_slice(extra);
        h.wharf_ok(&args);
    }
}

#[test]
fn names_aliases_and_ids_resolve_on_shared_networks_only() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.wharf_ok(&["network", "create", "--subnet", "10.201.0.0/24", "wdn1"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.202.0.0/24", "wdn2"]);
    for sb in ["alpha", "beta", "gamma", "lonely"] {
        h.wharf_ok(&["sandbox", "create", sb]);
    }
    h.wharf_ok(&["network", "connect", "wdn1", "alpha", "--ip", "10.201.0.10"]);
    h.wharf_ok(&["network", "connect", "wdn1", "beta", "--ip", "10.201.0.20", "--alias", "web"]);
    h.wharf_ok(&["network", "connect", "wdn2", "gamma", "--ip", "10.202.0.30"]);
    h.wharf_ok(&["network", "connect", "wdn2", "beta", "--ip", "10.202.0.20"]);
    let beta_id = inspect(h, "beta")["Id"].as_str().unwrap().to_string();

    assert_eq!(dig(h, "alpha", &["beta"]), "10.201.0.20");
    assert_eq!(dig(h, "alpha", &["BETA"]), "10.201.0.20");
    assert_eq!(dig(h, "alpha", &["web"]), "10.201.0.20");
    assert_eq!(dig(h, "alpha", &[&beta_id[..12]]), "10.201.0.20");
    assert_eq!(dig(h, "alpha", &[&beta_id[..12].to_uppercase()]), "10.201.0.20");
    assert_eq!(dig(h, "alpha", &["alpha"]), "10.201.0.10");
    // beta's address on the network gamma shares with it.
    assert_eq!(dig(h, "gamma", &["beta"]), "10.202.0.20");
    // No shared network, no name: asked upstream, which does not know it.
    assert_eq!(dig(h, "alpha", &["gamma"]), "");
    assert_eq!(dig(h, "gamma", &["alpha"]), "");
    assert_eq!(dig(h, "gamma", &["-x", "10.201.0.10"]), "");
    // The alias is beta's on wdn1 only.
    assert_eq!(dig(h, "gamma", &["web"]), "");
    // A known name without an AAAA record: an empty NOERROR, not a question for upstream.
    assert_eq!(status(h, "alpha", &["beta", "AAAA"]), "NOERROR");
    assert_eq!(dig(h, "alpha", &["-x", "10.201.0.20"]), "beta.");

    // Through the sandbox's resolv.conf, as programs inside see it.
    let conf = resolv_conf(h, "alpha");
    assert!(conf.starts_with("nameserver 127.0.0.11\n"), "{conf}");
    assert!(conf.contains("search wd.example") && conf.contains("options edns0 ndots:0"), "{conf}");
    let entry = getent(h, "alpha", "web");
    assert!(entry.starts_with("10.201.0.20 ") && entry.ends_with(" web"), "{entry}");
    // A sandbox on no network keeps the upstream servers themselves (a loopback one is
    // unreachable from a sandbox, so Docker's fallback stands in).
    let lonely = resolv_conf(h, "lonely");
    assert!(lonely.starts_with("nameserver 8.8.8.8\n") && !lonely.contains("127.0.0.11"), "{lonely}");
    // Upstream answers come through the resolver: the host's loopback server, reached from
    // wharfd's namespace.
    assert_eq!(dig(h, "alpha", &["host.test"]), "10.8.8.8");
    assert_eq!(dig(h, "alpha", &["+tcp", "host.test"]), "10.8.8.8");
}

#[test]
fn several_holders_of_an_alias_answer_in_turn() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    network_with(
        h,
        "wdrr",
        "10.204.0.0/24",
        &[
            ("client", "10.204.0.5", &["--alias", "pool"]),
            ("web1", "10.204.0.11", &["--alias", "pool"]),
            ("web2", "10.204.0.12", &["--alias", "pool"]),
        ],
    );
    let first = dig(h, "client", &["pool"]);
    let second = dig(h, "client", &["pool"]);
    let mut a: Vec<&str> = first.lines().collect();
    assert_eq!(a.len(), 3, "{first}");
    assert_ne!(first, second, "the order turns from one query to the next");
    a.sort();
    assert_eq!(a, ["10.204.0.11", "10.204.0.12", "10.204.0.5"]);
}

#[test]
fn aaaa_and_ptr_on_a_dual_stack_network() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.wharf_ok(&["network", "create", "--ipv6", "--subnet", "10.203.0.0/24", "--subnet", "fd77:1::/64", "wdv6"]);
    h.wharf_ok(&["sandbox", "create", "one"]);
    h.wharf_ok(&["sandbox", "create", "two"]);
    h.wharf_ok(&["network", "connect", "wdv6", "one"]);
    h.wharf_ok(&["network", "connect", "wdv6", "two", "--ip6", "fd77:1::22"]);
    assert_eq!(dig(h, "one", &["two", "AAAA"]), "fd77:1::22");
    assert_eq!(dig(h, "one", &["-x", "fd77:1::22"]), "two.");
    let v4 = inspect(h, "two")["Networks"]["wdv6"]["IPAddress"].as_str().unwrap().to_string();
    assert_eq!(dig(h, "one", &["two", "A"]), v4);
}

#[test]
fn forwarding_over_udp_and_tcp_from_the_sandboxes_namespace() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.wharf_ok(&["network", "create", "--subnet", "10.205.0.0/24", "wdfw"]);
    h.wharf_ok(&["network", "create", "--internal", "--subnet", "10.206.0.0/24", "wdint"]);
    h.wharf_ok(&["sandbox", "create", "out", "--dns", OUTSIDE, "--dns-search", "corp.test", "--dns-option", "ndots:2"]);
    h.wharf_ok(&["sandbox", "create", "shut", "--dns", OUTSIDE]);
    h.wharf_ok(&["network", "connect", "wdfw", "out"]);
    h.wharf_ok(&["network", "connect", "wdint", "shut"]);
    assert_eq!(resolv_conf(h, "out"), "nameserver 127.0.0.11\nsearch corp.test\noptions ndots:2\n");
    let dns = inspect(h, "out");
    assert_eq!(dns["Dns"], serde_json::json!([OUTSIDE]));
    assert_eq!(dns["DnsSearch"], serde_json::json!(["corp.test"]));

    assert_eq!(dig(h, "out", &["outside.test"]), "10.9.9.9");
    assert_eq!(dig(h, "out", &["+tcp", "outside.test"]), "10.9.9.9");
    // The sandbox's own server replaces the host's.
    assert_eq!(dig(h, "out", &["host.test"]), "");
    // Too big for 512 bytes: the truncated answer reaches the asker with TC set, and dig's
    // retry over TCP gets it whole.
    let trunc = h.in_sandbox("out", &["dig", "@127.0.0.11", "+noedns", "+ignore", "+time=2", "big.test", "TXT"]);
    let trunc = String::from_utf8_lossy(&trunc.stdout).into_owned();
    assert!(trunc.contains(" tc"), "{trunc}");
    assert_eq!(dig(h, "out", &["+noedns", "big.test", "TXT"]).lines().count(), 12);
    // EDNS passes through: with room for it, the whole answer comes over UDP.
    assert_eq!(dig(h, "out", &["+bufsize=4096", "+ignore", "big.test", "TXT"]).lines().count(), 12);
    // An internal network gives no way out, through the resolver neither: the upstream is
    // asked from the sandbox's namespace, where there is no route to it.
    assert_eq!(status(h, "shut", &["outside.test"]), "SERVFAIL");
    assert_eq!(status(h, "shut", &["+tcp", "outside.test"]), "SERVFAIL");
}

#[test]
fn a_name_comes_with_connect_and_goes_with_disconnect() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.wharf_ok(&["network", "create", "--subnet", "10.207.0.0/24", "wdcd"]);
    h.wharf_ok(&["sandbox", "create", "asker"]);
    h.wharf_ok(&["sandbox", "create", "comer"]);
    h.wharf_ok(&["network", "connect", "wdcd", "asker"]);
    for i in 0..5 {
        let ip = format!("10.207.0.{}", 50 + i);
        h.wharf_ok(&["network", "connect", "wdcd", "comer", "--ip", &ip, "--alias", "svc"]);
        assert_eq!(dig(h, "asker", &["svc"]), ip);
        h.wharf_ok(&["network", "disconnect", "wdcd", "comer"]);
        assert_eq!(dig(h, "asker", &["svc"]), "");
        assert_eq!(dig(h, "asker", &["comer"]), "");
    }
    // Its last network with DNS gone, the sandbox's resolv.conf names the upstreams again,
    // and nothing listens at 127.0.0.11 in it.
    h.wharf_ok(&["network", "disconnect", "wdcd", "asker"]);
    assert!(!resolv_conf(h, "asker").contains("127.0.0.11"));
    assert_eq!(status(h, "asker", &["+time=1", "host.test"]), "no answer");
}

#[test]
fn a_network_can_opt_out() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.wharf_ok(&[
        "network",
        "create",
        "--subnet",
        "10.208.0.0/24",
        "-o",
        "com.docker.network.enable_dns=false",
        "wdoff",
    ]);
    let err = h.wharf_err(&["network", "create", "-o", "com.docker.network.enable_dns=maybe", "wdbad"]);
    assert!(err.contains("enable_dns"), "{err}");
    h.wharf_ok(&["sandbox", "create", "quiet"]);
    h.wharf_ok(&["sandbox", "create", "other"]);
    h.wharf_ok(&["network", "connect", "wdoff", "quiet"]);
    h.wharf_ok(&["network", "connect", "wdoff", "other"]);
    assert!(!resolv_conf(h, "quiet").contains("127.0.0.11"));
    assert_eq!(status(h, "quiet", &["+time=1", "other"]), "no answer");
    // The predefined bridge network has no names either, as with Docker.
    h.wharf_ok(&["sandbox", "create", "plain"]);
    h.wharf_ok(&["network", "connect", "bridge", "plain"]);
    assert!(!resolv_conf(h, "plain").contains("127.0.0.11"));
}

#[test]
fn the_resolver_is_back_after_kill_9() {
    wharf_tests::require_root!();
    let mut s = setup();
    network_with(
        &s.h,
        "wdk",
        "10.209.0.0/24",
        &[("left", "10.209.0.2", &["--alias", "r"]), ("right", "10.209.0.3", &["--alias", "r"])],
    );
    assert_eq!(dig(&s.h, "left", &["right"]), "10.209.0.3");
    s.h.kill_daemon();
    assert_eq!(status(&s.h, "left", &["+time=1", "right"]), "no answer");
    s.h.start_daemon();
    // start_daemon returns once the API answers: the resolver must be there already.
    assert_eq!(dig(&s.h, "left", &["right"]), "10.209.0.3");
    assert_eq!(dig(&s.h, "right", &["+tcp", "left"]), "10.209.0.2");
    assert_eq!(dig(&s.h, "left", &["host.test"]), "10.8.8.8");
    s.h.wharf_ok(&["network", "disconnect", "wdk", "right"]);
    assert_eq!(dig(&s.h, "left", &["right"]), "");
}

/// A python program sending `count` A queries over UDP, alternating `steady` and
/// `coming`, and checking each answer: `steady` must always be `steady_ip`; `coming`
/// either `coming_ip` or no address; nothing may time out. Prints a summary.
const QUERIES: &str = r#"
import socket, struct, sys
steady, steady_ip, coming, coming_ip, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
def query(i, name):
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    s.sendto(q, ("127.0.0.11", 53))
    while True:
        r = s.recv(4096)
        if struct.unpack(">H", r[:2])[0] == i:
            break
    an = struct.unpack(">H", r[6:8])[0]
    return socket.inet_ntoa(r[-4:]) if an == 1 else None
seen = 0
for i in range(count):
    name = steady if i % 2 == 0 else coming
    try:
        got = query(i, name)
    except socket.timeout:
        print("timeout on query", i, name); sys.exit(1)
    if name == steady and got != steady_ip:
        print("wrong answer for", name, got); sys.exit(1)
    if name == coming and got not in (None, coming_ip):
        print("wrong answer for", name, got); sys.exit(1)
    seen += got == coming_ip
print("ok", seen)
"#;

#[test]
fn a_thousand_queries_while_sandboxes_come_and_go() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    network_with(h, "wdq", "10.210.0.0/24", &[("asker", "10.210.0.2", &[]), ("steady", "10.210.0.3", &[])]);
    h.wharf_ok(&["sandbox", "create", "coming"]);
    std::thread::scope(|scope| {
        let churn = scope.spawn(|| {
            for _ in 0..15 {
                h.wharf_ok(&["network", "connect", "wdq", "coming", "--ip", "10.210.0.9"]);
                std::thread::sleep(Duration::from_millis(30));
                h.wharf_ok(&["network", "disconnect", "wdq", "coming"]);
            }
        });
        let out =
            h.in_sandbox("asker", &["python3", "-c", QUERIES, "steady", "10.210.0.3", "coming", "10.210.0.9", "1000"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        churn.join().unwrap();
    });
}

/// A python program sending malformed packets at the resolver: random bytes, short
/// headers, a huge label, a compression loop, two questions, a response. Each gets FORMERR
/// or nothing. Prints what came back.
const MALFORMED: &str = r#"
import os, random, socket, struct
random.seed(11)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
def send(p):
    s.sendto(p, ("127.0.0.11", 53))
    try:
        r = s.recv(4096)
    except socket.timeout:
        return "none"
    return "formerr" if (r[3] & 0x0f) == 1 else "rcode%d" % (r[3] & 0x0f)
hdr = lambda qd, flags=0x0100: struct.pack(">HHHHHH", 7, flags, qd, 0, 0, 0)
q = b"\x03web\x00\x00\x01\x00\x01"
packets = [os.urandom(random.randint(0, 600)) for _ in range(300)]
packets += [b"", b"\x00", hdr(1)[:5], hdr(1), hdr(1) + b"\x03we"]
packets += [hdr(1) + b"\x3f" + b"a" * 63 + b"\xc8" + b"b" * 200 + b"\x00\x00\x01\x00\x01"]
packets += [hdr(1) + b"\xc0\x0c\x00\x01\x00\x01", hdr(2) + q + q, hdr(0), hdr(1, 0x8100) + q]
packets += [hdr(1) + b"\x3f" + b"a" * 63] * 2 + [hdr(1) + (b"\x01a" * 200) + b"\x00\x00\x01\x00\x01"]
seen = {}
for p in packets:
    k = send(p)
    seen[k] = seen.get(k, 0) + 1
print(sorted(seen.items()))
"#;

#[test]
fn malformed_packets_get_formerr_or_nothing_and_the_server_goes_on() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    network_with(h, "wdm", "10.211.0.0/24", &[("victim", "10.211.0.2", &[]), ("web", "10.211.0.3", &[])]);
    let out = h.in_sandbox("victim", &["python3", "-c", MALFORMED]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("formerr"), "some packets must get FORMERR: {text}");
    assert_eq!(dig(h, "victim", &["web"]), "10.211.0.3");
    assert!(h.wharf(&["version"]).status.success(), "wharfd is still up");
    // A stream of garbage over TCP closes that connection, and TCP still answers.
    let garbage = "import socket; c = socket.create_connection(('127.0.0.11', 53)); c.sendall(b'\\x00\\x05hello' * 50); c.settimeout(1)\ntry: c.recv(100)\nexcept Exception: pass";
    h.in_sandbox("victim", &["python3", "-c", garbage]);
    assert_eq!(dig(h, "victim", &["+tcp", "web"]), "10.211.0.3");
}

#[test]
fn macvlan_and_overlay_networks_have_names_too() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    h.in_host_ok(&["ip", "link", "add", "wdpar", "type", "veth", "peer", "name", "wdparp"]);
    h.in_host_ok(&["ip", "link", "set", "wdpar", "up"]);
    h.in_host_ok(&["ip", "link", "set", "wdparp", "up"]);
    h.wharf_ok(&["network", "create", "-d", "macvlan", "--subnet", "10.212.0.0/24", "-o", "parent=wdpar", "wdmv"]);
    // An overlay with no peer but itself: one host's share of it.
    let overlay = ["network", "create", "-d", "overlay", "--subnet", "10.213.0.0/24", "-o", "peers=10.250.0.1"];
    h.wharf_ok(&[&overlay[..], &["-o", "local=10.250.0.1", "wdov"]].concat());
    for (net, a, b, ip) in [("wdmv", "mva", "mvb", "10.212.0.20"), ("wdov", "ova", "ovb", "10.213.0.20")] {
        h.wharf_ok(&["sandbox", "create", a]);
        h.wharf_ok(&["sandbox", "create", b]);
        h.wharf_ok(&["network", "connect", net, a]);
        h.wharf_ok(&["network", "connect", net, b, "--ip", ip, "--alias", "peer"]);
        assert_eq!(dig(h, a, &[b]), ip, "{net}");
        assert_eq!(dig(h, a, &["peer"]), ip, "{net}");
        assert!(resolv_conf(h, a).starts_with("nameserver 127.0.0.11\n"), "{net}");
    }
    assert_eq!(dig(h, "mva", &["ovb"]), "", "names stay on their network");
}

#[test]
fn a_runtime_namespace_with_loopback_down_gets_it_up_and_names() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    // As `ip netns add` leaves it: loopback down and without its address, so no 127.0.0.11
    // to listen at yet.
    let runtime = Netns::new("wdlo");
    assert!(runtime.exec(&["ip", "link", "set", "lo", "down"]).status.success());
    assert!(runtime.exec(&["ip", "addr", "flush", "dev", "lo"]).status.success());
    network_with(h, "wdlo", "10.209.0.0/24", &[("peer", "10.209.0.20", &[])]);
    h.wharf_ok(&["sandbox", "create", "--netns", &runtime.path(), "runtime"]);
    h.wharf_ok(&["network", "connect", "wdlo", "runtime", "--ip", "10.209.0.10"]);
    let lo = String::from_utf8_lossy(&runtime.exec(&["ip", "-o", "link", "show", "lo"]).stdout).into_owned();
    assert!(lo.contains("UP"), "{lo}");
    let out = runtime.exec(&["dig", "@127.0.0.11", "+short", "+time=2", "+tries=1", "peer"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "10.209.0.20");
    assert_eq!(dig(h, "peer", &["runtime"]), "10.209.0.10");
    h.wharf_ok(&["network", "disconnect", "wdlo", "runtime"]);
    h.wharf_ok(&["sandbox", "rm", "runtime"]);
}

#[test]
fn a_connect_whose_resolver_cannot_listen_is_refused_and_undone() {
    wharf_tests::require_root!();
    let s = setup();
    let h = &s.h;
    // Something else already answers at 127.0.0.11:53 in the sandbox's namespace: the
    // resolver's sockets, opened while the connect's plan runs, cannot be bound.
    let runtime = Netns::new("wdbusy");
    assert!(runtime.exec(&["ip", "link", "set", "lo", "up"]).status.success());
    let squatter = Dnsmasq::start(&runtime.path(), "127.0.0.11", &["--address=/ready.test/10.7.7.7"]);
    network_with(h, "wdbusy", "10.208.0.0/24", &[("peer", "10.208.0.20", &[])]);
    h.wharf_ok(&["sandbox", "create", "--netns", &runtime.path(), "runtime"]);
    let before = resolv_conf(h, "runtime");
    let err = h.wharf_err(&["network", "connect", "wdbusy", "runtime", "--ip", "10.208.0.10"]);
    assert!(err.contains("resolver cannot listen"), "{err}");
    // Nothing of the connect is left: no interface, no endpoint, no name, the same file.
    let links = String::from_utf8_lossy(&runtime.exec(&["ip", "-o", "link", "show"]).stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert_eq!(resolv_conf(h, "runtime"), before);
    assert_eq!(dig(h, "peer", &["runtime"]), "");
    // With the port free again the same connect goes through, at the same address.
    drop(squatter);
    h.wharf_ok(&["network", "connect", "wdbusy", "runtime", "--ip", "10.208.0.10"]);
    assert_eq!(dig(h, "peer", &["runtime"]), "10.208.0.10");
    h.wharf_ok(&["network", "disconnect", "wdbusy", "runtime"]);
    h.wharf_ok(&["sandbox", "rm", "runtime"]);
}
