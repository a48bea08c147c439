//! The AppView's HTTP API: `computer.aesthetic.*` XRPC queries over the index, `_health`
//! and Prometheus `/metrics`. Responses are the lexicons' generated output types
//! (`lexicons/computer/aesthetic/{feed,actor}/`), so the JSON cannot drift from them.
//!
//! Query parameters are read from the raw query string, because XRPC repeats a key for
//! array parameters (`collections=a&collections=b`), which serde's URL-encoded format does
//! not express. Every bad parameter gets `400 InvalidRequest` naming it; an unknown record
//! or actor gets `404 NotFound`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{Shared, notifications};
use crate::relay::lexicons::generated::computer::aesthetic::feed::{
    get_atmosphere, get_author_feed, get_record, get_remixes, search_records,
};
use crate::store::{FeedQuery, Labelers, MAX_PAGE, Store};

/// Collections a feed query may name at most.
const MAX_COLLECTIONS: usize = 10;
/// The page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let queries = Router::new()
        .route("/", get(super::page::atmosphere))
        .route(
            "/xrpc/computer.aesthetic.feed.getAtmosphere",
            get(get_atmosphere),
        )
        .route(
            "/xrpc/computer.aesthetic.feed.getAuthorFeed",
            get(get_author_feed),
        )
        .route("/xrpc/computer.aesthetic.feed.getRecord", get(get_record))
        .route(
            "/xrpc/computer.aesthetic.feed.getRemixes",
            get(get_remixes_handler),
        )
        .route(
            "/xrpc/computer.aesthetic.feed.searchRecords",
            get(search_records_handler),
        )
        .route(
            "/xrpc/computer.aesthetic.actor.getProfile",
            get(get_profile),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            cached,
        ))
        // Outside the cache, so cached answers say which labelers they applied too.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            content_labelers,
        ))
        // Outside the cache, so hits are timed too.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            timed,
        ));
    // Per-viewer answers: never cached.
    let per_viewer = Router::new()
        .route(
            "/xrpc/computer.aesthetic.feed.getFollowing",
            get(notifications::following),
        )
        .route(
            "/xrpc/computer.aesthetic.notification.listNotifications",
            get(notifications::list),
        )
        .route(
            "/xrpc/computer.aesthetic.notification.getUnreadCount",
            get(notifications::unread_count),
        )
        .route(
            "/xrpc/computer.aesthetic.notification.updateSeen",
            post(notifications::seen),
        )
        .route(
            &format!("/xrpc/{}", notifications::SUBSCRIBE),
            get(notifications::subscribe),
        );
    let signin = match &shared.signin {
        Some(signin) => super::signin::routes(Arc::clone(signin)),
        None => Router::new(),
    };
    let publish = match &shared.publisher {
        Some(publisher) => crate::publish::routes(Arc::clone(publisher)),
        None => Router::new(),
    };
    let reports = super::report::routes(&shared);
    Router::new()
        .route("/xrpc/_health", get(health))
        .route("/metrics", get(metrics))
        .merge(queries)
        .merge(per_viewer)
        .merge(signin)
        .merge(publish)
        .merge(reports)
        .merge(super::kit::routes())
        .with_state(shared)
}

/// The request header naming the labelers a client accepts
/// (`did:plc:a;redact, did:plc:b`).
const ACCEPT_LABELERS: &str = "atproto-accept-labelers";
/// The response header naming the labelers applied, in the same form.
const CONTENT_LABELERS: &str = "atproto-content-labelers";
/// Labelers read from one `atproto-accept-labelers` header at most.
const MAX_ACCEPT_LABELERS: usize = 20;

/// The label sources a request accepts: `None` without an `atproto-accept-labelers`
/// header (every configured source applies, redacting); otherwise the configured sources
/// it names, in its order, `;redact` marking those whose hiding labels remove content.
/// Sources that are not configured, malformed entries and unknown parameters are ignored.
pub(super) fn accepted_labelers(
    shared: &Shared,
    headers: &axum::http::HeaderMap,
) -> Option<Labelers> {
    let value = headers.get(ACCEPT_LABELERS)?;
    let configured = shared.labels.sources();
    Some(parse_accept_labelers(value.to_str().unwrap_or(""), |did| {
        configured.contains_key(did)
    }))
}

