//! Moderation's back end: reports in, queues, actions and the audit log. The admin console
//! renders it; `atelier up` serves its XRPC route.
//!
//! Parts, bottom up:
//! - [`subject`]: what is moderated, an account or a record ([`SubjectRef`], checked).
//! - [`report`]: reports and where they come from (`atproto`, `appview`, `autoflag`),
//!   reason types and the reason text's limits.
//! - [`store`]: [`ModerationStore`], SQLite: subjects with their queue state, reports,
//!   comments, muted reporters, the labels moderation applied, and the append-only audit
//!   log; the queue listing, the subject view and the audit export.
//! - [`action`]: [`Action`] and the executor [`Moderation::act`], for one subject or many.
//! - [`xrpc`]: `com.atproto.moderation.createReport`, authenticated by service JWT.
//! - [`autoflag`]: the safety filter over published AC text, reporting what it matches.
//!
//! Design: the queue is per subject, not per report. Every report attaches to its subject's
//! row (created on first sight), and the subject carries the queue state (`unreviewed`,
//! `escalated`, `resolved`, or none yet), its assignee and its report counts; the console
//! lists subjects and shows each one's reports grouped. Decisions are labels: a takedown is
//! a `!takedown` label from our labeler on the record URI or account DID, a restore its
//! negation, and the AppView (and relay) honour them. So the executor issues labels through
//! [`Labeler::apply`] and keeps no takedown state of its own beyond a mirror of the values
//! it applied, which the queue's label filter reads.
//!
//! **Architecture Invariant:** every change an action makes is written in the same
//! transaction as its audit entry, and the audit log only grows. The one place two
//! databases meet (a label issued, then recorded) is ordered and documented in [`action`]
//! so that a failure is never silent.
//!
//! **Architecture Invariant:** moderation knows nothing of console users, roles or
//! sessions: callers check permissions and pass the acting user's name, which the audit
//! log records.

pub mod action;
pub mod autoflag;
pub mod report;
pub mod store;
pub mod subject;
pub mod xrpc;

pub use action::{ActError, Acted, ActedOn, Action, StepError};
pub use report::{NewReport, ReasonType, Report, ReportError, ReportSource};
pub use store::audit::{AuditEntry, AuditRange, ExportError, ExportFormat, Outcome};
pub use store::queue::{
    Assignee, Comment, Order, QueuePage, QueueQuery, QueuedSubject, ReportGroup, SubjectView,
};
pub use store::stats::Turnaround;
pub use store::{ModerationStore, QueueState, StoreError};
pub use subject::{SubjectError, SubjectKind, SubjectRef};
pub use xrpc::{report_audience, xrpc_router};

use crate::labeler::Labeler;

/// Moderation: the store and the labeler that carries out decisions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Moderation {
    store: ModerationStore,
    labeler: Labeler,
}

impl Moderation {
    /// Moderation over `store`, issuing labels through `labeler`.
    pub fn new(store: ModerationStore, labeler: Labeler) -> Moderation {
        Moderation { store, labeler }
    }

    /// The store: reports, queues, subject views, the audit log.
    pub fn store(&self) -> &ModerationStore {
        &self.store
    }

    /// The labeler decisions are issued through.
    pub fn labeler(&self) -> &Labeler {
        &self.labeler
    }
}
