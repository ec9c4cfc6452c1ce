//! Filesystem operations: mounts (with loop devices for image files), directories and
//! sparse filesystem images. Idempotent like every executor operation.

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wharf_engine::executor::ExecError;

/// Split mount(8)-style options into flags, filesystem data, and whether a loop device
/// is wanted; read as drivers read them ([`wharf_sdk::split_mount_options`]).
pub fn split_options(options: &str) -> Result<(MsFlags, String, bool), ExecError> {
    let elements =
        wharf_sdk::split_mount_options(options).map_err(|reason| ExecError::new(format!("mount options: {reason}")))?;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    let mut want_loop = false;
    for o in &elements {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "lazytime" => flags |= MsFlags::MS_LAZYTIME,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "silent" => flags |= MsFlags::MS_SILENT,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "loop" => want_loop = true,
            // The opposites of the flags above: what a fresh mount has anyway.
            flag if wharf_sdk::is_mount_flag(flag) => {}
            other => data.push(other),
        }
    }
    Ok((flags, wharf_sdk::join_mount_options(&data), want_loop))
}

/// A path as `/proc/self/mountinfo` writes it: space, tab, newline and backslash as octal
/// escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount as (mount point, source), in mount order. Mount points are the kernel's
/// resolved paths.
fn mounts() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            let point = PathBuf::from(unescape_mountinfo(fields.get(4)?));
            Some((point, fields.get(sep + 2).map(|s| unescape_mountinfo(s)).unwrap_or_default()))
        })
        .collect()
}

