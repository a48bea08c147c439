//! Jetstream zstd compression with the legacy dictionary (`shared/brief/jetstream.md` §6).
//!
//! A Jetstream client that asks for `compress=true` gets every event as one binary WebSocket
//! frame holding exactly one zstd frame of the event's JSON bytes. The frames are compressed
//! with the dictionary that legacy Jetstream ships and that its clients embed; Go decoders
//! choose the dictionary by the dict ID in the frame header, so the frame must carry it and
//! the server's dictionary must be byte-identical to the clients' copy. Hence:
//!
//! - [`Dictionary::load`] accepts only the exact legacy dictionary: [`DICTIONARY_LEN`] bytes,
//!   sha256 [`DICTIONARY_SHA256`], dict ID [`DICTIONARY_ID`]. Its bytes are not in this
//!   repository: `install.sh` (through `deploy/jetstream/fetch-dictionary.sh`) takes them from
//!   the MIT-licensed registry package `jetstream-oxide` 0.1.2 with cargo, checks the sha256
//!   and installs them where [`dictionary_path`] looks.
//! - [`Compressor`] writes frames with the legacy settings: default level (3), window log 17
//!   (128 KiB), content checksum on, dict ID and content size in the frame header. The
//!   dictionary is prepared once per [`Dictionary`] (a shared zstd `CDict`) and each
//!   compressor keeps its own zstd context, so a call does no dictionary work and no
//!   context allocation: one compressor per subscriber connection or per ingest task.
//! - [`decompress`] reads such a frame back, for tests and clients.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::zstd::dict::EncoderDictionary;
use ::zstd::zstd_safe::{self, CCtx, CParameter};
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Full lowercase hex sha256 of the legacy Jetstream dictionary.
pub const DICTIONARY_SHA256: &str =
    "b8d77b46933aceecbdd5275a01241efc985c970c78162b8150cf67a26522f70c";

/// The dict ID in the legacy dictionary's header, written into every frame header.
pub const DICTIONARY_ID: u32 = 1_612_007_021;

/// Size in bytes of the legacy Jetstream dictionary.
pub const DICTIONARY_LEN: usize = 112_640;

/// The zstd level legacy Jetstream uses (zstd's default).
const LEVEL: i32 = 3;

/// Window log of legacy Jetstream's encoder: a 128 KiB window.
const WINDOW_LOG: u32 = 17;

/// Magic number that opens a zstd-format dictionary (little-endian in the file).
const DICT_MAGIC: u32 = 0xEC30_A437;

/// Environment variable naming the dictionary file, consulted by [`dictionary_path`] when no
/// path is configured.
pub const DICTIONARY_ENV: &str = "ATELIER_JETSTREAM_DICTIONARY";

/// Where the dictionary is read from: `configured` when given, else the file named by
/// `ATELIER_JETSTREAM_DICTIONARY`, else `$ATELIER_HOME/jetstream/zstd_dictionary` (where
/// `install.sh` puts it), with `ATELIER_HOME` defaulting to `$HOME/.local/share/atelier`.
/// Empty environment values count as unset.
pub fn dictionary_path(configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os(DICTIONARY_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let home = match std::env::var_os("ATELIER_HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".local")
            .join("share")
            .join("atelier"),
    };
    home.join("jetstream").join("zstd_dictionary")
}

/// Why [`Dictionary::load`] refused a file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// The file does not exist.
    #[error(
        "the Jetstream zstd dictionary is missing at {path}: run ./install.sh from the Atelier \
         checkout (it fetches the legacy dictionary and checks its sha256), or point \
         ATELIER_JETSTREAM_DICTIONARY or the relay's zstd_dictionary setting at a copy"
    )]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read the Jetstream zstd dictionary at {path}: {source}")]
    Read {
        /// The path read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file does not have the legacy dictionary's size.
    #[error(
        "{path} is not the legacy Jetstream zstd dictionary: it has {len} bytes, expected \
         {DICTIONARY_LEN}; run ./install.sh to install the right one"
    )]
    WrongLength {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
    },
    /// The file has the right size but not the legacy dictionary's sha256.
    #[error(
        "{path} is not the legacy Jetstream zstd dictionary: its sha256 is {actual}, expected \
         {DICTIONARY_SHA256}; run ./install.sh to install the right one"
    )]
    WrongSha256 {
        /// The file.
        path: PathBuf,
        /// The file's lowercase hex sha256.
        actual: String,
    },
    /// The file's header is not a zstd dictionary header with [`DICTIONARY_ID`].
    #[error("{path} does not carry zstd dict ID {DICTIONARY_ID} in its header (found {found:?})")]
    WrongDictId {
        /// The file.
        path: PathBuf,
        /// The dict ID found, if the header is a zstd dictionary header at all.
        found: Option<u32>,
    },
}

