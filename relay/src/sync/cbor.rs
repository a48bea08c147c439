//! A strict, borrowing DAG-CBOR reader, binary CIDs, and the SHA-256 CID helper.
//!
//! Why hand-written: decoding firehose frames is the sync layer's hot path, and borrowed,
//! zero-copy reading is about ten times faster than decoding into owned values (see the
//! anchors' "Decode and verify throughput"). Every accessor here returns slices of the input
//! and allocates nothing on success. `serde_ipld_dagcbor` is still used elsewhere for encoding
//! and as an independent decoder in tests.
//!
//! The reader enforces the DAG-CBOR (DRISL) profile ATProto uses:
//! - integer and length headers in their shortest form;
//! - definite lengths only;
//! - no floats; simple values only `false`, `true` and `null`;
//! - tag 42 only, holding `0x00 ‖ binary CIDv1`;
//! - map keys are text, unique, sorted length-first then bytewise (checked by [`MapKeys`],
//!   and always by [`Reader::skip`], [`Reader::value_span`] and [`validate_dag_cbor`]);
//! - any length larger than the input left is an error before anything is allocated, so
//!   callers may use a returned array or map length as a capacity hint safely.
//!
//! Error offsets (`at`) are byte positions in the buffer the [`Reader`] was created over.

use std::fmt;

/// Multicodec code of DAG-CBOR (commits, MST nodes, records).
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec code of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// Multihash code of SHA-256.
pub const SHA2_256: u64 = 0x12;

/// How deeply arrays and maps may nest in [`Reader::skip`] and [`validate_dag_cbor`].
///
/// ATProto records are shallow; 128 leaves room for legitimate data while bounding work.
pub const MAX_DEPTH: usize = 128;

/// Longest multihash digest a [`CidRef`] accepts (the `cid` crate's limit).
const MAX_DIGEST_LEN: u64 = 64;

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;

/// The tag DAG-CBOR uses for links.
const TAG_LINK: u64 = 42;

/// The CBOR major type of the next value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unsigned integer (major type 0).
    Uint,
    /// Negative integer (major type 1).
    Nint,
    /// Byte string (major type 2).
    Bytes,
    /// Text string (major type 3).
    Text,
    /// Array (major type 4).
    Array,
    /// Map (major type 5).
    Map,
    /// Tag (major type 6); only tag 42 (link) is valid DAG-CBOR.
    Tag,
    /// Simple value or float (major type 7); only `false`, `true` and `null` are valid.
    Simple,
}

impl Kind {
    fn from_major(major: u8) -> Kind {
        match major {
            MAJOR_UINT => Kind::Uint,
            MAJOR_NINT => Kind::Nint,
            MAJOR_BYTES => Kind::Bytes,
            MAJOR_TEXT => Kind::Text,
            MAJOR_ARRAY => Kind::Array,
            MAJOR_MAP => Kind::Map,
            MAJOR_TAG => Kind::Tag,
            _ => Kind::Simple,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Uint => "unsigned integer",
            Kind::Nint => "negative integer",
            Kind::Bytes => "byte string",
            Kind::Text => "text string",
            Kind::Array => "array",
            Kind::Map => "map",
            Kind::Tag => "tag",
            Kind::Simple => "simple value",
        })
    }
}

