//! Start-up repair: bring the kernel back in line with the store, make the predefined
//! networks, and re-apply the firewall. Each thing fixed is logged.

use super::{network::PoolRequest, plan_links, policy, Author, Engine, NetworkCreateRequest, State};
use crate::error::Result;
use crate::model::Endpoint;
use crate::store::Table;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use wharf_sdk::{FirewallFact, HostFacts, LinkKind, Netns, Op, Plan};

/// Whether a host link has a name wharf gives its own devices: `br-`, `vx-` or `veth`
/// followed by hex digits, or `wgc` and an index (a retired veth the daemon did not get to delete).
fn wharf_style_name(name: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    ["br-", "vx-"].iter().any(|p| name.strip_prefix(p).is_some_and(|r| r.len() == 12 && hex(r)))
        || name.strip_prefix("veth").is_some_and(|r| r.len() == 11 && hex(r))
        || crate::kernel::retired_name(name)
}

/// The firewall facts a set of plans has put in place.
pub(super) fn firewall_facts<'a>(plans: impl Iterator<Item = &'a Plan>) -> Vec<FirewallFact> {
    plans
        .flat_map(|p| p.ops())
        .filter_map(|op| match op {
            Op::FirewallAdd { fact } => Some(fact.clone()),
            _ => None,
        })
        .collect()
}

/// Describe what re-applying `op` would fix, judged against the host's facts; `None`
/// when the host already has it (or when it cannot be told from the facts).
fn missing(op: &Op, facts: &HostFacts) -> Option<String> {
    match op {
        Op::LinkAdd { netns: Netns::Host, link } if facts.link(&link.name).is_none() => {
            Some(format!("re-created link {}", link.name))
        }
        Op::AddrAdd { netns: Netns::Host, link, address } => match facts.link(link) {
            Some(l) if !l.addresses.contains(address) => Some(format!("re-added address {address} to {link}")),
            _ => None,
        },
        _ => None,
    }
}

impl Engine {
    fn reapply(&self, what: &str, plan: &Plan, facts: &HostFacts) {
        for op in plan.ops() {
            let fix = missing(op, facts);
            match self.exec.apply(op) {
                Ok(()) => {
                    if let Some(fix) = fix {
                        tracing::info!("reconcile {what}: {fix}");
                    }
                }
                Err(e) => tracing::warn!("reconcile {what}: {} failed: {e}", op.describe()),
            }
        }
    }

    /// Make the kernel match the store.
    pub(super) fn reconcile(&self) -> Result<()> {
        let mut state = self.lock();
        let facts =
            self.exec.host_facts().map_err(|e| crate::error::Error::Internal(format!("reading host facts: {e}")))?;
        self.revive_sandboxes(&mut state)?;
        for n in state.networks.values() {
            self.reapply(&format!("network {}", n.name), &n.plan, &facts);
        }
        for e in state.endpoints.values() {
            let sandbox = state.sandboxes.get(&e.sandbox_id).map(|s| s.name.as_str()).unwrap_or("?");
            self.reapply(&format!("endpoint of {sandbox}"), &e.plan, &facts);
        }
        let known: BTreeSet<&str> = state
            .networks
            .values()
            .map(|n| &n.plan)
            .chain(state.endpoints.values().map(|e| &e.plan))
            .flat_map(plan_links)
            .map(|(_, name)| name)
            .collect();
        for link in &facts.links {
            if wharf_style_name(&link.name) && !known.contains(link.name.as_str()) {
                let op = Op::LinkDel { netns: Netns::Host, name: link.name.clone() };
                match self.exec.apply(&op) {
                    Ok(()) => tracing::info!("reconcile: removed link {} that no network or endpoint owns", link.name),
                    Err(e) => tracing::warn!("reconcile: could not remove stray link {}: {e}", link.name),
                }
            }
        }
        self.remount_volumes(&state);
        self.firewall_reload_locked(&state)?;
        Ok(())
    }

    /// Volumes that hold mount references keep them across a restart: their mount plan is
    /// re-applied (a no-op when the mount survived, a fresh mount after a reboot).
    fn remount_volumes(&self, state: &State) {
        let mounted: Vec<_> = state.volumes.values().filter(|v| !v.mounts.is_empty()).cloned().collect();
        for v in mounted {
            let Some(driver) = self.registry.volume(&v.driver) else {
                tracing::warn!("reconcile: volume {} uses driver {} which is not loaded", v.name, v.driver);
                continue;
            };
            let request = self.volume_request(&v, "");
            let checked =
                driver.mount(request).map_err(|e| crate::error::Error::driver(&v.driver, e)).and_then(|out| {
                    policy::check(&out.plan, &self.settings, Author::Driver(&v.driver), &format!("volume {}", v.name))
                        .map(|()| out)
                });
            match checked {
                Ok(out) => {
                    self.reapply(&format!("volume {}", v.name), &out.plan, &HostFacts::default());
                    tracing::info!("reconcile: volume {} is mounted for {} user(s)", v.name, v.mounts.len());
                }
                Err(e) => tracing::warn!("reconcile: volume {}: {e}", v.name),
            }
        }
    }

