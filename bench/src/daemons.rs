//! Daemons under test, each in a private network namespace with its own state directory,
//! removed (with everything they made) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_core::client::Client;

/// A private network namespace, deleted on drop.
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
pub struct Daemon {
    /// What it is, for reports.
    pub name: &'static str,
    /// Its socket.
    pub socket: PathBuf,
    dir: PathBuf,
    child: Child,
    _netns: PrivateNetns,
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

impl Daemon {
    /// wharfd from `bin_dir`, with the plugins built beside it.
    pub fn wharfd(bin_dir: &Path, dir: &Path) -> Result<Daemon, String> {
        let netns = PrivateNetns::new("wharf-bench-w")?;
        let dir = dir.join("wharf");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("wharf.sock");
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .arg("--")
            .arg(bin_dir.join("wharfd"))
            .args(["--root"])
            .arg(dir.join("root"))
            .args(["--socket"])
            .arg(&socket)
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
            .map_err(|e| format!("start wharfd: {e}"))?;
        wait_for(&socket, &mut child, "wharfd")?;
        Ok(Daemon { name: "wharf", socket, dir, child, _netns: netns })
    }

    /// Debian's dockerd, with networking off (no bridge, no iptables) and vfs storage.
    pub fn dockerd(dir: &Path) -> Result<Daemon, String> {
        let netns = PrivateNetns::new("wharf-bench-d")?;
        let dir = dir.join("docker");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let socket = dir.join("docker.sock");
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", netns.path()))
            .args(["--", "dockerd"])
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start dockerd (apt-get install docker.io): {e}"))?;
        wait_for(&socket, &mut child, "dockerd")?;
        Ok(Daemon { name: "docker", socket, dir, child, _netns: netns })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
            let prefix = self.dir.display().to_string();
            let mut points: Vec<&str> =
                info.lines().filter_map(|l| l.split_whitespace().nth(4)).filter(|p| p.starts_with(&prefix)).collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
