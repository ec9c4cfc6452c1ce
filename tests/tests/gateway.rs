//! End-to-end: which network gives a sandbox on several networks its default route, as
//! networks come and go, by gateway priority (`--gw-priority`), and across a restart.

use wharf_tests::Host;

fn default_route(h: &Host, sandbox: &str) -> String {
    let out = h.in_sandbox(sandbox, &["ip", "-4", "route", "show", "default"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_sandbox_keeps_a_default_route_and_the_highest_priority_gives_it() {
    wharf_tests::require_root!();
    let mut h = Host::start_named("wp");
    h.wharf_ok(&["network", "create", "--subnet", "10.61.0.0/24", "aa"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.62.0.0/24", "bb"]);
    h.wharf_ok(&["sandbox", "create", "s"]);
    h.wharf_ok(&["network", "connect", "aa", "s"]);
    h.wharf_ok(&["network", "connect", "bb", "s"]);
    // Equal priorities: the network whose name sorts first.
    assert!(default_route(&h, "s").starts_with("default via 10.61.0.1 "), "{}", default_route(&h, "s"));
    // The network that gave it goes: the other one gives it at once.
    h.wharf_ok(&["network", "disconnect", "aa", "s"]);
    assert!(default_route(&h, "s").starts_with("default via 10.62.0.1 "), "{}", default_route(&h, "s"));
    // A higher priority wins over the name, through the docker CLI too.
    h.docker_ok(&["network", "connect", "--gw-priority", "10", "aa", "s"]);
    assert!(default_route(&h, "s").starts_with("default via 10.61.0.1 "), "{}", default_route(&h, "s"));
    h.wharf_ok(&["network", "disconnect", "bb", "s"]);
    h.wharf_ok(&["network", "connect", "--gw-priority", "20", "bb", "s"]);
    assert!(default_route(&h, "s").starts_with("default via 10.62.0.1 "), "{}", default_route(&h, "s"));
    let routes =
        String::from_utf8_lossy(&h.in_sandbox("s", &["ip", "-4", "route", "show", "default"]).stdout).into_owned();
    assert_eq!(routes.lines().count(), 1, "one default route: {routes}");
    let inspect: serde_json::Value =
        serde_json::from_str(&h.docker_ok(&["inspect", "--type", "container", "s"])).unwrap();
    assert_eq!(inspect[0]["NetworkSettings"]["Networks"]["bb"]["GwPriority"], 20, "{inspect}");

    // Across a crash, with the default route gone meanwhile, start settles the same choice.
    h.kill_daemon();
    h.in_sandbox("s", &["ip", "route", "del", "default"]);
    h.start_daemon();
    assert!(default_route(&h, "s").starts_with("default via 10.62.0.1 "), "{}\n{}", default_route(&h, "s"), h.log());
}
