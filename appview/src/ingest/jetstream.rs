//! A Jetstream-style JSON source: the `/subscribe` contract that Bluesky's Jetstream and
//! Atelier's relay serve (one compact JSON event per text frame, `time_us` cursors).
//!
//! Jetstream events carry no signatures or proofs, so ingest accepts a Jetstream source
//! only when it is marked trusted ([`IngestConfig::trusted`](super::IngestConfig)). The
//! client asks for AC collections and profiles (unless the URL already names
//! `wantedCollections`), starts from the stored cursor (else a `cursor` in the URL, else
//! live), resumes after the last event it delivered (`time_us + 1`:
//! Jetstream cursors are inclusive), and reconnects with jittered backoff. A frame that is
//! not an event is delivered as [`Event::Bad`], so ingest counts it and goes on.
//!
//! Written here rather than taken from a crate: the published Jetstream clients bring
//! their own WebSocket and TLS stacks and decode records into their own types, while
//! ingest needs ATProto JSON values and the cursor discipline above (about a hundred lines
//! over the `tokio-tungstenite` the relay already uses).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use atelier_relay::sync::client::backoff_delay;
use atelier_relay::sync::frame::Action;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};
use url::Url;

use crate::index::{AC_PREFIX, PROFILE};

/// The largest event accepted: Jetstream drops records over 1 MiB, so a bigger frame is
/// not a Jetstream event.
const MAX_MESSAGE: usize = 2 << 20;

/// How to follow one Jetstream endpoint.
#[derive(Debug, Clone)]
pub struct JetstreamConfig {
    /// The `/subscribe` URL (`ws://` or `wss://`), without a cursor.
    pub url: Url,
    /// The last `time_us` already applied (`None`: start live).
    pub after: Option<i64>,
    /// First reconnect delay bound; doubles per failed attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// A connection silent for this long (no event, no ping) is dropped and reopened.
    pub idle_timeout: Duration,
}

impl JetstreamConfig {
    /// Defaults for `url`: AC collections and profiles unless it names its own
    /// `wantedCollections`. A `cursor` in the URL (a `time_us`, inclusive) is where to
    /// start when `after` is `None` (the store has no cursor yet).
    ///
    /// # Errors
    /// If `url` is not a `ws://` or `wss://` URL, or its `cursor` is not a `time_us`.
    pub fn new(url: &str, after: Option<i64>) -> Result<JetstreamConfig, String> {
        let mut url = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(format!("scheme must be ws or wss, not {:?}", url.scheme()));
        }
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut from_url = None;
        if let Some(i) = pairs.iter().position(|(k, _)| k == "cursor") {
            let (_, value) = pairs.remove(i);
            let cursor: i64 = value
                .parse()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| format!("cursor {value:?} is not a time_us"))?;
            from_url = Some(cursor - 1);
        }
        if pairs.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(&pairs);
        }
        let after = after.or(from_url);
        if !pairs.iter().any(|(k, _)| k == "wantedCollections") {
            url.query_pairs_mut()
                .append_pair("wantedCollections", &format!("{AC_PREFIX}*"))
                .append_pair("wantedCollections", PROFILE);
        }
        Ok(JetstreamConfig {
            url,
            after,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        })
    }

    /// The URL to connect to when `after` was the last event applied.
    fn connect_url(&self, after: Option<i64>) -> Url {
        let mut url = self.url.clone();
        if let Some(after) = after {
            url.query_pairs_mut()
                .append_pair("cursor", &after.saturating_add(1).to_string());
        }
        url
    }
}

/// One event from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One op of a commit (Jetstream sends one event per op).
    Commit {
        /// The event's cursor.
        time_us: i64,
        /// The repository.
        did: String,
        /// The commit's rev.
        rev: String,
        /// Create, update or delete.
        action: Action,
        /// The record's collection.
        collection: String,
        /// The record key.
        rkey: String,
        /// The record's CID (create, update).
        cid: Option<String>,
        /// The record as ATProto JSON (create, update).
        record: Option<Value>,
    },
    /// `#identity`: the account's handle may have changed.
    Identity {
        /// The event's cursor.
        time_us: i64,
        /// The account.
        did: String,
        /// The handle announced, if any.
        handle: Option<String>,
    },
    /// `#account`: the account's hosting status changed.
    Account {
        /// The event's cursor.
        time_us: i64,
        /// The account.
        did: String,
        /// Whether it is active.
        active: bool,
        /// Why not, when inactive.
        status: Option<String>,
    },
    /// An event of a kind ingest does not use: it moves the cursor only.
    Other {
        /// The event's cursor.
        time_us: i64,
    },
    /// A frame that is not a Jetstream event (not applied; ingest counts it).
    Bad {
        /// What is wrong with it.
        reason: String,
    },
}

