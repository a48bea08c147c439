//! The publishing log: idempotency keys and uploaded blobs, per account, in the session
//! store's SQLite database (schema: `migrations/oauth/0002_publish_log.sql`).
//!
//! An idempotent publish is two steps around the PDS call: [`PublishLog::begin`] claims
//! the key and fixes the record key before anything is written (a retry, concurrent or
//! after a crash, gets the same record key and so writes the same record), and
//! [`PublishLog::finish`] stores the answer that every later retry gets back.

use serde_json::Value;
use sqlx::{Row, SqlitePool};

/// The log's schema, applied idempotently when it opens.
const SCHEMA: &str = include_str!("../../migrations/oauth/0002_publish_log.sql");

/// Where an idempotency key stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// New: write the record under this record key.
    Fresh {
        /// The record key to write.
        rkey: String,
    },
    /// Claimed before but never finished (a retry, or a crash mid-publish): write again
    /// under the same record key.
    Resume {
        /// The record key the first attempt chose.
        rkey: String,
    },
    /// Finished: answer with this again.
    Done(Value),
    /// The key was used for a different request.
    Conflict,
}

/// The log over a pool.
#[derive(Debug, Clone)]
pub struct PublishLog {
    pool: SqlitePool,
}

/// A blob uploaded for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    /// The blob's CID.
    pub cid: String,
    /// Its MIME type (as sniffed).
    pub mime: String,
    /// Its size in bytes.
    pub size: i64,
}

impl PublishLog {
    /// The log in `pool`'s database, its tables created if missing.
    pub async fn with_pool(pool: SqlitePool) -> Result<PublishLog, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(PublishLog { pool })
    }

    /// Claims `key` for `did`'s request (`kind`, `request_hash`), proposing `rkey`.
    pub async fn begin(
        &self,
        did: &str,
        key: &str,
        kind: &str,
        request_hash: &str,
        collection: &str,
        rkey: &str,
    ) -> Result<Begin, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO publish_request (did, idem_key, kind, request_hash, collection, rkey, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (did, idem_key) DO NOTHING",
        )
        .bind(did)
        .bind(key)
        .bind(kind)
        .bind(request_hash)
        .bind(collection)
        .bind(rkey)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Begin::Fresh {
                rkey: rkey.to_owned(),
            });
        }
        let row = sqlx::query(
            "SELECT request_hash, rkey, response FROM publish_request \
             WHERE did = ? AND idem_key = ?",
        )
        .bind(did)
        .bind(key)
        .fetch_one(&self.pool)
        .await?;
        let hash: String = row.try_get("request_hash")?;
        if hash != request_hash {
            return Ok(Begin::Conflict);
        }
        let response: Option<String> = row.try_get("response")?;
        Ok(
            match response.and_then(|r| serde_json::from_str::<Value>(&r).ok()) {
                Some(answer) => Begin::Done(answer),
                None => Begin::Resume {
                    rkey: row.try_get("rkey")?,
                },
            },
        )
    }

    /// Stores the answer to `did`'s request under `key`.
    pub async fn finish(&self, did: &str, key: &str, answer: &Value) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE publish_request SET response = ?, done_at = ? WHERE did = ? AND idem_key = ?",
        )
        .bind(answer.to_string())
        .bind(now())
        .bind(did)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Releases `key` after a permanent failure (nothing was written), so the client may
    /// send a corrected request under it.
    pub async fn release(&self, did: &str, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM publish_request WHERE did = ? AND idem_key = ? AND response IS NULL",
        )
        .bind(did)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The answers of `did`'s latest finished publishes, newest first.
    pub async fn recent(&self, did: &str, limit: i64) -> Result<Vec<Value>, sqlx::Error> {
        recent(&self.pool, did, limit).await
    }

    /// The blob with these bytes (by SHA-256, hex) already uploaded for `did`, if any.
    pub async fn blob(&self, did: &str, sha256: &str) -> Result<Option<BlobRow>, sqlx::Error> {
        let row =
            sqlx::query("SELECT cid, mime, size FROM publish_blob WHERE did = ? AND sha256 = ?")
                .bind(did)
                .bind(sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some(r) => Some(BlobRow {
                cid: r.try_get("cid")?,
                mime: r.try_get("mime")?,
                size: r.try_get("size")?,
            }),
            None => None,
        })
    }

    /// Remembers a blob uploaded for `did`.
    pub async fn put_blob(
        &self,
        did: &str,
        sha256: &str,
        blob: &BlobRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO publish_blob (did, sha256, cid, mime, size, created_at) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (did, sha256) DO UPDATE SET \
             cid = excluded.cid, mime = excluded.mime, size = excluded.size",
        )
        .bind(did)
        .bind(sha256)
        .bind(&blob.cid)
        .bind(&blob.mime)
        .bind(blob.size)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `did`'s blob with CID `cid` (the PDS no longer has it).
    pub async fn forget_blob(&self, did: &str, cid: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM publish_blob WHERE did = ? AND cid = ?")
            .bind(did)
            .bind(cid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn now() -> i64 {
    atelier_relay::jetstream::now_us()
}

/// The answers of `did`'s latest finished record publishes in `pool`'s log, newest first
/// (for pages that read the log without holding a [`PublishLog`]). Fails when the log's
/// tables do not exist (publishing never ran).
pub async fn recent(pool: &SqlitePool, did: &str, limit: i64) -> Result<Vec<Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT response FROM publish_request WHERE did = ? AND done_at IS NOT NULL \
         AND kind = 'record' ORDER BY done_at DESC, rowid DESC LIMIT ?",
    )
    .bind(did)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>("response").ok())
        .filter_map(|r| serde_json::from_str(&r).ok())
        .collect())
}