/// An `atproto-accept-labelers` value: the DIDs `configured` knows, each once, in order,
/// at most [`MAX_ACCEPT_LABELERS`] entries read.
fn parse_accept_labelers(value: &str, configured: impl Fn(&str) -> bool) -> Labelers {
    let mut labelers = Labelers::default();
    for entry in value.split(',').take(MAX_ACCEPT_LABELERS) {
        let mut parts = entry.split(';').map(str::trim);
        let Some(did) = parts.next().filter(|d| configured(d)) else {
            continue;
        };
        if labelers.accept.iter().any(|a| a == did) {
            continue;
        }
        labelers.accept.push(did.to_owned());
        if parts.any(|p| p.eq_ignore_ascii_case("redact")) {
            labelers.redact.push(did.to_owned());
        }
    }
    labelers
}

/// Answers every query with `atproto-content-labelers`: the labelers applied (`;redact`
/// on those whose hiding labels removed content), when any.
async fn content_labelers(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let applied: Vec<String> = match accepted_labelers(&shared, request.headers()) {
        Some(l) => l
            .accept
            .iter()
            .map(|did| {
                if l.redact.contains(did) {
                    format!("{did};redact")
                } else {
                    did.clone()
                }
            })
            .collect(),
        None => shared
            .labels
            .sources()
            .into_keys()
            .map(|did| format!("{did};redact"))
            .collect(),
    };
    let mut response = next.run(request).await;
    if !applied.is_empty()
        && let Ok(value) = axum::http::HeaderValue::from_str(&applied.join(","))
    {
        response.headers_mut().insert(CONTENT_LABELERS, value);
    }
    response
}

/// Largest response body the cache reads back to keep.
const MAX_CACHED_BODY: usize = 4 << 20;

/// Serves a query from the response cache when the index has not changed since it was
/// computed; otherwise computes it and keeps a successful answer (see `cache.rs`).
async fn cached(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !shared.cache.enabled() {
        return next.run(request).await;
    }
    // The accepted labelers change the answer: they are part of the key.
    let accept = request
        .headers()
        .get(ACCEPT_LABELERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = format!(
        "{}\n{accept}",
        request.uri().path_and_query().map_or("", |p| p.as_str())
    );
    // Both counters only grow, so their sum changes whenever either does: a batch of
    // ingest or a label commit.
    let generation = shared
        .stats
        .batches
        .load(Ordering::Acquire)
        .wrapping_add(shared.labels.generation.load(Ordering::Acquire));
    if let Some(body) = shared.cache.get(&key, generation) {
        shared.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_CACHED_BODY).await {
        Ok(bytes) => {
            shared.cache.put(key, generation, bytes.clone());
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(e) => XrpcError::internal(e).into_response(),
    }
}

/// An XRPC error response.
#[derive(Debug)]
pub(super) struct XrpcError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl XrpcError {
    pub(super) fn new(status: StatusCode, error: &'static str, message: String) -> XrpcError {
        XrpcError {
            status,
            error,
            message,
        }
    }

    pub(super) fn invalid(message: impl Into<String>) -> XrpcError {
        XrpcError {
            status: StatusCode::BAD_REQUEST,
            error: "InvalidRequest",
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> XrpcError {
        XrpcError {
            status: StatusCode::NOT_FOUND,
            error: "NotFound",
            message: message.into(),
        }
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> XrpcError {
        tracing::error!(error = %e, "query failed");
        XrpcError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "InternalServerError",
            message: "the index could not be read".to_owned(),
        }
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "error": self.error, "message": self.message })),
        )
            .into_response()
    }
}

