//! CAR v1 files and firehose CAR slices, with every block's CID checked against its bytes.
//!
//! Layout: `uvarint(len) ‖ header {roots: [CID], version: 1}`, then sections
//! `uvarint(len) ‖ binary CID ‖ data`. Blocks may come in any order, repeat, or be unused.
//!
//! [`Car::parse`] hashes every block (SHA-256, codecs DAG-CBOR and raw) and rejects anything
//! else; [`Car::parse_unverified`] skips hashing for bytes already trusted (for example a
//! CAR this process wrote). Parsing borrows: blocks are slices of the input, and the only
//! allocations are the roots and block vectors (plus an index for large CARs).

use std::collections::HashMap;

use super::cbor::{self, CidError, CidRef, MapKeys, Reader, VarintError};

/// Limits on what a CAR may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    /// Most blocks accepted (a whole-repository export of a large account has ~10^6).
    pub max_blocks: usize,
    /// Largest block, CID included (records are at most 1,000,000 bytes).
    pub max_block_bytes: usize,
}

impl Default for CarLimits {
    fn default() -> Self {
        CarLimits {
            max_blocks: 2_000_000,
            max_block_bytes: 2_000_000,
        }
    }
}

/// Why bytes are not an acceptable CAR v1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    /// A section (or header) length varint is malformed.
    #[error("bad varint at byte {at}: {source}")]
    Varint {
        /// Offset of the varint.
        at: usize,
        /// What is wrong with it.
        source: VarintError,
    },
    /// A section length runs past the end of the input.
    #[error("section at byte {at} declares {len} bytes, only {left} left")]
    Truncated {
        /// Offset of the section's length varint.
        at: usize,
        /// The declared length.
        len: u64,
        /// Bytes actually left.
        left: usize,
    },
    /// The header is not valid DAG-CBOR or lacks its fields.
    #[error("bad CAR header: {0}")]
    Header(#[source] cbor::CborError),
    /// The header has no `roots`.
    #[error("CAR header has no roots")]
    MissingRoots,
    /// The header has no `version`.
    #[error("CAR header has no version")]
    MissingVersion,
    /// The header's `version` is not 1.
    #[error("unsupported CAR version {0}")]
    Version(i64),
    /// A section's CID does not parse.
    #[error("bad CID in section at byte {at}: {source}")]
    Cid {
        /// Offset of the section.
        at: usize,
        /// What is wrong with the CID.
        source: CidError,
    },
    /// A CID uses a hash other than SHA-256 (or a SHA-256 digest not 32 bytes long).
    #[error("block {cid} at byte {at} uses unsupported multihash 0x{code:x}")]
    UnsupportedHash {
        /// The block's CID.
        cid: String,
        /// The multihash code.
        code: u64,
        /// Offset of the section.
        at: usize,
    },
    /// A CID uses a codec other than DAG-CBOR or raw.
    #[error("block {cid} at byte {at} uses unsupported codec 0x{codec:x}")]
    UnsupportedCodec {
        /// The block's CID.
        cid: String,
        /// The multicodec code.
        codec: u64,
        /// Offset of the section.
        at: usize,
    },
    /// A block's bytes do not hash to its CID.
    #[error("block {cid} at byte {at} does not match its CID (data hashes to {actual})")]
    CidMismatch {
        /// The CID the section claims.
        cid: String,
        /// The CID the data actually has.
        actual: String,
        /// Offset of the section.
        at: usize,
    },
    /// More blocks than [`CarLimits::max_blocks`].
    #[error("more than {max} blocks")]
    TooManyBlocks {
        /// The limit.
        max: usize,
    },
    /// A section larger than [`CarLimits::max_block_bytes`].
    #[error("section at byte {at} is {len} bytes, over the {max}-byte limit")]
    BlockTooLarge {
        /// Offset of the section.
        at: usize,
        /// Its declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// One block: a CID and the bytes it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<'a> {
    /// The block's CID as written in the CAR.
    pub cid: CidRef<'a>,
    /// The block's bytes.
    pub data: &'a [u8],
}

/// A parsed CAR v1, borrowing the input.
#[derive(Debug, Clone)]
pub struct Car<'a> {
    /// The header's roots; for ATProto, `roots[0]` is the commit.
    pub roots: Vec<CidRef<'a>>,
    /// Blocks in file order, duplicates kept.
    blocks: Vec<Block<'a>>,
    /// CID to index in `blocks`, built only for CARs where a linear scan would be slow.
    index: Option<HashMap<CidRef<'a>, usize>>,
}

