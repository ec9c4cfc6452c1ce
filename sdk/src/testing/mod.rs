//! A plugin author's toolkit: run a driver the way core does, without root and without a
//! daemon.
//!
//! - [`fixtures`] builds requests, host facts and specs as core fills them in.
//! - [`Recorder`] keeps a model of the kernel objects that plans make and take away, and
//!   the log of every operation applied to it.
//! - [`lint`] checks a plan against the rules core enforces before it journals one (paths
//!   under the volume root, `net.` sysctls, the sandbox's namespace only, no core-only
//!   steps) and against what a plan needs to be undone: every step that makes something has
//!   an undo, and the undo is its inverse; interface names and MACs are valid.
//! - [`Lifecycle`] runs `validate`, `create_network`, `create_endpoint`, `join`, `leave`,
//!   `delete_endpoint` and `delete_network` in core's order, passing each call's state to the
//!   next; [`VolumeLifecycle`] does the same for `create`, `mount`, `unmount` and `remove`.
//!   Each plan is linted, rolled back on a copy of the recorder to check that its undos
//!   take away exactly what it made, and applied; at the end nothing may be left.
//!
//! ```
//! use wharf_sdk::testing::Lifecycle;
//! # use wharf_sdk::{DriverResult, EndpointRequest, JoinInfo, NetworkDriver, Outcome};
//! # struct Nothing;
//! # impl NetworkDriver for Nothing {
//! #     fn name(&self) -> &str { "nothing" }
//! #     fn join(&self, _: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> { Ok(Outcome::default()) }
//! # }
//! let report = Lifecycle::new(&Nothing).run().unwrap();
//! assert!(report.recorder.log().is_empty());
//! ```

use crate::error::DriverError;
use crate::facts::{HostFacts, HostLink};
use crate::helpers::{fnv1a, mac_from_seed};
use crate::network::{
    CreateNetwork, DeleteNetwork, EndpointInfo, EndpointRequest, EndpointSpec, JoinInfo, NetworkDriver, NetworkSpec,
    Outcome, SandboxSpec, Subnet,
};
use crate::plan::Plan;
use crate::volume::{VolumeDriver, VolumeInfo, VolumeRequest, VolumeSpec};
use std::collections::BTreeMap;
use std::fmt;

mod recorder;
mod rules;

pub use recorder::Recorder;
pub use rules::{lint, Finding, Reach};

/// Requests, specs and host facts as core fills them in.
pub mod fixtures {
    use super::*;

    /// The volume root core hands drivers in [`facts`].
    pub const VOLUMES_DIR: &str = "/var/lib/wharf/volumes";

    /// A host with loopback and `eth0` (MTU 1500, `192.168.1.10/24`, the default route).
    pub fn facts() -> HostFacts {
        let lo = HostLink {
            name: "lo".into(),
            index: 1,
            mtu: 65536,
            up: true,
            loopback: true,
            addresses: vec!["127.0.0.1/8".parse().expect("address")],
            ..Default::default()
        };
        let eth0 = HostLink {
            name: "eth0".into(),
            index: 2,
            mtu: 1500,
            up: true,
            mac: Some("52:54:00:12:34:56".into()),
            addresses: vec!["192.168.1.10/24".parse().expect("address")],
            ..Default::default()
        };
        HostFacts {
            links: vec![lo, eth0],
            default_route_v4: Some("eth0".into()),
            routes: vec!["192.168.1.0/24".parse().expect("prefix")],
            volumes_dir: VOLUMES_DIR.into(),
            ..Default::default()
        }
    }

    /// `facts` as endpoint calls get them: the operator's settings only (see [`HostFacts`]).
    pub fn endpoint_facts(facts: &HostFacts) -> HostFacts {
        HostFacts { links: Vec::new(), routes: Vec::new(), wharf_bridges: Vec::new(), ..facts.clone() }
    }

