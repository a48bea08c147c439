//! The AC-namespace filter: which verified events the relay re-serves.
//!
//! The relay follows the whole network but re-serves only what concerns Aesthetic Computer.
//! [`Filter::decide`] judges one [`SyncEvent`] at a time against [`FilterRules`]:
//!
//! - **Collections.** A commit op whose collection matches one of the rules' patterns
//!   passes (creates, updates and deletes). Patterns are exact NSIDs
//!   (`computer.aesthetic.mood`) or prefix wildcards (`computer.aesthetic.*`, which matches
//!   `computer.aesthetic.painting` but not `computer.aesthetic` itself).
//! - **Known actors.** An actor becomes known once it writes (creates or updates) any record
//!   matching the collections. The set ([`KnownActors`]) only grows; changing the rules
//!   does not forget anyone.
//! - **Companions** (`companions: true`, the default). For known actors the relay also
//!   passes `app.bsky.actor.profile` ops (profile sync), follow records
//!   (`app.bsky.graph.follow`, `computer.aesthetic.graph.follow`) whose `subject` is a known
//!   actor, whoever the follower is, and the actor's `#identity`, `#account` and `#sync`
//!   events.
//!
//! **Whole frames.** A commit passes or drops as a whole: the relay re-serves frames
//! unmodified so that signatures and MST proofs stay verifiable. It passes when any op
//! passes, and [`Decision::Pass`] lists the passing ops' indices so the Jetstream side can
//! emit only those.
//!
//! **Order within a commit.** "Known" is evaluated after the commit's matching ops are
//! scanned: a commit that writes an actor's first AC record *and* its profile passes the
//! profile too, and a follow in that commit of the actor itself counts as a follow of a
//! known actor.
//!
//! **Limits.** A follow delete carries no record, so its subject cannot be read: follow
//! deletes pass only when the follow collection matches the rules themselves (as
//! `computer.aesthetic.graph.follow` does under the default rules). A record whose
//! `subject` is missing, not text, or whose DAG-CBOR is garbled is simply not matched.
//!
//! **Persistence.** The filter holds the known set in memory. Load it at start with
//! [`Filter::with_known`], and after each decision drain the actors that became known
//! with [`Filter::take_newly_known`] to append them to the store; [`KnownActors::to_vec`]
//! gives a full snapshot.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sync::cbor::{Kind, MapKeys, Reader};
use crate::sync::frame::Action;
use crate::sync::stream::{OpEvent, SyncEvent};

/// The profile collection passed for known actors.
pub const PROFILE_COLLECTION: &str = "app.bsky.actor.profile";

/// The follow collections passed when their subject is a known actor.
pub const FOLLOW_COLLECTIONS: [&str; 2] =
    ["app.bsky.graph.follow", "computer.aesthetic.graph.follow"];

/// The default collection pattern.
pub const DEFAULT_COLLECTION: &str = "computer.aesthetic.*";

/// The longest pattern accepted (an NSID is at most 317 characters).
const MAX_PATTERN_LEN: usize = 317;

/// The longest NSID segment.
const MAX_SEGMENT_LEN: usize = 63;

/// What the filter lets through; the `relay.filter` section of `atelier.yaml`, and the body
/// of the admin API's filter update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilterRules {
    /// Collection patterns: exact NSIDs, or NSID prefixes followed by `.*`. Ops in matching
    /// collections pass, and their authors become known actors. Must not be empty.
    pub collections: Vec<String>,
    /// Whether known actors' companion events pass too: profile records, follows whose
    /// subject is a known actor, and `#identity`, `#account` and `#sync` events.
    pub companions: bool,
}

impl Default for FilterRules {
    /// `computer.aesthetic.*` with companions.
    fn default() -> Self {
        FilterRules {
            collections: vec![DEFAULT_COLLECTION.to_owned()],
            companions: true,
        }
    }
}

impl FilterRules {
    /// Checks every pattern; the error names the first bad one and why.
    pub fn check(&self) -> Result<(), FilterError> {
        Matcher::compile(&self.collections).map(|_| ())
    }
}

/// Why rules were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A collection pattern is neither an NSID nor an NSID prefix followed by `.*`.
    #[error("filter collection pattern {pattern:?} is invalid: {reason}")]
    BadPattern {
        /// The pattern as configured.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No collection patterns at all: nothing would ever pass.
    #[error(
        "filter collections is empty: nothing would pass (the default is [\"{DEFAULT_COLLECTION}\"])"
    )]
    NoCollections,
}

