//! Ingest: follows one source, a `subscribeRepos` stream through the sync layer (verified
//! unless the source is marked trusted) or a trusted Jetstream-style JSON stream
//! ([`jetstream`]), and writes the index in batches.
//!
//! Each batch's changes and the seq of its last event are committed in one transaction
//! ([`Store::apply`]), so a restart resumes from exactly the events whose rows are stored:
//! nothing is lost after a crash and nothing is applied twice (a replayed event would be a
//! same-CID upsert anyway). Every event moves the cursor, including ones that change
//! nothing. Records that fail even lenient validation are counted by reason and kept out.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_relay::sync::client::{ClientConfig, ClientEvent};
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_relay::sync::stream::{SyncConfig, SyncEvent, SyncStream};
use atelier_relay::sync::verify::VerifyMode;
use tracing::{debug, info, warn};

use crate::error::AppViewError;
use crate::histogram::{Histogram, VISIBILITY_BUCKETS};
use crate::index::{Change, Indexer, OpTarget, Rejected};
use crate::store::Store;

pub mod jetstream;

use jetstream::{JetstreamConfig, JetstreamStream};

/// What kind of stream a source serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceKind {
    /// `com.atproto.sync.subscribeRepos` (CBOR frames; a relay, a PDS, Atelier's relay).
    #[default]
    SubscribeRepos,
    /// A Jetstream-style `/subscribe` JSON stream. It carries no signatures, so it is
    /// accepted only from a source marked trusted.
    Jetstream,
}

/// Where ingest reads from and how it batches.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The source's URL (`ws://` or `wss://`): a `subscribeRepos` endpoint of a relay, a
    /// PDS or Atelier's namespace relay, or a Jetstream `/subscribe`. Also the cursor's
    /// key in the store.
    pub source: String,
    /// What the source serves.
    pub kind: SourceKind,
    /// Skip signature and MST verification (only for a source you run yourself).
    pub trusted: bool,
    /// The PLC directory for resolving `did:plc` keys.
    pub plc_url: String,
    /// Allow loopback and private addresses (sandbox only).
    pub allow_loopback: bool,
    /// Events per batch at most.
    pub batch_max: usize,
    /// How long the first event of a batch may wait for others. Zero (the default)
    /// commits as soon as the stream has nothing more queued: a quiet stream gets each
    /// event indexed at once, and a busy one still forms batches (up to `batch_max`) from
    /// what queues while the previous batch commits.
    pub batch_wait: Duration,
    /// Where to start when the store has no cursor for this source: `Some(0)` replays
    /// what the source still holds (right for a PDS the AppView indexes from its first
    /// day); `None` starts live, or from a `cursor` the source URL carries.
    pub initial_cursor: Option<i64>,
}

impl IngestConfig {
    /// Defaults for `source`: verified, the public PLC, batches of up to 500 events
    /// committed as soon as nothing more is queued.
    pub fn new(source: impl Into<String>) -> IngestConfig {
        IngestConfig {
            source: source.into(),
            kind: SourceKind::SubscribeRepos,
            trusted: false,
            plc_url: "https://plc.directory".to_owned(),
            allow_loopback: false,
            batch_max: 500,
            batch_wait: Duration::ZERO,
            initial_cursor: None,
        }
    }
}

/// The guarded HTTP client and DID resolver for `plc_url` (loopback and private
/// addresses allowed only when `allow_loopback`, the sandbox).
///
/// # Errors
/// If the HTTP client cannot be built (its message).
pub fn identity(plc_url: &str, allow_loopback: bool) -> Result<(GuardedClient, Resolver), String> {
    let policy = if allow_loopback {
        SsrfPolicy::sandbox()
    } else {
        SsrfPolicy::default()
    };
    let guard = GuardedClient::new(policy).map_err(|e| e.to_string())?;
    let resolver_config = if allow_loopback {
        ResolverConfig::sandbox(plc_url.to_owned())
    } else {
        ResolverConfig {
            plc_url: plc_url.to_owned(),
            ..ResolverConfig::default()
        }
    };
    Ok((guard.clone(), Resolver::new(resolver_config, guard)))
}

