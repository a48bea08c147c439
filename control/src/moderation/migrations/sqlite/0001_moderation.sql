-- Moderation: subjects and their queue state, reports, comments, muted reporters, the labels
-- moderators applied, and the append-only audit log.
--
-- Times are integer microseconds since the epoch; every type and statement here has a direct
-- PostgreSQL equivalent (BIGINT, TEXT, BIGSERIAL, a trigger function), so a Postgres store
-- can follow with its own migrations.

-- One row per subject: an account (uri = its DID) or a record (uri = its at:// URI).
CREATE TABLE subjects (
    id INTEGER PRIMARY KEY,
    uri TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('account', 'record')),
    -- The account the subject belongs to: the DID itself, or the record's repository.
    author_did TEXT NOT NULL,
    -- The record's collection; NULL for accounts.
    collection TEXT,
    -- The most recently reported record version; NULL for accounts and unknown versions.
    cid TEXT,
    -- NULL while the subject is in no queue: only muted reporters reported it, or it was
    -- only commented on or assigned.
    state TEXT CHECK (state IN ('unreviewed', 'escalated', 'resolved')),
    -- When the subject entered its state (or was first seen, while state is NULL): the
    -- queue's order and its age filters.
    state_since_us INTEGER NOT NULL,
    -- The moderator (console user name) working on it.
    assigned_to TEXT,
    -- First and last report that counted (not from a muted reporter); NULL before one.
    first_report_us INTEGER,
    last_report_us INTEGER,
    -- Reports that counted.
    report_count INTEGER NOT NULL DEFAULT 0
);

-- The queues: by state, in time order, with the id breaking ties (the page cursor).
CREATE INDEX subjects_queue ON subjects (state, state_since_us, id);
-- An author's other subjects.
CREATE INDEX subjects_author ON subjects (author_did, id);

CREATE TABLE reports (
    -- The createReport output's `id`: increasing, never reused.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects (id),
    -- The record version the reporter named, if any.
    subject_cid TEXT,
    reason_type TEXT NOT NULL,
    reason TEXT,
    source TEXT NOT NULL CHECK (source IN ('atproto', 'appview', 'autoflag')),
    -- NULL exactly for auto-flags.
    reporter_did TEXT,
    -- 1 when the reporter was muted: kept, but it did not raise or reopen the subject.
    muted INTEGER NOT NULL DEFAULT 0 CHECK (muted IN (0, 1)),
    created_us INTEGER NOT NULL,
    CHECK ((source = 'autoflag') = (reporter_did IS NULL))
);

CREATE INDEX reports_subject ON reports (subject_id, id);
CREATE INDEX reports_reporter ON reports (reporter_did, subject_id);
CREATE INDEX reports_reason ON reports (reason_type, subject_id);

-- Reporters whose reports no longer raise subjects, until unmuted.
CREATE TABLE muted_reporters (
    did TEXT PRIMARY KEY,
    muted_by TEXT NOT NULL,
    muted_us INTEGER NOT NULL
);

-- Moderators' notes on a subject.
CREATE TABLE comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects (id),
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created_us INTEGER NOT NULL
);

CREATE INDEX comments_subject ON comments (subject_id, id);

-- The label values moderation actions have applied and not negated, per subject: the queue's
-- label filter (the labels themselves live in the labeler's store, another database).
CREATE TABLE subject_labels (
    subject_id INTEGER NOT NULL REFERENCES subjects (id),
    val TEXT NOT NULL,
    applied_us INTEGER NOT NULL,
    PRIMARY KEY (subject_id, val)
);

CREATE INDEX subject_labels_val ON subject_labels (val, subject_id);

-- Every moderation action, one row per subject it touched (or failed on), never changed.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us INTEGER NOT NULL,
    -- The console user who acted.
    actor TEXT NOT NULL,
    -- The action's name (label, negate-label, takedown, restore, acknowledge, escalate,
    -- comment, assign, mute-reporter, unmute-reporter).
    action TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('done', 'failed')),
    -- Shared by the rows of one (bulk) action.
    batch TEXT NOT NULL,
    -- The subject's DID or at:// URI, and the DID of its account.
    subject TEXT NOT NULL,
    author_did TEXT NOT NULL,
    -- What happened, as a JSON object (label seq and cts, state change, assignee, error).
    details TEXT NOT NULL,
    -- The moderator's reason, if given.
    note TEXT
);

CREATE INDEX audit_at ON audit_log (at_us, id);
CREATE INDEX audit_subject ON audit_log (subject, id);
CREATE INDEX audit_author ON audit_log (author_did, id);

-- Append-only: any UPDATE or DELETE aborts its statement (and so its transaction's intent).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
