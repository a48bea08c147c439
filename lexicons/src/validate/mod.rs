//! Record validation against lexicon schemas, in three modes.
//!
//! [`Catalog::validate_record`] checks a record (ATProto JSON form: `{"$link": ..}`,
//! `{"$bytes": ..}`, `{"$type": "blob", ...}`) against the record type `nsid` in the catalog:
//!
//! - [`Mode::Standard`]: the lexicon spec's rules. Undeclared fields are allowed.
//! - [`Mode::Strict`]: Standard, plus undeclared fields are rejected and each of AC's known
//!   quirks ([`quirks::QUIRKS`]) is rejected with a message naming the field. For what
//!   Atelier itself publishes.
//! - [`Mode::Lenient`]: for records from the wild. AC's known quirks are repaired (legacy
//!   field names renamed, missing fields tolerated) and every repair, as well as every
//!   undeclared field kept, is reported in [`Validated::repairs`]. Anything else that breaks
//!   the spec still fails.
//!
//! Errors are typed: [`ValidationError::Invalid`] names the record NSID, the JSON path of the
//! offending value (`$.tags[3]`) and the broken [`Rule`], and displays as e.g.
//! `computer.aesthetic.painting: $.code: string longer than maxLength 10 (got 14)`.
//!
//! Validation never panics, walks the schema by reference (no cloning of schemas), and bounds
//! its recursion depth.

pub mod quirks;

use std::fmt;

use serde_json::{Map, Value};
use unicode_segmentation::UnicodeSegmentation;

use crate::schema::{
    Catalog, LexBlob, LexBytes, LexInteger, LexObject, LexRecord, LexString, LexType, LexUnion,
    RecordKeyType, ResolvedDef, json_kind, split_ref,
};
use crate::syntax::{self, Format, SyntaxError};

use self::quirks::{Quirk, QuirkKind, quirks_for};

/// How deeply validation may recurse (data nesting plus ref hops).
const MAX_DEPTH: usize = 256;

/// How strictly to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The lexicon spec's rules; undeclared fields are allowed.
    #[default]
    Standard,
    /// Standard, plus undeclared fields and AC's known quirks are rejected.
    Strict,
    /// Standard, plus AC's known quirks are repaired; repairs and undeclared fields reported.
    Lenient,
}

/// A record that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The record, with any repairs applied (unchanged outside [`Mode::Lenient`]).
    pub record: Value,
    /// What was repaired or tolerated, in the order found (always empty outside
    /// [`Mode::Lenient`]).
    pub repairs: Vec<Repair>,
}

impl Validated {
    /// Whether the record needed no repairs and carried no undeclared fields.
    pub fn is_clean(&self) -> bool {
        self.repairs.is_empty()
    }
}

/// Something lenient validation repaired or tolerated.
///
/// `path` is always the JSON path of the object holding the field (`$` for the record).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Repair {
    /// An undeclared field, kept as is.
    UndeclaredField {
        /// Path of the object holding the field.
        path: String,
        /// The field.
        field: String,
        /// Whether the field is one of AC's known quirks ([`quirks::QUIRKS`]).
        known_quirk: bool,
    },
    /// A legacy field name, renamed to the declared one.
    RenamedField {
        /// Path of the object holding the field.
        path: String,
        /// The legacy name.
        from: String,
        /// The declared name.
        to: String,
    },
    /// A required field that is missing, tolerated as a known quirk.
    MissingRequired {
        /// Path of the object lacking the field.
        path: String,
        /// The missing field.
        field: String,
    },
}

impl Repair {
    /// Path of the object holding the repaired field.
    pub fn path(&self) -> &str {
        match self {
            Repair::UndeclaredField { path, .. }
            | Repair::RenamedField { path, .. }
            | Repair::MissingRequired { path, .. } => path,
        }
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repair::UndeclaredField {
                path,
                field,
                known_quirk,
            } => {
                write!(f, "{path}: kept undeclared field `{field}`")?;
                if *known_quirk {
                    f.write_str(" (known AC quirk)")?;
                }
                Ok(())
            }
            Repair::RenamedField { path, from, to } => {
                write!(f, "{path}: renamed field `{from}` to `{to}`")
            }
            Repair::MissingRequired { path, field } => {
                write!(f, "{path}: required field `{field}` is missing")
            }
        }
    }
}

