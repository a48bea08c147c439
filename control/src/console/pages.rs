//! The moderation pages of the admin console, added to the console's router
//! ([`crate::admin::router_with`]), so they get its sessions, CSRF guard and headers:
//!
//! - `GET /`: the dashboard ([`super::dashboard`]).
//! - `GET /queue`: a queue (unreviewed, escalated, resolved) with filters (kind,
//!   collection, reason, reporter, label, age, assignee, order) and pages; every row has a
//!   checkbox for the **bulk** form below the table.
//! - `POST /queue/act`: one action on the checked subjects; answers with the queue page
//!   (the same filters) and a sentence saying what happened.
//! - `GET /subject?uri=`: one subject: the record as its author's PDS has it (painting
//!   image, KidLisp source, tape video, text), its reports grouped by reason, comments,
//!   labels in force, the author's other subjects, and past actions on it and its author;
//!   with the action form. `POST /subject/act` acts on it.
//! - `GET /subject/blob?did=&cid=`: a painting's or tape's media, proxied (see
//!   [`super::preview`]).
//! - `GET /audit`: the audit log, a page at a time, oldest first, with a time range;
//!   `GET /audit/export?format=jsonl|csv`: the same range as a download.
//!
//! Who may do what is [`permission_for`]: one table from action to permission, then the
//! user's label limit for actions that issue a label. Every handler checks before acting.

use std::time::Duration;

use askama::Template;
use atelier_relay::sync::identity::Resolver;
use atelier_relay::sync::ssrf::GuardedClient;
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::preview::{self, Preview};
use crate::admin::{AdminState, Authed, Forbidden, NavLink, Permission, Shell, message, render};
use crate::labeler::label::format_datetime;
use crate::moderation::{
    ActError, Action, Assignee, AuditEntry, AuditRange, ExportFormat, Moderation, Order,
    QueueQuery, QueueState, QueuedSubject, SubjectKind, SubjectRef,
};

/// What the pages need beside the console's own state.
#[derive(Debug, Clone)]
pub struct ModerationPages {
    /// Reports, queues, actions and the audit log.
    pub moderation: Moderation,
    /// Resolves authors' DIDs to their PDS for record previews.
    pub resolver: Resolver,
    /// The SSRF-guarded client previews are fetched with.
    pub http: GuardedClient,
    /// The services the dashboard checks.
    pub services: Vec<super::dashboard::ServiceProbe>,
    /// The client the dashboard checks them with (our own services, on configured
    /// addresses: no SSRF guard needed), kept so its connections are reused.
    pub probe_http: reqwest::Client,
}

/// The routes, for [`crate::admin::router_with`].
pub fn routes(pages: ModerationPages) -> Router<AdminState> {
    Router::new()
        .route("/", get(super::dashboard::show))
        .route("/queue", get(queue))
        .route("/queue/act", post(queue_act))
        .route("/subject", get(subject))
        .route("/subject/act", post(subject_act))
        .route("/subject/blob", get(blob))
        .route("/audit", get(audit))
        .route("/audit/export", get(audit_export))
        .layer(Extension(pages))
}

/// The navigation links of these pages, for [`AdminState::with_nav`].
pub fn nav() -> [NavLink; 2] {
    [
        NavLink {
            label: "Queues",
            href: "/queue",
            permission: Permission::View,
        },
        NavLink {
            label: "Audit log",
            href: "/audit",
            permission: Permission::View,
        },
    ]
}

/// The permission each action needs (the console's permission table covers the rest).
pub fn permission_for(action: &Action) -> Permission {
    match action {
        Action::Label { .. } | Action::NegateLabel { .. } => Permission::Label,
        Action::Takedown | Action::Restore => Permission::Takedown,
        // Closing a subject without action, and silencing a reporter, are decisions.
        Action::Acknowledge | Action::MuteReporter | Action::UnmuteReporter => Permission::Label,
        Action::Escalate => Permission::Escalate,
        Action::Comment { .. } | Action::Assign { .. } => Permission::Comment,
    }
}

