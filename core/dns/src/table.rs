//! The name table: for each network, the sandboxes on it with their names, aliases and
//! addresses on that network. The engine writes it inside connect and disconnect; a cluster
//! store can write the entries of other hosts beside them (see [`Origin`]). Queries read it.
//!
//! A query from sandbox S is answered only from the networks S has an entry on, so names do
//! not cross the isolation between networks. A name is the sandbox's name, one of its
//! aliases, or its 12-character short id (what `docker ps` shows, and what Docker's resolver
//! answers to). Other prefixes of the id do not resolve: a shorter one could answer with
//! whichever sandbox happens to match, and the full 64-character id is longer than a DNS
//! label may be. Names are compared without case.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// The length of a short sandbox id.
pub const SHORT_ID: usize = 12;

/// Who put an entry in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// This host's engine: the sandbox is local and may also ask.
    Local,
    /// A cluster store, for a sandbox on another host (named by the string).
    Cluster(String),
}

/// One sandbox on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The sandbox's id.
    pub sandbox: String,
    /// The sandbox's name.
    pub name: String,
    /// Its aliases on this network.
    pub aliases: Vec<String>,
    /// Its IPv4 address on this network.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address on this network.
    pub ipv6: Option<Ipv6Addr>,
    /// Who put it here.
    pub origin: Origin,
}

impl Entry {
    /// The names the entry answers to, lower-cased.
    fn keys(&self) -> impl Iterator<Item = String> + '_ {
        let short = self.sandbox.get(..SHORT_ID);
        std::iter::once(self.name.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(short)
            .filter(|k| !k.is_empty())
            .map(str::to_ascii_lowercase)
    }
}

/// One network's entries and their indices.
#[derive(Default)]
struct Network {
    entries: Vec<Entry>,
    /// Lower-cased name -> indices into `entries`.
    names: HashMap<String, Vec<usize>>,
    /// Address -> index into `entries`.
    addrs: HashMap<IpAddr, usize>,
}

