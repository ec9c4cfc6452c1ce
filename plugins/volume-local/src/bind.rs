//! The `bind` volume driver: a name for an existing host directory under one of the bases
//! the operator allows (`bind_allowed_bases`).
//!
//! The directory is the mountpoint, so the driver plans nothing; removing the volume leaves
//! the directory and its data alone. The path is checked with symlinks resolved at create
//! and again at every first mount, so a symlink swapped in later cannot lead outside a base.

use crate::state;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use wharf_sdk::{DriverError, DriverResult, DriverState, Outcome, Plan, VolumeDriver, VolumeInfo, VolumeRequest};

const DRIVER: &str = "bind";
/// The one option: the host directory the volume names.
const PATH: &str = "path";

/// A volume driver that names an existing host directory under an allowed base.
#[derive(Debug, Default)]
pub struct BindDriver;

/// What the driver remembers about a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BindState {
    /// The directory, canonical (absolute, symlinks resolved): the mountpoint.
    path: String,
}

impl BindState {
    fn from_request(req: &VolumeRequest) -> DriverResult<BindState> {
        let options = &req.volume.options;
        if let Some(unknown) = options.keys().find(|k| k.as_str() != PATH) {
            return Err(DriverError::unknown_option(DRIVER, unknown));
        }
        let requested = options
            .get(PATH)
            .ok_or_else(|| DriverError::invalid_option(PATH, "is required: the host directory the volume names"))?;
        Ok(BindState { path: allowed_dir(requested, &req.facts.bind_allowed_bases)? })
    }

    fn info(&self) -> VolumeInfo {
        VolumeInfo { mountpoint: self.path.clone(), status: Default::default() }
    }
}

/// The canonical form of `requested` if it is an existing directory under one of `bases`
/// once every symlink in both is resolved; an error names the `path` option and says why not.
fn allowed_dir(requested: &str, bases: &[String]) -> DriverResult<String> {
    let refuse = |reason: String| DriverError::invalid_option(PATH, reason);
    if bases.is_empty() {
        return Err(refuse("the operator allows no base directories for bind volumes".into()));
    }
    let path = Path::new(requested);
    if !path.is_absolute() {
        return Err(refuse(format!("{requested:?} is not an absolute path")));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(refuse(format!("{requested:?} contains a \"..\" component")));
    }
    let canonical = fs::canonicalize(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => refuse(format!("{requested} does not exist")),
        _ => refuse(format!("cannot resolve {requested}: {e}")),
    })?;
    if !canonical.is_dir() {
        return Err(refuse(format!("{requested} is not a directory")));
    }
    let canonical_bases: Vec<PathBuf> =
        bases.iter().filter(|b| Path::new(b).is_absolute()).filter_map(|b| fs::canonicalize(b).ok()).collect();
    // `Path::starts_with` compares whole components: /srv/database is not under /srv/data.
    if !canonical_bases.iter().any(|base| canonical.starts_with(base)) {
        let shown = if canonical == path {
            requested.to_string()
        } else {
            format!("{requested} (which resolves to {})", canonical.display())
        };
        return Err(refuse(format!("{shown} is not under an allowed base directory ({})", bases.join(", "))));
    }
    canonical.into_os_string().into_string().map_err(|p| refuse(format!("{} is not UTF-8", p.to_string_lossy())))
}

impl VolumeDriver for BindDriver {
    fn name(&self) -> &str {
        DRIVER
    }

    fn validate(&self, req: &VolumeRequest) -> DriverResult<()> {
        BindState::from_request(req).map(|_| ())
    }

    fn create(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let volume = BindState::from_request(&req)?;
        Ok(Outcome::new(volume.info(), Plan::new(), state::encode(&volume)?))
    }

