//! `atelier status`, `atelier down`, `atelier logs` and `atelier account create`: commands
//! that act on a running `atelier up` through its state file ([`crate::up_state`]) and its
//! data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::RngCore as _;
use serde_json::{Value, json};

use crate::up_state::{self, UpState};

/// Which `atelier up` to talk to.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The data directory of that `up` (default: as `up` chooses it: DATA_DIR/sandbox of
    /// ./atelier.yaml when it exists, else ATELIER_HOME/sandbox).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The atelier.yaml that `up` ran from.
    #[arg(long, value_name = "FILE", conflicts_with = "data_dir")]
    pub config: Option<PathBuf>,
}

impl Target {
    /// The whole data directory: DATA_DIR of the atelier.yaml in use (its secrets, the
    /// sandbox, the relay and the AppView), else the sandbox directory itself.
    pub fn root(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match config_file(self.config.clone()).and_then(|f| crate::config::load(&f).ok()) {
            Some(loaded) => loaded.data_dir(),
            None => atelier_sandbox::Runtime::home().join("sandbox"),
        }
    }

    /// The directory of the running `up`'s sandbox (its state file, logs, PDS).
    pub fn dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match config_file(self.config.clone()).and_then(|f| crate::config::load(&f).ok()) {
            Some(loaded) => loaded.data_dir().join("sandbox"),
            None => atelier_sandbox::Runtime::home().join("sandbox"),
        }
    }
}

/// The atelier.yaml to use: `explicit`, else ./atelier.yaml when it exists.
fn config_file(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let default = PathBuf::from(crate::config::DEFAULT_FILE);
        default.is_file().then_some(default)
    })
}

/// Per service, a hash of every setting it runs with (see [`up_state::Fingerprints`]): the
/// service's section, plus the top-level keys it depends on.
pub fn fingerprints(loaded: &crate::config::Loaded) -> up_state::Fingerprints {
    let c = &loaded.config;
    let top = [
        ("profile", json(&c.profile)),
        ("hostname", json(&c.hostname)),
        (
            "data_dir",
            json(&std::path::absolute(loaded.data_dir()).unwrap_or_else(|_| loaded.data_dir())),
        ),
    ];
    let mut sections: Vec<(&str, Value)> = vec![
        ("plc", json(&c.plc())),
        ("pds", json(&c.services.pds)),
        ("appview", json(&c.services.appview)),
    ];
    if c.services.relay.is_some() {
        sections.insert(2, ("relay", json(&c.services.relay)));
    }
    sections
        .into_iter()
        .map(|(name, value)| {
            let mut keys = std::collections::BTreeMap::new();
            flatten(&format!("services.{name}"), &value, &mut keys);
            for (key, value) in &top {
                flatten(key, value, &mut keys);
            }
            (name.to_owned(), keys)
        })
        .collect()
}

/// `value` as JSON (`null` if it cannot be: no configuration type fails).
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Every leaf of `value` under `path`, hashed (SHA-256, 16 hex digits).
fn flatten(path: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        leaf => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(leaf.to_string().as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            out.insert(path.to_owned(), hex);
        }
    }
}

/// What `up` would do to one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not running: start it.
    Start,
    /// Running with other settings: restart it (the changed key paths).
    Restart(Vec<String>),
    /// Running but no longer configured: stop it.
    Stop,
    /// Running as configured.
    Leave,
}

/// Compares what runs (`running`) with what the file says (`wanted`), service by service.
pub fn plan(
    running: Option<&up_state::Fingerprints>,
    wanted: &up_state::Fingerprints,
) -> Vec<(String, Step)> {
    let mut out = Vec::new();
    for (name, keys) in wanted {
        let step = match running.and_then(|r| r.get(name)) {
            None => Step::Start,
            Some(old) => {
                let mut changed: Vec<String> = keys
                    .iter()
                    .filter(|(k, v)| old.get(*k) != Some(v))
                    .map(|(k, _)| k.clone())
                    .chain(old.keys().filter(|k| !keys.contains_key(*k)).cloned())
                    .collect();
                changed.sort();
                changed.dedup();
                if changed.is_empty() {
                    Step::Leave
                } else {
                    Step::Restart(changed)
                }
            }
        };
        out.push((name.clone(), step));
    }
    if let Some(running) = running {
        for name in running.keys().filter(|n| !wanted.contains_key(*n)) {
            out.push((name.clone(), Step::Stop));
        }
    }
    out
}

