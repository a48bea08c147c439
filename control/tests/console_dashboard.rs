//! The dashboard's AppView panels end to end: the console service (`console::run`) on
//! loopback, probing a stand-in AppView, also on loopback, whose `/metrics` text is drawn
//! by the AppView's own renderers ([`OAuthMetrics`], [`Histogram`]); a moderator signs in
//! and reads the dashboard.
//!
//! What this proves:
//! - the OAuth sign-in panel shows started, completed, abandoned, errors by kind and the
//!   error rate;
//! - the publish-to-visibility panel shows the median and 90th percentile interpolated
//!   from the histogram's buckets, and "none yet" for publishing until its metrics appear,
//!   then the publishes by kind and outcome and the publish time;
//! - when `/metrics` fails, or the AppView does not answer at all, the page still renders
//!   and the panels say so in plain words.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_appview::histogram::{Histogram, VISIBILITY_BUCKETS};
use atelier_appview::oauth::OAuthMetrics;
use atelier_appview::oauth::metrics::ErrorKind;
use atelier_control::console::up::probe;
use atelier_control::console::{self, ConsoleConfig};
use atelier_control::labeler::SigningKey;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::StatusCode as Status;

mod support;

use support::agent::Agent;

const BOOTSTRAP_PASSWORD: &str = "bootstrap-password-from-the-secret-file";
const LABELER: &str = "did:plc:dashboardlabelerxxxxxxxx";
const WAIT: Duration = Duration::from_secs(20);

/// What the stand-in AppView answers: whether `_health` is up, and the `/metrics` text
/// (`None`: 503).
#[derive(Debug, Default)]
struct Answers {
    down: bool,
    metrics: Option<String>,
}

type Shared = Arc<Mutex<Answers>>;

async fn health(State(answers): State<Shared>) -> axum::response::Response {
    if answers.lock().expect("lock").down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(serde_json::json!({ "version": "test" })).into_response()
}

