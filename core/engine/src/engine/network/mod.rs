//! Network operations: create, delete and prune; connecting and disconnecting sandboxes is
//! in [`connect`].

use super::{new_id, now, Author, Engine, State};
use crate::error::{Error, Result};
use crate::executor::LinkQuery;
use crate::ipam::{overlaps, pick_subnet};
use crate::model::{Network, Pool};
use crate::store::Table;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use wharf_sdk::{
    CreateNetwork, DeleteNetwork, FactsScope, HostFacts, Netns, NetworkDriver, NetworkPeer, NetworkSpec, Op, Plan,
    Subnet, MTU,
};

mod connect;
#[cfg(test)]
mod facts_tests;

pub use connect::ConnectRequest;

/// One `IPAM.Config` entry of a create request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolRequest {
    /// Subnet.
    pub subnet: Option<IpNet>,
    /// Range for dynamic addresses.
    pub ip_range: Option<IpNet>,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Auxiliary addresses.
    pub aux: BTreeMap<String, IpAddr>,
}

/// A network create request, already parsed.
#[derive(Debug, Clone, Default)]
pub struct NetworkCreateRequest {
    /// Name.
    pub name: String,
    /// Driver; empty means `bridge`.
    pub driver: String,
    /// Internal network.
    pub internal: bool,
    /// Attachable.
    pub attachable: bool,
    /// IPv4 on (default) or off.
    pub enable_ipv4: Option<bool>,
    /// IPv6 on.
    pub enable_ipv6: bool,
    /// IPAM pools.
    pub pools: Vec<PoolRequest>,
    /// IPAM driver options.
    pub ipam_options: BTreeMap<String, String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// A configuration-only network (see [`super::config_only`]).
    pub config_only: bool,
    /// The configuration-only network to take settings from.
    pub config_from: String,
}

/// Drivers of which only the predefined network may exist.
const SINGLETON_DRIVERS: [&str; 2] = ["host", "null"];

pub(super) fn spec(n: &Network) -> NetworkSpec {
    let subnets = |pools: &[Pool]| {
        pools.iter().filter_map(|p| p.subnet.map(|s| Subnet { subnet: s, gateway: p.gateway })).collect()
    };
    NetworkSpec {
        id: n.id.clone(),
        name: n.name.clone(),
        // The resolver's option is core's, not the driver's.
        options: n
            .options
            .iter()
            .filter(|(k, _)| k.as_str() != super::ENABLE_DNS)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ipv4: subnets(&n.ipv4),
        ipv6: subnets(&n.ipv6),
        enable_ipv6: n.enable_ipv6,
        internal: n.internal,
        labels: n.labels.clone(),
    }
}

/// What a network call concerns, for a driver that gets only that (see
/// [`FactsScope::Concerned`]): the links named by option values (each comma-separated part;
/// for `BASE.N`, `BASE` too), the links holding an address given as an option value or the
/// cluster VTEP, and the host links `plan` made.
fn concern(options: &BTreeMap<String, String>, plan: &Plan, vtep: Option<IpAddr>) -> LinkQuery {
    let mut q = LinkQuery::default();
    for part in options.values().flat_map(|v| v.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        if let Ok(ip) = part.parse::<IpAddr>() {
            q.addresses.insert(ip);
        }
        if let Some((base, _)) = part.rsplit_once('.') {
            q.names.insert(base.to_string());
        }
        q.names.insert(part.to_string());
    }
    q.addresses.extend(vtep);
    for op in plan.ops() {
        if let Op::LinkAdd { netns: Netns::Host, link } = op {
            q.names.insert(link.name.clone());
        }
    }
    q
}

impl Engine {
    /// The other networks of `driver`, for conflict checks; none for a driver that says it
    /// never looks at them.
    fn peers(&self, state: &State, driver: &str, except: &str) -> Vec<NetworkPeer> {
        if self.capabilities.get(driver).is_some_and(|c| !c.other_networks) {
            return Vec::new();
        }
        state
            .networks()
            .values()
            .filter(|n| n.driver == driver && n.id != except)
            .map(|n| NetworkPeer { network: spec(n), state: n.state.clone() })
            .collect()
    }

