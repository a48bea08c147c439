//! Upstream hosts: URL and hostname normalization, and per-host ingest limits.

use url::Url;

use crate::sync::client::SUBSCRIBE_REPOS_PATH;

/// The `subscribeRepos` URL for an upstream given as `wss://host`, `ws://host:port`, or a
/// full `…/xrpc/com.atproto.sync.subscribeRepos` URL. Errors say what is wrong, in words.
pub(crate) fn upstream_url(given: &str) -> Result<Url, String> {
    let mut url = Url::parse(given).map_err(|e| format!("{given:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!(
            "{given:?}: scheme must be ws or wss, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{given:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{given:?}: leave out the query and fragment (the relay keeps its own cursor)"
        ));
    }
    match url.path() {
        "" | "/" => url.set_path(SUBSCRIBE_REPOS_PATH),
        p if p == SUBSCRIBE_REPOS_PATH => {}
        p => {
            return Err(format!(
                "{given:?}: path must be empty or {SUBSCRIBE_REPOS_PATH}, not {p:?}"
            ));
        }
    }
    Ok(url)
}

/// The host key of an upstream URL: `host` or `host:port` (lowercase), as listHosts shows it.
pub(crate) fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Whether two host keys name the same host. With `loopback_aliases` (the sandbox),
/// `localhost`, `127.0.0.1` and `[::1]` on the same port are one host: a sandbox PDS
/// advertises `http://localhost:PORT` while an upstream may be configured by address.
pub(crate) fn same_host(a: &str, b: &str, loopback_aliases: bool) -> bool {
    if a == b {
        return true;
    }
    if !loopback_aliases {
        return false;
    }
    fn split(key: &str) -> (&str, &str) {
        match key.rfind(':') {
            Some(i) if !key[i..].contains(']') => (&key[..i], &key[i + 1..]),
            _ => (key, ""),
        }
    }
    let is_loopback = |h: &str| matches!(h, "localhost" | "127.0.0.1" | "[::1]");
    let ((ha, pa), (hb, pb)) = (split(a), split(b));
    pa == pb && is_loopback(ha) && is_loopback(hb)
}

/// A hostname as given to `requestCrawl` or an allow-list, normalized to `host[:port]`
/// lowercase. Schemes, paths and user info are refused.
pub(crate) fn normalize_host(given: &str) -> Result<String, String> {
    let trimmed = given.trim();
    if trimmed.is_empty() {
        return Err("hostname is empty".into());
    }
    if trimmed.len() > 253 + 6 {
        return Err(format!("hostname {trimmed:?} is too long"));
    }
    if trimmed.contains("://") || trimmed.contains('/') || trimmed.contains('@') {
        return Err(format!(
            "{trimmed:?} must be a bare hostname (optionally with :port), without scheme or path"
        ));
    }
    let url = Url::parse(&format!("wss://{trimmed}"))
        .map_err(|e| format!("{trimmed:?} is not a hostname: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{trimmed:?} is not a hostname"));
    }
    Ok(host_key(&url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_aliases_only_in_the_sandbox() {
        let cases = [
            ("pds.example", "pds.example", false, true),
            ("localhost:2583", "127.0.0.1:2583", true, true),
            ("[::1]:2583", "localhost:2583", true, true),
            ("localhost:2583", "127.0.0.1:2583", false, false),
            ("localhost:2583", "127.0.0.1:2584", true, false),
            ("localhost", "127.0.0.1:80", true, false),
            ("evil.example:2583", "127.0.0.1:2583", true, false),
        ];
        for (a, b, sandbox, want) in cases {
            assert_eq!(
                same_host(a, b, sandbox),
                want,
                "{a} vs {b} (sandbox {sandbox})"
            );
        }
    }

    #[test]
    fn upstream_urls() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "wss://pds.example.com",
                Ok("wss://pds.example.com/xrpc/com.atproto.sync.subscribeRepos"),
            ),
            (
                "ws://127.0.0.1:2583/",
                Ok("ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos"),
            ),
            (
                "wss://r.example/xrpc/com.atproto.sync.subscribeRepos",
                Ok("wss://r.example/xrpc/com.atproto.sync.subscribeRepos"),
            ),
            ("https://pds.example.com", Err("scheme must be ws or wss")),
            ("wss://pds.example.com/other", Err("path must be empty")),
            (
                "wss://pds.example.com/?cursor=5",
                Err("leave out the query"),
            ),
            ("pds.example.com", Err("is not a URL")),
        ];
        for (given, want) in cases {
            match (upstream_url(given), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_str(), *want, "{given}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{given}: {got}"),
                (got, want) => panic!("{given}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            normalize_host("PDS.Example.com").unwrap(),
            "pds.example.com"
        );
        assert_eq!(normalize_host("localhost:2583").unwrap(), "localhost:2583");
        assert_eq!(
            normalize_host("pds.example.com:443").unwrap(),
            "pds.example.com"
        );
        for bad in ["", "https://x.com", "x.com/path", "u@x.com", "a b"] {
            assert!(normalize_host(bad).is_err(), "{bad:?}");
        }
    }
}
