//! What a running `atelier up` tells other `atelier` commands: its process id and the
//! URLs of the services it started, in `DATA_DIR/up.json` (written atomically once every
//! service is ready, removed on a clean stop). `atelier status`, `atelier down` and
//! `atelier account create` read it; a file whose process is gone (a crash, kill -9) counts
//! as "not running".
//!
//! These commands serve today's `atelier up` (the sandbox network and the AppView in one
//! foreground process); the supervised, config-driven `up` of the control plane issue will
//! keep the same file and commands.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file's name under the data directory.
const FILE: &str = "up.json";

/// A running `atelier up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpState {
    /// The `atelier up` process.
    pub pid: u32,
    /// The services it runs, in start order.
    pub services: Vec<ServiceUrl>,
    /// When it became ready (RFC 3339).
    pub started_at: String,
    /// The atelier.yaml it runs from, if any (absolute).
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Per service, a hash of each setting it runs with, by key path (values are hashed,
    /// never stored: some are secrets). `atelier plan` compares them with the file.
    #[serde(default)]
    pub fingerprints: Fingerprints,
}

/// Service name -> key path (`services.relay.listen`) -> hash of its value.
pub type Fingerprints =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// One service of a running `atelier up`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUrl {
    /// `plc`, `pds` or `appview`.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// Its health check path (GET; 200 means healthy).
    pub health: String,
    /// Its own process, when it runs as a child of `up` (not for in-process services).
    #[serde(default)]
    pub pid: Option<u32>,
    /// How often the supervisor has restarted it.
    #[serde(default)]
    pub restarts: u32,
}

impl UpState {
    /// The state file of the `up` using `data_dir`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// Writes the file atomically (a reader never sees half of it).
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = UpState::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }

    /// The state of the `up` using `data_dir`, if one is running (a file whose process is
    /// gone is removed and reads as `None`).
    ///
    /// # Errors
    /// If the file exists but cannot be read or parsed.
    pub fn read(data_dir: &Path) -> anyhow::Result<Option<UpState>> {
        let path = UpState::path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state: UpState = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a state file", path.display()))?;
        if !alive(state.pid) {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(state))
    }

    /// Removes the file (on a clean stop).
    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(UpState::path(data_dir));
    }

    /// The URL of service `name`.
    pub fn url(&self, name: &str) -> Option<&str> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.url.as_str())
    }
}

/// Whether process `pid` exists and has not exited (an exited child its parent has not
/// reaped yet, a zombie, counts as gone: Linux's `/proc/PID/stat` tells).
pub fn alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z"),
        Err(_) => true,
    }
}

/// How long `status` waits for one health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// One row of `atelier status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// `running` or `stopped`.
    pub state: &'static str,
    /// `healthy`, `unhealthy (...)`, or `-` when stopped.
    pub health: String,
    /// Its URL.
    pub url: String,
    /// Its process, when it runs as a child of `up`.
    pub pid: Option<u32>,
    /// How often the supervisor has restarted it.
    pub restarts: u32,
}

/// Checks every service of `state`.
pub async fn check(state: &UpState) -> Vec<ServiceStatus> {
    let http = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut out = Vec::new();
    for s in &state.services {
        let url = format!("{}{}", s.url.trim_end_matches('/'), s.health);
        let health = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => "healthy".to_owned(),
            Ok(r) => format!("unhealthy (HTTP {})", r.status().as_u16()),
            Err(e) if e.is_timeout() => "unhealthy (no answer in 3 s)".to_owned(),
            Err(_) => "unhealthy (refused)".to_owned(),
        };
        out.push(ServiceStatus {
            name: s.name.clone(),
            state: "running",
            health,
            url: s.url.clone(),
            pid: s.pid,
            restarts: s.restarts,
        });
    }
    out
}
