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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the store holds any label. Until it does, queries skip the label filter and the
/// label lookup entirely, so an AppView without label sources pays nothing for them. Read
/// at open and set when labels are stored; labels are only written by the process's own
/// label sync, so the flag cannot miss a label another process wrote unless two AppViews
/// share one database, one syncing labels (then the other sees them after a restart).
#[derive(Debug, Clone, Default)]
pub(crate) struct Labelled(Arc<AtomicBool>);

impl Labelled {
    /// The flag, as read from the database.
    pub(crate) fn new(any: bool) -> Labelled {
        Labelled(Arc::new(AtomicBool::new(any)))
    }

    /// Whether labels may apply.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Labels are stored from now on.
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Expands the shared store code for `$store` (a struct with `writer` and `readers`
/// pools) over the sqlx database `$db`.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        use serde_json::Value;
        use sqlx::{Row, Transaction};

        use crate::index::{Change, Profile, RecordRow};
        use crate::labels::Label;
        use crate::store::{
            ActorHandle, Applied, BackfillCounts, CollectionCount, FeedQuery, HandleCheck,
            HandleVerdict, LabelView, MAX_PAGE,
            NotificationPage, NotificationView, Page, ProfileView, RecordView, Snapshot, Store,
            StoreError, attach_labels, not_hidden, not_hidden_by, Labelers,
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
                Change::Record(_) | Change::Follow { .. } | Change::Rev { .. } => {
                    apply_run(tx, std::slice::from_ref(change), applied, true).await?;
                }
                Change::Snapshot { did, rev, changes } => {
                    // A live resync: the stream is the authority, so an older rev (only
                    // possible on a replay) is skipped.
                    let _ = Box::pin(snapshot(tx, did, rev, changes, applied, false)).await?;
                }
                Change::DeleteRecord { uri } => {
                    let done = sqlx::query("DELETE FROM records WHERE uri = $1")
                        .bind(uri)
                        .execute(&mut **tx)
                        .await?;
                    applied.records_deleted += done.rows_affected();
                    for table in ["follows", "notifications"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE uri = $1"))
                            .bind(uri)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                Change::Optimistic(row) => {
                    applied.records_written += insert_pending(tx, row).await?;
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
                        "INSERT INTO actors (did, handle, handle_verified, updated_us,
                             handle_due_us, handle_failures)
                         VALUES ($1, $2, FALSE, $3, 0, 0)
                         ON CONFLICT (did) DO UPDATE SET handle = excluded.handle,
                             handle_verified = FALSE, updated_us = excluded.updated_us,
                             handle_due_us = 0, handle_failures = 0",
                    )
                    .bind(did)
                    .bind(handle)
                    .bind(now_us())
                    .execute(&mut **tx)
                    .await?;
                }
                Change::SyncStates(states) => upsert_sync_states(tx, states).await?,
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

        /// A run of record, follow and rev upserts (different tables, so their relative
        /// order does not matter) in multi-row statements, then (`notify`) the
        /// notifications they cause.
        async fn apply_run(
            tx: &mut Transaction<'_, Db>,
            run: &[Change],
            applied: &mut Applied,
            notify_actors: bool,
        ) -> Result<(), StoreError> {
            let run = crate::store::split_run(run);
            // Records the publishing API inserted and this run confirms (or repairs):
            // their authors hear that the publish is visible from the network.
            let confirmed = if notify_actors && !run.records.is_empty() {
                pending_among(tx, &run.records).await?
            } else {
                Vec::new()
            };
            applied.records_written += upsert_records(tx, &run.records).await?;
            upsert_follows(tx, &run.follows).await?;
            upsert_revs(tx, &run.revs).await?;
            if notify_actors {
                notify(tx, &run.records, &run.follows).await?;
                notify_visible(tx, &confirmed).await?;
            }
            Ok(())
        }

        /// The records of `rows` that are pending (inserted by the publishing API), read
        /// through the partial index of pending rows (few, usually none).
        async fn pending_among<'r>(
            tx: &mut Transaction<'_, Db>,
            rows: &[&'r RecordRow],
        ) -> Result<Vec<&'r RecordRow>, StoreError> {
            let pending: std::collections::HashSet<String> =
                sqlx::query("SELECT uri FROM records WHERE pending")
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("uri"))
                    .collect::<Result<_, sqlx::Error>>()?;
            if pending.is_empty() {
                return Ok(Vec::new());
            }
            Ok(rows
                .iter()
                .copied()
                .filter(|r| pending.contains(&r.uri))
                .collect())
        }

