//! The OAuth client: authorization (PAR), callback, DPoP-bound XRPC, refresh, revocation.
//!
//! The flow, as the ATProto OAuth profile has it:
//! 1. [`OAuthClient::authorize`] discovers the account's authorization server
//!    ([`metadata::discover`]), makes a fresh DPoP key, PKCE pair and `state`, pushes the
//!    request to the PAR endpoint (retrying once with the server's nonce on
//!    `use_dpop_nonce`), and returns the browser URL plus a [`PendingAuthorization`] that
//!    the caller keeps server-side (e.g. in [`SessionStore`](super::SessionStore)) under
//!    the `state`.
//! 2. [`OAuthClient::callback`] checks `state` and `iss`, exchanges the code at the token
//!    endpoint (DPoP, nonce retry), requires `token_type` DPoP, the `atproto` scope and
//!    `sub` equal to the DID resolved in step 1, re-resolves `sub` to check that its PDS
//!    and that PDS's authorization server are still the ones the flow used (the token's
//!    audience), and returns a [`Session`].
//! 3. [`OAuthClient::xrpc`] calls the PDS with `Authorization: DPoP <token>` and a proof
//!    carrying `ath`; a 401 with `use_dpop_nonce` is retried once with the new nonce; an
//!    expired access token is refreshed first (and once more on a 401 `invalid_token`),
//!    storing the rotated refresh token in the session. A 403 `ScopeMissingError` becomes
//!    [`OAuthError::ScopeMissing`] naming the scope.
//! 4. [`OAuthClient::revoke`] revokes the access and refresh tokens (sign-out).
//!
//! Sessions are values: every call that may refresh takes `&mut Session`, so one session
//! cannot be refreshed twice at once (refresh tokens are single-use); callers that share
//! a session across tasks hold it behind one lock and write it back to the store after.
//!
//! Client kinds: [`ClientKind::Loopback`] (sandbox, public client, no client
//! authentication). A confidential web client (`private_key_jwt`) is a second variant
//! whose [`ClientConfig::client_auth`] adds a signed `client_assertion` to the same form
//! parameters; nothing else in the flow changes.

use std::fmt;

use atelier_relay::sync::identity::Resolver;
use atelier_relay::sync::ssrf::GuardedClient;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::OAuthError;
use super::dpop::{DpopKey, Pkce, now_unix, random_token};
use super::http::{Body, OAuthHttp, Progress, Response};
use super::metadata::{self, AuthServerMetadata, Discovered, trim_slash};

/// A token is refreshed this many seconds before it expires.
const REFRESH_MARGIN_SECS: i64 = 30;

/// Which kind of OAuth client this deployment is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKind {
    /// The loopback (development) client: `client_id` is `http://localhost?...` carrying
    /// the redirect URI and scope, no metadata document, no client authentication.
    Loopback {
        /// Where the browser comes back: `http://127.0.0.1:PORT/path`.
        redirect_uri: String,
    },
}

/// The client's identity and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The client kind.
    pub kind: ClientKind,
    /// The scopes asked for, space-separated; must include `atproto`. Granular, e.g.
    /// `atproto repo:computer.aesthetic.painting blob:*/*`.
    pub scope: String,
}

impl ClientConfig {
    /// A loopback client redirecting to `redirect_uri` (`http://127.0.0.1:PORT/...`).
    pub fn loopback(redirect_uri: impl Into<String>, scope: impl Into<String>) -> ClientConfig {
        ClientConfig {
            kind: ClientKind::Loopback {
                redirect_uri: redirect_uri.into(),
            },
            scope: scope.into(),
        }
    }

    /// The `client_id`.
    pub fn client_id(&self) -> String {
        match &self.kind {
            ClientKind::Loopback { redirect_uri } => {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("scope", &self.scope)
                    .finish();
                format!("http://localhost?{query}")
            }
        }
    }

    /// The redirect URI.
    pub fn redirect_uri(&self) -> &str {
        match &self.kind {
            ClientKind::Loopback { redirect_uri } => redirect_uri,
        }
    }

