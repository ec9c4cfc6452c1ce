//! End-to-end: wharf changes only what it made. Links another program made, whatever
//! their names (Docker's `br-<12 hex>`, another wharfd's, an operator's), survive wharfd's
//! start, create, remove and restart; a bridge adopted with `bridge.name` survives
//! `network rm` with its address.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_tests::Host;

/// The names of the host namespace's links.
fn links(h: &Host) -> Vec<String> {
    h.in_host_ok(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The global addresses on link `name`, as `ip -o addr` prints them.
fn addresses(h: &Host, name: &str) -> Vec<String> {
    h.in_host_ok(&["ip", "-o", "addr", "show", "dev", name, "scope", "global"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// The bridge of wharf network `network`, from `network inspect`.
fn bridge_of(h: &Host, network: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&h.wharf_ok(&["network", "inspect", network])).unwrap();
    let name = v[0]["Options"]["com.docker.network.bridge.name"].as_str().map(str::to_string);
    name.unwrap_or_else(|| format!("br-{}", &v[0]["Id"].as_str().unwrap()[..12]))
}

/// Restart wharfd twice: once cleanly, once after kill -9.
fn restart_both_ways(h: &mut Host) {
    assert!(h.stop_daemon(), "{}", h.log());
    h.start_daemon();
    h.kill_daemon();
    h.start_daemon();
}

/// Create a network, connect a sandbox, disconnect and remove it all.
fn churn(h: &Host, subnet: &str) {
    h.wharf_ok(&["network", "create", "--subnet", subnet, "churn"]);
    h.wharf_ok(&["sandbox", "create", "churner"]);
    h.wharf_ok(&["network", "connect", "churn", "churner"]);
    h.wharf_ok(&["network", "disconnect", "churn", "churner"]);
    h.wharf_ok(&["sandbox", "rm", "churner"]);
    h.wharf_ok(&["network", "rm", "churn"]);
}

#[test]
fn links_named_like_wharfs_but_made_by_others_survive() {
    wharf_tests::require_root!();
    let mut h = Host::stopped();
    let foreign = ["br-0123456789ab", "vx-0123456789ab", "veth0123456789", "wgc1234"];
    h.in_host_ok(&["ip", "link", "add", foreign[0], "type", "bridge"]);
    h.in_host_ok(&["ip", "addr", "add", "10.97.0.1/24", "dev", foreign[0]]);
    h.in_host_ok(&["ip", "link", "set", foreign[0], "up"]);
    h.in_host_ok(&["ip", "link", "add", foreign[1], "type", "vxlan", "id", "4242", "dstport", "4789"]);
    h.in_host_ok(&["ip", "link", "add", foreign[2], "type", "veth", "peer", "name", "vethpeer0"]);
    h.in_host_ok(&["ip", "link", "add", foreign[3], "type", "bridge"]);
    h.start_daemon();
    churn(&h, "10.96.0.0/24");
    restart_both_ways(&mut h);
    let now = links(&h);
    for name in foreign {
        assert!(now.iter().any(|l| l == name), "{name} is gone: {now:?}\n{}", h.log());
    }
    assert_eq!(addresses(&h, foreign[0]), ["10.97.0.1/24"]);
}

#[test]
fn a_second_wharfd_leaves_the_first_ones_links() {
    wharf_tests::require_root!();
    let mut h1 = Host::start();
    h1.wharf_ok(&["network", "create", "--subnet", "10.71.0.0/24", "first"]);
    for s in ["a", "b"] {
        h1.wharf_ok(&["sandbox", "create", s]);
        h1.wharf_ok(&["network", "connect", "first", s]);
    }
    let bridge = bridge_of(&h1, "first");
    let before: Vec<String> = links(&h1).into_iter().filter(|l| l != "lo").collect();
    let b_ip = h1.sandbox_ip("b", "first");
    assert!(h1.ping("a", &b_ip));

    // A second wharfd needs nftables tables of its own: those of the first carry its mark.
    let mut h2 = Host::beside(&h1, &["--firewall-table", "wharf2"]);
    churn(&h2, "10.72.0.0/24");
    h2.wharf_ok(&["network", "create", "--subnet", "10.73.0.0/24", "second"]);
    h2.wharf_ok(&["sandbox", "create", "c"]);
    h2.wharf_ok(&["network", "connect", "second", "c"]);
    restart_both_ways(&mut h2);

    let now = links(&h1);
    for name in &before {
        assert!(now.contains(name), "the first wharfd's {name} is gone: {now:?}\n{}", h2.log());
    }
    assert_eq!(addresses(&h1, &bridge), ["10.71.0.1/24"]);
    assert!(h1.ping("a", &b_ip), "traffic between the first wharfd's sandboxes");
    let table = h1.in_host_ok(&["nft", "list", "set", "inet", "wharf", "bridges"]);
    assert!(table.contains(&bridge), "the first wharfd's firewall elements are still there: {table}");
    assert_ne!(h1.link_alias(&bridge), h2.link_alias(&bridge_of(&h2, "second")), "each wharfd has its own mark");

    // And the first, restarted, leaves the second's.
    let theirs = bridge_of(&h2, "second");
    restart_both_ways(&mut h1);
    assert!(links(&h1).contains(&theirs), "{}", h1.log());
    h2.wharf_ok(&["network", "disconnect", "second", "c"]);
    h2.wharf_ok(&["network", "rm", "second"]);
    drop(h2);
}

#[test]
fn an_adopted_operator_bridge_survives_network_rm_with_its_address() {
    wharf_tests::require_root!();
    let h = Host::start();
    // The operator's bridge is down, so its subnet is not yet a route of the host.
    h.in_host_ok(&["ip", "link", "add", "opbr0", "type", "bridge"]);
    h.in_host_ok(&["ip", "addr", "add", "10.98.0.1/24", "dev", "opbr0"]);
    let adopt = "com.docker.network.bridge.name=opbr0";
    h.wharf_ok(&["network", "create", "-o", adopt, "--subnet", "10.98.0.0/24", "--gateway", "10.98.0.1", "op"]);
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "op", "a"]);
    assert!(h.in_sandbox("a", &["ping", "-c", "1", "-W", "1", "10.98.0.1"]).status.success());
    h.wharf_ok(&["network", "disconnect", "op", "a"]);
    h.wharf_ok(&["network", "rm", "op"]);
    assert!(links(&h).iter().any(|l| l == "opbr0"), "the adopted bridge is still there\n{}", h.log());
    assert_eq!(addresses(&h, "opbr0"), ["10.98.0.1/24"]);
    assert_eq!(h.link_alias("opbr0"), None, "an adopted link is not marked as wharf's");

    // A gateway wharf adds to the operator's bridge is wharf's, and goes with the network.
    h.in_host_ok(&["ip", "link", "set", "opbr0", "down"]);
    h.wharf_ok(&["network", "create", "-o", adopt, "--subnet", "10.98.0.0/24", "--gateway", "10.98.0.254", "op"]);
    assert_eq!(addresses(&h, "opbr0"), ["10.98.0.1/24", "10.98.0.254/24"]);
    h.wharf_ok(&["network", "rm", "op"]);
    assert_eq!(addresses(&h, "opbr0"), ["10.98.0.1/24"]);
    assert!(links(&h).iter().any(|l| l == "opbr0"));

    // A link of another kind is refused by name, not adopted.
    h.in_host_ok(&["ip", "link", "add", "opveth0", "type", "veth", "peer", "name", "opveth1"]);
    let body = r#"{"Name":"v","Options":{"com.docker.network.bridge.name":"opveth0"}}"#;
    let (status, resp) = h.api("POST", "/networks/create", body);
    assert!((400..500).contains(&status), "{status} {resp}");
    assert!(resp.contains("opveth0"), "{resp}");
    assert!(links(&h).iter().any(|l| l == "opveth0"));
}

/// Debian's dockerd in a host namespace, with its own data root and socket, stopped on drop.
struct Dockerd {
    child: Child,
    dir: PathBuf,
}

impl Dockerd {
    fn start(h: &Host) -> Dockerd {
        let dir = h.dir.join("docker");
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", h.ns.path()))
            .args(["--", "dockerd"])
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", dir.join("docker.sock").display()))
            .args(["--iptables=true", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("start dockerd (apt-get install docker.io)");
        let d = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "dockerd did not answer:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("config"))
            .output()
            .expect("run docker")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

/// Stop `pid` with SIGTERM, then SIGKILL after `grace`.
fn stop(child: &mut Child, grace: Duration) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Unmount what dockerd left mounted under `dir`.
fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let inside = format!("{}/", dir.display());
    let mut points: Vec<&str> =
        info.lines().filter_map(|l| l.split_whitespace().nth(4)).filter(|p| p.starts_with(&inside)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(20));
        unmount_under(&self.dir);
    }
}

/// The iptables rules of the namespace (Docker's), table by table.
fn iptables_rules(h: &Host) -> String {
    ["filter", "nat"].iter().map(|t| h.in_host_ok(&["iptables", "-t", t, "-S"])).collect()
}

#[test]
fn dockerd_networks_survive_wharfd() {
    wharf_tests::require_root!();
    if Command::new("dockerd").arg("--version").output().is_err() {
        eprintln!("dockerd is not installed; skipping");
        return;
    }
    let mut h = Host::stopped();
    let docker = Dockerd::start(&h);
    let mut bridges = Vec::new();
    for (name, subnet) in [("dn1", "10.81.0.0/24"), ("dn2", "10.82.0.0/24")] {
        let out = docker.docker(&["network", "create", "--subnet", subnet, name]);
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), docker.log());
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        bridges.push((format!("br-{}", &id[..12]), subnet.replace(".0/24", ".1/24")));
    }
    for (bridge, _) in &bridges {
        assert!(links(&h).contains(bridge), "docker made {bridge}");
    }
    let rules = iptables_rules(&h);
    assert!(rules.contains("DOCKER"), "docker's rules are there: {rules}");

    h.start_daemon();
    churn(&h, "10.83.0.0/24");
    restart_both_ways(&mut h);

    let now = links(&h);
    for (bridge, gateway) in &bridges {
        assert!(now.contains(bridge), "docker's {bridge} is gone: {now:?}\n{}", h.log());
        assert_eq!(&addresses(&h, bridge), std::slice::from_ref(gateway));
    }
    assert_eq!(iptables_rules(&h), rules, "docker's rules are untouched");
    for name in ["dn1", "dn2"] {
        assert!(docker.docker(&["network", "rm", name]).status.success());
    }
}

#[test]
fn a_crash_while_adopting_a_bridge_leaves_it_after_recovery() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.in_host_ok(&["ip", "link", "add", "opbr1", "type", "bridge"]);
    h.in_host_ok(&["ip", "addr", "add", "10.95.0.1/24", "dev", "opbr1"]);
    let wharf = wharf_tests::target_dir().join("wharf");
    // Kills from 2 to 10 ms into the create: some land before the plan, some in it (the
    // journal then holds it), some after the commit.
    for round in 0..24u64 {
        h.in_host_ok(&["ip", "link", "set", "opbr1", "down"]);
        let name = format!("op{round}");
        let mut create = Command::new(&wharf)
            .args(["-H", &h.host_arg(), "network", "create", "--subnet", "10.95.0.0/24", "--gateway", "10.95.0.1"])
            .args(["-o", "com.docker.network.bridge.name=opbr1", "-o", "com.docker.network.bridge.enable_icc=false"])
            .arg(&name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(2000 + round * 333));
        h.kill_daemon();
        let _ = create.wait();
        h.start_daemon();
        assert!(links(&h).iter().any(|l| l == "opbr1"), "round {round}: the adopted bridge is gone\n{}", h.log());
        assert_eq!(addresses(&h, "opbr1"), ["10.95.0.1/24"], "round {round}");
        if h.wharf(&["network", "inspect", &name]).status.success() {
            h.wharf_ok(&["network", "rm", &name]);
        }
        assert_eq!(addresses(&h, "opbr1"), ["10.95.0.1/24"], "round {round}");
    }
}

/// The links in namespace `ns` (the host's when `None`) that carry `mark`.
fn marked(h: &Host, sandbox: Option<&str>, mark: &str) -> Vec<String> {
    let cmd = ["ip", "-o", "link", "show"];
    let out = match sandbox {
        Some(s) => String::from_utf8_lossy(&h.in_sandbox(s, &cmd).stdout).into_owned(),
        None => h.in_host_ok(&cmd),
    };
    out.lines()
        .filter(|l| l.trim_end().ends_with(&format!("alias {mark}")))
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Run `args` against wharfd and kill it `delay` into the request; restart it.
fn kill_during(h: &mut Host, args: &[&str], delay: Duration) {
    let mut cli = Command::new(wharf_tests::target_dir().join("wharf"))
        .args(["-H", &h.host_arg()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    h.kill_daemon();
    let _ = cli.wait();
    h.start_daemon();
}

#[test]
fn kills_during_create_and_connect_leave_no_link_of_ours_behind() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    let mark = h.link_alias("wharf0").expect("the predefined bridge carries wharf's mark");
    h.wharf_ok(&["sandbox", "create", "s"]);
    for round in 0..20u64 {
        let delay = Duration::from_micros(2000 + round * 400);
        let (net, subnet) = (format!("k{round}"), format!("10.94.{round}.0/24"));
        kill_during(&mut h, &["network", "create", "--subnet", &subnet, &net], delay);
        if !h.wharf(&["network", "inspect", &net]).status.success() {
            h.wharf_ok(&["network", "create", "--subnet", &subnet, &net]);
        }
        kill_during(&mut h, &["network", "connect", &net, "s"], delay);
        let connected = h.wharf_ok(&["sandbox", "inspect", "s"]).contains(&format!("\"{net}\""));
        if connected {
            h.wharf_ok(&["network", "disconnect", &net, "s"]);
        }
        h.wharf_ok(&["network", "rm", &net]);
        // Retired links are deleted in the background: give them a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(&h, None, &mark) != ["wharf0"] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = marked(&h, None, &mark);
        assert_eq!(left, ["wharf0"], "round {round}: links of ours no network owns\n{}", h.log());
        assert_eq!(marked(&h, Some("s"), &mark), Vec::<String>::new(), "round {round}");
    }
}

#[test]
fn a_link_killed_before_its_alias_is_still_known_by_its_group() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    let line = h.in_host_ok(&["ip", "-o", "link", "show", "dev", "wharf0"]);
    let group = line.split(" group ").nth(1).and_then(|g| g.split_whitespace().next()).unwrap().to_string();
    // What a kill between making a link and setting its alias leaves, and another program's
    // link that happens to be in the same group but has an alias of its own.
    h.in_host_ok(&["ip", "link", "add", "half0", "group", &group, "type", "bridge"]);
    h.in_host_ok(&["ip", "link", "add", "other0", "group", &group, "type", "bridge"]);
    h.in_host_ok(&["ip", "link", "set", "other0", "alias", "operator's"]);
    h.kill_daemon();
    h.start_daemon();
    let now = links(&h);
    assert!(!now.iter().any(|l| l == "half0"), "{now:?}\n{}", h.log());
    assert!(now.iter().any(|l| l == "other0"), "{now:?}");
}

#[test]
fn a_volume_directory_that_stood_before_create_survives_rm_and_a_failed_create() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    let volumes = h.dir.join("root/volumes");
    // The volume's directory and its data directory both stood there: all of it is adopted,
    // across a kill -9 as well.
    let theirs = volumes.join("theirs");
    std::fs::create_dir_all(theirs.join("_data")).unwrap();
    std::fs::write(theirs.join("notes"), "the operator's").unwrap();
    std::fs::write(theirs.join("_data/file"), "kept").unwrap();
    h.wharf_ok(&["volume", "create", "theirs"]);
    h.kill_daemon();
    h.start_daemon();
    h.wharf_ok(&["volume", "rm", "theirs"]);
    assert!(h.wharf_err(&["volume", "inspect", "theirs"]).contains("not found"));
    assert_eq!(std::fs::read_to_string(theirs.join("notes")).unwrap(), "the operator's", "{}", h.log());
    assert_eq!(std::fs::read_to_string(theirs.join("_data/file")).unwrap(), "kept");

    // Only the volume's directory stood there: the data directory wharf made goes with the
    // volume, the rest stays.
    let half = volumes.join("half");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("notes"), "the operator's").unwrap();
    h.wharf_ok(&["volume", "create", "half"]);
    std::fs::write(half.join("_data/written"), "by a user of the volume").unwrap();
    h.wharf_ok(&["volume", "rm", "half"]);
    assert!(!half.join("_data").exists(), "the data directory wharf made is gone");
    assert_eq!(std::fs::read_to_string(half.join("notes")).unwrap(), "the operator's");

    // A create that fails (a file stands where the data directory goes) leaves what it found.
    let failed = volumes.join("failed");
    std::fs::create_dir_all(&failed).unwrap();
    std::fs::write(failed.join("_data"), "not a directory").unwrap();
    let err = h.wharf_err(&["volume", "create", "failed"]);
    assert!(err.contains("failed/_data"), "{err}");
    assert!(h.wharf_err(&["volume", "inspect", "failed"]).contains("not found"));
    assert_eq!(std::fs::read_to_string(failed.join("_data")).unwrap(), "not a directory");

    // A volume wharf made from nothing goes whole.
    h.wharf_ok(&["volume", "create", "ours"]);
    h.wharf_ok(&["volume", "rm", "ours"]);
    assert!(!volumes.join("ours").exists());
}

