//! Docker Engine API JSON shapes: how networks, volumes and sandboxes are shown, and how
//! create and connect requests are read.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use wharf_engine::engine::{ConnectRequest, NetworkCreateRequest, PoolRequest, VolumeCreateRequest};
use wharf_engine::error::{Error, Result};
use wharf_engine::model::{Endpoint, Network, Pool, Sandbox, Volume};
use wharf_sdk::{PortBinding, Protocol};

fn ipam_config(pools: &[Pool]) -> Vec<Value> {
    pools
        .iter()
        .filter_map(|p| {
            let subnet = p.subnet?;
            let mut m = Map::new();
            m.insert("Subnet".into(), json!(subnet.to_string()));
            if let Some(r) = p.ip_range {
                m.insert("IPRange".into(), json!(r.to_string()));
            }
            if let Some(g) = p.gateway {
                m.insert("Gateway".into(), json!(g.to_string()));
            }
            if !p.aux.is_empty() {
                let aux: BTreeMap<&String, String> = p.aux.iter().map(|(k, v)| (k, v.to_string())).collect();
                m.insert("AuxiliaryAddresses".into(), json!(aux));
            }
            Some(Value::Object(m))
        })
        .collect()
}

/// A network as Docker's `NetworkResource`, its fields in Docker's order (the map keeps
/// insertion order). `endpoints` fills `Containers` (inspect only). `IPAM.Options` is null
/// when none were given, as Docker shows it.
pub fn network(n: &Network, endpoints: &[(Endpoint, Sandbox)]) -> Value {
    let containers: Map<String, Value> = endpoints
        .iter()
        .map(|(e, s)| {
            (
                s.id.clone(),
                json!({
                    "Name": s.name,
                    "EndpointID": e.id,
                    "MacAddress": e.mac.clone().unwrap_or_default(),
                    "IPv4Address": e.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                    "IPv6Address": e.ipv6.map(|a| a.to_string()).unwrap_or_default(),
                }),
            )
        })
        .collect();
    let config: Vec<Value> = ipam_config(&n.ipv4).into_iter().chain(ipam_config(&n.ipv6)).collect();
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": n.scope,
        "Driver": n.driver,
        "EnableIPv4": n.enable_ipv4,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": if n.ipam_options.is_empty() { Value::Null } else { json!(n.ipam_options) },
            "Config": config,
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": n.config_from },
        "ConfigOnly": n.config_only,
        "Containers": containers,
        "Options": n.options.iter().chain(&n.unused_options).collect::<BTreeMap<_, _>>(),
        "Labels": n.labels,
    })
}

/// A volume as Docker's `Volume`; secrets in mount options are masked. `UsageData` is left
/// out, as Docker leaves it out everywhere but `/system/df` (see [`volume_with_usage`]).
pub fn volume(v: &Volume) -> Value {
    let options: BTreeMap<&String, String> = v
        .options
        .iter()
        .map(|(k, val)| (k, if k == "o" { wharf_sdk::mask_mount_secrets(val) } else { val.clone() }))
        .collect();
    let mut out = json!({
        "CreatedAt": v.created,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": options,
        "Scope": "local",
    });
    if !v.status.is_empty() {
        out["Status"] = json!(v.status);
    }
    out
}

/// A volume with `UsageData`: its size in bytes (`size`, or -1 when not measured) and how
/// many mount references it holds.
pub fn volume_with_usage(v: &Volume, size: i64) -> Value {
    let mut out = volume(v);
    out["UsageData"] = json!({ "Size": size, "RefCount": v.mounts.len() });
    out
}

/// A sandbox, with the networks it is attached to.
pub fn sandbox(s: &Sandbox, endpoints: &[(Endpoint, Network)]) -> Value {
    let networks: Map<String, Value> = endpoints
        .iter()
        .map(|(e, n)| {
            let ports: Vec<Value> = e
                .join
                .ports
                .iter()
                .map(|p| {
                    json!({
                        "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                        "HostPort": p.host_port.to_string(),
                        "ContainerPort": format!("{}/{}", p.port, p.protocol.as_str()),
                    })
                })
                .collect();
            (
                n.name.clone(),
                json!({
                    "NetworkID": n.id,
                    "EndpointID": e.id,
                    "Interface": e.join.interface.clone().unwrap_or_default(),
                    "MacAddress": e.mac.clone().unwrap_or_default(),
                    "IPAddress": e.ipv4.map(|a| a.addr().to_string()).unwrap_or_default(),
                    "IPPrefixLen": e.ipv4.map(|a| a.prefix_len()).unwrap_or(0),
                    "Gateway": e.join.gateway_v4.map(|a| a.to_string()).unwrap_or_default(),
                    "GlobalIPv6Address": e.ipv6.map(|a| a.addr().to_string()).unwrap_or_default(),
                    "GlobalIPv6PrefixLen": e.ipv6.map(|a| a.prefix_len()).unwrap_or(0),
                    "IPv6Gateway": e.join.gateway_v6.map(|a| a.to_string()).unwrap_or_default(),
                    "Aliases": e.aliases,
                    "GwPriority": e.gw_priority,
                    "DriverOpts": e.options.iter().chain(&e.unused_options).collect::<BTreeMap<_, _>>(),
                    "LinkLocalIPs": e.link_local_ips,
                    "Ports": ports,
                }),
            )
        })
        .collect();
    json!({
        "Id": s.id,
        "Name": s.name,
        "Netns": s.netns,
        "Owned": s.owned,
        "Created": s.created,
        "Dns": s.dns.servers,
        "DnsSearch": s.dns.search,
        "DnsOptions": s.dns.options,
        "Labels": s.labels,
        "Networks": networks,
    })
}

