//! The nftables backend: wharf's fixed ruleset ([`super::ruleset`]) in its own tables, driven
//! by set and map elements, with the host ports of published ports held ([`super::ports`]).
//!
//! Every [`Firewall`] call is one nftables transaction that adds or deletes elements only, so
//! its cost does not grow with the number of networks or published ports. (Only when a map key
//! already holds another value does a call first check its elements one by one, in dry-run
//! transactions, before its one real transaction.) The backend keeps the facts it has put in
//! place and counts, for each element, the facts that need it, so an element two facts share
//! (the open port of an endpoint published on two host ports) stays until the last goes.
//!
//! # Healing
//!
//! When someone else deletes wharf's tables (`nft flush ruleset`, another tool's reload), a
//! watch on nftables' notifications notices at once, and the next transaction that fails
//! finds out at the latest: the backend then re-creates its tables holding every fact it has
//! put in place, logs that once, and carries on.
//!
//! # Threading
//!
//! An [`Nftables`] acts on the network namespace it was created in, whatever thread calls it
//! later: [`Nftables::new`] binds to the namespace of the calling thread, [`Nftables::in_netns`]
//! to the namespace a file names. It owns a worker thread that entered that namespace once and
//! holds the libnftables context (whose netlink socket is bound to the namespace it was opened
//! in) and the port reservations; every call is carried out on that thread, so callers may be
//! on any thread, in any namespace. Calls are serialised.

use super::libnftables::Context;
use super::ports::{bind_port, HostPort, Reservations};
use super::ruleset::{self, Elem, Family, Policy};
use super::watch::{Seen, Watch};
use super::{conntrack, Firewall, PortState};
use nix::errno::Errno;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wharf_engine::executor::ExecError;
use wharf_sdk::{FirewallFact, Protocol};

/// How often the watch thread looks up from its socket to see whether it should stop.
const WATCH_TICK: Duration = Duration::from_millis(200);

/// How long the worker keeps libnftables' context, with its ruleset cache, once no job comes.
const IDLE: Duration = Duration::from_secs(2);

