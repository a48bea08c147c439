//! DPoP proofs (RFC 9449), PKCE (RFC 7636) and the random values the flow needs.
//!
//! Each OAuth session has its own ES256 (P-256) key, generated at the start of the
//! authorization and kept with the session: the access and refresh tokens are bound to
//! it, so it is as secret as the tokens. The key is held as PKCS#8 bytes (the only form
//! ring exports), which is also what the encrypted store keeps.
//!
//! A proof is a compact JWS: header `{typ: "dpop+jwt", alg: "ES256", jwk}` and claims
//! `jti`, `htm`, `htu` (the URL without query and fragment), `iat`, and when known the
//! server's `nonce`; resource requests add `ath`, the SHA-256 of the access token.
//! Signatures are the fixed 64-byte `r‖s` form JWS wants.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use data_encoding::BASE64URL_NOPAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use url::Url;

use super::OAuthError;

/// `n` random bytes from the system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], OAuthError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| OAuthError::Crypto("the system random generator failed"))?;
    Ok(out)
}

/// A random URL-safe token with `N` bytes of entropy (state, PKCE verifier, jti, ids).
pub(crate) fn random_token<const N: usize>() -> Result<String, OAuthError> {
    Ok(BASE64URL_NOPAD.encode(&random_bytes::<N>()?))
}

/// SHA-256, base64url without padding (PKCE `S256` challenge, DPoP `ath`).
pub(crate) fn sha256_b64(input: &[u8]) -> String {
    BASE64URL_NOPAD.encode(ring::digest::digest(&ring::digest::SHA256, input).as_ref())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A PKCE pair: the verifier stays with us, the `S256` challenge goes in the PAR.
pub(crate) struct Pkce {
    pub(crate) verifier: String,
    pub(crate) challenge: String,
}

impl Pkce {
    /// A fresh verifier (32 random bytes: 43 characters, within RFC 7636's 43-128).
    pub(crate) fn generate() -> Result<Pkce, OAuthError> {
        let verifier = random_token::<32>()?;
        let challenge = sha256_b64(verifier.as_bytes());
        Ok(Pkce {
            verifier,
            challenge,
        })
    }
}

/// A session's ES256 DPoP key. Debug shows only the algorithm, never key material.
pub struct DpopKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &"ES256")
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random key.
    pub fn generate() -> Result<DpopKey, OAuthError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| OAuthError::Crypto("generating a P-256 key failed"))?;
        DpopKey::from_pkcs8(doc.as_ref())
    }

    /// A key from its PKCS#8 bytes (as [`DpopKey::pkcs8`] gave them).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<DpopKey, OAuthError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| OAuthError::Crypto("the stored DPoP key is not a P-256 PKCS#8 key"))?;
        Ok(DpopKey {
            pkcs8: pkcs8.to_vec(),
            pair,
        })
    }

    /// The private key as PKCS#8 (for the encrypted store only).
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> serde_json::Value {
        // ring gives the uncompressed SEC1 point: 0x04 ‖ x ‖ y, 32 bytes each.
        let point = self.pair.public_key().as_ref();
        let (x, y) = point
            .get(1..33)
            .zip(point.get(33..65))
            .unwrap_or((&[], &[]));
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": BASE64URL_NOPAD.encode(x),
            "y": BASE64URL_NOPAD.encode(y),
        })
    }

    /// A DPoP proof for `method` on `url`, with the server's `nonce` if one is known and
    /// `ath` when `access_token` is given (resource requests).
    pub(crate) fn proof(
        &self,
        method: &str,
        url: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, OAuthError> {
        let mut htu = Url::parse(url).map_err(|e| OAuthError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        htu.set_query(None);
        htu.set_fragment(None);
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()});
        let mut claims = json!({
            "jti": random_token::<16>()?,
            "htm": method,
            "htu": htu.as_str(),
            "iat": now_unix(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(token) = access_token {
            claims["ath"] = json!(sha256_b64(token.as_bytes()));
        }
        self.sign_jws(&header, &claims)
    }

    /// A compact JWS over `header` and `claims`, signed with this key.
    pub(crate) fn sign_jws(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, OAuthError> {
        let signing_input = format!(
            "{}.{}",
            BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
            BASE64URL_NOPAD.encode(claims.to_string().as_bytes()),
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| OAuthError::Crypto("signing the DPoP proof failed"))?;
        Ok(format!(
            "{signing_input}.{}",
            BASE64URL_NOPAD.encode(sig.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn proof_verifies_and_carries_claims() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof(
                "POST",
                "http://localhost:1234/xrpc/x?y=1#f",
                Some("n1"),
                Some("tok"),
            )
            .unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        assert_eq!(claims["htu"], "http://localhost:1234/xrpc/x");
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["nonce"], "n1");
        assert_eq!(claims["ath"], sha256_b64(b"tok"));
        let sig = BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap();
        let public = key.pair.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // The key survives its PKCS#8 round trip.
        let again = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(again.public_jwk(), key.public_jwk());
    }

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        // SHA-256("abc"), base64url without padding.
        assert_eq!(
            sha256_b64(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        let p = Pkce::generate().unwrap();
        assert_eq!(p.verifier.len(), 43);
    }
}
