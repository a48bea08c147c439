//! AC's lexicons and the ATProto rules that records must follow.
//!
//! - [`syntax`]: the string formats of ATProto (DID, handle, NSID, AT-URI, TID, record key,
//!   datetime, language, CID, URI), checked exactly as the specs and interop vectors say.
//! - [`data`]: the ATProto data model: JSON <-> IPLD conversion (`$link`, `$bytes`, blobs),
//!   DAG-CBOR encoding and CID computation.
//! - [`schema`]: lexicon documents (the schema language) parsed and checked.
//! - [`validate`]: record validation against a schema, in strict mode (what Atelier publishes)
//!   and lenient mode (what it indexes from the wild, with AC's known quirks repaired and
//!   reported).
//! - [`types`]: the shared wire types used by generated code (blob refs, strong refs).
//! - [`generated`]: Rust types generated from `lexicons/**/*.json` by `cargo xtask codegen`.

pub mod data;
pub mod generated;
pub mod schema;
pub mod syntax;
pub mod types;
pub mod validate;
