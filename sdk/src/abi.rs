//! The stable C boundary between core and a plugin library.
//!
//! A plugin `.so` exports one symbol, [`SYMBOL`] (`wharf_plugin_v1`), a function returning a
//! pointer to a [`PluginTable`]. The table is `#[repr(C)]`; messages cross it as versioned
//! JSON, so a plugin built by another rustc, or written in C, works. Memory is freed by the
//! side that allocated it: a response buffer comes from the plugin and goes back to the
//! plugin's `free`.
//!
//! Plugin authors do not use this module directly: [`crate::export_plugin!`] writes the
//! exporting side, and core uses [`PluginClient`] for the calling side.
//!
//! Longer than 600 lines on purpose: the exporting and the calling side of every message
//! sit together, so a change to one is read against the other, and so do the tests that
//! load messages of earlier versions.

use crate::error::{DriverError, DriverResult};
use crate::facts::HostFacts;
use crate::network::{
    CreateNetwork, DeleteNetwork, EndpointInfo, EndpointRequest, JoinInfo, NetworkCapabilities, NetworkDriver,
    NetworkSpec, Outcome,
};
use crate::volume::{VolumeCapabilities, VolumeDriver, VolumeInfo, VolumeRequest};
use serde::de::DeserializeOwned;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

mod calls;

/// The ABI version this SDK speaks.
pub const ABI_VERSION: u32 = 1;

/// The symbol every plugin library exports.
pub const SYMBOL: &[u8] = b"wharf_plugin_v1";

/// The optional symbol that tells core the plugin's version and the SDK version it was built
/// with: `extern "C" fn() -> *const c_char`, a NUL-terminated JSON [`PluginInfo`] that lives
/// as long as the library. Plugins built before it existed lack it and load all the same.
pub const INFO_SYMBOL: &[u8] = b"wharf_plugin_info_v1";

/// The signature of [`INFO_SYMBOL`].
pub type InfoFn = unsafe extern "C" fn() -> *const c_char;

/// The version of this SDK, which [`crate::export_plugin!`] records in every plugin.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin says about itself through [`INFO_SYMBOL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PluginInfo {
    /// The plugin's own version (its crate's, as `export_plugin!` sees it).
    pub version: String,
    /// The version of the SDK the plugin was built with.
    pub sdk_version: String,
    /// The newest message version the plugin speaks.
    pub message_version: u32,
}

impl PluginInfo {
    /// The info of a plugin of version `version` built with this SDK, as a C string.
    pub fn c_string(version: &str) -> CString {
        let info = PluginInfo {
            version: version.to_string(),
            sdk_version: SDK_VERSION.to_string(),
            message_version: MESSAGE_VERSION,
        };
        CString::new(serde_json::to_string(&info).unwrap_or_default()).unwrap_or_default()
    }
}

/// The version of the JSON messages core sends; a plugin answers in the same version or an
/// older one.
///
/// - 1: the first version.
/// - 2: a plan step may leave out its `undo` when it is the op's [`Op::plain_undo`]
///   (see [`Plan::compact`]). A plugin writes compact plans only when the request says 2 or
///   later, so an older core still gets every undo; any core reads both forms.
///
/// [`Op::plain_undo`]: crate::plan::Op::plain_undo
/// [`Plan::compact`]: crate::plan::Plan::compact
pub const MESSAGE_VERSION: u32 = 2;

/// The first message version in which plans may be compact.
const COMPACT_PLANS: u32 = 2;

/// Starting capacity of an encoded message: a join's request or response fits without
/// the buffer growing (and being copied) on the way.
const MESSAGE_CAPACITY: usize = 2048;

/// `call` succeeded; the buffer holds the JSON response.
pub const STATUS_OK: i32 = 0;
/// The driver returned an error; the buffer holds a JSON [`DriverError`].
pub const STATUS_ERROR: i32 = 1;
/// The driver panicked; the buffer holds a JSON [`DriverError`].
pub const STATUS_PANIC: i32 = 2;

/// Kind code of a network driver in [`DriverEntry::kind`].
pub const KIND_NETWORK: u32 = 1;
/// Kind code of a volume driver in [`DriverEntry::kind`].
pub const KIND_VOLUME: u32 = 2;

/// Bytes owned by the plugin that returned them.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    /// Start of the bytes.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocated capacity, needed to free them.
    pub cap: usize,
}

