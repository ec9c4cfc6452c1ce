//! Network drivers: the [`NetworkDriver`] trait and the messages its methods take and return.

use crate::error::{DriverError, DriverResult};
use crate::facts::{FactsScope, HostFacts};
use crate::plan::{Plan, Protocol, RouteSpec};
use crate::state::DriverState;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where a driver's networks are visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One host.
    #[default]
    Local,
    /// Every host sharing the cluster store.
    Global,
}

impl Scope {
    /// `local` or `global`, as Docker spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// What a network driver needs from core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCapabilities {
    /// Local or global scope.
    pub scope: Scope,
    /// Whether core's IPAM assigns subnets and endpoint addresses.
    pub uses_ipam: bool,
    /// Whether endpoints get an interface in the sandbox (false for `host` and `none`).
    pub connects_sandboxes: bool,
    /// The network options the driver reads. When a driver lists them, core keeps an option
    /// that no loaded driver lists apart: stored and shown, never passed to the driver, and
    /// named in the create response's warning (Compose files carry such options). Options
    /// some driver lists reach the driver, which validates them. Empty: the driver lists
    /// none, and every option reaches it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// The endpoint options (`--driver-opt` at connect) the driver reads, kept apart by the
    /// same rule as [`NetworkCapabilities::options`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoint_options: Vec<String>,
    /// The driver option that names a host link a network may be built on, adopted if it
    /// stands there (the bridge driver's `com.docker.network.bridge.name`). That link's own
    /// connected routes are no overlap for the network's subnets: they are the network's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_option: Option<String>,
    /// Which host links, routes and bridges network calls get (see [`HostFacts`]).
    /// [`FactsScope::Concerned`] keeps a network call's cost flat however many networks
    /// and links the host has; the default, [`FactsScope::All`], hands over all of them.
    #[serde(skip_serializing_if = "is_all")]
    pub host_facts: FactsScope,
    /// Whether network calls list the driver's other networks in `others` (see
    /// [`CreateNetwork::others`]). A driver that never looks at them says `false`, so a
    /// network call does not grow with the driver's networks. Default `true`.
    #[serde(skip_serializing_if = "is_true")]
    pub other_networks: bool,
}

fn is_all(s: &FactsScope) -> bool {
    *s == FactsScope::All
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for NetworkCapabilities {
    fn default() -> Self {
        NetworkCapabilities {
            scope: Scope::Local,
            uses_ipam: true,
            connects_sandboxes: true,
            options: Vec::new(),
            endpoint_options: Vec::new(),
            link_option: None,
            host_facts: FactsScope::All,
            other_networks: true,
        }
    }
}

/// One address pool of a network, as IPAM settled it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// The subnet.
    #[serde(serialize_with = "crate::wire::addr")]
    pub subnet: IpNet,
    /// The gateway address in it, if the network has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

impl Subnet {
    /// The gateway with the subnet's prefix length, as an interface address.
    pub fn gateway_cidr(&self) -> Option<IpNet> {
        self.gateway.and_then(|g| IpNet::new(g, self.subnet.prefix_len()).ok())
    }
}

// Fields at their default are left out of messages (every reader defaults them back), so
// they cost nothing to encode or decode.
fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u16) -> bool {
    *n == 0
}

/// A network as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetworkSpec {
    /// 64-hex network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// Driver options (`-o key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// IPv4 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<Subnet>,
    /// IPv6 pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<Subnet>,
    /// Whether IPv6 is enabled.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_ipv6: bool,
    /// Whether the network is internal (no egress).
    #[serde(skip_serializing_if = "is_false")]
    pub internal: bool,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// The first 12 hex digits of the id, as used in device names.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// A port to publish at connect: `host_ip:host_port[-host_port_end] -> port/protocol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PortBinding {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Port inside the sandbox.
    pub port: u16,
    /// Host address; none means every address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// First host port; 0 lets the driver choose.
    pub host_port: u16,
    /// Last host port of a range; 0 means the same as `host_port`.
    #[serde(skip_serializing_if = "is_zero")]
    pub host_port_end: u16,
}

