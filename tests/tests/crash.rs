//! End-to-end: kill -9 at a chosen point of an operation (the debug build's
//! `WHARF_TEST_CRASH_AT`), restart, and check that the kernel and the API agree; and the
//! paths that must never let a removal reach through a mount or a symlink.

use serde_json::Value;
use std::path::Path;
use wharf_tests::{mounted_fstype, Host};

const CRASH_AT: &str = "WHARF_TEST_CRASH_AT";

/// Restart wharfd set to abort at `point`, run the wharf command `args` (which must die
/// with it), then start it again normally.
fn crash_during(h: &mut Host, point: &str, args: &[&str]) {
    h.stop_daemon();
    h.set_env(CRASH_AT, Some(point));
    h.start_daemon();
    let out = h.wharf(args);
    assert!(!out.status.success(), "{args:?} should have died at {point}:\n{}", h.log());
    h.kill_daemon();
    assert!(h.log().contains("aborting"), "wharfd never reached the crash point {point}:\n{}", h.log());
    h.set_env(CRASH_AT, None);
    h.start_daemon();
}

fn mountpoint(h: &Host, name: &str) -> String {
    let v: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", name])).unwrap();
    v[0]["Mountpoint"].as_str().unwrap().to_string()
}

/// How many mounts sit exactly at `path` (the kernel's resolved path).
fn mounts_at(path: &Path) -> usize {
    let path = std::fs::canonicalize(path).unwrap().display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().filter(|l| l.split_whitespace().nth(4) == Some(path.as_str())).count()
}

#[test]
fn a_sandbox_create_killed_midway_leaves_the_name_free() {
    let mut h = Host::start();
    crash_during(&mut h, "after:create namespace", &["sandbox", "create", "s1"]);
    assert!(!h.wharf_ok(&["sandbox", "ls"]).contains("s1"));
    assert!(!h.netns_dir().join("s1").exists(), "the namespace is removed at start");
    assert!(!h.dir.join("etc-netns/s1").exists());
    h.wharf_ok(&["sandbox", "create", "s1"]);
    assert!(h.in_sandbox("s1", &["ip", "link", "show", "lo"]).status.success());
}

#[test]
fn a_sandbox_rm_killed_midway_is_finished_at_start() {
    let mut h = Host::start();
    h.wharf_ok(&["sandbox", "create", "s1"]);
    crash_during(&mut h, "after:remove directory", &["sandbox", "rm", "s1"]);
    assert!(!h.wharf_ok(&["sandbox", "ls"]).contains("s1"));
    assert!(!h.netns_dir().join("s1").exists(), "{}", h.log());
    h.wharf_ok(&["sandbox", "create", "s1"]);
}

