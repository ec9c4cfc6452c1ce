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

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

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

/// `name` without case: borrowed when it has none to lose.
fn lower(name: &str) -> Cow<'_, str> {
    match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(name.to_ascii_lowercase()),
        false => Cow::Borrowed(name),
    }
}

/// An entry's place in its network's slots.
type Slot = u32;

/// No slot: the end of a list.
const NONE: Slot = Slot::MAX;

mod holders;
use holders::{hold, release, Holders};

/// An entry as the table keeps it.
struct Record {
    sandbox: Arc<str>,
    name: Box<str>,
    aliases: Box<[Box<str>]>,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    /// Index into its network's origins.
    origin: u32,
    /// Its neighbours in the list of its origin's entries.
    prev: Slot,
    next: Slot,
}

impl Record {
    /// The names it answers to, as given (compared without case).
    fn keys(&self) -> impl Iterator<Item = &str> {
        let short = self.sandbox.get(..SHORT_ID);
        std::iter::once(&*self.name).chain(self.aliases.iter().map(|a| &**a)).chain(short).filter(|k| !k.is_empty())
    }

    fn addrs(&self) -> impl Iterator<Item = IpAddr> {
        self.ipv4.map(IpAddr::V4).into_iter().chain(self.ipv6.map(IpAddr::V6))
    }
}

/// The entries of one origin on a network, first to last.
struct List {
    origin: Origin,
    first: Slot,
    last: Slot,
}

/// One network's entries and their indices. Every change costs what the entry's own
/// names and addresses cost, whatever else is on the network.
#[derive(Default)]
struct Network {
    slots: Vec<Option<Record>>,
    /// Slots free for the next entry.
    free: Vec<Slot>,
    /// Sandbox id -> its entries (one, but for a sandbox that two origins both name).
    sandboxes: HashMap<Arc<str>, Holders>,
    /// Lower-cased name -> its holders.
    names: HashMap<Box<str>, Holders>,
    /// Address -> its holders; the first answers for it.
    addrs: HashMap<IpAddr, Holders>,
    /// The origins with entries here. The list of one that has none left is taken over by
    /// the next new origin, so hosts that come and go leave nothing behind.
    origins: Vec<List>,
}

impl Network {
    fn record(&self, slot: Slot) -> &Record {
        self.slots[slot as usize].as_ref().expect("an indexed slot holds a record")
    }

    fn record_mut(&mut self, slot: Slot) -> &mut Record {
        self.slots[slot as usize].as_mut().expect("an indexed slot holds a record")
    }

    fn is_empty(&self) -> bool {
        self.sandboxes.is_empty()
    }

    /// Add `entry`, its sandbox id being `sandbox`, after every other.
    fn add(&mut self, entry: Entry, sandbox: Arc<str>) {
        let origin = match self.origins.iter().position(|l| l.origin == entry.origin) {
            Some(i) => i,
            None => {
                let list = List { origin: entry.origin, first: NONE, last: NONE };
                match self.origins.iter().position(|l| l.first == NONE) {
                    Some(i) => {
                        self.origins[i] = list;
                        i
                    }
                    None => {
                        self.origins.push(list);
                        self.origins.len() - 1
                    }
                }
            }
        };
        let record = Record {
            sandbox,
            name: entry.name.into(),
            aliases: entry.aliases.into_iter().map(String::into_boxed_str).collect(),
            ipv4: entry.ipv4,
            ipv6: entry.ipv6,
            origin: origin as u32,
            prev: self.origins[origin].last,
            next: NONE,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                Slot::try_from(self.slots.len() - 1).expect("fewer entries on a network than slots")
            }
        };
        let list = &mut self.origins[origin];
        match list.last {
            NONE => list.first = slot,
            last => self.slots[last as usize].as_mut().expect("a listed slot holds a record").next = slot,
        }
        self.origins[origin].last = slot;
        for key in record.keys() {
            hold(&mut self.names, &*lower(key), || key.to_ascii_lowercase().into(), slot);
        }
        for ip in record.addrs() {
            hold(&mut self.addrs, &ip, || ip, slot);
        }
        hold(&mut self.sandboxes, &*record.sandbox, || record.sandbox.clone(), slot);
        self.slots[slot as usize] = Some(record);
    }

    /// Take the entry in `slot` out.
    fn take(&mut self, slot: Slot) {
        let record = self.slots[slot as usize].take().expect("a taken slot holds a record");
        self.free.push(slot);
        for key in record.keys() {
            release(&mut self.names, &*lower(key), slot);
        }
        for ip in record.addrs() {
            release(&mut self.addrs, &ip, slot);
        }
        release(&mut self.sandboxes, &*record.sandbox, slot);
        let list = &mut self.origins[record.origin as usize];
        match record.prev {
            NONE => list.first = record.next,
            prev => self.record_mut(prev).next = record.next,
        }
        let list = &mut self.origins[record.origin as usize];
        match record.next {
            NONE => list.last = record.prev,
            next => self.record_mut(next).prev = record.prev,
        }
    }

    /// Take every entry of sandbox `sandbox` out.
    fn take_sandbox(&mut self, sandbox: &str) {
        while let Some(&slot) = self.sandboxes.get(sandbox).and_then(|h| h.as_slice().first()) {
            self.take(slot);
        }
    }

    /// Take every entry of `origin` out.
    fn take_origin(&mut self, origin: &Origin) {
        let Some(i) = self.origins.iter().position(|l| &l.origin == origin) else { return };
        while self.origins[i].first != NONE {
            self.take(self.origins[i].first);
        }
    }

    /// Every entry: origin by origin, each origin's in the order they came.
    fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for list in &self.origins {
            let mut slot = list.first;
            while slot != NONE {
                let r = self.record(slot);
                out.push(Entry {
                    sandbox: r.sandbox.to_string(),
                    name: r.name.to_string(),
                    aliases: r.aliases.iter().map(|a| a.to_string()).collect(),
                    ipv4: r.ipv4,
                    ipv6: r.ipv6,
                    origin: list.origin.clone(),
                });
                slot = r.next;
            }
        }
        out
    }
}

