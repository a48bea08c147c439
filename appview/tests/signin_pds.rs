//! The sign-in pages end to end: the AppView service (`service::run`) with sign-in
//! configured, against the real reference PDS (with a real PLC), on loopback.
//!
//! The browser is played by plain HTTP requests without redirect following, cookies
//! carried by hand: the AppView's `/login` form, the PDS's sign-in page and UI API (as in
//! `oauth_pds.rs`), the redirect back to `/oauth/callback`, `/account` and `/logout`.
//!
//! What this proves:
//! - `POST /login` answers 303 to the PDS's authorize URL; after the user signs in and
//!   consents there, the callback sets `atelier_session` (HttpOnly, SameSite=Lax, Path=/,
//!   not Secure on http) and sends the browser to `/account`, which shows the DID;
//! - `POST /login` without the CSRF token, or from another origin, is refused with 403;
//! - an unknown handle is reported on the login page in plain words;
//! - `/metrics` counts the sign-in started and completed, the refusals and the unknown
//!   handle as errors by kind, and the sign-out;
//! - `POST /logout` clears the cookie, `/account` then sends the browser to `/login`, and
//!   the session row is marked signed out.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use atelier_appview::relay::sync::ssrf::StaticDns;
use atelier_appview::service::{self, AppViewConfig, OAuthServiceConfig};
use atelier_appview::store::StoreLocation;
use atelier_sandbox::Sandbox;
use atelier_sandbox::oauth::Jar;

const SCOPE: &str = "atproto repo:computer.aesthetic.mood";

/// Plays the user at the PDS's sign-in page (the harness's driver); returns where the
/// PDS sends the browser afterwards.
async fn sign_in_as_user(authorize_url: &str, handle: &str, password: &str, did: &str) -> String {
    atelier_sandbox::oauth::sign_in_at_authorize_page(authorize_url, handle, password, did)
        .await
        .expect("sign-in at the PDS")
}

