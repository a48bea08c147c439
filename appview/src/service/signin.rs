//! The sign-in pages: `GET/POST /login`, `GET /oauth/callback`, `GET /account` and
//! `POST /logout`, over the OAuth client ([`OAuthClient`]) and the encrypted session store
//! ([`SessionStore`]). Served only when the AppView is configured with
//! [`OAuthServiceConfig`].
//!
//! The browser holds two cookies: `atelier_session`, the store's opaque session id
//! (HttpOnly, `SameSite=Lax` because the authorization server's redirect back is a
//! top-level cross-site navigation, which `Strict` would send without it), and
//! `atelier_csrf`, a random token the forms repeat (a double submit).
//!
//! Cross-site request forgery: every `POST` here must carry no `Origin` header or the
//! configured public origin, and a `csrf` form field equal (compared in constant time) to
//! the `atelier_csrf` cookie; anything else is answered 403 with a page saying so. A `GET`
//! changes nothing the user would mind (`/login` may set the CSRF cookie, `/account` may
//! clear a cookie whose session is gone).
//!
//! Errors are shown in plain words on the page (an unknown handle, an unreachable server,
//! an expired sign-in); the details go to the log only. Every start, completion, failure
//! (by kind) and sign-out is counted in [`SignIn::metrics`] for `/metrics`
//! ([`crate::oauth::OAuthMetrics`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::oauth::dpop::random_token;
use crate::oauth::metrics::ErrorKind;
use crate::oauth::{
    CallbackParams, ClientConfig, OAuthClient, OAuthError, SessionKeys, SessionStore, StoreError,
};
use crate::relay::sync::identity::{IdentityError, Resolver, ResolverConfig};
use crate::relay::sync::ssrf::{Dns, DnsError, GuardedClient, SsrfError, SsrfPolicy};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "atelier_session";
/// The CSRF (double submit) cookie's name.
pub(super) const CSRF_COOKIE: &str = "atelier_csrf";
/// The form field that repeats the CSRF cookie.
const CSRF_FIELD: &str = "csrf";
/// The callback's path (the redirect URI is the public URL plus this).
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// How often expired and signed-out sessions are deleted.
const CLEANUP_EVERY: Duration = Duration::from_secs(10 * 60);
/// The largest form accepted (the forms are one or two short fields).
const MAX_FORM_BYTES: usize = 8 * 1024;
/// The pages load nothing: no script, no images. `form-action` allows any http(s) target
/// because browsers check the redirect that answers a form against it too, and the login
/// form's answer is a redirect to the account's authorization server.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'self' http: https:; frame-ancestors 'none'";

/// Sign-in configuration (`appview.oauth`).
#[derive(Debug, Clone)]
pub struct OAuthServiceConfig {
    /// The AppView's public base URL: the redirect URI is this plus [`CALLBACK_PATH`],
    /// forms must come from its origin, and the cookies are `Secure` when it is https.
    /// Until the confidential web client exists it must be a loopback URL,
    /// `http://127.0.0.1:PORT` or `http://[::1]:PORT` (the loopback client's rule).
    pub public_url: String,
    /// The scopes asked for, space-separated; must include `atproto`.
    pub scope: String,
    /// The session store's SQLite file (created if missing).
    pub session_db: PathBuf,
    /// The id of the current session key (written into every sealed row).
    pub key_id: String,
    /// The current session key: a file of 64 hex digits, not world-readable.
    pub key_file: PathBuf,
    /// Older keys still read after a rotation, as (id, key file).
    pub old_keys: Vec<(String, PathBuf)>,
    /// The PLC directory accounts are resolved through.
    pub plc_url: String,
    /// The sandbox profile: loopback servers and `.test` handles allowed.
    pub allow_loopback: bool,
    /// A fixed name table instead of the system resolver (sandbox and tests, where
    /// handles resolve through `_atproto` TXT records nobody publishes).
    pub dns: Option<Arc<dyn Dns>>,
    /// The deployment's bundled PDS: people without an ATProto account can sign up
    /// there (`/signup`) and sign in with its password (AC-only accounts, see
    /// [`crate::oauth::custodial`]). `None`: OAuth sign-in only.
    pub bundled_pds: Option<String>,
    /// The deployment's domain, under which signed-in users may claim a handle
    /// `{name}.{domain}` (answered at `/.well-known/atproto-did`); `None`: no handles
    /// given out here (users can still check and use their own domain).
    pub handle_domain: Option<String>,
}

