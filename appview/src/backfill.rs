//! Backfill: indexes whole repositories (`com.atproto.sync.getRepo`), for accounts whose
//! history predates the AppView's stream cursor.
//!
//! 1. **List**: the given DIDs, or every active repository a PDS or relay lists
//!    (`com.atproto.sync.listRepos`, paged), goes on the store's work list
//!    (`backfill_repos`, pending). Listing again adds only what is new.
//! 2. **Fetch and verify**: each pending DID is resolved to its PDS and signing key, its
//!    export fetched through the SSRF-guarded client and verified whole by the sync layer
//!    ([`fetch_repo`]: every block, the signed commit, the complete MST).
//! 3. **Index**: the export's AC records, profile and follows go through the same
//!    [`Indexer`] as live events (lenient validation, repairs recorded), and
//!    [`Store::apply_snapshot`] applies them with the export's rev in one transaction,
//!    marking the repository done.
//!
//! **Resumable**: a repository is done only in the transaction that indexed it, so an
//! interrupted run (Ctrl-C, kill -9) resumes with what is not done, and the result is the
//! same index as an uninterrupted run. Failures are recorded and retried by the next run.
//!
//! **Live events without a gap**: backfill and the live stream write the same store. Each
//! live commit moves its actor's rev forward; an export older than the stored rev is
//! refused and fetched again (the PDS then serves a newer one), so a backfill never undoes
//! a later live write. A live stream that lags behind an export replays older commits over
//! it, and its later commits bring the account back to the newest state.
//!
//! At most `per_host` fetches run against one PDS at a time, `max_parallel` overall.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_relay::sync::identity::Resolver;
use atelier_relay::sync::keys::PublicKey;
use atelier_relay::sync::ssrf::GuardedClient;
use atelier_relay::sync::stream::fetch_repo;
use atelier_relay::sync::verify::{Verifier, VerifyMode};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tracing::warn;

use crate::error::AppViewError;
use crate::index::Indexer;
use crate::store::{Snapshot, Store};

/// Which repositories to backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackfillSource {
    /// These accounts.
    Dids(Vec<String>),
    /// Every active repository this PDS or relay lists (`https://host`, `http://` in the
    /// sandbox).
    Host(String),
}

/// How to backfill.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// What to backfill.
    pub source: BackfillSource,
    /// The PLC directory for `did:plc` documents.
    pub plc_url: String,
    /// Allow loopback and private addresses (sandbox only).
    pub allow_loopback: bool,
    /// Fetches at once against one PDS.
    pub per_host: usize,
    /// Fetches at once overall.
    pub max_parallel: usize,
}

impl BackfillConfig {
    /// Defaults: the public PLC, 4 fetches per host, 16 overall.
    pub fn new(source: BackfillSource) -> BackfillConfig {
        BackfillConfig {
            source,
            plc_url: "https://plc.directory".to_owned(),
            allow_loopback: false,
            per_host: 4,
            max_parallel: 16,
        }
    }
}

/// Where a run stands (sent after every repository).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Repositories on the work list.
    pub total: u64,
    /// Indexed (by this run or an earlier one).
    pub done: u64,
    /// Failed in this run.
    pub failed: u64,
    /// AC records indexed by this run.
    pub records: u64,
}

/// How many times an export older than the live stream's rev is fetched again.
const STALE_RETRIES: usize = 3;

/// `listRepos` page size.
const LIST_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
struct ListRepos {
    #[serde(default)]
    cursor: Option<String>,
    repos: Vec<ListedRepo>,
}

#[derive(Debug, Deserialize)]
struct ListedRepo {
    did: String,
    #[serde(default = "active_by_default")]
    active: bool,
}

fn active_by_default() -> bool {
    true
}

