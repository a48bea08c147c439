//! Local throughput measurement (not a test): decode every corpus frame and check the CID of
//! every block in every `#commit` CAR slice, on one thread, many times over.
//!
//! Run: `cargo run --release -p atelier-relay --example decode_speed [-- ITERATIONS]`.
//! It also measures, in the same run: SHA-256 from `sha2` and from `ring` over the same block
//! bytes, block lookup by linear scan against a hash map, and a peer pipeline that decodes
//! into owned values (`serde_ipld_dagcbor` into `Ipld`, `cid::Cid` per block) as the common
//! Rust stacks do.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atelier_relay::sync::car::Car;
use atelier_relay::sync::cbor::{self, CidRef};
use atelier_relay::sync::frame::{self, Frame};

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("ATELIER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

fn corpus_frames() -> Vec<Vec<u8>> {
    let path = fixtures_dir().join("firehose-corpus/frames.bin.zst");
    let packed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let raw = zstd::decode_all(&packed[..]).expect("zstd");
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while let Some((len, tail)) = rest.split_at_checked(4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (frame, tail) = tail.split_at_checked(len).expect("truncated frame");
        frames.push(frame.to_vec());
        rest = tail;
    }
    frames
}

/// Runs `f` over all frames `iters` times in ten rounds, after one warm-up pass, and returns
/// frames per second for the best and the median round. Other processes share the cores, so
/// the best round is the fairest estimate of what one uncontended core does.
fn measure(frames: &[Vec<u8>], iters: usize, mut f: impl FnMut(&[u8]) -> usize) -> (f64, f64) {
    for frame in frames {
        black_box(f(frame));
    }
    let per_round = iters.div_ceil(10);
    let mut rates: Vec<f64> = (0..10)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_round {
                for frame in frames {
                    black_box(f(black_box(frame)));
                }
            }
            (frames.len() * per_round) as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[9], rates[5])
}

/// Atelier's path: borrowed frame decode, then a CAR parse hashing every block.
fn atelier(frame: &[u8]) -> usize {
    match frame::decode(frame).expect("frame") {
        Frame::Commit(c) => {
            let car = c.car().expect("car");
            assert!(car.root() == Some(c.commit));
            car.len() + c.ops.len()
        }
        other => other.kind().len(),
    }
}

