//! The daemon's relative relocations packed (DT_RELR, glibc 2.36 and later): the loader reads
//! a few kilobytes of them at start instead of 340 KiB of `.rela.dyn`, pages that would stay
//! in the daemon's resident memory.

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
