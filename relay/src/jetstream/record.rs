//! Record DAG-CBOR to the exact JSON bytes legacy Jetstream emits (jetstream.md §4).
//!
//! This is the fan-out hot path: every create and update is converted once, here, and the
//! bytes are shared by every subscriber. So the encoder writes JSON straight from the
//! borrowing [`cbor::Reader`] into a `Vec<u8>`, with no `serde_json::Value` (or IPLD) round
//! trip, and its scratch buffers can be reused across records through [`RecordEncoder`].
//!
//! What it reproduces (indigo `data.UnmarshalCBOR`, then goccy/go-json `Marshal`):
//! - map keys sorted bytewise at every level (DAG-CBOR sorts length-first, so most maps are
//!   reordered: the value bytes are written once, then their segments permuted);
//! - links as `{"$link":"bafy…"}`, byte strings as `{"$bytes":"…"}` (standard base64, no
//!   padding), integers exact;
//! - blobs (`$type: "blob"`) with their four keys in struct order `$type, ref, mimeType,
//!   size`; a legacy `{cid, mimeType}` blob is an ordinary map;
//! - Go's HTML-safe string escaping (`<` `>` `&` as `\u003c` `\u003e` `\u0026`, U+2028 and
//!   U+2029 escaped, controls as `\n` `\r` `\t` or `\u00xx`, other non-ASCII raw).
//!
//! A record that fails the data-model checks is refused with a [`RecordError`] and its op is
//! dropped: anything the strict reader rejects (floats, non-canonical CBOR, tags other than
//! links, ...), a top level that is not a map, a `$type` that is not a non-empty string, a
//! blob without exactly its four well-typed fields, nesting deeper than [`cbor::MAX_DEPTH`],
//! or more than [`MAX_RECORD_BYTES`] of CBOR.

use data_encoding::BASE64_NOPAD;

use super::json::{push_bool, push_cid_base32, push_i64, push_key, push_str};
use crate::sync::cbor::{self, CborError, Kind, MapKeys, Reader};

/// The largest record (in CBOR bytes) that is converted; larger ones drop their op.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Why a record is not converted (its op is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The CBOR is larger than [`MAX_RECORD_BYTES`].
    #[error("record is {len} bytes, over the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge {
        /// The record's size in bytes.
        len: usize,
    },
    /// The bytes are not strict DAG-CBOR (this includes floats).
    #[error("record is not strict DAG-CBOR: {0}")]
    Cbor(#[from] CborError),
    /// The top-level value is not a map.
    #[error("record is a {0}, not a map")]
    NotAMap(Kind),
    /// A `$type` that is not a non-empty string.
    #[error("$type must be a non-empty string")]
    BadType,
    /// A `$type: "blob"` map without exactly `$type`, `ref` (link), `mimeType` (string) and
    /// `size` (integer).
    #[error("malformed blob: {0}")]
    BadBlob(&'static str),
    /// Arrays and maps nest deeper than [`cbor::MAX_DEPTH`].
    #[error("record nests deeper than {}", cbor::MAX_DEPTH)]
    TooDeep,
}

/// Converts one record to JSON in a fresh buffer; see [`RecordEncoder`] to reuse buffers.
pub fn record_json(cbor: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(cbor.len() + cbor.len() / 2);
    RecordEncoder::default().encode(cbor, &mut out)?;
    Ok(out)
}

/// A record-to-JSON converter that keeps its scratch buffers between records.
#[derive(Debug, Default)]
pub struct RecordEncoder {
    /// Entries of the maps being written, innermost last (a stack shared by all levels).
    entries: Vec<Entry>,
    /// Copy of a map's body while its entries are permuted into JSON order.
    scratch: Vec<u8>,
}

/// One map entry already written to the output.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the raw key's bytes are in the CBOR input (for sorting).
    key_at: usize,
    /// The raw key's length.
    key_len: usize,
    /// Where `"key":value` starts in the output.
    start: usize,
    /// Where it ends.
    end: usize,
    /// The value's CBOR major type (for the blob checks).
    kind: Kind,
}

impl RecordEncoder {
    /// Appends the JSON of the record `cbor` to `out`.
    ///
    /// On error `out` is left as it was, and the op should be dropped.
    pub fn encode(&mut self, cbor: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let before = out.len();
        let result = self.encode_inner(cbor, out);
        if result.is_err() {
            out.truncate(before);
        }
        self.entries.clear();
        result
    }

    fn encode_inner(&mut self, cbor: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        if cbor.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge { len: cbor.len() });
        }
        let mut w = Writer {
            buf: cbor,
            r: Reader::new(cbor),
            out,
            entries: &mut self.entries,
            scratch: &mut self.scratch,
        };
        let kind = w.r.peek_kind()?;
        if kind != Kind::Map {
            return Err(RecordError::NotAMap(kind));
        }
        w.value(0)?;
        w.r.finish()?;
        Ok(())
    }
}

/// One conversion in progress.
struct Writer<'a, 'e> {
    /// The whole CBOR input (map keys are sorted by their bytes here).
    buf: &'a [u8],
    r: Reader<'a>,
    out: &'e mut Vec<u8>,
    entries: &'e mut Vec<Entry>,
    scratch: &'e mut Vec<u8>,
}

