//! Sessions: who is signed in, kept on the server.
//!
//! A session is a random 32-byte token, sent to the browser in the session cookie
//! ([`super::cookies::SESSION`]). The database keeps only the token's SHA-256: someone
//! who reads the database (or a backup of it) still cannot present a session. Each session
//! also has its own CSRF token ([`super::csrf`]), which every form carries.
//!
//! A session ends when it has been idle for [`SessionPolicy::idle`], when it is older than
//! [`SessionPolicy::absolute`] (however busy), at sign-out, and when its user is disabled or
//! their password changes (see [`super::store`]). Every lookup checks both limits, so an
//! expired session is never honoured; [`UserStore::delete_expired_sessions`] only clears
//! the rows nobody will present again.
//!
//! Sessions are rows in SQLite, so a restart of the console signs nobody out.

use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::config::Secret;

use super::store::{StoreError, User, UserStore, unix_now};

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused for this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, however busy it is.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(60 * 60),
            absolute: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// A signed-in user's session, as looked up for one request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user, as stored now (a role change applies to the next request).
    pub user: User,
    /// The session's CSRF token: every form must carry it.
    pub csrf: String,
    /// SHA-256 of the session token (the row's key).
    pub(crate) token_hash: Vec<u8>,
}

/// A session just created: the token goes into the cookie and is never seen again.
#[derive(Debug)]
pub struct NewSession {
    /// The session token (the cookie's value).
    pub token: Secret,
}

/// 32 random bytes, base64url without padding: session tokens and CSRF tokens.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl UserStore {
    /// Starts a session for the user `name`.
    pub async fn create_session(&self, name: &str) -> Result<NewSession, StoreError> {
        let token = random_token();
        let now = unix_now();
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_name, csrf_token, created_at, last_seen_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash(&token))
        .bind(name)
        .bind(random_token())
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(NewSession {
            token: Secret::new(token),
        })
    }

    /// The live session whose token is `token`, marked as used now; `None` when there is
    /// none, it has expired under `policy` (it is then deleted), or its user is disabled.
    pub async fn session(
        &self,
        token: &str,
        policy: &SessionPolicy,
    ) -> Result<Option<Session>, StoreError> {
        let hash = token_hash(token);
        let row = sqlx::query(
            "SELECT s.csrf_token, s.created_at, s.last_seen_at, u.name \
             FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = ?",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let now = unix_now();
        let created_at: i64 = row.try_get("created_at")?;
        let last_seen_at: i64 = row.try_get("last_seen_at")?;
        if expired(policy, now, created_at, last_seen_at) {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(&hash)
                .execute(&self.pool)
                .await?;
            return Ok(None);
        }
        let name: String = row.try_get("name")?;
        let Some(user) = self.user(&name).await?.filter(|u| !u.disabled) else {
            return Ok(None);
        };
        if now > last_seen_at {
            sqlx::query("UPDATE sessions SET last_seen_at = ? WHERE token_hash = ?")
                .bind(now)
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session {
            user,
            csrf: row.try_get("csrf_token")?,
            token_hash: hash,
        }))
    }

    /// Ends the session whose token is `token` (sign-out). Nothing happens if there is none.
    pub async fn end_session(&self, token: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every session that has expired under `policy`; returns how many.
    pub async fn delete_expired_sessions(&self, policy: &SessionPolicy) -> Result<u64, StoreError> {
        let now = unix_now();
        let done = sqlx::query("DELETE FROM sessions WHERE last_seen_at < ? OR created_at < ?")
            .bind(now.saturating_sub(seconds(policy.idle)))
            .bind(now.saturating_sub(seconds(policy.absolute)))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// Whether a session created at `created_at` and last used at `last_seen_at` has ended by
/// `now` (all Unix seconds).
fn expired(policy: &SessionPolicy, now: i64, created_at: i64, last_seen_at: i64) -> bool {
    now.saturating_sub(last_seen_at) > seconds(policy.idle)
        || now.saturating_sub(created_at) > seconds(policy.absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let policy = SessionPolicy {
            idle: Duration::from_secs(100),
            absolute: Duration::from_secs(1000),
        };
        // (now, created_at, last_seen_at, expired)
        let cases = [
            (1000, 1000, 1000, false),
            (1100, 1000, 1000, false),
            (1101, 1000, 1000, true),
            (1950, 1000, 1900, false),
            (2000, 1000, 1990, false),
            (2001, 1000, 1990, true),
        ];
        for (now, created, seen, want) in cases {
            assert_eq!(
                expired(&policy, now, created, seen),
                want,
                "{now} {created} {seen}"
            );
        }
    }

    #[test]
    fn tokens_are_random_and_urlsafe() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, random_token());
        assert_eq!(token_hash(&a).len(), 32);
    }
}
