//! The nftables backend: one fixed ruleset in wharf's own tables, driven by set and map elements.
//!
//! wharf owns `table inet wharf` (filter and NAT) and `table bridge wharf` (inter-container
//! communication on a bridge). It never flushes the ruleset and never touches another table.
//! The rules never change after they are installed; a [`FirewallFact`] is a handful of set and
//! map elements, and every [`Firewall`] call is one nftables transaction that adds or deletes
//! elements only, so its cost does not grow with the number of networks or published ports.
//! (Only when a map key already holds another value does a call first check its elements one
//! by one, in dry-run transactions, before its one real transaction.)
//!
//! libnftables is loaded at run time (`libnftables.so.1`, package `libnftables1`) and called
//! in-process: no `nft` process per change.
//!
//! # Threading
//!
//! An [`Nftables`] acts on the network namespace it was created in, whatever thread calls it
//! later: [`Nftables::new`] binds to the namespace of the calling thread, [`Nftables::in_netns`]
//! to the namespace a file names. It owns a worker thread that entered that namespace once and
//! holds the libnftables context (whose netlink socket is bound to the namespace it was opened
//! in); every call is carried out on that thread, so callers may be on any thread, in any
//! namespace. Calls are serialised.
//!
//! # The ruleset
//!
//! - `forward` (filter, priority -10, policy accept): routed traffic that stays on one bridge
//!   is accepted when ICC is on (`intra`); traffic into or out of an internal or isolated
//!   network is dropped (`isolated`); replies and DNATed (published-port) traffic are accepted;
//!   traffic between two wharf bridges is dropped (`bridges`); other new traffic into a network
//!   whose gateway mode is nat is dropped (`nat`). Everything else is left alone.
//! - `prerouting` and `output` (NAT): traffic to a local address is DNATed by the published
//!   port maps (`dnat4_ip`, `dnat4`, `dnat6_ip`, `dnat6`).
//! - `postrouting` (NAT): DNATed traffic into a bridge is masqueraded unless it was routed in
//!   from a non-wharf interface (so outside clients keep their address, while the host's own
//!   connections, loopback included, and hairpin connections get the gateway's); traffic routed
//!   from a network's bridge out through a non-wharf interface is SNATed (`snat4`) or
//!   masqueraded (`masq`), per address family.
//! - `bridge wharf forward`: frames bridged between two ports of a network with ICC off are
//!   dropped: by bridge name (`icc_off`) where the kernel has `meta ibrname`
//!   (`CONFIG_NFT_BRIDGE_META`), otherwise by the network's subnets (`icc_off4`, `icc_off6`).
//!   Where `br_netfilter` passes bridged traffic to the inet hooks, the `forward` chain enforces
//!   ICC off as well.
//!
//! Networks are told apart by bridge name, never by subnet, in `table inet wharf`: none of its
//! sets has intervals, so no change has to read existing elements.

use super::Firewall;
use crate::executor::ExecError;
use ipnet::IpNet;
use libloading::Library;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::net::IpAddr;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::mpsc::{channel, sync_channel, Sender};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use wharf_sdk::{FirewallFact, GatewayMode, Protocol};

/// wharf's inet table.
const INET: &str = "inet wharf";
/// wharf's bridge table.
const BRIDGE: &str = "bridge wharf";

/// Sets and maps of `table inet wharf`: keyword, name, declaration. None has intervals:
/// libnftables 1.0.6 reads every element of a table's interval sets before deleting any
/// element, which would make a change cost grow with the number of networks.
const INET_SETS: &[(&str, &str, &str)] = &[
    ("set", "bridges", "type ifname;"),
    ("set", "intra", "type ifname . ifname;"),
    ("set", "isolated", "type nf_proto . ifname;"),
    ("set", "nat", "type nf_proto . ifname;"),
    ("set", "masq", "type nf_proto . ifname;"),
    ("map", "snat4", "type ifname : ipv4_addr;"),
    ("map", "dnat4", "type inet_proto . inet_service : ipv4_addr . inet_service;"),
    ("map", "dnat4_ip", "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;"),
    ("map", "dnat6", "type inet_proto . inet_service : ipv6_addr . inet_service;"),
    ("map", "dnat6_ip", "type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;"),
];

