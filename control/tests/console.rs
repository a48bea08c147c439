//! The console service end to end, as `atelier up` runs it, against the real harness PLC and
//! PDS and a real AppView:
//!
//! 1. `console::up::start` makes the labeler's identity (`labeler.test` on the PDS, its DID
//!    document naming the `#atproto_label` key and the console as `#atproto_labeler`, the
//!    declaration record in its repository) and serves the console;
//! 2. a user reports a mood with `com.atproto.moderation.createReport`, authenticated by a
//!    service token from their own PDS, sent to the console as the PDS proxy would; the
//!    safety filter, reading the PDS's stream, flags another mood by itself (masked quote);
//! 3. a moderator signs in, finds the report in the unreviewed queue, opens the subject
//!    (the mood's text fetched from its author's PDS), and takes it down with the bulk
//!    form; a triage user's takedown is refused (403) and leaves no trace;
//! 4. the `!takedown` label is served by `queryLabels`, and the AppView, following the
//!    labeler by its DID, stops serving the mood;
//! 5. the audit log lists the takedown, and its CSV export has it;
//! 6. a second start changes nothing in the identity (idempotent).

use std::net::SocketAddr;
use std::time::Duration;

use atelier_appview::ingest::IngestConfig;
use atelier_appview::labels::LabelSource;
use atelier_appview::service::AppViewConfig;
use atelier_appview::store::StoreLocation;
use atelier_control::console::up::{ConsoleUp, RunningConsole, probe, start};
use atelier_control::moderation::autoflag::AutoflagConfig;
use atelier_sandbox::Sandbox;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;

use support::agent::Agent;

const MOOD: &str = "computer.aesthetic.mood";
const WAIT: Duration = Duration::from_secs(30);

fn setup(dir: &std::path::Path, sandbox: &Sandbox, appview: &str) -> ConsoleUp {
    let admin = support::loopback_admin(dir);
    ConsoleUp {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin,
        autoflag: Some(AutoflagConfig {
            source: sandbox.subscribe_repos_url(None),
            trusted: false,
            plc_url: sandbox.plc_url().to_owned(),
            allow_loopback: true,
        }),
        services: vec![
            probe("pds", sandbox.pds_url(), "/xrpc/_health"),
            probe("appview", appview, "/xrpc/_health"),
        ],
    }
}

async fn stop(console: RunningConsole) {
    let _ = console.stop.send(());
    tokio::time::timeout(WAIT, console.task)
        .await
        .expect("the console stops in time")
        .expect("the console task")
        .expect("the console ran without error");
}

/// Polls `check` until it holds, or fails with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The console's page of the subject `uri`.
fn subject_path(uri: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("uri", uri)
        .finish();
    format!("/subject?{query}")
}