/// Runs a backfill into `store` until every listed repository is done or failed, or
/// `shutdown` completes (in-flight repositories finish or are dropped uncommitted; the
/// next run resumes). Progress goes to `progress` after each repository.
///
/// # Errors
/// If listing fails or the store fails; a repository that cannot be fetched or verified
/// is recorded as failed instead.
pub async fn run<S: Store>(
    config: &BackfillConfig,
    store: Arc<S>,
    progress: watch::Sender<Progress>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Progress, AppViewError> {
    let (http, resolver) = crate::ingest::identity(&config.plc_url, config.allow_loopback)
        .map_err(|reason| source_error(&config.plc_url, reason))?;
    match &config.source {
        BackfillSource::Dids(dids) => store.backfill_enqueue(dids).await?,
        BackfillSource::Host(host) => list_host(&http, host, &*store).await?,
    }
    let pending = store.backfill_pending(usize::MAX).await?;
    let counts = store.backfill_counts().await?;
    let mut state = Progress {
        total: counts.pending + counts.done + counts.failed,
        done: counts.done,
        ..Progress::default()
    };
    progress.send_replace(state);

    let indexer = Arc::new(Indexer::new()?);
    let global = Arc::new(Semaphore::new(config.max_parallel.max(1)));
    let hosts: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut queue = pending.into_iter();
    loop {
        // Start tasks while there is room and work.
        while tasks.len() < config.max_parallel.max(1) {
            let Some(did) = queue.next() else { break };
            let job = Job {
                did,
                store: Arc::clone(&store),
                http: http.clone(),
                resolver: resolver.clone(),
                indexer: Arc::clone(&indexer),
                global: Arc::clone(&global),
                hosts: Arc::clone(&hosts),
                per_host: config.per_host.max(1),
            };
            tasks.spawn(job.run());
        }
        let finished = tokio::select! {
            _ = &mut shutdown => {
                tasks.abort_all();
                // Repositories whose tasks finished before the abort are stored as done:
                // count them, so the progress returned matches the store (a resumed run
                // skips them).
                while let Some(finished) = tasks.join_next().await {
                    count(&mut state, finished)?;
                }
                progress.send_replace(state);
                break;
            }
            finished = tasks.join_next() => finished,
        };
        let Some(finished) = finished else { break };
        if let Err(e) = count(&mut state, finished) {
            tasks.abort_all();
            return Err(e);
        }
        progress.send_replace(state);
    }
    Ok(state)
}

/// Adds one joined backfill task's outcome to `state` (a cancelled task adds nothing).
fn count(
    state: &mut Progress,
    finished: Result<Result<Outcome, crate::store::StoreError>, tokio::task::JoinError>,
) -> Result<(), AppViewError> {
    match finished {
        Ok(Ok(Outcome::Done { records })) => {
            state.done += 1;
            state.records += records;
        }
        Ok(Ok(Outcome::Failed)) => state.failed += 1,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            return Err(source_error(
                "backfill",
                format!("a backfill task failed: {e}"),
            ));
        }
    }
    Ok(())
}

fn source_error(source: &str, reason: String) -> AppViewError {
    AppViewError::Source {
        source_url: source.to_owned(),
        reason,
    }
}

/// Lists every active repository `host` serves onto the work list.
async fn list_host<S: Store>(
    http: &GuardedClient,
    host: &str,
    store: &S,
) -> Result<(), AppViewError> {
    let base = host.trim_end_matches('/');
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/xrpc/com.atproto.sync.listRepos?limit={LIST_PAGE}");
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.extend(url::form_urlencoded::byte_serialize(c.as_bytes()));
        }
        let page: ListRepos = http
            .get_json(&url)
            .await
            .map_err(|e| source_error(host, format!("listRepos: {e}")))?;
        let dids: Vec<String> = page
            .repos
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.did)
            .collect();
        store.backfill_enqueue(&dids).await?;
        match page.cursor {
            Some(c) if !dids.is_empty() && cursor.as_deref() != Some(c.as_str()) => {
                cursor = Some(c)
            }
            _ => return Ok(()),
        }
    }
}

/// What became of one repository.
enum Outcome {
    Done { records: u64 },
    Failed,
}

/// One repository's backfill.
struct Job<S> {
    did: String,
    store: Arc<S>,
    http: GuardedClient,
    resolver: Resolver,
    indexer: Arc<Indexer>,
    global: Arc<Semaphore>,
    hosts: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
    per_host: usize,
}