    /// The form parameters that identify (and, for confidential clients, authenticate)
    /// the client at the PAR, token and revocation endpoints.
    fn client_auth(&self) -> Vec<(&'static str, String)> {
        match &self.kind {
            ClientKind::Loopback { .. } => vec![("client_id", self.client_id())],
        }
    }
}

/// An authorization in progress: everything the callback needs, kept server-side between
/// [`OAuthClient::authorize`] and [`OAuthClient::callback`]. Debug hides the secrets.
pub struct PendingAuthorization {
    /// The `state` sent (and the key to find this again at the callback).
    pub state: String,
    /// The DID resolved from what the user typed.
    pub did: String,
    /// The account's PDS.
    pub pds_url: String,
    /// The authorization server.
    pub auth_server: AuthServerMetadata,
    /// The scopes asked for.
    pub scope: String,
    /// When the authorization began (Unix seconds).
    pub created_at: i64,
    pub(crate) pkce_verifier: String,
    pub(crate) dpop_key: DpopKey,
    pub(crate) as_nonce: Option<String>,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("did", &self.did)
            .field("pds_url", &self.pds_url)
            .field("issuer", &self.auth_server.issuer)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// What the authorization server sent to the redirect URI.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackParams {
    /// The authorization code (on success).
    pub code: Option<String>,
    /// The `state` echoed.
    pub state: Option<String>,
    /// The issuer (RFC 9207), required by the profile.
    pub iss: Option<String>,
    /// The error code (on failure).
    pub error: Option<String>,
    /// The error's description.
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// Parses a redirect URL's query string (or a whole URL).
    pub fn from_query(query: &str) -> CallbackParams {
        let query = query.split_once('?').map_or(query, |(_, q)| q);
        let mut params = CallbackParams::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        params
    }
}

/// A signed-in account: DPoP-bound tokens for its PDS. Debug shows no secret.
pub struct Session {
    /// The account's DID (the token's `sub`).
    pub did: String,
    /// The PDS the tokens are for.
    pub pds_url: String,
    /// The authorization server's issuer.
    pub issuer: String,
    /// The token endpoint (for refresh).
    pub token_endpoint: String,
    /// The revocation endpoint, if the server has one.
    pub revocation_endpoint: Option<String>,
    /// The scopes granted (space-separated).
    pub scope: String,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) dpop_key: DpopKey,
    /// The latest DPoP nonce from the authorization server.
    pub(crate) as_nonce: Option<String>,
    /// The latest DPoP nonce from the PDS.
    pub(crate) pds_nonce: Option<String>,
    /// An AC-only account's session at the bundled PDS (password sign-in, bearer
    /// tokens, no DPoP; see [`super::custodial`]) rather than an OAuth session.
    pub(crate) custodial: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("did", &self.did)
            .field("pds_url", &self.pds_url)
            .field("issuer", &self.issuer)
            .field("scope", &self.scope)
            .field("expires_at", &self.expires_at)
            .field("custodial", &self.custodial)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the access token is expired (or about to be).
    pub fn is_expired(&self, now: i64) -> bool {
        now + REFRESH_MARGIN_SECS >= self.expires_at
    }

    /// Whether this is an AC-only account's session at the bundled PDS (signed in with a
    /// password there) rather than an OAuth session.
    pub fn is_custodial(&self) -> bool {
        self.custodial
    }

    /// Whether the granted scopes include `scope` exactly.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    /// The access token, for a caller that must present it to the PDS itself (it is
    /// DPoP-bound: useless without a proof from this session's key).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// The DPoP key the tokens are bound to.
    pub fn dpop_key(&self) -> &DpopKey {
        &self.dpop_key
    }

    /// The latest DPoP nonces: (authorization server, PDS). Nonces are not secret.
    pub fn dpop_nonces(&self) -> (Option<&str>, Option<&str>) {
        (self.as_nonce.as_deref(), self.pds_nonce.as_deref())
    }

    /// Replaces the remembered DPoP nonces (e.g. with ones known to be stale, to exercise
    /// rotation). A wrong nonce costs one retry: the server answers `use_dpop_nonce` with
    /// a fresh one.
    pub fn set_dpop_nonces(&mut self, authorization_server: Option<String>, pds: Option<String>) {
        self.as_nonce = authorization_server;
        self.pds_nonce = pds;
    }
}

