//! The publishing API's routes (JSON over HTTP, the session cookie as credentials):
//!
//! | route | does |
//! |---|---|
//! | `POST /publish/blob` | uploads a PNG/JPEG thumbnail or MP4 tape (raw body), deduplicated by content |
//! | `GET /publish/progress/{key}` | Server-Sent Events of the upload with that `Idempotency-Key` |
//! | `POST /publish/record` | `{collection, record}`: publishes a record (idempotent by `Idempotency-Key`) |
//! | `POST /publish/delete` | `{uri}`: deletes one of the account's records |
//! | `GET /publish/status?uri=&cid=` | `pending`, `confirmed`, `repaired` or `missing` |
//! | `GET /publish/session` | the signed-in account (`did`, `scopes`, latest publishes) |
//!
//! Cross-site request forgery: the state-changing routes accept only bodies a form
//! cannot send (`application/json`, or the media types), and refuse an `Origin` other
//! than the AppView's own.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedMutexGuard;

use super::log::{Begin, BlobRow};
use super::media::{self, Media};
use super::progress::Event;
use super::{PublishError, Publisher};
use crate::index::{Change, text_fields};
use crate::oauth::{Session, StoreError};
use crate::safety::Policy;
use crate::service::signin::{SESSION_COOKIE, cookie_value, origin_allowed};
use crate::store::Store as _;

/// The largest record request body (records are small; KidLisp source is ≤ 50 000
/// characters).
const MAX_RECORD_BODY: usize = 512 * 1024;
/// The largest idempotency key.
const MAX_KEY_LEN: usize = 64;

/// The publishing routes, merged into the AppView's router when publishing is configured.
pub fn routes<S: Clone + Send + Sync + 'static>(publisher: Arc<Publisher>) -> Router<S> {
    // Blob bodies are streamed and limited by their sniffed type, not by axum's default.
    let blob_limit = usize::try_from(
        publisher
            .config
            .max_video_bytes
            .max(publisher.config.max_image_bytes),
    )
    .unwrap_or(usize::MAX)
    .saturating_add(1);
    Router::new()
        .route(
            "/publish/blob",
            post(upload_blob).layer(DefaultBodyLimit::max(blob_limit)),
        )
        .route("/publish/progress/{key}", get(progress))
        .route(
            "/publish/record",
            post(publish_record).layer(DefaultBodyLimit::max(MAX_RECORD_BODY)),
        )
        .route(
            "/publish/delete",
            post(delete_record).layer(DefaultBodyLimit::max(MAX_RECORD_BODY)),
        )
        .route("/publish/status", get(status))
        .route("/publish/session", get(session_info))
        .with_state(publisher)
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn failed(e: &PublishError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, e.body())
}

/// A signed-in request: the session, held under its lock until saved.
struct Authed {
    cookie: String,
    session: Session,
    _lock: OwnedMutexGuard<()>,
}

impl Publisher {
    /// The session behind the request's cookie, locked for this request (its tokens
    /// may be refreshed and saved back).
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Authed, PublishError> {
        let cookie = session_cookie(headers)?;
        let lock = self.session_lock(&cookie).lock_owned().await;
        let session = self.load_session(&cookie).await?;
        Ok(Authed {
            cookie,
            session,
            _lock: lock,
        })
    }

    /// The session behind the request's cookie, read without its lock: for requests
    /// that only need the account (following an upload's progress must not wait for
    /// the upload, which holds the lock).
    async fn viewer(&self, headers: &HeaderMap) -> Result<Session, PublishError> {
        self.load_session(&session_cookie(headers)?).await
    }

    async fn load_session(&self, cookie: &str) -> Result<Session, PublishError> {
        self.signin
            .sessions
            .load(cookie)
            .await
            .map_err(|e| match e {
                StoreError::NotFound | StoreError::Revoked | StoreError::Expired => {
                    PublishError::AuthRequired(format!("sign in again ({e})"))
                }
                e => {
                    tracing::error!(error = %e, "loading a session");
                    PublishError::Internal("the session could not be read".into())
                }
            })
    }