/// The query string's parameters, in order, repeated keys kept.
#[derive(Debug)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(raw: Option<&str>) -> Params {
        Params(
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn one(&self, name: &str) -> Result<Option<&str>, XrpcError> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(XrpcError::invalid(format!("`{name}` may be given once")));
        }
        Ok(first.map(String::as_str))
    }

    fn required(&self, name: &str) -> Result<&str, XrpcError> {
        self.one(name)?
            .ok_or_else(|| XrpcError::invalid(format!("`{name}` is required")))
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(super) fn limit(&self) -> Result<usize, XrpcError> {
        match self.one("limit")? {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
                _ => Err(XrpcError::invalid(format!(
                    "`limit` must be an integer from 1 to {MAX_PAGE}, got {v:?}"
                ))),
            },
        }
    }

    fn did(&self, name: &str) -> Result<String, XrpcError> {
        let did = self.required(name)?;
        if !did.starts_with("did:") || did.len() > 2048 || did.contains(char::is_whitespace) {
            return Err(XrpcError::invalid(format!(
                "`{name}` must be a DID, got {did:?}"
            )));
        }
        Ok(did.to_owned())
    }

    /// A feed query from `collections`, `limit`, `cursor`.
    pub(super) fn feed(&self) -> Result<FeedQuery, XrpcError> {
        let collections: Vec<String> = self
            .all("collections")
            .into_iter()
            .map(str::to_owned)
            .collect();
        if collections.len() > MAX_COLLECTIONS {
            return Err(XrpcError::invalid(format!(
                "`collections` may name at most {MAX_COLLECTIONS}"
            )));
        }
        if let Some(bad) = collections
            .iter()
            .find(|c| !c.starts_with(crate::index::AC_PREFIX))
        {
            return Err(XrpcError::invalid(format!(
                "`collections` must be computer.aesthetic.* NSIDs, got {bad:?}"
            )));
        }
        Ok(FeedQuery {
            collections,
            author: None,
            remix_of: None,
            following_of: None,
            search: None,
            labelers: None,
            cursor: self.one("cursor")?.map(str::to_owned),
            limit: self.limit()?,
        })
    }
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let seq = shared.stats.committed_seq.load(Ordering::Relaxed);
    let label_sources: Vec<serde_json::Value> = shared
        .labels
        .sources()
        .into_iter()
        .map(|(did, s)| {
            json!({
                "did": did,
                "cursor": s.cursor,
                "connected": s.connected,
                "lastError": s.last_error,
            })
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "source": shared.source,
        "committedSeq": (seq >= 0).then_some(seq),
        "labelSources": label_sources,
    }))
    .into_response()
}

async fn get_atmosphere(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let mut query = Params::parse(raw.as_deref()).feed()?;
        query.labelers = labelers;
        let page = shared
            .store
            .feed(&query)
            .await
            .map_err(XrpcError::internal)?;
        Ok(get_atmosphere::Output {
            records: page.records,
            cursor: page.cursor,
        })
    }
    .await;
    respond(result)
}

async fn get_author_feed(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let params = Params::parse(raw.as_deref());
        let mut query = params.feed()?;
        query.author = Some(params.did("actor")?);
        query.labelers = labelers;
        let page = shared
            .store
            .feed(&query)
            .await
            .map_err(XrpcError::internal)?;
        Ok(get_author_feed::Output {
            records: page.records,
            cursor: page.cursor,
        })
    }
    .await;
    respond(result)
}

async fn get_record(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let params = Params::parse(raw.as_deref());
        let uri = params.required("uri")?;
        if !uri.starts_with("at://") {
            return Err(XrpcError::invalid(format!(
                "`uri` must be an at:// URI, got {uri:?}"
            )));
        }
        let record = shared
            .store
            .record_for(uri, labelers.as_ref())
            .await
            .map_err(XrpcError::internal)?;
        let record = record.ok_or_else(|| XrpcError::not_found(format!("no record {uri}")))?;
        Ok(get_record::Output { record })
    }
    .await;
    respond(result)
}

/// Longest search text.
const MAX_SEARCH: usize = 200;

async fn search_records_handler(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let params = Params::parse(raw.as_deref());
        let q = params.required("q")?.trim();
        if q.is_empty() || q.len() > MAX_SEARCH {
            return Err(XrpcError::invalid(format!(
                "`q` must be 1 to {MAX_SEARCH} bytes"
            )));
        }
        let mut query = params.feed()?;
        query.search = Some(q.to_owned());
        query.labelers = labelers;
        let page = shared
            .store
            .feed(&query)
            .await
            .map_err(XrpcError::internal)?;
        Ok(search_records::Output {
            records: page.records,
            cursor: page.cursor,
        })
    }
    .await;
    respond(result)
}

