//! The driver registry: built-in drivers and drivers loaded from plugin libraries.
//!
//! A plugin library is refused, with one log line naming the file and the reason, when it
//! is not owned by root or is group- or world-writable, lacks the `wharf_plugin_v1` symbol,
//! or speaks another ABI version. A driver whose name is already registered is refused on
//! its own. Libraries are never unloaded: a loaded table stays valid for the process' life.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wharf_sdk::abi::{self, EntryFn, PluginClient, PluginTable};
use wharf_sdk::{NetworkDriver, VolumeDriver};

/// Where a driver came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Compiled into wharfd.
    Builtin,
    /// Loaded from this library.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The kind of a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Network driver.
    Network,
    /// Volume driver.
    Volume,
}

impl Kind {
    /// `network` or `volume`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Volume => "volume",
        }
    }
}

/// A registered driver, for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Where it came from.
    pub source: Source,
    /// The ABI version it speaks.
    pub abi_version: u32,
}

/// Why a plugin library or one of its drivers was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {}: {reason}", path.display())]
pub struct LoadError {
    /// The library.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

struct Entry<T: ?Sized> {
    driver: Arc<T>,
    source: Source,
}

/// Every driver wharfd can use, by kind and name.
#[derive(Default)]
pub struct Registry {
    networks: BTreeMap<String, Entry<dyn NetworkDriver>>,
    volumes: BTreeMap<String, Entry<dyn VolumeDriver>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Register a network driver; refuses a name already registered.
    pub fn add_network(&mut self, driver: Arc<dyn NetworkDriver>, source: Source) -> Result<(), String> {
        let name = driver.name().to_string();
        if let Some(existing) = self.networks.get(&name) {
            return Err(format!("network driver {name:?} is already registered from {}", existing.source));
        }
        self.networks.insert(name, Entry { driver, source });
        Ok(())
    }

    /// Register a volume driver; refuses a name already registered.
    pub fn add_volume(&mut self, driver: Arc<dyn VolumeDriver>, source: Source) -> Result<(), String> {
        let name = driver.name().to_string();
        if let Some(existing) = self.volumes.get(&name) {
            return Err(format!("volume driver {name:?} is already registered from {}", existing.source));
        }
        self.volumes.insert(name, Entry { driver, source });
        Ok(())
    }

    /// The network driver `name`.
    pub fn network(&self, name: &str) -> Option<Arc<dyn NetworkDriver>> {
        self.networks.get(name).map(|e| e.driver.clone())
    }

    /// The volume driver `name`.
    pub fn volume(&self, name: &str) -> Option<Arc<dyn VolumeDriver>> {
        self.volumes.get(name).map(|e| e.driver.clone())
    }

    /// Every registered driver, networks first, by name.
    pub fn list(&self) -> Vec<DriverInfo> {
        let nets = self.networks.iter().map(|(n, e)| (n, Kind::Network, &e.source));
        let vols = self.volumes.iter().map(|(n, e)| (n, Kind::Volume, &e.source));
        nets.chain(vols)
            .map(|(name, kind, source)| DriverInfo {
                name: name.clone(),
                kind,
                source: source.clone(),
                abi_version: abi::ABI_VERSION,
            })
            .collect()
    }

    /// Load every `*.so` in `dir`, in name order. Refusals are logged and returned; the
    /// drivers of the other files are registered.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<LoadError> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "so")).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort();
        let mut errors = Vec::new();
        for file in files {
            match self.load_file(&file) {
                Ok(mut refused) => errors.append(&mut refused),
                Err(e) => errors.push(e),
            }
        }
        for e in &errors {
            tracing::warn!("{e}");
        }
        errors
    }

