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
            .foreign_keys(true)
            // 64 MB of page cache per connection (SQLite's default is 2 MB, a small part of
            // an index that reaches about 1 GB per million records) and reads through mmap.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "1073741824");
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
            applied.records_written += upsert_records(tx, &[row]).await?;
        }
        Change::Follow {
            uri,
            did,
            subject,
            created_at,
        } => {
            upsert_follows(tx, &[(uri, did, subject, created_at.as_deref())]).await?;
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

/// Records per multi-row upsert: 11 columns each, well under SQLite's 32,766 bound
/// parameters.
const RECORD_CHUNK: usize = 100;

/// Inserts or updates a run of records, [`RECORD_CHUNK`] per statement (sqlx runs each
/// SQLite statement on its worker thread, so statements, not rows, are what cost); returns
/// how many rows changed (same-CID replays change none). Rows apply in order, so a record
/// created and updated in one run ends updated.
async fn upsert_records(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[&RecordRow],
) -> Result<u64, StoreError> {
    let mut changed = 0;
    let now = now_us();
    for chunk in rows.chunks(RECORD_CHUNK) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO records (uri, did, collection, rkey, cid, created_at, indexed_us, code, \
             slug, record_json, repairs_json) ",
        );
        let mut bad = None;
        q.push_values(chunk, |mut b, row| {
            let repairs = serde_json::to_string(&row.repairs).unwrap_or_else(|e| {
                bad = Some(e.to_string());
                String::new()
            });
            b.push_bind(&row.uri)
                .push_bind(&row.did)
                .push_bind(&row.collection)
                .push_bind(&row.rkey)
                .push_bind(&row.cid)
                .push_bind(row.created_at.as_deref().unwrap_or(""))
                .push_bind(now)
                .push_bind(&row.code)
                .push_bind(&row.slug)
                .push_bind(row.record.to_string())
                .push_bind(repairs);
        });
        if let Some(detail) = bad {
            return Err(StoreError::Corrupt {
                what: "repairs",
                detail,
            });
        }
        q.push(
            " ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, created_at = excluded.created_at, \
             indexed_us = excluded.indexed_us, code = excluded.code, slug = excluded.slug, \
             record_json = excluded.record_json, repairs_json = excluded.repairs_json \
             WHERE records.cid != excluded.cid",
        );
        changed += q.build().execute(&mut **tx).await?.rows_affected();
        // Every author gets an actor row (profile and status come later, or never).
        let mut dids: Vec<&str> = chunk.iter().map(|r| r.did.as_str()).collect();
        dids.sort_unstable();
        dids.dedup();
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("INSERT INTO actors (did, updated_us) ");
        q.push_values(&dids, |mut b, did| {
            b.push_bind(*did).push_bind(now);
        });
        q.push(" ON CONFLICT (did) DO NOTHING");
        q.build().execute(&mut **tx).await?;
    }
    Ok(changed)
}

/// A follow edge: (uri, follower, subject, createdAt).
type FollowRow<'a> = (&'a str, &'a str, &'a str, Option<&'a str>);

/// The records and follow edges of a run of upserts.
fn split_run(run: &[Change]) -> (Vec<&RecordRow>, Vec<FollowRow<'_>>) {
    let mut records = Vec::new();
    let mut follows = Vec::new();
    for change in run {
        match change {
            Change::Record(row) => records.push(row),
            Change::Follow {
                uri,
                did,
                subject,
                created_at,
            } => follows.push((
                uri.as_str(),
                did.as_str(),
                subject.as_str(),
                created_at.as_deref(),
            )),
            _ => {}
        }
    }
    (records, follows)
}

/// Inserts or updates follow edges, many per statement.
async fn upsert_follows(
    tx: &mut Transaction<'_, Sqlite>,
    follows: &[FollowRow<'_>],
) -> Result<(), StoreError> {
    for chunk in follows.chunks(RECORD_CHUNK) {
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO follows (uri, did, subject, created_at) ",
        );
        q.push_values(chunk, |mut b, (uri, did, subject, created_at)| {
            b.push_bind(*uri)
                .push_bind(*did)
                .push_bind(*subject)
                .push_bind(*created_at);
        });
        q.push(
            " ON CONFLICT (uri) DO UPDATE SET subject = excluded.subject, \
             created_at = excluded.created_at",
        );
        q.build().execute(&mut **tx).await?;
    }
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
const RECORD_COLUMNS: &str = "r.id, r.uri, r.cid, r.did, a.handle, r.collection,
    r.created_at, r.record_json, r.repairs_json";

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

/// A feed cursor: the last row's `created_at` and id, joined by a space (`created_at`
/// never holds one: it is a datetime as written, or empty).
fn split_cursor(cursor: &str) -> Option<(&str, i64)> {
    let (at, id) = cursor.rsplit_once(' ')?;
    Some((at, id.parse().ok()?))
}

impl Store for SqliteStore {
    async fn apply(
        &self,
        changes: &[Change],
        cursor: Option<(&str, i64)>,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut applied = Applied::default();
        let mut rest = changes;
        while let Some(first) = rest.first() {
            // A run of record and follow upserts (different tables, so their relative order
            // does not matter) goes in multi-row statements; anything else one by one, in
            // order.
            let run = rest
                .iter()
                .take_while(|c| matches!(c, Change::Record(_) | Change::Follow { .. }))
                .count();
            if run > 1 {
                let (records, follows) = split_run(&rest[..run]);
                applied.records_written += upsert_records(&mut tx, &records).await?;
                upsert_follows(&mut tx, &follows).await?;
                rest = &rest[run..];
            } else {
                apply_one(&mut tx, first, &mut applied).await?;
                rest = &rest[1..];
            }
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
            sql.push_str(" AND (r.created_at, r.id) < (?, ?)");
        }
        sql.push_str(" ORDER BY r.created_at DESC, r.id DESC LIMIT ?");
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
        let cursor = match (records.len() == limit, rows.last()) {
            (true, Some(last)) => {
                let id: i64 = last.try_get("id")?;
                let at: String = last.try_get("created_at")?;
                Some(format!("{at} {id}"))
            }
            _ => None,
        };
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
