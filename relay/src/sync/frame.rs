//! `com.atproto.sync.subscribeRepos` frames, decoded without copying.
//!
//! A frame is one WebSocket binary message: a DAG-CBOR header `{op, t}` followed by a
//! DAG-CBOR body. `op: 1` carries a message named by `t` (`#commit`, `#sync`, `#identity`,
//! `#account`, `#info`); `op: -1` is an error (`{error, message?}`), after which the server
//! closes. A `t` (or `op`) this module does not know decodes to [`Frame::Unknown`] so the caller
//! can report and skip it; its body must still be valid DAG-CBOR.
//!
//! Bodies borrow from the frame: strings, CIDs and the `blocks` CAR slice are slices of it, and
//! the only allocation is the `ops` vector of a `#commit`. Unknown body fields are skipped (so
//! new fields do not break old clients); a missing required field is a
//! [`FrameError::MissingField`] naming it. Semantic checks (op/CID consistency, revs, the CAR's
//! contents) belong to `verify`; this module checks shape and the protocol's size limits.

use super::car::{Car, CarError};
use super::cbor::{CborError, CidRef, MapKeys, Reader};

/// Size limits from the protocol; decoding rejects frames over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole frame, header included (protocol: 5 MB).
    pub max_frame_bytes: usize,
    /// Most ops in a `#commit` (protocol: 200).
    pub max_ops: usize,
    /// Largest `#commit` `blocks` CAR slice (protocol: 2,000,000 bytes; 1 MB in old lexicons).
    pub max_commit_blocks_bytes: usize,
    /// Largest `#sync` `blocks` CAR slice, which holds only the commit block (protocol: 10,000).
    pub max_sync_blocks_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 5 * 1024 * 1024,
            max_ops: 200,
            max_commit_blocks_bytes: 2_000_000,
            max_sync_blocks_bytes: 10_000,
        }
    }
}

