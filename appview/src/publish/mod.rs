//! The publishing API: signed-in users publish AC records and media to their own PDS
//! through the AppView (`/publish/...`, JSON over HTTP; documented for AC's clients in
//! docs/atproto-integration.md).
//!
//! - [`media`]: what an upload is, sniffed from its bytes, and its size limit;
//! - [`log`]: idempotency keys and uploaded blobs per account (SQLite, beside the
//!   sessions);
//! - [`progress`]: upload progress per idempotency key, for Server-Sent Events;
//! - [`pds`]: the calls to the user's PDS through their OAuth session, retried on
//!   transient failures so that a retry never writes twice;
//! - [`http`]: the routes;
//! - [`reconcile`]: confirms or repairs records the API inserted before the firehose
//!   delivered them.
//!
//! # A record's way
//! The session (cookie `atelier_session`) names the account. The record is checked
//! against AC's lexicons **strictly** (the field at fault is named), its text goes through
//! the safety filter under the deployment's policy (block: 422 naming the field; mask:
//! published masked), and its idempotency key (the client's `Idempotency-Key`, or a fresh
//! one) is claimed in the [`log`] with a record key chosen now. The record is then
//! created at the PDS under that key, retried with backoff on transient failures (a lost
//! answer shows up on the retry as "already exists", and the stored record's CID is
//! compared with the one computed here), and inserted into the index at once as
//! **pending** ([`Change::Optimistic`](crate::index::Change::Optimistic)): visible in
//! every feed before the firehose brings it. When ingest then indexes the record it
//! stops being pending (same CID: confirmed; another CID: repaired by ingest's row); if
//! it never comes, [`reconcile`] asks the PDS and fixes the index.
//!
//! **Architecture Invariant:** nothing here writes to a PDS without a claimed idempotency
//! key, and nothing is written to the index that the PDS did not accept.

pub mod http;
pub mod log;
pub mod media;
pub mod pds;
pub mod progress;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_relay::lexicons::schema::Catalog;
use atelier_relay::sync::identity::Resolver;
use atelier_relay::sync::ssrf::GuardedClient;
use serde_json::{Value, json};

use crate::histogram::{Histogram, QUERY_BUCKETS};
use crate::index::Indexer;
use crate::ingest::IngestStats;
use crate::safety::{Policy, SafetyFilter};
use crate::service::signin::SignIn;
use crate::store::AnyStore;

pub use http::routes;

/// The record types the publishing API writes (AC's media and the follow graph).
pub const COLLECTIONS: &[&str] = &[
    "computer.aesthetic.painting",
    "computer.aesthetic.kidlisp",
    "computer.aesthetic.mood",
    "computer.aesthetic.piece",
    "computer.aesthetic.tape",
    "computer.aesthetic.graph.follow",
];

/// The OAuth scope a deployment that publishes asks for: `atproto`, `repo:` for each of
/// [`COLLECTIONS`], and the blob types it uploads.
pub fn default_scope() -> String {
    let mut scope = String::from("atproto");
    for collection in COLLECTIONS {
        scope.push_str(" repo:");
        scope.push_str(collection);
    }
    scope.push_str(" blob:image/* blob:video/*");
    scope
}

/// The publishing pipeline's settings (`appview.publish`).
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Largest image blob (painting thumbnails), bytes.
    pub max_image_bytes: u64,
    /// Largest video blob (tapes), bytes.
    pub max_video_bytes: u64,
    /// What the safety filter's matches in a record's text do.
    pub text_policy: Policy,
    /// The safety filter (the built-in lists plus the operator's).
    pub filter: SafetyFilter,
    /// How long transient PDS failures are retried before the publish fails.
    pub retry_for: Duration,
    /// How long a published record may stay pending before the reconciler asks the PDS.
    pub confirm_after: Duration,
}

impl Default for PublishConfig {
    fn default() -> PublishConfig {
        PublishConfig {
            max_image_bytes: 1 << 20,
            max_video_bytes: 50 << 20,
            text_policy: Policy::Block,
            filter: SafetyFilter::default(),
            retry_for: Duration::from_secs(30),
            confirm_after: Duration::from_secs(120),
        }
    }
}

