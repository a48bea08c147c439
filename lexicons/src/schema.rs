//! Lexicon documents: the ATProto schema language, parsed and checked.
//!
//! A lexicon document (`{"lexicon": 1, "id": "<nsid>", "defs": {...}}`) is parsed into a
//! [`LexiconDoc`] by [`parse_document`] (from JSON text) or [`parse_document_value`] (from a
//! [`serde_json::Value`]). Parsing is done by hand rather than by a derived `Deserialize` so
//! that every rejection names the document's NSID and the exact place in it, e.g.
//! ``example.lexicon.other: defs.demo: type `record` may only be the `main` definition``.
//!
//! Besides the shape of each definition, the parser enforces the rules of the lexicon
//! language that a derived deserializer could not: primary types (`record`, `query`,
//! `procedure`, `subscription`, `permission-set`) only as `main`; which types may appear
//! where (no named `ref`/`union`/`unknown` definitions, `params` only holding scalars, a
//! record's body always an `object`, ...); record key types; string formats; ref syntax;
//! `required`/`nullable` naming declared properties; and `min <= max` style constraints.
//!
//! The types serialize back to the same JSON they were parsed from (`serde::Serialize`),
//! and [`LexiconDoc`] implements `Deserialize` through the same checking parser.
//!
//! A [`Catalog`] holds documents keyed by NSID and resolves refs (`#local`, `nsid#def`,
//! `nsid` meaning `nsid#main`). Record validation against a catalog lives in
//! [`crate::validate`].

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::syntax::{self, Format};

/// How deeply type definitions may nest inside one definition (arrays of objects of ...).
const MAX_SCHEMA_DEPTH: usize = 32;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a lexicon document (or a set of them) was rejected.
///
/// Every variant that concerns a part of a document names the document's NSID and the path to
/// the offending part (`defs.main.record.properties.code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The text is not JSON at all.
    #[error("malformed lexicon JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser said.
        message: String,
    },
    /// The document is JSON but not a JSON object.
    #[error("a lexicon document must be a JSON object (got {got})")]
    NotAnObject {
        /// The JSON kind that was found instead.
        got: &'static str,
    },
    /// The `id` field is missing or not a string.
    #[error("lexicon document `id` must be an NSID string (found {found})")]
    InvalidId {
        /// What was found instead (JSON text, or `nothing`).
        found: String,
    },
    /// The `id` is a string but not a valid NSID.
    #[error("lexicon document id {id:?} is not a valid NSID: {reason}")]
    InvalidNsid {
        /// The rejected id.
        id: String,
        /// Why it is not an NSID.
        reason: String,
    },
    /// The `lexicon` (language version) field is not the integer `1`.
    #[error("{nsid}: lexicon: unsupported lexicon language version (expected 1, found {found})")]
    UnsupportedVersion {
        /// The document's NSID.
        nsid: String,
        /// What was found instead.
        found: String,
    },
    /// A required field is missing.
    #[error("{nsid}: {path}: missing required field `{field}`")]
    MissingField {
        /// The document's NSID.
        nsid: String,
        /// Path of the object lacking the field.
        path: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("{nsid}: {path}: expected {expected}, got {got}")]
    WrongType {
        /// The document's NSID.
        nsid: String,
        /// Path of the field.
        path: String,
        /// What was expected.
        expected: &'static str,
        /// The JSON kind that was found.
        got: &'static str,
    },
    /// A definition name (a key of `defs`) is not allowed.
    #[error("{nsid}: defs: invalid definition name {name:?}")]
    InvalidDefName {
        /// The document's NSID.
        nsid: String,
        /// The rejected name.
        name: String,
    },
    /// A `type` value that the lexicon language does not define.
    #[error("{nsid}: {path}: unknown type {ty:?}")]
    UnknownType {
        /// The document's NSID.
        nsid: String,
        /// Path of the definition.
        path: String,
        /// The unknown type name.
        ty: String,
    },
    /// A known type used where the language does not allow it.
    #[error("{nsid}: {path}: type `{ty}` is not allowed {context}")]
    TypeNotAllowed {
        /// The document's NSID.
        nsid: String,
        /// Path of the definition.
        path: String,
        /// The type name.
        ty: &'static str,
        /// Where it was found, in words (`as a named definition`, `in params`, ...).
        context: &'static str,
    },
    /// A primary type (record, query, procedure, subscription, permission-set) not named `main`.
    #[error("{nsid}: defs.{def}: type `{ty}` may only be the `main` definition")]
    PrimaryNotMain {
        /// The document's NSID.
        nsid: String,
        /// The definition's name.
        def: String,
        /// The primary type.
        ty: &'static str,
    },
    /// A record `key` that is not `tid`, `nsid`, `any` or `literal:<record-key>`.
    #[error(
        "{nsid}: {path}: invalid record key type {key:?} (expected tid, nsid, any or literal:<key>)"
    )]
    InvalidRecordKey {
        /// The document's NSID.
        nsid: String,
        /// Path of the `key` field.
        path: String,
        /// The rejected key type.
        key: String,
    },
    /// A string `format` the language does not define.
    #[error("{nsid}: {path}: unknown string format {format:?}")]
    UnknownFormat {
        /// The document's NSID.
        nsid: String,
        /// Path of the `format` field.
        path: String,
        /// The unknown format.
        format: String,
    },
    /// A ref that is not `#def`, `nsid` or `nsid#def`.
    #[error("{nsid}: {path}: invalid ref {reference:?}: {reason}")]
    InvalidRef {
        /// The document's NSID.
        nsid: String,
        /// Path of the ref.
        path: String,
        /// The rejected ref.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A constraint between fields does not hold (`minLength > maxLength`, `required` naming
    /// an undeclared property, `default` together with `const`, ...).
    #[error("{nsid}: {path}: {message}")]
    Constraint {
        /// The document's NSID.
        nsid: String,
        /// Path of the definition.
        path: String,
        /// The broken constraint, in words.
        message: String,
    },
    /// Type definitions nest deeper than the parser allows.
    #[error("{nsid}: {path}: type definitions nest deeper than {limit} levels")]
    TooDeep {
        /// The document's NSID.
        nsid: String,
        /// Path where the limit was hit.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// A catalog already holds a document with this NSID.
    #[error("lexicon {nsid} is already in the catalog")]
    Duplicate {
        /// The duplicated NSID.
        nsid: String,
    },
    /// A built-in schema's key does not match the `id` inside its document.
    #[error("built-in schema listed as {listed} has id {id}")]
    IdMismatch {
        /// The NSID it was listed under.
        listed: String,
        /// The id inside the document.
        id: String,
    },
    /// A ref that points at no definition in the catalog.
    #[error("{nsid}: {path}: ref {reference:?} does not resolve in the catalog")]
    UnresolvedRef {
        /// The document's NSID.
        nsid: String,
        /// Path of the ref.
        path: String,
        /// The unresolved ref.
        reference: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Document types
// ---------------------------------------------------------------------------------------------

/// A parsed lexicon document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexiconDoc {
    /// The lexicon language version; always `1`.
    pub lexicon: u32,
    /// The document's NSID.
    pub id: String,
    /// Optional revision number of the document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The named definitions (`main` is the primary one).
    pub defs: BTreeMap<String, LexType>,
}

impl LexiconDoc {
    /// The definition called `name`.
    pub fn def(&self, name: &str) -> Option<&LexType> {
        self.defs.get(name)
    }

    /// The `main` definition, if any.
    pub fn main(&self) -> Option<&LexType> {
        self.defs.get("main")
    }

    /// The record definition, if this document describes a record type.
    pub fn record(&self) -> Option<&LexRecord> {
        match self.main() {
            Some(LexType::Record(record)) => Some(record),
            _ => None,
        }
    }
}

impl FromStr for LexiconDoc {
    type Err = SchemaError;

    fn from_str(json: &str) -> Result<Self, Self::Err> {
        parse_document(json)
    }
}

impl<'de> Deserialize<'de> for LexiconDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        parse_document_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Any type definition of the lexicon language, tagged by its `type` field.
///
/// The parser guarantees that each variant only appears where the language allows it (for
/// instance `Ref`, `Union` and `Unknown` never as named definitions, primary types only as
/// `main`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LexType {
    /// `null`.
    Null(LexNull),
    /// `boolean`.
    Boolean(LexBoolean),
    /// `integer`.
    Integer(LexInteger),
    /// `string`.
    String(LexString),
    /// `bytes`.
    Bytes(LexBytes),
    /// `cid-link`.
    CidLink(LexCidLink),
    /// `blob`.
    Blob(LexBlob),
    /// `array`.
    Array(LexArray),
    /// `object`.
    Object(LexObject),
    /// `params` (XRPC query parameters).
    Params(LexParams),
    /// `token`.
    Token(LexToken),
    /// `ref`.
    Ref(LexRef),
    /// `union`.
    Union(LexUnion),
    /// `unknown`.
    Unknown(LexUnknown),
    /// `record` (primary).
    Record(LexRecord),
    /// `query` (primary).
    Query(LexQuery),
    /// `procedure` (primary).
    Procedure(LexProcedure),
    /// `subscription` (primary).
    Subscription(LexSubscription),
    /// `permission-set` (primary).
    PermissionSet(LexPermissionSet),
}

impl LexType {
    /// The `type` name of this definition, e.g. `cid-link`.
    pub fn type_name(&self) -> &'static str {
        match self {
            LexType::Null(_) => "null",
            LexType::Boolean(_) => "boolean",
            LexType::Integer(_) => "integer",
            LexType::String(_) => "string",
            LexType::Bytes(_) => "bytes",
            LexType::CidLink(_) => "cid-link",
            LexType::Blob(_) => "blob",
            LexType::Array(_) => "array",
            LexType::Object(_) => "object",
            LexType::Params(_) => "params",
            LexType::Token(_) => "token",
            LexType::Ref(_) => "ref",
            LexType::Union(_) => "union",
            LexType::Unknown(_) => "unknown",
            LexType::Record(_) => "record",
            LexType::Query(_) => "query",
            LexType::Procedure(_) => "procedure",
            LexType::Subscription(_) => "subscription",
            LexType::PermissionSet(_) => "permission-set",
        }
    }

    /// Whether this is a primary type (only allowed as a document's `main` definition).
    pub fn is_primary(&self) -> bool {
        matches!(
            self,
            LexType::Record(_)
                | LexType::Query(_)
                | LexType::Procedure(_)
                | LexType::Subscription(_)
                | LexType::PermissionSet(_)
        )
    }
}

