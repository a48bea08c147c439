//! The index store's SQL, written once for both backends.
//!
//! The SQLite and Postgres stores run the same statements: `$n` placeholders (which both
//! accept), multi-row upserts built with [`sqlx::QueryBuilder`] (which writes each
//! database's own placeholders), `ON CONFLICT` upserts, row-value comparisons for cursors,
//! and `TRUE`/`FALSE` (SQLite reads them as 1/0). Their schemas differ only in types and
//! collation (see each backend's migrations).
//!
//! [`sql_store!`] expands the shared code for one backend, as private functions and the
//! [`Store`](super::Store) implementation. It is a macro, not generic code, because a
//! function generic over the sqlx database needs a bound for every type it binds or
//! decodes (`Encode`, `Decode`, `Type`, executor lifetimes) on every function; expanding
//! the same text for two concrete types keeps the SQL in one place and readable.

/// Expands the shared store code for `$store` (a struct with `writer` and `readers`
/// pools) over the sqlx database `$db`.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        use serde_json::Value;
        use sqlx::{Row, Transaction};

        use crate::index::{Change, Profile, RecordRow};
        use crate::store::{
            Applied, CollectionCount, FeedQuery, MAX_PAGE, Page, ProfileView, RecordView, Store,
            StoreError,
        };

        type Db = $db;
        type DbRow = <$db as sqlx::Database>::Row;

        fn now_us() -> i64 {
            atelier_relay::jetstream::now_us()
        }

        async fn apply_one(
            tx: &mut Transaction<'_, Db>,
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
                    let done = sqlx::query("DELETE FROM records WHERE uri = $1")
                        .bind(uri)
                        .execute(&mut **tx)
                        .await?;
                    applied.records_deleted += done.rows_affected();
                    sqlx::query("DELETE FROM follows WHERE uri = $1")
                        .bind(uri)
                        .execute(&mut **tx)
                        .await?;
                }
                Change::Profile(profile) => set_profile(tx, profile).await?,
                Change::DeleteProfile { did } => {
                    sqlx::query(
                        "UPDATE actors SET display_name = NULL, description = NULL,
                             avatar_cid = NULL, profile_json = NULL, updated_us = $1
                         WHERE did = $2",
                    )
                    .bind(now_us())
                    .bind(did)
                    .execute(&mut **tx)
                    .await?;
                }
                Change::Handle { did, handle } => {
                    sqlx::query(
                        "INSERT INTO actors (did, handle, handle_verified, updated_us)
                         VALUES ($1, $2, FALSE, $3)
                         ON CONFLICT (did) DO UPDATE SET handle = excluded.handle,
                             handle_verified = FALSE, updated_us = excluded.updated_us",
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
                        "INSERT INTO actors (did, active, status, updated_us) VALUES ($1, $2, $3, $4)
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

        /// Inserts or updates a run of records, [`RECORD_CHUNK`](crate::store::RECORD_CHUNK)
        /// per statement (statements, not rows, are what cost); returns how many rows
        /// changed (same-CID replays change none). Rows apply in order, so a record created
        /// and updated in one run ends updated.
        async fn upsert_records(
            tx: &mut Transaction<'_, Db>,
            rows: &[&RecordRow],
        ) -> Result<u64, StoreError> {
            let mut changed = 0;
            let now = now_us();
            for chunk in rows.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO records (uri, did, collection, rkey, cid, created_at, \
                     indexed_us, code, slug, record_json, repairs_json) ",
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
                    " ON CONFLICT (uri) DO UPDATE SET cid = excluded.cid, \
                     created_at = excluded.created_at, indexed_us = excluded.indexed_us, \
                     code = excluded.code, slug = excluded.slug, \
                     record_json = excluded.record_json, repairs_json = excluded.repairs_json \
                     WHERE records.cid <> excluded.cid",
                );
                changed += q.build().execute(&mut **tx).await?.rows_affected();
                // Every author gets an actor row (profile and status come later, or never).
                let mut dids: Vec<&str> = chunk.iter().map(|r| r.did.as_str()).collect();
                dids.sort_unstable();
                dids.dedup();
                let mut q = sqlx::QueryBuilder::<Db>::new("INSERT INTO actors (did, updated_us) ");
                q.push_values(&dids, |mut b, did| {
                    b.push_bind(*did).push_bind(now);
                });
                q.push(" ON CONFLICT (did) DO NOTHING");
                q.build().execute(&mut **tx).await?;
            }
            Ok(changed)
        }

        /// Inserts or updates follow edges, many per statement.
        async fn upsert_follows(
            tx: &mut Transaction<'_, Db>,
            follows: &[crate::store::FollowRow<'_>],
        ) -> Result<(), StoreError> {
            for chunk in follows.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
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

        async fn set_profile(tx: &mut Transaction<'_, Db>, p: &Profile) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO actors (did, display_name, description, avatar_cid, profile_json,
                     updated_us)
                 VALUES ($1, $2, $3, $4, $5, $6)
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
            WHERE COALESCE(a.active, TRUE)";

        fn record_view(row: &DbRow) -> Result<RecordView, StoreError> {
            let corrupt = |what, e: serde_json::Error| StoreError::Corrupt {
                what,
                detail: e.to_string(),
            };
            let record: Value = serde_json::from_str(row.try_get("record_json")?)
                .map_err(|e| corrupt("record", e))?;
            let repairs: Vec<String> = serde_json::from_str(row.try_get("repairs_json")?)
                .map_err(|e| corrupt("repairs", e))?;
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

        impl Store for $store {
            async fn apply(
                &self,
                changes: &[Change],
                cursor: Option<(&str, i64)>,
            ) -> Result<Applied, StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut applied = Applied::default();
                let mut rest = changes;
                while let Some(first) = rest.first() {
                    // A run of record and follow upserts (different tables, so their
                    // relative order does not matter) goes in multi-row statements;
                    // anything else one by one, in order.
                    let run = rest
                        .iter()
                        .take_while(|c| matches!(c, Change::Record(_) | Change::Follow { .. }))
                        .count();
                    if run > 1 {
                        let (records, follows) = crate::store::split_run(&rest[..run]);
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
                        "INSERT INTO cursors (source, seq) VALUES ($1, $2)
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
                let row = sqlx::query("SELECT seq FROM cursors WHERE source = $1")
                    .bind(source)
                    .fetch_optional(&self.readers)
                    .await?;
                Ok(row.map(|r| r.try_get("seq")).transpose()?)
            }

            async fn record(&self, uri: &str) -> Result<Option<RecordView>, StoreError> {
                let sql = format!("SELECT {RECORD_COLUMNS} {VISIBLE} AND r.uri = $1");
                let row = sqlx::query(&sql)
                    .bind(uri)
                    .fetch_optional(&self.readers)
                    .await?;
                row.as_ref().map(record_view).transpose()
            }

            async fn feed(&self, query: &FeedQuery) -> Result<Page, StoreError> {
                let limit = query.limit.clamp(1, MAX_PAGE);
                let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                    "SELECT {RECORD_COLUMNS} {VISIBLE}"
                ));
                if let Some(author) = &query.author {
                    q.push(" AND r.did = ").push_bind(author);
                }
                if !query.collections.is_empty() {
                    q.push(" AND r.collection IN (");
                    let mut list = q.separated(", ");
                    for c in &query.collections {
                        list.push_bind(c);
                    }
                    list.push_unseparated(")");
                }
                if let Some((at, id)) = query.cursor.as_deref().and_then(crate::store::split_cursor)
                {
                    q.push(" AND (r.created_at, r.id) < (")
                        .push_bind(at)
                        .push(", ")
                        .push_bind(id)
                        .push(")");
                }
                q.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
                    .push_bind(limit as i64);
                let rows = q.build().fetch_all(&self.readers).await?;
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
                     FROM actors WHERE did = $1",
                )
                .bind(did)
                .fetch_optional(&self.readers)
                .await?
                else {
                    return Ok(None);
                };
                let counts = sqlx::query(
                    "SELECT collection, COUNT(*) AS n FROM records WHERE did = $1
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
                let followers: i64 =
                    sqlx::query("SELECT COUNT(*) AS n FROM follows WHERE subject = $1")
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
    };
}

pub(crate) use sql_store;
