//! The console's two cookies, written and read in one place so their attributes cannot
//! drift apart.
//!
//! - [`SESSION`] (`atelier_admin`): the session token, for as long as a session may last.
//! - [`LOGIN`] (`atelier_admin_login`): the sign-in form's CSRF token before there is a
//!   session (double submit: the form's hidden field must equal the cookie).
//!
//! Both are `HttpOnly` (no script reads them), `SameSite=Strict` (no other site's page
//! sends them), `Path=/`, and `Secure` unless the console runs in the sandbox profile on
//! plain HTTP.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;

/// The session cookie.
pub const SESSION: &str = "atelier_admin";

/// The sign-in form's CSRF cookie.
pub const LOGIN: &str = "atelier_admin_login";

/// A `Set-Cookie` value for `name=value`. `max_age`: how long the browser keeps it
/// (`None`: until the browser closes).
pub(crate) fn set(name: &str, value: &str, secure: bool, max_age: Option<Duration>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(max_age) = max_age {
        cookie.push_str(&format!("; Max-Age={}", max_age.as_secs()));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// A `Set-Cookie` value that deletes the cookie `name`.
pub(crate) fn clear(name: &str, secure: bool) -> String {
    set(name, "", secure, Some(Duration::ZERO))
}

/// The value of the cookie `name` in a request's `Cookie` headers.
pub(crate) fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn attributes() {
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            set(SESSION, "tok", false, hour),
            "atelier_admin=tok; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        assert_eq!(
            set(LOGIN, "tok", true, None),
            "atelier_admin_login=tok; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        assert_eq!(
            clear(SESSION, true),
            "atelier_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
    }

    #[test]
    fn reads_a_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; atelier_admin_x=2"));
        headers.append(COOKIE, HeaderValue::from_static("atelier_admin=tok;b=3"));
        assert_eq!(get(&headers, SESSION), Some("tok"));
        assert_eq!(get(&headers, "b"), Some("3"));
        assert_eq!(get(&headers, LOGIN), None);
    }
}
