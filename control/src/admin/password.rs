//! Passwords: argon2id hashes in PHC strings, the rules a new password must follow, and
//! generated passwords.
//!
//! Hashing uses argon2's recommended parameters (argon2id, 19 MiB, 2 passes, 1 lane: the
//! OWASP baseline). Each PHC string records its own parameters, so raising them later
//! needs no migration: old hashes still verify with theirs. Both hashing and verifying
//! take tens of milliseconds of CPU on purpose; async callers run them on the blocking
//! pool, as [`super::store::UserStore`] does, at most one per core at a time.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;

/// The shortest password a user may choose.
pub const MIN_LEN: usize = 12;

/// The longest password accepted: bounds the hashing work one request can ask for.
pub const MAX_LEN: usize = 1024;

/// Bytes of salt per hash (the PHC recommendation).
const SALT_LEN: usize = 16;

/// A password could not be hashed (argon2 refused its input or parameters).
#[derive(Debug, thiserror::Error)]
#[error("hashing a password failed: {0}")]
pub struct HashError(argon2::password_hash::Error);

/// Why a new password is refused. The messages are shown to the user as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    /// Fewer than [`MIN_LEN`] characters.
    #[error("The new password must be at least {MIN_LEN} characters long.")]
    TooShort,
    /// More than [`MAX_LEN`] characters.
    #[error("The new password must be at most {MAX_LEN} characters long.")]
    TooLong,
    /// The same as the current one.
    #[error("The new password must differ from the current one.")]
    Unchanged,
    /// The two copies typed differ.
    #[error("The two copies of the new password differ.")]
    Mismatch,
}

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// Hashes `password` with a fresh random salt, as a PHC string.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(HashError)?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(HashError)
}

/// Whether `password` matches the PHC string `phc`. A malformed `phc` never matches (and is
/// logged: it means a damaged database).
pub fn verify(password: &str, phc: &str) -> bool {
    let parsed = match PasswordHash::new(phc) {
        Ok(parsed) => parsed,
        Err(err) => {
            tracing::error!(%err, "a stored password hash is malformed");
            return false;
        }
    };
    // The comparison of the computed and stored hash inside is constant-time.
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Checks a new password against the rules: length, and different from `current`.
pub fn check_new(new: &str, current: &str) -> Result<(), PasswordRule> {
    let len = new.chars().count();
    if len < MIN_LEN {
        return Err(PasswordRule::TooShort);
    }
    if len > MAX_LEN {
        return Err(PasswordRule::TooLong);
    }
    if new == current {
        return Err(PasswordRule::Unchanged);
    }
    Ok(())
}

/// A new random password: 18 random bytes in lowercase base32 (29 characters, 144 bits),
/// easy to read out and type, like the generated bootstrap password.
pub fn generate() -> String {
    let mut bytes = [0u8; 18];
    rand::rng().fill_bytes(&mut bytes);
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash("correct horse battery").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("", &phc));
        // The same password hashes differently each time (a fresh salt).
        assert_ne!(hash("correct horse battery").expect("hash"), phc);
        // A damaged hash matches nothing.
        assert!(!verify("correct horse battery", "$argon2id$nonsense"));
        assert!(!verify("correct horse battery", ""));
    }

    #[test]
    fn rules_for_a_new_password() {
        let cases: &[(&str, &str, Result<(), PasswordRule>)] = &[
            ("short", "old password 1", Err(PasswordRule::TooShort)),
            ("elevenchars", "old password 1", Err(PasswordRule::TooShort)),
            ("twelve chars", "old password 1", Ok(())),
            // Characters, not bytes: twelve two-byte letters are long enough.
            ("éééééééééééé", "old password 1", Ok(())),
            (
                "old password 1",
                "old password 1",
                Err(PasswordRule::Unchanged),
            ),
        ];
        for &(new, current, expected) in cases {
            assert_eq!(check_new(new, current), expected, "{new:?}");
        }
        let long = "x".repeat(MAX_LEN + 1);
        assert_eq!(check_new(&long, "old"), Err(PasswordRule::TooLong));
    }

    #[test]
    fn generated_passwords_pass_the_rules() {
        let a = generate();
        assert_eq!(a.len(), 29);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(check_new(&a, "anything else"), Ok(()));
        assert_ne!(generate(), a);
    }
}
