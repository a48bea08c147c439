//! `atelier.yaml`: the configuration of the whole installation.
//!
//! [`AtelierConfig`] is the file as one serde struct ([`schema`]); [`parse`] reads it with
//! errors that name the key path and the line and column; [`AtelierConfig::check`] finds
//! what serde cannot (port clashes, production without TLS, bad hostnames, readable secret
//! files); [`load`] does both. [`init::render`] writes the commented file `atelier init`
//! produces, from the struct's own doc comments; [`secrets::ensure_secrets`] generates the
//! secrets the services need under `DATA_DIR/secrets/`.

use std::path::{Path, PathBuf};

mod check;
pub mod command;
pub mod init;
pub mod schema;
pub mod secret;
pub mod secrets;
mod yaml;

pub use check::CheckError;
pub use schema::{
    AdminConfig, AppviewConfig, AtelierConfig, Backend, BootstrapUser, InvitePolicy, PdsConfig,
    PdsImplementation, PlcConfig, Profile, Role, Services, SourceConfig, SourceKind, StoreConfig,
    StoreKind, TlsConfig,
};
pub use secret::{Secret, SecretError};

/// The file name `atelier` looks for by default.
pub const DEFAULT_FILE: &str = "atelier.yaml";

/// A configuration that cannot be used. Every variant names where: the file, and the line,
/// column and key path when they are known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{origin}:{line}:{column}: invalid YAML: {reason}")]
    Syntax {
        /// The file, as named by the user.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the YAML parser says.
        reason: String,
    },
    /// A value is wrong: the wrong type, an unknown key, a duplicate key, or a failed check.
    #[error("{}{}{reason}", position(origin, *line, *column), key_prefix(key))]
    Invalid {
        /// The file, as named by the user.
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The key path (`services.pds.port`); empty for the whole document.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

fn position(origin: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{origin}:{line}:{column}: "),
        (Some(line), None) => format!("{origin}:{line}: "),
        _ => format!("{origin}: "),
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } if !key.is_empty() => Some(key),
            _ => None,
        }
    }
}

/// Parses `text` (named `origin` in errors, e.g. `atelier.yaml`) without the semantic
/// checks. An empty file, or one with only comments, gives the sandbox defaults.
pub fn parse(text: &str, origin: &str) -> Result<AtelierConfig, ConfigError> {
    yaml::parse(text, origin)
}

/// Parses `text` and runs [`AtelierConfig::check`] with relative paths taken from
/// `base_dir`; a check error gets the line of its key, or of the nearest section holding
/// it when the key itself is not in `text`.
pub fn parse_and_check(
    text: &str,
    origin: &str,
    base_dir: &Path,
) -> Result<AtelierConfig, ConfigError> {
    let config = parse(text, origin)?;
    if let Err(err) = config.check(base_dir) {
        let location = yaml::locate(text, &err.key);
        return Err(ConfigError::Invalid {
            origin: origin.to_owned(),
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            key: err.key,
            reason: err.reason,
        });
    }
    Ok(config)
}

/// A configuration read from a file and checked.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: AtelierConfig,
    /// The file it came from.
    pub path: PathBuf,
    /// The directory relative paths are taken from (the file's directory).
    pub base_dir: PathBuf,
}

impl Loaded {
    /// The data directory, resolved against the config file's directory.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir_in(&self.base_dir)
    }

    /// The `services.relay` section with its paths made usable from any working
    /// directory: `data_dir` and `admin_tokens_file` are taken from the data directory,
    /// `zstd_dictionary` from the config file's directory. `None` when no relay is
    /// configured.
    pub fn relay_config(&self) -> Option<atelier_relay::service::RelayConfig> {
        let mut relay = self.config.services.relay.clone()?;
        let data_dir = self.data_dir();
        relay.data_dir = data_dir.join(&relay.data_dir);
        relay.admin_tokens_file = data_dir.join(&relay.admin_tokens_file);
        relay.zstd_dictionary = relay.zstd_dictionary.map(|p| self.base_dir.join(p));
        Some(relay)
    }
}

impl Loaded {
    /// The PLC directory services resolve `did:plc` through: the local one (on loopback)
    /// in the sandbox profile, plc.directory otherwise.
    pub fn plc_url(&self) -> String {
        match self.config.plc() {
            Some(plc) if self.config.profile == Profile::Sandbox => {
                format!("http://127.0.0.1:{}", plc.port)
            }
            _ => "https://plc.directory".to_owned(),
        }
    }

