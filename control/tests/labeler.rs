//! The labeler core: signed labels, the label store, `queryLabels` and `subscribeLabels`.
//!
//! Signatures are checked three ways: with the labeler's own verifier, independently (the
//! DAG-CBOR re-encoded from an `Ipld` map by `serde_ipld_dagcbor`, the signature checked
//! by libsecp256k1 directly over its SHA-256), and against a label signed by another
//! implementation (indigo's test vector). Every store and service test uses a real SQLite
//! file in a temporary directory and a real HTTP/WebSocket server on 127.0.0.1.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use atelier_control::labeler::{
    Field, Label, LabelError, LabelStore, Labeler, LabelerError, SigningKey, label::check_value,
};
use atelier_relay::sync::keys::{KeyError, PublicKey};
use futures_util::StreamExt;
use ipld_core::ipld::Ipld;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio_tungstenite::tungstenite::Message;

const LABELER: &str = "did:plc:atelierlabelertest0000001";
const ALICE: &str = "did:plc:alice000000000000000000";
const BOB: &str = "did:plc:bob00000000000000000000";
const CTS: &str = "2026-01-02T03:04:05.678Z";
const CID: &str = "bafyreifxykqhed72s26cr4i64rxvrtofeqrly3j4vjzbkvo3ckkjbxjqtq";
const WAIT: Duration = Duration::from_secs(10);

fn post(did: &str, rkey: &str) -> String {
    format!("at://{did}/computer.aesthetic.painting/{rkey}")
}

// ---- signing ----

/// The label's signing bytes built independently: an `Ipld` map encoded by
/// `serde_ipld_dagcbor` (which sorts keys canonically itself), not the labeler's encoder.
fn independent_signing_bytes(label: &Label) -> Vec<u8> {
    let mut map = BTreeMap::new();
    map.insert("ver".to_owned(), Ipld::Integer(1));
    map.insert("src".to_owned(), Ipld::String(label.src.clone()));
    map.insert("uri".to_owned(), Ipld::String(label.uri.clone()));
    map.insert("val".to_owned(), Ipld::String(label.val.clone()));
    map.insert("cts".to_owned(), Ipld::String(label.cts.clone()));
    if let Some(cid) = &label.cid {
        map.insert("cid".to_owned(), Ipld::String(cid.clone()));
    }
    if let Some(neg) = label.neg {
        map.insert("neg".to_owned(), Ipld::Bool(neg));
    }
    if let Some(exp) = &label.exp {
        map.insert("exp".to_owned(), Ipld::String(exp.clone()));
    }
    serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap()
}

/// Checks `sig` over `bytes` with libsecp256k1 directly (which itself refuses high-S).
fn independent_verify(key: &PublicKey, bytes: &[u8], sig: &[u8]) -> bool {
    let secp = secp256k1::Secp256k1::verification_only();
    let key = secp256k1::PublicKey::from_slice(&key.to_compressed()).unwrap();
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let Ok(sig) = secp256k1::ecdsa::Signature::from_compact(sig) else {
        return false;
    };
    secp.verify_ecdsa(secp256k1::Message::from_digest(digest), &sig, &key)
        .is_ok()
}

/// The label variants every signing test runs over: each optional field absent and present.
fn sample_labels() -> Vec<Label> {
    let base = Label::new(LABELER, post(ALICE, "3kabc"), "nudity", CTS);
    vec![
        base.clone(),
        base.clone().with_cid(CID),
        base.clone().negated(),
        base.clone().with_exp("2026-02-02T03:04:05.678Z"),
        Label::new(LABELER, ALICE, "!takedown", CTS)
            .with_cid(CID)
            .with_exp("2027-01-01T00:00:00Z")
            .negated(),
    ]
}

#[test]
fn signatures_verify_and_match_an_independent_encoding() {
    let key = SigningKey::generate();
    for label in sample_labels() {
        let signed = label.clone().sign(&key).unwrap();
        let sig = signed.sig.clone().unwrap();
        assert_eq!(sig.len(), 64, "{label:?}");
        assert_eq!(signed.verify(key.public_key()), Ok(()), "{label:?}");

        let independent = independent_signing_bytes(&signed);
        assert_eq!(signed.signing_bytes(), independent, "{label:?}");
        assert!(
            independent_verify(key.public_key(), &independent, &sig),
            "{label:?}"
        );
        // The signed form is the unsigned map plus `sig`, also as serde_ipld_dagcbor has it.
        let decoded: Ipld = serde_ipld_dagcbor::from_slice(&signed.to_cbor()).unwrap();
        let Ipld::Map(map) = decoded else {
            panic!("not a map")
        };
        assert_eq!(map.get("sig"), Some(&Ipld::Bytes(sig.clone())));
        assert_eq!(map.get("ver"), Some(&Ipld::Integer(1)));
        assert_eq!(map.contains_key("neg"), label.neg.is_some());
    }
}

