//! Teardown always completes: a sandbox whose namespace vanished behind wharf's back can be
//! disconnected and removed, and a driver whose `leave` fails does not keep a forced
//! removal from taking away what its endpoint made.

use std::process::{Command, Stdio};
use wharf_tests::{ok, Host};

/// A plugin directory holding this build's stubborn plugin only.
fn stubborn_plugins() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(wharf_tests::unique("ws-plugins"));
    std::fs::create_dir_all(&dir).unwrap();
    let built = wharf_tests::target_dir().join("examples/libstubborn_plugin.so");
    std::fs::copy(&built, dir.join("libstubborn.so")).unwrap();
    dir
}

#[test]
fn a_sandbox_whose_namespace_was_deleted_can_be_disconnected_and_removed() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.66.0.0/24", "n"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "n", "a"]);
    assert!(h.ping("a", "10.66.0.1"));
    // What `ip netns del` does, for a namespace kept outside /run/netns.
    let path = h.sandbox_path("a");
    ok("umount", &[&path]);
    std::fs::remove_file(&path).unwrap();
    h.wharf_ok(&["network", "disconnect", "n", "a"]);
    h.wharf_ok(&["sandbox", "rm", "a"]);
    h.wharf_ok(&["network", "rm", "n"]);
    assert!(h.log().contains("moot: the sandbox's namespace is gone"), "{}", wharf_tests::tail(&h.log(), 30));
    let links = h.in_host_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("veth"), "{links}");
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
    let plugins = stubborn_plugins();
    let h = Host::start_with(&["--plugin-dir", plugins.to_str().unwrap()]);
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
    let _ = std::fs::remove_dir_all(&plugins);
}
