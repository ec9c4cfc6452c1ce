//! `engine`: what wharf itself does for one connect and one disconnect, as the endpoints on
//! the network grow from 1 to 1000, with the kernel left out.
//!
//! Usage: `cargo run --release -p wharf-bench --bin engine [-- --smoke]`. The engine runs as
//! wharfd runs it (the store on disk, the bridge plugin built next to this binary loaded
//! through the ABI, the embedded resolver serving each sandbox), but its plans go to a
//! recording executor instead of the kernel. The resolver's sockets are real, bound inside
//! a network namespace of the benchmark's own. So the figures are wharf's own work: engine,
//! plugin calls, store, name table and resolver, and the system calls they make; the
//! kernel's work for the links themselves is what the harness's `ip` alone column measures.
//! Writes `bench/results/engine.md` and `engine.csv`.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wharf_bench::micros;
use wharf_engine::engine::{ConnectRequest, Engine, NetworkCreateRequest, Settings};
use wharf_engine::executor::{ExecError, Executor, HostPort, LinkQuery, Outcome, PortState, Recording};
use wharf_engine::registry::Registry;
use wharf_engine::store::Store;
use wharf_sdk::{FirewallFact, HostFacts, Netns, Op};

/// The recording executor, with the resolver's sockets opened for real (on loopback, at a
/// port of the kernel's choosing) so that every sandbox's resolver serves as in wharfd.
#[derive(Debug)]
struct Bench(Recording);

impl Executor for Bench {
    fn apply(&self, op: &Op) -> Result<Outcome, ExecError> {
        self.0.apply(op)
    }
    fn host_facts(&self, only: Option<&LinkQuery>) -> Result<HostFacts, ExecError> {
        self.0.host_facts(only)
    }
    fn create_netns(&self, dir: &Path, name: &str) -> Result<PathBuf, ExecError> {
        self.0.create_netns(dir, name)
    }
    fn remove_netns(&self, path: &Path) -> Result<(), ExecError> {
        self.0.remove_netns(path)
    }
    fn check_netns(&self, path: &Path) -> Result<(), ExecError> {
        self.0.check_netns(path)
    }
    fn firewall_reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        self.0.firewall_reload(facts)
    }
    fn host_port_state(&self, hp: &HostPort) -> Result<PortState, ExecError> {
        self.0.host_port_state(hp)
    }
    fn sweep(&self, netns: &Netns, known: &BTreeSet<&str>) -> Result<Vec<String>, ExecError> {
        self.0.sweep(netns, known)
    }
    fn owns(&self, op: &Op) -> bool {
        self.0.owns(op)
    }
    fn sysctl_read(&self, netns: &Netns, key: &str) -> Result<Option<String>, ExecError> {
        self.0.sysctl_read(netns, key)
    }
    fn link_names(&self, netns: &Path) -> Result<Vec<String>, ExecError> {
        self.0.link_names(netns)
    }
    fn dns_sockets(&self, _netns: &Path, _at: SocketAddr) -> Result<wharf_dns::Sockets, ExecError> {
        let at = SocketAddr::from(([127, 0, 0, 1], 0));
        let udp = UdpSocket::bind(at).map_err(|e| ExecError::os("resolver socket", e))?;
        let tcp = TcpListener::bind(at).map_err(|e| ExecError::os("resolver socket", e))?;
        Ok(wharf_dns::Sockets { udp, tcp })
    }
    fn path_exists(&self, path: &Path) -> bool {
        self.0.path_exists(path)
    }
    fn read_file(&self, path: &Path) -> Option<String> {
        self.0.read_file(path)
    }
    fn disk_usage(&self, path: &Path) -> u64 {
        self.0.disk_usage(path)
    }
    fn locate(&self, path: &Path) -> Option<PathBuf> {
        self.0.locate(path)
    }
}

/// The CPU time the whole process has used so far.
fn process_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the time into `t`, which outlives the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "the process CPU clock");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The median of `v`, which it sorts.
fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// One row: endpoints on the network, then connect and disconnect medians, wall and CPU.
struct Row {
    endpoints: usize,
    connect: (Duration, Duration),
    disconnect: (Duration, Duration),
}

