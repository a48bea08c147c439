//! Verified firehose events: the client, the frame decoder, identity resolution and the
//! verifier joined into one async stream. The relay and the AppView both consume the
//! network through [`SyncStream`].
//!
//! One task reads the [`FirehoseClient`]'s frames in order and, per frame:
//! - `#commit`: resolves the repo's signing key (cached; resolved on first sight through the
//!   [`Resolver`]), verifies the commit ([`Verifier`]: CIDs, signature, rev, chain, sync 1.1
//!   inversion), and on a signature failure refreshes the key once and tries again. A
//!   verified commit becomes a [`SyncEvent::Commit`] whose record bytes are slices of the
//!   frame (no copy); a rejected one becomes [`SyncEvent::Rejected`] with a stable reason
//!   label, and the stream goes on.
//! - `#sync`: verified against the key; an unchanged root is a no-op, a changed one marks the
//!   account desynchronized.
//! - `#identity`: the cached DID document and key are dropped, so the next commit resolves
//!   them again (a key rotation is picked up here, or by the refresh-once path).
//! - `#account`: passed on. An inactive account's cached key is dropped; its verifier state
//!   (the rev floor) is kept, because `#account` is not signed.
//!
//! **Resync.** When an account becomes desynchronized (a gap in its chain, or a `#sync` with
//! another root), and resync is enabled, the task fetches the account's repository from its
//! PDS (`com.atproto.sync.getRepo`, through the SSRF-guarded client), verifies it whole
//! ([`Verifier::verify_repo`]) and emits [`SyncEvent::Resynced`] with every record, so the
//! consumer can replace what it holds for that account. The resync runs inline: frames
//! behind it wait, which keeps every account's events in order.
//!
//! **Trusted sources.** [`VerifyMode::Trusted`] skips signatures and inversions; choosing it
//! is logged at start, as the sync layer issue asks.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::client::{ClientConfig, ClientError, ClientEvent, FirehoseClient};
use super::frame::{self, Action, Frame};
use super::identity::{IdentityError, KeyRefresh, Resolver};
use super::keys::PublicKey;
use super::ssrf::GuardedClient;
use super::verify::{AccountState, SyncOutcome, SyncStatus, Verifier, VerifyError, VerifyMode};

/// The largest repository export a resync will fetch.
pub const MAX_REPO_BYTES: usize = 512 * 1024 * 1024;

/// The least time between two resync attempts of one account.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(60);

/// How many accounts' resync times are remembered before old entries are pruned.
const MAX_TRACKED_RESYNCS: usize = 10_000;

/// How a [`SyncStream`] connects and verifies.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The upstream and its reconnect behaviour.
    pub client: ClientConfig,
    /// Full verification (the default a relay should run) or trusted.
    pub mode: VerifyMode,
    /// Resolves DIDs to keys and PDS endpoints.
    pub resolver: Resolver,
    /// Fetches `getRepo` for resyncs (a client whose time and size limits suit whole
    /// repositories). `None` disables resync: desynchronized accounts are reported only.
    pub repo_http: Option<GuardedClient>,
    /// Per-account verification state to start from (what the consumer saved from
    /// [`CommitEvent::state`] before a restart), so chains keep being checked across
    /// restarts. Accounts not listed start fresh at their next commit.
    pub accounts: HashMap<String, AccountState>,
    /// Capacity of the event channel to the consumer. Small: events carry frame bytes, and a
    /// slow consumer should slow the upstream down (the client stops reading) rather than
    /// let memory grow.
    pub channel_capacity: usize,
}

impl SyncConfig {
    /// Full verification with resync through `repo_http`, and a 64-event channel.
    pub fn new(client: ClientConfig, resolver: Resolver, repo_http: Option<GuardedClient>) -> Self {
        SyncConfig {
            client,
            mode: VerifyMode::Full,
            resolver,
            repo_http,
            accounts: HashMap::new(),
            channel_capacity: 64,
        }
    }
}

