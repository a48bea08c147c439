//! The queues and the subject view, read-only.
//!
//! A queue is the subjects in one [`QueueState`], ordered by how long they have been in it
//! (`state_since_us`; the age filters measure the same thing), newest or oldest first, with
//! filters that combine with AND. Pages are cut by a keyset cursor (`state_since_us` and
//! the subject id), so a subject that changes state while a moderator pages through is
//! neither repeated nor skipped among the others.
//!
//! Filters on reports look at reports that counted (not from muted reporters), except the
//! reporter filter, which also finds a muted reporter's reports: it is how a moderator
//! reviews what a suspected bad-faith reporter sent.

use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::audit::AuditEntry;
use super::{ModerationStore, QueueState, StoreError, parse_state};
use crate::moderation::report::{ReasonType, Report, ReportSource};
use crate::moderation::subject::{SubjectKind, SubjectRef};

/// The default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size.
pub const MAX_LIMIT: u32 = 100;
/// The most reports, comments, other subjects and history entries a subject view holds
/// (newest first): enough to judge, bounded for a subject reported thousands of times.
pub const VIEW_LIMIT: u32 = 200;

/// Which end of the queue comes first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Most recently queued first.
    #[default]
    NewestFirst,
    /// Longest waiting first.
    OldestFirst,
}

/// Whom the subjects are assigned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// Nobody.
    Nobody,
    /// This moderator (console user name).
    Moderator(String),
}

/// A queue listing request. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueQuery {
    /// The queue.
    pub state: QueueState,
    /// Only accounts or only records.
    pub kind: Option<SubjectKind>,
    /// Only records of this collection (record type).
    pub collection: Option<String>,
    /// Only subjects with a (counted) report of this reason type.
    pub reason_type: Option<String>,
    /// Only subjects this DID reported (muted reports included).
    pub reporter: Option<String>,
    /// Only subjects moderation labelled with this value (and has not negated).
    pub label: Option<String>,
    /// Only subjects at least this long in the queue.
    pub min_age: Option<Duration>,
    /// Only subjects at most this long in the queue.
    pub max_age: Option<Duration>,
    /// Only subjects with this assignment.
    pub assigned: Option<Assignee>,
    /// Newest or oldest first.
    pub order: Order,
    /// The previous page's `cursor`.
    pub cursor: Option<String>,
    /// The page size, 1 to [`MAX_LIMIT`] (clamped).
    pub limit: u32,
}

impl QueueQuery {
    /// The first page of `state`, newest first, unfiltered.
    pub fn new(state: QueueState) -> QueueQuery {
        QueueQuery {
            state,
            kind: None,
            collection: None,
            reason_type: None,
            reporter: None,
            label: None,
            min_age: None,
            max_age: None,
            assigned: None,
            order: Order::NewestFirst,
            cursor: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A subject as the queue lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSubject {
    /// The subject, with its latest reported CID.
    pub subject: SubjectRef,
    /// Its queue; `None` while in none.
    pub state: Option<QueueState>,
    /// When it entered its queue, microseconds since the epoch.
    pub state_since_us: i64,
    /// The moderator working on it.
    pub assigned_to: Option<String>,
    /// The first and last report that counted.
    pub first_report_us: Option<i64>,
    /// See `first_report_us`.
    pub last_report_us: Option<i64>,
    /// Reports that counted.
    pub report_count: i64,
    /// The distinct reason types of those reports, sorted.
    pub reason_types: Vec<String>,
}

/// One page of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePage {
    /// The subjects.
    pub subjects: Vec<QueuedSubject>,
    /// The next page's cursor; `None` on the last page.
    pub cursor: Option<String>,
}

/// Reports of one reason type on a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportGroup {
    /// The reason type.
    pub reason_type: ReasonType,
    /// Its reports, newest first.
    pub reports: Vec<Report>,
}

/// A moderator's comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Its number.
    pub id: i64,
    /// The console user who wrote it.
    pub author: String,
    /// The text.
    pub body: String,
    /// When, microseconds since the epoch.
    pub created_us: i64,
}

/// Everything the console's subject page shows (lists capped at [`VIEW_LIMIT`], newest
/// first).
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectView {
    /// The subject and its queue state.
    pub subject: QueuedSubject,
    /// Its reports by reason type (groups in order of their newest report), muted included.
    pub reports: Vec<ReportGroup>,
    /// Moderators' comments.
    pub comments: Vec<Comment>,
    /// The label values moderation has applied to it and not negated, sorted.
    pub labels: Vec<String>,
    /// The author's other subjects (the account and its other records).
    pub author_subjects: Vec<QueuedSubject>,
    /// Actions on this subject.
    pub subject_history: Vec<AuditEntry>,
    /// Actions on the author's account and other records.
    pub author_history: Vec<AuditEntry>,
}

