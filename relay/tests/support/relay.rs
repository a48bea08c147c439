//! A relay service in the test process, fed by the firehose corpus through the replay
//! server, and the small helpers the service tests share (metrics scraping, waiting for
//! ingest to settle).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use atelier_relay::filter::FilterRules;
use atelier_relay::service::{self, RelayConfig, UpstreamConfig, UpstreamKind};
use atelier_relay::sync::replay::{self, Fault, FrameFile, ReplayConfig};
use serde_json::Value;

/// How long any single step of a service test may take.
pub(crate) const STEP: Duration = Duration::from_secs(60);

/// A relay running in this process.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), service::RelayError>>,
}

impl Relay {
    pub(crate) async fn start(config: RelayConfig) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token_file = config.admin_tokens_file.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        // The token file is written at start; wait for the server to answer.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(r) = http.get(format!("http://{addr}/xrpc/_health")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "relay did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = std::fs::read_to_string(&token_file)
            .expect("admin token file written at start")
            .lines()
            .next()
            .expect("a token")
            .trim()
            .to_owned();
        Relay {
            addr,
            token,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(STEP, self.task)
            .await
            .expect("relay stops in time")
            .expect("relay task");
        result.expect("relay stops cleanly");
    }
}

pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The firehose corpus as a replay upstream.
pub(crate) async fn corpus_upstream(rate: f64) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    corpus_upstream_with(rate, Vec::new()).await
}

/// The firehose corpus as a replay upstream that injects `faults`.
pub(crate) async fn corpus_upstream_with(
    rate: f64,
    faults: Vec<Fault>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let path = super::corpus_dir().join("frames.bin.zst");
    let frames = FrameFile::read(&path).expect("corpus frames");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ReplayConfig {
        rate: Some(rate),
        faults,
        ..ReplayConfig::new(frames)
    };
    tokio::spawn(replay::run(config, listener, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

pub(crate) async fn get_json(http: &reqwest::Client, relay: &Relay, path: &str) -> Value {
    let resp = http.get(relay.url(path)).send().await.expect("GET");
    resp.json().await.expect("JSON")
}

pub(crate) async fn metrics_text(http: &reqwest::Client, relay: &Relay) -> String {
    http.get(relay.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A relay following two corpus upstreams (trusted, `app.bsky.*` standing in for AC).
pub(crate) fn corpus_relay_config(dir: &Path, upstreams: &[SocketAddr]) -> RelayConfig {
    RelayConfig {
        data_dir: dir.join("relay"),
        upstreams: upstreams
            .iter()
            .map(|addr| UpstreamConfig {
                url: format!("ws://{addr}"),
                kind: UpstreamKind::Relay,
                trusted: true,
            })
            .collect(),
        allow_loopback: true,
        admin_tokens_file: dir.join("admin_token"),
        filter: FilterRules {
            collections: vec!["app.bsky.*".into()],
            companions: true,
        },
        ..RelayConfig::default()
    }
}

/// Corpus commits with an `app.bsky.*` op: what one corpus upstream gets logged.
pub(crate) const CORPUS_PASSING: u64 = 147;

/// Waits (up to [`STEP`]) until the relay has logged at least `at_least` events and then
/// nothing more for 1 s; returns its latest seq. Waiting for a count rather than for quiet
/// alone keeps a stall on a busy machine from passing for the end of ingest.
pub(crate) async fn settled(http: &reqwest::Client, relay: &Relay, at_least: u64) -> u64 {
    let mut logged = 0;
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + STEP;
    while logged < at_least || stable_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "ingest did not reach {at_least} events (at {logged})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = metric(
            &metrics_text(http, relay).await,
            "atelier_relay_log_latest_seq",
        );
        if now != logged {
            logged = now;
            stable_since = Instant::now();
        }
    }
    logged
}
