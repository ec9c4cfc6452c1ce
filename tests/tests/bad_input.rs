//! End-to-end: what a user can send that the kernel would refuse is refused by wharf first,
//! with a 4xx that names the field, and nothing changes: interface names, MACs, subnets,
//! gateways, IPv6 MTUs, volume sizes and mount options, and wharfd's own namespace.

use serde_json::json;
use wharf_tests::{assert_same_snapshot, Host, Netns, PluginDir};

/// Send `body` to `path`; it must be refused with a 4xx whose message contains `field`,
/// and the kernel and the store must look as before.
fn refused(h: &Host, path: &str, body: serde_json::Value, field: &str) {
    let before = h.snapshot();
    let (status, answer) = h.api("POST", path, &body.to_string());
    assert!((400..500).contains(&status), "{path} {body}: status {status}: {answer}\n{}", h.log());
    let message = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["message"].as_str().unwrap().to_string();
    assert!(message.contains(field), "{path} {body}: {message:?} does not name {field}");
    assert_same_snapshot(&before, &h.snapshot());
}

fn network_create(name: &str, subnet: &str, gateway: Option<&str>, ipv6: bool, mtu: Option<u32>) -> serde_json::Value {
    let mut config = json!({ "Subnet": subnet });
    if let Some(gw) = gateway {
        config["Gateway"] = json!(gw);
    }
    let mut options = json!({});
    if let Some(mtu) = mtu {
        options["com.docker.network.driver.mtu"] = json!(mtu.to_string());
    }
    json!({ "Name": name, "Driver": "bridge", "EnableIPv6": ipv6, "IPAM": { "Config": [config] }, "Options": options })
}

/// A host with network `n` (10.61.0.0/24) and sandbox `a` connected to it as `eth0`.
fn host_with_a_sandbox() -> Host {
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.61.0.0/24", "n"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.62.0.0/24", "m"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "n", "a"]);
    h
}

#[test]
fn interface_names_the_kernel_would_refuse_or_that_are_taken() {
    wharf_tests::require_root!();
    let h = host_with_a_sandbox();
    let ifname = "com.docker.network.endpoint.ifname";
    for name in ["lo", "eth\u{0}1", "\u{e9}th1", "sixteen-bytes-xx", "eth%d", "a:b", "eth0"] {
        let body = json!({ "Container": "a", "EndpointConfig": { "DriverOpts": { ifname: name } } });
        let field = if name == "eth0" { "eth0" } else { ifname };
        refused(&h, "/networks/m/connect", body, field);
    }
    let err = h.wharf_err(&["network", "connect", "--driver-opt", &format!("{ifname}=lo"), "m", "a"]);
    assert!(err.contains(ifname), "{err}");
}

#[test]
fn interfaces_a_runtime_made_in_its_namespace_are_taken_too() {
    wharf_tests::require_root!();
    let h = host_with_a_sandbox();
    let runtime = Netns::new("edgrt");
    // A runtime's own interface: a veth pair, both ends inside its namespace.
    assert!(runtime.exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "edgpeer"]).status.success());
    h.wharf_ok(&["sandbox", "create", "--netns", &runtime.path(), "rt"]);
    let body = json!({ "Container": "rt", "EndpointConfig": { "DriverOpts": { "com.docker.network.endpoint.ifname": "eth0" } } });
    refused(&h, "/networks/n/connect", body, "interface eth0 already exists");
    h.wharf_ok(&["network", "connect", "n", "rt"]);
    assert!(runtime.exec(&["ip", "link", "show", "eth1"]).status.success(), "the next free name is used");
    assert!(runtime.exec(&["ip", "link", "show", "eth0", "type", "veth"]).status.success());
    h.wharf_ok(&["network", "disconnect", "n", "rt"]);
    h.wharf_ok(&["sandbox", "rm", "rt"]);
}

