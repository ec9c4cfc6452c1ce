//! The JSON of every operation, as message version 2 and the store carry it: the Rust types
//! may change (a payload boxed, a field's representation), the bytes on the wire may not.

use super::*;

/// One operation of every kind, each link kind, link change and firewall fact, with its
/// optional fields both set and left out.
fn every_op() -> Vec<Op> {
    let host = || Netns::Host;
    let sb = || Netns::Path("/run/netns/sb".into());
    let ip4: IpAddr = "10.0.0.9".parse().unwrap();
    let ip6: IpAddr = "fd00::9".parse().unwrap();
    let veth = LinkKind::Veth { peer: "eth0".into(), peer_netns: sb(), peer_mac: Some("02:42:0a:00:00:09".into()) };
    let vxlan = LinkKind::Vxlan {
        vni: 4097,
        port: 4789,
        local: Some(ip4),
        underlay: Some("eth1".into()),
        learning: false,
        proxy: true,
    };
    let macvlan = LinkKind::Macvlan { parent: "eth1".into(), mode: MacvlanMode::Private, target_netns: Some(sb()) };
    let full_link = LinkSpec {
        mtu: Some(1450),
        mac: Some("02:42:0a:00:00:01".into()),
        master: Some("br0".into()),
        up: true,
        ..LinkSpec::new("veth0123", veth)
    };
    let full_route = RouteSpec {
        destination: "10.2.0.0/16".parse().unwrap(),
        gateway: Some(ip4),
        device: Some("eth0".into()),
        metric: Some(100),
        scope: Some(RouteScope::Universe),
        onlink: true,
        source: Some("10.0.0.2".parse().unwrap()),
        table: Some(100),
    };
    let network = FirewallFact::Network {
        bridge: "br0".into(),
        subnets: vec!["10.0.0.0/24".parse().unwrap(), "fd00::/64".parse().unwrap()],
        masquerade: true,
        icc: false,
        internal: false,
        gateway_mode_v4: GatewayMode::NatUnprotected,
        gateway_mode_v6: GatewayMode::Routed,
        snat_v4: Some(ip4),
        trusted: vec!["eth2".into()],
    };
    let port = FirewallFact::Port {
        protocol: Protocol::Udp,
        host_ip: Some(ip6),
        host_port: 8053,
        address: ip6,
        port: 53,
        bridge: "br0".into(),
    };
    let mut ops = vec![Op::Noop, Op::link_add(host(), full_link)];
    for kind in [
        LinkKind::Bridge,
        LinkKind::Veth { peer: "eth0".into(), peer_netns: Netns::Host, peer_mac: None },
        vxlan,
        LinkKind::Vxlan { vni: 1, port: 4789, local: None, underlay: None, learning: true, proxy: false },
        macvlan,
        LinkKind::Macvlan { parent: "eth1".into(), mode: MacvlanMode::Passthru, target_netns: None },
        LinkKind::Vlan { parent: "eth1".into(), id: 42 },
        LinkKind::Dummy,
    ] {
        ops.push(Op::link_add(sb(), LinkSpec::new("l0", kind)));
    }
    ops.push(Op::LinkDel { netns: sb(), name: "eth0".into() });
    for change in [
        LinkChange::Up,
        LinkChange::Down,
        LinkChange::Mtu(9000),
        LinkChange::Master("br0".into()),
        LinkChange::NoMaster,
        LinkChange::Mac("02:00:00:00:00:01".into()),
        LinkChange::Rename("eth1".into()),
        LinkChange::Hairpin(true),
    ] {
        ops.push(Op::LinkSet { netns: host(), name: "veth0".into(), change });
    }
    ops.extend([
        Op::AddrAdd { netns: sb(), link: "eth0".into(), address: "10.0.0.2/24".parse().unwrap() },
        Op::AddrDel { netns: sb(), link: "eth0".into(), address: "fd00::2/64".parse().unwrap() },
        Op::route_add(sb(), full_route.clone()),
        Op::route_add(sb(), RouteSpec::default_via(ip4, "eth0", false)),
        Op::route_del(host(), full_route),
        Op::route_del(host(), RouteSpec::host(ip6, "eth0")),
        Op::NeighAdd { netns: host(), device: "vx0".into(), address: ip4, mac: "02:00:00:00:00:02".into() },
        Op::NeighDel { netns: host(), device: "vx0".into(), address: ip6 },
        Op::NeighProxyAdd { netns: host(), device: "eth1".into(), address: ip4 },
        Op::NeighProxyDel { netns: sb(), device: "eth1".into(), address: ip6 },
        Op::FdbAdd { netns: host(), device: "vx0".into(), mac: "02:00:00:00:00:03".into(), destination: Some(ip4) },
        Op::FdbAdd { netns: host(), device: "vx0".into(), mac: "02:00:00:00:00:03".into(), destination: None },
        Op::FdbDel { netns: host(), device: "vx0".into(), mac: "02:00:00:00:00:04".into(), destination: Some(ip6) },
        Op::FdbDel { netns: sb(), device: "vx0".into(), mac: "02:00:00:00:00:04".into(), destination: None },
        Op::Sysctl { netns: host(), key: "net.ipv4.ip_forward".into(), value: "1".into() },
        Op::SysctlRestore { netns: sb(), key: "net.ipv4.conf.all.proxy_arp".into() },
        Op::firewall_add(network.clone()),
        Op::firewall_add(port.clone()),
        Op::firewall_del(network),
        Op::firewall_del(port),
        Op::mount("/dev/sdb1", "/var/lib/wharf/volumes/v/_data", "ext4", "ro,noexec"),
        Op::mount("/srv", "/v", "none", ""),
        Op::Unmount { target: "/v".into() },
        Op::DirCreate { path: "/v".into(), mode: Some(0o755), uid: Some(1000), gid: Some(1000) },
        Op::DirCreate { path: "/v".into(), mode: None, uid: None, gid: None },
        Op::DirRemove { path: "/v".into() },
        Op::ImageCreate { path: "/v/img".into(), size: 1 << 30, fstype: "xfs".into() },
        Op::FileRemove { path: "/v/img".into() },
        Op::NetnsCreate { path: "/run/netns/sb".into() },
        Op::NetnsRemove { path: "/run/netns/sb".into() },
        Op::FileWrite { path: "/etc/wharf/sb/resolv.conf".into(), contents: "nameserver 127.0.0.11\n".into() },
    ]);
    ops
}

