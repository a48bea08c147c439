//! The session store: OAuth sessions and pending authorizations, encrypted at rest.
//!
//! Storage policy:
//! - The browser only ever holds an opaque session id (32 random bytes, base64url) in an
//!   HttpOnly cookie. The database keys rows by the id's SHA-256, so a copy of the
//!   database does not hand out working cookies.
//! - Everything secret (access and refresh tokens, the DPoP private key, PKCE verifiers,
//!   nonces) is in one sealed blob per row: AES-256-GCM under a 32-byte key read from a
//!   hex key file (e.g. the `oauth_token_key` secret). The blob starts with a version byte
//!   and the key id, then the 96-bit random nonce and the ciphertext with its tag.
//! - The associated data binds a blob to its row (`kind`, row id and key id), so a blob
//!   copied onto another row, or a header edited to name another key, fails to open.
//!   A tampered blob or a wrong key is [`StoreError::Decrypt`]; a key id this process
//!   was not given is [`StoreError::UnknownKey`].
//! - Key rotation: [`SessionKeys`] has one current key (new writes) and any number of
//!   older ones (reads). A row read with an old key is rewritten with the current key the
//!   next time it is saved; [`SessionStore::reseal_all`] rewrites them all at once.
//! - Expired and revoked rows are deleted by [`SessionStore::cleanup`]; reading one gives
//!   [`StoreError::Expired`] or [`StoreError::Revoked`].
//!
//! The at-rest format (`SealedSession`, `SealedPending`) is private to this module; it is
//! versioned by the blob's first byte.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use data_encoding::{BASE64URL_NOPAD, HEXLOWER_PERMISSIVE};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::client::{PendingAuthorization, Session};
use super::dpop::{DpopKey, now_unix, random_bytes, sha256_b64};
use super::metadata::AuthServerMetadata;

