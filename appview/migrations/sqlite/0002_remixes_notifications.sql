-- Remix edges and notifications.

-- The work a record remixes (`remixOf.uri`); the remix graph is read in both directions
-- from this column: what a record remixes, and what remixes it (by this index).
ALTER TABLE records ADD COLUMN remix_of TEXT;
CREATE INDEX records_by_remix_of ON records (remix_of, created_at DESC, id DESC)
    WHERE remix_of IS NOT NULL;

-- One row per thing that happened to an actor: `remix` (a record remixes one of theirs),
-- `mention` (their handle in a mood, KidLisp source or news text), `follow`. `uri` is the
-- record that caused it (the remix, the mentioning record, the follow); `subject` what it
-- is about (the remixed work; the followed actor's DID). Unique per (recipient, reason,
-- uri), so a replayed stream adds nothing; deleting the causing record removes it. The id
-- orders the list and is the live stream's cursor.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    reason TEXT NOT NULL,
    author TEXT NOT NULL,
    uri TEXT NOT NULL,
    subject TEXT,
    created_at TEXT NOT NULL DEFAULT '',
    indexed_us INTEGER NOT NULL,
    UNIQUE (recipient, reason, uri)
);
CREATE INDEX notifications_by_recipient ON notifications (recipient, id DESC);
CREATE INDEX notifications_by_uri ON notifications (uri);

-- When each actor last marked their notifications seen (`updateSeen`), in microseconds.
CREATE TABLE notifications_seen (
    did TEXT PRIMARY KEY NOT NULL,
    seen_us INTEGER NOT NULL
) WITHOUT ROWID;
