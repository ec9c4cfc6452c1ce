//! Serving: each sandbox's UDP socket and TCP listener (opened at 127.0.0.11:53 in its
//! namespace by the daemon and handed over here) served on the daemon's runtime: the UDP
//! socket by a small task of the sandbox's own, the listener by the task that accepts on
//! every sandbox's (see [`crate::listen`]). A sandbox costs that task, its UDP socket's
//! registration and its record, a few hundred bytes; datagrams are read in batches into
//! buffers each runtime thread keeps, answered into buffers kept there too, and sent with
//! one system call per batch, so the task holds no buffer between queries and a query for a
//! name of the table allocates nothing.

use crate::answer::{answer, answer_into, Reply, UDP_PLAIN};
use crate::forward::{Channels, Forwarder, Transport, Upstreams};
use crate::listen::Listeners;
use crate::table::Table;
use hickory_proto::op::Message;
use nix::sys::socket::{recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

/// The largest query read over UDP; a bigger datagram is cut there and is malformed.
const UDP_QUERY: usize = 4096;

/// How many datagrams one wake-up reads (with one `recvmmsg`) before the task lets others run.
const BATCH: usize = 32;

/// How many forwarded queries one sandbox may have under way; more are dropped, and the
/// asker retries.
const FORWARDS: u32 = 256;

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
pub(crate) struct Served {
    /// Its id, the name table's own copy.
    id: Arc<str>,
    table: Arc<Table>,
    forwarder: Forwarder,
    forwarding: AtomicU32,
    udp: UdpSocket,
}

/// What to stop when a sandbox is no longer served: its UDP task and its listener.
struct Serving {
    task: AbortHandle,
    listener: RawFd,
}

/// The resolver: the name table and the sandboxes it serves.
pub struct Resolver {
    table: Arc<Table>,
    rt: Handle,
    host: Arc<Channels>,
    /// Made at the first sandbox served.
    listeners: OnceLock<Listeners>,
    /// The upstream servers the last sandbox served got, kept for the next one: sandboxes
    /// mostly have the host's, and share them.
    servers: Mutex<Arc<[SocketAddr]>>,
    served: Mutex<HashMap<Arc<str>, Serving>>,
}

impl Resolver {
    /// A resolver serving on runtime `rt`.
    pub fn new(rt: Handle) -> Resolver {
        Resolver {
            table: Arc::new(Table::new()),
            rt,
            host: Arc::default(),
            listeners: OnceLock::new(),
            servers: Mutex::new(Arc::new([])),
            served: Mutex::default(),
        }
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
        let listeners = match self.listeners.get() {
            Some(l) => l,
            None => {
                let made = Listeners::new()?;
                self.listeners.get_or_init(|| made)
            }
        };
        let served = Arc::new(Served {
            id: self.table.sandbox_id(sandbox),
            table: self.table.clone(),
            forwarder: Forwarder::new(self.shared_servers(upstreams.servers), upstreams.opener, self.host.clone()),
            forwarding: AtomicU32::new(0),
            udp: UdpSocket::from_std(sockets.udp)?,
        });
        let listener = listeners.add(sockets.tcp, served.clone())?;
        let id = served.id.clone();
        let task = self.rt.spawn(run(served)).abort_handle();
        if let Some(old) = self.lock().insert(id, Serving { task, listener }) {
            self.end(old);
        }
        Ok(())
    }

    /// `servers` as the last sandbox served has them, when they are the same.
    fn shared_servers(&self, servers: Vec<SocketAddr>) -> Arc<[SocketAddr]> {
        let mut last = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        if *last.as_ref() != servers[..] {
            *last = servers.into();
        }
        last.clone()
    }

    /// Stop serving sandbox `sandbox`; its sockets close.
    pub fn stop(&self, sandbox: &str) {
        let serving = self.lock().remove(sandbox);
        if let Some(serving) = serving {
            self.end(serving);
        }
    }

    fn end(&self, serving: Serving) {
        serving.task.abort();
        if let Some(listeners) = self.listeners.get() {
            listeners.remove(serving.listener);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Serving>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answer the datagrams of `served`'s UDP socket as they come. The task is a bare poll
/// function: while it waits it holds nothing but `served`, its waker being kept in the
/// socket's registration.
fn run(served: Arc<Served>) -> impl Future<Output = ()> {
    std::future::poll_fn(move |cx| loop {
        match served.udp.poll_recv_ready(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                if drain(&served) {
                    // More may be waiting: the thread's other tasks go first.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    })
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

/// Answer the datagrams waiting on the sandbox's UDP socket: batch after batch until none
/// is left (which clears the socket's readiness, so the task waits for the next datagram
/// without another wake-up to find the socket empty) or [`ROUNDS`] batches were answered.
/// Whether it stopped at [`ROUNDS`], with more perhaps waiting.
fn drain(served: &Arc<Served>) -> bool {
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
        (0..ROUNDS).all(|_| batch(served, scratch))
    })
}

/// Read and answer one batch; whether the socket may hold more.
fn batch(served: &Arc<Served>, scratch: &mut Scratch) -> bool {
    let udp = &served.udp;
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
            Some(Reply::Forward(query)) => forward(served, packet, query, &from),
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
/// answer goes back on the sandbox's UDP socket.
fn forward(served: &Arc<Served>, packet: &[u8], query: Box<Message>, from: &SockaddrStorage) {
    let Some(asker) = socket_addr(from) else { return };
    if served.forwarding.fetch_add(1, Ordering::Relaxed) >= FORWARDS {
        served.forwarding.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let (served, packet) = (served.clone(), packet.to_vec());
    tokio::spawn(async move {
        let bytes = served.forwarder.forward(&packet, &query, Transport::Udp).await;
        let _ = served.udp.send_to(&bytes, asker).await;
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
pub(crate) async fn serve_tcp(served: Arc<Served>, mut stream: TcpStream) {
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
