//! A real ATProto network on loopback: a local PLC directory and the reference PDS.
//!
//! [`Sandbox::start`] launches the durable sandbox PLC (`deploy/pds/plc.mjs`) and the pinned
//! reference PDS (`deploy/pds/pds.mjs`, npm `@atproto/pds`) as child processes on free
//! loopback ports, with data in a temporary (or given) directory, waits until both answer
//! their health checks, and hands back their URLs. Dropping the [`Sandbox`] kills both
//! processes, also when a test panics, and a panicking test gets the services' logs on
//! stderr so a failure can be read without re-running it.
//!
//! The runtime (Node 22 and the npm packages) is installed by `./install.sh` under
//! `ATELIER_HOME` (default `~/.local/share/atelier`); see [`Runtime::locate`]. When it is
//! missing, [`Sandbox::start`] fails with an error that names the install step: tests that
//! need a PDS fail, they never skip.
//!
//! `atelier dev pds` and (for now) `atelier up` run the same code in the foreground.
//!
//! [`PgCluster`] is a throwaway PostgreSQL server for the Postgres store's tests, and
//! [`LoopbackLabeler`] a minimal labeler for label-sync tests; [`oauth`] plays the user at
//! the PDS's OAuth sign-in page.

mod account;
mod labeler;
pub mod oauth;
mod postgres;
mod process;
mod runtime;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use account::{Account, BlobRef, CreatedRecord};
pub use labeler::LoopbackLabeler;
pub use postgres::PgCluster;
pub use process::{CRASH_LIMIT, CRASH_WINDOW};
pub use runtime::Runtime;

use process::Service;

/// Everything that can go wrong while starting or using the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Node 22 or the pinned packages are not installed.
    #[error(
        "{what} not found at {path}: run `./install.sh` from the Atelier checkout (it installs Node 22 and the pinned PDS/PLC under ATELIER_HOME), or set ATELIER_HOME to where it installed them"
    )]
    RuntimeMissing {
        /// What is missing, in words.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A service exited or did not become healthy in time.
    #[error(
        "{service} did not become healthy: {reason}\n--- last lines of its log ---\n{log_tail}"
    )]
    Unhealthy {
        /// `plc`, `pds` or `postgres`.
        service: &'static str,
        /// Why it is considered failed.
        reason: String,
        /// The end of its log, to see why.
        log_tail: String,
    },
    /// A service died too often to be restarted again.
    #[error(
        "{service} exited {deaths} times within {} s; it is not restarted again. Last lines of its log:\n{log_tail}",
        window.as_secs()
    )]
    CrashLoop {
        /// `plc` or `pds`.
        service: &'static str,
        /// Deaths within the window.
        deaths: usize,
        /// The window.
        window: Duration,
        /// The end of its log.
        log_tail: String,
    },
    /// An HTTP request to a sandbox service failed.
    #[error("{method} {url}: {source}")]
    Http {
        /// The XRPC method or path.
        method: String,
        /// The URL requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A sandbox service answered with an XRPC error.
    #[error("{method} returned HTTP {status}: {error}: {message}")]
    Xrpc {
        /// The XRPC method.
        method: String,
        /// HTTP status code.
        status: u16,
        /// The XRPC error name (`InvalidRequest`, ...).
        error: String,
        /// The message the service gave.
        message: String,
    },
}

impl SandboxError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

/// How to start a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// Where the PLC log, PDS database and blobs live. `None`: a temporary directory that is
    /// deleted when the sandbox is dropped.
    pub data_dir: Option<PathBuf>,
    /// Fixed ports (`None`: the ports this data directory used last time, else a free
    /// loopback port). The choice is remembered in `ports.json` in the data directory.
    pub plc_port: Option<u16>,
    /// See `plc_port`.
    pub pds_port: Option<u16>,
    /// The runtime to use (`None`: [`Runtime::locate`]).
    pub runtime: Option<Runtime>,
    /// The largest blob one upload may carry (`PDS_BLOB_UPLOAD_LIMIT`); `None`:
    /// [`DEFAULT_BLOB_LIMIT`].
    pub blob_limit_bytes: Option<u64>,
}

