//! The ATProto label (`com.atproto.label.defs#label`, label version 1): its fields, their
//! checks, its canonical DAG-CBOR encoding, signing and verification, and its JSON and
//! CBOR wire forms.
//!
//! Signing follows the label spec (atproto-website `specs/label`, "Signatures"): the label
//! with exactly the schema fields, `ver` included (integer 1) and `sig` left out, absent
//! optional fields omitted, encoded as DAG-CBOR, hashed with SHA-256, and the hash signed
//! with the labeler's `#atproto_label` key (k256, low-S, 64 bytes `r ‖ s`). This matches
//! the reference implementations: `@atproto/ozone` `signLabel` (`mod-service/util.ts`) and
//! indigo's `atproto/labeling` (`Label.UnsignedBytes`).
//!
//! `neg` is kept exactly as received (`None`, `Some(false)`, `Some(true)`): labels we issue
//! omit it unless true, as the spec recommends and ozone does, but some issuers (the
//! `@skyware/labeler` package, indigo with a non-nil pointer) write `neg: false` and sign
//! it, and such a label only verifies if the field is re-encoded as it came.
//!
//! Two levels of checking: [`Label::check`] is what any valid label satisfies (the
//! protocol's field formats, `val` at most 128 bytes), applied to labels received from
//! others; [`check_value`] adds the value syntax Atelier issues (lowercase kebab-case, an
//! optional leading `!` for behaviour labels), applied by [`Label::sign`].

use std::fmt;

use crate::lexicons::syntax::{self, Format};
use crate::sync::cbor::{CborError, Kind, MapKeys, Reader};
use crate::sync::keys::{KeyError, PublicKey};
use data_encoding::{BASE64, BASE64_NOPAD};
use serde_json::{Map, Value};

use super::cbor;

/// Something that signs labels: SHA-256 of the message, ECDSA with the labeler's
/// `#atproto_label` key, 64 bytes `r ‖ s`, low-S. The labeler's key (in the control plane)
/// implements it; the AppView only verifies.
pub trait LabelSigner {
    /// Signs SHA-256(`msg`).
    fn sign_label_bytes(&self, msg: &[u8]) -> [u8; 64];
}

/// The label format version this module implements (`ver`).
pub const LABEL_VERSION: i64 = 1;

/// The longest `val`, in bytes.
pub const MAX_VALUE_BYTES: usize = 128;

/// The system ("behaviour") label values the reference AppView acts on.
pub const SYSTEM_VALUES: &[&str] = &[
    "!hide",
    "!warn",
    "!no-unauthenticated",
    "!no-promote",
    "!takedown",
    "!suspend",
];

/// A label field, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `ver`: the label format version.
    Ver,
    /// `src`: the labeler's DID.
    Src,
    /// `uri`: the subject (an `at://` URI or a DID).
    Uri,
    /// `cid`: the subject's version.
    Cid,
    /// `val`: the label value.
    Val,
    /// `neg`: whether this is a negation.
    Neg,
    /// `cts`: the creation time.
    Cts,
    /// `exp`: the expiry time.
    Exp,
    /// `sig`: the signature.
    Sig,
}

impl Field {
    /// The field's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Ver => "ver",
            Field::Src => "src",
            Field::Uri => "uri",
            Field::Cid => "cid",
            Field::Val => "val",
            Field::Neg => "neg",
            Field::Cts => "cts",
            Field::Exp => "exp",
            Field::Sig => "sig",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a label is invalid or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A field has the wrong type or syntax.
    #[error("label field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: Field,
        /// What is wrong with it.
        reason: String,
    },
    /// A required field is absent.
    #[error("label field `{0}` is missing")]
    Missing(Field),
    /// The label is not a JSON object or a CBOR map.
    #[error("a label must be an object")]
    NotAnObject,
    /// Verification was asked of a label without `sig`.
    #[error("label field `sig` is missing: the label is unsigned")]
    Unsigned,
    /// The signature does not verify (wrong length, high-S, wrong key or tampered label).
    #[error("label field `sig` does not verify: {0}")]
    Signature(KeyError),
    /// The label's CBOR is malformed or not strict DAG-CBOR.
    #[error("label CBOR: {0}")]
    Cbor(CborError),
}