/// Why a frame was rejected. Any of these means the stream is not trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than [`Limits::max_frame_bytes`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header or a body field is not valid DAG-CBOR of the expected type.
    #[error("{message}.{field}: {source}")]
    Cbor {
        /// The part being read: `header`, or the message type such as `#commit`.
        message: &'static str,
        /// The field being read (`-` for the map itself or an unknown field).
        field: &'static str,
        /// The CBOR error, with frame-absolute offsets.
        source: CborError,
    },
    /// A required field is absent.
    #[error("{message} is missing required field `{field}`")]
    MissingField {
        /// The part being read: `header`, or the message type such as `#commit`.
        message: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A repo op's `action` is not `create`, `update` or `delete`.
    #[error("unknown repo op action {action:?} at byte {at}")]
    UnknownAction {
        /// The action given.
        action: String,
        /// Offset of the action string.
        at: usize,
    },
    /// More ops than [`Limits::max_ops`].
    #[error("{count} ops exceed the limit of {max}")]
    TooManyOps {
        /// The declared number of ops.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A `blocks` slice larger than its limit.
    #[error("{message} blocks of {len} bytes exceed the {max}-byte limit")]
    BlocksTooLarge {
        /// `#commit` or `#sync`.
        message: &'static str,
        /// The slice's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A sequence number that is not positive (from [`with_seq`]).
    #[error("seq must be positive, got {0}")]
    BadSeq(i64),
}

/// The frame header `{op, t}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// `1` for a message, `-1` for an error.
    pub op: i64,
    /// The message type, such as `#commit`; absent on error frames.
    pub t: Option<&'a str>,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A repository commit.
    Commit(Commit<'a>),
    /// A repository's current commit, without ops (sync 1.1).
    Sync(Sync<'a>),
    /// An identity change hint: re-resolve the DID.
    Identity(Identity<'a>),
    /// An account status change at the emitting host.
    Account(Account<'a>),
    /// Informational message, such as `OutdatedCursor`.
    Info(Info<'a>),
    /// An error frame (`op: -1`); the server closes the stream after it.
    Error(ErrorFrame<'a>),
    /// A message type this decoder does not know (`op: 1` with another `t`, or another `op`,
    /// in which case `t` is the header's `t` or empty). Report and skip.
    Unknown {
        /// The header's `t`.
        t: &'a str,
    },
}

impl Frame<'_> {
    /// The sequence number, for messages that carry one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Frame::Commit(c) => Some(c.seq),
            Frame::Sync(s) => Some(s.seq),
            Frame::Identity(i) => Some(i.seq),
            Frame::Account(a) => Some(a.seq),
            Frame::Info(_) | Frame::Error(_) | Frame::Unknown { .. } => None,
        }
    }

    /// The message type as it appears in `t` (`#commit`, ...), or `error` for error frames.
    pub fn kind(&self) -> &str {
        match self {
            Frame::Commit(_) => "#commit",
            Frame::Sync(_) => "#sync",
            Frame::Identity(_) => "#identity",
            Frame::Account(_) => "#account",
            Frame::Info(_) => "#info",
            Frame::Error(_) => "error",
            Frame::Unknown { t } => t,
        }
    }

    /// The DID this message is about, if any.
    pub fn did(&self) -> Option<&str> {
        match self {
            Frame::Commit(c) => Some(c.repo),
            Frame::Sync(s) => Some(s.did),
            Frame::Identity(i) => Some(i.did),
            Frame::Account(a) => Some(a.did),
            Frame::Info(_) | Frame::Error(_) | Frame::Unknown { .. } => None,
        }
    }
}

/// `#commit`: a signed commit with the ops it made and a CAR slice proving them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit<'a> {
    /// Stream sequence number.
    pub seq: i64,
    /// The repository's DID.
    pub repo: &'a str,
    /// The commit's revision (a TID); must equal the commit block's `rev`.
    pub rev: &'a str,
    /// The previous commit's revision, or `None` for a repository's first commit.
    pub since: Option<&'a str>,
    /// The commit block's CID; must equal the CAR slice's `roots[0]`.
    pub commit: CidRef<'a>,
    /// The CAR slice: the commit block, new MST nodes, new records, and inversion neighbours.
    pub blocks: &'a [u8],
    /// Record operations, in the order given.
    pub ops: Vec<RepoOp<'a>>,
    /// The previous commit's MST root (`prevData`); needed to verify by inversion.
    pub prev_data: Option<CidRef<'a>>,
    /// When the event was emitted (RFC 3339), as given.
    pub time: &'a str,
    /// Deprecated: the commit was too big to include; strict verifiers reject it.
    pub too_big: bool,
    /// Deprecated: the repository was rebased; strict verifiers reject it.
    pub rebase: bool,
    /// Deprecated: number of blob links listed (their CIDs are checked, not kept).
    pub blobs: usize,
}

impl<'a> Commit<'a> {
    /// Parses [`Commit::blocks`] as a CAR, checking every block's CID.
    pub fn car(&self) -> Result<Car<'a>, CarError> {
        Car::parse(self.blocks)
    }
}

/// What a repo op did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A new record.
    Create,
    /// A record replaced.
    Update,
    /// A record removed.
    Delete,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One record operation in a `#commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoOp<'a> {
    /// Create, update or delete.
    pub action: Action,
    /// `collection/rkey`.
    pub path: &'a str,
    /// The new record's CID; `None` on delete.
    pub cid: Option<CidRef<'a>>,
    /// The previous record's CID (update and delete, sync 1.1).
    pub prev: Option<CidRef<'a>>,
}

impl<'a> RepoOp<'a> {
    /// The collection NSID and record key, split at the first `/`.
    pub fn split_path(&self) -> Option<(&'a str, &'a str)> {
        self.path.split_once('/')
    }
}

/// `#sync`: a repository's current commit, without a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sync<'a> {
    /// Stream sequence number.
    pub seq: i64,
    /// The repository's DID.
    pub did: &'a str,
    /// The commit's revision.
    pub rev: &'a str,
    /// A CAR slice holding only the commit block.
    pub blocks: &'a [u8],
    /// When the event was emitted, as given.
    pub time: &'a str,
}

/// `#identity`: the DID document or handle may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// Stream sequence number.
    pub seq: i64,
    /// The DID.
    pub did: &'a str,
    /// When the event was emitted, as given.
    pub time: &'a str,
    /// The current handle, if the emitter included it (a hint, to be verified).
    pub handle: Option<&'a str>,
}

