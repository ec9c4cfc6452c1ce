//! End-to-end: `--dry-run` prints the steps an operation would take, kernel steps and
//! firewall elements, and changes neither the kernel nor the store.

use wharf_tests::Host;

#[test]
fn dry_runs_print_the_plan_and_change_nothing() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    h.wharf_ok(&["network", "create", "--subnet", "10.71.0.0/24", "base"]);
    h.wharf_ok(&["network", "create", "--subnet", "10.72.0.0/24", "idle"]);
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.wharf_ok(&["sandbox", "create", "s2"]);
    h.wharf_ok(&["network", "connect", "base", "s1", "-p", "8080:80"]);
    h.wharf_ok(&["volume", "create", "v1"]);
    let before = h.snapshot();
    let volumes = std::fs::read_dir(h.dir.join("root/volumes")).unwrap().count();

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["network", "create", "--subnet", "10.73.0.0/24", "--dry-run", "n2"],
            &["create link br-", "add address 10.73.0.1/24", "inet wharf @bridges"],
        ),
        (
            &["network", "connect", "--dry-run", "base", "s2", "-p", "8081:80"],
            &["create link", "add address 10.71.0.3/24", "add route to 0.0.0.0/0", "add firewall fact", "8081"],
        ),
        (&["network", "disconnect", "--dry-run", "base", "s1"], &["delete link", "remove firewall fact", "8080"]),
        (&["network", "rm", "--dry-run", "idle"], &["delete link br-", "remove firewall fact"]),
        (&["volume", "create", "--dry-run", "vnew"], &["create directory", "vnew"]),
        (&["volume", "rm", "--dry-run", "v1"], &["v1"]),
        (&["sandbox", "rm", "--force", "--dry-run", "s1"], &["delete link", "8080", "s1"]),
    ];
    for (args, wants) in cases {
        let out = h.wharf_ok(args);
        assert!(out.starts_with("dry run: nothing was changed"), "{args:?}: {out}");
        for want in *wants {
            assert!(out.contains(want), "{args:?} should mention {want:?}:\n{out}");
        }
    }
    // A dry run of what would fail fails as the operation would, and changes nothing either.
    let err = h.wharf_err(&["network", "create", "--subnet", "10.71.0.0/25", "--dry-run", "clash"]);
    assert!(err.contains("overlaps"), "{err}");

    wharf_tests::assert_same_snapshot(&before, &h.snapshot());
    assert_eq!(std::fs::read_dir(h.dir.join("root/volumes")).unwrap().count(), volumes);
    let root: Vec<String> = std::fs::read_dir(h.dir.join("root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!root.iter().any(|n| n.starts_with("dry-run-")), "{root:?}");
    // And the real operations still work after.
    h.wharf_ok(&["network", "connect", "base", "s2", "-p", "8081:80"]);
    h.wharf_ok(&["sandbox", "rm", "--force", "s1"]);
}
