//! The identity resolver: DIDs to documents, handles to DIDs, with caching.
//!
//! Resolution paths:
//! - `did:plc:…` → `GET {plc_url}/{did}`; 404 is [`IdentityError::NotFound`], 410
//!   [`IdentityError::Tombstoned`].
//! - `did:web:host` → `GET https://host/.well-known/did.json` (plain http in the sandbox
//!   when the host resolves to loopback only).
//! - handle → DNS TXT `_atproto.<handle>` (`did=…`) and `GET https://<handle>/.well-known/atproto-did`,
//!   started together; a DID from DNS wins as soon as it arrives (the HTTP fetch is then
//!   dropped), and the well-known answer is used only when DNS has none.
//!
//! Every document must describe the DID asked for (`id` equal), else
//! [`IdentityError::DocIdMismatch`].
//!
//! Caching: answers live for [`ResolverConfig::positive_ttl`], "not found" answers for
//! [`ResolverConfig::negative_ttl`], transient failures are not cached. Concurrent
//! resolutions of one DID share a single fetch; [`Resolver::invalidate`] (on `#identity`)
//! also cancels the sharing, so an answer fetched before the event is never cached after
//! it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::IdentityError;
use super::cache::TtlCache;
use super::document::DidDocument;
use super::syntax::{DidMethod, check_did, normalize_handle, parse_did};
use crate::sync::ssrf::{AddressClass, DnsError, GuardedClient, classify};

/// The most bytes read from `/.well-known/atproto-did` (a DID is at most 2048 bytes).
const WELL_KNOWN_LIMIT: usize = 4096;

/// How the resolver behaves. [`ResolverConfig::default`] is the production profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    /// The PLC directory's base URL. Default `https://plc.directory`.
    pub plc_url: String,
    /// The sandbox profile: `.test` and `.localhost` handles are resolved, `did:web` may
    /// carry a `%3A` port, and did:web and handle well-known fetches use plain http when the
    /// host resolves to loopback only. The guard must also allow loopback for any of it to
    /// connect.
    pub sandbox: bool,
    /// How long a document or handle answer is reused. Default 1 hour.
    pub positive_ttl: Duration,
    /// How long "not found" and "tombstoned" are reused. Default 5 minutes.
    pub negative_ttl: Duration,
    /// How many DIDs (and, separately, handles) are cached. Default 50,000.
    pub cache_capacity: usize,
    /// The least time between two forced refreshes of one DID's key
    /// ([`Resolver::refresh_signing_key`]). Default 1 minute.
    pub refresh_interval: Duration,
    /// The largest DID document read. Default 64 KiB (PLC documents are under 2 KiB).
    pub max_document_bytes: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            plc_url: "https://plc.directory".into(),
            sandbox: false,
            positive_ttl: Duration::from_secs(60 * 60),
            negative_ttl: Duration::from_secs(5 * 60),
            cache_capacity: 50_000,
            refresh_interval: Duration::from_secs(60),
            max_document_bytes: 64 * 1024,
        }
    }
}

impl ResolverConfig {
    /// The sandbox profile against the PLC at `plc_url`.
    pub fn sandbox(plc_url: impl Into<String>) -> Self {
        ResolverConfig {
            plc_url: plc_url.into(),
            sandbox: true,
            ..ResolverConfig::default()
        }
    }
}

/// The outcome of bidirectional handle verification.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HandleStatus {
    /// The document claims this handle and the handle resolves back to the DID
    /// (lowercased).
    Verified(String),
    /// No claimed handle, a malformed or reserved one, one that resolves elsewhere, or one
    /// that could not be resolved: shown as `handle.invalid`.
    Invalid,
}

impl HandleStatus {
    /// The handle to display: the verified handle or `handle.invalid`.
    pub fn as_str(&self) -> &str {
        match self {
            HandleStatus::Verified(handle) => handle,
            HandleStatus::Invalid => "handle.invalid",
        }
    }

    /// Whether the handle was verified.
    pub fn is_verified(&self) -> bool {
        matches!(self, HandleStatus::Verified(_))
    }
}

