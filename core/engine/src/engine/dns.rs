//! The engine's side of the embedded resolver (`wharf_dns`): which sandboxes get it, their
//! entries in its name table, their `resolv.conf`, and every resolver back at start.
//!
//! A sandbox gets the resolver while it is on at least one network with DNS: one that is not
//! predefined and whose [`ENABLE_DNS`] option is not false, whatever its driver. Its
//! `resolv.conf` then names 127.0.0.11, where wharfd answers the names of the sandboxes it
//! shares a network with and forwards the rest to its upstream servers; on no such network
//! the file names the upstream servers themselves. The table changes inside connect and
//! disconnect, before they return; the `resolv.conf` rewrite is a step of their journaled
//! plan, after the driver's steps.

use super::{Author, Engine, State};
use crate::error::{Error, Result};
use crate::executor::PendingSockets;
use crate::model::{DnsConfig, Endpoint, Network, Sandbox};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use wharf_dns::{Entry, Origin, Resolver, Sockets, Upstreams, LISTEN};
use wharf_sdk::{Op, Plan, Step};

/// The network option that turns the resolver off for a network (Docker's name).
pub const ENABLE_DNS: &str = "com.docker.network.enable_dns";

/// Docker's fallback servers, for when the host names none a sandbox can use.
const FALLBACK: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4))];

/// Go's `strconv.ParseBool`, which Docker reads boolean options with.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Whether sandboxes on `n` resolve each other's names.
pub(super) fn has_dns(n: &Network) -> bool {
    !n.predefined && n.options.get(ENABLE_DNS).is_none_or(|v| parse_bool(v) != Some(false))
}

/// Refuse an [`ENABLE_DNS`] value that is not a boolean.
pub(super) fn check_options(options: &BTreeMap<String, String>) -> Result<()> {
    match options.get(ENABLE_DNS) {
        Some(v) if parse_bool(v).is_none() => {
            Err(Error::InvalidArgument(format!("invalid option {ENABLE_DNS}={v:?}: it is not a boolean")))
        }
        _ => Ok(()),
    }
}

/// Refuse resolver settings a `resolv.conf` cannot carry.
pub(super) fn check_config(sandbox: &str, dns: &DnsConfig) -> Result<()> {
    let bad = |what: &str, v: &str| {
        Error::InvalidArgument(format!("sandbox {sandbox}: invalid {what} {v:?}: it must be one word, not empty"))
    };
    let word = |v: &str| !v.is_empty() && v.len() <= 253 && !v.chars().any(|c| c.is_whitespace() || c == '#');
    if let Some(v) = dns.search.iter().find(|v| !word(v)) {
        return Err(bad("DNS search domain", v));
    }
    if let Some(v) = dns.options.iter().find(|v| !word(v)) {
        return Err(bad("DNS option", v));
    }
    Ok(())
}

/// What the host's `resolv.conf` says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct HostResolv {
    servers: Vec<IpAddr>,
    search: Vec<String>,
    options: Vec<String>,
}

impl HostResolv {
    pub(super) fn parse(text: &str) -> HostResolv {
        let mut host = HostResolv::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => host.servers.extend(words.next().and_then(|a| a.parse::<IpAddr>().ok())),
                Some("search") | Some("domain") => host.search = words.map(str::to_string).collect(),
                Some("options") => host.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        host
    }
}