/// One compiled collection pattern.
#[derive(Debug, Clone)]
enum Pattern {
    /// An exact NSID.
    Exact(String),
    /// A prefix including its final dot (`computer.aesthetic.`).
    Prefix(String),
}

/// The compiled collection patterns of a [`FilterRules`].
#[derive(Debug, Clone)]
struct Matcher {
    patterns: Vec<Pattern>,
}

impl Matcher {
    fn compile(collections: &[String]) -> Result<Matcher, FilterError> {
        if collections.is_empty() {
            return Err(FilterError::NoCollections);
        }
        let patterns = collections
            .iter()
            .map(|p| {
                compile_pattern(p).map_err(|reason| FilterError::BadPattern {
                    pattern: p.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Matcher { patterns })
    }

    fn matches(&self, collection: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Exact(nsid) => nsid == collection,
            Pattern::Prefix(prefix) => collection.starts_with(prefix.as_str()),
        })
    }
}

/// Compiles one pattern, or says what is wrong with it.
fn compile_pattern(pattern: &str) -> Result<Pattern, &'static str> {
    if pattern.is_empty() {
        return Err("empty pattern");
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err("longer than an NSID may be");
    }
    if pattern == "*" {
        return Err("a bare `*` would match everything; name an NSID prefix such as `app.bsky.*`");
    }
    if let Some(prefix) = pattern.strip_suffix(".*") {
        if prefix.contains('*') {
            return Err("`*` is only allowed as the final segment, after a dot");
        }
        check_prefix(prefix)?;
        return Ok(Pattern::Prefix(format!("{prefix}.")));
    }
    if pattern.contains('*') {
        return Err("`*` is only allowed as the final segment, after a dot");
    }
    if pattern.ends_with('.') {
        return Err("ends with a dot; write `prefix.*` for a wildcard");
    }
    if !atelier_lexicons::syntax::is_valid_nsid(pattern) {
        return Err("not a valid NSID");
    }
    Ok(Pattern::Exact(pattern.to_owned()))
}

/// Checks an NSID prefix (the authority part of an NSID, or a leading part of it): dot-separated
/// segments of ASCII letters, digits and inner hyphens, the first not starting with a digit.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("a wildcard needs an NSID prefix before `.*`");
    }
    for (i, segment) in prefix.split('.').enumerate() {
        if segment.is_empty() {
            return Err("empty segment (two dots, or a leading dot)");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err("a segment is longer than 63 characters");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("segments may hold only ASCII letters, digits and hyphens");
        }
        if segment.starts_with('-') || segment.ends_with('-') {
            return Err("a segment starts or ends with a hyphen");
        }
        if i == 0 && segment.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("the first segment starts with a digit");
        }
    }
    Ok(())
}

/// The actors that have written a record matching the collections.
///
/// Only grows. Load it from the store at start ([`KnownActors::from_iter`]) and save it
/// whole ([`KnownActors::to_vec`]) or incrementally ([`Filter::take_newly_known`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownActors {
    dids: HashSet<String>,
}

impl KnownActors {
    /// An empty set.
    pub fn new() -> Self {
        KnownActors::default()
    }

    /// Whether `did` is known.
    pub fn contains(&self, did: &str) -> bool {
        self.dids.contains(did)
    }

    /// Adds `did`; `true` if it was not known before.
    pub fn insert(&mut self, did: &str) -> bool {
        if self.dids.contains(did) {
            false
        } else {
            self.dids.insert(did.to_owned())
        }
    }

    /// The known DIDs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.dids.iter().map(String::as_str)
    }

    /// How many actors are known.
    pub fn len(&self) -> usize {
        self.dids.len()
    }

    /// Whether no actor is known.
    pub fn is_empty(&self) -> bool {
        self.dids.is_empty()
    }

    /// A snapshot for saving, sorted so that saves are stable.
    pub fn to_vec(&self) -> Vec<String> {
        let mut dids: Vec<String> = self.dids.iter().cloned().collect();
        dids.sort_unstable();
        dids
    }
}

impl FromIterator<String> for KnownActors {
    /// Loads a saved set.
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        KnownActors {
            dids: iter.into_iter().collect(),
        }
    }
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Re-serve the event (for a commit: the whole frame, unmodified).
    Pass {
        /// For commits, the indices (in `ops` order) of the ops that passed, for consumers
        /// that emit ops one by one (Jetstream). For a resync, indices into its records.
        /// Empty for other events.
        matched_ops: Vec<usize>,
    },
    /// Do not re-serve it.
    Drop,
}

