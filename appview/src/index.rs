//! From verified stream events to index changes: which ops the AppView keeps, lenient
//! validation of AC records from the wild, and the typed columns queries need.
//!
//! Pure functions over [`SyncEvent`]s, so the rules are tested without a database: every
//! `computer.aesthetic.*` create or update is validated leniently (AC's known quirks are
//! repaired and recorded, see `ac-records.md`); a record that fails even that is reported
//! as [`Rejected`] and kept out, never an error for the stream. `app.bsky.actor.profile/self`
//! fills the actor's profile; `computer.aesthetic.graph.follow` also feeds the follow graph.

use atelier_relay::jetstream::record_json;
use atelier_relay::lexicons::schema::Catalog;
use atelier_relay::lexicons::validate::{Mode, ValidationError};
use atelier_relay::sync::frame::Action;
use atelier_relay::sync::stream::{CommitEvent, OpEvent, RepoRecord, SyncEvent};
use serde_json::Value;

/// The AC namespace: every collection under it is indexed.
pub const AC_PREFIX: &str = "computer.aesthetic.";
/// The Bluesky profile record, read for display name, description and avatar.
pub const PROFILE: &str = "app.bsky.actor.profile";
/// AC's own follow record.
pub const FOLLOW: &str = "computer.aesthetic.graph.follow";

/// One indexed AC record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordRow {
    /// `at://did/collection/rkey`.
    pub uri: String,
    /// The author.
    pub did: String,
    /// The record's NSID.
    pub collection: String,
    /// The record key.
    pub rkey: String,
    /// The record's CID.
    pub cid: String,
    /// When the author says it was made (`when`, else `createdAt`), as written.
    pub created_at: Option<String>,
    /// AC's short code (`code`), for lookups by code.
    pub code: Option<String>,
    /// The record's slug (`slug`), for lookups by slug.
    pub slug: Option<String>,
    /// The record as indexed: after lenient repairs.
    pub record: Value,
    /// What lenient validation repaired or tolerated, in words.
    pub repairs: Vec<String>,
    /// The AT-URI of the work this record remixes (`remixOf.uri`), if any.
    pub remix_of: Option<String>,
    /// Handles mentioned in the record's text (`@name` in a mood, KidLisp source or news
    /// headline/body), lowercased, each once, AC's short form expanded (see [`mentions`]).
    pub mentions: Vec<String>,
}

/// An actor's profile, from `app.bsky.actor.profile/self`.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The actor.
    pub did: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// The avatar blob's CID.
    pub avatar_cid: Option<String>,
    /// The whole record.
    pub record: Value,
}

pub use atelier_relay::sync::verify::AccountState;

/// A change to the index, applied in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or update a record (a no-op if the stored CID is the same); a record the
    /// publishing API inserted ([`Change::Optimistic`]) is confirmed by it.
    Record(RecordRow),
    /// A record the publishing API has just written to its author's PDS, inserted before
    /// the firehose delivers it: visible at once and `pending` until a [`Change::Record`]
    /// for its URI arrives. A no-op if the URI is already indexed (the firehose won).
    Optimistic(RecordRow),
    /// A follow edge, beside its record.
    Follow {
        /// The follow record's URI.
        uri: String,
        /// Who follows.
        did: String,
        /// Whom.
        subject: String,
        /// `createdAt`.
        created_at: Option<String>,
    },
    /// Remove a record (and any follow edge it made).
    DeleteRecord {
        /// The record's URI.
        uri: String,
    },
    /// Set an actor's profile.
    Profile(Profile),
    /// Clear an actor's profile (the record was deleted).
    DeleteProfile {
        /// The actor.
        did: String,
    },
    /// The handle an `#identity` event announced (not yet verified).
    Handle {
        /// The actor.
        did: String,
        /// The handle, if the event carried one.
        handle: Option<String>,
    },
    /// A commit's rev: the actor's repository is known at least up to it (backfill does
    /// not overwrite an actor with an older snapshot).
    Rev {
        /// The actor.
        did: String,
        /// The commit's rev (a TID: revs sort as strings).
        rev: String,
    },
    /// A resync: the account's whole repository at `rev` (its records as creates), which
    /// replaces what the index holds for it.
    Snapshot {
        /// The actor.
        did: String,
        /// The repository's rev.
        rev: String,
        /// The repository's changes ([`Indexer::repo`]).
        changes: Vec<Change>,
    },
    /// An `#account` event: hosting status. Inactive accounts' records are hidden.
    Account {
        /// The actor.
        did: String,
        /// Whether the account is active.
        active: bool,
        /// `takendown`, `suspended`, `deleted`, `deactivated`, ...
        status: Option<String>,
    },
    /// The sync layer's verification state of these accounts after the batch's commits
    /// (one per account, the latest), stored so verification continues after a restart.
    SyncStates(Vec<(String, AccountState)>),
}

