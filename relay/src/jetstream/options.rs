//! Subscriber options (jetstream.md §1, §2): the `/subscribe` query string, the
//! `options_update` messages a client may send later, and the per-event filter.
//!
//! Parsing happens before the WebSocket upgrade; an [`OptionsError`] displays as the legacy
//! HTTP 400 body. An [`UpdateError`] displays as the legacy close reason.

use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;

use super::event::JetstreamEvent;
use crate::lexicons::syntax::{self, Format};

/// At most this many `wantedCollections` patterns.
pub const MAX_WANTED_COLLECTIONS: usize = 100;
/// At most this many distinct `wantedDids`.
pub const MAX_WANTED_DIDS: usize = 10_000;
/// Client messages longer than this are ignored (as legacy does).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 10_000_000;

/// Why a subscription request is refused with HTTP 400; `Display` is the legacy body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `cursor` is not a base-10 int64.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A `wantedCollections` value that is neither a `.*` prefix nor a valid NSID.
    #[error("invalid subscriber options: invalid collection: {0}")]
    InvalidCollection(String),
    /// More than [`MAX_WANTED_COLLECTIONS`] patterns.
    #[error("invalid subscriber options: too many wanted collections")]
    TooManyCollections,
    /// A `wantedDids` value that is not a valid DID (legacy's body does not name it).
    #[error("invalid subscriber options")]
    InvalidDid(String),
    /// More than [`MAX_WANTED_DIDS`] distinct DIDs.
    #[error("invalid subscriber options: too many wanted DIDs")]
    TooManyDids,
}

/// Why an `options_update` message ends the connection; `Display` is the legacy close reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The message or its payload is not the expected JSON.
    #[error("failed to unmarshal subscriber sourced message: {0}")]
    BadJson(String),
    /// The payload's options are invalid.
    #[error("failed to parse subscriber options: {0}")]
    Invalid(#[source] OptionsError),
}

/// Which commit collections a subscriber wants; empty means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionFilter {
    /// Exact NSIDs.
    pub exact: BTreeSet<String>,
    /// Prefixes from `….*` patterns, with only the `*` stripped (`app.bsky.graph.`).
    pub prefixes: BTreeSet<String>,
}

impl CollectionFilter {
    /// Parses `wantedCollections` values (repeated keys, never comma-split).
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Self, OptionsError> {
        if values.len() > MAX_WANTED_COLLECTIONS {
            return Err(OptionsError::TooManyCollections);
        }
        let mut filter = CollectionFilter::default();
        for value in values {
            let value = value.as_ref();
            if let Some(head) = value.strip_suffix(".*") {
                // Only the `*` goes: `app.bsky.graph.*` must not match `app.bsky.graph`.
                filter.prefixes.insert(format!("{head}."));
            } else if syntax::validate(Format::Nsid, value).is_ok() {
                filter.exact.insert(value.to_owned());
            } else {
                return Err(OptionsError::InvalidCollection(value.to_owned()));
            }
        }
        Ok(filter)
    }

    /// Whether no filter applies.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether `collection` passes (always, when the filter is empty).
    pub fn matches(&self, collection: &str) -> bool {
        self.is_empty()
            || self.exact.contains(collection)
            || self
                .prefixes
                .iter()
                .any(|p| collection.starts_with(p.as_str()))
    }
}

/// Parses `wantedDids` values: each a valid DID, at most [`MAX_WANTED_DIDS`] distinct.
fn parse_dids<S: AsRef<str>>(values: &[S]) -> Result<HashSet<String>, OptionsError> {
    let mut dids = HashSet::new();
    for value in values {
        let value = value.as_ref();
        if syntax::validate(Format::Did, value).is_err() {
            return Err(OptionsError::InvalidDid(value.to_owned()));
        }
        dids.insert(value.to_owned());
        if dids.len() > MAX_WANTED_DIDS {
            return Err(OptionsError::TooManyDids);
        }
    }
    Ok(dids)
}

/// Legacy's reading of `maxMessageSizeBytes`: empty, garbage or negative means 0 (no limit).
fn parse_max_size(value: &str) -> u64 {
    value
        .parse::<i64>()
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// One subscriber's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// `wantedCollections`; applies to commits only.
    pub collections: CollectionFilter,
    /// `wantedDids`; empty means all. Applies to every kind.
    pub dids: HashSet<String>,
    /// `cursor` in unix microseconds, inclusive; `None` is live. See [`Self::start`].
    pub cursor: Option<i64>,
    /// zstd requested (`compress=true` or a `Socket-Encoding` header with `zstd`).
    pub compress: bool,
    /// `maxMessageSizeBytes`: larger events (uncompressed JSON) are skipped; 0 is no limit.
    pub max_message_size: u64,
    /// `requireHello=true`: send nothing until the first valid `options_update`.
    pub require_hello: bool,
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Live events only.
    Live,
    /// Replay every retained event with `time_us >= cursor` (the log starts at its oldest
    /// retained event when the cursor is older), then go live without a gap.
    From(i64),
}

