//! End-to-end: wharfd in a private namespace, driven by the wharf CLI, the docker CLI and
//! raw API calls, with real traffic between sandboxes.

use serde_json::Value;
use wharf_tests::Host;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn walkthrough_two_sandboxes_ping_across_a_network() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.90.0.0/24", "demo"]);
    h.wharf_ok(&["sandbox", "create", "alpha"]);
    h.wharf_ok(&["sandbox", "create", "beta"]);
    h.wharf_ok(&["network", "connect", "demo", "alpha"]);
    h.wharf_ok(&["network", "connect", "demo", "beta", "--ip", "10.90.0.20"]);
    assert_eq!(h.sandbox_ip("alpha", "demo"), "10.90.0.2");
    assert_eq!(h.sandbox_ip("beta", "demo"), "10.90.0.20");
    assert!(h.ping("alpha", "10.90.0.20"), "alpha cannot reach beta\n{}", h.log());
    assert!(h.ping("beta", "10.90.0.2"));
    assert!(h.ping("alpha", "10.90.0.1"), "the gateway answers");
    let addr =
        String::from_utf8_lossy(&h.in_sandbox("alpha", &["ip", "-o", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(addr.contains("10.90.0.2/24"), "{addr}");
    let routes = String::from_utf8_lossy(&h.in_sandbox("alpha", &["ip", "route"]).stdout).into_owned();
    assert!(routes.contains("default via 10.90.0.1"), "{routes}");
    let resolv = std::fs::read_to_string(h.dir.join("etc-netns/alpha/resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver"));

    h.wharf_ok(&["network", "disconnect", "demo", "beta"]);
    assert!(!h.ping("alpha", "10.90.0.20"));
    assert!(h.wharf_err(&["sandbox", "rm", "alpha"]).contains("disconnect it first"));
    h.wharf_ok(&["sandbox", "rm", "--force", "alpha", "beta"]);
    h.wharf_ok(&["network", "rm", "demo"]);
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("br-") && !links.contains("veth"), "left behind: {links}");
    assert!(!h.netns_dir().join("alpha").exists());
}

#[test]
fn predefined_networks_and_plugins_are_listed() {
    wharf_tests::require_root!();
    let h = Host::start();
    let ls = h.wharf_ok(&["network", "ls"]);
    for name in ["bridge", "host", "none"] {
        assert!(ls.contains(name), "{ls}");
    }
    let plugins = h.wharf_ok(&["plugin", "ls"]);
    assert!(plugins.contains("host") && plugins.contains("builtin"), "{plugins}");
    assert!(plugins.contains("libwharf_network_bridge.so"), "{plugins}");
    assert!(plugins.contains("libwharf_volume_local.so"), "{plugins}");
    let listed: Vec<Value> = h.wharf_ok(&["plugin", "ls", "--format", "json"]).lines().map(json).collect();
    let names: Vec<&str> = listed.iter().filter_map(|p| p["Name"].as_str()).collect();
    for d in ["bridge", "host", "null", "local", "bind"] {
        assert!(names.contains(&d), "{names:?}");
    }
    assert!(listed.iter().all(|p| p["AbiVersion"] == 1));
    h.wharf_ok(&["sandbox", "create", "lonely"]);
    h.wharf_ok(&["network", "connect", "none", "lonely"]);
    let links = String::from_utf8_lossy(&h.in_sandbox("lonely", &["ip", "-o", "link"]).stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "only loopback: {links}");
    assert!(links.contains("lo:") && links.contains("UP"), "{links}");
}

#[test]
fn the_docker_cli_manages_networks() {
    wharf_tests::require_root!();
    let h = Host::start();
    let id = h.docker_ok(&["network", "create", "--subnet", "10.50.0.0/24", "--label", "team=red", "dn1"]);
    assert_eq!(id.trim().len(), 64);
    h.docker_ok(&["network", "create", "dn2"]);
    let names = h.docker_ok(&["network", "ls", "--filter", "label=team=red", "--format", "{{.Name}}"]);
    assert_eq!(names.trim(), "dn1");
    let ids = h.docker_ok(&["network", "ls", "-q", "--filter", "name=dn"]);
    assert_eq!(ids.lines().count(), 2);
    let table = h.docker_ok(&["network", "ls"]);
    assert!(table.contains("NETWORK ID") && table.contains("bridge") && table.contains("host"), "{table}");
    let subnet = h.docker_ok(&["network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", "dn1"]);
    assert_eq!(subnet.trim(), "10.50.0.0/24");
    let driver = h.docker_ok(&["network", "inspect", "-f", "{{.Driver}} {{.Scope}}", &id.trim()[..8]]);
    assert_eq!(driver.trim(), "bridge local");

    h.wharf_ok(&["sandbox", "create", "web"]);
    h.docker_ok(&["network", "connect", "--ip", "10.50.0.9", "dn1", "web"]);
    let containers =
        h.docker_ok(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}", "dn1"]);
    assert_eq!(containers.trim(), "web 10.50.0.9/24");
    let out = h.docker(&["network", "rm", "dn1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("active endpoints"));
    h.docker_ok(&["network", "disconnect", "dn1", "web"]);
    let pruned = h.docker_ok(&["network", "prune", "-f"]);
    assert!(pruned.contains("dn1") && pruned.contains("dn2"), "{pruned}");
    let out = h.docker(&["network", "inspect", "dn1"]);
    assert!(!out.status.success());
    let out = h.docker(&["network", "create", "-d", "nosuchdriver", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_docker_cli_manages_volumes() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.docker_ok(&["volume", "create", "--label", "k=v", "vol1"]);
    h.docker_ok(&["volume", "create", "vol2"]);
    let anon = h.docker_ok(&["volume", "create"]);
    assert_eq!(anon.trim().len(), 64);
    let names = h.docker_ok(&["volume", "ls", "-q", "--filter", "label=k=v"]);
    assert_eq!(names.trim(), "vol1");
    let all = h.docker_ok(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
    assert!(all.contains("local vol1") && all.contains("local vol2"), "{all}");
    let mp = h.docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "vol1"]);
    assert!(std::path::Path::new(mp.trim()).is_dir(), "{mp}");
    h.wharf_ok(&["volume", "mount", "vol2", "--id", "c1"]);
    let out = h.docker(&["volume", "rm", "vol2"]);
    assert!(!out.status.success(), "an in-use volume is refused");
    let pruned = h.docker_ok(&["volume", "prune", "-f"]);
    assert!(pruned.contains(anon.trim()) && !pruned.contains("vol1"), "{pruned}");
    let pruned = h.docker_ok(&["volume", "prune", "-a", "-f"]);
    assert!(pruned.contains("vol1") && !pruned.contains("vol2"), "{pruned}");
    h.wharf_ok(&["volume", "unmount", "vol2", "--id", "c1"]);
    h.docker_ok(&["volume", "rm", "vol2"]);
    assert_eq!(h.docker_ok(&["volume", "ls", "-q"]).trim(), "");
}

#[test]
fn rejected_requests_leave_store_and_kernel_as_they_were() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.60.0.0/24", "base"]);
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.wharf_ok(&["network", "connect", "base", "s1"]);
    let before = h.snapshot();
    let cases: &[(&str, &str, &str, u16)] = &[
        ("POST", "/networks/create", r#"{"Name":"bad/name","Driver":"bridge"}"#, 400),
        ("POST", "/networks/create", r#"{"Name":"c1","IPAM":{"Config":[{"Subnet":"10.61.0.0/40"}]}}"#, 400),
        (
            "POST",
            "/networks/create",
            r#"{"Name":"c2","IPAM":{"Config":[{"Subnet":"10.62.0.0/24","Gateway":"10.63.0.1"}]}}"#,
            400,
        ),
        ("POST", "/networks/create", r#"{"Name":"c3","IPAM":{"Config":[{"Subnet":"10.60.0.0/16"}]}}"#, 403),
        ("POST", "/networks/create", r#"{"Name":"c4","Driver":"nosuch"}"#, 404),
        ("POST", "/networks/create", r#"{"Name":"c5","Options":{"com.docker.network.bridge.enable_icc":"no"}}"#, 400),
        ("POST", "/networks/create", r#"{"Name":"c7","Options":{"parent":"eth0"}}"#, 400),
        ("POST", "/networks/create", r#"{"Name":"base"}"#, 409),
        ("POST", "/networks/create", r#"{"Name": "c6", "Driver": "#, 400),
        ("DELETE", "/networks/base", "", 403),
        ("POST", "/networks/base/connect", r#"{"Container":"nosuch"}"#, 404),
        ("POST", "/networks/base/connect", r#"{"Container":"s1"}"#, 403),
        ("POST", "/volumes/create", r#"{"Name":"../etc"}"#, 400),
        ("POST", "/volumes/create", r#"{"Name":"v","DriverOpts":{"bogus":"1"}}"#, 400),
        ("POST", "/wharf/sandboxes", r#"{"Name":"s1"}"#, 409),
    ];
    for (method, path, body, status) in cases {
        let (got, resp) = h.api(method, path, body);
        assert_eq!(got, *status, "{method} {path} {body}: {resp}");
        let msg = json(&resp)["message"].as_str().unwrap_or_default().to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "one-line message: {msg:?}");
    }
    let (_, resp) = h.api("POST", "/networks/create", r#"{"Name":"c7","Options":{"parent":"eth0"}}"#);
    assert!(resp.contains("parent"), "{resp}");
    wharf_tests::assert_same_snapshot(&before, &h.snapshot());
}

#[test]
fn state_survives_restarts_and_kernel_damage_is_repaired() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.70.0.0/24", "keep"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "keep", "a"]);
    h.wharf_ok(&["network", "connect", "keep", "b"]);
    h.wharf_ok(&["volume", "create", "data"]);
    h.wharf_ok(&["volume", "mount", "data", "--id", "c1"]);
    assert!(h.ping("a", "10.70.0.3"));

    assert!(h.stop_daemon(), "SIGTERM exits 0\n{}", h.log());
    assert!(!h.socket().exists(), "the socket is removed");
    h.start_daemon();
    assert_eq!(h.sandbox_ip("b", "keep"), "10.70.0.3");
    let v = json(&h.wharf_ok(&["volume", "inspect", "data"]));
    assert_eq!(v[0]["UsageData"]["RefCount"], 1);
    assert!(h.ping("a", "10.70.0.3"));

    // A crash, and someone deletes the bridge while wharfd is down.
    h.kill_daemon();
    let bridge = h.in_host_ok(&["ip", "-o", "link", "show", "type", "bridge"]);
    let name = bridge
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .find(|n| n.starts_with("br-"))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .expect("a br- bridge");
    let mark = h.link_alias(&name).expect("wharf marks its bridge");
    h.in_host_ok(&["ip", "link", "del", &name]);
    // A bridge named like wharf's that wharf did not make, and one of wharf's no network owns.
    h.in_host_ok(&["ip", "link", "add", "br-0123456789ab", "type", "bridge"]);
    h.in_host_ok(&["ip", "link", "add", "stray0", "type", "bridge"]);
    h.in_host_ok(&["ip", "link", "set", "stray0", "alias", &mark]);
    h.start_daemon();
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(links.contains(&name), "bridge re-created: {links}");
    assert!(links.contains("br-0123456789ab"), "a link wharf did not make is left, whatever its name");
    assert!(!links.contains("stray0"), "a stray link carrying wharf's mark is removed");
    assert!(h.log().contains(&format!("re-created link {name}")), "the fix is logged");
    // Re-applying the endpoints' plans put their veths back on the new bridge.
    assert!(h.ping("a", "10.70.0.3"), "{}", h.log());
}

#[test]
fn docker_py_drives_networks_and_volumes() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["sandbox", "create", "pysb"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/docker_py_session.py");
    let out = wharf_tests::run("python3", &[script, &h.host_arg()]);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        wharf_tests::tail(&h.log(), 20)
    );
}

#[test]
fn picked_pools_avoid_the_hosts_main_routes_and_given_subnets_may_lie_on_them() {
    wharf_tests::require_root!();
    let h = Host::start_with_config("default_address_pools = [{ base = \"10.251.0.0/16\", size = 24 }]\n");
    h.in_host_ok(&["ip", "link", "add", "hr0", "type", "veth", "peer", "name", "hr1"]);
    h.in_host_ok(&["ip", "addr", "add", "10.251.0.1/24", "dev", "hr0"]);
    h.in_host_ok(&["ip", "link", "set", "hr0", "up"]);
    h.in_host_ok(&["ip", "link", "set", "hr1", "up"]);
    // Only the local table knows this one: it is an address, not a route to a network.
    h.in_host_ok(&["ip", "addr", "add", "10.251.1.1/32", "dev", "lo"]);
    h.wharf_ok(&["network", "create", "picked"]);
    let net: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", "picked"])).unwrap();
    assert_eq!(net[0]["IPAM"]["Config"][0]["Subnet"], "10.251.1.0/24", "the pool on hr0's route is skipped");
    h.wharf_ok(&["network", "rm", "picked"]);
    // As with Docker, a subnet the user names is theirs, on a host route too.
    h.wharf_ok(&["network", "create", "--subnet", "10.251.0.128/25", "onroute"]);
}

#[test]
fn a_restart_with_many_sandboxes_leaves_no_thread_in_a_sandbox_namespace() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.253.0.0/24", "many"]);
    let sandboxes: Vec<String> = (0..48).map(|i| format!("m{i}")).collect();
    for s in &sandboxes {
        h.wharf_ok(&["sandbox", "create", s]);
        h.wharf_ok(&["network", "connect", "many", s]);
    }
    h.kill_daemon();
    h.start_daemon();
    // Reviving touched every sandbox's namespace. Each has a netlink socket opened inside it,
    // but no thread of the daemon stays there: all are in the daemon's own namespace, and
    // their number does not grow with the sandboxes.
    let pid = h.daemon_pid().expect("wharfd runs");
    let own = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("daemon netns");
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten().collect();
    for t in &tasks {
        let ns = std::fs::read_link(t.path().join("ns/net")).expect("thread netns");
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        assert_eq!(ns, own, "thread {} ({}) is in another namespace", t.file_name().to_string_lossy(), name.trim());
    }
    assert!(tasks.len() < 16, "{} threads after reviving 48 sandboxes", tasks.len());
    let last = h.sandbox_ip("m47", "many");
    assert!(h.ping("m0", &last), "the first and the last sandbox still talk\n{}", h.log());
}

/// The host facts come from notifications, not a dump per call: a route `ip` made just
/// before a call is seen, and so is one the kernel removed without announcing it (the
/// routes of a link set down or deleted).
#[test]
fn host_facts_follow_links_made_changed_and_removed_by_others_between_calls() {
    wharf_tests::require_root!();
    let h = Host::start_with_config("default_address_pools = [{ base = \"10.252.0.0/16\", size = 24 }]\n");
    let picked = |h: &Host, name: &str| -> String {
        h.wharf_ok(&["network", "create", name]);
        let net: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", name])).unwrap();
        h.wharf_ok(&["network", "rm", name]);
        net[0]["IPAM"]["Config"][0]["Subnet"].as_str().unwrap_or_default().to_string()
    };
    let (free, next) = ("10.252.0.0/24", "10.252.1.0/24");
    assert_eq!(picked(&h, "n0"), free);
    for step in [
        &["link", "add", "hf0", "type", "veth", "peer", "name", "hf1"][..],
        &["addr", "add", "10.252.0.1/24", "dev", "hf0"],
        &["link", "set", "hf1", "up"],
        &["link", "set", "hf0", "up"],
    ] {
        h.in_host_ok(&[&["ip"], step].concat());
    }
    assert_eq!(picked(&h, "n1"), next, "the route made just before the call");
    h.in_host_ok(&["ip", "link", "set", "hf0", "down"]);
    assert_eq!(picked(&h, "n2"), free, "a link set down takes its routes, unannounced");
    h.in_host_ok(&["ip", "link", "set", "hf0", "up"]);
    assert_eq!(picked(&h, "n3"), next, "and brings them back when up");
    h.in_host_ok(&["ip", "link", "del", "hf0"]);
    assert_eq!(picked(&h, "n4"), free, "a deleted link takes its routes");
    h.in_host_ok(&["ip", "route", "add", "10.252.0.0/23", "dev", "lo"]);
    assert_eq!(picked(&h, "n5"), "10.252.2.0/24", "a route added alone");
}
