//! Inter-service auth: verifying the JWTs a PDS mints with
//! `com.atproto.server.getServiceAuth`, sent to us as `Authorization: Bearer <jwt>`.
//!
//! A signed-in user's PDS signs a short-lived token with the account's own `#atproto`
//! key, naming the user (`iss`), us (`aud`) and, usually, the one XRPC method it is good
//! for (`lxm`). Verifying it tells us who the viewer is without any session of our own,
//! which is how personalised queries (and later, writes proxied through the PDS) know
//! their user.
//!
//! The checks mirror the reference verifier (`verifyJwt` in `@atproto/xrpc-server`), in
//! its order, with its error names:
//! 1. the token is at most [`MAX_TOKEN_BYTES`] and has three base64url parts, the header
//!    is a JSON object with a string `alg`, and its `typ` is not one of the token kinds
//!    that must never be accepted as service auth (`at+jwt`, `refresh+jwt`, `dpop+jwt`):
//!    `BadJwt`, `BadJwtType`;
//! 2. the payload has string `iss` and `aud`, numeric `exp`, and string-or-absent `lxm`
//!    and `jti`: `BadJwt`;
//! 3. `exp` has not passed (no clock-skew tolerance by default, as the reference):
//!    `JwtExpired`;
//! 4. `aud` is our service DID: `BadJwtAudience`;
//! 5. when the caller names a method, `lxm` is that method: `BadJwtLexiconMethod`;
//! 6. the signature, 64-byte `r ‖ s` over `base64url(header).base64url(payload)`, verifies
//!    with the issuer's key under the header's `alg` (`ES256K` or `ES256`). On a mismatch
//!    the DID document is fetched afresh once (the key may have rotated) and the check
//!    retried: `BadJwtSignature`.
//!
//! Where we are stricter than the reference: high-S signatures are refused on both curves
//! (the reference accepts them in a compatibility mode; [`PublicKey::verify`] requires
//! low-S, as for commits), and `lxm`/`jti` of a non-string type are `BadJwt`.
//!
//! `iss` may carry a service fragment (`did:plc:abc#atproto_labeler`): the DID part is the
//! viewer, and, as in the reference AppView, a `#atproto_labeler` issuer signs with its
//! `#atproto_label` key; every other issuer signs with `#atproto`.
//!
//! **Architecture Invariant:** this module does no cryptography of its own; keys are parsed
//! and signatures checked by [`atelier_relay::sync::keys`], and documents come from the
//! shared [`Resolver`] (its cache and its per-DID refresh rate limit).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use atelier_relay::sync::identity::{
    DidDocument, IdentityError, KeyRefresh, Resolver, SigningKeyRef, check_did,
};
use atelier_relay::sync::keys::{Curve, KeyError, PublicKey};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The longest token accepted, in bytes. Real service tokens are under 1 KiB; the cap keeps
/// hostile input from costing more than a bounded decode.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The `iss` fragment of a labeler service, whose tokens are signed with its label key.
const LABELER_SERVICE: &str = "atproto_labeler";

/// JWT `typ` values that name other kinds of token (OAuth access tokens, the reference
/// PDS's refresh tokens, DPoP proofs) and so are never service auth.
const FORBIDDEN_TYPES: [&str; 3] = ["at+jwt", "refresh+jwt", "dpop+jwt"];

/// Verifies inter-service auth tokens addressed to one service DID.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    /// Resolves issuers' DID documents; shared with the rest of the AppView so documents
    /// are cached (and rate-limited refreshes counted) once.
    resolver: Resolver,
    /// Our service identity as configured: a DID, or `did#service` as the DID document
    /// advertises it. Tokens must name exactly this, or (legacy) its bare DID.
    audience: String,
    /// How far past `exp` a token is still accepted, for clock skew between the issuer's
    /// PDS and us. Zero by default, as the reference verifier.
    leeway: Duration,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    /// The issuer's DID, without any `#service` fragment: the viewer.
    pub did: String,
    /// The `iss` fragment without `#` (`atproto_labeler` for a labeler service), if any.
    pub service: Option<String>,
    /// The lexicon method the token is bound to, if it names one.
    pub lxm: Option<String>,
    /// When the token expires (unix seconds, rounded down).
    pub exp: i64,
    /// The token's nonce, if any (the reference verifier does not track replays; callers
    /// that need single-use tokens can).
    pub jti: Option<String>,
}

