//! wharf-bench: measurement helpers shared by the benchmark binaries.

pub mod abi;
pub mod daemons;

use std::time::{Duration, Instant};

/// Median and spread of repeated timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median per-iteration time.
    pub median: Duration,
    /// 10th percentile.
    pub p10: Duration,
    /// 90th percentile.
    pub p90: Duration,
}

/// Time `rounds` batches of `batch` calls of `f`, and summarise the per-call times.
pub fn measure(rounds: usize, batch: usize, mut f: impl FnMut()) -> Summary {
    let mut per_call: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch.max(1) {
                f();
            }
            t.elapsed() / batch.max(1) as u32
        })
        .collect();
    per_call.sort();
    let at = |q: f64| per_call[((per_call.len() - 1) as f64 * q).round() as usize];
    Summary { median: at(0.5), p10: at(0.1), p90: at(0.9) }
}

/// Microseconds, for reports.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