/// Options of `atelier plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// The configuration (default: ./atelier.yaml).
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
}

/// Prints what `atelier up` would do with the file, against the `up` running from it.
pub fn run_plan(args: PlanArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config)?;
    let dir = loaded.data_dir().join("sandbox");
    let running = UpState::read(&dir)?;
    let steps = plan(
        running.as_ref().map(|s| &s.fingerprints),
        &fingerprints(&loaded),
    );
    match &running {
        Some(state) => println!("atelier up is running (pid {}):", state.pid),
        None => println!("atelier up is not running; `atelier up` would start:"),
    }
    print_plan(&steps);
    Ok(())
}

fn print_plan(steps: &[(String, Step)]) {
    for (name, step) in steps {
        match step {
            Step::Start => println!("  {name:<8} start"),
            Step::Leave => println!("  {name:<8} leave (unchanged)"),
            Step::Stop => println!("  {name:<8} stop (no longer configured)"),
            Step::Restart(keys) => println!("  {name:<8} restart ({} changed)", keys.join(", ")),
        }
    }
}

/// `atelier up` while an `up` already runs from the same file: applies the changes (the
/// running one reloads the file on SIGHUP and restarts only the services whose settings
/// changed), or says there is nothing to do. Returns `false` when no `up` is running.
pub async fn reconcile(file: &Path) -> anyhow::Result<bool> {
    let loaded = crate::config::load(file)?;
    let dir = loaded.data_dir().join("sandbox");
    let Some(state) = UpState::read(&dir)? else {
        return Ok(false);
    };
    let wanted = fingerprints(&loaded);
    let steps = plan(Some(&state.fingerprints), &wanted);
    if steps.iter().all(|(_, s)| *s == Step::Leave) {
        println!(
            "atelier up is running (pid {}) as {} says: nothing to do.",
            state.pid,
            file.display()
        );
        return Ok(true);
    }
    println!("atelier up is running (pid {}); applying:", state.pid);
    print_plan(&steps);
    let pid = i32::try_from(state.pid).context("pid out of range")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .with_context(|| format!("signalling atelier up (pid {pid})"))?;
    // The PLC and PDS keep their settings until a restart of `up` (their ports are in
    // DID documents); the rest must match once applied.
    let applied = |now: &UpState| {
        wanted
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "plc" | "pds"))
            .all(|(name, keys)| now.fingerprints.get(name) == Some(keys))
    };
    let deadline = Instant::now() + DOWN_TIMEOUT;
    loop {
        match UpState::read(&dir)? {
            Some(now) if applied(&now) => break,
            Some(_) => {}
            None => anyhow::bail!("atelier up stopped while applying the change; see its output"),
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "atelier up did not apply the change within {DOWN_TIMEOUT:?}; see its output"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Applied.");
    Ok(true)
}

/// The atelier.yaml `up` would run from: `--config`, else ./atelier.yaml when there is no
/// `--data-dir`.
pub fn up_file(config: Option<PathBuf>, data_dir: Option<&Path>) -> Option<PathBuf> {
    if data_dir.is_some() {
        config
    } else {
        config_file(config)
    }
}

/// What `atelier up` runs: from an atelier.yaml (explicit, or ./atelier.yaml when there is
/// no `--data-dir`), or the built-in sandbox.
///
/// # Errors
/// If the file does not load or check, or is not a sandbox profile (a production `up` is
/// not built yet).
pub fn up_args(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    appview_port: Option<u16>,
) -> anyhow::Result<crate::dev::PdsArgs> {
    let loopback = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Some(file) = up_file(config, data_dir.as_deref()) else {
        return Ok(crate::dev::PdsArgs {
            data_dir: Some(
                data_dir.unwrap_or_else(|| atelier_sandbox::Runtime::home().join("sandbox")),
            ),
            plc_port: None,
            pds_port: None,
            appview: Some(loopback(appview_port.unwrap_or(2584))),
            from_config: None,
            ..crate::dev::PdsArgs::default()
        });
    };
    // Absolute, so the running `up` and later commands resolve the same paths.
    let file = std::path::absolute(&file)?;
    let loaded = crate::config::load(&file)?;
    eprintln!("Using {}", file.display());
    let services = &loaded.config.services;
    let plc = loaded.config.plc().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: `atelier up` runs the sandbox profile only so far; for production run each \
             service with `atelier relay --config` / `atelier appview --config` beside your PDS",
            file.display()
        )
    })?;
    let appview = loaded
        .appview_config()
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", file.display()))?;
    let listen = services.appview.listen();
    // The safety filter reads what the AppView indexes.
    let autoflag = appview
        .ingest
        .as_ref()
        .map(|i| crate::moderation::autoflag::AutoflagConfig {
            source: i.source.clone(),
            trusted: i.trusted,
            plc_url: i.plc_url.clone(),
            allow_loopback: i.allow_loopback,
        });
    Ok(crate::dev::PdsArgs {
        config_file: Some(std::path::absolute(&file)?),
        fingerprints: fingerprints(&loaded),
        appview_port_override: appview_port,
        data_dir: Some(loaded.data_dir().join("sandbox")),
        plc_port: Some(plc.port),
        pds_port: Some(services.pds.listen().port()),
        blob_limit_bytes: Some(services.pds.blob_limit_bytes),
        appview: Some(appview_port.map_or(listen, loopback)),
        from_config: Some(Box::new(crate::dev::FromConfig {
            appview,
            relay: loaded.relay_config(),
            console: Some(crate::console::up::ConsoleUp {
                listen: services.admin.listen(),
                admin: crate::admin::AdminServiceConfig::from_loaded(&loaded),
                autoflag,
                // Filled in by `up` once the sandbox runs.
                services: Vec::new(),
            }),
        })),
    })
}