/// One op of a verified commit, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpEvent {
    /// Create, update or delete.
    pub action: Action,
    /// The record's collection (NSID).
    pub collection: String,
    /// The record key.
    pub rkey: String,
    /// The new record's CID (create, update).
    pub cid: Option<String>,
    /// The previous record's CID (update, delete).
    pub prev: Option<String>,
    /// The new record's DAG-CBOR bytes, a slice of the frame (create, update).
    pub record: Option<Bytes>,
}

/// A verified `#commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEvent {
    /// The upstream's sequence number.
    pub seq: i64,
    /// The repository's DID.
    pub did: String,
    /// The commit's rev.
    pub rev: String,
    /// The previous rev, if the upstream sent one.
    pub since: Option<String>,
    /// When the upstream emitted the commit (RFC 3339).
    pub time: String,
    /// The commit's CID.
    pub commit: String,
    /// The ops, in frame order.
    pub ops: Vec<OpEvent>,
    /// The account's status after this commit. `Desynchronized`: the commit is verified,
    /// but earlier changes are missing until a [`SyncEvent::Resynced`] arrives.
    pub status: SyncStatus,
    /// Whether the signature and inversion were checked.
    pub fully_verified: bool,
    /// The verifier's state for the account after this commit: persist it with the rows
    /// the commit produced and hand it back in [`SyncConfig::accounts`] after a restart.
    pub state: Option<AccountState>,
    /// The frame exactly as received, for re-serving (signatures stay verifiable).
    pub frame: Bytes,
}

/// One record of a resynced repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRecord {
    /// `collection/rkey`.
    pub path: String,
    /// The record's CID.
    pub cid: String,
    /// The record's DAG-CBOR bytes (a slice of the repository export).
    pub record: Bytes,
}

/// What the stream delivers.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    /// A verified commit.
    Commit(CommitEvent),
    /// A verified `#sync`.
    Sync {
        /// Sequence number.
        seq: i64,
        /// The account.
        did: String,
        /// The rev it announces.
        rev: String,
        /// What it did to the account's state.
        outcome: SyncOutcome,
        /// The frame as received.
        frame: Bytes,
    },
    /// `#identity`: the account's DID document or handle may have changed; cached identity
    /// was dropped.
    Identity {
        /// Sequence number.
        seq: i64,
        /// The account.
        did: String,
        /// The handle the upstream announced, if any (verify before trusting it).
        handle: Option<String>,
        /// The frame as received.
        frame: Bytes,
    },
    /// `#account`: the account's hosting status changed at the upstream.
    Account {
        /// Sequence number.
        seq: i64,
        /// The account.
        did: String,
        /// Whether the account is active.
        active: bool,
        /// `takendown`, `suspended`, `deleted`, `deactivated`, ... when inactive.
        status: Option<String>,
        /// The frame as received.
        frame: Bytes,
    },
    /// An account's whole repository, fetched and verified after it desynchronized.
    Resynced {
        /// The account.
        did: String,
        /// The rev of the repository now held.
        rev: String,
        /// Every record, in key order.
        records: Vec<RepoRecord>,
    },
    /// A resync that failed; the account stays desynchronized.
    ResyncFailed {
        /// The account.
        did: String,
        /// Why, in words.
        error: String,
    },
    /// A frame that failed decoding or verification. It is not applied; the stream goes on.
    Rejected {
        /// The frame's sequence number, if it could be read.
        seq: Option<i64>,
        /// The account, if it could be read.
        did: Option<String>,
        /// A stable label for metrics (`bad_signature`, `cid_mismatch`, `gap`, ...).
        reason: &'static str,
        /// The full error.
        error: String,
    },
    /// A message type this decoder does not know (reported, not fatal).
    Unknown {
        /// The header's `t`.
        t: String,
    },
    /// Connection-level news from the client (connected, disconnected, cursor trouble, lag,
    /// undecodable messages).
    Upstream(ClientEvent),
}