/// Why a token was refused. [`AuthError::error_name`] and [`AuthError::status`] give the
/// XRPC error body and status; the `Display` text is safe to send to the client (it never
/// includes upstream URLs or internal details, which stay in [`std::error::Error::source`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` credentials.
    #[error("authorization required: {reason}")]
    Missing {
        /// What is wrong with the header.
        reason: &'static str,
    },
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("jwt of {len} bytes exceeds the {MAX_TOKEN_BYTES}-byte limit")]
    TooLarge {
        /// The token's length in bytes.
        len: usize,
    },
    /// The token is not a well-formed service JWT.
    #[error("poorly formatted jwt: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header's `typ` names another kind of token.
    #[error("invalid jwt type {typ:?}")]
    BadType {
        /// The `typ` value.
        typ: String,
    },
    /// `exp` has passed.
    #[error("jwt expired (exp {exp})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
    },
    /// `aud` is not our service DID.
    #[error("jwt audience {aud:?} does not match service did {expected:?}")]
    BadAudience {
        /// The token's `aud`.
        aud: String,
        /// Our configured audience.
        expected: String,
    },
    /// The method requires an `lxm` and the token has none.
    #[error("missing jwt lexicon method (\"lxm\"). must match: {expected}")]
    LexiconMethodMissing {
        /// The method being called.
        expected: String,
    },
    /// The token is bound to another method.
    #[error("bad jwt lexicon method (\"lxm\") {found:?}. must match: {expected}")]
    LexiconMethodMismatch {
        /// The method being called.
        expected: String,
        /// The token's `lxm`.
        found: String,
    },
    /// The header's `alg` is neither `ES256K` nor `ES256`.
    #[error("unsupported jwt alg {alg:?} (expected ES256K or ES256)")]
    UnsupportedAlg {
        /// The `alg` value.
        alg: String,
    },
    /// The header's `alg` is for another curve than the issuer's key.
    #[error("jwt alg {alg} does not match the issuer's {key_alg} key")]
    AlgMismatch {
        /// The header's `alg`.
        alg: &'static str,
        /// The `alg` of the issuer's key.
        key_alg: &'static str,
    },
    /// The signature part is not base64url.
    #[error("jwt signature is not base64url")]
    SignatureEncoding,
    /// The signature is not a 64-byte low-S `r ‖ s` pair.
    #[error("malformed jwt signature: {source}")]
    MalformedSignature {
        /// What the key layer found.
        #[source]
        source: KeyError,
    },
    /// The signature does not verify with the issuer's key (cached or refreshed).
    #[error("jwt signature does not match jwt issuer")]
    BadSignature,
    /// The issuer's DID does not resolve to a usable document (unknown, tombstoned,
    /// malformed, or refused by the fetch guard).
    #[error("jwt issuer {did} could not be resolved ({reason})", reason = .source.reason())]
    IssuerUnknown {
        /// The issuer's DID.
        did: String,
        /// The resolver's error (boxed: it is large, and rare).
        #[source]
        source: Box<IdentityError>,
    },
    /// The issuer's DID could not be resolved for now (network, DNS, upstream errors).
    #[error("jwt issuer {did} could not be resolved right now")]
    IssuerUnavailable {
        /// The issuer's DID.
        did: String,
        /// The resolver's error (boxed: it is large, and rare).
        #[source]
        source: Box<IdentityError>,
    },
    /// The issuer's document has no usable key of the kind its `iss` calls for.
    #[error("jwt issuer {did} has no usable #{key_id} key")]
    IssuerKey {
        /// The issuer's DID.
        did: String,
        /// The verification method looked for (`atproto` or `atproto_label`).
        key_id: &'static str,
        /// Why the key did not parse, when there was one.
        #[source]
        source: Option<KeyError>,
    },
}

impl AuthError {
    /// The XRPC error name for the `{error, message}` body.
    pub fn error_name(&self) -> &'static str {
        match self {
            AuthError::Missing { .. } => "AuthMissing",
            AuthError::TooLarge { .. } | AuthError::Malformed { .. } => "BadJwt",
            AuthError::BadType { .. } => "BadJwtType",
            AuthError::Expired { .. } => "JwtExpired",
            AuthError::BadAudience { .. } => "BadJwtAudience",
            AuthError::LexiconMethodMissing { .. } | AuthError::LexiconMethodMismatch { .. } => {
                "BadJwtLexiconMethod"
            }
            AuthError::UnsupportedAlg { .. }
            | AuthError::AlgMismatch { .. }
            | AuthError::SignatureEncoding
            | AuthError::MalformedSignature { .. }
            | AuthError::BadSignature => "BadJwtSignature",
            AuthError::IssuerUnknown { .. } | AuthError::IssuerKey { .. } => "BadJwtIssuer",
            AuthError::IssuerUnavailable { .. } => "UpstreamFailure",
        }
    }

    /// Whether a fresher key could change the answer: the signature is well-formed but does
    /// not fit the key we have (another curve, or it does not verify). A malformed signature
    /// (length, high-S, scalars) fails with any key.
    fn is_stale_key(&self) -> bool {
        matches!(
            self,
            AuthError::AlgMismatch { .. } | AuthError::BadSignature
        )
    }

    /// The HTTP status: 401 for every refusal, 502 when the issuer could not be resolved
    /// because of a failure upstream (the token may well be good).
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::IssuerUnavailable { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A token split and decoded, not yet checked against anything.
#[derive(Debug)]
struct Token<'a> {
    /// `base64url(header).base64url(payload)`: the signed bytes, exactly as sent.
    signed: &'a str,
    /// The signature part, still base64url.
    signature: &'a str,
    /// The header's `alg`.
    alg: String,
    claims: Claims,
}

/// The payload claims we read.
#[derive(Debug)]
struct Claims {
    /// The DID part of `iss`.
    did: String,
    /// The fragment of `iss`, without `#`.
    service: Option<String>,
    aud: String,
    /// `exp` as sent: JSON numbers may be fractional, and the reference compares them so.
    exp: f64,
    lxm: Option<String>,
    jti: Option<String>,
}

impl ServiceAuth {
    /// A verifier for tokens addressed to `audience`: our service DID, or `did#service`
    /// as our DID document advertises the service. With a fragment, tokens naming the
    /// bare DID are accepted too (the reference PDS's proxy long sent bare DIDs); without
    /// one, only the bare DID is.
    pub fn new(resolver: Resolver, audience: impl Into<String>) -> Self {
        ServiceAuth {
            resolver,
            audience: audience.into(),
            leeway: Duration::ZERO,
        }
    }