/// Checks that `authed` may take `action`.
fn allowed(authed: &Authed, action: &Action) -> Result<(), Forbidden> {
    authed.require(permission_for(action))?;
    match action.label_value() {
        Some(value) if !authed.can_apply_label(value) => Err(Forbidden::new(format!(
            "You may not apply or negate the label {value:?}."
        ))),
        _ => Ok(()),
    }
}

fn now_us() -> i64 {
    atelier_relay::jetstream::now_us()
}

/// A time as the pages show it (UTC, to the second).
fn when(us: i64) -> String {
    let full = format_datetime(us);
    full.get(..19)
        .map_or(full.clone(), |s| format!("{} {}", &s[..10], &s[11..]))
}

fn age(since_us: i64) -> String {
    let micros = u64::try_from(now_us().saturating_sub(since_us)).unwrap_or(0);
    crate::admin::human_duration(Duration::from_micros(micros))
}

fn internal(err: impl std::fmt::Display) -> Response {
    tracing::error!(%err, "a moderation page failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The console could not do this; the error is in its log. Try again, and tell the \
         operator if it keeps happening.",
    )
}

fn bad_request(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "That did not work", text)
}

// ---- the queue ----

/// The queue page's query: its filters, as the filter form sends them.
#[derive(Debug, Default, Clone, Deserialize)]
struct QueueParams {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    collection: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    reporter: String,
    #[serde(default)]
    label: String,
    /// Only subjects waiting at least this many hours.
    #[serde(default)]
    older_than_hours: String,
    /// `""` anyone, `-` nobody, or a user name.
    #[serde(default)]
    assigned: String,
    /// `newest` (default) or `oldest`.
    #[serde(default)]
    order: String,
    #[serde(default)]
    cursor: String,
}

impl QueueParams {
    fn state(&self) -> QueueState {
        QueueState::parse(&self.state).unwrap_or(QueueState::Unreviewed)
    }

    /// The store query, or what is wrong with a filter.
    fn query(&self) -> Result<QueueQuery, String> {
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let mut q = QueueQuery::new(self.state());
        q.kind = match self.kind.as_str() {
            "" => None,
            k => Some(SubjectKind::parse(k).ok_or(format!("{k:?} is not a subject kind"))?),
        };
        q.collection = some(&self.collection);
        q.reason_type = some(&self.reason);
        q.reporter = some(&self.reporter);
        q.label = some(&self.label);
        q.min_age = match some(&self.older_than_hours) {
            None => None,
            Some(h) => {
                let hours: u64 = h
                    .parse()
                    .map_err(|_| format!("{h:?} is not a number of hours"))?;
                Some(Duration::from_secs(hours.saturating_mul(3600)))
            }
        };
        q.assigned = match self.assigned.trim() {
            "" => None,
            "-" => Some(Assignee::Nobody),
            name => Some(Assignee::Moderator(name.to_owned())),
        };
        q.order = if self.order == "oldest" {
            Order::OldestFirst
        } else {
            Order::NewestFirst
        };
        q.cursor = some(&self.cursor);
        Ok(q)
    }

    /// The query string of these filters (the cursor left out, or set to `cursor`).
    fn to_query(&self, cursor: Option<&str>) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("state", self.state().as_str()),
            ("kind", &self.kind),
            ("collection", &self.collection),
            ("reason", &self.reason),
            ("reporter", &self.reporter),
            ("label", &self.label),
            ("older_than_hours", &self.older_than_hours),
            ("assigned", &self.assigned),
            ("order", &self.order),
        ] {
            if !value.is_empty() {
                out.append_pair(key, value);
            }
        }
        if let Some(c) = cursor {
            out.append_pair("cursor", c);
        }
        out.finish()
    }
}

/// One subject in the table.
struct QueueRow {
    uri: String,
    /// Its subject page.
    href: String,
    kind: &'static str,
    collection: String,
    author: String,
    reports: i64,
    reasons: String,
    waiting: String,
    assigned: String,
}

