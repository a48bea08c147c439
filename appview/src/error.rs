//! The AppView's errors: one enum for what can stop it, wrapping each layer's own.

use crate::store::StoreError;

/// Why the AppView (or one of its tasks) stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppViewError {
    /// The index store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source stream could not be started.
    #[error("cannot follow {source_url}: {reason}")]
    Source {
        /// The source URL.
        source_url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP server failed.
    #[error("the AppView server failed: {0}")]
    Serve(String),
    /// The built-in lexicons did not load (a build defect).
    #[error("the built-in lexicons do not load: {0}")]
    Lexicons(#[from] atelier_relay::lexicons::schema::SchemaError),
}