    /// Whether `driver` gets only the host facts a network call concerns.
    fn concerned(&self, driver: &str) -> bool {
        self.capabilities.get(driver).is_some_and(|c| c.host_facts == FactsScope::Concerned)
    }

    /// For a driver that gets only what a call concerns, leave in `facts` only the host
    /// routes that overlap one of `network`'s subnets: all it could conflict with (core has
    /// checked the pools it picked against every route).
    pub(super) fn narrow_routes(&self, facts: &mut HostFacts, network: &Network) {
        if self.concerned(&network.driver) {
            let subnets: Vec<IpNet> = network.ipv4.iter().chain(&network.ipv6).filter_map(|p| p.subnet).collect();
            facts.routes.retain(|r| subnets.iter().any(|s| overlaps(r, s)));
        }
    }

    /// The host facts for a network call of `driver` on a network with `options` and
    /// `plan` (empty before it is made): all of them, or only what the call concerns when
    /// the driver asks for that.
    pub(super) fn network_facts(
        &self,
        state: &State,
        driver: &str,
        options: &BTreeMap<String, String>,
        plan: &Plan,
    ) -> Result<HostFacts> {
        let only = self.concerned(driver).then(|| concern(options, plan, self.cluster_vtep()));
        self.facts(state, only.as_ref())
    }

    fn network_driver(&self, name: &str) -> Result<std::sync::Arc<dyn NetworkDriver>> {
        self.registry.network(name).ok_or_else(|| Error::NotFound(format!("plugin {name:?} not found")))
    }

    /// Create a network. Nothing is stored or changed unless every check passes.
    pub fn network_create(&self, req: NetworkCreateRequest) -> Result<Network> {
        let mut state = self.lock();
        self.create_network_locked(&mut state, req, false)
    }

    pub(super) fn create_network_locked(
        &self,
        state: &mut State,
        req: NetworkCreateRequest,
        predefined: bool,
    ) -> Result<Network> {
        check_network_name(&req.name)?;
        if state.network_named(&req.name) {
            return Err(Error::Conflict(format!("network with name {} already exists", req.name)));
        }
        if req.config_only {
            return self.create_config_only(state, req);
        }
        let (req, config_from) = super::config_only::with_config_from(state, req)?;
        let driver_name = if req.driver.is_empty() { "bridge".to_string() } else { req.driver.clone() };
        let driver = self.network_driver(&driver_name)?;
        if !predefined && SINGLETON_DRIVERS.contains(&driver_name.as_str()) {
            return Err(Error::Forbidden(format!("only one instance of {driver_name:?} network is allowed")));
        }
        check_ipv6_mtu(&req)?;
        super::dns::check_options(&req.options)?;
        let caps = self.capabilities.get(&driver_name).cloned().unwrap_or_else(|| driver.capabilities());
        let (options, unused_options) = self.split_unused_options(&driver_name, &req.options, |c| &c.options);
        let mut facts = self.network_facts(state, &driver_name, &req.options, &Plan::new())?;
        let mut network = Network {
            id: new_id(),
            name: req.name.clone(),
            driver: driver_name.clone(),
            scope: self.scope_of(caps.scope).to_string(),
            created: now(),
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv4: req.enable_ipv4.unwrap_or(true),
            enable_ipv6: req.enable_ipv6,
            options,
            unused_options,
            labels: req.labels.clone(),
            ipam_options: req.ipam_options.clone(),
            config_from,
            predefined,
            ..Default::default()
        };
        if caps.uses_ipam {
            let adopted = caps.link_option.as_ref().and_then(|k| req.options.get(k));
            let routes = routes_but_connected(&facts, adopted.map(String::as_str));
            self.assign_pools(state, &mut network, &req, &routes)?;
        } else if !req.pools.is_empty() {
            return Err(Error::InvalidArgument(format!("driver {driver_name:?} does not use IPAM; give no subnets")));
        }
        self.narrow_routes(&mut facts, &network);
        if self.global(&network).is_none() {
            return self.realize_network(state, network, facts);
        }
        // Checked before the cluster sees it: the store takes its name and VNI.
        driver.validate(&spec(&network), &facts).map_err(|e| Error::driver(&driver_name, e))?;
        self.publish_network(&mut network)?;
        self.realize_network(state, network.clone(), facts).inspect_err(|_| {
            if let Err(e) = self.unpublish_network(&network) {
                tracing::warn!(network = %network.name, error = %e, "cannot take a failed network out of the cluster");
            }
        })
    }

