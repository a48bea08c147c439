//! The namespace relay service: follows upstreams, verifies and filters their events,
//! appends what passes to the durable event log, and serves it as a filtered
//! `subscribeRepos` (frames untouched but for the relay's `seq`, so still verifiable) and
//! as Jetstream v1 JSON on `/subscribe`, plus the host XRPC methods, an admin API and
//! Prometheus metrics.
//!
//! - [`config`]: the `relay:` section of `atelier.yaml`.
//! - `ingest`: upstream tasks and the single log writer.
//! - `hub`: live fan-out and the replay-to-live event source.
//! - `server`: the HTTP/WebSocket endpoints; `admin`: the operator API.
//! - `state`: hosts, cursors, known actors and takedowns in SQLite.
//! - `payload`: what each log record stores.
//! - `takedown_labels`: account takedowns from configured labelers' labels.

mod admin;
pub mod config;
mod error;
pub(crate) mod hosts;
mod hub;
mod ingest;
mod metrics;
mod payload;
mod server;
mod state;
mod takedown_labels;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

pub use config::{
    ConfigError, CrawlMode, CrawlPolicy, FsyncMode, HostLimits, LabelerConfig, LogSettings,
    RelayConfig, SubscriberLimits, UpstreamConfig, UpstreamKind,
};
pub use error::RelayError;

use crate::eventlog::{EventLog, LogHandle};
use crate::filter::{Filter, KnownActors};
use crate::jetstream::zstd::{Dictionary, dictionary_path};
use crate::sync::identity::{Resolver, ResolverConfig};
use crate::sync::ssrf::{GuardedClient, SsrfPolicy};
use hub::Hub;
use ingest::{Command, HostRuntime, Item};
use metrics::Metrics;
use state::{HostSource, Store};

/// State shared by the writer, the upstream tasks and the HTTP handlers.
#[derive(Debug)]
pub(crate) struct Shared {
    config: RelayConfig,
    log: LogHandle,
    hub: Arc<Hub>,
    store: Store,
    hosts: RwLock<BTreeMap<u32, Arc<HostRuntime>>>,
    takedowns: RwLock<HashSet<String>>,
    /// The filter rules in force (the writer holds the filter; this is for reading).
    rules: RwLock<crate::filter::FilterRules>,
    metrics: Metrics,
    writer: mpsc::Sender<Item>,
    commands: mpsc::Sender<Command>,
    resolver: Resolver,
    guard: GuardedClient,
    dictionary: Option<Dictionary>,
    admin: admin::AdminAuth,
    /// Label sync's figures.
    labels: Arc<crate::labels::LabelStats>,
    stop: watch::Receiver<bool>,
}

impl Shared {
    fn host(&self, id: u32) -> Option<Arc<HostRuntime>> {
        self.hosts.read().ok()?.get(&id).cloned()
    }

    fn host_by_name(&self, name: &str) -> Option<Arc<HostRuntime>> {
        let hosts = self.hosts.read().ok()?;
        hosts.values().find(|h| h.host == name).cloned()
    }

    fn all_hosts(&self) -> Vec<Arc<HostRuntime>> {
        self.hosts
            .read()
            .map(|h| h.values().cloned().collect())
            .unwrap_or_default()
    }

    fn is_taken_down(&self, did: &str) -> bool {
        self.takedowns.read().is_ok_and(|t| t.contains(did))
    }

    /// Puts a takedown (or its lifting) in force: the in-memory set the writer checks, and
    /// an `#account` event through the writer; returns the event's seq. Storing it is the
    /// caller's part.
    async fn announce_takedown(&self, did: &str, takendown: bool) -> Result<u64, RelayError> {
        if let Ok(mut t) = self.takedowns.write() {
            if takendown {
                t.insert(did.to_owned());
            } else {
                t.remove(did);
            }
        }
        let stopping = || RelayError::State("the relay is stopping".to_owned());
        let (done, rx) = tokio::sync::oneshot::channel();
        let cmd = Command::Account {
            did: did.to_owned(),
            takendown,
            done,
        };
        self.commands.send(cmd).await.map_err(|_| stopping())?;
        rx.await.map_err(|_| stopping())
    }

