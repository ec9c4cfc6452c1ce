//! End-to-end: the API server under clients that misbehave.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use wharf_tests::Host;

#[test]
fn a_request_whose_headers_never_finish_is_closed() {
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
