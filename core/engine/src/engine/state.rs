//! The in-memory mirror of the store, and the indexes that let an operation find what it
//! concerns (a sandbox's endpoints, the objects that name a link, the endpoints that publish
//! a host port) without walking every object. Only this module changes it, so the indexes
//! always agree with the objects.
//!
//! The maps are persistent (`imbl`'s B+tree): a copy shares every node with the original,
//! so publishing the state after an operation costs the same with 10 or 10,000 objects,
//! and a change copies only the few nodes on its path. Keys are `Arc<str>`, so a copied
//! node clones pointers, not strings.

use super::plan_links;
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network, Sandbox, Volume};
use equivalent::{Comparable, Equivalent};
use imbl::{OrdMap, OrdSet};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;
use wharf_sdk::{LinkKind, PortBinding};

/// An object's key: its id (a volume's: its name), shared by the maps and indexes.
type Key = Arc<str>;

/// Objects of one kind by key, in key order.
#[derive(Debug)]
pub(super) struct Objects<T>(OrdMap<Key, Arc<T>>);

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(OrdMap::new())
    }
}

impl<T> Clone for Objects<T> {
    fn clone(&self) -> Self {
        Objects(self.0.clone())
    }
}

impl<T> Objects<T> {
    pub(super) fn get(&self, key: &str) -> Option<&Arc<T>> {
        self.0.get(key)
    }

    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// Every object, in key order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<T>> {
        self.0.values()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// The objects whose key begins with `prefix`, in key order.
    fn prefixed<'a, 'p>(&'a self, prefix: &'p str) -> impl Iterator<Item = &'a Arc<T>> + use<'a, 'p, T> {
        let from: (Bound<&str>, Bound<&str>) = (Bound::Included(prefix), Bound::Unbounded);
        self.0.range::<_, str>(from).take_while(move |(k, _)| k.starts_with(prefix)).map(|(_, v)| v)
    }

    /// The key `key` is stored under, shared; a new one when there is no such object.
    fn shared_key(&self, key: &str) -> Key {
        self.0.get_key_value(key).map_or_else(|| Key::from(key), |(k, _)| k.clone())
    }

    fn insert(&mut self, key: Key, value: Arc<T>) -> Option<Arc<T>> {
        self.0.insert(key, value)
    }

    fn remove(&mut self, key: &str) -> Option<Arc<T>> {
        self.0.remove(key)
    }
}

/// The keys of the objects that have a `B` (a name, a network, a link they make, a host
/// port), as pairs in one ordered set: an object's entry costs a pair, not a set of its
/// own, and the keys of one `B` are a range, in key order.
#[derive(Debug, Clone)]
struct Index<B: Ord + Clone>(OrdSet<(B, Key)>);

impl<B: Ord + Clone> Default for Index<B> {
    fn default() -> Self {
        Index(OrdSet::new())
    }
}

/// A pair of an index looked for by borrowed parts, so a look-up makes no `Arc`.
struct Pair<'a, Q: ?Sized>(&'a Q, &'a str);

impl<Q: Ord + ?Sized, B: Borrow<Q>> Equivalent<(B, Key)> for Pair<'_, Q> {
    fn equivalent(&self, pair: &(B, Key)) -> bool {
        self.0 == pair.0.borrow() && self.1 == &*pair.1
    }
}

impl<Q: Ord + ?Sized, B: Borrow<Q>> Comparable<(B, Key)> for Pair<'_, Q> {
    fn compare(&self, pair: &(B, Key)) -> Ordering {
        (self.0, self.1).cmp(&(pair.0.borrow(), &*pair.1))
    }
}

impl<B: Ord + Clone> Index<B> {
    fn add(&mut self, by: B, key: &Key) {
        self.0.insert((by, key.clone()));
    }

    fn remove<Q: Ord + ?Sized>(&mut self, by: &Q, key: &str)
    where
        B: Borrow<Q>,
    {
        self.0.remove(&Pair(by, key));
    }