impl QueueRow {
    fn from(s: &QueuedSubject) -> QueueRow {
        QueueRow {
            uri: s.subject.uri().to_owned(),
            href: subject_href(s.subject.uri()),
            kind: s.subject.kind().as_str(),
            collection: s.subject.collection().unwrap_or("").to_owned(),
            author: s.subject.author().to_owned(),
            reports: s.report_count,
            reasons: s
                .reason_types
                .iter()
                .map(|r| short_reason(r))
                .collect::<Vec<_>>()
                .join(", "),
            waiting: age(s.state_since_us),
            assigned: s.assigned_to.clone().unwrap_or_default(),
        }
    }
}

/// The subject page of `uri`.
fn subject_href(uri: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("uri", uri)
        .finish();
    format!("/subject?{query}")
}

/// `com.atproto.moderation.defs#reasonSpam` -> `spam`.
fn short_reason(reason: &str) -> String {
    let tail = reason.rsplit('#').next().unwrap_or(reason);
    let tail = tail.strip_prefix("reason").unwrap_or(tail);
    tail.to_ascii_lowercase()
}

#[derive(Template)]
#[template(path = "admin/queue.html", config = "src/admin/askama.toml")]
struct QueuePageT {
    shell: Shell,
    csrf: String,
    states: Vec<(&'static str, bool)>,
    filters: QueueParams,
    /// The current filters as a query string, for the bulk form's return.
    back: String,
    rows: Vec<QueueRow>,
    next: Option<String>,
    outcome: Option<Outcome>,
    actions: Vec<(&'static str, &'static str)>,
}

/// What the last action came to.
struct Outcome {
    ok: bool,
    text: String,
}

/// The actions the user's role allows, as (form value, label) for the action menu.
fn action_menu(authed: &Authed) -> Vec<(&'static str, &'static str)> {
    let all = [
        ("acknowledge", "Resolve (no action)", Action::Acknowledge),
        ("escalate", "Escalate", Action::Escalate),
        ("takedown", "Take down", Action::Takedown),
        ("restore", "Restore", Action::Restore),
        (
            "label",
            "Apply label…",
            Action::Label {
                value: String::new(),
            },
        ),
        (
            "negate-label",
            "Negate label…",
            Action::NegateLabel {
                value: String::new(),
            },
        ),
        ("assign", "Assign to…", Action::Assign { moderator: None }),
        (
            "comment",
            "Comment",
            Action::Comment {
                text: String::new(),
            },
        ),
        ("mute-reporter", "Mute reporter", Action::MuteReporter),
        ("unmute-reporter", "Unmute reporter", Action::UnmuteReporter),
    ];
    all.into_iter()
        .filter(|(_, _, action)| authed.require(permission_for(action)).is_ok())
        .filter(|(_, _, action)| {
            matches!(action, Action::Label { .. } | Action::NegateLabel { .. })
                || action
                    .label_value()
                    .is_none_or(|v| authed.can_apply_label(v))
        })
        .map(|(value, label, _)| (value, label))
        .collect()
}

async fn queue_page(
    authed: &Authed,
    pages: &ModerationPages,
    filters: QueueParams,
    outcome: Option<Outcome>,
) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    let query = match filters.query() {
        Ok(q) => q,
        Err(e) => return bad_request(&e),
    };
    let page = match pages.moderation.store().queue(&query, now_us()).await {
        Ok(page) => page,
        Err(e) => return internal(e),
    };
    let state = filters.state();
    let template = QueuePageT {
        shell: authed.shell("Queues"),
        csrf: authed.csrf().to_owned(),
        states: [
            QueueState::Unreviewed,
            QueueState::Escalated,
            QueueState::Resolved,
        ]
        .into_iter()
        .map(|s| (s.as_str(), s == state))
        .collect(),
        back: filters.to_query(None),
        next: page.cursor.as_deref().map(|c| filters.to_query(Some(c))),
        rows: page.subjects.iter().map(QueueRow::from).collect(),
        filters,
        outcome,
        actions: action_menu(authed),
    };
    render(StatusCode::OK, &template)
}

async fn queue(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    Query(filters): Query<QueueParams>,
) -> Response {
    queue_page(&authed, &pages, filters, None).await
}

