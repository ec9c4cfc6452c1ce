//! [`EtcdStore`]: the cluster store in etcd (v3 API).
//!
//! Keys, under the configured prefix: `hosts/ID` (under the host's lease), `networks/ID`,
//! `names/NAME` and `vnis/VNI` (which make names and VNIs unique: a network is created by
//! one transaction that finds all three free), `addresses/NET/IP` and `cursors/NET`
//! (cluster IPAM: an address is taken by a transaction that finds its key absent), and
//! `endpoints/NET/ID` (under the host's lease, so they go when it expires).
//!
//! The store runs its own small tokio runtime; the synchronous calls hand their work to
//! it and wait at most the configured timeout.
//!
//! Longer than 600 lines on purpose: every key and every transaction over them is here, so
//! the uniqueness rules above can be checked against all their writers in one file.

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::ipam::next_free;
use crate::keys::{self, Key};
use crate::{
    check_vni, AddressOwner, AddressRange, ClusterEvent, ClusterStore, EndpointRecord, HostRecord, NetworkRecord,
    Snapshot, Watch, FIRST_VNI, LAST_VNI,
};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a transaction that lost a race is tried again before the call gives up.
const RETRIES: usize = 64;

/// This host's registration: its lease and what it published under it, to publish again
/// if the lease is lost.
#[derive(Debug)]
struct Session {
    host: HostRecord,
    lease: i64,
    /// Endpoint keys and values published under the lease.
    endpoints: BTreeMap<String, String>,
}

/// What every task of the store shares.
#[derive(Clone)]
struct Inner {
    config: StoreConfig,
    client: Client,
    session: Arc<Mutex<Option<Session>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The cluster store in etcd.
pub struct EtcdStore {
    inner: Inner,
    runtime: Option<tokio::runtime::Runtime>,
    keeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").field("url", &self.inner.config.url).finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Aborts a task when dropped: what stops a [`Watch`].
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Invalid(format!("cannot read the etcd {what} {}: {e}", path.display())))
}

impl EtcdStore {
    /// Open the store. Nothing is sent yet: a store that is down now makes the calls fail,
    /// not this.
    pub fn open(config: StoreConfig) -> Result<EtcdStore> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wharf-etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Invalid(format!("cannot start the cluster store's runtime: {e}")))?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(2), config.timeout)
            .with_keep_alive_while_idle(true);
        if config.tls.is_set() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &config.tls.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(ca, "CA certificate")?));
            }
            match (&config.tls.cert, &config.tls.key) {
                (Some(cert), Some(key)) => {
                    let identity =
                        Identity::from_pem(read_file(cert, "client certificate")?, read_file(key, "client key")?);
                    tls = tls.identity(identity);
                }
                (None, None) => {}
                _ => return Err(Error::Invalid("give both the etcd client certificate and its key".into())),
            }
            options = options.with_tls(tls);
        }
        let endpoints = config.endpoints();
        let url = config.url.clone();
        let client = runtime
            .block_on(Client::connect(endpoints, Some(options)))
            .map_err(|e| Error::Unavailable { store: url, reason: one_line(&e) })?;
        let inner = Inner { config, client, session: Arc::default() };
        Ok(EtcdStore { inner, runtime: Some(runtime), keeper: Mutex::new(None) })
    }

    /// Stop renewing this host's lease without revoking it, as a killed daemon does.
    #[cfg(test)]
    pub(crate) fn stop_renewing(&self) {
        if let Some(task) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Run `f` with the raw client and this host's lease (0 before joining), for tests
    /// that change etcd behind the store's back.
    #[cfg(test)]
    pub(crate) fn with_client<T, F: Future<Output = T>>(&self, f: impl FnOnce(Client, i64) -> F) -> T {
        let lease = self.inner.session.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |s| s.lease);
        self.runtime().block_on(f(self.inner.client.clone(), lease))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the store")
    }

    /// Run `work` on the store's runtime and wait for it, at most the configured timeout.
    fn run<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        let timeout = self.inner.config.timeout;
        let store = self.inner.config.url.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.runtime().spawn(async move {
            let out = match tokio::time::timeout(timeout, work).await {
                Ok(out) => out,
                Err(_) => Err(Error::Unavailable { store, reason: format!("no answer within {}s", timeout.as_secs()) }),
            };
            let _ = tx.send(out);
        });
        // The task answers by its own timeout; the margin covers a runtime slow to start it.
        rx.recv_timeout(timeout + Duration::from_secs(1)).unwrap_or_else(|_| {
            Err(Error::Unavailable {
                store: self.inner.config.url.clone(),
                reason: format!("no answer within {}s", timeout.as_secs()),
            })
        })
    }
}

