//! Label sync end to end on loopback: the harness's loopback labeler
//! ([`LoopbackLabeler`]: a `did:web` DID document and `com.atproto.label.subscribeLabels`
//! frames of labels signed here with a test k256 key, using the AppView's own `Label` type
//! and frame writer) and the real AppView service following it.
//!
//! Shown: a `!hide` label removes a painting from the feed and `getRecord` (404); a `!warn`
//! label rides on the view; a negation brings the painting back (the response cache is
//! invalidated by label commits); a label signed by another key, one whose `src` is not the
//! labeler and one with an invalid field are refused, counted on `/metrics`, and never
//! applied; after a restart the AppView resumes from its stored cursor (the labeler sees
//! `cursor=` in the query); after the labeler rotates its `#atproto_label` key, a label
//! signed with the new key is accepted (the DID document is re-resolved on the failure).

use std::time::Duration;

use atelier_appview::index::{Change, RecordRow};
use atelier_appview::labels::{Label, LabelSigner, LabelSource, labels_frame};
use atelier_appview::relay::sync::keys::{Curve, PublicKey};
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::{AnyStore, Store, StoreLocation};
use atelier_sandbox::LoopbackLabeler;
use serde_json::{Value, json};
use sha2::Digest;

/// A k256 test key that signs labels.
struct TestKey(secp256k1::SecretKey);

impl TestKey {
    fn new(byte: u8) -> TestKey {
        TestKey(secp256k1::SecretKey::from_byte_array([byte; 32]).expect("a valid key"))
    }

    fn multikey(&self) -> String {
        let secp = secp256k1::Secp256k1::signing_only();
        let point = secp256k1::PublicKey::from_secret_key(&secp, &self.0).serialize();
        PublicKey::from_point(Curve::K256, &point)
            .expect("a k256 point")
            .to_multikey()
    }
}

impl LabelSigner for TestKey {
    fn sign_label_bytes(&self, msg: &[u8]) -> [u8; 64] {
        let digest: [u8; 32] = sha2::Sha256::digest(msg).into();
        let secp = secp256k1::Secp256k1::signing_only();
        let mut sig = secp.sign_ecdsa(secp256k1::Message::from_digest(digest), &self.0);
        sig.normalize_s();
        sig.serialize_compact()
    }
}

/// The loopback labeler, publishing signed labels.
struct Labeler(LoopbackLabeler);

impl Labeler {
    fn publish(&self, seq: i64, labels: &[Label]) {
        self.0.publish(seq, labels_frame(seq, labels));
    }

    fn rotate(&self, key: &TestKey) {
        self.0.rotate(&key.multikey());
    }

    fn cursors(&self) -> Vec<Option<String>> {
        self.0.cursors()
    }
}

/// Starts the loopback labeler with `key` as its `#atproto_label` key.
async fn start_labeler(key: &TestKey) -> (Labeler, String) {
    let labeler = LoopbackLabeler::start(&key.multikey())
        .await
        .expect("the labeler starts");
    let did = labeler.did().to_owned();
    (Labeler(labeler), did)
}

const AUTHOR: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const PAINTING: &str = "computer.aesthetic.painting";

fn painting(rkey: &str, when: &str) -> RecordRow {
    RecordRow {
        uri: format!("at://{AUTHOR}/{PAINTING}/{rkey}"),
        did: AUTHOR.to_owned(),
        collection: PAINTING.to_owned(),
        rkey: rkey.to_owned(),
        cid: format!("bafyrei{rkey}"),
        created_at: Some(when.to_owned()),
        code: Some(rkey.to_owned()),
        slug: None,
        record: json!({"$type": PAINTING, "when": when, "code": rkey}),
        repairs: Vec::new(),
        remix_of: None,
        mentions: Vec::new(),
    }
}

/// A running AppView.
struct AppView {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::AppViewError>>,
}