    /// Adds (or refreshes) a host in the store and starts following it unless banned.
    async fn add_host(
        self: &Arc<Self>,
        host: &str,
        url: &str,
        kind: UpstreamKind,
        trusted: bool,
        source: HostSource,
    ) -> Result<Arc<HostRuntime>, RelayError> {
        if let Some(existing) = self.host_by_name(host) {
            return Ok(existing);
        }
        let row = self
            .store
            .upsert_host(host, url, kind, trusted, source, crate::jetstream::now_us())
            .await?;
        let banned = row.banned;
        let runtime = Arc::new(HostRuntime::new(row, HashSet::new()));
        if let Ok(mut hosts) = self.hosts.write() {
            hosts.insert(runtime.id, Arc::clone(&runtime));
        }
        if !banned {
            tokio::spawn(ingest::run_upstream(Arc::clone(self), Arc::clone(&runtime)));
        }
        Ok(runtime)
    }
}

/// RFC 3339 UTC with microseconds for unix microseconds (`1970-01-01T00:00:00.000000Z`).
/// Resolves once the stop flag is set. The watch guard is dropped inside, so callers stay
/// `Send` when they select on it.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// `us` microseconds since the epoch as an RFC 3339 UTC datetime with microseconds
/// (`2026-12-06T10:09:19.123456Z`).
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads the log past the last checkpoint: moves each host's cursor to the newest upstream
/// seq actually logged and marks every logged account known, so a crash between append
/// and checkpoint neither re-appends events nor forgets actors.
fn recover(
    log: &LogHandle,
    from_seq: u64,
    cursors: &mut HashMap<u32, i64>,
    known: &mut KnownActors,
) -> Result<u64, RelayError> {
    let mut reader = log.read_from_seq((from_seq + 1).min(log.latest_seq() + 1))?;
    let mut n = 0;
    while let Some(ev) = reader.next_event()? {
        let ev = payload::decode(ev, payload::Want::Frame)
            .map_err(|e| RelayError::State(e.to_string()))?;
        if ev.upstream != 0 {
            let c = cursors.entry(ev.upstream).or_insert(ev.upstream_seq);
            *c = (*c).max(ev.upstream_seq);
        }
        if ev.kind == payload::kind::COMMIT {
            known.insert(&ev.did);
        }
        n += 1;
    }
    Ok(n)
}