#[test]
fn a_label_signed_by_indigo_verifies() {
    // From bluesky-social/indigo, atproto/labeling/label_test.go (TestVerifyLabel): a label
    // signed by a production labeler, with its public key.
    let key =
        PublicKey::from_multikey("zQ3shcnfWLQN1bY4d2patsEAYFzy4xp1zdckEvHsV7S4ocTnC").unwrap();
    let json = json!({
        "ver": 1,
        "src": "did:plc:n3timvoib5nau7gvwd6cshap",
        "uri": "did:plc:44ybard66vv44zksje25o7dz",
        "val": "bladerunner",
        "cts": "2024-10-23T17:51:19.128Z",
        "sig": {
            "$bytes": "uCRNA5mTzh078T5xZtkvLEt/O+z0gsKM3aqRI/lVAB8ZtbMnznwS/JwHopZE40JhNNDj80z8gsDLAp/hWqG5Pg"
        }
    });
    let label = Label::from_json(&json).unwrap();
    assert_eq!(label.verify(&key), Ok(()));
    let sig = label.sig.clone().unwrap();
    assert!(independent_verify(
        &key,
        &independent_signing_bytes(&label),
        &sig
    ));

    let mut wrong = label.clone();
    wrong.val = "wrong".into();
    assert!(matches!(
        wrong.verify(&key),
        Err(LabelError::Signature(KeyError::BadSignature))
    ));
}