async fn metrics(State(answers): State<Shared>) -> axum::response::Response {
    match answers.lock().expect("lock").metrics.clone() {
        Some(text) => text.into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The `/metrics` text of an AppView that saw four sign-ins start (two completed, one
/// denied, one never back), two unknown handles, and ten commits made visible.
fn appview_metrics() -> String {
    let oauth = OAuthMetrics::default();
    for _ in 0..4 {
        oauth.started();
    }
    for _ in 0..3 {
        oauth.returned();
    }
    oauth.completed();
    oauth.completed();
    oauth.error(ErrorKind::Denied);
    oauth.error(ErrorKind::UnknownHandle);
    oauth.error(ErrorKind::UnknownHandle);
    // Cumulative: le=0.25 → 1, 0.5 → 5, 1 → 9, 300 → 10. Median: rank 5 at the top of
    // (0.25, 0.5] = 0.5 s; 90th percentile: rank 9 at the top of (0.5, 1] = 1 s.
    let visibility = Histogram::new(VISIBILITY_BUCKETS);
    let observe = |secs: f64, times: usize| {
        for _ in 0..times {
            visibility.observe(Duration::from_secs_f64(secs));
        }
    };
    observe(0.05, 1);
    observe(0.3, 4);
    observe(0.8, 4);
    observe(100.0, 1);
    let mut out = String::from(
        "# HELP atelier_appview_events_total Stream events handled by ingest.\n\
         # TYPE atelier_appview_events_total counter\n\
         atelier_appview_events_total 12\n\
         # HELP atelier_appview_visibility_seconds Publish to visibility.\n\
         # TYPE atelier_appview_visibility_seconds histogram\n",
    );
    visibility.render(&mut out, "atelier_appview_visibility_seconds", "");
    oauth.render(&mut out);
    out
}

/// Publishing metrics as the publishing API will render them: three paintings published,
/// one mood blocked, publish times of 0.2 s, 0.2 s, 0.2 s and 2 s.
const PUBLISHING: &str = "\
# TYPE atelier_appview_publish_total counter
atelier_appview_publish_total{kind=\"painting\",outcome=\"ok\"} 3
atelier_appview_publish_total{kind=\"mood\",outcome=\"blocked\"} 1
# TYPE atelier_appview_publish_seconds histogram
atelier_appview_publish_seconds_bucket{le=\"0.1\"} 0
atelier_appview_publish_seconds_bucket{le=\"0.25\"} 3
atelier_appview_publish_seconds_bucket{le=\"2.5\"} 4
atelier_appview_publish_seconds_bucket{le=\"+Inf\"} 4
atelier_appview_publish_seconds_sum 2.6
atelier_appview_publish_seconds_count 4
";

/// A data directory with the bootstrap password and the labeler's key in it.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&secrets)
        .expect("secrets dir");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secrets.join("admin_bootstrap_password"))
        .expect("secret file");
    std::io::Write::write_all(&mut file, format!("{BOOTSTRAP_PASSWORD}\n").as_bytes())
        .expect("write secret");
    SigningKey::load_or_generate(&secrets.join("labeler_key")).expect("labeler key");
    dir
}

/// The text of the element with `id` up to its end tag `end`, tags included.
fn section<'a>(html: &'a str, id: &str, end: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in:\n{html}"));
    let len = html[start..].find(end).unwrap_or(html.len() - start);
    &html[start..start + len]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_sign_in_and_visibility_from_the_appview() {
    // The stand-in AppView.
    let answers: Shared = Arc::default();
    answers.lock().expect("lock").metrics = Some(appview_metrics());
    let router = Router::new()
        .route("/xrpc/_health", get(health))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&answers));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let appview = format!("http://{}", listener.local_addr().expect("addr"));
    let appview_task = tokio::spawn(async move { axum::serve(listener, router).await });

    // The console, probing it.
    let dir = data_dir();
    let admin = support::loopback_admin(dir.path());
    let config = ConsoleConfig {
        admin,
        labeler_did: LABELER.to_owned(),
        labeler_key_file: dir.path().join("secrets/labeler_key"),
        // Nothing here resolves an identity.
        plc_url: "http://127.0.0.1:9".to_owned(),
        allow_loopback: true,
        autoflag: None,
        services: vec![probe("appview", &appview, "/xrpc/_health")],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let console_task = tokio::spawn(console::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let mut admin = Agent::new(&base);
    admin
        .admin_ready(BOOTSTRAP_PASSWORD, "the admin's own password")
        .await;

    // Sign-in and visibility figures; no publishing yet.
    let page = admin.get("/").await;
    assert_eq!(page.status, Status::OK, "{}", page.body);
    let oauth = section(&page.body, "oauth", "</div>");
    for figure in [
        "data-oauth=\"started\">4<",
        "data-oauth=\"completed\">2<",
        "data-oauth=\"abandoned\">1<",
        "data-oauth=\"errors\">3<",
        "data-oauth=\"error-rate\">75.0%<",
        "data-error-kind=\"unknown_handle\"><td>unknown_handle</td><td>2<",
        "data-error-kind=\"denied\"><td>denied</td><td>1<",
    ] {
        assert!(oauth.contains(figure), "{figure} in:\n{oauth}");
    }
    assert!(!oauth.contains("data-error-kind=\"csrf\""), "{oauth}");
    let publishing = section(&page.body, "publishing", "</div>");
    for figure in [
        "10 commits indexed: median 500 ms, 90th percentile 1.0 s",
        "Publishes through the AppView: none yet.",
        "id=\"publish-time\">none yet<",
    ] {
        assert!(publishing.contains(figure), "{figure} in:\n{publishing}");
    }

    // The publishing API's metrics appear.
    answers
        .lock()
        .expect("lock")
        .metrics
        .as_mut()
        .expect("metrics")
        .push_str(PUBLISHING);
    let page = admin.get("/").await;
    let publishing = section(&page.body, "publishing", "</div>");
    for figure in [
        "<td>painting</td><td>ok</td><td>3</td>",
        "<td>mood</td><td>blocked</td><td>1</td>",
        // Median: rank 2 in (0.1, 0.25] holding 3: 0.1 + 0.15 × 2/3 = 0.2 s.
        // 90th percentile: rank 3.6 in (0.25, 2.5] holding 1: 0.25 + 2.25 × 0.6 = 1.6 s.
        "4 publishes timed: median 200 ms, 90th percentile 1.6 s",
    ] {
        assert!(publishing.contains(figure), "{figure} in:\n{publishing}");
    }

    // `/metrics` fails: the page renders, the panels say so.
    answers.lock().expect("lock").metrics = None;
    let page = admin.get("/").await;
    assert_eq!(page.status, Status::OK, "{}", page.body);
    for id in ["oauth", "publishing"] {
        let panel = section(&page.body, id, "</div>");
        assert!(
            panel.contains("metrics could not be read just now."),
            "{panel}"
        );
    }

    // The AppView does not answer at all.
    answers.lock().expect("lock").down = true;
    let page = admin.get("/").await;
    assert_eq!(page.status, Status::OK, "{}", page.body);
    assert!(
        page.body.contains("<span class=\"tag bad\">down</span>"),
        "{}",
        page.body
    );
    for id in ["oauth", "publishing"] {
        let panel = section(&page.body, id, "</div>");
        assert!(
            panel.contains("The AppView is not answering, so there are no figures."),
            "{panel}"
        );
    }

    let _ = stop.send(());
    tokio::time::timeout(WAIT, console_task)
        .await
        .expect("the console stops in time")
        .expect("the console task")
        .expect("the console ran without error");
    appview_task.abort();
}
