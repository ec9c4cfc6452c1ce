//! End-to-end: volumes with real mounts, loop devices and size limits.

use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use wharf_tests::{mounted_fstype, ok, Host};

fn mountpoint(h: &Host, name: &str) -> String {
    let v: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", name])).unwrap();
    v[0]["Mountpoint"].as_str().unwrap().to_string()
}

#[test]
fn a_plain_volume_is_a_directory_with_the_asked_owner_and_mode() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["volume", "create", "plain", "-o", "uid=1234", "-o", "gid=4321", "-o", "mode=0750"]);
    let mp = mountpoint(&h, "plain");
    assert!(mp.ends_with("/volumes/plain/_data"), "{mp}");
    let meta = std::fs::metadata(&mp).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (1234, 4321, 0o750));
    assert_eq!(h.wharf_ok(&["volume", "mount", "plain", "--id", "c1"]).trim(), mp);
    assert!(mounted_fstype(&mp).is_none(), "a plain volume needs no mount");
    h.wharf_ok(&["volume", "unmount", "plain", "--id", "c1"]);
    h.wharf_ok(&["volume", "rm", "plain"]);
    assert!(!std::path::Path::new(&mp).exists());
}

#[test]
fn tmpfs_is_mounted_by_the_first_user_and_unmounted_after_the_last() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["volume", "create", "scratch", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=8m,mode=0750"]);
    let mp = mountpoint(&h, "scratch");
    assert_eq!(mounted_fstype(&mp), None, "not mounted before the first user");
    h.wharf_ok(&["volume", "mount", "scratch", "--id", "a"]);
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"));
    h.wharf_ok(&["volume", "mount", "scratch", "--id", "b"]);
    h.wharf_ok(&["volume", "mount", "scratch", "--id", "b"]);
    h.wharf_ok(&["volume", "unmount", "scratch", "--id", "a"]);
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"), "b still holds it");
    assert!(h.wharf_err(&["volume", "rm", "scratch"]).contains("in use"));
    h.wharf_ok(&["volume", "unmount", "scratch", "--id", "b"]);
    assert_eq!(mounted_fstype(&mp), None);
    assert!(h.wharf_err(&["volume", "unmount", "scratch", "--id", "b"]).contains("not mounted by"));
    h.wharf_ok(&["volume", "mount", "scratch", "--id", "c"]);
    assert!(h.wharf_err(&["volume", "rm", "--force", "scratch"]).contains("in use"), "Docker refuses even with -f");
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"), "a refused removal leaves the mount alone");
    h.wharf_ok(&["volume", "unmount", "scratch", "--id", "c"]);
    h.wharf_ok(&["volume", "rm", "scratch"]);
    assert!(h.wharf_err(&["volume", "inspect", "scratch"]).contains("not found"));
}

#[test]
fn size_is_enforced_with_enospc() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&["volume", "create", "small", "-o", "size=16M"]);
    let mp = h.wharf_ok(&["volume", "mount", "small", "--id", "w"]).trim().to_string();
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("ext4"));
    let fill = wharf_tests::run("dd", &["if=/dev/zero", &format!("of={mp}/big"), "bs=1M", "count=32"]);
    assert!(!fill.status.success(), "writing 32 MiB into a 16 MiB volume must fail");
    assert!(String::from_utf8_lossy(&fill.stderr).contains("No space left on device"));
    let v: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", "small"])).unwrap();
    assert_eq!(v[0]["Status"]["size"], 16 * 1024 * 1024);
    h.wharf_ok(&["volume", "unmount", "small", "--id", "w"]);
    assert_eq!(mounted_fstype(&mp), None, "the loop mount is gone");
    h.wharf_ok(&["volume", "rm", "small"]);
    assert!(!h.dir.join("root/volumes/small").exists());
    assert!(h.wharf_err(&["volume", "create", "tiny", "-o", "size=1k"]).contains("size"));
}

#[test]
fn bind_and_block_device_types_mount_what_they_name() {
    wharf_tests::require_root!();
    let h = Host::start();
    let src = h.dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "hi").unwrap();
    let device = format!("device={}", src.display());
    h.wharf_ok(&["volume", "create", "b1", "-o", "type=none", "-o", "o=bind", "-o", &device]);
    let mp = h.wharf_ok(&["volume", "mount", "b1", "--id", "x"]).trim().to_string();
    assert_eq!(std::fs::read_to_string(format!("{mp}/hello")).unwrap(), "hi");
    h.wharf_ok(&["volume", "unmount", "b1", "--id", "x"]);
    assert!(!std::path::Path::new(&format!("{mp}/hello")).exists());

    let img = h.dir.join("disk.img");
    std::fs::File::create(&img).unwrap().set_len(16 << 20).unwrap();
    ok("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]);
    let device = format!("device={}", img.display());
    h.wharf_ok(&["volume", "create", "e1", "-o", "type=ext4", "-o", &device, "-o", "o=loop"]);
    let mp = h.wharf_ok(&["volume", "mount", "e1", "--id", "x"]).trim().to_string();
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("ext4"));
    h.wharf_ok(&["volume", "unmount", "e1", "--id", "x"]);
}

