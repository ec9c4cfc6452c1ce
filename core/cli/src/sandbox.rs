//! `wharf sandbox`: create, list, inspect and remove.

use super::{
    by_name, encode, exists, inspect, labels_text, list, pairs, print_json_line, query, remove, s, short, table,
    ExistsArg, Failure, Format, ListArgs,
};
use clap::Subcommand;
use serde_json::{json, Value};
use wharf_client::Client;

#[derive(Subcommand)]
pub(super) enum SandboxCmd {
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

pub(super) async fn sandbox(c: &Client, cmd: SandboxCmd) -> Result<(), Failure> {
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
