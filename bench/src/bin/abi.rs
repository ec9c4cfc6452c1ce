//! `abi`: the cost of one plugin call through the ABI against the same static call.
//!
//! Usage: `cargo run --release -p wharf-bench --bin abi [-- --smoke]`. It loads the bridge
//! plugin built next to this binary, as wharfd would, and calls `join` with a realistic
//! request both ways. Writes `bench/results/abi.md` and `abi.csv`.
//!
//! `--count static|plugin N` makes only N calls one way and writes nothing, for an
//! instruction count: run it under `valgrind --tool=callgrind` with N = 0 and N = 1000; the
//! difference of the totals over 1000 is the instructions per call.

use std::path::PathBuf;
use wharf_bench::{abi::join_request, measure, micros};
use wharf_engine::registry::Registry;
use wharf_sdk::NetworkDriver;

/// `--count WAY N`: which way to call (`static` or `plugin`) and how many times.
fn count_mode() -> Option<(String, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--count")?;
    let way = args.get(at + 1).cloned().filter(|w| w == "static" || w == "plugin");
    let calls = args.get(at + 2).and_then(|n| n.parse().ok());
    match (way, calls) {
        (Some(w), Some(n)) => Some((w, n)),
        _ => {
            eprintln!("abi: usage: abi --count static|plugin CALLS");
            std::process::exit(2);
        }
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (rounds, batch) = if smoke { (5, 20) } else { (41, 2000) };
    let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).expect("binary directory");
    let so = dir.join("libwharf_network_bridge.so");
    let mut registry = Registry::new();
    if let Err(e) = wharf_linux::plugins::load_file(&mut registry, &so) {
        eprintln!("abi: {e} (build the workspace first: cargo build --release --workspace)");
        std::process::exit(1);
    }
    let plugin = registry.network("bridge").expect("bridge driver registered");
    let direct = wharf_network_bridge::BridgeDriver;
    let req = join_request(&direct);
    let request_bytes = serde_json::to_vec(&req).map(|v| v.len()).unwrap_or(0);
    if let Some((way, calls)) = count_mode() {
        let driver: &dyn NetworkDriver = if way == "static" { &direct } else { &*plugin };
        for _ in 0..calls {
            std::hint::black_box(driver.join(std::hint::black_box(req.clone())).unwrap());
        }
        return;
    }

    let mut rows = Vec::new();
    for _ in 0..3 {
        let s = measure(rounds, batch, || {
            std::hint::black_box(direct.join(std::hint::black_box(req.clone())).unwrap());
        });
        let p = measure(rounds, batch, || {
            std::hint::black_box(plugin.join(std::hint::black_box(req.clone())).unwrap());
        });
        rows.push((s, p));
    }
    let (s, p) = rows[rows.len() / 2];
    let overhead = micros(p.median) - micros(s.median);
    let verdict = if micros(p.median) <= 15.0 { "meets" } else { "misses" };
    let report = format!(
        "# Plugin call cost: bridge `join`\n\n\
         Request: {request_bytes} bytes of JSON, as core sends it (dual-stack network, 2 published ports).\n\
         {rounds} rounds of {batch} calls, median of 3 runs interleaved static/plugin.\n\n\
         | path | median µs | p10 µs | p90 µs |\n|---|---|---|---|\n\
         | static (linked) | {:.2} | {:.2} | {:.2} |\n\
         | plugin ABI (.so, JSON) | {:.2} | {:.2} | {:.2} |\n\n\
         ABI overhead per call: {overhead:.2} µs; plugin call {verdict} the 15 µs target.\n",
        micros(s.median),
        micros(s.p10),
        micros(s.p90),
        micros(p.median),
        micros(p.p10),
        micros(p.p90),
    );
    print!("{report}");
    if !smoke {
        let row =
            |s: wharf_bench::Summary| format!("{:.3},{:.3},{:.3}", micros(s.median), micros(s.p10), micros(s.p90));
        let csv = format!("path,median_us,p10_us,p90_us\nstatic,{}\nplugin,{}\n", row(s), row(p));
        wharf_bench::save_results("abi", &report, &csv);
    }
}
