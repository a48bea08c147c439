//! The relay service end to end: a real PLC + reference PDS on loopback, the relay following
//! the PDS, and downstream consumers on both endpoints.
//!
//! What this proves:
//! - an AC record written on the PDS reaches a Jetstream `/subscribe` client and a
//!   verifying `subscribeRepos` consumer (the sync layer's own stream, full verification:
//!   signatures and MST proofs still check after the relay re-sequenced the frame), with
//!   the relay's own contiguous seqs; the publish-to-delivery latency is printed;
//! - a `app.bsky.feed.post` is filtered out, the profile of a known AC actor passes, the
//!   profile of an actor with no AC records does not;
//! - a replay from `cursor=0` (subscribeRepos) and from a microsecond cursor (Jetstream)
//!   gives exactly the live events, then continues live;
//! - the admin API: 401 without or with a wrong token, 429 after repeated failures from one
//!   address, 200 with the token; an account takedown emits `#account` (`takendown`) and
//!   holds the account's later commits back; a restore emits `#account` active again;
//! - `listHosts` and `/metrics` report the PDS host and the refused/filtered counts;
//! - per-host limits: a burst over `per_second` is refused (`rate_limited`), an account
//!   over `accounts_per_host` never passes (`account_limit`); a banned host is disconnected
//!   (`getHostStatus` says `banned`) and, once unbanned, resumes from its stored cursor so
//!   a write made while banned still arrives;
//! - `requestCrawl` in allow-list mode: other hosts are refused (403), malformed names get
//!   400 with the reason, the allowed PDS is checked (`describeServer`), added and followed;
//! - a faulty upstream (a garbage message, a truncated frame, a flipped byte, an abort)
//!   is counted by reason (`bad_frame`) and resumed from its cursor, losing nothing, while
//!   a clean upstream beside it is unaffected;
//! - `compress=true` Jetstream frames decompress (with the installed dictionary) to exactly
//!   the plain subscriber's JSON.
//!
//! The slow-subscriber load test lives in `fanout.rs`, its own test binary, so it never
//! shares the machine's cores with these.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use atelier_relay::filter::FilterRules;
use atelier_relay::service::{RelayConfig, UpstreamConfig, UpstreamKind};
use atelier_relay::sync::client::ClientConfig;
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::replay::{Fault, FaultKind};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_relay::sync::stream::{SyncConfig, SyncEvent, SyncStream};
use atelier_relay::sync::verify::VerifyMode;
use atelier_sandbox::Sandbox;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

mod support;

use support::relay::{
    CORPUS_PASSING, Relay, STEP, corpus_relay_config, corpus_upstream, corpus_upstream_with,
    get_json, metric, metrics_text, settled,
};

const MOOD: &str = "computer.aesthetic.mood";
const PROFILE: &str = "app.bsky.actor.profile";

fn relay_config(sandbox: &Sandbox, dir: &Path) -> RelayConfig {
    RelayConfig {
        data_dir: dir.join("relay"),
        upstreams: vec![UpstreamConfig {
            url: sandbox.subscribe_repos_url(None),
            kind: UpstreamKind::Pds,
            trusted: false,
        }],
        allow_loopback: true,
        plc_url: sandbox.plc_url().to_owned(),
        admin_tokens_file: dir.join("admin_token"),
        filter: FilterRules::default(),
        ..RelayConfig::default()
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A Jetstream client; `next_event` returns the next JSON event.
struct Jetstream {
    ws: Ws,
}

impl Jetstream {
    async fn connect(relay: &Relay, query: &str) -> Jetstream {
        let url = format!("ws://{}/subscribe?{query}", relay.addr);
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Jetstream { ws }
    }

    async fn next_event(&mut self, what: &str) -> Value {
        let read = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str::<Value>(text.as_str()).expect("JSON");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("jetstream ended while waiting for {what}: {other:?}"),
                }
            }
        };
        tokio::time::timeout(STEP, read)
            .await
            .unwrap_or_else(|_| panic!("no jetstream event ({what}) within {STEP:?}"))
    }

    /// Asserts nothing arrives for `quiet`.
    async fn expect_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(quiet, self.ws.next()).await
        {
            panic!("unexpected jetstream event: {text}");
        }
    }
}

