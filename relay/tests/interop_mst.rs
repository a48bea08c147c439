//! MST checks against the atproto interop fixtures (`mst/*`, `firehose/commit-proof-fixtures.json`)
//! and the corpus's full repository export (`repo.car`).

mod support;

use std::collections::HashMap;

use atelier_relay::sync::car::Car;
use atelier_relay::sync::cbor::CidRef;
use atelier_relay::sync::frame::{self, Frame};
use atelier_relay::sync::mst::{
    self, Change, DagCid, MstError, NoBlocks, Op, Tree, common_prefix_len, key_depth,
};
use serde::Deserialize;

/// The root of the empty tree, `{e: [], l: null}`.
const EMPTY_ROOT: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

fn cid_bytes(s: &str) -> Vec<u8> {
    cid::Cid::try_from(s)
        .unwrap_or_else(|e| panic!("CID {s}: {e}"))
        .to_bytes()
}

fn node_cid(s: &str) -> DagCid {
    DagCid::from_bytes(&cid_bytes(s)).unwrap_or_else(|| panic!("{s} is not a node CID"))
}

fn json<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    let path = support::interop_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

#[derive(Deserialize)]
struct KeyHeight {
    key: String,
    height: u8,
}

#[test]
fn key_heights() {
    let cases: Vec<KeyHeight> = json("mst/key_heights.json");
    for case in &cases {
        assert_eq!(
            key_depth(case.key.as_bytes()),
            case.height,
            "{:?}",
            case.key
        );
    }
    println!("key heights: {} checked", cases.len());
    assert_eq!(cases.len(), 9);
}

#[derive(Deserialize)]
struct CommonPrefix {
    left: String,
    right: String,
    len: usize,
}

#[test]
fn common_prefixes() {
    let cases: Vec<CommonPrefix> = json("mst/common_prefix.json");
    for case in &cases {
        let got = common_prefix_len(case.left.as_bytes(), case.right.as_bytes());
        assert_eq!(got, case.len, "{:?} {:?}", case.left, case.right);
    }
    println!("common prefixes: {} checked", cases.len());
    assert_eq!(cases.len(), 13);
}

/// A deterministic shuffle (xorshift), so orders differ between rounds but reproduce.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// Builds a tree of `keys`, all mapped to `value`.
fn build<'a>(keys: &[&str], value: CidRef<'a>) -> Tree<'a, NoBlocks> {
    let mut tree = Tree::empty(NoBlocks);
    for key in keys {
        assert_eq!(tree.insert(key.as_bytes(), value).unwrap(), None, "{key}");
    }
    tree
}

