//! The driver registry: every driver wharfd can use, by kind and name, with where it came
//! from. Built-in drivers are added by the daemon; plugin libraries are checked and loaded by
//! the Linux crate's plugin loader (`wharf_linux::plugins`), which adds their drivers here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use wharf_sdk::abi;
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
    /// The driver's version and the SDK version it was built with: wharfd's own for a
    /// built-in driver; none for a plugin built before plugins said.
    pub versions: Option<abi::PluginInfo>,
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

#[derive(Debug)]
struct Entry<T: ?Sized> {
    driver: Arc<T>,
    source: Source,
}

impl<T: ?Sized> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry { driver: self.driver.clone(), source: self.source.clone() }
    }
}

/// Every driver wharfd can use, by kind and name. A clone shares the drivers.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    networks: BTreeMap<String, Entry<dyn NetworkDriver>>,
    volumes: BTreeMap<String, Entry<dyn VolumeDriver>>,
    libraries: BTreeMap<PathBuf, abi::PluginInfo>,
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

    /// Record what the plugin library at `path` says about itself.
    pub fn add_library_info(&mut self, path: PathBuf, info: abi::PluginInfo) {
        self.libraries.insert(path, info);
    }

    /// Every registered driver, networks first, by name.
    pub fn list(&self) -> Vec<DriverInfo> {
        let nets = self.networks.iter().map(|(n, e)| (n, Kind::Network, &e.source));
        let vols = self.volumes.iter().map(|(n, e)| (n, Kind::Volume, &e.source));
        let builtin = abi::PluginInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            sdk_version: abi::SDK_VERSION.to_string(),
            message_version: abi::MESSAGE_VERSION,
        };
        nets.chain(vols)
            .map(|(name, kind, source)| DriverInfo {
                name: name.clone(),
                kind,
                source: source.clone(),
                abi_version: abi::ABI_VERSION,
                versions: match source {
                    Source::Builtin => Some(builtin.clone()),
                    Source::File(path) => self.libraries.get(path).cloned(),
                },
            })
            .collect()
    }
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
}
