//! Account takedowns honoured from a labeler, end to end on loopback: a real PLC +
//! reference PDS, the relay following the PDS and the harness's loopback labeler
//! ([`LoopbackLabeler`], labels signed here with a test k256 key through the relay's own
//! label type), and a Jetstream subscriber.
//!
//! Shown:
//! - a `!takedown` label on an account DID emits `#account` (`takendown`) and holds the
//!   account's later commits back; its negation emits `#account` active and lets them
//!   through again;
//! - labels the relay must not act on are left alone: a record-level `!takedown` (the
//!   AppView's business), a `!warn` on an account, a takedown signed by another key
//!   (refused, counted as `bad_signature` on `/metrics`);
//! - a label negation never lifts an operator's takedown;
//! - the labeler's cursor and the takedown survive a relay restart (the labeler sees the
//!   stored `cursor=` on reconnect, the account stays down);
//! - once the labeler is removed from the configuration, its takedowns are lifted at the
//!   next start.

use std::path::Path;
use std::time::Duration;

use atelier_relay::labels::{Label, LabelSigner, labels_frame};
use atelier_relay::service::{LabelerConfig, RelayConfig, UpstreamConfig, UpstreamKind};
use atelier_relay::sync::keys::{Curve, PublicKey};
use atelier_sandbox::{Account, LoopbackLabeler, Sandbox};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

mod support;

use support::relay::{Relay, STEP, metrics_text};

const MOOD: &str = "computer.aesthetic.mood";
const NOW: &str = "2026-12-06T12:00:00.000Z";

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

    fn sign(&self, label: Label) -> Label {
        label.sign(self).expect("the label signs")
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

fn relay_config(sandbox: &Sandbox, dir: &Path, labelers: &[&LoopbackLabeler]) -> RelayConfig {
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
        labelers: labelers
            .iter()
            .map(|l| LabelerConfig {
                did: l.did().to_owned(),
                url: None,
            })
            .collect(),
        ..RelayConfig::default()
    }
}

