//! Namespace workers: a dedicated OS thread per network namespace, which entered the
//! namespace once and keeps a netlink connection open there. Async worker threads never
//! call setns; every kernel call for a namespace runs on its worker.

use nix::sched::{setns, CloneFlags};
use rtnetlink::Handle;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use wharf_engine::executor::ExecError;

/// What a job gets: a runtime to block on and a netlink handle in the worker's namespace.
#[derive(Debug)]
pub struct Ctx {
    rt: tokio::runtime::Runtime,
    /// Netlink handle bound to the worker's namespace.
    pub handle: Handle,
}

impl Ctx {
    /// Run a future to completion on the worker's runtime (which also drives the netlink
    /// connection).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

type Job = Box<dyn FnOnce(&Ctx) + Send>;

/// A handle to one namespace's worker thread.
#[derive(Debug)]
pub struct Worker {
    tx: Sender<Job>,
    /// Inode of the namespace the worker is in, to notice a namespace file that now names
    /// another namespace.
    pub inode: u64,
}

/// The inode of the network namespace `path` names.
pub fn netns_inode(path: &Path) -> Result<u64, ExecError> {
    std::fs::metadata(path).map(|m| m.ino()).map_err(|e| ExecError::new(format!("netns {}: {e}", path.display())))
}

impl Worker {
    /// Start a worker in the namespace named by `path`, or in the caller's namespace for
    /// `None`. An idle worker for a namespace other than the caller's exits after `idle`,
    /// so it does not keep a removed namespace alive.
    pub fn spawn(path: Option<&Path>, idle: Option<Duration>) -> Result<Worker, ExecError> {
        let file = match path {
            Some(p) => Some(std::fs::File::open(p).map_err(|e| ExecError::new(format!("netns {}: {e}", p.display())))?),
            None => None,
        };
        let inode = match path {
            Some(p) => netns_inode(p)?,
            None => netns_inode(Path::new("/proc/thread-self/ns/net"))?,
        };
        let name = path.map(|p| p.display().to_string()).unwrap_or_else(|| "host".into());
        let (tx, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<(), ExecError>>();
        std::thread::Builder::new()
            .name("wharf-netns".into())
            .spawn(move || {
                if let Some(f) = &file {
                    if let Err(e) = setns(f, CloneFlags::CLONE_NEWNET) {
                        let _ = ready_tx.send(Err(ExecError::os(format!("entering netns {name}"), e)));
                        return;
                    }
                }
                drop(file);
                let ctx = match connect() {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve(&ctx, rx, idle);
            })
            .map_err(|e| ExecError::os("starting a netns worker", e))?;
        ready_rx.recv().map_err(|_| ExecError::new("netns worker died while starting"))??;
        Ok(Worker { tx, inode })
    }

    /// Queue `f` on the worker without waiting for it.
    pub fn submit(&self, f: impl FnOnce(&Ctx) + Send + 'static) -> Result<(), ExecError> {
        self.tx.send(Box::new(f)).map_err(|_| ExecError::new("netns worker is gone"))
    }

    /// Run `f` on the worker and wait for its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce(&Ctx) -> T + Send + 'static) -> Result<T, ExecError> {
        let (tx, rx) = channel();
        let job: Job = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        self.tx.send(job).map_err(|_| ExecError::new("netns worker is gone"))?;
        rx.recv().map_err(|_| ExecError::new("netns worker stopped during a job"))
    }
}

fn connect() -> Result<Ctx, ExecError> {
    use rtnetlink::sys::AsyncSocket;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ExecError::os("netlink runtime", e))?;
    let handle = rt.block_on(async {
        let (mut conn, handle, _) = rtnetlink::new_connection().map_err(|e| ExecError::os("netlink socket", e))?;
        // Strict checking makes the kernel apply a dump request's filters (the routing table,
        // say) instead of sending everything for us to filter.
        conn.socket_mut()
            .socket_mut()
            .set_netlink_get_strict_chk(true)
            .map_err(|e| ExecError::os("netlink socket", e))?;
        tokio::spawn(conn);
        Ok::<_, ExecError>(handle)
    })?;
    Ok(Ctx { rt, handle })
}

fn serve(ctx: &Ctx, rx: Receiver<Job>, idle: Option<Duration>) {
    loop {
        let job = match idle {
            Some(t) => match rx.recv_timeout(t) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        job(ctx);
    }
}
