//! Embedded resolvers side by side: wharf's 127.0.0.11, aardvark-dns (podman's, run with a
//! configuration directory as netavark writes it) and Docker's (dockerd's 127.0.0.11 in a
//! container), each in private namespaces of its own, asked the same queries from a client
//! namespace on the same kind of network: an internal name (another sandbox or container)
//! and a forwarded one, answered by a dnsmasq upstream at [`UPSTREAM`] in the daemon's
//! namespace.
//!
//! Measured per system: the latency of sequential queries from one client (a socket made
//! inside the client's namespace, one query in flight), the queries per second `dnsperf`
//! gets with 50 queries outstanding, and the daemon's CPU time per query during those runs
//! (utime + stime from `/proc/PID/stat`, before and after).

use crate::daemons::{Daemon, PrivateNetns};
use crate::peers::docker::{Docker, IMAGE};
use crate::peers::{Kind, NetSpec};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_client::Client;

/// The upstream dnsmasq's address, on a link of its own (a veth pair) in each daemon's namespace.
pub const UPSTREAM: &str = "10.231.0.53";

/// The internal name every client asks for, and the forwarded one.
pub const INTERNAL: &str = "target";
/// See [`INTERNAL`].
pub const FORWARDED: &str = "fwd.test";

/// The address the forwarded name has.
const FORWARDED_IP: &str = "10.9.9.9";

/// A resolver under test, ready to be asked.
#[derive(Debug)]
pub struct Resolver {
    /// What it is, for reports.
    pub label: &'static str,
    /// The client's namespace file.
    pub client: String,
    /// Where the client asks.
    pub server: SocketAddr,
    /// The process that answers, for its CPU time.
    pub pid: u32,
    /// Kept until the resolver is dropped: daemons, namespaces, upstreams.
    _held: Vec<Box<dyn std::any::Any>>,
}

/// A child process, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The dnsmasq upstream inside namespace file `netns` (whose `ip netns` name is `name`), at
/// [`UPSTREAM`] on a veth pair of its own.
fn upstream(name: &str, netns: &str) -> Result<Killed, String> {
    run("ip", &["-n", name, "link", "add", "wbdnsup", "type", "veth", "peer", "name", "wbdnsup1"])?;
    run("ip", &["-n", name, "addr", "add", &format!("{UPSTREAM}/32"), "dev", "wbdnsup"])?;
    run("ip", &["-n", name, "link", "set", "wbdnsup1", "up"])?;
    run("ip", &["-n", name, "link", "set", "wbdnsup", "up"])?;
    let child = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["--", "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null"])
        .args(["--user=root", "--pid-file=", "--bind-interfaces"])
        .arg(format!("--listen-address={UPSTREAM}"))
        .arg(format!("--address=/{FORWARDED}/{FORWARDED_IP}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("dnsmasq (apt-get install dnsmasq-base): {e}"))?;
    let d = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let up: SocketAddr = format!("{UPSTREAM}:53").parse().expect("address");
    while Instant::now() < deadline {
        if ask(netns, up, FORWARDED, 1).is_ok() {
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("the dnsmasq upstream did not start".into())
}

/// One A query for `name` with id `id`.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), RecordType::A));
    m.to_vec().expect("query")
}

/// `n` sequential queries for `name` at `server` from a socket made inside namespace file
/// `netns`; returns each one's round trip. Every answer must carry an address.
pub fn ask(netns: &str, server: SocketAddr, name: &str, n: usize) -> Result<Vec<Duration>, String> {
    let file = std::fs::File::open(netns).map_err(|e| format!("{netns}: {e}"))?;
    let name = name.to_string();
    std::thread::spawn(move || -> Result<Vec<Duration>, String> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        socket.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1500];
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let q = query(&name, i as u16);
            let t = Instant::now();
            socket.send_to(&q, server).map_err(|e| format!("{server}: {e}"))?;
            loop {
                let got = socket.recv(&mut buf).map_err(|e| format!("{server}: query {i} for {name}: {e}"))?;
                let answer = Message::from_vec(&buf[..got]).map_err(|e| format!("{server}: {e}"))?;
                if answer.id() != i as u16 {
                    continue;
                }
                if answer.answers().is_empty() {
                    return Err(format!("{server}: no address for {name}: {}", answer.response_code()));
                }
                break;
            }
            times.push(t.elapsed());
        }
        Ok(times)
    })
    .join()
    .map_err(|_| "the asking thread panicked".to_string())?
}

/// The CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// What one `dnsperf` run gave.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Queries answered per second.
    pub qps: f64,
    /// The answering process's CPU time per answered query.
    pub cpu_per_query: Duration,
    /// Queries that got no answer.
    pub lost: u64,
}

