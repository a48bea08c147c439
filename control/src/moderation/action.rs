//! Moderation actions and their executor, [`Moderation::act`]: one action on one subject
//! or many (a bulk action), by a named console user, with an audit entry per subject.
//!
//! Execution, after every check has passed (a refused action does nothing at all):
//! - Actions that only touch the moderation store (acknowledge, escalate, comment, assign,
//!   mute and unmute a reporter) run in **one** transaction for all subjects: every effect
//!   and every audit entry commit together, or nothing does.
//! - Actions that issue labels (apply or negate a label, take down, restore) issue one label
//!   per subject through [`Labeler::apply`], which commits to the labeler's own database,
//!   so they cannot share a transaction across subjects. Each subject gets its own
//!   transaction, opened **before** the label is issued and committed right after: the
//!   subject row is written first (taking the write lock), then the label is issued, then
//!   the queue state, the label mirror and the audit entry (with the label's seq) are
//!   written and committed. If the labeler fails, the transaction rolls back and that
//!   subject is untouched.
//!
//! **A bulk label action stops at the first failure.** Subjects before it are done, each
//! with its audit entry; the failing subject gets a `failed` audit entry naming the error
//! and the subjects not attempted; the rest are left alone. The caller gets
//! [`ActError::Interrupted`] with all three lists and can retry the rest. Labeler failures
//! are failures of its database, not of one subject (values and subjects were checked
//! first), so carrying on would only fail again.
//!
//! The one window left is the commit of the moderation transaction after the label was
//! issued (a disk failing between two local SQLite writes). Then the label exists with no
//! `done` entry: the error says so with the label's seq ([`StepError::Unrecorded`]), the
//! `failed` entry records the seq when it can be written, and it is logged at error level
//! either way; the labeler's own store also keeps the label with its time.
//!
//! Labels name subjects by URI or DID without a CID, so they cover every version of a
//! record: a moderator judges the record, and editing it must not shed a takedown.
//!
//! Who may do what is the console's business (it checks roles and, for moderators limited
//! to some label values, [`Action::label_value`]); the executor records who did it.
//!
//! [`Labeler::apply`]: crate::labeler::Labeler::apply

use std::collections::HashSet;

use serde_json::{Value, json};

use super::Moderation;
use super::store::audit::{NewEntry, Outcome, details};
use super::store::{QueueState, StateChange, StoreError, SubjectRow, WriteTx};
use super::subject::{SubjectKind, SubjectRef};
use crate::labeler::label::check_value;
use crate::labeler::{LabelError, LabelerError, StoredLabel};

/// The label value of a takedown.
pub const TAKEDOWN: &str = "!takedown";
/// The most subjects one action may name.
pub const MAX_SUBJECTS: usize = 1000;
/// The longest note or comment, in bytes (the lexicon's limit for report reasons).
pub const MAX_TEXT_BYTES: usize = 20_000;

/// What a moderator does to the selected subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Apply a label (lowercase value, optionally `!`-prefixed; not `!takedown`, which is
    /// [`Action::Takedown`]). Resolves the subject.
    Label {
        /// The label value.
        value: String,
    },
    /// Negate a label moderation applied earlier. Resolves the subject.
    NegateLabel {
        /// The label value.
        value: String,
    },
    /// Take the subject down: a `!takedown` label. Resolves the subject.
    Takedown,
    /// Undo a takedown: the `!takedown` label's negation. Resolves the subject.
    Restore,
    /// Resolve without any other effect.
    Acknowledge,
    /// Send up for a second opinion (the escalated queue).
    Escalate,
    /// Add a comment.
    Comment {
        /// The comment.
        text: String,
    },
    /// Assign to a moderator, or to nobody.
    Assign {
        /// The console user name, `None` to unassign.
        moderator: Option<String>,
    },
    /// Mute a reporter (the subjects are reporters' accounts): their later reports are kept
    /// but raise nothing.
    MuteReporter,
    /// Unmute a reporter.
    UnmuteReporter,
}

