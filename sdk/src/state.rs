//! A driver's private state: JSON that core keeps for an object and hands back, unread.
//!
//! Core never looks inside a driver's state, so it carries it as the JSON text the driver
//! wrote ([`DriverState`]), not as a parsed tree: crossing the plugin boundary, going into
//! the store and coming back costs one copy of the text, not a map and a string per field.

use serde::de::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A driver's private state for one object: the JSON text the driver returned, `null`
/// before the first call returned any.
///
/// Build it from the driver's own type with [`DriverState::new`] (or
/// [`crate::Outcome::with_state`]) and read it back with [`DriverState::read`] (or a
/// request's `*_state_as` methods). A [`serde_json::Value`] converts into it, so
/// `Outcome::new(response, plan, Value::Null)` keeps working.
#[derive(Clone, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct DriverState(Box<RawValue>);

impl DriverState {
    /// No state: `null`.
    pub fn null() -> Self {
        DriverState(RawValue::NULL.to_owned())
    }

    /// The state `state` as JSON.
    pub fn new<S: Serialize + ?Sized>(state: &S) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(state).map(DriverState)
    }

    /// Whether there is no state (`null`).
    pub fn is_null(&self) -> bool {
        self.0.get() == "null"
    }

    /// The state as the driver's own type. Strings may be borrowed from the state's text.
    pub fn read<'a, S: Deserialize<'a>>(&'a self) -> serde_json::Result<S> {
        serde_json::from_str(self.0.get())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The state as a JSON tree, for a reader that wants to look around in it.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl Default for DriverState {
    fn default() -> Self {
        DriverState::null()
    }
}

impl From<Value> for DriverState {
    fn from(value: Value) -> Self {
        DriverState::from(&value)
    }
}

impl From<&Value> for DriverState {
    fn from(value: &Value) -> Self {
        // A `Value` always serialises: its map keys are strings.
        DriverState::new(value).unwrap_or_default()
    }
}

/// Two states are equal when they hold the same JSON, however it was spaced.
impl PartialEq for DriverState {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get() || self.to_value() == other.to_value()
    }
}

impl PartialEq<Value> for DriverState {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl std::fmt::Debug for DriverState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Mine {
        bridge: String,
        mtu: u32,
    }

    #[test]
    fn state_round_trips_as_text_and_as_the_drivers_type() {
        let mine = Mine { bridge: "br0".into(), mtu: 1500 };
        let state = DriverState::new(&mine).unwrap();
        assert_eq!(state.get(), r#"{"bridge":"br0","mtu":1500}"#);
        assert_eq!(state.read::<Mine>().unwrap(), mine);
        let carried: DriverState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(carried, state);
        assert_eq!(state, json!({"mtu": 1500, "bridge": "br0"}));
    }

    #[test]
    fn no_state_is_null_and_a_value_converts() {
        assert!(DriverState::default().is_null());
        assert!(DriverState::from(Value::Null).is_null());
        assert_eq!(DriverState::from(json!({"a": [1]})).get(), r#"{"a":[1]}"#);
        let spaced: DriverState = serde_json::from_str(r#"{ "a" : 1 }"#).unwrap();
        assert_eq!(spaced, DriverState::from(json!({"a": 1})));
    }
}
