//! The publishing API end to end: the AppView (`service::run`) with sign-in and
//! publishing configured, against the real reference PDS and PLC on loopback, the user
//! signed in through the PDS's own OAuth pages.
//!
//! Two AppViews share the sandbox: **A** follows the PDS's firehose (so what it publishes
//! is confirmed by ingest), **B** ingests nothing (so what it shows right after a publish
//! can only be the optimistic insert, and only its reconciler can settle it).
//!
//! What this proves:
//! - a painting with a PNG thumbnail: the blob and the record are on the PDS, the painting
//!   is in B's feed at once (pending) and A's record is confirmed after the firehose;
//! - the same bytes are not uploaded twice (`deduplicated`), the same idempotency key
//!   gives the same record (one on the PDS), and a reused key with another record is
//!   refused;
//! - bad input: an oversize thumbnail (413 naming the limit), a wrong or lying media type
//!   (415), an invalid record (the field named), a profane mood (blocked, the field
//!   named), an unknown collection, no session (401), another origin (403), a scope
//!   not granted (403 naming it);
//! - a 40 MB tape: upload progress as Server-Sent Events, one blob and one record even
//!   when the client sends it twice;
//! - the PDS killed during a publish: retried until it is back, one record;
//! - delete; the reconciler confirms a record the firehose never brought and removes one
//!   the PDS no longer has;
//! - the per-viewer queries accept the signed-in session (from the AppView's own origin),
//!   and the author gets a "visible" notification once the firehose confirms a publish.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use atelier_appview::ingest::IngestConfig;
use atelier_appview::publish::PublishConfig;
use atelier_appview::relay::sync::ssrf::StaticDns;
use atelier_appview::safety::Policy;
use atelier_appview::service::{self, AppViewConfig, OAuthServiceConfig};
use atelier_appview::store::StoreLocation;
use atelier_sandbox::oauth::{Jar, sign_in_through_appview};
use atelier_sandbox::{Account, Sandbox};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

/// Everything but KidLisp: the scope test needs one collection left out.
const SCOPE: &str = "atproto repo:computer.aesthetic.painting repo:computer.aesthetic.mood \
                     repo:computer.aesthetic.tape blob:image/* blob:video/*";
