//! Recorded firehose frames: the file format, a recorder, and a replay server that serves
//! them as a real `com.atproto.sync.subscribeRepos` WebSocket.
//!
//! - **File format** (the firehose corpus's `frames.bin.zst`): one zstd stream of repeated
//!   `[u32 little-endian length][frame bytes]`, each frame one WebSocket binary message.
//!   [`FrameFile::read`] and [`FrameReader`] read it (streaming, with a bounded frame
//!   length); [`FrameWriter`] writes it.
//! - **[`record`]** follows any live `subscribeRepos` URL with the
//!   [`FirehoseClient`] and writes what it delivers.
//! - **[`run`]** serves frames over WebSocket on a [`TcpListener`], with `?cursor=N`,
//!   an optional rate, looping, and [`Fault`] injection so client and verifier tests can
//!   exercise real sockets. [`ReplayServer`] runs it in the background for tests.
//!
//! Cursor semantics follow the reference PDS: a connection with `?cursor=N` gets the frames
//! after the last one with `seq <= N`; a cursor above the last `seq` gets a `FutureCursor`
//! error frame and a close; a cursor below the first `seq - 1` (other than 0) gets
//! `#info OutdatedCursor` before the frames. Without a cursor the whole file is served
//! (the replay has no "live" edge).
//!
//! Looping (`looping: true`) starts again at the first frame after the last one, on every
//! connection, forever. Nothing is rewritten, so `seq` values repeat on every pass: a
//! deduplicating client such as [`FirehoseClient`] only
//! delivers the first pass. Looping is for load tests and for consumers that key on
//! content, not `seq`.

use std::fs::File;
use std::future::Future;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{Instrument, debug, info, info_span, warn};

use super::client::{
    ClientConfig, ClientError, ClientEvent, FirehoseClient, MAX_FRAME_SIZE, SUBSCRIBE_REPOS_PATH,
    inspect,
};

/// zstd level used when recording: fast, and within a few percent of higher levels on
/// CBOR frames.
const ZSTD_LEVEL: i32 = 3;

/// The longest HTTP request head the replay server reads before giving up.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long a client may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish after shutdown before they are aborted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

/// Why a frame file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameFileError {
    /// Opening, reading, decompressing or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A length prefix above the limit (corrupt file, or not a frame file).
    #[error("frame {index} is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// The frame's position in the file, from 0.
        index: u64,
        /// The declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The file ends inside a length prefix or a frame.
    #[error("the file ends inside frame {index}")]
    Truncated {
        /// The frame's position in the file, from 0.
        index: u64,
    },
}

/// Reading whole frame files; see [`FrameReader`] to stream one.
#[derive(Debug, Clone, Copy)]
pub struct FrameFile;

impl FrameFile {
    /// Reads every frame of a `frames.bin.zst` file, each at most [`MAX_FRAME_SIZE`] bytes.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<Bytes>, FrameFileError> {
        FrameFile::open(path)?.collect()
    }

    /// Opens a frame file for streaming, each frame at most [`MAX_FRAME_SIZE`] bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<FrameReader<File>, FrameFileError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| FrameFileError::Io {
            path: path.to_owned(),
            source,
        })?;
        FrameReader::new(file, path, MAX_FRAME_SIZE)
    }

    /// Writes `frames` to `path` (see [`FrameWriter::create`]).
    pub fn write(path: impl AsRef<Path>, frames: &[Bytes]) -> Result<(), FrameFileError> {
        let mut writer = FrameWriter::create(path)?;
        for frame in frames {
            writer.append(frame)?;
        }
        writer.finish().map(|_| ())
    }
}

