//! ATProto labels: the label type and label sync, shared by the AppView and the relay.
//!
//! - [`label`]: the label (`com.atproto.label.defs#label`, version 1): field checks, the
//!   canonical DAG-CBOR encoding that is signed, verification with the sync layer's
//!   [`PublicKey`](crate::sync::keys::PublicKey), the JSON and CBOR wire forms, and the
//!   `subscribeLabels` `#labels` frame. The control plane's labeler issues labels with this
//!   same type (it signs through [`LabelSigner`]).
//! - [`sync`]: follows labelers' `subscribeLabels` streams, verifies each label against the
//!   labeler's `#atproto_label` key, and hands the labels that pass to a [`LabelSink`]
//!   together with the frame's `seq`.
//!
//! They live in the relay crate because dependencies point `control -> appview -> relay`:
//! the relay honours account takedowns from a labeler (its sink is
//! `service::takedown_labels`), the AppView hides and annotates records (its sink is the
//! index store), and the control plane issues labels.
//!
//! **Architecture Invariant:** only verified labels reach a sink: signed by the source's
//! current `#atproto_label` key (never `#atproto`), `src` equal to the source's DID, every
//! field valid.

mod cbor;
pub mod label;
pub mod sync;

use std::future::Future;

pub use label::{Field, Label, LabelError, LabelSigner, labels_frame};
pub use sync::{LabelSource, LabelStats, LabelSyncConfig, SourceStatus};

/// Where label sync puts what it receives. A sink keeps, per source, the cursor of the
/// last frame applied, and applies a frame's labels and its cursor **together** (one
/// transaction, or an order that makes a replay harmless), so a restart resumes exactly
/// after the last frame whose labels took effect.
pub trait LabelSink: Send + Sync + 'static {
    /// Why the sink failed; label sync logs it and reconnects from the stored cursor.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Records which sources are configured (labels from others stop applying).
    fn set_sources(&self, dids: &[String]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The `seq` of the last frame applied from `src`, if any.
    fn cursor(&self, src: &str) -> impl Future<Output = Result<Option<i64>, Self::Error>> + Send;

    /// Applies one frame's verified labels from `src` and moves its cursor to `seq`;
    /// returns how many labels took effect.
    fn apply(
        &self,
        src: &str,
        labels: &[Label],
        seq: i64,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}
