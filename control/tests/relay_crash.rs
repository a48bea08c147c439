//! `atelier relay --config` as a real process, killed with SIGKILL while a PDS account
//! writes AC records, and started again on the same data directory.
//!
//! What this proves: after two kill -9 restarts, a consumer replaying the relay from
//! `cursor=0` sees every record exactly once, on both endpoints: the filtered
//! `subscribeRepos` (verified by the sync layer's stream, relay seqs contiguous from 1) and
//! Jetstream `/subscribe` (one event per record, `time_us` strictly increasing). Nothing
//! acknowledged by the PDS is lost and nothing is logged twice: the per-upstream cursor is
//! recovered from the log itself, past the last checkpoint.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use atelier_relay::sync::client::ClientConfig;
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_relay::sync::stream::{SyncConfig, SyncEvent, SyncStream};
use atelier_sandbox::Sandbox;
use futures_util::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");
const STEP: Duration = Duration::from_secs(60);
const MOOD: &str = "computer.aesthetic.mood";
const RECORDS: usize = 40;
/// Kill the relay after this many acknowledged writes (each time).
const KILL_AT: [usize; 2] = [10, 25];

/// Starts `atelier relay --config` and returns the child and the address it printed.
fn start_relay(config: &Path) -> (Child, String) {
    let mut child = Command::new(ATELIER)
        .args(["relay", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("atelier relay starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("readable stdout");
    let addr = first
        .strip_prefix("Relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first}"))
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_loses_and_duplicates_nothing() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("atelier.yaml");
    std::fs::write(
        &config,
        format!(
            "profile: sandbox\n\
             data_dir: data\n\
             services:\n\
             \x20 relay:\n\
             \x20   upstreams:\n\
             \x20     - url: {}\n\
             \x20       kind: pds\n\
             \x20   allow_loopback: true\n\
             \x20   plc_url: {}\n",
            sandbox.subscribe_repos_url(None),
            sandbox.plc_url()
        ),
    )
    .expect("write config");

    let (mut relay, mut addr) = start_relay(&config);
    let dave = Arc::new(sandbox.create_account("dave").await.expect("dave"));
    let acked = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (dave, acked) = (Arc::clone(&dave), Arc::clone(&acked));
        tokio::spawn(async move {
            let mut cids = BTreeMap::new();
            for i in 0..RECORDS {
                let record = json!({"$type": MOOD, "mood": format!("m{i}"), "when": "2026-12-04T12:00:00.000Z"});
                let created = dave.create_record(MOOD, &record).await.expect("write");
                cids.insert(format!("m{i}"), created.cid);
                acked.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            cids
        })
    };
    for at in KILL_AT {
        let deadline = Instant::now() + STEP;
        while acked.load(Ordering::SeqCst) < at {
            assert!(Instant::now() < deadline, "writes stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kill(Pid::from_raw(relay.id() as i32), Signal::SIGKILL).expect("kill -9");
        relay.wait().expect("reaped");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (relay, addr) = start_relay(&config);
    }
    let cids = writer.await.expect("writer");

    // subscribeRepos from cursor 0, fully verified.
    let mut client =
        ClientConfig::new(&format!("ws://{addr}/xrpc/com.atproto.sync.subscribeRepos"))
            .expect("URL");
    client.cursor = Some(0);
    let resolver = Resolver::new(
        ResolverConfig::sandbox(sandbox.plc_url()),
        GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stream = SyncStream::start(SyncConfig::new(client, resolver, None), async move {
        let _ = stopped.await;
    })
    .expect("stream");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut seqs = Vec::new();
    let read = async {
        while seen.len() < RECORDS {
            match stream.recv().await.expect("stream runs") {
                SyncEvent::Commit(c) => {
                    seqs.push(c.seq);
                    assert!(c.fully_verified);
                    for op in &c.ops {
                        *seen
                            .entry(format!("{}/{}", op.collection, op.rkey))
                            .or_default() += 1;
                    }
                }
                ev @ (SyncEvent::Rejected { .. } | SyncEvent::ResyncFailed { .. }) => {
                    panic!("relay frame failed verification: {ev:?}")
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(STEP, read).await.unwrap_or_else(|_| {
        panic!(
            "only {} of {RECORDS} records replayed: {seen:?}",
            seen.len()
        )
    });
    let _ = stop.send(());
    assert!(seen.values().all(|n| *n == 1), "duplicates: {seen:?}");
    let want: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, want, "relay seqs contiguous from 1");

    // Jetstream from cursor 0: one event per record, in write order.
    let url = format!("ws://{addr}/subscribe?wantedCollections={MOOD}&cursor=0");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("jetstream");
    let mut moods = Vec::new();
    let mut last_time = 0i64;
    let read = async {
        while moods.len() < RECORDS {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let ev: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    let t = ev["time_us"].as_i64().expect("time_us");
                    assert!(t > last_time, "time_us strictly increasing");
                    last_time = t;
                    let mood = ev["commit"]["record"]["mood"]
                        .as_str()
                        .expect("mood")
                        .to_owned();
                    assert_eq!(
                        ev["commit"]["cid"].as_str(),
                        cids.get(&mood).map(String::as_str),
                        "{mood}"
                    );
                    moods.push(mood);
                }
                Some(Ok(_)) => {}
                other => panic!("jetstream ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .unwrap_or_else(|_| panic!("jetstream replayed only {moods:?}"));
    let want: Vec<String> = (0..RECORDS).map(|i| format!("m{i}")).collect();
    assert_eq!(moods, want, "every record once, in order");
    if let Ok(Some(Ok(Message::Text(extra)))) =
        tokio::time::timeout(Duration::from_secs(1), ws.next()).await
    {
        panic!("duplicate after the last record: {extra}");
    }

    // A clean stop: SIGTERM, exit 0.
    kill(Pid::from_raw(relay.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = relay.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    sandbox.shutdown().await;
}