/// Counters ingest keeps, for metrics and tests.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Stream events handled.
    pub events: AtomicU64,
    /// Batches committed (the response cache's generation: it moves after each commit).
    pub batches: AtomicU64,
    /// Query responses served from the response cache.
    pub cache_hits: AtomicU64,
    /// Records inserted or changed.
    pub records_written: AtomicU64,
    /// Records deleted.
    pub records_deleted: AtomicU64,
    /// Records indexed with lenient repairs.
    pub records_repaired: AtomicU64,
    /// The last committed seq (-1: none yet).
    pub committed_seq: AtomicI64,
    /// Publish-to-visibility: from a commit's time (as the upstream stamped it) to the
    /// commit of the batch that indexed it.
    pub visibility: Visibility,
    /// The time (unix microseconds) of the newest commit indexed (0: none yet): the
    /// ingest lag is now minus this.
    pub last_commit_time_us: AtomicI64,
    /// Handle checks by result (`verified`, `invalid`, `unreachable`), from the handle
    /// verifier ([`crate::handles`]).
    pub handle_checks: HandleChecks,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Records written per collection (created or updated, as committed).
    indexed: Mutex<BTreeMap<String, u64>>,
    /// Lenient repairs per kind ([`repair_kind`]).
    repairs: Mutex<BTreeMap<&'static str, u64>>,
    commits: Commits,
}

/// The handle verifier's counters.
#[derive(Debug, Default)]
pub struct HandleChecks {
    /// Handles verified both ways.
    pub verified: AtomicU64,
    /// Handles that did not verify (no claim, or it resolves elsewhere or not at all).
    pub invalid: AtomicU64,
    /// Checks whose DID document could not be fetched.
    pub unreachable: AtomicU64,
}

/// The stable kind of a lenient repair, from its description
/// ([`atelier_relay::lexicons::validate::Repair`]'s `Display`): `undeclared_field`,
/// `known_quirk` (an undeclared field that is one of AC's known quirks), `renamed_field`,
/// `missing_required`, else `other`.
pub fn repair_kind(repair: &str) -> &'static str {
    if repair.contains(": kept undeclared field ") {
        if repair.ends_with("(known AC quirk)") {
            "known_quirk"
        } else {
            "undeclared_field"
        }
    } else if repair.contains(": renamed field ") {
        "renamed_field"
    } else if repair.contains(": required field ") && repair.ends_with(" is missing") {
        "missing_required"
    } else {
        "other"
    }
}

/// The publish-to-visibility histogram (seconds, [`VISIBILITY_BUCKETS`]).
#[derive(Debug)]
pub struct Visibility(pub Histogram);

impl Default for Visibility {
    fn default() -> Self {
        Visibility(Histogram::new(VISIBILITY_BUCKETS))
    }
}

/// Tells waiters that a batch committed (the live notification streams).
#[derive(Debug)]
struct Commits(tokio::sync::watch::Sender<u64>);

impl Default for Commits {
    fn default() -> Self {
        Commits(tokio::sync::watch::Sender::new(0))
    }
}

impl IngestStats {
    /// A fresh set of counters.
    pub fn new() -> IngestStats {
        IngestStats {
            committed_seq: AtomicI64::new(-1),
            ..IngestStats::default()
        }
    }

    /// Records and frames kept out, by reason (`invalid`, `unknown_type`, `bad_signature`, ...).
    pub fn rejected(&self) -> BTreeMap<String, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Counts a commit to the index made outside ingest (the publishing API's optimistic
    /// inserts): moves the response cache's generation and wakes live readers. Returns
    /// the new batch count.
    pub fn note_commit(&self) -> u64 {
        let batches = self.batches.fetch_add(1, Ordering::Release) + 1;
        self.commits.0.send_replace(batches);
        batches
    }

    /// Changes (to the number of batches committed) after each commit: a live reader
    /// waits on it, then reads what is new.
    pub fn subscribe_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.0.subscribe()
    }

