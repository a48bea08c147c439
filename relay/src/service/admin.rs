//! The operator API's authentication: bearer tokens from a file (one per line, several for
//! rotation), compared in constant time, with failed guesses rate-limited per client
//! address.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

use super::RelayError;

/// Failed attempts allowed per address per window before every request from it is refused.
const MAX_FAILURES: u32 = 10;
/// The failure-counting window.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// The accepted tokens and the failure counters.
pub(crate) struct AdminAuth {
    tokens: Vec<Vec<u8>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .finish_non_exhaustive()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No or a wrong token (401).
    Unauthorized,
    /// Too many failures from this address (429).
    TooManyAttempts,
}

impl AdminAuth {
    /// Reads the token file, creating it (mode 0600, one random token) when missing. A file
    /// others can read is refused.
    pub(crate) fn load_or_create(path: &Path) -> Result<AdminAuth, RelayError> {
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| RelayError::io(dir, e))?;
            }
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let token = data_encoding::HEXLOWER.encode(&bytes);
            let mut file = open_private(path).map_err(|e| RelayError::io(path, e))?;
            writeln!(file, "{token}").map_err(|e| RelayError::io(path, e))?;
            tracing::info!(path = %path.display(), "generated a relay admin token");
        }
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| RelayError::io(path, e))?;
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(RelayError::State(format!(
                "{}: no admin token in the file (one per line)",
                path.display()
            )));
        }
        if let Some(short) = tokens.iter().find(|t| t.len() < 16) {
            return Err(RelayError::State(format!(
                "{}: an admin token is {} characters; use at least 16",
                path.display(),
                short.len()
            )));
        }
        Ok(AdminAuth {
            tokens,
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Checks an `Authorization` header value from `addr`.
    pub(crate) fn check(&self, addr: IpAddr, header: Option<&str>) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut failures = self.failures.lock().map_err(|_| Refusal::Unauthorized)?;
        failures.retain(|_, (at, _)| now.duration_since(*at) < FAILURE_WINDOW);
        if failures.get(&addr).is_some_and(|(_, n)| *n >= MAX_FAILURES) {
            return Err(Refusal::TooManyAttempts);
        }
        let given = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        // Compare against every token without stopping early, in constant time per token.
        let mut ok = false;
        for token in &self.tokens {
            ok |= constant_time_eq(token, given.as_bytes());
        }
        if ok {
            return Ok(());
        }
        let entry = failures.entry(addr).or_insert((now, 0));
        entry.1 += 1;
        Err(Refusal::Unauthorized)
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn check_private(path: &Path) -> Result<(), RelayError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| RelayError::io(path, e))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(RelayError::State(format!(
                "{} is readable by others (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths (ring's
/// `constant_time` module is deprecated for outside use; this is the usual XOR fold).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_guess_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "0123456789abcdef0123\n# old\nfedcba9876543210fedc\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = AdminAuth::load_or_create(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let auth = AdminAuth::load_or_create(&path).unwrap();
        let me: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(auth.check(me, Some("Bearer 0123456789abcdef0123")), Ok(()));
        assert_eq!(auth.check(me, Some("Bearer fedcba9876543210fedc")), Ok(()));
        assert_eq!(auth.check(me, None), Err(Refusal::Unauthorized));
        for _ in 1..MAX_FAILURES {
            assert_eq!(
                auth.check(me, Some("Bearer nope")),
                Err(Refusal::Unauthorized)
            );
        }
        // Locked out now, even with the right token; other addresses are unaffected.
        assert_eq!(
            auth.check(me, Some("Bearer 0123456789abcdef0123")),
            Err(Refusal::TooManyAttempts)
        );
        assert_eq!(
            auth.check(other, Some("Bearer 0123456789abcdef0123")),
            Ok(())
        );
    }

    #[test]
    fn generates_a_private_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens");
        AdminAuth::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
    }
}
