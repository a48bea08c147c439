//! Identity resolution against a real sandbox (local PLC + reference PDS on loopback) and
//! against loopback test servers, plus DID document fixtures in both shapes.
//!
//! Names are resolved through [`StaticDns`] only: nothing here queries real DNS, and only
//! loopback is ever connected to.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_relay::sync::identity::{
    DidDocument, DocumentError, HandleStatus, IdentityError, KeyRefresh, Resolver, ResolverConfig,
    SigningKeyRef, check_did, normalize_handle,
};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy, StaticDns};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// A loopback HTTP server with mutable routes and per-path request counts.

#[derive(Clone, Default)]
struct Routes {
    /// path -> (status, body)
    pages: Arc<Mutex<HashMap<String, (u16, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    delay: Arc<Mutex<Duration>>,
}

struct TestServer {
    addr: SocketAddr,
    routes: Routes,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Routes::default();
        let shared = routes.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let routes = shared.clone();
                tokio::spawn(async move {
                    let Some(path) = read_request_path(&mut stream).await else {
                        return;
                    };
                    *routes.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let delay = *routes.delay.lock().unwrap();
                    tokio::time::sleep(delay).await;
                    let (status, body) = routes
                        .pages
                        .lock()
                        .unwrap()
                        .get(&path)
                        .cloned()
                        .unwrap_or((404, "not found".into()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(body.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        TestServer { addr, routes }
    }

    fn serve(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes
            .pages
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.into()));
    }

    fn hits(&self, path: &str) -> usize {
        self.routes
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn set_delay(&self, delay: Duration) {
        *self.routes.delay.lock().unwrap() = delay;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }
}

async fn read_request_path(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() > 16 * 1024 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Some(text.lines().next()?.split(' ').nth(1)?.to_owned())
}

// ---------------------------------------------------------------------------------------
// Fixtures and helpers.

const KEY_A: &str = "zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj";
const KEY_B: &str = "zQ3shPZM5RifgX5uYc9U4y4GYMoHCvb88DzCGi8bQaubk1ZSR";
const DID_A: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const DID_B: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const DID_C: &str = "did:plc:cccccccccccccccccccccccc";

/// A current-shape (Multikey, absolute ids) document.
fn current_doc(did: &str, handle: &str, key: &str) -> String {
    json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [{
            "id": format!("{did}#atproto"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": key,
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "https://pds.example.com",
        }],
    })
    .to_string()
}

fn resolver_with(dns: StaticDns, config: ResolverConfig) -> Resolver {
    let policy = SsrfPolicy {
        timeout: Duration::from_secs(5),
        ..SsrfPolicy::sandbox()
    };
    let http = GuardedClient::with_dns(policy, Arc::new(dns)).unwrap();
    Resolver::new(config, http)
}

fn localhost_dns() -> StaticDns {
    StaticDns::new().with_ip("localhost", IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn reason<T: std::fmt::Debug>(result: Result<T, IdentityError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            e.reason()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The real sandbox: did:plc from the local PLC (legacy shape), handles via the PDS.

#[tokio::test]
async fn sandbox_plc_and_pds() {
    let sandbox = atelier_sandbox::Sandbox::start().await.unwrap();
    let alice = sandbox.create_account("alice").await.unwrap();
    let bob = sandbox.create_account("bob").await.unwrap();
    let pds_port = url::Url::parse(sandbox.pds_url()).unwrap().port().unwrap();
    let pds = SocketAddr::from((Ipv4Addr::LOCALHOST, pds_port));
    // alice.test: no TXT record, so the PDS's well-known file answers (Host: alice.test).
    // bob.test: a TXT record pointing at alice, which wins over the PDS's answer.
    let dns = StaticDns::new()
        .with_addr("alice.test", pds)
        .with_addr("bob.test", pds)
        .with_txt("_atproto.bob.test", &format!("did={}", alice.did));
    let resolver = resolver_with(dns, ResolverConfig::sandbox(sandbox.plc_url()));

    let doc = resolver.resolve_did(&alice.did).await.unwrap();
    assert_eq!(doc.id(), alice.did);
    assert_eq!(doc.handle(), Some("alice.test"));
    assert_eq!(doc.pds_endpoint(), Some(sandbox.pds_url()));
    let key = doc.signing_key().expect("#atproto key");
    // The local PLC serves the legacy shape.
    assert_eq!(key.key_type, "EcdsaSecp256k1VerificationKey2019");
    assert!(key.multibase.starts_with('z'), "{key:?}");
    assert_eq!(doc.label_key(), None);
    assert_eq!(doc.labeler_endpoint(), None);
    println!("sandbox doc for {}: {key:?}", alice.did);

    // Cached: the second resolution fetches nothing.
    let before = resolver.stats();
    let again = resolver.resolve_did(&alice.did).await.unwrap();
    assert!(Arc::ptr_eq(&doc, &again));
    assert_eq!(resolver.stats().did_fetches, before.did_fetches);
    assert_eq!(resolver.stats().did_cache_hits, before.did_cache_hits + 1);

    // Handle -> DID through the reference PDS's /.well-known/atproto-did.
    assert_eq!(
        resolver.resolve_handle("alice.test").await.unwrap(),
        alice.did
    );
    assert_eq!(
        resolver.verify_handle(&alice.did, &doc).await,
        HandleStatus::Verified("alice.test".into())
    );

    // bob's document claims bob.test, but DNS says bob.test is alice: DNS wins, and bob's
    // handle does not verify.
    let bob_doc = resolver.resolve_did(&bob.did).await.unwrap();
    assert_eq!(bob_doc.handle(), Some("bob.test"));
    assert_eq!(
        resolver.resolve_handle("bob.test").await.unwrap(),
        alice.did
    );
    let status = resolver.verify_handle(&bob.did, &bob_doc).await;
    assert_eq!(status, HandleStatus::Invalid);
    assert_eq!(status.as_str(), "handle.invalid");

    // An unknown did:plc is NotFound, and the answer is cached.
    let unknown = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz";
    assert_eq!(reason(resolver.resolve_did(unknown).await), "not_found");
    let fetches = resolver.stats().did_fetches;
    assert_eq!(reason(resolver.resolve_did(unknown).await), "not_found");
    assert_eq!(resolver.stats().did_fetches, fetches);

    // invalidate (an #identity event) forgets the document and its handle.
    resolver.invalidate(&alice.did);
    let lookups = resolver.stats().handle_lookups;
    resolver.resolve_did(&alice.did).await.unwrap();
    resolver.resolve_handle("alice.test").await.unwrap();
    assert_eq!(resolver.stats().did_fetches, fetches + 1);
    assert_eq!(resolver.stats().handle_lookups, lookups + 1);

    sandbox.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// did:web and did:plc against loopback test servers.

#[tokio::test]
async fn did_web_resolves_and_caches() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let did = format!("did:web:localhost%3A{port}");
    server.serve(
        "/.well-known/did.json",
        200,
        current_doc(&did, "web.test", KEY_A),
    );
    let resolver = resolver_with(localhost_dns(), ResolverConfig::sandbox(server.url()));

    let doc = resolver.resolve_did(&did).await.unwrap();
    assert_eq!(doc.id(), did);
    assert_eq!(
        doc.signing_key(),
        Some(SigningKeyRef {
            key_type: "Multikey".into(),
            multibase: KEY_A.into()
        })
    );
    resolver.resolve_did(&did).await.unwrap();
    assert_eq!(
        server.hits("/.well-known/did.json"),
        1,
        "second resolve hit the cache"
    );

    resolver.invalidate(&did);
    resolver.resolve_did(&did).await.unwrap();
    assert_eq!(
        server.hits("/.well-known/did.json"),
        2,
        "invalidate refetches"
    );
}

#[tokio::test]
async fn did_web_hostname_form_uses_http_only_for_loopback_in_sandbox() {
    let server = TestServer::start().await;
    let did = "did:web:web.test";
    server.serve(
        "/.well-known/did.json",
        200,
        current_doc(did, "web.test", KEY_A),
    );
    // web.test -> the server's address and port (the DID itself names no port).
    let dns = StaticDns::new().with_addr("web.test", server.addr);
    let resolver = resolver_with(dns, ResolverConfig::sandbox(server.url()));
    assert_eq!(resolver.resolve_did(did).await.unwrap().id(), did);
    assert_eq!(server.hits("/.well-known/did.json"), 1);
}

#[tokio::test]
async fn did_web_refusals() {
    let resolver = resolver_with(localhost_dns(), ResolverConfig::default());
    // A port is only accepted in the sandbox; paths never.
    assert_eq!(
        reason(resolver.resolve_did("did:web:localhost%3A8080").await),
        "invalid_did"
    );
    assert_eq!(
        reason(resolver.resolve_did("did:web:example.com:user:alice").await),
        "invalid_did"
    );
    // Literal private addresses are refused by the guard before any connection.
    let sandbox = resolver_with(
        localhost_dns(),
        ResolverConfig::sandbox("http://127.0.0.1:1"),
    );
    for did in ["did:web:10.0.0.1", "did:web:169.254.169.254"] {
        assert_eq!(reason(resolver.resolve_did(did).await), "forbidden_address");
        assert_eq!(reason(sandbox.resolve_did(did).await), "forbidden_address");
    }
    // A single-label host is not a did:web hostname outside the sandbox.
    assert_eq!(
        reason(resolver.resolve_did("did:web:localhost").await),
        "invalid_did"
    );
}

#[tokio::test]
async fn plc_status_codes_and_document_checks() {
    let server = TestServer::start().await;
    let tombstoned = "did:plc:tttttttttttttttttttttttt";
    let wrong_id = "did:plc:wwwwwwwwwwwwwwwwwwwwwwww";
    let garbage = "did:plc:gggggggggggggggggggggggg";
    let broken = "did:plc:ffffffffffffffffffffffff";
    server.serve(&format!("/{tombstoned}"), 410, "gone");
    server.serve(
        &format!("/{wrong_id}"),
        200,
        current_doc(DID_A, "a.test", KEY_A),
    );
    server.serve(&format!("/{garbage}"), 200, "<html>");
    server.serve(&format!("/{broken}"), 500, "oops");
    let resolver = resolver_with(localhost_dns(), ResolverConfig::sandbox(server.url()));

    assert_eq!(reason(resolver.resolve_did(tombstoned).await), "tombstoned");
    match resolver.resolve_did(wrong_id).await {
        Err(IdentityError::DocIdMismatch { did, found }) => {
            assert_eq!(did, wrong_id);
            assert_eq!(found, DID_A);
        }
        other => panic!("expected DocIdMismatch, got {other:?}"),
    }
    assert_eq!(
        reason(resolver.resolve_did(garbage).await),
        "invalid_document"
    );
    assert_eq!(reason(resolver.resolve_did(broken).await), "http_status");
    // Tombstones are cached (negative TTL); server errors are not.
    assert_eq!(reason(resolver.resolve_did(tombstoned).await), "tombstoned");
    assert_eq!(reason(resolver.resolve_did(broken).await), "http_status");
    assert_eq!(server.hits(&format!("/{tombstoned}")), 1);
    assert_eq!(server.hits(&format!("/{broken}")), 2);
}

#[tokio::test]
async fn negative_and_positive_ttls_expire() {
    let server = TestServer::start().await;
    server.serve(
        &format!("/{DID_A}"),
        200,
        current_doc(DID_A, "a.test", KEY_A),
    );
    let config = ResolverConfig {
        positive_ttl: Duration::from_millis(300),
        negative_ttl: Duration::from_millis(300),
        ..ResolverConfig::sandbox(server.url())
    };
    let resolver = resolver_with(localhost_dns(), config);

    assert_eq!(reason(resolver.resolve_did(DID_B).await), "not_found");
    assert_eq!(reason(resolver.resolve_did(DID_B).await), "not_found");
    resolver.resolve_did(DID_A).await.unwrap();
    resolver.resolve_did(DID_A).await.unwrap();
    assert_eq!(server.hits(&format!("/{DID_B}")), 1, "NotFound is cached");
    assert_eq!(server.hits(&format!("/{DID_A}")), 1);

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(reason(resolver.resolve_did(DID_B).await), "not_found");
    resolver.resolve_did(DID_A).await.unwrap();
    assert_eq!(
        server.hits(&format!("/{DID_B}")),
        2,
        "negative entry expired"
    );
    assert_eq!(
        server.hits(&format!("/{DID_A}")),
        2,
        "positive entry expired"
    );
}

#[tokio::test]
async fn cache_is_bounded_and_evicts_least_recently_used() {
    let server = TestServer::start().await;
    for did in [DID_A, DID_B, DID_C] {
        server.serve(&format!("/{did}"), 200, current_doc(did, "x.test", KEY_A));
    }
    let config = ResolverConfig {
        cache_capacity: 2,
        ..ResolverConfig::sandbox(server.url())
    };
    let resolver = resolver_with(localhost_dns(), config);
    resolver.resolve_did(DID_A).await.unwrap();
    resolver.resolve_did(DID_B).await.unwrap();
    resolver.resolve_did(DID_A).await.unwrap(); // A is now more recent than B
    resolver.resolve_did(DID_C).await.unwrap(); // evicts B
    resolver.resolve_did(DID_A).await.unwrap();
    resolver.resolve_did(DID_C).await.unwrap();
    assert_eq!(server.hits(&format!("/{DID_A}")), 1);
    assert_eq!(server.hits(&format!("/{DID_C}")), 1);
    resolver.resolve_did(DID_B).await.unwrap();
    assert_eq!(server.hits(&format!("/{DID_B}")), 2, "B was evicted");
}

#[tokio::test]
async fn concurrent_lookups_share_one_fetch() {
    let server = TestServer::start().await;
    server.serve(
        &format!("/{DID_A}"),
        200,
        current_doc(DID_A, "a.test", KEY_A),
    );
    server.set_delay(Duration::from_millis(300));
    let resolver = resolver_with(localhost_dns(), ResolverConfig::sandbox(server.url()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let resolver = resolver.clone();
        tasks.push(tokio::spawn(
            async move { resolver.resolve_did(DID_A).await },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().id(), DID_A);
    }
    assert_eq!(server.hits(&format!("/{DID_A}")), 1);
    let stats = resolver.stats();
    assert_eq!(stats.did_fetches, 1);
    assert_eq!(stats.did_coalesced + stats.did_cache_hits, 7, "{stats:?}");

    // A caller that gives up does not strand the fetch: it completes and is cached.
    server.serve(
        &format!("/{DID_B}"),
        200,
        current_doc(DID_B, "b.test", KEY_A),
    );
    let abandoned =
        tokio::time::timeout(Duration::from_millis(50), resolver.resolve_did(DID_B)).await;
    assert!(abandoned.is_err(), "the server answers after 300 ms");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = resolver.stats().did_cache_hits;
    assert_eq!(resolver.resolve_did(DID_B).await.unwrap().id(), DID_B);
    assert_eq!(resolver.stats().did_cache_hits, before + 1);
    assert_eq!(server.hits(&format!("/{DID_B}")), 1);
}

#[tokio::test]
async fn refresh_signing_key_once_then_rate_limited() {
    let server = TestServer::start().await;
    let path = format!("/{DID_A}");
    server.serve(&path, 200, current_doc(DID_A, "a.test", KEY_A));
    let resolver = resolver_with(localhost_dns(), ResolverConfig::sandbox(server.url()));
    let doc = resolver.resolve_did(DID_A).await.unwrap();
    assert_eq!(doc.signing_key().unwrap().multibase, KEY_A);

    // The account rotated its key: the first refresh sees it.
    server.serve(&path, 200, current_doc(DID_A, "a.test", KEY_B));
    match resolver.refresh_signing_key(DID_A).await.unwrap() {
        KeyRefresh::Changed(doc) => assert_eq!(doc.signing_key().unwrap().multibase, KEY_B),
        other => panic!("expected Changed, got {other:?}"),
    }
    // A flood of bad signatures right after costs nothing.
    for _ in 0..20 {
        assert!(matches!(
            resolver.refresh_signing_key(DID_A).await.unwrap(),
            KeyRefresh::RateLimited
        ));
    }
    assert_eq!(server.hits(&path), 2);
    assert_eq!(resolver.stats().refreshes_rate_limited, 20);
    // The refreshed document is what the cache now holds.
    let cached = resolver.resolve_did(DID_A).await.unwrap();
    assert_eq!(cached.signing_key().unwrap().multibase, KEY_B);
    assert_eq!(server.hits(&path), 2);

    // Without a rate limit, an unchanged key says so.
    let eager = resolver_with(
        localhost_dns(),
        ResolverConfig {
            refresh_interval: Duration::ZERO,
            ..ResolverConfig::sandbox(server.url())
        },
    );
    eager.resolve_did(DID_A).await.unwrap();
    assert!(matches!(
        eager.refresh_signing_key(DID_A).await.unwrap(),
        KeyRefresh::Unchanged(_)
    ));
}

// ---------------------------------------------------------------------------------------
// Handles.

#[tokio::test]
async fn handle_resolution_dns_and_well_known() {
    let server = TestServer::start().await;
    server.serve("/.well-known/atproto-did", 200, format!("  {DID_B}\n"));
    let dns = StaticDns::new()
        .with_txt("_atproto.dns.test", &format!("did={DID_A}"))
        .with_txt("_atproto.dns.test", "v=spf1 -all")
        .with_txt("_atproto.conflict.test", &format!("did={DID_A}"))
        .with_txt("_atproto.conflict.test", &format!("did={DID_B}"))
        .with_txt("_atproto.both.test", &format!("did={DID_A}"))
        .with_addr("both.test", server.addr)
        .with_addr("wk.test", server.addr);
    let resolver = resolver_with(dns, ResolverConfig::sandbox(server.url()));

    // DNS only (the well-known fetch fails to resolve the name, DNS answers).
    assert_eq!(resolver.resolve_handle("dns.test").await.unwrap(), DID_A);
    // Normalised: the same cache entry.
    let hits = resolver.stats().handle_cache_hits;
    assert_eq!(resolver.resolve_handle("DNS.Test").await.unwrap(), DID_A);
    assert_eq!(resolver.stats().handle_cache_hits, hits + 1);
    // Well-known only, trimmed.
    assert_eq!(resolver.resolve_handle("wk.test").await.unwrap(), DID_B);
    // Both answer and disagree: DNS wins.
    assert_eq!(resolver.resolve_handle("both.test").await.unwrap(), DID_A);
    // Conflicting TXT records are an error.
    assert_eq!(
        reason(resolver.resolve_handle("conflict.test").await),
        "handle_conflict"
    );
    // A name with neither a TXT record nor an address: no answer, and the failure is the
    // (transient, uncached) lookup error rather than a definitive "not found".
    assert_eq!(reason(resolver.resolve_handle("unknown.test").await), "dns");
    assert_eq!(reason(resolver.resolve_handle("unknown.test").await), "dns");
    assert_eq!(resolver.stats().handle_lookups, 6);
}

#[tokio::test]
async fn handle_not_found_is_cached() {
    let server = TestServer::start().await;
    let dns = StaticDns::new().with_addr("gone.test", server.addr);
    let resolver = resolver_with(dns, ResolverConfig::sandbox(server.url()));
    for _ in 0..3 {
        assert_eq!(
            reason(resolver.resolve_handle("gone.test").await),
            "handle_not_found"
        );
    }
    assert_eq!(server.hits("/.well-known/atproto-did"), 1);
    // A body that is not a DID is not an answer either.
    server.serve("/.well-known/atproto-did", 200, "<html>hello</html>");
    resolver.invalidate_handle("gone.test");
    assert_eq!(
        reason(resolver.resolve_handle("gone.test").await),
        "handle_not_found"
    );
}

#[tokio::test]
async fn verify_handle_cases() {
    let dns = StaticDns::new()
        .with_txt("_atproto.mine.test", &format!("did={DID_A}"))
        .with_txt("_atproto.theirs.test", &format!("did={DID_B}"));
    let resolver = resolver_with(dns, ResolverConfig::sandbox("http://127.0.0.1:1"));
    let doc = |did: &str, handle: &str| {
        DidDocument::from_json(current_doc(did, handle, KEY_A).as_bytes()).unwrap()
    };
    let cases = [
        (
            DID_A,
            doc(DID_A, "mine.test"),
            HandleStatus::Verified("mine.test".into()),
        ),
        (
            DID_A,
            doc(DID_A, "MINE.test"),
            HandleStatus::Verified("mine.test".into()),
        ),
        // The handle points at someone else.
        (DID_A, doc(DID_A, "theirs.test"), HandleStatus::Invalid),
        // The document is for another DID.
        (DID_B, doc(DID_A, "theirs.test"), HandleStatus::Invalid),
        // Malformed and reserved handles.
        (DID_A, doc(DID_A, "not a handle"), HandleStatus::Invalid),
        (DID_A, doc(DID_A, "mine.onion"), HandleStatus::Invalid),
    ];
    for (did, doc, expected) in cases {
        assert_eq!(
            resolver.verify_handle(did, &doc).await,
            expected,
            "{did} {:?}",
            doc.handle()
        );
    }
    let no_handle = DidDocument::from_json(json!({"id": DID_A}).to_string().as_bytes()).unwrap();
    assert_eq!(
        resolver.verify_handle(DID_A, &no_handle).await,
        HandleStatus::Invalid
    );
}

#[tokio::test]
async fn reserved_and_malformed_handles_are_refused_before_lookup() {
    let production = resolver_with(StaticDns::new(), ResolverConfig::default());
    let sandbox = resolver_with(
        StaticDns::new(),
        ResolverConfig::sandbox("http://127.0.0.1:1"),
    );
    let reserved = [
        "alice.local",
        "x.onion",
        "4.3.2.1.in-addr.arpa",
        "a.invalid",
        "a.internal",
        "a.localhost",
        "a.test",
        "a.alt",
        "a.example",
    ];
    for handle in reserved {
        assert_eq!(
            reason(production.resolve_handle(handle).await),
            "reserved_handle",
            "{handle}"
        );
    }
    // The sandbox resolves .test and .localhost (here: nothing answers).
    for handle in ["a.test", "a.localhost"] {
        assert_ne!(
            reason(sandbox.resolve_handle(handle).await),
            "reserved_handle"
        );
    }
    assert_eq!(
        reason(sandbox.resolve_handle("a.local").await),
        "reserved_handle"
    );
    let long = format!("{}.com", "a".repeat(250));
    let malformed = [
        "",
        "nodot",
        "-a.com",
        "a-.com",
        "a..com",
        "a.1com",
        "é.com",
        "a_b.com",
        ".a.com",
        "a.com.",
        "a b.com",
        long.as_str(),
    ];
    for handle in malformed {
        assert_eq!(
            reason(production.resolve_handle(handle).await),
            "invalid_handle",
            "{handle:?}"
        );
    }
    assert_eq!(
        normalize_handle("Alice.Example.COM", false).unwrap(),
        "alice.example.com"
    );
    assert_eq!(production.stats().handle_lookups, 0);
}

#[test]
fn did_syntax() {
    for did in [
        DID_A,
        "did:web:example.com",
        "did:key:zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj",
        "did:method:val:two",
        "did:m:v%20x",
    ] {
        assert!(check_did(did).is_ok(), "{did}");
    }
    for did in [
        "",
        "did",
        "did:",
        "did:plc",
        "did:plc:",
        "DID:plc:aaa",
        "did:PLC:aaa",
        "did:plc:aaa:",
        "did:plc:aaa%",
        "did:plc:a/b",
        "did:plc:a b",
        "did:plc:a#frag",
    ] {
        assert!(check_did(did).is_err(), "{did:?}");
    }
}

#[tokio::test]
async fn unsupported_and_malformed_dids() {
    let resolver = resolver_with(StaticDns::new(), ResolverConfig::default());
    let cases = [
        (
            "did:key:zQ3shrc8v5X6ZiANcZxA6JerfT2T4SskeCGxpmtDfMuHF9KRj",
            "unsupported_did_method",
        ),
        ("did:plc:short", "invalid_did"),
        ("did:plc:AAAAAAAAAAAAAAAAAAAAAAAA", "invalid_did"),
        ("did:plc:aaaaaaaaaaaaaaaaaaaaaaa1", "invalid_did"),
        ("did:web:exa_mple.com", "invalid_did"),
        ("did:web:example.com%2Fpath", "invalid_did"),
        ("not a did", "invalid_did"),
    ];
    for (did, expected) in cases {
        assert_eq!(reason(resolver.resolve_did(did).await), expected, "{did}");
    }
    assert_eq!(resolver.stats().did_fetches, 0);
}

// ---------------------------------------------------------------------------------------
// DID document shapes.

#[test]
fn document_shapes() {
    let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    struct Case {
        name: &'static str,
        doc: serde_json::Value,
        handle: Option<&'static str>,
        pds: Option<&'static str>,
        key: Option<(&'static str, &'static str)>,
        label_key: Option<&'static str>,
        labeler: Option<&'static str>,
    }
    let cases = vec![
        Case {
            name: "current: Multikey, absolute ids",
            doc: json!({
                "id": did,
                "alsoKnownAs": ["at://atproto.com"],
                "verificationMethod": [{"id": format!("{did}#atproto"), "type": "Multikey", "controller": did, "publicKeyMultibase": KEY_A}],
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com"}],
            }),
            handle: Some("atproto.com"),
            pds: Some("https://pds.example.com"),
            key: Some(("Multikey", KEY_A)),
            label_key: None,
            labeler: None,
        },
        Case {
            name: "legacy k256: relative ids",
            doc: json!({
                "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/secp256k1-2019/v1"],
                "id": did,
                "alsoKnownAs": ["at://alice.test"],
                "verificationMethod": [{"id": "#atproto", "type": "EcdsaSecp256k1VerificationKey2019", "controller": did, "publicKeyMultibase": "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR"}],
                "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "http://localhost:2583"}],
            }),
            handle: Some("alice.test"),
            pds: Some("http://localhost:2583"),
            key: Some((
                "EcdsaSecp256k1VerificationKey2019",
                "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR",
            )),
            label_key: None,
            labeler: None,
        },
        Case {
            name: "legacy p256",
            doc: json!({
                "id": did,
                "verificationMethod": [{"id": "#atproto", "type": "EcdsaSecp256r1VerificationKey2019", "controller": did, "publicKeyMultibase": "zP256legacy"}],
            }),
            handle: None,
            pds: None,
            key: Some(("EcdsaSecp256r1VerificationKey2019", "zP256legacy")),
            label_key: None,
            labeler: None,
        },
        Case {
            name: "labeler: label key and service, first at:// wins, odd entries skipped",
            doc: json!({
                "id": did,
                "alsoKnownAs": ["https://example.com", 7, "at://first.example.com", "at://second.example.com"],
                "verificationMethod": [
                    "did:plc:other#atproto",
                    {"id": "did:plc:someoneelse#atproto", "type": "Multikey", "publicKeyMultibase": KEY_B},
                    {"id": "#atproto", "type": "Multikey", "publicKeyMultibase": KEY_A},
                    {"id": "#atproto_label", "type": "Multikey", "publicKeyMultibase": KEY_B},
                ],
                "service": [
                    {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": {"origins": ["x"]}},
                    {"id": "#atproto_labeler", "type": ["AtprotoLabeler"], "serviceEndpoint": ["https://labeler.example.com"]},
                ],
            }),
            handle: Some("first.example.com"),
            pds: None,
            key: Some(("Multikey", KEY_A)),
            label_key: Some(KEY_B),
            labeler: Some("https://labeler.example.com"),
        },
        Case {
            name: "wrong service type, non-web endpoint, key without multibase",
            doc: json!({
                "id": did,
                "verificationMethod": [{"id": "#atproto", "type": "JsonWebKey2020", "publicKeyJwk": {}}],
                "service": [
                    {"id": "#atproto_pds", "type": "SomethingElse", "serviceEndpoint": "https://a.example.com"},
                    {"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "ftp://labeler.example.com"},
                ],
            }),
            handle: None,
            pds: None,
            key: None,
            label_key: None,
            labeler: None,
        },
        Case {
            name: "bare minimum",
            doc: json!({"id": did, "alsoKnownAs": null, "service": "not a list"}),
            handle: None,
            pds: None,
            key: None,
            label_key: None,
            labeler: None,
        },
    ];
    for case in cases {
        let doc = DidDocument::from_json(case.doc.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(doc.id(), did, "{}", case.name);
        assert_eq!(doc.handle(), case.handle, "{}", case.name);
        assert_eq!(doc.pds_endpoint(), case.pds, "{}", case.name);
        let key = doc.signing_key();
        assert_eq!(
            key.as_ref()
                .map(|k| (k.key_type.as_str(), k.multibase.as_str())),
            case.key,
            "{}",
            case.name
        );
        assert_eq!(
            doc.label_key().map(|k| k.multibase),
            case.label_key.map(str::to_owned),
            "{}",
            case.name
        );
        assert_eq!(doc.labeler_endpoint(), case.labeler, "{}", case.name);
    }

    let rejected: &[(&[u8], DocumentError)] = &[
        (b"{", DocumentError::NotJson(String::new())),
        (b"[1]", DocumentError::NotAnObject),
        (b"{\"alsoKnownAs\": []}", DocumentError::MissingId),
        (b"{\"id\": 5}", DocumentError::MissingId),
    ];
    for (bytes, expected) in rejected {
        let err = DidDocument::from_json(bytes).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&err),
            std::mem::discriminant(expected),
            "{err}"
        );
    }
}

#[test]
fn real_corpus_documents_all_parse() {
    let path = support::corpus_dir().join("did_docs.json.zst");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(file)
        .unwrap()
        .read_to_end(&mut json)
        .unwrap();
    let docs: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).unwrap();
    assert!(!docs.is_empty());
    let mut with_key = 0;
    for (did, value) in &docs {
        let doc = DidDocument::from_value(value).unwrap_or_else(|e| panic!("{did}: {e}"));
        assert_eq!(doc.id(), did);
        let key = doc
            .signing_key()
            .unwrap_or_else(|| panic!("{did}: no #atproto key"));
        assert!(key.multibase.starts_with('z'), "{did}: {key:?}");
        assert!(doc.pds_endpoint().is_some(), "{did}: no PDS");
        assert!(doc.handle().is_some(), "{did}: no handle");
        with_key += 1;
    }
    println!(
        "{with_key} of {} corpus DID documents parsed with a signing key",
        docs.len()
    );
    assert_eq!(with_key, docs.len());
}
