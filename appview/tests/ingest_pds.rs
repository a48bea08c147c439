//! AppView ingest end to end: a real PLC + reference PDS on loopback, the AppView following
//! the PDS's `subscribeRepos` with full verification, into a SQLite index.
//!
//! What this proves:
//! - painting, KidLisp, mood, tape and follow records from two accounts are indexed with
//!   their typed columns; an `app.bsky.feed.post` is not;
//! - AC's quirks from the wild, written raw (a mood with `text`, a painting with `acUrl`, a
//!   tape without `video`, `mongoId` instead of `ref`), are indexed with their repairs
//!   recorded; a painting missing required fields is kept out and counted (`invalid`);
//! - records are counted by type and their repairs by kind (the `/metrics` counters);
//! - the profile (`app.bsky.actor.profile/self`) fills the actor, follows count, the
//!   handle comes from `#identity`;
//! - an update replaces the record's CID and content, a delete removes it;
//! - the feed is newest first and pages by cursor without gaps or repeats;
//! - stopping and restarting ingest resumes from the stored cursor: a record written while
//!   it was stopped arrives, and every indexed `(uri, cid)` matches the PDS;
//! - a `cursor` in the source URL is where ingest starts when the store has none.
//!
//! The whole loop runs twice: into SQLite, and into a real PostgreSQL server that the test
//! starts ([`PgCluster`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use atelier_appview::ingest::IngestConfig;
use atelier_appview::store::{AnyStore, FeedQuery, Store, StoreLocation};
use atelier_sandbox::{Account, PgCluster, Sandbox};
use serde_json::{Value, json};

mod support;

use support::{Ingest, until};

const WHEN: &str = "2026-12-04T12:00:00.000Z";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";

/// Ingest following `url`, a `subscribeRepos` URL of the sandbox's PDS.
fn follow(sandbox: &Sandbox, url: String, store: Arc<AnyStore>) -> Ingest {
    let mut config = IngestConfig::new(url);
    config.plc_url = sandbox.plc_url().to_owned();
    config.allow_loopback = true;
    config.batch_wait = Duration::from_millis(20);
    Ingest::spawn(config, store)
}

/// Ingest following the sandbox's PDS live.
fn follow_live(sandbox: &Sandbox, store: Arc<AnyStore>) -> Ingest {
    follow(sandbox, sandbox.subscribe_repos_url(None), store)
}

async fn indexed(store: &AnyStore, uri: &str) -> Option<Value> {
    store
        .record(uri)
        .await
        .expect("record query")
        .map(|r| r.record)
}

fn painting(code: &str) -> Value {
    json!({
        "$type": "computer.aesthetic.painting",
        "slug": format!("2026.12.04.12.00.00.{code}"),
        "code": code,
        "imageUrl": format!("https://aesthetic.computer/media/paintings/{code}"),
        "when": WHEN,
        "ref": REF,
    })
}

fn rkey(uri: &str) -> &str {
    uri.rsplit('/').next().expect("rkey")
}

async fn open_store(location: &StoreLocation) -> Arc<AnyStore> {
    Arc::new(AnyStore::open(location).await.expect("store opens"))
}

