//! wharf-engine: the engine behind `wharfd`. It decides and records; it never calls the
//! kernel itself.
//!
//! A request flows one way: API handler → [`engine`] → driver (returns a plan) →
//! [`executor`] (the only door to the kernel; the Linux implementation lives in the
//! `wharf-linux` crate) → [`store`]. Everything here runs without root against the
//! [`executor::Recording`] executor.

pub mod crash;
pub mod drivers;
pub mod engine;
pub mod error;
pub mod executor;
pub mod ipam;
pub mod metrics;
pub mod model;
pub mod registry;
pub mod store;
