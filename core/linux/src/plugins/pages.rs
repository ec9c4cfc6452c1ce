//! The code pages of plugins that nothing uses, given back.
//!
//! A plugin is loaded at start, asked for its drivers and their capabilities, and then
//! called only for the objects of its drivers. Those first calls fault most of its code in
//! (the kernel maps the neighbours of every page touched), about half a megabyte per
//! plugin, which stays in the daemon's resident memory although a plugin whose drivers
//! have no network or volume may never be called again. [`release_unused`] drops those
//! pages from the daemon's page tables; the file stays mapped, so a later call faults what
//! it needs back in from the page cache, as for code never run yet.
//!
//! Only executable mappings of the library's own file are dropped, and only when they hold
//! no page of the process's own (`Anonymous: 0 kB`): code is never written, whereas the
//! loader writes relocations into the library's read-only data, which must stay.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use wharf_engine::registry::{Registry, Source};

/// One mapping of `/proc/self/smaps`: its range, whether it is executable code, the file it
/// maps (inode and path) and how much of it is the process's own.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    executable: bool,
    inode: u64,
    path: String,
    anonymous_kib: u64,
}

/// The file mappings `smaps` lists (an anonymous mapping, or a path with spaces, is left
/// out, and so are the lines that follow it).
fn mappings(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    // Whether the last header read is `out`'s last mapping.
    let mut current = false;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            if let Some(m) = out.last_mut().filter(|_| current) {
                m.anonymous_kib = kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(u64::MAX);
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some((start, end)) = fields.first().and_then(|range| range.split_once('-')) else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        // A header line from here on: the lines up to the next one are its own.
        current = false;
        let [_, perms, _offset, _device, inode, path] = fields[..] else { continue };
        let Ok(inode) = inode.parse() else { continue };
        out.push(Mapping {
            start,
            end,
            executable: perms == "r-xp",
            inode,
            path: path.to_string(),
            // Unknown until its `Anonymous:` line: not droppable.
            anonymous_kib: u64::MAX,
        });
        current = true;
    }
    out
}

/// Drop the code pages of every plugin library in `registry` none of whose drivers is in
/// `in_use`. Returns the libraries whose pages went.
pub fn release_unused(registry: &Registry, in_use: &BTreeSet<String>) -> Vec<std::path::PathBuf> {
    let mut libraries: std::collections::BTreeMap<std::path::PathBuf, bool> = Default::default();
    for d in registry.list() {
        if let Source::File(path) = d.source {
            *libraries.entry(path).or_default() |= in_use.contains(&d.name);
        }
    }
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
    let mappings = mappings(&smaps);
    let mut released = Vec::new();
    for (path, _) in libraries.into_iter().filter(|(_, used)| !used) {
        // A file replaced since it was loaded has another inode: nothing of it is mapped.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let named = |m: &&Mapping| m.inode == meta.ino() && Path::new(&m.path) == path;
        let code = mappings.iter().filter(|m| m.executable).filter(named);
        let mut dropped = false;
        for m in code.filter(|m| m.anonymous_kib == 0) {
            // SAFETY: the range is a whole mapping of the library's code, which holds no page
            // of the process's own; dropping its pages only makes the next use fault them in
            // again from the file.
            let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
            dropped |= rc == 0;
        }
        if dropped {
            released.push(path);
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_code_mappings_without_pages_of_their_own_are_taken() {
        let smaps = "\
7f0000000000-7f0000010000 r--p 00000000 fe:01 1234 /lib/libwharf_x.so
Rss:                  64 kB
Anonymous:             0 kB
7f0000010000-7f0000090000 r-xp 00010000 fe:01 1234 /lib/libwharf_x.so
Rss:                 512 kB
Anonymous:             0 kB
7f0000090000-7f00000a0000 r--p 00090000 fe:01 1234 /lib/libwharf_x.so
Anonymous:            12 kB
";
        let m = mappings(smaps);
        assert_eq!(m.len(), 3);
        assert!(m[1].executable && m[1].anonymous_kib == 0 && m[1].inode == 1234 && m[1].path == "/lib/libwharf_x.so");
        assert_eq!((m[1].start, m[1].end), (0x7f0000010000, 0x7f0000090000));
        assert!(!m[0].executable && !m[2].executable);
        assert_eq!(m[2].anonymous_kib, 12);
    }

    #[test]
    fn the_lines_of_an_anonymous_mapping_are_not_taken_for_the_file_mapping_before_it() {
        let smaps = "\
7f0000010000-7f0000090000 r-xp 00010000 fe:01 1234 /lib/libwharf_x.so
Anonymous:             8 kB
7f00000a0000-7f00000b0000 rw-p 00000000 00:00 0
Anonymous:             0 kB
";
        let m = mappings(smaps);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].anonymous_kib, 8, "the code mapping keeps its own count");
    }

    #[test]
    fn a_mapping_whose_own_pages_are_not_listed_is_never_taken() {
        let m = mappings("7f0000010000-7f0000090000 r-xp 00010000 fe:01 1234 /lib/libwharf_x.so\nRss: 4 kB\n");
        assert_eq!(m[0].anonymous_kib, u64::MAX);
    }
}