/// [`every_op`] as JSON, written by the SDK before operations boxed their large payloads.
const GOLDEN: [&str; 50] = [
    r#""noop""#,
    r#"{"link_add":{"netns":"host","link":{"name":"veth0123","kind":{"veth":{"peer":"eth0","peer_netns":{"path":"/run/netns/sb"},"peer_mac":"02:42:0a:00:00:09"}},"mtu":1450,"mac":"02:42:0a:00:00:01","master":"br0","up":true}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":"bridge","up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"veth":{"peer":"eth0","peer_netns":"host"}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"vxlan":{"vni":4097,"port":4789,"local":"10.0.0.9","underlay":"eth1","learning":false,"proxy":true}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"vxlan":{"vni":1,"port":4789,"learning":true}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"macvlan":{"parent":"eth1","mode":"private","target_netns":{"path":"/run/netns/sb"}}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"macvlan":{"parent":"eth1","mode":"passthru"}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":{"vlan":{"parent":"eth1","id":42}},"up":false}}}"#,
    r#"{"link_add":{"netns":{"path":"/run/netns/sb"},"link":{"name":"l0","kind":"dummy","up":false}}}"#,
    r#"{"link_del":{"netns":{"path":"/run/netns/sb"},"name":"eth0"}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":"up"}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":"down"}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":{"mtu":9000}}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":{"master":"br0"}}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":"no_master"}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":{"mac":"02:00:00:00:00:01"}}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":{"rename":"eth1"}}}"#,
    r#"{"link_set":{"netns":"host","name":"veth0","change":{"hairpin":true}}}"#,
    r#"{"addr_add":{"netns":{"path":"/run/netns/sb"},"link":"eth0","address":"10.0.0.2/24"}}"#,
    r#"{"addr_del":{"netns":{"path":"/run/netns/sb"},"link":"eth0","address":"fd00::2/64"}}"#,
    r#"{"route_add":{"netns":{"path":"/run/netns/sb"},"route":{"destination":"10.2.0.0/16","gateway":"10.0.0.9","device":"eth0","metric":100,"scope":"universe","onlink":true,"source":"10.0.0.2","table":100}}}"#,
    r#"{"route_add":{"netns":{"path":"/run/netns/sb"},"route":{"destination":"0.0.0.0/0","gateway":"10.0.0.9","device":"eth0"}}}"#,
    r#"{"route_del":{"netns":"host","route":{"destination":"10.2.0.0/16","gateway":"10.0.0.9","device":"eth0","metric":100,"scope":"universe","onlink":true,"source":"10.0.0.2","table":100}}}"#,
    r#"{"route_del":{"netns":"host","route":{"destination":"fd00::9/128","device":"eth0","scope":"link"}}}"#,
    r#"{"neigh_add":{"netns":"host","device":"vx0","address":"10.0.0.9","mac":"02:00:00:00:00:02"}}"#,
    r#"{"neigh_del":{"netns":"host","device":"vx0","address":"fd00::9"}}"#,
    r#"{"neigh_proxy_add":{"netns":"host","device":"eth1","address":"10.0.0.9"}}"#,
    r#"{"neigh_proxy_del":{"netns":{"path":"/run/netns/sb"},"device":"eth1","address":"fd00::9"}}"#,
    r#"{"fdb_add":{"netns":"host","device":"vx0","mac":"02:00:00:00:00:03","destination":"10.0.0.9"}}"#,
    r#"{"fdb_add":{"netns":"host","device":"vx0","mac":"02:00:00:00:00:03"}}"#,
    r#"{"fdb_del":{"netns":"host","device":"vx0","mac":"02:00:00:00:00:04","destination":"fd00::9"}}"#,
    r#"{"fdb_del":{"netns":{"path":"/run/netns/sb"},"device":"vx0","mac":"02:00:00:00:00:04"}}"#,
    r#"{"sysctl":{"netns":"host","key":"net.ipv4.ip_forward","value":"1"}}"#,
    r#"{"sysctl_restore":{"netns":{"path":"/run/netns/sb"},"key":"net.ipv4.conf.all.proxy_arp"}}"#,
    r#"{"firewall_add":{"fact":{"network":{"bridge":"br0","subnets":["10.0.0.0/24","fd00::/64"],"masquerade":true,"icc":false,"internal":false,"gateway_mode_v4":"nat-unprotected","gateway_mode_v6":"routed","snat_v4":"10.0.0.9","trusted":["eth2"]}}}}"#,
    r#"{"firewall_add":{"fact":{"port":{"protocol":"udp","host_ip":"fd00::9","host_port":8053,"address":"fd00::9","port":53,"bridge":"br0"}}}}"#,
    r#"{"firewall_del":{"fact":{"network":{"bridge":"br0","subnets":["10.0.0.0/24","fd00::/64"],"masquerade":true,"icc":false,"internal":false,"gateway_mode_v4":"nat-unprotected","gateway_mode_v6":"routed","snat_v4":"10.0.0.9","trusted":["eth2"]}}}}"#,
    r#"{"firewall_del":{"fact":{"port":{"protocol":"udp","host_ip":"fd00::9","host_port":8053,"address":"fd00::9","port":53,"bridge":"br0"}}}}"#,
    r#"{"mount":{"source":"/dev/sdb1","target":"/var/lib/wharf/volumes/v/_data","fstype":"ext4","options":"ro,noexec"}}"#,
    r#"{"mount":{"source":"/srv","target":"/v","fstype":"none","options":""}}"#,
    r#"{"unmount":{"target":"/v"}}"#,
    r#"{"dir_create":{"path":"/v","mode":493,"uid":1000,"gid":1000}}"#,
    r#"{"dir_create":{"path":"/v"}}"#,
    r#"{"dir_remove":{"path":"/v"}}"#,
    r#"{"image_create":{"path":"/v/img","size":1073741824,"fstype":"xfs"}}"#,
    r#"{"file_remove":{"path":"/v/img"}}"#,
    r#"{"netns_create":{"path":"/run/netns/sb"}}"#,
    r#"{"netns_remove":{"path":"/run/netns/sb"}}"#,
    r#"{"file_write":{"path":"/etc/wharf/sb/resolv.conf","contents":"nameserver 127.0.0.11\n"}}"#,
];

