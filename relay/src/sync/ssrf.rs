//! One guard for every outbound HTTP fetch the sync layer makes on behalf of the network.
//!
//! DID documents, handle well-known files and (later) PDS and labeler endpoints all come
//! from URLs that strangers control. [`GuardedClient`] is the only way the sync layer
//! fetches them, and it refuses anything that could reach this machine's private side:
//!
//! - **URL rules**, checked before anything is sent and again on every redirect hop: only
//!   `http`/`https`, no userinfo (`user:pw@`), only the policy's ports, and no literal IP
//!   address in a forbidden range. Literal IPs must be checked here because the HTTP
//!   connector never asks the resolver about them.
//! - **Address rules**, checked after DNS resolution by a custom [`reqwest::dns::Resolve`]:
//!   every address a name resolves to must be public, else the whole name is refused
//!   (loopback, RFC 1918, CGNAT `100.64/10`, link-local, multicast, unspecified, broadcast,
//!   documentation, benchmarking, reserved, ULA `fc00::/7`, and IPv4 addresses embedded in
//!   IPv6 (mapped, NAT64, 6to4) by the class of the embedded address). Checking the
//!   resolved addresses at connect time, rather than resolving once up front, is what
//!   defeats DNS rebinding: the addresses checked are the addresses connected to.
//! - **Resource rules**: the response body is capped while it streams
//!   ([`SsrfError::TooLarge`]), the whole exchange including redirects has one deadline
//!   ([`SsrfError::Timeout`]), and redirects are followed by hand, at most
//!   [`SsrfPolicy::max_redirects`] of them, each target checked like the first URL.
//!
//! The sandbox profile sets [`SsrfPolicy::allow_loopback`] explicitly: then loopback
//! addresses are allowed, on any port; every other private range stays forbidden.
//!
//! Name resolution goes through the [`Dns`] trait, so the identity resolver can share it for
//! `_atproto` TXT lookups and tests can map names to loopback ([`StaticDns`]) without
//! touching real DNS.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, LOCATION};
use serde::de::DeserializeOwned;
use url::{Host, Url};

/// What the guard allows. Build one with [`SsrfPolicy::default`] (production) or
/// [`SsrfPolicy::sandbox`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrfPolicy {
    /// Allow loopback addresses (`127.0.0.0/8`, `::1`, and `::ffff:127.0.0.0/104`), on any
    /// port. Only the sandbox profile sets this: in production a loopback fetch is how an
    /// attacker reaches admin endpoints.
    pub allow_loopback: bool,
    /// Ports a URL may name (or imply by its scheme). Default 80 and 443.
    pub allowed_ports: Vec<u16>,
    /// The largest response body any fetch reads; per-call limits can only lower it.
    pub max_response_bytes: usize,
    /// How long establishing one TCP (and TLS) connection may take.
    pub connect_timeout: Duration,
    /// How long a whole fetch may take: every redirect hop, headers and body.
    pub timeout: Duration,
    /// How many redirects a fetch follows; each target is checked like the first URL.
    pub max_redirects: usize,
}

impl Default for SsrfPolicy {
    fn default() -> Self {
        SsrfPolicy {
            allow_loopback: false,
            allowed_ports: vec![80, 443],
            max_response_bytes: 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_redirects: 3,
        }
    }
}

impl SsrfPolicy {
    /// The sandbox profile: the defaults plus `allow_loopback`, so the local PLC and PDS
    /// (on loopback, on arbitrary ports) are reachable. Everything else stays forbidden.
    pub fn sandbox() -> Self {
        SsrfPolicy {
            allow_loopback: true,
            ..SsrfPolicy::default()
        }
    }

    /// Whether connecting to `ip` is allowed; `Err` names the forbidden range.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressClass> {
        match classify(ip) {
            None => Ok(()),
            Some(AddressClass::Loopback) if self.allow_loopback => Ok(()),
            Some(class) => Err(class),
        }
    }

    /// Whether `port` may be used to reach `ip` (any port on allowed loopback).
    fn port_allowed_for(&self, port: u16, ip: IpAddr) -> bool {
        self.allowed_ports.contains(&port) || (self.allow_loopback && is_loopback(ip))
    }
}