/// One XRPC call to the session's PDS.
#[derive(Clone)]
pub struct XrpcRequest {
    /// The method's NSID.
    pub nsid: String,
    /// Query parameters.
    pub params: Vec<(String, String)>,
    /// The input; [`XrpcInput::None`] makes a query (GET).
    pub input: XrpcInput,
    /// Extra request headers (e.g. `atproto-proxy`).
    pub headers: Vec<(String, String)>,
}

/// What an XRPC call sends.
#[derive(Clone)]
pub enum XrpcInput {
    /// Nothing: a query (GET).
    None,
    /// A procedure's JSON input.
    Json(serde_json::Value),
    /// A procedure's raw input (a blob upload): its type, bytes, and an optional
    /// callback told (bytes sent, total) as it goes.
    Bytes {
        /// The `Content-Type`.
        mime: String,
        /// The bytes.
        data: bytes::Bytes,
        /// Progress callback.
        progress: Option<Progress>,
    },
}

impl fmt::Debug for XrpcRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XrpcRequest")
            .field("nsid", &self.nsid)
            .field("params", &self.params)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for XrpcInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XrpcInput::None => f.write_str("None"),
            XrpcInput::Json(_) => f.write_str("Json(..)"),
            XrpcInput::Bytes { mime, data, .. } => write!(f, "Bytes({} of {mime})", data.len()),
        }
    }
}

impl XrpcRequest {
    /// A query (GET) with `params`.
    pub fn query(nsid: &str, params: &[(&str, &str)]) -> XrpcRequest {
        XrpcRequest {
            nsid: nsid.to_owned(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            input: XrpcInput::None,
            headers: Vec::new(),
        }
    }

    /// A procedure (POST) with a JSON `input`.
    pub fn procedure(nsid: &str, input: serde_json::Value) -> XrpcRequest {
        XrpcRequest {
            nsid: nsid.to_owned(),
            params: Vec::new(),
            input: XrpcInput::Json(input),
            headers: Vec::new(),
        }
    }

    /// A procedure (POST) whose input is `data` of type `mime` (e.g.
    /// `com.atproto.repo.uploadBlob`).
    pub fn upload(nsid: &str, mime: &str, data: bytes::Bytes) -> XrpcRequest {
        XrpcRequest {
            nsid: nsid.to_owned(),
            params: Vec::new(),
            input: XrpcInput::Bytes {
                mime: mime.to_owned(),
                data,
                progress: None,
            },
            headers: Vec::new(),
        }
    }

    /// The same request reporting upload progress to `progress` (raw inputs only).
    #[must_use]
    pub fn with_progress(mut self, progress: Progress) -> XrpcRequest {
        if let XrpcInput::Bytes { progress: p, .. } = &mut self.input {
            *p = Some(progress);
        }
        self
    }

    /// The same request with the header `name: value` (e.g. `atproto-proxy`).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> XrpcRequest {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<i64>,
    refresh_token: Option<String>,
    scope: Option<String>,
    sub: Option<String>,
}

/// The OAuth client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    config: ClientConfig,
    resolver: Resolver,
    http: OAuthHttp,
}

impl OAuthClient {
    /// A client resolving identities with `resolver` and fetching through `guard` (the
    /// sandbox guard allows loopback; production's does not).
    pub fn new(
        config: ClientConfig,
        resolver: Resolver,
        guard: GuardedClient,
    ) -> Result<OAuthClient, OAuthError> {
        if !config.scope.split(' ').any(|s| s == "atproto") {
            return Err(OAuthError::BadResponse {
                what: "client configuration",
                reason: "the scope must include \"atproto\"".into(),
            });
        }
        Ok(OAuthClient {
            config,
            resolver,
            http: OAuthHttp::new(guard)?,
        })
    }

