//! The index store: one trait, one implementation per database (SQLite now; Postgres is the
//! next backend, with its own migrations under `migrations/postgres`).
//!
//! Writes come in batches ([`Store::apply`]): a batch's changes and the source's cursor are
//! committed in one transaction, so after a crash the stream resumes exactly where the rows
//! stop, and replaying a batch is harmless (upserts keyed by AT-URI are no-ops at the same
//! CID).

mod sqlite;

use std::future::Future;

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

/// An actor as queries return it (`computer.aesthetic.actor.defs#profileView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::actor::defs::{
    CollectionCount, ProfileView,
};
/// A record as queries return it (`computer.aesthetic.feed.defs#recordView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::feed::defs::RecordView;

/// A page of records and the cursor for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, newest first.
    pub records: Vec<RecordView>,
    /// Pass back as [`FeedQuery::cursor`] for the next page; `None` at the end.
    pub cursor: Option<String>,
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

    /// Records newest first (by `created_at`, then most recently indexed first), authors inactive left out.
    fn feed(&self, query: &FeedQuery) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// One actor with counts, or `None` if never seen.
    fn actor(
        &self,
        did: &str,
    ) -> impl Future<Output = Result<Option<ProfileView>, StoreError>> + Send;

    /// Every stored record's `(uri, cid)`, in URI order (for consistency checks and
    /// backfill comparison).
    fn record_cids(&self)
    -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
}
