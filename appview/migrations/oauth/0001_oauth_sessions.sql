-- The OAuth session store (appview/src/oauth/store.rs). Applied by the store itself with
-- IF NOT EXISTS, not by the AppView's sqlx migrator: the two share a database, and two
-- sqlx migrators on one `_sqlx_migrations` table refuse each other's versions.
--
-- One table for signed-in sessions (kind 'session', id = SHA-256 of the browser's opaque
-- cookie value) and authorizations in progress (kind 'pending', id = SHA-256 of the
-- OAuth `state`). Everything secret is in `sealed`: AES-256-GCM with the key named in its
-- header, the row's kind and id as associated data.
CREATE TABLE IF NOT EXISTS oauth_session (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    did TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS oauth_session_expires ON oauth_session (expires_at);
CREATE INDEX IF NOT EXISTS oauth_session_did ON oauth_session (did);
