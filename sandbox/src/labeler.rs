//! A loopback labeler for label-sync tests: a small axum server with a `did:web` identity
//! (`did:web:localhost%3A<port>`, its DID document at `/.well-known/did.json` naming a
//! `#atproto_label` key and itself as the `#atproto_labeler` endpoint) that serves
//! `com.atproto.label.subscribeLabels` from frames the test publishes.
//!
//! It knows nothing of labels: tests sign labels and encode `#labels` frames with the
//! relay crate's label type and hand over the bytes, so this harness stays free of the
//! crates it tests. Every connection's `cursor` parameter is recorded, so a test can check
//! that a follower resumes where it stopped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the labeler serves: its frames in seq order, the DID document, and the `cursor`
/// of every connection so far.
#[derive(Debug, Default)]
struct Served {
    frames: Vec<(i64, Bytes)>,
    cursors: Vec<Option<String>>,
    doc: Value,
}

/// A running loopback labeler; stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct LoopbackLabeler {
    served: Arc<Mutex<Served>>,
    /// The number of frames; streams wait on it.
    latest: watch::Sender<usize>,
    did: String,
}

impl LoopbackLabeler {
    /// Starts a labeler on `127.0.0.1:0` whose `#atproto_label` key is `multikey`.
    ///
    /// # Errors
    /// If no loopback port can be bound.
    pub async fn start(multikey: &str) -> std::io::Result<LoopbackLabeler> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let did = format!("did:web:localhost%3A{}", addr.port());
        let doc = json!({
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
            "id": did,
            "verificationMethod": [{
                "id": format!("{did}#atproto_label"),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": multikey,
            }],
            "service": [{
                "id": "#atproto_labeler",
                "type": "AtprotoLabeler",
                "serviceEndpoint": format!("http://{addr}"),
            }],
        });
        let labeler = LoopbackLabeler {
            served: Arc::new(Mutex::new(Served {
                doc,
                ..Served::default()
            })),
            latest: watch::Sender::new(0),
            did,
        };
        let app = Router::new()
            .route("/.well-known/did.json", get(did_json))
            .route("/xrpc/com.atproto.label.subscribeLabels", get(subscribe))
            .with_state(labeler.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(labeler)
    }

    /// The labeler's DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// Publishes an encoded `#labels` frame with sequence number `seq` (the caller keeps
    /// seqs increasing); open streams send it at once.
    pub fn publish(&self, seq: i64, frame: Vec<u8>) {
        let n = {
            let mut served = self.lock();
            served.frames.push((seq, Bytes::from(frame)));
            served.frames.len()
        };
        self.latest.send_replace(n);
    }

    /// Replaces the `#atproto_label` key in the DID document (a key rotation).
    pub fn rotate(&self, multikey: &str) {
        self.lock().doc["verificationMethod"][0]["publicKeyMultibase"] = Value::from(multikey);
    }

    /// The `cursor` parameter of every `subscribeLabels` connection so far.
    pub fn cursors(&self) -> Vec<Option<String>> {
        self.lock().cursors.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn did_json(State(labeler): State<LoopbackLabeler>) -> Response {
    let doc = labeler.lock().doc.clone();
    axum::Json(doc).into_response()
}

async fn subscribe(
    State(labeler): State<LoopbackLabeler>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let cursor = raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("cursor=").map(str::to_owned));
    labeler.lock().cursors.push(cursor.clone());
    let after: i64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(-1);
    ws.on_upgrade(move |socket| stream(labeler, socket, after))
}

/// Sends every frame after `position`, then waits for more.
async fn stream(labeler: LoopbackLabeler, mut socket: WebSocket, mut position: i64) {
    let mut latest = labeler.latest.subscribe();
    loop {
        latest.borrow_and_update();
        let frames: Vec<(i64, Bytes)> = labeler
            .lock()
            .frames
            .iter()
            .filter(|(seq, _)| *seq > position)
            .cloned()
            .collect();
        for (seq, frame) in frames {
            if socket.send(Message::Binary(frame)).await.is_err() {
                return;
            }
            position = seq;
        }
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { return },
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