async fn get_remixes_handler(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let params = Params::parse(raw.as_deref());
        let uri = params.required("uri")?;
        if !uri.starts_with("at://did:") {
            return Err(XrpcError::invalid(format!(
                "`uri` must be an at:// URI with a DID, got {uri:?}"
            )));
        }
        let page = shared
            .store
            .feed(&FeedQuery {
                remix_of: Some(uri.to_owned()),
                labelers: labelers.clone(),
                cursor: params.one("cursor")?.map(str::to_owned),
                limit: params.limit()?,
                ..FeedQuery::default()
            })
            .await
            .map_err(XrpcError::internal)?;
        let record = shared
            .store
            .record_for(uri, labelers.as_ref())
            .await
            .map_err(XrpcError::internal)?;
        if record.is_none() && page.records.is_empty() {
            return Err(XrpcError::not_found(format!(
                "no record {uri}, and nothing indexed remixes it"
            )));
        }
        let remix_of = record
            .as_ref()
            .and_then(|r| r.record.get("remixOf"))
            .and_then(|r| r.get("uri"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let parent = match &remix_of {
            Some(parent) => shared
                .store
                .record_for(parent, labelers.as_ref())
                .await
                .map_err(XrpcError::internal)?,
            None => None,
        };
        Ok(get_remixes::Output {
            remix_of,
            parent,
            remixes: page.records,
            cursor: page.cursor,
        })
    }
    .await;
    respond(result)
}

async fn get_profile(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let labelers = accepted_labelers(&shared, &headers);
    let result = async {
        let did = Params::parse(raw.as_deref()).did("actor")?;
        let actor = shared
            .store
            .actor_for(&did, labelers.as_ref())
            .await
            .map_err(XrpcError::internal)?;
        actor.ok_or_else(|| XrpcError::not_found(format!("no actor {did}")))
    }
    .await;
    respond(result)
}

pub(super) fn respond<T: serde::Serialize>(result: Result<T, XrpcError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let s = &shared.stats;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "atelier_appview_events_total",
        "Stream events handled by ingest.",
        s.events.load(Ordering::Relaxed),
    );
    counter(
        "atelier_appview_batches_total",
        "Batches committed (rows and cursor in one transaction).",
        s.batches.load(Ordering::Relaxed),
    );
    counter(
        "atelier_appview_records_written_total",
        "Records inserted or changed.",
        s.records_written.load(Ordering::Relaxed),
    );
    counter(
        "atelier_appview_records_deleted_total",
        "Records deleted.",
        s.records_deleted.load(Ordering::Relaxed),
    );
    counter(
        "atelier_appview_response_cache_hits_total",
        "Query responses served from the response cache.",
        s.cache_hits.load(Ordering::Relaxed),
    );
    counter(
        "atelier_appview_records_repaired_total",
        "Records indexed with lenient repairs.",
        s.records_repaired.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP atelier_appview_rejected_total Records and frames kept out, by reason.\n\
         # TYPE atelier_appview_rejected_total counter"
    );
    for (reason, n) in s.rejected() {
        let _ = writeln!(
            out,
            "atelier_appview_rejected_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP atelier_appview_records_indexed_total Records written by ingest (created or updated), by collection.\n\
         # TYPE atelier_appview_records_indexed_total counter"
    );
    for (collection, n) in s.indexed() {
        let _ = writeln!(
            out,
            "atelier_appview_records_indexed_total{{collection=\"{collection}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP atelier_appview_repairs_total Lenient repairs made to indexed records, by kind.\n\
         # TYPE atelier_appview_repairs_total counter"
    );
    for (kind, n) in s.repairs() {
        let _ = writeln!(out, "atelier_appview_repairs_total{{kind=\"{kind}\"}} {n}");
    }
    let checks = &s.handle_checks;
    let _ = writeln!(
        out,
        "# HELP atelier_appview_handle_checks_total Handle verifications, by result.\n\
         # TYPE atelier_appview_handle_checks_total counter"
    );
    for (result, n) in [
        ("verified", &checks.verified),
        ("invalid", &checks.invalid),
        ("unreachable", &checks.unreachable),
    ] {
        let _ = writeln!(
            out,
            "atelier_appview_handle_checks_total{{result=\"{result}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP atelier_appview_committed_seq The source seq committed with the index.\n\
         # TYPE atelier_appview_committed_seq gauge\natelier_appview_committed_seq {}",
        s.committed_seq.load(Ordering::Relaxed)
    );
    let labels = &shared.labels;
    let _ = writeln!(
        out,
        "# HELP atelier_appview_labels_applied_total Verified labels stored from label sources (negations included).\n\
         # TYPE atelier_appview_labels_applied_total counter\natelier_appview_labels_applied_total {}",
        labels.applied.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP atelier_appview_labels_rejected_total Labels refused, by source and reason.\n\
         # TYPE atelier_appview_labels_rejected_total counter"
    );
    for ((source, reason), n) in labels.rejected() {
        let _ = writeln!(
            out,
            "atelier_appview_labels_rejected_total{{source=\"{source}\",reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP atelier_appview_label_cursor The last seq applied from each label source.\n\
         # TYPE atelier_appview_label_cursor gauge"
    );
    for (source, status) in labels.sources() {
        if let Some(cursor) = status.cursor {
            let _ = writeln!(
                out,
                "atelier_appview_label_cursor{{source=\"{source}\"}} {cursor}"
            );
        }
    }
    let newest = s.last_commit_time_us.load(Ordering::Relaxed);
    let lag = if newest > 0 {
        (atelier_relay::jetstream::now_us() - newest).max(0) as f64 / 1e6
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "# HELP atelier_appview_ingest_lag_seconds Now minus the time of the newest commit indexed (0 before the first).\n\
         # TYPE atelier_appview_ingest_lag_seconds gauge\n\
         atelier_appview_ingest_lag_seconds {lag:.3}"
    );
    let _ = writeln!(
        out,
        "# HELP atelier_appview_visibility_seconds Publish to visibility: a commit's time to the commit of the batch that indexed it.\n\
         # TYPE atelier_appview_visibility_seconds histogram"
    );
    s.visibility
        .0
        .render(&mut out, "atelier_appview_visibility_seconds", "");
    let _ = writeln!(
        out,
        "# HELP atelier_appview_query_seconds Query handling time by route (response cache hits included).\n\
         # TYPE atelier_appview_query_seconds histogram"
    );
    for (route, histogram) in shared.query_times.snapshot() {
        histogram.render(
            &mut out,
            "atelier_appview_query_seconds",
            &format!("route=\"{route}\""),
        );
    }
    if let Some(signin) = &shared.signin {
        signin.metrics.render(&mut out);
        super::link::render_metrics(signin, &mut out).await;
    }
    if let Some(publisher) = &shared.publisher {
        publisher.render_metrics(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// Times every query by its route.
async fn timed(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // A route layer runs only for matched routes, none of which has path parameters:
    // the path is the route, a bounded set of series.
    let route = request.uri().path().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    shared.query_times.observe(&route, started.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::parse_accept_labelers;
    use crate::store::Labelers;

    #[test]
    fn accept_labelers_header() {
        let configured = |did: &str| ["did:plc:a", "did:plc:b", "did:web:c"].contains(&did);
        let check = |value: &str, accept: &[&str], redact: &[&str]| {
            let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(
                parse_accept_labelers(value, configured),
                Labelers {
                    accept: owned(accept),
                    redact: owned(redact),
                },
                "{value:?}"
            );
        };
        check("", &[], &[]);
        check("did:plc:a", &["did:plc:a"], &[]);
        check(
            " did:plc:b;redact , did:plc:a",
            &["did:plc:b", "did:plc:a"],
            &["did:plc:b"],
        );
        // Unknown sources, parameters and junk are ignored; repeats count once.
        check(
            "did:plc:zzz;redact, did:web:c; foo=1; REDACT, nonsense,, did:web:c",
            &["did:web:c"],
            &["did:web:c"],
        );
    }
}