/// Every record `account` holds in `collections`, as `(uri, cid)`.
async fn pds_records(account: &Account, collections: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for c in collections {
        for r in account.list_records(c).await.expect("listRecords") {
            out.push((r.uri, r.cid));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_pds_to_index_with_quirks_updates_deletes_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    pds_to_index(StoreLocation::Sqlite(dir.path().join("index.sqlite"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_pds_to_index_with_quirks_updates_deletes_and_resume() {
    let server = PgCluster::start().expect("PostgreSQL starts (./install.sh --dev installs it)");
    pds_to_index(StoreLocation::Postgres(
        server.create_database("index").expect("createdb"),
    ))
    .await;
}

/// A `cursor` in the source URL is where ingest starts when the store has none: a record
/// the PDS sequenced before ingest connected is replayed. (The URL's cursor used to be
/// overridden by "no stored cursor", so ingest started live and, whenever it connected
/// after the PDS had broadcast the record, never saw it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_in_the_source_url_is_where_ingest_starts() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = sandbox.create_account("alice").await.expect("alice");
    // A live follower, connected (it sees a first record), then sees `before`: the PDS has
    // broadcast it, so a live subscription opened after this cannot see it.
    let live = open_store(&StoreLocation::Sqlite(dir.path().join("live.sqlite"))).await;
    let probe = follow_live(&sandbox, Arc::clone(&live));
    let mut n = 0;
    let connected = loop {
        n += 1;
        let warm = alice
            .create_record("computer.aesthetic.painting", &painting(&format!("w{n}")))
            .await
            .expect("painting");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && indexed(&live, &warm.uri).await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if indexed(&live, &warm.uri).await.is_some() {
            break warm;
        }
        assert!(n < 30, "the live follower never connected");
    };
    let before = alice
        .create_record("computer.aesthetic.painting", &painting("b4e"))
        .await
        .expect("painting");
    until("the live follower sees the record", || async {
        indexed(&live, &before.uri).await.is_some()
    })
    .await;
    probe.stop().await;

    let store = open_store(&StoreLocation::Sqlite(dir.path().join("index.sqlite"))).await;
    let ingest = follow(
        &sandbox,
        sandbox.subscribe_repos_url(Some(0)),
        Arc::clone(&store),
    );
    until("the records written before ingest started", || async {
        indexed(&store, &before.uri).await.is_some()
            && indexed(&store, &connected.uri).await.is_some()
    })
    .await;
    ingest.stop().await;
    sandbox.shutdown().await;
}

async fn pds_to_index(location: StoreLocation) {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let store = open_store(&location).await;
    let ingest = follow_live(&sandbox, Arc::clone(&store));

    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");

    // Clean records.
    let p1 = alice
        .create_record("computer.aesthetic.painting", &painting("a3b"))
        .await
        .expect("painting");
    let kid = alice
        .create_record(
            "computer.aesthetic.kidlisp",
            &json!({
                "$type": "computer.aesthetic.kidlisp",
                "source": "(wipe blue)\n(ink yellow)\n(line 0 0 width height)",
                "code": "k9x", "when": WHEN, "ref": REF,
            }),
        )
        .await
        .expect("kidlisp");
    // Quirks from the wild.
    let mood = alice
        .create_record(
            "computer.aesthetic.mood",
            &json!({"$type": "computer.aesthetic.mood", "text": "sunny", "when": WHEN, "ref": REF}),
        )
        .await
        .expect("mood with text");
    let mut quirky = painting("q1z");
    quirky["acUrl"] = json!("https://aesthetic.computer/#q1z");
    quirky["mongoId"] = quirky["ref"].take();
    quirky.as_object_mut().expect("object").remove("ref");
    let p2 = bob
        .create_record("computer.aesthetic.painting", &quirky)
        .await
        .expect("painting with acUrl and mongoId");
    let tape = bob
        .create_record(
            "computer.aesthetic.tape",
            &json!({"$type": "computer.aesthetic.tape", "slug": "wand-1729177200000",
                    "code": "t7q", "when": WHEN}),
        )
        .await
        .expect("tape without video");
    // Kept out: not AC, and an AC painting missing what even lenient validation needs.
    let post = alice
        .create_record(
            "app.bsky.feed.post",
            &json!({"$type": "app.bsky.feed.post", "text": "hello", "createdAt": WHEN}),
        )
        .await
        .expect("post");
    let broken = bob
        .create_record(
            "computer.aesthetic.painting",
            &json!({"$type": "computer.aesthetic.painting", "when": WHEN}),
        )
        .await
        .expect("broken painting");
    // Profile and follow.
    alice
        .put_record(
            "app.bsky.actor.profile",
            "self",
            &json!({"$type": "app.bsky.actor.profile", "displayName": "Alice A.",
                    "description": "paints"}),
        )
        .await
        .expect("profile");
    let follow = bob
        .create_record(
            "computer.aesthetic.graph.follow",
            &json!({"$type": "computer.aesthetic.graph.follow", "subject": alice.did,
                    "createdAt": WHEN}),
        )
        .await
        .expect("follow");

    let started = Instant::now();
    until("the follow to be indexed", || async {
        indexed(&store, &follow.uri).await.is_some()
    })
    .await;
    eprintln!(
        "indexed through the follow {:.0} ms after it was written",
        started.elapsed().as_secs_f64() * 1000.0
    );

    // Typed columns and the record JSON.
    let p1_view = store
        .record(&p1.uri)
        .await
        .expect("query")
        .expect("painting");
    assert_eq!(p1_view.cid, p1.cid);
    assert_eq!(p1_view.record["code"], "a3b");
    assert_eq!(p1_view.created_at.as_deref(), Some(WHEN));
    assert!(p1_view.repairs.is_empty(), "{:?}", p1_view.repairs);
    assert_eq!(
        p1_view.handle.as_deref(),
        Some(alice.handle.as_str()),
        "the handle from the account's #identity"
    );
    assert!(indexed(&store, &kid.uri).await.is_some());

    // Quirks: repaired and recorded.
    let mood_view = store.record(&mood.uri).await.expect("query").expect("mood");
    assert_eq!(mood_view.record["mood"], "sunny", "text renamed to mood");
    assert!(
        mood_view
            .repairs
            .iter()
            .any(|r| r.contains("`text`") && r.contains("`mood`")),
        "{:?}",
        mood_view.repairs
    );
    let p2_view = store
        .record(&p2.uri)
        .await
        .expect("query")
        .expect("quirky painting");
    assert_eq!(p2_view.record["ref"], REF, "mongoId read as ref");
    assert_eq!(p2_view.record["acUrl"], "https://aesthetic.computer/#q1z");
    assert!(
        p2_view.repairs.iter().any(|r| r.contains("acUrl")),
        "{:?}",
        p2_view.repairs
    );
    let tape_view = store.record(&tape.uri).await.expect("query").expect("tape");
    assert!(
        tape_view.repairs.iter().any(|r| r.contains("video")),
        "{:?}",
        tape_view.repairs
    );
    // Kept out.
    assert!(
        indexed(&store, &post.uri).await.is_none(),
        "posts are not AC records"
    );
    assert!(indexed(&store, &broken.uri).await.is_none());
    assert_eq!(
        ingest.stats.rejected().get("invalid"),
        Some(&1),
        "{:?}",
        ingest.stats.rejected()
    );
    // Counted by type and by repair kind (`/metrics`: records_indexed_total, repairs_total).
    let indexed_by_type = ingest.stats.indexed();
    for (collection, n) in [
        ("computer.aesthetic.painting", 2),
        ("computer.aesthetic.kidlisp", 1),
        ("computer.aesthetic.mood", 1),
        ("computer.aesthetic.tape", 1),
        ("computer.aesthetic.graph.follow", 1),
    ] {
        assert_eq!(
            indexed_by_type.get(collection),
            Some(&n),
            "{collection}: {indexed_by_type:?}"
        );
    }
    let repairs = ingest.stats.repairs();
    for kind in ["renamed_field", "known_quirk", "missing_required"] {
        assert!(
            repairs.get(kind).is_some_and(|n| *n >= 1),
            "{kind}: {repairs:?}"
        );
    }

    // Profile and follows.
    let alice_view = store
        .actor(&alice.did)
        .await
        .expect("query")
        .expect("alice");
    assert_eq!(alice_view.display_name.as_deref(), Some("Alice A."));
    assert_eq!(alice_view.followers, 1);
    assert!(alice_view.active);
    let counts: std::collections::BTreeMap<_, _> = alice_view
        .counts
        .into_iter()
        .map(|c| (c.collection, c.count))
        .collect();
    assert_eq!(counts.get("computer.aesthetic.painting"), Some(&1));
    assert_eq!(counts.get("computer.aesthetic.mood"), Some(&1));

    // Feed: everything AC, newest first by `when`; all share it here, so the most recently
    // indexed first (the order they were written), paged without repeats.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .feed(&FeedQuery {
                cursor: cursor.clone(),
                limit: 2,
                ..FeedQuery::default()
            })
            .await
            .expect("feed");
        seen.extend(page.records.iter().map(|r| r.uri.clone()));
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    let written_last_first = [
        &follow.uri,
        &tape.uri,
        &p2.uri,
        &mood.uri,
        &kid.uri,
        &p1.uri,
    ];
    assert_eq!(
        seen.iter().collect::<Vec<_>>(),
        written_last_first,
        "painting x2, kidlisp, mood, tape, follow, last written first"
    );
    let alice_only = store
        .feed(&FeedQuery {
            author: Some(alice.did.clone()),
            collections: vec!["computer.aesthetic.painting".into()],
            limit: 50,
            ..FeedQuery::default()
        })
        .await
        .expect("author feed");
    assert_eq!(alice_only.records.len(), 1);
    assert_eq!(alice_only.records[0].uri, p1.uri);

    // Update and delete propagate.
    let mut changed = painting("a3b");
    changed["slug"] = json!("repainted");
    let p1_new = alice
        .put_record("computer.aesthetic.painting", rkey(&p1.uri), &changed)
        .await
        .expect("update");
    alice
        .delete_record("computer.aesthetic.kidlisp", rkey(&kid.uri))
        .await
        .expect("delete");
    until("the update and the delete", || async {
        let updated = store
            .record(&p1.uri)
            .await
            .expect("query")
            .is_some_and(|r| r.cid == p1_new.cid);
        updated && indexed(&store, &kid.uri).await.is_none()
    })
    .await;
    assert_eq!(
        indexed(&store, &p1.uri).await.expect("painting")["slug"],
        "repainted"
    );

    // Stop, write while stopped, restart: resumes from the stored cursor.
    let committed = ingest.stats.committed_seq.load(Ordering::Relaxed);
    ingest.stop().await;
    let source = sandbox.subscribe_repos_url(None);
    assert_eq!(
        store.cursor(&source).await.expect("cursor"),
        Some(committed),
        "the cursor is the last committed seq"
    );
    let late = alice
        .create_record("computer.aesthetic.painting", &painting("l8r"))
        .await
        .expect("painting while stopped");
    let ingest = follow_live(&sandbox, Arc::clone(&store));
    until("the painting written while ingest was stopped", || async {
        indexed(&store, &late.uri).await.is_some()
    })
    .await;
    // Whatever came before the cursor was not applied again.
    assert_eq!(ingest.stats.records_written.load(Ordering::Relaxed), 1);

    // The index holds exactly the AC records the PDS holds (minus the one kept out).
    let collections = [
        "computer.aesthetic.painting",
        "computer.aesthetic.kidlisp",
        "computer.aesthetic.mood",
        "computer.aesthetic.tape",
        "computer.aesthetic.graph.follow",
    ];
    let mut expected = pds_records(&alice, &collections).await;
    expected.extend(pds_records(&bob, &collections).await);
    expected.retain(|(uri, _)| uri != &broken.uri);
    expected.sort();
    assert_eq!(store.record_cids().await.expect("cids"), expected);

    // The verifier's state is stored with the rows: each account at its latest commit
    // (the next start verifies its next commit against it).
    ingest.stop().await;
    let states: std::collections::HashMap<String, _> = store
        .sync_states()
        .await
        .expect("states")
        .into_iter()
        .collect();
    for account in [&alice, &bob] {
        let latest: Value = reqwest::get(format!(
            "{}/xrpc/com.atproto.sync.getLatestCommit?did={}",
            sandbox.pds_url(),
            account.did
        ))
        .await
        .expect("getLatestCommit")
        .json()
        .await
        .expect("JSON");
        let rev = latest["rev"].as_str().expect("rev");
        let state = states.get(&account.did).expect("a stored state");
        assert_eq!(
            atelier_appview::relay::sync::verify::format_tid(state.rev),
            rev,
            "{}",
            account.did
        );
    }
    store.close().await;
    sandbox.shutdown().await;
}
