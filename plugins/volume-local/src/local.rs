//! The `local` volume driver: Docker's local driver semantics.
//!
//! Every volume lives in `<volumes_dir>/<name>`, and its data in `<volumes_dir>/<name>/_data`,
//! the mountpoint. What holds the data is the volume's [`Backing`]:
//! - no options: the data directory itself;
//! - `type`, `device` and `o`: a filesystem mounted on the data directory at first mount and
//!   unmounted at last unmount (tmpfs, a bind mount, ext4 or xfs on a device or image, nfs, cifs);
//! - `size` without `type`: a sparse ext4 image, loop-mounted, so the limit holds on any
//!   backing filesystem.
//!
//! `uid`, `gid` and `mode` set the data directory's ownership and mode; on a mounted volume
//! they are applied to the mounted filesystem's root after each mount.

use crate::{parse, state};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use wharf_sdk::{
    DriverError, DriverResult, HostFacts, Op, Outcome, Plan, Step, VolumeDriver, VolumeInfo, VolumeRequest,
};

const DRIVER: &str = "local";
/// The options the driver knows.
const OPTIONS: [&str; 7] = ["type", "device", "o", "size", "uid", "gid", "mode"];
/// The data directory inside a volume's directory.
const DATA_DIR: &str = "_data";
/// The image file of a size-limited volume, inside its directory.
const IMAGE_FILE: &str = "disk.img";
/// The filesystem made in the image of a size-limited volume.
const IMAGE_FSTYPE: &str = "ext4";
/// The volume directory's mode: others may pass through to `_data`, not list volumes' files.
const VOLUME_DIR_MODE: u32 = 0o701;
/// The data directory's mode when `mode` is not given.
const DATA_DIR_MODE: u32 = 0o755;
/// The smallest size limit: an ext4 filesystem needs a few MiB for its own metadata.
const MIN_IMAGE_SIZE: u64 = 8 << 20;

/// Docker's `local` volume driver: volumes under the host's volumes directory.
#[derive(Debug, Default)]
pub struct LocalDriver;

/// The ownership and mode asked for the data directory; unset fields are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
struct Permissions {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl Permissions {
    fn is_set(&self) -> bool {
        self.mode.is_some() || self.uid.is_some() || self.gid.is_some()
    }
}

/// What holds a volume's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Backing {
    /// The data directory itself.
    Directory,
    /// A filesystem the user named with `type`, `device` and `o`, mounted on the data directory.
    Mount { source: String, fstype: String, options: String },
    /// A sparse ext4 image of `size` bytes at `image`, loop-mounted on the data directory.
    Image { image: String, size: u64 },
}

/// What the driver remembers about a volume: its paths and its parsed options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LocalState {
    /// `<volumes_dir>/<name>`.
    volume_dir: String,
    /// `<volumes_dir>/<name>/_data`, the mountpoint.
    data_dir: String,
    #[serde(default)]
    permissions: Permissions,
    backing: Backing,
}

