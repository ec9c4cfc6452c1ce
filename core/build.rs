//! Build facts `GET /version` reports: the commit, the compiler and the build time.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_default();
    let dirty = output("git", &["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    let commit = if dirty && !commit.is_empty() { format!("{commit}-dirty") } else { commit };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_default();
    println!("cargo:rustc-env=WHARF_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=WHARF_RUSTC_VERSION={rustc_version}");
    println!("cargo:rustc-env=WHARF_BUILD_TIME={}", humantime::format_rfc3339_seconds(std::time::SystemTime::now()));
    // Build again when HEAD moves (a commit, a checkout), not on every build.
    for path in ["HEAD", "index"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
