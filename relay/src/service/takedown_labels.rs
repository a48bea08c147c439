//! Account takedowns from labelers: the relay's [`LabelSink`].
//!
//! When `labelers` are configured, label sync ([`crate::labels::sync`]) follows each one's
//! `subscribeLabels` and hands verified labels here. Only account-level behaviour labels
//! matter to a relay: a `!takedown` or `!suspend` label whose subject is a bare DID takes
//! the account down exactly as the admin API's takedown does (its events are refused, an
//! `#account` event with `active: false, status: takendown` goes out); the label's negation
//! lifts it. Record-level labels are left to the AppView: the relay re-serves commits
//! untouched, so it cannot drop one record from a commit without breaking the commit's
//! signature and MST proof.
//!
//! A label takedown is stored with the reason `label <val> from <labeler DID>`, which is
//! what lets it be told apart from an operator's: a negation lifts a takedown only when it
//! was put there by that same labeler and value, and a label never replaces an operator's
//! takedown (nor lifts it). Labels that expired (`exp` in the past) are treated as
//! negations. A takedown whose labeler is no longer configured is lifted at start.
//!
//! Crash safety: each change is first announced (the in-memory set and the `#account`
//! event in the log), then the changes and the labeler's cursor commit in one
//! transaction. A crash in between replays the frame at the next start; the replay finds
//! the takedown not stored and announces it again, so the worst case is a repeated
//! `#account` event, never a missing one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::labels::{Label, LabelSink};

use super::{RelayError, Shared};

/// The label values that take an account down at the relay.
pub(crate) const TAKEDOWN_VALUES: &[&str] = &["!takedown", "!suspend"];

/// The reason stored for a takedown from `src`'s label `val`.
fn reason(src: &str, val: &str) -> String {
    format!("label {val} from {src}")
}

/// The reasons' common beginning, which tells label takedowns from operators'.
const REASON_PREFIX: &str = "label ";

/// The relay's label sink: account takedowns.
#[derive(Debug)]
pub(crate) struct TakedownSink {
    pub(crate) shared: Arc<Shared>,
}

impl TakedownSink {
    /// What `labels` ask for, per account DID: `Some(val)` take down, `None` lift (a
    /// negation or an expired label). The last label for an account in the frame wins.
    fn wanted(labels: &[Label], now_us: i64) -> BTreeMap<String, (String, bool)> {
        let mut wanted = BTreeMap::new();
        for label in labels {
            if !label.uri.starts_with("did:") || !TAKEDOWN_VALUES.contains(&label.val.as_str()) {
                continue;
            }
            let expired = label
                .exp
                .as_deref()
                .and_then(|e| crate::labels::label::datetime_micros(e).ok())
                .is_some_and(|exp| exp <= now_us);
            let apply = !label.is_negation() && !expired;
            wanted.insert(label.uri.clone(), (label.val.clone(), apply));
        }
        wanted
    }
}

impl LabelSink for TakedownSink {
    type Error = RelayError;

    /// Lifts the takedowns of labelers that are no longer configured.
    async fn set_sources(&self, dids: &[String]) -> Result<(), RelayError> {
        let store = &self.shared.store;
        for (did, why) in store.takedowns_with_reason_prefix(REASON_PREFIX).await? {
            let configured = dids
                .iter()
                .any(|src| why.ends_with(&format!(" from {src}")));
            if !configured {
                self.shared.announce_takedown(&did, false).await?;
                store
                    .set_takedown(&did, None, crate::jetstream::now_us())
                    .await?;
            }
        }
        Ok(())
    }

    async fn cursor(&self, src: &str) -> Result<Option<i64>, RelayError> {
        self.shared.store.label_cursor(src).await
    }

    async fn apply(&self, src: &str, labels: &[Label], seq: i64) -> Result<u64, RelayError> {
        let now = crate::jetstream::now_us();
        let mut changes = Vec::new();
        for (did, (val, apply)) in Self::wanted(labels, now) {
            let current = self.shared.store.takedown_reason(&did).await?;
            let ours = reason(src, &val);
            let change = match (apply, current) {
                // Taking down an account nobody has taken down.
                (true, None) => Some(ours),
                // Lifting what this labeler and value put there.
                (false, Some(existing)) if existing == ours => None,
                // Already down (by anyone), or not ours to lift.
                _ => continue,
            };
            self.shared
                .announce_takedown(&did, change.is_some())
                .await?;
            changes.push((did, change));
        }
        self.shared
            .store
            .apply_label_takedowns(src, seq, &changes, now)
            .await?;
        Ok(u64::try_from(changes.len()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_account_takedown_labels_count() {
        let src = "did:plc:labeler";
        let label = |uri: &str, val: &str| Label::new(src, uri, val, "2026-01-01T00:00:00.000Z");
        let labels = vec![
            label("did:plc:a", "!takedown"),
            label("did:plc:b", "!suspend"),
            label("did:plc:c", "!hide"),
            label("at://did:plc:d/computer.aesthetic.painting/x", "!takedown"),
            label("did:plc:e", "!takedown").negated(),
            label("did:plc:f", "!takedown").with_exp("2020-01-01T00:00:00.000Z"),
            label("did:plc:g", "!takedown"),
            label("did:plc:g", "!takedown").negated(),
        ];
        let now = crate::labels::label::datetime_micros("2026-06-01T00:00:00.000Z").unwrap();
        let wanted = TakedownSink::wanted(&labels, now);
        let got: Vec<(&str, &str, bool)> = wanted
            .iter()
            .map(|(did, (val, apply))| (did.as_str(), val.as_str(), *apply))
            .collect();
        assert_eq!(
            got,
            [
                ("did:plc:a", "!takedown", true),
                ("did:plc:b", "!suspend", true),
                ("did:plc:e", "!takedown", false),
                ("did:plc:f", "!takedown", false),
                ("did:plc:g", "!takedown", false),
            ]
        );
        assert_eq!(
            reason(src, "!takedown"),
            "label !takedown from did:plc:labeler"
        );
        assert!(reason(src, "!x").starts_with(REASON_PREFIX));
    }
}
