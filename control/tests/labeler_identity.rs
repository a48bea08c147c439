//! The labeler's identity against the real harness PLC and PDS: an account on the PDS gets
//! the `#atproto_label` key and the `#atproto_labeler` service added to its DID document by
//! a PLC update signed with the PDS's rotation key; the DID document resolves with both;
//! a second run changes nothing; a key that is not a rotation key is refused by name; the
//! account still writes records afterwards (its repo signing key untouched), and the
//! declaration record is readable from its repository.

use atelier_control::labeler::SigningKey;
use atelier_control::labeler::identity::{
    AC_LABEL_VALUES, DECLARATION, IdentityError, ensure_labeler_service, publish_declaration,
    sign_in_or_create,
};
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::keys::PublicKey;
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_sandbox::Sandbox;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_becomes_a_labeler() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let http = reqwest::Client::new();
    let account = sandbox.create_account("labeler").await.expect("account");
    // Signing in to an existing account, and creating one that does not exist yet.
    let session = sign_in_or_create(
        &http,
        sandbox.pds_url(),
        &account.handle,
        "l@example.com",
        &account.password,
    )
    .await
    .expect("signs in");
    assert_eq!(session.did, account.did);
    let fresh = sign_in_or_create(
        &http,
        sandbox.pds_url(),
        "moderation.test",
        "m@example.com",
        "a-long-password-1",
    )
    .await
    .expect("creates");
    assert!(fresh.did.starts_with("did:plc:"));
    let again = sign_in_or_create(
        &http,
        sandbox.pds_url(),
        "moderation.test",
        "m@example.com",
        "a-long-password-1",
    )
    .await
    .expect("signs in to the new account");
    assert_eq!(again.did, fresh.did);
    assert!(!format!("{again:?}").contains(&again.access_jwt));
    let rotation = SigningKey::from_hex(sandbox.plc_rotation_key_hex()).expect("rotation key");
    let label_key = SigningKey::generate();
    let endpoint = "http://127.0.0.1:2585";

    let changed = ensure_labeler_service(
        &http,
        sandbox.plc_url(),
        &account.did,
        &rotation,
        &label_key.did_key(),
        endpoint,
    )
    .await
    .expect("the PLC accepts the update");
    assert!(changed);

    let resolver = Resolver::new(
        ResolverConfig::sandbox(sandbox.plc_url()),
        GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client"),
    );
    let doc = resolver.resolve_did(&account.did).await.expect("resolves");
    assert_eq!(doc.labeler_endpoint(), Some(endpoint));
    let key_ref = doc.label_key().expect("#atproto_label listed");
    let key = PublicKey::from_verification_method(&key_ref.key_type, &key_ref.multibase)
        .expect("a usable key");
    assert_eq!(&key, label_key.public_key());
    assert!(doc.signing_key().is_some(), "the repo key stays");

    // Again: nothing to change.
    let changed = ensure_labeler_service(
        &http,
        sandbox.plc_url(),
        &account.did,
        &rotation,
        &label_key.did_key(),
        endpoint,
    )
    .await
    .expect("idempotent");
    assert!(!changed);

    // A key that is not a rotation key of the DID.
    let stranger = SigningKey::generate();
    let err = ensure_labeler_service(
        &http,
        sandbox.plc_url(),
        &account.did,
        &stranger,
        &label_key.did_key(),
        "http://127.0.0.1:1",
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, IdentityError::NotRotationKey { .. }), "{err}");

    // The repository still takes writes, and the declaration is in it.
    publish_declaration(
        &http,
        sandbox.pds_url(),
        account.access_jwt(),
        &account.did,
        AC_LABEL_VALUES,
        "2026-12-06T12:00:00.000Z",
    )
    .await
    .expect("declaration written");
    let record = account
        .get_record(DECLARATION, "self")
        .await
        .expect("read back");
    let values = &record["value"]["policies"]["labelValues"];
    assert!(
        values
            .as_array()
            .is_some_and(|v| v.contains(&json!("offensive-text"))),
        "{record}"
    );
    sandbox.shutdown().await;
}