/// Chains of `table inet wharf`: name, base-chain declaration (empty for a regular chain), rules.
const INET_CHAINS: &[(&str, &str, &[&str])] = &[
    (
        "forward",
        "type filter hook forward priority -10; policy accept;",
        &[
            "iifname . oifname @intra accept",
            "meta nfproto . iifname @isolated drop",
            "meta nfproto . oifname @isolated drop",
            "ct state established,related accept",
            "ct status dnat accept",
            "iifname @bridges oifname @bridges drop",
            "meta nfproto . oifname @nat drop",
        ],
    ),
    (
        "published",
        "",
        &[
            "dnat ip to ip daddr . meta l4proto . th dport map @dnat4_ip",
            "meta nfproto ipv4 dnat ip to meta l4proto . th dport map @dnat4",
            "dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6_ip",
            "meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @dnat6",
        ],
    ),
    ("prerouting", "type nat hook prerouting priority -110; policy accept;", &["fib daddr type local jump published"]),
    ("output", "type nat hook output priority -110; policy accept;", &["fib daddr type local jump published"]),
    (
        "postrouting",
        "type nat hook postrouting priority 90; policy accept;",
        &[
            // DNATed into a bridge from the host itself (loopback included) or bridged back
            // into its own bridge by br_netfilter (hairpin): no input interface in postrouting.
            "ct status dnat oifname @bridges iif 0 masquerade",
            // DNATed and routed from a wharf bridge (hairpin without br_netfilter).
            "ct status dnat oifname @bridges iifname @bridges masquerade",
            "oifname @bridges return",
            "meta nfproto ipv4 snat ip to iifname map @snat4",
            "meta nfproto . iifname @masq masquerade",
        ],
    ),
];

/// The bridge-family forward chain's declaration.
const BRIDGE_FORWARD: &str = "type filter hook forward priority -10; policy accept;";

/// Rules of the bridge-family forward chain where the kernel lacks `meta ibrname`: match the
/// subnets of networks with ICC off.
const BRIDGE_ADDR_RULES: &[&str] =
    &["ip saddr @icc_off4 drop", "ip daddr @icc_off4 drop", "ip6 saddr @icc_off6 drop", "ip6 daddr @icc_off6 drop"];

/// The commands that make sure wharf's tables, sets, maps and chains exist and that the chains
/// hold exactly the fixed rules; existing elements are kept. `ibrname`: the kernel supports
/// `meta ibrname` in the bridge family.
fn structure(ibrname: bool) -> String {
    let mut s = format!("add table {INET}\n");
    for (kind, name, decl) in INET_SETS {
        s += &format!("add {kind} {INET} {name} {{ {decl} }}\n");
    }
    for (name, decl, _) in INET_CHAINS {
        if decl.is_empty() {
            s += &format!("add chain {INET} {name}\n");
        } else {
            s += &format!("add chain {INET} {name} {{ {decl} }}\n");
        }
        s += &format!("flush chain {INET} {name}\n");
    }
    for (name, _, rules) in INET_CHAINS {
        for rule in *rules {
            s += &format!("add rule {INET} {name} {rule}\n");
        }
    }
    s += &format!("add table {BRIDGE}\n");
    if ibrname {
        s += &format!("add set {BRIDGE} icc_off {{ type ifname; }}\n");
    } else {
        s += &format!("add set {BRIDGE} icc_off4 {{ type ipv4_addr; flags interval; }}\n");
        s += &format!("add set {BRIDGE} icc_off6 {{ type ipv6_addr; flags interval; }}\n");
    }
    s += &format!("add chain {BRIDGE} forward {{ {BRIDGE_FORWARD} }}\nflush chain {BRIDGE} forward\n");
    if ibrname {
        s += &format!("add rule {BRIDGE} forward meta ibrname @icc_off drop\n");
    } else {
        for rule in BRIDGE_ADDR_RULES {
            s += &format!("add rule {BRIDGE} forward {rule}\n");
        }
    }
    s
}

/// Commands that drop wharf's tables (absent is fine) and create them afresh, empty.
fn recreate(ibrname: bool) -> String {
    format!("add table {INET}\ndelete table {INET}\nadd table {BRIDGE}\ndelete table {BRIDGE}\n{}", structure(ibrname))
}

/// A dry-run transaction that fails where the kernel lacks `meta ibrname` in the bridge family.
fn ibrname_probe() -> String {
    format!("add table {BRIDGE}\nadd chain {BRIDGE} probe\nadd rule {BRIDGE} probe meta ibrname \"wharf\" drop\n")
}

/// One element of one of wharf's sets or maps.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Elem {
    /// `inet wharf` or `bridge wharf`.
    table: &'static str,
    /// Set or map name.
    set: &'static str,
    /// The key, in nft syntax.
    key: String,
    /// The value, for a map.
    value: Option<String>,
}

impl Elem {
    fn new(table: &'static str, set: &'static str, key: String) -> Self {
        Elem { table, set, key, value: None }
    }

    fn mapped(table: &'static str, set: &'static str, key: String, value: String) -> Self {
        Elem { table, set, key, value: Some(value) }
    }

    /// The element with its value, as `add element` takes it.
    fn full(&self) -> String {
        match &self.value {
            Some(v) => format!("{} : {v}", self.key),
            None => self.key.clone(),
        }
    }

