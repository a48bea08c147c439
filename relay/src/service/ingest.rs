//! Ingest: one task per upstream (connect through the sync layer, verify, apply per-host
//! limits and the host check) feeding one writer task (namespace filter, Jetstream
//! encoding, log append, fan-out, checkpoints).
//!
//! Every upstream event goes through the writer, dropped ones included, so a host's cursor
//! advances in upstream order and a checkpoint never skips an event still queued.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::Shared;
use super::config::{HostLimits, UpstreamKind};
use super::hosts::{host_key, same_host};
use super::payload::{self, RelayEvent, kind};
use super::state::{Checkpoint, HostRow};
use crate::eventlog::EventLog;
use crate::filter::{Decision, Filter, FilterError, FilterRules};
use crate::jetstream::{self, JetstreamEvent, TimeClock};
use crate::sync::client::{ClientConfig, ClientEvent};
use crate::sync::frame::with_seq;
use crate::sync::replay::account_frame;
use crate::sync::stream::{SyncConfig, SyncEvent, SyncStream};
use crate::sync::verify::VerifyMode;

/// How often the writer checkpoints cursors and known actors.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Live publishing happens at most once per this interval while events keep coming (an
/// event after a quiet spell goes out at once), so under load subscribers wake once per
/// group of events rather than once per event: at 2,000 events/s and 1,000 subscribers,
/// per-event publishing costs two million task wake-ups and WebSocket writes a second.
const PUBLISH_EVERY: Duration = Duration::from_millis(10);
/// Events that are published at once without waiting for [`PUBLISH_EVERY`].
const PUBLISH_MAX: usize = 128;

/// A fixed-window counter.
#[derive(Debug)]
struct Window {
    len: Duration,
    start: Instant,
    count: u64,
}

impl Window {
    fn new(len: Duration) -> Window {
        Window {
            len,
            start: Instant::now(),
            count: 0,
        }
    }

    fn admit(&mut self, now: Instant, limit: u64) -> bool {
        if now.duration_since(self.start) >= self.len {
            self.start = now;
            self.count = 0;
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
}

/// Per-second, per-hour and per-day windows for one host.
#[derive(Debug)]
pub(crate) struct Limiter {
    second: Window,
    hour: Window,
    day: Window,
}

impl Limiter {
    fn new() -> Limiter {
        Limiter {
            second: Window::new(Duration::from_secs(1)),
            hour: Window::new(Duration::from_secs(3600)),
            day: Window::new(Duration::from_secs(86_400)),
        }
    }

    /// Counts one event; `Err` names the window it is over.
    fn admit(&mut self, limits: &HostLimits) -> Result<(), &'static str> {
        let now = Instant::now();
        // Check all three before counting, so a refused event is not counted.
        for (w, limit) in [
            (&self.second, limits.per_second),
            (&self.hour, limits.per_hour),
            (&self.day, limits.per_day),
        ] {
            if now.duration_since(w.start) < w.len && w.count >= limit {
                return Err("rate_limited");
            }
        }
        let ok = self.second.admit(now, limits.per_second)
            && self.hour.admit(now, limits.per_hour)
            && self.day.admit(now, limits.per_day);
        if ok { Ok(()) } else { Err("rate_limited") }
    }
}

/// One upstream host at run time.
#[derive(Debug)]
pub(crate) struct HostRuntime {
    pub(crate) row: Mutex<HostRow>,
    pub(crate) id: u32,
    pub(crate) host: String,
    pub(crate) connected: AtomicBool,
    /// The newest upstream seq the writer has handled.
    pub(crate) cursor: AtomicI64,
    pub(crate) events: AtomicU64,
    /// Unix µs of the last event received (0: none).
    pub(crate) last_event_us: AtomicI64,
    pub(crate) refused: Mutex<BTreeMap<&'static str, u64>>,
    limiter: Mutex<Limiter>,
    accounts: Mutex<HashSet<String>>,
    stop: watch::Sender<bool>,
}

impl HostRuntime {
    pub(crate) fn new(row: HostRow, accounts: HashSet<String>) -> HostRuntime {
        HostRuntime {
            id: row.id,
            host: row.host.clone(),
            cursor: AtomicI64::new(row.cursor.unwrap_or(-1)),
            row: Mutex::new(row),
            connected: AtomicBool::new(false),
            events: AtomicU64::new(0),
            last_event_us: AtomicI64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            limiter: Mutex::new(Limiter::new()),
            accounts: Mutex::new(accounts),
            stop: watch::channel(false).0,
        }
    }