    /// Accept tokens up to `leeway` past their `exp` (clock skew allowance).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The configured audience.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Parses an `Authorization` header value (`Bearer <jwt>`, scheme case-insensitive)
    /// and returns the token.
    pub fn bearer(header: &str) -> Result<&str, AuthError> {
        let header = header.trim();
        if header.is_empty() {
            return Err(AuthError::Missing {
                reason: "empty Authorization header",
            });
        }
        let (scheme, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing {
                reason: "Authorization is not a Bearer token",
            });
        }
        let token = rest.trim();
        if token.is_empty() {
            return Err(AuthError::Missing {
                reason: "Bearer token is empty",
            });
        }
        Ok(token)
    }

    /// Verifies a bearer token for method `lxm` (`None`: any method, or none) and returns
    /// the viewer.
    pub async fn verify(&self, token: &str, lxm: Option<&str>) -> Result<Viewer, AuthError> {
        self.verify_at(token, lxm, unix_now()).await
    }

    /// [`ServiceAuth::verify`] at time `now` (unix seconds).
    async fn verify_at(
        &self,
        token: &str,
        lxm: Option<&str>,
        now: f64,
    ) -> Result<Viewer, AuthError> {
        let token = parse(token)?;
        let claims = &token.claims;
        if now > claims.exp + self.leeway.as_secs_f64() {
            return Err(AuthError::Expired {
                exp: claims.exp.floor() as i64,
            });
        }
        if !self.accepts_audience(&claims.aud) {
            return Err(AuthError::BadAudience {
                aud: claims.aud.clone(),
                expected: self.audience.clone(),
            });
        }
        if let Some(expected) = lxm {
            match &claims.lxm {
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(AuthError::LexiconMethodMismatch {
                        expected: expected.to_owned(),
                        found: found.clone(),
                    });
                }
                None => {
                    return Err(AuthError::LexiconMethodMissing {
                        expected: expected.to_owned(),
                    });
                }
            }
        }
        let curve = match token.alg.as_str() {
            "ES256K" => Curve::K256,
            "ES256" => Curve::P256,
            other => {
                return Err(AuthError::UnsupportedAlg {
                    alg: other.to_owned(),
                });
            }
        };
        let signature = URL_SAFE_NO_PAD
            .decode(token.signature)
            .map_err(|_| AuthError::SignatureEncoding)?;
        self.check_signature(&token, curve, &signature).await?;
        let claims = token.claims;
        Ok(Viewer {
            did: claims.did,
            service: claims.service,
            lxm: claims.lxm,
            exp: claims.exp.floor() as i64,
            jti: claims.jti,
        })
    }

    /// Whether `aud` names us: the configured audience, or its bare DID.
    fn accepts_audience(&self, aud: &str) -> bool {
        let bare = self
            .audience
            .split_once('#')
            .map_or(self.audience.as_str(), |(did, _)| did);
        aud == self.audience || aud == bare
    }

    /// Verifies the signature with the issuer's cached key, then once more with a freshly
    /// resolved key if the first check failed in a way a rotation could explain.
    async fn check_signature(
        &self,
        token: &Token<'_>,
        curve: Curve,
        signature: &[u8],
    ) -> Result<(), AuthError> {
        let did = &token.claims.did;
        let key_id = KeyId::for_service(token.claims.service.as_deref());
        let doc = self
            .resolver
            .resolve_did(did)
            .await
            .map_err(|e| issuer_error(did, e))?;
        let (cached, first_error) = match issuer_key(&doc, did, key_id) {
            Ok(key) => match attempt(&key, curve, token.signed, signature) {
                Ok(()) => return Ok(()),
                Err(e) if !e.is_stale_key() => return Err(e),
                Err(e) => (Some(key), e),
            },
            Err(e) => (None, e),
        };
        let fresh_doc = match self.resolver.refresh_signing_key(did).await {
            Ok(KeyRefresh::Changed(doc) | KeyRefresh::Unchanged(doc)) => doc,
            Ok(KeyRefresh::RateLimited) => {
                tracing::debug!(did = %did, "service auth: key refresh rate-limited");
                return Err(first_error);
            }
            Err(error) => {
                tracing::debug!(did = %did, %error, "service auth: key refresh failed");
                return Err(first_error);
            }
        };
        let fresh = issuer_key(&fresh_doc, did, key_id)?;
        if cached.as_ref() == Some(&fresh) {
            return Err(first_error);
        }
        tracing::info!(did = %did, key_id = key_id.name(), "service auth: issuer key rotated");
        attempt(&fresh, curve, token.signed, signature)
    }
}

/// Checks `signature` over `signed` with `key`, which must be on the header's curve.
fn attempt(key: &PublicKey, curve: Curve, signed: &str, signature: &[u8]) -> Result<(), AuthError> {
    if key.curve() != curve {
        return Err(AuthError::AlgMismatch {
            alg: curve.jwt_alg(),
            key_alg: key.curve().jwt_alg(),
        });
    }
    key.verify_bytes(signed.as_bytes(), signature)
        .map_err(|source| match source {
            KeyError::BadSignature => AuthError::BadSignature,
            source => AuthError::MalformedSignature { source },
        })
}

/// Which of the issuer's verification methods signs its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyId {
    /// `#atproto`, the account's signing key.
    Atproto,
    /// `#atproto_label`, a labeler's label signing key.
    Label,
}