impl Action {
    /// The action's name in the audit log.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Label { .. } => "label",
            Action::NegateLabel { .. } => "negate-label",
            Action::Takedown => "takedown",
            Action::Restore => "restore",
            Action::Acknowledge => "acknowledge",
            Action::Escalate => "escalate",
            Action::Comment { .. } => "comment",
            Action::Assign { .. } => "assign",
            Action::MuteReporter => "mute-reporter",
            Action::UnmuteReporter => "unmute-reporter",
        }
    }

    /// The label value the action applies or negates, if it issues a label (`!takedown`
    /// for takedown and restore): what a permission limited to some values checks.
    pub fn label_value(&self) -> Option<&str> {
        self.label_effect().map(|(value, _)| value)
    }

    /// The label the action issues: its value and whether it is a negation.
    fn label_effect(&self) -> Option<(&str, bool)> {
        match self {
            Action::Label { value } => Some((value, false)),
            Action::NegateLabel { value } => Some((value, true)),
            Action::Takedown => Some((TAKEDOWN, false)),
            Action::Restore => Some((TAKEDOWN, true)),
            _ => None,
        }
    }

    /// The queue the action moves its subjects to, if any.
    fn target_state(&self) -> Option<QueueState> {
        match self {
            Action::Label { .. }
            | Action::NegateLabel { .. }
            | Action::Takedown
            | Action::Restore
            | Action::Acknowledge => Some(QueueState::Resolved),
            Action::Escalate => Some(QueueState::Escalated),
            Action::Comment { .. }
            | Action::Assign { .. }
            | Action::MuteReporter
            | Action::UnmuteReporter => None,
        }
    }

    /// Whether the subjects are reporters rather than queue subjects.
    fn on_reporters(&self) -> bool {
        matches!(self, Action::MuteReporter | Action::UnmuteReporter)
    }

    /// The checks that need nothing but the action itself.
    fn check(&self) -> Result<(), ActError> {
        match self {
            Action::Label { value } | Action::NegateLabel { value } => {
                check_value(value).map_err(ActError::InvalidLabel)?;
                if value == TAKEDOWN {
                    let instead = if matches!(self, Action::Label { .. }) {
                        "takedown"
                    } else {
                        "restore"
                    };
                    return Err(ActError::ReservedLabel { instead });
                }
                Ok(())
            }
            Action::Comment { text } if text.trim().is_empty() => Err(ActError::EmptyComment),
            Action::Comment { text } => check_length("comment", text),
            Action::Assign {
                moderator: Some(name),
            } if name.trim().is_empty() => Err(ActError::EmptyAssignee),
            _ => Ok(()),
        }
    }
}

