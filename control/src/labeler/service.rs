//! The labeler's XRPC endpoints:
//! - `GET /xrpc/com.atproto.label.queryLabels`: current labels by subject pattern and
//!   source, paged by seq;
//! - `GET /xrpc/com.atproto.label.subscribeLabels`: the label event stream (WebSocket),
//!   replayed from a cursor out of the store, then live.
//!
//! Errors are XRPC JSON bodies `{error, message}`; internal failures are logged in full and
//! answered with a generic message.

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::handle::{Labeler, now_micros};
use super::store::{LabelQuery, MAX_QUERY_TERMS, UriPattern};
use atelier_relay::lexicons::syntax::{self, Format};
use atelier_relay::sync::replay::error_frame;

/// `queryLabels`'s default page size (the lexicon's default).
pub const DEFAULT_LIMIT: u32 = 50;
/// `queryLabels`'s largest page size (the lexicon's maximum).
pub const MAX_LIMIT: u32 = 250;

/// Labels read from the store per query while a stream catches up: large enough that
/// replaying a long history takes few queries, small enough to hold briefly.
const REPLAY_PAGE: u32 = 500;
/// How long one frame may take to send before the subscriber is dropped as too slow.
/// Subscribers read the store at their own pace, so a slow one costs only its own stream.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle streams are pinged this often, so proxies and clients keep them open.
const PING_EVERY: Duration = Duration::from_secs(30);

/// The labeler's routes, with `labeler` as their state.
pub fn router(labeler: Labeler) -> Router {
    Router::new()
        .route("/xrpc/com.atproto.label.queryLabels", get(query_labels))
        .route(
            "/xrpc/com.atproto.label.subscribeLabels",
            get(subscribe_labels),
        )
        .with_state(labeler)
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then closes the label
/// streams ([`Labeler::shutdown`]) and waits for the other requests to finish.
pub async fn serve(
    listener: TcpListener,
    labeler: Labeler,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let on_stop = labeler.clone();
    axum::serve(listener, router(labeler))
        .with_graceful_shutdown(async move {
            shutdown.await;
            on_stop.shutdown();
        })
        .await
}

/// The `#labels` frame (moved to the AppView with the label type).
pub use atelier_appview::labels::labels_frame;

/// An XRPC error response.
fn xrpc_error(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": error, "message": message.into() })),
    )
        .into_response()
}

fn invalid_request(message: impl Into<String>) -> Response {
    xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

fn internal_error(error: &dyn std::error::Error) -> Response {
    tracing::error!(error = %error, "labeler request failed");
    xrpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "internal error",
    )
}

/// The parameters of `queryLabels`, checked.
fn parse_query(raw: &str) -> Result<LabelQuery, String> {
    let mut query = LabelQuery {
        limit: DEFAULT_LIMIT,
        ..LabelQuery::default()
    };
    let mut saw_patterns = false;
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match &*key {
            "uriPatterns" => {
                saw_patterns = true;
                query.uri_patterns.push(UriPattern::parse(&value)?);
            }
            "sources" => {
                if syntax::validate(Format::Did, &value).is_err() {
                    return Err(format!("sources entry {value:?} is not a DID"));
                }
                query.sources.push(value.into_owned());
            }
            "limit" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("limit must be an integer from 1 to {MAX_LIMIT}, not {value:?}")
                    })?;
            }
            "cursor" if value.is_empty() => query.cursor = None,
            "cursor" => {
                query.cursor = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c >= 0)
                        .ok_or_else(|| format!("cursor {value:?} is not a queryLabels cursor"))?,
                );
            }
            // Unknown parameters are ignored, as XRPC servers do.
            _ => {}
        }
    }
    if !saw_patterns {
        return Err("uriPatterns is required".into());
    }
    if query.uri_patterns.len() > MAX_QUERY_TERMS || query.sources.len() > MAX_QUERY_TERMS {
        return Err(format!(
            "at most {MAX_QUERY_TERMS} uriPatterns and {MAX_QUERY_TERMS} sources per query"
        ));
    }
    Ok(query)
}

async fn query_labels(State(labeler): State<Labeler>, RawQuery(raw): RawQuery) -> Response {
    let query = match parse_query(raw.as_deref().unwrap_or("")) {
        Ok(query) => query,
        Err(message) => return invalid_request(message),
    };
    let page = match labeler.store().query(&query, now_micros()).await {
        Ok(page) => page,
        Err(e) => return internal_error(&e),
    };
    let mut body = Map::new();
    // A full page may have a next one; a short page is the last (no cursor: stop).
    if page.len() == query.limit as usize
        && let Some(last) = page.last()
    {
        body.insert("cursor".into(), Value::from(last.seq.to_string()));
    }
    body.insert(
        "labels".into(),
        Value::Array(page.iter().map(|s| s.label.to_json()).collect()),
    );
    Json(Value::Object(body)).into_response()
}

