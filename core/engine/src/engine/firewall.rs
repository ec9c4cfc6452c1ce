//! What wharf's firewall holds, network by network and endpoint by endpoint, set against
//! what the kernel has (`wharf firewall show`).

use super::reconcile::firewall_facts;
use super::Engine;
use crate::error::{Error, Result};
use serde::Serialize;
use std::iter::once;
use wharf_sdk::FirewallFact;

/// One firewall fact with its elements.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FactReport {
    /// The fact as the driver declared it.
    pub fact: FirewallFact,
    /// Each element, as `table @set { element }`, and whether the kernel has it.
    pub elements: Vec<ElementReport>,
}

/// One set or map element.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElementReport {
    pub element: String,
    pub in_kernel: bool,
}

/// An endpoint's facts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointReport {
    pub id: String,
    pub sandbox: String,
    pub facts: Vec<FactReport>,
}

/// A network's facts and its endpoints'.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkReport {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub facts: Vec<FactReport>,
    pub endpoints: Vec<EndpointReport>,
}

/// The whole firewall.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FirewallReport {
    pub networks: Vec<NetworkReport>,
    /// wharf's tables as the backend lists them.
    pub ruleset: String,
}

impl Engine {
    /// Every network's and endpoint's firewall facts, and whether the kernel has their elements.
    pub fn firewall_show(&self) -> Result<FirewallReport> {
        let state = self.lock();
        let internal =
            |e: crate::executor::ExecError| Error::Internal(format!("firewall: {}", crate::executor::report(&e)));
        let mut networks = Vec::new();
        for n in state.networks().values() {
            let endpoints: Vec<_> = state.endpoints_of_network(&n.id).collect();
            let groups: Vec<Vec<FirewallFact>> =
                once(&n.plan).chain(endpoints.iter().map(|e| &e.plan)).map(|p| firewall_facts(once(p))).collect();
            if groups.iter().all(Vec::is_empty) {
                continue;
            }
            let all: Vec<FirewallFact> = groups.iter().flatten().cloned().collect();
            let mut inspected = self.exec.firewall_inspect(&all).map_err(internal)?.into_iter();
            let mut reports = groups.into_iter().map(|facts| {
                facts
                    .into_iter()
                    .map(|fact| FactReport {
                        fact,
                        elements: inspected
                            .next()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(element, in_kernel)| ElementReport { element, in_kernel })
                            .collect(),
                    })
                    .collect::<Vec<_>>()
            });
            let facts = reports.next().unwrap_or_default();
            let endpoints = endpoints
                .iter()
                .zip(reports)
                .filter(|(_, facts)| !facts.is_empty())
                .map(|(e, facts)| EndpointReport {
                    id: e.id.clone(),
                    sandbox: state.sandboxes().get(&e.sandbox_id).map(|s| s.name.clone()).unwrap_or_default(),
                    facts,
                })
                .collect();
            networks.push(NetworkReport {
                id: n.id.clone(),
                name: n.name.clone(),
                driver: n.driver.clone(),
                facts,
                endpoints,
            });
        }
        let ruleset = self.exec.firewall_ruleset().map_err(internal)?;
        Ok(FirewallReport { networks, ruleset })
    }
}
