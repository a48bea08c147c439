//! The auto-flagger's stream cursors: where it is in each `subscribeRepos` source.

use super::{ModerationStore, StoreError};

impl ModerationStore {
    /// The last sequence number handled from `source`, if any.
    pub async fn stream_cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT cursor FROM stream_cursors WHERE source = ?")
                .bind(source)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    /// Records that everything up to `cursor` from `source` has been handled.
    pub async fn set_stream_cursor(&self, source: &str, cursor: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO stream_cursors (source, cursor) VALUES (?, ?) \
             ON CONFLICT(source) DO UPDATE SET cursor = excluded.cursor",
        )
        .bind(source)
        .bind(cursor)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
