//! End-to-end: the unmodified docker CLI against wharfd, where Docker's answers matter to it:
//! `info`, `version`, `system df`, filters, prune, and volumes in use.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use wharf_tests::Host;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn docker_info_version_and_df_are_filled() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    let info = h.docker_ok(&["info"]);
    assert!(info.contains("Swarm: inactive"), "{info}");
    let root = std::fs::canonicalize(h.dir.join("root")).unwrap();
    assert!(info.contains(&format!("Docker Root Dir: {}", root.display())), "{info}");
    let memory = info.lines().find_map(|l| l.trim().strip_prefix("Total Memory: ")).unwrap_or_default();
    assert!(!memory.is_empty() && !memory.starts_with('0'), "{info}");
    let id = info.lines().find_map(|l| l.trim().strip_prefix("ID: ")).unwrap_or_default();
    assert_eq!(id.len(), 16, "{info}");
    let version = h.docker_ok(&["version", "--format", "{{json .Server}}"]);
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert!(v["GoVersion"].as_str().unwrap().starts_with("rustc "), "{version}");
    assert!(humantime::parse_rfc3339(v["BuildTime"].as_str().unwrap()).is_ok(), "{version}");
    assert!(!v["GitCommit"].as_str().unwrap().is_empty(), "{version}");
    assert_eq!(v["Components"][0]["Details"]["GitCommit"], v["GitCommit"], "{version}");

    h.docker_ok(&["volume", "create", "data"]);
    let mp = h.wharf_ok(&["volume", "mount", "data", "--id", "c1"]).trim().to_string();
    std::fs::write(format!("{mp}/blob"), vec![7u8; 1 << 20]).unwrap();
    let df = h.docker_ok(&["system", "df", "-v", "--format", "{{json .Volumes}}"]);
    let volumes: serde_json::Value = serde_json::from_str(&df).unwrap();
    let data = volumes.as_array().unwrap().iter().find(|v| v["Name"] == "data").expect("data in df");
    assert_eq!(data["Links"], "1", "{df}");
    assert!(data["Size"].as_str().unwrap().ends_with("MB"), "{df}");
    h.wharf_ok(&["volume", "unmount", "data", "--id", "c1"]);
}

#[test]
fn a_volume_in_use_is_not_removed_even_with_force() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    h.docker_ok(&["volume", "create", "busy"]);
    let mp = h.wharf_ok(&["volume", "mount", "busy", "--id", "c1"]).trim().to_string();
    std::fs::write(format!("{mp}/kept"), "yes").unwrap();
    let out = h.docker(&["volume", "rm", "-f", "busy"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("volume is in use"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(format!("{mp}/kept")).unwrap(), "yes");
    assert!(h.docker_ok(&["volume", "ls", "-q"]).lines().any(|l| l == "busy"));
    h.wharf_ok(&["volume", "unmount", "busy", "--id", "c1"]);
    h.docker_ok(&["volume", "rm", "-f", "busy"]);
    // Absent, with -f: no error, as with Docker.
    h.docker_ok(&["volume", "rm", "-f", "busy"]);
}

#[test]
fn filters_and_prune_follow_docker_and_the_api_version() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    h.docker_ok(&["network", "create", "my net"]);
    h.docker_ok(&["network", "create", "--label", "keep=yes", "kept"]);
    let out = h.docker(&["network", "ls", "--filter", "type=weird"]);
    assert!(!out.status.success() && stderr(&out).contains("invalid filter 'type=weird'"), "{}", stderr(&out));
    let pruned = h.docker_ok(&["network", "prune", "-f", "--filter", "until=1h"]);
    assert!(!pruned.contains("my net"), "{pruned}");
    let pruned = h.docker_ok(&["network", "prune", "-f", "--filter", "label!=keep=yes"]);
    assert!(pruned.contains("my net") && !pruned.contains("kept"), "{pruned}");

    h.docker_ok(&["volume", "create", "named"]);
    let pruned = h.docker_ok(&["volume", "prune", "-f"]);
    assert!(!pruned.contains("named"), "API 1.50 prunes anonymous volumes only: {pruned}");
    let old = Command::new("docker")
        .args(["-H", &h.host_arg(), "volume", "prune", "-f"])
        .env("DOCKER_API_VERSION", "1.41")
        .env("DOCKER_CONFIG", h.dir.join("docker-config"))
        .output()
        .unwrap();
    assert!(stdout(&old).contains("named"), "API 1.41 prunes named volumes too: {}{}", stdout(&old), stderr(&old));
}

