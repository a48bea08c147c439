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
use atelier_relay::sync::stream::{CommitEvent, OpEvent, SyncEvent};
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

/// A change to the index, applied in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or update a record (a no-op if the stored CID is the same).
    Record(RecordRow),
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
    /// An `#account` event: hosting status. Inactive accounts' records are hidden.
    Account {
        /// The actor.
        did: String,
        /// Whether the account is active.
        active: bool,
        /// `takendown`, `suspended`, `deleted`, `deactivated`, ...
        status: Option<String>,
    },
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

    /// The changes a verified commit makes.
    pub fn commit(
        &self,
        commit: &CommitEvent,
        out: &mut Vec<Change>,
        rejected: &mut Vec<Rejected>,
    ) {
        for op in &commit.ops {
            let uri = format!("at://{}/{}/{}", commit.did, op.collection, op.rkey);
            if op.collection == PROFILE {
                if op.rkey != "self" {
                    continue;
                }
                match op.action {
                    Action::Delete => out.push(Change::DeleteProfile {
                        did: commit.did.clone(),
                    }),
                    _ => match record_value(op) {
                        Ok(record) => out.push(Change::Profile(profile(&commit.did, record))),
                        Err(r) => rejected.push(r.at(uri)),
                    },
                }
                continue;
            }
            if !op.collection.starts_with(AC_PREFIX) {
                continue;
            }
            if op.action == Action::Delete {
                out.push(Change::DeleteRecord { uri });
                continue;
            }
            match self.ac_record(commit, op, &uri) {
                Ok(row) => {
                    if row.collection == FOLLOW
                        && let Some(subject) = row.record.get("subject").and_then(Value::as_str)
                    {
                        out.push(Change::Follow {
                            uri: uri.clone(),
                            did: commit.did.clone(),
                            subject: subject.to_owned(),
                            created_at: row.created_at.clone(),
                        });
                    }
                    out.push(Change::Record(row));
                }
                Err(r) => rejected.push(r.at(uri)),
            }
        }
    }

    fn ac_record(
        &self,
        commit: &CommitEvent,
        op: &OpEvent,
        uri: &str,
    ) -> Result<RecordRow, Reject> {
        let cid = op
            .cid
            .clone()
            .ok_or(Reject::new("no_record", "the op has no CID"))?;
        let record = record_value(op)?;
        let validated = self
            .catalog
            .validate_record(&op.collection, &record, Mode::Lenient)
            .map_err(|e| match e {
                ValidationError::UnknownNsid { .. } => Reject::new("unknown_type", e.to_string()),
                e => Reject::new("invalid", e.to_string()),
            })?;
        let record = validated.record;
        let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(RecordRow {
            uri: uri.to_owned(),
            did: commit.did.clone(),
            collection: op.collection.clone(),
            rkey: op.rkey.clone(),
            cid,
            created_at: text("when").or_else(|| text("createdAt")),
            code: text("code"),
            slug: text("slug"),
            repairs: validated.repairs.iter().map(ToString::to_string).collect(),
            record,
        })
    }
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
