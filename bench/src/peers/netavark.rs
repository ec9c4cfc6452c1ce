//! netavark, driven the way podman 4.3 drives it: one `netavark setup` or `teardown` per
//! endpoint, fed the network and the container's options as JSON on stdin, in a private
//! "host" namespace of its own. [`HostNetns`], that namespace with the timed run of a tool in
//! it, is shared with the CNI peer.

use super::wharf::veth_parent;
use super::{Endpoints, Kind, NetSpec, Port};
use crate::daemons::PrivateNetns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where Debian (and Fedora) install netavark; it is not on `PATH`.
const LOCATIONS: [&str; 3] =
    ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark", "/usr/local/libexec/podman/netavark"];

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A private namespace playing the host of a peer (`wb-<tag>-<pid>-<n>`, lo up, and for
/// macvlan networks the veth parent link), with the container namespaces made in it.
/// Everything is deleted on drop.
#[derive(Debug)]
pub struct HostNetns {
    file: File,
    netns: PrivateNetns,
}

impl HostNetns {
    /// Make one for peer `tag` and networks like `spec`.
    pub fn new(tag: &str, spec: &NetSpec) -> Result<HostNetns, String> {
        let name = format!("wb-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let netns = PrivateNetns::new(&name)?;
        if spec.kind == Kind::Macvlan {
            veth_parent(&name, &spec.parent)?;
        }
        let file = File::open(netns.path()).map_err(|e| format!("open {}: {e}", netns.path()))?;
        Ok(HostNetns { file, netns })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.netns.0
    }

    /// Make the namespace of container `id` (`<host name>-c<id>`), lo up.
    pub fn container(&self, id: usize) -> Result<PrivateNetns, String> {
        PrivateNetns::new(&format!("{}-c{id}", self.name()))
    }

    /// Run `cmd` in this namespace with `stdin` as its input; return how long it took from
    /// spawn to exit, and its standard output. A failure carries its output.
    pub fn run(&self, mut cmd: Command, stdin: &[u8]) -> Result<(Duration, String), String> {
        let what = format!("{:?}", cmd.get_program());
        let fd = self.file.as_raw_fd();
        let enter = move || {
            // SAFETY: `fd` stays open as long as `self` does, which outlives the spawn.
            let ns = unsafe { BorrowedFd::borrow_raw(fd) };
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        };
        // SAFETY: the closure runs in the forked child before exec and only makes the setns
        // system call, which is async-signal-safe.
        unsafe { cmd.pre_exec(enter) };
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
        let mut input = child.stdin.take().expect("piped stdin");
        let written = input.write_all(stdin);
        drop(input);
        let out = child.wait_with_output().map_err(|e| format!("{what}: {e}"))?;
        let took = t.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{what} in {}: {}: {} {}", self.name(), out.status, stdout.trim(), stderr.trim()));
        }
        written.map_err(|e| format!("{what}: write stdin: {e}"))?;
        Ok((took, stdout))
    }
}

/// The address of endpoint `id` in `spec`: the gateway plus 1 plus `id`, below the subnet's
/// broadcast address.
pub fn endpoint_ip(spec: &NetSpec, id: usize) -> Result<Ipv4Addr, String> {
    let bad = |what: &str| format!("{what} of network {}: {} / {}", spec.name, spec.subnet, spec.gateway);
    let (base, len) = spec.subnet.split_once('/').ok_or_else(|| bad("subnet"))?;
    let base: Ipv4Addr = base.parse().map_err(|_| bad("subnet"))?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| bad("prefix length"))?;
    let gateway: Ipv4Addr = spec.gateway.parse().map_err(|_| bad("gateway"))?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    let broadcast = (u32::from(base) & mask) | !mask;
    u32::try_from(id)
        .ok()
        .and_then(|id| u32::from(gateway).checked_add(1)?.checked_add(id))
        .filter(|ip| ip & mask == u32::from(base) & mask && *ip < broadcast)
        .map(Ipv4Addr::from)
        .ok_or_else(|| format!("endpoint {id} does not fit in {} after {}", spec.subnet, spec.gateway))
}

/// The JSON podman 4.3 feeds `netavark setup` and `teardown` for container `id` on `spec`
/// with `ports` published over TCP (bridge networks only): the container's options on the
/// network (a static IP, `eth0`) and the network itself, with DNS off so no aardvark-dns runs.
pub fn options(spec: &NetSpec, id: usize, ports: &[Port]) -> Result<Value, String> {
    let ip = endpoint_ip(spec, id)?;
    let mut network = json!({
        "name": spec.name,
        "id": format!("{:0>64}", format!("{:x}", id_hash(&spec.name))),
        "driver": spec.kind.as_str(),
        "subnets": [{ "subnet": spec.subnet, "gateway": spec.gateway }],
        "ipv6_enabled": false,
        "internal": false,
        "dns_enabled": false,
        "ipam_options": { "driver": "host-local" },
    });
    match spec.kind {
        Kind::Bridge => network["network_interface"] = json!(spec.bridge),
        Kind::Macvlan => {
            network["network_interface"] = json!(spec.parent);
            network["options"] = json!({ "mode": "bridge" });
        }
    }
    let mut body = json!({
        "container_id": format!("{:0>64}", format!("{:x}", id + 1)),
        "container_name": format!("wb{id}"),
        "networks": { spec.name.as_str(): { "static_ips": [ip.to_string()], "interface_name": "eth0" } },
        "network_info": { spec.name.as_str(): network },
    });
    if spec.kind == Kind::Bridge && !ports.is_empty() {
        let mappings: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "host_ip": "",
                    "container_port": p.container_port,
                    "host_port": p.host_port,
                    "range": 1,
                    "protocol": "tcp",
                })
            })
            .collect();
        body["port_mappings"] = json!(mappings);
    }
    Ok(body)
}