    /// Load one plugin library. A refused library is an `Err`; a library whose drivers
    /// were partly refused (duplicate names) returns those refusals in `Ok`.
    pub fn load_file(&mut self, path: &Path) -> Result<Vec<LoadError>, LoadError> {
        let refuse = |reason: String| LoadError { path: path.to_path_buf(), reason };
        check_ownership(path).map_err(refuse)?;
        let table = open_table(path).map_err(refuse)?;
        // SAFETY: `open_table` checked the version and size of a table that lives for the
        // rest of the process, as its library is never unloaded.
        let drivers = unsafe { PluginClient::drivers(table) }.map_err(refuse)?;
        let mut refused = Vec::new();
        for (index, d) in drivers.into_iter().enumerate() {
            // SAFETY: `index` is below the table's driver count, as `drivers` listed it.
            let client = unsafe { PluginClient::new(table, index, d.name.clone()) };
            let source = Source::File(path.to_path_buf());
            let added = match d.kind {
                abi::KIND_NETWORK => self.add_network(Arc::new(client), source),
                abi::KIND_VOLUME => self.add_volume(Arc::new(client), source),
                other => Err(format!("driver {:?} has unknown kind {other}", d.name)),
            };
            match added {
                Ok(()) => tracing::info!(driver = %d.name, file = %path.display(), "loaded plugin driver"),
                Err(reason) => refused.push(refuse(reason)),
            }
        }
        Ok(refused)
    }
}

fn check_ownership(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if meta.uid() != 0 {
        return Err(format!("owned by uid {}, not root", meta.uid()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("writable by group or others (mode {:o})", meta.mode() & 0o7777));
    }
    Ok(())
}

fn open_table(path: &Path) -> Result<&'static PluginTable, String> {
    // SAFETY: loading a library runs its initialisers. Only root-owned files that no one
    // else can write are loaded (checked by the caller), the same trust as wharfd itself.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| format!("cannot load: {e}"))?;
    // SAFETY: the symbol's type is fixed by the ABI: `extern "C" fn() -> *const PluginTable`.
    let entry: EntryFn = match unsafe { lib.get::<EntryFn>(abi::SYMBOL) } {
        Ok(sym) => *sym,
        Err(_) => return Err("does not export the symbol wharf_plugin_v1".to_string()),
    };
    // Libraries are never unloaded, so the table and the functions it points to stay valid.
    std::mem::forget(lib);
    // SAFETY: `entry` is the plugin's exported entry point, called with no arguments.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err("wharf_plugin_v1 returned no table (the plugin failed to start)".to_string());
    }
    // SAFETY: `abi_version` is the first field of every version of the table, so it can be
    // read before anything else is known about the table.
    let version = unsafe { std::ptr::addr_of!((*table).abi_version).read() };
    if version != abi::ABI_VERSION {
        return Err(format!("speaks plugin ABI version {version}, but wharfd speaks version {}", abi::ABI_VERSION));
    }
    // SAFETY: the table is of our version, whose first two fields are `abi_version` and `size`.
    let size = unsafe { std::ptr::addr_of!((*table).size).read() } as usize;
    if size < std::mem::size_of::<PluginTable>() {
        return Err(format!("plugin table is {size} bytes, expected {}", std::mem::size_of::<PluginTable>()));
    }
    // SAFETY: checked above: non-null, our version and at least our size; never freed.
    Ok(unsafe { &*table })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::{Host, Null};

    #[test]
    fn duplicate_names_are_refused() {
        let mut r = Registry::new();
        r.add_network(Arc::new(Host), Source::Builtin).unwrap();
        let err = r.add_network(Arc::new(Host), Source::File("/x.so".into())).unwrap_err();
        assert!(err.contains("already registered from builtin"), "{err}");
        r.add_network(Arc::new(Null), Source::Builtin).unwrap();
        let names: Vec<String> = r.list().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["host", "null"]);
    }

    #[test]
    fn a_group_writable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"not a library").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o664)).unwrap();
        let mut r = Registry::new();
        let errs = r.load_dir(dir.path());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("writable by group or others"), "{}", errs[0]);
        assert!(errs[0].to_string().contains("libx.so"));
    }
}
