//! Named network namespaces, as `ip netns` keeps them: a namespace bind-mounted onto a file,
//! so it lives on with no process in it.

use super::ExecError;
use nix::mount::{mount as sys_mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::path::Path;

/// Make a persistent named network namespace at `dir/name`, as `ip netns add` does: a new
/// namespace made on a short-lived thread, bind-mounted onto an empty file.
pub fn create_named(dir: &Path, name: &str) -> Result<(), ExecError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(ExecError::new(format!("invalid namespace name {name:?}")));
    }
    std::fs::create_dir_all(dir).map_err(|e| ExecError::new(format!("{}: {e}", dir.display())))?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| ExecError::new(format!("namespace file {}: {e}", path.display())))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), ExecError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ExecError::os("new network namespace", e))?;
        sys_mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| ExecError::new(format!("bind namespace to {}: {e}", target.display())))
    })
    .join()
    .map_err(|_| ExecError::new("namespace thread panicked"))?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(())
}

/// Remove a named namespace: detach its bind mount and delete the file. Absent is fine.
pub fn remove_named(path: &Path) -> Result<(), ExecError> {
    if !path.exists() {
        return Ok(());
    }
    let _ = umount2(path, MntFlags::MNT_DETACH);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ExecError::new(format!("remove namespace {}: {e}", path.display()))),
    }
}