impl LocalState {
    /// Check the request's options and decide the volume's paths and backing.
    fn from_request(req: &VolumeRequest) -> DriverResult<LocalState> {
        let options = &req.volume.options;
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(DriverError::unknown_option(DRIVER, unknown));
        }
        let permissions = Permissions {
            mode: parsed(options, "mode", parse::mode)?,
            uid: parsed(options, "uid", parse::id)?,
            gid: parsed(options, "gid", parse::id)?,
        };
        let volume_dir = volume_dir(&req.facts, &req.volume.name)?;
        let backing = backing(options, &volume_dir, &req.facts)?;
        Ok(LocalState { data_dir: format!("{volume_dir}/{DATA_DIR}"), volume_dir, permissions, backing })
    }

    /// Make the volume's directories and, for a size-limited volume, its image.
    fn create_plan(&self) -> Plan {
        let mut plan = Plan::new();
        plan.push(Step::dir_create(&self.volume_dir, Some(VOLUME_DIR_MODE), None, None));
        let Permissions { mode, uid, gid } = self.permissions;
        plan.push(Step::dir_create(&self.data_dir, Some(mode.unwrap_or(DATA_DIR_MODE)), uid, gid));
        if let Backing::Image { image, size } = &self.backing {
            plan.push(Step::new(
                Op::ImageCreate { path: image.clone(), size: *size, fstype: IMAGE_FSTYPE.into() },
                Op::FileRemove { path: image.clone() },
            ));
        }
        plan
    }

    /// The mount that puts the backing filesystem on the data directory, if there is one.
    fn mount_step(&self) -> Option<Step> {
        match &self.backing {
            Backing::Directory => None,
            Backing::Mount { source, fstype, options } => Some(Step::mount(source, &self.data_dir, fstype, options)),
            Backing::Image { image, .. } => Some(Step::mount(image, &self.data_dir, IMAGE_FSTYPE, "loop")),
        }
    }

    /// Mount the backing filesystem and give its root the ownership and mode asked for.
    fn mount_plan(&self) -> Plan {
        let Some(mount) = self.mount_step() else { return Plan::new() };
        let mut plan = Plan::new();
        plan.push(mount);
        if self.permissions.is_set() {
            let Permissions { mode, uid, gid } = self.permissions;
            // Unmounting takes this away with the filesystem, so there is nothing to undo; a
            // directory removal here would delete the volume's data.
            plan.push(Step::new(Op::DirCreate { path: self.data_dir.clone(), mode, uid, gid }, Op::Noop));
        }
        plan
    }

    /// Unmount the backing filesystem; undone by mounting it again.
    fn unmount_plan(&self) -> Plan {
        self.mount_step().map(|mount| mount.inverse()).into_iter().collect()
    }

    /// Take away what the create plan made, last first: the image, the data directory and
    /// everything in it, the volume's directory. Each removal is the very undo of its create
    /// step, so core leaves out those whose object stood there before the volume (see
    /// `without_found` in core). Removed data cannot come back: the steps have no undo.
    fn remove_plan(&self) -> Plan {
        let mut plan = Plan::new();
        if self.mount_step().is_some() {
            // Core removes only volumes nobody uses, so nothing should be mounted; make sure,
            // so the removal never reaches into a share, a bind source or a device.
            plan.push(Step::new(Op::Unmount { target: self.data_dir.clone() }, Op::Noop));
        }
        for made in self.create_plan().steps.into_iter().rev() {
            plan.push(Step::new(made.into_parts().1, Op::Noop));
        }
        plan
    }

    /// The mountpoint, and what backs it for inspect. Mount options are left out: they may
    /// hold a password.
    fn info(&self) -> VolumeInfo {
        let status: BTreeMap<String, Value> = match &self.backing {
            Backing::Directory => BTreeMap::new(),
            Backing::Mount { source, fstype, .. } => {
                BTreeMap::from([("type".into(), fstype.as_str().into()), ("device".into(), source.as_str().into())])
            }
            Backing::Image { size, .. } => {
                BTreeMap::from([("type".into(), IMAGE_FSTYPE.into()), ("size".into(), (*size).into())])
            }
        };
        VolumeInfo { mountpoint: self.data_dir.clone(), status }
    }
}

/// The value of option `key`, parsed; an error names the option.
fn parsed<T>(
    options: &BTreeMap<String, String>,
    key: &str,
    parse: fn(&str) -> Result<T, String>,
) -> DriverResult<Option<T>> {
    options.get(key).map(|value| parse(value).map_err(|reason| DriverError::invalid_option(key, reason))).transpose()
}

/// `<volumes_dir>/<name>`, refusing a name that would lead anywhere else.
fn volume_dir(facts: &HostFacts, name: &str) -> DriverResult<String> {
    if !Path::new(&facts.volumes_dir).is_absolute() {
        return Err(DriverError::internal(format!(
            "the volumes directory {:?} is not an absolute path",
            facts.volumes_dir
        )));
    }
    if name.is_empty() || name == "." || name.contains(['/', '\0']) || name.contains("..") {
        return Err(DriverError::invalid(format!("volume name {name:?} cannot name a directory")));
    }
    Ok(format!("{}/{name}", facts.volumes_dir.trim_end_matches('/')))
}