    /// The guarded HTTP client.
    pub(crate) fn http(&self) -> &OAuthHttp {
        &self.http
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Discovery alone: where `identifier` (handle or DID) signs in. A sign-in page can
    /// use it to report an unknown handle or an unusable server before redirecting.
    pub async fn resolve(&self, identifier: &str) -> Result<Discovered, OAuthError> {
        metadata::discover(&self.resolver, &self.http, identifier).await
    }

    /// Starts a sign-in for `identifier` (handle or DID): returns the URL to send the
    /// browser to, and the pending state to keep until the callback.
    pub async fn authorize(
        &self,
        identifier: &str,
    ) -> Result<(String, PendingAuthorization), OAuthError> {
        let found = metadata::discover(&self.resolver, &self.http, identifier).await?;
        let pkce = Pkce::generate()?;
        let state = random_token::<24>()?;
        let dpop_key = DpopKey::generate()?;
        let mut form = self.config.client_auth();
        form.extend([
            ("response_type", "code".to_owned()),
            ("redirect_uri", self.config.redirect_uri().to_owned()),
            ("scope", self.config.scope.clone()),
            ("state", state.clone()),
            ("code_challenge", pkce.challenge.clone()),
            ("code_challenge_method", "S256".to_owned()),
        ]);
        // The sign-in page pre-fills the account (the handle as typed, or the DID).
        form.push((
            "login_hint",
            identifier.trim().trim_start_matches('@').to_owned(),
        ));
        let mut as_nonce = None;
        let response = self
            .as_post(
                "par",
                found.auth_server.par_endpoint(),
                &dpop_key,
                &mut as_nonce,
                form,
            )
            .await?;
        let body = response.json();
        let request_uri = body["request_uri"]
            .as_str()
            .ok_or_else(|| OAuthError::BadResponse {
                what: "PAR response",
                reason: "no request_uri".into(),
            })?;
        let mut url = Url::parse(&found.auth_server.authorization_endpoint).map_err(|e| {
            OAuthError::BadUrl {
                url: found.auth_server.authorization_endpoint.clone(),
                reason: e.to_string(),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id())
            .append_pair("request_uri", request_uri);
        let pending = PendingAuthorization {
            state,
            did: found.did,
            pds_url: found.pds_url,
            auth_server: found.auth_server,
            scope: self.config.scope.clone(),
            created_at: now_unix(),
            pkce_verifier: pkce.verifier,
            dpop_key,
            as_nonce,
        };
        Ok((url.to_string(), pending))
    }

    /// Completes a sign-in: checks the callback against `pending` and exchanges the code.
    pub async fn callback(
        &self,
        mut pending: PendingAuthorization,
        params: &CallbackParams,
    ) -> Result<Session, OAuthError> {
        if params.state.as_deref() != Some(pending.state.as_str()) {
            return Err(OAuthError::StateMismatch);
        }
        let issuer = &pending.auth_server.issuer;
        if params.iss.as_deref().map(trim_slash) != Some(trim_slash(issuer)) {
            return Err(OAuthError::IssuerMismatch {
                expected: issuer.clone(),
                got: params.iss.clone(),
            });
        }
        if let Some(error) = &params.error {
            return Err(OAuthError::Denied {
                error: error.clone(),
                description: params.error_description.clone(),
            });
        }
        let code = params.code.clone().ok_or_else(|| OAuthError::BadResponse {
            what: "callback",
            reason: "no code".into(),
        })?;
        let mut form = self.config.client_auth();
        form.extend([
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri().to_owned()),
            ("code_verifier", pending.pkce_verifier.clone()),
        ]);
        let token_endpoint = pending.auth_server.token_endpoint.clone();
        let response = self
            .as_post(
                "token",
                &token_endpoint,
                &pending.dpop_key,
                &mut pending.as_nonce,
                form,
            )
            .await?;
        let token = parse_token(&response)?;
        let sub = token.sub.clone().unwrap_or_default();
        if sub != pending.did {
            return Err(OAuthError::SubjectMismatch {
                expected: pending.did,
                got: sub,
            });
        }
        // The token's audience: the DID's PDS must still be the resource server the
        // flow began with, and that PDS must still name this authorization server (the
        // check the profile asks of clients that could not pin the account up front).
        let current = metadata::discover(&self.resolver, &self.http, &sub).await?;
        if current.pds_url != pending.pds_url
            || trim_slash(&current.auth_server.issuer) != trim_slash(&pending.auth_server.issuer)
        {
            return Err(OAuthError::AudienceMismatch {
                did: sub,
                pds_url: current.pds_url,
                issuer: current.auth_server.issuer,
            });
        }
        let scope = token.scope.clone().unwrap_or_default();
        Ok(Session {
            did: pending.did,
            pds_url: pending.pds_url,
            issuer: pending.auth_server.issuer.clone(),
            token_endpoint,
            revocation_endpoint: pending.auth_server.revocation_endpoint.clone(),
            scope,
            expires_at: now_unix() + token.expires_in.unwrap_or(300),
            access_token: token.access_token,
            refresh_token: token.refresh_token,
            dpop_key: pending.dpop_key,
            as_nonce: pending.as_nonce,
            pds_nonce: None,
            custodial: false,
        })
    }

    /// Refreshes the session's tokens (the refresh token rotates: the new one replaces
    /// the old, which the server will not accept again).
    pub async fn refresh(&self, session: &mut Session) -> Result<(), OAuthError> {
        if session.custodial {
            return self.refresh_custodial(session).await;
        }
        let Some(refresh_token) = session.refresh_token.clone() else {
            return Err(OAuthError::SessionEnded {
                reason: "no refresh token".into(),
            });
        };
        let mut form = self.config.client_auth();
        form.extend([
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token),
        ]);
        let endpoint = session.token_endpoint.clone();
        let result = self
            .as_post(
                "refresh",
                &endpoint,
                &session.dpop_key,
                &mut session.as_nonce,
                form,
            )
            .await;
        let response = match result {
            Err(OAuthError::Server { error, .. }) if error == "invalid_grant" => {
                return Err(OAuthError::SessionEnded {
                    reason: "the refresh token was refused".into(),
                });
            }
            other => other?,
        };
        let token = parse_token(&response)?;
        if token.sub.as_deref().is_some_and(|sub| sub != session.did) {
            return Err(OAuthError::SubjectMismatch {
                expected: session.did.clone(),
                got: token.sub.unwrap_or_default(),
            });
        }
        session.access_token = token.access_token;
        if token.refresh_token.is_some() {
            session.refresh_token = token.refresh_token;
        }
        if let Some(scope) = token.scope {
            session.scope = scope;
        }
        session.expires_at = now_unix() + token.expires_in.unwrap_or(300);
        tracing::debug!(did = %session.did, "OAuth session refreshed");
        Ok(())
    }

    /// Signs out: revokes the access and refresh tokens at the authorization server.
    pub async fn revoke(&self, session: &mut Session) -> Result<(), OAuthError> {
        if session.custodial {
            return self.revoke_custodial(session).await;
        }
        let Some(endpoint) = session.revocation_endpoint.clone() else {
            return Err(OAuthError::BadMetadata {
                issuer: session.issuer.clone(),
                reason: "no revocation_endpoint".into(),
            });
        };
        let mut tokens = vec![session.access_token.clone()];
        tokens.extend(session.refresh_token.clone());
        for token in tokens {
            let mut form = self.config.client_auth();
            form.push(("token", token));
            self.as_post(
                "revoke",
                &endpoint,
                &session.dpop_key,
                &mut session.as_nonce,
                form,
            )
            .await?;
        }
        session.refresh_token = None;
        session.expires_at = 0;
        Ok(())
    }

    /// Calls `request` on the session's PDS with DPoP-bound authorization, refreshing
    /// the tokens first when they are expired. Returns the JSON output (`Null` if none).
    pub async fn xrpc(
        &self,
        session: &mut Session,
        request: &XrpcRequest,
    ) -> Result<serde_json::Value, OAuthError> {
        if session.is_expired(now_unix()) {
            self.refresh(session).await?;
        }
        if session.custodial {
            let mut response = self.xrpc_custodial_once(session, request).await?;
            if response.status == 400 && response.json()["error"] == "ExpiredToken" {
                // Expired early (a clock difference): one refresh, one retry.
                self.refresh(session).await?;
                response = self.xrpc_custodial_once(session, request).await?;
            }
            return xrpc_result(&request.nsid, &response);
        }
        let mut response = self.xrpc_once(session, request).await?;
        if response.status == 401 && www_authenticate_error(&response) == Some("invalid_token") {
            // The token was revoked or expired early: one refresh, one retry.
            self.refresh(session).await?;
            response = self.xrpc_once(session, request).await?;
        }
        xrpc_result(&request.nsid, &response)
    }

    /// One XRPC call, retried once when the PDS asks for a (new) DPoP nonce.
    async fn xrpc_once(
        &self,
        session: &mut Session,
        request: &XrpcRequest,
    ) -> Result<Response, OAuthError> {
        let url = xrpc_url(&session.pds_url, request)?;
        let method = method_and_body(&request.input).0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let proof = session.dpop_key.proof(
                method.as_str(),
                url.as_str(),
                session.pds_nonce.as_deref(),
                Some(&session.access_token),
            )?;
            let mut headers = HeaderMap::new();
            headers.insert(
                AUTHORIZATION,
                header_value(&format!("DPoP {}", session.access_token))?,
            );
            headers.insert("DPoP", header_value(&proof)?);
            extra_headers(&mut headers, request)?;
            let body = method_and_body(&request.input).1;
            let response = self
                .http
                .send(method.clone(), url.as_str(), headers, body)
                .await?;
            if let Some(nonce) = response.header("DPoP-Nonce") {
                session.pds_nonce = Some(nonce.to_owned());
            }
            if attempt == 1
                && response.status == 401
                && www_authenticate_error(&response) == Some("use_dpop_nonce")
            {
                continue;
            }
            return Ok(response);
        }
    }

