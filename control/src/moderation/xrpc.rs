//! `POST /xrpc/com.atproto.moderation.createReport`: reports from the network.
//!
//! A user reports through their own PDS, which proxies the call to us
//! (`atproto-proxy: <our DID>#atproto_labeler`) with a service JWT it signs with the user's
//! key. The reference PDS names `<did>#atproto_labeler` as the token's `aud` (older
//! versions sent the bare DID); [`ServiceAuth`] configured with the fragment form accepts
//! both and nothing else. The token must also be bound to this method (`lxm`).
//!
//! The order of checks: authentication first (401 with the verifier's XRPC error name,
//! e.g. `BadJwtAudience`, `JwtExpired`, `AuthMissing`), so an anonymous caller learns
//! nothing else; then the body, strictly against the lexicon: a JSON object, `reasonType`
//! a reason type, `reason` a string within the lexicon's limits, `subject` a `repoRef` or a
//! `strongRef` (with both `uri` and `cid`) whose parts are valid, `modTool` an object if
//! present. A bad body is a 400 `InvalidRequest` whose message starts with the field at
//! fault (`subject.uri: ...`). Fields the lexicon does not declare are ignored, as lexicon
//! evolution rules require of servers (new optional fields such as `modTool` appear over
//! time). Store failures are logged and answered with a generic 500.

use atelier_appview::auth::{AuthError, ServiceAuth};
use atelier_relay::sync::identity::Resolver;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};

use super::report::{NewReport, ReasonType, ReportError, ReportSource};
use super::store::{ModerationStore, StoreError};
use super::subject::{REPO_REF, STRONG_REF, SubjectError, SubjectRef};

/// The method's NSID, also the `lxm` its tokens must carry.
pub const CREATE_REPORT: &str = "com.atproto.moderation.createReport";

/// The largest request body: a maximal reason (20,000 bytes, each possibly escaped as six
/// `\uXXXX` characters) plus the subject fits with room to spare.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// The service id reports are proxied to.
const LABELER_SERVICE: &str = "atproto_labeler";

/// What the handler needs.
#[derive(Debug, Clone)]
struct ReportService {
    store: ModerationStore,
    auth: ServiceAuth,
}

/// The `aud` createReport tokens name: `<service_did>#atproto_labeler`.
pub fn report_audience(service_did: &str) -> String {
    format!("{service_did}#{LABELER_SERVICE}")
}

/// The createReport route, storing into `store`, verifying tokens addressed to
/// `service_did` (normally the labeler's DID: reports are proxied to its
/// `#atproto_labeler` service) with issuers' keys found through `resolver`.
pub fn xrpc_router(store: ModerationStore, resolver: Resolver, service_did: &str) -> Router {
    let service = ReportService {
        store,
        auth: ServiceAuth::new(resolver, report_audience(service_did)),
    };
    Router::new()
        .route(&format!("/xrpc/{CREATE_REPORT}"), post(create_report))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

async fn create_report(
    State(service): State<ReportService>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let reporter = match authenticate(&service.auth, &headers).await {
        Ok(did) => did,
        Err(error) => return auth_error(&error),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return xrpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(rejection) => return invalid_request(rejection.body_text()),
    };
    if !is_json(&headers) {
        return invalid_request("Content-Type: must be application/json");
    }
    let report = match parse_input(&body, reporter) {
        Ok(report) => report,
        Err(message) => return invalid_request(message),
    };
    match service.store.add_report(report).await {
        Ok(report) => Json(report.to_output_json()).into_response(),
        Err(StoreError::InvalidReport(error)) => invalid_request(error.to_string()),
        Err(error) => {
            tracing::error!(%error, "createReport: storing the report failed");
            xrpc_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "internal error",
            )
        }
    }
}

/// The reporter's DID, from a verified `Authorization: Bearer` service token.
async fn authenticate(auth: &ServiceAuth, headers: &HeaderMap) -> Result<String, AuthError> {
    let header = match headers.get(AUTHORIZATION) {
        None => {
            return Err(AuthError::Missing {
                reason: "no Authorization header",
            });
        }
        Some(value) => value.to_str().map_err(|_| AuthError::Missing {
            reason: "Authorization header is not ASCII",
        })?,
    };
    let token = ServiceAuth::bearer(header)?;
    Ok(auth.verify(token, Some(CREATE_REPORT)).await?.did)
}

/// Whether the body is declared JSON (`application/json`, any parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The lexicon input as a report from `reporter`; the error message names the field.
/// The reason's length is checked when the report is stored.
fn parse_input(body: &[u8], reporter: String) -> Result<NewReport, String> {
    let input: Value =
        serde_json::from_slice(body).map_err(|e| format!("Input must be JSON: {e}"))?;
    let Value::Object(input) = input else {
        return Err("Input must be an object".to_owned());
    };
    let reason_type = match input.get("reasonType") {
        Some(Value::String(value)) => ReasonType::parse(value).map_err(|e| e.to_string())?,
        Some(_) => return Err("reasonType: must be a string".to_owned()),
        None => return Err("reasonType: required".to_owned()),
    };
    let reason = match input.get("reason") {
        None => None,
        Some(Value::String(reason)) => Some(reason.clone()),
        Some(_) => return Err("reason: must be a string".to_owned()),
    };
    let subject = match input.get("subject") {
        Some(Value::Object(subject)) => parse_subject(subject)?,
        Some(_) => return Err("subject: must be an object".to_owned()),
        None => return Err("subject: required".to_owned()),
    };
    if input.get("modTool").is_some_and(|m| !m.is_object()) {
        return Err("modTool: must be an object".to_owned());
    }
    Ok(NewReport {
        subject,
        reason_type,
        reason,
        source: ReportSource::Atproto { reporter },
    })
}

