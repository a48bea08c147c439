//! `atelier appview --config FILE` runs the AC AppView service
//! ([`atelier_appview::service`]) from the `services.appview` section of `atelier.yaml`:
//! ingest from its source into the index, and the XRPC API.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

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
