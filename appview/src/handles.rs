//! Handle verification: a background task that checks actors' handles both ways and
//! stores the result.
//!
//! `#identity` events announce handles, and ingest stores them as announced, unverified
//! (`actors.handle_verified` false, the check due at once). This task takes the actors
//! whose check is due ([`Store::handles_due`]: never checked, changed since, a retry whose
//! delay has passed, or a verified handle due for its periodic re-check), a bounded batch
//! per round, the longest due first, and for each one resolves the DID document, takes the
//! handle its `alsoKnownAs` claims, and resolves that handle back to the DID (DNS TXT
//! `_atproto.<handle>`, else `https://<handle>/.well-known/atproto-did`), through the
//! relay's [`Resolver::verify_handle`]. The outcome is written per actor
//! ([`Store::record_handle_check`]):
//!
//! - verified: the claimed handle (normalised) replaces the stored one and is marked
//!   verified; it is checked again after [`HandleConfig::recheck`];
//! - invalid (no claim, or it resolves elsewhere or not at all): marked unverified, the
//!   announced handle kept; retried after a delay that doubles with each failure in a row,
//!   from [`HandleConfig::retry_min`] to [`HandleConfig::retry_max`], so a broken handle is
//!   never retried in a loop;
//! - unreachable (the DID document could not be fetched): the flag stays as it was, retried
//!   on the same schedule.
//!
//! An `#identity` that arrives while a check runs wins: the write is skipped and the new
//! handle is checked next. The task wakes after every ingest commit (new `#identity`
//! events) and at [`HandleConfig::interval`]; checks run at most
//! [`HandleConfig::concurrency`] at a time. Every check fetches afresh (the resolver's
//! cached answers for the DID and its handles are dropped first): checks are rare, and a
//! cached answer from before a handle change would verify the wrong thing.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use atelier_relay::sync::identity::{HandleStatus, Resolver, ResolverConfig};
use atelier_relay::sync::ssrf::{Dns, GuardedClient, SsrfPolicy, StaticDns};
use futures_util::StreamExt;
use tracing::{debug, info, warn};

use crate::ingest::IngestStats;
use crate::store::{ActorHandle, HandleCheck, HandleVerdict, Store, StoreError};

/// How the verifier paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleConfig {
    /// The longest wait between rounds when no ingest commit wakes it. Default 60 s.
    pub interval: Duration,
    /// Actors checked per round at most (another round follows at once when it was
    /// full). Default 100.
    pub batch: usize,
    /// Checks in flight at once. Default 4.
    pub concurrency: usize,
    /// How long one check (DID document and handle resolution) may take. Default 30 s.
    pub timeout: Duration,
    /// When a verified handle is checked again (a domain can lapse or move). Default 24 h.
    pub recheck: Duration,
    /// The delay before the first retry of a handle that did not verify; it doubles with
    /// each failure in a row. Default 1 minute.
    pub retry_min: Duration,
    /// The longest retry delay. Default 6 hours.
    pub retry_max: Duration,
}

impl Default for HandleConfig {
    fn default() -> Self {
        HandleConfig {
            interval: Duration::from_secs(60),
            batch: 100,
            concurrency: 4,
            timeout: Duration::from_secs(30),
            recheck: Duration::from_secs(24 * 60 * 60),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 60 * 60),
        }
    }
}

impl HandleConfig {
    /// The delay before the next check after `failures` failures in a row (at least 1).
    pub fn retry_after(&self, failures: i64) -> Duration {
        let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.retry_min
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }
}

/// A resolver for the verifier like [`crate::ingest::identity`]'s, with `dns` answering
/// address and `_atproto` TXT lookups (a
/// [`StaticDns`](atelier_relay::sync::ssrf::StaticDns) in tests).
///
/// # Errors
/// If the HTTP client cannot be built (its message).
pub fn resolver(
    plc_url: &str,
    allow_loopback: bool,
    dns: Arc<dyn Dns>,
) -> Result<Resolver, String> {
    let (policy, config) = if allow_loopback {
        (SsrfPolicy::sandbox(), ResolverConfig::sandbox(plc_url))
    } else {
        (
            SsrfPolicy::default(),
            ResolverConfig {
                plc_url: plc_url.to_owned(),
                ..ResolverConfig::default()
            },
        )
    };
    let guard = GuardedClient::with_dns(policy, dns).map_err(|e| e.to_string())?;
    Ok(Resolver::new(config, guard))
}