    /// Ask the driver for a network settled by core and carry out its plan: the last part of
    /// a create, and all of it for a global network another host created.
    pub(super) fn realize_network(&self, state: &mut State, mut network: Network, facts: HostFacts) -> Result<Network> {
        let driver_name = network.driver.clone();
        let driver = self.network_driver(&driver_name)?;
        let spec = spec(&network);
        let others = self.peers(state, &driver_name, &network.id);
        let ask = |facts: &HostFacts| {
            driver.validate(&spec, facts)?;
            driver.create_network(CreateNetwork { network: spec.clone(), facts: facts.clone(), others: others.clone() })
        };
        let mut out = ask(&facts).map_err(|e| Error::driver(&driver_name, e))?;
        if let Some(facts) = self.with_plan_links(state, &driver_name, &out.plan, facts)? {
            out = ask(&facts).map_err(|e| Error::driver(&driver_name, e))?;
        }
        network.state = out.state;
        network.plan = out.plan;
        let object = format!("network {}", network.name);
        let plan = network.plan.clone();
        let driver = network.driver.clone();
        self.apply_recorded(Author::Driver(&driver), &object, &plan, |t, found| {
            network.found = found.to_vec();
            t.put(Table::Networks, &network.id, &network)
        })?;
        tracing::info!(network = %network.name, id = %network.id, driver = %network.driver, "network created");
        if !network.predefined {
            self.network_event("create", &network, None);
        }
        state.put_network(Arc::new(network.clone()));
        Ok(network)
    }

