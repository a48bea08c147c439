//! The moderation flow in a real headless Chromium, against the real harness PLC and PDS
//! and the console as `atelier up` runs it:
//!
//! 1. `console::up::start` makes the labeler's identity on the sandbox and serves the
//!    console; two accounts post a mood each, and a third reports both with
//!    `com.atproto.moderation.createReport`, authenticated by a service token from its PDS;
//! 2. in Chromium, a wrong password is refused; the bootstrap admin signs in with the
//!    password from `DATA_DIR/secrets/admin_bootstrap_password`, chooses their own, opens
//!    **Queues**, ticks both reports, applies the label `spam` to them with the bulk form and
//!    sees the outcome; the **Audit log** lists two `label` entries; the subject page shows
//!    the mood's text and the label in force;
//! 3. over plain HTTP, with a signed-in session, the bulk form without its CSRF token (or
//!    with a forged one) is refused with 403 and changes nothing;
//! 4. `queryLabels` serves `spam` on both moods, from the labeler's DID.
//!
//! Each page is saved as a PNG (1100x800) in `target/tmp/console-browser/`; with
//! `ATELIER_BLESS_SCREENSHOTS=1` the set is also copied to `docs/screenshots/`, which
//! `docs/moderators.md` embeds. Chromium (`./install.sh --dev`) and the sandbox runtime are
//! required: without either the test fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atelier_control::console::up::{ConsoleUp, RunningConsole, probe, start};
use atelier_sandbox::Sandbox;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod support;

use support::agent::Agent;
use support::browser::Browser;

const MOOD: &str = "computer.aesthetic.mood";
/// The longest one step outside the browser may take (a request, a stop).
const WAIT: Duration = Duration::from_secs(30);
/// The longest the whole test may take: the sandbox's start (up to a minute on a loaded
/// machine) and a few dozen bounded steps.
const BUDGET: Duration = Duration::from_secs(300);
const ADMIN_PASSWORD: &str = "the admin's own password";
const NOTE: &str = "selling follower packs";
/// The screenshots' size, small enough to commit.
const VIEWPORT: (u32, u32) = (1100, 800);
/// Set to `1` to copy the screenshots to `docs/screenshots/`.
const BLESS: &str = "ATELIER_BLESS_SCREENSHOTS";

/// The workspace's root (the control crate's parent).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the control crate is in the workspace")
}

