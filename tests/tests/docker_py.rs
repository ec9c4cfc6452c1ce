//! End-to-end: docker-py's network and volume methods against wharfd, through pytest
//! (`tests/py/test_docker_py.py`), the way docker-py's own integration tests run against
//! dockerd.

use wharf_tests::{target_dir, Host};

#[test]
fn docker_py_network_and_volume_suite_passes() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/py/test_docker_py.py");
    let out = h.in_host(&[
        "env",
        &format!("DOCKER_HOST={}", h.host_arg()),
        &format!("WHARF={}", target_dir().join("wharf").display()),
        "python3",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        h.dir.to_str().unwrap(),
        suite,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n--- wharfd log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        wharf_tests::tail(&h.log(), 30)
    );
    // Every test ran: none was skipped or deselected on the way.
    assert!(stdout.contains(" passed") && !stdout.contains("skipped"), "{stdout}");
}