impl SubscribeOptions {
    /// Parses the query string of `/subscribe` (without the `?`). Unknown keys are ignored;
    /// for single-valued keys the first occurrence counts.
    pub fn from_query(query: &str) -> Result<Self, OptionsError> {
        let mut collections = Vec::new();
        let mut dids = Vec::new();
        let mut cursor = None;
        let mut compress = None;
        let mut max_size = None;
        let mut require_hello = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "wantedCollections" => collections.push(value),
                "wantedDids" => dids.push(value),
                "cursor" => {
                    cursor.get_or_insert(value);
                }
                "compress" => {
                    compress.get_or_insert(value);
                }
                "maxMessageSizeBytes" => {
                    max_size.get_or_insert(value);
                }
                "requireHello" => {
                    require_hello.get_or_insert(value);
                }
                _ => {}
            }
        }
        let cursor = match cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<i64>()
                    .map_err(|_| OptionsError::InvalidCursor(text.to_owned()))?,
            ),
        };
        Ok(SubscribeOptions {
            collections: CollectionFilter::parse(&collections)?,
            dids: parse_dids(&dids)?,
            cursor,
            compress: compress.as_deref() == Some("true"),
            max_message_size: max_size.as_deref().map_or(0, parse_max_size),
            require_hello: require_hello.as_deref() == Some("true"),
        })
    }

    /// Applies the `Socket-Encoding` request header: any value containing `zstd` turns
    /// compression on.
    pub fn apply_socket_encoding(&mut self, header: &str) {
        if header.contains("zstd") {
            self.compress = true;
        }
    }

    /// Where to start, given the time now: a cursor later than now means live, no error;
    /// zero and negative cursors replay everything retained.
    pub fn start(&self, now_us: i64) -> Start {
        match self.cursor {
            Some(cursor) if cursor <= now_us => Start::From(cursor),
            _ => Start::Live,
        }
    }

    /// Replaces both filters and the size limit with an update's; cursor and compression
    /// stay as they were.
    pub fn apply(&mut self, update: OptionsUpdate) {
        self.collections = update.collections;
        self.dids = update.dids;
        self.max_message_size = update.max_message_size;
    }

    /// Whether `event` passes the collection filter (commits only).
    pub fn wants_collection(&self, event: &JetstreamEvent) -> bool {
        match &event.collection {
            Some(collection) => self.collections.matches(collection),
            None => true,
        }
    }

    /// Whether `event` passes the DID filter (every kind).
    pub fn wants_did(&self, event: &JetstreamEvent) -> bool {
        self.dids.is_empty() || self.dids.contains(&event.did)
    }

    /// Whether `event`'s uncompressed JSON is within `maxMessageSizeBytes`.
    pub fn fits(&self, event: &JetstreamEvent) -> bool {
        self.max_message_size == 0 || event.json.len() as u64 <= self.max_message_size
    }

    /// Whether to send `event`: both filters (AND) and the size limit.
    pub fn matches(&self, event: &JetstreamEvent) -> bool {
        self.wants_collection(event) && self.wants_did(event) && self.fits(event)
    }
}

/// A valid `options_update`: the new filters and size limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptionsUpdate {
    /// Replaces the collection filter (empty turns it off).
    pub collections: CollectionFilter,
    /// Replaces the DID filter (empty turns it off).
    pub dids: HashSet<String>,
    /// Replaces `maxMessageSizeBytes` (missing or negative: 0, no limit).
    pub max_message_size: u64,
}

/// The envelope of a client message.
#[derive(Deserialize)]
struct Message {
    /// A missing `type` reads as empty (ignored), as in Go.
    #[serde(rename = "type", default)]
    kind: String,
    /// `None` when missing or `null`.
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// An `options_update` payload as sent.
#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "wantedCollections", default)]
    collections: Option<Vec<String>>,
    #[serde(rename = "wantedDids", default)]
    dids: Option<Vec<String>>,
    #[serde(rename = "maxMessageSizeBytes", default)]
    max_message_size: Option<i64>,
}

impl OptionsUpdate {
    /// Reads a text frame from the client.
    ///
    /// `Ok(None)`: not an update (another `type`, or longer than
    /// [`MAX_CLIENT_MESSAGE_BYTES`]), to be ignored. `Err`: bad JSON or invalid options, to
    /// be answered by closing the socket with the error as reason.
    pub fn from_message(text: &str) -> Result<Option<Self>, UpdateError> {
        if text.len() > MAX_CLIENT_MESSAGE_BYTES {
            return Ok(None);
        }
        let message: Message =
            serde_json::from_str(text).map_err(|e| UpdateError::BadJson(e.to_string()))?;
        if message.kind != "options_update" {
            return Ok(None);
        }
        // Go decodes a `null` payload as an absent one, which then fails to parse.
        let payload = message
            .payload
            .ok_or_else(|| UpdateError::BadJson("options_update without a payload".into()))?;
        let payload: Payload =
            serde_json::from_value(payload).map_err(|e| UpdateError::BadJson(e.to_string()))?;
        let collections = payload.collections.unwrap_or_default();
        let dids = payload.dids.unwrap_or_default();
        Ok(Some(OptionsUpdate {
            collections: CollectionFilter::parse(&collections).map_err(UpdateError::Invalid)?,
            dids: parse_dids(&dids).map_err(UpdateError::Invalid)?,
            max_message_size: payload
                .max_message_size
                .map_or(0, |n| u64::try_from(n).unwrap_or(0)),
        }))
    }
}