/// The sandbox's DNS when none is configured: `localhost` is loopback and nothing else
/// resolves, so no DNS server is asked about `.test` names (which no public DNS holds).
pub fn sandbox_dns() -> Arc<dyn Dns> {
    Arc::new(StaticDns::new().with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

/// Runs the verifier over `store` until `shutdown` completes, resolving through `resolver`
/// (whose DNS serves the `_atproto` TXT lookups: tests give it a
/// [`StaticDns`](atelier_relay::sync::ssrf::StaticDns)). Store failures are logged and
/// retried at the next round; the task only ends with `shutdown`.
pub async fn run<S: Store>(
    config: HandleConfig,
    store: Arc<S>,
    stats: Arc<IngestStats>,
    resolver: Resolver,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut commits = stats.subscribe_commits();
    let work = async {
        loop {
            let full = match round(&config, &*store, &stats, &resolver).await {
                Ok(checked) => checked >= config.batch.max(1),
                Err(e) => {
                    warn!(error = %e, "handle verification round failed");
                    false
                }
            };
            if full {
                continue;
            }
            // The verifier's own writes move the commit count too, which costs one more
            // (empty) round: cheaper than risking to miss an ingest commit.
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() {
                        // No more commits can come: fall back to the interval alone.
                        tokio::time::sleep(config.interval).await;
                    }
                }
                () = tokio::time::sleep(config.interval) => {}
            }
        }
    };
    tokio::select! {
        () = shutdown => {}
        () = work => {}
    }
    info!("handle verifier stopped");
}

/// One round: checks the actors due now, at most [`HandleConfig::batch`]. Returns how many
/// were due.
async fn round<S: Store>(
    config: &HandleConfig,
    store: &S,
    stats: &IngestStats,
    resolver: &Resolver,
) -> Result<usize, StoreError> {
    let now = atelier_relay::jetstream::now_us();
    let due = store.handles_due(now, config.batch.max(1)).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let results: Vec<(ActorHandle, HandleCheck)> = futures_util::stream::iter(due)
        .map(|actor| async move {
            let check = check(config, resolver, &actor).await;
            (actor, check)
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let count = results.len();
    let mut renamed = false;
    for (actor, check) in results {
        let counter = match &check.verdict {
            HandleVerdict::Verified(_) => &stats.handle_checks.verified,
            HandleVerdict::Invalid => &stats.handle_checks.invalid,
            HandleVerdict::Unreachable => &stats.handle_checks.unreachable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let written = store.record_handle_check(&actor, &check).await?;
        debug!(did = %actor.did, verdict = ?check.verdict, written, "handle checked");
        if written
            && let HandleVerdict::Verified(handle) = &check.verdict
            && actor.handle.as_deref() != Some(handle.as_str())
        {
            renamed = true;
        }
    }
    if renamed {
        // Views show the handle: drop cached responses.
        stats.note_commit();
    }
    Ok(count)
}

/// Checks one actor's handle (afresh) and says when to check it next.
async fn check(config: &HandleConfig, resolver: &Resolver, actor: &ActorHandle) -> HandleCheck {
    let verdict = match tokio::time::timeout(config.timeout, verify(resolver, &actor.did)).await {
        Ok(verdict) => verdict,
        Err(_) => {
            debug!(did = %actor.did, "handle check timed out");
            HandleVerdict::Unreachable
        }
    };
    let now = atelier_relay::jetstream::now_us();
    let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let failures = match verdict {
        HandleVerdict::Verified(_) => 0,
        _ => actor.failures.saturating_add(1),
    };
    let wait = match verdict {
        HandleVerdict::Verified(_) => config.recheck,
        _ => config.retry_after(failures),
    };
    HandleCheck {
        verdict,
        checked_us: now,
        due_us: now.saturating_add(micros(wait)).max(1),
        failures,
    }
}

/// Resolves `did`'s document and verifies the handle it claims, without cached answers.
async fn verify(resolver: &Resolver, did: &str) -> HandleVerdict {
    resolver.invalidate(did);
    let doc = match resolver.resolve_did(did).await {
        Ok(doc) => doc,
        // No such DID, or a document that cannot be right: nothing to verify.
        Err(e)
            if e.is_not_found()
                || matches!(
                    e.reason(),
                    "invalid_did" | "unsupported_did_method" | "doc_id_mismatch"
                ) =>
        {
            return HandleVerdict::Invalid;
        }
        Err(e) => {
            debug!(did, error = %e, "DID document unreachable for the handle check");
            return HandleVerdict::Unreachable;
        }
    };
    if let Some(claimed) = doc.handle() {
        resolver.invalidate_handle(claimed);
    }
    match resolver.verify_handle(did, &doc).await {
        HandleStatus::Verified(handle) => HandleVerdict::Verified(handle),
        HandleStatus::Invalid => HandleVerdict::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::HandleConfig;

    #[test]
    fn retries_double_up_to_the_cap() {
        let config = HandleConfig::default();
        let secs = |n| config.retry_after(n).as_secs();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(9), secs(10)],
            [60, 120, 240, 15_360, 6 * 60 * 60]
        );
        assert_eq!(
            config.retry_after(i64::MAX),
            Duration::from_secs(6 * 60 * 60)
        );
        assert_eq!(config.retry_after(0), Duration::from_secs(60));
    }
}
