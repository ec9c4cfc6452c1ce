//! Daemon configuration: the TOML file (`/etc/wharf/wharf.toml`) and its defaults. Flags
//! given to `wharfd` override the file.

pub use crate::logging::LogFormat;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use wharf_engine::ipam::DefaultPool;

/// Which firewall backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FirewallBackend {
    /// wharf's own nftables tables.
    #[default]
    Nftables,
    /// No firewall: the host manages its own.
    None,
}

/// The predefined `bridge` network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Whether to create it.
    pub enabled: bool,
    /// Bridge device name.
    pub name: String,
    /// Subnet.
    pub subnet: IpNet,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig { enabled: true, name: "wharf0".into(), subnet: "172.17.0.0/16".parse().expect("valid subnet") }
    }
}

/// The daemon's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// State directory.
    pub root: PathBuf,
    /// API socket.
    pub socket: PathBuf,
    /// Directories plugin libraries are loaded from.
    pub plugin_dirs: Vec<PathBuf>,
    /// Firewall backend.
    pub firewall: FirewallBackend,
    /// Name of wharf's nftables tables (`inet NAME`, `bridge NAME`): a second wharfd on the
    /// same host needs tables of its own.
    pub firewall_table: String,
    /// Let a new connection from outside the host reach a published port only when the host's
    /// own firewall has marked its packet with `published_ports_mark` (see the README).
    pub published_ports_respect_input: bool,
    /// The mark (every bit of it) `published_ports_respect_input` asks for.
    pub published_ports_mark: u32,
    /// Log level or tracing filter.
    pub log_level: String,
    /// Log lines as text or as JSON objects.
    pub log_format: LogFormat,
    /// Group that owns the API socket (mode 0660), so its members may use wharf without
    /// root, as dockerd's `-G docker`; empty leaves the socket to root's group.
    pub socket_group: String,
    /// A TCP address (`127.0.0.1:9323`) that also serves `GET /metrics`, for a Prometheus
    /// that cannot reach the socket; empty: the socket only.
    pub metrics_addr: String,
    /// Where named sandboxes' namespaces live.
    pub netns_dir: PathBuf,
    /// Where per-sandbox resolver files live (`ip netns exec` reads `/etc/netns/NAME`).
    pub netns_etc_dir: PathBuf,
    /// The host's resolver configuration: where sandboxes' upstream servers, search domains
    /// and options come from.
    pub resolv_conf: PathBuf,
    /// Default IPv4 address pools.
    pub default_address_pools: Vec<DefaultPool>,
    /// Default IPv6 address pools; empty means a ULA /48 chosen at first start.
    pub default_ipv6_pools: Vec<DefaultPool>,
    /// Default MTU for new networks.
    pub default_mtu: Option<u32>,
    /// Base directories under which `bind` volumes may point.
    pub bind_allowed_bases: Vec<PathBuf>,
    /// The predefined `bridge` network.
    pub bridge: BridgeConfig,
    /// The cluster store global-scope networks live in: `etcd://HOST:PORT[,HOST:PORT…]`.
    pub cluster_store: Option<String>,
    /// This host's address on the underlay, which other hosts send overlay traffic to.
    pub advertise_addr: Option<std::net::IpAddr>,
    /// The CA certificate that signed etcd's certificate; any TLS file turns TLS on.
    pub cluster_store_ca: Option<PathBuf>,
    /// This host's client certificate for etcd.
    pub cluster_store_cert: Option<PathBuf>,
    /// The key of the client certificate.
    pub cluster_store_key: Option<PathBuf>,
    /// Seconds a host's registration outlives its last renewal: how long other hosts keep
    /// the endpoints of a host that died.
    pub cluster_ttl: u64,
}

/// The plugin directory of an installed wharf.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/wharf/plugins";

/// The default of `cluster_ttl`, in seconds.
pub const DEFAULT_CLUSTER_TTL: u64 = 15;

/// The config file read when present and no other is named.
pub const DEFAULT_CONFIG: &str = "/etc/wharf/wharf.toml";

impl Default for Config {
    fn default() -> Self {
        let mut plugin_dirs = vec![PathBuf::from(SYSTEM_PLUGIN_DIR)];
        if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            plugin_dirs.push(dir);
        }
        Config {
            root: "/var/lib/wharf".into(),
            socket: "/run/wharf/wharf.sock".into(),
            plugin_dirs,
            firewall: FirewallBackend::Nftables,
            firewall_table: wharf_linux::firewall::ruleset::DEFAULT_TABLE.into(),
            published_ports_respect_input: false,
            published_ports_mark: wharf_linux::firewall::DEFAULT_PUBLISHED_MARK,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            socket_group: String::new(),
            metrics_addr: String::new(),
            netns_dir: "/run/netns".into(),
            netns_etc_dir: "/etc/netns".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            default_address_pools: wharf_engine::ipam::docker_default_pools(),
            default_ipv6_pools: Vec::new(),
            default_mtu: None,
            bind_allowed_bases: Vec::new(),
            bridge: BridgeConfig::default(),
            cluster_store: None,
            advertise_addr: None,
            cluster_store_ca: None,
            cluster_store_cert: None,
            cluster_store_key: None,
            cluster_ttl: DEFAULT_CLUSTER_TTL,
        }
    }
}