/// Walks `tree` through its own encoded blocks.
fn walk_keys(tree: &mut Tree<'_, NoBlocks>) -> Vec<String> {
    let blocks = tree.node_blocks();
    let map: HashMap<DagCid, &[u8]> = blocks.iter().map(|(c, b)| (*c, b.as_slice())).collect();
    let root = tree.root_cid();
    mst::walk(&map, root)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn example_keys_build_one_canonical_tree() {
    let text =
        std::fs::read_to_string(support::interop_dir().join("mst/example_keys.txt")).unwrap();
    let keys: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let value_bytes = cid_bytes("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454");
    let value = CidRef::from_bytes(&value_bytes).unwrap();

    let mut reference = build(&keys, value);
    let root = reference.root_cid();
    let mut sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(walk_keys(&mut reference), sorted);

    let rounds = 20;
    for round in 0..rounds {
        // Any insertion order gives the same tree.
        let mut order = keys.clone();
        shuffle(&mut order, 0x1234 + round);
        let mut tree = build(&order, value);
        assert_eq!(tree.root_cid(), root, "round {round}");

        // Removing half gives the tree of the other half, and every lookup agrees.
        shuffle(&mut order, 0x9876 + round);
        let (gone, kept) = order.split_at(order.len() / 2);
        for key in gone {
            assert_eq!(tree.remove(key.as_bytes()).unwrap(), Some(value), "{key}");
            assert_eq!(tree.remove(key.as_bytes()).unwrap(), None, "{key} twice");
        }
        assert_eq!(
            tree.root_cid(),
            build(kept, value).root_cid(),
            "round {round}"
        );
        for key in gone {
            assert_eq!(tree.get(key.as_bytes()).unwrap(), None);
        }
        for key in kept {
            assert_eq!(tree.get(key.as_bytes()).unwrap(), Some(value));
        }
        // Removing the rest gives the empty tree.
        for key in kept {
            assert_eq!(tree.remove(key.as_bytes()).unwrap(), Some(value), "{key}");
        }
        assert_eq!(tree.root_cid(), node_cid(EMPTY_ROOT));
    }
    println!(
        "example keys: {} keys, {rounds} insertion orders and removals agree on {root}",
        keys.len()
    );
    assert_eq!(keys.len(), 156);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProofCase {
    comment: String,
    leaf_value: String,
    keys: Vec<String>,
    adds: Vec<String>,
    dels: Vec<String>,
    root_before_commit: String,
    root_after_commit: String,
    blocks_in_proof: Vec<String>,
}

#[test]
fn commit_proof_fixtures() {
    let cases: Vec<ProofCase> = json("firehose/commit-proof-fixtures.json");
    let mut inverted = 0;
    let mut loaded_total = 0;
    let mut proof_total = 0;
    for case in &cases {
        let value_bytes = cid_bytes(&case.leaf_value);
        let value = CidRef::from_bytes(&value_bytes).unwrap();
        let keys: Vec<&str> = case.keys.iter().map(String::as_str).collect();

        // Forward: build, check the root, apply the commit, check the new root.
        let mut tree = build(&keys, value);
        assert_eq!(
            tree.root_cid(),
            node_cid(&case.root_before_commit),
            "{}: before",
            case.comment
        );
        for key in &case.adds {
            assert_eq!(
                tree.insert(key.as_bytes(), value).unwrap(),
                None,
                "{}",
                case.comment
            );
        }
        for key in &case.dels {
            assert_eq!(
                tree.remove(key.as_bytes()).unwrap(),
                Some(value),
                "{}",
                case.comment
            );
        }
        let after = tree.root_cid();
        assert_eq!(
            after,
            node_cid(&case.root_after_commit),
            "{}: after",
            case.comment
        );

        // Backward: only the proof's blocks, and the inversion must reach the old root.
        let all_blocks: HashMap<DagCid, Vec<u8>> = tree.node_blocks().into_iter().collect();
        let proof: HashMap<DagCid, &[u8]> = case
            .blocks_in_proof
            .iter()
            .map(|c| {
                let cid = node_cid(c);
                let bytes = all_blocks
                    .get(&cid)
                    .unwrap_or_else(|| panic!("{}: proof block {c} not in the tree", case.comment));
                (cid, bytes.as_slice())
            })
            .collect();
        let ops = ops_for(case, value);
        let root = mst::invert_ops(&proof, after, &ops)
            .unwrap_or_else(|e| panic!("{}: inversion failed: {e}", case.comment));
        assert_eq!(
            root,
            node_cid(&case.root_before_commit),
            "{}: inverted",
            case.comment
        );

        // The blocks inversion actually used are all in the proof.
        let mut used = Tree::load(&proof, after).unwrap();
        invert_on(&mut used, &ops);
        loaded_total += used.loaded_nodes();
        proof_total += proof.len();
        inverted += 1;

        // Without the new root's block, inversion cannot start.
        let mut without_root = proof.clone();
        without_root.remove(&after);
        assert_eq!(
            mst::invert_ops(&without_root, after, &ops),
            Err(MstError::MissingBlock(after)),
            "{}",
            case.comment
        );
    }
    println!(
        "commit proofs: {} cases, {inverted} inverted to rootBeforeCommit from the proof blocks alone ({loaded_total} node loads over {proof_total} proof blocks)",
        cases.len()
    );
    assert_eq!(inverted, cases.len());
    assert_eq!(cases.len(), 6);
}

fn ops_for<'a>(case: &'a ProofCase, value: CidRef<'a>) -> Vec<Op<'a>> {
    let mut ops = Vec::new();
    for key in &case.adds {
        ops.push(Op {
            path: key,
            change: Change::Create { cid: value },
        });
    }
    for key in &case.dels {
        ops.push(Op {
            path: key,
            change: Change::Delete { prev: value },
        });
    }
    ops
}

fn invert_on<'a>(tree: &mut Tree<'a, &HashMap<DagCid, &'a [u8]>>, ops: &[Op<'a>]) {
    for op in ops {
        match op.change {
            Change::Create { .. } => {
                tree.remove(op.path.as_bytes()).unwrap();
            }
            Change::Delete { prev } | Change::Update { prev, .. } => {
                tree.insert(op.path.as_bytes(), prev).unwrap();
            }
        }
    }
}

