//! Relay service benchmark: ingest rate, live fan-out, delivery latency, memory and
//! replay speed of [`atelier_relay::service::run`].
//!
//! The relay runs in a child process (this binary re-run with `--serve-relay`), so its
//! memory is measured alone; the upstreams and every subscriber run in this process, on
//! the same cores.
//!
//! Setup: replay upstreams ([`atelier_relay::sync::replay::run`]) serve a long stream
//! built from the firehose corpus (`<fixtures>/firehose-corpus/frames.bin.zst`, fixtures
//! dir `../shared/fixtures` from the workspace root or `$ATELIER_FIXTURES`), the corpus
//! repeated and renumbered with strictly increasing `seq`, `--rate` frames/s in total,
//! split over one upstream per 400 frames/s unless `--upstreams N` says otherwise. Each
//! pass over the corpus renames its accounts (see `rename_account`): repeated as is, every
//! commit after the first pass is refused as `stale_rev`. The relay follows the upstreams
//! as trusted `relay` upstreams (with `--verify`: verified, every renamed commit signed
//! again with a bench key that a loopback PLC stand-in serves in the renamed accounts' DID
//! documents) with the filter `app.bsky.*` (companions on), so most corpus
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
//!    covers log append + fan-out + WebSocket, not the upstream hop; every 8th message of
//!    each subscriber is sampled).
//! 3. **Memory**: the relay process's RSS (`VmRSS`, and `VmHWM` for the peak) once the
//!    subscribers are connected, at its peak and at the end; the bench process's own peak
//!    (upstreams and clients) is printed beside it.
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
use tokio::net::TcpListener;
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command-line options.
#[derive(Debug, Clone, Copy)]
struct Args {
    subscribers: usize,
    repos_subscribers: usize,
    rate: f64,
    secs: u64,
    /// Verify every commit (signatures, MST proofs) instead of trusting the upstreams.
    verify: bool,
    /// Upstream connections sharing `rate` (default: one per 400 frames/s).
    upstreams: Option<usize>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        subscribers: 200,
        repos_subscribers: 20,
        rate: 2000.0,
        secs: 20,
        verify: false,
        upstreams: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--verify" {
            args.verify = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--subscribers" => args.subscribers = value.parse()?,
            "--repos-subscribers" => args.repos_subscribers = value.parse()?,
            "--rate" => args.rate = value.parse()?,
            "--secs" => args.secs = value.parse()?,
            "--upstreams" => args.upstreams = Some(value.parse::<usize>()?.max(1)),
            other => {
                return Err(format!(
                    "unknown option {other} (use --subscribers N, --repos-subscribers N, --rate EV_PER_S, --secs S, --upstreams N, --verify)"
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

/// `VmRSS` and `VmHWM` of process `pid` (`None`: this one), in kB.
fn rss_kb(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let Ok(status) = std::fs::read_to_string(path) else {
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

/// CPU seconds (user + system) used so far by process `pid` (`None`: this one).
fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Linux reports these in USER_HZ, 100 on every mainstream configuration.
    (ticks(11) + ticks(12)) as f64 / 100.0
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

// ---- a counting WebSocket reader ----
//
// Hand-written on purpose: with 1,000 subscribers at 2,000 events/s the clients must cost
// far less than the relay, or the bench measures them. A full WebSocket client parses,
// unmasks checks and allocates per message; this one reads the socket in 64 kB chunks
// and only walks the frame headers (server frames are never masked), keeping the first
// bytes of a text frame so its `time_us` can be read for the latency histogram.

/// Bytes of a text frame kept for reading `time_us` (it follows `did` near the start).
const PREFIX: usize = 160;
/// One text frame in this many is sampled for latency (every one would make the clients
/// cost more than the relay's sending).
const SAMPLE_EVERY: u64 = 8;

/// Walks a server-to-client WebSocket byte stream frame by frame.
#[derive(Default)]
struct FrameWalker {
    header: Vec<u8>,
    remaining: u64,
    opcode: u8,
    /// Whether the current frame's prefix is kept.
    sampled: bool,
    frames: u64,
    prefix: Vec<u8>,
}

impl FrameWalker {
    /// Feeds bytes; calls `done(opcode, payload prefix)` for every complete frame (the
    /// prefix is empty unless the frame is a sampled text frame).
    fn feed(&mut self, mut data: &[u8], mut done: impl FnMut(u8, &[u8])) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                if self.sampled && self.prefix.len() < PREFIX {
                    let keep = (PREFIX - self.prefix.len()).min(take);
                    self.prefix.extend_from_slice(&data[..keep]);
                }
                self.remaining -= take as u64;
                data = &data[take..];
                if self.remaining == 0 {
                    done(self.opcode, &self.prefix);
                }
                continue;
            }
            self.header.push(data[0]);
            data = &data[1..];
            if let Some(len) = self.header_complete() {
                self.opcode = self.header[0] & 0x0F;
                self.sampled = self.opcode == 1 && self.frames.is_multiple_of(SAMPLE_EVERY);
                self.frames += 1;
                self.header.clear();
                self.prefix.clear();
                self.remaining = len;
                if len == 0 {
                    done(self.opcode, &[]);
                }
            }
        }
    }

    /// The payload length once the header is complete.
    fn header_complete(&self) -> Option<u64> {
        let h = &self.header;
        if h.len() < 2 {
            return None;
        }
        let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
        let (size, len) = match h[1] & 0x7F {
            126 if h.len() >= 4 => (4, u64::from(u16::from_be_bytes([h[2], h[3]]))),
            127 if h.len() >= 10 => (10, u64::from_be_bytes(h[2..10].try_into().ok()?)),
            126 | 127 => return None,
            n => (2, u64::from(n)),
        };
        (h.len() >= size + mask).then_some(len)
    }
}

/// Opens a WebSocket to `url` (`ws://host:port/path`); returns the stream and any bytes
/// that came after the handshake.
async fn ws_connect(url: &str) -> Result<(tokio::net::TcpStream, Vec<u8>), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("ws://").ok_or("ws:// URLs only")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed during the WebSocket handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
                return Err(format!("WebSocket upgrade refused: {line}").into());
            }
            return Ok((stream, buf[end + 4..].to_vec()));
        }
        if buf.len() > 16 << 10 {
            return Err("oversized handshake response".into());
        }
    }
}

