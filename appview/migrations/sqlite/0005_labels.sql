-- Labels synced from the labelers the AppView follows (label sync). One row per
-- (src, uri, val): the current state, last write wins in each source's seq order; a
-- negation sets `neg` rather than deleting, so a replayed older label cannot come back.
-- Only verified labels are stored (signature checked against the source's #atproto_label
-- key, src = the source's DID).
CREATE TABLE labels (
    src TEXT NOT NULL,
    uri TEXT NOT NULL,
    val TEXT NOT NULL,
    cid TEXT,
    neg BOOLEAN NOT NULL DEFAULT FALSE,
    cts TEXT NOT NULL,
    exp TEXT,
    -- `exp` in microseconds since the epoch, for comparisons; NULL: never expires.
    exp_us INTEGER,
    sig BLOB,
    -- The source seq of the frame that carried it.
    seq INTEGER NOT NULL,
    PRIMARY KEY (src, uri, val)
);
-- Queries look labels up by subject (record URI or author DID) and value.
CREATE INDEX labels_by_subject ON labels (uri, val);

-- The labelers: where each source's stream was read up to (written in the same
-- transaction as its labels), and whether it is configured now (labels from sources no
-- longer configured stay stored but do not apply).
CREATE TABLE label_sources (
    src TEXT PRIMARY KEY,
    seq INTEGER,
    active BOOLEAN NOT NULL DEFAULT TRUE
);