impl KeyId {
    /// `#atproto_label` for a labeler service, `#atproto` for everyone else.
    fn for_service(service: Option<&str>) -> KeyId {
        match service {
            Some(LABELER_SERVICE) => KeyId::Label,
            _ => KeyId::Atproto,
        }
    }

    /// The verification method's fragment.
    fn name(self) -> &'static str {
        match self {
            KeyId::Atproto => "atproto",
            KeyId::Label => "atproto_label",
        }
    }
}

/// The issuer's key `key_id` from its document, parsed.
fn issuer_key(doc: &DidDocument, did: &str, key_id: KeyId) -> Result<PublicKey, AuthError> {
    let key_ref: Option<SigningKeyRef> = match key_id {
        KeyId::Atproto => doc.signing_key(),
        KeyId::Label => doc.label_key(),
    };
    let missing = |source| AuthError::IssuerKey {
        did: did.to_owned(),
        key_id: key_id.name(),
        source,
    };
    let key_ref = key_ref.ok_or_else(|| missing(None))?;
    PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase)
        .map_err(|e| missing(Some(e)))
}

/// Sorts a resolution failure into the issuer's fault or a passing upstream failure.
fn issuer_error(did: &str, source: IdentityError) -> AuthError {
    let transient = match &source {
        IdentityError::Fetch { source, .. } => !source.is_refusal(),
        IdentityError::Dns { .. } => true,
        _ => false,
    };
    let (did, source) = (did.to_owned(), Box::new(source));
    if transient {
        AuthError::IssuerUnavailable { did, source }
    } else {
        AuthError::IssuerUnknown { did, source }
    }
}