/// The console of `atelier up` over a fresh data directory: the `admin` bootstrap user
/// and plain-HTTP cookies; no auto-flags (only the reports of this test in the queue); the
/// dashboard shows the sandbox's PLC and PDS.
fn setup(dir: &Path, sandbox: &Sandbox) -> ConsoleUp {
    let admin = support::loopback_admin(dir);
    ConsoleUp {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin,
        autoflag: None,
        services: vec![
            probe("plc", sandbox.plc_url(), "/_health"),
            probe("pds", sandbox.pds_url(), "/xrpc/_health"),
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

/// The rows of the table `selector`, as the trimmed text of each cell.
async fn table(browser: &mut Browser, selector: &str) -> Vec<Vec<String>> {
    let script = format!(
        "Array.from(document.querySelectorAll({})).map(tr => \
         Array.from(tr.cells).map(td => td.textContent.trim()))",
        json!(format!("{selector} tbody tr"))
    );
    let rows = browser.eval(&script).await.unwrap_or_default();
    serde_json::from_value(rows).expect("rows of cells")
}

/// The labels `queryLabels` serves on `uri`.
async fn labels_on(http: &reqwest::Client, base: &str, uri: &str) -> Vec<Value> {
    let answer: Value = http
        .get(format!("{base}/xrpc/com.atproto.label.queryLabels"))
        .query(&[("uriPatterns", uri)])
        .timeout(WAIT)
        .send()
        .await
        .expect("queryLabels")
        .json()
        .await
        .expect("JSON");
    answer["labels"]
        .as_array()
        .unwrap_or_else(|| panic!("no labels array: {answer}"))
        .clone()
}

/// Copies the screenshots to `docs/screenshots/` when [`BLESS`] is `1`.
fn bless(shots: &[PathBuf]) {
    if std::env::var(BLESS).as_deref() != Ok("1") {
        return;
    }
    let docs = workspace().join("docs/screenshots");
    std::fs::create_dir_all(&docs).expect("docs/screenshots");
    for shot in shots {
        let name = shot.file_name().expect("a file name");
        std::fs::copy(shot, docs.join(name))
            .unwrap_or_else(|e| panic!("copying {}: {e}", shot.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moderator_labels_two_reports_in_bulk_in_a_real_browser() {
    tokio::time::timeout(BUDGET, moderate_in_a_browser())
        .await
        .expect("the whole flow finishes in time");
}

async fn moderate_in_a_browser() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let console = start(&setup(dir.path(), &sandbox), &sandbox)
        .await
        .expect("the console starts");
    let base = format!("http://{}", console.addr);
    let labeler = console.labeler_did.clone();

    // Two authors post a mood each; a third account reports both through its PDS's
    // service token.
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    let carol = sandbox.create_account("carol").await.expect("carol");
    let moods = [
        (
            &alice,
            "buy 10k followers at my site",
            "0123456789abcdef01234567",
        ),
        (&bob, "cheap followers, dm me", "0123456789abcdef01234568"),
    ];
    let mut records = Vec::new();
    for (author, text, reference) in moods {
        let record = json!({
            "$type": MOOD,
            "mood": text,
            "when": "2026-12-06T12:00:00.000Z",
            "ref": reference,
        });
        records.push(author.create_record(MOOD, &record).await.expect("mood"));
    }
    let token = carol
        .service_auth(
            &format!("{labeler}#atproto_labeler"),
            Some("com.atproto.moderation.createReport"),
        )
        .await
        .expect("service token");
    for record in &records {
        let report = http
            .post(format!("{base}/xrpc/com.atproto.moderation.createReport"))
            .bearer_auth(&token)
            .timeout(WAIT)
            .json(&json!({
                "reasonType": "com.atproto.moderation.defs#reasonSpam",
                "reason": "spam for followers",
                "subject": {
                    "$type": "com.atproto.repo.strongRef",
                    "uri": record.uri,
                    "cid": record.cid,
                },
            }))
            .send()
            .await
            .expect("createReport");
        assert_eq!(report.status(), StatusCode::OK);
    }
    let [first, second] = [&records[0].uri, &records[1].uri];

    let mut browser = Browser::launch(workspace().join("target/tmp/console-browser")).await;
    browser.set_viewport(VIEWPORT.0, VIEWPORT.1).await;
    let mut shots = Vec::new();

    // A wrong password is refused, the name kept.
    browser
        .sign_in(&base, "admin", "not the admin's password")
        .await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(browser.text("#error").await, "Wrong user name or password.");
    assert_eq!(
        browser.eval("document.querySelector('#name').value").await,
        Some(json!("admin"))
    );
    shots.push(browser.screenshot("wrong-password.png").await);

    // The bootstrap admin signs in with the secret file's password and chooses their own.
    let bootstrap = std::fs::read_to_string(dir.path().join("secrets/admin_bootstrap_password"))
        .expect("bootstrap password");
    browser.sign_in(&base, "admin", bootstrap.trim()).await;
    assert_eq!(browser.path().await, "/password");
    shots.push(browser.screenshot("choose-password.png").await);
    browser
        .change_password(bootstrap.trim(), ADMIN_PASSWORD)
        .await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("h1").await, "Dashboard");
    shots.push(browser.screenshot("dashboard.png").await);

    // Queues: both reports are waiting; the admin ticks them and applies a label.
    browser.click("header nav a[href='/queue']").await;
    assert_eq!(browser.text("h1").await, "Queues");
    let rows = table(&mut browser, "#queue").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for uri in [first, second] {
        let checkbox = format!("tr[data-subject={}] input[type=checkbox]", json!(uri));
        assert!(browser.tick(&checkbox).await, "{uri} is ticked");
    }
    let options = browser
        .eval(
            "Array.from(document.querySelectorAll('#bulk-action option')).map(o => o.textContent)",
        )
        .await;
    assert!(
        options
            .as_ref()
            .and_then(Value::as_array)
            .is_some_and(|o| o.contains(&json!("Apply label…"))),
        "{options:?}"
    );
    browser
        .fill(
            "#bulk",
            &[("action", "label"), ("value", "spam"), ("note", NOTE)],
        )
        .await;
    // The form is below the rows: bring both into the screenshot.
    browser
        .eval("document.querySelector('#bulk').scrollIntoView({ block: 'end' })")
        .await;
    shots.push(browser.screenshot("queue.png").await);
    browser.click("#bulk-submit").await;
    assert_eq!(browser.path().await, "/queue/act");
    assert_eq!(browser.text("#outcome").await, "label on 2 subjects.");
    assert_eq!(
        browser.text("#empty").await,
        "Nothing here.",
        "resolved: out of the unreviewed queue"
    );
    shots.push(browser.screenshot("bulk-outcome.png").await);

    // The audit log: one `label` entry per subject, by the admin, with the note.
    browser.click("header nav a[href='/audit']").await;
    assert_eq!(browser.text("h1").await, "Audit log");
    let entries = table(&mut browser, "#audit").await;
    let labelled: Vec<&str> = entries
        .iter()
        .filter(|e| e.get(3).is_some_and(|what| what == "label"))
        .inspect(|e| {
            assert_eq!(e[2], "admin", "{e:?}");
            assert_eq!(e[6], NOTE, "{e:?}");
            assert!(e[7].contains("spam"), "the value is in the details: {e:?}");
        })
        .map(|e| e[5].as_str())
        .collect();
    assert_eq!(labelled.len(), 2, "{entries:?}");
    assert!(
        labelled.contains(&first.as_str()) && labelled.contains(&second.as_str()),
        "{entries:?}"
    );
    shots.push(browser.screenshot("audit.png").await);

    // One subject, from the resolved queue: the mood as its author's PDS has it.
    browser.goto(&format!("{base}/queue")).await;
    browser
        .click("#queue-states a[href='/queue?state=resolved']")
        .await;
    browser
        .click(&format!("tr[data-subject={}] a", json!(first)))
        .await;
    assert_eq!(browser.path().await, "/subject");
    assert_eq!(browser.text("#text").await, moods[0].1);
    assert_eq!(browser.text("#state").await, "resolved");
    assert!(browser.text("#subject").await.contains("spam"));
    let history = table(&mut browser, "#history").await;
    assert!(
        history.iter().any(|e| e.contains(&"label".to_owned())),
        "{history:?}"
    );
    shots.push(browser.screenshot("subject.png").await);

    // Over plain HTTP, a signed-in session's bulk form without its token, or with a forged
    // one, is refused and does nothing.
    let mut agent = Agent::new(&base);
    let signed_in = agent.sign_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(signed_in.location(), "/", "{}", signed_in.body);
    let form = [
        ("subject", first.as_str()),
        ("subject", second.as_str()),
        ("action", "label"),
        ("value", "nudity"),
        ("note", "no token"),
    ];
    let refused = agent.post("/queue/act", &form).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.body.contains("was not carried out"),
        "{}",
        refused.body
    );
    let forged = [&[("csrf", "forged")][..], &form[..]].concat();
    let refused = agent.post("/queue/act", &forged).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    browser.goto(&format!("{base}/audit")).await;
    assert_eq!(
        table(&mut browser, "#audit").await,
        entries,
        "the refused forms left no trace"
    );

    // The labeler serves the two labels, signed by its DID.
    for uri in [first, second] {
        let labels = labels_on(&http, &base, uri).await;
        assert_eq!(labels.len(), 1, "{labels:?}");
        assert_eq!(labels[0]["val"], "spam", "{labels:?}");
        assert_eq!(labels[0]["src"], labeler.as_str(), "{labels:?}");
        assert_eq!(labels[0]["uri"], uri.as_str(), "{labels:?}");
        assert_ne!(labels[0]["neg"], json!(true), "{labels:?}");
    }

    bless(&shots);
    drop(browser);
    stop(console).await;
    sandbox.shutdown().await;
}
