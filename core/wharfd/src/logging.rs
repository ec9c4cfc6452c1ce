//! The daemon's log: a level or tracing filter checked before anything starts, written to
//! stderr as text lines or as one JSON object per line.

use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per event (timestamp, level, target, fields).
    Json,
}

/// The filter `spec` names: a level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a
/// tracing filter whose every directive ends in a level (`wharfd=debug,info`). Anything
/// else, such as a misspelt level, is refused rather than read as a target name.
pub fn filter(spec: &str) -> Result<EnvFilter, String> {
    let refuse = |why: &str| {
        format!("log level {spec:?}: {why}; use error, warn, info, debug, trace or a filter such as wharfd=debug")
    };
    if spec.trim().is_empty() {
        return Err(refuse("empty"));
    }
    for directive in spec.split(',') {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l).trim();
        if level.parse::<LevelFilter>().is_err() {
            return Err(refuse(&format!("{level:?} is not a level")));
        }
    }
    EnvFilter::try_new(spec).map_err(|e| refuse(&e.to_string()))
}

/// Send the process's log to stderr, filtered by `level` (see [`filter`]), in `format`.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_are_accepted_and_misspellings_refused() {
        for ok in ["info", "DEBUG", "off", "wharfd=debug", "wharf_api=trace,warn"] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "verbose", "infos", "wharfd=loud", "debug,chatty"] {
            let e = filter(bad).unwrap_err();
            assert!(e.contains("log level") && e.contains("use error, warn"), "{bad}: {e}");
        }
    }
}