impl Buffer {
    const EMPTY: Buffer = Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0 };

    fn from_vec(v: Vec<u8>) -> Buffer {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buffer { ptr: v.as_mut_ptr(), len: v.len(), cap: v.capacity() }
    }
}

/// One driver a plugin exports.
#[repr(C)]
#[derive(Debug)]
pub struct DriverEntry {
    /// NUL-terminated driver name.
    pub name: *const c_char,
    /// [`KIND_NETWORK`] or [`KIND_VOLUME`].
    pub kind: u32,
}

/// Handle a request: `driver` indexes the table's drivers; `request` is a JSON [`Envelope`].
/// Writes the response to `out` and returns a `STATUS_*` code.
pub type CallFn =
    unsafe extern "C" fn(instance: *mut c_void, driver: usize, request: *const u8, len: usize, out: *mut Buffer) -> i32;
/// Free a buffer the plugin returned.
pub type FreeFn = unsafe extern "C" fn(buffer: Buffer);
/// Release the instance. Core never unloads a library, so it never calls this while the
/// library's drivers are registered.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);

/// The table a plugin exports. `abi_version` and `size` come first and never move, so core
/// can refuse a table of another version before reading anything else.
#[repr(C)]
#[derive(Debug)]
pub struct PluginTable {
    /// The ABI version the plugin speaks.
    pub abi_version: u32,
    /// `size_of::<PluginTable>()` as the plugin saw it.
    pub size: u32,
    /// Opaque instance passed to every function.
    pub instance: *mut c_void,
    /// Number of entries in `drivers`.
    pub driver_count: usize,
    /// The exported drivers.
    pub drivers: *const DriverEntry,
    /// Handle a request.
    pub call: CallFn,
    /// Free a response buffer.
    pub free: FreeFn,
    /// Release the instance.
    pub destroy: DestroyFn,
}

/// The signature of [`SYMBOL`].
pub type EntryFn = unsafe extern "C" fn() -> *const PluginTable;

/// A request as it crosses the boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<C> {
    /// Message version; see [`MESSAGE_VERSION`].
    #[serde(default)]
    pub version: u32,
    /// The call.
    pub call: C,
}

/// Calls on a network driver. Read by `calls.rs`, which takes `params` before `method`
/// as well as after.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum NetworkCall {
    Capabilities,
    Validate { network: NetworkSpec, facts: HostFacts },
    CreateNetwork(CreateNetwork),
    DeleteNetwork(DeleteNetwork),
    CreateEndpoint(EndpointRequest),
    DeleteEndpoint(EndpointRequest),
    Join(EndpointRequest),
    Leave(EndpointRequest),
}

/// Calls on a volume driver. Read by `calls.rs`, which takes `params` before `method`
/// as well as after.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum VolumeCall {
    Capabilities,
    Validate(VolumeRequest),
    Create(VolumeRequest),
    Remove(VolumeRequest),
    Mount(VolumeRequest),
    Unmount(VolumeRequest),
    Path(VolumeRequest),
    Get(VolumeRequest),
    List(Vec<VolumeRequest>),
}

/// The name of a call's method, as its message carries it.
trait Method {
    fn method(&self) -> &'static str;
}

impl Method for NetworkCall {
    fn method(&self) -> &'static str {
        match self {
            NetworkCall::Capabilities => "capabilities",
            NetworkCall::Validate { .. } => "validate",
            NetworkCall::CreateNetwork(_) => "create_network",
            NetworkCall::DeleteNetwork(_) => "delete_network",
            NetworkCall::CreateEndpoint(_) => "create_endpoint",
            NetworkCall::DeleteEndpoint(_) => "delete_endpoint",
            NetworkCall::Join(_) => "join",
            NetworkCall::Leave(_) => "leave",
        }
    }
}

impl Method for VolumeCall {
    fn method(&self) -> &'static str {
        match self {
            VolumeCall::Capabilities => "capabilities",
            VolumeCall::Validate(_) => "validate",
            VolumeCall::Create(_) => "create",
            VolumeCall::Remove(_) => "remove",
            VolumeCall::Mount(_) => "mount",
            VolumeCall::Unmount(_) => "unmount",
            VolumeCall::Path(_) => "path",
            VolumeCall::Get(_) => "get",
            VolumeCall::List(_) => "list",
        }
    }
}