/// `path` with symlinks resolved, as the kernel names it in mountinfo; `None` when it does
/// not exist.
fn resolved(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// The source mounted at `target`, if anything is.
pub fn mounted_at(target: &Path) -> Option<String> {
    let target = resolved(target)?;
    mounts().into_iter().rev().find_map(|(point, source)| (point == target).then_some(source))
}

const LO_FLAGS_AUTOCLEAR: u32 = 4;

// The loop device ioctls of <linux/loop.h>. They are numbered with _IO whatever their
// argument, hence the `_bad` forms for those that take one.
nix::ioctl_none!(loop_ctl_get_free, b'L', 0x82);
nix::ioctl_write_ptr_bad!(loop_configure, nix::request_code_none!(b'L', 0x0A), LoopConfig);

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>` (`LOOP_CONFIGURE`, Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Attach `file` to a free loop device that detaches itself when unmounted; returns the
/// device path and its open descriptor. The descriptor must stay open until the mount
/// holds the device: with autoclear, the last close before that detaches it. The backing
/// file and autoclear are set in one `LOOP_CONFIGURE`, so no moment exists at which a
/// daemon killed in between would leave a device attached for good.
fn attach_loop(file: &Path) -> Result<(String, std::fs::File), ExecError> {
    let err = |what: &str, e: std::io::Error| ExecError::os(format!("loop device for {}: {what}", file.display()), e);
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| err("open /dev/loop-control", e))?;
    let backing = std::fs::OpenOptions::new().read(true).write(true).open(file).map_err(|e| err("open image", e))?;
    // SAFETY: all-zero bytes are a valid `loop_config`.
    let mut config: LoopConfig = unsafe { std::mem::zeroed() };
    config.fd = backing.as_raw_fd() as u32;
    config.info.flags = LO_FLAGS_AUTOCLEAR;
    // Another process may take the device between GET_FREE and CONFIGURE; then ask again.
    let mut attempts = 0;
    loop {
        // SAFETY: LOOP_CTL_GET_FREE on the loop control device takes no argument.
        let n = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }.map_err(|e| err("get a free device", e.into()))?;
        let dev = format!("/dev/loop{n}");
        let loopdev = std::fs::OpenOptions::new().read(true).write(true).open(&dev).map_err(|e| err(&dev, e))?;
        // SAFETY: LOOP_CONFIGURE reads a `loop_config` from the pointer, which is valid; the
        // backing descriptor it names is open.
        match unsafe { loop_configure(loopdev.as_raw_fd(), &config) } {
            Ok(_) => return Ok((dev, loopdev)),
            Err(nix::errno::Errno::EBUSY) if attempts < 7 => attempts += 1,
            Err(e) => return Err(err("attach", e.into())),
        }
    }
}

/// Ensure `source` is mounted at `target`.
pub fn mount_fs(source: &str, target: &str, fstype: &str, options: &str) -> Result<(), ExecError> {
    refuse_link(target)?;
    let t = Path::new(target);
    if mounted_at(t).is_some() {
        return Ok(());
    }
    let (flags, data, want_loop) = split_options(options)?;
    let (source, _loop_held) = if want_loop {
        let (dev, held) = attach_loop(Path::new(source))?;
        (dev, Some(held))
    } else {
        (source.to_string(), None)
    };
    let fstype = (fstype != "none" && !flags.contains(MsFlags::MS_BIND)).then_some(fstype);
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(Some(source.as_str()), t, fstype, flags, data).map_err(|e| {
        let message = format!(
            "mount {} at {target} ({}): {}",
            source,
            wharf_sdk::mask_mount_secrets(options),
            std::io::Error::from_raw_os_error(e as i32)
        );
        match refused_mount_part(e) {
            Some(part) => ExecError::refused(format!("{part} refused: {message}")),
            None => ExecError::new(message),
        }
    })?;
    if flags.contains(MsFlags::MS_RDONLY) && flags.contains(MsFlags::MS_BIND) {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, t, None::<&str>, remount, None::<&str>)
            .map_err(|e| ExecError::os(format!("remount {target} read-only"), e))?;
    }
    Ok(())
}

/// What of a mount request the kernel refuses with `errno`, when it is the request's fault
/// rather than the host's: the source (`device`), the filesystem `type` or the options
/// (`o`), named as a volume's options name them.
fn refused_mount_part(errno: nix::errno::Errno) -> Option<&'static str> {
    use nix::errno::Errno;
    match errno {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENOTBLK | Errno::ENXIO => Some("device"),
        Errno::ENODEV => Some("type"),
        Errno::EINVAL => Some("o"),
        _ => None,
    }
}

/// Ensure nothing is mounted at `target`.
pub fn unmount_fs(target: &str) -> Result<(), ExecError> {
    let t = Path::new(target);
    while mounted_at(t).is_some() {
        umount2(t, MntFlags::empty()).map_err(|e| ExecError::os(format!("unmount {target}"), e))?;
    }
    Ok(())
}

fn refuse_dangerous(path: &str) -> Result<(), ExecError> {
    let p = Path::new(path);
    if !p.is_absolute() || p.parent().is_none() || p.components().any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ExecError::new(format!("refusing to touch {path:?}: not a plain absolute path below /")));
    }
    Ok(())
}

/// Refuse to create, change or mount on `path` when a symlink stands there: the operation
/// would act on whatever the link points to.
fn refuse_link(path: &str) -> Result<(), ExecError> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ExecError::new(format!("refusing to touch {path}: it is a symbolic link")));
    }
    Ok(())
}

/// Ensure a directory exists with the given mode and owner.
pub fn dir_create(path: &str, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> Result<(), ExecError> {
    refuse_dangerous(path)?;
    refuse_link(path)?;
    let err = |e: std::io::Error| ExecError::os(format!("directory {path}"), e);
    std::fs::create_dir_all(path).map_err(err)?;
    if let Some(m) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).map_err(err)?;
    }
    if uid.is_some() || gid.is_some() {
        chown(path, uid, gid).map_err(err)?;
    }
    Ok(())
}

/// Ensure a directory and its contents are gone. Never reaches through a mount or a
/// symlink: a mount point at or below it is refused before anything is deleted, every
/// directory on the way must be on the same device as the top one, and a symlink in its
/// place is removed itself, not followed. So a volume's data on another filesystem, a bind
/// source or a link's target is never deleted by mistake.
pub fn dir_remove(path: &str) -> Result<(), ExecError> {
    refuse_dangerous(path)?;
    let err = |e: std::io::Error| ExecError::os(format!("remove directory {path}"), e);
    let Some(top) = super::files::located(Path::new(path)) else { return Ok(()) };
    let meta = match std::fs::symlink_metadata(&top) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(&top).map_err(err);
    }
    if let Some((point, _)) = mounts().into_iter().find(|(point, _)| point.starts_with(&top)) {
        return Err(ExecError::new(format!(
            "directory {path} holds the mount point {}; unmount it first",
            point.display()
        )));
    }
    remove_tree(&top, meta.dev()).map_err(err)
}

/// Remove `dir` and what is in it without following symlinks, refusing to enter a
/// directory on another device than `dev`.
fn remove_tree(dir: &Path, dev: u64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = std::fs::symlink_metadata(entry.path())?;
        if meta.is_dir() {
            if meta.dev() != dev {
                return Err(std::io::Error::other(format!("{} is on another filesystem", entry.path().display())));
            }
            remove_tree(&entry.path(), dev)?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Ensure a sparse image of `size` bytes holding a filesystem of `fstype` exists.
pub fn image_create(path: &str, size: u64, fstype: &str) -> Result<(), ExecError> {
    refuse_dangerous(path)?;
    refuse_link(path)?;
    if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
        return Ok(());
    }
    let err = |e: std::io::Error| ExecError::os(format!("image {path}"), e);
    let f = std::fs::File::create(path).map_err(err)?;
    f.set_len(size).map_err(err)?;
    drop(f);
    let force = if fstype == "xfs" { "-f" } else { "-F" };
    let out = std::process::Command::new(format!("mkfs.{fstype}"))
        .args(["-q", force, path])
        .output()
        .map_err(|e| ExecError::os(format!("image {path}: running mkfs.{fstype}"), e))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(path);
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(ExecError::new(format!("image {path}: mkfs.{fstype} failed: {}", msg.trim())));
    }
    Ok(())
}

/// Ensure a file is gone.
pub fn file_remove(path: &str) -> Result<(), ExecError> {
    refuse_dangerous(path)?;
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ExecError::os(format!("remove file {path}"), e)),
    }
}

/// Ensure a file holds exactly `contents`: written beside it and put in its place in one
/// step, so a reader never sees half of it.
///
/// A file already there is exchanged with the new one (`RENAME_EXCHANGE`) and then removed,
/// rather than renamed over: ext4 makes a rename over a file wait for the new file's data
/// to be written out first, which a connect paid for twice per connect and disconnect.
/// After a crash a file may hence be empty; wharfd rewrites every sandbox's `resolv.conf`
/// (the only files written so) at start.
pub fn file_write(path: &str, contents: &str) -> Result<(), ExecError> {
    use std::io::Write;
    refuse_dangerous(path)?;
    let err = |e: std::io::Error| ExecError::os(format!("write file {path}"), e);
    let temporary = format!("{path}.wharf-new");
    // A stale temporary file (or a link planted in its place) goes first; the new one is
    // made fresh, so nothing is written through a link.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    drop(file);
    match renameat2(AT_FDCWD, temporary.as_str(), AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => std::fs::remove_file(&temporary).map_err(err),
        // Nothing there yet, or a filesystem that cannot exchange.
        Err(Errno::ENOENT | Errno::EINVAL) => std::fs::rename(&temporary, path).map_err(err),
        Err(e) => Err(err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_data_and_loop() {
        let (f, d, l) = split_options("ro,nosuid,size=64m,uid=1000,loop").unwrap();
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(d, "size=64m,uid=1000");
        assert!(l);
        let (f, d, _) = split_options("rbind").unwrap();
        assert!(f.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(d.is_empty());
    }

    #[test]
    fn flags_that_clear_stay_out_of_the_data_and_values_keep_their_commas() {
        let (f, d, _) = split_options("suid,dev,exec,size=64m").unwrap();
        assert_eq!(f, MsFlags::empty());
        assert_eq!(d, "size=64m");
        let (_, d, _) = split_options("username=a,password=se,,cret").unwrap();
        assert_eq!(d, "username=a,password=se,,cret");
        assert!(split_options("ro,,bind").is_err());
    }

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_mountinfo("/var/lib/my\\040root/v"), "/var/lib/my root/v");
        assert_eq!(unescape_mountinfo("/a\\134b\\01"), "/a\\b\\01");
    }

    #[test]
    fn a_removal_takes_links_away_and_never_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("file"), "keep").unwrap();
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(volume.join("_data")).unwrap();
        std::os::unix::fs::symlink(&theirs, volume.join("_data/link")).unwrap();
        dir_remove(volume.to_str().unwrap()).unwrap();
        assert!(!volume.exists());
        std::os::unix::fs::symlink(&theirs, &volume).unwrap();
        dir_remove(volume.to_str().unwrap()).unwrap();
        assert!(std::fs::symlink_metadata(&volume).is_err(), "the link itself is gone");
        assert_eq!(std::fs::read_to_string(theirs.join("file")).unwrap(), "keep");

        std::os::unix::fs::symlink(&theirs, &volume).unwrap();
        assert!(dir_create(volume.to_str().unwrap(), Some(0o700), None, None).is_err(), "no chmod through a link");
        let conf = dir.path().join("resolv.conf");
        std::os::unix::fs::symlink(theirs.join("file"), format!("{}.wharf-new", conf.display())).unwrap();
        file_write(conf.to_str().unwrap(), "nameserver 10.0.0.1\n").unwrap();
        assert_eq!(std::fs::read_to_string(theirs.join("file")).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "nameserver 10.0.0.1\n");
        // Over the file now there: exchanged, and the old one gone.
        file_write(conf.to_str().unwrap(), "nameserver 10.0.0.2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "nameserver 10.0.0.2\n");
        assert!(std::fs::symlink_metadata(format!("{}.wharf-new", conf.display())).is_err());
    }

    #[test]
    fn dangerous_paths_are_refused() {
        assert!(dir_remove("/").is_err());
        assert!(dir_remove("relative/x").is_err());
        assert!(dir_remove("/tmp/../etc").is_err());
    }
}
