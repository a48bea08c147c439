//! Atelier's labeler: signed ATProto labels, stored with a sequence number and served by
//! `com.atproto.label.queryLabels` and `com.atproto.label.subscribeLabels`.
//!
//! Parts, bottom up:
//! - [`label`]: the label type (`com.atproto.label.defs#label`, version 1), field checks
//!   with errors that name the field, the canonical DAG-CBOR encoding, signing (SHA-256,
//!   k256, low-S) and verification with the relay's [`PublicKey`], JSON and CBOR forms.
//!   It lives in the relay crate (`atelier_relay::labels::label`, re-exported by the
//!   AppView and here), because the AppView and the relay verify labels they sync from
//!   labelers.
//! - [`key`]: the labeler's k256 signing key: generated, saved to and loaded from a hex
//!   file (mode 0600), exposed as a Multikey / `did:key` for its DID document.
//! - [`store`]: labels in SQLite, `seq` as the stream cursor; negations are new rows, and
//!   each (`src`, `uri`, `val`) has one current row.
//! - [`Labeler`] (in `handle`): signs, stores and announces labels.
//! - [`service`]: the XRPC routes (`router`, `serve`) and the `#labels` frame.
//!
//! Design: the store is the only place labels flow through. [`Labeler::apply`] signs a
//! label and inserts it (one at a time, so seq order is issue order and `cts` never goes
//! backwards for a label), then publishes the new highest seq on a `watch` channel. A
//! `subscribeLabels` stream keeps its own position and reads the store after it, a page at a
//! time, whether it is replaying a cursor from long ago or following live; when the store
//! has nothing more it waits for the highest seq to change. There is no in-memory queue of
//! labels, so nothing to overflow, no slow-consumer policy beyond a send timeout, and no
//! seam between replay and live where a label could be lost or sent twice.
//!
//! **Architecture Invariant:** a label reaches subscribers only by being read from the
//! store after it is committed; the in-memory signal carries a sequence number, never a
//! label. Live delivery and replay are the same read, so they cannot disagree.
//!
//! **Architecture Invariant:** labels are issued only through [`Labeler::apply`]: it signs
//! with the labeler's key and `src` = its DID, serializes issuing (seq order is issue
//! order, `cts` never goes backwards for a label) and is what wakes the streams. A row
//! written to the store any other way is only streamed when the next issued label wakes
//! them. The store itself accepts any source's labels (`queryLabels`' `sources` filter
//! picks among them), but verified labels from other labelers (label sync) belong in a
//! store of their own.
//!
//! The labeler knows nothing of the admin console, reports or the AppView: it issues the
//! labels it is asked to. What is left to wire: its DID and DID document (`#atproto_label`
//! key, `#atproto_labeler` service), the `labeler` config section, the declaration record.
//!
//! [`PublicKey`]: atelier_relay::sync::keys::PublicKey

mod handle;
pub mod identity;
pub mod key;
pub mod service;
pub mod store;

pub use atelier_appview::labels::label;
pub use handle::{Labeler, LabelerError};
pub use key::{KeyFileError, SigningKey};
pub use label::{Field, Label, LabelError};
pub use service::{labels_frame, router, serve};
pub use store::{LabelQuery, LabelStore, StoreError, StoredLabel, UriPattern};
