//! The relay's HTTP and WebSocket endpoints.
//!
//! - `GET /xrpc/com.atproto.sync.subscribeRepos`: the filtered firehose, frames as received
//!   but re-sequenced (`#info OutdatedCursor`, `FutureCursor`, `ConsumerTooSlow` as the
//!   protocol has them).
//! - `GET /subscribe`: Jetstream v1 (legacy `/subscribe` contract, `shared/brief/jetstream.md`).
//! - `com.atproto.sync.listHosts`, `getHostStatus`, `requestCrawl`; `/xrpc/_health`;
//!   `/metrics`.
//! - `/admin/...`: the operator API (bearer token).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{FutureExt, SinkExt};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::admin::Refusal;
use super::config::{CrawlMode, HostLimits, UpstreamKind};
use super::hosts::{normalize_host, upstream_url};
use super::hub::{EventSource, From, Registration, SourceEnd};
use super::ingest::{Command, HostRuntime};
use super::metrics::{Gauges, HostGauge, render};
use super::payload::{RelayEvent, Want};
use super::state::HostSource;
use crate::eventlog::LogError;
use crate::filter::FilterRules;
use crate::jetstream::zstd::Compressor;
use crate::jetstream::{OptionsUpdate, Start, SubscribeOptions, now_us};
use crate::sync::replay::{error_frame, info_frame};

/// Events sent before a flush when more are ready at once.
const BATCH: usize = 256;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/xrpc/com.atproto.sync.subscribeRepos",
            get(subscribe_repos),
        )
        .route("/subscribe", get(subscribe_jetstream))
        .route("/xrpc/com.atproto.sync.listHosts", get(list_hosts))
        .route("/xrpc/com.atproto.sync.getHostStatus", get(get_host_status))
        .route("/xrpc/com.atproto.sync.requestCrawl", post(request_crawl))
        .route("/xrpc/_health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/hosts", get(admin_hosts).post(admin_add_host))
        .route("/admin/hosts/ban", post(admin_ban))
        .route("/admin/hosts/unban", post(admin_unban))
        .route("/admin/hosts/limits", post(admin_limits))
        .route("/admin/filter", get(admin_get_filter).put(admin_set_filter))
        .route("/admin/subscribers", get(admin_subscribers))
        .route("/admin/accounts/takedown", post(admin_takedown))
        .route("/admin/accounts/restore", post(admin_restore))
        .with_state(shared)
}

/// An XRPC error response.
fn xrpc_error(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": error, "message": message.into() })),
    )
        .into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

fn internal(error: impl std::fmt::Display) -> Response {
    xrpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        error.to_string(),
    )
}

/// The followed host named by `given` (normalized first), or the error response:
/// `InvalidRequest` for a malformed name, `HostNotFound` with `not_found` for an unknown
/// one (400 for the XRPC method, 404 for the admin API).
// The error is handed straight back to axum, once per request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn find_host(
    shared: &Shared,
    given: &str,
    not_found: StatusCode,
) -> Result<Arc<HostRuntime>, Response> {
    let host = normalize_host(given).map_err(invalid)?;
    shared.host_by_name(&host).ok_or_else(|| {
        xrpc_error(
            not_found,
            "HostNotFound",
            format!("{host} is not known to this relay"),
        )
    })
}

// ---- subscribeRepos ----

async fn subscribe_repos(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let cursor = match query.get("cursor").map(|c| c.parse::<i64>()) {
        None => None,
        Some(Ok(c)) if c >= 0 => Some(c as u64),
        Some(_) => return invalid("cursor must be a non-negative integer"),
    };
    let Some(registration) = shared.hub.register("subscribeRepos", remote, false) else {
        return xrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotEnoughResources",
            "the relay is at its subscriber limit",
        );
    };
    subscriber_socket(ws)
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| serve_repos(shared, socket, cursor, registration))
}

/// Buffer sizes for a subscriber's socket. Subscribers send little (a Jetstream
/// `options_update` at most), so the read buffer starts at 4 kB instead of 128 kB; writes
/// are gathered up to 32 kB, about a live batch of events. At a thousand subscribers the
/// defaults alone would be a quarter of a gigabyte.
fn subscriber_socket(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.read_buffer_size(4 << 10).write_buffer_size(32 << 10)
}

