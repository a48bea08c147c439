//! The label store: every label the labeler has issued, in SQLite (sqlx, WAL, migrations in
//! `control/migrations/labeler`).
//!
//! Each label is one row whose `seq` (an AUTOINCREMENT rowid) is the `subscribeLabels`
//! cursor. Applying and negating are the same operation, [`LabelStore::insert`]: a negation
//! is a new row with `neg: true` and the same `src`, `uri` and `val`. Inserting clears the
//! `current` flag of the rows it replaces, in the same transaction, so that:
//! - [`LabelStore::query`] (`queryLabels`) sees only the current state of each
//!   (`src`, `uri`, `val`): a negated label disappears, and so does an expired one;
//! - [`LabelStore::since`] (`subscribeLabels` replay) leaves out labels a later one
//!   replaced, as the label spec asks ("labels which have been negated have the original
//!   label removed from the stream, but the negation remains").
//!
//! The store owns its database file: its migrations are numbered from 1 and would clash
//! with another migrator's in a shared file.
//!
//! SQLite assigns `seq` inside the write transaction and allows one writer at a time, so a
//! reader never sees a row without every row of lower `seq` that will ever exist: reading
//! "after my cursor" can never skip a label that commits later.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::label::{Label, LabelError, datetime_micros};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/labeler");

/// The most URI patterns and sources one query may name (bounds the SQL it builds).
pub const MAX_QUERY_TERMS: usize = 100;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("label database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("label database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The label to insert is invalid.
    #[error(transparent)]
    Invalid(#[from] LabelError),
    /// A stored row does not make a valid label (a bug or a damaged database).
    #[error("stored label seq {seq} is malformed: {detail}")]
    Corrupt {
        /// The row.
        seq: i64,
        /// What is wrong.
        detail: String,
    },
    /// The database file's directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A label with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLabel {
    /// The label's position in the stream (`subscribeLabels` seq, `queryLabels` cursor).
    pub seq: i64,
    /// The label, signed.
    pub label: Label,
}

/// One `uriPatterns` entry of `queryLabels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPattern {
    /// The subject must be exactly this.
    Exact(String),
    /// The subject must start with this (the pattern ended in `*`); empty matches all.
    Prefix(String),
}

impl UriPattern {
    /// Parses a pattern: a full URI, or a prefix ending in `*`. A `*` anywhere else is
    /// refused (the lexicon only allows a trailing wildcard).
    pub fn parse(pattern: &str) -> Result<UriPattern, String> {
        match pattern.find('*') {
            None => Ok(UriPattern::Exact(pattern.to_owned())),
            Some(i) if i + 1 == pattern.len() => Ok(UriPattern::Prefix(pattern[..i].to_owned())),
            Some(_) => Err(format!(
                "uriPatterns entry {pattern:?}: '*' is only allowed at the end"
            )),
        }
    }
}

/// What [`LabelStore::query`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelQuery {
    /// Subjects to match (any of them). Empty matches nothing.
    pub uri_patterns: Vec<UriPattern>,
    /// Only labels from these DIDs; empty means any source.
    pub sources: Vec<String>,
    /// Only labels with a larger seq (the previous page's cursor).
    pub cursor: Option<i64>,
    /// The most labels to return.
    pub limit: u32,
}

/// The label store (SQLite).
#[derive(Debug, Clone)]
pub struct LabelStore {
    pool: SqlitePool,
}

/// The columns every read selects, in [`label_from_row`]'s order.
const COLUMNS: &str = "seq, src, uri, cid, val, neg, cts, exp, sig";

