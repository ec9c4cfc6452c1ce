//! End-to-end: network and endpoint options as Compose files and the docker CLI give them:
//! options no driver reads are kept with a warning, options a driver reads are validated,
//! IPAM options and endpoint driver options are kept and shown, link-local addresses land
//! on the sandbox's interface.

use serde_json::Value;
use wharf_tests::Host;

fn inspect(h: &Host, name: &str) -> Value {
    serde_json::from_str(&h.docker_ok(&["network", "inspect", name])).unwrap()
}

#[test]
fn options_no_driver_reads_are_kept_with_a_warning_and_known_ones_are_checked() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    let body = r#"{"Name":"shop","Options":{"com.example.compose.project":"shop"},"IPAM":{"Options":{"foo":"bar"}}}"#;
    let (status, created) = h.api("POST", "/networks/create", body);
    assert_eq!(status, 201, "{created}");
    let warning = serde_json::from_str::<Value>(&created).unwrap()["Warning"].as_str().unwrap().to_string();
    assert!(warning.contains("com.example.compose.project") && warning.contains("no effect"), "{warning}");
    // The wharf CLI prints the warning; the docker CLI takes such options as well.
    let out = h.wharf(&["network", "create", "-o", "x-compose=1", "--ipam-opt", "a=b", "other"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("WARNING: "), "{out:?}");
    h.docker_ok(&["network", "create", "-o", "com.example.x=1", "--ipam-opt", "foo=bar", "third"]);
    assert_eq!(inspect(&h, "third")[0]["IPAM"]["Options"], serde_json::json!({"foo": "bar"}));
    let net = inspect(&h, "shop");
    assert_eq!(net[0]["Options"]["com.example.compose.project"], "shop", "{net}");
    assert_eq!(net[0]["IPAM"]["Options"], serde_json::json!({"foo": "bar"}), "{net}");
    // The bridge works as ever, and the option survives a restart.
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "shop", "a"]);
    let mut h = h;
    h.stop_daemon();
    h.start_daemon();
    assert_eq!(inspect(&h, "shop")[0]["Options"]["com.example.compose.project"], "shop");
    assert!(h.in_sandbox("a", &["ip", "-4", "addr", "show", "eth0"]).status.success());

    // An option a driver reads is checked: a bad value, or another driver's option.
    let err = h.wharf_err(&["network", "create", "-o", "com.docker.network.bridge.enable_icc=maybe", "bad1"]);
    assert!(err.contains("enable_icc"), "{err}");
    let err = h.wharf_err(&["network", "create", "-o", "parent=eth0", "bad2"]);
    assert!(err.contains("parent"), "{err}");
    let names = h.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!names.contains("bad1") && !names.contains("bad2"), "{names}");
}

#[test]
fn endpoint_options_and_link_local_addresses_are_kept_and_applied() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    h.wharf_ok(&["network", "create", "--subnet", "10.66.0.0/24", "ll"]);
    h.wharf_ok(&["sandbox", "create", "s"]);
    h.docker_ok(&[
        "network",
        "connect",
        "--link-local-ip",
        "169.254.10.10",
        "--driver-opt",
        "com.example.ep=1",
        "ll",
        "s",
    ]);
    let addrs =
        String::from_utf8_lossy(&h.in_sandbox("s", &["ip", "-4", "-o", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(addrs.contains("169.254.10.10/16") && addrs.contains("10.66.0.2/24"), "{addrs}");
    let c: Value = serde_json::from_str(&h.docker_ok(&["inspect", "--type", "container", "s"])).unwrap();
    let ep = &c[0]["NetworkSettings"]["Networks"]["ll"];
    assert_eq!(ep["IPAMConfig"]["LinkLocalIPs"], serde_json::json!(["169.254.10.10"]), "{c}");
    assert_eq!(ep["DriverOpts"]["com.example.ep"], "1", "{c}");
    h.wharf_ok(&["sandbox", "create", "t"]);
    let out = h.docker(&["network", "connect", "--link-local-ip", "10.1.2.3", "ll", "t"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not link-local"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    h.wharf_ok(&["network", "disconnect", "ll", "s"]);
    let links = String::from_utf8_lossy(&h.in_sandbox("s", &["ip", "-o", "link"]).stdout).into_owned();
    assert!(!links.contains("eth0"), "{links}");
}

#[test]
fn a_network_takes_its_settings_from_a_configuration_only_network() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    h.in_host_ok(&["ip", "link", "add", "wpmv0", "type", "veth", "peer", "name", "wpmv1"]);
    h.in_host_ok(&["ip", "link", "set", "wpmv0", "up"]);
    h.docker_ok(&[
        "network",
        "create",
        "--config-only",
        "--subnet",
        "10.67.0.0/24",
        "--gateway",
        "10.67.0.254",
        "-o",
        "parent=wpmv0",
        "mvconf",
    ]);
    let conf = inspect(&h, "mvconf");
    assert_eq!((conf[0]["ConfigOnly"].as_bool(), conf[0]["Driver"].as_str()), (Some(true), Some("null")), "{conf}");
    // Nothing was made for it: no link, and its subnet is not taken.
    let links = h.in_host_ok(&["ip", "-o", "link"]);
    assert!(!links.contains("macvlan") && !links.contains("br-"), "{links}");
    h.wharf_ok(&["sandbox", "create", "s"]);
    let err = String::from_utf8_lossy(&h.docker(&["network", "connect", "mvconf", "s"]).stderr).into_owned();
    assert!(err.contains("configuration-only"), "{err}");

    h.docker_ok(&["network", "create", "-d", "macvlan", "--config-from", "mvconf", "mv"]);
    let net = inspect(&h, "mv");
    assert_eq!(net[0]["ConfigFrom"]["Network"], "mvconf", "{net}");
    assert_eq!(net[0]["IPAM"]["Config"][0]["Gateway"], "10.67.0.254", "{net}");
    assert_eq!(net[0]["Options"]["parent"], "wpmv0", "{net}");
    h.wharf_ok(&["network", "connect", "mv", "s"]);
    let link =
        String::from_utf8_lossy(&h.in_sandbox("s", &["ip", "-d", "-o", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(link.contains("10.67.0.1/24"), "{link}");
    let route = String::from_utf8_lossy(&h.in_sandbox("s", &["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(route.contains("via 10.67.0.254"), "{route}");

    // Settings of its own, a network that is no configuration, or removing one in use: refused.
    let err = h.wharf_err(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--config-from",
        "mvconf",
        "--subnet",
        "10.68.0.0/24",
        "x",
    ]);
    assert!(err.contains("give none"), "{err}");
    let err = h.wharf_err(&["network", "create", "--config-from", "mv", "y"]);
    assert!(err.contains("not a configuration-only network"), "{err}");
    let err = h.wharf_err(&["network", "rm", "mvconf"]);
    assert!(err.contains("in use by network mv"), "{err}");
    h.wharf_ok(&["network", "disconnect", "mv", "s"]);
    h.wharf_ok(&["network", "rm", "mv"]);
    h.wharf_ok(&["network", "rm", "mvconf"]);
}