/// The kind of non-public address a fetch was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`), deprecated IPv6 site-local
    /// (`fec0::/10`) and local-use NAT64 (`64:ff9b:1::/48`).
    Private,
    /// Carrier-grade NAT shared address space, `100.64.0.0/10` (RFC 6598).
    SharedAddressSpace,
    /// `169.254.0.0/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `0.0.0.0`, `::` (Linux connects these to the local host).
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `198.18.0.0/15`.
    Benchmarking,
    /// IPv6 unique local addresses, `fc00::/7`.
    UniqueLocal,
    /// Anything else that is not global unicast: `0/8`, `192.0.0/24`, `192.88.99/24`,
    /// `240/4`, IPv4-compatible IPv6, `100::/64`, `2001::/23`, and IPv6 outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// A short label, for errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::SharedAddressSpace => "shared address space (CGNAT)",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::UniqueLocal => "unique local (fc00::/7)",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies `ip`: `None` for a public (global unicast) address, else the range it is in.
/// IPv4 addresses embedded in IPv6 (`::ffff:a.b.c.d`, `64:ff9b::/96`, `2002::/16`) get the
/// class of the embedded address, because that is where the packets end up.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        _ if ip.is_broadcast() => Broadcast,
        _ if ip.is_unspecified() => Unspecified,
        (0, _, _) => Reserved,
        (10, _, _) => Private,
        (100, b, _) if b & 0xc0 == 64 => SharedAddressSpace,
        (127, _, _) => Loopback,
        (169, 254, _) => LinkLocal,
        (172, b, _) if b & 0xf0 == 16 => Private,
        (192, 0, 0) | (192, 88, 99) => Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (192, 168, _) => Private,
        (198, b, _) if b & 0xfe == 18 => Benchmarking,
        (a, _, _) if a & 0xf0 == 224 => Multicast,
        (a, _, _) if a & 0xf0 == 240 => Reserved,
        _ => return None,
    };
    Some(class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    let class = match s {
        // IPv4-compatible (deprecated): `::a.b.c.d`.
        [0, 0, 0, 0, 0, 0, _, _] => Reserved,
        // NAT64 well-known prefix: the packets go to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return classify_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Private,
        // 6to4: the embedded IPv4 address is the relay's target.
        [0x2002, hi, lo, ..] => return classify_v4(embedded(hi, lo)),
        [0x2001, 0x0db8, ..] => Documentation,
        [0x3fff, b, ..] if b & 0xf000 == 0 => Documentation,
        // IETF protocol assignments, Teredo, benchmarking, ORCHID.
        [0x2001, b, ..] if b < 0x0200 => Reserved,
        [0x0100, 0, 0, 0, ..] => Reserved,
        [a, ..] if a & 0xfe00 == 0xfc00 => UniqueLocal,
        [a, ..] if a & 0xffc0 == 0xfe80 => LinkLocal,
        [a, ..] if a & 0xffc0 == 0xfec0 => Private,
        [a, ..] if a & 0xff00 == 0xff00 => Multicast,
        // Global unicast is 2000::/3; nothing outside it is a fetch target.
        [a, ..] if a & 0xe000 != 0x2000 => Reserved,
        _ => return None,
    };
    Some(class)
}

fn is_loopback(ip: IpAddr) -> bool {
    classify(ip) == Some(AddressClass::Loopback)
}