    /// Records written per collection (`atelier_appview_records_indexed_total`).
    pub fn indexed(&self) -> BTreeMap<String, u64> {
        self.indexed.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Lenient repairs per kind ([`repair_kind`], `atelier_appview_repairs_total`).
    pub fn repairs(&self) -> BTreeMap<&'static str, u64> {
        self.repairs.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Counts the records of a committed batch: per collection, and their repairs per
    /// kind (records inside a resync snapshot included).
    fn count_records(&self, changes: &[Change]) {
        fn walk<'a>(changes: &'a [Change], rows: &mut Vec<&'a crate::index::RecordRow>) {
            for change in changes {
                match change {
                    Change::Record(row) => rows.push(row),
                    Change::Snapshot { changes, .. } => walk(changes, rows),
                    _ => {}
                }
            }
        }
        let mut rows = Vec::new();
        walk(changes, &mut rows);
        if rows.is_empty() {
            return;
        }
        if let Ok(mut m) = self.indexed.lock() {
            for row in &rows {
                *m.entry(row.collection.clone()).or_default() += 1;
            }
        }
        if let Ok(mut m) = self.repairs.lock() {
            for repair in rows.iter().flat_map(|row| &row.repairs) {
                *m.entry(repair_kind(repair)).or_default() += 1;
            }
        }
    }

    fn reject(&self, reason: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }
}

/// A batch being gathered.
#[derive(Debug, Default)]
struct Batch {
    changes: Vec<Change>,
    rejected: Vec<Rejected>,
    last_seq: Option<i64>,
    events: usize,
    /// The commit times (unix microseconds) of the batch's commits.
    commit_times: Vec<i64>,
    /// Each account's verification state after the batch's last commit for it.
    sync_states: BTreeMap<String, crate::index::AccountState>,
}

impl Batch {
    /// Moves the batch's cursor to `seq` (never back).
    fn advance(&mut self, seq: i64) {
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }
}

/// A started source.
enum Feed {
    Repos(SyncStream),
    Jetstream(JetstreamStream),
}

/// One event from either kind of source.
enum Incoming {
    Repos(SyncEvent),
    Jetstream(jetstream::Event),
}

impl Feed {
    async fn recv(&mut self) -> Option<Incoming> {
        match self {
            Feed::Repos(stream) => stream.recv().await.map(Incoming::Repos),
            Feed::Jetstream(stream) => stream.recv().await.map(Incoming::Jetstream),
        }
    }
}

