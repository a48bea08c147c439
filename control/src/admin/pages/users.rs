//! `/users`: admins manage the console's accounts (everything here needs
//! [`Permission::ManageUsers`]).
//!
//! - `GET /users`: every user, with forms to change each one's role and label limit,
//!   disable or enable them, and reset their password; and a form to add a user.
//! - `POST /users`: adds a user with a generated password, shown once on the answer page.
//! - `POST /users/{name}/role`, `/disable`, `/enable`, `/reset-password`.
//!
//! Each action answers with the users page and a sentence saying what happened (or what
//! was wrong with the input), rather than a redirect: a generated password has to be on
//! the answer itself, since it is shown once and never stored in the clear.
//!
//! An admin cannot change their own role, disable themselves or reset their own password
//! here (the password page is for that): the console must never lose its last way in by a
//! slip of the hand.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Form, PageError, Shell, render};
use crate::admin::access::Permission;
use crate::admin::auth::Authed;
use crate::admin::password;
use crate::admin::service::AdminState;
use crate::admin::store::{InvalidInput, NewUser, StoreError, User, parse_label_limit};
use crate::config::{Role, Secret};

#[derive(Template)]
#[template(path = "admin/users.html", config = "src/admin/askama.toml")]
struct UsersPage {
    shell: Shell,
    csrf: String,
    rows: Vec<UserRow>,
    /// The add form's role menu.
    roles: Vec<RoleOption>,
    outcome: Outcome,
}

/// One user in the table.
struct UserRow {
    name: String,
    roles: Vec<RoleOption>,
    labels: String,
    disabled: bool,
    must_change: bool,
    created: String,
    is_me: bool,
}

/// An entry of a role menu.
struct RoleOption {
    name: &'static str,
    selected: bool,
}

/// What the last action came to, shown above the table.
enum Outcome {
    /// Nothing done (a plain `GET`).
    None,
    /// Done, and this sentence says what.
    Done(String),
    /// Refused, and this sentence says why.
    Refused(String),
    /// A password was generated for `name`: shown once, here.
    Password {
        text: String,
        name: String,
        password: Secret,
    },
}

/// The add form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct AddForm {
    name: String,
    role: String,
    #[serde(default)]
    labels: String,
}

/// The role form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct RoleForm {
    role: String,
    #[serde(default)]
    labels: String,
}

/// `GET /users`.
pub(crate) async fn show(
    State(state): State<AdminState>,
    authed: Authed,
) -> Result<Response, PageError> {
    authed.require(Permission::ManageUsers)?;
    page(&state, &authed, StatusCode::OK, Outcome::None).await
}

/// `POST /users`: adds a user.
pub(crate) async fn add(
    State(state): State<AdminState>,
    authed: Authed,
    Form(form): Form<AddForm>,
) -> Result<Response, PageError> {
    authed.require(Permission::ManageUsers)?;
    let new = match parse_role_and_labels(&form.role, &form.labels) {
        Ok((role, allowed_labels)) => NewUser {
            name: form.name.trim().to_owned(),
            role,
            allowed_labels,
            password: Secret::new(password::generate()),
        },
        Err(reason) => return refused(&state, &authed, StatusCode::BAD_REQUEST, reason).await,
    };
    let password = new.password.clone();
    match state.store().create_user(new).await {
        Ok(user) => {
            tracing::info!(
                by = %authed.user().name,
                user = %user.name,
                role = user.role.as_str(),
                "added an admin console user"
            );
            let outcome = Outcome::Password {
                text: format!("Added {} ({}).", user.name, user.role.as_str()),
                name: user.name,
                password,
            };
            page(&state, &authed, StatusCode::OK, outcome).await
        }
        Err(err) => store_refusal(&state, &authed, err).await,
    }
}

/// `POST /users/{name}/role`: changes a user's role and label limit.
pub(crate) async fn set_role(
    State(state): State<AdminState>,
    authed: Authed,
    Path(name): Path<String>,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    authed.require(Permission::ManageUsers)?;
    if name == authed.user().name {
        let reason = "You cannot change your own role; ask another admin.".to_owned();
        return refused(&state, &authed, StatusCode::BAD_REQUEST, reason).await;
    }
    let (role, allowed_labels) = match parse_role_and_labels(&form.role, &form.labels) {
        Ok(parsed) => parsed,
        Err(reason) => return refused(&state, &authed, StatusCode::BAD_REQUEST, reason).await,
    };
    match state.store().set_role(&name, role, allowed_labels).await {
        Ok(()) => {
            tracing::info!(
                by = %authed.user().name,
                user = %name,
                role = role.as_str(),
                "changed an admin console user's role"
            );
            let text = format!("{name} is now {}.", describe_role(role, &form.labels));
            page(&state, &authed, StatusCode::OK, Outcome::Done(text)).await
        }
        Err(err) => store_refusal(&state, &authed, err).await,
    }
}

/// `POST /users/{name}/disable`.
pub(crate) async fn disable(
    State(state): State<AdminState>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    set_disabled(state, authed, name, true).await
}

/// `POST /users/{name}/enable`.
pub(crate) async fn enable(
    State(state): State<AdminState>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    set_disabled(state, authed, name, false).await
}