/// Why a byte string is not a DAG-CBOR value this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {at}")]
    UnexpectedEof {
        /// Where the missing bytes should have been.
        at: usize,
    },
    /// A value of another type was found than the caller asked for.
    #[error("expected {expected}, found {found} at byte {at}")]
    WrongType {
        /// What the caller asked for.
        expected: &'static str,
        /// The major type actually present.
        found: Kind,
        /// Offset of the value's header.
        at: usize,
    },
    /// An integer or length header is not in its shortest form.
    #[error("non-shortest integer or length header at byte {at}")]
    NonCanonicalInteger {
        /// Offset of the header.
        at: usize,
    },
    /// An indefinite-length byte string, text, array or map.
    #[error("indefinite-length item at byte {at}")]
    IndefiniteLength {
        /// Offset of the header.
        at: usize,
    },
    /// A stray `break` (0xff) outside an indefinite-length item.
    #[error("unexpected break byte at byte {at}")]
    UnexpectedBreak {
        /// Offset of the break byte.
        at: usize,
    },
    /// Additional-information values 28 to 30 are reserved in CBOR.
    #[error("reserved additional information {info} at byte {at}")]
    ReservedInfo {
        /// The low five bits of the header byte.
        info: u8,
        /// Offset of the header.
        at: usize,
    },
    /// A floating-point number; ATProto's data model has none.
    #[error("floating-point value at byte {at}")]
    Float {
        /// Offset of the header.
        at: usize,
    },
    /// A tag other than 42.
    #[error("unsupported tag {tag} at byte {at}")]
    UnsupportedTag {
        /// The tag number.
        tag: u64,
        /// Offset of the tag header.
        at: usize,
    },
    /// A tag-42 value that is not `bytes(0x00 ‖ binary CIDv1)`.
    #[error("bad link at byte {at}: {reason}")]
    BadLink {
        /// Offset of the tag header.
        at: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 in text string at byte {at}")]
    InvalidUtf8 {
        /// Offset of the text's header.
        at: usize,
    },
    /// A map key sorts before the previous key (DAG-CBOR: length first, then bytewise).
    #[error("map key {key:?} out of canonical order at byte {at}")]
    MapKeyOrder {
        /// The offending key.
        key: String,
        /// Offset of the key's header.
        at: usize,
    },
    /// A map key appears twice.
    #[error("duplicate map key {key:?} at byte {at}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Offset of the second occurrence.
        at: usize,
    },
    /// A simple value other than `false`, `true` or `null` (for example `undefined`).
    #[error("unsupported simple value {value} at byte {at}")]
    UnsupportedSimple {
        /// The simple value's number (23 is `undefined`).
        value: u8,
        /// Offset of the header.
        at: usize,
    },
    /// Arrays and maps nest deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} at byte {at}")]
    TooDeep {
        /// Offset of the container that went too deep.
        at: usize,
    },
    /// A length larger than the bytes left in the input.
    #[error("length {len} at byte {at} exceeds the remaining input")]
    LengthTooLarge {
        /// The declared length (items for arrays and maps, bytes otherwise).
        len: u64,
        /// Offset of the header.
        at: usize,
    },
    /// An integer outside the signed 64-bit range where an `i64` was asked for.
    #[error("integer out of i64 range at byte {at}")]
    IntegerOverflow {
        /// Offset of the header.
        at: usize,
    },
    /// Bytes left after the single value that was expected.
    #[error("trailing bytes after the value, starting at byte {at}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
    },
}

