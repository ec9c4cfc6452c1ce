//! The plan language on the real kernel: routes with scope, onlink, source and table; proxy
//! neighbour entries; sysctls read back for their restore. Everything happens in private
//! namespaces, the executor's own "host" one included, and they are removed at the end.

mod lab;

use lab::{ok, require_root, run};
use nix::sched::{setns, CloneFlags};
use std::sync::Arc;
use wharf_engine::executor::{Executor, Outcome};
use wharf_linux::firewall::NoFirewall;
use wharf_linux::kernel::Kernel;
use wharf_sdk::{LinkKind, LinkSpec, Netns, Op, RouteScope, RouteSpec, Step};

/// Namespaces `ws-<pid>-<role>`, deleted on drop.
struct Spaces(Vec<String>);

impl Spaces {
    fn new(roles: &[&str]) -> Spaces {
        let names: Vec<String> = roles.iter().map(|r| format!("ws-{}-{r}", std::process::id())).collect();
        for n in &names {
            let _ = run(&["ip", "netns", "del", n]);
            ok(&["ip", "netns", "add", n]);
            ok(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        Spaces(names)
    }

    fn path(&self, i: usize) -> Netns {
        Netns::Path(format!("/run/netns/{}", self.0[i]))
    }
}

impl Drop for Spaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}

/// Run `f` on a thread inside namespace `ns`, so the executor it makes has that namespace
/// for its host.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        setns(std::fs::File::open(path).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_point_to_point_link_with_onlink_routes_source_table_and_proxy_entries() {
    require_root!();
    let spaces = Spaces::new(&["h", "a", "b"]);
    let (a, b) = (spaces.path(1), spaces.path(2));
    let (na, nb) = (spaces.0[1].clone(), spaces.0[2].clone());
    let host = spaces.0[0].clone();
    inside(&host, move || {
        let k = Kernel::new(Arc::new(NoFirewall), "plan-ops-test").unwrap();
        let veth = LinkKind::Veth { peer: "eth0".into(), peer_netns: b.clone(), peer_mac: None };
        let link = LinkSpec { up: true, ..LinkSpec::new("wsp0", veth) };
        k.apply(Step::link_add(a.clone(), link).op()).unwrap();
        k.apply(Step::addr_add(a.clone(), "wsp0", "10.77.0.1/32".parse().unwrap()).op()).unwrap();
        k.apply(Step::addr_add(b.clone(), "eth0", "10.77.0.2/32".parse().unwrap()).op()).unwrap();

        // /32 on both ends: a host route one way, an onlink default route the other.
        let to_b = RouteSpec {
            source: Some("10.77.0.1".parse().unwrap()),
            ..RouteSpec::host("10.77.0.2".parse().unwrap(), "wsp0")
        };
        let to_a = RouteSpec::default_via("10.77.0.1".parse().unwrap(), "eth0", true);
        assert_eq!(k.apply(Step::route_add(a.clone(), to_b.clone()).op()).unwrap(), Outcome::Created);
        assert_eq!(k.apply(Step::route_add(a.clone(), to_b.clone()).op()).unwrap(), Outcome::Found);
        k.apply(Step::route_add(b.clone(), to_a.clone()).op()).unwrap();
        let routes = ok(&["ip", "-n", &na, "route", "show", "10.77.0.2"]);
        assert!(routes.contains("scope link") && routes.contains("src 10.77.0.1"), "{routes}");
        let routes = ok(&["ip", "-n", &nb, "route", "show", "default"]);
        assert!(routes.contains("via 10.77.0.1 dev eth0") && routes.contains("onlink"), "{routes}");
        ok(&["ip", "netns", "exec", &nb, "ping", "-c", "1", "-W", "2", "10.77.0.1"]);

        // Without onlink the kernel refuses a gateway no prefix of the device covers.
        let mut plain = RouteSpec::default_via("10.77.0.1".parse().unwrap(), "eth0", false);
        plain.metric = Some(50);
        assert!(k.apply(Step::route_add(b.clone(), plain).op()).is_err());

        // A route in a table of its own, and its removal from that table only.
        let tabled = RouteSpec {
            table: Some(100),
            scope: Some(RouteScope::Link),
            ..RouteSpec::new("10.99.0.0/24".parse().unwrap())
        };
        let tabled = RouteSpec { device: Some("wsp0".into()), ..tabled };
        k.apply(Step::route_add(a.clone(), tabled.clone()).op()).unwrap();
        assert!(ok(&["ip", "-n", &na, "route", "show", "table", "100"]).contains("10.99.0.0/24 dev wsp0"));
        assert!(!ok(&["ip", "-n", &na, "route", "show"]).contains("10.99.0.0"), "not in the main table");
        k.apply(&Op::route_del(a.clone(), tabled)).unwrap();
        assert!(!ok(&["ip", "-n", &na, "route", "show", "table", "100"]).contains("10.99.0.0"));

        // Proxy neighbour entries, IPv4 and IPv6: found the second time, gone after the undo.
        for addr in ["10.77.0.9", "fd00:77::9"] {
            let step = Step::neigh_proxy(a.clone(), "wsp0", addr.parse().unwrap());
            assert_eq!(k.apply(step.op()).unwrap(), Outcome::Created);
            assert_eq!(k.apply(step.op()).unwrap(), Outcome::Found);
            let shown = ok(&["ip", "-n", &na, "neigh", "show", "proxy"]);
            assert!(shown.contains(&format!("{addr} dev wsp0")), "{shown}");
            k.apply(&step.undo()).unwrap();
            k.apply(&step.undo()).unwrap();
            assert!(!ok(&["ip", "-n", &na, "neigh", "show", "proxy"]).contains(addr));
        }

        // Sysctls are read in the step's namespace; a key of a missing link reads as absent.
        let key = "net.ipv4.conf.wsp0.proxy_arp";
        assert_eq!(k.sysctl_read(&a, key).unwrap().as_deref(), Some("0"));
        k.apply(Step::sysctl_restoring(a.clone(), key, "1").op()).unwrap();
        assert_eq!(k.sysctl_read(&a, key).unwrap().as_deref(), Some("1"));
        assert_eq!(ok(&["ip", "netns", "exec", &na, "sysctl", "-n", key]).trim(), "1");
        assert_eq!(k.sysctl_read(&a, "net.ipv4.conf.nosuch0.proxy_arp").unwrap(), None);
    });
}

