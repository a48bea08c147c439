//! `POST /report`: a signed-in user reports a record or an account, and the report goes to
//! the moderation service (the labeler's `com.atproto.moderation.createReport`, which
//! files it in the admin console's queue).
//!
//! How a report travels: the AppView asks the user's PDS, through the OAuth session, for a
//! service token (`com.atproto.server.getServiceAuth`, `aud` = `<labeler DID>#atproto_labeler`,
//! `lxm` = `createReport`), then posts `createReport` to the configured labeler URL with
//! `Authorization: Bearer <token>`. The labeler verifies the token against the user's
//! signing key, so the user is the reporter, exactly as when a report comes from any other
//! ATProto client. The session needs the scope
//! `rpc:com.atproto.moderation.createReport?aud=<labeler DID>%23atproto_labeler`
//! ([`ReportsConfig::required_scope`]; the `#` percent-encoded, the scope's canonical form).
//!
//! Why not the PDS's proxy (`atproto-proxy: <labeler DID>#atproto_labeler` on a
//! `createReport` call to the PDS, the usual client path): the reference PDS fetches the
//! labeler's endpoint with a client that refuses IP-literal hosts whatever its SSRF
//! setting, and the sandbox's labeler is `http://127.0.0.1:PORT`; the proxied call fails
//! with a 500 (`Invalid hostname`). Minting the token and posting it ourselves works with
//! any endpoint and needs the same scope.
//!
//! The labeler URL is the operator's configuration, not user input, so it is fetched with
//! a plain HTTP client (no redirects followed, bounded time), not the SSRF-guarded one.
//!
//! The request is JSON (`{"subject", "reasonType", "reason"}`), never a form: a cross-site
//! page cannot send `Content-Type: application/json` without a CORS preflight the AppView
//! never answers, and an `Origin` header, when present, must be the AppView's public
//! origin. With the `SameSite=Lax` session cookie that is the CSRF defence.
//!
//! A record subject is reported with the CID the AppView indexed (a `strongRef`), so the
//! moderators see the version the user saw; a record the index does not hold is a 404.
//!
//! Answers are `{error, message}` bodies: 401 `AuthRequired` (no session, or it ended),
//! 403 `ScopeMissing` with the `scope` to sign in again for, 400 `InvalidRequest` naming
//! the field, 404 `NotFound`, 502 `UpstreamFailed` when the PDS or the labeler refuses or
//! cannot be reached; 200 carries the labeler's `createReport` output.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::ORIGIN;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::Shared;
use super::signin::{SESSION_COOKIE, cookie_value, origin_allowed};
use crate::oauth::{OAuthError, StoreError, XrpcRequest};
use crate::relay::lexicons::syntax::{is_valid_at_uri, is_valid_did};
use crate::store::Store;

/// The method reports are made with (also the service token's `lxm`).
const CREATE_REPORT: &str = "com.atproto.moderation.createReport";
/// The method that mints the service token.
const GET_SERVICE_AUTH: &str = "com.atproto.server.getServiceAuth";
/// How long the labeler may take to answer (connecting included).
const LABELER_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest labeler answer accepted (a createReport output is a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The DID document service the labeler receives reports at.
const LABELER_SERVICE: &str = "atproto_labeler";
/// The route.
const REPORT_PATH: &str = "/report";
/// The longest `reason`, in characters.
const MAX_REASON_CHARS: usize = 2000;
/// The largest request body: a maximal reason (each character possibly escaped as six
/// `\uXXXX` bytes) and a subject fit with room to spare.
const MAX_BODY_BYTES: usize = 32 * 1024;
/// The reason types a user may pick, by short name; the full token is
/// `com.atproto.moderation.defs#reason` plus the capitalised name.
const REASONS: [(&str, &str); 6] = [
    ("spam", "com.atproto.moderation.defs#reasonSpam"),
    ("violation", "com.atproto.moderation.defs#reasonViolation"),
    ("misleading", "com.atproto.moderation.defs#reasonMisleading"),
    ("sexual", "com.atproto.moderation.defs#reasonSexual"),
    ("rude", "com.atproto.moderation.defs#reasonRude"),
    ("other", "com.atproto.moderation.defs#reasonOther"),
];

/// Where signed-in users' reports go (`appview.reports`): the labeler that runs the
/// moderation queue.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// The labeler's DID: the service tokens' audience is its `#atproto_labeler`
    /// service, and the scope users grant names it.
    pub labeler_did: String,
    /// The labeler's base URL (its `#atproto_labeler` endpoint), where reports are posted.
    pub labeler_url: String,
}

