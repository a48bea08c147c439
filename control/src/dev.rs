//! `atelier dev pds` (and today's `atelier up`): the sandbox network in the foreground;
//! `up` also runs the AppView, indexing the sandbox PDS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use atelier_sandbox::{Sandbox, SandboxOptions};
use tokio::signal::unix::{SignalKind, signal};

/// Options of `atelier dev pds`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PdsArgs {
    /// Keep data in DIR (reused on the next start). Default: a temporary directory that is
    /// deleted on exit.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port for the PLC directory on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub plc_port: Option<u16>,
    /// Port for the PDS on 127.0.0.1 (default: any free port).
    #[arg(long, value_name = "PORT")]
    pub pds_port: Option<u16>,
    /// Also run the AppView here, following the sandbox PDS (`atelier up`).
    #[arg(skip)]
    pub appview: Option<SocketAddr>,
    /// `atelier up` from an atelier.yaml: the AppView's configuration, and the relay's.
    #[arg(skip)]
    pub from_config: Option<Box<FromConfig>>,
    /// The atelier.yaml `up` runs from (reloaded on SIGHUP).
    #[arg(skip)]
    pub config_file: Option<PathBuf>,
    /// The settings each service runs with, hashed (see `atelier plan`).
    #[arg(skip)]
    pub fingerprints: crate::up_state::Fingerprints,
    /// `--appview-port`, which overrides the file's AppView port on reloads too.
    #[arg(skip)]
    pub appview_port_override: Option<u16>,
    /// The PDS's blob upload limit (`services.pds.blob_limit_bytes`; default: the
    /// sandbox's).
    #[arg(skip)]
    pub blob_limit_bytes: Option<u64>,
}

/// The services an `atelier.yaml` adds to the sandbox (its `services.appview` and
/// `services.relay` sections).
#[derive(Debug, Clone)]
pub struct FromConfig {
    /// The AppView, as the file configures it (store, source).
    pub appview: atelier_appview::service::AppViewConfig,
    /// The relay, if the file has one. With no upstreams it follows the sandbox PDS.
    pub relay: Option<atelier_relay::service::RelayConfig>,
    /// The admin console with Atelier's labeler (`services.admin`).
    pub console: Option<crate::console::up::ConsoleUp>,
}

impl FromConfig {
    /// Points the AppView and the relay at the labeler `did` (its labels and takedowns
    /// apply to what they serve), unless the file already lists it, and sends the
    /// AppView's signed-in users' reports to it at `url` (asking for the scope that
    /// needs).
    fn follow_labeler(&mut self, did: &str, url: &str) {
        if let Some(oauth) = &mut self.appview.oauth {
            let reports = atelier_appview::service::ReportsConfig {
                labeler_did: did.to_owned(),
                labeler_url: url.to_owned(),
            };
            let scope = reports.required_scope();
            if !oauth.scope.split(' ').any(|s| s == scope) {
                oauth.scope.push(' ');
                oauth.scope.push_str(&scope);
            }
            self.appview.reports = Some(reports);
        }
        let sources = &mut self.appview.labels.sources;
        if !sources.iter().any(|s| s.did == did) {
            sources.push(atelier_appview::labels::LabelSource {
                did: did.to_owned(),
                url: None,
            });
        }
        if let Some(relay) = &mut self.relay
            && !relay.labelers.iter().any(|l| l.did == did)
        {
            relay.labelers.push(atelier_relay::service::LabelerConfig {
                did: did.to_owned(),
                url: None,
            });
        }
    }
}

/// Where the dashboard finds each service `up` runs.
fn dashboard_probes(
    sandbox: &Sandbox,
    from_config: Option<&FromConfig>,
    appview: Option<SocketAddr>,
) -> Vec<crate::console::dashboard::ServiceProbe> {
    use crate::console::up::probe;
    let mut probes = vec![
        probe("plc", sandbox.plc_url(), "/_health"),
        probe("pds", sandbox.pds_url(), "/xrpc/_health"),
    ];
    if let Some(relay) = from_config.and_then(|c| c.relay.as_ref()) {
        let url = format!("http://{}", crate::config::reachable(relay.listen));
        probes.push(probe("relay", &url, "/xrpc/_health"));
    }
    if let Some(addr) = appview {
        let url = format!("http://{}", crate::config::reachable(addr));
        probes.push(probe("appview", &url, "/xrpc/_health"));
    }
    probes
}

/// The relay running beside the sandbox.
struct Relay {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_relay::service::RelayError>>,
}

