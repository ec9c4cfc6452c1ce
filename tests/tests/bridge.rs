//! End-to-end: bridge networks with the nftables firewall, with real traffic between
//! private namespaces: NAT to an upstream, isolation, ICC, internal networks, published
//! ports (from outside, from the host's localhost, hairpin), IPv6, MTU, reload, teardown.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_tests::{Host, Netns};

/// An upstream router namespace on 192.0.2.0/24, the host's default gateway. It has no
/// route back to any container subnet, so only masqueraded traffic gets answers.
fn upstream(h: &Host) -> Netns {
    let up = Netns::new("upst");
    h.in_host_ok(&["ip", "link", "add", "uplink", "type", "veth", "peer", "name", "down0", "netns", &up.name]);
    h.in_host_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink"]);
    h.in_host_ok(&["ip", "link", "set", "uplink", "up"]);
    h.in_host_ok(&["ip", "route", "add", "default", "via", "192.0.2.2"]);
    for cmd in [&["ip", "addr", "add", "192.0.2.2/24", "dev", "down0"][..], &["ip", "link", "set", "down0", "up"][..]] {
        assert!(up.exec(cmd).status.success());
    }
    up
}

/// An HTTP server inside a sandbox, stopped on drop.
struct Server(Child);

impl Server {
    fn start(h: &Host, sandbox: &str, port: u16) -> Server {
        let dir = h.dir.join(format!("www-{sandbox}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), sandbox).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", h.sandbox_path(sandbox)))
            .args(["--", "python3", "-m", "http.server", &port.to_string(), "--bind", "::", "--directory"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Server(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = h.in_sandbox(sandbox, &["python3", "-c", &fetch_script(&format!("http://127.0.0.1:{port}/"))]);
            if out.status.success() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the server in {sandbox} did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fetch_script(url: &str) -> String {
    format!("import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('{url}', timeout=2).read().decode())")
}

/// The body served at `url`, fetched from the namespace `run` runs commands in.
fn fetch(run: impl Fn(&[&str]) -> std::process::Output, url: &str) -> Option<String> {
    let out = run(&["python3", "-c", &fetch_script(url)]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn networks_are_isolated_and_icc_can_be_turned_off() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.31.0.0/24", "n1"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.32.0.0/24", "n2"]);
    h.wharf_ok(&[
        "network",
        "create",
        "--subnet",
        "10.33.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "quiet",
    ]);
    for (sb, net) in [("a", "n1"), ("b", "n1"), ("c", "n2"), ("d", "quiet"), ("e", "quiet")] {
        h.wharf_ok(&["sandbox", "create", sb]);
        h.wharf_ok(&["network", "connect", net, sb]);
    }
    assert!(h.ping("a", "10.31.0.3"), "same network\n{}", h.log());
    assert!(!h.ping("a", "10.32.0.2"), "another network is isolated");
    assert!(!h.ping("c", "10.31.0.2"), "isolation works both ways");
    assert!(h.ping("d", "10.33.0.1"), "ICC off still reaches the gateway");
    assert!(!h.ping("d", "10.33.0.3"), "ICC off: no traffic between endpoints");
}

#[test]
fn masquerade_gives_egress_and_internal_networks_have_none() {
    wharf_tests::require_root!();
    let h = Host::start();
    let _up = upstream(&h);
    h.wharf_ok(&["network", "create", "--subnet", "10.34.0.0/24", "out"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.35.0.0/24", "--internal", "closed"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "out", "a"]);
    h.wharf_ok(&["network", "connect", "closed", "b"]);
    assert!(h.ping("a", "192.0.2.2"), "masqueraded egress to the upstream\n{}", h.log());
    assert!(!h.ping("b", "192.0.2.2"), "an internal network has no egress");
    let routes = String::from_utf8_lossy(&h.in_sandbox("b", &["ip", "route"]).stdout).into_owned();
    assert!(!routes.contains("default"), "{routes}");

    h.wharf_ok(&[
        "network",
        "create",
        "--subnet",
        "10.36.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
        "raw",
    ]);
    h.wharf_ok(&["sandbox", "create", "c"]);
    h.wharf_ok(&["network", "connect", "raw", "c"]);
    assert!(!h.ping("c", "192.0.2.2"), "without masquerade the upstream cannot answer");
}

#[test]
fn published_ports_answer_from_outside_localhost_and_hairpin() {
    wharf_tests::require_root!();
    let h = Host::start();
    let up = upstream(&h);
    h.wharf_ok(&["network", "create", "--subnet", "10.37.0.0/24", "web"]);
    h.wharf_ok(&["sandbox", "create", "srv"]);
    h.wharf_ok(&["network", "connect", "web", "srv", "-p", "8080:80/tcp"]);
    let _server = Server::start(&h, "srv", 80);
    let outside = fetch(|a| up.exec(a), "http://192.0.2.1:8080/");
    assert_eq!(outside.as_deref(), Some("srv"), "from the upstream\n{}", h.log());
    let local = fetch(|a| h.in_host(a), "http://127.0.0.1:8080/");
    assert_eq!(local.as_deref(), Some("srv"), "from the host's localhost");
    h.wharf_ok(&["sandbox", "create", "other"]);
    h.wharf_ok(&["network", "connect", "web", "other"]);
    let hairpin = fetch(|a| h.in_sandbox("other", a), "http://192.0.2.1:8080/");
    assert_eq!(hairpin.as_deref(), Some("srv"), "hairpin: a sandbox on the same bridge through the host's address");
    let own = fetch(|a| h.in_sandbox("srv", a), "http://192.0.2.1:8080/");
    assert_eq!(own.as_deref(), Some("srv"), "hairpin: a sandbox reaching its own published port\n{}", h.log());
    h.wharf_ok(&["network", "disconnect", "web", "other"]);
    let err = h.wharf_err(&["network", "connect", "web", "other", "-p", "8080:80"]);
    assert!(err.contains("8080") && err.contains("already"), "{err}");
    // `-p 80`: wharf picks the host port, says which, and it answers.
    h.wharf_ok(&["network", "connect", "web", "other", "-p", "80"]);
    let _other = Server::start(&h, "other", 80);
    let v: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", "other"])).unwrap();
    let picked = v[0]["Networks"]["web"]["Ports"][0]["HostPort"].as_str().unwrap_or_default().to_string();
    assert_eq!(picked, "49153", "{v}");
    let url = format!("http://192.0.2.1:{picked}/");
    assert_eq!(fetch(|a| up.exec(a), &url).as_deref(), Some("other"), "the picked port answers");
    h.wharf_ok(&["network", "disconnect", "web", "other"]);

    h.wharf_ok(&["network", "disconnect", "web", "srv"]);
    assert_eq!(fetch(|a| up.exec(a), "http://192.0.2.1:8080/"), None, "unpublished on disconnect");
}

#[test]
fn the_firewall_restores_itself_after_a_flush_and_reload_still_works() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    let up = upstream(&h);
    h.wharf_ok(&["network", "create", "--subnet", "10.38.0.0/24", "n"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "n", "a", "-p", "8080:80"]);
    let _server = Server::start(&h, "a", 80);
    assert!(h.ping("a", "192.0.2.2"));
    // Another tool flushes the whole ruleset: wharf notices and restores its tables.
    h.in_host_ok(&["nft", "flush", "ruleset"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.in_host(&["nft", "list", "table", "inet", "wharf"]).stdout.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(h.ping("a", "192.0.2.2"), "masquerade is back\n{}", h.log());
    assert_eq!(fetch(|a| up.exec(a), "http://192.0.2.1:8080/").as_deref(), Some("a"), "so is the published port");
    assert!(h.log().contains("restored them"), "said once in the log\n{}", h.log());
    // Deleted again, the next operation restores the tables on its way instead of failing.
    h.in_host_ok(&["nft", "delete", "table", "inet", "wharf"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.39.0.0/24", "m"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "m", "b", "-p", "8081:80"]);
    assert!(h.ping("b", "192.0.2.2"));
    assert!(h.ping("a", "192.0.2.2"));
    h.wharf_ok(&["firewall", "reload"]);
    assert!(h.ping("a", "192.0.2.2"), "after an explicit reload\n{}", h.log());
    assert!(h.stop_daemon());
    h.in_host_ok(&["nft", "delete", "table", "inet", "wharf"]);
    h.start_daemon();
    assert!(h.ping("a", "192.0.2.2"), "daemon start re-applies the rules");
}

/// A process in `h`'s host namespace listening on TCP `port`, stopped on drop.
struct HostListener(Child);

impl HostListener {
    fn start(h: &Host, port: u16) -> HostListener {
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns.name, "nc", "-l", "-k", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listener = HostListener(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !h.in_host_ok(&["ss", "-Htln", &format!("sport = :{port}")]).contains(&port.to_string()) {
            assert!(Instant::now() < deadline, "nc did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        listener
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn published_ports_are_refused_where_the_host_uses_them_and_shown_with_their_elements() {
    wharf_tests::require_root!();
    let h = Host::start();
    let up = upstream(&h);
    h.wharf_ok(&["network", "create", "--subnet", "10.40.0.0/24", "--ipv6", "--subnet", "fd40::/64", "web"]);
    h.wharf_ok(&["sandbox", "create", "srv"]);
    let listener = HostListener::start(&h, 8090);
    let err = h.wharf_err(&["network", "connect", "web", "srv", "-p", "8090:80"]);
    assert!(err.contains("8090") && err.contains("address already in use"), "{err}");
    let body = r#"{"Container":"srv","EndpointConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8090"}]}}}"#;
    let (status, answer) = h.api("POST", "/networks/web/connect", body);
    assert_eq!(status, 409, "{answer}");
    drop(listener);
    let err = h.wharf_err(&["network", "connect", "web", "srv", "-p", "[::1]:8091:80"]);
    assert!(err.contains("::1") && err.contains("127.0.0.1"), "{err}");

    h.wharf_ok(&["network", "connect", "web", "srv", "-p", "8092:80"]);
    let _server = Server::start(&h, "srv", 80);
    assert_eq!(fetch(|a| up.exec(a), "http://192.0.2.1:8092/").as_deref(), Some("srv"));
    let held = h.in_host(&["python3", "-c", "import socket; socket.socket().bind(('0.0.0.0', 8092))"]);
    assert!(!held.status.success(), "a published port is held: no host process can take it");

    let ip = h.sandbox_ip("srv", "web");
    let shown = h.wharf_ok(&["firewall", "show"]);
    assert!(shown.contains("network web (bridge,"), "{shown}");
    assert!(shown.contains("endpoint of sandbox srv"), "{shown}");
    let dnat = format!("ok      inet wharf @dnat4 {{ tcp . 8092 : {ip} . 80 }}");
    assert!(shown.contains(&dnat), "{shown}");
    assert!(!shown.contains("MISSING"), "{shown}");
    h.in_host_ok(&["nft", "delete", "element", "inet", "wharf", "dnat4", "{ tcp . 8092 }"]);
    let shown = h.wharf_ok(&["firewall", "show"]);
    assert!(shown.contains(&dnat.replace("ok     ", "MISSING")), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["firewall", "show", "--format", "json"])).unwrap();
    assert!(json["Ruleset"].as_str().unwrap_or_default().contains("chain guard"), "{json}");
}

#[test]
fn dual_stack_and_mtu() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.39.0.0/24",
        "--subnet",
        "fd00:39::/64",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "ds",
    ]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "ds", "a"]);
    h.wharf_ok(&["network", "connect", "ds", "b", "--ip6", "fd00:39::20"]);
    assert!(h.ping("a", "fd00:39::20"), "IPv6 across the bridge\n{}", h.log());
    assert!(h.ping("a", "fd00:39::1"), "the IPv6 gateway answers");
    let link = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "link", "show", "eth0"]).stdout).into_owned();
    assert!(link.contains("mtu 1400"), "{link}");
}

#[test]
fn removal_leaves_nothing_behind() {
    wharf_tests::require_root!();
    let h = Host::start();
    let baseline_links = h.in_host_ok(&["ip", "-o", "link", "show"]).lines().count();
    let id = h.wharf_ok(&["network", "create", "--subnet", "10.40.0.0/24", "gone"]);
    let bridge = format!("br-{}", &id.trim()[..12]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "gone", "a", "-p", "9090:90", "-p", "127.0.0.1:9191:91/udp"]);
    let rules = h.in_host_ok(&["nft", "list", "table", "inet", "wharf"]);
    assert!(rules.contains("9090") && rules.contains(&bridge), "{rules}");
    h.wharf_ok(&["network", "disconnect", "gone", "a"]);
    h.wharf_ok(&["network", "rm", "gone"]);
    h.wharf_ok(&["sandbox", "rm", "a"]);
    assert_eq!(h.in_host_ok(&["ip", "-o", "link", "show"]).lines().count(), baseline_links);
    let addrs = h.in_host_ok(&["ip", "-o", "addr", "show"]);
    assert!(!addrs.contains("10.40.0.1"), "{addrs}");
    let rules = h.in_host_ok(&["nft", "list", "table", "inet", "wharf"]);
    assert!(!rules.contains("9090") && !rules.contains("9191") && !rules.contains(&bridge), "{rules}");
    let bridge_rules = h.in_host_ok(&["nft", "list", "table", "bridge", "wharf"]);
    assert!(!bridge_rules.contains(&bridge) && !bridge_rules.contains("10.40.0."), "{bridge_rules}");
    let tables = h.in_host_ok(&["nft", "list", "tables"]);
    assert!(tables.lines().all(|t| t.ends_with(" wharf")), "only wharf's own tables: {tables}");
}

#[test]
fn a_sandbox_reconnects_at_once_and_retired_links_go_away() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.41.0.0/24", "again"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "again", "b", "--ip", "10.41.0.20"]);
    for round in 0..5 {
        h.wharf_ok(&["network", "connect", "again", "a"]);
        if !h.ping("a", "10.41.0.20") {
            let a = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-d", "link"]).stdout).into_owned();
            let an = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "neigh"]).stdout).into_owned();
            let bn = String::from_utf8_lossy(&h.in_sandbox("b", &["ip", "neigh"]).stdout).into_owned();
            let fdb = h.in_host_ok(&["bridge", "fdb", "show"]);
            let hl = h.in_host_ok(&["ip", "-d", "link"]);
            let again = h.ping("a", "10.41.0.20");
            panic!("round {round} again={again}\nA {a}\nAN {an}\nBN {bn}\nFDB {fdb}\nHOST {hl}");
        }
        h.wharf_ok(&["network", "disconnect", "again", "a"]);
        assert!(!h.ping("a", "10.41.0.20"), "disconnected: no traffic, at once");
    }
    h.wharf_ok(&["network", "connect", "again", "a"]);
    let eth0 = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "link", "show", "eth0"]).stdout).into_owned();
    assert!(eth0.contains("eth0"), "the interface name is free again: {eth0}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let host = h.in_host_ok(&["ip", "-o", "link", "show"]);
        let sandbox = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "link", "show"]).stdout).into_owned();
        if !host.contains("wgc") && !sandbox.contains("wgc") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "retired links stay:\n{host}\n{sandbox}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let veths = h.in_host_ok(&["ip", "-o", "link", "show", "type", "veth"]).lines().count();
    assert_eq!(veths, 2, "one veth per connected sandbox");
}

