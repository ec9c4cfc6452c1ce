//! Start-up repair: bring the kernel back in line with the store, make the predefined
//! networks, and re-apply the firewall. Each thing fixed is logged.
//!
//! A stray link is removed only when it carries this daemon's mark (see
//! [`Executor::sweep`]): never because its name looks like one wharf gives. Docker's
//! `br-<12 hex>` bridges, an operator's links and another wharfd's are left alone.
//!
//! [`Executor::sweep`]: crate::executor::Executor::sweep

use super::{network::PoolRequest, policy, Author, Engine, NetworkCreateRequest, State};
use crate::error::Result;
use crate::model::{Endpoint, Network};
use crate::store::Table;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use wharf_sdk::{FirewallFact, HostFacts, LinkKind, Netns, Op, Plan};

/// The names of the links a plan makes that live in namespace `ns`: links made there,
/// veth peers and macvlans sent there.
fn links_in<'a>(plan: &'a Plan, ns: &'a Netns) -> impl Iterator<Item = &'a str> + 'a {
    plan.ops().flat_map(move |op| {
        let (near, far) = match op {
            Op::LinkAdd { netns, link } => match &link.kind {
                LinkKind::Veth { peer, peer_netns, .. } => {
                    ((netns == ns).then_some(link.name.as_str()), (peer_netns == ns).then_some(peer.as_str()))
                }
                LinkKind::Macvlan { target_netns: Some(t), .. } => ((t == ns).then_some(link.name.as_str()), None),
                _ => ((netns == ns).then_some(link.name.as_str()), None),
            },
            _ => (None, None),
        };
        near.into_iter().chain(far)
    })
}