/// A peer as most Rust stacks do it: owned `Ipld` for header and body, owned CIDs per block.
fn peer_owned(frame: &[u8]) -> usize {
    use ipld_core::ipld::Ipld;
    use serde::Deserialize;
    let mut de = serde_ipld_dagcbor::de::Deserializer::from_slice(frame);
    let _header = Ipld::deserialize(&mut de).expect("header");
    let body = Ipld::deserialize(&mut de).expect("body");
    let Ipld::Map(body) = body else { return 0 };
    let Some(Ipld::Bytes(blocks)) = body.get("blocks") else {
        return 0;
    };
    let mut count = 0;
    let mut rest: &[u8] = blocks;
    let mut first = true;
    while !rest.is_empty() {
        let (len, used) = cbor::read_uvarint(rest).expect("varint");
        let section = &rest[used..used + len as usize];
        rest = &rest[used + len as usize..];
        if first {
            first = false;
            let _: Ipld = serde_ipld_dagcbor::from_slice(section).expect("header");
            continue;
        }
        let mut cursor = std::io::Cursor::new(section);
        let cid = cid::Cid::read_bytes(&mut cursor).expect("cid");
        let data = section[cursor.position() as usize..].to_vec();
        let digest = cbor::sha256(&data);
        assert_eq!(cid.hash().digest(), &digest[..]);
        count += 1;
    }
    count
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ITERATIONS is a number"))
        .unwrap_or(2000);
    let frames = corpus_frames();
    let bytes: usize = frames.iter().map(Vec::len).sum();
    println!(
        "corpus: {} frames, {:.2} KB average; {iters} iterations per measurement, one thread",
        frames.len(),
        bytes as f64 / frames.len() as f64 / 1000.0
    );

    // The decoded CAR slices, reused by the micro-measurements below.
    let cars: Vec<Car<'_>> = frames
        .iter()
        .filter_map(|f| match frame::decode(f) {
            Ok(Frame::Commit(c)) => Some(c.car().expect("car")),
            _ => None,
        })
        .collect();
    let blocks: Vec<(CidRef<'_>, &[u8])> = cars
        .iter()
        .flat_map(|c| c.blocks().map(|b| (b.cid, b.data)))
        .collect();
    let block_bytes: usize = blocks.iter().map(|(_, d)| d.len()).sum();
    println!(
        "{} blocks, {block_bytes} block bytes per pass",
        blocks.len()
    );

    println!("frames/s, best round and median of ten:");
    let (best, median) = measure(&frames, iters, atelier);
    println!("  atelier decode + CID check of every block: {best:>9.0} (median {median:.0})");

    let (best, median) = measure(&frames, iters, |f| match frame::decode(f) {
        Ok(Frame::Commit(c)) => Car::parse_unverified(c.blocks)
            .map(|c| c.len())
            .unwrap_or(0),
        _ => 0,
    });
    println!("  atelier decode, CAR parsed, no hashing:    {best:>9.0} (median {median:.0})");

    let (best, median) = measure(&frames, iters / 4 + 1, peer_owned);
    println!("  peer (owned Ipld + cid::Cid + sha2):       {best:>9.0} (median {median:.0})");

    // SHA-256 implementations over the same blocks.
    let time = |f: &dyn Fn(&[u8]) -> u8| -> Duration {
        let started = Instant::now();
        for _ in 0..iters.max(10) / 10 {
            for (_, d) in &blocks {
                black_box(f(black_box(d)));
            }
        }
        started.elapsed()
    };
    let passes = (iters.max(10) / 10) as f64;
    let sha2 = time(&|d| cbor::sha256(d)[0]);
    let ring = time(&|d| ring::digest::digest(&ring::digest::SHA256, d).as_ref()[0]);
    for (name, t) in [("sha2", sha2), ("ring", ring)] {
        println!(
            "SHA-256 {name}: {:>7.0} MB/s over the corpus blocks",
            block_bytes as f64 * passes / t.as_secs_f64() / 1e6
        );
    }

    // The same hash over one large buffer: the ceiling without per-block padding and calls.
    let big = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let rounds = iters.max(10) / 10;
    for _ in 0..rounds {
        black_box(cbor::sha256(black_box(&big)));
    }
    println!(
        "SHA-256 sha2: {:>7.0} MB/s over one 1 MiB buffer",
        (big.len() * rounds) as f64 / started.elapsed().as_secs_f64() / 1e6
    );

    // Lookup: linear scan over each slice against a HashMap, every block looked up once.
    let lookups: usize = cars.iter().map(Car::len).sum();
    let started = Instant::now();
    for _ in 0..iters {
        for car in &cars {
            for b in car.blocks() {
                black_box(car.blocks().find(|x| x.cid == b.cid).map(|x| x.data.len()));
            }
        }
    }
    let linear = started.elapsed().as_secs_f64() / (iters * lookups) as f64;
    let maps: Vec<HashMap<CidRef<'_>, &[u8]>> = cars
        .iter()
        .map(|c| c.blocks().map(|b| (b.cid, b.data)).collect())
        .collect();
    let started = Instant::now();
    for _ in 0..iters {
        for (car, map) in cars.iter().zip(&maps) {
            for b in car.blocks() {
                black_box(map.get(&b.cid).map(|d| d.len()));
            }
        }
    }
    let hashed = started.elapsed().as_secs_f64() / (iters * lookups) as f64;
    let build = Instant::now();
    for _ in 0..iters / 10 + 1 {
        for car in &cars {
            black_box(
                car.blocks()
                    .map(|b| (b.cid, b.data))
                    .collect::<HashMap<_, _>>(),
            );
        }
    }
    let build = build.elapsed().as_secs_f64() / ((iters / 10 + 1) * cars.len()) as f64;
    println!(
        "lookup: linear {:.1} ns, HashMap {:.1} ns (+ {:.0} ns to build per slice; {:.1} blocks per slice)",
        linear * 1e9,
        hashed * 1e9,
        build * 1e9,
        lookups as f64 / cars.len() as f64
    );
}