impl LabelError {
    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<Field> {
        match self {
            LabelError::Invalid { field, .. } | LabelError::Missing(field) => Some(*field),
            LabelError::Unsigned | LabelError::Signature(_) => Some(Field::Sig),
            LabelError::NotAnObject | LabelError::Cbor(_) => None,
        }
    }
}

fn invalid(field: Field, reason: impl Into<String>) -> LabelError {
    LabelError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A label, version 1. `ver` is implied (always [`LABEL_VERSION`]); `sig` is `None` until
/// [`Label::sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The labeler's DID.
    pub src: String,
    /// The subject: an `at://` URI for a record, a DID for an account.
    pub uri: String,
    /// If set, the label applies to this version (CID) of the subject only.
    pub cid: Option<String>,
    /// The value.
    pub val: String,
    /// `Some(true)` for a negation. Kept as received, because `neg: false`, when an issuer
    /// writes it, is part of the signed bytes.
    pub neg: Option<bool>,
    /// When the label was created (RFC 3339).
    pub cts: String,
    /// When the label stops applying (RFC 3339), if it does.
    pub exp: Option<String>,
    /// The signature: 64 bytes `r ‖ s` when valid; any length as received.
    pub sig: Option<Vec<u8>>,
}

impl Label {
    /// An unsigned, non-negated label with the required fields.
    pub fn new(
        src: impl Into<String>,
        uri: impl Into<String>,
        val: impl Into<String>,
        cts: impl Into<String>,
    ) -> Label {
        Label {
            src: src.into(),
            uri: uri.into(),
            cid: None,
            val: val.into(),
            neg: None,
            cts: cts.into(),
            exp: None,
            sig: None,
        }
    }

    /// The same label, limited to one version of the subject.
    pub fn with_cid(mut self, cid: impl Into<String>) -> Label {
        self.cid = Some(cid.into());
        self
    }

    /// The same label, expiring at `exp`.
    pub fn with_exp(mut self, exp: impl Into<String>) -> Label {
        self.exp = Some(exp.into());
        self
    }

    /// The same label as a negation (`neg: true`), which retracts an earlier label with the
    /// same `src`, `uri` and `val`.
    pub fn negated(mut self) -> Label {
        self.neg = Some(true);
        self
    }

    /// Whether this label is a negation.
    pub fn is_negation(&self) -> bool {
        self.neg == Some(true)
    }

    /// Checks every field's syntax as the protocol defines it: `src` a DID, `uri` an
    /// `at://` URI or a DID, `cid` a CIDv1, `val` 1 to 128 bytes, `cts` and `exp` datetimes.
    /// The value syntax Atelier issues is checked separately by [`check_value`].
    pub fn check(&self) -> Result<(), LabelError> {
        syntax::validate(Format::Did, &self.src).map_err(|e| invalid(Field::Src, e.reason))?;
        check_subject(&self.uri)?;
        if let Some(cid) = &self.cid {
            syntax::parse_cid(cid).map_err(|e| invalid(Field::Cid, e.reason))?;
        }
        if self.val.is_empty() {
            return Err(invalid(Field::Val, "must not be empty"));
        }
        if self.val.len() > MAX_VALUE_BYTES {
            return Err(invalid(
                Field::Val,
                format!("is {} bytes, more than {MAX_VALUE_BYTES}", self.val.len()),
            ));
        }
        datetime_micros(&self.cts).map_err(|reason| invalid(Field::Cts, reason))?;
        if let Some(exp) = &self.exp {
            datetime_micros(exp).map_err(|reason| invalid(Field::Exp, reason))?;
        }
        Ok(())
    }

