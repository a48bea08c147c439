//! The labeler's signing key: a secp256k1 (k256) private key that signs labels.
//!
//! The key file holds 32 bytes as lowercase hex and a newline, the form `atelier init`
//! already generates for `DATA_DIR/secrets/labeler_key`, so either can create it. Files are
//! written with mode 0600 from the moment they exist, never overwritten, and a
//! world-readable key file is refused on load.
//!
//! Signatures are ECDSA over SHA-256 of the message, RFC 6979 nonces (libsecp256k1), in
//! the 64-byte `r ‖ s` form and normalized to low-S, as the cryptography spec requires.
//! The public half is the relay's [`PublicKey`], which formats it as a Multikey or a
//! `did:key` for the DID document's `#atproto_label` method and verifies signatures.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atelier_relay::sync::keys::PublicKey;
use rand::RngCore;
use secp256k1::{Secp256k1, SignOnly};
use sha2::{Digest, Sha256};

use crate::config::secret::{SecretError, read_secret_file};

/// Why a key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key file could not be read, or is world-readable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The file's text is not 64 hex digits.
    #[error("key file {}: expected 64 hex digits (a k256 private key)", path.display())]
    NotHex {
        /// The file.
        path: PathBuf,
    },
    /// The 32 bytes are not a valid secp256k1 private key (zero or past the group order).
    #[error("key file {}: not a valid k256 private key", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be created or written.
    #[error("writing key file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A k256 private key that signs labels. `Debug` shows only the public `did:key`.
pub struct SigningKey {
    secret: secp256k1::SecretKey,
    /// The public half, computed once.
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public.to_did_key())
            .finish_non_exhaustive()
    }
}

/// The shared libsecp256k1 signing context.
fn secp() -> &'static Secp256k1<SignOnly> {
    static CTX: OnceLock<Secp256k1<SignOnly>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::signing_only)
}

impl SigningKey {
    /// A new random key (from the operating system's generator, through `rand`).
    pub fn generate() -> SigningKey {
        let mut rng = rand::rng();
        loop {
            // Almost every 32-byte string is a valid key; the loop skips zero and values
            // past the group order.
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Ok(secret) = secp256k1::SecretKey::from_byte_array(bytes) {
                return SigningKey::from_secret(secret);
            }
        }
    }

    /// The key whose 32 private bytes are `bytes`, or `None` if they are not a valid key.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<SigningKey> {
        secp256k1::SecretKey::from_byte_array(bytes)
            .ok()
            .map(SigningKey::from_secret)
    }

    /// Parses 64 hex digits (either case; surrounding whitespace ignored).
    pub fn from_hex(hex: &str) -> Option<SigningKey> {
        let hex = hex.trim().to_ascii_lowercase();
        let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        SigningKey::from_bytes(bytes)
    }

    fn from_secret(secret: secp256k1::SecretKey) -> SigningKey {
        let public = PublicKey::K256(secp256k1::PublicKey::from_secret_key(secp(), &secret));
        SigningKey { secret, public }
    }

    /// Reads a key file (hex), refusing a world-readable one.
    pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
        let text = read_secret_file(path)?;
        let hex = text.expose().trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyFileError::NotHex {
                path: path.to_owned(),
            });
        }
        SigningKey::from_hex(hex).ok_or_else(|| KeyFileError::InvalidKey {
            path: path.to_owned(),
        })
    }

    /// Writes the key to a new file with mode 0600 (lowercase hex and a newline). An
    /// existing file is never overwritten: losing a labeler key invalidates its labels.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let write_error = |source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write_error)?;
        file.write_all(format!("{}\n", self.to_hex()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(write_error)
    }

    /// Loads the key at `path`, or generates and saves one if there is no file yet.
    /// Returns the key and whether it was created.
    pub fn load_or_generate(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
        if path.exists() {
            return SigningKey::load(path).map(|key| (key, false));
        }
        let key = SigningKey::generate();
        key.save(path)?;
        Ok((key, true))
    }

    /// The private key as lowercase hex. Handle with care: this is the secret.
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.secret.secret_bytes())
    }

    /// The public key, to verify this key's signatures.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key as a Multikey (`zQ3s…`), for the DID document's `#atproto_label`
    /// verification method (`publicKeyMultibase`).
    pub fn multikey(&self) -> String {
        self.public.to_multikey()
    }

    /// The public key as `did:key:zQ3s…`.
    pub fn did_key(&self) -> String {
        self.public.to_did_key()
    }

    /// Signs SHA-256(`msg`): 64 bytes `r ‖ s`, low-S.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        let mut sig = secp().sign_ecdsa(secp256k1::Message::from_digest(digest), &self.secret);
        // libsecp256k1 already signs low-S; normalizing again states the requirement.
        sig.normalize_s();
        sig.serialize_compact()
    }
}

impl atelier_appview::labels::LabelSigner for SigningKey {
    fn sign_label_bytes(&self, msg: &[u8]) -> [u8; 64] {
        self.sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_public_key() {
        let key = SigningKey::generate();
        let sig = key.sign(b"hello");
        assert_eq!(key.public_key().verify(b"hello", &sig), Ok(()));
        assert!(key.public_key().verify(b"hellO", &sig).is_err());
        assert!(key.multikey().starts_with("zQ3s"));
    }

    #[test]
    fn hex_round_trips() {
        let key = SigningKey::generate();
        let again = SigningKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.did_key(), key.did_key());
        assert!(SigningKey::from_hex(&"00".repeat(32)).is_none());
        assert!(SigningKey::from_hex("abc").is_none());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