    /// Writes the session back (its tokens or nonces may have changed).
    async fn save(&self, authed: &Authed) {
        if let Err(e) = self
            .signin
            .sessions
            .save(&authed.cookie, &authed.session)
            .await
        {
            tracing::error!(error = %e, "saving a session after a publish");
        }
    }

    /// Refuses a state-changing request from another origin.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), PublishError> {
        let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
        if origin_allowed(origin, &self.signin.origin) {
            Ok(())
        } else {
            Err(PublishError::Forbidden(format!(
                "requests from {} may not publish here",
                origin.unwrap_or("another origin")
            )))
        }
    }
}

/// The session cookie's value.
fn session_cookie(headers: &HeaderMap) -> Result<String, PublishError> {
    cookie_value(headers, SESSION_COOKIE)
        .map(str::to_owned)
        .ok_or_else(|| PublishError::AuthRequired("sign in first (no session)".into()))
}

/// The request's `Idempotency-Key`, checked; `None` if absent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, PublishError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(Some(key.to_owned()))
    } else {
        Err(PublishError::InvalidRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters of A-Z, a-z, 0-9, - and _"
        )))
    }
}

fn fresh_key() -> Result<String, PublishError> {
    crate::oauth::dpop::random_token::<16>()
        .map_err(|_| PublishError::Internal("no randomness for a key".into()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A record key: a TID for now, with random clock bits.
fn new_rkey() -> Result<String, PublishError> {
    let mut clock = [0u8; 2];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut clock)
        .map_err(|_| PublishError::Internal("no randomness for a record key".into()))?;
    let micros = u64::try_from(atelier_relay::jetstream::now_us()).unwrap_or(0);
    let clock_id = u64::from(u16::from_be_bytes(clock) & 0x3FF);
    Ok(atelier_relay::sync::verify::format_tid(
        ((micros & ((1 << 53) - 1)) << 10) | clock_id,
    ))
}

// ---------------------------------------------------------------- blobs

async fn upload_blob(
    State(publisher): State<Arc<Publisher>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let key = match idempotency_key(&headers) {
        Ok(k) => k,
        Err(e) => return failed(&e),
    };
    let mut did = None;
    let result = upload(&publisher, &headers, body, key.as_deref(), &mut did).await;
    if let (Some(did), Some(key)) = (&did, &key) {
        let last = match &result {
            Ok(answer) => Event::Done(answer.clone()),
            Err(e) => Event::Failed(e.body()),
        };
        publisher.progress.send(did, key, last);
    }
    answered(&publisher, "blob", started, result)
}

/// The response to a publishing request of `kind` begun at `started`, counted in the
/// metrics (and timed when it succeeded).
fn answered(
    publisher: &Publisher,
    kind: &'static str,
    started: Instant,
    result: Result<Value, PublishError>,
) -> Response {
    match result {
        Ok(answer) => {
            publisher.metrics.outcome(kind, "ok");
            publisher.metrics.took(kind, started.elapsed());
            reply(StatusCode::OK, answer)
        }
        Err(e) => {
            publisher.metrics.outcome(kind, e.name());
            failed(&e)
        }
    }
}

async fn upload(
    publisher: &Arc<Publisher>,
    headers: &HeaderMap,
    body: Body,
    key: Option<&str>,
    did_out: &mut Option<String>,
) -> Result<Value, PublishError> {
    publisher.check_origin(headers)?;
    let declared_text = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let declared = Media::from_mime(declared_text).ok_or_else(|| {
        PublishError::UnsupportedMediaType(format!(
            "Content-Type {declared_text:?} is not accepted: send {}",
            media::ACCEPTED
        ))
    })?;
    let limit_of = |m: Media| {
        if m.is_image() {
            publisher.config.max_image_bytes
        } else {
            publisher.config.max_video_bytes
        }
    };
    let too_large = |m: Media| PublishError::BlobTooLarge {
        media: m.mime(),
        limit: limit_of(m),
    };
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > limit_of(declared)) {
        return Err(too_large(declared));
    }
    let mut authed = publisher.authenticate(headers).await?;
    let did = authed.session.did.clone();
    *did_out = Some(did.clone());

    // Receive, sniffing the first bytes and counting against the sniffed type's limit.
    let mut data = bytes::BytesMut::with_capacity(
        usize::try_from(length.unwrap_or(0).min(limit_of(declared))).unwrap_or(0),
    );
    let mut sniffed: Option<Media> = None;
    let mut stream = body.into_data_stream();
    let mut reported = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| PublishError::InvalidRequest(format!("the upload broke off: {e}")))?;
        data.extend_from_slice(&chunk);
        if sniffed.is_none() && data.len() >= media::SNIFF_BYTES {
            sniffed = Some(sniff(&data, declared)?);
        }
        let limit = limit_of(sniffed.unwrap_or(declared));
        if data.len() as u64 > limit {
            return Err(too_large(sniffed.unwrap_or(declared)));
        }
        let received = data.len() as u64;
        if let Some(key) = key
            && received - reported >= 256 * 1024
        {
            reported = received;
            publisher.progress.send(
                &did,
                key,
                Event::Progress {
                    phase: "receiving",
                    bytes: received,
                    total: length,
                },
            );
        }
    }
    let media = match sniffed {
        Some(m) => m,
        None => sniff(&data, declared)?,
    };
    let data = data.freeze();
    let sha = sha256_hex(&data);
    if let Some(row) = publisher.log.blob(&did, &sha).await? {
        publisher
            .metrics
            .deduplicated
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(json!({"blob": blob_ref(&row), "deduplicated": true}));
    }
    let progress: Option<crate::oauth::Progress> = key.map(|key| {
        let (publisher, did, key) = (Arc::clone(publisher), did.clone(), key.to_owned());
        Arc::new(move |bytes: u64, total: u64| {
            publisher.progress.send(
                &did,
                &key,
                Event::Progress {
                    phase: "uploading",
                    bytes,
                    total: Some(total),
                },
            );
        }) as crate::oauth::Progress
    });
    let uploaded = publisher
        .upload_blob(&mut authed.session, media.mime(), data.clone(), progress)
        .await;
    publisher.save(&authed).await;
    let blob = uploaded?;
    let row = BlobRow {
        cid: blob["ref"]["$link"].as_str().unwrap_or_default().to_owned(),
        mime: media.mime().to_owned(),
        size: i64::try_from(data.len()).unwrap_or(i64::MAX),
    };
    publisher.log.put_blob(&did, &sha, &row).await?;
    Ok(json!({"blob": blob_ref(&row), "deduplicated": false}))
}

