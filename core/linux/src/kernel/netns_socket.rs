//! Sockets made inside a network namespace. A socket belongs to the namespace of the thread
//! that made it, wherever it is used afterwards, so the thread that enters namespaces
//! ([`enter`]) makes the socket there and hands its descriptor back; the daemon's other
//! threads never change namespace. The embedded resolver gets its listening sockets at
//! 127.0.0.11:53 and its sockets towards a sandbox's upstream servers this way.

use super::netlink;
use super::sockets::{enter, enter_later};
use nix::net::if_::InterfaceFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use wharf_dns::{Sockets, Transport};
use wharf_engine::executor::ExecError;
use wharf_sdk::{LinkChange, Netns};

/// Run `make` inside the namespace named by `netns` (see [`enter`]).
pub fn inside<T: Send + 'static>(netns: &Path, make: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    enter(netns, make)?
}

/// [`inside`] without waiting (see [`enter_later`]): the call returned waits.
pub fn inside_later<T: Send + 'static>(
    netns: &Path,
    make: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> impl FnOnce() -> io::Result<T> + Send {
    let later = enter_later(netns, make);
    move || later?.wait()?
}

/// A UDP socket bound to `at` and a TCP listener at `at`, in the calling thread's
/// namespace: where a sandbox's resolver answers, when called [`inside`] its namespace.
/// `None` when the namespace's loopback, where 127.0.0.11 lives, is down: nothing could
/// reach the sockets (or, on a loopback never up, even bind them).
pub fn listening_here(at: SocketAddr) -> io::Result<Option<Sockets>> {
    let family = if at.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let udp = socket(family, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    if !loopback_up(&udp)? {
        return Ok(None);
    }
    nix::sys::socket::bind(udp.as_raw_fd(), &nix::sys::socket::SockaddrStorage::from(at))?;
    let udp = UdpSocket::from(udp);
    let tcp = TcpListener::bind(at)?;
    Ok(Some(Sockets { udp, tcp }))
}

/// Whether the loopback of the namespace `socket` was made in is up: one `SIOCGIFFLAGS` on
/// it, where a netlink dump of every interface and address took a socket of its own and
/// several round trips, on the way of every connect that gives a sandbox its resolver.
fn loopback_up(socket: &OwnedFd) -> io::Result<bool> {
    // SAFETY: an all-zero `ifreq` is valid (an empty name, zero flags).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *to = *from as libc::c_char;
    }
    // SAFETY: `req` is an `ifreq` with a NUL-terminated name, which SIOCGIFFLAGS reads, and
    // whose flags it writes; the descriptor is open for the call's length.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(InterfaceFlags::from_bits_truncate(flags.into()).contains(InterfaceFlags::IFF_UP))
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

impl super::Kernel {
    /// A namespace whose loopback is down (as `ip netns add` leaves it) has no 127.0.0.11 to
    /// answer at: its `lo` is brought up, as Docker's containers have it, and the resolver's
    /// sockets opened then. `lo` stays up afterwards.
    pub(super) fn dns_sockets_with_loopback_up(
        &self,
        netns: &Path,
        at: std::net::SocketAddr,
    ) -> Result<wharf_dns::Sockets, ExecError> {
        let fail = |e| ExecError::os(format!("netns {}: {at}", netns.display()), e);
        let ns = Netns::Path(netns.display().to_string());
        self.on(&ns, |ctx| ctx.block_on(netlink::link_set(&ctx.handle, "lo", &LinkChange::Up)))??;
        inside(netns, move || listening_here(at))
            .map_err(fail)?
            .ok_or_else(|| ExecError::new(format!("netns {}: lo is still down after setting it up", netns.display())))
    }
}
