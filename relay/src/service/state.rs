//! The relay's state database (SQLite through sqlx, WAL): hosts with their cursors, status
//! and limit overrides, the accounts seen per host, known AC actors, account takedowns, and
//! the log seq up to which all of that is checkpointed.
//!
//! The event log is the source of truth for what was re-served; this store holds what lets
//! ingest resume. A checkpoint is written only after the log is flushed, so a stored cursor
//! never points past events the log has; after a crash, [`super::recover`] reads the log
//! past the checkpoint to move cursors forward to what was actually logged.

use std::path::Path;
use std::str::FromStr;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::config::{HostLimits, UpstreamKind};
use super::error::RelayError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    kind TEXT NOT NULL,
    trusted INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    cursor INTEGER,
    per_second INTEGER, per_hour INTEGER, per_day INTEGER, accounts_per_host INTEGER,
    added_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS host_accounts (
    host_id INTEGER NOT NULL,
    did TEXT NOT NULL,
    PRIMARY KEY (host_id, did)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS known_actors (did TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS takedowns (
    did TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS label_cursors (
    src TEXT PRIMARY KEY,
    cursor INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');
"#;

/// Where a host came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostSource {
    /// Listed in the configuration.
    Config,
    /// Added by `requestCrawl` or the admin API.
    Crawl,
}

impl HostSource {
    fn as_str(self) -> &'static str {
        match self {
            HostSource::Config => "config",
            HostSource::Crawl => "crawl",
        }
    }
}

/// A host as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostRow {
    pub(crate) id: u32,
    pub(crate) host: String,
    pub(crate) url: String,
    pub(crate) kind: UpstreamKind,
    pub(crate) trusted: bool,
    pub(crate) source: HostSource,
    pub(crate) banned: bool,
    pub(crate) cursor: Option<i64>,
    pub(crate) limits: Option<HostLimits>,
    pub(crate) added_us: i64,
}

/// What one checkpoint writes, in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    /// The log seq everything below is consistent with.
    pub(crate) log_seq: u64,
    /// Host id -> upstream cursor.
    pub(crate) cursors: Vec<(u32, i64)>,
    /// Newly known actors.
    pub(crate) known: Vec<String>,
    /// Newly seen (host id, account) pairs.
    pub(crate) host_accounts: Vec<(u32, String)>,
}

/// The state database.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: SqlitePool,
}

