//! The atproto interop vectors for lexicons: schema documents (`lexicon/lexicon-*.json`,
//! `lexicon/catalog/*.json`) and record data validated against the catalog
//! (`lexicon/record-data-*.json`).
//!
//! Every test reads its vectors at run time, prints how many it checked, and collects all
//! failures before panicking with the full list.

mod support;

use atelier_lexicons::schema::{Catalog, LexiconDoc, parse_document, parse_document_value};
use atelier_lexicons::validate::{Mode, ValidationError};
use serde_json::Value;

/// Reads a JSON file under the interop directory.
fn read_json(relative: &str) -> Value {
    let text = support::read_interop(relative);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// The cases of a fixture file: a JSON array of objects.
fn cases(relative: &str) -> Vec<Value> {
    match read_json(relative) {
        Value::Array(cases) => cases,
        other => panic!("{relative}: expected an array of cases, got {other}"),
    }
}

fn name_of(case: &Value) -> &str {
    case.get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
}

fn finish(what: &str, total: usize, failures: Vec<String>) {
    println!("{what}: {} of {total} passed", total - failures.len());
    assert!(
        failures.is_empty(),
        "{what}: {} of {total} failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// The catalog documents, as `(file name, JSON text)`, sorted by file name.
fn catalog_files() -> Vec<(String, String)> {
    let dir = support::interop_dir().join("lexicon/catalog");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no catalog files in {}", dir.display());
    files
}

fn catalog() -> Catalog {
    let mut catalog = Catalog::new();
    for (name, text) in catalog_files() {
        if let Err(e) = catalog.add_json(&text) {
            panic!("catalog file {name} rejected: {e}");
        }
    }
    catalog
}

/// Serializing a parsed document gives back the JSON it was parsed from.
fn round_trips(doc: &LexiconDoc, original: &Value) -> Result<(), String> {
    let back = serde_json::to_value(doc).map_err(|e| format!("cannot serialize: {e}"))?;
    if back == *original {
        Ok(())
    } else {
        Err(format!("does not round-trip; re-serialized as {back}"))
    }
}

#[test]
fn lexicon_valid_vectors_parse_and_round_trip() {
    let cases = cases("lexicon/lexicon-valid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let lexicon = &case["lexicon"];
        match parse_document_value(lexicon) {
            Ok(doc) => {
                if let Err(e) = round_trips(&doc, lexicon) {
                    failures.push(format!("{}: {e}", name_of(case)));
                }
            }
            Err(e) => failures.push(format!("{}: rejected: {e}", name_of(case))),
        }
    }
    finish("lexicon-valid", cases.len(), failures);
}

#[test]
fn lexicon_invalid_vectors_are_rejected_precisely() {
    let cases = cases("lexicon/lexicon-invalid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let lexicon = &case["lexicon"];
        match parse_document_value(lexicon) {
            Ok(_) => failures.push(format!("{}: accepted", name_of(case))),
            Err(e) => {
                let message = e.to_string();
                println!("  {}: {message}", name_of(case));
                // When the document has a string id, the error must name it.
                if let Some(id) = lexicon.get("id").and_then(Value::as_str)
                    && !message.contains(id)
                {
                    failures.push(format!(
                        "{}: error does not name the NSID {id}: {message}",
                        name_of(case)
                    ));
                }
            }
        }
    }
    finish("lexicon-invalid", cases.len(), failures);
}

#[test]
fn catalog_files_parse_and_round_trip() {
    let files = catalog_files();
    let mut failures = Vec::new();
    for (name, text) in &files {
        let original: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        match parse_document(text) {
            Ok(doc) => {
                if let Err(e) = round_trips(&doc, &original) {
                    failures.push(format!("{name}: {e}"));
                }
                // `Deserialize` goes through the same checking parser.
                if let Err(e) = serde_json::from_str::<LexiconDoc>(text) {
                    failures.push(format!("{name}: serde deserialize failed: {e}"));
                }
            }
            Err(e) => failures.push(format!("{name}: rejected: {e}")),
        }
    }
    finish("lexicon/catalog", files.len(), failures);
}

/// The record's NSID, from its `$type`.
fn record_nsid(case: &Value) -> Result<&str, String> {
    case["data"]
        .get("$type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: data has no string $type", name_of(case)))
}

#[test]
fn record_data_valid_vectors_pass() {
    let catalog = catalog();
    let cases = cases("lexicon/record-data-valid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let nsid = match record_nsid(case) {
            Ok(nsid) => nsid,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        if let Err(e) = catalog.validate_record(nsid, &case["data"], Mode::Standard) {
            failures.push(format!("{}: rejected: {e}", name_of(case)));
        }
        if let Some(rkey) = case.get("rkey").and_then(Value::as_str)
            && let Err(e) = catalog.validate_record_key(nsid, rkey)
        {
            failures.push(format!("{}: record key rejected: {e}", name_of(case)));
        }
    }
    finish("record-data-valid", cases.len(), failures);
}

#[test]
fn record_data_invalid_vectors_fail_with_nsid_and_path() {
    let catalog = catalog();
    let cases = cases("lexicon/record-data-invalid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let nsid = match record_nsid(case) {
            Ok(nsid) => nsid,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        match catalog.validate_record(nsid, &case["data"], Mode::Standard) {
            Ok(_) => failures.push(format!("{}: accepted", name_of(case))),
            Err(e @ ValidationError::Invalid { .. }) => {
                println!("  {}: {e}", name_of(case));
                if e.nsid() != nsid || !e.path().is_some_and(|p| p.starts_with('$')) {
                    failures.push(format!("{}: error lacks NSID or path: {e}", name_of(case)));
                }
            }
            Err(e) => failures.push(format!("{}: wrong kind of error: {e}", name_of(case))),
        }
    }
    finish("record-data-invalid", cases.len(), failures);
}

#[test]
fn invalid_record_data_also_fails_in_lenient_mode() {
    // Lenient mode only relaxes AC's known quirks; the spec's rules still hold.
    let catalog = catalog();
    let cases = cases("lexicon/record-data-invalid.json");
    let mut failures = Vec::new();
    for case in &cases {
        let Ok(nsid) = record_nsid(case) else {
            continue;
        };
        for mode in [Mode::Lenient, Mode::Strict] {
            if catalog.validate_record(nsid, &case["data"], mode).is_ok() {
                failures.push(format!("{}: accepted in {mode:?} mode", name_of(case)));
            }
        }
    }
    finish(
        "record-data-invalid (lenient, strict)",
        cases.len(),
        failures,
    );
}

#[test]
fn unknown_vectors_fail_on_the_unknown_field_itself() {
    // The three "unknown wrong type" vectors also lack the required `integer`, so they would
    // fail for that alone; with `integer` added they must still fail, at `$.unknown`.
    let catalog = catalog();
    let cases = cases("lexicon/record-data-invalid.json");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases
        .iter()
        .filter(|c| name_of(c).starts_with("unknown wrong type"))
    {
        checked += 1;
        let mut data = case["data"].clone();
        data["integer"] = Value::from(1);
        match catalog.validate_record("example.lexicon.record", &data, Mode::Standard) {
            Err(e) if e.path() == Some("$.unknown") => println!("  {}: {e}", name_of(case)),
            other => failures.push(format!("{}: {other:?}", name_of(case))),
        }
    }
    assert!(checked > 0, "no `unknown wrong type` vectors found");
    finish("unknown wrong type (with integer)", checked, failures);
}

#[test]
fn record_keys_follow_the_key_type() {
    let catalog = catalog();
    // example.lexicon.record has `"key": "literal:demo"`.
    assert!(
        catalog
            .validate_record_key("example.lexicon.record", "demo")
            .is_ok()
    );
    let err = catalog
        .validate_record_key("example.lexicon.record", "other")
        .expect_err("a key other than the literal");
    assert!(err.to_string().contains("literal:demo"), "{err}");
    let err = catalog
        .validate_record_key("example.lexicon.record", "..")
        .expect_err("an invalid record key");
    assert_eq!(err.nsid(), "example.lexicon.record");
    // Not a record type.
    let err = catalog
        .validate_record_key("example.lexicon.query", "demo")
        .expect_err("a query has no records");
    assert!(matches!(err, ValidationError::NotARecord { .. }), "{err}");
}
