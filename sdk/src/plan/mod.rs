//! The plan language: the typed kernel operations a driver asks core to carry out.
//!
//! A driver never touches the kernel. It returns a [`Plan`], an ordered list of [`Step`]s;
//! each step holds the operation to perform and the operation that undoes it. Every
//! operation is idempotent ("ensure present" / "ensure absent"), so core can replay a plan
//! after a crash or roll it back step by step without knowing what a driver meant.
//!
//! The objects operations name ([`LinkSpec`], [`RouteSpec`], [`FirewallFact`], ...) live in
//! `spec.rs`, the operations ([`Op`]) in `op.rs`; steps and plans here.

mod op;
mod spec;

pub use op::{link_sysctl_key, sysctl_path, Op};
pub use spec::{
    FirewallFact, GatewayMode, LinkChange, LinkKind, LinkSpec, MacvlanMode, MountSpec, Netns, Protocol, RouteScope,
    RouteSpec,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::net::IpAddr;

/// One step of a plan: an operation ([`Step::op`]) and the operation that undoes it
/// ([`Step::undo`]).
///
/// Every endpoint and network keeps its plan in memory, so a step is kept small: an undo
/// that is the op's [`Op::plain_undo`] (a create's delete, an add's remove: most of them) is
/// not kept but made again when asked for, and an undo that does nothing takes no room
/// either. A step is made with [`Step::new`] or one of the constructors below, and read
/// through its methods.
///
/// In JSON a step is `{"do": OP, "undo": OP}`. `undo` may be left out when it is the op's
/// plain undo: a reader fills it in. Writers that do so are the plugin side of the ABI, and
/// only for a core that speaks message version 2 or later (see [`Plan::compact`]); a step's
/// own `Serialize` always writes both, so stored plans stay readable by older versions.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "StepMessage")]
pub struct Step {
    op: Op,
    undo: Undo,
}

/// How a step keeps its undo. [`Step::new`] picks the variant, so two steps with the same op
/// and undo are kept alike and compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    /// The op's [`Op::plain_undo`].
    Plain,
    /// [`Op::Noop`].
    Noop,
    /// Any other operation.
    Other(Box<Op>),
}

/// The undo of a step that undoes nothing, lent out by [`Step::undo`].
static NOOP: Op = Op::Noop;

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step").field("op", &self.op).field("undo", &self.undo()).finish()
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Step", 2)?;
        s.serialize_field("do", &self.op)?;
        s.serialize_field("undo", &self.undo())?;
        s.end()
    }
}

/// A step as read from JSON, before a left-out `undo` is filled in.
#[derive(Deserialize)]
struct StepMessage {
    #[serde(rename = "do")]
    op: Op,
    #[serde(default)]
    undo: Option<Op>,
}

impl TryFrom<StepMessage> for Step {
    type Error = String;

    fn try_from(m: StepMessage) -> Result<Step, String> {
        match m.undo {
            Some(undo) => Ok(Step::new(m.op, undo)),
            None if m.op.plain_undo().is_some() => Ok(Step::plain(m.op)),
            None => Err(format!("step to {} lacks its undo", m.op.describe())),
        }
    }
}

/// A step that leaves out its undo when that is the plain one; see [`Plan::compact`].
struct CompactStep<'a>(&'a Step);

impl Serialize for CompactStep<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let plain = self.0.undo == Undo::Plain;
        let mut s = serializer.serialize_struct("Step", if plain { 1 } else { 2 })?;
        s.serialize_field("do", &self.0.op)?;
        if !plain {
            s.serialize_field("undo", &self.0.undo())?;
        }
        s.end()
    }
}

/// A plan serialised with plain undos left out; see [`Plan::compact`].
#[derive(Debug)]
pub struct CompactPlan<'a>(&'a Plan);

impl Serialize for CompactPlan<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Steps<'a>(&'a [Step]);
        impl Serialize for Steps<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.iter().map(CompactStep))
            }
        }
        let mut s = serializer.serialize_struct("Plan", 1)?;
        s.serialize_field("steps", &Steps(&self.0.steps))?;
        s.end()
    }
}

impl Step {
    /// A step with an explicit inverse.
    pub fn new(op: Op, undo: Op) -> Self {
        let undo = if op.is_plain_undo(&undo) {
            Undo::Plain
        } else if undo == Op::Noop {
            Undo::Noop
        } else {
            Undo::Other(Box::new(undo))
        };
        Step { op, undo }
    }

