//! Serving: each sandbox's UDP socket and TCP listener (opened at 127.0.0.11:53 in its
//! namespace by the daemon and handed over here) served by one task on the daemon's runtime.
//! A sandbox costs one task and its sockets' registrations; datagrams are read in batches
//! into buffers each runtime thread keeps, answered into buffers kept there too, and sent
//! with one system call per batch, so the task holds no buffer between queries and a query
//! for a name of the table allocates nothing.

use crate::answer::{answer, answer_into, Reply, UDP_PLAIN};
use crate::forward::{Channels, Forwarder, Transport, Upstreams};
use crate::table::Table;
use hickory_proto::op::Message;
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// The largest query read over UDP; a bigger datagram is cut there and is malformed.
const UDP_QUERY: usize = 4096;

/// How many datagrams one wake-up reads (with one `recvmmsg`) before the task lets others run.
const BATCH: usize = 32;

/// How many forwarded queries one sandbox may have under way; more are dropped, and the
/// asker retries.
const FORWARDS: usize = 256;

/// How long a TCP connection may sit idle.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The sockets a sandbox's resolver answers on.
pub struct Sockets {
    /// Bound to 127.0.0.11:53 in the sandbox's namespace.
    pub udp: std::net::UdpSocket,
    /// Listening at 127.0.0.11:53 in the sandbox's namespace.
    pub tcp: std::net::TcpListener,
}

/// One served sandbox.
struct Served {
    id: Box<str>,
    table: Arc<Table>,
    forwarder: Forwarder,
    forwarding: AtomicUsize,
}

/// The resolver: the name table and the sandboxes it serves.
pub struct Resolver {
    table: Arc<Table>,
    rt: Handle,
    host: Arc<Channels>,
    served: Mutex<HashMap<String, AbortHandle>>,
}

impl Resolver {
    /// A resolver serving on runtime `rt`.
    pub fn new(rt: Handle) -> Resolver {
        Resolver { table: Arc::new(Table::new()), rt, host: Arc::default(), served: Mutex::default() }
    }