    fn add(&self) -> String {
        format!("add element {} {} {{ {} }}\n", self.table, self.set, self.full())
    }

    fn delete(&self) -> String {
        format!("delete element {} {} {{ {} }}\n", self.table, self.set, self.key)
    }
}

/// An interface name quoted for nft; refuses names that are not plain interface names.
fn ifname(name: &str) -> Result<String, ExecError> {
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 15 || !plain {
        return Err(ExecError::new(format!("firewall: {name:?} is not a usable interface name")));
    }
    Ok(format!("\"{name}\""))
}

/// The set and map elements that make up `fact`. `ibrname`: the bridge table has `icc_off`
/// (otherwise it matches ICC-off networks by subnet).
fn elements(fact: &FirewallFact, ibrname: bool) -> Result<Vec<Elem>, ExecError> {
    match fact {
        FirewallFact::Network {
            bridge,
            subnets,
            masquerade,
            icc,
            internal,
            gateway_mode_v4,
            gateway_mode_v6,
            snat_v4,
        } => {
            let br = ifname(bridge)?;
            let mut out = vec![Elem::new(INET, "bridges", br.clone())];
            if *icc {
                out.push(Elem::new(INET, "intra", format!("{br} . {br}")));
            } else if ibrname {
                out.push(Elem::new(BRIDGE, "icc_off", br.clone()));
            } else {
                for net in subnets {
                    let set = if matches!(net, IpNet::V4(_)) { "icc_off4" } else { "icc_off6" };
                    out.push(Elem::new(BRIDGE, set, net.trunc().to_string()));
                }
            }
            let snat = match snat_v4 {
                Some(IpAddr::V4(a)) => Some(a.to_string()),
                Some(IpAddr::V6(a)) => {
                    return Err(ExecError::new(format!("firewall: {bridge}: snat_v4 {a} is not an IPv4 address")))
                }
                None => None,
            };
            for (family, mode) in [("ipv4", gateway_mode_v4), ("ipv6", gateway_mode_v6)] {
                let mode = if *internal { GatewayMode::Isolated } else { *mode };
                match mode {
                    GatewayMode::Isolated => out.push(Elem::new(INET, "isolated", format!("{family} . {br}"))),
                    GatewayMode::Routed => {}
                    GatewayMode::Nat => {
                        out.push(Elem::new(INET, "nat", format!("{family} . {br}")));
                        match (&snat, *masquerade, family) {
                            (_, false, _) => {}
                            (Some(a), true, "ipv4") => out.push(Elem::mapped(INET, "snat4", br.clone(), a.clone())),
                            _ => out.push(Elem::new(INET, "masq", format!("{family} . {br}"))),
                        }
                    }
                }
            }
            Ok(out)
        }
        FirewallFact::Port { protocol, host_ip, host_port, address, port, .. } => {
            let service = format!("{} . {host_port}", protocol.as_str());
            let value = format!("{address} . {port}");
            let v4 = address.is_ipv4();
            match host_ip {
                Some(h) if h.is_ipv4() != v4 => Err(ExecError::new(format!(
                    "firewall: published port {host_port}: host address {h} and endpoint address {address} \
                     are of different families"
                ))),
                Some(h) if !h.is_unspecified() => {
                    let set = if v4 { "dnat4_ip" } else { "dnat6_ip" };
                    Ok(vec![Elem::mapped(INET, set, format!("{h} . {service}"), value)])
                }
                _ => Ok(vec![Elem::mapped(INET, if v4 { "dnat4" } else { "dnat6" }, service, value)]),
            }
        }
    }
}

/// Commands that add every element of `elems` at once, one `add element` per set; on a key
/// given twice, the last value wins.
fn bulk_add(elems: &[Elem]) -> String {
    let mut by_set: BTreeMap<(&str, &str), BTreeMap<&str, &Elem>> = BTreeMap::new();
    for e in elems {
        by_set.entry((e.table, e.set)).or_default().insert(&e.key, e);
    }
    let mut s = String::new();
    for ((table, set), items) in by_set {
        let list: Vec<String> = items.values().map(|e| e.full()).collect();
        s += &format!("add element {table} {set} {{ {} }}\n", list.join(", "));
    }
    s
}

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type CtxSetDryRun = unsafe extern "C" fn(*mut c_void, bool);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The libnftables functions wharf calls. Loaded once per process and never unloaded.
struct Api {
    _lib: Library,
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_output: CtxGetBuffer,
    get_error: CtxGetBuffer,
    set_dry_run: CtxSetDryRun,
    run_cmd: RunCmd,
    /// libnftables keeps some process-wide state (first-use initialisation in `nft_ctx_new`,
    /// an interface cache), so every call into it holds this lock.
    lock: Mutex<()>,
}