/// The sniffed type of `head`, which must be the declared type.
fn sniff(head: &[u8], declared: Media) -> Result<Media, PublishError> {
    match Media::sniff(head) {
        Some(m) if m == declared => Ok(m),
        Some(m) => Err(PublishError::UnsupportedMediaType(format!(
            "the upload says {declared} but its bytes are {m}"
        ))),
        None => Err(PublishError::UnsupportedMediaType(format!(
            "the upload says {declared} but its bytes are not {}",
            media::ACCEPTED
        ))),
    }
}

fn blob_ref(row: &BlobRow) -> Value {
    json!({"$type": "blob", "ref": {"$link": row.cid}, "mimeType": row.mime, "size": row.size})
}

async fn progress(
    State(publisher): State<Arc<Publisher>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let did = match publisher.viewer(&headers).await {
        Ok(session) => session.did,
        Err(e) => return failed(&e),
    };
    let rx = publisher.progress.subscribe(&did, &key);
    let stream = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let event = rx.borrow_and_update().clone();
        let event = if event == Event::Waiting {
            rx.changed().await.ok()?;
            rx.borrow_and_update().clone()
        } else {
            event
        };
        let finished = event.is_final();
        let (name, data) = event.sse();
        let sse = SseEvent::default().event(name).data(data.to_string());
        // Wait for the next change before the next item (unless this was the last).
        if !finished && rx.changed().await.is_err() {
            return Some((Ok::<_, std::convert::Infallible>(sse), (rx, true)));
        }
        Some((Ok(sse), (rx, finished)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

// ---------------------------------------------------------------- records

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordInput {
    collection: String,
    record: Value,
}

async fn publish_record(
    State(publisher): State<Arc<Publisher>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let result = publish(&publisher, &headers, &body).await;
    answered(&publisher, "record", started, result)
}

fn require_json(headers: &HeaderMap) -> Result<(), PublishError> {
    if crate::service::is_json(headers) {
        return Ok(());
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Err(PublishError::UnsupportedMediaType(format!(
        "Content-Type {content_type:?}: send application/json"
    )))
}

async fn publish(
    publisher: &Arc<Publisher>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, PublishError> {
    publisher.check_origin(headers)?;
    require_json(headers)?;
    let key = idempotency_key(headers)?;
    let input: RecordInput = serde_json::from_slice(body)
        .map_err(|e| PublishError::InvalidRequest(format!("the body: {e}")))?;
    let (record, masked) = publisher.prepare(&input.collection, input.record.clone())?;
    let mut authed = publisher.authenticate(headers).await?;
    let did = authed.session.did.clone();
    let key = match key {
        Some(k) => k,
        None => fresh_key()?,
    };
    // The request as sent identifies it (serde_json sorts object keys: canonical).
    let request_hash = sha256_hex(
        json!({"collection": input.collection, "record": input.record})
            .to_string()
            .as_bytes(),
    );
    let rkey = match publisher
        .log
        .begin(
            &did,
            &key,
            "record",
            &request_hash,
            &input.collection,
            &new_rkey()?,
        )
        .await?
    {
        Begin::Done(answer) => return Ok(answer),
        Begin::Conflict => return Err(PublishError::IdempotencyKeyReused),
        Begin::Fresh { rkey } | Begin::Resume { rkey } => rkey,
    };
    let cid = record_cid(&record)?;
    let created = publisher
        .create_record(&mut authed.session, &input.collection, &rkey, &record, &cid)
        .await;
    publisher.save(&authed).await;
    let uri = match created {
        Ok(uri) => uri,
        Err(e) => {
            // Nothing was written unless the PDS could not be reached: only then may a
            // retry under this key find the record there.
            if !matches!(e, PublishError::Unavailable(_)) {
                publisher.log.release(&did, &key).await?;
            }
            if matches!(e, PublishError::BlobNotFound) {
                // The PDS dropped an upload the log still remembers: forget the record's
                // blobs so that uploading the bytes again uploads them.
                for blob in blob_cids(&record) {
                    publisher.log.forget_blob(&did, &blob).await?;
                }
            }
            return Err(e);
        }
    };
    publisher
        .insert_pending(&did, &input.collection, &rkey, &cid, &record)
        .await;
    let answer = json!({"uri": uri, "cid": cid, "status": "pending", "masked": masked});
    publisher.log.finish(&did, &key, &answer).await?;
    Ok(answer)
}

/// The CIDs of the blobs `value` refers to (`{"$type": "blob", "ref": {"$link": CID}}`
/// anywhere in it).
fn blob_cids(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if map.get("$type").and_then(Value::as_str) == Some("blob")
                    && let Some(cid) = map
                        .get("ref")
                        .and_then(|r| r.get("$link"))
                        .and_then(Value::as_str)
                {
                    out.push(cid.to_owned());
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    out
}

/// The CID of a record as the PDS computes it (DAG-CBOR of its IPLD form).
fn record_cid(record: &Value) -> Result<String, PublishError> {
    use atelier_relay::lexicons::data;
    let ipld = data::json_to_ipld(record).map_err(|e| PublishError::InvalidRecord {
        field: "$".into(),
        message: e.to_string(),
    })?;
    let bytes = data::encode_dag_cbor(&ipld).map_err(|e| PublishError::InvalidRecord {
        field: "$".into(),
        message: e.to_string(),
    })?;
    Ok(data::cid_for_dag_cbor(&bytes).to_string())
}

impl Publisher {
    /// Checks `record` for `collection` strictly and applies the text policy; returns
    /// the record to write and the fields masked.
    pub(crate) fn prepare(
        &self,
        collection: &str,
        mut record: Value,
    ) -> Result<(Value, Vec<String>), PublishError> {
        if !super::COLLECTIONS.contains(&collection) {
            return Err(PublishError::UnknownCollection(format!(
                "{collection:?} is not a record type this AppView publishes (one of {})",
                super::COLLECTIONS.join(", ")
            )));
        }
        let Some(object) = record.as_object_mut() else {
            return Err(PublishError::InvalidRecord {
                field: "$".into(),
                message: "a record is a JSON object".into(),
            });
        };
        match object.get("$type") {
            None => {
                object.insert("$type".into(), json!(collection));
            }
            Some(t) if t.as_str() == Some(collection) => {}
            Some(t) => {
                return Err(PublishError::InvalidRecord {
                    field: "$.$type".into(),
                    message: format!("{t} is not {collection}"),
                });
            }
        }
        let mut masked = Vec::new();
        for field in text_fields(collection) {
            let Some(text) = object.get(*field).and_then(Value::as_str) else {
                continue;
            };
            match self.config.filter.apply(self.config.text_policy, text) {
                Ok(out) if out != text => {
                    let out = out.into_owned();
                    object.insert((*field).to_owned(), json!(out));
                    masked.push((*field).to_owned());
                }
                Ok(_) => {}
                Err(blocked) => {
                    return Err(PublishError::TextBlocked {
                        field: format!("$.{field}"),
                        message: format!(
                            "{} {} {}",
                            blocked.matches.len(),
                            if blocked.matches.len() == 1 {
                                "word"
                            } else {
                                "words"
                            },
                            "the safety filter blocks"
                        ),
                    });
                }
            }
        }
        if self.config.text_policy == Policy::Allow {
            masked.clear();
        }
        self.catalog
            .validate_record(
                collection,
                &record,
                atelier_relay::lexicons::validate::Mode::Strict,
            )
            .map_err(|e| PublishError::InvalidRecord {
                field: e.path().unwrap_or("$").to_owned(),
                message: e.to_string(),
            })?;
        Ok((record, masked))
    }

    /// Inserts a record just written into the index as pending (logged, not failed: the
    /// firehose or the reconciler will bring it anyway).
    pub(crate) async fn insert_pending(
        &self,
        did: &str,
        collection: &str,
        rkey: &str,
        cid: &str,
        record: &Value,
    ) {
        match self.indexer.record_row(did, collection, rkey, cid, record) {
            Ok(row) => match self.store.apply(&[Change::Optimistic(row)], None).await {
                Ok(_) => {
                    self.stats.note_commit();
                }
                Err(e) => tracing::error!(error = %e, "optimistic insert failed"),
            },
            Err(rejected) => {
                tracing::warn!(uri = %rejected.uri, detail = %rejected.detail, "published record not indexable");
            }
        }
    }
}

// ---------------------------------------------------------------- delete, status, session

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteInput {
    uri: String,
}

async fn delete_record(
    State(publisher): State<Arc<Publisher>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let started = Instant::now();
    let result = delete(&publisher, &headers, &body).await;
    answered(&publisher, "delete", started, result)
}

async fn delete(
    publisher: &Arc<Publisher>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, PublishError> {
    publisher.check_origin(headers)?;
    require_json(headers)?;
    let input: DeleteInput = serde_json::from_slice(body)
        .map_err(|e| PublishError::InvalidRequest(format!("the body: {e}")))?;
    let (did, collection, rkey) = split_uri(&input.uri).ok_or_else(|| {
        PublishError::InvalidRequest(format!("{:?} is not a record URI", input.uri))
    })?;
    let mut authed = publisher.authenticate(headers).await?;
    if authed.session.did != did {
        return Err(PublishError::Forbidden(format!(
            "{} is not a record of the signed-in account",
            input.uri
        )));
    }
    let deleted = publisher
        .delete_record(&mut authed.session, collection, rkey)
        .await;
    publisher.save(&authed).await;
    deleted?;
    let change = Change::DeleteRecord {
        uri: input.uri.clone(),
    };
    match publisher.store.apply(&[change], None).await {
        Ok(_) => {
            publisher.stats.note_commit();
        }
        Err(e) => tracing::error!(error = %e, "removing a deleted record from the index"),
    }
    Ok(json!({"uri": input.uri, "deleted": true}))
}

/// `at://did/collection/rkey` → its parts.
pub(crate) fn split_uri(uri: &str) -> Option<(&str, &str, &str)> {
    let rest = uri.strip_prefix("at://")?;
    let mut parts = rest.split('/');
    let (did, collection, rkey) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none()
        && did.starts_with("did:")
        && !collection.is_empty()
        && !rkey.is_empty())
    .then_some((did, collection, rkey))
}

#[derive(Deserialize)]
struct StatusQuery {
    uri: String,
    cid: Option<String>,
}

async fn status(
    State(publisher): State<Arc<Publisher>>,
    Query(query): Query<StatusQuery>,
) -> Response {
    match publisher.store.record_state(&query.uri).await {
        Ok(state) => {
            let (cid, status) = match state {
                None => (None, "missing"),
                Some((cid, true)) => (Some(cid), "pending"),
                Some((cid, false)) if query.cid.as_ref().is_some_and(|c| *c != cid) => {
                    (Some(cid), "repaired")
                }
                Some((cid, false)) => (Some(cid), "confirmed"),
            };
            reply(
                StatusCode::OK,
                json!({"uri": query.uri, "cid": cid, "status": status}),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "publish status");
            failed(&PublishError::Internal("the index failed".into()))
        }
    }
}

async fn session_info(State(publisher): State<Arc<Publisher>>, headers: HeaderMap) -> Response {
    let session = match publisher.viewer(&headers).await {
        Ok(s) => s,
        Err(e) => return failed(&e),
    };
    let did = session.did.clone();
    let scopes: Vec<&str> = session.scope.split(' ').collect();
    // The handle as the DID document claims it and verified both ways (cached), as the
    // account page shows it; the index may not know the account yet.
    let resolver = &publisher.signin.resolver;
    let handle = match resolver.resolve_did(&did).await {
        Ok(doc) => {
            let status = resolver.verify_handle(&did, &doc).await;
            status.is_verified().then(|| status.as_str().to_owned())
        }
        Err(_) => None,
    };
    let published = publisher.log.recent(&did, 20).await.unwrap_or_default();
    reply(
        StatusCode::OK,
        json!({"did": did, "handle": handle, "scopes": scopes, "published": published}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_uris_split_into_three_parts() {
        assert_eq!(
            split_uri("at://did:plc:abc/computer.aesthetic.mood/3k"),
            Some(("did:plc:abc", "computer.aesthetic.mood", "3k"))
        );
        assert_eq!(split_uri("at://did:plc:abc/computer.aesthetic.mood"), None);
        assert_eq!(split_uri("at://handle.test/c/r"), None);
        assert_eq!(split_uri("https://x/y/z"), None);
    }

    #[test]
    fn blob_references_are_found_anywhere_in_a_record() {
        let record = json!({
            "thumbnail": {"$type": "blob", "ref": {"$link": "bafkA"}, "mimeType": "image/png", "size": 1},
            "frames": [{"image": {"$type": "blob", "ref": {"$link": "bafkB"}}}],
            "ref": "not a blob",
        });
        let mut cids = blob_cids(&record);
        cids.sort();
        assert_eq!(cids, ["bafkA", "bafkB"]);
    }

    #[test]
    fn record_keys_are_valid_tids() {
        let rkey = new_rkey().expect("rkey");
        assert!(
            atelier_relay::lexicons::syntax::is_valid_tid(&rkey),
            "{rkey}"
        );
    }

    #[test]
    fn idempotency_keys_are_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).ok(), Some(None));
        headers.insert("idempotency-key", "abc-DEF_1".parse().expect("header"));
        assert_eq!(
            idempotency_key(&headers).ok(),
            Some(Some("abc-DEF_1".into()))
        );
        headers.insert("idempotency-key", "no spaces".parse().expect("header"));
        assert!(idempotency_key(&headers).is_err());
    }
}