impl Writer<'_, '_> {
    /// Writes the next value; `depth` counts the containers around it.
    fn value(&mut self, depth: usize) -> Result<(), RecordError> {
        match self.r.peek_kind()? {
            Kind::Uint | Kind::Nint => push_i64(self.out, self.r.int()?),
            Kind::Text => push_str(self.out, self.r.text()?),
            Kind::Bytes => {
                let bytes = self.r.bytes()?;
                self.out.extend_from_slice(b"{\"$bytes\":\"");
                let at = self.out.len();
                self.out
                    .resize(at + BASE64_NOPAD.encode_len(bytes.len()), 0);
                BASE64_NOPAD.encode_mut(bytes, &mut self.out[at..]);
                self.out.extend_from_slice(b"\"}");
            }
            Kind::Tag => {
                let cid = self.r.link()?;
                self.out.extend_from_slice(b"{\"$link\":\"");
                push_cid_base32(self.out, cid.bytes());
                self.out.extend_from_slice(b"\"}");
            }
            Kind::Simple => {
                // Checking the value first names what is wrong (a float, `undefined`, ...).
                self.r.clone().skip()?;
                if self.r.try_null()? {
                    self.out.extend_from_slice(b"null");
                } else {
                    push_bool(self.out, self.r.bool()?);
                }
            }
            Kind::Array => {
                if depth >= cbor::MAX_DEPTH {
                    return Err(RecordError::TooDeep);
                }
                let n = self.r.array_len()?;
                self.out.push(b'[');
                for i in 0..n {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(depth + 1)?;
                }
                self.out.push(b']');
            }
            Kind::Map => {
                if depth >= cbor::MAX_DEPTH {
                    return Err(RecordError::TooDeep);
                }
                self.map(depth)?;
            }
        }
        Ok(())
    }

    /// Writes a map: entries in CBOR order first, then permuted into JSON order if needed.
    fn map(&mut self, depth: usize) -> Result<(), RecordError> {
        let n = self.r.map_len()?;
        self.out.push(b'{');
        let body = self.out.len();
        let base = self.entries.len();
        let mut keys = MapKeys::new();
        let mut is_blob = false;
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            let start = self.out.len();
            let key = keys.next(&mut self.r)?;
            // The key's bytes end where the reader now stands.
            let key_at = self.r.position() - key.len();
            let kind = self.r.peek_kind()?;
            if key == "$type" {
                let ty = match kind {
                    Kind::Text => self.r.clone().text()?,
                    _ => return Err(RecordError::BadType),
                };
                if ty.is_empty() {
                    return Err(RecordError::BadType);
                }
                is_blob = ty == "blob";
            }
            push_key(self.out, key);
            self.value(depth + 1)?;
            self.entries.push(Entry {
                key_at,
                key_len: key.len(),
                start,
                end: self.out.len(),
                kind,
            });
        }
        let result = if is_blob {
            self.blob_order(base)
        } else {
            self.sort_entries(base);
            Ok(())
        };
        if result.is_ok() {
            self.permute(base, body);
            self.out.push(b'}');
        }
        self.entries.truncate(base);
        result
    }

    /// Sorts the current map's entries bytewise by key (Go's map key order).
    fn sort_entries(&mut self, base: usize) {
        let buf = self.buf;
        let key = |e: &Entry| buf.get(e.key_at..e.key_at + e.key_len).unwrap_or(&[]);
        let entries = &mut self.entries[base..];
        if !entries.is_sorted_by(|a, b| key(a) <= key(b)) {
            entries.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
    }

    /// Checks a blob's fields and orders them `$type, ref, mimeType, size`.
    fn blob_order(&mut self, base: usize) -> Result<(), RecordError> {
        const ORDER: [(&[u8], Kind, &str); 4] = [
            (b"$type", Kind::Text, "$type"),
            (b"ref", Kind::Tag, "ref must be a link"),
            (b"mimeType", Kind::Text, "mimeType must be a string"),
            (b"size", Kind::Uint, "size must be an integer"),
        ];
        let entries = &mut self.entries[base..];
        if entries.len() != 4 {
            return Err(RecordError::BadBlob("a blob has exactly four fields"));
        }
        let buf = self.buf;
        let mut ordered = [None; 4];
        for e in entries.iter() {
            let key = buf.get(e.key_at..e.key_at + e.key_len).unwrap_or(&[]);
            let slot = ORDER
                .iter()
                .position(|(name, _, _)| *name == key)
                .ok_or(RecordError::BadBlob("unexpected field"))?;
            let (_, want, why) = ORDER[slot];
            let kind_ok = e.kind == want || (want == Kind::Uint && e.kind == Kind::Nint);
            if !kind_ok {
                return Err(RecordError::BadBlob(why));
            }
            ordered[slot] = Some(*e);
        }
        for (slot, e) in entries.iter_mut().zip(ordered) {
            // Four distinct known keys fill all four slots (CBOR keys are unique).
            *slot = e.ok_or(RecordError::BadBlob("missing field"))?;
        }
        Ok(())
    }

    /// Rewrites the map body starting at `body` with its entries in their current order.
    fn permute(&mut self, base: usize, body: usize) {
        let entries = &self.entries[base..];
        let mut expected = body;
        let in_place = entries.iter().all(|e| {
            let ok = e.start == expected;
            expected = e.end + 1;
            ok
        });
        if in_place {
            return;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.out[body..]);
        self.out.truncate(body);
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(&self.scratch[e.start - body..e.end - body]);
        }
    }
}
