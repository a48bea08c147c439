//! ATProto string formats: DID, handle, NSID, AT-URI, TID, record key, datetime, language, CID,
//! URI and at-identifier, checked as the ATProto specs and the interop test vectors say.
//!
//! Every check is written by hand as one pass over the bytes, with no regex engine and no
//! allocation on success: these checks run for every `format` string of every record the
//! AppView ingests, so they must be cheap, and they never panic on any input. An allocation
//! happens only to word the reason of a failure.
//!
//! There are three levels of checking, which differ only for `datetime` and `language`:
//!
//! | format     | [`check_syntax`]                   | [`validate`] (Lexicon validation)  | [`check_strict`]                    |
//! | ---        | ---                                | ---                                | ---                                 |
//! | `datetime` | shape only (digits where digits go) | shape and calendar semantics       | same as [`validate`]                |
//! | `language` | well-formed (RFC 5646 §2.1)        | same as [`check_syntax`]           | also "valid": no repeated variant or extension singleton (RFC 5646 §2.2.9) |
//! | others     | the format's rules                 | same                               | same                                |
//!
//! The Lexicon spec says implementations should check datetime semantics (no month `00`), so
//! [`validate`] rejects `1985-00-12T23:20:50Z`. For language it says a tag must be well-formed,
//! and that clients should *ignore* (not reject) tags that are well-formed but not valid, so
//! [`validate`] accepts `de-DE-1901-1901` and [`parse_language`] / [`check_strict`] reject it.

use std::borrow::Cow;
use std::fmt;
use std::iter::Peekable;

/// Maximum length of a DID, in characters.
pub const MAX_DID_LEN: usize = 2048;
/// Maximum length of a handle, in characters.
pub const MAX_HANDLE_LEN: usize = 253;
/// Maximum length of one handle or NSID domain segment, in characters.
pub const MAX_SEGMENT_LEN: usize = 63;
/// Maximum length of an NSID, in characters.
pub const MAX_NSID_LEN: usize = 317;
/// Maximum length of an AT-URI, in bytes (8 KiB).
pub const MAX_AT_URI_LEN: usize = 8 * 1024;
/// Maximum length of a generic URI, in bytes (8 KiB).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Maximum length of a record key, in characters (the minimum is 1).
pub const MAX_RECORD_KEY_LEN: usize = 512;
/// Exact length of a TID, in characters.
pub const TID_LEN: usize = 13;
/// Minimum length of a CID string, in characters.
pub const MIN_CID_LEN: usize = 8;
/// Maximum length of a CID string, in characters.
pub const MAX_CID_LEN: usize = 256;
/// Maximum number of fractional-second digits in a datetime (as both reference implementations).
pub const MAX_DATETIME_FRACTION_DIGITS: usize = 20;
/// Maximum length of a language tag, in characters (as the Go reference implementation).
pub const MAX_LANGUAGE_LEN: usize = 128;

/// A string format defined by the ATProto specs (the lexicon `format` values plus the
/// identifiers the protocol itself uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `at-identifier`: a DID or a handle.
    AtIdentifier,
    /// `at-uri`: the restricted Lexicon AT-URI, `at://AUTHORITY[/COLLECTION[/RKEY]]`.
    AtUri,
    /// `cid`: a CID in string form (syntax only; see [`parse_cid`] to decode it).
    Cid,
    /// `datetime`: an RFC 3339 / ISO 8601 timestamp with a required timezone.
    Datetime,
    /// `did`: any DID method, generic DID syntax.
    Did,
    /// `handle`: a domain-name handle.
    Handle,
    /// `language`: a BCP 47 language tag.
    Language,
    /// `nsid`: a namespaced identifier such as `com.example.fooBar`.
    Nsid,
    /// `record-key`: a record key in the general ("any") syntax.
    RecordKey,
    /// `tid`: a 13-character timestamp identifier.
    Tid,
    /// `uri`: a generic URI (a scheme, a colon and a non-empty rest without whitespace).
    Uri,
}

impl Format {
    /// The lexicon name of the format, e.g. `at-uri`.
    pub fn name(self) -> &'static str {
        match self {
            Format::AtIdentifier => "at-identifier",
            Format::AtUri => "at-uri",
            Format::Cid => "cid",
            Format::Datetime => "datetime",
            Format::Did => "did",
            Format::Handle => "handle",
            Format::Language => "language",
            Format::Nsid => "nsid",
            Format::RecordKey => "record-key",
            Format::Tid => "tid",
            Format::Uri => "uri",
        }
    }

    /// Parses a lexicon `format` value.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "at-identifier" => Format::AtIdentifier,
            "at-uri" => Format::AtUri,
            "cid" => Format::Cid,
            "datetime" => Format::Datetime,
            "did" => Format::Did,
            "handle" => Format::Handle,
            "language" => Format::Language,
            "nsid" => Format::Nsid,
            "record-key" => Format::RecordKey,
            "tid" => Format::Tid,
            "uri" => Format::Uri,
            _ => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that does not have the syntax its format requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {format}: {reason}")]
pub struct SyntaxError {
    /// The format that was expected.
    pub format: Format,
    /// What is wrong, in words.
    pub reason: String,
}