    fn remove(&self, _req: VolumeRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::new((), Plan::new(), DriverState::null()))
    }

    fn mount(&self, req: VolumeRequest) -> DriverResult<Outcome<VolumeInfo>> {
        let volume: BindState = state::decode(DRIVER, &req)?;
        let now = allowed_dir(&volume.path, &req.facts.bind_allowed_bases)?;
        if now != volume.path {
            return Err(DriverError::forbidden(format!(
                "bind volume {:?}: {} now resolves to {now}; remove and create the volume again to use it",
                req.volume.name, volume.path
            )));
        }
        Ok(Outcome::new(volume.info(), Plan::new(), req.state))
    }

    fn unmount(&self, req: VolumeRequest) -> DriverResult<Outcome<()>> {
        Ok(Outcome::new((), Plan::new(), req.state))
    }

    fn path(&self, req: VolumeRequest) -> DriverResult<String> {
        let volume: BindState = state::decode(DRIVER, &req)?;
        Ok(volume.path)
    }

    fn get(&self, req: VolumeRequest) -> DriverResult<VolumeInfo> {
        let volume: BindState = state::decode(DRIVER, &req)?;
        Ok(volume.info())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;
    use wharf_sdk::HostFacts;

    /// A temporary host: `<tmp>/data` is the allowed base, `<tmp>/outside` is not.
    struct Host {
        tmp: TempDir,
    }

    impl Host {
        fn new() -> Host {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir_all(tmp.path().join("data/app")).unwrap();
            fs::create_dir_all(tmp.path().join("outside")).unwrap();
            Host { tmp }
        }

        /// `rel` under the temporary host, as a string.
        fn at(&self, rel: &str) -> String {
            fs::canonicalize(self.tmp.path()).unwrap().join(rel).to_str().unwrap().to_string()
        }

        fn request(&self, path: &str) -> VolumeRequest {
            let mut req = VolumeRequest {
                facts: HostFacts { bind_allowed_bases: vec![self.at("data")], ..Default::default() },
                ..Default::default()
            };
            req.volume.name = "v".into();
            req.volume.options.insert(PATH.into(), path.into());
            req
        }

        fn refused(&self, path: &str) -> DriverError {
            let req = self.request(path);
            let err = BindDriver.validate(&req).unwrap_err();
            assert_eq!(BindDriver.create(req).unwrap_err(), err, "create and validate disagree");
            assert_eq!(err.option.as_deref(), Some(PATH));
            err
        }
    }

    #[test]
    fn a_directory_under_a_base_is_its_own_mountpoint() {
        let host = Host::new();
        let mut req = host.request(&host.at("data/app"));
        let out = BindDriver.create(req.clone()).unwrap();
        assert_eq!(out.response.mountpoint, host.at("data/app"));
        assert!(out.plan.is_empty());
        req.state = out.state;
        let mounted = BindDriver.mount(req.clone()).unwrap();
        assert!(mounted.plan.is_empty());
        assert_eq!(mounted.response.mountpoint, host.at("data/app"));
        assert!(BindDriver.unmount(req.clone()).unwrap().plan.is_empty());
        assert_eq!(BindDriver.path(req.clone()).unwrap(), host.at("data/app"));
        assert!(BindDriver.remove(req).unwrap().plan.is_empty(), "removal never touches the data");
        assert!(Path::new(&host.at("data/app")).is_dir());
    }

    #[test]
    fn the_base_itself_may_be_named() {
        let host = Host::new();
        assert!(BindDriver.validate(&host.request(&host.at("data"))).is_ok());
    }

    #[test]
    fn a_path_outside_every_base_is_refused() {
        let host = Host::new();
        let err = host.refused(&host.at("outside"));
        assert!(err.message.contains("not under an allowed base"), "{err}");
    }

    #[test]
    fn a_dot_dot_component_is_refused_even_when_it_stays_inside() {
        let host = Host::new();
        let err = host.refused(&format!("{}/../data/app", host.at("data/app")));
        assert!(err.message.contains(".."), "{err}");
    }

    #[test]
    fn a_symlink_escaping_a_base_is_refused() {
        let host = Host::new();
        symlink(host.at("outside"), host.at("data/escape")).unwrap();
        let err = host.refused(&host.at("data/escape"));
        assert!(err.message.contains(&format!("resolves to {}", host.at("outside"))), "{err}");
    }

    #[test]
    fn a_symlink_within_a_base_records_its_target() {
        let host = Host::new();
        symlink(host.at("data/app"), host.at("data/alias")).unwrap();
        let out = BindDriver.create(host.request(&host.at("data/alias"))).unwrap();
        assert_eq!(out.response.mountpoint, host.at("data/app"));
        assert_eq!(out.state, serde_json::json!({ "path": host.at("data/app") }));
    }

    #[test]
    fn a_base_given_through_a_symlink_is_resolved_too() {
        let host = Host::new();
        symlink(host.at("data"), host.at("data-link")).unwrap();
        let mut req = host.request(&host.at("data/app"));
        req.facts.bind_allowed_bases = vec![host.at("data-link")];
        assert!(BindDriver.validate(&req).is_ok());
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let host = Host::new();
        fs::write(host.at("data/file"), b"x").unwrap();
        let err = host.refused(&host.at("data/file"));
        assert!(err.message.contains("is not a directory"), "{err}");
    }

    #[test]
    fn a_missing_path_is_refused() {
        let host = Host::new();
        let err = host.refused(&host.at("data/missing"));
        assert!(err.message.contains("does not exist"), "{err}");
    }

    #[test]
    fn no_bases_means_no_bind_volumes() {
        let host = Host::new();
        let mut req = host.request(&host.at("data/app"));
        req.facts.bind_allowed_bases.clear();
        let err = BindDriver.validate(&req).unwrap_err();
        assert!(err.message.contains("allows no base directories"), "{err}");
    }

    #[test]
    fn a_shared_prefix_is_not_a_parent() {
        let host = Host::new();
        fs::create_dir(host.at("database")).unwrap();
        let err = host.refused(&host.at("database"));
        assert!(err.message.contains("not under an allowed base"), "{err}");
    }

    #[test]
    fn a_relative_path_is_refused() {
        let host = Host::new();
        let err = host.refused("data/app");
        assert!(err.message.contains("not an absolute path"), "{err}");
    }

    #[test]
    fn path_is_the_only_option_and_it_is_required() {
        let host = Host::new();
        let mut req = host.request(&host.at("data/app"));
        req.volume.options.insert("readonly".into(), "true".into());
        assert_eq!(BindDriver.validate(&req).unwrap_err().option.as_deref(), Some("readonly"));
        req.volume.options.clear();
        let err = BindDriver.validate(&req).unwrap_err();
        assert_eq!(err.option.as_deref(), Some(PATH));
        assert!(err.message.contains("required"), "{err}");
    }

    #[test]
    fn mounting_checks_the_path_again() {
        let host = Host::new();
        let mut req = host.request(&host.at("data/app"));
        req.state = BindDriver.create(req.clone()).unwrap().state;
        fs::remove_dir(host.at("data/app")).unwrap();
        symlink(host.at("outside"), host.at("data/app")).unwrap();
        let err = BindDriver.mount(req.clone()).unwrap_err();
        assert!(err.message.contains("not under an allowed base"), "{err}");

        fs::remove_file(host.at("data/app")).unwrap();
        fs::create_dir(host.at("data/real")).unwrap();
        symlink(host.at("data/real"), host.at("data/app")).unwrap();
        let err = BindDriver.mount(req).unwrap_err();
        assert_eq!(err.kind, wharf_sdk::ErrorKind::Forbidden);
        assert!(err.message.contains("now resolves to"), "{err}");
    }
}
