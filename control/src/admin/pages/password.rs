//! `GET /password` and `POST /password`: a user changes their own password.
//!
//! Users whose password was set by someone else (bootstrap, a reset, a new account) are
//! sent here by [`crate::admin::Authed`] until they have chosen one. The current password
//! is checked through the same gate as a sign-in ([`crate::admin::signin::attempt`]:
//! lockout, failure count), so a borrowed session cannot guess it without limit. After
//! the change the user's other sessions end; this one stays.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Form, PageError, Shell, render};
use crate::admin::auth::{ClientAddress, SignedIn};
use crate::admin::password::{MIN_LEN, PasswordRule, check_new};
use crate::admin::service::AdminState;
use crate::admin::signin::{self, SignIn};
use crate::config::Secret;

use super::login::locked_message;

#[derive(Template)]
#[template(path = "admin/password.html", config = "src/admin/askama.toml")]
struct PasswordPage {
    shell: Shell,
    csrf: String,
    must_change: bool,
    min_len: usize,
    error: Option<String>,
}

/// The password form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// `GET /password`.
pub(crate) async fn show(signed_in: SignedIn) -> Response {
    page(&signed_in, StatusCode::OK, None)
}

/// `POST /password`.
pub(crate) async fn submit(
    State(state): State<AdminState>,
    signed_in: SignedIn,
    ClientAddress(address): ClientAddress,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PageError> {
    let rule = if form.new == form.confirm {
        check_new(&form.new, &form.current)
    } else {
        Err(PasswordRule::Mismatch)
    };
    if let Err(rule) = rule {
        return Ok(page(
            &signed_in,
            StatusCode::BAD_REQUEST,
            Some(rule.to_string()),
        ));
    }
    let settings = state.settings();
    let name = &signed_in.user().name;
    let outcome = signin::attempt(
        state.store(),
        &settings.limits,
        name,
        &form.current,
        address,
    )
    .await?;
    match outcome {
        SignIn::Success(_) => {}
        SignIn::Wrong => {
            let error = "The current password is wrong.".to_owned();
            return Ok(page(&signed_in, StatusCode::UNAUTHORIZED, Some(error)));
        }
        SignIn::Locked { scope, retry_after } => {
            let error = locked_message(scope, retry_after);
            return Ok(page(&signed_in, StatusCode::TOO_MANY_REQUESTS, Some(error)));
        }
    }
    state
        .store()
        .set_password(name, Secret::new(form.new), Some(signed_in.token_hash()))
        .await?;
    tracing::info!(user = %name, "changed their admin console password");
    Ok(Redirect::to("/").into_response())
}

fn page(signed_in: &SignedIn, status: StatusCode, error: Option<String>) -> Response {
    render(
        status,
        &PasswordPage {
            shell: signed_in.shell("Change password"),
            csrf: signed_in.csrf().to_owned(),
            must_change: signed_in.user().must_change_password,
            min_len: MIN_LEN,
            error,
        },
    )
}
