//! The `atelier.yaml` structure: one serde struct per section, a doc comment on every field
//! (they become the comments `atelier init` writes), defaults for everything, unknown keys
//! rejected.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use atelier_relay::service::{LabelerConfig, RelayConfig, UpstreamConfig, UpstreamKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretError, read_secret};

/// The whole of `atelier.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AtelierConfig {
    /// `sandbox` (every service on loopback, a local PLC directory, no internet needed) or
    /// `production` (a public hostname, TLS, plc.directory, crawl requests to public relays).
    pub profile: Profile,
    /// The public hostname of this installation. Accounts get handles under it
    /// (`alice.HOSTNAME`). `localhost` is only allowed in the sandbox profile.
    pub hostname: String,
    /// Where every service keeps its state, and where generated secrets live
    /// (`DATA_DIR/secrets/`). A relative path is taken from the directory holding this file.
    pub data_dir: PathBuf,
    /// How services are run: `process` (supervised child processes) or `docker`
    /// (containers through the Docker Engine API).
    pub backend: Backend,
    /// The services Atelier provisions and supervises.
    pub services: Services,
    /// How HTTPS is served in production: certificate files, or a reverse proxy in front.
    pub tls: TlsConfig,
}

impl Default for AtelierConfig {
    fn default() -> Self {
        AtelierConfig::sandbox()
    }
}

impl AtelierConfig {
    /// The sandbox defaults: what `atelier init` writes with no options.
    pub fn sandbox() -> Self {
        AtelierConfig {
            profile: Profile::Sandbox,
            hostname: "localhost".to_owned(),
            data_dir: PathBuf::from("atelier-data"),
            backend: Backend::Process,
            services: Services::sandbox(),
            tls: TlsConfig::default(),
        }
    }

    /// The production starting point `atelier init --profile production --hostname H`
    /// writes: no local PLC, crawl requests to the public relay, and TLS left for the
    /// operator to fill in (so `atelier check` refuses it until they do).
    pub fn production(hostname: &str) -> Self {
        let mut services = Services::sandbox();
        services.plc = None;
        services.relay = None;
        services.pds.crawlers = vec!["https://bsky.network".to_owned()];
        // Sign-in needs the confidential web client in production (not built yet).
        services.appview.signin.enabled = false;
        services.appview.publish.enabled = false;
        AtelierConfig {
            profile: Profile::Production,
            hostname: hostname.to_owned(),
            data_dir: PathBuf::from("atelier-data"),
            backend: Backend::Process,
            services,
            tls: TlsConfig::default(),
        }
    }

    /// The defaults of `profile`, with `hostname` when given.
    pub fn for_profile(profile: Profile, hostname: Option<&str>) -> Self {
        match profile {
            Profile::Sandbox => {
                let mut config = AtelierConfig::sandbox();
                if let Some(hostname) = hostname {
                    hostname.clone_into(&mut config.hostname);
                }
                config
            }
            Profile::Production => AtelierConfig::production(hostname.unwrap_or("example.com")),
        }
    }

    /// The data directory, with a relative `data_dir` taken from `base_dir` (the directory
    /// holding `atelier.yaml`).
    pub fn data_dir_in(&self, base_dir: &Path) -> PathBuf {
        base_dir.join(&self.data_dir)
    }

    /// The local PLC directory that runs: in the sandbox, `services.plc` or its defaults
    /// when the key is absent; in production, none.
    pub fn plc(&self) -> Option<PlcConfig> {
        match self.profile {
            Profile::Sandbox => Some(self.services.plc.clone().unwrap_or_default()),
            Profile::Production => None,
        }
    }
}

/// See [`AtelierConfig::profile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Loopback only, local PLC, plain HTTP; for development and tests.
    #[default]
    Sandbox,
    /// A public installation.
    Production,
}

impl Profile {
    /// `sandbox` or `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Sandbox => "sandbox",
            Profile::Production => "production",
        }
    }
}