/// An endpoint: one network attachment of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EndpointSpec {
    /// 64-hex endpoint id.
    pub id: String,
    /// The network's id.
    pub network_id: String,
    /// IPv4 address with the subnet's prefix length, when IPAM gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::wire::addr_opt")]
    pub ipv4: Option<IpNet>,
    /// IPv6 address with prefix length.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::wire::addr_opt")]
    pub ipv6: Option<IpNet>,
    /// MAC address the caller asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// DNS aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ports to publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
    /// Endpoint driver options (`com.docker.network.endpoint.*`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A sandbox: the network namespace an endpoint joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SandboxSpec {
    /// Sandbox id.
    pub id: String,
    /// Sandbox name.
    pub name: String,
    /// Path of the namespace file.
    pub netns: String,
    /// Interface names wharf's endpoints already use in this sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
}

/// A driver's answer together with the plan to carry out and its new private state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Outcome<T> {
    /// The answer.
    pub response: T,
    /// Kernel operations core must carry out.
    pub plan: Plan,
    /// The driver's new private state for the object; core stores it and hands it back.
    pub state: DriverState,
}

impl<T> Outcome<T> {
    /// An outcome with a response, a plan and state: a [`DriverState`], or a
    /// [`serde_json::Value`] (`Value::Null` for none).
    pub fn new(response: T, plan: Plan, state: impl Into<DriverState>) -> Self {
        Outcome { response, plan, state: state.into() }
    }

    /// An outcome whose state is the driver's own type, serialised for core to keep.
    pub fn with_state<S: Serialize>(response: T, plan: Plan, state: &S) -> DriverResult<Self> {
        let state = DriverState::new(state).map_err(|e| DriverError::internal(format!("driver state: {e}")))?;
        Ok(Outcome { response, plan, state })
    }
}

/// Read a driver's private state as its own type; no state yet (`null`) is `S::default()`.
pub(crate) fn typed_state<S: DeserializeOwned + Default>(state: &DriverState, what: &str) -> DriverResult<S> {
    if state.is_null() {
        return Ok(S::default());
    }
    state.read().map_err(|e| DriverError::internal(format!("unreadable {what} state: {e}")))
}

impl DeleteNetwork {
    /// The network's state as the driver's own type (see [`Outcome::with_state`]).
    pub fn state_as<S: DeserializeOwned + Default>(&self) -> DriverResult<S> {
        typed_state(&self.state, "network")
    }
}

impl EndpointRequest {
    /// The network's state as the driver's own type (see [`Outcome::with_state`]).
    pub fn network_state_as<S: DeserializeOwned + Default>(&self) -> DriverResult<S> {
        typed_state(&self.network_state, "network")
    }

    /// The endpoint's state as the driver's own type: what the last call for the endpoint
    /// returned, `S::default()` before the first.
    pub fn endpoint_state_as<S: DeserializeOwned + Default>(&self) -> DriverResult<S> {
        typed_state(&self.endpoint_state, "endpoint")
    }
}

/// Another network of the same driver, with the driver's state for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NetworkPeer {
    /// The network.
    pub network: NetworkSpec,
    /// The driver's private state for it.
    pub state: DriverState,
}

/// Ask the driver to create a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CreateNetwork {
    /// The network.
    pub network: NetworkSpec,
    /// Host facts.
    pub facts: HostFacts,
    /// The driver's other networks, to check conflicts (shared parents, overlaps); empty
    /// when the driver's capabilities say it does not look at them
    /// ([`NetworkCapabilities::other_networks`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<NetworkPeer>,
}

/// Ask the driver to delete a network; `state` is what it returned at create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct DeleteNetwork {
    /// The network.
    pub network: NetworkSpec,
    /// The network's private state.
    pub state: DriverState,
    /// Host facts.
    pub facts: HostFacts,
    /// The driver's other networks, to tell which shared resources are still in use; empty
    /// as for [`CreateNetwork::others`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<NetworkPeer>,
}