#[test]
fn inversion_rejects_wrong_ops() {
    let cases: Vec<ProofCase> = json("firehose/commit-proof-fixtures.json");
    let case = &cases[0];
    let value_bytes = cid_bytes(&case.leaf_value);
    let value = CidRef::from_bytes(&value_bytes).unwrap();
    let other_bytes = cid_bytes(EMPTY_ROOT);
    let other = CidRef::from_bytes(&other_bytes).unwrap();
    let keys: Vec<&str> = case.keys.iter().map(String::as_str).collect();
    let mut tree = build(&keys, value);
    for key in &case.adds {
        tree.insert(key.as_bytes(), value).unwrap();
    }
    let after = tree.root_cid();
    let blocks: HashMap<DagCid, Vec<u8>> = tree.node_blocks().into_iter().collect();
    let all: HashMap<DagCid, &[u8]> = blocks.iter().map(|(c, b)| (*c, b.as_slice())).collect();
    let existing = keys[0];
    let added = case.adds[0].as_str();

    let check = |ops: &[Op<'_>], expected: MstError| {
        assert_eq!(mst::invert_ops(&all, after, ops), Err(expected), "{ops:?}");
    };
    // A create whose record CID is not the tree's value.
    check(
        &[Op {
            path: added,
            change: Change::Create { cid: other },
        }],
        MstError::ValueMismatch(added.into()),
    );
    // A create of a key that is not in the tree.
    check(
        &[Op {
            path: "Z9/000000",
            change: Change::Create { cid: value },
        }],
        MstError::KeyNotFound("Z9/000000".into()),
    );
    // A delete of a key that is still in the tree.
    check(
        &[Op {
            path: existing,
            change: Change::Delete { prev: value },
        }],
        MstError::KeyPresent(existing.into()),
    );
    // An update whose new CID is not the tree's value.
    check(
        &[Op {
            path: existing,
            change: Change::Update {
                cid: other,
                prev: value,
            },
        }],
        MstError::ValueMismatch(existing.into()),
    );
    // The same path twice.
    check(
        &[
            Op {
                path: added,
                change: Change::Create { cid: value },
            },
            Op {
                path: added,
                change: Change::Delete { prev: value },
            },
        ],
        MstError::DuplicatePath(added.into()),
    );
    // A correct inversion that reaches a root other than the fixture's (an update).
    let root = mst::invert_ops(
        &all,
        after,
        &[Op {
            path: existing,
            change: Change::Update {
                cid: value,
                prev: other,
            },
        }],
    )
    .unwrap();
    assert_ne!(root, after);
}