    pub(crate) fn row(&self) -> HostRow {
        self.row
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub(crate) fn account_count(&self) -> usize {
        self.accounts.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Ends this host's upstream task.
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    fn refuse(&self, reason: &'static str) {
        if let Ok(mut m) = self.refused.lock() {
            let n = m.entry(reason).or_default();
            *n += 1;
            if *n == 1 {
                warn!(
                    host = %self.host,
                    reason,
                    "refusing events from this host (counted in atelier_relay_refused_total; \
                     later refusals for the same reason are not logged)"
                );
            }
        }
    }
}

/// What an upstream task hands the writer.
#[derive(Debug)]
pub(crate) struct Item {
    host: u32,
    seq: Option<i64>,
    /// An account this host had not sent before (to persist).
    new_account: Option<String>,
    what: What,
}

// Nearly every item is an event; boxing it would add an allocation per event to save
// space only in the rare refusal.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum What {
    Event(SyncEvent),
    Refused(&'static str),
}

/// Requests to the writer from the admin API.
#[derive(Debug)]
pub(crate) enum Command {
    /// Replace the filter rules.
    SetRules(FilterRules, oneshot::Sender<Result<(), FilterError>>),
    /// Emit `#account` for a takedown (`active: false, status: takendown`) or its lifting.
    Account {
        did: String,
        takendown: bool,
        done: oneshot::Sender<u64>,
    },
}

fn event_did(ev: &SyncEvent) -> Option<&str> {
    match ev {
        SyncEvent::Commit(c) => Some(&c.did),
        SyncEvent::Sync { did, .. }
        | SyncEvent::Identity { did, .. }
        | SyncEvent::Account { did, .. } => Some(did),
        _ => None,
    }
}

fn kind_name(ev: &SyncEvent) -> &'static str {
    match ev {
        SyncEvent::Commit(_) => "commit",
        SyncEvent::Sync { .. } => "sync",
        SyncEvent::Identity { .. } => "identity",
        SyncEvent::Account { .. } => "account",
        SyncEvent::Resynced { .. } => "resync",
        SyncEvent::ResyncFailed { .. } => "resync_failed",
        SyncEvent::Rejected { .. } => "rejected",
        SyncEvent::Unknown { .. } => "unknown",
        SyncEvent::Upstream(_) => "upstream",
    }
}

/// Follows one upstream until it is stopped (ban, removal) or the relay shuts down.
pub(crate) async fn run_upstream(shared: Arc<Shared>, host: Arc<HostRuntime>) {
    let row = host.row();
    let http_url = row
        .url
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1);
    if let Err(e) = shared.guard.check_url(&http_url).await {
        warn!(host = %host.host, error = %e, "upstream refused by the SSRF guard");
        host.refuse("ssrf");
        shared.metrics.refused("ssrf");
        return;
    }
    let mut client = match ClientConfig::new(&row.url) {
        Ok(c) => c,
        Err(e) => {
            warn!(host = %host.host, error = %e, "bad upstream URL");
            return;
        }
    };
    let cursor = host.cursor.load(Ordering::Relaxed);
    client.cursor = (cursor >= 0).then_some(cursor);
    client.backoff_base = Duration::from_millis(200);
    client.backoff_max = Duration::from_secs(30);
    let mut config = SyncConfig::new(client, shared.resolver.clone(), Some(shared.guard.clone()));
    if row.trusted {
        config.mode = VerifyMode::Trusted;
    }
    let mut stop_host = host.stop.subscribe();
    let mut stop_all = shared.stop.clone();
    let stopped = async move {
        tokio::select! {
            _ = super::stopped(&mut stop_host) => {}
            _ = super::stopped(&mut stop_all) => {}
        }
    };
    let mut stream = match SyncStream::start(config, stopped) {
        Ok(s) => s,
        Err(e) => {
            warn!(host = %host.host, error = %e, "cannot start upstream");
            return;
        }
    };
    info!(host = %host.host, url = %row.url, cursor = ?(cursor >= 0).then_some(cursor), "following upstream");
    let upstream_key = url::Url::parse(&row.url)
        .map(|u| host_key(&u))
        .unwrap_or_default();
    while let Some(ev) = stream.recv().await {
        if let SyncEvent::Upstream(client_event) = &ev {
            match client_event {
                ClientEvent::Connected { .. } => host.connected.store(true, Ordering::Relaxed),
                ClientEvent::Disconnected { .. } => {
                    host.connected.store(false, Ordering::Relaxed);
                }
                // The client reconnects from its cursor after these, so nothing is lost;
                // they are counted against the host all the same.
                ClientEvent::BadFrame { .. } => {
                    shared.metrics.refused("bad_frame");
                    host.refuse("bad_frame");
                }
                ClientEvent::ServerError { .. } | ClientEvent::ConsumerTooSlow { .. } => {
                    shared.metrics.refused("upstream_error");
                    host.refuse("upstream_error");
                }
                _ => {}
            }
            continue;
        }
        let seq = ev.seq();
        host.events.fetch_add(1, Ordering::Relaxed);
        host.last_event_us
            .store(jetstream::now_us(), Ordering::Relaxed);
        shared.metrics.event_in(kind_name(&ev));
        let mut new_account = None;
        let mut what = What::Event(ev);
        if let What::Event(ev) = &what
            && row.kind == UpstreamKind::Pds
            && let Some(did) = event_did(ev)
        {
            match admit_pds_event(&shared, &host, &upstream_key, did).await {
                Ok(new) => new_account = new,
                Err(reason) => {
                    host.refuse(reason);
                    what = What::Refused(reason);
                }
            }
        }
        let item = Item {
            host: host.id,
            seq,
            new_account,
            what,
        };
        if shared.writer.send(item).await.is_err() {
            break;
        }
    }
    host.connected.store(false, Ordering::Relaxed);
}

/// The checks for an event from a PDS: rate limits, the accounts-per-host cap, and that
/// the account's DID document names this host as its PDS.
async fn admit_pds_event(
    shared: &Shared,
    host: &HostRuntime,
    upstream_key: &str,
    did: &str,
) -> Result<Option<String>, &'static str> {
    let limits = host.row().limits.unwrap_or(shared.config.limits);
    host.limiter
        .lock()
        .map_err(|_| "internal")?
        .admit(&limits)?;
    let known = host.accounts.lock().map_err(|_| "internal")?.contains(did);
    if !known {
        let doc = shared
            .resolver
            .resolve_did(did)
            .await
            .map_err(|_| "identity_unresolved")?;
        let pds = doc
            .pds_endpoint()
            .and_then(|e| url::Url::parse(e).ok())
            .map(|u| host_key(&u));
        if !pds.is_some_and(|p| same_host(&p, upstream_key, shared.config.allow_loopback)) {
            return Err("wrong_host");
        }
        let mut accounts = host.accounts.lock().map_err(|_| "internal")?;
        if accounts.len() as u64 >= limits.accounts_per_host {
            return Err("account_limit");
        }
        accounts.insert(did.to_owned());
        return Ok(Some(did.to_owned()));
    }
    Ok(None)
}