/// `null`: the value must be JSON `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexNull {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `boolean`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexBoolean {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default value (informational).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// The only allowed value.
    #[serde(rename = "const", skip_serializing_if = "Option::is_none")]
    pub const_value: Option<bool>,
}

/// `integer` (signed 64-bit).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexInteger {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Smallest allowed value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    /// Largest allowed value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum: Option<i64>,
    /// The only allowed values.
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<i64>>,
    /// Default value (informational).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<i64>,
    /// The only allowed value.
    #[serde(rename = "const", skip_serializing_if = "Option::is_none")]
    pub const_value: Option<i64>,
}

/// `string`. Lengths are in UTF-8 bytes, graphemes are extended grapheme clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LexString {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Required string syntax.
    #[serde(
        serialize_with = "serialize_format",
        skip_serializing_if = "Option::is_none"
    )]
    pub format: Option<Format>,
    /// Largest length in UTF-8 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Smallest length in UTF-8 bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Largest length in grapheme clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_graphemes: Option<u64>,
    /// Smallest length in grapheme clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_graphemes: Option<u64>,
    /// Suggested values (advisory: other values are allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_values: Option<Vec<String>>,
    /// The only allowed values.
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<String>>,
    /// Default value (informational).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The only allowed value.
    #[serde(rename = "const", skip_serializing_if = "Option::is_none")]
    pub const_value: Option<String>,
}

/// `bytes` (`{"$bytes": "<base64>"}` in JSON). Lengths are in decoded bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LexBytes {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Largest length in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Smallest length in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
}

/// `cid-link` (`{"$link": "<cid>"}` in JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexCidLink {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `blob`: a reference to uploaded binary data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LexBlob {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Accepted MIME types; `image/*` style globs and `*/*` allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept: Option<Vec<String>>,
    /// Largest size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
}

/// `array`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LexArray {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The type of every element.
    pub items: Box<LexType>,
    /// Smallest number of elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Largest number of elements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
}

/// `object`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexObject {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Properties that must be present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    /// Properties whose value may be `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nullable: Option<Vec<String>>,
    /// The declared properties.
    pub properties: BTreeMap<String, LexType>,
}

