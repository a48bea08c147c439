//! The SQLite index store (sqlx, WAL, migrations in `migrations/sqlite`); its queries are
//! the shared ones in [`super::sql`].
//!
//! One writer connection does every [`Store::apply`] (SQLite allows one writer at a time;
//! a single connection avoids lock waits between our own writers), readers share a small
//! pool. WAL with `synchronous=NORMAL`: a killed process loses nothing committed; a power
//! cut may lose the last transactions, rows and cursor together, which the stream replays.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite index store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    /// Whether any label is stored (see `sql.rs`, `Labelled`).
    labelled: super::sql::Labelled,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// If the file cannot be opened or a migration fails.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 64 MB of page cache per connection (SQLite's default is 2 MB, a small part of
            // an index that reaches about 1 GB per million records) and reads through mmap.
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "1073741824");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let labelled = load_labelled(&readers).await?;
        Ok(SqliteStore {
            writer,
            readers,
            labelled,
        })
    }

    /// Closes both pools (waits for in-flight work).
    pub async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}

super::sql::sql_store!(SqliteStore, Sqlite);