/// Starts the relay on its configured address, following the sandbox PDS when it has no
/// upstreams, with loopback allowed and the sandbox PLC.
async fn start_relay(
    sandbox: &Sandbox,
    mut config: atelier_relay::service::RelayConfig,
) -> anyhow::Result<Relay> {
    if config.upstreams.is_empty() {
        config
            .upstreams
            .push(atelier_relay::service::UpstreamConfig {
                url: sandbox.subscribe_repos_url(None),
                kind: atelier_relay::service::UpstreamKind::Pds,
                trusted: false,
            });
    }
    config.allow_loopback = true;
    config.plc_url = sandbox.plc_url().to_owned();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (services.relay.listen)", config.listen))?;
    let addr = listener.local_addr().context("reading the relay address")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(atelier_relay::service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    Ok(Relay { addr, stop, task })
}

/// The AppView running beside the sandbox.
struct AppView {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::AppViewError>>,
}

/// Starts the AppView on `listen` (or any free port if it is taken): as `configured` says,
/// or by default indexing the sandbox PDS into `DATA/appview/index.sqlite`; either way
/// from the source's first event.
async fn start_appview(
    sandbox: &Sandbox,
    listen: SocketAddr,
    configured: Option<atelier_appview::service::AppViewConfig>,
) -> anyhow::Result<AppView> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            eprintln!(
                "Port {} is taken; the AppView takes a free one.",
                listen.port()
            );
            tokio::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))
                .await
                .context("listening for the AppView")?
        }
        Err(e) => return Err(e).with_context(|| format!("listening on {listen} (AppView)")),
    };
    let addr = listener
        .local_addr()
        .context("reading the AppView address")?;
    let config = match configured {
        Some(mut config) => {
            if let Some(ingest) = &mut config.ingest {
                ingest.plc_url = sandbox.plc_url().to_owned();
                ingest.allow_loopback = true;
                ingest.initial_cursor = Some(0);
            }
            config
        }
        None => {
            let mut ingest =
                atelier_appview::ingest::IngestConfig::new(sandbox.subscribe_repos_url(None));
            ingest.plc_url = sandbox.plc_url().to_owned();
            ingest.allow_loopback = true;
            ingest.initial_cursor = Some(0);
            atelier_appview::service::AppViewConfig::new(
                atelier_appview::store::StoreLocation::Sqlite(
                    sandbox.data_dir().join("appview").join("index.sqlite"),
                ),
                Some(ingest),
            )
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(atelier_appview::service::run(
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(AppView { addr, stop, task })
}

/// What `atelier up` writes for `status`, `down`, `logs`, `plan` and `account create`.
fn up_state(
    sandbox: &Sandbox,
    appview: SocketAddr,
    relay: Option<SocketAddr>,
    console: Option<SocketAddr>,
    started_at: &str,
    args: &PdsArgs,
) -> crate::up_state::UpState {
    let [plc, pds] = sandbox.services();
    let child = |name: &str, url: &str, health: &str, (_, pid, restarts): (&str, u32, u32)| {
        crate::up_state::ServiceUrl {
            name: name.into(),
            url: url.to_owned(),
            health: health.into(),
            pid: Some(pid),
            restarts,
        }
    };
    let in_process = |name: &str, addr: SocketAddr| crate::up_state::ServiceUrl {
        name: name.into(),
        url: format!("http://{addr}"),
        health: "/xrpc/_health".into(),
        pid: None,
        restarts: 0,
    };
    let mut services = vec![
        child("plc", sandbox.plc_url(), "/_health", plc),
        child("pds", sandbox.pds_url(), "/xrpc/_health", pds),
    ];
    services.extend(relay.map(|addr| in_process("relay", addr)));
    services.push(in_process("appview", appview));
    services.extend(console.map(|addr| in_process("admin", addr)));
    crate::up_state::UpState {
        pid: std::process::id(),
        services,
        started_at: started_at.to_owned(),
        config: args.config_file.clone(),
        fingerprints: args.fingerprints.clone(),
    }
}

/// Takes `DIR/up.lock` (an exclusive `flock`, released when the process ends however it
/// ends), or fails naming the `up` that holds it.
fn lock(dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = dir.join("up.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        let holder = crate::up_state::UpState::read(dir)
            .ok()
            .flatten()
            .map_or_else(String::new, |s| format!(" (pid {})", s.pid));
        anyhow::anyhow!(
            "another atelier up{holder} is running with data in {}; stop it with `atelier down`",
            dir.display()
        )
    })
}

/// Reloads `args.config_file` and restarts only the in-process services whose settings
/// changed (the relay, the AppView); changes to the PLC or PDS are reported, not applied
/// (their ports are in DID documents: they take `atelier down` and `atelier up`).
async fn reload(
    sandbox: &Sandbox,
    args: &mut PdsArgs,
    relay: &mut Option<Relay>,
    appview: &mut Option<AppView>,
    labeler: Option<(&str, &str)>,
) -> anyhow::Result<()> {
    use crate::up_cmd::Step;
    let file = args
        .config_file
        .clone()
        .context("this atelier up does not run from an atelier.yaml")?;
    let new = crate::up_cmd::up_args(Some(file), None, args.appview_port_override)?;
    let steps = crate::up_cmd::plan(Some(&args.fingerprints), &new.fingerprints);
    let mut from = new.from_config.clone().context("no configuration")?;
    if let Some((did, url)) = labeler {
        from.follow_labeler(did, url);
    }
    for (name, step) in steps {
        if step == Step::Leave {
            continue;
        }
        match name.as_str() {
            "relay" => {
                if let Some(old) = relay.take() {
                    let _ = old.stop.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(30), old.task).await;
                }
                if let Some(config) = from.relay.clone() {
                    *relay = Some(start_relay(sandbox, config).await?);
                }
                eprintln!("Reload: relay {}", describe(&step));
            }
            "appview" => {
                if let Some(old) = appview.take() {
                    let _ = old.stop.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(30), old.task).await;
                }
                let listen = new.appview.context("no AppView address")?;
                *appview = Some(start_appview(sandbox, listen, Some(from.appview.clone())).await?);
                eprintln!("Reload: appview {}", describe(&step));
            }
            other => {
                eprintln!(
                    "Reload: {other} {}: not applied; it takes `atelier down` and `atelier up`",
                    describe(&step)
                );
                // Keep reporting it as running with its old settings.
                if let Some(old) = args.fingerprints.get(other).cloned() {
                    args.fingerprints.insert(other.to_owned(), old);
                }
                continue;
            }
        }
        match new.fingerprints.get(&name) {
            Some(keys) => args.fingerprints.insert(name.clone(), keys.clone()),
            None => args.fingerprints.remove(&name),
        };
    }
    Ok(())
}