    /// The bytes that are signed: the label's canonical DAG-CBOR without `sig`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.uri.len());
        self.write_cbor(&mut out, false);
        out
    }

    /// The label's DAG-CBOR with `sig` (when set), as in `subscribeLabels` frames.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200 + self.uri.len());
        self.write_cbor(&mut out, true);
        out
    }

    /// Checks the label ([`Label::check`] and [`check_value`]) and signs it with `key`,
    /// replacing any previous signature.
    pub fn sign(mut self, key: &impl LabelSigner) -> Result<Label, LabelError> {
        self.check()?;
        check_value(&self.val)?;
        let sig = key.sign_label_bytes(&self.signing_bytes());
        self.sig = Some(sig.to_vec());
        Ok(self)
    }

    /// Verifies `sig` against `key` (the issuer's `#atproto_label` key). A signature that is
    /// not 64 bytes, or not low-S, is refused.
    pub fn verify(&self, key: &PublicKey) -> Result<(), LabelError> {
        let sig = self.sig.as_deref().ok_or(LabelError::Unsigned)?;
        key.verify_bytes(&self.signing_bytes(), sig)
            .map_err(LabelError::Signature)
    }

    /// Writes the label as a DAG-CBOR map, keys in canonical order
    /// (`cid cts exp neg sig src uri val ver`: all three bytes long, so bytewise).
    pub(crate) fn write_cbor(&self, out: &mut Vec<u8>, with_sig: bool) {
        let sig = self.sig.as_deref().filter(|_| with_sig);
        let len = 5
            + usize::from(self.cid.is_some())
            + usize::from(self.exp.is_some())
            + usize::from(self.neg.is_some())
            + usize::from(sig.is_some());
        cbor::map(out, len);
        if let Some(cid) = &self.cid {
            cbor::text(out, "cid");
            cbor::text(out, cid);
        }
        cbor::text(out, "cts");
        cbor::text(out, &self.cts);
        if let Some(exp) = &self.exp {
            cbor::text(out, "exp");
            cbor::text(out, exp);
        }
        if let Some(neg) = self.neg {
            cbor::text(out, "neg");
            cbor::boolean(out, neg);
        }
        if let Some(sig) = sig {
            cbor::text(out, "sig");
            cbor::bytes(out, sig);
        }
        cbor::text(out, "src");
        cbor::text(out, &self.src);
        cbor::text(out, "uri");
        cbor::text(out, &self.uri);
        cbor::text(out, "val");
        cbor::text(out, &self.val);
        cbor::text(out, "ver");
        cbor::int(out, LABEL_VERSION);
    }

    /// The label as ATProto JSON (`sig` as `{"$bytes": base64}`), as `queryLabels` returns
    /// it.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("ver".into(), Value::from(LABEL_VERSION));
        map.insert("src".into(), Value::from(self.src.as_str()));
        map.insert("uri".into(), Value::from(self.uri.as_str()));
        if let Some(cid) = &self.cid {
            map.insert("cid".into(), Value::from(cid.as_str()));
        }
        map.insert("val".into(), Value::from(self.val.as_str()));
        if let Some(neg) = self.neg {
            map.insert("neg".into(), Value::from(neg));
        }
        map.insert("cts".into(), Value::from(self.cts.as_str()));
        if let Some(exp) = &self.exp {
            map.insert("exp".into(), Value::from(exp.as_str()));
        }
        if let Some(sig) = &self.sig {
            let mut bytes = Map::new();
            bytes.insert("$bytes".into(), Value::from(BASE64_NOPAD.encode(sig)));
            map.insert("sig".into(), Value::Object(bytes));
        }
        Value::Object(map)
    }

    /// Reads a label from ATProto JSON and checks it ([`Label::check`]). `ver` must be 1;
    /// `$type` and fields outside the schema are ignored, as signing ignores them.
    pub fn from_json(value: &Value) -> Result<Label, LabelError> {
        let map = value.as_object().ok_or(LabelError::NotAnObject)?;
        let text = |field: Field| -> Result<Option<String>, LabelError> {
            match map.get(field.name()) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(field, "must be a string")),
            }
        };
        let required = |field: Field| text(field)?.ok_or(LabelError::Missing(field));
        match map.get("ver") {
            None => return Err(LabelError::Missing(Field::Ver)),
            Some(v) if v.as_i64() == Some(LABEL_VERSION) => {}
            Some(v) => return Err(invalid(Field::Ver, format!("must be 1, not {v}"))),
        }
        let neg = match map.get("neg") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(invalid(Field::Neg, "must be a boolean")),
        };
        let sig = match map.get("sig") {
            None => None,
            Some(value) => Some(json_bytes(value).ok_or_else(|| {
                invalid(
                    Field::Sig,
                    "must be {\"$bytes\": base64} (standard alphabet, padding optional)",
                )
            })?),
        };
        let label = Label {
            src: required(Field::Src)?,
            uri: required(Field::Uri)?,
            cid: text(Field::Cid)?,
            val: required(Field::Val)?,
            neg,
            cts: required(Field::Cts)?,
            exp: text(Field::Exp)?,
            sig,
        };
        label.check()?;
        Ok(label)
    }

    /// Reads one label (a DAG-CBOR map, strictly checked) from `r`, as found in a
    /// `subscribeLabels` frame's `labels` array, and checks it ([`Label::check`]).
    pub fn read_cbor(r: &mut Reader<'_>) -> Result<Label, LabelError> {
        if r.peek_kind().map_err(LabelError::Cbor)? != Kind::Map {
            return Err(LabelError::NotAnObject);
        }
        let n = r.map_len().map_err(LabelError::Cbor)?;
        let mut keys = MapKeys::new();
        let (mut src, mut uri, mut cid, mut val, mut neg, mut cts, mut exp, mut sig, mut ver) =
            (None, None, None, None, None, None, None, None, None);
        let cbor_text = |r: &mut Reader<'_>, field: Field| -> Result<String, LabelError> {
            r.text()
                .map(str::to_owned)
                .map_err(|e| invalid(field, format!("must be a text string ({e})")))
        };
        for _ in 0..n {
            let key = keys.next(r).map_err(LabelError::Cbor)?;
            match key {
                "src" => src = Some(cbor_text(r, Field::Src)?),
                "uri" => uri = Some(cbor_text(r, Field::Uri)?),
                "cid" => cid = Some(cbor_text(r, Field::Cid)?),
                "val" => val = Some(cbor_text(r, Field::Val)?),
                "cts" => cts = Some(cbor_text(r, Field::Cts)?),
                "exp" => exp = Some(cbor_text(r, Field::Exp)?),
                "neg" => {
                    neg = Some(
                        r.bool()
                            .map_err(|e| invalid(Field::Neg, format!("must be a boolean ({e})")))?,
                    )
                }
                "sig" => {
                    sig = Some(
                        r.bytes()
                            .map_err(|e| {
                                invalid(Field::Sig, format!("must be a byte string ({e})"))
                            })?
                            .to_vec(),
                    )
                }
                "ver" => {
                    ver =
                        Some(r.int().map_err(|e| {
                            invalid(Field::Ver, format!("must be an integer ({e})"))
                        })?)
                }
                _ => r.skip().map_err(LabelError::Cbor)?,
            }
        }
        match ver {
            None => return Err(LabelError::Missing(Field::Ver)),
            Some(LABEL_VERSION) => {}
            Some(other) => return Err(invalid(Field::Ver, format!("must be 1, not {other}"))),
        }
        let label = Label {
            src: src.ok_or(LabelError::Missing(Field::Src))?,
            uri: uri.ok_or(LabelError::Missing(Field::Uri))?,
            cid,
            val: val.ok_or(LabelError::Missing(Field::Val))?,
            neg,
            cts: cts.ok_or(LabelError::Missing(Field::Cts))?,
            exp,
            sig,
        };
        label.check()?;
        Ok(label)
    }

    /// Reads a label from exactly one DAG-CBOR value ([`Label::read_cbor`]).
    pub fn from_cbor(bytes: &[u8]) -> Result<Label, LabelError> {
        let mut r = Reader::new(bytes);
        let label = Label::read_cbor(&mut r)?;
        r.finish().map_err(LabelError::Cbor)?;
        Ok(label)
    }
}

