//! Sustained load: operations back to back, as a busy client issues them, next to the same
//! operations spaced out.
//!
//! The per-operation medians of the other sections come from interleaved rounds, so each
//! system rests while the others run; work a system leaves for later (wharf deletes retired
//! links in the background) is then done before its next operation and never counted.
//! Back to back, the next operation meets that work. Each system here runs its pairs
//! alone, one right after the other, and the report gives pairs per second of wall-clock
//! time beside the median pair.

use crate::peers::Endpoints;
use crate::report::Report;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `pairs` connect + disconnect pairs of endpoint `probe` on each of `peers`, back to back,
/// after one untimed pair.
/// Each pair is a sample of `connect + disconnect, back to back` (scale 1) in `section`; the
/// rate is a value in pairs per second.
pub fn endpoints(peers: &mut [Box<dyn Endpoints>], pairs: usize, probe: usize, section: &str, report: &mut Report) {
    for p in peers.iter_mut() {
        let label = p.label().to_string();
        // One pair first, untimed: the first connect may make the sandbox or container.
        if let Err(e) = p.connect(probe, &[]).and_then(|_| p.disconnect(probe)) {
            report.note(format!("{label}: left out of {section}: {e}"));
            continue;
        }
        let started = Instant::now();
        let mut done = 0;
        for _ in 0..pairs {
            match p.connect(probe, &[]).and_then(|c| p.disconnect(probe).map(|d| c + d)) {
                Ok(d) => {
                    report.add(section, "connect + disconnect, back to back", 1, &label, d);
                    done += 1;
                }
                Err(e) => {
                    report.note(format!("{label}: left out of {section}: {e}"));
                    break;
                }
            }
        }
        if done > 0 {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            report.value(section, &format!("{label}: connect + disconnect, back to back"), rate, "pairs/s");
        }
    }
}

/// A client program that makes networks, and the daemon it talks to.
#[derive(Debug, Clone)]
pub struct NetClient {
    /// What this is, for reports: `wharf CLI → wharfd`.
    pub label: String,
    /// The client program (`wharf`, `docker`), which takes `-H unix://SOCKET`.
    pub program: PathBuf,
    /// The daemon's socket.
    pub socket: PathBuf,
}

impl NetClient {
    /// `network create --subnet SUBNET NAME` then `network rm NAME`; the time of both.
    pub fn create_rm(&self, name: &str, subnet: &str) -> Result<(Duration, Duration), String> {
        let host = format!("unix://{}", self.socket.display());
        let run = |args: &[&str]| crate::timed(Command::new(&self.program).args(["-H", &host]).args(args));
        let create = run(&["network", "create", "--subnet", subnet, name])?;
        Ok((create, run(&["network", "rm", name])?))
    }
}

/// `pairs` network create + rm pairs through each of `clients`: back to back (samples of
/// `create + rm, back to back`, and a rate in pairs per second), then `gap` apart (samples
/// of `create + rm, <gap> apart`).
pub fn networks(clients: &[NetClient], pairs: usize, gap: Duration, section: &str, report: &mut Report) {
    let spaced = format!("create + rm, {} ms apart", gap.as_millis());
    for c in clients {
        let started = Instant::now();
        let mut done = 0;
        for _ in 0..pairs {
            match c.create_rm("sustained", "10.98.0.0/24") {
                Ok((cr, rm)) => {
                    report.add(section, "create + rm, back to back", 1, &c.label, cr + rm);
                    done += 1;
                }
                Err(e) => {
                    report.note(format!("{}: left out of {section}: {e}", c.label));
                    break;
                }
            }
        }
        if done > 0 {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            report.value(section, &format!("{}: network create + rm, back to back", c.label), rate, "pairs/s");
        }
        for _ in 0..done {
            std::thread::sleep(gap);
            match c.create_rm("sustained", "10.98.0.0/24") {
                Ok((cr, rm)) => report.add(section, &spaced, 1, &c.label, cr + rm),
                Err(e) => {
                    report.note(format!("{}: left out of {section}, spaced: {e}", c.label));
                    break;
                }
            }
        }
    }
}