/// A named change to a signed label.
type Tamper = (&'static str, fn(&mut Label));

#[test]
fn tampering_with_any_field_breaks_the_signature() {
    let key = SigningKey::generate();
    let signed = Label::new(LABELER, post(ALICE, "3kabc"), "nudity", CTS)
        .with_exp("2026-02-02T03:04:05.678Z")
        .sign(&key)
        .unwrap();
    let tampers: Vec<Tamper> = vec![
        ("src", |l| l.src = BOB.into()),
        ("uri", |l| l.uri = post(ALICE, "3kabd")),
        ("cid added", |l| l.cid = Some(CID.into())),
        ("val", |l| l.val = "nudit".into()),
        ("neg: true", |l| l.neg = Some(true)),
        ("neg: false written", |l| l.neg = Some(false)),
        ("cts", |l| l.cts = "2026-01-02T03:04:05.679Z".into()),
        ("exp changed", |l| {
            l.exp = Some("2026-02-02T03:04:05.679Z".into())
        }),
        ("exp removed", |l| l.exp = None),
        ("sig byte", |l| {
            if let Some(sig) = &mut l.sig {
                sig[10] ^= 1;
            }
        }),
    ];
    for (what, tamper) in tampers {
        let mut label = signed.clone();
        tamper(&mut label);
        let result = label.verify(key.public_key());
        assert!(
            matches!(result, Err(LabelError::Signature(_))),
            "{what}: {result:?}"
        );
        assert_eq!(result.unwrap_err().field(), Some(Field::Sig));
    }
    // Another key does not verify it either.
    let other = SigningKey::generate();
    assert!(signed.verify(other.public_key()).is_err());
    // Without a signature there is nothing to verify.
    let mut unsigned = signed.clone();
    unsigned.sig = None;
    assert_eq!(unsigned.verify(key.public_key()), Err(LabelError::Unsigned));
}

/// The secp256k1 group order, big-endian.
const K256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

#[test]
fn signatures_are_low_s_and_high_s_is_refused() {
    let key = SigningKey::generate();
    let half: Vec<u8> = {
        // n / 2, by shifting the order right one bit.
        let mut out = [0u8; 32];
        let mut carry = 0u8;
        for (i, b) in K256_ORDER.iter().enumerate() {
            out[i] = (b >> 1) | (carry << 7);
            carry = b & 1;
        }
        out.to_vec()
    };
    for (i, label) in sample_labels().into_iter().enumerate() {
        let label = Label {
            val: format!("value-{i}"),
            ..label
        };
        let signed = label.sign(&key).unwrap();
        let sig = signed.sig.clone().unwrap();
        assert!(sig[32..] <= half[..], "signature is not low-S");

        // The same signature with s replaced by n - s is mathematically valid but high-S.
        let mut high = sig.clone();
        let mut borrow = 0i16;
        for j in (0..32).rev() {
            let d = i16::from(K256_ORDER[j]) - i16::from(sig[32 + j]) - borrow;
            high[32 + j] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        let mut flipped = signed.clone();
        flipped.sig = Some(high);
        assert_eq!(
            flipped.verify(key.public_key()),
            Err(LabelError::Signature(KeyError::HighS))
        );
        // DER-length (or any other length) signatures are refused.
        let mut long = signed.clone();
        long.sig = Some([sig.as_slice(), &[0]].concat());
        assert_eq!(
            long.verify(key.public_key()),
            Err(LabelError::Signature(KeyError::SignatureLength(65)))
        );
    }
}

#[test]
fn neg_false_is_kept_as_received() {
    // Some issuers write `neg: false` and sign it; such a label verifies only if the field
    // is re-encoded as it came, through JSON and CBOR alike.
    let key = SigningKey::generate();
    let mut label = Label::new(LABELER, ALICE, "spam", CTS);
    label.neg = Some(false);
    let signed = label.sign(&key).unwrap();
    assert!(!signed.is_negation());
    let json = signed.to_json();
    assert_eq!(json["neg"], json!(false));
    let back = Label::from_json(&json).unwrap();
    assert_eq!(back.verify(key.public_key()), Ok(()));
    let back = Label::from_cbor(&signed.to_cbor()).unwrap();
    assert_eq!(back.verify(key.public_key()), Ok(()));
    let mut dropped = back;
    dropped.neg = None;
    assert!(dropped.verify(key.public_key()).is_err());
}

// ---- validation ----

#[test]
fn values_are_checked() {
    let long_ok = "a".repeat(128);
    let long_bad = "a".repeat(129);
    let cases: &[(&str, bool)] = &[
        ("spam", true),
        ("porn", true),
        ("nsfw-18", true),
        ("graphic-media", true),
        ("a", true),
        (&long_ok, true),
        ("!takedown", true),
        ("!hide", true),
        ("!warn", true),
        ("!no-unauthenticated", true),
        ("", false),
        ("!", false),
        ("Spam", false),
        ("with space", false),
        ("under_score", false),
        ("dot.ted", false),
        ("colon:ed", false),
        ("emoji-🎨", false),
        ("ünicode", false),
        ("-leading", false),
        ("trailing-", false),
        ("!!double", false),
        ("mid!bang", false),
        (&long_bad, false),
    ];
    let key = SigningKey::generate();
    for &(val, ok) in cases {
        let checked = check_value(val);
        let signed = Label::new(LABELER, ALICE, val, CTS).sign(&key);
        if ok {
            assert_eq!(checked, Ok(()), "{val:?}");
            assert!(signed.is_ok(), "{val:?}");
        } else {
            let err = checked.expect_err(val);
            assert_eq!(err.field(), Some(Field::Val), "{val:?}: {err}");
            assert!(err.to_string().contains("`val`"), "{err}");
            assert_eq!(signed.unwrap_err().field(), Some(Field::Val), "{val:?}");
        }
    }
}

#[test]
fn other_fields_are_checked() {
    let key = SigningKey::generate();
    let base = || Label::new(LABELER, post(ALICE, "3kabc"), "spam", CTS);
    let cases: Vec<(Label, Option<Field>)> = vec![
        (base(), None),
        (
            Label {
                uri: ALICE.into(),
                ..base()
            },
            None,
        ),
        (
            base().with_cid(CID).with_exp("2030-01-01T00:00:00+02:00"),
            None,
        ),
        (
            Label {
                src: "labeler".into(),
                ..base()
            },
            Some(Field::Src),
        ),
        (
            Label {
                src: "did:plc:".into(),
                ..base()
            },
            Some(Field::Src),
        ),
        (
            Label {
                uri: "https://example.com/x".into(),
                ..base()
            },
            Some(Field::Uri),
        ),
        (
            Label {
                uri: "at://".into(),
                ..base()
            },
            Some(Field::Uri),
        ),
        (
            Label {
                uri: "did:nope".into(),
                ..base()
            },
            Some(Field::Uri),
        ),
        (base().with_cid("not-a-cid"), Some(Field::Cid)),
        (
            Label {
                cts: "yesterday".into(),
                ..base()
            },
            Some(Field::Cts),
        ),
        (
            Label {
                cts: "2026-01-02 03:04:05Z".into(),
                ..base()
            },
            Some(Field::Cts),
        ),
        (base().with_exp("2026-13-01T00:00:00Z"), Some(Field::Exp)),
        (base().with_exp("2026-01-01T00:00:00"), Some(Field::Exp)),
    ];
    for (label, expect) in cases {
        let result = label.clone().sign(&key);
        match expect {
            None => assert!(result.is_ok(), "{label:?}: {result:?}"),
            Some(field) => {
                let err = result.expect_err("invalid");
                assert_eq!(err.field(), Some(field), "{label:?}: {err}");
                assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
            }
        }
    }
}

#[test]
fn received_labels_are_parsed_strictly() {
    let key = SigningKey::generate();
    let good = Label::new(LABELER, ALICE, "spam", CTS)
        .sign(&key)
        .unwrap()
        .to_json();
    let with = |key: &str, value: Value| {
        let mut json = good.clone();
        json[key] = value;
        json
    };
    let without = |key: &str| {
        let mut json = good.clone();
        json.as_object_mut().unwrap().remove(key);
        json
    };
    let cases: Vec<(Value, Option<Field>)> = vec![
        (good.clone(), None),
        (with("$type", json!("com.atproto.label.defs#label")), None),
        (with("ver", json!(2)), Some(Field::Ver)),
        (without("ver"), Some(Field::Ver)),
        (without("src"), Some(Field::Src)),
        (with("uri", json!(7)), Some(Field::Uri)),
        (with("neg", json!("yes")), Some(Field::Neg)),
        (with("sig", json!("c2ln")), Some(Field::Sig)),
        (with("sig", json!({"$bytes": "!!"})), Some(Field::Sig)),
        (with("cts", json!("2026")), Some(Field::Cts)),
    ];
    for (json, expect) in cases {
        let result = Label::from_json(&json);
        match expect {
            None => assert_eq!(result.unwrap().verify(key.public_key()), Ok(())),
            Some(field) => assert_eq!(
                result.as_ref().err().and_then(LabelError::field),
                Some(field),
                "{json}: {result:?}"
            ),
        }
    }
}

// ---- the signing key ----

#[test]
fn key_files_are_private_and_never_overwritten() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("labeler_key");
    let (key, created) = SigningKey::load_or_generate(&path).unwrap();
    assert!(created);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim_end().len(), 64);

    let (again, created) = SigningKey::load_or_generate(&path).unwrap();
    assert!(!created);
    assert_eq!(again.did_key(), key.did_key());
    assert!(key.did_key().starts_with("did:key:zQ3s"));
    assert_eq!(key.did_key(), format!("did:key:{}", key.multikey()));
    assert_eq!(
        PublicKey::from_did_key(&key.did_key()).unwrap(),
        *key.public_key()
    );

    // Saving never replaces an existing key.
    assert!(SigningKey::generate().save(&path).is_err());
    assert_eq!(SigningKey::load(&path).unwrap().did_key(), key.did_key());

    // A world-readable key is refused, as is one that is not a key.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(SigningKey::load(&path).is_err());
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not hex\n").unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(SigningKey::load(&junk).is_err());
}

