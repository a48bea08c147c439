//! `atelier appview backfill` as a real process against a real PDS and PLC.
//!
//! What this proves: with no target it backfills every repository of the host the AppView
//! ingests from (taken from `services.appview.source`), printing a final line with the
//! counts; the index then holds exactly the PDS's AC records; `--did` backfills one
//! account; a host that does not answer fails with an error that names it.

use std::path::Path;
use std::process::Command;

use atelier_appview::store::{AnyStore, Store, StoreLocation};
use atelier_sandbox::Sandbox;
use serde_json::json;

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");
const WHEN: &str = "2026-12-06T12:00:00.000Z";

fn backfill(config: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(ATELIER)
        .args(["appview", "backfill", "--config"])
        .arg(config)
        .args(extra)
        .output()
        .expect("atelier runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_command_indexes_the_source_host() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let plc_port = sandbox.plc_port();
    let mut expected = Vec::new();
    for name in ["ada", "bob"] {
        let account = sandbox.create_account(name).await.expect("account");
        for i in 0..3 {
            let r = account
                .create_record(
                    "computer.aesthetic.mood",
                    &json!({"$type": "computer.aesthetic.mood", "mood": format!("{name} {i}"),
                            "when": WHEN, "ref": "6710f0c2a3b4c5d6e7f80912"}),
                )
                .await
                .expect("mood");
            expected.push((r.uri, r.cid));
        }
    }
    expected.sort();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("atelier.yaml");
    std::fs::write(
        &config,
        format!(
            "profile: sandbox\n\
             data_dir: data\n\
             services:\n\
             \x20 plc:\n\
             \x20   port: {plc_port}\n\
             \x20 appview:\n\
             \x20   source:\n\
             \x20     url: {}\n",
            sandbox.subscribe_repos_url(None),
        ),
    )
    .expect("write config");

    let (ok, stderr) = backfill(&config, &[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Done: 2/2 repos") && stderr.contains("6 records"),
        "{stderr}"
    );
    let store = AnyStore::open(&StoreLocation::Sqlite(
        dir.path().join("data/appview/index.sqlite"),
    ))
    .await
    .expect("index");
    assert_eq!(store.record_cids().await.expect("cids"), expected);
    store.close().await;

    // Again: nothing left to do. One account by DID: indexed again, the same rows.
    let (ok, stderr) = backfill(&config, &[]);
    assert!(ok && stderr.contains("Done: 2/2 repos"), "{stderr}");
    let did = expected[0].0.split('/').nth(2).expect("did").to_owned();
    let (ok, stderr) = backfill(&config, &["--did", &did]);
    assert!(ok, "{stderr}");

    let (ok, stderr) = backfill(&config, &["--host", "http://127.0.0.1:9"]);
    assert!(!ok, "an unreachable host fails");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}