fn describe(step: &crate::up_cmd::Step) -> String {
    match step {
        crate::up_cmd::Step::Restart(keys) => format!("restarted ({} changed)", keys.join(", ")),
        crate::up_cmd::Step::Start => "started".to_owned(),
        crate::up_cmd::Step::Stop => "stopped".to_owned(),
        crate::up_cmd::Step::Leave => "unchanged".to_owned(),
    }
}

/// Starts the sandbox, prints its URLs, and runs until Ctrl-C/SIGTERM or until a service
/// dies (then exits with an error and the service's log).
pub async fn run_pds(args: PdsArgs) -> anyhow::Result<()> {
    // One `up` per data directory: held until this function returns.
    let _lock = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Some(lock(dir)?)
        }
        None => None,
    };
    eprintln!("Starting the sandbox network (PLC + PDS) on loopback...");
    let mut sandbox = Sandbox::start_with(SandboxOptions {
        data_dir: args.data_dir.clone(),
        plc_port: args.plc_port,
        pds_port: args.pds_port,
        runtime: None,
        blob_limit_bytes: args.blob_limit_bytes,
    })
    .await?;
    let mut from_config = args.from_config.clone();
    let console = match from_config.as_ref().and_then(|c| c.console.clone()) {
        Some(mut setup) => {
            setup.services = dashboard_probes(&sandbox, from_config.as_deref(), args.appview);
            let running = crate::console::up::start(&setup, &sandbox).await?;
            if let Some(c) = from_config.as_mut() {
                c.follow_labeler(&running.labeler_did, &running.url());
            }
            Some(running)
        }
        None => None,
    };
    let mut relay = match from_config.as_ref().and_then(|c| c.relay.clone()) {
        Some(config) => Some(start_relay(&sandbox, config).await?),
        None => None,
    };
    let mut appview = match args.appview {
        Some(listen) => {
            Some(start_appview(&sandbox, listen, from_config.map(|c| c.appview.clone())).await?)
        }
        None => None,
    };
    let mut args = args;

    let data = sandbox.data_dir().display().to_string();
    println!("Sandbox network is up.");
    println!("  PLC       {}", sandbox.plc_url());
    println!("  PDS       {}", sandbox.pds_url());
    println!("  firehose  {}", sandbox.subscribe_repos_url(None));
    if let Some(r) = &relay {
        println!(
            "  relay     ws://{}/xrpc/com.atproto.sync.subscribeRepos",
            r.addr
        );
    }
    if let Some(a) = &appview {
        println!(
            "  AppView   http://{}/xrpc/computer.aesthetic.feed.getAtmosphere",
            a.addr
        );
    }
    if let Some(c) = &console {
        println!(
            "  console   http://{} (moderators; labeler {})",
            c.addr, c.labeler_did
        );
    }
    println!(
        "  data      {data}{}",
        if args.data_dir.is_some() {
            ""
        } else {
            " (temporary)"
        }
    );
    println!("  admin     user `admin`, password in {data}/secrets/pds_admin_password");
    println!("  logs      {data}/logs/");
    println!(
        "Create an account: curl -X POST {}/xrpc/com.atproto.server.createAccount -H 'content-type: application/json' -d '{{\"handle\":\"alice.test\",\"email\":\"alice@example.com\",\"password\":\"...\"}}'",
        sandbox.pds_url()
    );
    println!("Press Ctrl-C to stop.");
    // `atelier up` tells `status`, `down` and `account create` where it is.
    let started_at =
        atelier_appview::relay::service::rfc3339(atelier_appview::relay::jetstream::now_us());
    let state_dir = match (&appview, &args.data_dir) {
        (Some(a), Some(dir)) => {
            up_state(
                &sandbox,
                a.addr,
                relay.as_ref().map(|r| r.addr),
                console.as_ref().map(|c| c.addr),
                &started_at,
                &args,
            )
            .write(dir)?;
            Some(dir.clone())
        }
        _ => None,
    };

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let died = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break None,
            _ = term.recv() => break None,
            _ = hup.recv() => {
                // `atelier up` again, with a changed file: apply it.
                let url = console.as_ref().map(crate::console::up::RunningConsole::url);
                let labeler = console
                    .as_ref()
                    .zip(url.as_deref())
                    .map(|(c, url)| (c.labeler_did.as_str(), url));
                if let Err(e) = reload(&sandbox, &mut args, &mut relay, &mut appview, labeler).await {
                    eprintln!("Reload: {e:#}");
                }
                if let (Some(dir), Some(a)) = (&state_dir, &appview) {
                    up_state(&sandbox, a.addr, relay.as_ref().map(|r| r.addr), console.as_ref().map(|c| c.addr), &started_at, &args)
                        .write(dir)?;
                }
            }
            _ = check.tick() => {
                // A service that died is started again (with backoff); a crash loop ends
                // `up` with the service's log.
                match sandbox.supervise().await {
                    Ok(restarted) if !restarted.is_empty() => {
                        eprintln!("Restarted: {}.", restarted.join(", "));
                        if let (Some(dir), Some(a)) = (&state_dir, &appview) {
                            up_state(&sandbox, a.addr, relay.as_ref().map(|r| r.addr), console.as_ref().map(|c| c.addr), &started_at, &args)
                                .write(dir)?;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => break Some(e.to_string()),
                }
                if appview.as_ref().is_some_and(|a| a.task.is_finished()) {
                    break Some("the AppView stopped".to_owned());
                }
                if relay.as_ref().is_some_and(|r| r.task.is_finished()) {
                    break Some("the relay stopped".to_owned());
                }
                if console.as_ref().is_some_and(|c| c.task.is_finished()) {
                    break Some("the admin console stopped".to_owned());
                }
            }
        }
    };
    eprintln!("Stopping...");
    if let Some(dir) = &state_dir {
        crate::up_state::UpState::remove(dir);
    }
    let appview_result = match appview {
        Some(a) => {
            let _ = a.stop.send(());
            Some(a.task.await)
        }
        None => None,
    };
    let relay_result = match relay {
        Some(r) => {
            let _ = r.stop.send(());
            Some(r.task.await)
        }
        None => None,
    };
    let console_result = match console {
        Some(c) => {
            let _ = c.stop.send(());
            Some(c.task.await)
        }
        None => None,
    };
    if let Some(what) = died {
        let logs = sandbox.logs(40);
        drop(sandbox);
        let cause = match (appview_result, relay_result, console_result) {
            (Some(Ok(Err(e))), _, _) => format!(": {e}"),
            (_, Some(Ok(Err(e))), _) => format!(": {e}"),
            (_, _, Some(Ok(Err(e)))) => format!(": {e}"),
            _ => String::new(),
        };
        anyhow::bail!("{what}{cause}\n{logs}");
    }
    sandbox.shutdown().await;
    if let Some(result) = appview_result {
        result.context("the AppView task")??;
    }
    if let Some(result) = relay_result {
        result.context("the relay task")??;
    }
    if let Some(result) = console_result {
        result.context("the admin console task")??;
    }
    eprintln!("Stopped.");
    Ok(())
}