impl Config {
    /// Read `path`; with `None`, read the default file if it exists, else use defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text).map_err(|e| format!("config {}: {e}", path.display())),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(format!("config {}: {e}", path.display())),
        }
    }

    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let t = &config.firewall_table;
        if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("firewall_table {t:?}: use letters, digits, '-' and '_' only"));
        }
        if !config.metrics_addr.is_empty() && config.metrics_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "metrics_addr {:?}: expected an address and port, such as 127.0.0.1:9323",
                config.metrics_addr
            ));
        }
        if config.published_ports_mark == 0 {
            return Err("published_ports_mark must have at least one bit set".into());
        }
        if let Some(m) = config.default_mtu {
            if !(68..=65535).contains(&m) {
                return Err(format!("default_mtu {m} is not between 68 and 65535"));
            }
        }
        Ok(config)
    }

    /// Check the cluster settings, once flags have overridden the file.
    pub fn check_cluster(&self) -> Result<(), String> {
        if self.cluster_store.is_some() && self.advertise_addr.is_none() {
            return Err(
                "cluster_store needs advertise_addr (--advertise-addr), this host's address on the underlay".into()
            );
        }
        if !(1..=3600).contains(&self.cluster_ttl) {
            return Err(format!("cluster_ttl {} is not between 1 and 3600 seconds", self.cluster_ttl));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_port_policy_is_read_with_a_hex_mark() {
        let c = Config::parse("published_ports_respect_input = true\npublished_ports_mark = 0x10\n").unwrap();
        assert!(c.published_ports_respect_input);
        assert_eq!(c.published_ports_mark, 0x10);
        assert!(Config::parse("published_ports_mark = 0").is_err());
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn settings_are_read_and_unknown_keys_refused() {
        let c = Config::parse(
            r#"
            root = "/srv/wharf"
            firewall = "none"
            default_mtu = 1400
            bind_allowed_bases = ["/srv/data"]
            default_address_pools = [{ base = "10.10.0.0/16", size = 24 }]
            [bridge]
            name = "br0"
            subnet = "10.99.0.0/16"
            "#,
        )
        .unwrap();
        assert_eq!(c.firewall, FirewallBackend::None);
        assert_eq!(c.default_mtu, Some(1400));
        assert_eq!(c.default_address_pools[0].size, 24);
        assert_eq!(c.bridge.name, "br0");
        assert!(Config::parse("bogus = 1").is_err());
        assert!(Config::parse("default_mtu = 5").is_err());
        assert!(Config::parse("metrics_addr = \"localhost\"").is_err());
        assert_eq!(Config::parse("metrics_addr = \"[::1]:9323\"").unwrap().metrics_addr, "[::1]:9323");
    }

    /// Whether no default pool overlaps the predefined bridge's subnet (which would leave a
    /// pool that is all taken: "all default IPv4 address pools are in use").
    fn pools_leave_the_bridge_out(c: &Config) -> bool {
        let b = c.bridge.subnet;
        c.default_address_pools.iter().all(|p| !p.base.contains(&b.network()) && !b.contains(&p.base.network()))
    }

    /// The sample shipped in `contrib/`.
    fn sample_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/wharf.toml")
    }

    #[test]
    fn the_sample_config_loads_and_names_every_setting() {
        let sample = Config::load(Some(&sample_path())).unwrap();
        assert!(pools_leave_the_bridge_out(&sample), "the default pools leave the predefined bridge's subnet out");
        assert_eq!(sample.firewall, FirewallBackend::Nftables);

        // Every setting Config has (Options set, so that they are written out) is in the file.
        let keys = |t: &toml::Table| -> Vec<String> {
            let mut k: Vec<String> = t
                .iter()
                .flat_map(|(k, v)| match v.as_table() {
                    Some(inner) => inner.keys().map(|i| format!("{k}.{i}")).collect(),
                    None => vec![k.clone()],
                })
                .collect();
            k.sort();
            k
        };
        let full = Config { default_mtu: Some(1500), ..Config::default() };
        let known: toml::Table = toml::from_str(&toml::to_string(&full).unwrap()).unwrap();
        let text = std::fs::read_to_string(sample_path()).unwrap();
        let written: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(keys(&written), keys(&known));
    }

    #[test]
    fn the_readme_config_parses_and_leaves_the_bridge_subnet_out_of_the_pools() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        let c = Config::parse(block).unwrap();
        assert!(pools_leave_the_bridge_out(&c), "{block}");
    }

    #[test]
    fn a_cluster_store_needs_an_advertised_address() {
        let c = Config::parse(
            r#"
            cluster_store = "etcd://10.0.0.1:2379"
            advertise_addr = "10.0.0.2"
            cluster_store_ca = "/etc/wharf/etcd-ca.pem"
            cluster_ttl = 5
            "#,
        )
        .unwrap();
        assert_eq!(c.advertise_addr, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(c.cluster_ttl, 5);
        c.check_cluster().unwrap();
        let e = Config::parse(r#"cluster_store = "etcd://10.0.0.1:2379""#).unwrap().check_cluster().unwrap_err();
        assert!(e.contains("advertise_addr"), "{e}");
        assert!(Config::parse("cluster_ttl = 0").unwrap().check_cluster().is_err());
    }
}
