//! Daemon configuration: the TOML file (`/etc/wharf/wharf.toml`) and its defaults. Flags
//! given to `wharfd` override the file.

use crate::ipam::DefaultPool;
use ipnet::IpNet;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Which firewall backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FirewallBackend {
    /// wharf's own nftables tables.
    #[default]
    Nftables,
    /// No firewall: the host manages its own.
    None,
}

/// The predefined `bridge` network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
}

/// The plugin directory of an installed wharf.
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/wharf/plugins";

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
            firewall_table: crate::firewall::ruleset::DEFAULT_TABLE.into(),
            published_ports_respect_input: false,
            published_ports_mark: crate::firewall::DEFAULT_PUBLISHED_MARK,
            log_level: "info".into(),
            netns_dir: "/run/netns".into(),
            netns_etc_dir: "/etc/netns".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            default_address_pools: crate::ipam::docker_default_pools(),
            default_ipv6_pools: Vec::new(),
            default_mtu: None,
            bind_allowed_bases: Vec::new(),
            bridge: BridgeConfig::default(),
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
    }
}
