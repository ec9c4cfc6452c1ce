//! Volume operations with Docker's semantics: idempotent create, anonymous volumes,
//! reference-counted mounts, removal of unused volumes, prune.

use super::{new_id, now, valid_name, Author, Engine, State};
use crate::error::{Error, Result};
use crate::executor::without_found;
use crate::model::{Volume, ANONYMOUS_LABEL};
use crate::store::Table;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use wharf_sdk::{Plan, VolumeDriver, VolumeRequest, VolumeSpec};

/// A volume create request.
#[derive(Debug, Clone, Default)]
pub struct VolumeCreateRequest {
    /// Name; empty makes an anonymous volume.
    pub name: String,
    /// Driver; empty means `local`.
    pub driver: String,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// What prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Names removed.
    pub removed: Vec<String>,
    /// Bytes freed.
    pub space_reclaimed: u64,
}

/// Whether `name` is a valid volume name: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    name.len() >= 2 && valid_name(name)
}

impl Engine {
    /// The bytes a volume's data takes, where wharf can tell: a `local` volume's files; `None`
    /// for other drivers, whose data may live anywhere.
    pub fn volume_size(&self, v: &Volume) -> Option<u64> {
        (v.driver == "local").then(|| self.exec.disk_usage(Path::new(&v.mountpoint)))
    }

    fn volume_driver(&self, name: &str) -> Result<Arc<dyn VolumeDriver>> {
        self.registry.volume(name).ok_or_else(|| Error::NotFound(format!("plugin {name:?} not found")))
    }

    pub(super) fn volume_request(&self, v: &Volume, mount_id: &str) -> VolumeRequest {
        VolumeRequest {
            volume: VolumeSpec { name: v.name.clone(), options: v.options.clone(), labels: v.labels.clone() },
            state: v.state.clone(),
            mount_id: mount_id.to_string(),
            facts: self.endpoint_facts(),
        }
    }

    /// Create a volume. The same name with the same driver returns the existing volume.
    pub fn volume_create(&self, req: VolumeCreateRequest) -> Result<Volume> {
        let mut state = self.lock();
        let driver_name = if req.driver.is_empty() { "local".to_string() } else { req.driver.clone() };
        let mut labels = req.labels.clone();
        let name = if req.name.is_empty() {
            labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
            new_id()
        } else {
            req.name.clone()
        };
        if !valid_volume_name(&name) {
            return Err(Error::InvalidArgument(format!(
                "invalid volume name {name:?}: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]+"
            )));
        }
        if let Some(existing) = state.volumes().get(&name) {
            if existing.driver != driver_name {
                return Err(Error::Conflict(format!(
                    "volume {name} already exists with driver {}, not {driver_name}",
                    existing.driver
                )));
            }
            return Ok(Volume::clone(existing));
        }
        let driver = self.volume_driver(&driver_name)?;
        let mut volume = Volume {
            name: name.clone(),
            driver: driver_name.clone(),
            created: now(),
            options: req.options.clone(),
            labels,
            ..Default::default()
        };
        let request = self.volume_request(&volume, "");
        driver.validate(&request).map_err(|e| Error::driver(&driver_name, e))?;
        let out = driver.create(request).map_err(|e| Error::driver(&driver_name, e))?;
        volume.mountpoint = out.response.mountpoint;
        volume.status = out.response.status;
        volume.state = out.state;
        // A volume whose mount the policy refuses could never be used: refuse it now, before
        // anything is made, rather than at its first mount.
        let mount = driver.mount(self.volume_request(&volume, "")).map_err(|e| Error::driver(&driver_name, e))?;
        super::policy::check(
            &mount.plan,
            &self.settings,
            &*self.exec,
            Author::Driver(&driver_name),
            &format!("volume {name}"),
        )?;
        // The volume keeps the driver's plan, whose undo steps say what removal takes away;
        // the plan carried out gives a directory that stands there already no undo at all.
        let plan = super::adopt_existing_directories(&*self.exec, out.plan.clone());
        volume.plan = out.plan;
        self.apply_recorded(Author::Driver(&driver_name), &format!("volume {name}"), &plan, |t, found| {
            volume.found = found.to_vec();
            t.put(Table::Volumes, &name, &volume)
        })?;
        self.events.record("volume", "create", &name, &[("driver", &volume.driver)]);
        state.put_volume(Arc::new(volume.clone()));
        Ok(volume)
    }

    /// Every volume.
    pub fn volumes(&self) -> Vec<Volume> {
        self.read().volumes().values().map(|v| Volume::clone(v)).collect()
    }

    /// One volume by name.
    pub fn volume(&self, name: &str) -> Result<Volume> {
        self.read()
            .volumes()
            .get(name)
            .map(|v| Volume::clone(v))
            .ok_or_else(|| Error::NotFound(format!("volume {name} not found")))
    }