/// A driver of either kind, as a plugin exports it.
#[derive(Debug)]
pub enum Driver {
    /// A network driver.
    Network(Box<dyn NetworkDriver>),
    /// A volume driver.
    Volume(Box<dyn VolumeDriver>),
}

impl Driver {
    /// Wrap a network driver.
    pub fn network(d: impl NetworkDriver + 'static) -> Driver {
        Driver::Network(Box::new(d))
    }

    /// Wrap a volume driver.
    pub fn volume(d: impl VolumeDriver + 'static) -> Driver {
        Driver::Volume(Box::new(d))
    }

    fn name(&self) -> &str {
        match self {
            Driver::Network(d) => d.name(),
            Driver::Volume(d) => d.name(),
        }
    }

    fn kind(&self) -> u32 {
        match self {
            Driver::Network(_) => KIND_NETWORK,
            Driver::Volume(_) => KIND_VOLUME,
        }
    }

    fn dispatch(&self, request: &[u8]) -> DriverResult<Vec<u8>> {
        let malformed = |e: String| DriverError::invalid(format!("malformed plugin message: {e}"));
        match self {
            Driver::Network(d) => {
                let env: Envelope<NetworkCall> = decode(request).map_err(malformed)?;
                let v = env.version;
                match env.call {
                    NetworkCall::Capabilities => encode(&d.capabilities()),
                    NetworkCall::Validate { network, facts } => encode(&d.validate(&network, &facts)?),
                    NetworkCall::CreateNetwork(r) => encode(&WireOutcome(&d.create_network(r)?, v)),
                    NetworkCall::DeleteNetwork(r) => encode(&WireOutcome(&d.delete_network(r)?, v)),
                    NetworkCall::CreateEndpoint(r) => encode(&WireOutcome(&d.create_endpoint(r)?, v)),
                    NetworkCall::DeleteEndpoint(r) => encode(&WireOutcome(&d.delete_endpoint(r)?, v)),
                    NetworkCall::Join(r) => encode(&WireOutcome(&d.join(r)?, v)),
                    NetworkCall::Leave(r) => encode(&WireOutcome(&d.leave(r)?, v)),
                }
            }
            Driver::Volume(d) => {
                let env: Envelope<VolumeCall> = decode(request).map_err(malformed)?;
                let v = env.version;
                match env.call {
                    VolumeCall::Capabilities => encode(&d.capabilities()),
                    VolumeCall::Validate(r) => encode(&d.validate(&r)?),
                    VolumeCall::Create(r) => encode(&WireOutcome(&d.create(r)?, v)),
                    VolumeCall::Remove(r) => encode(&WireOutcome(&d.remove(r)?, v)),
                    VolumeCall::Mount(r) => encode(&WireOutcome(&d.mount(r)?, v)),
                    VolumeCall::Unmount(r) => encode(&WireOutcome(&d.unmount(r)?, v)),
                    VolumeCall::Path(r) => encode(&d.path(r)?),
                    VolumeCall::Get(r) => encode(&d.get(r)?),
                    VolumeCall::List(r) => encode(&d.list(r)?),
                }
            }
        }
    }
}

/// An outcome as a plugin sends it: the same fields as [`Outcome`]'s own `Serialize`, with
/// a compact plan when the request's message version allows one.
struct WireOutcome<'a, T>(&'a Outcome<T>, u32);

impl<T: Serialize> Serialize for WireOutcome<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let WireOutcome(outcome, version) = self;
        let mut s = serializer.serialize_struct("Outcome", 3)?;
        s.serialize_field("response", &outcome.response)?;
        if *version >= COMPACT_PLANS {
            s.serialize_field("plan", &outcome.plan.compact())?;
        } else {
            s.serialize_field("plan", &outcome.plan)?;
        }
        s.serialize_field("state", &outcome.state)?;
        s.end()
    }
}

/// Read a JSON message. The bytes are checked to be UTF-8 once, as a whole, so the parser
/// does not check each string again.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// Buffers kept for reuse, at most this many per thread and at most this large: a message
/// buffer is above malloc's small sizes, so a fresh one each call costs far more than a
/// small string (finding the chunk, consolidating free lists).
const KEPT_BUFFERS: usize = 2;
/// The largest buffer kept: larger ones are rare (long volume lists) and go back to malloc.
const KEPT_CAPACITY: usize = 16 * 1024;