/// See [`AtelierConfig::backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Supervised child processes.
    #[default]
    Process,
    /// Containers through the Docker Engine API.
    Docker,
}

impl Backend {
    /// `process` or `docker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Process => "process",
            Backend::Docker => "docker",
        }
    }
}

/// The services, one section each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Services {
    /// The bundled PDS, which hosts the accounts' repositories.
    pub pds: PdsConfig,
    /// The local PLC directory (sandbox only; production uses plc.directory). When the key
    /// is absent the sandbox runs it with the defaults; `null` is the same.
    #[serde(default)]
    pub plc: Option<PlcConfig>,
    /// The AC-namespace relay: follows PDS hosts or relays and re-serves only AC events.
    /// `null`, or absent from a `services` section that is there: no relay (the AppView
    /// then follows the PDS or a public relay). Relative paths in it are taken from
    /// `data_dir`.
    #[serde(default)]
    pub relay: Option<RelayConfig>,
    /// The AC AppView: indexes `computer.aesthetic.*` records and serves feeds.
    pub appview: AppviewConfig,
    /// The admin console for moderators.
    pub admin: AdminConfig,
}

impl Default for Services {
    fn default() -> Self {
        Services::sandbox()
    }
}

impl Services {
    fn sandbox() -> Self {
        let pds = PdsConfig::default();
        let plc = PlcConfig::default();
        let relay = RelayConfig {
            data_dir: PathBuf::from("relay"),
            upstreams: vec![UpstreamConfig {
                url: format!("ws://127.0.0.1:{}", pds.port),
                kind: UpstreamKind::Pds,
                trusted: false,
            }],
            allow_loopback: true,
            plc_url: format!("http://127.0.0.1:{}", plc.port),
            admin_tokens_file: PathBuf::from("secrets/relay_admin_token"),
            ..RelayConfig::default()
        };
        Services {
            pds,
            plc: Some(plc),
            relay: Some(relay),
            appview: AppviewConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// The bundled PDS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PdsConfig {
    /// `reference` (the pinned @atproto/pds package on Node 22) or `rsky` (rsky-pds as a
    /// binary or a container image).
    pub implementation: PdsImplementation,
    /// Address the PDS listens on.
    pub bind: IpAddr,
    /// Port the PDS listens on.
    pub port: u16,
    /// Who may create an account: `open` (anyone), `invite` (with an invite code), or
    /// `closed` (only the operator, through `atelier account create`).
    pub invites: InvitePolicy,
    /// SMTP URL for account e-mail (`smtps://user:password@host:465`). A secret: give it
    /// here or in `smtp_url_file`, not both.
    pub smtp_url: Option<Secret>,
    /// File holding the SMTP URL (mode 0600 or stricter).
    pub smtp_url_file: Option<PathBuf>,
    /// Largest blob (image, recording) one upload may carry, in bytes.
    pub blob_limit_bytes: u64,
    /// Relays the PDS asks to crawl it (`requestCrawl`), so its posts reach the network.
    pub crawlers: Vec<String>,
    /// Path of an operator-built `rsky-pds` binary (`implementation: rsky`, process
    /// backend).
    pub rsky_binary: Option<PathBuf>,
    /// Container image of rsky-pds, pinned by digest (`implementation: rsky`, docker
    /// backend).
    pub rsky_image: Option<String>,
}

impl Default for PdsConfig {
    fn default() -> Self {
        PdsConfig {
            implementation: PdsImplementation::Reference,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 2583,
            invites: InvitePolicy::Open,
            smtp_url: None,
            smtp_url_file: None,
            blob_limit_bytes: 50 * 1024 * 1024,
            crawlers: Vec::new(),
            rsky_binary: None,
            rsky_image: None,
        }
    }
}

impl PdsConfig {
    /// The SMTP URL from `smtp_url` or `smtp_url_file` (relative to `base_dir`), if any.
    pub fn smtp_url(&self, base_dir: &Path) -> Result<Option<Secret>, SecretError> {
        read_secret(
            self.smtp_url.as_ref(),
            self.smtp_url_file.as_deref(),
            base_dir,
        )
    }

    /// Where the PDS listens.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

/// See [`PdsConfig::implementation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PdsImplementation {
    /// The reference PDS (@atproto/pds).
    #[default]
    Reference,
    /// rsky-pds.
    Rsky,
}

impl PdsImplementation {
    /// `reference` or `rsky`.
    pub fn as_str(self) -> &'static str {
        match self {
            PdsImplementation::Reference => "reference",
            PdsImplementation::Rsky => "rsky",
        }
    }
}

/// See [`PdsConfig::invites`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitePolicy {
    /// Anyone may sign up.
    #[default]
    Open,
    /// Sign-up needs an invite code.
    Invite,
    /// No sign-up; the operator creates accounts.
    Closed,
}