/// `dnsperf` from the client's namespace for `secs` seconds with 50 queries outstanding,
/// every query for `name`.
pub fn dnsperf(r: &Resolver, name: &str, secs: u32, work: &Path) -> Result<Throughput, String> {
    let file = work.join(format!("dnsperf-{}.txt", name.replace('.', "-")));
    std::fs::write(&file, format!("{name} A\n")).map_err(|e| e.to_string())?;
    let before = cpu_time(r.pid);
    let out = Command::new("nsenter")
        .arg(format!("--net={}", r.client))
        .args(["--", "dnsperf", "-s", &r.server.ip().to_string(), "-p", &r.server.port().to_string()])
        .arg("-d")
        .arg(&file)
        .args(["-l", &secs.to_string(), "-c", "1", "-q", "50", "-t", "2"])
        .output()
        .map_err(|e| format!("dnsperf (apt-get install dnsperf): {e}"))?;
    let cpu = cpu_time(r.pid).saturating_sub(before);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let (Some(qps), Some(done)) = (field("Queries per second:"), field("Queries completed:")) else {
        return Err(format!("dnsperf at {}: {text}{}", r.server, String::from_utf8_lossy(&out.stderr)));
    };
    let lost = field("Queries lost:").unwrap_or(0.0) as u64;
    let cpu_per_query = if done > 0.0 { cpu.div_f64(done) } else { Duration::ZERO };
    Ok(Throughput { qps, cpu_per_query, lost })
}

/// A wharfd of its own (from `bin_dir`, reported as `label`) on a bridge network `dnsb`
/// with sandboxes `client` and `target`; the client's own upstream is [`UPSTREAM`] (asked
/// from the client's namespace).
pub fn wharf(bin_dir: &Path, work: &Path, label: &'static str) -> Result<(Resolver, WharfDns), String> {
    let daemon = Daemon::wharfd(bin_dir, work)?;
    let w = WharfDns::new(daemon)?;
    w.call(
        "POST",
        "/networks/create",
        json!({ "Name": "dnsb", "IPAM": { "Config": [{ "Subnet": "10.234.0.0/24" }] } }),
    )?;
    let nodns = json!({
        "Name": "nodns",
        "IPAM": { "Config": [{ "Subnet": "10.235.0.0/24" }] },
        "Options": { "com.docker.network.enable_dns": "false" },
    });
    w.call("POST", "/networks/create", nodns)?;
    for name in ["client", "target", "probe", "nclient", "ntarget"] {
        w.call("POST", "/wharf/sandboxes", json!({ "Name": name, "Dns": [UPSTREAM] }))?;
    }
    // Two sandboxes on each network, so that the probe's connects to either differ only in
    // the names.
    for (network, name) in [("dnsb", "client"), ("dnsb", "target"), ("nodns", "nclient"), ("nodns", "ntarget")] {
        w.call("POST", &format!("/networks/{network}/connect"), json!({ "Container": name }))?;
    }
    let up = upstream(&w.daemon.netns().0, &w.daemon.netns().path())?;
    let r = Resolver {
        label,
        client: w.daemon.dir().join("netns").join("client").display().to_string(),
        server: "127.0.0.11:53".parse().expect("address"),
        pid: w.daemon.pid(),
        _held: vec![Box::new(up)],
    };
    Ok((r, w))
}

/// wharfd for the DNS section, with a client to its API.
#[derive(Debug)]
pub struct WharfDns {
    client: Client,
    rt: tokio::runtime::Runtime,
    /// The daemon.
    pub daemon: Daemon,
}

impl WharfDns {
    fn new(daemon: Daemon) -> Result<WharfDns, String> {
        let client = Client::new(&daemon.socket.display().to_string())?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        Ok(WharfDns { client, rt, daemon })
    }

    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> Result<(), String> {
        self.rt.block_on(self.client.call(method, path, Some(&body))).map(|_| ())
    }

    /// The time of one connect and disconnect of sandbox `probe` on `network`, through the API.
    pub fn connect_disconnect(&self, network: &str) -> Result<Duration, String> {
        let t = Instant::now();
        self.call("POST", &format!("/networks/{network}/connect"), json!({ "Container": "probe" }))?;
        self.call("POST", &format!("/networks/{network}/disconnect"), json!({ "Container": "probe" }))?;
        Ok(t.elapsed())
    }
}