const WHEN: &str = "2026-12-06T12:00:00.000Z";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";
/// A 1×1 PNG.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\
\0\0\0\rIDATx\xdac\xfc\xcf\xc0\xf0\x1f\0\x05\0\x02\x01\xff\xa7\xf5\xda\0\0\0\0IEND\xaeB`\x82";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_through_the_appview_against_the_pds() {
    tokio::time::timeout(Duration::from_secs(300), run())
        .await
        .expect("the publishing scenario finishes within 5 minutes");
}

/// One AppView under test.
struct AppView {
    base: String,
    jar: Jar,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::error::AppViewError>>,
}

impl AppView {
    async fn start(
        sandbox: &Sandbox,
        account: &Account,
        dir: &Path,
        ingest: bool,
        confirm_after: Duration,
    ) -> AppView {
        let key_file = dir.join("oauth_token_key");
        std::fs::write(&key_file, "5a".repeat(32)).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let dns = StaticDns::new()
            .with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST))
            .with_txt(
                &format!("_atproto.{}", account.handle),
                &format!("did={}", account.did),
            );
        let mut oauth =
            OAuthServiceConfig::new(&base, SCOPE, dir.join("sessions.sqlite"), "k1", key_file);
        oauth.plc_url = sandbox.plc_url().to_owned();
        oauth.allow_loopback = true;
        oauth.dns = Some(Arc::new(dns));
        let ingest = ingest.then(|| {
            let mut config = IngestConfig::new(sandbox.subscribe_repos_url(None));
            config.plc_url = sandbox.plc_url().to_owned();
            config.allow_loopback = true;
            config.batch_wait = Duration::from_millis(20);
            config
        });
        let mut config =
            AppViewConfig::new(StoreLocation::Sqlite(dir.join("index.sqlite")), ingest);
        config.oauth = Some(oauth);
        config.publish = Some(PublishConfig {
            text_policy: Policy::Block,
            retry_for: Duration::from_secs(60),
            confirm_after,
            ..PublishConfig::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let jar = sign_in_through_appview(&base, &account.handle, &account.password, &account.did)
            .await
            .expect("sign-in through the AppView");
        AppView {
            base,
            jar,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            stop: Some(stop),
            task,
        }
    }

    /// A POST to `path` with the session cookie and the AppView's own origin.
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.jar.header())
            .header("origin", &self.base)
    }

    async fn blob(&self, bytes: Vec<u8>, mime: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.post("/publish/blob").header("content-type", mime);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        answer(request.body(bytes).send().await.unwrap()).await
    }

    async fn record(&self, collection: &str, record: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self.post("/publish/record");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request
            .json(&json!({"collection": collection, "record": record}))
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.jar.header())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn status(&self, uri: &str) -> String {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/publish/status", self.base),
            [("uri", uri)],
        )
        .unwrap();
        let out: Value = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out["status"].as_str().unwrap_or_default().to_owned()
    }

    /// The URIs on the first page of the Atmosphere feed.
    async fn feed(&self) -> Vec<String> {
        let out = self
            .get("/xrpc/computer.aesthetic.feed.getAtmosphere?limit=100")
            .await;
        out["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["uri"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().expect("the AppView stops cleanly");
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})),
    )
}

/// Waits (at most 30 s) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

fn painting(thumbnail: &Value, code: &str) -> Value {
    json!({
        "slug": format!("2026.12.06.12.00.00.{code}"),
        "code": code,
        "imageUrl": format!("https://aesthetic.computer/media/paintings/{code}.png"),
        "when": WHEN,
        "ref": REF,
        "thumbnail": thumbnail,
    })
}

fn mood(text: &str) -> Value {
    json!({"mood": text, "when": WHEN, "ref": REF})
}

/// An MP4 of `size` bytes: an `ftyp` box, then filler.
fn mp4(size: usize) -> Vec<u8> {
    let mut bytes = b"\0\0\0\x18ftypisom\0\0\x02\0isommp41".to_vec();
    bytes.resize(size, 0x2a);
    bytes
}

async fn run() {
    let mut sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let account = sandbox.create_account("erin").await.expect("account");
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = AppView::start(
        &sandbox,
        &account,
        dir_a.path(),
        true,
        Duration::from_secs(120),
    )
    .await;
    let b = AppView::start(
        &sandbox,
        &account,
        dir_b.path(),
        false,
        Duration::from_secs(1),
    )
    .await;

    let session = a.get("/publish/session").await;
    assert_eq!(session["did"], account.did.as_str());
    assert_eq!(session["handle"], account.handle.as_str(), "{session}");
    assert!(
        session["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("repo:computer.aesthetic.painting"))
    );

    // The per-viewer queries take the signed-in session too (same origin only).
    let unread = a
        .get("/xrpc/computer.aesthetic.notification.getUnreadCount")
        .await;
    assert_eq!(unread["count"], 0, "{unread}");
    let response = a
        .http
        .get(format!(
            "{}/xrpc/computer.aesthetic.notification.listNotifications",
            a.base
        ))
        .header("cookie", a.jar.header())
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // A thumbnail, uploaded twice: the second time from the deduplication log.
    let (status, first) = a.blob(PNG.to_vec(), "image/png", Some("thumb-1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["deduplicated"], false);
    let thumbnail = first["blob"].clone();
    assert_eq!(thumbnail["mimeType"], "image/png");
    assert_eq!(thumbnail["size"], PNG.len());
    let (status, again) = a.blob(PNG.to_vec(), "image/png", None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["deduplicated"], true);
    assert_eq!(again["blob"], thumbnail);
    let cid = thumbnail["ref"]["$link"].as_str().unwrap();

    // Bad uploads.
    let mut oversize = PNG.to_vec();
    oversize.resize((1 << 20) + 1, 0);
    let (status, body) = a.blob(oversize, "image/png", None).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "BlobTooLarge");
    assert_eq!(body["limit"], 1 << 20);
    assert!(
        body["message"].as_str().unwrap().contains("1048576"),
        "{body}"
    );
    let (status, body) = a
        .blob(b"GIF89a\x01\0\x01\0\0\0\0\0".to_vec(), "image/gif", None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("UnsupportedMediaType")),
        "{body}"
    );
    let (status, body) = a.blob(mp4(4096), "image/png", None).await;
    assert_eq!(status, 415, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("video/mp4"),
        "{body}"
    );
    let response = a
        .http
        .post(format!("{}/publish/blob", a.base))
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = answer(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("AuthRequired")),
        "{body}"
    );
    let response = a
        .http
        .post(format!("{}/publish/blob", a.base))
        .header("cookie", a.jar.header())
        .header("origin", "http://evil.example")
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // A painting through A: on the PDS, in A's feed at once, confirmed by the firehose.
    let record = painting(&thumbnail, "ab12");
    let (status, published) = a
        .record(
            "computer.aesthetic.painting",
            record.clone(),
            Some("paint-1"),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    let uri = published["uri"].as_str().unwrap().to_owned();
    assert!(a.feed().await.contains(&uri), "visible at once");
    eventually("the firehose confirms the painting", || async {
        a.status(&uri).await == "confirmed"
    })
    .await;
    // The author hears that it is visible from the network.
    let notes = a
        .get("/xrpc/computer.aesthetic.notification.listNotifications")
        .await;
    assert!(
        notes["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["reason"] == "visible" && n["uri"] == uri.as_str()),
        "{notes}"
    );
    let rkey = uri.rsplit('/').next().unwrap();
    let stored = account
        .get_record("computer.aesthetic.painting", rkey)
        .await
        .expect("the record is on the PDS");
    assert_eq!(stored["cid"], published["cid"]);
    assert_eq!(stored["value"]["thumbnail"]["ref"]["$link"], cid);
    // The PDS serves a blob once a record refers to it.
    assert_eq!(
        account.get_blob(cid).await.expect("the blob is on the PDS"),
        PNG
    );
    // The same key again: the same answer, still one painting.
    let (status, retried) = a
        .record(
            "computer.aesthetic.painting",
            record.clone(),
            Some("paint-1"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(retried["uri"], published["uri"]);
    let paintings = account
        .list_records("computer.aesthetic.painting")
        .await
        .unwrap();
    assert_eq!(paintings.len(), 1);
    // The same key with another record: refused.
    let (status, body) = a
        .record(
            "computer.aesthetic.painting",
            painting(&thumbnail, "cd34"),
            Some("paint-1"),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("IdempotencyKeyReused"))
    );

    // The account page lists it; a sign-in link can fill the handle in.
    let page = a
        .http
        .get(format!("{}/account", a.base))
        .header("cookie", a.jar.header())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("painting: <code>{uri}</code>")),
        "{page}"
    );
    let page = a
        .http
        .get(format!("{}/login?handle={}", a.base, account.handle))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("value=\"{}\"", account.handle)),
        "{page}"
    );

    // Bad records.
    let (status, body) = a
        .record(
            "computer.aesthetic.mood",
            json!({"mood": "hello", "ref": REF}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("InvalidRecord")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("when"), "{body}");
    let (status, body) = a
        .record(
            "computer.aesthetic.painting",
            json!({"slug": "x", "code": "ab12", "imageUrl": "not a uri", "when": WHEN, "ref": REF}),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "$.imageUrl", "{body}");
    let (status, body) = a
        .record("computer.aesthetic.mood", mood("what the f u c k"), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("TextBlocked")),
        "{body}"
    );
    assert_eq!(body["field"], "$.mood");
    let (status, body) = a
        .record("app.bsky.feed.post", json!({"text": "hi"}), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("UnknownCollection"))
    );
    let (status, body) = a
        .record(
            "computer.aesthetic.kidlisp",
            json!({"source": "(wipe blue)", "code": "k1", "when": WHEN, "ref": REF}),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ScopeMissing")),
        "{body}"
    );
    assert!(
        body["scope"]
            .as_str()
            .unwrap()
            .starts_with("repo:computer.aesthetic.kidlisp"),
        "{body}"
    );

    // A 40 MB tape: progress as Server-Sent Events, sent twice, landing once.
    let events = {
        let response = a
            .http
            .get(format!("{}/publish/progress/tape-1", a.base))
            .header("cookie", a.jar.header())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::spawn(async move {
            let mut events = Vec::new();
            let mut text = String::new();
            let mut body = response.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let block: String = text.drain(..end + 2).collect();
                    let name = block
                        .lines()
                        .find_map(|l| l.strip_prefix("event: "))
                        .unwrap_or_default()
                        .to_owned();
                    let data = block
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .unwrap_or("null")
                        .to_owned();
                    let done = name == "done" || name == "failed";
                    events.push((name, serde_json::from_str::<Value>(&data).unwrap()));
                    if done {
                        return events;
                    }
                }
            }
            events
        })
    };
    let tape = mp4(40 * 1024 * 1024);
    let (status, uploaded) = a.blob(tape.clone(), "video/mp4", Some("tape-1")).await;
    assert_eq!(status, 200, "{uploaded}");
    let events = tokio::time::timeout(Duration::from_secs(30), events)
        .await
        .expect("the progress stream ends")
        .unwrap();
    let uploading: Vec<&Value> = events
        .iter()
        .filter(|(name, data)| name == "progress" && data["phase"] == "uploading")
        .map(|(_, data)| data)
        .collect();
    assert!(!uploading.is_empty(), "{events:?}");
    assert!(
        uploading.iter().all(|d| d["total"] == tape.len()),
        "{uploading:?}"
    );
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(done["blob"], uploaded["blob"]);
    let (status, again) = a.blob(tape, "video/mp4", Some("tape-2")).await;
    assert_eq!(status, 200);
    assert_eq!(again["deduplicated"], true);
    let tape_record = json!({
        "slug": "2026.12.06.tape", "code": "t1", "when": WHEN, "video": uploaded["blob"],
    });
    let (status, first) = a
        .record(
            "computer.aesthetic.tape",
            tape_record.clone(),
            Some("tape-rec"),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = a
        .record("computer.aesthetic.tape", tape_record, Some("tape-rec"))
        .await;
    assert_eq!(first["uri"], second["uri"]);
    assert_eq!(
        account
            .list_records("computer.aesthetic.tape")
            .await
            .unwrap()
            .len(),
        1
    );

    // The PDS killed during a publish: retried until it is back, written once.
    let pds_pid = sandbox.services()[1].1;
    assert_eq!(sandbox.services()[1].0, "pds");
    // SAFETY-free: kill(2) through the shell's `kill`, the harness restarts it.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pds_pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let publish = {
        let (http, base, cookie) = (a.http.clone(), a.base.clone(), a.jar.header());
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/publish/record"))
                .header("cookie", cookie)
                .header("origin", &base)
                .header("idempotency-key", "mood-down")
                .json(
                    &json!({"collection": "computer.aesthetic.mood", "record": mood("back again")}),
                )
                .send()
                .await
                .unwrap();
            answer(response).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!publish.is_finished(), "the publish waits for the PDS");
    let mut restarted = false;
    for _ in 0..120 {
        if sandbox
            .supervise()
            .await
            .expect("supervise")
            .contains(&"pds")
        {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(restarted, "the harness restarted the PDS");
    let (status, body) = publish.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let moods = account
        .list_records("computer.aesthetic.mood")
        .await
        .unwrap();
    assert_eq!(moods.len(), 1, "one mood, however many attempts");
    let metrics = a
        .http
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("atelier_appview_publish_total{kind=\"record\",outcome=\"ok\"}"),
        "{metrics}"
    );
    let retries: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atelier_appview_publish_retries_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(retries >= 1, "{metrics}");

    // A blob the deduplication log remembers but the PDS dropped (an upload no record
    // referred to in time): the record is refused with BlobNotFound, the log forgets the
    // blob, and the same bytes uploaded again really go to the PDS.
    let mut dropped = PNG.to_vec();
    dropped.extend_from_slice(b"dropped by the PDS");
    {
        use sha2::Digest as _;
        let sha: String = sha2::Sha256::digest(&dropped)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let cid = atelier_appview::relay::lexicons::data::cid_for_raw(&dropped).to_string();
        let pool = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            dir_a.path().join("sessions.sqlite").display()
        ))
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO publish_blob (did, sha256, cid, mime, size, created_at) \
             VALUES (?, ?, ?, 'image/png', ?, 0)",
        )
        .bind(&account.did)
        .bind(&sha)
        .bind(&cid)
        .bind(i64::try_from(dropped.len()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let (status, stale) = a.blob(dropped.clone(), "image/png", None).await;
    assert_eq!((status, &stale["deduplicated"]), (200, &json!(true)));
    let (status, refused) = a
        .record(
            "computer.aesthetic.painting",
            painting(&stale["blob"], "gone"),
            None,
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("BlobNotFound")),
        "{refused}"
    );
    let (status, fresh) = a.blob(dropped, "image/png", None).await;
    assert_eq!(
        (status, &fresh["deduplicated"]),
        (200, &json!(false)),
        "{fresh}"
    );
    let (status, again) = a
        .record(
            "computer.aesthetic.painting",
            painting(&fresh["blob"], "back"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{again}");

    // Delete: gone from the PDS and from the index.
    let mood_uri = body["uri"].as_str().unwrap().to_owned();
    let response = a
        .post("/publish/delete")
        .json(&json!({"uri": mood_uri}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(a.status(&mood_uri).await, "missing");
    assert!(
        account
            .list_records("computer.aesthetic.mood")
            .await
            .unwrap()
            .is_empty()
    );

    // B follows nothing: a publish shows at once (the optimistic insert), pending until
    // the reconciler asks the PDS; one deleted behind its back is removed.
    let (status, kept) = b
        .record("computer.aesthetic.mood", mood("kept"), None)
        .await;
    assert_eq!(status, 200, "{kept}");
    let kept = kept["uri"].as_str().unwrap().to_owned();
    let (_, gone) = b
        .record("computer.aesthetic.mood", mood("gone"), None)
        .await;
    let gone = gone["uri"].as_str().unwrap().to_owned();
    let feed = b.feed().await;
    assert!(feed.contains(&kept) && feed.contains(&gone), "{feed:?}");
    assert_eq!(b.status(&kept).await, "pending");
    account
        .delete_record("computer.aesthetic.mood", gone.rsplit('/').next().unwrap())
        .await
        .unwrap();
    eventually("the reconciler settles both", || async {
        b.status(&kept).await == "confirmed" && b.status(&gone).await == "missing"
    })
    .await;
    assert!(!b.feed().await.contains(&gone));

    a.stop().await;
    b.stop().await;
    sandbox.shutdown().await;
}
