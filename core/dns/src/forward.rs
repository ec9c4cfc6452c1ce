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

use crate::answer::servfail;
use hickory_proto::op::Message;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

/// How long one server has to answer before the next is asked.
const PER_SERVER: Duration = Duration::from_millis(1500);

/// The largest DNS message.
const MAX_MESSAGE: usize = 65535;

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

/// One UDP socket that every forwarded query from one place (a sandbox's namespace, or the
/// daemon's) to servers of one address family goes out on, under an id no other waiting
/// query has; one task hands each answer to the query waiting for it, and passes over
/// anything else (a late answer, a datagram from another address). A socket per query would
/// cost a trip into the sandbox's namespace each time.
struct Channel {
    shared: Arc<Shared>,
    reader: AbortHandle,
}

/// Id -> the server asked and where its answer goes.
type Waiters = HashMap<u16, (SocketAddr, oneshot::Sender<Vec<u8>>)>;

struct Shared {
    socket: UdpSocket,
    waiting: Mutex<Waiters>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Channel {
    fn new(socket: UdpSocket) -> Channel {
        let shared = Arc::new(Shared { socket, waiting: Mutex::default() });
        let reader = tokio::spawn(read_answers(shared.clone())).abort_handle();
        Channel { shared, reader }
    }

    /// Send `packet` to `server` under a fresh id and wait for the answer.
    async fn exchange(&self, server: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut waiting = self.shared.lock();
            if waiting.len() >= usize::from(u16::MAX) / 2 {
                return Err(io::Error::other("too many queries waiting"));
            }
            let mut id: u16 = rand::random();
            while waiting.contains_key(&id) {
                id = rand::random();
            }
            waiting.insert(id, (server, tx));
            id
        };
        // Whatever ends the wait (an answer, an error, a timeout that drops this future),
        // the id is free again.
        let _waiting = Waiting { shared: &self.shared, id };
        let mut out = packet.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        self.shared.socket.send_to(&out, server).await?;
        rx.await.map_err(|_| io::Error::other("the channel closed"))
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hand out the answers waiting on the socket. The buffer is on the stack of this
    /// synchronous call, so the reading task holds none between answers.
    fn drain(&self) {
        let mut buf = [0u8; MAX_MESSAGE];
        loop {
            let (n, from) = match self.socket.try_recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if n < 12 || buf[2] & 0x80 == 0 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let mut waiting = self.lock();
            if waiting.get(&id).is_some_and(|(server, _)| *server == from) {
                if let Some((_, tx)) = waiting.remove(&id) {
                    let _ = tx.send(buf[..n].to_vec());
                }
            }
        }
    }
}

async fn read_answers(shared: Arc<Shared>) {
    while shared.socket.readable().await.is_ok() {
        shared.drain();
    }
}

/// A waiting query's id, given back when the wait ends.
struct Waiting<'a> {
    shared: &'a Shared,
    id: u16,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared.lock().remove(&self.id);
    }
}

/// The channels of one place, by address family (IPv4 first), made at their first use.
#[derive(Default)]
pub(crate) struct Channels {
    families: Mutex<[Option<Arc<Channel>>; 2]>,
}

impl Channels {
    fn get(&self, v6: bool) -> Option<Arc<Channel>> {
        self.families.lock().unwrap_or_else(|p| p.into_inner())[usize::from(v6)].clone()
    }

    /// Keep `made` unless another query made one first; returns the one kept.
    fn keep(&self, v6: bool, made: Channel) -> Arc<Channel> {
        let mut families = self.families.lock().unwrap_or_else(|p| p.into_inner());
        families[usize::from(v6)].get_or_insert_with(|| Arc::new(made)).clone()
    }
}

/// One sandbox's forwarding.
pub(crate) struct Forwarder {
    /// Its upstream servers, shared with the sandboxes that have the same.
    servers: Arc<[SocketAddr]>,
    opener: Opener,
    /// Channels in the sandbox's namespace.
    own: Channels,
    /// Channels in the daemon's namespace, shared by every sandbox.
    host: Arc<Channels>,
}

impl Forwarder {
    pub(crate) fn new(servers: Arc<[SocketAddr]>, opener: Opener, host: Arc<Channels>) -> Forwarder {
        Forwarder { servers, opener, own: Channels::default(), host }
    }

    /// The answer to `packet` (parsed: `query`) from the first server that gives one.
    pub(crate) async fn forward(&self, packet: &[u8], query: &Message, transport: Transport) -> Vec<u8> {
        for server in self.servers.iter() {
            let asked = match transport {
                Transport::Udp => tokio::time::timeout(PER_SERVER, self.udp(*server, packet)).await,
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

    fn channels(&self, server: &SocketAddr) -> &Channels {
        if from_host(server) {
            &self.host
        } else {
            &self.own
        }
    }

    async fn udp(&self, server: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
        let v6 = server.is_ipv6();
        let channel = match self.channels(&server).get(v6) {
            Some(c) => c,
            None => {
                let made = Channel::new(self.udp_socket(server).await?);
                self.channels(&server).keep(v6, made)
            }
        };
        channel.exchange(server, packet).await
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
        let opener = self.opener.clone();
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
