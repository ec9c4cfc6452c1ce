//! `wharf volume`: create, list, inspect, remove, prune, mount and unmount.

use super::{
    by_name, encode, exists, filters_query, inspect, labels_text, list, pairs, print_json_line, print_steps, query,
    remove, s, table, ExistsArg, Failure, Format, ListArgs,
};
use clap::Subcommand;
use serde_json::{json, Value};
use wharf_client::Client;

#[derive(Subcommand)]
pub(super) enum VolumeCmd {
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

pub(super) async fn volume(c: &Client, cmd: VolumeCmd) -> Result<(), Failure> {
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