    /// A DPoP-proven form POST to an authorization-server endpoint, retried once with
    /// the server's nonce on `use_dpop_nonce`. Non-2xx answers become
    /// [`OAuthError::Server`].
    async fn as_post(
        &self,
        endpoint_name: &'static str,
        url: &str,
        key: &DpopKey,
        nonce: &mut Option<String>,
        form: Vec<(&'static str, String)>,
    ) -> Result<Response, OAuthError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let proof = key.proof("POST", url, nonce.as_deref(), None)?;
            let mut headers = HeaderMap::new();
            headers.insert("DPoP", header_value(&proof)?);
            let response = self
                .http
                .send(Method::POST, url, headers, Body::Form(form.clone()))
                .await?;
            if let Some(fresh) = response.header("DPoP-Nonce") {
                *nonce = Some(fresh.to_owned());
            }
            if (200..300).contains(&response.status) {
                return Ok(response);
            }
            let body = response.json();
            let error = body["error"].as_str().unwrap_or("unknown_error").to_owned();
            if attempt == 1 && error == "use_dpop_nonce" {
                continue;
            }
            return Err(OAuthError::Server {
                endpoint: endpoint_name,
                status: response.status,
                error,
                description: body["error_description"].as_str().map(str::to_owned),
            });
        }
    }
}

