//! Relay service benchmark: ingest rate, live fan-out, delivery latency, memory and
//! replay speed of [`atelier_relay::service::run`], all in this one process.
//!
//! Setup: replay upstreams ([`atelier_relay::sync::replay::run`]) serve a long stream
//! built from the firehose corpus (`<fixtures>/firehose-corpus/frames.bin.zst`, fixtures
//! dir `../shared/fixtures` from the workspace root or `$ATELIER_FIXTURES`), the corpus
//! repeated and renumbered with strictly increasing `seq`, `--rate` frames/s in total,
//! split over one upstream per 400 frames/s (one replay connection cannot pace much above
//! ~900 frames/s: its pacer sleeps at least one 1 ms timer tick per frame). Each pass over
//! the corpus renames its accounts (see `rename_account`): repeated as is, every commit
//! after the first pass is refused as `stale_rev`. The relay follows the upstreams as
//! trusted `relay` upstreams with the filter `app.bsky.*` (companions on), so most corpus
//! commits pass. Subscribers connect before the upstreams start sending.
//!
//! Measured and printed:
//! 1. **Ingest**: events/s appended to the relay's log (`atelier_relay_log_latest_seq` from
//!    `/metrics`, sampled every second), plus the `events_in` / `refused` / `filtered` /
//!    `events_out` counters, which show how many of the repeated commits the verifier let
//!    through (a repeated commit has the same DID and rev as an earlier one).
//! 2. **Fan-out**: `--subscribers` Jetstream JSON clients on `/subscribe` and
//!    `--repos-subscribers` `subscribeRepos` clients, each counting messages: total
//!    messages/s delivered, per-subscriber min/median, subscribers that ended early,
//!    `atelier_relay_subscribers_dropped_total`, and Jetstream delivery latency p50/p99/max
//!    (receipt time minus the event's `time_us`, which is the relay's ingest clock, so it
//!    covers log append + fan-out + WebSocket, not the upstream hop).
//! 3. **Memory**: process RSS (`VmRSS`, and `VmHWM` for the peak) at start, peak and end.
//!    Everything runs in this process: relay, upstream replay and all clients.
//! 4. **Replay**: after the live phase, one `subscribeRepos` client from `cursor=0` and one
//!    Jetstream client from `cursor=0` read the whole log; events/s each.
//!
//! Quick run (defaults: 200 Jetstream + 20 subscribeRepos subscribers, 2000 frames/s,
//! 20 s; about a minute including setup and replay):
//!
//! `cargo run --release -p atelier-relay --example relay_bench`
//!
//! Full target run (1000 subscribers × 2000 events/s × 60 s):
//!
//! `cargo run --release -p atelier-relay --example relay_bench -- --subscribers 1000 --rate 2000 --secs 60`
//!
//! All servers listen on 127.0.0.1 port 0; everything stops by itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use atelier_relay::filter::FilterRules;
use atelier_relay::service::{
    FsyncMode, LogSettings, RelayConfig, SubscriberLimits, UpstreamConfig, UpstreamKind,
};
use atelier_relay::sync::frame::with_seq;
use atelier_relay::sync::replay::{FrameFile, ReplayConfig};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Args {
    subscribers: usize,
    repos_subscribers: usize,
    rate: f64,
    secs: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        subscribers: 200,
        repos_subscribers: 20,
        rate: 2000.0,
        secs: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--subscribers" => args.subscribers = value.parse()?,
            "--repos-subscribers" => args.repos_subscribers = value.parse()?,
            "--rate" => args.rate = value.parse()?,
            "--secs" => args.secs = value.parse()?,
            other => {
                return Err(format!(
                    "unknown option {other} (use --subscribers N, --repos-subscribers N, --rate EV_PER_S, --secs S)"
                )
                .into());
            }
        }
    }
    if !(args.rate.is_finite() && args.rate > 0.0) || args.secs == 0 {
        return Err("--rate and --secs must be more than 0".into());
    }
    Ok(args)
}