async fn serve_repos(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    cursor: Option<u64>,
    registration: Registration,
) {
    let from = match cursor {
        None => From::Live,
        Some(c) => From::Seq(c + 1),
    };
    let (mut source, outdated) =
        match EventSource::open(&shared.hub, &shared.log, from, Want::Frame) {
            Ok(s) => s,
            Err(LogError::FutureCursor { latest, .. }) => {
                let frame = error_frame(
                    "FutureCursor",
                    &format!("cursor is ahead of the relay's latest seq {latest}"),
                );
                let _ = socket.send(Message::Binary(frame)).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscribeRepos: cannot read the log");
                return;
            }
        };
    if outdated {
        let frame = info_frame(
            "OutdatedCursor",
            "cursor is older than the relay's retention; starting at the oldest event",
        );
        if socket.send(Message::Binary(frame)).await.is_err() {
            return;
        }
    }
    let frames = |ev: &RelayEvent, out: &mut Vec<Message>| {
        out.push(Message::Binary(ev.frame.clone()));
    };
    let end = pump(
        &shared,
        &mut socket,
        &mut source,
        &registration,
        frames,
        |_| Ok(()),
    )
    .await;
    if let Some(SourceEnd::TooSlow) = end {
        shared.hub.dropped_slow.fetch_add(1, Ordering::Relaxed);
        let frame = error_frame("ConsumerTooSlow", "subscriber fell too far behind");
        let _ =
            tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Binary(frame))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
}

/// Sends events from `source` to `socket` until either ends, answering the client's
/// messages with `on_text` and pinging. Returns why the source ended, if it did.
async fn pump(
    shared: &Shared,
    socket: &mut WebSocket,
    source: &mut EventSource,
    registration: &Registration,
    mut messages: impl FnMut(&RelayEvent, &mut Vec<Message>),
    mut on_text: impl FnMut(&str) -> Result<(), String>,
) -> Option<SourceEnd> {
    let limits = shared.config.subscribers;
    let send_timeout = Duration::from_secs(limits.send_timeout_secs);
    let mut ping = tokio::time::interval(Duration::from_secs(limits.ping_secs));
    ping.tick().await;
    let mut stop = shared.stop.clone();
    let mut out = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            ev = source.next() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(end) => return Some(end),
                };
                out.clear();
                messages(&ev, &mut out);
                registration.info.last_seq.store(ev.seq, Ordering::Relaxed);
                // Take what is ready without waiting, to flush once per batch.
                let mut taken = 1;
                while taken < BATCH {
                    // `next` is cancel-safe: an event not ready now stays for the next call.
                    match source.next().now_or_never() {
                        Some(Ok(ev)) => {
                            messages(&ev, &mut out);
                            registration.info.last_seq.store(ev.seq, Ordering::Relaxed);
                            taken += 1;
                        }
                        Some(Err(end)) => return Some(end),
                        None => break,
                    }
                }
                let n = out.len() as u64;
                if n == 0 {
                    continue;
                }
                let sent = tokio::time::timeout(send_timeout, async {
                    for m in out.drain(..) {
                        socket.feed(m).await?;
                    }
                    socket.flush().await
                })
                .await;
                match sent {
                    Ok(Ok(())) => {
                        registration.info.sent.fetch_add(n, Ordering::Relaxed);
                        shared.metrics.messages_sent.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => return None,
                    Err(_) => return Some(SourceEnd::TooSlow),
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(text))) => {
                    if let Err(reason) = on_text(text.as_str()) {
                        let reason: String = reason.chars().take(120).collect();
                        let _ = socket.send(Message::Close(Some(CloseFrame {
                            code: 1000,
                            reason: Utf8Bytes::from(reason),
                        }))).await;
                        return None;
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tokio::time::timeout(send_timeout, socket.send(Message::Ping(Default::default()))).await.is_err() {
                    return Some(SourceEnd::TooSlow);
                }
            }
            _ = super::stopped(&mut stop) => return Some(SourceEnd::Closed),
        }
    }
}