/// Follows `config.source` into `store` until `shutdown` completes; the last batch is
/// committed before returning.
///
/// # Errors
/// If the stream cannot start (an untrusted Jetstream source among the reasons) or the
/// store fails (the batch in hand is not committed, so a restart replays it).
pub async fn run<S: Store>(
    config: &IngestConfig,
    store: Arc<S>,
    stats: Arc<IngestStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppViewError> {
    let source_error = |reason: String| AppViewError::Source {
        source_url: config.source.clone(),
        reason,
    };
    let indexer = Indexer::new()?;
    let cursor = store
        .cursor(&config.source)
        .await?
        .or(config.initial_cursor);
    let mut feed = match config.kind {
        SourceKind::SubscribeRepos => {
            let mut client =
                ClientConfig::new(&config.source).map_err(|e| source_error(e.to_string()))?;
            // A `cursor` in the URL is where to start when the store has none (it used to
            // be overridden silently, so `?cursor=0` started live).
            client.cursor = cursor.or(client.cursor);
            let (guard, resolver) =
                identity(&config.plc_url, config.allow_loopback).map_err(source_error)?;
            let mut sync = SyncConfig::new(client, resolver, Some(guard));
            // Verification continues from where it stood when the last batch committed.
            sync.accounts = store.sync_states().await?.into_iter().collect();
            if config.trusted {
                sync.mode = VerifyMode::Trusted;
            }
            Feed::Repos(SyncStream::start(sync, shutdown).map_err(|e| source_error(e.to_string()))?)
        }
        SourceKind::Jetstream => {
            if !config.trusted {
                return Err(source_error(
                    "a Jetstream stream carries no signatures or proofs, so it cannot be \
                     verified: mark the source trusted if you run it or trust its operator"
                        .to_owned(),
                ));
            }
            let js = JetstreamConfig::new(&config.source, cursor).map_err(source_error)?;
            Feed::Jetstream(JetstreamStream::start(js, shutdown))
        }
    };
    info!(source = %config.source, kind = ?config.kind, ?cursor, "ingest following");

    let mut batch = Batch::default();
    let mut deadline = tokio::time::Instant::now();
    loop {
        let next = if batch.events == 0 {
            feed.recv().await
        } else {
            // `timeout_at` polls the receive before its deadline: once the deadline has
            // passed (at once with a zero `batch_wait`) this takes only what is queued.
            match tokio::time::timeout_at(deadline, feed.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    commit(config, &*store, &stats, &mut batch).await?;
                    continue;
                }
            }
        };
        let Some(incoming) = next else { break };
        let counted = match incoming {
            Incoming::Repos(ev) => fold_repos(config, &indexer, &stats, &ev, &mut batch),
            Incoming::Jetstream(ev) => fold_jetstream(config, &indexer, &stats, ev, &mut batch),
        };
        if !counted {
            continue;
        }
        stats.events.fetch_add(1, Ordering::Relaxed);
        batch.events += 1;
        if batch.events == 1 {
            deadline = tokio::time::Instant::now() + config.batch_wait;
        }
        if batch.events >= config.batch_max {
            commit(config, &*store, &stats, &mut batch).await?;
        }
    }
    commit(config, &*store, &stats, &mut batch).await?;
    info!(source = %config.source, "ingest stopped");
    Ok(())
}

/// Adds a `subscribeRepos` event to the batch; `false` for connection events, which are
/// not stream events.
fn fold_repos(
    config: &IngestConfig,
    indexer: &Indexer,
    stats: &IngestStats,
    ev: &SyncEvent,
    batch: &mut Batch,
) -> bool {
    match ev {
        SyncEvent::Upstream(ClientEvent::Connected { .. }) => {
            debug!(source = %config.source, "connected");
            return false;
        }
        SyncEvent::Upstream(event) => {
            debug!(source = %config.source, ?event, "source connection event");
            return false;
        }
        SyncEvent::Rejected { reason, error, .. } => {
            warn!(source = %config.source, reason, error, "frame refused");
            stats.reject(reason);
        }
        _ => {}
    }
    if let Some(seq) = ev.seq() {
        batch.advance(seq);
    }
    if let SyncEvent::Commit(c) = ev {
        if let Ok(time) = crate::labels::label::datetime_micros(&c.time) {
            batch.commit_times.push(time);
        }
        if let Some(state) = c.state {
            batch.sync_states.insert(c.did.clone(), state);
        }
    }
    indexer.event(ev, &mut batch.changes, &mut batch.rejected);
    true
}