/// A streaming reader of a frame file: an iterator of frames.
///
/// It stops after the first error.
pub struct FrameReader<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<R>>,
    path: PathBuf,
    max_len: usize,
    index: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("path", &self.path)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<R: Read> FrameReader<R> {
    /// Reads the zstd-compressed frames from `reader`, rejecting any frame longer than
    /// `max_len`. `path` only names the source in errors.
    pub fn new(
        reader: R,
        path: impl Into<PathBuf>,
        max_len: usize,
    ) -> Result<FrameReader<R>, FrameFileError> {
        let path = path.into();
        let decoder =
            zstd::stream::read::Decoder::new(reader).map_err(|source| FrameFileError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(FrameReader {
            decoder,
            path,
            max_len,
            index: 0,
            done: false,
        })
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, FrameFileError> {
        let mut prefix = [0u8; 4];
        let mut filled = 0;
        while filled < prefix.len() {
            match self.decoder.read(&mut prefix[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => return Err(FrameFileError::Truncated { index: self.index }),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io(source)),
            }
        }
        let len = u32::from_le_bytes(prefix);
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= self.max_len)
            .ok_or(FrameFileError::TooLarge {
                index: self.index,
                len: u64::from(len),
                max: self.max_len,
            })?;
        let mut frame = vec![0u8; len];
        self.decoder.read_exact(&mut frame).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                FrameFileError::Truncated { index: self.index }
            } else {
                self.io(e)
            }
        })?;
        self.index += 1;
        Ok(Some(Bytes::from(frame)))
    }

    fn io(&self, source: io::Error) -> FrameFileError {
        // zstd reports a stream cut short as UnexpectedEof.
        if source.kind() == io::ErrorKind::UnexpectedEof {
            return FrameFileError::Truncated { index: self.index };
        }
        FrameFileError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl<R: Read> Iterator for FrameReader<R> {
    type Item = Result<Bytes, FrameFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_frame().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Writes a frame file.
///
/// Frames go to `<path>.part`, which [`finish`](Self::finish) completes and renames to
/// `path`, so an interrupted recording never leaves a truncated file under the final name.
pub struct FrameWriter {
    encoder: zstd::stream::write::Encoder<'static, BufWriter<File>>,
    path: PathBuf,
    part: PathBuf,
    frames: u64,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("path", &self.path)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl FrameWriter {
    /// Starts writing to `<path>.part`, replacing any previous one.
    pub fn create(path: impl AsRef<Path>) -> Result<FrameWriter, FrameFileError> {
        let path = path.as_ref().to_owned();
        let mut part = path.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let io = |source| FrameFileError::Io {
            path: part.clone(),
            source,
        };
        let file = File::create(&part).map_err(io)?;
        let mut encoder =
            zstd::stream::write::Encoder::new(BufWriter::new(file), ZSTD_LEVEL).map_err(io)?;
        encoder.include_checksum(true).map_err(io)?;
        Ok(FrameWriter {
            encoder,
            path,
            part,
            frames: 0,
        })
    }

    /// Appends one frame.
    pub fn append(&mut self, frame: &[u8]) -> Result<(), FrameFileError> {
        let len = u32::try_from(frame.len()).map_err(|_| FrameFileError::TooLarge {
            index: self.frames,
            len: frame.len() as u64,
            max: u32::MAX as usize,
        })?;
        let result = self
            .encoder
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.encoder.write_all(frame));
        result.map_err(|source| FrameFileError::Io {
            path: self.part.clone(),
            source,
        })?;
        self.frames += 1;
        Ok(())
    }

    /// How many frames were appended.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Ends the zstd stream, flushes and syncs the file, and renames it to its final path.
    /// Returns the number of frames written.
    pub fn finish(self) -> Result<u64, FrameFileError> {
        let io = |source| FrameFileError::Io {
            path: self.part.clone(),
            source,
        };
        let writer = self.encoder.finish().map_err(io)?;
        let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&self.part, &self.path).map_err(|source| FrameFileError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.frames)
    }
}

// ---------------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------------

/// What [`record`] follows and where it writes.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// The firehose to follow (URL, starting cursor, reconnect policy).
    pub client: ClientConfig,
    /// The frame file to write.
    pub out: PathBuf,
    /// Stop after this many frames (`None`: until shutdown).
    pub count: Option<u64>,
}

