//! Private driver state: how a driver hands core what it decided at create, and reads it
//! back on every later call instead of parsing the options again.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wharf_sdk::{DriverError, DriverResult, DriverState, VolumeRequest};

/// `state` as the JSON core stores.
pub(crate) fn encode<T: Serialize>(state: &T) -> DriverResult<DriverState> {
    DriverState::new(state).map_err(|e| DriverError::internal(format!("cannot encode volume state: {e}")))
}

/// The state `driver` stored for the volume of `req`.
pub(crate) fn decode<T: DeserializeOwned>(driver: &str, req: &VolumeRequest) -> DriverResult<T> {
    req.state.read().map_err(|e| {
        DriverError::internal(format!("driver {driver:?} has no readable state for volume {:?}: {e}", req.volume.name))
    })
}
