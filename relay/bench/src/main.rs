//! Side-by-side throughput of Atelier's sync layer and a peer Rust implementation (jacquard
//! 0.12), on the real firehose corpus, in one run, on the calling thread.
//!
//! Run: `cargo run --release --manifest-path relay/bench/Cargo.toml -- [--seconds N] [--json]`
//!
//! Two measurements, each with both implementations, their rounds interleaved (Atelier,
//! jacquard, Atelier, ...) so that load from other processes on the shared cores falls on
//! both alike:
//!
//! (a) decode + CID check, frames/s over all 150 frames: the frame's header and body decoded,
//!     and for a `#commit` its CAR slice parsed with every block's SHA-256 compared with its
//!     CID. Atelier: `frame::decode` + `Car::parse`. jacquard: `decode_framed` +
//!     `parse_car_bytes` + the CID check added here (jacquard does not hash blocks).
//! (b) full verification, commits/s over the 148 `#commit` frames, counting only commits that
//!     pass: frame decode, then Atelier's `Verifier` in `VerifyMode::Full` (every account
//!     first-seen) against jacquard's `validate_v1_1`. Keys are parsed once, before timing.
//!
//! Everything runs on the main thread; jacquard's async functions run on a current-thread
//! tokio runtime, entered once per pass over the corpus (their futures never wait: the CAR
//! reader reads from a byte slice).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use atelier_relay::sync::car::Car;
use atelier_relay::sync::frame::{self, Frame};
use atelier_relay::sync::keys::PublicKey as AtelierKey;
use atelier_relay::sync::verify::{Verifier, VerifyMode};
use jacquard_api::com_atproto::sync::subscribe_repos::SubscribeReposMessage;
use jacquard_common::types::crypto::{KeyCodec, PublicKey as JacquardKey};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Allocation counting.

/// Counts calls to `alloc` (and `realloc`, which may move) while [`COUNTING`] is on, then
/// defers to the system allocator. Counting is switched on only for the untimed passes that
/// measure allocations, so the timed rounds pay one relaxed load per allocation, for both
/// implementations alike.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

impl CountingAlloc {
    #[inline]
    fn count(size: usize) {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
    }
}

// SAFETY: the only `unsafe` in this crate. Every method forwards its arguments unchanged to
// `System`, which upholds the `GlobalAlloc` contract; the counters are atomics and never
// allocate, so nothing here re-enters the allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with `layout`, as the caller promises.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by its contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Runs `f` once with counting on; returns (allocations, bytes requested).
fn count_allocations(f: impl FnOnce()) -> (u64, u64) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ALLOCATED_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

// ---------------------------------------------------------------------------------------
// Corpus.

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("ATELIER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures"),
    }
}

fn read_zstd(path: &Path) -> Result<Vec<u8>, String> {
    let packed = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    zstd::decode_all(&packed[..]).map_err(|e| format!("{}: zstd: {e}", path.display()))
}

struct Corpus {
    /// Every frame, in capture order.
    frames: Vec<Vec<u8>>,
    /// The `#commit` frames only.
    commits: Vec<Vec<u8>>,
    /// DID -> DID document.
    docs: HashMap<String, serde_json::Value>,
}

fn load_corpus() -> Result<Corpus, String> {
    let dir = fixtures_dir().join("firehose-corpus");
    let raw = read_zstd(&dir.join("frames.bin.zst"))?;
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or("frames.bin: truncated length")?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (frame, tail) = tail
            .split_at_checked(len)
            .ok_or("frames.bin: truncated frame")?;
        frames.push(frame.to_vec());
        rest = tail;
    }
    let commits = frames
        .iter()
        .filter(|f| matches!(frame::decode(f), Ok(Frame::Commit(_))))
        .cloned()
        .collect();
    let docs = serde_json::from_slice(&read_zstd(&dir.join("did_docs.json.zst"))?)
        .map_err(|e| format!("did_docs.json: {e}"))?;
    Ok(Corpus {
        frames,
        commits,
        docs,
    })
}

/// The `#atproto` verification method of a DID document: (type, publicKeyMultibase).
fn atproto_method(doc: &serde_json::Value) -> Option<(&str, &str)> {
    doc.get("verificationMethod")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("id")
                .and_then(|id| id.as_str())
                .is_some_and(|id| id.ends_with("#atproto"))
        })
        .and_then(|m| {
            Some((
                m.get("type")?.as_str()?,
                m.get("publicKeyMultibase")?.as_str()?,
            ))
        })
}

