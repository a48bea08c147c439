//! OAuth sign-in end to end against the real reference PDS (with a real PLC), on loopback.
//!
//! The browser part is played by plain HTTP requests to the PDS's sign-in page and its
//! UI API (`/@atproto/oauth-provider/~api/sign-in` and `/consent`), sending what a
//! same-origin page would: `sec-fetch-*` headers, `Origin`, a `Referer` naming the
//! authorize page with its `request_uri`, and the CSRF cookie echoed in `x-csrf-token`.
//! Cookies are carried by hand: the PDS marks its CSRF cookie `Secure`, which a cookie jar
//! would not send over plain http.
//!
//! What this proves:
//! - discovery from a handle (DNS TXT) to the PDS's authorization server (an unknown
//!   handle fails there), PAR with PKCE and DPoP (server nonce), the callback (a wrong
//!   `state` or `iss` refused; `sub` and the PDS checked) and the code exchange;
//! - a DPoP-bound `createRecord` of a `computer.aesthetic.mood` (with `ref`), read back;
//! - refresh after forced expiry, twice (so the rotated refresh token was kept);
//! - DPoP nonce rotation: stale nonces at the authorization server and the PDS are each
//!   answered with `use_dpop_nonce` and a fresh nonce, and the call succeeds;
//! - a write outside the granted scopes gives `ScopeMissing` naming the scope;
//! - the encrypted store: round trip, the secrets absent from the database file, a
//!   tampered blob and a wrong key refused, an old key still read after rotation;
//! - sign-out revokes: a copy of the session made before it no longer works.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use atelier_appview::oauth::{
    CallbackParams, ClientConfig, OAuthClient, OAuthError, SessionKeys, SessionStore, StoreError,
    XrpcRequest,
};
use atelier_appview::relay::sync::identity::{Resolver, ResolverConfig};
use atelier_appview::relay::sync::ssrf::{GuardedClient, SsrfPolicy, StaticDns};
use atelier_sandbox::Sandbox;
use serde_json::json;

const SCOPE: &str = "atproto repo:computer.aesthetic.mood";
const REDIRECT: &str = "http://127.0.0.1:8765/oauth/callback";
const REF: &str = "6710f0c2a3b4c5d6e7f80912";

/// Plays the user at the PDS's sign-in page (the harness's driver); returns where the
/// PDS sends the browser afterwards.
async fn sign_in_as_user(authorize_url: &str, handle: &str, password: &str, did: &str) -> String {
    atelier_sandbox::oauth::sign_in_at_authorize_page(authorize_url, handle, password, did)
        .await
        .expect("sign-in at the PDS")
}