/// The union `subject`: a `repoRef` or a `strongRef`.
fn parse_subject(subject: &Map<String, Value>) -> Result<SubjectRef, String> {
    let string = |field: &str| match subject.get(field) {
        Some(Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(format!("subject.{field}: must be a string")),
        None => Err(format!("subject.{field}: required")),
    };
    let checked = |result: Result<SubjectRef, SubjectError>| {
        result.map_err(|e| ReportError::Subject(e).to_string())
    };
    match string("$type")? {
        REPO_REF => checked(SubjectRef::account(string("did")?)),
        STRONG_REF => checked(SubjectRef::record(string("uri")?, Some(string("cid")?))),
        other => Err(format!(
            "subject.$type: {other:?} is not supported (expected {REPO_REF} or {STRONG_REF})"
        )),
    }
}

fn auth_error(error: &AuthError) -> Response {
    if let AuthError::IssuerUnavailable { did, source } = error {
        tracing::warn!(%did, error = %source, "createReport: reporter's DID did not resolve");
    }
    xrpc_error(error.status(), error.error_name(), error.to_string())
}

fn invalid_request(message: impl Into<String>) -> Response {
    xrpc_error(StatusCode::BAD_REQUEST, "InvalidRequest", message)
}

/// An XRPC error response `{error, message}`.
fn xrpc_error(status: StatusCode, error: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": error, "message": message.into() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "did:plc:alice000000000000000000";
    const URI: &str = "at://did:plc:bob00000000000000000000/computer.aesthetic.painting/3kabc";
    const CID: &str = "bafyreifxykqhed72s26cr4i64rxvrtofeqrly3j4vjzbkvo3ckkjbxjqtq";

    /// Each body and the start of its error message, or `Ok` for the subject's URI.
    #[test]
    fn inputs() {
        let spam = "com.atproto.moderation.defs#reasonSpam";
        let cases: Vec<(Value, Result<&str, &str>)> = vec![
            (
                json!({"reasonType": spam, "subject": {"$type": REPO_REF, "did": ALICE}}),
                Ok(ALICE),
            ),
            (
                json!({"reasonType": spam, "reason": "x", "modTool": {"name": "t"}, "extra": 1,
                       "subject": {"$type": STRONG_REF, "uri": URI, "cid": CID}}),
                Ok(URI),
            ),
            (json!([]), Err("Input must be an object")),
            (
                json!({"subject": {"$type": REPO_REF, "did": ALICE}}),
                Err("reasonType: required"),
            ),
            (
                json!({"reasonType": 3, "subject": {"$type": REPO_REF, "did": ALICE}}),
                Err("reasonType: must be a string"),
            ),
            (
                json!({"reasonType": "spam", "subject": {"$type": REPO_REF, "did": ALICE}}),
                Err("reasonType: \"spam\" is not a reason type"),
            ),
            (
                json!({"reasonType": spam, "reason": null,
                       "subject": {"$type": REPO_REF, "did": ALICE}}),
                Err("reason: must be a string"),
            ),
            (json!({"reasonType": spam}), Err("subject: required")),
            (
                json!({"reasonType": spam, "subject": ALICE}),
                Err("subject: must be an object"),
            ),
            (
                json!({"reasonType": spam, "subject": {"did": ALICE}}),
                Err("subject.$type: required"),
            ),
            (
                json!({"reasonType": spam, "subject": {"$type": "app.bsky.x", "did": ALICE}}),
                Err("subject.$type: \"app.bsky.x\" is not supported"),
            ),
            (
                json!({"reasonType": spam, "subject": {"$type": REPO_REF, "did": "alice"}}),
                Err("subject.did: "),
            ),
            (
                json!({"reasonType": spam, "subject": {"$type": STRONG_REF, "uri": URI}}),
                Err("subject.cid: required"),
            ),
            (
                json!({"reasonType": spam,
                       "subject": {"$type": STRONG_REF, "uri": "at://bob.test/a.b.c/k", "cid": CID}}),
                Err("subject.uri: must name its repository by DID"),
            ),
            (
                json!({"reasonType": spam, "modTool": "x",
                       "subject": {"$type": REPO_REF, "did": ALICE}}),
                Err("modTool: must be an object"),
            ),
        ];
        for (body, expect) in cases {
            let parsed = parse_input(body.to_string().as_bytes(), ALICE.to_owned());
            match (parsed, expect) {
                (Ok(report), Ok(uri)) => assert_eq!(report.subject.uri(), uri, "{body}"),
                (Err(message), Err(prefix)) => {
                    assert!(message.starts_with(prefix), "{body}: {message}")
                }
                (got, want) => panic!("{body}: expected {want:?}, got {got:?}"),
            }
        }
    }
}
