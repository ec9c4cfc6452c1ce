//! A plugin's `tracing` output, carried to wharfd's log.
//!
//! A plugin is its own copy of `tracing`, so its events reach no subscriber of wharfd's.
//! [`crate::export_plugin!`] therefore also exports [`LOG_SYMBOL`]: core calls it once after
//! loading the library, with a [`LogFn`] and the most verbose level it logs, and the SDK
//! installs a subscriber in the plugin that hands every event at or above that level to
//! the function, which logs it in wharfd as an event of the plugin's target. A core that
//! does not know the symbol never calls it, and the plugin's events go nowhere, as before;
//! a plugin built before the symbol existed does not export it, and core loads it all the
//! same.
//!
//! Drivers log with `tracing` (re-exported as [`crate::tracing`]), spans included, though
//! only events are carried.

use std::fmt::Write;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The optional symbol through which core hands a plugin its [`LogFn`].
pub const LOG_SYMBOL: &[u8] = b"wharf_plugin_log_v1";

/// Core's log function: a level (1 error, 2 warn, 3 info, 4 debug, 5 trace), the event's
/// target and its message with its fields, as UTF-8 bytes the callee copies.
pub type LogFn =
    unsafe extern "C" fn(level: u32, target: *const u8, target_len: usize, message: *const u8, message_len: usize);

/// The signature of [`LOG_SYMBOL`]: install `log` as the plugin's subscriber, passing on
/// events up to `max_level` (a level code as in [`LogFn`]; 0 turns logging off).
pub type SetLoggerFn = unsafe extern "C" fn(log: LogFn, max_level: u32);

/// The code of `level` in [`LogFn`].
pub fn level_code(level: &Level) -> u32 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// The level filter of a code of [`LogFn`]: 0 is off, above 5 is trace.
pub fn level_filter(code: u32) -> LevelFilter {
    match code {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The subscriber [`install`] sets in a plugin.
struct Forward {
    log: LogFn,
    max: LevelFilter,
}

/// An event's message and fields, `message key=value …`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

impl Subscriber for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let meta = event.metadata();
        let target = meta.target();
        // SAFETY: `log` is core's function, given through `LOG_SYMBOL`; both byte ranges are
        // live for the call, and core copies what it keeps.
        unsafe { (self.log)(level_code(meta.level()), target.as_ptr(), target.len(), line.0.as_ptr(), line.0.len()) };
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Install the forwarding subscriber in this plugin; what [`LOG_SYMBOL`] does. A second
/// call changes nothing: a plugin's subscriber is set once.
pub fn install(log: LogFn, max_level: u32) {
    let _ = tracing::subscriber::set_global_default(Forward { log, max: level_filter(max_level) });
}
