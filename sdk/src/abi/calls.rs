//! Reading a call, `{"method": …, "params": …}`, in either field order.
//!
//! serde's derived reader for an adjacently tagged enum buffers `params` in its generic
//! in-memory form when they come before `method`, and a [`crate::DriverState`] (JSON text)
//! cannot be read back from that form. This reader takes `params` straight from the message
//! when `method` came first, as core writes them, and otherwise keeps their JSON text until
//! the method is known.

use super::{NetworkCall, VolumeCall};
use crate::facts::HostFacts;
use crate::network::NetworkSpec;
use serde::de::value::UnitDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::marker::PhantomData;

/// A call enum whose params are read once its method is known.
trait ReadCall: Sized {
    /// What the enum is, for error messages.
    const WHAT: &'static str;
    /// Every method name.
    const METHODS: &'static [&'static str];
    /// The call `method` with its `params`.
    fn read<'de, D: Deserializer<'de>>(method: &str, params: D) -> Result<Self, D::Error>;
}

/// The fields of a call.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Method,
    Params,
    #[serde(other)]
    Other,
}

/// Params read straight from the message, for a method already known.
struct Params<'m, C>(&'m str, PhantomData<C>);

impl<'de, C: ReadCall> DeserializeSeed<'de> for Params<'_, C> {
    type Value = C;
    fn deserialize<D: Deserializer<'de>>(self, params: D) -> Result<C, D::Error> {
        C::read(self.0, params)
    }
}

struct CallVisitor<C>(PhantomData<C>);

impl<'de, C: ReadCall> Visitor<'de> for CallVisitor<C> {
    type Value = C;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a {} call with a method and its params", C::WHAT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<C, A::Error> {
        let mut method: Option<String> = None;
        let mut call = None;
        let mut early: Option<Box<RawValue>> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Method => method = Some(map.next_value()?),
                Field::Params => match &method {
                    Some(m) => call = Some(map.next_value_seed(Params(m, PhantomData))?),
                    None => early = Some(map.next_value()?),
                },
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let method = method.ok_or_else(|| de::Error::missing_field("method"))?;
        match (call, early) {
            (Some(call), _) => Ok(call),
            (None, Some(params)) => {
                C::read(&method, &mut serde_json::Deserializer::from_str(params.get())).map_err(de::Error::custom)
            }
            (None, None) => C::read(&method, UnitDeserializer::new()),
        }
    }
}

/// Params that are ignored (a call without any), whatever they hold.
fn no_params<'de, D: Deserializer<'de>>(params: D) -> Result<(), D::Error> {
    IgnoredAny::deserialize(params).map(|_| ())
}

/// The params of `validate`, both required.
#[derive(Deserialize)]
struct Validate {
    network: NetworkSpec,
    facts: HostFacts,
}

impl ReadCall for NetworkCall {
    const WHAT: &'static str = "network driver";
    const METHODS: &'static [&'static str] = &[
        "capabilities",
        "validate",
        "create_network",
        "delete_network",
        "create_endpoint",
        "delete_endpoint",
        "join",
        "leave",
    ];

    fn read<'de, D: Deserializer<'de>>(method: &str, p: D) -> Result<Self, D::Error> {
        Ok(match method {
            "capabilities" => {
                no_params(p)?;
                NetworkCall::Capabilities
            }
            "validate" => {
                let Validate { network, facts } = Validate::deserialize(p)?;
                NetworkCall::Validate { network, facts }
            }
            "create_network" => NetworkCall::CreateNetwork(Deserialize::deserialize(p)?),
            "delete_network" => NetworkCall::DeleteNetwork(Deserialize::deserialize(p)?),
            "create_endpoint" => NetworkCall::CreateEndpoint(Deserialize::deserialize(p)?),
            "delete_endpoint" => NetworkCall::DeleteEndpoint(Deserialize::deserialize(p)?),
            "join" => NetworkCall::Join(Deserialize::deserialize(p)?),
            "leave" => NetworkCall::Leave(Deserialize::deserialize(p)?),
            other => return Err(de::Error::unknown_variant(other, Self::METHODS)),
        })
    }
}

impl ReadCall for VolumeCall {
    const WHAT: &'static str = "volume driver";
    const METHODS: &'static [&'static str] =
        &["capabilities", "validate", "create", "remove", "mount", "unmount", "path", "get", "list"];

    fn read<'de, D: Deserializer<'de>>(method: &str, p: D) -> Result<Self, D::Error> {
        Ok(match method {
            "capabilities" => {
                no_params(p)?;
                VolumeCall::Capabilities
            }
            "validate" => VolumeCall::Validate(Deserialize::deserialize(p)?),
            "create" => VolumeCall::Create(Deserialize::deserialize(p)?),
            "remove" => VolumeCall::Remove(Deserialize::deserialize(p)?),
            "mount" => VolumeCall::Mount(Deserialize::deserialize(p)?),
            "unmount" => VolumeCall::Unmount(Deserialize::deserialize(p)?),
            "path" => VolumeCall::Path(Deserialize::deserialize(p)?),
            "get" => VolumeCall::Get(Deserialize::deserialize(p)?),
            "list" => VolumeCall::List(Deserialize::deserialize(p)?),
            other => return Err(de::Error::unknown_variant(other, Self::METHODS)),
        })
    }
}

impl<'de> Deserialize<'de> for NetworkCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CallVisitor(PhantomData))
    }
}

impl<'de> Deserialize<'de> for VolumeCall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CallVisitor(PhantomData))
    }
}
