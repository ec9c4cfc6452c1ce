//! The libnftables binding: the library is loaded at run time (`libnftables.so.1`, package
//! `libnftables1`) and called in-process, so a firewall change starts no `nft` process.
//!
//! A [`Context`] is bound to the network namespace of the thread that opened it (its netlink
//! socket is); [`super::nftables`] keeps each one on a thread of its own.

use crate::executor::ExecError;
use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

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
        let why = |e: libloading::Error| {
            format!("loading {LIBNFTABLES} (install package libnftables1, or run with --firewall none): {e}")
        };
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
pub struct Context {
    api: &'static Api,
    ctx: NonNull<c_void>,
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
    pub fn open() -> Result<Context, ExecError> {
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
        let context = Context { api, ctx };
        if !buffered {
            return Err(ExecError::new("nftables: cannot buffer libnftables output"));
        }
        Ok(context)
    }

    /// Run `script` as one transaction (or, with `dry`, only check it against the kernel).
    /// Returns libnftables' output, or its error message.
    pub fn run(&mut self, script: &str, dry: bool) -> Result<String, String> {
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

    /// Run `script` as one transaction.
    pub fn exec(&mut self, script: &str) -> Result<String, ExecError> {
        self.run(script, false).map_err(ExecError::new)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _guard = self.api.lock();
        // SAFETY: `ctx` came from nft_ctx_new and is freed once, here.
        unsafe { (self.api.ctx_free)(self.ctx.as_ptr()) }
    }
}