std::thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty message buffer, reused from an earlier message on this thread when there is one.
fn message_buffer() -> Vec<u8> {
    BUFFERS.try_with(|b| b.borrow_mut().pop()).ok().flatten().unwrap_or_else(|| Vec::with_capacity(MESSAGE_CAPACITY))
}

/// Keep a message buffer for the next message on this thread.
fn keep_buffer(mut buffer: Vec<u8>) {
    if buffer.capacity() < MESSAGE_CAPACITY || buffer.capacity() > KEPT_CAPACITY {
        return;
    }
    buffer.clear();
    let _ = BUFFERS.try_with(|b| {
        let mut kept = b.borrow_mut();
        if kept.len() < KEPT_BUFFERS {
            kept.push(buffer);
        }
    });
}

fn encode<T: Serialize>(value: &T) -> DriverResult<Vec<u8>> {
    let mut bytes = message_buffer();
    serde_json::to_writer(&mut bytes, value)
        .map_err(|e| DriverError::internal(format!("cannot encode plugin message: {e}")))?;
    Ok(bytes)
}

/// The exporting side of a plugin library: its drivers and the table pointing at them.
/// Built once by [`crate::export_plugin!`] and kept for the life of the process.
#[derive(Debug)]
pub struct Exported {
    drivers: Vec<Driver>,
    _names: Vec<CString>,
    entries: Vec<DriverEntry>,
    table: PluginTable,
}

// SAFETY: the raw pointers in `entries` and `table` point into `_names`, `entries` and the
// `Exported` itself, which are never mutated after `new` and live as long as it does; the
// drivers are `Send + Sync` by their traits.
unsafe impl Send for Exported {}
// SAFETY: as above; nothing is mutated after construction.
unsafe impl Sync for Exported {}

impl Exported {
    /// Build the export table for `drivers`. The result must not move once `table` has been
    /// called, so it is boxed here.
    pub fn new(drivers: Vec<Driver>) -> Box<Exported> {
        let names: Vec<CString> =
            drivers.iter().map(|d| CString::new(d.name()).unwrap_or_else(|_| c"invalid-name".to_owned())).collect();
        let entries =
            names.iter().zip(&drivers).map(|(n, d)| DriverEntry { name: n.as_ptr(), kind: d.kind() }).collect();
        let mut exported = Box::new(Exported {
            drivers,
            _names: names,
            entries,
            table: PluginTable {
                abi_version: ABI_VERSION,
                size: std::mem::size_of::<PluginTable>() as u32,
                instance: std::ptr::null_mut(),
                driver_count: 0,
                drivers: std::ptr::null(),
                call: exported_call,
                free: exported_free,
                destroy: exported_destroy,
            },
        });
        exported.table.driver_count = exported.entries.len();
        exported.table.drivers = exported.entries.as_ptr();
        exported.table.instance = &*exported as *const Exported as *mut c_void;
        exported
    }

    /// The table to hand to core.
    pub fn table(&self) -> *const PluginTable {
        &self.table
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

unsafe extern "C" fn exported_call(
    instance: *mut c_void,
    driver: usize,
    request: *const u8,
    len: usize,
    out: *mut Buffer,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `instance` is the pointer `Exported::new` stored in the table, to a boxed
        // `Exported` that lives for the rest of the process.
        let exported = unsafe { &*(instance as *const Exported) };
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: the caller passes `len` readable bytes at `request`.
            unsafe { std::slice::from_raw_parts(request, len) }
        };
        match exported.drivers.get(driver) {
            Some(d) => d.dispatch(bytes),
            None => Err(DriverError::invalid(format!("plugin has no driver number {driver}"))),
        }
    }));
    let (status, body) = match result {
        Ok(Ok(body)) => (STATUS_OK, body),
        Ok(Err(e)) => (STATUS_ERROR, serde_json::to_vec(&e).unwrap_or_default()),
        Err(payload) => {
            let e = DriverError::internal(format!("driver panicked: {}", panic_message(&*payload)));
            (STATUS_PANIC, serde_json::to_vec(&e).unwrap_or_default())
        }
    };
    if !out.is_null() {
        // SAFETY: the caller passes a valid pointer to a `Buffer` it owns.
        unsafe { out.write(Buffer::from_vec(body)) };
    }
    status
}

