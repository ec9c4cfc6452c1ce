//! `harness`: wharf side by side with Docker, netavark and the CNI plugins, in one run.
//!
//! Usage: `bash bench/run [--smoke] [--install-peers] [--only SECTION]... [--rounds N]`
//! (which builds in release and runs `target/release/harness`).
//!
//! Every system runs in private network namespaces of its own, made for the run and removed
//! at its end. The compared commands are interleaved (A B C A B C …) over repeated rounds, and
//! each cell reports the median. Sections:
//!
//! - `endpoints bridge`, `endpoints macvlan`: connect and disconnect of one endpoint with 1, 10,
//!   100 and 1000 endpoints on the network: the wharf CLI, wharf's API, `docker network
//!   connect`/`disconnect` on running containers, netavark setup/teardown, CNI ADD/DEL, the
//!   baseline build's API with `--baseline`; for bridge networks also the kernel's own cost
//!   of a bridge port, with `ip` alone.
//! - `ports`: the same with one published port, with 1 and 1000 ports published.
//! - `networks`: network create and rm with 1, 100 and 500 networks present: the docker CLI
//!   against wharfd, the docker CLI against dockerd, the wharf CLI (and the baseline build's,
//!   with `--baseline`), and the kernel's part with `ip` alone in wharfd's namespace.
//! - `sustained`: the same operations back to back, as a busy client issues them:
//!   connect + disconnect on a bridge and a macvlan network for every peer, and network
//!   create + rm for every client, in pairs per second, beside network create + rm 200 ms
//!   apart (see [`wharf_bench::sustained`]).
//! - `daemon`: wharfd's memory idle and with 1000 endpoints (next to dockerd's), and the
//!   time from a restart with 1000 endpoints until the API serves again, state reconciled.
//! - `data plane`: iperf3 between two sandboxes on a bridge network against a bare veth
//!   pair, and through a published port against a direct (routed) connection.
//! - `dns`: the embedded resolver against aardvark-dns and Docker's (see
//!   [`wharf_bench::dns`]): sequential latency of an internal name, `dnsperf` queries per
//!   second at 50 outstanding for an internal and a forwarded name, the daemon's CPU time
//!   per query; and wharf's connect + disconnect on a network with names and on one without.
//!
//! Output: `bench/results/harness.md`, `harness.csv` and PNG plots of the scaling curves
//! (`--smoke` writes them under the system's temporary directory instead).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use wharf_bench::daemons::Daemon;
use wharf_bench::peers::wharf::{Via, Wharf};
use wharf_bench::peers::{Endpoints, Kind, NetSpec, Port};
use wharf_bench::plot;
use wharf_bench::report::Report;
use wharf_bench::sustained::NetClient;

/// The endpoint id whose connect and disconnect are measured; fillers are 0, 1, 2, ….
const PROBE: usize = 60_000;

struct Opts {
    smoke: bool,
    install_peers: bool,
    skip_docker: bool,
    /// Endpoint sections: wharf (and the baseline) against the kernel alone, no other peer.
    skip_peers: bool,
    only: Vec<String>,
    rounds: usize,
    bin_dir: PathBuf,
    /// Another build's binaries, measured beside this one's in the dns section.
    baseline: Option<PathBuf>,
    work: PathBuf,
    out: PathBuf,
}

impl Opts {
    fn parse() -> Opts {
        let mut args = std::env::args().skip(1);
        let bin_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).expect("binary dir");
        let work = std::env::temp_dir().join(format!("wharf-harness-{}", std::process::id()));
        let mut o = Opts {
            smoke: false,
            install_peers: false,
            skip_docker: false,
            skip_peers: false,
            only: Vec::new(),
            rounds: 0,
            bin_dir,
            baseline: None,
            out: wharf_bench::results_dir(),
            work,
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--smoke" => o.smoke = true,
                "--install-peers" => o.install_peers = true,
                "--skip-docker" => o.skip_docker = true,
                "--skip-peers" => o.skip_peers = true,
                "--only" => o.only.push(args.next().expect("--only SECTION")),
                "--rounds" => o.rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds N"),
                "--out" => o.out = PathBuf::from(args.next().expect("--out DIR")),
                "--baseline" => o.baseline = Some(PathBuf::from(args.next().expect("--baseline BINDIR"))),
                "-h" | "--help" => {
                    println!(
                        "usage: harness [--smoke] [--install-peers] [--skip-docker] [--skip-peers] [--only endpoints|ports|networks|sustained|daemon|dataplane|dns]... \
                         [--rounds N] [--out DIR] [--baseline BINDIR (another build's wharfd, beside this one in endpoints, ports, networks, sustained and dns)]"
                    );
                    std::process::exit(0);
                }
                other => panic!("unknown argument {other:?} (see --help)"),
            }
        }
        if o.rounds == 0 {
            o.rounds = if o.smoke { 3 } else { 15 };
        }
        if o.smoke {
            o.out = std::env::temp_dir().join("wharf-harness-smoke");
        }
        o
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }

    /// Endpoint counts of the scaling curves.
    fn endpoint_scales(&self) -> Vec<usize> {
        if self.smoke {
            vec![1, 10]
        } else {
            vec![1, 10, 100, 1000]
        }
    }
}

