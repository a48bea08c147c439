//! ATProto public keys and signature checks.
//!
//! A repository's signing key reaches us in one of three textual forms:
//! - Multikey: `z` + base58btc(varint codec ‖ 33-byte compressed point), codec `0xe7`
//!   for secp256k1 (`zQ3s…`) and `0x1200` for NIST P-256 (`zDn…`);
//! - `did:key:` + Multikey;
//! - the legacy DID-document suites `EcdsaSecp256k1VerificationKey2019` and
//!   `EcdsaSecp256r1VerificationKey2019`, whose `publicKeyMultibase` is `z` + base58btc of
//!   the raw point (uncompressed or compressed), without a codec.
//!
//! A [`PublicKey`] is parsed once and then verifies many signatures. Signatures are the
//! 64-byte `r ‖ s` form over SHA-256 of the message, and **low-S is required on both
//! curves** (as the reference implementation requires); DER signatures are refused.
//!
//! k256 goes through libsecp256k1 (the fastest verifier available to us); p256 goes
//! through ring's `ECDSA_P256_SHA256_FIXED`, which accepts high-S, so we check low-S
//! ourselves. ring only takes uncompressed points, so compressed P-256 keys are
//! decompressed here once, at parse time (a small constant-free field implementation,
//! public data only).

use std::fmt;
use std::sync::OnceLock;

use secp256k1::{Secp256k1, VerifyOnly};
use sha2::{Digest, Sha256};

use super::cbor::read_uvarint;

/// Multicodec code of a secp256k1 public key (`secp256k1-pub`).
const CODEC_SECP256K1: u64 = 0xe7;
/// Multicodec code of a NIST P-256 public key (`p256-pub`).
const CODEC_P256: u64 = 0x1200;

/// The DID-document suite name of a Multikey verification method.
pub const SUITE_MULTIKEY: &str = "Multikey";
/// The legacy DID-document suite name of a secp256k1 key.
pub const SUITE_LEGACY_K256: &str = "EcdsaSecp256k1VerificationKey2019";
/// The legacy DID-document suite name of a P-256 key.
pub const SUITE_LEGACY_P256: &str = "EcdsaSecp256r1VerificationKey2019";

/// Half the secp256k1 group order, big-endian: a signature's `s` must not exceed it.
const K256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];
/// Half the P-256 group order, big-endian: a signature's `s` must not exceed it.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Which curve a key lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    /// secp256k1, JWT `alg` `ES256K`.
    K256,
    /// NIST P-256 (secp256r1), JWT `alg` `ES256`.
    P256,
}

impl Curve {
    /// The JWT `alg` name of signatures on this curve.
    pub fn jwt_alg(self) -> &'static str {
        match self {
            Curve::K256 => "ES256K",
            Curve::P256 => "ES256",
        }
    }
}

/// Why a key could not be parsed or a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The multibase string does not start with `z` (base58btc).
    #[error("multibase key must be base58btc ('z' prefix)")]
    NotBase58btc,
    /// A character outside the base58btc alphabet.
    #[error("invalid base58btc character")]
    Base58,
    /// A `did:key` that does not start with `did:key:`.
    #[error("not a did:key")]
    NotDidKey,
    /// The Multikey's varint codec prefix is truncated or overlong.
    #[error("malformed multicodec varint")]
    Varint,
    /// A multicodec other than secp256k1-pub or p256-pub.
    #[error("unsupported key codec 0x{0:x}")]
    UnsupportedCodec(u64),
    /// A DID-document verification method type we do not know.
    #[error("unsupported verification method type {0:?}")]
    UnsupportedSuite(String),
    /// The key bytes have the wrong length for the encoding.
    #[error("key has {0} bytes, expected 33 (compressed) or 65 (uncompressed)")]
    KeyLength(usize),
    /// The bytes are not a point on the curve.
    #[error("key is not a valid curve point")]
    InvalidPoint,
    /// A DID document without a usable `#atproto` verification method.
    #[error("DID document has no #atproto verification method")]
    NoAtprotoKey,
    /// The signature is not 64 bytes (`r ‖ s`); DER-encoded signatures land here.
    #[error("signature has {0} bytes, expected 64 (r||s; DER is refused)")]
    SignatureLength(usize),
    /// The signature's `s` is above half the group order.
    #[error("signature is not low-S")]
    HighS,
    /// `r` or `s` is zero or not below the group order.
    #[error("signature scalars out of range")]
    MalformedSignature,
    /// The signature does not match the key and message.
    #[error("signature does not verify")]
    BadSignature,
}

