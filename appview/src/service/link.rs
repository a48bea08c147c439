//! Handle linking: an AC handle for an ATProto identity.
//!
//! Two ways, both shown on the account page with their verification state:
//! - **under the deployment's domain**: a signed-in user claims `{name}.{domain}`
//!   (`POST /account/handle`); the AppView then answers
//!   `GET /.well-known/atproto-did` for the host `{name}.{domain}` with their DID (the
//!   HTTPS method of handle resolution), so the handle resolves once requests for that
//!   host reach the AppView;
//! - **under their own domain**: the page shows the DNS record to add
//!   (`_atproto.{domain}` TXT `did={did}`), and `POST /account/handle/check` looks it up
//!   (DNS TXT, then `https://{domain}/.well-known/atproto-did`) without the resolver's
//!   cache, and reports what it found in plain words.
//!
//! Either way the handle is only the account's once its DID document names it too:
//! `POST /account/handle/use` asks the user's PDS to set it
//! (`com.atproto.identity.updateHandle`, which checks the resolution itself; an OAuth
//! session needs the `identity:handle` scope), and the page shows the two-way check
//! ([`Resolver::verify_handle`](crate::relay::sync::identity::Resolver::verify_handle)).
//!
//! Not built: the e-mail fallback through the PDS's SMTP.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sqlx::{Row, SqlitePool};

use super::signin::{
    SESSION_COOKIE, SignIn, check_form, cookie_value, form_field, plain, refused, see_other,
};
use crate::oauth::{OAuthError, XrpcRequest};

/// The table, applied when sign-in opens.
pub(crate) const SCHEMA: &str = include_str!("../../migrations/oauth/0003_handle_links.sql");

/// The longest name (one DNS label).
const MAX_NAME: usize = 63;

/// The handle-linking routes (merged with the sign-in pages).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(signin: Arc<SignIn>) -> Router<S> {
    Router::new()
        .route("/.well-known/atproto-did", get(well_known))
        .route("/account/handle", post(claim))
        .route("/account/handle/check", post(check))
        .route("/account/handle/use", post(use_handle))
        .with_state(signin)
}

/// Whether `name` can be the first label of a handle.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The DID linked to `name`, if any.
pub(crate) async fn linked_did(
    pool: &SqlitePool,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT did FROM handle_link WHERE name = ?")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("did")).transpose()
}

/// The name linked to `did`, if any.
pub(crate) async fn linked_name(
    pool: &SqlitePool,
    did: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT name FROM handle_link WHERE did = ?")
        .bind(did)
        .fetch_optional(pool)
        .await?;
    row.map(|r| r.try_get("name")).transpose()
}

/// How many accounts have linked a name, and how many accounts have signed in here.
async fn counts(pool: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    let linked: i64 = sqlx::query("SELECT COUNT(*) AS n FROM handle_link")
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    let accounts: i64 =
        sqlx::query("SELECT COUNT(DISTINCT did) AS n FROM oauth_session WHERE kind = 'session'")
            .fetch_one(pool)
            .await?
            .try_get("n")?;
    Ok((linked, accounts))
}

/// Appends the linking gauges to `/metrics`: accounts that signed in here, and how many
/// of them linked a handle under the deployment's domain (the share of AC users linked).
pub(crate) async fn render_metrics(signin: &SignIn, out: &mut String) {
    use std::fmt::Write as _;
    let Ok((linked, accounts)) = counts(signin.sessions.pool()).await else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP atelier_appview_accounts_signed_in Accounts with a session row here (signed in at least once since the last cleanup).\n\
         # TYPE atelier_appview_accounts_signed_in gauge\n\
         atelier_appview_accounts_signed_in {accounts}\n\
         # HELP atelier_appview_accounts_linked Accounts that linked a handle under the deployment's domain.\n\
         # TYPE atelier_appview_accounts_linked gauge\n\
         atelier_appview_accounts_linked {linked}"
    );
}

/// `GET /.well-known/atproto-did`: the DID linked to the request's host.
async fn well_known(State(signin): State<Arc<SignIn>>, headers: HeaderMap) -> Response {
    let Some(domain) = &signin.handle_domain else {
        return plain(StatusCode::NOT_FOUND, "No handles here.");
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // Without the port, if any (IPv6 literals never name a handle).
    let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let Some(name) = host
        .strip_suffix(domain.as_str())
        .and_then(|n| n.strip_suffix('.'))
        .filter(|n| valid_name(n))
    else {
        return plain(StatusCode::NOT_FOUND, "No handle here.");
    };
    match linked_did(signin.sessions.pool(), name).await {
        Ok(Some(did)) => {
            let mut response = did.into_response();
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        }
        Ok(None) => plain(StatusCode::NOT_FOUND, "No handle here."),
        Err(e) => {
            tracing::error!(error = %e, "reading handle links");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Try again in a moment.")
        }
    }
}

/// The signed-in DID of a form post (after the CSRF checks), or the response to send.
async fn form_account(
    signin: &SignIn,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, crate::oauth::Session), Response> {
    if let Err(text) = check_form(signin, headers, body) {
        return Err(refused(text));
    }
    let cookie =
        cookie_value(headers, SESSION_COOKIE).ok_or_else(|| see_other("/login", Vec::new()))?;
    match signin.sessions.load(cookie).await {
        Ok(session) => Ok((cookie.to_owned(), session)),
        Err(_) => Err(see_other("/login", Vec::new())),
    }
}

/// Back to the account page with a message (`?note=`).
fn back(note: &str) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("note", note)
        .finish();
    see_other(&format!("/account?{query}"), Vec::new())
}

