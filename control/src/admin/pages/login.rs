//! `GET /login`, `POST /login` and `POST /logout`.
//!
//! The sign-in form has no session to take a CSRF token from, so `GET /login` gives the
//! browser one in the sign-in cookie and the same value in the form (a double submit the
//! CSRF middleware checks). A successful sign-in replaces that cookie with the session
//! cookie and goes to the dashboard, or to `/password` when the password was set by
//! someone else.
//!
//! The answers never tell whether a name is an account: a wrong password, a name that is
//! none and a disabled account all read "Wrong user name or password", and a lock reads
//! the same whether the locked name exists or not.

use askama::Template;
use axum::extract::State;
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Form, PageError, Shell, human_duration, render};
use crate::admin::auth::{ClientAddress, SignedIn};
use crate::admin::cookies;
use crate::admin::service::AdminState;
use crate::admin::sessions::random_token;
use crate::admin::signin::{self, LockScope, SignIn};

#[derive(Template)]
#[template(path = "admin/login.html", config = "src/admin/askama.toml")]
struct LoginPage {
    shell: Shell,
    csrf: String,
    name: String,
    error: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    name: String,
    password: String,
}

/// `GET /login`: the sign-in form (or the dashboard, for someone signed in already).
pub(crate) async fn show(
    State(state): State<AdminState>,
    signed_in: Option<SignedIn>,
    headers: HeaderMap,
) -> Response {
    if signed_in.is_some() {
        return Redirect::to("/").into_response();
    }
    form_page(&state, &headers, StatusCode::OK, String::new(), None)
}

/// `POST /login`.
pub(crate) async fn submit(
    State(state): State<AdminState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let settings = state.settings();
    let outcome = signin::attempt(
        state.store(),
        &settings.limits,
        &form.name,
        &form.password,
        address,
    )
    .await?;
    let user = match outcome {
        SignIn::Success(user) => user,
        SignIn::Wrong => {
            let error = "Wrong user name or password.".to_owned();
            return Ok(form_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                form.name,
                Some(error),
            ));
        }
        SignIn::Locked { scope, retry_after } => {
            let error = locked_message(scope, retry_after);
            let page = form_page(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                form.name,
                Some(error),
            );
            let retry = AppendHeaders([(RETRY_AFTER, retry_after.as_secs().to_string())]);
            return Ok((retry, page).into_response());
        }
    };
    let session = state.store().create_session(&user.name).await?;
    tracing::info!(user = %user.name, "signed in to the admin console");
    let secure = settings.secure_cookies;
    let cookies = AppendHeaders([
        (
            SET_COOKIE,
            cookies::set(
                cookies::SESSION,
                session.token.expose(),
                secure,
                Some(settings.sessions.absolute),
            ),
        ),
        (SET_COOKIE, cookies::clear(cookies::LOGIN, secure)),
    ]);
    let next = if user.must_change_password {
        "/password"
    } else {
        "/"
    };
    Ok((cookies, Redirect::to(next)).into_response())
}

/// `POST /logout`: ends the session and clears its cookie.
pub(crate) async fn logout(
    State(state): State<AdminState>,
    signed_in: Option<SignedIn>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(token) = cookies::get(&headers, cookies::SESSION) {
        state.store().end_session(token).await?;
    }
    if let Some(signed_in) = signed_in {
        tracing::info!(user = %signed_in.user().name, "signed out of the admin console");
    }
    let clear = cookies::clear(cookies::SESSION, state.settings().secure_cookies);
    Ok((AppendHeaders([(SET_COOKIE, clear)]), Redirect::to("/login")).into_response())
}

/// The sentence shown when sign-ins are locked: what is locked and for how long, the same
/// whether the name is an account or not.
pub(crate) fn locked_message(scope: LockScope, retry_after: std::time::Duration) -> String {
    let wait = human_duration(retry_after);
    match scope {
        LockScope::Name => format!(
            "This account is temporarily locked after too many failed sign-ins. Try again \
             in {wait}."
        ),
        LockScope::Address => format!(
            "Sign-ins from your address are temporarily locked after too many failures. Try \
             again in {wait}."
        ),
    }
}

/// The sign-in form, with the sign-in cookie's token (a new one, set here, when the
/// browser has none).
fn form_page(
    state: &AdminState,
    headers: &HeaderMap,
    status: StatusCode,
    name: String,
    error: Option<String>,
) -> Response {
    let existing = cookies::get(headers, cookies::LOGIN).filter(|t| !t.is_empty());
    let csrf = existing.map_or_else(random_token, str::to_owned);
    let page = render(
        status,
        &LoginPage {
            shell: Shell::anonymous("Sign in"),
            csrf: csrf.clone(),
            name,
            error,
        },
    );
    if existing.is_some() {
        return page;
    }
    let cookie = cookies::set(cookies::LOGIN, &csrf, state.settings().secure_cookies, None);
    (AppendHeaders([(SET_COOKIE, cookie)]), page).into_response()
}
