//! [`SyncStream`] against the real sandbox: a local PLC directory and the reference PDS on
//! loopback, with full verification, keys resolved from the PLC through the SSRF guard, and
//! resync enabled.
//!
//! What this proves:
//! - the events of a new account (its `#identity`, `#account` and first commit) and AC
//!   record writes (create, update through `putRecord` on the same rkey, delete) arrive as
//!   fully verified commits whose ops carry the action, collection, rkey and CIDs the PDS
//!   answered, and whose record bytes decode to exactly what was written;
//! - a real key rotation: a PLC operation signed with the PDS's rotation key moves alice's
//!   `#atproto` key, the PDS is restarted with the new private key, and the stream (which
//!   reconnects on its own, from its cursor) verifies the next commit with the new key
//!   (a) with no `#identity` at all, through the refresh-once path, and (b) after a second
//!   rotation, through the `#identity` that `updateHandle` emits, which drops the cached
//!   key. The resolver's refresh interval is an hour, so (b) cannot lean on a refresh.
//! - the reference PDS's account-creation `#sync`, which repeats the genesis commit, is
//!   verified as a no-op (`SyncOutcome::Unchanged`), no resync is needed, nothing is
//!   rejected, and the stream's counters match what was delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use atelier_lexicons::data::{cid_for_dag_cbor, encode_dag_cbor, ipld_to_json, json_to_ipld};
use atelier_relay::sync::client::{ClientConfig, ClientEvent};
use atelier_relay::sync::frame::{self, Action, Frame};
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::keys::PublicKey;
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_relay::sync::stream::{CommitEvent, OpEvent, SyncConfig, SyncEvent, SyncStream};
use atelier_relay::sync::verify::{self, SyncOutcome, SyncStatus, VerifyMode};
use atelier_sandbox::{Account, CreatedRecord, Sandbox, SandboxOptions};
use secp256k1::{Secp256k1, SecretKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long any one step (an event to arrive, a sandbox to start) may take.
const STEP: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Reading the stream
// ---------------------------------------------------------------------------------------------

/// The stream under test, with every event it delivered (for failure messages).
struct Events {
    stream: SyncStream,
    seen: Vec<String>,
}

impl Events {
    /// Reads events until `pick` accepts one; returns it and the events skipped on the way.
    /// A rejection or failed resync that `pick` does not accept fails the test.
    async fn until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&SyncEvent) -> Option<T>,
    ) -> (T, Vec<SyncEvent>) {
        let mut skipped = Vec::new();
        let read = async {
            loop {
                let event = self.stream.recv().await.expect("the stream keeps running");
                self.seen.push(describe(&event));
                if let Some(found) = pick(&event) {
                    return found;
                }
                if let SyncEvent::Rejected { .. } | SyncEvent::ResyncFailed { .. } = event {
                    panic!(
                        "unexpected {event:?}; events so far:\n{}",
                        self.seen.join("\n")
                    );
                }
                skipped.push(event);
            }
        };
        match tokio::time::timeout(STEP, read).await {
            Ok(found) => (found, skipped),
            Err(_) => panic!(
                "no {what} within {STEP:?}; events so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// The next commit of `did`.
    async fn commit(&mut self, did: &str) -> (CommitEvent, Vec<SyncEvent>) {
        self.until(&format!("commit of {did}"), |e| match e {
            SyncEvent::Commit(c) if c.did == did => Some(c.clone()),
            _ => None,
        })
        .await
    }

    /// The next (re)connection to the upstream; returns the cursor it asked for.
    async fn connected(&mut self) -> Option<i64> {
        self.until("connection", |e| match e {
            SyncEvent::Upstream(ClientEvent::Connected { cursor }) => Some(*cursor),
            _ => None,
        })
        .await
        .0
    }
}

fn describe(event: &SyncEvent) -> String {
    match event {
        SyncEvent::Commit(c) => format!(
            "commit seq {} {} rev {} ops {:?} status {:?} verified {}",
            c.seq,
            c.did,
            c.rev,
            c.ops
                .iter()
                .map(|op| format!("{} {}/{}", op.action.as_str(), op.collection, op.rkey))
                .collect::<Vec<_>>(),
            c.status,
            c.fully_verified
        ),
        SyncEvent::Sync {
            seq, did, outcome, ..
        } => format!("sync seq {seq} {did} {outcome:?}"),
        SyncEvent::Identity {
            seq, did, handle, ..
        } => format!("identity seq {seq} {did} {handle:?}"),
        SyncEvent::Account {
            seq,
            did,
            active,
            status,
            ..
        } => format!("account seq {seq} {did} active {active} {status:?}"),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Checking commits
// ---------------------------------------------------------------------------------------------

/// The rkey of an `at://did/collection/rkey` URI.
fn rkey_of(created: &CreatedRecord) -> String {
    created.uri.rsplit('/').next().expect("rkey").to_owned()
}

/// A commit of one op, fully verified and in sync; returns the op.
fn single_op(commit: &CommitEvent, did: &str) -> OpEvent {
    assert_eq!(commit.did, did);
    assert!(
        commit.fully_verified,
        "seq {} not fully verified",
        commit.seq
    );
    assert_eq!(commit.status, SyncStatus::Synchronized);
    assert_eq!(commit.ops.len(), 1, "{:?}", commit.ops);
    commit.ops[0].clone()
}

/// Checks a create or update op against what the PDS answered and what was written.
fn check_write(
    op: &OpEvent,
    action: Action,
    collection: &str,
    created: &CreatedRecord,
    record: &Value,
) {
    assert_eq!(op.action, action);
    assert_eq!(op.collection, collection);
    assert_eq!(op.rkey, rkey_of(created));
    assert_eq!(
        op.cid.as_deref(),
        Some(created.cid.as_str()),
        "the CID the PDS answered"
    );
    let bytes = op.record.as_ref().expect("record bytes");
    let ipld: ipld_core::ipld::Ipld =
        serde_ipld_dagcbor::from_slice(bytes).expect("the record is DAG-CBOR");
    assert_eq!(
        &ipld_to_json(&ipld),
        record,
        "the record decodes to what was written"
    );
    assert_eq!(
        cid_for_dag_cbor(bytes).to_string(),
        created.cid,
        "the bytes hash to the CID"
    );
}

/// Checks the commit block's signature against `key` independently of the verifier.
fn signed_by(commit: &CommitEvent, key: &PublicKey) -> bool {
    let Frame::Commit(decoded) = frame::decode(&commit.frame).expect("frame decodes") else {
        panic!("a commit frame")
    };
    let car = decoded.car().expect("CAR");
    let block = car.get(&decoded.commit).expect("commit block");
    let ipld: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(block).expect("commit");
    let ipld_core::ipld::Ipld::Map(fields) = ipld else {
        panic!("commit is a map")
    };
    let Some(ipld_core::ipld::Ipld::Bytes(sig)) = fields.get("sig") else {
        panic!("commit has a sig")
    };
    let unsigned = verify::unsigned_commit_bytes(block).expect("unsigned bytes");
    key.verify_bytes(&unsigned, sig).is_ok()
}

/// The raw frame the PDS serves right after `seq` (a bare WebSocket with `cursor=seq`).
async fn frame_after(sandbox: &Sandbox, seq: i64) -> Vec<u8> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = sandbox.subscribe_repos_url(Some(seq));
    let read = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("subscribeRepos connects");
        loop {
            match socket.next().await.expect("a frame").expect("socket") {
                Message::Binary(bytes) => return bytes.to_vec(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("a frame in time")
}

// ---------------------------------------------------------------------------------------------
// Keys and PLC operations
// ---------------------------------------------------------------------------------------------

fn random_secret_key() -> SecretKey {
    loop {
        if let Ok(key) = SecretKey::from_byte_array(rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}

fn public_of(secret: &SecretKey) -> PublicKey {
    PublicKey::K256(secp256k1::PublicKey::from_secret_key(
        &Secp256k1::new(),
        secret,
    ))
}

/// Where the reference PDS keeps an account's signing key: 32 raw private-key bytes at
/// `{data}/pds/actors/{sha256hex(did)[0..2]}/{did}/key`.
fn actor_key_path(data_dir: &std::path::Path, did: &str) -> PathBuf {
    let hash = data_encoding::HEXLOWER.encode(&Sha256::digest(did.as_bytes()));
    data_dir
        .join("pds")
        .join("actors")
        .join(&hash[..2])
        .join(did)
        .join("key")
}

fn read_actor_key(path: &std::path::Path) -> SecretKey {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bytes: [u8; 32] = bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("{} holds {} bytes, not 32", path.display(), b.len()));
    SecretKey::from_byte_array(bytes).expect("a valid secp256k1 key")
}

/// The PLC rotation key the sandbox PDS signs operations with.
fn plc_rotation_key(data_dir: &std::path::Path) -> SecretKey {
    let path = data_dir.join("secrets").join("plc_rotation_key_k256_hex");
    let hex = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .expect("hex");
    SecretKey::from_byte_array(bytes.try_into().expect("32 bytes")).expect("a valid key")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(resp.status().is_success(), "{url}: HTTP {}", resp.status());
    resp.json().await.unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Moves `did`'s `#atproto` signing key to `new_key` with a PLC operation signed by
/// `rotation` (which must be one of the DID's rotation keys).
async fn rotate_signing_key(
    http: &reqwest::Client,
    plc: &str,
    did: &str,
    rotation: &SecretKey,
    new_key: &PublicKey,
) {
    let last = get_json(http, &format!("{plc}/{did}/log/last")).await;
    let audit = get_json(http, &format!("{plc}/{did}/log/audit")).await;
    let entry = audit
        .as_array()
        .and_then(|a| a.last())
        .expect("an audit log entry");
    assert_eq!(
        entry["operation"], last,
        "the audit log ends with the last op"
    );
    let prev = entry["cid"].as_str().expect("cid").to_owned();
    // Our encoding is the PLC's: the last op's CID, recomputed, is the one it reports.
    let last_bytes = encode_dag_cbor(&json_to_ipld(&last).expect("op as IPLD")).expect("encodes");
    assert_eq!(
        cid_for_dag_cbor(&last_bytes).to_string(),
        prev,
        "DAG-CBOR of the last op"
    );

    let rotation_did_key = public_of(rotation).to_did_key();
    assert!(
        last["rotationKeys"]
            .as_array()
            .expect("rotationKeys")
            .iter()
            .any(|k| k == &json!(rotation_did_key)),
        "the PDS's rotation key {rotation_did_key} may rotate {did}: {last}"
    );
    let mut op = last.clone();
    let fields = op.as_object_mut().expect("op is an object");
    fields.remove("sig");
    fields.insert("prev".into(), json!(prev));
    op["verificationMethods"]["atproto"] = json!(new_key.to_did_key());
    assert_eq!(op["type"], "plc_operation");

    // Sign SHA-256 of the canonical DAG-CBOR of the op without `sig` (compact, low-S).
    let unsigned = encode_dag_cbor(&json_to_ipld(&op).expect("op as IPLD")).expect("encodes");
    let digest: [u8; 32] = Sha256::digest(&unsigned).into();
    let sig = Secp256k1::new()
        .sign_ecdsa(secp256k1::Message::from_digest(digest), rotation)
        .serialize_compact();
    public_of(rotation)
        .verify(&unsigned, &sig)
        .expect("a low-S signature that verifies");
    op["sig"] = json!(data_encoding::BASE64URL_NOPAD.encode(&sig));

    let url = format!("{plc}/{did}");
    let resp = http.post(&url).json(&op).send().await.expect("PLC answers");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "PLC refused the operation: HTTP {status}: {body}\n{op}"
    );

    let data = get_json(http, &format!("{plc}/{did}/data")).await;
    assert_eq!(
        data["verificationMethods"]["atproto"],
        json!(new_key.to_did_key())
    );
}

/// Stops the sandbox, installs `key` as `did`'s PDS signing key, and starts it again on the
/// same data directory (and so the same ports).
async fn restart_with_key(
    sandbox: Sandbox,
    options: &SandboxOptions,
    did: &str,
    key: &SecretKey,
) -> Sandbox {
    let path = actor_key_path(sandbox.data_dir(), did);
    sandbox.shutdown().await;
    std::fs::write(&path, key.secret_bytes()).expect("write the actor key");
    tokio::time::timeout(STEP, Sandbox::start_with(options.clone()))
        .await
        .expect("sandbox restarts in time")
        .expect("sandbox restarts")
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_stream_from_the_reference_pds_through_writes_and_key_rotations() {
    let data = tempfile::tempdir().expect("tempdir");
    let options = SandboxOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    };
    let sandbox = tokio::time::timeout(STEP, Sandbox::start_with(options.clone()))
        .await
        .expect("sandbox starts in time")
        .expect("sandbox starts (PLC + PDS)");
    let plc_url = sandbox.plc_url().to_owned();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");

    // The stream: full verification, keys from the sandbox PLC through the SSRF guard,
    // resync through the guard too. One forced key refresh per DID per hour, so the second
    // rotation below can only be picked up through #identity.
    let mut client = ClientConfig::new(&sandbox.subscribe_repos_url(None)).expect("URL");
    client.backoff_base = Duration::from_millis(50);
    client.backoff_max = Duration::from_millis(500);
    let resolver_config = ResolverConfig {
        refresh_interval: Duration::from_secs(3600),
        ..ResolverConfig::sandbox(&plc_url)
    };
    let resolver = Resolver::new(
        resolver_config,
        GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client"),
    );
    let repo_http = GuardedClient::new(SsrfPolicy::sandbox()).expect("guarded client");
    let config = SyncConfig::new(client, resolver.clone(), Some(repo_http));
    assert_eq!(config.mode, VerifyMode::Full);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stream = SyncStream::start(config, async move {
        let _ = stopped.await;
    })
    .expect("stream starts");
    let stats = stream.stats();
    let mut events = Events {
        stream,
        seen: Vec::new(),
    };
    assert_eq!(events.connected().await, None, "live, no cursor");

    // A new account. The reference PDS sequences its creation atomically as #identity,
    // #account, #commit (an empty repository) and a #sync repeating that commit.
    let alice: Account = sandbox.create_account("alice").await.expect("account");
    let did = alice.did.clone();
    let (mut genesis, mut identity, mut account) = (None, None, None);
    let mut creation_sync: Option<Result<SyncOutcome, &'static str>> = None;
    events
        .until("alice's creation events", |e| {
            match e {
                SyncEvent::Commit(c) if c.did == did => genesis = Some(c.clone()),
                SyncEvent::Identity { did: d, handle, .. } if *d == did => {
                    identity = Some(handle.clone())
                }
                SyncEvent::Account { did: d, active, .. } if *d == did => account = Some(*active),
                SyncEvent::Sync {
                    did: d, outcome, ..
                } if *d == did => creation_sync = Some(Ok(*outcome)),
                // See below: today's verifier refuses the repeated rev.
                SyncEvent::Rejected {
                    did: Some(d),
                    reason: "stale_rev",
                    ..
                } if *d == did && genesis.is_some() => creation_sync = Some(Err("stale_rev")),
                _ => {}
            }
            (genesis.is_some()
                && identity.is_some()
                && account.is_some()
                && creation_sync.is_some())
            .then_some(())
        })
        .await;
    let genesis = genesis.expect("genesis commit");
    assert!(genesis.fully_verified);
    assert_eq!(genesis.status, SyncStatus::Synchronized);
    assert!(genesis.ops.is_empty(), "{:?}", genesis.ops);
    assert_eq!(identity, Some(Some("alice.test".to_owned())));
    assert_eq!(account, Some(true));
    // The #sync right after the genesis commit names the same commit and rev.
    let sync_frame = frame_after(&sandbox, genesis.seq).await;
    let Ok(Frame::Sync(sync)) = frame::decode(&sync_frame) else {
        panic!("the frame after the genesis commit is a #sync")
    };
    assert_eq!((sync.did, sync.rev), (did.as_str(), genesis.rev.as_str()));
    // The protocol's rule for #sync is "unchanged data: no-op"; a #sync repeating the
    // commit already held must not be counted as a stale rev.
    let creation_sync = creation_sync.expect("creation #sync");
    assert_eq!(creation_sync, Ok(SyncOutcome::Unchanged));

    // Create, update, delete.
    const PAINTING: &str = "computer.aesthetic.painting";
    const MOOD: &str = "computer.aesthetic.mood";
    let painting = json!({
        "$type": PAINTING,
        "slug": "2026.11.28.12.00.00.000",
        "code": "zq1",
        "imageUrl": "https://aesthetic.computer/media/paintings/zq1",
        "when": "2026-11-28T12:00:00.000Z",
        "ref": "65a1b2c3d4e5f60718293a4b",
    });
    let created = alice
        .create_record(PAINTING, &painting)
        .await
        .expect("create painting");
    let (commit, _) = events.commit(&did).await;
    let op = single_op(&commit, &did);
    check_write(&op, Action::Create, PAINTING, &created, &painting);
    assert_eq!(op.prev, None);
    assert_eq!(commit.since.as_deref(), Some(genesis.rev.as_str()));

    let mood = json!({
        "$type": MOOD,
        "mood": "calm, with a chance of pixels",
        "when": "2026-11-28T12:01:00.000Z",
        "ref": "65a1b2c3d4e5f60718293a4c",
    });
    let mood_created = alice.create_record(MOOD, &mood).await.expect("create mood");
    let (commit, _) = events.commit(&did).await;
    check_write(
        &single_op(&commit, &did),
        Action::Create,
        MOOD,
        &mood_created,
        &mood,
    );

    let rkey = rkey_of(&created);
    let repainted = json!({
        "$type": PAINTING,
        "slug": "2026.11.28.12.00.00.000",
        "code": "zq1",
        "imageUrl": "https://aesthetic.computer/media/paintings/zq1-v2",
        "when": "2026-11-28T12:00:00.000Z",
        "ref": "65a1b2c3d4e5f60718293a4b",
    });
    let updated = alice
        .put_record(PAINTING, &rkey, &repainted)
        .await
        .expect("put painting");
    assert_eq!(rkey_of(&updated), rkey);
    assert_ne!(updated.cid, created.cid);
    let (commit, _) = events.commit(&did).await;
    let op = single_op(&commit, &did);
    check_write(&op, Action::Update, PAINTING, &updated, &repainted);
    assert_eq!(
        op.prev.as_deref(),
        Some(created.cid.as_str()),
        "update names the old CID"
    );

    alice
        .delete_record(MOOD, &rkey_of(&mood_created))
        .await
        .expect("delete mood");
    let (commit, _) = events.commit(&did).await;
    let op = single_op(&commit, &did);
    assert_eq!(op.action, Action::Delete);
    assert_eq!(
        (op.collection.as_str(), op.rkey.clone()),
        (MOOD, rkey_of(&mood_created))
    );
    assert_eq!(op.cid, None);
    assert_eq!(op.record, None);
    assert_eq!(op.prev.as_deref(), Some(mood_created.cid.as_str()));

    // The PDS's key file is the key the DID document names, and the stream has it cached.
    let key_path = actor_key_path(sandbox.data_dir(), &did);
    let original = read_actor_key(&key_path);
    let original_public = public_of(&original);
    let doc = get_json(&http, &format!("{plc_url}/{did}/data")).await;
    assert_eq!(
        doc["verificationMethods"]["atproto"],
        json!(original_public.to_did_key()),
        "{} holds alice's signing key",
        key_path.display()
    );
    assert!(signed_by(&commit, &original_public));
    let rotation = plc_rotation_key(sandbox.data_dir());

    // (a) Rotation without #identity: the PLC moves the key, the PDS restarts with it, and
    // the next commit fails against the cached key, is refreshed once, and verifies.
    let second = random_secret_key();
    let second_public = public_of(&second);
    rotate_signing_key(&http, &plc_url, &did, &rotation, &second_public).await;
    let fetches_before = resolver.stats().did_fetches;
    let sandbox = restart_with_key(sandbox, &options, &did, &second).await;
    let cursor = events.connected().await;
    assert_eq!(
        cursor,
        Some(commit.seq),
        "reconnected from the last seq delivered"
    );

    let after_rotation = json!({
        "$type": PAINTING,
        "slug": "2026.11.28.12.05.00.000",
        "code": "zq2",
        "imageUrl": "https://aesthetic.computer/media/paintings/zq2",
        "when": "2026-11-28T12:05:00.000Z",
        "ref": "65a1b2c3d4e5f60718293a4d",
    });
    let created = alice
        .create_record(PAINTING, &after_rotation)
        .await
        .expect("create after restart (the session survives)");
    let (commit, skipped) = events.commit(&did).await;
    check_write(
        &single_op(&commit, &did),
        Action::Create,
        PAINTING,
        &created,
        &after_rotation,
    );
    assert!(
        !skipped
            .iter()
            .any(|e| matches!(e, SyncEvent::Identity { .. })),
        "no #identity announced the rotation: {:?}",
        skipped.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(
        signed_by(&commit, &second_public),
        "signed with the new key"
    );
    assert!(
        !signed_by(&commit, &original_public),
        "not with the old one"
    );
    assert_eq!(
        resolver.stats().did_fetches,
        fetches_before + 1,
        "one refresh fetched the new document"
    );
    assert_eq!(resolver.stats().refreshes_rate_limited, 0);

    // (b) Rotation announced by #identity: rotate again, restart, change the handle (the PDS
    // emits #identity), and the next commit verifies with the newest key. A second forced
    // refresh within the hour would be rate limited, so only #identity can explain it.
    let third = random_secret_key();
    let third_public = public_of(&third);
    rotate_signing_key(&http, &plc_url, &did, &rotation, &third_public).await;
    let sandbox = restart_with_key(sandbox, &options, &did, &third).await;
    let cursor = events.connected().await;
    assert_eq!(
        cursor,
        Some(commit.seq),
        "reconnected from the last seq delivered"
    );
    let fetches_before = resolver.stats().did_fetches;

    let new_handle = "alice-renamed.test";
    let resp = http
        .post(format!(
            "{}/xrpc/com.atproto.identity.updateHandle",
            sandbox.pds_url()
        ))
        .bearer_auth(alice.access_jwt())
        .json(&json!({ "handle": new_handle }))
        .send()
        .await
        .expect("PDS answers");
    let status = resp.status();
    assert!(
        status.is_success(),
        "updateHandle: HTTP {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    let (handle, _) = events
        .until("#identity after updateHandle", |e| match e {
            SyncEvent::Identity { did: d, handle, .. } if *d == did => Some(handle.clone()),
            _ => None,
        })
        .await;
    assert_eq!(handle.as_deref(), Some(new_handle));

    let mood = json!({
        "$type": MOOD,
        "mood": "renamed and rekeyed",
        "when": "2026-11-28T12:10:00.000Z",
        "ref": "65a1b2c3d4e5f60718293a4e",
    });
    let created = alice
        .create_record(MOOD, &mood)
        .await
        .expect("create after #identity");
    let (commit, _) = events.commit(&did).await;
    check_write(
        &single_op(&commit, &did),
        Action::Create,
        MOOD,
        &created,
        &mood,
    );
    assert!(
        signed_by(&commit, &third_public),
        "signed with the newest key"
    );
    assert!(!signed_by(&commit, &second_public));
    assert_eq!(
        resolver.stats().did_fetches,
        fetches_before + 1,
        "the document was fetched again once, after #identity dropped it"
    );
    assert_eq!(
        resolver.stats().refreshes_rate_limited,
        0,
        "no refresh was needed"
    );
    let doc = resolver.resolve_did(&did).await.expect("resolves");
    assert_eq!(
        doc.handle(),
        Some(new_handle),
        "the resolver sees the new handle"
    );

    // Counters: every frame the stream was handed became an event; nothing was rejected.
    let commits = events
        .seen
        .iter()
        .filter(|e| e.starts_with("commit "))
        .count() as u64;
    assert_eq!(stats.commits(), commits);
    assert_eq!(
        commits, 7,
        "genesis, 4 writes, 2 after rotations: {:#?}",
        events.seen
    );
    let frames = events
        .seen
        .iter()
        .filter(|e| {
            ["commit ", "sync ", "identity ", "account ", "Rejected "]
                .iter()
                .any(|p| e.starts_with(p))
        })
        .count() as u64;
    assert_eq!(stats.frames(), frames);
    assert_eq!(stats.rejected(), BTreeMap::new(), "nothing was rejected");
    assert_eq!(stats.resyncs(), 0, "the chain never broke");
    let kinds: BTreeSet<&str> = events
        .seen
        .iter()
        .filter_map(|e| e.split(' ').next())
        .collect();
    println!(
        "stream_pds: {} events of kinds {kinds:?}; stats {stats:?}",
        events.seen.len()
    );

    let _ = stop.send(());
    sandbox.shutdown().await;
}
