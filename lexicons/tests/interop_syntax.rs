//! Runs every ATProto syntax interop vector (`syntax/*.txt`) through [`syntax`].
//!
//! Files are named `<format>_<level>_<valid|invalid>.txt`, where the level is `syntax` (the
//! lexical check) or `parse` (the strict, semantic check). Lines starting with `#` and empty
//! lines are skipped; every other line is a vector taken verbatim, because leading and trailing
//! spaces are part of some vectors. A file whose name does not fit, or whose format is unknown,
//! fails the test so that new vector files are noticed. All failures are collected and reported
//! together.

mod support;

use std::fmt::Write as _;

use atelier_lexicons::syntax::{self, Format, SyntaxError};

/// The format tested by a file-name prefix.
fn format_for_prefix(prefix: &str) -> Option<Format> {
    Some(match prefix {
        "atidentifier" => Format::AtIdentifier,
        "aturi" => Format::AtUri,
        "cid" => Format::Cid,
        "datetime" => Format::Datetime,
        "did" => Format::Did,
        "handle" => Format::Handle,
        "language" => Format::Language,
        "nsid" => Format::Nsid,
        "recordkey" => Format::RecordKey,
        "tid" => Format::Tid,
        "uri" => Format::Uri,
        _ => return None,
    })
}

/// What a vector file asserts about each of its lines.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `*_syntax_valid`: accepted at every level.
    SyntaxValid,
    /// `*_syntax_invalid`: rejected at every level, the lexical check included.
    SyntaxInvalid,
    /// `*_parse_valid`: accepted by the strict check.
    ParseValid,
    /// `*_parse_invalid`: lexically fine, rejected by the strict check.
    ParseInvalid,
}

fn classify(file_name: &str) -> Result<(Format, Expect), String> {
    let stem = file_name
        .strip_suffix(".txt")
        .ok_or_else(|| format!("{file_name}: not a .txt vector file"))?;
    let parts: Vec<&str> = stem.split('_').collect();
    let [prefix, level, outcome] = parts.as_slice() else {
        return Err(format!(
            "{file_name}: expected <format>_<syntax|parse>_<valid|invalid>.txt"
        ));
    };
    let format = format_for_prefix(prefix)
        .ok_or_else(|| format!("{file_name}: unknown format prefix {prefix:?}"))?;
    let expect = match (*level, *outcome) {
        ("syntax", "valid") => Expect::SyntaxValid,
        ("syntax", "invalid") => Expect::SyntaxInvalid,
        ("parse", "valid") => Expect::ParseValid,
        ("parse", "invalid") => Expect::ParseInvalid,
        _ => {
            return Err(format!(
                "{file_name}: unknown kind {level}_{outcome} (expected syntax/parse and valid/invalid)"
            ));
        }
    };
    Ok((format, expect))
}

/// Describes the outcome of a check for a failure message.
fn outcome(result: &Result<(), SyntaxError>) -> String {
    match result {
        Ok(()) => "accepted".to_owned(),
        Err(e) => format!("rejected ({})", e.reason),
    }
}

/// Checks one vector; returns what went wrong, if anything.
fn check(format: Format, expect: Expect, value: &str) -> Option<String> {
    let lexical = syntax::check_syntax(format, value);
    let lexicon = syntax::validate(format, value);
    let strict = syntax::check_strict(format, value);
    let ok = match expect {
        Expect::SyntaxValid => lexical.is_ok() && lexicon.is_ok() && strict.is_ok(),
        Expect::SyntaxInvalid => lexical.is_err() && lexicon.is_err() && strict.is_err(),
        Expect::ParseValid => strict.is_ok(),
        Expect::ParseInvalid => lexical.is_ok() && strict.is_err(),
    };
    (!ok).then(|| {
        format!(
            "expected {expect:?}; check_syntax {}, validate {}, check_strict {}",
            outcome(&lexical),
            outcome(&lexicon),
            outcome(&strict)
        )
    })
}

/// Shortens a long vector for display.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

#[test]
fn syntax_interop_vectors() {
    let dir = support::interop_dir().join("syntax");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();

    let mut failures = Vec::new();
    let mut report = String::new();
    let mut total = 0usize;
    for name in &names {
        let (format, expect) = match classify(name) {
            Ok(found) => found,
            Err(problem) => {
                failures.push(problem);
                continue;
            }
        };
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut passed = 0usize;
        for (index, line) in text.split('\n').enumerate() {
            // Only a line ending's carriage return is dropped; all other whitespace is data.
            let value = line.strip_suffix('\r').unwrap_or(line);
            if value.is_empty() || value.starts_with('#') {
                continue;
            }
            match check(format, expect, value) {
                None => passed += 1,
                Some(problem) => {
                    failures.push(format!("{name}:{}: {}: {problem}", index + 1, shown(value)));
                }
            }
        }
        let _ = writeln!(report, "  {name}: {passed} passed ({format})");
        total += passed;
    }

    println!("{report}syntax vectors: {total} passed");
    assert!(
        failures.is_empty(),
        "{} syntax vector failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 0, "no syntax vectors found in {}", dir.display());
}
