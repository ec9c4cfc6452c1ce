//! Netlink sockets per network namespace, all driven by one runtime thread.
//!
//! A netlink socket belongs to the namespace it was created in, whichever thread uses it
//! afterwards. So a namespace costs one socket, opened once from inside it (see [`enter`]),
//! and registered with a runtime shared by every namespace; no thread stays in
//! a sandbox's namespace and no runtime is made per namespace. A namespace's socket is
//! dropped when it has been idle for a while, when it is forgotten, or when its file names
//! another namespace, so wharf never keeps a removed namespace alive for long; at most
//! [`MAX_SANDBOX_SOCKETS`] are open at once.
//!
//! The kernel does a netlink request's work in the thread that sends it, which here is the
//! runtime's one thread: requests of every namespace run in order there, and a caller waits
//! for its own.

use nix::sched::{setns, CloneFlags};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::Handle;
use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_engine::executor::ExecError;

/// How many sandbox namespaces keep a socket open at most. Each connection holds 72 KiB of
/// buffers (netlink-proto's), and an operation works in one sandbox at a time: a restart that
/// revives a thousand sandboxes goes through them in turn, so a few are enough.
const MAX_SANDBOX_SOCKETS: usize = 4;

/// One namespace's socket.
#[derive(Debug)]
struct Entry {
    handle: Handle,
    /// The inode of the namespace the socket was opened in.
    inode: u64,
    used: Instant,
}

/// Netlink sockets by namespace, with the runtime that drives them.
#[derive(Debug)]
pub struct Sockets {
    /// Always `Some` but in `drop`.
    rt: Option<tokio::runtime::Runtime>,
    /// The socket in the namespace the executor was made in.
    host: Handle,
    sandboxes: Arc<Mutex<HashMap<String, Entry>>>,
    /// Wakes the sweeper when a sandbox socket is opened.
    opened: Arc<tokio::sync::Notify>,
}

/// What a call gets: the runtime to wait on and the namespace's netlink handle.
#[derive(Debug)]
pub struct Ctx<'a> {
    rt: &'a tokio::runtime::Handle,
    /// Netlink handle bound to the namespace.
    pub handle: Handle,
}

impl Ctx<'_> {
    /// Wait for `f`, whose netlink requests the shared runtime carries out.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// The inode of the network namespace `path` names.
pub fn netns_inode(path: &Path) -> Result<u64, ExecError> {
    std::fs::metadata(path).map(|m| m.ino()).map_err(|e| ExecError::os(format!("netns {}", path.display()), e))
}

impl Sockets {
    /// A runtime thread named `name`, with a socket in the calling thread's namespace.
    /// Sockets of other namespaces idle for `idle` are closed.
    pub fn new(name: &str, idle: Duration) -> Result<Sockets, ExecError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ExecError::os("netlink runtime", e))?;
        let host = open(rt.handle(), None)?;
        let sandboxes: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let opened = Arc::new(tokio::sync::Notify::new());
        rt.spawn(sweep(Arc::downgrade(&sandboxes), opened.clone(), idle));
        Ok(Sockets { rt: Some(rt), host, sandboxes, opened })
    }

    fn rt(&self) -> &tokio::runtime::Handle {
        self.rt.as_ref().expect("the runtime lives until drop").handle()
    }

    /// The context for the namespace the executor was made in.
    pub fn host(&self) -> Ctx<'_> {
        Ctx { rt: self.rt(), handle: self.host.clone() }
    }

    /// The context for the namespace file `path`, opening its socket if need be.
    pub fn sandbox(&self, path: &str) -> Result<Ctx<'_>, ExecError> {
        let inode = netns_inode(Path::new(path))?;
        let mut map = self.sandboxes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(path).filter(|e| e.inode == inode) {
            e.used = Instant::now();
            return Ok(Ctx { rt: self.rt(), handle: e.handle.clone() });
        }
        let handle = open(self.rt(), Some(Path::new(path)))?;
        if map.len() >= MAX_SANDBOX_SOCKETS {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.used).map(|(p, _)| p.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(path.to_string(), Entry { handle: handle.clone(), inode, used: Instant::now() });
        self.opened.notify_one();
        Ok(Ctx { rt: self.rt(), handle })
    }

    /// How many sandbox namespaces have a socket open now.
    pub fn open_sandboxes(&self) -> usize {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Close the socket of namespace file `path`, if one is open.
    pub fn forget(&self, path: &str) {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }

    /// Run `f` on the runtime without waiting for it.
    pub fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.rt().spawn(f);
    }
}

impl Drop for Sockets {
    /// The executor may be dropped on an async thread (the daemon's last reference goes
    /// with its API server), where a runtime cannot wait for its threads: let them end on
    /// their own.
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Close the sandbox sockets of `sandboxes` once idle for `idle`, and hand their buffers back
/// to the kernel. While none is open it waits for `opened` without a timer, so an idle daemon
/// is not woken; it ends with the [`Sockets`] it sweeps for.
async fn sweep(
    sandboxes: std::sync::Weak<Mutex<HashMap<String, Entry>>>,
    opened: Arc<tokio::sync::Notify>,
    idle: Duration,
) {
    loop {
        let oldest = {
            let Some(sandboxes) = sandboxes.upgrade() else { return };
            let map = sandboxes.lock().unwrap_or_else(|p| p.into_inner());
            map.values().map(|e| e.used).min()
        };
        match oldest {
            None => opened.notified().await,
            Some(used) => tokio::time::sleep_until((used + idle).into()).await,
        }
        let Some(sandboxes) = sandboxes.upgrade() else { return };
        let closed = {
            let mut map = sandboxes.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, e| e.used.elapsed() < idle);
            before - map.len()
        };
        if closed > 0 {
            crate::alloc::trim();
        }
    }
}

