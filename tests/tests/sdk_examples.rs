//! End-to-end: the SDK's example drivers, built as plugins and loaded by wharfd: traffic
//! through the `ptp` network example and files through the `quota` volume example.

use wharf_tests::{mounted_fstype, Host, PluginDir};

/// A host without the predefined bridge network, so nothing but the example touches
/// forwarding, with the example plugins loaded.
fn host(plugins: &PluginDir) -> Host {
    Host::start_with_config_and("[bridge]\nenabled = false\n", &["--plugin-dir", plugins.arg()])
}

#[test]
fn the_ptp_example_routes_between_sandboxes_without_a_bridge() {
    wharf_tests::require_root!();
    let plugins = PluginDir::with(&["wharf_example_driver"]);
    let h = host(&plugins);
    let forwarding = |h: &Host| h.in_host_ok(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim().to_string();
    assert_eq!(forwarding(&h), "0");
    h.wharf_ok(&["network", "create", "-d", "ptp", "--subnet", "10.70.0.0/24", "p"]);
    assert_eq!(forwarding(&h), "1", "the network turns forwarding on");
    for s in ["a", "b"] {
        h.wharf_ok(&["sandbox", "create", s]);
        h.wharf_ok(&["network", "connect", "p", s]);
    }
    let (ip_a, ip_b) = (h.sandbox_ip("a", "p"), h.sandbox_ip("b", "p"));
    let addr =
        String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "-o", "-4", "addr", "show", "eth0"]).stdout).into_owned();
    assert!(addr.contains(&format!("{ip_a}/32")), "{addr}");
    let route = String::from_utf8_lossy(&h.in_sandbox("a", &["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(route.contains("via 10.70.0.1 dev eth0") && route.contains("onlink"), "{route}");
    assert!(h.ping("a", &ip_b), "a reaches b through the host's routes");
    assert!(h.ping("b", &ip_a));
    assert!(h.ping("a", "10.70.0.1"));
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("master"), "no bridge: {links}");
    assert!(h.in_host_ok(&["ip", "-o", "link", "show", "type", "bridge"]).is_empty());

    // At debug, wharfd logs each driver call and plan step, and the plugin's own events.
    let log = h.log();
    for line in [
        "driver call ok driver=ptp method=\"join\"",
        "plan step done step=5 op=add route to 0.0.0.0/0",
        "ptp joins a sandbox sandbox=a",
    ] {
        assert!(log.contains(line), "{line:?} is not in the log:\n{}", wharf_tests::tail(&log, 30));
    }
    h.wharf_ok(&["network", "disconnect", "p", "a"]);
    assert!(!h.ping("b", &ip_a));
    h.wharf_ok(&["sandbox", "rm", "--force", "a", "b"]);
    h.wharf_ok(&["network", "rm", "p"]);
    assert_eq!(forwarding(&h), "0", "the value found is back");
    assert!(!h.in_host_ok(&["ip", "-o", "link", "show"]).contains("ptp"));
}

#[test]
fn the_quota_example_holds_files_and_caps_them() {
    wharf_tests::require_root!();
    let plugins = PluginDir::with(&["wharf_example_volume"]);
    let h = host(&plugins);
    h.wharf_ok(&["volume", "create", "-d", "quota", "-o", "mode=0750", "plain"]);
    h.wharf_ok(&["volume", "create", "-d", "quota", "-o", "size=16m", "capped"]);
    let err = h.wharf_err(&["volume", "create", "-d", "quota", "-o", "size=1k", "tiny"]);
    assert!(err.contains("below the smallest cap"), "{err}");
    let err = h.wharf_err(&["volume", "create", "-d", "quota", "-o", "color=red", "odd"]);
    assert!(err.contains("color"), "{err}");

    let plain = h.wharf_ok(&["volume", "mount", "plain", "--id", "c1"]).trim().to_string();
    std::fs::write(format!("{plain}/hello"), b"hi").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&plain).unwrap().permissions());
    assert_eq!(mode & 0o7777, 0o750);

    let capped = h.wharf_ok(&["volume", "mount", "capped", "--id", "c1"]).trim().to_string();
    assert_eq!(mounted_fstype(&capped).as_deref(), Some("ext4"));
    std::fs::write(format!("{capped}/small"), vec![7u8; 1 << 20]).unwrap();
    let big = std::fs::write(format!("{capped}/big"), vec![7u8; 32 << 20]).unwrap_err();
    assert_eq!(big.raw_os_error(), Some(28), "no space left beyond the cap: {big}");
    h.wharf_ok(&["volume", "unmount", "capped", "--id", "c1"]);
    assert!(mounted_fstype(&capped).is_none());
    let again = h.wharf_ok(&["volume", "mount", "capped", "--id", "c2"]).trim().to_string();
    assert_eq!(std::fs::read(format!("{again}/small")).unwrap().len(), 1 << 20, "the image keeps its files");
    h.wharf_ok(&["volume", "unmount", "capped", "--id", "c2"]);
    h.wharf_ok(&["volume", "unmount", "plain", "--id", "c1"]);

    for v in ["plain", "capped"] {
        h.wharf_ok(&["volume", "rm", v]);
    }
    assert!(!std::path::Path::new(&plain).exists() && !std::path::Path::new(&capped).exists());
}