/// Why a fetch was refused or failed. Each variant names the URL (or host and address) and
/// the rule; [`SsrfError::reason`] gives a short label for metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SsrfError {
    /// The URL does not parse, or has no host.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only `http` and `https` are fetched.
    #[error("refused {url}: scheme {scheme:?} is not http or https")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// URLs with `user:password@` are refused (they confuse parsers and leak credentials).
    #[error("refused {url}: URLs with userinfo are not fetched")]
    Userinfo {
        /// The URL.
        url: String,
    },
    /// The port is not in [`SsrfPolicy::allowed_ports`] (and not on allowed loopback).
    #[error("refused {target}: port {port} is not allowed")]
    Port {
        /// The URL, or the host when the port came from name resolution.
        target: String,
        /// The port.
        port: u16,
    },
    /// The host is, or resolves to, an address in a forbidden range.
    #[error("refused {host}: address {addr} is {class}")]
    ForbiddenAddress {
        /// The host as named in the URL.
        host: String,
        /// The forbidden address.
        addr: IpAddr,
        /// The range it is in.
        class: AddressClass,
    },
    /// Name resolution failed.
    #[error("resolving {host}: {source}")]
    Dns {
        /// The name.
        host: String,
        /// What went wrong.
        #[source]
        source: DnsError,
    },
    /// The name resolved to no addresses.
    #[error("{host} resolved to no addresses")]
    NoAddresses {
        /// The name.
        host: String,
    },
    /// More than [`SsrfPolicy::max_redirects`] redirects.
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects {
        /// The URL that redirected once too often.
        url: String,
        /// The limit.
        max: usize,
    },
    /// A redirect without a usable `Location`, or from https to http.
    #[error("{url}: bad redirect: {reason}")]
    BadRedirect {
        /// The URL that redirected.
        url: String,
        /// What is wrong with the redirect.
        reason: String,
    },
    /// The server answered with a status other than 2xx (or a followed redirect).
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL that answered.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body (or its declared length) exceeds the limit.
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The fetch did not finish within the deadline.
    #[error("{url}: no complete response within {after:?}")]
    Timeout {
        /// The URL as first requested.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// A connection or protocol error.
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The body is not the JSON expected.
    #[error("{url}: invalid JSON: {source}")]
    Json {
        /// The URL.
        url: String,
        /// The parse error.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The body is not UTF-8 text.
    #[error("{url}: response is not UTF-8")]
    Utf8 {
        /// The URL.
        url: String,
    },
    /// The HTTP client could not be built (TLS initialisation).
    #[error("building the HTTP client: {source}")]
    Client {
        /// The HTTP client's error.
        #[source]
        source: Arc<reqwest::Error>,
    },
}

impl SsrfError {
    /// A short, stable label for metrics (`forbidden_address`, `timeout`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            SsrfError::InvalidUrl { .. } => "invalid_url",
            SsrfError::Scheme { .. } => "scheme",
            SsrfError::Userinfo { .. } => "userinfo",
            SsrfError::Port { .. } => "port",
            SsrfError::ForbiddenAddress { .. } => "forbidden_address",
            SsrfError::Dns { .. } => "dns",
            SsrfError::NoAddresses { .. } => "no_addresses",
            SsrfError::TooManyRedirects { .. } => "too_many_redirects",
            SsrfError::BadRedirect { .. } => "bad_redirect",
            SsrfError::Status { .. } => "http_status",
            SsrfError::TooLarge { .. } => "too_large",
            SsrfError::Timeout { .. } => "timeout",
            SsrfError::Transport { .. } => "transport",
            SsrfError::Json { .. } => "json",
            SsrfError::Utf8 { .. } => "utf8",
            SsrfError::Client { .. } => "client",
        }
    }

    /// Whether the guard refused the fetch by rule (as opposed to the fetch failing).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            SsrfError::InvalidUrl { .. }
                | SsrfError::Scheme { .. }
                | SsrfError::Userinfo { .. }
                | SsrfError::Port { .. }
                | SsrfError::ForbiddenAddress { .. }
                | SsrfError::BadRedirect { .. }
                | SsrfError::TooManyRedirects { .. }
        )
    }

    /// The HTTP status, for [`SsrfError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SsrfError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A failed DNS lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist or has no records of the type asked for.
    #[error("{name}: no such name or no records")]
    NotFound {
        /// The name looked up.
        name: String,
    },
    /// The lookup itself failed (timeout, server failure, no configuration).
    #[error("{name}: {message}")]
    Failed {
        /// The name looked up.
        name: String,
        /// The resolver's message.
        message: String,
    },
}

/// A boxed DNS lookup future.
pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// Name resolution, shared by the fetch guard (addresses) and handle resolution (TXT).
///
/// Implementations must not consult the network for names they are not asked about, and
/// should not treat a literal IP address specially: the guard never passes one.
pub trait Dns: Send + Sync + fmt::Debug {
    /// The addresses of `host`. A port of 0 means "the URL's port"; a non-zero port is used
    /// when the URL names none (that is how [`StaticDns`] points a name at a loopback test
    /// server), and is itself checked against the policy.
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<SocketAddr>>;

    /// The TXT records at `name`, each record's character-strings concatenated.
    fn lookup_txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>>;
}

/// The system's resolution: addresses through the OS resolver (`getaddrinfo`, so
/// `/etc/hosts` applies), TXT records through hickory with the system's `resolv.conf`.
/// `localhost` and `*.localhost` resolve to loopback without asking anyone (RFC 6761).
pub struct SystemDns {
    txt: Result<hickory_resolver::TokioResolver, String>,
}

