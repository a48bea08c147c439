//! Atelier's sync layer and AC-namespace relay.
//!
//! - [`sync`]: what every consumer of `com.atproto.sync.subscribeRepos` needs: strict
//!   DAG-CBOR, frame and CAR decoding with CID checks, MST and commit verification
//!   (sync 1.1), identity resolution behind an SSRF guard, the firehose client, and a
//!   replay server for recorded frames. The relay and the AppView share it.
//! - The namespace relay's parts, being built (see the Namespace relay issue):
//!   [`filter`] (which events concern AC), [`eventlog`] (the durable, cursor-addressable
//!   event log) and [`jetstream`] (Jetstream v1 compatible JSON events and subscriptions).
//!   The relay service that joins them is planned; see ARCHITECTURE.md.

pub use atelier_lexicons as lexicons;

pub mod eventlog;
pub mod filter;
pub mod jetstream;
pub mod labels;
pub mod service;
pub mod sync;
