//! Per-account commit verification (sync 1.1, protocol.md §4).
//!
//! [`Verifier`] keeps each account's last verified state ([`AccountState`]: rev, MST root,
//! commit CID, [`SyncStatus`]) and checks every `#commit` against it:
//!
//! 1. limits: at most 200 ops, `blocks` at most 2,000,000 bytes, no `tooBig`, no `rebase`;
//! 2. the rev is a TID, newer than the stored rev ([`VerifyError::StaleRev`]) and not more
//!    than five minutes in the future ([`VerifyError::FutureRev`]);
//! 3. the CAR slice parses with every block's CID checked, and `roots[0]` is the commit;
//! 4. the commit block is `{did, version: 3, data, rev, prev, sig}` with `did` and `rev`
//!    matching the frame;
//! 5. the signature verifies over the commit's DAG-CBOR without `sig` (derived from the
//!    signed block by byte surgery, not re-encoding);
//! 6. the chain: `since` must be the stored rev and `prevData` the stored root, else the
//!    account is marked desynchronized and [`VerifyError::Gap`] returned;
//! 7. inversion: undoing the ops on the partial MST of the new root must reach `prevData`,
//!    and created or updated records must be in the CAR.
//!
//! Nothing is changed on failure, except that a gap marks the account desynchronized (and
//! moves its state to the new, authentic commit so later commits chain from it).
//!
//! The verifier is synchronous and resolves no identities: the caller passes the account's
//! signing key, or a [`KeySource`]. When a signature fails ([`VerifyError::is_key_failure`]),
//! the caller should refresh the DID document once and retry with the new key;
//! [`Verifier::verify_commit_with`] does that with [`KeySource::refresh`].
//!
//! [`VerifyMode::Trusted`] skips the signature and the inversion (everything else is still
//! parsed and checked). It exists for upstreams the operator trusts and must be chosen
//! explicitly; callers should log that it is on.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::car::{Car, CarError};
use atelier_lexicons::syntax::{self, Format};

use super::cbor::{self, CborError, CidRef, MapKeys, Reader};
use super::frame::{Action, Commit, Sync};
use super::keys::{KeyError, PublicKey};
use super::mst::{self, Change, DagCid, MstError};

/// Most ops in one `#commit`.
pub const MAX_OPS: usize = 200;
/// Largest `#commit` `blocks` CAR slice, in bytes.
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2_000_000;
/// Largest `#sync` `blocks` CAR slice, in bytes.
pub const MAX_SYNC_BLOCKS_BYTES: usize = 10_000;
/// How far in the future a rev's timestamp may be (the reference relay's slack).
pub const FUTURE_REV_SLACK_MICROS: u64 = 5 * 60 * 1_000_000;

/// Whether signatures and inversions are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// Every check (the default a relay should run).
    Full,
    /// Skip the signature and the MST inversion; still parse and check everything else.
    /// Only for upstreams the operator trusts; log that it is on.
    Trusted,
}

/// Where an account stands in the sync 1.1 state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncStatus {
    /// Commits chain from the known state.
    Synchronized,
    /// A gap or a `#sync` broke the chain: the account needs a resync.
    Desynchronized,
    /// A resync is running; commits keep verifying and should be buffered.
    InProgress,
}

impl SyncStatus {
    /// The protocol's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synchronized => "synchronized",
            SyncStatus::Desynchronized => "desynchronized",
            SyncStatus::InProgress => "in-progress",
        }
    }
}

/// What the verifier knows about one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountState {
    /// The last verified rev, as a TID's integer value (TIDs sort like their integers).
    pub rev: u64,
    /// The MST root (`data`) of that commit.
    pub data: DagCid,
    /// That commit's CID.
    pub commit: DagCid,
    /// Whether the account's record view is complete.
    pub status: SyncStatus,
}

/// Supplies accounts' current signing keys (from resolved DID documents).
pub trait KeySource {
    /// The `#atproto` signing key of `did`, if known.
    fn signing_key(&self, did: &str) -> Option<PublicKey>;

    /// Re-resolves `did` after a signature failed and returns the key now current, if any.
    /// The default knows no fresher key.
    fn refresh(&mut self, did: &str) -> Option<PublicKey> {
        let _ = did;
        None
    }
}

impl KeySource for HashMap<String, PublicKey> {
    fn signing_key(&self, did: &str) -> Option<PublicKey> {
        self.get(did).cloned()
    }
}