    /// The name table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Serve sandbox `sandbox` on `sockets`, forwarding to `upstreams`; replaces what served
    /// it before.
    pub fn serve(&self, sandbox: &str, sockets: Sockets, upstreams: Upstreams) -> io::Result<()> {
        let _rt = self.rt.enter();
        sockets.udp.set_nonblocking(true)?;
        sockets.tcp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(sockets.udp)?);
        let tcp = TcpListener::from_std(sockets.tcp)?;
        let served = Arc::new(Served {
            id: sandbox.into(),
            table: self.table.clone(),
            forwarder: Forwarder::new(upstreams, self.host.clone()),
            forwarding: AtomicUsize::new(0),
        });
        let task = self.rt.spawn(run(served, udp, tcp)).abort_handle();
        if let Some(old) = self.lock().insert(sandbox.to_string(), task) {
            old.abort();
        }
        Ok(())
    }

    /// Stop serving sandbox `sandbox`; its sockets close.
    pub fn stop(&self, sandbox: &str) {
        if let Some(task) = self.lock().remove(sandbox) {
            task.abort();
        }
    }

    /// Whether sandbox `sandbox` is served.
    pub fn serving(&self, sandbox: &str) -> bool {
        self.lock().contains_key(sandbox)
    }

    /// How many sandboxes are served.
    pub fn served(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn run(served: Arc<Served>, udp: Arc<UdpSocket>, tcp: TcpListener) {
    loop {
        tokio::select! {
            ready = udp.readable() => {
                if ready.is_err() {
                    return;
                }
                drain(&served, &udp);
            }
            conn = tcp.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(serve_tcp(served.clone(), stream));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a DNS connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// How many batches one wake-up reads at most before the task lets others run.
const ROUNDS: usize = 8;

/// Buffers and message headers for reading and answering a batch of datagrams with one
/// `recvmmsg` and one `sendmmsg`: one set per runtime thread, made at its first batch, so a
/// sandbox's task holds none, and reused for every batch, so a query costs no allocation.
struct Scratch {
    bufs: Box<[[u8; UDP_QUERY]; BATCH]>,
    /// Each received datagram's length and sender.
    got: Vec<(usize, Option<SockaddrStorage>)>,
    /// The answers of a batch, in the order their queries came, and where each goes.
    answers: Vec<Vec<u8>>,
    to: Vec<Option<SockaddrStorage>>,
    recv: MultiHeaders<SockaddrStorage>,
    send: MultiHeaders<SockaddrStorage>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Answer the datagrams waiting on `udp`: batch after batch until none is left (which
/// clears the socket's readiness, so the task waits for the next datagram without another
/// wake-up to find the socket empty) or [`ROUNDS`] batches were answered.
fn drain(served: &Arc<Served>, udp: &Arc<UdpSocket>) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let scratch = scratch.get_or_insert_with(|| Scratch {
            bufs: Box::new([[0u8; UDP_QUERY]; BATCH]),
            got: Vec::with_capacity(BATCH),
            answers: (0..BATCH).map(|_| Vec::with_capacity(UDP_PLAIN)).collect(),
            to: Vec::with_capacity(BATCH),
            recv: MultiHeaders::preallocate(BATCH, None),
            send: MultiHeaders::preallocate(BATCH, None),
        });
        for _ in 0..ROUNDS {
            if !batch(served, udp, scratch) {
                return;
            }
        }
    });
}

/// Read and answer one batch; whether the socket may hold more.
fn batch(served: &Arc<Served>, udp: &Arc<UdpSocket>, scratch: &mut Scratch) -> bool {
    let fd = udp.as_raw_fd();
    let Scratch { bufs, got, answers, to, recv, send } = scratch;
    got.clear();
    let received = udp.try_io(Interest::READABLE, || {
        let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let received = recvmmsg(fd, recv, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        got.extend(received.map(|m| (m.bytes, m.address)));
        Ok(())
    });
    match received {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
        Err(e) => {
            tracing::debug!(error = %e, "reading DNS queries");
            return false;
        }
    }
    to.clear();
    for (i, &(n, from)) in got.iter().enumerate() {
        let Some(from) = from else { continue };
        let packet = &bufs[i][..n];
        match answer_into(&served.table, &served.id, packet, true, &mut answers[to.len()]) {
            None => to.push(Some(from)),
            Some(Reply::Forward(query)) => forward(served, udp, packet, query, &from),
            Some(_) => {}
        }
    }
    if !to.is_empty() {
        // An answer the socket has no room for is dropped, as a datagram may be: the asker
        // asks again.
        let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| [IoSlice::new(&answers[i])]);
        let slices = slices[..to.len()].iter();
        let none: [ControlMessage<'_>; 0] = [];
        let _ = udp.try_io(Interest::WRITABLE, || {
            sendmmsg(fd, send, slices, &to[..], none, MsgFlags::MSG_DONTWAIT).map(|_| ()).map_err(io::Error::from)
        });
    }
    true
}

/// Forward `query` (`packet` as it came) from `from` upstream, on a task of its own; the
/// answer goes back on `udp`.
fn forward(served: &Arc<Served>, udp: &Arc<UdpSocket>, packet: &[u8], query: Box<Message>, from: &SockaddrStorage) {
    let Some(asker) = socket_addr(from) else { return };
    if served.forwarding.fetch_add(1, Ordering::Relaxed) >= FORWARDS {
        served.forwarding.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let (served, udp, packet) = (served.clone(), udp.clone(), packet.to_vec());
    tokio::spawn(async move {
        let bytes = served.forwarder.forward(&packet, &query, Transport::Udp).await;
        let _ = udp.send_to(&bytes, asker).await;
        served.forwarding.fetch_sub(1, Ordering::Relaxed);
    });
}

/// The socket address a datagram came from.
fn socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// Answer the queries of one TCP connection until it closes or idles.
async fn serve_tcp(served: Arc<Served>, mut stream: TcpStream) {
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else { return };
        let mut packet = vec![0u8; len.into()];
        let Ok(Ok(_)) = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut packet)).await else { return };
        let bytes = match answer(&served.table, &served.id, &packet, false) {
            Reply::Answer(bytes) => bytes,
            Reply::Drop => return,
            Reply::Forward(query) => served.forwarder.forward(&packet, &query, Transport::Tcp).await,
        };
        let Ok(len) = u16::try_from(bytes.len()) else { return };
        let mut out = Vec::with_capacity(bytes.len() + 2);
        out.extend(len.to_be_bytes());
        out.extend(bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Where the resolver listens in every sandbox.
pub const LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 11)), 53);
