//! The AC client kit served by the AppView: the ES modules of `clients/js/` under
//! `/kit/`, and a demo page using them.

use axum::Router;

/// The kit's routes (none yet).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
}
