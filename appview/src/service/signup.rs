//! AC-only accounts on the pages: `GET/POST /signup` creates an account on the bundled
//! PDS, and `POST /login` with a password signs in to one (see
//! [`crate::oauth::custodial`]). Offered only when the sign-in configuration names the
//! bundled PDS.
//!
//! The password goes to the bundled PDS and nowhere else: it is not stored, not logged,
//! and not echoed back into a form. The session tokens the PDS answers with are kept
//! encrypted like OAuth tokens. Forms carry the same CSRF checks as the sign-in form.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::signin::{
    CSRF_COOKIE, SignIn, check_form, csrf_token, form_field, html, login_page, plain, refused,
    start_session,
};
use crate::oauth::OAuthError;
use crate::oauth::metrics::ErrorKind;

/// The longest name asked for (the PDS checks the full handle too).
const MAX_NAME: usize = 40;
/// The shortest password accepted here.
const MIN_PASSWORD: usize = 8;

#[derive(Template)]
#[template(path = "appview/signup.html", config = "askama.toml")]
struct SignupPage<'a> {
    csrf: &'a str,
    name: &'a str,
    email: &'a str,
    domain: &'a str,
    error: Option<&'a str>,
}

/// `POST /login` with a password: sign in to an AC-only account on the bundled PDS.
pub(super) async fn password_login(
    signin: &SignIn,
    headers: &HeaderMap,
    handle: &str,
    password: &str,
) -> Response {
    let Some(pds) = &signin.bundled_pds else {
        return login_page(
            signin,
            headers,
            StatusCode::BAD_REQUEST,
            handle,
            Some("This server has no accounts of its own: sign in with your handle only."),
        );
    };
    match signin.client.password_session(pds, handle, password).await {
        Ok(session) => start_session(signin, headers, &session).await,
        Err(OAuthError::Xrpc {
            status: 400 | 401, ..
        }) => {
            signin.metrics.error(ErrorKind::Denied);
            login_page(
                signin,
                headers,
                StatusCode::UNAUTHORIZED,
                handle,
                Some("Wrong handle or password for an account on this server."),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "password sign-in at the bundled PDS failed");
            signin.metrics.error(ErrorKind::Unreachable);
            login_page(
                signin,
                headers,
                StatusCode::BAD_GATEWAY,
                handle,
                Some("This server's accounts cannot be reached right now. Try again in a moment."),
            )
        }
    }
}

/// The handle domain the bundled PDS gives accounts (`.test` in the sandbox), from its
/// `describeServer`.
async fn handle_domain(signin: &SignIn, pds: &str) -> Option<String> {
    let url = format!("{pds}/xrpc/com.atproto.server.describeServer");
    let out: serde_json::Value = signin.client.http().guard().get_json(&url).await.ok()?;
    out["availableUserDomains"][0].as_str().map(str::to_owned)
}

fn signup_page(
    signin: &SignIn,
    headers: &HeaderMap,
    status: StatusCode,
    fields: (&str, &str),
    domain: &str,
    error: Option<&str>,
) -> Response {
    let Some((csrf, set)) = csrf_token(headers) else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page could not be drawn.",
        );
    };
    let page = SignupPage {
        csrf: &csrf,
        name: fields.0,
        email: fields.1,
        domain,
        error,
    };
    match page.render() {
        Ok(body) => html(
            status,
            body,
            set.map(|t| signin.cookie(CSRF_COOKIE, Some(&t)))
                .into_iter()
                .collect(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "rendering the sign-up page");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be drawn.",
            )
        }
    }
}

/// `GET /signup`.
pub(super) async fn signup_form(State(signin): State<Arc<SignIn>>, headers: HeaderMap) -> Response {
    let Some(pds) = signin.bundled_pds.clone() else {
        return plain(
            StatusCode::NOT_FOUND,
            "This server does not create accounts.",
        );
    };
    let domain = handle_domain(&signin, &pds).await.unwrap_or_default();
    signup_page(&signin, &headers, StatusCode::OK, ("", ""), &domain, None)
}

/// `POST /signup`: create the account on the bundled PDS and sign it in.
pub(super) async fn signup(
    State(signin): State<Arc<SignIn>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(pds) = signin.bundled_pds.clone() else {
        return plain(
            StatusCode::NOT_FOUND,
            "This server does not create accounts.",
        );
    };
    if body.len() > 8 * 1024 {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    if let Err(text) = check_form(&signin, &headers, &body) {
        signin.metrics.error(ErrorKind::Csrf);
        return refused(text);
    }
    let name = form_field(&body, "name")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let email = form_field(&body, "email")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let password = form_field(&body, "password").unwrap_or_default();
    let invite = form_field(&body, "invite").filter(|c| !c.trim().is_empty());
    let Some(domain) = handle_domain(&signin, &pds).await else {
        return signup_page(
            &signin,
            &headers,
            StatusCode::BAD_GATEWAY,
            (&name, &email),
            "",
            Some("This server's accounts cannot be reached right now. Try again in a moment."),
        );
    };
    let refuse = |text: &str| {
        signup_page(
            &signin,
            &headers,
            StatusCode::BAD_REQUEST,
            (&name, &email),
            &domain,
            Some(text),
        )
    };
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !name_ok {
        return refuse("Choose a name of letters, digits and dashes (not at either end).");
    }
    if !email.contains('@') || email.len() > 254 {
        return refuse("Enter an e-mail address.");
    }
    if password.chars().count() < MIN_PASSWORD {
        return refuse("Choose a password of at least 8 characters.");
    }
    let handle = format!("{name}{domain}");
    match signin
        .client
        .create_account(&pds, &handle, &email, &password, invite.as_deref())
        .await
    {
        Ok(session) => start_session(&signin, &headers, &session).await,
        Err(OAuthError::Xrpc { error, message, .. }) => {
            tracing::info!(%handle, %error, "account creation refused");
            let taken = error == "HandleNotAvailable"
                || message
                    .as_deref()
                    .is_some_and(|m| m.contains("already taken") || m.contains("not available"));
            let text = match error.as_str() {
                _ if taken => format!("The name {name} is taken: choose another."),
                "InvalidHandle" => format!("{handle} cannot be a handle: choose another name."),
                "InvalidInviteCode" => "That invite code is not valid.".to_owned(),
                "InvalidEmail" => "That e-mail address is not accepted.".to_owned(),
                _ => format!(
                    "The account could not be created: {}",
                    message.unwrap_or(error)
                ),
            };
            refuse(&text)
        }
        Err(e) => {
            tracing::warn!(error = %e, "account creation failed");
            signup_page(
                &signin,
                &headers,
                StatusCode::BAD_GATEWAY,
                (&name, &email),
                &domain,
                Some("This server's accounts cannot be reached right now. Try again in a moment."),
            )
        }
    }
}
