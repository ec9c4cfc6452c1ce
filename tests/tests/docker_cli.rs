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
