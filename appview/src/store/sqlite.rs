//! The SQLite index store (sqlx, WAL, migrations in `migrations/sqlite`).
//!
//! One writer connection does every [`Store::apply`] (SQLite allows one writer at a time;
//! a single connection avoids lock waits between our own writers), readers share a small
//! pool. WAL with `synchronous=NORMAL`: a killed process loses nothing committed; a power
//! cut may lose the last transactions, rows and cursor together, which the stream replays.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    Applied, CollectionCount, FeedQuery, MAX_PAGE, Page, ProfileView, RecordView, Store, StoreError,
};
use crate::index::{Change, Profile, RecordRow};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite index store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// If the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
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
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { writer, readers })
    }

    /// Closes both pools (waits for in-flight work).
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

fn now_us() -> i64 {
    atelier_relay::jetstream::now_us()
}

async fn apply_one(
    tx: &mut Transaction<'_, Sqlite>,
    change: &Change,
    applied: &mut Applied,
) -> Result<(), StoreError> {
    match change {
        Change::Record(row) => {
            let written = upsert_record(tx, row).await?;
            applied.records_written += written;
            ensure_actor(tx, &row.did).await?;
        }
        Change::Follow {
            uri,
            did,
            subject,
            created_at,
        } => {
            sqlx::query(
                "INSERT INTO follows (uri, did, subject, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (uri) DO UPDATE SET subject = excluded.subject,
                     created_at = excluded.created_at",
            )
            .bind(uri)
            .bind(did)
            .bind(subject)
            .bind(created_at)
            .execute(&mut **tx)
            .await?;
        }
        Change::DeleteRecord { uri } => {
            let done = sqlx::query("DELETE FROM records WHERE uri = ?")
                .bind(uri)
                .execute(&mut **tx)
                .await?;
            applied.records_deleted += done.rows_affected();
            sqlx::query("DELETE FROM follows WHERE uri = ?")
                .bind(uri)
                .execute(&mut **tx)
                .await?;
        }
        Change::Profile(profile) => set_profile(tx, profile).await?,
        Change::DeleteProfile { did } => {
            sqlx::query(
                "UPDATE actors SET display_name = NULL, description = NULL, avatar_cid = NULL,
                     profile_json = NULL, updated_us = ? WHERE did = ?",
            )
            .bind(now_us())
            .bind(did)
            .execute(&mut **tx)
            .await?;
        }
        Change::Handle { did, handle } => {
            sqlx::query(
                "INSERT INTO actors (did, handle, handle_verified, updated_us) VALUES (?, ?, 0, ?)
                 ON CONFLICT (did) DO UPDATE SET handle = excluded.handle,
                     handle_verified = 0, updated_us = excluded.updated_us",
            )
            .bind(did)
            .bind(handle)
            .bind(now_us())
            .execute(&mut **tx)
            .await?;
        }
        Change::Account {
            did,
            active,
            status,
        } => {
            sqlx::query(
                "INSERT INTO actors (did, active, status, updated_us) VALUES (?, ?, ?, ?)
                 ON CONFLICT (did) DO UPDATE SET active = excluded.active,
                     status = excluded.status, updated_us = excluded.updated_us",
            )
            .bind(did)
            .bind(active)
            .bind(status)
            .bind(now_us())
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Inserts or updates a record; returns 1 if a row changed (0 for a same-CID replay).
async fn upsert_record(
    tx: &mut Transaction<'_, Sqlite>,
    row: &RecordRow,
) -> Result<u64, StoreError> {
    let repairs = serde_json::to_string(&row.repairs).map_err(|e| StoreError::Corrupt {
        what: "repairs",
        detail: e.to_string(),
    })?;
    let done = sqlx::query(
        "INSERT INTO records (uri, did, collection, rkey, cid, created_at, indexed_us, code, slug,
             record_json, repairs_json)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, created_at = excluded.created_at,
             indexed_us = excluded.indexed_us, code = excluded.code, slug = excluded.slug,
             record_json = excluded.record_json, repairs_json = excluded.repairs_json
         WHERE records.cid != excluded.cid",
    )
    .bind(&row.uri)
    .bind(&row.did)
    .bind(&row.collection)
    .bind(&row.rkey)
    .bind(&row.cid)
    .bind(row.created_at.as_deref().unwrap_or(""))
    .bind(now_us())
    .bind(&row.code)
    .bind(&row.slug)
    .bind(row.record.to_string())
    .bind(repairs)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn ensure_actor(tx: &mut Transaction<'_, Sqlite>, did: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO actors (did, updated_us) VALUES (?, ?) ON CONFLICT (did) DO NOTHING")
        .bind(did)
        .bind(now_us())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn set_profile(tx: &mut Transaction<'_, Sqlite>, p: &Profile) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO actors (did, display_name, description, avatar_cid, profile_json, updated_us)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (did) DO UPDATE SET display_name = excluded.display_name,
             description = excluded.description, avatar_cid = excluded.avatar_cid,
             profile_json = excluded.profile_json, updated_us = excluded.updated_us",
    )
    .bind(&p.did)
    .bind(&p.display_name)
    .bind(&p.description)
    .bind(&p.avatar_cid)
    .bind(p.record.to_string())
    .bind(now_us())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The columns every record query selects, with the author's handle.
const RECORD_COLUMNS: &str = "r.uri, r.cid, r.did, a.handle, r.collection, r.created_at,
    r.record_json, r.repairs_json";

/// Records whose author is not known to be inactive.
const VISIBLE: &str = "FROM records r LEFT JOIN actors a ON a.did = r.did
    WHERE COALESCE(a.active, 1) = 1";

fn record_view(row: &SqliteRow) -> Result<RecordView, StoreError> {
    let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    };
    let record: Value =
        serde_json::from_str(row.try_get("record_json")?).map_err(|e| corrupt("record", e))?;
    let repairs: Vec<String> =
        serde_json::from_str(row.try_get("repairs_json")?).map_err(|e| corrupt("repairs", e))?;
    let created_at: String = row.try_get("created_at")?;
    Ok(RecordView {
        uri: row.try_get("uri")?,
        cid: row.try_get("cid")?,
        did: row.try_get("did")?,
        handle: row.try_get("handle")?,
        collection: row.try_get("collection")?,
        created_at: (!created_at.is_empty()).then_some(created_at),
        record,
        repairs,
    })
}

/// A feed cursor: the last row's `created_at` and URI, joined by a space (neither
/// contains one).
fn split_cursor(cursor: &str) -> Option<(&str, &str)> {
    let (at, uri) = cursor.rsplit_once(' ')?;
    uri.starts_with("at://").then_some((at, uri))
}

impl Store for SqliteStore {
    async fn apply(
        &self,
        changes: &[Change],
        cursor: Option<(&str, i64)>,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut applied = Applied::default();
        for change in changes {
            apply_one(&mut tx, change, &mut applied).await?;
        }
        if let Some((source, seq)) = cursor {
            sqlx::query(
                "INSERT INTO cursors (source, seq) VALUES (?, ?)
                 ON CONFLICT (source) DO UPDATE SET seq = excluded.seq",
            )
            .bind(source)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }

    async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT seq FROM cursors WHERE source = ?")
            .bind(source)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(|r| r.try_get("seq")).transpose()?)
    }

    async fn record(&self, uri: &str) -> Result<Option<RecordView>, StoreError> {
        let sql = format!("SELECT {RECORD_COLUMNS} {VISIBLE} AND r.uri = ?");
        let row = sqlx::query(&sql)
            .bind(uri)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(record_view).transpose()
    }

    async fn feed(&self, query: &FeedQuery) -> Result<Page, StoreError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut sql = format!("SELECT {RECORD_COLUMNS} {VISIBLE}");
        if query.author.is_some() {
            sql.push_str(" AND r.did = ?");
        }
        if !query.collections.is_empty() {
            let marks = vec!["?"; query.collections.len()].join(", ");
            sql.push_str(&format!(" AND r.collection IN ({marks})"));
        }
        let after = query.cursor.as_deref().and_then(split_cursor);
        if after.is_some() {
            sql.push_str(" AND (r.created_at, r.uri) < (?, ?)");
        }
        sql.push_str(" ORDER BY r.created_at DESC, r.uri DESC LIMIT ?");
        let mut q = sqlx::query(&sql);
        if let Some(author) = &query.author {
            q = q.bind(author);
        }
        for c in &query.collections {
            q = q.bind(c);
        }
        if let Some((at, uri)) = after {
            q = q.bind(at).bind(uri);
        }
        let rows = q.bind(limit as i64).fetch_all(&self.readers).await?;
        let records = rows
            .iter()
            .map(record_view)
            .collect::<Result<Vec<_>, _>>()?;
        let cursor = (records.len() == limit)
            .then(|| records.last())
            .flatten()
            .map(|r| format!("{} {}", r.created_at.as_deref().unwrap_or(""), r.uri));
        Ok(Page { records, cursor })
    }

    async fn actor(&self, did: &str) -> Result<Option<ProfileView>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT did, handle, active, status, display_name, description, avatar_cid
             FROM actors WHERE did = ?",
        )
        .bind(did)
        .fetch_optional(&self.readers)
        .await?
        else {
            return Ok(None);
        };
        let counts = sqlx::query(
            "SELECT collection, COUNT(*) AS n FROM records WHERE did = ?
             GROUP BY collection ORDER BY collection",
        )
        .bind(did)
        .fetch_all(&self.readers)
        .await?
        .iter()
        .map(|r| {
            Ok(CollectionCount {
                collection: r.try_get("collection")?,
                count: r.try_get("n")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let followers: i64 = sqlx::query("SELECT COUNT(*) AS n FROM follows WHERE subject = ?")
            .bind(did)
            .fetch_one(&self.readers)
            .await?
            .try_get("n")?;
        Ok(Some(ProfileView {
            did: row.try_get("did")?,
            handle: row.try_get("handle")?,
            active: row.try_get("active")?,
            status: row.try_get("status")?,
            display_name: row.try_get("display_name")?,
            description: row.try_get("description")?,
            avatar_cid: row.try_get("avatar_cid")?,
            counts,
            followers,
        }))
    }

    async fn record_cids(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query("SELECT uri, cid FROM records ORDER BY uri")
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("uri")?, r.try_get("cid")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}