impl fmt::Debug for SystemDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemDns")
            .field("txt_resolver_ready", &self.txt.is_ok())
            .finish()
    }
}

impl Default for SystemDns {
    fn default() -> Self {
        SystemDns::new()
    }
}

impl SystemDns {
    /// Reads the system DNS configuration. If it cannot be read, TXT lookups fail with that
    /// error (address lookups still work through the OS).
    pub fn new() -> Self {
        let txt = hickory_resolver::TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|e| format!("no usable DNS configuration: {e}"));
        SystemDns { txt }
    }
}

/// `localhost.` and `*.localhost.` (case-insensitive, trailing dot optional).
fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

impl Dns for SystemDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<SocketAddr>> {
        Box::pin(async move {
            if is_localhost_name(host) {
                return Ok(vec![
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                ]);
            }
            match tokio::net::lookup_host((host, 0)).await {
                Ok(addrs) => Ok(addrs.collect()),
                Err(e) => Err(DnsError::Failed {
                    name: host.to_owned(),
                    message: e.to_string(),
                }),
            }
        })
    }

    fn lookup_txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            let resolver = self.txt.as_ref().map_err(|message| DnsError::Failed {
                name: name.to_owned(),
                message: message.clone(),
            })?;
            // A trailing dot makes the name fully qualified: no search domains are tried.
            let fqdn = if name.ends_with('.') {
                name.to_owned()
            } else {
                format!("{name}.")
            };
            match resolver.txt_lookup(fqdn).await {
                Ok(lookup) => Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        hickory_resolver::proto::rr::RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect()),
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => Err(DnsError::NotFound {
                    name: name.to_owned(),
                }),
                Err(e) => Err(DnsError::Failed {
                    name: name.to_owned(),
                    message: e.to_string(),
                }),
            }
        })
    }
}

/// A fixed table of names, for tests and the sandbox: never touches the network. Names are
/// matched case-insensitively, without a trailing dot; unknown names are
/// [`DnsError::NotFound`].
#[derive(Debug, Clone, Default)]
pub struct StaticDns {
    addrs: HashMap<String, Vec<SocketAddr>>,
    txt: HashMap<String, Vec<String>>,
}

impl StaticDns {
    /// An empty table.
    pub fn new() -> Self {
        StaticDns::default()
    }

    fn key(name: &str) -> String {
        name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
    }

    /// Adds `ip` as an address of `name` (the URL's port is used).
    pub fn with_ip(self, name: &str, ip: IpAddr) -> Self {
        self.with_addr(name, SocketAddr::new(ip, 0))
    }

    /// Adds `addr` as an address of `name`: a URL without an explicit port connects to
    /// `addr`'s port (0 = the scheme's default).
    pub fn with_addr(mut self, name: &str, addr: SocketAddr) -> Self {
        self.addrs
            .entry(StaticDns::key(name))
            .or_default()
            .push(addr);
        self
    }

    /// Adds a TXT record with `value` at `name`.
    pub fn with_txt(mut self, name: &str, value: &str) -> Self {
        self.txt
            .entry(StaticDns::key(name))
            .or_default()
            .push(value.to_owned());
        self
    }
}

impl Dns for StaticDns {
    fn lookup_ip<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<SocketAddr>> {
        let found = self.addrs.get(&StaticDns::key(host)).cloned();
        Box::pin(async move {
            found.ok_or_else(|| DnsError::NotFound {
                name: host.to_owned(),
            })
        })
    }

    fn lookup_txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        let found = self.txt.get(&StaticDns::key(name)).cloned();
        Box::pin(async move {
            found.ok_or_else(|| DnsError::NotFound {
                name: name.to_owned(),
            })
        })
    }
}

/// The resolver reqwest uses: resolves through [`Dns`], then refuses the whole name if any
/// address is forbidden. This runs for every new connection, so the address checked is the
/// address connected to.
#[derive(Debug)]
struct GuardResolver {
    dns: Arc<dyn Dns>,
    policy: Arc<SsrfPolicy>,
}

