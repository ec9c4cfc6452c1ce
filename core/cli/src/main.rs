//! `wharf`: the command-line client. Every command is one or two API calls; output is a
//! table for people or JSON (`--format json`) for scripts; errors are one line on stderr
//! with a non-zero exit code.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use wharf_client::Client;

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
    /// Print a shell completion script: `source <(wharf completion bash)`.
    Completion {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

/// How a command prints what it got.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Default)]
enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts, as the docker CLI prints it: one object per line for `ls`.
    Json,
}

#[derive(Args, Clone)]
struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Args)]
struct ListArgs {
    /// Only print ids (a volume's id is its name).
    #[arg(short, long)]
    quiet: bool,
    /// Filter, `key=value`; repeat for several.
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Do not truncate ids.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Args)]
struct ExistsArg {
    /// Name or id.
    name: String,
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
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
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
    /// Exit 0 if the volume exists, 1 if not; print nothing.
    Exists(ExistsArg),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm {
        /// Succeed for volumes that do not exist. A volume in use is refused regardless,
        /// as Docker does.
        #[arg(short, long)]
        force: bool,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,

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
    /// Exit 0 if the sandbox exists, 1 if not; print nothing.
    Exists(ExistsArg),
    /// Remove sandboxes.
    #[command(alias = "remove")]
    Rm {
        /// Disconnect from every network first.
        #[arg(short, long)]
        force: bool,
        /// Print the steps it would take, and change nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,

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

/// Why a command failed.
enum Failure {
    /// Print this (one line per failed object) and exit 1.
    Error(String),
    /// Exit with this code and print nothing (`exists`).
    Silent(i32),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Error(e)
    }
}

fn main() {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "wharf", &mut std::io::stdout());
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result =
        Client::new(&cli.host).map_err(Failure::from).and_then(|client| rt.block_on(run(&client, cli.command)));
    match result {
        Ok(()) => {}
        Err(Failure::Error(e)) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
        Err(Failure::Silent(code)) => std::process::exit(code),
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

/// Inspect output: an indented array, as `docker inspect` prints it.
fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// One object on one line, as the docker CLI prints `--format json`.
fn print_json_line(v: &Value) {
    println!("{v}");
}

/// Docker's `Labels` column: `k=v` pairs joined by commas, in key order.
fn labels_text(v: &Value) -> String {
    let labels =
        v["Labels"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())));
    labels.map(|l| l.collect::<Vec<_>>().join(",")).unwrap_or_default()
}

/// `items` in name order.
fn by_name(mut items: Vec<Value>) -> Vec<Value> {
    items.sort_by_key(|v| s(v, "Name"));
    items
}

/// Whether the object at `path` exists: `Silent(1)` when the daemon says 404. When the
/// daemon cannot tell, the error is printed and the exit code is 2, neither yes nor no.
async fn exists(c: &Client, path: &str) -> Result<(), Failure> {
    let answer = c.request("GET", path, None).await.and_then(|r| match r.status {
        200..=299 => Ok(true),
        404 => Ok(false),
        _ => Err(format!("Error response from daemon: {}", s(&r.body, "message"))),
    });
    match answer {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Silent(1)),
        Err(e) => {
            eprintln!("{e}");
            Err(Failure::Silent(2))
        }
    }
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

async fn run(c: &Client, cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Network(n) => network(c, n).await,
        Command::Volume(v) => volume(c, v).await,
        Command::Sandbox(s) => sandbox(c, s).await,
        Command::Plugin(PluginCmd::Ls(f)) => {
            let v = c.call("GET", "/wharf/plugins", None).await?;
            let plugins = by_name(v.as_array().cloned().unwrap_or_default());
            if f.format == Format::Json {
                plugins.iter().for_each(print_json_line);
            } else {
                let rows = plugins
                    .iter()
                    .map(|p| {
                        let or_dash = |v: String| if v.is_empty() { "-".to_string() } else { v };
                        vec![
                            s(p, "Name"),
                            s(p, "Kind"),
                            or_dash(s(p, "Version")),
                            or_dash(s(p, "SdkVersion")),
                            s(p, "AbiVersion"),
                            s(p, "Source"),
                        ]
                    })
                    .collect();
                table(&["NAME", "KIND", "VERSION", "SDK", "ABI", "SOURCE"], rows);
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
            if a.format.format == Format::Json {
                print_json_line(&v);
            } else {
                print_firewall(&v, a.ruleset);
            }
            Ok(())
        }
        Command::Version(f) => {
            let v = c.call("GET", "/version", None).await?;
            if f.format == Format::Json {
                print_json_line(&json!({ "Client": { "Version": env!("CARGO_PKG_VERSION") }, "Server": v }));
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
            if f.format == Format::Json {
                print_json_line(&v);
            } else {
                println!("Server Version: {}\nKernel Version: {}\nNetworks: {}\nVolumes: {}\nSandboxes: {}\nNetwork plugins: {}\nVolume plugins: {}",
                    s(&v, "ServerVersion"), s(&v, "KernelVersion"), s(&v, "Networks"), s(&v, "Volumes"), s(&v, "Sandboxes"),
                    v["Plugins"]["Network"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default(),
                    v["Plugins"]["Volume"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")).unwrap_or_default());
            }
            Ok(())
        }
        Command::Completion { .. } => unreachable!("completion is printed before connecting"),
    }
}

async fn network(c: &Client, cmd: NetworkCmd) -> Result<(), Failure> {
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

async fn inspect(c: &Client, base: &str, names: &[String]) -> Result<(), String> {
    let mut out = Vec::new();
    for n in names {
        out.push(c.call("GET", &format!("{base}/{}", encode(n)), None).await?);
    }
    print_json(&Value::Array(out));
    Ok(())
}

/// A query string of the flags that are set: `?force=1&dry-run=1`, or nothing.
fn query(flags: &[(&str, bool)]) -> String {
    let set: Vec<String> = flags.iter().filter(|(_, on)| *on).map(|(name, _)| format!("{name}=1")).collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("?{}", set.join("&"))
    }
}

/// Print a dry run's steps, one a line; whether `v` was a dry run's answer.
fn print_steps(v: &Value) -> bool {
    let Some(steps) = v.get("Steps").and_then(Value::as_array) else { return false };
    println!("dry run: nothing was changed; the steps would be:");
    for step in steps.iter().filter_map(Value::as_str) {
        println!("  {step}");
    }
    true
}

/// Remove each of `names`, printing the name of each one removed; the error of each one that
/// could not be is printed once, one line each, and the command fails.
async fn remove(c: &Client, base: &str, names: &[String], query: &str) -> Result<(), String> {
    let mut failed = Vec::new();
    for n in names {
        match c.call("DELETE", &format!("{base}/{}{query}", encode(n)), None).await {
            Ok(v) => {
                if !print_steps(&v) {
                    println!("{n}");
                }
            }
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
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

async fn volume(c: &Client, cmd: VolumeCmd) -> Result<(), Failure> {
    match cmd {
        VolumeCmd::Create { name, driver, opt, label, dry_run } => {
            let body = json!({ "Name": name.unwrap_or_default(), "Driver": driver, "DriverOpts": pairs("option", &opt)?, "Labels": pairs("label", &label)? });
            let v = c.call("POST", &format!("/volumes/create{}", query(&[("dry-run", dry_run)])), Some(&body)).await?;
            if !print_steps(&v) {
                println!("{}", s(&v, "Name"));
            }
        }
        VolumeCmd::Ls(args) => {
            let v = list(c, "/volumes", &args).await?;
            let items = by_name(v["Volumes"].as_array().cloned().unwrap_or_default());
            if args.quiet {
                items.iter().for_each(|v| println!("{}", s(v, "Name")));
            } else if args.format == Format::Json {
                for v in &items {
                    print_json_line(&json!({
                        "Availability": "N/A", "Driver": s(v, "Driver"), "Group": "N/A", "Labels": labels_text(v),
                        "Links": "N/A", "Mountpoint": s(v, "Mountpoint"), "Name": s(v, "Name"), "Scope": s(v, "Scope"),
                        "Size": "N/A", "Status": "N/A",
                    }));
                }
            } else {
                table(&["DRIVER", "VOLUME NAME"], items.iter().map(|v| vec![s(v, "Driver"), s(v, "Name")]).collect());
            }
        }
        VolumeCmd::Inspect { names } => inspect(c, "/wharf/volumes", &names).await?,
        VolumeCmd::Exists(a) => exists(c, &format!("/volumes/{}", encode(&a.name))).await?,
        VolumeCmd::Rm { force, names, dry_run } => {
            remove(c, "/volumes", &names, &query(&[("force", force), ("dry-run", dry_run)])).await?
        }
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

async fn sandbox(c: &Client, cmd: SandboxCmd) -> Result<(), Failure> {
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
            let v = list(c, "/wharf/sandboxes", &args).await?;
            let items = by_name(v.as_array().cloned().unwrap_or_default());
            let id = |sb: &Value| short(s(sb, "Id"), args.no_trunc);
            let networks = |sb: &Value| -> String {
                let names: Vec<String> =
                    sb["Networks"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
                names.join(",")
            };
            if args.quiet {
                items.iter().for_each(|sb| println!("{}", id(sb)));
            } else if args.format == Format::Json {
                for sb in &items {
                    print_json_line(&json!({
                        "CreatedAt": s(sb, "Created"), "ID": id(sb), "Labels": labels_text(sb), "Name": s(sb, "Name"),
                        "Netns": s(sb, "Netns"), "Networks": networks(sb),
                    }));
                }
            } else {
                let rows = items.iter().map(|sb| vec![id(sb), s(sb, "Name"), s(sb, "Netns"), networks(sb)]).collect();
                table(&["SANDBOX ID", "NAME", "NETNS", "NETWORKS"], rows);
            }
        }
        SandboxCmd::Inspect { names } => inspect(c, "/wharf/sandboxes", &names).await?,
        SandboxCmd::Exists(a) => exists(c, &format!("/wharf/sandboxes/{}", encode(&a.name))).await?,
        SandboxCmd::Rm { force, names, dry_run } => {
            remove(c, "/wharf/sandboxes", &names, &query(&[("force", force), ("dry-run", dry_run)])).await?
        }
    }
    Ok(())
}