// ---- Jetstream /subscribe ----

async fn subscribe_jetstream(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let mut options = match SubscribeOptions::from_query(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    if let Some(enc) = headers.get("socket-encoding").and_then(|v| v.to_str().ok()) {
        options.apply_socket_encoding(enc);
    }
    let compressor = if options.compress {
        match shared.dictionary.as_ref().map(Compressor::new) {
            Some(Ok(c)) => Some(c),
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    "compression unavailable: the relay has no zstd dictionary (run ./install.sh)",
                )
                    .into_response();
            }
        }
    } else {
        None
    };
    let Some(registration) = shared.hub.register("jetstream", remote, options.compress) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "subscriber limit reached").into_response();
    };
    subscriber_socket(ws).on_upgrade(move |socket| {
        serve_jetstream(shared, socket, options, compressor, registration)
    })
}

async fn serve_jetstream(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    mut options: SubscribeOptions,
    mut compressor: Option<Compressor>,
    registration: Registration,
) {
    if options.require_hello {
        // Nothing is sent, not even replay, until the first valid options_update.
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => match OptionsUpdate::from_message(text.as_str()) {
                    Ok(Some(update)) => {
                        options.apply(update);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let reason: String = e.to_string().chars().take(120).collect();
                        let _ = socket
                            .send(Message::Close(Some(CloseFrame {
                                code: 1000,
                                reason: Utf8Bytes::from(reason),
                            })))
                            .await;
                        return;
                    }
                },
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
    let (from, min_time) = match options.start(now_us()) {
        Start::Live => (From::Live, i64::MIN),
        Start::From(t) => (From::Time(t), t),
    };
    let Ok((mut source, _outdated)) =
        EventSource::open(&shared.hub, &shared.log, from, Want::Jetstream)
    else {
        return;
    };
    // Options can change mid-stream; both closures reach them through one uncontended lock,
    // never held across an await.
    let options = std::sync::Mutex::new(options);
    let mut last_sent = i64::MIN;
    let messages = |ev: &RelayEvent, out: &mut Vec<Message>| {
        // The record's time is its last event's: older records hold nothing to send.
        if ev.time_us < min_time || ev.time_us <= last_sent {
            return;
        }
        let Ok(opts) = options.lock() else { return };
        for (i, js) in ev.jetstream.iter().enumerate() {
            if js.time_us < min_time || js.time_us <= last_sent || !opts.matches(js) {
                continue;
            }
            last_sent = js.time_us;
            let message = if opts.compress {
                match ev.zstd.get(i) {
                    Some(z) => Message::Binary(z.clone()),
                    None => match compressor.as_mut().map(|c| c.compress(&js.json)) {
                        Some(Ok(z)) => Message::Binary(z),
                        _ => continue,
                    },
                }
            } else {
                match ev.text.get(i) {
                    Some(text) => Message::Text(text.clone()),
                    None => continue,
                }
            };
            out.push(message);
        }
    };
    let on_text = |text: &str| match OptionsUpdate::from_message(text) {
        Ok(Some(update)) => {
            if let Ok(mut opts) = options.lock() {
                opts.apply(update);
            }
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    let end = pump(
        &shared,
        &mut socket,
        &mut source,
        &registration,
        messages,
        on_text,
    )
    .await;
    if let Some(SourceEnd::TooSlow) = end {
        // Legacy Jetstream closes a slow client without a close frame.
        shared.hub.dropped_slow.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.send(Message::Close(None))).await;
}

// ---- host XRPC ----

fn host_status(h: &HostRuntime) -> &'static str {
    let row = h.row();
    if row.banned {
        "banned"
    } else if h.connected.load(Ordering::Relaxed) {
        "active"
    } else {
        "offline"
    }
}

fn host_view(h: &HostRuntime) -> serde_json::Value {
    json!({
        "hostname": h.host,
        "seq": h.cursor.load(Ordering::Relaxed).max(0),
        "accountCount": h.account_count(),
        "status": host_status(h),
    })
}

#[derive(Deserialize)]
struct ListHostsParams {
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_hosts(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ListHostsParams>,
) -> Response {
    let limit = match params.limit.as_deref().map(str::parse::<usize>) {
        None => 200,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return invalid("limit must be between 1 and 1000"),
    };
    let after = match params.cursor.as_deref().map(str::parse::<u32>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid("cursor is not valid"),
    };
    let hosts: Vec<_> = shared
        .all_hosts()
        .into_iter()
        .filter(|h| h.id > after)
        .take(limit)
        .collect();
    let cursor = (hosts.len() == limit)
        .then(|| hosts.last().map(|h| h.id.to_string()))
        .flatten();
    let views: Vec<_> = hosts.iter().map(|h| host_view(h)).collect();
    let mut body = json!({ "hosts": views });
    if let Some(c) = cursor {
        body["cursor"] = json!(c);
    }
    Json(body).into_response()
}

#[derive(Deserialize)]
struct HostnameParam {
    hostname: Option<String>,
}

async fn get_host_status(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<HostnameParam>,
) -> Response {
    let Some(given) = params.hostname else {
        return invalid("hostname is required");
    };
    match find_host(&shared, &given, StatusCode::BAD_REQUEST) {
        Ok(h) => Json(host_view(&h)).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct CrawlBody {
    hostname: String,
}

async fn request_crawl(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<CrawlBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return invalid("body must be JSON {\"hostname\": ...}");
    };
    let host = match normalize_host(&body.hostname) {
        Ok(h) => h,
        Err(e) => return invalid(e),
    };
    if let Some(existing) = shared.host_by_name(&host) {
        if existing.row().banned {
            return xrpc_error(
                StatusCode::BAD_REQUEST,
                "HostBanned",
                format!("{host} is banned"),
            );
        }
        return Json(json!({})).into_response();
    }
    let policy = &shared.config.crawl;
    let allowed = match policy.mode {
        CrawlMode::Closed => false,
        CrawlMode::Allowlist => policy
            .allow
            .iter()
            .any(|a| normalize_host(a).is_ok_and(|a| a == host)),
        CrawlMode::Open => true,
    };
    if !allowed {
        return xrpc_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{host} is not accepted by this relay's crawl policy"),
        );
    }
    if shared.all_hosts().len() >= policy.max_hosts as usize {
        return xrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "the relay follows its maximum number of hosts",
        );
    }
    let Some(crawled_today) = crawled_today(&shared) else {
        return invalid("internal error");
    };
    if policy.mode == CrawlMode::Open && crawled_today >= u64::from(policy.new_hosts_per_day) {
        return xrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "too many new hosts today",
        );
    }
    // Sandbox hosts on loopback speak plain ws/http; everything else TLS.
    let loopback = shared.config.allow_loopback && is_loopback_host(&host);
    let (http, ws) = if loopback {
        ("http", "ws")
    } else {
        ("https", "wss")
    };
    // The host must be a PDS: it answers describeServer (fetched through the SSRF guard).
    let describe = format!("{http}://{host}/xrpc/com.atproto.server.describeServer");
    match shared.guard.get_json::<serde_json::Value>(&describe).await {
        Ok(doc) if doc.get("did").and_then(|d| d.as_str()).is_some() => {}
        Ok(_) => {
            return invalid(format!(
                "{host} does not look like a PDS: its describeServer has no `did`"
            ));
        }
        Err(e) if e.is_refusal() => return invalid(format!("{host} is not allowed: {e}")),
        Err(e) => return invalid(format!("{host} did not answer describeServer: {e}")),
    }
    let url = match upstream_url(&format!("{ws}://{host}")) {
        Ok(u) => u,
        Err(e) => return invalid(e),
    };
    match shared
        .add_host(
            &host,
            url.as_str(),
            UpstreamKind::Pds,
            false,
            HostSource::Crawl,
        )
        .await
    {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => internal(e),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Hosts added by crawl request in the last 24 hours.
fn crawled_today(shared: &Shared) -> Option<u64> {
    let since = now_us() - 86_400_000_000;
    Some(
        shared
            .all_hosts()
            .iter()
            .filter(|h| {
                let row = h.row();
                row.source == HostSource::Crawl && row.added_us >= since
            })
            .count() as u64,
    )
}

async fn health() -> Response {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let now = now_us();
    let hosts = shared
        .all_hosts()
        .iter()
        .map(|h| {
            let last = h.last_event_us.load(Ordering::Relaxed);
            HostGauge {
                host: h.host.clone(),
                connected: h.connected.load(Ordering::Relaxed),
                lag_seconds: if last == 0 {
                    0.0
                } else {
                    (now - last) as f64 / 1e6
                },
                events: h.events.load(Ordering::Relaxed),
            }
        })
        .collect();
    let gauges = Gauges {
        subscribers: shared.hub.count(),
        dropped_slow: shared.hub.dropped_slow.load(Ordering::Relaxed),
        log_bytes: shared.log.total_bytes(),
        log_segments: shared.log.segment_count(),
        log_latest_seq: shared.log.latest_seq(),
        hosts,
        labels: shared.labels.clone(),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&shared.metrics, &gauges),
    )
        .into_response()
}

// ---- admin API ----

/// The refusal to send when the request is not authorized; `None` lets it through.
fn refusal(shared: &Shared, remote: SocketAddr, headers: &HeaderMap) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let refused = shared.admin.check(remote.ip(), given).err()?;
    Some(match refused {
        Refusal::Unauthorized => xrpc_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "a valid admin bearer token is required",
        ),
        Refusal::TooManyAttempts => xrpc_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "too many failed attempts; wait a minute",
        ),
    })
}