/// Each implementation's keys by DID.
type Keys = (
    HashMap<String, AtelierKey>,
    HashMap<String, JacquardKey<'static>>,
);

/// Both implementations' keys, parsed once, before any timing.
fn parse_keys(docs: &HashMap<String, serde_json::Value>) -> Result<Keys, String> {
    let mut atelier = HashMap::new();
    let mut jacquard = HashMap::new();
    for (did, doc) in docs {
        let key = AtelierKey::from_did_document(doc).map_err(|e| format!("{did}: {e}"))?;
        let (suite, multibase) = atproto_method(doc).ok_or(format!("{did}: no #atproto key"))?;
        let peer = if suite == "Multikey" {
            JacquardKey::decode(multibase).map_err(|e| format!("{did}: jacquard: {e}"))?
        } else {
            // jacquard reads only Multikey strings; a legacy `EcdsaSecp256k1VerificationKey2019`
            // (or P-256) method is the bare point, which is handed over as jacquard's type.
            JacquardKey {
                codec: match key.curve() {
                    atelier_relay::sync::keys::Curve::K256 => KeyCodec::Secp256k1,
                    atelier_relay::sync::keys::Curve::P256 => KeyCodec::P256,
                },
                bytes: key.to_compressed().to_vec().into(),
            }
        };
        atelier.insert(did.clone(), key);
        jacquard.insert(did.clone(), peer);
    }
    Ok((atelier, jacquard))
}

// ---------------------------------------------------------------------------------------
// The work, per frame. Each returns whether the frame passed.

/// (a) Atelier: borrowed frame decode; for a commit, the CAR slice with every CID hashed.
fn atelier_decode(bytes: &[u8]) -> bool {
    match frame::decode(bytes) {
        Ok(Frame::Commit(commit)) => {
            Car::parse(commit.blocks).is_ok_and(|car| !black_box(car).is_empty())
        }
        Ok(other) => {
            black_box(other);
            true
        }
        Err(_) => false,
    }
}

/// The check jacquard leaves out, as Atelier's `car::check_block` does it: DAG-CBOR or raw
/// codec, SHA-256 multihash of 32 bytes, digest equal to the block's.
fn cid_matches(cid: &cid::Cid, data: &[u8]) -> bool {
    let hash = cid.hash();
    (cid.codec() == 0x71 || cid.codec() == 0x55)
        && hash.code() == 0x12
        && hash.digest().len() == 32
        && hash.digest() == &Sha256::digest(data)[..]
}

/// (a) jacquard: `decode_framed` into its owned types; for a commit, `parse_car_bytes`
/// (iroh-car into a `BTreeMap<Cid, Bytes>`) and the CID check of every block.
async fn jacquard_decode(bytes: &[u8]) -> bool {
    match SubscribeReposMessage::<jacquard_common::DefaultStr>::decode_framed(bytes) {
        Ok(SubscribeReposMessage::Commit(commit)) => {
            match jacquard_repo::car::parse_car_bytes(&commit.blocks).await {
                Ok(car) => {
                    !car.blocks.is_empty()
                        && car.blocks.iter().all(|(cid, data)| cid_matches(cid, data))
                }
                Err(_) => false,
            }
        }
        Ok(other) => {
            black_box(other);
            true
        }
        Err(_) => false,
    }
}

/// The frame header, as a user of atrium's types decodes it (atrium has no frame decoder).
#[derive(serde::Deserialize)]
struct AtriumHeader {
    #[allow(dead_code)]
    op: i64,
    t: Option<String>,
}

/// (a) atrium: header and body with `serde_ipld_dagcbor` into atrium's generated
/// `subscribeRepos` data types (the `*Data` structs, not the `Object<_>` wrappers whose
/// flattened extra-data map costs more); for a commit, `CarStore::open` over the slice,
/// which indexes every block and hashes every SHA-256 one against its CID.
async fn atrium_decode(bytes: &[u8]) -> bool {
    use atrium_api::com::atproto::sync::subscribe_repos as repos;
    use serde::Deserialize;
    let mut de = serde_ipld_dagcbor::de::Deserializer::from_slice(bytes);
    let Ok(header) = AtriumHeader::deserialize(&mut de) else {
        return false;
    };
    match header.t.as_deref() {
        Some("#commit") => {
            let Ok(commit) = repos::CommitData::deserialize(&mut de) else {
                return false;
            };
            let cursor = std::io::Cursor::new(&commit.blocks[..]);
            atrium_repo::blockstore::CarStore::open(cursor)
                .await
                .is_ok_and(|store| black_box(store).roots().count() == 1)
        }
        Some("#identity") => {
            repos::IdentityData::deserialize(&mut de).is_ok_and(|d| black_box(d).seq > 0)
        }
        Some("#account") => {
            repos::AccountData::deserialize(&mut de).is_ok_and(|d| black_box(d).seq > 0)
        }
        Some("#sync") => repos::SyncData::deserialize(&mut de).is_ok_and(|d| black_box(d).seq > 0),
        Some("#info") => repos::InfoData::deserialize(&mut de).is_ok(),
        _ => false,
    }
}