/// The legacy Jetstream dictionary, checked and prepared for compression. Cloning is cheap
/// (two reference counts) and the value can be shared across threads; build one
/// [`Compressor`] per connection or task from it.
#[derive(Clone)]
pub struct Dictionary {
    bytes: Arc<[u8]>,
    prepared: Arc<EncoderDictionary<'static>>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("len", &self.bytes.len())
            .field("id", &DICTIONARY_ID)
            .finish_non_exhaustive()
    }
}

impl Dictionary {
    /// Reads the dictionary at `path` (see [`dictionary_path`]) and checks that it is exactly
    /// the legacy one: its length, its sha256, and the dict ID in its header. Then prepares it
    /// once for compression at the legacy level.
    pub fn load(path: &Path) -> Result<Dictionary, DictionaryError> {
        let read_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                DictionaryError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                DictionaryError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        let mut file = File::open(path).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        if len != DICTIONARY_LEN as u64 {
            return Err(DictionaryError::WrongLength {
                path: path.to_path_buf(),
                len,
            });
        }
        let mut bytes = Vec::with_capacity(DICTIONARY_LEN);
        // Read one byte past the expected length, so a file that grew meanwhile is caught.
        (&mut file)
            .take(DICTIONARY_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        Dictionary::from_bytes(path, bytes)
    }

    /// Checks `bytes` read from `path` and prepares them.
    fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Dictionary, DictionaryError> {
        if bytes.len() != DICTIONARY_LEN {
            return Err(DictionaryError::WrongLength {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
        let actual = data_encoding::HEXLOWER.encode(&Sha256::digest(&bytes));
        if actual != DICTIONARY_SHA256 {
            return Err(DictionaryError::WrongSha256 {
                path: path.to_path_buf(),
                actual,
            });
        }
        let found = header_dict_id(&bytes);
        if found != Some(DICTIONARY_ID) {
            return Err(DictionaryError::WrongDictId {
                path: path.to_path_buf(),
                found,
            });
        }
        let prepared = Arc::new(EncoderDictionary::copy(&bytes, LEVEL));
        Ok(Dictionary {
            bytes: Arc::from(bytes),
            prepared,
        })
    }

    /// The dictionary's raw bytes (what clients embed).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The dict ID in a zstd-format dictionary header: the magic `0xEC30A437` then the ID, both
/// little-endian. `None` when the header is not a zstd dictionary header.
fn header_dict_id(dict: &[u8]) -> Option<u32> {
    let magic = u32::from_le_bytes(dict.get(0..4)?.try_into().ok()?);
    if magic != DICT_MAGIC {
        return None;
    }
    Some(u32::from_le_bytes(dict.get(4..8)?.try_into().ok()?))
}

/// Compresses events into single zstd frames with the legacy settings. Owns a zstd context
/// that references the [`Dictionary`]'s prepared form, so calls reuse both; it is `Send`,
/// and meant to be owned by one connection or task.
pub struct Compressor {
    // Field order matters: the context is dropped before the dictionary it references.
    cctx: CCtx<'static>,
    scratch: Vec<u8>,
    _dictionary: Arc<EncoderDictionary<'static>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Compressor {
    /// A compressor for `dictionary` with the legacy settings: level 3 (from the prepared
    /// dictionary), window log 17, content checksum, dict ID and content size in the header.
    pub fn new(dictionary: &Dictionary) -> io::Result<Compressor> {
        let prepared = Arc::clone(&dictionary.prepared);
        let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
        let params = [
            CParameter::WindowLog(WINDOW_LOG),
            CParameter::ChecksumFlag(true),
            CParameter::DictIdFlag(true),
            CParameter::ContentSizeFlag(true),
        ];
        for param in params {
            cctx.set_parameter(param).map_err(zstd_error)?;
        }
        // The context keeps a pointer to the CDict: `prepared` is held in the same struct
        // and dropped after the context (field order), so it outlives every use.
        cctx.ref_cdict(prepared.as_cdict()).map_err(zstd_error)?;
        Ok(Compressor {
            cctx,
            scratch: Vec::new(),
            _dictionary: prepared,
        })
    }

    /// Compresses `json` into exactly one zstd frame (dict ID, content size and checksum in
    /// it). The result is an exact-size buffer, cheap to clone into several send queues.
    pub fn compress(&mut self, json: &[u8]) -> io::Result<Bytes> {
        self.scratch.clear();
        self.scratch.reserve(zstd_safe::compress_bound(json.len()));
        if let Err(code) = self.cctx.compress2(&mut self.scratch, json) {
            // A failed frame stays open and zstd refuses most calls mid-frame: abandon it so
            // the next call starts clean. Resetting only the session keeps the parameters
            // and the dictionary.
            let _ = self.cctx.reset(zstd_safe::ResetDirective::SessionOnly);
            return Err(zstd_error(code));
        }
        Ok(Bytes::copy_from_slice(&self.scratch))
    }
}

/// Decompresses one frame written with `dict` (for tests and clients). Fails when the output
/// would exceed `max` bytes, when the frame is corrupt, or when its checksum does not match.
pub fn decompress(dict: &Dictionary, frame: &[u8], max: usize) -> io::Result<Vec<u8>> {
    let mut decompressor = ::zstd::bulk::Decompressor::with_dictionary(&dict.bytes)?;
    decompressor.decompress(frame, max)
}

fn zstd_error(code: zstd_safe::ErrorCode) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installed dictionary; panics with the install command when it is missing, so a
    /// machine without it fails these tests instead of silently skipping them.
    fn installed() -> Dictionary {
        let path = dictionary_path(None);
        match Dictionary::load(&path) {
            Ok(dict) => dict,
            Err(err) => panic!("{err}\n(hint: run ./install.sh from the repository root)"),
        }
    }

    fn sample_event() -> Vec<u8> {
        br#"{"did":"did:plc:eygmaihciaxprqvxpfvl6flk","time_us":1725911162329308,"kind":"commit","commit":{"rev":"3l3qo2vutsw2b","operation":"create","collection":"app.bsky.feed.like","rkey":"3l3qo2vuowo2b","record":{"$type":"app.bsky.feed.like","createdAt":"2024-09-09T19:46:02.102Z","subject":{"cid":"bafyreidc6sydkkbchcyg62v77wbhzvb2mvytlmsychqgwf2xojjtirmzj4","uri":"at://did:plc:wa7b35aakoll7hugkrjtf3xf/app.bsky.feed.post/3l3pte3p2e325"}},"cid":"bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi"}}"#.to_vec()
    }

    /// Frame header descriptor byte (after the 4-byte magic).
    fn frame_descriptor(frame: &[u8]) -> u8 {
        assert_eq!(&frame[0..4], &[0x28, 0xB5, 0x2F, 0xFD], "zstd frame magic");
        frame[4]
    }

    #[test]
    fn installed_dictionary_loads() {
        let dict = installed();
        assert_eq!(dict.bytes().len(), DICTIONARY_LEN);
        assert_eq!(header_dict_id(dict.bytes()), Some(DICTIONARY_ID));
        assert_eq!(
            zstd_safe::get_dict_id_from_dict(dict.bytes()).map(|id| id.get()),
            Some(DICTIONARY_ID)
        );
    }

    #[test]
    fn round_trip() {
        let dict = installed();
        let mut compressor = Compressor::new(&dict).unwrap();
        let json = sample_event();
        // Several calls on one compressor: each is an independent frame.
        for _ in 0..3 {
            let frame = compressor.compress(&json).unwrap();
            assert!(
                frame.len() < json.len(),
                "{} >= {}",
                frame.len(),
                json.len()
            );
            assert_eq!(decompress(&dict, &frame, json.len()).unwrap(), json);
        }
        let empty = compressor.compress(b"").unwrap();
        assert_eq!(decompress(&dict, &empty, 0).unwrap(), b"");
        // Independent decoders (plain zstd with the raw dictionary) read it too.
        let frame = compressor.compress(&json).unwrap();
        let plain = ::zstd::bulk::Decompressor::with_dictionary(dict.bytes())
            .unwrap()
            .decompress(&frame, 1 << 20)
            .unwrap();
        assert_eq!(plain, json);
    }

    #[test]
    fn exactly_one_frame_per_call() {
        let dict = installed();
        let mut compressor = Compressor::new(&dict).unwrap();
        let frame = compressor.compress(&sample_event()).unwrap();
        let size = zstd_safe::find_frame_compressed_size(&frame).unwrap();
        assert_eq!(size, frame.len());
    }

    #[test]
    fn frame_header_carries_dict_id_checksum_and_size() {
        let dict = installed();
        let mut compressor = Compressor::new(&dict).unwrap();
        let json = sample_event();
        let frame = compressor.compress(&json).unwrap();
        assert_eq!(
            zstd_safe::get_dict_id_from_frame(&frame).map(|id| id.get()),
            Some(DICTIONARY_ID)
        );
        let descriptor = frame_descriptor(&frame);
        assert_ne!(descriptor & 0x04, 0, "content checksum flag");
        assert_eq!(descriptor & 0x03, 3, "4-byte dict ID field");
        assert_eq!(
            zstd_safe::get_frame_content_size(&frame).unwrap(),
            Some(json.len() as u64)
        );
        // The last 4 bytes are the checksum: corrupting one must fail decompression.
        let mut bad = frame.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xFF;
        assert!(decompress(&dict, &bad, json.len()).is_err());
    }

    #[test]
    fn window_is_at_most_128_kib() {
        let dict = installed();
        let mut compressor = Compressor::new(&dict).unwrap();
        // Large enough that the frame cannot be single-segment, so it has a window descriptor.
        let json: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("{{\"i\":{i}}}").into_bytes())
            .take(600_000)
            .collect();
        let frame = compressor.compress(&json).unwrap();
        let descriptor = frame_descriptor(&frame);
        assert_eq!(descriptor & 0x20, 0, "not single-segment");
        let window = frame[5];
        let (exponent, mantissa) = (u32::from(window >> 3), u64::from(window & 7));
        let base = 1u64 << (10 + exponent);
        let window_size = base + base / 8 * mantissa;
        assert_eq!(window_size, 128 * 1024);
        assert_eq!(decompress(&dict, &frame, json.len()).unwrap(), json);
    }

    #[test]
    fn missing_file_names_path_and_install() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        let err = Dictionary::load(&path).unwrap_err();
        assert!(matches!(err, DictionaryError::Missing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("./install.sh"), "{msg}");
    }

    #[test]
    fn wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, vec![0u8; DICTIONARY_LEN - 1]).unwrap();
        let err = Dictionary::load(&path).unwrap_err();
        assert!(
            matches!(err, DictionaryError::WrongLength { len, .. } if len == DICTIONARY_LEN as u64 - 1),
            "{err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn wrong_sha256_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forged");
        // Right length and a valid header with the right dict ID, wrong content.
        let mut bytes = vec![0u8; DICTIONARY_LEN];
        bytes[0..4].copy_from_slice(&DICT_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&DICTIONARY_ID.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = Dictionary::load(&path).unwrap_err();
        assert!(
            matches!(&err, DictionaryError::WrongSha256 { actual, .. } if actual.len() == 64),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(DICTIONARY_SHA256), "{msg}");
    }

    #[test]
    fn header_dict_id_parses() {
        let mut bytes = DICT_MAGIC.to_le_bytes().to_vec();
        bytes.extend_from_slice(&DICTIONARY_ID.to_le_bytes());
        assert_eq!(header_dict_id(&bytes), Some(DICTIONARY_ID));
        assert_eq!(header_dict_id(&bytes[..7]), None);
        assert_eq!(header_dict_id(&[0u8; 8]), None);
    }

    #[test]
    fn configured_path_wins() {
        let p = Path::new("/etc/atelier/dict");
        assert_eq!(dictionary_path(Some(p)), p);
    }
}
