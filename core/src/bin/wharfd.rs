//! `wharfd`: the wharf daemon. Loads drivers, opens the store, repairs the kernel's state,
//! and serves the API on a unix socket until SIGTERM or SIGINT.

use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use wharf_core::config::{Config, FirewallBackend};
use wharf_core::drivers::{Host, Null};
use wharf_core::engine::{DefaultBridge, Engine, Settings};
use wharf_core::firewall::{nftables::Nftables, Firewall, NoFirewall, Policy};
use wharf_core::kernel::Kernel;
use wharf_core::registry::{Registry, Source};
use wharf_core::store::Store;

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
    /// Directory of named sandbox namespaces.
    #[arg(long)]
    netns_dir: Option<PathBuf>,
    /// Directory of per-sandbox resolver files.
    #[arg(long)]
    netns_etc_dir: Option<PathBuf>,
    /// The host's resolver configuration (default /etc/resolv.conf).
    #[arg(long)]
    resolv_conf: Option<PathBuf>,
}

fn main() {
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
    if let Some(v) = flags.netns_dir {
        c.netns_dir = v;
    }
    if let Some(v) = flags.netns_etc_dir {
        c.netns_etc_dir = v;
    }
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
        r.load_dir(dir);
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
    let filter = tracing_subscriber::EnvFilter::try_new(&c.log_level).map_err(|e| format!("log level: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

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
    let instance = wharf_core::engine::instance_id(&store).map_err(|e| format!("instance id: {e}"))?;
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
        volumes_max_file_size: wharf_core::kernel::max_file_size(&volumes_dir),
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
    let engine =
        Engine::start_with_dns(store, registry, exec, settings, Some(dns)).map_err(|e| format!("start: {e}"))?;
    let engine = Arc::new(engine);
    rt.block_on(serve(engine, c.socket.clone()))
}

async fn serve(engine: Arc<Engine>, socket: PathBuf) -> Result<(), String> {
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
    tracing::info!(socket = %socket.display(), "serving the API");
    let app = wharf_core::api::router(engine);
    let served = wharf_core::api::serve(listener, app, shutdown()).await;
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
    tracing::info!("signal received; finishing requests in flight");
}