/// (b) Atelier: frame decode, then full sync 1.1 verification of a first-seen account;
/// the account is forgotten afterwards so the next pass sees it first-seen again.
fn atelier_verify(
    bytes: &[u8],
    verifier: &mut Verifier,
    keys: &HashMap<String, AtelierKey>,
    now: u64,
) -> bool {
    let Ok(Frame::Commit(commit)) = frame::decode(bytes) else {
        return false;
    };
    let Some(key) = keys.get(commit.repo) else {
        return false;
    };
    let ok = verifier
        .verify_commit_at(&commit, key, now)
        .is_ok_and(|v| black_box(v).fully_verified);
    verifier.forget(commit.repo);
    ok
}

/// (b) jacquard: frame decode, then `validate_v1_1` (CAR parse, commit decode, DID and
/// signature check, MST inversion against `prevData`).
async fn jacquard_verify(bytes: &[u8], keys: &HashMap<String, JacquardKey<'static>>) -> bool {
    let Ok(SubscribeReposMessage::Commit(commit)) =
        SubscribeReposMessage::<jacquard_common::DefaultStr>::decode_framed(bytes)
    else {
        return false;
    };
    let Some(key) = keys.get(commit.repo.as_str()) else {
        return false;
    };
    jacquard_repo::commit::firehose::validate_v1_1(&commit, key)
        .await
        .is_ok_and(|root| black_box(root).hash().size() == 32)
}

/// A copy of the first commit frame with one byte of a created record's block flipped: the
/// frame still decodes, but that block no longer matches its CID. Every decode + CID check
/// path above must reject it; a verifier that does not hash blocks accepts it.
fn tampered_frame(commits: &[Vec<u8>]) -> Option<Vec<u8>> {
    commits.iter().find_map(|bytes| {
        let Ok(Frame::Commit(commit)) = frame::decode(bytes) else {
            return None;
        };
        let car = Car::parse(commit.blocks).ok()?;
        let record = commit.ops.iter().find_map(|op| car.get(&op.cid?))?;
        // The record's last byte, found by its address inside the frame.
        let at = record.as_ptr() as usize - bytes.as_ptr() as usize + record.len() - 1;
        let mut copy = bytes.clone();
        copy[at] ^= 0x01;
        Some(copy)
    })
}

// ---------------------------------------------------------------------------------------
// Timing.

/// One implementation's pass over its inputs: returns how many items passed.
type Pass<'a> = Box<dyn FnMut() -> usize + 'a>;

#[derive(Debug, Clone, Copy)]
struct Rate {
    best: f64,
    median: f64,
}

const ROUNDS: usize = 10;

