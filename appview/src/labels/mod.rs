//! ATProto labels in the AppView: the label type and label sync.
//!
//! - [`label`]: the label (`com.atproto.label.defs#label`, version 1): field checks, the
//!   canonical DAG-CBOR encoding that is signed, verification with the relay's
//!   `PublicKey`, the JSON and CBOR wire forms, and the `subscribeLabels` `#labels` frame.
//!   The control plane's labeler issues labels with this same type (it signs through
//!   [`LabelSigner`]); it lives here because dependencies point `control -> appview`.
//! - [`sync`]: follows labelers' `subscribeLabels` streams, verifies each label against
//!   the labeler's `#atproto_label` key, and stores the current state of each
//!   (`src`, `uri`, `val`) with the source's cursor in one transaction.
//!
//! Applying labels is the store's job: every query leaves out records with a hiding label
//! ([`HIDING_LABELS`](crate::store::HIDING_LABELS)) on the record or its author, and puts
//! the other labels in force on the views (`labels`), for clients to render.
//!
//! **Architecture Invariant:** only verified labels reach the store: signed by the source's
//! current `#atproto_label` key (never `#atproto`), `src` equal to the source's DID, every
//! field valid. Labels from sources that are no longer configured stay stored but do not
//! apply.

mod cbor;
pub mod label;
pub mod sync;

pub use label::{Field, Label, LabelError, LabelSigner, labels_frame};
pub use sync::{LabelSource, LabelStats, LabelSyncConfig, SourceStatus};
