//! Handle verification end to end: a real PLC + reference PDS on loopback, ingest following
//! the PDS, and the handle verifier ([`atelier_appview::handles`]) resolving through a DNS
//! table the test controls (the sandbox's `.test` handles resolve only there).
//!
//! What this proves:
//! - an account whose `_atproto.<handle>` TXT record names its DID becomes verified (the
//!   DID document claims the handle, and the handle resolves back);
//! - an account without one stays unverified, and is retried on a backoff, not in a loop;
//! - `com.atproto.identity.updateHandle` (the PDS emits `#identity`) resets the handle to
//!   the new one, unverified; once the new handle's TXT record exists it is verified;
//! - the verifier's counts are on [`IngestStats::handle_checks`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atelier_appview::handles::{self, HandleConfig};
use atelier_appview::ingest::{self, IngestConfig, IngestStats};
use atelier_appview::relay::sync::ssrf::{Dns, DnsFuture, StaticDns};
use atelier_appview::store::{ActorHandle, AnyStore, Store, StoreLocation};
use atelier_sandbox::{Account, Sandbox};
use serde_json::json;

/// The longest wait for any one step.
const STEP: Duration = Duration::from_secs(60);

/// A DNS table the test can add to while the verifier runs.
#[derive(Debug)]
struct TestDns(Mutex<StaticDns>);

impl TestDns {
    fn add_txt(&self, name: &str, value: &str) {
        let mut dns = self.0.lock().expect("dns lock");
        *dns = dns.clone().with_txt(name, value);
    }

    fn snapshot(&self) -> StaticDns {
        self.0.lock().expect("dns lock").clone()
    }
}

impl Dns for TestDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<SocketAddr>> {
        let dns = self.snapshot();
        Box::pin(async move { dns.lookup_ip(host).await })
    }

    fn lookup_txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        let dns = self.snapshot();
        Box::pin(async move { dns.lookup_txt(name).await })
    }
}

/// `did=<did>` at `_atproto.<handle>`.
fn txt(dns: &TestDns, handle: &str, did: &str) {
    dns.add_txt(&format!("_atproto.{handle}"), &format!("did={did}"));
}

/// Waits until `did`'s handle state satisfies `check`, or fails after [`STEP`].
async fn until(
    store: &AnyStore,
    did: &str,
    what: &str,
    check: impl Fn(&ActorHandle) -> bool,
) -> ActorHandle {
    let deadline = Instant::now() + STEP;
    loop {
        let state = store.actor_handle(did).await.expect("query");
        if let Some(state) = state.filter(|s| check(s)) {
            return state;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn update_handle(account: &Account, pds_url: &str, handle: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{pds_url}/xrpc/com.atproto.identity.updateHandle"))
        .bearer_auth(account.access_jwt())
        .json(&json!({ "handle": handle }))
        .send()
        .await
        .expect("PDS answers");
    let status = resp.status();
    assert!(
        status.is_success(),
        "updateHandle: HTTP {status}: {}",
        resp.text().await.unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_are_verified_both_ways_and_again_after_a_change() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the handle scenario finishes within 4 minutes");
}

async fn scenario() {
    let sandbox = Sandbox::start().await.expect("sandbox (PLC + PDS) starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        AnyStore::open(&StoreLocation::Sqlite(dir.path().join("index.sqlite")))
            .await
            .expect("store opens"),
    );
    let stats = Arc::new(IngestStats::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let mut config = IngestConfig::new(sandbox.subscribe_repos_url(None));
    config.plc_url = sandbox.plc_url().to_owned();
    config.allow_loopback = true;
    config.batch_wait = Duration::from_millis(20);
    let ingest_task = {
        let (store, stats, stop) = (Arc::clone(&store), Arc::clone(&stats), stopped());
        tokio::spawn(async move { ingest::run(&config, store, stats, stop).await })
    };

    let dns = Arc::new(TestDns(Mutex::new(
        StaticDns::new().with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST)),
    )));
    let resolver = handles::resolver(sandbox.plc_url(), true, dns.clone()).expect("resolver");
    let verifier = HandleConfig {
        interval: Duration::from_millis(200),
        retry_min: Duration::from_millis(300),
        retry_max: Duration::from_secs(1),
        timeout: Duration::from_secs(20),
        ..HandleConfig::default()
    };
    let verifier_task = tokio::spawn(handles::run(
        verifier,
        Arc::clone(&store),
        Arc::clone(&stats),
        resolver,
        stopped(),
    ));

    // Ingest follows live: the accounts' #identity events come after it connects.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    txt(&dns, &alice.handle, &alice.did);

    let a = until(&store, &alice.did, "alice verified", |s| s.verified).await;
    assert_eq!(a.handle.as_deref(), Some(alice.handle.as_str()));
    assert_eq!(a.failures, 0);
    assert!(a.checked_us.is_some() && a.due_us > a.checked_us.unwrap_or_default());

    // Bob's handle does not resolve: unverified, retried on a growing delay.
    let b = until(&store, &bob.did, "bob checked twice", |s| s.failures >= 2).await;
    assert!(!b.verified, "no TXT record, no well-known: unverified");
    assert_eq!(
        b.handle.as_deref(),
        Some(bob.handle.as_str()),
        "kept as announced"
    );
    let checks_before = stats.handle_checks.invalid.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let invalid = stats.handle_checks.invalid.load(Ordering::Relaxed) - checks_before;
    assert!(
        invalid <= 3,
        "a broken handle is retried on a backoff (1 s at most here), not in a loop: {invalid} checks in 1.5 s"
    );

    // A handle change resets the verification; the new handle verifies once it resolves.
    let renamed = "alice-renamed.test";
    update_handle(&alice, sandbox.pds_url(), renamed).await;
    let a = until(&store, &alice.did, "the new handle, checked", |s| {
        s.handle.as_deref() == Some(renamed) && s.failures >= 1
    })
    .await;
    assert!(!a.verified, "reset to unverified, and no TXT record yet");
    txt(&dns, renamed, &alice.did);
    let a = until(&store, &alice.did, "the new handle verified", |s| {
        s.verified
    })
    .await;
    assert_eq!((a.handle.as_deref(), a.failures), (Some(renamed), 0));
    // The profile view carries it.
    let profile = store
        .actor(&alice.did)
        .await
        .expect("query")
        .expect("alice");
    assert_eq!(profile.handle.as_deref(), Some(renamed));
    assert!(stats.handle_checks.verified.load(Ordering::Relaxed) >= 2);
    assert!(
        !store
            .actor_handle(&bob.did)
            .await
            .expect("query")
            .expect("bob")
            .verified
    );

    let _ = stop.send(true);
    tokio::time::timeout(STEP, verifier_task)
        .await
        .expect("verifier stops in time")
        .expect("verifier task");
    tokio::time::timeout(STEP, ingest_task)
        .await
        .expect("ingest stops in time")
        .expect("ingest task")
        .expect("ingest ends cleanly");
    sandbox.shutdown().await;
}