/// A parsed ATProto signing key, ready to verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// A secp256k1 key, parsed by libsecp256k1.
    K256(secp256k1::PublicKey),
    /// A P-256 key, as the 65-byte uncompressed point ring takes (checked on the curve).
    P256([u8; 65]),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey")
            .field(&self.to_did_key())
            .finish()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_multikey())
    }
}

/// The shared libsecp256k1 verification context (created once; verification needs no
/// precomputed tables of its own).
fn secp() -> &'static Secp256k1<VerifyOnly> {
    static CTX: OnceLock<Secp256k1<VerifyOnly>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::verification_only)
}

impl PublicKey {
    /// Parses a Multikey string: `z` + base58btc(varint codec ‖ compressed point).
    pub fn from_multikey(multikey: &str) -> Result<Self, KeyError> {
        let bytes = decode_multibase(multikey)?;
        let (codec, used) = read_uvarint(&bytes).map_err(|_| KeyError::Varint)?;
        let point = bytes.get(used..).unwrap_or_default();
        let curve = match codec {
            CODEC_SECP256K1 => Curve::K256,
            CODEC_P256 => Curve::P256,
            other => return Err(KeyError::UnsupportedCodec(other)),
        };
        if point.len() != 33 {
            return Err(KeyError::KeyLength(point.len()));
        }
        Self::from_point(curve, point)
    }

    /// Parses `did:key:` + Multikey.
    pub fn from_did_key(did_key: &str) -> Result<Self, KeyError> {
        let multikey = did_key
            .strip_prefix("did:key:")
            .ok_or(KeyError::NotDidKey)?;
        Self::from_multikey(multikey)
    }

    /// Parses a legacy `publicKeyMultibase`: `z` + base58btc of the raw point, without a
    /// codec, on the curve the verification method's type names.
    pub fn from_legacy_multibase(curve: Curve, multibase: &str) -> Result<Self, KeyError> {
        let bytes = decode_multibase(multibase)?;
        Self::from_point(curve, &bytes)
    }

    /// Parses a DID-document verification method from its `type` and
    /// `publicKeyMultibase`, accepting `Multikey` and both legacy suites.
    pub fn from_verification_method(suite: &str, multibase: &str) -> Result<Self, KeyError> {
        match suite {
            SUITE_MULTIKEY => Self::from_multikey(multibase),
            SUITE_LEGACY_K256 => Self::from_legacy_multibase(Curve::K256, multibase),
            SUITE_LEGACY_P256 => Self::from_legacy_multibase(Curve::P256, multibase),
            other => Err(KeyError::UnsupportedSuite(other.to_owned())),
        }
    }

    /// Finds the `#atproto` verification method of a DID document (id `#atproto` or
    /// `<did>#atproto`) and parses its key.
    pub fn from_did_document(doc: &serde_json::Value) -> Result<Self, KeyError> {
        let did = doc.get("id").and_then(|v| v.as_str()).unwrap_or_default();
        let methods = doc
            .get("verificationMethod")
            .and_then(|v| v.as_array())
            .ok_or(KeyError::NoAtprotoKey)?;
        for method in methods {
            let Some(id) = method.get("id").and_then(|v| v.as_str()) else {
                continue;
            };
            let is_atproto = id == "#atproto"
                || id
                    .strip_suffix("#atproto")
                    .is_some_and(|prefix| !prefix.is_empty() && prefix == did);
            if !is_atproto {
                continue;
            }
            let suite = method.get("type").and_then(|v| v.as_str());
            let multibase = method.get("publicKeyMultibase").and_then(|v| v.as_str());
            if let (Some(suite), Some(multibase)) = (suite, multibase) {
                return Self::from_verification_method(suite, multibase);
            }
            return Err(KeyError::NoAtprotoKey);
        }
        Err(KeyError::NoAtprotoKey)
    }

    /// Parses a raw SEC1 point (33 bytes compressed or 65 bytes uncompressed).
    pub fn from_point(curve: Curve, point: &[u8]) -> Result<Self, KeyError> {
        if point.len() != 33 && point.len() != 65 {
            return Err(KeyError::KeyLength(point.len()));
        }
        match curve {
            Curve::K256 => secp256k1::PublicKey::from_slice(point)
                .map(PublicKey::K256)
                .map_err(|_| KeyError::InvalidPoint),
            Curve::P256 => p256::to_uncompressed(point).map(PublicKey::P256),
        }
    }

    /// The key's curve.
    pub fn curve(&self) -> Curve {
        match self {
            PublicKey::K256(_) => Curve::K256,
            PublicKey::P256(_) => Curve::P256,
        }
    }

