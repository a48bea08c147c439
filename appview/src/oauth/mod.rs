//! ATProto OAuth sign-in: the client side of the OAuth profile, and where its sessions live.
//!
//! - [`metadata`]: discovery, handle or DID → DID document → PDS → protected-resource
//!   metadata → authorization-server metadata (checked);
//! - [`client`]: [`OAuthClient`]: PAR with PKCE `S256` and DPoP (server nonces retried),
//!   the callback (`state`, `iss`, `sub` checked), DPoP-bound XRPC calls to the PDS with
//!   refresh on expiry (rotating the refresh token), revocation on sign-out, and a typed
//!   [`OAuthError::ScopeMissing`] naming the scope to re-authorise;
//! - [`dpop`]: the per-session ES256 key, DPoP proofs and PKCE;
//! - [`store`]: [`SessionStore`], sessions encrypted at rest (AES-256-GCM, key ids for
//!   rotation, the row id bound as associated data) in SQLite, behind opaque ids for the
//!   browser cookie.
//!
//! Why by hand rather than atrium-oauth or jacquard's client: both bring their own HTTP
//! and resolver stacks (a second DNS resolver, their own identity resolution) that would
//! bypass the relay's SSRF guard and [`Resolver`](atelier_relay::sync::identity::Resolver)
//! cache, and their session stores are not the encrypted, key-rotating store this
//! deployment needs. The protocol is small (three POST endpoints and a JWS), and ring,
//! already in the workspace for rustls, gives ES256 and AES-256-GCM without new crates.
//!
//! **Architecture Invariant:** tokens, codes, PKCE verifiers and DPoP private keys never
//! appear in `Debug` output, logs or error messages; at rest they are only ciphertext.

pub mod client;
pub mod custodial;
pub mod dpop;
mod http;
pub mod metadata;
pub mod metrics;
pub mod store;

use std::sync::Arc;

use atelier_relay::sync::identity::IdentityError;
use atelier_relay::sync::ssrf::SsrfError;

pub use client::{
    CallbackParams, ClientConfig, ClientKind, OAuthClient, PendingAuthorization, Session,
    XrpcInput, XrpcRequest,
};
pub use dpop::DpopKey;
pub use http::Progress;
pub use metadata::{AuthServerMetadata, Discovered};
pub use metrics::OAuthMetrics;
pub use store::{SessionKeys, SessionStore, StoreError};

/// What went wrong during sign-in or while using a session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OAuthError {
    /// The handle or DID could not be resolved.
    #[error("resolving the account: {0}")]
    Identity(#[from] IdentityError),
    /// The DID document names no `#atproto_pds` service.
    #[error("{did} has no PDS in its DID document")]
    NoPds {
        /// The DID.
        did: String,
    },
    /// A fetch was refused by the SSRF guard or failed.
    #[error(transparent)]
    Ssrf(#[from] SsrfError),
    /// A request could not be sent or its response not read.
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// A URL could not be parsed or built.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The authorization server's metadata breaks the profile.
    #[error("authorization server {issuer}: {reason}")]
    BadMetadata {
        /// The issuer it was fetched for.
        issuer: String,
        /// What is wrong.
        reason: String,
    },
    /// An OAuth endpoint answered with an error (`{error, error_description}`).
    #[error("{endpoint} answered {status}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        /// Which endpoint (`par`, `token`, `refresh`, `revoke`).
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The OAuth error code.
        error: String,
        /// The server's description.
        description: Option<String>,
    },
    /// The authorization server's answer is not what the profile requires.
    #[error("invalid {what} from the authorization server: {reason}")]
    BadResponse {
        /// Which answer.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The callback's `state` is not the one this authorization sent.
    #[error("the callback's state does not match the authorization request")]
    StateMismatch,
    /// The callback's `iss` is missing or not the authorization server asked.
    #[error("the callback's issuer {got:?} is not {expected}")]
    IssuerMismatch {
        /// The issuer the request went to.
        expected: String,
        /// The callback's `iss`.
        got: Option<String>,
    },
    /// The user (or the server) refused the authorization.
    #[error("authorization refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        /// The OAuth error code (`access_denied`, ...).
        error: String,
        /// The server's description.
        description: Option<String>,
    },
    /// The token's `sub` is not the account the sign-in started with.
    #[error("the token is for {got}, but the sign-in was for {expected}")]
    SubjectMismatch {
        /// The DID resolved at the start.
        expected: String,
        /// The token's `sub`.
        got: String,
    },
    /// The token's account no longer resolves to the PDS and authorization server the
    /// sign-in used.
    #[error(
        "{did} now resolves to PDS {pds_url} with authorization server {issuer}, not the ones signed in with"
    )]
    AudienceMismatch {
        /// The token's `sub`.
        did: String,
        /// The PDS its DID document names now.
        pds_url: String,
        /// That PDS's authorization server.
        issuer: String,
    },
    /// The session lacks a scope the PDS requires for this call: sign in again asking
    /// for it.
    #[error(
        "this needs the permission {scope:?}, which was not granted: sign in again to allow it"
    )]
    ScopeMissing {
        /// The scope the PDS named (`repo:computer.aesthetic.painting?action=create`).
        scope: String,
    },
    /// The session is no longer valid at the authorization server (revoked or expired
    /// refresh): sign in again.
    #[error("the session has ended ({reason}): sign in again")]
    SessionEnded {
        /// Why.
        reason: String,
    },
    /// The PDS answered an XRPC call with an error.
    #[error("{nsid} answered {status}: {error}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Xrpc {
        /// The method.
        nsid: String,
        /// The HTTP status.
        status: u16,
        /// The XRPC error name.
        error: String,
        /// The message.
        message: Option<String>,
    },
    /// A cryptographic operation failed (random generator, key parse, signing).
    #[error("crypto: {0}")]
    Crypto(&'static str),
}