/// The firewall facts a set of plans has put in place.
pub(super) fn firewall_facts<'a>(plans: impl Iterator<Item = &'a Plan>) -> Vec<FirewallFact> {
    plans
        .flat_map(|p| p.ops())
        .filter_map(|op| match op {
            Op::FirewallAdd { fact } => Some((**fact).clone()),
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
                Ok(_) => {
                    if let Some(fix) = fix {
                        crate::metrics::global().reconcile_repaired();
                        tracing::info!("reconcile {what}: {fix}");
                    }
                }
                Err(e) => tracing::warn!("reconcile {what}: {} failed: {}", crate::executor::report(&e), op.describe()),
            }
        }
    }

    /// Make the kernel match the store. `touched`: sandbox namespaces an interrupted plan
    /// deleted links in (see [`Engine::recover_journal`]).
    pub(super) fn reconcile(&self, touched: &BTreeSet<String>) -> Result<()> {
        let mut state = self.lock();
        let facts = self.exec.host_facts(None).map_err(|e| {
            crate::error::Error::Internal(format!("reading host facts: {}", crate::executor::report(&e)))
        })?;
        self.revive_sandboxes(&mut state, touched)?;
        for n in state.networks().values() {
            self.reapply(&format!("network {}", n.name), &n.plan, &facts);
        }
        for e in state.endpoints().values() {
            let sandbox = state.sandboxes().get(&e.sandbox_id).map(|s| s.name.as_str()).unwrap_or("?");
            self.reapply(&format!("endpoint of {sandbox}"), &e.plan, &facts);
        }
        let known: BTreeSet<&str> = state
            .networks()
            .values()
            .map(|n| &n.plan)
            .chain(state.endpoints().values().map(|e| &e.plan))
            .flat_map(|p| links_in(p, &Netns::Host))
            .collect();
        match self.exec.sweep(&Netns::Host, &known) {
            Ok(swept) => swept.iter().for_each(|l| {
                crate::metrics::global().reconcile_repaired();
                tracing::info!("reconcile: removed link {l} of ours that no network or endpoint owns")
            }),
            Err(e) => tracing::warn!("reconcile: could not remove stray links: {}", crate::executor::report(&e)),
        }
        // Each endpoint's plan added its own default route, and the first one re-applied kept
        // it: settle which one a sandbox on several networks goes out through.
        for s in state.sandboxes().values().filter(|s| state.endpoints_of_sandbox(&s.id).nth(1).is_some()) {
            self.settle_gateway(&state, s);
        }
        self.remount_volumes(&state);
        self.firewall_reload_locked(&state)?;
        Ok(())
    }

    /// Volumes that hold mount references keep them across a restart: their mount plan is
    /// re-applied (a no-op when the mount survived, a fresh mount after a reboot).
    fn remount_volumes(&self, state: &State) {
        let mounted: Vec<_> = state.volumes().values().filter(|v| !v.mounts.is_empty()).cloned().collect();
        for v in mounted {
            let Some(driver) = self.registry.volume(&v.driver) else {
                tracing::warn!("reconcile: volume {} uses driver {} which is not loaded", v.name, v.driver);
                continue;
            };
            let request = self.volume_request(&v, "");
            let checked =
                driver.mount(request).map_err(|e| crate::error::Error::driver(&v.driver, e)).and_then(|out| {
                    policy::check(
                        &out.plan,
                        &self.settings,
                        &*self.exec,
                        Author::Driver(&v.driver),
                        &format!("volume {}", v.name),
                    )
                    .map(|()| out)
                });
            match checked {
                Ok(out) => {
                    self.reapply(&format!("volume {}", v.name), &out.plan, &HostFacts::default());
                    tracing::info!("reconcile: volume {} is mounted for {} user(s)", v.name, v.mounts.len());
                }
                Err(e) => tracing::warn!("reconcile: volume {}: {}", crate::executor::report(&e), v.name),
            }
        }
    }

    /// Owned sandboxes whose namespace is gone (after a reboot) get a new one; endpoints of
    /// a runtime's sandbox whose namespace is gone are dropped with their host-side state.
    fn revive_sandboxes(&self, state: &mut State, touched: &BTreeSet<String>) -> Result<()> {
        let sandboxes: Vec<_> = state.sandboxes().values().cloned().collect();
        for sb in sandboxes {
            if self.exec.check_netns(Path::new(&sb.netns)).is_ok() {
                // Links are retired inside a sandbox only for its macvlan endpoints; a crash
                // before their deletion leaves them there (the last one's retirement may have
                // been the interrupted plan, which left no endpoint behind).
                let ns = Netns::Path(sb.netns.clone());
                let macvlan = |e: &Endpoint| {
                    e.plan.ops().any(|op| matches!(op, Op::LinkAdd { link, .. } if matches!(&link.kind, LinkKind::Macvlan { target_netns: Some(t), .. } if *t == ns)))
                };
                if touched.contains(&sb.netns) || state.endpoints_of_sandbox(&sb.id).any(macvlan) {
                    let known = state.endpoints_of_sandbox(&sb.id).flat_map(|e| links_in(&e.plan, &ns)).collect();
                    match self.exec.sweep(&ns, &known) {
                        Ok(swept) => swept.iter().for_each(|l| {
                            tracing::info!("reconcile: removed retired link {l} from sandbox {}", sb.name)
                        }),
                        Err(e) => tracing::warn!("reconcile: sandbox {}: {}", crate::executor::report(&e), sb.name),
                    }
                }
                continue;
            }
            if sb.owned {
                let dir = Path::new(&sb.netns).parent().unwrap_or(&self.settings.netns_dir).to_path_buf();
                match self.exec.create_netns(&dir, &sb.name) {
                    Ok(_) => tracing::info!("reconcile: re-created namespace of sandbox {}", sb.name),
                    Err(e) => tracing::warn!(
                        "reconcile: cannot re-create namespace of sandbox {}: {}",
                        crate::executor::report(&e),
                        sb.name
                    ),
                }
                continue;
            }
            let stale: Vec<Endpoint> = state.endpoints_of_sandbox(&sb.id).cloned().collect();
            for e in stale {
                let host_side: Plan = self
                    .removal_plan(state, e.plan.inverse(), &e.plan, &e.found, &e.id)
                    .steps
                    .into_iter()
                    .filter(|s| s.op().netns() != Some(&Netns::Path(sb.netns.clone())))
                    .collect();
                for op in host_side.ops() {
                    if let Err(err) = self.exec.apply(op) {
                        tracing::warn!("reconcile: {} failed: {err}", op.describe());
                    }
                }
                if let Some(mut net) = state.networks().get(&e.network_id).map(|n| Network::clone(n)) {
                    for (ip, pools) in [(e.ipv4, &mut net.ipv4), (e.ipv6, &mut net.ipv6)] {
                        if let Some(ip) = ip {
                            pools.iter_mut().for_each(|p| p.release(ip.addr()));
                        }
                    }
                    self.store.write(|t| {
                        t.put(Table::Networks, &net.id, &net)?;
                        t.delete(Table::Endpoints, &e.id)
                    })?;
                    state.put_network(net);
                }
                state.remove_endpoint(&e.id);
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
        let plans = state.networks().values().map(|n| &n.plan).chain(state.endpoints().values().map(|e| &e.plan));
        let facts = firewall_facts(plans);
        self.exec
            .firewall_reload(&facts)
            .map_err(|e| crate::error::Error::Internal(format!("firewall reload: {}", crate::executor::report(&e))))
    }

    /// Re-create wharf's firewall tables from the store.
    pub fn firewall_reload(&self) -> Result<usize> {
        let state = self.lock();
        self.firewall_reload_locked(&state)?;
        let plans = state.networks().values().map(|n| &n.plan).chain(state.endpoints().values().map(|e| &e.plan));
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
            if state.network_named(&req.name) {
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
    fn links_in_names_the_links_a_plan_leaves_in_a_namespace() {
        use wharf_sdk::{LinkSpec, Step};
        let sb = Netns::Path("/run/netns/a".into());
        let mut plan = Plan::new();
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("br-x", LinkKind::Bridge)));
        let veth = LinkKind::Veth { peer: "eth0".into(), peer_netns: sb.clone(), peer_mac: None };
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("vethx", veth)));
        let mv = LinkKind::Macvlan {
            parent: "eth9".into(),
            mode: wharf_sdk::MacvlanMode::Bridge,
            target_netns: Some(sb.clone()),
        };
        plan.push(Step::link_add(Netns::Host, LinkSpec::new("eth1", mv)));
        assert_eq!(links_in(&plan, &Netns::Host).collect::<Vec<_>>(), ["br-x", "vethx"]);
        assert_eq!(links_in(&plan, &sb).collect::<Vec<_>>(), ["eth0", "eth1"]);
    }

    #[test]
    fn missing_detects_absent_links_and_addresses() {
        let facts = HostFacts::default();
        let op = Op::link_add(Netns::Host, wharf_sdk::LinkSpec::new("br-x", wharf_sdk::LinkKind::Bridge));
        assert_eq!(missing(&op, &facts).as_deref(), Some("re-created link br-x"));
    }
}