/// The `subscribeLabels` `#labels` frame for `labels` at `seq`: the DAG-CBOR header
/// `{t: "#labels", op: 1}` followed by the DAG-CBOR body `{seq, labels}` (labels with `sig`).
pub fn labels_frame(seq: i64, labels: &[Label]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 256 * labels.len());
    // Header: `t` sorts before `op` (shorter key first).
    cbor::map(&mut out, 2);
    cbor::text(&mut out, "t");
    cbor::text(&mut out, "#labels");
    cbor::text(&mut out, "op");
    cbor::int(&mut out, 1);
    // Body: `seq` sorts before `labels`.
    cbor::map(&mut out, 2);
    cbor::text(&mut out, "seq");
    cbor::int(&mut out, seq);
    cbor::text(&mut out, "labels");
    cbor::array(&mut out, labels.len());
    for label in labels {
        label.write_cbor(&mut out, true);
    }
    out
}

/// Decodes `{"$bytes": base64}` (standard alphabet, with or without padding).
fn json_bytes(value: &Value) -> Option<Vec<u8>> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let text = map.get("$bytes")?.as_str()?;
    let codec = if text.ends_with('=') {
        &BASE64
    } else {
        &BASE64_NOPAD
    };
    codec.decode(text.as_bytes()).ok()
}