/// Splits and decodes a token, checking its shape but nothing it claims.
fn parse(token: &str) -> Result<Token<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLarge { len: token.len() });
    }
    let malformed = |reason| AuthError::Malformed { reason };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };
    let signed = &token[..header.len() + 1 + payload.len()];

    let header = decode_object(header).ok_or(malformed("header is not a base64url JSON object"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(malformed("header has no string \"alg\""))?
        .to_owned();
    if let Some(typ) = header.get("typ").and_then(Value::as_str)
        && FORBIDDEN_TYPES
            .iter()
            .any(|forbidden| typ.eq_ignore_ascii_case(forbidden))
    {
        return Err(AuthError::BadType {
            typ: typ.to_owned(),
        });
    }

    let payload =
        decode_object(payload).ok_or(malformed("payload is not a base64url JSON object"))?;
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(malformed("payload has no string \"iss\""))?;
    let aud = payload
        .get("aud")
        .and_then(Value::as_str)
        .ok_or(malformed("payload has no string \"aud\""))?
        .to_owned();
    let exp = payload
        .get("exp")
        .and_then(Value::as_f64)
        .ok_or(malformed("payload has no numeric \"exp\""))?;
    let lxm = optional_string(&payload, "lxm").ok_or(malformed("\"lxm\" is not a string"))?;
    let jti = optional_string(&payload, "jti").ok_or(malformed("\"jti\" is not a string"))?;
    let (did, service) = match iss.split_once('#') {
        Some((_, "")) => return Err(malformed("\"iss\" has an empty #fragment")),
        Some((did, service)) => (did, Some(service.to_owned())),
        None => (iss, None),
    };
    check_did(did).map_err(|_| malformed("\"iss\" is not a DID"))?;
    Ok(Token {
        signed,
        signature,
        alg,
        claims: Claims {
            did: did.to_owned(),
            service,
            aud,
            exp,
            lxm,
            jti,
        },
    })
}

/// Decodes one base64url (unpadded, canonical) part holding a JSON object.
fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// `Some(None)` when `key` is absent or null, `Some(Some(s))` for a string, `None` for any
/// other type.
fn optional_string(object: &Map<String, Value>, key: &str) -> Option<Option<String>> {
    match object.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// The current time in unix seconds (0 before the epoch, which no real clock reports).
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use atelier_relay::sync::identity::ResolverConfig;
    use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use serde_json::json;
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Our service identity in these tests.
    const AUD: &str = "did:web:appview.test#atelier_appview";
    /// The method the tokens are minted for.
    const LXM: &str = "computer.aesthetic.feed.getAtmosphere";

    // -----------------------------------------------------------------------------------
    // A PLC directory stand-in on loopback: `GET /{did}` serves the document published
    // for that DID (404 otherwise) and counts the fetches.

    #[derive(Clone, Default)]
    struct Plc {
        url: String,
        docs: Arc<Mutex<HashMap<String, String>>>,
        hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl Plc {
        async fn start() -> Plc {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let plc = Plc {
                url: format!("http://{}", listener.local_addr().unwrap()),
                ..Plc::default()
            };
            let shared = plc.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let plc = shared.clone();
                    tokio::spawn(async move {
                        let Some(path) = request_path(&mut stream).await else {
                            return;
                        };
                        let did = path.trim_start_matches('/').to_owned();
                        *plc.hits.lock().unwrap().entry(did.clone()).or_default() += 1;
                        let doc = plc.docs.lock().unwrap().get(&did).cloned();
                        let (status, body) = match doc {
                            Some(doc) => ("200 OK", doc),
                            None => ("404 Not Found", "{\"message\":\"not found\"}".into()),
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(body.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            });
            plc
        }

        fn publish(&self, did: &str, doc: &Value) {
            self.docs
                .lock()
                .unwrap()
                .insert(did.to_owned(), doc.to_string());
        }

        fn hits(&self, did: &str) -> usize {
            self.hits.lock().unwrap().get(did).copied().unwrap_or(0)
        }

        fn verifier(&self) -> ServiceAuth {
            let guard = GuardedClient::new(SsrfPolicy::sandbox()).unwrap();
            let resolver = Resolver::new(ResolverConfig::sandbox(self.url.clone()), guard);
            ServiceAuth::new(resolver, AUD)
        }
    }

    async fn request_path(stream: &mut tokio::net::TcpStream) -> Option<String> {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || head.len() > 16 * 1024 {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        Some(text.lines().next()?.split(' ').nth(1)?.to_owned())
    }

    // -----------------------------------------------------------------------------------
    // Keys, documents and tokens.

    /// secp256k1 and P-256 group orders, big-endian.
    const K256_N: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

    fn hex32(hex: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// `sig` with `s` replaced by `n - s`: the same signature's other-S twin.
    fn negate_s(sig: &[u8; 64], n: &str) -> [u8; 64] {
        let n = hex32(n);
        let mut out = *sig;
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[32 + i] = d as u8;
        }
        out
    }

    /// A test signing key on either curve; signatures come out low-S.
    enum Signer {
        K256(secp256k1::SecretKey),
        P256(Box<EcdsaKeyPair>),
    }

    impl Signer {
        /// A secp256k1 key derived from `seed` (deterministic, test only).
        fn k256(seed: &str) -> Signer {
            let secret: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
            Signer::K256(secp256k1::SecretKey::from_byte_array(secret).unwrap())
        }

        /// A fresh P-256 key.
        fn p256() -> Signer {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer::P256(Box::new(pair))
        }

        fn public(&self) -> PublicKey {
            match self {
                Signer::K256(secret) => {
                    let secp = secp256k1::Secp256k1::signing_only();
                    let point = secp256k1::PublicKey::from_secret_key(&secp, secret);
                    PublicKey::from_point(Curve::K256, &point.serialize()).unwrap()
                }
                Signer::P256(pair) => {
                    PublicKey::from_point(Curve::P256, pair.public_key().as_ref()).unwrap()
                }
            }
        }

        fn alg(&self) -> &'static str {
            self.public().curve().jwt_alg()
        }

        /// A low-S `r ‖ s` signature over SHA-256(`msg`).
        fn sign(&self, msg: &[u8]) -> [u8; 64] {
            match self {
                Signer::K256(secret) => {
                    let digest: [u8; 32] = Sha256::digest(msg).into();
                    // libsecp256k1 always signs low-S.
                    secp256k1::Secp256k1::signing_only()
                        .sign_ecdsa(secp256k1::Message::from_digest(digest), secret)
                        .serialize_compact()
                }
                Signer::P256(pair) => {
                    let rng = ring::rand::SystemRandom::new();
                    let sig: [u8; 64] = pair.sign(&rng, msg).unwrap().as_ref().try_into().unwrap();
                    // ring signs with either S; keep the low one.
                    let twin = negate_s(&sig, P256_N);
                    if sig[32..] > twin[32..] { twin } else { sig }
                }
            }
        }
    }

    fn did(name: &str) -> String {
        format!("did:plc:{name:a<24}")
    }

    fn method(did: &str, fragment: &str, key: &PublicKey) -> Value {
        json!({
            "id": format!("{did}#{fragment}"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": key.to_multikey(),
        })
    }

    /// A DID document with an optional `#atproto` and `#atproto_label` key.
    fn document(did: &str, atproto: Option<&Signer>, label: Option<&Signer>) -> Value {
        let mut methods = Vec::new();
        if let Some(key) = atproto {
            methods.push(method(did, "atproto", &key.public()));
        }
        if let Some(key) = label {
            methods.push(method(did, "atproto_label", &key.public()));
        }
        json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": [],
            "verificationMethod": methods,
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": "http://127.0.0.1:1",
            }],
        })
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// Signs `header.payload` with `signer`.
    fn mint(signer: &Signer, header: &Value, payload: &Value) -> String {
        let signed = format!("{}.{}", b64(header), b64(payload));
        let sig = signer.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn header(signer: &Signer) -> Value {
        json!({"typ": "JWT", "alg": signer.alg()})
    }

    /// Claims as the reference PDS mints them: valid for a minute, bound to `lxm`.
    fn claims(iss: &str, lxm: Option<&str>) -> Value {
        let now = unix_now() as i64;
        let mut claims = json!({
            "iat": now,
            "iss": iss,
            "aud": AUD,
            "exp": now + 60,
            "jti": "0123456789abcdef0123456789abcdef",
        });
        if let Some(lxm) = lxm {
            claims["lxm"] = json!(lxm);
        }
        claims
    }

    /// `claims(iss, Some(LXM))` with `edit` applied.
    fn claims_with(iss: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut claims = claims(iss, Some(LXM));
        edit(&mut claims);
        claims
    }

    /// A token from `signer` for `iss` with the standard header and claims.
    fn token(signer: &Signer, iss: &str) -> String {
        mint(signer, &header(signer), &claims(iss, Some(LXM)))
    }

    /// Replaces the signature part of `token` with `sig`.
    fn with_signature(token: &str, sig: &[u8]) -> String {
        let (signed, _) = token.rsplit_once('.').unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn signature(token: &str) -> [u8; 64] {
        let (_, sig) = token.rsplit_once('.').unwrap();
        URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().unwrap()
    }

    // -----------------------------------------------------------------------------------
    // The table.

    #[derive(Debug)]
    enum Expect {
        /// Accepted: the viewer DID and the `iss` service fragment.
        Viewer(String, Option<&'static str>),
        /// Refused: the XRPC error name and a fragment of the message.
        Refused(&'static str, &'static str),
    }

    struct Case {
        name: &'static str,
        token: String,
        lxm: Option<&'static str>,
        expect: Expect,
    }

    fn ok(did: &str) -> Expect {
        Expect::Viewer(did.to_owned(), None)
    }

    fn refused(name: &'static str, message: &'static str) -> Expect {
        Expect::Refused(name, message)
    }

    async fn check(auth: &ServiceAuth, case: &Case) {
        let got = auth.verify(&case.token, case.lxm).await;
        match (&case.expect, got) {
            (Expect::Viewer(did, service), Ok(viewer)) => {
                assert_eq!(&viewer.did, did, "{}", case.name);
                assert_eq!(viewer.service.as_deref(), *service, "{}", case.name);
            }
            (Expect::Refused(name, message), Err(error)) => {
                assert_eq!(error.error_name(), *name, "{}: {error}", case.name);
                assert!(
                    error.to_string().contains(message),
                    "{}: {error:?} lacks {message:?}",
                    case.name
                );
                assert_eq!(error.status(), StatusCode::UNAUTHORIZED, "{}", case.name);
            }
            (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.name),
        }
    }

    #[tokio::test]
    async fn service_tokens() {
        let plc = Plc::start().await;
        let auth = plc.verifier();

        // alice: k256 account key plus a label key; bob: P-256; nokey: no #atproto key.
        let alice_key = Signer::k256("alice");
        let alice_label = Signer::k256("alice label");
        let bob_key = Signer::p256();
        let stranger = Signer::k256("stranger");
        let (alice, bob, nokey, ghost) = (did("alice"), did("bob"), did("nokey"), did("ghost"));
        plc.publish(
            &alice,
            &document(&alice, Some(&alice_key), Some(&alice_label)),
        );
        plc.publish(&bob, &document(&bob, Some(&bob_key), None));
        plc.publish(&nokey, &document(&nokey, None, None));

        let valid = token(&alice_key, &alice);
        let high_s = with_signature(&valid, &negate_s(&signature(&valid), K256_N));
        let labeler = format!("{alice}#atproto_labeler");
        let (signed, _) = valid.rsplit_once('.').unwrap();
        let (head, _) = signed.split_once('.').unwrap();
        let tampered = format!(
            "{head}.{}.{}",
            b64(&claims_with(&alice, |c| c["exp"] = json!(unix_now() as i64 + 3600))),
            valid.rsplit_once('.').unwrap().1
        );

        let cases = vec![
            Case {
                name: "valid k256",
                token: valid.clone(),
                lxm: Some(LXM),
                expect: ok(&alice),
            },
            Case {
                name: "valid p256",
                token: token(&bob_key, &bob),
                lxm: Some(LXM),
                expect: ok(&bob),
            },
            Case {
                name: "no method required: any lxm",
                token: valid.clone(),
                lxm: None,
                expect: ok(&alice),
            },
            Case {
                name: "no method required: no lxm",
                token: mint(&alice_key, &header(&alice_key), &claims(&alice, None)),
                lxm: None,
                expect: ok(&alice),
            },
            Case {
                name: "legacy bare-DID audience",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["aud"] = json!("did:web:appview.test")),
                ),
                lxm: Some(LXM),
                expect: ok(&alice),
            },
            Case {
                name: "header without typ",
                token: mint(
                    &alice_key,
                    &json!({"alg": "ES256K"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: ok(&alice),
            },
            Case {
                name: "iss with a service fragment signs with #atproto",
                token: token(&alice_key, &format!("{alice}#atproto_pds")),
                lxm: Some(LXM),
                expect: Expect::Viewer(alice.clone(), Some("atproto_pds")),
            },
            Case {
                name: "labeler iss signs with #atproto_label",
                token: token(&alice_label, &labeler),
                lxm: Some(LXM),
                expect: Expect::Viewer(alice.clone(), Some("atproto_labeler")),
            },
            Case {
                name: "labeler iss signed with #atproto",
                token: token(&alice_key, &labeler),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "does not match jwt issuer"),
            },
            Case {
                name: "expired",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["exp"] = json!(unix_now() as i64 - 10)),
                ),
                lxm: Some(LXM),
                expect: refused("JwtExpired", "jwt expired"),
            },
            Case {
                name: "wrong audience",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["aud"] = json!("did:web:other.test")),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtAudience", "does not match service did"),
            },
            Case {
                name: "our DID with another service fragment",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| {
                        c["aud"] = json!("did:web:appview.test#atproto_labeler")
                    }),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtAudience", "atproto_labeler"),
            },
            Case {
                name: "wrong lxm",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims(&alice, Some("com.atproto.repo.uploadBlob")),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtLexiconMethod", "bad jwt lexicon method (\"lxm\")"),
            },
            Case {
                name: "missing lxm when required",
                token: mint(&alice_key, &header(&alice_key), &claims(&alice, None)),
                lxm: Some(LXM),
                expect: refused(
                    "BadJwtLexiconMethod",
                    "missing jwt lexicon method (\"lxm\"). must match: computer.aesthetic",
                ),
            },
            Case {
                name: "alg names the other curve",
                token: mint(
                    &alice_key,
                    &json!({"typ": "JWT", "alg": "ES256"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "jwt alg ES256 does not match"),
            },
            Case {
                name: "unsupported alg",
                token: mint(
                    &alice_key,
                    &json!({"typ": "JWT", "alg": "HS256"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "unsupported jwt alg \"HS256\""),
            },
            Case {
                name: "alg none, empty signature",
                token: format!(
                    "{}.{}.",
                    b64(&json!({"alg": "none"})),
                    b64(&claims(&alice, Some(LXM)))
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "unsupported jwt alg \"none\""),
            },
            Case {
                name: "signed by another key",
                token: token(&stranger, &alice),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "does not match jwt issuer"),
            },
            Case {
                name: "payload changed after signing",
                token: tampered,
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "does not match jwt issuer"),
            },
            Case {
                name: "high-S k256",
                token: high_s,
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "not low-S"),
            },
            Case {
                name: "signature of 63 bytes",
                token: with_signature(&valid, &signature(&valid)[..63]),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "63 bytes"),
            },
            Case {
                name: "signature not base64url",
                token: format!("{signed}.not*base64"),
                lxm: Some(LXM),
                expect: refused("BadJwtSignature", "not base64url"),
            },
            Case {
                name: "two parts",
                token: signed.to_owned(),
                lxm: Some(LXM),
                expect: refused("BadJwt", "three dot-separated parts"),
            },
            Case {
                name: "four parts",
                token: format!("{valid}.x"),
                lxm: Some(LXM),
                expect: refused("BadJwt", "three dot-separated parts"),
            },
            Case {
                name: "empty token",
                token: String::new(),
                lxm: Some(LXM),
                expect: refused("BadJwt", "three dot-separated parts"),
            },
            Case {
                name: "header not base64url",
                token: format!("!!{valid}"),
                lxm: Some(LXM),
                expect: refused("BadJwt", "header is not a base64url JSON object"),
            },
            Case {
                name: "padded base64",
                token: format!(
                    "{}==.{}",
                    b64(&json!({"alg": "ES256K", "typ": "JWT"})),
                    valid.split_once('.').unwrap().1
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "header is not a base64url JSON object"),
            },
            Case {
                name: "header not JSON",
                token: format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode("{alg: ES256K"),
                    valid.split_once('.').unwrap().1
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "header is not a base64url JSON object"),
            },
            Case {
                name: "header without alg",
                token: mint(
                    &alice_key,
                    &json!({"typ": "JWT"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "no string \"alg\""),
            },
            Case {
                name: "payload is an array",
                token: mint(&alice_key, &header(&alice_key), &json!([1, 2])),
                lxm: Some(LXM),
                expect: refused("BadJwt", "payload is not a base64url JSON object"),
            },
            Case {
                name: "payload without exp",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| {
                        c.as_object_mut().unwrap().remove("exp");
                    }),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "no numeric \"exp\""),
            },
            Case {
                name: "exp as a string",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["exp"] = json!("9999999999")),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "no numeric \"exp\""),
            },
            Case {
                name: "iss not a string",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["iss"] = json!(42)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "no string \"iss\""),
            },
            Case {
                name: "iss not a DID",
                token: token(&alice_key, "alice.test"),
                lxm: Some(LXM),
                expect: refused("BadJwt", "\"iss\" is not a DID"),
            },
            Case {
                name: "iss with an empty fragment",
                token: token(&alice_key, &format!("{alice}#")),
                lxm: Some(LXM),
                expect: refused("BadJwt", "empty #fragment"),
            },
            Case {
                name: "lxm not a string",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["lxm"] = json!(["a", "b"])),
                ),
                lxm: None,
                expect: refused("BadJwt", "\"lxm\" is not a string"),
            },
            Case {
                name: "access token type",
                token: mint(
                    &alice_key,
                    &json!({"typ": "at+jwt", "alg": "ES256K"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtType", "invalid jwt type \"at+jwt\""),
            },
            Case {
                name: "DPoP proof type",
                token: mint(
                    &alice_key,
                    &json!({"typ": "DPoP+JWT", "alg": "ES256K"}),
                    &claims(&alice, Some(LXM)),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtType", "invalid jwt type"),
            },
            Case {
                name: "oversized token",
                token: mint(
                    &alice_key,
                    &header(&alice_key),
                    &claims_with(&alice, |c| c["pad"] = json!("x".repeat(MAX_TOKEN_BYTES))),
                ),
                lxm: Some(LXM),
                expect: refused("BadJwt", "exceeds the 8192-byte limit"),
            },
            Case {
                name: "unknown issuer",
                token: token(&alice_key, &ghost),
                lxm: Some(LXM),
                expect: refused("BadJwtIssuer", "could not be resolved (not_found)"),
            },
            Case {
                name: "issuer without an #atproto key",
                token: token(&alice_key, &nokey),
                lxm: Some(LXM),
                expect: refused("BadJwtIssuer", "has no usable #atproto key"),
            },
            Case {
                name: "issuer DID method we do not resolve",
                token: token(
                    &alice_key,
                    "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
                ),
                lxm: Some(LXM),
                expect: refused("BadJwtIssuer", "unsupported_did_method"),
            },
        ];
        for case in &cases {
            check(&auth, case).await;
        }
        // A bad signature costs at most one fresh fetch per DID: the first resolution plus
        // one refresh, however many bad tokens arrived.
        assert_eq!(plc.hits(&alice), 2);
    }

    #[tokio::test]
    async fn viewer_carries_the_claims() {
        let plc = Plc::start().await;
        let key = Signer::k256("carol");
        let carol = did("carol");
        plc.publish(&carol, &document(&carol, Some(&key), None));
        let claims = claims(&carol, Some(LXM));
        let viewer = plc
            .verifier()
            .verify(&mint(&key, &header(&key), &claims), Some(LXM))
            .await
            .unwrap();
        assert_eq!(
            viewer,
            Viewer {
                did: carol,
                service: None,
                lxm: Some(LXM.to_owned()),
                exp: claims["exp"].as_i64().unwrap(),
                jti: Some("0123456789abcdef0123456789abcdef".to_owned()),
            }
        );
    }

    #[tokio::test]
    async fn expiry_is_exact_unless_leeway_is_given() {
        let plc = Plc::start().await;
        let key = Signer::p256();
        let erin = did("erin");
        plc.publish(&erin, &document(&erin, Some(&key), None));
        let token = mint(
            &key,
            &header(&key),
            &claims_with(&erin, |c| c["exp"] = json!(1_000_000)),
        );
        let strict = plc.verifier();
        let lenient = plc.verifier().with_leeway(Duration::from_secs(30));
        // Good through the very second of `exp`, as the reference (`now > exp` expires).
        assert!(strict.verify_at(&token, None, 1_000_000.0).await.is_ok());
        let late = strict
            .verify_at(&token, None, 1_000_000.5)
            .await
            .unwrap_err();
        assert_eq!(late.error_name(), "JwtExpired");
        assert!(lenient.verify_at(&token, None, 1_000_029.0).await.is_ok());
        let too_late = lenient
            .verify_at(&token, None, 1_000_031.0)
            .await
            .unwrap_err();
        assert_eq!(too_late.error_name(), "JwtExpired");
    }

    #[tokio::test]
    async fn rotated_key_is_fetched_once() {
        let plc = Plc::start().await;
        let auth = plc.verifier();
        let (old, new) = (Signer::k256("dave old"), Signer::k256("dave new"));
        let dave = did("dave");
        plc.publish(&dave, &document(&dave, Some(&old), None));
        auth.verify(&token(&old, &dave), Some(LXM)).await.unwrap();
        assert_eq!(plc.hits(&dave), 1);

        // The account rotates its key: the cached document is stale, one refresh fixes it.
        plc.publish(&dave, &document(&dave, Some(&new), None));
        let viewer = auth.verify(&token(&new, &dave), Some(LXM)).await.unwrap();
        assert_eq!(viewer.did, dave);
        assert_eq!(plc.hits(&dave), 2);
        // Later tokens verify from the refreshed cache.
        auth.verify(&token(&new, &dave), Some(LXM)).await.unwrap();
        // Tokens from the old key are refused, and cost no further fetch.
        let error = auth
            .verify(&token(&old, &dave), Some(LXM))
            .await
            .unwrap_err();
        assert_eq!(error.error_name(), "BadJwtSignature");
        assert_eq!(plc.hits(&dave), 2);
    }

    #[tokio::test]
    async fn rotation_to_the_other_curve() {
        let plc = Plc::start().await;
        let auth = plc.verifier();
        let (old, new) = (Signer::k256("frank"), Signer::p256());
        let frank = did("frank");
        plc.publish(&frank, &document(&frank, Some(&old), None));
        auth.verify(&token(&old, &frank), None).await.unwrap();
        plc.publish(&frank, &document(&frank, Some(&new), None));
        // The header's ES256 does not fit the cached k256 key: refresh, then verify.
        let viewer = auth.verify(&token(&new, &frank), None).await.unwrap();
        assert_eq!(viewer.did, frank);
        assert_eq!(plc.hits(&frank), 2);
    }

    #[tokio::test]
    async fn unreachable_directory_is_an_upstream_failure() {
        // Nothing listens on port 1; the token's signature is never looked at.
        let guard = GuardedClient::new(SsrfPolicy::sandbox()).unwrap();
        let resolver = Resolver::new(ResolverConfig::sandbox("http://127.0.0.1:1"), guard);
        let key = Signer::k256("gina");
        let error = ServiceAuth::new(resolver, AUD)
            .verify(&token(&key, &did("gina")), Some(LXM))
            .await
            .unwrap_err();
        assert_eq!(error.error_name(), "UpstreamFailure");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    }

    #[test]
    fn bearer_header() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("Bearer abc.def.ghi", Ok("abc.def.ghi")),
            ("bearer   abc.def.ghi  ", Ok("abc.def.ghi")),
            ("BEARER\tabc", Ok("abc")),
            ("Basic YWRtaW46cGFzcw==", Err("not a Bearer token")),
            ("Bearerabc", Err("not a Bearer token")),
            ("DPoP abc", Err("not a Bearer token")),
            ("Bearer", Err("Bearer token is empty")),
            ("Bearer   ", Err("Bearer token is empty")),
            ("", Err("empty Authorization header")),
        ];
        for (header, expect) in cases {
            match (ServiceAuth::bearer(header), expect) {
                (Ok(token), Ok(want)) => assert_eq!(token, *want, "{header:?}"),
                (Err(error), Err(want)) => {
                    assert_eq!(error.error_name(), "AuthMissing", "{header:?}");
                    assert!(error.to_string().contains(want), "{header:?}: {error}");
                }
                (got, want) => panic!("{header:?}: expected {want:?}, got {got:?}"),
            }
        }
    }
}
