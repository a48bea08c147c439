//! Atelier's sync layer and AC-namespace relay.
//!
//! This crate will hold the firehose client, frame and CAR decoding, commit and MST
//! verification, identity resolution, the namespace filter, the event log and the fan-out
//! server (see the Sync layer and Namespace relay issues). For now it only re-exports the
//! lexicon crate so that the dependency direction `appview -> relay -> lexicons` is fixed
//! from the first commit.

pub use atelier_lexicons as lexicons;
