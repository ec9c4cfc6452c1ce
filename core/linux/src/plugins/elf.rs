//! The ELF header check a plugin passes before the dynamic loader maps it.
//!
//! The loader maps each segment straight from the file: a segment that reaches past the end
//! of a truncated file is mapped all the same, and the first touch of the missing page kills
//! the process with SIGBUS. So a library is loaded only when it is an ELF shared object of
//! this process' class, byte order and machine, and its header, program headers, every
//! segment and the section header table lie inside the file.

use std::fs::File;
use std::os::unix::fs::FileExt;

const MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_32: u8 = 1;
const CLASS_64: u8 = 2;
const DATA_LSB: u8 = 1;
const DATA_MSB: u8 = 2;
const ET_DYN: u16 = 3;

const HOST_CLASS: u8 = if cfg!(target_pointer_width = "64") { CLASS_64 } else { CLASS_32 };
const HOST_DATA: u8 = if cfg!(target_endian = "little") { DATA_LSB } else { DATA_MSB };

/// The `e_machine` of this build's architecture, when known.
const HOST_MACHINE: Option<u16> = if cfg!(target_arch = "x86_64") {
    Some(62)
} else if cfg!(target_arch = "aarch64") {
    Some(183)
} else if cfg!(target_arch = "x86") {
    Some(3)
} else if cfg!(target_arch = "arm") {
    Some(40)
} else if cfg!(target_arch = "riscv64") {
    Some(243)
} else if cfg!(target_arch = "powerpc64") {
    Some(21)
} else if cfg!(target_arch = "s390x") {
    Some(22)
} else if cfg!(target_arch = "loongarch64") {
    Some(258)
} else {
    None
};

/// Refuse `file` (of `size` bytes) unless it is a complete ELF shared object this process
/// can load. The reason names what is wrong.
pub(super) fn check(file: &File, size: u64) -> Result<(), String> {
    let mut ident = [0u8; 16];
    read(file, 0, &mut ident, size).map_err(|_| format!("not an ELF file ({size} bytes)"))?;
    if ident[..4] != MAGIC {
        return Err("not an ELF file".to_string());
    }
    if ident[4] != HOST_CLASS {
        return Err(format!(
            "ELF class {} does not match this machine's {}",
            class_name(ident[4]),
            class_name(HOST_CLASS)
        ));
    }
    if ident[5] != HOST_DATA {
        return Err("ELF byte order does not match this machine's".to_string());
    }
    let layout = Layout { wide: HOST_CLASS == CLASS_64, big: HOST_DATA == DATA_MSB };
    let mut header = vec![0u8; layout.header_size()];
    read(file, 0, &mut header, size).map_err(|_| format!("truncated: {size} bytes hold no complete ELF header"))?;
    let h = layout.header(&header);
    if h.kind != ET_DYN {
        return Err(format!("not a shared object (ELF type {})", h.kind));
    }
    if let Some(machine) = HOST_MACHINE.filter(|m| *m != h.machine) {
        return Err(format!("built for ELF machine {}, this machine is {machine}", h.machine));
    }
    if usize::from(h.phentsize) != layout.program_header_size() || h.phnum == 0 {
        return Err("no usable program headers".to_string());
    }
    let phdrs_end = table_end(h.phoff, h.phnum, h.phentsize);
    if phdrs_end > size {
        return Err(truncated("program headers", phdrs_end, size));
    }
    let mut table = vec![0u8; usize::from(h.phnum) * usize::from(h.phentsize)];
    read(file, h.phoff, &mut table, size).map_err(|e| format!("cannot read program headers: {e}"))?;
    for (index, entry) in table.chunks(usize::from(h.phentsize)).enumerate() {
        let (offset, filesz) = layout.segment(entry);
        let end = offset.saturating_add(filesz);
        if end > size {
            return Err(truncated(&format!("segment {index}"), end, size));
        }
    }
    if h.shnum != 0 {
        let sections_end = table_end(h.shoff, h.shnum, h.shentsize);
        if sections_end > size {
            return Err(truncated("section headers", sections_end, size));
        }
    }
    Ok(())
}

fn truncated(what: &str, end: u64, size: u64) -> String {
    format!("truncated: {what} end at byte {end}, but the file has {size} bytes")
}

