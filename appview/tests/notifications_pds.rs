//! Remixes and notifications end to end: a real PLC + reference PDS on loopback, the
//! AppView service (`service::run`) following the PDS with full verification, two
//! accounts, and the viewer authenticated by inter-service tokens the PDS mints
//! (`getServiceAuth`).
//!
//! What this proves:
//! - a KidLisp program with `remixOf` pointing at another account's painting, a follow,
//!   and a mood mentioning the painter's handle each notify the painter (and only them);
//! - the live stream (`computer.aesthetic.notification.subscribe`) delivers the remix
//!   notification after the remix is written to the PDS (the latency is printed), and a
//!   reconnect with `cursor` replays exactly what came after it;
//! - `listNotifications`, `getUnreadCount` and `updateSeen` work for the token's viewer;
//!   no token, a token for another method, or for another audience is refused with the
//!   XRPC error names;
//! - `getRemixes` answers both directions: what remixes the painting, what the program
//!   remixes;
//! - `getFollowing` is the viewer's follows' work; `searchRecords` finds by code, `$code`
//!   and `@handle`.

use std::time::{Duration, Instant};

use atelier_appview::ingest::IngestConfig;
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::StoreLocation;
use atelier_sandbox::{Account, Sandbox};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const STEP: Duration = Duration::from_secs(60);
const APPVIEW_DID: &str = "did:web:appview.atelier.test";
const WHEN: &str = "2026-12-06T12:00:00.000Z";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";
const SUBSCRIBE: &str = "computer.aesthetic.notification.subscribe";
const LIST: &str = "computer.aesthetic.notification.listNotifications";

/// The AppView on a loopback port, stopped on drop.
struct AppView {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for AppView {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_appview(sandbox: &Sandbox) -> AppView {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ingest = IngestConfig::new(sandbox.subscribe_repos_url(None));
    ingest.plc_url = sandbox.plc_url().to_owned();
    ingest.allow_loopback = true;
    ingest.initial_cursor = Some(0);
    ingest.batch_wait = Duration::from_millis(20);
    let mut config = AppViewConfig::new(
        StoreLocation::Sqlite(dir.path().join("index.sqlite")),
        Some(ingest),
    );
    config.service_did = APPVIEW_DID.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    AppView {
        base,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A GET against the AppView: (status, JSON body).
async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{base}/xrpc/{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("AppView answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn token(account: &Account, lxm: &str) -> String {
    account
        .service_auth(APPVIEW_DID, Some(lxm))
        .await
        .expect("getServiceAuth")
}

/// Opens the live stream as `account` (from `cursor`, if given).
async fn subscribe(
    base: &str,
    account: &Account,
    cursor: Option<i64>,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut url = format!("{}/xrpc/{SUBSCRIBE}", base.replacen("http", "ws", 1));
    if let Some(c) = cursor {
        url.push_str(&format!("?cursor={c}"));
    }
    let mut request = url.into_client_request().expect("request");
    let bearer = format!("Bearer {}", token(account, SUBSCRIBE).await);
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("header value"));
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the stream accepts the viewer");
    socket
}

/// The next notification on the stream (pings skipped).
async fn next_notification(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let message = tokio::time::timeout(STEP, socket.next())
            .await
            .expect("a notification in time")
            .expect("the stream stays open")
            .expect("a frame");
        if let tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON notification");
        }
    }
}

/// Waits until `path` answers 200 with a body `check` accepts.
async fn until(base: &str, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + STEP;
    loop {
        let (status, body) = get(base, path, None).await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {path}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remix_follow_and_mention_notify_live() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let appview = start_appview(&sandbox).await;
    let base = appview.base.as_str();
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");

    let painting = alice
        .create_record(
            "computer.aesthetic.painting",
            &json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.06.12.00.00.abc",
                "code": "abc",
                "imageUrl": "https://aesthetic.computer/media/paintings/abc",
                "when": WHEN,
                "ref": REF,
            }),
        )
        .await
        .expect("painting");
    let record_path = format!(
        "computer.aesthetic.feed.getRecord?uri={}",
        painting.uri.replace(':', "%3A")
    );
    until(base, &record_path, |_| true).await;

    // Alice listens before anything happens to her.
    let mut live = subscribe(base, &alice, None).await;

    let written = Instant::now();
    let remix = bob
        .create_record(
            "computer.aesthetic.kidlisp",
            &json!({
                "$type": "computer.aesthetic.kidlisp",
                "source": "(wipe blue)\n(ink red)",
                "code": "xyz",
                "when": WHEN,
                "ref": REF,
                "remixOf": {"uri": painting.uri, "cid": painting.cid},
            }),
        )
        .await
        .expect("remix");
    let n = next_notification(&mut live).await;
    let latency = written.elapsed();
    println!("remix notification on the live stream {latency:?} after createRecord returned");
    assert_eq!(
        (
            n["reason"].as_str(),
            n["author"].as_str(),
            n["uri"].as_str()
        ),
        (
            Some("remix"),
            Some(bob.did.as_str()),
            Some(remix.uri.as_str())
        )
    );
    assert_eq!(n["subject"], json!(painting.uri));
    assert_eq!(n["record"]["code"], json!("xyz"));
    let remix_id = n["id"].as_i64().expect("id");

