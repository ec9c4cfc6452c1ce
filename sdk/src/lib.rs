//! wharf-sdk: the contract between wharf and its network and volume drivers.
//!
//! A driver decides; core does. A driver implements [`NetworkDriver`] or [`VolumeDriver`]:
//! each method receives a request with the object, the driver's private state for it and
//! the host facts, and returns an [`Outcome`]: a response, a [`Plan`] of idempotent kernel
//! operations (each with its inverse), and the driver's new private state. Core validates
//! and journals the plan, carries it out, rolls it back on failure and stores the state.
//!
//! A plugin is a `cdylib` that calls [`export_plugin!`]; see `sdk/README.md` for the guide
//! and [`abi`] for the C boundary.

#![warn(missing_docs)]

pub mod abi;
mod error;
mod facts;
mod network;
pub mod plan;
mod volume;

pub use error::{DriverError, DriverResult, ErrorKind};
pub use facts::{HostFacts, HostLink};
pub use network::{
    CreateNetwork, DeleteNetwork, EndpointInfo, EndpointRequest, EndpointSpec, JoinInfo, NetworkCapabilities,
    NetworkDriver, NetworkPeer, NetworkSpec, Outcome, PortBinding, SandboxSpec, Scope, Subnet,
};
pub use plan::{
    FirewallFact, GatewayMode, LinkChange, LinkKind, LinkSpec, MacvlanMode, Netns, Op, Plan, Protocol, RouteSpec, Step,
};
pub use volume::{VolumeCapabilities, VolumeDriver, VolumeInfo, VolumeRequest, VolumeSpec};

/// Deterministic locally-administered MAC address derived from `seed` (an endpoint id),
/// the way Docker derives one from an address: stable across restarts, unicast.
pub fn mac_from_seed(seed: &str) -> String {
    // FNV-1a over the seed: small, stable across builds, good enough spread for MACs.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// Pick the first interface name `prefixN` not in `taken`.
pub fn next_interface_name(prefix: &str, taken: &[String]) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| !taken.iter().any(|t| t == n))
        .expect("an unbounded range always yields a free name")
}
