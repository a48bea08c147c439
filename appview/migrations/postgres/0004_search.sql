-- Search by slug (prefix) and by handle (prefix), bytewise like SQLite; codes already have
-- an index. The "following" feed reads a viewer's follows by follower.
CREATE INDEX records_by_slug ON records (slug COLLATE "C") WHERE slug IS NOT NULL;
CREATE INDEX actors_by_handle ON actors (handle COLLATE "C") WHERE handle IS NOT NULL;
CREATE INDEX follows_by_follower ON follows (did, subject);