// ---- the service ----

/// A labeler on a fresh SQLite file, served on 127.0.0.1.
struct Harness {
    labeler: Labeler,
    addr: SocketAddr,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new().unwrap();
        let store = LabelStore::open(&dir.path().join("labels.sqlite"))
            .await
            .unwrap();
        let labeler = Labeler::new(LABELER, SigningKey::generate(), store)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = labeler.clone();
        tokio::spawn(async move {
            atelier_control::labeler::serve(listener, served, async {
                let _ = stopped.await;
            })
            .await
        });
        Harness {
            labeler,
            addr,
            http: reqwest::Client::new(),
            stop: Some(stop),
            _dir: dir,
        }
    }

    async fn apply(&self, uri: &str, val: &str) -> i64 {
        self.labeler
            .apply(uri, None, val, false, None)
            .await
            .unwrap()
            .seq
    }

    async fn negate(&self, uri: &str, val: &str) -> i64 {
        self.labeler
            .apply(uri, None, val, true, None)
            .await
            .unwrap()
            .seq
    }

    /// `queryLabels` with a raw query string: (status, body).
    async fn query(&self, params: &str) -> (u16, Value) {
        let url = format!(
            "http://{}/xrpc/com.atproto.label.queryLabels?{params}",
            self.addr
        );
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The (uri, val) of each label `queryLabels` returns for `params`, checking every
    /// signature on the way.
    async fn query_pairs(&self, params: &str) -> Vec<(String, String)> {
        let (status, body) = self.query(params).await;
        assert_eq!(status, 200, "{params}: {body}");
        labels_of(&body)
            .into_iter()
            .map(|label| {
                assert_eq!(label.verify(self.labeler.public_key()), Ok(()));
                (label.uri, label.val)
            })
            .collect()
    }

    async fn connect(&self, cursor: Option<i64>) -> Socket {
        let mut url = format!("ws://{}/xrpc/com.atproto.label.subscribeLabels", self.addr);
        if let Some(cursor) = cursor {
            url.push_str(&format!("?cursor={cursor}"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        socket
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn labels_of(body: &Value) -> Vec<Label> {
    body["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|json| {
            assert!(json["sig"]["$bytes"].is_string(), "{json}");
            Label::from_json(json).unwrap()
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(u, v)| ((*u).to_owned(), (*v).to_owned()))
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn query_labels_shows_the_current_state() {
    let h = Harness::start().await;
    let a1 = post(ALICE, "3kaaa");
    let a2 = post(ALICE, "3kbbb");
    let b1 = post(BOB, "3kaaa");
    h.apply(&a1, "nudity").await;
    h.apply(&a1, "spam").await;
    h.apply(&a2, "gore").await;
    h.apply(ALICE, "!warn").await;
    h.apply(&b1, "spam").await;

    let alice_records = format!("uriPatterns={}", enc(&format!("at://{ALICE}/*")));
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        (
            format!("uriPatterns={}", enc(&a1)),
            pairs(&[(&a1, "nudity"), (&a1, "spam")]),
        ),
        (
            alice_records.clone(),
            pairs(&[(&a1, "nudity"), (&a1, "spam"), (&a2, "gore")]),
        ),
        // An exact DID matches the account label only.
        (format!("uriPatterns={ALICE}"), pairs(&[(ALICE, "!warn")])),
        // A prefix matches the DID and everything under it.
        (
            format!("uriPatterns={}", enc(&format!("{ALICE}*"))),
            pairs(&[(ALICE, "!warn")]),
        ),
        (
            format!("uriPatterns={}&uriPatterns={}", enc(&a2), enc(&b1)),
            pairs(&[(&a2, "gore"), (&b1, "spam")]),
        ),
        (
            "uriPatterns=*".into(),
            pairs(&[
                (&a1, "nudity"),
                (&a1, "spam"),
                (&a2, "gore"),
                (ALICE, "!warn"),
                (&b1, "spam"),
            ]),
        ),
        // Prefixes are literal and case-sensitive: no LIKE wildcards.
        (
            format!("uriPatterns={}", enc("at://did:plc:alice_%*")),
            vec![],
        ),
        (
            format!("uriPatterns={}", enc(&format!("AT://{ALICE}/*"))),
            vec![],
        ),
        (
            format!("uriPatterns={}", enc(&post(ALICE, "3kzzz"))),
            vec![],
        ),
        // Sources.
        (
            format!("{alice_records}&sources={LABELER}"),
            pairs(&[(&a1, "nudity"), (&a1, "spam"), (&a2, "gore")]),
        ),
        (format!("{alice_records}&sources={BOB}"), vec![]),
    ];
    for (params, expect) in &cases {
        assert_eq!(&h.query_pairs(params).await, expect, "{params}");
    }

    // A negation retracts; the negation itself is not a label to show.
    h.negate(&a1, "spam").await;
    assert_eq!(
        h.query_pairs(&format!("uriPatterns={}", enc(&a1))).await,
        pairs(&[(&a1, "nudity")])
    );
    // Negating again or negating what was never applied changes nothing visible.
    h.negate(&a1, "spam").await;
    h.negate(&a1, "never-applied").await;
    assert_eq!(
        h.query_pairs(&format!("uriPatterns={}", enc(&a1))).await,
        pairs(&[(&a1, "nudity")])
    );
    // Applying again brings it back, as a new label after the others.
    h.apply(&a1, "spam").await;
    assert_eq!(
        h.query_pairs(&format!("uriPatterns={}", enc(&a1))).await,
        pairs(&[(&a1, "nudity"), (&a1, "spam")])
    );
}

#[tokio::test]
async fn query_labels_leaves_out_expired_labels() {
    let h = Harness::start().await;
    let uri = post(ALICE, "3kexp");
    let apply_exp = |val: &'static str, exp: &'static str| {
        let labeler = h.labeler.clone();
        let uri = uri.clone();
        async move {
            labeler
                .apply(&uri, None, val, false, Some(exp))
                .await
                .unwrap()
        }
    };
    apply_exp("expired", "2000-01-01T00:00:00.000Z").await;
    apply_exp("expiring-later", "2999-01-01T00:00:00.000Z").await;
    h.apply(&uri, "forever").await;
    // A label replaced by an expired one is gone too: only the newest counts.
    h.apply(&uri, "replaced").await;
    apply_exp("replaced", "2001-01-01T00:00:00+01:00").await;
    assert_eq!(
        h.query_pairs(&format!("uriPatterns={}", enc(&uri))).await,
        pairs(&[(&uri, "expiring-later"), (&uri, "forever")])
    );
}

#[tokio::test]
async fn query_labels_filters_by_source() {
    let h = Harness::start().await;
    let uri = post(ALICE, "3ksrc");
    h.apply(&uri, "spam").await;
    // A label from another labeler, put into the store directly: the store holds any
    // source's labels; `sources` picks among them.
    let other_key = SigningKey::generate();
    let other = Label::new(BOB, &uri, "spam", CTS).sign(&other_key).unwrap();
    h.labeler.store().insert(&other, None).await.unwrap();
    let base = format!("uriPatterns={}", enc(&uri));
    let srcs = |params: String| {
        let h = &h;
        async move {
            let (status, body) = h.query(&params).await;
            assert_eq!(status, 200);
            labels_of(&body)
                .into_iter()
                .map(|l| l.src)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(srcs(base.clone()).await, vec![LABELER, BOB]);
    assert_eq!(
        srcs(format!("{base}&sources={LABELER}")).await,
        vec![LABELER]
    );
    assert_eq!(srcs(format!("{base}&sources={BOB}")).await, vec![BOB]);
    assert_eq!(
        srcs(format!("{base}&sources={BOB}&sources={LABELER}")).await,
        vec![LABELER, BOB]
    );
    assert!(
        srcs(format!("{base}&sources=did:plc:nobody"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn query_labels_pages_by_cursor() {
    let h = Harness::start().await;
    let mut all = Vec::new();
    for i in 0..7 {
        let uri = post(ALICE, &format!("3kp{i}"));
        h.apply(&uri, "spam").await;
        all.push((uri, "spam".to_owned()));
    }
    // Limit 1 is the smallest page; limit 3 pages as 3, 3, 1.
    for limit in [1usize, 3, 7, 50] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut params = format!("uriPatterns=*&limit={limit}");
            if let Some(c) = &cursor {
                params.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = h.query(&params).await;
            assert_eq!(status, 200, "{body}");
            let page = labels_of(&body);
            assert!(page.len() <= limit);
            seen.extend(page.into_iter().map(|l| (l.uri, l.val)));
            pages += 1;
            match body.get("cursor").and_then(Value::as_str) {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(pages < 20, "paging does not end");
        }
        assert_eq!(seen, all, "limit {limit}");
    }
    // Bad parameters are InvalidRequest, with the XRPC error body.
    for params in [
        "",
        "limit=10",
        "uriPatterns=*&limit=0",
        "uriPatterns=*&limit=251",
        "uriPatterns=*&cursor=abc",
        "uriPatterns=at://x*y",
        "uriPatterns=*&sources=notadid",
    ] {
        let (status, body) = h.query(params).await;
        assert_eq!(status, 400, "{params}");
        assert_eq!(body["error"], "InvalidRequest", "{params}");
        assert!(body["message"].is_string());
    }
    let (status, _) = h.query("uriPatterns=*&limit=250").await;
    assert_eq!(status, 200);
}

// ---- subscribeLabels ----

/// One decoded frame: the header and the body, decoded by serde_ipld_dagcbor.
#[derive(Debug)]
struct Frame {
    header: BTreeMap<String, Ipld>,
    body: BTreeMap<String, Ipld>,
}

impl Frame {
    fn decode(bytes: &[u8]) -> Frame {
        let mut values =
            serde_ipld_dagcbor::de::iter_from_reader::<Ipld, _>(std::io::Cursor::new(bytes));
        let header = values.next().expect("a header").expect("header CBOR");
        let body = values.next().expect("a body").expect("body CBOR");
        assert!(values.next().is_none(), "two values per frame");
        match (header, body) {
            (Ipld::Map(header), Ipld::Map(body)) => Frame { header, body },
            other => panic!("not maps: {other:?}"),
        }
    }

    fn seq(&self) -> i64 {
        match self.body.get("seq") {
            Some(Ipld::Integer(seq)) => i64::try_from(*seq).unwrap(),
            other => panic!("no seq: {other:?}"),
        }
    }

    /// The frame's labels, each rebuilt from its `Ipld` and checked against `key` both by
    /// the labeler's verifier and independently.
    fn labels(&self, key: &PublicKey) -> Vec<Label> {
        assert_eq!(self.header.get("op"), Some(&Ipld::Integer(1)));
        assert_eq!(self.header.get("t"), Some(&Ipld::String("#labels".into())));
        let Some(Ipld::List(labels)) = self.body.get("labels") else {
            panic!("no labels: {self:?}")
        };
        labels
            .iter()
            .map(|ipld| {
                let Ipld::Map(map) = ipld else {
                    panic!("label is not a map")
                };
                let text = |k: &str| match map.get(k) {
                    Some(Ipld::String(s)) => Some(s.clone()),
                    None => None,
                    other => panic!("{k}: {other:?}"),
                };
                assert_eq!(map.get("ver"), Some(&Ipld::Integer(1)));
                let Some(Ipld::Bytes(sig)) = map.get("sig") else {
                    panic!("no sig")
                };
                let label = Label {
                    src: text("src").unwrap(),
                    uri: text("uri").unwrap(),
                    cid: text("cid"),
                    val: text("val").unwrap(),
                    neg: match map.get("neg") {
                        Some(Ipld::Bool(b)) => Some(*b),
                        None => None,
                        other => panic!("neg: {other:?}"),
                    },
                    cts: text("cts").unwrap(),
                    exp: text("exp"),
                    sig: Some(sig.clone()),
                };
                assert_eq!(label.verify(key), Ok(()));
                assert!(independent_verify(
                    key,
                    &independent_signing_bytes(&label),
                    sig
                ));
                label
            })
            .collect()
    }
}

/// The next binary frame, skipping pings; `None` when the server closes the stream.
async fn next_frame(socket: &mut Socket) -> Option<Frame> {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Binary(bytes))) => return Some(Frame::decode(&bytes)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
        }
    }
}

/// Asserts nothing arrives for a moment.
async fn assert_quiet(socket: &mut Socket) {
    match tokio::time::timeout(Duration::from_millis(300), socket.next()).await {
        Err(_) => {}
        Ok(Some(Ok(Message::Ping(_)))) => {}
        Ok(other) => panic!("expected nothing, got {other:?}"),
    }
}

#[tokio::test]
async fn subscribe_labels_replays_then_follows_live() {
    let h = Harness::start().await;
    let key = h.labeler.public_key().clone();
    let a1 = post(ALICE, "3ksub");
    let s1 = h.apply(&a1, "nudity").await;
    let s2 = h.apply(&a1, "spam").await;
    let s3 = h.apply(ALICE, "!warn").await;
    let s4 = h.negate(&a1, "spam").await;
    assert_eq!((s1, s2, s3, s4), (1, 2, 3, 4));

    // Cursor 0 replays everything current: the negated label is left out of the stream,
    // its negation stays.
    let mut socket = h.connect(Some(0)).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        let frame = next_frame(&mut socket).await.expect("a replayed frame");
        let labels = frame.labels(&key);
        assert_eq!(labels.len(), 1);
        replayed.push((frame.seq(), labels[0].val.clone(), labels[0].is_negation()));
    }
    assert_eq!(
        replayed,
        vec![
            (1, "nudity".to_owned(), false),
            (3, "!warn".to_owned(), false),
            (4, "spam".to_owned(), true),
        ]
    );
    assert_quiet(&mut socket).await;

    // Live: a new label arrives, once.
    let s5 = h.apply(&post(BOB, "3klive"), "gore").await;
    let frame = next_frame(&mut socket).await.expect("a live frame");
    assert_eq!(frame.seq(), s5);
    let labels = frame.labels(&key);
    assert_eq!(
        (labels[0].uri.as_str(), labels[0].val.as_str()),
        (post(BOB, "3klive").as_str(), "gore")
    );
    assert_eq!(labels[0].src, LABELER);
    assert_quiet(&mut socket).await;
    drop(socket);

    // Reconnecting from the last seq seen repeats nothing; the next label comes next.
    let mut socket = h.connect(Some(s5)).await;
    assert_quiet(&mut socket).await;
    let s6 = h.apply(&post(BOB, "3klive"), "spam").await;
    let frame = next_frame(&mut socket).await.expect("the next frame");
    assert_eq!(frame.seq(), s6);

    // Without a cursor the stream starts from now.
    let mut live = h.connect(None).await;
    assert_quiet(&mut live).await;
    let s7 = h.apply(ALICE, "!hide").await;
    assert_eq!(next_frame(&mut live).await.expect("live").seq(), s7);
    assert_eq!(next_frame(&mut socket).await.expect("live").seq(), s7);
}

#[tokio::test]
async fn subscribe_labels_refuses_a_future_cursor() {
    let h = Harness::start().await;
    let latest = h.apply(ALICE, "spam").await;
    let mut socket = h.connect(Some(latest + 1)).await;
    let message = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("a frame in time");
    let Some(Ok(Message::Binary(bytes))) = message else {
        panic!("expected an error frame, got {message:?}")
    };
    let frame = Frame::decode(&bytes);
    assert_eq!(frame.header.get("op"), Some(&Ipld::Integer(-1)));
    assert!(!frame.header.contains_key("t"));
    assert_eq!(
        frame.body.get("error"),
        Some(&Ipld::String("FutureCursor".into()))
    );
    assert!(matches!(frame.body.get("message"), Some(Ipld::String(_))));
    // Then the server closes the stream.
    assert!(next_frame(&mut socket).await.is_none());

    // The cursor equal to the latest seq is fine (nothing to replay).
    let mut socket = h.connect(Some(latest)).await;
    assert_quiet(&mut socket).await;

    // A malformed cursor, or a plain GET, is an XRPC error before any upgrade.
    for query in ["?cursor=-1", "?cursor=x", ""] {
        let url = format!(
            "http://{}/xrpc/com.atproto.label.subscribeLabels{query}",
            h.addr
        );
        let response = h.http.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "InvalidRequest");
    }
}

#[tokio::test]
async fn subscribe_labels_has_no_gap_or_duplicate_under_concurrent_writes() {
    let h = Harness::start().await;
    const TOTAL: i64 = 120;
    // Some labels exist before anyone subscribes; the rest are written while subscribers
    // connect at different moments, each from cursor 0.
    for i in 0..20 {
        h.apply(&post(ALICE, &format!("3kc{i}")), "spam").await;
    }
    let writer = {
        let labeler = h.labeler.clone();
        tokio::spawn(async move {
            for i in 20..TOTAL {
                let uri = format!("at://{ALICE}/computer.aesthetic.painting/3kc{i}");
                labeler
                    .apply(&uri, None, "spam", false, None)
                    .await
                    .unwrap();
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut subscribers = Vec::new();
    for delay_ms in [0u64, 5, 20] {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let socket = h.connect(Some(0)).await;
        let key = h.labeler.public_key().clone();
        subscribers.push(tokio::spawn(async move {
            let mut socket = socket;
            let mut seqs = Vec::new();
            while seqs.len() < TOTAL as usize {
                let frame = next_frame(&mut socket).await.expect("a frame");
                assert_eq!(frame.labels(&key).len(), 1);
                seqs.push(frame.seq());
            }
            seqs
        }));
    }
    writer.await.unwrap();
    for subscriber in subscribers {
        let seqs = subscriber.await.unwrap();
        assert_eq!(seqs, (1..=TOTAL).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn labels_survive_a_restart_and_cts_never_goes_back() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("labels.sqlite");
    let key_path = dir.path().join("labeler_key");
    let uri = post(ALICE, "3krestart");
    let (first, negation) = {
        let store = LabelStore::open(&db).await.unwrap();
        let (key, _) = SigningKey::load_or_generate(&key_path).unwrap();
        let labeler = Labeler::new(LABELER, key, store).await.unwrap();
        let first = labeler
            .apply(&uri, Some(CID), "spam", false, None)
            .await
            .unwrap();
        let negation = labeler.apply(&uri, None, "spam", true, None).await.unwrap();
        labeler.store().close().await;
        (first, negation)
    };
    assert!(negation.label.is_negation());
    assert!(
        negation.label.cts > first.label.cts,
        "{} then {}",
        first.label.cts,
        negation.label.cts
    );

    let store = LabelStore::open(&db).await.unwrap();
    let (key, created) = SigningKey::load_or_generate(&key_path).unwrap();
    assert!(!created);
    let labeler = Labeler::new(LABELER, key, store).await.unwrap();
    assert_eq!(labeler.latest_seq(), negation.seq);
    let again = labeler
        .apply(&uri, None, "spam", false, None)
        .await
        .unwrap();
    assert_eq!(again.seq, negation.seq + 1);
    assert!(again.label.cts > negation.label.cts);
    assert_eq!(again.label.verify(labeler.public_key()), Ok(()));
    let current = labeler
        .store()
        .current(LABELER, &uri, "spam")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current, again);

    // Invalid input names its field, through the handle too.
    for (uri, val, exp, field) in [
        ("nope", "spam", None, Field::Uri),
        (ALICE, "Bad Value", None, Field::Val),
        (ALICE, "spam", Some("soon"), Field::Exp),
    ] {
        match labeler.apply(uri, None, val, false, exp).await {
            Err(LabelerError::Label(e)) => assert_eq!(e.field(), Some(field), "{e}"),
            other => panic!("{uri} {val}: {other:?}"),
        }
    }
    assert!(matches!(
        labeler
            .apply(ALICE, Some("bafy-nope"), "spam", false, None)
            .await,
        Err(LabelerError::Label(LabelError::Invalid {
            field: Field::Cid,
            ..
        }))
    ));
    assert!(matches!(
        Labeler::new("not-a-did", SigningKey::generate(), labeler.store().clone()).await,
        Err(LabelerError::InvalidDid(_))
    ));
}

#[tokio::test]
async fn stopping_the_service_closes_the_streams() {
    let mut h = Harness::start().await;
    h.apply(ALICE, "spam").await;
    let mut socket = h.connect(Some(0)).await;
    assert_eq!(next_frame(&mut socket).await.expect("replayed").seq(), 1);
    if let Some(stop) = h.stop.take() {
        let _ = stop.send(());
    }
    assert!(next_frame(&mut socket).await.is_none(), "stream closed");
}