/// Checks `value` against `format` as Lexicon validation requires (see the module docs for how
/// this differs from [`check_syntax`] and [`check_strict`]).
pub fn validate(format: Format, value: &str) -> Result<(), SyntaxError> {
    let result = match format {
        Format::Datetime => scan_datetime(value).and_then(|raw| raw.check_semantics()),
        _ => syntax_reason(format, value),
    };
    result.map_err(|reason| error(format, reason))
}

/// Checks only the lexical well-formedness of `value`: for `datetime` this is the shape (digits,
/// separators, timezone) without calendar semantics; for every other format it is [`validate`].
pub fn check_syntax(format: Format, value: &str) -> Result<(), SyntaxError> {
    syntax_reason(format, value).map_err(|reason| error(format, reason))
}

/// The strictest check: [`validate`], plus RFC 5646 validity for `language` (no repeated variant
/// subtag or extension singleton), which the spec says clients should ignore rather than reject.
pub fn check_strict(format: Format, value: &str) -> Result<(), SyntaxError> {
    match format {
        Format::Language => parse_language(value).map(|_| ()),
        _ => validate(format, value),
    }
}

/// Whether `value` is a valid DID (generic syntax, any method).
pub fn is_valid_did(value: &str) -> bool {
    did_reason(value).is_ok()
}

/// Whether `value` is a syntactically valid handle.
pub fn is_valid_handle(value: &str) -> bool {
    handle_reason(value).is_ok()
}

/// Whether `value` is a DID or a handle.
pub fn is_valid_at_identifier(value: &str) -> bool {
    at_identifier_reason(value).is_ok()
}

/// Whether `value` is a valid NSID.
pub fn is_valid_nsid(value: &str) -> bool {
    nsid_reason(value).is_ok()
}

/// Whether `value` is a valid Lexicon (restricted) AT-URI.
pub fn is_valid_at_uri(value: &str) -> bool {
    at_uri_reason(value).is_ok()
}

/// Whether `value` is a valid TID.
pub fn is_valid_tid(value: &str) -> bool {
    tid_reason(value).is_ok()
}

/// Whether `value` is a valid record key.
pub fn is_valid_record_key(value: &str) -> bool {
    record_key_reason(value).is_ok()
}

/// Whether `value` has the syntax of a CID string (see [`parse_cid`] to decode it).
pub fn is_valid_cid(value: &str) -> bool {
    cid_reason(value).is_ok()
}

/// Whether `value` is a valid datetime (shape and calendar semantics, as [`validate`]).
pub fn is_valid_datetime(value: &str) -> bool {
    parse_datetime(value).is_ok()
}

/// Whether `value` is a well-formed language tag (as [`validate`]).
pub fn is_valid_language(value: &str) -> bool {
    scan_language(value).is_ok()
}

/// Whether `value` is a generic URI (as [`validate`]).
pub fn is_valid_uri(value: &str) -> bool {
    uri_reason(value).is_ok()
}

/// The reason a check failed: a fixed phrase, or one naming the offending part.
type Reason = Cow<'static, str>;
/// The outcome of one internal check.
type Check = Result<(), Reason>;

fn error(format: Format, reason: Reason) -> SyntaxError {
    SyntaxError {
        format,
        reason: reason.into_owned(),
    }
}

fn fail<T>(reason: &'static str) -> Result<T, Reason> {
    Err(Cow::Borrowed(reason))
}

/// The syntax check of each format, with datetime as shape only.
fn syntax_reason(format: Format, value: &str) -> Check {
    match format {
        Format::AtIdentifier => at_identifier_reason(value),
        Format::AtUri => at_uri_reason(value),
        Format::Cid => cid_reason(value),
        Format::Datetime => scan_datetime(value).map(|_| ()),
        Format::Did => did_reason(value),
        Format::Handle => handle_reason(value),
        Format::Language => scan_language(value).map(|_| ()),
        Format::Nsid => nsid_reason(value),
        Format::RecordKey => record_key_reason(value),
        Format::Tid => tid_reason(value),
        Format::Uri => uri_reason(value),
    }
}

/// Words a disallowed character found at byte `index` of `value`. Every byte before `index`
/// was accepted ASCII, so `index` is a character boundary.
fn disallowed(what: &str, value: &str, index: usize) -> Reason {
    let found = value
        .get(index..)
        .and_then(|rest| rest.chars().next())
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    Cow::Owned(format!("{what} contains disallowed character {found:?}"))
}

/// Words a length overrun. Lengths are measured in bytes, which are characters for ASCII input
/// (the only input these formats can accept).
fn too_long(what: &str, max: usize, value: &str) -> Reason {
    let unit = if value.is_ascii() {
        "characters"
    } else {
        "bytes"
    };
    Cow::Owned(format!("{what} longer than {max} {unit}"))
}

// ---------------------------------------------------------------------------------------------
// DID
// ---------------------------------------------------------------------------------------------