#[test]
fn repo_car_walk_matches_expected_records() {
    let bytes = support::corpus_repo_car();
    let car = Car::parse(&bytes).unwrap();
    let commit_cid = car.root().unwrap();
    let commit = car.get(&commit_cid).expect("commit block");
    let commit: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(commit).unwrap();
    let ipld_core::ipld::Ipld::Map(fields) = commit else {
        panic!("commit is not a map")
    };
    let ipld_core::ipld::Ipld::Link(data) = &fields["data"] else {
        panic!("commit.data is not a link")
    };
    let ipld_core::ipld::Ipld::String(rev) = &fields["rev"] else {
        panic!("commit.rev is not text")
    };
    let ipld_core::ipld::Ipld::String(did) = &fields["did"] else {
        panic!("commit.did is not text")
    };

    let expected_commit = support::fixture_text("firehose-corpus/car_expected_commit.txt");
    let field = |name: &str| {
        expected_commit
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_owned()
    };
    assert_eq!(data.to_string(), field("Data CID:"));
    assert_eq!(rev, &field("Revision:"));
    assert_eq!(did, &field("DID:"));

    let root = DagCid::from_bytes(&data.to_bytes()).unwrap();
    let records = mst::walk(&car, root).unwrap();
    let expected = support::fixture_text("firehose-corpus/car_expected_records.tsv");
    let expected: Vec<(String, String)> = expected
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').expect("key<TAB>cid");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let got: Vec<(String, String)> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    assert_eq!(got, expected);
    println!(
        "repo.car: {} records walked from {} (rev {rev}), all {} expected",
        got.len(),
        field("Data CID:"),
        expected.len()
    );
    assert_eq!(expected.len(), 23);

    // Every record in the walk is present; the tree loaded with this CAR has the same root.
    for (_, cid) in &records {
        assert!(car.get(cid).is_some());
    }
    let mut tree = Tree::load(&car, root).unwrap();
    for (key, cid) in &records {
        assert_eq!(tree.get(key.as_bytes()).unwrap(), Some(*cid));
    }
    assert_eq!(tree.root_cid(), root);
}

/// Every MST node in `repo.car` and in the corpus commits' CAR slices re-encodes to its
/// original bytes (so the hand-written encoder is canonical).
#[test]
fn encoder_reproduces_real_nodes() {
    let mut nodes = 0;
    let mut check_car = |car: &Car<'_>| {
        for block in car.blocks() {
            // Records and commits do not have the node shape; MST nodes must round-trip.
            if let Ok(again) = mst::reencode_node(block.data) {
                assert_eq!(again, block.data, "node {}", block.cid);
                nodes += 1;
            }
        }
    };
    let repo = support::corpus_repo_car();
    check_car(&Car::parse(&repo).unwrap());
    let frames = support::corpus_frames();
    let mut commits = 0;
    for bytes in &frames {
        if let Ok(Frame::Commit(commit)) = frame::decode(bytes) {
            check_car(&commit.car().unwrap());
            commits += 1;
        }
    }
    println!(
        "encoder: {nodes} MST nodes from repo.car and {commits} commits re-encode byte for byte"
    );
    assert_eq!(commits, 148);
    assert!(nodes > 148, "every commit carries at least its root node");
}

