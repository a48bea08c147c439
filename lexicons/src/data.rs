//! The ATProto data model: conversion between ATProto JSON and IPLD, data-model checks,
//! DAG-CBOR encoding and CID computation.
//!
//! - [`json_to_ipld`] reads ATProto JSON (`{"$link": cid}` links, `{"$bytes": base64}` bytes,
//!   `$type: blob` objects) into [`Ipld`], refusing what the data model forbids (floats, integers
//!   outside 64 bits, an empty or non-string `$type`, malformed links, bytes and blobs). Every
//!   error names the JSON path of the offending value, e.g. `$.blb.size: blob size must be an
//!   integer`.
//! - [`ipld_to_json`] is its inverse, for storing record JSON and emitting Jetstream JSON.
//! - [`validate_ipld`] applies the same checks to IPLD decoded from CBOR (the firehose path).
//! - [`encode_dag_cbor`] / [`decode_dag_cbor`] are the canonical DAG-CBOR codec, and
//!   [`cid_for_dag_cbor`] / [`cid_for_raw`] compute CIDv1 (SHA-256) for records and blobs.
//!
//! Legacy blobs (`{"cid": "...", "mimeType": "..."}`, no `$type`) can only be recognised with
//! the record's Lexicon, so at this level they are what they look like: an ordinary object with
//! two strings. They convert and round-trip unchanged.
//!
//! Paths are only rendered when an error is reported: on success no path string is built.

use std::collections::BTreeMap;

use cid::Cid;
use data_encoding::{BASE64, BASE64_NOPAD};
use ipld_core::ipld::Ipld;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Multicodec code of DAG-CBOR, the codec of record and repository-node CIDs.
pub const DAG_CBOR_CODEC: u64 = 0x71;
/// Multicodec code of raw bytes, the codec of blob CIDs.
pub const RAW_CODEC: u64 = 0x55;
/// Multihash code of SHA-256.
pub const SHA2_256_CODE: u64 = 0x12;
/// Deepest nesting of lists and maps accepted, the same as the DAG-CBOR decoder's limit.
pub const MAX_DEPTH: usize = 256;
/// Largest magnitude of an integer written as a float (`123.0`) that is still taken as an
/// integer: 2^53, the range in which every integer has an exact `f64`.
pub const MAX_SAFE_FLOAT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Something that is not valid in the ATProto data model, or a codec failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A value breaks a data-model rule; `path` locates it, JSONPath-style (`$.a.b[2]`).
    #[error("{path}: {reason}")]
    Invalid {
        /// Where the value is, from `$` (the top-level value).
        path: String,
        /// What is wrong with it.
        reason: InvalidReason,
    },
    /// DAG-CBOR encoding failed (after the data-model checks passed).
    #[error("DAG-CBOR encoding failed: {0}")]
    Encode(String),
    /// The bytes are not valid DAG-CBOR.
    #[error("DAG-CBOR decoding failed: {0}")]
    Decode(String),
}

impl DataError {
    /// The JSON path of the offending value, for [`DataError::Invalid`].
    pub fn path(&self) -> Option<&str> {
        match self {
            DataError::Invalid { path, .. } => Some(path),
            DataError::Encode(_) | DataError::Decode(_) => None,
        }
    }
}

/// The data-model rule a value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The top-level value of a record or node must be an object.
    #[error("the top-level value must be an object")]
    TopLevelNotObject,
    /// Floats are not part of the data model.
    #[error("floats are not allowed (only integers)")]
    Float,
    /// An integer outside the signed 64-bit range.
    #[error("integer outside the signed 64-bit range")]
    IntegerOutOfRange,
    /// An integer written as a float (`1e20`) beyond ±2^53, where floats stop being exact.
    #[error("integer written as a float must be within ±2^53")]
    UnsafeFloatInteger,
    /// Lists and maps nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// `$type` is present but not a string.
    #[error("$type must be a string")]
    TypeNotString,
    /// `$type` is the empty string.
    #[error("$type must not be empty")]
    TypeEmpty,
    /// `$link` is not a string.
    #[error("$link must be a string")]
    LinkNotString,
    /// `$link` is not a CIDv1 string.
    #[error("$link is not a valid CID: {0}")]
    LinkInvalidCid(String),
    /// A `$link` object has other keys.
    #[error("a $link object must have no other fields")]
    LinkExtraFields,
    /// `$bytes` is not a string.
    #[error("$bytes must be a string")]
    BytesNotString,
    /// `$bytes` is not standard base64.
    #[error("$bytes is not valid base64 (standard alphabet, padding optional): {0}")]
    BytesInvalidBase64(String),
    /// A `$bytes` object has other keys.
    #[error("a $bytes object must have no other fields")]
    BytesExtraFields,
    /// A blob lacks a required field.
    #[error("blob is missing the required {0:?} field")]
    BlobMissingField(&'static str),
    /// A blob's `ref` is not a link.
    #[error("blob ref must be a link ({{\"$link\": cid}})")]
    BlobRefNotLink,
    /// A blob's `mimeType` is not a string.
    #[error("blob mimeType must be a string")]
    BlobMimeTypeNotString,
    /// A blob's `mimeType` is empty.
    #[error("blob mimeType must not be empty")]
    BlobMimeTypeEmpty,
    /// A blob's `size` is not an integer.
    #[error("blob size must be an integer")]
    BlobSizeNotInteger,
    /// A blob's `size` is zero or negative.
    #[error("blob size must be a positive integer")]
    BlobSizeNotPositive,
}