fn did_reason(value: &str) -> Check {
    if value.len() > MAX_DID_LEN {
        return Err(too_long("DID", MAX_DID_LEN, value));
    }
    let Some(rest) = value.strip_prefix("did:") else {
        let bytes = value.as_bytes();
        if bytes.len() >= 4 && bytes[..4].eq_ignore_ascii_case(b"did:") {
            return fail("DID must start with lower-case \"did:\"");
        }
        return fail("DID must start with \"did:\"");
    };
    let rest = rest.as_bytes();
    let Some(colon) = rest.iter().position(|&b| b == b':') else {
        return fail("DID has no ':' after the method name");
    };
    if colon == 0 {
        return fail("DID method is empty");
    }
    if !rest[..colon].iter().all(u8::is_ascii_lowercase) {
        return fail("DID method must be lower-case ASCII letters only");
    }
    let identifier = &rest[colon + 1..];
    if identifier.is_empty() {
        return fail("DID method-specific identifier is empty");
    }
    let offset = "did:".len() + colon + 1;
    for (i, &b) in identifier.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-')) {
            return Err(disallowed("DID", value, offset + i));
        }
    }
    match identifier.last() {
        Some(b':') => fail("DID must not end with ':'"),
        Some(b'%') => fail("DID must not end with '%'"),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Handle and NSID domain segments
// ---------------------------------------------------------------------------------------------

/// Checks one domain segment (`value[start..end]`, not empty) of a handle or an NSID authority.
fn domain_segment_reason(what: &str, value: &str, start: usize, end: usize) -> Check {
    let bytes = value.as_bytes();
    for (i, &b) in bytes[start..end].iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'-') {
            return Err(disallowed(what, value, start + i));
        }
    }
    if end - start > MAX_SEGMENT_LEN {
        return Err(Cow::Owned(format!(
            "{what} segment longer than {MAX_SEGMENT_LEN} characters"
        )));
    }
    if bytes[start] == b'-' {
        return Err(Cow::Owned(format!("{what} segment starts with a hyphen")));
    }
    if bytes[end - 1] == b'-' {
        return Err(Cow::Owned(format!("{what} segment ends with a hyphen")));
    }
    Ok(())
}

/// Words an empty segment at byte `index` of a dotted name that is `len` bytes long.
fn empty_segment(what: &str, index: usize, len: usize) -> Reason {
    let reason = if index == 0 {
        format!("{what} starts with a period")
    } else if index == len {
        format!("{what} ends with a period")
    } else {
        format!("{what} has an empty segment (two periods in a row)")
    };
    Cow::Owned(reason)
}

/// Checks the dot-separated domain segments of `value`, which starts a dotted name of
/// `whole_len` bytes (the name itself for a handle, the whole NSID for an NSID authority), and
/// returns how many segments there are and where the last one starts.
fn domain_segments(what: &str, value: &str, whole_len: usize) -> Result<(usize, usize), Reason> {
    let bytes = value.as_bytes();
    let mut count = 0;
    let mut start = 0;
    let mut last_start = 0;
    for i in 0..=bytes.len() {
        if i < bytes.len() && bytes[i] != b'.' {
            continue;
        }
        if i == start {
            return Err(empty_segment(what, i, whole_len));
        }
        domain_segment_reason(what, value, start, i)?;
        count += 1;
        last_start = start;
        start = i + 1;
    }
    Ok((count, last_start))
}

fn handle_reason(value: &str) -> Check {
    if value.is_empty() {
        return fail("handle is empty");
    }
    if value.len() > MAX_HANDLE_LEN {
        return Err(too_long("handle", MAX_HANDLE_LEN, value));
    }
    let (count, last_start) = domain_segments("handle", value, value.len())?;
    if count < 2 {
        return fail("handle must have at least two segments (like name.example)");
    }
    if value.as_bytes()[last_start].is_ascii_digit() {
        return fail("handle's last segment (the top-level domain) must not start with a digit");
    }
    Ok(())
}

fn at_identifier_reason(value: &str) -> Check {
    // A colon is never allowed in a handle and always present in a DID.
    if value.contains(':') {
        did_reason(value)
    } else {
        handle_reason(value)
    }
}

fn nsid_reason(value: &str) -> Check {
    if value.is_empty() {
        return fail("NSID is empty");
    }
    if value.len() > MAX_NSID_LEN {
        return Err(too_long("NSID", MAX_NSID_LEN, value));
    }
    let Some(last_dot) = value.rfind('.') else {
        return fail("NSID must have at least 3 segments");
    };
    let authority = &value[..last_dot];
    let (count, _) = domain_segments("NSID", authority, value.len())?;
    if count < 2 {
        return fail("NSID must have at least 3 segments");
    }
    // The NSID spec also caps the domain authority at 253 characters, but the interop vectors
    // accept a 283-character authority (`com.middle.middle....foo`, 287 characters in all), as
    // both reference implementations do: only the total length (317) is enforced.
    if authority.as_bytes()[0].is_ascii_digit() {
        return fail("NSID's first segment (the top-level domain) must not start with a digit");
    }
    let name = &value.as_bytes()[last_dot + 1..];
    let Some(&first) = name.first() else {
        return Err(empty_segment("NSID", value.len(), value.len()));
    };
    for (i, &b) in name.iter().enumerate() {
        if !b.is_ascii_alphanumeric() {
            return Err(disallowed("NSID name", value, last_dot + 1 + i));
        }
    }
    if !first.is_ascii_alphabetic() {
        return fail("NSID name must start with an ASCII letter");
    }
    if name.len() > MAX_SEGMENT_LEN {
        return fail("NSID name longer than 63 characters");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Record key, TID, CID
// ---------------------------------------------------------------------------------------------

fn record_key_reason(value: &str) -> Check {
    if value.is_empty() {
        return fail("record key is empty");
    }
    if value.len() > MAX_RECORD_KEY_LEN {
        return Err(too_long("record key", MAX_RECORD_KEY_LEN, value));
    }
    if value == "." || value == ".." {
        return fail("record key must not be \".\" or \"..\"");
    }
    for (i, &b) in value.as_bytes().iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'-')) {
            return Err(disallowed("record key", value, i));
        }
    }
    Ok(())
}

