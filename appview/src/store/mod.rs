//! The index store: one trait, one implementation per database (SQLite now; Postgres is the
//! next backend, with its own migrations under `migrations/postgres`).
//!
//! Writes come in batches ([`Store::apply`]): a batch's changes and the source's cursor are
//! committed in one transaction, so after a crash the stream resumes exactly where the rows
//! stop, and replaying a batch is harmless (upserts keyed by AT-URI are no-ops at the same
//! CID).

mod sqlite;

use std::future::Future;

use serde::Serialize;
use serde_json::Value;

pub use sqlite::SqliteStore;

use crate::index::Change;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value did not parse (a bug or a damaged database).
    #[error("stored {what} is malformed: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The parse error.
        detail: String,
    },
    /// The database file's directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What one [`Store::apply`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Records inserted or changed (same-CID upserts are not counted).
    pub records_written: u64,
    /// Records deleted.
    pub records_deleted: u64,
}

/// Which records a feed query returns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedQuery {
    /// Only these collections (all AC collections when empty).
    pub collections: Vec<String>,
    /// Only this author.
    pub author: Option<String>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size (capped by the store at [`MAX_PAGE`]).
    pub limit: usize,
}

/// The largest page any query returns.
pub const MAX_PAGE: usize = 100;

/// A record as queries return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordView {
    /// The record's URI.
    pub uri: String,
    /// Its CID.
    pub cid: String,
    /// The author's DID.
    pub did: String,
    /// The author's handle, if known.
    pub handle: Option<String>,
    /// The record's NSID.
    pub collection: String,
    /// When the author says it was made.
    pub created_at: Option<String>,
    /// The record (after lenient repairs).
    pub record: Value,
    /// What was repaired on ingest.
    pub repairs: Vec<String>,
}

/// A page of records and the cursor for the next one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// The records, newest first.
    pub records: Vec<RecordView>,
    /// Pass back as [`FeedQuery::cursor`] for the next page; `None` at the end.
    pub cursor: Option<String>,
}

/// An actor as queries return it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActorView {
    /// The DID.
    pub did: String,
    /// The handle last announced.
    pub handle: Option<String>,
    /// Whether the account is active at its host.
    pub active: bool,
    /// Why not, when not (`takendown`, `deactivated`, ...).
    pub status: Option<String>,
    /// Profile display name.
    pub display_name: Option<String>,
    /// Profile description.
    pub description: Option<String>,
    /// Profile avatar blob CID.
    pub avatar_cid: Option<String>,
    /// Indexed records per collection.
    pub counts: Vec<(String, u64)>,
    /// How many AC accounts follow this one.
    pub followers: u64,
}

/// The index store the ingester writes and the API reads.
pub trait Store: Send + Sync + 'static {
    /// Applies `changes` in order and moves `source`'s cursor to `seq`, atomically.
    fn apply(
        &self,
        changes: &[Change],
        cursor: Option<(&str, i64)>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Where `source` was read up to.
    fn cursor(&self, source: &str) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// One record by URI (hidden if its author is inactive).
    fn record(
        &self,
        uri: &str,
    ) -> impl Future<Output = Result<Option<RecordView>, StoreError>> + Send;

    /// Records newest first (by `created_at`, then URI), authors inactive left out.
    fn feed(&self, query: &FeedQuery) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// One actor with counts, or `None` if never seen.
    fn actor(
        &self,
        did: &str,
    ) -> impl Future<Output = Result<Option<ActorView>, StoreError>> + Send;

    /// Every stored record's `(uri, cid)`, in URI order (for consistency checks and
    /// backfill comparison).
    fn record_cids(&self)
    -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}