#[test]
fn an_unknown_route_reads_the_body_before_it_answers() {
    wharf_tests::require_root!();
    let h = Host::start_named("wp");
    let body = format!(r#"{{"Image":"busybox","Env":["{}"]}}"#, "x".repeat(1 << 20));
    let mut s = UnixStream::connect(h.socket()).unwrap();
    let head = format!(
        "POST /v1.50/containers/create HTTP/1.1\r\nHost: wharf\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).expect("the whole body is taken");
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains("page not found: POST /containers/create"), "{text}");
    // The docker CLI gets Docker's answer, not a broken pipe.
    let out = h.docker(&["container", "create", "--name", "c", "busybox"]);
    assert!(!stderr(&out).contains("broken pipe"), "{}", stderr(&out));
}

/// The `Type Action name` of each event line `docker events --format '{{json .}}'` printed.
fn actions(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| {
            let name = e["Actor"]["Attributes"]["name"].as_str().or(e["Actor"]["ID"].as_str()).unwrap_or_default();
            format!("{} {} {name}", e["Type"].as_str().unwrap_or_default(), e["Action"].as_str().unwrap_or_default())
        })
        .collect()
}

#[test]
fn docker_events_streams_and_replays_network_and_volume_events() {
    wharf_tests::require_root!();
    let mut h = Host::start_named("wp");
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let follower = Command::new("docker")
        .args(["-H", &h.host_arg(), "events", "--format", "{{json .}}"])
        .env("DOCKER_CONFIG", h.dir.join("docker-config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The follower is subscribed once its request is in: wait for the daemon to log it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    h.wharf_ok(&["sandbox", "create", "s1"]);
    h.docker_ok(&["network", "create", "web"]);
    h.docker_ok(&["network", "connect", "web", "s1"]);
    h.docker_ok(&["network", "disconnect", "web", "s1"]);
    h.docker_ok(&["network", "rm", "web"]);
    h.docker_ok(&["volume", "create", "data"]);
    h.wharf_ok(&["volume", "mount", "data", "--id", "c1"]);
    h.wharf_ok(&["volume", "unmount", "data", "--id", "c1"]);
    h.docker_ok(&["volume", "rm", "data"]);
    h.docker_ok(&["volume", "prune", "-f"]);
    let expected = [
        "network create web",
        "network connect web",
        "network disconnect web",
        "network destroy web",
        "volume create data",
        "volume mount data",
        "volume unmount data",
        "volume destroy data",
        "volume prune ",
    ];
    let until = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1).to_string();
    let replayed = h.docker_ok(&["events", "--since", &start, "--until", &until, "--format", "{{json .}}"]);
    assert_eq!(actions(&replayed), expected, "{replayed}");
    let filtered = h.docker_ok(&[
        "events",
        "--since",
        &start,
        "--until",
        &until,
        "--filter",
        "event=connect",
        "--format",
        "{{json .}}",
    ]);
    assert_eq!(actions(&filtered), ["network connect web"], "{filtered}");
    let line: serde_json::Value = serde_json::from_str(filtered.lines().next().unwrap()).unwrap();
    let sandbox: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["sandbox", "inspect", "s1"])).unwrap();
    assert_eq!(line["Actor"]["Attributes"]["container"], sandbox[0]["Id"], "{line}");
    assert_eq!(line["scope"], "local");
    assert!(line["timeNano"].as_i64().unwrap() / 1_000_000_000 == line["time"].as_i64().unwrap());
    let bad = h.docker(&["events", "--since", &start, "--until", &until, "--filter", "type=weird"]);
    assert!(!bad.status.success() && stderr(&bad).contains("type=weird"), "{}", stderr(&bad));

    // The live follower saw the same, and the daemon stops in time with it still attached.
    assert!(h.stop_daemon(), "wharfd exits cleanly with an events stream open");
    let live = follower.wait_with_output().unwrap();
    assert_eq!(actions(&stdout(&live)), expected, "{}", stdout(&live));
}