/// The columns a [`QueuedSubject`] is read from, for subjects aliased `s`.
const SUBJECT_COLUMNS: &str = "s.id, s.uri, s.cid, s.state, s.state_since_us, s.assigned_to, \
     s.first_report_us, s.last_report_us, s.report_count, \
     (SELECT group_concat(DISTINCT r.reason_type) FROM reports r \
      WHERE r.subject_id = s.id AND r.muted = 0) AS reason_types";

impl ModerationStore {
    /// One page of a queue, with ages measured at `now_us`.
    pub async fn queue(&self, query: &QueueQuery, now_us: i64) -> Result<QueuePage, StoreError> {
        let limit = query.limit.clamp(1, MAX_LIMIT);
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.state = "
        ));
        sql.push_bind(query.state.as_str());
        push_filters(&mut sql, query, now_us);
        let newest_first = query.order == Order::NewestFirst;
        if let Some(cursor) = &query.cursor {
            let (since, id) = parse_cursor(cursor)?;
            let op = if newest_first { "<" } else { ">" };
            sql.push(format!(" AND (s.state_since_us, s.id) {op} ("))
                .push_bind(since)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        let direction = if newest_first { "DESC" } else { "ASC" };
        sql.push(format!(
            " ORDER BY s.state_since_us {direction}, s.id {direction} LIMIT "
        ))
        .push_bind(i64::from(limit) + 1);
        let rows = sql.build().fetch_all(&self.reader).await?;
        let mut subjects = Vec::with_capacity(rows.len());
        let mut last_key = None;
        for row in rows.iter().take(limit as usize) {
            last_key = Some((row.try_get::<i64, _>("state_since_us")?, row.try_get("id")?));
            subjects.push(queued_from_row(row)?);
        }
        let more = rows.len() > limit as usize;
        let cursor = last_key
            .filter(|_| more)
            .map(|(since, id): (i64, i64)| format!("{since}.{id}"));
        Ok(QueuePage { subjects, cursor })
    }

    /// The subject with this DID or `at://` URI as the queue lists it.
    pub async fn subject(&self, uri: &str) -> Result<QueuedSubject, StoreError> {
        Ok(self.subject_with_id(uri).await?.1)
    }

    /// Everything the console's subject page shows about the subject `uri`.
    pub async fn subject_view(&self, uri: &str) -> Result<SubjectView, StoreError> {
        let (id, subject) = self.subject_with_id(uri).await?;
        let author = subject.subject.author().to_owned();
        let author_history = self
            .author_history(&author, VIEW_LIMIT)
            .await?
            .into_iter()
            .filter(|entry| entry.subject != uri)
            .collect();
        Ok(SubjectView {
            reports: group_reports(self.reports(id).await?),
            comments: self.comments(id).await?,
            labels: self.labels(id).await?,
            author_subjects: self.author_subjects(&author, id).await?,
            subject_history: self.subject_history(uri, VIEW_LIMIT).await?,
            author_history,
            subject,
        })
    }

    /// The subject `uri` and its row id.
    async fn subject_with_id(&self, uri: &str) -> Result<(i64, QueuedSubject), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s WHERE s.uri = ?"
        ))
        .bind(uri)
        .fetch_optional(&self.reader)
        .await?
        .ok_or_else(|| StoreError::NotFound(uri.to_owned()))?;
        Ok((row.try_get("id")?, queued_from_row(&row)?))
    }

    /// The subject's reports, newest first.
    async fn reports(&self, subject_id: i64) -> Result<Vec<Report>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, s.uri, r.subject_cid, r.reason_type, r.reason, r.source, \
                    r.reporter_did, r.muted, r.created_us \
             FROM reports r JOIN subjects s ON s.id = r.subject_id \
             WHERE r.subject_id = ? ORDER BY r.id DESC LIMIT ?",
        )
        .bind(subject_id)
        .bind(i64::from(VIEW_LIMIT))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(report_from_row).collect()
    }

    async fn comments(&self, subject_id: i64) -> Result<Vec<Comment>, StoreError> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT id, author, body, created_us FROM comments \
             WHERE subject_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(subject_id)
        .bind(i64::from(VIEW_LIMIT))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, author, body, created_us)| Comment {
                id,
                author,
                body,
                created_us,
            })
            .collect())
    }

    async fn labels(&self, subject_id: i64) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT val FROM subject_labels WHERE subject_id = ? ORDER BY val")
                .bind(subject_id)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn author_subjects(
        &self,
        author: &str,
        except_id: i64,
    ) -> Result<Vec<QueuedSubject>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBJECT_COLUMNS} FROM subjects s \
             WHERE s.author_did = ? AND s.id != ? ORDER BY s.id DESC LIMIT ?"
        ))
        .bind(author)
        .bind(except_id)
        .bind(i64::from(VIEW_LIMIT))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(queued_from_row).collect()
    }
}