/// A [`KeySource`] over a map, for tests and for callers that resolve keys themselves.
///
/// A key staged with [`MapKeySource::stage_refresh`] becomes current on the next
/// [`KeySource::refresh`] of that DID, the way a re-resolved DID document would after a
/// key rotation.
#[derive(Debug, Clone, Default)]
pub struct MapKeySource {
    keys: HashMap<String, PublicKey>,
    staged: HashMap<String, PublicKey>,
    refreshes: usize,
}

impl MapKeySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the current key of `did`.
    pub fn insert(&mut self, did: impl Into<String>, key: PublicKey) {
        self.keys.insert(did.into(), key);
    }

    /// Stages the key a refresh of `did` will find.
    pub fn stage_refresh(&mut self, did: impl Into<String>, key: PublicKey) {
        self.staged.insert(did.into(), key);
    }

    /// How many refreshes were asked for.
    pub fn refreshes(&self) -> usize {
        self.refreshes
    }
}

impl KeySource for MapKeySource {
    fn signing_key(&self, did: &str) -> Option<PublicKey> {
        self.keys.get(did).cloned()
    }

    fn refresh(&mut self, did: &str) -> Option<PublicKey> {
        self.refreshes += 1;
        if let Some(key) = self.staged.remove(did) {
            self.keys.insert(did.to_owned(), key);
        }
        self.keys.get(did).cloned()
    }
}

/// Why a commit or `#sync` was rejected. [`VerifyError::reason`] gives a stable label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// More ops than [`MAX_OPS`].
    #[error("{0} ops exceed the limit of {MAX_OPS}")]
    TooManyOps(usize),
    /// A `blocks` CAR slice over its limit.
    #[error("blocks of {len} bytes exceed the {max}-byte limit")]
    BlocksTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The deprecated `tooBig` flag is set.
    #[error("commit has tooBig set")]
    TooBig,
    /// The deprecated `rebase` flag is set.
    #[error("commit has rebase set")]
    Rebase,
    /// The CAR slice does not parse, or a block does not match its CID.
    #[error("blocks: {0}")]
    Car(#[from] CarError),
    /// The CAR's `roots[0]` is not the frame's `commit`.
    #[error("CAR root is not the commit")]
    CommitNotRoot,
    /// The commit block is not in the CAR.
    #[error("commit block missing from blocks")]
    MissingCommitBlock,
    /// The commit block is not valid DAG-CBOR.
    #[error("commit block: {0}")]
    CommitCbor(CborError),
    /// The commit block lacks a field or has one of the wrong kind.
    #[error("commit block: {0}")]
    MalformedCommit(&'static str),
    /// A commit version other than 3.
    #[error("unsupported commit version {0}")]
    UnsupportedVersion(i64),
    /// The commit block's `did` is not the frame's repository.
    #[error("commit did {commit:?} does not match the frame's {frame:?}")]
    DidMismatch {
        /// The DID in the signed commit.
        commit: String,
        /// The DID the frame names.
        frame: String,
    },
    /// The commit block's `rev` is not the frame's.
    #[error("commit rev {commit:?} does not match the frame's {frame:?}")]
    RevMismatch {
        /// The rev in the signed commit.
        commit: String,
        /// The rev the frame names.
        frame: String,
    },
    /// A rev that is not a TID.
    #[error("rev {0:?} is not a TID")]
    BadRev(String),
    /// No signing key is known for the account.
    #[error("no signing key for {0}")]
    NoKey(String),
    /// The signature is malformed, high-S or does not verify.
    #[error("signature: {0}")]
    Signature(KeyError),
    /// The rev is not newer than the account's stored rev: a replay or reorder; drop it.
    #[error("rev {rev} is not newer than the stored rev {stored}")]
    StaleRev {
        /// The commit's rev.
        rev: String,
        /// The stored rev.
        stored: String,
    },
    /// The rev's timestamp is more than five minutes ahead of the clock.
    #[error("rev {0} is in the future")]
    FutureRev(String),
    /// `since` or `prevData` do not continue the stored state: events were missed. The
    /// account is now desynchronized (its state moved to this commit) and needs a resync.
    #[error(
        "gap: since {since:?} / prevData {prev_data:?} do not continue rev {stored_rev} / data {stored_data}"
    )]
    Gap {
        /// The commit's `since`.
        since: Option<String>,
        /// The commit's `prevData`.
        prev_data: Option<String>,
        /// The stored rev.
        stored_rev: String,
        /// The stored MST root.
        stored_data: DagCid,
    },
    /// A commit without `prevData` after the repository's first (nothing to invert to).
    #[error("commit has since but no prevData")]
    MissingPrevData,
    /// An op whose action and CIDs do not agree (create with `prev`, update without, ...).
    #[error("op {path}: {what}")]
    InvalidOp {
        /// The op's path.
        path: String,
        /// What is wrong.
        what: &'static str,
    },
    /// A created or updated record's block is not in the CAR.
    #[error("record {0} missing from blocks")]
    MissingRecord(String),
    /// The MST could not be loaded or the ops could not be undone on it.
    #[error("inversion: {0}")]
    Inversion(#[from] MstError),
    /// Undoing the ops gave another root than `prevData`.
    #[error("inverted root {computed} is not prevData {expected}")]
    PrevDataMismatch {
        /// `prevData` (or the empty tree for a first commit).
        expected: String,
        /// The root inversion reached.
        computed: DagCid,
    },
}