/// An element's identity in the kernel: its table, set and key (a map's value aside).
type ElemKey = (Family, &'static str, String);

fn key(e: &Elem) -> ElemKey {
    (e.table, e.set, e.key.clone())
}

/// The host port a published-port fact holds.
fn host_port(fact: &FirewallFact) -> Option<HostPort> {
    match fact {
        FirewallFact::Port { protocol, host_ip, host_port, address, .. } => {
            Some(HostPort::new(*protocol, *host_ip, *address, *host_port))
        }
        FirewallFact::Network { .. } => None,
    }
}

/// What lives on the worker thread.
struct Backend {
    nft: Context,
    /// The kernel has `meta ibrname` in the bridge family.
    ibrname: bool,
    policy: Policy,
    /// The facts in place.
    facts: HashSet<FirewallFact>,
    /// For each element in place, how many facts of `facts` need it.
    refs: HashMap<ElemKey, usize>,
    ports: Reservations,
}

impl Backend {
    fn elements(&self, fact: &FirewallFact) -> Result<Vec<Elem>, ExecError> {
        ruleset::elements(fact, self.ibrname)
    }

    /// Find out what the kernel supports, then make sure wharf's tables exist with the fixed
    /// rules, keeping existing elements; if they cannot be brought up to date in place (their
    /// layout differs), create them afresh and empty.
    fn init(&mut self) -> Result<(), ExecError> {
        self.check_owner()?;
        self.ibrname = self.nft.run(&ruleset::ibrname_probe(&self.policy), true).is_ok();
        if let Err(e) = self.nft.run(&ruleset::structure(self.ibrname, &self.policy), false) {
            tracing::warn!(error = %e, "wharf's nftables tables differ from this version's; recreating them");
            self.nft.exec(&ruleset::recreate(self.ibrname, &self.policy))?;
        }
        Ok(())
    }

    /// Refuse tables of this name that another wharfd marked as its own: they are never
    /// touched, let alone re-created.
    fn check_owner(&mut self) -> Result<(), ExecError> {
        let Some(owner) = &self.policy.owner else { return Ok(()) };
        let inet = self.policy.table(Family::Inet);
        let Ok(listing) = self.nft.run(&format!("list table {inet}"), false) else { return Ok(()) };
        match ruleset::owner_of(&listing) {
            Some(other) if other != owner => Err(ExecError::new(format!(
                "nftables table {inet} belongs to another wharfd ({other}); give this one tables of its own \
                 (firewall_table in wharf.toml, or --firewall-table NAME), or run it with --firewall none"
            ))),
            _ => Ok(()),
        }
    }

    /// Re-create the tables holding exactly `facts`; their host ports are held afresh. A host
    /// port that cannot be held any more (a host process took it while wharf was stopped) is
    /// logged and its mapping kept: the user published it.
    fn reload(&mut self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        let mut elems = Vec::new();
        for fact in facts {
            elems.extend(self.elements(fact)?);
        }
        self.nft.exec(&(ruleset::recreate(self.ibrname, &self.policy) + &ruleset::bulk_add(&elems, &self.policy)))?;
        self.facts.clear();
        self.refs.clear();
        self.ports.clear();
        for fact in facts {
            self.remember(fact)?;
            if let Some(hp) = host_port(fact) {
                if let Err(e) = self.ports.take(hp) {
                    tracing::warn!(port = %hp.describe(), error = %e, "published port kept, but its host port is taken");
                }
            }
        }
        Ok(())
    }

    /// Count `fact` in place (once, however often it is added).
    fn remember(&mut self, fact: &FirewallFact) -> Result<(), ExecError> {
        if self.facts.insert(fact.clone()) {
            for e in self.elements(fact)? {
                *self.refs.entry(key(&e)).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Whether wharf's tables and base chains are all there; if not, re-create them holding
    /// every fact in place and say so once. Returns whether anything was restored.
    fn heal(&mut self) -> Result<bool, ExecError> {
        if ruleset::presence_probes(&self.policy).iter().all(|probe| self.nft.run(probe, false).is_ok()) {
            return Ok(false);
        }
        let mut elems = Vec::new();
        for fact in &self.facts {
            elems.extend(self.elements(fact)?);
        }
        self.nft.exec(&(ruleset::recreate(self.ibrname, &self.policy) + &ruleset::bulk_add(&elems, &self.policy)))?;
        wharf_engine::metrics::global().firewall_restored();
        tracing::warn!(facts = self.facts.len(), "wharf's nftables tables were removed by someone else; restored them");
        Ok(true)
    }

    fn add(&mut self, fact: &FirewallFact) -> Result<(), ExecError> {
        let elems = self.elements(fact)?;
        let hold = host_port(fact).filter(|_| !self.facts.contains(fact));
        if let Some(hp) = hold {
            self.ports.take(hp).map_err(|e| match e {
                Errno::EADDRINUSE => ExecError::new(format!("host port {}: address already in use", hp.describe())),
                Errno::EADDRNOTAVAIL => {
                    ExecError::new(format!("host port {}: {} is not an address of this host", hp.describe(), hp.ip))
                }
                e => ExecError::new(format!("host port {}: {e}", hp.describe())),
            })?;
        }
        let done = self.add_elements(&elems).and_then(|()| self.remember(fact));
        if done.is_err() {
            if let Some(hp) = hold {
                self.ports.release(&hp);
            }
        }
        done?;
        self.flush_conntrack(fact);
        Ok(())
    }

    fn add_elements(&mut self, elems: &[Elem]) -> Result<(), ExecError> {
        let fast: String = elems.iter().map(|e| e.add(&self.policy)).collect();
        if self.nft.run(&fast, false).is_ok() {
            return Ok(());
        }
        // Either wharf's tables are gone (restore them first, so the checks below see them)
        // or a map key already holds another value: replace it, in one transaction.
        self.heal()?;
        let mut slow = String::new();
        for e in elems {
            if e.value.is_some() && self.nft.run(&e.add(&self.policy), true).is_err() {
                slow += &e.delete(&self.policy);
            }
            slow += &e.add(&self.policy);
        }
        self.nft.exec(&slow).map(drop)
    }

    fn remove(&mut self, fact: &FirewallFact) -> Result<(), ExecError> {
        let elems = self.elements(fact)?;
        let known = self.facts.remove(fact);
        let mut doomed = Vec::new();
        for e in elems {
            let k = key(&e);
            let left = match self.refs.get_mut(&k) {
                Some(n) if known => {
                    *n -= 1;
                    *n
                }
                Some(n) => *n,
                None => 0,
            };
            if left == 0 {
                self.refs.remove(&k);
                doomed.push(e);
            }
        }
        if known {
            if let Some(hp) = host_port(fact) {
                self.ports.release(&hp);
            }
        }
        // Adding an element before deleting it makes deleting an absent element succeed.
        let fast: String = doomed.iter().map(|e| e.add(&self.policy) + &e.delete(&self.policy)).collect();
        if !fast.is_empty() && self.nft.run(&fast, false).is_err() && !self.heal()? {
            // Some element cannot be added: its key holds another value, so this fact's
            // element is not there; delete the others.
            let mut slow = String::new();
            for e in &doomed {
                if self.nft.run(&e.add(&self.policy), true).is_ok() {
                    slow += &e.add(&self.policy);
                    slow += &e.delete(&self.policy);
                }
            }
            if !slow.is_empty() {
                self.nft.exec(&slow)?;
            }
        }
        self.flush_conntrack(fact);
        Ok(())
    }

    /// After a UDP or SCTP published port changes, forget the connections tracked for its host
    /// port, so the next datagram is translated by the current mapping (a flow that was tracked
    /// before the mapping existed, or one translated by a removed mapping, would otherwise keep
    /// its old translation while datagrams keep coming). The kernel walks its whole conntrack
    /// table for this, so it costs milliseconds, whatever the number of ports.
    fn flush_conntrack(&mut self, fact: &FirewallFact) {
        let FirewallFact::Port { protocol, host_port, address, .. } = fact else { return };
        let l4 = match protocol {
            Protocol::Tcp => return,
            Protocol::Udp => conntrack::IPPROTO_UDP,
            Protocol::Sctp => conntrack::IPPROTO_SCTP,
        };
        if let Err(e) = conntrack::flush(address.is_ipv4(), l4, *host_port) {
            tracing::warn!(port = host_port, protocol = protocol.as_str(), error = %e, "flushing conntrack entries");
        }
    }

    fn port_state(&self, hp: &HostPort) -> Result<PortState, ExecError> {
        if self.ports.holds(hp) {
            return Ok(PortState::InUse);
        }
        match bind_port(hp) {
            Ok(_) => Ok(PortState::Free),
            Err(Errno::EADDRINUSE) => Ok(PortState::InUse),
            Err(Errno::EADDRNOTAVAIL) => Ok(PortState::NotLocal),
            Err(e) => Err(ExecError::new(format!("host port {}: {e}", hp.describe()))),
        }
    }

    /// For each fact, its elements and whether the kernel has each of them.
    fn inspect(&mut self, facts: &[FirewallFact]) -> Result<Vec<Vec<(String, bool)>>, ExecError> {
        let mut out = Vec::with_capacity(facts.len());
        for fact in facts {
            let mut elems = Vec::new();
            for e in self.elements(fact)? {
                let present = match self.nft.run(&e.get(&self.policy), false) {
                    Ok(listing) => e.value.as_ref().is_none_or(|v| listing.contains(&format!(": {v}"))),
                    Err(_) => false,
                };
                elems.push((e.describe(&self.policy), present));
            }
            out.push(elems);
        }
        Ok(out)
    }

    fn list(&mut self) -> Result<String, ExecError> {
        // One table per call: libnftables 1.0.6 fills its cache for one table per command buffer.
        let inet = self.nft.exec(&format!("list table {}", self.policy.table(Family::Inet)))?;
        Ok(inet + &self.nft.exec(&format!("list table {}", self.policy.table(Family::Bridge)))?)
    }
}

type Job = Box<dyn FnOnce(&mut Backend) + Send>;

/// The nftables firewall backend. See the module documentation for the threading rule.
#[derive(Debug)]
pub struct Nftables {
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl Nftables {
    /// Load libnftables and make sure wharf's tables exist, in the calling thread's network
    /// namespace, which this firewall then acts on.
    pub fn new() -> Result<Nftables, ExecError> {
        Self::start(None, Policy::default())
    }

    /// Like [`Nftables::new`], in the network namespace `netns` names (e.g. `/run/netns/NAME`).
    pub fn in_netns(netns: &Path) -> Result<Nftables, ExecError> {
        Self::start(Some(netns), Policy::default())
    }

    /// Like [`Nftables::new`] or [`Nftables::in_netns`], with a ruleset policy (table name,
    /// owner, published-port policy).
    pub fn with_policy(netns: Option<&Path>, policy: Policy) -> Result<Nftables, ExecError> {
        Self::start(netns, policy)
    }

    fn start(netns: Option<&Path>, policy: Policy) -> Result<Nftables, ExecError> {
        let file = match netns {
            Some(p) => Some(std::fs::File::open(p).map_err(|e| ExecError::new(format!("netns {}: {e}", p.display())))?),
            None => None,
        };
        let name = netns.map(|p| p.display().to_string());
        let (jobs, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<Watch, ExecError>>();
        let worker = std::thread::Builder::new()
            .name("wharf-nft".into())
            .spawn(move || {
                if let (Some(f), Some(name)) = (&file, &name) {
                    if let Err(e) = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET) {
                        let _ = ready_tx.send(Err(ExecError::os(format!("entering netns {name}"), e)));
                        return;
                    }
                }
                drop(file);
                let table = policy.table.clone();
                let opened = Context::open().and_then(|nft| {
                    let mut b = Backend {
                        nft,
                        ibrname: false,
                        policy,
                        facts: HashSet::new(),
                        refs: HashMap::new(),
                        ports: Reservations::default(),
                    };
                    b.init()?;
                    let watch = Watch::new(WATCH_TICK, &table).map_err(ExecError::new)?;
                    Ok((b, watch))
                });
                let mut backend = match opened {
                    Ok((b, watch)) => {
                        let _ = ready_tx.send(Ok(watch));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                loop {
                    let job = match rx.recv_timeout(IDLE) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => {
                            if backend.nft.release() {
                                crate::alloc::trim();
                            }
                            match rx.recv() {
                                Ok(job) => job,
                                Err(_) => break,
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    job(&mut backend);
                }
            })
            .map_err(|e| ExecError::os("starting the nftables worker", e))?;
        let watch = match ready_rx.recv() {
            Ok(Ok(watch)) => watch,
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(ExecError::new("the nftables worker died while starting"));
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = Self::spawn_watcher(watch, jobs.clone(), stop.clone())?;
        Ok(Nftables { jobs: Some(jobs), worker: Some(worker), stop, watcher: Some(watcher) })
    }

    /// The thread that waits for nftables notifications and, when something of wharf's was
    /// deleted, has the worker check and restore the tables once the burst is over.
    fn spawn_watcher(mut watch: Watch, jobs: Sender<Job>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, ExecError> {
        std::thread::Builder::new()
            .name("wharf-nft-watch".into())
            .spawn(move || {
                let mut pending = false;
                while !stop.load(Ordering::SeqCst) {
                    match watch.wait() {
                        Seen::Check => pending = true,
                        Seen::Harmless => {}
                        Seen::Nothing if pending => {
                            pending = false;
                            let job: Job = Box::new(|b| {
                                if let Err(e) = b.heal() {
                                    tracing::error!(error = %e, "restoring wharf's nftables tables");
                                }
                            });
                            if jobs.send(job).is_err() {
                                return;
                            }
                        }
                        Seen::Nothing => {}
                    }
                }
            })
            .map_err(|e| ExecError::os("starting the nftables watch", e))
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Backend) -> Result<T, ExecError> + Send + 'static,
    ) -> Result<T, ExecError> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |b| {
            let _ = tx.send(f(b));
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| ExecError::new("the nftables worker is gone"))?;
        jobs.send(job).map_err(|_| ExecError::new("the nftables worker is gone"))?;
        rx.recv().map_err(|_| ExecError::new("the nftables worker stopped during a call"))?
    }

    /// wharf's tables as nft lists them.
    pub fn list(&self) -> Result<String, ExecError> {
        self.call(|b| b.list())
    }
}

impl Firewall for Nftables {
    fn add(&self, fact: &FirewallFact) -> Result<(), ExecError> {
        let fact = fact.clone();
        self.call(move |b| b.add(&fact))
    }

    fn remove(&self, fact: &FirewallFact) -> Result<(), ExecError> {
        let fact = fact.clone();
        self.call(move |b| b.remove(&fact))
    }

    fn reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        let facts = facts.to_vec();
        self.call(move |b| b.reload(&facts))
    }

    fn port_state(&self, hp: &HostPort) -> Result<PortState, ExecError> {
        let hp = *hp;
        self.call(move |b| b.port_state(&hp))
    }

    fn inspect(&self, facts: &[FirewallFact]) -> Result<Vec<Vec<(String, bool)>>, ExecError> {
        let facts = facts.to_vec();
        self.call(move |b| b.inspect(&facts))
    }

    fn ruleset(&self) -> Result<String, ExecError> {
        self.list()
    }
}

impl Drop for Nftables {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