/// A stable hex network id from the network's name, as podman derives one from random bytes.
fn id_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One endpoint: its container namespace and what it was set up with.
#[derive(Debug)]
struct Attached {
    body: Vec<u8>,
    netns: PrivateNetns,
}

/// netavark in a private host namespace, attaching endpoints of one network like podman does.
#[derive(Debug)]
pub struct Netavark {
    spec: NetSpec,
    bin: PathBuf,
    dir: PathBuf,
    attached: BTreeMap<usize, Attached>,
    host: HostNetns,
}

impl Netavark {
    /// The netavark binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        let known = LOCATIONS.iter().map(PathBuf::from).find(|p| p.is_file());
        known.or_else(|| {
            std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("netavark")).find(|p| p.is_file())
        })
    }

    /// Whether netavark is installed.
    pub fn available() -> bool {
        Netavark::binary().is_some()
    }

    /// Make a private host namespace for networks like `spec`, with netavark's config
    /// directory under `work`.
    pub fn new(spec: &NetSpec, work: &Path) -> Result<Netavark, String> {
        let bin = Netavark::binary().ok_or("netavark is not installed")?;
        let host = HostNetns::new("nv", spec)?;
        let dir = work.join(host.name());
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Netavark { spec: spec.clone(), bin, dir, attached: BTreeMap::new(), host })
    }

    fn netavark(&self, action: &str, netns: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("NETAVARK_FW", "iptables").arg("--config").arg(&self.dir).arg(action).arg(netns);
        cmd
    }
}

impl Endpoints for Netavark {
    fn label(&self) -> &str {
        "netavark"
    }

    fn connect(&mut self, id: usize, ports: &[Port]) -> Result<Duration, String> {
        if self.attached.contains_key(&id) {
            return Err(format!("netavark: endpoint {id} is already attached"));
        }
        let body = serde_json::to_vec(&options(&self.spec, id, ports)?).map_err(|e| e.to_string())?;
        let netns = self.host.container(id)?;
        let (took, _) = self.host.run(self.netavark("setup", &netns.path()), &body)?;
        self.attached.insert(id, Attached { body, netns });
        Ok(took)
    }

    fn disconnect(&mut self, id: usize) -> Result<Duration, String> {
        let endpoint = self.attached.get(&id).ok_or_else(|| format!("netavark: endpoint {id} is not attached"))?;
        let (took, _) = self.host.run(self.netavark("teardown", &endpoint.netns.path()), &endpoint.body)?;
        self.attached.remove(&id);
        Ok(took)
    }
}

impl Drop for Netavark {
    fn drop(&mut self) {
        self.attached.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> NetSpec {
        NetSpec {
            kind,
            name: "benchnet".into(),
            subnet: "10.200.0.0/16".into(),
            gateway: "10.200.0.1".into(),
            bridge: "wbbr0".into(),
            parent: "wbpar0".into(),
        }
    }

    #[test]
    fn bridge_options_carry_network_address_and_ports() {
        let ports = [Port { host_port: 8080, container_port: 80 }];
        let v = options(&spec(Kind::Bridge), 3, &ports).unwrap();
        assert_eq!(v["container_id"].as_str().unwrap().len(), 64);
        assert!(v["container_name"].is_string());
        let net = &v["network_info"]["benchnet"];
        assert_eq!(net["driver"], "bridge");
        assert_eq!(net["name"], "benchnet");
        assert_eq!(net["id"].as_str().unwrap().len(), 64);
        assert_eq!(net["network_interface"], "wbbr0");
        assert_eq!(net["subnets"][0]["subnet"], "10.200.0.0/16");
        assert_eq!(net["subnets"][0]["gateway"], "10.200.0.1");
        assert_eq!(net["dns_enabled"], false);
        assert_eq!(net["ipv6_enabled"], false);
        assert_eq!(net["internal"], false);
        assert_eq!(net["ipam_options"]["driver"], "host-local");
        let per = &v["networks"]["benchnet"];
        assert_eq!(per["interface_name"], "eth0");
        assert_eq!(per["static_ips"][0], "10.200.0.5");
        let map = &v["port_mappings"][0];
        assert_eq!((map["host_port"].as_u64(), map["container_port"].as_u64()), (Some(8080), Some(80)));
        assert_eq!(
            (map["protocol"].as_str(), map["range"].as_u64(), map["host_ip"].as_str()),
            (Some("tcp"), Some(1), Some(""))
        );
    }

    #[test]
    fn macvlan_options_name_the_parent_and_mode() {
        let v = options(&spec(Kind::Macvlan), 0, &[]).unwrap();
        let net = &v["network_info"]["benchnet"];
        assert_eq!(net["driver"], "macvlan");
        assert_eq!(net["network_interface"], "wbpar0");
        assert_eq!(net["options"]["mode"], "bridge");
        assert_eq!(v["networks"]["benchnet"]["static_ips"][0], "10.200.0.2");
        assert!(v.get("port_mappings").is_none());
    }

    #[test]
    fn endpoint_addresses_stay_in_the_subnet() {
        let mut small = spec(Kind::Bridge);
        small.subnet = "10.200.0.0/29".into();
        assert_eq!(endpoint_ip(&small, 4).unwrap(), Ipv4Addr::new(10, 200, 0, 6));
        assert!(endpoint_ip(&small, 5).is_err());
    }
}
