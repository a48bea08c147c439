//! The publishing API's calls to the user's PDS, through their OAuth session, with
//! transient failures retried under one budget.
//!
//! Which failures are transient: the PDS unreachable (connection refused, reset, timed
//! out), a 5xx answer, or 429. Everything else (a refused record, a missing scope, an
//! ended session) is answered at once. A record write is retried under the record key
//! claimed in the publishing log, so a write that reached the PDS but whose answer was
//! lost comes back as "already exists" on the retry; [`create_record`] then reads the
//! record and accepts it when its CID is the one computed here.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{PublishError, Publisher};
use crate::oauth::{OAuthError, Progress, Session, XrpcRequest};

/// The first retry's delay; each next one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);

/// Whether `e` may pass if the call is made again.
pub fn is_transient(e: &OAuthError) -> bool {
    match e {
        OAuthError::Transport { .. } => true,
        OAuthError::Xrpc { status, .. } | OAuthError::Server { status, .. } => {
            *status >= 500 || *status == 429
        }
        _ => false,
    }
}

/// Whether the PDS refused a write because a blob it refers to is unknown (the reference
/// PDS: `InvalidRequest` "Could not find blob: CID", error name `BlobNotFound`).
fn is_blob_not_found(e: &OAuthError) -> bool {
    match e {
        OAuthError::Xrpc { error, message, .. } => {
            error == "BlobNotFound"
                || message
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("could not find blob"))
        }
        _ => false,
    }
}

/// The publish error an OAuth-side error becomes.
pub fn publish_error(e: OAuthError) -> PublishError {
    match e {
        OAuthError::ScopeMissing { scope } => PublishError::ScopeMissing { scope },
        OAuthError::SessionEnded { .. } => PublishError::AuthRequired(e.to_string()),
        e if is_transient(&e) => PublishError::Unavailable(e.to_string()),
        OAuthError::Xrpc { .. } => PublishError::Upstream(e.to_string()),
        e => PublishError::Upstream(e.to_string()),
    }
}

impl Publisher {
    /// Calls `request` on the session's PDS, retrying transient failures with backoff
    /// until the configured budget is spent.
    pub(crate) async fn call(
        &self,
        session: &mut Session,
        request: &XrpcRequest,
    ) -> Result<Value, OAuthError> {
        let deadline = Instant::now() + self.config.retry_for;
        let mut delay = FIRST_DELAY;
        loop {
            match self.signin.client.xrpc(session, request).await {
                Err(e) if is_transient(&e) && Instant::now() + delay < deadline => {
                    tracing::warn!(nsid = %request.nsid, error = %e, retry_in = ?delay, "PDS call failed; retrying");
                    self.metrics.retried();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_DELAY);
                }
                result => return result,
            }
        }
    }

    /// Creates `record` at `did/collection/rkey` (whose CID is `cid`), retried; a
    /// record already there with the same CID counts as created (an earlier attempt's
    /// answer was lost). Returns the URI.
    pub(crate) async fn create_record(
        &self,
        session: &mut Session,
        collection: &str,
        rkey: &str,
        record: &Value,
        cid: &str,
    ) -> Result<String, PublishError> {
        let did = session.did.clone();
        let request = XrpcRequest::procedure(
            "com.atproto.repo.createRecord",
            json!({"repo": did, "collection": collection, "rkey": rkey, "record": record}),
        );
        match self.call(session, &request).await {
            Ok(out) => {
                let got = out["cid"].as_str().unwrap_or_default();
                if got != cid {
                    // The PDS encodes records as the spec says; a different CID means it
                    // stored something else than asked (e.g. normalised a field).
                    tracing::warn!(%collection, %rkey, ours = %cid, theirs = %got, "the PDS stored a different CID");
                }
                Ok(out["uri"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("at://{did}/{collection}/{rkey}")))
            }
            Err(e @ (OAuthError::ScopeMissing { .. } | OAuthError::SessionEnded { .. })) => {
                Err(publish_error(e))
            }
            Err(e) if is_blob_not_found(&e) => Err(PublishError::BlobNotFound),
            Err(e) => {
                // Already there from an attempt whose answer was lost?
                match self.stored_cid(session, collection, rkey).await {
                    Some(stored) if stored == cid => {
                        tracing::info!(%collection, %rkey, "record already written by an earlier attempt");
                        Ok(format!("at://{did}/{collection}/{rkey}"))
                    }
                    _ => Err(publish_error(e)),
                }
            }
        }
    }

    /// The CID of the session account's record at `collection/rkey`, if it exists.
    async fn stored_cid(
        &self,
        session: &mut Session,
        collection: &str,
        rkey: &str,
    ) -> Option<String> {
        let did = session.did.clone();
        let request = XrpcRequest::query(
            "com.atproto.repo.getRecord",
            &[("repo", &did), ("collection", collection), ("rkey", rkey)],
        );
        let out = self.call(session, &request).await.ok()?;
        out["cid"].as_str().map(str::to_owned)
    }

    /// Deletes the session account's record at `collection/rkey` (a missing record is
    /// not an error: the delete is idempotent).
    pub(crate) async fn delete_record(
        &self,
        session: &mut Session,
        collection: &str,
        rkey: &str,
    ) -> Result<(), PublishError> {
        let did = session.did.clone();
        let request = XrpcRequest::procedure(
            "com.atproto.repo.deleteRecord",
            json!({"repo": did, "collection": collection, "rkey": rkey}),
        );
        self.call(session, &request)
            .await
            .map(|_| ())
            .map_err(publish_error)
    }

    /// Uploads `data` (of type `mime`) as a blob, reporting progress; returns the blob
    /// reference the PDS answered.
    pub(crate) async fn upload_blob(
        &self,
        session: &mut Session,
        mime: &str,
        data: bytes::Bytes,
        progress: Option<Progress>,
    ) -> Result<Value, PublishError> {
        let mut request = XrpcRequest::upload("com.atproto.repo.uploadBlob", mime, data);
        if let Some(progress) = progress {
            request = request.with_progress(progress);
        }
        let out = self.call(session, &request).await.map_err(publish_error)?;
        let blob = out["blob"].clone();
        if blob["ref"]["$link"].as_str().is_none() {
            return Err(PublishError::Upstream(
                "uploadBlob answered without a blob reference".into(),
            ));
        }
        Ok(blob)
    }
}
