//! Deterministic crash points for tests of crash recovery (debug builds only).
//!
//! With `WHARF_TEST_CRASH_AT` set, the daemon aborts, as a kill -9 would stop it, at the
//! named point: `journaled` (a plan is in the journal, no step has run), `after:TEXT` (a
//! step whose description contains TEXT has just been carried out) or a point the kernel
//! executor names itself (such as `retired-sandbox-end`, `retired-macvlan`). Release builds compile every
//! point to nothing.

#[cfg(debug_assertions)]
fn wanted() -> Option<&'static str> {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AT.get_or_init(|| std::env::var("WHARF_TEST_CRASH_AT").ok().filter(|s| !s.is_empty())).as_deref()
}

/// Abort here when this is the crash point asked for.
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    if wanted() == Some(name) {
        tracing::error!("crash point {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Abort after the step described as `done` when the crash point is `after:TEXT` and the
/// description contains TEXT.
pub fn after(done: &wharf_sdk::Op) {
    #[cfg(debug_assertions)]
    if let Some(text) = wanted().and_then(|w| w.strip_prefix("after:")) {
        let done = done.describe();
        if done.contains(text) {
            tracing::error!("crash point after {done}: aborting");
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = done;
}