/// What `network rm` must leave of an adopted bridge: its addresses, MTU, up/down state
/// and `route_localnet`.
fn bridge_as_it_is(h: &Host, name: &str) -> (Vec<String>, String, bool, String) {
    let line = h.in_host_ok(&["ip", "-o", "link", "show", "dev", name]);
    let mtu = line.split(" mtu ").nth(1).and_then(|m| m.split_whitespace().next()).unwrap().to_string();
    let up = line.split('<').nth(1).and_then(|f| f.split('>').next()).is_some_and(|f| f.split(',').any(|x| x == "UP"));
    let key = format!("net.ipv4.conf.{name}.route_localnet");
    let localnet = h.in_host_ok(&["sysctl", "-n", &key]).trim().to_string();
    (addresses(h, name), mtu, up, localnet)
}

#[test]
fn an_adopted_bridge_gets_back_its_mtu_state_and_route_localnet() {
    wharf_tests::require_root!();
    let mut h = Host::start();
    h.in_host_ok(&["ip", "link", "add", "wkbr0", "mtu", "1400", "type", "bridge"]);
    h.in_host_ok(&["ip", "addr", "add", "10.93.0.1/24", "dev", "wkbr0"]);
    h.in_host_ok(&["sysctl", "-qw", "net.ipv4.conf.wkbr0.route_localnet=0"]);
    let before = bridge_as_it_is(&h, "wkbr0");
    assert_eq!(before, (vec!["10.93.0.1/24".to_string()], "1400".into(), false, "0".into()));
    let adopt = "com.docker.network.bridge.name=wkbr0";
    let create = ["network", "create", "-o", adopt, "--subnet", "10.93.0.0/24", "--gateway", "10.93.0.1", "wk"];
    h.wharf_ok(&create);
    let during = bridge_as_it_is(&h, "wkbr0");
    assert_eq!((during.1.as_str(), during.2, during.3.as_str()), ("1500", true, "1"), "the network's settings");
    h.wharf_ok(&["sandbox", "create", "a"]);
    h.wharf_ok(&["network", "connect", "wk", "a"]);
    assert!(h.in_sandbox("a", &["ping", "-c", "1", "-W", "1", "10.93.0.1"]).status.success(), "{}", h.log());
    h.wharf_ok(&["network", "disconnect", "wk", "a"]);
    // The values found are kept with the network, across a restart.
    h.kill_daemon();
    h.start_daemon();
    h.wharf_ok(&["network", "rm", "wk"]);
    assert_eq!(bridge_as_it_is(&h, "wkbr0"), before, "{}", h.log());

    // Up, with the network's gateway on it: its own connected route covers the subnet, and
    // that is no overlap for a network built on it.
    h.in_host_ok(&["ip", "link", "set", "wkbr0", "up"]);
    let before = bridge_as_it_is(&h, "wkbr0");
    h.wharf_ok(&create);
    h.wharf_ok(&["network", "rm", "wk"]);
    assert_eq!(bridge_as_it_is(&h, "wkbr0"), before);
}
