//! End-to-end: the API server under clients that misbehave.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use wharf_tests::Host;

#[test]
fn a_request_whose_headers_never_finish_is_closed() {
    wharf_tests::require_root!();
    let h = Host::start();
    let mut stalled = UnixStream::connect(h.socket()).unwrap();
    stalled.write_all(b"GET /_ping HTTP/1.1\r\nHost: wharf\r\nUser-Agent: half").unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    // Others are served meanwhile.
    let (status, body) = h.api("GET", "/_ping", "");
    assert_eq!((status, body.as_str()), (200, "OK"));
    let mut answer = Vec::new();
    let read = stalled.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(read.is_ok(), "the stalled connection was held open for {waited:?}: {read:?}");
    assert!(waited < Duration::from_secs(20), "closed only after {waited:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[test]
fn reads_are_answered_while_an_operation_is_in_flight() {
    wharf_tests::require_root!();
    let plugins = wharf_tests::PluginDir::with(&["panicky_plugin"]);
    let h = Host::start_with(&["--plugin-dir", plugins.arg()]);
    h.wharf_ok(&["network", "create", "--subnet", "10.65.0.0/24", "before"]);
    let socket = h.socket();
    let slow = std::thread::spawn(move || {
        wharf_tests::raw_api(&socket, "POST", "/networks/create", r#"{"Name":"slow","Driver":"panicky"}"#)
    });
    // Wait until the slow create holds the engine: a write queued behind it does not finish.
    std::thread::sleep(Duration::from_millis(300));
    for (path, wants) in
        [("/_ping", "OK"), ("/version", "ApiVersion"), ("/networks", "before"), ("/networks/before", "10.65.0.0/24")]
    {
        let started = Instant::now();
        let (status, body) = h.api("GET", path, "");
        let took = started.elapsed();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains(wants), "{path}: {body}");
        assert!(took < Duration::from_millis(50), "{path} took {took:?} while a create was in flight");
    }
    assert!(!slow.is_finished(), "the slow create finished before the reads were checked");
    let (status, body) = slow.join().unwrap();
    assert_eq!(status, 201, "{body}");
    let (_, list) = h.api("GET", "/networks", "");
    assert!(list.contains("\"slow\""), "a read after the write sees it: {list}");
    drop(h);
}
