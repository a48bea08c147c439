//! The moderation store: subjects and their queue state, reports, comments, muted
//! reporters, the labels moderators applied, and the audit log, in SQLite (sqlx, WAL, its
//! own migrations in `src/moderation/migrations/sqlite`, its own database file).
//!
//! Parts:
//! - here: opening, the write transaction (`WriteTx`) every change goes through, and the
//!   subject row every change starts from;
//! - `reports`: adding reports (muting and reopening rules);
//! - `effects`: what actions change (queue state, assignment, comments, mutes, the label
//!   mirror);
//! - [`queue`]: the queue listing with filters and cursor pagination, and the subject view;
//! - [`audit`]: appending to the audit log, reading and exporting it.
//!
//! Writes go through one connection (a pool of one), so they queue in-process instead of
//! contending for SQLite's lock; reads use a pool of read-only connections, which WAL lets
//! run beside the writer. A change and its audit entry are always written in one
//! `WriteTx`: either both are committed or neither is.
//!
//! **Architecture Invariant:** the audit log is append-only in the schema itself: triggers
//! abort every `UPDATE` and `DELETE` on it, whatever code runs against the file.
//!
//! The schema uses only what PostgreSQL also has (integer microseconds, `TEXT`, a trigger
//! per forbidden statement), and the queries differ from Postgres's only in placeholders
//! and two spellings (`group_concat` is `string_agg`, null-safe `IS` is `IS NOT DISTINCT
//! FROM`), so a Postgres store can follow with its own migrations behind the same methods.

pub mod audit;
mod cursors;
mod effects;
pub mod queue;
mod reports;
pub mod stats;

pub(crate) use effects::StateChange;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::report::ReportError;
use super::subject::SubjectRef;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./src/moderation/migrations/sqlite");

/// Where the store lives inside the data directory.
pub const DB_PATH: &str = "admin/moderation.sqlite";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("moderation database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("moderation database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file's directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report is invalid (the message names the field).
    #[error(transparent)]
    InvalidReport(#[from] ReportError),
    /// No subject with this DID or URI is known.
    #[error("no moderation subject {0}")]
    NotFound(String),
    /// A queue cursor that this store did not hand out.
    #[error("invalid queue cursor {0:?}")]
    BadCursor(String),
    /// A stored row does not make sense (a bug or a damaged database).
    #[error("moderation {table} row {id} is malformed: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row's id.
        id: i64,
        /// What is wrong.
        detail: String,
    },
}

/// Which queue a subject is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    /// Reported, not yet looked at (or reported again after a decision).
    Unreviewed,
    /// Sent up for a second opinion.
    Escalated,
    /// Decided: labelled, taken down, restored or acknowledged.
    Resolved,
}

impl QueueState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Unreviewed => "unreviewed",
            QueueState::Escalated => "escalated",
            QueueState::Resolved => "resolved",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<QueueState> {
        match name {
            "unreviewed" => Some(QueueState::Unreviewed),
            "escalated" => Some(QueueState::Escalated),
            "resolved" => Some(QueueState::Resolved),
            _ => None,
        }
    }
}

/// The moderation store (SQLite). Cheap to clone.
#[derive(Debug, Clone)]
pub struct ModerationStore {
    /// One connection: every write transaction, in turn.
    writer: SqlitePool,
    /// Read-only connections for the console's pages.
    reader: SqlitePool,
}

impl ModerationStore {
    /// Opens (creating if needed) the store in `data_dir` at [`DB_PATH`].
    pub async fn open_in(data_dir: &Path) -> Result<ModerationStore, StoreError> {
        ModerationStore::open(&data_dir.join(DB_PATH)).await
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<ModerationStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL, not NORMAL: an action may already have issued a label (in the labeler's
            // database) when its audit entry commits here, and that entry must survive a
            // power cut too. Moderation writes are few; the fsync is affordable.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            // The console's pages are a handful of queries each, from a few moderators.
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(ModerationStore { writer, reader })
    }

    /// Closes both pools (waits for in-flight work).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Starts a write transaction; it waits for the writer connection.
    pub(crate) async fn begin(&self) -> Result<WriteTx, StoreError> {
        Ok(WriteTx {
            tx: self.writer.begin().await?,
            now_us: now_us(),
        })
    }
}

/// A write transaction: a change and its audit entries, committed together.
#[derive(Debug)]
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    /// The time every row written in this transaction carries.
    now_us: i64,
}

/// The subject row a change starts from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubjectRow {
    pub(crate) id: i64,
    pub(crate) state: Option<QueueState>,
}

impl WriteTx {
    /// The transaction's time.
    pub(crate) fn now_us(&self) -> i64 {
        self.now_us
    }

    /// The subject's row, created (in no queue) if it is new; a CID given here becomes the
    /// subject's latest known version. Being a write, the first call also takes SQLite's
    /// write lock, so the rest of the transaction cannot fail to get it.
    pub(crate) async fn subject(&mut self, subject: &SubjectRef) -> Result<SubjectRow, StoreError> {
        let (id, state): (i64, Option<String>) = sqlx::query_as(
            "INSERT INTO subjects (uri, kind, author_did, collection, cid, state_since_us) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (uri) DO UPDATE SET cid = COALESCE(excluded.cid, subjects.cid) \
             RETURNING id, state",
        )
        .bind(subject.uri())
        .bind(subject.kind().as_str())
        .bind(subject.author())
        .bind(subject.collection())
        .bind(subject.cid())
        .bind(self.now_us)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(SubjectRow {
            id,
            state: parse_state("subjects", id, state.as_deref())?,
        })
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// A stored `state` column.
fn parse_state(
    table: &'static str,
    id: i64,
    state: Option<&str>,
) -> Result<Option<QueueState>, StoreError> {
    state
        .map(|name| {
            QueueState::parse(name).ok_or_else(|| StoreError::Corrupt {
                table,
                id,
                detail: format!("unknown state {name:?}"),
            })
        })
        .transpose()
}

/// Microseconds since the epoch, now.
pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