    /// For a driver that gets only the links a call concerns: `facts` with the host links
    /// that `plan` makes and that exist already, when there are any, so the driver is asked
    /// again. A name of the driver's own choosing (a bridge named after the network's id)
    /// is in no option, so the first call could not show that a link of that name is
    /// there; planned as new, the link would be taken over with the driver's settings.
    fn with_plan_links(
        &self,
        state: &State,
        driver: &str,
        plan: &Plan,
        mut facts: HostFacts,
    ) -> Result<Option<HostFacts>> {
        if !self.concerned(driver) {
            return Ok(None);
        }
        let names: BTreeSet<String> = plan
            .ops()
            .filter_map(|op| match op {
                Op::LinkAdd { netns: Netns::Host, link } if facts.link(&link.name).is_none() => Some(link.name.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Ok(None);
        }
        let query = LinkQuery { names, ..Default::default() };
        let found = self.facts(state, Some(&query))?;
        let links: Vec<_> = found.links.into_iter().filter(|l| query.names.contains(&l.name)).collect();
        if links.is_empty() && found.wharf_bridges.is_empty() {
            return Ok(None);
        }
        facts.links.extend(links);
        facts.wharf_bridges.extend(found.wharf_bridges);
        Ok(Some(facts))
    }

    /// Split `options` into those some loaded driver or core itself reads and those none
    /// does (see [`wharf_sdk::NetworkCapabilities::options`]); `list` picks the options list
    /// from a driver's capabilities. When `driver` lists none, it gets every option. Core's
    /// own ([`super::ENABLE_DNS`]) are never unused; drivers do not see them.
    fn split_unused_options(
        &self,
        driver: &str,
        options: &BTreeMap<String, String>,
        list: impl Fn(&wharf_sdk::NetworkCapabilities) -> &Vec<String>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        if options.is_empty() || self.capabilities.get(driver).is_none_or(|c| list(c).is_empty()) {
            return (options.clone(), BTreeMap::new());
        }
        let known: std::collections::BTreeSet<&String> = self.capabilities.values().flat_map(list).collect();
        options.clone().into_iter().partition(|(k, _)| known.contains(k) || k.as_str() == super::ENABLE_DNS)
    }

    fn assign_pools(
        &self,
        state: &State,
        network: &mut Network,
        req: &NetworkCreateRequest,
        host_routes: &[IpNet],
    ) -> Result<()> {
        let mut used: Vec<IpNet> = state
            .networks()
            .values()
            .filter(|n| !n.config_only)
            .flat_map(|n| n.ipv4.iter().chain(&n.ipv6))
            .filter_map(|p| p.subnet)
            .collect();
        for p in &req.pools {
            let Some(subnet) = p.subnet else {
                return Err(Error::InvalidArgument("an IPAM config entry needs a subnet".into()));
            };
            if matches!(subnet, IpNet::V6(_)) && !network.enable_ipv6 {
                return Err(Error::InvalidArgument(format!("subnet {subnet} is IPv6 but IPv6 is not enabled")));
            }
            if matches!(subnet, IpNet::V4(_)) && !network.enable_ipv4 {
                return Err(Error::InvalidArgument(format!("subnet {subnet} is IPv4 but IPv4 is disabled")));
            }
            if let Some(other) = used.iter().find(|u| overlaps(u, &subnet)) {
                return Err(Error::Forbidden(format!(
                    "subnet {subnet} overlaps with subnet {other} of another network"
                )));
            }
            let pool = Pool::new(subnet, p.ip_range, p.gateway, p.aux.clone(), true)?;
            used.push(subnet);
            if matches!(subnet, IpNet::V4(_)) {
                network.ipv4.push(pool);
            } else {
                network.ipv6.push(pool);
            }
        }
        // A subnet the user gave is theirs to choose, on a host route too (a macvlan network
        // on its parent's own LAN is the usual set-up); a pool wharf picks avoids them.
        let taken: Vec<IpNet> = used.iter().chain(host_routes).copied().collect();
        if network.enable_ipv4 && network.ipv4.is_empty() {
            let subnet = pick_subnet(&self.settings.pools_v4, false, &taken)
                .ok_or_else(|| Error::Forbidden("all default IPv4 address pools are in use".into()))?;
            network.ipv4.push(Pool::new(subnet, None, None, BTreeMap::new(), true)?);
        }
        if network.enable_ipv6 && network.ipv6.is_empty() {
            let subnet = pick_subnet(&self.settings.pools_v6, true, &taken)
                .ok_or_else(|| Error::Forbidden("all default IPv6 address pools are in use".into()))?;
            network.ipv6.push(Pool::new(subnet, None, None, BTreeMap::new(), true)?);
        }
        Ok(())
    }

    /// Remove a network that has no endpoints.
    pub fn network_remove(&self, key: &str) -> Result<()> {
        let mut state = self.lock();
        let network = state.network(key)?.clone();
        self.remove_network_locked(&mut state, &network)
    }

    pub(super) fn remove_network_locked(&self, state: &mut State, network: &Network) -> Result<()> {
        if network.predefined {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be removed", network.name)));
        }
        super::config_only::check_unused(state, network)?;
        if state.endpoints_of_network(&network.id).next().is_some() {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                network.name, network.id
            )));
        }
        self.unpublish_network(network)?;
        let driver = self.network_driver(&network.driver)?;
        let mut facts = self.network_facts(state, &network.driver, &network.options, &network.plan)?;
        self.narrow_routes(&mut facts, network);
        let others = self.peers(state, &network.driver, &network.id);
        let out = driver
            .delete_network(DeleteNetwork { network: spec(network), state: network.state.clone(), facts, others })
            .map_err(|e| Error::driver(&network.driver, e))?;
        let object = format!("network {}", network.name);
        let plan = self.removal_plan(state, out.plan, &network.plan, &network.found, &network.id);
        self.apply_removal(
            Author::Driver(&network.driver),
            &object,
            &plan,
            |t| t.delete(Table::Networks, &network.id),
            |t| t.put(Table::Networks, &network.id, network),
        )?;
        state.remove_network(&network.id);
        tracing::info!(network = %network.name, "network removed");
        self.network_event("destroy", network, None);
        Ok(())
    }

    /// Remove every network that is not predefined, has no endpoints and matches `keep`.
    /// Returns the names removed.
    pub fn network_prune(&self, keep: impl Fn(&Network) -> bool) -> Result<Vec<String>> {
        let mut state = self.lock();
        let candidates: Vec<Network> = state
            .networks()
            .values()
            .filter(|n| !n.predefined && keep(n))
            .filter(|n| state.endpoints_of_network(&n.id).next().is_none())
            .map(|n| Network::clone(n))
            .collect();
        let mut removed = Vec::new();
        for n in candidates {
            match self.remove_network_locked(&mut state, &n) {
                Ok(()) => removed.push(n.name),
                Err(e) => tracing::warn!(network = %n.name, error = %e, "prune could not remove network"),
            }
        }
        self.events.record("network", "prune", "", &[("reclaimed", "0")]);
        Ok(removed)
    }

    /// Record `action` on network `n`, with the sandbox it concerns as Docker's `container`.
    fn network_event(&self, action: &'static str, n: &Network, sandbox: Option<&str>) {
        let mut attributes = vec![("name", n.name.as_str()), ("type", n.driver.as_str())];
        attributes.extend(sandbox.map(|s| ("container", s)));
        self.events.record("network", action, &n.id, &attributes);
    }
}