impl LabelStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<LabelStore, StoreError> {
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
            // WAL + NORMAL: a killed process loses nothing committed; a power cut may lose
            // the last labels, which subscribers then never saw either (they are told only
            // after commit, and only what is in the database).
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            // Subscribers each read in turn; four connections serve many of them, since a
            // read holds a connection only for one page of labels.
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(LabelStore { pool })
    }

    /// Closes the pool (waits for in-flight work).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores a label (checked with [`Label::check`]) and returns its seq. It replaces any
    /// earlier label with the same `src`, `uri` and `val`: a negation retracts, a repeat
    /// updates. `signing_key` records which key made `sig` (a `did:key`).
    pub async fn insert(
        &self,
        label: &Label,
        signing_key: Option<&str>,
    ) -> Result<i64, StoreError> {
        label.check()?;
        let exp_us = match &label.exp {
            Some(exp) => Some(datetime_micros(exp).map_err(|reason| {
                StoreError::Invalid(LabelError::Invalid {
                    field: super::label::Field::Exp,
                    reason,
                })
            })?),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction takes the write lock at once and
        // never has to upgrade from a read lock (which could fail with SQLITE_BUSY).
        sqlx::query(
            "UPDATE labels SET current = 0 WHERE current = 1 AND src = ? AND uri = ? AND val = ?",
        )
        .bind(&label.src)
        .bind(&label.uri)
        .bind(&label.val)
        .execute(&mut *tx)
        .await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO labels (src, uri, cid, val, neg, cts, exp, exp_us, sig, signing_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&label.src)
        .bind(&label.uri)
        .bind(&label.cid)
        .bind(&label.val)
        .bind(label.neg)
        .bind(&label.cts)
        .bind(&label.exp)
        .bind(exp_us)
        .bind(&label.sig)
        .bind(signing_key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// The current label for (`src`, `uri`, `val`), negation or not, expired or not.
    pub async fn current(
        &self,
        src: &str,
        uri: &str,
        val: &str,
    ) -> Result<Option<StoredLabel>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM labels \
             WHERE current = 1 AND src = ? AND uri = ? AND val = ? ORDER BY seq DESC LIMIT 1"
        ))
        .bind(src)
        .bind(uri)
        .bind(val)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(label_from_row).transpose()
    }

    /// `queryLabels`: the current, non-negated, unexpired labels (at `now_us`, microseconds
    /// since the epoch) matching `query`, in seq order.
    pub async fn query(
        &self,
        query: &LabelQuery,
        now_us: i64,
    ) -> Result<Vec<StoredLabel>, StoreError> {
        if query.uri_patterns.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {COLUMNS} FROM labels WHERE current = 1 AND (neg IS NULL OR neg = 0) \
             AND (exp_us IS NULL OR exp_us > "
        ));
        sql.push_bind(now_us).push(")");
        let match_all = query
            .uri_patterns
            .iter()
            .any(|p| matches!(p, UriPattern::Prefix(prefix) if prefix.is_empty()));
        if !match_all {
            sql.push(" AND (");
            for (i, pattern) in query.uri_patterns.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                match pattern {
                    UriPattern::Exact(uri) => {
                        sql.push("uri = ").push_bind(uri.clone());
                    }
                    // A range, not LIKE: LIKE is case-insensitive in SQLite and treats `_`
                    // and `%` as wildcards, and a range can use the index.
                    UriPattern::Prefix(prefix) => {
                        sql.push("(uri >= ").push_bind(prefix.clone());
                        if let Some(upper) = prefix_upper_bound(prefix) {
                            sql.push(" AND uri < ").push_bind(upper);
                        }
                        sql.push(")");
                    }
                }
            }
            sql.push(")");
        }
        if !query.sources.is_empty() {
            sql.push(" AND src IN (");
            let mut list = sql.separated(", ");
            for src in &query.sources {
                list.push_bind(src.clone());
            }
            sql.push(")");
        }
        if let Some(cursor) = query.cursor {
            sql.push(" AND seq > ").push_bind(cursor);
        }
        sql.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(query.limit));
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter().map(label_from_row).collect()
    }

    /// `subscribeLabels` replay: up to `limit` current labels (negations included, replaced
    /// labels left out) with seq above `after`, in seq order.
    pub async fn since(&self, after: i64, limit: u32) -> Result<Vec<StoredLabel>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM labels WHERE current = 1 AND seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(label_from_row).collect()
    }

    /// The highest seq issued so far (0 when there are no labels).
    pub async fn latest_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM labels")
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }
}

/// The smallest string above every string that starts with `prefix`, or `None` when there
/// is none (every character is `char::MAX`). SQLite compares text bytewise, and UTF-8
/// preserves code point order, so incrementing the last character that can be incremented
/// gives the bound.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{d7ff}' => Some('\u{e000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn label_from_row(row: &SqliteRow) -> Result<StoredLabel, StoreError> {
    let seq: i64 = row.try_get("seq")?;
    let label = Label {
        src: row.try_get("src")?,
        uri: row.try_get("uri")?,
        cid: row.try_get("cid")?,
        val: row.try_get("val")?,
        neg: row.try_get("neg")?,
        cts: row.try_get("cts")?,
        exp: row.try_get("exp")?,
        sig: row.try_get("sig")?,
    };
    label.check().map_err(|e| StoreError::Corrupt {
        seq,
        detail: e.to_string(),
    })?;
    Ok(StoredLabel { seq, label })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bounds() {
        let cases = [
            ("at://did:plc:a/", Some("at://did:plc:a0")),
            ("a", Some("b")),
            ("a\u{d7ff}", Some("a\u{e000}")),
            ("a\u{10ffff}", Some("b")),
            ("\u{10ffff}", None),
            ("", None),
        ];
        for (prefix, expect) in cases {
            assert_eq!(prefix_upper_bound(prefix).as_deref(), expect, "{prefix:?}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(
            UriPattern::parse("at://x/*"),
            Ok(UriPattern::Prefix("at://x/".into()))
        );
        assert_eq!(
            UriPattern::parse("*"),
            Ok(UriPattern::Prefix(String::new()))
        );
        assert_eq!(
            UriPattern::parse("did:plc:x"),
            Ok(UriPattern::Exact("did:plc:x".into()))
        );
        assert!(UriPattern::parse("at://*/x").is_err());
    }
}