/// The rule a value broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    /// The value has the wrong JSON type.
    #[error("expected {expected}, got {got}")]
    WrongType {
        /// What the schema expects.
        expected: &'static str,
        /// The JSON kind found.
        got: &'static str,
    },
    /// A required field is missing.
    #[error("missing required field `{field}`")]
    MissingRequired {
        /// The missing field.
        field: String,
    },
    /// A `null` where the field is not nullable.
    #[error("null is not allowed (field is not nullable)")]
    NotNullable,
    /// The record has no `$type`.
    #[error("missing record `$type` (expected {expected:?})")]
    MissingRecordType {
        /// The expected NSID.
        expected: String,
    },
    /// The record's `$type` is not the NSID being validated.
    #[error("record `$type` is {got}, expected {expected:?}")]
    RecordTypeMismatch {
        /// The expected NSID.
        expected: String,
        /// What was found (JSON text).
        got: String,
    },
    /// A string longer than `maxLength` (UTF-8 bytes).
    #[error("string longer than maxLength {max} (got {got})")]
    StringTooLong {
        /// The limit.
        max: u64,
        /// The length in UTF-8 bytes.
        got: u64,
    },
    /// A string shorter than `minLength` (UTF-8 bytes).
    #[error("string shorter than minLength {min} (got {got})")]
    StringTooShort {
        /// The limit.
        min: u64,
        /// The length in UTF-8 bytes.
        got: u64,
    },
    /// A string with more graphemes than `maxGraphemes`.
    #[error("string longer than maxGraphemes {max} (got {got})")]
    TooManyGraphemes {
        /// The limit.
        max: u64,
        /// The number of grapheme clusters.
        got: u64,
    },
    /// A string with fewer graphemes than `minGraphemes`.
    #[error("string shorter than minGraphemes {min} (got {got})")]
    TooFewGraphemes {
        /// The limit.
        min: u64,
        /// The number of grapheme clusters.
        got: u64,
    },
    /// A string that does not have its `format`'s syntax.
    #[error("{0}")]
    Format(SyntaxError),
    /// A value outside `enum`.
    #[error("value {got} is not in enum [{}]", allowed.join(", "))]
    NotInEnum {
        /// The value (JSON text).
        got: String,
        /// The allowed values (JSON text).
        allowed: Vec<String>,
    },
    /// A value other than `const`.
    #[error("value {got} is not the const {expected}")]
    ConstMismatch {
        /// The const (JSON text).
        expected: String,
        /// The value (JSON text).
        got: String,
    },
    /// An integer below `minimum`.
    #[error("integer below minimum {min} (got {got})")]
    BelowMinimum {
        /// The limit.
        min: i64,
        /// The value.
        got: i64,
    },
    /// An integer above `maximum`.
    #[error("integer above maximum {max} (got {got})")]
    AboveMaximum {
        /// The limit.
        max: i64,
        /// The value.
        got: i64,
    },
    /// An integer that does not fit in 64 signed bits.
    #[error("integer {got} does not fit in 64 signed bits")]
    IntegerOutOfRange {
        /// The value (JSON text).
        got: String,
    },
    /// An array with fewer elements than `minLength`.
    #[error("array shorter than minLength {min} (got {got})")]
    ArrayTooShort {
        /// The limit.
        min: u64,
        /// The number of elements.
        got: u64,
    },
    /// An array with more elements than `maxLength`.
    #[error("array longer than maxLength {max} (got {got})")]
    ArrayTooLong {
        /// The limit.
        max: u64,
        /// The number of elements.
        got: u64,
    },
    /// Bytes shorter than `minLength`.
    #[error("bytes shorter than minLength {min} (got {got})")]
    BytesTooShort {
        /// The limit.
        min: u64,
        /// The decoded length.
        got: u64,
    },
    /// Bytes longer than `maxLength`.
    #[error("bytes longer than maxLength {max} (got {got})")]
    BytesTooLong {
        /// The limit.
        max: u64,
        /// The decoded length.
        got: u64,
    },
    /// A malformed `{"$bytes": ..}` value.
    #[error("invalid bytes: {reason}")]
    InvalidBytes {
        /// What is wrong.
        reason: String,
    },
    /// A malformed `{"$link": ..}` value.
    #[error("invalid cid-link: {reason}")]
    InvalidCidLink {
        /// What is wrong.
        reason: String,
    },
    /// A malformed blob.
    #[error("invalid blob: {reason}")]
    InvalidBlob {
        /// What is wrong.
        reason: String,
    },
    /// A blob whose MIME type is not in `accept`.
    #[error("blob mimeType {got:?} is not accepted (accept: {})", accept.join(", "))]
    BlobMimeType {
        /// The blob's MIME type.
        got: String,
        /// The accepted patterns.
        accept: Vec<String>,
    },
    /// A blob larger than `maxSize`.
    #[error("blob larger than maxSize {max} (got {got})")]
    BlobTooLarge {
        /// The limit in bytes.
        max: u64,
        /// The blob's size in bytes.
        got: u64,
    },
    /// A union member without a string `$type`.
    #[error("union member has no `$type`")]
    UnionMissingType,
    /// A `$type` outside a closed union.
    #[error("`$type` {got:?} is not a member of the closed union [{}]", allowed.join(", "))]
    UnionTypeNotAllowed {
        /// The `$type` found.
        got: String,
        /// The union's refs, as written.
        allowed: Vec<String>,
    },
    /// A token value other than the referenced token.
    #[error("expected token {expected:?}, got {got}")]
    TokenMismatch {
        /// The token's full name (`nsid#name`).
        expected: String,
        /// The value (JSON text).
        got: String,
    },
    /// An `unknown` field that is not a plain object.
    #[error("an `unknown` field must be an object (got {got})")]
    UnknownNotObject {
        /// What was found (`boolean`, `bytes`, `blob`, ...).
        got: &'static str,
    },
    /// An undeclared field, in strict mode.
    #[error("undeclared field `{field}` (not allowed in strict mode)")]
    UndeclaredField {
        /// The field.
        field: String,
    },
    /// One of AC's known quirks, in strict mode.
    #[error("{quirk}; not allowed in strict mode")]
    KnownQuirk {
        /// The quirk.
        quirk: Quirk,
    },
    /// A ref that does not resolve in the catalog.
    #[error("ref {reference:?} does not resolve in the catalog")]
    UnresolvedRef {
        /// The ref, as written.
        reference: String,
    },
    /// A ref to a definition that cannot describe data (query, procedure, ...).
    #[error("schema type `{ty}` cannot describe data")]
    NotADataType {
        /// The definition's type.
        ty: &'static str,
    },
    /// Data (or refs) nesting deeper than validation allows.
    #[error("data nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A record key that does not fit the record type's `key`.
    #[error("record key does not fit key type {key_type:?}: {reason}")]
    RecordKey {
        /// The schema's key type (`tid`, `literal:self`, ...).
        key_type: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why a record (or value) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// No lexicon with this NSID is in the catalog.
    #[error("unknown lexicon {nsid}")]
    UnknownNsid {
        /// The NSID (or ref) asked for.
        nsid: String,
    },
    /// The lexicon exists but its `main` definition is not a record.
    #[error("{nsid}: not a record type (main definition is {found})")]
    NotARecord {
        /// The NSID.
        nsid: String,
        /// What the main definition is (`query`, `object`, `nothing`, ...).
        found: &'static str,
    },
    /// A value broke a rule.
    #[error("{nsid}: {path}: {rule}")]
    Invalid {
        /// The record NSID (or the ref given to [`Catalog::validate_value`]).
        nsid: String,
        /// JSON path of the offending value (`$`, `$.code`, `$.tags[3]`), or `(record key)`.
        path: String,
        /// The broken rule.
        rule: Rule,
    },
}

