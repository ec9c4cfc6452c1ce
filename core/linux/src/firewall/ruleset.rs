//! wharf's fixed nftables ruleset as text, and the set and map elements a [`FirewallFact`]
//! stands for. Pure: nothing here talks to the kernel.
//!
//! Longer than 600 lines because of its tests: the code is some 440 lines, and the tests
//! that pin the ruleset text and each fact's elements belong next to it.
//!
//! wharf owns `table inet wharf` (filter and NAT) and `table bridge wharf` (inter-container
//! communication on a bridge). The rules never change after they are installed; a fact is a
//! handful of elements. Networks are told apart by bridge name, never by subnet, in
//! `table inet wharf`: none of its sets has intervals, so no change has to read existing
//! elements (libnftables 1.0.6 reads every element of a table's interval sets before it
//! deletes one, which would make a change cost grow with the number of networks).
//!
//! # What the rules let through
//!
//! - `raw` (filter, prerouting, priority raw): nothing that arrives on a wharf bridge may be
//!   addressed to the host's loopback (`route_localnet` on bridges would otherwise let a
//!   sandbox reach services the host binds to 127.0.0.1 only).
//! - `prerouting` and `output` (NAT): traffic to a local address is DNATed by the published
//!   port maps (`dnat4_ip`, `dnat4`, `dnat6_ip`, `dnat6`); in prerouting, never traffic to a
//!   loopback address that came in on another interface than `lo` (so a port published on
//!   127.0.0.1 is reachable from the host only, never from a neighbour that sends a packet
//!   for 127.0.0.1 to the host's MAC address).
//! - `forward` (filter, priority -10, policy accept): traffic that stays on one bridge is
//!   accepted when ICC is on (`intra`); traffic into or out of an internal or isolated network
//!   is dropped (`isolated`); related traffic and replies are accepted; published-port (DNATed)
//!   traffic is accepted (with `respect_input`, a new connection from outside the host only
//!   when the host's firewall marked it); traffic between two wharf bridges is dropped
//!   (`bridges`). Anything else into a network whose gateway mode is nat or routed
//!   (`guarded`) goes through `guard`, which lets in traffic from a trusted host interface of
//!   that network (`trusted`), to a published port of an endpoint (`open4`, `open6`), and, for
//!   routed networks, ICMP (`routed`); the rest is dropped. Replies are accepted by their
//!   conntrack direction only, so a packet that conntrack picks up mid-stream (a crafted ACK)
//!   is no way in.
//! - `postrouting` (NAT): DNATed traffic into a bridge is masqueraded unless it was routed in
//!   from a non-wharf interface (so outside clients keep their address, while the host's own
//!   connections, loopback included, and hairpin connections get the gateway's); traffic routed
//!   from a network's bridge out through a non-wharf interface is SNATed (`snat4`) or
//!   masqueraded (`masq`), per address family.
//! - `bridge wharf forward`: frames bridged between two ports of a network with ICC off are
//!   dropped: by bridge name (`icc_off`) where the kernel has `meta ibrname`
//!   (`CONFIG_NFT_BRIDGE_META`), otherwise by the network's subnets (`icc_off4`, `icc_off6`).

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use wharf_engine::executor::ExecError;
use wharf_sdk::{FirewallFact, GatewayMode};

/// The name of wharf's tables unless the operator picks another.
pub const DEFAULT_TABLE: &str = "wharf";

/// Which of wharf's two tables an element or command is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `table inet NAME`: filter and NAT.
    Inet,
    /// `table bridge NAME`: frames between ports of one bridge.
    Bridge,
}

/// Choices that change the fixed rules (not their elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The name of wharf's tables (`inet NAME`, `bridge NAME`).
    pub table: String,
    /// The comment that marks the tables as this daemon's (`wharf:<instance id>`); tables
    /// that carry another are another wharfd's and are never touched.
    pub owner: Option<String>,
    /// A new connection from outside the host to a published port is let through only when
    /// its packet carries `mark` (every bit of it), set by the host's own firewall; without
    /// this, wharf lets every published port through.
    pub respect_input: Option<u32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { table: DEFAULT_TABLE.into(), owner: None, respect_input: None }
    }
}