/// The soname of libnftables.
const LIBNFTABLES: &str = "libnftables.so.1";

impl Api {
    fn load() -> Result<Api, String> {
        let why = |e: libloading::Error| format!("loading {LIBNFTABLES} (package libnftables1): {e}");
        // SAFETY: libnftables' initialisers only set up the library's own state.
        let lib = unsafe { Library::new(LIBNFTABLES) }.map_err(why)?;
        // SAFETY: each symbol is looked up with the signature <nftables/libnftables.h> declares
        // for it (soname 1), and the pointers are used only while `lib` is alive: `Api` owns it
        // and lives in a static that is never dropped.
        unsafe {
            Ok(Api {
                ctx_new: *lib.get::<CtxNew>("nft_ctx_new").map_err(why)?,
                ctx_free: *lib.get::<CtxFree>("nft_ctx_free").map_err(why)?,
                buffer_output: *lib.get::<CtxBuffer>("nft_ctx_buffer_output").map_err(why)?,
                buffer_error: *lib.get::<CtxBuffer>("nft_ctx_buffer_error").map_err(why)?,
                get_output: *lib.get::<CtxGetBuffer>("nft_ctx_get_output_buffer").map_err(why)?,
                get_error: *lib.get::<CtxGetBuffer>("nft_ctx_get_error_buffer").map_err(why)?,
                set_dry_run: *lib.get::<CtxSetDryRun>("nft_ctx_set_dry_run").map_err(why)?,
                run_cmd: *lib.get::<RunCmd>("nft_run_cmd_from_buffer").map_err(why)?,
                _lib: lib,
                lock: Mutex::new(()),
            })
        }
    }

