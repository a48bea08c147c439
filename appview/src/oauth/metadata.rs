//! Discovery: from a handle or DID to the authorization server that signs its tokens.
//!
//! handle → DID (the relay's [`Resolver`], DNS TXT or well-known) → DID document → the
//! `#atproto_pds` endpoint → `{pds}/.well-known/oauth-protected-resource` (its first
//! `authorization_servers` entry) → `{issuer}/.well-known/oauth-authorization-server`.
//!
//! The authorization server's metadata is checked before anything is sent to it: the
//! `issuer` must be the origin we fetched it from, the authorization, token and PAR
//! endpoints must be present, PAR must be supported, DPoP must offer `ES256`, and PKCE
//! `S256` (when the list is given). Every fetch goes through the SSRF guard.

use atelier_relay::sync::identity::Resolver;
use serde::{Deserialize, Serialize};

use super::OAuthError;
use super::http::OAuthHttp;

/// The parts of the authorization server's metadata this client uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthServerMetadata {
    /// The issuer: the authorization server's origin, and the `iss` of the callback.
    pub issuer: String,
    /// Where the browser is sent (with the PAR's `request_uri`).
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Where the authorization request is pushed (PAR, RFC 9126).
    pub pushed_authorization_request_endpoint: Option<String>,
    /// Where tokens are revoked on sign-out (RFC 7009).
    pub revocation_endpoint: Option<String>,
    /// DPoP algorithms the server verifies; must include `ES256`.
    #[serde(default)]
    pub dpop_signing_alg_values_supported: Vec<String>,
    /// PKCE methods; must include `S256` when given.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Whether PAR is supported (the endpoint's presence is what counts).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// Scopes the server advertises (informational: granular scopes are not listed).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
}

impl AuthServerMetadata {
    /// The PAR endpoint (checked present by [`check`](AuthServerMetadata::check)).
    pub fn par_endpoint(&self) -> &str {
        self.pushed_authorization_request_endpoint
            .as_deref()
            .unwrap_or_default()
    }

    /// The profile's requirements, for metadata fetched from `expected_issuer`.
    pub fn check(&self, expected_issuer: &str) -> Result<(), OAuthError> {
        let bad = |reason: String| OAuthError::BadMetadata {
            issuer: expected_issuer.to_owned(),
            reason,
        };
        if trim_slash(&self.issuer) != trim_slash(expected_issuer) {
            return Err(bad(format!("issuer is {:?}", self.issuer)));
        }
        for (name, value) in [
            (
                "authorization_endpoint",
                self.authorization_endpoint.as_str(),
            ),
            ("token_endpoint", self.token_endpoint.as_str()),
            ("pushed_authorization_request_endpoint", self.par_endpoint()),
        ] {
            if url::Url::parse(value).is_err() {
                return Err(bad(format!("{name} is missing or not a URL")));
            }
        }
        if !self
            .dpop_signing_alg_values_supported
            .iter()
            .any(|a| a == "ES256")
        {
            return Err(bad("DPoP ES256 is not supported".into()));
        }
        if !self.code_challenge_methods_supported.is_empty()
            && !self
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(bad("PKCE S256 is not supported".into()));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ProtectedResource {
    #[serde(default)]
    authorization_servers: Vec<String>,
}

/// Who is signing in, and where: the result of discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The account's DID.
    pub did: String,
    /// The handle the DID document claims, if any (not verified here).
    pub handle: Option<String>,
    /// The account's PDS (the resource server the tokens are for), without a trailing slash.
    pub pds_url: String,
    /// The authorization server's metadata, checked.
    pub auth_server: AuthServerMetadata,
}

/// `trim_end_matches('/')`, so `http://x/` and `http://x` compare equal.
pub(crate) fn trim_slash(s: &str) -> &str {
    s.trim_end_matches('/')
}

/// Resolves `identifier` (a handle or a DID) to its PDS and authorization server.
pub(crate) async fn discover(
    resolver: &Resolver,
    http: &OAuthHttp,
    identifier: &str,
) -> Result<Discovered, OAuthError> {
    let identifier = identifier.trim().trim_start_matches('@');
    let did = if identifier.starts_with("did:") {
        identifier.to_owned()
    } else {
        resolver.resolve_handle(identifier).await?
    };
    let doc = resolver.resolve_did(&did).await?;
    let pds_url = doc
        .pds_endpoint()
        .map(|u| trim_slash(u).to_owned())
        .ok_or_else(|| OAuthError::NoPds { did: did.clone() })?;
    let resource: ProtectedResource = http
        .guard()
        .get_json(&format!("{pds_url}/.well-known/oauth-protected-resource"))
        .await?;
    let issuer = resource
        .authorization_servers
        .first()
        .map(|s| trim_slash(s).to_owned())
        .ok_or_else(|| OAuthError::BadMetadata {
            issuer: pds_url.clone(),
            reason: "the protected-resource metadata names no authorization server".into(),
        })?;
    let auth_server: AuthServerMetadata = http
        .guard()
        .get_json(&format!("{issuer}/.well-known/oauth-authorization-server"))
        .await?;
    auth_server.check(&issuer)?;
    Ok(Discovered {
        did,
        handle: doc.handle().map(str::to_owned),
        pds_url,
        auth_server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(issuer: &str, algs: &[&str], par: bool) -> AuthServerMetadata {
        AuthServerMetadata {
            issuer: issuer.into(),
            authorization_endpoint: format!("{issuer}/oauth/authorize"),
            token_endpoint: format!("{issuer}/oauth/token"),
            pushed_authorization_request_endpoint: par.then(|| format!("{issuer}/oauth/par")),
            revocation_endpoint: None,
            dpop_signing_alg_values_supported: algs.iter().map(|s| s.to_string()).collect(),
            code_challenge_methods_supported: vec!["S256".into()],
            require_pushed_authorization_requests: true,
            scopes_supported: vec![],
        }
    }

    #[test]
    fn metadata_checks() {
        let ok = meta("http://localhost:1", &["ES256"], true);
        assert!(ok.check("http://localhost:1/").is_ok());
        let wrong_issuer = ok.check("http://evil:1").unwrap_err().to_string();
        assert!(wrong_issuer.contains("issuer"), "{wrong_issuer}");
        let no_es256 = meta("http://localhost:1", &["RS256"], true);
        assert!(no_es256.check("http://localhost:1").is_err());
        let no_par = meta("http://localhost:1", &["ES256"], false);
        let e = no_par.check("http://localhost:1").unwrap_err().to_string();
        assert!(e.contains("pushed_authorization_request_endpoint"), "{e}");
    }
}