/// The sandbox's local PLC directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlcConfig {
    /// Loopback port the PLC directory listens on.
    pub port: u16,
}

impl Default for PlcConfig {
    fn default() -> Self {
        PlcConfig { port: 2582 }
    }
}

/// The AC AppView.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AppviewConfig {
    /// Address the AppView listens on.
    pub bind: IpAddr,
    /// Port the AppView listens on.
    pub port: u16,
    /// Where the index is kept.
    pub store: StoreConfig,
    /// The `subscribeRepos` stream the AppView indexes. `null`: this installation's relay
    /// when one is configured, else the bundled PDS.
    pub source: Option<SourceConfig>,
    /// Labelers whose labels apply to what the AppView serves: `!takedown`, `!hide` and
    /// `!suspend` hide a record or an account, other labels ride on the views.
    pub labelers: Vec<LabelerConfig>,
    /// Sign-in with ATProto OAuth (`/login`, `/account`, `/logout`).
    pub signin: SigninConfig,
    /// The publishing API (`/publish/...`) for signed-in users.
    pub publish: PublishConfig,
}

impl Default for AppviewConfig {
    fn default() -> Self {
        AppviewConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 2584,
            store: StoreConfig::default(),
            source: None,
            labelers: Vec::new(),
            signin: SigninConfig::default(),
            publish: PublishConfig::default(),
        }
    }
}

/// Sign-in with ATProto OAuth on the AppView.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SigninConfig {
    /// Serve the sign-in pages. Only the loopback client exists so far, so this needs the
    /// sandbox profile.
    pub enabled: bool,
    /// The AppView's public URL (the OAuth redirect goes to it). `null`:
    /// `http://127.0.0.1:PORT` with the AppView's port.
    pub public_url: Option<String>,
    /// The OAuth scopes asked for, space-separated. `null`: `atproto`, `repo:` for each
    /// AC record type, and `blob:image/* blob:video/*`.
    pub scope: Option<String>,
    /// Offer AC-only accounts: people without an ATProto account make one on the bundled
    /// PDS (`/signup`) and sign in with its password. The AppView keeps their session
    /// tokens encrypted, never the password.
    pub bundled_accounts: bool,
}

impl Default for SigninConfig {
    fn default() -> Self {
        SigninConfig {
            enabled: true,
            public_url: None,
            scope: None,
            bundled_accounts: true,
        }
    }
}

/// The AppView's publishing API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PublishConfig {
    /// Serve the publishing API (needs `signin.enabled`).
    pub enabled: bool,
    /// What the safety filter's matches in a published text do: `block` (refused, the
    /// field named), `mask` (published with the matches replaced by `_`) or `allow`.
    pub text_policy: TextPolicy,
    /// Largest image upload (painting thumbnails), bytes.
    pub max_image_bytes: u64,
    /// Largest video upload (tapes), bytes; at most `services.pds.blob_limit_bytes`.
    pub max_video_bytes: u64,
    /// Extra word-list files for the safety filter (docs/safety-filter.md), relative to
    /// the directory of atelier.yaml.
    pub safety_words: Vec<PathBuf>,
    /// Extra allow-list files for the safety filter.
    pub safety_allow: Vec<PathBuf>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            enabled: true,
            text_policy: TextPolicy::Block,
            max_image_bytes: 1024 * 1024,
            max_video_bytes: 50 * 1024 * 1024,
            safety_words: Vec::new(),
            safety_allow: Vec::new(),
        }
    }
}