/// The result of [`Resolver::refresh_signing_key`].
#[derive(Debug, Clone)]
pub enum KeyRefresh {
    /// The document was fetched again and its `#atproto` key differs from the cached one
    /// (or nothing was cached): verify again with the new document's key.
    Changed(Arc<DidDocument>),
    /// Fetched again, same key: the signature really is bad.
    Unchanged(Arc<DidDocument>),
    /// This DID was refreshed less than [`ResolverConfig::refresh_interval`] ago (or too
    /// many DIDs were): nothing was fetched, treat the signature as bad.
    RateLimited,
}

/// Counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// DID documents fetched (requests started).
    pub did_fetches: u64,
    /// `resolve_did` calls answered from the cache (including cached "not found").
    pub did_cache_hits: u64,
    /// `resolve_did` calls that joined a fetch already in flight.
    pub did_coalesced: u64,
    /// Handle resolutions performed (DNS and well-known).
    pub handle_lookups: u64,
    /// `resolve_handle` calls answered from the cache.
    pub handle_cache_hits: u64,
    /// Key refreshes refused by the per-DID rate limit.
    pub refreshes_rate_limited: u64,
}

type DidResult = Result<Arc<DidDocument>, IdentityError>;
type HandleResult = Result<String, IdentityError>;
type SharedFetch = Shared<BoxFuture<'static, DidResult>>;

