//! Who is asking, and whether they may: the session middleware and the extractors every
//! page takes.
//!
//! [`load_session`] runs before every handler: it reads the session cookie, looks the
//! session up (checking its expiry and marking it used) and puts it in the request's
//! extensions. A handler then takes one of:
//! - [`Authed`]: a signed-in user who has chosen their own password. Without a session the
//!   request is sent to `/login`; a user who must change their password is sent to
//!   `/password`. The handler then calls [`Authed::require`] with the [`Permission`] it
//!   needs, which answers 403 when the role lacks it.
//! - [`SignedIn`]: any signed-in user, even one who must change their password first (the
//!   password page and sign-out take this).
//!
//! Nothing but the session cookie is taken from the client: the role, the label limit and
//! whether the account is disabled are read from the database on every request, so a
//! change applies to the user's next click.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::access::{Permission, can_apply_label};
use super::cookies;
use super::pages::{self, NavLink, Shell};
use super::service::AdminState;
use super::sessions::Session;
use super::store::User;

/// The middleware that finds the request's session, if any (see the module header).
pub(crate) async fn load_session(
    State(state): State<AdminState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(token) = cookies::get(request.headers(), cookies::SESSION) {
        match state
            .store()
            .session(token, &state.settings().sessions)
            .await
        {
            Ok(Some(session)) => {
                request.extensions_mut().insert(Arc::new(session));
            }
            Ok(None) => {}
            Err(err) => return pages::PageError::from(err).into_response(),
        }
    }
    next.run(request).await
}

/// A signed-in user, whether or not they must change their password first.
#[derive(Debug, Clone)]
pub struct SignedIn {
    session: Arc<Session>,
    /// The console's navigation links (filtered per user when a page is drawn).
    nav: Arc<[NavLink]>,
    /// The request's path, to mark the current page in the navigation.
    path: String,
}

impl SignedIn {
    /// The user.
    pub fn user(&self) -> &User {
        &self.session.user
    }

    /// The session's CSRF token, for the forms of the page.
    pub fn csrf(&self) -> &str {
        &self.session.csrf
    }

    /// SHA-256 of the session token (to keep this session when the password changes).
    pub(crate) fn token_hash(&self) -> &[u8] {
        &self.session.token_hash
    }

    /// The page frame for this user: the title, their name and role, the navigation links
    /// their role may follow, and the sign-out form's token.
    pub fn shell(&self, title: &str) -> Shell {
        Shell::signed_in(title, self.user(), self.csrf(), &self.nav, &self.path)
    }
}

impl SignedIn {
    /// The request's session, as [`load_session`] found it.
    fn from_parts(parts: &Parts, state: &AdminState) -> Option<SignedIn> {
        let session = parts.extensions.get::<Arc<Session>>()?;
        Some(SignedIn {
            session: Arc::clone(session),
            nav: state.nav(),
            path: parts.uri.path().to_owned(),
        })
    }
}

impl OptionalFromRequestParts<AdminState> for SignedIn {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(SignedIn::from_parts(parts, state))
    }
}

impl FromRequestParts<AdminState> for SignedIn {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        SignedIn::from_parts(parts, state).ok_or(AuthRejection::SignIn)
    }
}

/// A signed-in user who has chosen their own password: what every page but the password
/// page takes. See the module header.
#[derive(Debug, Clone)]
pub struct Authed(SignedIn);

impl Authed {
    /// The user.
    pub fn user(&self) -> &User {
        self.0.user()
    }

    /// The session's CSRF token, for the forms of the page.
    pub fn csrf(&self) -> &str {
        self.0.csrf()
    }

    /// The page frame for this user (see [`SignedIn::shell`]).
    pub fn shell(&self, title: &str) -> Shell {
        self.0.shell(title)
    }

    /// `Ok` when the user's role grants `permission`, else the 403 answer.
    pub fn require(&self, permission: Permission) -> Result<(), Forbidden> {
        if self.user().role.allows(permission) {
            Ok(())
        } else {
            Err(Forbidden::new(format!(
                "Your role ({}) does not include {}.",
                self.user().role.as_str(),
                permission.description()
            )))
        }
    }

    /// Whether the user may apply or negate the label `value` (see
    /// [`super::access::can_apply_label`]).
    pub fn can_apply_label(&self, value: &str) -> bool {
        can_apply_label(self.user(), value)
    }
}

impl FromRequestParts<AdminState> for Authed {
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = SignedIn::from_parts(parts, state).ok_or(AuthRejection::SignIn)?;
        if signed_in.user().must_change_password {
            return Err(AuthRejection::ChangePassword);
        }
        Ok(Authed(signed_in))
    }
}

/// Why a page was not shown to this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRejection {
    /// No session: sign in first.
    SignIn,
    /// The user must choose their own password first.
    ChangePassword,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            AuthRejection::SignIn => Redirect::to("/login").into_response(),
            AuthRejection::ChangePassword => Redirect::to("/password").into_response(),
        }
    }
}

/// The 403 answer: a page saying, in plain words, that the user may not do this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not allowed: {reason}")]
pub struct Forbidden {
    reason: String,
}

impl Forbidden {
    /// A refusal for `reason` (a sentence shown to the user).
    pub fn new(reason: impl Into<String>) -> Self {
        Forbidden {
            reason: reason.into(),
        }
    }
}

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        pages::message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "You are not allowed to do this. {} Ask an admin if you need it.",
                self.reason
            ),
        )
        .into_response()
    }
}

/// The client's address, for the per-address sign-in limit: the TCP peer, or with
/// `trust_forwarded_for` (a reverse proxy in front) the last address in `X-Forwarded-For`,
/// the one the proxy itself added. Earlier entries are the client's own word and are never
/// used. `None` when neither is known (a router driven without a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AdminState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(
            &parts.headers,
            parts.extensions.get::<ConnectInfo<SocketAddr>>(),
            state.settings().trust_forwarded_for,
        )))
    }
}

fn client_address(
    headers: &HeaderMap,
    connect_info: Option<&ConnectInfo<SocketAddr>>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| v.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(forwarded);
    }
    connect_info.map(|info| info.0.ip())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn client_addresses() {
        let peer = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000)));
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(
            client_address(&headers, Some(&peer), true),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(&headers, Some(&peer), false),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(&HeaderMap::new(), Some(&peer), true),
            ip("127.0.0.1")
        );
        assert_eq!(client_address(&HeaderMap::new(), None, false), None);
    }
}
