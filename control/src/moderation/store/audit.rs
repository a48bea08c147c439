//! The audit log: one entry per subject an action touched (or failed on), appended in the
//! action's own transaction, never changed (the schema's triggers refuse `UPDATE` and
//! `DELETE`). Read back by time range a page at a time, and exported as JSON Lines or CSV.
//!
//! Entries are written as they are read: a row is turned into [`AuditEntry`], and the
//! export forms are built field by field, not derived, so the file format stays what this
//! module says whatever the row type grows.

use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{ModerationStore, StoreError, WriteTx};
use crate::labeler::label::format_datetime;
use crate::moderation::subject::SubjectRef;

/// Entries read per query while exporting.
const EXPORT_PAGE: u32 = 500;

/// The CSV export's columns, in order.
const CSV_HEADER: &str = "id,at,actor,action,outcome,batch,subject,author,note,details\r\n";

/// Whether the action took effect on the entry's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did.
    Done,
    /// It did not; `details.error` says why (a bulk action stopped here).
    Failed,
}

impl Outcome {
    /// The name stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Failed => "failed",
        }
    }

    fn parse(name: &str) -> Option<Outcome> {
        match name {
            "done" => Some(Outcome::Done),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// An entry to append (the executor builds these).
#[derive(Debug)]
pub(crate) struct NewEntry<'a> {
    pub(crate) actor: &'a str,
    pub(crate) action: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) batch: &'a str,
    pub(crate) subject: &'a SubjectRef,
    /// A JSON object: what the action did to this subject.
    pub(crate) details: Value,
    pub(crate) note: Option<&'a str>,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Increasing, never reused: the log's order.
    pub id: i64,
    /// When, microseconds since the epoch.
    pub at_us: i64,
    /// The console user who acted.
    pub actor: String,
    /// The action's name (`Action::name`).
    pub action: String,
    /// Whether it took effect.
    pub outcome: Outcome,
    /// Shared by the entries of one (bulk) action.
    pub batch: String,
    /// The subject's DID or `at://` URI.
    pub subject: String,
    /// The DID of the subject's account.
    pub author: String,
    /// What happened: a JSON object (label seq and cts, state change, assignee, error...).
    pub details: Value,
    /// The moderator's reason, if given.
    pub note: Option<String>,
}

impl AuditEntry {
    /// The JSON Lines form (one object; `at` as RFC 3339).
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "at": format_datetime(self.at_us),
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome.as_str(),
            "batch": self.batch,
            "subject": self.subject,
            "author": self.author,
            "note": self.note,
            "details": self.details,
        })
    }

    /// The CSV row (RFC 4180, CRLF-terminated), in the export header's columns; `details` is
    /// its JSON text.
    pub fn to_csv_row(&self) -> String {
        let fields = [
            self.id.to_string(),
            format_datetime(self.at_us),
            self.actor.clone(),
            self.action.clone(),
            self.outcome.as_str().to_owned(),
            self.batch.clone(),
            self.subject.clone(),
            self.author.clone(),
            self.note.clone().unwrap_or_default(),
            self.details.to_string(),
        ];
        let mut row = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        row.push_str("\r\n");
        row
    }
}

/// Quotes a CSV field when it needs it, and defuses spreadsheet formulas: a field starting
/// with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` (notes are free text, and an
/// export is likely to be opened in a spreadsheet).
fn csv_field(value: &str) -> String {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let value = if formula {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// A time range of the log: `from_us` inclusive, `to_us` exclusive; open ends read all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditRange {
    /// The earliest entry time, microseconds since the epoch.
    pub from_us: Option<i64>,
    /// The time entries must be before.
    pub to_us: Option<i64>,
}

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    JsonLines,
    /// A header row, then one row per entry.
    Csv,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the output failed.
    #[error("writing the audit export failed: {0}")]
    Write(#[from] std::io::Error),
}

impl WriteTx {
    /// Appends an audit entry; returns its id.
    pub(crate) async fn audit(&mut self, entry: NewEntry<'_>) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO audit_log \
             (at_us, actor, action, outcome, batch, subject, author_did, details, note) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(self.now_us)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.outcome.as_str())
        .bind(entry.batch)
        .bind(entry.subject.uri())
        .bind(entry.subject.author())
        .bind(entry.details.to_string())
        .bind(entry.note)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(id)
    }
}

/// The columns every read selects, in [`entry_from_row`]'s order.
const COLUMNS: &str =
    "id, at_us, actor, action, outcome, batch, subject, author_did, details, note";

impl ModerationStore {
    /// Up to `limit` entries in `range` with an id above `after` (the previous page's last
    /// id), oldest first.
    pub async fn audit_entries(
        &self,
        range: AuditRange,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE id > ? AND at_us >= ? AND at_us < ? ORDER BY id LIMIT ?"
        ))
        .bind(after.unwrap_or(0))
        .bind(range.from_us.unwrap_or(i64::MIN))
        .bind(range.to_us.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The most recent `limit` entries about `subject` (a DID or `at://` URI), newest first.
    pub async fn subject_history(
        &self,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.history("subject = ?", subject, limit).await
    }

    /// The most recent `limit` entries about the account `did` or any of its records,
    /// newest first.
    pub async fn author_history(
        &self,
        did: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.history("author_did = ?", did, limit).await
    }

    async fn history(
        &self,
        condition: &str,
        value: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE {condition} ORDER BY id DESC LIMIT ?"
        ))
        .bind(value)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// Writes every entry in `range` to `out` as `format`, oldest first, a page at a time;
    /// returns how many. `out` is flushed at the end.
    pub async fn export_audit<W: AsyncWrite + Unpin>(
        &self,
        range: AuditRange,
        format: ExportFormat,
        out: &mut W,
    ) -> Result<u64, ExportError> {
        if format == ExportFormat::Csv {
            out.write_all(CSV_HEADER.as_bytes()).await?;
        }
        let mut count = 0;
        let mut after = None;
        loop {
            let page = self.audit_entries(range, after, EXPORT_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let mut text = String::new();
            for entry in &page {
                match format {
                    ExportFormat::JsonLines => {
                        text.push_str(&entry.to_json().to_string());
                        text.push('\n');
                    }
                    ExportFormat::Csv => text.push_str(&entry.to_csv_row()),
                }
            }
            out.write_all(text.as_bytes()).await?;
            count += page.len() as u64;
        }
        out.flush().await?;
        Ok(count)
    }
}

fn entry_from_row(row: &SqliteRow) -> Result<AuditEntry, StoreError> {
    let id: i64 = row.try_get("id")?;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: "audit_log",
        id,
        detail,
    };
    let outcome: String = row.try_get("outcome")?;
    let details: String = row.try_get("details")?;
    let details = match serde_json::from_str::<Value>(&details) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(_) | Err(_) => return Err(corrupt("details is not a JSON object".to_owned())),
    };
    Ok(AuditEntry {
        id,
        at_us: row.try_get("at_us")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| corrupt(format!("unknown outcome {outcome:?}")))?,
        batch: row.try_get("batch")?,
        subject: row.try_get("subject")?,
        author: row.try_get("author_did")?,
        details,
        note: row.try_get("note")?,
    })
}

/// A details object from key/value pairs, leaving out `null`s.
pub(crate) fn details<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields() {
        let cases = [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("-1", "'-1"),
            ("@here", "'@here"),
            ("", ""),
        ];
        for (value, expect) in cases {
            assert_eq!(csv_field(value), expect, "{value:?}");
        }
    }
}