#[test]
fn every_operation_keeps_its_json_both_ways() {
    let ops = every_op();
    assert_eq!(ops.len(), GOLDEN.len());
    for (op, golden) in ops.iter().zip(GOLDEN) {
        assert_eq!(serde_json::to_string(op).unwrap(), golden);
        assert_eq!(&serde_json::from_str::<Op>(golden).unwrap(), op, "{golden}");
    }
}

/// A plan with a plain undo, a step that undoes nothing and one with an undo of its own.
fn plan() -> Plan {
    let sb = Netns::Path("/run/netns/sb".into());
    let mut plan = Plan::new();
    plan.push(Step::addr_add(sb.clone(), "eth0", "10.0.0.2/24".parse().unwrap()));
    plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", None));
    plan.push(Step::sysctl(Netns::Host, "net.ipv4.conf.br0.route_localnet", "1", Some("0".into())));
    plan.push(Step::new(Op::LinkDel { netns: sb, name: "eth0".into() }, Op::Noop));
    plan
}

#[test]
fn a_plan_keeps_its_json_whole_and_compact() {
    let whole = concat!(
        r#"{"steps":[{"do":{"addr_add":{"netns":{"path":"/run/netns/sb"},"link":"eth0","address":"10.0.0.2/24"}},"#,
        r#""undo":{"addr_del":{"netns":{"path":"/run/netns/sb"},"link":"eth0","address":"10.0.0.2/24"}}},"#,
        r#"{"do":{"sysctl":{"netns":"host","key":"net.ipv4.ip_forward","value":"1"}},"undo":"noop"},"#,
        r#"{"do":{"sysctl":{"netns":"host","key":"net.ipv4.conf.br0.route_localnet","value":"1"}},"#,
        r#""undo":{"sysctl":{"netns":"host","key":"net.ipv4.conf.br0.route_localnet","value":"0"}}},"#,
        r#"{"do":{"link_del":{"netns":{"path":"/run/netns/sb"},"name":"eth0"}},"undo":"noop"}]}"#
    );
    let compact = concat!(
        r#"{"steps":[{"do":{"addr_add":{"netns":{"path":"/run/netns/sb"},"link":"eth0","address":"10.0.0.2/24"}}},"#,
        r#"{"do":{"sysctl":{"netns":"host","key":"net.ipv4.ip_forward","value":"1"}},"undo":"noop"},"#,
        r#"{"do":{"sysctl":{"netns":"host","key":"net.ipv4.conf.br0.route_localnet","value":"1"}},"#,
        r#""undo":{"sysctl":{"netns":"host","key":"net.ipv4.conf.br0.route_localnet","value":"0"}}},"#,
        r#"{"do":{"link_del":{"netns":{"path":"/run/netns/sb"},"name":"eth0"}},"undo":"noop"}]}"#
    );
    assert_eq!(serde_json::to_string(&plan()).unwrap(), whole);
    assert_eq!(serde_json::to_string(&plan().compact()).unwrap(), compact);
    for json in [whole, compact] {
        assert_eq!(serde_json::from_str::<Plan>(json).unwrap(), plan(), "{json}");
    }
}
