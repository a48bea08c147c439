//! Publish-to-visibility on the real loop: the reference PDS and a PLC on loopback (the
//! test harness's), Atelier's relay following the PDS with full verification, and AppView
//! ingest following the relay's filtered `subscribeRepos` with full verification, into a
//! SQLite index.
//!
//! Each of `--publishes` moods is written with `createRecord` and timed from just before
//! the request until the AppView's index answers for its AT-URI (checked after every
//! ingest commit, so the figure is exact to the commit that made it visible). Publishes
//! are sequential: this is the latency one person sees, not a throughput test. The same
//! run is made with the AppView following the PDS directly (no relay), side by side.
//! Prints p50/p90/p99/max for each path, and the `createRecord` round trip alone.
//!
//! Run: `cargo run --release -p atelier-appview --example visibility_bench -- --publishes 1000`
//! (`--batch-wait-ms N` sets ingest's batch wait; default: ingest's own default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_appview::ingest::{self, IngestConfig, IngestStats};
use atelier_appview::store::{AnyStore, Store, StoreLocation};
use atelier_relay::filter::FilterRules;
use atelier_relay::service::{self, HostLimits, RelayConfig, UpstreamConfig, UpstreamKind};
use atelier_sandbox::{Account, Sandbox};
use serde_json::json;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long one publish may take to become visible before the run fails.
const LIMIT: Duration = Duration::from_secs(30);

struct Args {
    publishes: usize,
    batch_wait: Option<Duration>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        publishes: 1000,
        batch_wait: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--publishes" => args.publishes = value.parse()?,
            "--batch-wait-ms" => args.batch_wait = Some(Duration::from_millis(value.parse()?)),
            other => {
                return Err(format!(
                    "unknown option {other} (use --publishes N, --batch-wait-ms N)"
                )
                .into());
            }
        }
    }
    if args.publishes == 0 {
        return Err("--publishes must be more than 0".into());
    }
    Ok(args)
}

/// Latency figures of one path.
struct Figures {
    visible: Vec<Duration>,
    write: Vec<Duration>,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, values: &mut [Duration]) -> String {
    values.sort();
    format!(
        "{name:<34} p50 {:>7} ms   p90 {:>7} ms   p99 {:>7} ms   max {:>7} ms",
        ms(quantile(values, 0.5)),
        ms(quantile(values, 0.9)),
        ms(quantile(values, 0.99)),
        ms(values[values.len() - 1]),
    )
}

/// Publishes `n` moods as `account` (after `warmup` untimed ones) and times each until the
/// index behind `stats` shows it.
async fn publish_loop(
    account: &Account,
    store: &AnyStore,
    stats: &IngestStats,
    n: usize,
    warmup: usize,
) -> Result<Figures, BoxError> {
    let mut commits = stats.subscribe_commits();
    let mut figures = Figures {
        visible: Vec::with_capacity(n),
        write: Vec::with_capacity(n),
    };
    for i in 0..warmup + n {
        let record = json!({
            "$type": "computer.aesthetic.mood",
            "mood": format!("bench mood {i}"),
            "when": "2026-12-06T12:00:00.000Z",
            "ref": format!("{i:024x}"),
        });
        let started = Instant::now();
        let created = account
            .create_record("computer.aesthetic.mood", &record)
            .await?;
        let written = started.elapsed();
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            commits.borrow_and_update();
            if store.record(&created.uri).await?.is_some() {
                break;
            }
            tokio::time::timeout_at(deadline, commits.changed())
                .await
                .map_err(|_| format!("{} was not visible within {LIMIT:?}", created.uri))??;
        }
        let visible = started.elapsed();
        if i >= warmup {
            figures.visible.push(visible);
            figures.write.push(written);
        }
        if (i + 1) % 250 == 0 {
            eprintln!("  {} of {} published", i + 1, warmup + n);
        }
    }
    Ok(figures)
}

/// Ingest running in this process until `stop`.
struct Running {
    stats: Arc<IngestStats>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::AppViewError>>,
}

fn start_ingest(config: IngestConfig, store: Arc<AnyStore>) -> Running {
    let stats = Arc::new(IngestStats::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            ingest::run(&config, store, stats, async move {
                let _ = stopped.await;
            })
            .await
        })
    };
    Running { stats, stop, task }
}

impl Running {
    async fn stop(self) -> Result<(), BoxError> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

async fn run_path(
    name: &str,
    source: String,
    sandbox: &Sandbox,
    account: &Account,
    dir: &std::path::Path,
    args: &Args,
) -> Result<Figures, BoxError> {
    let store =
        Arc::new(AnyStore::open(&StoreLocation::Sqlite(dir.join(format!("{name}.sqlite")))).await?);
    let mut config = IngestConfig::new(source);
    config.plc_url = sandbox.plc_url().to_owned();
    config.allow_loopback = true;
    // From the stream's start, so the first publish is seen even if it beats the connection.
    config.initial_cursor = Some(0);
    if let Some(wait) = args.batch_wait {
        config.batch_wait = wait;
    }
    eprintln!("{name}: ingest batch wait {:?}", config.batch_wait);
    let running = start_ingest(config, Arc::clone(&store));
    let figures = publish_loop(account, &store, &running.stats, args.publishes, 20).await;
    running.stop().await?;
    figures
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    // Warnings (a refused frame, a reconnect) go to stderr; RUST_LOG sets more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    eprintln!(
        "starting the sandbox (PLC, reference PDS), then {} publishes per path",
        args.publishes
    );
    let sandbox = Sandbox::start().await?;
    let dir = tempfile::tempdir()?;

    let relay_config = RelayConfig {
        data_dir: dir.path().join("relay"),
        upstreams: vec![UpstreamConfig {
            url: sandbox.subscribe_repos_url(None),
            kind: UpstreamKind::Pds,
            trusted: false,
        }],
        allow_loopback: true,
        plc_url: sandbox.plc_url().to_owned(),
        admin_tokens_file: dir.path().join("admin_token"),
        filter: FilterRules::default(),
        // One account publishing back to back can pass the reference relay's per-host
        // baseline (50 events/s, 2,500/hour), and the relay drops what is over it: this
        // bench measures latency, so the PDS host gets room.
        limits: HostLimits {
            per_second: 10_000,
            per_hour: 1_000_000,
            per_day: 10_000_000,
            ..HostLimits::default()
        },
        ..RelayConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = listener.local_addr()?;
    let (relay_stop, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(service::run(relay_config, listener, async move {
        let _ = relay_stopped.await;
    }));

    let direct_account = sandbox.create_account("direct").await?;
    let relayed_account = sandbox.create_account("relayed").await?;
    let mut direct = run_path(
        "pds-direct",
        sandbox.subscribe_repos_url(None),
        &sandbox,
        &direct_account,
        dir.path(),
        &args,
    )
    .await?;
    let mut relayed = run_path(
        "via-relay",
        format!("ws://{relay_addr}/xrpc/com.atproto.sync.subscribeRepos"),
        &sandbox,
        &relayed_account,
        dir.path(),
        &args,
    )
    .await?;

    println!(
        "publish-to-visibility, {} sequential publishes per path (createRecord to indexed):",
        args.publishes
    );
    println!(
        "{}",
        summary("PDS -> relay -> AppView", &mut relayed.visible)
    );
    println!(
        "{}",
        summary("PDS -> AppView (no relay)", &mut direct.visible)
    );
    println!(
        "{}",
        summary("createRecord round trip (relay run)", &mut relayed.write)
    );

    let _ = relay_stop.send(());
    relay.await??;
    sandbox.shutdown().await;
    Ok(())
}