/// Install the compared systems with apt-get (only with `--install-peers`).
fn install_peers() {
    let pkgs = [
        "docker.io",
        "podman",
        "netavark",
        "aardvark-dns",
        "containernetworking-plugins",
        "iperf3",
        "iptables",
        "dnsperf",
        "dnsmasq-base",
    ];
    eprintln!("harness: apt-get install {}", pkgs.join(" "));
    let ok = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = Command::new("apt-get").arg("update").status();
        let ok = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "apt-get install failed");
    }
}

fn spec(kind: Kind, i: usize) -> NetSpec {
    NetSpec {
        kind,
        name: format!("bench{i}"),
        subnet: format!("10.{}.0.0/16", 200 + i),
        gateway: format!("10.{}.0.1", 200 + i),
        bridge: format!("wbbr{i}"),
        parent: format!("wbpar{i}"),
    }
}

/// Every system that can attach endpoints to a network like `spec`; the first is the base
/// of the ratios. Systems that cannot be made are noted and left out.
fn endpoint_peers(o: &Opts, report: &mut Report, spec: &NetSpec) -> Vec<Box<dyn Endpoints>> {
    let mut peers: Vec<Box<dyn Endpoints>> = Vec::new();
    for via in [Via::Api, Via::Cli] {
        match Wharf::new(via, &o.bin_dir, spec, &o.work) {
            Ok(w) => peers.push(Box::new(w)),
            Err(e) => panic!("wharf: {e}"),
        }
    }
    if let Some(dir) = &o.baseline {
        let w = Wharf::new(Via::Api, dir, spec, &o.work).unwrap_or_else(|e| panic!("baseline wharf: {e}"));
        peers.push(Box::new(w.labelled("baseline wharf API")));
    }
    if spec.kind == Kind::Bridge {
        match wharf_bench::peers::kernel::IpAlone::new(spec) {
            Ok(p) => peers.push(Box::new(p)),
            Err(e) => report.note(format!("ip alone: left out of endpoints bridge: {e}")),
        }
    }
    if o.skip_peers {
        report.note("docker, netavark and CNI: left out (--skip-peers)");
    } else {
        peers.extend(wharf_bench::peers::others(spec, &o.work, !o.skip_docker, report));
    }
    peers
}

/// Bring every peer to `n` endpoints (ids `0..n`; those below `have` exist), each publishing
/// `ports(id)`. A peer that fails is dropped, with a note.
fn fill(
    peers: &mut Vec<Box<dyn Endpoints>>,
    have: usize,
    n: usize,
    ports: &dyn Fn(usize) -> Vec<Port>,
    report: &mut Report,
) {
    peers.retain_mut(|p| {
        let t = Instant::now();
        for id in have..n {
            if let Err(e) = p.connect(id, &ports(id)) {
                report.note(format!("{}: left out from {n} endpoints on: filling: {e}", p.label()));
                return false;
            }
        }
        if n > have {
            eprintln!("harness: {} filled to {n} in {:.1} s", p.label(), t.elapsed().as_secs_f64());
        }
        true
    });
}

