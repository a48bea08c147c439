//! Deterministic mutation fuzzing of MST node decoding, tree walks, inversion, and commit
//! verification: no input may panic.
//!
//! Seeds are the corpus's MST nodes and `#commit` frames. Each target gets
//! `ATELIER_FUZZ_ITERS` inputs (default 20,000); a panic fails the test with the seed and
//! iteration. Node inputs the decoder accepts must re-encode to the same bytes.
//!
//! Long run: `ATELIER_FUZZ_ITERS=1000000 cargo test --release -p atelier-relay --test
//! fuzz_mst -- --nocapture`. `ATELIER_FUZZ_SEED` changes the seed.

mod support;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use atelier_relay::sync::car::Car;
use atelier_relay::sync::cbor::CidRef;
use atelier_relay::sync::frame::{self, Action, Commit, Frame};
use atelier_relay::sync::keys::PublicKey;
use atelier_relay::sync::mst::{self, Change, DagCid, Op, Tree};
use atelier_relay::sync::verify::{Verifier, VerifyMode};
use support::fuzz::{Rng, mutate};

fn iterations() -> usize {
    support::fuzz::iterations()
}

fn seed() -> u64 {
    support::fuzz::seed(0x006d_5700_f022)
}

/// Runs `target` `iterations()` times with a fresh generator, failing on any panic.
/// `target` gets the generator and returns whether its input was accepted.
fn fuzz(name: &str, salt: u64, mut target: impl FnMut(&mut Rng) -> bool) -> (usize, usize) {
    let iters = iterations();
    let seed = seed() ^ salt;
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut accepted = 0;
    for i in 0..iters {
        match catch_unwind(AssertUnwindSafe(|| target(&mut rng))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(_) => panic!("{name}: panic at iteration {i} (seed {seed})"),
        }
    }
    println!(
        "{name}: {iters} inputs in {:.2?} ({accepted} accepted), seed {seed}",
        started.elapsed()
    );
    (iters, accepted)
}

struct Corpus {
    frames: Vec<Vec<u8>>,
    keys: HashMap<String, PublicKey>,
}

impl Corpus {
    fn load() -> Self {
        let frames = support::corpus_frames()
            .into_iter()
            .filter(|f| matches!(frame::decode(f), Ok(Frame::Commit(_))))
            .collect();
        let packed = support::fixture_bytes("firehose-corpus/did_docs.json.zst");
        let docs: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&zstd::decode_all(&packed[..]).unwrap()).unwrap();
        let keys = docs
            .into_iter()
            .map(|(did, doc)| {
                let key = PublicKey::from_did_document(&doc).unwrap();
                (did, key)
            })
            .collect();
        Corpus { frames, keys }
    }

    fn commits(&self) -> Vec<Commit<'_>> {
        self.frames
            .iter()
            .filter_map(|f| match frame::decode(f) {
                Ok(Frame::Commit(c)) => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Every MST node block in the commits' CARs and in `repo.car`.
    fn nodes(&self, repo: &[u8]) -> Vec<Vec<u8>> {
        let mut nodes = Vec::new();
        let mut add = |car: &Car<'_>| {
            for block in car.blocks() {
                if mst::reencode_node(block.data).is_ok() {
                    nodes.push(block.data.to_vec());
                }
            }
        };
        add(&Car::parse(repo).unwrap());
        for commit in self.commits() {
            add(&commit.car().unwrap());
        }
        nodes
    }
}

/// A node decoded on its own re-encodes to itself; loaded as a root, it walks or fails.
#[test]
fn node_bytes() {
    let corpus = Corpus::load();
    let seeds = corpus.nodes(&support::corpus_repo_car());
    assert!(seeds.len() > 1000, "{} node seeds", seeds.len());
    let (_, accepted) = fuzz("mst node decode", 1, |rng| {
        let input = mutate(rng, &seeds);
        let decoded = mst::reencode_node(&input);
        if let Ok(again) = &decoded {
            assert_eq!(again, &input, "accepted node must be canonical");
        }
        let cid = DagCid::of_block(&input);
        let blocks: HashMap<DagCid, &[u8]> = HashMap::from([(cid, input.as_slice())]);
        // A lone root: its subtrees are missing, so a walk ends in an error or succeeds
        // for a leaf-only node; neither may panic.
        let _ = mst::walk(&blocks, cid);
        if let Ok(mut tree) = Tree::load(&blocks, cid) {
            let _ = tree.get(b"app.bsky.feed.post/3lqdkdjpy6t2e");
            let _ = tree.remove(b"app.bsky.feed.like/3lqdkdjpy6t2e");
            let _ = tree.root_cid();
        }
        decoded.is_ok()
    });
    assert!(accepted > 0, "some mutations keep a valid node");
}

