//! The real firehose corpus decodes completely: frame kinds and op counts equal the manifest,
//! sequence numbers are contiguous, every `#commit`'s CAR slice parses with all CIDs checked,
//! and `repo.car`'s commit block matches the expected DID, data CID and rev.

mod support;

use std::collections::BTreeMap;

use atelier_relay::sync::car::{Car, CarError};
use atelier_relay::sync::cbor::{self, CidRef, MapKeys, Reader};
use atelier_relay::sync::frame::{self, Action, Frame, FrameError};

fn manifest() -> serde_json::Value {
    let text = support::fixture_text("firehose-corpus/manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn manifest_count(m: &serde_json::Value, key: &str) -> u64 {
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("manifest.json has no integer `{key}`"))
}

#[test]
fn corpus_frames_match_the_manifest() {
    let m = manifest();
    let frames = support::corpus_frames();
    assert_eq!(
        frames.len() as u64,
        manifest_count(&m, "frames"),
        "frame count"
    );

    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut actions: BTreeMap<&str, u64> = BTreeMap::new();
    let mut seqs = Vec::new();
    let mut blocks_checked = 0usize;
    let mut records_found = 0usize;
    for (i, bytes) in frames.iter().enumerate() {
        let decoded = frame::decode(bytes).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        *kinds.entry(decoded.kind().to_owned()).or_default() += 1;
        if let Some(seq) = decoded.seq() {
            seqs.push(seq);
        }
        if let Frame::Commit(commit) = &decoded {
            let car = commit
                .car()
                .unwrap_or_else(|e| panic!("frame {i} CAR: {e}"));
            blocks_checked += car.len();
            assert_eq!(
                car.root(),
                Some(commit.commit),
                "frame {i}: roots[0] is the commit"
            );
            assert!(
                car.contains(&commit.commit),
                "frame {i}: commit block present"
            );
            for op in &commit.ops {
                *actions.entry(op.action.as_str()).or_default() += 1;
                assert!(
                    op.split_path().is_some(),
                    "frame {i}: op path {:?}",
                    op.path
                );
                match op.action {
                    Action::Create | Action::Update => {
                        let cid = op
                            .cid
                            .unwrap_or_else(|| panic!("frame {i}: {:?} without cid", op.action));
                        assert!(
                            car.contains(&cid),
                            "frame {i}: record {cid} for {} not in blocks",
                            op.path
                        );
                        records_found += 1;
                    }
                    Action::Delete => assert_eq!(op.cid, None, "frame {i}: delete with a cid"),
                }
            }
        }
    }
    println!(
        "kinds {kinds:?}; actions {actions:?}; {blocks_checked} blocks hashed; {records_found} records found"
    );

    let expect = [
        ("#commit", "commit_frames"),
        ("#identity", "identity"),
        ("#account", "account"),
    ];
    for (kind, key) in expect {
        assert_eq!(
            kinds.get(kind).copied().unwrap_or(0),
            manifest_count(&m, key),
            "{kind} frames"
        );
    }
    let known: u64 = expect
        .iter()
        .map(|(k, _)| kinds.get(*k).copied().unwrap_or(0))
        .sum();
    assert_eq!(
        known,
        frames.len() as u64,
        "no other frame kinds: {kinds:?}"
    );
    for (action, key) in [
        ("create", "creates"),
        ("update", "updates"),
        ("delete", "deletes"),
    ] {
        assert_eq!(
            actions.get(action).copied().unwrap_or(0),
            manifest_count(&m, key),
            "{action} ops"
        );
    }

    let first = manifest_count(&m, "seq_first") as i64;
    let last = manifest_count(&m, "seq_last") as i64;
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(
        seqs, expected,
        "sequence numbers are contiguous from seq_first to seq_last"
    );
}

/// Reads the commit block's `did`, `data` and `rev` (other fields are checked by key order).
fn commit_fields(block: &[u8]) -> (String, String, String) {
    let mut r = Reader::new(block);
    let mut keys = MapKeys::new();
    let (mut did, mut data, mut rev) = (None, None, None);
    for _ in 0..r.map_len().expect("commit is a map") {
        match keys.next(&mut r).expect("key") {
            "did" => did = Some(r.text().expect("did").to_owned()),
            "rev" => rev = Some(r.text().expect("rev").to_owned()),
            "data" => data = Some(r.link().expect("data").to_string()),
            _ => r.skip().expect("field"),
        }
    }
    r.finish().expect("one value");
    (did.expect("did"), data.expect("data"), rev.expect("rev"))
}