impl Policy {
    /// `inet NAME` or `bridge NAME`.
    pub fn table(&self, family: Family) -> String {
        match family {
            Family::Inet => format!("inet {}", self.table),
            Family::Bridge => format!("bridge {}", self.table),
        }
    }

    /// The `add table` command for `family`, with the owner's comment.
    fn add_table(&self, family: Family) -> String {
        match &self.owner {
            Some(owner) => format!("add table {} {{ comment \"{owner}\"; }}\n", self.table(family)),
            None => format!("add table {}\n", self.table(family)),
        }
    }
}

/// The owner comment of a table as `nft list table` prints it, if it has one.
pub fn owner_of(listing: &str) -> Option<&str> {
    let line = listing.lines().map(str::trim).find(|l| l.starts_with("comment \""))?;
    line.strip_prefix("comment \"")?.strip_suffix('"')
}

/// The mark [`Policy::respect_input`] uses unless the operator picks another.
pub const DEFAULT_PUBLISHED_MARK: u32 = 0x0100_0000;

/// Sets and maps of `table inet wharf`: keyword, name, declaration. None has intervals.
const INET_SETS: &[(&str, &str, &str)] = &[
    ("set", "bridges", "type ifname;"),
    ("set", "intra", "type ifname . ifname;"),
    ("set", "trusted", "type ifname . ifname;"),
    ("set", "isolated", "type nf_proto . ifname;"),
    ("set", "guarded", "type nf_proto . ifname;"),
    ("set", "routed", "type nf_proto . ifname;"),
    ("set", "masq", "type nf_proto . ifname;"),
    ("set", "open4", "type ipv4_addr . inet_proto . inet_service;"),
    ("set", "open6", "type ipv6_addr . inet_proto . inet_service;"),
    ("map", "snat4", "type ifname : ipv4_addr;"),
    ("map", "dnat4", "type inet_proto . inet_service : ipv4_addr . inet_service;"),
    ("map", "dnat4_ip", "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;"),
    ("map", "dnat6", "type inet_proto . inet_service : ipv6_addr . inet_service;"),
    ("map", "dnat6_ip", "type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;"),
];

/// A chain of `table inet wharf`: name, base-chain declaration (empty for a regular chain),
/// rules.
type Chain = (&'static str, &'static str, Vec<String>);

fn inet_chains(respect_input: Option<u32>) -> Vec<Chain> {
    let rules = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut forward = rules(&[
        "iifname . oifname @intra accept",
        "meta nfproto . iifname @isolated drop",
        "meta nfproto . oifname @isolated drop",
        "ct state related accept",
        "ct state established ct direction reply accept",
    ]);
    if let Some(mark) = respect_input {
        forward
            .push(format!("ct status dnat ct state new iifname != @bridges meta mark & {mark:#x} != {mark:#x} drop"));
    }
    forward.extend(rules(&[
        "ct status dnat accept",
        "iifname @bridges oifname @bridges drop",
        "meta nfproto . oifname @guarded jump guard",
    ]));
    vec![
        (
            "raw",
            "type filter hook prerouting priority raw; policy accept;",
            rules(&["iifname @bridges ip daddr 127.0.0.0/8 drop", "iifname @bridges ip6 daddr ::1 drop"]),
        ),
        (
            "guard",
            "",
            rules(&[
                "iifname . oifname @trusted return",
                "ip daddr . meta l4proto . th dport @open4 return",
                "ip6 daddr . meta l4proto . th dport @open6 return",
                "meta nfproto . oifname @routed meta l4proto { icmp, ipv6-icmp } return",
                "drop",
            ]),
        ),
        ("forward", "type filter hook forward priority -10; policy accept;", forward),
        (
            "published",
            "",
            rules(&[
                "dnat ip to ip daddr . meta l4proto . th dport map @dnat4_ip",
                "meta nfproto ipv4 dnat ip to meta l4proto . th dport map @dnat4",
                "dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6_ip",
                "meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @dnat6",
            ]),
        ),
        (
            "prerouting",
            "type nat hook prerouting priority -110; policy accept;",
            rules(&[
                "iif != lo ip daddr 127.0.0.0/8 return",
                "iif != lo ip6 daddr ::1 return",
                "fib daddr type local jump published",
            ]),
        ),
        (
            "output",
            "type nat hook output priority -110; policy accept;",
            rules(&["fib daddr type local jump published"]),
        ),
        (
            "postrouting",
            "type nat hook postrouting priority 90; policy accept;",
            rules(&[
                // DNATed into a bridge from the host itself (loopback included) or bridged back
                // into its own bridge by br_netfilter (hairpin): no input interface in postrouting.
                "ct status dnat oifname @bridges iif 0 masquerade",
                // DNATed and routed from a wharf bridge (hairpin without br_netfilter).
                "ct status dnat oifname @bridges iifname @bridges masquerade",
                "oifname @bridges return",
                "meta nfproto ipv4 snat ip to iifname map @snat4",
                "meta nfproto . iifname @masq masquerade",
            ]),
        ),
    ]
}

