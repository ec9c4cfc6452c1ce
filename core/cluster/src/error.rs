//! The cluster store's errors: each names the store or the object it concerns.

use std::net::IpAddr;

/// The result of a cluster store call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a cluster store call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be reached, or did not answer in time.
    #[error("cluster store {store} is unavailable: {reason}")]
    Unavailable {
        /// The store's address.
        store: String,
        /// What happened, in one line.
        reason: String,
    },
    /// A name, VNI or address is taken.
    #[error("{0}")]
    Conflict(String),
    /// The object does not exist (any more).
    #[error("{0}")]
    NotFound(String),
    /// A network cannot be removed: hosts still have endpoints on it.
    #[error("network {network} has active endpoints on hosts {}", hosts.join(", "))]
    InUse {
        /// The network's name.
        network: String,
        /// The names of the hosts with endpoints on it.
        hosts: Vec<String>,
    },
    /// Every address of a network's ranges is taken.
    #[error("network {network} has no free address left")]
    Exhausted {
        /// The network's name or id.
        network: String,
    },
    /// An address asked for is taken.
    #[error("address {address} is already in use on network {network}")]
    AddressInUse {
        /// The network's name or id.
        network: String,
        /// The address.
        address: IpAddr,
    },
    /// Bad input: a malformed store address, a VNI out of range.
    #[error("{0}")]
    Invalid(String),
    /// A value in the store could not be read.
    #[error("cluster store {store}: key {key} holds a bad value")]
    Corrupt {
        /// The store's address.
        store: String,
        /// The key.
        key: String,
        /// Why it could not be read.
        #[source]
        source: serde_json::Error,
    },
    /// This host has not joined the cluster.
    #[error("this host has not joined cluster store {0}")]
    NotJoined(String),
}
