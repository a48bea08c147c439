-- The sync layer's per-account verification state (sync 1.1): the last verified rev, its
-- MST root and commit CID, and whether the account's chain is intact. Written in the same
-- transaction as the rows of the commits it follows, loaded at start so chains keep being
-- checked across restarts.
CREATE TABLE sync_state (
    did TEXT PRIMARY KEY NOT NULL,
    rev BIGINT NOT NULL,
    data_cid BLOB NOT NULL,
    commit_cid BLOB NOT NULL,
    status TEXT NOT NULL
) WITHOUT ROWID;