    /// The AppView service's configuration: the index file under the data directory, and
    /// ingest from `services.appview.source`, or by default this installation's relay
    /// when one is configured, else the bundled PDS (loopback addresses in the sandbox).
    ///
    /// # Errors
    /// If the Postgres URL cannot be read (`services.appview.store.url_file`) or is
    /// missing.
    pub fn appview_config(&self) -> Result<atelier_appview::service::AppViewConfig, String> {
        let services = &self.config.services;
        let appview = &services.appview;
        let store = match appview.store.kind {
            StoreKind::Sqlite => atelier_appview::store::StoreLocation::Sqlite(
                self.data_dir().join(&appview.store.path),
            ),
            StoreKind::Postgres => match appview.store.postgres_url(&self.base_dir) {
                Ok(Some(url)) => {
                    atelier_appview::store::StoreLocation::Postgres(url.expose().to_owned())
                }
                Ok(None) => {
                    return Err("services.appview.store: kind postgres needs `url` or \
                                `url_file`"
                        .to_owned());
                }
                Err(e) => return Err(format!("services.appview.store: {e}")),
            },
        };
        let (url, kind, trusted) = match &appview.source {
            Some(source) => (source.url.clone(), source.kind, source.trusted),
            None => {
                let (addr, path) = match &services.relay {
                    Some(relay) => (relay.listen, "xrpc/com.atproto.sync.subscribeRepos"),
                    None => (
                        services.pds.listen(),
                        "xrpc/com.atproto.sync.subscribeRepos",
                    ),
                };
                (
                    format!("ws://{}/{path}", reachable(addr)),
                    SourceKind::SubscribeRepos,
                    false,
                )
            }
        };
        let sandbox = self.config.profile == Profile::Sandbox;
        let plc_url = self.plc_url();
        let mut ingest = atelier_appview::ingest::IngestConfig::new(url);
        ingest.trusted = trusted;
        ingest.kind = match kind {
            SourceKind::SubscribeRepos => atelier_appview::ingest::SourceKind::SubscribeRepos,
            SourceKind::Jetstream => atelier_appview::ingest::SourceKind::Jetstream,
        };
        ingest.plc_url = plc_url;
        ingest.allow_loopback = sandbox;
        let mut config = atelier_appview::service::AppViewConfig::new(store, Some(ingest));
        // The AppView's DID, the audience of viewers' service tokens: did:web of the
        // installation's hostname.
        config.service_did = format!("did:web:{}", self.config.hostname);
        config.labels.sources = appview
            .labelers
            .iter()
            .map(|l| atelier_appview::labels::LabelSource {
                did: l.did.clone(),
                url: l.url.clone(),
            })
            .collect();
        config.labels.plc_url = config
            .ingest
            .as_ref()
            .map_or_else(|| config.labels.plc_url.clone(), |i| i.plc_url.clone());
        config.labels.allow_loopback = sandbox;
        if appview.signin.enabled {
            let signin = &appview.signin;
            let public_url = signin
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", reachable(services.appview.listen())));
            let scope = signin
                .scope
                .clone()
                .unwrap_or_else(atelier_appview::publish::default_scope);
            let data_dir = self.data_dir();
            let mut oauth = atelier_appview::service::OAuthServiceConfig::new(
                public_url,
                scope,
                data_dir.join("appview/sessions.sqlite"),
                "oauth-1",
                secrets::secrets_dir(&data_dir).join("oauth_token_key"),
            );
            oauth.plc_url = self.plc_url();
            oauth.allow_loopback = sandbox;
            // Handles under the installation's hostname (`{name}.{hostname}`).
            oauth.handle_domain = Some(self.config.hostname.clone());
            if signin.bundled_accounts {
                oauth.bundled_pds = Some(format!("http://{}", reachable(services.pds.listen())));
            }
            config.oauth = Some(oauth);
        }
        let publish = &appview.publish;
        if publish.enabled {
            let relative = |paths: &[PathBuf]| -> Vec<PathBuf> {
                paths.iter().map(|p| self.base_dir.join(p)).collect()
            };
            let filter = atelier_appview::safety::SafetyFilter::with_files(
                &relative(&publish.safety_words),
                &relative(&publish.safety_allow),
            )
            .map_err(|e| format!("services.appview.publish: {e}"))?;
            config.publish = Some(atelier_appview::publish::PublishConfig {
                max_image_bytes: publish.max_image_bytes,
                max_video_bytes: publish.max_video_bytes,
                text_policy: match publish.text_policy {
                    schema::TextPolicy::Block => atelier_appview::safety::Policy::Block,
                    schema::TextPolicy::Mask => atelier_appview::safety::Policy::Mask,
                    schema::TextPolicy::Allow => atelier_appview::safety::Policy::Allow,
                },
                filter,
                ..atelier_appview::publish::PublishConfig::default()
            });
        }
        Ok(config)
    }
}

/// `addr` as a client reaches it: a wildcard bind address becomes loopback.
pub fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    addr
}

/// Reads, parses and checks the file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = base_dir_of(path);
    let config = parse_and_check(&text, &path.display().to_string(), &base_dir)?;
    Ok(Loaded {
        config,
        path: path.to_owned(),
        base_dir,
    })
}

/// The directory holding `path` (`.` for a bare file name).
pub fn base_dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}
