//! An example third-party volume driver: `quota`, a directory per volume, capped on request.
//!
//! Each volume is a directory `VOLUMES/NAME` whose `_data` subdirectory is what sandboxes
//! see. `-o size=64m` caps it: the volume gets a sparse ext4 image, loop-mounted on `_data`
//! while the volume is in use, so writes beyond the size fail with "no space left". `-o
//! mode=0750` sets the permissions of `_data`. It shows a volume driver's whole life:
//! options checked in `validate`, directories and an image made by `create`, a mount that
//! `unmount` undoes, and private state that carries the settings from call to call.
//!
//! Build it with `cargo build -p wharf-sdk --examples` and install
//! `target/debug/examples/libwharf_example_volume.so` as the network example says.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use wharf_sdk::{
    export_plugin, DriverError, DriverResult, Op, Outcome, Plan, Step, VolumeDriver, VolumeInfo, VolumeRequest,
};

/// The driver.
#[derive(Debug, Default)]
pub struct Quota;

/// The smallest cap: ext4 needs room for its own metadata.
const MIN_SIZE: u64 = 8 << 20;

/// What the driver remembers about a volume.
#[derive(Debug, Serialize, Deserialize, Default, PartialEq)]
struct VolumeState {
    /// `VOLUMES/NAME`.
    dir: String,
    /// `VOLUMES/NAME/_data`, the mountpoint.
    data: String,
    /// The cap in bytes, if any.
    size: Option<u64>,
    /// Permissions of `_data`.
    mode: u32,
}

impl VolumeState {
    /// The settings `req` asks for, checked.
    fn of(req: &VolumeRequest) -> DriverResult<VolumeState> {
        let dir = format!("{}/{}", req.facts.volumes_dir, req.volume.name);
        let mut state = VolumeState { data: format!("{dir}/_data"), dir, size: None, mode: 0o755 };
        for (key, value) in &req.volume.options {
            match key.as_str() {
                "size" => state.size = Some(parse_size(value)?),
                "mode" => state.mode = parse_mode(value)?,
                _ => return Err(DriverError::unknown_option("quota", key)),
            }
        }
        Ok(state)
    }

    fn image(&self) -> String {
        format!("{}/disk.img", self.dir)
    }

    /// The directories and, when capped, the image.
    fn create_plan(&self) -> Plan {
        let mut plan = Plan::new();
        plan.push(Step::dir_create(&self.dir, Some(0o700), None, None));
        plan.push(Step::dir_create(&self.data, Some(self.mode), None, None));
        if let Some(size) = self.size {
            let image = self.image();
            let make = Op::ImageCreate { path: image.clone(), size, fstype: "ext4".into() };
            plan.push(Step::new(make, Op::FileRemove { path: image }));
        }
        plan
    }

    /// The loop mount of the image on `_data`, when capped.
    fn mount_plan(&self) -> Plan {
        self.size.map(|_| Step::mount(self.image(), &self.data, "ext4", "loop")).into_iter().collect()
    }

    fn info(&self) -> VolumeInfo {
        let mut status = BTreeMap::new();
        if let Some(size) = self.size {
            status.insert("size".to_string(), Value::from(size));
        }
        VolumeInfo { mountpoint: self.data.clone(), status }
    }
}

/// `64m`, `1g`, `1048576`: bytes, with an optional binary suffix k, m or g.
fn parse_size(value: &str) -> DriverResult<u64> {
    let bad = || DriverError::invalid(format!("invalid size {value:?}: want bytes with an optional k, m or g"));
    let (digits, shift) = match value.to_ascii_lowercase().chars().last() {
        Some('k') => (&value[..value.len() - 1], 10),
        Some('m') => (&value[..value.len() - 1], 20),
        Some('g') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let size = n.checked_mul(1 << shift).ok_or_else(bad)?;
    if size < MIN_SIZE {
        return Err(DriverError::invalid(format!("size {value} is below the smallest cap, 8m")));
    }
    Ok(size)
}

/// `0750`: octal permission bits.
fn parse_mode(value: &str) -> DriverResult<u32> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| DriverError::invalid(format!("invalid mode {value:?}: want octal permission bits")))
}

fn state_of(value: &Value) -> DriverResult<VolumeState> {
    serde_json::from_value(value.clone()).map_err(|e| DriverError::internal(format!("volume state: {e}")))
}

fn to_value(state: &VolumeState) -> DriverResult<Value> {
    serde_json::to_value(state).map_err(|e| DriverError::internal(e.to_string()))
}

impl VolumeDriver for Quota {
    fn name(&self) -> &str {
        "quota"
    }

    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        VolumeState::of(req).map(|_| ())
    }

    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let state = VolumeState::of(&req)?;
        Ok(Outcome::new(state.info(), state.create_plan(), to_value(&state)?))
    }

    fn remove(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let state = state_of(&req.state)?;
        Ok(Outcome::new((), state.create_plan().inverse(), req.state))
    }

    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let state = state_of(&req.state)?;
        Ok(Outcome::new(state.info(), state.mount_plan(), req.state))
    }

    fn unmount(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let state = state_of(&req.state)?;
        Ok(Outcome::new((), state.mount_plan().inverse(), req.state))
    }

    fn path(&self, req: VolumeRequest) -> DriverResult<String> {
        Ok(state_of(&req.state)?.data)
    }

    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        Ok(state_of(&req.state)?.info())
    }
}

export_plugin!(volume Quota);