#[derive(Default)]
struct Inner {
    networks: HashMap<Arc<str>, Network>,
    /// Local sandbox id -> the networks it has an entry on. Ids and network ids are
    /// shared with the networks' own, not copied per entry.
    attached: HashMap<Arc<str>, Vec<Arc<str>>>,
}

impl Inner {
    /// The table's own copy of network id `network`, made when it has none.
    fn network_id(&self, network: &str) -> Arc<str> {
        self.networks.get_key_value(network).map_or_else(|| network.into(), |(k, _)| k.clone())
    }

    /// The table's own copy of sandbox id `sandbox`, made when it has none.
    fn sandbox_id(&self, sandbox: &str, net: Option<&Network>) -> Arc<str> {
        let known = self.attached.get_key_value(sandbox).map(|(k, _)| k);
        let known = known.or_else(|| net?.sandboxes.get_key_value(sandbox).map(|(k, _)| k));
        known.map_or_else(|| sandbox.into(), Arc::clone)
    }
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

    /// The table's own copy of sandbox id `sandbox`, for those that keep it beside the
    /// table; a new one when the table has none.
    pub(crate) fn sandbox_id(&self, sandbox: &str) -> Arc<str> {
        self.read().sandbox_id(sandbox, None)
    }

    /// Put `entry` on `network`, replacing the entry its sandbox had there.
    pub fn insert(&self, network: &str, entry: Entry) {
        let mut inner = self.write();
        let network = inner.network_id(network);
        let sandbox = inner.sandbox_id(&entry.sandbox, inner.networks.get(&network));
        if entry.origin == Origin::Local {
            let nets = inner.attached.entry(sandbox.clone()).or_default();
            if !nets.contains(&network) {
                nets.reserve_exact(1);
                nets.push(network.clone());
            }
        }
        let net = inner.networks.entry(network).or_default();
        net.take_sandbox(&sandbox);
        net.add(entry, sandbox);
    }

    /// Take sandbox `sandbox`'s entry off `network`; absent is fine.
    pub fn remove(&self, network: &str, sandbox: &str) {
        let mut inner = self.write();
        if let Some(nets) = inner.attached.get_mut(sandbox) {
            nets.retain(|n| &**n != network);
            if nets.is_empty() {
                inner.attached.remove(sandbox);
            }
        }
        if let Some(net) = inner.networks.get_mut(network) {
            net.take_sandbox(sandbox);
            if net.is_empty() {
                inner.networks.remove(network);
            }
        }
    }

    /// Replace every entry of `origin` on `network` with `entries`: how a cluster store
    /// hands over the remote sandboxes of a network it watched change.
    pub fn replace(&self, network: &str, origin: &Origin, entries: Vec<Entry>) {
        let mut inner = self.write();
        let network = inner.network_id(network);
        let mut net = inner.networks.remove(&network).unwrap_or_default();
        net.take_origin(origin);
        for e in entries.into_iter().filter(|e| &e.origin == origin) {
            let sandbox = inner.sandbox_id(&e.sandbox, Some(&net));
            net.add(e, sandbox);
        }
        if !net.is_empty() {
            inner.networks.insert(network, net);
        }
    }

    /// The networks local sandbox `sandbox` has an entry on.
    pub fn networks_of(&self, sandbox: &str) -> Vec<String> {
        let inner = self.read();
        inner.attached.get(sandbox).map(|nets| nets.iter().map(|n| n.to_string()).collect()).unwrap_or_default()
    }

    /// The entries of `network`: origin by origin, each origin's in the order they came.
    pub fn entries(&self, network: &str) -> Vec<Entry> {
        self.read().networks.get(network).map(Network::entries).unwrap_or_default()
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
        let key = lower(name.strip_suffix('.').unwrap_or(name));
        let inner = self.read();
        let mut found = false;
        let Some(attached) = inner.attached.get(asker) else { return false };
        for network in attached.iter() {
            let Some(net) = inner.networks.get(network) else { continue };
            let Some(holders) = net.names.get(&*key) else { continue };
            found = true;
            for e in holders.as_slice().iter().map(|&s| net.record(s)) {
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
            let &first = net.addrs.get(&ip)?.as_slice().first()?;
            Some(net.record(first).name.to_string())
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
    fn hosts_that_come_and_go_leave_nothing_behind() {
        let t = Table::new();
        t.insert("ov", entry(A, "alpha", &[], "10.0.0.2", None));
        for i in 0..50 {
            let origin = Origin::Cluster(format!("host{i}"));
            let remote = Entry { origin: origin.clone(), ..entry(B, "beta", &[], "10.0.0.130", None) };
            t.replace("ov", &origin, vec![remote]);
            assert!(t.resolve(A, "beta").is_some());
            t.replace("ov", &origin, Vec::new());
        }
        assert_eq!(t.read().networks.get("ov").map(|n| n.origins.len()), Some(2));
        assert_eq!(t.entries("ov").len(), 1);
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