/// Reads `url` until `stop`, counting messages (and Jetstream latencies into `latency`).
async fn subscriber(
    url: String,
    tally: Arc<Tally>,
    latency: Option<Arc<Histogram>>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let (mut stream, early) = match ws_connect(&url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("subscriber could not connect to {url}: {e}");
            tally.ended_early.store(true, Ordering::Relaxed);
            return;
        }
    };
    tally.connected.store(true, Ordering::Relaxed);
    let mut walker = FrameWalker::default();
    let closed = AtomicBool::new(false);
    let mut on_frame = |opcode: u8, prefix: &[u8]| match opcode {
        1 | 2 => {
            if !prefix.is_empty()
                && let Some(h) = &latency
                && let Some(t) = std::str::from_utf8(prefix).ok().and_then(time_us)
            {
                h.record(u64::try_from(now_us() - t).unwrap_or(0));
            }
            tally.messages.fetch_add(1, Ordering::Relaxed);
        }
        8 => closed.store(true, Ordering::Relaxed),
        _ => {}
    };
    walker.feed(&early, &mut on_frame);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    walker.feed(&buf[..n], &mut on_frame);
                    if closed.load(Ordering::Relaxed) {
                        break;
                    }
                }
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
    use tokio::io::AsyncReadExt;
    let (mut stream, early) = ws_connect(url).await?;
    let start = Instant::now();
    let n = std::cell::Cell::new(0u64);
    let mut last = start;
    let mut walker = FrameWalker::default();
    let mut count = |opcode: u8, _: &[u8]| {
        if opcode == 1 || opcode == 2 {
            n.set(n.get() + 1);
        }
    };
    walker.feed(&early, &mut count);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(k)) => {
                walker.feed(&buf[..k], &mut count);
                last = Instant::now();
                if expected.is_some_and(|e| n.get() >= e) {
                    break;
                }
            }
        }
    }
    Ok((n.get(), last.duration_since(start).as_secs_f64()))
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
/// the frame's `commit` and op CIDs), until every block matches its CID again. Without a
/// `signer` the signatures no longer verify, which the relay skips for a trusted upstream;
/// with one, every commit block is signed again with the signer's key (which the bench's
/// DID server gives as the renamed account's key), so the relay can verify it all.
/// `did` renamed for pass `pass`: its last 4 characters replaced by the pass number in
/// the did:plc alphabet (pass 0: unchanged).
fn pass_did(did: &str, pass: usize) -> Option<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    if pass == 0 {
        return Some(did.to_owned());
    }
    if did.len() < 12 || !did.is_ascii() {
        return None;
    }
    let mut suffix = [0u8; 4];
    let mut n = pass;
    for c in suffix.iter_mut().rev() {
        *c = ALPHABET[n % 32];
        n /= 32;
    }
    let mut new_did = did.as_bytes().to_vec();
    let at = new_did.len() - suffix.len();
    new_did[at..].copy_from_slice(&suffix);
    String::from_utf8(new_did).ok()
}