async fn feed_uris(http: &reqwest::Client, appview: &str) -> Vec<String> {
    let url = format!("{appview}/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50");
    let Ok(response) = http.get(url).send().await else {
        return Vec::new();
    };
    let body: Value = response.json().await.unwrap_or(Value::Null);
    body["records"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["uri"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_review_takedown_and_the_appview_honours_it() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let appview = format!("http://{}", listener.local_addr().expect("addr"));
    let console = start(&setup(dir.path(), &sandbox, &appview), &sandbox)
        .await
        .expect("the console starts");
    let base = format!("http://{}", console.addr);
    let labeler = console.labeler_did.clone();

    // The labeler's identity and declaration.
    let doc: Value = http
        .get(format!("{}/{labeler}", sandbox.plc_url()))
        .send()
        .await
        .expect("PLC")
        .json()
        .await
        .expect("JSON");
    let endpoint = doc["service"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "#atproto_labeler"))
        .map(|s| s["serviceEndpoint"].clone());
    assert_eq!(endpoint, Some(Value::from(base.clone())), "{doc}");
    let declaration: Value = http
        .get(format!(
            "{}/xrpc/com.atproto.repo.getRecord?repo={labeler}&collection=app.bsky.labeler.service&rkey=self",
            sandbox.pds_url()
        ))
        .send()
        .await
        .expect("PDS")
        .json()
        .await
        .expect("JSON");
    assert!(
        declaration["value"]["policies"]["labelValues"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("!takedown"))),
        "{declaration}"
    );

    // The AppView follows the PDS and the labeler.
    let mut config = AppViewConfig::new(
        StoreLocation::Sqlite(dir.path().join("index.sqlite")),
        Some({
            let mut ingest = IngestConfig::new(sandbox.subscribe_repos_url(None));
            ingest.plc_url = sandbox.plc_url().to_owned();
            ingest.allow_loopback = true;
            ingest
        }),
    );
    config.labels.sources = vec![LabelSource {
        did: labeler.clone(),
        url: None,
    }];
    config.labels.plc_url = sandbox.plc_url().to_owned();
    config.labels.allow_loopback = true;
    let (appview_stop, appview_stopped) = tokio::sync::oneshot::channel::<()>();
    let appview_task = tokio::spawn(atelier_appview::service::run(
        config,
        listener,
        async move {
            let _ = appview_stopped.await;
        },
    ));

    // Alice posts a mood; Bob reports it through his PDS's service token.
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    let mood = alice
        .create_record(
            MOOD,
            &json!({"$type": MOOD, "mood": "a mean little mood", "when": "2026-12-06T12:00:00.000Z", "ref": "0123456789abcdef01234567"}),
        )
        .await
        .expect("mood");
    let rude = alice
        .create_record(
            MOOD,
            &json!({"$type": MOOD, "mood": "what the fuck", "when": "2026-12-06T12:01:00.000Z", "ref": "0123456789abcdef01234568"}),
        )
        .await
        .expect("rude mood");
    eventually("the AppView indexes the mood", || async {
        assert!(!appview_task.is_finished(), "the AppView stopped");
        feed_uris(&http, &appview).await.contains(&mood.uri)
    })
    .await;
    let token = bob
        .service_auth(
            &format!("{labeler}#atproto_labeler"),
            Some("com.atproto.moderation.createReport"),
        )
        .await
        .expect("service token");
    let report = http
        .post(format!("{base}/xrpc/com.atproto.moderation.createReport"))
        .bearer_auth(&token)
        .json(&json!({
            "reasonType": "com.atproto.moderation.defs#reasonRude",
            "reason": "unkind",
            "subject": {"$type": "com.atproto.repo.strongRef", "uri": mood.uri, "cid": mood.cid},
        }))
        .send()
        .await
        .expect("createReport");
    assert_eq!(report.status(), StatusCode::OK);

    // A moderator team: the admin and a triage user.
    let bootstrap = std::fs::read_to_string(dir.path().join("secrets/admin_bootstrap_password"))
        .expect("bootstrap password");
    let mut admin = Agent::new(&base);
    admin
        .admin_ready(bootstrap.trim(), "the admin's own password")
        .await;
    let queue = admin.get("/queue").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.body.contains(&mood.uri), "{}", queue.body);
    assert!(queue.body.contains("rude"), "{}", queue.body);
    // The safety filter flagged the other mood by itself, quoting it masked.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !admin.get("/queue").await.body.contains(&rude.uri) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the auto-flag reaches the queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flagged = admin.get(&subject_path(&rude.uri)).await;
    assert!(
        flagged.body.contains("safety filter, mood: what the ____"),
        "{}",
        flagged.body
    );
    assert!(flagged.body.contains("(autoflag)"), "{}", flagged.body);

    let subject = admin.get(&subject_path(&mood.uri)).await;
    assert_eq!(subject.status, StatusCode::OK, "{}", subject.body);
    assert!(
        subject.body.contains("a mean little mood"),
        "the record comes from the author's PDS: {}",
        subject.body
    );
    assert!(subject.body.contains(&bob.did), "the reporter is listed");

    // A triage user may not take it down.
    let first = admin.add_user("tess", "triage").await;
    let mut tess = Agent::new(&base);
    tess.sign_in("tess", &first).await;
    tess.change_password(&first, "tess's own password").await;
    let page = tess.get("/queue").await;
    assert!(
        !page.body.contains("value=\"takedown\""),
        "the menu offers triage no takedown"
    );
    let refused = tess
        .post(
            "/queue/act",
            &[
                ("csrf", &page.csrf()),
                ("subject", &mood.uri),
                ("action", "takedown"),
                ("note", "no"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // The admin takes it down from the queue's bulk form.
    let csrf = admin.get("/queue").await.csrf();
    let done = admin
        .post(
            "/queue/act",
            &[
                ("csrf", &csrf),
                ("back", "state=unreviewed"),
                ("subject", &mood.uri),
                ("action", "takedown"),
                ("value", ""),
                ("note", "rude to people"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body.contains("takedown on 1 subject."),
        "{}",
        done.body
    );
    assert!(
        !done
            .body
            .contains(&format!("data-subject=\"{}\"", mood.uri)),
        "resolved: out of the unreviewed queue"
    );

    let labels: Value = http
        .get(format!(
            "{base}/xrpc/com.atproto.label.queryLabels?uriPatterns={}",
            mood.uri
        ))
        .send()
        .await
        .expect("queryLabels")
        .json()
        .await
        .expect("JSON");
    assert_eq!(labels["labels"][0]["val"], "!takedown", "{labels}");
    assert_eq!(labels["labels"][0]["src"], labeler.as_str(), "{labels}");
    eventually("the AppView hides the taken-down mood", || async {
        !feed_uris(&http, &appview).await.contains(&mood.uri)
    })
    .await;

    // A moderator limited to `spam` may not apply another value.
    let users = admin.get("/users").await;
    let added = admin
        .post(
            "/users",
            &[
                ("csrf", &users.csrf()),
                ("name", "mo"),
                ("role", "moderator"),
                ("labels", "spam"),
            ],
        )
        .await;
    let first = support::agent::between(&added.body, "id=\"new-password\">", "<")
        .expect("one-time password")
        .to_owned();
    let mut mo = Agent::new(&base);
    mo.sign_in("mo", &first).await;
    mo.change_password(&first, "mo's own password").await;
    let csrf = mo.get("/queue").await.csrf();
    let limited = mo
        .post(
            "/queue/act",
            &[
                ("csrf", &csrf),
                ("subject", &rude.uri),
                ("action", "label"),
                ("value", "offensive-text"),
            ],
        )
        .await;
    assert_eq!(limited.status, StatusCode::FORBIDDEN, "{}", limited.body);
    assert!(limited.body.contains("offensive-text"), "{}", limited.body);

    // The dashboard: one decided, the queue sizes, the services, our labeler as a source.
    let dashboard = admin.get("/").await;
    assert!(dashboard.body.contains("(1 decided)"), "{}", dashboard.body);
    assert!(
        dashboard.body.contains("data-queue=\"resolved\">1<"),
        "{}",
        dashboard.body
    );
    assert!(
        dashboard.body.contains("data-queue=\"unreviewed\">1<"),
        "the auto-flag is still waiting: {}",
        dashboard.body
    );
    for service in ["pds", "appview"] {
        assert!(
            dashboard.body.contains(&format!(
                "data-service=\"{service}\"><td>{service}</td><td><span class=\"tag\">up</span>"
            )),
            "{service} up: {}",
            dashboard.body
        );
    }
    assert!(dashboard.body.contains(&labeler), "{}", dashboard.body);
    // The panels read from the real AppView's `/metrics`: sign-in is off here, and the
    // moods it indexed give publish-to-visibility figures.
    assert!(
        dashboard
            .body
            .contains("Sign-in is not enabled on the AppView."),
        "{}",
        dashboard.body
    );
    assert!(
        dashboard.body.contains("commits indexed: median "),
        "{}",
        dashboard.body
    );

    // The audit log: the takedown with its reason; tess's refusal left nothing.
    let audit = admin.get("/audit").await;
    assert!(audit.body.contains("takedown"), "{}", audit.body);
    assert!(audit.body.contains("rude to people"), "{}", audit.body);
    assert!(!audit.body.contains("tess"), "{}", audit.body);
    let csv = admin.get("/audit/export?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/csv")),
        "{:?}",
        csv.headers
    );
    assert!(
        csv.body
            .lines()
            .any(|l| l.contains("takedown") && l.contains(&mood.uri)),
        "{}",
        csv.body
    );

    // A second start over the same data: same labeler, nothing to change.
    stop(console).await;
    let again = start(&setup(dir.path(), &sandbox, &appview), &sandbox)
        .await
        .expect("the console starts again");
    assert_eq!(again.labeler_did, labeler);
    assert_eq!(
        atelier_control::console::up::recorded_labeler(dir.path()).as_deref(),
        Some(labeler.as_str()),
        "recorded for `atelier admin serve`"
    );
    stop(again).await;

    let _ = appview_stop.send(());
    let _ = tokio::time::timeout(WAIT, appview_task).await;
    sandbox.shutdown().await;
}