unsafe extern "C" fn exported_free(buffer: Buffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: every non-null buffer handed out came from `Buffer::from_vec` in this
        // library, with this pointer, length and capacity.
        keep_buffer(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.cap) });
    }
}

unsafe extern "C" fn exported_destroy(_instance: *mut c_void) {
    // The instance is a process-wide static; there is nothing to release.
}

/// Write the exported symbol of a plugin library.
///
/// Each argument is `network EXPR` or `volume EXPR`, where `EXPR` builds a driver:
///
/// ```ignore
/// wharf_sdk::export_plugin!(network MyDriver::default());
/// wharf_sdk::export_plugin!(volume LocalDriver::new(), volume BindDriver::new());
/// ```
///
/// The library's crate type must be `cdylib`. Drivers are built on the first call to the
/// symbol; a panic while building them makes the symbol return null, which core refuses.
#[macro_export]
macro_rules! export_plugin {
    ($($kind:ident $driver:expr),+ $(,)?) => {
        /// The plugin entry point core looks up.
        #[unsafe(no_mangle)]
        pub extern "C" fn wharf_plugin_v1() -> *const $crate::abi::PluginTable {
            static EXPORTED: ::std::sync::OnceLock<::std::boxed::Box<$crate::abi::Exported>> =
                ::std::sync::OnceLock::new();
            let built = ::std::panic::catch_unwind(|| {
                EXPORTED
                    .get_or_init(|| $crate::abi::Exported::new(vec![$($crate::abi::Driver::$kind($driver)),+]))
                    .table()
            });
            built.unwrap_or(::std::ptr::null())
        }

        /// The plugin's version and the SDK's it was built with, as JSON.
        #[unsafe(no_mangle)]
        pub extern "C" fn wharf_plugin_info_v1() -> *const ::std::ffi::c_char {
            static INFO: ::std::sync::OnceLock<::std::ffi::CString> = ::std::sync::OnceLock::new();
            INFO.get_or_init(|| $crate::abi::PluginInfo::c_string(env!("CARGO_PKG_VERSION"))).as_ptr()
        }

        /// Where core hands the plugin its log function (see `wharf_sdk::log`).
        #[unsafe(no_mangle)]
        pub extern "C" fn wharf_plugin_log_v1(log: $crate::log::LogFn, max_level: u32) {
            let _ = ::std::panic::catch_unwind(|| $crate::log::install(log, max_level));
        }
    };
}

/// One driver of a loaded table, as core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDriver {
    /// Driver name.
    pub name: String,
    /// [`KIND_NETWORK`] or [`KIND_VOLUME`].
    pub kind: u32,
}

/// The calling side of the boundary: one driver in a plugin table.
#[derive(Clone)]
pub struct PluginClient {
    table: &'static PluginTable,
    index: usize,
    name: String,
}

// SAFETY: the ABI requires a plugin's `call` and `free` to be callable from any thread at
// once (drivers are `Send + Sync`, and `export_plugin!` keeps no per-call state); the table
// itself is never written after the plugin returns it.
unsafe impl Send for PluginClient {}
// SAFETY: as above.
unsafe impl Sync for PluginClient {}

impl std::fmt::Debug for PluginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginClient").field("name", &self.name).field("index", &self.index).finish()
    }
}

impl PluginClient {
    /// Read the driver list of a table whose `abi_version` and `size` the caller checked.
    ///
    /// # Safety
    /// `table` must point to a valid [`PluginTable`] of [`ABI_VERSION`] that stays valid for
    /// the rest of the process (its library is never unloaded).
    pub unsafe fn drivers(table: &'static PluginTable) -> Result<Vec<TableDriver>, String> {
        if table.driver_count > 0 && table.drivers.is_null() {
            return Err("the plugin table lists drivers but has no driver array".into());
        }
        let mut out = Vec::with_capacity(table.driver_count);
        for i in 0..table.driver_count {
            // SAFETY: the caller guarantees `drivers` has `driver_count` entries.
            let entry = unsafe { table.drivers.add(i) };
            // SAFETY: in bounds (above), and the plugin keeps the array alive.
            let entry = unsafe { &*entry };
            if entry.name.is_null() {
                return Err(format!("driver number {i} has no name"));
            }
            // SAFETY: the name is a NUL-terminated string owned by the plugin.
            let name = unsafe { CStr::from_ptr(entry.name) }
                .to_str()
                .map_err(|_| format!("driver number {i} has a name that is not UTF-8"))?;
            out.push(TableDriver { name: name.to_string(), kind: entry.kind });
        }
        Ok(out)
    }

