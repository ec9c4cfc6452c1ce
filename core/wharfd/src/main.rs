//! `wharfd`: the wharf daemon. Loads drivers, opens the store, repairs the kernel's state,
//! and serves the API on a unix socket until SIGTERM or SIGINT.

mod config;
mod logging;

use crate::config::{Config, FirewallBackend, LogFormat};
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use wharf_cluster::{EtcdStore, HostRecord, StoreConfig, TlsFiles};
use wharf_engine::drivers::{Host, Null};
use wharf_engine::engine::{DefaultBridge, Engine, Settings};
use wharf_engine::registry::{Registry, Source};
use wharf_engine::store::Store;
use wharf_linux::firewall::{nftables::Nftables, Firewall, NoFirewall, Policy};
use wharf_linux::kernel::Kernel;

/// The wharf daemon: container networking and volumes behind a Docker-compatible API.
#[derive(Parser, Debug)]
#[command(name = "wharfd", version)]
struct Flags {
    /// Configuration file (default: /etc/wharf/wharf.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory.
    #[arg(long)]
    root: Option<PathBuf>,
    /// API socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Plugin directory; repeat for several. Replaces the configured list.
    #[arg(long = "plugin-dir")]
    plugin_dirs: Vec<PathBuf>,
    /// Firewall backend.
    #[arg(long, value_enum)]
    firewall: Option<FirewallBackend>,
    /// Name of wharf's nftables tables (`inet NAME`, `bridge NAME`; default `wharf`).
    #[arg(long)]
    firewall_table: Option<String>,
    /// Let new connections from outside reach published ports only when the host's firewall
    /// marked them (see `published_ports_mark`).
    #[arg(long)]
    published_ports_respect_input: bool,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long)]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Also serve GET /metrics on this TCP address (such as 127.0.0.1:9323).
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Group that owns the API socket (mode 0660): its members may use wharf without root.
    #[arg(short = 'G', long = "group")]
    group: Option<String>,
    /// Directory of named sandbox namespaces.
    #[arg(long)]
    netns_dir: Option<PathBuf>,
    /// Directory of per-sandbox resolver files.
    #[arg(long)]
    netns_etc_dir: Option<PathBuf>,
    /// The cluster store global-scope (overlay) networks live in:
    /// `etcd://HOST:PORT[,HOST:PORT…]`.
    #[arg(long)]
    cluster_store: Option<String>,
    /// This host's underlay address, which other hosts send overlay traffic to.
    #[arg(long)]
    advertise_addr: Option<std::net::IpAddr>,
    /// CA certificate of the etcd cluster (turns TLS on).
    #[arg(long)]
    cluster_store_ca: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    cluster_store_cert: Option<PathBuf>,
    /// Key of the etcd client certificate.
    #[arg(long)]
    cluster_store_key: Option<PathBuf>,
    /// Seconds other hosts keep this host's endpoints after it stops renewing them.
    #[arg(long)]
    cluster_ttl: Option<u64>,
    /// The host's resolver configuration (default /etc/resolv.conf).
    #[arg(long)]
    resolv_conf: Option<PathBuf>,
}

fn main() {
    wharf_linux::alloc::one_arena();
    let flags = Flags::parse();
    if let Err(e) = run(flags) {
        eprintln!("wharfd: {e}");
        std::process::exit(1);
    }
}

fn config(flags: Flags) -> Result<Config, String> {
    let mut c = Config::load(flags.config.as_deref())?;
    if let Some(v) = flags.root {
        c.root = v;
    }
    if let Some(v) = flags.socket {
        c.socket = v;
    }
    if !flags.plugin_dirs.is_empty() {
        c.plugin_dirs = flags.plugin_dirs;
    }
    if let Some(v) = flags.firewall {
        c.firewall = v;
    }
    if let Some(v) = flags.firewall_table {
        c.firewall_table = v;
    }
    if flags.published_ports_respect_input {
        c.published_ports_respect_input = true;
    }
    if let Some(v) = flags.log_level {
        c.log_level = v;
    }
    if let Some(v) = flags.log_format {
        c.log_format = v;
    }
    if let Some(v) = flags.metrics_addr {
        c.metrics_addr = v;
    }
    if let Some(v) = flags.group {
        c.socket_group = v;
    }
    if let Some(v) = flags.netns_dir {
        c.netns_dir = v;
    }
    if let Some(v) = flags.netns_etc_dir {
        c.netns_etc_dir = v;
    }
    if let Some(v) = flags.cluster_store {
        c.cluster_store = Some(v);
    }
    if let Some(v) = flags.advertise_addr {
        c.advertise_addr = Some(v);
    }
    if let Some(v) = flags.cluster_store_ca {
        c.cluster_store_ca = Some(v);
    }
    if let Some(v) = flags.cluster_store_cert {
        c.cluster_store_cert = Some(v);
    }
    if let Some(v) = flags.cluster_store_key {
        c.cluster_store_key = Some(v);
    }
    if let Some(v) = flags.cluster_ttl {
        c.cluster_ttl = v;
    }
    c.check_cluster()?;
    if let Some(v) = flags.resolv_conf {
        c.resolv_conf = v;
    }
    Ok(c)
}