impl OAuthServiceConfig {
    /// Sign-in at `public_url` asking for `scope`, sessions in `session_db` sealed with
    /// the key in `key_file` (named `key_id`), accounts resolved through plc.directory.
    pub fn new(
        public_url: impl Into<String>,
        scope: impl Into<String>,
        session_db: PathBuf,
        key_id: impl Into<String>,
        key_file: PathBuf,
    ) -> OAuthServiceConfig {
        OAuthServiceConfig {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            scope: scope.into(),
            session_db,
            key_id: key_id.into(),
            key_file,
            old_keys: Vec::new(),
            plc_url: ResolverConfig::default().plc_url,
            allow_loopback: false,
            dns: None,
            bundled_pds: None,
            handle_domain: None,
        }
    }
}

/// What the sign-in pages share (in [`super::Shared`]).
#[derive(Debug)]
pub(crate) struct SignIn {
    pub(crate) client: OAuthClient,
    pub(crate) sessions: SessionStore,
    /// Resolves the signed-in DID's handle for the account page (cached).
    pub(crate) resolver: Resolver,
    /// The public origin (`scheme://host:port`) forms must come from.
    pub(crate) origin: String,
    /// Whether cookies get `Secure` (the public URL is https).
    secure: bool,
    /// Sign-in counters for `/metrics`.
    pub(crate) metrics: crate::oauth::OAuthMetrics,
    /// The bundled PDS for AC-only accounts, if any.
    pub(crate) bundled_pds: Option<String>,
    /// The domain handles are given out under, if any (see [`super::link`]).
    pub(crate) handle_domain: Option<String>,
    /// One lock per session: calls that may refresh its tokens (publishing, reports) run
    /// one at a time, since a refresh token is single-use.
    locks: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SignIn {
    /// Builds the client and opens the session store.
    pub(crate) async fn open(config: &OAuthServiceConfig) -> Result<SignIn, String> {
        let public = url::Url::parse(&config.public_url)
            .map_err(|e| format!("oauth.public_url {:?}: {e}", config.public_url))?;
        // Only the loopback client exists so far, and the profile allows it only to
        // redirect to a loopback IP literal over http.
        let loopback = public.scheme() == "http"
            && matches!(public.host_str(), Some("127.0.0.1" | "[::1]"))
            && public.path() == "/";
        if !loopback {
            return Err(format!(
                "oauth.public_url {:?}: only the loopback client exists so far, so it must be \
                 http://127.0.0.1:PORT or http://[::1]:PORT",
                config.public_url
            ));
        }
        let origin = public.origin().ascii_serialization();
        let secure = public.scheme() == "https";
        let policy = if config.allow_loopback {
            SsrfPolicy::sandbox()
        } else {
            SsrfPolicy::default()
        };
        let guard = match &config.dns {
            Some(dns) => GuardedClient::with_dns(policy, Arc::clone(dns)),
            None => GuardedClient::new(policy),
        }
        .map_err(|e| format!("oauth HTTP client: {e}"))?;
        let resolver_config = ResolverConfig {
            plc_url: config.plc_url.clone(),
            sandbox: config.allow_loopback,
            ..ResolverConfig::default()
        };
        let resolver = Resolver::new(resolver_config, guard.clone());
        let redirect = format!("{}{CALLBACK_PATH}", config.public_url.trim_end_matches('/'));
        let client = OAuthClient::new(
            ClientConfig::loopback(redirect, config.scope.clone()),
            resolver.clone(),
            guard,
        )
        .map_err(|e| format!("oauth.scope: {e}"))?;
        let key = SessionKeys::read_key_file(&config.key_file).map_err(|e| e.to_string())?;
        let mut keys = SessionKeys::new(&config.key_id, &key).map_err(|e| e.to_string())?;
        for (id, file) in &config.old_keys {
            let old = SessionKeys::read_key_file(file).map_err(|e| e.to_string())?;
            keys = keys.with_old(id, &old).map_err(|e| e.to_string())?;
        }
        let sessions = SessionStore::open(&config.session_db, keys)
            .await
            .map_err(|e| format!("session store {}: {e}", config.session_db.display()))?;
        sqlx::raw_sql(super::link::SCHEMA)
            .execute(sessions.pool())
            .await
            .map_err(|e| format!("handle links {}: {e}", config.session_db.display()))?;
        Ok(SignIn {
            client,
            sessions,
            resolver,
            origin,
            secure,
            metrics: crate::oauth::OAuthMetrics::default(),
            locks: std::sync::Mutex::default(),
            bundled_pds: config
                .bundled_pds
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            handle_domain: config
                .handle_domain
                .as_ref()
                .map(|d| d.trim_matches('.').to_ascii_lowercase()),
        })
    }

    /// The lock of the session behind `cookie`: hold it from loading the session until
    /// it is saved again.
    pub(crate) fn session_lock(&self, cookie: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.locks.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Locks nobody holds (only the map has them) go when the map grows.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        Arc::clone(locks.entry(cookie.to_owned()).or_default())
    }

    /// A `Set-Cookie` header; `None` clears the cookie.
    pub(super) fn cookie(&self, name: &str, value: Option<&str>) -> HeaderValue {
        // The values are base64url tokens, always a valid header.
        HeaderValue::from_str(&set_cookie(name, value, self.secure))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Deletes expired and signed-out sessions every [`CLEANUP_EVERY`] (the first time at
/// once) until `stop` completes.
pub(crate) async fn clean_up(signin: Arc<SignIn>, stop: impl Future<Output = ()>) {
    let mut every = tokio::time::interval(CLEANUP_EVERY);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = every.tick() => match signin.sessions.cleanup().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "removed expired and signed-out sessions"),
                Err(e) => tracing::error!(error = %e, "session cleanup failed"),
            },
            () = &mut stop => break,
        }
    }
}

