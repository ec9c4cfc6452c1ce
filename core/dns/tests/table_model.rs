//! The name table against a model of it: random sequences of inserts, removals and
//! replacements go to both, and after each one every asker's every question (each name, in
//! other cases too, each short id, each address backwards) gets the same answer from both,
//! in the same order. The model keeps a plain list of entries per network and answers by
//! looking at every one of them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use wharf_dns::{Addresses, Entry, Origin, Table};

const NETWORKS: [&str; 3] = ["n1", "n2", "n3"];
const NAMES: [&str; 6] = ["alpha", "Beta", "web", "db", "", "CACHE"];
const HOSTS: [&str; 3] = ["host2", "host3", "host4"];

fn sandbox(i: usize) -> String {
    format!("{:012x}{}", 0xabc000 + i, "0".repeat(52))
}

/// What the table should do, done the plain way.
#[derive(Default)]
struct Model {
    networks: HashMap<String, Vec<Entry>>,
    attached: HashMap<String, Vec<String>>,
    turn: usize,
}

fn names_of(e: &Entry) -> Vec<String> {
    let mut names = vec![e.name.to_ascii_lowercase()];
    names.extend(e.aliases.iter().map(|a| a.to_ascii_lowercase()));
    names.extend(e.sandbox.get(..12).map(str::to_string));
    names.retain(|n| !n.is_empty());
    names
}

impl Model {
    fn insert(&mut self, network: &str, entry: Entry) {
        if entry.origin == Origin::Local {
            let nets = self.attached.entry(entry.sandbox.clone()).or_default();
            if !nets.iter().any(|n| n == network) {
                nets.push(network.to_string());
            }
        }
        let entries = self.networks.entry(network.to_string()).or_default();
        entries.retain(|e| e.sandbox != entry.sandbox);
        entries.push(entry);
    }

    fn remove(&mut self, network: &str, sandbox: &str) {
        if let Some(nets) = self.attached.get_mut(sandbox) {
            nets.retain(|n| n != network);
            if nets.is_empty() {
                self.attached.remove(sandbox);
            }
        }
        if let Some(entries) = self.networks.get_mut(network) {
            entries.retain(|e| e.sandbox != sandbox);
        }
    }

    fn replace(&mut self, network: &str, origin: &Origin, new: Vec<Entry>) {
        let entries = self.networks.entry(network.to_string()).or_default();
        entries.retain(|e| &e.origin != origin);
        entries.extend(new.into_iter().filter(|e| &e.origin == origin));
    }

    fn resolve(&mut self, asker: &str, name: &str) -> Option<Addresses> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let mut out = Addresses::default();
        let mut found = false;
        for network in self.attached.get(asker)? {
            for e in self.networks.get(network).into_iter().flatten() {
                if names_of(e).contains(&name) {
                    found = true;
                    out.ipv4.extend(e.ipv4.filter(|ip| !out.ipv4.contains(ip)));
                    out.ipv6.extend(e.ipv6.filter(|ip| !out.ipv6.contains(ip)));
                }
            }
        }
        if !found {
            return None;
        }
        if !out.ipv4.is_empty() {
            let n = self.turn % out.ipv4.len();
            out.ipv4.rotate_left(n);
        }
        if !out.ipv6.is_empty() {
            let n = self.turn % out.ipv6.len();
            out.ipv6.rotate_left(n);
        }
        self.turn += 1;
        Some(out)
    }

    fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String> {
        self.attached.get(asker)?.iter().find_map(|network| {
            let entries = self.networks.get(network)?;
            let holder =
                entries.iter().find(|e| e.ipv4.map(IpAddr::V4) == Some(ip) || e.ipv6.map(IpAddr::V6) == Some(ip));
            holder.map(|e| e.name.clone())
        })
    }

    fn entries(&self, network: &str) -> Vec<Entry> {
        self.networks.get(network).cloned().unwrap_or_default()
    }
}

