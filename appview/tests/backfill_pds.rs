//! Backfill end to end: 200 accounts on a real reference PDS (with a real PLC), backfilled
//! from the PDS's `listRepos` + `getRepo` exports, every repository verified.
//!
//! What this proves:
//! - an uninterrupted backfill indexes exactly the AC records the PDS holds (every
//!   `(uri, cid)` compared with `listRecords`), not the other collections;
//! - a backfill stopped part-way (after 80 repositories) and run again resumes with what is
//!   not done and ends with the same index as the uninterrupted one;
//! - progress counts up to the total.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_appview::backfill::{self, BackfillConfig, BackfillSource, Progress};
use atelier_appview::store::{AnyStore, Store, StoreLocation};
use atelier_sandbox::{Account, Sandbox};
use serde_json::json;

const ACCOUNTS: usize = 200;
const WHEN: &str = "2026-12-06T12:00:00.000Z";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";
const AC: [&str; 3] = [
    "computer.aesthetic.painting",
    "computer.aesthetic.mood",
    "computer.aesthetic.graph.follow",
];

/// Creates account `i` and its records: a painting, a mood, every third one a follow of
/// the previous account, and a Bluesky post (not indexed).
async fn populate(sandbox: &Sandbox, i: usize, previous: Option<String>) -> Account {
    let account = sandbox
        .create_account(&format!("u{i:03}"))
        .await
        .expect("account");
    let code = format!("c{i:03}");
    account
        .create_record(
            AC[0],
            &json!({"$type": AC[0], "slug": format!("2026.12.06.{code}"), "code": code,
                    "imageUrl": format!("https://aesthetic.computer/media/paintings/{code}"),
                    "when": WHEN, "ref": REF}),
        )
        .await
        .expect("painting");
    account
        .create_record(
            AC[1],
            &json!({"$type": AC[1], "mood": format!("mood {i}"), "when": WHEN, "ref": REF}),
        )
        .await
        .expect("mood");
    if let Some(subject) = previous.filter(|_| i.is_multiple_of(3)) {
        account
            .create_record(
                AC[2],
                &json!({"$type": AC[2], "subject": subject, "createdAt": WHEN}),
            )
            .await
            .expect("follow");
    }
    account
        .create_record(
            "app.bsky.feed.post",
            &json!({"$type": "app.bsky.feed.post", "text": "hi", "createdAt": WHEN}),
        )
        .await
        .expect("post");
    account
}

fn config(sandbox: &Sandbox) -> BackfillConfig {
    let mut config = BackfillConfig::new(BackfillSource::Host(sandbox.pds_url().to_owned()));
    config.plc_url = sandbox.plc_url().to_owned();
    config.allow_loopback = true;
    config
}

/// Runs a backfill to the end, or until `stop_after` repositories are done.
async fn backfill(sandbox: &Sandbox, store: &Arc<AnyStore>, stop_after: Option<u64>) -> Progress {
    let (tx, mut rx) = tokio::sync::watch::channel(Progress::default());
    let stop = async move {
        match stop_after {
            Some(n) => {
                let _ = rx.wait_for(|p| p.done >= n).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::time::timeout(
        Duration::from_secs(300),
        backfill::run(&config(sandbox), Arc::clone(store), tx, stop),
    )
    .await
    .expect("backfill finishes in time")
    .expect("backfill runs")
}

async fn open(dir: &tempfile::TempDir, name: &str) -> Arc<AnyStore> {
    Arc::new(
        AnyStore::open(&StoreLocation::Sqlite(dir.path().join(name)))
            .await
            .expect("store"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_of_200_accounts_resumes_to_the_same_index() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let started = Instant::now();
    let mut accounts: Vec<Account> = Vec::with_capacity(ACCOUNTS);
    for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(20) {
        let previous = accounts.last().map(|a| a.did.clone());
        let made = futures_util::future::join_all(
            chunk
                .iter()
                .map(|&i| populate(&sandbox, i, previous.clone())),
        )
        .await;
        accounts.extend(made);
    }
    println!(
        "{ACCOUNTS} accounts written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut expected = Vec::new();
    for account in &accounts {
        for c in AC {
            for r in account.list_records(c).await.expect("listRecords") {
                expected.push((r.uri, r.cid));
            }
        }
    }
    expected.sort();

    let dir = tempfile::tempdir().expect("tempdir");
    let whole = open(&dir, "whole.sqlite").await;
    let t = Instant::now();
    let progress = backfill(&sandbox, &whole, None).await;
    println!(
        "uninterrupted backfill: {:?} in {:.1} s",
        progress,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        (progress.total, progress.done, progress.failed),
        (ACCOUNTS as u64, ACCOUNTS as u64, 0)
    );
    assert_eq!(progress.records as usize, expected.len());
    assert_eq!(whole.record_cids().await.expect("cids"), expected);

    let resumed = open(&dir, "resumed.sqlite").await;
    let first = backfill(&sandbox, &resumed, Some(80)).await;
    assert!(
        first.done >= 80 && first.done < ACCOUNTS as u64,
        "stopped part-way: {first:?}"
    );
    let counts = resumed.backfill_counts().await.expect("counts");
    assert_eq!(counts.done, first.done, "done means indexed");
    let second = backfill(&sandbox, &resumed, None).await;
    assert_eq!((second.done, second.failed), (ACCOUNTS as u64, 0));
    assert_eq!(
        second.records + first.records,
        expected.len() as u64,
        "the second run indexed only what the first had not"
    );
    assert_eq!(
        resumed.record_cids().await.expect("cids"),
        expected,
        "the same index as the uninterrupted run"
    );
    // Follows are edges too: u019 is followed by every third account of the next 20.
    let followed = resumed
        .actor(&accounts[19].did)
        .await
        .expect("actor")
        .expect("known");
    assert_eq!(
        followed.followers,
        (20..40usize).filter(|i| i.is_multiple_of(3)).count() as i64
    );
}