/// A zero-copy, strict DAG-CBOR reader over a byte slice.
///
/// Every method reads (or checks) the next value; on error the reader's position is
/// unspecified and the input should be rejected as a whole.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Byte offset of the next value.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Whether all input has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Fails with [`CborError::TrailingBytes`] unless all input has been read.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CborError::TrailingBytes { at: self.pos })
        }
    }

    /// The major type of the next value, without consuming it.
    pub fn peek_kind(&self) -> Result<Kind, CborError> {
        match self.buf.get(self.pos) {
            Some(b) => Ok(Kind::from_major(b >> 5)),
            None => Err(CborError::UnexpectedEof { at: self.pos }),
        }
    }

    /// Reads a map header and returns its number of entries.
    ///
    /// The count is at most half the remaining input, so it is safe as a capacity hint.
    pub fn map_len(&mut self) -> Result<usize, CborError> {
        let at = self.pos;
        let n = self.expect_head(MAJOR_MAP, "map")?;
        // Every entry needs at least two bytes (a key and a value).
        self.check_items(n, 2, at)
    }

    /// Reads an array header and returns its number of items.
    ///
    /// The count is at most the remaining input, so it is safe as a capacity hint.
    pub fn array_len(&mut self) -> Result<usize, CborError> {
        let at = self.pos;
        let n = self.expect_head(MAJOR_ARRAY, "array")?;
        self.check_items(n, 1, at)
    }

    /// Reads a text string, checking it is UTF-8.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let at = self.pos;
        let len = self.expect_head(MAJOR_TEXT, "text string")?;
        let raw = self.take(len, at)?;
        std::str::from_utf8(raw).map_err(|_| CborError::InvalidUtf8 { at })
    }

    /// Reads a byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let at = self.pos;
        let len = self.expect_head(MAJOR_BYTES, "byte string")?;
        self.take(len, at)
    }

    /// Reads a non-negative integer.
    pub fn uint(&mut self) -> Result<u64, CborError> {
        self.expect_head(MAJOR_UINT, "unsigned integer")
    }

    /// Reads an integer in the signed 64-bit range.
    pub fn int(&mut self) -> Result<i64, CborError> {
        let at = self.pos;
        let (major, arg) = self.head()?;
        if major != MAJOR_UINT && major != MAJOR_NINT {
            return Err(CborError::WrongType {
                expected: "integer",
                found: Kind::from_major(major),
                at,
            });
        }
        let magnitude = i64::try_from(arg).map_err(|_| CborError::IntegerOverflow { at })?;
        if major == MAJOR_UINT {
            Ok(magnitude)
        } else {
            // CBOR encodes -1 - n; with n <= i64::MAX the result is >= i64::MIN.
            Ok(-1 - magnitude)
        }
    }

    /// Reads `true` or `false`.
    pub fn bool(&mut self) -> Result<bool, CborError> {
        let at = self.pos;
        match self.buf.get(at) {
            Some(&FALSE) => {
                self.pos += 1;
                Ok(false)
            }
            Some(&TRUE) => {
                self.pos += 1;
                Ok(true)
            }
            Some(&b) => Err(CborError::WrongType {
                expected: "bool",
                found: Kind::from_major(b >> 5),
                at,
            }),
            None => Err(CborError::UnexpectedEof { at }),
        }
    }

    /// Consumes a `null` if it is next and says whether it did.
    pub fn try_null(&mut self) -> Result<bool, CborError> {
        match self.buf.get(self.pos) {
            Some(&NULL) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(CborError::UnexpectedEof { at: self.pos }),
        }
    }

    /// Reads a link: tag 42 over `bytes(0x00 ‖ binary CIDv1)`.
    pub fn link(&mut self) -> Result<CidRef<'a>, CborError> {
        let at = self.pos;
        let tag = self.expect_head(MAJOR_TAG, "link")?;
        if tag != TAG_LINK {
            return Err(CborError::UnsupportedTag { tag, at });
        }
        self.link_body(at)
    }

    /// Reads a link, or `null`.
    pub fn nullable_link(&mut self) -> Result<Option<CidRef<'a>>, CborError> {
        if self.try_null()? {
            Ok(None)
        } else {
            self.link().map(Some)
        }
    }

    /// Reads a text string, or `null`.
    pub fn nullable_text(&mut self) -> Result<Option<&'a str>, CborError> {
        if self.try_null()? {
            Ok(None)
        } else {
            self.text().map(Some)
        }
    }

    /// Skips one complete value, checking it strictly (headers, UTF-8, key order, links),
    /// with nesting bounded by [`MAX_DEPTH`].
    pub fn skip(&mut self) -> Result<(), CborError> {
        self.walk()
    }

    /// Skips one complete value (checked as by [`Reader::skip`]) and returns its bytes.
    pub fn value_span(&mut self) -> Result<&'a [u8], CborError> {
        let start = self.pos;
        self.walk()?;
        Ok(self.buf.get(start..self.pos).unwrap_or(&[]))
    }

    /// Reads the bytes after a tag-42 header whose offset is `at`.
    fn link_body(&mut self, at: usize) -> Result<CidRef<'a>, CborError> {
        let len = match self.head() {
            Ok((MAJOR_BYTES, len)) => len,
            Ok(_) => {
                return Err(CborError::BadLink {
                    at,
                    reason: "tag 42 must hold a byte string",
                });
            }
            Err(e) => return Err(e),
        };
        let raw = self.take(len, at)?;
        match raw.split_first() {
            Some((0, cid)) => CidRef::from_bytes(cid).map_err(|e| CborError::BadLink {
                at,
                reason: e.reason(),
            }),
            Some(_) => Err(CborError::BadLink {
                at,
                reason: "missing the 0x00 multibase prefix",
            }),
            None => Err(CborError::BadLink {
                at,
                reason: "empty byte string",
            }),
        }
    }

    /// Reads a header of the given major type and returns its argument.
    #[inline]
    fn expect_head(&mut self, major: u8, expected: &'static str) -> Result<u64, CborError> {
        let at = self.pos;
        let (found, arg) = self.head()?;
        if found == major {
            Ok(arg)
        } else {
            Err(CborError::WrongType {
                expected,
                found: Kind::from_major(found),
                at,
            })
        }
    }

    /// Reads one header: major type and argument (value, length or tag), shortest form only.
    ///
    /// For major type 7 the argument is the whole initial byte's low bits, and only `false`,
    /// `true` and `null` are accepted.
    #[inline]
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let at = self.pos;
        let Some(&initial) = self.buf.get(at) else {
            return Err(CborError::UnexpectedEof { at });
        };
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == MAJOR_SIMPLE {
            return match initial {
                FALSE | TRUE | NULL => {
                    self.pos = at + 1;
                    Ok((major, u64::from(info)))
                }
                0xf9..=0xfb => Err(CborError::Float { at }),
                0xff => Err(CborError::UnexpectedBreak { at }),
                0xf8 => match self.buf.get(at + 1) {
                    Some(&value) => Err(CborError::UnsupportedSimple { value, at }),
                    None => Err(CborError::UnexpectedEof { at: at + 1 }),
                },
                0xfc..=0xfe => Err(CborError::ReservedInfo { info, at }),
                _ => Err(CborError::UnsupportedSimple { value: info, at }),
            };
        }
        let (arg, used) = match info {
            0..=23 => (u64::from(info), 1),
            24 => {
                let v = u64::from(
                    *self
                        .buf
                        .get(at + 1)
                        .ok_or(CborError::UnexpectedEof { at: at + 1 })?,
                );
                if v < 24 {
                    return Err(CborError::NonCanonicalInteger { at });
                }
                (v, 2)
            }
            25 => {
                let v = u64::from(u16::from_be_bytes(self.fixed::<2>(at + 1)?));
                if v <= 0xff {
                    return Err(CborError::NonCanonicalInteger { at });
                }
                (v, 3)
            }
            26 => {
                let v = u64::from(u32::from_be_bytes(self.fixed::<4>(at + 1)?));
                if v <= 0xffff {
                    return Err(CborError::NonCanonicalInteger { at });
                }
                (v, 5)
            }
            27 => {
                let v = u64::from_be_bytes(self.fixed::<8>(at + 1)?);
                if v <= 0xffff_ffff {
                    return Err(CborError::NonCanonicalInteger { at });
                }
                (v, 9)
            }
            31 if (MAJOR_BYTES..=MAJOR_MAP).contains(&major) => {
                return Err(CborError::IndefiniteLength { at });
            }
            _ => return Err(CborError::ReservedInfo { info, at }),
        };
        self.pos = at + used;
        Ok((major, arg))
    }

    /// The `N` bytes at `at`, as an array.
    #[inline]
    fn fixed<const N: usize>(&self, at: usize) -> Result<[u8; N], CborError> {
        self.buf
            .get(at..at + N)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(CborError::UnexpectedEof { at: self.buf.len() })
    }

    /// Takes `len` bytes, failing before any use of `len` if it exceeds the input left.
    #[inline]
    fn take(&mut self, len: u64, at: usize) -> Result<&'a [u8], CborError> {
        let left = self.buf.len() - self.pos.min(self.buf.len());
        match usize::try_from(len) {
            Ok(n) if n <= left => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(CborError::LengthTooLarge { len, at }),
        }
    }

    /// Checks that `n` items of at least `min_bytes` each can fit in the input left.
    #[inline]
    fn check_items(&self, n: u64, min_bytes: u64, at: usize) -> Result<usize, CborError> {
        let left = (self.buf.len() - self.pos.min(self.buf.len())) as u64;
        match n.checked_mul(min_bytes) {
            Some(need) if need <= left => {
                usize::try_from(n).map_err(|_| CborError::LengthTooLarge { len: n, at })
            }
            _ => Err(CborError::LengthTooLarge { len: n, at }),
        }
    }

    /// Checks one complete value without recursion: a fixed stack of open containers.
    fn walk(&mut self) -> Result<(), CborError> {
        // Scalars (the common case when skipping a field) need no container stack.
        match self.buf.get(self.pos).map(|b| b >> 5) {
            Some(MAJOR_ARRAY | MAJOR_MAP) => {}
            _ => {
                let at = self.pos;
                let (major, arg) = self.head()?;
                return self.leaf(major, arg, at);
            }
        }
        let mut stack = [Level::EMPTY; MAX_DEPTH];
        let mut depth = 0usize;
        loop {
            if let Some(top) = depth.checked_sub(1).and_then(|i| stack.get_mut(i)) {
                if top.map && top.remaining % 2 == 0 {
                    // A map key: text, in canonical order after the previous key.
                    top.remaining -= 1;
                    top.keys.next(self)?;
                    continue;
                }
                top.remaining -= 1;
            }
            let at = self.pos;
            let (major, arg) = self.head()?;
            let opened = match major {
                MAJOR_ARRAY if arg > 0 => {
                    let n = self.check_items(arg, 1, at)? as u64;
                    Some(Level {
                        remaining: n,
                        map: false,
                        keys: MapKeys::new(),
                    })
                }
                MAJOR_MAP if arg > 0 => {
                    let n = self.check_items(arg, 2, at)? as u64;
                    Some(Level {
                        remaining: 2 * n,
                        map: true,
                        keys: MapKeys::new(),
                    })
                }
                MAJOR_ARRAY | MAJOR_MAP => None,
                _ => {
                    self.leaf(major, arg, at)?;
                    None
                }
            };
            if let Some(level) = opened {
                let slot = stack.get_mut(depth).ok_or(CborError::TooDeep { at })?;
                *slot = level;
                depth += 1;
            }
            while let Some(i) = depth.checked_sub(1) {
                if stack.get(i).is_some_and(|l| l.remaining == 0) {
                    depth = i;
                } else {
                    break;
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }
}

impl<'a> Reader<'a> {
    /// Finishes checking a non-container value whose header (at `at`) was just read.
    #[inline]
    fn leaf(&mut self, major: u8, arg: u64, at: usize) -> Result<(), CborError> {
        match major {
            MAJOR_BYTES => {
                self.take(arg, at)?;
            }
            MAJOR_TEXT => {
                let raw = self.take(arg, at)?;
                std::str::from_utf8(raw).map_err(|_| CborError::InvalidUtf8 { at })?;
            }
            MAJOR_TAG => {
                if arg != TAG_LINK {
                    return Err(CborError::UnsupportedTag { tag: arg, at });
                }
                self.link_body(at)?;
            }
            // Integers and the accepted simple values are complete; empty containers too.
            _ => {}
        }
        Ok(())
    }
}

/// One open container in [`Reader::walk`].
#[derive(Clone, Copy)]
struct Level {
    /// Items still to read; for maps, keys and values counted separately.
    remaining: u64,
    map: bool,
    keys: MapKeys,
}

impl Level {
    const EMPTY: Level = Level {
        remaining: 0,
        map: false,
        keys: MapKeys::new(),
    };
}

/// Checks map keys as they are read: text, unique, sorted length-first then bytewise.
///
/// It remembers the previous key as an offset into the reader's buffer, so it holds no
/// borrow and allocates nothing; use one `MapKeys` per map, with the same [`Reader`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MapKeys {
    /// Offset and length of the previous key in the reader's buffer.
    prev: Option<(usize, usize)>,
}

impl MapKeys {
    /// A checker for a fresh map.
    pub const fn new() -> Self {
        MapKeys { prev: None }
    }

    /// Reads the next key and checks it sorts after the previous one.
    #[inline]
    pub fn next<'a>(&mut self, r: &mut Reader<'a>) -> Result<&'a str, CborError> {
        let at = r.pos;
        let len = r.expect_head(MAJOR_TEXT, "text map key")?;
        let start = r.pos;
        let raw = r.take(len, at)?;
        if let Some((p, plen)) = self.prev {
            // DAG-CBOR order: shorter keys first, then bytewise. Keys are short, so a plain
            // loop beats a call to `memcmp`.
            let order = match plen.cmp(&raw.len()) {
                std::cmp::Ordering::Equal => {
                    let prev = r.buf.get(p..p + plen).unwrap_or(&[]);
                    prev.iter()
                        .zip(raw)
                        .map(|(a, b)| a.cmp(b))
                        .find(|o| o.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal)
                }
                other => other,
            };
            match order {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(CborError::DuplicateKey {
                        key: String::from_utf8_lossy(raw).into_owned(),
                        at,
                    });
                }
                std::cmp::Ordering::Greater => {
                    return Err(CborError::MapKeyOrder {
                        key: String::from_utf8_lossy(raw).into_owned(),
                        at,
                    });
                }
            }
        }
        let key = std::str::from_utf8(raw).map_err(|_| CborError::InvalidUtf8 { at })?;
        self.prev = Some((start, raw.len()));
        Ok(key)
    }
}