    /// A 64-hex-digit id derived from `seed`, like core's.
    pub fn id(seed: &str) -> String {
        (0..4u8).map(|i| format!("{:016x}", fnv1a(format!("{seed}{i}").as_bytes()))).collect()
    }

    /// Network `name` on IPv4 `subnet` (`"10.1.0.0/24"`), its gateway the first address.
    ///
    /// # Panics
    /// When `subnet` is not an IPv4 prefix.
    pub fn network(name: &str, subnet: &str) -> NetworkSpec {
        let subnet: ipnet::IpNet = subnet.parse().expect("an IPv4 prefix such as 10.1.0.0/24");
        let gateway = subnet.hosts().next();
        NetworkSpec { id: id(name), name: name.into(), ipv4: vec![Subnet { subnet, gateway }], ..Default::default() }
    }

    /// The endpoint of `network` at its `n`-th address (the gateway is the first), with
    /// the MAC core would give it.
    pub fn endpoint(network: &NetworkSpec, n: usize) -> EndpointSpec {
        let subnet = network.ipv4.first().map(|s| s.subnet).or(network.ipv6.first().map(|s| s.subnet));
        let address = subnet
            .and_then(|s| s.hosts().nth(n.saturating_sub(1)).and_then(|a| ipnet::IpNet::new(a, s.prefix_len()).ok()));
        let id = id(&format!("{}-{n}", network.id));
        let (ipv4, ipv6) = match address {
            Some(a @ ipnet::IpNet::V4(_)) => (Some(a), None),
            other => (None, other),
        };
        EndpointSpec {
            mac: Some(mac_from_seed(&id)),
            id,
            network_id: network.id.clone(),
            ipv4,
            ipv6,
            ..Default::default()
        }
    }

    /// Sandbox `name`, its namespace `/run/netns/NAME`, with no interfaces yet.
    pub fn sandbox(name: &str) -> SandboxSpec {
        SandboxSpec { id: id(name), name: name.into(), netns: format!("/run/netns/{name}"), interfaces: Vec::new() }
    }

    /// The request of an endpoint call with no state yet.
    pub fn endpoint_request(network: &NetworkSpec, endpoint: &EndpointSpec, sandbox: &SandboxSpec) -> EndpointRequest {
        EndpointRequest {
            network: network.clone(),
            endpoint: endpoint.clone(),
            sandbox: sandbox.clone(),
            facts: endpoint_facts(&facts()),
            ..Default::default()
        }
    }

    /// Volume `name` with driver options `options`.
    pub fn volume(name: &str, options: &[(&str, &str)]) -> VolumeSpec {
        let options = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        VolumeSpec { name: name.into(), options, labels: BTreeMap::new() }
    }

    /// The request of a volume call with no state yet.
    pub fn volume_request(volume: &VolumeSpec) -> VolumeRequest {
        VolumeRequest { volume: volume.clone(), facts: facts(), ..Default::default() }
    }
}

/// Why a lifecycle run stopped: the call, and what went wrong in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The driver method, e.g. `join`.
    pub call: &'static str,
    /// What went wrong.
    pub problem: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.problem)
    }
}

impl std::error::Error for Failure {}

/// Check `plan` from `call` and apply it: lint findings, and a rollback that would not
/// take away exactly what the plan made, stop the run.
fn take(recorder: &mut Recorder, call: &'static str, plan: &Plan, reach: &Reach) -> Result<(), Failure> {
    let findings = lint(plan, reach);
    if !findings.is_empty() {
        let problem = findings.iter().map(Finding::to_string).collect::<Vec<_>>().join("; ");
        return Err(Failure { call, problem });
    }
    if let Some(differ) = recorder.rollback_leaves(plan) {
        return Err(Failure {
            call,
            problem: format!("rolling the plan back does not undo it: {}", differ.join(", ")),
        });
    }
    recorder.apply_plan(plan);
    Ok(())
}

