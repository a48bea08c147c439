//! `atelier relay --config FILE` runs the AC-namespace relay service
//! ([`atelier_relay::service`]) from the `services.relay` section of `atelier.yaml`.
//!
//! `atelier relay replay` and `atelier relay record`: recorded firehose frames on the
//! command line.
//!
//! `replay` serves a frame file (the firehose corpus format, zstd of
//! `[u32 LE length][frame]...`) as a real `com.atproto.sync.subscribeRepos` WebSocket;
//! `record` follows a live `subscribeRepos` URL and writes such a file. Both run until
//! Ctrl-C/SIGTERM (`record` also stops after `--count` frames).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use atelier_relay::sync::client::ClientConfig;
use atelier_relay::sync::replay::{
    self, FrameFile, RecordConfig, RecordProgress, ReplayConfig, subscribe_repos_url,
};
use clap::Subcommand;
use tokio::signal::unix::{SignalKind, signal};

/// `atelier relay ...`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Serve a recorded frame file as a com.atproto.sync.subscribeRepos WebSocket (with
    /// `?cursor=N`) and /xrpc/_health, until Ctrl-C.
    Replay(ReplayArgs),
    /// Record frames from a subscribeRepos WebSocket into a frame file, until --count
    /// frames or Ctrl-C. Reconnects (from the last seq) when the connection drops.
    Record(RecordArgs),
}

/// Options of `atelier relay` without a subcommand: run the relay service.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The configuration file; the relay runs from its `services.relay` section.
    #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_FILE)]
    pub config: PathBuf,
    /// Listen here instead of `services.relay.listen` (port 0: any free port; the chosen
    /// address is printed).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Runs the relay service until Ctrl-C/SIGTERM, then drains and checkpoints.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loaded = crate::config::load(&args.config)?;
    let Some(mut config) = loaded.relay_config() else {
        anyhow::bail!(
            "{}: services.relay is not configured (add a `relay:` section under `services:`; \
             `atelier init` writes one with every key)",
            args.config.display()
        );
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (services.relay.listen)", config.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    println!("Relay listening on {addr}");
    println!("  subscribeRepos  ws://{addr}/xrpc/com.atproto.sync.subscribeRepos");
    println!("  jetstream       ws://{addr}/subscribe");
    println!("  metrics         http://{addr}/metrics");
    println!("  data            {}", config.data_dir.display());
    println!("Press Ctrl-C to stop.");
    atelier_relay::service::run(config, listener, interrupted()?).await?;
    eprintln!("Stopped.");
    Ok(())
}

/// Options of `atelier relay replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// The frame file: zstd of repeated `[u32 little-endian length][frame]`, as written by
    /// `atelier relay record` (the firehose corpus's frames.bin.zst has the same format).
    #[arg(long, value_name = "FILE")]
    pub frames: PathBuf,
    /// Address to listen on, such as 127.0.0.1:2583 (port 0: any free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Frames per second per connection (default: as fast as the client reads).
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// Start over after the last frame, forever. Frames are not rewritten, so seqs repeat
    /// and a deduplicating consumer only sees the first pass.
    #[arg(long = "loop")]
    pub looping: bool,
}

/// Options of `atelier relay record`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// The firehose to follow: ws://HOST/xrpc/com.atproto.sync.subscribeRepos.
    #[arg(long, value_name = "WS_URL")]
    pub from: String,
    /// The frame file to write (written as FILE.part, renamed when finished).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Stop after N frames (default: until Ctrl-C).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Start after this seq (0: the server's whole window; default: live, or the URL's
    /// cursor parameter).
    #[arg(long, value_name = "N")]
    pub cursor: Option<i64>,
}

/// Runs a `relay` subcommand.
pub async fn run(command: RelayCommand) -> anyhow::Result<()> {
    match command {
        RelayCommand::Replay(args) => run_replay(args).await,
        RelayCommand::Record(args) => run_record(args).await,
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) fn interrupted() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    })
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    let path = args.frames.clone();
    let frames = tokio::task::spawn_blocking(move || FrameFile::read(&path))
        .await
        .context("reading the frame file")??;
    let count = frames.len();
    let config = ReplayConfig {
        frames,
        rate: args.rate,
        looping: args.looping,
        faults: Vec::new(),
    };
    config.check()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let shutdown = interrupted()?;
    println!(
        "Replaying {count} frames from {}{}{}",
        args.frames.display(),
        args.rate
            .map(|r| format!(" at {r} frames/s"))
            .unwrap_or_default(),
        if args.looping { ", looping" } else { "" },
    );
    println!("  firehose  {}", subscribe_repos_url(addr));
    println!("  health    http://{addr}/xrpc/_health");
    println!("Press Ctrl-C to stop.");
    replay::run(config, listener, shutdown).await?;
    eprintln!("Stopped.");
    Ok(())
}

async fn run_record(args: RecordArgs) -> anyhow::Result<()> {
    let mut client = ClientConfig::new(&args.from)?;
    if args.cursor.is_some() {
        client.cursor = args.cursor;
    }
    let cursor = client.cursor;
    let config = RecordConfig {
        client,
        out: args.out.clone(),
        count: args.count,
    };
    eprintln!(
        "Recording {}{} to {}{}; Ctrl-C to stop.",
        args.from,
        cursor
            .map(|c| format!(" from cursor {c}"))
            .unwrap_or_default(),
        args.out.display(),
        args.count
            .map(|n| format!(" ({n} frames)"))
            .unwrap_or_default(),
    );
    let mut last_report = Instant::now();
    let report = |p: RecordProgress| {
        format!(
            "{} frames (last seq {})",
            p.frames,
            p.last_seq.map_or_else(|| "-".to_owned(), |s| s.to_string())
        )
    };
    let progress = replay::record(config, interrupted()?, |p| {
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!("  written: {}", report(p));
        }
    })
    .await?;
    println!("Wrote {} to {}", report(progress), args.out.display());
    Ok(())
}