/// The sandbox PDS's blob upload limit unless set: 50 MiB, the size of AC's longest tapes
/// (the reference PDS's own default is 5 MiB).
pub const DEFAULT_BLOB_LIMIT: u64 = 50 * 1024 * 1024;

/// A running local PLC + PDS pair.
pub struct Sandbox {
    plc: Service,
    pds: Service,
    plc_url: String,
    pds_url: String,
    admin_password: String,
    plc_rotation_key_hex: String,
    data_dir: PathBuf,
    http: reqwest::Client,
    // Declared last so the directory outlives the processes using it.
    _temp: Option<tempfile::TempDir>,
}

/// Secrets (the admin password, the rotation key) stay out of Debug output.
impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("plc", &self.plc)
            .field("pds", &self.pds)
            .field("plc_url", &self.plc_url)
            .field("pds_url", &self.pds_url)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// How long a service may take to become healthy. The PDS starts in 2-3 s on these
/// machines; a cold disk cache or a loaded CI machine can take several times that.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

impl Sandbox {
    /// Starts a PLC and a PDS with the default options (temporary data, free ports).
    pub async fn start() -> Result<Sandbox, SandboxError> {
        Sandbox::start_with(SandboxOptions::default()).await
    }

    /// Starts a PLC and a PDS as `options` say, and waits until both are healthy.
    pub async fn start_with(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let runtime = match options.runtime {
            Some(runtime) => runtime,
            None => Runtime::locate()?,
        };
        let (temp, data_dir) = match options.data_dir {
            // Absolute: the services run in the runtime's directory, not ours.
            Some(dir) => (
                None,
                std::path::absolute(&dir)
                    .map_err(|e| SandboxError::io(format!("resolving {}", dir.display()), e))?,
            ),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("atelier-sandbox-")
                    .tempdir()
                    .map_err(|e| SandboxError::io("creating a temporary data directory", e))?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let dirs = DataDirs::create(&data_dir)?;
        let secrets = Secrets::load_or_create(&dirs.secrets)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SandboxError::Http {
                method: "client".into(),
                url: String::new(),
                source: e,
            })?;

        // A persistent sandbox keeps its ports: DID documents on the PLC name the PDS by its
        // URL, so a PDS that came back on another port would be unreachable through them.
        let remembered = Ports::load(&dirs.root);
        let plc_port = match options.plc_port.or(remembered.map(|p| p.plc)) {
            Some(port) => port,
            None => free_port()?,
        };
        let plc_url = format!("http://127.0.0.1:{plc_port}");
        let mut plc = Service::spawn(
            "plc",
            &runtime,
            "plc.mjs",
            &[
                ("PLC_PORT", plc_port.to_string()),
                ("PLC_OPLOG", path_str(&dirs.plc.join("operations.jsonl"))),
            ],
            &dirs.logs.join("plc.log"),
        )?;
        plc.wait_healthy(&http, &format!("{plc_url}/_health"), HEALTH_TIMEOUT)
            .await?;

        let pds_port = match options.pds_port.or(remembered.map(|p| p.pds)) {
            Some(port) => port,
            None => free_port()?,
        };
        Ports {
            plc: plc_port,
            pds: pds_port,
        }
        .save(&dirs.root)?;
        let pds_url = format!("http://localhost:{pds_port}");
        let mut pds = Service::spawn(
            "pds",
            &runtime,
            "pds.mjs",
            &pds_env(
                &dirs,
                pds_port,
                &plc_url,
                &secrets,
                options.blob_limit_bytes.unwrap_or(DEFAULT_BLOB_LIMIT),
            ),
            &dirs.logs.join("pds.log"),
        )?;
        if let Err(e) = pds
            .wait_healthy(&http, &format!("{pds_url}/xrpc/_health"), HEALTH_TIMEOUT)
            .await
        {
            plc.kill();
            return Err(e);
        }

        Ok(Sandbox {
            plc,
            pds,
            plc_url,
            pds_url,
            admin_password: secrets.admin_password,
            plc_rotation_key_hex: secrets.plc_rotation_key_hex,
            data_dir,
            http,
            _temp: temp,
        })
    }

