//! Key parsing and signature checks against the atproto interop fixtures
//! (`crypto/signature-fixtures.json`, `crypto/w3c_didkey_{K256,P256}.json`).

mod support;

use atelier_relay::sync::keys::{Curve, KeyError, PublicKey};
use data_encoding::{BASE64, BASE64_NOPAD, HEXLOWER};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignatureFixture {
    comment: String,
    message_base64: String,
    algorithm: String,
    did_doc_suite: String,
    public_key_did: String,
    public_key_multibase: String,
    signature_base64: String,
    valid_signature: bool,
    tags: Vec<String>,
}

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = support::interop_dir().join("crypto").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn b64(s: &str) -> Vec<u8> {
    let trimmed = s.trim_end_matches('=');
    BASE64_NOPAD
        .decode(trimmed.as_bytes())
        .or_else(|_| BASE64.decode(s.as_bytes()))
        .unwrap_or_else(|e| panic!("base64 {s:?}: {e}"))
}

#[test]
fn signature_fixtures() {
    let fixtures: Vec<SignatureFixture> = fixture("signature-fixtures.json");
    let (mut valid_ok, mut invalid_rejected, mut high_s, mut der) = (0, 0, 0, 0);
    for f in &fixtures {
        let from_did = PublicKey::from_did_key(&f.public_key_did)
            .unwrap_or_else(|e| panic!("{}: did:key: {e}", f.comment));
        let from_doc =
            PublicKey::from_verification_method(&f.did_doc_suite, &f.public_key_multibase)
                .unwrap_or_else(|e| panic!("{}: legacy multibase: {e}", f.comment));
        assert_eq!(
            from_did, from_doc,
            "{}: both encodings name one key",
            f.comment
        );
        let expected_curve = match f.algorithm.as_str() {
            "ES256K" => Curve::K256,
            "ES256" => Curve::P256,
            other => panic!("unknown algorithm {other}"),
        };
        assert_eq!(from_did.curve(), expected_curve, "{}", f.comment);
        assert_eq!(
            from_did.to_did_key(),
            f.public_key_did,
            "{}: re-encode",
            f.comment
        );

        let msg = b64(&f.message_base64);
        let sig = b64(&f.signature_base64);
        let result = from_did.verify_bytes(&msg, &sig);
        if f.valid_signature {
            assert_eq!(result, Ok(()), "{}", f.comment);
            valid_ok += 1;
        } else {
            assert!(result.is_err(), "{}: must be rejected", f.comment);
            invalid_rejected += 1;
            if f.tags.iter().any(|t| t == "high-s") {
                assert_eq!(result, Err(KeyError::HighS), "{}", f.comment);
                high_s += 1;
            }
            if f.tags.iter().any(|t| t == "der-encoded") {
                assert!(
                    matches!(result, Err(KeyError::SignatureLength(n)) if n != 64),
                    "{}: {result:?}",
                    f.comment
                );
                der += 1;
            }
        }
    }
    println!(
        "signature fixtures: {} total, {valid_ok} valid verified, {invalid_rejected} invalid rejected ({high_s} high-S, {der} DER)",
        fixtures.len()
    );
    assert_eq!(fixtures.len(), 6);
    assert_eq!((valid_ok, invalid_rejected, high_s, der), (2, 4, 2, 2));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct K256Fixture {
    private_key_bytes_hex: String,
    public_did_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct P256Fixture {
    private_key_bytes_base58: String,
    public_did_key: String,
}

#[test]
fn w3c_did_key_k256() {
    let fixtures: Vec<K256Fixture> = fixture("w3c_didkey_K256.json");
    let secp = secp256k1::Secp256k1::signing_only();
    let msg = b"atelier k256 round trip";
    for f in &fixtures {
        let secret = HEXLOWER.decode(f.private_key_bytes_hex.as_bytes()).unwrap();
        let secret = secp256k1::SecretKey::from_byte_array(secret.try_into().unwrap()).unwrap();
        let derived = secp256k1::PublicKey::from_secret_key(&secp, &secret);

        let parsed = PublicKey::from_did_key(&f.public_did_key).unwrap();
        assert_eq!(parsed.curve(), Curve::K256);
        assert_eq!(
            parsed.to_compressed(),
            derived.serialize(),
            "{}",
            f.public_did_key
        );
        assert_eq!(parsed.to_did_key(), f.public_did_key);
        // The legacy uncompressed form names the same key.
        let legacy = PublicKey::from_point(Curve::K256, &derived.serialize_uncompressed()).unwrap();
        assert_eq!(legacy, parsed);

        // A signature made with the private key verifies (libsecp256k1 signs low-S)...
        let digest: [u8; 32] = sha2::Sha256::digest(msg).into();
        let sig = secp
            .sign_ecdsa(secp256k1::Message::from_digest(digest), &secret)
            .serialize_compact();
        assert_eq!(parsed.verify(msg, &sig), Ok(()));
        // ...its high-S twin is refused, and so is a different message.
        assert_eq!(
            parsed.verify(msg, &negate_s(&sig, K256_N)),
            Err(KeyError::HighS)
        );
        assert_eq!(parsed.verify(b"other", &sig), Err(KeyError::BadSignature));
    }
    println!("w3c did:key K256: {} keys checked", fixtures.len());
    assert_eq!(fixtures.len(), 5);
}

#[test]
fn w3c_did_key_p256() {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let fixtures: Vec<P256Fixture> = fixture("w3c_didkey_P256.json");
    let rng = ring::rand::SystemRandom::new();
    let msg = b"atelier p256 round trip";
    for f in &fixtures {
        let secret = base58_decode(&f.private_key_bytes_base58);
        let parsed = PublicKey::from_did_key(&f.public_did_key).unwrap();
        assert_eq!(parsed.curve(), Curve::P256);
        assert_eq!(parsed.to_did_key(), f.public_did_key);
        let PublicKey::P256(point) = &parsed else {
            panic!("P-256 key expected")
        };
        // ring checks that the (decompressed) public point matches the private key.
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &secret,
            &point[..],
            &rng,
        )
        .expect("decompressed point matches the private key");
        // The uncompressed legacy form parses to the same key.
        assert_eq!(
            PublicKey::from_point(Curve::P256, &point[..]).unwrap(),
            parsed
        );

        // ring signs with either S; check both halves of the low-S rule.
        for _ in 0..8 {
            let sig: [u8; 64] = pair.sign(&rng, msg).unwrap().as_ref().try_into().unwrap();
            let (low, high) = if parsed.verify(msg, &sig).is_ok() {
                (sig, negate_s(&sig, P256_N))
            } else {
                (negate_s(&sig, P256_N), sig)
            };
            assert_eq!(parsed.verify(msg, &low), Ok(()));
            assert_eq!(parsed.verify(msg, &high), Err(KeyError::HighS));
            assert_eq!(parsed.verify(b"other", &low), Err(KeyError::BadSignature));
        }
    }
    println!("w3c did:key P256: {} keys checked", fixtures.len());
    assert_eq!(fixtures.len(), 1);
}

#[test]
fn malformed_keys_are_typed_errors() {
    let cases: &[(&str, KeyError)] = &[
        // base58 "4z" is the single byte 0xe7: a varint cut short.
        ("z4z", KeyError::Varint),
        (
            "Q3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
            KeyError::NotBase58btc,
        ),
        ("z0OIl", KeyError::Base58),
        (
            "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
            KeyError::UnsupportedCodec(0xed),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            PublicKey::from_multikey(input).err().as_ref(),
            Some(expected),
            "{input}"
        );
    }
    assert_eq!(
        PublicKey::from_did_key("did:web:x").err(),
        Some(KeyError::NotDidKey)
    );
    // A compressed x coordinate that is not on P-256 (x = 5 has no square root here or
    // an invalid tag).
    let mut bad = [0u8; 33];
    bad[0] = 0x05;
    assert_eq!(
        PublicKey::from_point(Curve::P256, &bad),
        Err(KeyError::InvalidPoint)
    );
    assert_eq!(
        PublicKey::from_point(Curve::K256, &bad),
        Err(KeyError::InvalidPoint)
    );
    assert_eq!(
        PublicKey::from_point(Curve::P256, &[2; 20]),
        Err(KeyError::KeyLength(20))
    );
}

const K256_N: [u8; 32] = hex32("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
const P256_N: [u8; 32] = hex32("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

const fn hex32(s: &str) -> [u8; 32] {
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// (r, s) -> (r, n - s): the other valid signature for the same key and message.
fn negate_s(sig: &[u8; 64], n: [u8; 32]) -> [u8; 64] {
    let mut out = *sig;
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[32 + i] = d as u8;
    }
    out
}

/// An independent base58btc decoder for the fixture's private key.
fn base58_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut n: Vec<u8> = vec![0];
    for c in s.chars() {
        let mut carry = ALPHABET.find(c).expect("base58 digit") as u32;
        for b in n.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = carry as u8;
            carry >>= 8;
        }
        while carry > 0 {
            n.push(carry as u8);
            carry >>= 8;
        }
    }
    while n.len() > 1 && n.last() == Some(&0) {
        n.pop();
    }
    n.reverse();
    n
}

use sha2::Digest as _;
