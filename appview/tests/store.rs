//! The index store's contract, table-driven over [`Change`] batches, run on both
//! backends: SQLite in a temporary file, and a real PostgreSQL server started for each test
//! ([`PgCluster`]: `initdb` + `postgres` on a loopback port; the tests fail, not skip, when
//! PostgreSQL is not installed). Idempotent upserts keyed by URI + CID, deletes, profiles,
//! hiding inactive accounts, cursors moving with their batch, feed paging and filters, and
//! the database surviving a reopen, and labels (hiding, views, negation, expiry, cid limits,
//! configured sources, the label cursor).

use atelier_appview::index::{Change, Profile, RecordRow};
use atelier_appview::labels::Label;
use atelier_appview::store::{
    ActorHandle, AnyStore, FeedQuery, HandleCheck, HandleVerdict, Labelers, Snapshot, Store,
    StoreLocation,
};
use atelier_sandbox::PgCluster;
use serde_json::json;

/// Where a test's store lives, kept alive for the test's length.
struct Fixture {
    location: StoreLocation,
    _dir: Option<tempfile::TempDir>,
    _server: Option<PgCluster>,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        Fixture {
            location: StoreLocation::Sqlite(dir.path().join("db/index.sqlite")),
            _dir: Some(dir),
            _server: None,
        }
    }

    fn postgres() -> Fixture {
        let server =
            PgCluster::start().expect("PostgreSQL starts (./install.sh --dev installs it)");
        let url = server.create_database("index").expect("createdb");
        Fixture {
            location: StoreLocation::Postgres(url),
            _dir: None,
            _server: Some(server),
        }
    }

    /// Opens the store (creating the SQLite file's directory; migrating either).
    async fn open(&self) -> AnyStore {
        AnyStore::open(&self.location).await.expect("store opens")
    }
}

/// Each case once per backend: `sqlite::case` and `postgres::case`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Fixture::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $case() {
                super::$case(super::Fixture::postgres()).await
            })*
        }
    };
}

on_both_backends!(
    upserts_are_idempotent_and_updates_replace,
    cursor_moves_with_its_batch_and_survives_reopen,
    inactive_accounts_are_hidden_and_come_back,
    profiles_handles_and_follows,
    feed_pages_filters_and_orders,
    remixes_mentions_and_follows_notify,
    snapshots_replace_an_actor_unless_the_stream_is_ahead,
    search_and_following,
    labels_hide_warn_negate_expire,
    verification_states_round_trip_with_their_batch,
    profile_counts_leave_out_hidden_records,
    handle_checks_are_scheduled_and_guarded,
    accepted_labelers_choose_sources_and_redaction,
    publishes_and_labels_notify_their_authors,
);

fn row(did: &str, collection: &str, rkey: &str, cid: &str, when: &str) -> RecordRow {
    RecordRow {
        uri: format!("at://{did}/{collection}/{rkey}"),
        did: did.to_owned(),
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid: cid.to_owned(),
        created_at: Some(when.to_owned()),
        code: Some(rkey.to_owned()),
        slug: None,
        record: json!({"$type": collection, "when": when, "code": rkey}),
        repairs: Vec::new(),
        remix_of: None,
        mentions: Vec::new(),
    }
}

const A: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const PAINTING: &str = "computer.aesthetic.painting";
const MOOD: &str = "computer.aesthetic.mood";

fn uris(page: &atelier_appview::store::Page) -> Vec<&str> {
    page.records.iter().map(|r| r.uri.as_str()).collect()
}

async fn upserts_are_idempotent_and_updates_replace(fixture: Fixture) {
    let store = fixture.open().await;
    let p = row(A, PAINTING, "p1", "bafy-1", "2026-01-01T00:00:00Z");
    // (batch, records written, records deleted)
    let cases: Vec<(Vec<Change>, u64, u64)> = vec![
        (vec![Change::Record(p.clone())], 1, 0),
        (vec![Change::Record(p.clone())], 0, 0),
        (
            vec![Change::Record(RecordRow {
                cid: "bafy-2".into(),
                record: json!({"changed": true}),
                ..p.clone()
            })],
            1,
            0,
        ),
        (vec![Change::DeleteRecord { uri: p.uri.clone() }], 0, 1),
        (vec![Change::DeleteRecord { uri: p.uri.clone() }], 0, 0),
    ];
    for (i, (batch, written, deleted)) in cases.into_iter().enumerate() {
        let applied = store.apply(&batch, None).await.expect("apply");
        assert_eq!(
            (applied.records_written, applied.records_deleted),
            (written, deleted),
            "step {i}"
        );
        if i == 2 {
            let view = store.record(&p.uri).await.expect("query").expect("present");
            assert_eq!(
                (view.cid.as_str(), &view.record),
                ("bafy-2", &json!({"changed": true}))
            );
        }
    }
    assert!(store.record(&p.uri).await.expect("query").is_none());

    // Created and updated within one batch (one multi-row statement): the later one wins.
    let q = row(A, MOOD, "m1", "bafy-a", "2026-01-01T00:00:00Z");
    let batch = [
        Change::Record(q.clone()),
        Change::Record(row(B, MOOD, "m2", "bafy-x", "2026-01-01T00:00:00Z")),
        Change::Record(RecordRow {
            cid: "bafy-b".into(),
            ..q.clone()
        }),
    ];
    store.apply(&batch, None).await.expect("apply");
    let view = store.record(&q.uri).await.expect("query").expect("present");
    assert_eq!(view.cid, "bafy-b");
    assert!(
        store.actor(B).await.expect("query").is_some(),
        "authors get actor rows"
    );
}

async fn cursor_moves_with_its_batch_and_survives_reopen(fixture: Fixture) {
    {
        let store = fixture.open().await;
        assert_eq!(store.cursor("ws://x").await.expect("cursor"), None);
        store
            .apply(
                &[Change::Record(row(
                    A,
                    MOOD,
                    "m1",
                    "c1",
                    "2026-01-01T00:00:00Z",
                ))],
                Some(("ws://x", 41)),
            )
            .await
            .expect("apply");
        store.apply(&[], Some(("ws://x", 42))).await.expect("apply");
        store.apply(&[], Some(("ws://y", 7))).await.expect("apply");
        store.close().await;
    }
    // Reopening runs the migrations again: they must be no-ops.
    let store = fixture.open().await;
    assert_eq!(store.cursor("ws://x").await.expect("cursor"), Some(42));
    assert_eq!(store.cursor("ws://y").await.expect("cursor"), Some(7));
    assert_eq!(store.record_cids().await.expect("cids").len(), 1);
}