#[test]
fn broadcast_multicast_and_zero_macs_are_refused() {
    wharf_tests::require_root!();
    let h = host_with_a_sandbox();
    h.wharf_ok(&["sandbox", "create", "b"]);
    for mac in ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01", "00:00:00:00:00:00", "02:42:zz:00:00:01"]
    {
        let body = json!({ "Container": "b", "EndpointConfig": { "MacAddress": mac } });
        refused(&h, "/networks/n/connect", body, "MacAddress");
    }
    let err = h.wharf_err(&["network", "connect", "--mac-address", "ff:ff:ff:ff:ff:ff", "n", "b"]);
    assert!(err.contains("MacAddress"), "{err}");
    h.wharf_ok(&["network", "connect", "--mac-address", "02:42:0a:3d:00:09", "n", "b"]);
}

#[test]
fn subnets_the_kernel_routes_itself_are_refused() {
    wharf_tests::require_root!();
    let h = Host::start();
    for (subnet, ipv6) in [("127.5.0.0/16", false), ("224.1.0.0/16", false), ("::/0", true), ("::1/128", true)] {
        refused(&h, "/networks/create", network_create("x", subnet, None, ipv6, None), "subnet");
    }
    let err = h.wharf_err(&["network", "create", "--subnet", "127.0.0.0/8", "x"]);
    assert!(err.contains("subnet 127.0.0.0/8"), "{err}");
}

#[test]
fn a_gateway_on_the_network_or_broadcast_address_is_refused() {
    wharf_tests::require_root!();
    let h = Host::start();
    for gw in ["10.63.0.0", "10.63.0.255"] {
        refused(&h, "/networks/create", network_create("x", "10.63.0.0/24", Some(gw), false, None), "gateway");
    }
    h.wharf_ok(&["network", "create", "--subnet", "10.63.0.0/24", "--gateway", "10.63.0.254", "x"]);
}

#[test]
fn ipv6_with_an_mtu_below_1280_is_refused() {
    wharf_tests::require_root!();
    let h = Host::start();
    let body = json!({
        "Name": "x", "EnableIPv6": true,
        "IPAM": { "Config": [{ "Subnet": "10.64.0.0/24" }, { "Subnet": "fd00:64::/64" }] },
        "Options": { "com.docker.network.driver.mtu": "1200" },
    });
    refused(&h, "/networks/create", body, "com.docker.network.driver.mtu");
    h.wharf_ok(&[
        "network",
        "create",
        "--subnet",
        "10.64.0.0/24",
        "-o",
        "com.docker.network.driver.mtu=1200",
        "v4only",
    ]);
}

#[test]
fn a_volume_larger_than_the_filesystem_can_hold_is_refused() {
    wharf_tests::require_root!();
    let h = Host::start();
    let body = json!({ "Name": "big", "Driver": "local", "DriverOpts": { "size": "100P" } });
    refused(&h, "/volumes/create", body, "invalid option \"size\"");
    let err = h.wharf_err(&["volume", "create", "-o", "size=2E", "big"]);
    assert!(err.contains("invalid option \"size\""), "{err}");
}

#[test]
fn mount_options_are_read_as_the_kernel_mount_reads_them() {
    wharf_tests::require_root!();
    let h = Host::start();
    for o in ["ro,,bind", "size=64m,data=ordered", ",noexec"] {
        let body =
            json!({ "Name": "tv", "Driver": "local", "DriverOpts": { "type": "tmpfs", "device": "tmpfs", "o": o } });
        refused(&h, "/volumes/create", body, "invalid option \"o\"");
    }
    // Flags that clear a mount flag are flags, not tmpfs data: the volume mounts.
    h.wharf_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=suid,dev,exec",
        "-o",
        "size=16m",
        "tv",
    ]);
    let (status, answer) = h.api("POST", "/wharf/volumes/tv/mount", r#"{"ID":"edg"}"#);
    assert_eq!(status, 200, "{answer}\n{}", h.log());
    let (status, answer) = h.api("POST", "/wharf/volumes/tv/unmount", r#"{"ID":"edg"}"#);
    assert_eq!(status, 200, "{answer}");
    h.wharf_ok(&["volume", "rm", "tv"]);
}

#[test]
fn wharfds_own_namespace_is_not_a_sandbox() {
    wharf_tests::require_root!();
    let h = Host::start();
    refused(&h, "/wharf/sandboxes", json!({ "Name": "self", "Netns": h.ns.path() }), "Netns");
    let err = h.wharf_err(&["sandbox", "create", "--netns", &h.ns.path(), "self"]);
    assert!(err.contains("wharfd's own network namespace"), "{err}");
}

#[test]
fn an_endpoint_mac_equal_to_the_gateways_is_refused() {
    wharf_tests::require_root!();
    let h = host_with_a_sandbox();
    let v: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", "m"])).unwrap();
    let bridge = format!("br-{}", &v[0]["Id"].as_str().unwrap()[..12]);
    let line = h.in_host_ok(&["ip", "-o", "link", "show", "dev", &bridge]);
    let mac = line.split("link/ether ").nth(1).and_then(|m| m.split_whitespace().next()).unwrap().to_uppercase();
    let body = json!({ "Container": "a", "EndpointConfig": { "MacAddress": mac } });
    refused(&h, "/networks/m/connect", body, "MacAddress");
}

#[test]
fn a_bridge_name_with_a_dot_gets_its_sysctl() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "-o", "com.docker.network.bridge.name=wk.br0", "--subnet", "10.67.0.0/24", "d"]);
    assert_eq!(h.in_host_ok(&["sysctl", "-n", "net.ipv4.conf.wk/br0.route_localnet"]).trim(), "1");
    h.wharf_ok(&["network", "rm", "d"]);
    assert!(!h.in_host(&["ip", "link", "show", "wk.br0"]).status.success());
}

