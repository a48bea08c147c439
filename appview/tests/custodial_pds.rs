//! AC-only accounts end to end: the AppView with sign-in configured to offer accounts on
//! the bundled PDS (the real reference PDS and PLC of the sandbox, on loopback).
//!
//! What this proves:
//! - `/signup` creates an account on the bundled PDS and signs it in; the account page
//!   shows its DID; a taken name and a short password are refused in plain words;
//! - the publishing API works for it the same as for an OAuth session: a mood lands on
//!   the PDS in the new account's repo;
//! - an expired access token is renewed with the refresh token (which rotates);
//! - neither the password nor the tokens are stored in clear;
//! - `/login` with a password signs in again; a wrong password is refused; sign-out ends
//!   the session at the PDS (`deleteSession`), after which its refresh token is refused.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_appview::oauth::{SessionKeys, SessionStore};
use atelier_appview::publish::PublishConfig;
use atelier_appview::relay::sync::ssrf::{Dns, DnsError, DnsFuture};
use atelier_appview::service::{self, AppViewConfig, OAuthServiceConfig};
use atelier_appview::store::StoreLocation;
use atelier_sandbox::Sandbox;
use atelier_sandbox::oauth::Jar;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

/// Name resolution the test can change: `localhost` is loopback, TXT records are added as
/// the scenario goes (a user "adding a DNS record").
#[derive(Debug, Default)]
struct TestDns {
    txt: Mutex<HashMap<String, Vec<String>>>,
}

