//! wharf-bench: measurement helpers shared by the benchmark binaries.

pub mod abi;
pub mod daemons;
pub mod dataplane;
pub mod dns;
pub mod iperf;
pub mod peers;
pub mod plot;
pub mod report;
pub mod sustained;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the focused benchmarks write what they measured: `bench/results/`.
pub fn results_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// Write a benchmark's report and its figures: `bench/results/NAME.md` and `NAME.csv`. A
/// report that cannot be written is said on stderr; the figures were printed anyway.
pub fn save_results(name: &str, md: &str, csv: &str) {
    let out = results_dir();
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join(format!("{name}.md")), md))
        .and_then(|()| std::fs::write(out.join(format!("{name}.csv")), csv));
    if let Err(e) = written {
        eprintln!("{name}: cannot write {}: {e}", out.display());
    }
}

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

/// Resident memory (KiB) of every process whose command line names `dir`: a daemon started
/// with its state there, and its helper processes (containerd and the shims, for dockerd).
pub fn rss_kib(dir: &Path) -> u64 {
    let needle = dir.display().to_string();
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let p = entry.path();
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<u64>().ok()));
        total += rss.unwrap_or(0);
    }
    total
}

/// Run `args` and time it; an error carries its stderr.
pub fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(d)
}

/// The program `program` on `PATH`, if installed.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}