    /// The PLC directory's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn plc_url(&self) -> &str {
        &self.plc_url
    }

    /// The PLC directory's port on 127.0.0.1 (for an `atelier.yaml` that names it:
    /// `services.plc.port`).
    pub fn plc_port(&self) -> u16 {
        self.plc_url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }

    /// The PDS's base URL, e.g. `http://localhost:41235` (the PDS's own idea of its
    /// hostname, as it appears in DID documents).
    pub fn pds_url(&self) -> &str {
        &self.pds_url
    }

    /// The PDS's WebSocket URL for `com.atproto.sync.subscribeRepos`.
    pub fn subscribe_repos_url(&self, cursor: Option<i64>) -> String {
        let base = self.pds_url.replacen("http://", "ws://", 1);
        match cursor {
            Some(c) => format!("{base}/xrpc/com.atproto.sync.subscribeRepos?cursor={c}"),
            None => format!("{base}/xrpc/com.atproto.sync.subscribeRepos"),
        }
    }

    /// The PDS admin password (basic auth user `admin`).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The PDS's PLC rotation key (k256, hex): a rotation key of every account the PDS
    /// created, so whoever holds it can update their DID documents (the labeler's
    /// identity is made this way).
    pub fn plc_rotation_key_hex(&self) -> &str {
        &self.plc_rotation_key_hex
    }

    /// Where the services keep their data and logs.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates an account with handle `{name}.test` and returns a signed-in session.
    pub async fn create_account(&self, name: &str) -> Result<Account, SandboxError> {
        Account::create(self.http.clone(), &self.pds_url, name).await
    }

    /// The last `lines` lines of both services' logs.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "--- plc ({}) ---\n{}\n--- pds ({}) ---\n{}",
            self.plc.log_path().display(),
            self.plc.log_tail(lines),
            self.pds.log_path().display(),
            self.pds.log_tail(lines)
        )
    }

    /// Restarts whichever service has died (after its backoff; see [`CRASH_LIMIT`]) and
    /// returns the names of those restarted and healthy again. Call it every half second
    /// or so; it returns at once when both run.
    ///
    /// # Errors
    /// [`SandboxError::CrashLoop`] when a service has died [`CRASH_LIMIT`] times within
    /// [`CRASH_WINDOW`].
    pub async fn supervise(&mut self) -> Result<Vec<&'static str>, SandboxError> {
        let mut restarted = Vec::new();
        let plc_health = format!("{}/_health", self.plc_url);
        if self
            .plc
            .supervise(&self.http, &plc_health, HEALTH_TIMEOUT)
            .await?
            == process::Supervised::Restarted
        {
            restarted.push("plc");
        }
        let pds_health = format!("{}/xrpc/_health", self.pds_url);
        if self
            .pds
            .supervise(&self.http, &pds_health, HEALTH_TIMEOUT)
            .await?
            == process::Supervised::Restarted
        {
            restarted.push("pds");
        }
        Ok(restarted)
    }

    /// Each service's name, process id and restarts so far.
    pub fn services(&self) -> [(&'static str, u32, u32); 2] {
        [
            ("plc", self.plc.pid(), self.plc.restarts),
            ("pds", self.pds.pid(), self.pds.restarts),
        ]
    }

    /// Whether both processes are still running.
    pub fn is_running(&mut self) -> bool {
        self.plc.is_running() && self.pds.is_running()
    }

    /// Stops both services gracefully (SIGTERM, then SIGKILL after a grace period).
    pub async fn shutdown(mut self) {
        self.pds.stop(Duration::from_secs(10)).await;
        self.plc.stop(Duration::from_secs(5)).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n=== sandbox service logs (test failed) ===\n{}\n",
                self.logs(80)
            );
        }
        self.pds.kill();
        self.plc.kill();
    }
}

/// The directory layout under a sandbox data directory.
struct DataDirs {
    root: PathBuf,
    plc: PathBuf,
    pds: PathBuf,
    blobs: PathBuf,
    logs: PathBuf,
    secrets: PathBuf,
}

