//! wharf-tests: the harness end-to-end tests stand on.
//!
//! Each test makes a private "host" network namespace, runs `wharfd` inside it with its
//! own root directory, socket and sandbox directory, and drives it through the `wharf`
//! CLI, the docker CLI or raw API calls. Nothing touches the machine's own network
//! namespace, and everything is removed when the [`Host`] is dropped, also on panic.
//!
//! The binaries and plugin libraries a test runs are the ones cargo builds for it: the first
//! call to [`target_dir`] in a test process builds them with that process's profile into its
//! target directory (see [`build_once`]), so a test never runs one older than the source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod cluster;

pub use cluster::{Etcd, Underlay};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether this process runs as root, which every end-to-end test needs.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Return from the calling test, with one line saying why, unless it runs as root: the
/// end-to-end tests make network namespaces, links, firewall tables and mounts.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root (it makes network namespaces, links, nftables tables and mounts)");
            return;
        }
    };
}

/// The target directory (`target/debug`) holding the binaries and plugins under test, built
/// up to date first (see [`build_once`]).
pub fn target_dir() -> PathBuf {
    build_once();
    profile_dir()
}

/// The profile directory (`target/debug`, `target/release`) this process runs from.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("executable's directory");
    // Tests run from target/PROFILE/deps, examples from target/PROFILE/examples, binaries
    // (the benchmarks) from target/PROFILE itself.
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("deps" | "examples") => dir.parent().expect("target dir").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// Build, once per process, what the tests run: `wharfd`, `wharf`, the first-party plugin
/// libraries and the example plugins, with the profile this process was built with and into
/// its target directory. Cargo has a finished build checked in well under a second.
///
/// `CARGO_BIN_EXE_*` cannot name them: cargo sets it only for binaries of the test's own
/// package, and `wharfd` and `wharf` are packages of their own (artifact dependencies, which
/// would reach them, are unstable). So the harness asks cargo itself, the one that runs the
/// test (`$CARGO`, else `cargo` on the path). Panics with cargo's output if it cannot build.
pub fn build_once() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let target = dir.parent().expect("target dir");
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(other) => other.to_string(),
            None => panic!("{}: not a cargo profile directory", dir.display()),
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(&cargo);
        build
            .args(["build", "--workspace", "--exclude", "wharf-bench", "--lib", "--bins", "--examples"])
            .args(["--profile", &profile])
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let out = build.output().unwrap_or_else(|e| panic!("cannot run {build:?} to build what the tests run: {e}"));
        assert!(
            out.status.success(),
            "building what the tests run failed ({build:?}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A unique short name: `prefix` + pid + counter, at most 15 bytes for device names.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100000)
}

/// Run a command, returning its output; panics only if it cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Run a command that must succeed; returns stdout.
pub fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private network namespace made with `ip netns add`, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
    /// Whether dropping it deletes the namespace (false for a second view of one).
    owned: bool,
}

impl Netns {
    /// Make a new namespace with loopback up.
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        ok("ip", &["netns", "add", &name]);
        ok("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name, owned: true }
    }

    /// Its namespace file.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Run a command inside it.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A plugin directory holding this build's copies of example plugins (file stems under
/// `target/debug/examples`, such as `wharf_example_driver`), removed on drop.
#[derive(Debug)]
pub struct PluginDir(PathBuf);

impl PluginDir {
    /// A new directory with `plugins` in it.
    pub fn with(plugins: &[&str]) -> PluginDir {
        let dir = std::env::temp_dir().join(unique("ws-plugins"));
        std::fs::create_dir_all(&dir).expect("plugin dir");
        for p in plugins {
            let built = target_dir().join(format!("examples/lib{p}.so"));
            std::fs::copy(&built, dir.join(format!("lib{p}.so")))
                .unwrap_or_else(|e| panic!("{}: {e}", built.display()));
        }
        PluginDir(dir)
    }

