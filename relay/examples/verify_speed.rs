//! Local throughput measurement (not a test): full sync 1.1 verification of every corpus
//! `#commit` on one thread, many times over.
//!
//! Run: `cargo run --release -p atelier-relay --example verify_speed [-- ITERATIONS]`.
//!
//! "Full" is what a relay does per commit: frame decode, CAR parse with every block's CID
//! hashed, commit block decode, signature (keys parsed once and cached, as a resolver cache
//! would hold them), rev and chain checks, MST inversion against `prevData`, and the state
//! update. Beside it, in the same run: the same pipeline in trusted mode (no signature, no
//! inversion), and the bare libsecp256k1 verification rate over the same signatures, which
//! bounds the full figure.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use atelier_relay::sync::frame::{self, Frame};
use atelier_relay::sync::keys::PublicKey;
use atelier_relay::sync::mst;
use atelier_relay::sync::verify::{self, Verifier, VerifyMode};
use sha2::Digest;

fn fixtures_dir() -> PathBuf {
    match std::env::var_os("ATELIER_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

fn read_zstd(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join("firehose-corpus").join(name);
    let packed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    zstd::decode_all(&packed[..]).expect("zstd")
}

fn corpus_commit_frames() -> Vec<Vec<u8>> {
    let raw = read_zstd("frames.bin.zst");
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while let Some((len, tail)) = rest.split_at_checked(4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let (frame, tail) = tail.split_at_checked(len).expect("truncated frame");
        if matches!(frame::decode(frame), Ok(Frame::Commit(_))) {
            frames.push(frame.to_vec());
        }
        rest = tail;
    }
    frames
}

fn keys() -> HashMap<String, PublicKey> {
    let docs: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&read_zstd("did_docs.json.zst")).expect("DID docs");
    docs.into_iter()
        .map(|(did, doc)| {
            let key = PublicKey::from_did_document(&doc).expect("signing key");
            (did, key)
        })
        .collect()
}

/// Verifies every frame once with a fresh verifier (every account first-seen, as in the
/// corpus); returns the number of ops, as a checksum.
fn pass(frames: &[Vec<u8>], keys: &HashMap<String, PublicKey>, mode: VerifyMode) -> usize {
    let mut verifier = Verifier::new(mode);
    let mut ops = 0;
    for bytes in frames {
        let Ok(Frame::Commit(commit)) = frame::decode(black_box(bytes)) else {
            panic!("commit frame")
        };
        let key = &keys[commit.repo];
        let verified = verifier.verify_commit(&commit, key).expect("verifies");
        ops += verified.ops.len();
    }
    ops
}

/// Where the 64 signature bytes start in a commit block.
fn sig_offset(block: &[u8]) -> usize {
    block
        .windows(6)
        .position(|w| w == [0x63, b's', b'i', b'g', 0x58, 0x40])
        .expect("sig")
        + 6
}

/// The commit block's `data` link.
fn commit_data(block: &[u8]) -> mst::DagCid {
    let ipld: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(block).expect("commit");
    let ipld_core::ipld::Ipld::Map(fields) = ipld else {
        panic!("commit is a map")
    };
    let Some(ipld_core::ipld::Ipld::Link(data)) = fields.get("data") else {
        panic!("data is a link")
    };
    mst::DagCid::from_bytes(&data.to_bytes()).expect("node CID")
}

fn to_op<'a>(op: &frame::RepoOp<'a>) -> mst::Op<'a> {
    let change = match (op.action, op.cid, op.prev) {
        (frame::Action::Create, Some(cid), _) => mst::Change::Create { cid },
        (frame::Action::Update, Some(cid), Some(prev)) => mst::Change::Update { cid, prev },
        (frame::Action::Delete, _, Some(prev)) => mst::Change::Delete { prev },
        _ => panic!("op shape"),
    };
    mst::Op {
        path: op.path,
        change,
    }
}

/// Runs `f` (one pass over `count` items) in `ROUNDS` rounds of `iters / ROUNDS` passes and
/// returns the best and the median rate, in items per second. The best round is the one
/// least disturbed by other work on the machine; the median shows the spread.
fn measure(count: usize, iters: usize, mut f: impl FnMut() -> usize) -> (f64, f64) {
    const ROUNDS: usize = 5;
    black_box(f());
    let per_round = iters.div_ceil(ROUNDS).max(1);
    let mut rates: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut checksum = 0usize;
            for _ in 0..per_round {
                checksum = checksum.wrapping_add(f());
            }
            black_box(checksum);
            (count * per_round) as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    (rates[ROUNDS - 1], rates[ROUNDS / 2])
}

