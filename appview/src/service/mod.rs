//! The AppView service: ingest from the configured source into the index store, and the
//! HTTP API over it, as one [`run`] (`run(config, listener, shutdown)`, like every Atelier
//! service).
//!
//! Label sync ([`crate::labels::sync`]) runs beside ingest when label sources are
//! configured; its commits invalidate the response cache like ingest's.
//!
//! If ingest stops with an error (the store failed), the server stops too and [`run`]
//! returns that error, so the supervisor restarts the whole AppView from its stored cursor
//! rather than serving an index that no longer moves.

mod cache;
mod kit;
mod link;
mod notifications;
mod page;
mod report;
pub(crate) mod signin;
mod signup;
mod xrpc;

pub use report::ReportsConfig;
pub use signin::{CALLBACK_PATH, OAuthServiceConfig};

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

use crate::auth::ServiceAuth;
use crate::error::AppViewError;
use crate::histogram::{Histogram, QUERY_BUCKETS};
use crate::ingest::{self, IngestConfig, IngestStats};
use crate::labels::{LabelStats, LabelSyncConfig};
use crate::store::{AnyStore, StoreLocation};

/// What the AppView service needs, resolved (paths absolute, secrets read).
#[derive(Debug, Clone)]
pub struct AppViewConfig {
    /// The index store.
    pub store: StoreLocation,
    /// Where to ingest from; `None` serves the index as it is.
    pub ingest: Option<IngestConfig>,
    /// Bytes of query responses kept until the index changes (0: no cache); see
    /// [`DEFAULT_RESPONSE_CACHE_BYTES`].
    pub response_cache_bytes: usize,
    /// The AppView's own DID: the `aud` that viewers' inter-service tokens must name.
    pub service_did: String,
    /// The labelers whose labels apply to what the AppView serves (label sync); no
    /// sources by default.
    pub labels: LabelSyncConfig,
    /// Sign-in with ATProto OAuth (the `/login`, `/oauth/callback`, `/account` and
    /// `/logout` pages); `None` (the default) serves no sign-in routes.
    pub oauth: Option<OAuthServiceConfig>,
    /// The publishing API (`/publish/...`) for signed-in users; needs `oauth`. `None`
    /// (the default) serves none.
    pub publish: Option<crate::publish::PublishConfig>,
    /// Where signed-in users' reports go; `None` (the default) serves no report route.
    pub reports: Option<ReportsConfig>,
}

/// The AppView's DID when the configuration names none (`did:web` of its hostname is
/// what the control plane sets).
pub const DEFAULT_SERVICE_DID: &str = "did:web:localhost";

/// The response cache's default budget.
pub const DEFAULT_RESPONSE_CACHE_BYTES: usize = 32 << 20;

impl AppViewConfig {
    /// The index at `store`, following `ingest`, with the default response cache.
    pub fn new(store: StoreLocation, ingest: Option<IngestConfig>) -> AppViewConfig {
        AppViewConfig {
            store,
            ingest,
            response_cache_bytes: DEFAULT_RESPONSE_CACHE_BYTES,
            service_did: DEFAULT_SERVICE_DID.to_owned(),
            labels: LabelSyncConfig::default(),
            oauth: None,
            publish: None,
            reports: None,
        }
    }
}

/// What the HTTP handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<AnyStore>,
    pub(crate) stats: Arc<IngestStats>,
    /// Label sync's counters (and the cache generation its commits move).
    pub(crate) labels: Arc<LabelStats>,
    pub(crate) source: Option<String>,
    pub(crate) cache: cache::ResponseCache,
    /// Verifies viewers' inter-service tokens (per-user endpoints).
    pub(crate) auth: ServiceAuth,
    /// Becomes true when the service stops (live streams end).
    pub(crate) stop: watch::Receiver<bool>,
    /// Query latency by route.
    pub(crate) query_times: QueryTimes,
    /// The OAuth client and session store, when sign-in is configured.
    pub(crate) signin: Option<Arc<signin::SignIn>>,
    /// The publishing pipeline, when configured.
    pub(crate) publisher: Option<Arc<crate::publish::Publisher>>,
    /// Where signed-in users' reports go, when configured.
    pub(crate) reports: Option<ReportsConfig>,
}

/// Query handling time per route, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct QueryTimes(std::sync::Mutex<std::collections::BTreeMap<String, Arc<Histogram>>>);

impl QueryTimes {
    pub(crate) fn observe(&self, route: &str, took: std::time::Duration) {
        let histogram = match self.0.lock() {
            // The route is almost always known: look it up before allocating its key.
            Ok(mut routes) => match routes.get(route) {
                Some(histogram) => Arc::clone(histogram),
                None => Arc::clone(
                    routes
                        .entry(route.to_owned())
                        .or_insert_with(|| Arc::new(Histogram::new(QUERY_BUCKETS))),
                ),
            },
            Err(_) => return,
        };
        histogram.observe(took);
    }

