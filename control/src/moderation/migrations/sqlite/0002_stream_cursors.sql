-- Where the auto-flagger is in each `subscribeRepos` stream it follows.
CREATE TABLE stream_cursors (
    source TEXT PRIMARY KEY NOT NULL,
    cursor INTEGER NOT NULL
) WITHOUT ROWID;
