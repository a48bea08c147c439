//! The firehose client: a reconnecting `com.atproto.sync.subscribeRepos` consumer.
//!
//! [`FirehoseClient::run`] spawns one task that owns the WebSocket and hands a
//! [`ClientStream`] of [`ClientEvent`]s to the consumer. Frames are passed on as the raw
//! bytes received ([`ClientEvent::Frame`]), so a relay can re-serve them unmodified and a
//! verifier can decode them borrowed; everything else the client learns (connections,
//! `#info` and error frames, undecodable frames, lag) arrives as its own event.
//!
//! What the client does on its own:
//! - **Cursor tracking.** It remembers the `seq` of the last frame it delivered and
//!   reconnects with `?cursor=<last>`. It drops frames whose `seq` is at or below that value:
//!   the spec allows a server to resend `seq == cursor`, and after a reconnect nothing is
//!   delivered twice.
//! - **Reconnects** with exponential backoff and full jitter (a random delay between zero
//!   and `min(max, base * 2^attempt)`); the attempt counter resets once a connection has
//!   delivered a frame.
//! - **Idle watchdog.** When nothing (no frame, ping or pong) arrives for
//!   [`ClientConfig::idle_timeout`], the connection is considered dead and replaced. The
//!   client pings every [`ClientConfig::ping_interval`] so a healthy but quiet server (a PDS
//!   with no writes) answers with pongs and is not mistaken for a stalled one.
//! - **Error frames** (`op: -1`) end the connection, as the server closes it after one.
//!   `FutureCursor` means the server's sequence is behind our cursor (for example a PDS
//!   whose database was reset): the client forgets its cursor and dedupe floor and
//!   reconnects live. `ConsumerTooSlow` and other errors reconnect with the cursor.
//! - **Malformed frames** (bad CBOR, a text message, a frame over
//!   [`ClientConfig::max_frame_size`]) are reported as [`ClientEvent::BadFrame`] and the
//!   connection is dropped and re-established from the cursor (protocol: bad CBOR drops the
//!   connection); the event stream itself continues.
//!
//! Backpressure: events go through a bounded channel. When the consumer falls behind, the
//! client stops reading the socket, TCP flow control slows the server down, and the server
//! may eventually send `ConsumerTooSlow`. Time spent waiting for the consumer does not count
//! as idleness.
//!
//! Shutdown: when the `shutdown` future given to [`FirehoseClient::run`] completes, the
//! client sends a WebSocket close (waiting at most [`CLOSE_TIMEOUT`]), stops, and the stream
//! ends after the events already queued. Dropping the [`ClientStream`] also stops the
//! client, at its next await point.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{Instrument, debug, info, info_span, warn};
use url::Url;

use super::cbor;
use super::frame::{self, Frame, FrameError};

/// The largest frame the protocol allows (5 MB, as [`frame::Limits`] counts it), the default
/// [`ClientConfig::max_frame_size`].
pub const MAX_FRAME_SIZE: usize = 5 * 1024 * 1024;

/// How long a graceful WebSocket close may take before the socket is simply dropped.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The XRPC path of the firehose.
pub const SUBSCRIBE_REPOS_PATH: &str = "/xrpc/com.atproto.sync.subscribeRepos";

/// How a [`FirehoseClient`] connects, reconnects and reports.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The firehose endpoint, `ws://` or `wss://…/xrpc/com.atproto.sync.subscribeRepos`.
    /// The client sets its `cursor` query parameter itself.
    pub url: Url,
    /// The cursor of the first connection: `None` for live, `Some(0)` for the server's whole
    /// window, `Some(n)` to resume after `seq` n. Frames with `seq <= n` are dropped.
    pub cursor: Option<i64>,
    /// The first reconnect delay bound; it doubles per failed attempt, up to `backoff_max`.
    pub backoff_base: Duration,
    /// The largest reconnect delay bound.
    pub backoff_max: Duration,
    /// How long opening the TCP connection and the WebSocket handshake may take.
    pub connect_timeout: Duration,
    /// Reconnect when nothing (frame, ping or pong) arrived for this long.
    pub idle_timeout: Duration,
    /// Send a WebSocket ping this often so a quiet, healthy server answers with a pong.
    /// `None` sends no pings: the watchdog then fires on any idle period.
    pub ping_interval: Option<Duration>,
    /// The largest WebSocket message accepted; a larger one is a [`ClientEvent::BadFrame`].
    pub max_frame_size: usize,
    /// Capacity of the event channel to the consumer. Frames are usually a few KB (at most
    /// `max_frame_size`), so the default of 128 holds well under a second of the full
    /// network in a few hundred KB; beyond it the client waits for the consumer.
    pub channel_capacity: usize,
    /// At most one [`ClientEvent::Lag`] per this period (and one after each connect).
    pub lag_interval: Duration,
}