/// The `Set-Cookie` header that sets `name`, whole.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The value of the sample `series` (name and labels, as rendered) in the AppView's
/// `/metrics`.
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> u64 {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// The value of the login form's hidden CSRF field.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("the form has a csrf field") + marker.len();
    let end = html[start..].find('"').expect("closing quote");
    html[start..start + end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_pages_against_the_pds() {
    tokio::time::timeout(Duration::from_secs(180), run())
        .await
        .expect("the sign-in scenario finishes within 3 minutes");
}

async fn run() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let account = sandbox.create_account("carol").await.expect("account");

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("oauth_token_key");
    std::fs::write(&key_file, "42".repeat(32)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let session_db = dir.path().join("sessions.sqlite");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let dns = StaticDns::new()
        .with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST))
        .with_txt(
            &format!("_atproto.{}", account.handle),
            &format!("did={}", account.did),
        );
    let mut oauth =
        OAuthServiceConfig::new(&base, SCOPE, session_db.clone(), "k1", key_file.clone());
    oauth.plc_url = sandbox.plc_url().to_owned();
    oauth.allow_loopback = true;
    oauth.dns = Some(Arc::new(dns));
    let mut config =
        AppViewConfig::new(StoreLocation::Sqlite(dir.path().join("index.sqlite")), None);
    config.oauth = Some(oauth);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let appview = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut jar = Jar::default();

    // The login page sets the CSRF cookie and repeats it in the form.
    let response = http.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let csrf_cookie = set_cookie(&response, "atelier_csrf").expect("a CSRF cookie");
    assert!(csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    jar.absorb(&response);
    let html = response.text().await.unwrap();
    let csrf = csrf_field(&html);
    assert_eq!(jar.get("atelier_csrf"), Some(csrf.as_str()));

    let post_login = |jar: &Jar, origin: Option<&str>, form: &[(&str, &str)]| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", jar.header())
            .body(body);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };

    // CSRF: no token, a wrong token, another origin: refused.
    for (origin, form) in [
        (
            Some(base.as_str()),
            vec![("handle", account.handle.as_str())],
        ),
        (
            Some(base.as_str()),
            vec![("handle", account.handle.as_str()), ("csrf", "wrong")],
        ),
        (
            Some("http://evil.example"),
            vec![("handle", account.handle.as_str()), ("csrf", csrf.as_str())],
        ),
    ] {
        let response = post_login(&jar, origin, &form).await.unwrap();
        assert_eq!(response.status(), 403, "{origin:?} {form:?}");
    }

    // An unknown handle: said in plain words on the page.
    let response = post_login(
        &jar,
        Some(&base),
        &[("handle", "nobody.test"), ("csrf", &csrf)],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("We could not find an account with the handle “nobody.test”"),
        "{html}"
    );

    // Sign in: 303 to the PDS, the user there, back to the callback.
    let response = post_login(
        &jar,
        Some(&base),
        &[("handle", &account.handle), ("csrf", &csrf)],
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303);
    let authorize_url = location(&response);
    assert!(
        authorize_url.starts_with(sandbox.pds_url()) && authorize_url.contains("request_uri="),
        "{authorize_url} (PDS {})",
        sandbox.pds_url()
    );
    let redirect = sign_in_as_user(
        &authorize_url,
        &account.handle,
        &account.password,
        &account.did,
    )
    .await;
    assert!(
        redirect.starts_with(&format!("{base}/oauth/callback?")),
        "{redirect}"
    );
    let response = http
        .get(&redirect)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/account");
    let session_cookie = set_cookie(&response, "atelier_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    assert!(
        !session_cookie.contains("Secure"),
        "plain http: {session_cookie}"
    );
    jar.absorb(&response);
    assert!(jar.get("atelier_session").is_some_and(|v| !v.is_empty()));

    // The callback cannot be replayed.
    let response = http.get(&redirect).send().await.unwrap();
    assert_eq!(response.status(), 400);

    // The sign-in metrics: one started and completed (none abandoned), the unknown
    // handle, the three CSRF refusals and the replayed callback counted as errors.
    let errors = |kind: &str| format!("atelier_appview_oauth_errors_total{{kind=\"{kind}\"}}");
    assert!(metric(&http, &base, "atelier_appview_oauth_started_total").await >= 1);
    assert_eq!(
        metric(&http, &base, "atelier_appview_oauth_completed_total").await,
        1
    );
    assert_eq!(
        metric(&http, &base, "atelier_appview_oauth_abandoned_total").await,
        0
    );
    assert_eq!(metric(&http, &base, &errors("unknown_handle")).await, 1);
    assert_eq!(metric(&http, &base, &errors("csrf")).await, 3);
    assert_eq!(metric(&http, &base, &errors("state")).await, 1);

    // The account page.
    let response = http
        .get(format!("{base}/account"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains(&account.did), "{html}");
    assert!(html.contains(&format!("@{}", account.handle)), "{html}");
    assert!(html.contains("repo:computer.aesthetic.mood"), "{html}");
    assert!(html.contains("action=\"/logout\""), "{html}");

    // Sign-out: CSRF applies too; then the cookie is cleared and the row signed out.
    let logout = |jar: &Jar, token: &str| {
        http.post(format!("{base}/logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &base)
            .header("cookie", jar.header())
            .body(format!("csrf={token}"))
            .send()
    };
    assert_eq!(logout(&jar, "wrong").await.unwrap().status(), 403);
    let response = logout(&jar, &csrf).await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/");
    assert_eq!(
        metric(&http, &base, "atelier_appview_oauth_signouts_total").await,
        1
    );
    let cleared = set_cookie(&response, "atelier_session").expect("the cookie is cleared");
    assert!(
        cleared.starts_with("atelier_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let old = jar.header();
    jar.absorb(&response);
    assert_eq!(jar.get("atelier_session"), Some(""));
    let response = http
        .get(format!("{base}/account"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login");
    // The old cookie no longer works either.
    let response = http
        .get(format!("{base}/account"))
        .header("cookie", old)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", session_db.display()))
        .await
        .unwrap();
    let (sessions, revoked): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(revoked_at) FROM oauth_session WHERE kind = 'session'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((sessions, revoked), (1, 1), "the session row is signed out");
    pool.close().await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), appview)
        .await
        .expect("the AppView stops")
        .expect("the AppView task")
        .expect("the AppView stops cleanly");
    sandbox.shutdown().await;
}
