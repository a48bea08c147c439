-- Records the publishing API inserted before the firehose delivered them ("optimistic"):
-- visible at once, `pending` until ingest writes the record (same CID: confirmed; another
-- CID: repaired), or until the reconciler finds it missing at the PDS and removes it.
ALTER TABLE records ADD COLUMN pending BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX records_pending ON records (indexed_us) WHERE pending;