/// Resolves DIDs and handles through a [`GuardedClient`], with a cache. Cheap to clone;
/// clones share the cache.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    config: ResolverConfig,
    http: GuardedClient,
    dids: Mutex<TtlCache<DidResult>>,
    handles: Mutex<TtlCache<HandleResult>>,
    /// Fetches in flight by DID, with an id so a fetch that was invalidated while running
    /// can tell it no longer owns the entry. Lock order: `inflight`, then `dids`, then
    /// `handles`.
    inflight: Mutex<HashMap<String, (u64, SharedFetch)>>,
    next_flight: AtomicU64,
    /// When each DID's key was last force-refreshed.
    refreshed: Mutex<HashMap<String, Instant>>,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    did_fetches: AtomicU64,
    did_cache_hits: AtomicU64,
    did_coalesced: AtomicU64,
    handle_lookups: AtomicU64,
    handle_cache_hits: AtomicU64,
    refreshes_rate_limited: AtomicU64,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.inner.config)
            .field("http", &self.inner.http)
            .field("cached_dids", &lock(&self.inner.dids).len())
            .field("cached_handles", &lock(&self.inner.handles).len())
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, ignoring poisoning (the protected maps stay consistent between
/// statements, and nothing here panics while holding a lock).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Resolver {
    /// A resolver fetching through `http` (whose [`Dns`](crate::sync::ssrf::Dns) also serves
    /// the handle TXT lookups).
    pub fn new(config: ResolverConfig, http: GuardedClient) -> Self {
        let capacity = config.cache_capacity;
        Resolver {
            inner: Arc::new(Inner {
                config,
                http,
                dids: Mutex::new(TtlCache::new(capacity)),
                handles: Mutex::new(TtlCache::new(capacity)),
                inflight: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                refreshed: Mutex::new(HashMap::new()),
                stats: Counters::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ResolverConfig {
        &self.inner.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ResolverStats {
        let s = &self.inner.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ResolverStats {
            did_fetches: get(&s.did_fetches),
            did_cache_hits: get(&s.did_cache_hits),
            did_coalesced: get(&s.did_coalesced),
            handle_lookups: get(&s.handle_lookups),
            handle_cache_hits: get(&s.handle_cache_hits),
            refreshes_rate_limited: get(&s.refreshes_rate_limited),
        }
    }

    /// The DID document for `did` (`did:plc` or `did:web`), from the cache or fetched.
    pub async fn resolve_did(&self, did: &str) -> Result<Arc<DidDocument>, IdentityError> {
        let method = parse_did(did, self.inner.config.sandbox)?;
        if let Some(hit) = lock(&self.inner.dids).get(did, Instant::now()) {
            bump(&self.inner.stats.did_cache_hits);
            return hit;
        }
        self.join_fetch(did, method).await
    }

    /// The fetch in flight for `did`, or a new one.
    fn join_fetch(&self, did: &str, method: DidMethod) -> SharedFetch {
        let mut inflight = lock(&self.inner.inflight);
        if let Some((_, fetch)) = inflight.get(did) {
            bump(&self.inner.stats.did_coalesced);
            return fetch.clone();
        }
        // A fetch may have finished between the caller's cache miss and this lock.
        if let Some(hit) = lock(&self.inner.dids).get(did, Instant::now()) {
            bump(&self.inner.stats.did_cache_hits);
            return futures_util::future::ready(hit).boxed().shared();
        }
        let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::clone(&self.inner);
        let owned = did.to_owned();
        let fetch = async move {
            let result = inner.fetch_did(&owned, &method).await;
            inner.finish_flight(&owned, id, &result);
            result
        }
        .boxed()
        .shared();
        inflight.insert(did.to_owned(), (id, fetch.clone()));
        // Drive the fetch to completion even if every caller gives up (a caller's own
        // timeout, a dropped task), so its in-flight entry is always cleaned up and the
        // answer cached for the next caller.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(fetch.clone().map(drop));
        }
        fetch
    }

    /// Forgets everything cached about `did` (call on `#identity`), including the handle its
    /// cached document claimed. A fetch in flight is not shared with later callers, and its
    /// answer is not cached.
    pub fn invalidate(&self, did: &str) {
        let mut inflight = lock(&self.inner.inflight);
        inflight.remove(did);
        let old = lock(&self.inner.dids).remove(did);
        drop(inflight);
        if let Some(Ok(doc)) = old
            && let Some(handle) = doc.handle()
            && let Ok(handle) = normalize_handle(handle, self.inner.config.sandbox)
        {
            lock(&self.inner.handles).remove(&handle);
        }
    }

    /// Forgets the cached resolution of `handle` (an `#identity` event's `handle`).
    pub fn invalidate_handle(&self, handle: &str) {
        if let Ok(handle) = normalize_handle(handle, self.inner.config.sandbox) {
            lock(&self.inner.handles).remove(&handle);
        }
    }

    /// After a signature failed against the cached key: fetch `did`'s document again (at
    /// most once per [`ResolverConfig::refresh_interval`] per DID) and say whether the
    /// `#atproto` key changed. A flood of bad signatures for one DID costs one fetch.
    pub async fn refresh_signing_key(&self, did: &str) -> Result<KeyRefresh, IdentityError> {
        parse_did(did, self.inner.config.sandbox)?;
        let now = Instant::now();
        let interval = self.inner.config.refresh_interval;
        {
            let mut refreshed = lock(&self.inner.refreshed);
            let recent = |at: &Instant| now.saturating_duration_since(*at) < interval;
            if refreshed.get(did).is_some_and(recent) {
                bump(&self.inner.stats.refreshes_rate_limited);
                return Ok(KeyRefresh::RateLimited);
            }
            if refreshed.len() >= self.inner.config.cache_capacity.max(1) {
                refreshed.retain(|_, at| recent(at));
                if refreshed.len() >= self.inner.config.cache_capacity.max(1) {
                    bump(&self.inner.stats.refreshes_rate_limited);
                    return Ok(KeyRefresh::RateLimited);
                }
            }
            refreshed.insert(did.to_owned(), now);
        }
        let previous = lock(&self.inner.dids)
            .peek(did, now)
            .and_then(|cached| cached.as_ref().ok())
            .and_then(|doc| doc.signing_key());
        {
            let mut inflight = lock(&self.inner.inflight);
            inflight.remove(did);
            lock(&self.inner.dids).remove(did);
        }
        let doc = self.resolve_did(did).await?;
        if previous.is_some() && doc.signing_key() == previous {
            Ok(KeyRefresh::Unchanged(doc))
        } else {
            Ok(KeyRefresh::Changed(doc))
        }
    }

    /// The DID `handle` points to, from DNS TXT `_atproto.<handle>` or the well-known file
    /// (DNS wins). The handle is normalised and checked first; reserved TLDs are refused
    /// without any lookup.
    pub async fn resolve_handle(&self, handle: &str) -> Result<String, IdentityError> {
        let handle = normalize_handle(handle, self.inner.config.sandbox)?;
        if let Some(hit) = lock(&self.inner.handles).get(&handle, Instant::now()) {
            bump(&self.inner.stats.handle_cache_hits);
            return hit;
        }
        let result = self.inner.lookup_handle(&handle).await;
        let ttl = match &result {
            Ok(_) => Some(self.inner.config.positive_ttl),
            Err(e) if e.is_not_found() => Some(self.inner.config.negative_ttl),
            Err(_) => None,
        };
        if let Some(ttl) = ttl {
            lock(&self.inner.handles).insert(handle, result.clone(), ttl, Instant::now());
        }
        result
    }

    /// Bidirectional verification: `doc` (resolved for `did`) claims a handle, and that
    /// handle resolves back to `did`. Any failure, including a failed lookup, is
    /// [`HandleStatus::Invalid`], as the reference implementations do.
    pub async fn verify_handle(&self, did: &str, doc: &DidDocument) -> HandleStatus {
        if doc.id() != did {
            return HandleStatus::Invalid;
        }
        let Some(claimed) = doc.handle() else {
            return HandleStatus::Invalid;
        };
        match self.resolve_handle(claimed).await {
            Ok(resolved) if resolved == did => {
                match normalize_handle(claimed, self.inner.config.sandbox) {
                    Ok(handle) => HandleStatus::Verified(handle),
                    Err(_) => HandleStatus::Invalid,
                }
            }
            Ok(other) => {
                tracing::debug!(did, handle = claimed, resolved = %other, "handle points elsewhere");
                HandleStatus::Invalid
            }
            Err(error) => {
                tracing::debug!(did, handle = claimed, %error, "handle did not resolve");
                HandleStatus::Invalid
            }
        }
    }
}

impl Inner {
    /// Fetches and checks one DID document.
    async fn fetch_did(&self, did: &str, method: &DidMethod) -> DidResult {
        bump(&self.stats.did_fetches);
        let url = match method {
            DidMethod::Plc => format!("{}/{did}", self.config.plc_url.trim_end_matches('/')),
            DidMethod::Web { host, port } => {
                let scheme = self.scheme_for(host).await;
                match port {
                    Some(port) => format!("{scheme}://{host}:{port}/.well-known/did.json"),
                    None => format!("{scheme}://{host}/.well-known/did.json"),
                }
            }
        };
        let body = match self
            .http
            .get_bytes(&url, self.config.max_document_bytes)
            .await
        {
            Ok(body) => body,
            Err(e) => {
                let did = did.to_owned();
                return Err(match e.status() {
                    Some(404) => IdentityError::NotFound { did },
                    Some(410) => IdentityError::Tombstoned { did },
                    _ => IdentityError::Fetch {
                        subject: did,
                        source: e,
                    },
                });
            }
        };
        let doc =
            DidDocument::from_json(&body).map_err(|source| IdentityError::InvalidDocument {
                did: did.to_owned(),
                source,
            })?;
        if doc.id() != did {
            return Err(IdentityError::DocIdMismatch {
                did: did.to_owned(),
                found: doc.id().to_owned(),
            });
        }
        Ok(Arc::new(doc))
    }

    /// Ends fetch `id` for `did`: caches its answer, unless it was invalidated meanwhile.
    fn finish_flight(&self, did: &str, id: u64, result: &DidResult) {
        let mut inflight = lock(&self.inflight);
        let owner = inflight.get(did).map(|(current, _)| *current);
        if owner != Some(id) {
            return;
        }
        inflight.remove(did);
        let ttl = match result {
            Ok(_) => self.config.positive_ttl,
            Err(e) if e.is_not_found() => self.config.negative_ttl,
            Err(_) => return,
        };
        lock(&self.dids).insert(did.to_owned(), result.clone(), ttl, Instant::now());
    }

    /// `http` for hosts that resolve to loopback only, in the sandbox; `https` otherwise.
    async fn scheme_for(&self, host: &str) -> &'static str {
        if !self.config.sandbox || !self.http.policy().allow_loopback {
            return "https";
        }
        let loopback = |ip: IpAddr| classify(ip) == Some(AddressClass::Loopback);
        let all_loopback = match host.parse::<IpAddr>() {
            Ok(ip) => loopback(ip),
            Err(_) => match self.http.dns().lookup_ip(host).await {
                Ok(addrs) => !addrs.is_empty() && addrs.iter().all(|a| loopback(a.ip())),
                Err(_) => false,
            },
        };
        if all_loopback { "http" } else { "https" }
    }

    /// Resolves a normalised handle: DNS and well-known together, DNS wins.
    async fn lookup_handle(&self, handle: &str) -> HandleResult {
        bump(&self.stats.handle_lookups);
        let dns = self.handle_from_dns(handle);
        let http = self.handle_from_well_known(handle);
        tokio::pin!(dns, http);
        enum First<D, H> {
            Dns(D),
            Http(H),
        }
        let first = tokio::select! {
            result = &mut dns => First::Dns(result),
            result = &mut http => First::Http(result),
        };
        let (dns_result, early_http) = match first {
            First::Dns(result) => (result, None),
            First::Http(result) => (dns.await, Some(result)),
        };
        let dns_failure = match dns_result {
            Ok(Some(did)) => return Ok(did),
            Ok(None) => None,
            Err(conflict @ IdentityError::HandleConflict { .. }) => return Err(conflict),
            Err(failure) => {
                tracing::debug!(handle, error = %failure, "DNS lookup failed; trying well-known");
                Some(failure)
            }
        };
        let http_result = match early_http {
            Some(result) => result,
            None => http.await,
        };
        match (http_result, dns_failure) {
            (Ok(Some(did)), _) => Ok(did),
            (Ok(None), None) => Err(IdentityError::HandleNotFound {
                handle: handle.to_owned(),
            }),
            // No definitive answer: report the DNS failure (not cached).
            (Ok(None), Some(failure)) => Err(failure),
            (Err(failure), _) => Err(failure),
        }
    }

    /// The DID in `_atproto.<handle>` TXT records: `None` when there is no such record.
    async fn handle_from_dns(&self, handle: &str) -> Result<Option<String>, IdentityError> {
        let name = format!("_atproto.{handle}");
        let deadline = self.http.policy().timeout;
        let lookup = tokio::time::timeout(deadline, self.http.dns().lookup_txt(&name)).await;
        let records = match lookup {
            Ok(Ok(records)) => records,
            Ok(Err(DnsError::NotFound { .. })) => return Ok(None),
            Ok(Err(source)) => return Err(IdentityError::Dns { source }),
            Err(_) => {
                return Err(IdentityError::Dns {
                    source: DnsError::Failed {
                        name,
                        message: format!("no answer within {deadline:?}"),
                    },
                });
            }
        };
        let mut dids: Vec<String> = records
            .iter()
            .filter_map(|record| record.trim().strip_prefix("did="))
            .map(str::trim)
            .filter(|did| check_did(did).is_ok())
            .map(str::to_owned)
            .collect();
        dids.sort();
        dids.dedup();
        match dids.len() {
            0 => Ok(None),
            1 => Ok(dids.pop()),
            _ => Err(IdentityError::HandleConflict {
                handle: handle.to_owned(),
                dids,
            }),
        }
    }

    /// The DID served at `/.well-known/atproto-did`: `None` on 404/410 or a body that is
    /// not a DID.
    async fn handle_from_well_known(&self, handle: &str) -> Result<Option<String>, IdentityError> {
        let scheme = self.scheme_for(handle).await;
        let url = format!("{scheme}://{handle}/.well-known/atproto-did");
        match self.http.get_text(&url, WELL_KNOWN_LIMIT).await {
            Ok(text) => {
                let did = text.trim();
                Ok(check_did(did).is_ok().then(|| did.to_owned()))
            }
            Err(e) if matches!(e.status(), Some(404 | 410)) => Ok(None),
            Err(source) => Err(IdentityError::Fetch {
                subject: handle.to_owned(),
                source,
            }),
        }
    }
}
