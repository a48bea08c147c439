//! The console service: one listener serving the admin console (accounts, sessions and the
//! moderation pages), Atelier's labeler (`com.atproto.label.queryLabels` and
//! `subscribeLabels`, the `#atproto_labeler` endpoint of its DID document) and
//! `com.atproto.moderation.createReport` (where reports proxied to that DID arrive).
//!
//! Pages get the console's sessions, CSRF guard and headers; the XRPC routes are public
//! (they authenticate by service token, or not at all, as the protocol says) and are merged
//! outside those layers.
//!
//! State on disk, under `DATA_DIR/admin/`: `admin.sqlite` (users, sessions),
//! `labels.sqlite` (issued labels), `moderation.sqlite` (reports, queues, audit log).

use std::future::Future;
use std::path::{Path, PathBuf};

use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};

use super::pages::{self, ModerationPages};
use crate::admin::{AdminServiceConfig, AdminState};
use crate::labeler::{LabelStore, Labeler, SigningKey};
use crate::moderation::autoflag::{self, AutoflagConfig};
use crate::moderation::{Moderation, ModerationStore};

/// Why the console could not run.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console's accounts.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The label store or the labeler.
    #[error("labeler: {0}")]
    Labeler(String),
    /// The moderation store.
    #[error(transparent)]
    Moderation(#[from] crate::moderation::StoreError),
    /// The identity resolver's HTTP client.
    #[error("identity resolver: {0}")]
    Resolver(String),
    /// The auto-flagger.
    #[error(transparent)]
    Autoflag(#[from] autoflag::AutoflagError),
}

/// What the console service runs with.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The console's own settings (data directory, bootstrap users, cookies).
    pub admin: AdminServiceConfig,
    /// The labeler's DID: `src` of the labels it issues, `aud` of the reports it takes.
    pub labeler_did: String,
    /// The labeler's signing key file (`DATA_DIR/secrets/labeler_key`).
    pub labeler_key_file: PathBuf,
    /// The PLC directory authors' DIDs are resolved against (record previews, report
    /// tokens).
    pub plc_url: String,
    /// Allow loopback hosts and plain http (the sandbox).
    pub allow_loopback: bool,
    /// The stream the safety filter reads published text from (`None`: no auto-flags).
    pub autoflag: Option<AutoflagConfig>,
    /// The services the dashboard shows.
    pub services: Vec<super::dashboard::ServiceProbe>,
}

/// The console's state directory under the data directory.
pub fn admin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("admin")
}

/// `/xrpc/_health`: the console's version (what `atelier status` checks).
async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// Runs the console service on `listener` until `shutdown` resolves.
///
/// # Errors
/// When a store cannot be opened, the key cannot be read, or serving fails.
pub async fn run(
    config: ConsoleConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let dir = admin_dir(&config.admin.data_dir);
    let key = SigningKey::load(&config.labeler_key_file)
        .map_err(|e| ConsoleError::Labeler(e.to_string()))?;
    let labels = LabelStore::open(&dir.join("labels.sqlite"))
        .await
        .map_err(|e| ConsoleError::Labeler(e.to_string()))?;
    let labeler = Labeler::new(config.labeler_did.clone(), key, labels.clone())
        .await
        .map_err(|e| ConsoleError::Labeler(e.to_string()))?;
    let store = ModerationStore::open_in(&config.admin.data_dir).await?;
    let (policy, resolver_config) = if config.allow_loopback {
        (
            SsrfPolicy::sandbox(),
            ResolverConfig::sandbox(&config.plc_url),
        )
    } else {
        (
            SsrfPolicy::default(),
            ResolverConfig {
                plc_url: config.plc_url.clone(),
                ..ResolverConfig::default()
            },
        )
    };
    let http = GuardedClient::new(policy).map_err(|e| ConsoleError::Resolver(e.to_string()))?;
    let resolver = Resolver::new(resolver_config, http.clone());

    let mut state = AdminState::open(&config.admin).await?;
    for link in pages::nav() {
        state = state.with_nav(link);
    }
    let moderation_pages = ModerationPages {
        moderation: Moderation::new(store.clone(), labeler.clone()),
        resolver: resolver.clone(),
        http,
        services: config.services.clone(),
        probe_http: reqwest::Client::new(),
    };
    let public = crate::labeler::router(labeler.clone())
        .merge(crate::moderation::xrpc_router(
            store.clone(),
            resolver,
            &config.labeler_did,
        ))
        .route("/xrpc/_health", axum::routing::get(health));
    // One shutdown for the server and the auto-flagger.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let flagger = config.autoflag.clone().map(|flag| {
        tokio::spawn(autoflag::run(
            flag,
            store.clone(),
            atelier_appview::safety::SafetyFilter::default(),
            stopped(stop_rx.clone()),
        ))
    });
    let server = crate::admin::serve_with_public(
        state.clone(),
        pages::routes(moderation_pages),
        public,
        listener,
        stopped(stop_rx),
    );
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result.map_err(ConsoleError::from),
        () = shutdown => {
            let _ = stop_tx.send(true);
            server.await.map_err(ConsoleError::from)
        }
    };
    let _ = stop_tx.send(true);
    let flagged = match flagger {
        Some(task) => task
            .await
            .map_err(|e| ConsoleError::Labeler(format!("the auto-flagger task: {e}")))
            .and_then(|r| r.map_err(ConsoleError::from)),
        None => Ok(()),
    };
    labeler.shutdown();
    state.store().close().await;
    store.close().await;
    labels.close().await;
    result.and(flagged)
}