    /// A step undone by the plain undo of `op`, which has one.
    fn plain(op: Op) -> Self {
        debug_assert!(op.plain_undo().is_some(), "{} has no plain undo", op.describe());
        Step { op, undo: Undo::Plain }
    }

    /// What to do.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// What undoes it: borrowed when the step keeps it, made afresh when it is the op's
    /// plain undo.
    pub fn undo(&self) -> Cow<'_, Op> {
        match &self.undo {
            Undo::Plain => Cow::Owned(self.op.plain_undo().unwrap_or(Op::Noop)),
            Undo::Noop => Cow::Borrowed(&NOOP),
            Undo::Other(undo) => Cow::Borrowed(undo),
        }
    }

    /// The op and its undo, taken apart.
    pub fn into_parts(self) -> (Op, Op) {
        let undo = self.undo().into_owned();
        (self.op, undo)
    }

    /// Have `undo` undo the step instead.
    pub fn set_undo(&mut self, undo: Op) {
        let op = std::mem::replace(&mut self.op, Op::Noop);
        *self = Step::new(op, undo);
    }

    /// The same step run backwards: undo becomes do.
    pub fn inverse(&self) -> Step {
        Step::new(self.undo().into_owned(), self.op.clone())
    }

    /// Create a link; undo deletes it.
    pub fn link_add(netns: Netns, link: LinkSpec) -> Self {
        Step::plain(Op::link_add(netns, link))
    }

    /// Add an address; undo removes it.
    pub fn addr_add(netns: Netns, link: impl Into<String>, address: IpNet) -> Self {
        Step::plain(Op::AddrAdd { netns, link: link.into(), address })
    }

    /// Add a route; undo deletes it.
    pub fn route_add(netns: Netns, route: RouteSpec) -> Self {
        Step::plain(Op::route_add(netns, route))
    }

    /// Bring a link up; undo brings it down.
    pub fn link_up(netns: Netns, name: impl Into<String>) -> Self {
        Step::plain(Op::LinkSet { netns, name: name.into(), change: LinkChange::Up })
    }

    /// Turn on hairpin mode on bridge port `name`; undo turns it off.
    pub fn hairpin(netns: Netns, name: impl Into<String>) -> Self {
        Step::plain(Op::LinkSet { netns, name: name.into(), change: LinkChange::Hairpin(true) })
    }

    /// Add a forwarding-database entry (for a VXLAN device: `mac` reaches the remote VTEP
    /// `destination`); undo removes it.
    pub fn fdb_add(
        netns: Netns,
        device: impl Into<String>,
        mac: impl Into<String>,
        destination: Option<IpAddr>,
    ) -> Self {
        Step::plain(Op::FdbAdd { netns, device: device.into(), mac: mac.into(), destination })
    }

    /// Set a sysctl; undo writes `previous`, or does nothing when `previous` is `None`.
    pub fn sysctl(netns: Netns, key: impl Into<String>, value: impl Into<String>, previous: Option<String>) -> Self {
        let key = key.into();
        let undo = match previous {
            Some(value) => Op::Sysctl { netns: netns.clone(), key: key.clone(), value },
            None => Op::Noop,
        };
        Step::new(Op::Sysctl { netns, key, value: value.into() }, undo)
    }

    /// Set a sysctl; undo writes back the value the key had before (see
    /// [`Op::SysctlRestore`]). Core reads that value and keeps it in its store, in the same
    /// transaction that journals the plan, so it survives a crash; when several objects set
    /// one key, the value found by the first is written back after the last is gone.
    pub fn sysctl_restoring(netns: Netns, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let undo = Op::SysctlRestore { netns: netns.clone(), key: key.clone() };
        Step::new(Op::Sysctl { netns, key, value: value.into() }, undo)
    }

    /// Answer ARP or neighbour solicitations for `address` on `device`; undo stops it.
    pub fn neigh_proxy(netns: Netns, device: impl Into<String>, address: IpAddr) -> Self {
        Step::plain(Op::NeighProxyAdd { netns, device: device.into(), address })
    }

    /// Add a firewall fact; undo removes it.
    pub fn firewall_add(fact: FirewallFact) -> Self {
        Step::plain(Op::firewall_add(fact))
    }

    /// Create a directory; undo removes it.
    pub fn dir_create(path: impl Into<String>, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> Self {
        Step::plain(Op::DirCreate { path: path.into(), mode, uid, gid })
    }

    /// Mount a filesystem; undo unmounts it.
    pub fn mount(
        source: impl Into<String>,
        target: impl Into<String>,
        fstype: impl Into<String>,
        options: impl Into<String>,
    ) -> Self {
        Step::plain(Op::mount(source, target, fstype, options))
    }
}