/// `POST /account/handle`: claim `{name}.{domain}` for the signed-in account.
async fn claim(State(signin): State<Arc<SignIn>>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, session) = match form_account(&signin, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(domain) = &signin.handle_domain else {
        return back("This server does not give out handles.");
    };
    let name = form_field(&body, "name")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !valid_name(&name) {
        return back("Choose a name of letters, digits and dashes (not at either end).");
    }
    let pool = signin.sessions.pool();
    let taken = match linked_did(pool, &name).await {
        Ok(owner) => owner.is_some_and(|d| d != session.did),
        Err(e) => {
            tracing::error!(error = %e, "reading handle links");
            return back("Linking is unavailable right now. Try again in a moment.");
        }
    };
    if taken {
        return back(&format!("{name}.{domain} is taken: choose another name."));
    }
    let saved = async {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM handle_link WHERE did = ?")
            .bind(&session.did)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO handle_link (name, did, created_at) VALUES (?, ?, ?)")
            .bind(&name)
            .bind(&session.did)
            .bind(crate::oauth::dpop::now_unix())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await;
    match saved {
        Ok(()) => {
            tracing::info!(did = %session.did, %name, "handle linked");
            back(&format!(
                "{name}.{domain} now points at your account. Use it as your handle to finish."
            ))
        }
        // Two users claiming one name at once: the second insert breaks the key.
        Err(e) => {
            tracing::info!(error = %e, "claiming a handle");
            back(&format!("{name}.{domain} is taken: choose another name."))
        }
    }
}

/// Where a handle resolves, looked up afresh: DNS TXT first, then the HTTPS well-known.
async fn lookup(signin: &SignIn, handle: &str) -> (Option<String>, &'static str) {
    let guard = signin.client.http().guard();
    if let Ok(records) = guard.dns().lookup_txt(&format!("_atproto.{handle}")).await {
        let dids: Vec<&str> = records
            .iter()
            .filter_map(|r| r.strip_prefix("did="))
            .collect();
        if let [did] = dids.as_slice() {
            return (Some((*did).to_owned()), "DNS");
        }
    }
    let url = format!("https://{handle}/.well-known/atproto-did");
    match guard.get_bytes(&url, 2048).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            if text.starts_with("did:") {
                (Some(text), "HTTPS")
            } else {
                (None, "HTTPS")
            }
        }
        Err(_) => (None, "DNS or HTTPS"),
    }
}

/// `POST /account/handle/check`: does `handle` resolve to the signed-in account?
async fn check(State(signin): State<Arc<SignIn>>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, session) = match form_account(&signin, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let handle = form_field(&body, "handle")
        .unwrap_or_default()
        .trim()
        .trim_start_matches('@')
        .to_ascii_lowercase();
    if crate::relay::lexicons::syntax::check_syntax(
        crate::relay::lexicons::syntax::Format::Handle,
        &handle,
    )
    .is_err()
    {
        return back(&format!("{handle:?} is not a domain name."));
    }
    let note = match lookup(&signin, &handle).await {
        (Some(did), how) if did == session.did => {
            format!("{handle} points at your account ({how}). Use it as your handle to finish.")
        }
        (Some(did), how) => format!(
            "{handle} points at another account ({did}, by {how}). Change its TXT record \
             _atproto.{handle} to did={}.",
            session.did
        ),
        (None, _) => format!(
            "{handle} does not point at an account yet. Add the TXT record _atproto.{handle} \
             with the value did={} (DNS changes can take a while to show).",
            session.did
        ),
    };
    back(&note)
}

/// `POST /account/handle/use`: ask the user's PDS to make `handle` the account's handle.
async fn use_handle(
    State(signin): State<Arc<SignIn>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (cookie, _) = match form_account(&signin, &headers, &body).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let handle = form_field(&body, "handle")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let _lock = signin.session_lock(&cookie).lock_owned().await;
    let Ok(mut session) = signin.sessions.load(&cookie).await else {
        return see_other("/login", Vec::new());
    };
    let request = XrpcRequest::procedure(
        "com.atproto.identity.updateHandle",
        json!({"handle": handle}),
    );
    let result = signin.client.xrpc(&mut session, &request).await;
    if let Err(e) = signin.sessions.save(&cookie, &session).await {
        tracing::error!(error = %e, "saving a session after a handle change");
    }
    match result {
        Ok(_) => {
            tracing::info!(did = %session.did, %handle, "handle changed");
            back(&format!("Your handle is now {handle}."))
        }
        Err(OAuthError::ScopeMissing { scope }) => back(&format!(
            "Changing your handle needs the permission {scope:?}: sign out and in again to allow it."
        )),
        Err(OAuthError::Xrpc { message, error, .. }) => back(&format!(
            "Your server did not accept {handle}: {}",
            message.unwrap_or(error)
        )),
        Err(e) => {
            tracing::warn!(error = %e, "updateHandle failed");
            back("Your server could not be reached. Try again in a moment.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_dns_label() {
        for ok in ["alice", "a", "sister-ray", "ac23menap"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a.b", "a_b", "ä", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
