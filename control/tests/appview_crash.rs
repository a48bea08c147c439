//! `atelier appview --config` as a real process, following a real PDS, killed with SIGKILL
//! while an account writes AC records, and started again on the same data directory.
//!
//! What this proves: after two kill -9 restarts the index holds exactly the records the
//! PDS holds, same URIs and CIDs, none twice (rows and cursor are committed together, so a
//! restart resumes where the rows stop). Then the XRPC API over that index: the feed pages
//! through everything, the author feed and profile count the records, a bad parameter
//! gets `400 InvalidRequest` naming it, an unknown record `404 NotFound`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use atelier_sandbox::Sandbox;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");
const STEP: Duration = Duration::from_secs(60);
const MOOD: &str = "computer.aesthetic.mood";
const RECORDS: usize = 40;
/// Kill the AppView after this many acknowledged writes (each time).
const KILL_AT: [usize; 2] = [10, 25];

/// Starts `atelier appview --config` and returns the child and the address it printed.
/// Its log goes to `appview.log` beside the config (appended across restarts).
fn start_appview(config: &Path) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("appview.log"))
        .expect("log file");
    let mut child = Command::new(ATELIER)
        .args(["appview", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("atelier appview starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("readable stdout");
    let addr = first
        .strip_prefix("AppView listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn get(http: &reqwest::Client, addr: &str, path: &str) -> (u16, Value) {
    let resp = http
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("AppView answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

/// Every record in the Atmosphere feed, following cursors: `(uri, cid)` in feed order.
async fn whole_feed(http: &reqwest::Client, addr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/xrpc/computer.aesthetic.feed.getAtmosphere?limit=7".to_owned();
        if let Some(c) = &cursor {
            let encoded: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
            path.push_str(&format!("&cursor={encoded}"));
        }
        let (status, body) = get(http, addr, &path).await;
        assert_eq!(status, 200, "{body}");
        for r in body["records"].as_array().expect("records") {
            out.push((
                r["uri"].as_str().expect("uri").to_owned(),
                r["cid"].as_str().expect("cid").to_owned(),
            ));
        }
        cursor = body["cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ingest_loses_and_duplicates_nothing() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let plc_port = sandbox.plc_port();
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

    let (mut appview, mut addr) = start_appview(&config);
    let erin = Arc::new(sandbox.create_account("erin").await.expect("erin"));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (erin, acked) = (Arc::clone(&erin), Arc::clone(&acked));
        tokio::spawn(async move {
            for i in 0..RECORDS {
                let record = json!({"$type": MOOD, "mood": format!("m{i}"),
                                    "when": format!("2026-12-04T12:00:{i:02}.000Z"),
                                    "ref": "6710f0c2a3b4c5d6e7f80912"});
                erin.create_record(MOOD, &record).await.expect("write");
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    for at in KILL_AT {
        let deadline = Instant::now() + STEP;
        while acked.load(Ordering::SeqCst) < at {
            assert!(Instant::now() < deadline, "writes stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill(Pid::from_raw(appview.id() as i32), Signal::SIGKILL).expect("kill -9");
        appview.wait().expect("reaped");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (appview, addr) = start_appview(&config);
    }
    writer.await.expect("writer");

    let mut expected: Vec<(String, String)> = erin
        .list_records(MOOD)
        .await
        .expect("listRecords")
        .into_iter()
        .map(|r| (r.uri, r.cid))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), RECORDS);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + STEP;
    let feed = loop {
        let feed = whole_feed(&http, &addr).await;
        if feed.len() >= RECORDS || Instant::now() > deadline {
            break feed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let uris: BTreeSet<&str> = feed.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(uris.len(), feed.len(), "no record twice in the feed");
    let mut got = feed.clone();
    got.sort();
    if got != expected {
        let log = std::fs::read_to_string(dir.path().join("appview.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "AppView log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    assert_eq!(got, expected, "the index holds exactly the PDS's records");
    let whens: Vec<String> = {
        let (_, body) = get(
            &http,
            &addr,
            "/xrpc/computer.aesthetic.feed.getAtmosphere?limit=100",
        )
        .await;
        body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["createdAt"].as_str().expect("createdAt").to_owned())
            .collect()
    };
    assert!(
        whens.windows(2).all(|w| w[0] > w[1]),
        "newest first: {whens:?}"
    );

    // The API over the index.
    let (status, author) = get(
        &http,
        &addr,
        &format!(
            "/xrpc/computer.aesthetic.feed.getAuthorFeed?actor={}&collections={MOOD}&limit=100",
            erin.did
        ),
    )
    .await;
    assert_eq!(status, 200, "{author}");
    assert_eq!(
        author["records"].as_array().expect("records").len(),
        RECORDS
    );
    let (status, profile) = get(
        &http,
        &addr,
        &format!(
            "/xrpc/computer.aesthetic.actor.getProfile?actor={}",
            erin.did
        ),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["handle"], erin.handle.as_str());
    assert_eq!(
        profile["counts"],
        json!([{"collection": MOOD, "count": RECORDS}])
    );
    let (status, one) = get(
        &http,
        &addr,
        &format!(
            "/xrpc/computer.aesthetic.feed.getRecord?uri={}",
            expected[0].0
        ),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["record"]["cid"], expected[0].1.as_str());
    let bad: [(&str, u16, &str, &str); 6] = [
        ("getAtmosphere?limit=0", 400, "InvalidRequest", "limit"),
        ("getAtmosphere?limit=abc", 400, "InvalidRequest", "limit"),
        (
            "getAtmosphere?collections=app.bsky.feed.post",
            400,
            "InvalidRequest",
            "collections",
        ),
        ("getAuthorFeed", 400, "InvalidRequest", "actor"),
        (
            "getRecord?uri=https://example.com",
            400,
            "InvalidRequest",
            "uri",
        ),
        (
            "getRecord?uri=at://did:plc:nobody/computer.aesthetic.mood/3aaaaaaaaaaaa",
            404,
            "NotFound",
            "no record",
        ),
    ];
    for (path, status, error, mentions) in bad {
        let (got, body) = get(
            &http,
            &addr,
            &format!("/xrpc/computer.aesthetic.feed.{path}"),
        )
        .await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"], error, "{path}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains(mentions)),
            "{path}: the message names {mentions}: {body}"
        );
    }

    kill(Pid::from_raw(appview.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::task::spawn_blocking(move || appview.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "a clean stop on SIGTERM: {status}");
    sandbox.shutdown().await;
}