impl Dns for TestDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<SocketAddr>> {
        let found = (host == "localhost")
            .then(|| vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)]);
        Box::pin(async move {
            found.ok_or_else(|| DnsError::NotFound {
                name: host.to_owned(),
            })
        })
    }

    fn lookup_txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        let found = self.txt.lock().unwrap().get(name).cloned();
        Box::pin(async move {
            found.ok_or_else(|| DnsError::NotFound {
                name: name.to_owned(),
            })
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_on_the_bundled_pds() {
    tokio::time::timeout(Duration::from_secs(180), run())
        .await
        .expect("the scenario finishes within 3 minutes");
}

/// The hidden CSRF field of a form page.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    let end = html[start..].find('"').expect("closing quote");
    html[start..start + end].to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params("http://x.invalid/", pairs).unwrap();
    url.query().unwrap_or_default().to_owned()
}

async fn run() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("oauth_token_key");
    std::fs::write(&key_file, "3c".repeat(32)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let session_db = dir.path().join("sessions.sqlite");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut oauth = OAuthServiceConfig::new(
        &base,
        atelier_appview::publish::default_scope(),
        session_db.clone(),
        "k1",
        key_file.clone(),
    );
    oauth.plc_url = sandbox.plc_url().to_owned();
    oauth.allow_loopback = true;
    oauth.bundled_pds = Some(sandbox.pds_url().to_owned());
    oauth.handle_domain = Some("localhost".to_owned());
    let dns = Arc::new(TestDns::default());
    oauth.dns = Some(dns.clone());
    let mut config =
        AppViewConfig::new(StoreLocation::Sqlite(dir.path().join("index.sqlite")), None);
    config.oauth = Some(oauth);
    config.publish = Some(PublishConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let appview = tokio::spawn(service::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The sign-up page names the handle domain of the bundled PDS.
    let mut jar = Jar::default();
    let response = http.get(format!("{base}/signup")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    jar.absorb(&response);
    let page = response.text().await.unwrap();
    assert!(page.contains("name.test"), "{page}");
    let csrf = csrf_field(&page);
    let post = |path: &str, body: String, jar: &Jar| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", &base)
            .header("cookie", jar.header())
            .body(body)
            .send()
    };

    // Refused in plain words: a short password.
    let response = post(
        "/signup",
        form(&[
            ("csrf", &csrf),
            ("name", "fern"),
            ("email", "fern@example.com"),
            ("password", "short"),
        ]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("at least 8 characters")
    );

    // Made and signed in.
    let response = post(
        "/signup",
        form(&[
            ("csrf", &csrf),
            ("name", "fern"),
            ("email", "fern@example.com"),
            ("password", PASSWORD),
        ]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    jar.absorb(&response);
    let session_cookie = jar.get("atelier_session").expect("a session").to_owned();
    let account = http
        .get(format!("{base}/account"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let did = {
        let start = account.find("did:plc:").expect("the DID on the page");
        account[start..start + 32].to_owned()
    };

    // Handle linking: fern.localhost, answered at the well-known path for that host.
    let follow = |response: reqwest::Response, jar: Jar| {
        let http = http.clone();
        let base = base.clone();
        async move {
            assert_eq!(response.status(), 303);
            let to = response.headers()["location"].to_str().unwrap().to_owned();
            http.get(format!("{base}{to}"))
                .header("cookie", jar.header())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let account_csrf = csrf_field(&account);
    let response = post(
        "/account/handle",
        form(&[("csrf", &account_csrf), ("name", "fern")]),
        &jar,
    )
    .await
    .unwrap();
    let page = follow(response, jar.clone()).await;
    assert!(
        page.contains("fern.localhost now points at your account"),
        "{page}"
    );
    let well_known = |host: &str| {
        http.get(format!("{base}/.well-known/atproto-did"))
            .header("host", host)
            .send()
    };
    let response = well_known("fern.localhost").await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), did);
    assert_eq!(well_known("nobody.localhost").await.unwrap().status(), 404);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("atelier_appview_accounts_linked 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("atelier_appview_accounts_signed_in 1"),
        "{metrics}"
    );
    // Their own domain: not yet, then the TXT record is added, then it checks out.
    let check = |jar: Jar| {
        let body = form(&[("csrf", &account_csrf), ("handle", "fern.example")]);
        let post = post("/account/handle/check", body, &jar);
        async move { follow(post.await.unwrap(), jar).await }
    };
    let page = check(jar.clone()).await;
    assert!(page.contains("does not point at an account yet"), "{page}");
    assert!(page.contains(&format!("did={did}")), "{page}");
    dns.txt
        .lock()
        .unwrap()
        .insert("_atproto.fern.example".into(), vec![format!("did={did}")]);
    let page = check(jar.clone()).await;
    assert!(
        page.contains("fern.example points at your account (DNS)"),
        "{page}"
    );
    // The PDS checks the handle itself (through the real DNS, where fern.example does not
    // point here): refused, in words.
    let response = post(
        "/account/handle/use",
        form(&[("csrf", &account_csrf), ("handle", "fern.example")]),
        &jar,
    )
    .await
    .unwrap();
    let page = follow(response, jar.clone()).await;
    assert!(
        page.contains("Your server did not accept fern.example"),
        "{page}"
    );

    // The name is now taken.
    let response = post(
        "/signup",
        form(&[
            ("csrf", &csrf),
            ("name", "fern"),
            ("email", "fern2@example.com"),
            ("password", PASSWORD),
        ]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 400);
    let page = response.text().await.unwrap();
    assert!(page.contains("is taken"), "{page}");

    // Publishing works as for an OAuth session.
    let publish = |text: &str, jar: &Jar| {
        http.post(format!("{base}/publish/record"))
            .header("cookie", jar.header())
            .header("origin", &base)
            .json(&json!({"collection": "computer.aesthetic.mood", "record": {
                "mood": text, "when": "2026-12-06T12:00:00.000Z", "ref": "6710f0c2a3b4c5d6e7f80912"
            }}))
            .send()
    };
    let response = publish("made here", &jar).await.unwrap();
    assert_eq!(response.status(), 200);
    let listed = |did: String| {
        let http = http.clone();
        let url = format!(
            "{}/xrpc/com.atproto.repo.listRecords?repo={did}&collection=computer.aesthetic.mood",
            sandbox.pds_url()
        );
        async move {
            let out: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            out["records"].as_array().unwrap().len()
        }
    };
    assert_eq!(listed(did.clone()).await, 1);

    // An expired access token is renewed; the store holds nothing in clear.
    let key = SessionKeys::read_key_file(&key_file).unwrap();
    let store = SessionStore::open(&session_db, SessionKeys::new("k1", &key).unwrap())
        .await
        .unwrap();
    let mut session = store.load(&session_cookie).await.unwrap();
    assert!(session.is_custodial());
    session.expires_at = 0;
    store.save(&session_cookie, &session).await.unwrap();
    let response = publish("after a refresh", &jar).await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(listed(did.clone()).await, 2);
    // Only a refresh sets the expiry again (from the new access token's `exp`).
    let renewed = store.load(&session_cookie).await.unwrap();
    assert!(renewed.expires_at > 0, "the session was refreshed");
    let mut raw = std::fs::read(&session_db).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("sessions.sqlite-wal")) {
        raw.extend(wal);
    }
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(PASSWORD), "the password is not stored");
    assert!(!contains(renewed.access_token()), "tokens are sealed");
    store.close().await;

    // Sign out: the session ends at the PDS too.
    let account_page = http
        .get(format!("{base}/account"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = post(
        "/logout",
        form(&[("csrf", &csrf_field(&account_page))]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303);
    jar.absorb(&response);
    let response = publish("signed out", &jar).await.unwrap();
    assert_eq!(response.status(), 401);

    // A wrong password, then the right one.
    let login = http.get(format!("{base}/login")).send().await.unwrap();
    jar.absorb(&login);
    let page = login.text().await.unwrap();
    assert!(page.contains("Account made on this server"), "{page}");
    let csrf = csrf_field(&page);
    let response = post(
        "/login",
        form(&[
            ("csrf", &csrf),
            ("handle", "fern.test"),
            ("password", "nope nope nope"),
        ]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Wrong handle or password")
    );
    let response = post(
        "/login",
        form(&[
            ("csrf", &csrf),
            ("handle", "fern.test"),
            ("password", PASSWORD),
        ]),
        &jar,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303);
    jar.absorb(&response);
    let response = publish("back", &jar).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(listed(did).await, 3);

    let _ = stop.send(());
    appview.await.unwrap().expect("the AppView stops cleanly");
    sandbox.shutdown().await;
}