/// Frames per second one replay upstream is asked for (see `main`).
const PER_UPSTREAM_RATE: f64 = 400.0;

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("ATELIER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// `VmRSS` and `VmHWM` of this process, in kB.
fn rss_kb() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---- a small log-linear latency histogram (about 1.5 % resolution) ----

const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = 64 * 42;

struct Histogram {
    counts: Vec<AtomicU64>,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB_BUCKETS {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros());
        let mantissa = v >> (e - 6);
        let idx = SUB_BUCKETS + (e - 6) * SUB_BUCKETS + (mantissa - SUB_BUCKETS);
        (idx as usize).min(BUCKETS - 1)
    }

    fn lower_bound(idx: usize) -> u64 {
        let idx = idx as u64;
        if idx < SUB_BUCKETS {
            return idx;
        }
        let e = (idx - SUB_BUCKETS) / SUB_BUCKETS + 6;
        let mantissa = (idx - SUB_BUCKETS) % SUB_BUCKETS + SUB_BUCKETS;
        mantissa << (e - 6)
    }

    fn record(&self, v: u64) {
        self.counts[Histogram::index(v)].fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= target {
                return Histogram::lower_bound(i);
            }
        }
        Histogram::lower_bound(BUCKETS - 1)
    }

    fn max(&self) -> u64 {
        self.counts
            .iter()
            .rposition(|c| c.load(Ordering::Relaxed) > 0)
            .map_or(0, Histogram::lower_bound)
    }
}