pub(crate) fn header_value(value: &str) -> Result<HeaderValue, OAuthError> {
    HeaderValue::from_str(value).map_err(|_| OAuthError::Crypto("a header value is not ASCII"))
}

/// The URL of `request` on the PDS at `pds_url`, with its query parameters.
pub(crate) fn xrpc_url(pds_url: &str, request: &XrpcRequest) -> Result<Url, OAuthError> {
    let mut url = Url::parse(&format!("{pds_url}/xrpc/{}", request.nsid)).map_err(|e| {
        OAuthError::BadUrl {
            url: pds_url.to_owned(),
            reason: e.to_string(),
        }
    })?;
    if !request.params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &request.params {
            pairs.append_pair(k, v);
        }
    }
    Ok(url)
}

/// Adds `request`'s extra headers to `headers`.
pub(crate) fn extra_headers(
    headers: &mut HeaderMap,
    request: &XrpcRequest,
) -> Result<(), OAuthError> {
    for (name, value) in &request.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| OAuthError::Crypto("a header name is not a token"))?;
        headers.insert(name, header_value(value)?);
    }
    Ok(())
}

/// The method an input makes (GET without one) and the body that carries it.
pub(crate) fn method_and_body(input: &XrpcInput) -> (Method, Body) {
    match input {
        XrpcInput::None => (Method::GET, Body::None),
        XrpcInput::Json(value) => (Method::POST, Body::Json(value.clone())),
        XrpcInput::Bytes {
            mime,
            data,
            progress,
        } => (
            Method::POST,
            Body::Bytes {
                mime: mime.clone(),
                data: data.clone(),
                progress: progress.clone(),
            },
        ),
    }
}

