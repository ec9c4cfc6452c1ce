//! End-to-end: wharfd as an operator runs it: as a systemd service (readiness and
//! stopping notices), with its socket given to a group, with logs a collector reads, and
//! scraped for metrics.

use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Command;
use std::time::Duration;
use wharf_tests::{ok, run, target_dir, unique, Host, Netns};

#[test]
fn ready_is_notified_once_the_api_answers_and_stopping_on_shutdown() {
    wharf_tests::require_root!();
    let mut h = Host::stopped();
    let notify_path = h.dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    h.set_env("NOTIFY_SOCKET", Some(notify_path.to_str().unwrap()));
    let socket = h.socket();
    // At the moment READY arrives, the API must answer.
    let watcher = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let answered =
            UnixStream::connect(&socket).is_ok() && wharf_tests::raw_api(&socket, "GET", "/_ping", "").0 == 200;
        (message, answered, notify)
    });
    h.start_daemon();
    let (message, answered, notify) = watcher.join().unwrap();
    assert_eq!(message.trim(), "READY=1");
    assert!(answered, "READY=1 came before /_ping answered");
    assert!(h.stop_daemon(), "wharfd exits 0 on SIGTERM:\n{}", h.log());
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification on shutdown");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
}

/// A system group that exists for the length of a test.
struct Group {
    name: String,
}

impl Group {
    fn new() -> Group {
        let name = unique("wo");
        ok("groupadd", &["--system", &name]);
        Group { name }
    }

    fn gid(&self) -> u32 {
        let line = ok("getent", &["group", &self.name]);
        line.split(':').nth(2).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = run("groupdel", &[&self.name]);
    }
}

/// The wharf CLI run as user nobody, with `groups` as its supplementary groups.
fn wharf_as_nobody(h: &Host, groups: &str, args: &[&str]) -> std::process::Output {
    let wharf = target_dir().join("wharf");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        cmd.arg(format!("--groups={groups}"));
    }
    cmd.arg("--").arg(wharf).arg("-H").arg(h.host_arg()).args(args).output().unwrap()
}