/// Runs the passes in `ROUNDS` interleaved rounds, each pass repeated for `budget / ROUNDS`;
/// returns each one's passed items per second, best and median round.
fn measure(budget: Duration, passes: &mut [Pass<'_>]) -> Vec<Rate> {
    let slice = budget / ROUNDS as u32;
    let mut rates = vec![Vec::with_capacity(ROUNDS); passes.len()];
    for _ in 0..ROUNDS {
        for (pass, rates) in passes.iter_mut().zip(&mut rates) {
            let started = Instant::now();
            let mut items = 0usize;
            loop {
                items += pass();
                let elapsed = started.elapsed();
                if elapsed >= slice {
                    rates.push(items as f64 / elapsed.as_secs_f64());
                    break;
                }
            }
        }
    }
    rates
        .into_iter()
        .map(|mut r| {
            r.sort_by(f64::total_cmp);
            Rate {
                best: r[ROUNDS - 1],
                median: (r[ROUNDS / 2 - 1] + r[ROUNDS / 2]) / 2.0,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Output.

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Today's UTC date as YYYY-MM-DD (civil-from-days, no date crate needed).
fn today() -> String {
    let days = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

struct Args {
    seconds: f64,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 5.0,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a value")?;
                args.seconds = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or(format!("--seconds: not a positive number: {v}"))?;
            }
            "--json" => args.json = true,
            "-h" | "--help" => {
                println!(
                    "usage: atelier-relay-bench [--seconds N] [--json]\n  \
                     --seconds N  time budget per implementation per measurement (default 5)\n  \
                     --json       print the figures as one JSON object\n  \
                     ATELIER_FIXTURES=DIR  fixtures directory holding firehose-corpus/"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument: {other} (try --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let corpus = match load_corpus() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "cannot load the firehose corpus (set ATELIER_FIXTURES to the fixtures directory): {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let (atelier_keys, jacquard_keys) = match parse_keys(&corpus.docs) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("DID documents: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio current-thread runtime");
    let budget = Duration::from_secs_f64(args.seconds);
    let frames = &corpus.frames;
    let commits = &corpus.commits;
    let corpus_bytes: usize = frames.iter().map(Vec::len).sum();

    // Passes over the corpus, each returning how many items passed.
    let atelier_a = || {
        frames
            .iter()
            .filter(|f| atelier_decode(black_box(f)))
            .count()
    };
    let jacquard_a = || {
        rt.block_on(async {
            let mut passed = 0;
            for f in frames {
                passed += usize::from(jacquard_decode(black_box(f)).await);
            }
            passed
        })
    };
    let atrium_a = || {
        rt.block_on(async {
            let mut passed = 0;
            for f in frames {
                passed += usize::from(atrium_decode(black_box(f)).await);
            }
            passed
        })
    };
    let mut verifier = Verifier::new(VerifyMode::Full);
    let mut atelier_b = || {
        commits
            .iter()
            .filter(|f| atelier_verify(black_box(f), &mut verifier, &atelier_keys, now))
            .count()
    };
    let jacquard_b = || {
        rt.block_on(async {
            let mut passed = 0;
            for f in commits {
                passed += usize::from(jacquard_verify(black_box(f), &jacquard_keys).await);
            }
            passed
        })
    };

    // One untimed pass each: warms caches and records what passes and what allocates.
    let mut passed = [0usize; 5];
    let (a_allocs, a_bytes) = count_allocations(|| passed[0] = atelier_a());
    let (ja_allocs, ja_bytes) = count_allocations(|| passed[1] = jacquard_a());
    let (b_allocs, _) = count_allocations(|| passed[2] = atelier_b());
    let (jb_allocs, _) = count_allocations(|| passed[3] = jacquard_b());
    let (ra_allocs, ra_bytes) = count_allocations(|| passed[4] = atrium_a());
    // Does each check bite? Untimed, on one tampered frame: (decode Atelier, jacquard,
    // atrium; verify Atelier, jacquard) -- true means accepted.
    let tampered = tampered_frame(commits).expect("a commit frame with a created record");
    let tamper_accepted = [
        atelier_decode(&tampered),
        rt.block_on(jacquard_decode(&tampered)),
        rt.block_on(atrium_decode(&tampered)),
        atelier_verify(
            &tampered,
            &mut Verifier::new(VerifyMode::Full),
            &atelier_keys,
            now,
        ),
        rt.block_on(jacquard_verify(&tampered, &jacquard_keys)),
    ];
    let per_frame = |n: u64| n as f64 / frames.len() as f64;
    let per_commit = |n: u64| n as f64 / commits.len() as f64;

    if !args.json {
        println!(
            "corpus: {} frames ({} #commit), {:.2} KB average; {} keys; {:.1} s per implementation per measurement, {ROUNDS} interleaved rounds, one thread",
            frames.len(),
            commits.len(),
            corpus_bytes as f64 / frames.len() as f64 / 1000.0,
            atelier_keys.len(),
            args.seconds,
        );
        println!("measuring (a) decode + CID check ...");
    }
    let mut a_passes: Vec<Pass<'_>> = vec![
        Box::new(atelier_a),
        Box::new(jacquard_a),
        Box::new(atrium_a),
    ];
    let a = measure(budget, &mut a_passes);
    drop(a_passes);
    if !args.json {
        println!("measuring (b) full verification ...");
    }
    let mut b_passes: Vec<Pass<'_>> = vec![Box::new(atelier_b), Box::new(jacquard_b)];
    let b = measure(budget, &mut b_passes);
    drop(b_passes);

    let machine = format!(
        "nproc {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let ratio_a = a[0].best / a[1].best;
    let ratio_atrium = a[0].best / a[2].best;
    let ratio_b = b[0].best / b[1].best;

    if args.json {
        let rate =
            |r: Rate| serde_json::json!({"best": r.best.round(), "median": r.median.round()});
        let out = serde_json::json!({
            "date": today(),
            "machine": machine,
            "seconds_per_measurement": args.seconds,
            "rounds": ROUNDS,
            "frames": frames.len(),
            "commits": commits.len(),
            "decode_cid_frames_per_s": {
                "atelier": rate(a[0]), "jacquard": rate(a[1]), "atrium": rate(a[2]),
                "ratio_best": ratio_a, "ratio_best_atrium": ratio_atrium,
            },
            "full_verify_commits_per_s": {"atelier": rate(b[0]), "jacquard": rate(b[1]), "ratio_best": ratio_b},
            "passed": {
                "decode_atelier": passed[0], "decode_jacquard": passed[1],
                "verify_atelier": passed[2], "verify_jacquard": passed[3],
                "decode_atrium": passed[4],
            },
            "tampered_record_accepted": {
                "decode_atelier": tamper_accepted[0], "decode_jacquard": tamper_accepted[1],
                "decode_atrium": tamper_accepted[2], "verify_atelier": tamper_accepted[3],
                "verify_jacquard": tamper_accepted[4],
            },
            "allocations": {
                "decode_atelier_per_frame": per_frame(a_allocs),
                "decode_atelier_bytes_per_frame": per_frame(a_bytes),
                "decode_jacquard_per_frame": per_frame(ja_allocs),
                "decode_jacquard_bytes_per_frame": per_frame(ja_bytes),
                "decode_atrium_per_frame": per_frame(ra_allocs),
                "decode_atrium_bytes_per_frame": per_frame(ra_bytes),
                "verify_atelier_per_commit": per_commit(b_allocs),
                "verify_jacquard_per_commit": per_commit(jb_allocs),
            },
        });
        println!("{out}");
    } else {
        println!();
        println!("{} on {machine}", today());
        println!(
            "| implementation | (a) decode + CID check, frames/s | (b) full verification, commits/s |"
        );
        println!("|---|---:|---:|");
        let cell = |r: Rate| format!("{:.0} (median {:.0})", r.best, r.median);
        println!(
            "| Atelier (atelier-relay) | {} | {} |",
            cell(a[0]),
            cell(b[0])
        );
        println!(
            "| jacquard 0.12 (+ CID check in (a)) | {} | {} |",
            cell(a[1]),
            cell(b[1])
        );
        println!(
            "| atrium-repo 0.2 + atrium-api 0.26 | {} | n/a |",
            cell(a[2])
        );
        println!("| ratio Atelier/jacquard (best) | {ratio_a:.2}x | {ratio_b:.2}x |");
        println!("| ratio Atelier/atrium (best) | {ratio_atrium:.2}x | n/a |");
        println!();
        println!(
            "passed: (a) Atelier {}/{} frames, jacquard {}/{}, atrium {}/{}; (b) Atelier {}/{} commits, jacquard {}/{}",
            passed[0],
            frames.len(),
            passed[1],
            frames.len(),
            passed[4],
            frames.len(),
            passed[2],
            commits.len(),
            passed[3],
            commits.len()
        );
        if passed[3] < commits.len() {
            println!(
                "  jacquard rejected {} of {} commits (its figure counts only the ones it passed)",
                commits.len() - passed[3],
                commits.len()
            );
        }
        let verdict = |accepted: bool| if accepted { "ACCEPTED" } else { "rejected" };
        println!(
            "one record byte flipped: (a) Atelier {}, jacquard {}, atrium {}; (b) Atelier {}, jacquard {}",
            verdict(tamper_accepted[0]),
            verdict(tamper_accepted[1]),
            verdict(tamper_accepted[2]),
            verdict(tamper_accepted[3]),
            verdict(tamper_accepted[4]),
        );
        println!(
            "allocations: (a) Atelier {:.1}/frame ({:.0} bytes), jacquard {:.1}/frame ({:.0} bytes), atrium {:.1}/frame ({:.0} bytes); (b) Atelier {:.1}/commit, jacquard {:.1}/commit",
            per_frame(a_allocs),
            per_frame(a_bytes),
            per_frame(ja_allocs),
            per_frame(ja_bytes),
            per_frame(ra_allocs),
            per_frame(ra_bytes),
            per_commit(b_allocs),
            per_commit(jb_allocs),
        );
    }
    if passed[0] != frames.len()
        || passed[2] != commits.len()
        || tamper_accepted[..4].iter().any(|&accepted| accepted)
    {
        eprintln!(
            "Atelier failed corpus frames or commits, or a decode path accepted a tampered block: \
             the figures above are not valid"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