impl ReportsConfig {
    /// The service tokens' `aud`: `<labeler DID>#atproto_labeler`.
    pub fn audience(&self) -> String {
        format!("{}#{LABELER_SERVICE}", self.labeler_did)
    }

    /// The OAuth scope a session needs for reports to this labeler; the AppView's
    /// configured scope must include it.
    pub fn required_scope(&self) -> String {
        required_scope(&self.labeler_did)
    }
}

/// The OAuth scope that lets the AppView report to the labeler `labeler_did` on the
/// user's behalf: `rpc:com.atproto.moderation.createReport?aud=<did>%23atproto_labeler`.
/// The `#` is percent-encoded, as in the scope's canonical form: that is how the PDS
/// names it in a `ScopeMissingError` (it accepts a bare `#` too).
fn required_scope(labeler_did: &str) -> String {
    format!("rpc:{CREATE_REPORT}?aud={labeler_did}%23{LABELER_SERVICE}")
}

/// The report route: served when both sign-in and reports are configured.
pub(crate) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    if shared.signin.is_none() || shared.reports.is_none() {
        return Router::new();
    }
    // The labeler URL is the operator's: a plain client, no redirects, bounded time.
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(LABELER_TIMEOUT)
        .user_agent(concat!("atelier-appview/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "building the reports HTTP client; no /report route");
            return Router::new();
        }
    };
    Router::new().route(
        REPORT_PATH,
        post(
            move |State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                match make_report(&shared, &http, &headers, &body).await {
                    Ok(output) => Json(output).into_response(),
                    Err(error) => error.into_response(),
                }
            },
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// Why a report was not made; each is one `{error, message}` answer.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    /// No session cookie, or its session is gone, signed out or ended at the server.
    #[error("sign in to report")]
    AuthRequired,
    /// The request came from another site.
    #[error("the request came from another origin")]
    CrossOrigin,
    /// The body is not JSON.
    #[error("the request body must be JSON (Content-Type: application/json)")]
    NotJson,
    /// A field is missing or wrong; the message starts with the field.
    #[error("{0}")]
    Invalid(String),
    /// The record is not in the index.
    #[error("{0} is not in the index")]
    NotFound(String),
    /// The session lacks the scope the PDS requires.
    #[error("reporting needs the permission {0:?}: sign in again to allow it")]
    ScopeMissing(String),
    /// The PDS or the labeler refused or could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// Something on our side failed (logged where it happened).
    #[error("the report could not be sent just now")]
    Internal,
}

impl IntoResponse for ReportError {
    fn into_response(self) -> Response {
        let (status, error) = match &self {
            ReportError::AuthRequired => (StatusCode::UNAUTHORIZED, "AuthRequired"),
            ReportError::CrossOrigin => (StatusCode::FORBIDDEN, "CrossOrigin"),
            ReportError::NotJson => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "InvalidRequest"),
            ReportError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            ReportError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ReportError::ScopeMissing(_) => (StatusCode::FORBIDDEN, "ScopeMissing"),
            ReportError::Upstream(_) => (StatusCode::BAD_GATEWAY, "UpstreamFailed"),
            ReportError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
        };
        let mut body = json!({"error": error, "message": self.to_string()});
        if let ReportError::ScopeMissing(scope) = &self {
            body["scope"] = Value::from(scope.as_str());
        }
        (status, Json(body)).into_response()
    }
}