/// The token response, checked: DPoP-bound and with the `atproto` scope.
fn parse_token(response: &Response) -> Result<TokenResponse, OAuthError> {
    let token: TokenResponse =
        serde_json::from_slice(&response.body).map_err(|e| OAuthError::BadResponse {
            what: "token response",
            reason: e.to_string(),
        })?;
    if !token.token_type.eq_ignore_ascii_case("DPoP") {
        return Err(OAuthError::BadResponse {
            what: "token response",
            reason: format!("token_type is {:?}, not DPoP", token.token_type),
        });
    }
    if let Some(scope) = &token.scope
        && !scope.split(' ').any(|s| s == "atproto")
    {
        return Err(OAuthError::BadResponse {
            what: "token response",
            reason: "the atproto scope was not granted".into(),
        });
    }
    Ok(token)
}

/// The `error` parameter of a `WWW-Authenticate: DPoP ...` header.
fn www_authenticate_error(response: &Response) -> Option<&str> {
    let header = response.header("WWW-Authenticate")?;
    let start = header.find("error=\"")? + "error=\"".len();
    let rest = header.get(start..)?;
    rest.split('"').next()
}

/// An XRPC response as JSON, or the typed error.
fn xrpc_result(nsid: &str, response: &Response) -> Result<serde_json::Value, OAuthError> {
    let body = response.json();
    if (200..300).contains(&response.status) {
        return Ok(body);
    }
    let error = body["error"].as_str().unwrap_or("Unknown").to_owned();
    let message = body["message"].as_str().map(str::to_owned);
    if response.status == 403 && error == "ScopeMissingError" {
        // "Missing required scope \"repo:...\"": the quoted part is the scope to ask for.
        let scope = message
            .as_deref()
            .and_then(|m| m.split('"').nth(1))
            .unwrap_or_default()
            .to_owned();
        return Err(OAuthError::ScopeMissing { scope });
    }
    if response.status == 401 {
        return Err(OAuthError::SessionEnded {
            reason: message.unwrap_or(error),
        });
    }
    Err(OAuthError::Xrpc {
        nsid: nsid.to_owned(),
        status: response.status,
        error,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_client_id_carries_redirect_and_scope() {
        let c = ClientConfig::loopback(
            "http://127.0.0.1:8080/cb",
            "atproto repo:computer.aesthetic.mood",
        );
        assert_eq!(
            c.client_id(),
            "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb\
             &scope=atproto+repo%3Acomputer.aesthetic.mood"
        );
    }

    #[test]
    fn callback_params_parse() {
        let p = CallbackParams::from_query("http://127.0.0.1/cb?code=c&state=s&iss=http%3A%2F%2Fx");
        assert_eq!(p.code.as_deref(), Some("c"));
        assert_eq!(p.state.as_deref(), Some("s"));
        assert_eq!(p.iss.as_deref(), Some("http://x"));
    }

    #[test]
    fn scope_missing_names_the_scope() {
        let response = Response {
            status: 403,
            headers: HeaderMap::new(),
            body: br#"{"error":"ScopeMissingError","message":"Missing required scope \"repo:a.b.c?action=create\""}"#.to_vec(),
        };
        match xrpc_result("com.atproto.repo.createRecord", &response) {
            Err(OAuthError::ScopeMissing { scope }) => {
                assert_eq!(scope, "repo:a.b.c?action=create")
            }
            other => panic!("{other:?}"),
        }
    }
}