impl DataDirs {
    fn create(root: &Path) -> Result<DataDirs, SandboxError> {
        let dirs = DataDirs {
            root: root.to_path_buf(),
            plc: root.join("plc"),
            pds: root.join("pds"),
            blobs: root.join("pds").join("blobs"),
            logs: root.join("logs"),
            secrets: root.join("secrets"),
        };
        for dir in [&dirs.plc, &dirs.pds, &dirs.blobs, &dirs.logs, &dirs.secrets] {
            std::fs::create_dir_all(dir)
                .map_err(|e| SandboxError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(dirs)
    }
}

/// The ports a sandbox used, kept in `ports.json` so a restart reuses them.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Ports {
    plc: u16,
    pds: u16,
}

impl Ports {
    const FILE: &'static str = "ports.json";

    fn load(root: &Path) -> Option<Ports> {
        let text = std::fs::read_to_string(root.join(Ports::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save(self, root: &Path) -> Result<(), SandboxError> {
        let path = root.join(Ports::FILE);
        let text = serde_json::json!({ "plc": self.plc, "pds": self.pds }).to_string();
        std::fs::write(&path, text)
            .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))
    }
}

/// The PDS's secrets. Kept in files (mode 0600) so a persistent sandbox keeps its accounts
/// signable across restarts.
struct Secrets {
    jwt_secret: String,
    admin_password: String,
    plc_rotation_key_hex: String,
}

impl Secrets {
    fn load_or_create(dir: &Path) -> Result<Secrets, SandboxError> {
        Ok(Secrets {
            jwt_secret: secret_file(&dir.join("pds_jwt_secret"), 16)?,
            admin_password: secret_file(&dir.join("pds_admin_password"), 12)?,
            // 32 random bytes are a valid secp256k1 scalar with overwhelming probability
            // (the chance of landing at or above the group order is about 2^-128).
            plc_rotation_key_hex: secret_file(&dir.join("plc_rotation_key_k256_hex"), 32)?,
        })
    }
}

/// Reads a hex secret from `path`, creating it (mode 0600) with `bytes` random bytes first.
fn secret_file(path: &Path, bytes: usize) -> Result<String, SandboxError> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned());
        }
    }
    let mut raw = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| SandboxError::io("reading /dev/urandom", e))?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(hex.as_bytes()))
        .map_err(|e| SandboxError::io(format!("writing {}", path.display()), e))?;
    Ok(hex)
}

/// The reference PDS's environment for the sandbox profile.
fn pds_env(
    dirs: &DataDirs,
    port: u16,
    plc_url: &str,
    secrets: &Secrets,
    blob_limit: u64,
) -> Vec<(&'static str, String)> {
    vec![
        ("PDS_BLOB_UPLOAD_LIMIT", blob_limit.to_string()),
        ("PDS_HOSTNAME", "localhost".into()),
        ("PDS_PORT", port.to_string()),
        ("PDS_DATA_DIRECTORY", path_str(&dirs.pds)),
        ("PDS_BLOBSTORE_DISK_LOCATION", path_str(&dirs.blobs)),
        ("PDS_JWT_SECRET", secrets.jwt_secret.clone()),
        ("PDS_ADMIN_PASSWORD", secrets.admin_password.clone()),
        (
            "PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX",
            secrets.plc_rotation_key_hex.clone(),
        ),
        ("PDS_DID_PLC_URL", plc_url.into()),
        // Dev mode: plain http and loopback addresses are allowed.
        ("PDS_DEV_MODE", "true".into()),
        ("PDS_INVITE_REQUIRED", "false".into()),
        // Nothing public is ever told about a sandbox.
        ("PDS_CRAWLERS", String::new()),
        ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
        // Tests create many accounts and records quickly.
        ("PDS_RATE_LIMITS_ENABLED", "false".into()),
        ("LOG_ENABLED", "true".into()),
        ("LOG_LEVEL", "info".into()),
    ]
}

/// Picks a free TCP port on 127.0.0.1. The port is released before the service binds it;
/// the window is small and a clash shows up as a failed health check with the log.
fn free_port() -> Result<u16, SandboxError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| SandboxError::io("finding a free loopback port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| SandboxError::io("finding a free loopback port", e))
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Polls `url` until it answers 2xx, the process exits, or `timeout` passes.
async fn poll_health(http: &reqwest::Client, url: &str, deadline: Instant) -> Result<(), String> {
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        match http.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(resp) if resp.status().is_success() => return Ok(()),
            Ok(resp) => last = format!("{url} answered HTTP {}", resp.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}