impl SyncEvent {
    /// The upstream sequence number the event carries, if any: what a consumer stores as
    /// its cursor once the event is applied.
    pub fn seq(&self) -> Option<i64> {
        match self {
            SyncEvent::Commit(c) => Some(c.seq),
            SyncEvent::Sync { seq, .. }
            | SyncEvent::Identity { seq, .. }
            | SyncEvent::Account { seq, .. } => Some(*seq),
            SyncEvent::Rejected { seq, .. } => *seq,
            _ => None,
        }
    }
}

/// Counters a [`SyncStream`] keeps, for metrics.
#[derive(Debug, Default)]
pub struct SyncStats {
    frames: AtomicU64,
    commits: AtomicU64,
    resyncs: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl SyncStats {
    /// Frames received.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Commits verified and delivered.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Successful resyncs.
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Rejections by reason label.
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn reject(&self, reason: &'static str) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(reason).or_default() += 1;
        }
    }
}

/// A running stream of verified events.
#[derive(Debug)]
pub struct SyncStream {
    events: mpsc::Receiver<SyncEvent>,
    stats: Arc<SyncStats>,
}

impl SyncStream {
    /// Connects (through a [`FirehoseClient`]) and starts verifying. The stream ends after
    /// `shutdown` completes (or when the receiver is dropped).
    pub fn start(
        config: SyncConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<SyncStream, ClientError> {
        if config.mode == VerifyMode::Trusted {
            warn!(
                upstream = %config.client.url,
                "sync verification is OFF for this upstream (trusted mode): signatures and MST inversions are not checked"
            );
        }
        let client = FirehoseClient::new(config.client.clone())?.run(shutdown);
        let (tx, events) = mpsc::channel(config.channel_capacity.max(1));
        let stats = Arc::new(SyncStats::default());
        let trusted_key = if config.mode == VerifyMode::Trusted {
            PublicKey::from_point(super::keys::Curve::K256, &PLACEHOLDER_POINT).ok()
        } else {
            None
        };
        let mut verifier = Verifier::new(config.mode);
        for (did, state) in config.accounts {
            verifier.set_state(did, state);
        }
        let worker = Worker {
            verifier,
            keys: HashMap::new(),
            resolver: config.resolver,
            repo_http: config.repo_http,
            stats: stats.clone(),
            tx,
            resync_attempts: HashMap::new(),
            trusted_key,
        };
        tokio::spawn(worker.run(client));
        Ok(SyncStream { events, stats })
    }

    /// The next event; `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<SyncEvent> {
        self.events.recv().await
    }

    /// The stream's counters.
    pub fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }
}

/// The task behind a [`SyncStream`].
struct Worker {
    verifier: Verifier,
    /// Parsed signing keys by DID (parsing a key costs more than a hash lookup).
    keys: HashMap<String, PublicKey>,
    resolver: Resolver,
    repo_http: Option<GuardedClient>,
    stats: Arc<SyncStats>,
    tx: mpsc::Sender<SyncEvent>,
    /// When each account's last resync started (see [`RESYNC_INTERVAL`]).
    resync_attempts: HashMap<String, Instant>,
    /// In trusted mode, the key handed to the verifier (which does not check signatures
    /// then): a trusted upstream needs no DID resolution at all.
    trusted_key: Option<PublicKey>,
}

/// secp256k1's generator point, compressed: a valid key that signs nothing we will see.
const PLACEHOLDER_POINT: [u8; 33] = [
    0x02, 0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
    0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8, 0x17,
    0x98,
];

/// The consumer went away.
struct Closed;

impl Worker {
    async fn run(mut self, mut client: super::client::ClientStream) {
        while let Some(event) = client.recv().await {
            let result = match event {
                ClientEvent::Frame { bytes, .. } => self.frame(bytes).await,
                other => self.send(SyncEvent::Upstream(other)).await,
            };
            if result.is_err() {
                debug!("sync stream consumer dropped; stopping");
                return;
            }
        }
    }