fn tid_reason(value: &str) -> Check {
    if value.len() != TID_LEN {
        return Err(Cow::Owned(format!(
            "TID must be exactly {TID_LEN} characters, found {}",
            value.chars().count()
        )));
    }
    for (i, &b) in value.as_bytes().iter().enumerate() {
        if !matches!(b, b'2'..=b'7' | b'a'..=b'z') {
            let found = value
                .get(i..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(Cow::Owned(format!(
                "TID contains {found:?}, which is not in the base32-sortable alphabet (234567a-z)"
            )));
        }
    }
    if !matches!(value.as_bytes()[0], b'2'..=b'7' | b'a'..=b'j') {
        return fail("TID must start with one of 234567abcdefghij (its top bit must be zero)");
    }
    Ok(())
}

fn cid_reason(value: &str) -> Check {
    if value.len() < MIN_CID_LEN {
        return fail("CID shorter than 8 characters");
    }
    if value.len() > MAX_CID_LEN {
        return Err(too_long("CID", MAX_CID_LEN, value));
    }
    for (i, &b) in value.as_bytes().iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'+' || b == b'=') {
            return Err(disallowed("CID", value, i));
        }
    }
    if value.starts_with("Qm") {
        return fail("CIDv0 (\"Qm...\") is not allowed in atproto");
    }
    Ok(())
}

/// Decodes a CID string: the [`Format::Cid`] syntax, then a multibase-encoded CIDv1 with no
/// trailing bytes.
pub fn parse_cid(value: &str) -> Result<cid::Cid, SyntaxError> {
    let invalid = |reason: String| SyntaxError {
        format: Format::Cid,
        reason,
    };
    cid_reason(value).map_err(|reason| error(Format::Cid, reason))?;
    let (_, bytes) = cid::multibase::decode(value)
        .map_err(|e| invalid(format!("CID is not valid multibase: {e}")))?;
    let mut rest = bytes.as_slice();
    let cid = cid::Cid::read_bytes(&mut rest)
        .map_err(|e| invalid(format!("CID bytes do not decode: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "CID has {} trailing bytes after its multihash",
            rest.len()
        )));
    }
    if cid.version() != cid::Version::V1 {
        return Err(invalid("only CIDv1 is allowed in atproto".to_owned()));
    }
    Ok(cid)
}

// ---------------------------------------------------------------------------------------------
// URI and AT-URI
// ---------------------------------------------------------------------------------------------

fn uri_reason(value: &str) -> Check {
    if value.len() > MAX_URI_LEN {
        return Err(too_long("URI", MAX_URI_LEN, value));
    }
    let Some(colon) = value.find(':') else {
        return fail("URI has no scheme (no ':')");
    };
    let scheme = &value.as_bytes()[..colon];
    let Some(&first) = scheme.first() else {
        return fail("URI scheme is empty");
    };
    if !first.is_ascii_alphabetic() {
        return fail("URI scheme must start with an ASCII letter");
    }
    for (i, &b) in scheme.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
            return Err(disallowed("URI scheme", value, i));
        }
    }
    let rest = &value[colon + 1..];
    if rest.is_empty() {
        return fail("URI has nothing after the scheme");
    }
    for c in rest.chars() {
        if c.is_whitespace() {
            return fail("URI contains whitespace");
        }
        if c.is_control() {
            return fail("URI contains a control character");
        }
    }
    Ok(())
}

fn at_uri_reason(value: &str) -> Check {
    if value.len() > MAX_AT_URI_LEN {
        return Err(too_long("AT-URI", MAX_AT_URI_LEN, value));
    }
    let Some(rest) = value.strip_prefix("at://") else {
        return fail("AT-URI must start with \"at://\"");
    };
    if rest.contains('#') {
        return fail("AT-URI must not have a fragment ('#') in Lexicon use");
    }
    if rest.contains('?') {
        return fail("AT-URI must not have a query ('?') in Lexicon use");
    }
    let mut parts = rest.split('/');
    let authority = parts.next().unwrap_or_default();
    if authority.is_empty() {
        return fail("AT-URI authority is empty");
    }
    at_identifier_reason(authority).map_err(|reason| {
        Cow::Owned(format!("AT-URI authority is not a DID or handle: {reason}"))
    })?;
    let Some(collection) = parts.next() else {
        return Ok(());
    };
    let Some(record_key) = parts.next() else {
        if collection.is_empty() {
            return fail("AT-URI must not end with '/'");
        }
        return nsid_reason(collection)
            .map_err(|reason| Cow::Owned(format!("AT-URI collection is not an NSID: {reason}")));
    };
    if collection.is_empty() {
        return fail("AT-URI has an empty path segment (\"//\")");
    }
    nsid_reason(collection)
        .map_err(|reason| Cow::Owned(format!("AT-URI collection is not an NSID: {reason}")))?;
    if record_key.is_empty() {
        return if parts.next().is_none() {
            fail("AT-URI must not end with '/'")
        } else {
            fail("AT-URI has an empty path segment (\"//\")")
        };
    }
    if parts.next().is_some() {
        return fail("AT-URI path has more than two segments (collection and record key)");
    }
    record_key_reason(record_key)
        .map_err(|reason| Cow::Owned(format!("AT-URI record key is not valid: {reason}")))
}