impl VerifyError {
    /// A stable, low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::TooManyOps(_) => "too_many_ops",
            VerifyError::BlocksTooLarge { .. } => "blocks_too_large",
            VerifyError::TooBig => "too_big",
            VerifyError::Rebase => "rebase",
            VerifyError::Car(CarError::CidMismatch { .. }) => "cid_mismatch",
            VerifyError::Car(_) => "bad_car",
            VerifyError::CommitNotRoot => "commit_not_root",
            VerifyError::MissingCommitBlock => "missing_commit_block",
            VerifyError::CommitCbor(_) | VerifyError::MalformedCommit(_) => "bad_commit",
            VerifyError::UnsupportedVersion(_) => "bad_commit_version",
            VerifyError::DidMismatch { .. } => "did_mismatch",
            VerifyError::RevMismatch { .. } => "rev_mismatch",
            VerifyError::BadRev(_) => "bad_rev",
            VerifyError::NoKey(_) => "no_signing_key",
            VerifyError::Signature(KeyError::HighS) => "high_s",
            VerifyError::Signature(_) => "bad_signature",
            VerifyError::StaleRev { .. } => "stale_rev",
            VerifyError::FutureRev(_) => "future_rev",
            VerifyError::Gap { .. } => "gap",
            VerifyError::MissingPrevData => "missing_prev_data",
            VerifyError::InvalidOp { .. } => "invalid_op",
            VerifyError::MissingRecord(_) => "missing_record",
            VerifyError::Inversion(MstError::MissingBlock(_)) => "missing_block",
            VerifyError::Inversion(MstError::DuplicatePath(_)) => "duplicate_path",
            VerifyError::Inversion(
                MstError::KeyNotFound(_) | MstError::KeyPresent(_) | MstError::ValueMismatch(_),
            ) => "inversion_failed",
            VerifyError::Inversion(_) => "bad_mst",
            VerifyError::PrevDataMismatch { .. } => "inversion_failed",
        }
    }

    /// Whether a fresher signing key might make the commit verify: refresh the DID
    /// document once and retry.
    pub fn is_key_failure(&self) -> bool {
        matches!(
            self,
            VerifyError::NoKey(_) | VerifyError::Signature(KeyError::BadSignature)
        )
    }
}

/// One op of a verified commit, with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedOp<'a> {
    /// Create, update or delete.
    pub action: Action,
    /// `collection/rkey`.
    pub path: &'a str,
    /// The new record's CID (create and update).
    pub cid: Option<CidRef<'a>>,
    /// The replaced or deleted record's CID (update and delete).
    pub prev: Option<CidRef<'a>>,
    /// The new record's DAG-CBOR bytes, borrowed from the frame (create and update).
    pub record: Option<&'a [u8]>,
}

/// A commit that passed verification, ready for indexing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCommit<'a> {
    /// Stream sequence number.
    pub seq: i64,
    /// The repository's DID.
    pub did: &'a str,
    /// The commit's rev.
    pub rev: &'a str,
    /// The commit's CID.
    pub commit: CidRef<'a>,
    /// The new MST root.
    pub data: DagCid,
    /// The ops, in frame order, with their records.
    pub ops: Vec<VerifiedOp<'a>>,
    /// The account's status after this commit (buffer the commit unless synchronized).
    pub status: SyncStatus,
    /// Whether the signature and inversion were checked ([`VerifyMode::Full`]).
    pub fully_verified: bool,
}