fn registry(c: &Config) -> Registry {
    let mut r = Registry::new();
    for d in [Arc::new(Host) as Arc<dyn wharf_sdk::NetworkDriver>, Arc::new(Null)] {
        if let Err(e) = r.add_network(d, Source::Builtin) {
            tracing::warn!("{e}");
        }
    }
    for dir in &c.plugin_dirs {
        wharf_linux::plugins::load_dir(&mut r, dir);
    }
    r
}

/// Every published port holds a socket (its host port reservation): lift the soft limit on
/// open files to the hard one, as other daemons that hold a socket per port do.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, "raising the open files limit");
            }
        }
    }
}

/// `dir`, made if missing, with every symlink on the way resolved.
fn resolved_dir(dir: &std::path::Path, what: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::canonicalize(dir))
        .map_err(|e| format!("{what} {}: {e}", dir.display()))
}

fn run(flags: Flags) -> Result<(), String> {
    let mut c = config(flags)?;
    crate::logging::init(&c.log_level, c.log_format)?;
    let socket_group = socket_group(&c.socket_group)?;

    raise_open_files_limit();
    // Paths are resolved once, here: the kernel names mount points by their resolved paths,
    // so a root reached through a symlink must be compared and mounted on as the kernel sees it.
    c.root = resolved_dir(&c.root, "root")?;
    c.netns_dir = resolved_dir(&c.netns_dir, "netns directory")?;
    c.netns_etc_dir = resolved_dir(&c.netns_etc_dir, "netns etc directory")?;
    let volumes_dir = c.root.join("volumes");
    std::fs::create_dir_all(&volumes_dir).map_err(|e| format!("{}: {e}", volumes_dir.display()))?;
    let registry = registry(&c);
    let store_path = c.root.join("state.redb");
    let store = Store::open(&store_path).map_err(|e| format!("{}: {e}", store_path.display()))?;
    let instance = wharf_engine::engine::instance_id(&store).map_err(|e| format!("instance id: {}", e.message()))?;
    let firewall: Arc<dyn Firewall> = match c.firewall {
        FirewallBackend::Nftables => {
            let policy = Policy {
                table: c.firewall_table.clone(),
                owner: Some(format!("wharf:{instance}")),
                respect_input: c.published_ports_respect_input.then_some(c.published_ports_mark),
            };
            Arc::new(Nftables::with_policy(None, policy).map_err(|e| format!("firewall: {e}"))?)
        }
        FirewallBackend::None => Arc::new(NoFirewall),
    };
    let exec = Arc::new(Kernel::new(firewall, &instance).map_err(|e| format!("executor: {e}"))?);
    let settings = Settings {
        netns_dir: c.netns_dir.clone(),
        netns_etc_dir: c.netns_etc_dir.clone(),
        host_resolv_conf: c.resolv_conf.clone(),
        volumes_max_file_size: wharf_linux::kernel::max_file_size(&volumes_dir),
        volumes_dir,
        pools_v4: c.default_address_pools.clone(),
        pools_v6: c.default_ipv6_pools.clone(),
        default_mtu: c.default_mtu,
        bind_allowed_bases: c.bind_allowed_bases.iter().map(|p| p.display().to_string()).collect(),
        default_bridge: c
            .bridge
            .enabled
            .then(|| DefaultBridge { device: c.bridge.name.clone(), subnet: c.bridge.subnet }),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    // The embedded resolver serves every sandbox's sockets on the daemon's runtime; start
    // brings each sandbox's back before the API serves.
    let dns = Arc::new(wharf_dns::Resolver::new(rt.handle().clone()));
    let engine = Engine::start_with_dns(store, registry, exec, settings, Some(dns))
        .map_err(|e| format!("start: {}", e.message()))?;
    let engine = Arc::new(engine);
    // Plugins whose drivers have no network or volume give back the code their first calls
    // faulted in; a later call brings back what it needs.
    let in_use = engine.networks().into_iter().map(|n| n.driver).chain(engine.volumes().into_iter().map(|v| v.driver));
    for file in wharf_linux::plugins::release_unused(engine.registry(), &in_use.collect()) {
        tracing::debug!(file = %file.display(), "unused plugin's code pages given back");
    }
    // Starting went through every endpoint and sandbox: hand back what that left free, and
    // again whenever the API goes quiet after requests.
    wharf_linux::alloc::trim();
    let api_work = Arc::new(tokio::sync::Notify::new());
    rt.spawn(wharf_linux::alloc::trim_when_idle(api_work.clone()));
    if let (Some(url), Some(vtep)) = (&c.cluster_store, c.advertise_addr) {
        join_cluster(&engine, &c, url, vtep, instance)?;
    }
    rt.block_on(async {
        if !c.metrics_addr.is_empty() {
            serve_metrics(engine.clone(), &c.metrics_addr).await?;
        }
        serve(engine, c.socket.clone(), socket_group, api_work).await
    })
}

/// Join the cluster store: a store that is down now is joined when it comes back.
fn join_cluster(
    engine: &Arc<Engine>,
    c: &Config,
    url: &str,
    vtep: std::net::IpAddr,
    instance: String,
) -> Result<(), String> {
    let mut store_config = StoreConfig::parse(url).map_err(|e| e.to_string())?;
    store_config.tls = TlsFiles {
        ca: c.cluster_store_ca.clone(),
        cert: c.cluster_store_cert.clone(),
        key: c.cluster_store_key.clone(),
    };
    store_config.ttl = std::time::Duration::from_secs(c.cluster_ttl);
    let store = EtcdStore::open(store_config).map_err(|e| e.to_string())?;
    let name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let name = if name.is_empty() { vtep.to_string() } else { format!("{name} ({vtep})") };
    let host = HostRecord { id: instance, name, vtep };
    engine.join_cluster(Arc::new(store), host).map_err(|e| format!("cluster: {}", e.message()))?;
    tracing::info!(store = url, advertise = %vtep, "joined the cluster store");
    Ok(())
}

/// The group named `name` (none for an empty name), looked up before anything starts.
fn socket_group(name: &str) -> Result<Option<nix::unistd::Group>, String> {
    if name.is_empty() {
        return Ok(None);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Some(g)),
        Ok(None) => Err(format!("socket group {name:?}: no such group")),
        Err(e) => Err(format!("socket group {name:?}: {e}")),
    }
}