impl reqwest::dns::Resolve for GuardResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = Arc::clone(&self.dns);
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_checked(dns.as_ref(), &policy, &host).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Resolves `host` and checks every address (and any port the resolver supplied).
async fn resolve_checked(
    dns: &dyn Dns,
    policy: &SsrfPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, SsrfError> {
    let addrs = dns.lookup_ip(host).await.map_err(|source| SsrfError::Dns {
        host: host.to_owned(),
        source,
    })?;
    if addrs.is_empty() {
        return Err(SsrfError::NoAddresses {
            host: host.to_owned(),
        });
    }
    for addr in &addrs {
        policy
            .check_ip(addr.ip())
            .map_err(|class| SsrfError::ForbiddenAddress {
                host: host.to_owned(),
                addr: addr.ip(),
                class,
            })?;
        if addr.port() != 0 && !policy.port_allowed_for(addr.port(), addr.ip()) {
            return Err(SsrfError::Port {
                target: host.to_owned(),
                port: addr.port(),
            });
        }
    }
    Ok(addrs)
}

/// An HTTP client that only fetches what [`SsrfPolicy`] allows. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    http: reqwest::Client,
    policy: Arc<SsrfPolicy>,
    dns: Arc<dyn Dns>,
}

impl GuardedClient {
    /// A client with the system's name resolution ([`SystemDns`]).
    pub fn new(policy: SsrfPolicy) -> Result<Self, SsrfError> {
        GuardedClient::with_dns(policy, Arc::new(SystemDns::new()))
    }

