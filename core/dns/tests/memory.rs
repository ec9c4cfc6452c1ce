//! What serving one sandbox costs in the daemon's memory, besides the kernel's socket
//! buffers: the bytes allocated and still held per served sandbox, its entry in the name
//! table included, measured with a counting allocator over many sandboxes. The sockets are
//! bound to ephemeral loopback ports and no packet is sent.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use wharf_dns::{Entry, Origin, Resolver, Sockets, Upstreams};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The budget per sandbox: its UDP task (128 bytes) and registration (256), its record
/// (about 150), its table entry and the maps' room for them.
const BUDGET: isize = 1536;

#[test]
fn a_served_sandbox_costs_at_most_1_5_kib() {
    const N: usize = 500;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let resolver = Resolver::new(rt.handle().clone());
    let opener: wharf_dns::Opener = Arc::new(|_, _| Err(std::io::Error::other("no namespace here")));
    let ids: Vec<String> = (0..N).map(|i| format!("{i:064x}")).collect();
    let names: Vec<String> = (0..N).map(|i| format!("sandbox-{i}")).collect();
    let sockets: Vec<Sockets> = (0..N)
        .map(|_| Sockets {
            udp: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            tcp: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        })
        .collect();
    let upstreams = Upstreams { servers: vec!["192.0.2.53:53".parse().unwrap()], opener };
    // Warm the runtime up so its own first allocations are not counted.
    let warm = Sockets {
        udp: std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        tcp: std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    resolver.serve("warm", warm, upstreams.clone()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = HELD.load(Ordering::Relaxed);
    for (i, s) in sockets.into_iter().enumerate() {
        let entry = Entry {
            sandbox: ids[i].clone(),
            name: names[i].clone(),
            aliases: vec![format!("alias-{i}")],
            ipv4: Some([10, 1, (i / 250) as u8, (i % 250) as u8 + 2].into()),
            ipv6: None,
            origin: Origin::Local,
        };
        resolver.table().insert("network", entry);
        resolver.serve(&ids[i], s, upstreams.clone()).unwrap();
    }
    // Let every task reach its first wait.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let per = (HELD.load(Ordering::Relaxed) - before) / N as isize;
    println!("held per served sandbox: {per} bytes");
    assert!(per <= BUDGET, "a served sandbox holds {per} bytes, over {BUDGET}");
    assert_eq!(resolver.served(), N + 1);
}