/// Checks a label subject: an `at://` URI or a DID.
pub fn check_subject(uri: &str) -> Result<(), LabelError> {
    if uri.starts_with("at://") {
        syntax::validate(Format::AtUri, uri).map_err(|e| invalid(Field::Uri, e.reason))
    } else if uri.starts_with("did:") {
        syntax::validate(Format::Did, uri).map_err(|e| invalid(Field::Uri, e.reason))
    } else {
        Err(invalid(Field::Uri, "must be an at:// URI or a DID"))
    }
}

/// Checks a value Atelier may issue: at most 128 bytes of lowercase ASCII letters, digits
/// and `-` (not first or last), optionally after one leading `!` that marks a system
/// (behaviour) label such as `!takedown` or `!warn`.
pub fn check_value(val: &str) -> Result<(), LabelError> {
    if val.len() > MAX_VALUE_BYTES {
        return Err(invalid(
            Field::Val,
            format!("is {} bytes, more than {MAX_VALUE_BYTES}", val.len()),
        ));
    }
    let body = val.strip_prefix('!').unwrap_or(val);
    if body.is_empty() {
        return Err(invalid(Field::Val, "must not be empty"));
    }
    if let Some(bad) = body
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(invalid(
            Field::Val,
            format!(
                "{bad:?} is not allowed: use lowercase a-z, 0-9 and '-' (with an optional leading '!')"
            ),
        ));
    }
    if body.starts_with('-') || body.ends_with('-') {
        return Err(invalid(Field::Val, "must not start or end with '-'"));
    }
    Ok(())
}

/// Parses an RFC 3339 datetime (the lexicon `datetime` format) to microseconds since the
/// epoch.
pub fn datetime_micros(value: &str) -> Result<i64, String> {
    syntax::parse_datetime(value)
        .map(|dt| dt.timestamp_micros())
        .map_err(|e| e.reason)
}

/// Formats microseconds since the epoch as a label timestamp: RFC 3339 UTC with
/// milliseconds (`2024-10-23T17:51:19.128Z`), as the reference implementation writes them.
pub fn format_datetime(micros: i64) -> String {
    let millis = micros.div_euclid(1000) * 1000;
    let full = crate::service::rfc3339(millis);
    // `rfc3339` writes six fractional digits, the last three zero here; keep three.
    match full.strip_suffix("000Z") {
        Some(head) => format!("{head}Z"),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_have_milliseconds() {
        assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_datetime(1_729_705_879_128_999),
            "2024-10-23T17:51:19.128Z"
        );
        assert_eq!(
            datetime_micros("2024-10-23T17:51:19.128Z"),
            Ok(1_729_705_879_128_000)
        );
    }

    /// A fixed test key (the AppView has no key generator of its own).
    struct TestKey(secp256k1::SecretKey);

    impl LabelSigner for TestKey {
        fn sign_label_bytes(&self, msg: &[u8]) -> [u8; 64] {
            use sha2::Digest;
            let digest: [u8; 32] = sha2::Sha256::digest(msg).into();
            let secp = secp256k1::Secp256k1::signing_only();
            let mut sig = secp.sign_ecdsa(secp256k1::Message::from_digest(digest), &self.0);
            sig.normalize_s();
            sig.serialize_compact()
        }
    }

    impl TestKey {
        fn public_key(&self) -> PublicKey {
            let secp = secp256k1::Secp256k1::signing_only();
            let point = secp256k1::PublicKey::from_secret_key(&secp, &self.0).serialize();
            PublicKey::from_point(crate::sync::keys::Curve::K256, &point).unwrap()
        }
    }

    #[test]
    fn cbor_round_trips() {
        let label = Label::new(
            "did:plc:n3timvoib5nau7gvwd6cshap",
            "at://did:plc:44ybard66vv44zksje25o7dz/app.bsky.feed.post/3k",
            "spam",
            "2024-10-23T17:51:19.128Z",
        )
        .with_exp("2025-10-23T17:51:19.128Z")
        .negated();
        let key = TestKey(secp256k1::SecretKey::from_byte_array([7; 32]).unwrap());
        let signed = label.sign(&key).unwrap();
        assert_eq!(Label::from_cbor(&signed.to_cbor()), Ok(signed.clone()));
        assert_eq!(Label::from_json(&signed.to_json()), Ok(signed.clone()));
        assert_eq!(signed.verify(&key.public_key()), Ok(()));
    }
}