/// A record kept out of the index, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The record's URI.
    pub uri: String,
    /// A stable label for metrics (`not_json`, `invalid`, `unknown_type`, `no_record`).
    pub reason: &'static str,
    /// The details, for the log.
    pub detail: String,
}

/// Turns stream events into index changes.
#[derive(Debug)]
pub struct Indexer {
    catalog: Catalog,
}

/// Which record an op touches and how, whatever the stream carried it in.
#[derive(Debug, Clone, Copy)]
pub struct OpTarget<'a> {
    /// Create, update or delete.
    pub action: Action,
    /// The record's collection (NSID).
    pub collection: &'a str,
    /// The record key.
    pub rkey: &'a str,
    /// The new record's CID (create, update).
    pub cid: Option<&'a str>,
}

impl Indexer {
    /// An indexer with the built-in lexicons.
    ///
    /// # Errors
    /// If the built-in lexicons do not parse (a build defect, caught by the lexicon tests).
    pub fn new() -> Result<Indexer, atelier_relay::lexicons::schema::SchemaError> {
        Ok(Indexer {
            catalog: Catalog::builtin()?,
        })
    }

    /// The changes `event` makes, appended to `out`; refused records to `rejected`.
    pub fn event(&self, event: &SyncEvent, out: &mut Vec<Change>, rejected: &mut Vec<Rejected>) {
        match event {
            SyncEvent::Commit(commit) => self.commit(commit, out, rejected),
            SyncEvent::Identity { did, handle, .. } => out.push(Change::Handle {
                did: did.clone(),
                handle: handle.clone(),
            }),
            SyncEvent::Resynced { did, rev, records } => {
                let mut changes = Vec::new();
                self.repo(did, records, &mut changes, rejected);
                out.push(Change::Snapshot {
                    did: did.clone(),
                    rev: rev.clone(),
                    changes,
                });
            }
            SyncEvent::Account {
                did,
                active,
                status,
                ..
            } => out.push(Change::Account {
                did: did.clone(),
                active: *active,
                status: status.clone(),
            }),
            _ => {}
        }
    }

    /// The changes a verified commit makes: its rev, then its ops'.
    pub fn commit(
        &self,
        commit: &CommitEvent,
        out: &mut Vec<Change>,
        rejected: &mut Vec<Rejected>,
    ) {
        out.push(Change::Rev {
            did: commit.did.clone(),
            rev: commit.rev.clone(),
        });
        self.ops(&commit.did, &commit.ops, out, rejected);
    }

    /// The changes a verified repository export makes (backfill): every record as a
    /// create. The rev is not among them: the store applies a snapshot with its rev.
    pub fn repo(
        &self,
        did: &str,
        records: &[RepoRecord],
        out: &mut Vec<Change>,
        rejected: &mut Vec<Rejected>,
    ) {
        let ops: Vec<OpEvent> = records
            .iter()
            .filter_map(|r| {
                let (collection, rkey) = r.path.split_once('/')?;
                Some(OpEvent {
                    action: Action::Create,
                    collection: collection.to_owned(),
                    rkey: rkey.to_owned(),
                    cid: Some(r.cid.clone()),
                    prev: None,
                    record: Some(r.record.clone()),
                })
            })
            .collect();
        self.ops(did, &ops, out, rejected);
    }

    /// The changes `did`'s ops make.
    fn ops(&self, did: &str, ops: &[OpEvent], out: &mut Vec<Change>, rejected: &mut Vec<Rejected>) {
        for op in ops {
            let target = OpTarget {
                action: op.action,
                collection: &op.collection,
                rkey: &op.rkey,
                cid: op.cid.as_deref(),
            };
            self.op(did, &target, || record_value(op), out, rejected);
        }
    }