/// A `Set-Cookie` value for `name` (`None`: clear it), `Secure` when `secure`.
fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// Whether a form with this `Origin` header (if any) may change state: none, or exactly
/// the public origin `own`.
pub(crate) fn origin_allowed(origin: Option<&str>, own: &str) -> bool {
    origin.is_none_or(|o| o.eq_ignore_ascii_case(own))
}

/// The sign-in routes, merged into the AppView's router when sign-in is configured.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(signin: Arc<SignIn>) -> Router<S> {
    Router::new()
        .route("/login", get(login_form).post(login))
        .route(CALLBACK_PATH, get(callback))
        .route("/account", get(account))
        .route("/logout", axum::routing::post(logout))
        .route(
            "/signup",
            get(super::signup::signup_form).post(super::signup::signup),
        )
        .merge(super::link::routes(Arc::clone(&signin)))
        .with_state(signin)
}

#[derive(Template)]
#[template(path = "appview/login.html", config = "askama.toml")]
struct LoginPage<'a> {
    csrf: &'a str,
    handle: &'a str,
    error: Option<&'a str>,
    /// Whether AC-only accounts (password at the bundled PDS) are offered.
    bundled: bool,
}

#[derive(Template)]
#[template(path = "appview/account.html", config = "askama.toml")]
struct AccountPage<'a> {
    csrf: &'a str,
    did: &'a str,
    handle: &'a str,
    handle_verified: bool,
    scopes: Vec<&'a str>,
    pds_url: &'a str,
    published: Vec<Published>,
    /// A message from the last handle action.
    note: Option<String>,
    /// The domain handles are given out under, if any.
    handle_domain: Option<&'a str>,
    /// The name this account linked under it, if any.
    linked: Option<String>,
}

/// One record on the account page's list of what was published here.
struct Published {
    /// The record type's short name (`painting`, `mood`, ...).
    kind: String,
    uri: String,
}

