//! The index store: one trait, two databases. [`SqliteStore`] (embedded, the default) and
//! [`PostgresStore`] run the same SQL (`store/sql.rs`) over their own migrations
//! (`migrations/sqlite`, `migrations/postgres`); [`AnyStore`] is whichever the
//! configuration names.
//!
//! Writes come in batches ([`Store::apply`]): a batch's changes and the source's cursor are
//! committed in one transaction, so after a crash the stream resumes exactly where the rows
//! stop, and replaying a batch is harmless (upserts keyed by AT-URI are no-ops at the same
//! CID).

mod postgres;
mod sql;
mod sqlite;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::index::Change;
use crate::labels::Label;

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
    /// Only records that remix this AT-URI.
    pub remix_of: Option<String>,
    /// Only records by accounts this DID follows (`computer.aesthetic.graph.follow`).
    pub following_of: Option<String>,
    /// Only records matching this search: the exact `code` (a leading `$` ignored), a
    /// `slug` starting with it, or an author whose handle starts with it (a leading `@`
    /// ignored). Prefixes compare bytewise on both backends.
    pub search: Option<String>,
    /// The label sources this request accepts (`atproto-accept-labelers`); `None`: every
    /// configured source, its hiding labels redacting.
    pub labelers: Option<Labelers>,
    /// Continue after this cursor (from a previous page).
    pub cursor: Option<String>,
    /// Page size (capped by the store at [`MAX_PAGE`]).
    pub limit: usize,
}

/// The label sources one request accepts (its `atproto-accept-labelers` header), when it
/// names them; queries without one apply every configured source, redacting.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labelers {
    /// Sources whose labels apply: they ride on the views. Labels from other sources are
    /// left off, and sources that are not configured never apply.
    pub accept: Vec<String>,
    /// Of those, the sources sent with `;redact`: their hiding labels
    /// ([`HIDING_LABELS`]) remove the content; other sources' only ride on the views.
    pub redact: Vec<String>,
}

/// The largest page any query returns.
pub const MAX_PAGE: usize = 100;

/// An actor as queries return it (`computer.aesthetic.actor.defs#profileView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::actor::defs::{
    CollectionCount, ProfileView,
};
/// A label on a record view (`computer.aesthetic.feed.defs#labelView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::feed::defs::LabelView;
/// A record as queries return it (`computer.aesthetic.feed.defs#recordView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::feed::defs::RecordView;
/// A notification as queries return it (`computer.aesthetic.notification.defs#notificationView`).
pub use atelier_relay::lexicons::generated::computer::aesthetic::notification::defs::NotificationView;

/// A page of records and the cursor for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The records, newest first.
    pub records: Vec<RecordView>,
    /// Pass back as [`FeedQuery::cursor`] for the next page; `None` at the end.
    pub cursor: Option<String>,
}

/// The backfill work list's states.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackfillCounts {
    /// Listed, not yet indexed.
    pub pending: u64,
    /// Indexed.
    pub done: u64,
    /// Failed last time (retried by the next run).
    pub failed: u64,
}

/// What [`Store::apply_snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// Applied: records written and removed.
    Applied(Applied),
    /// Not applied: the stored rev is newer.
    Stale {
        /// The actor's stored rev.
        stored: String,
    },
}

/// A page of an actor's notifications, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationPage {
    /// The notifications (`isRead` set from `seen_us`).
    pub notifications: Vec<NotificationView>,
    /// The next page's cursor (`before` for the next call); `None` at the end.
    pub cursor: Option<i64>,
    /// The actor's last `updateSeen`, in microseconds.
    pub seen_us: Option<i64>,
}

/// An actor's handle and its verification state (the handle verifier's view of `actors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorHandle {
    /// The actor.
    pub did: String,
    /// The handle as announced by `#identity`, or as last verified.
    pub handle: Option<String>,
    /// Whether `handle` was verified both ways (DID document and handle resolution).
    pub verified: bool,
    /// When it was last checked (Unix microseconds); `None` if never.
    pub checked_us: Option<i64>,
    /// When it is due for a check (Unix microseconds; 0: now, as after an `#identity`).
    pub due_us: i64,
    /// Checks in a row that did not verify.
    pub failures: i64,
}

/// What a handle check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandleVerdict {
    /// The DID document claims this handle (normalised) and it resolves back to the DID.
    Verified(String),
    /// The document claims no handle, or the handle does not resolve back to the DID.
    Invalid,
    /// The DID document could not be fetched: the verified flag stays as it was.
    Unreachable,
}

