//! The sandbox's own guarantees: a missing runtime is a clear error (never a skip), a
//! persistent data directory survives a restart (PLC operation log and PDS database), and
//! dropping the sandbox stops its processes.

use atelier_sandbox::{Runtime, Sandbox, SandboxError, SandboxOptions};
use serde_json::Value;

#[test]
fn a_missing_runtime_names_the_install_step() {
    let empty = tempfile::tempdir().expect("tempdir");
    let err = Runtime::at(empty.path()).expect_err("an empty directory is not a runtime");
    assert!(
        matches!(
            err,
            SandboxError::RuntimeMissing {
                what: "Node 22",
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("./install.sh"), "{message}");
    assert!(
        message.contains(&empty.path().display().to_string()),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_sandbox_keeps_identities_and_accounts_across_restarts() {
    let data = tempfile::tempdir().expect("tempdir");
    let options = SandboxOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };

    let first = Sandbox::start_with(options.clone())
        .await
        .expect("first start");
    let bob = first.create_account("bob").await.expect("account");
    let _pds_url = first.pds_url().to_owned();
    first.shutdown().await;

    // Same data directory, fresh ports: the PLC replays its log, the PDS reopens its database.
    let second = Sandbox::start_with(options).await.expect("second start");
    let doc: Value = reqwest::get(format!("{}/{}", second.plc_url(), bob.did))
        .await
        .expect("plc answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        doc["id"], bob.did,
        "the PLC kept bob's DID across the restart"
    );

    let session: Value = reqwest::Client::new()
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            second.pds_url()
        ))
        .json(&serde_json::json!({ "identifier": bob.handle, "password": bob.password }))
        .send()
        .await
        .expect("pds answers")
        .json()
        .await
        .expect("json");
    assert_eq!(
        session["did"], bob.did,
        "the PDS kept bob's account: {session}"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_sandbox_stops_its_services() {
    let sandbox = Sandbox::start().await.expect("start");
    let health = format!("{}/xrpc/_health", sandbox.pds_url());
    assert!(reqwest::get(&health).await.is_ok());
    drop(sandbox);
    assert!(
        reqwest::get(&health).await.is_err(),
        "the PDS is gone after drop"
    );
}