/// The bench's signing key for renamed accounts (`--verify`).
struct Signer {
    secret: secp256k1::SecretKey,
    multikey: String,
}

impl Signer {
    fn new() -> Signer {
        let secret = loop {
            if let Ok(key) = secp256k1::SecretKey::from_byte_array(rand::random::<[u8; 32]>()) {
                break key;
            }
        };
        let public = secp256k1::PublicKey::from_secret_key(&secp256k1::Secp256k1::new(), &secret);
        Signer {
            secret,
            multikey: atelier_relay::sync::keys::PublicKey::K256(public).to_multikey(),
        }
    }

    /// `(old signature, new signature)` for a commit block whose signature is not ours.
    fn resign(&self, block: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        use sha2::{Digest, Sha256};
        // The `sig` entry: text key "sig", then a 64-byte byte string.
        const SIG_KEY: &[u8] = b"\x63sig\x58\x40";
        let unsigned = atelier_relay::sync::verify::unsigned_commit_bytes(block).ok()?;
        let at = block.windows(SIG_KEY.len()).position(|w| w == SIG_KEY)? + SIG_KEY.len();
        let old = block.get(at..at + 64)?.to_vec();
        let digest: [u8; 32] = Sha256::digest(&unsigned).into();
        let new = secp256k1::Secp256k1::new()
            .sign_ecdsa(secp256k1::Message::from_digest(digest), &self.secret)
            .serialize_compact()
            .to_vec();
        (old != new).then_some((old, new))
    }
}

