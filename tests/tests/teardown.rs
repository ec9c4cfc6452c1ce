//! Teardown always completes: a sandbox whose namespace vanished behind wharf's back can be
//! disconnected and removed, and a driver whose `leave` fails does not keep a forced
//! removal from taking away what its endpoint made.

use std::process::{Command, Stdio};
use wharf_tests::{ok, Host, PluginDir};

#[test]
fn a_sandbox_whose_namespace_was_deleted_can_be_disconnected_and_removed() {
    wharf_tests::require_root!();
    // ptp's leave takes the sandbox's address and routes away step by step.
    let plugins = PluginDir::with(&["wharf_example_driver"]);
    let h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    h.wharf_ok(&["network", "create", "-d", "ptp", "--subnet", "10.66.0.0/24", "p"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.69.0.0/24", "b"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "p", "a"]);
    h.wharf_ok(&["network", "connect", "b", "a"]);
    assert!(h.ping("a", "10.66.0.1"));
    // What `ip netns del` does, for a namespace kept outside /run/netns.
    let path = h.sandbox_path("a");
    ok("umount", &[&path]);
    std::fs::remove_file(&path).unwrap();
    h.wharf_ok(&["network", "disconnect", "p", "a"]);
    assert!(h.log().contains("moot: the sandbox's namespace is gone"), "{}", wharf_tests::tail(&h.log(), 30));
    h.wharf_ok(&["network", "disconnect", "b", "a"]);
    h.wharf_ok(&["sandbox", "rm", "a"]);
    h.wharf_ok(&["network", "rm", "p"]);
    h.wharf_ok(&["network", "rm", "b"]);
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("veth") && !links.contains("ptp"), "{links}");
}

#[test]
fn a_sandbox_whose_runtime_process_died_can_be_removed_by_force() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.68.0.0/24", "n"]);
    let mut runtime = Command::new("unshare")
        .args(["--net", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start a process in a namespace of its own");
    let netns = format!("/proc/{}/ns/net", runtime.id());
    // Wait until unshare has made the namespace and become sleep.
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    while std::fs::read_link(&netns).is_ok_and(|l| l == own) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    h.wharf_ok(&["sandbox", "create", "r", "--netns", &netns]);
    h.wharf_ok(&["network", "connect", "n", "r"]);
    runtime.kill().unwrap();
    runtime.wait().unwrap();
    h.wharf_ok(&["sandbox", "rm", "--force", "r"]);
    h.wharf_ok(&["network", "rm", "n"]);
    assert!(h.wharf_ok(&["sandbox", "ls"]).lines().all(|l| !l.contains(" r ")));
}

#[test]
fn a_plugin_whose_leave_always_fails_does_not_block_a_forced_removal() {
    wharf_tests::require_root!();
    let plugins = PluginDir::with(&["stubborn_plugin"]);
    let h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    h.wharf_ok(&["network", "create", "-d", "stubborn", "--subnet", "10.67.0.0/24", "s"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["sandbox", "create", "b"]);
    h.wharf_ok(&["network", "connect", "s", "a"]);
    h.wharf_ok(&["network", "connect", "s", "b"]);
    let stb = |h: &Host| h.in_host_ok(&["ip", "-o", "link", "show"]).matches(": stb").count();
    assert_eq!(stb(&h), 2);

    let err = h.wharf_err(&["network", "disconnect", "s", "a"]);
    assert!(err.contains("never lets an endpoint go") && err.lines().count() == 1, "{err}");
    assert_eq!(stb(&h), 2, "a refused disconnect changes nothing");

    h.wharf_ok(&["network", "disconnect", "--force", "s", "a"]);
    h.wharf_ok(&["sandbox", "rm", "--force", "b"]);
    assert_eq!(stb(&h), 0, "the veths the joins made are gone");
    h.wharf_ok(&["sandbox", "rm", "a"]);
    h.wharf_ok(&["network", "rm", "s"]);
}
