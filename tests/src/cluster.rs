//! Cluster fixtures: a private etcd, and hosts on one underlay sharing it.

use super::{run, unique, Host, Netns};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private etcd with a temporary data directory, listening for clients on
/// `http://ADDR:2379` inside a namespace the caller made; stopped (and its data removed)
/// on drop.
#[derive(Debug)]
pub struct Etcd {
    ns: String,
    addr: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    /// Start etcd in `ns` on `addr`, an address of that namespace, and wait until it listens.
    pub fn start(ns: &Netns, addr: &str) -> Etcd {
        let dir = std::env::temp_dir().join(format!("wharf-etcd-{}", unique("e")));
        std::fs::create_dir_all(&dir).expect("etcd temp dir");
        let mut etcd = Etcd { ns: ns.name.clone(), addr: addr.to_string(), dir, child: None };
        etcd.restart();
        etcd
    }

    /// Start it again on the same data, after [`Etcd::stop`].
    pub fn restart(&mut self) {
        let client = format!("http://{}:2379", self.addr);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log")).expect("etcd log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "etcd", "--name", "wharf-test", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &format!("http://{}:2380", self.addr)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !run("ip", &["netns", "exec", &self.ns, "nc", "-z", &self.addr, "2379"]).status.success() {
            assert!(Instant::now() < deadline, "etcd did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill it, keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcd://ADDR:2379`, as `--cluster-store` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}:2379", self.addr)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the underlay's etcd listens.
const UNDERLAY_ETCD: &str = "192.168.80.254";

/// Hosts on one underlay: a bridge in a namespace of its own where a private etcd listens
/// (192.168.80.254), and a [`Host`] per member, linked to the bridge, with its wharfd in
/// the cluster (lease TTL `ttl` seconds).
#[derive(Debug)]
pub struct Underlay {
    /// The etcd every host's wharfd uses.
    pub etcd: Etcd,
    /// The underlay's namespace.
    pub ns: Netns,
    ttl: u64,
}

impl Underlay {
    /// Make the bridge and start etcd on it.
    pub fn start(ttl: u64) -> Underlay {
        let ns = Netns::new("wc");
        for args in [
            vec!["ip", "link", "add", "wcbr", "type", "bridge"],
            vec!["ip", "addr", "add", "192.168.80.254/24", "dev", "wcbr"],
            vec!["ip", "link", "set", "wcbr", "up"],
        ] {
            let out = ns.exec(&args);
            assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Underlay { etcd: Etcd::start(&ns, UNDERLAY_ETCD), ns, ttl }
    }

    /// A host with 192.168.80.`n` (and fd80::`n`), advertising its IPv4 address.
    pub fn host(&self, n: u8) -> Host {
        self.host_advertising(n, &format!("192.168.80.{n}"))
    }

    /// A host on the underlay with 192.168.80.`n` and fd80::`n`, advertising `addr`.
    pub fn host_advertising(&self, n: u8, addr: &str) -> Host {
        let store = self.etcd.url();
        let ttl = self.ttl.to_string();
        // The underlay first, so that the daemon finds etcd at once.
        let mut h = Host::stopped();
        let port = format!("wcu{n}");
        h.in_host_ok(&["ip", "link", "add", "u0", "type", "veth", "peer", "name", &port, "netns", &self.ns.name]);
        h.in_host_ok(&["ip", "addr", "add", &format!("192.168.80.{n}/24"), "dev", "u0"]);
        h.in_host_ok(&["ip", "addr", "add", &format!("fd80::{n}/64"), "dev", "u0", "nodad"]);
        h.in_host_ok(&["ip", "link", "set", "u0", "up"]);
        for args in [vec!["ip", "link", "set", &port, "master", "wcbr"], vec!["ip", "link", "set", &port, "up"]] {
            assert!(self.ns.exec(&args).status.success(), "{}", args.join(" "));
        }
        h.set_args(&["--cluster-store", &store, "--advertise-addr", addr, "--cluster-ttl", &ttl]);
        h.start_daemon();
        h
    }
}