    /// A client for driver number `index` of `table`.
    ///
    /// # Safety
    /// As for [`PluginClient::drivers`], and `index` must be below `driver_count`.
    pub unsafe fn new(table: &'static PluginTable, index: usize, name: String) -> Self {
        PluginClient { table, index, name }
    }

    /// Send one JSON request and hand the status and the plugin's response bytes to `read`,
    /// then give the buffer back to the plugin. The bytes are read where the plugin wrote
    /// them, not copied.
    fn exchange<T>(&self, request: &[u8], read: impl FnOnce(i32, &[u8]) -> T) -> T {
        /// Gives a response buffer back to the plugin's `free`, even if `read` panics.
        struct Response<'a> {
            table: &'a PluginTable,
            buffer: Buffer,
        }
        impl Drop for Response<'_> {
            fn drop(&mut self) {
                if !self.buffer.ptr.is_null() {
                    let buffer = std::mem::replace(&mut self.buffer, Buffer::EMPTY);
                    // SAFETY: the buffer came from this table's `call`; it goes back to its
                    // `free`, once: `self.buffer` is left empty.
                    unsafe { (self.table.free)(buffer) };
                }
            }
        }
        let mut out = Response { table: self.table, buffer: Buffer::EMPTY };
        // SAFETY: the table is valid for the life of the process (see `new`); `request` is a
        // live slice; `out.buffer` is a valid buffer the plugin fills and `Response` frees.
        let status = unsafe {
            (self.table.call)(self.table.instance, self.index, request.as_ptr(), request.len(), &mut out.buffer)
        };
        let bytes = if out.buffer.ptr.is_null() {
            &[][..]
        } else {
            // SAFETY: the plugin wrote `len` initialised bytes at `ptr`, which stay valid
            // until the buffer is freed when `out` drops, after `read` returns.
            unsafe { std::slice::from_raw_parts(out.buffer.ptr, out.buffer.len) }
        };
        read(status, bytes)
    }

    /// Send one JSON request and return the raw status and response bytes.
    pub fn call_raw(&self, request: &[u8]) -> (i32, Vec<u8>) {
        self.exchange(request, |status, bytes| (status, bytes.to_vec()))
    }

    /// [`PluginClient::exchange_call`], logged at debug: driver, method, duration, result.
    fn call<C: Serialize + Method, R: DeserializeOwned>(&self, call: C) -> DriverResult<R> {
        let method = call.method();
        let started = std::time::Instant::now();
        let result = self.exchange_call(call);
        let micros = started.elapsed().as_micros() as u64;
        match &result {
            Ok(_) => tracing::debug!(driver = %self.name, method, micros, "driver call ok"),
            Err(e) => tracing::debug!(driver = %self.name, method, micros, error = %e, "driver call failed"),
        }
        result
    }

    fn exchange_call<C: Serialize, R: DeserializeOwned>(&self, call: C) -> DriverResult<R> {
        let mut request = message_buffer();
        serde_json::to_writer(&mut request, &Envelope { version: MESSAGE_VERSION, call })
            .map_err(|e| DriverError::internal(format!("cannot encode request for driver {:?}: {e}", self.name)))?;
        let result = self.exchange(&request, |status, bytes| {
            if status == STATUS_OK {
                decode(bytes).map_err(|e| {
                    DriverError::internal(format!("driver {:?} sent a malformed response: {e}", self.name))
                })
            } else {
                Err(decode(bytes).unwrap_or_else(|_| {
                    DriverError::internal(format!(
                        "driver {:?} failed with status {status} and no readable error",
                        self.name
                    ))
                }))
            }
        });
        keep_buffer(request);
        result
    }
}