fn called<T>(call: &'static str, r: Result<T, DriverError>) -> Result<T, Failure> {
    r.map_err(|e| Failure { call, problem: e.to_string() })
}

fn nothing_left(recorder: &Recorder, call: &'static str) -> Result<(), Failure> {
    let left = recorder.objects();
    if left.is_empty() {
        return Ok(());
    }
    Err(Failure { call, problem: format!("the removals leave {}", left.join(", ")) })
}

/// What each call of a network driver's [`Lifecycle`] returned, and the model after all.
#[derive(Debug, Clone)]
pub struct Report {
    /// `create_network`.
    pub network: Outcome<()>,
    /// `create_endpoint`.
    pub endpoint: Outcome<EndpointInfo>,
    /// `join`.
    pub join: Outcome<JoinInfo>,
    /// `leave`.
    pub leave: Outcome<()>,
    /// `delete_endpoint`.
    pub delete_endpoint: Outcome<()>,
    /// `delete_network`.
    pub delete_network: Outcome<()>,
    /// The model the plans were applied to, with their log.
    pub recorder: Recorder,
}

/// A network driver's life as core runs it: create a network, an endpoint, join a sandbox,
/// leave it, delete the endpoint and the network.
#[derive(Debug)]
pub struct Lifecycle<'a, D: NetworkDriver + ?Sized> {
    driver: &'a D,
    network: NetworkSpec,
    endpoint: EndpointSpec,
    sandbox: SandboxSpec,
    facts: HostFacts,
}

impl<'a, D: NetworkDriver + ?Sized> Lifecycle<'a, D> {
    /// A run of `driver` on network `n` (`10.10.0.0/24`), its second address, sandbox `s`
    /// and the host of [`fixtures::facts`].
    pub fn new(driver: &'a D) -> Self {
        let network = fixtures::network("n", "10.10.0.0/24");
        let endpoint = fixtures::endpoint(&network, 2);
        Lifecycle { driver, network, endpoint, sandbox: fixtures::sandbox("s"), facts: fixtures::facts() }
    }

    /// Use `network`; the endpoint becomes its second address.
    pub fn network(mut self, network: NetworkSpec) -> Self {
        self.endpoint = fixtures::endpoint(&network, 2);
        self.network = network;
        self
    }

    /// Use `endpoint`.
    pub fn endpoint(mut self, endpoint: EndpointSpec) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Use `sandbox`.
    pub fn sandbox(mut self, sandbox: SandboxSpec) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Use `facts` for the host.
    pub fn facts(mut self, facts: HostFacts) -> Self {
        self.facts = facts;
        self
    }

    /// Run every call in core's order. Stops at the first driver error, lint finding or
    /// plan whose rollback does not undo it, and fails when the removals leave anything.
    pub fn run(&self) -> Result<Report, Failure> {
        let d = self.driver;
        let mut recorder = Recorder::new();
        let host = Reach { volumes_dir: self.facts.volumes_dir.clone(), sandbox: None };
        let sandboxed = Reach { sandbox: Some(self.sandbox.netns.clone()), ..host.clone() };
        called("validate", d.validate(&self.network, &self.facts))?;
        let create = CreateNetwork { network: self.network.clone(), facts: self.facts.clone(), others: Vec::new() };
        let network = called("create_network", d.create_network(create))?;
        take(&mut recorder, "create_network", &network.plan, &host)?;

        let mut req = EndpointRequest {
            network: self.network.clone(),
            network_state: network.state.clone(),
            endpoint: self.endpoint.clone(),
            endpoint_state: crate::DriverState::null(),
            sandbox: self.sandbox.clone(),
            facts: fixtures::endpoint_facts(&self.facts),
        };
        let endpoint = called("create_endpoint", d.create_endpoint(req.clone()))?;
        take(&mut recorder, "create_endpoint", &endpoint.plan, &sandboxed)?;
        if req.endpoint.mac.is_none() {
            req.endpoint.mac = endpoint.response.mac.clone();
        }
        req.endpoint_state = endpoint.state.clone();
        let join = called("join", d.join(req.clone()))?;
        take(&mut recorder, "join", &join.plan, &sandboxed)?;

        // Core lists no interfaces on the way out.
        req.sandbox.interfaces.clear();
        req.endpoint_state = join.state.clone();
        let leave = called("leave", d.leave(req.clone()))?;
        take(&mut recorder, "leave", &leave.plan, &sandboxed)?;
        req.endpoint_state = leave.state.clone();
        let delete_endpoint = called("delete_endpoint", d.delete_endpoint(req))?;
        take(&mut recorder, "delete_endpoint", &delete_endpoint.plan, &sandboxed)?;

        let delete = DeleteNetwork {
            network: self.network.clone(),
            state: network.state.clone(),
            facts: self.facts.clone(),
            others: Vec::new(),
        };
        let delete_network = called("delete_network", d.delete_network(delete))?;
        take(&mut recorder, "delete_network", &delete_network.plan, &host)?;
        nothing_left(&recorder, "delete_network")?;
        Ok(Report { network, endpoint, join, leave, delete_endpoint, delete_network, recorder })
    }
}

