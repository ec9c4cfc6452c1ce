//! Daemons under test, each in a private network namespace with its own state directory,
//! removed (with everything they made) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wharf_client::Client;

/// A private network namespace, deleted on drop.
#[derive(Debug)]
pub struct PrivateNetns(pub String);

impl PrivateNetns {
    /// Make one named `name`.
    pub fn new(name: &str) -> Result<PrivateNetns, String> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let ok = Command::new("ip").args(["netns", "add", name]).status().map_err(|e| e.to_string())?.success();
        if !ok {
            return Err(format!("cannot create network namespace {name}"));
        }
        let _ = Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]).status();
        Ok(PrivateNetns(name.to_string()))
    }

    /// Its namespace file.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A daemon process serving the Docker volume API on a unix socket.
#[derive(Debug)]
pub struct Daemon {
    /// What it is, for reports.
    pub name: &'static str,
    /// Its socket.
    pub socket: PathBuf,
    dir: PathBuf,
    child: Child,
    _netns: PrivateNetns,
    /// For wharfd: the directory its binary is in, to restart it.
    wharfd: Option<PathBuf>,
}

fn wait_for(socket: &Path, child: &mut Child, what: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let client = Client::new(&socket.display().to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if rt.block_on(client.request("GET", "/_ping", None)).is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited with {status}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("{what} did not answer on {}", socket.display()))
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn spawn_wharfd(bin_dir: &Path, dir: &Path, netns: &PrivateNetns, socket: &Path) -> Result<Child, String> {
    Command::new("nsenter")
        .arg(format!("--net={}", netns.path()))
        .arg("--")
        .arg(bin_dir.join("wharfd"))
        .args(["--root"])
        .arg(dir.join("root"))
        .args(["--socket"])
        .arg(socket)
        .args(["--netns-dir"])
        .arg(dir.join("netns"))
        .args(["--netns-etc-dir"])
        .arg(dir.join("etc"))
        .args(["--plugin-dir"])
        .arg(bin_dir)
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start wharfd: {e}"))
}

impl Daemon {
    /// wharfd from `bin_dir`, with the plugins built beside it, in a new private namespace,
    /// with its state under `dir`.
    pub fn wharfd(bin_dir: &Path, dir: &Path) -> Result<Daemon, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let netns = PrivateNetns::new(&format!("wharf-bench-w{}-{n}", std::process::id()))?;
        let dir = dir.join(format!("wharf{n}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("wharf.sock");
        let mut child = spawn_wharfd(bin_dir, &dir, &netns, &socket)?;
        wait_for(&socket, &mut child, "wharfd")?;
        let spawn = Some(bin_dir.to_path_buf());
        Ok(Daemon { name: "wharf", socket, dir, child, _netns: netns, wharfd: spawn })
    }

    /// The private network namespace the daemon runs in (its "host").
    pub fn netns(&self) -> &PrivateNetns {
        &self._netns
    }

    /// The directory holding the daemon's state, socket and namespaces.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop wharfd with SIGTERM and start it again on the same state; returns the time from
    /// the new process's start until its API answers (state reconciled: wharfd reconciles
    /// before it serves).
    pub fn restart_wharfd(&mut self) -> Result<Duration, String> {
        let bin_dir = self.wharfd.clone().ok_or("only wharfd restarts")?;
        self.stop();
        let t = Instant::now();
        self.child = spawn_wharfd(&bin_dir, &self.dir, &self._netns, &self.socket)?;
        wait_for(&self.socket, &mut self.child, "wharfd")?;
        Ok(t.elapsed())
    }

    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Debian's dockerd, with networking off (no bridge, no iptables) and vfs storage.
    pub fn dockerd(dir: &Path) -> Result<Daemon, String> {
        Daemon::spawn_dockerd(dir, "plain", &["--iptables=false", "--ip6tables=false"])
    }

    /// Debian's dockerd with its networking on, as Docker users run it: iptables rules, port
    /// publishing by DNAT without the userland proxy, no default `docker0` bridge, vfs
    /// storage. Its bridges and rules live in its own private namespace ([`Daemon::netns`]);
    /// each call makes a new namespace and state directory, so several can run at once.
    pub fn dockerd_networking(dir: &Path) -> Result<Daemon, String> {
        Daemon::spawn_dockerd(dir, "net", &["--iptables=true", "--ip6tables=false", "--userland-proxy=false"])
    }

    /// dockerd in a new namespace with state in a new directory under `dir`, named so that no
    /// directory's path is a prefix of another's (memory is summed by path in command lines).
    fn spawn_dockerd(dir: &Path, flavour: &str, network: &[&str]) -> Result<Daemon, String> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let netns = PrivateNetns::new(&format!("wharf-bench-d{}-{n}", std::process::id()))?;
        let dir = dir.join(format!("docker-{n}-{flavour}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("docker.sock");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .args(["--", "dockerd"])
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", socket.display()))
            .args(network)
            .args(["--bridge=none", "--storage-driver=vfs"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start dockerd (apt-get install docker.io): {e}"))?;
        let mut daemon = Daemon { name: "docker", socket, dir, child, _netns: netns, wharfd: None };
        wait_for(&daemon.socket, &mut daemon.child, "dockerd")?;
        Ok(daemon)
    }
}

/// Kill what is left of a stopped daemon: processes (other than this one) whose command line
/// names `dir` or a path in it, such as dockerd's containerd and its shims.
fn kill_leftovers(dir: &Path) {
    let dir = dir.display().to_string();
    let inside = format!("{dir}/");
    let names_dir = |arg: &str| arg.ends_with(&dir) || arg.contains(&inside);
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if pid != me && String::from_utf8_lossy(&cmdline).split('\0').any(names_dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        kill_leftovers(&self.dir);
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let dir = self.dir.display().to_string();
            let inside = format!("{dir}/");
            let mut points: Vec<&str> = info
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4))
                .filter(|p| *p == dir || p.starts_with(&inside))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
