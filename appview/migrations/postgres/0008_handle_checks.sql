-- Handle verification (the AppView's handle verifier): when each actor's handle was last
-- checked both ways (DID document `alsoKnownAs` and the handle resolving back to the
-- DID), when it is due next (0: now; an `#identity` resets it), and how many checks in a
-- row failed (the retry delay grows with it, so a broken handle is not retried in a loop).
ALTER TABLE actors ADD COLUMN handle_checked_us BIGINT;
ALTER TABLE actors ADD COLUMN handle_due_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE actors ADD COLUMN handle_failures BIGINT NOT NULL DEFAULT 0;
CREATE INDEX actors_handle_due ON actors (handle_due_us);
