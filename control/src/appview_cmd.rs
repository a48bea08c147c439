//! `atelier appview --config FILE` runs the AC AppView service
//! ([`atelier_appview::service`]) from the `services.appview` section of `atelier.yaml`:
//! ingest from its source into the index, and the XRPC API.
//!
//! `atelier appview backfill` indexes whole repositories into the same index
//! ([`atelier_appview::backfill`]): given DIDs, or every repository a PDS or relay lists
//! (by default the host the AppView ingests from), with a progress line and ETA;
//! interrupted, it resumes where it stopped when run again.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use atelier_appview::backfill::{self, BackfillConfig, BackfillSource, Progress};
use atelier_appview::store::{AnyStore, Store};

/// Options of `atelier appview`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The configuration file; the AppView runs from its `services.appview` section.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Listen here instead of `services.appview.bind`/`port` (port 0: any free port; the
    /// chosen address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Runs the AppView until Ctrl-C/SIGTERM, then commits the last ingest batch and stops.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config)?;
    // Sign-in seals its sessions with `DATA_DIR/secrets/oauth_token_key`: made if missing.
    if loaded.config.services.appview.signin.enabled {
        crate::config::secrets::ensure_secrets(&loaded.data_dir())
            .with_context(|| format!("the secrets in {}", loaded.data_dir().display()))?;
    }
    let config = loaded
        .appview_config()
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", args.config.display()))?;
    let listen = args
        .listen
        .unwrap_or_else(|| loaded.config.services.appview.listen());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (services.appview.bind/port)"))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    println!("AppView listening on {addr}");
    println!("  feed     http://{addr}/xrpc/computer.aesthetic.feed.getAtmosphere");
    println!("  metrics  http://{addr}/metrics");
    if let Some(ingest) = &config.ingest {
        let trust = if ingest.trusted { " (trusted)" } else { "" };
        println!("  source   {}{trust}", ingest.source);
    }
    println!("  index    {}", config.store.describe());
    println!("Press Ctrl-C to stop.");
    atelier_appview::service::run(config, listener, crate::relay_cmd::interrupted()?).await?;
    eprintln!("Stopped.");
    Ok(())
}

/// `atelier appview` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AppviewCommand {
    /// Index whole repositories (`getRepo`, verified) into the AppView's index: the given
    /// `--did`s, or every active repository that `--host` lists (default: the host the
    /// AppView ingests from). Safe beside a running AppView; run again to resume.
    Backfill(BackfillArgs),
}

/// Options of `atelier appview backfill`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// The configuration file (its `services.appview` store and identity settings).
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Backfill this account (repeatable).
    #[arg(long = "did", value_name = "DID", conflicts_with = "host")]
    pub dids: Vec<String>,
    /// Backfill every active repository this PDS or relay lists (`https://host`).
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,
    /// Repositories fetched at once from one PDS.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub per_host: usize,
}

/// Runs an `atelier appview` subcommand.
pub async fn run(command: AppviewCommand) -> anyhow::Result<()> {
    match command {
        AppviewCommand::Backfill(args) => run_backfill(args).await,
    }
}

async fn run_backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config)?;
    let appview = loaded
        .appview_config()
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", args.config.display()))?;
    let ingest = appview
        .ingest
        .clone()
        .context("services.appview has no source to take identity settings from")?;
    let source = if !args.dids.is_empty() {
        BackfillSource::Dids(args.dids.clone())
    } else {
        let host = match &args.host {
            Some(host) => host.clone(),
            None => http_base(&ingest.source).with_context(|| {
                format!("cannot tell the host of {}; give --host", ingest.source)
            })?,
        };
        BackfillSource::Host(host)
    };
    let mut config = BackfillConfig::new(source.clone());
    config.plc_url = ingest.plc_url.clone();
    config.allow_loopback = ingest.allow_loopback;
    config.per_host = args.per_host.max(1);
    let store = std::sync::Arc::new(
        AnyStore::open(&appview.store)
            .await
            .with_context(|| format!("opening the index ({})", appview.store.describe()))?,
    );
    match &source {
        BackfillSource::Dids(dids) => eprintln!("Backfilling {} account(s)", dids.len()),
        BackfillSource::Host(host) => eprintln!("Backfilling every repository {host} lists"),
    }
    eprintln!("  index    {}", appview.store.describe());
    let done_before = store.backfill_counts().await?.done;
    let (tx, rx) = tokio::sync::watch::channel(Progress::default());
    let started = Instant::now();
    let reporter = tokio::spawn(report(rx, started, done_before));
    let result = backfill::run(
        &config,
        std::sync::Arc::clone(&store),
        tx,
        crate::relay_cmd::interrupted()?,
    )
    .await;
    let _ = reporter.await;
    store.close().await;
    let progress = result?;
    let finished = progress.done + progress.failed >= progress.total;
    eprintln!(
        "{}: {}",
        if finished { "Done" } else { "Stopped" },
        backfill::describe(&progress, started, done_before)
    );
    if !finished {
        eprintln!("Run the same command again to resume.");
    } else if progress.failed > 0 {
        eprintln!(
            "{} repositories failed (see the log); running again retries them.",
            progress.failed
        );
    }
    Ok(())
}

/// Prints progress until the run ends: one rewritten line on a terminal, else a line
/// every 5 s.
async fn report(
    mut rx: tokio::sync::watch::Receiver<Progress>,
    started: Instant,
    done_before: u64,
) {
    let tty = std::io::stderr().is_terminal();
    let mut last_print = Instant::now();
    while rx.changed().await.is_ok() {
        let p = *rx.borrow_and_update();
        if tty {
            eprint!(
                "\r\x1b[2K  {}",
                backfill::describe(&p, started, done_before)
            );
        } else if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!("  {}", backfill::describe(&p, started, done_before));
            last_print = Instant::now();
        }
    }
    if tty {
        eprintln!();
    }
}

/// `http(s)://host[:port]` of a `ws(s)://` stream URL.
fn http_base(stream_url: &str) -> Option<String> {
    let url = url::Url::parse(stream_url).ok()?;
    let scheme = match url.scheme() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        _ => return None,
    };
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}
