//! Auto-flags on publishes, end to end: a profane mood published through the AppView's
//! publishing API (text policy `allow`) reaches the admin console's queue as an auto-flag.
//!
//! The real PLC and reference PDS (the sandbox), the console with its labeler identity and
//! its auto-flagger following the PDS's stream (as `atelier up` runs it), and the AppView
//! with sign-in and publishing. The AppView ingests nothing here: the publish lands on the
//! PDS, and the console's safety filter reads it from the PDS's stream.

use std::net::SocketAddr;
use std::time::Duration;

use atelier_appview::publish::PublishConfig;
use atelier_appview::safety::Policy;
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::StoreLocation;
use atelier_control::console::up::{ConsoleUp, start};
use atelier_control::moderation::ModerationStore;
use atelier_control::moderation::autoflag::AutoflagConfig;
use atelier_sandbox::Sandbox;
use atelier_sandbox::oauth::sign_in_through_appview;
use serde_json::{Value, json};

mod support;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profane_publish_is_auto_flagged() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the scenario finishes within 2 minutes");
}

async fn run() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let dir = tempfile::tempdir().unwrap();
    let admin = support::loopback_admin(dir.path());
    let setup = ConsoleUp {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin,
        autoflag: Some(AutoflagConfig {
            source: sandbox.subscribe_repos_url(None),
            trusted: false,
            plc_url: sandbox.plc_url().to_owned(),
            allow_loopback: true,
        }),
        services: Vec::new(),
    };
    let console = start(&setup, &sandbox).await.expect("the console starts");
    let dana = sandbox.create_account("dana").await.expect("dana");

    let appview_dir = dir.path().join("appview");
    std::fs::create_dir_all(&appview_dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let oauth = support::loopback_oauth(
        &appview_dir,
        &base,
        "atproto repo:computer.aesthetic.mood",
        &sandbox,
        &[&dana],
    );
    let mut config = AppViewConfig::new(
        StoreLocation::Sqlite(appview_dir.join("index.sqlite")),
        None,
    );
    config.oauth = Some(oauth);
    config.publish = Some(PublishConfig {
        text_policy: Policy::Allow,
        ..PublishConfig::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let appview = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let jar = sign_in_through_appview(&base, &dana.handle, &dana.password, &dana.did)
        .await
        .expect("sign-in through the AppView");

    let http = reqwest::Client::builder().timeout(WAIT).build().unwrap();
    let response = http
        .post(format!("{base}/publish/record"))
        .header("cookie", jar.header())
        .header("origin", &base)
        .json(&json!({"collection": "computer.aesthetic.mood", "record": {
            "mood": "what the fuck is this", "when": "2026-12-06T12:00:00.000Z",
            "ref": "0123456789abcdef01234567",
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the policy `allow` publishes it");
    let published: Value = response.json().await.unwrap();
    let uri = published["uri"].as_str().unwrap().to_owned();
    assert_eq!(published["masked"], json!([]), "{published}");

    // The auto-flag: a report with no reporter, quoting the text masked.
    let deadline = tokio::time::Instant::now() + WAIT;
    let quote = loop {
        let store = ModerationStore::open_in(dir.path()).await.unwrap();
        let view = store.subject_view(&uri).await;
        store.close().await;
        let quote = view.ok().and_then(|v| {
            v.reports
                .iter()
                .flat_map(|g| &g.reports)
                .find(|r| r.source.reporter().is_none())
                .map(|r| format!("{r:?}"))
        });
        if let Some(quote) = quote {
            break quote;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the published mood is auto-flagged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(quote.contains("what the ____ is this"), "{quote}");

    let _ = stop.send(());
    appview.await.unwrap().expect("the AppView stops cleanly");
    let _ = console.stop.send(());
    let _ = tokio::time::timeout(WAIT, console.task).await;
    sandbox.shutdown().await;
}