/// Why an action was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The acting user's name is empty.
    #[error("the acting user's name is empty")]
    NoActor,
    /// No subjects were selected.
    #[error("no subjects selected")]
    NoSubjects,
    /// More subjects than [`MAX_SUBJECTS`].
    #[error("{count} subjects selected, at most {MAX_SUBJECTS} per action")]
    TooManySubjects {
        /// How many were selected.
        count: usize,
    },
    /// The label value is not one Atelier issues.
    #[error("invalid label value: {0}")]
    InvalidLabel(LabelError),
    /// `!takedown` given to the label actions.
    #[error("\"!takedown\" is applied and negated by the {instead} action")]
    ReservedLabel {
        /// The action to use.
        instead: &'static str,
    },
    /// A comment with no text.
    #[error("the comment is empty")]
    EmptyComment,
    /// An assignment to an empty name.
    #[error("the moderator's name is empty")]
    EmptyAssignee,
    /// A note or comment longer than [`MAX_TEXT_BYTES`].
    #[error("the {what} is {bytes} bytes, more than {MAX_TEXT_BYTES}")]
    TooLong {
        /// `note` or `comment`.
        what: &'static str,
        /// Its length.
        bytes: usize,
    },
    /// A reporter action on a record.
    #[error("{action} applies to accounts; {uri} is a record")]
    AccountsOnly {
        /// The action's name.
        action: &'static str,
        /// The record.
        uri: String,
    },
    /// Negating (or restoring) a label moderation has not applied.
    #[error("{uri} has no {value:?} label to negate")]
    NotApplied {
        /// The subject.
        uri: String,
        /// The label value.
        value: String,
    },
    /// The labeler could not be asked what is applied; nothing was done.
    #[error("reading the current labels failed: {0}")]
    Labeler(#[from] LabelerError),
    /// The moderation store failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A label action stopped at `failed` (see the module docs).
    #[error(
        "stopped at {} ({source}): {} done, {} not attempted",
        failed.uri(), done.len(), not_attempted.len()
    )]
    Interrupted {
        /// The subjects done, in order, each with its audit entry.
        done: Vec<ActedOn>,
        /// The subject the action failed on.
        failed: SubjectRef,
        /// The subjects after it, untouched.
        not_attempted: Vec<SubjectRef>,
        /// Whether the `failed` audit entry was written.
        failure_logged: bool,
        /// What failed.
        #[source]
        source: Box<StepError>,
    },
}

/// Why one subject of a label action failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The labeler failed; no label was issued.
    #[error("the labeler failed: {0}")]
    Labeler(#[from] LabelerError),
    /// The moderation store failed before the label was issued; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The label was issued but its audit entry and queue update did not commit.
    #[error("label seq {seq} was issued but recording it failed: {source}")]
    Unrecorded {
        /// The issued label's seq in the labeler's store.
        seq: i64,
        /// Why recording failed.
        source: StoreError,
    },
}

/// What an action did to one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActedOn {
    /// The subject.
    pub subject: SubjectRef,
    /// Its audit entry.
    pub audit_id: i64,
    /// The label issued, for label actions.
    pub label: Option<StoredLabel>,
}

/// What a completed action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acted {
    /// The audit batch its entries share.
    pub batch: String,
    /// Each subject, in the order given (duplicates removed).
    pub subjects: Vec<ActedOn>,
}

/// The parts of an action every step needs.
#[derive(Debug, Clone, Copy)]
struct Context<'a> {
    actor: &'a str,
    action: &'a Action,
    note: Option<&'a str>,
    batch: &'a str,
}

impl Context<'_> {
    fn entry<'a>(
        &'a self,
        subject: &'a SubjectRef,
        outcome: Outcome,
        details: Value,
    ) -> NewEntry<'a> {
        NewEntry {
            actor: self.actor,
            action: self.action.name(),
            outcome,
            batch: self.batch,
            subject,
            details,
            note: self.note,
        }
    }
}

impl Moderation {
    /// Performs `action` on `subjects` as the console user `actor`, with an optional
    /// `note` (why) recorded in each audit entry. See the module docs for the guarantees.
    pub async fn act(
        &self,
        actor: &str,
        subjects: &[SubjectRef],
        action: &Action,
        note: Option<&str>,
    ) -> Result<Acted, ActError> {
        let subjects = self.check(actor, subjects, action, note).await?;
        let batch = format!("{:032x}", rand::random::<u128>());
        let context = Context {
            actor,
            action,
            note,
            batch: &batch,
        };
        let subjects = match action.label_effect() {
            Some((value, negate)) => self.label_each(context, &subjects, value, negate).await?,
            None => self.record_all(context, &subjects).await?,
        };
        Ok(Acted { batch, subjects })
    }