/// `#account`: the account's hosting status at the emitting host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account<'a> {
    /// Stream sequence number.
    pub seq: i64,
    /// The DID.
    pub did: &'a str,
    /// When the event was emitted, as given.
    pub time: &'a str,
    /// Whether the account is active.
    pub active: bool,
    /// Why not active: `takendown`, `suspended`, `deleted`, `deactivated`, ...
    pub status: Option<&'a str>,
}

/// `#info`: an informational message, such as `OutdatedCursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info<'a> {
    /// The message name.
    pub name: &'a str,
    /// Human-readable detail.
    pub message: Option<&'a str>,
}

/// An error frame's body `{error, message?}`, such as `FutureCursor` or `ConsumerTooSlow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorFrame<'a> {
    /// The error name.
    pub error: &'a str,
    /// Human-readable detail.
    pub message: Option<&'a str>,
}

/// Decodes a frame with the default [`Limits`].
pub fn decode(frame: &[u8]) -> Result<Frame<'_>, FrameError> {
    decode_with(frame, &Limits::default())
}

/// Decodes a frame with explicit limits.
pub fn decode_with<'a>(frame: &'a [u8], limits: &Limits) -> Result<Frame<'a>, FrameError> {
    if frame.len() > limits.max_frame_bytes {
        return Err(FrameError::FrameTooLarge {
            len: frame.len(),
            max: limits.max_frame_bytes,
        });
    }
    let mut r = Reader::new(frame);
    let header = read_header(&mut r)?;
    let decoded = match (header.op, header.t) {
        (1, Some("#commit")) => Frame::Commit(commit(&mut r, limits)?),
        (1, Some("#sync")) => Frame::Sync(sync(&mut r, limits)?),
        (1, Some("#identity")) => Frame::Identity(identity(&mut r)?),
        (1, Some("#account")) => Frame::Account(account(&mut r)?),
        (1, Some("#info")) => Frame::Info(info(&mut r)?),
        (1, None) => {
            return Err(FrameError::MissingField {
                message: "header",
                field: "t",
            });
        }
        (-1, _) => Frame::Error(error_body(&mut r)?),
        (_, t) => {
            r.skip().map_err(cbor_err("unknown", "-"))?;
            Frame::Unknown { t: t.unwrap_or("") }
        }
    };
    r.finish().map_err(cbor_err("frame", "-"))?;
    Ok(decoded)
}

/// Decodes only the header, returning it and the offset where the body starts.
pub fn decode_header(frame: &[u8]) -> Result<(Header<'_>, usize), FrameError> {
    let mut r = Reader::new(frame);
    let header = read_header(&mut r)?;
    Ok((header, r.position()))
}

/// Wraps a CBOR error with where it happened.
fn cbor_err(message: &'static str, field: &'static str) -> impl Fn(CborError) -> FrameError {
    move |source| FrameError::Cbor {
        message,
        field,
        source,
    }
}

fn required<T>(
    value: Option<T>,
    message: &'static str,
    field: &'static str,
) -> Result<T, FrameError> {
    value.ok_or(FrameError::MissingField { message, field })
}

/// Reads a body map's length and returns it with a fresh key checker.
#[inline]
fn open_map(r: &mut Reader<'_>, message: &'static str) -> Result<(usize, MapKeys), FrameError> {
    let n = r.map_len().map_err(cbor_err(message, "-"))?;
    Ok((n, MapKeys::new()))
}

#[inline]
fn next_key<'a>(
    keys: &mut MapKeys,
    r: &mut Reader<'a>,
    message: &'static str,
) -> Result<&'a str, FrameError> {
    keys.next(r).map_err(cbor_err(message, "-"))
}