/// Refuse a network name Docker refuses (empty, or only white space), and what the API could
/// not address: a `/` (a path separator in `/networks/{id}`) or a control character. Any
/// other name goes, spaces included, as with Docker.
pub fn check_network_name(name: &str) -> Result<()> {
    let reason = if name.trim().is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains a '/'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!("invalid network name {name:?}: {reason}")))
}

/// The smallest MTU IPv6 works with (RFC 8200).
const IPV6_MIN_MTU: u32 = 1280;

/// The host's routes less the connected routes of link `adopted` (one per address on it):
/// a network built on a link that stands there may take the subnet that link already
/// routes, and no other.
fn routes_but_connected(facts: &wharf_sdk::HostFacts, adopted: Option<&str>) -> Vec<IpNet> {
    let mut routes = facts.routes.clone();
    for connected in adopted.and_then(|name| facts.link(name)).into_iter().flat_map(|l| &l.addresses) {
        if let Some(i) = routes.iter().position(|r| *r == connected.trunc()) {
            routes.remove(i);
        }
    }
    routes
}

/// Refuse an MTU option below IPv6's minimum on a network with IPv6: the kernel takes IPv6
/// off a link with a smaller MTU, so its addresses and routes could not be added.
fn check_ipv6_mtu(req: &NetworkCreateRequest) -> Result<()> {
    let Some(value) = req.options.get(MTU).filter(|_| req.enable_ipv6) else { return Ok(()) };
    match value.parse::<u32>() {
        Ok(mtu) if mtu < IPV6_MIN_MTU => Err(Error::InvalidArgument(format!(
            "option {MTU}={mtu} is below {IPV6_MIN_MTU}, the smallest MTU IPv6 works with"
        ))),
        _ => Ok(()),
    }
}
