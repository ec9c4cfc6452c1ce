//! The plugin loader: checks plugin libraries and loads their drivers into the engine's
//! [`Registry`].
//!
//! A plugin library is refused, with one log line naming the file and the reason, when it
//! or its directory is not owned by root or is group- or world-writable, when it is a
//! symbolic link, when it is not a complete ELF shared object for this machine (checked
//! before the loader maps it, so a half-copied file cannot crash wharfd), when the loader
//! refuses it (dlerror's text is kept), lacks the `wharf_plugin_v1` symbol, or speaks
//! another ABI version. What is checked is what is loaded: the file is opened once and
//! loaded through its descriptor. A driver whose name is already registered is refused on
//! its own. Libraries are never unloaded: a loaded table stays valid for the process' life.

mod elf;
mod pages;

pub use pages::release_unused;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use wharf_engine::executor::report;
use wharf_engine::registry::{LoadError, Registry, Source};
use wharf_sdk::abi::{self, EntryFn, InfoFn, PluginClient, PluginInfo, PluginTable};
use wharf_sdk::log::SetLoggerFn;

/// Load every `*.so` in `dir`, in name order. A directory that is not owned by root or
/// that group or others can write is refused as a whole. Refusals are logged and
/// returned; the drivers of the other files are registered. A missing directory is
/// not an error: the configured list names directories an installation may not have.
pub fn load_dir(registry: &mut Registry, dir: &Path) -> Vec<LoadError> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let errors = match open_dir(&dir) {
        Ok(Some((fd, names))) => {
            let mut errors = Vec::new();
            for name in names {
                let path = dir.join(&name);
                let opened = open_plugin(Some(&fd), Path::new(&name), &path);
                match opened.and_then(|file| load_open(registry, &path, file)) {
                    Ok(mut refused) => errors.append(&mut refused),
                    Err(e) => errors.push(e),
                }
            }
            errors
        }
        Ok(None) => Vec::new(),
        Err(reason) => vec![LoadError { path: dir.clone(), reason }],
    };
    for e in &errors {
        tracing::warn!("{e}");
    }
    errors
}

/// Load one plugin library. A refused library is an `Err`; a library whose drivers
/// were partly refused (duplicate names) returns those refusals in `Ok`.
pub fn load_file(registry: &mut Registry, path: &Path) -> Result<Vec<LoadError>, LoadError> {
    let file = open_plugin(None, path, path)?;
    load_open(registry, path, file)
}

/// Check the opened library and load it through its descriptor, so the file checked is
/// the file loaded even if `path` is replaced meanwhile.
fn load_open(registry: &mut Registry, path: &Path, file: File) -> Result<Vec<LoadError>, LoadError> {
    let refuse = |reason: String| LoadError { path: path.to_path_buf(), reason };
    let meta = file.metadata().map_err(|e| refuse(format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(refuse("not a regular file".to_string()));
    }
    check_owner(&meta).map_err(refuse)?;
    elf::check(&file, meta.len()).map_err(refuse)?;
    let (table, info) = open_table(file).map_err(refuse)?;
    if let Some(info) = info {
        registry.add_library_info(path.to_path_buf(), info);
    }
    // SAFETY: `open_table` checked the version and size of a table that lives for the
    // rest of the process, as its library is never unloaded.
    let drivers = unsafe { PluginClient::drivers(table) }.map_err(refuse)?;
    let mut refused = Vec::new();
    for (index, d) in drivers.into_iter().enumerate() {
        // SAFETY: `index` is below the table's driver count, as `drivers` listed it.
        let client = unsafe { PluginClient::new(table, index, d.name.clone()) };
        let source = Source::File(path.to_path_buf());
        let added = match d.kind {
            abi::KIND_NETWORK => registry.add_network(Arc::new(client), source),
            abi::KIND_VOLUME => registry.add_volume(Arc::new(client), source),
            other => Err(format!("driver {:?} has unknown kind {other}", d.name)),
        };
        match added {
            Ok(()) => tracing::info!(driver = %d.name, file = %path.display(), "loaded plugin driver"),
            Err(reason) => refused.push(refuse(reason)),
        }
    }
    Ok(refused)
}

/// Open a plugin directory and list its `*.so` names in order; `None` when it does not
/// exist. The directory is refused unless root owns it and only root can write it, as
/// whoever can write it chooses what wharfd loads.
fn open_dir(dir: &Path) -> Result<Option<(OwnedFd, Vec<OsString>)>, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = match nix::fcntl::open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("cannot open plugin directory: {}", std::io::Error::from(e))),
    };
    let meta = File::from(fd.try_clone().map_err(|e| format!("cannot open plugin directory: {e}"))?)
        .metadata()
        .map_err(|e| format!("cannot stat plugin directory: {e}"))?;
    check_owner(&meta).map_err(|reason| format!("plugin directory {reason}"))?;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list plugin directory: {e}"))?;
    let mut names: Vec<OsString> = entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "so"))
        .collect();
    names.sort();
    Ok(Some((fd, names)))
}

