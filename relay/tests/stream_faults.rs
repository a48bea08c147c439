//! [`SyncStream`] over real loopback sockets: the 150-frame firehose corpus served by a
//! [`ReplayServer`], keys resolved from the corpus's DID documents through a loopback "PLC"
//! (nothing leaves the machine), and faults injected on the wire.
//!
//! What this proves:
//! - clean: all 148 `#commit` frames arrive as fully verified commits (144 creates, 2
//!   updates, 4 deletes, every record's bytes matching its CID), plus the `#identity` and
//!   `#account` frames, with no rejection; each DID is resolved once (again only after the
//!   `#identity` that invalidated it);
//! - a flipped byte inside a record block is `cid_mismatch`; a flipped signature byte (with
//!   the commit re-CIDed, so only the signature is wrong) is `bad_signature` after exactly
//!   one key refresh; a flipped byte in `prevData` is `inversion_failed`;
//! - a truncated frame is a client-level `BadFrame`, the client reconnects from its cursor
//!   and the frame arrives intact; a stalled upstream trips the idle watchdog, the client
//!   reconnects from its cursor and the rest arrives;
//! - after every fault the frames behind it all arrive, and `stats().rejected()` counts
//!   each reason once; all the faults together in one connection compose.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_relay::sync::cbor::{self, CidRef};
use atelier_relay::sync::client::{ClientConfig, ClientEvent, DisconnectReason};
use atelier_relay::sync::frame::{self, Action, Frame};
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::replay::{Fault, FaultKind, ReplayConfig, ReplayServer};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_relay::sync::stream::{CommitEvent, SyncConfig, SyncEvent, SyncStats, SyncStream};
use atelier_relay::sync::verify::{AccountState, SyncStatus, VerifyMode};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every run finishes well within this, or fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The corpus and a loopback DID server
// ---------------------------------------------------------------------------------------------

/// The corpus frames, their seqs, and the DID documents of every committing account.
struct Corpus {
    frames: Vec<Bytes>,
    seqs: Vec<i64>,
    docs: serde_json::Map<String, serde_json::Value>,
}

impl Corpus {
    fn load() -> Corpus {
        let frames: Vec<Bytes> = support::corpus_frames()
            .into_iter()
            .map(Bytes::from)
            .collect();
        assert_eq!(frames.len(), 150, "the corpus has 150 frames");
        let seqs = frames
            .iter()
            .map(|f| {
                frame::decode(f)
                    .expect("corpus frames decode")
                    .seq()
                    .expect("corpus frames have a seq")
            })
            .collect();
        let packed = support::fixture_bytes("firehose-corpus/did_docs.json.zst");
        let raw = zstd::decode_all(&packed[..]).expect("did_docs.json.zst decompresses");
        let docs = serde_json::from_slice(&raw).expect("DID docs are a JSON object");
        Corpus { frames, seqs, docs }
    }

    fn last_seq(&self) -> i64 {
        *self.seqs.last().expect("frames")
    }

    /// `(index, repo)` of every `#commit` frame.
    fn commit_repos(&self) -> Vec<(usize, String)> {
        self.frames
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match frame::decode(f).expect("decodes") {
                Frame::Commit(c) => Some((i, c.repo.to_owned())),
                _ => None,
            })
            .collect()
    }

    /// Indexes of commits that are safe fault targets: the account commits only once in
    /// the window (so rejecting it cannot turn a later commit into a gap), the commit has a
    /// create with its record and a `prevData`.
    fn single_commit_targets(&self) -> Vec<usize> {
        let repos = self.commit_repos();
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, repo) in &repos {
            *count.entry(repo).or_default() += 1;
        }
        repos
            .iter()
            .filter(|(_, repo)| count[repo.as_str()] == 1)
            .filter(|(i, _)| {
                let Frame::Commit(c) = frame::decode(&self.frames[*i]).unwrap() else {
                    unreachable!()
                };
                c.prev_data.is_some()
                    && c.since.is_some()
                    && c.ops
                        .iter()
                        .any(|op| op.action == Action::Create && op.cid.is_some())
            })
            .map(|(i, _)| *i)
            .collect()
    }

    /// Three fault targets spread over the window (a quarter, half and three quarters in),
    /// so plenty of frames come before and after each.
    fn spread_targets(&self) -> [usize; 3] {
        let targets = self.single_commit_targets();
        assert!(targets.len() >= 8, "enough fault targets: {targets:?}");
        let n = targets.len();
        [targets[n / 4], targets[n / 2], targets[3 * n / 4]]
    }

    /// The repository of the commit frame at `index`.
    fn repo_at(&self, index: usize) -> String {
        let Frame::Commit(commit) = frame::decode(&self.frames[index]).expect("decodes") else {
            panic!("frame {index} is a commit")
        };
        commit.repo.to_owned()
    }

    /// How many frames come after index `at`.
    fn after(&self, at: usize) -> usize {
        self.frames.len() - at - 1
    }
}