/// How far a recording got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordProgress {
    /// Frames written so far.
    pub frames: u64,
    /// The `seq` of the last frame written that had one.
    pub last_seq: Option<i64>,
}

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The client configuration is invalid.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The output file could not be written.
    #[error(transparent)]
    File(#[from] FrameFileError),
}

/// Follows `config.client` and writes every frame the client delivers (deduplicated, in
/// `seq` order, byte for byte) to `config.out`, until `config.count` frames are written or
/// `shutdown` completes; the file is then finished either way. `on_frame` sees the
/// progress after each frame. The client reconnects on its own, so a server that is down
/// only delays the recording.
pub async fn record(
    config: RecordConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut on_frame: impl FnMut(RecordProgress),
) -> Result<RecordProgress, RecordError> {
    let client = FirehoseClient::new(config.client)?;
    let mut writer = FrameWriter::create(&config.out)?;
    let mut progress = RecordProgress::default();
    if config.count != Some(0) {
        let mut events = client.run(shutdown);
        while let Some(event) = events.recv().await {
            if let ClientEvent::Frame { bytes, seq } = event {
                writer.append(&bytes)?;
                progress.frames += 1;
                progress.last_seq = seq.or(progress.last_seq);
                on_frame(progress);
                if config.count.is_some_and(|count| progress.frames >= count) {
                    break;
                }
            }
        }
        // Dropping `events` stops the client.
    }
    writer.finish()?;
    Ok(progress)
}

// ---------------------------------------------------------------------------------------------
// Replay server
// ---------------------------------------------------------------------------------------------

/// A fault to inject at one frame, for tests.
///
/// Each fault fires once per server, on the first connection that reaches frame `at`
/// (its index in [`ReplayConfig::frames`], from 0), just before that frame would be sent.
/// Faults at the same index apply in the order given. Because a fault does not repeat, a
/// client that reconnects with its cursor gets the frame intact the next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The frame index.
    pub at: usize,
    /// What to do.
    pub kind: FaultKind,
}

/// What a [`Fault`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Send the frame with the byte at `offset` inverted (no-op past the end).
    FlipByte {
        /// Byte offset in the frame.
        offset: usize,
    },
    /// Send only the first `len` bytes of the frame.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
    /// Do not send the frame (a gap).
    Drop,
    /// Freeze the connection for this long before the frame: nothing is sent, read or
    /// answered (no pongs).
    Stall(Duration),
    /// Send a WebSocket close instead of the frame and end the connection.
    Close,
    /// End the connection abruptly (TCP close, no WebSocket close) instead of the frame.
    Abort,
    /// Send these bytes as an extra binary message before the frame (for example
    /// [`error_frame`]).
    Inject(Bytes),
}

/// What the replay server serves.
#[derive(Debug, Clone, Default)]
pub struct ReplayConfig {
    /// The frames, in order (for example from [`FrameFile::read`]).
    pub frames: Vec<Bytes>,
    /// Frames per second per connection (`None`: as fast as the client reads).
    pub rate: Option<f64>,
    /// Start over after the last frame, forever (see the module docs on `seq`).
    pub looping: bool,
    /// Faults to inject, for tests.
    pub faults: Vec<Fault>,
}

impl ReplayConfig {
    /// Serves `frames` once, unthrottled, without faults.
    pub fn new(frames: Vec<Bytes>) -> ReplayConfig {
        ReplayConfig {
            frames,
            ..ReplayConfig::default()
        }
    }

    /// Checks the values are usable.
    pub fn check(&self) -> Result<(), ReplayError> {
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(ReplayError::InvalidConfig {
                field: "rate",
                reason: "must be a positive number of frames per second",
            });
        }
        Ok(())
    }
}