/// Inversion on real commits whose MST blocks are mutated in place (served under their
/// original CIDs, so the damage reaches the tree code rather than the CID check).
#[test]
fn inversion_on_damaged_trees() {
    let corpus = Corpus::load();
    let commits = corpus.commits();
    let prepared: Vec<_> = commits
        .iter()
        .map(|c| {
            let car = c.car().unwrap();
            let data = commit_data(&car, c.commit);
            let blocks: Vec<(DagCid, Vec<u8>)> = car
                .blocks()
                .filter_map(|b| Some((DagCid::from_cid_ref(&b.cid)?, b.data.to_vec())))
                .collect();
            let ops: Vec<Op<'_>> = c.ops.iter().filter_map(to_op).collect();
            (data, blocks, ops)
        })
        .collect();
    let node_seeds = corpus.nodes(&support::corpus_repo_car());
    fuzz("mst inversion, damaged nodes", 2, |rng| {
        let (data, blocks, ops) = &prepared[rng.below(prepared.len())];
        let mut blocks = blocks.clone();
        let victims = 1 + rng.below(2);
        for _ in 0..victims {
            let i = rng.below(blocks.len());
            // Mutations may splice in bytes from another real node.
            let other = node_seeds[rng.below(node_seeds.len())].clone();
            blocks[i].1 = mutate(rng, &[blocks[i].1.clone(), other]);
        }
        let map: HashMap<DagCid, &[u8]> = blocks.iter().map(|(c, b)| (*c, b.as_slice())).collect();
        mst::invert_ops(&map, *data, ops).is_ok()
    });
}

/// Whole `#commit` frames, mutated as bytes, through frame decoding and full verification.
#[test]
fn commit_frames() {
    let corpus = Corpus::load();
    let fallback = corpus.keys.values().next().unwrap().clone();
    // Accepted inputs are mutations of fields no signature covers (`seq`, `time`).
    fuzz("verify_commit, mutated frames", 3, |rng| {
        let input = mutate(rng, &corpus.frames);
        let Ok(Frame::Commit(commit)) = frame::decode(&input) else {
            return false;
        };
        let key = corpus.keys.get(commit.repo).unwrap_or(&fallback);
        let full = Verifier::new(VerifyMode::Full)
            .verify_commit(&commit, key)
            .is_ok();
        let _ = Verifier::new(VerifyMode::Trusted).verify_commit(&commit, key);
        full
    });
}

/// Real commits with their ops, prevData, since and rev altered: deeper paths than byte
/// mutations reach, since the CAR stays intact.
#[test]
fn commit_fields() {
    let corpus = Corpus::load();
    let commits = corpus.commits();
    let all_ops: Vec<_> = commits.iter().flat_map(|c| c.ops.iter().copied()).collect();
    let cids: Vec<CidRef<'_>> = commits
        .iter()
        .flat_map(|c| {
            [Some(c.commit)]
                .into_iter()
                .chain(c.prev_data.map(Some))
                .flatten()
        })
        .chain(all_ops.iter().filter_map(|op| op.cid))
        .collect();
    let revs: Vec<&str> = commits.iter().map(|c| c.rev).collect();
    fuzz("verify_commit, altered fields", 4, |rng| {
        let mut commit = commits[rng.below(commits.len())].clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(8) {
                0 => commit.ops.push(all_ops[rng.below(all_ops.len())]),
                1 if !commit.ops.is_empty() => {
                    let i = rng.below(commit.ops.len());
                    commit.ops.remove(i);
                }
                2 if !commit.ops.is_empty() => {
                    let i = rng.below(commit.ops.len());
                    commit.ops[i].action =
                        [Action::Create, Action::Update, Action::Delete][rng.below(3)];
                }
                3 if !commit.ops.is_empty() => {
                    let i = rng.below(commit.ops.len());
                    commit.ops[i].cid = rng.one_in(3).then(|| cids[rng.below(cids.len())]);
                    commit.ops[i].prev = rng.one_in(2).then(|| cids[rng.below(cids.len())]);
                }
                4 if !commit.ops.is_empty() => {
                    let i = rng.below(commit.ops.len());
                    commit.ops[i].path = all_ops[rng.below(all_ops.len())].path;
                }
                5 => commit.prev_data = rng.one_in(4).then(|| cids[rng.below(cids.len())]),
                6 => commit.since = rng.one_in(3).then(|| revs[rng.below(revs.len())]),
                _ => commit.rev = revs[rng.below(revs.len())],
            }
        }
        let key = &corpus.keys[commit.repo];
        let mut verifier = Verifier::new(VerifyMode::Full);
        let ok = verifier.verify_commit(&commit, key).is_ok();
        // A second look with state present exercises the chain checks.
        let _ = verifier.verify_commit(&commit, key);
        ok
    });
}

fn commit_data(car: &Car<'_>, commit: CidRef<'_>) -> DagCid {
    let block = car.get(&commit).unwrap();
    let ipld: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(block).unwrap();
    let ipld_core::ipld::Ipld::Map(fields) = ipld else {
        panic!("commit is a map")
    };
    let ipld_core::ipld::Ipld::Link(data) = &fields["data"] else {
        panic!("data is a link")
    };
    DagCid::from_bytes(&data.to_bytes()).unwrap()
}

fn to_op<'a>(op: &frame::RepoOp<'a>) -> Option<Op<'a>> {
    let change = match op.action {
        Action::Create => Change::Create { cid: op.cid? },
        Action::Update => Change::Update {
            cid: op.cid?,
            prev: op.prev?,
        },
        Action::Delete => Change::Delete { prev: op.prev? },
    };
    Some(Op {
        path: op.path,
        change,
    })
}