/// Decide what holds the volume's data from `type`, `device`, `o` and `size`.
fn backing(options: &BTreeMap<String, String>, volume_dir: &str, facts: &HostFacts) -> DriverResult<Backing> {
    let size = parsed(options, "size", parse::size)?;
    let Some(fstype) = options.get("type") else {
        if let Some(o) = options.get("o") {
            let reason = format!("o={} is given without type and device", parse::mask_secrets(o));
            return Err(DriverError::invalid_option("o", reason));
        }
        if options.contains_key("device") {
            return Err(DriverError::invalid_option("device", "is given without type"));
        }
        return match (size, options.get("size")) {
            (Some(size), Some(given)) => {
                parse::image_size(size, facts.volumes_max_file_size)
                    .map_err(|reason| DriverError::invalid_option("size", reason))?;
                image_backing(size, given, volume_dir)
            }
            _ => Ok(Backing::Directory),
        };
    };
    parse::fstype(fstype).map_err(|reason| DriverError::invalid_option("type", reason))?;
    let source = match options.get("device").filter(|d| !d.is_empty()) {
        Some(device) => device.clone(),
        None if fstype == "tmpfs" => "tmpfs".into(),
        None => return Err(DriverError::invalid_option("device", format!("is required with type={fstype}"))),
    };
    let mut mount_options = options.get("o").cloned().unwrap_or_default();
    let elements = parse::mount_options(&mount_options).map_err(|reason| DriverError::invalid_option("o", reason))?;
    if fstype == "tmpfs" {
        parse::tmpfs_options(&elements).map_err(|reason| DriverError::invalid_option("o", reason))?;
    }
    let bind = elements.iter().any(|e| e == "bind" || e == "rbind");
    if fstype == "none" && !bind {
        let reason = format!("type=none mounts nothing without bind in o (o={})", parse::mask_secrets(&mount_options));
        return Err(DriverError::invalid_option("o", reason));
    }
    if bind && !Path::new(&source).is_absolute() {
        return Err(DriverError::invalid_option(
            "device",
            format!("a bind mount needs an absolute path, not {source:?}"),
        ));
    }
    if let Some(size) = size {
        if fstype != "tmpfs" {
            let reason = format!("applies without type or with type=tmpfs, not with type={fstype}");
            return Err(DriverError::invalid_option("size", reason));
        }
        if elements.iter().any(|e| e.starts_with("size=")) {
            return Err(DriverError::invalid_option("size", "is given twice: as an option and as size= in o"));
        }
        if !mount_options.is_empty() {
            mount_options.push(',');
        }
        mount_options.push_str(&format!("size={size}"));
    }
    Ok(Backing::Mount { source, fstype: fstype.clone(), options: mount_options })
}

/// A size-limited volume: `size` bytes (the user wrote `given`) of ext4 in an image file.
fn image_backing(size: u64, given: &str, volume_dir: &str) -> DriverResult<Backing> {
    if size < MIN_IMAGE_SIZE {
        let reason = format!(
            "{given:?} is below the smallest size limit, {}M: the ext4 filesystem that holds the limit needs room for its own metadata",
            MIN_IMAGE_SIZE >> 20
        );
        return Err(DriverError::invalid_option("size", reason));
    }
    Ok(Backing::Image { image: format!("{volume_dir}/{IMAGE_FILE}"), size })
}