/// A Jetstream subscriber for AC collections (account events come through too).
struct Jetstream(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Jetstream {
    async fn connect(relay: &Relay) -> Jetstream {
        let url = format!(
            "ws://{}/subscribe?wantedCollections=computer.aesthetic.*",
            relay.addr
        );
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        // Let the subscription settle before anything is written.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Jetstream(ws)
    }

    async fn next(&mut self, what: &str) -> Value {
        let read = async {
            loop {
                match self.0.next().await {
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

    /// The next event, which must be `did`'s `#account` with `active`.
    async fn account(&mut self, did: &str, active: bool) {
        let ev = self.next("an account event").await;
        assert_eq!(ev["kind"], "account", "{ev}");
        assert_eq!(ev["did"], did, "{ev}");
        assert_eq!(ev["account"]["active"], active, "{ev}");
        if !active {
            assert_eq!(ev["account"]["status"], "takendown", "{ev}");
        }
    }

    /// The next event, which must be a mood from `did` saying `text`.
    async fn mood(&mut self, did: &str, text: &str) {
        let ev = self.next(text).await;
        assert_eq!(ev["did"], did, "{ev}");
        assert_eq!(ev["commit"]["record"]["mood"], text, "{ev}");
    }
}

async fn post_mood(account: &Account, text: &str) {
    let record = json!({"$type": MOOD, "mood": text, "when": NOW});
    account.create_record(MOOD, &record).await.expect("mood");
}

async fn operator(http: &reqwest::Client, relay: &Relay, path: &str, did: &str) {
    let response = http
        .post(relay.url(path))
        .bearer_auth(&relay.token)
        .json(&json!({"did": did, "reason": "operator"}))
        .send()
        .await
        .expect("admin request");
    assert_eq!(response.status(), 200, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn labeler_account_takedowns_are_honoured() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = TestKey::new(7);
    let forger = TestKey::new(9);
    let labeler = LoopbackLabeler::start(&key.multikey())
        .await
        .expect("labeler starts");
    let src = labeler.did().to_owned();
    let label = |uri: &str, val: &str| Label::new(&src, uri, val, NOW);
    let http = reqwest::Client::new();

    let carol = sandbox.create_account("carol").await.expect("carol");
    let dave = sandbox.create_account("dave").await.expect("dave");
    let erin = sandbox.create_account("erin").await.expect("erin");

    let relay = Relay::start(relay_config(&sandbox, dir.path(), &[&labeler])).await;
    let mut jet = Jetstream::connect(&relay).await;
    post_mood(&carol, "carol one").await;
    jet.mood(&carol.did, "carol one").await;

    // Seq 1: carol taken down; labels the relay ignores (a record-level takedown, a !warn
    // on an account, a forged takedown of dave).
    let record_uri = format!("at://{}/{MOOD}/xyz", dave.did);
    labeler.publish(
        1,
        labels_frame(
            1,
            &[
                key.sign(label(&carol.did, "!takedown")),
                key.sign(label(&record_uri, "!takedown")),
                key.sign(label(&dave.did, "!warn")),
                forger.sign(label(&dave.did, "!takedown")),
            ],
        ),
    );
    jet.account(&carol.did, false).await;
    post_mood(&carol, "carol held back").await;
    post_mood(&dave, "dave flows").await;
    // Carol's mood is held back, so dave's is the next event.
    jet.mood(&dave.did, "dave flows").await;
    let metrics = metrics_text(&http, &relay).await;
    assert!(
        metrics.contains(&format!(
            "atelier_relay_labels_rejected_total{{labeler=\"{src}\",reason=\"bad_signature\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "atelier_relay_labeler_cursor{{labeler=\"{src}\"}} 1"
        )),
        "{metrics}"
    );

    // An operator's takedown is not the labeler's to lift.
    operator(&http, &relay, "/admin/accounts/takedown", &erin.did).await;
    jet.account(&erin.did, false).await;
    labeler.publish(
        2,
        labels_frame(2, &[key.sign(label(&erin.did, "!takedown").negated())]),
    );
    post_mood(&erin, "erin held back").await;
    post_mood(&dave, "dave again").await;
    jet.mood(&dave.did, "dave again").await;

    // Restart: the cursor and carol's takedown persist.
    relay.stop().await;
    let relay = Relay::start(relay_config(&sandbox, dir.path(), &[&labeler])).await;
    let mut jet = Jetstream::connect(&relay).await;
    let deadline = tokio::time::Instant::now() + STEP;
    while labeler.cursors().last() != Some(&Some("2".to_owned())) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the relay resumes the label stream from its cursor: {:?}",
            labeler.cursors()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post_mood(&carol, "carol still held back").await;
    post_mood(&dave, "dave after restart").await;
    jet.mood(&dave.did, "dave after restart").await;

    // The negation lifts carol's takedown.
    labeler.publish(
        3,
        labels_frame(3, &[key.sign(label(&carol.did, "!takedown").negated())]),
    );
    jet.account(&carol.did, true).await;
    post_mood(&carol, "carol back").await;
    jet.mood(&carol.did, "carol back").await;

    // Carol down again, then the labeler leaves the configuration: lifted at start;
    // erin (the operator's) stays down.
    labeler.publish(
        4,
        labels_frame(4, &[key.sign(label(&carol.did, "!suspend"))]),
    );
    jet.account(&carol.did, false).await;
    relay.stop().await;
    let relay = Relay::start(relay_config(&sandbox, dir.path(), &[])).await;
    let mut jet = Jetstream::connect(&relay).await;
    post_mood(&carol, "carol free").await;
    post_mood(&erin, "erin still held back").await;
    post_mood(&dave, "dave last").await;
    // Carol's lifting may be announced before the subscription began; skip to her mood.
    let mut seen = Vec::new();
    loop {
        let ev = jet.next("carol free, then dave last").await;
        if ev["kind"] == "commit" {
            seen.push(
                ev["commit"]["record"]["mood"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        if seen.last().map(String::as_str) == Some("dave last") {
            break;
        }
    }
    assert_eq!(seen, ["carol free", "dave last"]);
    relay.stop().await;
    sandbox.shutdown().await;
}
