//! Reports from the AppView's signed-in users reach the admin console's queue, end to end:
//! the real PLC and reference PDS (the sandbox), the console with its labeler identity as
//! `atelier up` makes it (`console::up::start`), and the AppView with sign-in and reports
//! configured, following the PDS so it indexes the reported record.
//!
//! The browser is played by plain HTTP requests with cookies carried by hand (as in the
//! AppView's `signin_pds.rs`): `/login`, the PDS's sign-in page, the callback, then
//! `POST /report`.
//!
//! What this proves:
//! - a signed-in user's report of an account and of an indexed record reaches the console
//!   with a service token the user's PDS minted through the OAuth session
//!   (`getServiceAuth`, `aud` = `<labeler>#atproto_labeler`, `lxm` = `createReport`); the
//!   console answers the lexicon's output naming the user as the reporter, and the record
//!   is reported with the CID the AppView indexed;
//! - both reports are in the console's moderation store, in the unreviewed queue, with the
//!   user's DID as reporter;
//! - no session cookie is 401 `AuthRequired`; an unknown reason type is 400
//!   `InvalidRequest` naming `reasonType`; a record the index does not hold is 404
//!   `NotFound`; another origin is 403; a form body is 415;
//! - a session without the report scope is 403 `ScopeMissing` naming the scope to ask for.

use std::net::SocketAddr;
use std::time::Duration;

use atelier_appview::ingest::IngestConfig;
use atelier_appview::service::{self, AppViewConfig, ReportsConfig};
use atelier_appview::store::StoreLocation;
use atelier_control::console::up::{ConsoleUp, start};
use atelier_control::moderation::{ModerationStore, QueueQuery, QueueState};
use atelier_sandbox::oauth::Jar;
use atelier_sandbox::{Account, Sandbox};
use serde_json::{Value, json};

mod support;

const MOOD: &str = "computer.aesthetic.mood";
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appview_users_report_to_the_console() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("the report scenario finishes within a minute");
}

/// An AppView with sign-in asking for `scope` and reports to `reports`, following the
/// sandbox's PDS; its base URL, the stop sender and its task.
struct AppView {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::AppViewError>>,
}

async fn start_appview(
    dir: &std::path::Path,
    sandbox: &Sandbox,
    reporter: &Account,
    scope: &str,
    reports: ReportsConfig,
) -> AppView {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let oauth = support::loopback_oauth(dir, &base, scope, sandbox, &[reporter]);
    // From the start of the PDS's stream (the URL's cursor): records written before
    // ingest connects count.
    let mut ingest = IngestConfig::new(sandbox.subscribe_repos_url(Some(0)));
    ingest.plc_url = sandbox.plc_url().to_owned();
    ingest.allow_loopback = true;
    let mut config = AppViewConfig::new(
        StoreLocation::Sqlite(dir.join("index.sqlite")),
        Some(ingest),
    );
    config.oauth = Some(oauth);
    config.reports = Some(reports);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    AppView { base, stop, task }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs `account` in to the AppView at `base` through the PDS's page; the cookie jar
/// holding `atelier_session`.
async fn sign_in(http: &reqwest::Client, base: &str, account: &Account) -> Jar {
    let mut jar = Jar::default();
    let response = http.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    jar.absorb(&response);
    let csrf = jar.get("atelier_csrf").expect("a CSRF cookie").to_owned();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("handle", &account.handle)
        .append_pair("csrf", &csrf)
        .finish();
    let response = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", base)
        .header("cookie", jar.header())
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let redirect = atelier_sandbox::oauth::sign_in_at_authorize_page(
        &location(&response),
        &account.handle,
        &account.password,
        &account.did,
    )
    .await
    .expect("sign-in at the PDS");
    let response = http
        .get(&redirect)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "the callback signs in");
    jar.absorb(&response);
    assert!(jar.get("atelier_session").is_some(), "a session cookie");
    jar
}