/// A handle check to store ([`Store::record_handle_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleCheck {
    /// What the check found.
    pub verdict: HandleVerdict,
    /// When it ran (Unix microseconds).
    pub checked_us: i64,
    /// When to check again (Unix microseconds).
    pub due_us: i64,
    /// Checks in a row that did not verify, this one included (0 when verified).
    pub failures: i64,
}

/// Label values that keep a record (on its URI) or all of an account's records (on its
/// DID) out of every query: the reference AppView's takedown-like behaviour labels.
pub const HIDING_LABELS: &[&str] = &["!hide", "!takedown", "!suspend"];

/// A [`SyncStatus`](atelier_relay::sync::verify::SyncStatus) from its stored name.
pub(crate) fn parse_sync_status(name: &str) -> Option<atelier_relay::sync::verify::SyncStatus> {
    use atelier_relay::sync::verify::SyncStatus;
    [
        SyncStatus::Synchronized,
        SyncStatus::Desynchronized,
        SyncStatus::InProgress,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
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

    /// [`Store::record`] with the labels of `labelers` only (`None`: every configured
    /// source, redacting).
    fn record_for(
        &self,
        uri: &str,
        labelers: Option<&Labelers>,
    ) -> impl Future<Output = Result<Option<RecordView>, StoreError>> + Send;

    /// [`Store::actor`] with counts that leave out what `labelers` hide (`None`: every
    /// configured source, redacting).
    fn actor_for(
        &self,
        did: &str,
        labelers: Option<&Labelers>,
    ) -> impl Future<Output = Result<Option<ProfileView>, StoreError>> + Send;

    /// `recipient`'s notifications, newest first: `before` an id (from a previous page) or
    /// from the newest; notifications caused by inactive accounts left out.
    fn notifications(
        &self,
        recipient: &str,
        before: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = Result<NotificationPage, StoreError>> + Send;

    /// `recipient`'s notifications with an id above `after`, oldest first (the live
    /// stream: resume from the last id delivered).
    fn notifications_after(
        &self,
        recipient: &str,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<NotificationView>, StoreError>> + Send;

    /// How many of `recipient`'s notifications were indexed after their last `updateSeen`.
    fn unread_count(&self, recipient: &str)
    -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Marks `recipient`'s notifications indexed at or before `seen_us` as read.
    fn update_seen(
        &self,
        recipient: &str,
        seen_us: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds repositories to the backfill's work list (those already listed keep their
    /// state).
    fn backfill_enqueue(
        &self,
        dids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` listed repositories not yet `done`, in DID order.
    fn backfill_pending(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// How many listed repositories are in each state (`pending`, `done`, `failed`).
    fn backfill_counts(&self) -> impl Future<Output = Result<BackfillCounts, StoreError>> + Send;

    /// Records that `did`'s backfill failed (retried by the next run).
    fn backfill_failed(
        &self,
        did: &str,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies `did`'s repository export at `rev` in one transaction: upserts its
    /// changes (no notifications: they are history), removes its records and follows the
    /// export does not hold, clears a profile it does not hold, moves the actor's rev and
    /// marks the repository `done`. Refused ([`Snapshot::Stale`]) when the actor's stored
    /// rev is newer (the live stream is ahead of the export: fetch it again).
    fn apply_snapshot(
        &self,
        did: &str,
        rev: &str,
        changes: &[Change],
    ) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// Every stored record's `(uri, cid)`, in URI order (for consistency checks and
    /// backfill comparison).
    fn record_cids(&self)
    -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// A record's stored CID and whether it is still pending (inserted by the publishing
    /// API, not yet delivered by the firehose); `None` if it is not indexed.
    fn record_state(
        &self,
        uri: &str,
    ) -> impl Future<Output = Result<Option<(String, bool)>, StoreError>> + Send;

    /// Pending records indexed before `before_us` (Unix microseconds), as `(uri, cid)`,
    /// oldest first, at most `limit`.
    fn pending_records(
        &self,
        before_us: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    /// Makes `sources` (labeler DIDs) the label sources whose labels apply; labels stored
    /// from other sources stay, but stop applying until their source is configured again.
    fn set_label_sources(
        &self,
        sources: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores verified labels from `source` (each replacing the current state of its
    /// `src`, `uri` and `val`; a negation neutralises it) and moves the source's cursor to
    /// `seq`, atomically. Returns how many labels were stored. A source not yet named by
    /// [`Store::set_label_sources`] is recorded as not applying.
    fn apply_labels(
        &self,
        source: &str,
        labels: &[Label],
        seq: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Where `source`'s `subscribeLabels` stream was read up to.
    fn label_cursor(
        &self,
        source: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Every account's stored verification state ([`Change::SyncStates`]), for the sync
    /// layer to start from.
    fn sync_states(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, crate::index::AccountState)>, StoreError>> + Send;

    /// The labels in force at `now_us` on any of `subjects` (record URIs or DIDs) from the
    /// configured sources: not negated, not expired; ordered by subject, source and value.
    fn labels_on(
        &self,
        subjects: &[String],
        now_us: i64,
    ) -> impl Future<Output = Result<Vec<LabelView>, StoreError>> + Send;

    /// Up to `limit` actors whose handle check is due at `now_us` (never checked, changed
    /// by an `#identity`, a retry whose delay has passed, or a periodic re-check), the
    /// longest due first.
    fn handles_due(
        &self,
        now_us: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ActorHandle>, StoreError>> + Send;

    /// One actor's handle and verification state; `None` if never seen.
    fn actor_handle(
        &self,
        did: &str,
    ) -> impl Future<Output = Result<Option<ActorHandle>, StoreError>> + Send;

    /// Stores the outcome of checking `read` (as [`Store::handles_due`] returned it): a
    /// verified handle replaces the stored one and is marked verified; an invalid one is
    /// marked unverified; an unreachable document changes only the schedule. Written only
    /// if the actor's handle and due time are still those of `read` (an `#identity` that
    /// arrived meanwhile wins, and is checked next); returns whether it was written.
    fn record_handle_check(
        &self,
        read: &ActorHandle,
        check: &HandleCheck,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Records (or follows) per multi-row upsert: 11 columns each, well under SQLite's 32,766
/// and Postgres's 65,535 bound parameters.
pub(crate) const RECORD_CHUNK: usize = 100;

/// A follow edge: (uri, follower, subject, createdAt).
pub(crate) type FollowRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// A run of upserts split by table, each key once: each URI's last version (one
/// multi-row statement may not touch a row twice, Postgres refuses it; and the last write
/// is the one that stands), each actor's newest rev.
pub(crate) struct Run<'a> {
    pub(crate) records: Vec<&'a crate::index::RecordRow>,
    pub(crate) follows: Vec<FollowRow<'a>>,
    pub(crate) revs: Vec<(&'a str, &'a str)>,
}

/// Whether `change` goes in a multi-row run.
pub(crate) fn in_run(change: &Change) -> bool {
    matches!(
        change,
        Change::Record(_) | Change::Follow { .. } | Change::Rev { .. }
    )
}

/// Splits a run of upserts (see [`Run`]).
pub(crate) fn split_run(run: &[Change]) -> Run<'_> {
    // The last index of each URI, per table (a follow record is both a record row and a
    // follow edge, under one URI); the newest rev of each actor.
    let (mut last_record, mut last_follow) = (HashMap::new(), HashMap::new());
    let mut revs: HashMap<&str, &str> = HashMap::new();
    for (i, change) in run.iter().enumerate() {
        match change {
            Change::Record(row) => {
                last_record.insert(row.uri.as_str(), i);
            }
            Change::Follow { uri, .. } => {
                last_follow.insert(uri.as_str(), i);
            }
            Change::Rev { did, rev } => {
                let newest = revs.entry(did.as_str()).or_insert(rev.as_str());
                if rev.as_str() > *newest {
                    *newest = rev.as_str();
                }
            }
            _ => {}
        }
    }
    let mut out = Run {
        records: Vec::new(),
        follows: Vec::new(),
        revs: revs.into_iter().collect(),
    };
    out.revs.sort_unstable();
    for (i, change) in run.iter().enumerate() {
        match change {
            Change::Record(row) if last_record.get(row.uri.as_str()) == Some(&i) => {
                out.records.push(row)
            }
            Change::Follow {
                uri,
                did,
                subject,
                created_at,
            } if last_follow.get(uri.as_str()) == Some(&i) => out.follows.push((
                uri.as_str(),
                did.as_str(),
                subject.as_str(),
                created_at.as_deref(),
            )),
            _ => {}
        }
    }
    out
}

/// The DID in an `at://did/...` URI.
pub(crate) fn uri_did(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("at://")?;
    let did = rest.split('/').next()?;
    did.starts_with("did:").then_some(did)
}

/// A feed cursor: the last row's `created_at` and id, joined by a space (`created_at`
/// never holds one: it is a datetime as written, or empty).
pub(crate) fn split_cursor(cursor: &str) -> Option<(&str, i64)> {
    let (at, id) = cursor.rsplit_once(' ')?;
    Some((at, id.parse().ok()?))
}

/// Where the index lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file (created with its directory if missing).
    Sqlite(PathBuf),
    /// A Postgres URL (a secret: it may hold a password, so it is never printed).
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StoreLocation {
    /// For logs: the SQLite path, or the Postgres host and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite {}", path.display()),
            StoreLocation::Postgres(url) => match url::Url::parse(url) {
                Ok(u) => format!(
                    "postgres {}:{}{}",
                    u.host_str().unwrap_or("localhost"),
                    u.port().unwrap_or(5432),
                    u.path()
                ),
                Err(_) => "postgres (unparsable URL)".to_owned(),
            },
        }
    }
}

/// The configured store, either backend.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// A Postgres server.
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Opens the store at `location`, bringing its schema up to date.
    ///
    /// # Errors
    /// As [`SqliteStore::open`] or [`PostgresStore::connect`].
    pub async fn open(location: &StoreLocation) -> Result<AnyStore, StoreError> {
        Ok(match location {
            StoreLocation::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => AnyStore::Postgres(PostgresStore::connect(url).await?),
        })
    }

    /// Closes the store's connections (waits for in-flight work).
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

/// Forwards a [`Store`] method to whichever backend `self` holds.
macro_rules! forward {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            AnyStore::Sqlite(s) => s.$method($($arg),*).await,
            AnyStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    async fn apply(
        &self,
        changes: &[Change],
        cursor: Option<(&str, i64)>,
    ) -> Result<Applied, StoreError> {
        forward!(self.apply(changes, cursor))
    }

    async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        forward!(self.cursor(source))
    }

    async fn record(&self, uri: &str) -> Result<Option<RecordView>, StoreError> {
        forward!(self.record(uri))
    }

    async fn feed(&self, query: &FeedQuery) -> Result<Page, StoreError> {
        forward!(self.feed(query))
    }

    async fn actor(&self, did: &str) -> Result<Option<ProfileView>, StoreError> {
        forward!(self.actor(did))
    }

    async fn record_for(
        &self,
        uri: &str,
        labelers: Option<&Labelers>,
    ) -> Result<Option<RecordView>, StoreError> {
        forward!(self.record_for(uri, labelers))
    }

    async fn actor_for(
        &self,
        did: &str,
        labelers: Option<&Labelers>,
    ) -> Result<Option<ProfileView>, StoreError> {
        forward!(self.actor_for(did, labelers))
    }

    async fn notifications(
        &self,
        recipient: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<NotificationPage, StoreError> {
        forward!(self.notifications(recipient, before, limit))
    }

    async fn notifications_after(
        &self,
        recipient: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<NotificationView>, StoreError> {
        forward!(self.notifications_after(recipient, after, limit))
    }

    async fn unread_count(&self, recipient: &str) -> Result<i64, StoreError> {
        forward!(self.unread_count(recipient))
    }

    async fn update_seen(&self, recipient: &str, seen_us: i64) -> Result<(), StoreError> {
        forward!(self.update_seen(recipient, seen_us))
    }

    async fn backfill_enqueue(&self, dids: &[String]) -> Result<(), StoreError> {
        forward!(self.backfill_enqueue(dids))
    }

    async fn backfill_pending(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        forward!(self.backfill_pending(limit))
    }

    async fn backfill_counts(&self) -> Result<BackfillCounts, StoreError> {
        forward!(self.backfill_counts())
    }

    async fn backfill_failed(&self, did: &str, error: &str) -> Result<(), StoreError> {
        forward!(self.backfill_failed(did, error))
    }

    async fn apply_snapshot(
        &self,
        did: &str,
        rev: &str,
        changes: &[Change],
    ) -> Result<Snapshot, StoreError> {
        forward!(self.apply_snapshot(did, rev, changes))
    }

    async fn record_cids(&self) -> Result<Vec<(String, String)>, StoreError> {
        forward!(self.record_cids())
    }

    async fn record_state(&self, uri: &str) -> Result<Option<(String, bool)>, StoreError> {
        forward!(self.record_state(uri))
    }

    async fn pending_records(
        &self,
        before_us: i64,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        forward!(self.pending_records(before_us, limit))
    }

    async fn set_label_sources(&self, sources: &[String]) -> Result<(), StoreError> {
        forward!(self.set_label_sources(sources))
    }

    async fn apply_labels(
        &self,
        source: &str,
        labels: &[Label],
        seq: i64,
    ) -> Result<u64, StoreError> {
        forward!(self.apply_labels(source, labels, seq))
    }

    async fn label_cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        forward!(self.label_cursor(source))
    }

    async fn sync_states(&self) -> Result<Vec<(String, crate::index::AccountState)>, StoreError> {
        forward!(self.sync_states())
    }

    async fn labels_on(
        &self,
        subjects: &[String],
        now_us: i64,
    ) -> Result<Vec<LabelView>, StoreError> {
        forward!(self.labels_on(subjects, now_us))
    }

    async fn handles_due(&self, now_us: i64, limit: usize) -> Result<Vec<ActorHandle>, StoreError> {
        forward!(self.handles_due(now_us, limit))
    }

    async fn actor_handle(&self, did: &str) -> Result<Option<ActorHandle>, StoreError> {
        forward!(self.actor_handle(did))
    }

    async fn record_handle_check(
        &self,
        read: &ActorHandle,
        check: &HandleCheck,
    ) -> Result<bool, StoreError> {
        forward!(self.record_handle_check(read, check))
    }
}

/// Puts each label in `labels` on the views it applies to: those of the record it names
/// (any version, or the version its `cid` names) and those of its author's DID. Views
/// without labels keep `labels: None`.
pub(crate) fn attach_labels(views: &mut [RecordView], labels: Vec<LabelView>) {
    if labels.is_empty() {
        return;
    }
    for view in views {
        let on: Vec<LabelView> = labels
            .iter()
            .filter(|l| {
                (l.uri == view.uri && l.cid.as_ref().is_none_or(|cid| *cid == view.cid))
                    || l.uri == view.did
            })
            .cloned()
            .collect();
        if !on.is_empty() {
            view.labels = Some(on);
        }
    }
}

/// SQL that is true when no hiding label ([`HIDING_LABELS`]) from a configured source is
/// in force on the record `uri` (version `cid`, a column that may be NULL) or on the
/// account `did`; `now` is the placeholder bound to the current time in microseconds.
/// Uses `labels_by_subject`, one index probe per subject.
pub(crate) fn not_hidden(uri: &str, cid: &str, did: &str, now: &str) -> String {
    not_hidden_by(uri, cid, did, now, None).unwrap_or_else(|| "TRUE".to_owned())
}

/// [`not_hidden`] for the hiding labels of `redact` only (`None`: every configured
/// source); `None` when it names none (nothing hides, and `now` is not used).
///
/// The DIDs are written into the SQL as literals, so only those made of DID characters
/// (letters, digits, `.`, `_`, `:`, `%`, `-`: no quote can pass) are kept; the others,
/// which no configured source can match anyway, are dropped.
pub(crate) fn not_hidden_by(
    uri: &str,
    cid: &str,
    did: &str,
    now: &str,
    redact: Option<&[String]>,
) -> Option<String> {
    let sources = match redact {
        None => String::new(),
        Some(dids) => {
            let list = sql_did_list(dids);
            if list.is_empty() {
                return None;
            }
            format!(" AND l.src IN ({list})")
        }
    };
    let values = HIDING_LABELS
        .iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "NOT EXISTS (SELECT 1 FROM labels l JOIN label_sources ls ON ls.src = l.src \
         WHERE (l.uri = {uri} OR l.uri = {did}) AND l.val IN ({values}) AND ls.active{sources} \
         AND l.neg = FALSE AND (l.exp_us IS NULL OR l.exp_us > {now}) \
         AND (l.cid IS NULL OR l.uri <> {uri} OR l.cid = {cid}))"
    ))
}

/// `dids` as a comma-separated list of SQL string literals, keeping only those made of DID
/// characters (see [`not_hidden_by`]).
fn sql_did_list(dids: &[String]) -> String {
    dids.iter()
        .filter(|d| {
            d.starts_with("did:")
                && d.len() <= 2048
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:%-".contains(&b))
        })
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
