//! The bridge driver's options, with Docker's names and value rules.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use wharf_sdk::{
    iface_prefix, mtu_option, valid_ifname, DriverError, DriverResult, GatewayMode, HostFacts, NetworkSpec,
    IFACE_PREFIX, MTU,
};

pub const NAME: &str = "com.docker.network.bridge.name";
pub const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
pub const ICC: &str = "com.docker.network.bridge.enable_icc";
pub const HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
pub const GATEWAY_MODE_V4: &str = "com.docker.network.bridge.gateway_mode_ipv4";
pub const GATEWAY_MODE_V6: &str = "com.docker.network.bridge.gateway_mode_ipv6";
pub const INHIBIT_IPV4: &str = "com.docker.network.bridge.inhibit_ipv4";
pub const DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";
pub const TRUSTED: &str = "com.docker.network.bridge.trusted_host_interfaces";

/// The options the driver reads.
pub const KNOWN: [&str; 11] = [
    NAME,
    MASQUERADE,
    ICC,
    HOST_BINDING,
    MTU,
    GATEWAY_MODE_V4,
    GATEWAY_MODE_V6,
    INHIBIT_IPV4,
    IFACE_PREFIX,
    DEFAULT_BRIDGE,
    TRUSTED,
];

/// A network's options, resolved against defaults and host facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub bridge: String,
    pub mtu: u32,
    pub masquerade: bool,
    pub icc: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_binding: Option<IpAddr>,
    pub gateway_mode_v4: GatewayMode,
    pub gateway_mode_v6: GatewayMode,
    pub inhibit_ipv4: bool,
    pub iface_prefix: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted: Vec<String>,
    /// The bridge's own MAC, chosen once when the driver creates the bridge; `None` for a
    /// bridge that existed before (its address is the operator's) and for networks made
    /// before the driver chose one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// A bridge that stood there before the network, as it was then; `None` for a bridge
    /// the driver creates (and for networks made before the driver kept this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<FoundBridge>,
}

/// What an adopted bridge was like before the network changed it: removing the network
/// puts each setting back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundBridge {
    pub mtu: u32,
    pub up: bool,
    /// The bridge's own MAC, the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `route_localnet` of the bridge, when the host facts had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_localnet: Option<String>,
}

impl Settings {
    /// The MAC of the network's gateway, the bridge's own, when the driver knows it.
    pub fn gateway_mac(&self) -> Option<&str> {
        self.mac.as_deref().or_else(|| self.found.as_ref().and_then(|f| f.mac.as_deref()))
    }
}

/// Go's `strconv.ParseBool`, which Docker uses for boolean options.
fn parse_bool(option: &str, v: &str) -> DriverResult<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(DriverError::invalid_option(option, format!("{v:?} is not a boolean"))),
    }
}

fn parse_mode(option: &str, v: &str) -> DriverResult<GatewayMode> {
    match v {
        "nat" => Ok(GatewayMode::Nat),
        "nat-unprotected" => Ok(GatewayMode::NatUnprotected),
        "routed" => Ok(GatewayMode::Routed),
        "isolated" => Ok(GatewayMode::Isolated),
        _ => Err(DriverError::invalid_option(
            option,
            format!("{v:?} is not one of nat, nat-unprotected, routed, isolated"),
        )),
    }
}

fn get<'a>(opts: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    opts.get(key).map(String::as_str)
}

/// Docker's list of trusted host interfaces: names separated by colons.
fn parse_trusted(v: &str) -> DriverResult<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for name in v.split(':').filter(|n| !n.is_empty()) {
        if !valid_ifname(name) {
            return Err(DriverError::invalid_option(TRUSTED, format!("{name:?} is not a valid interface name")));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Check and resolve a network's options. Unknown options are refused by name.
pub fn resolve(network: &NetworkSpec, facts: &HostFacts) -> DriverResult<Settings> {
    let o = &network.options;
    if let Some(bad) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(DriverError::unknown_option("bridge", bad));
    }
    let bridge = match get(o, NAME) {
        Some(n) if valid_ifname(n) => n.to_string(),
        Some(n) => return Err(DriverError::invalid_option(NAME, format!("{n:?} is not a valid interface name"))),
        None => format!("br-{}", network.short_id()),
    };
    let mtu = mtu_option(o, facts.mtu(), 65535)?;
    let flag = |key: &str, default: bool| get(o, key).map_or(Ok(default), |v| parse_bool(key, v));
    let host_binding = match get(o, HOST_BINDING) {
        None => None,
        Some(v) => Some(
            v.parse::<IpAddr>()
                .map_err(|_| DriverError::invalid_option(HOST_BINDING, format!("{v:?} is not an IP address")))?,
        )
        .filter(|ip| !ip.is_unspecified()),
    };
    let iface_prefix = iface_prefix(o)?;
    flag(DEFAULT_BRIDGE, false)?;
    Ok(Settings {
        bridge,
        mtu,
        masquerade: flag(MASQUERADE, true)?,
        icc: flag(ICC, true)?,
        host_binding,
        gateway_mode_v4: get(o, GATEWAY_MODE_V4).map_or(Ok(GatewayMode::Nat), |v| parse_mode(GATEWAY_MODE_V4, v))?,
        gateway_mode_v6: get(o, GATEWAY_MODE_V6).map_or(Ok(GatewayMode::Nat), |v| parse_mode(GATEWAY_MODE_V6, v))?,
        inhibit_ipv4: flag(INHIBIT_IPV4, false)?,
        iface_prefix,
        trusted: get(o, TRUSTED).map_or(Ok(Vec::new()), parse_trusted)?,
        mac: None,
        found: None,
    })
}
