//! Label sync: follows any number of labelers' `com.atproto.label.subscribeLabels`
//! streams into a [`LabelSink`] (the AppView's index store, the relay's takedown state).
//!
//! One task per source ([`LabelSource`]). Each connection:
//! 1. resolves the labeler's DID document (through the shared, SSRF-guarded resolver) for
//!    its `#atproto_label` key and, unless the source names a URL, its `#atproto_labeler`
//!    service endpoint;
//! 2. connects to `subscribeLabels?cursor=N`, `N` the source's stored cursor (0 the first
//!    time: the labeler's whole history);
//! 3. for each `#labels` frame, checks every label (fields valid, `src` the labeler's DID,
//!    signature by its `#atproto_label` key, re-resolving the document once on a failure in
//!    case the key rotated) and stores the labels that pass together with the frame's
//!    `seq` as the new cursor, in one transaction ([`LabelSink::apply`]). Labels that
//!    fail are counted per source and reason (`invalid`, `wrong_src`, `bad_signature`) and
//!    never stored; the frame's cursor still moves past them.
//!
//! Error frames (`op: -1`), malformed frames, a closed or idle socket, a resolution or
//! store failure: logged, and the source reconnects after an exponential backoff, from its
//! stored cursor. `FutureCursor` (the labeler's sequence restarted below our cursor) makes
//! the next connection start again from 0. Frames at or below the cursor are skipped, so a
//! labeler that resends `seq == cursor` applies nothing twice.
//!
//! Negations and expiry are not special here: a negation is stored as the current state of
//! its (`src`, `uri`, `val`), which neutralises the label, and `exp` is compared with the
//! clock when queries read labels.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::cbor::{MapKeys, Reader};
use crate::sync::frame::{self, Frame};
use crate::sync::identity::Resolver;
use crate::sync::keys::PublicKey;
use crate::sync::ssrf::GuardedClient;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use super::LabelSink;
use super::label::{Label, LabelError};

/// The XRPC path of the label stream.
pub const SUBSCRIBE_LABELS_PATH: &str = "/xrpc/com.atproto.label.subscribeLabels";

/// The largest frame accepted (the firehose's limit; label frames are far smaller).
const MAX_FRAME_BYTES: usize = 5 * 1024 * 1024;

/// A labeler the AppView follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSource {
    /// The labeler's DID: labels must have it as `src`, and its DID document names the
    /// `#atproto_label` key they are checked against.
    pub did: String,
    /// The labeler's base URL (`https://host`); `None` takes the DID document's
    /// `#atproto_labeler` service endpoint.
    pub url: Option<String>,
}

/// How label sync runs.
#[derive(Debug, Clone)]
pub struct LabelSyncConfig {
    /// The labelers to follow (none: label sync is off).
    pub sources: Vec<LabelSource>,
    /// The PLC directory for resolving `did:plc` labelers.
    pub plc_url: String,
    /// Allow loopback and private addresses, and `did:web` with a port over plain http
    /// (the sandbox).
    pub allow_loopback: bool,
    /// The first reconnect delay; it doubles per failed attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// How long connecting (TCP and WebSocket handshake) may take.
    pub connect_timeout: Duration,
    /// Reconnect when nothing (frame or ping) arrived for this long; labelers ping idle
    /// streams (Atelier's every 30 s).
    pub idle_timeout: Duration,
    /// After a signature failure, re-resolve the labeler's key at most this often (a
    /// stream of forged labels costs one DID fetch per interval).
    pub key_refresh_interval: Duration,
}

impl Default for LabelSyncConfig {
    fn default() -> LabelSyncConfig {
        LabelSyncConfig {
            sources: Vec::new(),
            plc_url: "https://plc.directory".to_owned(),
            allow_loopback: false,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            key_refresh_interval: Duration::from_secs(60),
        }
    }
}

/// Where one source stands, for `_health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The stored cursor (the last `seq` applied).
    pub cursor: Option<i64>,
    /// Whether a stream is open now.
    pub connected: bool,
    /// Why the last connection ended, if it failed.
    pub last_error: Option<String>,
}

