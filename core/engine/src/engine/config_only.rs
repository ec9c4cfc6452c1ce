//! Configuration-only networks (`--config-only`) and the networks made from them
//! (`--config-from`), as in Docker: a configuration-only network holds IPAM settings and
//! options and nothing else (no driver call, no kernel object, no address reserved); a
//! network created from it takes them, with its own driver.

use super::network::{NetworkCreateRequest, PoolRequest};
use super::{new_id, now, Author, Engine, State};
use crate::error::{Error, Result};
use crate::model::{Network, Pool};
use crate::store::Table;
use ipnet::IpNet;
use std::sync::Arc;

/// The driver name a configuration-only network shows, as in Docker.
const CONFIG_ONLY_DRIVER: &str = "null";

/// `req` with the settings of the configuration-only network it names in `config_from`, and
/// that network's name; `req` unchanged and an empty name when it names none. A request that
/// names one must give no settings of its own.
pub(super) fn with_config_from(state: &State, mut req: NetworkCreateRequest) -> Result<(NetworkCreateRequest, String)> {
    if req.config_from.is_empty() {
        return Ok((req, String::new()));
    }
    if !req.pools.is_empty() || !req.options.is_empty() || !req.ipam_options.is_empty() || req.enable_ipv6 {
        return Err(Error::InvalidArgument(format!(
            "network {}: subnets, IPAM and driver options come from configuration network {}; give none",
            req.name, req.config_from
        )));
    }
    let config = state.network(&req.config_from)?;
    if !config.config_only {
        return Err(Error::InvalidArgument(format!(
            "network {}: {} is not a configuration-only network",
            req.name, config.name
        )));
    }
    req.pools = config
        .ipv4
        .iter()
        .chain(&config.ipv6)
        .map(|p| PoolRequest { subnet: p.subnet, ip_range: p.ip_range, gateway: p.gateway, aux: p.aux.clone() })
        .collect();
    req.options = config.options.iter().chain(&config.unused_options).map(|(k, v)| (k.clone(), v.clone())).collect();
    req.ipam_options = config.ipam_options.clone();
    req.enable_ipv4 = Some(config.enable_ipv4);
    req.enable_ipv6 = config.enable_ipv6;
    Ok((req, config.name.clone()))
}

/// Refuse to remove configuration network `network` while a network made from it exists.
pub(super) fn check_unused(state: &State, network: &Network) -> Result<()> {
    if !network.config_only {
        return Ok(());
    }
    match state.networks().values().find(|n| n.config_from == network.name) {
        Some(user) => {
            Err(Error::Forbidden(format!("configuration network {} is in use by network {}", network.name, user.name)))
        }
        None => Ok(()),
    }
}

impl Engine {
    /// Store a configuration-only network: its pools are checked for shape but neither
    /// reserved nor checked against other networks, which the networks made from it do.
    pub(super) fn create_config_only(&self, state: &mut State, req: NetworkCreateRequest) -> Result<Network> {
        if !req.config_from.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "network {}: a configuration-only network cannot be made from another",
                req.name
            )));
        }
        let mut network = Network {
            id: new_id(),
            name: req.name.clone(),
            driver: CONFIG_ONLY_DRIVER.into(),
            scope: "local".into(),
            created: now(),
            enable_ipv4: req.enable_ipv4.unwrap_or(true),
            enable_ipv6: req.enable_ipv6,
            options: req.options.clone(),
            labels: req.labels.clone(),
            ipam_options: req.ipam_options.clone(),
            config_only: true,
            ..Default::default()
        };
        for p in &req.pools {
            let subnet =
                p.subnet.ok_or_else(|| Error::InvalidArgument("an IPAM config entry needs a subnet".into()))?;
            let pool = Pool::new(subnet, p.ip_range, p.gateway, p.aux.clone(), false)?;
            match subnet {
                IpNet::V4(_) => network.ipv4.push(pool),
                IpNet::V6(_) => network.ipv6.push(pool),
            }
        }
        self.apply(Author::Core, &format!("network {}", network.name), &wharf_sdk::Plan::new(), |t| {
            t.put(Table::Networks, &network.id, &network)
        })?;
        tracing::info!(network = %network.name, id = %network.id, "configuration-only network created");
        state.put_network(Arc::new(network.clone()));
        Ok(network)
    }
}
