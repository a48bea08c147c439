//! Shared helpers for the relay's integration tests: locating the read-only fixtures and
//! loading the firehose corpus.
//!
//! Fixtures live in `<workspace>/../shared/fixtures`, or wherever `ATELIER_FIXTURES` points.
//! A missing fixture fails the test with its path: tests never skip silently.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub(crate) mod fuzz;
pub(crate) mod relay;

use std::path::{Path, PathBuf};

/// The fixtures directory: `$ATELIER_FIXTURES`, else `../../shared/fixtures` from this crate.
pub(crate) fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("ATELIER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    assert!(
        dir.is_dir(),
        "fixtures directory not found at {} (set ATELIER_FIXTURES to the fixtures dir)",
        dir.display()
    );
    dir
}

/// Reads a file under the fixtures directory, failing with its path if it is missing.
pub(crate) fn fixture_bytes(relative: &str) -> Vec<u8> {
    let path = fixtures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// Reads a UTF-8 file under the fixtures directory.
pub(crate) fn fixture_text(relative: &str) -> String {
    let bytes = fixture_bytes(relative);
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("fixture {relative} is not UTF-8: {e}"))
}

/// The firehose corpus directory.
pub(crate) fn corpus_dir() -> PathBuf {
    let dir = fixtures_dir().join("firehose-corpus");
    assert!(
        dir.is_dir(),
        "firehose corpus not found at {}",
        dir.display()
    );
    dir
}

/// The atproto interop test files directory.
pub(crate) fn interop_dir() -> PathBuf {
    let dir = fixtures_dir().join("atproto-interop-tests");
    assert!(
        dir.is_dir(),
        "interop fixtures not found at {}",
        dir.display()
    );
    dir
}

/// The corpus frames, in order: `frames.bin.zst` is zstd of repeated
/// `[u32 little-endian length][frame bytes]`.
pub(crate) fn corpus_frames() -> Vec<Vec<u8>> {
    let packed = fixture_bytes("firehose-corpus/frames.bin.zst");
    let raw = zstd::decode_all(&packed[..]).expect("frames.bin.zst decompresses");
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(4).expect("truncated frame length");
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (frame, tail) = tail.split_at_checked(len).expect("truncated frame");
        frames.push(frame.to_vec());
        rest = tail;
    }
    frames
}

/// The corpus's full repository export.
pub(crate) fn corpus_repo_car() -> Vec<u8> {
    fixture_bytes("firehose-corpus/repo.car")
}

/// Hex of `bytes`, for failure messages that must reproduce an input.
pub(crate) fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}
