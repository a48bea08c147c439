//! The OAuth client's HTTP: every request under the sync layer's SSRF guard.
//!
//! Discovery documents are plain GETs and go through [`GuardedClient::get_json`]. The
//! protocol's POSTs (PAR, token, revocation) and the PDS's XRPC calls need methods,
//! headers and response headers that `GuardedClient` does not expose, so this module
//! builds a second reqwest client that applies the same policy: the URL is checked with
//! [`GuardedClient::check_url`] before sending, and name resolution at connect time goes
//! through the guard's own [`Dns`](atelier_relay::sync::ssrf::Dns) with every address
//! checked by [`SsrfPolicy::check_ip`] (so DNS rebinding cannot slip past the URL check).
//! Redirects are never followed (an OAuth endpoint or PDS that redirects is an error),
//! bodies are capped while they stream, and each request has one deadline.

use std::sync::Arc;

use atelier_relay::sync::ssrf::{GuardedClient, SsrfError, SsrfPolicy};
use reqwest::header::HeaderMap;

use super::OAuthError;

/// A response read in full (status, headers, body).
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The guarded client for requests that are not plain GETs.
#[derive(Debug, Clone)]
pub(crate) struct OAuthHttp {
    guard: GuardedClient,
    http: reqwest::Client,
}

/// Resolves names through the guard's DNS and refuses any forbidden address.
#[derive(Debug)]
struct GuardResolve {
    guard: GuardedClient,
}

impl reqwest::dns::Resolve for GuardResolve {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = guard
                .dns()
                .lookup_ip(&host)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let policy: &SsrfPolicy = guard.policy();
            for addr in &addrs {
                if let Err(class) = policy.check_ip(addr.ip()) {
                    let err = SsrfError::ForbiddenAddress {
                        host: host.clone(),
                        addr: addr.ip(),
                        class,
                    };
                    return Err(Box::new(err) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

impl OAuthHttp {
    /// A client enforcing `guard`'s policy through `guard`'s DNS.
    pub(crate) fn new(guard: GuardedClient) -> Result<OAuthHttp, OAuthError> {
        let policy = guard.policy().clone();
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardResolve {
                guard: guard.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .referer(false)
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .user_agent(concat!("atelier-appview/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Transport {
                url: String::new(),
                source: Arc::new(e),
            })?;
        Ok(OAuthHttp { guard, http })
    }

    /// The guard (for GETs of discovery documents).
    pub(crate) fn guard(&self) -> &GuardedClient {
        &self.guard
    }

    /// Checks `url`, then sends `method` with `headers` and `body` (form, JSON or bytes),
    /// and reads the whole response (at most the policy's cap).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, OAuthError> {
        let checked = self.guard.check_url(url).await?;
        let mut request = self.http.request(method, checked).headers(headers);
        request = match body {
            Body::None => request,
            Body::Form(pairs) => request.form(&pairs),
            Body::Json(value) => request.json(&value),
            Body::Bytes {
                mime,
                data,
                progress,
            } => {
                let request = request
                    .header(reqwest::header::CONTENT_TYPE, mime)
                    .header(reqwest::header::CONTENT_LENGTH, data.len());
                match progress {
                    Some(progress) => request.body(streamed(data, progress)),
                    None => request.body(data),
                }
            }
        };
        let transport = |e: reqwest::Error| OAuthError::Transport {
            url: url.to_owned(),
            source: Arc::new(e),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let limit = self.guard.policy().max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len().saturating_add(chunk.len()) > limit {
                return Err(OAuthError::Ssrf(SsrfError::TooLarge {
                    url: url.to_owned(),
                    limit,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A request body. Debug names only the kind: forms carry codes and tokens.
pub(crate) enum Body {
    /// No body.
    None,
    /// `application/x-www-form-urlencoded` (the OAuth endpoints).
    Form(Vec<(&'static str, String)>),
    /// JSON (XRPC procedures).
    Json(serde_json::Value),
    /// Raw bytes of a declared type (blob uploads), sent in chunks so that `progress`
    /// (if any) learns how many bytes have gone.
    Bytes {
        /// The `Content-Type`.
        mime: String,
        /// The bytes (shared: a retry sends the same buffer again).
        data: bytes::Bytes,
        /// Called with (bytes sent, total) as chunks go out.
        progress: Option<Progress>,
    },
}

/// An upload progress callback: (bytes sent so far, total bytes).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The chunk size raw bodies are streamed in (one progress call per chunk).
const UPLOAD_CHUNK: usize = 256 * 1024;

/// `data` as a streamed request body, reporting each chunk to `progress`.
fn streamed(data: bytes::Bytes, progress: Progress) -> reqwest::Body {
    let total = data.len() as u64;
    let chunks: Vec<bytes::Bytes> = (0..data.len())
        .step_by(UPLOAD_CHUNK)
        .map(|start| data.slice(start..(start + UPLOAD_CHUNK).min(data.len())))
        .collect();
    let mut sent = 0u64;
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |chunk| {
        sent += chunk.len() as u64;
        progress(sent, total);
        Ok::<_, std::io::Error>(chunk)
    }));
    reqwest::Body::wrap_stream(stream)
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::None => "Body::None",
            Body::Form(_) => "Body::Form(..)",
            Body::Json(_) => "Body::Json(..)",
            Body::Bytes { .. } => "Body::Bytes(..)",
        })
    }
}
