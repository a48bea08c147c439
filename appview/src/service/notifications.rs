//! Per-viewer endpoints: the viewer's notifications
//! (`computer.aesthetic.notification.listNotifications`, `getUnreadCount`, `updateSeen`,
//! and the live stream `computer.aesthetic.notification.subscribe`, a WebSocket), and the
//! "following" feed (`computer.aesthetic.feed.getFollowing`).
//!
//! Every endpoint here is per user: the viewer is the `iss` of an inter-service token in
//! `Authorization: Bearer` (minted by the viewer's PDS with `getServiceAuth`, `aud` the
//! AppView's DID, `lxm` the method), verified by [`crate::auth::ServiceAuth`], or, for
//! AC's pages on this AppView, the account signed in here (the `atelier_session` cookie,
//! same origin only). None of these responses go through the response cache.
//!
//! The live stream sends each notification as a JSON text message (a
//! `notificationView`), oldest first. `?cursor=<id>` resumes after the notification with
//! that id (what a client last received); without it the stream starts with what arrives
//! next. It wakes after every ingest commit and reads what is new for its viewer from the
//! store, so a reconnect with the last id misses nothing and repeats nothing. The socket
//! is pinged every 30 s; it closes when the AppView stops.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::signin::{SESSION_COOKIE, cookie_value, origin_allowed};
use super::xrpc::{Params, XrpcError, respond};
use crate::auth::ServiceAuth;
use crate::relay::lexicons::generated::computer::aesthetic::feed::get_following;
use crate::relay::lexicons::generated::computer::aesthetic::notification::{
    get_unread_count, list_notifications, update_seen,
};
use crate::store::Store;

/// The live stream's method name (the `lxm` its tokens carry).
pub(crate) const SUBSCRIBE: &str = "computer.aesthetic.notification.subscribe";

/// How often an idle stream is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Notifications read per store query while catching up.
const STREAM_PAGE: usize = 100;

/// The viewer: the `iss` of the request's bearer token for method `lxm`, or, without
/// one, the account signed in to this AppView (the `atelier_session` cookie), when
/// sign-in is configured.
///
/// Cookie-authenticated requests must come from the AppView's own origin (a WebSocket
/// handshake always carries `Origin`, so another site cannot open the stream with the
/// user's cookie), and `updateSeen` must be sent as `application/json` (a cross-site
/// form cannot send that).
async fn viewer(shared: &Shared, headers: &HeaderMap, lxm: &str) -> Result<String, XrpcError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default())
        .unwrap_or_default();
    if header.is_empty()
        && let Some(signin) = &shared.signin
        && let Some(cookie) = cookie_value(headers, SESSION_COOKIE)
    {
        let origin = headers
            .get(axum::http::header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if !origin_allowed(origin, &signin.origin) {
            return Err(XrpcError::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                "signed-in requests must come from this AppView's own pages".into(),
            ));
        }
        if lxm == update_seen::NSID && !super::is_json(headers) {
            return Err(XrpcError::invalid("send the body as application/json"));
        }
        return match signin.sessions.load(cookie).await {
            Ok(session) => Ok(session.did),
            Err(e) => Err(XrpcError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "AuthRequired",
                format!("sign in again ({e})"),
            )),
        };
    }
    let verified = async {
        let token = ServiceAuth::bearer(header)?;
        shared.auth.verify(token, Some(lxm)).await
    }
    .await;
    match verified {
        Ok(viewer) => Ok(viewer.did),
        Err(e) => Err(XrpcError::new(e.status(), e.error_name(), e.to_string())),
    }
}

pub(super) async fn following(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let mut query = Params::parse(raw.as_deref()).feed()?;
        query.following_of = Some(viewer(&shared, &headers, get_following::NSID).await?);
        query.labelers = super::xrpc::accepted_labelers(&shared, &headers);
        let page = shared
            .store
            .feed(&query)
            .await
            .map_err(XrpcError::internal)?;
        Ok(get_following::Output {
            records: page.records,
            cursor: page.cursor,
        })
    }
    .await;
    respond(result)
}

pub(super) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let result = async {
        let params = Params::parse(raw.as_deref());
        let limit = params.limit()?;
        let before = match params.one("cursor")? {
            None => None,
            Some(c) => Some(c.parse::<i64>().map_err(|_| {
                XrpcError::invalid(format!("`cursor` is not one this AppView gave: {c:?}"))
            })?),
        };
        let viewer = viewer(&shared, &headers, list_notifications::NSID).await?;
        let page = shared
            .store
            .notifications(&viewer, before, limit)
            .await
            .map_err(XrpcError::internal)?;
        Ok(list_notifications::Output {
            notifications: page.notifications,
            cursor: page.cursor.map(|c| c.to_string()),
            seen_at: page.seen_us.map(crate::relay::service::rfc3339),
        })
    }
    .await;
    respond(result)
}

pub(super) async fn unread_count(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let viewer = viewer(&shared, &headers, get_unread_count::NSID).await?;
        let count = shared
            .store
            .unread_count(&viewer)
            .await
            .map_err(XrpcError::internal)?;
        Ok(get_unread_count::Output { count })
    }
    .await;
    respond(result)
}

pub(super) async fn seen(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let viewer = viewer(&shared, &headers, update_seen::NSID).await?;
        let input: update_seen::Input = serde_json::from_slice(&body).map_err(|e| {
            XrpcError::invalid(format!("the body must be {{\"seenAt\": datetime}}: {e}"))
        })?;
        let at = crate::relay::lexicons::syntax::parse_datetime(&input.seen_at)
            .map_err(|e| XrpcError::invalid(format!("`seenAt`: {e}")))?;
        shared
            .store
            .update_seen(&viewer, at.timestamp_micros())
            .await
            .map_err(XrpcError::internal)?;
        Ok::<(), XrpcError>(())
    }
    .await;
    match result {
        // A procedure without output answers 200 with an empty body.
        Ok(()) => axum::http::StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn subscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let start = async {
        let params = Params::parse(raw.as_deref());
        let cursor = match params.one("cursor")? {
            None => None,
            Some(c) => Some(c.parse::<i64>().map_err(|_| {
                XrpcError::invalid(format!("`cursor` must be a notification id, got {c:?}"))
            })?),
        };
        let viewer = viewer(&shared, &headers, SUBSCRIBE).await?;
        // Without a cursor: from the newest notification now (only what comes next).
        let after = match cursor {
            Some(c) => c,
            None => shared
                .store
                .notifications(&viewer, None, 1)
                .await
                .map_err(XrpcError::internal)?
                .notifications
                .first()
                .map_or(0, |n| n.id),
        };
        Ok::<_, XrpcError>((viewer, after))
    }
    .await;
    match start {
        Ok((viewer, after)) => upgrade
            .on_upgrade(move |socket| stream(shared, socket, viewer, after))
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Sends `viewer`'s notifications after `after`, then each new one as ingest commits it.
async fn stream(shared: Arc<Shared>, mut socket: WebSocket, viewer: String, mut after: i64) {
    let mut commits = shared.stats.subscribe_commits();
    let mut stop = shared.stop.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        // Catch up: everything after the last id sent.
        loop {
            let batch = match shared
                .store
                .notifications_after(&viewer, after, STREAM_PAGE)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "notification stream: store read failed");
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            };
            for n in &batch {
                let text = match serde_json::to_string(n) {
                    Ok(text) => text,
                    Err(_) => continue,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                after = n.id;
            }
            if batch.len() < STREAM_PAGE {
                break;
            }
        }
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            // The guard `wait_for` returns is dropped inside, so the future stays `Send`.
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
