//! Serving: each sandbox's UDP socket and TCP listener (opened at 127.0.0.11:53 in its
//! namespace by the daemon and handed over here) served by one task on the daemon's runtime.
//! A sandbox costs one task and its sockets' registrations; datagrams are read in batches
//! into buffers each runtime thread keeps, and answered with one system call per batch, so
//! the task holds no buffer between queries.

use crate::answer::{answer, Reply};
use crate::forward::{Channels, Forwarder, Transport, Upstreams};
use crate::table::Table;
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

/// Buffers and message headers for reading and answering a batch of datagrams with one
/// `recvmmsg` and one `sendmmsg`: one set per runtime thread, made at its first batch, so a
/// sandbox's task holds none.
struct Scratch {
    bufs: Vec<[u8; UDP_QUERY]>,
    recv: MultiHeaders<SockaddrStorage>,
    send: MultiHeaders<SockaddrStorage>,
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Answer the datagrams waiting on `udp`, up to [`BATCH`] of them.
fn drain(served: &Arc<Served>, udp: &Arc<UdpSocket>) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let scratch = scratch.get_or_insert_with(|| Scratch {
            bufs: vec![[0u8; UDP_QUERY]; BATCH],
            recv: MultiHeaders::preallocate(BATCH, None),
            send: MultiHeaders::preallocate(BATCH, None),
        });
        drain_with(served, udp, scratch);
    });
}

fn drain_with(served: &Arc<Served>, udp: &Arc<UdpSocket>, scratch: &mut Scratch) {
    let fd = udp.as_raw_fd();
    let got = udp.try_io(Interest::READABLE, || {
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = scratch.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let received = recvmmsg(fd, &mut scratch.recv, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        Ok(received.map(|m| (m.bytes, m.address)).collect::<Vec<_>>())
    });
    let got = match got {
        Ok(got) => got,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
        Err(e) => {
            tracing::debug!(error = %e, "reading DNS queries");
            return;
        }
    };
    let mut answers: Vec<(Vec<u8>, SockaddrStorage)> = Vec::with_capacity(got.len());
    for (i, (n, from)) in got.into_iter().enumerate() {
        let (Some(from), Some(asker)) = (from, from.as_ref().and_then(socket_addr)) else { continue };
        let packet = &scratch.bufs[i][..n];
        match answer(&served.table, &served.id, packet, true) {
            Reply::Answer(bytes) => answers.push((bytes, from)),
            Reply::Drop => {}
            Reply::Forward(query) => {
                if served.forwarding.fetch_add(1, Ordering::Relaxed) >= FORWARDS {
                    served.forwarding.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                let (served, udp, packet) = (served.clone(), udp.clone(), packet.to_vec());
                tokio::spawn(async move {
                    let bytes = served.forwarder.forward(&packet, &query, Transport::Udp).await;
                    let _ = udp.send_to(&bytes, asker).await;
                    served.forwarding.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    if answers.is_empty() {
        return;
    }
    // An answer the socket has no room for is dropped, as a datagram may be: the asker
    // asks again.
    let slices: Vec<[IoSlice<'_>; 1]> = answers.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = answers.iter().map(|(_, a)| Some(*a)).collect();
    let none: [ControlMessage<'_>; 0] = [];
    let _ = udp.try_io(Interest::WRITABLE, || {
        sendmmsg(fd, &mut scratch.send, slices.iter(), &addrs, none, MsgFlags::MSG_DONTWAIT)
            .map(|_| ())
            .map_err(io::Error::from)
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
