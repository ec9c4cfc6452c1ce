//! `wharf network`: create, list, inspect, remove, prune, connect and disconnect.

use super::{
    by_name, encode, exists, filters_query, inspect, labels_text, list, pairs, print_json_line, print_steps, query,
    remove, s, short, table, ExistsArg, Failure, Format, ListArgs,
};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use wharf_client::Client;

#[derive(Subcommand)]
pub(super) enum NetworkCmd {
    /// Create a network.
    Create {
        /// Name.
        name: String,
        /// Driver.
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR form; repeat for several.
        #[arg(long)]
        subnet: Vec<String>,
        /// Range for dynamic addresses, inside a subnet.
        #[arg(long = "ip-range")]
        ip_range: Vec<String>,
        /// Gateway of a subnet.
        #[arg(long)]
        gateway: Vec<String>,
        /// Reserved address, `name=address`.
        #[arg(long = "aux-address")]
        aux_address: Vec<String>,
        /// Enable IPv6.
        #[arg(long)]
        ipv6: bool,
        /// Restrict external access.
        #[arg(long)]
        internal: bool,
        /// Allow sandboxes to attach at will.
        #[arg(long)]
        attachable: bool,
        /// Driver option `key=value`.
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// IPAM driver option `key=value`.
        #[arg(long = "ipam-opt")]
        ipam_opt: Vec<String>,
        /// Hold settings for other networks only (`--config-from`).
        #[arg(long = "config-only")]
        config_only: bool,
        /// Take subnets and options from this configuration-only network.
        #[arg(long = "config-from")]
        config_from: Option<String>,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Label `key=value`.
        #[arg(long)]
        label: Vec<String>,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show networks in detail.
    Inspect {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Exit 0 if the network exists, 1 if not; print nothing.
    Exists(ExistsArg),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Remove unused networks.
    Prune {
        /// Do not prompt (wharf never prompts).
        #[arg(short, long)]
        force: bool,
        /// Filter, `label=...`.
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
    /// Connect a sandbox to a network.
    Connect {
        /// Network.
        network: String,
        /// Sandbox name or id.
        sandbox: String,
        /// IPv4 address.
        #[arg(long)]
        ip: Option<String>,
        /// IPv6 address.
        #[arg(long)]
        ip6: Option<String>,
        /// DNS alias; repeat for several.
        #[arg(long)]
        alias: Vec<String>,
        /// MAC address.
        #[arg(long = "mac-address")]
        mac_address: Option<String>,
        /// Publish a port: `[HOST_IP:]HOST_PORT[-END]:PORT[/PROTO]`.
        #[arg(short = 'p', long = "publish")]
        publish: Vec<String>,
        /// Endpoint driver option `key=value`.
        #[arg(long = "driver-opt")]
        driver_opt: Vec<String>,
        /// Link-local address for the interface; repeat for several.
        #[arg(long = "link-local-ip")]
        link_local_ip: Vec<String>,
        /// Gateway priority: the network with the highest gives the sandbox's default route.
        #[arg(long = "gw-priority", default_value_t = 0, allow_negative_numbers = true)]
        gw_priority: i64,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Disconnect a sandbox from a network.
    Disconnect {
        /// Network.
        network: String,
        /// Sandbox name or id.
        sandbox: String,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Remove the endpoint even when its driver fails to give it up.
        #[arg(short, long)]
        force: bool,
    },
}

/// Match `--ip-range` and `--gateway` values to the `--subnet` that contains them.
fn ipam_configs(
    subnets: &[String],
    ranges: &[String],
    gateways: &[String],
    aux: &[String],
) -> Result<Vec<Value>, String> {
    let parse = |s: &str| s.parse::<ipnet::IpNet>().map_err(|e| format!("invalid subnet {s:?}: {e}"));
    let nets: Vec<ipnet::IpNet> = subnets.iter().map(|s| parse(s)).collect::<Result<_, _>>()?;
    let mut configs: Vec<Map<String, Value>> =
        subnets.iter().map(|s| Map::from_iter([("Subnet".to_string(), json!(s))])).collect();
    let owner = |addr: &str, what: &str| -> Result<usize, String> {
        let ip: std::net::IpAddr =
            addr.split('/').next().unwrap_or_default().parse().map_err(|e| format!("invalid {what} {addr:?}: {e}"))?;
        nets.iter().position(|n| n.contains(&ip)).ok_or_else(|| format!("no matching subnet for {what} {addr}"))
    };
    for r in ranges {
        let i = owner(r, "range")?;
        configs[i].insert("IPRange".into(), json!(r));
    }
    for g in gateways {
        let i = owner(g, "gateway")?;
        configs[i].insert("Gateway".into(), json!(g));
    }
    for (name, addr) in pairs("aux-address", aux)? {
        let i = owner(&addr, "auxiliary address")?;
        let entry = configs[i].entry("AuxiliaryAddresses").or_insert_with(|| json!({}));
        entry[name] = json!(addr);
    }
    Ok(configs.into_iter().map(Value::Object).collect())
}

/// Parse `-p [[HOST_IP:]HOST_PORT[-END]:]PORT[/PROTO]` into Docker's PortBindings map. A
/// missing or empty host port lets wharf pick one.
fn port_bindings(specs: &[String]) -> Result<Value, String> {
    let mut map = Map::new();
    for spec in specs {
        let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
        let (host, port) = rest.rsplit_once(':').unwrap_or(("", rest));
        if port.is_empty() {
            return Err(format!("invalid port {spec:?}: no port inside the sandbox"));
        }
        let (host_ip, host_port) = match host.rsplit_once(':') {
            Some((ip, p)) => (ip.trim_start_matches('[').trim_end_matches(']').to_string(), p.to_string()),
            None => (String::new(), host.to_string()),
        };
        let key = format!("{port}/{proto}");
        let entry = map.entry(key).or_insert_with(|| json!([]));
        if let Value::Array(a) = entry {
            a.push(json!({ "HostIp": host_ip, "HostPort": host_port }));
        }
    }
    Ok(Value::Object(map))
}

pub(super) async fn network(c: &Client, cmd: NetworkCmd) -> Result<(), Failure> {
    match cmd {
        NetworkCmd::Create {
            name,
            driver,
            subnet,
            ip_range,
            gateway,
            aux_address,
            ipv6,
            internal,
            attachable,
            opt,
            ipam_opt,
            config_only,
            config_from,
            dry_run,
            label,
        } => {
            if subnet.is_empty() && (!ip_range.is_empty() || !gateway.is_empty() || !aux_address.is_empty()) {
                return Err(Failure::Error("--ip-range, --gateway and --aux-address need --subnet".into()));
            }
            let body = json!({
                "Name": name, "Driver": driver, "EnableIPv6": ipv6, "Internal": internal, "Attachable": attachable,
                "IPAM": {
                    "Driver": "default", "Config": ipam_configs(&subnet, &ip_range, &gateway, &aux_address)?,
                    "Options": pairs("IPAM option", &ipam_opt)?,
                },
                "Options": pairs("option", &opt)?, "Labels": pairs("label", &label)?,
                "ConfigOnly": config_only, "ConfigFrom": config_from.map(|n| json!({ "Network": n })),
            });
            let v = c.call("POST", &format!("/networks/create{}", query(&[("dry-run", dry_run)])), Some(&body)).await?;
            if print_steps(&v) {
                return Ok(());
            }
            if !s(&v, "Warning").is_empty() {
                eprintln!("WARNING: {}", s(&v, "Warning"));
            }
            println!("{}", s(&v, "Id"));
        }
        NetworkCmd::Ls(args) => {
            let v = list(c, "/networks", &args).await?;
            let items = by_name(v.as_array().cloned().unwrap_or_default());
            let id = |n: &Value| short(s(n, "Id"), args.no_trunc);
            if args.quiet {
                items.iter().for_each(|n| println!("{}", id(n)));
            } else if args.format == Format::Json {
                for n in &items {
                    let flag = |k: &str, default: bool| n[k].as_bool().unwrap_or(default).to_string();
                    print_json_line(&json!({
                        "CreatedAt": s(n, "Created"), "Driver": s(n, "Driver"), "ID": id(n),
                        "IPv4": flag("EnableIPv4", true), "IPv6": flag("EnableIPv6", false),
                        "Internal": flag("Internal", false), "Labels": labels_text(n), "Name": s(n, "Name"),
                        "Scope": s(n, "Scope"),
                    }));
                }
            } else {
                let rows = items.iter().map(|n| vec![id(n), s(n, "Name"), s(n, "Driver"), s(n, "Scope")]).collect();
                table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows);
            }
        }
        NetworkCmd::Inspect { names } => inspect(c, "/networks", &names).await?,
        NetworkCmd::Exists(a) => exists(c, &format!("/networks/{}", encode(&a.name))).await?,
        NetworkCmd::Rm { names, dry_run } => remove(c, "/networks", &names, &query(&[("dry-run", dry_run)])).await?,
        NetworkCmd::Prune { force: _, filter } => {
            let q = filters_query(&filter)?;
            let v = c.call("POST", &format!("/networks/prune?{q}"), None).await?;
            let names: Vec<&str> =
                v["NetworksDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !names.is_empty() {
                println!("Deleted Networks:\n{}", names.join("\n"));
            }
        }
        NetworkCmd::Connect {
            network,
            sandbox,
            ip,
            ip6,
            alias,
            mac_address,
            publish,
            driver_opt,
            link_local_ip,
            gw_priority,
            dry_run,
        } => {
            let body = json!({
                "Container": sandbox,
                "EndpointConfig": {
                    "IPAMConfig": {
                        "IPv4Address": ip.unwrap_or_default(), "IPv6Address": ip6.unwrap_or_default(),
                        "LinkLocalIPs": link_local_ip,
                    },
                    "Aliases": alias, "MacAddress": mac_address.unwrap_or_default(),
                    "DriverOpts": pairs("driver option", &driver_opt)?, "PortBindings": port_bindings(&publish)?,
                    "GwPriority": gw_priority,
                }
            });
            let path = format!("/networks/{}/connect{}", encode(&network), query(&[("dry-run", dry_run)]));
            print_steps(&c.call("POST", &path, Some(&body)).await?);
        }
        NetworkCmd::Disconnect { network, sandbox, force, dry_run } => {
            let path = format!("/networks/{}/disconnect{}", encode(&network), query(&[("dry-run", dry_run)]));
            print_steps(&c.call("POST", &path, Some(&json!({ "Container": sandbox, "Force": force }))).await?);
        }
    }
    Ok(())
}
