//! Shared helpers for the integration tests: finding the ATProto interop test vectors.
//!
//! The vectors live in `shared/fixtures/atproto-interop-tests/`, beside the repository
//! (`<repo>/../shared/...`). Set `ATELIER_FIXTURES` to look elsewhere: it may name the
//! `atproto-interop-tests` directory itself or a fixtures directory that contains it. A missing
//! directory fails the test, saying where it looked: the vectors are never silently skipped.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The name of the environment variable that overrides where the fixtures are.
pub(crate) const FIXTURES_ENV: &str = "ATELIER_FIXTURES";

/// The `atproto-interop-tests` directory. Panics (failing the calling test) with every place it
/// looked when the directory cannot be found.
pub(crate) fn interop_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os(FIXTURES_ENV) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            vec![dir.join("atproto-interop-tests"), dir]
        }
        _ => vec![
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/fixtures/atproto-interop-tests"),
        ],
    };
    for dir in &candidates {
        // The interop directory is recognised by its `syntax/` and `data-model/` folders.
        if dir.join("syntax").is_dir() || dir.join("data-model").is_dir() {
            return dir.clone();
        }
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|dir| format!("  {}", dir.display()))
        .collect();
    panic!(
        "the atproto interop test vectors were not found; looked in:\n{}\n\
         set {FIXTURES_ENV} to the atproto-interop-tests directory (or the fixtures directory \
         that contains it)",
        looked.join("\n")
    );
}

/// Reads a file under [`interop_dir`], e.g. `data-model/data-model-valid.json`. Panics with the
/// full path when it cannot be read.
pub(crate) fn read_interop(relative: &str) -> String {
    let path = interop_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read interop file {}: {e}", path.display()))
}