/// Why the replay server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A configuration value is out of range.
    #[error("invalid replay configuration: {field} {reason}")]
    InvalidConfig {
        /// The [`ReplayConfig`] field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The listener's address could not be read.
    #[error("replay listener: {0}")]
    Listener(#[source] io::Error),
    /// The server task panicked or was cancelled.
    #[error("replay server task failed: {0}")]
    Task(String),
}

/// The error frame (`{op:-1}` ‖ `{error, message}`) a server sends before closing.
pub fn error_frame(error: &str, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(32 + error.len() + message.len());
    // Header {op: -1}.
    out.extend_from_slice(&[0xa1, 0x62, b'o', b'p', 0x20]);
    // Body {error, message}: keys in DAG-CBOR order (shorter first).
    out.push(0xa2);
    cbor_text(&mut out, "error");
    cbor_text(&mut out, error);
    cbor_text(&mut out, "message");
    cbor_text(&mut out, message);
    out.into()
}

/// An `#info` frame (`{t:"#info", op:1}` ‖ `{name, message}`).
pub fn info_frame(name: &str, message: &str) -> Bytes {
    let mut out = Vec::with_capacity(32 + name.len() + message.len());
    // Header {t: "#info", op: 1}: `t` sorts before `op` (shorter first).
    out.push(0xa2);
    cbor_text(&mut out, "t");
    cbor_text(&mut out, "#info");
    cbor_text(&mut out, "op");
    out.push(0x01);
    out.push(0xa2);
    cbor_text(&mut out, "name");
    cbor_text(&mut out, name);
    cbor_text(&mut out, "message");
    cbor_text(&mut out, message);
    out.into()
}

/// An `#account` frame (`{t:"#account", op:1}` ‖ `{did, seq, time, active, status?}`), as a
/// relay emits when it takes an account down itself. `#account` frames are not signed, so a
/// relay may originate them.
pub fn account_frame(seq: u64, did: &str, time: &str, active: bool, status: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(64 + did.len());
    out.push(0xa2);
    cbor_text(&mut out, "t");
    cbor_text(&mut out, "#account");
    cbor_text(&mut out, "op");
    out.push(0x01);
    // Body keys in DAG-CBOR order: did, seq, time, active, status.
    out.push(if status.is_some() { 0xa5 } else { 0xa4 });
    cbor_text(&mut out, "did");
    cbor_text(&mut out, did);
    cbor_text(&mut out, "seq");
    cbor_uint(&mut out, seq);
    cbor_text(&mut out, "time");
    cbor_text(&mut out, time);
    cbor_text(&mut out, "active");
    out.push(if active { 0xf5 } else { 0xf4 });
    if let Some(status) = status {
        cbor_text(&mut out, "status");
        cbor_text(&mut out, status);
    }
    out.into()
}

/// Appends a CBOR unsigned integer in shortest form.
fn cbor_uint(out: &mut Vec<u8>, n: u64) {
    if n < 24 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends a CBOR text string with a shortest-form length header.
fn cbor_text(out: &mut Vec<u8>, text: &str) {
    const TEXT: u8 = 0x60;
    let len = text.len();
    if len < 24 {
        out.push(TEXT | len as u8);
    } else if let Ok(len) = u8::try_from(len) {
        out.extend_from_slice(&[TEXT | 24, len]);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(TEXT | 25);
        out.extend_from_slice(&len.to_be_bytes());
    } else if let Ok(len) = u32::try_from(len) {
        out.push(TEXT | 26);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(TEXT | 27);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(text.as_bytes());
}

/// The `ws://` URL of the firehose served on `addr`.
pub fn subscribe_repos_url(addr: SocketAddr) -> String {
    format!("ws://{addr}{SUBSCRIBE_REPOS_PATH}")
}

/// State shared by all connections of one server.
#[derive(Debug)]
struct Shared {
    frames: Vec<Bytes>,
    /// Each frame's `seq` (`None` for frames without one or that do not decode).
    seqs: Vec<Option<i64>>,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    rate: Option<f64>,
    looping: bool,
    /// Faults not fired yet.
    faults: Mutex<Vec<Fault>>,
}

impl Shared {
    /// Removes and returns the faults for frame `index`.
    fn take_faults(&self, index: usize) -> Vec<FaultKind> {
        let Ok(mut faults) = self.faults.lock() else {
            return Vec::new();
        };
        if faults.is_empty() {
            return Vec::new();
        }
        let mut fired = Vec::new();
        faults.retain(|fault| {
            if fault.at == index {
                fired.push(fault.kind.clone());
                false
            } else {
                true
            }
        });
        fired
    }
}

/// Serves `config.frames` on `listener` until `shutdown` completes, then closes every
/// connection (waiting at most two seconds for them).
///
/// Routes: `GET /xrpc/com.atproto.sync.subscribeRepos` (WebSocket, `?cursor=N`) and
/// `GET /xrpc/_health`. Errors accepting one connection are logged and do not stop it.
pub async fn run(
    config: ReplayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ReplayError> {
    config.check()?;
    let seqs: Vec<Option<i64>> = config
        .frames
        .iter()
        .map(|frame| inspect(frame).ok().and_then(|facts| facts.seq))
        .collect();
    let shared = Arc::new(Shared {
        first_seq: seqs.iter().flatten().copied().next(),
        last_seq: seqs.iter().flatten().copied().max(),
        seqs,
        frames: config.frames,
        rate: config.rate,
        looping: config.looping,
        faults: Mutex::new(config.faults),
    });
    if let Ok(addr) = listener.local_addr() {
        info!(url = %subscribe_repos_url(addr), frames = shared.frames.len(), "replay server listening");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = info_span!("replay_connection", %peer);
                    let task = serve(stream, Arc::clone(&shared), stop_rx.clone());
                    connections.spawn(task.instrument(span));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    warn!(error = %e, "connection task failed");
                }
            }
        }
    }
    debug!(open = connections.len(), "shutting down");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

/// A replay server running in the background, for tests; stops when dropped.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ReplayError>>,
}

impl ReplayServer {
    /// Spawns [`run`] on `listener` on the current Tokio runtime.
    pub fn spawn(config: ReplayConfig, listener: TcpListener) -> Result<ReplayServer, ReplayError> {
        config.check()?;
        let addr = listener.local_addr().map_err(ReplayError::Listener)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listener, async move {
            let _ = stopped.await;
        }));
        Ok(ReplayServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `ws://…/xrpc/com.atproto.sync.subscribeRepos` URL it serves.
    pub fn url(&self) -> String {
        subscribe_repos_url(self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<(), ReplayError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(ReplayError::Task(e.to_string())),
        }
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A parsed HTTP request head.
#[derive(Debug)]
struct RequestHead {
    method: String,
    path: String,
    query: Option<String>,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Reads the request head; returns it and any bytes read past it.
async fn read_head(stream: &mut TcpStream) -> Option<(RequestHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return None;
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?;
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = buf[end + 4..].to_vec();
    Some((
        RequestHead {
            method,
            path,
            query,
            headers,
        },
        rest,
    ))
}

/// Writes a small JSON response and closes.
async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An XRPC error body.
fn xrpc_error(error: &str, message: &str) -> String {
    serde_json::json!({ "error": error, "message": message }).to_string()
}

/// Serves one TCP connection: routes the request, then streams frames.
async fn serve(mut stream: TcpStream, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => {
            let body = xrpc_error("InvalidRequest", "malformed or incomplete HTTP request");
            respond(&mut stream, "400 Bad Request", &body).await;
            return;
        }
    };
    let (head, rest) = head;
    debug!(method = %head.method, path = %head.path, "request");
    if head.method != "GET" {
        let body = xrpc_error("InvalidRequest", "only GET is served");
        respond(&mut stream, "405 Method Not Allowed", &body).await;
        return;
    }
    match head.path.as_str() {
        "/xrpc/_health" => {
            let body = serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }).to_string();
            respond(&mut stream, "200 OK", &body).await;
        }
        SUBSCRIBE_REPOS_PATH => subscribe(stream, head, rest, shared, stop).await,
        path if path.starts_with("/xrpc/") => {
            let body = xrpc_error("MethodNotImplemented", "method not implemented");
            respond(&mut stream, "501 Not Implemented", &body).await;
        }
        _ => {
            let body = xrpc_error("NotFound", "not found");
            respond(&mut stream, "404 Not Found", &body).await;
        }
    }
}

/// Parses `cursor` from the query string: `Ok(None)` when absent.
fn parse_cursor(query: Option<&str>) -> Result<Option<i64>, String> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut cursor = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "cursor" {
            let value = value
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| format!("cursor must be a non-negative integer, not {value:?}"))?;
            cursor = Some(value);
        }
    }
    Ok(cursor)
}