impl LexObject {
    /// Whether `field` is listed in `required`.
    pub fn is_required(&self, field: &str) -> bool {
        self.required
            .as_deref()
            .is_some_and(|r| r.iter().any(|f| f == field))
    }

    /// Whether `field` is listed in `nullable`.
    pub fn is_nullable(&self, field: &str) -> bool {
        self.nullable
            .as_deref()
            .is_some_and(|n| n.iter().any(|f| f == field))
    }
}

/// `params`: XRPC query parameters (scalars and arrays of scalars only).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexParams {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameters that must be present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    /// The declared parameters.
    pub properties: BTreeMap<String, LexType>,
}

/// `token`: a named symbol; as data, the string `nsid#name`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexToken {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `ref`: the type of another definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexRef {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `#def`, `nsid` or `nsid#def`.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// `union`: one of several object types, told apart by `$type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexUnion {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The member types (`#def`, `nsid` or `nsid#def`).
    pub refs: Vec<String>,
    /// Whether `$type`s outside `refs` are rejected (default: open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
}

impl LexUnion {
    /// Whether the union is closed.
    pub fn is_closed(&self) -> bool {
        self.closed == Some(true)
    }
}

/// `unknown`: any object.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexUnknown {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `record`: a repository record type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexRecord {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Record key type: `tid`, `nsid`, `any` or `literal:<key>`.
    pub key: String,
    /// The record's body (serialized with `"type": "object"`).
    #[serde(serialize_with = "serialize_tagged_object")]
    pub record: LexObject,
}

/// The kind of record key a record type uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKeyType<'a> {
    /// A TID.
    Tid,
    /// An NSID.
    Nsid,
    /// Any valid record key.
    Any,
    /// Exactly this key.
    Literal(&'a str),
}

impl LexRecord {
    /// The parsed `key` field (`None` only if it was built by hand with a bad value).
    pub fn key_type(&self) -> Option<RecordKeyType<'_>> {
        parse_key_type(&self.key)
    }
}

/// `query`: an XRPC GET endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexQuery {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Query parameters.
    #[serde(
        serialize_with = "serialize_tagged_params",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters: Option<LexParams>,
    /// Response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<LexBody>,
    /// Named errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<LexXrpcError>>,
}

/// `procedure`: an XRPC POST endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexProcedure {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Query parameters.
    #[serde(
        serialize_with = "serialize_tagged_params",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters: Option<LexParams>,
    /// Request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<LexBody>,
    /// Response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<LexBody>,
    /// Named errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<LexXrpcError>>,
}

/// `subscription`: an XRPC event stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexSubscription {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Query parameters.
    #[serde(
        serialize_with = "serialize_tagged_params",
        skip_serializing_if = "Option::is_none"
    )]
    pub parameters: Option<LexParams>,
    /// The message schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<LexMessage>,
    /// Named errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<LexXrpcError>>,
}

/// An XRPC input or output body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexBody {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// MIME type of the body.
    pub encoding: String,
    /// Schema of a JSON body: an `object`, `ref` or `union`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Box<LexType>>,
}

/// A subscription's message schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexMessage {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The union of message types (serialized with `"type": "union"`).
    #[serde(serialize_with = "serialize_tagged_union")]
    pub schema: LexUnion,
}

/// A named XRPC error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LexXrpcError {
    /// The error name.
    pub name: String,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `permission-set`: a bundle of OAuth permissions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LexPermissionSet {
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Human-readable title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Translations of the title, keyed by language tag.
    #[serde(rename = "title:lang", skip_serializing_if = "Option::is_none")]
    pub title_lang: Option<BTreeMap<String, String>>,
    /// Human-readable detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Translations of the detail, keyed by language tag.
    #[serde(rename = "detail:lang", skip_serializing_if = "Option::is_none")]
    pub detail_lang: Option<BTreeMap<String, String>>,
    /// The permissions in the set.
    pub permissions: Vec<LexPermission>,
}