impl Published {
    /// From a publish answer (`{uri, cid, status, ...}`) in the publishing log.
    fn from_answer(answer: &serde_json::Value) -> Option<Published> {
        let uri = answer["uri"].as_str()?;
        let collection = uri.strip_prefix("at://")?.split('/').nth(1)?;
        let kind = collection
            .rsplit('.')
            .next()
            .unwrap_or(collection)
            .to_owned();
        Some(Published {
            kind,
            uri: uri.to_owned(),
        })
    }
}

/// The request's CSRF token (its cookie), or a new one with `Some` of it to set as the
/// cookie; `None` (logged) when no token can be made.
pub(super) fn csrf_token(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    if let Some(token) = cookie_value(headers, CSRF_COOKIE) {
        return Some((token.to_owned(), None));
    }
    match random_token::<24>() {
        Ok(token) => Some((token.clone(), Some(token))),
        Err(e) => {
            tracing::error!(error = %e, "making a CSRF token");
            None
        }
    }
}

pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, v)| *n == name && !v.is_empty())
        .map(|(_, v)| v)
}

/// Whether `given` equals `expected`, in time independent of where they differ. An empty
/// expected token matches nothing.
fn tokens_match(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first value of `field` in a URL-encoded form.
pub(super) fn form_field(body: &[u8], field: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == field)
        .map(|(_, value)| value.into_owned())
}

/// An HTML page with the pages' security headers and any cookies.
pub(super) fn html(status: StatusCode, body: String, cookies: Vec<HeaderValue>) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    response
}

/// A 303 to `to`, with cookies.
pub(super) fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(LOCATION, location);
    }
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    response
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// The login page (with `error` in plain words, if any), reusing the browser's CSRF token
/// or setting a new one.
pub(super) fn login_page(
    signin: &SignIn,
    headers: &HeaderMap,
    status: StatusCode,
    handle: &str,
    error: Option<&str>,
) -> Response {
    let Some((csrf, set)) = csrf_token(headers) else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in is unavailable right now.",
        );
    };
    let page = LoginPage {
        csrf: &csrf,
        handle,
        error,
        bundled: signin.bundled_pds.is_some(),
    };
    match page.render() {
        Ok(body) => {
            let cookies = set
                .map(|t| signin.cookie(CSRF_COOKIE, Some(&t)))
                .into_iter()
                .collect();
            html(status, body, cookies)
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering the login page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be drawn.",
            )
        }
    }
}