    /// The changes one op of a Jetstream-style JSON event makes: `record` is the record
    /// as ATProto JSON (absent on a delete).
    pub fn json_op(
        &self,
        did: &str,
        target: &OpTarget<'_>,
        record: Option<Value>,
        out: &mut Vec<Change>,
        rejected: &mut Vec<Rejected>,
    ) {
        let record = || {
            record.ok_or(Reject::new(
                "no_record",
                "the event carries no record for a create or update",
            ))
        };
        self.op(did, target, record, out, rejected);
    }

    /// The changes one op makes; `record` reads its record, and is called only for the
    /// collections the index keeps.
    fn op(
        &self,
        did: &str,
        op: &OpTarget<'_>,
        record: impl FnOnce() -> Result<Value, Reject>,
        out: &mut Vec<Change>,
        rejected: &mut Vec<Rejected>,
    ) {
        // Most of a full relay's ops are in other collections: leave them before any work.
        let is_profile = op.collection == PROFILE;
        if (is_profile && op.rkey != "self")
            || (!is_profile && !op.collection.starts_with(AC_PREFIX))
        {
            return;
        }
        let uri = format!("at://{}/{}/{}", did, op.collection, op.rkey);
        if is_profile {
            match op.action {
                Action::Delete => out.push(Change::DeleteProfile {
                    did: did.to_owned(),
                }),
                _ => match record() {
                    Ok(record) => out.push(Change::Profile(profile(did, record))),
                    Err(r) => rejected.push(r.at(uri)),
                },
            }
            return;
        }
        if op.action == Action::Delete {
            out.push(Change::DeleteRecord { uri });
            return;
        }
        let row = op
            .cid
            .ok_or(Reject::new("no_record", "the op has no CID"))
            .and_then(|cid| {
                let record = record()?;
                self.row(did, op.collection, op.rkey, &uri, cid.to_owned(), &record)
            });
        match row {
            Ok(row) => {
                if row.collection == FOLLOW
                    && let Some(subject) = row.record.get("subject").and_then(Value::as_str)
                {
                    out.push(Change::Follow {
                        uri: uri.clone(),
                        did: did.to_owned(),
                        subject: subject.to_owned(),
                        created_at: row.created_at.clone(),
                    });
                }
                out.push(Change::Record(row));
            }
            Err(r) => rejected.push(r.at(uri)),
        }
    }

    /// The index row of `record` (ATProto JSON), stored at `did/collection/rkey` with
    /// `cid`, validated leniently as ingest does (the publishing API's optimistic insert).
    ///
    /// # Errors
    /// If the record is not a valid AC record even leniently.
    pub fn record_row(
        &self,
        did: &str,
        collection: &str,
        rkey: &str,
        cid: &str,
        record: &Value,
    ) -> Result<RecordRow, Rejected> {
        let uri = format!("at://{did}/{collection}/{rkey}");
        self.row(did, collection, rkey, &uri, cid.to_owned(), record)
            .map_err(|r| r.at(uri))
    }

    fn row(
        &self,
        did: &str,
        collection: &str,
        rkey: &str,
        uri: &str,
        cid: String,
        record: &Value,
    ) -> Result<RecordRow, Reject> {
        let validated = self
            .catalog
            .validate_record(collection, record, Mode::Lenient)
            .map_err(|e| match e {
                ValidationError::UnknownNsid { .. } => Reject::new("unknown_type", e.to_string()),
                e => Reject::new("invalid", e.to_string()),
            })?;
        let record = validated.record;
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(RecordRow {
            uri: uri.to_owned(),
            did: did.to_owned(),
            collection: collection.to_owned(),
            rkey: rkey.to_owned(),
            cid,
            created_at: text("when").or_else(|| text("createdAt")),
            code: text("code"),
            slug: text("slug"),
            repairs: validated.repairs.iter().map(ToString::to_string).collect(),
            remix_of: record
                .get("remixOf")
                .and_then(|r| r.get("uri"))
                .and_then(Value::as_str)
                .filter(|u| u.starts_with("at://did:"))
                .map(str::to_owned),
            mentions: ["mood", "source", "headline", "body"]
                .iter()
                .filter_map(|k| record.get(*k).and_then(Value::as_str))
                .flat_map(mentions)
                .fold(Vec::new(), |mut all, h| {
                    if !all.contains(&h) {
                        all.push(h);
                    }
                    all
                }),
            record,
        })
    }
}

