//! Adding reports. Rules, applied in the report's transaction:
//! - a report from a muted reporter is stored, marked muted, and changes nothing else: the
//!   subject is not raised, a resolved subject stays resolved, and the subject's report
//!   count and times leave it out;
//! - any other report counts: a subject in no queue or resolved moves to `unreviewed` (a new
//!   report on a decided subject deserves a fresh look), an `unreviewed` or `escalated` one
//!   stays where it is;
//! - an auto-flag repeating one already stored (same subject, version and masked match) is
//!   not stored again: re-indexing the same record must not reopen what a moderator closed.

use super::{ModerationStore, StoreError, WriteTx};
use crate::moderation::report::{NewReport, Report};

impl ModerationStore {
    /// Checks and stores a report, and updates its subject's queue state (see the module
    /// docs). Returns the stored report (an earlier one for a repeated auto-flag).
    pub async fn add_report(&self, report: NewReport) -> Result<Report, StoreError> {
        report.check()?;
        let mut tx = self.begin().await?;
        let subject = tx.subject(&report.subject).await?;
        if let Some(earlier) = tx.repeated_auto_flag(subject.id, &report).await? {
            return Ok(earlier);
        }
        let muted = match report.source.reporter() {
            Some(did) => tx.is_muted(did).await?,
            None => false,
        };
        let id = tx.insert_report(subject.id, &report, muted).await?;
        if !muted {
            tx.count_report(subject.id).await?;
        }
        let created_us = tx.now_us();
        tx.commit().await?;
        Ok(Report {
            id,
            subject: report.subject,
            reason_type: report.reason_type,
            reason: report.reason,
            source: report.source,
            muted,
            created_us,
        })
    }
}

impl WriteTx {
    /// The stored auto-flag `report` repeats, if it is one.
    async fn repeated_auto_flag(
        &mut self,
        subject_id: i64,
        report: &NewReport,
    ) -> Result<Option<Report>, StoreError> {
        if report.source.reporter().is_some() {
            return Ok(None);
        }
        let earlier: Option<(i64, i64)> = sqlx::query_as(
            "SELECT id, created_us FROM reports WHERE subject_id = ? AND source = 'autoflag' \
             AND reason_type = ? AND reason IS ? AND subject_cid IS ? ORDER BY id LIMIT 1",
        )
        .bind(subject_id)
        .bind(report.reason_type.as_str())
        .bind(&report.reason)
        .bind(report.subject.cid())
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(earlier.map(|(id, created_us)| Report {
            id,
            subject: report.subject.clone(),
            reason_type: report.reason_type.clone(),
            reason: report.reason.clone(),
            source: report.source.clone(),
            muted: false,
            created_us,
        }))
    }

    /// Whether `did` is a muted reporter.
    async fn is_muted(&mut self, did: &str) -> Result<bool, StoreError> {
        let muted: Option<i64> = sqlx::query_scalar("SELECT 1 FROM muted_reporters WHERE did = ?")
            .bind(did)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(muted.is_some())
    }

    async fn insert_report(
        &mut self,
        subject_id: i64,
        report: &NewReport,
        muted: bool,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO reports \
             (subject_id, subject_cid, reason_type, reason, source, reporter_did, muted, created_us) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(subject_id)
        .bind(report.subject.cid())
        .bind(report.reason_type.as_str())
        .bind(&report.reason)
        .bind(report.source.name())
        .bind(report.source.reporter())
        .bind(muted)
        .bind(self.now_us)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(id)
    }

    /// Counts a report against its subject and raises the subject if it was in no queue or
    /// resolved. (`SET` expressions all read the row as it was, so `state_since_us` sees the
    /// old `state`.)
    async fn count_report(&mut self, subject_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE subjects SET \
                 report_count = report_count + 1, \
                 first_report_us = COALESCE(first_report_us, ?1), \
                 last_report_us = ?1, \
                 state = CASE WHEN state IS NULL OR state = 'resolved' \
                     THEN 'unreviewed' ELSE state END, \
                 state_since_us = CASE WHEN state IS NULL OR state = 'resolved' \
                     THEN ?1 ELSE state_since_us END \
             WHERE id = ?2",
        )
        .bind(self.now_us)
        .bind(subject_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