fn read_header<'a>(r: &mut Reader<'a>) -> Result<Header<'a>, FrameError> {
    const M: &str = "header";
    let (n, mut keys) = open_map(r, M)?;
    let mut op = None;
    let mut t = None;
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "t" => t = Some(r.text().map_err(cbor_err(M, "t"))?),
            "op" => op = Some(r.int().map_err(cbor_err(M, "op"))?),
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Header {
        op: required(op, M, "op")?,
        t,
    })
}

fn commit<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<Commit<'a>, FrameError> {
    const M: &str = "#commit";
    let (n, mut keys) = open_map(r, M)?;
    let mut seq = None;
    let mut repo = None;
    let mut rev = None;
    let mut since = None;
    let mut commit = None;
    let mut blocks = None;
    let mut ops = None;
    let mut prev_data = None;
    let mut time = None;
    let mut too_big = false;
    let mut rebase = false;
    let mut blobs = 0;
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "ops" => ops = Some(read_ops(r, limits)?),
            "rev" => rev = Some(r.text().map_err(cbor_err(M, "rev"))?),
            "seq" => seq = Some(r.int().map_err(cbor_err(M, "seq"))?),
            "repo" => repo = Some(r.text().map_err(cbor_err(M, "repo"))?),
            "time" => time = Some(r.text().map_err(cbor_err(M, "time"))?),
            "blobs" => {
                let count = r.array_len().map_err(cbor_err(M, "blobs"))?;
                for _ in 0..count {
                    r.link().map_err(cbor_err(M, "blobs"))?;
                }
                blobs = count;
            }
            "since" => since = r.nullable_text().map_err(cbor_err(M, "since"))?,
            "tooBig" => too_big = r.bool().map_err(cbor_err(M, "tooBig"))?,
            "blocks" => {
                let b = r.bytes().map_err(cbor_err(M, "blocks"))?;
                if b.len() > limits.max_commit_blocks_bytes {
                    return Err(FrameError::BlocksTooLarge {
                        message: M,
                        len: b.len(),
                        max: limits.max_commit_blocks_bytes,
                    });
                }
                blocks = Some(b);
            }
            "commit" => commit = Some(r.link().map_err(cbor_err(M, "commit"))?),
            "rebase" => rebase = r.bool().map_err(cbor_err(M, "rebase"))?,
            "prevData" => prev_data = r.nullable_link().map_err(cbor_err(M, "prevData"))?,
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Commit {
        seq: required(seq, M, "seq")?,
        repo: required(repo, M, "repo")?,
        rev: required(rev, M, "rev")?,
        since,
        commit: required(commit, M, "commit")?,
        blocks: required(blocks, M, "blocks")?,
        ops: required(ops, M, "ops")?,
        prev_data,
        time: required(time, M, "time")?,
        too_big,
        rebase,
        blobs,
    })
}

fn read_ops<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<Vec<RepoOp<'a>>, FrameError> {
    const M: &str = "#commit.ops";
    let count = r.array_len().map_err(cbor_err("#commit", "ops"))?;
    if count > limits.max_ops {
        return Err(FrameError::TooManyOps {
            count,
            max: limits.max_ops,
        });
    }
    // `count` is bounded by the limit and by the input, so this allocation is safe.
    let mut ops = Vec::with_capacity(count);
    for _ in 0..count {
        let (n, mut keys) = open_map(r, M)?;
        let mut action = None;
        let mut path = None;
        let mut cid = None;
        let mut prev = None;
        for _ in 0..n {
            match next_key(&mut keys, r, M)? {
                "cid" => cid = r.nullable_link().map_err(cbor_err(M, "cid"))?,
                "path" => path = Some(r.text().map_err(cbor_err(M, "path"))?),
                "prev" => prev = r.nullable_link().map_err(cbor_err(M, "prev"))?,
                "action" => {
                    let at = r.position();
                    let text = r.text().map_err(cbor_err(M, "action"))?;
                    action = Some(match text {
                        "create" => Action::Create,
                        "update" => Action::Update,
                        "delete" => Action::Delete,
                        other => {
                            return Err(FrameError::UnknownAction {
                                action: other.to_owned(),
                                at,
                            });
                        }
                    });
                }
                _ => r.skip().map_err(cbor_err(M, "-"))?,
            }
        }
        ops.push(RepoOp {
            action: required(action, M, "action")?,
            path: required(path, M, "path")?,
            cid,
            prev,
        });
    }
    Ok(ops)
}