impl Network {
    fn reindex(&mut self) {
        self.names.clear();
        self.addrs.clear();
        for (i, e) in self.entries.iter().enumerate() {
            for k in e.keys() {
                let holders = self.names.entry(k).or_default();
                if !holders.contains(&i) {
                    holders.push(i);
                }
            }
            for ip in e.ipv4.map(IpAddr::V4).into_iter().chain(e.ipv6.map(IpAddr::V6)) {
                self.addrs.entry(ip).or_insert(i);
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    networks: HashMap<String, Network>,
    /// Local sandbox id -> the networks it has an entry on.
    attached: HashMap<String, Vec<String>>,
}

/// The addresses a name has on the networks the asker shares with its holders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses {
    /// IPv4 addresses, rotated per query.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses, rotated per query.
    pub ipv6: Vec<Ipv6Addr>,
}

/// The name table.
#[derive(Default)]
pub struct Table {
    inner: RwLock<Inner>,
    /// Turns the order of answers with several addresses, one step per query.
    turn: AtomicUsize,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Put `entry` on `network`, replacing the entry its sandbox had there.
    pub fn insert(&self, network: &str, entry: Entry) {
        let mut inner = self.write();
        if entry.origin == Origin::Local {
            let nets = inner.attached.entry(entry.sandbox.clone()).or_default();
            if !nets.iter().any(|n| n == network) {
                nets.push(network.to_string());
            }
        }
        let net = inner.networks.entry(network.to_string()).or_default();
        net.entries.retain(|e| e.sandbox != entry.sandbox);
        net.entries.push(entry);
        net.reindex();
    }

    /// Take sandbox `sandbox`'s entry off `network`; absent is fine.
    pub fn remove(&self, network: &str, sandbox: &str) {
        let mut inner = self.write();
        if let Some(nets) = inner.attached.get_mut(sandbox) {
            nets.retain(|n| n != network);
            if nets.is_empty() {
                inner.attached.remove(sandbox);
            }
        }
        if let Some(net) = inner.networks.get_mut(network) {
            net.entries.retain(|e| e.sandbox != sandbox);
            if net.entries.is_empty() {
                inner.networks.remove(network);
            } else {
                net.reindex();
            }
        }
    }

    /// Replace every entry of `origin` on `network` with `entries`: how a cluster store
    /// hands over the remote sandboxes of a network it watched change.
    pub fn replace(&self, network: &str, origin: &Origin, entries: Vec<Entry>) {
        let mut inner = self.write();
        let net = inner.networks.entry(network.to_string()).or_default();
        net.entries.retain(|e| &e.origin != origin);
        net.entries.extend(entries.into_iter().filter(|e| &e.origin == origin));
        if net.entries.is_empty() {
            inner.networks.remove(network);
        } else {
            net.reindex();
        }
    }

    /// The networks local sandbox `sandbox` has an entry on.
    pub fn networks_of(&self, sandbox: &str) -> Vec<String> {
        self.read().attached.get(sandbox).cloned().unwrap_or_default()
    }

    /// The entries of `network`.
    pub fn entries(&self, network: &str) -> Vec<Entry> {
        self.read().networks.get(network).map(|n| n.entries.clone()).unwrap_or_default()
    }

    /// What `name` resolves to for sandbox `asker`: `None` when no network the asker is on
    /// knows it, else every address of its holders there (possibly none of a family).
    pub fn resolve(&self, asker: &str, name: &str) -> Option<Addresses> {
        let mut out = Addresses::default();
        self.resolve_into(asker, name, &mut out).then_some(out)
    }

    /// [`Table::resolve`] into `out` (emptied first), whose room is reused: whether the
    /// name is known.
    pub fn resolve_into(&self, asker: &str, name: &str, out: &mut Addresses) -> bool {
        out.ipv4.clear();
        out.ipv6.clear();
        let name = name.strip_suffix('.').unwrap_or(name);
        let key = match name.bytes().any(|b| b.is_ascii_uppercase()) {
            true => std::borrow::Cow::Owned(name.to_ascii_lowercase()),
            false => std::borrow::Cow::Borrowed(name),
        };
        let inner = self.read();
        let mut found = false;
        let Some(attached) = inner.attached.get(asker) else { return false };
        for network in attached.iter() {
            let Some(net) = inner.networks.get(network) else { continue };
            let Some(holders) = net.names.get(&*key) else { continue };
            found = true;
            for e in holders.iter().map(|&i| &net.entries[i]) {
                out.ipv4.extend(e.ipv4.filter(|ip| !out.ipv4.contains(ip)));
                out.ipv6.extend(e.ipv6.filter(|ip| !out.ipv6.contains(ip)));
            }
        }
        drop(inner);
        if found {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            if !out.ipv4.is_empty() {
                let n = turn % out.ipv4.len();
                out.ipv4.rotate_left(n);
            }
            if !out.ipv6.is_empty() {
                let n = turn % out.ipv6.len();
                out.ipv6.rotate_left(n);
            }
        }
        found
    }

    /// The name of the sandbox that has `ip` on a network `asker` is on.
    pub fn reverse(&self, asker: &str, ip: IpAddr) -> Option<String> {
        let inner = self.read();
        inner.attached.get(asker)?.iter().find_map(|network| {
            let net = inner.networks.get(network)?;
            net.addrs.get(&ip).map(|&i| net.entries[i].name.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000";
    const B: &str = "bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000";
    const C: &str = "cccccccccccc0000000000000000000000000000000000000000000000000000";

    fn entry(id: &str, name: &str, aliases: &[&str], v4: &str, v6: Option<&str>) -> Entry {
        Entry {
            sandbox: id.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4: Some(v4.parse().unwrap()),
            ipv6: v6.map(|v| v.parse().unwrap()),
            origin: Origin::Local,
        }
    }

    fn v4(a: &Addresses) -> Vec<String> {
        a.ipv4.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn name_alias_and_ids_resolve_case_insensitively_on_a_shared_network() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &[], "10.0.0.2", None));
        t.insert("n1", entry(B, "beta", &["Web"], "10.0.0.3", Some("fd00::3")));
        for name in ["beta", "BETA.", "web", "bbbbbbbbbbbb"] {
            let got = t.resolve(A, name).unwrap_or_else(|| panic!("{name} did not resolve"));
            assert_eq!(v4(&got), ["10.0.0.3"], "{name}");
        }
        assert_eq!(t.resolve(A, "beta").unwrap().ipv6, ["fd00::3".parse::<Ipv6Addr>().unwrap()]);
        assert_eq!(t.resolve(A, "bbbbbbbbbbb"), None, "an 11-character prefix is no name");
        assert_eq!(t.resolve(A, B), None, "the full id is no name");
        assert_eq!(t.resolve(A, "alpha").map(|a| v4(&a)), Some(vec!["10.0.0.2".to_string()]));
    }

    #[test]
    fn names_do_not_cross_networks() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &[], "10.0.0.2", None));
        t.insert("n1", entry(B, "beta", &[], "10.0.0.3", None));
        t.insert("n2", entry(C, "gamma", &[], "10.1.0.2", None));
        assert_eq!(t.resolve(A, "gamma"), None);
        assert_eq!(t.resolve(C, "beta"), None);
        assert_eq!(t.reverse(A, "10.1.0.2".parse().unwrap()), None);
        assert_eq!(t.reverse(C, "10.1.0.2".parse().unwrap()).as_deref(), Some("gamma"));
        assert_eq!(t.resolve("unknown", "beta"), None);
    }

    #[test]
    fn a_sandbox_on_two_networks_is_found_at_the_address_of_the_shared_one() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &[], "10.0.0.2", None));
        t.insert("n1", entry(B, "beta", &[], "10.0.0.3", None));
        t.insert("n2", entry(B, "beta", &[], "10.1.0.3", None));
        t.insert("n2", entry(C, "gamma", &[], "10.1.0.2", None));
        assert_eq!(v4(&t.resolve(A, "beta").unwrap()), ["10.0.0.3"]);
        assert_eq!(v4(&t.resolve(C, "beta").unwrap()), ["10.1.0.3"]);
    }

    #[test]
    fn a_shared_alias_gives_every_address_in_turn() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &["web"], "10.0.0.2", None));
        t.insert("n1", entry(B, "beta", &["web"], "10.0.0.3", None));
        let first = v4(&t.resolve(A, "web").unwrap());
        let second = v4(&t.resolve(A, "web").unwrap());
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], second[1]);
        assert_eq!(first[1], second[0]);
    }

    #[test]
    fn a_known_name_without_addresses_of_a_family_is_known_all_the_same() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &[], "10.0.0.2", None));
        let got = t.resolve(A, "alpha").unwrap();
        assert!(got.ipv6.is_empty());
    }

    #[test]
    fn removal_takes_names_and_attachment_away_at_once() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &[], "10.0.0.2", None));
        t.insert("n1", entry(B, "beta", &["web"], "10.0.0.3", None));
        t.remove("n1", B);
        assert_eq!(t.resolve(A, "beta"), None);
        assert_eq!(t.resolve(A, "web"), None);
        assert_eq!(t.resolve(B, "alpha"), None, "a removed sandbox asks nothing of the network");
        assert_eq!(t.networks_of(B), Vec::<String>::new());
        t.remove("n1", A);
        assert!(t.entries("n1").is_empty());
    }

    #[test]
    fn cluster_entries_answer_but_do_not_ask_and_are_replaced_as_a_whole() {
        let t = Table::new();
        t.insert("ov", entry(A, "alpha", &[], "10.0.0.2", None));
        let remote = |id: &str, name: &str, ip: &str| Entry {
            origin: Origin::Cluster("host2".into()),
            ..entry(id, name, &[], ip, None)
        };
        let origin = Origin::Cluster("host2".into());
        t.replace("ov", &origin, vec![remote(B, "beta", "10.0.0.130")]);
        assert_eq!(v4(&t.resolve(A, "beta").unwrap()), ["10.0.0.130"]);
        assert_eq!(t.resolve(B, "alpha"), None);
        t.replace("ov", &origin, vec![remote(C, "gamma", "10.0.0.131")]);
        assert_eq!(t.resolve(A, "beta"), None);
        assert!(t.resolve(A, "gamma").is_some());
        assert!(t.resolve(A, "alpha").is_some(), "local entries stay");
    }

    #[test]
    fn reinserting_replaces_the_old_entry() {
        let t = Table::new();
        t.insert("n1", entry(A, "alpha", &["old"], "10.0.0.2", None));
        t.insert("n1", entry(A, "alpha", &["new"], "10.0.0.9", None));
        assert_eq!(t.resolve(A, "old"), None);
        assert_eq!(v4(&t.resolve(A, "new").unwrap()), ["10.0.0.9"]);
        assert_eq!(t.networks_of(A), ["n1"]);
    }
}
