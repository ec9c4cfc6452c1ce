//! The firewall's cost with a thousand published ports and networks. Root only. It runs in
//! a test binary of its own: it holds a socket per published port, and libnftables waits on
//! its netlink socket with select(), which aborts on a descriptor numbered past 1024, so no
//! other test may open a firewall in this process meanwhile.

mod lab;

use lab::*;
use wharf_linux::firewall::Firewall;
use wharf_sdk::Protocol;

#[test]
fn a_change_costs_the_same_with_one_or_a_thousand_published_ports() {
    require_root!();
    raise_fd_limit();
    let t = topology();
    let fw = t.firewall();
    fw.add(&nat("br-test0", &["10.77.0.0/24"])).unwrap();
    fw.add(&port(Protocol::Tcp, None, 10000, "10.77.0.2", 80)).unwrap();
    let probe = |i: u32| port(Protocol::Tcp, None, 30000 + (i % 50) as u16, "10.77.0.3", 80);
    let n = 50;
    // Warm up, then measure add and remove separately.
    for i in 0..20 {
        fw.add(&probe(i)).unwrap();
        fw.remove(&probe(i)).unwrap();
    }
    let add_1 = per_call(n, |i| fw.add(&probe(i)).unwrap());
    let remove_1 = per_call(n, |i| fw.remove(&probe(i)).unwrap());

    let mut facts = vec![nat("br-test0", &["10.77.0.0/24"])];
    for i in 0..1000u32 {
        facts.push(port(Protocol::Tcp, None, 10000 + i as u16, &format!("10.77.{}.{}", i / 250, 2 + i % 250), 80));
    }
    fw.reload(&facts).unwrap();
    let listed = fw.list().unwrap();
    assert!(listed.contains("tcp . 10999 : 10.77.3.251 . 80"), "1000 ports are present");
    for i in 0..20 {
        fw.add(&probe(i)).unwrap();
        fw.remove(&probe(i)).unwrap();
    }
    let add_1000 = per_call(n, |i| fw.add(&probe(i)).unwrap());
    let remove_1000 = per_call(n, |i| fw.remove(&probe(i)).unwrap());

    // For comparison: network facts, which use interval sets.
    let net = |i: u32| nat(&format!("brx{i}"), &[&format!("10.{}.{}.0/24", 100 + i / 256, i % 256)]);
    let net_1 = per_call(20, |i| {
        fw.add(&net(5000 + i)).unwrap();
        fw.remove(&net(5000 + i)).unwrap();
    }) / 2.0;
    facts.extend((0..1000).map(net));
    fw.reload(&facts).unwrap();
    let net_1000 = per_call(20, |i| {
        fw.add(&net(5000 + i)).unwrap();
        fw.remove(&net(5000 + i)).unwrap();
    }) / 2.0;

    let us = |s: f64| s * 1e6;
    println!(
        "per call: port add {:.0} µs / remove {:.0} µs with 1 port; add {:.0} µs / remove {:.0} µs with 1000 ports",
        us(add_1),
        us(remove_1),
        us(add_1000),
        us(remove_1000)
    );
    println!("per call: network add or remove {:.0} µs with 1 network; {:.0} µs with 1000", us(net_1), us(net_1000));
    let udp = |i: u32| port(Protocol::Udp, None, 30000 + (i % 50) as u16, "10.77.0.3", 53);
    let udp_add = per_call(5, |i| fw.add(&udp(i)).unwrap());
    let udp_remove = per_call(5, |i| fw.remove(&udp(i)).unwrap());
    println!("per call, UDP (with the conntrack flush): add {:.0} µs / remove {:.0} µs", us(udp_add), us(udp_remove));
    // A cost that grew with the elements (a rule per port, a reload per change) would be
    // hundreds of times higher with 1000; the bound leaves room for a busy machine's noise
    // on calls of a few tens of microseconds.
    let flat = |one: f64, thousand: f64| thousand < 10.0 * one;
    assert!(flat(net_1, net_1000), "network: {net_1} s with 1 network, {net_1000} s with 1000");
    assert!(flat(add_1, add_1000), "add: {add_1} s with 1 port, {add_1000} s with 1000");
    assert!(flat(remove_1, remove_1000), "remove: {remove_1} s with 1 port, {remove_1000} s with 1000");
}