impl Event {
    /// The event's cursor, if it has one.
    pub fn time_us(&self) -> Option<i64> {
        match self {
            Event::Commit { time_us, .. }
            | Event::Identity { time_us, .. }
            | Event::Account { time_us, .. }
            | Event::Other { time_us } => Some(*time_us),
            Event::Bad { .. } => None,
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    did: String,
    time_us: i64,
    kind: String,
    commit: Option<WireCommit>,
    identity: Option<WireIdentity>,
    account: Option<WireAccount>,
}

#[derive(Deserialize)]
struct WireCommit {
    rev: String,
    operation: String,
    collection: String,
    rkey: String,
    record: Option<Value>,
    cid: Option<String>,
}

#[derive(Deserialize)]
struct WireIdentity {
    handle: Option<String>,
}

#[derive(Deserialize)]
struct WireAccount {
    active: bool,
    status: Option<String>,
}

/// Reads one text frame.
pub fn parse(text: &str) -> Event {
    let bad = |reason: String| Event::Bad { reason };
    let wire: Wire = match serde_json::from_str(text) {
        Ok(wire) => wire,
        Err(e) => return bad(format!("not a Jetstream event: {e}")),
    };
    let Wire {
        did,
        time_us,
        kind,
        commit,
        identity,
        account,
    } = wire;
    match (kind.as_str(), commit, identity, account) {
        ("commit", Some(c), _, _) => {
            let action = match c.operation.as_str() {
                "create" => Action::Create,
                "update" => Action::Update,
                "delete" => Action::Delete,
                other => {
                    return bad(format!(
                        "commit operation {other:?} is not create, update or delete"
                    ));
                }
            };
            Event::Commit {
                time_us,
                did,
                rev: c.rev,
                action,
                collection: c.collection,
                rkey: c.rkey,
                cid: c.cid,
                record: c.record,
            }
        }
        ("identity", _, Some(i), _) => Event::Identity {
            time_us,
            did,
            handle: i.handle,
        },
        ("account", _, _, Some(a)) => Event::Account {
            time_us,
            did,
            active: a.active,
            status: a.status,
        },
        ("commit" | "identity" | "account", ..) => {
            bad(format!("a {kind:?} event without its {kind:?} object"))
        }
        _ => Event::Other { time_us },
    }
}

/// A running Jetstream client: events in order until shutdown.
#[derive(Debug)]
pub struct JetstreamStream {
    rx: mpsc::Receiver<Event>,
}

impl JetstreamStream {
    /// Starts following `config.url` until `shutdown` completes.
    pub fn start(
        config: JetstreamConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JetstreamStream {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow(config, tx, Box::pin(shutdown)));
        JetstreamStream { rx }
    }

    /// The next event; `None` once stopped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Why a connection ended.
enum End {
    Stop,
    Reconnect { reason: String, delivered: bool },
}

async fn follow(
    config: JetstreamConfig,
    tx: mpsc::Sender<Event>,
    mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let mut after = config.after;
    let mut attempt = 0u32;
    loop {
        let url = config.connect_url(after);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connect = tokio::time::timeout(
            config.connect_timeout,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), false),
        );
        let end = tokio::select! {
            biased;
            () = &mut shutdown => End::Stop,
            result = connect => match result {
                Err(_) => End::Reconnect {
                    reason: format!("connect timed out after {:?}", config.connect_timeout),
                    delivered: false,
                },
                Ok(Err(e)) => End::Reconnect { reason: e.to_string(), delivered: false },
                Ok(Ok((socket, _))) => {
                    info!(url = %config.url, ?after, "jetstream connected");
                    read(&config, socket, &tx, &mut after, &mut shutdown).await
                }
            },
        };
        let End::Reconnect { reason, delivered } = end else {
            debug!(url = %config.url, "jetstream stopped");
            return;
        };
        if delivered {
            attempt = 0;
        }
        let retry_in = backoff_delay(config.backoff_base, config.backoff_max, attempt);
        attempt = attempt.saturating_add(1);
        warn!(url = %config.url, %reason, ?retry_in, "jetstream disconnected");
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(retry_in) => {}
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads one connection until it ends, moving `after` past each event delivered.
async fn read(
    config: &JetstreamConfig,
    mut socket: Socket,
    tx: &mpsc::Sender<Event>,
    after: &mut Option<i64>,
    shutdown: &mut Pin<Box<dyn Future<Output = ()> + Send>>,
) -> End {
    let mut delivered = false;
    let mut deadline = Instant::now() + config.idle_timeout;
    loop {
        let message = tokio::select! {
            biased;
            () = &mut *shutdown => {
                let _ = socket.close(None).await;
                return End::Stop;
            }
            () = tx.closed() => return End::Stop,
            () = tokio::time::sleep_until(deadline) => {
                return End::Reconnect {
                    reason: format!("no data for {:?}", config.idle_timeout),
                    delivered,
                };
            }
            message = socket.next() => message,
        };
        deadline = Instant::now() + config.idle_timeout;
        let event = match message {
            Some(Ok(Message::Text(text))) => parse(text.as_str()),
            Some(Ok(Message::Binary(_))) => Event::Bad {
                reason: "a binary frame: compressed Jetstream is not supported, drop \
                         `compress=true` from the source URL"
                    .to_owned(),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map_or_else(
                    || "closed".to_owned(),
                    |f| format!("closed ({}): {}", u16::from(f.code), f.reason),
                );
                return End::Reconnect { reason, delivered };
            }
            Some(Err(e)) => {
                return End::Reconnect {
                    reason: e.to_string(),
                    delivered,
                };
            }
            None => {
                return End::Reconnect {
                    reason: "the connection ended".to_owned(),
                    delivered,
                };
            }
        };
        if let Some(time_us) = event.time_us() {
            // Never step back: a server that re-sends an old event must not rewind us.
            if after.is_some_and(|a| time_us <= a) {
                continue;
            }
            *after = Some(time_us);
        }
        if tx.send(event).await.is_err() {
            return End::Stop;
        }
        delivered = true;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_each_kind_of_event() {
        let commit = parse(
            r#"{"did":"did:plc:a","time_us":17,"kind":"commit","commit":{"rev":"3l","operation":"create","collection":"computer.aesthetic.mood","rkey":"k","record":{"$type":"computer.aesthetic.mood","mood":"x"},"cid":"bafy"}}"#,
        );
        assert_eq!(
            commit,
            Event::Commit {
                time_us: 17,
                did: "did:plc:a".into(),
                rev: "3l".into(),
                action: Action::Create,
                collection: "computer.aesthetic.mood".into(),
                rkey: "k".into(),
                cid: Some("bafy".into()),
                record: Some(json!({"$type": "computer.aesthetic.mood", "mood": "x"})),
            }
        );
        let delete = parse(
            r#"{"did":"did:plc:a","time_us":18,"kind":"commit","commit":{"rev":"3m","operation":"delete","collection":"computer.aesthetic.mood","rkey":"k"}}"#,
        );
        assert!(matches!(
            delete,
            Event::Commit {
                action: Action::Delete,
                cid: None,
                record: None,
                ..
            }
        ));
        assert_eq!(
            parse(
                r#"{"did":"did:plc:a","time_us":19,"kind":"identity","identity":{"did":"did:plc:a","handle":"a.test","seq":4,"time":"t"}}"#
            ),
            Event::Identity {
                time_us: 19,
                did: "did:plc:a".into(),
                handle: Some("a.test".into())
            }
        );
        assert_eq!(
            parse(
                r#"{"did":"did:plc:a","time_us":20,"kind":"account","account":{"active":false,"did":"did:plc:a","seq":5,"status":"takendown","time":"t"}}"#
            ),
            Event::Account {
                time_us: 20,
                did: "did:plc:a".into(),
                active: false,
                status: Some("takendown".into())
            }
        );
        assert_eq!(
            parse(r#"{"did":"did:plc:a","time_us":21,"kind":"sync"}"#),
            Event::Other { time_us: 21 }
        );
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        for (text, expect) in [
            ("not json", "not a Jetstream event"),
            (
                r#"{"did":"did:plc:a","kind":"commit"}"#,
                "missing field `time_us`",
            ),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit"}"#,
                "without its \"commit\" object",
            ),
            (
                r#"{"did":"did:plc:a","time_us":1,"kind":"commit","commit":{"rev":"r","operation":"patch","collection":"c","rkey":"k"}}"#,
                "\"patch\" is not create",
            ),
        ] {
            match parse(text) {
                Event::Bad { reason } => assert!(reason.contains(expect), "{text}: {reason}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn asks_for_ac_collections_and_resumes_after_the_cursor() {
        let config = JetstreamConfig::new("ws://127.0.0.1:9/subscribe", Some(41)).expect("config");
        let url = config.connect_url(config.after);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("wantedCollections".into(), "computer.aesthetic.*".into()),
                ("wantedCollections".into(), "app.bsky.actor.profile".into()),
                ("cursor".into(), "42".into()),
            ]
        );
        let own = JetstreamConfig::new(
            "wss://js.example/subscribe?wantedCollections=computer.aesthetic.mood",
            None,
        )
        .expect("config");
        assert_eq!(
            own.connect_url(None).query(),
            Some("wantedCollections=computer.aesthetic.mood")
        );
        // A cursor in the URL is the start when the store has none; the stored one wins.
        let from_url =
            JetstreamConfig::new("ws://x/subscribe?cursor=100&wantedDids=did:plc:a", None)
                .expect("config");
        assert_eq!(from_url.after, Some(99));
        assert_eq!(
            from_url.connect_url(from_url.after).query(),
            Some(
                "wantedDids=did%3Aplc%3Aa&wantedCollections=computer.aesthetic.*&wantedCollections=app.bsky.actor.profile&cursor=100"
            )
        );
        let stored =
            JetstreamConfig::new("ws://x/subscribe?cursor=100", Some(500)).expect("config");
        assert_eq!(stored.after, Some(500));
        for (url, expect) in [
            ("http://x/subscribe", "scheme must be ws or wss"),
            (
                "ws://x/subscribe?cursor=soon",
                "cursor \"soon\" is not a time_us",
            ),
            ("not a url", "not a URL"),
        ] {
            let error = JetstreamConfig::new(url, None).expect_err(url);
            assert!(error.contains(expect), "{url}: {error}");
        }
    }
}
