//! wharf-linux: wharf's executor on Linux, the only crate that talks to the kernel.
//!
//! [`kernel::Kernel`] carries out plans through netlink, mounts and namespaces, and hands
//! firewall facts to a [`firewall::Firewall`] (nftables through libnftables, or none).
//! [`plugins`] checks plugin libraries and loads them. Every `unsafe` outside the SDK is here.

pub mod alloc;
pub mod firewall;
mod frames;
pub mod kernel;
pub mod plugins;
