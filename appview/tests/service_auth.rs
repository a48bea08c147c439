//! Service auth end to end: tokens minted by the real reference PDS
//! (`com.atproto.server.getServiceAuth`) verified against the account's DID document on the
//! real sandbox PLC, both on loopback.
//!
//! What this proves:
//! - a token the PDS mints for our audience and method verifies, and names the account;
//!   the `Authorization` header helper hands it over intact;
//! - the legacy bare-DID audience is accepted, another service's audience is not;
//! - the method binding holds both ways: a token for another method, or a method-less token
//!   where a method is required, is refused;
//! - any change to the signed bytes (claims or signature) is refused;
//! - the PDS's own access token is not accepted as service auth.

use std::time::{SystemTime, UNIX_EPOCH};

use atelier_appview::auth::{AuthError, ServiceAuth};
use atelier_appview::relay::sync::identity::{Resolver, ResolverConfig};
use atelier_appview::relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_sandbox::{Account, Sandbox};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Our service identity, as a DID document would advertise it.
const AUD: &str = "did:web:appview.atelier.test#atelier_appview";
/// The method the tokens are requested for.
const LXM: &str = "computer.aesthetic.feed.getAtmosphere";

/// Asks the sandbox PDS for a service token for `aud` (and `lxm`, if any) as `account`.
async fn service_token(
    _sandbox: &Sandbox,
    account: &Account,
    aud: &str,
    lxm: Option<&str>,
) -> String {
    account
        .service_auth(aud, lxm)
        .await
        .expect("getServiceAuth answers with a token")
}

/// A verifier for [`AUD`] that resolves DIDs on the sandbox PLC (loopback allowed).
fn verifier(sandbox: &Sandbox) -> ServiceAuth {
    let guard = GuardedClient::new(SsrfPolicy::sandbox()).expect("HTTP client");
    let resolver = Resolver::new(ResolverConfig::sandbox(sandbox.plc_url()), guard);
    ServiceAuth::new(resolver, AUD)
}

/// The token's parts, the middle one decoded.
fn split(token: &str) -> (&str, Value, &str) {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("a JWT has three parts: {token}");
    };
    let payload = URL_SAFE_NO_PAD.decode(payload).expect("payload base64url");
    let payload = serde_json::from_slice(&payload).expect("payload JSON");
    (header, payload, signature)
}

/// `token` with its payload replaced (the signature kept).
fn with_payload(token: &str, payload: &Value) -> String {
    let (header, _, signature) = split(token);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{header}.{payload}.{signature}")
}

/// `token` with one bit of its signature flipped.
fn with_flipped_signature_bit(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("three parts");
    let mut signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("signature base64url");
    assert_eq!(signature.len(), 64, "the PDS signs r||s");
    // The last byte of r: the signature stays well-formed and low-S, just wrong.
    signature[31] ^= 1;
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn refused(result: Result<impl std::fmt::Debug, AuthError>, name: &str, what: &str) -> AuthError {
    let error = result.expect_err(what);
    assert_eq!(error.error_name(), name, "{what}: {error}");
    error
}

fn unix_now() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(now.as_secs()).expect("seconds fit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_pds_tokens_verify_and_tampering_is_refused() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    let auth = verifier(&sandbox);

    // A token for us and the method called: the viewer is the account.
    let token = service_token(&sandbox, &alice, AUD, Some(LXM)).await;
    let (_, claims, _) = split(&token);
    assert_eq!(claims["iss"], alice.did.as_str(), "{claims}");
    let viewer = auth
        .verify(&token, Some(LXM))
        .await
        .expect("token accepted");
    assert_eq!(viewer.did, alice.did);
    assert_eq!(viewer.service, None);
    assert_eq!(viewer.lxm.as_deref(), Some(LXM));
    let now = unix_now();
    assert!(
        (now..=now + 61).contains(&viewer.exp),
        "the PDS grants a minute: exp {} at {now}",
        viewer.exp
    );
    assert!(viewer.jti.is_some(), "the PDS sets a nonce");

    // Through the Authorization header, and where no particular method is required.
    let header = format!("Bearer {token}");
    let from_header = ServiceAuth::bearer(&header).expect("Bearer header");
    assert_eq!(from_header, token);
    let viewer = auth.verify(from_header, None).await.expect("any method");
    assert_eq!(viewer.did, alice.did);

    // Bob's tokens name Bob.
    let bobs = service_token(&sandbox, &bob, AUD, Some(LXM)).await;
    let viewer = auth.verify(&bobs, Some(LXM)).await.expect("bob's token");
    assert_eq!(viewer.did, bob.did);

    // Audience: our bare DID is the legacy form and accepted; another service is not.
    let bare = AUD.split_once('#').expect("AUD has a fragment").0;
    let legacy = service_token(&sandbox, &alice, bare, Some(LXM)).await;
    auth.verify(&legacy, Some(LXM))
        .await
        .expect("bare-DID audience accepted");
    let elsewhere = service_token(
        &sandbox,
        &alice,
        "did:web:elsewhere.atelier.test#atelier_appview",
        Some(LXM),
    )
    .await;
    let error = refused(
        auth.verify(&elsewhere, Some(LXM)).await,
        "BadJwtAudience",
        "a token for another service",
    );
    assert!(
        error.to_string().contains("elsewhere.atelier.test"),
        "{error}"
    );

    // Method binding.
    let error = refused(
        auth.verify(&token, Some("computer.aesthetic.actor.getProfile"))
            .await,
        "BadJwtLexiconMethod",
        "a token for another method",
    );
    assert!(
        error.to_string().starts_with("bad jwt lexicon method"),
        "{error}"
    );
    let methodless = service_token(&sandbox, &alice, AUD, None).await;
    let error = refused(
        auth.verify(&methodless, Some(LXM)).await,
        "BadJwtLexiconMethod",
        "a method-less token where a method is required",
    );
    assert!(
        error.to_string().starts_with("missing jwt lexicon method"),
        "{error}"
    );
    auth.verify(&methodless, None)
        .await
        .expect("a method-less token where none is required");

    // Tampering: claims changed under the signature, the signature itself changed, and
    // Alice's signature passed off as Bob's.
    let mut longer = claims.clone();
    longer["exp"] = Value::from(now + 3600);
    refused(
        auth.verify(&with_payload(&token, &longer), Some(LXM)).await,
        "BadJwtSignature",
        "a token whose exp was extended",
    );
    refused(
        auth.verify(&with_flipped_signature_bit(&token), Some(LXM))
            .await,
        "BadJwtSignature",
        "a token with a flipped signature bit",
    );
    let mut as_bob = claims.clone();
    as_bob["iss"] = Value::from(bob.did.as_str());
    refused(
        auth.verify(&with_payload(&token, &as_bob), Some(LXM)).await,
        "BadJwtSignature",
        "alice's signature under bob's name",
    );

    // The PDS's session token is not service auth.
    refused(
        auth.verify(alice.access_jwt(), None).await,
        "BadJwtType",
        "the PDS access token",
    );

    sandbox.shutdown().await;
}