/// One step of the path to a value, kept on the stack and rendered only for an error.
#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str, &'a Step<'a>),
    Index(usize, &'a Step<'a>),
}

impl Step<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match *self {
            Step::Root => out.push('$'),
            Step::Key(key, parent) => {
                parent.render_into(out);
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
                    && !key.as_bytes()[0].is_ascii_digit();
                if plain {
                    out.push('.');
                    out.push_str(key);
                } else {
                    // Serializing a string to JSON cannot fail; the fallback keeps this total.
                    let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("{key:?}"));
                    out.push('[');
                    out.push_str(&quoted);
                    out.push(']');
                }
            }
            Step::Index(index, parent) => {
                parent.render_into(out);
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }

    fn invalid(&self, reason: InvalidReason) -> DataError {
        DataError::Invalid {
            path: self.render(),
            reason,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON -> IPLD
// ---------------------------------------------------------------------------------------------

/// Converts an ATProto JSON record or node (the top level must be an object) to IPLD, checking
/// the data model on the way.
pub fn json_to_ipld(value: &Value) -> Result<Ipld, DataError> {
    if !value.is_object() {
        return Err(Step::Root.invalid(InvalidReason::TopLevelNotObject));
    }
    json_value(value, &Step::Root, 0)
}

/// Converts any ATProto JSON value (a field of a record, say) to IPLD, with the same checks as
/// [`json_to_ipld`] but no requirement that the value be an object.
pub fn json_value_to_ipld(value: &Value) -> Result<Ipld, DataError> {
    json_value(value, &Step::Root, 0)
}

fn json_value(value: &Value, at: &Step<'_>, depth: usize) -> Result<Ipld, DataError> {
    match value {
        Value::Null => Ok(Ipld::Null),
        Value::Bool(b) => Ok(Ipld::Bool(*b)),
        Value::Number(n) => json_number(n, at).map(|i| Ipld::Integer(i128::from(i))),
        Value::String(s) => Ok(Ipld::String(s.clone())),
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(at.invalid(InvalidReason::TooDeep));
            }
            let mut list = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                list.push(json_value(item, &Step::Index(index, at), depth + 1)?);
            }
            Ok(Ipld::List(list))
        }
        Value::Object(map) => {
            if depth >= MAX_DEPTH {
                return Err(at.invalid(InvalidReason::TooDeep));
            }
            json_object(map, at, depth)
        }
    }
}

/// Reads a JSON number as a data-model integer.
fn json_number(n: &Number, at: &Step<'_>) -> Result<i64, DataError> {
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    if n.is_u64() {
        return Err(at.invalid(InvalidReason::IntegerOutOfRange));
    }
    let Some(f) = n.as_f64() else {
        return Err(at.invalid(InvalidReason::Float));
    };
    if !f.is_finite() || f.fract() != 0.0 {
        return Err(at.invalid(InvalidReason::Float));
    }
    if f.abs() > MAX_SAFE_FLOAT_INTEGER {
        return Err(at.invalid(InvalidReason::UnsafeFloatInteger));
    }
    // The value is integral and within ±2^53, so the conversion is exact.
    Ok(f as i64)
}

