//! AC-only accounts: accounts on the deployment's bundled PDS for people without an
//! ATProto account, signed in with a password at that PDS rather than through OAuth.
//!
//! The AppView never stores the password. Creating the account
//! (`com.atproto.server.createAccount`) or signing in (`com.atproto.server.createSession`)
//! gives a pair of session tokens (an access JWT, about two hours, and a refresh JWT);
//! they are kept in the same encrypted [`Session`] as OAuth tokens, marked custodial, so
//! the publishing API, reports and sign-out work the same for both kinds of account. A
//! custodial session's calls carry `Authorization: Bearer <access JWT>` (no DPoP); an
//! expired access token is renewed with `com.atproto.server.refreshSession` (the refresh
//! token rotates); sign-out is `com.atproto.server.deleteSession`.
//!
//! Only the bundled PDS is trusted with passwords: the URL comes from the configuration,
//! never from a handle's DID document.

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};

use super::OAuthError;
use super::client::{OAuthClient, Session, XrpcRequest};
use super::dpop::{DpopKey, now_unix};
use super::http::{Body, Response};

/// What custodial sessions are granted: the whole account (legacy session tokens).
pub const CUSTODIAL_SCOPE: &str = "atproto transition:generic";

impl OAuthClient {
    /// Creates an account `handle` on the bundled PDS at `pds_url` and signs it in.
    ///
    /// # Errors
    /// [`OAuthError::Xrpc`] with the PDS's error (`HandleNotAvailable`, `InvalidHandle`,
    /// `InvalidInviteCode`, ...), or a transport error.
    pub async fn create_account(
        &self,
        pds_url: &str,
        handle: &str,
        email: &str,
        password: &str,
        invite_code: Option<&str>,
    ) -> Result<Session, OAuthError> {
        let mut input = json!({"handle": handle, "email": email, "password": password});
        if let Some(code) = invite_code {
            input["inviteCode"] = json!(code);
        }
        let out = self
            .bundled_call(pds_url, "com.atproto.server.createAccount", None, &input)
            .await?;
        custodial_session(pds_url, &out)
    }

    /// Signs in to the bundled PDS at `pds_url` with a handle (or e-mail) and password.
    ///
    /// # Errors
    /// [`OAuthError::Xrpc`] with status 401 `AuthenticationRequired` for a wrong
    /// password, or a transport error.
    pub async fn password_session(
        &self,
        pds_url: &str,
        identifier: &str,
        password: &str,
    ) -> Result<Session, OAuthError> {
        let input = json!({"identifier": identifier, "password": password});
        let out = self
            .bundled_call(pds_url, "com.atproto.server.createSession", None, &input)
            .await?;
        custodial_session(pds_url, &out)
    }

    /// Renews a custodial session's tokens (the refresh token rotates).
    pub(crate) async fn refresh_custodial(&self, session: &mut Session) -> Result<(), OAuthError> {
        let Some(refresh) = session.refresh_token.clone() else {
            return Err(OAuthError::SessionEnded {
                reason: "no refresh token".into(),
            });
        };
        let out = self
            .bundled_call(
                &session.pds_url,
                "com.atproto.server.refreshSession",
                Some(&refresh),
                &Value::Null,
            )
            .await
            .map_err(|e| match e {
                OAuthError::Xrpc {
                    status: 400 | 401, ..
                } => OAuthError::SessionEnded {
                    reason: e.to_string(),
                },
                e => e,
            })?;
        let fresh = custodial_session(&session.pds_url, &out)?;
        if fresh.did != session.did {
            return Err(OAuthError::SubjectMismatch {
                expected: session.did.clone(),
                got: fresh.did,
            });
        }
        session.access_token = fresh.access_token;
        session.refresh_token = fresh.refresh_token;
        session.expires_at = fresh.expires_at;
        Ok(())
    }

    /// Ends a custodial session at the PDS (`deleteSession` with the refresh token).
    pub(crate) async fn revoke_custodial(&self, session: &mut Session) -> Result<(), OAuthError> {
        if let Some(refresh) = session.refresh_token.clone() {
            self.bundled_call(
                &session.pds_url,
                "com.atproto.server.deleteSession",
                Some(&refresh),
                &Value::Null,
            )
            .await?;
        }
        session.refresh_token = None;
        session.expires_at = 0;
        Ok(())
    }

    /// One call with the custodial session's access token.
    pub(crate) async fn xrpc_custodial_once(
        &self,
        session: &Session,
        request: &XrpcRequest,
    ) -> Result<Response, OAuthError> {
        let url = super::client::xrpc_url(&session.pds_url, request)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            super::client::header_value(&format!("Bearer {}", session.access_token))?,
        );
        super::client::extra_headers(&mut headers, request)?;
        let (method, body) = super::client::method_and_body(&request.input);
        self.http().send(method, url.as_str(), headers, body).await
    }

    /// A procedure on the bundled PDS, with `bearer` (a refresh token) if given, the
    /// JSON `input` unless null. Non-2xx answers become [`OAuthError::Xrpc`].
    async fn bundled_call(
        &self,
        pds_url: &str,
        nsid: &str,
        bearer: Option<&str>,
        input: &Value,
    ) -> Result<Value, OAuthError> {
        let url = format!("{}/xrpc/{nsid}", pds_url.trim_end_matches('/'));
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            headers.insert(
                AUTHORIZATION,
                super::client::header_value(&format!("Bearer {token}"))?,
            );
        }
        let body = if input.is_null() {
            Body::None
        } else {
            Body::Json(input.clone())
        };
        let response = self.http().send(Method::POST, &url, headers, body).await?;
        let out = response.json();
        if (200..300).contains(&response.status) {
            return Ok(out);
        }
        Err(OAuthError::Xrpc {
            nsid: nsid.to_owned(),
            status: response.status,
            error: out["error"].as_str().unwrap_or("Unknown").to_owned(),
            message: out["message"].as_str().map(str::to_owned),
        })
    }
}

/// The session a `createAccount` / `createSession` / `refreshSession` answer makes.
fn custodial_session(pds_url: &str, out: &Value) -> Result<Session, OAuthError> {
    let field = |name: &str| {
        out[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| OAuthError::BadResponse {
                what: "session response",
                reason: format!("no {name}"),
            })
    };
    let access = field("accessJwt")?;
    let expires_at = jwt_exp(&access).unwrap_or_else(|| now_unix() + 60 * 60);
    Ok(Session {
        did: field("did")?,
        pds_url: pds_url.trim_end_matches('/').to_owned(),
        issuer: pds_url.trim_end_matches('/').to_owned(),
        token_endpoint: String::new(),
        revocation_endpoint: None,
        scope: CUSTODIAL_SCOPE.to_owned(),
        expires_at,
        access_token: access,
        refresh_token: Some(field("refreshJwt")?),
        // Not used by custodial calls (no DPoP); a session always has one.
        dpop_key: DpopKey::generate()?,
        as_nonce: None,
        pds_nonce: None,
        custodial: true,
    })
}

/// The `exp` claim of a JWT (not verified: the token came from the PDS over the
/// configured URL, and is only used to know when to refresh).
fn jwt_exp(jwt: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(payload.trim_end_matches('=').as_bytes())
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_expiry_of_a_jwt() {
        // {"alg":"HS256"}.{"exp":1800000000,"sub":"did:plc:x"}.sig
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE4MDAwMDAwMDAsInN1YiI6ImRpZDpwbGM6eCJ9.c2ln";
        assert_eq!(jwt_exp(jwt), Some(1_800_000_000));
        assert_eq!(jwt_exp("not a jwt"), None);
    }
}