/// An ordered list of steps. Core runs them in order and, if one fails, runs the undo of
/// every completed step that created its object, in reverse order: a step that found its
/// object there already is not undone, then or by a later removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Plan {
    /// The steps, in order.
    #[serde(deserialize_with = "exact_steps")]
    pub steps: Vec<Step>,
}

/// The steps of a plan read from JSON, holding no room for more: a plan read from a driver or
/// the store is kept as long as its object, and a list that grew by doubling would keep up to
/// half as many steps again unused.
fn exact_steps<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Step>, D::Error> {
    let mut steps = Vec::<Step>::deserialize(deserializer)?;
    steps.shrink_to_fit();
    Ok(steps)
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Plan::default()
    }

    /// Append a step.
    pub fn push(&mut self, step: Step) -> &mut Self {
        self.steps.push(step);
        self
    }

    /// Append every step of `other`.
    pub fn extend(&mut self, other: Plan) -> &mut Self {
        self.steps.extend(other.steps);
        self
    }

    /// The plan that takes away what this plan made: every step inverted, in reverse order.
    pub fn inverse(&self) -> Plan {
        Plan { steps: self.steps.iter().rev().map(Step::inverse).collect() }
    }

    /// Whether the plan has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operations to perform, in order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.steps.iter().map(|s| &s.op)
    }

    /// The plan as message version 2 carries it: a step's `undo` is left out when it is
    /// the op's [`Op::plain_undo`], which a reader fills back in. About half the bytes of a
    /// typical plan, so half the cost of encoding and decoding it.
    pub fn compact(&self) -> CompactPlan<'_> {
        CompactPlan(self)
    }
}