#[test]
fn a_filesystem_type_the_policy_refuses_is_refused_at_create() {
    wharf_tests::require_root!();
    let h = Host::start();
    let body = json!({ "Name": "nv", "Driver": "local", "DriverOpts": { "type": "nilfs2", "device": "/dev/null" } });
    refused(&h, "/volumes/create", body, "invalid option \"type\"");
}

#[test]
fn volume_options_the_kernel_refuses_at_mount_are_the_requests_fault() {
    wharf_tests::require_root!();
    let h = Host::start();
    let missing = h.dir.join("wk-missing").display().to_string();
    let cases = [
        ("blk", vec!["type=ext4", "device=/dev/null"], "device refused"),
        ("inodes", vec!["type=tmpfs", "device=tmpfs", "o=nr_inodes=abc"], "o refused"),
        ("gone", vec!["type=none", "o=bind"], "device refused"),
    ];
    for (name, options, field) in cases {
        let mut args = vec!["volume", "create"];
        for o in &options {
            args.extend(["-o", o]);
        }
        let device = format!("device={missing}");
        if name == "gone" {
            args.extend(["-o", &device]);
        }
        args.push(name);
        h.wharf_ok(&args);
        let before = h.snapshot();
        let (status, answer) = h.api("POST", &format!("/wharf/volumes/{name}/mount"), r#"{"ID":"wk"}"#);
        assert!((400..500).contains(&status), "{name}: {status} {answer}\n{}", h.log());
        assert!(answer.contains(&format!("volume {name}")) && answer.contains(field), "{name}: {answer}");
        assert_same_snapshot(&before, &h.snapshot());
        h.wharf_ok(&["volume", "rm", name]);
    }
}

#[test]
fn a_plan_the_policy_refuses_or_a_link_of_another_kind_is_the_requests_fault() {
    wharf_tests::require_root!();
    // A driver that plans without the checks a driver owes: core and the executor still
    // answer with the request's fault, never a 500.
    let plugins = PluginDir::with(&["panicky_plugin"]);
    let h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    let kernel = json!({ "Name": "kernel", "Driver": "panicky" });
    refused(&h, "/networks/create", kernel.clone(), "sysctl \"kernel.panic\" is not under net.");
    assert_eq!(h.api("POST", "/networks/create", &kernel.to_string()).0, 403);

    h.in_host_ok(&["ip", "link", "add", "wkveth0", "type", "veth", "peer", "name", "wkveth1"]);
    let taken = json!({ "Name": "taken", "Driver": "panicky", "Options": { "bridge": "wkveth0" } });
    refused(&h, "/networks/create", taken.clone(), "link \"wkveth0\" exists and is a veth link, not a bridge");
    assert_eq!(h.api("POST", "/networks/create", &taken.to_string()).0, 409);
    assert!(h.in_host(&["ip", "link", "show", "wkveth0", "type", "veth"]).status.success());
}