/// Interleaved rounds of connect + disconnect of the probe endpoint on every peer, in an
/// order that rotates from round to round.
fn probe_rounds(
    peers: &mut Vec<Box<dyn Endpoints>>,
    rounds: usize,
    section: &str,
    n: usize,
    ports: &[Port],
    report: &mut Report,
) {
    for round in 0..rounds {
        let mut failed = Vec::new();
        // Each round starts with the next peer, so none always follows the same one (whose
        // background work, a deletion the kernel finishes later, it would pay for).
        let count = peers.len();
        for i in (0..count).map(|k| (k + round) % count) {
            let p = &mut peers[i];
            let result = p.connect(PROBE, ports).and_then(|c| p.disconnect(PROBE).map(|d| (c, d)));
            match result {
                Ok((c, d)) => {
                    report.add(section, "connect", n, p.label(), c);
                    report.add(section, "disconnect", n, p.label(), d);
                    report.add(section, "connect + disconnect", n, p.label(), c + d);
                }
                Err(e) => {
                    report.note(format!("{}: left out of {section} at {n}: {e}", p.label()));
                    failed.push(i);
                }
            }
        }
        failed.sort_unstable();
        for i in failed.into_iter().rev() {
            peers.remove(i);
        }
    }
}

fn endpoints(o: &Opts, report: &mut Report, kind: Kind) {
    let section = format!("endpoints {}", kind.as_str());
    let spec = spec(kind, 0);
    let mut peers = endpoint_peers(o, report, &spec);
    let mut have = 0;
    for n in o.endpoint_scales() {
        fill(&mut peers, have, n, &|_| Vec::new(), report);
        have = n;
        probe_rounds(&mut peers, o.rounds, &section, n, &[], report);
    }
}

fn ports(o: &Opts, report: &mut Report) {
    let section = "ports";
    let spec = spec(Kind::Bridge, 1);
    let mut peers = endpoint_peers(o, report, &spec);
    // Endpoint 0 publishes one port; endpoints 1, 2, … a hundred each.
    let per = 100;
    let ports_of = move |id: usize| -> Vec<Port> {
        let count = if id == 0 { 1 } else { per };
        let base = 10_000 + id * per;
        (0..count).map(|k| Port { host_port: (base + k) as u16, container_port: 80 }).collect()
    };
    let probe = [Port { host_port: 9000, container_port: 80 }];
    let targets: Vec<usize> = if o.smoke { vec![1, 101] } else { vec![1, 1001] };
    let mut have = 0;
    for total in targets {
        let n = 1 + (total - 1) / per;
        fill(&mut peers, have, n, &ports_of, report);
        have = n;
        probe_rounds(&mut peers, o.rounds, section, total, &probe, report);
    }
}

/// A wharfd, the baseline build's wharfd when there is one (`--baseline`), and (when it
/// starts) a dockerd, with the clients that make networks on them: the wharf CLI of each
/// build against its wharfd, the docker CLI against wharfd and against dockerd.
fn network_daemons(o: &Opts, section: &str, report: &mut Report) -> (Vec<Daemon>, Vec<NetClient>) {
    let wharfd = Daemon::wharfd(&o.bin_dir, &o.work).unwrap_or_else(|e| panic!("{e}"));
    let baseline = o.baseline.as_ref().map(|dir| {
        let d = Daemon::wharfd(dir, &o.work).unwrap_or_else(|e| panic!("baseline: {e}"));
        (dir.join("wharf"), d)
    });
    let dockerd = match Daemon::dockerd(&o.work) {
        Ok(d) => Some(d),
        Err(e) => {
            report.note(format!("docker: left out of {section}: {e}"));
            None
        }
    };
    let docker_cli = wharf_bench::which("docker");
    if docker_cli.is_none() {
        report.note("docker CLI: not installed; networks through it are left out");
    }
    let client = |label: &str, program: &PathBuf, d: &Daemon| NetClient {
        label: label.into(),
        program: program.clone(),
        socket: d.socket.clone(),
    };
    let mut clients = vec![client("wharf CLI → wharfd", &o.bin_dir.join("wharf"), &wharfd)];
    if let Some((cli, d)) = &baseline {
        clients.push(client("baseline wharf CLI → wharfd", cli, d));
    }
    if let Some(cli) = &docker_cli {
        clients.push(client("docker CLI → wharfd", cli, &wharfd));
        if let Some(d) = &dockerd {
            clients.push(client("docker CLI → dockerd", cli, d));
        }
    }
    let daemons = std::iter::once(wharfd).chain(baseline.map(|(_, d)| d)).chain(dockerd).collect();
    (daemons, clients)
}

