//! `wharf`: the command-line client. Every command is one or two API calls; output is a
//! table for people or JSON (`--format json`) for scripts; errors are one line on stderr
//! with a non-zero exit code.

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use wharf_core::client::Client;

#[derive(Parser)]
#[command(name = "wharf", version, about = "Container networks, volumes and sandboxes")]
struct Cli {
    /// Daemon socket to connect to.
    #[arg(
        short = 'H',
        long = "host",
        env = "WHARF_HOST",
        default_value = "unix:///run/wharf/wharf.sock",
        global = true
    )]
    host: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage sandboxes (network namespaces).
    #[command(subcommand)]
    Sandbox(SandboxCmd),
    /// Manage plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Manage wharf's firewall.
    #[command(subcommand)]
    Firewall(FirewallCmd),
    /// Show client and daemon versions.
    Version(FormatArg),
    /// Daemon-wide commands.
    #[command(subcommand)]
    System(SystemCmd),
}

#[derive(Args, Clone)]
struct FormatArg {
    /// Output format: `table` (default) or `json`.
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Args)]
struct ListArgs {
    /// Only print names or ids.
    #[arg(short, long)]
    quiet: bool,
    /// Filter, `key=value`; repeat for several.
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Output format: `table` or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Do not truncate ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Subcommand)]
enum NetworkCmd {
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
    /// Remove networks.
    #[command(alias = "remove")]
    Rm {
        /// Networks.
        #[arg(required = true)]
        names: Vec<String>,
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
    },
    /// Disconnect a sandbox from a network.
    Disconnect {
        /// Network.
        network: String,
        /// Sandbox name or id.
        sandbox: String,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a volume.
    Create {
        /// Name; empty makes an anonymous volume.
        name: Option<String>,
        /// Driver.
        #[arg(short, long, default_value = "local")]
        driver: String,
        /// Driver option `key=value`.
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        /// Label `key=value`.
        #[arg(long)]
        label: Vec<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show volumes in detail.
    Inspect {
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm {
        /// Succeed for volumes that do not exist. A volume in use is refused regardless,
        /// as Docker does.
        #[arg(short, long)]
        force: bool,
        /// Volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused volumes (anonymous ones unless --all).
    Prune {
        /// Remove every unused volume, not only anonymous ones.
        #[arg(short, long)]
        all: bool,
        /// Do not prompt (wharf never prompts).
        #[arg(short, long)]
        force: bool,
        /// Filter, `label=...`.
        #[arg(long = "filter")]
        filter: Vec<String>,
    },
    /// Take a mount reference and print the mountpoint.
    Mount {
        /// Volume.
        name: String,
        /// Who holds the reference.
        #[arg(long)]
        id: String,
    },
    /// Drop a mount reference.
    Unmount {
        /// Volume.
        name: String,
        /// Who held the reference.
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum SandboxCmd {
    /// Create a sandbox: a new named namespace, or one a runtime made (`--netns`).
    Create {
        /// Name.
        name: String,
        /// Existing namespace file, e.g. /proc/PID/ns/net.
        #[arg(long)]
        netns: Option<String>,
        /// Label `key=value`.
        #[arg(long)]
        label: Vec<String>,
        /// Upstream DNS server; repeat for several (default: the host's).
        #[arg(long)]
        dns: Vec<String>,
        /// DNS search domain; repeat for several (default: the host's).
        #[arg(long)]
        dns_search: Vec<String>,
        /// Resolver option such as `ndots:2`; repeat for several (default: the host's).
        #[arg(long)]
        dns_option: Vec<String>,
    },
    /// List sandboxes.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show sandboxes in detail.
    Inspect {
        /// Sandboxes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove sandboxes.
    #[command(alias = "remove")]
    Rm {
        /// Disconnect from every network first.
        #[arg(short, long)]
        force: bool,
        /// Sandboxes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// List registered drivers.
    #[command(alias = "list")]
    Ls(FormatArg),
}

#[derive(Subcommand)]
enum FirewallCmd {
    /// Re-create wharf's firewall tables from its state.
    Reload,
    /// Show wharf's firewall elements by network and endpoint, and whether the kernel has them.
    Show(FirewallShowArgs),
}

#[derive(Args)]
struct FirewallShowArgs {
    #[command(flatten)]
    format: FormatArg,
    /// Also print wharf's tables as nft lists them.
    #[arg(long)]
    ruleset: bool,
}

#[derive(Subcommand)]
enum SystemCmd {
    /// Show daemon information.
    Info(FormatArg),
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = Client::new(&cli.host).and_then(|client| rt.block_on(run(&client, cli.command)));
    if let Err(e) = result {
        eprintln!("{}", e.lines().next().unwrap_or_default());
        std::process::exit(1);
    }
}

fn pairs(what: &str, items: &[String]) -> Result<BTreeMap<String, String>, String> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ if what == "label" && !i.is_empty() => Ok((i.clone(), String::new())),
            _ => Err(format!("invalid {what} {i:?}: expected key=value")),
        })
        .collect()
}

fn filters_query(items: &[String]) -> Result<String, String> {
    if items.is_empty() {
        return Ok(String::new());
    }
    let mut map: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for i in items {
        let (k, v) = i.split_once('=').ok_or_else(|| format!("invalid filter {i:?}: expected key=value"))?;
        map.entry(k.to_string()).or_default().insert(v.to_string(), Value::Bool(true));
    }
    Ok(format!("filters={}", encode(&serde_json::to_string(&map).unwrap_or_default())))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let s: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| if i == last { c } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        println!("{}", s.join("   ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn short(id: String, no_trunc: bool) -> String {
    if no_trunc {
        id
    } else {
        id.chars().take(12).collect()
    }
}

/// `wharf firewall show` for people: each network, then each of its endpoints, with their
/// elements, marked `ok` when the kernel has them and `MISSING` when it does not.
fn print_firewall(v: &Value, ruleset: bool) {
    let facts = |facts: &Value, indent: &str| {
        for f in facts.as_array().into_iter().flatten() {
            for e in f["Elements"].as_array().into_iter().flatten() {
                let mark = if e["InKernel"].as_bool() == Some(true) { "ok     " } else { "MISSING" };
                println!("{indent}{mark} {}", s(e, "Element"));
            }
        }
    };
    for n in v["Networks"].as_array().into_iter().flatten() {
        let id: String = s(n, "Id").chars().take(12).collect();
        println!("network {} ({}, {id})", s(n, "Name"), s(n, "Driver"));
        facts(&n["Facts"], "  ");
        for e in n["Endpoints"].as_array().into_iter().flatten() {
            println!("  endpoint of sandbox {}", s(e, "Sandbox"));
            facts(&e["Facts"], "    ");
        }
    }
    if ruleset {
        print!("{}", s(v, "Ruleset"));
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
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

async fn list(client: &Client, path: &str, args: &ListArgs) -> Result<Value, String> {
    let q = filters_query(&args.filter)?;
    let sep = if q.is_empty() { "" } else { "?" };
    client.call("GET", &format!("{path}{sep}{q}"), None).await
}

async fn run(c: &Client, cmd: Command) -> Result<(), String> {
    match cmd {
        Command::Network(n) => network(c, n).await,
        Command::Volume(v) => volume(c, v).await,
        Command::Sandbox(s) => sandbox(c, s).await,
        Command::Plugin(PluginCmd::Ls(f)) => {
            let v = c.call("GET", "/wharf/plugins", None).await?;
            if f.format == "json" {
                print_json(&v);
            } else {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| vec![s(p, "Name"), s(p, "Kind"), s(p, "Source"), s(p, "AbiVersion")])
                    .collect();
                table(&["NAME", "KIND", "SOURCE", "ABI"], rows);
            }
            Ok(())
        }
        Command::Firewall(FirewallCmd::Reload) => {
            let v = c.call("POST", "/wharf/firewall/reload", None).await?;
            println!("firewall reloaded ({} facts)", s(&v, "Facts"));
            Ok(())
        }
        Command::Firewall(FirewallCmd::Show(a)) => {
            let v = c.call("GET", "/wharf/firewall", None).await?;
            if a.format.format == "json" {
                print_json(&v);
            } else {
                print_firewall(&v, a.ruleset);
            }
            Ok(())
        }
        Command::Version(f) => {
            let v = c.call("GET", "/version", None).await?;
            if f.format == "json" {
                print_json(&json!({ "Client": { "Version": env!("CARGO_PKG_VERSION") }, "Server": v }));
            } else {
                println!(
                    "Client:\n Version:\t{}\n\nServer:\n Version:\t{}\n API version:\t{} (minimum {})\n Kernel:\t{}",
                    env!("CARGO_PKG_VERSION"),
                    s(&v, "Version"),
                    s(&v, "ApiVersion"),
                    s(&v, "MinAPIVersion"),
                    s(&v, "KernelVersion")
                );
            }
            Ok(())
        }
        Command::System(SystemCmd::Info(f)) => {
            let v = c.call("GET", "/info", None).await?;
            if f.format == "json" {
                print_json(&v);
            } else {
                println!("Server Version: {}\nKernel Version: {}\nNetworks: {}\nVolumes: {}\nSandboxes: {}\nNetwork plugins: {}\nVolume plugins: {}",
                    s(&v, "ServerVersion"), s(&v, "KernelVersion"), s(&v, "Networks"), s(&v, "Volumes"), s(&v, "Sandboxes"),
                    v["Plugins"]["Network"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
                    v["Plugins"]["Volume"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default());
            }
            Ok(())
        }
    }
}

async fn network(c: &Client, cmd: NetworkCmd) -> Result<(), String> {
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
            label,
        } => {
            if subnet.is_empty() && (!ip_range.is_empty() || !gateway.is_empty() || !aux_address.is_empty()) {
                return Err("--ip-range, --gateway and --aux-address need --subnet".into());
            }
            let body = json!({
                "Name": name, "Driver": driver, "EnableIPv6": ipv6, "Internal": internal, "Attachable": attachable,
                "IPAM": { "Driver": "default", "Config": ipam_configs(&subnet, &ip_range, &gateway, &aux_address)? },
                "Options": pairs("option", &opt)?, "Labels": pairs("label", &label)?,
            });
            let v = c.call("POST", "/networks/create", Some(&body)).await?;
            println!("{}", s(&v, "Id"));
        }
        NetworkCmd::Ls(args) => {
            let v = list(c, "/networks", &args).await?;
            let items = v.as_array().cloned().unwrap_or_default();
            if args.format == "json" {
                print_json(&Value::Array(items));
            } else if args.quiet {
                items.iter().for_each(|n| println!("{}", short(s(n, "Id"), args.no_trunc)));
            } else {
                let rows = items
                    .iter()
                    .map(|n| vec![short(s(n, "Id"), args.no_trunc), s(n, "Name"), s(n, "Driver"), s(n, "Scope")])
                    .collect();
                table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows);
            }
        }
        NetworkCmd::Inspect { names } => inspect(c, "/networks", &names).await?,
        NetworkCmd::Rm { names } => remove(c, "/networks", &names, "").await?,
        NetworkCmd::Prune { force: _, filter } => {
            let q = filters_query(&filter)?;
            let v = c.call("POST", &format!("/networks/prune?{q}"), None).await?;
            let names: Vec<&str> =
                v["NetworksDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !names.is_empty() {
                println!("Deleted Networks:\n{}", names.join("\n"));
            }
        }
        NetworkCmd::Connect { network, sandbox, ip, ip6, alias, mac_address, publish, driver_opt } => {
            let body = json!({
                "Container": sandbox,
                "EndpointConfig": {
                    "IPAMConfig": { "IPv4Address": ip.unwrap_or_default(), "IPv6Address": ip6.unwrap_or_default() },
                    "Aliases": alias, "MacAddress": mac_address.unwrap_or_default(),
                    "DriverOpts": pairs("driver option", &driver_opt)?, "PortBindings": port_bindings(&publish)?,
                }
            });
            c.call("POST", &format!("/networks/{}/connect", encode(&network)), Some(&body)).await?;
        }
        NetworkCmd::Disconnect { network, sandbox } => {
            c.call(
                "POST",
                &format!("/networks/{}/disconnect", encode(&network)),
                Some(&json!({ "Container": sandbox })),
            )
            .await?;
        }
    }
    Ok(())
}

async fn inspect(c: &Client, base: &str, names: &[String]) -> Result<(), String> {
    let mut out = Vec::new();
    for n in names {
        out.push(c.call("GET", &format!("{base}/{}", encode(n)), None).await?);
    }
    print_json(&Value::Array(out));
    Ok(())
}

async fn remove(c: &Client, base: &str, names: &[String], query: &str) -> Result<(), String> {
    let mut failed = None;
    for n in names {
        match c.call("DELETE", &format!("{base}/{}{query}", encode(n)), None).await {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) if names.len() == 1 => Err(e),
        Some(_) => Err("some objects could not be removed".into()),
        None => Ok(()),
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i])
    }
}

async fn volume(c: &Client, cmd: VolumeCmd) -> Result<(), String> {
    match cmd {
        VolumeCmd::Create { name, driver, opt, label } => {
            let body = json!({ "Name": name.unwrap_or_default(), "Driver": driver, "DriverOpts": pairs("option", &opt)?, "Labels": pairs("label", &label)? });
            let v = c.call("POST", "/volumes/create", Some(&body)).await?;
            println!("{}", s(&v, "Name"));
        }
        VolumeCmd::Ls(args) => {
            let v = list(c, "/volumes", &args).await?;
            let items = v["Volumes"].as_array().cloned().unwrap_or_default();
            if args.format == "json" {
                print_json(&Value::Array(items));
            } else if args.quiet {
                items.iter().for_each(|v| println!("{}", s(v, "Name")));
            } else {
                table(&["DRIVER", "VOLUME NAME"], items.iter().map(|v| vec![s(v, "Driver"), s(v, "Name")]).collect());
            }
        }
        VolumeCmd::Inspect { names } => inspect(c, "/volumes", &names).await?,
        VolumeCmd::Rm { force, names } => remove(c, "/volumes", &names, if force { "?force=1" } else { "" }).await?,
        VolumeCmd::Prune { all, force: _, mut filter } => {
            if all {
                filter.push("all=true".into());
            }
            let q = filters_query(&filter)?;
            let v = c.call("POST", &format!("/volumes/prune?{q}"), None).await?;
            let names: Vec<&str> =
                v["VolumesDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if !names.is_empty() {
                println!("Deleted Volumes:\n{}\n", names.join("\n"));
            }
            println!("Total reclaimed space: {}", human_bytes(v["SpaceReclaimed"].as_u64().unwrap_or(0)));
        }
        VolumeCmd::Mount { name, id } => {
            let v =
                c.call("POST", &format!("/wharf/volumes/{}/mount", encode(&name)), Some(&json!({ "ID": id }))).await?;
            println!("{}", s(&v, "Mountpoint"));
        }
        VolumeCmd::Unmount { name, id } => {
            c.call("POST", &format!("/wharf/volumes/{}/unmount", encode(&name)), Some(&json!({ "ID": id }))).await?;
        }
    }
    Ok(())
}

async fn sandbox(c: &Client, cmd: SandboxCmd) -> Result<(), String> {
    match cmd {
        SandboxCmd::Create { name, netns, label, dns, dns_search, dns_option } => {
            let body = json!({
                "Name": name,
                "Netns": netns.unwrap_or_default(),
                "Labels": pairs("label", &label)?,
                "Dns": dns,
                "DnsSearch": dns_search,
                "DnsOptions": dns_option,
            });
            let v = c.call("POST", "/wharf/sandboxes", Some(&body)).await?;
            println!("{}", s(&v, "Id"));
        }
        SandboxCmd::Ls(args) => {
            let v = c.call("GET", "/wharf/sandboxes", None).await?;
            let items = v.as_array().cloned().unwrap_or_default();
            if args.format == "json" {
                print_json(&Value::Array(items));
            } else if args.quiet {
                items.iter().for_each(|s_| println!("{}", s(s_, "Name")));
            } else {
                let rows = items
                    .iter()
                    .map(|sb| {
                        let nets: Vec<String> =
                            sb["Networks"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                        vec![short(s(sb, "Id"), args.no_trunc), s(sb, "Name"), s(sb, "Netns"), nets.join(",")]
                    })
                    .collect();
                table(&["SANDBOX ID", "NAME", "NETNS", "NETWORKS"], rows);
            }
        }
        SandboxCmd::Inspect { names } => inspect(c, "/wharf/sandboxes", &names).await?,
        SandboxCmd::Rm { force, names } => {
            remove(c, "/wharf/sandboxes", &names, if force { "?force=1" } else { "" }).await?
        }
    }
    Ok(())
}
