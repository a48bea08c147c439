//! [`Labeler`]: the handle the rest of Atelier (the admin console, tests) issues labels
//! through. It owns the labeler's DID, its signing key and its store; [`Labeler::apply`]
//! signs a label, stores it and wakes the `subscribeLabels` streams.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use atelier_relay::lexicons::syntax::{self, Format};
use atelier_relay::sync::keys::PublicKey;
use tokio::sync::{Mutex, watch};

use super::key::SigningKey;
use super::label::{Label, LabelError, datetime_micros, format_datetime};
use super::store::{LabelStore, StoreError, StoredLabel};

/// Why a label could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum LabelerError {
    /// The labeler's own DID is not a DID.
    #[error("labeler DID {0:?} is not a valid DID")]
    InvalidDid(String),
    /// The label is invalid (the error names the field).
    #[error(transparent)]
    Label(#[from] LabelError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The labeler: cheap to clone, shared by the HTTP service and whoever issues labels.
#[derive(Debug, Clone)]
pub struct Labeler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The labeler's DID: every label's `src`.
    did: String,
    /// The `#atproto_label` key.
    key: SigningKey,
    /// `did:key` of `key`, stored with every label it signs.
    key_id: String,
    store: LabelStore,
    /// Held while a label is signed and stored: labels are issued one at a time, so each
    /// one's `cts` is chosen knowing the label it replaces, and seq order is issue order.
    issuing: Mutex<()>,
    /// The highest seq stored. Streams wait for it to change, then read the store: it
    /// carries a number, never labels.
    latest: watch::Sender<i64>,
    /// Set by [`Labeler::shutdown`]: streams close.
    stopping: watch::Sender<bool>,
}

impl Labeler {
    /// A labeler issuing labels as `did`, signed with `key`, kept in `store`.
    pub async fn new(
        did: impl Into<String>,
        key: SigningKey,
        store: LabelStore,
    ) -> Result<Labeler, LabelerError> {
        let did = did.into();
        if syntax::validate(Format::Did, &did).is_err() {
            return Err(LabelerError::InvalidDid(did));
        }
        let latest = store.latest_seq().await?;
        let key_id = key.did_key();
        Ok(Labeler {
            inner: Arc::new(Inner {
                did,
                key,
                key_id,
                store,
                issuing: Mutex::new(()),
                latest: watch::Sender::new(latest),
                stopping: watch::Sender::new(false),
            }),
        })
    }

    /// Signs, stores and publishes a label on `uri` (an `at://` URI or a DID), or with
    /// `neg` its negation, which retracts the current `val` label on `uri`.
    ///
    /// `cts` is now, or one millisecond after the label it replaces if the clock says
    /// otherwise: the spec orders labels of the same (`src`, `uri`, `val`) by `cts`.
    pub async fn apply(
        &self,
        uri: &str,
        cid: Option<&str>,
        val: &str,
        neg: bool,
        exp: Option<&str>,
    ) -> Result<StoredLabel, LabelerError> {
        let inner = &*self.inner;
        let _issuing = inner.issuing.lock().await;
        let mut cts_us = now_micros().div_euclid(1000) * 1000;
        if let Some(previous) = inner.store.current(&inner.did, uri, val).await?
            && let Ok(previous_us) = datetime_micros(&previous.label.cts)
            && previous_us >= cts_us
        {
            cts_us = (previous_us.div_euclid(1000) + 1) * 1000;
        }
        let mut label = Label::new(&inner.did, uri, val, format_datetime(cts_us));
        label.cid = cid.map(str::to_owned);
        label.exp = exp.map(str::to_owned);
        if neg {
            label = label.negated();
        }
        let label = label.sign(&inner.key)?;
        let seq = inner.store.insert(&label, Some(&inner.key_id)).await?;
        inner.latest.send_replace(seq);
        Ok(StoredLabel { seq, label })
    }

    /// The labeler's DID (every label's `src`).
    pub fn did(&self) -> &str {
        &self.inner.did
    }

    /// The public half of the signing key, for the DID document's `#atproto_label`
    /// method and for verifying.
    pub fn public_key(&self) -> &PublicKey {
        self.inner.key.public_key()
    }

    /// The store, for reads.
    pub fn store(&self) -> &LabelStore {
        &self.inner.store
    }

    /// The highest seq issued so far.
    pub fn latest_seq(&self) -> i64 {
        *self.inner.latest.borrow()
    }

    /// Closes every `subscribeLabels` stream (after its current frame) and refuses none of
    /// the other requests; call it when the service stops.
    pub fn shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// A receiver of the highest seq, marked changed whenever a label is stored.
    pub(crate) fn watch_latest(&self) -> watch::Receiver<i64> {
        self.inner.latest.subscribe()
    }

    /// A receiver of the stop flag.
    pub(crate) fn watch_stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }
}

/// Microseconds since the epoch, now.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
