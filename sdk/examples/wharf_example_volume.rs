//! An example third-party volume driver: `quota`, a directory per volume, capped on request.
//!
//! Each volume is a directory `VOLUMES/NAME` whose `_data` subdirectory is what sandboxes
//! see. `-o size=64m` caps it: the volume gets a sparse ext4 image, loop-mounted on `_data`
//! while the volume is in use, so writes beyond the size fail with "no space left". `-o
//! mode=0750` sets the permissions of `_data`. It shows a volume driver's whole life:
//! options checked in `validate`, directories and an image made by `create`, a mount, typed
//! private state that carries the settings from call to call, and the SDK's default
//! methods: `remove` and `unmount` are the inverses of `create` and `mount`.
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

impl VolumeDriver for Quota {
    fn name(&self) -> &str {
        "quota"
    }

    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        VolumeState::of(req).map(|_| ())
    }

    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let state = VolumeState::of(&req)?;
        Outcome::with_state(state.info(), state.create_plan(), &state)
    }

    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let state: VolumeState = req.state_as()?;
        Ok(Outcome::new(state.info(), state.mount_plan(), req.state))
    }

    fn path(&self, req: VolumeRequest) -> DriverResult<String> {
        Ok(req.state_as::<VolumeState>()?.data)
    }

    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        Ok(req.state_as::<VolumeState>()?.info())
    }
}

export_plugin!(volume Quota);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::testing::{fixtures, VolumeLifecycle};

    #[test]
    fn a_plain_volume_is_two_directories_and_no_mount() {
        let report = VolumeLifecycle::new(&Quota, fixtures::volume("v", &[("mode", "0750")])).run().unwrap();
        assert_eq!(report.create.response.mountpoint, format!("{}/v/_data", fixtures::VOLUMES_DIR));
        assert!(report.mount.plan.is_empty());
        assert!(report.create.plan.ops().any(|op| matches!(op, Op::DirCreate { mode: Some(0o750), .. })));
    }

    #[test]
    fn a_capped_volume_is_an_image_mounted_while_in_use() {
        let report = VolumeLifecycle::new(&Quota, fixtures::volume("v", &[("size", "64m")])).run().unwrap();
        assert!(report.create.plan.ops().any(|op| matches!(op, Op::ImageCreate { size, .. } if *size == 64 << 20)));
        assert!(matches!(report.mount.plan.steps[0].op(), Op::Mount(m) if m.options == "loop"));
        assert_eq!(report.get.status.get("size"), Some(&Value::from(64u64 << 20)));
        assert_eq!(report.unmount.plan, report.mount.plan.inverse());
    }

    #[test]
    fn bad_options_are_refused_before_anything_is_made() {
        for (key, value, says) in [
            ("size", "1k", "below the smallest cap"),
            ("size", "lots", "invalid size"),
            ("mode", "9", "invalid mode"),
            ("color", "red", "color"),
        ] {
            let err = VolumeLifecycle::new(&Quota, fixtures::volume("v", &[(key, value)])).run().unwrap_err();
            assert!(err.call == "validate" && err.problem.contains(says), "{err}");
        }
    }
}