/// Upgrades to a WebSocket and streams frames.
async fn subscribe(
    mut stream: TcpStream,
    head: RequestHead,
    rest: Vec<u8>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let cursor = match parse_cursor(head.query.as_deref()) {
        Ok(cursor) => cursor,
        Err(message) => {
            let body = xrpc_error("InvalidRequest", &message);
            respond(&mut stream, "400 Bad Request", &body).await;
            return;
        }
    };
    let key = head.header("sec-websocket-key");
    let upgrade = head.header_has_token("upgrade", "websocket")
        && head.header_has_token("connection", "upgrade")
        && head.header("sec-websocket-version") == Some("13");
    let Some(key) = key.filter(|_| upgrade) else {
        let body = xrpc_error("InvalidRequest", "subscribeRepos needs a WebSocket upgrade");
        respond(&mut stream, "400 Bad Request", &body).await;
        return;
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    // Clients send only pings and a close; keep their messages small.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    let socket =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config)).await;
    info!(?cursor, "subscriber connected");
    stream_frames(socket, cursor, &shared, stop).await;
    debug!("subscriber gone");
}

/// Paces sends: a token bucket of one token refilled at `rate` per second (the generic cell
/// rate algorithm), so the long-run rate holds even when a send runs late.
/// How far behind schedule the pacer lets a sender run before it stops catching up.
const PACER_BURST: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct Pacer {
    interval: Option<Duration>,
    /// When the next frame may go.
    next: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Instant::now(),
        }
    }

    fn ready_at(&self) -> Instant {
        self.next
    }

    fn consume(&mut self) {
        if let Some(interval) = self.interval {
            // A late sender may catch up by at most `PACER_BURST` worth of frames sent back
            // to back: the timer ticks in milliseconds, so rates above ~1000 frames/s are
            // only reachable in bursts.
            self.next = self.next.max(Instant::now() - PACER_BURST) + interval;
        }
    }
}