async fn verification_states_round_trip_with_their_batch(fixture: Fixture) {
    use atelier_appview::index::AccountState;
    use atelier_appview::relay::sync::mst::DagCid;
    use atelier_appview::relay::sync::verify::SyncStatus;
    let state = |n: u8, rev: u64, status| AccountState {
        rev,
        data: DagCid::of_block(&[n]),
        commit: DagCid::of_block(&[n, n]),
        status,
    };
    {
        let store = fixture.open().await;
        assert!(store.sync_states().await.expect("states").is_empty());
        store
            .apply(
                &[Change::SyncStates(vec![
                    (A.to_owned(), state(1, 10, SyncStatus::Synchronized)),
                    (B.to_owned(), state(2, 20, SyncStatus::Desynchronized)),
                ])],
                Some(("ws://x", 1)),
            )
            .await
            .expect("apply");
        // A later batch replaces A's state.
        store
            .apply(
                &[Change::SyncStates(vec![(
                    A.to_owned(),
                    state(3, u64::MAX >> 2, SyncStatus::InProgress),
                )])],
                Some(("ws://x", 2)),
            )
            .await
            .expect("apply");
        store.close().await;
    }
    let store = fixture.open().await;
    let mut states = store.sync_states().await.expect("states");
    states.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        states,
        [
            (
                A.to_owned(),
                state(3, u64::MAX >> 2, SyncStatus::InProgress)
            ),
            (B.to_owned(), state(2, 20, SyncStatus::Desynchronized)),
        ]
    );
}

async fn inactive_accounts_are_hidden_and_come_back(fixture: Fixture) {
    let store = fixture.open().await;
    let a = row(A, PAINTING, "p1", "c1", "2026-01-01T00:00:00Z");
    let b = row(B, PAINTING, "p2", "c2", "2026-01-02T00:00:00Z");
    store
        .apply(
            &[Change::Record(a.clone()), Change::Record(b.clone())],
            None,
        )
        .await
        .expect("apply");
    let all = FeedQuery {
        limit: 10,
        ..FeedQuery::default()
    };
    assert_eq!(
        uris(&store.feed(&all).await.expect("feed")),
        [&b.uri, &a.uri]
    );
    let status = |active: bool, status: Option<&str>| Change::Account {
        did: A.into(),
        active,
        status: status.map(str::to_owned),
    };
    store
        .apply(&[status(false, Some("takendown"))], None)
        .await
        .expect("apply");
    assert_eq!(uris(&store.feed(&all).await.expect("feed")), [&b.uri]);
    assert!(store.record(&a.uri).await.expect("query").is_none());
    let actor = store.actor(A).await.expect("query").expect("known");
    assert_eq!(
        (actor.active, actor.status.as_deref()),
        (false, Some("takendown"))
    );
    store
        .apply(&[status(true, None)], None)
        .await
        .expect("apply");
    assert_eq!(
        uris(&store.feed(&all).await.expect("feed")),
        [&b.uri, &a.uri]
    );
}

async fn profiles_handles_and_follows(fixture: Fixture) {
    let store = fixture.open().await;
    let follow = |by: &str, rkey: &str| Change::Follow {
        uri: format!("at://{by}/computer.aesthetic.graph.follow/{rkey}"),
        did: by.into(),
        subject: A.into(),
        created_at: None,
    };
    store
        .apply(
            &[
                Change::Handle {
                    did: A.into(),
                    handle: Some("alice.test".into()),
                },
                Change::Profile(Profile {
                    did: A.into(),
                    display_name: Some("Alice".into()),
                    description: Some("paints".into()),
                    avatar_cid: Some("bafkrei-avatar".into()),
                    record: json!({"displayName": "Alice"}),
                }),
                follow(B, "f1"),
                follow(B, "f1"),
                follow("did:plc:cccccccccccccccccccccccc", "f2"),
            ],
            None,
        )
        .await
        .expect("apply");
    let a = store.actor(A).await.expect("query").expect("alice");
    assert_eq!(a.handle.as_deref(), Some("alice.test"));
    assert_eq!(a.display_name.as_deref(), Some("Alice"));
    assert_eq!(a.avatar_cid.as_deref(), Some("bafkrei-avatar"));
    assert_eq!(a.followers, 2, "the same follow twice counts once");
    store
        .apply(
            &[
                Change::DeleteProfile { did: A.into() },
                Change::DeleteRecord {
                    uri: format!("at://{B}/computer.aesthetic.graph.follow/f1"),
                },
            ],
            None,
        )
        .await
        .expect("apply");
    let a = store.actor(A).await.expect("query").expect("alice");
    assert_eq!((a.display_name, a.followers), (None, 1));
    assert_eq!(a.handle.as_deref(), Some("alice.test"), "the handle stays");
    assert!(
        store.actor(B).await.expect("query").is_none(),
        "never seen as an actor"
    );
}