/// Why a publish failed: each kind is an HTTP status and an error name in the JSON body
/// `{"error", "message", ...}`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No session, or it has ended (401 `AuthRequired`).
    #[error("{0}")]
    AuthRequired(String),
    /// A request from another origin, or for another account's record (403 `Forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// The session lacks a scope (403 `ScopeMissing`, with `scope`).
    #[error(
        "this needs the permission {scope:?}, which was not granted: sign in again to allow it"
    )]
    ScopeMissing {
        /// The scope to ask for.
        scope: String,
    },
    /// A blob over its type's limit (413 `BlobTooLarge`, with `limit`).
    #[error("{media} uploads are limited to {limit} bytes")]
    BlobTooLarge {
        /// The type.
        media: &'static str,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not an accepted media type, or not what it claims to be (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A collection the API does not publish (400 `UnknownCollection`).
    #[error("{0}")]
    UnknownCollection(String),
    /// The record breaks its lexicon (400 `InvalidRecord`, with `field`).
    #[error("{field}: {message}")]
    InvalidRecord {
        /// The JSON path of the field at fault (`$.mood`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The request is malformed (400 `InvalidRequest`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The safety filter blocks a field's text (422 `TextBlocked`, with `field`).
    #[error("the text of {field} is not allowed here ({message})")]
    TextBlocked {
        /// The field.
        field: String,
        /// The matches, masked.
        message: String,
    },
    /// The idempotency key was used for another request (422 `IdempotencyKeyReused`).
    #[error("this Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    /// The PDS no longer has a blob the record refers to (400 `BlobNotFound`): an upload
    /// that no record referenced in time is removed by the PDS. The deduplication log has
    /// forgotten it, so uploading the same bytes again really uploads them.
    #[error("the PDS does not have a blob this record refers to: upload it again")]
    BlobNotFound,
    /// The PDS refused (502 `UpstreamFailed`).
    #[error("the PDS refused: {0}")]
    Upstream(String),
    /// The PDS could not be reached within the retry budget (503 `PdsUnavailable`).
    #[error("the PDS could not be reached: {0}")]
    Unavailable(String),
    /// Something failed here (500 `InternalError`); details in the log.
    #[error("{0}")]
    Internal(String),
}

impl PublishError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            PublishError::AuthRequired(_) => 401,
            PublishError::Forbidden(_) | PublishError::ScopeMissing { .. } => 403,
            PublishError::BlobTooLarge { .. } => 413,
            PublishError::UnsupportedMediaType(_) => 415,
            PublishError::UnknownCollection(_)
            | PublishError::InvalidRecord { .. }
            | PublishError::InvalidRequest(_)
            | PublishError::BlobNotFound => 400,
            PublishError::TextBlocked { .. } | PublishError::IdempotencyKeyReused => 422,
            PublishError::Upstream(_) => 502,
            PublishError::Unavailable(_) => 503,
            PublishError::Internal(_) => 500,
        }
    }

    /// The error name (also the metrics' `outcome` label).
    pub fn name(&self) -> &'static str {
        match self {
            PublishError::AuthRequired(_) => "AuthRequired",
            PublishError::Forbidden(_) => "Forbidden",
            PublishError::ScopeMissing { .. } => "ScopeMissing",
            PublishError::BlobTooLarge { .. } => "BlobTooLarge",
            PublishError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            PublishError::UnknownCollection(_) => "UnknownCollection",
            PublishError::InvalidRecord { .. } => "InvalidRecord",
            PublishError::InvalidRequest(_) => "InvalidRequest",
            PublishError::TextBlocked { .. } => "TextBlocked",
            PublishError::IdempotencyKeyReused => "IdempotencyKeyReused",
            PublishError::BlobNotFound => "BlobNotFound",
            PublishError::Upstream(_) => "UpstreamFailed",
            PublishError::Unavailable(_) => "PdsUnavailable",
            PublishError::Internal(_) => "InternalError",
        }
    }

    /// The JSON error body.
    pub fn body(&self) -> Value {
        let mut body = json!({"error": self.name(), "message": self.to_string()});
        match self {
            PublishError::ScopeMissing { scope } => body["scope"] = json!(scope),
            PublishError::BlobTooLarge { limit, .. } => body["limit"] = json!(limit),
            PublishError::InvalidRecord { field, .. } | PublishError::TextBlocked { field, .. } => {
                body["field"] = json!(field)
            }
            _ => {}
        }
        body
    }
}

impl From<sqlx::Error> for PublishError {
    fn from(e: sqlx::Error) -> PublishError {
        tracing::error!(error = %e, "publishing log");
        PublishError::Internal("the publishing log failed".into())
    }
}

/// Publishing counters and timings, for `/metrics`.
#[derive(Debug, Default)]
pub struct PublishMetrics {
    /// (kind, outcome) → count.
    outcomes: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Time to answer a successful publish, by kind.
    seconds: Mutex<HashMap<&'static str, Arc<Histogram>>>,
    /// Blob uploads answered from the deduplication log.
    deduplicated: AtomicU64,
    /// Transient PDS failures retried.
    retries: AtomicU64,
    /// Pending records the reconciler settled, by outcome.
    reconciled: Mutex<HashMap<&'static str, u64>>,
}

