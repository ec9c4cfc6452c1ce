//! The allocator's share of the daemon's memory.
//!
//! glibc's malloc gives each thread that allocates under contention an arena of its own and
//! keeps freed memory in them for reuse; the daemon's threads (API workers, the netlink
//! thread, blocking threads) allocate little, so extra arenas mostly hold free pages. A
//! restart goes through every endpoint and sandbox (plans re-applied, a netlink socket
//! opened and closed for each namespace, resolvers brought back), and what that frees
//! stays in the heap, scattered among what lives on, unless it is given back explicitly.
//!
//! Freed memory is handed back once the daemon has gone quiet after some work (see
//! [`trim_when_idle`]), not on a timer: a daemon with nothing to do is not woken.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long the daemon must have been quiet after some work before freed memory is handed
/// back: long enough that a burst of requests is trimmed once, at its end.
pub const TRIM_AFTER: Duration = Duration::from_millis(250);

/// One malloc arena for every thread. Call before any thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Give the pages that malloc holds free back to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own locks; it is safe from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Trim once `work` has not been notified for [`TRIM_AFTER`] after a notification; wait
/// without a timer while nothing happens. Runs for as long as it is polled.
pub async fn trim_when_idle(work: Arc<Notify>) {
    loop {
        work.notified().await;
        while tokio::time::timeout(TRIM_AFTER, work.notified()).await.is_ok() {}
        trim();
    }
}