/// The bridge-family forward chain's declaration.
const BRIDGE_FORWARD: &str = "type filter hook forward priority -10; policy accept;";

/// Rules of the bridge-family forward chain where the kernel lacks `meta ibrname`: match the
/// subnets of networks with ICC off.
const BRIDGE_ADDR_RULES: &[&str] =
    &["ip saddr @icc_off4 drop", "ip daddr @icc_off4 drop", "ip6 saddr @icc_off6 drop", "ip6 daddr @icc_off6 drop"];

/// The commands that make sure wharf's tables, sets, maps and chains exist and that the chains
/// hold exactly the fixed rules; existing elements are kept. `ibrname`: the kernel supports
/// `meta ibrname` in the bridge family.
pub fn structure(ibrname: bool, policy: &Policy) -> String {
    let (inet, bridge) = (policy.table(Family::Inet), policy.table(Family::Bridge));
    let mut s = policy.add_table(Family::Inet);
    for (kind, name, decl) in INET_SETS {
        s += &format!("add {kind} {inet} {name} {{ {decl} }}\n");
    }
    let chains = inet_chains(policy.respect_input);
    for (name, decl, _) in &chains {
        if decl.is_empty() {
            s += &format!("add chain {inet} {name}\n");
        } else {
            s += &format!("add chain {inet} {name} {{ {decl} }}\n");
        }
        s += &format!("flush chain {inet} {name}\n");
    }
    for (name, _, rules) in &chains {
        for rule in rules {
            s += &format!("add rule {inet} {name} {rule}\n");
        }
    }
    s += &policy.add_table(Family::Bridge);
    if ibrname {
        s += &format!("add set {bridge} icc_off {{ type ifname; }}\n");
    } else {
        s += &format!("add set {bridge} icc_off4 {{ type ipv4_addr; flags interval; }}\n");
        s += &format!("add set {bridge} icc_off6 {{ type ipv6_addr; flags interval; }}\n");
    }
    s += &format!("add chain {bridge} forward {{ {BRIDGE_FORWARD} }}\nflush chain {bridge} forward\n");
    if ibrname {
        s += &format!("add rule {bridge} forward meta ibrname @icc_off drop\n");
    } else {
        for rule in BRIDGE_ADDR_RULES {
            s += &format!("add rule {bridge} forward {rule}\n");
        }
    }
    s
}

/// Commands that drop wharf's tables (absent is fine) and create them afresh, empty.
pub fn recreate(ibrname: bool, policy: &Policy) -> String {
    let (inet, bridge) = (policy.table(Family::Inet), policy.table(Family::Bridge));
    format!(
        "add table {inet}\ndelete table {inet}\nadd table {bridge}\ndelete table {bridge}\n{}",
        structure(ibrname, policy)
    )
}

/// A dry-run transaction that fails where the kernel lacks `meta ibrname` in the bridge family.
pub fn ibrname_probe(policy: &Policy) -> String {
    let bridge = policy.table(Family::Bridge);
    format!("add table {bridge}\nadd chain {bridge} probe\nadd rule {bridge} probe meta ibrname \"wharf\" drop\n")
}

/// Commands, each to be run on its own (libnftables 1.0.6 fills its cache for one listing per
/// command buffer), that fail unless wharf's tables and their filter chains are there: what
/// someone else's `flush ruleset` or `delete table` takes away.
pub fn presence_probes(policy: &Policy) -> [String; 3] {
    let (inet, bridge) = (policy.table(Family::Inet), policy.table(Family::Bridge));
    [format!("list chain {inet} forward"), format!("list chain {inet} raw"), format!("list chain {bridge} forward")]
}

