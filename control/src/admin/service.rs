//! The console as a service: its configuration, its shared state, its router and
//! `run(config, listener, shutdown)`.
//!
//! Every route, the console's own and those added with [`router_with`], sits behind the
//! same layers, outermost first:
//! 1. security headers on every answer ([`security_headers`]: no caching, no framing, a
//!    content security policy that allows no script);
//! 2. [`auth::load_session`]: the session, if any, into the request's extensions;
//! 3. [`csrf::guard`]: origin and token checks on every state-changing request.
//!
//! Handlers then authorise with the [`super::Authed`] extractor and
//! [`super::Authed::require`]. A housekeeping task deletes expired sessions and forgotten
//! login failures while the console runs.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use crate::config::{BootstrapUser, Loaded, Profile};

use super::lockout::LoginLimits;
use super::pages::{self, NavLink};
use super::sessions::SessionPolicy;
use super::store::{UserStore, database_path};
use super::{AdminError, auth, csrf};

/// How often expired sessions and forgotten failures are deleted.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10 * 60);

/// Everything the console needs to run.
#[derive(Debug, Clone)]
pub struct AdminServiceConfig {
    /// The installation's data directory: the console keeps `admin/admin.sqlite` in it.
    pub data_dir: PathBuf,
    /// Accounts to create at start when they do not exist (`services.admin.bootstrap`).
    pub bootstrap: Vec<BootstrapUser>,
    /// The file holding the bootstrap users' first password (read only when a bootstrap
    /// user is missing): `DATA_DIR/secrets/admin_bootstrap_password`.
    pub bootstrap_password_file: PathBuf,
    /// Mark cookies `Secure` (sent over HTTPS only). Off only in the sandbox profile, which
    /// serves plain HTTP on loopback.
    pub secure_cookies: bool,
    /// The console's public origin (`https://admin.example.com`): the `Origin` header of
    /// state-changing requests must be exactly it. `None`: its host and port must be the
    /// request's `Host` (see [`super::csrf::origin_allowed`]).
    pub origin: Option<String>,
    /// Take the client address for sign-in limits from the last `X-Forwarded-For` entry:
    /// only behind a reverse proxy that sets it (else every client could pick its own).
    pub trust_forwarded_for: bool,
    /// How long sessions last.
    pub sessions: SessionPolicy,
    /// Sign-in limits and lockout back-off.
    pub limits: LoginLimits,
}

impl AdminServiceConfig {
    /// A console keeping its state under `data_dir`, with no bootstrap users, secure
    /// cookies and the default session and sign-in limits.
    pub fn new(data_dir: PathBuf) -> AdminServiceConfig {
        let bootstrap_password_file =
            crate::config::secrets::secrets_dir(&data_dir).join("admin_bootstrap_password");
        AdminServiceConfig {
            data_dir,
            bootstrap: Vec::new(),
            bootstrap_password_file,
            secure_cookies: true,
            origin: None,
            trust_forwarded_for: false,
            sessions: SessionPolicy::default(),
            limits: LoginLimits::default(),
        }
    }

    /// The console as `atelier.yaml` describes it: its data directory, `services.admin`'s
    /// bootstrap users, cookies `Secure` outside the sandbox profile, and
    /// `X-Forwarded-For` trusted when `tls.behind_proxy` says a reverse proxy is in front.
    pub fn from_loaded(loaded: &Loaded) -> AdminServiceConfig {
        let config = &loaded.config;
        let production = config.profile == Profile::Production;
        let mut admin = AdminServiceConfig::new(loaded.data_dir());
        admin.bootstrap.clone_from(&config.services.admin.bootstrap);
        admin.secure_cookies = production;
        admin.trust_forwarded_for = production && config.tls.behind_proxy;
        admin
    }
}

/// The settings every request reads.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) secure_cookies: bool,
    pub(crate) origin: Option<String>,
    pub(crate) trust_forwarded_for: bool,
    pub(crate) sessions: SessionPolicy,
    pub(crate) limits: LoginLimits,
}

/// The console's shared state, handed to every handler (`State<AdminState>`). Cheap to
/// clone.
///
/// Handlers get the current user with the [`super::Authed`] extractor, and the accounts
/// with [`AdminState::store`].
#[derive(Debug, Clone)]
pub struct AdminState {
    store: UserStore,
    settings: Arc<Settings>,
    nav: Arc<[NavLink]>,
}

impl AdminState {
    /// Opens the console's database under `config.data_dir` and creates the bootstrap
    /// users that do not exist yet.
    pub async fn open(config: &AdminServiceConfig) -> Result<AdminState, AdminError> {
        let store = UserStore::open(&database_path(&config.data_dir)).await?;
        bootstrap(&store, config).await?;
        Ok(AdminState::new(store, config))
    }

    /// The state for an open `store` (no bootstrap).
    pub fn new(store: UserStore, config: &AdminServiceConfig) -> AdminState {
        AdminState {
            store,
            settings: Arc::new(Settings {
                secure_cookies: config.secure_cookies,
                origin: config.origin.clone(),
                trust_forwarded_for: config.trust_forwarded_for,
                sessions: config.sessions,
                limits: config.limits,
            }),
            nav: pages::default_nav().into(),
        }
    }