#[test]
fn a_failed_network_mount_names_the_cause_and_hides_the_password() {
    wharf_tests::require_root!();
    let h = Host::start();
    h.wharf_ok(&[
        "volume",
        "create",
        "share",
        "-o",
        "type=cifs",
        "-o",
        "device=//192.0.2.1/share",
        "-o",
        "o=username=u,password=hunter2",
    ]);
    let err = h.wharf_err(&["volume", "mount", "share", "--id", "x"]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("mount") && !err.contains("hunter2"), "{err}");
    let inspect = h.wharf_ok(&["volume", "inspect", "share"]);
    assert!(!inspect.contains("hunter2") && inspect.contains("password=***"), "{inspect}");
    assert_eq!(h.wharf_ok(&["volume", "inspect", "share"]).matches("\"RefCount\": 0").count(), 1);
}

#[test]
fn bind_volumes_stay_under_the_allowed_bases() {
    wharf_tests::require_root!();
    let base = std::env::temp_dir().join(wharf_tests::unique("wharf-bind-base-"));
    let outside = std::env::temp_dir().join(wharf_tests::unique("wharf-bind-out-"));
    std::fs::create_dir_all(base.join("data")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(base.join("file"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, base.join("escape")).unwrap();
    let h = Host::start_with_config(&format!("bind_allowed_bases = [{:?}]\n", base.display().to_string()));
    let path = |p: &std::path::Path| format!("path={}", p.display());
    h.wharf_ok(&["volume", "create", "-d", "bind", "good", "-o", &path(&base.join("data"))]);
    assert_eq!(mountpoint(&h, "good"), base.join("data").display().to_string());
    let refusals = [
        (path(&outside), "not under"),
        (format!("path={}/data/../data", base.display()), ".."),
        (path(&base.join("escape")), "not under"),
        (path(&base.join("file")), "not a directory"),
        (path(&base.join("missing")), ""),
        ("path=relative/dir".to_string(), "absolute"),
    ];
    for (opt, why) in refusals {
        let err = h.wharf_err(&["volume", "create", "-d", "bind", "bad", "-o", &opt]);
        assert!(err.contains("path") && err.contains(why), "{opt}: {err}");
    }
    h.wharf_ok(&["volume", "rm", "good"]);
    assert!(base.join("data").exists(), "removing a bind volume keeps the data");
    drop(h);
    std::fs::remove_dir_all(&base).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn mounts_and_references_survive_a_crash() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.wharf_ok(&["volume", "create", "keep", "-o", "type=tmpfs", "-o", "o=size=4m"]);
    let mp = h.wharf_ok(&["volume", "mount", "keep", "--id", "c1"]).trim().to_string();
    std::fs::write(format!("{mp}/state"), "alive").unwrap();
    h.kill_daemon();
    h.start_daemon();
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"));
    assert_eq!(std::fs::read_to_string(format!("{mp}/state")).unwrap(), "alive");
    let v: Value = serde_json::from_str(&h.wharf_ok(&["volume", "inspect", "keep"])).unwrap();
    assert_eq!(v[0]["UsageData"]["RefCount"], 1);
    assert_eq!(v[0]["Options"]["type"], "tmpfs", "options persist");
    // After a reboot the mount is gone but the reference is not: start re-mounts it.
    h.stop_daemon();
    nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();
    h.start_daemon();
    assert_eq!(mounted_fstype(&mp).as_deref(), Some("tmpfs"), "{}", h.log());
    h.wharf_ok(&["volume", "unmount", "keep", "--id", "c1"]);
    assert_eq!(mounted_fstype(&mp), None);
}

#[test]
fn prune_reports_the_space_it_reclaimed() {
    wharf_tests::require_root!();
    let h = Host::start();
    let anon = h.wharf_ok(&["volume", "create"]).trim().to_string();
    std::fs::write(format!("{}/blob", mountpoint(&h, &anon)), vec![7u8; 1 << 20]).unwrap();
    let (status, body) = h.api("POST", "/volumes/prune", "");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["VolumesDeleted"][0], anon.as_str());
    assert!(v["SpaceReclaimed"].as_u64().unwrap() >= 1 << 20, "{body}");
}