    /// The 33-byte compressed SEC1 point.
    pub fn to_compressed(&self) -> [u8; 33] {
        match self {
            PublicKey::K256(key) => key.serialize(),
            PublicKey::P256(point) => {
                let mut out = [0u8; 33];
                out[0] = 0x02 | (point[64] & 1);
                out[1..].copy_from_slice(&point[1..33]);
                out
            }
        }
    }

    /// The Multikey encoding (`zQ3s…` or `zDn…`).
    pub fn to_multikey(&self) -> String {
        let mut bytes = Vec::with_capacity(35);
        match self.curve() {
            Curve::K256 => bytes.extend_from_slice(&[0xe7, 0x01]),
            Curve::P256 => bytes.extend_from_slice(&[0x80, 0x24]),
        }
        bytes.extend_from_slice(&self.to_compressed());
        let mut out = String::with_capacity(50);
        out.push('z');
        base58::encode_into(&bytes, &mut out);
        out
    }

    /// The `did:key:` encoding.
    pub fn to_did_key(&self) -> String {
        format!("did:key:{}", self.to_multikey())
    }

    /// Verifies a 64-byte `r ‖ s` signature over SHA-256(`msg`), requiring low-S.
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), KeyError> {
        let s: &[u8; 32] = sig[32..]
            .try_into()
            .map_err(|_| KeyError::MalformedSignature)?;
        match self {
            PublicKey::K256(key) => {
                if s > &K256_HALF_ORDER {
                    return Err(KeyError::HighS);
                }
                let sig = secp256k1::ecdsa::Signature::from_compact(sig)
                    .map_err(|_| KeyError::MalformedSignature)?;
                let digest: [u8; 32] = Sha256::digest(msg).into();
                secp()
                    .verify_ecdsa(secp256k1::Message::from_digest(digest), &sig, key)
                    .map_err(|_| KeyError::BadSignature)
            }
            PublicKey::P256(point) => {
                if s > &P256_HALF_ORDER {
                    return Err(KeyError::HighS);
                }
                ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P256_SHA256_FIXED,
                    &point[..],
                )
                .verify(msg, sig)
                .map_err(|_| KeyError::BadSignature)
            }
        }
    }

    /// Like [`PublicKey::verify`], for a signature of unchecked length: anything but 64
    /// bytes (DER in particular) is refused with [`KeyError::SignatureLength`].
    pub fn verify_bytes(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let sig: &[u8; 64] = sig
            .try_into()
            .map_err(|_| KeyError::SignatureLength(sig.len()))?;
        self.verify(msg, sig)
    }
}

/// Decodes `z` + base58btc.
fn decode_multibase(s: &str) -> Result<Vec<u8>, KeyError> {
    let body = s.strip_prefix('z').ok_or(KeyError::NotBase58btc)?;
    base58::decode(body)
}

/// Base58 with the Bitcoin alphabet, as multibase `z` uses it.
mod base58 {
    use super::KeyError;

    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    /// Longest input we decode: keys are under 100 characters; this bounds the quadratic
    /// conversion on hostile input.
    const MAX_INPUT: usize = 512;

    /// Maps an ASCII byte to its digit value, or 0xff.
    const fn digits() -> [u8; 256] {
        let mut table = [0xffu8; 256];
        let mut i = 0;
        while i < 58 {
            table[ALPHABET[i] as usize] = i as u8;
            i += 1;
        }
        table
    }
    const DIGITS: [u8; 256] = digits();

