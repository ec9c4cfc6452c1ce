//! Forwarding: a query the table does not answer goes to the sandbox's upstream servers,
//! one after the other until one answers, over the transport the asker used. The query's
//! bytes go out as they came (EDNS and all) under a fresh random id; the answer comes back
//! as the server sent it (a truncated UDP answer keeps its TC bit, so the asker retries
//! over TCP) under the asker's id. When no server answers, the asker gets SERVFAIL.
//!
//! Where a server is reached from matters: a loopback server (the host's 127.0.0.53) only
//! exists in the daemon's namespace, so it is reached from there, as Docker does; any other
//! server is reached from the sandbox's own namespace, through sockets the daemon opens
//! there ([`Opener`]), so a sandbox with no way out (an internal network) gets none through
//! the resolver either.

use crate::answer::{servfail, UDP_PLAIN};
use hickory_proto::op::Message;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// How long one server has to answer before the next is asked.
const PER_SERVER: Duration = Duration::from_millis(1500);

/// How many idle UDP sockets a pool keeps for the next queries.
const IDLE_SOCKETS: usize = 4;

/// A transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Makes a socket (non-blocking, of `server`'s address family and the transport's type) in
/// a sandbox's network namespace, for reaching `server` from there.
pub type Opener = Arc<dyn Fn(SocketAddr, Transport) -> io::Result<OwnedFd> + Send + Sync>;

/// A sandbox's upstream servers.
#[derive(Clone)]
pub struct Upstreams {
    /// The servers, asked in this order.
    pub servers: Vec<SocketAddr>,
    /// Opens sockets in the sandbox's namespace, for servers that are not loopback.
    pub opener: Opener,
}

/// Where a server is reached from.
fn from_host(server: &SocketAddr) -> bool {
    server.ip().is_loopback()
}

/// Idle UDP sockets, by address family (true: IPv6), for the next forwarded queries.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(bool, UdpSocket)>>,
}

impl Pool {
    fn take(&self, v6: bool) -> Option<UdpSocket> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let at = idle.iter().position(|(f, _)| *f == v6)?;
        Some(idle.swap_remove(at).1)
    }

    fn give(&self, v6: bool, socket: UdpSocket) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_SOCKETS {
            idle.push((v6, socket));
        }
    }
}

/// One sandbox's forwarding.
pub(crate) struct Forwarder {
    upstreams: Upstreams,
    /// Sockets in the sandbox's namespace.
    own: Pool,
    /// Sockets in the daemon's namespace, shared by every sandbox.
    host: Arc<Pool>,
}

impl Forwarder {
    pub(crate) fn new(upstreams: Upstreams, host: Arc<Pool>) -> Forwarder {
        Forwarder { upstreams, own: Pool::default(), host }
    }

    /// The answer to `packet` (parsed: `query`) from the first server that gives one.
    pub(crate) async fn forward(&self, packet: &[u8], query: &Message, transport: Transport) -> Vec<u8> {
        let limit = query.extensions().as_ref().map_or(UDP_PLAIN, |e| usize::from(e.max_payload()).max(UDP_PLAIN));
        for server in &self.upstreams.servers {
            let asked = match transport {
                Transport::Udp => tokio::time::timeout(PER_SERVER, self.udp(*server, packet, limit)).await,
                Transport::Tcp => tokio::time::timeout(PER_SERVER, self.tcp(*server, packet)).await,
            };
            match asked {
                Ok(Ok(mut answer)) => {
                    answer[..2].copy_from_slice(&packet[..2]);
                    return answer;
                }
                Ok(Err(e)) => tracing::debug!(%server, error = %e, "upstream failed"),
                Err(_) => tracing::debug!(%server, "upstream timed out"),
            }
        }
        servfail(query)
    }

    fn pool(&self, server: &SocketAddr) -> &Pool {
        if from_host(server) {
            &self.host
        } else {
            &self.own
        }
    }

    async fn udp(&self, server: SocketAddr, packet: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        let v6 = server.is_ipv6();
        let socket = match self.pool(&server).take(v6) {
            Some(s) => s,
            None => self.udp_socket(server).await?,
        };
        let id: u16 = rand::random();
        let mut out = packet.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        socket.send_to(&out, server).await?;
        let mut buf = vec![0u8; limit];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await?;
            // Anything but the answer (a late answer to an earlier query on this socket, a
            // stranger's datagram) is passed over.
            let ours = from == server && n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0;
            if ours {
                buf.truncate(n);
                self.pool(&server).give(v6, socket);
                return Ok(buf);
            }
        }
    }

    async fn udp_socket(&self, server: SocketAddr) -> io::Result<UdpSocket> {
        if from_host(&server) {
            let any =
                if server.is_ipv6() { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            return UdpSocket::bind(SocketAddr::new(any, 0)).await;
        }
        let fd = self.open(server, Transport::Udp).await?;
        UdpSocket::from_std(std::net::UdpSocket::from(fd))
    }

    /// A socket opened by the opener, which may block (it enters a namespace), off the
    /// runtime's worker threads.
    async fn open(&self, server: SocketAddr, transport: Transport) -> io::Result<OwnedFd> {
        let opener = self.upstreams.opener.clone();
        tokio::task::spawn_blocking(move || opener(server, transport)).await.map_err(io::Error::other)?
    }

    async fn tcp(&self, server: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
        let mut stream = if from_host(&server) {
            TcpStream::connect(server).await?
        } else {
            let fd = self.open(server, Transport::Tcp).await?;
            TcpSocket::from_std_stream(std::net::TcpStream::from(fd)).connect(server).await?
        };
        let len = u16::try_from(packet.len()).map_err(|_| io::Error::other("query too long"))?;
        let mut out = Vec::with_capacity(packet.len() + 2);
        out.extend(len.to_be_bytes());
        out.extend(packet);
        stream.write_all(&out).await?;
        let n = stream.read_u16().await?;
        let mut buf = vec![0u8; n.into()];
        stream.read_exact(&mut buf).await?;
        if n < 12 {
            return Err(io::Error::other("short answer"));
        }
        Ok(buf)
    }
}