macro_rules! admin {
    ($shared:expr, $remote:expr, $headers:expr) => {
        if let Some(r) = refusal(&$shared, $remote, &$headers) {
            return r;
        }
    };
}

async fn admin_hosts(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    admin!(shared, remote, headers);
    let hosts: Vec<_> = shared
        .all_hosts()
        .iter()
        .map(|h| {
            let row = h.row();
            let refused = h.refused.lock().map(|m| m.clone()).unwrap_or_default();
            json!({
                "hostname": h.host,
                "url": row.url,
                "kind": row.kind.as_str(),
                "trusted": row.trusted,
                "status": host_status(h),
                "cursor": h.cursor.load(Ordering::Relaxed),
                "accounts": h.account_count(),
                "events": h.events.load(Ordering::Relaxed),
                "refused": refused,
                "limits": row.limits.unwrap_or(shared.config.limits),
                "limitsOverridden": row.limits.is_some(),
            })
        })
        .collect();
    Json(json!({ "hosts": hosts })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddHostBody {
    url: String,
    #[serde(default)]
    kind: UpstreamKind,
    #[serde(default)]
    trusted: bool,
}

async fn admin_add_host(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<AddHostBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return invalid(e.body_text()),
    };
    let url = match upstream_url(&body.url) {
        Ok(u) => u,
        Err(e) => return invalid(e),
    };
    let host = super::hosts::host_key(&url);
    match shared
        .add_host(
            &host,
            url.as_str(),
            body.kind,
            body.trusted,
            HostSource::Crawl,
        )
        .await
    {
        Ok(h) => Json(host_view(&h)).into_response(),
        Err(e) => internal(e),
    }
}

async fn set_ban(shared: Arc<Shared>, hostname: &str, banned: bool) -> Response {
    let h = match find_host(&shared, hostname, StatusCode::NOT_FOUND) {
        Ok(h) => h,
        Err(response) => return response,
    };
    if let Err(e) = shared.store.set_banned(h.id, banned).await {
        return internal(e);
    }
    let was_banned = {
        let Ok(mut row) = h.row.lock() else {
            return invalid("internal error");
        };
        std::mem::replace(&mut row.banned, banned)
    };
    if banned {
        h.stop();
    } else if was_banned {
        // A fresh runtime (the old task has ended) that resumes from the stored cursor.
        let row = h.row();
        let runtime = Arc::new(HostRuntime::new(row, Default::default()));
        runtime
            .cursor
            .store(h.cursor.load(Ordering::Relaxed), Ordering::Relaxed);
        if let Ok(mut hosts) = shared.hosts.write() {
            hosts.insert(runtime.id, Arc::clone(&runtime));
        }
        tokio::spawn(super::ingest::run_upstream(Arc::clone(&shared), runtime));
    }
    Json(json!({ "hostname": h.host, "banned": banned })).into_response()
}

async fn admin_ban(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<CrawlBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    let Ok(Json(body)) = body else {
        return invalid("body must be JSON {\"hostname\": ...}");
    };
    set_ban(shared, &body.hostname, true).await
}

async fn admin_unban(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<CrawlBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    let Ok(Json(body)) = body else {
        return invalid("body must be JSON {\"hostname\": ...}");
    };
    set_ban(shared, &body.hostname, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    hostname: String,
    /// `null` returns the host to the configured defaults.
    limits: Option<HostLimits>,
}

async fn admin_limits(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LimitsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return invalid(e.body_text()),
    };
    let h = match find_host(&shared, &body.hostname, StatusCode::NOT_FOUND) {
        Ok(h) => h,
        Err(response) => return response,
    };
    if let Some(l) = &body.limits
        && (l.per_second == 0 || l.per_hour == 0 || l.per_day == 0 || l.accounts_per_host == 0)
    {
        return invalid("every limit must be more than 0");
    }
    if let Err(e) = shared.store.set_limits(h.id, body.limits).await {
        return internal(e);
    }
    if let Ok(mut row) = h.row.lock() {
        row.limits = body.limits;
    }
    Json(json!({ "hostname": h.host, "limits": body.limits.unwrap_or(shared.config.limits) }))
        .into_response()
}

async fn admin_get_filter(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    admin!(shared, remote, headers);
    Json(current_rules(&shared)).into_response()
}

fn current_rules(shared: &Shared) -> FilterRules {
    shared
        .rules
        .read()
        .map(|r| r.clone())
        .unwrap_or_else(|e| e.into_inner().clone())
}

async fn admin_set_filter(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<FilterRules>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    let Json(rules) = match body {
        Ok(b) => b,
        Err(e) => return invalid(e.body_text()),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared
        .commands
        .send(Command::SetRules(rules.clone(), tx))
        .await
        .is_err()
    {
        return xrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotEnoughResources",
            "relay is stopping",
        );
    }
    match rx.await {
        Ok(Ok(())) => {
            if let Ok(mut r) = shared.rules.write() {
                *r = rules.clone();
            }
            Json(rules).into_response()
        }
        Ok(Err(e)) => invalid(e.to_string()),
        Err(_) => xrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotEnoughResources",
            "relay is stopping",
        ),
    }
}

