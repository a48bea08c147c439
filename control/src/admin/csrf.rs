//! Cross-site request forgery defences, applied to every state-changing request by one
//! middleware ([`guard`]), so that no page, including pages added later, can forget them.
//!
//! Every request whose method is not safe (anything but GET, HEAD, OPTIONS, TRACE) must:
//! 1. carry no `Origin` header, or the console's own origin (the configured one, else one
//!    whose host and port are the request's `Host`);
//! 2. be a form with a [`FIELD`] field equal, compared in constant time, to the session's
//!    CSRF token, or, before there is a session (the sign-in form), to the sign-in cookie
//!    ([`super::cookies::LOGIN`], a double submit).
//!
//! Anything else is answered 403 with a page saying in plain words what happened. With
//! `SameSite=Strict` cookies a forged request would arrive without a session anyway; the
//! token and the origin check are the defences that do not depend on the browser.
//!
//! The rule the pages keep in return: a GET changes nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{StatusCode, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::cookies;
use super::pages;
use super::service::AdminState;
use super::sessions::Session;

/// The name of the form field that carries the token.
pub const FIELD: &str = "csrf";

/// The largest form body accepted (the console's forms are a few short fields).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Whether `given` is the `expected` token, compared in constant time. An empty expected
/// token (no session, no sign-in cookie) matches nothing.
pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Whether a request with this `Origin` header (if any) may change state. With a
/// `configured` origin the header must be exactly it; else its host and port must be the
/// request's `Host` (`None`: unknown, so only a request without an `Origin` header may).
///
/// Without a configured origin the scheme is not compared: the console cannot tell
/// whether a proxy terminated TLS in front of it, and a page on the console's own host
/// and port is the console. This keeps an SSH tunnel to a production console (plain
/// `http://localhost:2585`) working.
pub fn origin_allowed(origin: Option<&str>, configured: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if let Some(own) = configured {
        return origin.eq_ignore_ascii_case(own);
    }
    match (origin.split_once("://"), host) {
        (Some((scheme, authority)), Some(host)) => {
            let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            web && authority.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// The token a form must carry: the session's, else the sign-in cookie's.
fn expected_token(parts: &Parts) -> Option<String> {
    match parts.extensions.get::<Arc<Session>>() {
        Some(session) => Some(session.csrf.clone()),
        None => cookies::get(&parts.headers, cookies::LOGIN).map(str::to_owned),
    }
}

/// The first value of `field` in a URL-encoded form.
fn form_field(body: &[u8], field: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == field)
        .map(|(_, value)| value.into_owned())
}

/// The middleware: lets safe requests through, and the others only with an acceptable
/// origin and the right token. Runs after the session is loaded ([`super::auth`]).
pub(crate) async fn guard(
    State(state): State<AdminState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method().is_safe() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let origin = parts.headers.get(ORIGIN).map(|o| o.to_str().unwrap_or(""));
    let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok());
    if !origin_allowed(origin, state.settings().origin.as_deref(), host) {
        tracing::warn!(
            origin = origin.unwrap_or(""),
            path = %parts.uri.path(),
            "refused a request from another origin"
        );
        return refused(
            "This request came from another site, so it was not carried out. If you \
             clicked a button on this console, open the console again and retry.",
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return pages::message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Form too large",
            "The form sent was too large to be one of the console's forms.",
        )
        .into_response();
    };
    let given = form_field(&bytes, FIELD).unwrap_or_default();
    let expected = expected_token(&parts).unwrap_or_default();
    if !tokens_match(&expected, &given) {
        tracing::warn!(path = %parts.uri.path(), "refused a form without a valid CSRF token");
        return refused(
            "The form did not carry this session's security token, so it was not carried \
             out. It may be from an old page, or your session may have ended. Go back, \
             reload the page and try again.",
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn refused(text: &str) -> Response {
    pages::message(StatusCode::FORBIDDEN, "Request refused", text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let cases = [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("abc", "ab", false),
            ("abc", "abcd", false),
            ("abc", "", false),
            // No expected token: nothing matches, not even an empty field.
            ("", "", false),
        ];
        for (expected, given, want) in cases {
            assert_eq!(
                tokens_match(expected, given),
                want,
                "{expected:?} vs {given:?}"
            );
        }
    }

    #[test]
    fn origins() {
        let host = Some("127.0.0.1:2585");
        // (Origin header, configured origin, Host header, allowed)
        let cases = [
            (None, None, host, true),
            (None, None, None, true),
            (Some("http://127.0.0.1:2585"), None, host, true),
            (Some("HTTP://127.0.0.1:2585"), None, host, true),
            (Some("https://127.0.0.1:2585"), None, host, true),
            (Some("http://127.0.0.1:2586"), None, host, false),
            (Some("http://127.0.0.1"), None, host, false),
            (Some("http://evil.example"), None, host, false),
            (Some("ftp://127.0.0.1:2585"), None, host, false),
            (Some("null"), None, host, false),
            (Some("http://127.0.0.1:2585"), None, None, false),
            (
                Some("https://admin.example"),
                Some("https://admin.example"),
                host,
                true,
            ),
            (
                Some("http://admin.example"),
                Some("https://admin.example"),
                host,
                false,
            ),
            (
                Some("http://127.0.0.1:2585"),
                Some("https://admin.example"),
                host,
                false,
            ),
        ];
        for (origin, configured, host, want) in cases {
            assert_eq!(
                origin_allowed(origin, configured, host),
                want,
                "{origin:?} against {configured:?} / {host:?}"
            );
        }
    }

    #[test]
    fn reads_the_token_field() {
        let body = b"name=ann&csrf=a%2Bb&csrf=second";
        assert_eq!(form_field(body, FIELD).as_deref(), Some("a+b"));
        assert_eq!(form_field(b"name=ann", FIELD), None);
    }
}