/// Checks that `buf` is exactly one strictly valid DAG-CBOR value.
pub fn validate_dag_cbor(buf: &[u8]) -> Result<(), CborError> {
    let mut r = Reader::new(buf);
    r.skip()?;
    r.finish()
}

/// Why bytes are not a binary CID this crate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    /// The bytes end inside the CID.
    #[error("truncated CID")]
    Truncated,
    /// A CIDv0 (bare SHA-256 multihash); ATProto links are CIDv1.
    #[error("CIDv0 is not allowed")]
    Version0,
    /// A version other than 1.
    #[error("unsupported CID version {0}")]
    Version(u64),
    /// A varint that is not minimal or longer than nine bytes.
    #[error("malformed varint in CID")]
    Varint,
    /// A digest longer than 64 bytes.
    #[error("multihash digest of {0} bytes is too long")]
    DigestTooLong(u64),
    /// Extra bytes after the digest.
    #[error("trailing bytes after the CID")]
    Trailing,
}

impl CidError {
    /// A short static description, for [`CborError::BadLink`].
    pub fn reason(self) -> &'static str {
        match self {
            CidError::Truncated => "truncated CID",
            CidError::Version0 => "CIDv0 is not allowed",
            CidError::Version(_) => "unsupported CID version",
            CidError::Varint => "malformed varint in CID",
            CidError::DigestTooLong(_) => "multihash digest too long",
            CidError::Trailing => "trailing bytes after the CID",
        }
    }
}