impl ClientConfig {
    /// A configuration with defaults for `url`; a `cursor` query parameter in it becomes
    /// the starting [`cursor`](Self::cursor).
    pub fn new(url: &str) -> Result<ClientConfig, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let mut parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(invalid(format!(
                "scheme must be ws or wss, not {:?}",
                parsed.scheme()
            )));
        }
        let mut cursor = None;
        for (key, value) in parsed.query_pairs() {
            if key == "cursor" {
                cursor = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| invalid(format!("cursor {value:?} is not a seq")))?,
                );
            }
        }
        set_cursor(&mut parsed, None);
        Ok(ClientConfig {
            url: parsed,
            cursor,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Some(Duration::from_secs(15)),
            max_frame_size: MAX_FRAME_SIZE,
            channel_capacity: 128,
            lag_interval: Duration::from_secs(10),
        })
    }

    /// Checks the values are usable, naming the field that is not.
    pub fn check(&self) -> Result<(), ClientError> {
        let bad = |field: &'static str, reason: &'static str| {
            Err(ClientError::InvalidConfig { field, reason })
        };
        if !matches!(self.url.scheme(), "ws" | "wss") {
            return bad("url", "scheme must be ws or wss");
        }
        if self.cursor.is_some_and(|c| c < 0) {
            return bad("cursor", "must not be negative");
        }
        if self.backoff_base.is_zero() {
            return bad("backoff_base", "must be more than zero");
        }
        if self.backoff_max < self.backoff_base {
            return bad("backoff_max", "must be at least backoff_base");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must be more than zero");
        }
        if self.idle_timeout.is_zero() {
            return bad("idle_timeout", "must be more than zero");
        }
        if self.ping_interval.is_some_and(|p| p.is_zero()) {
            return bad("ping_interval", "must be more than zero (or None)");
        }
        if self.max_frame_size == 0 {
            return bad("max_frame_size", "must be more than zero");
        }
        if self.channel_capacity == 0 {
            return bad("channel_capacity", "must be more than zero");
        }
        Ok(())
    }
}

/// A bad client configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The firehose URL does not parse or is not a WebSocket URL.
    #[error("invalid firehose URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid firehose client configuration: {field} {reason}")]
    InvalidConfig {
        /// The [`ClientConfig`] field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// What the client reports to its consumer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A WebSocket connection is open; `cursor` is what was asked for.
    Connected {
        /// The `cursor` parameter sent (`None`: live).
        cursor: Option<i64>,
    },
    /// One frame, exactly as received. Frames with a `seq` arrive in strictly increasing
    /// `seq` order; frames without one (unknown message types) are passed on as they come.
    Frame {
        /// The WebSocket message: CBOR header ‖ CBOR body.
        bytes: Bytes,
        /// The frame's `seq`, if it has one.
        seq: Option<i64>,
    },
    /// `#info OutdatedCursor`: the cursor is older than the server's window; the server
    /// replays from its oldest event, so events in between are lost. The stream continues.
    OutdatedCursor {
        /// The server's message, if any.
        message: Option<String>,
    },
    /// Another `#info` message.
    Info {
        /// The info name.
        name: String,
        /// The server's message, if any.
        message: Option<String>,
    },
    /// Error frame `FutureCursor`: the cursor is ahead of the server. The client forgets
    /// its cursor and reconnects live after the backoff delay.
    FutureCursor {
        /// The server's message, if any.
        message: Option<String>,
    },
    /// Error frame `ConsumerTooSlow`: the server dropped us for reading too slowly. The
    /// client reconnects from its cursor.
    ConsumerTooSlow {
        /// The server's message, if any.
        message: Option<String>,
    },
    /// Another error frame; the client reconnects from its cursor.
    ServerError {
        /// The error name.
        error: String,
        /// The server's message, if any.
        message: Option<String>,
    },
    /// A message that is not a decodable frame. It is not delivered; the client drops the
    /// connection and reconnects from its cursor.
    BadFrame {
        /// Why it was rejected.
        reason: String,
    },
    /// How far behind real time the stream is: now minus the `time` of the frame just
    /// delivered (negative when the server's clock is ahead).
    Lag {
        /// Milliseconds behind.
        behind_ms: i64,
    },
    /// The connection ended (or could not be opened); the next attempt starts after
    /// `retry_in`.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// The backoff delay before the next attempt.
        retry_in: Duration,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The TCP connection or WebSocket handshake failed or timed out.
    ConnectFailed(String),
    /// The server closed the WebSocket (or the TCP stream ended).
    Closed {
        /// The close code, if the server sent a close frame.
        code: Option<u16>,
        /// The close reason text (may be empty).
        reason: String,
    },
    /// A socket or WebSocket protocol error.
    Error(String),
    /// Nothing arrived for the idle timeout.
    Idle(Duration),
    /// The client dropped the connection after a [`ClientEvent::BadFrame`].
    BadFrame,
    /// The server sent an error frame with this name.
    ErrorFrame(String),
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            DisconnectReason::Closed {
                code: Some(c),
                reason,
            } => {
                write!(f, "closed by the server ({c} {reason})")
            }
            DisconnectReason::Closed { code: None, .. } => write!(f, "connection closed"),
            DisconnectReason::Error(e) => write!(f, "socket error: {e}"),
            DisconnectReason::Idle(d) => write!(f, "nothing received for {d:?}"),
            DisconnectReason::BadFrame => write!(f, "dropped after a malformed frame"),
            DisconnectReason::ErrorFrame(e) => write!(f, "server sent error frame {e}"),
        }
    }
}

