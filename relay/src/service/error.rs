//! The relay service's errors.

use crate::eventlog::LogError;
use crate::sync::client::ClientError;
use crate::sync::identity::IdentityError;

use super::config::ConfigError;

/// Why the relay could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The event log failed.
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// The state database failed.
    #[error("relay state database: {0}")]
    State(String),
    /// An upstream could not be set up.
    #[error("upstream {host}: {source}")]
    Upstream {
        /// The upstream's host.
        host: String,
        /// The client's error.
        source: ClientError,
    },
    /// The identity resolver could not be built.
    #[error("identity resolver: {0}")]
    Identity(#[from] IdentityError),
    /// A file the relay needs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

impl RelayError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RelayError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