/// A verifying downstream consumer of the relay's `subscribeRepos`.
struct Downstream {
    stream: SyncStream,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Downstream {
    fn connect(relay: &Relay, sandbox: &Sandbox, cursor: Option<i64>) -> Downstream {
        let mut client = ClientConfig::new(&format!(
            "ws://{}/xrpc/com.atproto.sync.subscribeRepos",
            relay.addr
        ))
        .expect("URL");
        client.cursor = cursor;
        let resolver = Resolver::new(
            ResolverConfig::sandbox(sandbox.plc_url()),
            GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client"),
        );
        let config = SyncConfig::new(client, resolver, None);
        assert_eq!(config.mode, VerifyMode::Full);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stream = SyncStream::start(config, async move {
            let _ = stopped.await;
        })
        .expect("stream starts");
        Downstream {
            stream,
            _stop: stop,
        }
    }

    /// The next commit, account or identity event (sync events are returned too); a
    /// rejection fails the test: the relay must keep frames verifiable.
    async fn next(&mut self, what: &str) -> SyncEvent {
        let read = async {
            loop {
                let event = self.stream.recv().await.expect("stream keeps running");
                match event {
                    SyncEvent::Rejected { .. } | SyncEvent::ResyncFailed { .. } => {
                        panic!("downstream could not verify a relay frame: {event:?}")
                    }
                    SyncEvent::Commit(_)
                    | SyncEvent::Account { .. }
                    | SyncEvent::Identity { .. }
                    | SyncEvent::Sync { .. } => return event,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(STEP, read)
            .await
            .unwrap_or_else(|_| panic!("no downstream event ({what}) within {STEP:?}"))
    }

    /// Reads until a commit carrying an op in `collection`, returning the events skipped.
    async fn until_commit(&mut self, collection: &str) -> (SyncEvent, Vec<SyncEvent>) {
        let mut skipped = Vec::new();
        loop {
            let ev = self.next(collection).await;
            if let SyncEvent::Commit(c) = &ev
                && c.ops.iter().any(|op| op.collection == collection)
            {
                return (ev, skipped);
            }
            skipped.push(ev);
        }
    }
}

fn seq_of(ev: &SyncEvent) -> i64 {
    match ev {
        SyncEvent::Commit(c) => c.seq,
        SyncEvent::Account { seq, .. }
        | SyncEvent::Identity { seq, .. }
        | SyncEvent::Sync { seq, .. } => *seq,
        other => panic!("no seq on {other:?}"),
    }
}

fn mood(text: &str) -> Value {
    json!({"$type": MOOD, "mood": text, "when": "2026-12-04T12:00:00.000Z"})
}

fn profile(name: &str) -> Value {
    json!({"$type": PROFILE, "displayName": name})
}

async fn admin(
    http: &reqwest::Client,
    relay: &Relay,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = match &body {
        Some(b) => http.post(relay.url(path)).json(b),
        None => http.get(relay.url(path)),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pds_to_relay_to_both_endpoints() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(relay_config(&sandbox, dir.path())).await;
    let http = reqwest::Client::new();

    let mut jet = Jetstream::connect(
        &relay,
        "wantedCollections=computer.aesthetic.*&wantedCollections=app.bsky.actor.profile",
    )
    .await;
    let mut down = Downstream::connect(&relay, &sandbox, None);
    // Let both subscriptions register before the first write.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");

    // Not AC: filtered. Bob's profile: bob is not a known AC actor, filtered.
    alice
        .create_record(
            "app.bsky.feed.post",
            &json!({"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-12-04T12:00:00.000Z"}),
        )
        .await
        .expect("post");
    bob.put_record(PROFILE, "self", &profile("Bob"))
        .await
        .expect("bob profile");

    // An AC record: passes, on both endpoints.
    let written = Instant::now();
    let created = alice
        .create_record(MOOD, &mood("happy"))
        .await
        .expect("mood");
    let ev = jet.next_event("alice's mood").await;
    let latency = written.elapsed();
    eprintln!("PDS write -> relay Jetstream delivery: {latency:?}");
    assert_eq!(ev["did"], alice.did.as_str());
    assert_eq!(ev["kind"], "commit");
    assert_eq!(ev["commit"]["operation"], "create");
    assert_eq!(ev["commit"]["collection"], MOOD);
    assert_eq!(ev["commit"]["cid"], created.cid.as_str());
    assert_eq!(ev["commit"]["record"]["mood"], "happy");
    let first_time_us = ev["time_us"].as_i64().expect("time_us");

    let (commit, skipped) = down.until_commit(MOOD).await;
    let SyncEvent::Commit(commit) = commit else {
        unreachable!()
    };
    eprintln!(
        "PDS write -> relay subscribeRepos delivery (verified): {:?}",
        written.elapsed()
    );
    assert!(commit.fully_verified, "relay frames stay verifiable");
    assert_eq!(commit.did, alice.did);
    assert_eq!(commit.ops.len(), 1, "{:?}", commit.ops);
    assert_eq!(commit.ops[0].cid.as_deref(), Some(created.cid.as_str()));
    // Before it: at most alice's own #identity/#account (unknown actors' events do not pass,
    // so nothing at all here), and never bob or the post.
    assert!(
        skipped.is_empty(),
        "unexpected events before the first AC commit: {skipped:?}"
    );
    assert_eq!(commit.seq, 1, "the relay's own seq starts at 1");

    // Alice is now known: her profile passes; bob's second profile still does not.
    bob.put_record(PROFILE, "self", &profile("Bob 2"))
        .await
        .expect("bob profile");
    alice
        .put_record(PROFILE, "self", &profile("Alice"))
        .await
        .expect("alice profile");
    let ev = jet.next_event("alice's profile").await;
    assert_eq!(ev["did"], alice.did.as_str());
    assert_eq!(ev["commit"]["collection"], PROFILE);
    assert_eq!(ev["commit"]["record"]["displayName"], "Alice");
    let (profile_commit, skipped) = down.until_commit(PROFILE).await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(seq_of(&profile_commit), 2, "contiguous relay seqs");
    let SyncEvent::Commit(c) = &profile_commit else {
        unreachable!()
    };
    assert_eq!(c.did, alice.did);

    // Replays: subscribeRepos from cursor 0 and Jetstream from the first time_us give the
    // same events, then continue live.
    let mut replay = Downstream::connect(&relay, &sandbox, Some(0));
    let a = replay.next("replay 1").await;
    let b = replay.next("replay 2").await;
    assert_eq!((seq_of(&a), seq_of(&b)), (1, 2));
    let mut jet_replay = Jetstream::connect(
        &relay,
        &format!("wantedCollections=computer.aesthetic.*&cursor={first_time_us}"),
    )
    .await;
    let r = jet_replay.next_event("replayed mood").await;
    assert_eq!(
        r["time_us"].as_i64(),
        Some(first_time_us),
        "cursor is inclusive"
    );
    assert_eq!(r["commit"]["collection"], MOOD);

    // Admin API: the token is required, failures are rate limited per address.
    let (status, _) = admin(&http, &relay, "/admin/hosts", None, None).await;
    assert_eq!(status, 401);
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            admin(
                &http,
                &relay,
                "/admin/hosts",
                Some("wrong-token-0123456789"),
                None,
            )
            .await
            .0,
        );
    }
    assert!(statuses[..9].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(*statuses.last().expect("a status"), 429, "{statuses:?}");
    // The right token is refused too while the address is locked out: the lock is per
    // address, not per token, so a guesser cannot slip in a correct guess.
    let (status, _) = admin(&http, &relay, "/admin/hosts", Some(&relay.token), None).await;
    assert_eq!(status, 429);

    // listHosts (public) names the PDS host.
    let hosts: Value = get_json(&http, &relay, "/xrpc/com.atproto.sync.listHosts").await;
    let listed = hosts["hosts"].as_array().expect("hosts");
    assert_eq!(listed.len(), 1, "{hosts}");
    assert_eq!(listed[0]["status"], "active", "{hosts}");

    let metrics = metrics_text(&http, &relay).await;
    assert!(
        metrics.contains("atelier_relay_events_out_total{kind=\"commit\"} 2"),
        "{metrics}"
    );
    let filtered: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atelier_relay_filtered_total "))
        .and_then(|v| v.parse().ok())
        .expect("filtered counter");
    assert!(
        filtered >= 3,
        "post and two bob profiles filtered: {metrics}"
    );

    relay.stop().await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takedown_emits_account_and_holds_back_commits() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(relay_config(&sandbox, dir.path())).await;
    let http = reqwest::Client::new();
    let mut down = Downstream::connect(&relay, &sandbox, None);
    let mut jet = Jetstream::connect(&relay, "wantedCollections=computer.aesthetic.*").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let carol = sandbox.create_account("carol").await.expect("carol");
    carol.create_record(MOOD, &mood("one")).await.expect("mood");
    down.until_commit(MOOD).await;
    jet.next_event("first mood").await;

    let (status, body) = admin(
        &http,
        &relay,
        "/admin/accounts/takedown",
        Some(&relay.token),
        Some(json!({"did": carol.did, "reason": "test"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    match down.next("takedown #account").await {
        SyncEvent::Account {
            did,
            active,
            status,
            ..
        } => {
            assert_eq!(did, carol.did);
            assert!(!active);
            assert_eq!(status.as_deref(), Some("takendown"));
        }
        other => panic!("expected #account, got {other:?}"),
    }
    let ev = jet.next_event("takedown account event").await;
    assert_eq!(ev["kind"], "account");
    assert_eq!(ev["account"]["active"], false);
    assert_eq!(ev["account"]["status"], "takendown");

    // A commit from a taken-down account is held back.
    carol.create_record(MOOD, &mood("two")).await.expect("mood");
    jet.expect_quiet(Duration::from_secs(2)).await;

    let (status, body) = admin(
        &http,
        &relay,
        "/admin/accounts/restore",
        Some(&relay.token),
        Some(json!({"did": carol.did})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    match down.next("restore #account").await {
        SyncEvent::Account { did, active, .. } => {
            assert_eq!(did, carol.did);
            assert!(active);
        }
        other => panic!("expected #account, got {other:?}"),
    }
    carol
        .create_record(MOOD, &mood("three"))
        .await
        .expect("mood");
    let ev = jet.next_event("after restore").await;
    // The account event comes first, then the new mood.
    let ev = if ev["kind"] == "account" {
        jet.next_event("mood after restore").await
    } else {
        ev
    };
    assert_eq!(ev["commit"]["record"]["mood"], "three");

    let metrics = metrics_text(&http, &relay).await;
    assert!(
        metrics.contains("atelier_relay_refused_total{reason=\"takendown\"} 1"),
        "{metrics}"
    );
    relay.stop().await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_limits_account_cap_and_ban() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = relay_config(&sandbox, dir.path());
    config.limits.per_second = 2;
    config.limits.accounts_per_host = 1;
    let relay = Relay::start(config).await;
    let http = reqwest::Client::new();
    let mut jet = Jetstream::connect(&relay, "wantedCollections=computer.aesthetic.*").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Erin takes the host's only account slot; her burst of writes goes over 2 events/s.
    let erin = sandbox.create_account("erin").await.expect("erin");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..20 {
        erin.create_record(MOOD, &mood(&format!("burst {i}")))
            .await
            .expect("mood");
    }
    // One more a second later, under the limit whatever the burst met: on a busy machine
    // the PDS can emit erin's account events late, in the same second as the whole burst.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    erin.create_record(MOOD, &mood("after the burst"))
        .await
        .expect("mood");
    let first = jet.next_event("one of erin's moods").await;
    assert_eq!(first["did"], erin.did.as_str());
    // Frank is over the accounts-per-host cap: his events never pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let frank = sandbox.create_account("frank").await.expect("frank");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    frank
        .create_record(MOOD, &mood("frank"))
        .await
        .expect("mood");
    let mut delivered = 1;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), jet.ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let ev: Value = serde_json::from_str(text.as_str()).expect("JSON");
                assert_eq!(ev["did"], erin.did.as_str(), "only erin passes: {ev}");
                delivered += 1;
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("jetstream ended: {other:?}"),
            Err(_) => break,
        }
    }
    let text = metrics_text(&http, &relay).await;
    let limited = metric(
        &text,
        "atelier_relay_refused_total{reason=\"rate_limited\"}",
    );
    let capped = metric(
        &text,
        "atelier_relay_refused_total{reason=\"account_limit\"}",
    );
    eprintln!(
        "burst: {delivered} of 21 delivered, {limited} rate limited, {capped} over the account cap"
    );
    assert!(delivered < 21, "the 2/s limit held some of the burst back");
    assert!(limited >= 1, "{text}");
    assert!(capped >= 1, "{text}");

    // A banned host is disconnected: nothing from it passes until it is unbanned, and then
    // the relay resumes from its stored cursor, so the write made meanwhile arrives.
    let hosts: Value = get_json(&http, &relay, "/xrpc/com.atproto.sync.listHosts").await;
    let key = hosts["hosts"][0]["hostname"]
        .as_str()
        .expect("hostname")
        .to_owned();
    let (status, body) = admin(
        &http,
        &relay,
        "/admin/hosts/ban",
        Some(&relay.token),
        Some(json!({"hostname": key})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    erin.create_record(MOOD, &mood("while banned"))
        .await
        .expect("mood");
    jet.expect_quiet(Duration::from_secs(2)).await;
    let status: Value = get_json(
        &http,
        &relay,
        &format!("/xrpc/com.atproto.sync.getHostStatus?hostname={key}"),
    )
    .await;
    assert_eq!(status["status"], "banned", "{status}");
    let (code, body) = admin(
        &http,
        &relay,
        "/admin/hosts/unban",
        Some(&relay.token),
        Some(json!({"hostname": key})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let ev = jet.next_event("the mood written while banned").await;
    assert_eq!(ev["commit"]["record"]["mood"], "while banned");

    relay.stop().await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_crawl_follows_allowed_pds_hosts_only() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let pds_host = sandbox
        .pds_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut config = relay_config(&sandbox, dir.path());
    config.upstreams.clear();
    config.crawl.allow = vec![pds_host.clone()];
    let relay = Relay::start(config).await;
    let http = reqwest::Client::new();
    let crawl = |hostname: &str| {
        let req = http
            .post(relay.url("/xrpc/com.atproto.sync.requestCrawl"))
            .json(&json!({ "hostname": hostname }));
        async move {
            let resp = req.send().await.expect("requestCrawl");
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
    };
    let cases: &[(&str, u16, &str)] = &[
        (
            "pds.example.com",
            403,
            "not accepted by this relay's crawl policy",
        ),
        ("https://pds.example.com/x", 400, "bare hostname"),
        ("", 400, "empty"),
    ];
    for (hostname, status, text) in cases {
        let (got, body) = crawl(hostname).await;
        assert_eq!(got, *status, "{hostname:?}: {body}");
        assert!(body.contains(text), "{hostname:?}: {body}");
    }
    let hosts: Value = get_json(&http, &relay, "/xrpc/com.atproto.sync.listHosts").await;
    assert_eq!(hosts["hosts"].as_array().map(Vec::len), Some(0), "{hosts}");

    // The allowed PDS: added, followed, and its AC events flow.
    let (got, body) = crawl(&pds_host).await;
    assert_eq!(got, 200, "{body}");
    let mut jet = Jetstream::connect(&relay, "wantedCollections=computer.aesthetic.*").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gina = sandbox.create_account("gina").await.expect("gina");
    gina.create_record(MOOD, &mood("crawled"))
        .await
        .expect("mood");
    let ev = jet.next_event("a mood from the crawled PDS").await;
    assert_eq!(ev["commit"]["record"]["mood"], "crawled");
    let status: Value = get_json(
        &http,
        &relay,
        &format!("/xrpc/com.atproto.sync.getHostStatus?hostname={pds_host}"),
    )
    .await;
    assert_eq!(status["status"], "active", "{status}");
    relay.stop().await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faulty_upstream_is_counted_and_others_are_unaffected() {
    let (clean, _stop_clean) = corpus_upstream(500.0).await;
    let faults = vec![
        Fault {
            at: 10,
            kind: FaultKind::Inject(bytes::Bytes::from_static(b"\xa2garbage")),
        },
        Fault {
            at: 20,
            kind: FaultKind::Truncate { len: 40 },
        },
        Fault {
            at: 30,
            kind: FaultKind::FlipByte { offset: 3 },
        },
        Fault {
            at: 40,
            kind: FaultKind::Abort,
        },
    ];
    let (faulty, _stop_faulty) = corpus_upstream_with(500.0, faults).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(corpus_relay_config(dir.path(), &[clean, faulty])).await;
    let http = reqwest::Client::new();
    let logged = settled(&http, &relay, 2 * CORPUS_PASSING).await;
    let text = metrics_text(&http, &relay).await;
    let events = |addr: SocketAddr| {
        metric(
            &text,
            &format!("atelier_relay_host_events_total{{host=\"{addr}\"}}"),
        )
    };
    eprintln!(
        "{logged} logged; clean host {} events, faulty host {}",
        events(clean),
        events(faulty)
    );
    let refused: u64 = text
        .lines()
        .filter(|l| l.starts_with("atelier_relay_refused_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        refused >= 2,
        "the corrupted frames are refused and counted by reason: {text}"
    );
    assert_eq!(
        events(clean),
        150,
        "the clean host delivered its whole corpus: {text}"
    );
    // Both hosts' verified commits are logged: the clean one's all, the faulty one's all
    // but those it corrupted.
    assert!(logged >= 147 + 140, "{logged}: {text}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compressed_jetstream_matches_plain_json() {
    use atelier_relay::jetstream::zstd::{Dictionary, decompress, dictionary_path};
    // The dictionary install.sh puts in place; a missing one fails here, naming the path.
    let dict = Dictionary::load(&dictionary_path(None)).expect("Jetstream zstd dictionary");
    let (upstream, _stop) = corpus_upstream(1000.0).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start(corpus_relay_config(dir.path(), &[upstream])).await;
    let http = reqwest::Client::new();
    // Both live from the start, then caught up from the log: the writer compresses only
    // while a compress=true subscriber is connected, the subscriber itself otherwise.
    let query = "wantedCollections=app.bsky.*&cursor=0";
    let mut plain = Jetstream::connect(&relay, query).await;
    let (mut zipped, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/subscribe?{query}&compress=true",
        relay.addr
    ))
    .await
    .expect("compressed subscriber");
    settled(&http, &relay, CORPUS_PASSING).await;
    let mut n = 0;
    loop {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), zipped.next()).await
        else {
            break;
        };
        let Message::Binary(frame) = msg else {
            continue;
        };
        let json = decompress(&dict, &frame, 1 << 20).expect("a zstd frame with the dictionary");
        let text = plain
            .ws
            .next()
            .await
            .expect("plain event")
            .expect("plain message");
        let Message::Text(text) = text else {
            panic!("plain subscriber got {text:?}");
        };
        assert_eq!(
            json,
            text.as_bytes(),
            "event {n}: compressed differs from plain"
        );
        n += 1;
    }
    assert!(n >= 147, "only {n} compressed events");
    relay.stop().await;
}