    /// The directory, as `--plugin-dir` takes it.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private host namespace with a running wharfd.
#[derive(Debug)]
pub struct Host {
    /// The host namespace.
    pub ns: Netns,
    /// Temporary directory holding root, socket, sandboxes and resolver files.
    pub dir: PathBuf,
    daemon: Option<Child>,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Host {
    /// A new host namespace with wharfd started in it.
    pub fn start() -> Host {
        Host::start_with(&[])
    }

    /// A new host with extra wharfd flags.
    pub fn start_with(extra: &[&str]) -> Host {
        let mut h = Host::prepare();
        h.extra_args = extra.iter().map(|s| s.to_string()).collect();
        h.start_daemon();
        h
    }

    /// A new host whose wharfd reads `config` (TOML) as its configuration file.
    pub fn start_with_config(config: &str) -> Host {
        Host::start_with_config_and(config, &[])
    }

    /// A new host whose wharfd reads `config` and gets `extra` flags.
    pub fn start_with_config_and(config: &str, extra: &[&str]) -> Host {
        let mut h = Host::prepare();
        let path = h.dir.join("wharf.toml");
        std::fs::write(&path, config).expect("write config");
        h.extra_args = vec!["--config".into(), path.display().to_string()];
        h.extra_args.extend(extra.iter().map(|s| s.to_string()));
        h.start_daemon();
        h
    }

    /// A new host whose namespace and directory names start with `prefix`, with wharfd
    /// started in it.
    pub fn start_named(prefix: &str) -> Host {
        let mut h = Host::prepare_named(prefix);
        h.start_daemon();
        h
    }

    fn prepare() -> Host {
        Host::prepare_named("wh")
    }

    fn prepare_named(prefix: &str) -> Host {
        let ns = Netns::new(prefix);
        let dir = std::env::temp_dir().join(format!("wharf-e2e-{}", ns.name));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Host { ns, dir, daemon: None, extra_args: Vec::new(), env: Vec::new() }
    }

    /// A new host namespace with no wharfd running yet: set the scene, then
    /// [`Host::start_daemon`].
    pub fn stopped() -> Host {
        Host::prepare()
    }

    /// A second wharfd in `other`'s host namespace, with its own root, socket and
    /// sandboxes, started with `extra` flags. `other` must outlive it.
    pub fn beside(other: &Host, extra: &[&str]) -> Host {
        let ns = Netns { name: other.ns.name.clone(), owned: false };
        let dir = std::env::temp_dir().join(format!("wharf-e2e-{}", unique("beside")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let extra_args = extra.iter().map(|s| s.to_string()).collect();
        let mut h = Host { ns, dir, daemon: None, extra_args, env: Vec::new() };
        h.start_daemon();
        h
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("wharf.sock")
    }

    /// `unix://` address of the socket, for `-H`.
    pub fn host_arg(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Where sandbox namespaces live.
    pub fn netns_dir(&self) -> PathBuf {
        self.dir.join("netns")
    }

    /// Start wharfd and wait until it answers.
    pub fn start_daemon(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("wharfd.log")).expect("log file");
        let wharfd = target_dir().join("wharfd");
        let mut args: Vec<String> = vec![
            format!("--net={}", self.ns.path()),
            "--".into(),
            wharfd.display().to_string(),
            "--root".into(),
            self.dir.join("root").display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--netns-dir".into(),
            self.netns_dir().display().to_string(),
            "--netns-etc-dir".into(),
            self.dir.join("etc-netns").display().to_string(),
            "--plugin-dir".into(),
            target_dir().display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let child = Command::new("nsenter")
            .args(&args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start wharfd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.wharf(&["version"]).status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                panic!("wharfd exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wharfd did not answer in time:\n{}", self.log());
    }

    /// Set the extra wharfd flags for the next daemon start.
    pub fn set_args(&mut self, extra: &[&str]) {
        self.extra_args = extra.iter().map(|s| s.to_string()).collect();
    }

    /// Set (or, with `None`, drop) an environment variable for the next daemon start, such
    /// as `WHARF_TEST_CRASH_AT`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Stop wharfd with SIGTERM and wait; returns whether it exited 0.
    pub fn stop_daemon(&mut self) -> bool {
        let Some(mut child) = self.daemon.take() else { return true };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The running wharfd's process id (nsenter executes it in its own place).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|c| c.id())
    }

    /// Kill wharfd with SIGKILL, as a crash would.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("wharfd.log")).unwrap_or_default()
    }

    /// Run the wharf CLI against this daemon.
    pub fn wharf(&self, args: &[&str]) -> Output {
        let bin = target_dir().join("wharf");
        Command::new(bin).arg("-H").arg(self.host_arg()).args(args).output().expect("run wharf")
    }

    /// Run the wharf CLI; it must succeed. Returns stdout.
    pub fn wharf_ok(&self, args: &[&str]) -> String {
        let out = self.wharf(args);
        assert!(
            out.status.success(),
            "wharf {} failed: {}{}\n--- wharfd log ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run the wharf CLI; it must fail. Returns stderr.
    pub fn wharf_err(&self, args: &[&str]) -> String {
        let out = self.wharf(args);
        assert!(!out.status.success(), "wharf {} unexpectedly succeeded", args.join(" "));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Run the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.host_arg())
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .output()
            .expect("run docker")
    }

    /// Run the docker CLI; it must succeed. Returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}{}\n--- wharfd log ---\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The namespace file of sandbox `name`.
    pub fn sandbox_path(&self, name: &str) -> String {
        self.netns_dir().join(name).display().to_string()
    }

    /// Run a command inside sandbox `name`.
    pub fn in_sandbox(&self, name: &str, args: &[&str]) -> Output {
        let mut full = vec![format!("--net={}", self.sandbox_path(name)), "--".to_string()];
        full.extend(args.iter().map(|s| s.to_string()));
        Command::new("nsenter").args(&full).output().expect("nsenter")
    }

    /// Run a command in the host namespace (where wharfd runs).
    pub fn in_host(&self, args: &[&str]) -> Output {
        self.ns.exec(args)
    }

    /// stdout of a command in the host namespace that must succeed.
    pub fn in_host_ok(&self, args: &[&str]) -> String {
        let out = self.in_host(args);
        assert!(out.status.success(), "{} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether sandbox `from` gets an answer to one ping to `to`.
    pub fn ping(&self, from: &str, to: &str) -> bool {
        self.in_sandbox(from, &["ping", "-c", "1", "-W", "1", to]).status.success()
    }

    /// The alias of link `name` in the host namespace: what marks a link as some
    /// wharfd's.
    pub fn link_alias(&self, name: &str) -> Option<String> {
        let out = self.in_host_ok(&["ip", "-o", "link", "show", "dev", name]);
        out.split(" alias ").nth(1).map(|a| a.trim().to_string())
    }

    /// The IPv4 address of sandbox `sandbox` on `network`, from `wharf sandbox inspect`.
    pub fn sandbox_ip(&self, sandbox: &str, network: &str) -> String {
        let out = self.wharf_ok(&["sandbox", "inspect", sandbox]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
        v[0]["Networks"][network]["IPAddress"].as_str().unwrap_or_default().to_string()
    }
}

/// The filesystem type mounted at `path`, if anything is mounted there.
pub fn mounted_fstype(path: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f.get(4) == Some(&path)).then(|| f.get(sep + 1).unwrap_or(&"").to_string())
    })
}

/// Panic with the lines that differ when two snapshots are not equal.
pub fn assert_same_snapshot(before: &str, after: &str) {
    if before == after {
        return;
    }
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    let gone: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    let new: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    panic!("state changed:\n  gone: {gone:#?}\n  new: {new:#?}");
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_daemon();
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw HTTP/1.0 request to a daemon socket: returns the status and the body. Used to
/// send what no well-behaved client sends (malformed JSON).
pub fn raw_api(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to socket");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: wharf\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

impl Host {
    /// A raw request to this daemon.
    pub fn api(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        raw_api(&self.socket(), method, path, body)
    }

    /// What the kernel and the store look like: links, addresses, routes and nftables of
    /// the host namespace, and every object wharf lists. Equal snapshots mean nothing
    /// changed.
    pub fn snapshot(&self) -> String {
        // Once the kernel has settled: while an IPv6 address is tentative, the link-local
        // route the kernel adds on its own is yet to come.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && !self.in_host(&["ip", "-6", "-o", "addr", "show", "tentative"]).stdout.is_empty()
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        for args in [
            &["ip", "-o", "link", "show"][..],
            &["ip", "-o", "addr", "show", "scope", "global"][..],
            &["ip", "route", "show", "table", "all"][..],
            &["nft", "list", "ruleset"][..],
        ] {
            let text = String::from_utf8_lossy(&self.in_host(args).stdout).into_owned();
            // The kernel settles a link's operational state on its own; leave it out.
            let steady: Vec<String> = text
                .lines()
                .map(|l| {
                    let mut words: Vec<&str> = l.split(' ').collect();
                    if let Some(i) = words.iter().position(|w| *w == "state") {
                        words.drain(i..(i + 2).min(words.len()));
                    }
                    words.join(" ")
                })
                .collect();
            out.push_str(&steady.join("\n"));
            out.push('\n');
        }
        for what in ["network", "volume", "sandbox"] {
            out.push_str(&self.wharf_ok(&[what, "ls", "--format", "json"]));
        }
        out
    }
}