    fn keys<'a, 'b, Q: Ord + ?Sized>(&'a self, by: &'b Q) -> impl Iterator<Item = &'a Key> + use<'a, 'b, B, Q>
    where
        B: Borrow<Q>,
    {
        let from = (Bound::Included(Pair(by, "")), Bound::Unbounded);
        self.0.range(from).take_while(move |(b, _)| b.borrow() == by).map(|(_, key)| key)
    }
}

/// The in-memory mirror of the store. Its objects are shared between the state and its
/// published copies, and so are the maps' nodes: a copy costs a pointer per map, and a
/// change replaces only the objects and nodes it touches.
#[derive(Default, Clone)]
pub(super) struct State {
    networks: Objects<Network>,
    endpoints: Objects<Endpoint>,
    sandboxes: Objects<Sandbox>,
    volumes: Objects<Volume>,
    network_names: Index<Key>,
    sandbox_names: Index<Key>,
    endpoints_by_network: Index<Key>,
    endpoints_by_sandbox: Index<Key>,
    /// The networks whose plan makes a link of each name.
    network_links: Index<Key>,
    /// The endpoints whose plan makes a link of each name.
    endpoint_links: Index<Key>,
    /// The endpoints that publish each host port.
    endpoints_by_port: Index<u16>,
    /// The host port picked last for a binding that left it to wharf.
    pub(super) port_cursor: u16,
}

/// Find an object by exact key, then exact name (the first by key, should two share it),
/// then unique key prefix.
fn lookup<'a, T>(kind: &str, key: &str, objects: &'a Objects<T>, names: &Index<Key>) -> Result<&'a T> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} name or id is empty")));
    }
    if let Some(t) = objects.get(key) {
        return Ok(t);
    }
    if let Some(t) = names.keys(key).find_map(|k| objects.get(k)) {
        return Ok(t);
    }
    let mut prefixed = objects.prefixed(key);
    match (prefixed.next(), prefixed.next()) {
        (Some(t), None) => Ok(t),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!("{kind} id prefix {key:?} is ambiguous"))),
        _ => Err(Error::NotFound(format!("{kind} {key} not found"))),
    }
}

impl State {
    pub(super) fn networks(&self) -> &Objects<Network> {
        &self.networks
    }

    pub(super) fn endpoints(&self) -> &Objects<Endpoint> {
        &self.endpoints
    }

    pub(super) fn sandboxes(&self) -> &Objects<Sandbox> {
        &self.sandboxes
    }

    pub(super) fn volumes(&self) -> &Objects<Volume> {
        &self.volumes
    }

    /// A network by id, name or id prefix.
    pub(super) fn network(&self, key: &str) -> Result<&Network> {
        lookup("network", key, &self.networks, &self.network_names)
    }

    /// A sandbox by id, name or id prefix.
    pub(super) fn sandbox(&self, key: &str) -> Result<&Sandbox> {
        lookup("sandbox", key, &self.sandboxes, &self.sandbox_names)
    }

    /// Whether a network is named `name`.
    pub(super) fn network_named(&self, name: &str) -> bool {
        self.network_names.keys(name).next().is_some()
    }

    /// Whether a sandbox is named `name`.
    pub(super) fn sandbox_named(&self, name: &str) -> bool {
        self.sandbox_names.keys(name).next().is_some()
    }

