//! Host ports as the executor and the engine speak of them: which host address and port a
//! published port takes, and whether it can be taken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wharf_sdk::Protocol;

/// What one reservation holds: a protocol, a host address (unspecified: every address of its
/// family) and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    pub ip: IpAddr,
    pub port: u16,
}

impl HostPort {
    /// The host port a published port binds: its host address, or every address of the
    /// endpoint address's family.
    pub fn new(protocol: Protocol, host_ip: Option<IpAddr>, endpoint: IpAddr, port: u16) -> HostPort {
        let ip = host_ip.unwrap_or(match endpoint {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        HostPort { protocol, ip, port }
    }

    /// `0.0.0.0:8080/tcp`, as people and Docker's messages write it.
    pub fn describe(&self) -> String {
        let ip = match self.ip {
            IpAddr::V6(a) => format!("[{a}]"),
            IpAddr::V4(a) => a.to_string(),
        };
        format!("{ip}:{}/{}", self.port, self.protocol.as_str())
    }
}

/// Whether a host port can be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Nothing on the host uses it.
    Free,
    /// A host process (or wharf itself) has it.
    InUse,
    /// Its host address is not an address of this host.
    NotLocal,
}