async fn set_disabled(
    state: AdminState,
    authed: Authed,
    name: String,
    disabled: bool,
) -> Result<Response, PageError> {
    authed.require(Permission::ManageUsers)?;
    if disabled && name == authed.user().name {
        let reason = "You cannot disable yourself; ask another admin.".to_owned();
        return refused(&state, &authed, StatusCode::BAD_REQUEST, reason).await;
    }
    match state.store().set_disabled(&name, disabled).await {
        Ok(()) => {
            let (verb, text) = if disabled {
                (
                    "disabled",
                    format!("Disabled {name}; their sessions have ended."),
                )
            } else {
                ("enabled", format!("Enabled {name}."))
            };
            tracing::info!(by = %authed.user().name, user = %name, "{verb} an admin console user");
            page(&state, &authed, StatusCode::OK, Outcome::Done(text)).await
        }
        Err(err) => store_refusal(&state, &authed, err).await,
    }
}

/// `POST /users/{name}/reset-password`.
pub(crate) async fn reset_password(
    State(state): State<AdminState>,
    authed: Authed,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    authed.require(Permission::ManageUsers)?;
    if name == authed.user().name {
        let reason = "Change your own password on the password page.".to_owned();
        return refused(&state, &authed, StatusCode::BAD_REQUEST, reason).await;
    }
    match state.store().reset_password(&name).await {
        Ok(password) => {
            tracing::info!(
                by = %authed.user().name,
                user = %name,
                "reset an admin console user's password"
            );
            let outcome = Outcome::Password {
                text: format!("Reset the password of {name}; their sessions have ended."),
                name,
                password,
            };
            page(&state, &authed, StatusCode::OK, outcome).await
        }
        Err(err) => store_refusal(&state, &authed, err).await,
    }
}

/// The role and label limit typed in a form, or the sentence saying what is wrong.
fn parse_role_and_labels(role: &str, labels: &str) -> Result<(Role, Option<Vec<String>>), String> {
    let role = role.parse::<Role>().map_err(|err| format!("{err}."))?;
    let labels = parse_label_limit(labels).map_err(|err| err.to_string())?;
    if labels.is_some() && role != Role::Moderator {
        return Err(InvalidInput::LabelsNeedModerator.to_string());
    }
    Ok((role, labels))
}

fn describe_role(role: Role, labels: &str) -> String {
    match parse_label_limit(labels) {
        Ok(Some(values)) => format!("{} (labels: {})", role.as_str(), values.join(", ")),
        _ => role.as_str().to_owned(),
    }
}

/// The users page with a refusal caused by the store (bad input, a name taken or
/// unknown); other store failures are a [`PageError`].
async fn store_refusal(
    state: &AdminState,
    authed: &Authed,
    err: StoreError,
) -> Result<Response, PageError> {
    let (status, reason) = match err {
        StoreError::Invalid(invalid) => (StatusCode::BAD_REQUEST, invalid.to_string()),
        StoreError::Exists { name } => (
            StatusCode::CONFLICT,
            format!("A user named {name} exists already."),
        ),
        StoreError::NotFound { name } => (
            StatusCode::NOT_FOUND,
            format!("There is no user named {name}."),
        ),
        other => return Err(other.into()),
    };
    refused(state, authed, status, reason).await
}

async fn refused(
    state: &AdminState,
    authed: &Authed,
    status: StatusCode,
    reason: String,
) -> Result<Response, PageError> {
    page(state, authed, status, Outcome::Refused(reason)).await
}

async fn page(
    state: &AdminState,
    authed: &Authed,
    status: StatusCode,
    outcome: Outcome,
) -> Result<Response, PageError> {
    let users = state.store().users().await?;
    let me = &authed.user().name;
    Ok(render(
        status,
        &UsersPage {
            shell: authed.shell("Users"),
            csrf: authed.csrf().to_owned(),
            rows: users.iter().map(|user| row(user, me)).collect(),
            roles: role_options(Role::Triage),
            outcome,
        },
    ))
}

fn row(user: &User, me: &str) -> UserRow {
    UserRow {
        name: user.name.clone(),
        roles: role_options(user.role),
        labels: user
            .allowed_labels
            .as_deref()
            .unwrap_or_default()
            .join(", "),
        disabled: user.disabled,
        must_change: user.must_change_password,
        created: date(user.created_at),
        is_me: user.name == me,
    }
}

fn role_options(selected: Role) -> Vec<RoleOption> {
    Role::ALL
        .into_iter()
        .map(|role| RoleOption {
            name: role.as_str(),
            selected: role == selected,
        })
        .collect()
}

/// Unix seconds as `2026-01-02 03:04 UTC`.
fn date(unix: i64) -> String {
    let full = atelier_relay::service::rfc3339(unix.saturating_mul(1_000_000));
    match (full.get(..10), full.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_767_322_800), "2026-01-02 03:00 UTC");
    }

    #[test]
    fn roles_and_labels_from_a_form() {
        assert_eq!(
            parse_role_and_labels("moderator", "spam, nudity"),
            Ok((
                Role::Moderator,
                Some(vec!["spam".to_owned(), "nudity".to_owned()])
            ))
        );
        assert_eq!(
            parse_role_and_labels("triage", " "),
            Ok((Role::Triage, None))
        );
        assert_eq!(
            parse_role_and_labels("triage", "spam"),
            Err("Only moderators can be limited to some label values.".to_owned())
        );
        assert_eq!(
            parse_role_and_labels("root", ""),
            Err("\"root\" is not a role: use admin, moderator or triage.".to_owned())
        );
    }
}
