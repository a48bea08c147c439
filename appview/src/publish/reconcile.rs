//! Settles records the publishing API inserted as pending that the firehose has not
//! delivered in time: asks the author's PDS (`com.atproto.repo.getRecord`, public) and
//! indexes what it answers (confirmed with the same CID, repaired with another) or
//! removes the record when the PDS does not have it.
//!
//! Why it is needed: the AppView may follow a source that does not carry the account
//! (a relay that does not crawl its PDS yet), may have been down when the commit passed,
//! or the write may have been undone. Without it a pending row would show forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Publisher;
use crate::index::Change;
use crate::store::Store as _;

/// How often the pending records are looked at.
pub const EVERY: Duration = Duration::from_secs(30);
/// How many pending records one round settles at most.
const PER_ROUND: i64 = 100;

/// Settles overdue pending records every [`EVERY`] until `stop` completes.
pub async fn run(publisher: Arc<Publisher>, every: Duration, stop: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = publisher.reconcile_once().await {
                    tracing::error!(error = %e, "reconciling pending publishes failed");
                }
            }
            () = &mut stop => break,
        }
    }
}

impl Publisher {
    /// One round: every pending record older than the configured delay is settled.
    /// Returns how many were.
    pub async fn reconcile_once(&self) -> Result<usize, crate::store::StoreError> {
        let cutoff = atelier_relay::jetstream::now_us()
            - i64::try_from(self.config.confirm_after.as_micros()).unwrap_or(i64::MAX);
        let pending = self.store.pending_records(cutoff, PER_ROUND).await?;
        let mut settled = 0;
        for (uri, _cid) in pending {
            let Some((did, collection, rkey)) = super::http::split_uri(&uri) else {
                continue;
            };
            let change = match self.fetch(did, collection, rkey).await {
                Ok(Some((cid, record))) => {
                    match self
                        .indexer
                        .record_row(did, collection, rkey, &cid, &record)
                    {
                        Ok(row) => {
                            self.metrics.reconciled("found");
                            Change::Record(row)
                        }
                        Err(rejected) => {
                            tracing::warn!(%uri, detail = %rejected.detail, "the PDS's record is not indexable");
                            self.metrics.reconciled("invalid");
                            Change::DeleteRecord { uri: uri.clone() }
                        }
                    }
                }
                Ok(None) => {
                    self.metrics.reconciled("missing");
                    Change::DeleteRecord { uri: uri.clone() }
                }
                Err(reason) => {
                    // Try again next round.
                    tracing::warn!(%uri, %reason, "could not ask the PDS about a pending record");
                    continue;
                }
            };
            self.store.apply(&[change], None).await?;
            self.stats.note_commit();
            settled += 1;
        }
        Ok(settled)
    }

    /// The record at `did/collection/rkey` on its PDS: `Ok(None)` if the PDS says it
    /// does not exist.
    async fn fetch(
        &self,
        did: &str,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<(String, Value)>, String> {
        let doc = self
            .resolver
            .resolve_did(did)
            .await
            .map_err(|e| e.to_string())?;
        let pds = doc
            .pds_endpoint()
            .ok_or_else(|| format!("{did} names no PDS"))?;
        let mut url = url::Url::parse(&format!(
            "{}/xrpc/com.atproto.repo.getRecord",
            pds.trim_end_matches('/')
        ))
        .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("repo", did)
            .append_pair("collection", collection)
            .append_pair("rkey", rkey);
        match self.guard.get_json::<Value>(url.as_str()).await {
            Ok(out) => {
                let cid = out["cid"].as_str().ok_or("getRecord answered no CID")?;
                Ok(Some((cid.to_owned(), out["value"].clone())))
            }
            // The PDS answers 400 RecordNotFound for a record it does not have.
            Err(e) if matches!(e.status(), Some(400 | 404)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}
