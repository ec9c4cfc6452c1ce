//! wharf-volume-local: the `local` and `bind` volume drivers, shipped as one plugin library.
//!
//! [`LocalDriver`] keeps each volume under the host's volumes directory, the way Docker's
//! `local` driver does: a plain directory, a filesystem the user names with `type`, `device`
//! and `o` (tmpfs, bind, ext4 on a device, nfs, cifs, ...), or a size-limited ext4 image.
//! [`BindDriver`] gives a name to an existing host directory under a base the operator allows.
//!
//! Both drivers only decide: they return plans of directory, image and mount operations,
//! and core carries them out. The only thing they touch is the filesystem, read-only, to
//! check a bind path.

#![warn(missing_docs)]

mod bind;
mod local;
mod parse;
mod state;

pub use bind::BindDriver;
pub use local::LocalDriver;

wharf_sdk::export_plugin!(volume LocalDriver, volume BindDriver);

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_sdk::abi::{Driver, Exported, PluginClient, PluginTable, TableDriver, KIND_VOLUME};
    use wharf_sdk::{HostFacts, VolumeDriver, VolumeRequest, VolumeSpec};

    fn expected_drivers() -> Vec<TableDriver> {
        vec![
            TableDriver { name: "local".into(), kind: KIND_VOLUME },
            TableDriver { name: "bind".into(), kind: KIND_VOLUME },
        ]
    }

    #[test]
    fn both_drivers_answer_through_the_c_abi() {
        let exported: &'static Exported =
            Box::leak(Exported::new(vec![Driver::volume(LocalDriver), Driver::volume(BindDriver)]));
        // SAFETY: the export is leaked, so its table lives for the rest of the test process.
        let table: &'static PluginTable = unsafe { &*exported.table() };
        // SAFETY: the table was built by this SDK's `Exported`, of its own ABI version.
        let drivers = unsafe { PluginClient::drivers(table) }.unwrap();
        assert_eq!(drivers, expected_drivers());

        // SAFETY: index 0 is below the table's driver count of 2.
        let local = unsafe { PluginClient::new(table, 0, "local".into()) };
        let req = VolumeRequest {
            volume: VolumeSpec { name: "web".into(), ..Default::default() },
            facts: HostFacts { volumes_dir: "/var/lib/wharf/volumes".into(), ..Default::default() },
            ..Default::default()
        };
        let created = VolumeDriver::create(&local, req).unwrap();
        assert_eq!(created.response.mountpoint, "/var/lib/wharf/volumes/web/_data");
        assert_eq!(created.plan.steps.len(), 2);

        // SAFETY: index 1 is below the table's driver count of 2.
        let bind = unsafe { PluginClient::new(table, 1, "bind".into()) };
        let mut req = VolumeRequest::default();
        req.volume.options.insert("path".into(), "/srv/data".into());
        let err = VolumeDriver::validate(&bind, &req).unwrap_err();
        assert_eq!(err.option.as_deref(), Some("path"));
    }

    #[test]
    fn the_exported_symbol_lists_both_drivers() {
        // SAFETY: `wharf_plugin_v1` returns a table that lives for the rest of the process.
        let table: &'static PluginTable = unsafe { &*wharf_plugin_v1() };
        // SAFETY: the table comes from this crate's `export_plugin!`, of the SDK's ABI version.
        let drivers = unsafe { PluginClient::drivers(table) }.unwrap();
        assert_eq!(drivers, expected_drivers());
    }
}