#[test]
fn a_name_taken_by_a_foreign_namespace_is_a_conflict() {
    let h = Host::start();
    std::fs::create_dir_all(h.netns_dir()).unwrap();
    let theirs = h.netns_dir().join("theirs");
    std::fs::write(&theirs, "").unwrap();
    let (status, body) = h.api("POST", "/wharf/sandboxes", r#"{"Name":"theirs"}"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains(&theirs.display().to_string()), "{body}");
    assert!(theirs.exists(), "never deleted");
}

#[test]
fn a_volume_rm_killed_midway_is_finished_and_the_name_reusable() {
    let mut h = Host::start();
    h.wharf_ok(&["volume", "create", "data"]);
    let mp = mountpoint(&h, "data");
    std::fs::write(format!("{mp}/old"), "x").unwrap();
    crash_during(&mut h, "after:remove directory", &["volume", "rm", "data"]);
    assert!(h.wharf_err(&["volume", "inspect", "data"]).contains("not found"), "not listed with its data gone");
    h.wharf_ok(&["volume", "create", "data"]);
    let mp = mountpoint(&h, "data");
    assert!(Path::new(&mp).is_dir(), "a working volume, not the broken one");
    assert!(!Path::new(&format!("{mp}/old")).exists());
}

#[test]
fn a_disconnect_killed_between_the_ends_recovers_cleanly() {
    let mut h = Host::start();
    h.wharf_ok(&["network", "create", "--subnet", "10.91.0.0/24", "n"]);
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.wharf_ok(&["network", "connect", "n", "s1"]);
    crash_during(&mut h, "retired-sandbox-end", &["network", "disconnect", "n", "s1"]);
    let v: Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", "s1"])).unwrap();
    assert!(v[0]["Networks"].as_object().is_none_or(|n| n.is_empty()), "{v}");
    let links = String::from_utf8_lossy(&h.in_sandbox("s1", &["ip", "-o", "link"]).stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "only lo is left: {links}");
    // A second restart finds nothing to repair or complain about.
    h.stop_daemon();
    let logged = h.log().len();
    h.start_daemon();
    let after = h.log()[logged..].to_string();
    assert!(!after.contains("WARN") && !after.contains("failed"), "{after}");
    h.wharf_ok(&["network", "connect", "n", "s1"]);
    assert!(h.ping("s1", "10.91.0.1"));
}

#[test]
fn a_root_through_a_symlink_mounts_once_and_unmounts() {
    let mut h = Host::start();
    h.stop_daemon();
    let real = h.dir.join("real-root");
    std::fs::rename(h.dir.join("root"), &real).unwrap();
    std::os::unix::fs::symlink(&real, h.dir.join("root")).unwrap();
    h.start_daemon();
    h.wharf_ok(&["volume", "create", "small", "-o", "size=16M"]);
    let mp = mountpoint(&h, "small");
    for _ in 0..3 {
        h.wharf_ok(&["volume", "mount", "small", "--id", "w"]);
        assert_eq!(mounts_at(Path::new(&mp)), 1, "one loop mount, never a stack");
        h.wharf_ok(&["volume", "unmount", "small", "--id", "w"]);
        assert_eq!(mounts_at(Path::new(&mp)), 0, "unmounted");
    }
    let image = real.join("volumes/small/disk.img").display().to_string();
    let loops = wharf_tests::ok("losetup", &["-j", &image]);
    assert!(loops.trim().is_empty(), "no loop device left: {loops}");
    h.wharf_ok(&["volume", "rm", "small"]);
    assert!(!real.join("volumes/small").exists());
}

#[test]
fn volume_rm_never_deletes_through_a_live_mount() {
    let h = Host::start();
    let src = h.dir.join("precious");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("file"), "keep me").unwrap();
    h.wharf_ok(&["volume", "create", "vv"]);
    let mp = mountpoint(&h, "vv");
    // Someone else bind-mounts their directory onto the volume's data directory.
    nix::mount::mount(Some(&src), mp.as_str(), None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    let err = h.wharf_err(&["volume", "rm", "vv"]);
    assert!(err.contains("mount point"), "{err}");
    assert_eq!(std::fs::read_to_string(src.join("file")).unwrap(), "keep me");
    assert!(h.wharf_ok(&["volume", "ls"]).contains("vv"), "a refused removal keeps the volume");
    nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::empty()).unwrap();
    h.wharf_ok(&["volume", "rm", "vv"]);
    assert_eq!(std::fs::read_to_string(src.join("file")).unwrap(), "keep me");
}

#[test]
fn a_volume_in_use_is_refused_even_with_force() {
    let h = Host::start();
    h.wharf_ok(&["volume", "create", "busy", "-o", "type=tmpfs", "-o", "o=size=4m"]);
    let mp = h.wharf_ok(&["volume", "mount", "busy", "--id", "c1"]).trim().to_string();
    let (status, body) = h.api("DELETE", "/volumes/busy?force=1", "");
    assert_eq!(status, 409, "{body}");
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"));
    h.wharf_ok(&["volume", "unmount", "busy", "--id", "c1"]);
    let (status, _) = h.api("DELETE", "/volumes/busy?force=1", "");
    assert_eq!(status, 204);
}