fn db(e: sqlx::Error) -> RelayError {
    RelayError::State(e.to_string())
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) async fn open(path: &Path) -> Result<Store, RelayError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| RelayError::State(format!("opening {}: {e}", path.display())))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(db)?;
        Ok(Store { pool })
    }

    /// Every host.
    pub(crate) async fn hosts(&self) -> Result<Vec<HostRow>, RelayError> {
        let rows = sqlx::query(
            "SELECT id, host, url, kind, trusted, source, status, cursor, per_second, per_hour, \
             per_day, accounts_per_host, added_us FROM hosts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(host_row).collect()
    }

    /// Adds a host, or updates URL, kind and trust of an existing one (keeping its cursor,
    /// status and limits). Returns the stored row.
    pub(crate) async fn upsert_host(
        &self,
        host: &str,
        url: &str,
        kind: UpstreamKind,
        trusted: bool,
        source: HostSource,
        now_us: i64,
    ) -> Result<HostRow, RelayError> {
        sqlx::query(
            "INSERT INTO hosts (host, url, kind, trusted, source, added_us) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(host) DO UPDATE SET url = excluded.url, kind = excluded.kind, \
             trusted = excluded.trusted",
        )
        .bind(host)
        .bind(url)
        .bind(kind.as_str())
        .bind(trusted)
        .bind(source.as_str())
        .bind(now_us)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        let row = sqlx::query(
            "SELECT id, host, url, kind, trusted, source, status, cursor, per_second, per_hour, \
             per_day, accounts_per_host, added_us FROM hosts WHERE host = ?",
        )
        .bind(host)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        host_row(&row)
    }

    /// Bans or unbans a host.
    pub(crate) async fn set_banned(&self, id: u32, banned: bool) -> Result<(), RelayError> {
        sqlx::query("UPDATE hosts SET status = ? WHERE id = ?")
            .bind(if banned { "banned" } else { "active" })
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Sets or clears a host's limit override.
    pub(crate) async fn set_limits(
        &self,
        id: u32,
        limits: Option<HostLimits>,
    ) -> Result<(), RelayError> {
        let v = |f: fn(&HostLimits) -> u64| limits.as_ref().map(|l| f(l) as i64);
        sqlx::query(
            "UPDATE hosts SET per_second = ?, per_hour = ?, per_day = ?, accounts_per_host = ? \
             WHERE id = ?",
        )
        .bind(v(|l| l.per_second))
        .bind(v(|l| l.per_hour))
        .bind(v(|l| l.per_day))
        .bind(v(|l| l.accounts_per_host))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Every (host id, account) pair seen.
    pub(crate) async fn host_accounts(&self) -> Result<Vec<(u32, String)>, RelayError> {
        let rows = sqlx::query("SELECT host_id, did FROM host_accounts")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<u32, _>(0).map_err(db)?,
                    r.try_get(1).map_err(db)?,
                ))
            })
            .collect()
    }

    /// Every known actor.
    pub(crate) async fn known_actors(&self) -> Result<Vec<String>, RelayError> {
        let rows = sqlx::query("SELECT did FROM known_actors")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
    }

    /// Every taken-down account.
    pub(crate) async fn takedowns(&self) -> Result<Vec<String>, RelayError> {
        let rows = sqlx::query("SELECT did FROM takedowns")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(|r| r.try_get(0).map_err(db)).collect()
    }

    /// Records or lifts an account takedown.
    pub(crate) async fn set_takedown(
        &self,
        did: &str,
        reason: Option<&str>,
        now_us: i64,
    ) -> Result<(), RelayError> {
        let q = match reason {
            Some(reason) => sqlx::query(
                "INSERT INTO takedowns (did, reason, at_us) VALUES (?, ?, ?) \
                 ON CONFLICT(did) DO UPDATE SET reason = excluded.reason, at_us = excluded.at_us",
            )
            .bind(did)
            .bind(reason)
            .bind(now_us),
            None => sqlx::query("DELETE FROM takedowns WHERE did = ?").bind(did),
        };
        q.execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    /// Why `did` is taken down, if it is.
    pub(crate) async fn takedown_reason(&self, did: &str) -> Result<Option<String>, RelayError> {
        let row = sqlx::query("SELECT reason FROM takedowns WHERE did = ?")
            .bind(did)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get(0).map_err(db)).transpose()
    }

    /// Taken-down accounts whose reason starts with `prefix` (takedowns from labels).
    pub(crate) async fn takedowns_with_reason_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, RelayError> {
        let rows = sqlx::query("SELECT did, reason FROM takedowns WHERE substr(reason, 1, ?) = ?")
            .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
            .bind(prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?)))
            .collect()
    }

    /// The `seq` of the last label frame applied from labeler `src`.
    pub(crate) async fn label_cursor(&self, src: &str) -> Result<Option<i64>, RelayError> {
        let row = sqlx::query("SELECT cursor FROM label_cursors WHERE src = ?")
            .bind(src)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| r.try_get(0).map_err(db)).transpose()
    }

    /// Applies the takedown changes a label frame from `src` caused (`Some(reason)`: take
    /// down, `None`: lift) and moves the labeler's cursor to `seq`, in one transaction.
    pub(crate) async fn apply_label_takedowns(
        &self,
        src: &str,
        seq: i64,
        changes: &[(String, Option<String>)],
        now_us: i64,
    ) -> Result<(), RelayError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for (did, reason) in changes {
            let q = match reason {
                Some(reason) => sqlx::query(
                    "INSERT INTO takedowns (did, reason, at_us) VALUES (?, ?, ?) \
                     ON CONFLICT(did) DO UPDATE SET reason = excluded.reason, at_us = excluded.at_us",
                )
                .bind(did)
                .bind(reason)
                .bind(now_us),
                None => sqlx::query("DELETE FROM takedowns WHERE did = ?").bind(did),
            };
            q.execute(&mut *tx).await.map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO label_cursors (src, cursor) VALUES (?, ?) \
             ON CONFLICT(src) DO UPDATE SET cursor = excluded.cursor",
        )
        .bind(src)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    /// The log seq of the last checkpoint (0 if none).
    pub(crate) async fn checkpoint_seq(&self) -> Result<u64, RelayError> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = 'checkpoint_seq'")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(match row {
            Some(r) => r
                .try_get::<String, _>(0)
                .map_err(db)?
                .parse()
                .map_err(|_| RelayError::State("meta.checkpoint_seq is not a number".into()))?,
            None => 0,
        })
    }

    /// Writes a checkpoint in one transaction. Call only after the log is flushed up to
    /// `cp.log_seq`.
    pub(crate) async fn checkpoint(&self, cp: &Checkpoint) -> Result<(), RelayError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        for (id, cursor) in &cp.cursors {
            sqlx::query(
                "UPDATE hosts SET cursor = ? WHERE id = ? AND (cursor IS NULL OR cursor < ?)",
            )
            .bind(cursor)
            .bind(id)
            .bind(cursor)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for did in &cp.known {
            sqlx::query("INSERT OR IGNORE INTO known_actors (did) VALUES (?)")
                .bind(did)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for (id, did) in &cp.host_accounts {
            sqlx::query("INSERT OR IGNORE INTO host_accounts (host_id, did) VALUES (?, ?)")
                .bind(id)
                .bind(did)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('checkpoint_seq', ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )
        .bind(cp.log_seq.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    /// Closes the pool (waits for connections to finish).
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

fn host_row(r: &sqlx::sqlite::SqliteRow) -> Result<HostRow, RelayError> {
    let kind: String = r.try_get(3).map_err(db)?;
    let source: String = r.try_get(5).map_err(db)?;
    let status: String = r.try_get(6).map_err(db)?;
    let lim = |i: usize| -> Result<Option<u64>, RelayError> {
        Ok(r.try_get::<Option<i64>, _>(i)
            .map_err(db)?
            .map(|v| v.max(0) as u64))
    };
    let limits = match (lim(8)?, lim(9)?, lim(10)?, lim(11)?) {
        (Some(per_second), Some(per_hour), Some(per_day), Some(accounts_per_host)) => {
            Some(HostLimits {
                per_second,
                per_hour,
                per_day,
                accounts_per_host,
            })
        }
        _ => None,
    };
    Ok(HostRow {
        id: r.try_get(0).map_err(db)?,
        host: r.try_get(1).map_err(db)?,
        url: r.try_get(2).map_err(db)?,
        kind: if kind == "relay" {
            UpstreamKind::Relay
        } else {
            UpstreamKind::Pds
        },
        trusted: r.try_get(4).map_err(db)?,
        source: if source == "config" {
            HostSource::Config
        } else {
            HostSource::Crawl
        },
        banned: status == "banned",
        cursor: r.try_get(7).map_err(db)?,
        limits,
        added_us: r.try_get(12).map_err(db)?,
    })
}
