//! The AC client kit served by the AppView: the ES modules of `clients/js/` under
//! `/kit/`, and a demo page using them.
//!
//! | route | serves |
//! |---|---|
//! | `GET /kit/atproto.mjs` | `createClient`, the errors, `LIMITS` and the validators |
//! | `GET /kit/kidlisp.mjs` | the KidLisp primitives |
//! | `GET /kit/feed-view.mjs` | `<atelier-feed>` (imports `./atproto.mjs`) |
//! | `GET /kit/demo.mjs` | the demo page's script |
//! | `GET /kit/demo` | the demo page: the session, "publish a painting" with a progress bar, the feed |
//!
//! The files are compiled into the binary (`include_str!`), so the kit a page loads is
//! always the one this AppView speaks. They are served with an `ETag` (a digest of the
//! file) and `Cache-Control: no-cache`: browsers keep them and revalidate, so a new
//! AppView's kit is picked up on the next load without versioned URLs.
//!
//! The demo page has a strict content security policy: scripts only from this origin (the
//! page itself has no inline script; its module is `/kit/demo.mjs`), requests only to this
//! origin (the kit's fetches, the upload's XMLHttpRequest, the progress stream), images
//! from https (paintings' `imageUrl`) and `blob:`/`data:` (the preview of the thumbnail).
//! Inline styles are allowed because `<atelier-feed>` styles its shadow root with a
//! `<style>` element.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The media type of the kit's modules.
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
/// The media type of the demo page.
const HTML: &str = "text/html; charset=utf-8";
/// Keep, but revalidate every time (the URLs carry no version).
const CACHE: &str = "no-cache";
/// The demo page's policy (see the module header).
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   img-src 'self' https: data: blob:; style-src 'self' 'unsafe-inline'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file the kit serves: its bytes, media type and validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// A strong `ETag`: the first 16 bytes of the body's SHA-256, in hex, quoted.
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
        let hex = data_encoding::HEXLOWER.encode(digest.as_ref().get(..16).unwrap_or_default());
        Asset {
            body,
            content_type,
            etag: format!("\"{hex}\""),
        }
    }

    /// The file, or `304 Not Modified` when the request already holds this version.
    fn serve(&self, headers: &HeaderMap, csp: Option<&'static str>) -> Response {
        let fresh = headers
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == self.etag));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(CONTENT_TYPE, self.content_type)], self.body).into_response()
        };
        let out = response.headers_mut();
        out.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE));
        out.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Ok(etag) = HeaderValue::from_str(&self.etag) {
            out.insert(ETAG, etag);
        }
        if let Some(csp) = csp {
            out.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
            out.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        }
        response
    }
}

static ATPROTO: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../../../clients/js/atproto.mjs"), JAVASCRIPT));
static KIDLISP: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../../../clients/js/kidlisp.mjs"), JAVASCRIPT));
static FEED_VIEW: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../../clients/js/feed-view.mjs"),
        JAVASCRIPT,
    )
});
static DEMO_SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(include_str!("../../../clients/js/demo.mjs"), JAVASCRIPT));
static DEMO_PAGE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../../templates/appview/kit_demo.html"),
        HTML,
    )
});

async fn atproto(headers: HeaderMap) -> Response {
    ATPROTO.serve(&headers, None)
}

async fn kidlisp(headers: HeaderMap) -> Response {
    KIDLISP.serve(&headers, None)
}

async fn feed_view(headers: HeaderMap) -> Response {
    FEED_VIEW.serve(&headers, None)
}

async fn demo_script(headers: HeaderMap) -> Response {
    DEMO_SCRIPT.serve(&headers, None)
}

async fn demo_page(headers: HeaderMap) -> Response {
    DEMO_PAGE.serve(&headers, Some(CSP))
}

/// The kit's routes: its modules and the demo page (see the module header).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/kit/atproto.mjs", get(atproto))
        .route("/kit/kidlisp.mjs", get(kidlisp))
        .route("/kit/feed-view.mjs", get(feed_view))
        .route("/kit/demo.mjs", get(demo_script))
        .route("/kit/demo", get(demo_page))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(response: &Response, name: axum::http::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn modules_are_javascript_with_a_validator() {
        let response = ATPROTO.serve(&HeaderMap::new(), None);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_TYPE), JAVASCRIPT);
        assert_eq!(header(&response, CACHE_CONTROL), CACHE);
        let etag = header(&response, ETAG).to_owned();
        assert_eq!(etag.len(), 34, "{etag}");

        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, HeaderValue::from_str(&etag).unwrap());
        let cached = ATPROTO.serve(&again, None);
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&cached, ETAG), etag);

        let mut stale = HeaderMap::new();
        stale.insert(IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(ATPROTO.serve(&stale, None).status(), StatusCode::OK);
    }

    #[test]
    fn the_demo_page_loads_only_modules_from_its_own_origin() {
        let response = DEMO_PAGE.serve(&HeaderMap::new(), Some(CSP));
        assert_eq!(header(&response, CONTENT_TYPE), HTML);
        assert!(header(&response, CONTENT_SECURITY_POLICY).contains("script-src 'self';"));
        // No inline script: every <script> names a module on /kit/.
        let page = DEMO_PAGE.body;
        let scripts: Vec<&str> = page.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        for script in scripts {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(tag.contains("type=\"module\""), "{tag}");
            assert!(tag.contains("src=\"/kit/"), "{tag}");
            assert!(script.starts_with(&format!("{tag}></script>")), "{script}");
        }
        // The modules it names are the ones served.
        assert!(page.contains("/kit/demo.mjs"));
        assert!(DEMO_SCRIPT.body.contains("./atproto.mjs"));
        assert!(FEED_VIEW.body.contains("./atproto.mjs"));
        assert!(!KIDLISP.body.is_empty());
    }
}