#[test]
fn a_removed_network_can_be_made_again_at_once_with_its_bridge_and_subnet() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    for round in 0..3 {
        h.wharf_ok(&[
            "network",
            "create",
            "--subnet",
            "10.42.0.0/24",
            "-o",
            "com.docker.network.bridge.name=brq",
            "twice",
        ]);
        h.wharf_ok(&["network", "connect", "twice", "a", "--ip", "10.42.0.10"]);
        h.wharf_ok(&["network", "connect", "twice", "b", "--ip", "10.42.0.20"]);
        assert!(h.ping("a", "10.42.0.20"), "round {round}\n{}", wharf_tests::tail(&h.log(), 30));
        assert!(h.in_sandbox("a", &["ping", "-c", "1", "-W", "1", "10.42.0.1"]).status.success(), "gateway");
        for sb in ["a", "b"] {
            h.wharf_ok(&["network", "disconnect", "twice", sb]);
        }
        h.wharf_ok(&["network", "rm", "twice"]);
        let brq = h.in_host(&["ip", "link", "show", "brq"]);
        assert!(!brq.status.success(), "the bridge's name is free at once");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.in_host_ok(&["ip", "-o", "link", "show"]).contains("wgc") {
        assert!(std::time::Instant::now() < deadline, "retired links stay");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The MAC address of link `name` in the host namespace.
fn host_mac(h: &Host, name: &str) -> String {
    let out = h.in_host_ok(&["cat", &format!("/sys/class/net/{name}/address")]);
    out.trim().to_string()
}

#[test]
fn a_sandbox_keeps_its_egress_while_others_connect_and_disconnect() {
    wharf_tests::require_root!();
    let h = Host::start();
    let _up = upstream(&h);
    h.wharf_ok(&[
        "network",
        "create",
        "--subnet",
        "10.37.0.0/24",
        "-o",
        "com.docker.network.bridge.name=brmac0",
        "out",
    ]);
    let mac = host_mac(&h, "brmac0");
    let others = ["b", "c", "d"];
    for sb in ["a"].iter().chain(&others) {
        h.wharf_ok(&["sandbox", "create", sb]);
    }
    // The others join first, so without a fixed MAC the bridge would take the lowest of
    // their ports' and `a` would learn a gateway MAC that leaves with them.
    for sb in others {
        h.wharf_ok(&["network", "connect", "out", sb]);
    }
    h.wharf_ok(&["network", "connect", "out", "a"]);
    assert!(h.ping("a", "192.0.2.2"), "egress before the churn\n{}", h.log());
    assert_eq!(host_mac(&h, "brmac0"), mac, "ports joining do not change the bridge's MAC");

    let count = 40;
    let pinger = Command::new("nsenter")
        .arg(format!("--net={}", h.sandbox_path("a")))
        .args(["--", "ping", "-n", "-q", "-i", "0.2", "-W", "1", "-c", &count.to_string(), "192.0.2.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for round in 0..3 {
        for sb in others {
            h.wharf_ok(&["network", "disconnect", "out", sb]);
            assert_eq!(host_mac(&h, "brmac0"), mac, "round {round}: {sb} left");
        }
        for sb in others {
            h.wharf_ok(&["network", "connect", "out", sb]);
            assert_eq!(host_mac(&h, "brmac0"), mac, "round {round}: {sb} joined");
        }
    }
    for sb in others {
        h.wharf_ok(&["network", "disconnect", "out", sb]);
    }
    let out = pinger.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    let received: u32 = summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" received").or_else(|| part.strip_suffix(" packets received")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary: {summary}"));
    assert!(received + 1 >= count, "egress was lost while others came and went: {summary}");
    assert_eq!(host_mac(&h, "brmac0"), mac);
}

#[test]
fn a_bridge_made_again_after_a_restart_gets_the_same_mac() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.38.0.0/24", "-o", "com.docker.network.bridge.name=brmac1", "n"]);
    let mac = host_mac(&h, "brmac1");
    assert!(h.stop_daemon());
    h.in_host_ok(&["ip", "link", "del", "brmac1"]);
    h.start_daemon();
    assert_eq!(host_mac(&h, "brmac1"), mac, "\n{}", h.log());
}