/// One permission of a permission set (serialized with `"type": "permission"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "type", rename = "permission", rename_all = "camelCase")]
pub struct LexPermission {
    /// `repo`, `rpc`, `blob`, `account` or `identity`.
    pub resource: String,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Record collections (`repo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<Vec<String>>,
    /// Allowed actions, as written (a string or a list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<OneOrMany>,
    /// XRPC methods (`rpc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lxm: Option<Vec<String>>,
    /// Service audience (`rpc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Whether the audience is inherited (`rpc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inherit_aud: Option<bool>,
    /// Accepted MIME types (`blob`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept: Option<Vec<String>>,
    /// Attribute (`account`, `identity`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attr: Option<String>,
}

/// A string or a list of strings, kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a slice.
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

fn serialize_format<S: Serializer>(format: &Option<Format>, s: S) -> Result<S::Ok, S::Error> {
    match format {
        Some(format) => s.serialize_str(format.name()),
        None => s.serialize_none(),
    }
}

/// Re-adds the `type` tag to definitions stored untagged because their position fixes it.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Tagged<'a> {
    Object(&'a LexObject),
    Params(&'a LexParams),
    Union(&'a LexUnion),
}

fn serialize_tagged_object<S: Serializer>(object: &LexObject, s: S) -> Result<S::Ok, S::Error> {
    Tagged::Object(object).serialize(s)
}

fn serialize_tagged_union<S: Serializer>(union: &LexUnion, s: S) -> Result<S::Ok, S::Error> {
    Tagged::Union(union).serialize(s)
}

fn serialize_tagged_params<S: Serializer>(
    params: &Option<LexParams>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match params {
        Some(params) => Tagged::Params(params).serialize(s),
        None => s.serialize_none(),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses and checks a lexicon document from JSON text.
pub fn parse_document(json: &str) -> Result<LexiconDoc, SchemaError> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        SchemaError::Json {
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    parse_document_value(&value)
}

/// Parses and checks a lexicon document from a JSON value.
pub fn parse_document_value(value: &Value) -> Result<LexiconDoc, SchemaError> {
    let Some(map) = value.as_object() else {
        return Err(SchemaError::NotAnObject {
            got: json_kind(value),
        });
    };
    let id = match map.get("id") {
        Some(Value::String(id)) => id.clone(),
        other => {
            return Err(SchemaError::InvalidId {
                found: describe(other),
            });
        }
    };
    if let Err(e) = syntax::validate(Format::Nsid, &id) {
        return Err(SchemaError::InvalidNsid {
            id,
            reason: e.reason,
        });
    }
    let nsid = id.as_str();
    match map.get("lexicon") {
        Some(v) if v.as_u64() == Some(1) => {}
        other => {
            return Err(SchemaError::UnsupportedVersion {
                nsid: id.clone(),
                found: describe(other),
            });
        }
    }
    let root = Obj {
        nsid,
        path: String::new(),
        map,
    };
    let revision = root.opt_u64("revision")?;
    let description = root.opt_string("description")?;
    let Some(defs_obj) = root.opt_object("defs")? else {
        return Err(root.missing("defs"));
    };
    let mut defs = BTreeMap::new();
    for (name, def) in defs_obj.map {
        if name.is_empty() || name.contains('#') || name.contains('.') {
            return Err(SchemaError::InvalidDefName {
                nsid: id.clone(),
                name: name.clone(),
            });
        }
        let path = defs_obj.child_path(name);
        let position = if name == "main" {
            Position::MainDef
        } else {
            Position::NamedDef(name)
        };
        let ty = parse_type(nsid, def, path, position, 0)?;
        defs.insert(name.clone(), ty);
    }
    Ok(LexiconDoc {
        lexicon: 1,
        id,
        revision,
        description,
        defs,
    })
}

/// Where a type definition appears, which decides the types allowed there.
#[derive(Clone, Copy)]
enum Position<'a> {
    MainDef,
    NamedDef(&'a str),
    Property,
    ArrayItem,
    Param,
    ParamItem,
    Body,
    Message,
    RecordBody,
    Parameters,
}

impl Position<'_> {
    fn allows(self, ty: &str) -> bool {
        const FIELD: &[&str] = &[
            "null", "boolean", "integer", "string", "bytes", "cid-link", "blob", "array", "object",
            "ref", "union", "unknown",
        ];
        const DEF: &[&str] = &[
            "null",
            "boolean",
            "integer",
            "string",
            "bytes",
            "cid-link",
            "blob",
            "array",
            "object",
            "token",
            "record",
            "query",
            "procedure",
            "subscription",
            "permission-set",
        ];
        match self {
            Position::MainDef | Position::NamedDef(_) => DEF.contains(&ty),
            Position::Property | Position::ArrayItem => FIELD.contains(&ty),
            Position::Param => ["boolean", "integer", "string", "unknown", "array"].contains(&ty),
            Position::ParamItem => ["boolean", "integer", "string", "unknown"].contains(&ty),
            Position::Body => ["object", "ref", "union"].contains(&ty),
            Position::Message => ty == "union",
            Position::RecordBody => ty == "object",
            Position::Parameters => ty == "params",
        }
    }

    fn context(self) -> &'static str {
        match self {
            Position::MainDef | Position::NamedDef(_) => "as a named definition",
            Position::Property => "as an object property",
            Position::ArrayItem => "as array items",
            Position::Param => "as a parameter (boolean, integer, string, unknown or array)",
            Position::ParamItem => "as parameter array items (boolean, integer, string, unknown)",
            Position::Body => "as a body schema (object, ref or union)",
            Position::Message => "as a message schema (must be a union)",
            Position::RecordBody => "as a record body (must be an object)",
            Position::Parameters => "as parameters (must be params)",
        }
    }
}

/// A JSON object being parsed, with the document's NSID and its own path for errors.
struct Obj<'a> {
    nsid: &'a str,
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn missing(&self, field: &'static str) -> SchemaError {
        SchemaError::MissingField {
            nsid: self.nsid.to_owned(),
            path: if self.path.is_empty() {
                "(document)".to_owned()
            } else {
                self.path.clone()
            },
            field,
        }
    }

    fn wrong(&self, path: String, expected: &'static str, got: &Value) -> SchemaError {
        SchemaError::WrongType {
            nsid: self.nsid.to_owned(),
            path,
            expected,
            got: json_kind(got),
        }
    }

    fn constraint(&self, message: String) -> SchemaError {
        SchemaError::Constraint {
            nsid: self.nsid.to_owned(),
            path: self.path.clone(),
            message,
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.wrong(self.child_path(key), "a string", other)),
        }
    }

    fn req_string(&self, key: &'static str) -> Result<String, SchemaError> {
        self.opt_string(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(self.child_path(key), "a boolean", other)),
        }
    }

