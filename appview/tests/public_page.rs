//! The public Atmosphere page (`GET /`) over a real SQLite index and the real AppView
//! service: records of each kind link to aesthetic.computer, a painting shows its https
//! image, text is escaped (a mood that is HTML stays text), a `!warn`-labelled record sits
//! behind a click-through that names the label, a `!hide`-labelled one is absent, the
//! "Older" link pages through the feed, and the page's content security policy allows no
//! script.

use std::time::Duration;

use atelier_appview::index::{Change, RecordRow};
use atelier_appview::labels::Label;
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::{AnyStore, Store, StoreLocation};
use serde_json::{Value, json};

const AUTHOR: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const LABELER: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";

fn row(collection: &str, rkey: &str, when: &str, record: Value) -> RecordRow {
    RecordRow {
        uri: format!("at://{AUTHOR}/{collection}/{rkey}"),
        did: AUTHOR.to_owned(),
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid: format!("bafyrei{rkey}"),
        created_at: Some(when.to_owned()),
        code: record
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_owned),
        slug: record
            .get("slug")
            .and_then(Value::as_str)
            .map(str::to_owned),
        record,
        repairs: Vec::new(),
        remix_of: None,
        mentions: Vec::new(),
    }
}

async fn get(base: &str, path: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .expect("the AppView answers");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("body"))
}

#[tokio::test]
async fn the_atmosphere_page_shows_the_network_to_a_person() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = StoreLocation::Sqlite(dir.path().join("index.sqlite"));
    let painting = row(
        "computer.aesthetic.painting",
        "p1",
        "2026-12-06T12:00:05Z",
        json!({"code": "a3b", "imageUrl": "https://aesthetic.computer/media/paintings/a3b", "slug": "s", "when": "2026-12-06T12:00:05Z", "ref": "x"}),
    );
    let kidlisp = row(
        "computer.aesthetic.kidlisp",
        "k1",
        "2026-12-06T12:00:04Z",
        json!({"code": "k1", "source": "(wipe blue)\n(ink red)", "when": "2026-12-06T12:00:04Z", "ref": "x"}),
    );
    let mood = row(
        "computer.aesthetic.mood",
        "m1",
        "2026-12-06T12:00:03Z",
        json!({"mood": "<script>alert(1)</script> & friends", "when": "2026-12-06T12:00:03Z", "ref": "x"}),
    );
    let warned = row(
        "computer.aesthetic.mood",
        "m2",
        "2026-12-06T12:00:02Z",
        json!({"mood": "a warned mood", "when": "2026-12-06T12:00:02Z", "ref": "x"}),
    );
    let hidden = row(
        "computer.aesthetic.mood",
        "m3",
        "2026-12-06T12:00:01Z",
        json!({"mood": "a hidden mood", "when": "2026-12-06T12:00:01Z", "ref": "x"}),
    );
    // Enough older records to need a second page.
    let mut changes: Vec<Change> = [&painting, &kidlisp, &mood, &warned, &hidden]
        .into_iter()
        .map(|r| Change::Record(r.clone()))
        .collect();
    for i in 0..40 {
        changes.push(Change::Record(row(
            "computer.aesthetic.piece",
            &format!("old{i:02}"),
            &format!("2026-11-01T00:00:{i:02}Z"),
            json!({"slug": format!("piece-{i:02}"), "when": "2026-11-01T00:00:00Z", "ref": "x"}),
        )));
    }
    {
        let store = AnyStore::open(&location).await.expect("store");
        store.apply(&changes, None).await.expect("seed");
        store
            .set_label_sources(&[LABELER.to_owned()])
            .await
            .expect("sources");
        let cts = "2026-12-06T12:10:00.000Z";
        store
            .apply_labels(
                LABELER,
                &[
                    Label::new(LABELER, &warned.uri, "!warn", cts),
                    Label::new(LABELER, &hidden.uri, "!hide", cts),
                ],
                1,
            )
            .await
            .expect("labels");
        store.close().await;
    }
    let mut config = AppViewConfig::new(location, None);
    config.labels.sources = vec![atelier_appview::labels::LabelSource {
        did: LABELER.to_owned(),
        url: Some("http://127.0.0.1:9".to_owned()),
    }];
    config.labels.backoff_base = Duration::from_secs(60);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let (status, headers, page) = get(&base, "/").await;
    assert_eq!(status, 200, "{page}");
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(
        page.contains("href=\"https://aesthetic.computer/#a3b\""),
        "{page}"
    );
    assert!(
        page.contains("src=\"https://aesthetic.computer/media/paintings/a3b\""),
        "{page}"
    );
    assert!(
        page.contains("href=\"https://aesthetic.computer/$k1\""),
        "{page}"
    );
    assert!(page.contains("(wipe blue)"), "{page}");
    assert!(!page.contains("<script>"), "text is escaped: {page}");
    assert!(page.contains("&#60;script&#62;"), "{page}");
    let warned_at = page
        .find("a warned mood")
        .expect("the warned mood is there");
    let details_at = page[..warned_at]
        .rfind("<details class=\"warned\">")
        .expect("behind a click-through");
    assert!(
        page[details_at..warned_at].contains("!warn"),
        "the click-through names the label"
    );
    assert!(!page.contains("a hidden mood"), "{page}");

    let older = page
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an Older link")
        .replace("&amp;", "&");
    let (status, _, second) = get(&base, &older).await;
    assert_eq!(status, 200);
    assert!(
        second.contains("piece-00"),
        "the oldest piece is on page two: {second}"
    );
    assert!(!second.contains("a3b"), "{second}");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
