//! Identity: DIDs to documents, handles to DIDs, and the checks between them.
//!
//! - [`DidDocument`]: a lenient parser for current (`Multikey`) and legacy
//!   (`EcdsaSecp256k1VerificationKey2019`) documents, with the accessors ATProto needs
//!   (handle, PDS, signing key, labeler and label key).
//! - [`Resolver`]: resolves `did:plc` (from a configurable PLC directory) and `did:web`,
//!   resolves handles through DNS TXT `_atproto.<handle>` and
//!   `https://<handle>/.well-known/atproto-did` (DNS wins when they disagree), and verifies
//!   handles in both directions. Every fetch goes through the SSRF guard
//!   ([`crate::sync::ssrf::GuardedClient`]), and DNS through its [`Dns`] so tests can
//!   inject names.
//! - Caching: documents and handles are cached with a TTL (shorter for "not found"), the
//!   cache is bounded, concurrent lookups of one DID share one fetch, `#identity` events
//!   invalidate, and a failed signature may refresh a DID's key once per interval.
//!
//! **Architecture Invariant:** this module does not decode keys or verify signatures; it
//! hands out [`SigningKeyRef`] text for [`crate::sync::keys`].
//!
//! [`Dns`]: crate::sync::ssrf::Dns

mod cache;
mod document;
mod resolver;
mod syntax;

pub use document::{DidDocument, DocumentError, Service, SigningKeyRef, VerificationMethod};
pub use resolver::{HandleStatus, KeyRefresh, Resolver, ResolverConfig, ResolverStats};
pub use syntax::{check_did, normalize_handle};

use crate::sync::ssrf::{DnsError, SsrfError};

/// Why an identity could not be resolved. [`IdentityError::reason`] gives a metrics label.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    /// The DID is not well-formed.
    #[error("invalid DID {did:?}: {reason}")]
    InvalidDid {
        /// The DID as given.
        did: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A DID method other than `plc` and `web`.
    #[error("unsupported DID method: {did}")]
    UnsupportedDidMethod {
        /// The DID.
        did: String,
    },
    /// The handle is not a well-formed domain name.
    #[error("invalid handle {handle:?}: {reason}")]
    InvalidHandle {
        /// The handle as given.
        handle: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The handle is under a TLD that is never resolved (`.local`, `.onion`, ...).
    #[error("handle {handle:?} is under the reserved TLD .{tld}")]
    ReservedHandle {
        /// The handle as given.
        handle: String,
        /// The reserved TLD.
        tld: String,
    },
    /// The DID does not exist (PLC 404, did:web 404).
    #[error("{did}: not found")]
    NotFound {
        /// The DID.
        did: String,
    },
    /// The DID was deactivated for good (PLC 410).
    #[error("{did}: tombstoned")]
    Tombstoned {
        /// The DID.
        did: String,
    },
    /// The document served for a DID describes another DID.
    #[error("document for {did} has id {found:?}")]
    DocIdMismatch {
        /// The DID resolved.
        did: String,
        /// The document's `id`.
        found: String,
    },
    /// The document is not a usable DID document.
    #[error("document for {did}: {source}")]
    InvalidDocument {
        /// The DID resolved.
        did: String,
        /// What is wrong.
        #[source]
        source: DocumentError,
    },
    /// Neither DNS nor the well-known file names a DID for the handle.
    #[error("handle {handle} does not resolve to a DID")]
    HandleNotFound {
        /// The handle.
        handle: String,
    },
    /// `_atproto.<handle>` has TXT records naming different DIDs.
    #[error("handle {handle} has conflicting DNS records: {dids:?}")]
    HandleConflict {
        /// The handle.
        handle: String,
        /// The DIDs named.
        dids: Vec<String>,
    },
    /// A DNS lookup failed (not "no such name", which is an answer).
    #[error("DNS: {source}")]
    Dns {
        /// The resolver's error.
        #[source]
        source: DnsError,
    },
    /// A fetch was refused by the SSRF guard or failed.
    #[error("resolving {subject}: {source}")]
    Fetch {
        /// The DID or handle being resolved.
        subject: String,
        /// The guard's error.
        #[source]
        source: SsrfError,
    },
}

impl IdentityError {
    /// A short, stable label for metrics. Fetch failures use the guard's label
    /// (`timeout`, `forbidden_address`, `http_status`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::InvalidDid { .. } => "invalid_did",
            IdentityError::UnsupportedDidMethod { .. } => "unsupported_did_method",
            IdentityError::InvalidHandle { .. } => "invalid_handle",
            IdentityError::ReservedHandle { .. } => "reserved_handle",
            IdentityError::NotFound { .. } => "not_found",
            IdentityError::Tombstoned { .. } => "tombstoned",
            IdentityError::DocIdMismatch { .. } => "doc_id_mismatch",
            IdentityError::InvalidDocument { .. } => "invalid_document",
            IdentityError::HandleNotFound { .. } => "handle_not_found",
            IdentityError::HandleConflict { .. } => "handle_conflict",
            IdentityError::Dns { .. } => "dns",
            IdentityError::Fetch { source, .. } => source.reason(),
        }
    }

    /// Whether this is a definitive "does not exist" answer (cached for the negative TTL),
    /// as opposed to a failure worth retrying.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            IdentityError::NotFound { .. }
                | IdentityError::Tombstoned { .. }
                | IdentityError::HandleNotFound { .. }
        )
    }
}