/// Options of `atelier status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON (`{"running", "pid", "startedAt", "services": [...]}`).
    #[arg(long)]
    pub json: bool,
}

/// `atelier account` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountCommand {
    /// Create an account on the running sandbox's PDS (handle NAME.test) and print its
    /// DID, handle, password and an app password to publish with.
    Create(AccountArgs),
}

/// Options of `atelier account create`.
#[derive(Debug, Clone, clap::Args)]
pub struct AccountArgs {
    /// The account's name: its handle is NAME.test.
    pub name: String,
    #[command(flatten)]
    pub target: Target,
}

fn not_running(dir: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "no `atelier up` is running with data in {} (start one with `atelier up`, or pass --data-dir)",
        dir.display()
    )
}

/// Prints each service's state and health; fails (exit 1) unless all are healthy.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let dir = args.target.dir();
    let Some(state) = UpState::read(&dir)? else {
        if args.json {
            println!("{}", json!({"running": false, "services": []}));
        } else {
            println!("atelier up is not running (data: {})", dir.display());
        }
        anyhow::bail!("not running");
    };
    let rows = up_state::check(&state).await;
    let healthy = rows.iter().all(|r| r.health == "healthy");
    if args.json {
        let body = json!({
            "running": true,
            "pid": state.pid,
            "startedAt": state.started_at,
            "services": rows,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "atelier up: running (pid {}, since {})",
            state.pid, state.started_at
        );
        println!(
            "{:<10} {:<9} {:<28} {:<8} {:<9} URL",
            "SERVICE", "STATE", "HEALTH", "PID", "RESTARTS"
        );
        for r in &rows {
            let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            println!(
                "{:<10} {:<9} {:<28} {:<8} {:<9} {}",
                r.name, r.state, r.health, pid, r.restarts, r.url
            );
        }
    }
    if !healthy {
        anyhow::bail!("a service is unhealthy");
    }
    Ok(())
}