/// Open a library without following a symbolic link (a link planted in a plugin directory
/// is refused, not followed) and without blocking on a FIFO; relative to `dir` when given.
fn open_plugin(dir: Option<&OwnedFd>, name: &Path, path: &Path) -> Result<File, LoadError> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let opened = match dir {
        Some(dir) => nix::fcntl::openat(dir, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    opened.map(File::from).map_err(|e| LoadError {
        path: path.to_path_buf(),
        reason: match e {
            Errno::ELOOP => "is a symbolic link, which is never followed".to_string(),
            e => format!("cannot open: {}", std::io::Error::from(e)),
        },
    })
}

fn check_owner(meta: &std::fs::Metadata) -> Result<(), String> {
    if meta.uid() != 0 {
        return Err(format!("owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("writable by group or others (mode {:o})", meta.mode() & 0o7777));
    }
    Ok(())
}

/// Load the library open as `file` through `/proc/self/fd/N` and check its table.
///
/// The descriptor stays open for the rest of the process once the library is loaded: the
/// dynamic loader remembers a library by the name it was opened with, so a later plugin
/// given the same descriptor number would otherwise be mistaken for this one.
fn open_table(file: File) -> Result<(&'static PluginTable, Option<PluginInfo>), String> {
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    let flags = libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL;
    // SAFETY: loading a library runs its initialisers. Only complete ELF shared objects that
    // root owns and no one else can write are loaded (checked by the caller on this very
    // descriptor), the same trust as wharfd itself.
    let lib = unsafe { libloading::os::unix::Library::open(Some(&fd_path), flags) }
        .map_err(|e| format!("cannot load: {}", report(&e)))?;
    let _kept_open = file.into_raw_fd();
    // SAFETY: the symbol's type is fixed by the ABI: `extern "C" fn() -> *const PluginTable`.
    let entry: EntryFn = match unsafe { lib.get::<EntryFn>(abi::SYMBOL) } {
        Ok(sym) => *sym,
        Err(e) => return Err(format!("does not export the symbol wharf_plugin_v1 ({})", report(&e))),
    };
    // SAFETY: the symbol's type is fixed by the ABI (`wharf_sdk::log::SetLoggerFn`); it is
    // optional, as plugins built before it existed lack it.
    if let Ok(set_logger) = unsafe { lib.get::<SetLoggerFn>(wharf_sdk::log::LOG_SYMBOL) } {
        let max =
            tracing::level_filters::LevelFilter::current().into_level().map_or(0, |l| wharf_sdk::log::level_code(&l));
        // SAFETY: called once per library with a function that lives as long as wharfd.
        unsafe { set_logger(plugin_log, max) };
    }
    // SAFETY: the symbol's type is fixed by the ABI (`wharf_sdk::abi::InfoFn`); it is
    // optional, as plugins built before it existed lack it.
    let info = unsafe { lib.get::<InfoFn>(abi::INFO_SYMBOL) }.ok().and_then(|info| {
        // SAFETY: the function takes nothing and returns a NUL-terminated string the
        // library keeps for its life, or null.
        let text = unsafe { info() };
        if text.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, and kept alive by the never-unloaded library.
        let text = unsafe { std::ffi::CStr::from_ptr(text) };
        serde_json::from_slice(text.to_bytes()).ok()
    });
    // Libraries are never unloaded, so the table and the functions it points to stay valid.
    std::mem::forget(lib);
    // SAFETY: `entry` is the plugin's exported entry point, called with no arguments.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err("wharf_plugin_v1 returned no table (the plugin failed to start)".to_string());
    }
    // SAFETY: `abi_version` is the first field of every version of the table, so it can be
    // read before anything else is known about the table.
    let version = unsafe { &raw const (*table).abi_version };
    // SAFETY: a field of the table, aligned and initialised by the plugin.
    let version = unsafe { version.read() };
    if version != abi::ABI_VERSION {
        return Err(format!("speaks plugin ABI version {version}, but wharfd speaks version {}", abi::ABI_VERSION));
    }
    // SAFETY: the table is of our version, whose first two fields are `abi_version` and `size`.
    let size = unsafe { &raw const (*table).size };
    // SAFETY: a field of the table, aligned and initialised by the plugin.
    let size = unsafe { size.read() } as usize;
    if size < std::mem::size_of::<PluginTable>() {
        return Err(format!("plugin table is {size} bytes, expected {}", std::mem::size_of::<PluginTable>()));
    }
    // SAFETY: checked above: non-null, our version and at least our size; never freed.
    Ok((unsafe { &*table }, info))
}

/// The log function plugins get: an event of a plugin, logged as wharfd's own under the
/// plugin's target.
unsafe extern "C" fn plugin_log(
    level: u32,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
) {
    let text = |ptr: *const u8, len: usize| {
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: the plugin passes `len` initialised bytes at `ptr`, live for this call.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        String::from_utf8_lossy(bytes).into_owned()
    };
    let (target, message) = (text(target, target_len), text(message, message_len));
    match level {
        1 => tracing::error!(target: "plugin", plugin = %target, "{message}"),
        2 => tracing::warn!(target: "plugin", plugin = %target, "{message}"),
        3 => tracing::info!(target: "plugin", plugin = %target, "{message}"),
        4 => tracing::debug!(target: "plugin", plugin = %target, "{message}"),
        _ => tracing::trace!(target: "plugin", plugin = %target, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_writable_file_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (a plugin file must be owned by root to get past the owner check)");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"not a library").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let mut r = Registry::new();
        let errs = load_dir(&mut r, dir.path());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("writable by group or others"), "{}", errs[0]);
        assert!(errs[0].to_string().contains("libx.so"));
    }
}