    pub(super) fn decode(s: &str) -> Result<Vec<u8>, KeyError> {
        let input = s.as_bytes();
        if input.len() > MAX_INPUT {
            return Err(KeyError::Base58);
        }
        let zeros = input.iter().take_while(|&&c| c == b'1').count();
        // Big-endian base-256 accumulator, least significant byte last.
        let mut out: Vec<u8> = Vec::with_capacity(input.len());
        for &c in &input[zeros..] {
            let digit = DIGITS[usize::from(c)];
            if digit == 0xff {
                return Err(KeyError::Base58);
            }
            let mut carry = u32::from(digit);
            for byte in out.iter_mut().rev() {
                carry += u32::from(*byte) * 58;
                *byte = (carry & 0xff) as u8;
                carry >>= 8;
            }
            while carry > 0 {
                out.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        let mut result = vec![0u8; zeros];
        result.extend_from_slice(&out);
        Ok(result)
    }

    pub(super) fn encode_into(bytes: &[u8], out: &mut String) {
        let zeros = bytes.iter().take_while(|&&b| b == 0).count();
        // Little-endian base-58 digits.
        let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
        for &b in &bytes[zeros..] {
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
        out.extend(std::iter::repeat_n('1', zeros));
        out.extend(
            digits
                .iter()
                .rev()
                .map(|&d| char::from(ALPHABET[usize::from(d)])),
        );
    }
}

/// Just enough P-256 field arithmetic to validate and decompress public points.
///
/// Montgomery multiplication over four 64-bit limbs (little-endian); all inputs are
/// public, so nothing here needs to be constant-time.
mod p256 {
    use super::KeyError;

    type Fe = [u64; 4];

    /// p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
    const P: Fe = [
        0xffff_ffff_ffff_ffff,
        0x0000_0000_ffff_ffff,
        0x0000_0000_0000_0000,
        0xffff_ffff_0000_0001,
    ];
    /// The curve constant b, big-endian.
    const B: [u8; 32] = [
        0x5a, 0xc6, 0x35, 0xd8, 0xaa, 0x3a, 0x93, 0xe7, 0xb3, 0xeb, 0xbd, 0x55, 0x76, 0x98, 0x86,
        0xbc, 0x65, 0x1d, 0x06, 0xb0, 0xcc, 0x53, 0xb0, 0xf6, 0x3b, 0xce, 0x3c, 0x3e, 0x27, 0xd2,
        0x60, 0x4b,
    ];

    fn from_be(bytes: &[u8]) -> Fe {
        let mut out = [0u64; 4];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut limb = [0u8; 8];
            limb.copy_from_slice(chunk);
            out[3 - i] = u64::from_be_bytes(limb);
        }
        out
    }

    fn to_be(fe: &Fe) -> [u8; 32] {
        let mut out = [0u8; 32];
        for i in 0..4 {
            out[i * 8..i * 8 + 8].copy_from_slice(&fe[3 - i].to_be_bytes());
        }
        out
    }

    fn lt(a: &Fe, b: &Fe) -> bool {
        for i in (0..4).rev() {
            if a[i] != b[i] {
                return a[i] < b[i];
            }
        }
        false
    }

    /// a - b over 256 bits, returning the borrow.
    fn sub_raw(a: &Fe, b: &Fe) -> (Fe, bool) {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for i in 0..4 {
            let (d1, b1) = a[i].overflowing_sub(b[i]);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            out[i] = d2;
            borrow = b1 || b2;
        }
        (out, borrow)
    }

    fn add(a: &Fe, b: &Fe) -> Fe {
        let mut out = [0u64; 4];
        let mut carry = false;
        for i in 0..4 {
            let (s1, c1) = a[i].overflowing_add(b[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            out[i] = s2;
            carry = c1 || c2;
        }
        if carry || !lt(&out, &P) {
            out = sub_raw(&out, &P).0;
        }
        out
    }

    fn sub(a: &Fe, b: &Fe) -> Fe {
        let (out, borrow) = sub_raw(a, b);
        if borrow {
            // Wrapping add of p undoes the wrap-around.
            let mut fixed = [0u64; 4];
            let mut carry = false;
            for i in 0..4 {
                let (s1, c1) = out[i].overflowing_add(P[i]);
                let (s2, c2) = s1.overflowing_add(u64::from(carry));
                fixed[i] = s2;
                carry = c1 || c2;
            }
            fixed
        } else {
            out
        }
    }

    /// Montgomery product a·b·2^-256 mod p (CIOS). p ≡ -1 mod 2^64, so -p^-1 mod 2^64 = 1.
    fn mont_mul(a: &Fe, b: &Fe) -> Fe {
        let mut t = [0u64; 6];
        for &bi in b {
            let mut carry = 0u128;
            for j in 0..4 {
                let v = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + carry;
                t[j] = v as u64;
                carry = v >> 64;
            }
            let v = u128::from(t[4]) + carry;
            t[4] = v as u64;
            t[5] = (v >> 64) as u64;

            let m = t[0];
            let mut carry = (u128::from(t[0]) + u128::from(m) * u128::from(P[0])) >> 64;
            for j in 1..4 {
                let v = u128::from(t[j]) + u128::from(m) * u128::from(P[j]) + carry;
                t[j - 1] = v as u64;
                carry = v >> 64;
            }
            let v = u128::from(t[4]) + carry;
            t[3] = v as u64;
            t[4] = t[5] + (v >> 64) as u64;
        }
        let out = [t[0], t[1], t[2], t[3]];
        if t[4] != 0 || !lt(&out, &P) {
            sub_raw(&out, &P).0
        } else {
            out
        }
    }

    /// 2^512 mod p, to enter the Montgomery domain.
    fn r_squared() -> Fe {
        let mut x: Fe = [1, 0, 0, 0];
        for _ in 0..512 {
            x = add(&x, &x);
        }
        x
    }

    fn to_mont(a: &Fe, r2: &Fe) -> Fe {
        mont_mul(a, r2)
    }

    fn from_mont(a: &Fe) -> Fe {
        mont_mul(a, &[1, 0, 0, 0])
    }

    /// base^exp in the Montgomery domain (`one` = R mod p).
    fn pow(base: &Fe, exp: &Fe, one: &Fe) -> Fe {
        let mut acc = *one;
        for i in (0..4).rev() {
            for bit in (0..64).rev() {
                acc = mont_mul(&acc, &acc);
                if (exp[i] >> bit) & 1 == 1 {
                    acc = mont_mul(&acc, base);
                }
            }
        }
        acc
    }

    /// Returns the 65-byte uncompressed point for a compressed or uncompressed SEC1
    /// encoding, checking that it lies on the curve.
    pub(super) fn to_uncompressed(point: &[u8]) -> Result<[u8; 65], KeyError> {
        let tag = point.first().copied().ok_or(KeyError::InvalidPoint)?;
        let x = from_be(point.get(1..33).ok_or(KeyError::InvalidPoint)?);
        if !lt(&x, &P) {
            return Err(KeyError::InvalidPoint);
        }
        let r2 = r_squared();
        let one = to_mont(&[1, 0, 0, 0], &r2);
        let xm = to_mont(&x, &r2);
        let bm = to_mont(&from_be(&B), &r2);
        // rhs = x^3 - 3x + b.
        let x3 = mont_mul(&mont_mul(&xm, &xm), &xm);
        let three_x = add(&add(&xm, &xm), &xm);
        let rhs = add(&sub(&x3, &three_x), &bm);

        let y = match (tag, point.len()) {
            (0x04, 65) => {
                let y = from_be(&point[33..65]);
                if !lt(&y, &P) {
                    return Err(KeyError::InvalidPoint);
                }
                let ym = to_mont(&y, &r2);
                if mont_mul(&ym, &ym) != rhs {
                    return Err(KeyError::InvalidPoint);
                }
                y
            }
            (0x02 | 0x03, 33) => {
                // p ≡ 3 (mod 4), so a square root of rhs is rhs^((p+1)/4).
                // p + 1: p's low limb is all ones, so the carry lands in limb 1.
                let exp = shr2(&[0, P[1] + 1, P[2], P[3]]);
                let root = pow(&rhs, &exp, &one);
                if mont_mul(&root, &root) != rhs {
                    return Err(KeyError::InvalidPoint);
                }
                let mut y = from_mont(&root);
                if (y[0] & 1) != u64::from(tag & 1) {
                    if y == [0; 4] {
                        return Err(KeyError::InvalidPoint);
                    }
                    y = sub_raw(&P, &y).0;
                }
                y
            }
            _ => return Err(KeyError::InvalidPoint),
        };
        let mut out = [0u8; 65];
        out[0] = 0x04;
        out[1..33].copy_from_slice(&to_be(&x));
        out[33..].copy_from_slice(&to_be(&y));
        Ok(out)
    }

    fn shr2(a: &Fe) -> Fe {
        [
            (a[0] >> 2) | (a[1] << 62),
            (a[1] >> 2) | (a[2] << 62),
            (a[2] >> 2) | (a[3] << 62),
            a[3] >> 2,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_orders_are_half_the_orders() {
        // n >> 1 for both group orders, computed independently of the constants.
        let k256_n = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let p256_n = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
        for (n, half) in [(k256_n, K256_HALF_ORDER), (p256_n, P256_HALF_ORDER)] {
            let n = data_encoding::HEXLOWER.decode(n.as_bytes()).unwrap();
            let mut shifted = [0u8; 32];
            let mut carry = 0u8;
            for (i, b) in n.iter().enumerate() {
                shifted[i] = (b >> 1) | (carry << 7);
                carry = b & 1;
            }
            assert_eq!(shifted, half);
        }
    }

    #[test]
    fn base58_round_trip() {
        for input in [&b""[..], b"\0\0abc", b"hello world", &[0xff; 40]] {
            let mut s = String::new();
            base58::encode_into(input, &mut s);
            assert_eq!(base58::decode(&s).unwrap(), input);
        }
        assert_eq!(base58::decode("0"), Err(KeyError::Base58));
    }
}
