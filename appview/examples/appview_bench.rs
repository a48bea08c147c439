//! AppView benchmark: ingest into the SQLite index, then query latency and throughput over
//! loopback HTTP.
//!
//! 1. **Ingest**: `--records` realistic AC records (paintings, moods, KidLisp, tapes,
//!    follows) from `--actors` accounts, encoded as DAG-CBOR and wrapped in verified-commit
//!    events (10 ops each), go through the AppView's own path: [`Indexer`] (CBOR to JSON,
//!    lenient validation, typed columns) then [`Store::apply`] in batches of 500 events with
//!    the cursor, as ingest does. Decoding and verifying frames is the sync layer's part and
//!    is measured by its own benchmarks (docs/sync.md). Prints records/s.
//! 2. **Queries**: the AppView service on 127.0.0.1 port 0 over that index, `--clients`
//!    concurrent HTTP/1.1 clients for `--secs` seconds each on `getAtmosphere` (limit 50,
//!    first page and cursor pages) and `getAuthorFeed` (random actors). Prints requests/s
//!    and p50/p99/max latency per query, first with the response cache off (every request
//!    reads SQLite and builds the JSON), then on (the index does not change during the run,
//!    so repeated queries are hits: the figure for a hot page between two ingest batches).
//!    Clients share the machine's cores with the server.
//!
//! Quick run: `cargo run --release -p atelier-appview --example appview_bench`
//! (200k records). Target run: `... -- --records 1000000 --actors 10000`. `--store postgres`
//! runs the same against a throwaway local PostgreSQL (`PgCluster`, as the tests use), or
//! `--postgres-url URL` against a server of yours (its database must be empty).

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_appview::index::Indexer;
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::{AnyStore, Store, StoreLocation};
use atelier_relay::sync::frame::Action;
use atelier_relay::sync::stream::{CommitEvent, OpEvent};
use atelier_relay::sync::verify::SyncStatus;
use bytes::Bytes;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request path for the i-th request of a query load.
type PathFor = Arc<dyn Fn(u64) -> String + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    records: usize,
    actors: usize,
    clients: usize,
    secs: u64,
    /// `sqlite`, or `postgres` (a throwaway local server, or `--postgres-url`).
    store: String,
    postgres_url: Option<String>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        records: 200_000,
        actors: 10_000,
        clients: 16,
        secs: 10,
        store: "sqlite".to_owned(),
        postgres_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--records" => args.records = value.parse()?,
            "--actors" => args.actors = value.parse()?,
            "--clients" => args.clients = value.parse()?,
            "--secs" => args.secs = value.parse()?,
            "--store" if value == "sqlite" || value == "postgres" => args.store = value,
            "--postgres-url" => {
                args.store = "postgres".to_owned();
                args.postgres_url = Some(value);
            }
            other => {
                return Err(format!(
                    "unknown option {other} {value} (use --records N, --actors N, --clients N, \
                     --secs S, --store sqlite|postgres, --postgres-url URL)"
                )
                .into());
            }
        }
    }
    if args.records == 0 || args.actors == 0 || args.clients == 0 || args.secs == 0 {
        return Err("every option must be more than 0".into());
    }
    Ok(args)
}

/// A deterministic pseudo-random sequence (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn did(i: usize) -> String {
    format!("did:plc:bench{i:019}")
}

/// A TID-shaped record key from a counter.
fn rkey(n: u64) -> String {
    const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let v = (1_700_000_000_000_000u64 + n) << 10;
    (0..13)
        .rev()
        .map(|i| char::from(ALPHABET[((v >> (5 * i)) & 31) as usize]))
        .collect()
}