impl NetworkDriver for PluginClient {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> NetworkCapabilities {
        self.call(NetworkCall::Capabilities).unwrap_or_default()
    }
    fn validate(&self, network: &NetworkSpec, facts: &HostFacts) -> DriverResult<()> {
        self.call(NetworkCall::Validate { network: network.clone(), facts: facts.clone() })
    }
    fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
        self.call(NetworkCall::CreateNetwork(req))
    }
    fn delete_network(&self, req: DeleteNetwork) -> DriverResult<Outcome<()>> {
        self.call(NetworkCall::DeleteNetwork(req))
    }
    fn create_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
        self.call(NetworkCall::CreateEndpoint(req))
    }
    fn delete_endpoint(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        self.call(NetworkCall::DeleteEndpoint(req))
    }
    fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
        self.call(NetworkCall::Join(req))
    }
    fn leave(&self, req: EndpointRequest) -> DriverResult<Outcome<()>> {
        self.call(NetworkCall::Leave(req))
    }
}

impl VolumeDriver for PluginClient {
    fn name(&self) -> &str {
        &self.name
    }
    fn capabilities(&self) -> VolumeCapabilities {
        self.call(VolumeCall::Capabilities).unwrap_or_default()
    }
    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        self.call(VolumeCall::Validate(req.clone()))
    }
    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        self.call(VolumeCall::Create(req))
    }
    fn remove(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        self.call(VolumeCall::Remove(req))
    }
    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        self.call(VolumeCall::Mount(req))
    }
    fn unmount(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        self.call(VolumeCall::Unmount(req))
    }
    fn path(&self, req: VolumeRequest) -> DriverResult<String> {
        self.call(VolumeCall::Path(req))
    }
    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        self.call(VolumeCall::Get(req))
    }
    fn list(&self, reqs: Vec<VolumeRequest>) -> DriverResult<Vec<VolumeInfo>> {
        self.call(VolumeCall::List(reqs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LinkKind, LinkSpec, Netns, Op, Plan, Step};
    use serde_json::Value;

    struct Flaky;

    impl NetworkDriver for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn validate(&self, network: &NetworkSpec, _: &HostFacts) -> DriverResult<()> {
            match network.options.keys().next() {
                Some(k) => Err(DriverError::unknown_option("flaky", k)),
                None => Ok(()),
            }
        }
        fn create_network(&self, req: CreateNetwork) -> DriverResult<Outcome<()>> {
            if req.network.name == "boom" {
                panic!("boom requested");
            }
            Ok(Outcome::new((), Plan::new(), Value::String(req.network.name)))
        }
        fn delete_network(&self, _: DeleteNetwork) -> DriverResult<Outcome<()>> {
            Ok(Outcome::default())
        }
        fn create_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<EndpointInfo>> {
            Ok(Outcome::default())
        }
        fn delete_endpoint(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
            Ok(Outcome::default())
        }
        fn join(&self, req: EndpointRequest) -> DriverResult<Outcome<JoinInfo>> {
            let mut plan = Plan::new();
            plan.push(Step::link_add(Netns::Host, LinkSpec::new(req.endpoint.id, LinkKind::Dummy)));
            plan.push(Step::sysctl(Netns::Host, "net.ipv4.ip_forward", "1", Some("0".into())));
            Ok(Outcome::new(JoinInfo::default(), plan, Value::Null))
        }
        fn leave(&self, _: EndpointRequest) -> DriverResult<Outcome<()>> {
            Ok(Outcome::default())
        }
    }

    fn client() -> PluginClient {
        let exported: &'static Exported = Box::leak(Exported::new(vec![Driver::network(Flaky)]));
        // SAFETY: the table is leaked, so it lives for the rest of the test process.
        let table = unsafe { &*exported.table() };
        // SAFETY: a table made by `Exported`, valid for the process.
        let drivers = unsafe { PluginClient::drivers(table) }.unwrap();
        assert_eq!(drivers, vec![TableDriver { name: "flaky".into(), kind: KIND_NETWORK }]);
        // SAFETY: driver 0 exists, as listed above.
        unsafe { PluginClient::new(table, 0, "flaky".into()) }
    }

    #[test]
    fn calls_round_trip_through_the_table() {
        let c = client();
        let req =
            CreateNetwork { network: NetworkSpec { name: "n1".into(), ..Default::default() }, ..Default::default() };
        let out = NetworkDriver::create_network(&c, req).unwrap();
        assert_eq!(out.state, Value::String("n1".into()));
    }

    #[test]
    fn a_panic_becomes_an_error_and_the_next_call_works() {
        let c = client();
        let boom =
            CreateNetwork { network: NetworkSpec { name: "boom".into(), ..Default::default() }, ..Default::default() };
        let err = NetworkDriver::create_network(&c, boom).unwrap_err();
        assert!(err.message.contains("driver panicked: boom requested"), "{err}");
        let ok =
            CreateNetwork { network: NetworkSpec { name: "fine".into(), ..Default::default() }, ..Default::default() };
        assert!(NetworkDriver::create_network(&c, ok).is_ok());
    }

    #[test]
    fn a_driver_error_keeps_the_option_name() {
        let c = client();
        let mut network = NetworkSpec::default();
        network.options.insert("bogus".into(), "1".into());
        let err = NetworkDriver::validate(&c, &network, &HostFacts::default()).unwrap_err();
        assert_eq!(err.option.as_deref(), Some("bogus"));
    }

    #[test]
    fn malformed_requests_are_errors_not_crashes() {
        let c = client();
        let (status, body) = c.call_raw(b"{not json");
        assert_eq!(status, STATUS_ERROR);
        let e: DriverError = serde_json::from_slice(&body).unwrap();
        assert!(e.message.contains("malformed"));
    }

    #[test]
    fn plans_are_compact_only_for_a_core_that_reads_them() {
        let c = client();
        let undos = |version: u32| -> Vec<bool> {
            let req =
                format!(r#"{{"version":{version},"call":{{"method":"join","params":{{"endpoint":{{"id":"d0"}}}}}}}}"#);
            let (status, body) = c.call_raw(req.as_bytes());
            assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&body));
            let out: Value = serde_json::from_slice(&body).unwrap();
            out["plan"]["steps"].as_array().unwrap().iter().map(|s| s.get("undo").is_some()).collect()
        };
        assert_eq!(undos(1), [true, true]);
        assert_eq!(undos(MESSAGE_VERSION), [false, true]);
        let out = NetworkDriver::join(&c, EndpointRequest::default()).unwrap();
        assert_eq!(*out.plan.steps[0].undo(), Op::LinkDel { netns: Netns::Host, name: String::new() });
    }

    #[test]
    fn message_buffers_are_reused_and_kept_few() {
        let c = client();
        for _ in 0..10 {
            NetworkDriver::join(&c, EndpointRequest::default()).unwrap();
        }
        let kept = BUFFERS.with(|b| b.borrow().iter().map(|v| (v.len(), v.capacity())).collect::<Vec<_>>());
        assert!(!kept.is_empty() && kept.len() <= KEPT_BUFFERS, "{kept:?}");
        assert!(kept.iter().all(|&(len, cap)| len == 0 && cap >= MESSAGE_CAPACITY), "{kept:?}");
    }

    #[test]
    fn newer_messages_with_unknown_fields_are_accepted() {
        let c = client();
        let req = br#"{"version":2,"call":{"method":"create_network","params":{"network":{"name":"x","future_field":[1]},"also_new":{}}}}"#;
        let (status, body) = c.call_raw(req);
        assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn state_objects_cross_as_text_in_either_field_order() {
        let c = client();
        let state = r#"{ "bridge" : "br0", "ports": [1, 2] }"#;
        for req in [
            format!(r#"{{"version":1,"call":{{"method":"leave","params":{{"endpoint_state":{state}}}}}}}"#),
            format!(r#"{{"call":{{"params":{{"network_state":{state},"endpoint_state":{state}}},"method":"leave"}}}}"#),
        ] {
            let (status, body) = c.call_raw(req.as_bytes());
            assert_eq!(status, STATUS_OK, "{req}: {}", String::from_utf8_lossy(&body));
        }
        let (status, _) = c.call_raw(br#"{"call":{"method":"capabilities"}}"#);
        assert_eq!(status, STATUS_OK);
        for (req, says) in [
            (&br#"{"call":{"method":"fly","params":{}}}"#[..], "unknown variant `fly`"),
            (br#"{"call":{"params":{}}}"#, "missing field `method`"),
            (br#"{"call":{"method":"join"}}"#, "expected struct EndpointRequest"),
        ] {
            let (status, body) = c.call_raw(req);
            assert_eq!(status, STATUS_ERROR);
            let e: DriverError = serde_json::from_slice(&body).unwrap();
            assert!(e.message.contains(says), "{}", e.message);
        }
    }
}
