//! The console's pages: askama templates under `templates/admin/`, all drawn inside one
//! layout (`templates/admin/layout.html`) from a [`Shell`].
//!
//! Each page module has its handlers and its template struct; this module has what they
//! share: the [`Shell`] (title, the signed-in user, navigation), the navigation links
//! ([`NavLink`], [`default_nav`]), the plain message page used for refusals and errors
//! ([`message`]), [`PageError`] for failures (logged in full, shown as a generic page),
//! and the [`Form`] extractor.
//!
//! Pages need no JavaScript: every action is a plain HTML form posted to the server, with
//! the session's CSRF token in a hidden field (see [`super::csrf`]).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::access::Permission;
use super::auth::Forbidden;
use super::store::{StoreError, User};

pub(crate) mod dashboard;
pub(crate) mod login;
pub(crate) mod password;
pub(crate) mod users;

/// A link in the console's navigation bar, shown to users whose role has `permission`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavLink {
    /// The text.
    pub label: &'static str,
    /// Where it goes (a path of the console).
    pub href: &'static str,
    /// Who sees it.
    pub permission: Permission,
}

/// The console's own navigation: the dashboard and, for admins, the users page. Other
/// modules add theirs with [`super::AdminState::with_nav`].
pub(crate) fn default_nav() -> Vec<NavLink> {
    vec![
        NavLink {
            label: "Dashboard",
            href: "/",
            permission: Permission::View,
        },
        NavLink {
            label: "Users",
            href: "/users",
            permission: Permission::ManageUsers,
        },
    ]
}

/// What the layout draws around every page. A template holds one as its `shell` field and
/// starts with `{% extends "admin/layout.html" %}`.
#[derive(Debug, Clone)]
pub struct Shell {
    /// The page title (also in the browser tab).
    pub title: String,
    /// Who is signed in; `None` on the sign-in and message pages.
    pub user: Option<ShellUser>,
    /// The links this user may follow.
    pub nav: Vec<NavLink>,
    /// The path of the page, to mark its link as current.
    pub path: String,
}

/// The signed-in user, as the layout shows them.
#[derive(Debug, Clone)]
pub struct ShellUser {
    /// Login name.
    pub name: String,
    /// Role name.
    pub role: &'static str,
    /// The session's CSRF token, for the sign-out form in the header.
    pub csrf: String,
}

impl Shell {
    /// The frame of a page nobody is signed in to.
    pub fn anonymous(title: &str) -> Shell {
        Shell {
            title: title.to_owned(),
            user: None,
            nav: Vec::new(),
            path: String::new(),
        }
    }

    /// The frame of a page for `user`: only the links their role may follow, and none
    /// until they have chosen their own password (the links would only lead back).
    pub(crate) fn signed_in(
        title: &str,
        user: &User,
        csrf: &str,
        nav: &[NavLink],
        path: &str,
    ) -> Shell {
        Shell {
            title: title.to_owned(),
            user: Some(ShellUser {
                name: user.name.clone(),
                role: user.role.as_str(),
                csrf: csrf.to_owned(),
            }),
            nav: nav
                .iter()
                .filter(|link| !user.must_change_password && user.role.allows(link.permission))
                .cloned()
                .collect(),
            path: path.to_owned(),
        }
    }
}

/// Renders `template` as an HTML response with `status`. A template that fails to render
/// (a bug) is logged and answered with a generic 500 page.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(%err, "rendering an admin console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be drawn; the error is in the console's log.",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "admin/message.html", config = "src/admin/askama.toml")]
struct MessagePage<'a> {
    shell: Shell,
    heading: &'a str,
    text: &'a str,
}

/// A page with a heading and a sentence or two: refusals, errors, "not found".
pub fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            shell: Shell::anonymous(heading),
            heading,
            text,
        },
    )
}

/// The answer to a path the console does not have.
pub(crate) async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "The console has no page at this address.",
    )
}

/// Why a page handler did not draw its page. Handlers return `Result<Response,
/// PageError>` so that `authed.require(..)?` and store calls can use `?`.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The user's role does not allow this: a 403 page.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// The database failed: logged in full, answered with a generic 500 page.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Forbidden(forbidden) => forbidden.into_response(),
            PageError::Store(err) => {
                tracing::error!(%err, "an admin console request failed");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The console could not do this; the error is in its log. Try again, and \
                     tell the operator if it keeps happening.",
                )
            }
        }
    }
}

/// A URL-encoded form body deserialized into `T`. (The workspace's axum is built without
/// its own form support; this is the few lines the console needs.) Unknown fields, such
/// as the CSRF token the middleware has already checked, are ignored.
#[derive(Debug, Clone)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|err| {
                tracing::debug!(%err, "an admin console form could not be read");
                message(
                    StatusCode::BAD_REQUEST,
                    "Form not understood",
                    "The form sent is missing a field or has a wrong one. Go back, reload the \
                 page and try again.",
                )
            })
    }
}

/// A duration as a person says it: "45 seconds", "1 minute", "3 minutes", "2 hours",
/// rounded up (a lock is never over sooner than it says).
pub fn human_duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs().max(1);
    let (count, unit) = if secs < 60 {
        (secs, "second")
    } else if secs < 60 * 60 {
        (secs.div_ceil(60), "minute")
    } else {
        (secs.div_ceil(60 * 60), "hour")
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Role;

    #[test]
    fn durations_in_words() {
        let cases = [
            (0, "1 second"),
            (1, "1 second"),
            (45, "45 seconds"),
            (60, "1 minute"),
            (61, "2 minutes"),
            (3600, "1 hour"),
            (3601, "2 hours"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn navigation_follows_the_role() {
        let mut user = User {
            name: "ann".to_owned(),
            role: Role::Triage,
            allowed_labels: None,
            must_change_password: false,
            disabled: false,
            created_at: 0,
            updated_at: 0,
        };
        let labels = |user: &User| -> Vec<&str> {
            Shell::signed_in("t", user, "csrf", &default_nav(), "/")
                .nav
                .iter()
                .map(|l| l.label)
                .collect()
        };
        assert_eq!(labels(&user), ["Dashboard"]);
        user.role = Role::Admin;
        assert_eq!(labels(&user), ["Dashboard", "Users"]);
    }
}