/// One element of one of wharf's sets or maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Elem {
    /// Which of wharf's tables it is in.
    pub table: Family,
    /// Set or map name.
    pub set: &'static str,
    /// The key, in nft syntax.
    pub key: String,
    /// The value, for a map.
    pub value: Option<String>,
}

impl Elem {
    fn new(table: Family, set: &'static str, key: String) -> Self {
        Elem { table, set, key, value: None }
    }

    fn mapped(table: Family, set: &'static str, key: String, value: String) -> Self {
        Elem { table, set, key, value: Some(value) }
    }

    /// The element with its value, as `add element` takes it.
    pub fn full(&self) -> String {
        match &self.value {
            Some(v) => format!("{} : {v}", self.key),
            None => self.key.clone(),
        }
    }

    /// The command that adds it to `policy`'s tables.
    pub fn add(&self, policy: &Policy) -> String {
        format!("add element {} {} {{ {} }}\n", policy.table(self.table), self.set, self.full())
    }

    /// The command that deletes it (by key).
    pub fn delete(&self, policy: &Policy) -> String {
        format!("delete element {} {} {{ {} }}\n", policy.table(self.table), self.set, self.key)
    }

    /// The command that fails unless the kernel has its key.
    pub fn get(&self, policy: &Policy) -> String {
        format!("get element {} {} {{ {} }}", policy.table(self.table), self.set, self.key)
    }

    /// Where it lives and what it holds, for people.
    pub fn describe(&self, policy: &Policy) -> String {
        format!("{} @{} {{ {} }}", policy.table(self.table), self.set, self.full())
    }
}

/// An interface name quoted for nft; refuses names that are not plain interface names.
fn ifname(name: &str) -> Result<String, ExecError> {
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 15 || !plain {
        return Err(ExecError::new(format!("firewall: {name:?} is not a usable interface name")));
    }
    Ok(format!("\"{name}\""))
}

/// The set and map elements that make up `fact`. `ibrname`: the bridge table has `icc_off`
/// (otherwise it matches ICC-off networks by subnet).
pub fn elements(fact: &FirewallFact, ibrname: bool) -> Result<Vec<Elem>, ExecError> {
    match fact {
        FirewallFact::Network {
            bridge,
            subnets,
            masquerade,
            icc,
            internal,
            gateway_mode_v4,
            gateway_mode_v6,
            snat_v4,
            trusted,
        } => {
            let br = ifname(bridge)?;
            let mut out = vec![Elem::new(Family::Inet, "bridges", br.clone())];
            if *icc {
                out.push(Elem::new(Family::Inet, "intra", format!("{br} . {br}")));
            } else if ibrname {
                out.push(Elem::new(Family::Bridge, "icc_off", br.clone()));
            } else {
                for net in subnets {
                    let set = if matches!(net, IpNet::V4(_)) { "icc_off4" } else { "icc_off6" };
                    out.push(Elem::new(Family::Bridge, set, net.trunc().to_string()));
                }
            }
            let snat = match snat_v4 {
                Some(IpAddr::V4(a)) => Some(a.to_string()),
                Some(IpAddr::V6(a)) => {
                    return Err(ExecError::new(format!("firewall: {bridge}: snat_v4 {a} is not an IPv4 address")))
                }
                None => None,
            };
            for (family, mode) in [("ipv4", gateway_mode_v4), ("ipv6", gateway_mode_v6)] {
                let mode = if *internal { GatewayMode::Isolated } else { *mode };
                let key = format!("{family} . {br}");
                match mode {
                    GatewayMode::Isolated => out.push(Elem::new(Family::Inet, "isolated", key)),
                    GatewayMode::Routed => {
                        out.push(Elem::new(Family::Inet, "guarded", key.clone()));
                        out.push(Elem::new(Family::Inet, "routed", key));
                    }
                    GatewayMode::Nat | GatewayMode::NatUnprotected => {
                        if mode == GatewayMode::Nat {
                            out.push(Elem::new(Family::Inet, "guarded", key.clone()));
                        }
                        match (&snat, *masquerade, family) {
                            (_, false, _) => {}
                            (Some(a), true, "ipv4") => {
                                out.push(Elem::mapped(Family::Inet, "snat4", br.clone(), a.clone()))
                            }
                            _ => out.push(Elem::new(Family::Inet, "masq", key)),
                        }
                    }
                }
            }
            if !*internal {
                for iface in trusted {
                    out.push(Elem::new(Family::Inet, "trusted", format!("{} . {br}", ifname(iface)?)));
                }
            }
            Ok(out)
        }
        FirewallFact::Port { protocol, host_ip, host_port, address, port, .. } => {
            let proto = protocol.as_str();
            let service = format!("{proto} . {host_port}");
            let value = format!("{address} . {port}");
            let v4 = address.is_ipv4();
            let open =
                Elem::new(Family::Inet, if v4 { "open4" } else { "open6" }, format!("{address} . {proto} . {port}"));
            match host_ip {
                Some(h) if h.is_ipv4() != v4 => Err(ExecError::new(format!(
                    "firewall: published port {host_port}: host address {h} and endpoint address {address} \
                     are of different families"
                ))),
                Some(h) if !h.is_unspecified() => {
                    let set = if v4 { "dnat4_ip" } else { "dnat6_ip" };
                    Ok(vec![Elem::mapped(Family::Inet, set, format!("{h} . {service}"), value), open])
                }
                _ => Ok(vec![Elem::mapped(Family::Inet, if v4 { "dnat4" } else { "dnat6" }, service, value), open]),
            }
        }
    }
}

