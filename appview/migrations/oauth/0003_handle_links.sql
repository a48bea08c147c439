-- Handle linking (appview/src/service/link.rs), in the session store's database and, like
-- it, applied with IF NOT EXISTS by the AppView itself.
--
-- handle_link: a name under the deployment's domain (`{name}.{hostname}`) linked to a
-- DID. The AppView answers `/.well-known/atproto-did` for that host with the DID. One name
-- per DID; a new one replaces the old.
CREATE TABLE IF NOT EXISTS handle_link (
    name TEXT PRIMARY KEY NOT NULL,
    did TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