impl VolumeDriver for LocalDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        LocalState::from_request(req).map(|_| ())
    }

    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let volume = LocalState::from_request(&req)?;
        Ok(Outcome::new(volume.info(), volume.create_plan(), state::encode(&volume)?))
    }

    fn remove(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let volume: LocalState = state::decode(DRIVER, &req)?;
        Ok(Outcome::new((), volume.remove_plan(), Value::Null))
    }

    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let volume: LocalState = state::decode(DRIVER, &req)?;
        Ok(Outcome::new(volume.info(), volume.mount_plan(), req.state))
    }

    fn unmount(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        let volume: LocalState = state::decode(DRIVER, &req)?;
        Ok(Outcome::new((), volume.unmount_plan(), req.state))
    }

    fn path(&self, req: VolumeRequest) -> DriverResult<String> {
        let volume: LocalState = state::decode(DRIVER, &req)?;
        Ok(volume.data_dir)
    }

    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        let volume: LocalState = state::decode(DRIVER, &req)?;
        Ok(volume.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::ErrorKind;

    const VOLUMES: &str = "/var/lib/wharf/volumes";

    fn request(name: &str, options: &[(&str, &str)]) -> VolumeRequest {
        VolumeRequest {
            volume: wharf_sdk::VolumeSpec {
                name: name.into(),
                options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            },
            facts: HostFacts { volumes_dir: VOLUMES.into(), ..Default::default() },
            ..Default::default()
        }
    }

    /// Create a volume, then hand its state back the way core does on later calls.
    fn created(name: &str, options: &[(&str, &str)]) -> (Outcome<VolumeInfo>, VolumeRequest) {
        let mut req = request(name, options);
        let out = LocalDriver.create(req.clone()).unwrap();
        req.state = out.state.clone();
        (out, req)
    }

    fn rejected(options: &[(&str, &str)]) -> wharf_sdk::DriverError {
        let req = request("v", options);
        let err = LocalDriver.validate(&req).unwrap_err();
        assert_eq!(LocalDriver.create(req).unwrap_err(), err, "create and validate disagree");
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        err
    }

    fn dir(path: &str, mode: u32, uid: Option<u32>, gid: Option<u32>) -> Op {
        Op::DirCreate { path: path.into(), mode: Some(mode), uid, gid }
    }

    fn mount(source: &str, fstype: &str, options: &str) -> Op {
        Op::mount(source, format!("{VOLUMES}/v/_data"), fstype, options)
    }

    fn unmount() -> Op {
        Op::Unmount { target: format!("{VOLUMES}/v/_data") }
    }

    #[test]
    fn a_plain_volume_is_two_directories() {
        let (out, req) = created("web", &[]);
        assert_eq!(out.response.mountpoint, "/var/lib/wharf/volumes/web/_data");
        assert!(out.response.status.is_empty());
        assert_eq!(
            out.plan.steps,
            vec![
                Step::dir_create("/var/lib/wharf/volumes/web", Some(0o701), None, None),
                Step::dir_create("/var/lib/wharf/volumes/web/_data", Some(0o755), None, None),
            ]
        );
        assert!(LocalDriver.mount(req.clone()).unwrap().plan.is_empty());
        assert!(LocalDriver.unmount(req.clone()).unwrap().plan.is_empty());
        assert_eq!(LocalDriver.path(req.clone()).unwrap(), "/var/lib/wharf/volumes/web/_data");
        assert_eq!(LocalDriver.get(req.clone()).unwrap(), out.response);
        let removed = LocalDriver.remove(req).unwrap();
        let gone = |path: &str| Step::new(Op::DirRemove { path: path.into() }, Op::Noop);
        assert_eq!(
            removed.plan.steps,
            vec![gone("/var/lib/wharf/volumes/web/_data"), gone("/var/lib/wharf/volumes/web")],
            "each removal is the undo of a create step, so core can leave what was found"
        );
    }

    #[test]
    fn uid_gid_and_mode_apply_to_the_data_directory() {
        for mode in ["0750", "750"] {
            let (out, req) = created("v", &[("uid", "1000"), ("gid", "100"), ("mode", mode)]);
            assert_eq!(*out.plan.steps[1].op(), dir(&format!("{VOLUMES}/v/_data"), 0o750, Some(1000), Some(100)));
            assert!(LocalDriver.mount(req).unwrap().plan.is_empty());
        }
        assert_eq!(rejected(&[("mode", "0999")]).option.as_deref(), Some("mode"));
        assert_eq!(rejected(&[("uid", "-1")]).option.as_deref(), Some("uid"));
        assert_eq!(rejected(&[("gid", "staff")]).option.as_deref(), Some("gid"));
    }

    #[test]
    fn tmpfs_is_mounted_at_first_mount_and_unmounted_at_last() {
        let (out, req) = created("v", &[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=64m,uid=1000,mode=0755")]);
        assert_eq!(out.plan.steps.len(), 2, "nothing is mounted at create");
        assert_eq!(out.response.status["type"], "tmpfs");
        let mounted = LocalDriver.mount(req.clone()).unwrap();
        assert_eq!(
            mounted.plan.steps,
            vec![Step::new(mount("tmpfs", "tmpfs", "size=64m,uid=1000,mode=0755"), unmount())]
        );
        assert_eq!(mounted.response.mountpoint, format!("{VOLUMES}/v/_data"));
        let unmounted = LocalDriver.unmount(req.clone()).unwrap();
        assert_eq!(
            unmounted.plan.steps,
            vec![Step::new(unmount(), mount("tmpfs", "tmpfs", "size=64m,uid=1000,mode=0755"))]
        );
        let removed = LocalDriver.remove(req).unwrap();
        assert_eq!(removed.plan.steps[0], Step::new(unmount(), Op::Noop), "never remove into a mounted filesystem");
        assert_eq!(*removed.plan.steps[1].op(), Op::DirRemove { path: format!("{VOLUMES}/v/_data") });
        assert_eq!(*removed.plan.steps[2].op(), Op::DirRemove { path: format!("{VOLUMES}/v") });
    }

    #[test]
    fn tmpfs_needs_no_device_and_takes_size_as_an_option() {
        let (_, req) = created("v", &[("type", "tmpfs"), ("size", "64M")]);
        let plan = LocalDriver.mount(req).unwrap().plan;
        assert_eq!(*plan.steps[0].op(), mount("tmpfs", "tmpfs", "size=67108864"));

        let (_, req) = created("v", &[("type", "tmpfs"), ("o", "mode=1777"), ("size", "1g")]);
        let plan = LocalDriver.mount(req).unwrap().plan;
        assert_eq!(*plan.steps[0].op(), mount("tmpfs", "tmpfs", "mode=1777,size=1073741824"));

        let err = rejected(&[("type", "tmpfs"), ("o", "size=1g"), ("size", "1g")]);
        assert_eq!(err.option.as_deref(), Some("size"));
    }

    #[test]
    fn uid_gid_and_mode_apply_to_a_mounted_root_after_mounting() {
        let (out, req) = created("v", &[("type", "tmpfs"), ("uid", "1000"), ("mode", "0700")]);
        assert_eq!(*out.plan.steps[1].op(), dir(&format!("{VOLUMES}/v/_data"), 0o700, Some(1000), None));
        let plan = LocalDriver.mount(req).unwrap().plan;
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(*plan.steps[0].op(), mount("tmpfs", "tmpfs", ""));
        assert_eq!(plan.steps[1], Step::new(dir(&format!("{VOLUMES}/v/_data"), 0o700, Some(1000), None), Op::Noop));
    }

    #[test]
    fn a_bind_type_mounts_an_absolute_path() {
        let (out, req) = created("v", &[("type", "none"), ("o", "bind"), ("device", "/srv/shared")]);
        assert_eq!(out.response.status["device"], "/srv/shared");
        let plan = LocalDriver.mount(req).unwrap().plan;
        assert_eq!(plan.steps, vec![Step::new(mount("/srv/shared", "none", "bind"), unmount())]);

        let err = rejected(&[("type", "none"), ("o", "bind"), ("device", "srv/shared")]);
        assert_eq!(err.option.as_deref(), Some("device"));
        assert!(err.message.contains("absolute"), "{err}");
        let err = rejected(&[("type", "none"), ("o", "ro"), ("device", "/srv/shared")]);
        assert_eq!(err.option.as_deref(), Some("o"));
        assert!(err.message.contains("bind"), "{err}");
    }

    #[test]
    fn ext4_mounts_a_device_or_an_image() {
        let (_, req) = created("v", &[("type", "ext4"), ("device", "/dev/sdb1")]);
        assert_eq!(*LocalDriver.mount(req).unwrap().plan.steps[0].op(), mount("/dev/sdb1", "ext4", ""));

        let (out, req) = created("v", &[("type", "ext4"), ("device", "/srv/img/v.img"), ("o", "loop,noatime")]);
        assert_eq!(out.plan.steps.len(), 2, "a user's image is theirs, not made here");
        assert_eq!(
            *LocalDriver.mount(req).unwrap().plan.steps[0].op(),
            mount("/srv/img/v.img", "ext4", "loop,noatime")
        );
    }

    #[test]
    fn network_filesystem_options_pass_through_as_given() {
        let nfs = "addr=10.0.0.1,rw,nfsvers=4,soft";
        let (out, req) = created("v", &[("type", "nfs"), ("device", ":/export/v"), ("o", nfs)]);
        assert_eq!(*LocalDriver.mount(req).unwrap().plan.steps[0].op(), mount(":/export/v", "nfs", nfs));
        assert!(!out.response.status.contains_key("o"));

        let cifs = "addr=10.0.0.2,username=bob,password=hunter2,vers=3.0";
        let (out, req) = created("v", &[("type", "cifs"), ("device", "//10.0.0.2/share"), ("o", cifs)]);
        assert_eq!(*LocalDriver.mount(req).unwrap().plan.steps[0].op(), mount("//10.0.0.2/share", "cifs", cifs));
        assert!(!serde_json::to_string(&out.response).unwrap().contains("hunter2"), "inspect shows no password");
    }

    #[test]
    fn errors_never_show_a_password() {
        let o = "username=bob,password=hunter2,pass=also";
        let err = rejected(&[("o", o), ("device", "//host/share")]);
        assert_eq!(err.option.as_deref(), Some("o"));
        assert!(err.message.contains("password=***") && err.message.contains("pass=***"), "{err}");
        assert!(!err.message.contains("hunter2") && !err.message.contains("also"), "{err}");

        let err = rejected(&[("type", "none"), ("device", "/srv/x"), ("o", "ro,password=hunter2")]);
        assert!(!err.message.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_size_makes_a_loop_mounted_ext4_image() {
        let (out, req) = created("v", &[("size", "10M")]);
        let image = format!("{VOLUMES}/v/disk.img");
        assert_eq!(
            out.plan.steps[2],
            Step::new(
                Op::ImageCreate { path: image.clone(), size: 10 << 20, fstype: "ext4".into() },
                Op::FileRemove { path: image.clone() }
            )
        );
        assert_eq!(out.response.status["type"], "ext4");
        assert_eq!(out.response.status["size"], 10u64 << 20);
        let plan = LocalDriver.mount(req.clone()).unwrap().plan;
        assert_eq!(plan.steps, vec![Step::new(mount(&image, "ext4", "loop"), unmount())]);
        let plan = LocalDriver.unmount(req.clone()).unwrap().plan;
        assert_eq!(plan.steps, vec![Step::new(unmount(), mount(&image, "ext4", "loop"))]);
        let plan = LocalDriver.remove(req).unwrap().plan;
        assert_eq!(*plan.steps[1].op(), Op::FileRemove { path: image });
        assert_eq!(plan.ops().last(), Some(&Op::DirRemove { path: format!("{VOLUMES}/v") }));
    }

    #[test]
    fn a_sized_volume_with_an_owner_gets_it_after_mounting() {
        let (_, req) = created("v", &[("size", "1G"), ("uid", "1000"), ("gid", "1000")]);
        let plan = LocalDriver.mount(req).unwrap().plan;
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(
            plan.steps[1],
            Step::new(
                Op::DirCreate { path: format!("{VOLUMES}/v/_data"), mode: None, uid: Some(1000), gid: Some(1000) },
                Op::Noop
            )
        );
    }

    #[test]
    fn bad_sizes_are_refused_naming_size() {
        for size in ["ten", "10X", "0", "1M", "512k"] {
            let err = rejected(&[("size", size)]);
            assert_eq!(err.option.as_deref(), Some("size"), "{size}");
        }
        assert!(rejected(&[("size", "1M")]).message.contains("smallest size limit, 8M"));
        let err = rejected(&[("type", "ext4"), ("device", "/dev/sdb1"), ("size", "1G")]);
        assert!(err.message.contains("type=tmpfs"), "{err}");
    }

    #[test]
    fn unknown_options_are_refused() {
        let err = rejected(&[("sise", "10M")]);
        assert_eq!(err.option.as_deref(), Some("sise"));
        assert!(err.message.contains("\"local\""), "{err}");
    }

    #[test]
    fn type_device_and_o_go_together() {
        assert_eq!(rejected(&[("o", "size=10m")]).option.as_deref(), Some("o"));
        assert_eq!(rejected(&[("device", "/dev/sdb1")]).option.as_deref(), Some("device"));
        assert_eq!(rejected(&[("type", "ext4")]).option.as_deref(), Some("device"));
        assert_eq!(rejected(&[("type", "nfs"), ("o", "addr=10.0.0.1")]).option.as_deref(), Some("device"));
        assert_eq!(rejected(&[("type", "ext4,loop"), ("device", "/dev/sdb1")]).option.as_deref(), Some("type"));
    }

    #[test]
    fn names_that_leave_the_volumes_directory_are_refused() {
        for name in ["../etc", "a/b", "..", ".", ""] {
            let err = LocalDriver.validate(&request(name, &[])).unwrap_err();
            assert!(err.message.contains("cannot name a directory"), "{name}: {err}");
        }
        let mut req = request("v", &[]);
        req.facts.volumes_dir = String::new();
        assert_eq!(LocalDriver.create(req).unwrap_err().kind, ErrorKind::Internal);
    }

    #[test]
    fn later_calls_use_the_stored_state_not_the_options() {
        let (_, mut req) = created("v", &[("type", "tmpfs"), ("o", "size=1m")]);
        req.volume.options.clear();
        req.facts.volumes_dir = "/elsewhere".into();
        let mounted = LocalDriver.mount(req.clone()).unwrap();
        assert_eq!(*mounted.plan.steps[0].op(), mount("tmpfs", "tmpfs", "size=1m"));
        assert_eq!(mounted.state, req.state);
        assert_eq!(LocalDriver.path(req).unwrap(), format!("{VOLUMES}/v/_data"));

        let err = LocalDriver.mount(request("v", &[])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("\"v\""), "{err}");
    }
}