fn json_object(map: &Map<String, Value>, at: &Step<'_>, depth: usize) -> Result<Ipld, DataError> {
    if let Some(link) = map.get("$link") {
        if map.len() != 1 {
            return Err(at.invalid(InvalidReason::LinkExtraFields));
        }
        let link_at = Step::Key("$link", at);
        let Value::String(text) = link else {
            return Err(link_at.invalid(InvalidReason::LinkNotString));
        };
        return parse_link(text)
            .map(Ipld::Link)
            .map_err(|reason| link_at.invalid(reason));
    }
    if let Some(bytes) = map.get("$bytes") {
        if map.len() != 1 {
            return Err(at.invalid(InvalidReason::BytesExtraFields));
        }
        let bytes_at = Step::Key("$bytes", at);
        let Value::String(text) = bytes else {
            return Err(bytes_at.invalid(InvalidReason::BytesNotString));
        };
        return decode_base64(text)
            .map(Ipld::Bytes)
            .map_err(|reason| bytes_at.invalid(reason));
    }
    if let Some(kind) = map.get("$type") {
        let type_at = Step::Key("$type", at);
        match kind {
            Value::String(s) if s.is_empty() => {
                return Err(type_at.invalid(InvalidReason::TypeEmpty));
            }
            Value::String(s) if s == "blob" => check_json_blob(map, at)?,
            Value::String(_) => {}
            _ => return Err(type_at.invalid(InvalidReason::TypeNotString)),
        }
    }
    let mut out = BTreeMap::new();
    for (key, item) in map {
        let item = json_value(item, &Step::Key(key, at), depth + 1)?;
        out.insert(key.clone(), item);
    }
    Ok(Ipld::Map(out))
}

/// Checks the fields of a JSON `$type: blob` object; the caller converts them afterwards.
fn check_json_blob(map: &Map<String, Value>, at: &Step<'_>) -> Result<(), DataError> {
    let field = |name: &'static str| {
        map.get(name)
            .ok_or_else(|| at.invalid(InvalidReason::BlobMissingField(name)))
    };
    let reference = field("ref")?;
    let is_link = matches!(reference, Value::Object(m) if m.contains_key("$link"));
    if !is_link {
        return Err(Step::Key("ref", at).invalid(InvalidReason::BlobRefNotLink));
    }
    match field("mimeType")? {
        Value::String(s) if s.is_empty() => {
            return Err(Step::Key("mimeType", at).invalid(InvalidReason::BlobMimeTypeEmpty));
        }
        Value::String(_) => {}
        _ => return Err(Step::Key("mimeType", at).invalid(InvalidReason::BlobMimeTypeNotString)),
    }
    let size_at = Step::Key("size", at);
    let size = match field("size")? {
        Value::Number(n) => match json_number(n, &size_at) {
            Ok(size) => size,
            Err(_) => return Err(size_at.invalid(InvalidReason::BlobSizeNotInteger)),
        },
        _ => return Err(size_at.invalid(InvalidReason::BlobSizeNotInteger)),
    };
    if size <= 0 {
        return Err(size_at.invalid(InvalidReason::BlobSizeNotPositive));
    }
    Ok(())
}

/// Parses the string of a `$link`: the CID syntax, then a CIDv1 that decodes fully.
fn parse_link(text: &str) -> Result<Cid, InvalidReason> {
    crate::syntax::parse_cid(text).map_err(|e| InvalidReason::LinkInvalidCid(e.reason))
}