/// Sends frames from the cursor on, applying faults, until the client leaves, the frames
/// run out (then waits for the client to leave), or shutdown.
async fn stream_frames(
    mut socket: WebSocketStream<TcpStream>,
    cursor: Option<i64>,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
) {
    let mut index = 0;
    if let Some(cursor) = cursor {
        if shared.last_seq.is_some_and(|last| cursor > last) {
            let frame = error_frame("FutureCursor", "Cursor in the future.");
            let _ = socket.send(Message::Binary(frame)).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
            return;
        }
        if cursor > 0 && shared.first_seq.is_some_and(|first| cursor < first - 1) {
            let frame = info_frame(
                "OutdatedCursor",
                "Requested cursor exceeded limit. Possibly missing events",
            );
            if socket.send(Message::Binary(frame)).await.is_err() {
                return;
            }
        }
        index = shared
            .seqs
            .iter()
            .rposition(|seq| seq.is_some_and(|seq| seq <= cursor))
            .map_or(0, |i| i + 1);
    }
    let mut pacer = Pacer::new(shared.rate);
    let total = shared.frames.len();
    loop {
        let more = index < total;
        let ready = pacer.ready_at();
        tokio::select! {
            biased;
            () = stopped(&mut stop) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return;
            }
            incoming = socket.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pings are answered by tungstenite as it reads.
                Some(Ok(_)) => continue,
            },
            // A deadline already passed goes at once (a timer would wait for its next tick).
            () = async {
                if ready > Instant::now() {
                    tokio::time::sleep_until(ready).await;
                }
            }, if more => {}
        }
        pacer.consume();
        let mut frame = Some(shared.frames[index].clone());
        for fault in shared.take_faults(index) {
            debug!(index, ?fault, "injecting fault");
            match fault {
                FaultKind::FlipByte { offset } => {
                    if let Some(bytes) = frame.take() {
                        let mut bytes = bytes.to_vec();
                        if let Some(b) = bytes.get_mut(offset) {
                            *b = !*b;
                        }
                        frame = Some(bytes.into());
                    }
                }
                FaultKind::Truncate { len } => {
                    frame = frame.map(|bytes| bytes.slice(..len.min(bytes.len())));
                }
                FaultKind::Drop => frame = None,
                FaultKind::Stall(duration) => {
                    tokio::select! {
                        () = stopped(&mut stop) => return,
                        () = tokio::time::sleep(duration) => {}
                    }
                }
                FaultKind::Close => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return;
                }
                FaultKind::Abort => return,
                FaultKind::Inject(bytes) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if let Some(frame) = frame
            && socket.send(Message::Binary(frame)).await.is_err()
        {
            return;
        }
        index += 1;
        if index == total && shared.looping {
            index = 0;
        }
    }
}