    fn opt_i64(&self, key: &str) -> Result<Option<i64>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(i) => Ok(Some(i)),
                None => Err(self.wrong(self.child_path(key), "a 64-bit integer", v)),
            },
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(u) => Ok(Some(u)),
                None => Err(self.wrong(self.child_path(key), "a non-negative integer", v)),
            },
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong(self.child_path(key), "an array", other)),
        }
    }

    fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, SchemaError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => {
                    return Err(self.wrong(
                        format!("{}[{i}]", self.child_path(key)),
                        "a string",
                        other,
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    fn opt_i64s(&self, key: &str) -> Result<Option<Vec<i64>>, SchemaError> {
        let Some(items) = self.opt_array(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_i64() {
                Some(n) => out.push(n),
                None => {
                    return Err(self.wrong(
                        format!("{}[{i}]", self.child_path(key)),
                        "a 64-bit integer",
                        item,
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    fn opt_object(&self, key: &str) -> Result<Option<Obj<'a>>, SchemaError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                nsid: self.nsid,
                path: self.child_path(key),
                map,
            })),
            Some(other) => Err(self.wrong(self.child_path(key), "an object", other)),
        }
    }

    fn opt_lang_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, SchemaError> {
        let Some(obj) = self.opt_object(key)? else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (lang, text) in obj.map {
            if let Err(e) = syntax::validate(Format::Language, lang) {
                return Err(obj.constraint(format!("invalid language tag {lang:?}: {}", e.reason)));
            }
            match text {
                Value::String(s) => {
                    out.insert(lang.clone(), s.clone());
                }
                other => return Err(obj.wrong(obj.child_path(lang), "a string", other)),
            }
        }
        Ok(Some(out))
    }

    fn description(&self) -> Result<Option<String>, SchemaError> {
        self.opt_string("description")
    }

    fn check_min_max(&self, min: &str, max: &str) -> Result<(), SchemaError> {
        if let (Some(lo), Some(hi)) = (self.opt_i64(min)?, self.opt_i64(max)?)
            && lo > hi
        {
            return Err(self.constraint(format!("{min} ({lo}) is greater than {max} ({hi})")));
        }
        Ok(())
    }

    fn check_default_const(&self) -> Result<(), SchemaError> {
        if self.get("default").is_some() && self.get("const").is_some() {
            return Err(self.constraint("cannot have both `default` and `const`".to_owned()));
        }
        Ok(())
    }

    fn check_listed_properties<T>(
        &self,
        field: &str,
        names: Option<&[String]>,
        properties: &BTreeMap<String, T>,
    ) -> Result<(), SchemaError> {
        for name in names.unwrap_or_default() {
            if !properties.contains_key(name) {
                return Err(self.constraint(format!(
                    "`{field}` names {name:?}, which is not a declared property"
                )));
            }
        }
        Ok(())
    }
}

fn parse_type(
    nsid: &str,
    value: &Value,
    path: String,
    position: Position<'_>,
    depth: usize,
) -> Result<LexType, SchemaError> {
    let Value::Object(map) = value else {
        return Err(SchemaError::WrongType {
            nsid: nsid.to_owned(),
            path,
            expected: "a type definition object",
            got: json_kind(value),
        });
    };
    if depth > MAX_SCHEMA_DEPTH {
        return Err(SchemaError::TooDeep {
            nsid: nsid.to_owned(),
            path,
            limit: MAX_SCHEMA_DEPTH,
        });
    }
    let o = Obj { nsid, path, map };
    let ty = o.req_string("type")?;
    let Some(ty_name) = TYPE_NAMES.iter().copied().find(|t| *t == ty) else {
        return Err(SchemaError::UnknownType {
            nsid: nsid.to_owned(),
            path: o.path,
            ty,
        });
    };
    if let Position::NamedDef(def) = position
        && PRIMARY_TYPES.contains(&ty_name)
    {
        return Err(SchemaError::PrimaryNotMain {
            nsid: nsid.to_owned(),
            def: def.to_owned(),
            ty: ty_name,
        });
    }
    if !position.allows(ty_name) {
        return Err(SchemaError::TypeNotAllowed {
            nsid: nsid.to_owned(),
            path: o.path,
            ty: ty_name,
            context: position.context(),
        });
    }
    let depth = depth + 1;
    Ok(match ty_name {
        "null" => LexType::Null(LexNull {
            description: o.description()?,
        }),
        "boolean" => {
            o.check_default_const()?;
            LexType::Boolean(LexBoolean {
                description: o.description()?,
                default: o.opt_bool("default")?,
                const_value: o.opt_bool("const")?,
            })
        }
        "integer" => {
            o.check_default_const()?;
            o.check_min_max("minimum", "maximum")?;
            LexType::Integer(LexInteger {
                description: o.description()?,
                minimum: o.opt_i64("minimum")?,
                maximum: o.opt_i64("maximum")?,
                enum_values: o.opt_i64s("enum")?,
                default: o.opt_i64("default")?,
                const_value: o.opt_i64("const")?,
            })
        }
        "string" => LexType::String(parse_string(&o)?),
        "bytes" => {
            o.check_min_max("minLength", "maxLength")?;
            LexType::Bytes(LexBytes {
                description: o.description()?,
                max_length: o.opt_u64("maxLength")?,
                min_length: o.opt_u64("minLength")?,
            })
        }
        "cid-link" => LexType::CidLink(LexCidLink {
            description: o.description()?,
        }),
        "blob" => LexType::Blob(parse_blob(&o)?),
        "array" => {
            o.check_min_max("minLength", "maxLength")?;
            let Some(items) = o.get("items") else {
                return Err(o.missing("items"));
            };
            let item_position = match position {
                Position::Param => Position::ParamItem,
                _ => Position::ArrayItem,
            };
            let items = parse_type(nsid, items, o.child_path("items"), item_position, depth)?;
            LexType::Array(LexArray {
                description: o.description()?,
                items: Box::new(items),
                min_length: o.opt_u64("minLength")?,
                max_length: o.opt_u64("maxLength")?,
            })
        }
        "object" => LexType::Object(parse_object(&o, depth)?),
        "params" => {
            let properties = parse_properties(&o, Position::Param, depth)?;
            let required = o.opt_strings("required")?;
            o.check_listed_properties("required", required.as_deref(), &properties)?;
            LexType::Params(LexParams {
                description: o.description()?,
                required,
                properties,
            })
        }
        "token" => LexType::Token(LexToken {
            description: o.description()?,
        }),
        "ref" => {
            let reference = o.req_string("ref")?;
            check_ref_syntax(&o, &o.child_path("ref"), &reference)?;
            LexType::Ref(LexRef {
                description: o.description()?,
                reference,
            })
        }
        "union" => LexType::Union(parse_union(&o)?),
        "unknown" => LexType::Unknown(LexUnknown {
            description: o.description()?,
        }),
        "record" => {
            let key = o.req_string("key")?;
            if parse_key_type(&key).is_none() {
                return Err(SchemaError::InvalidRecordKey {
                    nsid: nsid.to_owned(),
                    path: o.child_path("key"),
                    key,
                });
            }
            let Some(body) = o.get("record") else {
                return Err(o.missing("record"));
            };
            let LexType::Object(record) = parse_type(
                nsid,
                body,
                o.child_path("record"),
                Position::RecordBody,
                depth,
            )?
            else {
                return Err(o.constraint("record body must be an object".to_owned()));
            };
            LexType::Record(LexRecord {
                description: o.description()?,
                key,
                record,
            })
        }
        "query" => LexType::Query(LexQuery {
            description: o.description()?,
            parameters: parse_parameters(&o, depth)?,
            output: parse_body(&o, "output", depth)?,
            errors: parse_errors(&o)?,
        }),
        "procedure" => LexType::Procedure(LexProcedure {
            description: o.description()?,
            parameters: parse_parameters(&o, depth)?,
            input: parse_body(&o, "input", depth)?,
            output: parse_body(&o, "output", depth)?,
            errors: parse_errors(&o)?,
        }),
        "subscription" => {
            let message = match o.opt_object("message")? {
                None => None,
                Some(m) => {
                    let Some(schema) = m.get("schema") else {
                        return Err(m.missing("schema"));
                    };
                    let LexType::Union(schema) = parse_type(
                        nsid,
                        schema,
                        m.child_path("schema"),
                        Position::Message,
                        depth,
                    )?
                    else {
                        return Err(m.constraint("message schema must be a union".to_owned()));
                    };
                    Some(LexMessage {
                        description: m.description()?,
                        schema,
                    })
                }
            };
            LexType::Subscription(LexSubscription {
                description: o.description()?,
                parameters: parse_parameters(&o, depth)?,
                message,
                errors: parse_errors(&o)?,
            })
        }
        "permission-set" => LexType::PermissionSet(parse_permission_set(&o)?),
        // `TYPE_NAMES` and this match list the same names.
        _ => {
            return Err(SchemaError::UnknownType {
                nsid: nsid.to_owned(),
                path: o.path,
                ty,
            });
        }
    })
}

const TYPE_NAMES: &[&str] = &[
    "null",
    "boolean",
    "integer",
    "string",
    "bytes",
    "cid-link",
    "blob",
    "array",
    "object",
    "params",
    "token",
    "ref",
    "union",
    "unknown",
    "record",
    "query",
    "procedure",
    "subscription",
    "permission-set",
];

const PRIMARY_TYPES: &[&str] = &[
    "record",
    "query",
    "procedure",
    "subscription",
    "permission-set",
];

fn parse_string(o: &Obj<'_>) -> Result<LexString, SchemaError> {
    o.check_default_const()?;
    o.check_min_max("minLength", "maxLength")?;
    o.check_min_max("minGraphemes", "maxGraphemes")?;
    let format = match o.opt_string("format")? {
        None => None,
        Some(name) => match Format::from_name(&name) {
            Some(format) => Some(format),
            None => {
                return Err(SchemaError::UnknownFormat {
                    nsid: o.nsid.to_owned(),
                    path: o.child_path("format"),
                    format: name,
                });
            }
        },
    };
    Ok(LexString {
        description: o.description()?,
        format,
        max_length: o.opt_u64("maxLength")?,
        min_length: o.opt_u64("minLength")?,
        max_graphemes: o.opt_u64("maxGraphemes")?,
        min_graphemes: o.opt_u64("minGraphemes")?,
        known_values: o.opt_strings("knownValues")?,
        enum_values: o.opt_strings("enum")?,
        default: o.opt_string("default")?,
        const_value: o.opt_string("const")?,
    })
}

fn parse_blob(o: &Obj<'_>) -> Result<LexBlob, SchemaError> {
    let accept = o.opt_strings("accept")?;
    for pattern in accept.as_deref().unwrap_or_default() {
        if !is_mime_pattern(pattern) {
            return Err(o.constraint(format!(
                "invalid `accept` MIME pattern {pattern:?} (expected type/subtype, type/* or */*)"
            )));
        }
    }
    Ok(LexBlob {
        description: o.description()?,
        accept,
        max_size: o.opt_u64("maxSize")?,
    })
}

fn is_mime_pattern(pattern: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((kind, sub)) => {
            !kind.is_empty()
                && kind != "*"
                && !sub.is_empty()
                && !sub.contains('/')
                && !pattern.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn parse_properties(
    o: &Obj<'_>,
    position: Position<'_>,
    depth: usize,
) -> Result<BTreeMap<String, LexType>, SchemaError> {
    let mut properties = BTreeMap::new();
    if let Some(props) = o.opt_object("properties")? {
        for (name, def) in props.map {
            if name.is_empty() {
                return Err(props.constraint("empty property name".to_owned()));
            }
            let ty = parse_type(o.nsid, def, props.child_path(name), position, depth)?;
            properties.insert(name.clone(), ty);
        }
    }
    Ok(properties)
}

fn parse_object(o: &Obj<'_>, depth: usize) -> Result<LexObject, SchemaError> {
    let properties = parse_properties(o, Position::Property, depth)?;
    let required = o.opt_strings("required")?;
    let nullable = o.opt_strings("nullable")?;
    o.check_listed_properties("required", required.as_deref(), &properties)?;
    o.check_listed_properties("nullable", nullable.as_deref(), &properties)?;
    Ok(LexObject {
        description: o.description()?,
        required,
        nullable,
        properties,
    })
}

fn parse_union(o: &Obj<'_>) -> Result<LexUnion, SchemaError> {
    let Some(refs) = o.opt_strings("refs")? else {
        return Err(o.missing("refs"));
    };
    for (i, reference) in refs.iter().enumerate() {
        check_ref_syntax(o, &format!("{}[{i}]", o.child_path("refs")), reference)?;
    }
    let closed = o.opt_bool("closed")?;
    if closed == Some(true) && refs.is_empty() {
        return Err(o.constraint("a closed union needs at least one ref".to_owned()));
    }
    Ok(LexUnion {
        description: o.description()?,
        refs,
        closed,
    })
}

fn parse_parameters(o: &Obj<'_>, depth: usize) -> Result<Option<LexParams>, SchemaError> {
    let Some(params) = o.get("parameters") else {
        return Ok(None);
    };
    match parse_type(
        o.nsid,
        params,
        o.child_path("parameters"),
        Position::Parameters,
        depth,
    )? {
        LexType::Params(params) => Ok(Some(params)),
        _ => Err(o.constraint("parameters must be of type params".to_owned())),
    }
}

fn parse_body(o: &Obj<'_>, key: &str, depth: usize) -> Result<Option<LexBody>, SchemaError> {
    let Some(body) = o.opt_object(key)? else {
        return Ok(None);
    };
    let schema = match body.get("schema") {
        None => None,
        Some(schema) => Some(Box::new(parse_type(
            o.nsid,
            schema,
            body.child_path("schema"),
            Position::Body,
            depth,
        )?)),
    };
    Ok(Some(LexBody {
        description: body.description()?,
        encoding: body.req_string("encoding")?,
        schema,
    }))
}

fn parse_errors(o: &Obj<'_>) -> Result<Option<Vec<LexXrpcError>>, SchemaError> {
    let Some(items) = o.opt_array("errors")? else {
        return Ok(None);
    };
    let mut errors = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", o.child_path("errors"));
        let Value::Object(map) = item else {
            return Err(o.wrong(path, "an object", item));
        };
        let e = Obj {
            nsid: o.nsid,
            path,
            map,
        };
        errors.push(LexXrpcError {
            name: e.req_string("name")?,
            description: e.description()?,
        });
    }
    Ok(Some(errors))
}

fn parse_permission_set(o: &Obj<'_>) -> Result<LexPermissionSet, SchemaError> {
    let Some(items) = o.opt_array("permissions")? else {
        return Err(o.missing("permissions"));
    };
    let mut permissions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", o.child_path("permissions"));
        let Value::Object(map) = item else {
            return Err(o.wrong(path, "a permission object", item));
        };
        permissions.push(parse_permission(&Obj {
            nsid: o.nsid,
            path,
            map,
        })?);
    }
    Ok(LexPermissionSet {
        description: o.description()?,
        title: o.opt_string("title")?,
        title_lang: o.opt_lang_map("title:lang")?,
        detail: o.opt_string("detail")?,
        detail_lang: o.opt_lang_map("detail:lang")?,
        permissions,
    })
}

fn parse_permission(o: &Obj<'_>) -> Result<LexPermission, SchemaError> {
    let ty = o.req_string("type")?;
    if ty != "permission" {
        return Err(o.constraint(format!(
            "permission-set entries must have type `permission`, not {ty:?}"
        )));
    }
    let action = match o.get("action") {
        None => None,
        Some(Value::String(one)) => Some(OneOrMany::One(one.clone())),
        Some(Value::Array(_)) => o.opt_strings("action")?.map(OneOrMany::Many),
        Some(other) => {
            return Err(o.wrong(
                o.child_path("action"),
                "a string or array of strings",
                other,
            ));
        }
    };
    let p = LexPermission {
        resource: o.req_string("resource")?,
        description: o.description()?,
        collection: o.opt_strings("collection")?,
        action,
        lxm: o.opt_strings("lxm")?,
        aud: o.opt_string("aud")?,
        inherit_aud: o.opt_bool("inheritAud")?,
        accept: o.opt_strings("accept")?,
        attr: o.opt_string("attr")?,
    };
    let nsid_or_star = |list: &[String], field: &str| -> Result<(), SchemaError> {
        for entry in list {
            if entry != "*"
                && let Err(e) = syntax::validate(Format::Nsid, entry)
            {
                return Err(o.constraint(format!(
                    "`{field}` entry {entry:?} is not an NSID or `*`: {}",
                    e.reason
                )));
            }
        }
        Ok(())
    };
    let actions = p
        .action
        .as_ref()
        .map(OneOrMany::as_slice)
        .unwrap_or_default();
    let check_actions = |allowed: &[&str]| -> Result<(), SchemaError> {
        for action in actions {
            if !allowed.contains(&action.as_str()) {
                return Err(o.constraint(format!("unsupported {} action {action:?}", p.resource)));
            }
        }
        Ok(())
    };
    match p.resource.as_str() {
        "repo" => {
            let Some(collection) = p.collection.as_deref().filter(|c| !c.is_empty()) else {
                return Err(o.constraint("repo permission requires `collection`".to_owned()));
            };
            nsid_or_star(collection, "collection")?;
            check_actions(&["create", "update", "delete"])?;
        }
        "rpc" => {
            let Some(lxm) = p.lxm.as_deref().filter(|l| !l.is_empty()) else {
                return Err(o.constraint("rpc permission requires `lxm`".to_owned()));
            };
            nsid_or_star(lxm, "lxm")?;
            let inherit = p.inherit_aud == Some(true);
            match (&p.aud, inherit) {
                (Some(_), true) | (None, false) => {
                    return Err(o.constraint(
                        "rpc permission needs exactly one of `aud` and `inheritAud: true`"
                            .to_owned(),
                    ));
                }
                (Some(aud), false) if aud != "*" => {
                    let ok = aud.split_once('#').is_some_and(|(did, service)| {
                        !service.is_empty() && syntax::validate(Format::Did, did).is_ok()
                    });
                    if !ok {
                        return Err(o.constraint(format!(
                            "rpc `aud` {aud:?} must be `*` or a service ref (did#service)"
                        )));
                    }
                }
                (Some(_), false) if lxm.iter().any(|l| l == "*") => {
                    return Err(o.constraint(
                        "rpc permission cannot have both `lxm` and `aud` be `*`".to_owned(),
                    ));
                }
                _ => {}
            }
        }
        "blob" => {
            let Some(accept) = p.accept.as_deref().filter(|a| !a.is_empty()) else {
                return Err(o.constraint("blob permission requires `accept`".to_owned()));
            };
            if let Some(bad) = accept.iter().find(|a| !is_mime_pattern(a)) {
                return Err(o.constraint(format!("invalid blob `accept` pattern {bad:?}")));
            }
        }
        "account" => {
            match p.attr.as_deref() {
                Some("email" | "repo" | "status") => {}
                other => {
                    return Err(o.constraint(format!(
                        "account permission needs `attr` email, repo or status (found {other:?})"
                    )));
                }
            }
            check_actions(&["read", "manage"])?;
        }
        "identity" => {
            match p.attr.as_deref() {
                Some("*" | "handle") => {}
                other => {
                    return Err(o.constraint(format!(
                        "identity permission needs `attr` * or handle (found {other:?})"
                    )));
                }
            }
            check_actions(&["submit", "manage"])?;
        }
        other => {
            return Err(o.constraint(format!("unsupported permission resource {other:?}")));
        }
    }
    Ok(p)
}

fn check_ref_syntax(o: &Obj<'_>, path: &str, reference: &str) -> Result<(), SchemaError> {
    let fail = |reason: String| SchemaError::InvalidRef {
        nsid: o.nsid.to_owned(),
        path: path.to_owned(),
        reference: reference.to_owned(),
        reason,
    };
    let (nsid, name) = match reference.split_once('#') {
        Some((nsid, name)) => (nsid, Some(name)),
        None => (reference, None),
    };
    if let Some(name) = name
        && (name.is_empty() || name.contains('#') || name.contains('.'))
    {
        return Err(fail(
            "the definition name after `#` is empty or invalid".to_owned(),
        ));
    }
    if nsid.is_empty() {
        if name.is_none() {
            return Err(fail("empty ref".to_owned()));
        }
    } else if let Err(e) = syntax::validate(Format::Nsid, nsid) {
        return Err(fail(format!("not an NSID: {}", e.reason)));
    }
    Ok(())
}

fn parse_key_type(key: &str) -> Option<RecordKeyType<'_>> {
    match key {
        "tid" => Some(RecordKeyType::Tid),
        "nsid" => Some(RecordKeyType::Nsid),
        "any" => Some(RecordKeyType::Any),
        _ => {
            let literal = key.strip_prefix("literal:")?;
            syntax::validate(Format::RecordKey, literal).ok()?;
            Some(RecordKeyType::Literal(literal))
        }
    }
}

/// The JSON kind of a value, for error messages (`integer` and `float` told apart).
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A short rendering of an optional value for error messages.
fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 40 {
                let short: String = text.chars().take(40).collect();
                format!("{short}…")
            } else {
                text
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------------

/// Splits a ref into `(nsid, definition name)`, resolving `#local` against `base` (the NSID
/// of the document the ref appears in) and defaulting the name to `main`.
pub fn split_ref<'r>(base: &'r str, reference: &'r str) -> (&'r str, &'r str) {
    match reference.split_once('#') {
        Some(("", name)) => (base, name),
        Some((nsid, name)) => (nsid, name),
        None => (reference, "main"),
    }
}

/// A definition found by [`Catalog::resolve`].
#[derive(Debug, Clone, Copy)]
pub struct ResolvedDef<'a> {
    /// NSID of the document holding the definition.
    pub nsid: &'a str,
    /// The definition's name (`main` for a bare NSID).
    pub name: &'a str,
    /// The definition.
    pub def: &'a LexType,
}

/// A registry of lexicon documents keyed by NSID, resolving refs between them.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    docs: HashMap<String, LexiconDoc>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every lexicon shipped in this crate (`crate::generated::schemas::SCHEMAS`), parsed.
    ///
    /// A failure here is a bug in the shipped lexicons, reported rather than panicking.
    pub fn builtin() -> Result<Self, SchemaError> {
        let mut catalog = Self::new();
        for (listed, json) in crate::generated::schemas::SCHEMAS {
            let doc = parse_document(json)?;
            if doc.id != *listed {
                return Err(SchemaError::IdMismatch {
                    listed: (*listed).to_owned(),
                    id: doc.id,
                });
            }
            catalog.add(doc)?;
        }
        Ok(catalog)
    }

    /// Adds a document; fails if one with the same NSID is already present.
    pub fn add(&mut self, doc: LexiconDoc) -> Result<(), SchemaError> {
        if self.docs.contains_key(&doc.id) {
            return Err(SchemaError::Duplicate { nsid: doc.id });
        }
        self.docs.insert(doc.id.clone(), doc);
        Ok(())
    }

    /// Parses a document from JSON text and adds it; returns its NSID.
    pub fn add_json(&mut self, json: &str) -> Result<String, SchemaError> {
        let doc = parse_document(json)?;
        let id = doc.id.clone();
        self.add(doc)?;
        Ok(id)
    }

    /// The document with this NSID.
    pub fn get(&self, nsid: &str) -> Option<&LexiconDoc> {
        self.docs.get(nsid)
    }

    /// Whether a document with this NSID is present.
    pub fn contains(&self, nsid: &str) -> bool {
        self.docs.contains_key(nsid)
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// All documents, in no particular order.
    pub fn docs(&self) -> impl Iterator<Item = &LexiconDoc> {
        self.docs.values()
    }

    /// Resolves `reference` (`#def`, `nsid` or `nsid#def`) as written in the document `base`.
    pub fn resolve<'a>(&'a self, base: &str, reference: &str) -> Option<ResolvedDef<'a>> {
        let (nsid, name) = split_ref(base, reference);
        let doc = self.docs.get(nsid)?;
        let (name, def) = doc.defs.get_key_value(name)?;
        Some(ResolvedDef {
            nsid: &doc.id,
            name,
            def,
        })
    }

    /// Checks that every ref in every document resolves within this catalog.
    ///
    /// Documents may refer to lexicons that are not loaded (validation then fails only for
    /// data that reaches such a ref), so this is a separate, explicit check.
    pub fn check_refs(&self) -> Result<(), SchemaError> {
        let mut ids: Vec<&String> = self.docs.keys().collect();
        ids.sort();
        for id in ids {
            let Some(doc) = self.docs.get(id) else {
                continue;
            };
            for (name, def) in &doc.defs {
                let mut result = Ok(());
                visit_refs(def, &format!("defs.{name}"), &mut |path, reference| {
                    if result.is_ok() && self.resolve(&doc.id, reference).is_none() {
                        result = Err(SchemaError::UnresolvedRef {
                            nsid: doc.id.clone(),
                            path: path.to_owned(),
                            reference: reference.to_owned(),
                        });
                    }
                });
                result?;
            }
        }
        Ok(())
    }
}