/// Adds a Jetstream event to the batch. Its `time_us` is the cursor, and stands in for the
/// commit time (Jetstream does not pass the upstream's on).
fn fold_jetstream(
    config: &IngestConfig,
    indexer: &Indexer,
    stats: &IngestStats,
    ev: jetstream::Event,
    batch: &mut Batch,
) -> bool {
    if let Some(time_us) = ev.time_us() {
        batch.advance(time_us);
    }
    match ev {
        jetstream::Event::Commit {
            time_us,
            did,
            rev,
            action,
            collection,
            rkey,
            cid,
            record,
        } => {
            batch.commit_times.push(time_us);
            batch.changes.push(Change::Rev {
                did: did.clone(),
                rev,
            });
            let target = OpTarget {
                action,
                collection: &collection,
                rkey: &rkey,
                cid: cid.as_deref(),
            };
            indexer.json_op(
                &did,
                &target,
                record,
                &mut batch.changes,
                &mut batch.rejected,
            );
        }
        jetstream::Event::Identity { did, handle, .. } => {
            batch.changes.push(Change::Handle { did, handle });
        }
        jetstream::Event::Account {
            did,
            active,
            status,
            ..
        } => batch.changes.push(Change::Account {
            did,
            active,
            status,
        }),
        jetstream::Event::Other { .. } => {}
        jetstream::Event::Bad { reason } => {
            warn!(source = %config.source, %reason, "frame refused");
            stats.reject("bad_frame");
        }
    }
    true
}

/// Commits the batch with its cursor, then counts it.
async fn commit<S: Store>(
    config: &IngestConfig,
    store: &S,
    stats: &IngestStats,
    batch: &mut Batch,
) -> Result<(), AppViewError> {
    if batch.events == 0 {
        return Ok(());
    }
    let cursor = batch.last_seq.map(|seq| (config.source.as_str(), seq));
    if !batch.sync_states.is_empty() {
        let states = std::mem::take(&mut batch.sync_states).into_iter().collect();
        batch.changes.push(Change::SyncStates(states));
    }
    let applied = store.apply(&batch.changes, cursor).await?;
    for r in &batch.rejected {
        warn!(uri = %r.uri, reason = r.reason, detail = %r.detail, "record kept out of the index");
        stats.reject(r.reason);
    }
    stats.count_records(&batch.changes);
    let repaired = batch
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Record(row) if !row.repairs.is_empty()))
        .count() as u64;
    stats
        .records_repaired
        .fetch_add(repaired, Ordering::Relaxed);
    stats
        .records_written
        .fetch_add(applied.records_written, Ordering::Relaxed);
    stats
        .records_deleted
        .fetch_add(applied.records_deleted, Ordering::Relaxed);
    if let Some(seq) = batch.last_seq {
        stats.committed_seq.store(seq, Ordering::Relaxed);
    }
    let now = atelier_relay::jetstream::now_us();
    for time in &batch.commit_times {
        let micros = u64::try_from(now.saturating_sub(*time)).unwrap_or(0);
        stats.visibility.0.observe(Duration::from_micros(micros));
    }
    if let Some(newest) = batch.commit_times.iter().max() {
        stats
            .last_commit_time_us
            .fetch_max(*newest, Ordering::Relaxed);
    }
    stats.note_commit();
    *batch = Batch::default();
    Ok(())
}

#[cfg(test)]
mod tests {
    use atelier_relay::lexicons::validate::Repair;

    use super::repair_kind;

    /// The kinds follow the validator's own wording, so a change to it fails here.
    #[test]
    fn repair_kinds_from_the_validator_wording() {
        let check = |repair: Repair, expect: &str| {
            assert_eq!(repair_kind(&repair.to_string()), expect, "{repair}");
        };
        let undeclared = |known_quirk| Repair::UndeclaredField {
            path: "$".into(),
            field: "acUrl".into(),
            known_quirk,
        };
        check(undeclared(true), "known_quirk");
        check(undeclared(false), "undeclared_field");
        check(
            Repair::RenamedField {
                path: "$".into(),
                from: "text".into(),
                to: "mood".into(),
            },
            "renamed_field",
        );
        check(
            Repair::MissingRequired {
                path: "$".into(),
                field: "video".into(),
            },
            "missing_required",
        );
        assert_eq!(repair_kind("something else"), "other");
    }
}
