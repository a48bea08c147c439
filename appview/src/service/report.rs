//! Reports from the AppView's signed-in users, forwarded to the moderation service.

use std::sync::Arc;

use axum::Router;

use super::Shared;

/// Where signed-in users' reports go (`appview.reports`): the labeler that runs the
/// moderation queue.
#[derive(Debug, Clone)]
pub struct ReportsConfig {
    /// The labeler's DID (the service-auth audience).
    pub labeler_did: String,
    /// The labeler's base URL.
    pub labeler_url: String,
}

/// The report routes (none until implemented).
pub(crate) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let _ = shared;
    Router::new()
}