// ---------------------------------------------------------------------------------------------
// Datetime
// ---------------------------------------------------------------------------------------------

/// A datetime as written, after the shape check and before the semantic check.
#[derive(Debug, Clone, Copy)]
struct RawDatetime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanosecond: u32,
    /// The offset sign (+1 or -1), hours and minutes; all zero for `Z`.
    offset: (i8, u8, u8),
}

/// A byte cursor over a datetime string.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Reads exactly `n` digits, failing with `reason` when there are fewer, or more before the
    /// next separator.
    fn digits(&mut self, n: usize, reason: &'static str) -> Result<u32, Reason> {
        let mut value = 0u32;
        for _ in 0..n {
            match self.peek() {
                Some(b) if b.is_ascii_digit() => {
                    value = value * 10 + u32::from(b - b'0');
                    self.pos += 1;
                }
                _ => return fail(reason),
            }
        }
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return fail(reason);
        }
        Ok(value)
    }

    fn separator(&mut self, expected: u8, reason: &'static str) -> Check {
        if self.peek() == Some(expected) {
            self.pos += 1;
            Ok(())
        } else {
            fail(reason)
        }
    }
}

/// Checks the shape of a datetime: `YYYY-MM-DDTHH:MM:SS[.F{1,20}](Z|+HH:MM|-HH:MM)`, with
/// `-00:00` refused (ISO 8601 forbids it).
fn scan_datetime(value: &str) -> Result<RawDatetime, Reason> {
    let mut c = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let year = c.digits(4, "datetime must start with a 4-digit year")?;
    c.separator(b'-', "expected '-' after the year")?;
    let month = c.digits(2, "month must be exactly 2 digits")?;
    c.separator(b'-', "expected '-' after the month")?;
    let day = c.digits(2, "day must be exactly 2 digits")?;
    match c.peek() {
        Some(b'T') => c.pos += 1,
        Some(b't') => return fail("date and time must be separated by an upper-case 'T'"),
        None => return fail("datetime has a date but no time"),
        Some(_) => return fail("expected 'T' between the date and the time"),
    }
    let hour = c.digits(2, "hour must be exactly 2 digits")?;
    c.separator(b':', "expected ':' after the hour")?;
    let minute = c.digits(2, "minute must be exactly 2 digits")?;
    match c.peek() {
        Some(b':') => c.pos += 1,
        None | Some(b'Z' | b'z' | b'+' | b'-') => return fail("seconds are required"),
        Some(_) => return fail("expected ':' after the minute"),
    }
    let second = c.digits(2, "second must be exactly 2 digits")?;
    let mut nanosecond = 0u32;
    if c.peek() == Some(b'.') {
        c.pos += 1;
        let start = c.pos;
        while c.peek().is_some_and(|b| b.is_ascii_digit()) {
            let digit = u32::from(c.bytes[c.pos] - b'0');
            let place = c.pos - start;
            if place < 9 {
                nanosecond += digit * 10u32.pow(8 - place as u32);
            }
            c.pos += 1;
        }
        let count = c.pos - start;
        if count == 0 {
            return fail("fractional seconds must have at least one digit after '.'");
        }
        if count > MAX_DATETIME_FRACTION_DIGITS {
            return fail("fractional seconds longer than 20 digits");
        }
    }
    let offset = match c.peek() {
        Some(b'Z') => {
            c.pos += 1;
            (1, 0, 0)
        }
        Some(b'z') => return fail("timezone 'Z' must be upper-case"),
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let reason = "timezone offset must be +HH:MM or -HH:MM";
            let hours = c.digits(2, reason)?;
            c.separator(b':', reason)?;
            let minutes = c.digits(2, reason)?;
            if sign == b'-' && hours == 0 && minutes == 0 {
                return fail("timezone offset -00:00 is not allowed (use Z or +00:00)");
            }
            let sign = if sign == b'-' { -1 } else { 1 };
            // Two decimal digits always fit a u8.
            (sign, hours as u8, minutes as u8)
        }
        None => return fail("timezone is required (Z or +HH:MM / -HH:MM)"),
        Some(_) => return fail("expected a timezone (Z or +HH:MM / -HH:MM) after the seconds"),
    };
    if c.pos != c.bytes.len() {
        return fail("unexpected characters after the timezone");
    }
    // The digit counts bound every field: a 4-digit year fits u16, 2-digit fields fit u8.
    Ok(RawDatetime {
        year: year as u16,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        nanosecond,
        offset,
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

impl RawDatetime {
    /// Seconds since the Unix epoch, in UTC.
    fn unix_seconds(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let (sign, hours, minutes) = self.offset;
        let offset = i64::from(sign) * (i64::from(hours) * 3600 + i64::from(minutes) * 60);
        days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - offset
    }

    fn check_semantics(&self) -> Check {
        if !(1..=12).contains(&self.month) {
            return fail("month must be between 01 and 12");
        }
        if self.day == 0 || self.day > days_in_month(i64::from(self.year), self.month) {
            return Err(Cow::Owned(format!(
                "day {:02} does not exist in {:04}-{:02}",
                self.day, self.year, self.month
            )));
        }
        if self.hour > 23 {
            return fail("hour must be between 00 and 23");
        }
        if self.minute > 59 {
            return fail("minute must be between 00 and 59");
        }
        if self.second > 59 {
            return fail("second must be between 00 and 59 (leap seconds are not accepted)");
        }
        let (_, hours, minutes) = self.offset;
        if hours > 23 {
            return fail("timezone offset hours must be between 00 and 23");
        }
        if minutes > 59 {
            return fail("timezone offset minutes must be between 00 and 59");
        }
        if self.unix_seconds() < days_from_civil(0, 1, 1) * 86_400 {
            return fail("datetime is before year 0000 once normalized to UTC");
        }
        Ok(())
    }
}

/// A datetime that passed [`validate`]: the fields as written (not normalized to UTC).
///
/// Equality compares the fields, so the same instant written with two offsets is not equal;
/// compare [`Datetime::timestamp_micros`] for instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Datetime {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    nanosecond: u32,
    offset_minutes: i16,
}

impl Datetime {
    /// The year as written, 0 to 9999.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month as written, 1 to 12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month as written, 1 to 31.
    pub fn day(&self) -> u8 {
        self.day
    }

    /// The hour as written, 0 to 23.
    pub fn hour(&self) -> u8 {
        self.hour
    }

    /// The minute as written, 0 to 59.
    pub fn minute(&self) -> u8 {
        self.minute
    }

    /// The second as written, 0 to 59.
    pub fn second(&self) -> u8 {
        self.second
    }

    /// The fractional second in nanoseconds (digits past the ninth are dropped).
    pub fn nanosecond(&self) -> u32 {
        self.nanosecond
    }

    /// The timezone offset from UTC in minutes (0 for `Z`).
    pub fn offset_minutes(&self) -> i16 {
        self.offset_minutes
    }

    /// Microseconds since 1970-01-01T00:00:00Z (negative before it), the offset applied.
    pub fn timestamp_micros(&self) -> i64 {
        let seconds = days_from_civil(i64::from(self.year), self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
            - i64::from(self.offset_minutes) * 60;
        seconds * 1_000_000 + i64::from(self.nanosecond / 1000)
    }
}

/// Parses a datetime, checking its shape and its calendar semantics (as [`validate`] does).
pub fn parse_datetime(value: &str) -> Result<Datetime, SyntaxError> {
    let raw = scan_datetime(value).map_err(|reason| error(Format::Datetime, reason))?;
    raw.check_semantics()
        .map_err(|reason| error(Format::Datetime, reason))?;
    let (sign, hours, minutes) = raw.offset;
    // Hours are at most 23 and minutes at most 59 here, so the offset fits an i16.
    let offset = i16::from(sign) * (i16::from(hours) * 60 + i16::from(minutes));
    Ok(Datetime {
        year: raw.year,
        month: raw.month,
        day: raw.day,
        hour: raw.hour,
        minute: raw.minute,
        second: raw.second,
        nanosecond: raw.nanosecond,
        offset_minutes: offset,
    })
}

// ---------------------------------------------------------------------------------------------
// Language (BCP 47 / RFC 5646)
// ---------------------------------------------------------------------------------------------

/// The irregular grandfathered tags of RFC 5646 §2.1, which do not follow the langtag grammar.
const IRREGULAR_GRANDFATHERED: [&str; 17] = [
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
];

/// The regular grandfathered tags of RFC 5646 §2.1, which do follow the langtag grammar.
const REGULAR_GRANDFATHERED: [&str; 9] = [
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

/// A well-formed BCP 47 language tag, split into its parts (slices of the original string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageTag<'a> {
    /// The whole tag, as given.
    pub tag: &'a str,
    /// The primary language subtag (`pt` in `pt-BR`); `None` for a private-use-only tag or an
    /// irregular grandfathered tag.
    pub language: Option<&'a str>,
    /// Extended language subtags (`yue` in `zh-yue`).
    pub extlangs: Vec<&'a str>,
    /// The script subtag (`Latn`).
    pub script: Option<&'a str>,
    /// The region subtag (`BR`, `419`).
    pub region: Option<&'a str>,
    /// Variant subtags (`arevela`, `1901`).
    pub variants: Vec<&'a str>,
    /// Extensions, each a singleton with its subtags (`u-co-phonebk`).
    pub extensions: Vec<&'a str>,
    /// The private-use part, `x` or `X` with its subtags (`x-private`).
    pub private_use: Option<&'a str>,
    /// Whether the tag is one of RFC 5646's grandfathered tags (`i-navajo`, `zh-hakka`).
    pub grandfathered: bool,
}

/// The `-`-separated subtags of a language tag, with their byte offsets.
#[derive(Clone)]
struct Subtags<'a> {
    tag: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Subtags<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.tag.get(self.pos..)?;
        let start = self.pos;
        match rest.find('-') {
            Some(len) => {
                self.pos += len + 1;
                Some((start, &rest[..len]))
            }
            None => {
                self.done = true;
                Some((start, rest))
            }
        }
    }
}