/// A loopback HTTP server answering `GET /{did}` with the corpus's DID documents (404 for
/// anything else), counting requests per path: a stand-in for plc.directory.
struct DidServer {
    addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl DidServer {
    async fn start(docs: &serde_json::Map<String, serde_json::Value>) -> DidServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let docs: Arc<HashMap<String, String>> = Arc::new(
            docs.iter()
                .map(|(did, doc)| (format!("/{did}"), doc.to_string()))
                .collect(),
        );
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let docs = docs.clone();
                let hits = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        let mut chunk = [0u8; 1024];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let mut parts = head.split_whitespace();
                    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    *hits.lock().unwrap().entry(path.to_owned()).or_default() += 1;
                    let (status, body) = match docs.get(path) {
                        Some(doc) if method == "GET" => ("200 OK", doc.as_str()),
                        _ => ("404 Not Found", "{\"message\":\"DID not registered\"}"),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        DidServer { addr, hits }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self, did: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .get(&format!("/{did}"))
            .copied()
            .unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Running a stream against a replay
// ---------------------------------------------------------------------------------------------

/// Everything one run delivered, sorted by kind.
struct Run {
    commits: Vec<CommitEvent>,
    /// `(seq, did, reason, error)`.
    rejected: Vec<(Option<i64>, Option<String>, &'static str, String)>,
    identities: Vec<(i64, String)>,
    accounts: Vec<(i64, String)>,
    /// Client events other than lag reports, in order.
    upstream: Vec<ClientEvent>,
    /// The seq of every frame-level event (commit, rejection, identity, account), in the
    /// order delivered.
    order: Vec<i64>,
    stats: Arc<SyncStats>,
    did_server: DidServer,
}

impl Run {
    /// How many frames after `seq` were delivered (as a commit, identity, account or
    /// rejection).
    fn delivered_after(&self, seq: i64) -> usize {
        let commits = self.commits.iter().filter(|c| c.seq > seq).count();
        let rejected = self
            .rejected
            .iter()
            .filter(|r| r.0.is_some_and(|s| s > seq))
            .count();
        let identities = self.identities.iter().filter(|i| i.0 > seq).count();
        let accounts = self.accounts.iter().filter(|a| a.0 > seq).count();
        commits + rejected + identities + accounts
    }

    fn reasons(&self) -> BTreeMap<&'static str, u64> {
        let mut map = BTreeMap::new();
        for (_, _, reason, _) in &self.rejected {
            *map.entry(*reason).or_default() += 1;
        }
        map
    }

    /// Every corpus frame was delivered exactly once, in seq order.
    fn assert_in_order(&self, corpus: &Corpus) {
        assert_eq!(
            self.order, corpus.seqs,
            "every corpus frame is delivered once, in order"
        );
    }
}

/// Serves the corpus with `faults`, runs a fully verifying [`SyncStream`] (resync off) on
/// it until the corpus's last seq has been delivered, and returns what arrived.
async fn run(corpus: &Corpus, faults: Vec<Fault>, tweak: impl FnOnce(&mut ClientConfig)) -> Run {
    run_from(corpus, faults, tweak, HashMap::new()).await
}

/// [`run`], with the verifier starting from saved per-account state.
async fn run_from(
    corpus: &Corpus,
    faults: Vec<Fault>,
    tweak: impl FnOnce(&mut ClientConfig),
    accounts: HashMap<String, AccountState>,
) -> Run {
    let did_server = DidServer::start(&corpus.docs).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let replay = ReplayServer::spawn(
        ReplayConfig {
            faults,
            ..ReplayConfig::new(corpus.frames.clone())
        },
        listener,
    )
    .expect("replay config");

    let mut client = ClientConfig::new(&replay.url()).expect("replay URL");
    client.backoff_base = Duration::from_millis(20);
    client.backoff_max = Duration::from_millis(200);
    tweak(&mut client);
    let http = GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client");
    let resolver = Resolver::new(ResolverConfig::sandbox(did_server.url()), http);
    let mut config = SyncConfig::new(client, resolver, None);
    config.accounts = accounts;
    assert_eq!(config.mode, VerifyMode::Full);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stream = SyncStream::start(config, async move {
        let _ = stopped.await;
    })
    .expect("stream starts");

    let last = corpus.last_seq();
    let mut out = Run {
        commits: Vec::new(),
        rejected: Vec::new(),
        identities: Vec::new(),
        accounts: Vec::new(),
        upstream: Vec::new(),
        order: Vec::new(),
        stats: stream.stats(),
        did_server,
    };
    let collect = async {
        loop {
            let event = stream.recv().await.expect("the stream keeps running");
            let seq = match event {
                SyncEvent::Commit(commit) => {
                    let seq = commit.seq;
                    out.commits.push(commit);
                    Some(seq)
                }
                SyncEvent::Rejected {
                    seq,
                    did,
                    reason,
                    error,
                } => {
                    out.rejected.push((seq, did, reason, error));
                    seq
                }
                SyncEvent::Identity { seq, did, .. } => {
                    out.identities.push((seq, did));
                    Some(seq)
                }
                SyncEvent::Account { seq, did, .. } => {
                    out.accounts.push((seq, did));
                    Some(seq)
                }
                SyncEvent::Upstream(ClientEvent::Lag { .. }) => None,
                SyncEvent::Upstream(other) => {
                    out.upstream.push(other);
                    None
                }
                other => panic!("unexpected event from a replay without #sync: {other:?}"),
            };
            if let Some(seq) = seq {
                out.order.push(seq);
            }
            if seq == Some(last) {
                return;
            }
        }
    };
    if tokio::time::timeout(RUN_TIMEOUT, collect).await.is_err() {
        panic!(
            "the stream did not deliver seq {last} within {RUN_TIMEOUT:?}: {} commits, rejected {:?}, upstream {:?}",
            out.commits.len(),
            out.reasons(),
            out.upstream
        );
    }
    let _ = stop.send(());
    replay.shutdown().await.expect("replay server stops");
    out
}

/// Where `part` (a subslice of `whole`) starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    let offset = (part.as_ptr() as usize)
        .checked_sub(whole.as_ptr() as usize)
        .expect("part lies inside whole");
    assert!(offset + part.len() <= whole.len(), "part lies inside whole");
    offset
}

/// Every position of `needle` in `haystack`.
fn positions(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The offset, in frame `index`, of a byte in the middle of a created record's block.
fn record_byte_offset(corpus: &Corpus, index: usize) -> usize {
    let bytes = &corpus.frames[index];
    let Frame::Commit(commit) = frame::decode(bytes).expect("decodes") else {
        panic!("frame {index} is a commit")
    };
    let car = commit.car().expect("CAR parses");
    let cid = commit
        .ops
        .iter()
        .find(|op| op.action == Action::Create)
        .and_then(|op| op.cid)
        .expect("a create");
    let record = car.get(&cid).expect("the record is in the CAR");
    offset_in(bytes, record) + record.len() / 2
}

/// The offset, in frame `index`, of a byte inside the digest of the `prevData` CID.
fn prev_data_byte_offset(corpus: &Corpus, index: usize) -> usize {
    let bytes = &corpus.frames[index];
    // "prevData" (text, 8 bytes), then tag 42, bytes(37), 0x00, CIDv1 dag-cbor sha2-256.
    let marker = b"\x68prevData\xd8\x2a\x58\x25\x00\x01\x71\x12\x20";
    let found = positions(bytes, marker);
    assert_eq!(found.len(), 1, "one prevData link in frame {index}");
    found[0] + marker.len() + 7
}

/// Frame `index` with one signature byte flipped and the commit re-CIDed over the altered
/// block (frame `commit`, CAR root and block CID all rewritten), so the frame and its CAR
/// are consistent and only the signature is wrong.
fn bad_signature_frame(corpus: &Corpus, index: usize) -> Bytes {
    let original = &corpus.frames[index];
    let Frame::Commit(commit) = frame::decode(original).expect("decodes") else {
        panic!("frame {index} is a commit")
    };
    let car = commit.car().expect("CAR parses");
    let block = car.get(&commit.commit).expect("commit block");
    let block_at = offset_in(original, block);
    let sig_marker = [0x63, b's', b'i', b'g', 0x58, 0x40];
    let sig_at = positions(block, &sig_marker)
        .first()
        .copied()
        .expect("sig entry")
        + sig_marker.len();
    let old_cid = commit.commit.bytes().to_vec();

    let mut bytes = original.to_vec();
    bytes[block_at + sig_at + 10] ^= 0x01;
    let new_cid = cbor::cid_bytes_for(cbor::DAG_CBOR, &bytes[block_at..block_at + block.len()]);
    let found = positions(&bytes, &old_cid);
    assert_eq!(
        found.len(),
        3,
        "the commit CID appears as the frame's commit, the CAR root and the block's CID"
    );
    for at in found {
        bytes[at..at + old_cid.len()].copy_from_slice(&new_cid);
    }
    // Still a well-formed frame that names the altered commit.
    let Frame::Commit(altered) = frame::decode(&bytes).expect("altered frame decodes") else {
        unreachable!()
    };
    assert_eq!(altered.commit, CidRef::from_bytes(&new_cid).unwrap());
    assert!(altered.car().is_ok(), "the altered CAR's CIDs all check");
    bytes.into()
}

/// The run's only rejection, which must have `reason`: its seq, DID and error text. A
/// verification failure leaves the connection alone.
fn the_one_rejection(run: &Run, reason: &str) -> (i64, String, String) {
    assert_eq!(run.rejected.len(), 1, "one rejection: {:?}", run.rejected);
    assert_eq!(
        run.upstream,
        vec![ClientEvent::Connected { cursor: None }],
        "one connection throughout"
    );
    let (seq, did, got, error) = run.rejected[0].clone();
    assert_eq!(got, reason, "{error}");
    (seq.expect("seq"), did.expect("did"), error)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_replay_delivers_every_commit_verified() {
    let corpus = Corpus::load();
    let run = run(&corpus, Vec::new(), |_| {}).await;

    assert!(run.rejected.is_empty(), "no rejection: {:?}", run.rejected);
    assert_eq!(run.commits.len(), 148);
    assert_eq!(run.identities.len(), 1);
    assert_eq!(run.accounts.len(), 1);
    run.assert_in_order(&corpus);
    let (mut creates, mut updates, mut deletes, mut records) = (0, 0, 0, 0);
    for commit in &run.commits {
        assert!(commit.fully_verified, "seq {}", commit.seq);
        assert_eq!(
            commit.status,
            SyncStatus::Synchronized,
            "seq {}",
            commit.seq
        );
        let index = corpus.seqs.iter().position(|s| *s == commit.seq).unwrap();
        assert_eq!(
            commit.frame, corpus.frames[index],
            "the frame is passed on as received"
        );
        for op in &commit.ops {
            match op.action {
                Action::Create => creates += 1,
                Action::Update => updates += 1,
                Action::Delete => deletes += 1,
            }
            if let (Some(cid), Some(record)) = (&op.cid, &op.record) {
                let computed = cbor::cid_bytes_for(cbor::DAG_CBOR, record);
                assert_eq!(
                    &CidRef::from_bytes(&computed).unwrap().to_string(),
                    cid,
                    "record bytes hash to the op's CID"
                );
                records += 1;
            }
        }
    }
    assert_eq!((creates, updates, deletes, records), (144, 2, 4, 146));

    // Counters agree with what was delivered.
    assert_eq!(run.stats.frames(), 150);
    assert_eq!(run.stats.commits(), 148);
    assert_eq!(run.stats.resyncs(), 0);
    assert!(run.stats.rejected().is_empty());
    // One connection, no trouble.
    assert!(
        matches!(
            run.upstream.as_slice(),
            [ClientEvent::Connected { cursor: None }]
        ),
        "{:?}",
        run.upstream
    );

    // Each DID is fetched once, and again only after an #identity dropped it from the cache.
    let mut cached: HashSet<&str> = HashSet::new();
    let mut expected: HashMap<&str, usize> = HashMap::new();
    for bytes in &corpus.frames {
        match frame::decode(bytes).expect("decodes") {
            Frame::Commit(c) if cached.insert(c.repo) => {
                *expected.entry(c.repo).or_default() += 1;
            }
            Frame::Identity(i) => {
                cached.remove(i.did);
            }
            _ => {}
        }
    }
    for (did, fetches) in &expected {
        assert_eq!(run.did_server.hits(did), *fetches, "fetches of {did}");
    }
    assert_eq!(
        run.did_server.total_hits(),
        expected.values().sum::<usize>(),
        "no other DID was fetched"
    );
    println!(
        "clean replay: {} commits verified ({creates} creates, {updates} updates, {deletes} deletes, {records} records), {} DID fetches for {} accounts",
        run.commits.len(),
        run.did_server.total_hits(),
        expected.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_record_byte_is_cid_mismatch() {
    let corpus = Corpus::load();
    let at = corpus.spread_targets()[0];
    let offset = record_byte_offset(&corpus, at);
    let faults = vec![Fault {
        at,
        kind: FaultKind::FlipByte { offset },
    }];
    let run = run(&corpus, faults, |_| {}).await;

    let (seq, did, error) = the_one_rejection(&run, "cid_mismatch");
    assert_eq!(seq, corpus.seqs[at]);
    assert_eq!(did, corpus.repo_at(at));
    assert_eq!(run.commits.len(), 147, "{error}");
    assert!(run.commits.iter().all(|c| c.fully_verified));
    assert_eq!(run.delivered_after(seq), corpus.after(at));
    run.assert_in_order(&corpus);
    assert_eq!(run.stats.rejected(), BTreeMap::from([("cid_mismatch", 1)]));
    assert_eq!(run.stats.commits(), 147);
    assert_eq!(run.stats.frames(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_signature_byte_is_bad_signature_after_one_refresh() {
    let corpus = Corpus::load();
    let at = corpus.spread_targets()[1];
    let altered = bad_signature_frame(&corpus, at);
    // The altered frame goes out in place of the original.
    let faults = vec![
        Fault {
            at,
            kind: FaultKind::Inject(altered),
        },
        Fault {
            at,
            kind: FaultKind::Drop,
        },
    ];
    let run = run(&corpus, faults, |_| {}).await;

    let (seq, did, error) = the_one_rejection(&run, "bad_signature");
    assert_eq!(seq, corpus.seqs[at]);
    assert!(error.contains("signature"), "{error}");
    // Resolved once, refreshed once (same key: the signature really is bad).
    assert_eq!(
        run.did_server.hits(&did),
        2,
        "one resolution and one refresh"
    );
    assert_eq!(run.commits.len(), 147);
    assert_eq!(run.delivered_after(seq), corpus.after(at));
    run.assert_in_order(&corpus);
    assert_eq!(run.stats.rejected(), BTreeMap::from([("bad_signature", 1)]));
    assert_eq!(run.stats.commits(), 147);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_prev_data_fails_inversion() {
    let corpus = Corpus::load();
    let at = corpus.spread_targets()[2];
    let offset = prev_data_byte_offset(&corpus, at);
    let faults = vec![Fault {
        at,
        kind: FaultKind::FlipByte { offset },
    }];
    let run = run(&corpus, faults, |_| {}).await;

    // The account is first seen here, so there is no chain to break: the ops, undone on the
    // commit's tree, reach the real previous root, which is not the altered prevData.
    let (seq, _did, error) = the_one_rejection(&run, "inversion_failed");
    assert_eq!(seq, corpus.seqs[at]);
    assert!(error.contains("prevData"), "{error}");
    assert_eq!(run.commits.len(), 147);
    assert_eq!(run.delivered_after(seq), corpus.after(at));
    run.assert_in_order(&corpus);
    assert_eq!(
        run.stats.rejected(),
        BTreeMap::from([("inversion_failed", 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_is_a_bad_frame_and_the_stream_goes_on() {
    let corpus = Corpus::load();
    let at = 60;
    let len = corpus.frames[at].len() / 2;
    let faults = vec![Fault {
        at,
        kind: FaultKind::Truncate { len },
    }];
    let run = run(&corpus, faults, |_| {}).await;

    // The client drops the connection and resumes after the last frame it delivered; the
    // fault fired once, so the frame then arrives whole.
    assert!(run.rejected.is_empty(), "{:?}", run.rejected);
    assert_eq!(run.commits.len(), 148);
    run.assert_in_order(&corpus);
    match run.upstream.as_slice() {
        [
            ClientEvent::Connected { cursor: None },
            ClientEvent::BadFrame { reason },
            ClientEvent::Disconnected {
                reason: DisconnectReason::BadFrame,
                ..
            },
            ClientEvent::Connected {
                cursor: Some(cursor),
            },
        ] => {
            assert!(!reason.is_empty());
            assert_eq!(
                *cursor,
                corpus.seqs[at - 1],
                "resumed after the last good frame"
            );
        }
        other => panic!("unexpected upstream events: {other:?}"),
    }
    assert_eq!(
        run.delivered_after(corpus.seqs[at - 1]),
        corpus.after(at - 1)
    );
    assert!(run.stats.rejected().is_empty());
    // The stream counts frames it was handed: the truncated one never got past the client.
    assert_eq!(run.stats.frames(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_upstream_is_replaced_and_the_rest_arrives() {
    let corpus = Corpus::load();
    let at = 100;
    let faults = vec![Fault {
        at,
        kind: FaultKind::Stall(Duration::from_secs(5)),
    }];
    let started = tokio::time::Instant::now();
    let run = run(&corpus, faults, |client| {
        client.idle_timeout = Duration::from_millis(400);
        // Pings do not keep a frozen server alive: it answers none.
        client.ping_interval = Some(Duration::from_millis(100));
    })
    .await;

    assert!(run.rejected.is_empty(), "{:?}", run.rejected);
    assert_eq!(run.commits.len(), 148);
    run.assert_in_order(&corpus);
    match run.upstream.as_slice() {
        [
            ClientEvent::Connected { cursor: None },
            ClientEvent::Disconnected {
                reason: DisconnectReason::Idle(idle),
                ..
            },
            ClientEvent::Connected {
                cursor: Some(cursor),
            },
        ] => {
            assert_eq!(*idle, Duration::from_millis(400));
            assert_eq!(*cursor, corpus.seqs[at - 1], "resumed after the last frame");
        }
        other => panic!("unexpected upstream events: {other:?}"),
    }
    assert_eq!(
        run.delivered_after(corpus.seqs[at - 1]),
        corpus.after(at - 1)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watchdog replaced the connection before the stall ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_faults_in_one_connection() {
    let corpus = Corpus::load();
    let [record_at, sig_at, prev_at] = corpus.spread_targets();
    let mut faults = vec![
        Fault {
            at: record_at,
            kind: FaultKind::FlipByte {
                offset: record_byte_offset(&corpus, record_at),
            },
        },
        Fault {
            at: sig_at,
            kind: FaultKind::Inject(bad_signature_frame(&corpus, sig_at)),
        },
        Fault {
            at: sig_at,
            kind: FaultKind::Drop,
        },
        Fault {
            at: prev_at,
            kind: FaultKind::FlipByte {
                offset: prev_data_byte_offset(&corpus, prev_at),
            },
        },
    ];
    // A stall between them, and a truncation after all of them. Faults fire on whichever
    // connection reaches their frame first: a connection the client abandoned after the
    // truncated frame goes on writing into its socket buffer until it notices, and would
    // take (and waste) any later fault. A frozen (stalled) connection sends nothing more.
    let used: HashSet<usize> = faults.iter().map(|f| f.at).collect();
    let free = |from: usize| {
        (from..corpus.frames.len())
            .find(|i| !used.contains(i) && !used.contains(&(i - 1)))
            .expect("a free frame")
    };
    let stall_at = free((record_at + sig_at) / 2);
    let cut_at = free(prev_at + 5);
    assert!(record_at < stall_at && stall_at < sig_at && prev_at < cut_at);
    faults.push(Fault {
        at: cut_at,
        kind: FaultKind::Truncate { len: 10 },
    });
    faults.push(Fault {
        at: stall_at,
        kind: FaultKind::Stall(Duration::from_secs(5)),
    });
    let run = run(&corpus, faults, |client| {
        client.idle_timeout = Duration::from_millis(400);
        client.ping_interval = Some(Duration::from_millis(100));
    })
    .await;

    let expected = BTreeMap::from([
        ("bad_signature", 1),
        ("cid_mismatch", 1),
        ("inversion_failed", 1),
    ]);
    assert_eq!(run.reasons(), expected, "{:?}", run.rejected);
    assert_eq!(run.stats.rejected(), expected);
    let rejected_seqs: Vec<i64> = run.rejected.iter().map(|r| r.0.unwrap()).collect();
    let mut want = vec![
        corpus.seqs[record_at],
        corpus.seqs[sig_at],
        corpus.seqs[prev_at],
    ];
    want.sort_unstable();
    assert_eq!(rejected_seqs, want, "rejections arrive in seq order");
    assert_eq!(run.commits.len(), 145);
    assert_eq!(run.stats.commits(), 145);
    assert_eq!(
        run.did_server.hits(&corpus.repo_at(sig_at)),
        2,
        "one refresh"
    );
    run.assert_in_order(&corpus);
    let bad_frames = run
        .upstream
        .iter()
        .filter(|e| matches!(e, ClientEvent::BadFrame { .. }))
        .count();
    let idles = run
        .upstream
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Disconnected {
                    reason: DisconnectReason::Idle(_),
                    ..
                }
            )
        })
        .count();
    let connects: Vec<Option<i64>> = run
        .upstream
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Connected { cursor } => Some(*cursor),
            _ => None,
        })
        .collect();
    assert_eq!((bad_frames, idles), (1, 1), "{:?}", run.upstream);
    assert_eq!(
        connects,
        vec![
            None,
            Some(corpus.seqs[stall_at - 1]),
            Some(corpus.seqs[cut_at - 1])
        ]
    );
    println!(
        "all faults: rejected {:?} at frames {record_at}/{sig_at}/{prev_at}, truncation at {cut_at}, stall at {stall_at}; {} commits verified",
        run.stats.rejected(),
        run.commits.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_account_state_survives_a_restart() {
    let corpus = Corpus::load();
    // First run: every commit carries the verifier's state for its account.
    let first = run(&corpus, Vec::new(), |_| {}).await;
    let mut saved = HashMap::new();
    for commit in &first.commits {
        let state = commit
            .state
            .expect("a verified commit reports the account state");
        assert_eq!(state.status, SyncStatus::Synchronized);
        saved.insert(commit.did.clone(), state);
    }

    // Second run from the saved state, over the same frames: nothing goes backwards, so
    // every commit is refused as already seen.
    let second = run_from(&corpus, Vec::new(), |_| {}, saved).await;
    assert!(
        second.commits.is_empty(),
        "{} commits re-applied",
        second.commits.len()
    );
    assert_eq!(second.reasons(), BTreeMap::from([("stale_rev", 148)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_breaking_a_message_rule_is_rejected_without_reconnecting() {
    use atelier_lexicons::data::encode_dag_cbor;
    use ipld_core::ipld::Ipld;

    let corpus = Corpus::load();
    let at = corpus.spread_targets()[0];
    let seq = corpus.seqs[at];
    // Strict DAG-CBOR, but an op action no decoder knows: the frame is well formed and
    // semantically invalid. Re-fetching it from the same cursor would loop forever.
    let map = |pairs: Vec<(&str, Ipld)>| {
        Ipld::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    };
    let header = map(vec![
        ("op", Ipld::Integer(1)),
        ("t", Ipld::String("#commit".into())),
    ]);
    let body = map(vec![
        ("seq", Ipld::Integer(i128::from(seq))),
        (
            "repo",
            Ipld::String("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".into()),
        ),
        (
            "ops",
            Ipld::List(vec![map(vec![
                ("action", Ipld::String("upsert".into())),
                ("path", Ipld::String("computer.aesthetic.mood/3k".into())),
                ("cid", Ipld::Null),
            ])]),
        ),
    ]);
    let mut frame = encode_dag_cbor(&header).expect("header");
    frame.extend(encode_dag_cbor(&body).expect("body"));
    let faults = vec![
        Fault {
            at,
            kind: FaultKind::Inject(Bytes::from(frame)),
        },
        Fault {
            at,
            kind: FaultKind::Drop,
        },
    ];
    let run = run(&corpus, faults, |_| {}).await;

    let (rejected_seq, _, _) = run
        .rejected
        .iter()
        .find(|r| r.2 == "bad_frame")
        .map(|r| (r.0, r.1.clone(), r.3.clone()))
        .expect("the frame is rejected");
    assert_eq!(rejected_seq, Some(seq));
    assert_eq!(run.stats.rejected(), BTreeMap::from([("bad_frame", 1)]));
    let reconnects = run
        .upstream
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connected { .. }))
        .count();
    assert_eq!(reconnects, 1, "one connection: {:?}", run.upstream);
    assert_eq!(run.delivered_after(seq), corpus.after(at));
    run.assert_in_order(&corpus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_path_that_is_not_collection_and_rkey_is_invalid_op() {
    let corpus = Corpus::load();
    let at = corpus.spread_targets()[2];
    // Op paths are not covered by the signature (the MST is): put a character no record key
    // may hold into the rkey of the frame's op path.
    let bytes = &corpus.frames[at];
    let Frame::Commit(commit) = frame::decode(bytes).expect("decodes") else {
        panic!("frame {at} is a commit")
    };
    let path = commit.ops[0].path;
    let offset = offset_in(bytes, path.as_bytes()) + path.len() - 1;
    let seq = commit.seq;
    let mut altered = bytes.to_vec();
    altered[offset] = b'!';
    let faults = vec![
        Fault {
            at,
            kind: FaultKind::Inject(Bytes::from(altered)),
        },
        Fault {
            at,
            kind: FaultKind::Drop,
        },
    ];
    let run = run(&corpus, faults, |_| {}).await;

    let (rejected_seq, _, error) = the_one_rejection(&run, "invalid_op");
    assert_eq!(rejected_seq, seq);
    assert!(error.contains("collection/rkey"), "{error}");
    assert_eq!(run.delivered_after(seq), corpus.after(at));
    run.assert_in_order(&corpus);
}