    fn get() -> Result<&'static Api, ExecError> {
        static API: OnceLock<Result<Api, String>> = OnceLock::new();
        API.get_or_init(Api::load).as_ref().map_err(|e| ExecError::new(e.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A libnftables context, opened on (and never leaving) the worker thread.
struct Context {
    api: &'static Api,
    ctx: NonNull<c_void>,
    /// The kernel has `meta ibrname` in the bridge family.
    ibrname: bool,
}

/// A libnftables buffer as a string; empty for a null pointer.
///
/// # Safety
/// `p` is null or points at a NUL-terminated string that stays valid during the call.
unsafe fn buffer_text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Context {
    /// Open a context whose netlink socket is bound to the calling thread's namespace.
    fn open() -> Result<Context, ExecError> {
        let api = Api::get()?;
        let (raw, buffered) = {
            let _guard = api.lock();
            // SAFETY: nft_ctx_new(NFT_CTX_DEFAULT) has no preconditions; it returns null on failure.
            let raw = unsafe { (api.ctx_new)(0) };
            // SAFETY: a non-null `raw` is a live context from nft_ctx_new.
            let buffered = !raw.is_null() && unsafe { (api.buffer_output)(raw) == 0 && (api.buffer_error)(raw) == 0 };
            (raw, buffered)
        };
        let ctx = NonNull::new(raw).ok_or_else(|| ExecError::new("nftables: nft_ctx_new failed"))?;
        let context = Context { api, ctx, ibrname: false };
        if !buffered {
            return Err(ExecError::new("nftables: cannot buffer libnftables output"));
        }
        Ok(context)
    }

    /// Run `script` as one transaction (or, with `dry`, only check it against the kernel).
    /// Returns libnftables' output, or its error message.
    fn run(&mut self, script: &str, dry: bool) -> Result<String, String> {
        let text = CString::new(script).map_err(|_| "nftables: command holds a NUL byte".to_string())?;
        let api = self.api;
        let ctx = self.ctx.as_ptr();
        let _guard = api.lock();
        // SAFETY: `ctx` is a live context owned by this thread; `text` outlives the call; the
        // buffers returned by get_output/get_error are copied before the next libnftables call.
        unsafe {
            if dry {
                (api.set_dry_run)(ctx, true);
            }
            let rc = (api.run_cmd)(ctx, text.as_ptr());
            if dry {
                (api.set_dry_run)(ctx, false);
            }
            let output = buffer_text((api.get_output)(ctx));
            let error = buffer_text((api.get_error)(ctx));
            if rc == 0 {
                Ok(output)
            } else if error.trim().is_empty() {
                Err(format!("nftables: command failed ({rc})"))
            } else {
                Err(format!("nftables: {}", error.trim()))
            }
        }
    }

    fn exec(&mut self, script: &str) -> Result<String, ExecError> {
        self.run(script, false).map_err(ExecError)
    }

    /// Find out what the kernel supports, then make sure wharf's tables exist with the fixed
    /// rules, keeping existing elements; if they cannot be brought up to date in place (their
    /// layout differs), create them afresh and empty.
    fn init(&mut self) -> Result<(), ExecError> {
        self.ibrname = self.run(&ibrname_probe(), true).is_ok();
        if let Err(e) = self.run(&structure(self.ibrname), false) {
            tracing::warn!(error = %e, "wharf's nftables tables differ from this version's; recreating them");
            self.exec(&recreate(self.ibrname))?;
        }
        Ok(())
    }

    fn reload(&mut self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        let mut elems = Vec::new();
        for fact in facts {
            elems.extend(elements(fact, self.ibrname)?);
        }
        self.exec(&(recreate(self.ibrname) + &bulk_add(&elems))).map(drop)
    }

    fn add(&mut self, fact: &FirewallFact) -> Result<(), ExecError> {
        let elems = elements(fact, self.ibrname)?;
        let fast: String = elems.iter().map(Elem::add).collect();
        if self.run(&fast, false).is_err() {
            // A map key already holds another value: replace it, in one transaction.
            let mut slow = String::new();
            for e in &elems {
                if e.value.is_some() && self.run(&e.add(), true).is_err() {
                    slow += &e.delete();
                }
                slow += &e.add();
            }
            self.exec(&slow)?;
        }
        self.flush_conntrack(fact);
        Ok(())
    }

    fn remove(&mut self, fact: &FirewallFact) -> Result<(), ExecError> {
        let elems = elements(fact, self.ibrname)?;
        // Adding an element before deleting it makes deleting an absent element succeed.
        let fast: String = elems.iter().map(|e| e.add() + &e.delete()).collect();
        if self.run(&fast, false).is_err() {
            // Some element cannot be added: its key holds another value (or its set is gone),
            // so this fact's element is not there; delete the others.
            let mut slow = String::new();
            for e in &elems {
                if self.run(&e.add(), true).is_ok() {
                    slow += &e.add();
                    slow += &e.delete();
                }
            }
            if !slow.is_empty() {
                self.exec(&slow)?;
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

    fn list(&mut self) -> Result<String, ExecError> {
        // One table per call: libnftables 1.0.6 fills its cache for one table per command buffer.
        Ok(self.exec(&format!("list table {INET}"))? + &self.exec(&format!("list table {BRIDGE}"))?)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _guard = self.api.lock();
        // SAFETY: `ctx` came from nft_ctx_new and is freed once, here.
        unsafe { (self.api.ctx_free)(self.ctx.as_ptr()) }
    }
}

type Job = Box<dyn FnOnce(&mut Context) + Send>;

/// The nftables firewall backend. See the module documentation for the threading rule.
pub struct Nftables {
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

impl Nftables {
    /// Load libnftables and make sure wharf's tables exist, in the calling thread's network
    /// namespace, which this firewall then acts on.
    pub fn new() -> Result<Nftables, ExecError> {
        Self::start(None)
    }

    /// Like [`Nftables::new`], in the network namespace `netns` names (e.g. `/run/netns/NAME`).
    pub fn in_netns(netns: &Path) -> Result<Nftables, ExecError> {
        Self::start(Some(netns))
    }

    fn start(netns: Option<&Path>) -> Result<Nftables, ExecError> {
        let file = match netns {
            Some(p) => Some(std::fs::File::open(p).map_err(|e| ExecError::new(format!("netns {}: {e}", p.display())))?),
            None => None,
        };
        let name = netns.map(|p| p.display().to_string());
        let (jobs, rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<(), ExecError>>();
        let worker = std::thread::Builder::new()
            .name("wharf-nft".into())
            .spawn(move || {
                if let (Some(f), Some(name)) = (&file, &name) {
                    if let Err(e) = nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET) {
                        let _ = ready_tx.send(Err(ExecError::new(format!("entering netns {name}: {e}"))));
                        return;
                    }
                }
                drop(file);
                let mut ctx = match Context::open().and_then(|mut c| c.init().map(|()| c)) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    job(&mut ctx);
                }
            })
            .map_err(|e| ExecError::new(format!("starting the nftables worker: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Nftables { jobs: Some(jobs), worker: Some(worker) }),
            Ok(Err(e)) => {
                let _ = worker.join();
                Err(e)
            }
            Err(_) => {
                let _ = worker.join();
                Err(ExecError::new("the nftables worker died while starting"))
            }
        }
    }

    /// Run `f` on the worker and wait for its result.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context) -> Result<T, ExecError> + Send + 'static,
    ) -> Result<T, ExecError> {
        let (tx, rx) = sync_channel(1);
        let job: Job = Box::new(move |ctx| {
            let _ = tx.send(f(ctx));
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| ExecError::new("the nftables worker is gone"))?;
        jobs.send(job).map_err(|_| ExecError::new("the nftables worker is gone"))?;
        rx.recv().map_err(|_| ExecError::new("the nftables worker stopped during a call"))?
    }

    /// wharf's tables as `nft list table` prints them.
    pub fn list(&self) -> Result<String, ExecError> {
        self.call(|ctx| ctx.list())
    }
}

impl Firewall for Nftables {
    fn add(&self, fact: &FirewallFact) -> Result<(), ExecError> {
        let fact = fact.clone();
        self.call(move |ctx| ctx.add(&fact))
    }

    fn remove(&self, fact: &FirewallFact) -> Result<(), ExecError> {
        let fact = fact.clone();
        self.call(move |ctx| ctx.remove(&fact))
    }

    fn reload(&self, facts: &[FirewallFact]) -> Result<(), ExecError> {
        let facts = facts.to_vec();
        self.call(move |ctx| ctx.reload(&facts))
    }
}

impl Drop for Nftables {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Deleting conntrack entries over ctnetlink, in the calling thread's namespace.
mod conntrack {
    use nix::sys::socket::{
        bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    use std::os::fd::{AsRawFd, RawFd};

    pub const IPPROTO_UDP: u8 = 17;
    pub const IPPROTO_SCTP: u8 = 132;

    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_DUMP: u16 = 0x300;
    /// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*`.
    const CT_NEW: u16 = 0x100;
    const CT_GET: u16 = 0x101;
    const CT_DELETE: u16 = 0x102;
    const CTA_TUPLE_ORIG: u16 = 1;
    const CTA_ID: u16 = 12;
    const CTA_ZONE: u16 = 18;
    const CTA_TUPLE_PROTO: u16 = 2;
    const CTA_PROTO_NUM: u16 = 1;
    const CTA_PROTO_DST_PORT: u16 = 3;
    const NLA_TYPE_MASK: u16 = 0x3fff;
    const ENOENT: i32 = 2;

    fn align(n: usize) -> usize {
        (n + 3) & !3
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_ne_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    /// The netlink attributes in `b`, as (type, whole attribute, payload).
    fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at + 4 > b.len() {
                return None;
            }
            let len = u16_at(b, at) as usize;
            if len < 4 || at + len > b.len() {
                return None;
            }
            let item = (u16_at(b, at + 2) & NLA_TYPE_MASK, &b[at..at + len], &b[at + 4..at + len]);
            at += align(len);
            Some(item)
        })
    }

    /// The netlink messages in `b`, as (type, payload).
    fn messages(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        let mut at = 0;
        std::iter::from_fn(move || {
            if at + 16 > b.len() {
                return None;
            }
            let len = u32_at(b, at) as usize;
            if len < 16 || at + len > b.len() {
                return None;
            }
            let item = (u16_at(b, at + 4), &b[at + 16..at + len]);
            at += align(len);
            Some(item)
        })
    }

    /// A ctnetlink request: netlink header, nfgenmsg for `family`, then `attrs` (each aligned).
    fn request(kind: u16, flags: u16, seq: u32, family: u8, attrs: &[&[u8]]) -> Vec<u8> {
        let mut m = vec![0u8; 16];
        m.extend_from_slice(&[family, 0, 0, 0]);
        for a in attrs {
            m.extend_from_slice(a);
            m.resize(align(m.len()), 0);
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&kind.to_ne_bytes());
        m[6..8].copy_from_slice(&flags.to_ne_bytes());
        m[8..12].copy_from_slice(&seq.to_ne_bytes());
        m
    }

    /// The errno of an NLMSG_ERROR payload (0 for an acknowledgement).
    fn errno(payload: &[u8]) -> i32 {
        if payload.len() < 4 {
            return 0;
        }
        -(u32_at(payload, 0) as i32)
    }

    /// For a conntrack entry (the attributes of one dump message): the attributes that name it
    /// for a delete, when its original direction is `l4` to `port`.
    fn matching(entry: &[u8], l4: u8, port: u16) -> Option<Vec<&[u8]>> {
        let mut key = Vec::new();
        let mut hit = false;
        for (kind, whole, payload) in attrs(entry) {
            match kind {
                CTA_TUPLE_ORIG => {
                    key.push(whole);
                    for (k, _, proto) in attrs(payload) {
                        if k != CTA_TUPLE_PROTO {
                            continue;
                        }
                        let mut num = None;
                        let mut dport = None;
                        for (a, _, v) in attrs(proto) {
                            match a {
                                CTA_PROTO_NUM if !v.is_empty() => num = Some(v[0]),
                                CTA_PROTO_DST_PORT if v.len() >= 2 => dport = Some(u16::from_be_bytes([v[0], v[1]])),
                                _ => {}
                            }
                        }
                        hit = num == Some(l4) && dport == Some(port);
                    }
                }
                CTA_ZONE | CTA_ID => key.push(whole),
                _ => {}
            }
        }
        hit.then_some(key)
    }

    fn recv_some(fd: RawFd, buf: &mut [u8]) -> Result<usize, String> {
        recv(fd, buf, MsgFlags::empty()).map_err(|e| format!("ctnetlink: {e}"))
    }

    /// Delete every conntrack entry of the family (IPv4 when `v4`) whose original direction
    /// goes to `port` over transport protocol `l4`. Returns how many were deleted.
    pub fn flush(v4: bool, l4: u8, port: u16) -> Result<usize, String> {
        let family = if v4 { nix::libc::AF_INET } else { nix::libc::AF_INET6 } as u8;
        let sock =
            socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
                .map_err(|e| format!("ctnetlink socket: {e}"))?;
        let fd = sock.as_raw_fd();
        bind(fd, &NetlinkAddr::new(0, 0)).map_err(|e| format!("ctnetlink bind: {e}"))?;
        send(fd, &request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, family, &[]), MsgFlags::empty())
            .map_err(|e| format!("ctnetlink dump: {e}"))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        'dump: loop {
            let n = recv_some(fd, &mut buf)?;
            for (kind, payload) in messages(&buf[..n]) {
                match kind {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR if errno(payload) != 0 => {
                        return Err(format!("ctnetlink dump: errno {}", errno(payload)));
                    }
                    CT_NEW if payload.len() >= 4 => {
                        if let Some(key) = matching(&payload[4..], l4, port) {
                            doomed.push(request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, family, &key));
                        }
                    }
                    _ => {}
                }
            }
        }
        for msg in &doomed {
            send(fd, msg, MsgFlags::empty()).map_err(|e| format!("ctnetlink delete: {e}"))?;
            let n = recv_some(fd, &mut buf)?;
            for (kind, payload) in messages(&buf[..n]) {
                let e = errno(payload);
                if kind == NLMSG_ERROR && e != 0 && e != ENOENT {
                    return Err(format!("ctnetlink delete: errno {e}"));
                }
            }
        }
        Ok(doomed.len())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
            let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(&kind.to_ne_bytes());
            a.extend_from_slice(payload);
            a.resize(align(a.len()), 0);
            a
        }

        #[test]
        fn entries_are_picked_by_protocol_and_original_destination_port() {
            let nested = 0x8000;
            let proto = [attr(CTA_PROTO_NUM, &[17]), attr(CTA_PROTO_DST_PORT, &5353u16.to_be_bytes())].concat();
            let orig = attr(CTA_TUPLE_ORIG | nested, &attr(CTA_TUPLE_PROTO | nested, &proto));
            let entry = [orig.clone(), attr(CTA_ID, &7u32.to_be_bytes()), attr(3, &[0; 4])].concat();
            let key = matching(&entry, IPPROTO_UDP, 5353).expect("matches");
            assert_eq!(key.len(), 2);
            assert_eq!(key[0], &orig[..]);
            assert!(matching(&entry, IPPROTO_UDP, 5354).is_none());
            assert!(matching(&entry, IPPROTO_SCTP, 5353).is_none());
            let msg = request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, 2, &key);
            assert_eq!(u32_at(&msg, 0) as usize, msg.len());
            assert_eq!(messages(&msg).count(), 1);
            assert_eq!(msg.len(), 16 + 4 + orig.len() + 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn network(icc: bool, internal: bool) -> FirewallFact {
        FirewallFact::Network {
            bridge: "br-x".into(),
            subnets: vec![net("10.1.0.5/24"), net("fd00:1::/64")],
            masquerade: true,
            icc,
            internal,
            gateway_mode_v4: GatewayMode::Nat,
            gateway_mode_v6: GatewayMode::Routed,
            snat_v4: None,
        }
    }

    fn adds(elems: &[Elem]) -> Vec<String> {
        elems.iter().map(|e| e.add().trim_end().to_string()).collect()
    }

    #[test]
    fn a_nat_network_is_masqueraded_and_closed_to_new_inbound_traffic() {
        let got = adds(&elements(&network(true, false), true).unwrap());
        assert_eq!(
            got,
            [
                r#"add element inet wharf bridges { "br-x" }"#,
                r#"add element inet wharf intra { "br-x" . "br-x" }"#,
                r#"add element inet wharf nat { ipv4 . "br-x" }"#,
                r#"add element inet wharf masq { ipv4 . "br-x" }"#,
            ]
        );
    }

    #[test]
    fn an_internal_network_without_icc_is_isolated_in_both_families() {
        let got = adds(&elements(&network(false, true), true).unwrap());
        assert_eq!(
            got,
            [
                r#"add element inet wharf bridges { "br-x" }"#,
                r#"add element bridge wharf icc_off { "br-x" }"#,
                r#"add element inet wharf isolated { ipv4 . "br-x" }"#,
                r#"add element inet wharf isolated { ipv6 . "br-x" }"#,
            ]
        );
        let by_subnet = adds(&elements(&network(false, true), false).unwrap());
        assert!(by_subnet.contains(&"add element bridge wharf icc_off4 { 10.1.0.0/24 }".to_string()), "{by_subnet:?}");
        assert!(by_subnet.contains(&"add element bridge wharf icc_off6 { fd00:1::/64 }".to_string()), "{by_subnet:?}");
        assert!(!by_subnet.iter().any(|l| l.contains("icc_off {")), "{by_subnet:?}");
    }

    #[test]
    fn snat_replaces_masquerade_for_ipv4_only() {
        let FirewallFact::Network { bridge, subnets, .. } = network(true, false) else { unreachable!() };
        let fact = FirewallFact::Network {
            bridge,
            subnets,
            masquerade: true,
            icc: true,
            internal: false,
            gateway_mode_v4: GatewayMode::Nat,
            gateway_mode_v6: GatewayMode::Nat,
            snat_v4: Some("192.0.2.9".parse().unwrap()),
        };
        let got = adds(&elements(&fact, false).unwrap());
        assert!(got.contains(&r#"add element inet wharf snat4 { "br-x" : 192.0.2.9 }"#.to_string()), "{got:?}");
        assert!(got.contains(&r#"add element inet wharf masq { ipv6 . "br-x" }"#.to_string()), "{got:?}");
        assert!(!got.contains(&r#"add element inet wharf masq { ipv4 . "br-x" }"#.to_string()), "{got:?}");
    }

    #[test]
    fn the_inet_table_has_no_interval_sets() {
        assert!(INET_SETS.iter().all(|(_, _, decl)| !decl.contains("interval")));
        assert!(structure(true).lines().all(|l| !l.contains("interval")));
    }

    fn port(host_ip: Option<&str>, address: &str) -> FirewallFact {
        FirewallFact::Port {
            protocol: Protocol::Udp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 5353,
            address: address.parse().unwrap(),
            port: 53,
            bridge: "br-x".into(),
        }
    }

    #[test]
    fn published_ports_are_map_elements() {
        let e = &elements(&port(None, "10.1.0.2"), false).unwrap()[0];
        assert_eq!(e.add(), "add element inet wharf dnat4 { udp . 5353 : 10.1.0.2 . 53 }\n");
        assert_eq!(e.delete(), "delete element inet wharf dnat4 { udp . 5353 }\n");
        let e = &elements(&port(Some("0.0.0.0"), "10.1.0.2"), false).unwrap()[0];
        assert_eq!(e.set, "dnat4");
        let e = &elements(&port(Some("127.0.0.1"), "10.1.0.2"), false).unwrap()[0];
        assert_eq!(e.add(), "add element inet wharf dnat4_ip { 127.0.0.1 . udp . 5353 : 10.1.0.2 . 53 }\n");
        let e = &elements(&port(Some("fd00::1"), "fd00:1::2"), false).unwrap()[0];
        assert_eq!(e.add(), "add element inet wharf dnat6_ip { fd00::1 . udp . 5353 : fd00:1::2 . 53 }\n");
        assert!(elements(&port(Some("::1"), "10.1.0.2"), false).is_err());
    }

    #[test]
    fn odd_interface_names_are_refused() {
        for bad in ["", "a\"b", "way-too-long-name0", "a b", "x;y"] {
            assert!(ifname(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ifname("br-1a.2_b").unwrap(), "\"br-1a.2_b\"");
    }

    #[test]
    fn the_structure_only_names_wharfs_tables() {
        for s in [structure(true), recreate(false), ibrname_probe()] {
            assert!(!s.is_empty());
            for line in s.lines() {
                assert!(line.contains(" inet wharf") || line.contains(" bridge wharf"), "{line}");
                assert!(!line.contains("ruleset"), "{line}");
            }
        }
    }

    #[test]
    fn a_reload_adds_each_set_once_and_the_last_value_wins() {
        let mut elems = elements(&port(None, "10.1.0.2"), false).unwrap();
        elems.extend(elements(&port(None, "10.1.0.3"), false).unwrap());
        elems.extend(elements(&network(true, false), false).unwrap());
        elems.extend(elements(&network(true, false), false).unwrap());
        let s = bulk_add(&elems);
        assert!(s.contains("add element inet wharf dnat4 { udp . 5353 : 10.1.0.3 . 53 }\n"), "{s}");
        assert_eq!(s.matches("add element inet wharf bridges").count(), 1, "{s}");
    }
}