/// Parse a JSON request body; malformed JSON is a 400 naming the cause.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| Error::InvalidArgument(format!("malformed JSON request: {e}")))
}

fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| Error::InvalidArgument(format!("invalid {what} {s:?}: {e}")))
}

fn opt_parse<T: std::str::FromStr>(what: &str, s: &Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => parse(what, s).map(Some),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfigBody {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<IpamConfigBody>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkCreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    attachable: bool,
    #[serde(rename = "EnableIPv4")]
    enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    scope: Option<String>,
    ingress: bool,
    config_only: bool,
    config_from: Option<ConfigFromBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigFromBody {
    network: String,
}

/// Read a `POST /networks/create` body.
pub fn network_create(body: &[u8]) -> Result<NetworkCreateRequest> {
    let b: NetworkCreateBody = parse_body(body)?;
    if b.ingress {
        return Err(Error::InvalidArgument("ingress networks are not supported".into()));
    }
    if let Some(scope) = b.scope.as_deref().filter(|s| !s.is_empty() && *s != "local") {
        return Err(Error::InvalidArgument(format!("scope {scope:?} is not supported; only local")));
    }
    let ipam = b.ipam.unwrap_or_default();
    if let Some(d) = ipam.driver.as_deref().filter(|d| !d.is_empty() && *d != "default") {
        return Err(Error::NotFound(format!("IPAM driver {d:?} not found")));
    }
    let mut pools = Vec::new();
    for c in ipam.config.unwrap_or_default() {
        let mut aux = BTreeMap::new();
        for (k, v) in c.auxiliary_addresses.unwrap_or_default() {
            aux.insert(k, parse::<IpAddr>("auxiliary address", &v)?);
        }
        pools.push(PoolRequest {
            subnet: opt_parse::<IpNet>("subnet", &c.subnet)?,
            ip_range: opt_parse::<IpNet>("ip-range", &c.ip_range)?,
            gateway: opt_parse::<IpAddr>("gateway", &c.gateway)?,
            aux,
        });
    }
    let mut options = b.options.unwrap_or_default();
    // Docker's CLI sends the IPv6 switch both as a field and, in old versions, as an option.
    let ipv6_option = options.remove("com.docker.network.enable_ipv6").map(|v| v == "true");
    Ok(NetworkCreateRequest {
        name: b.name,
        driver: b.driver.unwrap_or_default(),
        internal: b.internal,
        attachable: b.attachable,
        enable_ipv4: b.enable_ipv4,
        enable_ipv6: b.enable_ipv6.or(ipv6_option).unwrap_or(false),
        pools,
        ipam_options: ipam.options.unwrap_or_default(),
        options,
        labels: b.labels.unwrap_or_default(),
        config_only: b.config_only,
        config_from: b.config_from.map(|c| c.network).unwrap_or_default(),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpamBody {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
    #[serde(rename = "IPv6Address")]
    ipv6_address: Option<String>,
    #[serde(rename = "LinkLocalIPs")]
    link_local_ips: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct PortBindingBody {
    host_ip: String,
    host_port: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfigBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpamBody>,
    aliases: Option<Vec<String>>,
    mac_address: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    port_bindings: Option<BTreeMap<String, Option<Vec<PortBindingBody>>>>,
    gw_priority: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfigBody>,
}

/// Parse Docker's port key `80/tcp` (protocol optional).
pub fn container_port(key: &str) -> Result<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        other => return Err(Error::InvalidArgument(format!("invalid protocol {other:?} in port {key:?}"))),
    };
    let port: u16 = parse("port", port)?;
    if port == 0 {
        return Err(Error::InvalidArgument(format!("invalid port {key:?}: port 0")));
    }
    Ok((port, protocol))
}

/// Parse a host port or range `8080` / `8080-8090`; empty or `0` means any.
pub fn host_ports(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() || s == "0" {
        return Ok((0, 0));
    }
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (parse("host port", a)?, parse("host port", b)?);
    if a == 0 || b < a {
        return Err(Error::InvalidArgument(format!("invalid host port range {s:?}")));
    }
    Ok((a, if b == a { 0 } else { b }))
}

/// Read a `POST /networks/{id}/connect` body. Besides Docker's fields, wharf reads
/// `EndpointConfig.PortBindings` in the shape of Docker's `HostConfig.PortBindings`:
/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`.
pub fn connect(network: &str, body: &[u8]) -> Result<ConnectRequest> {
    let b: ConnectBody = parse_body(body)?;
    let ec = b.endpoint_config.unwrap_or_default();
    let ipam = ec.ipam_config.unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in ec.port_bindings.unwrap_or_default() {
        let (port, protocol) = container_port(&key)?;
        for pb in bindings.unwrap_or_default() {
            let (host_port, host_port_end) = host_ports(&pb.host_port)?;
            let host_ip = match pb.host_ip.as_str() {
                "" => None,
                ip => Some(parse::<IpAddr>("host IP", ip)?),
            };
            ports.push(PortBinding { protocol, port, host_ip, host_port, host_port_end });
        }
    }
    Ok(ConnectRequest {
        network: network.to_string(),
        sandbox: b.container,
        ipv4: opt_parse("IPv4 address", &ipam.ipv4_address)?,
        ipv6: opt_parse("IPv6 address", &ipam.ipv6_address)?,
        mac: ec.mac_address.filter(|m| !m.is_empty()),
        aliases: ec.aliases.unwrap_or_default(),
        ports,
        options: ec.driver_opts.unwrap_or_default(),
        gw_priority: ec.gw_priority,
        link_local_ips: ipam
            .link_local_ips
            .unwrap_or_default()
            .iter()
            .map(|ip| parse("link-local address", ip))
            .collect::<Result<_>>()?,
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeCreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// Read a `POST /volumes/create` body.
pub fn volume_create(body: &[u8]) -> Result<VolumeCreateRequest> {
    let b: VolumeCreateBody = parse_body(body)?;
    Ok(VolumeCreateRequest {
        name: b.name,
        driver: b.driver,
        options: b.driver_opts.unwrap_or_default(),
        labels: b.labels.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_reads_docker_fields_and_port_bindings() {
        let body = br#"{"Container":"sb1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.0.0.5"},"Aliases":["web"],
            "PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}],"53/udp":[{"HostPort":"5300-5310"}]}}}"#;
        let r = connect("net", body).unwrap();
        assert_eq!(r.sandbox, "sb1");
        assert_eq!(r.ipv4, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(r.aliases, ["web"]);
        assert_eq!(r.ports.len(), 2);
        let udp = r.ports.iter().find(|p| p.protocol == Protocol::Udp).unwrap();
        assert_eq!((udp.host_port, udp.host_port_end), (5300, 5310));
    }

    #[test]
    fn bad_bodies_are_400s() {
        assert_eq!(connect("n", b"{").unwrap_err().status(), 400);
        assert_eq!(
            network_create(br#"{"Name":"x","IPAM":{"Config":[{"Subnet":"10.0.0.0/33"}]}}"#).unwrap_err().status(),
            400
        );
        assert_eq!(
            network_create(br#"{"Name":"x","IPAM":{"Config":[{"Gateway":"nope"}]}}"#).unwrap_err().status(),
            400
        );
        assert_eq!(
            connect("n", br#"{"Container":"s","EndpointConfig":{"PortBindings":{"80/xyz":[]}}}"#).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn passwords_in_volume_options_are_masked() {
        let v = Volume {
            options: BTreeMap::from([("o".to_string(), "addr=1.2.3.4,password=hunter2".to_string())]),
            ..Default::default()
        };
        assert_eq!(volume(&v)["Options"]["o"], "addr=1.2.3.4,password=***");
    }

    #[test]
    fn create_reads_ipam() {
        let r = network_create(
            br#"{"Name":"n","Driver":"bridge","EnableIPv6":true,"IPAM":{"Driver":"default","Config":[
            {"Subnet":"10.5.0.0/16","IPRange":"10.5.1.0/24","Gateway":"10.5.0.254","AuxiliaryAddresses":{"h":"10.5.0.9"}}]},
            "Options":{"com.docker.network.bridge.name":"b0"},"Labels":{"a":"b"}}"#,
        )
        .unwrap();
        assert!(r.enable_ipv6);
        assert_eq!(r.pools[0].gateway, Some("10.5.0.254".parse().unwrap()));
        assert_eq!(r.pools[0].aux["h"], "10.5.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(r.labels["a"], "b");
    }
}
