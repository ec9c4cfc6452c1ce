//! Loading plugin libraries: the example plugin, refusals, panics, duplicates, and files
//! that must never reach the dynamic loader (truncated, planted links, foreign directories).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use wharf_engine::registry::{Registry, Source};
use wharf_linux::plugins;
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
    wharf_tests::require_root!();
    let dir = tempfile_dir("load");
    let file = install(&dir, &example("wharf_example_driver"), "libptp.so", 0o755);
    let mut r = Registry::new();
    assert!(plugins::load_dir(&mut r, &dir).is_empty());
    let d = r.network("ptp").expect("ptp registered");
    assert_eq!(r.list()[0].source, Source::File(file));
    assert!(d.capabilities().uses_ipam);
    let mut spec = NetworkSpec::default();
    spec.options.insert("com.docker.network.driver.mtu".into(), "nope".into());
    let err = d.validate(&spec, &Default::default()).unwrap_err();
    assert_eq!(err.option.as_deref(), Some("com.docker.network.driver.mtu"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Resident KiB of the executable mappings of the library at `path` in this process.
fn resident_code_kib(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut kib = 0;
    let mut ours = false;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 5 && fields[0].contains('-') && fields[0].len() > 8 {
            ours = fields[1] == "r-xp" && fields.get(5).is_some_and(|p| Path::new(p) == path);
        } else if let (true, Some(rss)) = (ours, line.strip_prefix("Rss:")) {
            kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
        }
    }
    kib
}

#[test]
fn a_plugin_whose_drivers_nothing_uses_gives_back_its_code_pages_and_still_works() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("pages");
    let file = install(&dir, &example("wharf_example_driver"), "libptp.so", 0o755);
    let mut r = Registry::new();
    assert!(plugins::load_dir(&mut r, &dir).is_empty());
    let file = file.canonicalize().unwrap();
    let d = r.network("ptp").expect("ptp registered");
    assert!(d.capabilities().uses_ipam);
    let loaded = resident_code_kib(&file);
    assert!(loaded > 0, "the plugin's first calls faulted code in");

    let in_use = ["ptp".to_string()].into();
    assert!(plugins::release_unused(&r, &in_use).is_empty(), "a plugin in use keeps its pages");
    assert_eq!(resident_code_kib(&file), loaded);

    assert_eq!(plugins::release_unused(&r, &Default::default()), std::slice::from_ref(&file));
    assert_eq!(resident_code_kib(&file), 0, "none of its code is resident ({loaded} KiB were)");
    let mut spec = NetworkSpec::default();
    spec.options.insert("com.docker.network.driver.mtu".into(), "nope".into());
    let err = d.validate(&spec, &Default::default()).unwrap_err();
    assert_eq!(err.option.as_deref(), Some("com.docker.network.driver.mtu"), "the plugin answers as before");
    assert!(resident_code_kib(&file) > 0, "its call faulted back what it needed");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_abi_version_is_refused_naming_both_versions() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("abi");
    let so = compile_c(
        &dir,
        "libfuture",
        "#include <stdint.h>\nstruct t { uint32_t abi_version; uint32_t size; };\n\
         static struct t table = { 99, sizeof(struct t) };\nconst struct t *wharf_plugin_v1(void) { return &table; }\n",
    );
    let mut r = Registry::new();
    let err = plugins::load_file(&mut r, &so).unwrap_err();
    assert!(err.to_string().contains("speaks plugin ABI version 99, but wharfd speaks version 1"), "{err}");
    assert!(err.to_string().contains("libfuture.so"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_library_without_the_symbol_is_refused() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("sym");
    let so = compile_c(&dir, "libplain", "int nothing(void) { return 0; }\n");
    let err = plugins::load_file(&mut Registry::new(), &so).unwrap_err();
    assert!(err.to_string().contains("does not export the symbol wharf_plugin_v1"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_others_can_write_or_own_are_refused() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("perm");
    let writable = install(&dir, &example("wharf_example_driver"), "libgw.so", 0o775);
    let err = plugins::load_file(&mut Registry::new(), &writable).unwrap_err();
    assert!(err.to_string().contains("writable by group or others"), "{err}");
    let foreign = install(&dir, &example("wharf_example_driver"), "libforeign.so", 0o755);
    nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    let err = plugins::load_file(&mut Registry::new(), &foreign).unwrap_err();
    assert!(err.to_string().contains("not root"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_driver_of_the_same_name_is_refused_and_the_first_kept() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("dup");
    let first = install(&dir, &example("wharf_example_driver"), "liba.so", 0o755);
    install(&dir, &example("wharf_example_driver"), "libb.so", 0o755);
    let mut r = Registry::new();
    let errs = plugins::load_dir(&mut r, &dir);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].to_string().contains("already registered"), "{}", errs[0]);
    assert!(errs[0].to_string().contains("libb.so"));
    assert_eq!(r.list()[0].source, Source::File(first));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_panic_fails_one_call_and_the_next_call_works() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("panic");
    install(&dir, &example("panicky_plugin"), "libpanicky.so", 0o755);
    let mut r = Registry::new();
    assert!(plugins::load_dir(&mut r, &dir).is_empty());
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

#[test]
fn a_truncated_library_is_refused_before_the_loader_maps_it() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("trunc");
    let whole = std::fs::read(example("wharf_example_driver")).unwrap();
    for (name, len) in [("libhalf.so", whole.len() / 2), ("libalmost.so", whole.len() - 1), ("libhead.so", 100)] {
        let so = dir.join(name);
        std::fs::write(&so, &whole[..len]).unwrap();
        std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut r = Registry::new();
    let errs = plugins::load_dir(&mut r, &dir);
    assert_eq!(errs.len(), 3, "{errs:?}");
    for e in &errs {
        assert!(e.to_string().contains("truncated"), "{e}");
    }
    assert!(r.network("ptp").is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_library_for_another_class_or_machine_is_refused() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("class");
    let whole = std::fs::read(example("wharf_example_driver")).unwrap();
    let mut other_class = whole.clone();
    other_class[4] = 1;
    let mut other_machine = whole;
    other_machine[18] ^= 0x55;
    for (name, bytes) in [("libclass.so", other_class), ("libmachine.so", other_machine)] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let errs = plugins::load_dir(&mut Registry::new(), &dir);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].to_string().contains("ELF class 32-bit does not match"), "{}", errs[0]);
    assert!(errs[1].to_string().contains("ELF machine"), "{}", errs[1]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_symlink_planted_in_the_plugin_directory_is_not_followed() {
    wharf_tests::require_root!();
    let elsewhere = tempfile_dir("target");
    let real = install(&elsewhere, &example("wharf_example_driver"), "libreal.so", 0o755);
    let dir = tempfile_dir("link");
    std::os::unix::fs::symlink(&real, dir.join("libptp.so")).unwrap();
    let mut r = Registry::new();
    let errs = plugins::load_dir(&mut r, &dir);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].to_string().contains("libptp.so: is a symbolic link"), "{}", errs[0]);
    assert!(r.network("ptp").is_none());
    let err = plugins::load_file(&mut Registry::new(), &dir.join("libptp.so")).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::remove_dir_all(elsewhere).unwrap();
}

#[test]
fn a_plugin_directory_others_can_write_or_own_is_refused() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("dirperm");
    install(&dir, &example("wharf_example_driver"), "libptp.so", 0o755);
    for mode in [0o775, 0o757] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut r = Registry::new();
        let errs = plugins::load_dir(&mut r, &dir);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains("plugin directory writable by group or others"), "{}", errs[0]);
        assert_eq!(errs[0].path, dir);
        assert!(r.network("ptp").is_none());
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(1000)), None).unwrap();
    let errs = plugins::load_dir(&mut Registry::new(), &dir);
    assert!(errs[0].to_string().contains("plugin directory owned by uid 1000, not root"), "{errs:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_loaders_own_reason_is_kept() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("dlerror");
    let dep = compile_c(&dir, "libedgdep", "int dep(void) { return 1; }\n");
    let src = dir.join("needs.c");
    std::fs::write(&src, "int dep(void);\nint needs(void) { return dep(); }\n").unwrap();
    let so = dir.join("libneeds.so");
    let dir_s = dir.to_str().unwrap();
    wharf_tests::ok(
        "cc",
        &["-shared", "-fPIC", "-o", so.to_str().unwrap(), src.to_str().unwrap(), "-L", dir_s, "-ledgdep"],
    );
    std::fs::set_permissions(&so, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_file(dep).unwrap();
    let err = plugins::load_file(&mut Registry::new(), &so).unwrap_err();
    assert!(err.to_string().contains("libedgdep.so: cannot open shared object file"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(wharf_tests::unique(&format!("wharf-plugins-{tag}-")));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn wharfd_starts_beside_a_truncated_plugin_and_logs_why_it_was_refused() {
    wharf_tests::require_root!();
    let dir = tempfile_dir("daemon");
    let whole = std::fs::read(example("wharf_example_driver")).unwrap();
    let half = dir.join("libhalf.so");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    std::fs::set_permissions(&half, std::fs::Permissions::from_mode(0o755)).unwrap();
    let h = wharf_tests::Host::start_with(&["--plugin-dir", dir.to_str().unwrap()]);
    let plugins = h.wharf_ok(&["plugin", "ls"]);
    assert!(plugins.contains("bridge") && !plugins.contains("ptp"), "{plugins}");
    let log = h.log();
    assert!(log.contains("libhalf.so: truncated"), "{log}");
    drop(h);
    std::fs::remove_dir_all(dir).unwrap();
}