/// The 403 for a form that failed the CSRF checks.
pub(super) fn refused(text: &'static str) -> Response {
    let mut response = plain(StatusCode::FORBIDDEN, text);
    response
        .headers_mut()
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

/// The CSRF checks for a `POST`: `Err` is what the 403 says.
pub(super) fn check_form(
    signin: &SignIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let origin = headers.get(ORIGIN).map(|o| o.to_str().unwrap_or("\u{0}"));
    if !origin_allowed(origin, &signin.origin) {
        tracing::warn!("refused a sign-in form from another origin");
        return Err(
            "This request came from another site, so it was not carried out. Open the \
             page again on this site and retry.",
        );
    }
    let expected = cookie_value(headers, CSRF_COOKIE).unwrap_or_default();
    let given = form_field(body, CSRF_FIELD).unwrap_or_default();
    if !tokens_match(expected, &given) {
        tracing::warn!("refused a sign-in form without a valid CSRF token");
        return Err(
            "The form did not carry this page's security token, so it was not carried \
             out. Go back, reload the page and try again.",
        );
    }
    Ok(())
}

/// What to tell the user when starting a sign-in for `handle` failed.
fn authorize_error(handle: &str, error: &OAuthError) -> (StatusCode, String) {
    match error {
        OAuthError::Identity(
            IdentityError::InvalidHandle { .. }
            | IdentityError::InvalidDid { .. }
            | IdentityError::ReservedHandle { .. }
            | IdentityError::UnsupportedDidMethod { .. },
        ) => (
            StatusCode::BAD_REQUEST,
            format!("“{handle}” is not a handle. A handle looks like alice.bsky.social."),
        ),
        OAuthError::Identity(e) if no_such_account(e) => (
            StatusCode::BAD_REQUEST,
            format!("We could not find an account with the handle “{handle}”. Check the spelling."),
        ),
        OAuthError::Identity(_) => (
            StatusCode::BAD_GATEWAY,
            format!("We could not look up “{handle}” just now. Try again in a moment."),
        ),
        OAuthError::NoPds { .. } => (
            StatusCode::BAD_REQUEST,
            format!("The account “{handle}” names no server to sign in with."),
        ),
        OAuthError::Ssrf(_) | OAuthError::Transport { .. } => (
            StatusCode::BAD_GATEWAY,
            "Your account's server could not be reached just now. Try again in a moment."
                .to_owned(),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "Your account's server did not accept the sign-in request. Try again later.".to_owned(),
        ),
    }
}

/// The metrics' kind of an error starting a sign-in: the same split as
/// [`authorize_error`] makes for the user (no such account, or could not ask).
fn start_error_kind(error: &OAuthError) -> ErrorKind {
    let not_found = match error {
        OAuthError::Identity(
            IdentityError::InvalidHandle { .. }
            | IdentityError::InvalidDid { .. }
            | IdentityError::ReservedHandle { .. }
            | IdentityError::UnsupportedDidMethod { .. },
        ) => true,
        OAuthError::Identity(e) => no_such_account(e),
        _ => false,
    };
    ErrorKind::of(error, not_found)
}

/// Whether resolving failed because the account does not exist: no DID for the handle,
/// no such DID, or a handle whose name does not exist in DNS at all (its `_atproto` TXT
/// record is missing and its well-known host has no address).
fn no_such_account(error: &IdentityError) -> bool {
    match error {
        IdentityError::Fetch { source, .. } => matches!(
            source,
            SsrfError::Dns {
                source: DnsError::NotFound { .. },
                ..
            } | SsrfError::NoAddresses { .. }
        ),
        e => e.is_not_found(),
    }
}

/// `GET /login`.
async fn login_form(
    State(signin): State<Arc<SignIn>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // `/login?handle=alice.example` fills the form in (a client's "sign in" link).
    let handle = query
        .as_deref()
        .and_then(|q| form_field(q.as_bytes(), "handle"))
        .unwrap_or_default();
    let handle: String = handle.trim().chars().take(253).collect();
    login_page(&signin, &headers, StatusCode::OK, &handle, None)
}

/// `POST /login`: start the sign-in and send the browser to the authorization server.
async fn login(State(signin): State<Arc<SignIn>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_FORM_BYTES {
        signin.metrics.error(ErrorKind::Other);
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    if let Err(text) = check_form(&signin, &headers, &body) {
        signin.metrics.error(ErrorKind::Csrf);
        return refused(text);
    }
    let typed = form_field(&body, "handle").unwrap_or_default();
    let handle = typed.trim().trim_start_matches('@');
    if let Some(password) = form_field(&body, "password").filter(|p| !p.is_empty()) {
        return super::signup::password_login(&signin, &headers, handle, &password).await;
    }
    if handle.is_empty() {
        signin.metrics.error(ErrorKind::UnknownHandle);
        return login_page(
            &signin,
            &headers,
            StatusCode::BAD_REQUEST,
            "",
            Some("Enter your handle, for example alice.bsky.social."),
        );
    }
    let (url, pending) = match signin.client.authorize(handle).await {
        Ok(started) => started,
        Err(e) => {
            tracing::info!(handle, error = %e, "sign-in could not start");
            signin.metrics.error(start_error_kind(&e));
            let (status, text) = authorize_error(handle, &e);
            return login_page(&signin, &headers, status, handle, Some(&text));
        }
    };
    if let Err(e) = signin.sessions.put_pending(&pending).await {
        tracing::error!(error = %e, "storing a pending sign-in");
        signin.metrics.error(ErrorKind::Storage);
        return login_page(
            &signin,
            &headers,
            StatusCode::INTERNAL_SERVER_ERROR,
            handle,
            Some("Sign-in is unavailable right now. Try again in a moment."),
        );
    }
    tracing::info!(did = %pending.did, "sign-in started");
    signin.metrics.started();
    see_other(&url, Vec::new())
}

/// `GET /oauth/callback`: finish the sign-in, set the session cookie.
async fn callback(
    State(signin): State<Arc<SignIn>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = CallbackParams::from_query(query.as_deref().unwrap_or(""));
    let failed = |status, text: &str| login_page(&signin, &headers, status, "", Some(text));
    let Some(state) = params.state.clone() else {
        signin.metrics.error(ErrorKind::State);
        return failed(
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete. Start again.",
        );
    };
    let pending = match signin.sessions.take_pending(&state).await {
        Ok(pending) => {
            signin.metrics.returned();
            pending
        }
        Err(StoreError::Expired) => {
            // It came back, too late: an error, not an abandonment.
            signin.metrics.returned();
            signin.metrics.error(ErrorKind::Expired);
            return failed(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was already used. Start again.",
            );
        }
        Err(StoreError::NotFound) => {
            signin.metrics.error(ErrorKind::State);
            return failed(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was already used. Start again.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "reading a pending sign-in");
            signin.metrics.error(ErrorKind::Storage);
            return failed(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in is unavailable right now. Try again in a moment.",
            );
        }
    };
    let session = match signin.client.callback(pending, &params).await {
        Ok(session) => session,
        Err(OAuthError::Denied { .. }) => {
            signin.metrics.error(ErrorKind::Denied);
            return failed(
                StatusCode::BAD_REQUEST,
                "The sign-in was not allowed, so you are not signed in.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "sign-in could not complete");
            signin.metrics.error(ErrorKind::of(&e, false));
            return failed(
                StatusCode::BAD_GATEWAY,
                "The sign-in could not be completed. Start again.",
            );
        }
    };
    start_session(&signin, &headers, &session).await
}

/// Stores a new `session` (OAuth or an AC-only account's) and sends the browser to
/// `/account` with its cookie.
pub(super) async fn start_session(
    signin: &SignIn,
    headers: &HeaderMap,
    session: &crate::oauth::Session,
) -> Response {
    match signin.sessions.create(session).await {
        Ok(cookie) => {
            tracing::info!(did = %session.did, custodial = session.is_custodial(), "signed in");
            signin.metrics.completed();
            see_other(
                "/account",
                vec![signin.cookie(SESSION_COOKIE, Some(&cookie))],
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "storing a session");
            signin.metrics.error(ErrorKind::Storage);
            login_page(
                signin,
                headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                Some("Sign-in is unavailable right now. Try again in a moment."),
            )
        }
    }
}

/// `GET /account`: who is signed in; without a session, to `/login`.
async fn account(
    State(signin): State<Arc<SignIn>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(cookie) = cookie_value(&headers, SESSION_COOKIE) else {
        return see_other("/login", Vec::new());
    };
    let session = match signin.sessions.load(cookie).await {
        Ok(session) => session,
        Err(StoreError::Database(e)) => {
            tracing::error!(error = %e, "loading a session");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Your account could not be read just now.",
            );
        }
        Err(e) => {
            // Gone, signed out, expired, or no longer readable: sign in again.
            tracing::debug!(error = %e, "a session cookie without a usable session");
            return see_other("/login", vec![signin.cookie(SESSION_COOKIE, None)]);
        }
    };
    let (handle, handle_verified) = match signin.resolver.resolve_did(&session.did).await {
        Ok(doc) => {
            let status = signin.resolver.verify_handle(&session.did, &doc).await;
            (status.as_str().to_owned(), status.is_verified())
        }
        Err(e) => {
            tracing::info!(did = %session.did, error = %e, "resolving a signed-in DID");
            ("handle.invalid".to_owned(), false)
        }
    };
    let Some((csrf, set)) = csrf_token(&headers) else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be drawn.",
        );
    };
    // What this account published through the AppView (none if publishing never ran).
    let published: Vec<Published> =
        crate::publish::log::recent(signin.sessions.pool(), &session.did, 20)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(Published::from_answer)
            .collect();
    let page = AccountPage {
        csrf: &csrf,
        did: &session.did,
        handle: &handle,
        handle_verified,
        scopes: session.scope.split(' ').filter(|s| !s.is_empty()).collect(),
        pds_url: &session.pds_url,
        published,
        note: query
            .as_deref()
            .and_then(|q| form_field(q.as_bytes(), "note"))
            .map(|n| n.chars().take(400).collect()),
        handle_domain: signin.handle_domain.as_deref(),
        linked: super::link::linked_name(signin.sessions.pool(), &session.did)
            .await
            .unwrap_or_default(),
    };
    match page.render() {
        Ok(body) => {
            let cookies = set
                .map(|t| signin.cookie(CSRF_COOKIE, Some(&t)))
                .into_iter()
                .collect();
            html(StatusCode::OK, body, cookies)
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering the account page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be drawn.",
            )
        }
    }
}

