-- Search by slug (prefix) and by handle (prefix); codes already have an index.
CREATE INDEX records_by_slug ON records (slug) WHERE slug IS NOT NULL;
CREATE INDEX actors_by_handle ON actors (handle) WHERE handle IS NOT NULL;
-- The "following" feed reads a viewer's follows by follower.
CREATE INDEX follows_by_follower ON follows (did, subject);