/// The kernel's own part of a network create and rm, with `ip` alone in namespace `netns`
/// (wharfd's, holding its bridges): a bridge with an address, up; then its deletion.
fn kernel_create_rm(o: &Opts, netns: &str) -> Result<(Duration, Duration), String> {
    let script = o.work.join("kernel-network.ip");
    let run = |commands: &str| -> Result<Duration, String> {
        std::fs::write(&script, commands).map_err(|e| e.to_string())?;
        wharf_bench::timed(Command::new("ip").args(["-n", netns, "-batch"]).arg(&script))
    };
    let create = run("link add wbkprobe type bridge\naddr add 10.99.0.1/24 dev wbkprobe\nlink set wbkprobe up\n")?;
    Ok((create, run("link del wbkprobe\n")?))
}

fn networks(o: &Opts, report: &mut Report) {
    let section = "networks";
    let (daemons, clients) = network_daemons(o, section, report);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let scales: Vec<usize> = if o.smoke { vec![1, 10] } else { vec![1, 100, 500] };
    let mut have = 0;
    for n in scales {
        for d in &daemons {
            let client = wharf_client::Client::new(&d.socket.display().to_string()).expect("client");
            for i in have..n {
                let body = serde_json::json!({
                    "Name": format!("fill{i}"),
                    "IPAM": { "Config": [{ "Subnet": format!("10.{}.{}.0/24", 100 + i / 256, i % 256) }] },
                });
                if let Err(e) = rt.block_on(client.call("POST", "/networks/create", Some(&body))) {
                    panic!("{}: filling networks: {e}", d.name);
                }
            }
        }
        have = n;
        for round in 0..o.rounds {
            // Rotated, as in the endpoint sections: a retired bridge's deletion runs on.
            for c in (0..clients.len()).map(|k| &clients[(k + round) % clients.len()]) {
                let (create, rm) = c.create_rm("probe", "10.99.0.0/24").unwrap_or_else(|e| panic!("{}: {e}", c.label));
                report.add(section, "create", n, &c.label, create);
                report.add(section, "rm", n, &c.label, rm);
            }
            match kernel_create_rm(o, &daemons[0].netns().0) {
                Ok((create, rm)) => {
                    report.add(section, "create", n, "ip alone (kernel)", create);
                    report.add(section, "rm", n, "ip alone (kernel)", rm);
                }
                Err(e) => report.note(format!("ip alone: left out of {section} at {n}: {e}")),
            }
        }
    }
}

/// Back-to-back connect + disconnect (bridge and macvlan, every peer) and network create +
/// rm (every client), beside the same spaced out; see [`wharf_bench::sustained`].
fn sustained(o: &Opts, report: &mut Report) {
    let section = "sustained";
    let pairs = if o.smoke { 5 } else { 40 };
    for (kind, i) in [(Kind::Bridge, 4), (Kind::Macvlan, 5)] {
        let spec = spec(kind, i);
        let mut peers = endpoint_peers(o, report, &spec);
        let section = format!("{section} {}", kind.as_str());
        wharf_bench::sustained::endpoints(&mut peers, pairs, PROBE, &section, report);
    }
    let (_daemons, clients) = network_daemons(o, section, report);
    let pairs = if o.smoke { 5 } else { 20 };
    wharf_bench::sustained::networks(&clients, pairs, Duration::from_millis(200), section, report);
}