    /// Adds a link to the navigation bar, after the existing ones, shown to users whose
    /// role has the link's permission.
    pub fn with_nav(mut self, link: NavLink) -> AdminState {
        let mut nav = self.nav.to_vec();
        nav.push(link);
        self.nav = nav.into();
        self
    }

    /// The accounts, sessions and sign-in failures.
    pub fn store(&self) -> &UserStore {
        &self.store
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn nav(&self) -> Arc<[NavLink]> {
        Arc::clone(&self.nav)
    }
}

/// Creates the configured bootstrap users that do not exist yet, with the password from
/// the secret file (read only if one is missing).
async fn bootstrap(store: &UserStore, config: &AdminServiceConfig) -> Result<(), AdminError> {
    let mut missing = Vec::new();
    for user in &config.bootstrap {
        if store.user(&user.name).await?.is_none() {
            missing.push(user.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let password = crate::config::secret::read_secret_file(&config.bootstrap_password_file)?;
    for name in store.bootstrap(&missing, &password).await? {
        tracing::info!(
            user = %name,
            password_file = %config.bootstrap_password_file.display(),
            "created an admin console bootstrap user (who must change the password at first \
             sign-in)"
        );
    }
    Ok(())
}

/// The console's router: its own pages only.
pub fn router(state: AdminState) -> Router {
    router_with(state, accounts_pages())
}

/// The dashboard of a console that serves accounts only (`/`): the moderation console
/// ([`crate::console`]) brings its own.
pub fn accounts_pages() -> Router<AdminState> {
    Router::new().route("/", get(pages::dashboard::show))
}

/// The console's router with more pages: `extra`'s routes get the same session loading,
/// CSRF guard and security headers as the console's own. Their handlers take
/// [`super::Authed`] and call [`super::Authed::require`] with the permission they need;
/// their forms carry the CSRF token (`authed.csrf()`) in a field named [`csrf::FIELD`].
/// Routes merged into the returned router afterwards get none of this: add them here.
/// `extra` provides the dashboard (`/`): [`accounts_pages`] or the moderation console's.
pub fn router_with(state: AdminState, extra: Router<AdminState>) -> Router {
    Router::new()
        .route("/login", get(pages::login::show).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route(
            "/password",
            get(pages::password::show).post(pages::password::submit),
        )
        .route("/users", get(pages::users::show).post(pages::users::add))
        .route("/users/{name}/role", post(pages::users::set_role))
        .route("/users/{name}/disable", post(pages::users::disable))
        .route("/users/{name}/enable", post(pages::users::enable))
        .route(
            "/users/{name}/reset-password",
            post(pages::users::reset_password),
        )
        .merge(extra)
        .fallback(pages::not_found)
        // The last layer added runs first: headers around everything, then the session,
        // then the CSRF guard (which needs the session to know the expected token).
        .layer(middleware::from_fn_with_state(state.clone(), csrf::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::load_session,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every answer: pages are private (never cached), never framed (no
/// clickjacking), run no script and submit forms only to the console.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; media-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// Serves `state`'s console with the `extra` pages (see [`router_with`]) on `listener`
/// until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    state: AdminState,
    extra: Router<AdminState>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    serve_with_public(state, extra, Router::new(), listener, shutdown).await
}

/// Like [`serve`], with `public` routes beside the console on the same listener: protocol
/// endpoints (XRPC) that authenticate by their own means, or not at all. They take no
/// part in the console's sessions: no session is loaded for them, no CSRF token or origin
/// is asked of them, and they get none of the console's page headers. Their paths must not
/// be the console's.
pub async fn serve_with_public(
    state: AdminState,
    extra: Router<AdminState>,
    public: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    let app = router_with(state.clone(), extra)
        // Merged after the console's layers, so they do not wrap these routes.
        .merge(public)
        // The peer address feeds the per-address sign-in limit.
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .into_future();
    tokio::select! {
        result = server => result.map_err(AdminError::Serve),
        () = housekeeping(state) => Ok(()),
    }
}

/// Runs the console from `config` on `listener` until `shutdown` completes.
pub async fn run(
    config: AdminServiceConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    let state = AdminState::open(&config).await?;
    let store = state.store().clone();
    let result = serve(state, accounts_pages(), listener, shutdown).await;
    store.close().await;
    result
}

/// Deletes expired sessions and forgotten sign-in failures now and every
/// [`HOUSEKEEPING_EVERY`]. Never returns; it stops when the server does (see [`serve`]).
/// A failure is logged and tried again next time: it only leaves dead rows behind.
async fn housekeeping(state: AdminState) {
    let settings = state.settings();
    let mut every = tokio::time::interval(HOUSEKEEPING_EVERY);
    loop {
        every.tick().await;
        let store = state.store();
        match store.delete_expired_sessions(&settings.sessions).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "deleted expired admin console sessions"),
            Err(err) => tracing::warn!(%err, "deleting expired admin console sessions failed"),
        }
        if let Err(err) = store.delete_stale_failures(&settings.limits).await {
            tracing::warn!(%err, "deleting old admin console sign-in failures failed");
        }
    }
}