/// What a verified `#sync` did to the account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Same MST root as stored: nothing to do (the rev and commit were advanced).
    Unchanged,
    /// A first-seen account: its state starts at this commit.
    Started,
    /// Another root than stored: the account is desynchronized and needs a resync.
    Desynchronized,
}

/// A verified repository export: the state a resync starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSnapshot<'a> {
    /// The commit's rev.
    pub rev: &'a str,
    /// The commit's CID (the CAR root).
    pub commit: CidRef<'a>,
    /// The MST root.
    pub data: DagCid,
    /// Every record as `(collection/rkey, record CID)`, in key order.
    pub records: Vec<(String, CidRef<'a>)>,
}

/// The fields of a decoded commit block.
#[derive(Debug, Clone, Copy)]
struct CommitBlock<'a> {
    did: &'a str,
    rev: &'a str,
    data: CidRef<'a>,
    sig: &'a [u8],
}

/// Per-account commit verification state. See the module docs for the checks.
#[derive(Debug)]
pub struct Verifier {
    mode: VerifyMode,
    accounts: HashMap<String, AccountState>,
}

impl Verifier {
    /// A verifier with no known accounts. There is no default mode: choose one.
    pub fn new(mode: VerifyMode) -> Self {
        Verifier {
            mode,
            accounts: HashMap::new(),
        }
    }

    /// The mode chosen at construction.
    pub fn mode(&self) -> VerifyMode {
        self.mode
    }

    /// The stored state of `did`.
    pub fn state(&self, did: &str) -> Option<&AccountState> {
        self.accounts.get(did)
    }

    /// Sets the state of `did` (restored from storage, or after a resync).
    pub fn set_state(&mut self, did: impl Into<String>, state: AccountState) {
        self.accounts.insert(did.into(), state);
    }

    /// Sets the status of a known account; returns whether the account is known.
    pub fn set_status(&mut self, did: &str, status: SyncStatus) -> bool {
        match self.accounts.get_mut(did) {
            Some(state) => {
                state.status = status;
                true
            }
            None => false,
        }
    }

    /// Forgets `did` (deleted account, or to start over).
    pub fn forget(&mut self, did: &str) -> Option<AccountState> {
        self.accounts.remove(did)
    }