/// An action form: the checked subjects, the action, its value and a note.
#[derive(Debug, Default)]
struct ActForm {
    subjects: Vec<String>,
    action: String,
    value: String,
    note: String,
    back: String,
}

impl ActForm {
    /// Reads the form body; `subject` may repeat (a checkbox per row).
    fn parse(body: &[u8]) -> ActForm {
        let mut form = ActForm::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "subject" => form.subjects.push(value.into_owned()),
                "action" => form.action = value.into_owned(),
                "value" => form.value = value.trim().to_owned(),
                "note" => form.note = value.into_owned(),
                "back" => form.back = value.into_owned(),
                _ => {}
            }
        }
        form
    }

    /// The action the form asks for, or what is missing.
    fn action(&self) -> Result<Action, String> {
        let value = || {
            if self.value.is_empty() {
                Err(format!("{:?} needs a value.", self.action))
            } else {
                Ok(self.value.clone())
            }
        };
        Ok(match self.action.as_str() {
            "acknowledge" => Action::Acknowledge,
            "escalate" => Action::Escalate,
            "takedown" => Action::Takedown,
            "restore" => Action::Restore,
            "label" => Action::Label { value: value()? },
            "negate-label" => Action::NegateLabel { value: value()? },
            "assign" => Action::Assign {
                moderator: (!self.value.is_empty()).then(|| self.value.clone()),
            },
            // A comment's text is the note field (or the value field).
            "comment" => Action::Comment {
                text: if self.note.trim().is_empty() {
                    self.value.clone()
                } else {
                    self.note.clone()
                },
            },
            "mute-reporter" => Action::MuteReporter,
            "unmute-reporter" => Action::UnmuteReporter,
            "" => return Err("Choose an action.".to_owned()),
            other => return Err(format!("{other:?} is not an action.")),
        })
    }

    fn subjects(&self) -> Result<Vec<SubjectRef>, String> {
        if self.subjects.is_empty() {
            return Err("Select at least one subject.".to_owned());
        }
        self.subjects
            .iter()
            .map(|uri| SubjectRef::parse(uri, None).map_err(|e| format!("{uri}: {e}")))
            .collect()
    }

    fn note(&self) -> Option<&str> {
        let note = self.note.trim();
        (!note.is_empty() && self.action != "comment").then_some(note)
    }
}

/// Runs the form's action as `authed`; the sentence to show.
async fn act(
    authed: &Authed,
    pages: &ModerationPages,
    form: &ActForm,
) -> Result<Outcome, Response> {
    let refused = |text: String| Outcome { ok: false, text };
    let action = match form.action() {
        Ok(a) => a,
        Err(e) => return Ok(refused(e)),
    };
    if let Err(forbidden) = allowed(authed, &action) {
        return Err(forbidden.into_response());
    }
    let subjects = match form.subjects() {
        Ok(s) => s,
        Err(e) => return Ok(refused(e)),
    };
    let result = pages
        .moderation
        .act(&authed.user().name, &subjects, &action, form.note())
        .await;
    Ok(match result {
        Ok(acted) => {
            let n = acted.subjects.len();
            Outcome {
                ok: true,
                text: format!(
                    "{} on {n} subject{}.",
                    action.name(),
                    if n == 1 { "" } else { "s" }
                ),
            }
        }
        Err(ActError::Interrupted {
            done,
            failed,
            not_attempted,
            ..
        }) => refused(format!(
            "{} stopped at {}: {} done, {} not attempted. The audit log has the details.",
            action.name(),
            failed.uri(),
            done.len(),
            not_attempted.len()
        )),
        Err(e) => refused(format!("{e}.")),
    })
}

async fn queue_act(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    body: Bytes,
) -> Response {
    let form = ActForm::parse(&body);
    let outcome = match act(&authed, &pages, &form).await {
        Ok(o) => o,
        Err(response) => return response,
    };
    let filters: QueueParams = serde_urlencoded::from_str(&form.back).unwrap_or_default();
    queue_page(&authed, &pages, filters, Some(outcome)).await
}

// ---- one subject ----

#[derive(Debug, Deserialize)]
struct SubjectParams {
    uri: String,
}