#[test]
fn repo_car_commit_matches_expected() {
    let bytes = support::corpus_repo_car();
    let car = Car::parse(&bytes).unwrap_or_else(|e| panic!("repo.car: {e}"));
    let root = car.root().expect("repo.car has a root");
    let block = car.get(&root).expect("root block present");
    cbor::validate_dag_cbor(block).expect("commit is strict DAG-CBOR");
    let (did, data, rev) = commit_fields(block);

    let expected = support::fixture_text("firehose-corpus/car_expected_commit.txt");
    let field = |name: &str| {
        expected
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("car_expected_commit.txt has no `{name}` line"))
            .to_owned()
    };
    assert_eq!(did, field("DID:"));
    assert_eq!(data, field("Data CID:"));
    assert_eq!(rev, field("Revision:"));
    let mut strict = 0;
    for b in car.blocks() {
        if b.cid.codec() == cbor::DAG_CBOR {
            cbor::validate_dag_cbor(b.data).unwrap_or_else(|e| panic!("block {}: {e}", b.cid));
            strict += 1;
        }
    }
    println!(
        "repo.car: {} blocks, {strict} strict DAG-CBOR, commit {root} rev {rev}",
        car.len()
    );
}

/// Every block of every corpus CAR slice, and every frame's header and body, is strict DAG-CBOR.
#[test]
fn corpus_values_are_strict_dag_cbor() {
    let mut values = 0;
    for (i, bytes) in support::corpus_frames().iter().enumerate() {
        let (_, body_at) = frame::decode_header(bytes).expect("header");
        cbor::validate_dag_cbor(&bytes[..body_at])
            .unwrap_or_else(|e| panic!("frame {i} header: {e}"));
        cbor::validate_dag_cbor(&bytes[body_at..])
            .unwrap_or_else(|e| panic!("frame {i} body: {e}"));
        values += 2;
        if let Ok(Frame::Commit(c)) = frame::decode(bytes) {
            for b in c.car().expect("car").blocks() {
                cbor::validate_dag_cbor(b.data)
                    .unwrap_or_else(|e| panic!("frame {i} block {}: {e}", b.cid));
                values += 1;
            }
        }
    }
    println!("{values} corpus values are strict DAG-CBOR");
}

/// A flipped byte in a block is a CID mismatch naming the block's CID.
#[test]
fn flipped_block_byte_names_the_cid() {
    let frames = support::corpus_frames();
    let mut checked = 0;
    for bytes in &frames {
        let Ok(Frame::Commit(c)) = frame::decode(bytes) else {
            continue;
        };
        let car = c.car().expect("car");
        for block in car.blocks() {
            // Flip the last byte of this block inside a copy of the CAR slice.
            let offset =
                block.data.as_ptr() as usize - c.blocks.as_ptr() as usize + block.data.len() - 1;
            let mut tampered = c.blocks.to_vec();
            tampered[offset] ^= 0x01;
            match Car::parse(&tampered) {
                Err(CarError::CidMismatch { cid, .. }) => assert_eq!(cid, block.cid.to_string()),
                other => panic!("expected a CID mismatch for {}, got {other:?}", block.cid),
            }
            assert!(
                Car::parse_unverified(&tampered).is_ok(),
                "unverified parsing skips hashing"
            );
            checked += 1;
        }
        if checked > 200 {
            break;
        }
    }
    println!("{checked} tampered blocks rejected");
    assert!(checked > 0);
}

