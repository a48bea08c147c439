//! Deterministic mutation fuzzing of the decoders on stable Rust.
//!
//! Seeds are the corpus frames, their headers, bodies and blocks, and `repo.car`; each target
//! gets `ATELIER_FUZZ_ITERS` mutated inputs (default 20,000). A panic fails the test with the
//! reproducing input in hex. Inputs the strict validator accepts are also checked against an
//! independent decoder (`serde_ipld_dagcbor`): it must decode them and re-encode the same bytes.
//!
//! Long run: `ATELIER_FUZZ_ITERS=1000000 cargo test --release -p atelier-relay --test
//! fuzz_decode -- --nocapture`. `ATELIER_FUZZ_SEED` changes the seed.

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use atelier_relay::sync::car::Car;
use atelier_relay::sync::cbor;
use atelier_relay::sync::frame::{self, Frame};
use support::fuzz::{Rng, mutate};

fn iterations() -> usize {
    support::fuzz::iterations()
}

fn seed() -> u64 {
    support::fuzz::seed(0x5eed_a7e1_1e4e)
}

/// Runs `target` on `iters` mutations of `seeds`, failing on any panic with the input's hex.
/// Returns how many inputs the target accepted.
fn fuzz(name: &str, salt: u64, seeds: &[Vec<u8>], target: impl Fn(&[u8]) -> bool) -> usize {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let iters = iterations();
    let seed = seed() ^ salt;
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut accepted = 0;
    for i in 0..iters {
        let input = mutate(&mut rng, seeds);
        match catch_unwind(AssertUnwindSafe(|| target(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "{name}: panic at iteration {i} (seed {seed}) on input {}",
                support::hex(&input)
            ),
        }
    }
    println!(
        "{name}: {iters} inputs in {:.2?} ({accepted} accepted), seed {seed}",
        started.elapsed()
    );
    accepted
}

/// Every frame, its header and body, and every block of its CAR slice.
fn value_seeds(frames: &[Vec<u8>], repo: &[u8]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for f in frames {
        if let Ok((_, at)) = frame::decode_header(f) {
            seeds.push(f[..at].to_vec());
            seeds.push(f[at..].to_vec());
        }
        if let Ok(Frame::Commit(c)) = frame::decode(f)
            && let Ok(car) = c.car()
        {
            seeds.extend(car.blocks().map(|b| b.data.to_vec()));
        }
    }
    if let Ok(car) = Car::parse(repo) {
        seeds.extend(car.blocks().map(|b| b.data.to_vec()));
    }
    seeds
}

/// Accepted values must round-trip through the independent decoder unchanged.
fn differential(input: &[u8]) -> bool {
    if cbor::validate_dag_cbor(input).is_err() {
        return false;
    }
    let value: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(input)
        .unwrap_or_else(|e| panic!("accepted but serde_ipld_dagcbor rejects: {e}"));
    let again = serde_ipld_dagcbor::to_vec(&value).expect("re-encodes");
    assert_eq!(
        again, input,
        "accepted value does not re-encode identically"
    );
    true
}

#[test]
fn fuzz_validate_dag_cbor() {
    let frames = support::corpus_frames();
    let seeds = value_seeds(&frames, &support::corpus_repo_car());
    let accepted = fuzz("validate_dag_cbor", 1, &seeds, differential);
    assert!(accepted > 0, "the mutator should leave some inputs valid");
}

#[test]
fn fuzz_frame_decode() {
    let frames = support::corpus_frames();
    fuzz("frame::decode", 2, &frames, |input| {
        match frame::decode(input) {
            Ok(Frame::Commit(c)) => {
                // Go on into the CAR slice, as a consumer would.
                if let Ok(car) = c.car() {
                    for op in &c.ops {
                        if let Some(cid) = op.cid {
                            let _ = car.get(&cid);
                        }
                    }
                }
                let _ = format!("{:?}", c);
                true
            }
            Ok(other) => {
                let _ = (other.seq(), other.kind(), format!("{other:?}"));
                true
            }
            Err(e) => {
                let _ = e.to_string();
                false
            }
        }
    });
}

#[test]
fn fuzz_car_parse() {
    let frames = support::corpus_frames();
    let mut seeds: Vec<Vec<u8>> = frames
        .iter()
        .filter_map(|f| match frame::decode(f) {
            Ok(Frame::Commit(c)) => Some(c.blocks.to_vec()),
            _ => None,
        })
        .collect();
    seeds.push(support::corpus_repo_car());
    fuzz("Car::parse", 3, &seeds, |input| {
        let verified = Car::parse(input);
        let unverified = Car::parse_unverified(input);
        if let Ok(car) = &verified {
            // Verified parsing accepts a subset of what unverified parsing accepts.
            assert!(unverified.is_ok(), "verified but not unverified");
            for b in car.blocks() {
                assert!(car.get(&b.cid).is_some());
                let _ = (b.cid.to_string(), b.cid.to_cid());
            }
        }
        if let Err(e) = &verified {
            let _ = e.to_string();
        }
        verified.is_ok()
    });
}
