//! The SSRF guard: hostile URLs are refused by rule, without a packet leaving for a
//! non-loopback address, and the resource limits hold against a real loopback server.
//!
//! Every refusal here happens while parsing the URL or resolving the name: the literal
//! addresses are checked before connecting, and names go through [`StaticDns`] (never real
//! DNS) or are `localhost` names answered locally. Only loopback is ever connected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_relay::sync::ssrf::{
    AddressClass, Dns, DnsError, GuardedClient, SsrfError, SsrfPolicy, StaticDns, classify,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------
// A tiny loopback HTTP server: raw responses, a request log.

/// What the server does for one request.
enum Reply {
    /// Writes these bytes and closes.
    Raw(Vec<u8>),
    /// Writes the first bytes, waits, writes the rest (a slow body).
    Slow(Vec<u8>, Duration, Vec<u8>),
}

struct TestServer {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    async fn start(route: fn(&str, u16) -> Reply) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&paths);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let Some(path) = read_request_path(&mut stream).await else {
                        return;
                    };
                    log.lock().unwrap().push(path.clone());
                    match route(&path, addr.port()) {
                        Reply::Raw(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                        }
                        Reply::Slow(first, pause, rest) => {
                            let _ = stream.write_all(&first).await;
                            let _ = stream.flush().await;
                            tokio::time::sleep(pause).await;
                            let _ = stream.write_all(&rest).await;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        TestServer { addr, paths }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    fn requests(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
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
    let line = text.lines().next()?;
    Some(line.split(' ').nth(1)?.to_owned())
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn ok(body: &[u8]) -> Reply {
    Reply::Raw(response(
        "200 OK",
        &[("content-length", body.len().to_string())],
        body,
    ))
}

fn redirect(location: &str) -> Reply {
    Reply::Raw(response(
        "302 Found",
        &[
            ("location", location.to_owned()),
            ("content-length", "0".into()),
        ],
        b"",
    ))
}

fn routes(path: &str, port: u16) -> Reply {
    match path {
        "/ok" => ok(b"hello"),
        "/json" => ok(br#"{"answer":42}"#),
        // 2 MiB with no Content-Length: only the streaming cap can stop it.
        "/big" => Reply::Raw(response("200 OK", &[], &vec![b'x'; 2 * 1024 * 1024])),
        // A declared length over the limit is refused before reading.
        "/big-declared" => Reply::Raw(response(
            "200 OK",
            &[("content-length", "50000000".into())],
            b"",
        )),
        "/slow" => Reply::Slow(
            response("200 OK", &[("content-length", "10".into())], b"abc"),
            Duration::from_secs(5),
            b"defghij".to_vec(),
        ),
        "/missing" => Reply::Raw(response(
            "404 Not Found",
            &[("content-length", "0".into())],
            b"",
        )),
        "/to-ok" => redirect("/ok"),
        "/to-localhost-name" => redirect(&format!("http://localhost:{port}/ok")),
        "/to-private" => redirect("http://10.0.0.1/admin"),
        "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-file" => redirect("file:///etc/passwd"),
        "/to-intranet-name" => redirect("http://intranet.example/"),
        "/loop" => redirect("/loop"),
        "/no-location" => Reply::Raw(response(
            "302 Found",
            &[("content-length", "0".into())],
            b"",
        )),
        _ => Reply::Raw(response(
            "404 Not Found",
            &[("content-length", "0".into())],
            b"",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Names the hostile tests use. Unknown names fail without any network traffic.
fn test_dns() -> StaticDns {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    StaticDns::new()
        .with_ip("intranet.example", ip("10.0.0.1"))
        .with_ip("metadata.example", ip("169.254.169.254"))
        .with_ip("cgnat.example", ip("100.64.1.1"))
        .with_ip("ula.example", ip("fd12:3456::1"))
        .with_ip("mapped.example", ip("::ffff:192.168.0.1"))
        .with_ip("localhost", ip("127.0.0.1"))
        .with_ip("loop.example", ip("127.0.0.1"))
        .with_ip("loop6.example", ip("::1"))
        // One bad address is enough to refuse the name (the public one is never used).
        .with_ip("mixed.example", ip("1.1.1.1"))
        .with_ip("mixed.example", ip("192.168.1.1"))
        .with_ip("public.example", ip("1.1.1.1"))
}

fn client(policy: SsrfPolicy) -> GuardedClient {
    GuardedClient::with_dns(policy, Arc::new(test_dns())).unwrap()
}

fn fast_policy(allow_loopback: bool) -> SsrfPolicy {
    SsrfPolicy {
        allow_loopback,
        timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(500),
        ..SsrfPolicy::default()
    }
}

/// Asserts `result` is an error with metrics label `reason` and, if given, address class.
fn expect_refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, SsrfError>,
    reason: &str,
    class: Option<AddressClass>,
) {
    let err = match result {
        Ok(v) => panic!("{what}: expected {reason}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(err.reason(), reason, "{what}: wrong rule: {err}");
    if let Some(class) = class {
        match &err {
            SsrfError::ForbiddenAddress { class: got, .. } => {
                assert_eq!(*got, class, "{what}: wrong range: {err}")
            }
            other => panic!("{what}: expected a forbidden address, got {other}"),
        }
    }
    // Every message names what was refused.
    assert!(!err.to_string().is_empty());
}

// ---------------------------------------------------------------------------------------
// Hostile URLs, refused by parsing and resolution only.

/// `(url, rule, range)` for URLs refused in production (loopback not allowed).
fn hostile_urls() -> Vec<(&'static str, &'static str, Option<AddressClass>)> {
    use AddressClass::*;
    let addr = "forbidden_address";
    vec![
        ("http://127.0.0.1/", addr, Some(Loopback)),
        ("http://127.0.0.1:8080/admin", addr, Some(Loopback)),
        ("http://127.255.255.254/", addr, Some(Loopback)),
        ("http://[::1]/", addr, Some(Loopback)),
        ("http://[::ffff:127.0.0.1]/", addr, Some(Loopback)),
        ("http://2130706433/", addr, Some(Loopback)),
        ("http://0x7f000001/", addr, Some(Loopback)),
        ("http://017700000001/", addr, Some(Loopback)),
        ("http://127.1/", addr, Some(Loopback)),
        ("http://0x7f.0.0.1/", addr, Some(Loopback)),
        ("http://%31%32%37.0.0.1/", addr, Some(Loopback)),
        ("http://[0:0:0:0:0:ffff:7f00:1]/", addr, Some(Loopback)),
        ("http://10.0.0.1/", addr, Some(Private)),
        ("http://172.16.5.4/", addr, Some(Private)),
        ("http://172.31.255.255/", addr, Some(Private)),
        ("http://192.168.1.1/", addr, Some(Private)),
        ("http://[::ffff:10.0.0.1]/", addr, Some(Private)),
        ("http://[fec0::1]/", addr, Some(Private)),
        ("http://100.64.0.1/", addr, Some(SharedAddressSpace)),
        ("http://100.127.255.255/", addr, Some(SharedAddressSpace)),
        (
            "http://169.254.169.254/latest/meta-data/",
            addr,
            Some(LinkLocal),
        ),
        ("http://[fe80::1]/", addr, Some(LinkLocal)),
        // NAT64 and 6to4 forms of forbidden IPv4 addresses.
        ("http://[64:ff9b::a9fe:a9fe]/", addr, Some(LinkLocal)),
        ("http://[2002:7f00:1::]/", addr, Some(Loopback)),
        ("http://0.0.0.0/", addr, Some(Unspecified)),
        ("http://0/", addr, Some(Unspecified)),
        ("http://[::]/", addr, Some(Unspecified)),
        ("http://255.255.255.255/", addr, Some(Broadcast)),
        ("http://224.0.0.1/", addr, Some(Multicast)),
        ("http://[ff02::1]/", addr, Some(Multicast)),
        ("http://192.0.2.1/", addr, Some(Documentation)),
        ("http://203.0.113.9/", addr, Some(Documentation)),
        ("http://[2001:db8::1]/", addr, Some(Documentation)),
        ("http://198.18.0.1/", addr, Some(Benchmarking)),
        ("http://[fd00::1]/", addr, Some(UniqueLocal)),
        ("http://[fc00::1]/", addr, Some(UniqueLocal)),
        ("http://240.0.0.1/", addr, Some(Reserved)),
        ("http://0.1.2.3/", addr, Some(Reserved)),
        ("http://192.0.0.8/", addr, Some(Reserved)),
        ("http://[::127.0.0.1]/", addr, Some(Reserved)),
        ("http://[2001::1]/", addr, Some(Reserved)),
        // Names, resolved through the static table only.
        ("http://intranet.example/", addr, Some(Private)),
        ("http://metadata.example/latest/", addr, Some(LinkLocal)),
        ("http://cgnat.example/", addr, Some(SharedAddressSpace)),
        ("http://ula.example/", addr, Some(UniqueLocal)),
        ("http://mapped.example/", addr, Some(Private)),
        ("http://loop.example/", addr, Some(Loopback)),
        ("http://loop6.example/", addr, Some(Loopback)),
        ("http://mixed.example/", addr, Some(Private)),
        ("http://unknown.example/", "dns", None),
        // Schemes, userinfo, ports, garbage.
        ("ftp://example.com/file", "scheme", None),
        ("file:///etc/passwd", "scheme", None),
        ("gopher://example.com/", "scheme", None),
        ("ws://example.com/", "scheme", None),
        ("http://user:pw@public.example/", "userinfo", None),
        ("http://user@public.example/", "userinfo", None),
        ("http://:pw@public.example/", "userinfo", None),
        ("http://public.example:8080/", "port", None),
        ("https://public.example:22/", "port", None),
        ("http://public.example:0/", "port", None),
        ("not a url", "invalid_url", None),
        ("http://", "invalid_url", None),
        ("http://[::1/", "invalid_url", None),
    ]
}

#[tokio::test]
async fn hostile_urls_are_refused_by_rule() {
    let guard = client(SsrfPolicy::default());
    let table = hostile_urls();
    for (url, reason, class) in &table {
        expect_refused(url, guard.check_url(url).await, reason, *class);
        // A real fetch is refused by the same rule, before any connection.
        expect_refused(url, guard.get_bytes(url, 1024).await, reason, *class);
    }
    println!("{} hostile URLs refused", table.len());
}

#[tokio::test]
async fn sandbox_allows_loopback_only() {
    let guard = client(SsrfPolicy::sandbox());
    for (url, reason, class) in hostile_urls() {
        match class {
            // Loopback (in any spelling) is what the sandbox allows, on any port.
            Some(AddressClass::Loopback) => {
                let checked = guard.check_url(url).await;
                assert!(checked.is_ok(), "{url}: {checked:?}");
            }
            _ => expect_refused(url, guard.check_url(url).await, reason, class),
        }
    }
    // An odd port on a name is allowed only when every address is loopback.
    assert!(guard.check_url("http://loop.example:9999/").await.is_ok());
    expect_refused(
        "public name, odd port",
        guard.check_url("http://public.example:8080/").await,
        "port",
        None,
    );
}

#[tokio::test]
async fn system_dns_refuses_localhost_names() {
    // `localhost` names are answered locally (RFC 6761): no DNS query leaves the machine.
    let guard = GuardedClient::new(SsrfPolicy::default()).unwrap();
    for url in [
        "http://localhost/",
        "http://LOCALHOST./",
        "http://api.localhost/",
    ] {
        expect_refused(
            url,
            guard.get_bytes(url, 1024).await,
            "forbidden_address",
            Some(AddressClass::Loopback),
        );
    }
    let dns = guard.dns();
    let addrs = dns.lookup_ip("foo.localhost").await.unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

#[tokio::test]
async fn static_dns_never_falls_through() {
    let dns = test_dns().with_txt("_atproto.alice.test", "did=did:plc:abc");
    assert_eq!(
        dns.lookup_txt("_atproto.Alice.Test.").await.unwrap(),
        vec!["did=did:plc:abc".to_owned()]
    );
    assert!(matches!(
        dns.lookup_ip("example.com").await,
        Err(DnsError::NotFound { .. })
    ));
    assert!(matches!(
        dns.lookup_txt("_atproto.bob.test").await,
        Err(DnsError::NotFound { .. })
    ));
}

#[test]
fn classification_table() {
    let cases: &[(&str, Option<AddressClass>)] = &[
        ("1.1.1.1", None),
        ("8.8.8.8", None),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
        ("172.15.255.255", None),
        ("172.32.0.0", None),
        ("192.167.255.255", None),
        ("198.17.255.255", None),
        ("198.20.0.0", None),
        ("2606:4700::1111", None),
        ("::ffff:1.1.1.1", None),
        ("64:ff9b::808:808", None),
        ("127.0.0.1", Some(AddressClass::Loopback)),
        ("::ffff:169.254.1.1", Some(AddressClass::LinkLocal)),
        ("100::1", Some(AddressClass::Reserved)),
        ("4000::1", Some(AddressClass::Reserved)),
        ("3fff:0fff::1", Some(AddressClass::Documentation)),
        ("64:ff9b:1::1", Some(AddressClass::Private)),
    ];
    for (ip, class) in cases {
        assert_eq!(classify(ip.parse().unwrap()), *class, "{ip}");
    }
}

// ---------------------------------------------------------------------------------------
// Against a real loopback server.

#[tokio::test]
async fn loopback_is_refused_without_connecting_unless_allowed() {
    let server = TestServer::start(routes).await;
    let port = server.addr.port();
    // A name pinned to the server's address and port: the connection would succeed.
    let dns = test_dns().with_addr("sneaky.example", server.addr);
    let prod = GuardedClient::with_dns(fast_policy(false), Arc::new(dns.clone())).unwrap();
    expect_refused(
        "literal loopback",
        prod.get_text(&server.url("/ok"), 1024).await,
        "forbidden_address",
        Some(AddressClass::Loopback),
    );
    expect_refused(
        "name resolving to loopback",
        prod.get_text("http://sneaky.example/ok", 1024).await,
        "forbidden_address",
        Some(AddressClass::Loopback),
    );
    assert!(
        server.requests().is_empty(),
        "refused fetches reached the server: {:?}",
        server.requests()
    );

    let sandbox = GuardedClient::with_dns(fast_policy(true), Arc::new(dns)).unwrap();
    assert_eq!(
        sandbox.get_text(&server.url("/ok"), 1024).await.unwrap(),
        "hello"
    );
    // Port from the resolver (the URL names none), on loopback: allowed in the sandbox.
    assert_eq!(
        sandbox
            .get_text("http://sneaky.example/ok", 1024)
            .await
            .unwrap(),
        "hello"
    );
    let json: serde_json::Value = sandbox.get_json(&server.url("/json")).await.unwrap();
    assert_eq!(json["answer"], 42);
    assert_eq!(
        sandbox.get_bytes(&server.url("/ok"), 1024).await.unwrap(),
        b"hello"
    );
    assert_eq!(server.requests(), ["/ok", "/ok", "/json", "/ok"]);
    println!("loopback server on port {port}");
}

#[tokio::test]
async fn body_size_is_capped() {
    let server = TestServer::start(routes).await;
    let guard = client(fast_policy(true));
    let err = guard
        .get_bytes(&server.url("/big"), 1024 * 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(err, SsrfError::TooLarge { limit, .. } if limit == 1024 * 1024),
        "{err}"
    );
    expect_refused(
        "declared length",
        guard.get_bytes(&server.url("/big-declared"), 4096).await,
        "too_large",
        None,
    );
    // A per-call limit below the body.
    expect_refused(
        "small limit",
        guard.get_text(&server.url("/ok"), 4).await,
        "too_large",
        None,
    );
    // The policy cap wins over a larger per-call limit.
    let capped = client(SsrfPolicy {
        max_response_bytes: 3,
        ..fast_policy(true)
    });
    expect_refused(
        "policy cap",
        capped.get_text(&server.url("/ok"), 1 << 20).await,
        "too_large",
        None,
    );
}

#[tokio::test]
async fn slow_body_times_out() {
    let server = TestServer::start(routes).await;
    let guard = client(fast_policy(true));
    let started = std::time::Instant::now();
    let err = guard
        .get_bytes(&server.url("/slow"), 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, SsrfError::Timeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn redirects_are_rechecked() {
    let server = TestServer::start(routes).await;
    let guard = client(fast_policy(true));
    assert_eq!(
        guard.get_text(&server.url("/to-ok"), 1024).await.unwrap(),
        "hello"
    );
    assert_eq!(
        guard
            .get_text(&server.url("/to-localhost-name"), 1024)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "hello"
    );
    use AddressClass::*;
    let refused: &[(&str, &str, Option<AddressClass>)] = &[
        ("/to-private", "forbidden_address", Some(Private)),
        ("/to-metadata", "forbidden_address", Some(LinkLocal)),
        ("/to-intranet-name", "forbidden_address", Some(Private)),
        ("/to-file", "scheme", None),
        ("/loop", "too_many_redirects", None),
        ("/no-location", "bad_redirect", None),
        ("/missing", "http_status", None),
    ];
    for (path, reason, class) in refused {
        expect_refused(
            path,
            guard.get_bytes(&server.url(path), 1024).await,
            reason,
            *class,
        );
    }
    let requests = server.requests();
    // The loop was followed max_redirects times, then refused.
    let loops = requests.iter().filter(|p| *p == "/loop").count();
    assert_eq!(
        loops,
        SsrfPolicy::default().max_redirects + 1,
        "{requests:?}"
    );
    // A production guard refuses even the first hop to loopback.
    let prod = client(fast_policy(false));
    expect_refused(
        "prod redirect",
        prod.get_bytes(&server.url("/to-ok"), 1024).await,
        "forbidden_address",
        Some(Loopback),
    );
}

#[tokio::test]
async fn check_url_sends_nothing() {
    let server = TestServer::start(routes).await;
    let guard = client(fast_policy(true));
    for path in ["/ok", "/to-private", "/big"] {
        guard.check_url(&server.url(path)).await.unwrap();
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn clients_build_outside_a_runtime() {
    // Configuration code may build clients before the runtime starts.
    let guard = GuardedClient::new(SsrfPolicy::default()).unwrap();
    assert_eq!(guard.policy(), &SsrfPolicy::default());
    assert!(!guard.policy().allow_loopback);
    assert!(SsrfPolicy::sandbox().allow_loopback);
}