/// What each call of a volume driver's [`VolumeLifecycle`] returned, and the model after all.
#[derive(Debug, Clone)]
pub struct VolumeReport {
    /// `create`.
    pub create: Outcome<VolumeInfo>,
    /// `mount`.
    pub mount: Outcome<VolumeInfo>,
    /// `get` while mounted.
    pub get: VolumeInfo,
    /// `unmount`.
    pub unmount: Outcome<()>,
    /// `remove`.
    pub remove: Outcome<()>,
    /// The model the plans were applied to, with their log.
    pub recorder: Recorder,
}

/// A volume driver's life as core runs it: create, mount, get, unmount, remove.
#[derive(Debug)]
pub struct VolumeLifecycle<'a, D: VolumeDriver + ?Sized> {
    driver: &'a D,
    request: VolumeRequest,
}

impl<'a, D: VolumeDriver + ?Sized> VolumeLifecycle<'a, D> {
    /// A run of `driver` on `volume`, with the host of [`fixtures::facts`].
    pub fn new(driver: &'a D, volume: VolumeSpec) -> Self {
        VolumeLifecycle { driver, request: fixtures::volume_request(&volume) }
    }

    /// Run every call in core's order, passing state along as core does (a call that
    /// returns no state keeps the last). Stops as [`Lifecycle::run`] does.
    pub fn run(&self) -> Result<VolumeReport, Failure> {
        let d = self.driver;
        let mut recorder = Recorder::new();
        let reach = Reach { volumes_dir: self.request.facts.volumes_dir.clone(), sandbox: None };
        let mut req = self.request.clone();
        let keep = |req: &mut VolumeRequest, state: &crate::DriverState| {
            if !state.is_null() {
                req.state = state.clone();
            }
        };
        called("validate", d.validate(&req))?;
        let create = called("create", d.create(req.clone()))?;
        take(&mut recorder, "create", &create.plan, &reach)?;
        keep(&mut req, &create.state);
        req.mount_id = "c1".into();
        let mount = called("mount", d.mount(req.clone()))?;
        take(&mut recorder, "mount", &mount.plan, &reach)?;
        keep(&mut req, &mount.state);
        let get = called("get", d.get(req.clone()))?;
        let unmount = called("unmount", d.unmount(req.clone()))?;
        take(&mut recorder, "unmount", &unmount.plan, &reach)?;
        keep(&mut req, &unmount.state);
        req.mount_id.clear();
        let remove = called("remove", d.remove(req))?;
        take(&mut recorder, "remove", &remove.plan, &reach)?;
        nothing_left(&recorder, "remove")?;
        Ok(VolumeReport { create, mount, get, unmount, remove, recorder })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LinkKind, LinkSpec, Netns, Op, RouteSpec, Step};
    use crate::DriverResult;