impl Row {
    /// Connect wall, connect CPU, disconnect wall, disconnect CPU, in µs.
    fn micros(&self) -> [f64; 4] {
        [self.connect.0, self.connect.1, self.disconnect.0, self.disconnect.1].map(micros)
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (scales, rounds): (&[usize], usize) = if smoke { (&[1, 10], 5) } else { (&[1, 10, 100, 1000], 41) };
    // The resolvers' sockets live in a namespace of this process's own, which ends with it.
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        eprintln!("engine: a network namespace of its own: {e} (run as root)");
        std::process::exit(1);
    }
    let lo = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    if !lo.is_ok_and(|s| s.success()) {
        eprintln!("engine: cannot set the namespace's loopback up (iproute2)");
        std::process::exit(1);
    }
    let bin = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)).expect("binary directory");
    let mut registry = Registry::new();
    if let Err(e) = wharf_linux::plugins::load_file(&mut registry, &bin.join("libwharf_network_bridge.so")) {
        eprintln!("engine: {e} (build the workspace first: cargo build --release --workspace)");
        std::process::exit(1);
    }
    let dir = tempfile_dir();
    let settings = Settings {
        netns_dir: dir.join("netns"),
        netns_etc_dir: dir.join("etc"),
        host_resolv_conf: dir.join("resolv.conf"),
        volumes_dir: dir.join("volumes"),
        volumes_max_file_size: None,
        pools_v4: wharf_engine::ipam::docker_default_pools(),
        pools_v6: Vec::new(),
        default_mtu: None,
        bind_allowed_bases: Vec::new(),
        default_bridge: None,
    };
    std::fs::write(&settings.host_resolv_conf, "nameserver 192.0.2.53\n").expect("resolv.conf");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dns = Arc::new(wharf_dns::Resolver::new(rt.handle().clone()));
    let store = Store::open(&dir.join("state.redb")).expect("store");
    let exec = Arc::new(Bench(Recording::with_facts(HostFacts::default())));
    let engine = Engine::start_with_dns(store, registry, exec, settings, Some(dns))
        .unwrap_or_else(|e| panic!("{}", e.message()));
    let net = NetworkCreateRequest { name: "scale".into(), driver: "bridge".into(), ..Default::default() };
    engine.network_create(net).unwrap_or_else(|e| panic!("{}", e.message()));
    let connect =
        |sandbox: &str| ConnectRequest { network: "scale".into(), sandbox: sandbox.into(), ..Default::default() };
    let sandbox = |name: &str| {
        engine.sandbox_create(name, None, Default::default()).unwrap_or_else(|e| panic!("{name}: {}", e.message()))
    };
    sandbox("probe");
    let mut rows = Vec::new();
    let mut have = 0;
    for &n in scales {
        for id in have..n {
            let name = format!("s{id}");
            sandbox(&name);
            engine.connect(connect(&name)).unwrap_or_else(|e| panic!("{name}: {}", e.message()));
        }
        have = n;
        let (mut cw, mut cc, mut dw, mut dc) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (t, cpu) = (Instant::now(), process_cpu());
            engine.connect(connect("probe")).unwrap_or_else(|e| panic!("probe: {}", e.message()));
            cw.push(t.elapsed());
            cc.push(process_cpu() - cpu);
            let (t, cpu) = (Instant::now(), process_cpu());
            engine.disconnect("scale", "probe", false).unwrap_or_else(|e| panic!("probe: {}", e.message()));
            dw.push(t.elapsed());
            dc.push(process_cpu() - cpu);
        }
        rows.push(Row {
            endpoints: n,
            connect: (median(&mut cw), median(&mut cc)),
            disconnect: (median(&mut dw), median(&mut dc)),
        });
    }
    let report = render(&rows, rounds);
    print!("{report}");
    if !smoke {
        let mut csv = String::from("endpoints,connect_wall_us,connect_cpu_us,disconnect_wall_us,disconnect_cpu_us\n");
        for r in &rows {
            let [a, b, c, d] = r.micros();
            csv += &format!("{},{a:.1},{b:.1},{c:.1},{d:.1}\n", r.endpoints);
        }
        wharf_bench::save_results("engine", &report, &csv);
    }
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory for the store and the sandboxes' files.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wharf-engine-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

fn render(rows: &[Row], rounds: usize) -> String {
    let mut s = format!(
        "# wharf's own work per connect and disconnect\n\n\
         The engine as wharfd runs it (store on disk, bridge plugin through the ABI, a resolver per\n\
         sandbox), its plans recorded instead of carried out: no kernel work for links, addresses\n\
         or routes. Median of {rounds} rounds; CPU is the whole process's (every thread).\n\n\
         | endpoints | connect µs | connect CPU µs | disconnect µs | disconnect CPU µs |\n\
         |---|---|---|---|---|\n"
    );
    for r in rows {
        let [a, b, c, d] = r.micros();
        s += &format!("| {} | {a:.0} | {b:.0} | {c:.0} | {d:.0} |\n", r.endpoints);
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64().max(1e-9);
        s += &format!(
            "\nFrom {} to {} endpoints: connect CPU {:.2}×, disconnect CPU {:.2}× (target: within 1.2×).\n",
            first.endpoints,
            last.endpoints,
            ratio(first.connect.1, last.connect.1),
            ratio(first.disconnect.1, last.disconnect.1)
        );
    }
    s
}