    /// Remove a volume. One in use is refused, `force` or not; `force` only makes an
    /// absent volume no error.
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let mut state = self.lock();
        let volume = match state.volumes().get(name) {
            Some(v) => Volume::clone(v),
            None if force => return Ok(()),
            None => return Err(Error::NotFound(format!("volume {name} not found"))),
        };
        self.remove_volume_locked(&mut state, volume)
    }

    fn remove_volume_locked(&self, state: &mut State, volume: Volume) -> Result<()> {
        if !volume.mounts.is_empty() {
            // Docker refuses a volume in use even with --force: its users would lose their
            // files under them.
            return Err(Error::Conflict(format!(
                "remove {}: volume is in use by {}",
                volume.name,
                volume.mounts.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let driver = self.volume_driver(&volume.driver)?;
        let out = driver.remove(self.volume_request(&volume, "")).map_err(|e| Error::driver(&volume.driver, e))?;
        // What stood there before the volume was made is adopted, and stays.
        let plan = without_found(out.plan, &volume.plan, &volume.found);
        self.apply_removal(
            Author::Driver(&volume.driver),
            &format!("volume {}", volume.name),
            &plan,
            |t| t.delete(Table::Volumes, &volume.name),
            |t| t.put(Table::Volumes, &volume.name, &volume),
        )?;
        state.remove_volume(&volume.name);
        tracing::info!(volume = %volume.name, "volume removed");
        self.events.record("volume", "destroy", &volume.name, &[("driver", &volume.driver)]);
        Ok(())
    }

    /// Take a mount reference for `id`; the first one mounts the volume. Returns the
    /// mountpoint.
    pub fn volume_mount(&self, name: &str, id: &str) -> Result<String> {
        let mut state = self.lock();
        if id.is_empty() {
            return Err(Error::InvalidArgument("mount needs a non-empty ID".into()));
        }
        let mut volume = state
            .volumes()
            .get(name)
            .map(|v| Volume::clone(v))
            .ok_or_else(|| Error::NotFound(format!("volume {name} not found")))?;
        if volume.mounts.contains(id) {
            return Ok(volume.mountpoint);
        }
        let mut plan = Plan::new();
        if volume.mounts.is_empty() {
            let driver = self.volume_driver(&volume.driver)?;
            let out = driver.mount(self.volume_request(&volume, id)).map_err(|e| Error::driver(&volume.driver, e))?;
            if !out.response.mountpoint.is_empty() {
                volume.mountpoint = out.response.mountpoint;
            }
            volume.state = if out.state.is_null() { volume.state } else { out.state };
            plan = out.plan;
        }
        volume.mounts.insert(id.to_string());
        self.apply(Author::Driver(&volume.driver), &format!("volume {name}"), &plan, |t| {
            t.put(Table::Volumes, name, &volume)
        })?;
        let mountpoint = volume.mountpoint.clone();
        let attributes = [("container", id), ("destination", mountpoint.as_str()), ("driver", &volume.driver)];
        self.events.record("volume", "mount", name, &attributes);
        state.put_volume(Arc::new(volume));
        Ok(mountpoint)
    }

    /// Drop the mount reference of `id`; the last one unmounts the volume.
    pub fn volume_unmount(&self, name: &str, id: &str) -> Result<()> {
        let mut state = self.lock();
        let mut volume = state
            .volumes()
            .get(name)
            .map(|v| Volume::clone(v))
            .ok_or_else(|| Error::NotFound(format!("volume {name} not found")))?;
        if !volume.mounts.remove(id) {
            return Err(Error::Conflict(format!("volume {name} is not mounted by {id:?}")));
        }
        let mut plan = Plan::new();
        if volume.mounts.is_empty() {
            let driver = self.volume_driver(&volume.driver)?;
            let out = driver.unmount(self.volume_request(&volume, id)).map_err(|e| Error::driver(&volume.driver, e))?;
            volume.state = if out.state.is_null() { volume.state } else { out.state };
            plan = out.plan;
        }
        self.apply(Author::Driver(&volume.driver), &format!("volume {name}"), &plan, |t| {
            t.put(Table::Volumes, name, &volume)
        })?;
        self.events.record("volume", "unmount", name, &[("container", id), ("driver", &volume.driver)]);
        state.put_volume(Arc::new(volume));
        Ok(())
    }

    /// Remove unused volumes: anonymous ones only, or all when `all`, among those `keep`
    /// selects.
    pub fn volume_prune(&self, all: bool, keep: impl Fn(&Volume) -> bool) -> Result<PruneReport> {
        let mut state = self.lock();
        let candidates: Vec<Volume> = state
            .volumes()
            .values()
            .filter(|v| v.mounts.is_empty() && (all || v.anonymous()) && keep(v))
            .map(|v| Volume::clone(v))
            .collect();
        let mut report = PruneReport::default();
        for v in candidates {
            let size = self.volume_size(&v).unwrap_or(0);
            match self.remove_volume_locked(&mut state, v.clone()) {
                Ok(()) => {
                    report.removed.push(v.name);
                    report.space_reclaimed += size;
                }
                Err(e) => tracing::warn!(volume = %v.name, error = %e, "prune could not remove volume"),
            }
        }
        self.events.record("volume", "prune", "", &[("reclaimed", &report.space_reclaimed.to_string())]);
        Ok(report)
    }
}
