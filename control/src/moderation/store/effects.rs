//! What moderation actions change in the store, each a step inside a [`WriteTx`] that
//! also appends the action's audit entry. The executor (`moderation::action`) decides which
//! steps an action takes; these only write.

use super::{QueueState, StoreError, SubjectRow, WriteTx};

/// A subject's move between queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StateChange {
    /// The state it left (`None`: it was in no queue).
    pub(crate) from: Option<QueueState>,
    /// The state it entered.
    pub(crate) to: QueueState,
}

impl WriteTx {
    /// Moves the subject to `state`. Returns the move, or `None` when it was already there
    /// (its `state_since_us` is then kept: the time in the queue runs on).
    pub(crate) async fn set_state(
        &mut self,
        subject: SubjectRow,
        state: QueueState,
    ) -> Result<Option<StateChange>, StoreError> {
        if subject.state == Some(state) {
            return Ok(None);
        }
        sqlx::query("UPDATE subjects SET state = ?, state_since_us = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(self.now_us)
            .bind(subject.id)
            .execute(&mut *self.tx)
            .await?;
        Ok(Some(StateChange {
            from: subject.state,
            to: state,
        }))
    }

    /// Assigns the subject to `moderator`, or to nobody.
    pub(crate) async fn assign(
        &mut self,
        subject: SubjectRow,
        moderator: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE subjects SET assigned_to = ? WHERE id = ?")
            .bind(moderator)
            .bind(subject.id)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Adds a comment by `author`; returns its id.
    pub(crate) async fn comment(
        &mut self,
        subject: SubjectRow,
        author: &str,
        body: &str,
    ) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO comments (subject_id, author, body, created_us) \
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(subject.id)
        .bind(author)
        .bind(body)
        .bind(self.now_us)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(id)
    }

    /// Mutes (`true`) or unmutes a reporter. Returns whether that changed anything.
    pub(crate) async fn set_muted(
        &mut self,
        did: &str,
        muted: bool,
        by: &str,
    ) -> Result<bool, StoreError> {
        let query = if muted {
            sqlx::query(
                "INSERT INTO muted_reporters (did, muted_by, muted_us) VALUES (?, ?, ?) \
                 ON CONFLICT (did) DO NOTHING",
            )
            .bind(did)
            .bind(by)
            .bind(self.now_us)
        } else {
            sqlx::query("DELETE FROM muted_reporters WHERE did = ?").bind(did)
        };
        let result = query.execute(&mut *self.tx).await?;
        Ok(result.rows_affected() > 0)
    }

    /// Records that moderation applied (`applied`) or negated label `val` on the subject,
    /// for the queue's label filter.
    pub(crate) async fn mirror_label(
        &mut self,
        subject: SubjectRow,
        val: &str,
        applied: bool,
    ) -> Result<(), StoreError> {
        let query = if applied {
            sqlx::query(
                "INSERT INTO subject_labels (subject_id, val, applied_us) VALUES (?, ?, ?) \
                 ON CONFLICT (subject_id, val) DO UPDATE SET applied_us = excluded.applied_us",
            )
            .bind(subject.id)
            .bind(val)
            .bind(self.now_us)
        } else {
            sqlx::query("DELETE FROM subject_labels WHERE subject_id = ? AND val = ?")
                .bind(subject.id)
                .bind(val)
        };
        query.execute(&mut *self.tx).await?;
        Ok(())
    }
}
