-- The publishing API's log (appview/src/publish/log.rs), in the session store's database
-- and, like it, applied with IF NOT EXISTS by the log itself.
--
-- publish_request: one row per (account, idempotency key). The record key is chosen and
-- stored before the first write to the PDS, so every retry writes the same record; the
-- answer is kept so a client's retry gets the first answer again.
CREATE TABLE IF NOT EXISTS publish_request (
    did TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    response TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER,
    PRIMARY KEY (did, idem_key)
);
CREATE INDEX IF NOT EXISTS publish_request_done ON publish_request (did, done_at);

-- publish_blob: blobs uploaded for an account, by SHA-256 of their bytes, so the same
-- bytes are not uploaded twice.
CREATE TABLE IF NOT EXISTS publish_blob (
    did TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    cid TEXT NOT NULL,
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (did, sha256)
);
