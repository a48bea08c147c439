//! The Postgres index store (sqlx, migrations in `migrations/postgres`); its queries are
//! the shared ones in [`super::sql`].
//!
//! One pool serves the ingest writer and the readers (Postgres runs concurrent writers
//! itself). Text that feeds sort or compare (`created_at`, URIs, cursors) uses the `C`
//! collation, so pages come out byte-ordered whatever the database's locale, exactly as
//! from SQLite. A commit is durable when Postgres acknowledges it (its own `fsync`
//! settings apply).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The Postgres index store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    writer: PgPool,
    readers: PgPool,
    /// Whether any label is stored (see `sql.rs`, `Labelled`).
    labelled: super::sql::Labelled,
}

/// Connections in the pool: the ingest writer plus concurrent queries.
const POOL_SIZE: u32 = 8;

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, TLS per its
    /// `sslmode`) and brings the schema up to date.
    ///
    /// # Errors
    /// If the URL is malformed, the server cannot be reached or refuses the login, or a
    /// migration fails.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("atelier-appview");
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        let labelled = load_labelled(&pool).await?;
        Ok(PostgresStore {
            writer: pool.clone(),
            readers: pool,
            labelled,
        })
    }

    /// Closes the pool (waits for in-flight work).
    pub async fn close(&self) {
        self.writer.close().await;
    }
}

super::sql::sql_store!(PostgresStore, Postgres);