/// The single log writer.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) log: EventLog,
    pub(crate) filter: Filter,
    pub(crate) clock: TimeClock,
    pub(crate) items: mpsc::Receiver<Item>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) compressor: Option<jetstream::zstd::Compressor>,
    pending: Checkpoint,
    cursors: BTreeMap<u32, i64>,
    buf: Vec<u8>,
    /// Logged events not yet published live, and when the last group went out.
    outbox: Vec<Arc<RelayEvent>>,
    published_at: Instant,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        log: EventLog,
        filter: Filter,
        items: mpsc::Receiver<Item>,
        commands: mpsc::Receiver<Command>,
    ) -> Writer {
        let clock = TimeClock::after(log.latest_time().unwrap_or(0));
        let compressor = shared
            .dictionary
            .as_ref()
            .and_then(|d| jetstream::zstd::Compressor::new(d).ok());
        Writer {
            shared,
            log,
            filter,
            clock,
            items,
            commands,
            compressor,
            pending: Checkpoint::default(),
            cursors: BTreeMap::new(),
            buf: Vec::with_capacity(16 << 10),
            outbox: Vec::with_capacity(PUBLISH_MAX),
            published_at: Instant::now(),
        }
    }

    /// Runs until every upstream is gone and shutdown was signalled; returns the log so the
    /// caller can close it after the final checkpoint.
    pub(crate) async fn run(mut self) -> Result<(), super::RelayError> {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.shared.stop.clone();
        let mut retention_at = Instant::now();
        loop {
            let publish_at = tokio::time::Instant::from_std(self.published_at + PUBLISH_EVERY);
            tokio::select! {
                biased;
                item = self.items.recv() => match item {
                    Some(item) => {
                        self.handle(item)?;
                        if self.outbox.len() >= PUBLISH_MAX
                            || self.published_at.elapsed() >= PUBLISH_EVERY
                        {
                            self.publish();
                        }
                    }
                    None => break,
                },
                Some(cmd) = self.commands.recv() => {
                    self.command(cmd)?;
                    self.publish();
                }
                _ = tokio::time::sleep_until(publish_at), if !self.outbox.is_empty() => {
                    self.publish();
                }
                _ = tick.tick() => {
                    self.publish();
                    self.checkpoint().await?;
                    if retention_at.elapsed() >= Duration::from_secs(60) {
                        retention_at = Instant::now();
                        let report = self.log.enforce_retention(jetstream::now_us())?;
                        if report.segments_removed > 0 {
                            info!(segments = report.segments_removed, "retention dropped old log segments");
                        }
                    }
                }
                _ = super::stopped(&mut stop) => {
                    // Drain what upstream tasks already queued, then stop.
                    while let Ok(item) = self.items.try_recv() {
                        self.handle(item)?;
                    }
                    break;
                }
            }
        }
        self.publish();
        self.checkpoint().await?;
        Ok(())
    }

    fn handle(&mut self, item: Item) -> Result<(), super::RelayError> {
        if let Some(seq) = item.seq {
            let c = self.cursors.entry(item.host).or_insert(seq);
            *c = (*c).max(seq);
        }
        if let Some(did) = item.new_account {
            self.pending.host_accounts.push((item.host, did));
        }
        let ev = match item.what {
            What::Refused(reason) => {
                self.shared.metrics.refused(reason);
                return Ok(());
            }
            What::Event(ev) => ev,
        };
        if let SyncEvent::Rejected { reason, .. } = &ev {
            self.shared.metrics.refused(reason);
            return Ok(());
        }
        if let Some(did) = event_did(&ev)
            && self.shared.is_taken_down(did)
        {
            self.shared.metrics.refused("takendown");
            return Ok(());
        }
        let decision = self.filter.decide(&ev);
        let Decision::Pass { matched_ops } = decision else {
            self.shared.metrics.filtered.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        self.pending.known.extend(self.filter.take_newly_known());
        let (kind, name, did, frame, upstream_seq, jetstream) = match &ev {
            SyncEvent::Commit(commit) => {
                // Jetstream carries only the ops the filter matched.
                let mut matched = commit.clone();
                matched.ops = matched_ops
                    .iter()
                    .filter_map(|i| commit.ops.get(*i).cloned())
                    .collect();
                let js = jetstream::encode_commit(&matched, &mut self.clock);
                (
                    kind::COMMIT,
                    "commit",
                    &commit.did,
                    &commit.frame,
                    commit.seq,
                    js,
                )
            }
            SyncEvent::Identity {
                did, frame, seq, ..
            } => {
                let js = jetstream::encode_sync_event(&ev, &mut self.clock);
                (kind::IDENTITY, "identity", did, frame, *seq, js)
            }
            SyncEvent::Account {
                did, frame, seq, ..
            } => {
                let js = jetstream::encode_sync_event(&ev, &mut self.clock);
                (kind::ACCOUNT, "account", did, frame, *seq, js)
            }
            SyncEvent::Sync {
                did, frame, seq, ..
            } => (kind::SYNC, "sync", did, frame, *seq, Vec::new()),
            // A resync's records come from getRepo, not a frame: nothing verifiable to
            // re-serve. Downstream consumers see the account's next commit.
            _ => return Ok(()),
        };
        let did = did.clone();
        let frame = frame.clone();
        self.append(item.host, upstream_seq, kind, name, &did, &frame, jetstream)
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        host: u32,
        upstream_seq: i64,
        kind: u8,
        name: &'static str,
        did: &str,
        frame: &Bytes,
        jetstream: Vec<JetstreamEvent>,
    ) -> Result<(), super::RelayError> {
        let time_us = match jetstream.last() {
            Some(ev) => ev.time_us,
            None => self.clock.tick(),
        };
        let seq = self.log.latest_seq() + 1;
        let frame = match with_seq(frame, seq as i64) {
            Ok(f) => f,
            Err(e) => {
                warn!(did, error = %e, "frame could not be re-sequenced");
                self.shared.metrics.refused("reseq_failed");
                return Ok(());
            }
        };
        let Ok(text) = payload::texts(&jetstream) else {
            warn!(did, "Jetstream JSON is not UTF-8");
            self.shared.metrics.refused("bad_json");
            return Ok(());
        };
        payload::encode(&mut self.buf, host, upstream_seq, &frame, &jetstream);
        let got = self.log.append(time_us, kind, did, &self.buf)?;
        debug_assert_eq!(got, seq);
        // Compressed once here for every `compress=true` subscriber, and only when there is
        // one. All or nothing: subscribers pair frames with events by index, and without
        // them compress for themselves.
        let zstd = match self.compressor.as_mut() {
            Some(c) if self.shared.hub.compressing() > 0 => jetstream
                .iter()
                .map(|ev| c.compress(&ev.json))
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        self.shared.metrics.event_out(name);
        self.outbox.push(Arc::new(RelayEvent {
            seq,
            time_us,
            kind,
            did: did.to_owned(),
            upstream: host,
            upstream_seq,
            frame: Bytes::from(frame),
            jetstream,
            text,
            zstd,
        }));
        Ok(())
    }

    /// Publishes the outbox live, in seq order. Subscribers that are behind read the log,
    /// which already holds these events, so holding them back loses nothing.
    fn publish(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        self.published_at = Instant::now();
        for ev in self.outbox.drain(..) {
            self.shared.hub.publish(ev);
        }
    }

    fn command(&mut self, cmd: Command) -> Result<(), super::RelayError> {
        match cmd {
            Command::SetRules(rules, reply) => {
                let _ = reply.send(self.filter.set_rules(rules));
            }
            Command::Account {
                did,
                takendown,
                done,
            } => {
                let seq = self.log.latest_seq() + 1;
                let time = super::rfc3339(jetstream::now_us());
                let status = takendown.then_some("takendown");
                let frame = account_frame(seq, &did, &time, !takendown, status);
                let js = match crate::sync::frame::decode(&frame) {
                    Ok(crate::sync::frame::Frame::Account(a)) => {
                        vec![jetstream::encode_account(&a, &mut self.clock)]
                    }
                    _ => Vec::new(),
                };
                self.append(0, 0, kind::ACCOUNT, "account", &did, &frame, js)?;
                let _ = done.send(seq);
            }
        }
        Ok(())
    }

    async fn checkpoint(&mut self) -> Result<(), super::RelayError> {
        self.log.sync_if_due()?;
        self.log.flush()?;
        let mut cp = std::mem::take(&mut self.pending);
        cp.log_seq = self.log.latest_seq();
        cp.cursors = self.cursors.iter().map(|(h, c)| (*h, *c)).collect();
        for (id, cursor) in &cp.cursors {
            if let Some(h) = self.shared.host(*id) {
                h.cursor.store(*cursor, Ordering::Relaxed);
            }
        }
        self.shared.store.checkpoint(&cp).await
    }
}
