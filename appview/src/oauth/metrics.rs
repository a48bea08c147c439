//! Sign-in metrics: OAuth starts, completions, errors by kind and abandonment, rendered
//! into the AppView's `/metrics`.
//!
//! Plain atomic counters, bumped by the sign-in pages (`service::signin`) and read when
//! `/metrics` is scraped: no lock on the sign-in path. The series:
//!
//! - `atelier_appview_oauth_started_total`: `POST /login` answered with a redirect to the
//!   account's authorization server (the pending authorization stored);
//! - `atelier_appview_oauth_completed_total`: callbacks that created a session;
//! - `atelier_appview_oauth_errors_total{kind}`: sign-ins that failed, at the start or at
//!   the callback, by [`ErrorKind`] (every kind is always rendered, 0 included, so a rate
//!   over it never starts from a missing series);
//! - `atelier_appview_oauth_abandoned_total`: sign-ins started whose callback never came
//!   back. The session store's cleanup deletes expired pending authorizations together
//!   with expired sessions and reports only the total, so this is computed when rendered:
//!   started minus the callbacks that found their pending authorization (completed or
//!   failed). Sign-ins still in progress (up to the pending authorization's 15-minute
//!   lifetime) are included, and it drops when one of them comes back: it is a gauge,
//!   despite its `_total` name, and counts from the AppView's start;
//! - `atelier_appview_oauth_signouts_total`: `POST /logout` that signed a session out.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::oauth::OAuthError;

/// Why a sign-in failed: the `kind` label of `atelier_appview_oauth_errors_total`, a small
/// fixed set so the series stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The handle is empty, not a handle, names no account, or the account has no PDS.
    UnknownHandle,
    /// The account's identity, PDS or authorization server could not be reached.
    Unreachable,
    /// The authorization server refused the authorization request (PAR) or its metadata
    /// or answers break the OAuth profile.
    Server,
    /// The user (or the authorization server) refused the authorization at the callback.
    Denied,
    /// The callback's `state` is missing, unknown (already used) or does not match.
    State,
    /// The callback came after its pending authorization expired.
    Expired,
    /// The callback's `iss` is missing or not the authorization server asked.
    Issuer,
    /// The code could not be exchanged for a token, or the token is not for the account
    /// (subject or audience mismatch).
    Token,
    /// The login form failed the CSRF checks (no token, a wrong one, another origin).
    Csrf,
    /// The session store could not keep the pending authorization or the session.
    Storage,
    /// Anything else (a form too large, a crypto failure).
    Other,
}