/// Completes when shutdown was requested; never if the signal can no longer come.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::client::FrameKind;

    #[test]
    fn error_and_info_frames_decode() {
        let facts = inspect(&error_frame("FutureCursor", "ahead")).unwrap();
        assert_eq!(
            facts.kind,
            FrameKind::Error {
                error: "FutureCursor".into(),
                message: Some("ahead".into())
            }
        );
        let long = "x".repeat(300);
        let facts = inspect(&info_frame("OutdatedCursor", &long)).unwrap();
        assert_eq!(
            facts.kind,
            FrameKind::Info {
                name: "OutdatedCursor".into(),
                message: Some(long)
            }
        );
    }

    #[test]
    fn cursor_query_parsing() {
        assert_eq!(parse_cursor(None), Ok(None));
        assert_eq!(parse_cursor(Some("cursor=12")), Ok(Some(12)));
        assert_eq!(parse_cursor(Some("a=b&cursor=0")), Ok(Some(0)));
        assert!(parse_cursor(Some("cursor=-3")).is_err());
        assert!(parse_cursor(Some("cursor=x")).is_err());
    }

    #[test]
    fn frame_file_round_trip_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin.zst");
        let frames = vec![
            Bytes::from_static(b"one"),
            Bytes::new(),
            Bytes::from(vec![7; 5000]),
        ];
        FrameFile::write(&path, &frames).unwrap();
        assert!(!dir.path().join("f.bin.zst.part").exists());
        assert_eq!(FrameFile::read(&path).unwrap(), frames);

        let file = File::open(&path).unwrap();
        let mut reader = FrameReader::new(file, &path, 100).unwrap();
        assert!(reader.next().unwrap().is_ok());
        assert!(reader.next().unwrap().is_ok());
        assert!(matches!(
            reader.next(),
            Some(Err(FrameFileError::TooLarge {
                index: 2,
                len: 5000,
                ..
            }))
        ));
        assert!(reader.next().is_none());

        // A length prefix promising more than the file holds.
        let mut raw = Vec::new();
        raw.extend_from_slice(&10u32.to_le_bytes());
        raw.extend_from_slice(b"short");
        let compressed = zstd::encode_all(&raw[..], 3).unwrap();
        let reader = FrameReader::new(&compressed[..], "mem", 100).unwrap();
        let got: Result<Vec<_>, _> = reader.collect();
        assert!(matches!(got, Err(FrameFileError::Truncated { index: 0 })));
    }
}