        /// "Your publish is visible": a notification to each author of `rows`.
        async fn notify_visible(
            tx: &mut Transaction<'_, Db>,
            rows: &[&RecordRow],
        ) -> Result<(), StoreError> {
            let now = now_us();
            for row in rows {
                sqlx::query(
                    "INSERT INTO notifications (recipient, reason, author, uri, subject,
                         created_at, indexed_us)
                     VALUES ($1, 'visible', $1, $2, NULL, $3, $4)
                     ON CONFLICT (recipient, reason, uri) DO NOTHING",
                )
                .bind(&row.did)
                .bind(&row.uri)
                .bind(row.created_at.as_deref().unwrap_or(""))
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Moves actors' repository revs forward (never back).
        async fn upsert_revs(
            tx: &mut Transaction<'_, Db>,
            revs: &[(&str, &str)],
        ) -> Result<(), StoreError> {
            let now = now_us();
            for chunk in revs.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO actors (did, repo_rev, updated_us) ",
                );
                q.push_values(chunk, |mut b, (did, rev)| {
                    b.push_bind(*did).push_bind(*rev).push_bind(now);
                });
                q.push(
                    " ON CONFLICT (did) DO UPDATE SET repo_rev = excluded.repo_rev \
                     WHERE actors.repo_rev IS NULL OR actors.repo_rev < excluded.repo_rev",
                );
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Stores accounts' verification states (each replaces the account's last).
        async fn upsert_sync_states(
            tx: &mut Transaction<'_, Db>,
            states: &[(String, crate::index::AccountState)],
        ) -> Result<(), StoreError> {
            for chunk in states.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO sync_state (did, rev, data_cid, commit_cid, status) ",
                );
                q.push_values(chunk, |mut b, (did, state)| {
                    b.push_bind(did.as_str())
                        .push_bind(i64::try_from(state.rev).unwrap_or(i64::MAX))
                        .push_bind(state.data.bytes().to_vec())
                        .push_bind(state.commit.bytes().to_vec())
                        .push_bind(state.status.as_str());
                });
                q.push(
                    " ON CONFLICT (did) DO UPDATE SET rev = excluded.rev, \
                     data_cid = excluded.data_cid, commit_cid = excluded.commit_cid, \
                     status = excluded.status",
                );
                q.build().execute(&mut **tx).await?;
            }
            Ok(())
        }

        /// Sets a backfill work-list row.
        async fn backfill_state(
            executor: impl sqlx::Executor<'_, Database = Db>,
            did: &str,
            state: &str,
            rev: Option<&str>,
            records: i64,
            error: Option<&str>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO backfill_repos (did, state, rev, records, error, updated_us)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (did) DO UPDATE SET state = excluded.state, rev = excluded.rev,
                     records = excluded.records, error = excluded.error,
                     updated_us = excluded.updated_us",
            )
            .bind(did)
            .bind(state)
            .bind(rev)
            .bind(records)
            .bind(error)
            .bind(now_us())
            .execute(executor)
            .await?;
            Ok(())
        }

        /// Notifications for a run: the remixed work's author, the followed actor, and
        /// every known actor whose handle is mentioned; never for acting on one's own
        /// work. Unique per (recipient, reason, uri), so replays add nothing.
        async fn notify(
            tx: &mut Transaction<'_, Db>,
            records: &[&RecordRow],
            follows: &[crate::store::FollowRow<'_>],
        ) -> Result<(), StoreError> {
            let now = now_us();
            // (recipient, reason, author, uri, subject, created_at)
            let mut direct: Vec<(&str, &str, &str, &str, &str, &str)> = Vec::new();
            for row in records {
                let Some(parent) = row.remix_of.as_deref() else {
                    continue;
                };
                match crate::store::uri_did(parent) {
                    Some(owner) if owner != row.did => direct.push((
                        owner,
                        "remix",
                        &row.did,
                        &row.uri,
                        parent,
                        row.created_at.as_deref().unwrap_or(""),
                    )),
                    _ => {}
                }
            }
            for (uri, did, subject, created_at) in follows {
                if subject != did {
                    direct.push((subject, "follow", did, uri, subject, created_at.unwrap_or("")));
                }
            }
            for chunk in direct.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "INSERT INTO notifications (recipient, reason, author, uri, subject, \
                     created_at, indexed_us) ",
                );
                q.push_values(chunk, |mut b, (recipient, reason, author, uri, subject, at)| {
                    b.push_bind(*recipient)
                        .push_bind(*reason)
                        .push_bind(*author)
                        .push_bind(*uri)
                        .push_bind(*subject)
                        .push_bind(*at)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (recipient, reason, uri) DO NOTHING");
                q.build().execute(&mut **tx).await?;
            }
            // Mentions name handles: each goes to the actor holding it now, if known.
            for row in records {
                for handle in &row.mentions {
                    sqlx::query(
                        "INSERT INTO notifications (recipient, reason, author, uri, subject,
                             created_at, indexed_us)
                         SELECT did, 'mention', $1, $2, NULL, $3, $4 FROM actors
                         WHERE handle = $5 AND did <> $1
                         ON CONFLICT (recipient, reason, uri) DO NOTHING",
                    )
                    .bind(&row.did)
                    .bind(&row.uri)
                    .bind(row.created_at.as_deref().unwrap_or(""))
                    .bind(now)
                    .bind(handle)
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
                     indexed_us, code, slug, record_json, repairs_json, remix_of) ",
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
                        .push_bind(repairs)
                        .push_bind(&row.remix_of);
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
                     record_json = excluded.record_json, repairs_json = excluded.repairs_json, \
                     remix_of = excluded.remix_of, pending = FALSE \
                     WHERE records.cid <> excluded.cid OR records.pending",
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

        /// A moderation notice to the owner of a labelled record or account (a known
        /// actor), from the labeler, naming the label value. One per subject: a later label
        /// on the same subject does not notify again.
        async fn notify_moderation(
            tx: &mut Transaction<'_, Db>,
            label: &Label,
        ) -> Result<(), StoreError> {
            let (owner, uri) = if label.uri.starts_with("did:") {
                (label.uri.as_str(), format!("at://{}", label.uri))
            } else {
                match crate::store::uri_did(&label.uri) {
                    Some(owner) => (owner, label.uri.clone()),
                    None => return Ok(()),
                }
            };
            sqlx::query(
                "INSERT INTO notifications (recipient, reason, author, uri, subject,
                     created_at, indexed_us)
                 SELECT did, 'moderation', $2, $3, $4, $5, $6 FROM actors WHERE did = $1
                 ON CONFLICT (recipient, reason, uri) DO NOTHING",
            )
            .bind(owner)
            .bind(&label.src)
            .bind(&uri)
            .bind(&label.val)
            .bind(&label.cts)
            .bind(now_us())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Inserts a record the publishing API wrote, as pending, unless its URI is
        /// already indexed (the firehose delivered it first). Returns rows inserted.
        async fn insert_pending(
            tx: &mut Transaction<'_, Db>,
            row: &RecordRow,
        ) -> Result<u64, StoreError> {
            let repairs =
                serde_json::to_string(&row.repairs).map_err(|e| StoreError::Corrupt {
                    what: "repairs",
                    detail: e.to_string(),
                })?;
            let now = now_us();
            let inserted = sqlx::query(
                "INSERT INTO records (uri, did, collection, rkey, cid, created_at, indexed_us, \
                 code, slug, record_json, repairs_json, remix_of, pending) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, TRUE) \
                 ON CONFLICT (uri) DO NOTHING",
            )
            .bind(&row.uri)
            .bind(&row.did)
            .bind(&row.collection)
            .bind(&row.rkey)
            .bind(&row.cid)
            .bind(row.created_at.as_deref().unwrap_or(""))
            .bind(now)
            .bind(&row.code)
            .bind(&row.slug)
            .bind(row.record.to_string())
            .bind(repairs)
            .bind(&row.remix_of)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            sqlx::query("INSERT INTO actors (did, updated_us) VALUES ($1, $2) ON CONFLICT (did) DO NOTHING")
                .bind(&row.did)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            Ok(inserted)
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

        /// Applies `did`'s repository at `rev` inside `tx` (see
        /// [`Store::apply_snapshot`]); `backfill` also marks its work-list row done.
        /// Returns the stored rev, changing nothing, when that is newer.
        async fn snapshot(
            tx: &mut Transaction<'_, Db>,
            did: &str,
            rev: &str,
            changes: &[Change],
            applied: &mut Applied,
            backfill: bool,
        ) -> Result<Option<String>, StoreError> {
            // The rev first: it takes the write lock (SQLite) or the actor's row lock
            // (Postgres), so a live commit for this actor waits for this transaction, and a
            // newer stored rev refuses the export.
            let moved = sqlx::query(
                "INSERT INTO actors (did, repo_rev, updated_us) VALUES ($1, $2, $3)
                 ON CONFLICT (did) DO UPDATE SET repo_rev = excluded.repo_rev
                 WHERE actors.repo_rev IS NULL OR actors.repo_rev <= excluded.repo_rev",
            )
            .bind(did)
            .bind(rev)
            .bind(now_us())
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if moved == 0 {
                let stored: Option<String> =
                    sqlx::query("SELECT repo_rev FROM actors WHERE did = $1")
                        .bind(did)
                        .fetch_one(&mut **tx)
                        .await?
                        .try_get("repo_rev")?;
                return Ok(Some(stored.unwrap_or_default()));
            }
            let mut has_profile = false;
            let mut rest = changes;
            while let Some(first) = rest.first() {
                let run = rest.iter().take_while(|c| crate::store::in_run(c)).count();
                if run > 0 {
                    apply_run(tx, &rest[..run], applied, false).await?;
                    rest = &rest[run..];
                } else {
                    has_profile |= matches!(first, Change::Profile(_));
                    Box::pin(apply_one(tx, first, applied)).await?;
                    rest = &rest[1..];
                }
            }
            if !has_profile {
                apply_one(tx, &Change::DeleteProfile { did: did.to_owned() }, applied).await?;
            }
            // What the export no longer holds goes.
            let kept: std::collections::HashSet<&str> = changes
                .iter()
                .filter_map(|c| match c {
                    Change::Record(row) => Some(row.uri.as_str()),
                    Change::Follow { uri, .. } => Some(uri.as_str()),
                    _ => None,
                })
                .collect();
            // A follow record is in both tables under one URI: a set deletes it once (and
            // stays linear for large repositories).
            let mut gone = std::collections::BTreeSet::new();
            for table in ["records", "follows"] {
                let sql = format!("SELECT uri FROM {table} WHERE did = $1");
                for row in sqlx::query(&sql).bind(did).fetch_all(&mut **tx).await? {
                    let uri: String = row.try_get("uri")?;
                    if !kept.contains(uri.as_str()) {
                        gone.insert(uri);
                    }
                }
            }
            for uri in gone {
                apply_one(tx, &Change::DeleteRecord { uri }, applied).await?;
            }
            if backfill {
                let records = changes
                    .iter()
                    .filter(|c| matches!(c, Change::Record(_)))
                    .count() as i64;
                backfill_state(&mut **tx, did, "done", Some(rev), records, None).await?;
            }
            Ok(None)
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
                labels: None,
            })
        }

        /// The columns of an [`ActorHandle`](crate::store::ActorHandle).
        const HANDLE_COLUMNS: &str = "did, handle, handle_verified, handle_checked_us,
            handle_due_us, handle_failures";

        fn actor_handle(row: &DbRow) -> Result<ActorHandle, StoreError> {
            Ok(ActorHandle {
                did: row.try_get("did")?,
                handle: row.try_get("handle")?,
                verified: row.try_get("handle_verified")?,
                checked_us: row.try_get("handle_checked_us")?,
                due_us: row.try_get("handle_due_us")?,
                failures: row.try_get("handle_failures")?,
            })
        }

        /// Notifications of `$1` (the recipient) whose author is not inactive, with the
        /// author's handle and the causing record's JSON when it is indexed.
        const NOTIFICATION_SELECT: &str = "SELECT n.id, n.reason, n.author, a.handle,
                n.uri, n.subject, n.created_at, n.indexed_us, r.record_json
            FROM notifications n LEFT JOIN actors a ON a.did = n.author
                LEFT JOIN records r ON r.uri = n.uri
            WHERE n.recipient = $1 AND COALESCE(a.active, TRUE)";

        /// Puts the labels in force on `views` (their records and authors) on them, with
        /// one query.
        async fn label_views(
            pool: &sqlx::Pool<Db>,
            views: &mut [RecordView],
            now: i64,
            accept: Option<&[String]>,
        ) -> Result<(), StoreError> {
            if views.is_empty() {
                return Ok(());
            }
            let mut subjects: Vec<String> = views
                .iter()
                .flat_map(|v| [v.uri.clone(), v.did.clone()])
                .collect();
            subjects.sort_unstable();
            subjects.dedup();
            let labels = labels_on(pool, &subjects, now, accept).await?;
            attach_labels(views, labels);
            Ok(())
        }

        /// The labels in force on `subjects` from the configured sources, only those in
        /// `accept` when given.
        async fn labels_on(
            pool: &sqlx::Pool<Db>,
            subjects: &[String],
            now: i64,
            accept: Option<&[String]>,
        ) -> Result<Vec<LabelView>, StoreError> {
            let mut out = Vec::new();
            if accept.is_some_and(|a| a.is_empty()) {
                return Ok(out);
            }
            for chunk in subjects.chunks(crate::store::RECORD_CHUNK) {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT l.src, l.uri, l.cid, l.val, l.cts, l.exp FROM labels l \
                     JOIN label_sources ls ON ls.src = l.src \
                     WHERE ls.active AND l.neg = FALSE AND (l.exp_us IS NULL OR l.exp_us > ",
                );
                q.push_bind(now).push(")");
                if let Some(accept) = accept {
                    q.push(" AND l.src IN (");
                    let mut list = q.separated(", ");
                    for src in accept {
                        list.push_bind(src);
                    }
                    list.push_unseparated(")");
                }
                q.push(" AND l.uri IN (");
                let mut list = q.separated(", ");
                for subject in chunk {
                    list.push_bind(subject);
                }
                list.push_unseparated(") ORDER BY l.uri, l.src, l.val");
                for row in q.build().fetch_all(pool).await? {
                    out.push(LabelView {
                        src: row.try_get("src")?,
                        uri: row.try_get("uri")?,
                        cid: row.try_get("cid")?,
                        val: row.try_get("val")?,
                        cts: row.try_get("cts")?,
                        exp: row.try_get("exp")?,
                    });
                }
            }
            Ok(out)
        }

        /// `AND` the label filter for notifications (on the causing record and its author),
        /// or nothing while no label is stored.
        fn notification_filter(labelled: bool, now: &str) -> String {
            if labelled {
                // A moderation notice is about hidden content by design: it is kept.
                format!(
                    " AND (n.reason = 'moderation' OR {})",
                    not_hidden("n.uri", "r.cid", "n.author", now)
                )
            } else {
                String::new()
            }
        }

        /// Whether the `labels` table has a row (for [`Labelled`](super::sql::Labelled)).
        pub(crate) async fn load_labelled(
            pool: &sqlx::Pool<Db>,
        ) -> Result<crate::store::sql::Labelled, StoreError> {
            let n: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM (SELECT 1 FROM labels LIMIT 1) AS t")
                    .fetch_one(pool)
                    .await?
                    .try_get("n")?;
            Ok(crate::store::sql::Labelled::new(n > 0))
        }

        async fn seen_us(
            pool: &sqlx::Pool<Db>,
            recipient: &str,
        ) -> Result<Option<i64>, StoreError> {
            let row = sqlx::query("SELECT seen_us FROM notifications_seen WHERE did = $1")
                .bind(recipient)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get("seen_us")).transpose()?)
        }

        fn notification_view(row: &DbRow, seen_us: i64) -> Result<NotificationView, StoreError> {
            let record = match row.try_get::<Option<String>, _>("record_json")? {
                Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                    StoreError::Corrupt {
                        what: "record",
                        detail: e.to_string(),
                    }
                })?),
                None => None,
            };
            let created_at: String = row.try_get("created_at")?;
            let indexed_us: i64 = row.try_get("indexed_us")?;
            Ok(NotificationView {
                id: row.try_get("id")?,
                reason: row.try_get("reason")?,
                author: row.try_get("author")?,
                author_handle: row.try_get("handle")?,
                uri: row.try_get("uri")?,
                subject: row.try_get("subject")?,
                record,
                created_at: (!created_at.is_empty()).then_some(created_at),
                indexed_at: atelier_relay::service::rfc3339(indexed_us),
                is_read: indexed_us <= seen_us,
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
                    // A run of record and follow upserts together; anything else one by
                    // one, in order.
                    let run = rest.iter().take_while(|c| crate::store::in_run(c)).count();
                    if run > 0 {
                        apply_run(&mut tx, &rest[..run], &mut applied, true).await?;
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
                self.record_for(uri, None).await
            }

            async fn record_for(
                &self,
                uri: &str,
                labelers: Option<&Labelers>,
            ) -> Result<Option<RecordView>, StoreError> {
                let now = now_us();
                let labelled = self.labelled.get();
                let redact = labelers.map(|l| l.redact.as_slice());
                let hidden = labelled
                    .then(|| not_hidden_by("r.uri", "r.cid", "r.did", "$2", redact))
                    .flatten();
                let sql = format!(
                    "SELECT {RECORD_COLUMNS} {VISIBLE} AND r.uri = $1{}",
                    hidden.as_ref().map_or_else(String::new, |h| format!(" AND {h}"))
                );
                let mut query = sqlx::query(&sql).bind(uri);
                if hidden.is_some() {
                    query = query.bind(now);
                }
                let row = query.fetch_optional(&self.readers).await?;
                let Some(view) = row.as_ref().map(record_view).transpose()? else {
                    return Ok(None);
                };
                if !labelled {
                    return Ok(Some(view));
                }
                let mut views = [view];
                let accept = labelers.map(|l| l.accept.as_slice());
                label_views(&self.readers, &mut views, now, accept).await?;
                let [view] = views;
                Ok(Some(view))
            }

            async fn feed(&self, query: &FeedQuery) -> Result<Page, StoreError> {
                let limit = query.limit.clamp(1, MAX_PAGE);
                let now = now_us();
                let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                    "SELECT {RECORD_COLUMNS} {VISIBLE}"
                ));
                // Labelled records never reach a page: the filter is part of the query, so
                // pages stay full and cursors stay valid.
                let labelled = self.labelled.get();
                let redact = query.labelers.as_ref().map(|l| l.redact.as_slice());
                let hidden = not_hidden_by("r.uri", "r.cid", "r.did", "\u{0}", redact);
                if labelled
                    && let Some((before, after)) =
                        hidden.as_deref().and_then(|h| h.split_once('\u{0}'))
                {
                    q.push(" AND ").push(before).push_bind(now).push(after);
                }
                if let Some(author) = &query.author {
                    q.push(" AND r.did = ").push_bind(author);
                }
                if let Some(parent) = &query.remix_of {
                    q.push(" AND r.remix_of = ").push_bind(parent);
                }
                if let Some(viewer) = &query.following_of {
                    q.push(" AND r.did IN (SELECT subject FROM follows WHERE did = ")
                        .push_bind(viewer)
                        .push(")");
                }
                if let Some(text) = &query.search {
                    let code = text.strip_prefix('$').unwrap_or(text);
                    let handle = text.strip_prefix('@').unwrap_or(text).to_ascii_lowercase();
                    // A prefix as a range: [p, p + U+10FFFF), bytewise in both databases.
                    let end = |p: &str| format!("{p}\u{10FFFF}");
                    q.push(" AND (r.code = ")
                        .push_bind(code.to_owned())
                        .push(" OR (r.slug >= ")
                        .push_bind(text.clone())
                        .push(" AND r.slug < ")
                        .push_bind(end(text))
                        .push(") OR (a.handle >= ")
                        .push_bind(handle.clone())
                        .push(" AND a.handle < ")
                        .push_bind(end(&handle))
                        .push("))");
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
                let mut records = rows
                    .iter()
                    .map(record_view)
                    .collect::<Result<Vec<_>, _>>()?;
                if labelled {
                    let accept = query.labelers.as_ref().map(|l| l.accept.as_slice());
                    label_views(&self.readers, &mut records, now, accept).await?;
                }
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
                self.actor_for(did, None).await
            }

            async fn actor_for(
                &self,
                did: &str,
                labelers: Option<&Labelers>,
            ) -> Result<Option<ProfileView>, StoreError> {
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
                // Counted as the feeds show them: records and follows hidden by a label
                // are left out, and so are follows by inactive accounts.
                let now = now_us();
                let redact = labelers.map(|l| l.redact.as_slice());
                // Whether anything can hide: labels stored, and a redacting source.
                let labelled = self.labelled.get()
                    && not_hidden_by("", "", "", "", redact).is_some();
                let hidden = |uri: &str, cid: &str, author: &str| {
                    match not_hidden_by(uri, cid, author, "$2", redact) {
                        Some(h) if labelled => format!(" AND {h}"),
                        _ => String::new(),
                    }
                };
                let sql = format!(
                    "SELECT r.collection, COUNT(*) AS n FROM records r WHERE r.did = $1{}
                     GROUP BY r.collection ORDER BY r.collection",
                    hidden("r.uri", "r.cid", "r.did")
                );
                let mut query = sqlx::query(&sql).bind(did);
                if labelled {
                    query = query.bind(now);
                }
                let counts = query
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
                let sql = format!(
                    "SELECT COUNT(*) AS n FROM follows f
                         LEFT JOIN actors a ON a.did = f.did
                         LEFT JOIN records r ON r.uri = f.uri
                     WHERE f.subject = $1 AND COALESCE(a.active, TRUE){}",
                    hidden("f.uri", "r.cid", "f.did")
                );
                let mut query = sqlx::query(&sql).bind(did);
                if labelled {
                    query = query.bind(now);
                }
                let followers: i64 = query.fetch_one(&self.readers).await?.try_get("n")?;
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

            async fn notifications(
                &self,
                recipient: &str,
                before: Option<i64>,
                limit: usize,
            ) -> Result<NotificationPage, StoreError> {
                let limit = limit.clamp(1, MAX_PAGE);
                let seen_us = seen_us(&self.readers, recipient).await?;
                let labelled = self.labelled.get();
                let sql = format!(
                    "{NOTIFICATION_SELECT}{} AND n.id < $2 ORDER BY n.id DESC LIMIT $3",
                    notification_filter(labelled, "$4")
                );
                let mut query = sqlx::query(&sql)
                    .bind(recipient)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(limit as i64);
                if labelled {
                    query = query.bind(now_us());
                }
                let rows = query.fetch_all(&self.readers).await?;
                let notifications = rows
                    .iter()
                    .map(|r| notification_view(r, seen_us.unwrap_or(0)))
                    .collect::<Result<Vec<_>, _>>()?;
                let cursor = match notifications.last() {
                    Some(last) if notifications.len() == limit => Some(last.id),
                    _ => None,
                };
                Ok(NotificationPage {
                    notifications,
                    cursor,
                    seen_us,
                })
            }

            async fn notifications_after(
                &self,
                recipient: &str,
                after: i64,
                limit: usize,
            ) -> Result<Vec<NotificationView>, StoreError> {
                let seen = seen_us(&self.readers, recipient).await?.unwrap_or(0);
                let labelled = self.labelled.get();
                let sql = format!(
                    "{NOTIFICATION_SELECT}{} AND n.id > $2 ORDER BY n.id LIMIT $3",
                    notification_filter(labelled, "$4")
                );
                let mut query = sqlx::query(&sql)
                    .bind(recipient)
                    .bind(after)
                    .bind(limit.clamp(1, MAX_PAGE) as i64);
                if labelled {
                    query = query.bind(now_us());
                }
                query
                    .fetch_all(&self.readers)
                    .await?
                    .iter()
                    .map(|r| notification_view(r, seen))
                    .collect()
            }

            async fn unread_count(&self, recipient: &str) -> Result<i64, StoreError> {
                let seen = seen_us(&self.readers, recipient).await?.unwrap_or(0);
                let labelled = self.labelled.get();
                let sql = format!(
                    "SELECT COUNT(*) AS n FROM notifications n
                     LEFT JOIN actors a ON a.did = n.author
                     LEFT JOIN records r ON r.uri = n.uri
                     WHERE n.recipient = $1 AND n.indexed_us > $2 AND COALESCE(a.active, TRUE)
                         {}",
                    notification_filter(labelled, "$3")
                );
                let mut query = sqlx::query(&sql).bind(recipient).bind(seen);
                if labelled {
                    query = query.bind(now_us());
                }
                Ok(query
                .fetch_one(&self.readers)
                .await?
                .try_get("n")?)
            }

            async fn update_seen(&self, recipient: &str, seen_us: i64) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO notifications_seen (did, seen_us) VALUES ($1, $2)
                     ON CONFLICT (did) DO UPDATE SET seen_us = excluded.seen_us",
                )
                .bind(recipient)
                .bind(seen_us)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn backfill_enqueue(&self, dids: &[String]) -> Result<(), StoreError> {
                let now = now_us();
                let mut tx = self.writer.begin().await?;
                for chunk in dids.chunks(crate::store::RECORD_CHUNK) {
                    let mut q = sqlx::QueryBuilder::<Db>::new(
                        "INSERT INTO backfill_repos (did, state, updated_us) ",
                    );
                    q.push_values(chunk, |mut b, did| {
                        b.push_bind(did).push_bind("pending").push_bind(now);
                    });
                    q.push(" ON CONFLICT (did) DO NOTHING");
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn backfill_pending(&self, limit: usize) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query(
                    "SELECT did FROM backfill_repos WHERE state <> 'done' ORDER BY did LIMIT $1",
                )
                .bind(limit as i64)
                .fetch_all(&self.readers)
                .await?
                .iter()
                .map(|r| r.try_get("did"))
                .collect::<Result<Vec<String>, sqlx::Error>>()?)
            }

            async fn backfill_counts(&self) -> Result<BackfillCounts, StoreError> {
                let mut counts = BackfillCounts::default();
                let rows = sqlx::query(
                    "SELECT state, COUNT(*) AS n FROM backfill_repos GROUP BY state",
                )
                .fetch_all(&self.readers)
                .await?;
                for row in rows {
                    let state: String = row.try_get("state")?;
                    let n: i64 = row.try_get("n")?;
                    let n = u64::try_from(n).unwrap_or(0);
                    match state.as_str() {
                        "done" => counts.done += n,
                        "failed" => counts.failed += n,
                        _ => counts.pending += n,
                    }
                }
                Ok(counts)
            }

            async fn backfill_failed(&self, did: &str, error: &str) -> Result<(), StoreError> {
                backfill_state(&self.writer, did, "failed", None, 0, Some(error)).await
            }

            async fn apply_snapshot(
                &self,
                did: &str,
                rev: &str,
                changes: &[Change],
            ) -> Result<Snapshot, StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut applied = Applied::default();
                match snapshot(&mut tx, did, rev, changes, &mut applied, true).await? {
                    Some(stored) => {
                        tx.rollback().await?;
                        Ok(Snapshot::Stale { stored })
                    }
                    None => {
                        tx.commit().await?;
                        Ok(Snapshot::Applied(applied))
                    }
                }
            }

            async fn set_label_sources(&self, sources: &[String]) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query("UPDATE label_sources SET active = FALSE")
                    .execute(&mut *tx)
                    .await?;
                for source in sources {
                    sqlx::query(
                        "INSERT INTO label_sources (src, seq, active) VALUES ($1, NULL, TRUE)
                         ON CONFLICT (src) DO UPDATE SET active = TRUE",
                    )
                    .bind(source)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn apply_labels(
                &self,
                source: &str,
                labels: &[Label],
                seq: i64,
            ) -> Result<u64, StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut stored = 0;
                // One statement per label: a frame usually carries one, and a later label
                // for the same key must replace an earlier one in the same frame.
                for label in labels {
                    let exp_us = match &label.exp {
                        Some(exp) => Some(crate::labels::label::datetime_micros(exp).map_err(
                            |detail| StoreError::Corrupt {
                                what: "label exp",
                                detail,
                            },
                        )?),
                        None => None,
                    };
                    stored += sqlx::query(
                        "INSERT INTO labels (src, uri, val, cid, neg, cts, exp, exp_us, sig, seq)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (src, uri, val) DO UPDATE SET cid = excluded.cid,
                             neg = excluded.neg, cts = excluded.cts, exp = excluded.exp,
                             exp_us = excluded.exp_us, sig = excluded.sig, seq = excluded.seq",
                    )
                    .bind(&label.src)
                    .bind(&label.uri)
                    .bind(&label.val)
                    .bind(&label.cid)
                    .bind(label.is_negation())
                    .bind(&label.cts)
                    .bind(&label.exp)
                    .bind(exp_us)
                    .bind(&label.sig)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if !label.is_negation() {
                        notify_moderation(&mut tx, label).await?;
                    }
                }
                if stored > 0 {
                    // Before the commit: a query that sees the rows also applies them.
                    self.labelled.set();
                }
                sqlx::query(
                    "INSERT INTO label_sources (src, seq, active) VALUES ($1, $2, FALSE)
                     ON CONFLICT (src) DO UPDATE SET seq = excluded.seq",
                )
                .bind(source)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(stored)
            }

            async fn sync_states(
                &self,
            ) -> Result<Vec<(String, crate::index::AccountState)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT did, rev, data_cid, commit_cid, status FROM sync_state",
                )
                .fetch_all(&self.readers)
                .await?;
                rows.iter()
                    .map(|row| {
                        let did: String = row.try_get("did")?;
                        let bad = |column: &str| StoreError::Corrupt {
                            what: "sync_state",
                            detail: format!("{did}: {column}"),
                        };
                        let cid = |column: &str| -> Result<_, StoreError> {
                            let bytes: Vec<u8> = row.try_get(column)?;
                            atelier_relay::sync::mst::DagCid::from_bytes(&bytes)
                                .ok_or_else(|| bad(column))
                        };
                        let status: String = row.try_get("status")?;
                        let state = crate::index::AccountState {
                            rev: u64::try_from(row.try_get::<i64, _>("rev")?)
                                .map_err(|_| bad("rev"))?,
                            data: cid("data_cid")?,
                            commit: cid("commit_cid")?,
                            status: crate::store::parse_sync_status(&status)
                                .ok_or_else(|| bad("status"))?,
                        };
                        Ok((did, state))
                    })
                    .collect()
            }

            async fn label_cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
                let row = sqlx::query("SELECT seq FROM label_sources WHERE src = $1")
                    .bind(source)
                    .fetch_optional(&self.readers)
                    .await?;
                Ok(row.map(|r| r.try_get::<Option<i64>, _>("seq")).transpose()?.flatten())
            }

            async fn labels_on(
                &self,
                subjects: &[String],
                now_us: i64,
            ) -> Result<Vec<LabelView>, StoreError> {
                labels_on(&self.readers, subjects, now_us, None).await
            }

            async fn record_cids(&self) -> Result<Vec<(String, String)>, StoreError> {
                Ok(sqlx::query("SELECT uri, cid FROM records ORDER BY uri")
                    .fetch_all(&self.readers)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("uri")?, r.try_get("cid")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?)
            }

            async fn record_state(
                &self,
                uri: &str,
            ) -> Result<Option<(String, bool)>, StoreError> {
                let row = sqlx::query("SELECT cid, pending FROM records WHERE uri = $1")
                    .bind(uri)
                    .fetch_optional(&self.readers)
                    .await?;
                Ok(match row {
                    Some(r) => Some((r.try_get("cid")?, r.try_get("pending")?)),
                    None => None,
                })
            }

            async fn handles_due(
                &self,
                now_us: i64,
                limit: usize,
            ) -> Result<Vec<ActorHandle>, StoreError> {
                let sql = format!(
                    "SELECT {HANDLE_COLUMNS} FROM actors WHERE handle_due_us <= $1
                     ORDER BY handle_due_us, did LIMIT $2"
                );
                sqlx::query(&sql)
                    .bind(now_us)
                    .bind(limit as i64)
                    .fetch_all(&self.readers)
                    .await?
                    .iter()
                    .map(actor_handle)
                    .collect()
            }

            async fn actor_handle(&self, did: &str) -> Result<Option<ActorHandle>, StoreError> {
                let sql = format!("SELECT {HANDLE_COLUMNS} FROM actors WHERE did = $1");
                sqlx::query(&sql)
                    .bind(did)
                    .fetch_optional(&self.readers)
                    .await?
                    .as_ref()
                    .map(actor_handle)
                    .transpose()
            }

            async fn record_handle_check(
                &self,
                read: &ActorHandle,
                check: &HandleCheck,
            ) -> Result<bool, StoreError> {
                // The verdict sets the handle and flag (an unreachable document leaves
                // both); the guard on handle and due time keeps a newer #identity.
                let (handle, verdict) = match &check.verdict {
                    HandleVerdict::Verified(handle) => (Some(handle.as_str()), "verified"),
                    HandleVerdict::Invalid => (None, "invalid"),
                    HandleVerdict::Unreachable => (None, "unreachable"),
                };
                let query = sqlx::query(
                    "UPDATE actors SET handle = COALESCE($6, handle),
                         handle_verified = CASE $7 WHEN 'verified' THEN TRUE
                             WHEN 'invalid' THEN FALSE ELSE handle_verified END,
                         handle_checked_us = $3, handle_due_us = $4, handle_failures = $5
                     WHERE did = $1 AND handle_due_us = $2 AND handle IS NOT DISTINCT FROM $8",
                )
                .bind(&read.did)
                .bind(read.due_us)
                .bind(check.checked_us)
                .bind(check.due_us)
                .bind(check.failures)
                .bind(handle)
                .bind(verdict)
                .bind(read.handle.as_deref());
                let mut tx = self.writer.begin().await?;
                let written = query.execute(&mut *tx).await?.rows_affected() > 0;
                tx.commit().await?;
                Ok(written)
            }

            async fn pending_records(
                &self,
                before_us: i64,
                limit: i64,
            ) -> Result<Vec<(String, String)>, StoreError> {
                Ok(sqlx::query(
                    "SELECT uri, cid FROM records WHERE pending AND indexed_us < $1 \
                     ORDER BY indexed_us LIMIT $2",
                )
                .bind(before_us)
                .bind(limit)
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
