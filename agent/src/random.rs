//! Random bytes that never wait: `/dev/urandom`. The RAM disk often runs before the kernel's
//! random pool is initialised (a VM without a hardware RNG, or a CPU without RDRAND, boots to
//! the agent in seconds), and `getrandom(2)` blocks until then — minutes under QEMU's TCG.
//! What the agent needs randomness for (retry jitter, partition GUIDs) needs uniqueness, not
//! secrecy.

use std::io::{self, Read};

/// Fills `buf` from `/dev/urandom`.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// A random GUID (version 4, RFC 4122 variant) as a GPT stores it.
pub fn guid() -> io::Result<[u8; 16]> {
    let mut guid = [0u8; 16];
    fill(&mut guid)?;
    // The version is the high nibble of the third field, stored little-endian: byte 7.
    guid[7] = (guid[7] & 0x0f) | 0x40;
    guid[8] = (guid[8] & 0x3f) | 0x80;
    Ok(guid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_version_4_and_differ() {
        let (a, b) = (guid().unwrap(), guid().unwrap());
        assert_ne!(a, b);
        let text = crate::fresh_table::guid_text(&a);
        assert_eq!(&text[14..15], "4", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
    }
}
