//! Auto-flags: AC's safety filter ([`atelier_appview::safety`]) run on the text of AC
//! records as they are published, each match becoming a report (source `autoflag`) in the
//! unreviewed queue.
//!
//! The flagger follows a `subscribeRepos` stream (in `atelier up`, the one the AppView
//! indexes: the namespace relay, or the bundled PDS) through the sync layer, verified
//! unless the source is trusted, and reads the text fields of the record types that carry
//! text ([`text_fields`]). A record whose text the filter matches is reported with the
//! masked text as the reason, so moderators see where the match is without the queue
//! repeating it.
//!
//! Delivery is at least once: the cursor is stored after the reports of the events before
//! it, every few seconds and at the end, and a replayed event re-reports nothing because
//! the store keeps one auto-flag per subject version and match
//! ([`ModerationStore::add_report`]).

use std::time::Duration;

use atelier_appview::safety::SafetyFilter;
use atelier_relay::sync::client::ClientConfig;
use atelier_relay::sync::frame::Action as OpAction;
use atelier_relay::sync::stream::{SyncConfig, SyncEvent, SyncStream};
use atelier_relay::sync::verify::VerifyMode;
use serde_json::Value;
use tracing::{info, warn};

use super::{ModerationStore, NewReport, ReasonType, SubjectRef};

/// The reason type auto-flags carry.
pub const REASON: &str = "com.atproto.moderation.defs#reasonRude";
/// How often the stream cursor is stored.
const CURSOR_EVERY: Duration = Duration::from_secs(2);
/// The most characters of masked text a report quotes.
const QUOTE_CHARS: usize = 500;

/// What the flagger follows.
#[derive(Debug, Clone)]
pub struct AutoflagConfig {
    /// The `subscribeRepos` URL.
    pub source: String,
    /// Skip verification (a source the operator runs).
    pub trusted: bool,
    /// The PLC directory for verifying signatures.
    pub plc_url: String,
    /// Allow loopback hosts (the sandbox).
    pub allow_loopback: bool,
}

/// Why the flagger stopped.
#[derive(Debug, thiserror::Error)]
pub enum AutoflagError {
    /// The stream could not be set up.
    #[error("auto-flag source {source_url}: {reason}")]
    Source {
        /// The source.
        source_url: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

pub use atelier_appview::index::text_fields;

/// The auto-flag for `record` (JSON) of `collection`, if the filter matches any of its
/// text: the field and its masked text, cut to [`QUOTE_CHARS`].
pub fn flag(filter: &SafetyFilter, collection: &str, record: &Value) -> Option<String> {
    text_fields(collection).iter().find_map(|field| {
        let text = record.get(*field)?.as_str()?;
        if filter.is_clean(text) {
            return None;
        }
        let masked: String = filter.mask(text).chars().take(QUOTE_CHARS).collect();
        Some(format!("safety filter, {field}: {masked}"))
    })
}

/// Follows `config.source` until `shutdown` resolves, reporting what the filter matches.
///
/// # Errors
/// When the stream cannot be set up or the store fails.
pub async fn run(
    config: AutoflagConfig,
    store: ModerationStore,
    filter: SafetyFilter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AutoflagError> {
    let source_error = |reason: String| AutoflagError::Source {
        source_url: config.source.clone(),
        reason,
    };
    let cursor = store.stream_cursor(&config.source).await?;
    let mut client = ClientConfig::new(&config.source).map_err(|e| source_error(e.to_string()))?;
    client.cursor = cursor;
    let (guard, resolver) =
        atelier_appview::ingest::identity(&config.plc_url, config.allow_loopback)
            .map_err(source_error)?;
    let mut sync = SyncConfig::new(client, resolver, Some(guard));
    if config.trusted {
        sync.mode = VerifyMode::Trusted;
    }
    let mut stream = SyncStream::start(sync, shutdown).map_err(|e| source_error(e.to_string()))?;
    info!(source = %config.source, ?cursor, "auto-flagger following");
    let reason = ReasonType::parse(REASON).map_err(|e| source_error(e.to_string()))?;
    let mut pending: Option<i64> = None;
    let mut saved = tokio::time::Instant::now();
    loop {
        let event = tokio::select! {
            event = stream.recv() => event,
            () = tokio::time::sleep(CURSOR_EVERY) => {
                save(&store, &config.source, &mut pending).await?;
                continue;
            }
        };
        let Some(event) = event else { break };
        if let SyncEvent::Commit(commit) = &event {
            for op in &commit.ops {
                if op.action == OpAction::Delete || text_fields(&op.collection).is_empty() {
                    continue;
                }
                let Some(bytes) = &op.record else { continue };
                let Some(json) = atelier_relay::jetstream::record::record_json(bytes)
                    .ok()
                    .and_then(|j| serde_json::from_slice::<Value>(&j).ok())
                else {
                    continue;
                };
                let Some(quote) = flag(&filter, &op.collection, &json) else {
                    continue;
                };
                let uri = format!("at://{}/{}/{}", commit.did, op.collection, op.rkey);
                match SubjectRef::record(&uri, op.cid.as_deref()) {
                    Ok(subject) => {
                        store
                            .add_report(NewReport::auto_flag(subject, Some(reason.clone()), &quote))
                            .await?;
                        info!(%uri, "auto-flagged");
                    }
                    Err(e) => warn!(%uri, error = %e, "cannot flag this record"),
                }
            }
            pending = Some(commit.seq);
        } else if let Some(seq) = event_seq(&event) {
            pending = Some(seq);
        }
        if saved.elapsed() >= CURSOR_EVERY {
            save(&store, &config.source, &mut pending).await?;
            saved = tokio::time::Instant::now();
        }
    }
    save(&store, &config.source, &mut pending).await?;
    Ok(())
}

/// The sequence number of a non-commit event that has one.
fn event_seq(event: &SyncEvent) -> Option<i64> {
    match event {
        SyncEvent::Identity { seq, .. }
        | SyncEvent::Account { seq, .. }
        | SyncEvent::Sync { seq, .. } => Some(*seq),
        _ => None,
    }
}

async fn save(
    store: &ModerationStore,
    source: &str,
    pending: &mut Option<i64>,
) -> Result<(), AutoflagError> {
    if let Some(seq) = pending.take() {
        store.set_stream_cursor(source, seq).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_records_are_flagged_with_the_masked_text() {
        let filter = SafetyFilter::default();
        let mood = json!({"mood": "what the fuck is this"});
        let quote = flag(&filter, "computer.aesthetic.mood", &mood).expect("flagged");
        assert_eq!(quote, "safety filter, mood: what the ____ is this");
        assert_eq!(
            flag(&filter, "computer.aesthetic.mood", &json!({"text": "shit"})).as_deref(),
            Some("safety filter, text: ____")
        );
        assert!(
            flag(
                &filter,
                "computer.aesthetic.mood",
                &json!({"mood": "lovely day"})
            )
            .is_none()
        );
        assert!(
            flag(
                &filter,
                "computer.aesthetic.kidlisp",
                &json!({"source": "(wipe blue)"})
            )
            .is_none()
        );
        // Collections without text are never read.
        assert!(
            flag(
                &filter,
                "computer.aesthetic.painting",
                &json!({"slug": "fuck"})
            )
            .is_none()
        );
    }
}