/// `POST /report` with `body`, the cookies in `jar` (if any) and `origin` (if any); the
/// status and JSON answer.
async fn report(
    http: &reqwest::Client,
    base: &str,
    jar: Option<&Jar>,
    origin: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = http
        .post(format!("{base}/report"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(jar) = jar {
        request = request.header("cookie", jar.header());
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Whether the AppView serves `uri` (it has indexed the record).
async fn indexed(http: &reqwest::Client, base: &str, uri: &str) -> bool {
    let url = format!("{base}/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50");
    let Ok(response) = http.get(url).send().await else {
        return false;
    };
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["records"]
        .as_array()
        .is_some_and(|records| records.iter().any(|r| r["uri"] == uri))
}

fn now_us() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_micros()).unwrap()
}

async fn run() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let dir = tempfile::tempdir().unwrap();
    let admin = support::loopback_admin(dir.path());
    let setup = ConsoleUp {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin,
        autoflag: None,
        services: Vec::new(),
    };
    let console = start(&setup, &sandbox).await.expect("the console starts");
    let labeler = console.labeler_did.clone();
    let reports = ReportsConfig {
        labeler_did: labeler.clone(),
        labeler_url: format!("http://{}", console.addr),
    };

    let alice = sandbox.create_account("alice").await.expect("alice");
    let carol = sandbox.create_account("carol").await.expect("carol");
    let scope = format!("atproto {}", reports.required_scope());
    let appview_dir = dir.path().join("appview");
    std::fs::create_dir_all(&appview_dir).unwrap();
    // Written before the AppView starts, so it is in the stream's history (cursor 0).
    let mood = alice
        .create_record(
            MOOD,
            &json!({"$type": MOOD, "mood": "a mean little mood", "when": "2026-12-06T12:00:00.000Z", "ref": "0123456789abcdef01234567"}),
        )
        .await
        .expect("mood");
    let appview = start_appview(&appview_dir, &sandbox, &carol, &scope, reports.clone()).await;
    let base = appview.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(WAIT)
        .build()
        .unwrap();

    let jar = sign_in(&http, &base, &carol).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !indexed(&http, &base, &mood.uri).await {
        assert!(!appview.task.is_finished(), "the AppView stopped");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the AppView indexes the mood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Refusals, before anything is sent.
    let account_report = json!({"subject": alice.did, "reasonType": "spam"});
    let (status, body) = report(&http, &base, None, None, &account_report).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("AuthRequired"))
    );
    let bad = json!({"subject": alice.did, "reasonType": "nasty"});
    let (status, body) = report(&http, &base, Some(&jar), None, &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "InvalidRequest");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("reasonType")),
        "{body}"
    );
    let missing = json!({
        "subject": format!("at://{}/{MOOD}/3kzzzzzzzzzzz", alice.did),
        "reasonType": "rude",
    });
    let (status, body) = report(&http, &base, Some(&jar), None, &missing).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("NotFound")));
    let (status, _) = report(
        &http,
        &base,
        Some(&jar),
        Some("http://evil.example"),
        &account_report,
    )
    .await;
    assert_eq!(status, 403);
    let form = http
        .post(format!("{base}/report"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", jar.header())
        .body("subject=did:plc:x&reasonType=spam")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);

    // The account, then the record, from the AppView's own page (its origin).
    let (status, body) = report(&http, &base, Some(&jar), Some(&base), &account_report).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reportedBy"], carol.did.as_str(), "{body}");
    assert_eq!(body["subject"]["did"], alice.did.as_str(), "{body}");
    assert_eq!(body["reasonType"], "com.atproto.moderation.defs#reasonSpam");
    let record_report = json!({
        "subject": mood.uri,
        "reasonType": "com.atproto.moderation.defs#reasonRude",
        "reason": "unkind",
    });
    let (status, body) = report(&http, &base, Some(&jar), None, &record_report).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"]["uri"], mood.uri.as_str(), "{body}");
    assert_eq!(body["subject"]["cid"], mood.cid.as_str(), "{body}");
    assert_eq!(body["reportedBy"], carol.did.as_str(), "{body}");

    // A session without the report scope: the PDS refuses, naming the scope.
    let _ = appview.stop.send(());
    tokio::time::timeout(WAIT, appview.task)
        .await
        .expect("the AppView stops")
        .expect("the AppView task")
        .expect("the AppView ran without error");
    let narrow_dir = dir.path().join("appview-narrow");
    std::fs::create_dir_all(&narrow_dir).unwrap();
    let narrow = start_appview(
        &narrow_dir,
        &sandbox,
        &carol,
        "atproto repo:computer.aesthetic.mood",
        reports.clone(),
    )
    .await;
    let narrow_jar = sign_in(&http, &narrow.base, &carol).await;
    let (status, body) = report(
        &http,
        &narrow.base,
        Some(&narrow_jar),
        None,
        &account_report,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "ScopeMissing", "{body}");
    assert_eq!(body["scope"], reports.required_scope().as_str(), "{body}");
    let _ = narrow.stop.send(());
    let _ = tokio::time::timeout(WAIT, narrow.task).await;

    // Both reports are in the console's unreviewed queue, credited to Carol.
    let _ = console.stop.send(());
    tokio::time::timeout(WAIT, console.task)
        .await
        .expect("the console stops")
        .expect("the console task")
        .expect("the console ran without error");
    let store = ModerationStore::open_in(dir.path()).await.unwrap();
    let page = store
        .queue(&QueueQuery::new(QueueState::Unreviewed), now_us())
        .await
        .unwrap();
    let queued: Vec<&str> = page.subjects.iter().map(|s| s.subject.uri()).collect();
    for subject in [alice.did.as_str(), mood.uri.as_str()] {
        assert!(queued.contains(&subject), "{subject} in {queued:?}");
        let view = store.subject_view(subject).await.unwrap();
        let reporters: Vec<Option<&str>> = view
            .reports
            .iter()
            .flat_map(|g| &g.reports)
            .map(|r| r.source.reporter())
            .collect();
        assert_eq!(reporters, vec![Some(carol.did.as_str())], "{subject}");
    }
    store.close().await;
}