fn all_alpha(subtag: &str) -> bool {
    subtag.bytes().all(|b| b.is_ascii_alphabetic())
}

fn all_digits(subtag: &str) -> bool {
    subtag.bytes().all(|b| b.is_ascii_digit())
}

fn is_variant(subtag: &str) -> bool {
    match subtag.len() {
        5..=8 => true,
        4 => subtag.as_bytes()[0].is_ascii_digit(),
        _ => false,
    }
}

/// Checks that `value` is a well-formed language tag under the atproto reading of RFC 5646:
/// the §2.1 grammar, with the primary language subtag lower-case and never four letters (both
/// required by the interop vectors).
fn scan_language(value: &str) -> Result<LanguageTag<'_>, Reason> {
    if value.is_empty() {
        return fail("language tag is empty");
    }
    if value.len() > MAX_LANGUAGE_LEN {
        return Err(too_long("language tag", MAX_LANGUAGE_LEN, value));
    }
    for (i, &b) in value.as_bytes().iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'-') {
            return Err(disallowed("language tag", value, i));
        }
    }
    if value.starts_with('-') {
        return fail("language tag starts with '-'");
    }
    if value.ends_with('-') {
        return fail("language tag ends with '-'");
    }
    if value.contains("--") {
        return fail("language tag has an empty subtag (\"--\")");
    }
    let mut tag = LanguageTag {
        tag: value,
        language: None,
        extlangs: Vec::new(),
        script: None,
        region: None,
        variants: Vec::new(),
        extensions: Vec::new(),
        private_use: None,
        grandfathered: false,
    };
    let mut subtags = Subtags {
        tag: value,
        pos: 0,
        done: false,
    }
    .peekable();
    for (_, subtag) in subtags.clone() {
        if subtag.len() > 8 {
            return Err(Cow::Owned(format!(
                "language subtag {subtag:?} longer than 8 characters"
            )));
        }
    }
    let Some((_, first)) = subtags.next() else {
        return fail("language tag is empty");
    };
    if first.eq_ignore_ascii_case("x") {
        // A private-use-only tag: `x-` followed by subtags of 1 to 8 characters.
        if subtags.peek().is_none() {
            return fail("private-use 'x' must be followed by at least one subtag");
        }
        tag.private_use = Some(value);
        return Ok(tag);
    }
    if first.bytes().any(|b| b.is_ascii_uppercase()) {
        return fail("primary language subtag must be lower-case");
    }
    if IRREGULAR_GRANDFATHERED
        .iter()
        .any(|g| g.eq_ignore_ascii_case(value))
    {
        tag.grandfathered = true;
        return Ok(tag);
    }
    if !all_alpha(first) {
        return fail("primary language subtag must be ASCII letters only");
    }
    match first.len() {
        2 | 3 | 5..=8 => {}
        4 => return fail("four-letter primary language subtags are reserved"),
        _ => {
            return fail(
                "primary language subtag must be 2-3 letters ('i' and 'x' start only grandfathered and private-use tags)",
            );
        }
    }
    tag.language = Some(first);
    tag.grandfathered = REGULAR_GRANDFATHERED
        .iter()
        .any(|g| g.eq_ignore_ascii_case(value));
    if first.len() <= 3 {
        while tag.extlangs.len() < 3 {
            match subtags.peek() {
                Some(&(_, s)) if s.len() == 3 && all_alpha(s) => {
                    tag.extlangs.push(s);
                    subtags.next();
                }
                _ => break,
            }
        }
    }
    if let Some(&(_, s)) = subtags
        .peek()
        .filter(|&&(_, s)| s.len() == 4 && all_alpha(s))
    {
        tag.script = Some(s);
        subtags.next();
    }
    if let Some(&(_, s)) = subtags
        .peek()
        .filter(|&&(_, s)| (s.len() == 2 && all_alpha(s)) || (s.len() == 3 && all_digits(s)))
    {
        tag.region = Some(s);
        subtags.next();
    }
    while let Some(&(_, s)) = subtags.peek() {
        if !is_variant(s) {
            break;
        }
        tag.variants.push(s);
        subtags.next();
    }
    while let Some(&(start, s)) = subtags.peek() {
        if s.len() != 1 || s.eq_ignore_ascii_case("x") {
            break;
        }
        subtags.next();
        let end = extension_end(&mut subtags, start + 1);
        if end == start + 1 {
            return Err(Cow::Owned(format!(
                "extension '{s}' must be followed by at least one subtag of 2-8 characters"
            )));
        }
        tag.extensions.push(&value[start..end]);
    }
    if let Some(&(start, s)) = subtags.peek() {
        if s.eq_ignore_ascii_case("x") {
            subtags.next();
            if subtags.peek().is_none() {
                return fail("private-use 'x' must be followed by at least one subtag");
            }
            tag.private_use = Some(&value[start..]);
            return Ok(tag);
        }
        return Err(Cow::Owned(format!(
            "language subtag {s:?} is out of place (the order is language-extlang-script-region-variant-extension-x)"
        )));
    }
    Ok(tag)
}

