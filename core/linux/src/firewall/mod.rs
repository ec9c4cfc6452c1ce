//! The firewall: turns drivers' firewall facts into elements of wharf's own nftables sets, and
//! holds the host ports of published ports.
//!
//! Only the executor calls a [`Firewall`]. Backends never touch a table wharf does not own.

mod conntrack;
mod libnftables;
mod netfilter;
pub mod nftables;
pub mod ports;
pub mod ruleset;
mod watch;

pub use ports::HostPort;
pub use ruleset::{Policy, DEFAULT_PUBLISHED_MARK};
use wharf_engine::executor::ExecError;
pub use wharf_engine::executor::PortState;
use wharf_sdk::FirewallFact;

/// A firewall backend.
pub trait Firewall: Send + Sync {
    /// Ensure the fact is present (for a published port, its host port held too).
    fn add(&self, fact: &FirewallFact) -> Result<(), ExecError>;
    /// Ensure the fact is absent.
    fn remove(&self, fact: &FirewallFact) -> Result<(), ExecError>;
    /// Re-create wharf's tables from scratch holding exactly `facts`.
    fn reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError>;
    /// Whether `hp` can be published.
    fn port_state(&self, _hp: &HostPort) -> Result<PortState, ExecError> {
        Ok(PortState::Free)
    }
    /// For each fact, its elements described for people and whether the kernel has each.
    fn inspect(&self, facts: &[FirewallFact]) -> Result<Vec<Vec<(String, bool)>>, ExecError> {
        Ok(facts.iter().map(|_| Vec::new()).collect())
    }
    /// wharf's tables as the backend lists them; empty when it keeps none.
    fn ruleset(&self) -> Result<String, ExecError> {
        Ok(String::new())
    }
}

impl std::fmt::Debug for dyn Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Firewall")
    }
}

/// Backend `none`: for hosts that manage their own firewall. Facts are accepted and ignored,
/// and host ports are not held.
#[derive(Debug)]
pub struct NoFirewall;

impl Firewall for NoFirewall {
    fn add(&self, _: &FirewallFact) -> Result<(), ExecError> {
        Ok(())
    }
    fn remove(&self, _: &FirewallFact) -> Result<(), ExecError> {
        Ok(())
    }
    fn reload(&self, _: &[FirewallFact]) -> Result<(), ExecError> {
        Ok(())
    }
}
