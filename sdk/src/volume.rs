//! Volume drivers: the [`VolumeDriver`] trait and its messages.

use crate::error::DriverResult;
use crate::facts::HostFacts;
use crate::network::{Outcome, Scope};
use crate::plan::Plan;
use crate::state::DriverState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a volume driver declares about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VolumeCapabilities {
    /// Local or global scope.
    pub scope: Scope,
}

/// A volume as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VolumeSpec {
    /// Volume name.
    pub name: String,
    /// Driver options (`-o key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A request about one volume. `state` is what the driver returned last for it (null
/// before create); `mount_id` names the caller of mount and unmount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VolumeRequest {
    /// The volume.
    pub volume: VolumeSpec,
    /// The driver's private state for it.
    pub state: DriverState,
    /// Who mounts or unmounts.
    pub mount_id: String,
    /// Host facts.
    pub facts: HostFacts,
}

/// What a driver tells core about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct VolumeInfo {
    /// Where the volume's data can be found on the host.
    pub mountpoint: String,
    /// Driver-specific status, shown by inspect.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, Value>,
}

/// A volume driver. Like [`crate::NetworkDriver`], it decides and returns plans.
///
/// Core counts mount references: `mount` is called only when the first user mounts the
/// volume and `unmount` only when the last one leaves.
pub trait VolumeDriver: Send + Sync {
    /// The driver's name.
    fn name(&self) -> &str;

    /// Scope.
    fn capabilities(&self) -> VolumeCapabilities {
        VolumeCapabilities::default()
    }

    /// Check options before anything is created; an error names the bad option.
    ///
    /// By default every volume is accepted, options or not.
    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        let _ = req;
        Ok(())
    }

    /// Plan the creation of a volume.
    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>>;

    /// Plan the removal of a volume and its data. By default: the inverse of what `create`
    /// plans for the same volume, with the state kept.
    fn remove(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let state = req.state.clone();
        let made = self.create(req)?;
        Ok(Outcome::new((), made.plan.inverse(), state))
    }

    /// Plan making the volume's data available at its mountpoint (first user). By default
    /// nothing needs doing: the data is at [`VolumeDriver::get`]'s mountpoint.
    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let state = req.state.clone();
        Ok(Outcome::new(self.get(req)?, Plan::new(), state))
    }

    /// Plan taking the volume's data away from its mountpoint (last user gone). By
    /// default: the inverse of what `mount` plans, with the state kept.
    fn unmount(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let state = req.state.clone();
        let mounted = self.mount(req)?;
        Ok(Outcome::new((), mounted.plan.inverse(), state))
    }

    /// The volume's mountpoint.
    fn path(&self, req: VolumeRequest) -> DriverResult<String>;

    /// The volume's mountpoint and status. By default the mountpoint is
    /// [`VolumeDriver::path`]'s and the status empty.
    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        Ok(VolumeInfo { mountpoint: self.path(req)?, ..Default::default() })
    }

    /// Mountpoint and status of every volume in `reqs`, in the same order.
    fn list(&self, reqs: Vec<VolumeRequest>) -> DriverResult<Vec<VolumeInfo>> {
        reqs.into_iter().map(|r| self.get(r)).collect()
    }
}

impl VolumeRequest {
    /// The volume's state as the driver's own type (see [`Outcome::with_state`]).
    pub fn state_as<S: serde::de::DeserializeOwned + Default>(&self) -> DriverResult<S> {
        crate::network::typed_state(&self.state, "volume")
    }
}

impl std::fmt::Debug for dyn VolumeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeDriver").field("name", &self.name()).finish()
    }
}
