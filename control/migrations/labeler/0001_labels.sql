-- The labeler's labels: every label it has issued, in issue order.
--
-- Rows are append-only except for `current`: a new label for the same (src, uri, val)
-- clears the flag on the older rows, so the current state of each label is one indexed
-- lookup, and the subscribeLabels replay can leave out labels a later one replaced.
CREATE TABLE labels (
    -- The subscribeLabels cursor: increasing, never reused (AUTOINCREMENT).
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    src TEXT NOT NULL,
    uri TEXT NOT NULL,
    -- NULL when the label has no `cid`.
    cid TEXT,
    val TEXT NOT NULL,
    -- NULL when `neg` is absent, 0 for an explicit `neg: false`, 1 for a negation.
    neg INTEGER,
    cts TEXT NOT NULL,
    exp TEXT,
    -- `exp` as microseconds since the epoch, for the expiry filter; NULL without `exp`.
    exp_us INTEGER,
    sig BLOB,
    -- The did:key of the key that made `sig`, so a key rotation can find what to re-sign.
    signing_key TEXT,
    -- 1 while this is the newest row for its (src, uri, val).
    current INTEGER NOT NULL DEFAULT 1
);

-- Finding the rows a new label replaces.
CREATE INDEX labels_key ON labels (src, uri, val) WHERE current = 1;
-- queryLabels: current labels by subject (exact and prefix matches are range scans).
CREATE INDEX labels_current_uri ON labels (uri, seq) WHERE current = 1;
-- subscribeLabels replay: current labels in seq order.
CREATE INDEX labels_current_seq ON labels (seq) WHERE current = 1;