/// Runs the relay on `listener` until `shutdown` completes, then stops upstreams, drains,
/// checkpoints and returns.
pub async fn run(
    config: RelayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RelayError> {
    config.check()?;
    let data = config.data_dir.clone();
    std::fs::create_dir_all(&data).map_err(|e| RelayError::io(&data, e))?;
    let log = EventLog::open(data.join("log"), config.log.log_config())?;
    let store = Store::open(&data.join("relay.sqlite")).await?;

    // Hosts: stored ones, plus configured upstreams (added or refreshed).
    let policy = if config.allow_loopback {
        SsrfPolicy::sandbox()
    } else {
        SsrfPolicy::default()
    };
    let guard = GuardedClient::new(policy.clone()).map_err(|e| RelayError::State(e.to_string()))?;
    let resolver_config = if config.allow_loopback {
        ResolverConfig::sandbox(config.plc_url.clone())
    } else {
        ResolverConfig {
            plc_url: config.plc_url.clone(),
            ..ResolverConfig::default()
        }
    };
    let resolver = Resolver::new(resolver_config, guard.clone());
    let now = crate::jetstream::now_us();
    for up in &config.upstreams {
        let url = hosts::upstream_url(&up.url).map_err(|reason| ConfigError {
            key: "upstreams".into(),
            reason,
        })?;
        store
            .upsert_host(
                &hosts::host_key(&url),
                url.as_str(),
                up.kind,
                up.trusted,
                HostSource::Config,
                now,
            )
            .await?;
    }
    let mut host_accounts: HashMap<u32, HashSet<String>> = HashMap::new();
    for (id, did) in store.host_accounts().await? {
        host_accounts.entry(id).or_default().insert(did);
    }
    let mut known: KnownActors = store.known_actors().await?.into_iter().collect();
    let checkpoint = store.checkpoint_seq().await?;
    let mut cursors = HashMap::new();
    let handle = log.handle();
    let recovered = recover(&handle, checkpoint, &mut cursors, &mut known)?;
    if recovered > 0 {
        info!(
            events = recovered,
            "recovered events logged after the last checkpoint"
        );
    }
    let mut runtimes = BTreeMap::new();
    for mut row in store.hosts().await? {
        if let Some(c) = cursors.get(&row.id) {
            row.cursor = Some(row.cursor.map_or(*c, |r| r.max(*c)));
        }
        let accounts = host_accounts.remove(&row.id).unwrap_or_default();
        runtimes.insert(row.id, Arc::new(HostRuntime::new(row, accounts)));
    }
    let takedowns: HashSet<String> = store.takedowns().await?.into_iter().collect();

    let dictionary = {
        let path = dictionary_path(config.zstd_dictionary.as_deref());
        match Dictionary::load(&path) {
            Ok(d) => Some(d),
            Err(e) => {
                warn!(error = %e, "Jetstream compress=true is unavailable");
                None
            }
        }
    };
    let admin = admin::AdminAuth::load_or_create(&config.admin_tokens_file)?;
    let filter = Filter::with_known(config.filter.clone(), known).map_err(|e| ConfigError {
        key: "filter".into(),
        reason: e.to_string(),
    })?;

    let labelers = config.labelers.clone();
    let rules = RwLock::new(config.filter.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (item_tx, item_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        hub: Arc::new(Hub::new(
            config.subscribers.buffer_events,
            config.subscribers.max,
        )),
        config,
        log: handle,
        store: store.clone(),
        hosts: RwLock::new(runtimes),
        takedowns: RwLock::new(takedowns),
        rules,
        metrics: Metrics::default(),
        writer: item_tx,
        commands: cmd_tx,
        resolver,
        guard,
        dictionary,
        admin,
        labels: Arc::default(),
        stop: stop_rx,
    });
    let writer = ingest::Writer::new(Arc::clone(&shared), log, filter, item_rx, cmd_rx);
    let mut writer = tokio::spawn(writer.run());
    for host in shared.all_hosts() {
        if !host.row().banned {
            tokio::spawn(ingest::run_upstream(Arc::clone(&shared), host));
        }
    }
    // Also with no labelers configured: label sync first lifts the takedowns of labelers
    // that were removed from the configuration.
    tokio::spawn(follow_labelers(Arc::clone(&shared), labelers));
    let addr = listener.local_addr().map_err(RelayError::Serve)?;
    info!(%addr, "relay listening");

    let app = server::router(Arc::clone(&shared));
    let mut stop_serve = shared.stop.clone();
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { stopped(&mut stop_serve).await });
    let server = tokio::spawn(async move { serve.await });

    // The writer only ends early on a fatal error (the log or the state store failing):
    // then the relay stops rather than serve without persisting.
    let finished = tokio::select! {
        () = shutdown => None,
        r = &mut writer => Some(r),
    };
    info!("relay stopping");
    let _ = stop_tx.send(true);
    let finished = match finished {
        Some(r) => r,
        None => writer.await,
    };
    let result = match finished {
        Ok(r) => r,
        Err(e) => Err(RelayError::State(format!("writer task failed: {e}"))),
    };
    // Subscribers end on the stop signal; give the server a moment to close them.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    store.close().await;
    result
}

/// Follows the configured labelers until the relay stops, honouring their account
/// takedowns ([`takedown_labels`]).
async fn follow_labelers(shared: Arc<Shared>, labelers: Vec<config::LabelerConfig>) {
    let sync_config = crate::labels::LabelSyncConfig {
        sources: labelers
            .into_iter()
            .map(|l| crate::labels::LabelSource {
                did: l.did,
                url: l.url,
            })
            .collect(),
        plc_url: shared.config.plc_url.clone(),
        allow_loopback: shared.config.allow_loopback,
        ..crate::labels::LabelSyncConfig::default()
    };
    let (resolver, guard, stop, stats) = (
        shared.resolver.clone(),
        shared.guard.clone(),
        shared.stop.clone(),
        Arc::clone(&shared.labels),
    );
    let sink = Arc::new(takedown_labels::TakedownSink { shared });
    if let Err(e) = crate::labels::sync::run(sync_config, sink, stats, resolver, guard, stop).await
    {
        warn!(error = %e, "label sync could not start; labeler takedowns are not honoured");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::rfc3339(1_750_000_000_123_456),
            "2025-06-15T15:06:40.123456Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