fn sync<'a>(r: &mut Reader<'a>, limits: &Limits) -> Result<Sync<'a>, FrameError> {
    const M: &str = "#sync";
    let (n, mut keys) = open_map(r, M)?;
    let (mut seq, mut did, mut rev, mut blocks, mut time) = (None, None, None, None, None);
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "did" => did = Some(r.text().map_err(cbor_err(M, "did"))?),
            "rev" => rev = Some(r.text().map_err(cbor_err(M, "rev"))?),
            "seq" => seq = Some(r.int().map_err(cbor_err(M, "seq"))?),
            "time" => time = Some(r.text().map_err(cbor_err(M, "time"))?),
            "blocks" => {
                let b = r.bytes().map_err(cbor_err(M, "blocks"))?;
                if b.len() > limits.max_sync_blocks_bytes {
                    return Err(FrameError::BlocksTooLarge {
                        message: M,
                        len: b.len(),
                        max: limits.max_sync_blocks_bytes,
                    });
                }
                blocks = Some(b);
            }
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Sync {
        seq: required(seq, M, "seq")?,
        did: required(did, M, "did")?,
        rev: required(rev, M, "rev")?,
        blocks: required(blocks, M, "blocks")?,
        time: required(time, M, "time")?,
    })
}

fn identity<'a>(r: &mut Reader<'a>) -> Result<Identity<'a>, FrameError> {
    const M: &str = "#identity";
    let (n, mut keys) = open_map(r, M)?;
    let (mut seq, mut did, mut time, mut handle) = (None, None, None, None);
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "did" => did = Some(r.text().map_err(cbor_err(M, "did"))?),
            "seq" => seq = Some(r.int().map_err(cbor_err(M, "seq"))?),
            "time" => time = Some(r.text().map_err(cbor_err(M, "time"))?),
            "handle" => handle = r.nullable_text().map_err(cbor_err(M, "handle"))?,
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Identity {
        seq: required(seq, M, "seq")?,
        did: required(did, M, "did")?,
        time: required(time, M, "time")?,
        handle,
    })
}

fn account<'a>(r: &mut Reader<'a>) -> Result<Account<'a>, FrameError> {
    const M: &str = "#account";
    let (n, mut keys) = open_map(r, M)?;
    let (mut seq, mut did, mut time, mut active, mut status) = (None, None, None, None, None);
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "did" => did = Some(r.text().map_err(cbor_err(M, "did"))?),
            "seq" => seq = Some(r.int().map_err(cbor_err(M, "seq"))?),
            "time" => time = Some(r.text().map_err(cbor_err(M, "time"))?),
            "active" => active = Some(r.bool().map_err(cbor_err(M, "active"))?),
            "status" => status = r.nullable_text().map_err(cbor_err(M, "status"))?,
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Account {
        seq: required(seq, M, "seq")?,
        did: required(did, M, "did")?,
        time: required(time, M, "time")?,
        active: required(active, M, "active")?,
        status,
    })
}

fn info<'a>(r: &mut Reader<'a>) -> Result<Info<'a>, FrameError> {
    const M: &str = "#info";
    let (n, mut keys) = open_map(r, M)?;
    let (mut name, mut message) = (None, None);
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "name" => name = Some(r.text().map_err(cbor_err(M, "name"))?),
            "message" => message = r.nullable_text().map_err(cbor_err(M, "message"))?,
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(Info {
        name: required(name, M, "name")?,
        message,
    })
}

fn error_body<'a>(r: &mut Reader<'a>) -> Result<ErrorFrame<'a>, FrameError> {
    const M: &str = "error";
    let (n, mut keys) = open_map(r, M)?;
    let (mut error, mut message) = (None, None);
    for _ in 0..n {
        match next_key(&mut keys, r, M)? {
            "error" => error = Some(r.text().map_err(cbor_err(M, "error"))?),
            "message" => message = r.nullable_text().map_err(cbor_err(M, "message"))?,
            _ => r.skip().map_err(cbor_err(M, "-"))?,
        }
    }
    Ok(ErrorFrame {
        error: required(error, M, "error")?,
        message,
    })
}

