-- Labels synced from the labelers the AppView follows (label sync); see the SQLite
-- migration for the design. Compared text uses the "C" collation, as in 0001.
CREATE TABLE labels (
    src TEXT COLLATE "C" NOT NULL,
    uri TEXT COLLATE "C" NOT NULL,
    val TEXT COLLATE "C" NOT NULL,
    cid TEXT,
    neg BOOLEAN NOT NULL DEFAULT FALSE,
    cts TEXT NOT NULL,
    exp TEXT,
    exp_us BIGINT,
    sig BYTEA,
    seq BIGINT NOT NULL,
    PRIMARY KEY (src, uri, val)
);
CREATE INDEX labels_by_subject ON labels (uri, val);

CREATE TABLE label_sources (
    src TEXT COLLATE "C" PRIMARY KEY,
    seq BIGINT,
    active BOOLEAN NOT NULL DEFAULT TRUE
);