/// Label sync's counters, for metrics, `_health` and tests.
#[derive(Debug, Default)]
pub struct LabelStats {
    /// Labels stored (applied, negations included).
    pub applied: AtomicU64,
    /// Label commits; the response cache's second generation counter (it moves whenever
    /// the labels queries apply may have changed).
    pub generation: AtomicU64,
    rejected: Mutex<BTreeMap<(String, String), u64>>,
    sources: Mutex<BTreeMap<String, SourceStatus>>,
}

impl LabelStats {
    /// Labels refused, by (source DID, reason): `invalid`, `wrong_src`, `bad_signature`.
    pub fn rejected(&self) -> BTreeMap<(String, String), u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Each source's status, by DID.
    pub fn sources(&self) -> BTreeMap<String, SourceStatus> {
        self.sources.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn reject(&self, source: &str, reason: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry((source.to_owned(), reason.to_owned())).or_default() += 1;
        }
    }

    fn update(&self, source: &str, f: impl FnOnce(&mut SourceStatus)) {
        if let Ok(mut m) = self.sources.lock() {
            f(m.entry(source.to_owned()).or_default());
        }
    }
}

/// Why one connection to a labeler ended.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("cannot resolve the labeler's DID: {0}")]
    Resolve(String),
    #[error("the labeler's DID document has no #atproto_label key")]
    NoLabelKey,
    #[error("the labeler's #atproto_label key is unusable: {0}")]
    BadKey(String),
    #[error("no labeler URL configured and no #atproto_labeler service in the DID document")]
    NoEndpoint,
    #[error("labeler URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("connect: {0}")]
    Connect(String),
    #[error("socket: {0}")]
    Socket(String),
    #[error("malformed frame: {0}")]
    Frame(String),
    #[error("the labeler sent error {error}: {message}")]
    Server { error: String, message: String },
    #[error("the labeler closed the stream")]
    Closed,
    #[error("nothing received for {0:?}")]
    Idle(Duration),
    #[error("storing labels: {0}")]
    Store(String),
}

/// What every source task shares.
struct Ctx<K> {
    config: LabelSyncConfig,
    sink: Arc<K>,
    stats: Arc<LabelStats>,
    resolver: Resolver,
    guard: GuardedClient,
}