    pub(crate) fn snapshot(&self) -> Vec<(String, Arc<Histogram>)> {
        self.0
            .lock()
            .map(|routes| {
                routes
                    .iter()
                    .map(|(r, h)| (r.clone(), Arc::clone(h)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs the AppView on `listener` until `shutdown` completes (or ingest fails), then
/// commits ingest's last batch and closes the store.
///
/// # Errors
/// If the store cannot be opened, the listener fails, or ingest stops with an error.
pub async fn run(
    config: AppViewConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppViewError> {
    let store = Arc::new(AnyStore::open(&config.store).await?);
    let stats = Arc::new(IngestStats::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let ingest_task = config.ingest.clone().map(|ingest_config| {
        let (store, stats, stop_tx) = (Arc::clone(&store), Arc::clone(&stats), stop_tx.clone());
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            let result = ingest::run(&ingest_config, store, stats, stop).await;
            if let Err(e) = &result {
                error!(error = %e, "ingest stopped; stopping the AppView");
            }
            // Either way the server goes down with it.
            let _ = stop_tx.send(true);
            result
        })
    });

    let label_stats = Arc::new(LabelStats::default());
    // Always run, even with no sources: it records which sources apply, so labels from a
    // source no longer configured stop applying.
    let labels_task = {
        let label_config = config.labels.clone();
        let (guard, resolver) =
            ingest::identity(&label_config.plc_url, label_config.allow_loopback).map_err(
                |reason| AppViewError::Source {
                    source_url: label_config.plc_url.clone(),
                    reason,
                },
            )?;
        let (store, stats, stop) = (
            Arc::clone(&store),
            Arc::clone(&label_stats),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            let sink = Arc::new(crate::labels::StoreSink(store));
            crate::labels::sync::run(label_config, sink, stats, resolver, guard, stop).await
        })
    };

    // Identities resolve through the PLC that ingest uses, else sign-in's.
    let (plc_url, allow_loopback) = match (&config.ingest, &config.oauth) {
        (Some(i), _) => (i.plc_url.clone(), i.allow_loopback),
        (None, Some(o)) => (o.plc_url.clone(), o.allow_loopback),
        (None, None) => (IngestConfig::new("").plc_url, false),
    };
    let (guard, resolver) =
        ingest::identity(&plc_url, allow_loopback).map_err(|reason| AppViewError::Source {
            source_url: plc_url.clone(),
            reason,
        })?;
    // The handle verifier runs beside ingest (it checks what ingest's #identity events
    // announce), through sign-in's DNS when one is configured (the sandbox's `.test`
    // handles resolve only there); the sandbox asks no DNS server otherwise.
    let handles_task = match &config.ingest {
        Some(_) => {
            let dns = config.oauth.as_ref().and_then(|o| o.dns.clone());
            let dns = dns.or_else(|| allow_loopback.then(crate::handles::sandbox_dns));
            let resolver =
                match dns {
                    Some(dns) => crate::handles::resolver(&plc_url, allow_loopback, dns).map_err(
                        |reason| AppViewError::Source {
                            source_url: plc_url.clone(),
                            reason,
                        },
                    )?,
                    None => resolver.clone(),
                };
            Some(tokio::spawn(crate::handles::run(
                crate::handles::HandleConfig::default(),
                Arc::clone(&store),
                Arc::clone(&stats),
                resolver,
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    let signin = match &config.oauth {
        Some(oauth) => Some(Arc::new(
            signin::SignIn::open(oauth)
                .await
                .map_err(|e| AppViewError::Serve(format!("sign-in: {e}")))?,
        )),
        None => None,
    };
    let cleanup_task = signin.as_ref().map(|signin| {
        tokio::spawn(signin::clean_up(
            Arc::clone(signin),
            stopped(stop_rx.clone()),
        ))
    });
    let publisher = match (&config.publish, &signin) {
        (Some(publish), Some(signin)) => Some(Arc::new(
            crate::publish::Publisher::new(
                publish.clone(),
                Arc::clone(signin),
                Arc::clone(&store),
                Arc::clone(&stats),
                resolver.clone(),
                guard,
            )
            .await
            .map_err(|e| AppViewError::Serve(format!("publishing: {e}")))?,
        )),
        (Some(_), None) => {
            return Err(AppViewError::Serve(
                "publishing needs sign-in: configure oauth as well".into(),
            ));
        }
        (None, _) => None,
    };
    let reconcile_task = publisher.as_ref().map(|publisher| {
        let every = publisher
            .config
            .confirm_after
            .min(crate::publish::reconcile::EVERY);
        tokio::spawn(crate::publish::reconcile::run(
            Arc::clone(publisher),
            every,
            stopped(stop_rx.clone()),
        ))
    });
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        stats,
        labels: label_stats,
        source: config.ingest.as_ref().map(|i| i.source.clone()),
        cache: cache::ResponseCache::new(config.response_cache_bytes),
        auth: ServiceAuth::new(resolver, config.service_did.clone()),
        stop: stop_rx.clone(),
        query_times: QueryTimes::default(),
        signin: signin.clone(),
        publisher,
        reports: config.reports.clone(),
    });
    let app = xrpc::router(shared);
    let addr = listener.local_addr().ok();
    info!(?addr, store = %config.store.describe(), "AppView listening");
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stopped(stop_rx.clone()))
        .await;
    let _ = stop_tx.send(true);
    let ingest_result = match ingest_task {
        Some(task) => task.await.unwrap_or_else(|e| {
            Err(AppViewError::Source {
                source_url: shared_source(&config),
                reason: format!("ingest task failed: {e}"),
            })
        }),
        None => Ok(()),
    };
    match labels_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(error = %e, "label sync failed"),
        Err(e) => error!(error = %e, "label sync task failed"),
    }
    if let Some(task) = handles_task {
        let _ = task.await;
    }
    if let Some(task) = cleanup_task {
        let _ = task.await;
    }
    if let Some(task) = reconcile_task {
        let _ = task.await;
    }
    if let Some(signin) = &signin {
        signin.sessions.close().await;
    }
    store.close().await;
    served.map_err(|e| AppViewError::Serve(e.to_string()))?;
    ingest_result
}

/// Whether the request's body is declared `application/json` (parameters ignored): a
/// body a cross-site HTML form cannot send, which cookie-authenticated writes require.
pub(crate) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn shared_source(config: &AppViewConfig) -> String {
    config
        .ingest
        .as_ref()
        .map(|i| i.source.clone())
        .unwrap_or_default()
}