/// Decodes standard base64, with or without `=` padding (the spec makes padding optional);
/// non-zero trailing bits are refused so that each byte string has one encoding.
fn decode_base64(text: &str) -> Result<Vec<u8>, InvalidReason> {
    let encoding = if text.ends_with('=') {
        &BASE64
    } else {
        &BASE64_NOPAD
    };
    encoding
        .decode(text.as_bytes())
        .map_err(|e| InvalidReason::BytesInvalidBase64(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// IPLD -> JSON
// ---------------------------------------------------------------------------------------------

/// Converts IPLD to ATProto JSON: links become `{"$link": cid}` (base32 for CIDv1), bytes become
/// `{"$bytes": base64}` (standard alphabet, no padding), everything else maps directly.
///
/// This never fails. Values outside the data model are still rendered, for debugging: a float
/// becomes a JSON number (`null` if not finite), and an integer beyond the 64-bit ranges
/// becomes the nearest float. Check with [`validate_ipld`] first when that matters.
pub fn ipld_to_json(ipld: &Ipld) -> Value {
    match ipld {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => {
            if let Ok(i) = i64::try_from(*i) {
                Value::Number(Number::from(i))
            } else if let Ok(u) = u64::try_from(*i) {
                Value::Number(Number::from(u))
            } else {
                // Only reachable for values outside the data model; precision is lost.
                Number::from_f64(*i as f64).map_or(Value::Null, Value::Number)
            }
        }
        Ipld::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(bytes) => {
            let mut map = Map::new();
            map.insert(
                "$bytes".to_owned(),
                Value::String(BASE64_NOPAD.encode(bytes)),
            );
            Value::Object(map)
        }
        Ipld::List(items) => Value::Array(items.iter().map(ipld_to_json).collect()),
        Ipld::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, item)| (key.clone(), ipld_to_json(item)))
                .collect(),
        ),
        Ipld::Link(cid) => {
            let mut map = Map::new();
            map.insert("$link".to_owned(), Value::String(cid.to_string()));
            Value::Object(map)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IPLD checks
// ---------------------------------------------------------------------------------------------

/// How much of the data model an IPLD walk checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// What canonical DAG-CBOR for atproto needs: no floats, 64-bit signed integers, bounded
    /// depth.
    Codec,
    /// All data-model rules: [`Checks::Codec`], plus `$type` and blob structure.
    Model,
}

/// Checks IPLD (decoded from CBOR, say) against the data model, with the rules
/// [`json_to_ipld`] applies to JSON: no floats, integers in the signed 64-bit range, `$type` a
/// non-empty string when present, blobs (`$type: blob`) with a link `ref`, a non-empty string
/// `mimeType` and a positive integer `size`, and nesting at most [`MAX_DEPTH`] deep.
pub fn validate_ipld(ipld: &Ipld) -> Result<(), DataError> {
    if !matches!(ipld, Ipld::Map(_)) {
        return Err(Step::Root.invalid(InvalidReason::TopLevelNotObject));
    }
    check_ipld(ipld, &Step::Root, 0, Checks::Model)
}

fn check_ipld(ipld: &Ipld, at: &Step<'_>, depth: usize, checks: Checks) -> Result<(), DataError> {
    match ipld {
        Ipld::Null | Ipld::Bool(_) | Ipld::String(_) | Ipld::Bytes(_) | Ipld::Link(_) => Ok(()),
        Ipld::Float(_) => Err(at.invalid(InvalidReason::Float)),
        Ipld::Integer(i) => {
            if i64::try_from(*i).is_ok() {
                Ok(())
            } else {
                Err(at.invalid(InvalidReason::IntegerOutOfRange))
            }
        }
        Ipld::List(items) => {
            if depth >= MAX_DEPTH {
                return Err(at.invalid(InvalidReason::TooDeep));
            }
            for (index, item) in items.iter().enumerate() {
                check_ipld(item, &Step::Index(index, at), depth + 1, checks)?;
            }
            Ok(())
        }
        Ipld::Map(entries) => {
            if depth >= MAX_DEPTH {
                return Err(at.invalid(InvalidReason::TooDeep));
            }
            if checks == Checks::Model {
                check_ipld_type(entries, at)?;
            }
            for (key, item) in entries {
                check_ipld(item, &Step::Key(key, at), depth + 1, checks)?;
            }
            Ok(())
        }
    }
}

/// Checks `$type` and, for `$type: blob`, the blob fields of an IPLD map.
fn check_ipld_type(entries: &BTreeMap<String, Ipld>, at: &Step<'_>) -> Result<(), DataError> {
    let Some(kind) = entries.get("$type") else {
        return Ok(());
    };
    let type_at = Step::Key("$type", at);
    match kind {
        Ipld::String(s) if s.is_empty() => Err(type_at.invalid(InvalidReason::TypeEmpty)),
        Ipld::String(s) if s == "blob" => {
            let field = |name: &'static str| {
                entries
                    .get(name)
                    .ok_or_else(|| at.invalid(InvalidReason::BlobMissingField(name)))
            };
            if !matches!(field("ref")?, Ipld::Link(_)) {
                return Err(Step::Key("ref", at).invalid(InvalidReason::BlobRefNotLink));
            }
            let mime_at = Step::Key("mimeType", at);
            match field("mimeType")? {
                Ipld::String(s) if s.is_empty() => {
                    return Err(mime_at.invalid(InvalidReason::BlobMimeTypeEmpty));
                }
                Ipld::String(_) => {}
                _ => return Err(mime_at.invalid(InvalidReason::BlobMimeTypeNotString)),
            }
            let size_at = Step::Key("size", at);
            match field("size")? {
                Ipld::Integer(size) if *size > 0 => Ok(()),
                Ipld::Integer(_) => Err(size_at.invalid(InvalidReason::BlobSizeNotPositive)),
                _ => Err(size_at.invalid(InvalidReason::BlobSizeNotInteger)),
            }
        }
        Ipld::String(_) => Ok(()),
        _ => Err(type_at.invalid(InvalidReason::TypeNotString)),
    }
}

// ---------------------------------------------------------------------------------------------
// DAG-CBOR and CIDs
// ---------------------------------------------------------------------------------------------

/// Encodes IPLD as canonical DAG-CBOR (map keys sorted length-first, shortest integer forms).
///
/// Refuses what atproto's DAG-CBOR cannot hold: floats, integers outside the signed 64-bit
/// range, and nesting deeper than [`MAX_DEPTH`]. It does not check `$type` or blob structure
/// (use [`validate_ipld`]), so it also encodes repository nodes and commits.
pub fn encode_dag_cbor(ipld: &Ipld) -> Result<Vec<u8>, DataError> {
    check_ipld(ipld, &Step::Root, 0, Checks::Codec)?;
    serde_ipld_dagcbor::to_vec(ipld).map_err(|e| DataError::Encode(e.to_string()))
}

/// Decodes DAG-CBOR bytes (one complete value, no trailing bytes) to IPLD.
///
/// This is the codec only: floats decode as [`Ipld::Float`]; call [`validate_ipld`] to apply
/// the data-model rules.
pub fn decode_dag_cbor(bytes: &[u8]) -> Result<Ipld, DataError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DataError::Decode(e.to_string()))
}