impl AppView {
    async fn start(location: &StoreLocation, labeler_did: &str) -> AppView {
        let mut config = AppViewConfig::new(location.clone(), None);
        config.labels.sources = vec![LabelSource {
            did: labeler_did.to_owned(),
            url: None,
        }];
        // Nothing here is a did:plc; the PLC URL is never used.
        config.labels.plc_url = "http://127.0.0.1:9".to_owned();
        config.labels.allow_loopback = true;
        config.labels.backoff_base = Duration::from_millis(50);
        config.labels.backoff_max = Duration::from_millis(500);
        // Every signature failure re-resolves the key (the rotation below is immediate).
        config.labels.key_refresh_interval = Duration::ZERO;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        AppView { base, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the AppView stops")
            .expect("the AppView task")
            .expect("the AppView stops cleanly");
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = reqwest::get(format!("{}/{path}", self.base))
            .await
            .expect("the AppView answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Waits until `_health` shows `did`'s label cursor at `seq`.
    async fn wait_for_cursor(&self, did: &str, seq: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, health) = self.get("xrpc/_health").await;
            let cursor = health["labelSources"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["did"] == did))
                .and_then(|s| s["cursor"].as_i64());
            if cursor == Some(seq) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "label cursor never reached {seq}: {health}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The feed's URIs with their label values.
    async fn feed(&self) -> Vec<(String, Vec<String>)> {
        let (status, body) = self.get("xrpc/computer.aesthetic.feed.getAtmosphere").await;
        assert_eq!(status, 200, "{body}");
        body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                let uri = r["uri"].as_str().expect("uri").to_owned();
                let vals = r["labels"]
                    .as_array()
                    .map(|ls| {
                        ls.iter()
                            .map(|l| l["val"].as_str().expect("val").to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                (uri, vals)
            })
            .collect()
    }

    async fn record_status(&self, uri: &str) -> u16 {
        let (status, _) = self
            .get(&format!(
                "xrpc/computer.aesthetic.feed.getRecord?uri={}",
                url::form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
            ))
            .await;
        status
    }
}

fn entry(uri: &str, vals: &[&str]) -> (String, Vec<String>) {
    (
        uri.to_owned(),
        vals.iter().map(|v| (*v).to_owned()).collect(),
    )
}

const CTS: &str = "2026-03-01T00:00:00.000Z";

#[tokio::test]
async fn labels_sync_from_a_labeler_and_apply_to_the_appview() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = StoreLocation::Sqlite(dir.path().join("index.sqlite"));
    let hidden = painting("p1", "2026-01-01T00:00:00Z");
    let warned = painting("p2", "2026-01-02T00:00:00Z");
    {
        let store = AnyStore::open(&location).await.expect("store");
        store
            .apply(
                &[
                    Change::Record(hidden.clone()),
                    Change::Record(warned.clone()),
                ],
                None,
            )
            .await
            .expect("seed the index");
        store.close().await;
    }

    let key = TestKey::new(7);
    let other_key = TestKey::new(9);
    let (labeler, did) = start_labeler(&key).await;
    let sign = |label: Label, key: &TestKey| label.sign(key).expect("sign");
    labeler.publish(
        1,
        &[sign(Label::new(&did, &warned.uri, "!warn", CTS), &key)],
    );
    labeler.publish(
        2,
        &[sign(Label::new(&did, &hidden.uri, "!hide", CTS), &key)],
    );
    // Refused: signed by another key; `src` another labeler (signed with our key); a
    // subject that is neither an AT-URI nor a DID (so it cannot even be signed here).
    labeler.publish(
        3,
        &[
            sign(Label::new(&did, &warned.uri, "!hide", CTS), &other_key),
            sign(
                Label::new(
                    "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
                    &warned.uri,
                    "!hide",
                    CTS,
                ),
                &key,
            ),
            Label::new(&did, "not-a-subject", "!hide", CTS),
        ],
    );

    let appview = AppView::start(&location, &did).await;
    appview.wait_for_cursor(&did, 3).await;
    assert_eq!(
        appview.feed().await,
        vec![entry(&warned.uri, &["!warn"])],
        "!hide removes the painting, !warn rides on the view, refused labels do nothing"
    );
    assert_eq!(appview.record_status(&hidden.uri).await, 404);
    let (status, body) = appview
        .get(&format!(
            "xrpc/computer.aesthetic.feed.getRecord?uri={}",
            url::form_urlencoded::byte_serialize(warned.uri.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["record"]["labels"][0]["src"], did.as_str());
    assert_eq!(body["record"]["labels"][0]["val"], "!warn");
    let metrics = appview.metrics().await;
    for line in [
        "atelier_appview_labels_applied_total 2".to_owned(),
        format!(
            "atelier_appview_labels_rejected_total{{source=\"{did}\",reason=\"bad_signature\"}} 1"
        ),
        format!("atelier_appview_labels_rejected_total{{source=\"{did}\",reason=\"wrong_src\"}} 1"),
        format!("atelier_appview_labels_rejected_total{{source=\"{did}\",reason=\"invalid\"}} 1"),
        format!("atelier_appview_label_cursor{{source=\"{did}\"}} 3"),
    ] {
        assert!(metrics.contains(&line), "{line:?} missing from:\n{metrics}");
    }

    // Live: the negation brings the painting back (the cached feed is invalidated).
    labeler.publish(
        4,
        &[sign(
            Label::new(&did, &hidden.uri, "!hide", CTS).negated(),
            &key,
        )],
    );
    appview.wait_for_cursor(&did, 4).await;
    assert_eq!(
        appview.feed().await,
        vec![entry(&warned.uri, &["!warn"]), entry(&hidden.uri, &[])]
    );
    assert_eq!(appview.record_status(&hidden.uri).await, 200);
    appview.stop().await;

    // Restart: the AppView resumes after seq 4 and applies what came meanwhile.
    labeler.publish(
        5,
        &[sign(Label::new(&did, &warned.uri, "!takedown", CTS), &key)],
    );
    let appview = AppView::start(&location, &did).await;
    appview.wait_for_cursor(&did, 5).await;
    assert_eq!(appview.feed().await, vec![entry(&hidden.uri, &[])]);
    assert_eq!(appview.record_status(&warned.uri).await, 404);
    assert_eq!(
        labeler.cursors(),
        vec![Some("0".to_owned()), Some("4".to_owned())],
        "first connection from 0, the restart from the stored cursor"
    );
    assert!(
        appview
            .metrics()
            .await
            .contains("atelier_appview_labels_applied_total 1"),
        "only the new label is applied after the restart"
    );

    // Key rotation: the AppView holds the old key; a label signed with the new one fails,
    // the document is fetched again, and the label verifies.
    let new_key = TestKey::new(11);
    labeler.rotate(&new_key);
    labeler.publish(
        6,
        &[sign(Label::new(&did, &hidden.uri, "!warn", CTS), &new_key)],
    );
    appview.wait_for_cursor(&did, 6).await;
    assert_eq!(appview.feed().await, vec![entry(&hidden.uri, &["!warn"])]);
    let metrics = appview.metrics().await;
    assert!(
        metrics.contains("atelier_appview_labels_applied_total 2")
            && !metrics.contains("bad_signature"),
        "{metrics}"
    );
    // A label still signed with the old key is now refused.
    labeler.publish(
        7,
        &[sign(Label::new(&did, &hidden.uri, "!hide", CTS), &key)],
    );
    appview.wait_for_cursor(&did, 7).await;
    assert_eq!(appview.feed().await, vec![entry(&hidden.uri, &["!warn"])]);
    assert!(appview.metrics().await.contains(&format!(
        "atelier_appview_labels_rejected_total{{source=\"{did}\",reason=\"bad_signature\"}} 1"
    )));
    appview.stop().await;
}
