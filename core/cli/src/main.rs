//! `wharf`: the command-line client. Every command is one or two API calls; output is a
//! table for people or JSON (`--format json`) for scripts; errors are one line on stderr
//! with a non-zero exit code. The network, volume and sandbox commands have a module each;
//! the small command groups and the helpers they share are here.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use wharf_client::Client;

mod network;
mod sandbox;
mod volume;

use network::{network, NetworkCmd};
use sandbox::{sandbox, SandboxCmd};
use volume::{volume, VolumeCmd};

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
