//! Full sync 1.1 verification of the real firehose corpus, and fault cases built from it:
//! every `#commit` verifies with its account's key from `did_docs.json.zst`, and each
//! corruption is rejected with its own reason.

mod support;

use std::collections::HashMap;

use atelier_relay::sync::cbor::{self, CidRef};
use atelier_relay::sync::frame::{self, Action, Commit, Frame, Sync};
use atelier_relay::sync::keys::{Curve, PublicKey};
use atelier_relay::sync::mst::{self, DagCid};
use atelier_relay::sync::verify::{
    self, AccountState, KeySource, MapKeySource, SyncOutcome, SyncStatus, Verifier, VerifyError,
    VerifyMode,
};

/// Corpus frames, decoded lazily by each test.
struct Corpus {
    frames: Vec<Vec<u8>>,
    docs: HashMap<String, serde_json::Value>,
}

impl Corpus {
    fn load() -> Self {
        let packed = support::fixture_bytes("firehose-corpus/did_docs.json.zst");
        let raw = zstd::decode_all(&packed[..]).expect("did_docs.json.zst decompresses");
        let docs = serde_json::from_slice(&raw).expect("DID docs are a JSON object");
        Corpus {
            frames: support::corpus_frames(),
            docs,
        }
    }

    fn commits(&self) -> Vec<Commit<'_>> {
        self.frames
            .iter()
            .filter_map(|f| match frame::decode(f).expect("corpus frame decodes") {
                Frame::Commit(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    fn keys(&self) -> MapKeySource {
        let mut keys = MapKeySource::new();
        for (did, doc) in &self.docs {
            let key = PublicKey::from_did_document(doc)
                .unwrap_or_else(|e| panic!("{did}: signing key: {e}"));
            keys.insert(did.clone(), key);
        }
        keys
    }

    fn key(&self, did: &str) -> PublicKey {
        PublicKey::from_did_document(&self.docs[did]).expect("signing key")
    }
}

#[test]
fn every_corpus_commit_verifies() {
    let corpus = Corpus::load();
    let commits = corpus.commits();
    let mut keys = corpus.keys();
    let mut verifier = Verifier::new(VerifyMode::Full);
    let (mut creates, mut updates, mut deletes, mut records) = (0, 0, 0, 0);
    for commit in &commits {
        let verified = verifier
            .verify_commit_with(commit, &mut keys)
            .unwrap_or_else(|e| panic!("seq {} {}: {} ({e})", commit.seq, commit.repo, e.reason()));
        assert!(verified.fully_verified);
        assert_eq!(verified.status, SyncStatus::Synchronized);
        for op in &verified.ops {
            match op.action {
                Action::Create => creates += 1,
                Action::Update => updates += 1,
                Action::Delete => deletes += 1,
            }
            if let (Some(cid), Some(record)) = (op.cid, op.record) {
                assert!(cid.matches(record), "record bytes are the op's record");
                records += 1;
            }
        }
        let state = verifier.state(commit.repo).expect("state kept");
        assert_eq!(state.rev, verify::parse_tid(commit.rev).unwrap());
        assert_eq!(state.commit, commit.commit);
    }
    assert_eq!(keys.refreshes(), 0, "no key refresh needed");
    println!(
        "corpus: {} #commit verified in full (signature, CIDs, inversion), {} accounts; ops: {creates} creates, {updates} updates, {deletes} deletes; {records} record blocks",
        commits.len(),
        verifier.len()
    );
    assert_eq!(commits.len(), 148);
    assert_eq!((creates, updates, deletes), (144, 2, 4));
    assert_eq!(records, 146);

    // Trusted mode accepts the same commits.
    let mut trusted = Verifier::new(VerifyMode::Trusted);
    for commit in &commits {
        let verified = trusted
            .verify_commit(commit, &corpus.key(commit.repo))
            .unwrap();
        assert!(!verified.fully_verified);
    }
}

#[test]
fn keys_in_every_document_shape_verify() {
    let corpus = Corpus::load();
    let commits = corpus.commits();
    let (mut multikey, mut legacy, mut did_key) = (0, 0, 0);
    for commit in &commits {
        let key = corpus.key(commit.repo);
        assert_eq!(key.curve(), Curve::K256);
        // The same key as a legacy document (raw uncompressed point, no codec) and as did:key.
        let PublicKey::K256(point) = &key else {
            panic!("k256 expected")
        };
        let legacy_doc = serde_json::json!({
            "id": commit.repo,
            "verificationMethod": [{
                "id": format!("{}#atproto", commit.repo),
                "type": "EcdsaSecp256k1VerificationKey2019",
                "controller": commit.repo,
                "publicKeyMultibase": format!("z{}", base58(&point.serialize_uncompressed())),
            }],
        });
        let from_legacy = PublicKey::from_did_document(&legacy_doc).unwrap();
        let from_did_key = PublicKey::from_did_key(&key.to_did_key()).unwrap();
        for (key, count) in [
            (&key, &mut multikey),
            (&from_legacy, &mut legacy),
            (&from_did_key, &mut did_key),
        ] {
            Verifier::new(VerifyMode::Full)
                .verify_commit(commit, key)
                .unwrap();
            *count += 1;
        }
    }
    println!("key shapes: {multikey} Multikey, {legacy} legacy, {did_key} did:key verifications");
    assert_eq!((multikey, legacy, did_key), (148, 148, 148));
}

#[test]
fn unsigned_bytes_match_a_reencode() {
    use ipld_core::ipld::Ipld;
    let corpus = Corpus::load();
    let mut checked = 0;
    for commit in corpus.commits() {
        let car = commit.car().unwrap();
        let block = car.get(&commit.commit).unwrap();
        let surgery = verify::unsigned_commit_bytes(block).unwrap();
        let Ipld::Map(mut fields) = serde_ipld_dagcbor::from_slice::<Ipld>(block).unwrap() else {
            panic!("commit is a map")
        };
        assert!(fields.remove("sig").is_some());
        let reencoded = serde_ipld_dagcbor::to_vec(&Ipld::Map(fields)).unwrap();
        assert_eq!(surgery, reencoded, "seq {}", commit.seq);
        checked += 1;
    }
    println!(
        "unsigned commit bytes: {checked} byte-surgery results equal serde_ipld_dagcbor re-encodes"
    );
    assert_eq!(checked, 148);
}

/// A commit with a create, and the pieces fault cases need.
struct Subject<'a> {
    commit: Commit<'a>,
    key: PublicKey,
    blocks: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<'a> Subject<'a> {
    fn pick(corpus: &'a Corpus) -> Self {
        let commit = corpus
            .commits()
            .into_iter()
            .find(|c| c.ops.iter().any(|op| op.action == Action::Create) && c.since.is_some())
            .expect("a commit with a create");
        let car = commit.car().unwrap();
        let blocks = car
            .blocks()
            .map(|b| (b.cid.bytes().to_vec(), b.data.to_vec()))
            .collect();
        Subject {
            key: corpus.key(commit.repo),
            commit,
            blocks,
        }
    }

    /// The commit block.
    fn commit_block(&self) -> Vec<u8> {
        self.block(self.commit.commit.bytes()).to_vec()
    }

    fn block(&self, cid: &[u8]) -> &[u8] {
        &self.blocks.iter().find(|(c, _)| c == cid).expect("block").1
    }

    /// A verifier's result for a variant of the commit.
    fn check(&self, commit: &Commit<'_>) -> Result<(), VerifyError> {
        Verifier::new(VerifyMode::Full)
            .verify_commit(commit, &self.key)
            .map(|_| ())
    }
}

/// Encodes a CAR v1 with one root.
fn write_car(root: &[u8], blocks: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, root.len() as u8 + 1, 0x00]);
    header.extend_from_slice(root);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut out = Vec::new();
    varint(&mut out, header.len());
    out.extend_from_slice(&header);
    for (cid, data) in blocks {
        varint(&mut out, cid.len() + data.len());
        out.extend_from_slice(cid);
        out.extend_from_slice(data);
    }
    out
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Replaces the commit block with `block` (re-CIDed) and returns the new CAR and root.
fn with_commit_block(s: &Subject<'_>, block: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let cid = cbor::cid_bytes_for(cbor::DAG_CBOR, &block).to_vec();
    let blocks: Vec<(Vec<u8>, Vec<u8>)> = s
        .blocks
        .iter()
        .map(|(c, d)| {
            if c == s.commit.commit.bytes() {
                (cid.clone(), block.clone())
            } else {
                (c.clone(), d.clone())
            }
        })
        .collect();
    (write_car(&cid, &blocks), cid)
}

/// Where the 64 signature bytes sit in a commit block: after `"sig"` and `bytes(64)`.
fn sig_offset(block: &[u8]) -> usize {
    let marker = [0x63, b's', b'i', b'g', 0x58, 0x40];
    block
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("sig entry")
        + marker.len()
}

#[test]
fn fault_cases_yield_their_reasons() {
    let corpus = Corpus::load();
    let s = Subject::pick(&corpus);
    assert_eq!(s.check(&s.commit), Ok(()));
    let mut reasons: Vec<&'static str> = Vec::new();
    let mut expect = |result: Result<(), VerifyError>, reason: &'static str| {
        let error = result.expect_err(reason);
        assert_eq!(error.reason(), reason, "{error}");
        reasons.push(reason);
    };

    // A flipped byte in a record block: its CID no longer matches.
    let record_cid = s.commit.ops.iter().find_map(|op| op.cid).unwrap();
    let mut flipped = s.blocks.clone();
    let (_, record) = flipped
        .iter_mut()
        .find(|(c, _)| c == record_cid.bytes())
        .unwrap();
    let mid = record.len() / 2;
    record[mid] ^= 0x01;
    let car = write_car(s.commit.commit.bytes(), &flipped);
    expect(
        s.check(&Commit {
            blocks: &car,
            ..s.commit.clone()
        }),
        "cid_mismatch",
    );

    // A flipped signature byte (commit block re-CIDed, so only the signature is wrong).
    let mut block = s.commit_block();
    let at = sig_offset(&block);
    block[at + 10] ^= 0x01;
    let (car, root) = with_commit_block(&s, block);
    let bad_sig = Commit {
        blocks: &car,
        commit: CidRef::from_bytes(&root).unwrap(),
        ..s.commit.clone()
    };
    expect(s.check(&bad_sig), "bad_signature");
    // Trusted mode does not look at signatures.
    assert!(
        Verifier::new(VerifyMode::Trusted)
            .verify_commit(&bad_sig, &s.key)
            .is_ok()
    );

    // The high-S twin of the real signature.
    let mut block = s.commit_block();
    let at = sig_offset(&block);
    let n = hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(n[i]) - i16::from(block[at + 32 + i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        block[at + 32 + i] = d as u8;
    }
    let (car, root) = with_commit_block(&s, block);
    expect(
        s.check(&Commit {
            blocks: &car,
            commit: CidRef::from_bytes(&root).unwrap(),
            ..s.commit.clone()
        }),
        "high_s",
    );

    // An altered prevData: inversion reaches the real one instead.
    let other = mst::empty_root();
    expect(
        s.check(&Commit {
            prev_data: Some(CidRef::from_bytes(other.bytes()).unwrap()),
            ..s.commit.clone()
        }),
        "inversion_failed",
    );

    // A replay of a verified commit.
    let mut verifier = Verifier::new(VerifyMode::Full);
    verifier.verify_commit(&s.commit, &s.key).unwrap();
    expect(
        verifier.verify_commit(&s.commit, &s.key).map(|_| ()),
        "stale_rev",
    );

    // A gap: the stored state is not what the commit continues from.
    let since = verify::parse_tid(s.commit.since.unwrap()).unwrap();
    let mut verifier = Verifier::new(VerifyMode::Full);
    let stale = AccountState {
        rev: since - 1,
        data: other,
        commit: other,
        status: SyncStatus::Synchronized,
    };
    verifier.set_state(s.commit.repo, stale);
    expect(verifier.verify_commit(&s.commit, &s.key).map(|_| ()), "gap");
    let after = verifier.state(s.commit.repo).unwrap();
    assert_eq!(after.status, SyncStatus::Desynchronized);
    assert_eq!(after.rev, verify::parse_tid(s.commit.rev).unwrap());

    // A rev from the future (the clock set ten minutes before the rev's timestamp).
    let rev_micros = verify::tid_micros(verify::parse_tid(s.commit.rev).unwrap());
    expect(
        Verifier::new(VerifyMode::Full)
            .verify_commit_at(&s.commit, &s.key, rev_micros - 600_000_000)
            .map(|_| ()),
        "future_rev",
    );

    // A missing record block.
    let without: Vec<_> = s
        .blocks
        .iter()
        .filter(|(c, _)| c != record_cid.bytes())
        .cloned()
        .collect();
    let car = write_car(s.commit.commit.bytes(), &without);
    expect(
        s.check(&Commit {
            blocks: &car,
            ..s.commit.clone()
        }),
        "missing_record",
    );

    // The CAR root is not the commit.
    let car = write_car(record_cid.bytes(), &s.blocks);
    expect(
        s.check(&Commit {
            blocks: &car,
            ..s.commit.clone()
        }),
        "commit_not_root",
    );

    // Another account's frame, and a rev that does not match the signed one.
    expect(
        s.check(&Commit {
            repo: "did:plc:someoneelse",
            ..s.commit.clone()
        }),
        "did_mismatch",
    );
    let later = verify::format_tid(verify::parse_tid(s.commit.rev).unwrap() + 1);
    expect(
        s.check(&Commit {
            rev: &later,
            ..s.commit.clone()
        }),
        "rev_mismatch",
    );

    // Limits and deprecated flags.
    expect(
        s.check(&Commit {
            too_big: true,
            ..s.commit.clone()
        }),
        "too_big",
    );
    expect(
        s.check(&Commit {
            rebase: true,
            ..s.commit.clone()
        }),
        "rebase",
    );
    let many = vec![s.commit.ops[0]; 201];
    expect(
        s.check(&Commit {
            ops: many,
            ..s.commit.clone()
        }),
        "too_many_ops",
    );

    // An op whose CID is not what the tree holds; and a duplicated op.
    let mut ops = s.commit.ops.clone();
    let create = ops
        .iter_mut()
        .find(|op| op.action == Action::Create)
        .unwrap();
    create.cid = Some(s.commit.commit);
    expect(
        s.check(&Commit {
            ops,
            ..s.commit.clone()
        }),
        "inversion_failed",
    );
    let mut ops = s.commit.ops.clone();
    ops.push(ops[0]);
    expect(
        s.check(&Commit {
            ops,
            ..s.commit.clone()
        }),
        "duplicate_path",
    );

    // A MST node inversion needs, left out.
    let data = commit_data(&s);
    let mut missing_block = 0;
    for (cid, bytes) in &s.blocks {
        let is_node = mst::reencode_node(bytes).is_ok();
        if !is_node || cid.as_slice() == data.bytes() {
            continue;
        }
        let without: Vec<_> = s.blocks.iter().filter(|(c, _)| c != cid).cloned().collect();
        let car = write_car(s.commit.commit.bytes(), &without);
        if let Err(e) = s.check(&Commit {
            blocks: &car,
            ..s.commit.clone()
        }) {
            assert_eq!(e.reason(), "missing_block", "{e}");
            missing_block += 1;
        }
    }
    assert!(missing_block > 0, "some proof node is needed");
    reasons.push("missing_block");

    println!(
        "fault cases: {} rejected with their reasons: {reasons:?}",
        reasons.len()
    );
}

fn commit_data(s: &Subject<'_>) -> DagCid {
    let car = s.commit.car().unwrap();
    let block = car.get(&s.commit.commit).unwrap();
    let ipld: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(block).unwrap();
    let ipld_core::ipld::Ipld::Map(fields) = ipld else {
        panic!("commit is a map")
    };
    let ipld_core::ipld::Ipld::Link(data) = &fields["data"] else {
        panic!("data is a link")
    };
    DagCid::from_bytes(&data.to_bytes()).unwrap()
}

#[test]
fn chains_continue_and_keys_refresh_once() {
    let corpus = Corpus::load();
    let s = Subject::pick(&corpus);
    let since = verify::parse_tid(s.commit.since.unwrap()).unwrap();
    let prev = DagCid::from_cid_ref(&s.commit.prev_data.unwrap()).unwrap();

    // The stored state is exactly what the commit continues: it verifies, status kept.
    for status in [
        SyncStatus::Synchronized,
        SyncStatus::InProgress,
        SyncStatus::Desynchronized,
    ] {
        let mut verifier = Verifier::new(VerifyMode::Full);
        verifier.set_state(
            s.commit.repo,
            AccountState {
                rev: since,
                data: prev,
                commit: prev,
                status,
            },
        );
        let verified = verifier.verify_commit(&s.commit, &s.key).unwrap();
        assert_eq!(verified.status, status);
    }

    // A rotated key: the stale key fails, one refresh finds the new one.
    let stale_key = corpus
        .docs
        .keys()
        .find(|did| *did != s.commit.repo)
        .map(|did| corpus.key(did))
        .unwrap();
    let mut keys = MapKeySource::new();
    keys.insert(s.commit.repo, stale_key.clone());
    let error = Verifier::new(VerifyMode::Full)
        .verify_commit_with(&s.commit, &mut keys)
        .unwrap_err();
    assert_eq!(error.reason(), "bad_signature");
    assert_eq!(keys.refreshes(), 1);
    keys.stage_refresh(s.commit.repo, s.key.clone());
    Verifier::new(VerifyMode::Full)
        .verify_commit_with(&s.commit, &mut keys)
        .unwrap();
    assert_eq!(keys.refreshes(), 2);
    assert_eq!(keys.signing_key(s.commit.repo), Some(s.key.clone()));

    // No key at all.
    let error = Verifier::new(VerifyMode::Full)
        .verify_commit_with(&s.commit, &mut MapKeySource::new())
        .unwrap_err();
    assert_eq!(error.reason(), "no_signing_key");
}

#[test]
fn sync_events_reset_state() {
    let corpus = Corpus::load();
    let s = Subject::pick(&corpus);
    let commit_block = s.commit_block();
    let car = write_car(
        s.commit.commit.bytes(),
        &[(s.commit.commit.bytes().to_vec(), commit_block.clone())],
    );
    let sync = Sync {
        seq: s.commit.seq,
        did: s.commit.repo,
        rev: s.commit.rev,
        blocks: &car,
        time: s.commit.time,
    };
    let data = commit_data(&s);
    let rev = verify::parse_tid(s.commit.rev).unwrap();
    let state = |data: DagCid| AccountState {
        rev: rev - 1,
        data,
        commit: data,
        status: SyncStatus::Synchronized,
    };

    // First sight: the state starts here.
    let mut verifier = Verifier::new(VerifyMode::Full);
    assert_eq!(
        verifier.verify_sync(&sync, &s.key),
        Ok(SyncOutcome::Started)
    );
    assert_eq!(verifier.state(s.commit.repo).unwrap().data, data);
    // The same commit again (what the reference PDS sends after creating an account) is
    // a no-op, not a stale rev.
    assert_eq!(
        verifier.verify_sync(&sync, &s.key),
        Ok(SyncOutcome::Unchanged)
    );
    // An older rev is stale.
    let mut ahead = *verifier.state(s.commit.repo).unwrap();
    ahead.rev += 1;
    verifier.set_state(s.commit.repo, ahead);
    assert_eq!(
        verifier.verify_sync(&sync, &s.key).unwrap_err().reason(),
        "stale_rev"
    );

    // Same root as stored: a no-op that keeps the status.
    let mut verifier = Verifier::new(VerifyMode::Full);
    verifier.set_state(s.commit.repo, state(data));
    assert_eq!(
        verifier.verify_sync(&sync, &s.key),
        Ok(SyncOutcome::Unchanged)
    );
    assert_eq!(
        verifier.state(s.commit.repo).unwrap().status,
        SyncStatus::Synchronized
    );

    // Another root: desynchronized.
    let mut verifier = Verifier::new(VerifyMode::Full);
    verifier.set_state(s.commit.repo, state(mst::empty_root()));
    assert_eq!(
        verifier.verify_sync(&sync, &s.key),
        Ok(SyncOutcome::Desynchronized)
    );
    assert_eq!(
        verifier.state(s.commit.repo).unwrap().status,
        SyncStatus::Desynchronized
    );

    // A bad signature is rejected before any state changes.
    let mut block = commit_block;
    let at = sig_offset(&block);
    block[at] ^= 0x80;
    let cid = cbor::cid_bytes_for(cbor::DAG_CBOR, &block);
    let car = write_car(&cid, &[(cid.to_vec(), block)]);
    let mut verifier = Verifier::new(VerifyMode::Full);
    verifier.set_state(s.commit.repo, state(mst::empty_root()));
    let error = verifier
        .verify_sync(
            &Sync {
                blocks: &car,
                ..sync
            },
            &s.key,
        )
        .unwrap_err();
    assert_eq!(error.reason(), "bad_signature");
    assert_eq!(
        verifier.state(s.commit.repo),
        Some(&state(mst::empty_root()))
    );
}

fn hex32(s: &str) -> [u8; 32] {
    let bytes = data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap();
    bytes.try_into().unwrap()
}

/// base58btc, for building legacy DID documents.
fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(
            digits
                .iter()
                .rev()
                .map(|&d| char::from(ALPHABET[usize::from(d)])),
        )
        .collect()
}
