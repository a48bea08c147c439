//! Atelier's sync layer and AC-namespace relay.
//!
//! - [`sync`]: what every consumer of `com.atproto.sync.subscribeRepos` needs: strict
//!   DAG-CBOR, frame and CAR decoding with CID checks, MST and commit verification
//!   (sync 1.1), identity resolution behind an SSRF guard, the firehose client, and a
//!   replay server for recorded frames. The relay and the AppView share it.
//! - The namespace relay itself (filter, durable event log, fan-out) is planned; see
//!   ARCHITECTURE.md.

pub use atelier_lexicons as lexicons;

pub mod sync;