fn sha256_cid(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    // `wrap` fails only for a digest longer than 64 bytes; SHA-256 always gives 32, whatever the
    // input, so this cannot fire.
    let hash = cid::multihash::Multihash::<64>::wrap(SHA2_256_CODE, &digest)
        .expect("a 32-byte SHA-256 digest always fits a 64-byte multihash");
    Cid::new_v1(codec, hash)
}

/// The CIDv1 (DAG-CBOR codec 0x71, SHA-256) of DAG-CBOR bytes, as for records and repository
/// nodes.
pub fn cid_for_dag_cbor(bytes: &[u8]) -> Cid {
    sha256_cid(DAG_CBOR_CODEC, bytes)
}

/// The CIDv1 (raw codec 0x55, SHA-256) of arbitrary bytes, as for blobs.
pub fn cid_for_raw(bytes: &[u8]) -> Cid {
    sha256_cid(RAW_CODEC, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error_text(value: Value) -> String {
        match json_to_ipld(&value) {
            Ok(ipld) => format!("accepted: {ipld:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn paths_name_the_offending_value() {
        assert_eq!(
            error_text(
                json!({"blb": {"$type": "blob", "ref": {"$link": "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"}, "mimeType": "image/jpeg", "size": "10000"}})
            ),
            "$.blb.size: blob size must be an integer"
        );
        assert_eq!(
            error_text(json!({"a": [1, {"b c": [0.5]}]})),
            "$.a[1][\"b c\"][0]: floats are not allowed (only integers)"
        );
        assert_eq!(
            error_text(json!({"r": {"$type": ""}})),
            "$.r.$type: $type must not be empty"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            json_to_ipld(&json!({"a": 123.0})),
            Ok(Ipld::Map(BTreeMap::from([(
                "a".to_owned(),
                Ipld::Integer(123)
            )])))
        );
        assert!(json_to_ipld(&json!({"a": i64::MAX})).is_ok());
        assert!(json_to_ipld(&json!({"a": u64::MAX})).is_err());
        assert!(json_to_ipld(&json!({"a": 1e300})).is_err());
    }

    #[test]
    fn bytes_padding_is_optional_but_must_be_right() {
        assert_eq!(
            json_value_to_ipld(&json!({"$bytes": "AQI"})),
            Ok(Ipld::Bytes(vec![1, 2]))
        );
        assert_eq!(
            json_value_to_ipld(&json!({"$bytes": "AQI="})),
            Ok(Ipld::Bytes(vec![1, 2]))
        );
        assert!(json_value_to_ipld(&json!({"$bytes": "AQI=="})).is_err());
        assert!(json_value_to_ipld(&json!({"$bytes": "AQ-_"})).is_err());
    }

    #[test]
    fn codec_refuses_floats_and_deep_nesting() {
        assert!(encode_dag_cbor(&Ipld::Float(1.5)).is_err());
        let mut deep = Ipld::Null;
        for _ in 0..(MAX_DEPTH + 1) {
            deep = Ipld::List(vec![deep]);
        }
        assert!(matches!(
            encode_dag_cbor(&deep),
            Err(DataError::Invalid {
                reason: InvalidReason::TooDeep,
                ..
            })
        ));
    }

    #[test]
    fn raw_cid() {
        assert_eq!(
            cid_for_raw(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }
}
