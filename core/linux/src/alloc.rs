//! The allocator's share of the daemon's memory.
//!
//! glibc's malloc gives each thread that allocates under contention an arena of its own and
//! keeps freed memory in them for reuse; the daemon's threads (API workers, the netlink
//! thread, blocking threads) allocate little, so extra arenas mostly hold free pages. A
//! restart goes through every endpoint and sandbox (plans re-applied, a netlink socket
//! opened and closed for each namespace, resolvers brought back), and what that frees
//! stays in the heap, scattered among what lives on, unless it is given back explicitly.

use std::time::Duration;

/// How often freed memory is handed back to the kernel while the daemon runs.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);

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