/// An error's message on one line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Inner {
    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.config.prefix)
    }

    fn unavailable(&self, e: etcd_client::Error) -> Error {
        Error::Unavailable { store: self.config.url.clone(), reason: one_line(&e) }
    }

    fn decode<T: DeserializeOwned>(&self, kv: &KeyValue) -> Result<T> {
        serde_json::from_slice(kv.value()).map_err(|source| Error::Corrupt {
            store: self.config.url.clone(),
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            source,
        })
    }

    fn encode<T: serde::Serialize>(value: &T) -> String {
        serde_json::to_string(value).expect("cluster records serialise")
    }

    /// The key below the prefix.
    fn rest<'a>(&self, kv: &'a KeyValue) -> Option<&'a str> {
        kv.key_str().ok()?.strip_prefix(self.config.prefix.as_str())
    }

    async fn get_prefix(&self, rest: &str, keys_only: bool) -> Result<(i64, Vec<KeyValue>)> {
        let mut options = GetOptions::new().with_prefix();
        if keys_only {
            options = options.with_keys_only();
        }
        let mut resp = self.client.clone().get(self.key(rest), Some(options)).await.map_err(|e| self.unavailable(e))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((revision, resp.take_kvs()))
    }

    async fn get_one(&self, rest: &str) -> Result<Option<KeyValue>> {
        let mut resp = self.client.clone().get(self.key(rest), None).await.map_err(|e| self.unavailable(e))?;
        Ok(resp.take_kvs().into_iter().next())
    }

    async fn txn(&self, txn: Txn) -> Result<(bool, Vec<TxnOpResponse>)> {
        let resp = self.client.clone().txn(txn).await.map_err(|e| self.unavailable(e))?;
        Ok((resp.succeeded(), resp.op_responses()))
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let (revision, kvs) = self.get_prefix("", false).await?;
        let mut snap = Snapshot { revision, ..Default::default() };
        for kv in &kvs {
            let Some(rest) = self.rest(kv) else { continue };
            match keys::parse(rest) {
                Key::Host(_) => {
                    let h: HostRecord = self.decode(kv)?;
                    snap.hosts.insert(h.id.clone(), h);
                }
                Key::Network(_) => {
                    let n: NetworkRecord = self.decode(kv)?;
                    snap.networks.insert(n.id.clone(), n);
                }
                Key::Endpoint { .. } => {
                    let e: EndpointRecord = self.decode(kv)?;
                    snap.endpoints.insert(e.endpoint_id.clone(), e);
                }
                Key::Other => {}
            }
        }
        Ok(snap)
    }

    /// Grant a lease and put this host and everything it published under it.
    async fn register(&self, host: &HostRecord, endpoints: &BTreeMap<String, String>) -> Result<i64> {
        let ttl = self.config.ttl.as_secs().max(1) as i64;
        let lease = self.client.clone().lease_grant(ttl, None).await.map_err(|e| self.unavailable(e))?.id();
        let with_lease = || Some(PutOptions::new().with_lease(lease));
        let host_key = self.key(&format!("{}{}", keys::HOSTS, host.id));
        self.client.clone().put(host_key, Self::encode(host), with_lease()).await.map_err(|e| self.unavailable(e))?;
        // An endpoint whose network was removed meanwhile is not put back.
        for (key, value) in endpoints {
            let Key::Endpoint { network, .. } = keys::parse(key) else { continue };
            let network_key = self.key(&format!("{}{network}", keys::NETWORKS));
            let txn = Txn::new()
                .when(vec![Compare::version(network_key, CompareOp::Greater, 0)])
                .and_then(vec![TxnOp::put(self.key(key), value.clone(), with_lease())]);
            self.txn(txn).await?;
        }
        Ok(lease)
    }

    /// Renew this host's lease; register again when it was lost.
    async fn keep_alive(&self) -> Result<()> {
        let Some((lease, host, endpoints)) = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| (s.lease, s.host.clone(), s.endpoints.clone()))
        else {
            return Ok(());
        };
        // Opening the keep-alive stream renews the lease once, which is all a renewal
        // needs. etcd answers for a lease it no longer has with a TTL of 0, which the
        // client reports as an error of its own.
        let lost = match self.client.clone().lease_keep_alive(lease).await {
            Ok(_) => false,
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => true,
            Err(e) => return Err(self.unavailable(e)),
        };
        if !lost {
            return Ok(());
        }
        tracing::warn!(store = %self.config.url, "this host's lease expired; registering again");
        let new = self.register(&host, &endpoints).await?;
        if let Some(s) = self.session.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            s.lease = new;
        }
        Ok(())
    }

    /// Follow changes from `revision` on, sending them to `tx`, until `tx` is closed.
    async fn follow(self, mut revision: i64, tx: std::sync::mpsc::Sender<ClusterEvent>) {
        let mut unreachable_since: Option<std::time::Instant> = None;
        loop {
            match self.follow_once(&mut revision, &tx).await {
                Ok(false) => return,
                Ok(true) => unreachable_since = None,
                Err(e) => {
                    if unreachable_since.is_none() {
                        tracing::warn!(error = %e, "cluster store watch broke; following again when it is back");
                        unreachable_since = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }

    /// One watch stream. `Ok(false)`: the receiver is gone; `Ok(true)`: the stream ended
    /// and should be opened again.
    async fn follow_once(&self, revision: &mut i64, tx: &std::sync::mpsc::Sender<ClusterEvent>) -> Result<bool> {
        let options = WatchOptions::new().with_prefix().with_start_revision(*revision).with_progress_notify();
        let mut client = self.client.clone();
        let opened = tokio::time::timeout(self.config.timeout, client.watch(self.key(""), Some(options)));
        let (_watcher, mut stream) = match opened.await {
            Ok(r) => r.map_err(|e| self.unavailable(e))?,
            Err(_) => {
                return Err(Error::Unavailable {
                    store: self.config.url.clone(),
                    reason: "watch not opened in time".into(),
                })
            }
        };
        loop {
            let Some(resp) = stream.message().await.map_err(|e| self.unavailable(e))? else { return Ok(true) };
            if resp.compact_revision() > 0 {
                // The history from `revision` is gone: start over from everything as it is.
                let snap = self.snapshot().await?;
                *revision = snap.revision + 1;
                tracing::info!(revision = snap.revision, "cluster store history compacted; resynced");
                return Ok(tx.send(ClusterEvent::Resync(snap)).is_ok());
            }
            if resp.canceled() {
                return Ok(true);
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                *revision = kv.mod_revision() + 1;
                let Some(rest) = self.rest(kv) else { continue };
                let put = event.event_type() == EventType::Put;
                let change = match (keys::parse(rest), put) {
                    (Key::Host(_), true) => self.decode(kv).map(ClusterEvent::HostUp),
                    (Key::Host(id), false) => Ok(ClusterEvent::HostDown(id.to_string())),
                    (Key::Network(_), true) => self.decode(kv).map(ClusterEvent::NetworkUp),
                    (Key::Network(id), false) => Ok(ClusterEvent::NetworkDown(id.to_string())),
                    (Key::Endpoint { .. }, true) => self.decode(kv).map(ClusterEvent::EndpointUp),
                    (Key::Endpoint { network, endpoint }, false) => Ok(ClusterEvent::EndpointDown {
                        network_id: network.to_string(),
                        endpoint_id: endpoint.to_string(),
                    }),
                    (Key::Other, _) => continue,
                };
                match change {
                    Ok(change) => {
                        if tx.send(change).is_err() {
                            return Ok(false);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "skipping a cluster store change"),
                }
            }
            if let Some(h) = resp.header() {
                *revision = (*revision).max(h.revision() + 1);
            }
        }
    }

    async fn create_network(&self, mut network: NetworkRecord, vni: Option<u32>) -> Result<NetworkRecord> {
        if let Some(v) = vni {
            check_vni(v)?;
        }
        let name_key = self.key(&format!("{}{}", keys::NAMES, network.name));
        let id_key = self.key(&format!("{}{}", keys::NETWORKS, network.id));
        for _ in 0..RETRIES {
            let (_, used) = self.get_prefix(keys::VNIS, true).await?;
            let used: BTreeSet<u32> =
                used.iter().filter_map(|kv| self.rest(kv)?.strip_prefix(keys::VNIS)?.parse().ok()).collect();
            network.vni = match vni {
                Some(v) => v,
                None => (FIRST_VNI..=LAST_VNI)
                    .find(|v| !used.contains(v))
                    .ok_or_else(|| Error::Conflict("every VNI is in use in the cluster".into()))?,
            };
            let vni_key = self.key(&format!("{}{}", keys::VNIS, network.vni));
            let txn = Txn::new()
                .when(vec![
                    Compare::version(name_key.clone(), CompareOp::Equal, 0),
                    Compare::version(id_key.clone(), CompareOp::Equal, 0),
                    Compare::version(vni_key.clone(), CompareOp::Equal, 0),
                ])
                .and_then(vec![
                    TxnOp::put(name_key.clone(), network.id.clone(), None),
                    TxnOp::put(id_key.clone(), Self::encode(&network), None),
                    TxnOp::put(vni_key.clone(), network.id.clone(), None),
                ])
                .or_else(vec![
                    TxnOp::get(name_key.clone(), None),
                    TxnOp::get(id_key.clone(), None),
                    TxnOp::get(vni_key.clone(), None),
                ]);
            let (ok, responses) = self.txn(txn).await?;
            if ok {
                return Ok(network);
            }
            let found: Vec<Option<String>> = responses
                .into_iter()
                .map(|r| match r {
                    TxnOpResponse::Get(g) => g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    _ => None,
                })
                .collect();
            if found.first().is_some_and(Option::is_some) {
                return Err(Error::Conflict(format!(
                    "network with name {} already exists in the cluster",
                    network.name
                )));
            }
            if found.get(1).is_some_and(Option::is_some) {
                return Err(Error::Conflict(format!("network id {} already exists in the cluster", network.id)));
            }
            if let (Some(_), Some(Some(owner))) = (vni, found.get(2)) {
                let owner = match self.get_one(&format!("{}{owner}", keys::NETWORKS)).await? {
                    Some(kv) => self.decode::<NetworkRecord>(&kv)?.name,
                    None => owner.clone(),
                };
                return Err(Error::Conflict(format!("VNI {} is used by network {owner}", network.vni)));
            }
            // Another host took the same free VNI a moment before: choose again.
        }
        Err(Error::Conflict(format!("network {}: too much contention for a VNI; try again", network.name)))
    }

    async fn remove_network(&self, id: &str) -> Result<()> {
        let id_key = self.key(&format!("{}{id}", keys::NETWORKS));
        let Some(kv) = self.get_one(&format!("{}{id}", keys::NETWORKS)).await? else {
            return Err(Error::NotFound(format!("network {id} not found in the cluster")));
        };
        let network: NetworkRecord = self.decode(&kv)?;
        let endpoints = self.key(&keys::endpoints_of(id));
        let prefix = || Some(DeleteOptions::new().with_prefix());
        let txn = Txn::new()
            .when(vec![
                Compare::version(endpoints.clone(), CompareOp::Equal, 0).with_prefix(),
                Compare::mod_revision(id_key.clone(), CompareOp::Equal, kv.mod_revision()),
            ])
            .and_then(vec![
                TxnOp::delete(id_key, None),
                TxnOp::delete(self.key(&format!("{}{}", keys::NAMES, network.name)), None),
                TxnOp::delete(self.key(&format!("{}{}", keys::VNIS, network.vni)), None),
                TxnOp::delete(self.key(&keys::addresses_of(id)), prefix()),
                TxnOp::delete(self.key(&format!("{}{id}", keys::CURSORS)), None),
            ]);
        let (ok, _) = self.txn(txn).await?;
        if ok {
            return Ok(());
        }
        let (_, held) = self.get_prefix(&keys::endpoints_of(id), false).await?;
        let (_, hosts) = self.get_prefix(keys::HOSTS, false).await?;
        let names: BTreeMap<String, String> =
            hosts.iter().filter_map(|kv| self.decode::<HostRecord>(kv).ok()).map(|h| (h.id, h.name)).collect();
        let mut holders: BTreeSet<String> = BTreeSet::new();
        for kv in &held {
            let e: EndpointRecord = self.decode(kv)?;
            holders.insert(names.get(&e.host).cloned().unwrap_or(e.host));
        }
        if holders.is_empty() {
            return Err(Error::Conflict(format!(
                "network {} changed while it was being removed; try again",
                network.name
            )));
        }
        Err(Error::InUse { network: network.name, hosts: holders.into_iter().collect() })
    }

    async fn allocate_address(
        &self,
        network_id: String,
        ranges: Vec<AddressRange>,
        wanted: Option<IpAddr>,
        owner: AddressOwner,
    ) -> Result<IpAddr> {
        let Some(kv) = self.get_one(&format!("{}{network_id}", keys::NETWORKS)).await? else {
            return Err(Error::NotFound(format!("network {network_id} not found in the cluster")));
        };
        let name = self.decode::<NetworkRecord>(&kv)?.name;
        let network_key = self.key(&format!("{}{network_id}", keys::NETWORKS));
        let cursor_key = self.key(&format!("{}{network_id}", keys::CURSORS));
        let prefix = keys::addresses_of(&network_id);
        for _ in 0..RETRIES {
            let ip = match wanted {
                Some(ip) => ip,
                None => {
                    let (_, held) = self.get_prefix(&prefix, true).await?;
                    let taken: BTreeSet<IpAddr> = held
                        .iter()
                        .filter_map(|kv| self.rest(kv)?.strip_prefix(prefix.as_str())?.parse().ok())
                        .collect();
                    let cursor = self
                        .get_one(&format!("{}{network_id}", keys::CURSORS))
                        .await?
                        .and_then(|kv| kv.value_str().ok()?.parse().ok());
                    next_free(&ranges, &taken, cursor).ok_or(Error::Exhausted { network: name.clone() })?
                }
            };
            let address_key = self.key(&keys::address(&network_id, ip));
            let mut ops = vec![TxnOp::put(address_key.clone(), Self::encode(&owner), None)];
            if wanted.is_none() {
                ops.push(TxnOp::put(cursor_key.clone(), ip.to_string(), None));
            }
            let txn = Txn::new()
                .when(vec![
                    Compare::version(address_key, CompareOp::Equal, 0),
                    Compare::version(network_key.clone(), CompareOp::Greater, 0),
                ])
                .and_then(ops)
                .or_else(vec![TxnOp::get(network_key.clone(), None)]);
            let (ok, responses) = self.txn(txn).await?;
            if ok {
                return Ok(ip);
            }
            let network_there = responses.iter().any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
            if !network_there {
                return Err(Error::NotFound(format!("network {name} was removed from the cluster")));
            }
            if wanted.is_some() {
                return Err(Error::AddressInUse { network: name, address: ip });
            }
            // Another host took this address a moment before: choose again.
        }
        Err(Error::Conflict(format!("network {name}: too much contention for an address; try again")))
    }

    async fn publish_endpoint(&self, endpoint: EndpointRecord) -> Result<()> {
        let key = keys::endpoint(&endpoint.network_id, &endpoint.endpoint_id);
        let value = Self::encode(&endpoint);
        let lease = {
            let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            session.as_ref().map(|s| s.lease).ok_or_else(|| Error::NotJoined(self.config.url.clone()))?
        };
        let network_key = self.key(&format!("{}{}", keys::NETWORKS, endpoint.network_id));
        let txn = Txn::new()
            .when(vec![Compare::version(network_key, CompareOp::Greater, 0)])
            .and_then(vec![TxnOp::put(self.key(&key), value.clone(), Some(PutOptions::new().with_lease(lease)))]);
        let (ok, _) = self.txn(txn).await?;
        if !ok {
            return Err(Error::NotFound(format!("network {} not found in the cluster", endpoint.network_id)));
        }
        if let Some(s) = self.session.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            s.endpoints.insert(key, value);
        }
        Ok(())
    }
}

impl ClusterStore for EtcdStore {
    fn name(&self) -> &str {
        &self.inner.config.url
    }

    fn join(&self, host: &HostRecord) -> Result<()> {
        let inner = self.inner.clone();
        let h = host.clone();
        let endpoints = inner
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|s| s.host.id == host.id)
            .map(|s| s.endpoints.clone())
            .unwrap_or_default();
        let kept = endpoints.clone();
        let lease = self.run(async move { inner.register(&h, &kept).await })?;
        *self.inner.session.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Session { host: host.clone(), lease, endpoints });
        let inner = self.inner.clone();
        let interval = (self.inner.config.ttl / 3).max(Duration::from_millis(300));
        let task = self.runtime().spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                match tokio::time::timeout(inner.config.timeout, inner.keep_alive()).await {
                    Ok(Ok(())) => {
                        if failing {
                            tracing::info!(store = %inner.config.url, "cluster store reachable again");
                        }
                        failing = false;
                    }
                    Ok(Err(e)) if !failing => {
                        tracing::warn!(error = %e, "cannot renew this host's lease");
                        failing = true;
                    }
                    Err(_) if !failing => {
                        tracing::warn!(store = %inner.config.url, "cannot renew this host's lease: no answer");
                        failing = true;
                    }
                    _ => {}
                }
            }
        });
        if let Some(old) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).replace(task) {
            old.abort();
        }
        Ok(())
    }

    fn leave(&self) -> Result<()> {
        if let Some(task) = self.keeper.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        let Some(session) = self.inner.session.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
        let inner = self.inner.clone();
        self.run(async move {
            inner.client.clone().lease_revoke(session.lease).await.map_err(|e| inner.unavailable(e))?;
            Ok(())
        })
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let inner = self.inner.clone();
        self.run(async move { inner.snapshot().await })
    }

    fn watch(&self, revision: i64) -> Result<Watch> {
        let (tx, rx) = std::sync::mpsc::channel();
        let task = self.runtime().spawn(self.inner.clone().follow(revision, tx));
        Ok(Watch::new(rx, AbortOnDrop(task.abort_handle())))
    }

    fn create_network(&self, network: NetworkRecord, vni: Option<u32>) -> Result<NetworkRecord> {
        let inner = self.inner.clone();
        self.run(async move { inner.create_network(network, vni).await })
    }

    fn remove_network(&self, id: &str) -> Result<()> {
        let inner = self.inner.clone();
        let id = id.to_string();
        self.run(async move { inner.remove_network(&id).await })
    }

    fn allocate_address(
        &self,
        network_id: &str,
        ranges: &[AddressRange],
        wanted: Option<IpAddr>,
        owner: &AddressOwner,
    ) -> Result<IpAddr> {
        let inner = self.inner.clone();
        let (network_id, ranges, owner) = (network_id.to_string(), ranges.to_vec(), owner.clone());
        self.run(async move { inner.allocate_address(network_id, ranges, wanted, owner).await })
    }

    fn release_address(&self, network_id: &str, address: IpAddr) -> Result<()> {
        let inner = self.inner.clone();
        let key = inner.key(&keys::address(network_id, address));
        self.run(async move {
            inner.client.clone().delete(key, None).await.map_err(|e| inner.unavailable(e))?;
            Ok(())
        })
    }

    fn addresses(&self, network_id: &str) -> Result<BTreeMap<IpAddr, AddressOwner>> {
        let inner = self.inner.clone();
        let prefix = keys::addresses_of(network_id);
        self.run(async move {
            let (_, kvs) = inner.get_prefix(&prefix, false).await?;
            let mut out = BTreeMap::new();
            for kv in &kvs {
                let Some(ip) = inner.rest(kv).and_then(|r| r.strip_prefix(prefix.as_str())?.parse().ok()) else {
                    continue;
                };
                out.insert(ip, inner.decode(kv)?);
            }
            Ok(out)
        })
    }

    fn publish_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
        let inner = self.inner.clone();
        let endpoint = endpoint.clone();
        self.run(async move { inner.publish_endpoint(endpoint).await })
    }

    fn withdraw_endpoint(&self, network_id: &str, endpoint_id: &str) -> Result<()> {
        let inner = self.inner.clone();
        let key = keys::endpoint(network_id, endpoint_id);
        self.run(async move {
            inner.client.clone().delete(inner.key(&key), None).await.map_err(|e| inner.unavailable(e))?;
            if let Some(s) = inner.session.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                s.endpoints.remove(&key);
            }
            Ok(())
        })
    }
}
