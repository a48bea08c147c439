-- The AppView's index (SQLite). Rows are keyed by AT-URI; an upsert with the same CID is a
-- no-op, so replaying a stream from an older cursor changes nothing.

-- Accounts the AppView has seen: handle as announced by #identity (verified later), hosting
-- status from #account, and the profile from app.bsky.actor.profile/self.
CREATE TABLE actors (
    did TEXT PRIMARY KEY NOT NULL,
    handle TEXT,
    handle_verified INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    status TEXT,
    display_name TEXT,
    description TEXT,
    avatar_cid TEXT,
    profile_json TEXT,
    updated_us INTEGER NOT NULL
) WITHOUT ROWID;

-- Every computer.aesthetic.* record: typed columns for queries, the full JSON as indexed
-- (after lenient repairs), and the repairs made, as a JSON array of strings. A rowid table
-- (rows are larger than WITHOUT ROWID suits), so secondary indexes carry the 8-byte id
-- rather than the URI; feeds order by time, then id (insertion order, kept by updates).
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    did TEXT NOT NULL,
    collection TEXT NOT NULL,
    rkey TEXT NOT NULL,
    cid TEXT NOT NULL,
    -- `when` (or `createdAt`) as written; '' when the record has neither.
    created_at TEXT NOT NULL DEFAULT '',
    indexed_us INTEGER NOT NULL,
    code TEXT,
    slug TEXT,
    record_json TEXT NOT NULL,
    repairs_json TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX records_by_time ON records (created_at DESC, id DESC);
CREATE INDEX records_by_actor ON records (did, created_at DESC, id DESC);
CREATE INDEX records_by_collection ON records (collection, created_at DESC, id DESC);
CREATE INDEX records_by_code ON records (code) WHERE code IS NOT NULL;

-- computer.aesthetic.graph.follow records, by subject for follower lists.
CREATE TABLE follows (
    uri TEXT PRIMARY KEY NOT NULL,
    did TEXT NOT NULL,
    subject TEXT NOT NULL,
    created_at TEXT
) WITHOUT ROWID;
CREATE INDEX follows_by_subject ON follows (subject, did);

-- Where each source's stream was read up to, written in the same transaction as the rows
-- its events produced.
CREATE TABLE cursors (
    source TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
