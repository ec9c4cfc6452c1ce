//! The libnftables binding: the library is loaded at run time (`libnftables.so.1`, package
//! `libnftables1`) and called in-process, so a firewall change starts no `nft` process.
//!
//! A [`Context`] is bound to the network namespace of the thread that opened it (its netlink
//! socket is); [`super::nftables`] keeps each one on a thread of its own.

use libloading::Library;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};
use wharf_engine::executor::ExecError;

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
        Api::load_from(LIBNFTABLES)
    }

    /// Load libnftables under the name `soname`. A failure names the library, the package
    /// that ships it, the way to run without it, and the loader's own message.
    fn load_from(soname: &str) -> Result<Api, String> {
        let why = |e: libloading::Error| {
            format!(
                "loading {soname} (install package libnftables1, or run wharfd with --firewall none): {}",
                wharf_engine::executor::report(&e)
            )
        };
        // SAFETY: libnftables' initialisers only set up the library's own state.
        let lib = unsafe { Library::new(soname) }.map_err(why)?;
        // Each symbol is looked up with the signature <nftables/libnftables.h> declares for it
        // (soname 1), and the pointers are used only while `lib` is alive: `Api` owns it and
        // lives in a static that is never dropped.
        // SAFETY: `CtxNew` is the header's signature of nft_ctx_new.
        let ctx_new = unsafe { symbol::<CtxNew>(&lib, "nft_ctx_new") }.map_err(why)?;
        // SAFETY: `CtxFree` is the header's signature of nft_ctx_free.
        let ctx_free = unsafe { symbol::<CtxFree>(&lib, "nft_ctx_free") }.map_err(why)?;
        // SAFETY: `CtxBuffer` is the header's signature of nft_ctx_buffer_output.
        let buffer_output = unsafe { symbol::<CtxBuffer>(&lib, "nft_ctx_buffer_output") }.map_err(why)?;
        // SAFETY: `CtxBuffer` is the header's signature of nft_ctx_buffer_error.
        let buffer_error = unsafe { symbol::<CtxBuffer>(&lib, "nft_ctx_buffer_error") }.map_err(why)?;
        // SAFETY: `CtxGetBuffer` is the header's signature of nft_ctx_get_output_buffer.
        let get_output = unsafe { symbol::<CtxGetBuffer>(&lib, "nft_ctx_get_output_buffer") }.map_err(why)?;
        // SAFETY: `CtxGetBuffer` is the header's signature of nft_ctx_get_error_buffer.
        let get_error = unsafe { symbol::<CtxGetBuffer>(&lib, "nft_ctx_get_error_buffer") }.map_err(why)?;
        // SAFETY: `CtxSetDryRun` is the header's signature of nft_ctx_set_dry_run.
        let set_dry_run = unsafe { symbol::<CtxSetDryRun>(&lib, "nft_ctx_set_dry_run") }.map_err(why)?;
        // SAFETY: `RunCmd` is the header's signature of nft_run_cmd_from_buffer.
        let run_cmd = unsafe { symbol::<RunCmd>(&lib, "nft_run_cmd_from_buffer") }.map_err(why)?;
        Ok(Api {
            ctx_new,
            ctx_free,
            buffer_output,
            buffer_error,
            get_output,
            get_error,
            set_dry_run,
            run_cmd,
            _lib: lib,
            lock: Mutex::new(()),
        })
    }

    fn get() -> Result<&'static Api, ExecError> {
        static API: OnceLock<Result<Api, String>> = OnceLock::new();
        API.get_or_init(Api::load).as_ref().map_err(|e| ExecError::new(e.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A libnftables context, opened on (and never leaving) the worker thread. libnftables
/// keeps a cache of the ruleset in it, with a 128 KiB hash table per table listed; an idle
/// firewall [releases](Context::release) it, and the next command opens another.
pub struct Context {
    api: &'static Api,
    /// `None` once released, until the next command.
    ctx: Option<NonNull<c_void>>,
}

/// The function `name` of `lib`, as a `T`.
///
/// # Safety
/// `T` is the function pointer type that the library declares for `name`, and the pointer
/// is used only while `lib` stays loaded.
unsafe fn symbol<T: Copy>(lib: &Library, name: &str) -> Result<T, libloading::Error> {
    // SAFETY: the type is right by the caller's contract.
    unsafe { lib.get::<T>(name.as_bytes()) }.map(|sym| *sym)
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
        Ok(Context { api, ctx: Some(Self::new_raw(api).map_err(ExecError::new)?) })
    }

    fn new_raw(api: &'static Api) -> Result<NonNull<c_void>, String> {
        let _guard = api.lock();
        // SAFETY: nft_ctx_new(NFT_CTX_DEFAULT) has no preconditions; it returns null on failure.
        let raw = NonNull::new(unsafe { (api.ctx_new)(0) }).ok_or("nftables: nft_ctx_new failed")?;
        // SAFETY: a live context from nft_ctx_new.
        let buffered = unsafe { (api.buffer_output)(raw.as_ptr()) } == 0
            // SAFETY: as above.
            && unsafe { (api.buffer_error)(raw.as_ptr()) } == 0;
        if !buffered {
            // SAFETY: a live context from nft_ctx_new, freed once, here.
            unsafe { (api.ctx_free)(raw.as_ptr()) };
            return Err("nftables: cannot buffer libnftables output".into());
        }
        Ok(raw)
    }

    /// Free the context and the ruleset cache it holds; the next command opens another, in
    /// the calling thread's namespace (the worker never leaves its own). Whether there was one.
    pub fn release(&mut self) -> bool {
        let Some(raw) = self.ctx.take() else { return false };
        let _guard = self.api.lock();
        // SAFETY: `raw` came from nft_ctx_new and is freed once, here.
        unsafe { (self.api.ctx_free)(raw.as_ptr()) };
        true
    }

    /// Run `script` as one transaction (or, with `dry`, only check it against the kernel).
    /// Returns libnftables' output, or its error message.
    pub fn run(&mut self, script: &str, dry: bool) -> Result<String, String> {
        let text = CString::new(script).map_err(|_| "nftables: command holds a NUL byte".to_string())?;
        let api = self.api;
        let ctx = match self.ctx {
            Some(raw) => raw,
            None => *self.ctx.insert(Self::new_raw(api)?),
        }
        .as_ptr();
        let _guard = api.lock();
        // `ctx` is a live context owned by this thread; `text` outlives the calls; the buffers
        // returned by get_output/get_error are copied before the next libnftables call.
        if dry {
            // SAFETY: a live context.
            unsafe { (api.set_dry_run)(ctx, true) };
        }
        // SAFETY: a live context and a NUL-terminated command that outlives the call.
        let rc = unsafe { (api.run_cmd)(ctx, text.as_ptr()) };
        if dry {
            // SAFETY: a live context.
            unsafe { (api.set_dry_run)(ctx, false) };
        }
        // SAFETY: a live context.
        let output = unsafe { (api.get_output)(ctx) };
        // SAFETY: the context's buffer, NUL-terminated, copied before the next libnftables call.
        let output = unsafe { buffer_text(output) };
        // SAFETY: a live context.
        let error = unsafe { (api.get_error)(ctx) };
        // SAFETY: the context's buffer, NUL-terminated, copied before the next libnftables call.
        let error = unsafe { buffer_text(error) };
        if rc == 0 {
            Ok(output)
        } else if error.trim().is_empty() {
            Err(format!("nftables: command failed ({rc})"))
        } else {
            Err(format!("nftables: {}", error.trim()))
        }
    }

    /// Run `script` as one transaction.
    pub fn exec(&mut self, script: &str) -> Result<String, ExecError> {
        self.run(script, false).map_err(ExecError::new)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_says_what_to_install_and_how_to_do_without_it() {
        let Err(e) = Api::load_from("libnftables-missing.so.1") else { panic!("loaded a library that does not exist") };
        assert!(e.contains("libnftables-missing.so.1") && e.contains("package libnftables1"), "{e}");
        assert!(e.contains("--firewall none"), "{e}");
        // The loader's own words (dlerror) are kept.
        assert!(e.contains("cannot open shared object file"), "{e}");
    }
}