async fn subscribe_labels(
    State(labeler): State<Labeler>,
    RawQuery(raw): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let mut cursor = None;
    for (key, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if key == "cursor" {
            match value.parse::<i64>() {
                Ok(c) if c >= 0 => cursor = Some(c),
                _ => return invalid_request("cursor must be a non-negative integer"),
            }
        }
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return invalid_request("subscribeLabels is a WebSocket endpoint: connect with ws://");
        }
    };
    ws.on_upgrade(move |socket| stream_labels(labeler, socket, cursor))
}

/// Resolves once the stop flag is set (the watch guard is dropped inside, so callers
/// stay `Send`).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Sends one message, or fails if the peer is gone or takes longer than [`SEND_TIMEOUT`].
async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// One `subscribeLabels` stream: from the store after `cursor` (or from now), then live.
///
/// Live and replay are the same loop: note the newest seq, read the store after the last
/// seq sent, and when it has nothing more, wait for the newest seq to change. Every frame
/// comes from the store in seq order, so the stream has no gap and no duplicate whatever
/// the timing of new labels.
async fn stream_labels(labeler: Labeler, mut socket: WebSocket, cursor: Option<i64>) {
    // Subscribed before the first read, so a label stored meanwhile still wakes us.
    let mut latest = labeler.watch_latest();
    let mut stopping = labeler.watch_stopping();
    let head = match labeler.store().latest_seq().await {
        Ok(head) => head,
        Err(e) => {
            tracing::error!(error = %e, "subscribeLabels: cannot read the label store");
            let _ = send(&mut socket, Message::Close(None)).await;
            return;
        }
    };
    let mut position = match cursor {
        Some(cursor) if cursor > head => {
            let frame = error_frame(
                "FutureCursor",
                &format!("cursor {cursor} is ahead of the latest label seq {head}"),
            );
            let _ = send(&mut socket, Message::Binary(frame)).await;
            let _ = send(&mut socket, Message::Close(None)).await;
            return;
        }
        Some(cursor) => cursor,
        None => head,
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        // Mark the current value seen before reading: anything stored after this point
        // changes it again and wakes the wait below.
        latest.borrow_and_update();
        loop {
            // A long replay still ends promptly when the service stops.
            if *stopping.borrow() {
                let _ = send(&mut socket, Message::Close(None)).await;
                return;
            }
            let page = match labeler.store().since(position, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = %e, "subscribeLabels: cannot read the label store");
                    let _ = send(&mut socket, Message::Close(None)).await;
                    return;
                }
            };
            let full = page.len() == REPLAY_PAGE as usize;
            for stored in page {
                let frame = labels_frame(stored.seq, std::slice::from_ref(&stored.label));
                if send(&mut socket, Message::Binary(Bytes::from(frame)))
                    .await
                    .is_err()
                {
                    return;
                }
                position = stored.seq;
            }
            if !full {
                break;
            }
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    // The labeler is gone.
                    let _ = send(&mut socket, Message::Close(None)).await;
                    return;
                }
            }
            () = stopped(&mut stopping) => {
                let _ = send(&mut socket, Message::Close(None)).await;
                return;
            }
            message = socket.recv() => match message {
                // Subscribers have nothing to say; pongs are answered by the socket itself.
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if send(&mut socket, Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = parse_query("uriPatterns=at%3A%2F%2Fdid%3Aplc%3Aa%2F*&uriPatterns=did:plc:b&sources=did:plc:c&limit=7&cursor=12").unwrap();
        assert_eq!(
            q.uri_patterns,
            vec![
                UriPattern::Prefix("at://did:plc:a/".into()),
                UriPattern::Exact("did:plc:b".into())
            ]
        );
        assert_eq!(q.sources, vec!["did:plc:c".to_owned()]);
        assert_eq!((q.limit, q.cursor), (7, Some(12)));
        for bad in [
            "",
            "sources=did:plc:c",
            "uriPatterns=*&limit=0",
            "uriPatterns=*&limit=251",
            "uriPatterns=*&limit=x",
            "uriPatterns=*&cursor=-1",
            "uriPatterns=*&sources=nope",
            "uriPatterns=a*b",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
