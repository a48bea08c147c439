//! The console's own database: its accounts, their sessions and failed sign-ins, in one
//! SQLite file (`DATA_DIR/admin/admin.sqlite`; sqlx, WAL, migrations in
//! `control/src/admin/migrations`, numbered from 1 because the file is the console's alone).
//!
//! This module holds the accounts ([`User`], [`UserStore`]'s user methods); sessions
//! ([`super::sessions`]) and login failures ([`super::lockout`]) add their methods to the
//! same [`UserStore`], because they live in the same file and transactions span them
//! (disabling a user ends their sessions in the same commit).
//!
//! Password hashes never leave this module: [`User`] has none, and the only question the
//! store answers about a password is [`UserStore::verify_password`]. That answer takes the
//! same time whether the name exists or not: for a name that is no account, or a disabled
//! one, the password is still checked against a hash (a dummy made when the store opens),
//! so timing does not tell which names exist.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::Semaphore;

use crate::config::{BootstrapUser, Role, Secret};

use super::lockout::LockKey;
use super::password::{self, HashError, PasswordRule};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./src/admin/migrations");

/// The longest user name (as `atelier check` allows for bootstrap users).
const MAX_NAME_LEN: usize = 64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("admin database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("admin database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database file's directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A password could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A hashing task on the blocking pool panicked or was cancelled.
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No user has this name.
    #[error("there is no user {name:?}")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A user with this name exists already.
    #[error("a user {name:?} exists already")]
    Exists {
        /// The name.
        name: String,
    },
    /// The input breaks a rule; the message is meant for the person who typed it.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A stored row makes no sense (a bug or a damaged database).
    #[error("admin database: user {name:?} is malformed: {detail}")]
    Corrupt {
        /// The user.
        name: String,
        /// What is wrong.
        detail: String,
    },
}

/// Input that breaks a rule. The messages are shown on the pages as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// The user name has the wrong length or characters.
    #[error(
        "{0:?} is not a valid user name: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.' \
         (not only dots)."
    )]
    Name(String),
    /// A label value is not one Atelier issues.
    #[error("{value:?} is not a label value: {reason}.")]
    Label {
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// Only moderators are limited to label values.
    #[error("Only moderators can be limited to some label values.")]
    LabelsNeedModerator,
    /// A new password breaks a rule.
    #[error(transparent)]
    Password(#[from] PasswordRule),
}

/// A console account. It carries no password hash: see [`UserStore::verify_password`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// What the user may do (see [`super::access`]).
    pub role: Role,
    /// The label values a moderator may apply; `None`: every value.
    pub allowed_labels: Option<Vec<String>>,
    /// The password was set by someone else (bootstrap, a reset, a new account): the user
    /// must choose their own before doing anything.
    pub must_change_password: bool,
    /// Disabled users cannot sign in and have no sessions.
    pub disabled: bool,
    /// When the account was created (Unix seconds).
    pub created_at: i64,
    /// When the account last changed (Unix seconds).
    pub updated_at: i64,
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Label values a moderator is limited to (`None`: every value; only for moderators).
    pub allowed_labels: Option<Vec<String>>,
    /// The first password. The user must change it at first sign-in.
    pub password: Secret,
}

/// The console's database. Cheap to clone (a pool and a shared string).
#[derive(Debug, Clone)]
pub struct UserStore {
    pub(super) pool: SqlitePool,
    /// A hash of a random password, checked when the name is no account, so that a failed
    /// sign-in costs the same either way. Made at open with the current parameters.
    dummy_hash: Arc<str>,
    /// Bounds the password hashes computed at once to the number of cores: each takes
    /// 19 MiB and a core for tens of milliseconds, and sign-in requests must not be able
    /// to take all of the machine's memory by arriving together.
    hashing: Arc<Semaphore>,
}

/// `DATA_DIR/admin/admin.sqlite`.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin").join("admin.sqlite")
}