/// `POST /report`: the checks in order (origin, content type, session, body, subject),
/// then the service token and the labeler's `createReport`.
async fn make_report(
    shared: &Shared,
    http: &reqwest::Client,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ReportError> {
    let (Some(signin), Some(reports)) = (&shared.signin, &shared.reports) else {
        return Err(ReportError::Internal);
    };
    let origin = headers.get(ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(origin, &signin.origin) {
        tracing::warn!("refused a report from another origin");
        return Err(ReportError::CrossOrigin);
    }
    if !super::is_json(headers) {
        return Err(ReportError::NotJson);
    }
    let cookie = cookie_value(headers, SESSION_COOKIE).ok_or(ReportError::AuthRequired)?;
    // Held until the session is saved: the call below may refresh its tokens.
    let _lock = signin.session_lock(cookie).lock_owned().await;
    let mut session = match signin.sessions.load(cookie).await {
        Ok(session) => session,
        Err(StoreError::Database(e)) => {
            tracing::error!(error = %e, "loading a session for a report");
            return Err(ReportError::Internal);
        }
        Err(e) => {
            tracing::debug!(error = %e, "a report with a cookie but no usable session");
            return Err(ReportError::AuthRequired);
        }
    };
    let request = parse_request(body)?;
    let subject = match &request.subject {
        Subject::Account(did) => json!({"$type": "com.atproto.admin.defs#repoRef", "did": did}),
        Subject::Record(uri) => {
            let record = shared.store.record(uri).await.map_err(|e| {
                tracing::error!(error = %e, "reading a reported record");
                ReportError::Internal
            })?;
            let record = record.ok_or_else(|| ReportError::NotFound(uri.clone()))?;
            json!({"$type": "com.atproto.repo.strongRef", "uri": uri, "cid": record.cid})
        }
    };
    let mut input = json!({"reasonType": request.reason_type, "subject": subject});
    if let Some(reason) = &request.reason {
        input["reason"] = Value::from(reason.as_str());
    }
    let audience = reports.audience();
    let call = XrpcRequest::query(
        GET_SERVICE_AUTH,
        &[("aud", audience.as_str()), ("lxm", CREATE_REPORT)],
    );
    let minted = signin.client.xrpc(&mut session, &call).await;
    // The call may have refreshed the tokens (the refresh token rotates) or learnt a new
    // DPoP nonce: keep them, whatever the outcome.
    if let Err(e) = signin.sessions.save(cookie, &session).await {
        tracing::error!(did = %session.did, error = %e, "saving a session after a report");
    }
    let minted = minted.map_err(|e| pds_error(&session.did, e))?;
    let Some(token) = minted["token"].as_str() else {
        tracing::warn!(did = %session.did, "getServiceAuth answered no token");
        return Err(ReportError::Upstream(
            "your account's server did not issue a token for the report".into(),
        ));
    };
    let output = post_report(http, &reports.labeler_url, token, &input).await?;
    tracing::info!(did = %session.did, subject = %request.subject.uri(), "report sent");
    Ok(output)
}

/// Posts `input` to the labeler's `createReport` at `labeler_url` with `token`; its output.
async fn post_report(
    http: &reqwest::Client,
    labeler_url: &str,
    token: &str,
    input: &Value,
) -> Result<Value, ReportError> {
    let url = format!("{}/xrpc/{CREATE_REPORT}", labeler_url.trim_end_matches('/'));
    let unreachable = |e: &dyn std::fmt::Display| {
        tracing::warn!(url, error = %e, "the labeler could not be reached");
        ReportError::Upstream("the moderation service could not be reached".into())
    };
    let response = http
        .post(&url)
        .bearer_auth(token)
        .json(input)
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| unreachable(&e))?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(unreachable(&"the answer is too large"));
    }
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        let error = answer["error"].as_str().unwrap_or("Unknown");
        tracing::warn!(url, %status, error, message = ?answer["message"].as_str(), "the labeler refused a report");
        return Err(ReportError::Upstream(format!(
            "the moderation service did not accept the report ({error})"
        )));
    }
    if !answer.is_object() {
        return Err(unreachable(&"the answer is not a JSON object"));
    }
    Ok(answer)
}

/// What a failed call to the user's PDS (the service token) becomes.
fn pds_error(did: &str, error: OAuthError) -> ReportError {
    match error {
        OAuthError::ScopeMissing { scope } => ReportError::ScopeMissing(scope),
        OAuthError::SessionEnded { reason } => {
            tracing::info!(did, reason, "a report from an ended session");
            ReportError::AuthRequired
        }
        OAuthError::Xrpc {
            status,
            error,
            message,
            ..
        } => {
            tracing::warn!(did, status, error, ?message, "getServiceAuth refused");
            ReportError::Upstream(format!(
                "your account's server did not issue a token for the report ({error})"
            ))
        }
        e => {
            tracing::warn!(did, error = %e, "getServiceAuth failed");
            ReportError::Upstream("your account's server could not be reached".into())
        }
    }
}

/// What a report names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    /// An account, by DID.
    Account(String),
    /// A record, by AT-URI (`at://did/collection/rkey`).
    Record(String),
}

impl Subject {
    fn uri(&self) -> &str {
        match self {
            Subject::Account(s) | Subject::Record(s) => s,
        }
    }
}

/// A checked request body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportRequest {
    subject: Subject,
    /// The full reason type token.
    reason_type: &'static str,
    reason: Option<String>,
}