/// A reconnecting firehose consumer; see the module docs.
#[derive(Debug)]
pub struct FirehoseClient {
    config: ClientConfig,
}

impl FirehoseClient {
    /// A client for `config`, after [`ClientConfig::check`].
    pub fn new(config: ClientConfig) -> Result<FirehoseClient, ClientError> {
        config.check()?;
        Ok(FirehoseClient { config })
    }

    /// Spawns the client on the current Tokio runtime and returns its events.
    ///
    /// The client runs until `shutdown` completes or the returned stream is dropped.
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> ClientStream {
        let (tx, rx) = mpsc::channel(self.config.channel_capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        // Turns the caller's future into a signal every await point can watch.
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => {
                    let _ = stop_tx.send(true);
                }
                () = stop_tx.closed() => {}
            }
        });
        let driver = Driver {
            cursor: self.config.cursor,
            config: self.config,
            tx,
            stop: stop_rx,
            last_lag: None,
        };
        let span = info_span!("firehose", url = %driver.config.url);
        tokio::spawn(driver.run().instrument(span));
        ClientStream { rx }
    }
}

/// The events of a running [`FirehoseClient`]; also a [`futures_util::Stream`].
///
/// It ends (`None`) after the client has stopped and every queued event was read.
#[derive(Debug)]
pub struct ClientStream {
    rx: mpsc::Receiver<ClientEvent>,
}

impl ClientStream {
    /// The next event, or `None` once the client has stopped.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for ClientStream {
    type Item = ClientEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// What the client needs to know about a frame, whichever decoder provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameFacts {
    pub(crate) kind: FrameKind,
    /// The `seq`, for message types that have one.
    pub(crate) seq: Option<i64>,
    /// The `time` field as Unix milliseconds, when present and parseable.
    pub(crate) time_ms: Option<i64>,
}

/// The kinds of frame the client treats differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameKind {
    /// A repository event (`#commit`, `#sync`, `#identity`, `#account`) or an unknown `t`.
    Event,
    /// `#info`.
    Info {
        name: String,
        message: Option<String>,
    },
    /// An error frame (`op: -1`).
    Error {
        error: String,
        message: Option<String>,
    },
}

