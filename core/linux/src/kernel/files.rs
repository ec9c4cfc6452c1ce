//! The host's files as the engine sees them, through the executor: where a path leads (the
//! one rule the plan policy and the mount operations share for telling what a file
//! operation would touch), whether something is there, a text file, the bytes under a
//! directory.

use std::path::{Path, PathBuf};

/// `path` with the symlinks of its directories resolved, its last component as it is (not
/// followed): the place an operation on `path` acts on. Directories that do not exist yet
/// are kept as written below the deepest one that does. `None` for a path without a
/// parent or a last component, such as `/`.
pub fn located(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let mut existing = path.parent()?;
    let mut missing = Vec::new();
    let mut place = loop {
        match std::fs::canonicalize(existing) {
            Ok(real) => break real,
            Err(_) => {
                missing.push(existing.file_name()?);
                existing = existing.parent()?;
            }
        }
    };
    place.extend(missing.iter().rev());
    place.push(name);
    Some(place)
}

/// Whether anything is at `path`, a symlink not followed.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Bytes used by the files under `path`, not following symlinks or crossing into other
/// filesystems' mounts beyond what `read_dir` shows.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    let children = std::fs::read_dir(path).into_iter().flatten().flatten();
    meta.blocks() * 512 + children.map(|e| disk_usage(&e.path())).sum::<u64>()
}

/// The largest file the filesystem holding `dir` can hold: ext2/3/4 address at most 2^32
/// blocks in a file; other Linux filesystems reach the VFS limit, `i64::MAX` bytes.
pub fn max_file_size(dir: &Path) -> Option<u64> {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    let st = nix::sys::statfs::statfs(dir).ok()?;
    let vfs_limit = i64::MAX as u64;
    if st.filesystem_type().0 as i64 == EXT4_SUPER_MAGIC {
        let block = u64::try_from(st.block_size()).ok()?;
        return Some(((1u64 << 32) - 1).saturating_mul(block).min(vfs_limit));
    }
    Some(vfs_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_resolved_and_the_last_component_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", real.join("out")).unwrap();
        let real = std::fs::canonicalize(&real).unwrap();
        assert_eq!(located(&dir.path().join("link/v")), Some(real.join("v")));
        assert_eq!(located(&dir.path().join("link/a/b/c")), Some(real.join("a/b/c")));
        assert_eq!(located(&dir.path().join("link/out")), Some(real.join("out")));
        assert_eq!(located(&dir.path().join("link/out/passwd")), Some(PathBuf::from("/etc/passwd")));
        assert_eq!(located(Path::new("/")), None);
    }
}