async fn feed_pages_filters_and_orders(fixture: Fixture) {
    let store = fixture.open().await;
    let mut batch = Vec::new();
    for i in 0..25u32 {
        let did = if i % 2 == 0 { A } else { B };
        let collection = if i % 3 == 0 { MOOD } else { PAINTING };
        // Pairs share a timestamp, so ties are broken by URI.
        let when = format!("2026-01-01T00:00:{:02}Z", i / 2);
        batch.push(Change::Record(row(
            did,
            collection,
            &format!("r{i:02}"),
            "c",
            &when,
        )));
    }
    store.apply(&batch, None).await.expect("apply");
    let cases: Vec<(&str, FeedQuery, usize)> = vec![
        ("all", FeedQuery::default(), 25),
        (
            "author A",
            FeedQuery {
                author: Some(A.into()),
                ..FeedQuery::default()
            },
            13,
        ),
        (
            "moods",
            FeedQuery {
                collections: vec![MOOD.into()],
                ..FeedQuery::default()
            },
            9,
        ),
        (
            "author B's paintings",
            FeedQuery {
                author: Some(B.into()),
                collections: vec![PAINTING.into()],
                ..FeedQuery::default()
            },
            8,
        ),
    ];
    for (name, query, expected) in cases {
        for limit in [1, 4, 7, 100, 1000] {
            let mut seen: Vec<(String, String)> = Vec::new();
            let mut cursor = None;
            loop {
                let page = store
                    .feed(&FeedQuery {
                        cursor: cursor.clone(),
                        limit,
                        ..query.clone()
                    })
                    .await
                    .expect("feed");
                assert!(page.records.len() <= limit.min(100), "{name}: page size");
                seen.extend(
                    page.records
                        .iter()
                        .map(|r| (r.created_at.clone().unwrap_or_default(), r.uri.clone())),
                );
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            assert_eq!(seen.len(), expected, "{name} at limit {limit}");
            // Newest first; at the same time, the later-indexed (here: higher rNN) first.
            assert!(
                seen.windows(2).all(|w| w[0] > w[1]),
                "{name} at limit {limit}: newest first, no repeats: {seen:?}"
            );
        }
    }
    // A malformed cursor is ignored (first page), not an error.
    let page = store
        .feed(&FeedQuery {
            cursor: Some("nonsense".into()),
            limit: 3,
            ..FeedQuery::default()
        })
        .await
        .expect("feed");
    assert_eq!(page.records.len(), 3);
}

async fn remixes_mentions_and_follows_notify(fixture: Fixture) {
    let store = fixture.open().await;
    const KIDLISP: &str = "computer.aesthetic.kidlisp";
    let original = row(A, PAINTING, "p1", "c1", "2026-01-01T00:00:00Z");
    let remix = RecordRow {
        remix_of: Some(original.uri.clone()),
        ..row(B, KIDLISP, "k1", "c2", "2026-01-02T00:00:00Z")
    };
    let self_remix = RecordRow {
        remix_of: Some(original.uri.clone()),
        ..row(A, PAINTING, "p2", "c3", "2026-01-03T00:00:00Z")
    };
    let mood = RecordRow {
        mentions: vec!["alice.test".into(), "nobody.test".into()],
        ..row(B, MOOD, "m1", "c4", "2026-01-04T00:00:00Z")
    };
    let follow = Change::Follow {
        uri: format!("at://{B}/computer.aesthetic.graph.follow/f1"),
        did: B.into(),
        subject: A.into(),
        created_at: Some("2026-01-05T00:00:00Z".into()),
    };
    let batch = vec![
        Change::Handle {
            did: A.into(),
            handle: Some("alice.test".into()),
        },
        Change::Record(original.clone()),
        Change::Record(remix.clone()),
        Change::Record(self_remix.clone()),
        Change::Record(mood.clone()),
        follow.clone(),
    ];
    // Applying twice (a replayed stream) notifies once.
    for _ in 0..2 {
        store.apply(&batch, None).await.expect("apply");
    }
    let page = store.notifications(A, None, 50).await.expect("list");
    let got: Vec<(&str, &str, &str)> = page
        .notifications
        .iter()
        .map(|n| (n.reason.as_str(), n.author.as_str(), n.uri.as_str()))
        .collect();
    let follow_uri = format!("at://{B}/computer.aesthetic.graph.follow/f1");
    assert_eq!(
        got,
        [
            ("mention", B, mood.uri.as_str()),
            ("follow", B, follow_uri.as_str()),
            ("remix", B, remix.uri.as_str()),
        ],
        "most recently indexed first (within a batch: remixes and follows, then mentions); \
         none for remixing one's own work or for an unknown handle"
    );
    let remix_n = &page.notifications[2];
    assert_eq!(remix_n.subject.as_deref(), Some(original.uri.as_str()));
    assert_eq!(
        remix_n.record.as_ref().map(|r| &r["code"]),
        Some(&json!("k1"))
    );
    assert!(page.notifications.iter().all(|n| !n.is_read));
    assert!(
        store
            .notifications(B, None, 50)
            .await
            .expect("list")
            .notifications
            .is_empty()
    );

    // Paging, and the stream's ascending read from a cursor.
    let first = store.notifications(A, None, 2).await.expect("list");
    let rest = store.notifications(A, first.cursor, 2).await.expect("list");
    assert_eq!(
        (first.notifications.len(), rest.notifications.len()),
        (2, 1)
    );
    assert_eq!(rest.cursor, None);
    let ids: Vec<i64> = page.notifications.iter().rev().map(|n| n.id).collect();
    let after: Vec<i64> = store
        .notifications_after(A, ids[0], 50)
        .await
        .expect("after")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(after, ids[1..]);

    // Unread until seen.
    assert_eq!(store.unread_count(A).await.expect("count"), 3);
    store.update_seen(A, i64::MAX / 2).await.expect("seen");
    assert_eq!(store.unread_count(A).await.expect("count"), 0);
    let page = store.notifications(A, None, 50).await.expect("list");
    assert!(page.notifications.iter().all(|n| n.is_read));
    assert_eq!(page.seen_us, Some(i64::MAX / 2));

    // The remix graph: what remixes the original (the self-remix too), newest first.
    let remixes = store
        .feed(&FeedQuery {
            remix_of: Some(original.uri.clone()),
            limit: 10,
            ..FeedQuery::default()
        })
        .await
        .expect("remixes");
    assert_eq!(uris(&remixes), [&self_remix.uri, &remix.uri]);

    // Deleting the remix removes its notification; an inactive author's are hidden.
    store
        .apply(
            &[Change::DeleteRecord {
                uri: remix.uri.clone(),
            }],
            None,
        )
        .await
        .expect("apply");
    store
        .apply(
            &[Change::Account {
                did: B.into(),
                active: false,
                status: Some("suspended".into()),
            }],
            None,
        )
        .await
        .expect("apply");
    assert!(
        store
            .notifications(A, None, 50)
            .await
            .expect("list")
            .notifications
            .is_empty()
    );
    store
        .apply(
            &[Change::Account {
                did: B.into(),
                active: true,
                status: None,
            }],
            None,
        )
        .await
        .expect("apply");
    let reasons: Vec<String> = store
        .notifications(A, None, 50)
        .await
        .expect("list")
        .notifications
        .into_iter()
        .map(|n| n.reason)
        .collect();
    assert_eq!(reasons, ["mention", "follow"]);
}

async fn snapshots_replace_an_actor_unless_the_stream_is_ahead(fixture: Fixture) {
    let store = fixture.open().await;
    let old = row(A, PAINTING, "p1", "c1", "2026-01-01T00:00:00Z");
    let kept = row(A, MOOD, "m1", "c2", "2026-01-02T00:00:00Z");
    let other = row(B, MOOD, "m2", "c3", "2026-01-03T00:00:00Z");
    // The live stream: A at rev 3kaaaaaaaaaa2, with a profile and two records.
    store
        .apply(
            &[
                Change::Rev {
                    did: A.into(),
                    rev: "3kaaaaaaaaaa2".into(),
                },
                Change::Record(old.clone()),
                Change::Record(kept.clone()),
                Change::Record(other.clone()),
                Change::Profile(Profile {
                    did: A.into(),
                    display_name: Some("A".into()),
                    description: None,
                    avatar_cid: None,
                    record: json!({}),
                }),
            ],
            None,
        )
        .await
        .expect("apply");
    store
        .backfill_enqueue(&[A.to_owned(), B.to_owned()])
        .await
        .expect("enqueue");
    let remix = RecordRow {
        remix_of: Some(format!("at://{B}/{MOOD}/m2")),
        ..row(A, MOOD, "m3", "c4", "2026-01-04T00:00:00Z")
    };
    let snapshot = [Change::Record(kept.clone()), Change::Record(remix.clone())];
    // An export older than the stream's rev is refused and changes nothing.
    assert_eq!(
        store
            .apply_snapshot(A, "3kaaaaaaaaaa1", &snapshot)
            .await
            .expect("snapshot"),
        Snapshot::Stale {
            stored: "3kaaaaaaaaaa2".into()
        }
    );
    assert!(store.record(&old.uri).await.expect("query").is_some());
    assert_eq!(store.backfill_counts().await.expect("counts").done, 0);
    // A newer one replaces A's records (what it lacks goes), clears the profile it lacks,
    // leaves B alone, notifies no one, and marks A done.
    let Snapshot::Applied(applied) = store
        .apply_snapshot(A, "3kaaaaaaaaaa3", &snapshot)
        .await
        .expect("snapshot")
    else {
        panic!("a newer export applies");
    };
    assert_eq!((applied.records_written, applied.records_deleted), (1, 1));
    let mut cids = store.record_cids().await.expect("cids");
    cids.sort();
    let mut want = vec![
        (kept.uri.clone(), "c2".to_owned()),
        (remix.uri.clone(), "c4".to_owned()),
        (other.uri.clone(), "c3".to_owned()),
    ];
    want.sort();
    assert_eq!(cids, want);
    let a = store.actor(A).await.expect("query").expect("known");
    assert_eq!(a.display_name, None);
    assert!(
        store
            .notifications(B, None, 10)
            .await
            .expect("list")
            .notifications
            .is_empty()
    );
    let counts = store.backfill_counts().await.expect("counts");
    assert_eq!((counts.done, counts.pending), (1, 1));
    assert_eq!(store.backfill_pending(10).await.expect("pending"), [B]);
    // The live stream moving on: revs only move forward.
    store
        .apply(
            &[Change::Rev {
                did: A.into(),
                rev: "3kaaaaaaaaaa0".into(),
            }],
            None,
        )
        .await
        .expect("apply");
    assert!(matches!(
        store.apply_snapshot(A, "3kaaaaaaaaaa3", &snapshot).await,
        Ok(Snapshot::Applied(_))
    ));
    store.backfill_failed(B, "no PDS").await.expect("failed");
    let counts = store.backfill_counts().await.expect("counts");
    assert_eq!((counts.done, counts.failed), (1, 1));

    // A live resync is the same replacement, applied in its batch's order.
    store
        .apply(
            &[Change::Snapshot {
                did: A.into(),
                rev: "3kaaaaaaaaaa4".into(),
                changes: vec![Change::Record(remix.clone())],
            }],
            Some(("ws://x", 9)),
        )
        .await
        .expect("apply");
    assert!(store.record(&kept.uri).await.expect("query").is_none());
    assert!(store.record(&remix.uri).await.expect("query").is_some());
    assert_eq!(store.cursor("ws://x").await.expect("cursor"), Some(9));
}

async fn search_and_following(fixture: Fixture) {
    let store = fixture.open().await;
    let with_slug = |mut r: RecordRow, slug: &str| {
        r.slug = Some(slug.to_owned());
        r
    };
    let a1 = with_slug(
        row(A, PAINTING, "abc", "c1", "2026-01-01T00:00:00Z"),
        "2026.01.01.abc",
    );
    let a2 = row(
        A,
        "computer.aesthetic.kidlisp",
        "xyz",
        "c2",
        "2026-01-02T00:00:00Z",
    );
    let b1 = with_slug(
        row(B, PAINTING, "abd", "c3", "2026-01-03T00:00:00Z"),
        "2026.02.01.abd",
    );
    let c = "did:plc:cccccccccccccccccccccccc";
    let c1 = row(c, MOOD, "m1", "c4", "2026-01-04T00:00:00Z");
    let follow = |by: &str, subject: &str, rkey: &str| Change::Follow {
        uri: format!("at://{by}/computer.aesthetic.graph.follow/{rkey}"),
        did: by.into(),
        subject: subject.into(),
        created_at: None,
    };
    store
        .apply(
            &[
                Change::Handle {
                    did: A.into(),
                    handle: Some("alice.test".into()),
                },
                Change::Handle {
                    did: B.into(),
                    handle: Some("albert.test".into()),
                },
                Change::Record(a1.clone()),
                Change::Record(a2.clone()),
                Change::Record(b1.clone()),
                Change::Record(c1.clone()),
                follow(c, A, "f1"),
                follow(c, B, "f2"),
                follow(A, c, "f3"),
            ],
            None,
        )
        .await
        .expect("apply");
    let search = |q: &str| FeedQuery {
        search: Some(q.into()),
        limit: 50,
        ..FeedQuery::default()
    };
    // (query, expected URIs, newest first)
    let cases: Vec<(FeedQuery, Vec<&str>)> = vec![
        (search("abc"), vec![&a1.uri]),
        (search("$xyz"), vec![&a2.uri]),
        (search("ab"), vec![]),
        (search("2026.0"), vec![&b1.uri, &a1.uri]),
        (search("2026.01"), vec![&a1.uri]),
        (search("@alice"), vec![&a2.uri, &a1.uri]),
        (search("al"), vec![&b1.uri, &a2.uri, &a1.uri]),
        (search("ALICE.T"), vec![&a2.uri, &a1.uri]),
        (search("100%_"), vec![]),
        (
            FeedQuery {
                following_of: Some(c.into()),
                limit: 50,
                ..FeedQuery::default()
            },
            vec![&b1.uri, &a2.uri, &a1.uri],
        ),
        (
            FeedQuery {
                following_of: Some(A.into()),
                limit: 50,
                ..FeedQuery::default()
            },
            vec![&c1.uri],
        ),
        (
            FeedQuery {
                following_of: Some(B.into()),
                limit: 50,
                ..FeedQuery::default()
            },
            vec![],
        ),
    ];
    for (query, want) in cases {
        let page = store.feed(&query).await.expect("feed");
        assert_eq!(uris(&page), want, "{query:?}");
    }
}

const L1: &str = "did:plc:labeler1111111111111111";
const L2: &str = "did:plc:labeler2222222222222222";

/// A label (unsigned: the store keeps what label sync verified).
fn label(src: &str, uri: &str, val: &str) -> Label {
    Label::new(src, uri, val, "2026-02-01T00:00:00.000Z")
}

/// The feed's (uri, label values) in order.
async fn labelled_feed(store: &AnyStore) -> Vec<(String, Vec<String>)> {
    let page = store
        .feed(&FeedQuery {
            limit: 50,
            ..FeedQuery::default()
        })
        .await
        .expect("feed");
    page.records
        .iter()
        .map(|r| {
            let vals = r.labels.iter().flatten().map(|l| l.val.clone()).collect();
            (r.uri.clone(), vals)
        })
        .collect()
}

async fn labels_hide_warn_negate_expire(fixture: Fixture) {
    let store = fixture.open().await;
    let p1 = row(A, PAINTING, "p1", "bafy-1", "2026-01-01T00:00:00Z");
    let m1 = row(A, MOOD, "m1", "bafy-2", "2026-01-02T00:00:00Z");
    let p2 = RecordRow {
        remix_of: Some(p1.uri.clone()),
        ..row(B, PAINTING, "p2", "bafy-3", "2026-01-03T00:00:00Z")
    };
    let batch = vec![
        Change::Record(p1.clone()),
        Change::Record(m1.clone()),
        Change::Record(p2.clone()),
    ];
    store.apply(&batch, None).await.expect("apply");
    store
        .set_label_sources(&[L1.to_owned()])
        .await
        .expect("sources");
    assert_eq!(store.label_cursor(L1).await.expect("cursor"), None);
    let all = |vals: [Vec<&str>; 3]| -> Vec<(String, Vec<String>)> {
        [&p2.uri, &m1.uri, &p1.uri]
            .into_iter()
            .zip(vals)
            .map(|(u, v)| (u.clone(), v.into_iter().map(str::to_owned).collect()))
            .collect()
    };
    let later = "2999-01-01T00:00:00.000Z";
    let earlier = "2000-01-01T00:00:00.000Z";

    // (labels applied at this step's seq, the feed after it as [p2, m1, p1] label values
    // with None = hidden, whether A's remix notification shows)
    type Step = (Vec<Label>, [Option<Vec<&'static str>>; 3], bool);
    let steps: Vec<Step> = vec![
        // Labels on a record and on its author ride on the views.
        (
            vec![label(L1, &p1.uri, "!warn"), label(L1, A, "nudity")],
            [
                Some(vec![]),
                Some(vec!["nudity"]),
                Some(vec!["!warn", "nudity"]),
            ],
            true,
        ),
        // !hide on the remix: gone from the feed, getRecord and the notification.
        (
            vec![label(L1, &p2.uri, "!hide")],
            [None, Some(vec!["nudity"]), Some(vec!["!warn", "nudity"])],
            false,
        ),
        // Its negation brings it back; negating !warn removes it from the view.
        (
            vec![
                label(L1, &p2.uri, "!hide").negated(),
                label(L1, &p1.uri, "!warn").negated(),
            ],
            [Some(vec![]), Some(vec!["nudity"]), Some(vec!["nudity"])],
            true,
        ),
        // A label limited to another version of the record does not apply.
        (
            vec![label(L1, &p1.uri, "!hide").with_cid("bafy-other")],
            [Some(vec![]), Some(vec!["nudity"]), Some(vec!["nudity"])],
            true,
        ),
        (
            vec![label(L1, &p1.uri, "!hide").with_cid("bafy-1")],
            [Some(vec![]), Some(vec!["nudity"]), None],
            true,
        ),
        // An account takedown that has expired does not apply; one that has not hides
        // every record of the account.
        (
            vec![
                label(L1, &p1.uri, "!hide").negated(),
                label(L1, A, "!takedown").with_exp(earlier),
            ],
            [Some(vec![]), Some(vec!["nudity"]), Some(vec!["nudity"])],
            true,
        ),
        (
            vec![label(L1, A, "!takedown").with_exp(later)],
            [Some(vec![]), None, None],
            true,
        ),
        (
            vec![label(L1, A, "!takedown").negated()],
            [Some(vec![]), Some(vec!["nudity"]), Some(vec!["nudity"])],
            true,
        ),
    ];
    for (i, (labels, expect, notified)) in steps.into_iter().enumerate() {
        let seq = 10 + i as i64;
        let stored = store.apply_labels(L1, &labels, seq).await.expect("labels");
        assert_eq!(stored, labels.len() as u64, "step {i}");
        assert_eq!(store.label_cursor(L1).await.expect("cursor"), Some(seq));
        let want: Vec<(String, Vec<String>)> = all(expect.clone().map(|v| v.unwrap_or_default()))
            .into_iter()
            .zip(&expect)
            .filter(|(_, e)| e.is_some())
            .map(|(w, _)| w)
            .collect();
        assert_eq!(labelled_feed(&store).await, want, "step {i}");
        for (uri, e) in [&p2.uri, &m1.uri, &p1.uri].into_iter().zip(&expect) {
            let view = store.record(uri).await.expect("record");
            assert_eq!(view.is_some(), e.is_some(), "step {i}: getRecord {uri}");
        }
        let remixes = store
            .feed(&FeedQuery {
                remix_of: Some(p1.uri.clone()),
                limit: 10,
                ..FeedQuery::default()
            })
            .await
            .expect("remixes");
        assert_eq!(
            remixes.records.len(),
            usize::from(expect[0].is_some()),
            "step {i}"
        );
        let notes = store
            .notifications(A, None, 50)
            .await
            .expect("notifications");
        // The remix notice follows the remix's visibility (the labels also send A
        // moderation notices, counted in the unread count).
        let remix_notes = notes
            .notifications
            .iter()
            .filter(|n| n.reason == "remix")
            .count();
        assert_eq!(remix_notes, usize::from(notified), "step {i}");
        assert_eq!(
            store.unread_count(A).await.expect("unread"),
            i64::try_from(notes.notifications.len()).expect("count"),
            "step {i}"
        );
    }

    // Labels from a source that is not configured are stored but do not apply.
    store
        .apply_labels(L2, &[label(L2, &m1.uri, "!hide")], 3)
        .await
        .expect("labels");
    assert!(store.record(&m1.uri).await.expect("record").is_some());
    store
        .set_label_sources(&[L1.to_owned(), L2.to_owned()])
        .await
        .expect("sources");
    assert!(store.record(&m1.uri).await.expect("record").is_none());
    let on = store
        .labels_on(&[m1.uri.clone(), A.to_owned()], 0)
        .await
        .expect("labels_on");
    let got: Vec<(&str, &str)> = on
        .iter()
        .map(|l| (l.src.as_str(), l.val.as_str()))
        .collect();
    assert_eq!(got, vec![(L2, "!hide"), (L1, "nudity")]);
    store
        .set_label_sources(&[L1.to_owned()])
        .await
        .expect("sources");
    assert!(store.record(&m1.uri).await.expect("record").is_some());

    // Cursors survive a reopen.
    store.close().await;
    let store = fixture.open().await;
    assert_eq!(store.label_cursor(L1).await.expect("cursor"), Some(17));
    assert_eq!(store.label_cursor(L2).await.expect("cursor"), Some(3));
}

/// `(collection, count)` pairs and followers of `did`'s profile.
async fn profile_counts(store: &AnyStore, did: &str) -> (Vec<(String, i64)>, i64) {
    let p = store.actor(did).await.expect("query").expect("actor");
    let counts = p
        .counts
        .into_iter()
        .map(|c| (c.collection, c.count))
        .collect();
    (counts, p.followers)
}

async fn profile_counts_leave_out_hidden_records(fixture: Fixture) {
    let store = fixture.open().await;
    let p1 = row(A, PAINTING, "p1", "bafy-1", "2026-01-01T00:00:00Z");
    let p2 = row(A, PAINTING, "p2", "bafy-2", "2026-01-02T00:00:00Z");
    let m1 = row(A, MOOD, "m1", "bafy-3", "2026-01-03T00:00:00Z");
    let c = "did:plc:cccccccccccccccccccccccc";
    let follow = |by: &str| {
        let uri = format!("at://{by}/computer.aesthetic.graph.follow/f");
        [
            Change::Record(RecordRow {
                uri: uri.clone(),
                ..row(
                    by,
                    "computer.aesthetic.graph.follow",
                    "f",
                    "bafy-f",
                    "2026-01-04T00:00:00Z",
                )
            }),
            Change::Follow {
                uri,
                did: by.into(),
                subject: A.into(),
                created_at: None,
            },
        ]
    };
    let mut batch = vec![
        Change::Record(p1.clone()),
        Change::Record(p2.clone()),
        Change::Record(m1.clone()),
    ];
    batch.extend(follow(B));
    batch.extend(follow(c));
    store.apply(&batch, None).await.expect("apply");
    store
        .set_label_sources(&[L1.to_owned()])
        .await
        .expect("sources");
    let counts = |paintings: i64, moods: i64| {
        let mut out = Vec::new();
        if moods > 0 {
            out.push((MOOD.to_owned(), moods));
        }
        if paintings > 0 {
            out.push((PAINTING.to_owned(), paintings));
        }
        out
    };
    assert_eq!(profile_counts(&store, A).await, (counts(2, 1), 2));

    // (labels applied at this step, A's counts after it as (paintings, moods, followers))
    let steps: Vec<(Vec<Label>, (i64, i64, i64))> = vec![
        // A warning hides nothing.
        (vec![label(L1, &p1.uri, "!warn")], (2, 1, 2)),
        // A hidden record, and a taken-down follower, are not counted.
        (
            vec![label(L1, &p1.uri, "!hide"), label(L1, B, "!takedown")],
            (1, 1, 1),
        ),
        // A hidden follow record is not counted either.
        (
            vec![label(
                L1,
                &format!("at://{c}/computer.aesthetic.graph.follow/f"),
                "!hide",
            )],
            (1, 1, 0),
        ),
        // Negations bring them back.
        (
            vec![
                label(L1, &p1.uri, "!hide").negated(),
                label(L1, B, "!takedown").negated(),
            ],
            (2, 1, 1),
        ),
        // An account suspension hides all of the account's own records.
        (vec![label(L1, A, "!suspend")], (0, 0, 1)),
    ];
    for (seq, (labels, (paintings, moods, followers))) in steps.into_iter().enumerate() {
        store
            .apply_labels(L1, &labels, seq as i64 + 1)
            .await
            .expect("labels");
        assert_eq!(
            profile_counts(&store, A).await,
            (counts(paintings, moods), followers),
            "after step {seq}"
        );
    }
    // Inactive followers are not counted.
    store
        .apply(
            &[Change::Account {
                did: c.into(),
                active: false,
                status: Some("deactivated".into()),
            }],
            None,
        )
        .await
        .expect("apply");
    store
        .apply_labels(
            L1,
            &[label(
                L1,
                &format!("at://{c}/computer.aesthetic.graph.follow/f"),
                "!hide",
            )
            .negated()],
            10,
        )
        .await
        .expect("labels");
    assert_eq!(profile_counts(&store, A).await, (counts(0, 0), 1));
}

async fn handle_checks_are_scheduled_and_guarded(fixture: Fixture) {
    let store = fixture.open().await;
    let identity = |did: &str, handle: &str| Change::Handle {
        did: did.into(),
        handle: Some(handle.into()),
    };
    store
        .apply(
            &[
                identity(A, "alice.test"),
                Change::Record(row(B, PAINTING, "p1", "bafy-1", "2026-01-01T00:00:00Z")),
            ],
            None,
        )
        .await
        .expect("apply");
    let now = 1_000_000;
    let due = store.handles_due(now, 10).await.expect("due");
    let dids: Vec<&str> = due.iter().map(|a| a.did.as_str()).collect();
    assert_eq!(dids, [A, B], "new actors are due at once, in DID order");
    assert_eq!(
        due[0],
        ActorHandle {
            did: A.into(),
            handle: Some("alice.test".into()),
            verified: false,
            checked_us: None,
            due_us: 0,
            failures: 0,
        }
    );
    assert_eq!(
        store.handles_due(now, 1).await.expect("due").len(),
        1,
        "bounded"
    );

    // A verifies; B (no announced handle) gets its handle from its document, unverified.
    let check = |verdict, due_us, failures| HandleCheck {
        verdict,
        checked_us: now,
        due_us,
        failures,
    };
    assert!(
        store
            .record_handle_check(
                &due[0],
                &check(HandleVerdict::Verified("alice.test".into()), now + 500, 0)
            )
            .await
            .expect("write")
    );
    assert!(
        store
            .record_handle_check(&due[1], &check(HandleVerdict::Invalid, now + 100, 1))
            .await
            .expect("write")
    );
    let a = store.actor_handle(A).await.expect("query").expect("A");
    assert_eq!(
        (
            a.handle.as_deref(),
            a.verified,
            a.checked_us,
            a.due_us,
            a.failures
        ),
        (Some("alice.test"), true, Some(now), now + 500, 0)
    );
    let b = store.actor_handle(B).await.expect("query").expect("B");
    assert_eq!(
        (b.handle.as_deref(), b.verified, b.failures),
        (None, false, 1)
    );
    assert!(
        store.handles_due(now, 10).await.expect("due").is_empty(),
        "none due yet"
    );
    let later = store.handles_due(now + 100, 10).await.expect("due");
    assert_eq!(later, vec![b], "the retry comes due first");
    assert_eq!(
        store.handles_due(now + 500, 10).await.expect("due").len(),
        2
    );

    // An unreachable document keeps the flag; only the schedule moves.
    assert!(
        store
            .record_handle_check(&a, &check(HandleVerdict::Unreachable, now + 900, 1))
            .await
            .expect("write")
    );
    let a = store.actor_handle(A).await.expect("query").expect("A");
    assert_eq!((a.verified, a.due_us, a.failures), (true, now + 900, 1));

    // A handle change resets the flag and makes it due at once; a check of the old
    // handle that finishes afterwards is not written.
    store
        .apply(&[identity(A, "alice2.test")], None)
        .await
        .expect("apply");
    let renamed = store.actor_handle(A).await.expect("query").expect("A");
    assert_eq!(
        (
            renamed.handle.as_deref(),
            renamed.verified,
            renamed.due_us,
            renamed.failures
        ),
        (Some("alice2.test"), false, 0, 0)
    );
    assert!(
        !store
            .record_handle_check(
                &a,
                &check(HandleVerdict::Verified("alice.test".into()), now + 500, 0)
            )
            .await
            .expect("write"),
        "stale check refused"
    );
    assert_eq!(
        store.actor_handle(A).await.expect("query"),
        Some(renamed.clone())
    );
    assert!(
        store
            .record_handle_check(
                &renamed,
                &check(HandleVerdict::Verified("alice2.test".into()), now + 500, 0)
            )
            .await
            .expect("write")
    );
    let a = store.actor_handle(A).await.expect("query").expect("A");
    assert_eq!(
        (a.handle.as_deref(), a.verified),
        (Some("alice2.test"), true)
    );
    // Views carry the verified handle.
    let p = store.actor(A).await.expect("query").expect("A");
    assert_eq!(p.handle.as_deref(), Some("alice2.test"));
    assert_eq!(
        store.actor_handle("did:plc:nobody").await.expect("query"),
        None
    );
}

async fn accepted_labelers_choose_sources_and_redaction(fixture: Fixture) {
    let store = fixture.open().await;
    let p1 = row(A, PAINTING, "p1", "bafy-1", "2026-01-01T00:00:00Z");
    let p2 = row(B, PAINTING, "p2", "bafy-2", "2026-01-02T00:00:00Z");
    let p3 = row(A, MOOD, "p3", "bafy-3", "2026-01-03T00:00:00Z");
    let batch = [&p1, &p2, &p3].map(|r| Change::Record(r.clone()));
    store.apply(&batch, None).await.expect("apply");
    store
        .set_label_sources(&[L1.to_owned(), L2.to_owned()])
        .await
        .expect("sources");
    let l3 = "did:plc:labeler3333333333333333";
    store
        .apply_labels(
            L1,
            &[label(L1, &p1.uri, "!hide"), label(L1, &p2.uri, "nudity")],
            1,
        )
        .await
        .expect("labels");
    store
        .apply_labels(L2, &[label(L2, B, "!takedown")], 1)
        .await
        .expect("labels");
    store
        .apply_labels(l3, &[label(l3, &p3.uri, "!hide")], 1)
        .await
        .expect("labels from a source not configured");

    let labelers = |accept: &[&str], redact: &[&str]| {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Some(Labelers {
            accept: owned(accept),
            redact: owned(redact),
        })
    };
    let feed = |labelers: Option<Labelers>| {
        let store = &store;
        async move {
            let page = store
                .feed(&FeedQuery {
                    labelers,
                    limit: 50,
                    ..FeedQuery::default()
                })
                .await
                .expect("feed");
            page.records
                .iter()
                .map(|r| {
                    let mut vals: Vec<String> =
                        r.labels.iter().flatten().map(|l| l.val.clone()).collect();
                    vals.sort();
                    (r.rkey_of(), vals)
                })
                .collect::<Vec<_>>()
        }
    };
    type Feed = Vec<(String, Vec<String>)>;
    let want = |rows: &[(&str, &[&str])]| -> Feed {
        rows.iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    };
    // (accepted labelers, the feed as (rkey, label values))
    let cases: Vec<(Option<Labelers>, Feed)> = vec![
        // No header: every configured source applies and redacts; l3 never applies.
        (None, want(&[("p3", &[])])),
        // Only L1, redacting: its !hide removes p1; its other label rides along.
        (
            labelers(&[L1], &[L1]),
            want(&[("p3", &[]), ("p2", &["nudity"])]),
        ),
        // Both, neither redacting: nothing removed, every label on the views.
        (
            labelers(&[L1, L2], &[]),
            want(&[
                ("p3", &[]),
                ("p2", &["!takedown", "nudity"]),
                ("p1", &["!hide"]),
            ]),
        ),
        // L2 redacting only: B's records go, L1's labels stay off.
        (labelers(&[L2], &[L2]), want(&[("p3", &[]), ("p1", &[])])),
        // None accepted, or only a source that is not configured: no labels at all.
        (
            labelers(&[], &[]),
            want(&[("p3", &[]), ("p2", &[]), ("p1", &[])]),
        ),
        (
            labelers(&[l3], &[l3]),
            want(&[("p3", &[]), ("p2", &[]), ("p1", &[])]),
        ),
    ];
    for (accepted, expect) in cases {
        assert_eq!(feed(accepted.clone()).await, expect, "{accepted:?}");
    }

    // getRecord and profile counts follow the same choice.
    assert!(
        store
            .record_for(&p1.uri, None)
            .await
            .expect("record")
            .is_none()
    );
    let shown = store
        .record_for(&p1.uri, labelers(&[L1], &[]).as_ref())
        .await
        .expect("record")
        .expect("shown without redaction");
    let vals: Vec<&str> = shown
        .labels
        .iter()
        .flatten()
        .map(|l| l.val.as_str())
        .collect();
    assert_eq!(vals, ["!hide"]);
    let b_count = |labelers: Option<Labelers>| {
        let store = &store;
        async move {
            let p = store
                .actor_for(B, labelers.as_ref())
                .await
                .expect("actor")
                .expect("B");
            p.counts.iter().map(|c| c.count).sum::<i64>()
        }
    };
    assert_eq!(b_count(None).await, 0);
    assert_eq!(b_count(labelers(&[L2], &[L2])).await, 0);
    assert_eq!(b_count(labelers(&[L2], &[])).await, 1);
    assert_eq!(b_count(labelers(&[L1], &[L1])).await, 1);
}

/// The record key of a view.
trait RkeyOf {
    fn rkey_of(&self) -> String;
}

impl RkeyOf for atelier_appview::store::RecordView {
    fn rkey_of(&self) -> String {
        self.uri.rsplit('/').next().unwrap_or_default().to_owned()
    }
}

/// The reasons and URIs of `did`'s notifications, newest first.
async fn notices(store: &AnyStore, did: &str) -> Vec<(String, String)> {
    let page = store
        .notifications(did, None, 50)
        .await
        .expect("notifications");
    page.notifications
        .iter()
        .map(|n| (n.reason.clone(), n.uri.clone()))
        .collect()
}

/// A record the publishing API inserted tells its author when the network confirms it
/// ("visible", once); a record already indexed the normal way does not. A label on an
/// author's record or account tells them ("moderation", from the labeler, with the value),
/// even when the label hides the record; a negation does not.
async fn publishes_and_labels_notify_their_authors(fixture: Fixture) {
    let store = fixture.open().await;
    let published = row(A, MOOD, "m1", "bafy-1", "2026-01-01T00:00:00Z");
    let plain = row(A, MOOD, "m2", "bafy-2", "2026-01-02T00:00:00Z");
    store
        .apply(&[Change::Optimistic(published.clone())], None)
        .await
        .expect("optimistic insert");
    assert!(
        notices(&store, A).await.is_empty(),
        "not before the network has it"
    );
    assert_eq!(
        store.record_state(&published.uri).await.expect("state"),
        Some(("bafy-1".to_owned(), true))
    );
    // The firehose delivers both (twice: a replay notifies nothing more).
    for _ in 0..2 {
        store
            .apply(
                &[
                    Change::Record(published.clone()),
                    Change::Record(plain.clone()),
                ],
                Some(("ws://x", 1)),
            )
            .await
            .expect("ingest");
    }
    assert_eq!(
        store.record_state(&published.uri).await.expect("state"),
        Some(("bafy-1".to_owned(), false))
    );
    assert_eq!(
        notices(&store, A).await,
        vec![("visible".to_owned(), published.uri.clone())]
    );

    // A hiding label on the record, a warning on the account, a negation elsewhere.
    store
        .set_label_sources(&[L1.to_owned()])
        .await
        .expect("sources");
    let mut negated = label(L1, &plain.uri, "!warn");
    negated.neg = Some(true);
    store
        .apply_labels(
            L1,
            &[
                label(L1, &published.uri, "!hide"),
                label(L1, A, "spam"),
                negated,
            ],
            1,
        )
        .await
        .expect("labels");
    // The "visible" notice is about a record now hidden, so it is left out like any
    // notice about hidden content; the moderation notices are kept.
    let got = notices(&store, A).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.contains(&("moderation".to_owned(), published.uri.clone())),
        "{got:?}"
    );
    assert!(
        got.contains(&("moderation".to_owned(), format!("at://{A}"))),
        "{got:?}"
    );
    let page = store
        .notifications(A, None, 50)
        .await
        .expect("notifications");
    let on_record = page
        .notifications
        .iter()
        .find(|n| n.reason == "moderation" && n.uri == published.uri)
        .expect("the record's notice");
    assert_eq!(on_record.author, L1);
    assert_eq!(on_record.subject.as_deref(), Some("!hide"));
    store.close().await;
}