    async fn send(&self, event: SyncEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }

    async fn reject(
        &self,
        seq: Option<i64>,
        did: Option<&str>,
        reason: &'static str,
        error: String,
    ) -> Result<(), Closed> {
        self.stats.reject(reason);
        debug!(?seq, ?did, reason, %error, "rejected frame");
        self.send(SyncEvent::Rejected {
            seq,
            did: did.map(str::to_owned),
            reason,
            error,
        })
        .await
    }

    async fn frame(&mut self, bytes: Bytes) -> Result<(), Closed> {
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        let decoded = match frame::decode(&bytes) {
            Ok(frame) => frame,
            Err(e) => {
                // Well-formed frames that break a message rule still carry their seq.
                let seq = super::client::salvage_seq(&bytes);
                return self.reject(seq, None, "bad_frame", e.to_string()).await;
            }
        };
        match decoded {
            Frame::Commit(commit) => {
                let seq = commit.seq;
                let did = commit.repo;
                let Some(key) = self.key(seq, did).await? else {
                    return Ok(());
                };
                let mut outcome = self.verifier.verify_commit(&commit, &key);
                if let Err(e) = &outcome
                    && e.is_key_failure()
                {
                    // The key may have rotated: refresh it once, then judge.
                    if let Some(fresh) = self.refresh_key(did, &key).await {
                        outcome = self.verifier.verify_commit(&commit, &fresh);
                    }
                }
                match outcome {
                    Ok(verified) => {
                        let status = verified.status;
                        let event = CommitEvent {
                            seq,
                            did: did.to_owned(),
                            rev: verified.rev.to_owned(),
                            since: commit.since.map(str::to_owned),
                            time: commit.time.to_owned(),
                            commit: verified.commit.to_string(),
                            ops: verified
                                .ops
                                .iter()
                                .map(|op| {
                                    let (collection, rkey) =
                                        op.path.split_once('/').unwrap_or((op.path, ""));
                                    OpEvent {
                                        action: op.action,
                                        collection: collection.to_owned(),
                                        rkey: rkey.to_owned(),
                                        cid: op.cid.map(|c| c.to_string()),
                                        prev: op.prev.map(|c| c.to_string()),
                                        record: op.record.map(|r| bytes.slice_ref(r)),
                                    }
                                })
                                .collect(),
                            status,
                            fully_verified: verified.fully_verified,
                            state: self.verifier.state(did).copied(),
                            frame: bytes.clone(),
                        };
                        self.stats.commits.fetch_add(1, Ordering::Relaxed);
                        let did = did.to_owned();
                        self.send(SyncEvent::Commit(event)).await?;
                        if status == SyncStatus::Desynchronized {
                            self.resync(&did).await?;
                        }
                        Ok(())
                    }
                    Err(VerifyError::Gap { .. }) => {
                        // The verifier marked the account desynchronized; fill the gap.
                        let did = did.to_owned();
                        self.reject(Some(seq), Some(&did), "gap", "commit does not chain".into())
                            .await?;
                        self.resync(&did).await
                    }
                    Err(e) => {
                        self.reject(Some(seq), Some(did), e.reason(), e.to_string())
                            .await
                    }
                }
            }
            Frame::Sync(sync) => {
                let Some(key) = self.key(sync.seq, sync.did).await? else {
                    return Ok(());
                };
                match self.verifier.verify_sync(&sync, &key) {
                    Ok(outcome) => {
                        let did = sync.did.to_owned();
                        self.send(SyncEvent::Sync {
                            seq: sync.seq,
                            did: did.clone(),
                            rev: sync.rev.to_owned(),
                            outcome,
                            frame: bytes.clone(),
                        })
                        .await?;
                        if outcome == SyncOutcome::Desynchronized {
                            self.resync(&did).await?;
                        }
                        Ok(())
                    }
                    Err(e) => {
                        self.reject(Some(sync.seq), Some(sync.did), e.reason(), e.to_string())
                            .await
                    }
                }
            }
            Frame::Identity(identity) => {
                self.resolver.invalidate(identity.did);
                if let Some(handle) = identity.handle {
                    // A cached "not found" for the new handle must not outlive the news.
                    self.resolver.invalidate_handle(handle);
                }
                self.keys.remove(identity.did);
                self.send(SyncEvent::Identity {
                    seq: identity.seq,
                    did: identity.did.to_owned(),
                    handle: identity.handle.map(str::to_owned),
                    frame: bytes.clone(),
                })
                .await
            }
            Frame::Account(account) => {
                // The verifier keeps a deleted account's state: `#account` is not signed, and
                // forgetting the rev floor would let a replayed older commit through.
                if !account.active {
                    self.keys.remove(account.did);
                }
                self.send(SyncEvent::Account {
                    seq: account.seq,
                    did: account.did.to_owned(),
                    active: account.active,
                    status: account.status.map(str::to_owned),
                    frame: bytes.clone(),
                })
                .await
            }
            // The client turns #info and error frames into their own events before they
            // get here; a decoder that still sees them passes them through as unknown.
            Frame::Info(info) => {
                self.send(SyncEvent::Unknown {
                    t: format!("#info {}", info.name),
                })
                .await
            }
            Frame::Error(error) => {
                self.send(SyncEvent::Unknown {
                    t: format!("error {}", error.error),
                })
                .await
            }
            Frame::Unknown { t } => {
                warn!(t, "unknown firehose message type");
                self.send(SyncEvent::Unknown { t: t.to_owned() }).await
            }
        }
    }