impl ErrorKind {
    /// Every kind, in the order they are rendered.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::UnknownHandle,
        ErrorKind::Unreachable,
        ErrorKind::Server,
        ErrorKind::Denied,
        ErrorKind::State,
        ErrorKind::Expired,
        ErrorKind::Issuer,
        ErrorKind::Token,
        ErrorKind::Csrf,
        ErrorKind::Storage,
        ErrorKind::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UnknownHandle => "unknown_handle",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Server => "server",
            ErrorKind::Denied => "denied",
            ErrorKind::State => "state",
            ErrorKind::Expired => "expired",
            ErrorKind::Issuer => "issuer",
            ErrorKind::Token => "token",
            ErrorKind::Csrf => "csrf",
            ErrorKind::Storage => "storage",
            ErrorKind::Other => "other",
        }
    }

    /// The kind of an error from starting a sign-in or from its callback. Whether a
    /// resolution failure means "no such account" or "could not ask" is decided by the
    /// caller (`not_found`), which knows the DNS details.
    pub fn of(error: &OAuthError, not_found: bool) -> ErrorKind {
        match error {
            OAuthError::Identity(_) if not_found => ErrorKind::UnknownHandle,
            OAuthError::Identity(_) => ErrorKind::Unreachable,
            OAuthError::NoPds { .. } => ErrorKind::UnknownHandle,
            OAuthError::Ssrf(_) | OAuthError::Transport { .. } => ErrorKind::Unreachable,
            OAuthError::Server {
                endpoint: "token", ..
            }
            | OAuthError::SubjectMismatch { .. }
            | OAuthError::AudienceMismatch { .. } => ErrorKind::Token,
            OAuthError::Server { .. }
            | OAuthError::BadMetadata { .. }
            | OAuthError::BadResponse { .. }
            | OAuthError::BadUrl { .. } => ErrorKind::Server,
            OAuthError::StateMismatch => ErrorKind::State,
            OAuthError::IssuerMismatch { .. } => ErrorKind::Issuer,
            OAuthError::Denied { .. } => ErrorKind::Denied,
            OAuthError::ScopeMissing { .. }
            | OAuthError::SessionEnded { .. }
            | OAuthError::Xrpc { .. }
            | OAuthError::Crypto(_) => ErrorKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Sign-in counters, bumped by the sign-in pages and rendered into `/metrics`.
#[derive(Debug, Default)]
pub struct OAuthMetrics {
    started: AtomicU64,
    completed: AtomicU64,
    /// One per [`ErrorKind`], in [`ErrorKind::ALL`]'s order.
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Callbacks that found their pending authorization (taken, or found expired),
    /// whatever came next: what "abandoned" subtracts from "started".
    returned: AtomicU64,
    signouts: AtomicU64,
}

impl OAuthMetrics {
    /// A sign-in was started: the browser is sent to the authorization server.
    pub fn started(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// A callback found its pending authorization (the sign-in came back, to succeed or
    /// fail).
    pub fn returned(&self) {
        self.returned.fetch_add(1, Ordering::Relaxed);
    }

    /// A callback created a session.
    pub fn completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    /// A sign-in failed with `kind`.
    pub fn error(&self, kind: ErrorKind) {
        if let Some(counter) = self.errors.get(kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session was signed out.
    pub fn signed_out(&self) {
        self.signouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Sign-ins started whose callback has not come back (see the module header).
    pub fn abandoned(&self) -> u64 {
        let started = self.started.load(Ordering::Relaxed);
        started.saturating_sub(self.returned.load(Ordering::Relaxed))
    }

    /// Appends the counters in the Prometheus text format to `out`.
    pub fn render(&self, out: &mut String) {
        let mut single = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        single(
            "atelier_appview_oauth_started_total",
            "counter",
            "Sign-ins sent to the account's authorization server.",
            self.started.load(Ordering::Relaxed),
        );
        single(
            "atelier_appview_oauth_completed_total",
            "counter",
            "Sign-ins whose callback created a session.",
            self.completed.load(Ordering::Relaxed),
        );
        single(
            "atelier_appview_oauth_abandoned_total",
            "gauge",
            "Sign-ins started whose callback has not come back (those in progress included).",
            self.abandoned(),
        );
        single(
            "atelier_appview_oauth_signouts_total",
            "counter",
            "Sessions signed out.",
            self.signouts.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP atelier_appview_oauth_errors_total Sign-ins that failed, by kind.\n\
             # TYPE atelier_appview_oauth_errors_total counter"
        );
        for kind in ErrorKind::ALL {
            let n = self
                .errors
                .get(kind.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "atelier_appview_oauth_errors_total{{kind=\"{}\"}} {n}",
                kind.as_str()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_indexed_in_order() {
        for (i, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn errors_map_to_kinds() {
        let token = OAuthError::Server {
            endpoint: "token",
            status: 400,
            error: "invalid_grant".to_owned(),
            description: None,
        };
        let par = OAuthError::Server {
            endpoint: "par",
            status: 400,
            error: "invalid_request".to_owned(),
            description: None,
        };
        let cases = [
            (&token, ErrorKind::Token),
            (&par, ErrorKind::Server),
            (&OAuthError::StateMismatch, ErrorKind::State),
            (
                &OAuthError::IssuerMismatch {
                    expected: "x".to_owned(),
                    got: None,
                },
                ErrorKind::Issuer,
            ),
            (
                &OAuthError::Denied {
                    error: "access_denied".to_owned(),
                    description: None,
                },
                ErrorKind::Denied,
            ),
            (
                &OAuthError::NoPds {
                    did: "did:plc:a".to_owned(),
                },
                ErrorKind::UnknownHandle,
            ),
            (&OAuthError::Crypto("rng"), ErrorKind::Other),
        ];
        for (error, want) in cases {
            assert_eq!(ErrorKind::of(error, false), want, "{error}");
        }
    }

    #[test]
    fn renders_counters_and_abandonment() {
        let m = OAuthMetrics::default();
        for _ in 0..4 {
            m.started();
        }
        // Two came back: one signed in, one denied; two never returned.
        m.returned();
        m.completed();
        m.returned();
        m.error(ErrorKind::Denied);
        m.error(ErrorKind::UnknownHandle);
        m.error(ErrorKind::UnknownHandle);
        m.signed_out();
        let mut out = String::new();
        m.render(&mut out);
        let want = "\
# HELP atelier_appview_oauth_started_total Sign-ins sent to the account's authorization server.
# TYPE atelier_appview_oauth_started_total counter
atelier_appview_oauth_started_total 4
# HELP atelier_appview_oauth_completed_total Sign-ins whose callback created a session.
# TYPE atelier_appview_oauth_completed_total counter
atelier_appview_oauth_completed_total 1
# HELP atelier_appview_oauth_abandoned_total Sign-ins started whose callback has not come back (those in progress included).
# TYPE atelier_appview_oauth_abandoned_total gauge
atelier_appview_oauth_abandoned_total 2
# HELP atelier_appview_oauth_signouts_total Sessions signed out.
# TYPE atelier_appview_oauth_signouts_total counter
atelier_appview_oauth_signouts_total 1
# HELP atelier_appview_oauth_errors_total Sign-ins that failed, by kind.
# TYPE atelier_appview_oauth_errors_total counter
atelier_appview_oauth_errors_total{kind=\"unknown_handle\"} 2
atelier_appview_oauth_errors_total{kind=\"unreachable\"} 0
atelier_appview_oauth_errors_total{kind=\"server\"} 0
atelier_appview_oauth_errors_total{kind=\"denied\"} 1
atelier_appview_oauth_errors_total{kind=\"state\"} 0
atelier_appview_oauth_errors_total{kind=\"expired\"} 0
atelier_appview_oauth_errors_total{kind=\"issuer\"} 0
atelier_appview_oauth_errors_total{kind=\"token\"} 0
atelier_appview_oauth_errors_total{kind=\"csrf\"} 0
atelier_appview_oauth_errors_total{kind=\"storage\"} 0
atelier_appview_oauth_errors_total{kind=\"other\"} 0
";
        assert_eq!(out, want);
    }

    #[test]
    fn abandonment_never_goes_below_zero() {
        // A callback for a sign-in started before a restart.
        let m = OAuthMetrics::default();
        m.returned();
        assert_eq!(m.abandoned(), 0);
    }
}