/// How long `down` waits for `up` to stop before giving up.
const DOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops the running `atelier up` (SIGTERM, then waits for it to exit).
pub async fn down(target: Target) -> anyhow::Result<()> {
    let dir = target.dir();
    let Some(state) = UpState::read(&dir)? else {
        println!("atelier up is not running (data: {})", dir.display());
        return Ok(());
    };
    let pid = i32::try_from(state.pid).context("pid out of range")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .with_context(|| format!("signalling atelier up (pid {pid})"))?;
    eprintln!("Stopping atelier up (pid {pid})...");
    let deadline = Instant::now() + DOWN_TIMEOUT;
    while up_state::alive(state.pid) {
        if Instant::now() > deadline {
            anyhow::bail!(
                "atelier up (pid {pid}) did not stop within {DOWN_TIMEOUT:?}; see its logs in {}/logs",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Stopped.");
    Ok(())
}

/// Runs an `atelier account` subcommand.
pub async fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create(args) => create_account(args).await,
    }
}

async fn create_account(args: AccountArgs) -> anyhow::Result<()> {
    let dir = args.target.dir();
    let state = UpState::read(&dir)?.ok_or_else(|| not_running(&dir))?;
    let pds = state
        .url("pds")
        .context("the running atelier up has no PDS")?
        .trim_end_matches('/')
        .to_owned();
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    let password = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    let handle = format!("{}.test", args.name.to_ascii_lowercase());
    let http = reqwest::Client::new();
    let session = xrpc(
        &http,
        &pds,
        "com.atproto.server.createAccount",
        None,
        &json!({"handle": handle, "email": format!("{}@example.com", args.name), "password": password}),
    )
    .await?;
    let access = session["accessJwt"].as_str().unwrap_or_default().to_owned();
    let app = xrpc(
        &http,
        &pds,
        "com.atproto.server.createAppPassword",
        Some(&access),
        &json!({"name": "atelier"}),
    )
    .await?;
    println!("Account created on {pds}");
    println!(
        "  handle        {}",
        session["handle"].as_str().unwrap_or(&handle)
    );
    println!("  did           {}", session["did"].as_str().unwrap_or("?"));
    println!("  password      {password}");
    println!(
        "  app password  {}",
        app["password"].as_str().unwrap_or("?")
    );
    println!(
        "Sign in with the handle and the app password to publish (docs/atproto-integration.md)."
    );
    Ok(())
}

/// POSTs an XRPC procedure; an XRPC error becomes an error naming the method.
async fn xrpc(
    http: &reqwest::Client,
    pds: &str,
    method: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(format!("{pds}/xrpc/{method}")).json(body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} on {pds}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "{method}: {} ({})",
            body["message"].as_str().unwrap_or("no message"),
            body["error"].as_str().unwrap_or(status.as_str())
        );
    }
    Ok(body)
}

/// Options of `atelier logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// `plc` or `pds` (default: both).
    pub service: Option<String>,
    /// Keep printing new lines as they are written (until Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print first.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub lines: usize,
    #[command(flatten)]
    pub target: Target,
}

/// The services whose logs `up` keeps under `DATA_DIR/logs/`.
const LOGGED: [&str; 2] = ["plc", "pds"];

/// Prints the last lines of the services' logs (each line prefixed by its service when
/// there are several), then with `--follow` what they write next.
pub async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let dir = args.target.dir().join("logs");
    let services: Vec<&str> = match args.service.as_deref() {
        None => LOGGED.to_vec(),
        Some(s) if LOGGED.contains(&s) => vec![s],
        Some(other) => anyhow::bail!(
            "no logs for `{other}`: the services with log files are {} (the AppView logs to atelier up's own output)",
            LOGGED.join(", ")
        ),
    };
    let prefix = services.len() > 1;
    let mut offsets = Vec::new();
    for service in &services {
        let path = dir.join(format!("{service}.log"));
        let text = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (has `atelier up` run with this data directory?)",
                path.display()
            )
        })?;
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(args.lines)..] {
            print_line(prefix, service, line);
        }
        offsets.push((path, text.len() as u64));
    }
    if !args.follow {
        return Ok(());
    }
    let mut stop = std::pin::pin!(crate::relay_cmd::interrupted()?);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tick.tick() => {}
        }
        for ((path, offset), service) in offsets.iter_mut().zip(&services) {
            let Ok(bytes) = std::fs::read(path.as_path()) else {
                continue;
            };
            let len = bytes.len() as u64;
            if len < *offset {
                // Rotated or truncated: start over.
                *offset = 0;
            }
            let start = usize::try_from(*offset).unwrap_or(0);
            let Some(end) = bytes[start..].iter().rposition(|b| *b == b'\n') else {
                continue;
            };
            let fresh = String::from_utf8_lossy(&bytes[start..start + end + 1]);
            for line in fresh.lines() {
                print_line(prefix, service, line);
            }
            *offset = (start + end + 1) as u64;
        }
    }
}

fn print_line(prefix: bool, service: &str, line: &str) {
    if prefix {
        println!("{service:<4} | {line}");
    } else {
        println!("{line}");
    }
}
