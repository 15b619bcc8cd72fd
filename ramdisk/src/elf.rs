//! Telling statically linked binaries (what a RAM disk without libraries can run). Pure.

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
}