/// `POST /logout`: revoke the tokens at the authorization server, mark the session
/// signed out, clear the cookie.
async fn logout(State(signin): State<Arc<SignIn>>, headers: HeaderMap, body: Bytes) -> Response {
    if body.len() > MAX_FORM_BYTES {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    if let Err(text) = check_form(&signin, &headers, &body) {
        return refused(text);
    }
    let clear = vec![signin.cookie(SESSION_COOKIE, None)];
    let Some(cookie) = cookie_value(&headers, SESSION_COOKIE) else {
        return see_other("/", clear);
    };
    let signed_in = if let Ok(mut session) = signin.sessions.load(cookie).await {
        // Signed out here even if the server cannot be reached: the tokens then expire
        // on their own (the row, and so the refresh token, is gone after cleanup).
        if let Err(e) = signin.client.revoke(&mut session).await {
            tracing::warn!(did = %session.did, error = %e, "revoking tokens at sign-out");
        }
        tracing::info!(did = %session.did, "signed out");
        true
    } else {
        false
    };
    if let Err(e) = signin.sessions.revoke(cookie).await {
        tracing::error!(error = %e, "marking a session signed out");
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "You could not be signed out just now. Try again in a moment.",
        );
    }
    if signed_in {
        signin.metrics.signed_out();
    }
    see_other("/", clear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("abc", "ab", false),
            ("abc", "abcd", false),
            ("abc", "", false),
            ("", "", false),
        ];
        for (expected, given, want) in cases {
            assert_eq!(
                tokens_match(expected, given),
                want,
                "{expected:?} {given:?}"
            );
        }
    }

    #[test]
    fn origins() {
        let own = "http://127.0.0.1:2584";
        let cases = [
            (None, true),
            (Some("http://127.0.0.1:2584"), true),
            (Some("HTTP://127.0.0.1:2584"), true),
            (Some("http://127.0.0.1:2585"), false),
            (Some("https://127.0.0.1:2584"), false),
            (Some("http://evil.example"), false),
            (Some("null"), false),
            (Some("\u{0}"), false),
        ];
        for (origin, want) in cases {
            assert_eq!(origin_allowed(origin, own), want, "{origin:?}");
        }
    }

    #[test]
    fn cookies_set_and_cleared() {
        let cases = [
            (
                Some("v"),
                false,
                "atelier_session=v; Path=/; HttpOnly; SameSite=Lax",
            ),
            (
                Some("v"),
                true,
                "atelier_session=v; Path=/; HttpOnly; SameSite=Lax; Secure",
            ),
            (
                None,
                false,
                "atelier_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
            ),
        ];
        for (value, secure, want) in cases {
            assert_eq!(set_cookie(SESSION_COOKIE, value, secure), want);
        }
    }

    #[test]
    fn reads_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; atelier_csrf=tok"));
        headers.append(COOKIE, HeaderValue::from_static("atelier_session=s; b="));
        assert_eq!(cookie_value(&headers, CSRF_COOKIE), Some("tok"));
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("s"));
        assert_eq!(cookie_value(&headers, "b"), None);
        assert_eq!(cookie_value(&headers, "c"), None);
    }
}