/// Listing one link's addresses (before removing one, or all of them when a link is
/// retired) asks the kernel for that link's alone, so it costs the same among 60 links with
/// addresses as among a few.
#[test]
fn one_links_addresses_are_listed_by_the_kernel_for_that_link_alone() {
    require_root!();
    let spaces = Spaces::new(&["d"]);
    let ns = spaces.0[0].clone();
    let script = std::env::temp_dir().join(format!("{ns}.ip"));
    let links: String =
        (0..60).map(|i| format!("link add wd{i} type bridge\naddr add 10.77.{i}.1/24 dev wd{i}\n")).collect();
    std::fs::write(&script, links).unwrap();
    ok(&["ip", "-n", &ns, "-batch", script.to_str().unwrap()]);
    std::fs::remove_file(&script).unwrap();
    let shown: serde_json::Value = serde_json::from_str(&ok(&["ip", "-n", &ns, "-j", "link", "show", "wd7"])).unwrap();
    let idx = shown[0]["ifindex"].as_u64().unwrap() as u32;
    let listed = inside(&ns, move || {
        use futures::TryStreamExt;
        let sockets =
            wharf_linux::kernel::sockets::Sockets::new("dump-test", std::time::Duration::from_secs(5)).unwrap();
        let ctx = sockets.host();
        let request = wharf_linux::kernel::netlink::addresses_of(&ctx.handle, idx, None).execute();
        let got: Vec<_> = ctx.block_on(request.try_collect()).unwrap();
        got.iter().map(|a| a.header.index).collect::<Vec<u32>>()
    });
    assert_eq!(listed, [idx], "only the one address of wd7, sent by the kernel");
}

#[test]
fn a_few_sandbox_sockets_stay_open_and_only_while_in_use() {
    require_root!();
    let spaces = Spaces::new(&["k0", "k1", "k2", "k3", "k4", "k5"]);
    let idle = std::time::Duration::from_millis(300);
    let sockets = wharf_linux::kernel::sockets::Sockets::new("idle-test", idle).unwrap();
    for name in &spaces.0 {
        let ctx = sockets.sandbox(&format!("/run/netns/{name}")).unwrap();
        let links = ctx.block_on(wharf_linux::kernel::netlink::link_names(&ctx.handle)).unwrap();
        assert!(links.iter().any(|l| l == "lo"), "{name}: {links:?}");
    }
    // Each connection holds netlink-proto's 72 KiB of buffers, and keeps its namespace alive.
    assert!(sockets.open_sandboxes() <= 4, "{} sandbox sockets open", sockets.open_sandboxes());
    std::thread::sleep(idle * 3);
    assert_eq!(sockets.open_sandboxes(), 0, "sockets idle for longer than {idle:?} are closed");
    let ctx = sockets.sandbox(&format!("/run/netns/{}", spaces.0[0])).unwrap();
    assert!(ctx.block_on(wharf_linux::kernel::netlink::link_names(&ctx.handle)).is_ok(), "and opened again");
}

#[test]
fn the_mirror_reads_a_namespace_of_many_links_and_names_the_marked_ones() {
    require_root!();
    let spaces = Spaces::new(&["m"]);
    let ns = spaces.0[0].clone();
    let script = std::env::temp_dir().join(format!("{ns}.ip"));
    // Enough links that the dump spans many datagrams; every tenth carries a mark.
    let links: String = (0..400)
        .map(|i| {
            let alias = if i % 10 == 0 { format!("link set wm{i} alias wharf:0123abcd\n") } else { String::new() };
            format!(
                "link add wm{i} type bridge\naddr add 10.{}.{}.1/24 dev wm{i}\nlink set wm{i} up\n{alias}",
                i / 200,
                i % 200
            )
        })
        .collect();
    std::fs::write(&script, links).unwrap();
    ok(&["ip", "-n", &ns, "-batch", script.to_str().unwrap()]);
    std::fs::remove_file(&script).unwrap();
    let (facts, mut marked) = inside(&ns, || {
        let mirror = wharf_linux::kernel::facts::Mirror::new().unwrap();
        let mark = wharf_linux::kernel::netlink::Mark::new("0123abcd");
        (mirror.facts(&mark, None).unwrap(), mirror.marked(&mark).unwrap())
    });
    let bridges: Vec<_> = facts.links.iter().filter(|l| l.name.starts_with("wm")).collect();
    assert_eq!(bridges.len(), 400, "every link is read");
    let wm123 = bridges.iter().find(|l| l.name == "wm123").unwrap();
    assert!(wm123.addresses.contains(&"10.0.123.1/24".parse().unwrap()), "{:?}", wm123.addresses);
    assert!(facts.routes.contains(&"10.1.199.0/24".parse().unwrap()), "and every main-table route");
    marked.sort();
    let mut want: Vec<String> = (0..400).step_by(10).map(|i| format!("wm{i}")).collect();
    want.sort();
    assert_eq!(marked, want);
}