/// Decodes what the client and the replay server need to know about a frame.
///
/// This is the one place that decodes frames for them: a full, strict [`frame::decode`],
/// so a frame that is not valid DAG-CBOR or breaks the protocol's limits is rejected here.
pub(crate) fn inspect(bytes: &[u8]) -> Result<FrameFacts, FrameError> {
    let decoded = match frame::decode(bytes) {
        Ok(decoded) => decoded,
        Err(error) => {
            // Well-formed DAG-CBOR that breaks a message rule (201 ops, an unknown action, a
            // missing field) is passed on with its seq: the consumer's decoder reports it and
            // the cursor moves past it. Dropping the connection instead would fetch the same
            // frame again from the same cursor, forever. Only bytes that are not a frame at
            // all end the connection.
            return match salvage_seq(bytes) {
                Some(seq) => {
                    warn!(seq, %error, "frame breaks a message rule; passing it on to be rejected");
                    Ok(FrameFacts {
                        kind: FrameKind::Event,
                        seq: Some(seq),
                        time_ms: None,
                    })
                }
                None => Err(error),
            };
        }
    };
    let seq = decoded.seq();
    let time = match &decoded {
        Frame::Commit(c) => Some(c.time),
        Frame::Sync(s) => Some(s.time),
        Frame::Identity(i) => Some(i.time),
        Frame::Account(a) => Some(a.time),
        Frame::Info(_) | Frame::Error(_) | Frame::Unknown { .. } => None,
    };
    let kind = match decoded {
        Frame::Info(info) => FrameKind::Info {
            name: info.name.to_owned(),
            message: info.message.map(str::to_owned),
        },
        Frame::Error(error) => FrameKind::Error {
            error: error.error.to_owned(),
            message: error.message.map(str::to_owned),
        },
        _ => FrameKind::Event,
    };
    let time_ms = time.and_then(|t| {
        atelier_lexicons::syntax::parse_datetime(t)
            .ok()
            .map(|d| d.timestamp_micros() / 1000)
    });
    Ok(FrameFacts { kind, seq, time_ms })
}

/// The `seq` of a message frame whose header and body are strict DAG-CBOR, if it has one.
pub(crate) fn salvage_seq(bytes: &[u8]) -> Option<i64> {
    let (header, at) = frame::decode_header(bytes).ok()?;
    if header.op != 1 {
        return None;
    }
    let body = bytes.get(at..)?;
    cbor::validate_dag_cbor(body).ok()?;
    let mut r = cbor::Reader::new(body);
    let len = r.map_len().ok()?;
    for _ in 0..len {
        let key = r.text().ok()?;
        if key == "seq" {
            return r.int().ok().filter(|seq| *seq >= 0);
        }
        r.skip().ok()?;
    }
    None
}

/// Sets (or removes) the `cursor` query parameter, keeping any others.
fn set_cursor(url: &mut Url, cursor: Option<i64>) {
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if others.is_empty() && cursor.is_none() {
        url.set_query(None);
        return;
    }
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (k, v) in &others {
        pairs.append_pair(k, v);
    }
    if let Some(c) = cursor {
        pairs.append_pair("cursor", &c.to_string());
    }
}

/// A random delay in `[0, min(max, base * 2^attempt)]` ("full jitter").
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    let bound = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Whether the client goes on after an await point.
enum Flow {
    Continue,
    Stop,
}

/// The outcome of a connection attempt.
enum Connect {
    /// Shutdown was requested or the consumer went away.
    Stop,
    Failed(String),
    Open(Box<Socket>),
}

/// How one connection ended.
enum SessionEnd {
    /// Shutdown was requested or the consumer went away.
    Stop,
    /// Reconnect.
    Reconnect {
        reason: DisconnectReason,
        /// Whether this connection delivered at least one frame (resets the backoff).
        delivered: bool,
    },
}

/// The client task's state.
struct Driver {
    config: ClientConfig,
    /// The cursor for the next connection, and the dedupe floor: the last `seq`
    /// delivered (or the starting cursor).
    cursor: Option<i64>,
    tx: mpsc::Sender<ClientEvent>,
    stop: watch::Receiver<bool>,
    /// When the last [`ClientEvent::Lag`] was sent on this connection.
    last_lag: Option<Instant>,
}

impl Driver {
    async fn run(mut self) {
        let mut attempt: u32 = 0;
        loop {
            let mut url = self.config.url.clone();
            set_cursor(&mut url, self.cursor);
            let cursor = self.cursor;
            let end = match self.connect(&url).await {
                Connect::Stop => return,
                Connect::Failed(reason) => SessionEnd::Reconnect {
                    reason: DisconnectReason::ConnectFailed(reason),
                    delivered: false,
                },
                Connect::Open(socket) => {
                    info!(?cursor, "connected");
                    if let Flow::Stop = self.emit(ClientEvent::Connected { cursor }).await {
                        return;
                    }
                    let span = info_span!("connection", ?cursor);
                    self.session(*socket).instrument(span).await
                }
            };
            let SessionEnd::Reconnect { reason, delivered } = end else {
                debug!("stopped");
                return;
            };
            if delivered {
                attempt = 0;
            }
            let retry_in =
                backoff_delay(self.config.backoff_base, self.config.backoff_max, attempt);
            attempt = attempt.saturating_add(1);
            warn!(%reason, ?retry_in, "disconnected");
            let event = ClientEvent::Disconnected { reason, retry_in };
            if let Flow::Stop = self.emit(event).await {
                return;
            }
            if let Flow::Stop = self.wait(retry_in).await {
                return;
            }
        }
    }