/// The current time in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl UserStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<UserStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL: a killed process loses nothing committed; a power cut may lose
            // the last sign-in or failure count, which is harmless.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            // Every page reads the session and its user; four connections are plenty for a
            // console a handful of moderators use.
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        let cores = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        let hashing = Arc::new(Semaphore::new(cores));
        let dummy = password::generate();
        let dummy_hash = hash_blocking(&hashing, Secret::new(dummy)).await?;
        Ok(UserStore {
            pool,
            dummy_hash: dummy_hash.into(),
            hashing,
        })
    }

    /// Closes the pool (waits for in-flight work).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates an account whose password must be changed at first sign-in.
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        check_name(&new.name)?;
        let allowed_labels = label_limit_for(new.role, new.allowed_labels)?;
        let hash = hash_blocking(&self.hashing, new.password).await?;
        let now = unix_now();
        let result = sqlx::query(
            "INSERT INTO users (name, role, password_hash, must_change_password, disabled, \
             allowed_labels, created_at, updated_at) VALUES (?, ?, ?, 1, 0, ?, ?, ?)",
        )
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(&hash)
        .bind(allowed_labels.as_ref().map(|l| l.join(",")))
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(User {
                name: new.name,
                role: new.role,
                allowed_labels,
                must_change_password: true,
                disabled: false,
                created_at: now,
                updated_at: now,
            }),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
                Err(StoreError::Exists { name: new.name })
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Creates each bootstrap user that does not exist yet, with `password` (which they
    /// must change at first sign-in). Returns the names created.
    pub async fn bootstrap(
        &self,
        users: &[BootstrapUser],
        password: &Secret,
    ) -> Result<Vec<String>, StoreError> {
        let mut created = Vec::new();
        for user in users {
            if self.user(&user.name).await?.is_some() {
                continue;
            }
            let new = NewUser {
                name: user.name.clone(),
                role: user.role,
                allowed_labels: None,
                password: password.clone(),
            };
            match self.create_user(new).await {
                Ok(_) => created.push(user.name.clone()),
                // Another process (the CLI) created it in between: it exists, as wanted.
                Err(StoreError::Exists { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(created)
    }

    /// The user called `name`.
    pub async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// The user called `name` if `password` is theirs and they are not disabled. Takes the
    /// same time whether or not the user exists (see the module header).
    pub async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (user, hash) = match &row {
            Some(row) => (Some(user_from_row(row)?), row.try_get("password_hash")?),
            None => (None, self.dummy_hash.to_string()),
        };
        let password = password.to_owned();
        let matches = limited(&self.hashing, move || password::verify(&password, &hash)).await?;
        Ok(user.filter(|user| matches && !user.disabled))
    }

    /// Changes a user's role and label limit (which must be `None` unless the role is
    /// moderator).
    pub async fn set_role(
        &self,
        name: &str,
        role: Role,
        allowed_labels: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        let allowed_labels = label_limit_for(role, allowed_labels)?;
        let done = sqlx::query(
            "UPDATE users SET role = ?, allowed_labels = ?, updated_at = ? WHERE name = ?",
        )
        .bind(role.as_str())
        .bind(allowed_labels.map(|l| l.join(",")))
        .bind(unix_now())
        .bind(name)
        .execute(&self.pool)
        .await?;
        found(done.rows_affected(), name)
    }

    /// Disables or enables a user. Disabling ends every session of theirs at once.
    pub async fn set_disabled(&self, name: &str, disabled: bool) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE name = ?")
            .bind(disabled)
            .bind(unix_now())
            .bind(name)
            .execute(&mut *tx)
            .await?;
        found(done.rows_affected(), name)?;
        if disabled {
            end_sessions(&mut tx, name, None).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives a user a new generated password that they must change at their next sign-in,
    /// ends their sessions and lifts a lockout of their name (an admin's reset is how a
    /// locked-out moderator gets back in before the lock ends). Returns the password (to
    /// be shown once).
    pub async fn reset_password(&self, name: &str) -> Result<Secret, StoreError> {
        let new = Secret::new(password::generate());
        self.store_password(name, new.clone(), true, None).await?;
        self.clear_failures(&LockKey::User(name)).await?;
        Ok(new)
    }

    /// Sets the password a user chose (checked against [`password::check_new`] by the
    /// caller) and clears `must_change_password`. Every other session of theirs ends; the
    /// one with `keep_session` (the SHA-256 of its token) stays.
    pub async fn set_password(
        &self,
        name: &str,
        new: Secret,
        keep_session: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.store_password(name, new, false, keep_session).await
    }

    async fn store_password(
        &self,
        name: &str,
        new: Secret,
        must_change: bool,
        keep_session: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let hash = hash_blocking(&self.hashing, new).await?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? \
             WHERE name = ?",
        )
        .bind(&hash)
        .bind(must_change)
        .bind(unix_now())
        .bind(name)
        .execute(&mut *tx)
        .await?;
        found(done.rows_affected(), name)?;
        end_sessions(&mut tx, name, keep_session).await?;
        tx.commit().await?;
        Ok(())
    }
}

const USER_COLUMNS: &str = "name, role, allowed_labels, must_change_password, disabled, \
                            created_at, updated_at";

fn user_from_row(row: &SqliteRow) -> Result<User, StoreError> {
    let name: String = row.try_get("name")?;
    let role: String = row.try_get("role")?;
    let role = role.parse::<Role>().map_err(|err| StoreError::Corrupt {
        name: name.clone(),
        detail: err.to_string(),
    })?;
    let allowed_labels: Option<String> = row.try_get("allowed_labels")?;
    Ok(User {
        name,
        role,
        allowed_labels: allowed_labels.map(|l| {
            l.split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        must_change_password: row.try_get("must_change_password")?,
        disabled: row.try_get("disabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Deletes `name`'s sessions except the one whose token hash is `keep`.
async fn end_sessions(
    tx: &mut Transaction<'_, Sqlite>,
    name: &str,
    keep: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE user_name = ? AND token_hash IS NOT ?")
        .bind(name)
        .bind(keep)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn found(rows: u64, name: &str) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NotFound {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Runs `work` (a password hash or check) on the blocking pool once `hashing` has a
/// permit for it.
async fn limited<T: Send + 'static>(
    hashing: &Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    // The semaphore is never closed, so acquiring only waits; were it closed, the work
    // would run unbounded rather than not at all.
    let _permit = hashing.acquire().await.ok();
    Ok(tokio::task::spawn_blocking(work).await?)
}

async fn hash_blocking(hashing: &Semaphore, password: Secret) -> Result<String, StoreError> {
    Ok(limited(hashing, move || password::hash(password.expose())).await??)
}

/// Checks a user name: 1 to 64 ASCII letters, digits, `-`, `_` or `.` (the rule
/// `atelier check` applies to bootstrap users), and not only dots (the name is a path
/// segment of the console's URLs, where `.` and `..` mean something else).
pub fn check_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.chars().all(|c| c == '.');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::Name(name.to_owned()))
    }
}

/// Parses a label limit as typed in a form or on the command line: values separated by
/// commas or spaces, each one Atelier may issue. Nothing typed means no limit (`None`).
pub fn parse_label_limit(text: &str) -> Result<Option<Vec<String>>, InvalidInput> {
    let mut values: Vec<String> = Vec::new();
    for value in text.split([',', ' ', '\t', '\r', '\n']) {
        if value.is_empty() || values.iter().any(|v| v == value) {
            continue;
        }
        crate::labeler::label::check_value(value).map_err(|err| InvalidInput::Label {
            value: value.to_owned(),
            reason: label_reason(&err),
        })?;
        values.push(value.to_owned());
    }
    Ok((!values.is_empty()).then_some(values))
}

/// The label error's reason without its field prefix (the page names the field itself).
fn label_reason(err: &crate::labeler::LabelError) -> String {
    match err {
        crate::labeler::LabelError::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// The label limit as stored for `role`: only moderators have one.
fn label_limit_for(
    role: Role,
    allowed_labels: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, InvalidInput> {
    match allowed_labels {
        Some(_) if role != Role::Moderator => Err(InvalidInput::LabelsNeedModerator),
        limit => Ok(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for good in ["admin", "a", "Mod_1.x-y", &"n".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "has space", "slash/", "ünï", ".", "..", &"n".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    /// Parses `text` as a label limit and compares it, written out, with `expect`.
    fn check_limit(text: &str, expect: &str) {
        let actual = match parse_label_limit(text) {
            Ok(None) => "every label".to_owned(),
            Ok(Some(values)) => values.join(" "),
            Err(err) => err.to_string(),
        };
        assert_eq!(actual, expect, "{text:?}");
    }

    #[test]
    fn label_limits_as_typed() {
        check_limit("", "every label");
        check_limit("  , ", "every label");
        check_limit("spam", "spam");
        check_limit("spam, nudity\n!warn spam", "spam nudity !warn");
        check_limit(
            "Spam",
            "\"Spam\" is not a label value: 'S' is not allowed: use lowercase a-z, 0-9 and '-' \
             (with an optional leading '!').",
        );
        check_limit(
            "-spam",
            "\"-spam\" is not a label value: must not start or end with '-'.",
        );
    }

    #[test]
    fn only_moderators_have_label_limits() {
        let limit = Some(vec!["spam".to_owned()]);
        assert_eq!(
            label_limit_for(Role::Moderator, limit.clone()),
            Ok(limit.clone())
        );
        assert_eq!(
            label_limit_for(Role::Triage, limit.clone()),
            Err(InvalidInput::LabelsNeedModerator)
        );
        assert_eq!(label_limit_for(Role::Admin, None), Ok(None));
    }
}