/// A report as the subject page lists it.
struct ReportLine {
    reporter: String,
    source: &'static str,
    reason: String,
    at: String,
    muted: bool,
}

/// A reason group.
struct ReasonGroup {
    reason: String,
    reports: Vec<ReportLine>,
}

/// An audit entry as the pages list it.
struct AuditLine {
    id: i64,
    at: String,
    actor: String,
    action: String,
    outcome: &'static str,
    subject: String,
    note: String,
    details: String,
}

impl AuditLine {
    fn from(e: &AuditEntry) -> AuditLine {
        AuditLine {
            id: e.id,
            at: when(e.at_us),
            actor: e.actor.clone(),
            action: e.action.clone(),
            outcome: e.outcome.as_str(),
            subject: e.subject.clone(),
            note: e.note.clone().unwrap_or_default(),
            details: if e.details.as_object().is_some_and(serde_json::Map::is_empty) {
                String::new()
            } else {
                e.details.to_string()
            },
        }
    }
}

#[derive(Template)]
#[template(path = "admin/subject.html", config = "src/admin/askama.toml")]
struct SubjectPageT {
    shell: Shell,
    csrf: String,
    uri: String,
    kind: &'static str,
    author: String,
    state: String,
    assigned: String,
    preview: Preview,
    groups: Vec<ReasonGroup>,
    comments: Vec<(String, String, String)>,
    labels: Vec<String>,
    others: Vec<QueueRow>,
    history: Vec<AuditLine>,
    author_history: Vec<AuditLine>,
    outcome: Option<Outcome>,
    actions: Vec<(&'static str, &'static str)>,
}

impl SubjectPageT {
    /// The console's proxy URL of the author's blob `cid`.
    fn media_url(&self, cid: &str) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("did", &self.author)
            .append_pair("cid", cid)
            .finish();
        format!("/subject/blob?{query}")
    }
}

async fn subject_page(
    authed: &Authed,
    pages: &ModerationPages,
    uri: &str,
    outcome: Option<Outcome>,
) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    let subject = match SubjectRef::parse(uri, None) {
        Ok(s) => s,
        Err(e) => return bad_request(&format!("{uri}: {e}")),
    };
    let view = match pages.moderation.store().subject_view(subject.uri()).await {
        Ok(view) => view,
        Err(crate::moderation::StoreError::NotFound(_)) => {
            return message(
                StatusCode::NOT_FOUND,
                "No such subject",
                "Nothing has been reported about this record or account.",
            );
        }
        Err(e) => return internal(e),
    };
    let preview = match (subject.kind(), subject.collection()) {
        (SubjectKind::Record, Some(collection)) => {
            let rkey = subject.uri().rsplit('/').next().unwrap_or("");
            preview::record(
                &pages.resolver,
                &pages.http,
                subject.author(),
                collection,
                rkey,
            )
            .await
        }
        _ => Preview::Account,
    };
    let template = SubjectPageT {
        shell: authed.shell("Subject"),
        csrf: authed.csrf().to_owned(),
        uri: subject.uri().to_owned(),
        kind: subject.kind().as_str(),
        author: subject.author().to_owned(),
        state: view
            .subject
            .state
            .map_or("not queued", QueueState::as_str)
            .to_owned(),
        assigned: view.subject.assigned_to.clone().unwrap_or_default(),
        preview,
        groups: view
            .reports
            .iter()
            .map(|g| ReasonGroup {
                reason: short_reason(g.reason_type.as_str()),
                reports: g
                    .reports
                    .iter()
                    .map(|r| ReportLine {
                        reporter: r.source.reporter().unwrap_or("safety filter").to_owned(),
                        source: r.source.name(),
                        reason: r.reason.clone().unwrap_or_default(),
                        at: when(r.created_us),
                        muted: r.muted,
                    })
                    .collect(),
            })
            .collect(),
        comments: view
            .comments
            .iter()
            .map(|c| (c.author.clone(), when(c.created_us), c.body.clone()))
            .collect(),
        labels: view.labels.clone(),
        others: view.author_subjects.iter().map(QueueRow::from).collect(),
        history: view.subject_history.iter().map(AuditLine::from).collect(),
        author_history: view.author_history.iter().map(AuditLine::from).collect(),
        outcome,
        actions: action_menu(authed),
    };
    render(StatusCode::OK, &template)
}