/// A sandbox's `resolv.conf`: 127.0.0.11 when `resolver`, else its own servers or the host's
/// (loopback ones left out: a sandbox cannot reach them, with Docker's fallback when nothing
/// is left); its own search domains and options, or the host's. With the resolver, `ndots:0`
/// unless an `ndots` is given, as Docker does, so a bare name is asked as it is first.
pub(super) fn resolv_conf(host: &HostResolv, own: &DnsConfig, resolver: bool) -> String {
    let mut out = String::new();
    if resolver {
        out.push_str(&format!("nameserver {}\n", LISTEN.ip()));
    } else {
        let mut servers: Vec<IpAddr> = if own.servers.is_empty() {
            host.servers.iter().copied().filter(|a| !a.is_loopback()).collect()
        } else {
            own.servers.clone()
        };
        if servers.is_empty() {
            servers = FALLBACK.to_vec();
        }
        servers.iter().for_each(|s| out.push_str(&format!("nameserver {s}\n")));
    }
    let search = if own.search.is_empty() { &host.search } else { &own.search };
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut options = if own.options.is_empty() { host.options.clone() } else { own.options.clone() };
    if resolver && !options.iter().any(|o| o.starts_with("ndots:")) {
        options.push("ndots:0".into());
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Where a sandbox's resolver forwards to: its own servers, else the host's (loopback ones
/// included: the resolver reaches them from the daemon's namespace), else Docker's fallback.
fn upstream_servers(host: &HostResolv, own: &DnsConfig) -> Vec<SocketAddr> {
    let servers = [&own.servers, &host.servers, &FALLBACK.to_vec()].into_iter().find(|s| !s.is_empty()).cloned();
    servers.unwrap_or_default().into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
}

/// The table entry of `sandbox`'s endpoint `e`.
fn entry(e: &Endpoint, sandbox: &Sandbox) -> Entry {
    Entry {
        sandbox: sandbox.id.clone(),
        name: sandbox.name.clone(),
        aliases: e.aliases.clone(),
        ipv4: e.ipv4.and_then(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }),
        ipv6: e.ipv6.and_then(|a| match a.addr() {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        }),
        origin: Origin::Local,
    }
}

impl State {
    /// Whether sandbox `id` is on a network with DNS.
    fn wants_resolver(&self, id: &str) -> bool {
        self.endpoints_of_sandbox(id).any(|e| self.networks().get(&e.network_id).is_some_and(|n| has_dns(n)))
    }
}

impl Engine {
    /// The host's `resolv.conf`, read once per operation: one reading serves both the
    /// sandbox's own file and its resolver's upstream servers.
    pub(super) fn host_resolv(&self) -> HostResolv {
        HostResolv::parse(&self.exec.read_file(&self.settings.host_resolv_conf).unwrap_or_default())
    }

    /// The `resolv.conf` a new sandbox gets: no network yet, so the upstream servers.
    pub(super) fn first_resolv_conf(&self, dns: &DnsConfig) -> String {
        resolv_conf(&self.host_resolv(), dns, false)
    }

    /// Before `sandbox` is connected to `network`: the sockets its resolver will answer on,
    /// when the connect gives it a resolver it does not have yet, begun (the namespace thread
    /// opens them while the connect runs its plan) and finished by [`Engine::dns_sockets_end`]
    /// before the connect is recorded: a sandbox where they cannot be opened is refused,
    /// and the plan undone.
    pub(super) fn dns_sockets_begin(&self, network: &Network, sandbox: &Sandbox) -> Option<PendingSockets<'_>> {
        let resolver = self.dns.as_ref()?;
        if !has_dns(network) || resolver.serving(&sandbox.id) {
            return None;
        }
        Some(self.exec.dns_sockets_begin(Path::new(&sandbox.netns), LISTEN))
    }

    /// The sockets [`Engine::dns_sockets_begin`] began opening, once open.
    pub(super) fn dns_sockets_end(sandbox: &Sandbox, pending: Option<PendingSockets<'_>>) -> Result<Option<Sockets>> {
        pending.map(|p| p()).transpose().map_err(|e| {
            Error::Internal(format!("sandbox {}: the resolver cannot listen in its namespace: {e}", sandbox.name))
        })
    }

    /// After `sandbox` was connected to `network` through `endpoint`: its names on the
    /// network, and its resolver on `sockets` (when it had none), forwarding to the servers
    /// of `host` (the host's `resolv.conf`) unless the sandbox has its own.
    pub(super) fn dns_connected(
        &self,
        host: &HostResolv,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Sandbox,
        sockets: Option<Sockets>,
    ) {
        let Some(resolver) = &self.dns else { return };
        if !has_dns(network) {
            return;
        }
        resolver.table().insert(&network.id, entry(endpoint, sandbox));
        if let Some(sockets) = sockets {
            self.serve(resolver, host, sandbox, sockets);
        }
    }

    /// After `sandbox` left `network`: its names there are gone, and so is its resolver
    /// when no network with DNS is left to it.
    pub(super) fn dns_disconnected(&self, state: &State, network: &Network, sandbox: &Sandbox) {
        let Some(resolver) = &self.dns else { return };
        if !has_dns(network) {
            return;
        }
        resolver.table().remove(&network.id, &sandbox.id);
        if !state.wants_resolver(&sandbox.id) {
            resolver.stop(&sandbox.id);
        }
    }

    /// Whether `sandbox`'s resolver serves once it is connected to `network`.
    pub(super) fn serves_after_connect(&self, network: &Network, sandbox: &Sandbox) -> bool {
        self.dns.as_ref().is_some_and(|r| r.serving(&sandbox.id) || has_dns(network))
    }

    /// Whether `sandbox`'s resolver still serves once `endpoint` is gone.
    pub(super) fn serves_after_disconnect(&self, state: &State, endpoint: &Endpoint, sandbox: &Sandbox) -> bool {
        let others = state.endpoints_of_sandbox(&sandbox.id).filter(|e| e.id != endpoint.id);
        let mut others = others.filter(|e| state.networks().get(&e.network_id).is_some_and(|n| has_dns(n)));
        self.dns.as_ref().is_some_and(|r| r.serving(&sandbox.id)) && others.next().is_some()
    }

    /// Stop the resolver of a sandbox being removed.
    pub(super) fn dns_forget(&self, sandbox: &Sandbox) {
        if let Some(resolver) = &self.dns {
            resolver.stop(&sandbox.id);
        }
    }

    fn serve(&self, resolver: &Resolver, host: &HostResolv, sandbox: &Sandbox, sockets: Sockets) {
        let upstreams = Upstreams {
            servers: upstream_servers(host, &sandbox.dns),
            opener: self.exec.dns_opener(Path::new(&sandbox.netns)),
        };
        if let Err(e) = resolver.serve(&sandbox.id, sockets, upstreams) {
            tracing::warn!(sandbox = %sandbox.name, error = %e, "the resolver cannot serve the sandbox");
        }
    }

    /// At start: every sandbox's names in the table and its resolver serving, before the
    /// API does; and every sandbox's `resolv.conf` as it should be (a crash may have come
    /// between a connect and its rewrite).
    pub(super) fn dns_restore(&self) {
        let state = self.lock();
        let host = self.host_resolv();
        for sandbox in state.sandboxes().values() {
            if let Some(resolver) = &self.dns {
                for e in state.endpoints_of_sandbox(&sandbox.id) {
                    if state.networks().get(&e.network_id).is_some_and(|n| has_dns(n)) {
                        resolver.table().insert(&e.network_id, entry(e, sandbox));
                    }
                }
                if state.wants_resolver(&sandbox.id) && !resolver.serving(&sandbox.id) {
                    match self.exec.dns_sockets(Path::new(&sandbox.netns), LISTEN) {
                        Ok(sockets) => self.serve(resolver, &host, sandbox, sockets),
                        Err(e) => tracing::warn!(sandbox = %sandbox.name, error = %e, "no resolver for the sandbox"),
                    }
                }
            }
            self.write_resolv_conf(&host, sandbox);
        }
    }

    /// The plan that makes `sandbox`'s `resolv.conf` say what it should with its resolver
    /// serving (`resolver`) or not, `host` being the host's: empty when it says so already.
    /// Connect and disconnect run it in their own journaled plan.
    pub(super) fn resolv_conf_plan(&self, host: &HostResolv, sandbox: &Sandbox, resolver: bool) -> Plan {
        let mut plan = Plan::new();
        if sandbox.name.is_empty() {
            return plan;
        }
        let contents = resolv_conf(host, &sandbox.dns, resolver);
        let path = format!("{}/resolv.conf", self.etc_dir(&sandbox.name));
        let old = self.exec.read_file(Path::new(&path));
        if old.as_deref() == Some(contents.as_str()) {
            return plan;
        }
        let undo = match old {
            Some(contents) => Op::FileWrite { path: path.clone(), contents },
            None => Op::FileRemove { path: path.clone() },
        };
        plan.push(Step::new(Op::FileWrite { path, contents }, undo));
        plan
    }

    /// Make `sandbox`'s `resolv.conf` say what it should, by a journaled plan of its own. A
    /// failure is logged: the next start tries again.
    fn write_resolv_conf(&self, host: &HostResolv, sandbox: &Sandbox) {
        let resolver = self.dns.as_ref().is_some_and(|r| r.serving(&sandbox.id));
        let plan = self.resolv_conf_plan(host, sandbox, resolver);
        if plan.is_empty() {
            return;
        }
        if let Err(e) = self.apply(Author::Core, &format!("sandbox {}", sandbox.name), &plan, |_| Ok(())) {
            tracing::warn!(sandbox = %sandbox.name, error = %e, "rewriting the sandbox's resolv.conf");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(servers: &[&str], search: &[&str], options: &[&str]) -> DnsConfig {
        DnsConfig {
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
            search: search.iter().map(|s| s.to_string()).collect(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn without_the_resolver_loopback_servers_are_dropped_and_fallbacks_added() {
        let host = HostResolv::parse("nameserver 127.0.0.53\nsearch example.org\noptions edns0\n");
        let out = resolv_conf(&host, &DnsConfig::default(), false);
        assert_eq!(out, "nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch example.org\noptions edns0\n");
        let out = resolv_conf(&HostResolv::parse("nameserver 10.0.0.2\n# comment\n"), &DnsConfig::default(), false);
        assert_eq!(out, "nameserver 10.0.0.2\n");
    }

    #[test]
    fn with_the_resolver_the_file_names_it_and_asks_bare_names_first() {
        let host = HostResolv::parse("nameserver 10.0.0.2\nsearch example.org\n");
        assert_eq!(
            resolv_conf(&host, &DnsConfig::default(), true),
            "nameserver 127.0.0.11\nsearch example.org\noptions ndots:0\n"
        );
        let mine = own(&["192.0.2.1"], &["corp.test"], &["ndots:2", "timeout:1"]);
        assert_eq!(
            resolv_conf(&host, &mine, true),
            "nameserver 127.0.0.11\nsearch corp.test\noptions ndots:2 timeout:1\n"
        );
        assert_eq!(
            resolv_conf(&host, &mine, false),
            "nameserver 192.0.2.1\nsearch corp.test\noptions ndots:2 timeout:1\n"
        );
    }

    #[test]
    fn upstreams_are_the_sandboxes_own_else_the_hosts_loopback_included() {
        let host = HostResolv::parse("nameserver 127.0.0.53\n");
        assert_eq!(upstream_servers(&host, &DnsConfig::default()), ["127.0.0.53:53".parse().unwrap()]);
        let mine = own(&["192.0.2.1", "2001:db8::1"], &[], &[]);
        let want: Vec<SocketAddr> = vec!["192.0.2.1:53".parse().unwrap(), "[2001:db8::1]:53".parse().unwrap()];
        assert_eq!(upstream_servers(&host, &mine), want);
        assert_eq!(upstream_servers(&HostResolv::default(), &DnsConfig::default()).len(), 2);
    }

    #[test]
    fn bad_settings_and_options_are_refused() {
        assert!(check_config("s", &own(&[], &["a b"], &[])).is_err());
        assert!(check_config("s", &own(&[], &[], &[""])).is_err());
        assert!(check_config("s", &own(&[], &["corp.test"], &["ndots:1"])).is_ok());
        let opts = |v: &str| BTreeMap::from([(ENABLE_DNS.to_string(), v.to_string())]);
        assert!(check_options(&opts("maybe")).is_err());
        assert!(check_options(&opts("false")).is_ok());
    }

    #[test]
    fn predefined_and_opted_out_networks_have_no_dns() {
        let mut n = Network::default();
        assert!(has_dns(&n));
        n.options.insert(ENABLE_DNS.into(), "false".into());
        assert!(!has_dns(&n));
        n.options.insert(ENABLE_DNS.into(), "true".into());
        assert!(has_dns(&n));
        n.predefined = true;
        assert!(!has_dns(&n));
    }
}
