//! The AC AppView.
//!
//! This crate will ingest `computer.aesthetic.*` records, keep the index store, and serve
//! feeds, remixes, profiles and notifications (see the AppView issue). For now it only
//! fixes its place in the dependency graph: `control -> appview -> relay -> lexicons`.

pub use atelier_relay as relay;
