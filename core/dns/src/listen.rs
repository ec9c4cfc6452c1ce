//! The TCP listeners of every served sandbox, watched together: one epoll set holds them
//! all and one task accepts on whichever has a connection waiting, so a sandbox's listener
//! costs neither a task nor a registration with the runtime of its own (DNS over TCP is the
//! rare path, taken after a truncated answer). Each accepted connection is served by a task
//! of its own while it lasts.

use crate::server::{serve_tcp, Served};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::AbortHandle;

/// How many waiting listeners one look at the epoll set returns.
const EVENTS: usize = 16;

/// The epoll set, as the runtime watches it.
struct Set(Epoll);

impl AsRawFd for Set {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_raw_fd()
    }
}

/// Listener fd -> the listener and the sandbox it serves.
type Listening = HashMap<RawFd, (TcpListener, Arc<Served>)>;

struct Shared {
    set: AsyncFd<Set>,
    listening: Mutex<Listening>,
}

/// The listeners, and the task accepting on them; dropping it stops the task.
pub(crate) struct Listeners {
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listeners {
    /// Watch nothing yet, accepting on the current runtime.
    pub(crate) fn new() -> io::Result<Listeners> {
        let set = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // SAFETY: `Set` owns the epoll fd and gives it out unchanged for as long as it lives,
        // which is as long as the `AsyncFd` does.
        let set = unsafe { AsyncFd::register_with_interest(Set(set), Interest::READABLE) }?;
        let shared = Arc::new(Shared { set, listening: Mutex::default() });
        let task = tokio::spawn(accept(shared.clone())).abort_handle();
        Ok(Listeners { shared, task })
    }

    /// Accept on `listener` (non-blocking) for `served`; returns the key to [`Listeners::remove`] it by.
    pub(crate) fn add(&self, listener: TcpListener, served: Arc<Served>) -> io::Result<RawFd> {
        let fd = listener.as_raw_fd();
        let mut listening = self.shared.lock();
        self.shared.set.get_ref().0.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, fd as u64))?;
        listening.insert(fd, (listener, served));
        Ok(fd)
    }

    /// Stop accepting on listener `fd`, and close it.
    pub(crate) fn remove(&self, fd: RawFd) {
        let mut listening = self.shared.lock();
        if let Some((listener, _)) = listening.remove(&fd) {
            let _ = self.shared.set.get_ref().0.delete(&listener);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Listening> {
        self.listening.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accept every connection waiting on any listener, until none is left: `Ok` then, or
    /// the error that stopped it (out of file descriptors: the connections wait).
    fn accept_waiting(&self) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); EVENTS];
        loop {
            let n = match self.set.get_ref().0.wait(&mut events, EpollTimeout::ZERO) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let listening = self.lock();
            for event in &events[..n] {
                // A listener removed since the set was looked at has nothing to accept.
                let Some((listener, served)) = listening.get(&(event.data() as RawFd)) else { continue };
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            let stream = tokio::net::TcpStream::from_std(stream)?;
                            tokio::spawn(serve_tcp(served.clone(), stream));
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

async fn accept(shared: Arc<Shared>) {
    loop {
        let Ok(mut ready) = shared.set.readable().await else { return };
        match shared.accept_waiting() {
            Ok(()) => ready.clear_ready(),
            Err(e) => {
                drop(ready);
                tracing::debug!(error = %e, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