    /// How many accounts have state.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether no account has state.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Verifies a `#commit` with the account's signing key, against the current time.
    pub fn verify_commit<'a>(
        &mut self,
        commit: &Commit<'a>,
        key: &PublicKey,
    ) -> Result<VerifiedCommit<'a>, VerifyError> {
        self.verify_commit_at(commit, key, now_micros())
    }

    /// Verifies a `#commit`, taking keys from `keys` and refreshing the key once if the
    /// signature fails.
    pub fn verify_commit_with<'a, K: KeySource + ?Sized>(
        &mut self,
        commit: &Commit<'a>,
        keys: &mut K,
    ) -> Result<VerifiedCommit<'a>, VerifyError> {
        let first = match keys.signing_key(commit.repo) {
            Some(key) => self.verify_commit(commit, &key).map_err(|e| (e, Some(key))),
            None => Err((VerifyError::NoKey(commit.repo.to_owned()), None)),
        };
        match first {
            Ok(verified) => Ok(verified),
            Err((error, old)) if error.is_key_failure() => match keys.refresh(commit.repo) {
                Some(fresh) if Some(&fresh) != old.as_ref() => self.verify_commit(commit, &fresh),
                _ => Err(error),
            },
            Err((error, _)) => Err(error),
        }
    }

    /// Verifies a `#commit` as [`Verifier::verify_commit`] does, with the clock given in
    /// microseconds since the Unix epoch.
    pub fn verify_commit_at<'a>(
        &mut self,
        commit: &Commit<'a>,
        key: &PublicKey,
        now_micros: u64,
    ) -> Result<VerifiedCommit<'a>, VerifyError> {
        // Cheap checks first: limits and revs need no hashing.
        if commit.ops.len() > MAX_OPS {
            return Err(VerifyError::TooManyOps(commit.ops.len()));
        }
        if commit.blocks.len() > MAX_COMMIT_BLOCKS_BYTES {
            return Err(VerifyError::BlocksTooLarge {
                len: commit.blocks.len(),
                max: MAX_COMMIT_BLOCKS_BYTES,
            });
        }
        if commit.too_big {
            return Err(VerifyError::TooBig);
        }
        if commit.rebase {
            return Err(VerifyError::Rebase);
        }
        let rev = self.check_rev(commit.repo, commit.rev, now_micros)?;

        let car = Car::parse(commit.blocks)?;
        let block = self.check_commit_block(&car, commit.commit, commit.repo, commit.rev, key)?;
        let data = DagCid::from_cid_ref(&block.data).ok_or(VerifyError::MalformedCommit(
            "data is not a DAG-CBOR SHA-256 link",
        ))?;
        let commit_cid = DagCid::from_cid_ref(&commit.commit).ok_or(
            VerifyError::MalformedCommit("commit is not a DAG-CBOR SHA-256 link"),
        )?;

        // Ops: shape, records, and the inversion's view of them.
        let mut ops = Vec::with_capacity(commit.ops.len());
        let mut changes = Vec::with_capacity(commit.ops.len());
        for op in &commit.ops {
            let invalid = |what| VerifyError::InvalidOp {
                path: op.path.to_owned(),
                what,
            };
            let change = match (op.action, op.cid, op.prev) {
                (Action::Create, Some(cid), None) => Change::Create { cid },
                (Action::Update, Some(cid), Some(prev)) => Change::Update { cid, prev },
                (Action::Delete, None, Some(prev)) => Change::Delete { prev },
                (Action::Create, None, _) | (Action::Update, None, _) => {
                    return Err(invalid("create and update need a cid"));
                }
                (Action::Create, Some(_), Some(_)) => return Err(invalid("create has a prev")),
                (Action::Update | Action::Delete, _, None) => {
                    return Err(invalid("update and delete need prev (sync 1.1)"));
                }
                (Action::Delete, Some(_), Some(_)) => return Err(invalid("delete has a cid")),
            };
            // A repository path is `collection/rkey`: an NSID and a record key. Anything
            // else would make the record's AT-URI ambiguous downstream.
            let path_ok = op.path.split_once('/').is_some_and(|(collection, rkey)| {
                syntax::validate(Format::Nsid, collection).is_ok()
                    && syntax::validate(Format::RecordKey, rkey).is_ok()
            });
            if !path_ok {
                return Err(invalid("path is not collection/rkey"));
            }
            let record = match op.cid {
                Some(cid) => {
                    if cid.codec() != cbor::DAG_CBOR {
                        return Err(invalid("record cid is not dag-cbor"));
                    }
                    let bytes = car
                        .get(&cid)
                        .ok_or_else(|| VerifyError::MissingRecord(op.path.to_owned()))?;
                    // Consumers are handed these bytes as DAG-CBOR: hold them to it.
                    cbor::validate_dag_cbor(bytes)
                        .map_err(|_| invalid("record is not strict DAG-CBOR"))?;
                    Some(bytes)
                }
                None => None,
            };
            changes.push(mst::Op {
                path: op.path,
                change,
            });
            ops.push(VerifiedOp {
                action: op.action,
                path: op.path,
                cid: op.cid,
                prev: op.prev,
                record,
            });
        }

        // The tree before this commit: prevData, or the empty tree for a first commit.
        let expected_prev = match (commit.prev_data, commit.since) {
            (Some(prev), _) => Some(prev),
            (None, None) => None,
            (None, Some(_)) => return Err(VerifyError::MissingPrevData),
        };

        // Chain: the commit must continue the stored state.
        let status = match self.accounts.get(commit.repo) {
            Some(state) => {
                let since_ok = commit.since.and_then(parse_tid) == Some(state.rev);
                let data_ok = expected_prev.is_some_and(|p| state.data == p);
                if !(since_ok && data_ok) {
                    let stored = *state;
                    self.store(
                        commit.repo,
                        AccountState {
                            rev,
                            data,
                            commit: commit_cid,
                            status: SyncStatus::Desynchronized,
                        },
                    );
                    return Err(VerifyError::Gap {
                        since: commit.since.map(str::to_owned),
                        prev_data: commit.prev_data.map(|c| c.to_string()),
                        stored_rev: format_tid(stored.rev),
                        stored_data: stored.data,
                    });
                }
                state.status
            }
            None => SyncStatus::Synchronized,
        };

        if self.mode == VerifyMode::Full {
            let computed = mst::invert_ops(&car, data, &changes)?;
            let matches = match expected_prev {
                Some(prev) => computed == prev,
                None => computed == mst::empty_root(),
            };
            if !matches {
                return Err(VerifyError::PrevDataMismatch {
                    expected: expected_prev
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "the empty tree".to_owned()),
                    computed,
                });
            }
        }

        self.store(
            commit.repo,
            AccountState {
                rev,
                data,
                commit: commit_cid,
                status,
            },
        );
        Ok(VerifiedCommit {
            seq: commit.seq,
            did: commit.repo,
            rev: commit.rev,
            commit: commit.commit,
            data,
            ops,
            status,
            fully_verified: self.mode == VerifyMode::Full,
        })
    }

    /// Verifies a `#sync` with the account's signing key, against the current time.
    pub fn verify_sync(
        &mut self,
        sync: &Sync<'_>,
        key: &PublicKey,
    ) -> Result<SyncOutcome, VerifyError> {
        self.verify_sync_at(sync, key, now_micros())
    }

    /// Verifies a `#sync` and resets the account's state to it: an unchanged root is a
    /// no-op, a changed one marks a known account desynchronized.
    pub fn verify_sync_at(
        &mut self,
        sync: &Sync<'_>,
        key: &PublicKey,
        now_micros: u64,
    ) -> Result<SyncOutcome, VerifyError> {
        if sync.blocks.len() > MAX_SYNC_BLOCKS_BYTES {
            return Err(VerifyError::BlocksTooLarge {
                len: sync.blocks.len(),
                max: MAX_SYNC_BLOCKS_BYTES,
            });
        }
        // A `#sync` repeating the commit we already hold (the reference PDS sends one right
        // after every account creation, and on reactivation) is a no-op, not a stale rev.
        let repeats_stored = parse_tid(sync.rev).is_some_and(|rev| {
            self.accounts
                .get(sync.did)
                .is_some_and(|state| state.rev == rev)
        });
        let rev = if repeats_stored {
            parse_tid(sync.rev).ok_or_else(|| VerifyError::BadRev(sync.rev.to_owned()))?
        } else {
            self.check_rev(sync.did, sync.rev, now_micros)?
        };
        let car = Car::parse(sync.blocks)?;
        let commit_cid = car.root().ok_or(VerifyError::CommitNotRoot)?;
        let block = self.check_commit_block(&car, commit_cid, sync.did, sync.rev, key)?;
        let data = DagCid::from_cid_ref(&block.data).ok_or(VerifyError::MalformedCommit(
            "data is not a DAG-CBOR SHA-256 link",
        ))?;
        let commit = DagCid::from_cid_ref(&commit_cid).ok_or(VerifyError::MalformedCommit(
            "commit is not a DAG-CBOR SHA-256 link",
        ))?;
        let (status, outcome) = match self.accounts.get(sync.did) {
            Some(state) if state.data == data => (state.status, SyncOutcome::Unchanged),
            Some(_) => (SyncStatus::Desynchronized, SyncOutcome::Desynchronized),
            None => (SyncStatus::Synchronized, SyncOutcome::Started),
        };
        self.store(
            sync.did,
            AccountState {
                rev,
                data,
                commit,
                status,
            },
        );
        Ok(outcome)
    }

    /// Verifies a whole repository export (`com.atproto.sync.getRepo`) for `did` and, on
    /// success, resets the account's state to it with status [`SyncStatus::Synchronized`]:
    /// the end of a resync. Every block's CID is checked, the CAR root must be a commit of
    /// `did` signed by `key` (in full mode), and the MST is walked completely, so a missing
    /// or altered node fails. A rev older than the stored one is refused (`stale_rev`), so a
    /// stale mirror cannot roll an account back.
    pub fn verify_repo<'a>(
        &mut self,
        did: &str,
        car_bytes: &'a [u8],
        key: &PublicKey,
    ) -> Result<RepoSnapshot<'a>, VerifyError> {
        let car = Car::parse(car_bytes)?;
        let root = car.root().ok_or(VerifyError::MissingCommitBlock)?;
        let bytes = car.get(&root).ok_or(VerifyError::MissingCommitBlock)?;
        let block = self.signed_block(bytes, did, key)?;
        let rev = parse_tid(block.rev).ok_or_else(|| VerifyError::BadRev(block.rev.to_owned()))?;
        if let Some(state) = self.accounts.get(did)
            && rev < state.rev
        {
            return Err(VerifyError::StaleRev {
                rev: block.rev.to_owned(),
                stored: format_tid(state.rev),
            });
        }
        let data = DagCid::from_cid_ref(&block.data).ok_or(VerifyError::MalformedCommit(
            "data is not a DAG-CBOR SHA-256 link",
        ))?;
        let commit = DagCid::from_cid_ref(&root).ok_or(VerifyError::MalformedCommit(
            "commit is not a DAG-CBOR SHA-256 link",
        ))?;
        let records = mst::walk(&car, data)?;
        self.store(
            did,
            AccountState {
                rev,
                data,
                commit,
                status: SyncStatus::Synchronized,
            },
        );
        Ok(RepoSnapshot {
            rev: block.rev,
            commit: root,
            data,
            records,
        })
    }

    /// Stores an account's state, allocating its key only for a first-seen account.
    fn store(&mut self, did: &str, state: AccountState) {
        match self.accounts.get_mut(did) {
            Some(slot) => *slot = state,
            None => {
                self.accounts.insert(did.to_owned(), state);
            }
        }
    }

    /// Parses `rev` and checks it is newer than the stored rev and not in the future.
    fn check_rev(&self, did: &str, rev: &str, now_micros: u64) -> Result<u64, VerifyError> {
        let value = parse_tid(rev).ok_or_else(|| VerifyError::BadRev(rev.to_owned()))?;
        if let Some(state) = self.accounts.get(did)
            && value <= state.rev
        {
            return Err(VerifyError::StaleRev {
                rev: rev.to_owned(),
                stored: format_tid(state.rev),
            });
        }
        if tid_micros(value) > now_micros.saturating_add(FUTURE_REV_SLACK_MICROS) {
            return Err(VerifyError::FutureRev(rev.to_owned()));
        }
        Ok(value)
    }

    /// Finds, decodes and (in full mode) signature-checks the commit block.
    fn check_commit_block<'a>(
        &self,
        car: &Car<'a>,
        commit: CidRef<'_>,
        did: &str,
        rev: &str,
        key: &PublicKey,
    ) -> Result<CommitBlock<'a>, VerifyError> {
        if car.root() != Some(commit) {
            return Err(VerifyError::CommitNotRoot);
        }
        let bytes = car.get(&commit).ok_or(VerifyError::MissingCommitBlock)?;
        let block = self.signed_block(bytes, did, key)?;
        if block.rev != rev {
            return Err(VerifyError::RevMismatch {
                commit: block.rev.to_owned(),
                frame: rev.to_owned(),
            });
        }
        Ok(block)
    }

    /// Decodes a commit block, checks it belongs to `did`, and (in full mode) checks its
    /// signature with `key`.
    fn signed_block<'a>(
        &self,
        bytes: &'a [u8],
        did: &str,
        key: &PublicKey,
    ) -> Result<CommitBlock<'a>, VerifyError> {
        let (block, unsigned) = decode_commit_block(bytes)?;
        if block.did != did {
            return Err(VerifyError::DidMismatch {
                commit: block.did.to_owned(),
                frame: did.to_owned(),
            });
        }
        if self.mode == VerifyMode::Full {
            let message = unsigned.assemble(bytes);
            key.verify_bytes(&message, block.sig)
                .map_err(VerifyError::Signature)?;
        }
        Ok(block)
    }
}