/// Why a varint was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The input ends before the last byte.
    #[error("truncated varint")]
    Truncated,
    /// A longer encoding than necessary (a trailing zero byte).
    #[error("non-minimal varint")]
    NonMinimal,
    /// More than nine bytes (the multiformats limit, 63 bits).
    #[error("varint longer than nine bytes")]
    TooLong,
}

/// Reads an unsigned LEB128 varint as multiformats define it: minimal, at most nine bytes.
///
/// Returns the value and the number of bytes used.
#[inline]
pub fn read_uvarint(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(VarintError::NonMinimal);
            }
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= 9 {
        Err(VarintError::TooLong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// A borrowed binary CIDv1: `version ‖ codec ‖ multihash code ‖ digest length ‖ digest`.
///
/// Only constructed from bytes that parse, so the accessors cannot fail. Equality and hashing
/// are over the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidRef<'a>(&'a [u8]);

/// The parsed parts of a binary CIDv1.
struct CidParts {
    codec: u64,
    hash: u64,
    /// Offset of the digest.
    digest_at: usize,
    /// Total length of the CID.
    len: usize,
}

fn varint_at(buf: &[u8], at: usize) -> Result<(u64, usize), CidError> {
    match read_uvarint(buf.get(at..).unwrap_or(&[])) {
        Ok((v, n)) => Ok((v, at + n)),
        Err(VarintError::Truncated) => Err(CidError::Truncated),
        Err(_) => Err(CidError::Varint),
    }
}

/// Parses a CIDv1 at the start of `buf`, which may continue after it.
#[inline]
fn parse_cid(buf: &[u8]) -> Result<CidParts, CidError> {
    // Fast path: the only shape ATProto uses, single-byte codec, SHA-256.
    if let [1, codec, 0x12, 0x20, ..] = *buf
        && codec < 0x80
        && buf.len() >= 36
    {
        return Ok(CidParts {
            codec: u64::from(codec),
            hash: SHA2_256,
            digest_at: 4,
            len: 36,
        });
    }
    if let [0x12, 0x20, ..] = *buf {
        return Err(CidError::Version0);
    }
    let (version, at) = varint_at(buf, 0)?;
    if version != 1 {
        return Err(CidError::Version(version));
    }
    let (codec, at) = varint_at(buf, at)?;
    let (hash, at) = varint_at(buf, at)?;
    let (digest_len, digest_at) = varint_at(buf, at)?;
    if digest_len > MAX_DIGEST_LEN {
        return Err(CidError::DigestTooLong(digest_len));
    }
    // The digest length is at most 64, so this cannot overflow.
    let len = digest_at + digest_len as usize;
    if len > buf.len() {
        return Err(CidError::Truncated);
    }
    Ok(CidParts {
        codec,
        hash,
        digest_at,
        len,
    })
}

impl<'a> CidRef<'a> {
    /// Parses exactly one binary CIDv1 (no trailing bytes).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, CidError> {
        let parts = parse_cid(bytes)?;
        if parts.len != bytes.len() {
            return Err(CidError::Trailing);
        }
        Ok(CidRef(bytes))
    }

    /// Parses a binary CIDv1 at the start of `buf` and returns it with the bytes after it
    /// (how CAR sections store CIDs).
    #[inline]
    pub fn read_prefix(buf: &'a [u8]) -> Result<(Self, &'a [u8]), CidError> {
        let parts = parse_cid(buf)?;
        let (cid, rest) = buf.split_at(parts.len);
        Ok((CidRef(cid), rest))
    }

    fn parts(&self) -> CidParts {
        // Construction guarantees the bytes parse; the fallback is unreachable.
        parse_cid(self.0).unwrap_or(CidParts {
            codec: 0,
            hash: 0,
            digest_at: self.0.len(),
            len: self.0.len(),
        })
    }

    /// The binary CID.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The content codec ([`DAG_CBOR`] or [`RAW`] in ATProto).
    #[inline]
    pub fn codec(&self) -> u64 {
        match self.0 {
            [1, c, ..] if *c < 0x80 => u64::from(*c),
            _ => self.parts().codec,
        }
    }

    /// The multihash function code ([`SHA2_256`] in ATProto).
    pub fn hash_code(&self) -> u64 {
        self.parts().hash
    }

    /// The multihash digest.
    #[inline]
    pub fn digest(&self) -> &'a [u8] {
        let bytes: &'a [u8] = self.0;
        match bytes {
            [1, c, 0x12, 0x20, digest @ ..] if *c < 0x80 && digest.len() == 32 => digest,
            _ => bytes.get(self.parts().digest_at..).unwrap_or(&[]),
        }
    }

    /// Whether this is a SHA-256 CID of `data` (same codec as this CID).
    #[inline]
    pub fn matches(&self, data: &[u8]) -> bool {
        self.hash_code() == SHA2_256 && self.digest() == sha256(data)
    }

    /// An owned [`cid::Cid`].
    pub fn to_cid(&self) -> cid::Cid {
        let p = self.parts();
        // Digests are at most 64 bytes (checked at construction), so wrapping succeeds.
        let mh = cid::multihash::Multihash::<64>::wrap(p.hash, self.digest()).unwrap_or_default();
        cid::Cid::new_v1(p.codec, mh)
    }
}