/// Commands that add every element of `elems` at once, one `add element` per set; on a key
/// given twice, the last value wins.
pub fn bulk_add<'a>(elems: impl IntoIterator<Item = &'a Elem>, policy: &Policy) -> String {
    let mut by_set: BTreeMap<(Family, &str), BTreeMap<&str, &Elem>> = BTreeMap::new();
    for e in elems {
        by_set.entry((e.table, e.set)).or_default().insert(&e.key, e);
    }
    let mut s = String::new();
    for ((table, set), items) in by_set {
        let list: Vec<String> = items.values().map(|e| e.full()).collect();
        s += &format!("add element {} {set} {{ {} }}\n", policy.table(table), list.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::Protocol;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn network_with(icc: bool, internal: bool, v4: GatewayMode, v6: GatewayMode) -> FirewallFact {
        FirewallFact::Network {
            bridge: "br-x".into(),
            subnets: vec![net("10.1.0.5/24"), net("fd00:1::/64")],
            masquerade: true,
            icc,
            internal,
            gateway_mode_v4: v4,
            gateway_mode_v6: v6,
            snat_v4: None,
            trusted: vec![],
        }
    }

    fn network(icc: bool, internal: bool) -> FirewallFact {
        network_with(icc, internal, GatewayMode::Nat, GatewayMode::Isolated)
    }

    fn adds(elems: &[Elem]) -> Vec<String> {
        elems.iter().map(|e| e.add(&Policy::default()).trim_end().to_string()).collect()
    }

    #[test]
    fn a_nat_network_is_masqueraded_and_guarded() {
        let got = adds(&elements(&network(true, false), true).unwrap());
        assert_eq!(
            got,
            [
                r#"add element inet wharf bridges { "br-x" }"#,
                r#"add element inet wharf intra { "br-x" . "br-x" }"#,
                r#"add element inet wharf guarded { ipv4 . "br-x" }"#,
                r#"add element inet wharf masq { ipv4 . "br-x" }"#,
                r#"add element inet wharf isolated { ipv6 . "br-x" }"#,
            ]
        );
    }

    #[test]
    fn gateway_modes_have_dockers_meanings() {
        let fact = network_with(true, false, GatewayMode::NatUnprotected, GatewayMode::Routed);
        let got = adds(&elements(&fact, true).unwrap());
        assert!(got.contains(&r#"add element inet wharf masq { ipv4 . "br-x" }"#.to_string()), "{got:?}");
        assert!(!got.iter().any(|l| l.contains(r#"guarded { ipv4"#)), "nat-unprotected is not guarded: {got:?}");
        assert!(got.contains(&r#"add element inet wharf guarded { ipv6 . "br-x" }"#.to_string()), "{got:?}");
        assert!(got.contains(&r#"add element inet wharf routed { ipv6 . "br-x" }"#.to_string()), "{got:?}");
        assert!(!got.iter().any(|l| l.contains(r#"masq { ipv6"#)), "routed is not masqueraded: {got:?}");
    }

    #[test]
    fn trusted_interfaces_open_the_network_to_them() {
        let FirewallFact::Network { bridge, subnets, .. } = network(true, false) else { unreachable!() };
        let fact = |trusted: Vec<String>, internal| FirewallFact::Network {
            bridge: bridge.clone(),
            subnets: subnets.clone(),
            masquerade: true,
            icc: true,
            internal,
            gateway_mode_v4: GatewayMode::Nat,
            gateway_mode_v6: GatewayMode::Nat,
            snat_v4: None,
            trusted,
        };
        let got = adds(&elements(&fact(vec!["eth1".into()], false), true).unwrap());
        assert!(got.contains(&r#"add element inet wharf trusted { "eth1" . "br-x" }"#.to_string()), "{got:?}");
        let got = adds(&elements(&fact(vec!["eth1".into()], true), true).unwrap());
        assert!(!got.iter().any(|l| l.contains("trusted")), "an internal network trusts no one: {got:?}");
        assert!(elements(&fact(vec!["eth1\"; flush ruleset".into()], false), true).is_err());
    }

    #[test]
    fn an_internal_network_without_icc_is_isolated_in_both_families() {
        let got = adds(&elements(&network(false, true), true).unwrap());
        assert_eq!(
            got,
            [
                r#"add element inet wharf bridges { "br-x" }"#,
                r#"add element bridge wharf icc_off { "br-x" }"#,
                r#"add element inet wharf isolated { ipv4 . "br-x" }"#,
                r#"add element inet wharf isolated { ipv6 . "br-x" }"#,
            ]
        );
        let by_subnet = adds(&elements(&network(false, true), false).unwrap());
        assert!(by_subnet.contains(&"add element bridge wharf icc_off4 { 10.1.0.0/24 }".to_string()), "{by_subnet:?}");
        assert!(by_subnet.contains(&"add element bridge wharf icc_off6 { fd00:1::/64 }".to_string()), "{by_subnet:?}");
        assert!(!by_subnet.iter().any(|l| l.contains("icc_off {")), "{by_subnet:?}");
    }

    #[test]
    fn snat_replaces_masquerade_for_ipv4_only() {
        let FirewallFact::Network { bridge, subnets, .. } = network(true, false) else { unreachable!() };
        let fact = FirewallFact::Network {
            bridge,
            subnets,
            masquerade: true,
            icc: true,
            internal: false,
            gateway_mode_v4: GatewayMode::Nat,
            gateway_mode_v6: GatewayMode::Nat,
            snat_v4: Some("192.0.2.9".parse().unwrap()),
            trusted: vec![],
        };
        let got = adds(&elements(&fact, false).unwrap());
        assert!(got.contains(&r#"add element inet wharf snat4 { "br-x" : 192.0.2.9 }"#.to_string()), "{got:?}");
        assert!(got.contains(&r#"add element inet wharf masq { ipv6 . "br-x" }"#.to_string()), "{got:?}");
        assert!(!got.contains(&r#"add element inet wharf masq { ipv4 . "br-x" }"#.to_string()), "{got:?}");
    }

    #[test]
    fn the_inet_table_has_no_interval_sets() {
        assert!(INET_SETS.iter().all(|(_, _, decl)| !decl.contains("interval")));
        assert!(structure(true, &Policy::default()).lines().all(|l| !l.contains("interval")));
    }

    #[test]
    fn tables_carry_their_owner_and_another_name_when_given() {
        let policy = Policy { table: "wharf2".into(), owner: Some("wharf:abc".into()), respect_input: None };
        let s = structure(false, &policy);
        assert!(s.starts_with("add table inet wharf2 { comment \"wharf:abc\"; }\n"), "{s}");
        assert!(s.contains("add table bridge wharf2 { comment \"wharf:abc\"; }\n"), "{s}");
        assert!(!s.contains(" wharf "), "{s}");
        let listing = "table inet wharf2 {\n\tcomment \"wharf:abc\"\n\n\tset bridges {\n";
        assert_eq!(owner_of(listing), Some("wharf:abc"));
        assert_eq!(owner_of("table inet wharf {\n\tset bridges {\n"), None);
    }

    #[test]
    fn respecting_the_host_input_policy_adds_one_mark_check() {
        let plain = structure(true, &Policy::default());
        let marked = structure(true, &Policy { respect_input: Some(0x40), ..Default::default() });
        assert!(!plain.contains("meta mark"), "{plain}");
        let rule =
            "add rule inet wharf forward ct status dnat ct state new iifname != @bridges meta mark & 0x40 != 0x40 drop";
        assert!(marked.contains(rule), "{marked}");
        let at = |s: &str, what: &str| s.find(what).unwrap();
        assert!(at(&marked, rule) < at(&marked, "forward ct status dnat accept"), "{marked}");
    }

    fn port(host_ip: Option<&str>, address: &str) -> FirewallFact {
        FirewallFact::Port {
            protocol: Protocol::Udp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 5353,
            address: address.parse().unwrap(),
            port: 53,
            bridge: "br-x".into(),
        }
    }

    #[test]
    fn published_ports_are_map_elements_and_open_the_endpoint_port() {
        let elems = elements(&port(None, "10.1.0.2"), false).unwrap();
        assert_eq!(elems[0].add(&Policy::default()), "add element inet wharf dnat4 { udp . 5353 : 10.1.0.2 . 53 }\n");
        assert_eq!(elems[0].delete(&Policy::default()), "delete element inet wharf dnat4 { udp . 5353 }\n");
        assert_eq!(elems[1].add(&Policy::default()), "add element inet wharf open4 { 10.1.0.2 . udp . 53 }\n");
        let e = &elements(&port(Some("0.0.0.0"), "10.1.0.2"), false).unwrap()[0];
        assert_eq!(e.set, "dnat4");
        let e = &elements(&port(Some("127.0.0.1"), "10.1.0.2"), false).unwrap()[0];
        assert_eq!(
            e.add(&Policy::default()),
            "add element inet wharf dnat4_ip { 127.0.0.1 . udp . 5353 : 10.1.0.2 . 53 }\n"
        );
        let elems = elements(&port(Some("fd00::1"), "fd00:1::2"), false).unwrap();
        assert_eq!(
            elems[0].add(&Policy::default()),
            "add element inet wharf dnat6_ip { fd00::1 . udp . 5353 : fd00:1::2 . 53 }\n"
        );
        assert_eq!(elems[1].add(&Policy::default()), "add element inet wharf open6 { fd00:1::2 . udp . 53 }\n");
        assert!(elements(&port(Some("::1"), "10.1.0.2"), false).is_err());
    }

    #[test]
    fn odd_interface_names_are_refused() {
        for bad in ["", "a\"b", "way-too-long-name0", "a b", "x;y"] {
            assert!(ifname(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ifname("br-1a.2_b").unwrap(), "\"br-1a.2_b\"");
    }

    #[test]
    fn the_structure_only_names_wharfs_tables() {
        let policy = Policy { respect_input: Some(DEFAULT_PUBLISHED_MARK), ..Default::default() };
        let probes = presence_probes(&policy).join("\n");
        for s in [structure(true, &policy), recreate(false, &policy), ibrname_probe(&policy), probes] {
            assert!(!s.is_empty());
            for line in s.lines() {
                assert!(line.contains(" inet wharf") || line.contains(" bridge wharf"), "{line}");
                assert!(!line.contains("ruleset"), "{line}");
            }
        }
    }

    #[test]
    fn a_reload_adds_each_set_once_and_the_last_value_wins() {
        let mut elems = elements(&port(None, "10.1.0.2"), false).unwrap();
        elems.extend(elements(&port(None, "10.1.0.3"), false).unwrap());
        elems.extend(elements(&network(true, false), false).unwrap());
        elems.extend(elements(&network(true, false), false).unwrap());
        let s = bulk_add(&elems, &Policy::default());
        assert!(s.contains("add element inet wharf dnat4 { udp . 5353 : 10.1.0.3 . 53 }\n"), "{s}");
        assert_eq!(s.matches("add element inet wharf bridges").count(), 1, "{s}");
    }
}