/// Consumes the 2-8 character subtags of one extension whose singleton ends at byte
/// `singleton_end`, and returns where the extension ends.
fn extension_end(subtags: &mut Peekable<Subtags<'_>>, singleton_end: usize) -> usize {
    let mut end = singleton_end;
    while let Some(&(start, s)) = subtags.peek() {
        if s.len() < 2 {
            break;
        }
        end = start + s.len();
        subtags.next();
    }
    end
}

/// Parses a language tag and checks that it is "valid" as well as well-formed (RFC 5646
/// §2.2.9): no variant subtag and no extension singleton appears twice, ignoring case. The spec
/// says clients should ignore a tag that fails only this, so [`validate`] does not check it.
pub fn parse_language(value: &str) -> Result<LanguageTag<'_>, SyntaxError> {
    let tag = scan_language(value).map_err(|reason| error(Format::Language, reason))?;
    for (i, variant) in tag.variants.iter().enumerate() {
        if tag.variants[..i]
            .iter()
            .any(|earlier| earlier.eq_ignore_ascii_case(variant))
        {
            return Err(error(
                Format::Language,
                Cow::Owned(format!("variant subtag {variant:?} appears more than once")),
            ));
        }
    }
    for (i, extension) in tag.extensions.iter().enumerate() {
        let singleton = &extension[..1];
        if tag.extensions[..i]
            .iter()
            .any(|earlier| earlier[..1].eq_ignore_ascii_case(singleton))
        {
            return Err(error(
                Format::Language,
                Cow::Owned(format!(
                    "extension singleton {singleton:?} appears more than once"
                )),
            ));
        }
    }
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_precise() {
        let reason = |f, v| validate(f, v).err().map(|e| e.reason);
        assert_eq!(
            reason(
                Format::Handle,
                "short.oooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooooo.test"
            )
            .as_deref(),
            Some("handle segment longer than 63 characters")
        );
        assert_eq!(
            reason(Format::Handle, "john..test").as_deref(),
            Some("handle has an empty segment (two periods in a row)")
        );
        assert_eq!(
            reason(Format::Datetime, "1985-04-12T23:20:50.123-00:00").as_deref(),
            Some("timezone offset -00:00 is not allowed (use Z or +00:00)")
        );
        assert_eq!(
            reason(Format::Datetime, "1985-02-29T23:20:50Z").as_deref(),
            Some("day 29 does not exist in 1985-02")
        );
        assert_eq!(
            reason(Format::Nsid, "one..two.three").as_deref(),
            Some("NSID has an empty segment (two periods in a row)")
        );
        assert_eq!(
            reason(Format::Nsid, "a.b.").as_deref(),
            Some("NSID ends with a period")
        );
    }

    #[test]
    fn datetime_parts_and_timestamp() {
        let parsed = parse_datetime("1985-04-12T23:20:50.123456789123-07:00");
        let Ok(dt) = parsed else {
            panic!("valid datetime rejected: {parsed:?}");
        };
        assert_eq!((dt.year(), dt.month(), dt.day()), (1985, 4, 12));
        assert_eq!(dt.nanosecond(), 123_456_789);
        assert_eq!(dt.offset_minutes(), -420);
        // 1985-04-13T06:20:50.123456Z.
        assert_eq!(dt.timestamp_micros(), 482_221_250_123_456);
        let epoch = parse_datetime("1970-01-01T00:00:00Z").map(|d| d.timestamp_micros());
        assert_eq!(epoch, Ok(0));
        assert!(parse_datetime("2000-02-29T00:00:00Z").is_ok());
        assert!(parse_datetime("1900-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn language_parts() {
        let parsed = parse_language("en-GB-boont-r-extended-sequence-x-private");
        let Ok(tag) = parsed else {
            panic!("valid tag rejected: {parsed:?}");
        };
        assert_eq!(tag.language, Some("en"));
        assert_eq!(tag.region, Some("GB"));
        assert_eq!(tag.variants, ["boont"]);
        assert_eq!(tag.extensions, ["r-extended-sequence"]);
        assert_eq!(tag.private_use, Some("x-private"));
        assert!(validate(Format::Language, "de-DE-1901-1901").is_ok());
        assert!(check_strict(Format::Language, "de-DE-1901-1901").is_err());
        assert!(validate(Format::Language, "en-a").is_err());
    }

    #[test]
    fn cid_parsing() {
        let parsed = parse_cid("bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2a");
        assert!(parsed.is_ok(), "{parsed:?}");
        assert!(parse_cid("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR").is_err());
        assert!(
            parse_cid("bafyreidfayvfuwqa7qlnopdjiqrxzs6blmoeu4rujcjtnci5beludirz2aaa").is_err()
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let inputs = [
            "",
            "-",
            ".",
            "..",
            ":",
            "did:",
            "at://",
            "at:///",
            "x-",
            "é",
            "did:a:é",
            "1985-",
            "at://a.b/c.d.e/\u{0}",
            "\u{FEFF}",
            "aé.com",
            "T",
            "0000-01-01T00:00:00-23:59",
        ];
        for value in inputs {
            for format in [
                Format::AtIdentifier,
                Format::AtUri,
                Format::Cid,
                Format::Datetime,
                Format::Did,
                Format::Handle,
                Format::Language,
                Format::Nsid,
                Format::RecordKey,
                Format::Tid,
                Format::Uri,
            ] {
                let _ = validate(format, value);
                let _ = check_strict(format, value);
            }
            let _ = parse_cid(value);
        }
    }
}
