//! Sockets made inside a network namespace. A socket belongs to the namespace of the thread
//! that made it, wherever it is used afterwards, so the thread that enters namespaces
//! ([`enter`]) makes the socket there and hands its descriptor back; the daemon's other
//! threads never change namespace. The embedded resolver gets its listening sockets at
//! 127.0.0.11:53 and its sockets towards a sandbox's upstream servers this way.

use super::sockets::enter;
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::Path;
use wharf_dns::{Sockets, Transport};

/// Run `make` inside the namespace named by `netns` (see [`enter`]).
pub fn inside<T: Send + 'static>(netns: &Path, make: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    enter(netns, make)?
}

/// A UDP socket bound to `at` and a TCP listener at `at`, in the calling thread's
/// namespace: where a sandbox's resolver answers, when called [`inside`] its namespace.
/// `None` when the namespace's loopback, where 127.0.0.11 lives, is down: nothing could
/// reach the sockets (or, on a loopback never up, even bind them).
pub fn listening_here(at: SocketAddr) -> io::Result<Option<Sockets>> {
    let lo = nix::ifaddrs::getifaddrs()?.find(|i| i.interface_name == "lo");
    if !lo.is_some_and(|lo| lo.flags.contains(InterfaceFlags::IFF_UP)) {
        return Ok(None);
    }
    let udp = UdpSocket::bind(at)?;
    let tcp = TcpListener::bind(at)?;
    Ok(Some(Sockets { udp, tcp }))
}

/// A non-blocking socket inside `netns` for reaching `server` over `transport`: a UDP
/// socket bound to an ephemeral port, or a TCP socket not yet connected.
pub fn towards(netns: &Path, server: SocketAddr, transport: Transport) -> io::Result<OwnedFd> {
    inside(netns, move || match transport {
        Transport::Udp => {
            let any: SocketAddr = match server {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let udp = UdpSocket::bind(any)?;
            udp.set_nonblocking(true)?;
            Ok(OwnedFd::from(udp))
        }
        Transport::Tcp => {
            let family = if server.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            socket(family, SockType::Stream, flags, None).map_err(io::Error::from)
        }
    })
}
