//! Loading plugin libraries: the example plugin, refusals, panics, duplicates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use wharf_core::registry::{Registry, Source};
use wharf_sdk::{CreateNetwork, NetworkSpec};
use wharf_tests::target_dir;

fn example(name: &str) -> PathBuf {
    let p = target_dir().join("examples").join(format!("lib{name}.so"));
    assert!(p.exists(), "{} is missing: build with `cargo build --workspace --all-targets`", p.display());
    p
}

fn install(dir: &Path, from: &Path, as_name: &str, mode: u32) -> PathBuf {
    let to = dir.join(as_name);
    std::fs::copy(from, &to).unwrap();
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
    to
}

fn compile_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(format!("{name}.so"));
    wharf_tests::ok("cc", &["-shared", "-fPIC", "-o", out.to_str().unwrap(), src.to_str().unwrap()]);
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    out
}

#[test]
fn the_example_plugin_loads_from_a_plugin_directory() {
    let dir = tempfile_dir("load");
    let file = install(&dir, &example("wharf_example_driver"), "libptp.so", 0o755);
    let mut r = Registry::new();
    assert!(r.load_dir(&dir).is_empty());
    let d = r.network("ptp").expect("ptp registered");
    assert_eq!(r.list()[0].source, Source::File(file));
    assert!(d.capabilities().uses_ipam);
    let mut spec = NetworkSpec::default();
    spec.options.insert("com.docker.network.driver.mtu".into(), "nope".into());
    let err = d.validate(&spec, &Default::default()).unwrap_err();
    assert_eq!(err.option.as_deref(), Some("com.docker.network.driver.mtu"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_abi_version_is_refused_naming_both_versions() {
    let dir = tempfile_dir("abi");
    let so = compile_c(
        &dir,
        "libfuture",
        "#include <stdint.h>\nstruct t { uint32_t abi_version; uint32_t size; };\n\
         static struct t table = { 99, sizeof(struct t) };\nconst struct t *wharf_plugin_v1(void) { return &table; }\n",
    );
    let mut r = Registry::new();
    let err = r.load_file(&so).unwrap_err();
    assert!(err.to_string().contains("speaks plugin ABI version 99, but wharfd speaks version 1"), "{err}");
    assert!(err.to_string().contains("libfuture.so"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_library_without_the_symbol_is_refused() {
    let dir = tempfile_dir("sym");
    let so = compile_c(&dir, "libplain", "int nothing(void) { return 0; }\n");
    let err = Registry::new().load_file(&so).unwrap_err();
    assert!(err.to_string().contains("does not export the symbol wharf_plugin_v1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_others_can_write_or_own_are_refused() {
    let dir = tempfile_dir("perm");
    let writable = install(&dir, &example("wharf_example_driver"), "libgw.so", 0o775);
    let err = Registry::new().load_file(&writable).unwrap_err();
    assert!(err.to_string().contains("writable by group or others"), "{err}");
    let foreign = install(&dir, &example("wharf_example_driver"), "libforeign.so", 0o755);
    nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    let err = Registry::new().load_file(&foreign).unwrap_err();
    assert!(err.to_string().contains("not root"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_driver_of_the_same_name_is_refused_and_the_first_kept() {
    let dir = tempfile_dir("dup");
    let first = install(&dir, &example("wharf_example_driver"), "liba.so", 0o755);
    install(&dir, &example("wharf_example_driver"), "libb.so", 0o755);
    let mut r = Registry::new();
    let errs = r.load_dir(&dir);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].to_string().contains("already registered"), "{}", errs[0]);
    assert!(errs[0].to_string().contains("libb.so"));
    assert_eq!(r.list()[0].source, Source::File(first));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_panic_fails_one_call_and_the_next_call_works() {
    let dir = tempfile_dir("panic");
    install(&dir, &example("panicky_plugin"), "libpanicky.so", 0o755);
    let mut r = Registry::new();
    assert!(r.load_dir(&dir).is_empty());
    let d = r.network("panicky").unwrap();
    let call = |name: &str| {
        d.create_network(CreateNetwork {
            network: NetworkSpec { name: name.into(), ..Default::default() },
            ..Default::default()
        })
    };
    let err = call("boom").unwrap_err();
    assert!(err.message.contains("driver panicked: asked to explode"), "{err}");
    assert!(call("calm").is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(wharf_tests::unique(&format!("wharf-plugins-{tag}-")));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}
