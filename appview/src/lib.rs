//! The AC AppView: indexes `computer.aesthetic.*` records from the network and serves them.
//!
//! Built so far (see the AppView issue for the rest):
//! - [`auth`]: verifies inter-service auth JWTs (`getServiceAuth` tokens) against the
//!   issuer's DID document, re-resolving once on a key rotation;
//! - [`backfill`]: indexes whole repositories (`getRepo`, verified), resumable, beside
//!   the live stream without undoing it;
//! - [`handles`]: the handle verifier, a background task that checks actors' handles both
//!   ways (DID document and DNS TXT or well-known) and stores whether they verify;
//! - [`index`]: verified stream events to index changes, with lenient validation of AC's
//!   records from the wild (repairs recorded, failures counted and kept out);
//! - [`labels`]: the ATProto label type (shared with the control plane's labeler) and
//!   label sync: follows labelers' `subscribeLabels`, verifies every label against the
//!   labeler's `#atproto_label` key and stores the current state, which every query applies
//!   (`!hide`/`!takedown` hide, other values ride along on the views);
//! - [`store`]: the index store trait and its SQLite and Postgres backends (sqlx, one SQL);
//! - [`ingest`]: follows a `subscribeRepos` source through the sync layer and commits
//!   batches of changes together with the source cursor;
//! - [`service`]: `run(config, listener, shutdown)`: ingest plus the XRPC queries
//!   (`computer.aesthetic.feed.getAtmosphere`, `getAuthorFeed`, `getRecord`, `getRemixes`,
//!   `computer.aesthetic.actor.getProfile`), the viewer's notifications
//!   (`computer.aesthetic.notification.*`, with a live WebSocket stream), `_health` and
//!   `/metrics`.
//!
//! Dependencies point one way: `control -> appview -> relay -> lexicons`.

pub mod auth;
pub mod backfill;
pub mod error;
pub mod handles;
pub mod histogram;
pub mod index;
pub mod ingest;
pub mod labels;
pub mod oauth;
pub mod publish;
pub mod safety;
pub mod service;
pub mod store;

pub use atelier_relay as relay;
pub use error::AppViewError;