fn daemon(o: &Opts, report: &mut Report) {
    let section = "daemon";
    let n = if o.smoke { 10 } else { 1000 };
    let spec = spec(Kind::Bridge, 2);
    // wharfd hands freed memory back once its API has been quiet for a moment (250 ms), and
    // closes what it keeps open between operations (netlink sockets of sandboxes,
    // libnftables' context) after two idle seconds, so each reading waits for that: it is
    // what the daemon holds at rest.
    let settle = || std::thread::sleep(Duration::from_millis(3000));
    let mut w = Wharf::new(Via::Api, &o.bin_dir, &spec, &o.work).unwrap_or_else(|e| panic!("{e}"));
    settle();
    report.value(section, "wharfd RSS, idle", wharf_bench::rss_kib(w.daemon.dir()) as f64 / 1024.0, "MiB");
    let t = Instant::now();
    for id in 0..n {
        w.connect(id, &[]).unwrap_or_else(|e| panic!("wharf: {e}"));
    }
    report.value(section, &format!("wharf API: {n} connects, back to back"), t.elapsed().as_secs_f64(), "s");
    settle();
    report.value(
        section,
        &format!("wharfd RSS, {n} endpoints"),
        wharf_bench::rss_kib(w.daemon.dir()) as f64 / 1024.0,
        "MiB",
    );
    for _ in 0..if o.smoke { 1 } else { 5 } {
        let d = w.daemon.restart_wharfd().unwrap_or_else(|e| panic!("{e}"));
        report.add(section, "restart until the API serves", n, "wharfd", d);
        let net = w.call("GET", &format!("/networks/{}", spec.name), None).unwrap_or_else(|e| panic!("{e}"));
        let attached = net["Containers"].as_object().map_or(0, |c| c.len());
        assert_eq!(attached, n, "every endpoint is still attached after the restart");
    }
    settle();
    report.value(
        section,
        &format!("wharfd RSS, {n} endpoints, after a restart"),
        wharf_bench::rss_kib(w.daemon.dir()) as f64 / 1024.0,
        "MiB",
    );
    if !o.skip_docker {
        wharf_bench::peers::docker_memory(&o.work, n, section, report);
    }
}

fn dataplane(o: &Opts, report: &mut Report) {
    wharf_bench::dataplane::run(&o.bin_dir, &o.work, o.smoke, &spec(Kind::Bridge, 3), report);
}