/// Follows every configured source until `stop` becomes true. Tells the sink which
/// sources are configured first ([`LabelSink::set_sources`]).
///
/// # Errors
/// If the sink cannot record the configured sources; after that, failures are per
/// connection: logged, counted in [`SourceStatus::last_error`] and retried.
pub async fn run<K: LabelSink>(
    config: LabelSyncConfig,
    sink: Arc<K>,
    stats: Arc<LabelStats>,
    resolver: Resolver,
    guard: GuardedClient,
    stop: watch::Receiver<bool>,
) -> Result<(), K::Error> {
    let dids: Vec<String> = config.sources.iter().map(|s| s.did.clone()).collect();
    sink.set_sources(&dids).await?;
    for did in &dids {
        let cursor = sink.cursor(did).await?;
        stats.update(did, |s| s.cursor = cursor);
    }
    // The set of sources that apply changed: cached answers may be stale.
    stats.generation.fetch_add(1, Ordering::Release);
    let ctx = Arc::new(Ctx {
        config,
        sink,
        stats,
        resolver,
        guard,
    });
    let mut tasks = JoinSet::new();
    for source in ctx.config.sources.clone() {
        let (ctx, stop) = (Arc::clone(&ctx), stop.clone());
        tasks.spawn(async move { follow(&ctx, &source, stop).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once `stop` is true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The backoff before attempt `attempt` (0-based): `base * 2^attempt` capped at `max`, less
/// up to a quarter at random so sources that failed together do not retry in step.
fn backoff(config: &LabelSyncConfig, attempt: u32) -> Duration {
    let full = config
        .backoff_base
        .checked_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .unwrap_or(config.backoff_max)
        .min(config.backoff_max);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    full - full.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// One source, connection after connection, until `stop`.
async fn follow<K: LabelSink>(ctx: &Ctx<K>, source: &LabelSource, mut stop: watch::Receiver<bool>) {
    let mut state = SourceState::default();
    let mut attempt = 0;
    info!(labeler = %source.did, "label sync following");
    loop {
        if *stop.borrow() {
            return;
        }
        let result = tokio::select! {
            result = session(ctx, source, &mut state) => result,
            () = stopped(&mut stop) => return,
        };
        ctx.stats.update(&source.did, |s| s.connected = false);
        let error = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        if let SyncError::Server { error, .. } = &error
            && error == "FutureCursor"
        {
            // The labeler's sequence is behind ours (its store was reset): start over.
            state.restart = true;
        }
        warn!(labeler = %source.did, error = %error, "label stream ended; reconnecting");
        ctx.stats
            .update(&source.did, |s| s.last_error = Some(error.to_string()));
        if state.delivered {
            attempt = 0;
        }
        state.delivered = false;
        let delay = backoff(&ctx.config, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// What a source keeps between connections.
#[derive(Default)]
struct SourceState {
    /// The `#atproto_label` key last resolved.
    key: Option<PublicKey>,
    /// When the key was last re-resolved after a signature failure.
    refreshed: Option<tokio::time::Instant>,
    /// The next connection starts from 0 (after `FutureCursor`).
    restart: bool,
    /// This connection stored a frame (resets the backoff).
    delivered: bool,
}

/// The label key in `doc`.
fn label_key(doc: &crate::sync::identity::DidDocument) -> Result<PublicKey, SyncError> {
    let key_ref = doc.label_key().ok_or(SyncError::NoLabelKey)?;
    PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase)
        .map_err(|e| SyncError::BadKey(e.to_string()))
}

/// The `subscribeLabels` WebSocket URL for a labeler at `base` (http(s) or ws(s)).
fn stream_url(base: &str, cursor: i64) -> Result<url::Url, SyncError> {
    let bad = |reason: String| SyncError::Url {
        url: base.to_owned(),
        reason,
    };
    let mut url = url::Url::parse(base).map_err(|e| bad(e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(bad(format!("scheme {other:?} is not http(s) or ws(s)"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| bad("cannot set the scheme".to_owned()))?;
    let path = format!(
        "{}{SUBSCRIBE_LABELS_PATH}",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.set_query(Some(&format!("cursor={cursor}")));
    Ok(url)
}

/// The http(s) form of a stream URL, for the SSRF check.
fn http_form(url: &url::Url) -> String {
    let mut http = url.clone();
    let scheme = if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    let _ = http.set_scheme(scheme);
    http.to_string()
}

/// One connection: resolve, connect, apply frames until the stream ends.
async fn session<K: LabelSink>(
    ctx: &Ctx<K>,
    source: &LabelSource,
    state: &mut SourceState,
) -> Result<(), SyncError> {
    let doc = ctx
        .resolver
        .resolve_did(&source.did)
        .await
        .map_err(|e| SyncError::Resolve(e.to_string()))?;
    state.key = Some(label_key(&doc)?);
    let base = match &source.url {
        Some(url) => url.clone(),
        None => doc
            .labeler_endpoint()
            .ok_or(SyncError::NoEndpoint)?
            .to_owned(),
    };
    let stored = ctx
        .sink
        .cursor(&source.did)
        .await
        .map_err(|e| SyncError::Store(e.to_string()))?;
    let mut cursor = if state.restart {
        -1
    } else {
        stored.unwrap_or(-1)
    };
    let url = stream_url(&base, cursor.max(0))?;
    ctx.guard
        .check_url(&http_form(&url))
        .await
        .map_err(|e| SyncError::Connect(e.to_string()))?;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let (mut socket, _) = tokio::time::timeout(
        ctx.config.connect_timeout,
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true),
    )
    .await
    .map_err(|_| SyncError::Connect(format!("timed out after {:?}", ctx.config.connect_timeout)))?
    .map_err(|e| SyncError::Connect(e.to_string()))?;
    info!(labeler = %source.did, %url, "label stream connected");
    state.restart = false;
    ctx.stats.update(&source.did, |s| {
        s.connected = true;
        s.cursor = stored;
    });
    loop {
        let message = tokio::time::timeout(ctx.config.idle_timeout, socket.next())
            .await
            .map_err(|_| SyncError::Idle(ctx.config.idle_timeout))?;
        let bytes = match message {
            None | Some(Ok(Message::Close(_))) => return Err(SyncError::Closed),
            Some(Err(e)) => return Err(SyncError::Socket(e.to_string())),
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_))) => {
                // tungstenite queues the pong; flushing sends it now.
                let _ = socket.flush().await;
                continue;
            }
            Some(Ok(Message::Text(_))) => {
                ctx.stats.reject(&source.did, "invalid");
                return Err(SyncError::Frame("a text message".to_owned()));
            }
            Some(Ok(_)) => continue,
        };
        match decode(&bytes) {
            Err(reason) => {
                ctx.stats.reject(&source.did, "invalid");
                return Err(SyncError::Frame(reason));
            }
            Ok(Decoded::Error { error, message }) => {
                return Err(SyncError::Server { error, message });
            }
            Ok(Decoded::Info { name, message }) => {
                info!(labeler = %source.did, name, message, "labeler #info");
            }
            Ok(Decoded::Other(t)) => debug!(labeler = %source.did, t, "skipping a frame"),
            Ok(Decoded::Labels { seq, labels }) => {
                if seq <= cursor {
                    debug!(labeler = %source.did, seq, cursor, "skipping a frame already applied");
                    continue;
                }
                let accepted = check_labels(ctx, source, state, labels).await;
                let n = ctx
                    .sink
                    .apply(&source.did, &accepted, seq)
                    .await
                    .map_err(|e| SyncError::Store(e.to_string()))?;
                cursor = seq;
                state.delivered = true;
                ctx.stats.applied.fetch_add(n, Ordering::Relaxed);
                ctx.stats.generation.fetch_add(1, Ordering::Release);
                ctx.stats.update(&source.did, |s| s.cursor = Some(seq));
            }
        }
    }
}

/// The labels of a frame that pass every check; the others are counted and dropped.
async fn check_labels<K: LabelSink>(
    ctx: &Ctx<K>,
    source: &LabelSource,
    state: &mut SourceState,
    labels: Vec<Result<Label, LabelError>>,
) -> Vec<Label> {
    let mut accepted = Vec::with_capacity(labels.len());
    for label in labels {
        let label = match label {
            Ok(label) => label,
            Err(e) => {
                warn!(labeler = %source.did, error = %e, "label refused: invalid");
                ctx.stats.reject(&source.did, "invalid");
                continue;
            }
        };
        if label.src != source.did {
            warn!(labeler = %source.did, src = %label.src, uri = %label.uri, "label refused: src is not the labeler");
            ctx.stats.reject(&source.did, "wrong_src");
            continue;
        }
        let mut verified = state.key.as_ref().is_some_and(|k| label.verify(k).is_ok());
        if !verified && refresh_key(ctx, source, state).await {
            verified = state.key.as_ref().is_some_and(|k| label.verify(k).is_ok());
        }
        if !verified {
            warn!(labeler = %source.did, uri = %label.uri, val = %label.val, "label refused: bad signature");
            ctx.stats.reject(&source.did, "bad_signature");
            continue;
        }
        accepted.push(label);
    }
    accepted
}

/// Re-resolves the labeler's key after a signature failure (the key may have rotated), at
/// most once per [`LabelSyncConfig::key_refresh_interval`]; whether the key changed.
async fn refresh_key<K: LabelSink>(
    ctx: &Ctx<K>,
    source: &LabelSource,
    state: &mut SourceState,
) -> bool {
    let now = tokio::time::Instant::now();
    if state
        .refreshed
        .is_some_and(|at| now.saturating_duration_since(at) < ctx.config.key_refresh_interval)
    {
        return false;
    }
    state.refreshed = Some(now);
    ctx.resolver.invalidate(&source.did);
    let key = match ctx.resolver.resolve_did(&source.did).await {
        Ok(doc) => label_key(&doc),
        Err(e) => Err(SyncError::Resolve(e.to_string())),
    };
    match key {
        Ok(key) if Some(&key) != state.key.as_ref() => {
            info!(labeler = %source.did, "the labeler's #atproto_label key changed");
            state.key = Some(key);
            true
        }
        Ok(_) => false,
        Err(e) => {
            warn!(labeler = %source.did, error = %e, "cannot re-resolve the labeler's key");
            false
        }
    }
}

/// A decoded `subscribeLabels` frame.
#[derive(Debug)]
enum Decoded {
    /// `#labels`: the seq and each label, or why it is invalid.
    Labels {
        seq: i64,
        labels: Vec<Result<Label, LabelError>>,
    },
    /// `#info`.
    Info {
        name: String,
        message: Option<String>,
    },
    /// An error frame.
    Error { error: String, message: String },
    /// A message type this client does not know (skipped, as the protocol says).
    Other(String),
}

/// Decodes a frame: strict DAG-CBOR header and body. A label that does not parse is
/// reported as such; a body that does not parse fails the frame.
fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let (header, at) = frame::decode_header(bytes).map_err(|e| e.to_string())?;
    if header.op != 1 || header.t != Some("#labels") {
        return match frame::decode(bytes).map_err(|e| e.to_string())? {
            Frame::Error(e) => Ok(Decoded::Error {
                error: e.error.to_owned(),
                message: e.message.unwrap_or("").to_owned(),
            }),
            Frame::Info(i) => Ok(Decoded::Info {
                name: i.name.to_owned(),
                message: i.message.map(str::to_owned),
            }),
            other => Ok(Decoded::Other(other.kind().to_owned())),
        };
    }
    let body = bytes.get(at..).unwrap_or_default();
    let mut r = Reader::new(body);
    let n = r.map_len().map_err(|e| format!("#labels body: {e}"))?;
    let mut keys = MapKeys::new();
    let (mut seq, mut labels) = (None, None);
    for _ in 0..n {
        match keys
            .next(&mut r)
            .map_err(|e| format!("#labels body: {e}"))?
        {
            "seq" => seq = Some(r.int().map_err(|e| format!("#labels seq: {e}"))?),
            "labels" => {
                let len = r.array_len().map_err(|e| format!("#labels labels: {e}"))?;
                let mut items = Vec::with_capacity(len.min(1024));
                for _ in 0..len {
                    let span = r.value_span().map_err(|e| format!("#labels labels: {e}"))?;
                    items.push(Label::from_cbor(span));
                }
                labels = Some(items);
            }
            _ => r.skip().map_err(|e| format!("#labels body: {e}"))?,
        }
    }
    r.finish().map_err(|e| format!("#labels body: {e}"))?;
    Ok(Decoded::Labels {
        seq: seq.ok_or("#labels without seq")?,
        labels: labels.ok_or("#labels without labels")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls() {
        let url = stream_url("http://127.0.0.1:8080", 7).unwrap();
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:8080/xrpc/com.atproto.label.subscribeLabels?cursor=7"
        );
        let url = stream_url("https://labeler.example/", 0).unwrap();
        assert_eq!(
            url.as_str(),
            "wss://labeler.example/xrpc/com.atproto.label.subscribeLabels?cursor=0"
        );
        assert!(stream_url("ftp://x", 0).is_err());
    }

    #[test]
    fn frames_decode() {
        let label = Label::new(
            "did:plc:n3timvoib5nau7gvwd6cshap",
            "did:plc:44ybard66vv44zksje25o7dz",
            "spam",
            "2024-10-23T17:51:19.128Z",
        );
        let frame = super::super::labels_frame(3, std::slice::from_ref(&label));
        match decode(&frame).unwrap() {
            Decoded::Labels { seq, labels } => {
                assert_eq!(seq, 3);
                assert_eq!(labels, vec![Ok(label)]);
            }
            other => panic!("{other:?}"),
        }
        let error = crate::sync::replay::error_frame("FutureCursor", "ahead");
        assert!(matches!(
            decode(&error).unwrap(),
            Decoded::Error { error, .. } if error == "FutureCursor"
        ));
        assert!(decode(b"\xff").is_err());
    }
}
