//! ATProto labels in the AppView: the label type and label sync (both in the relay crate,
//! [`atelier_relay::labels`], re-exported here) and the AppView's [`LabelSink`], the index
//! store.
//!
//! Applying labels is the store's job: every query leaves out records with a hiding label
//! ([`HIDING_LABELS`](crate::store::HIDING_LABELS)) on the record or its author, and puts
//! the other labels in force on the views (`labels`), for clients to render.
//!
//! **Architecture Invariant:** only verified labels reach the store (label sync checks
//! them). Labels from sources that are no longer configured stay stored but do not apply.

use std::sync::Arc;

pub use atelier_relay::labels::{
    Field, Label, LabelError, LabelSigner, LabelSink, LabelSource, LabelStats, LabelSyncConfig,
    SourceStatus, label, labels_frame, sync,
};

use crate::store::{Store, StoreError};

/// The index store as label sync's sink: the labels in force per (`src`, `uri`, `val`) and
/// each source's cursor, written in one transaction ([`Store::apply_labels`]).
#[derive(Debug)]
pub struct StoreSink<S>(pub Arc<S>);

impl<S: Store> LabelSink for StoreSink<S> {
    type Error = StoreError;

    async fn set_sources(&self, dids: &[String]) -> Result<(), StoreError> {
        self.0.set_label_sources(dids).await
    }

    async fn cursor(&self, src: &str) -> Result<Option<i64>, StoreError> {
        self.0.label_cursor(src).await
    }

    async fn apply(&self, src: &str, labels: &[Label], seq: i64) -> Result<u64, StoreError> {
        self.0.apply_labels(src, labels, seq).await
    }
}
