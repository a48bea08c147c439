//! Secret values: the [`Secret`] newtype that never prints itself, and reading a secret
//! given as `x` or `x_file`, refusing world-readable files.

use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret string (a password, a URL with credentials, a key). `Debug` and `Display` print
/// `[redacted]`; read the value with [`Secret::expose`] where it is handed to a service.
///
/// It serializes as the real value, because the only things serialized are files the
/// operator owns (the config `atelier init` writes, service config files under the data
/// directory); never serialize it into logs or status output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both `x` and `x_file` are set.
    #[error("give the secret inline or in a file, not both")]
    Both,
    /// The file could not be read.
    #[error("reading secret file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others may read the file.
    #[error(
        "secret file {} is world-readable (mode {mode:04o}); fix it with: chmod 600 {}",
        path.display(),
        path.display()
    )]
    WorldReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Refuses a secret file others may read. Checks the file itself, not a symlink to it.
pub fn check_secret_file(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Err(SecretError::WorldReadable {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Reads a secret file (after [`check_secret_file`]), without its trailing newline.
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    check_secret_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Secret(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// The secret given as `value` or in `file` (a relative path is taken from `base_dir`).
pub fn read_secret(
    value: Option<&Secret>,
    file: Option<&Path>,
    base_dir: &Path,
) -> Result<Option<Secret>, SecretError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretError::Both),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(file)) => read_secret_file(&base_dir.join(file)).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }
}