fn v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8)
}

fn v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16)
}

fn random_case(rng: &mut StdRng, s: &str) -> String {
    s.chars().map(|c| if rng.random_bool(0.3) { c.to_ascii_uppercase() } else { c }).collect()
}

fn random_entry(rng: &mut StdRng, origin: Origin) -> Entry {
    let name = |rng: &mut StdRng| {
        let n = if rng.random_bool(0.15) {
            sandbox(rng.random_range(0..6))[..12].to_string()
        } else {
            NAMES[rng.random_range(0..NAMES.len())].to_string()
        };
        random_case(rng, &n)
    };
    Entry {
        sandbox: sandbox(rng.random_range(0..6)),
        name: name(rng),
        aliases: (0..rng.random_range(0..3)).map(|_| name(rng)).collect(),
        ipv4: rng.random_bool(0.9).then(|| v4(rng.random_range(2..8))),
        ipv6: rng.random_bool(0.4).then(|| v6(rng.random_range(2..5))),
        origin,
    }
}

fn random_origin(rng: &mut StdRng) -> Origin {
    match rng.random_range(0..5) {
        0 | 1 => Origin::Local,
        i => Origin::Cluster(HOSTS[i - 2].to_string()),
    }
}

fn sorted(mut entries: Vec<Entry>) -> Vec<String> {
    let mut out: Vec<String> = entries.drain(..).map(|e| format!("{e:?}")).collect();
    out.sort();
    out
}

/// Every question of every asker, answered alike by both.
fn same_answers(table: &Table, model: &mut Model, step: usize) {
    let askers: Vec<String> = (0..7).map(sandbox).collect();
    let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(NAMES.iter().map(|n| format!("{}.", n.to_ascii_uppercase())));
    names.extend((0..6).map(|i| sandbox(i)[..12].to_string()));
    names.push(sandbox(1)[..11].to_string());
    names.push(sandbox(1));
    let ips: Vec<IpAddr> = (0..9).map(|i| IpAddr::V4(v4(i))).chain((0..6).map(|i| IpAddr::V6(v6(i)))).collect();
    for asker in &askers {
        assert_eq!(table.networks_of(asker), model.attached.get(asker).cloned().unwrap_or_default(), "step {step}");
        for name in &names {
            assert_eq!(table.resolve(asker, name), model.resolve(asker, name), "step {step}: {asker} asks {name:?}");
        }
        for ip in &ips {
            assert_eq!(table.reverse(asker, *ip), model.reverse(asker, *ip), "step {step}: {asker} asks for {ip}");
        }
    }
    for network in NETWORKS {
        assert_eq!(sorted(table.entries(network)), sorted(model.entries(network)), "step {step}: {network}");
    }
}

#[test]
fn the_table_answers_as_a_plain_list_of_entries_would() {
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (table, mut model) = (Table::new(), Model::default());
        for step in 0..150 {
            let network = NETWORKS[rng.random_range(0..NETWORKS.len())];
            match rng.random_range(0..10) {
                0..=4 => {
                    let origin = random_origin(&mut rng);
                    let e = random_entry(&mut rng, origin);
                    table.insert(network, e.clone());
                    model.insert(network, e);
                }
                5..=7 => {
                    let id = sandbox(rng.random_range(0..7));
                    table.remove(network, &id);
                    model.remove(network, &id);
                }
                _ => {
                    let origin = random_origin(&mut rng);
                    let entries: Vec<Entry> = (0..rng.random_range(0..4))
                        .map(|_| {
                            let other = rng.random_bool(0.2);
                            let origin = if other { random_origin(&mut rng) } else { origin.clone() };
                            random_entry(&mut rng, origin)
                        })
                        .collect();
                    table.replace(network, &origin, entries.clone());
                    model.replace(network, &origin, entries);
                }
            }
            same_answers(&table, &mut model, step);
        }
    }
}
