//! Playing the user at the reference PDS's OAuth sign-in page, over plain HTTP, for tests
//! of OAuth clients: open the authorization page, sign in, consent, and follow the PDS's
//! redirect endpoint to where it sends the browser (the client's redirect URI with `code`,
//! `state` and `iss`).
//!
//! The PDS's sign-in UI API is strict about looking like its own page: it refuses requests
//! with `sec-fetch-mode: cors`, wants `Origin`, a `Referer` naming the authorization page,
//! its `csrf-token` cookie echoed in `x-csrf-token`, and `locale` in the body; its redirect
//! endpoint wants the authorization page as `Referer` and the device cookies (`dev-id`,
//! `ses-id`, which rotate on sign-in). This module sends exactly that.

use std::time::Duration;

use serde_json::{Value, json};

use crate::SandboxError;

/// The sign-in UI's API path on the PDS.
const API: &str = "/@atproto/oauth-provider/~api";

/// Cookies by name, as a server last set them: what a browser would send back. Tests of
/// cookie-based pages use it too.
#[derive(Debug, Default, Clone)]
pub struct Jar(Vec<(String, String)>);

impl Jar {
    /// Keeps the cookies `response` sets (replacing earlier ones of the same name).
    pub fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.0.retain(|(n, _)| n != name.trim());
                self.0
                    .push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
    }

    /// The value of cookie `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `Cookie` header sending them all.
    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn failed(step: &str, url: &str, status: u16, body: &str) -> SandboxError {
    SandboxError::Xrpc {
        method: format!("{step} ({url})"),
        status,
        error: "SignInFailed".to_owned(),
        message: body.chars().take(500).collect(),
    }
}

/// Signs in as `handle`/`password` (the account `did`) at the PDS page `authorize_url`,
/// consents, and returns the URL the PDS then sends the browser to: the client's
/// redirect URI with `code`, `state` and `iss`.
///
/// # Errors
/// When a step fails; the error names the step and quotes the PDS's answer.
pub async fn sign_in_at_authorize_page(
    authorize_url: &str,
    handle: &str,
    password: &str,
    did: &str,
) -> Result<String, SandboxError> {
    let transport = |url: &str, source| SandboxError::Http {
        method: "OAuth sign-in".to_owned(),
        url: url.to_owned(),
        source,
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| transport(authorize_url, e))?;
    let page = reqwest::Url::parse(authorize_url).map_err(|e| {
        failed(
            "parsing the authorization URL",
            authorize_url,
            0,
            &e.to_string(),
        )
    })?;
    let origin = page.origin().ascii_serialization();
    let mut jar = Jar::default();

    let response = http
        .get(authorize_url)
        .header("sec-fetch-site", "none")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header("user-agent", "atelier-sandbox")
        .send()
        .await
        .map_err(|e| transport(authorize_url, e))?;
    jar.absorb(&response);
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(failed(
            "the authorization page",
            authorize_url,
            status.as_u16(),
            &body,
        ));
    }
    let csrf = jar
        .get("csrf-token")
        .ok_or_else(|| {
            failed(
                "the authorization page",
                authorize_url,
                200,
                "no csrf-token cookie",
            )
        })?
        .to_owned();

    for (path, body) in [
        (
            "/sign-in",
            json!({"locale": "en", "username": handle, "password": password, "remember": true}),
        ),
        ("/consent", json!({"did": did})),
    ] {
        let url = format!("{origin}{API}{path}");
        let response = http
            .post(&url)
            .header("sec-fetch-site", "same-origin")
            .header("sec-fetch-mode", "same-origin")
            .header("sec-fetch-dest", "empty")
            .header("origin", &origin)
            .header("referer", authorize_url)
            .header("user-agent", "atelier-sandbox")
            .header("x-csrf-token", &csrf)
            .header("cookie", jar.header())
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&url, e))?;
        jar.absorb(&response);
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(failed(path, &url, status.as_u16(), &answer.to_string()));
        }
        if path == "/sign-in" && answer["account"]["did"] != did {
            return Err(failed(
                path,
                &url,
                200,
                &format!("signed in as another account: {answer}"),
            ));
        }
        if path == "/consent" {
            let redirect = answer["url"]
                .as_str()
                .ok_or_else(|| failed(path, &url, 200, &format!("no url in {answer}")))?;
            return follow_redirect(&http, &jar, redirect, authorize_url).await;
        }
    }
    Err(failed("consent", authorize_url, 0, "not reached"))
}

/// Follows the PDS's redirect endpoint as the page would; returns where it points.
async fn follow_redirect(
    http: &reqwest::Client,
    jar: &Jar,
    url: &str,
    authorize_url: &str,
) -> Result<String, SandboxError> {
    let response = http
        .get(url)
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .header("referer", authorize_url)
        .header("user-agent", "atelier-sandbox")
        .header("cookie", jar.header())
        .send()
        .await
        .map_err(|source| SandboxError::Http {
            method: "OAuth redirect".to_owned(),
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(location) if status.is_redirection() => Ok(location),
        _ => {
            let body = response.text().await.unwrap_or_default();
            Err(failed("the redirect endpoint", url, status.as_u16(), &body))
        }
    }
}

/// Signs in to an Atelier AppView at `base` the way a browser does: its `/login` form
/// (with the CSRF cookie and field), the PDS's sign-in page, and the redirect back to
/// its callback. Returns the cookie jar holding `atelier_session`.
///
/// # Errors
/// When a step fails; the error names the step.
pub async fn sign_in_through_appview(
    base: &str,
    handle: &str,
    password: &str,
    did: &str,
) -> Result<Jar, SandboxError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| SandboxError::Http {
            method: "AppView sign-in".to_owned(),
            url: base.to_owned(),
            source: e,
        })?;
    let transport = |step: &str, source| SandboxError::Http {
        method: format!("AppView sign-in: {step}"),
        url: base.to_owned(),
        source,
    };
    let mut jar = Jar::default();
    let response = http
        .get(format!("{base}/login"))
        .send()
        .await
        .map_err(|e| transport("GET /login", e))?;
    jar.absorb(&response);
    let csrf = jar
        .get("atelier_csrf")
        .ok_or_else(|| {
            failed(
                "GET /login",
                base,
                response.status().as_u16(),
                "no CSRF cookie",
            )
        })?
        .to_owned();
    let form = reqwest::Url::parse_with_params(
        "http://form.invalid/",
        [("handle", handle), ("csrf", csrf.as_str())],
    )
    .map_err(|e| failed("POST /login", base, 0, &e.to_string()))?
    .query()
    .unwrap_or_default()
    .to_owned();
    let response = http
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", base)
        .header("cookie", jar.header())
        .body(form)
        .send()
        .await
        .map_err(|e| transport("POST /login", e))?;
    let location = |r: &reqwest::Response| {
        r.headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(authorize_url) = location(&response).filter(|_| response.status().as_u16() == 303)
    else {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(failed("POST /login", base, status, &body));
    };
    let redirect = sign_in_at_authorize_page(&authorize_url, handle, password, did).await?;
    let response = http
        .get(&redirect)
        .header("cookie", jar.header())
        .send()
        .await
        .map_err(|e| transport("callback", e))?;
    jar.absorb(&response);
    if jar.get("atelier_session").is_none() {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        return Err(failed("callback", &redirect, status, &body));
    }
    Ok(jar)
}
