-- Backfill (the same tables as the SQLite migration; see its comments).

ALTER TABLE actors ADD COLUMN repo_rev TEXT COLLATE "C";

CREATE TABLE backfill_repos (
    did TEXT COLLATE "C" PRIMARY KEY,
    state TEXT NOT NULL,
    rev TEXT,
    records BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    updated_us BIGINT NOT NULL
);
CREATE INDEX backfill_repos_by_state ON backfill_repos (state, did);
