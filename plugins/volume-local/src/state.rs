//! Private driver state: how a driver hands core what it decided at create, and reads it
//! back on every later call instead of parsing the options again.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use wharf_sdk::{DriverError, DriverResult, VolumeRequest};

/// `state` as the JSON core stores.
pub(crate) fn encode<T: Serialize>(state: &T) -> DriverResult<Value> {
    serde_json::to_value(state).map_err(|e| DriverError::internal(format!("cannot encode volume state: {e}")))
}

/// The state `driver` stored for the volume of `req`.
pub(crate) fn decode<T: DeserializeOwned>(driver: &str, req: &VolumeRequest) -> DriverResult<T> {
    serde_json::from_value(req.state.clone()).map_err(|e| {
        DriverError::internal(format!("driver {driver:?} has no readable state for volume {:?}: {e}", req.volume.name))
    })
}