impl ValidationError {
    /// The NSID the error is about.
    pub fn nsid(&self) -> &str {
        match self {
            ValidationError::UnknownNsid { nsid }
            | ValidationError::NotARecord { nsid, .. }
            | ValidationError::Invalid { nsid, .. } => nsid,
        }
    }

    /// The JSON path of the offending value, for [`ValidationError::Invalid`].
    pub fn path(&self) -> Option<&str> {
        match self {
            ValidationError::Invalid { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The broken rule, for [`ValidationError::Invalid`].
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            ValidationError::Invalid { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

impl Catalog {
    /// Validates `record` as a record of type `nsid`.
    ///
    /// The record must carry `"$type": nsid`. On success, returns the record (repaired in
    /// [`Mode::Lenient`]) and the list of repairs.
    pub fn validate_record(
        &self,
        nsid: &str,
        record: &Value,
        mode: Mode,
    ) -> Result<Validated, ValidationError> {
        let (doc_id, schema) = self.record_schema(nsid)?;
        let mut record = record.clone();
        let mut repairs = Vec::new();
        match mode {
            Mode::Strict => reject_quirks(doc_id, schema, &record)?,
            Mode::Lenient => apply_renames(doc_id, schema, &mut record, &mut repairs),
            Mode::Standard => {}
        }
        let mut validator = Validator {
            catalog: self,
            nsid: doc_id,
            mode,
            path: Vec::new(),
            repairs,
        };
        validator.check_record(doc_id, schema, &record)?;
        let repairs = validator.repairs;
        Ok(Validated { record, repairs })
    }

    /// Checks a record key against the record type's `key` (`tid`, `nsid`, `any`,
    /// `literal:<key>`) and the record-key syntax.
    pub fn validate_record_key(&self, nsid: &str, rkey: &str) -> Result<(), ValidationError> {
        let (doc_id, schema) = self.record_schema(nsid)?;
        let fail = |reason: String| ValidationError::Invalid {
            nsid: doc_id.to_owned(),
            path: "(record key)".to_owned(),
            rule: Rule::RecordKey {
                key_type: schema.key.clone(),
                reason,
            },
        };
        syntax::validate(Format::RecordKey, rkey).map_err(|e| fail(e.to_string()))?;
        match schema.key_type() {
            Some(RecordKeyType::Any) => Ok(()),
            Some(RecordKeyType::Tid) => {
                syntax::validate(Format::Tid, rkey).map_err(|e| fail(e.to_string()))
            }
            Some(RecordKeyType::Nsid) => {
                syntax::validate(Format::Nsid, rkey).map_err(|e| fail(e.to_string()))
            }
            Some(RecordKeyType::Literal(literal)) if literal == rkey => Ok(()),
            Some(RecordKeyType::Literal(literal)) => {
                Err(fail(format!("the key must be {literal:?}, got {rkey:?}")))
            }
            None => Err(fail("the schema's key type is invalid".to_owned())),
        }
    }

    /// Validates any value against the definition `reference` (`nsid` or `nsid#def`), e.g.
    /// an XRPC body or a union member. In [`Mode::Lenient`], undeclared fields are reported;
    /// AC's record quirks only apply to [`Catalog::validate_record`].
    pub fn validate_value(
        &self,
        reference: &str,
        value: &Value,
        mode: Mode,
    ) -> Result<Validated, ValidationError> {
        let Some(target) = self.resolve("", reference) else {
            return Err(ValidationError::UnknownNsid {
                nsid: reference.to_owned(),
            });
        };
        let mut validator = Validator {
            catalog: self,
            nsid: target.nsid,
            mode,
            path: Vec::new(),
            repairs: Vec::new(),
        };
        validator.check_def(target, value, 0).map_err(|e| match e {
            ValidationError::Invalid { path, rule, .. } => ValidationError::Invalid {
                nsid: reference.to_owned(),
                path,
                rule,
            },
            other => other,
        })?;
        let repairs = validator.repairs;
        Ok(Validated {
            record: value.clone(),
            repairs,
        })
    }

    fn record_schema(&self, nsid: &str) -> Result<(&str, &LexRecord), ValidationError> {
        let Some(doc) = self.get(nsid) else {
            return Err(ValidationError::UnknownNsid {
                nsid: nsid.to_owned(),
            });
        };
        match doc.main() {
            Some(LexType::Record(record)) => Ok((&doc.id, record)),
            other => Err(ValidationError::NotARecord {
                nsid: doc.id.clone(),
                found: other.map_or("nothing", LexType::type_name),
            }),
        }
    }
}

/// Strict mode: rejects the first known quirk present in the record.
fn reject_quirks(nsid: &str, schema: &LexRecord, record: &Value) -> Result<(), ValidationError> {
    let Value::Object(map) = record else {
        return Ok(());
    };
    for quirk in quirks_for(nsid) {
        let path = match quirk.kind {
            QuirkKind::ExtraField { field } if map.contains_key(field) => field_path(&[field]),
            QuirkKind::RenamedField { from, to }
                if map.contains_key(from) && !map.contains_key(to) =>
            {
                field_path(&[from])
            }
            QuirkKind::MissingField { field }
                if !map.contains_key(field) && schema.record.is_required(field) =>
            {
                "$".to_owned()
            }
            _ => continue,
        };
        return Err(ValidationError::Invalid {
            nsid: nsid.to_owned(),
            path,
            rule: Rule::KnownQuirk { quirk: *quirk },
        });
    }
    Ok(())
}

/// Lenient mode: moves legacy field names to their declared names.
fn apply_renames(nsid: &str, schema: &LexRecord, record: &mut Value, repairs: &mut Vec<Repair>) {
    let Value::Object(map) = record else {
        return;
    };
    for quirk in quirks_for(nsid) {
        let QuirkKind::RenamedField { from, to } = quirk.kind else {
            continue;
        };
        if !schema.record.properties.contains_key(to) || map.contains_key(to) {
            continue;
        }
        if let Some(value) = map.remove(from) {
            map.insert(to.to_owned(), value);
            repairs.push(Repair::RenamedField {
                path: "$".to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            });
        }
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, Copy)]
enum Seg<'v> {
    Key(&'v str),
    Index(usize),
}

/// Renders a path from the record root.
fn render_path(segs: &[Seg<'_>]) -> String {
    let mut out = String::from("$");
    for seg in segs {
        match seg {
            Seg::Key(key) => push_key(&mut out, key),
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    if plain {
        out.push('.');
        out.push_str(key);
    } else {
        out.push('[');
        out.push_str(&Value::String(key.to_owned()).to_string());
        out.push(']');
    }
}

fn field_path(keys: &[&str]) -> String {
    let mut out = String::from("$");
    for key in keys {
        push_key(&mut out, key);
    }
    out
}

/// A short JSON rendering of a value for messages.
fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 64 {
        let short: String = text.chars().take(64).collect();
        format!("{short}…")
    } else {
        text
    }
}

/// The walk over one value; `'a` is the catalog, `'v` the value.
struct Validator<'a, 'v> {
    catalog: &'a Catalog,
    /// NSID named in errors.
    nsid: &'a str,
    mode: Mode,
    path: Vec<Seg<'v>>,
    repairs: Vec<Repair>,
}

type Check = Result<(), ValidationError>;

impl<'a, 'v> Validator<'a, 'v> {
    fn fail(&self, rule: Rule) -> ValidationError {
        ValidationError::Invalid {
            nsid: self.nsid.to_owned(),
            path: render_path(&self.path),
            rule,
        }
    }

    fn wrong(&self, expected: &'static str, value: &Value) -> ValidationError {
        self.fail(Rule::WrongType {
            expected,
            got: json_kind(value),
        })
    }

    fn check_record(&mut self, base: &'a str, schema: &'a LexRecord, value: &'v Value) -> Check {
        let Value::Object(map) = value else {
            return Err(self.wrong("a record object", value));
        };
        match map.get("$type") {
            Some(Value::String(t)) if t == base => {}
            Some(other) => {
                self.path.push(Seg::Key("$type"));
                return Err(self.fail(Rule::RecordTypeMismatch {
                    expected: base.to_owned(),
                    got: short_json(other),
                }));
            }
            None => {
                return Err(self.fail(Rule::MissingRecordType {
                    expected: base.to_owned(),
                }));
            }
        }
        let mut allow_missing: Vec<&'static str> = Vec::new();
        if self.mode == Mode::Lenient {
            for quirk in quirks_for(base) {
                if let QuirkKind::MissingField { field } = quirk.kind {
                    allow_missing.push(field);
                }
            }
        }
        self.check_object(base, &schema.record, map, &allow_missing, true, 0)
    }

    fn check_object(
        &mut self,
        base: &'a str,
        schema: &'a LexObject,
        map: &'v Map<String, Value>,
        allow_missing: &[&str],
        top: bool,
        depth: usize,
    ) -> Check {
        for field in schema.required.as_deref().unwrap_or_default() {
            if map.contains_key(field) {
                continue;
            }
            if allow_missing.contains(&field.as_str()) {
                self.repairs.push(Repair::MissingRequired {
                    path: render_path(&self.path),
                    field: field.clone(),
                });
                continue;
            }
            return Err(self.fail(Rule::MissingRequired {
                field: field.clone(),
            }));
        }
        for (key, value) in map {
            if key == "$type" {
                continue;
            }
            match schema.properties.get(key) {
                Some(ty) => {
                    self.path.push(Seg::Key(key));
                    if value.is_null() && !matches!(ty, LexType::Null(_)) {
                        if !schema.is_nullable(key) {
                            return Err(self.fail(Rule::NotNullable));
                        }
                    } else {
                        self.check(base, ty, value, depth + 1)?;
                    }
                    self.path.pop();
                }
                None => match self.mode {
                    Mode::Standard => {}
                    Mode::Strict => {
                        self.path.push(Seg::Key(key));
                        return Err(self.fail(Rule::UndeclaredField { field: key.clone() }));
                    }
                    Mode::Lenient => self.repairs.push(Repair::UndeclaredField {
                        path: render_path(&self.path),
                        field: key.clone(),
                        known_quirk: top && quirks::is_quirk_field(self.nsid, key),
                    }),
                },
            }
        }
        Ok(())
    }

    fn check(&mut self, base: &'a str, ty: &'a LexType, value: &'v Value, depth: usize) -> Check {
        if depth > MAX_DEPTH {
            return Err(self.fail(Rule::TooDeep { limit: MAX_DEPTH }));
        }
        match ty {
            LexType::Null(_) => match value {
                Value::Null => Ok(()),
                _ => Err(self.wrong("null", value)),
            },
            LexType::Boolean(schema) => {
                let Some(b) = value.as_bool() else {
                    return Err(self.wrong("a boolean", value));
                };
                match schema.const_value {
                    Some(c) if c != b => Err(self.fail(Rule::ConstMismatch {
                        expected: c.to_string(),
                        got: b.to_string(),
                    })),
                    _ => Ok(()),
                }
            }
            LexType::Integer(schema) => self.check_integer(schema, value),
            LexType::String(schema) => self.check_string(schema, value),
            LexType::Bytes(schema) => self.check_bytes(schema, value),
            LexType::CidLink(_) => self.check_cid_link(value),
            LexType::Blob(schema) => self.check_blob(schema, value),
            LexType::Array(schema) => {
                let Value::Array(items) = value else {
                    return Err(self.wrong("an array", value));
                };
                let len = items.len() as u64;
                if let Some(min) = schema.min_length.filter(|min| len < *min) {
                    return Err(self.fail(Rule::ArrayTooShort { min, got: len }));
                }
                if let Some(max) = schema.max_length.filter(|max| len > *max) {
                    return Err(self.fail(Rule::ArrayTooLong { max, got: len }));
                }
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.check(base, &schema.items, item, depth + 1)?;
                    self.path.pop();
                }
                Ok(())
            }
            LexType::Object(schema) => {
                let Value::Object(map) = value else {
                    return Err(self.wrong("an object", value));
                };
                self.check_object(base, schema, map, &[], false, depth)
            }
            LexType::Ref(r) => match self.catalog.resolve(base, &r.reference) {
                Some(target) => self.check_def(target, value, depth + 1),
                None => Err(self.fail(Rule::UnresolvedRef {
                    reference: r.reference.clone(),
                })),
            },
            LexType::Union(schema) => self.check_union(base, schema, value, depth),
            LexType::Unknown(_) => self.check_unknown(value),
            other => Err(self.fail(Rule::NotADataType {
                ty: other.type_name(),
            })),
        }
    }

    /// Checks `value` against a named definition reached through a ref.
    fn check_def(&mut self, target: ResolvedDef<'a>, value: &'v Value, depth: usize) -> Check {
        match target.def {
            LexType::Token(_) => {
                let is_token = value.as_str().is_some_and(|s| {
                    s.strip_prefix(target.nsid)
                        .and_then(|rest| rest.strip_prefix('#'))
                        == Some(target.name)
                });
                if is_token {
                    Ok(())
                } else {
                    Err(self.fail(Rule::TokenMismatch {
                        expected: format!("{}#{}", target.nsid, target.name),
                        got: short_json(value),
                    }))
                }
            }
            LexType::Record(record) => {
                let Value::Object(map) = value else {
                    return Err(self.wrong("an object", value));
                };
                self.check_object(target.nsid, &record.record, map, &[], false, depth)
            }
            other => self.check(target.nsid, other, value, depth),
        }
    }

    fn check_union(
        &mut self,
        base: &'a str,
        schema: &'a LexUnion,
        value: &'v Value,
        depth: usize,
    ) -> Check {
        let Value::Object(map) = value else {
            return Err(self.wrong("an object (union member)", value));
        };
        let Some(Value::String(member)) = map.get("$type") else {
            return Err(self.fail(Rule::UnionMissingType));
        };
        let wanted = split_ref("", member);
        for reference in &schema.refs {
            if split_ref(base, reference) != wanted {
                continue;
            }
            return match self.catalog.resolve(base, reference) {
                Some(target) => self.check_def(target, value, depth + 1),
                None => Err(self.fail(Rule::UnresolvedRef {
                    reference: reference.clone(),
                })),
            };
        }
        if schema.is_closed() {
            return Err(self.fail(Rule::UnionTypeNotAllowed {
                got: member.clone(),
                allowed: schema.refs.clone(),
            }));
        }
        Ok(())
    }

    fn check_unknown(&self, value: &Value) -> Check {
        let Value::Object(map) = value else {
            return Err(self.fail(Rule::UnknownNotObject {
                got: json_kind(value),
            }));
        };
        let got = if map.get("$type").and_then(Value::as_str) == Some("blob") {
            "blob"
        } else if map.len() == 1 && map.contains_key("$bytes") {
            "bytes"
        } else if map.len() == 1 && map.contains_key("$link") {
            "cid-link"
        } else {
            return Ok(());
        };
        Err(self.fail(Rule::UnknownNotObject { got }))
    }

    fn check_integer(&self, schema: &LexInteger, value: &Value) -> Check {
        let Value::Number(n) = value else {
            return Err(self.wrong("an integer", value));
        };
        let Some(x) = n.as_i64() else {
            return Err(if n.is_u64() {
                self.fail(Rule::IntegerOutOfRange { got: n.to_string() })
            } else {
                self.wrong("an integer", value)
            });
        };
        if let Some(c) = schema.const_value.filter(|c| *c != x) {
            return Err(self.fail(Rule::ConstMismatch {
                expected: c.to_string(),
                got: x.to_string(),
            }));
        }
        if let Some(allowed) = schema.enum_values.as_deref()
            && !allowed.contains(&x)
        {
            return Err(self.fail(Rule::NotInEnum {
                got: x.to_string(),
                allowed: allowed.iter().map(i64::to_string).collect(),
            }));
        }
        if let Some(min) = schema.minimum.filter(|min| x < *min) {
            return Err(self.fail(Rule::BelowMinimum { min, got: x }));
        }
        if let Some(max) = schema.maximum.filter(|max| x > *max) {
            return Err(self.fail(Rule::AboveMaximum { max, got: x }));
        }
        Ok(())
    }

    fn check_string(&self, schema: &LexString, value: &Value) -> Check {
        let Value::String(s) = value else {
            return Err(self.wrong("a string", value));
        };
        if let Some(c) = schema.const_value.as_ref().filter(|c| *c != s) {
            return Err(self.fail(Rule::ConstMismatch {
                expected: short_json(&Value::String(c.clone())),
                got: short_json(value),
            }));
        }
        if let Some(allowed) = schema.enum_values.as_deref()
            && !allowed.iter().any(|a| a == s)
        {
            return Err(self.fail(Rule::NotInEnum {
                got: short_json(value),
                allowed: allowed
                    .iter()
                    .map(|a| Value::String(a.clone()).to_string())
                    .collect(),
            }));
        }
        let len = s.len() as u64;
        if let Some(max) = schema.max_length.filter(|max| len > *max) {
            return Err(self.fail(Rule::StringTooLong { max, got: len }));
        }
        if let Some(min) = schema.min_length.filter(|min| len < *min) {
            return Err(self.fail(Rule::StringTooShort { min, got: len }));
        }
        // A string has at most as many graphemes as bytes, so short strings skip counting.
        let needs_max = schema.max_graphemes.is_some_and(|max| len > max);
        if needs_max || schema.min_graphemes.is_some() {
            let graphemes = s.graphemes(true).count() as u64;
            if let Some(max) = schema.max_graphemes.filter(|max| graphemes > *max) {
                return Err(self.fail(Rule::TooManyGraphemes {
                    max,
                    got: graphemes,
                }));
            }
            if let Some(min) = schema.min_graphemes.filter(|min| graphemes < *min) {
                return Err(self.fail(Rule::TooFewGraphemes {
                    min,
                    got: graphemes,
                }));
            }
        }
        if let Some(format) = schema.format {
            syntax::validate(format, s).map_err(|e| self.fail(Rule::Format(e)))?;
        }
        Ok(())
    }

    fn check_bytes(&self, schema: &LexBytes, value: &Value) -> Check {
        let Value::Object(map) = value else {
            return Err(self.wrong("bytes ({\"$bytes\": base64})", value));
        };
        let (Some(Value::String(encoded)), 1) = (map.get("$bytes"), map.len()) else {
            return Err(self.fail(Rule::InvalidBytes {
                reason: "expected an object with only a `$bytes` base64 string".to_owned(),
            }));
        };
        let len = base64_decoded_len(encoded)
            .map_err(|reason| self.fail(Rule::InvalidBytes { reason }))?;
        if let Some(min) = schema.min_length.filter(|min| len < *min) {
            return Err(self.fail(Rule::BytesTooShort { min, got: len }));
        }
        if let Some(max) = schema.max_length.filter(|max| len > *max) {
            return Err(self.fail(Rule::BytesTooLong { max, got: len }));
        }
        Ok(())
    }

    fn check_cid_link(&self, value: &Value) -> Check {
        let Value::Object(map) = value else {
            return Err(self.wrong("a cid-link ({\"$link\": cid})", value));
        };
        let (Some(Value::String(link)), 1) = (map.get("$link"), map.len()) else {
            return Err(self.fail(Rule::InvalidCidLink {
                reason: "expected an object with only a `$link` CID string".to_owned(),
            }));
        };
        check_cid(link).map_err(|reason| self.fail(Rule::InvalidCidLink { reason }))
    }

    fn check_blob(&self, schema: &LexBlob, value: &Value) -> Check {
        let invalid = |reason: &str| {
            self.fail(Rule::InvalidBlob {
                reason: reason.to_owned(),
            })
        };
        let Value::Object(map) = value else {
            return Err(self.wrong("a blob object", value));
        };
        match map.get("$type") {
            Some(Value::String(t)) if t == "blob" => {}
            _ if map.contains_key("cid") && map.contains_key("mimeType") => {
                return Err(invalid(
                    "legacy blob format ({cid, mimeType}) is not accepted",
                ));
            }
            _ => return Err(invalid("missing `\"$type\": \"blob\"`")),
        }
        if let Some(key) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "$type" | "ref" | "mimeType" | "size"))
        {
            return Err(invalid(&format!("unexpected key `{key}`")));
        }
        let link = match map.get("ref") {
            Some(Value::Object(r)) if r.len() == 1 => r.get("$link").and_then(Value::as_str),
            _ => None,
        };
        let Some(link) = link else {
            return Err(invalid("`ref` must be {\"$link\": cid}"));
        };
        check_cid(link).map_err(|reason| invalid(&format!("`ref`: {reason}")))?;
        let Some(mime) = map
            .get("mimeType")
            .and_then(Value::as_str)
            .filter(|m| m.contains('/'))
        else {
            return Err(invalid("`mimeType` must be a MIME type string"));
        };
        let Some(size) = map.get("size").and_then(Value::as_u64) else {
            return Err(invalid("`size` must be a non-negative integer"));
        };
        if let Some(accept) = schema.accept.as_deref()
            && !accept.iter().any(|pattern| mime_matches(pattern, mime))
        {
            return Err(self.fail(Rule::BlobMimeType {
                got: mime.to_owned(),
                accept: accept.to_vec(),
            }));
        }
        if let Some(max) = schema.max_size.filter(|max| size > *max) {
            return Err(self.fail(Rule::BlobTooLarge { max, got: size }));
        }
        Ok(())
    }
}

/// Checks that `text` is a CID string.
fn check_cid(text: &str) -> Result<(), String> {
    cid::Cid::try_from(text)
        .map(|_| ())
        .map_err(|e| format!("{text:?} is not a CID: {e}"))
}

/// The decoded length of standard base64 (padding optional), or why it is not base64.
fn base64_decoded_len(encoded: &str) -> Result<u64, String> {
    let unpadded = encoded.trim_end_matches('=');
    if encoded.len() - unpadded.len() > 2 {
        return Err("too much `=` padding".to_owned());
    }
    if let Some(bad) = unpadded
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Err(format!("{bad:?} is not a base64 character"));
    }
    let n = unpadded.len() as u64;
    match n % 4 {
        1 => Err(format!("{n} base64 characters cannot encode whole bytes")),
        rem => Ok(n / 4 * 3 + rem.saturating_sub(1)),
    }
}

/// Whether a MIME type matches an `accept` pattern (`image/png`, `image/*`, `*/*`),
/// ignoring case and parameters (`; charset=...`).
fn mime_matches(pattern: &str, mime: &str) -> bool {
    let mime = mime.split(';').next().unwrap_or_default().trim();
    if pattern == "*/*" || pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => mime
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
        None => pattern.eq_ignore_ascii_case(mime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lengths() {
        assert_eq!(base64_decoded_len("b25l"), Ok(3));
        assert_eq!(base64_decoded_len("b25lb2"), Ok(4));
        assert_eq!(base64_decoded_len("b25lb25"), Ok(5));
        assert_eq!(base64_decoded_len("b25lb25="), Ok(5));
        assert_eq!(base64_decoded_len(""), Ok(0));
        assert!(base64_decoded_len("b25lb").is_err());
        assert!(base64_decoded_len("b2 l").is_err());
        assert!(base64_decoded_len("b2===").is_err());
    }

    #[test]
    fn mime_patterns() {
        assert!(mime_matches("image/*", "image/png"));
        assert!(mime_matches("image/*", "IMAGE/JPEG"));
        assert!(!mime_matches("image/*", "video/mp4"));
        assert!(mime_matches("video/mp4", "video/mp4; codecs=avc1"));
        assert!(mime_matches("*/*", "text/plain"));
        assert!(!mime_matches("image/png", "image/jpeg"));
        assert!(!mime_matches("image/*", "imag"));
        assert!(!mime_matches("image/*", "ü"));
    }

    #[test]
    fn paths_render() {
        let segs = [Seg::Key("a"), Seg::Index(3), Seg::Key("odd key")];
        assert_eq!(render_path(&segs), r#"$.a[3]["odd key"]"#);
        assert_eq!(field_path(&["acUrl"]), "$.acUrl");
    }
}