async fn subject(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    Query(params): Query<SubjectParams>,
) -> Response {
    subject_page(&authed, &pages, &params.uri, None).await
}

async fn subject_act(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    body: Bytes,
) -> Response {
    let form = ActForm::parse(&body);
    let Some(uri) = form.subjects.first().cloned() else {
        return bad_request("The form names no subject.");
    };
    let outcome = match act(&authed, &pages, &form).await {
        Ok(o) => o,
        Err(response) => return response,
    };
    subject_page(&authed, &pages, &uri, Some(outcome)).await
}

#[derive(Debug, Deserialize)]
struct BlobParams {
    did: String,
    cid: String,
}

async fn blob(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    Query(params): Query<BlobParams>,
) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    if !params.did.starts_with("did:")
        || !preview::is_plain_id(&params.did)
        || !preview::is_plain_id(&params.cid)
    {
        return bad_request("The media link is malformed.");
    }
    match preview::blob(&pages.resolver, &pages.http, &params.did, &params.cid).await {
        Ok((mime, bytes)) => (
            [
                (header::CONTENT_TYPE, mime),
                (header::CONTENT_DISPOSITION, "inline"),
            ],
            bytes,
        )
            .into_response(),
        Err(why) => (StatusCode::BAD_GATEWAY, why).into_response(),
    }
}

// ---- the audit log ----

#[derive(Debug, Default, Deserialize)]
struct AuditParams {
    /// The previous page's last id.
    #[serde(default)]
    after: Option<i64>,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    to: String,
    /// `jsonl` or `csv` (export only).
    #[serde(default)]
    format: String,
}

impl AuditParams {
    /// The range the dates name, or which one is malformed.
    fn range(&self) -> Result<AuditRange, String> {
        let day = |text: &str, end: bool| -> Result<Option<i64>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            let micros = crate::labeler::label::datetime_micros(&format!("{text}T00:00:00.000Z"))
                .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
            Ok(Some(if end { micros + 86_400_000_000 } else { micros }))
        };
        Ok(AuditRange {
            from_us: day(&self.from, false)?,
            to_us: day(&self.to, true)?,
        })
    }
}

/// Entries per audit page.
const AUDIT_PAGE: u32 = 100;

#[derive(Template)]
#[template(path = "admin/audit.html", config = "src/admin/askama.toml")]
struct AuditPageT {
    shell: Shell,
    from: String,
    to: String,
    entries: Vec<AuditLine>,
    next: Option<String>,
    export: String,
}

async fn audit(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    Query(params): Query<AuditParams>,
) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    let range = match params.range() {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let entries = match pages
        .moderation
        .store()
        .audit_entries(range, params.after, AUDIT_PAGE)
        .await
    {
        Ok(entries) => entries,
        Err(e) => return internal(e),
    };
    let dates = |extra: &[(&str, &str)]| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("from", params.from.as_str()), ("to", params.to.as_str())]
            .into_iter()
            .chain(extra.iter().copied())
        {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    };
    let next = (entries.len() == AUDIT_PAGE as usize)
        .then(|| {
            entries
                .last()
                .map(|e| dates(&[("after", &e.id.to_string())]))
        })
        .flatten();
    let template = AuditPageT {
        shell: authed.shell("Audit log"),
        from: params.from.clone(),
        to: params.to.clone(),
        entries: entries.iter().map(AuditLine::from).collect(),
        next,
        export: dates(&[]),
    };
    render(StatusCode::OK, &template)
}

