//! `cluster`: multi-host overlay networks over etcd. For each number of hosts (private
//! namespaces on one underlay bridge, one wharfd each, one private etcd), one overlay
//! network with ENDPOINTS endpoints per host; then:
//!
//! - convergence: the time from `network connect` returning on host A until a sandbox on
//!   host B pings the new endpoint (JOINS joins, median and p99);
//! - a sampled full-mesh reachability check (failures counted);
//! - wharfd's resident memory per host, and etcd's keys and bytes per endpoint;
//! - the time until every other host has dropped the endpoints of a host killed with -9;
//! - iperf3 across two hosts over the overlay, against the same pair over the underlay.
//!
//! Usage (root): `cargo build --workspace && target/debug/cluster [--hosts 2,5,10,20]
//! [--endpoints 50] [--joins 50] [--ttl 5]`. Writes `bench/results/cluster.md` and
//! `cluster.png` (convergence against the number of hosts).

use std::time::{Duration, Instant};
use wharf_tests::{Host, Underlay};

struct Args {
    hosts: Vec<usize>,
    endpoints: usize,
    joins: usize,
    ttl: u64,
}

fn args() -> Args {
    let mut a = Args { hosts: vec![2, 5, 10, 20], endpoints: 50, joins: 50, ttl: 5 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--hosts" => a.hosts = value.split(',').map(|v| v.parse().expect("a number of hosts")).collect(),
            "--endpoints" => a.endpoints = value.parse().expect("endpoints per host"),
            "--joins" => a.joins = value.parse().expect("number of joins"),
            "--ttl" => a.ttl = value.parse().expect("seconds"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One size's results.
struct Row {
    hosts: usize,
    endpoints: usize,
    median: Duration,
    p99: Duration,
    mesh_checked: usize,
    mesh_failed: usize,
    mesh_first_lost: usize,
    rss_kib: u64,
    keys_per_endpoint: f64,
    bytes_per_endpoint: f64,
    drop_after_kill: Duration,
    /// iperf3 between two hosts' sandboxes over the overlay, and between the same hosts
    /// over the underlay, Gbit/s.
    overlay_gbps: f64,
    underlay_gbps: f64,
}

/// iperf3 for 2 s from namespace `from` to `to` (served in namespace `server`): Gbit/s.
fn throughput(server: &str, from: &str, to: &str) -> f64 {
    let _server = wharf_bench::iperf::Iperf::serve(server).unwrap_or_else(|e| panic!("{e}"));
    wharf_bench::iperf::client(from, to, 5201, 2).unwrap_or_else(|e| panic!("{e}"))
}

/// Overlay and underlay throughput, each the best of ROUNDS runs taken in turn: on a
/// machine shared with other work one run says more about the neighbours than the path.
fn data_plane(a: &Host, b: &Host) -> (f64, f64) {
    const ROUNDS: usize = 3;
    let (mut overlay, mut underlay) = (0f64, 0f64);
    let to = b.sandbox_ip("e0", "ov");
    let underlay_ip = b.in_host_ok(&["ip", "-4", "-o", "addr", "show", "dev", "u0"]);
    let underlay_ip = underlay_ip.split_whitespace().nth(3).and_then(|a| a.split('/').next()).expect("u0's address");
    for _ in 0..ROUNDS {
        overlay = overlay.max(throughput(&b.sandbox_path("e0"), &a.sandbox_path("e0"), &to));
        underlay = underlay.max(throughput(&b.ns.path(), &a.ns.path(), underlay_ip));
    }
    (overlay, underlay)
}

fn pings(h: &Host, from: &str, to: &str) -> bool {
    h.in_sandbox(from, &["ping", "-c", "1", "-W", "1", to]).status.success()
}

/// Forget what sandbox `sb` learnt of its neighbours. Every namespace here shares one
/// kernel, and the kernel's neighbour table is one for all of them (1024 entries that are
/// not permanent, machine-wide): the hundreds of sandboxes pinging each other would fill
/// it, which a real host with its own kernel never sees, and a full table fails ARP.
fn forget_neighbours(h: &Host, sb: &str) {
    h.in_sandbox(sb, &["ip", "neigh", "flush", "all"]);
}

/// etcd's metric `name`, read from its /metrics page inside the underlay namespace.
fn etcd_metric(u: &Underlay, name: &str) -> f64 {
    let url = u.etcd.url().replace("etcd://", "http://") + "/metrics";
    let out = u.ns.exec(&["curl", "-s", &url]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn run(hosts_n: usize, a: &Args) -> Row {
    let u = Underlay::start(a.ttl);
    let hosts: Vec<Host> = (1..=hosts_n).map(|n| u.host(n as u8)).collect();
    hosts[0].wharf_ok(&["network", "create", "-d", "overlay", "--subnet", "10.95.0.0/16", "ov"]);
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !h.wharf(&["network", "inspect", "ov"]).status.success() {
            assert!(Instant::now() < deadline, "the network did not reach every host");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Fill: ENDPOINTS per host, the hosts in parallel; e0 on each host is its probe.
    std::thread::scope(|s| {
        for h in &hosts {
            s.spawn(move || {
                for k in 0..a.endpoints {
                    let sb = format!("e{k}");
                    h.wharf_ok(&["sandbox", "create", &sb]);
                    h.wharf_ok(&["network", "connect", "ov", &sb]);
                }
            });
        }
    });
    // Convergence: connect on A, then ping from B's probe until it answers.
    let mut times = Vec::new();
    for j in 0..a.joins {
        let (ha, hb) = (&hosts[j % hosts_n], &hosts[(j + 1) % hosts_n]);
        let sb = format!("j{j}");
        ha.wharf_ok(&["sandbox", "create", &sb]);
        ha.wharf_ok(&["network", "connect", "ov", &sb]);
        let joined = Instant::now();
        let ip = ha.sandbox_ip(&sb, "ov");
        while !hb.in_sandbox("e0", &["ping", "-c", "1", "-W", "0.05", &ip]).status.success() {
            assert!(joined.elapsed() < Duration::from_secs(30), "{ip} never became reachable");
        }
        times.push(joined.elapsed());
        forget_neighbours(hb, "e0");
        forget_neighbours(ha, &sb);
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    // A sample of the full mesh: every host's probe to an endpoint on every other host.
    // A first ping may be lost to a busy host; three in a row are not.
    let (mut checked, mut failed, mut first_lost) = (0, 0, 0);
    for (i, h) in hosts.iter().enumerate() {
        for (j, other) in hosts.iter().enumerate().filter(|(j, _)| *j != i) {
            let sb = format!("e{}", (i + j) % a.endpoints);
            let ip = other.sandbox_ip(&sb, "ov");
            checked += 1;
            let reached = pings(h, "e0", &ip);
            if reached {
                forget_neighbours(h, "e0");
                forget_neighbours(other, &sb);
                continue;
            }
            first_lost += 1;
            if !(pings(h, "e0", &ip) || pings(h, "e0", &ip)) {
                failed += 1;
                let v: serde_json::Value = serde_json::from_str(&other.wharf_ok(&["sandbox", "inspect", &sb])).unwrap();
                let mac = v[0]["Networks"]["ov"]["MacAddress"].as_str().unwrap_or_default().to_string();
                let fdb = h.in_host_ok(&["bridge", "fdb", "show"]);
                let probe = h.sandbox_ip("e0", "ov");
                let neigh = |x: &Host, ip: &str| x.in_host_ok(&["ip", "neigh", "show", "to", ip]).trim().to_string();
                let sb_neigh = |x: &Host, s: &str, ip: &str| {
                    String::from_utf8_lossy(&x.in_sandbox(s, &["ip", "neigh", "show", "to", ip]).stdout)
                        .trim()
                        .to_string()
                };
                eprintln!(
                    "host {} cannot reach {ip} ({mac}) on host {}; fdb has it: {}; neighbour there: [{}]; \
                     the other host's entry for the probe {probe}: [{}]; the probe's: [{}]; the target's: [{}]",
                    i + 1,
                    j + 1,
                    fdb.contains(&mac),
                    neigh(h, &ip),
                    neigh(other, &probe),
                    sb_neigh(h, "e0", &ip),
                    sb_neigh(other, &sb, &probe),
                );
            }
        }
    }
    // Data plane: host 1's probe to host 2's over the overlay, then the hosts themselves
    // over the underlay they share.
    let (overlay_gbps, underlay_gbps) = data_plane(&hosts[0], &hosts[1]);
    let rss = hosts.iter().map(|h| wharf_bench::rss_kib(&h.dir)).sum::<u64>() / hosts_n as u64;
    let endpoints = (hosts_n * a.endpoints + a.joins) as f64;
    let keys = etcd_metric(&u, "etcd_debugging_mvcc_keys_total");
    let bytes = etcd_metric(&u, "etcd_mvcc_db_total_size_in_use_in_bytes");
    // Kill the last host; time until no other host has an FDB entry towards it.
    let mut hosts = hosts;
    let mut dead = hosts.pop().expect("at least one host");
    let dead_vtep = format!("dst 192.168.80.{hosts_n} ");
    let dev = {
        let v: serde_json::Value = serde_json::from_str(&hosts[0].wharf_ok(&["network", "inspect", "ov"])).unwrap();
        format!("vx-{}", &v[0]["Id"].as_str().unwrap()[..12])
    };
    dead.kill_daemon();
    let killed = Instant::now();
    for h in &hosts {
        while h.in_host_ok(&["bridge", "fdb", "show", "dev", &dev]).contains(&dead_vtep) {
            assert!(killed.elapsed() < Duration::from_secs(a.ttl * 4 + 10), "the dead host's entries stayed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let drop_after_kill = killed.elapsed();
    Row {
        hosts: hosts_n,
        endpoints: endpoints as usize,
        median: at(0.5),
        p99: at(0.99),
        mesh_checked: checked,
        mesh_failed: failed,
        mesh_first_lost: first_lost,
        rss_kib: rss,
        keys_per_endpoint: keys / endpoints,
        bytes_per_endpoint: bytes / endpoints,
        drop_after_kill,
        overlay_gbps,
        underlay_gbps,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cluster: needs root (it makes network namespaces)");
        std::process::exit(1);
    }
    let a = args();
    let mut rows = Vec::new();
    for &n in &a.hosts {
        let row = run(n, &a);
        eprintln!(
            "{} hosts: convergence median {:.0} ms, p99 {:.0} ms; mesh {}/{} failed; dropped a killed host after {:.1} s; \
             iperf3 {:.2} Gbit/s over the overlay, {:.2} over the underlay",
            n,
            ms(row.median),
            ms(row.p99),
            row.mesh_failed,
            row.mesh_checked,
            row.drop_after_kill.as_secs_f64(),
            row.overlay_gbps,
            row.underlay_gbps
        );
        rows.push(row);
    }
    let mut md = format!(
        "# Multi-host overlay over etcd\n\n`target/debug/cluster --endpoints {} --joins {} --ttl {}`: one overlay network, \
         ENDPOINTS endpoints per host, one etcd; convergence is the time from `network connect` returning on one host \
         until a sandbox on the next host pings the new endpoint. iperf3: one TCP stream for 2 s from a sandbox on host 1 to one \
         on host 2 over the overlay, and from host 1 to host 2 over their underlay, best of 3 rounds taken in turn. \
         What moves the overlay / underlay ratio and what does not (GRO, checksums, connection tracking): \
         bench/RESULTS.md, measured with bench/overlay-knobs.sh.\n\n\
         | hosts | endpoints | convergence median (ms) | p99 (ms) | mesh failures (first pings lost) | wharfd RSS (KiB) | etcd keys / endpoint | etcd bytes / endpoint | killed host dropped after (s) | iperf3 overlay (Gbit/s) | underlay (Gbit/s) | overlay / underlay |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        a.endpoints, a.joins, a.ttl
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {}/{} ({}) | {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} |\n",
            r.hosts,
            r.endpoints,
            ms(r.median),
            ms(r.p99),
            r.mesh_failed,
            r.mesh_checked,
            r.mesh_first_lost,
            r.rss_kib,
            r.keys_per_endpoint,
            r.bytes_per_endpoint,
            r.drop_after_kill.as_secs_f64(),
            r.overlay_gbps,
            r.underlay_gbps,
            r.overlay_gbps / r.underlay_gbps
        ));
    }
    let out = wharf_bench::results_dir();
    std::fs::write(out.join("cluster.md"), &md).expect("write cluster.md");
    let series = vec![
        ("median".to_string(), rows.iter().map(|r| (r.hosts as f64, ms(r.median) * 1e3)).collect()),
        ("p99".to_string(), rows.iter().map(|r| (r.hosts as f64, ms(r.p99) * 1e3)).collect()),
    ];
    if let Err(e) =
        wharf_bench::plot::scaling(&out.join("cluster.png"), "overlay convergence over etcd", "hosts", &series)
    {
        eprintln!("cluster: no plot: {e}");
    }
    print!("{md}");
}