/// aardvark-dns in a private namespace serving network `bench` (a bridge there), with a
/// configuration directory as netavark writes it: the gateway it listens on and the
/// network's upstream server, then one line per container. The client namespace hangs on
/// the bridge at the client container's address.
pub fn aardvark(work: &Path) -> Result<Resolver, String> {
    let bin = "/usr/lib/podman/aardvark-dns";
    if !Path::new(bin).exists() {
        return Err(format!("{bin} is not installed (apt-get install aardvark-dns)"));
    }
    let host = PrivateNetns::new(&format!("wharf-bench-aa{}", std::process::id()))?;
    let client = PrivateNetns::new(&format!("wharf-bench-aac{}", std::process::id()))?;
    run("ip", &["-n", &host.0, "link", "add", "wbaabr", "type", "bridge"])?;
    run("ip", &["-n", &host.0, "addr", "add", "10.236.0.1/24", "dev", "wbaabr"])?;
    run("ip", &["-n", &host.0, "link", "set", "wbaabr", "up"])?;
    run("ip", &["-n", &host.0, "link", "add", "wbaav", "type", "veth", "peer", "name", "eth0", "netns", &client.0])?;
    run("ip", &["-n", &host.0, "link", "set", "wbaav", "master", "wbaabr", "up"])?;
    run("ip", &["-n", &client.0, "addr", "add", "10.236.0.2/24", "dev", "eth0"])?;
    run("ip", &["-n", &client.0, "link", "set", "eth0", "up"])?;
    let up = upstream(&host.0, &host.path())?;
    let dir = work.join(format!("aardvark-{}", std::process::id()));
    let config = dir.join("config");
    std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
    let lines = format!(
        "10.236.0.1 {UPSTREAM}\n{c} 10.236.0.2  client,{c12}\n{t} 10.236.0.3  {INTERNAL},{t12}\n",
        c = "c".repeat(64),
        c12 = "c".repeat(12),
        t = "a".repeat(64),
        t12 = "a".repeat(12),
    );
    std::fs::write(config.join("bench"), lines).map_err(|e| e.to_string())?;
    // aardvark-dns falls back to the host's resolv.conf: it gets one naming the upstream too,
    // in a mount namespace of its own.
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {UPSTREAM}\n")).map_err(|e| e.to_string())?;
    let script = format!(
        "mount --bind {} /etc/resolv.conf && exec {bin} --config {} -p 53 run",
        resolv.display(),
        config.display()
    );
    // `run` forks the server into the background and returns; its pid is in the directory.
    let status = Command::new("nsenter")
        .arg(format!("--net={}", host.path()))
        .args(["--", "unshare", "-m", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("aardvark-dns: {e}"))?;
    if !status.success() {
        return Err(format!("aardvark-dns run: {status}"));
    }
    let pid: u32 = std::fs::read_to_string(config.join("aardvark.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or("aardvark-dns wrote no pid file")?;
    let server: SocketAddr = "10.236.0.1:53".parse().expect("address");
    let guard = AardvarkProcess { pid, dir };
    let r = Resolver {
        label: "aardvark-dns",
        client: client.path(),
        server,
        pid,
        _held: vec![Box::new(guard), Box::new(up), Box::new(client), Box::new(host)],
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(&r.client, server, INTERNAL, 1).is_err() {
        if Instant::now() > deadline {
            return Err("aardvark-dns does not answer".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(r)
}

/// The aardvark-dns server this run started, ended by its pid, and its directory.
struct AardvarkProcess {
    pid: u32,
    dir: PathBuf,
}

impl Drop for AardvarkProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Docker's embedded resolver: a dockerd of its own with networking on, a user-defined
/// bridge network and two containers on it (`client`, `target`) whose upstream is
/// [`UPSTREAM`]. Docker answers only in a container's namespace, so the client asks from
/// the client container's.
pub fn docker(work: &Path) -> Result<Resolver, String> {
    let spec = NetSpec {
        kind: Kind::Bridge,
        name: "dnsb".into(),
        subnet: "10.237.0.0/24".into(),
        gateway: "10.237.0.1".into(),
        bridge: "wbdnsd".into(),
        parent: "wbdnsdp".into(),
    };
    let daemon = Daemon::dockerd_networking(work)?;
    let pid = daemon.pid();
    let (ns_name, ns_path) = (daemon.netns().0.clone(), daemon.netns().path());
    let d = DockerDns(Docker::new(daemon, &spec, work)?);
    for name in ["dnsclient", INTERNAL] {
        let args = ["run", "-d", "--name", name, "--network", "dnsb", "--dns", UPSTREAM, "--stop-signal", "KILL"];
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--log-driver", "none", IMAGE, "/usr/bin/sleep", "infinity"]);
        d.0.run(&all)?;
    }
    let cpid = d.0.run(&["inspect", "-f", "{{.State.Pid}}", "dnsclient"])?.trim().to_string();
    let up = upstream(&ns_name, &ns_path)?;
    let r = Resolver {
        label: "docker",
        client: format!("/proc/{cpid}/ns/net"),
        server: "127.0.0.11:53".parse().expect("address"),
        pid,
        _held: vec![Box::new(up), Box::new(d)],
    };
    Ok(r)
}

/// The Docker peer, with the resolver's containers removed before it goes.
struct DockerDns(Docker);

impl Drop for DockerDns {
    fn drop(&mut self) {
        let _ = self.0.run(&["rm", "-f", "dnsclient", INTERNAL]);
    }
}

/// The `q`-quantile of `v` (sorted here).
pub fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}
