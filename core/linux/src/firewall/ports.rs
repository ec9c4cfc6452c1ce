//! Host port reservations: for every published port, wharf holds a socket bound to the host
//! address and port, as Docker's port reservation does. A port a host process already uses is
//! refused ("address already in use") instead of silently taking its traffic, and while wharf
//! publishes a port no host process can bind it.
//!
//! The sockets are bound but never listen or read: published traffic is DNATed before the
//! kernel looks for a local socket, so they never see a packet. They are opened on the
//! firewall's worker thread, so they live in the network namespace the firewall acts on.

use nix::errno::Errno;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn, SockaddrIn6,
};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
pub use wharf_engine::executor::HostPort;
use wharf_sdk::Protocol;

/// Bind a socket to `hp` and return it. `Ok(None)`: the kernel has no such protocol (SCTP
/// without its module), so nothing can hold the port and nothing can be in its way either.
pub fn bind_port(hp: &HostPort) -> Result<Option<OwnedFd>, Errno> {
    let family = if hp.ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let (ty, proto) = match hp.protocol {
        Protocol::Tcp => (SockType::Stream, SockProtocol::Tcp),
        Protocol::Udp => (SockType::Datagram, SockProtocol::Udp),
        Protocol::Sctp => (SockType::Stream, SockProtocol::Sctp),
    };
    let fd = match socket(family, ty, SockFlag::SOCK_CLOEXEC, proto) {
        Ok(fd) => fd,
        Err(Errno::EPROTONOSUPPORT | Errno::ESOCKTNOSUPPORT | Errno::EAFNOSUPPORT) => return Ok(None),
        Err(e) => return Err(e),
    };
    match hp.ip {
        IpAddr::V4(a) => bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(SocketAddrV4::new(a, hp.port)))?,
        IpAddr::V6(a) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn6::from(SocketAddrV6::new(a, hp.port, 0, 0)))?
        }
    }
    Ok(Some(fd))
}

/// The reservations held, each counted once per published port that needs it (two published
/// ports can share a host port while one of them replaces the other).
#[derive(Debug, Default)]
pub struct Reservations {
    held: HashMap<HostPort, (Option<OwnedFd>, usize)>,
}

impl Reservations {
    /// Take one more hold on `hp`, binding it if nothing holds it yet.
    pub fn take(&mut self, hp: HostPort) -> Result<(), Errno> {
        if let Some((_, n)) = self.held.get_mut(&hp) {
            *n += 1;
            return Ok(());
        }
        let fd = bind_port(&hp)?;
        self.held.insert(hp, (fd, 1));
        Ok(())
    }

    /// Drop one hold on `hp`; the socket is closed with the last.
    pub fn release(&mut self, hp: &HostPort) {
        if let Some((_, n)) = self.held.get_mut(hp) {
            *n -= 1;
            if *n == 0 {
                self.held.remove(hp);
            }
        }
    }

    /// Whether wharf holds `hp` itself.
    pub fn holds(&self, hp: &HostPort) -> bool {
        self.held.contains_key(hp)
    }

    /// Close every reservation.
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_cannot_be_bound_again_and_is_free_once_released() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let hp = HostPort::new(Protocol::Tcp, Some("127.0.0.1".parse().unwrap()), "10.0.0.2".parse().unwrap(), port);
        let mut r = Reservations::default();
        r.take(hp).unwrap();
        r.take(hp).unwrap();
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
        assert_eq!(bind_port(&hp).unwrap_err(), Errno::EADDRINUSE);
        r.release(&hp);
        assert!(r.holds(&hp), "still held once");
        r.release(&hp);
        assert!(!r.holds(&hp));
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        assert_eq!(hp.describe(), format!("127.0.0.1:{port}/tcp"));
        let any6 = HostPort::new(Protocol::Udp, None, "fd00::2".parse().unwrap(), 53);
        assert_eq!(any6.describe(), "[::]:53/udp");
    }
}
