//! Jetstream events (jetstream.md §3, §5): commits, identity and account changes as the
//! compact JSON legacy Jetstream sends, each stamped with a `time_us` from a [`TimeClock`].
//!
//! Top-level key order is `did, time_us, kind`, then `commit`, `identity` or `account`. A
//! commit becomes one event per op, in op order; creates and updates whose cid or record is
//! missing, or whose record fails the data-model checks ([`super::record`]), are skipped.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::json::{push_bool, push_i64, push_key, push_str};
use super::record::RecordEncoder;
use crate::sync::frame::{self, Action, Frame};
use crate::sync::stream::{CommitEvent, SyncEvent};

/// One Jetstream event: its JSON plus what the log and the fan-out filter on, so neither has
/// to parse the JSON again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetstreamEvent {
    /// The event's cursor: unix microseconds, strictly increasing across events.
    pub time_us: i64,
    /// The account the event is about (the top-level `did`).
    pub did: String,
    /// The record's collection, for commits; `None` for identity and account events (which
    /// the collection filter never applies to).
    pub collection: Option<String>,
    /// The complete event as compact JSON, as sent uncompressed in a text frame.
    pub json: Bytes,
}

/// A never-repeating microsecond clock: wall-clock time, bumped to one more than the last
/// value whenever the wall clock has not moved past it (or went backwards).
#[derive(Debug, Clone)]
pub struct TimeClock {
    /// The last value handed out (0 before the first).
    last: i64,
    /// Reads the wall clock in unix microseconds; replaceable for deterministic tests.
    source: fn() -> i64,
}

impl Default for TimeClock {
    fn default() -> Self {
        TimeClock::new()
    }
}

/// The system's wall clock in unix microseconds (0 before 1970, saturating far ahead).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl TimeClock {
    /// A clock on the system's wall clock that has handed out nothing yet.
    pub fn new() -> Self {
        TimeClock::after(0)
    }

    /// A clock whose values all exceed `last`: use the newest `time_us` of the log after a
    /// restart, so cursors keep increasing even if the wall clock stepped back.
    pub fn after(last: i64) -> Self {
        TimeClock {
            last,
            source: now_us,
        }
    }

    /// A clock reading `source` instead of the system clock (for tests and replays).
    pub fn with_source(last: i64, source: fn() -> i64) -> Self {
        TimeClock { last, source }
    }

    /// The last value handed out (the `last` it was created with if none).
    pub fn last(&self) -> i64 {
        self.last
    }

    /// The next value, from the clock's source.
    pub fn tick(&mut self) -> i64 {
        let now = (self.source)();
        self.next_at(now)
    }

    /// The next value given the wall clock reads `now_us`: `now_us` if it is later than the
    /// last value, else the last value plus one.
    pub fn next_at(&mut self, now_us: i64) -> i64 {
        self.last = if now_us > self.last {
            now_us
        } else {
            self.last.saturating_add(1)
        };
        self.last
    }
}

/// Writes `{"did":…,"time_us":…,"kind":"…","<kind>":` (the caller closes both objects).
fn push_head(out: &mut Vec<u8>, did: &str, time_us: i64, kind: &str) {
    out.extend_from_slice(b"{\"did\":");
    push_str(out, did);
    out.extend_from_slice(b",\"time_us\":");
    push_i64(out, time_us);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\":");
}

