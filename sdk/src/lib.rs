//! wharf-sdk: the contract between wharf and its network and volume drivers.
//!
//! A driver decides; core does. A driver implements [`NetworkDriver`] or [`VolumeDriver`]:
//! each method receives a request with the object, the driver's private state for it and
//! the host facts, and returns an [`Outcome`]: a response, a [`Plan`] of idempotent kernel
//! operations (each with its inverse), and the driver's new private state. Core validates
//! and journals the plan, carries it out, rolls it back on failure and stores the state.
//!
//! A plugin is a `cdylib` that calls [`export_plugin!`]; the guide follows, and [`abi`]
//! holds the C boundary.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod abi;
pub use ipnet;
pub mod log;
pub use tracing;
mod error;
mod facts;
mod helpers;
mod mount_options;
mod network;
pub mod plan;
mod state;
pub mod testing;
mod volume;
mod wire;

pub use error::{DriverError, DriverResult, ErrorKind};
pub use facts::{FactsScope, HostFacts, HostLink};
pub use helpers::{
    fnv1a, iface_prefix, join_addresses, mac_from_seed, mtu_option, next_interface_name, sandbox_ifname,
    state_from_value, state_to_value, valid_ifname, VethEndpoint, ENDPOINT_IFNAME, IFACE_PREFIX, LOOPBACK, MTU,
};
pub use mount_options::{
    is_mount_flag, join_mount_options, mask_mount_secrets, split_mount_options, IMAGE_FSTYPES, MOUNT_FLAGS,
    MOUNT_FSTYPES,
};
pub use network::{
    CreateNetwork, DeleteNetwork, EndpointInfo, EndpointRequest, EndpointSpec, JoinInfo, NetworkCapabilities,
    NetworkDriver, NetworkPeer, NetworkSpec, Outcome, PortBinding, SandboxSpec, Scope, Subnet,
};
pub use plan::{
    link_sysctl_key, sysctl_path, FirewallFact, GatewayMode, LinkChange, LinkKind, LinkSpec, MacvlanMode, MountSpec,
    Netns, Op, Plan, Protocol, RouteScope, RouteSpec, Step,
};
pub use state::DriverState;
pub use volume::{VolumeCapabilities, VolumeDriver, VolumeInfo, VolumeRequest, VolumeSpec};

#[cfg(test)]
mod tests {
    /// The guide's heading "A driver in N lines" counts the lines of the code under it.
    #[test]
    fn the_guide_counts_its_drivers_lines_right() {
        let guide = include_str!("../README.md");
        let (_, rest) = guide.split_once("## A driver in ").expect("the heading");
        let (count, rest) = rest.split_once(" lines").expect("a count");
        let (_, code) = rest.split_once("```rust\n").expect("a code block");
        let (code, _) = code.split_once("```").expect("its end");
        assert_eq!(code.lines().count(), count.parse::<usize>().unwrap());
    }
}
