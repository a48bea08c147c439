-- Backfill: how far each actor's repository is known, and the backfill's work list.

-- The newest commit rev applied for the actor, from the live stream or a backfilled
-- repository export. A snapshot older than it is refused (and fetched again), so a
-- backfill never rolls back what the live stream wrote after the snapshot was taken.
ALTER TABLE actors ADD COLUMN repo_rev TEXT;

-- One row per repository a backfill was asked for: `pending` until its export is
-- indexed (`done`, with the rev and record count) or fails (`failed`, with the error,
-- retried by the next run). A run that is interrupted resumes with what is not `done`.
CREATE TABLE backfill_repos (
    did TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    rev TEXT,
    records INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    updated_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX backfill_repos_by_state ON backfill_repos (state, did);