/// Open a netlink socket in the namespace file `path` (the calling thread's namespace for
/// `None`) and hand its connection to the runtime `rt`.
fn open(rt: &tokio::runtime::Handle, path: Option<&Path>) -> Result<Handle, ExecError> {
    let rt = rt.clone();
    let opening = move || -> Result<Handle, ExecError> {
        let _runtime = rt.enter();
        let (mut conn, handle, _) = rtnetlink::new_connection().map_err(|e| ExecError::os("netlink socket", e))?;
        // Strict checking makes the kernel apply a dump request's filters (the routing table,
        // say) instead of sending everything for us to filter.
        conn.socket_mut()
            .socket_mut()
            .set_netlink_get_strict_chk(true)
            .map_err(|e| ExecError::os("netlink socket", e))?;
        rt.spawn(conn);
        Ok(handle)
    };
    match path {
        None => opening(),
        Some(p) => in_netns(&p.display().to_string(), opening),
    }
}

/// A job for the namespace thread: it enters a namespace, does its work there, and says
/// whether the thread got back to its home namespace (the file it is handed).
type Job = Box<dyn FnOnce(&File) -> bool + Send>;

/// The namespace thread's queue; `None` until the first entry, and replaced when the thread
/// ended because it could not get home.
static ENTERING: Mutex<Option<Sender<Job>>> = Mutex::new(None);

thread_local! {
    /// Whether this thread is the namespace thread.
    static ON_ENTERING: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` inside the namespace file `netns` and return what it returned. The error is
/// opening or entering the namespace.
///
/// One long-lived thread does every entry, in turn: it enters the namespace (`setns`), runs
/// `f` and goes back to the daemon's namespace before the caller gets the result, so no
/// thread stays in a sandbox's namespace and the daemon's other threads never change
/// namespace. Waking that thread costs much less than starting a thread per entry, which on
/// a busy machine was the most of a connect's extra time with names. A thread that cannot
/// get home ends, and the next entry starts another. `f` called from within `f` (which
/// would wait for the thread it runs on) gets a short-lived thread of its own.
pub fn enter<R: Send + 'static>(netns: &Path, f: impl FnOnce() -> R + Send + 'static) -> std::io::Result<R> {
    enter_later(netns, f)?.wait()
}

/// [`enter`] without waiting: `f` is queued for the namespace thread, and the caller gets
/// what it returned from [`Later::wait`], doing other work meanwhile. Dropped unwaited,
/// what `f` returns is dropped when it is done.
pub fn enter_later<R: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<Later<R>> {
    let file = File::open(netns)?;
    if ON_ENTERING.get() {
        return Ok(Later(Err(enter_once(file, f))));
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move |home| {
        if let Err(e) = setns(&file, CloneFlags::CLONE_NEWNET) {
            let _ = tx.send(Err(e.into()));
            return true;
        }
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let home = setns(home, CloneFlags::CLONE_NEWNET).is_ok();
        let _ = tx.send(out.map_err(|_| std::io::Error::other("work inside a namespace panicked")));
        home
    });
    submit(job)?;
    Ok(Later(Ok(rx)))
}

/// What [`enter_later`] queued: its result, or where it will come.
pub struct Later<R>(Result<mpsc::Receiver<std::io::Result<R>>, std::io::Result<R>>);

impl<R> std::fmt::Debug for Later<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_ok() { "Later(queued)" } else { "Later(done)" })
    }
}

impl<R> Later<R> {
    /// Wait for the queued work's result.
    pub fn wait(self) -> std::io::Result<R> {
        match self.0 {
            Ok(rx) => rx.recv().map_err(|_| std::io::Error::other("the thread entering namespaces ended"))?,
            Err(done) => done,
        }
    }
}

/// Queue `job` for the namespace thread, starting one if there is none (or it ended).
fn submit(job: Job) -> std::io::Result<()> {
    let mut entering = ENTERING.lock().unwrap_or_else(|p| p.into_inner());
    let job = match entering.as_ref() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return Ok(()),
            Err(returned) => returned.0,
        },
        None => job,
    };
    // The home namespace is the process's (its first thread's), not the caller's: a thread
    // that a job started inside a sandbox's namespace may be the first to ask.
    let home = File::open("/proc/self/ns/net")?;
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new().name("wharf-netns".into()).spawn(move || {
        ON_ENTERING.set(true);
        while let Ok(job) = rx.recv() {
            if !job(&home) {
                tracing::error!("the thread entering namespaces could not get back to the daemon's; it ends");
                return;
            }
        }
    })?;
    tx.send(job).map_err(|_| std::io::Error::other("the thread entering namespaces ended at once"))?;
    *entering = Some(tx);
    Ok(())
}

/// Run `f` on a short-lived thread that entered the namespace `file`.
fn enter_once<R: Send + 'static>(file: File, f: impl FnOnce() -> R + Send + 'static) -> std::io::Result<R> {
    std::thread::Builder::new()
        .name("wharf-netns".into())
        .spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        })?
        .join()
        .map_err(|_| std::io::Error::other("the thread entering a namespace panicked"))?
}

/// Run `f` inside the namespace file `path` (see [`enter`]): for the few things that depend
/// on the calling thread's namespace, such as its `/proc/sys/net`.
pub fn in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> Result<T, ExecError> + Send + 'static,
) -> Result<T, ExecError> {
    enter(Path::new(path), f).map_err(|e| ExecError::os(format!("entering netns {path}"), e))?
}