    /// The endpoints on network `id`, by id.
    pub(super) fn endpoints_of_network<'a, 'b>(
        &'a self,
        id: &'b str,
    ) -> impl Iterator<Item = &'a Endpoint> + use<'a, 'b> {
        self.endpoints_by_network.keys(id).filter_map(|k| self.endpoints.get(k)).map(|e| &**e)
    }

    /// The endpoints of sandbox `id`, by id.
    pub(super) fn endpoints_of_sandbox<'a, 'b>(
        &'a self,
        id: &'b str,
    ) -> impl Iterator<Item = &'a Endpoint> + use<'a, 'b> {
        self.endpoints_by_sandbox.keys(id).filter_map(|k| self.endpoints.get(k)).map(|e| &**e)
    }

    /// The bindings of every endpoint that publish host port `port`.
    pub(super) fn bindings_on<'a, 'b>(&'a self, port: &'b u16) -> impl Iterator<Item = &'a PortBinding> + use<'a, 'b> {
        let endpoints = self.endpoints_by_port.keys(port).filter_map(|k| self.endpoints.get(k));
        endpoints.flat_map(|e| &e.join.ports).filter(move |b| b.host_port == *port)
    }

    /// Whether the plan of a network or endpoint other than the one with id `except` makes
    /// a link named `name`.
    pub(super) fn link_named_by_other(&self, name: &str, except: &str) -> bool {
        let mut owners = self.network_links.keys(name).chain(self.endpoint_links.keys(name));
        owners.any(|k| &**k != except)
    }

    /// The bridges the plans of wharf's networks make, network by network in id order: those
    /// named in `only` when given, else all.
    pub(super) fn bridges(&self, only: Option<&std::collections::BTreeSet<String>>) -> Vec<String> {
        let bridges = |n: &Network| -> Vec<String> {
            let links = plan_links(&n.plan)
                .filter(|(k, name)| matches!(k, LinkKind::Bridge) && only.is_none_or(|names| names.contains(*name)));
            links.map(|(_, name)| name.to_string()).collect()
        };
        match only {
            None => self.networks.values().flat_map(|n| bridges(n)).collect(),
            Some(names) => {
                let owners: std::collections::BTreeSet<&Key> =
                    names.iter().flat_map(|name| self.network_links.keys(name.as_str())).collect();
                owners.into_iter().filter_map(|k| self.networks.get(k)).flat_map(|n| bridges(n)).collect()
            }
        }
    }

    /// Add or replace a network.
    pub(super) fn put_network(&mut self, network: impl Into<Arc<Network>>) {
        let network = network.into();
        self.remove_network(&network.id);
        let key = Key::from(network.id.as_str());
        self.network_names.add(Key::from(network.name.as_str()), &key);
        for (_, link) in plan_links(&network.plan) {
            self.network_links.add(Key::from(link), &key);
        }
        self.networks.insert(key, network);
    }

    /// Remove a network.
    pub(super) fn remove_network(&mut self, id: &str) {
        let Some(old) = self.networks.remove(id) else { return };
        self.network_names.remove(old.name.as_str(), &old.id);
        for (_, link) in plan_links(&old.plan) {
            self.network_links.remove(link, &old.id);
        }
    }

    /// Add or replace an endpoint.
    pub(super) fn put_endpoint(&mut self, endpoint: impl Into<Arc<Endpoint>>) {
        let endpoint = endpoint.into();
        self.remove_endpoint(&endpoint.id);
        let key = Key::from(endpoint.id.as_str());
        self.endpoints_by_network.add(self.networks.shared_key(&endpoint.network_id), &key);
        self.endpoints_by_sandbox.add(self.sandboxes.shared_key(&endpoint.sandbox_id), &key);
        for (_, link) in plan_links(&endpoint.plan) {
            self.endpoint_links.add(Key::from(link), &key);
        }
        for b in &endpoint.join.ports {
            self.endpoints_by_port.add(b.host_port, &key);
        }
        self.endpoints.insert(key, endpoint);
    }

    /// Remove an endpoint.
    pub(super) fn remove_endpoint(&mut self, id: &str) {
        let Some(old) = self.endpoints.remove(id) else { return };
        self.endpoints_by_network.remove(old.network_id.as_str(), &old.id);
        self.endpoints_by_sandbox.remove(old.sandbox_id.as_str(), &old.id);
        for (_, link) in plan_links(&old.plan) {
            self.endpoint_links.remove(link, &old.id);
        }
        for b in &old.join.ports {
            self.endpoints_by_port.remove(&b.host_port, &old.id);
        }
    }

    /// Add or replace a sandbox.
    pub(super) fn put_sandbox(&mut self, sandbox: impl Into<Arc<Sandbox>>) {
        let sandbox = sandbox.into();
        self.remove_sandbox(&sandbox.id);
        let key = Key::from(sandbox.id.as_str());
        self.sandbox_names.add(Key::from(sandbox.name.as_str()), &key);
        self.sandboxes.insert(key, sandbox);
    }

    /// Remove a sandbox.
    pub(super) fn remove_sandbox(&mut self, id: &str) {
        if let Some(old) = self.sandboxes.remove(id) {
            self.sandbox_names.remove(old.name.as_str(), &old.id);
        }
    }

    /// Add or replace a volume.
    pub(super) fn put_volume(&mut self, volume: impl Into<Arc<Volume>>) {
        let volume = volume.into();
        self.volumes.insert(Key::from(volume.name.as_str()), volume);
    }

    /// Remove a volume.
    pub(super) fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::{LinkSpec, Netns, Plan, Step};

    fn network(id: &str, name: &str, links: &[&str]) -> Network {
        let plan: Plan =
            links.iter().map(|l| Step::link_add(Netns::Host, LinkSpec::new(*l, LinkKind::Bridge))).collect();
        Network { id: id.into(), name: name.into(), plan, ..Default::default() }
    }

    fn endpoint(id: &str, network: &str, sandbox: &str, link: &str) -> Endpoint {
        let plan: Plan = [Step::link_add(Netns::Host, LinkSpec::new(link, LinkKind::Dummy))].into_iter().collect();
        Endpoint { id: id.into(), network_id: network.into(), sandbox_id: sandbox.into(), plan, ..Default::default() }
    }

    #[test]
    fn lookups_go_by_id_then_name_then_unique_prefix() {
        let mut s = State::default();
        s.put_network(network("abc1", "web", &[]));
        s.put_network(network("abd2", "abc1x", &[]));
        assert_eq!(s.network("abc1").unwrap().name, "web");
        assert_eq!(s.network("web").unwrap().id, "abc1");
        assert_eq!(s.network("abc1x").unwrap().id, "abd2");
        assert_eq!(s.network("abd").unwrap().id, "abd2");
        assert_eq!(s.network("ab").unwrap_err().status(), 400);
        assert_eq!(s.network("x").unwrap_err().status(), 404);
        // A rename leaves the old name free.
        s.put_network(network("abc1", "api", &[]));
        assert!(s.network_named("api") && !s.network_named("web"));
        s.remove_network("abc1");
        assert!(!s.network_named("api") && s.network("abc1").is_err());
    }

    #[test]
    fn indexes_follow_every_change_and_a_published_copy_keeps_its_own() {
        let mut s = State::default();
        s.put_network(network("n1", "a", &["br-a"]));
        s.put_endpoint(endpoint("e1", "n1", "s1", "veth1"));
        s.put_endpoint(endpoint("e2", "n1", "s2", "veth2"));
        s.put_endpoint(endpoint("e0", "n0", "s10", "veth0"));
        let copy = s.clone();
        let ids = |i: Vec<&Endpoint>| i.into_iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(s.endpoints_of_network("n1").collect()), ["e1", "e2"]);
        assert_eq!(ids(s.endpoints_of_sandbox("s1").collect()), ["e1"], "not those of s10");
        assert!(s.link_named_by_other("br-a", "e1") && !s.link_named_by_other("br-a", "n1"));
        // The endpoint moves to another sandbox and another link.
        s.put_endpoint(endpoint("e1", "n1", "s3", "veth3"));
        assert_eq!(s.endpoints_of_sandbox("s1").count(), 0);
        assert_eq!(ids(s.endpoints_of_sandbox("s3").collect()), ["e1"]);
        assert!(!s.link_named_by_other("veth1", "") && s.link_named_by_other("veth3", ""));
        s.remove_endpoint("e2");
        assert_eq!(ids(s.endpoints_of_network("n1").collect()), ["e1"]);
        // The copy is the state as it was.
        assert_eq!(ids(copy.endpoints_of_network("n1").collect()), ["e1", "e2"]);
        assert_eq!(ids(copy.endpoints_of_sandbox("s1").collect()), ["e1"]);
        // A network whose new plan no longer makes a link stops owning it.
        s.put_network(network("n1", "a", &["br-b"]));
        assert!(!s.link_named_by_other("br-a", "") && s.link_named_by_other("br-b", ""));
        assert_eq!(s.bridges(None), ["br-b"]);
        assert!(s.bridges(Some(&["br-a".to_string()].into())).is_empty());
    }
}