    bob.create_record(
        "computer.aesthetic.graph.follow",
        &json!({"$type": "computer.aesthetic.graph.follow", "subject": alice.did, "createdAt": WHEN}),
    )
    .await
    .expect("follow");
    let mood = bob
        .create_record(
            "computer.aesthetic.mood",
            &json!({
                "$type": "computer.aesthetic.mood",
                "mood": format!("remixing @{} today", alice.handle),
                "when": WHEN,
                "ref": REF,
            }),
        )
        .await
        .expect("mood");
    let follow_n = next_notification(&mut live).await;
    let mention_n = next_notification(&mut live).await;
    assert_eq!(follow_n["reason"], json!("follow"));
    assert_eq!(
        (mention_n["reason"].as_str(), mention_n["uri"].as_str()),
        (Some("mention"), Some(mood.uri.as_str()))
    );

    // A reconnect from the remix's id replays exactly what followed it.
    let mut again = subscribe(base, &alice, Some(remix_id)).await;
    let replayed = [
        next_notification(&mut again).await,
        next_notification(&mut again).await,
    ];
    assert_eq!(replayed, [follow_n.clone(), mention_n.clone()]);

    // The list, the unread count, marking seen.
    let list_token = token(&alice, LIST).await;
    let (status, list) = get(base, LIST, Some(&list_token)).await;
    assert_eq!(status, 200, "{list}");
    let reasons: Vec<&str> = list["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|n| n["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["mention", "follow", "remix"]);
    let unread = "computer.aesthetic.notification.getUnreadCount";
    let (_, count) = get(base, unread, Some(&token(&alice, unread).await)).await;
    assert_eq!(count["count"], json!(3));
    let seen = "computer.aesthetic.notification.updateSeen";
    let response = reqwest::Client::new()
        .post(format!("{base}/xrpc/{seen}"))
        .bearer_auth(token(&alice, seen).await)
        .json(&json!({"seenAt": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("updateSeen");
    assert_eq!(response.status().as_u16(), 200);
    let (_, count) = get(base, unread, Some(&token(&alice, unread).await)).await;
    assert_eq!(count["count"], json!(0));
    let (_, bobs) = get(base, LIST, Some(&token(&bob, LIST).await)).await;
    assert_eq!(bobs["notifications"], json!([]), "nothing happened to bob");

    // Publish-to-visibility and query latency are on /metrics, with observations.
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let count = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing from:\n{metrics}"))
    };
    assert!(
        count("atelier_appview_visibility_seconds_count ") >= 3,
        "{metrics}"
    );
    assert!(
        count(
            "atelier_appview_query_seconds_count{route=\"/xrpc/computer.aesthetic.feed.getRecord\"}"
        ) >= 1,
        "{metrics}"
    );
    assert!(
        metrics.contains("atelier_appview_ingest_lag_seconds "),
        "{metrics}"
    );

    // Refusals, with XRPC error names.
    let other_audience = alice
        .service_auth("did:web:elsewhere.test", Some(LIST))
        .await
        .expect("token");
    let cases: [(&str, Option<&str>, &str); 3] = [
        ("no token", None, "AuthMissing"),
        (
            "another method",
            Some(list_token.as_str()),
            "BadJwtLexiconMethod",
        ),
        (
            "another audience",
            Some(other_audience.as_str()),
            "BadJwtAudience",
        ),
    ];
    for (name, token, error) in cases {
        let path = if name == "another method" {
            unread
        } else {
            LIST
        };
        let (status, body) = get(base, path, token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some(error)),
            "{name}: {body}"
        );
    }

    // Bob follows Alice: his "following" feed is her work; search finds it by code,
    // KidLisp code and handle.
    let following = "computer.aesthetic.feed.getFollowing";
    let (status, feed) = get(base, following, Some(&token(&bob, following).await)).await;
    assert_eq!(status, 200, "{feed}");
    assert_eq!(feed["records"][0]["uri"], json!(painting.uri));
    let (_, feed) = get(base, following, Some(&token(&alice, following).await)).await;
    assert_eq!(feed["records"], json!([]), "alice follows no one");
    for (q, want) in [
        ("abc", &painting.uri),
        ("%24xyz", &remix.uri),
        (&format!("%40{}", alice.handle)[..], &painting.uri),
    ] {
        let (status, found) = get(
            base,
            &format!("computer.aesthetic.feed.searchRecords?q={q}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(found["records"][0]["uri"], json!(want), "{q}");
    }
    let (status, _) = get(base, "computer.aesthetic.feed.searchRecords?q=", None).await;
    assert_eq!(status, 400, "an empty search is refused");

    // The remix graph, both ways.
    let enc = |uri: &str| uri.replace(':', "%3A");
    let graph = until(
        base,
        &format!(
            "computer.aesthetic.feed.getRemixes?uri={}",
            enc(&painting.uri)
        ),
        |b| b["remixes"].as_array().is_some_and(|r| !r.is_empty()),
    )
    .await;
    assert_eq!(graph["remixes"][0]["uri"], json!(remix.uri));
    assert!(
        graph.get("remixOf").is_none(),
        "the painting remixes nothing"
    );
    let (_, up) = get(
        base,
        &format!("computer.aesthetic.feed.getRemixes?uri={}", enc(&remix.uri)),
        None,
    )
    .await;
    assert_eq!(up["remixOf"], json!(painting.uri));
    assert_eq!(up["parent"]["uri"], json!(painting.uri));
    assert_eq!(up["remixes"], json!([]));
}
