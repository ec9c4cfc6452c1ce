//! The engine's own work per operation does not grow with the number of objects: a
//! connect, a disconnect, a sandbox's and a network's create and remove cost about as many
//! allocations beside 1000 endpoints as beside 10. Allocations are counted, not time, so the test does not depend on the machine's load;
//! an operation that copied the state, or walked every endpoint and copied what it found,
//! would allocate in proportion.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use wharf_engine::engine::tests::{connect, net, Fixture};
use wharf_engine::engine::Engine;

/// The system allocator, counting the allocations made on each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to the system allocator; counting only bumps a
// thread-local integer that has no destructor and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// How many allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

/// The CPU time this thread has used.
fn cpu_time() -> std::time::Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// An engine over the recording executor with networks `n` and `m`, `others` sandboxes on
/// `n` (one endpoint each), and sandbox `probe` on none, warmed: the first operation on a
/// sandbox, or on a network, fills caches of its own.
fn engine_beside(others: usize) -> (Fixture, Engine) {
    let f = Fixture::new();
    let e: Engine = f.engine();
    e.network_create(net("n")).unwrap();
    e.network_create(net("m")).unwrap();
    for i in 0..others {
        e.sandbox_create(&format!("s{i}"), None, Default::default()).unwrap();
        e.connect(connect("n", &format!("s{i}"))).unwrap();
    }
    e.sandbox_create("probe", None, Default::default()).unwrap();
    e.connect(connect("m", "probe")).unwrap();
    e.disconnect("m", "probe", false).unwrap();
    // The recorder's log keeps its room: its growth is not the engine's.
    f.rec.clear();
    (f, e)
}

/// The operations measured, by name, and the allocations of each beside `others`
/// endpoints: a connect of `probe` to `n` and its disconnect, then a sandbox's create and
/// remove, then a network's.
fn allocations_beside(others: usize) -> Vec<(&'static str, u64)> {
    let (_f, e) = engine_beside(others);
    vec![
        ("connect", allocations(|| drop(e.connect(connect("n", "probe")).unwrap()))),
        ("disconnect", allocations(|| e.disconnect("n", "probe", false).unwrap())),
        ("sandbox create", allocations(|| drop(e.sandbox_create("extra", None, Default::default()).unwrap()))),
        ("sandbox remove", allocations(|| e.sandbox_remove("extra", false).unwrap())),
        ("network create", allocations(|| drop(e.network_create(net("extra")).unwrap()))),
        ("network remove", allocations(|| e.network_remove("extra").unwrap())),
    ]
}

#[test]
fn operations_allocate_alike_beside_10_and_1000_endpoints() {
    let (small, large) = (allocations_beside(10), allocations_beside(1000));
    let mut grown = Vec::new();
    for ((op, at_10), (_, at_1000)) in small.into_iter().zip(large) {
        println!("{op}: {at_10} allocations beside 10 endpoints, {at_1000} beside 1000");
        if at_1000 * 10 > at_10 * 11 {
            grown.push(format!("{op}: {at_10} allocations beside 10 endpoints, {at_1000} beside 1000"));
        }
    }
    assert!(grown.is_empty(), "{grown:#?}");
}

/// The engine's CPU time per connect and per disconnect beside 10 and 1000 endpoints (the
/// store's and the recorder's included; the wait for the disk is not CPU time): the mean of
/// 200 of each. A measurement, not a check:
/// `cargo test -p wharf-engine --test flat_cost cpu_time -- --ignored --nocapture`.
#[test]
#[ignore]
fn cpu_time_per_connect_and_disconnect() {
    for others in [10, 1000] {
        let (f, e) = engine_beside(others);
        let (mut on, mut off) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for _ in 0..200 {
            let started = cpu_time();
            e.connect(connect("n", "probe")).unwrap();
            let connected = cpu_time();
            e.disconnect("n", "probe", false).unwrap();
            (on, off) = (on + (connected - started), off + (cpu_time() - connected));
            f.rec.clear();
        }
        println!("beside {others} endpoints: connect {:?}, disconnect {:?} of CPU time", on / 200, off / 200);
    }
}