    /// A veth per endpoint, its address and a default route; leave is the default.
    struct Veth {
        forget_the_route: bool,
    }

    impl NetworkDriver for Veth {
        fn name(&self) -> &str {
            "veth"
        }
        fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
            let sandbox = Netns::Path(req.sandbox.netns.clone());
            let kind = LinkKind::Veth { peer: "eth0".into(), peer_netns: sandbox.clone(), peer_mac: None };
            let mut plan = Plan::new();
            plan.push(Step::link_add(Netns::Host, LinkSpec::new(format!("v{}", &req.endpoint.id[..8]), kind)));
            plan.push(Step::addr_add(sandbox.clone(), "eth0", req.endpoint.ipv4.expect("an address")));
            let route = RouteSpec::default_via("10.10.0.1".parse().expect("ip"), "eth0", true);
            let undo = if self.forget_the_route { Op::Noop } else { Op::route_del(sandbox.clone(), route.clone()) };
            plan.push(Step::new(Op::route_add(sandbox, route), undo));
            Ok(Outcome::new(JoinInfo::default(), plan, req.endpoint_state))
        }
    }

    #[test]
    fn a_sound_driver_runs_its_life_and_leaves_nothing() {
        let report = Lifecycle::new(&Veth { forget_the_route: false }).run().unwrap();
        assert_eq!(report.join.plan.steps.len(), 3);
        assert_eq!(report.leave.plan, report.join.plan.inverse(), "the default leave");
        assert!(report.recorder.objects().is_empty());
        assert_eq!(report.recorder.log().len(), 6);
    }

    #[test]
    fn a_step_without_its_undo_is_found() {
        let err = Lifecycle::new(&Veth { forget_the_route: true }).run().unwrap_err();
        assert_eq!(err.call, "join");
        assert!(err.problem.contains("step 3 (add route to 0.0.0.0/0") && err.problem.contains("no undo"), "{err}");
    }

    #[test]
    fn lint_names_each_broken_rule() {
        let reach = Reach::sandbox("/run/netns/s");
        let bad_name = LinkSpec::new("a-name-far-too-long", LinkKind::Dummy);
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, bad_name));
        plan.push(Step::addr_add(Netns::Path("/run/netns/other".into()), "eth0", "10.0.0.2/24".parse().unwrap()));
        plan.push(Step::sysctl(Netns::Host, "kernel.panic", "1", None));
        plan.push(Step::dir_create("/etc/x", None, None, None));
        plan.push(Step::new(
            Op::link_add(Netns::Host, LinkSpec::new("d0", LinkKind::Dummy)),
            Op::LinkDel { netns: Netns::Host, name: "d1".into() },
        ));
        let found: Vec<String> = lint(&plan, &reach).iter().map(Finding::to_string).collect();
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found[0].contains("not a valid interface name"));
        assert!(found[1].contains("not the one of the sandbox"));
        assert!(found[2].contains("not under net."));
        assert!(found[3].contains("is not below /var/lib/wharf/volumes"));
        assert!(found[4].contains("is not its inverse"));
        assert!(lint(&Plan::new(), &reach).is_empty());
    }

    #[test]
    fn the_model_takes_what_belongs_to_a_link_with_it() {
        let mut r = Recorder::new();
        let sandbox = Netns::Path("/run/netns/s".into());
        let kind = LinkKind::Veth { peer: "eth0".into(), peer_netns: sandbox.clone(), peer_mac: None };
        r.apply(Step::link_add(Netns::Host, LinkSpec::new("v0", kind)).op());
        r.apply(Step::addr_add(sandbox.clone(), "eth0", "10.0.0.2/24".parse().unwrap()).op());
        assert!(r.has("address /run/netns/s eth0"));
        r.apply(&Op::LinkDel { netns: Netns::Host, name: "v0".into() });
        assert!(r.objects().is_empty(), "{:?}", r.objects());
    }
}