impl FromIterator<Step> for Plan {
    fn from_iter<I: IntoIterator<Item = Step>>(iter: I) -> Self {
        Plan { steps: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_dot_in_an_interface_name_stays_inside_its_sysctl_component() {
        let key = link_sysctl_key("ipv4", "br.0", "route_localnet");
        assert_eq!(key, "net.ipv4.conf.br/0.route_localnet");
        assert_eq!(sysctl_path(&key).as_deref(), Some("net/ipv4/conf/br.0/route_localnet"));
        assert_eq!(sysctl_path("net.ipv4.ip_forward").as_deref(), Some("net/ipv4/ip_forward"));
        for bad in ["net..x", "net.ipv4.conf.//.x", "net.ipv4.conf./.x", ".net", "net."] {
            assert_eq!(sysctl_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn inverse_reverses_order_and_swaps_each_step() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("br0", LinkKind::Bridge)));
        plan.push(Step::addr_add(Netns::Host, "br0", "10.0.0.1/24".parse().unwrap()));
        let inv = plan.inverse();
        assert_eq!(inv.steps.len(), 2);
        assert!(matches!(&inv.steps[0].op, Op::AddrDel { link, .. } if link == "br0"));
        assert!(matches!(&inv.steps[1].op, Op::LinkDel { name, .. } if name == "br0"));
        assert_eq!(inv.inverse(), plan);
    }

    #[test]
    fn plan_round_trips_through_json() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(
            Netns::Host,
            LinkSpec::new(
                "veth1",
                LinkKind::Veth { peer: "eth0".into(), peer_netns: Netns::Path("/run/netns/a".into()), peer_mac: None },
            ),
        ));
        plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", None));
        let json = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn a_compact_plan_leaves_out_plain_undos_and_reads_back_whole() {
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("br0", LinkKind::Bridge)));
        plan.push(Step::hairpin(Netns::Host, "veth0"));
        plan.push(Step::addr_add(Netns::Path("/run/netns/a".into()), "eth0", "10.0.0.2/24".parse().unwrap()));
        plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", Some("0".into())));
        plan.push(Step::new(Op::LinkDel { netns: Netns::Host, name: "old".into() }, Op::Noop));
        plan.push(Step::new(Op::DirCreate { path: "/v".into(), mode: None, uid: None, gid: None }, Op::Noop));
        let json = serde_json::to_value(plan.compact()).unwrap();
        let undos: Vec<bool> = json["steps"].as_array().unwrap().iter().map(|s| s.get("undo").is_some()).collect();
        assert_eq!(undos, [false, false, false, true, true, true]);
        let back: Plan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
        let full: Value = serde_json::to_value(&plan).unwrap();
        assert!(full["steps"].as_array().unwrap().iter().all(|s| s.get("undo").is_some()));
    }

    #[test]
    fn a_step_without_undo_needs_a_plain_one() {
        let json = r#"{"steps":[{"do":{"sysctl":{"netns":"host","key":"k","value":"1"}}}]}"#;
        let err = serde_json::from_str::<Plan>(json).unwrap_err();
        assert!(err.to_string().contains("lacks its undo"), "{err}");
    }

    #[test]
    fn a_route_written_by_an_older_sdk_reads_with_the_new_fields_at_their_defaults() {
        let old = r#"{"destination":"0.0.0.0/0","gateway":"10.0.0.1","device":"eth0"}"#;
        let route: RouteSpec = serde_json::from_str(old).unwrap();
        assert_eq!(route, RouteSpec::default_via("10.0.0.1".parse().unwrap(), "eth0", false));
        assert_eq!(serde_json::to_string(&route).unwrap(), old, "fields at their defaults are left out");
        let onlink = RouteSpec::default_via("fe80::1".parse().unwrap(), "eth0", true);
        assert_eq!(onlink.destination.to_string(), "::/0");
        assert!(serde_json::to_string(&onlink).unwrap().contains(r#""onlink":true"#));
    }

    #[test]
    fn a_restoring_sysctl_and_a_proxy_entry_undo_themselves() {
        let step = Step::sysctl_restoring(Netns::Host, "net.ipv4.conf.all.proxy_arp", "1");
        assert_eq!(*step.undo(), Op::SysctlRestore { netns: Netns::Host, key: "net.ipv4.conf.all.proxy_arp".into() });
        let proxy = Step::neigh_proxy(Netns::Host, "v0", "10.0.0.9".parse().unwrap());
        assert_eq!(proxy.op().plain_undo(), Some(proxy.undo().into_owned()));
        let plan: Plan = [step, proxy].into_iter().collect();
        let back: Plan = serde_json::from_value(serde_json::to_value(plan.compact()).unwrap()).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn a_step_stays_small() {
        // Every network and endpoint keeps the plan that made it in memory for as long as it
        // exists, so each byte of a step is paid once per step of every object on the host.
        let (step, op) = (std::mem::size_of::<Step>(), std::mem::size_of::<Op>());
        assert!(
            step <= 128,
            "a Step is {step} bytes (an Op {op}): box the payload of the operation that grew, \
             as LinkAdd, RouteAdd, FirewallAdd and Mount do"
        );
    }

    #[test]
    fn a_step_gives_back_the_undo_it_was_made_with() {
        let route = RouteSpec::host("10.0.0.9".parse().unwrap(), "eth0");
        let add = Op::route_add(Netns::Host, route.clone());
        let del = Op::route_del(Netns::Host, route);
        let plain = Step::new(add.clone(), del.clone());
        assert_eq!(plain, Step::route_add(Netns::Host, RouteSpec::host("10.0.0.9".parse().unwrap(), "eth0")));
        assert_eq!((plain.op(), &*plain.undo()), (&add, &del));
        assert_eq!(plain.inverse(), Step::new(del.clone(), add.clone()));
        assert_eq!(format!("{plain:?}"), format!("Step {{ op: {add:?}, undo: {del:?} }}"));
        let mut step = plain.clone();
        step.set_undo(Op::Noop);
        assert_eq!(*step.undo(), Op::Noop);
        assert_ne!(step, plain);
        step.set_undo(del.clone());
        assert_eq!(step, plain);
        let other = Op::LinkDel { netns: Netns::Host, name: "x".into() };
        assert_eq!(Step::new(add.clone(), other.clone()).into_parts(), (add, other));
    }

    #[test]
    fn a_plan_read_from_json_holds_no_room_for_more_steps() {
        let plan: Plan = (0..5).map(|i| Step::dir_create(format!("/v/{i}"), None, None, None)).collect();
        let back: Plan = serde_json::from_str(&serde_json::to_string(&plan.compact()).unwrap()).unwrap();
        assert_eq!((back.steps.len(), back.steps.capacity()), (5, 5));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let json = r#"{"steps":[{"do":{"link_del":{"netns":"host","name":"x","future":1}},"undo":"noop","extra":true}],"v2":null}"#;
        let plan: Plan = serde_json::from_str(json).unwrap();
        assert_eq!(plan.steps.len(), 1);
    }
}

#[cfg(test)]
mod wire_tests;
