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
//!   connect`/`disconnect` on running containers, netavark setup/teardown, CNI ADD/DEL.
//! - `ports`: the same with one published port, with 1 and 1000 ports published.
//! - `networks`: network create and rm with 1, 100 and 500 networks present: the docker CLI
//!   against wharfd, the docker CLI against dockerd, the wharf CLI.
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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_bench::daemons::{Daemon, PrivateNetns};
use wharf_bench::peers::wharf::{Via, Wharf};
use wharf_bench::peers::{Endpoints, Kind, NetSpec, Port};
use wharf_bench::plot;
use wharf_bench::report::Report;

/// The endpoint id whose connect and disconnect are measured; fillers are 0, 1, 2, ….
const PROBE: usize = 60_000;

struct Opts {
    smoke: bool,
    install_peers: bool,
    skip_docker: bool,
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
            only: Vec::new(),
            rounds: 0,
            bin_dir,
            baseline: None,
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
            work,
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--smoke" => o.smoke = true,
                "--install-peers" => o.install_peers = true,
                "--skip-docker" => o.skip_docker = true,
                "--only" => o.only.push(args.next().expect("--only SECTION")),
                "--rounds" => o.rounds = args.next().and_then(|n| n.parse().ok()).expect("--rounds N"),
                "--out" => o.out = PathBuf::from(args.next().expect("--out DIR")),
                "--baseline" => o.baseline = Some(PathBuf::from(args.next().expect("--baseline BINDIR"))),
                "-h" | "--help" => {
                    println!(
                        "usage: harness [--smoke] [--install-peers] [--skip-docker] [--only endpoints|ports|networks|daemon|dataplane|dns]... \
                         [--rounds N] [--out DIR] [--baseline BINDIR (another build's wharfd, beside this one in dns)]"
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
    peers.extend(wharf_bench::peers::others(spec, &o.work, !o.skip_docker, report));
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

/// Interleaved rounds of connect + disconnect of the probe endpoint on every peer.
fn probe_rounds(
    peers: &mut Vec<Box<dyn Endpoints>>,
    rounds: usize,
    section: &str,
    n: usize,
    ports: &[Port],
    report: &mut Report,
) {
    for _ in 0..rounds {
        let mut failed = Vec::new();
        for (i, p) in peers.iter_mut().enumerate() {
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

/// Run `args` and time it; an error carries its stderr.
fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(d)
}

fn networks(o: &Opts, report: &mut Report) {
    let section = "networks";
    let wharfd = Daemon::wharfd(&o.bin_dir, &o.work).unwrap_or_else(|e| panic!("{e}"));
    let dockerd = match Daemon::dockerd(&o.work) {
        Ok(d) => Some(d),
        Err(e) => {
            report.note(format!("docker: left out of networks: {e}"));
            None
        }
    };
    let docker_cli = which("docker");
    if docker_cli.is_none() {
        report.note("docker CLI: not installed; networks through it are left out");
    }
    let wharf_cli = o.bin_dir.join("wharf");
    // (label, program, socket)
    let mut systems: Vec<(&str, PathBuf, &Daemon)> = vec![("wharf CLI → wharfd", wharf_cli, &wharfd)];
    if let Some(cli) = &docker_cli {
        systems.push(("docker CLI → wharfd", cli.clone(), &wharfd));
        if let Some(d) = &dockerd {
            systems.push(("docker CLI → dockerd", cli.clone(), d));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let scales: Vec<usize> = if o.smoke { vec![1, 10] } else { vec![1, 100, 500] };
    let mut have = 0;
    for n in scales {
        for d in std::iter::once(&wharfd).chain(dockerd.as_ref()) {
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
        for _ in 0..o.rounds {
            for (label, program, d) in &systems {
                let host = format!("unix://{}", d.socket.display());
                let create = timed(Command::new(program).args(["-H", &host, "network", "create"]).args([
                    "--subnet",
                    "10.99.0.0/24",
                    "probe",
                ]));
                let rm = timed(Command::new(program).args(["-H", &host, "network", "rm", "probe"]));
                match (create, rm) {
                    (Ok(c), Ok(r)) => {
                        report.add(section, "create", n, label, c);
                        report.add(section, "rm", n, label, r);
                    }
                    (Err(e), _) | (_, Err(e)) => panic!("{label}: {e}"),
                }
            }
        }
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

fn daemon(o: &Opts, report: &mut Report) {
    let section = "daemon";
    let n = if o.smoke { 10 } else { 1000 };
    let spec = spec(Kind::Bridge, 2);
    let mut w = Wharf::new(Via::Api, &o.bin_dir, &spec, &o.work).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(300));
    report.value(section, "wharfd RSS, idle", wharf_bench::rss_kib(w.daemon.dir()) as f64 / 1024.0, "MiB");
    let t = Instant::now();
    for id in 0..n {
        w.connect(id, &[]).unwrap_or_else(|e| panic!("wharf: {e}"));
    }
    report.value(section, &format!("wharf API: {n} connects, back to back"), t.elapsed().as_secs_f64(), "s");
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

/// An iperf3 server in namespace file `netns`, stopped on drop.
struct Iperf(Child);

impl Iperf {
    fn serve(netns: &str) -> Result<Iperf, String> {
        let child = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["--", "iperf3", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("iperf3: {e}"))?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Iperf(child))
    }
}

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Gbit/s received by an iperf3 client in `netns` sending to `to` for `secs`.
fn iperf(netns: &str, to: &str, port: u16, secs: u32) -> Result<f64, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "iperf3", "-J", "-c", to, "-p", &port.to_string(), "-t", &secs.to_string()])
        .output()
        .map_err(|e| format!("iperf3: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    if let Some(e) = v["error"].as_str() {
        return Err(format!("iperf3 -c {to}:{port}: {e}"));
    }
    v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9).ok_or_else(|| "iperf3: no result".into())
}

fn ip(netns: &str, args: &[&str]) {
    let out = Command::new("ip").args(["-n", netns]).args(args).output().expect("ip");
    assert!(out.status.success(), "ip -n {netns} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn dataplane(o: &Opts, report: &mut Report) {
    let section = "data plane";
    if which("iperf3").is_none() {
        report.note("data plane: iperf3 is not installed (apt-get install iperf3, or --install-peers)");
        return;
    }
    let secs = if o.smoke { 1 } else { 5 };
    let rounds = if o.smoke { 1 } else { 3 };
    let mut w = Wharf::new(Via::Api, &o.bin_dir, &spec(Kind::Bridge, 3), &o.work).unwrap_or_else(|e| panic!("{e}"));
    let host = w.daemon.netns().0.clone();
    let routed = serde_json::json!({
        "Name": "routed",
        "IPAM": { "Config": [{ "Subnet": "10.213.0.0/24" }] },
        "Options": { "com.docker.network.bridge.gateway_mode_ipv4": "routed" },
    });
    w.call("POST", "/networks/create", Some(&routed)).unwrap_or_else(|e| panic!("{e}"));
    w.connect(0, &[Port { host_port: 15201, container_port: 5201 }]).unwrap_or_else(|e| panic!("{e}"));
    w.connect(1, &[]).unwrap_or_else(|e| panic!("{e}"));
    w.call("POST", "/wharf/sandboxes", Some(&serde_json::json!({ "Name": "r" }))).unwrap_or_else(|e| panic!("{e}"));
    // In routed mode only published ports (and ICMP) are reachable from outside, as in Docker.
    let direct = serde_json::json!({ "Container": "r", "EndpointConfig": {
        "IPAMConfig": { "IPv4Address": "10.213.0.2" },
        "PortBindings": { "5201/tcp": [{ "HostIp": "", "HostPort": "25201" }] },
    } });
    w.call("POST", "/networks/routed/connect", Some(&direct)).unwrap_or_else(|e| panic!("{e}"));
    let sandbox = |name: &str| w.daemon.dir().join("netns").join(name).display().to_string();
    // An outside namespace wired to wharf's host namespace.
    let outside = PrivateNetns::new(&format!("wharf-bench-out{}", std::process::id())).expect("netns");
    ip(&host, &["link", "add", "wbup0", "type", "veth", "peer", "name", "wbup1", "netns", &outside.0]);
    ip(&host, &["addr", "add", "192.0.2.1/24", "dev", "wbup0"]);
    ip(&host, &["link", "set", "wbup0", "up"]);
    ip(&outside.0, &["addr", "add", "192.0.2.2/24", "dev", "wbup1"]);
    ip(&outside.0, &["link", "set", "wbup1", "up"]);
    ip(&outside.0, &["route", "add", "10.213.0.0/24", "via", "192.0.2.1"]);
    // A bare veth pair between two namespaces.
    let v1 = PrivateNetns::new(&format!("wharf-bench-v1-{}", std::process::id())).expect("netns");
    let v2 = PrivateNetns::new(&format!("wharf-bench-v2-{}", std::process::id())).expect("netns");
    ip(&v1.0, &["link", "add", "wbv1", "type", "veth", "peer", "name", "wbv2", "netns", &v2.0]);
    ip(&v1.0, &["addr", "add", "10.214.0.1/24", "dev", "wbv1"]);
    ip(&v1.0, &["link", "set", "wbv1", "up"]);
    ip(&v2.0, &["addr", "add", "10.214.0.2/24", "dev", "wbv2"]);
    ip(&v2.0, &["link", "set", "wbv2", "up"]);

    let servers = [sandbox("s0"), sandbox("r"), v1.path()];
    let _servers: Vec<Iperf> = servers.iter().map(|ns| Iperf::serve(ns).unwrap_or_else(|e| panic!("{e}"))).collect();
    let a_ip = {
        let net = w.call("GET", "/networks/bench3", None).unwrap_or_else(|e| panic!("{e}"));
        let containers = net["Containers"].as_object().cloned().unwrap_or_default();
        let ep = containers.values().find(|c| c["Name"] == "s0").cloned().unwrap_or_default();
        ep["IPv4Address"].as_str().unwrap_or_default().split('/').next().unwrap_or_default().to_string()
    };
    // (label, client namespace, address, port)
    let cases = [
        ("bridge: sandbox to sandbox", sandbox("s1"), a_ip.clone(), 5201),
        ("bare veth pair", v2.path(), "10.214.0.1".to_string(), 5201),
        ("published port, from outside", outside.path(), "192.0.2.1".to_string(), 15201),
        ("direct (routed), from outside", outside.path(), "10.213.0.2".to_string(), 5201),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (label, from, to, port)) in cases.iter().enumerate() {
            match iperf(from, to, *port, secs) {
                Ok(g) => results[i].push(g),
                Err(e) => report.note(format!("data plane, {label}: {e}")),
            }
        }
    }
    for (i, (label, ..)) in cases.iter().enumerate() {
        if !results[i].is_empty() {
            report.value(section, &format!("iperf3 TCP, {label}"), wharf_bench::report::median(&results[i]), "Gbit/s");
        }
    }
}

fn dns(o: &Opts, report: &mut Report) {
    use wharf_bench::dns::{self as d, FORWARDED, INTERNAL};
    let section = "dns";
    for tool in ["dnsperf", "dnsmasq"] {
        if which(tool).is_none() {
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

fn plots(o: &Opts, report: &Report) -> Vec<PathBuf> {
    let mut made = Vec::new();
    for (section, op, x) in [
        ("endpoints bridge", "connect + disconnect", "endpoints on the network"),
        ("endpoints macvlan", "connect + disconnect", "endpoints on the network"),
        ("ports", "connect + disconnect", "ports published"),
        ("networks", "create", "networks present"),
        ("networks", "rm", "networks present"),
    ] {
        let series: Vec<plot::Series> = report
            .systems(section)
            .into_iter()
            .map(|s| {
                let pts = report
                    .scales(section, op)
                    .into_iter()
                    .filter_map(|n| report.median(section, op, n, &s).map(|m| (n as f64, m)))
                    .collect();
                (s, pts)
            })
            .filter(|(_, pts): &plot::Series| !pts.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let file =
            o.out.join(format!("{}-{}.png", section.replace(' ', "-"), op.replace(" + ", "-").replace(' ', "-")));
        match plot::scaling(&file, &format!("{section}: {op}"), x, &series) {
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
