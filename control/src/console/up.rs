//! The console as `atelier up` runs it in the sandbox profile: the labeler's identity made
//! on the bundled PDS and local PLC, then the console service on its configured address.
//!
//! The labeler is an account (`labeler.test`) on the bundled PDS, so it has a repository
//! for its declaration record and a `did:plc` whose document the PDS's rotation key may
//! update; [`identity`](crate::labeler::identity) adds the `#atproto_label` key (the
//! `labeler_key` secret) and the `#atproto_labeler` endpoint (the console's URL), and the
//! declaration is written when it differs from AC's label values. All of it is idempotent,
//! so it runs at every start. The relay and the AppView are then pointed at the labeler's
//! DID, so its takedowns and labels apply to what they serve.

use std::net::SocketAddr;

use anyhow::Context;
use atelier_sandbox::Sandbox;
use serde_json::Value;

use super::dashboard::ServiceProbe;
use super::service::{ConsoleConfig, ConsoleError};
use crate::admin::AdminServiceConfig;
use crate::config::secrets::ensure_secrets;
use crate::labeler::SigningKey;
use crate::labeler::identity::{
    AC_LABEL_VALUES, DECLARATION, declaration, ensure_labeler_service, publish_declaration,
    sign_in_or_create,
};

/// The labeler account's handle in the sandbox.
pub const LABELER_HANDLE: &str = "labeler.test";

/// What `up` needs to run the console.
#[derive(Debug, Clone)]
pub struct ConsoleUp {
    /// Where the console listens (`services.admin`).
    pub listen: SocketAddr,
    /// The console's settings, from `atelier.yaml`.
    pub admin: AdminServiceConfig,
    /// The stream auto-flags read (the AppView's source), if any.
    pub autoflag: Option<crate::moderation::autoflag::AutoflagConfig>,
    /// The services the dashboard shows (`up` fills in where they run).
    pub services: Vec<ServiceProbe>,
}

/// The dashboard's probe of the service `name` at `url`.
pub fn probe(name: &str, url: &str, health: &str) -> ServiceProbe {
    ServiceProbe {
        name: name.to_owned(),
        url: url.trim_end_matches('/').to_owned(),
        health: health.to_owned(),
    }
}

/// The console running beside the sandbox.
#[derive(Debug)]
pub struct RunningConsole {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The labeler's DID.
    pub labeler_did: String,
    /// Stops it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The service task.
    pub task: tokio::task::JoinHandle<Result<(), ConsoleError>>,
}

impl RunningConsole {
    /// The console's base URL (where the labeler's XRPC methods are).
    pub fn url(&self) -> String {
        format!("http://{}", crate::config::reachable(self.addr))
    }
}

/// Makes the labeler's identity on `sandbox` and starts the console.
///
/// # Errors
/// When the address is taken, a secret cannot be read, or the PDS or PLC refuses.
pub async fn start(setup: &ConsoleUp, sandbox: &Sandbox) -> anyhow::Result<RunningConsole> {
    let data_dir = &setup.admin.data_dir;
    let secrets = ensure_secrets(data_dir)?;
    let listener = tokio::net::TcpListener::bind(setup.listen)
        .await
        .with_context(|| format!("listening on {} (services.admin)", setup.listen))?;
    let addr = crate::config::reachable(
        listener
            .local_addr()
            .context("reading the console address")?,
    );
    let endpoint = format!("http://{addr}");

    let http = reqwest::Client::new();
    let password = secrets.read("labeler_account_password")?;
    let session = sign_in_or_create(
        &http,
        sandbox.pds_url(),
        LABELER_HANDLE,
        "labeler@example.com",
        password.expose(),
    )
    .await?;
    let key_file = secrets.path("labeler_key");
    let key = SigningKey::load(&key_file)?;
    let rotation = SigningKey::from_hex(sandbox.plc_rotation_key_hex())
        .context("the sandbox PDS's PLC rotation key is not a k256 key")?;
    ensure_labeler_service(
        &http,
        sandbox.plc_url(),
        &session.did,
        &rotation,
        &key.did_key(),
        &endpoint,
    )
    .await?;
    let now = atelier_relay::service::rfc3339(atelier_relay::jetstream::now_us());
    if !declared(&http, sandbox.pds_url(), &session.did).await {
        publish_declaration(
            &http,
            sandbox.pds_url(),
            &session.access_jwt,
            &session.did,
            AC_LABEL_VALUES,
            &now,
        )
        .await?;
    }

    write_labeler_file(data_dir, &session.did, &endpoint)?;
    let config = ConsoleConfig {
        admin: setup.admin.clone(),
        labeler_did: session.did.clone(),
        labeler_key_file: key_file,
        plc_url: sandbox.plc_url().to_owned(),
        allow_loopback: true,
        autoflag: setup.autoflag.clone(),
        services: setup.services.clone(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(super::run(config, listener, async move {
        let _ = stopped.await;
    }));
    Ok(RunningConsole {
        addr,
        labeler_did: session.did,
        stop,
        task,
    })
}

/// `DATA_DIR/admin/labeler.json`: the labeler's DID and endpoint, as `up` made them, for
/// `atelier admin serve` to run the same console later.
pub fn labeler_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    super::admin_dir(data_dir).join("labeler.json")
}

fn write_labeler_file(data_dir: &std::path::Path, did: &str, endpoint: &str) -> anyhow::Result<()> {
    let path = labeler_file(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let body = serde_json::json!({"did": did, "endpoint": endpoint});
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, format!("{body:#}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The labeler's DID recorded by `up` in `data_dir`, if any.
pub fn recorded_labeler(data_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(labeler_file(data_dir)).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value.get("did")?.as_str().map(str::to_owned)
}

/// Whether the labeler's repository already holds the declaration of AC's label values.
async fn declared(http: &reqwest::Client, pds_url: &str, did: &str) -> bool {
    let url = format!(
        "{}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={DECLARATION}&rkey=self",
        pds_url.trim_end_matches('/')
    );
    let Ok(response) = http.get(url).send().await else {
        return false;
    };
    let Ok(answer) = response.json::<Value>().await else {
        return false;
    };
    let wanted = declaration(AC_LABEL_VALUES, "");
    answer.pointer("/value/policies") == wanted.get("policies")
}