    /// Opens the WebSocket.
    async fn connect(&mut self, url: &Url) -> Connect {
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_frame_size))
            .max_frame_size(Some(self.config.max_frame_size));
        let connect = tokio::time::timeout(
            self.config.connect_timeout,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true),
        );
        tokio::select! {
            biased;
            () = stopped(&mut self.stop) => Connect::Stop,
            () = self.tx.closed() => Connect::Stop,
            result = connect => match result {
                Err(_) => {
                    Connect::Failed(format!("timed out after {:?}", self.config.connect_timeout))
                }
                Ok(Err(tungstenite::Error::Http(response))) => {
                    Connect::Failed(format!("HTTP {} on the WebSocket upgrade", response.status()))
                }
                Ok(Err(tungstenite::Error::Url(UrlError::TlsFeatureNotEnabled))) => {
                    // Permanent, but retried like any failure so the stream semantics stay
                    // simple; the message says what to change.
                    Connect::Failed(
                        "wss:// needs TLS, which this build's WebSocket library lacks \
                         (enable a tokio-tungstenite TLS feature)"
                            .to_owned(),
                    )
                }
                Ok(Err(e)) => Connect::Failed(e.to_string()),
                Ok(Ok((socket, _response))) => Connect::Open(Box::new(socket)),
            },
        }
    }

    /// Reads one connection until it ends.
    async fn session(&mut self, mut socket: Socket) -> SessionEnd {
        self.last_lag = None;
        let mut delivered = false;
        let idle = self.config.idle_timeout;
        let mut deadline = Instant::now() + idle;
        let ping_every = self.config.ping_interval.unwrap_or(Duration::MAX);
        let mut next_ping = Instant::now().checked_add(ping_every);
        loop {
            let ping_due = async {
                match next_ping {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                biased;
                () = stopped(&mut self.stop) => {
                    close(&mut socket).await;
                    return SessionEnd::Stop;
                }
                () = self.tx.closed() => return SessionEnd::Stop,
                () = tokio::time::sleep_until(deadline) => {
                    // A stalled server may not complete a close handshake: just drop it.
                    return SessionEnd::Reconnect {
                        reason: DisconnectReason::Idle(idle),
                        delivered,
                    };
                }
                () = ping_due => {
                    next_ping = Instant::now().checked_add(ping_every);
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                        return SessionEnd::Reconnect {
                            reason: DisconnectReason::Error(e.to_string()),
                            delivered,
                        };
                    }
                    continue;
                }
                message = socket.next() => message,
            };
            let reason = match message {
                None => DisconnectReason::Closed {
                    code: None,
                    reason: String::new(),
                },
                Some(Err(tungstenite::Error::Capacity(e))) => {
                    let reason = format!("message too large: {e}");
                    if let Flow::Stop = self.emit(ClientEvent::BadFrame { reason }).await {
                        return SessionEnd::Stop;
                    }
                    DisconnectReason::BadFrame
                }
                Some(Err(e)) => DisconnectReason::Error(e.to_string()),
                Some(Ok(Message::Close(frame))) => DisconnectReason::Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                },
                Some(Ok(Message::Binary(bytes))) => match self.on_frame(bytes).await {
                    Ok(sent) => {
                        delivered |= sent;
                        deadline = Instant::now() + idle;
                        continue;
                    }
                    Err(None) => return SessionEnd::Stop,
                    Err(Some(reason)) => {
                        close(&mut socket).await;
                        reason
                    }
                },
                Some(Ok(Message::Text(_))) => {
                    let reason = "text message on a binary firehose".to_owned();
                    if let Flow::Stop = self.emit(ClientEvent::BadFrame { reason }).await {
                        return SessionEnd::Stop;
                    }
                    close(&mut socket).await;
                    DisconnectReason::BadFrame
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    deadline = Instant::now() + idle;
                    continue;
                }
            };
            return SessionEnd::Reconnect { reason, delivered };
        }
    }

    /// Handles one binary message. `Ok(true)` when a frame was delivered, `Err(None)` to
    /// stop, `Err(Some(reason))` to drop the connection.
    async fn on_frame(&mut self, bytes: Bytes) -> Result<bool, Option<DisconnectReason>> {
        let facts = match inspect(&bytes) {
            Ok(facts) => facts,
            Err(error) => {
                warn!(%error, len = bytes.len(), "malformed frame");
                let reason = error.to_string();
                return match self.emit(ClientEvent::BadFrame { reason }).await {
                    Flow::Stop => Err(None),
                    Flow::Continue => Err(Some(DisconnectReason::BadFrame)),
                };
            }
        };
        let event = match facts.kind {
            FrameKind::Error { error, message } => {
                warn!(%error, ?message, "error frame");
                let event = match error.as_str() {
                    "FutureCursor" => {
                        // The server is behind us: our cursor and dedupe floor are
                        // meaningless there, so start over live.
                        self.cursor = None;
                        ClientEvent::FutureCursor { message }
                    }
                    "ConsumerTooSlow" => ClientEvent::ConsumerTooSlow { message },
                    _ => ClientEvent::ServerError {
                        error: error.clone(),
                        message,
                    },
                };
                return match self.emit(event).await {
                    Flow::Stop => Err(None),
                    Flow::Continue => Err(Some(DisconnectReason::ErrorFrame(error))),
                };
            }
            FrameKind::Info { name, message } => {
                info!(%name, ?message, "#info");
                if name == "OutdatedCursor" {
                    ClientEvent::OutdatedCursor { message }
                } else {
                    ClientEvent::Info { name, message }
                }
            }
            FrameKind::Event => {
                if let (Some(seq), Some(last)) = (facts.seq, self.cursor)
                    && seq <= last
                {
                    debug!(seq, last, "dropping an already delivered seq");
                    return Ok(false);
                }
                let seq = facts.seq;
                if let Flow::Stop = self.emit(ClientEvent::Frame { bytes, seq }).await {
                    return Err(None);
                }
                if seq.is_some() {
                    self.cursor = seq;
                }
                if let Some(time_ms) = facts.time_ms {
                    let due = self
                        .last_lag
                        .is_none_or(|at| at.elapsed() >= self.config.lag_interval);
                    if due {
                        self.last_lag = Some(Instant::now());
                        let behind_ms = now_ms().saturating_sub(time_ms);
                        if let Flow::Stop = self.emit(ClientEvent::Lag { behind_ms }).await {
                            return Err(None);
                        }
                    }
                }
                return Ok(true);
            }
        };
        match self.emit(event).await {
            Flow::Stop => Err(None),
            Flow::Continue => Ok(false),
        }
    }

    /// Sends an event to the consumer, waiting while its channel is full.
    async fn emit(&mut self, event: ClientEvent) -> Flow {
        tokio::select! {
            biased;
            () = stopped(&mut self.stop) => Flow::Stop,
            sent = self.tx.send(event) => match sent {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Stop,
            },
        }
    }

    /// Sleeps for the backoff delay unless stopped first.
    async fn wait(&mut self, delay: Duration) -> Flow {
        tokio::select! {
            biased;
            () = stopped(&mut self.stop) => Flow::Stop,
            () = self.tx.closed() => Flow::Stop,
            () = tokio::time::sleep(delay) => Flow::Continue,
        }
    }
}