impl Decision {
    /// Whether the event passes.
    pub fn is_pass(&self) -> bool {
        matches!(self, Decision::Pass { .. })
    }
}

/// The kinds of events the filter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `#commit`.
    Commit,
    /// `#identity`.
    Identity,
    /// `#account`.
    Account,
    /// `#sync`.
    Sync,
    /// A whole repository fetched after a desync.
    Resynced,
    /// Everything else (rejections, unknown frames, upstream news): always dropped.
    Other,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Commit,
        EventKind::Identity,
        EventKind::Account,
        EventKind::Sync,
        EventKind::Resynced,
        EventKind::Other,
    ];

    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Commit => "commit",
            EventKind::Identity => "identity",
            EventKind::Account => "account",
            EventKind::Sync => "sync",
            EventKind::Resynced => "resynced",
            EventKind::Other => "other",
        }
    }

    /// The kind of `event`.
    pub fn of(event: &SyncEvent) -> EventKind {
        match event {
            SyncEvent::Commit(_) => EventKind::Commit,
            SyncEvent::Identity { .. } => EventKind::Identity,
            SyncEvent::Account { .. } => EventKind::Account,
            SyncEvent::Sync { .. } => EventKind::Sync,
            SyncEvent::Resynced { .. } => EventKind::Resynced,
            SyncEvent::ResyncFailed { .. }
            | SyncEvent::Rejected { .. }
            | SyncEvent::Unknown { .. }
            | SyncEvent::Upstream(_) => EventKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The filter's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    passed: [u64; EventKind::ALL.len()],
    dropped: [u64; EventKind::ALL.len()],
    ops_passed: u64,
    ops_dropped: u64,
}

impl FilterCounts {
    /// Events of `kind` that passed.
    pub fn passed(&self, kind: EventKind) -> u64 {
        self.passed[kind.index()]
    }

    /// Events of `kind` that were dropped.
    pub fn dropped(&self, kind: EventKind) -> u64 {
        self.dropped[kind.index()]
    }

    /// Commit ops that passed (across passing commits).
    pub fn ops_passed(&self) -> u64 {
        self.ops_passed
    }

    /// Commit ops that did not pass (in passing and dropped commits alike).
    pub fn ops_dropped(&self) -> u64 {
        self.ops_dropped
    }

    /// All events that passed.
    pub fn total_passed(&self) -> u64 {
        self.passed.iter().sum()
    }

    /// All events that were dropped.
    pub fn total_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// The namespace filter: rules, the known actors, and counters.
///
/// Not shared: the relay's ingest task owns it; the admin API's rule changes reach it
/// through that task (or a mutex around it).
#[derive(Debug, Clone)]
pub struct Filter {
    rules: FilterRules,
    matcher: Matcher,
    known: KnownActors,
    /// Actors made known since the last [`Filter::take_newly_known`], for incremental saves.
    newly_known: Vec<String>,
    counts: FilterCounts,
}

impl Filter {
    /// A filter with no known actors yet.
    pub fn new(rules: FilterRules) -> Result<Filter, FilterError> {
        Filter::with_known(rules, KnownActors::new())
    }

    /// A filter starting from a saved set of known actors.
    pub fn with_known(rules: FilterRules, known: KnownActors) -> Result<Filter, FilterError> {
        let matcher = Matcher::compile(&rules.collections)?;
        Ok(Filter {
            rules,
            matcher,
            known,
            newly_known: Vec::new(),
            counts: FilterCounts::default(),
        })
    }

    /// The rules in force.
    pub fn rules(&self) -> &FilterRules {
        &self.rules
    }

    /// Replaces the rules (after checking them; on error the old rules stay). Known actors
    /// stay known.
    pub fn set_rules(&mut self, rules: FilterRules) -> Result<(), FilterError> {
        self.matcher = Matcher::compile(&rules.collections)?;
        self.rules = rules;
        Ok(())
    }

    /// Whether `collection` matches the rules' patterns.
    pub fn matches_collection(&self, collection: &str) -> bool {
        self.matcher.matches(collection)
    }

    /// The known actors.
    pub fn known(&self) -> &KnownActors {
        &self.known
    }

    /// Marks `did` known (for example from an operator's list); `true` if it was new.
    pub fn add_known(&mut self, did: &str) -> bool {
        let new = self.known.insert(did);
        if new {
            self.newly_known.push(did.to_owned());
        }
        new
    }

    /// The actors that became known since the last call, in the order they did; append
    /// them to the store.
    pub fn take_newly_known(&mut self) -> Vec<String> {
        std::mem::take(&mut self.newly_known)
    }

    /// The counters so far.
    pub fn counts(&self) -> &FilterCounts {
        &self.counts
    }

    /// Judges one event, updating the known actors and the counters.
    pub fn decide(&mut self, event: &SyncEvent) -> Decision {
        let kind = EventKind::of(event);
        let decision = match event {
            SyncEvent::Commit(commit) => {
                let ops = commit.ops.iter().map(OpView::from);
                let decision = self.judge_ops(&commit.did, ops);
                let passed = match &decision {
                    Decision::Pass { matched_ops } => matched_ops.len(),
                    Decision::Drop => 0,
                };
                self.counts.ops_passed += passed as u64;
                self.counts.ops_dropped += commit.ops.len().saturating_sub(passed) as u64;
                decision
            }
            SyncEvent::Resynced { did, records, .. } => {
                let ops = records.iter().map(|r| OpView {
                    action: Action::Create,
                    collection: r.path.split_once('/').map_or(r.path.as_str(), |(c, _)| c),
                    record: Some(&r.record),
                });
                self.judge_ops(did, ops)
            }
            SyncEvent::Identity { did, .. }
            | SyncEvent::Account { did, .. }
            | SyncEvent::Sync { did, .. } => {
                if self.rules.companions && self.known.contains(did) {
                    Decision::Pass {
                        matched_ops: Vec::new(),
                    }
                } else {
                    Decision::Drop
                }
            }
            SyncEvent::ResyncFailed { .. }
            | SyncEvent::Rejected { .. }
            | SyncEvent::Unknown { .. }
            | SyncEvent::Upstream(_) => Decision::Drop,
        };
        let counter = if decision.is_pass() {
            &mut self.counts.passed
        } else {
            &mut self.counts.dropped
        };
        counter[kind.index()] += 1;
        decision
    }

    /// Judges the ops of one commit (or resync) by `did`.
    fn judge_ops<'a>(
        &mut self,
        did: &str,
        ops: impl Iterator<Item = OpView<'a>> + Clone,
    ) -> Decision {
        // First pass: collection matches, which may make the author known.
        let mut matched = Vec::new();
        let mut writes_match = false;
        for (i, op) in ops.clone().enumerate() {
            if self.matcher.matches(op.collection) {
                matched.push(i);
                writes_match |= op.action != Action::Delete;
            }
        }
        if writes_match {
            self.add_known(did);
        }
        // Second pass, with "known" settled for this commit: companions. `matched` stays
        // sorted (first-pass indices ascend) until the companions are merged in.
        if self.rules.companions {
            let author_known = self.known.contains(did);
            let mut companions = Vec::new();
            for (i, op) in ops.enumerate() {
                if matched.binary_search(&i).is_err() && self.is_companion(author_known, &op) {
                    companions.push(i);
                }
            }
            if !companions.is_empty() {
                matched.extend(companions);
                matched.sort_unstable();
            }
        }
        if matched.is_empty() {
            Decision::Drop
        } else {
            Decision::Pass {
                matched_ops: matched,
            }
        }
    }

    /// Whether an op not matched by the collections passes as a companion.
    fn is_companion(&self, author_known: bool, op: &OpView<'_>) -> bool {
        if op.collection == PROFILE_COLLECTION {
            return author_known;
        }
        if FOLLOW_COLLECTIONS.contains(&op.collection) && op.action != Action::Delete {
            return op
                .record
                .and_then(record_subject)
                .is_some_and(|subject| self.known.contains(subject));
        }
        false
    }
}

/// What the filter looks at in an op (of a commit, or a resync's record).
#[derive(Debug, Clone, Copy)]
struct OpView<'a> {
    action: Action,
    collection: &'a str,
    record: Option<&'a [u8]>,
}

/// The `subject` text field of a DAG-CBOR record map, without allocating. `None` when the
/// record is not a map, has no text `subject`, or is garbled before the field is found.
fn record_subject(record: &[u8]) -> Option<&str> {
    let mut r = Reader::new(record);
    let len = r.map_len().ok()?;
    let mut keys = MapKeys::new();
    for _ in 0..len {
        let key = keys.next(&mut r).ok()?;
        if key == "subject" {
            return match r.peek_kind().ok()? {
                Kind::Text => r.text().ok(),
                _ => None,
            };
        }
        r.skip().ok()?;
    }
    None
}

impl<'a> From<&'a OpEvent> for OpView<'a> {
    fn from(op: &'a OpEvent) -> Self {
        OpView {
            action: op.action,
            collection: &op.collection,
            record: op.record.as_deref(),
        }
    }
}
