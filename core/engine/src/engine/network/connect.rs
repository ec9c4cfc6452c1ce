//! Connecting a sandbox to a network and disconnecting it: addresses, host ports, the
//! driver's join and leave plans.

use super::super::{new_id, Author, Engine, State};
use super::{spec, SINGLETON_DRIVERS};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::executor::{HostPort, PortState};
use crate::model::{Endpoint, Network, Pool, Sandbox};
use crate::store::Table;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use wharf_sdk::{EndpointRequest, EndpointSpec, Plan, PortBinding, SandboxSpec};

/// A connect request, already parsed.
#[derive(Debug, Clone, Default)]
pub struct ConnectRequest {
    /// Network id, name or id prefix.
    pub network: String,
    /// Sandbox id, name or id prefix.
    pub sandbox: String,
    /// Static IPv4 address.
    pub ipv4: Option<IpAddr>,
    /// Static IPv6 address.
    pub ipv6: Option<IpAddr>,
    /// MAC address.
    pub mac: Option<String>,
    /// DNS aliases.
    pub aliases: Vec<String>,
    /// Ports to publish.
    pub ports: Vec<PortBinding>,
    /// Endpoint driver options.
    pub options: BTreeMap<String, String>,
    /// Gateway priority (see [`Endpoint::gw_priority`]).
    pub gw_priority: i64,
    /// Link-local addresses for the interface (`169.254.0.0/16`, `fe80::/10`).
    pub link_local_ips: Vec<IpAddr>,
}

pub(in crate::engine) fn endpoint_spec(e: &Endpoint) -> EndpointSpec {
    EndpointSpec {
        id: e.id.clone(),
        network_id: e.network_id.clone(),
        ipv4: e.ipv4,
        ipv6: e.ipv6,
        mac: e.mac.clone(),
        aliases: e.aliases.clone(),
        ports: e.ports.clone(),
        options: e.options.clone(),
    }
}

/// Docker's range for the host ports it picks itself.
const PICKED_PORTS: std::ops::RangeInclusive<u16> = 49153..=60999;

/// Whether publishing `new` on host port `port` collides with `other`: the same protocol
/// and port, on the same host address or on every address.
fn clash(new: &PortBinding, port: u16, other: &PortBinding) -> bool {
    let same_ip = new.host_ip.is_none() || other.host_ip.is_none() || new.host_ip == other.host_ip;
    new.protocol == other.protocol && port == other.host_port && same_ip
}

/// Settle the host port of each binding that leaves it open, as Docker does: a range
/// (`8000-8010:80`) takes its first port that neither another endpoint publishes nor a host
/// process uses; port 0 (`-p 80`) takes the next such port of [`PICKED_PORTS`] after `cursor`
/// (the one picked last), so a freed port is not handed out again at once. Bindings earlier in
/// `ports` count as taken. A fixed host port that a host process uses is refused. `host` says
/// whether a host port is free on the host itself. Core does this, not the driver, because
/// host ports are shared by every network, like addresses in IPAM.
fn settle_host_ports(
    state: &State,
    cursor: &mut u16,
    ports: &mut [PortBinding],
    host: &dyn Fn(&PortBinding, u16) -> Result<PortState>,
) -> Result<()> {
    for i in 0..ports.len() {
        let (settled, rest) = ports.split_at_mut(i);
        let p = &mut rest[0];
        let published = |port: u16| state.bindings_on(&port).chain(settled.iter()).any(|o| clash(p, port, o));
        let what = format!("{}/{}", p.port, p.protocol.as_str());
        let on_host = |port: u16| -> Result<bool> {
            match host(p, port)? {
                PortState::Free => Ok(true),
                PortState::InUse => Ok(false),
                PortState::NotLocal => Err(Error::InvalidArgument(format!(
                    "port {what}: host IP {} is not an address of this host",
                    p.host_ip.map_or_else(|| "*".to_string(), |ip| ip.to_string())
                ))),
            }
        };
        let free = |port: u16| -> Result<bool> { Ok(!published(port) && on_host(port)?) };
        if p.host_port != 0 && p.host_port_end == 0 {
            if published(p.host_port) {
                return Err(Error::Conflict(format!(
                    "host port {}/{} is already published by another endpoint",
                    p.host_port,
                    p.protocol.as_str()
                )));
            }
            if !on_host(p.host_port)? {
                return Err(Error::Conflict(format!(
                    "port {what}: host port {}{}: address already in use",
                    p.host_ip.map_or_else(String::new, |ip| format!("{ip}:")),
                    p.host_port
                )));
            }
            continue;
        }
        let port = if p.host_port == 0 {
            let (first, last) = (*PICKED_PORTS.start(), *PICKED_PORTS.end());
            let span = u32::from(last - first) + 1;
            let start = if PICKED_PORTS.contains(cursor) { *cursor } else { last };
            // Every port of the range once, beginning after `start` and wrapping around.
            let after = (1..=span).map(|k| first + ((u32::from(start - first) + k) % span) as u16);
            let port = first_free(after, free)?.ok_or_else(|| {
                Error::Conflict(format!("port {what}: no free host port left between {first} and {last}"))
            })?;
            *cursor = port;
            port
        } else {
            if p.host_port_end < p.host_port {
                return Err(Error::InvalidArgument(format!(
                    "port {what}: host port range {}-{} is empty",
                    p.host_port, p.host_port_end
                )));
            }
            first_free(p.host_port..=p.host_port_end, free)?.ok_or_else(|| {
                Error::Conflict(format!(
                    "port {what}: every host port of {}-{} is published already or in use",
                    p.host_port, p.host_port_end
                ))
            })?
        };
        p.host_port = port;
        p.host_port_end = 0;
    }
    Ok(())
}