    /// Every check, before anything is done; returns the subjects without duplicates.
    async fn check(
        &self,
        actor: &str,
        subjects: &[SubjectRef],
        action: &Action,
        note: Option<&str>,
    ) -> Result<Vec<SubjectRef>, ActError> {
        if actor.trim().is_empty() {
            return Err(ActError::NoActor);
        }
        if let Some(note) = note {
            check_length("note", note)?;
        }
        action.check()?;
        let mut seen = HashSet::new();
        let subjects: Vec<SubjectRef> = subjects
            .iter()
            .filter(|s| seen.insert(s.uri().to_owned()))
            .cloned()
            .collect();
        match subjects.len() {
            0 => return Err(ActError::NoSubjects),
            count if count > MAX_SUBJECTS => return Err(ActError::TooManySubjects { count }),
            _ => {}
        }
        for subject in &subjects {
            self.check_subject(action, subject).await?;
        }
        Ok(subjects)
    }

    /// The checks that depend on the subject.
    async fn check_subject(&self, action: &Action, subject: &SubjectRef) -> Result<(), ActError> {
        if action.on_reporters() && subject.kind() != SubjectKind::Account {
            return Err(ActError::AccountsOnly {
                action: action.name(),
                uri: subject.uri().to_owned(),
            });
        }
        if let Some((value, true)) = action.label_effect() {
            let labeler = &self.labeler;
            let current = labeler
                .store()
                .current(labeler.did(), subject.uri(), value)
                .await
                .map_err(LabelerError::from)?;
            let applied = current.is_some_and(|c| !c.label.is_negation());
            if !applied {
                return Err(ActError::NotApplied {
                    uri: subject.uri().to_owned(),
                    value: value.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// A label action, one subject at a time, stopping at the first failure.
    async fn label_each(
        &self,
        context: Context<'_>,
        subjects: &[SubjectRef],
        value: &str,
        negate: bool,
    ) -> Result<Vec<ActedOn>, ActError> {
        let mut done = Vec::with_capacity(subjects.len());
        for (i, subject) in subjects.iter().enumerate() {
            match self.label_one(context, subject, value, negate).await {
                Ok(acted) => done.push(acted),
                Err(error) => {
                    let not_attempted = subjects[i + 1..].to_vec();
                    let failure_logged = self
                        .log_failure(context, subject, &error, &not_attempted)
                        .await;
                    return Err(ActError::Interrupted {
                        done,
                        failed: subject.clone(),
                        not_attempted,
                        failure_logged,
                        source: Box::new(error),
                    });
                }
            }
        }
        Ok(done)
    }

    /// Issues the label on one subject and records it, in the subject's transaction.
    async fn label_one(
        &self,
        context: Context<'_>,
        subject: &SubjectRef,
        value: &str,
        negate: bool,
    ) -> Result<ActedOn, StepError> {
        let mut tx = self.store.begin().await?;
        let row = tx.subject(subject).await?;
        let label = self
            .labeler
            .apply(subject.uri(), None, value, negate, None)
            .await?;
        // The label is out: from here on a failure must say so.
        match record_label(&mut tx, context, subject, row, &label, negate).await {
            Ok(audit_id) => match tx.commit().await {
                Ok(()) => Ok(ActedOn {
                    subject: subject.clone(),
                    audit_id,
                    label: Some(label),
                }),
                Err(source) => Err(unrecorded(subject, &label, source)),
            },
            Err(source) => Err(unrecorded(subject, &label, source)),
        }
    }

    /// Writes the `failed` audit entry for a stopped label action; returns whether it could.
    async fn log_failure(
        &self,
        context: Context<'_>,
        subject: &SubjectRef,
        error: &StepError,
        not_attempted: &[SubjectRef],
    ) -> bool {
        let seq = match error {
            StepError::Unrecorded { seq, .. } => Value::from(*seq),
            StepError::Labeler(_) | StepError::Store(_) => Value::Null,
        };
        let details = details([
            ("error", Value::from(error.to_string())),
            ("label_seq", seq),
            (
                "not_attempted",
                not_attempted.iter().map(|s| s.uri()).collect(),
            ),
        ]);
        let written = async {
            let mut tx = self.store.begin().await?;
            tx.audit(context.entry(subject, Outcome::Failed, details))
                .await?;
            tx.commit().await
        };
        match written.await {
            Ok(()) => true,
            Err(log_error) => {
                tracing::error!(
                    actor = context.actor,
                    action = context.action.name(),
                    subject = subject.uri(),
                    %error,
                    %log_error,
                    "moderation action failed and its audit entry could not be written"
                );
                false
            }
        }
    }

    /// An action without labels: every subject and audit entry in one transaction.
    async fn record_all(
        &self,
        context: Context<'_>,
        subjects: &[SubjectRef],
    ) -> Result<Vec<ActedOn>, ActError> {
        let mut tx = self.store.begin().await?;
        let mut acted = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let details = apply_in_store(&mut tx, context, subject).await?;
            let audit_id = tx
                .audit(context.entry(subject, Outcome::Done, details))
                .await?;
            acted.push(ActedOn {
                subject: subject.clone(),
                audit_id,
                label: None,
            });
        }
        tx.commit().await?;
        Ok(acted)
    }
}

/// After a label was issued: the label mirror, the queue state and the audit entry.
async fn record_label(
    tx: &mut WriteTx,
    context: Context<'_>,
    subject: &SubjectRef,
    row: SubjectRow,
    label: &StoredLabel,
    negate: bool,
) -> Result<i64, StoreError> {
    tx.mirror_label(row, &label.label.val, !negate).await?;
    let change = tx.set_state(row, QueueState::Resolved).await?;
    let details = details([
        ("val", Value::from(label.label.val.as_str())),
        ("neg", Value::from(negate)),
        ("label_seq", Value::from(label.seq)),
        ("cts", Value::from(label.label.cts.as_str())),
        ("state", change.map_or(Value::Null, state_json)),
    ]);
    tx.audit(context.entry(subject, Outcome::Done, details))
        .await
}

/// The store-only effect of `context.action` on one subject; returns the audit details.
async fn apply_in_store(
    tx: &mut WriteTx,
    context: Context<'_>,
    subject: &SubjectRef,
) -> Result<Value, StoreError> {
    let action = context.action;
    if action.on_reporters() {
        let mute = matches!(action, Action::MuteReporter);
        let changed = tx.set_muted(subject.uri(), mute, context.actor).await?;
        return Ok(json!({ "changed": changed }));
    }
    let row = tx.subject(subject).await?;
    let mut details = match action {
        Action::Comment { text } => {
            let id = tx.comment(row, context.actor, text).await?;
            json!({ "comment_id": id, "text": text })
        }
        Action::Assign { moderator } => {
            tx.assign(row, moderator.as_deref()).await?;
            json!({ "assigned_to": moderator })
        }
        _ => json!({}),
    };
    if let Some(state) = action.target_state()
        && let Some(change) = tx.set_state(row, state).await?
    {
        details["state"] = state_json(change);
    }
    Ok(details)
}

/// A state change for the audit details: `{from, to}` (`from` is `null` for a subject that
/// was in no queue).
fn state_json(change: StateChange) -> Value {
    json!({ "from": change.from.map(QueueState::as_str), "to": change.to.as_str() })
}

/// The error for a label issued but not recorded, logged at once: it is the one case where
/// the audit log may lack an issued label.
fn unrecorded(subject: &SubjectRef, label: &StoredLabel, source: StoreError) -> StepError {
    tracing::error!(
        subject = subject.uri(),
        seq = label.seq,
        val = label.label.val,
        error = %source,
        "label issued but its moderation record did not commit"
    );
    StepError::Unrecorded {
        seq: label.seq,
        source,
    }
}

fn check_length(what: &'static str, text: &str) -> Result<(), ActError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ActError::TooLong {
            what,
            bytes: text.len(),
        });
    }
    Ok(())
}
