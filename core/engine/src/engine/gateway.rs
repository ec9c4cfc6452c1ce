//! A sandbox's default gateway. Of the sandbox's endpoints whose network offers a default
//! route, the one with the highest gateway priority gives each address family's default
//! route; between equal priorities, the network whose name sorts first (Docker's rule).
//! Drivers each add their own default route at join, and the kernel keeps whichever came
//! first; core settles the choice after every connect and disconnect of a sandbox on
//! several networks, and at start.

use super::{policy, Author, Engine, State};
use crate::model::{Endpoint, Network, Sandbox};
use wharf_sdk::{Netns, Op, Plan, RouteSpec, Step};

/// The steps that leave `sandbox` with the default routes its endpoints call for: the chosen
/// endpoint's route present, every other endpoint's default route of that family absent.
pub(super) fn gateway_plan(sandbox: &Sandbox, endpoints: &[(&Endpoint, &Network)]) -> Plan {
    let netns = Netns::Path(sandbox.netns.clone());
    let mut plan = Plan::new();
    for v6 in [false, true] {
        let defaults: Vec<(&Endpoint, &Network, &RouteSpec)> = endpoints
            .iter()
            .flat_map(|(e, n)| e.join.routes.iter().map(move |r| (*e, *n, r)))
            .filter(|(_, _, r)| r.destination.prefix_len() == 0 && r.destination.addr().is_ipv6() == v6)
            .collect();
        let best =
            defaults.iter().max_by(|a, b| a.0.gw_priority.cmp(&b.0.gw_priority).then_with(|| b.1.name.cmp(&a.1.name)));
        let Some((_, _, chosen)) = best else { continue };
        for (_, _, route) in defaults.iter().filter(|(_, _, r)| r != chosen) {
            plan.push(Step::new(Op::route_del(netns.clone(), (*route).clone()), Op::Noop));
        }
        plan.push(Step::new(Op::route_add(netns.clone(), (*chosen).clone()), Op::Noop));
    }
    plan
}

impl Engine {
    /// Make `sandbox`'s default routes the ones its endpoints call for (see [`gateway_plan`]).
    /// The endpoints are committed already, so a failure is logged, not returned: the next
    /// connect, disconnect or start settles it again.
    pub(super) fn settle_gateway(&self, state: &State, sandbox: &Sandbox) {
        let endpoints: Vec<(&Endpoint, &Network)> = state
            .endpoints_of_sandbox(&sandbox.id)
            .filter_map(|e| state.networks().get(&e.network_id).map(|n| (e, &**n)))
            .collect();
        let plan = gateway_plan(sandbox, &endpoints);
        let object = format!("default route of sandbox {}", sandbox.name);
        let settled = policy::check(&plan, &self.settings, &*self.exec, Author::Gateway(&sandbox.netns), &object)
            .and_then(|()| {
                plan.ops().try_for_each(|op| {
                    self.exec
                        .apply(op)
                        .map(drop)
                        .map_err(|e| crate::error::Error::Internal(format!("{object}: {}: {e}", op.describe())))
                })
            });
        if let Err(e) = settled {
            tracing::warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::JoinInfo;

    fn endpoint(gw: &str, dev: &str, priority: i64) -> Endpoint {
        let gw: std::net::IpAddr = gw.parse().unwrap();
        let route = RouteSpec {
            destination: if gw.is_ipv6() { "::/0" } else { "0.0.0.0/0" }.parse().unwrap(),
            gateway: Some(gw),
            device: Some(dev.into()),
            ..Default::default()
        };
        Endpoint {
            gw_priority: priority,
            join: JoinInfo { routes: vec![route], ..Default::default() },
            ..Default::default()
        }
    }

    fn chosen(plan: &Plan) -> Vec<String> {
        plan.ops()
            .filter_map(|op| match op {
                Op::RouteAdd { route, .. } => route.device.clone(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_highest_priority_then_the_first_name_gives_the_default_route() {
        let sandbox = Sandbox { netns: "/run/netns/s".into(), ..Default::default() };
        let (a, b) =
            (Network { name: "a".into(), ..Default::default() }, Network { name: "b".into(), ..Default::default() });
        let (ea, eb) = (endpoint("10.0.0.1", "eth0", 0), endpoint("10.1.0.1", "eth1", 0));
        assert_eq!(chosen(&gateway_plan(&sandbox, &[(&eb, &b), (&ea, &a)])), ["eth0"]);
        let eb = endpoint("10.1.0.1", "eth1", 5);
        let plan = gateway_plan(&sandbox, &[(&ea, &a), (&eb, &b)]);
        assert_eq!(chosen(&plan), ["eth1"]);
        assert!(plan
            .ops()
            .any(|op| matches!(op, Op::RouteDel { route, .. } if route.device.as_deref() == Some("eth0"))));
        // Families are settled apart: an IPv6 route of its own stays.
        let e6 = endpoint("fd00::1", "eth2", -1);
        assert_eq!(chosen(&gateway_plan(&sandbox, &[(&ea, &a), (&eb, &b), (&e6, &a)])), ["eth1", "eth2"]);
        assert!(gateway_plan(&sandbox, &[]).is_empty());
    }
}