/// The first port of `ports` that `free` accepts.
fn first_free(mut ports: impl Iterator<Item = u16>, free: impl Fn(u16) -> Result<bool>) -> Result<Option<u16>> {
    ports.try_fold(None, |found, port| match found {
        Some(_) => Ok(found),
        None => Ok(free(port)?.then_some(port)),
    })
}

impl Engine {
    /// Connect a sandbox to a network.
    pub fn connect(&self, req: ConnectRequest) -> Result<Endpoint> {
        let mut state = self.lock();
        let network = state.network(&req.network)?.clone();
        match self.global(&network) {
            Some(cluster) => self.connect_global(cluster, &mut state, &network, req),
            None => self.connect_locked(&mut state, req),
        }
    }

    pub(in crate::engine) fn connect_locked(&self, state: &mut State, req: ConnectRequest) -> Result<Endpoint> {
        let network = state.network(&req.network)?.clone();
        let sandbox = state.sandbox(&req.sandbox)?.clone();
        if network.config_only {
            return Err(Error::Forbidden(format!(
                "network {} is a configuration-only network: sandboxes connect to the networks made from it",
                network.name
            )));
        }
        if !sandbox.owned {
            // A runtime's namespace ends with its container; nothing could be made in it.
            self.exec.check_netns(Path::new(&sandbox.netns)).map_err(|e| {
                Error::Conflict(format!(
                    "sandbox {}: its namespace {} is gone ({}); remove the sandbox",
                    sandbox.name,
                    sandbox.netns,
                    crate::executor::report(&e)
                ))
            })?;
        }
        let driver = self.network_driver(&network.driver)?;
        let existing: Vec<&Endpoint> = state.endpoints_of_sandbox(&sandbox.id).collect();
        if existing.iter().any(|e| e.network_id == network.id) {
            return Err(Error::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                sandbox.name, network.name
            )));
        }
        let exclusive = |n: &str| SINGLETON_DRIVERS.contains(&n) || n == "none";
        let others_exclusive =
            existing.iter().any(|e| state.networks().get(&e.network_id).is_some_and(|n| exclusive(&n.driver)));
        if !existing.is_empty() && (exclusive(&network.driver) || others_exclusive) {
            return Err(Error::Forbidden(format!(
                "sandbox {} cannot be connected to network {}: the host and none networks cannot be combined with others",
                sandbox.name, network.name
            )));
        }
        if !req.ports.is_empty() && network.internal {
            return Err(Error::InvalidArgument(format!(
                "network {} is internal: ports cannot be published",
                network.name
            )));
        }
        if let Some(mac) = &req.mac {
            check_mac(mac)?;
        }
        let link_local = req.link_local_ips.iter().map(|ip| link_local_address(*ip)).collect::<Result<Vec<_>>>()?;
        let mut net = network.clone();
        let ipv4 = allocate(&mut net.ipv4, req.ipv4, "IPv4", &network.name)?;
        let ipv6 = if net.enable_ipv6 { allocate(&mut net.ipv6, req.ipv6, "IPv6", &network.name)? } else { None };
        if req.ipv6.is_some() && !net.enable_ipv6 {
            return Err(Error::InvalidArgument(format!("network {} does not have IPv6 enabled", network.name)));
        }
        let (options, unused_options) =
            self.split_unused_options(&network.driver, &req.options, |c| &c.endpoint_options);
        let mut ports = req.ports.clone();
        let mut port_cursor = state.port_cursor;
        let families = (ipv4.is_some(), ipv6.is_some());
        settle_host_ports(state, &mut port_cursor, &mut ports, &|p, port| self.host_port_state(p, port, families))?;
        let mut endpoint = Endpoint {
            id: new_id(),
            network_id: network.id.clone(),
            sandbox_id: sandbox.id.clone(),
            ipv4,
            ipv6,
            static_ipv4: req.ipv4.is_some(),
            static_ipv6: req.ipv6.is_some(),
            mac: req.mac.clone(),
            aliases: req.aliases.clone(),
            ports,
            options,
            unused_options,
            gw_priority: req.gw_priority,
            link_local_ips: req.link_local_ips.clone(),
            ..Default::default()
        };
        let sandbox_spec = SandboxSpec {
            id: sandbox.id.clone(),
            name: sandbox.name.clone(),
            netns: sandbox.netns.clone(),
            interfaces: sandbox_interfaces(&sandbox, self.exec.as_ref(), &existing),
        };
        let mut request = EndpointRequest {
            network: spec(&network),
            network_state: network.state.clone(),
            endpoint: endpoint_spec(&endpoint),
            endpoint_state: wharf_sdk::DriverState::null(),
            sandbox: sandbox_spec,
            facts: self.endpoint_facts(),
        };
        let created = driver.create_endpoint(request.clone()).map_err(|e| Error::driver(&network.driver, e))?;
        if endpoint.mac.is_none() {
            endpoint.mac = created.response.mac.clone();
            request.endpoint.mac = endpoint.mac.clone();
        }
        request.endpoint_state = created.state;
        let joined = driver.join(request).map_err(|e| Error::driver(&network.driver, e))?;
        let mut plan = created.plan;
        plan.extend(joined.plan);
        if let Some(ifname) = joined.response.interface.as_deref().filter(|_| !link_local.is_empty()) {
            let netns = wharf_sdk::Netns::Path(sandbox.netns.clone());
            for address in &link_local {
                plan.push(wharf_sdk::Step::addr_add(netns.clone(), ifname, *address));
            }
        }
        endpoint.join = joined.response;
        endpoint.state = joined.state;
        endpoint.plan = plan;
        self.check_ports(state, &endpoint)?;
        let object = format!("endpoint of {} on network {}", sandbox.name, network.name);
        let plan = endpoint.plan.clone();
        // The resolver's sockets are opened while the plan runs, and waited for before the
        // connect is recorded: a failure undoes the plan.
        let pending = self.dns_sockets_begin(&network, &sandbox);
        let mut sockets = None;
        let host = self.host_resolv();
        let resolv = self.resolv_conf_plan(&host, &sandbox, self.serves_after_connect(&network, &sandbox));
        let author = Author::Endpoint(&network.driver, &sandbox.netns);
        self.apply_recorded_with(author, &object, &plan, &resolv, |t, found| {
            sockets = Engine::dns_sockets_end(&sandbox, pending)?;
            endpoint.found = found.to_vec();
            t.put(Table::Networks, &net.id, &net)?;
            t.put(Table::Endpoints, &endpoint.id, &endpoint)
        })?;
        self.network_event("connect", &net, Some(&sandbox.id));
        let shared = !existing.is_empty();
        state.put_network(Arc::new(net));
        state.put_endpoint(Arc::new(endpoint.clone()));
        state.port_cursor = port_cursor;
        self.dns_connected(&host, &network, &endpoint, &sandbox, sockets);
        if shared {
            self.settle_gateway(state, &sandbox);
        }
        Ok(endpoint)
    }

    /// Whether host port `port` of binding `p` is free on the host, for each address family the
    /// endpoint has (`families`: IPv4, IPv6) when the binding names no host address.
    fn host_port_state(&self, p: &PortBinding, port: u16, families: (bool, bool)) -> Result<PortState> {
        let wildcards = [(families.0, IpAddr::from([0u8; 4])), (families.1, IpAddr::from([0u16; 8]))];
        let ips: Vec<IpAddr> = match p.host_ip {
            Some(ip) => vec![ip],
            None => wildcards.iter().filter(|(has, _)| *has).map(|(_, ip)| *ip).collect(),
        };
        for ip in ips {
            let hp = HostPort { protocol: p.protocol, ip, port };
            let state = self.exec.host_port_state(&hp).map_err(|e| Error::Internal(crate::executor::report(&e)))?;
            if state != PortState::Free {
                return Ok(state);
            }
        }
        Ok(PortState::Free)
    }

    fn check_ports(&self, state: &State, endpoint: &Endpoint) -> Result<()> {
        for new in &endpoint.join.ports {
            for other in state.bindings_on(&new.host_port) {
                if clash(new, new.host_port, other) {
                    return Err(Error::Conflict(format!(
                        "host port {}/{} is already published by another endpoint",
                        new.host_port,
                        new.protocol.as_str()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Disconnect a sandbox from a network. With `force`, a driver that fails to give the
    /// endpoint up (an error, a panic, a plugin no longer loaded) does not keep it: core
    /// takes away what the endpoint's own plans made, as its journal recorded them.
    pub fn disconnect(&self, network: &str, sandbox: &str, force: bool) -> Result<()> {
        let mut state = self.lock();
        let network = state.network(network)?.clone();
        let sandbox = state.sandbox(sandbox)?.clone();
        let endpoint =
            state.endpoints_of_sandbox(&sandbox.id).find(|e| e.network_id == network.id).cloned().ok_or_else(|| {
                Error::NotFound(format!("sandbox {} is not connected to network {}", sandbox.name, network.name))
            })?;
        self.disconnect_locked(&mut state, &endpoint, force)
    }

    pub(in crate::engine) fn disconnect_locked(
        &self,
        state: &mut State,
        endpoint: &Endpoint,
        force: bool,
    ) -> Result<()> {
        let network = state
            .networks()
            .get(&endpoint.network_id)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("endpoint {} has no network", endpoint.id)))?;
        let sandbox = state.sandboxes().get(&endpoint.sandbox_id).map(|s| Sandbox::clone(s)).unwrap_or_default();
        self.withdraw_endpoint(&network, endpoint)?;
        let request = EndpointRequest {
            network: spec(&network),
            network_state: network.state.clone(),
            endpoint: endpoint_spec(endpoint),
            endpoint_state: endpoint.state.clone(),
            sandbox: SandboxSpec {
                id: sandbox.id.clone(),
                name: sandbox.name.clone(),
                netns: sandbox.netns.clone(),
                interfaces: Vec::new(),
            },
            facts: self.endpoint_facts(),
        };
        let plan = match self.leave_plan(&network.driver, request) {
            Ok(plan) => plan,
            Err(e) if force => {
                tracing::warn!(
                    endpoint = %endpoint.id, network = %network.name, sandbox = %sandbox.name,
                    "removing what the endpoint's plans made, as the driver could not: {}", e.message()
                );
                endpoint.plan.inverse()
            }
            Err(e) => return Err(e),
        };
        let plan = self.removal_plan(state, plan, &endpoint.plan, &endpoint.found, &endpoint.id);
        let plan = self.without_moot_steps(plan, &sandbox.netns);
        let mut net = Network::clone(&network);
        for (ip, pools) in [(endpoint.ipv4, &mut net.ipv4), (endpoint.ipv6, &mut net.ipv6)] {
            if let Some(ip) = ip {
                pools.iter_mut().filter(|p| p.contains(&ip.addr())).for_each(|p| p.release(ip.addr()));
            }
        }
        let object = format!("endpoint of {} on network {}", sandbox.name, network.name);
        // A removal: after a crash the endpoint is gone from the store and recovery finishes
        // taking its links down, whichever end was retired last.
        let resolv = self.resolv_conf_plan(
            &self.host_resolv(),
            &sandbox,
            self.serves_after_disconnect(state, endpoint, &sandbox),
        );
        self.apply_removal_with(
            Author::Endpoint(&network.driver, &sandbox.netns),
            &object,
            &plan,
            &resolv,
            |t| {
                t.put(Table::Networks, &net.id, &net)?;
                t.delete(Table::Endpoints, &endpoint.id)
            },
            |t| {
                t.put(Table::Networks, &network.id, &*network)?;
                t.put(Table::Endpoints, &endpoint.id, endpoint)
            },
        )?;
        self.network_event("disconnect", &net, Some(&sandbox.id));
        state.put_network(Arc::new(net));
        state.remove_endpoint(&endpoint.id);
        self.release_endpoint(&network, endpoint);
        if state.endpoints_of_sandbox(&sandbox.id).next().is_some() {
            self.settle_gateway(state, &sandbox);
        }
        self.dns_disconnected(state, &network, &sandbox);
        Ok(())
    }
}

impl Engine {
    /// The driver's plan to take an endpoint out of its sandbox and delete it: `leave`, then
    /// `delete_endpoint` with the state `leave` returned.
    fn leave_plan(&self, driver: &str, mut request: EndpointRequest) -> Result<Plan> {
        let d = self.network_driver(driver)?;
        let left = d.leave(request.clone()).map_err(|e| Error::driver(driver, e))?;
        request.endpoint_state = left.state;
        let deleted = d.delete_endpoint(request).map_err(|e| Error::driver(driver, e))?;
        let mut plan = left.plan;
        plan.extend(deleted.plan);
        Ok(plan)
    }

    /// `plan` without its steps in the sandbox namespace `netns` when that namespace is gone
    /// (deleted behind wharf's back, or its runtime's process died): what they would take
    /// away went with it, so they are moot, and the rest of the plan still runs.
    fn without_moot_steps(&self, plan: Plan, netns: &str) -> Plan {
        if netns.is_empty() || self.exec.check_netns(Path::new(netns)).is_ok() {
            return plan;
        }
        let gone = wharf_sdk::Netns::Path(netns.to_string());
        plan.steps
            .into_iter()
            .filter(|step| {
                let moot = step.op().namespaces().any(|n| *n == gone);
                if moot {
                    tracing::debug!(step = %step.op().describe(), "moot: the sandbox's namespace is gone");
                }
                !moot
            })
            .collect()
    }
}

fn allocate(pools: &mut [Pool], wanted: Option<IpAddr>, family: &str, network: &str) -> Result<Option<IpNet>> {
    if pools.is_empty() {
        return match wanted {
            Some(ip) => Err(Error::InvalidArgument(format!("network {network} has no {family} subnet for {ip}"))),
            None => Ok(None),
        };
    }
    if let Some(ip) = wanted {
        let pool = pools
            .iter_mut()
            .find(|p| p.contains(&ip))
            .ok_or_else(|| Error::InvalidArgument(format!("address {ip} is not in any subnet of network {network}")))?;
        return pool.allocate(Some(ip)).map(Some);
    }
    let mut last = None;
    for pool in pools.iter_mut() {
        match pool.allocate(None) {
            Ok(ip) => return Ok(Some(ip)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Forbidden(format!("network {network} has no free {family} address"))))
}

/// The interface names taken in a sandbox: those of its endpoints, and in a namespace a
/// runtime made, every link it holds (the runtime's own interfaces among them) when they
/// can be listed. A namespace wharf made holds only wharf's links and loopback, so it is
/// not asked, which keeps a connect from waking a worker in it.
fn sandbox_interfaces(sandbox: &Sandbox, exec: &dyn Executor, endpoints: &[&Endpoint]) -> Vec<String> {
    let mut names: Vec<String> = endpoints.iter().filter_map(|e| e.join.interface.clone()).collect();
    if sandbox.owned {
        return names;
    }
    match exec.link_names(Path::new(&sandbox.netns)) {
        Ok(links) => names.extend(links.into_iter().filter(|l| !names.contains(l)).collect::<Vec<_>>()),
        Err(e) => {
            tracing::warn!(sandbox = %sandbox.name, "cannot list the sandbox's links, so only wharf's are known: {}", crate::executor::report(&e))
        }
    }
    names
}

/// A link-local address with the prefix of its range (`169.254.0.0/16`, `fe80::/64`); any
/// other address is refused.
fn link_local_address(ip: IpAddr) -> Result<IpNet> {
    let prefix = match ip {
        IpAddr::V4(v4) if v4.is_link_local() => 16,
        IpAddr::V6(v6) if v6.is_unicast_link_local() => 64,
        _ => return Err(Error::InvalidArgument(format!("invalid LinkLocalIPs address {ip}: it is not link-local"))),
    };
    IpNet::new(ip, prefix).map_err(|e| Error::InvalidArgument(format!("invalid LinkLocalIPs address {ip}: {e}")))
}

/// Refuse a MAC an interface cannot have: anything but six colon-separated hex octets, the
/// zero address, and group (multicast, broadcast) addresses.
pub fn check_mac(mac: &str) -> Result<()> {
    let octets: Option<Vec<u8>> =
        mac.split(':').map(|p| (p.len() == 2).then(|| u8::from_str_radix(p, 16).ok()).flatten()).collect();
    let reason = match octets.as_deref() {
        Some(o) if o.len() == 6 && o.iter().all(|b| *b == 0) => "it is the zero address",
        Some([first, _, _, _, _, _]) if first & 1 == 1 => "it is a multicast or broadcast address",
        Some([_, _, _, _, _, _]) => return Ok(()),
        _ => "it is not six colon-separated hex octets",
    };
    Err(Error::InvalidArgument(format!("invalid MacAddress {mac:?}: {reason}")))
}