fn key(byte: u8) -> Vec<u8> {
    vec![byte; 32]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_sign_in_publish_refresh_scope_store_sign_out() {
    tokio::time::timeout(Duration::from_secs(180), run())
        .await
        .expect("the OAuth scenario finishes within 3 minutes");
}

async fn run() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let account = sandbox.create_account("alice").await.expect("account");

    // The handle resolves through DNS TXT (a static table: no real DNS), `localhost`
    // (the PDS's hostname) to loopback.
    let dns = StaticDns::new()
        .with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST))
        .with_txt(
            &format!("_atproto.{}", account.handle),
            &format!("did={}", account.did),
        );
    let guard = GuardedClient::with_dns(SsrfPolicy::sandbox(), Arc::new(dns)).unwrap();
    let resolver = Resolver::new(ResolverConfig::sandbox(sandbox.plc_url()), guard.clone());
    let client =
        OAuthClient::new(ClientConfig::loopback(REDIRECT, SCOPE), resolver, guard).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("sessions.sqlite");
    let store = SessionStore::open(&db_path, SessionKeys::new("k1", &key(1)).unwrap())
        .await
        .unwrap();

    // An unknown handle fails at discovery, before anything is sent to a PDS.
    match client.authorize("nobody.test").await {
        Err(OAuthError::Identity(_)) => {}
        other => panic!("expected an identity error, got {other:?}"),
    }

    // Sign-in: PAR, the user at the PDS, the callback.
    let (authorize_url, pending) = client.authorize(&account.handle).await.unwrap();
    assert_eq!(pending.did, account.did);
    assert!(authorize_url.contains("request_uri="), "{authorize_url}");
    let debug = format!("{pending:?}");
    assert!(
        !debug.contains(&pending.state),
        "no secrets in Debug: {debug}"
    );
    let state = pending.state.clone();
    store.put_pending(&pending).await.unwrap();
    drop(pending);

    let redirect = sign_in_as_user(
        &authorize_url,
        &account.handle,
        &account.password,
        &account.did,
    )
    .await;
    let params = CallbackParams::from_query(&redirect);
    assert_eq!(params.state.as_deref(), Some(state.as_str()));

    // A callback with the wrong state is refused before anything is sent.
    let pending = store.take_pending(&state).await.unwrap();
    assert!(matches!(
        store.take_pending(&state).await,
        Err(StoreError::NotFound)
    ));
    let mut forged = params.clone();
    forged.state = Some("forged".into());
    let pending_copy = {
        // Put it back and take it again to get a second copy for the forged attempt.
        store.put_pending(&pending).await.unwrap();
        store.take_pending(&state).await.unwrap()
    };
    assert!(matches!(
        client.callback(pending_copy, &forged).await,
        Err(OAuthError::StateMismatch)
    ));
    // A callback claiming another issuer is refused too.
    store.put_pending(&pending).await.unwrap();
    let pending_copy = store.take_pending(&state).await.unwrap();
    let mut forged = params.clone();
    forged.iss = Some("http://evil.example".into());
    assert!(matches!(
        client.callback(pending_copy, &forged).await,
        Err(OAuthError::IssuerMismatch { .. })
    ));
    let mut session = client.callback(pending, &params).await.unwrap();
    assert_eq!(session.did, account.did);
    assert!(
        session.has_scope("repo:computer.aesthetic.mood"),
        "{}",
        session.scope
    );
    let debug = format!("{session:?}");
    assert!(!debug.contains(session.access_token()), "no token in Debug");

    // Publish a mood through the DPoP-bound session and read it back.
    let record = json!({"$type": "computer.aesthetic.mood", "mood": "signed in with OAuth",
                        "when": "2026-12-06T12:00:00.000Z", "ref": REF});
    let created = client
        .xrpc(
            &mut session,
            &XrpcRequest::procedure(
                "com.atproto.repo.createRecord",
                json!({"repo": account.did, "collection": "computer.aesthetic.mood",
                       "record": record}),
            ),
        )
        .await
        .unwrap();
    let uri = created["uri"].as_str().expect("uri");
    let rkey = uri.rsplit('/').next().unwrap();
    let got = client
        .xrpc(
            &mut session,
            &XrpcRequest::query(
                "com.atproto.repo.getRecord",
                &[
                    ("repo", &account.did),
                    ("collection", "computer.aesthetic.mood"),
                    ("rkey", rkey),
                ],
            ),
        )
        .await
        .unwrap();
    assert_eq!(got["value"]["mood"], "signed in with OAuth");
    assert_eq!(got["value"]["ref"], REF);
    assert_eq!(got["cid"], created["cid"]);

    // A collection outside the granted scopes: a clear error naming the scope.
    let painting = json!({"repo": account.did, "collection": "computer.aesthetic.painting",
        "record": {"$type": "computer.aesthetic.painting", "slug": "x", "code": "x",
                   "imageUrl": "https://aesthetic.computer/x.png",
                   "when": "2026-12-06T12:00:00.000Z", "ref": REF}});
    match client
        .xrpc(
            &mut session,
            &XrpcRequest::procedure("com.atproto.repo.createRecord", painting),
        )
        .await
    {
        Err(OAuthError::ScopeMissing { scope }) => {
            assert!(
                scope.starts_with("repo:computer.aesthetic.painting"),
                "{scope}"
            );
        }
        other => panic!("expected ScopeMissing, got {other:?}"),
    }

    // Writes need auth (the PDS serves getRecord without looking at the token, and sends
    // no DPoP nonce for it).
    let write = |text: &str| {
        XrpcRequest::procedure(
            "com.atproto.repo.createRecord",
            json!({"repo": account.did, "collection": "computer.aesthetic.mood",
                   "record": {"$type": "computer.aesthetic.mood", "mood": text,
                              "when": "2026-12-06T12:00:00.000Z", "ref": REF}}),
        )
    };
    // Refresh after forced expiry, twice: the second works only if the rotated refresh
    // token from the first was kept (refresh tokens are single-use).
    for _ in 0..2 {
        let before = session.access_token().to_owned();
        session.expires_at = 0;
        let out = client
            .xrpc(&mut session, &write("refreshed"))
            .await
            .unwrap();
        assert!(out["uri"].is_string(), "{out}");
        assert_ne!(session.access_token(), before, "a new access token");
        assert!(session.expires_at > 0);
    }

    // Nonce rotation mid-session: with stale nonces remembered, the refresh (at the
    // authorization server) and the call (at the PDS) are each retried once with the
    // server's fresh nonce.
    session.set_dpop_nonces(
        Some("stale-as-nonce".into()),
        Some("stale-pds-nonce".into()),
    );
    session.expires_at = 0;
    let out = client
        .xrpc(&mut session, &write("nonces rotated"))
        .await
        .unwrap();
    assert!(out["uri"].is_string(), "{out}");
    let (as_nonce, pds_nonce) = session.dpop_nonces();
    assert!(
        as_nonce.is_some_and(|n| n != "stale-as-nonce"),
        "{as_nonce:?}"
    );
    assert!(
        pds_nonce.is_some_and(|n| n != "stale-pds-nonce"),
        "{pds_nonce:?}"
    );

    // The store: round trip; no secret in the file; tampering and wrong keys refused.
    let cookie = store.create(&session).await.unwrap();
    let mut loaded = store.load(&cookie).await.unwrap();
    assert_eq!(loaded.did, session.did);
    assert_eq!(loaded.access_token(), session.access_token());
    assert_eq!(
        loaded.dpop_key().public_jwk(),
        session.dpop_key().public_jwk()
    );
    let out = client
        .xrpc(&mut loaded, &write("from the store"))
        .await
        .unwrap();
    assert!(
        out["uri"].is_string(),
        "a loaded session works at the PDS: {out}"
    );
    store.close().await;
    let file = std::fs::read(&db_path).unwrap();
    let wal = std::fs::read(dir.path().join("sessions.sqlite-wal")).unwrap_or_default();
    for bytes in [&file, &wal] {
        let needle = session.access_token().as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the access token is not stored in clear"
        );
        assert!(
            !bytes.windows(cookie.len()).any(|w| w == cookie.as_bytes()),
            "the cookie value is not stored either"
        );
    }

    // Wrong key (same id): refused.
    let wrong = SessionStore::open(&db_path, SessionKeys::new("k1", &key(2)).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        wrong.load(&cookie).await,
        Err(StoreError::Decrypt)
    ));
    wrong.close().await;

    // Rotation: k2 current, k1 old: the old row reads; a save rewrites it under k2,
    // after which k2 alone reads it.
    let rotated = SessionStore::open(
        &db_path,
        SessionKeys::new("k2", &key(3))
            .unwrap()
            .with_old("k1", &key(1))
            .unwrap(),
    )
    .await
    .unwrap();
    let again = rotated.load(&cookie).await.unwrap();
    assert_eq!(again.access_token(), session.access_token());
    assert_eq!(rotated.reseal_all().await.unwrap(), 1);
    rotated.close().await;
    let only_new = SessionStore::open(&db_path, SessionKeys::new("k2", &key(3)).unwrap())
        .await
        .unwrap();
    assert_eq!(
        only_new.load(&cookie).await.unwrap().access_token(),
        session.access_token()
    );
    let only_old = SessionStore::open(&db_path, SessionKeys::new("k1", &key(1)).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        only_old.load(&cookie).await,
        Err(StoreError::UnknownKey { .. })
    ));
    only_old.close().await;

    // Tampering: one flipped byte in the sealed blob.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed FROM oauth_session WHERE kind = 'session'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let mut tampered = sealed.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    sqlx::query("UPDATE oauth_session SET sealed = ? WHERE kind = 'session'")
        .bind(&tampered)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        only_new.load(&cookie).await,
        Err(StoreError::Decrypt)
    ));
    sqlx::query("UPDATE oauth_session SET sealed = ? WHERE kind = 'session'")
        .bind(&sealed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    // Sign-out: keep a copy that works for a write, revoke, and the copy no longer
    // works at the PDS.
    let mut copy = only_new.load(&cookie).await.unwrap();
    client
        .xrpc(&mut copy, &write("before sign-out"))
        .await
        .unwrap();
    client.revoke(&mut session).await.unwrap();
    only_new.revoke(&cookie).await.unwrap();
    assert!(matches!(
        only_new.load(&cookie).await,
        Err(StoreError::Revoked)
    ));
    match client.xrpc(&mut copy, &write("after sign-out")).await {
        Err(OAuthError::SessionEnded { .. }) => {}
        other => panic!("a revoked session must not work, got {other:?}"),
    }
    assert_eq!(only_new.cleanup().await.unwrap(), 1);
    assert!(matches!(
        only_new.load(&cookie).await,
        Err(StoreError::NotFound)
    ));
    only_new.close().await;

    sandbox.shutdown().await;
}