/// Below this many blocks, [`Car::get`] scans linearly: comparing a few 36-byte CIDs is faster
/// than hashing one, and firehose slices hold about ten blocks (see `examples/decode_speed.rs`).
const INDEX_THRESHOLD: usize = 32;

impl<'a> Car<'a> {
    /// Parses a CAR and checks every block's CID against its bytes, with default limits.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CarError> {
        Self::parse_with(bytes, &CarLimits::default(), true)
    }

    /// Parses a CAR without hashing blocks (CIDs must still parse), for trusted input.
    pub fn parse_unverified(bytes: &'a [u8]) -> Result<Self, CarError> {
        Self::parse_with(bytes, &CarLimits::default(), false)
    }

    /// Parses a CAR with explicit limits, hashing every block if `verify` is set.
    pub fn parse_with(bytes: &'a [u8], limits: &CarLimits, verify: bool) -> Result<Self, CarError> {
        let (header, mut pos) = section(bytes, 0, limits)?;
        let roots = parse_header(header)?;
        // Firehose slices carry a handful of blocks; a guess avoids most regrowth.
        let mut blocks = Vec::with_capacity(16);
        while pos < bytes.len() {
            let at = pos;
            let (body, next) = section(bytes, pos, limits)?;
            pos = next;
            if blocks.len() >= limits.max_blocks {
                return Err(CarError::TooManyBlocks {
                    max: limits.max_blocks,
                });
            }
            let (cid, data) =
                CidRef::read_prefix(body).map_err(|source| CarError::Cid { at, source })?;
            if verify {
                check_block(cid, data, at)?;
            }
            blocks.push(Block { cid, data });
        }
        let index = (blocks.len() > INDEX_THRESHOLD).then(|| {
            let mut map = HashMap::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                // The first occurrence wins; verified duplicates carry the same bytes.
                map.entry(b.cid).or_insert(i);
            }
            map
        });
        Ok(Car {
            roots,
            blocks,
            index,
        })
    }

    /// The bytes of the block with this CID, if present.
    #[inline]
    pub fn get(&self, cid: &CidRef<'_>) -> Option<&'a [u8]> {
        self.get_bytes(cid.bytes())
    }

    /// The bytes of the block whose binary CID is `cid`, if present.
    #[inline]
    pub fn get_bytes(&self, cid: &[u8]) -> Option<&'a [u8]> {
        match &self.index {
            Some(index) => {
                let key = CidRef::from_bytes(cid).ok()?;
                index
                    .get(&key)
                    .and_then(|&i| self.blocks.get(i))
                    .map(|b| b.data)
            }
            None => self
                .blocks
                .iter()
                .find(|b| b.cid.bytes() == cid)
                .map(|b| b.data),
        }
    }

    /// Whether a block with this CID is present.
    pub fn contains(&self, cid: &CidRef<'_>) -> bool {
        self.get(cid).is_some()
    }

    /// The first root (the commit, for ATProto CARs).
    pub fn root(&self) -> Option<CidRef<'a>> {
        self.roots.first().copied()
    }

    /// All blocks in file order, duplicates included.
    pub fn blocks(&self) -> impl ExactSizeIterator<Item = Block<'a>> + '_ {
        self.blocks.iter().copied()
    }

    /// Number of blocks, duplicates included.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the CAR has no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Checks a block's CID: SHA-256, DAG-CBOR or raw, digest of `data`.
#[inline]
pub fn check_block(cid: CidRef<'_>, data: &[u8], at: usize) -> Result<(), CarError> {
    let codec = cid.codec();
    if codec != cbor::DAG_CBOR && codec != cbor::RAW {
        return Err(CarError::UnsupportedCodec {
            cid: cid.to_string(),
            codec,
            at,
        });
    }
    let digest = cid.digest();
    if cid.hash_code() != cbor::SHA2_256 || digest.len() != 32 {
        return Err(CarError::UnsupportedHash {
            cid: cid.to_string(),
            code: cid.hash_code(),
            at,
        });
    }
    if digest != cbor::sha256(data) {
        let actual = cbor::cid_bytes_for(codec, data);
        return Err(CarError::CidMismatch {
            cid: cid.to_string(),
            actual: CidRef::from_bytes(&actual)
                .map(|c| c.to_string())
                .unwrap_or_default(),
            at,
        });
    }
    Ok(())
}

