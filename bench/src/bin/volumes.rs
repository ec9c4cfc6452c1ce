//! `volumes`: volume create / mount / unmount / rm latency with 1 and with 1000 volumes
//! present, and `volume ls` with many volumes, wharf side by side with Docker's local
//! driver (Debian's `docker.io`). Both daemons run in private network namespaces with
//! private state directories and are driven through the same Docker API calls, A B A B.
//!
//! Usage: `cargo build --release --workspace && target/release/volumes [--smoke]`.
//! Writes `bench/results/volumes.md` and `volumes.csv` (not in smoke mode).

use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wharf_bench::daemons::Daemon;
use wharf_bench::micros;
use wharf_client::Client;

struct Bench {
    rt: tokio::runtime::Runtime,
}

impl Bench {
    fn call(&self, c: &Client, method: &str, path: &str, body: Option<serde_json::Value>) -> Duration {
        let t = Instant::now();
        let r = self.rt.block_on(c.call(method, path, body.as_ref()));
        let d = t.elapsed();
        if let Err(e) = r {
            panic!("{method} {path}: {e}");
        }
        d
    }

    fn fill(&self, c: &Client, prefix: &str, count: usize) {
        for i in 0..count {
            self.call(c, "POST", "/volumes/create", Some(json!({ "Name": format!("{prefix}{i}") })));
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (rounds, big, ls_count): (usize, usize, usize) = if smoke { (5, 20, 50) } else { (31, 1000, 10_000) };
    let bin_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).expect("binary dir");
    let dir = std::env::temp_dir().join(format!("wharf-bench-volumes-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let bench = Bench { rt };
    let mut daemons = vec![Daemon::wharfd(&bin_dir, &dir).unwrap_or_else(|e| panic!("{e}"))];
    match Daemon::dockerd(&dir) {
        Ok(d) => daemons.push(d),
        Err(e) if smoke => eprintln!("volumes: no Docker to compare with ({e}); measuring wharf alone"),
        Err(e) => panic!("{e}"),
    }
    let clients: Vec<Client> =
        daemons.iter().map(|d| Client::new(&d.socket.display().to_string()).expect("client")).collect();

    // (daemon, op, volumes present) -> samples
    let mut samples: BTreeMap<(&str, &str, usize), Vec<Duration>> = BTreeMap::new();
    let mut present = 1;
    for target in [1, big] {
        for c in &clients {
            bench.fill(c, &format!("fill{present}-"), target - present);
        }
        present = target;
        for round in 0..rounds {
            for (d, c) in daemons.iter().zip(&clients) {
                let name = format!("b{round}");
                let create = bench.call(c, "POST", "/volumes/create", Some(json!({ "Name": name })));
                samples.entry((d.name, "create", target)).or_default().push(create);
                if d.name == "wharf" {
                    let body = json!({ "ID": "bench" });
                    let m = bench.call(c, "POST", &format!("/wharf/volumes/{name}/mount"), Some(body.clone()));
                    samples.entry((d.name, "mount", target)).or_default().push(m);
                    let u = bench.call(c, "POST", &format!("/wharf/volumes/{name}/unmount"), Some(body));
                    samples.entry((d.name, "unmount", target)).or_default().push(u);
                }
                let rm = bench.call(c, "DELETE", &format!("/volumes/{name}"), None);
                samples.entry((d.name, "rm", target)).or_default().push(rm);
            }
        }
    }
    for c in &clients {
        bench.fill(c, "ls-", ls_count.saturating_sub(present));
    }
    for _ in 0..7 {
        for (d, c) in daemons.iter().zip(&clients) {
            let ls = bench.call(c, "GET", "/volumes", None);
            samples.entry((d.name, "ls", ls_count)).or_default().push(ls);
        }
    }

    let mut md = format!(
        "# Volumes: wharf and Docker's local driver\n\nMedian of {rounds} interleaved rounds per cell (ls: 7), \
         through the Docker API on each daemon's unix socket; µs.\n\n\
         | operation | volumes present | wharf | docker | docker / wharf |\n|---|---|---|---|---|\n"
    );
    let mut csv = String::from("operation,volumes_present,wharf_us,docker_us\n");
    let keys: Vec<(&str, usize)> = samples.keys().filter(|k| k.0 == "wharf").map(|k| (k.1, k.2)).collect();
    for (op, n) in keys {
        let w = median(samples[&("wharf", op, n)].clone());
        let d = samples.get(&("docker", op, n)).map(|v| median(v.clone()));
        let (ds, ratio) = match d {
            Some(d) => (format!("{:.0}", micros(d)), format!("{:.1}×", micros(d) / micros(w))),
            None if op == "mount" || op == "unmount" => ("no API".into(), "—".into()),
            None => ("—".into(), "—".into()),
        };
        md.push_str(&format!("| {op} | {n} | {:.0} | {ds} | {ratio} |\n", micros(w)));
        csv.push_str(&format!(
            "{op},{n},{:.1},{}\n",
            micros(w),
            d.map(|d| format!("{:.1}", micros(d))).unwrap_or_default()
        ));
    }
    md.push_str(
        "\nDocker has no API to mount a volume without running a container, so mount and unmount are \
         measured for wharf alone.\n",
    );
    print!("{md}");
    if !smoke {
        wharf_bench::save_results("volumes", &md, &csv);
    }
    drop(daemons);
    let _ = std::fs::remove_dir_all(&dir);
}