async fn admin_subscribers(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    admin!(shared, remote, headers);
    let subs: Vec<_> = shared
        .hub
        .list()
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "endpoint": s.endpoint,
                "remote": s.remote,
                "connectedSecs": s.since.elapsed().as_secs(),
                "sent": s.sent.load(Ordering::Relaxed),
                "lastSeq": s.last_seq.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({ "subscribers": subs, "droppedSlow": shared.hub.dropped_slow.load(Ordering::Relaxed) }))
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TakedownBody {
    did: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn set_takedown(shared: Arc<Shared>, body: TakedownBody, takendown: bool) -> Response {
    if !crate::lexicons::syntax::is_valid_did(&body.did) {
        return invalid(format!("{:?} is not a DID", body.did));
    }
    let reason = takendown.then(|| body.reason.clone().unwrap_or_else(|| "takedown".into()));
    if let Err(e) = shared
        .store
        .set_takedown(&body.did, reason.as_deref(), now_us())
        .await
    {
        return internal(e);
    }
    match shared.announce_takedown(&body.did, takendown).await {
        Ok(seq) => {
            Json(json!({ "did": body.did, "takendown": takendown, "seq": seq })).into_response()
        }
        Err(_) => xrpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotEnoughResources",
            "relay is stopping",
        ),
    }
}

async fn admin_takedown(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<TakedownBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    match body {
        Ok(Json(body)) => set_takedown(shared, body, true).await,
        Err(e) => invalid(e.body_text()),
    }
}

async fn admin_restore(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<TakedownBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    admin!(shared, remote, headers);
    match body {
        Ok(Json(body)) => set_takedown(shared, body, false).await,
        Err(e) => invalid(e.body_text()),
    }
}