/// See [`PublishConfig::text_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextPolicy {
    /// Refuse the publish.
    #[default]
    Block,
    /// Publish with the matches masked.
    Mask,
    /// Publish as written (moderators can still be alerted by auto-flags).
    Allow,
}

/// A stream the AppView follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The stream's WebSocket URL: a relay's or PDS's `subscribeRepos`
    /// (`wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos`), an Atelier relay's, or
    /// with `kind: jetstream` a Jetstream `/subscribe` (`wss://jetstream2.us-east.bsky.network/subscribe`).
    pub url: String,
    /// `subscribe_repos` (signed CBOR frames) or `jetstream` (JSON events, which carry no
    /// signatures: such a source must be `trusted`).
    #[serde(default)]
    pub kind: SourceKind,
    /// Skip signature and MST verification: only for a source you run yourself.
    #[serde(default)]
    pub trusted: bool,
}

/// What kind of stream an AppView source serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// `com.atproto.sync.subscribeRepos`, verified through the sync layer.
    #[default]
    SubscribeRepos,
    /// A Jetstream-style JSON stream.
    Jetstream,
}

impl AppviewConfig {
    /// Where the AppView listens.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

/// A database: embedded SQLite, or a Postgres server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (a file under the data directory) or `postgres` (a server).
    pub kind: StoreKind,
    /// SQLite database file (`kind: sqlite`). A relative path is taken from `data_dir`.
    pub path: PathBuf,
    /// Postgres URL, `postgres://user:password@host/db` (`kind: postgres`). A secret: give
    /// it here or in `url_file`, not both.
    pub url: Option<Secret>,
    /// File holding the Postgres URL (mode 0600 or stricter).
    pub url_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            path: PathBuf::from("appview/index.sqlite"),
            url: None,
            url_file: None,
        }
    }
}

impl StoreConfig {
    /// The Postgres URL from `url` or `url_file` (relative to `base_dir`), if any.
    pub fn postgres_url(&self, base_dir: &Path) -> Result<Option<Secret>, SecretError> {
        read_secret(self.url.as_ref(), self.url_file.as_deref(), base_dir)
    }
}

/// See [`StoreConfig::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded SQLite (WAL mode).
    #[default]
    Sqlite,
    /// A Postgres server.
    Postgres,
}

/// The admin console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address the admin console listens on.
    pub bind: IpAddr,
    /// Port the admin console listens on.
    pub port: u16,
    /// Accounts created on first start. Each gets the generated password in
    /// `DATA_DIR/secrets/admin_bootstrap_password` and must change it at first login.
    pub bootstrap: Vec<BootstrapUser>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 2585,
            bootstrap: vec![BootstrapUser {
                name: "admin".to_owned(),
                role: Role::Admin,
            }],
        }
    }
}

impl AdminConfig {
    /// Where the admin console listens.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

/// An admin console account created on first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootstrapUser {
    /// Login name.
    pub name: String,
    /// `admin` (everything), `moderator` (reports, labels, takedowns) or `triage` (reports
    /// only).
    pub role: Role,
}

/// See [`BootstrapUser::role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every action, including user management.
    Admin,
    /// Reports, labels and takedowns.
    Moderator,
    /// Reading and sorting reports.
    Triage,
}

/// HTTPS for the public endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain served with rustls. Needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (mode 0600 or stricter).
    pub key_file: Option<PathBuf>,
    /// A reverse proxy in front terminates TLS (see `deploy/Caddyfile`); Atelier serves
    /// plain HTTP on loopback.
    pub behind_proxy: bool,
}