    /// Owned sandboxes whose namespace is gone (after a reboot) get a new one; endpoints of
    /// a runtime's sandbox whose namespace is gone are dropped with their host-side state.
    fn revive_sandboxes(&self, state: &mut State) -> Result<()> {
        let sandboxes: Vec<_> = state.sandboxes.values().cloned().collect();
        for sb in sandboxes {
            if self.exec.check_netns(Path::new(&sb.netns)).is_ok() {
                // Links are retired inside a sandbox only for its macvlan endpoints; a crash
                // before their deletion leaves them there.
                let ns = Netns::Path(sb.netns.clone());
                let macvlan = |e: &Endpoint| {
                    e.plan.ops().any(|op| matches!(op, Op::LinkAdd { link, .. } if matches!(&link.kind, LinkKind::Macvlan { target_netns: Some(t), .. } if *t == ns)))
                };
                if state.endpoints_of_sandbox(&sb.id).any(macvlan) {
                    match self.exec.sweep_retired(Path::new(&sb.netns)) {
                        Ok(swept) => swept.iter().for_each(|l| {
                            tracing::info!("reconcile: removed retired link {l} from sandbox {}", sb.name)
                        }),
                        Err(e) => tracing::warn!("reconcile: sandbox {}: {e}", sb.name),
                    }
                }
                continue;
            }
            if sb.owned {
                let dir = Path::new(&sb.netns).parent().unwrap_or(&self.settings.netns_dir).to_path_buf();
                match self.exec.create_netns(&dir, &sb.name) {
                    Ok(_) => tracing::info!("reconcile: re-created namespace of sandbox {}", sb.name),
                    Err(e) => tracing::warn!("reconcile: cannot re-create namespace of sandbox {}: {e}", sb.name),
                }
                continue;
            }
            let stale: Vec<Endpoint> = state.endpoints_of_sandbox(&sb.id).cloned().collect();
            for e in stale {
                let host_side: Plan = e
                    .plan
                    .inverse()
                    .steps
                    .into_iter()
                    .filter(|s| s.op.netns() != Some(&Netns::Path(sb.netns.clone())))
                    .collect();
                for op in host_side.ops() {
                    if let Err(err) = self.exec.apply(op) {
                        tracing::warn!("reconcile: {} failed: {err}", op.describe());
                    }
                }
                if let Some(net) = state.networks.get_mut(&e.network_id) {
                    for (ip, pools) in [(e.ipv4, &mut net.ipv4), (e.ipv6, &mut net.ipv6)] {
                        if let Some(ip) = ip {
                            pools.iter_mut().for_each(|p| p.release(ip.addr()));
                        }
                    }
                    let net = net.clone();
                    self.store.write(|t| {
                        t.put(Table::Networks, &net.id, &net)?;
                        t.delete(Table::Endpoints, &e.id)
                    })?;
                }
                state.endpoints.remove(&e.id);
                tracing::info!(
                    "reconcile: dropped endpoint of sandbox {} whose namespace {} is gone",
                    sb.name,
                    sb.netns
                );
            }
        }
        Ok(())
    }

    fn firewall_reload_locked(&self, state: &State) -> Result<()> {
        let plans = state.networks.values().map(|n| &n.plan).chain(state.endpoints.values().map(|e| &e.plan));
        let facts = firewall_facts(plans);
        self.exec.firewall_reload(&facts).map_err(|e| crate::error::Error::Internal(format!("firewall reload: {e}")))
    }

    /// Re-create wharf's firewall tables from the store.
    pub fn firewall_reload(&self) -> Result<usize> {
        let state = self.lock();
        self.firewall_reload_locked(&state)?;
        let plans = state.networks.values().map(|n| &n.plan).chain(state.endpoints.values().map(|e| &e.plan));
        Ok(firewall_facts(plans).len())
    }

    /// Make the predefined networks `none`, `host` and, when the bridge driver is loaded and
    /// enabled, `bridge`.
    pub(super) fn ensure_predefined(&self) -> Result<()> {
        let mut state = self.lock();
        let mut wanted = vec![
            NetworkCreateRequest {
                name: "none".into(),
                driver: "null".into(),
                enable_ipv4: Some(false),
                ..Default::default()
            },
            NetworkCreateRequest {
                name: "host".into(),
                driver: "host".into(),
                enable_ipv4: Some(false),
                ..Default::default()
            },
        ];
        if let Some(b) = &self.settings.default_bridge {
            if self.registry.network("bridge").is_some() {
                wanted.push(NetworkCreateRequest {
                    name: "bridge".into(),
                    driver: "bridge".into(),
                    pools: vec![PoolRequest { subnet: Some(b.subnet), ..Default::default() }],
                    options: BTreeMap::from([
                        ("com.docker.network.bridge.name".to_string(), b.device.clone()),
                        ("com.docker.network.bridge.default_bridge".to_string(), "true".to_string()),
                    ]),
                    ..Default::default()
                });
            }
        }
        for req in wanted {
            if state.networks.values().any(|n| n.name == req.name) {
                continue;
            }
            let name = req.name.clone();
            if let Err(e) = self.create_network_locked(&mut state, req, true) {
                tracing::warn!("cannot create the predefined network {name}: {e}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wharf_style_names_count_as_ours() {
        assert!(wharf_style_name("br-0123456789ab"));
        assert!(wharf_style_name("veth0123456789a"));
        assert!(wharf_style_name("vx-0123456789ab"));
        assert!(!wharf_style_name("vx-lan"));
        assert!(!wharf_style_name("br-lan"));
        assert!(!wharf_style_name("eth0"));
        assert!(!wharf_style_name("vethfoo"));
    }

    #[test]
    fn missing_detects_absent_links_and_addresses() {
        let facts = HostFacts::default();
        let op =
            Op::LinkAdd { netns: Netns::Host, link: wharf_sdk::LinkSpec::new("br-x", wharf_sdk::LinkKind::Bridge) };
        assert_eq!(missing(&op, &facts).as_deref(), Some("re-created link br-x"));
    }
}
