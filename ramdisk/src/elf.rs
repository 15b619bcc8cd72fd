//! Telling statically linked binaries (what a RAM disk without libraries can run), what a
//! dynamically linked one needs (its interpreter and libraries), and finding a section of a
//! kernel module. Pure.

use object::elf;
use object::read::elf::{Dyn, ElfFile64, ProgramHeader};

/// Whether `bytes` is a 64-bit little-endian ELF without a program interpreter (`PT_INTERP`):
/// a static executable, or a static PIE.
pub fn is_static_elf64(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(entsize), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else { return false };
    (0..usize::from(count)).all(|i| u32_at(phoff + i * usize::from(entsize)).is_some_and(|kind| kind != 3))
}

/// What a dynamically linked 64-bit ELF file needs to run: its program interpreter
/// (`PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` for a shared library) and the
/// libraries its `DT_NEEDED` entries name, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicNeeds {
    /// The program interpreter's path.
    pub interpreter: Option<String>,
    /// Library names (`libc.so.6`).
    pub needed: Vec<String>,
}

/// Why [`dynamic_needs`] cannot read a file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// Not a 64-bit ELF file, or a malformed one.
    #[error("{0}")]
    Read(#[from] object::read::Error),
    /// A `DT_NEEDED` entry points outside the string table.
    #[error("a DT_NEEDED entry names no string")]
    Needed,
}

/// The [`DynamicNeeds`] of `bytes`.
pub fn dynamic_needs(bytes: &[u8]) -> Result<DynamicNeeds, ElfError> {
    let file = ElfFile64::<object::Endianness>::parse(bytes)?;
    let endian = file.endian();
    let mut interpreter = None;
    for header in file.elf_program_headers() {
        if let Some(path) = header.interpreter(endian, bytes)? {
            interpreter = Some(String::from_utf8_lossy(path).into_owned());
        }
    }
    let sections = file.elf_section_table();
    let mut needed = Vec::new();
    if let Some((entries, link)) = sections.dynamic(endian, bytes)? {
        let strings = sections.strings(endian, bytes, link)?;
        for entry in entries {
            if entry.d_tag(endian) == elf::DT_NEEDED {
                let offset = u32::try_from(entry.d_val(endian)).map_err(|_| ElfError::Needed)?;
                let name = strings.get(offset).map_err(|()| ElfError::Needed)?;
                needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(DynamicNeeds { interpreter, needed })
}

/// The contents of the section called `name` of a 64-bit little-endian ELF file (`.modinfo`
/// of a kernel module); `None` when `bytes` is not such a file or has no such section.
pub fn elf64_section<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let u32_at = |o: usize| bytes.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let usize_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .and_then(|b| usize::try_from(u64::from_le_bytes(b)).ok())
    };
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return None;
    }
    let (shoff, entsize, count, names_index) = (usize_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    // A section header: name offset (u32) at 0, file offset (u64) at 24, size (u64) at 32.
    let header = |index: usize| shoff.checked_add(index.checked_mul(entsize)?);
    let contents = |index: usize| {
        let at = header(index)?;
        let (offset, size) = (usize_at(at + 24)?, usize_at(at + 32)?);
        bytes.get(offset..offset.checked_add(size)?)
    };
    let names = contents(names_index)?;
    (0..count).find_map(|index| {
        let name_offset = usize::try_from(u32_at(header(index)?)?).ok()?;
        let rest = names.get(name_offset..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        (rest.get(..end)? == name.as_bytes()).then(|| contents(index)).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection() {
        // Minimal ELF64 header with one PT_LOAD (1) program header, then the same with PT_INTERP (3).
        let elf = |kind: u32| {
            let mut bytes = vec![0u8; 0x40 + 0x38];
            bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
            bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
            bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
            bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
            bytes[0x40..0x44].copy_from_slice(&kind.to_le_bytes());
            bytes
        };
        assert!(is_static_elf64(&elf(1)));
        assert!(!is_static_elf64(&elf(3)));
        assert!(!is_static_elf64(b"#!/bin/sh\n"));
    }

    #[test]
    fn sections_are_found_by_name() {
        // Header, then ".shstrtab" contents, ".modinfo" contents, then three section headers:
        // the null one, the names, the module information.
        let names = b"\0.shstrtab\0.modinfo\0";
        let modinfo = b"license=GPL\0depends=libata\0";
        let names_at = 0x40;
        let modinfo_at = names_at + names.len();
        let shoff = modinfo_at + modinfo.len();
        let mut bytes = vec![0u8; shoff + 3 * 0x40];
        bytes[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        bytes[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        bytes[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        bytes[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        bytes[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        bytes[names_at..modinfo_at].copy_from_slice(names);
        bytes[modinfo_at..shoff].copy_from_slice(modinfo);
        for (index, name, at, len) in [(1usize, 1u32, names_at, names.len()), (2, 11, modinfo_at, modinfo.len())] {
            let header = shoff + index * 0x40;
            bytes[header..header + 4].copy_from_slice(&name.to_le_bytes());
            bytes[header + 24..header + 32].copy_from_slice(&(at as u64).to_le_bytes());
            bytes[header + 32..header + 40].copy_from_slice(&(len as u64).to_le_bytes());
        }
        assert_eq!(elf64_section(&bytes, ".modinfo"), Some(&modinfo[..]));
        assert_eq!(elf64_section(&bytes, ".shstrtab"), Some(&names[..]));
        assert_eq!(elf64_section(&bytes, ".text"), None);
        assert_eq!(elf64_section(&bytes[..shoff], ".modinfo"), None, "truncated");
        assert_eq!(elf64_section(b"depends=x", ".modinfo"), None);
    }
}