fn report(label: &str, unit: &str, (best, median): (f64, f64)) {
    println!(
        "{label:>50}: {best:>8.0} {unit}/s best ({:>5.1} µs each), median {median:>8.0}/s",
        1e6 / best
    );
}

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("ITERATIONS is a number"))
        .unwrap_or(200);
    let frames = corpus_commit_frames();
    let keys = keys();
    println!(
        "{} #commit frames, {} keys, {iters} passes, one thread",
        frames.len(),
        keys.len()
    );

    for (label, mode) in [
        ("full verification", VerifyMode::Full),
        (
            "trusted mode (no signature, no inversion)",
            VerifyMode::Trusted,
        ),
    ] {
        let rates = measure(frames.len(), iters, || pass(&frames, &keys, mode));
        report(label, "commits", rates);
    }

    // Parts of the full pipeline, each alone over pre-decoded inputs.
    let decoded: Vec<_> = frames
        .iter()
        .map(|bytes| match frame::decode(bytes) {
            Ok(Frame::Commit(commit)) => commit,
            _ => panic!("commit frame"),
        })
        .collect();
    let cars: Vec<_> = decoded.iter().map(|c| c.car().expect("car")).collect();
    let datas: Vec<_> = decoded
        .iter()
        .zip(&cars)
        .map(|(commit, car)| commit_data(car.get(&commit.commit).expect("commit block")))
        .collect();
    let op_lists: Vec<Vec<mst::Op<'_>>> = decoded
        .iter()
        .map(|commit| commit.ops.iter().map(to_op).collect())
        .collect();
    let rates = measure(decoded.len(), iters, || {
        for ((commit, car), (data, ops)) in
            decoded.iter().zip(&cars).zip(datas.iter().zip(&op_lists))
        {
            let root = mst::invert_ops(car, *data, ops).expect("inverts");
            assert!(commit.prev_data.is_some_and(|p| root == p));
        }
        decoded.len()
    });
    report("part: MST inversion alone", "commits", rates);
    let signed: Vec<_> = decoded
        .iter()
        .zip(&cars)
        .map(|(commit, car)| {
            let block = car.get(&commit.commit).expect("commit block");
            let unsigned = verify::unsigned_commit_bytes(block).expect("commit");
            let sig: [u8; 64] = block[sig_offset(block)..][..64]
                .try_into()
                .expect("64 bytes");
            (&keys[commit.repo], unsigned, sig)
        })
        .collect();
    let rates = measure(signed.len(), iters, || {
        for (key, msg, sig) in &signed {
            key.verify(msg, sig).expect("verifies");
        }
        signed.len()
    });
    report(
        "part: PublicKey::verify (SHA-256, low-S, ECDSA)",
        "signatures",
        rates,
    );

    // The bound: libsecp256k1 alone over the same messages and signatures.
    let secp = secp256k1::Secp256k1::verification_only();
    let mut inputs = Vec::new();
    for bytes in &frames {
        let Ok(Frame::Commit(commit)) = frame::decode(bytes) else {
            continue;
        };
        let car = commit.car().expect("car");
        let block = car.get(&commit.commit).expect("commit block");
        let unsigned = verify::unsigned_commit_bytes(block).expect("commit");
        let digest: [u8; 32] = sha2::Sha256::digest(&unsigned).into();
        let sig_at = sig_offset(block);
        let sig =
            secp256k1::ecdsa::Signature::from_compact(&block[sig_at..sig_at + 64]).expect("sig");
        let PublicKey::K256(key) = keys[commit.repo] else {
            continue;
        };
        inputs.push((secp256k1::Message::from_digest(digest), sig, key));
    }
    let rates = measure(inputs.len(), iters, || {
        for (msg, sig, key) in &inputs {
            secp.verify_ecdsa(*msg, sig, key).expect("verifies");
        }
        inputs.len()
    });
    report(
        "bound: libsecp256k1 signature check alone",
        "signatures",
        rates,
    );
}