/// Ask the driver to create, delete, join or leave with an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EndpointRequest {
    /// The network.
    pub network: NetworkSpec,
    /// The network's private state.
    pub network_state: DriverState,
    /// The endpoint.
    pub endpoint: EndpointSpec,
    /// The endpoint's private state (null before create).
    pub endpoint_state: DriverState,
    /// The sandbox (for join and leave).
    pub sandbox: SandboxSpec,
    /// Host facts.
    pub facts: HostFacts,
}

/// What create-endpoint tells core about the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct EndpointInfo {
    /// MAC address the endpoint will have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// What join tells core about the endpoint's interface in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct JoinInfo {
    /// Interface name inside the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// IPv4 gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_v4: Option<IpAddr>,
    /// IPv6 gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_v6: Option<IpAddr>,
    /// Routes installed in the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// DNS servers for the sandbox.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
    /// Host ports actually bound, in the order of the endpoint's port bindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
}

/// A network driver. Methods decide; they never touch the kernel.
///
/// A method gets everything it needs in its request (the object, its private state and the
/// host facts) and returns an [`Outcome`]. Core carries out the plan, rolls it back on
/// failure, and stores the new state only if the plan succeeded. Drivers are called from
/// several threads, so they take `&self` and keep no mutable state of their own.
pub trait NetworkDriver: Send + Sync {
    /// The driver's name, as users pass it to `--driver`.
    fn name(&self) -> &str;

    /// Scope and IPAM use.
    fn capabilities(&self) -> NetworkCapabilities {
        NetworkCapabilities::default()
    }

    /// Check the network's driver options; an error names the bad option. Called before
    /// anything is stored or changed.
    ///
    /// By default every network is accepted, options or not.
    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        let _ = (network, facts);
        Ok(())
    }

    /// Plan the creation of a network. By default nothing is made and no state kept.
    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        let _ = req;
        Ok(Outcome::default())
    }

    /// Plan the deletion of a network. Its endpoints are gone already.
    ///
    /// By default: the inverse of what `create_network` plans for the same network, facts
    /// and peers, with the stored state kept. Override it when the creation plan depended on
    /// more than that (host facts that may have changed since, say).
    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        let DeleteNetwork { network, state, facts, others } = req;
        let made = self.create_network(CreateNetwork { network, facts, others })?;
        Ok(Outcome::new((), made.plan.inverse(), state))
    }

    /// Plan the creation of an endpoint. The state returned becomes the endpoint's. By
    /// default nothing is made and the endpoint's MAC is the one asked for.
    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        Ok(Outcome::new(EndpointInfo { mac: req.endpoint.mac }, Plan::new(), req.endpoint_state))
    }

    /// Plan the deletion of an endpoint that has left its sandbox. By default: the inverse
    /// of what `create_endpoint` plans for the same request, with the state kept.
    fn delete_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let state = req.endpoint_state.clone();
        let made = self.create_endpoint(req)?;
        Ok(Outcome::new((), made.plan.inverse(), state))
    }

    /// Plan how an endpoint joins a sandbox.
    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>>;

    /// Plan how an endpoint leaves its sandbox.
    ///
    /// By default: the inverse of what `join` plans for the same request (whose endpoint
    /// state is the one `join` returned), with that state kept. This holds when `join`
    /// decides from the request and the state alone: a driver that picks an interface name
    /// from `sandbox.interfaces` keeps the name in its state and reads it from there when
    /// the state has it (core lists no interfaces on a leave).
    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        let state = req.endpoint_state.clone();
        let joined = self.join(req)?;
        Ok(Outcome::new((), joined.plan.inverse(), state))
    }
}

impl std::fmt::Debug for dyn NetworkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkDriver").field("name", &self.name()).finish()
    }
}