/// One record of a type AC writes, shaped like the real ones.
fn record(rng: &mut Rng, n: u64, actors: usize) -> (&'static str, Value) {
    let when = format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        1 + n / 2_600_000 % 12,
        1 + n / 86_400 % 28,
        n / 3600 % 24,
        n / 60 % 60,
        n % 60,
        n % 1000
    );
    let code = format!("{:x}", 0xa00 + n % 0xfffff);
    let r = "6710f0c2a3b4c5d6e7f80912";
    match rng.below(10) {
        0..=3 => (
            "computer.aesthetic.painting",
            json!({"$type": "computer.aesthetic.painting", "slug": format!("2026.11.{n}"),
                   "code": code, "imageUrl": format!("https://aesthetic.computer/media/paintings/{code}"),
                   "when": when, "ref": r, "acUrl": format!("https://aesthetic.computer/#{code}")}),
        ),
        4..=6 => (
            "computer.aesthetic.mood",
            json!({"$type": "computer.aesthetic.mood", "mood": format!("feeling {n} shades of blue"),
                   "when": when, "ref": r}),
        ),
        7 => (
            "computer.aesthetic.kidlisp",
            json!({"$type": "computer.aesthetic.kidlisp", "code": code, "when": when, "ref": r,
                   "source": "(wipe navy)\n(ink yellow)\n(repeat 30 i (circle (* i 8) (* i 6) 12))"}),
        ),
        8 => (
            "computer.aesthetic.tape",
            json!({"$type": "computer.aesthetic.tape", "slug": format!("wand-{n}"), "code": code,
                   "when": when}),
        ),
        _ => (
            "computer.aesthetic.graph.follow",
            json!({"$type": "computer.aesthetic.graph.follow", "subject": did(rng.below(actors)),
                   "createdAt": when}),
        ),
    }
}

/// Verified-commit events carrying `records` creates, 10 per commit.
fn commits(args: &Args) -> Result<Vec<CommitEvent>, BoxError> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(args.records / 10 + 1);
    let mut n = 0u64;
    while (n as usize) < args.records {
        let author = did(rng.below(args.actors));
        let mut ops = Vec::with_capacity(10);
        for _ in 0..10.min(args.records - n as usize) {
            let (collection, value) = record(&mut rng, n, args.actors);
            let cbor = serde_ipld_dagcbor::to_vec(&value)?;
            ops.push(OpEvent {
                action: Action::Create,
                collection: collection.to_owned(),
                rkey: rkey(n),
                cid: Some(format!("bafyreibench{n:048}")),
                prev: None,
                record: Some(Bytes::from(cbor)),
            });
            n += 1;
        }
        out.push(CommitEvent {
            seq: out.len() as i64 + 1,
            did: author,
            rev: rkey(n),
            since: None,
            time: "2026-12-04T12:00:00.000Z".to_owned(),
            commit: "bafyreicommit".to_owned(),
            ops,
            status: SyncStatus::Synchronized,
            fully_verified: true,
            state: None,
            frame: Bytes::new(),
        });
    }
    Ok(out)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Runs `clients` loops of `path_for` requests for `secs`; returns (requests, latencies).