/// The schema (tables created if missing).
const SCHEMA: &str = include_str!("../../migrations/oauth/0001_oauth_sessions.sql");
/// The sealed blob's format version.
const FORMAT_V1: u8 = 1;
/// How long a pending authorization may wait for its callback.
const PENDING_TTL_SECS: i64 = 15 * 60;
/// How long a session row lives (the profile's limit for public clients' refresh).
pub const SESSION_TTL_SECS: i64 = 14 * 24 * 60 * 60;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("session database: {0}")]
    Database(#[from] sqlx::Error),
    /// No such session (or pending authorization).
    #[error("no such session")]
    NotFound,
    /// The session was signed out.
    #[error("the session was signed out")]
    Revoked,
    /// The session (or pending authorization) is past its lifetime.
    #[error("the session has expired")]
    Expired,
    /// The blob names a key this process does not have.
    #[error("the session is sealed with key {key_id:?}, which is not configured")]
    UnknownKey {
        /// The key id in the blob.
        key_id: String,
    },
    /// Decryption failed: the blob was altered, moved to another row, or the key is wrong.
    #[error("the sealed session does not open (tampered, or the wrong key)")]
    Decrypt,
    /// The blob is not in a known format.
    #[error("the sealed session is malformed: {0}")]
    Malformed(&'static str),
    /// The key file or key is unusable.
    #[error("session key {source_name}: {reason}")]
    Key {
        /// The file or key id.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The random generator or a key failed.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl From<super::OAuthError> for StoreError {
    fn from(e: super::OAuthError) -> Self {
        StoreError::Crypto(e.to_string())
    }
}

/// The encryption keys: one current (writes), older ones (reads). Debug shows ids only.
pub struct SessionKeys {
    current: String,
    keys: HashMap<String, LessSafeKey>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("SessionKeys")
            .field("current", &self.current)
            .field("ids", &ids)
            .finish()
    }
}

impl SessionKeys {
    /// Keys with `key` (32 bytes) as the current one, named `id` (1-64 characters of
    /// `[A-Za-z0-9._-]`: it is written into every blob).
    pub fn new(id: &str, key: &[u8]) -> Result<SessionKeys, StoreError> {
        let mut keys = SessionKeys {
            current: id.to_owned(),
            keys: HashMap::new(),
        };
        keys.insert(id, key)?;
        Ok(keys)
    }

    /// Adds an older key, still readable, never used for writes.
    pub fn with_old(mut self, id: &str, key: &[u8]) -> Result<SessionKeys, StoreError> {
        self.insert(id, key)?;
        Ok(self)
    }

    /// A key from its hex text (64 hex digits; surrounding whitespace ignored).
    pub fn parse_hex(source_name: &str, text: &str) -> Result<Vec<u8>, StoreError> {
        let bad = |reason: &str| StoreError::Key {
            source_name: source_name.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = HEXLOWER_PERMISSIVE
            .decode(text.trim().as_bytes())
            .map_err(|_| bad("not hex"))?;
        if bytes.len() != 32 {
            return Err(bad("must be 32 bytes (64 hex digits)"));
        }
        Ok(bytes)
    }

    /// Reads a hex key file, refusing one that other users can read.
    pub fn read_key_file(path: &Path) -> Result<Vec<u8>, StoreError> {
        let name = path.display().to_string();
        let bad = |reason: String| StoreError::Key {
            source_name: name.clone(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o004 != 0 {
                return Err(bad(format!(
                    "is world-readable (mode {:o}): chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        SessionKeys::parse_hex(&name, &text)
    }

    fn insert(&mut self, id: &str, key: &[u8]) -> Result<(), StoreError> {
        let bad = |reason: &str| StoreError::Key {
            source_name: id.to_owned(),
            reason: reason.to_owned(),
        };
        let id_ok = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(bad("key ids are 1-64 characters of A-Z a-z 0-9 . _ -"));
        }
        if key.len() != 32 {
            return Err(bad("must be 32 bytes"));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| bad("rejected by AES"))?;
        self.keys.insert(id.to_owned(), LessSafeKey::new(unbound));
        Ok(())
    }

    /// The associated data: binds a blob to its row and key.
    fn aad(kind: &str, row_id: &str, key_id: &str) -> Vec<u8> {
        format!("atelier-oauth-v1\0{kind}\0{row_id}\0{key_id}").into_bytes()
    }

    /// Encrypts `plaintext` for row `(kind, row_id)` with the current key.
    fn seal(&self, kind: &str, row_id: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let key = self
            .keys
            .get(&self.current)
            .ok_or_else(|| StoreError::UnknownKey {
                key_id: self.current.clone(),
            })?;
        let nonce_bytes = random_bytes::<NONCE_LEN>()?;
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(SessionKeys::aad(kind, row_id, &self.current)),
            &mut in_out,
        )
        .map_err(|_| StoreError::Crypto("sealing failed".into()))?;
        let id = self.current.as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + in_out.len());
        out.push(FORMAT_V1);
        out.push(u8::try_from(id.len()).map_err(|_| StoreError::Malformed("key id too long"))?);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Decrypts a blob of row `(kind, row_id)`; returns the plaintext and the key id used.
    fn open(
        &self,
        kind: &str,
        row_id: &str,
        sealed: &[u8],
    ) -> Result<(Vec<u8>, String), StoreError> {
        let (&version, rest) = sealed.split_first().ok_or(StoreError::Malformed("empty"))?;
        if version != FORMAT_V1 {
            return Err(StoreError::Malformed("unknown format version"));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(StoreError::Malformed("truncated"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN {
            return Err(StoreError::Malformed("truncated"));
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key_id = String::from_utf8(id.to_vec()).map_err(|_| StoreError::Decrypt)?;
        let key = self
            .keys
            .get(&key_id)
            .ok_or_else(|| StoreError::UnknownKey {
                key_id: key_id.clone(),
            })?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| StoreError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(SessionKeys::aad(kind, row_id, &key_id)),
                &mut in_out,
            )
            .map_err(|_| StoreError::Decrypt)?;
        Ok((plain.to_vec(), key_id))
    }
}

/// The at-rest form of a [`Session`].
#[derive(Serialize, Deserialize)]
struct SealedSession {
    did: String,
    pds_url: String,
    issuer: String,
    token_endpoint: String,
    revocation_endpoint: Option<String>,
    scope: String,
    expires_at: i64,
    access_token: String,
    refresh_token: Option<String>,
    dpop_key_pkcs8: String,
    as_nonce: Option<String>,
    pds_nonce: Option<String>,
    /// An AC-only account's password session (absent in rows written before them).
    #[serde(default)]
    custodial: bool,
}

/// The at-rest form of a [`PendingAuthorization`].
#[derive(Serialize, Deserialize)]
struct SealedPending {
    state: String,
    did: String,
    pds_url: String,
    auth_server: AuthServerMetadata,
    scope: String,
    created_at: i64,
    pkce_verifier: String,
    dpop_key_pkcs8: String,
    as_nonce: Option<String>,
}

fn to_sealed_session(s: &Session) -> SealedSession {
    SealedSession {
        did: s.did.clone(),
        pds_url: s.pds_url.clone(),
        issuer: s.issuer.clone(),
        token_endpoint: s.token_endpoint.clone(),
        revocation_endpoint: s.revocation_endpoint.clone(),
        scope: s.scope.clone(),
        expires_at: s.expires_at,
        access_token: s.access_token.clone(),
        refresh_token: s.refresh_token.clone(),
        dpop_key_pkcs8: BASE64URL_NOPAD.encode(s.dpop_key.pkcs8()),
        as_nonce: s.as_nonce.clone(),
        pds_nonce: s.pds_nonce.clone(),
        custodial: s.custodial,
    }
}

fn decode_key(text: &str) -> Result<DpopKey, StoreError> {
    let bytes = BASE64URL_NOPAD
        .decode(text.as_bytes())
        .map_err(|_| StoreError::Malformed("DPoP key encoding"))?;
    Ok(DpopKey::from_pkcs8(&bytes)?)
}

fn from_sealed_session(s: SealedSession) -> Result<Session, StoreError> {
    Ok(Session {
        dpop_key: decode_key(&s.dpop_key_pkcs8)?,
        did: s.did,
        pds_url: s.pds_url,
        issuer: s.issuer,
        token_endpoint: s.token_endpoint,
        revocation_endpoint: s.revocation_endpoint,
        scope: s.scope,
        expires_at: s.expires_at,
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        as_nonce: s.as_nonce,
        pds_nonce: s.pds_nonce,
        custodial: s.custodial,
    })
}

const KIND_SESSION: &str = "session";
const KIND_PENDING: &str = "pending";

/// The session store, in SQLite. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    pool: SqlitePool,
    keys: std::sync::Arc<SessionKeys>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// Opens (creating if missing) the SQLite database at `path`.
    pub async fn open(path: &Path, keys: SessionKeys) -> Result<SessionStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        SessionStore::with_pool(pool, keys).await
    }

    /// Uses an open pool (e.g. the AppView's own database), creating the table if missing.
    pub async fn with_pool(
        pool: SqlitePool,
        keys: SessionKeys,
    ) -> Result<SessionStore, StoreError> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(SessionStore {
            pool,
            keys: std::sync::Arc::new(keys),
        })
    }

    /// The database pool (the publishing log keeps its tables in the same file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores a new session; returns the opaque id for the browser cookie.
    pub async fn create(&self, session: &Session) -> Result<String, StoreError> {
        let cookie = BASE64URL_NOPAD.encode(&random_bytes::<32>()?);
        let row_id = sha256_b64(cookie.as_bytes());
        let now = now_unix();
        self.write(
            KIND_SESSION,
            &row_id,
            &session.did,
            &to_json(&to_sealed_session(session))?,
            now + SESSION_TTL_SECS,
            true,
        )
        .await?;
        Ok(cookie)
    }

    /// Loads the session behind a cookie.
    pub async fn load(&self, cookie: &str) -> Result<Session, StoreError> {
        let plain = self
            .read(KIND_SESSION, &sha256_b64(cookie.as_bytes()))
            .await?;
        let sealed: SealedSession =
            serde_json::from_slice(&plain).map_err(|_| StoreError::Malformed("session record"))?;
        from_sealed_session(sealed)
    }

    /// Saves a session again (after a refresh rotated its tokens), with the current key.
    pub async fn save(&self, cookie: &str, session: &Session) -> Result<(), StoreError> {
        let row_id = sha256_b64(cookie.as_bytes());
        let sealed = self.keys.seal(
            KIND_SESSION,
            &row_id,
            &to_json(&to_sealed_session(session))?,
        )?;
        let done = sqlx::query(
            "UPDATE oauth_session SET sealed = ?, key_id = ?, updated_at = ? \
             WHERE id = ? AND kind = ? AND revoked_at IS NULL",
        )
        .bind(sealed)
        .bind(&self.keys.current)
        .bind(now_unix())
        .bind(&row_id)
        .bind(KIND_SESSION)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Marks a session signed out (its tokens should be revoked at the server first);
    /// the row is deleted by the next [`cleanup`](SessionStore::cleanup).
    pub async fn revoke(&self, cookie: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE oauth_session SET revoked_at = ?, sealed = X'' WHERE id = ? AND kind = ?",
        )
        .bind(now_unix())
        .bind(sha256_b64(cookie.as_bytes()))
        .bind(KIND_SESSION)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps a pending authorization until its callback, keyed by its `state`.
    pub async fn put_pending(&self, pending: &PendingAuthorization) -> Result<(), StoreError> {
        let record = SealedPending {
            state: pending.state.clone(),
            did: pending.did.clone(),
            pds_url: pending.pds_url.clone(),
            auth_server: pending.auth_server.clone(),
            scope: pending.scope.clone(),
            created_at: pending.created_at,
            pkce_verifier: pending.pkce_verifier.clone(),
            dpop_key_pkcs8: BASE64URL_NOPAD.encode(pending.dpop_key.pkcs8()),
            as_nonce: pending.as_nonce.clone(),
        };
        self.write(
            KIND_PENDING,
            &sha256_b64(pending.state.as_bytes()),
            &pending.did,
            &to_json(&record)?,
            pending.created_at + PENDING_TTL_SECS,
            false,
        )
        .await
    }

    /// Takes (reads and deletes) the pending authorization for `state`: a callback can be
    /// completed once.
    pub async fn take_pending(&self, state: &str) -> Result<PendingAuthorization, StoreError> {
        let row_id = sha256_b64(state.as_bytes());
        // One statement, so two callbacks racing for one `state` cannot both get it.
        let row = sqlx::query(
            "DELETE FROM oauth_session WHERE id = ? AND kind = ? \
             RETURNING sealed, expires_at",
        )
        .bind(&row_id)
        .bind(KIND_PENDING)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now_unix() {
            return Err(StoreError::Expired);
        }
        let sealed: Vec<u8> = row.try_get("sealed")?;
        let (plain, _) = self.keys.open(KIND_PENDING, &row_id, &sealed)?;
        let record: SealedPending =
            serde_json::from_slice(&plain).map_err(|_| StoreError::Malformed("pending record"))?;
        Ok(PendingAuthorization {
            dpop_key: decode_key(&record.dpop_key_pkcs8)?,
            state: record.state,
            did: record.did,
            pds_url: record.pds_url,
            auth_server: record.auth_server,
            scope: record.scope,
            created_at: record.created_at,
            pkce_verifier: record.pkce_verifier,
            as_nonce: record.as_nonce,
        })
    }

    /// Deletes expired and revoked rows; returns how many.
    pub async fn cleanup(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM oauth_session WHERE expires_at <= ? OR revoked_at IS NOT NULL",
        )
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Rewrites every live row sealed with an older key under the current key (after a
    /// rotation, so the old key can be retired); returns how many rows were rewritten.
    pub async fn reseal_all(&self) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, sealed FROM oauth_session WHERE key_id <> ? AND revoked_at IS NULL",
        )
        .bind(&self.keys.current)
        .fetch_all(&self.pool)
        .await?;
        let mut count = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let sealed: Vec<u8> = row.try_get("sealed")?;
            let (plain, _) = self.keys.open(&kind, &id, &sealed)?;
            let resealed = self.keys.seal(&kind, &id, &plain)?;
            sqlx::query("UPDATE oauth_session SET sealed = ?, key_id = ? WHERE id = ?")
                .bind(resealed)
                .bind(&self.keys.current)
                .bind(&id)
                .execute(&self.pool)
                .await?;
            count += 1;
        }
        Ok(count)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn write(
        &self,
        kind: &str,
        row_id: &str,
        did: &str,
        plaintext: &[u8],
        expires_at: i64,
        fresh: bool,
    ) -> Result<(), StoreError> {
        let sealed = self.keys.seal(kind, row_id, plaintext)?;
        let now = now_unix();
        let sql = if fresh {
            "INSERT INTO oauth_session (id, kind, did, key_id, sealed, expires_at, revoked_at, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)"
        } else {
            "INSERT OR REPLACE INTO oauth_session (id, kind, did, key_id, sealed, expires_at, \
             revoked_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)"
        };
        sqlx::query(sql)
            .bind(row_id)
            .bind(kind)
            .bind(did)
            .bind(&self.keys.current)
            .bind(sealed)
            .bind(expires_at)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn read(&self, kind: &str, row_id: &str) -> Result<Vec<u8>, StoreError> {
        let row = sqlx::query(
            "SELECT sealed, expires_at, revoked_at FROM oauth_session WHERE id = ? AND kind = ?",
        )
        .bind(row_id)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let revoked: Option<i64> = row.try_get("revoked_at")?;
        if revoked.is_some() {
            return Err(StoreError::Revoked);
        }
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now_unix() {
            return Err(StoreError::Expired);
        }
        let sealed: Vec<u8> = row.try_get("sealed")?;
        let (plain, _) = self.keys.open(kind, row_id, &sealed)?;
        Ok(plain)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|_| StoreError::Malformed("record does not serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_bindings() {
        let keys = SessionKeys::new("k1", &[7u8; 32]).unwrap();
        let blob = keys.seal("session", "row", b"secret").unwrap();
        assert!(!blob.windows(6).any(|w| w == b"secret"));
        let (plain, id) = keys.open("session", "row", &blob).unwrap();
        assert_eq!((plain.as_slice(), id.as_str()), (&b"secret"[..], "k1"));
        // Another row, another kind: refused.
        assert!(matches!(
            keys.open("session", "other", &blob),
            Err(StoreError::Decrypt)
        ));
        assert!(matches!(
            keys.open("pending", "row", &blob),
            Err(StoreError::Decrypt)
        ));
        // A flipped bit: refused.
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            keys.open("session", "row", &bad),
            Err(StoreError::Decrypt)
        ));
        // The wrong key under the same id: refused.
        let wrong = SessionKeys::new("k1", &[8u8; 32]).unwrap();
        assert!(matches!(
            wrong.open("session", "row", &blob),
            Err(StoreError::Decrypt)
        ));
        // A key id nobody configured.
        let other = SessionKeys::new("k2", &[7u8; 32]).unwrap();
        assert!(matches!(
            other.open("session", "row", &blob),
            Err(StoreError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oauth_token_key");
        std::fs::write(&path, format!("{}\n", "0f".repeat(32))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SessionKeys::read_key_file(&path).unwrap_err().to_string();
        assert!(e.contains("world-readable"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(SessionKeys::read_key_file(&path).unwrap(), vec![0x0f; 32]);
    }

    #[test]
    fn key_parsing() {
        assert!(SessionKeys::parse_hex("t", &"ab".repeat(32)).is_ok());
        assert!(SessionKeys::parse_hex("t", "abcd").is_err());
        assert!(SessionKeys::new("bad id", &[0u8; 32]).is_err());
        let debug = format!("{:?}", SessionKeys::new("k1", &[9u8; 32]).unwrap());
        assert!(debug.contains("k1") && !debug.contains("9, 9"), "{debug}");
    }
}
