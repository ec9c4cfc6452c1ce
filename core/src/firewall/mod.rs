//! The firewall: turns drivers' firewall facts into elements of wharf's own nftables sets.
//!
//! Only the executor calls a [`Firewall`]. Backends never touch a table wharf does not own.

pub mod nftables;

use crate::executor::ExecError;
use wharf_sdk::FirewallFact;

/// A firewall backend.
pub trait Firewall: Send + Sync {
    /// Ensure the fact is present.
    fn add(&self, fact: &FirewallFact) -> Result<(), ExecError>;
    /// Ensure the fact is absent.
    fn remove(&self, fact: &FirewallFact) -> Result<(), ExecError>;
    /// Re-create wharf's tables from scratch holding exactly `facts`.
    fn reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError>;
}

/// Backend `none`: for hosts that manage their own firewall. Facts are accepted and ignored.
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