impl fmt::Display for CidRef<'_> {
    /// The multibase base32 string form (`b` + lowercase RFC 4648 base32, no padding).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut out = String::with_capacity(1 + (self.0.len() * 8).div_ceil(5));
        out.push('b');
        let mut acc = 0u32;
        let mut bits = 0u32;
        for &b in self.0 {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
            }
        }
        if bits > 0 {
            out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for CidRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CidRef({self})")
    }
}

impl PartialEq<cid::Cid> for CidRef<'_> {
    fn eq(&self, other: &cid::Cid) -> bool {
        other.version() == cid::Version::V1
            && other.codec() == self.codec()
            && other.hash().code() == self.hash_code()
            && other.hash().digest() == self.digest()
    }
}

/// SHA-256 of `data`.
#[inline]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

/// The binary CIDv1 (SHA-256) of `data` under `codec`.
///
/// `codec` must be below 0x80 so its varint is one byte, as [`DAG_CBOR`] and [`RAW`] are.
pub fn cid_bytes_for(codec: u64, data: &[u8]) -> [u8; 36] {
    debug_assert!(
        codec < 0x80,
        "cid_bytes_for supports single-byte codecs only"
    );
    let mut out = [0u8; 36];
    out[0] = 1;
    out[1] = (codec & 0x7f) as u8;
    out[2] = 0x12;
    out[3] = 0x20;
    out[4..].copy_from_slice(&sha256(data));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_map() {
        // {"a": 1, "bb": [true, null], "ccc": h'00'}
        let buf = [
            0xa3, 0x61, b'a', 0x01, 0x62, b'b', b'b', 0x82, 0xf5, 0xf6, 0x63, b'c', b'c', b'c',
            0x41, 0x00,
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.map_len(), Ok(3));
        let mut keys = MapKeys::new();
        assert_eq!(keys.next(&mut r), Ok("a"));
        assert_eq!(r.int(), Ok(1));
        assert_eq!(keys.next(&mut r), Ok("bb"));
        assert_eq!(r.array_len(), Ok(2));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.try_null(), Ok(true));
        assert_eq!(keys.next(&mut r), Ok("ccc"));
        assert_eq!(r.bytes(), Ok(&[0u8][..]));
        assert!(r.is_empty());
        assert_eq!(validate_dag_cbor(&buf), Ok(()));
    }

    #[test]
    fn integer_edges() {
        let cases: &[(&[u8], Result<i64, CborError>)] = &[
            (&[0x17], Ok(23)),
            (&[0x18, 0x18], Ok(24)),
            (&[0x20], Ok(-1)),
            (
                &[0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Ok(i64::MIN),
            ),
            (
                &[0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Ok(i64::MAX),
            ),
            (
                &[0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Err(CborError::IntegerOverflow { at: 0 }),
            ),
            (
                &[0x19, 0x00, 0xff],
                Err(CborError::NonCanonicalInteger { at: 0 }),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(&Reader::new(bytes).int(), want, "{bytes:02x?}");
        }
    }

    #[test]
    fn varints() {
        assert_eq!(read_uvarint(&[0x00]), Ok((0, 1)));
        assert_eq!(read_uvarint(&[0x80, 0x01]), Ok((128, 2)));
        assert_eq!(read_uvarint(&[0x80, 0x00]), Err(VarintError::NonMinimal));
        assert_eq!(read_uvarint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(read_uvarint(&[0xff; 10]), Err(VarintError::TooLong));
    }

    #[test]
    fn cid_display_and_round_trip() {
        let bytes = cid_bytes_for(DAG_CBOR, b"hello");
        let cid = CidRef::from_bytes(&bytes).expect("valid");
        let owned = cid.to_cid();
        assert_eq!(cid.to_string(), owned.to_string());
        assert_eq!(cid, owned);
        assert_eq!(cid.codec(), DAG_CBOR);
        assert_eq!(cid.digest(), &sha256(b"hello")[..]);
        assert!(cid.matches(b"hello"));
        assert!(!cid.matches(b"hellO"));
    }
}
