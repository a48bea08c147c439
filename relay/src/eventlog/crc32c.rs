//! CRC32C (Castagnoli), the checksum of every log record and index file.
//!
//! Why CRC32C and not a truncated SHA-256: the checksum guards against torn writes and
//! media corruption, not against an adversary (re-served frames carry their own
//! signatures). It is computed by the `crc32c` crate, which uses the CPU's CRC32
//! instructions (SSE 4.2, ARMv8) with a software fallback: every replayed record is
//! checked, so on the replay path this is several times faster than table-driven code.

/// The CRC32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::crc32c;

    #[test]
    fn known_vectors() {
        // RFC 3720 (iSCSI) appendix B.4 and the usual check value.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        assert_eq!(crc32c(b""), 0);
    }
}