    /// A client resolving names through `dns`.
    pub fn with_dns(policy: SsrfPolicy, dns: Arc<dyn Dns>) -> Result<Self, SsrfError> {
        let policy = Arc::new(policy);
        let resolver = GuardResolver {
            dns: Arc::clone(&dns),
            policy: Arc::clone(&policy),
        };
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(resolver))
            // Redirects are followed by hand so every hop is checked.
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of the guard's sight.
            .no_proxy()
            .referer(false)
            .connect_timeout(policy.connect_timeout)
            // Backstop only: `fetch` enforces one deadline across all hops.
            .timeout(policy.timeout)
            .user_agent(concat!("atelier-relay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SsrfError::Client {
                source: Arc::new(e),
            })?;
        Ok(GuardedClient { http, policy, dns })
    }

    /// The policy this client enforces.
    pub fn policy(&self) -> &SsrfPolicy {
        &self.policy
    }

    /// The name resolution this client uses (shared with handle resolution).
    pub fn dns(&self) -> &Arc<dyn Dns> {
        &self.dns
    }

    /// Checks `url` against every rule without fetching it, resolving the host if it is a
    /// name, and returns it parsed. A fetch re-checks the addresses when it connects.
    pub async fn check_url(&self, url: &str) -> Result<Url, SsrfError> {
        let parsed = Url::parse(url).map_err(|e| SsrfError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        self.check_parsed(&parsed).await?;
        if let Some(Host::Domain(host)) = parsed.host() {
            resolve_checked(self.dns.as_ref(), &self.policy, host).await?;
        }
        Ok(parsed)
    }

    /// The URL rules: scheme, userinfo, literal addresses, port. A name with a port outside
    /// the allowed list is resolved here (sandbox only), because the port is allowed only if
    /// every address is loopback and the connect-time resolver does not see the port.
    async fn check_parsed(&self, url: &Url) -> Result<(), SsrfError> {
        let shown = || url.as_str().to_owned();
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(SsrfError::Scheme {
                url: shown(),
                scheme: scheme.to_owned(),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SsrfError::Userinfo { url: shown() });
        }
        let Some(host) = url.host() else {
            return Err(SsrfError::InvalidUrl {
                url: shown(),
                reason: "no host".into(),
            });
        };
        let literal = match host {
            Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            Host::Domain(_) => None,
        };
        if let Some(ip) = literal {
            self.policy
                .check_ip(ip)
                .map_err(|class| SsrfError::ForbiddenAddress {
                    host: host.to_string(),
                    addr: ip,
                    class,
                })?;
        }
        let Some(port) = url.port_or_known_default() else {
            return Err(SsrfError::InvalidUrl {
                url: shown(),
                reason: "no port".into(),
            });
        };
        if self.policy.allowed_ports.contains(&port) {
            return Ok(());
        }
        let port_error = || SsrfError::Port {
            target: shown(),
            port,
        };
        if !self.policy.allow_loopback {
            return Err(port_error());
        }
        match (literal, host) {
            (Some(ip), _) if is_loopback(ip) => Ok(()),
            (None, Host::Domain(name)) => {
                let addrs = resolve_checked(self.dns.as_ref(), &self.policy, name).await?;
                if addrs.iter().all(|a| is_loopback(a.ip())) {
                    Ok(())
                } else {
                    Err(port_error())
                }
            }
            _ => Err(port_error()),
        }
    }

    /// Fetches `url` and parses its body (at most [`SsrfPolicy::max_response_bytes`]) as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, SsrfError> {
        let body = self
            .fetch(
                url,
                self.policy.max_response_bytes,
                Some("application/json"),
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| SsrfError::Json {
            url: url.to_owned(),
            source: Arc::new(e),
        })
    }

    /// Fetches `url` as UTF-8 text of at most `limit` bytes.
    pub async fn get_text(&self, url: &str, limit: usize) -> Result<String, SsrfError> {
        let body = self.fetch(url, limit, None).await?;
        String::from_utf8(body).map_err(|_| SsrfError::Utf8 {
            url: url.to_owned(),
        })
    }

    /// Fetches `url`'s body, at most `limit` bytes (and never more than the policy's cap).
    pub async fn get_bytes(&self, url: &str, limit: usize) -> Result<Vec<u8>, SsrfError> {
        self.fetch(url, limit, None).await
    }

    /// One guarded GET with redirects, under one deadline.
    async fn fetch(
        &self,
        url: &str,
        limit: usize,
        accept: Option<&'static str>,
    ) -> Result<Vec<u8>, SsrfError> {
        let limit = limit.min(self.policy.max_response_bytes);
        let deadline = self.policy.timeout;
        match tokio::time::timeout(deadline, self.fetch_hops(url, limit, accept)).await {
            Ok(result) => result,
            Err(_) => Err(SsrfError::Timeout {
                url: url.to_owned(),
                after: deadline,
            }),
        }
    }

    async fn fetch_hops(
        &self,
        url: &str,
        limit: usize,
        accept: Option<&'static str>,
    ) -> Result<Vec<u8>, SsrfError> {
        let mut current = Url::parse(url).map_err(|e| SsrfError::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let mut redirects = 0usize;
        loop {
            self.check_parsed(&current).await?;
            let mut request = self.http.get(current.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.map_transport(&current, e))?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let next = redirect_target(&current, &response)?;
                redirects += 1;
                if redirects > self.policy.max_redirects {
                    return Err(SsrfError::TooManyRedirects {
                        url: current.to_string(),
                        max: self.policy.max_redirects,
                    });
                }
                tracing::debug!(from = %current, to = %next, "following redirect");
                current = next;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(SsrfError::Status {
                    url: current.to_string(),
                    status,
                });
            }
            return self.read_body(&current, response, limit).await;
        }
    }

    /// Reads the body, refusing it as soon as it exceeds `limit`.
    async fn read_body(
        &self,
        url: &Url,
        mut response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, SsrfError> {
        let too_large = || SsrfError::TooLarge {
            url: url.to_string(),
            limit,
        };
        let declared = response.content_length();
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large());
        }
        let initial = declared.map_or(0, |len| len as usize).min(64 * 1024);
        let mut body = Vec::with_capacity(initial);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.map_transport(url, e))?
        {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Turns a reqwest error into the guard's refusal it carries (from the resolver), a
    /// timeout, or a transport error.
    fn map_transport(&self, url: &Url, error: reqwest::Error) -> SsrfError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = source {
            if let Some(refusal) = e.downcast_ref::<SsrfError>() {
                return refusal.clone();
            }
            source = e.source();
        }
        if error.is_timeout() {
            return SsrfError::Timeout {
                url: url.to_string(),
                after: self.policy.timeout,
            };
        }
        SsrfError::Transport {
            url: url.to_string(),
            source: Arc::new(error),
        }
    }
}

/// The checked-later target of a redirect response from `current`.
fn redirect_target(current: &Url, response: &reqwest::Response) -> Result<Url, SsrfError> {
    let bad = |reason: String| SsrfError::BadRedirect {
        url: current.to_string(),
        reason,
    };
    let location = response
        .headers()
        .get(LOCATION)
        .ok_or_else(|| bad("no Location header".into()))?
        .to_str()
        .map_err(|_| bad("Location is not ASCII".into()))?;
    let next = current
        .join(location)
        .map_err(|e| bad(format!("Location {location:?}: {e}")))?;
    if current.scheme() == "https" && next.scheme() == "http" {
        return Err(bad(format!("downgrade from https to {next}")));
    }
    Ok(next)
}