#[test]
fn the_socket_group_lets_its_members_in_and_tells_others_why_not() {
    wharf_tests::require_root!();
    let group = Group::new();
    let h = Host::start_with(&["--group", &group.name]);
    let meta = std::fs::metadata(h.socket()).unwrap();
    assert_eq!(meta.gid(), group.gid(), "the socket belongs to the group");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let member = wharf_as_nobody(&h, &group.gid().to_string(), &["network", "ls"]);
    assert!(member.status.success(), "a member is let in: {}", String::from_utf8_lossy(&member.stderr));
    assert!(String::from_utf8_lossy(&member.stdout).contains("bridge"));

    let outsider = wharf_as_nobody(&h, "", &["network", "ls"]);
    assert!(!outsider.status.success());
    let err = String::from_utf8_lossy(&outsider.stderr);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        err.contains(&h.socket().display().to_string()) && err.contains(&group.name),
        "names the socket and group: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let missing = h.dir.join("missing.sock");
    let out = Command::new(target_dir().join("wharf"))
        .args(["-H", missing.to_str().unwrap(), "network", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is wharfd running?"), "{err}");
}

#[test]
fn an_unknown_group_or_log_level_stops_wharfd_before_it_starts() {
    wharf_tests::require_root!();
    let ns = Netns::new("wo");
    let dir = std::env::temp_dir().join(unique("wo-bad-flags"));
    let wharfd = target_dir().join("wharfd");
    let root = dir.join("root");
    let socket = dir.join("wharf.sock");
    for (flag, value, says) in
        [("--log-level", "verbose", "log level \"verbose\""), ("--group", "wo-no-such-group", "no such group")]
    {
        let out = ns.exec(&[
            wharfd.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--firewall",
            "none",
            flag,
            value,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
        assert!(!socket.exists(), "{flag} {value}: nothing served");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daemon's log lines as JSON objects. The only other text is what the panic hook
/// writes when the test plugin panics, and none of it starts with a brace.
fn json_log(h: &Host) -> Vec<Value> {
    h.log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}\n{}", h.log())))
        .collect()
}

#[test]
fn json_logs_carry_a_line_per_request_and_per_plan() {
    wharf_tests::require_root!();
    let plugins = wharf_tests::PluginDir::with(&["panicky_plugin"]);
    let h = Host::start_with(&["--log-format", "json", "--plugin-dir", plugins.arg()]);
    h.wharf_ok(&["network", "create", "--subnet", "10.66.0.0/24", "logged"]);
    h.wharf_err(&["network", "inspect", "nosuch"]);
    h.wharf_err(&["network", "create", "-d", "panicky", "boom"]);
    let lines = json_log(&h);
    let request = |method: &str, path: &str| {
        lines
            .iter()
            .find(|l| l["message"] == "API request" && l["method"] == method && l["path"] == path)
            .unwrap_or_else(|| panic!("no request line for {method} {path}:\n{}", h.log()))
    };
    let created = request("POST", "/networks/create");
    assert_eq!(created["level"], "DEBUG");
    assert_eq!(created["status"], 201);
    assert!(created["duration_ms"].as_f64().is_some(), "{created}");
    assert!(created["timestamp"].is_string(), "{created}");
    let missing = request("GET", "/networks/nosuch");
    assert_eq!((missing["level"].as_str(), missing["status"].as_u64()), (Some("DEBUG"), Some(404)), "{missing}");
    assert!(missing["error"].as_str().unwrap_or_default().contains("nosuch"), "{missing}");
    let failed = lines
        .iter()
        .find(|l| l["message"] == "API request" && l["status"] == 500)
        .unwrap_or_else(|| panic!("no line for the 500:\n{}", h.log()));
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert!(failed["error"].as_str().unwrap_or_default().contains("panicked"), "{failed}");
    let plan = lines
        .iter()
        .find(|l| l["message"] == "plan" && l["object"].as_str().is_some_and(|o| o.contains("logged")))
        .unwrap_or_else(|| panic!("no plan line for the network:\n{}", h.log()));
    assert_eq!(plan["level"], "DEBUG");
    assert!(plan["steps"].as_u64().unwrap() > 0, "{plan}");
    assert!(plan["duration_ms"].as_f64().is_some(), "{plan}");
    drop(h);
    drop(plugins);
}

/// The samples of a Prometheus text exposition, by series (`name{labels}`); panics on a
/// line that is neither a comment nor a sample.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = value.parse().unwrap_or_else(|e| panic!("bad value in {line}: {e}"));
        out.insert(series.to_string(), v);
    }
    out
}

fn scrape(h: &Host) -> std::collections::BTreeMap<String, f64> {
    let (status, body) = h.api("GET", "/metrics", "");
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

#[test]
fn metrics_count_operations_objects_and_repairs() {
    wharf_tests::require_root!();
    let plugins = wharf_tests::PluginDir::with(&["panicky_plugin"]);
    let mut h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    let before = scrape(&h);
    let get = |m: &std::collections::BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    h.wharf_ok(&["network", "create", "--subnet", "10.67.0.0/24", "m1"]);
    h.wharf_err(&["network", "create", "m1"]);
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.wharf_ok(&["network", "connect", "m1", "s1"]);
    h.wharf_ok(&["volume", "create", "v1"]);
    h.wharf_err(&["network", "create", "-d", "panicky", "boom"]);
    let after = scrape(&h);
    let moved = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(moved(r#"wharf_operations_total{operation="network_create",result="ok"}"#), 1.0, "{after:#?}");
    assert_eq!(moved(r#"wharf_operations_total{operation="network_create",result="refused"}"#), 1.0);
    assert_eq!(moved(r#"wharf_operations_total{operation="network_create",result="failed"}"#), 1.0);
    assert_eq!(moved(r#"wharf_operations_total{operation="network_connect",result="ok"}"#), 1.0);
    assert_eq!(moved(r#"wharf_operation_duration_seconds_count{operation="network_connect"}"#), 1.0);
    assert!(get(&after, r#"wharf_operation_duration_seconds_sum{operation="network_connect"}"#) > 0.0);
    assert_eq!(moved(r#"wharf_plugin_panics_total{driver="panicky"}"#), 1.0);
    let listed = h.wharf_ok(&["network", "ls", "-q"]).lines().count() as f64;
    assert_eq!(get(&after, "wharf_networks"), listed);
    assert_eq!(get(&after, "wharf_endpoints"), 1.0);
    assert_eq!(get(&after, "wharf_sandboxes"), 1.0);
    assert_eq!(get(&after, "wharf_volumes"), 1.0);

    // Someone flushes the ruleset (in this private namespace): wharfd restores its tables.
    h.in_host_ok(&["nft", "flush", "ruleset"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&scrape(&h), "wharf_firewall_restores_total") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no firewall restore counted:\n{}", h.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // A network's bridge address goes missing while wharfd is down: the start repairs it.
    h.stop_daemon();
    let bridges = h.in_host_ok(&["ip", "-o", "-4", "addr", "show", "to", "10.67.0.0/24"]);
    let bridge = bridges.split_whitespace().nth(1).expect("the network's bridge").to_string();
    h.in_host_ok(&["ip", "addr", "flush", "dev", &bridge]);
    h.start_daemon();
    assert!(get(&scrape(&h), "wharf_reconcile_repairs_total") >= 1.0, "{}", h.log());

    // A plan cut short by a crash (debug builds' crash points) is rolled back at the next start.
    if cfg!(debug_assertions) {
        h.stop_daemon();
        h.set_env("WHARF_TEST_CRASH_AT", Some("journaled"));
        h.start_daemon();
        assert!(!h.wharf(&["sandbox", "create", "s2"]).status.success());
        h.kill_daemon();
        h.set_env("WHARF_TEST_CRASH_AT", None);
        h.start_daemon();
        assert!(get(&scrape(&h), "wharf_plan_rollbacks_total") >= 1.0, "{}", h.log());
    }
    drop(h);
    drop(plugins);
}

#[test]
fn wharfd_runs_on_the_sample_config_and_picks_subnets_from_its_pools() {
    wharf_tests::require_root!();
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/wharf.toml")).unwrap();
    let h = Host::start_with_config(&sample);
    h.wharf_ok(&["network", "create", "picked"]);
    let v: Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", "picked"])).unwrap();
    let subnet = v[0]["IPAM"]["Config"][0]["Subnet"].as_str().unwrap().to_string();
    assert!(subnet.starts_with("172.18."), "the first subnet of the first pool: {subnet}");
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.wharf_ok(&["network", "connect", "picked", "s1"]);
    assert!(h.sandbox_ip("s1", "picked").starts_with("172.18."));
}

/// One HTTP/1.0 GET from inside the host namespace, read until the server closes.
fn http_get(h: &Host, addr: &str, path: &str) -> String {
    let (ip, port) = addr.rsplit_once(':').expect("host:port");
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('{ip}', {port}), timeout=10)\n\
         s.sendall(b'GET {path} HTTP/1.0\\r\\n\\r\\n')\n\
         print(b''.join(iter(lambda: s.recv(65536), b'')).decode(), end='')\n"
    );
    h.in_host_ok(&["python3", "-c", &script])
}

#[test]
fn metrics_are_served_on_the_configured_tcp_address_too() {
    wharf_tests::require_root!();
    let h = Host::start_with_config("metrics_addr = \"127.0.0.1:9323\"\n");
    h.wharf_ok(&["volume", "create", "counted"]);
    let out = http_get(&h, "127.0.0.1:9323", "/metrics");
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {out}"));
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
    assert_eq!(samples(body).get("wharf_volumes"), Some(&1.0), "{body}");
    // Only the metrics: the API stays on the socket.
    let api = http_get(&h, "127.0.0.1:9323", "/networks");
    assert!(api.starts_with("HTTP/1.0 404") || api.starts_with("HTTP/1.1 404"), "{api}");
}

#[test]
fn a_socket_nobody_listens_on_gets_the_not_running_hint() {
    wharf_tests::require_root!();
    let dir = std::env::temp_dir().join(unique("wo-stale"));
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("wharf.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = Command::new(target_dir().join("wharf"))
        .args(["-H", stale.to_str().unwrap(), "volume", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Connection refused") && err.contains("is wharfd running?"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