impl<S: Store> Job<S> {
    async fn run(self) -> Result<Outcome, crate::store::StoreError> {
        match self.index().await {
            Ok(Ok(records)) => Ok(Outcome::Done { records }),
            Ok(Err(error)) => {
                warn!(did = %self.did, %error, "backfill of this repository failed");
                self.store.backfill_failed(&self.did, &error).await?;
                Ok(Outcome::Failed)
            }
            Err(e) => Err(e),
        }
    }

    /// Fetches, verifies and applies the repository: `Ok(Err(why))` when it cannot be
    /// fetched or verified, `Err` when the store fails.
    async fn index(&self) -> Result<Result<u64, String>, crate::store::StoreError> {
        let did = self.did.as_str();
        let (pds, key) = match self.identity().await {
            Ok(found) => found,
            Err(why) => return Ok(Err(why)),
        };
        let host = url::Url::parse(&pds)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let host_slots = match self.hosts.lock() {
            Ok(mut hosts) => Arc::clone(
                hosts
                    .entry(host)
                    .or_insert_with(|| Arc::new(Semaphore::new(self.per_host))),
            ),
            Err(_) => return Ok(Err("host table poisoned".to_owned())),
        };
        for attempt in 0..=STALE_RETRIES {
            let fetched = {
                let (Ok(_global), Ok(_host)) =
                    (self.global.acquire().await, host_slots.acquire().await)
                else {
                    return Ok(Err("backfill stopped".to_owned()));
                };
                let mut verifier = Verifier::new(VerifyMode::Full);
                fetch_repo(&self.http, &pds, did, &mut verifier, &key).await
            };
            let (rev, records) = match fetched {
                Ok(found) => found,
                Err(why) => return Ok(Err(format!("getRepo from {pds}: {why}"))),
            };
            let (mut changes, mut rejected) = (Vec::new(), Vec::new());
            self.indexer
                .repo(did, &records, &mut changes, &mut rejected);
            for r in &rejected {
                warn!(uri = %r.uri, reason = r.reason, detail = %r.detail, "record kept out of the index");
            }
            let indexed = changes
                .iter()
                .filter(|c| matches!(c, crate::index::Change::Record(_)))
                .count() as u64;
            match self.store.apply_snapshot(did, &rev, &changes).await? {
                Snapshot::Applied(_) => return Ok(Ok(indexed)),
                Snapshot::Stale { stored } => {
                    warn!(
                        did,
                        rev, stored, attempt, "export older than the live stream; fetching again"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(Err(format!(
            "the live stream stayed ahead of {STALE_RETRIES} exports"
        )))
    }

    /// The account's PDS endpoint and signing key, from its DID document.
    async fn identity(&self) -> Result<(String, PublicKey), String> {
        let doc = self
            .resolver
            .resolve_did(&self.did)
            .await
            .map_err(|e| e.to_string())?;
        let pds = doc
            .pds_endpoint()
            .ok_or_else(|| format!("{} has no #atproto_pds service", self.did))?
            .trim_end_matches('/')
            .to_owned();
        let key_ref = doc
            .signing_key()
            .ok_or_else(|| format!("{} has no #atproto key", self.did))?;
        let key = PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase)
            .map_err(|e| e.to_string())?;
        Ok((pds, key))
    }
}

/// A one-line progress report: `done/total (pct) repos, records, rate, ETA`.
pub fn describe(p: &Progress, started: Instant, done_at_start: u64) -> String {
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    let this_run = p.done.saturating_sub(done_at_start) + p.failed;
    let rate = this_run as f64 / elapsed;
    let left = p.total.saturating_sub(p.done + p.failed);
    let pct = if p.total == 0 {
        100.0
    } else {
        (p.done + p.failed) as f64 * 100.0 / p.total as f64
    };
    let eta = if left == 0 {
        "done".to_owned()
    } else if rate > 0.0 {
        format!("ETA {:.0} s", left as f64 / rate)
    } else {
        "ETA ?".to_owned()
    };
    format!(
        "{}/{} repos ({pct:.0}%), {} failed, {} records, {rate:.1} repos/s, {eta}",
        p.done, p.total, p.failed, p.records
    )
}