/// Completes when shutdown was requested; never if the signal can no longer come.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Closes the WebSocket politely, bounded by [`CLOSE_TIMEOUT`].
async fn close(socket: &mut Socket) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_cursor_is_taken_and_rewritten() {
        let config = ClientConfig::new(
            "ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos?cursor=42&x=1",
        )
        .unwrap();
        assert_eq!(config.cursor, Some(42));
        let mut url = config.url.clone();
        assert_eq!(url.query(), Some("x=1"));
        set_cursor(&mut url, Some(7));
        assert_eq!(url.query(), Some("x=1&cursor=7"));
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "http://example.com/xrpc/com.atproto.sync.subscribeRepos",
            "not a url",
            "ws://h/xrpc/com.atproto.sync.subscribeRepos?cursor=-1",
            "ws://h/xrpc/com.atproto.sync.subscribeRepos?cursor=abc",
        ] {
            assert!(ClientConfig::new(url).is_err(), "{url}");
        }
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in [0, 1, 3, 10, 40, u32::MAX] {
            for _ in 0..50 {
                let d = backoff_delay(base, max, attempt);
                let bound = base.saturating_mul(1 << attempt.min(20)).min(max);
                assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
            }
        }
    }

    #[test]
    fn inspect_rejects_garbage() {
        for bytes in [
            &b""[..],
            b"\xff",
            b"\xa1\x62op\x01",
            b"\xa1\x62op\x01\xa0\x00",
        ] {
            assert!(inspect(bytes).is_err(), "{bytes:?}");
        }
    }
}