    /// The signing key of `did`, resolving it on first sight. `Ok(None)`: the frame was
    /// rejected (and reported) because no key could be had.
    async fn key(&mut self, seq: i64, did: &str) -> Result<Option<PublicKey>, Closed> {
        if let Some(key) = &self.trusted_key {
            return Ok(Some(key.clone()));
        }
        if let Some(key) = self.keys.get(did) {
            return Ok(Some(key.clone()));
        }
        match self.resolve_key(did).await {
            Ok(key) => {
                self.keys.insert(did.to_owned(), key.clone());
                Ok(Some(key))
            }
            Err((reason, error)) => {
                self.reject(Some(seq), Some(did), reason, error).await?;
                Ok(None)
            }
        }
    }

    async fn resolve_key(&self, did: &str) -> Result<PublicKey, (&'static str, String)> {
        let doc = self
            .resolver
            .resolve_did(did)
            .await
            .map_err(|e: IdentityError| (e.reason(), e.to_string()))?;
        let key_ref = doc
            .signing_key()
            .ok_or(("no_signing_key", format!("{did} has no #atproto key")))?;
        PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase)
            .map_err(|e| ("bad_signing_key", e.to_string()))
    }

    /// After a signature failure: re-resolves the DID once and returns a different key, if
    /// the document now has one.
    async fn refresh_key(&mut self, did: &str, old: &PublicKey) -> Option<PublicKey> {
        let doc = match self.resolver.refresh_signing_key(did).await {
            Ok(KeyRefresh::Changed(doc)) => doc,
            Ok(KeyRefresh::Unchanged(_)) | Ok(KeyRefresh::RateLimited) => return None,
            Err(e) => {
                warn!(did, error = %e, "key refresh failed");
                return None;
            }
        };
        let key_ref = doc.signing_key()?;
        let fresh =
            PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase).ok()?;
        if &fresh == old {
            return None;
        }
        info!(did, "signing key rotated");
        self.keys.insert(did.to_owned(), fresh.clone());
        Some(fresh)
    }

    /// Fetches and verifies `did`'s whole repository, then reports it.
    async fn resync(&mut self, did: &str) -> Result<(), Closed> {
        let Some(http) = self.repo_http.clone() else {
            return Ok(());
        };
        // A resync runs inline (it keeps the account's events in order), so an account whose
        // PDS is slow or hostile could stall the stream on each of its commits: attempts per
        // account are spaced by RESYNC_INTERVAL.
        let now = Instant::now();
        if let Some(last) = self.resync_attempts.get(did)
            && now.duration_since(*last) < RESYNC_INTERVAL
        {
            debug!(
                did,
                "resync attempted recently; account stays desynchronized"
            );
            return Ok(());
        }
        if self.resync_attempts.len() >= MAX_TRACKED_RESYNCS {
            self.resync_attempts
                .retain(|_, last| now.duration_since(*last) < RESYNC_INTERVAL);
        }
        self.resync_attempts.insert(did.to_owned(), now);
        self.verifier.set_status(did, SyncStatus::InProgress);
        match self.fetch_repo(&http, did).await {
            Ok(event) => {
                self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
                self.send(event).await
            }
            Err(error) => {
                self.verifier.set_status(did, SyncStatus::Desynchronized);
                warn!(did, %error, "resync failed");
                self.send(SyncEvent::ResyncFailed {
                    did: did.to_owned(),
                    error,
                })
                .await
            }
        }
    }

    async fn fetch_repo(&mut self, http: &GuardedClient, did: &str) -> Result<SyncEvent, String> {
        let doc = self
            .resolver
            .resolve_did(did)
            .await
            .map_err(|e| e.to_string())?;
        let pds = doc
            .pds_endpoint()
            .ok_or_else(|| format!("{did} has no #atproto_pds service"))?
            .trim_end_matches('/')
            .to_owned();
        // The key may have been dropped by an `#identity` since the last commit.
        let key = match self.keys.get(did) {
            Some(key) => key.clone(),
            None => {
                let key = self.resolve_key(did).await.map_err(|(_, error)| error)?;
                self.keys.insert(did.to_owned(), key.clone());
                key
            }
        };
        let (rev, records) = fetch_repo(http, &pds, did, &mut self.verifier, &key).await?;
        Ok(SyncEvent::Resynced {
            did: did.to_owned(),
            rev,
            records,
        })
    }
}