/// Re-encodes a message frame with another `seq`, changing nothing else: the header, every
/// other body field and the `blocks` CAR stay byte for byte, so signatures and MST proofs
/// remain verifiable downstream. A relay uses this to re-serve upstream frames under its
/// own sequence. `seq` is not covered by any signature (the commit block is), which is what
/// makes this safe.
///
/// The frame must decode (see [`decode`]) and carry a `seq`; the new value must be
/// positive.
pub fn with_seq(frame: &[u8], seq: i64) -> Result<Vec<u8>, FrameError> {
    const M: &str = "frame";
    if seq <= 0 {
        return Err(FrameError::BadSeq(seq));
    }
    decode(frame)?;
    let (_, body_at) = decode_header(frame)?;
    let mut r = Reader::new(&frame[body_at..]);
    let n = r.map_len().map_err(cbor_err(M, "body"))?;
    let mut span = None;
    for _ in 0..n {
        let key = r.text().map_err(cbor_err(M, "body"))?;
        let start = body_at + r.position();
        r.skip().map_err(cbor_err(M, "body"))?;
        if key == "seq" {
            span = Some((start, body_at + r.position()));
        }
    }
    let (start, end) = span.ok_or(FrameError::MissingField {
        message: M,
        field: "seq",
    })?;
    let mut out = Vec::with_capacity(frame.len() + 8);
    out.extend_from_slice(&frame[..start]);
    write_uint(&mut out, seq.unsigned_abs());
    out.extend_from_slice(&frame[end..]);
    Ok(out)
}

/// A CBOR unsigned integer (major type 0) in shortest form, as DAG-CBOR requires.
fn write_uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=23 => out.push(v as u8),
        24..=0xff => out.extend_from_slice(&[0x18, v as u8]),
        0x100..=0xffff => {
            out.push(0x19);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0x1a);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0x1b);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenates CBOR pieces written as hex-free byte lists.
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn text(s: &str) -> Vec<u8> {
        let mut out = vec![0x60 | s.len() as u8];
        out.extend_from_slice(s.as_bytes());
        out
    }

    #[test]
    fn error_and_info_frames() {
        // {"op": -1} {"error": "FutureCursor"}
        let frame = cat(&[
            &[0xa1],
            &text("op"),
            &[0x20],
            &[0xa1],
            &text("error"),
            &text("FutureCursor"),
        ]);
        assert_eq!(
            decode(&frame),
            Ok(Frame::Error(ErrorFrame {
                error: "FutureCursor",
                message: None
            }))
        );
        // {"t": "#info", "op": 1} {"name": "OutdatedCursor", "message": "old"}
        let frame = cat(&[
            &[0xa2],
            &text("t"),
            &text("#info"),
            &text("op"),
            &[0x01],
            &[0xa2],
            &text("name"),
            &text("OutdatedCursor"),
            &text("message"),
            &text("old"),
        ]);
        let decoded = decode(&frame).expect("valid");
        assert_eq!(decoded.seq(), None);
        assert_eq!(
            decoded,
            Frame::Info(Info {
                name: "OutdatedCursor",
                message: Some("old")
            })
        );
    }

    #[test]
    fn unknown_type_and_missing_fields() {
        let header = cat(&[&[0xa2], &text("t"), &text("#labels"), &text("op"), &[0x01]]);
        let frame = cat(&[&header, &[0xa1], &text("x"), &[0x80]]);
        assert_eq!(decode(&frame), Ok(Frame::Unknown { t: "#labels" }));

        let header = cat(&[
            &[0xa2],
            &text("t"),
            &text("#identity"),
            &text("op"),
            &[0x01],
        ]);
        let frame = cat(&[
            &header,
            &[0xa2],
            &text("did"),
            &text("did:plc:x"),
            &text("seq"),
            &[0x05],
        ]);
        assert_eq!(
            decode(&frame),
            Err(FrameError::MissingField {
                message: "#identity",
                field: "time"
            })
        );
    }
}
