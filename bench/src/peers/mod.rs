//! The systems compared with wharf, each driven from its own client's side, one command per
//! operation, in its own private network namespace.
//!
//! Every peer implements [`Endpoints`]: attach and detach one endpoint of a network that the
//! peer set up when it was made. Namespaces, bridges, containers and state directories a
//! peer makes are removed when it is dropped.

use crate::report::Report;
use std::time::Duration;

/// Which kind of network the endpoints join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Linux bridge with NAT to the outside (Docker's `bridge` driver).
    Bridge,
    /// macvlan in bridge mode on a parent link of the private host namespace.
    Macvlan,
}

impl Kind {
    /// `bridge` or `macvlan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bridge => "bridge",
            Kind::Macvlan => "macvlan",
        }
    }
}

/// The network a peer's endpoints join.
#[derive(Debug, Clone)]
pub struct NetSpec {
    /// Bridge or macvlan.
    pub kind: Kind,
    /// Network name, e.g. `benchnet`.
    pub name: String,
    /// IPv4 subnet, e.g. `10.200.0.0/16` (large enough for 1000+ endpoints).
    pub subnet: String,
    /// The gateway address in `subnet`, e.g. `10.200.0.1`.
    pub gateway: String,
    /// Bridge device name (bridge networks), e.g. `wbbr0`.
    pub bridge: String,
    /// Parent link in the peer's host namespace (macvlan networks); the peer creates it
    /// (a veth pair) when it is made.
    pub parent: String,
}

/// A published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// Port on the host.
    pub host_port: u16,
    /// Port in the sandbox.
    pub container_port: u16,
}

/// Attach and detach endpoints of one network, as a user of that system would.
pub trait Endpoints {
    /// What this is, for reports: `wharf CLI`, `wharf API`, `docker`, `netavark`, `CNI`.
    fn label(&self) -> &str;
    /// Attach endpoint `id` (a new sandbox, container or namespace for each `id`, made
    /// outside the timing where the system allows it) publishing `ports` (bridge only).
    /// Returns the time of the one client command that attaches it.
    fn connect(&mut self, id: usize, ports: &[Port]) -> Result<Duration, String>;
    /// Detach endpoint `id`. Returns the time of the one client command that detaches it.
    fn disconnect(&mut self, id: usize) -> Result<Duration, String>;
}

pub mod cni;
pub mod docker;
pub mod kernel;
pub mod netavark;
pub mod wharf;

/// The peers other than wharf that are installed, for networks like `spec`. Each one that is
/// missing or cannot be made gets a note in `report`.
pub fn others(spec: &NetSpec, work: &std::path::Path, docker: bool, report: &mut Report) -> Vec<Box<dyn Endpoints>> {
    let mut out: Vec<Box<dyn Endpoints>> = Vec::new();
    if docker {
        match crate::daemons::Daemon::dockerd_networking(work).and_then(|d| docker::Docker::new(d, spec, work)) {
            Ok(p) => out.push(Box::new(p)),
            Err(e) => report.note(format!("docker: left out of endpoints {}: {e}", spec.kind.as_str())),
        }
    } else {
        report.note(format!("docker: left out of endpoints {} (--skip-docker)", spec.kind.as_str()));
    }
    if netavark::Netavark::available() {
        match netavark::Netavark::new(spec, work) {
            Ok(p) => out.push(Box::new(p)),
            Err(e) => report.note(format!("netavark: left out of endpoints {}: {e}", spec.kind.as_str())),
        }
    } else {
        report.note("netavark: not installed (apt-get install netavark, or --install-peers)");
    }
    if cni::Cni::available() {
        match cni::Cni::new(spec, work) {
            Ok(p) => out.push(Box::new(p)),
            Err(e) => report.note(format!("CNI: left out of endpoints {}: {e}", spec.kind.as_str())),
        }
    } else {
        report.note("CNI plugins: not installed (apt-get install containernetworking-plugins, or --install-peers)");
    }
    out
}

/// dockerd's memory (with containerd and the shims), idle and with `n` endpoints on a
/// bridge network, as values of `section` in `report`.
pub fn docker_memory(work: &std::path::Path, n: usize, section: &str, report: &mut Report) {
    let spec = NetSpec {
        kind: Kind::Bridge,
        name: "mem".into(),
        subnet: "10.230.0.0/16".into(),
        gateway: "10.230.0.1".into(),
        bridge: "wbmem".into(),
        parent: "wbmempar".into(),
    };
    let mut d = match crate::daemons::Daemon::dockerd_networking(work).and_then(|d| docker::Docker::new(d, &spec, work))
    {
        Ok(d) => d,
        Err(e) => return report.note(format!("docker: left out of the memory measurement: {e}")),
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    report.value(section, "dockerd + containerd RSS, idle", crate::rss_kib(d.daemon.dir()) as f64 / 1024.0, "MiB");
    for id in 0..n {
        if let Err(e) = d.connect(id, &[]) {
            return report.note(format!("docker: memory with {n} endpoints: {e}"));
        }
    }
    let label = format!("dockerd + containerd + shims RSS, {n} endpoints");
    report.value(section, &label, crate::rss_kib(d.daemon.dir()) as f64 / 1024.0, "MiB");
}
