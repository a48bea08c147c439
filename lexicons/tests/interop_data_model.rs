//! Runs the ATProto data-model interop vectors (`data-model/*.json`) through [`data`].
//!
//! - `data-model-valid.json`: every `json` converts, encodes to DAG-CBOR and round-trips.
//! - `data-model-invalid.json`: every `json` is refused, with a path-naming error.
//! - `data-model-fixtures.json`: JSON -> DAG-CBOR gives exactly `cbor_base64`, its CID is `cid`,
//!   and CBOR -> JSON gives back `json`.
//!
//! An unknown file in the directory fails the test so that new vector files are noticed. All
//! failures are collected and reported together.

mod support;

use std::fmt::Write as _;

use atelier_lexicons::data;
use data_encoding::BASE64_NOPAD;
use serde_json::Value;

const VALID: &str = "data-model-valid.json";
const INVALID: &str = "data-model-invalid.json";
const FIXTURES: &str = "data-model-fixtures.json";

/// Reads one vector file as a JSON array of objects.
fn vectors(name: &str) -> Vec<Value> {
    let text = support::read_interop(&format!("data-model/{name}"));
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(_) => panic!("{name}: expected a JSON array of vectors"),
        Err(e) => panic!("{name}: not JSON: {e}"),
    }
}

/// A label for vector `index` of `file`, with its note when it has one.
fn label(file: &str, index: usize, vector: &Value) -> String {
    match vector.get("note").and_then(Value::as_str) {
        Some(note) => format!("{file}[{index}] ({note})"),
        None => format!("{file}[{index}]"),
    }
}

fn field<'a>(vector: &'a Value, name: &str, at: &str) -> Result<&'a Value, String> {
    vector
        .get(name)
        .ok_or_else(|| format!("{at}: the vector has no {name:?} field"))
}

fn check_valid(vector: &Value, at: &str) -> Result<(), String> {
    let json = field(vector, "json", at)?;
    let ipld = data::json_to_ipld(json).map_err(|e| format!("{at}: rejected: {e}"))?;
    let cbor = data::encode_dag_cbor(&ipld).map_err(|e| format!("{at}: cannot encode: {e}"))?;
    let decoded = data::decode_dag_cbor(&cbor).map_err(|e| format!("{at}: cannot decode: {e}"))?;
    if decoded != ipld {
        return Err(format!("{at}: DAG-CBOR round trip changed the value"));
    }
    data::validate_ipld(&decoded).map_err(|e| format!("{at}: decoded IPLD rejected: {e}"))?;
    let again = data::json_to_ipld(&data::ipld_to_json(&ipld))
        .map_err(|e| format!("{at}: ipld_to_json output rejected: {e}"))?;
    if again != ipld {
        return Err(format!("{at}: JSON round trip changed the value"));
    }
    Ok(())
}

fn check_invalid(vector: &Value, at: &str, report: &mut String) -> Result<(), String> {
    let json = field(vector, "json", at)?;
    match data::json_to_ipld(json) {
        Ok(ipld) => Err(format!("{at}: accepted as {ipld:?}")),
        Err(e) => {
            let _ = writeln!(report, "    {at}: {e}");
            Ok(())
        }
    }
}

fn check_fixture(vector: &Value, at: &str) -> Result<(), String> {
    let json = field(vector, "json", at)?;
    let cbor_base64 = field(vector, "cbor_base64", at)?
        .as_str()
        .ok_or_else(|| format!("{at}: cbor_base64 is not a string"))?;
    let cid = field(vector, "cid", at)?
        .as_str()
        .ok_or_else(|| format!("{at}: cid is not a string"))?;
    let expected_cbor = BASE64_NOPAD
        .decode(cbor_base64.as_bytes())
        .map_err(|e| format!("{at}: cbor_base64 does not decode: {e}"))?;

    let ipld = data::json_to_ipld(json).map_err(|e| format!("{at}: rejected: {e}"))?;
    let cbor = data::encode_dag_cbor(&ipld).map_err(|e| format!("{at}: cannot encode: {e}"))?;
    if cbor != expected_cbor {
        return Err(format!(
            "{at}: DAG-CBOR differs:\n      got      {}\n      expected {cbor_base64}",
            BASE64_NOPAD.encode(&cbor)
        ));
    }
    let computed = data::cid_for_dag_cbor(&cbor).to_string();
    if computed != cid {
        return Err(format!("{at}: CID {computed}, expected {cid}"));
    }
    let decoded =
        data::decode_dag_cbor(&expected_cbor).map_err(|e| format!("{at}: cannot decode: {e}"))?;
    data::validate_ipld(&decoded).map_err(|e| format!("{at}: decoded IPLD rejected: {e}"))?;
    let back = data::ipld_to_json(&decoded);
    if &back != json {
        return Err(format!(
            "{at}: CBOR -> JSON differs:\n      got      {back}\n      expected {json}"
        ));
    }
    Ok(())
}

#[test]
fn data_model_interop_vectors() {
    let dir = support::interop_dir().join("data-model");
    let mut failures = Vec::new();

    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        if ![VALID, INVALID, FIXTURES].contains(&name.as_str()) {
            failures.push(format!("{name}: unknown data-model vector file"));
        }
    }

    let mut report = String::new();
    let mut total = 0usize;
    for file in [VALID, INVALID, FIXTURES] {
        let mut passed = 0usize;
        let mut detail = String::new();
        for (index, vector) in vectors(file).iter().enumerate() {
            let at = label(file, index, vector);
            let result = match file {
                VALID => check_valid(vector, &at),
                INVALID => check_invalid(vector, &at, &mut detail),
                _ => check_fixture(vector, &at),
            };
            match result {
                Ok(()) => passed += 1,
                Err(problem) => failures.push(problem),
            }
        }
        let _ = writeln!(report, "  {file}: {passed} passed");
        report.push_str(&detail);
        total += passed;
    }

    println!("{report}data-model vectors: {total} passed");
    assert!(
        failures.is_empty(),
        "{} data-model vector failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total > 0,
        "no data-model vectors found in {}",
        dir.display()
    );
}