/// Checks the body; an error's message starts with the field at fault.
fn parse_request(body: &[u8]) -> Result<ReportRequest, ReportError> {
    let invalid = |m: &str| ReportError::Invalid(m.to_owned());
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| invalid("body: not valid JSON (an object is expected)"))?;
    let Value::Object(fields) = value else {
        return Err(invalid("body: a JSON object is expected"));
    };
    let subject = match string_field(&fields, "subject")? {
        Some(s) if s.starts_with("did:") && is_valid_did(s) => Subject::Account(s.to_owned()),
        Some(s) if is_record_uri(s) => Subject::Record(s.to_owned()),
        Some(_) => {
            return Err(invalid(
                "subject: a DID (did:...) or a record's AT-URI (at://did/collection/rkey) is expected",
            ));
        }
        None => return Err(invalid("subject: missing")),
    };
    let reason_type = match string_field(&fields, "reasonType")? {
        Some(given) => REASONS
            .iter()
            .find(|(short, full)| given == *short || given == *full)
            .map(|(_, full)| *full)
            .ok_or_else(|| {
                invalid(
                    "reasonType: one of spam, violation, misleading, sexual, rude, other (or \
                     its com.atproto.moderation.defs#reason... token) is expected",
                )
            })?,
        None => return Err(invalid("reasonType: missing")),
    };
    let reason = match string_field(&fields, "reason")? {
        Some(text) if text.chars().count() > MAX_REASON_CHARS => {
            return Err(ReportError::Invalid(format!(
                "reason: longer than {MAX_REASON_CHARS} characters"
            )));
        }
        Some(text) if !text.trim().is_empty() => Some(text.to_owned()),
        _ => None,
    };
    Ok(ReportRequest {
        subject,
        reason_type,
        reason,
    })
}

/// `fields[name]` as a string; `None` when absent or null, an error when another type.
fn string_field<'a>(
    fields: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ReportError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ReportError::Invalid(format!(
            "{name}: a string is expected"
        ))),
    }
}

/// Whether `uri` is a valid AT-URI naming one record by DID: `at://did/collection/rkey`.
fn is_record_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("at://") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    is_valid_at_uri(uri) && parts.len() == 3 && is_valid_did(parts[0]) && !parts[2].is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request for `body`, or the error's message.
    fn check(body: &str) -> Result<ReportRequest, String> {
        parse_request(body.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_requests() {
        let did = "did:plc:abcdefghijklmnopqrstuvwx";
        let uri = format!("at://{did}/computer.aesthetic.mood/3kabc");
        let ok = check(&format!(
            r#"{{"subject":"{uri}","reasonType":"rude","reason":"mean"}}"#
        ));
        assert_eq!(
            ok,
            Ok(ReportRequest {
                subject: Subject::Record(uri.clone()),
                reason_type: "com.atproto.moderation.defs#reasonRude",
                reason: Some("mean".to_owned()),
            })
        );
        let ok = check(&format!(
            r#"{{"subject":"{did}","reasonType":"com.atproto.moderation.defs#reasonSpam"}}"#
        ));
        assert_eq!(
            ok.map(|r| (r.subject, r.reason_type, r.reason)),
            Ok((
                Subject::Account(did.to_owned()),
                "com.atproto.moderation.defs#reasonSpam",
                None
            ))
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        let cases = [
            ("[]".to_owned(), "body:"),
            ("not json".to_owned(), "body:"),
            (r#"{"reasonType":"spam"}"#.to_owned(), "subject: missing"),
            (format!(r#"{{"subject":"{did}"}}"#), "reasonType: missing"),
            (
                format!(r#"{{"subject":"{did}","reasonType":"nasty"}}"#),
                "reasonType:",
            ),
            (
                format!(r#"{{"subject":"{did}","reasonType":"com.example#reasonSpam"}}"#),
                "reasonType:",
            ),
            (
                format!(r#"{{"subject":"{did}","reasonType":7}}"#),
                "reasonType: a string",
            ),
            (
                r#"{"subject":"alice.test","reasonType":"spam"}"#.to_owned(),
                "subject:",
            ),
            (
                format!(r#"{{"subject":"at://{did}","reasonType":"spam"}}"#),
                "subject:",
            ),
            (
                format!(
                    r#"{{"subject":"at://{did}/computer.aesthetic.mood","reasonType":"spam"}}"#
                ),
                "subject:",
            ),
            (
                format!(r#"{{"subject":"{did}","reasonType":"spam","reason":"{long}"}}"#),
                "reason: longer",
            ),
        ];
        for (body, want) in cases {
            match check(&body) {
                Err(message) => assert!(message.starts_with(want), "{body}: {message}"),
                Ok(request) => panic!("{body}: accepted as {request:?}"),
            }
        }
    }

    #[test]
    fn content_types() {
        let cases = [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("text/plain"), false),
            (Some("application/x-www-form-urlencoded"), false),
            (None, false),
        ];
        for (value, want) in cases {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static(v),
                );
            }
            assert_eq!(super::super::is_json(&headers), want, "{value:?}");
        }
    }

    #[test]
    fn scope_names_the_labeler_service() {
        assert_eq!(
            required_scope("did:plc:abc"),
            "rpc:com.atproto.moderation.createReport?aud=did:plc:abc%23atproto_labeler"
        );
    }
}