impl PublishMetrics {
    pub(crate) fn outcome(&self, kind: &'static str, outcome: &'static str) {
        if let Ok(mut m) = self.outcomes.lock() {
            *m.entry((kind, outcome)).or_default() += 1;
        }
    }

    pub(crate) fn took(&self, kind: &'static str, took: Duration) {
        let histogram = match self.seconds.lock() {
            Ok(mut m) => Arc::clone(
                m.entry(kind)
                    .or_insert_with(|| Arc::new(Histogram::new(QUERY_BUCKETS))),
            ),
            Err(_) => return,
        };
        histogram.observe(took);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reconciled(&self, outcome: &'static str) {
        if let Ok(mut m) = self.reconciled.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    /// Appends the metrics in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP atelier_appview_publish_total Publishing API requests by kind and outcome.\n\
             # TYPE atelier_appview_publish_total counter"
        );
        let mut outcomes: Vec<_> = self
            .outcomes
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        outcomes.sort();
        for ((kind, outcome), n) in outcomes {
            let _ = writeln!(
                out,
                "atelier_appview_publish_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP atelier_appview_publish_seconds Time to answer a successful publish, by kind.\n\
             # TYPE atelier_appview_publish_seconds histogram"
        );
        let mut seconds: Vec<_> = self
            .seconds
            .lock()
            .map(|m| m.iter().map(|(k, h)| (*k, Arc::clone(h))).collect())
            .unwrap_or_default();
        seconds.sort_by_key(|(k, _)| *k);
        for (kind, histogram) in seconds {
            histogram.render(
                out,
                "atelier_appview_publish_seconds",
                &format!("kind=\"{kind}\""),
            );
        }
        let _ = writeln!(
            out,
            "# HELP atelier_appview_publish_blobs_deduplicated_total Blob uploads answered without uploading the same bytes again.\n\
             # TYPE atelier_appview_publish_blobs_deduplicated_total counter\n\
             atelier_appview_publish_blobs_deduplicated_total {}",
            self.deduplicated.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP atelier_appview_publish_retries_total Transient PDS failures retried.\n\
             # TYPE atelier_appview_publish_retries_total counter\n\
             atelier_appview_publish_retries_total {}",
            self.retries.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP atelier_appview_publish_reconciled_total Pending records settled by asking the PDS, by outcome.\n\
             # TYPE atelier_appview_publish_reconciled_total counter"
        );
        let mut reconciled: Vec<_> = self
            .reconciled
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default();
        reconciled.sort();
        for (outcome, n) in reconciled {
            let _ = writeln!(
                out,
                "atelier_appview_publish_reconciled_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
    }
}

/// The publishing pipeline: what the routes and the reconciler share.
pub struct Publisher {
    pub(crate) config: PublishConfig,
    pub(crate) signin: Arc<SignIn>,
    pub(crate) store: Arc<AnyStore>,
    pub(crate) stats: Arc<IngestStats>,
    pub(crate) indexer: Indexer,
    pub(crate) catalog: Catalog,
    pub(crate) log: log::PublishLog,
    pub(crate) progress: progress::ProgressHub,
    pub(crate) metrics: PublishMetrics,
    /// Resolves authors' PDSes for the reconciler.
    pub(crate) resolver: Resolver,
    /// Fetches public records for the reconciler.
    pub(crate) guard: GuardedClient,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// The pipeline over the sign-in's sessions and the index `store`.
    pub(crate) async fn new(
        config: PublishConfig,
        signin: Arc<SignIn>,
        store: Arc<AnyStore>,
        stats: Arc<IngestStats>,
        resolver: Resolver,
        guard: GuardedClient,
    ) -> Result<Publisher, String> {
        let log = log::PublishLog::with_pool(signin.sessions.pool().clone())
            .await
            .map_err(|e| format!("publishing log: {e}"))?;
        let indexer = Indexer::new().map_err(|e| format!("lexicons: {e}"))?;
        let catalog = Catalog::builtin().map_err(|e| format!("lexicons: {e}"))?;
        Ok(Publisher {
            config,
            signin,
            store,
            stats,
            indexer,
            catalog,
            log,
            progress: progress::ProgressHub::default(),
            metrics: PublishMetrics::default(),
            resolver,
            guard,
        })
    }

    /// Appends the publishing metrics to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        self.metrics.render(out);
    }

    /// The lock for the session behind `cookie` (shared with the other users of
    /// sessions).
    pub(crate) fn session_lock(&self, cookie: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.signin.session_lock(cookie)
    }
}