fn rename_account(frame: &[u8], pass: usize, signer: Option<&Signer>) -> Option<Vec<u8>> {
    use atelier_relay::sync::car::Car;
    use atelier_relay::sync::frame::{Frame, decode};
    use sha2::{Digest, Sha256};

    if pass == 0 {
        return None;
    }
    let did = decode(frame).ok()?.did()?.to_owned();
    let new_did = pass_did(&did, pass)?;
    let mut out = frame.to_vec();
    replace_all(&mut out, did.as_bytes(), new_did.as_bytes());
    for _ in 0..16 {
        let fixes: Vec<(Vec<u8>, Vec<u8>)> = {
            let blocks = match decode(&out).ok()? {
                Frame::Commit(c) => c.blocks,
                Frame::Sync(s) => s.blocks,
                _ => return Some(out),
            };
            let car = Car::parse_unverified(blocks).ok()?;
            // A changed commit block is signed again first; its new digest is fixed in the
            // next round.
            let resign: Vec<(Vec<u8>, Vec<u8>)> = match signer {
                Some(signer) => car
                    .blocks()
                    .filter(|b| !b.cid.matches(b.data))
                    .filter_map(|b| signer.resign(b.data))
                    .collect(),
                None => Vec::new(),
            };
            if !resign.is_empty() {
                resign
            } else {
                car.blocks()
                    .filter(|b| !b.cid.matches(b.data))
                    .map(|b| (b.cid.digest().to_vec(), Sha256::digest(b.data).to_vec()))
                    .collect()
            }
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

// ---- DID documents for `--verify` ----

/// Adds the DID document of `frame`'s account as renamed for `pass`: the corpus document
/// with the new DID and, for a renamed account, the signer's key.
fn add_doc(
    docs: &mut std::collections::HashMap<String, serde_json::Value>,
    corpus_docs: &serde_json::Map<String, serde_json::Value>,
    frame: &[u8],
    pass: usize,
    signer: &Signer,
) {
    let Some(did) = atelier_relay::sync::frame::decode(frame)
        .ok()
        .and_then(|f| f.did().map(str::to_owned))
    else {
        return;
    };
    let (Some(new_did), Some(doc)) = (pass_did(&did, pass), corpus_docs.get(&did)) else {
        return;
    };
    if docs.contains_key(&new_did) {
        return;
    }
    let mut doc = serde_json::from_str::<serde_json::Value>(
        &doc.to_string().replace(did.as_str(), new_did.as_str()),
    )
    .unwrap_or_default();
    if pass > 0
        && let Some(methods) = doc["verificationMethod"].as_array_mut()
    {
        for m in methods {
            m["type"] = "Multikey".into();
            m["publicKeyMultibase"] = signer.multikey.clone().into();
        }
    }
    docs.insert(new_did, doc);
}

/// Serves `GET /{did}` from `docs` on loopback, as a PLC directory would; returns its URL.
async fn serve_did_docs(
    docs: std::collections::HashMap<String, serde_json::Value>,
) -> Result<String, BoxError> {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    async fn doc(
        State(docs): State<Arc<std::collections::HashMap<String, serde_json::Value>>>,
        Path(did): Path<String>,
    ) -> Response {
        match docs.get(&did) {
            Some(doc) => axum::Json(doc.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/{did}", axum::routing::get(doc))
        .with_state(Arc::new(docs));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("DID document server failed: {e}");
        }
    });
    Ok(url)
}

// ---- the relay, in a child process ----

/// The argument that makes this binary run the relay (see [`serve_relay`]).
const SERVE_RELAY: &str = "--serve-relay";

/// The relay child: its address and pid, and its stdin (closing it stops the relay).
struct RelayChild {
    addr: std::net::SocketAddr,
    pid: Option<u32>,
    child: tokio::process::Child,
}

impl RelayChild {
    /// Stops the relay (stdin closed) and waits for it to exit.
    async fn stop(mut self) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??;
        if !status.success() {
            return Err(format!("the relay process exited with {status}").into());
        }
        Ok(())
    }
}

/// Starts this binary as the relay, following `upstreams`, and reads the address it
/// listens on from its first line of output.
async fn spawn_relay(
    dir: &std::path::Path,
    upstreams: &[UpstreamConfig],
    max_subscribers: usize,
    plc_url: Option<&str>,
) -> Result<RelayChild, BoxError> {
    use tokio::io::AsyncBufReadExt;
    let urls: Vec<&str> = upstreams.iter().map(|u| u.url.as_str()).collect();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg(SERVE_RELAY)
        .arg(dir)
        .arg(urls.join(","))
        .arg(max_subscribers.to_string())
        .arg(plc_url.unwrap_or("-"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the relay process")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| "the relay process did not start within 10 s")??
        .ok_or("the relay process exited before listening")?;
    let addr = line
        .strip_prefix("listening ")
        .ok_or_else(|| format!("unexpected first line from the relay process: {line}"))?
        .parse()?;
    Ok(RelayChild {
        addr,
        pid: child.id(),
        child,
    })
}

/// The child side: `--serve-relay DIR UPSTREAM_URLS MAX_SUBSCRIBERS PLC_URL` (`-`: trust
/// the upstreams). Listens on 127.0.0.1 port 0, prints `listening ADDR`, and stops when
/// stdin closes.
async fn serve_relay() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let [dir, urls, max, plc] = args.as_slice() else {
        return Err(
            format!("usage: {SERVE_RELAY} DIR UPSTREAM_URLS MAX_SUBSCRIBERS PLC_URL").into(),
        );
    };
    let trusted = plc == "-";
    let dir = PathBuf::from(dir);
    let config = RelayConfig {
        data_dir: dir.join("relay"),
        upstreams: urls
            .split(',')
            .map(|url| UpstreamConfig {
                url: url.to_owned(),
                kind: UpstreamKind::Relay,
                trusted,
            })
            .collect(),
        plc_url: if trusted {
            RelayConfig::default().plc_url
        } else {
            plc.clone()
        },
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
            max: max.parse()?,
            ..SubscriberLimits::default()
        },
        allow_loopback: true,
        admin_tokens_file: dir.join("admin_tokens"),
        ..RelayConfig::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    // Watched on a blocking thread: tokio's stdin needs a feature nothing else uses.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    });
    let stdin_closed = async move {
        let _ = stdin_closed.await;
    };
    atelier_relay::service::run(config, listener, stdin_closed).await?;
    Ok(())
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
    if std::env::args().nth(1).as_deref() == Some(SERVE_RELAY) {
        return serve_relay().await;
    }
    let args = parse_args()?;
    let (rss_start, _) = rss_kb(None);

    // ---- the upstream stream ----
    let corpus_path = fixtures_dir().join("firehose-corpus/frames.bin.zst");
    let corpus = FrameFile::read(&corpus_path)
        .map_err(|e| format!("cannot read the corpus {}: {e}", corpus_path.display()))?;
    // Several upstreams share the rate, like a relay following many PDS hosts.
    let upstream_count = args
        .upstreams
        .unwrap_or_else(|| (args.rate / PER_UPSTREAM_RATE).ceil().max(1.0) as usize);
    let wanted = (args.rate * args.secs as f64 / upstream_count as f64).ceil() as usize;
    let mut streams: Vec<Vec<Bytes>> = Vec::with_capacity(upstream_count);
    let mut skipped = 0usize;
    let signer = args.verify.then(Signer::new);
    let corpus_docs = if args.verify {
        let path = fixtures_dir().join("firehose-corpus/did_docs.json.zst");
        let packed =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&zstd::decode_all(
            &packed[..],
        )?)?
    } else {
        serde_json::Map::new()
    };
    // The DID documents the bench's PLC stand-in serves (`--verify`).
    let mut docs: std::collections::HashMap<String, serde_json::Value> =
        std::collections::HashMap::new();
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
                let renamed = rename_account(frame, pass, signer.as_ref());
                if let Some(signer) = &signer {
                    add_doc(&mut docs, &corpus_docs, frame, pass, signer);
                }
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
        "corpus: {} frames; {upstream_count} upstream(s) x {} frames ({skipped} skipped) at {:.0} frames/s each, DIDs renamed per pass; {}",
        corpus.len(),
        wanted,
        args.rate / upstream_count as f64,
        if args.verify {
            "commits re-signed and verified by the relay (DID documents from a loopback PLC stand-in)"
        } else {
            "upstreams trusted (not verified)"
        }
    );
    let plc = if args.verify {
        Some(serve_did_docs(docs).await?)
    } else {
        None
    };

    // ---- servers ----
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
    let dir = tempfile::tempdir()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (upstream_stop_tx, upstream_stop_rx) = watch::channel(false);
    let (rss_stream, _) = rss_kb(None);
    let relay = spawn_relay(
        dir.path(),
        &upstream_configs,
        args.subscribers + args.repos_subscribers + 16,
        plc.as_deref(),
    )
    .await?;
    let relay_addr = relay.addr;
    let relay_pid = relay.pid;
    let base = format!("http://{relay_addr}");
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
    let (rss_connected, _) = rss_kb(relay_pid);
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
    let (relay_cpu_start, bench_cpu_start) = (cpu_secs(relay_pid), cpu_secs(None));
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
        let (rss, _) = rss_kb(relay_pid);
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
    let live_wall = live_start.elapsed().as_secs_f64();
    let relay_cores = (cpu_secs(relay_pid) - relay_cpu_start) / live_wall;
    let bench_cores = (cpu_secs(None) - bench_cpu_start) / live_wall;
    let (rss_live_end, relay_hwm) = rss_kb(relay_pid);
    rss_peak = rss_peak.max(rss_live_end).max(relay_hwm);

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
    let (rss_end, relay_hwm) = rss_kb(relay_pid);
    rss_peak = rss_peak.max(relay_hwm);
    relay.stop().await?;
    for task in upstream_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("upstream replay ended with an error: {e}"),
            Err(e) => eprintln!("upstream replay task failed: {e}"),
        }
    }
    let (_, bench_hwm) = rss_kb(None);

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
        "CPU cores used, live phase: relay / bench",
        format!("{relay_cores:.2} / {bench_cores:.2}"),
    );
    row(
        "relay RSS subs connected / peak / end (MB)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            mb(rss_connected),
            mb(rss_peak),
            mb(rss_end)
        ),
    );
    row(
        "bench process RSS start / built / peak (MB)",
        format!(
            "{:.0} / {:.0} / {:.0}",
            mb(rss_start),
            mb(rss_stream),
            mb(bench_hwm)
        ),
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