/// Fetches `did`'s whole repository from its PDS at `pds` (`com.atproto.sync.getRepo`,
/// through the SSRF-guarded `http`, at most [`MAX_REPO_BYTES`]), verifies it with
/// `verifier` and `key` ([`Verifier::verify_repo`]: every block, the signed commit, the
/// complete MST) and returns its rev and every record, in key order. A resync and the
/// AppView's backfill both come through here.
///
/// # Errors
/// The fetch or the verification failed (in words).
pub async fn fetch_repo(
    http: &GuardedClient,
    pds: &str,
    did: &str,
    verifier: &mut Verifier,
    key: &PublicKey,
) -> Result<(String, Vec<RepoRecord>), String> {
    let url = format!("{pds}/xrpc/com.atproto.sync.getRepo?did={did}");
    let car = Bytes::from(
        http.get_bytes(&url, MAX_REPO_BYTES)
            .await
            .map_err(|e| e.to_string())?,
    );
    let snapshot = verifier
        .verify_repo(did, &car, key)
        .map_err(|e| e.to_string())?;
    let parsed = super::car::Car::parse_unverified(&car).map_err(|e| e.to_string())?;
    let mut records = Vec::with_capacity(snapshot.records.len());
    for (path, cid) in &snapshot.records {
        let block = parsed
            .get(cid)
            .ok_or_else(|| format!("record {path} missing from the repository"))?;
        records.push(RepoRecord {
            path: path.clone(),
            cid: cid.to_string(),
            record: car.slice_ref(block),
        });
    }
    Ok((snapshot.rev.to_owned(), records))
}