/// The text fields of an AC record type that the safety filter reads (publishing masks or
/// blocks them; the admin console's auto-flags read them).
pub fn text_fields(collection: &str) -> &'static [&'static str] {
    match collection {
        // Some moods in the wild carry `text` instead of `mood`.
        "computer.aesthetic.mood" => &["mood", "text"],
        "computer.aesthetic.kidlisp" => &["source"],
        "computer.aesthetic.news" => &["headline", "body"],
        "computer.aesthetic.paper" => &["title"],
        _ => &[],
    }
}

/// The domain under which AC's PDS gives accounts their handles: `@jeffrey` in AC's text
/// is the account `jeffrey.at.aesthetic.computer`.
pub const AC_HANDLE_DOMAIN: &str = "at.aesthetic.computer";

/// Most mentions taken from one record (a text full of `@` is not a way to notify
/// everyone).
const MAX_MENTIONS: usize = 10;

/// The handles `@mentioned` in `text`, lowercased, at most [`MAX_MENTIONS`].
///
/// A mention is `@` at the start or after a character that is not part of a name, then a
/// name of letters, digits, `.`, `_` and `-` (trailing dots dropped: "thanks @amy." is
/// `amy`). A name with a dot is a full handle (`@alice.bsky.social`); a bare name is AC's
/// short form, the handle `name.at.aesthetic.computer` with `_` written as `-` (how AC's
/// PDS names accounts). Names that cannot be handles (too long, bad labels) are skipped.
pub fn mentions(text: &str) -> Vec<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        let starts = c == '@' && !prev.is_some_and(|p| is_name(p) || p == '@');
        prev = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[i + 1..];
        let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches('.').to_ascii_lowercase();
        let handle = if name.contains('.') {
            name
        } else {
            format!("{}.{AC_HANDLE_DOMAIN}", name.replace('_', "-"))
        };
        let valid = handle.len() <= 253
            && handle.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if valid && !out.contains(&handle) {
            out.push(handle);
            if out.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    out
}

/// Why a record was refused, before its URI is attached.
#[derive(Debug)]
struct Reject {
    reason: &'static str,
    detail: String,
}

impl Reject {
    fn new(reason: &'static str, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }

    fn at(self, uri: String) -> Rejected {
        Rejected {
            uri,
            reason: self.reason,
            detail: self.detail,
        }
    }
}

/// The op's record as ATProto JSON (links as `$link`, bytes as `$bytes`).
fn record_value(op: &OpEvent) -> Result<Value, Reject> {
    let bytes = op.record.as_ref().ok_or(Reject::new(
        "no_record",
        "the commit carries no record block",
    ))?;
    let json = record_json(bytes).map_err(|e| Reject::new("not_json", e.to_string()))?;
    serde_json::from_slice(&json).map_err(|e| Reject::new("not_json", e.to_string()))
}

/// The profile fields the AppView shows, read leniently (a malformed field is left out).
fn profile(did: &str, record: Value) -> Profile {
    let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
    let avatar_cid = record
        .pointer("/avatar/ref/$link")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Profile {
        did: did.to_owned(),
        display_name: text("displayName"),
        description: text("description"),
        avatar_cid,
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_in_text() {
        let ac = |name: &str| format!("{name}.at.aesthetic.computer");
        let cases: Vec<(&str, Vec<String>)> = vec![
            ("hi @jeffrey", vec![ac("jeffrey")]),
            ("@Amy_B. thanks!", vec![ac("amy-b")]),
            (
                "ping @alice.bsky.social, ok",
                vec!["alice.bsky.social".into()],
            ),
            ("mail me@example.com", vec![]),
            ("@@double and @ alone", vec![]),
            ("@a @a @b", vec![ac("a"), ac("b")]),
            ("(wipe @-bad) @ok-", vec![]),
            ("@x.", vec![ac("x")]),
            ("no mentions at all", vec![]),
        ];
        for (text, want) in cases {
            assert_eq!(mentions(text), want, "{text:?}");
        }
        let many: String = (0..30).map(|i| format!("@n{i} ")).collect();
        assert_eq!(mentions(&many).len(), 10, "capped");
        let long = format!("@{}", "a".repeat(64));
        assert!(mentions(&long).is_empty(), "a label over 63 characters");
    }
}