/// The `time_us` of a Jetstream JSON event, read without a full parse.
fn time_us(json: &str) -> Option<i64> {
    let at = json.find("\"time_us\":")? + "\"time_us\":".len();
    let digits: String = json[at..]
        .chars()
        .skip_while(|c| c.is_whitespace())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

// ---- /metrics ----

async fn fetch_metrics(client: &reqwest::Client, base: &str) -> Result<String, BoxError> {
    Ok(client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The sum of every sample of metric `name` (all label sets).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The labelled samples of metric `name`, as printed.
fn metric_lines(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(name))
        .map(|l| l.trim_start_matches(name).to_owned())
        .collect()
}

// ---- subscribers ----

/// One subscriber's tally.
#[derive(Default)]
struct Tally {
    messages: AtomicU64,
    ended_early: AtomicBool,
    connected: AtomicBool,
}

/// Reads `url` until `stop`, counting messages (and Jetstream latencies into `latency`).
async fn subscriber(
    url: String,
    tally: Arc<Tally>,
    latency: Option<Arc<Histogram>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => ws,
        Err(e) => {
            eprintln!("subscriber could not connect to {url}: {e}");
            tally.ended_early.store(true, Ordering::Relaxed);
            return;
        }
    };
    tally.connected.store(true, Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Some(h) = &latency
                        && let Some(t) = time_us(text.as_str())
                    {
                        h.record(u64::try_from(now_us() - t).unwrap_or(0));
                    }
                    tally.messages.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Binary(_))) => {
                    tally.messages.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    if !*stop.borrow() {
        tally.ended_early.store(true, Ordering::Relaxed);
    }
}

/// Reads `url` from the start of the log until `expected` messages arrived (if given) or
/// the stream stays idle for a second; returns (messages, seconds to the last message).
async fn replay_reader(url: &str, expected: Option<u64>) -> Result<(u64, f64), BoxError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let start = Instant::now();
    let mut n = 0u64;
    let mut last = start;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Text(_) | Message::Binary(_)))) => {
                n += 1;
                last = Instant::now();
                if expected.is_some_and(|e| n >= e) {
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    Ok((n, last.duration_since(start).as_secs_f64()))
}

/// Replaces every occurrence of `from` in `buf` with `to` (same length).
fn replace_all(buf: &mut [u8], from: &[u8], to: &[u8]) {
    debug_assert_eq!(from.len(), to.len());
    let mut i = 0;
    while i + from.len() <= buf.len() {
        if &buf[i..i + from.len()] == from {
            buf[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
}

/// The frame with its account renamed for repetition `pass` (pass 0: unchanged, `None`).
///
/// Repeating a commit as is gets it refused (`stale_rev`: same DID, same rev), so each pass
/// over the corpus uses other DIDs: the DID's last characters are replaced (same length)
/// everywhere in the frame, then every CAR block whose bytes changed gets its new SHA-256
/// digest, substituted wherever the old one appears (CAR header and sections, MST links,
/// the frame's `commit` and op CIDs), until every block matches its CID again. Signatures
/// no longer verify, which the relay skips for a trusted upstream.
fn rename_account(frame: &[u8], pass: usize) -> Option<Vec<u8>> {
    use atelier_relay::sync::car::Car;
    use atelier_relay::sync::frame::{Frame, decode};
    use sha2::{Digest, Sha256};

    if pass == 0 {
        return None;
    }
    let did = decode(frame).ok()?.did()?.to_owned();
    // Base32 suffix for the pass number (did:plc alphabet), 4 characters.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut suffix = [0u8; 4];
    let mut n = pass;
    for c in suffix.iter_mut().rev() {
        *c = ALPHABET[n % 32];
        n /= 32;
    }
    if did.len() < 12 {
        return None;
    }
    let mut new_did = did.clone().into_bytes();
    let at = new_did.len() - suffix.len();
    new_did[at..].copy_from_slice(&suffix);
    let mut out = frame.to_vec();
    replace_all(&mut out, did.as_bytes(), &new_did);
    for _ in 0..16 {
        let fixes: Vec<(Vec<u8>, Vec<u8>)> = {
            let blocks = match decode(&out).ok()? {
                Frame::Commit(c) => c.blocks,
                Frame::Sync(s) => s.blocks,
                _ => return Some(out),
            };
            let car = Car::parse_unverified(blocks).ok()?;
            car.blocks()
                .filter(|b| !b.cid.matches(b.data))
                .map(|b| (b.cid.digest().to_vec(), Sha256::digest(b.data).to_vec()))
                .collect()
        };
        if fixes.is_empty() {
            return Some(out);
        }
        for (old, new) in fixes {
            replace_all(&mut out, &old, &new);
        }
    }
    None
}

fn spread(mut v: Vec<u64>) -> (u64, u64, u64) {
    if v.is_empty() {
        return (0, 0, 0);
    }
    v.sort_unstable();
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let (rss_start, _) = rss_kb();

    // ---- the upstream stream ----
    let corpus_path = fixtures_dir().join("firehose-corpus/frames.bin.zst");
    let corpus = FrameFile::read(&corpus_path)
        .map_err(|e| format!("cannot read the corpus {}: {e}", corpus_path.display()))?;
    // Several upstreams share the rate: the replay pacer waits at least one tokio timer
    // tick (1 ms) per frame, so one replay connection tops out near 900 frames/s.
    let upstream_count = (args.rate / PER_UPSTREAM_RATE).ceil().max(1.0) as usize;
    let wanted = (args.rate * args.secs as f64 / upstream_count as f64).ceil() as usize;
    let mut streams: Vec<Vec<Bytes>> = Vec::with_capacity(upstream_count);
    let mut skipped = 0usize;
    for u in 0..upstream_count {
        let mut frames: Vec<Bytes> = Vec::with_capacity(wanted);
        let mut seq = 0i64;
        'fill: loop {
            let before = frames.len();
            for frame in &corpus {
                if frames.len() >= wanted {
                    break 'fill;
                }
                // Each (upstream, pass over the corpus) gets its own DIDs.
                let pass = frames.len() / corpus.len() * upstream_count + u;
                let renamed = rename_account(frame, pass);
                match with_seq(renamed.as_deref().unwrap_or(frame), seq + 1) {
                    Ok(f) => {
                        seq += 1;
                        frames.push(Bytes::from(f));
                    }
                    Err(_) => skipped += 1,
                }
            }
            if frames.len() == before {
                return Err("no corpus frame carries a seq".into());
            }
        }
        streams.push(frames);
    }
    println!(
        "corpus: {} frames; {upstream_count} upstream(s) x {} frames ({skipped} skipped) at {:.0} frames/s each, DIDs renamed per pass",
        corpus.len(),
        wanted,
        args.rate / upstream_count as f64
    );

    // ---- servers ----
    let dir = tempfile::tempdir()?;
    let mut upstreams = Vec::new();
    for _ in 0..upstream_count {
        upstreams.push(TcpListener::bind("127.0.0.1:0").await?);
    }
    let mut upstream_configs = Vec::new();
    for l in &upstreams {
        upstream_configs.push(UpstreamConfig {
            url: format!("ws://{}", l.local_addr()?),
            kind: UpstreamKind::Relay,
            trusted: true,
        });
    }
    let relay_listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    let base = format!("http://{relay_addr}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (upstream_stop_tx, upstream_stop_rx) = watch::channel(false);
    let (rss_stream, _) = rss_kb();
    let (relay_stop_tx, relay_stop_rx) = watch::channel(false);

    let config = RelayConfig {
        listen: relay_addr,
        data_dir: dir.path().join("relay"),
        upstreams: upstream_configs,
        filter: FilterRules {
            collections: vec!["app.bsky.*".into()],
            companions: true,
        },
        log: LogSettings {
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 100,
            ..LogSettings::default()
        },
        subscribers: SubscriberLimits {
            max: args.subscribers + args.repos_subscribers + 16,
            ..SubscriberLimits::default()
        },
        allow_loopback: true,
        admin_tokens_file: dir.path().join("admin_tokens"),
        ..RelayConfig::default()
    };
    let relay = {
        let mut rx = relay_stop_rx.clone();
        tokio::spawn(atelier_relay::service::run(
            config,
            relay_listener,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    };
    let http = reqwest::Client::new();
    // Wait until the relay answers.
    let ready = Instant::now();
    while fetch_metrics(&http, &base).await.is_err() {
        if ready.elapsed() > Duration::from_secs(10) {
            return Err("the relay did not answer /metrics within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // ---- subscribers (connected before the upstream sends anything) ----
    let latency = Arc::new(Histogram::new());
    let mut js_tallies = Vec::new();
    let mut repo_tallies = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.subscribers {
        let tally = Arc::new(Tally::default());
        js_tallies.push(Arc::clone(&tally));
        tasks.spawn(subscriber(
            format!("ws://{relay_addr}/subscribe"),
            tally,
            Some(Arc::clone(&latency)),
            stop_rx.clone(),
        ));
    }
    for _ in 0..args.repos_subscribers {
        let tally = Arc::new(Tally::default());
        repo_tallies.push(Arc::clone(&tally));
        tasks.spawn(subscriber(
            format!("ws://{relay_addr}/xrpc/com.atproto.sync.subscribeRepos"),
            tally,
            None,
            stop_rx.clone(),
        ));
    }
    let all_tallies: Vec<Arc<Tally>> = js_tallies.iter().chain(&repo_tallies).cloned().collect();
    let wait = Instant::now();
    while all_tallies
        .iter()
        .any(|t| !t.connected.load(Ordering::Relaxed) && !t.ended_early.load(Ordering::Relaxed))
    {
        if wait.elapsed() > Duration::from_secs(30) {
            return Err("subscribers did not all connect within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the relay register the last upgrades before the first event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connected = all_tallies
        .iter()
        .filter(|t| t.connected.load(Ordering::Relaxed))
        .count();
    let (rss_connected, _) = rss_kb();
    println!(
        "{connected} subscribers connected in {:.2} s; starting the upstream",
        wait.elapsed().as_secs_f64()
    );

    // ---- live phase ----
    let mut upstream_tasks = Vec::new();
    for (listener, frames) in upstreams.into_iter().zip(streams) {
        let mut rx = upstream_stop_rx.clone();
        let config = ReplayConfig {
            frames,
            rate: Some(args.rate / upstream_count as f64),
            looping: false,
            faults: vec![],
        };
        upstream_tasks.push(tokio::spawn(atelier_relay::sync::replay::run(
            config,
            listener,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        )));
    }
    let live_start = Instant::now();
    let mut rss_peak = rss_connected;
    let mut last_seq = 0;
    let mut last_change = Instant::now();
    println!("   t(s)  upstream in/s  logged/s   log seq  delivered/s     RSS MB");
    let mut prev_in = 0u64;
    let mut ingest_deltas = Vec::new();
    let mut delivered_deltas = Vec::new();
    let mut prev_delivered = 0u64;
    let mut prev_seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let text = fetch_metrics(&http, &base).await.unwrap_or_default();
        let seq = metric(&text, "atelier_relay_log_latest_seq");
        let events_in = metric(&text, "atelier_relay_events_in_total");
        let t = live_start.elapsed().as_secs_f64();
        let delivered: u64 = all_tallies
            .iter()
            .map(|t| t.messages.load(Ordering::Relaxed))
            .sum();
        let (rss, _) = rss_kb();
        rss_peak = rss_peak.max(rss);
        println!(
            "{t:7.1} {:14} {:9} {seq:9} {:12} {:10.1}",
            events_in.saturating_sub(prev_in),
            seq.saturating_sub(prev_seq),
            delivered.saturating_sub(prev_delivered),
            rss as f64 / 1024.0
        );
        if seq > prev_seq {
            ingest_deltas.push(seq - prev_seq);
            delivered_deltas.push(delivered.saturating_sub(prev_delivered));
        }
        prev_in = events_in;
        prev_seq = seq;
        prev_delivered = delivered;
        if seq != last_seq {
            last_seq = seq;
            last_change = Instant::now();
        }
        // The upstream sends for exactly `secs`; then the log gets up to 3 s to settle.
        if t >= args.secs as f64 - 0.01 {
            let _ = upstream_stop_tx.send(true);
        }
        if t > args.secs as f64 && last_change.elapsed() > Duration::from_secs(2)
            || t > args.secs as f64 + 3.0
        {
            break;
        }
    }
    // Let the fan-out drain: stop once no subscriber's count moved for a second.
    let mut prev = u64::MAX;
    for _ in 0..20 {
        let delivered: u64 = all_tallies
            .iter()
            .map(|t| t.messages.load(Ordering::Relaxed))
            .sum();
        if delivered == prev {
            break;
        }
        prev = delivered;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The live window: the upstream's sending time.
    let live_secs = args.secs as f64;
    let offered = metric(
        &fetch_metrics(&http, &base).await.unwrap_or_default(),
        "atelier_relay_events_in_total",
    );
    let metrics_text = fetch_metrics(&http, &base).await.unwrap_or_default();
    let logged = metric(&metrics_text, "atelier_relay_log_latest_seq");
    let (rss_live_end, _) = rss_kb();
    rss_peak = rss_peak.max(rss_live_end);

    // Steady rates: the median of the one-second samples in which the log grew, without
    // the first and the last (partial) seconds when there are enough.
    let steady = |v: &[u64]| {
        let inner = if v.len() > 4 { &v[1..v.len() - 1] } else { v };
        spread(inner.to_vec()).1
    };
    let ingest_rate = steady(&ingest_deltas);
    let delivered_rate = steady(&delivered_deltas);

    let js_counts: Vec<u64> = js_tallies
        .iter()
        .map(|t| t.messages.load(Ordering::Relaxed))
        .collect();
    let repo_counts: Vec<u64> = repo_tallies
        .iter()
        .map(|t| t.messages.load(Ordering::Relaxed))
        .collect();
    let ended = |ts: &[Arc<Tally>]| {
        ts.iter()
            .filter(|t| t.ended_early.load(Ordering::Relaxed))
            .count()
    };
    let (js_ended, repo_ended) = (ended(&js_tallies), ended(&repo_tallies));

    // ---- replay phase ----
    let (repos_n, repos_secs) = replay_reader(
        &format!("ws://{relay_addr}/xrpc/com.atproto.sync.subscribeRepos?cursor=0"),
        Some(logged),
    )
    .await?;
    let (js_n, js_secs) =
        replay_reader(&format!("ws://{relay_addr}/subscribe?cursor=0"), None).await?;
    let final_metrics = fetch_metrics(&http, &base).await.unwrap_or_default();

    // ---- stop ----
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let _ = relay_stop_tx.send(true);
    match relay.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("relay ended with an error: {e}"),
        Err(e) => eprintln!("relay task failed: {e}"),
    }
    for task in upstream_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("upstream replay ended with an error: {e}"),
            Err(e) => eprintln!("upstream replay task failed: {e}"),
        }
    }
    let (rss_end, hwm) = rss_kb();
    rss_peak = rss_peak.max(hwm);

    // ---- report ----
    let dropped = metric(&final_metrics, "atelier_relay_subscribers_dropped_total");
    let js_total: u64 = js_counts.iter().sum();
    let repo_total: u64 = repo_counts.iter().sum();
    let (js_min, js_med, js_max) = spread(js_counts);
    let (r_min, r_med, r_max) = spread(repo_counts);
    let mb = |kb: u64| kb as f64 / 1024.0;

    println!();
    println!("relay counters (/metrics):");
    for name in [
        "atelier_relay_events_in_total",
        "atelier_relay_refused_total",
        "atelier_relay_filtered_total",
        "atelier_relay_events_out_total",
        "atelier_relay_messages_sent_total",
    ] {
        for line in metric_lines(&final_metrics, name) {
            println!("  {name}{line}");
        }
    }
    println!();
    println!(
        "== relay_bench: {} Jetstream + {} subscribeRepos subscribers, upstream {} frames/s for {} s ==",
        args.subscribers, args.repos_subscribers, args.rate, args.secs
    );
    println!("{:<44} {:>16}", "measure", "value");
    let row = |k: &str, v: String| println!("{k:<44} {v:>16}");
    row("events logged", logged.to_string());
    row(
        "frames offered / taken in by the relay",
        format!("{} / {offered}", (args.rate * live_secs) as u64),
    );
    row(
        "live window: upstream sending (s)",
        format!("{live_secs:.1}"),
    );
    row(
        "ingest, median of 1 s samples (events/s)",
        ingest_rate.to_string(),
    );
    row(
        "ingest, whole window (events/s)",
        format!("{:.0}", logged as f64 / live_secs),
    );
    row(
        "all msgs delivered, median 1 s (msgs/s)",
        delivered_rate.to_string(),
    );
    row(
        "Jetstream msgs delivered, total/s",
        format!("{:.0}", js_total as f64 / live_secs),
    );
    row(
        "Jetstream msgs per subscriber min/med/max",
        format!("{js_min}/{js_med}/{js_max}"),
    );
    row(
        "Jetstream msgs/s per subscriber (median)",
        format!("{:.0}", js_med as f64 / live_secs),
    );
    row("Jetstream msgs in the log (cursor=0)", js_n.to_string());
    row(
        "subscribeRepos frames delivered, total/s",
        format!("{:.0}", repo_total as f64 / live_secs),
    );
    row(
        "subscribeRepos frames per sub min/med/max",
        format!("{r_min}/{r_med}/{r_max}"),
    );
    row(
        "all messages delivered, total/s",
        format!("{:.0}", (js_total + repo_total) as f64 / live_secs),
    );
    row(
        "subscribers ended early (js/repos)",
        format!("{js_ended}/{repo_ended}"),
    );
    row("subscribers_dropped_total", dropped.to_string());
    row(
        "Jetstream latency p50 / p99 (ms)",
        format!(
            "{:.1} / {:.1}",
            latency.quantile(0.5) as f64 / 1000.0,
            latency.quantile(0.99) as f64 / 1000.0
        ),
    );
    row(
        "Jetstream latency p99.9 / max (ms)",
        format!(
            "{:.1} / {:.1}",
            latency.quantile(0.999) as f64 / 1000.0,
            latency.max() as f64 / 1000.0
        ),
    );
    row(
        "RSS start / stream built / subs connected (MB)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            mb(rss_start),
            mb(rss_stream),
            mb(rss_connected)
        ),
    );
    row(
        "RSS peak / end (MB)",
        format!("{:.0} / {:.0}", mb(rss_peak), mb(rss_end)),
    );
    row(
        "replay subscribeRepos cursor=0 (ev/s)",
        format!(
            "{:.0} ({repos_n} in {repos_secs:.2} s)",
            repos_n as f64 / repos_secs.max(1e-6)
        ),
    );
    row(
        "replay Jetstream cursor=0 (msg/s)",
        format!(
            "{:.0} ({js_n} in {js_secs:.2} s)",
            js_n as f64 / js_secs.max(1e-6)
        ),
    );
    Ok(())
}
