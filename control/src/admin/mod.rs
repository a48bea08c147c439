//! The admin console: where moderators sign in and work. Server-rendered pages (axum and
//! askama templates under `templates/admin/`, no JavaScript), run by `atelier admin serve`
//! from the `services.admin` section of `atelier.yaml`.
//!
//! This module is the console's accounts and access, and its page shell; the moderation
//! pages (reports, queues, actions) plug into it with [`router_with`] and
//! [`AdminState::with_nav`].
//!
//! Parts, bottom up:
//! - [`access`]: roles (`admin`, `moderator`, `triage`), the [`Permission`] table, and
//!   [`can_apply_label`] for moderators limited to some label values.
//! - [`password`]: argon2id hashes, the rules for a new password, generated passwords.
//! - [`store`]: the console's SQLite file (`DATA_DIR/admin/admin.sqlite`): users, with
//!   [`sessions`] (server-side, only a token's hash stored, idle and absolute expiry) and
//!   [`lockout`] (failed sign-ins per name and per address, exponential back-off)
//!   adding their tables and methods to the same [`UserStore`].
//! - [`signin`]: one sign-in attempt: lockout gate, constant-time password check, failure
//!   count.
//! - [`cookies`], [`csrf`]: the cookies' attributes; the origin and token checks every
//!   state-changing request passes.
//! - [`auth`]: the session middleware and the [`Authed`] / [`SignedIn`] extractors every
//!   page takes; [`Authed::require`] answers 403.
//! - `pages`: the sign-in, password, dashboard and users pages, and the [`Shell`] every
//!   page is drawn in.
//! - [`service`]: [`AdminServiceConfig`], [`AdminState`], [`router`] / [`router_with`],
//!   [`serve`] / [`serve_with_public`] (with public protocol routes beside the pages) and
//!   [`run`].
//! - [`command`]: `atelier admin serve | add-user | reset-password | list-users`.
//!
//! Design: the server decides everything. The browser holds one opaque session token;
//! each request looks the session and its user up again, so a disabled user or a changed
//! role takes effect at the next click, and nothing the client sends is trusted for
//! authorisation. The protections that must not be forgotten by any page are middleware
//! (session loading, CSRF and origin checks, security headers) wrapped around every route,
//! including routes other modules add through [`router_with`].
//!
//! **Architecture Invariant:** every route of the console is authorised on the server:
//! a handler takes [`Authed`] (or [`SignedIn`] for the password page and sign-out) and
//! states the [`Permission`] it needs with [`Authed::require`]; every POST passes the CSRF
//! guard before any handler runs.
//!
//! **Architecture Invariant:** a password hash never leaves [`store`]: [`User`] has none,
//! and the one question asked of a password is [`UserStore::verify_password`].
//!
//! The console knows nothing of the labeler, the AppView or the relay: the moderation
//! pages that drive them are added from outside.

pub mod access;
pub mod auth;
pub mod command;
pub mod cookies;
pub mod csrf;
pub mod lockout;
mod pages;
pub mod password;
pub mod service;
pub mod sessions;
pub mod signin;
pub mod store;

pub use access::{Permission, can_apply_label};
pub use auth::{AuthRejection, Authed, ClientAddress, Forbidden, SignedIn};
pub use lockout::LoginLimits;
pub use pages::{Form, NavLink, PageError, Shell, human_duration, message, render};
pub use service::{
    AdminServiceConfig, AdminState, accounts_pages, router, router_with, run, serve,
    serve_with_public,
};
pub use sessions::SessionPolicy;
pub use store::{NewUser, StoreError, User, UserStore};

/// Why the console could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Its database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bootstrap password file could not be read (missing, or world-readable).
    #[error("admin bootstrap password: {0}")]
    Secret(#[from] crate::config::SecretError),
    /// The HTTP server failed.
    #[error("admin console server: {0}")]
    Serve(#[source] std::io::Error),
}
