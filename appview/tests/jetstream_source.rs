//! AppView ingest from a Jetstream-style JSON source: a real PLC + reference PDS on
//! loopback, Atelier's relay following the PDS, and the AppView following the relay's
//! `/subscribe` (trusted) into a SQLite index.
//!
//! What this proves:
//! - painting, mood, follow and profile records from two accounts are indexed from JSON
//!   events with the CIDs the PDS holds; a quirky mood is repaired; the follow counts and
//!   makes a `follow` notification;
//! - an update replaces the record's CID, a delete removes it;
//! - the cursor is the last `time_us`, stored with the rows: after a stop, a record written
//!   meanwhile arrives and the index holds exactly the PDS's records (nothing lost,
//!   nothing twice);
//! - an untrusted Jetstream source is refused at start with a reason that says why.

use std::sync::Arc;
use std::time::Duration;

use atelier_appview::ingest::{self, IngestConfig, IngestStats, SourceKind};
use atelier_appview::store::{AnyStore, FeedQuery, Store, StoreLocation};
use atelier_relay::filter::FilterRules;
use atelier_relay::service::{self, RelayConfig, UpstreamConfig, UpstreamKind};
use atelier_sandbox::{Account, Sandbox};
use serde_json::json;

mod support;

use support::{Ingest, STEP, until};

const WHEN: &str = "2026-12-06T12:00:00.000Z";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";
const AC: [&str; 3] = [
    "computer.aesthetic.painting",
    "computer.aesthetic.mood",
    "computer.aesthetic.graph.follow",
];

async fn cid_of(store: &AnyStore, uri: &str) -> Option<String> {
    store
        .record(uri)
        .await
        .expect("record query")
        .map(|r| r.cid)
}

/// Every `(uri, cid)` the index holds for `dids`, sorted.
async fn index_records(store: &AnyStore, dids: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for did in dids {
        let page = store
            .feed(&FeedQuery {
                author: Some((*did).to_owned()),
                limit: 100,
                ..FeedQuery::default()
            })
            .await
            .expect("feed");
        out.extend(page.records.into_iter().map(|r| (r.uri, r.cid)));
    }
    out.sort();
    out
}

/// Every `(uri, cid)` the PDS holds for `accounts` in AC collections, sorted.
async fn pds_records(accounts: &[&Account]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for account in accounts {
        for c in AC {
            for r in account.list_records(c).await.expect("listRecords") {
                out.push((r.uri, r.cid));
            }
        }
    }
    out.sort();
    out
}