/// One event per op of a verified commit, in op order, each with its own `time_us`.
///
/// Deletes carry no `record` or `cid`. Creates and updates without a cid or record, or
/// whose record fails the data-model checks, are skipped and take no `time_us`.
pub fn encode_commit(commit: &CommitEvent, clock: &mut TimeClock) -> Vec<JetstreamEvent> {
    let mut encoder = RecordEncoder::default();
    // The record's JSON, written before the event so a refused record costs no time_us.
    let mut record = Vec::new();
    let mut events = Vec::with_capacity(commit.ops.len());
    for op in &commit.ops {
        record.clear();
        let cid = match op.action {
            Action::Delete => None,
            Action::Create | Action::Update => {
                let (Some(cid), Some(bytes)) = (&op.cid, &op.record) else {
                    continue;
                };
                if encoder.encode(bytes, &mut record).is_err() {
                    continue;
                }
                Some(cid)
            }
        };
        let time_us = clock.tick();
        let mut out = Vec::with_capacity(160 + record.len());
        push_head(&mut out, &commit.did, time_us, "commit");
        out.push(b'{');
        push_key(&mut out, "rev");
        push_str(&mut out, &commit.rev);
        out.extend_from_slice(b",\"operation\":\"");
        out.extend_from_slice(op.action.as_str().as_bytes());
        out.extend_from_slice(b"\",\"collection\":");
        push_str(&mut out, &op.collection);
        out.extend_from_slice(b",\"rkey\":");
        push_str(&mut out, &op.rkey);
        if let Some(cid) = cid {
            out.extend_from_slice(b",\"record\":");
            out.extend_from_slice(&record);
            out.extend_from_slice(b",\"cid\":");
            push_str(&mut out, cid);
        }
        out.extend_from_slice(b"}}");
        events.push(JetstreamEvent {
            time_us,
            did: commit.did.clone(),
            collection: Some(op.collection.clone()),
            json: Bytes::from(out),
        });
    }
    events
}

/// The event for an upstream `#identity`: its fields verbatim (`did`, `handle` if present,
/// `seq`, `time`).
pub fn encode_identity(identity: &frame::Identity<'_>, clock: &mut TimeClock) -> JetstreamEvent {
    let time_us = clock.tick();
    let mut out = Vec::with_capacity(192);
    push_head(&mut out, identity.did, time_us, "identity");
    out.push(b'{');
    push_key(&mut out, "did");
    push_str(&mut out, identity.did);
    if let Some(handle) = identity.handle {
        out.extend_from_slice(b",\"handle\":");
        push_str(&mut out, handle);
    }
    out.extend_from_slice(b",\"seq\":");
    push_i64(&mut out, identity.seq);
    out.extend_from_slice(b",\"time\":");
    push_str(&mut out, identity.time);
    out.extend_from_slice(b"}}");
    JetstreamEvent {
        time_us,
        did: identity.did.to_owned(),
        collection: None,
        json: Bytes::from(out),
    }
}

/// The event for an upstream `#account`: its fields verbatim (`active`, `did`, `seq`,
/// `status` if present, `time`).
pub fn encode_account(account: &frame::Account<'_>, clock: &mut TimeClock) -> JetstreamEvent {
    let time_us = clock.tick();
    let mut out = Vec::with_capacity(192);
    push_head(&mut out, account.did, time_us, "account");
    out.push(b'{');
    push_key(&mut out, "active");
    push_bool(&mut out, account.active);
    out.extend_from_slice(b",\"did\":");
    push_str(&mut out, account.did);
    out.extend_from_slice(b",\"seq\":");
    push_i64(&mut out, account.seq);
    if let Some(status) = account.status {
        out.extend_from_slice(b",\"status\":");
        push_str(&mut out, status);
    }
    out.extend_from_slice(b",\"time\":");
    push_str(&mut out, account.time);
    out.extend_from_slice(b"}}");
    JetstreamEvent {
        time_us,
        did: account.did.to_owned(),
        collection: None,
        json: Bytes::from(out),
    }
}

/// The Jetstream events for one sync-layer event: commits per [`encode_commit`]; identity
/// and account changes from their frames (which carry the upstream `time`); nothing for
/// every other kind (`#sync`, resyncs, rejections, ... are never emitted).
pub fn encode_sync_event(event: &SyncEvent, clock: &mut TimeClock) -> Vec<JetstreamEvent> {
    match event {
        SyncEvent::Commit(commit) => encode_commit(commit, clock),
        SyncEvent::Identity { frame, .. } => match frame::decode(frame) {
            Ok(Frame::Identity(identity)) => vec![encode_identity(&identity, clock)],
            _ => Vec::new(),
        },
        SyncEvent::Account { frame, .. } => match frame::decode(frame) {
            Ok(Frame::Account(account)) => vec![encode_account(&account, clock)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}
