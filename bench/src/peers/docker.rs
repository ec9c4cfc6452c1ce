//! Docker as its users drive it: the `docker` CLI against a dockerd of its own, with its
//! networking on, in a private namespace ([`Daemon::dockerd_networking`]).
//!
//! Docker attaches networks to containers, not to bare sandboxes, so every endpoint `id` gets
//! a running container (`sleep infinity` in a tiny image imported from a tarball built from
//! this machine's own binaries, no registry needed), made outside the timing.
//!
//! A container started with `--network none` cannot join another network, so the containers
//! start on an internal "park" bridge network of their own (no gateway, no NAT, no published
//! ports) and the benchmark's network is then connected as their second network. Joining it
//! makes it the container's gateway network, so Docker programs the container's published
//! ports (`-p`, only possible when a container is created) on that endpoint when it connects
//! (DNAT rules in the daemon's namespace) and removes them when it disconnects.

use super::{Endpoints, Kind, NetSpec, Port};
use crate::daemons::Daemon;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The local image the containers run, imported from a tarball.
pub const IMAGE: &str = "wharf-bench/rootfs:latest";

/// How many `docker run` clients [`Docker::ensure_containers`] runs at once.
const PARALLEL: usize = 4;

/// The programs copied into the image, with the shared libraries they load: `sleep` keeps a
/// container running, `ping` checks its connectivity.
const PROGRAMS: [&str; 2] = ["/usr/bin/sleep", "/usr/bin/ping"];

/// One container and the ports it was created with.
#[derive(Debug)]
struct Container {
    name: String,
    ports: Vec<Port>,
}

/// A dockerd with one network of the benchmark's kind, and a running container for each
/// endpoint; all removed on drop (containers, networks, image, macvlan parent, then the
/// daemon itself).
#[derive(Debug)]
pub struct Docker {
    host: String,
    net: String,
    park: String,
    macvlan_parent: Option<String>,
    rootfs: PathBuf,
    containers: BTreeMap<usize, Container>,
    /// The daemon; public so the harness can read its memory ([`Daemon::dir`]).
    pub daemon: Daemon,
}

/// `docker network create` arguments for `spec`.
pub fn create_args(spec: &NetSpec) -> Vec<String> {
    let mut args: Vec<String> = vec!["network".into(), "create".into(), "-d".into(), spec.kind.as_str().into()];
    args.extend(["--subnet".into(), spec.subnet.clone(), "--gateway".into(), spec.gateway.clone()]);
    match spec.kind {
        Kind::Bridge => args.extend(["-o".into(), format!("com.docker.network.bridge.name={}", spec.bridge)]),
        Kind::Macvlan => {
            args.extend(["-o".into(), format!("parent={}", spec.parent), "-o".into(), "macvlan_mode=bridge".into()])
        }
    }
    args.push(spec.name.clone());
    args
}

/// `docker run` arguments for a container `name` on network `park` publishing `ports` over
/// TCP: `sleep infinity`, killed at once when stopped, without logs.
pub fn run_args(name: &str, park: &str, ports: &[Port]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "-d", "--name", name, "--network", park, "--stop-signal", "KILL"]
        .into_iter()
        .chain(["--log-driver", "none"])
        .map(String::from)
        .collect();
    for p in ports {
        args.push("-p".into());
        args.push(format!("{}:{}/tcp", p.host_port, p.container_port));
    }
    args.extend([IMAGE, "/usr/bin/sleep", "infinity"].map(String::from));
    args
}

/// The files `ldd` says a program loads (the vDSO has none).
pub fn ldd_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, to)| to.trim());
            path.split_whitespace().next().filter(|p| p.starts_with('/')).map(PathBuf::from)
        })
        .collect()
}