fn class_name(class: u8) -> String {
    match class {
        CLASS_32 => "32-bit".to_string(),
        CLASS_64 => "64-bit".to_string(),
        other => format!("{other}"),
    }
}

fn table_end(offset: u64, count: u16, entry: u16) -> u64 {
    offset.saturating_add(u64::from(count) * u64::from(entry))
}

/// Read exactly `buf.len()` bytes at `offset`, refusing to read past `size`.
fn read(file: &File, offset: u64, buf: &mut [u8], size: u64) -> std::io::Result<()> {
    if offset.saturating_add(buf.len() as u64) > size {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    file.read_exact_at(buf, offset)
}

/// The fields of the ELF header the check needs.
struct Header {
    kind: u16,
    machine: u16,
    phoff: u64,
    shoff: u64,
    phentsize: u16,
    phnum: u16,
    shentsize: u16,
    shnum: u16,
}

/// Where fields sit in an ELF file of one class and byte order.
struct Layout {
    wide: bool,
    big: bool,
}

impl Layout {
    fn header_size(&self) -> usize {
        if self.wide {
            64
        } else {
            52
        }
    }

    fn program_header_size(&self) -> usize {
        if self.wide {
            56
        } else {
            32
        }
    }

    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let bytes = [b[at], b[at + 1]];
        if self.big {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }

    fn u64(&self, b: &[u8], at: usize) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[at..at + 8]);
        if self.big {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        }
    }

    /// A word-sized field: 8 bytes in a 64-bit file, 4 in a 32-bit one.
    fn word(&self, b: &[u8], at: usize) -> u64 {
        if self.wide {
            self.u64(b, at)
        } else {
            u64::from(self.u32(b, at))
        }
    }

    fn header(&self, b: &[u8]) -> Header {
        // After e_entry the 64-bit header's fields sit 12 bytes further on.
        let shift = if self.wide { 12 } else { 0 };
        Header {
            kind: self.u16(b, 16),
            machine: self.u16(b, 18),
            phoff: self.word(b, if self.wide { 32 } else { 28 }),
            shoff: self.word(b, if self.wide { 40 } else { 32 }),
            phentsize: self.u16(b, 42 + shift),
            phnum: self.u16(b, 44 + shift),
            shentsize: self.u16(b, 46 + shift),
            shnum: self.u16(b, 48 + shift),
        }
    }

    /// A program header's `p_offset` and `p_filesz`.
    fn segment(&self, b: &[u8]) -> (u64, u64) {
        if self.wide {
            (self.u64(b, 8), self.u64(b, 32))
        } else {
            (u64::from(self.u32(b, 4)), u64::from(self.u32(b, 16)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn this_executable() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn check_bytes(bytes: &[u8]) -> Result<(), String> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        check(&f, bytes.len() as u64)
    }

    /// The test binary is a position-independent executable: ET_DYN, like a library.
    fn shared_object() -> Vec<u8> {
        let bytes = this_executable();
        assert_eq!(check_bytes(&bytes), Ok(()));
        bytes
    }

    #[test]
    fn a_truncated_object_is_refused_wherever_it_is_cut() {
        let bytes = shared_object();
        for len in [0, 10, 40, 63, 64, 200, 4096, bytes.len() / 2, bytes.len() - 1] {
            let err = check_bytes(&bytes[..len]).unwrap_err();
            assert!(err.contains("truncated") || err.contains("not an ELF file"), "{len}: {err}");
        }
    }

    #[test]
    fn another_class_machine_or_type_is_refused() {
        let mut other_class = shared_object();
        other_class[4] = if HOST_CLASS == CLASS_64 { CLASS_32 } else { CLASS_64 };
        assert!(check_bytes(&other_class).unwrap_err().contains("ELF class"));
        let mut other_machine = shared_object();
        other_machine[18] ^= 0x55;
        assert!(check_bytes(&other_machine).unwrap_err().contains("ELF machine"));
        let mut executable = shared_object();
        executable[16..18].copy_from_slice(&2u16.to_ne_bytes());
        assert!(check_bytes(&executable).unwrap_err().contains("not a shared object"));
        assert!(check_bytes(b"#!/bin/sh\necho not a library\n").unwrap_err().contains("not an ELF file"));
    }
}
