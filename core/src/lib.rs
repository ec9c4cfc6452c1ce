//! wharf-core: the engine behind `wharfd` and `wharf`.
//!
//! A request flows one way: API handler → [`engine`] → driver (returns a plan) →
//! [`executor`] (kernel) → [`store`].

pub mod api;
pub mod client;
pub mod config;
pub mod crash;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod executor;
pub mod firewall;
pub mod ipam;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod paths;
pub mod registry;
pub mod store;