/// Serve `GET /metrics` on TCP address `addr`, for as long as the daemon runs.
async fn serve_metrics(engine: Arc<Engine>, addr: &str) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("metrics address {addr}: {e}"))?;
    tracing::info!(address = addr, "serving metrics");
    let app = wharf_api::metrics_router(engine);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "serving metrics");
        }
    });
    Ok(())
}

/// Tell the service manager (systemd's `Type=notify`), if one is listening, how wharfd is.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "notifying the service manager");
    }
}

async fn serve(
    engine: Arc<Engine>,
    socket: PathBuf,
    group: Option<nix::unistd::Group>,
    work: Arc<tokio::sync::Notify>,
) -> Result<(), String> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if socket.exists() {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(format!("another daemon is serving {}", socket.display()));
        }
        std::fs::remove_file(&socket).map_err(|e| format!("removing stale {}: {e}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    if let Some(g) = &group {
        nix::unistd::chown(&socket, None, Some(g.gid))
            .map_err(|e| format!("giving {} to group {}: {e}", socket.display(), g.name))?;
    }
    tracing::info!(socket = %socket.display(), group = group.as_ref().map(|g| g.name.as_str()), "serving the API");
    // The socket is bound and listening: a connection made from now on is answered.
    notify(sd_notify::NotifyState::Ready);
    // Each answered request counts as work, after which freed memory is handed back.
    let app = wharf_api::router(engine.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let work = work.clone();
            async move {
                let response = next.run(req).await;
                work.notify_one();
                response
            }
        },
    ));
    // Streams that follow events end as the daemon stops, so requests in flight can finish.
    let stopping = async move {
        shutdown().await;
        engine.events().close();
    };
    let served = wharf_api::serve(listener, app, stopping).await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("stopped");
    served.map_err(|e| format!("serve: {e}"))
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    notify(sd_notify::NotifyState::Stopping);
    tracing::info!("signal received; finishing requests in flight");
}