async fn audit_export(
    authed: Authed,
    Extension(pages): Extension<ModerationPages>,
    Query(params): Query<AuditParams>,
) -> Response {
    if let Err(forbidden) = authed.require(Permission::View) {
        return forbidden.into_response();
    }
    let range = match params.range() {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let (format, mime, ext) = match params.format.as_str() {
        "" | "jsonl" => (ExportFormat::JsonLines, "application/jsonl", "jsonl"),
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8", "csv"),
        other => return bad_request(&format!("{other:?} is not an export format (jsonl, csv).")),
    };
    let mut out = Vec::new();
    if let Err(e) = pages
        .moderation
        .store()
        .export_audit(range, format, &mut out)
        .await
    {
        return internal(e);
    }
    let disposition = format!("attachment; filename=\"atelier-audit.{ext}\"");
    (
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_needs_a_permission_from_the_table() {
        use crate::config::Role;
        let cases = [
            (Action::Comment { text: "x".into() }, Role::Triage, true),
            (Action::Escalate, Role::Triage, true),
            (Action::Assign { moderator: None }, Role::Triage, true),
            (Action::Acknowledge, Role::Triage, false),
            (Action::Takedown, Role::Triage, false),
            (
                Action::Label {
                    value: "spam".into(),
                },
                Role::Triage,
                false,
            ),
            (Action::MuteReporter, Role::Triage, false),
            (Action::Takedown, Role::Moderator, true),
            (Action::Restore, Role::Moderator, true),
            (
                Action::Label {
                    value: "spam".into(),
                },
                Role::Moderator,
                true,
            ),
            (Action::Acknowledge, Role::Moderator, true),
            (Action::UnmuteReporter, Role::Admin, true),
        ];
        for (action, role, allowed) in cases {
            assert_eq!(
                role.allows(permission_for(&action)),
                allowed,
                "{role:?} {}",
                action.name()
            );
        }
    }

    #[test]
    fn times_show_in_utc_to_the_second() {
        let us = crate::labeler::label::datetime_micros("2026-12-06T14:05:09.123Z").unwrap();
        assert_eq!(when(us), "2026-12-06 14:05:09");
    }

    #[test]
    fn forms_read_repeated_subjects_and_name_what_is_missing() {
        let form = ActForm::parse(
            b"csrf=t&subject=did%3Aplc%3Aa&subject=did%3Aplc%3Ab&action=label&value=spam&note=why&back=state%3Descalated",
        );
        assert_eq!(form.subjects, ["did:plc:a", "did:plc:b"]);
        assert_eq!(
            form.action().unwrap(),
            Action::Label {
                value: "spam".into()
            }
        );
        assert_eq!(form.note(), Some("why"));
        assert_eq!(form.back, "state=escalated");
        let empty = ActForm::parse(b"action=label");
        assert!(empty.action().unwrap_err().contains("needs a value"));
        assert!(empty.subjects().unwrap_err().contains("at least one"));
        assert!(ActForm::parse(b"action=explode").action().is_err());
        let comment = ActForm::parse(b"action=comment&note=looks+fine&subject=did%3Aplc%3Aa");
        assert_eq!(
            comment.action().unwrap(),
            Action::Comment {
                text: "looks fine".into()
            }
        );
        assert_eq!(comment.note(), None);
    }

    #[test]
    fn queue_filters_round_trip_and_name_bad_input() {
        let params: QueueParams = serde_urlencoded::from_str(
            "state=escalated&collection=computer.aesthetic.mood&older_than_hours=2&assigned=-&order=oldest",
        )
        .unwrap();
        let q = params.query().unwrap();
        assert_eq!(q.state, QueueState::Escalated);
        assert_eq!(q.min_age, Some(Duration::from_secs(7200)));
        assert_eq!(q.assigned, Some(Assignee::Nobody));
        assert_eq!(q.order, Order::OldestFirst);
        let again: QueueParams = serde_urlencoded::from_str(&params.to_query(None)).unwrap();
        assert_eq!(again.to_query(Some("c1")), params.to_query(Some("c1")));
        let bad: QueueParams = serde_urlencoded::from_str("older_than_hours=soon").unwrap();
        assert!(bad.query().unwrap_err().contains("hours"));
        assert_eq!(
            short_reason("com.atproto.moderation.defs#reasonSpam"),
            "spam"
        );
        assert_eq!(
            short_reason("tools.ozone.report.defs#reasonViolenceThreats"),
            "violencethreats"
        );
    }
}