/// A frame cut short reports exactly where input ran out or which length overran.
#[test]
fn truncated_frames_give_precise_errors() {
    let frames = support::corpus_frames();
    let mut cuts = 0;
    for bytes in frames.iter().take(20) {
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let err = frame::decode(&bytes[..cut]).expect_err("truncated frame must fail");
            let precise = match &err {
                FrameError::Cbor { source, .. } => matches!(
                    source,
                    cbor::CborError::UnexpectedEof { at } | cbor::CborError::LengthTooLarge { at, .. } if *at <= cut
                ),
                _ => false,
            };
            assert!(precise, "cut at {cut}: {err}");
            cuts += 1;
        }
    }
    // The whole-frame case: a frame's header alone has no body.
    let (_, body_at) = frame::decode_header(&frames[0]).expect("header");
    let err = frame::decode(&frames[0][..body_at]).expect_err("no body");
    assert!(
        matches!(err, FrameError::Cbor { source: cbor::CborError::UnexpectedEof { at }, .. } if at == body_at),
        "{err}"
    );
    println!("{cuts} truncations rejected precisely");
}

/// Limits are enforced with typed errors.
#[test]
fn limits_are_enforced() {
    let frames = support::corpus_frames();
    let (big, ops) = frames
        .iter()
        .filter_map(|b| match frame::decode(b) {
            Ok(Frame::Commit(c)) => Some((b, c.ops.len())),
            _ => None,
        })
        .max_by_key(|(_, n)| *n)
        .expect("a commit");
    let limits = frame::Limits {
        max_ops: ops - 1,
        ..frame::Limits::default()
    };
    assert_eq!(
        frame::decode_with(big, &limits),
        Err(FrameError::TooManyOps {
            count: ops,
            max: ops - 1
        })
    );
    let limits = frame::Limits {
        max_frame_bytes: big.len() - 1,
        ..frame::Limits::default()
    };
    assert!(matches!(
        frame::decode_with(big, &limits),
        Err(FrameError::FrameTooLarge { .. })
    ));
    let limits = frame::Limits {
        max_commit_blocks_bytes: 10,
        ..frame::Limits::default()
    };
    assert!(matches!(
        frame::decode_with(big, &limits),
        Err(FrameError::BlocksTooLarge { .. })
    ));

    let car = support::corpus_repo_car();
    let parsed = Car::parse(&car).expect("repo.car");
    let few = atelier_relay::sync::car::CarLimits {
        max_blocks: parsed.len() - 1,
        ..Default::default()
    };
    assert!(matches!(
        Car::parse_with(&car, &few, true),
        Err(CarError::TooManyBlocks { .. })
    ));
    let small = atelier_relay::sync::car::CarLimits {
        max_block_bytes: 64,
        ..Default::default()
    };
    assert!(matches!(
        Car::parse_with(&car, &small, true),
        Err(CarError::BlockTooLarge { .. })
    ));
    // CidRef round trip against the owned cid crate on real CIDs.
    let root: CidRef<'_> = parsed.root().expect("root");
    assert_eq!(root.to_cid().to_string(), root.to_string());
}

/// A relay re-serves upstream frames under its own seq: only `seq` changes, so every frame
/// still decodes to the same message and every commit still verifies.
#[test]
fn frames_resequenced_keep_everything_but_seq() {
    use atelier_relay::sync::frame::with_seq;

    let frames = support::corpus_frames();
    // Small, mid-sized and large seqs exercise every integer width.
    for (i, original) in frames.iter().enumerate() {
        for seq in [1_i64, 24, 300, 70_000, 5_000_000_000] {
            let moved = with_seq(original, seq).expect("resequences");
            let (a, b) = (
                frame::decode(original).expect("decodes"),
                frame::decode(&moved).expect("decodes"),
            );
            assert_eq!(b.seq(), Some(seq), "frame {i}");
            atelier_relay::sync::cbor::validate_dag_cbor(
                &moved[frame::decode_header(&moved).expect("header").1..],
            )
            .expect("the body is still strict DAG-CBOR");
            match (a, b) {
                (Frame::Commit(a), Frame::Commit(b)) => {
                    assert_eq!(
                        (a.repo, a.rev, a.commit, a.blocks),
                        (b.repo, b.rev, b.commit, b.blocks)
                    );
                    assert_eq!(a.ops, b.ops);
                }
                (a, b) => assert_eq!(a.kind(), b.kind(), "frame {i}"),
            }
        }
    }
    assert!(with_seq(&frames[0], 0).is_err(), "seq must be positive");
    assert!(
        with_seq(b"\xa1\x62op\x01", 5).is_err(),
        "garbage is refused"
    );
}