#[test]
fn malformed_nodes_are_rejected() {
    let value = cid_bytes("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454");
    let value = CidRef::from_bytes(&value).unwrap();
    let mut tree = build(&["A0/374913", "B1/986427", "C0/451630"], value);
    let blocks = tree.node_blocks();
    let (_, root_bytes) = &blocks[0];
    // A truncated node, and one with a trailing byte.
    assert!(mst::reencode_node(&root_bytes[..root_bytes.len() - 1]).is_err());
    let mut extended = root_bytes.clone();
    extended.push(0);
    assert!(matches!(
        mst::reencode_node(&extended),
        Err(MstError::Cbor { .. })
    ));
    // The empty node is the empty tree; a record is not a node.
    let empty = [0xa2, 0x61, b'e', 0x80, 0x61, b'l', 0xf6];
    assert_eq!(mst::reencode_node(&empty).unwrap(), empty);
    assert_eq!(DagCid::of_block(&empty), node_cid(EMPTY_ROOT));
    assert!(matches!(
        mst::reencode_node(&[0xa1, 0x61, b'a', 0x01]),
        Err(MstError::Shape { .. })
    ));

    // Keys of two depths in one node ("asdf" has depth 0, "blue" depth 1).
    let mixed = hand_node(&[("asdf", 0), ("blue", 0)], &value_bytes_for_tests());
    assert!(matches!(
        mst::reencode_node(&mixed),
        Err(MstError::WrongDepth {
            depth: 1,
            height: 0,
            ..
        })
    ));
    // A non-canonical prefix length: "abc" then "abd" written with p = 0.
    // (All keys below have depth 0.)
    let uncompressed = hand_node(&[("abc", 0), ("abd", 0)], &value_bytes_for_tests());
    assert_eq!(
        mst::reencode_node(&uncompressed).unwrap_err().to_string(),
        format!(
            "MST node {}: prefix length is not the common prefix",
            DagCid::of_block(&uncompressed)
        )
    );
    // Keys out of order: "abd", then "ab" + "c".
    let unordered = hand_node(&[("abd", 0), ("c", 2)], &value_bytes_for_tests());
    assert!(matches!(
        mst::reencode_node(&unordered),
        Err(MstError::KeyOrder {
            what: "keys not strictly increasing",
            ..
        })
    ));
    let correct = hand_node(&[("abc", 0), ("d", 2)], &value_bytes_for_tests());
    assert_eq!(mst::reencode_node(&correct).unwrap(), correct);
}

fn value_bytes_for_tests() -> Vec<u8> {
    cid_bytes("bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454")
}

/// Encodes a leaf-only node with the given (key suffix, prefix length) entries using an
/// independent encoder.
fn hand_node(entries: &[(&str, u64)], value: &[u8]) -> Vec<u8> {
    use ipld_core::ipld::Ipld;
    use std::collections::BTreeMap;
    let link = Ipld::Link(cid::Cid::try_from(value).unwrap());
    let entries = entries
        .iter()
        .map(|(k, p)| {
            Ipld::Map(BTreeMap::from([
                ("k".to_owned(), Ipld::Bytes(k.as_bytes().to_vec())),
                ("p".to_owned(), Ipld::Integer((*p).into())),
                ("t".to_owned(), Ipld::Null),
                ("v".to_owned(), link.clone()),
            ]))
        })
        .collect();
    let node = Ipld::Map(BTreeMap::from([
        ("e".to_owned(), Ipld::List(entries)),
        ("l".to_owned(), Ipld::Null),
    ]));
    serde_ipld_dagcbor::to_vec(&node).unwrap()
}

#[test]
fn entries_per_node_are_capped() {
    // Depth-0 keys only: they all land in the root, one node.
    let value_bytes = value_bytes_for_tests();
    let value = CidRef::from_bytes(&value_bytes).unwrap();
    let keys: Vec<String> = (0..)
        .map(|i| format!("app.test.cap/{i:08}"))
        .filter(|k| key_depth(k.as_bytes()) == 0)
        .take(mst::MAX_NODE_ENTRIES + 1)
        .collect();
    let mut tree = Tree::empty(NoBlocks);
    for key in &keys[..mst::MAX_NODE_ENTRIES] {
        tree.insert(key.as_bytes(), value).unwrap();
    }
    let blocks = tree.node_blocks();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        mst::reencode_node(&blocks[0].1).unwrap(),
        blocks[0].1,
        "at the cap"
    );
    tree.insert(keys[mst::MAX_NODE_ENTRIES].as_bytes(), value)
        .unwrap();
    let blocks = tree.node_blocks();
    assert!(matches!(
        mst::reencode_node(&blocks[0].1),
        Err(MstError::TooManyEntries { entries, .. }) if entries == mst::MAX_NODE_ENTRIES + 1
    ));
}
