//! DID and handle syntax: what is checked before anything is looked up.
//!
//! Resolution only supports `did:plc` and `did:web` (hostname only, as ATProto requires;
//! the sandbox additionally accepts a `%3A`-encoded port, for loopback test servers).
//! Handles are ASCII domain names, lowercased; names under TLDs that can never be public
//! (`.local`, `.onion`, `.arpa`, ...) are refused before any DNS or HTTP traffic, with
//! `.test` and `.localhost` allowed only in the sandbox.

use super::IdentityError;

/// The longest DID ATProto accepts.
const MAX_DID_LEN: usize = 2048;
/// The longest handle (a DNS name).
const MAX_HANDLE_LEN: usize = 253;

/// TLDs that are never resolved. `test` and `localhost` are allowed in the sandbox.
const RESERVED_TLDS: &[&str] = &[
    "alt",
    "arpa",
    "example",
    "internal",
    "invalid",
    "local",
    "localhost",
    "onion",
    "test",
];
const SANDBOX_TLDS: &[&str] = &["test", "localhost"];

/// A DID that resolution knows how to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DidMethod {
    /// `did:plc:<24 base32 chars>`: fetched from the PLC directory.
    Plc,
    /// `did:web:<host>`: fetched from `<host>/.well-known/did.json`.
    Web {
        /// The lowercased hostname.
        host: String,
        /// A port (sandbox only).
        port: Option<u16>,
    },
}

/// Checks the general ATProto DID syntax: `did:<method>:<id>` with a lowercase method,
/// identifier characters `[A-Za-z0-9._:%-]`, not ending in `:` or `%`, at most 2048 bytes.
pub fn check_did(did: &str) -> Result<(), IdentityError> {
    let invalid = |reason: &'static str| IdentityError::InvalidDid {
        did: did.to_owned(),
        reason,
    };
    if did.len() > MAX_DID_LEN {
        return Err(invalid("longer than 2048 bytes"));
    }
    let rest = did.strip_prefix("did:").ok_or(invalid("no did: prefix"))?;
    let (method, id) = rest.split_once(':').ok_or(invalid("no method"))?;
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(invalid("method is not lowercase letters"));
    }
    if id.is_empty() {
        return Err(invalid("empty identifier"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
    {
        return Err(invalid(
            "identifier has a character outside [A-Za-z0-9._:%-]",
        ));
    }
    if id.ends_with(':') || id.ends_with('%') {
        return Err(invalid("identifier ends with ':' or '%'"));
    }
    Ok(())
}

/// Parses a DID for resolution. `sandbox` allows a port in `did:web`.
pub(crate) fn parse_did(did: &str, sandbox: bool) -> Result<DidMethod, IdentityError> {
    check_did(did)?;
    let invalid = |reason: &'static str| IdentityError::InvalidDid {
        did: did.to_owned(),
        reason,
    };
    if let Some(id) = did.strip_prefix("did:plc:") {
        let base32 = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
        if id.len() != 24 || !id.bytes().all(base32) {
            return Err(invalid("did:plc identifier is not 24 base32 characters"));
        }
        return Ok(DidMethod::Plc);
    }
    if let Some(id) = did.strip_prefix("did:web:") {
        if id.contains(':') {
            return Err(invalid(
                "did:web with a path is not supported (hostname only)",
            ));
        }
        let (host, port) = match id.split_once('%') {
            None => (id, None),
            Some((host, encoded_port)) => {
                let digits = encoded_port
                    .strip_prefix("3A")
                    .or_else(|| encoded_port.strip_prefix("3a"))
                    .ok_or(invalid("did:web has a percent-escape other than %3A"))?;
                if !sandbox {
                    return Err(invalid(
                        "did:web with a port is only resolved in the sandbox",
                    ));
                }
                let port = digits
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(invalid("did:web port is not a number in 1..=65535"))?;
                (host, Some(port))
            }
        };
        let host = host.to_ascii_lowercase();
        if !is_hostname(&host, sandbox) {
            return Err(invalid("did:web host is not a hostname"));
        }
        return Ok(DidMethod::Web { host, port });
    }
    Err(IdentityError::UnsupportedDidMethod {
        did: did.to_owned(),
    })
}

/// A lowercase DNS hostname; a single label only for `localhost` in the sandbox.
fn is_hostname(host: &str, sandbox: bool) -> bool {
    if host.is_empty() || host.len() > MAX_HANDLE_LEN {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 && !(sandbox && host == "localhost") {
        return false;
    }
    labels.iter().all(|label| is_label(label))
}

/// A DNS label: 1-63 of `[a-z0-9-]`, not starting or ending with `-`.
fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Normalises and checks a handle: lowercase ASCII domain name, at least two labels, a TLD
/// not starting with a digit, and not under a reserved TLD (`.test` and `.localhost` are
/// allowed when `sandbox`). Returns the lowercased handle.
pub fn normalize_handle(handle: &str, sandbox: bool) -> Result<String, IdentityError> {
    let invalid = |reason: &'static str| IdentityError::InvalidHandle {
        handle: handle.to_owned(),
        reason,
    };
    if handle.is_empty() || handle.len() > MAX_HANDLE_LEN {
        return Err(invalid("empty or longer than 253 bytes"));
    }
    if !handle.is_ascii() {
        return Err(invalid("not ASCII (use the punycode form)"));
    }
    let lower = handle.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid("fewer than two labels"));
    }
    if !labels.iter().all(|label| is_label(label)) {
        return Err(invalid(
            "a label is empty, too long, or has a character outside [a-z0-9-]",
        ));
    }
    let tld = labels.last().copied().unwrap_or_default();
    if tld.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid("top-level domain starts with a digit"));
    }
    if RESERVED_TLDS.contains(&tld) && !(sandbox && SANDBOX_TLDS.contains(&tld)) {
        return Err(IdentityError::ReservedHandle {
            handle: handle.to_owned(),
            tld: tld.to_owned(),
        });
    }
    Ok(lower)
}