/// Reads the section at `pos`: its body and the offset after it.
#[inline]
fn section<'a>(
    bytes: &'a [u8],
    pos: usize,
    limits: &CarLimits,
) -> Result<(&'a [u8], usize), CarError> {
    let rest = bytes.get(pos..).unwrap_or(&[]);
    let (len, used) =
        cbor::read_uvarint(rest).map_err(|source| CarError::Varint { at: pos, source })?;
    let left = rest.len() - used;
    if len > limits.max_block_bytes as u64 {
        return Err(CarError::BlockTooLarge {
            at: pos,
            len,
            max: limits.max_block_bytes,
        });
    }
    // The length is at most `max_block_bytes`, a usize, so the conversion is exact.
    let n = len as usize;
    if n > left {
        return Err(CarError::Truncated { at: pos, len, left });
    }
    let start = pos + used;
    Ok((&bytes[start..start + n], start + n))
}

/// Decodes `{roots: [CID], version: 1}`; other keys are skipped.
fn parse_header(header: &[u8]) -> Result<Vec<CidRef<'_>>, CarError> {
    let mut r = Reader::new(header);
    let mut keys = MapKeys::new();
    let mut roots = None;
    let mut version = None;
    for _ in 0..r.map_len().map_err(CarError::Header)? {
        match keys.next(&mut r).map_err(CarError::Header)? {
            "roots" => {
                let n = r.array_len().map_err(CarError::Header)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(r.link().map_err(CarError::Header)?);
                }
                roots = Some(list);
            }
            "version" => version = Some(r.int().map_err(CarError::Header)?),
            _ => r.skip().map_err(CarError::Header)?,
        }
    }
    r.finish().map_err(CarError::Header)?;
    match version {
        Some(1) => {}
        Some(v) => return Err(CarError::Version(v)),
        None => return Err(CarError::MissingVersion),
    }
    roots.ok_or(CarError::MissingRoots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn car(roots: &[&[u8]], blocks: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut header = vec![0xa2, 0x65];
        header.extend_from_slice(b"roots");
        header.push(0x80 | roots.len() as u8);
        for r in roots {
            header.extend_from_slice(&[0xd8, 0x2a, 0x58, (r.len() + 1) as u8, 0x00]);
            header.extend_from_slice(r);
        }
        header.push(0x67);
        header.extend_from_slice(b"version");
        header.push(0x01);
        let mut out = Vec::new();
        varint(header.len(), &mut out);
        out.extend_from_slice(&header);
        for (cid, data) in blocks {
            varint(cid.len() + data.len(), &mut out);
            out.extend_from_slice(cid);
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn parses_and_checks_blocks() {
        let data = [0xa0u8];
        let cid = cbor::cid_bytes_for(cbor::DAG_CBOR, &data);
        let bytes = car(&[&cid], &[(&cid, &data), (&cid, &data)]);
        let parsed = Car::parse(&bytes).expect("valid CAR");
        assert_eq!(parsed.roots.len(), 1);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed.get(&parsed.roots[0]), Some(&data[..]));

        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] = 0xa1;
        let err = Car::parse(&bad).expect_err("flipped byte");
        let name = CidRef::from_bytes(&cid).expect("cid").to_string();
        assert!(
            matches!(&err, CarError::CidMismatch { cid, .. } if *cid == name),
            "{err}"
        );
        assert!(Car::parse_unverified(&bad).is_ok());
    }

    #[test]
    fn indexes_large_cars() {
        let datas: Vec<[u8; 2]> = (0..100u8).map(|i| [0x18, 24 + i]).collect();
        let cids: Vec<[u8; 36]> = datas
            .iter()
            .map(|d| cbor::cid_bytes_for(cbor::DAG_CBOR, d))
            .collect();
        let blocks: Vec<(&[u8], &[u8])> = cids
            .iter()
            .zip(&datas)
            .map(|(c, d)| (&c[..], &d[..]))
            .collect();
        let bytes = car(&[&cids[0]], &blocks);
        let parsed = Car::parse(&bytes).expect("valid CAR");
        for (c, d) in cids.iter().zip(&datas) {
            assert_eq!(parsed.get_bytes(c), Some(&d[..]));
        }
        assert_eq!(
            parsed.get_bytes(&cbor::cid_bytes_for(cbor::RAW, b"x")),
            None
        );
    }
}