/// Where the signed commit block's `sig` entry is, to derive the unsigned encoding.
#[derive(Debug, Clone, Copy)]
struct Unsigned {
    /// Entries in the signed map.
    entries: u64,
    /// Where the map's first key starts.
    body: usize,
    /// The `sig` entry's span (key and value).
    sig: (usize, usize),
}

impl Unsigned {
    /// The unsigned commit: the same map without `sig`, its header one entry shorter.
    /// Removing an entry keeps the other keys in canonical order, so this is exactly the
    /// DAG-CBOR encoding of the unsigned commit.
    fn assemble(&self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len());
        write_map_head(&mut out, self.entries.saturating_sub(1));
        out.extend_from_slice(block.get(self.body..self.sig.0).unwrap_or_default());
        out.extend_from_slice(block.get(self.sig.1..).unwrap_or_default());
        out
    }
}

fn write_map_head(out: &mut Vec<u8>, n: u64) {
    const MAP: u8 = 5 << 5;
    if n < 24 {
        out.push(MAP | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[MAP | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(MAP | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(MAP | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(MAP | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Decodes a commit block `{did, rev, sig, data, prev, version}` (other fields are
/// skipped, and still covered by the signature) and locates its `sig`.
fn decode_commit_block(bytes: &[u8]) -> Result<(CommitBlock<'_>, Unsigned), VerifyError> {
    let cbor = VerifyError::CommitCbor;
    let mut r = Reader::new(bytes);
    let entries = r.map_len().map_err(cbor)?;
    let body = r.position();
    let mut keys = MapKeys::new();
    let (mut did, mut rev, mut sig, mut data) = (None, None, None, None);
    let (mut version, mut has_prev, mut sig_span) = (None, false, (0, 0));
    for _ in 0..entries {
        let start = r.position();
        match keys.next(&mut r).map_err(cbor)? {
            "did" => did = Some(r.text().map_err(cbor)?),
            "rev" => rev = Some(r.text().map_err(cbor)?),
            "sig" => {
                sig = Some(r.bytes().map_err(cbor)?);
                sig_span = (start, r.position());
            }
            "data" => data = Some(r.link().map_err(cbor)?),
            "prev" => {
                // v3 commits carry `prev: null`; older ones a link. Either way, present.
                r.nullable_link().map_err(cbor)?;
                has_prev = true;
            }
            "version" => version = Some(r.int().map_err(cbor)?),
            _ => r.skip().map_err(cbor)?,
        }
    }
    r.finish().map_err(cbor)?;
    let version = version.ok_or(VerifyError::MalformedCommit("missing version"))?;
    if version != 3 {
        return Err(VerifyError::UnsupportedVersion(version));
    }
    if !has_prev {
        return Err(VerifyError::MalformedCommit("missing prev"));
    }
    let block = CommitBlock {
        did: did.ok_or(VerifyError::MalformedCommit("missing did"))?,
        rev: rev.ok_or(VerifyError::MalformedCommit("missing rev"))?,
        data: data.ok_or(VerifyError::MalformedCommit("missing data"))?,
        sig: sig.ok_or(VerifyError::MalformedCommit("missing sig"))?,
    };
    let unsigned = Unsigned {
        entries: entries as u64,
        body,
        sig: sig_span,
    };
    Ok((block, unsigned))
}

/// The DAG-CBOR encoding of a signed commit block without its `sig`: the bytes its
/// signature covers, derived by removing the `sig` entry (no re-encoding).
pub fn unsigned_commit_bytes(block: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let (_, unsigned) = decode_commit_block(block)?;
    Ok(unsigned.assemble(block))
}

/// The base32-sortable alphabet TIDs use.
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// Parses a TID (13 base32-sortable characters, the first below `k`) to its integer.
pub fn parse_tid(tid: &str) -> Option<u64> {
    let bytes = tid.as_bytes();
    if bytes.len() != 13 {
        return None;
    }
    let mut value = 0u64;
    for (i, &c) in bytes.iter().enumerate() {
        let digit = TID_ALPHABET.iter().position(|&a| a == c)? as u64;
        if i == 0 && digit >= 16 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

/// Formats a TID's integer as its 13 characters.
pub fn format_tid(value: u64) -> String {
    (0..13)
        .rev()
        .map(|i| char::from(TID_ALPHABET[((value >> (5 * i)) & 31) as usize]))
        .collect()
}

/// A TID's timestamp, in microseconds since the Unix epoch.
pub fn tid_micros(value: u64) -> u64 {
    value >> 10
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_round_trip_and_order() {
        for tid in ["3migo7fijwi2k", "2222222222222", "jzzzzzzzzzzzz"] {
            assert_eq!(format_tid(parse_tid(tid).unwrap()), tid);
        }
        assert!(parse_tid("3migo7fijwi2k") < parse_tid("3migo7fijwi2l"));
        for bad in [
            "",
            "3migo7fijwi2",
            "kzzzzzzzzzzzz",
            "3migo7fijwi2K",
            "3migo7fijwi21",
        ] {
            assert_eq!(parse_tid(bad), None, "{bad}");
        }
        // 3migo7fijwi2k (repo.car's rev) is from 2026.
        let secs = tid_micros(parse_tid("3migo7fijwi2k").unwrap()) / 1_000_000;
        assert!((1_767_225_600..1_798_761_600).contains(&secs), "{secs}");
    }

    #[test]
    fn map_heads() {
        for (n, expected) in [
            (5u64, vec![0xa5]),
            (24, vec![0xb8, 24]),
            (300, vec![0xb9, 1, 44]),
        ] {
            let mut out = Vec::new();
            write_map_head(&mut out, n);
            assert_eq!(out, expected);
        }
    }
}