async fn load(
    base: &str,
    clients: usize,
    secs: u64,
    path_for: PathFor,
) -> Result<(u64, Vec<Duration>), BoxError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (http, base, path_for) = (http.clone(), base.to_owned(), Arc::clone(&path_for));
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = c as u64 * 1_000_003;
            while Instant::now() < until {
                let start = Instant::now();
                let resp = http.get(format!("{base}{}", path_for(i))).send().await?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()).into());
                }
                let _ = resp.bytes().await?;
                lat.push(start.elapsed());
                i += 1;
            }
            Ok::<_, BoxError>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    all.sort_unstable();
    Ok((all.len() as u64, all))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("index.sqlite");
    // A throwaway server for `--store postgres` (fsync and synchronous_commit off, like a
    // test cluster: compare with SQLite's WAL at synchronous=NORMAL, which does not fsync
    // each commit either), unless `--postgres-url` names one.
    let mut _server = None;
    let location = match (&args.store[..], &args.postgres_url) {
        ("postgres", Some(url)) => StoreLocation::Postgres(url.clone()),
        ("postgres", None) => {
            let server = atelier_sandbox::PgCluster::start()?;
            let url = server.create_database("bench")?;
            _server = Some(server);
            StoreLocation::Postgres(url)
        }
        _ => StoreLocation::Sqlite(path.clone()),
    };
    println!("store: {}", location.describe());

    // ---- ingest ----
    let built = Instant::now();
    let events = commits(&args)?;
    println!(
        "built {} records in {} commits from {} actors in {:.1} s",
        args.records,
        events.len(),
        args.actors,
        built.elapsed().as_secs_f64()
    );
    let store = AnyStore::open(&location).await?;
    let indexer = Indexer::new()?;
    let started = Instant::now();
    let (mut changes, mut rejected) = (Vec::new(), Vec::new());
    let mut index_time = Duration::ZERO;
    let mut written = 0u64;
    for batch in events.chunks(500) {
        let t = Instant::now();
        for ev in batch {
            indexer.commit(ev, &mut changes, &mut rejected);
        }
        index_time += t.elapsed();
        let seq = batch.last().map_or(0, |e| e.seq);
        written += store
            .apply(&changes, Some(("bench", seq)))
            .await?
            .records_written;
        changes.clear();
    }
    let secs = started.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.path().join("index.sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    store.close().await;

    // ---- queries: without the response cache (every request reads SQLite), then with it ----
    let mut rows = Vec::new();
    for cache_bytes in [0, service::DEFAULT_RESPONSE_CACHE_BYTES] {
        let label = if cache_bytes == 0 {
            "no cache"
        } else {
            "cache"
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut config = AppViewConfig::new(location.clone(), None);
        config.response_cache_bytes = cache_bytes;
        let server = tokio::spawn(service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let first: Value = reqwest::Client::new()
            .get(format!(
                "{base}/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50"
            ))
            .send()
            .await?
            .json()
            .await?;
        let cursor = first["cursor"].as_str().unwrap_or_default().to_owned();
        let cursor: String = url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
        let actors = args.actors;
        let queries: Vec<(&str, PathFor)> = vec![
            (
                "getAtmosphere, first page",
                Arc::new(|_| "/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50".to_owned()),
            ),
            (
                "getAtmosphere, second page (cursor)",
                Arc::new(move |_| {
                    format!("/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50&cursor={cursor}")
                }),
            ),
            (
                "getAtmosphere, paintings only",
                Arc::new(|_| {
                    "/xrpc/computer.aesthetic.feed.getAtmosphere?limit=50&collections=computer.aesthetic.painting"
                        .to_owned()
                }),
            ),
            (
                "getAuthorFeed, random actor",
                Arc::new(move |i| {
                    format!(
                        "/xrpc/computer.aesthetic.feed.getAuthorFeed?actor={}&limit=50",
                        did((i.wrapping_mul(2_654_435_761) % actors as u64) as usize)
                    )
                }),
            ),
        ];
        for (name, path_for) in queries {
            let (n, lat) = load(&base, args.clients, args.secs, path_for).await?;
            rows.push((format!("{name} [{label}]"), n, lat));
        }
        let _ = stop.send(());
        server.await??;
    }

    println!();
    println!(
        "== appview_bench: {} records, {} actors, {} clients x {} s per query ==",
        args.records, args.actors, args.clients, args.secs
    );
    println!(
        "ingest (index + store, batches with cursor)    {:>10.0} records/s  ({written} written, {} rejected, {secs:.1} s; indexer alone {:.0} records/s)",
        args.records as f64 / secs,
        rejected.len(),
        args.records as f64 / index_time.as_secs_f64().max(1e-9)
    );
    if matches!(location, StoreLocation::Sqlite(_)) {
        println!(
            "index size                                      {:>10.1} MB",
            db_bytes as f64 / 1e6
        );
    }
    for (name, n, lat) in rows {
        println!(
            "{name:<50} {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>7.2} ms",
            n as f64 / args.secs as f64,
            quantile(&lat, 0.5).as_secs_f64() * 1e3,
            quantile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