/// Run one `docker -H host args` and return how long it took.
fn docker(host: &str, args: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new("docker").args(["-H", host]).args(args).output().map_err(|e| format!("docker: {e}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        return Err(format!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(d)
}

/// Run one command and fail with its error output.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Build the image's tarball under `dir`: [`PROGRAMS`] and their libraries, at the same paths.
fn build_rootfs(dir: &Path) -> Result<PathBuf, String> {
    let root = dir.join("root");
    let mut files = Vec::new();
    for program in PROGRAMS {
        files.push(PathBuf::from(program));
        files.extend(ldd_paths(&run("ldd", &[program])?));
    }
    for file in files {
        let to = root.join(file.strip_prefix("/").unwrap_or(&file));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::copy(&file, &to).map_err(|e| format!("copy {} to {}: {e}", file.display(), to.display()))?;
    }
    let tar = dir.join("rootfs.tar");
    run("tar", &["-C", &root.display().to_string(), "-cf", &tar.display().to_string(), "."])?;
    Ok(tar)
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Docker {
    /// Drive `daemon` (a [`Daemon::dockerd_networking`]): import the image (built under
    /// `work`), make the containers' park network and the network `spec`, with its macvlan
    /// parent (a veth pair in the daemon's namespace) first for macvlan networks.
    pub fn new(daemon: Daemon, spec: &NetSpec, work: &Path) -> Result<Docker, String> {
        let rootfs = work.join(format!("docker-rootfs-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst)));
        let mut docker = Docker {
            host: format!("unix://{}", daemon.socket.display()),
            net: spec.name.clone(),
            park: format!("{}-park", spec.name),
            macvlan_parent: None,
            rootfs,
            containers: BTreeMap::new(),
            daemon,
        };
        std::fs::create_dir_all(&docker.rootfs).map_err(|e| format!("{}: {e}", docker.rootfs.display()))?;
        let tar = build_rootfs(&docker.rootfs)?;
        docker.docker(&["import".into(), tar.display().to_string(), IMAGE.into()])?;
        docker.docker(&["network", "create", "--internal", "-d", "bridge", &docker.park].map(String::from))?;
        if spec.kind == Kind::Macvlan {
            super::wharf::veth_parent(&docker.daemon.netns().0, &spec.parent)?;
            docker.macvlan_parent = Some(spec.parent.clone());
        }
        docker.docker(&create_args(spec))?;
        Ok(docker)
    }

    fn docker(&self, args: &[String]) -> Result<Duration, String> {
        docker(&self.host, args)
    }

    fn name(&self, id: usize) -> String {
        format!("{}-c{id}", self.net)
    }

    /// Make sure a running container for `id` publishes exactly `ports`: made if missing,
    /// made again if it was made with other ports.
    fn container(&mut self, id: usize, ports: &[Port]) -> Result<String, String> {
        if let Some(c) = self.containers.get(&id) {
            if c.ports == ports {
                return Ok(c.name.clone());
            }
            self.docker(&["rm".into(), "-f".into(), c.name.clone()])?;
            self.containers.remove(&id);
        }
        let name = self.name(id);
        self.docker(&run_args(&name, &self.park, ports))?;
        self.containers.insert(id, Container { name: name.clone(), ports: ports.to_vec() });
        Ok(name)
    }

    /// Start a container (without ports) for each endpoint `0..n` that has none yet,
    /// [`PARALLEL`] `docker run` at a time; returns how long that took.
    pub fn ensure_containers(&mut self, n: usize) -> Result<Duration, String> {
        let missing: Vec<usize> = (0..n).filter(|id| !self.containers.contains_key(id)).collect();
        let next = AtomicUsize::new(0);
        let started = Mutex::new(Vec::new());
        let t = Instant::now();
        let errors: Vec<String> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..PARALLEL)
                .map(|_| {
                    s.spawn(|| -> Result<(), String> {
                        while let Some(&id) = missing.get(next.fetch_add(1, Ordering::SeqCst)) {
                            let name = self.name(id);
                            self.docker(&run_args(&name, &self.park, &[]))?;
                            started.lock().expect("lock").push((id, name));
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().filter_map(|w| w.join().expect("docker run worker").err()).collect()
        });
        let elapsed = t.elapsed();
        for (id, name) in started.into_inner().expect("lock") {
            self.containers.insert(id, Container { name, ports: Vec::new() });
        }
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(elapsed),
        }
    }

    /// The running containers' names, by endpoint.
    pub fn containers(&self) -> impl Iterator<Item = (usize, &str)> {
        self.containers.iter().map(|(id, c)| (*id, c.name.as_str()))
    }

    /// Run `docker args` on the daemon, e.g. `exec` into a container; returns its output.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-H", &self.host];
        all.extend(args);
        run("docker", &all)
    }
}

impl Endpoints for Docker {
    fn label(&self) -> &str {
        "docker"
    }

    /// Times `docker network connect`; with `ports`, the container was created publishing
    /// them and this connect programs them on the new endpoint.
    fn connect(&mut self, id: usize, ports: &[Port]) -> Result<Duration, String> {
        let name = self.container(id, ports)?;
        self.docker(&["network".into(), "connect".into(), self.net.clone(), name])
    }

    fn disconnect(&mut self, id: usize) -> Result<Duration, String> {
        let name =
            self.containers.get(&id).ok_or_else(|| format!("docker: no container for endpoint {id}"))?.name.clone();
        self.docker(&["network".into(), "disconnect".into(), self.net.clone(), name])
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let names: Vec<String> = self.containers.values().map(|c| c.name.clone()).collect();
        std::thread::scope(|s| {
            for chunk in names.chunks(names.len().div_ceil(PARALLEL).max(1)) {
                s.spawn(|| {
                    let mut args = vec!["rm".to_string(), "-f".into()];
                    args.extend(chunk.iter().cloned());
                    let _ = self.docker(&args);
                });
            }
        });
        let _ = self.docker(&["network", "rm", &self.net, &self.park].map(String::from));
        let _ = self.docker(&["rmi".into(), IMAGE.into()]);
        if let Some(parent) = &self.macvlan_parent {
            let _ = run("ip", &["-n", &self.daemon.netns().0, "link", "del", parent]);
        }
        let _ = std::fs::remove_dir_all(&self.rootfs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind) -> NetSpec {
        NetSpec {
            kind,
            name: "bench2".into(),
            subnet: "10.202.0.0/16".into(),
            gateway: "10.202.0.1".into(),
            bridge: "wbbr2".into(),
            parent: "wbpar2".into(),
        }
    }

    #[test]
    fn a_bridge_network_is_named_after_its_bridge() {
        let args = create_args(&spec(Kind::Bridge));
        assert_eq!(
            args.join(" "),
            "network create -d bridge --subnet 10.202.0.0/16 --gateway 10.202.0.1 \
             -o com.docker.network.bridge.name=wbbr2 bench2"
        );
    }

    #[test]
    fn a_macvlan_network_names_its_parent() {
        let args = create_args(&spec(Kind::Macvlan)).join(" ");
        assert!(args.starts_with("network create -d macvlan --subnet 10.202.0.0/16"), "{args}");
        assert!(args.ends_with("-o parent=wbpar2 -o macvlan_mode=bridge bench2"), "{args}");
    }

    #[test]
    fn containers_publish_their_ports_when_made() {
        let ports = [Port { host_port: 8080, container_port: 80 }, Port { host_port: 8443, container_port: 443 }];
        let args = run_args("bench2-c7", "bench2-park", &ports).join(" ");
        assert!(args.starts_with("run -d --name bench2-c7 --network bench2-park "), "{args}");
        assert!(args.contains(" -p 8080:80/tcp -p 8443:443/tcp "), "{args}");
        assert!(args.ends_with(" wharf-bench/rootfs:latest /usr/bin/sleep infinity"), "{args}");
        assert!(!run_args("c", "p", &[]).contains(&"-p".to_string()));
    }

    #[test]
    fn ldd_output_gives_the_files_to_copy() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f00)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f01)\n";
        assert_eq!(
            ldd_paths(out),
            vec![PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]
        );
    }
}