fn dns(o: &Opts, report: &mut Report) {
    use wharf_bench::dns::{self as d, FORWARDED, INTERNAL};
    let section = "dns";
    for tool in ["dnsperf", "dnsmasq"] {
        if wharf_bench::which(tool).is_none() {
            return report.note(format!("dns: {tool} is not installed (apt-get install dnsperf dnsmasq-base)"));
        }
    }
    let (queries, secs, rounds, cycles) = if o.smoke { (200, 1, 1, 3) } else { (2000, 5, 3, 100) };
    let (wharf, wharfd) = d::wharf(&o.bin_dir, &o.work, "wharf").unwrap_or_else(|e| panic!("wharf: {e}"));
    let mut resolvers = vec![wharf];
    let mut daemons = vec![("wharf API", wharfd)];
    if let Some(dir) = &o.baseline {
        let (r, w) = d::wharf(dir, &o.work, "wharf baseline").unwrap_or_else(|e| panic!("wharf baseline: {e}"));
        resolvers.push(r);
        daemons.push(("wharf baseline API", w));
    }
    match d::aardvark(&o.work) {
        Ok(r) => resolvers.push(r),
        Err(e) => report.note(format!("aardvark-dns: left out of dns: {e}")),
    }
    if o.skip_docker {
        report.note("docker: left out of dns (--skip-docker)");
    } else {
        match d::docker(&o.work) {
            Ok(r) => resolvers.push(r),
            Err(e) => report.note(format!("docker: left out of dns: {e}")),
        }
    }
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); resolvers.len()];
    let mut runs: Vec<[Vec<d::Throughput>; 2]> = vec![[Vec::new(), Vec::new()]; resolvers.len()];
    for _ in 0..rounds {
        for (i, r) in resolvers.iter().enumerate() {
            match d::ask(&r.client, r.server, INTERNAL, queries) {
                Ok(t) => latencies[i].extend(t),
                Err(e) => report.note(format!("dns, {}: sequential queries: {e}", r.label)),
            }
            for (k, name) in [INTERNAL, FORWARDED].into_iter().enumerate() {
                match d::dnsperf(r, name, secs, &o.work) {
                    Ok(t) => runs[i][k].push(t),
                    Err(e) => report.note(format!("dns, {}: dnsperf {name}: {e}", r.label)),
                }
            }
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for (i, r) in resolvers.iter().enumerate() {
        if !latencies[i].is_empty() {
            let (median, p99) = (d::quantile(&mut latencies[i], 0.5), d::quantile(&mut latencies[i], 0.99));
            report.value(section, &format!("{}: internal name, sequential, median", r.label), us(median), "µs");
            report.value(section, &format!("{}: internal name, sequential, p99", r.label), us(p99), "µs");
        }
        for (k, what) in ["internal", "forwarded"].into_iter().enumerate() {
            let got = &runs[i][k];
            if got.is_empty() {
                continue;
            }
            let qps: Vec<f64> = got.iter().map(|t| t.qps).collect();
            let cpu: Vec<f64> = got.iter().map(|t| us(t.cpu_per_query)).collect();
            let label = r.label;
            report.value(
                section,
                &format!("{label}: {what} name, queries/s at 50 outstanding"),
                wharf_bench::report::median(&qps),
                "qps",
            );
            report.value(
                section,
                &format!("{label}: {what} name, daemon CPU per query"),
                wharf_bench::report::median(&cpu),
                "µs",
            );
            let lost: u64 = got.iter().map(|t| t.lost).sum();
            if lost > 0 {
                report.note(format!("dns, {label}: {lost} {what} queries lost under dnsperf"));
            }
        }
    }
    for _ in 0..cycles {
        for (who, wharfd) in &daemons {
            for (network, what) in [("dnsb", "network with names"), ("nodns", "enable_dns=false")] {
                match wharfd.connect_disconnect(network) {
                    Ok(t) => report.add(section, "connect + disconnect", 1, &format!("{who}, {what}"), t),
                    Err(e) => panic!("{who}: connect + disconnect on {network}: {e}"),
                }
            }
        }
    }
}

/// One plot per section with scaling curves; a section with two operations (networks:
/// create and rm) has a line per system and operation.
fn plots(o: &Opts, report: &Report) -> Vec<PathBuf> {
    let mut made = Vec::new();
    for (section, ops, x) in [
        ("endpoints bridge", &["connect + disconnect"][..], "endpoints on the network"),
        ("endpoints macvlan", &["connect + disconnect"][..], "endpoints on the network"),
        ("ports", &["connect + disconnect"][..], "ports published"),
        ("networks", &["create", "rm"][..], "networks present"),
    ] {
        let series: Vec<plot::Series> = report
            .systems(section)
            .into_iter()
            .flat_map(|s| ops.iter().map(move |op| (s.clone(), *op)))
            .map(|(s, op)| {
                let pts = report
                    .scales(section, op)
                    .into_iter()
                    .filter_map(|n| report.median(section, op, n, &s).map(|m| (n as f64, m)))
                    .collect();
                (if ops.len() > 1 { format!("{s}: {op}") } else { s }, pts)
            })
            .filter(|(_, pts): &plot::Series| !pts.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let file = o.out.join(format!("{}.png", section.replace(' ', "-")));
        match plot::scaling(&file, &format!("{section}: {}", ops.join(", ")), x, &series) {
            Ok(()) => made.push(file),
            Err(e) => panic!("plot: {e}"),
        }
    }
    made
}

fn main() {
    let o = Opts::parse();
    if o.install_peers {
        install_peers();
    }
    std::fs::create_dir_all(&o.work).expect("work dir");
    std::fs::create_dir_all(&o.out).expect("results dir");
    let started = Instant::now();
    let mut report = Report::default();
    if o.wants("endpoints") {
        endpoints(&o, &mut report, Kind::Bridge);
        endpoints(&o, &mut report, Kind::Macvlan);
    }
    if o.wants("ports") {
        ports(&o, &mut report);
    }
    if o.wants("networks") {
        networks(&o, &mut report);
    }
    if o.wants("sustained") {
        sustained(&o, &mut report);
    }
    if o.wants("daemon") {
        daemon(&o, &mut report);
    }
    if o.wants("dataplane") {
        dataplane(&o, &mut report);
    }
    if o.wants("dns") {
        dns(&o, &mut report);
    }
    let preamble = format!(
        "{} run, {} interleaved rounds per cell, {:.0} s in all. Each system is measured from its own \
         client's side, one command per operation.",
        if o.smoke { "Smoke" } else { "Full" },
        o.rounds,
        started.elapsed().as_secs_f64()
    );
    let md = report.markdown("wharf side by side", &preamble);
    print!("{md}");
    std::fs::write(o.out.join("harness.md"), &md).expect("write harness.md");
    std::fs::write(o.out.join("harness.csv"), report.csv()).expect("write harness.csv");
    for p in plots(&o, &report) {
        eprintln!("harness: wrote {}", p.display());
    }
    eprintln!("harness: results in {}", o.out.display());
    let _ = std::fs::remove_dir_all(&o.work);
}