/// Adds the query's filters (each an `AND` clause) to `sql`.
fn push_filters(sql: &mut QueryBuilder<'_, Sqlite>, query: &QueueQuery, now_us: i64) {
    if let Some(kind) = query.kind {
        sql.push(" AND s.kind = ").push_bind(kind.as_str());
    }
    if let Some(collection) = &query.collection {
        sql.push(" AND s.collection = ")
            .push_bind(collection.clone());
    }
    if let Some(reason_type) = &query.reason_type {
        sql.push(
            " AND EXISTS (SELECT 1 FROM reports r WHERE r.subject_id = s.id \
             AND r.muted = 0 AND r.reason_type = ",
        )
        .push_bind(reason_type.clone())
        .push(")");
    }
    if let Some(reporter) = &query.reporter {
        sql.push(
            " AND EXISTS (SELECT 1 FROM reports r WHERE r.subject_id = s.id \
             AND r.reporter_did = ",
        )
        .push_bind(reporter.clone())
        .push(")");
    }
    if let Some(label) = &query.label {
        sql.push(
            " AND EXISTS (SELECT 1 FROM subject_labels l WHERE l.subject_id = s.id \
             AND l.val = ",
        )
        .push_bind(label.clone())
        .push(")");
    }
    // Older than `min_age` means it entered the queue at or before now - min_age.
    if let Some(min_age) = query.min_age {
        sql.push(" AND s.state_since_us <= ")
            .push_bind(now_us.saturating_sub(micros(min_age)));
    }
    if let Some(max_age) = query.max_age {
        sql.push(" AND s.state_since_us >= ")
            .push_bind(now_us.saturating_sub(micros(max_age)));
    }
    match &query.assigned {
        None => {}
        Some(Assignee::Nobody) => {
            sql.push(" AND s.assigned_to IS NULL");
        }
        Some(Assignee::Moderator(name)) => {
            sql.push(" AND s.assigned_to = ").push_bind(name.clone());
        }
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A cursor `"<state_since_us>.<id>"`.
fn parse_cursor(cursor: &str) -> Result<(i64, i64), StoreError> {
    let bad = || StoreError::BadCursor(cursor.to_owned());
    let (since, id) = cursor.split_once('.').ok_or_else(bad)?;
    Ok((
        since.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

fn queued_from_row(row: &SqliteRow) -> Result<QueuedSubject, StoreError> {
    let id: i64 = row.try_get("id")?;
    let uri: String = row.try_get("uri")?;
    let cid: Option<String> = row.try_get("cid")?;
    let subject = SubjectRef::parse(&uri, cid.as_deref()).map_err(|e| StoreError::Corrupt {
        table: "subjects",
        id,
        detail: e.to_string(),
    })?;
    let state: Option<String> = row.try_get("state")?;
    let reason_types: Option<String> = row.try_get("reason_types")?;
    let mut reason_types: Vec<String> = reason_types
        .iter()
        .flat_map(|list| list.split(','))
        .map(str::to_owned)
        .collect();
    reason_types.sort();
    Ok(QueuedSubject {
        subject,
        state: parse_state("subjects", id, state.as_deref())?,
        state_since_us: row.try_get("state_since_us")?,
        assigned_to: row.try_get("assigned_to")?,
        first_report_us: row.try_get("first_report_us")?,
        last_report_us: row.try_get("last_report_us")?,
        report_count: row.try_get("report_count")?,
        reason_types,
    })
}

fn report_from_row(row: &SqliteRow) -> Result<Report, StoreError> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "reports",
        id,
        detail,
    };
    let uri: String = row.try_get("uri")?;
    let cid: Option<String> = row.try_get("subject_cid")?;
    let reason_type: String = row.try_get("reason_type")?;
    let source: String = row.try_get("source")?;
    Ok(Report {
        id,
        subject: SubjectRef::parse(&uri, cid.as_deref()).map_err(|e| corrupt(e.to_string()))?,
        reason_type: ReasonType::parse(&reason_type).map_err(|e| corrupt(e.to_string()))?,
        reason: row.try_get("reason")?,
        source: ReportSource::from_parts(&source, row.try_get("reporter_did")?)
            .ok_or_else(|| corrupt(format!("source {source:?} does not fit its reporter")))?,
        muted: row.try_get("muted")?,
        created_us: row.try_get("created_us")?,
    })
}

/// Groups reports (newest first) by reason type, groups in order of their newest report.
fn group_reports(reports: Vec<Report>) -> Vec<ReportGroup> {
    let mut groups: Vec<ReportGroup> = Vec::new();
    for report in reports {
        match groups
            .iter_mut()
            .find(|g| g.reason_type == report.reason_type)
        {
            Some(group) => group.reports.push(report),
            None => groups.push(ReportGroup {
                reason_type: report.reason_type.clone(),
                reports: vec![report],
            }),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        assert_eq!(
            parse_cursor("1700000000000000.42").unwrap(),
            (1700000000000000, 42)
        );
        for bad in ["", "1", "1.x", "x.1", "1.2.3"] {
            assert!(
                matches!(parse_cursor(bad), Err(StoreError::BadCursor(_))),
                "{bad:?}"
            );
        }
    }
}