fn rkey(uri: &str) -> &str {
    uri.rsplit('/').next().expect("rkey")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jetstream_json_to_index_with_updates_deletes_and_resume() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_config = RelayConfig {
        data_dir: dir.path().join("relay"),
        upstreams: vec![UpstreamConfig {
            url: sandbox.subscribe_repos_url(None),
            kind: UpstreamKind::Pds,
            trusted: false,
        }],
        allow_loopback: true,
        plc_url: sandbox.plc_url().to_owned(),
        admin_tokens_file: dir.path().join("admin_token"),
        filter: FilterRules::default(),
        ..RelayConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_addr = listener.local_addr().expect("addr");
    let (relay_stop, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(service::run(relay_config, listener, async move {
        let _ = relay_stopped.await;
    }));

    let store = Arc::new(
        AnyStore::open(&StoreLocation::Sqlite(dir.path().join("index.sqlite")))
            .await
            .expect("store opens"),
    );
    let source = format!("ws://{relay_addr}/subscribe");
    let mut config = IngestConfig::new(&source);
    config.kind = SourceKind::Jetstream;
    config.plc_url = sandbox.plc_url().to_owned();
    config.allow_loopback = true;
    config.batch_wait = Duration::from_millis(20);
    config.initial_cursor = Some(0);

    // Refused untrusted, with the reason.
    let untrusted = ingest::run(
        &config,
        Arc::clone(&store),
        Arc::new(IngestStats::new()),
        async {},
    )
    .await
    .expect_err("an untrusted Jetstream source is refused");
    assert!(
        untrusted.to_string().contains("cannot be verified"),
        "{untrusted}"
    );
    config.trusted = true;
    let ingest = Ingest::spawn(config.clone(), Arc::clone(&store));

    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    let painting = alice
        .create_record(
            "computer.aesthetic.painting",
            &json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.06.12.00.00.j5t",
                "code": "j5t",
                "imageUrl": "https://aesthetic.computer/media/paintings/j5t",
                "when": WHEN,
                "ref": REF,
            }),
        )
        .await
        .expect("painting");
    alice
        .put_record(
            "app.bsky.actor.profile",
            "self",
            &json!({"$type": "app.bsky.actor.profile", "displayName": "Alice J."}),
        )
        .await
        .expect("profile");
    // A quirk from the wild: `text` for `mood`.
    let mood = bob
        .create_record(
            "computer.aesthetic.mood",
            &json!({"$type": "computer.aesthetic.mood",
                    "text": "hello", "when": WHEN, "ref": REF}),
        )
        .await
        .expect("mood");
    let follow = bob
        .create_record(
            "computer.aesthetic.graph.follow",
            &json!({"$type": "computer.aesthetic.graph.follow", "subject": alice.did,
                    "createdAt": WHEN}),
        )
        .await
        .expect("follow");

    until("the follow to be indexed", || async {
        cid_of(&store, &follow.uri).await.is_some()
    })
    .await;
    assert_eq!(
        cid_of(&store, &painting.uri).await.as_deref(),
        Some(painting.cid.as_str())
    );
    let mood_view = store.record(&mood.uri).await.expect("query").expect("mood");
    assert_eq!(mood_view.cid, mood.cid);
    assert_eq!(mood_view.record["mood"], "hello", "text renamed to mood");
    assert!(!mood_view.repairs.is_empty(), "the repair is recorded");
    until("alice's profile", || async {
        store
            .actor(&alice.did)
            .await
            .expect("actor")
            .and_then(|a| a.display_name)
            .as_deref()
            == Some("Alice J.")
    })
    .await;
    let alice_view = store
        .actor(&alice.did)
        .await
        .expect("actor")
        .expect("alice");
    assert_eq!(alice_view.followers, 1);
    let reasons: Vec<String> = store
        .notifications(&alice.did, None, 50)
        .await
        .expect("notifications")
        .notifications
        .into_iter()
        .map(|n| n.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "follow"), "{reasons:?}");

    // Update and delete.
    let updated = alice
        .put_record(
            "computer.aesthetic.painting",
            rkey(&painting.uri),
            &json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.06.12.00.00.j5t",
                "code": "j5t",
                "imageUrl": "https://aesthetic.computer/media/paintings/j5t-v2",
                "when": WHEN,
                "ref": REF,
            }),
        )
        .await
        .expect("update");
    assert_ne!(updated.cid, painting.cid);
    bob.delete_record("computer.aesthetic.mood", rkey(&mood.uri))
        .await
        .expect("delete");
    until("the update and the delete", || async {
        cid_of(&store, &painting.uri).await.as_deref() == Some(updated.cid.as_str())
            && cid_of(&store, &mood.uri).await.is_none()
    })
    .await;

    // Stop, write, restart: the stored cursor is a time_us, and resuming after it loses
    // nothing and repeats nothing.
    let stats = ingest.stop().await;
    assert_eq!(
        stats.rejected().get("bad_frame"),
        None,
        "{:?}",
        stats.rejected()
    );
    let cursor = store
        .cursor(&source)
        .await
        .expect("cursor")
        .expect("a stored cursor");
    assert!(
        cursor > 1_700_000_000_000_000,
        "the cursor is a time_us: {cursor}"
    );
    let late = bob
        .create_record(
            "computer.aesthetic.painting",
            &json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.06.12.00.01.l8e",
                "code": "l8e",
                "imageUrl": "https://aesthetic.computer/media/paintings/l8e",
                "when": WHEN,
                "ref": REF,
            }),
        )
        .await
        .expect("late painting");
    let ingest = Ingest::spawn(config, Arc::clone(&store));
    until("the painting written while stopped", || async {
        cid_of(&store, &late.uri).await.is_some()
    })
    .await;
    let restarted = ingest.stop().await;
    let events = |s: &IngestStats| s.events.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        events(&stats) >= 6 && events(&restarted) <= 2,
        "resuming replayed old events: {} before the stop, {} after",
        events(&stats),
        events(&restarted)
    );
    assert_eq!(
        index_records(&store, &[&alice.did, &bob.did]).await,
        pds_records(&[&alice, &bob]).await,
        "the index holds exactly the PDS's AC records"
    );

    let _ = relay_stop.send(());
    tokio::time::timeout(STEP, relay)
        .await
        .expect("relay stops in time")
        .expect("relay task")
        .expect("relay stops cleanly");
    sandbox.shutdown().await;
}