/// Calls `f(path, ref)` for every ref and union member inside `ty`.
fn visit_refs(ty: &LexType, path: &str, f: &mut dyn FnMut(&str, &str)) {
    let visit_props = |props: &BTreeMap<String, LexType>, f: &mut dyn FnMut(&str, &str)| {
        for (name, prop) in props {
            visit_refs(prop, &format!("{path}.properties.{name}"), f);
        }
    };
    match ty {
        LexType::Ref(r) => f(&format!("{path}.ref"), &r.reference),
        LexType::Union(u) => {
            for (i, reference) in u.refs.iter().enumerate() {
                f(&format!("{path}.refs[{i}]"), reference);
            }
        }
        LexType::Array(a) => visit_refs(&a.items, &format!("{path}.items"), f),
        LexType::Object(o) => visit_props(&o.properties, f),
        LexType::Params(p) => visit_props(&p.properties, f),
        LexType::Record(r) => {
            for (name, prop) in &r.record.properties {
                visit_refs(prop, &format!("{path}.record.properties.{name}"), f);
            }
        }
        LexType::Query(q) => {
            visit_body(q.output.as_ref(), &format!("{path}.output"), f);
        }
        LexType::Procedure(p) => {
            visit_body(p.input.as_ref(), &format!("{path}.input"), f);
            visit_body(p.output.as_ref(), &format!("{path}.output"), f);
        }
        LexType::Subscription(s) => {
            if let Some(message) = &s.message {
                for (i, reference) in message.schema.refs.iter().enumerate() {
                    f(&format!("{path}.message.schema.refs[{i}]"), reference);
                }
            }
        }
        _ => {}
    }
}

fn visit_body(body: Option<&LexBody>, path: &str, f: &mut dyn FnMut(&str, &str)) {
    if let Some(schema) = body.and_then(|b| b.schema.as_deref()) {
        visit_refs(schema, &format!("{path}.schema"), f);
    }
}
