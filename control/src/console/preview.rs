//! What a moderator sees of a subject: the record fetched from its author's own PDS (not
//! from the AppView, which stops serving a record once it is taken down), and its media
//! through the console itself.
//!
//! Both go through the sync layer's resolver (DID document -> PDS endpoint) and its
//! SSRF-guarded client, with size limits. Media are proxied rather than linked so the
//! moderator's browser never contacts the author's PDS (whose operator would otherwise see
//! who looks at reported content) and so the console's content security policy can stay
//! `'self'`; the proxy serves only bytes whose signature is an image or MP4 video, with a
//! type chosen from the bytes, never from the upstream's `Content-Type`.

use atelier_relay::sync::identity::Resolver;
use atelier_relay::sync::ssrf::GuardedClient;
use serde_json::Value;

/// The largest record accepted (a KidLisp source is at most 50,000 characters).
const MAX_RECORD_BYTES: usize = 1 << 20;
/// The largest blob proxied (the tape video limit).
pub const MAX_BLOB_BYTES: usize = 50 << 20;

/// How a record is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preview {
    /// An account subject: nothing to fetch.
    Account,
    /// A painting: its thumbnail blob (CID) and the full-size image URL.
    Painting {
        /// The thumbnail blob's CID.
        thumbnail: Option<String>,
        /// `imageUrl` (linked, not loaded).
        image_url: Option<String>,
    },
    /// A tape: its video blob (CID).
    Tape {
        /// The video blob's CID.
        video: Option<String>,
    },
    /// Text to show as is (KidLisp source, a mood, news).
    Text {
        /// What the text is.
        what: &'static str,
        /// The text.
        text: String,
    },
    /// Anything else: the record's JSON.
    Json(String),
    /// The record could not be fetched (deleted, or its PDS unreachable).
    Unavailable(String),
}

/// Fetches and classifies the record `at://did/collection/rkey`.
pub async fn record(
    resolver: &Resolver,
    http: &GuardedClient,
    did: &str,
    collection: &str,
    rkey: &str,
) -> Preview {
    let pds = match pds_of(resolver, did).await {
        Ok(pds) => pds,
        Err(e) => return Preview::Unavailable(e),
    };
    let url = format!(
        "{pds}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={collection}&rkey={rkey}"
    );
    let body = match http.get_bytes(&url, MAX_RECORD_BYTES).await {
        Ok(body) => body,
        Err(e) => return Preview::Unavailable(format!("the author's PDS did not give it: {e}")),
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(answer) => classify(collection, answer.get("value").unwrap_or(&Value::Null)),
        Err(e) => Preview::Unavailable(format!("the author's PDS answered something else: {e}")),
    }
}

/// How `value`, a record of `collection`, is shown.
pub fn classify(collection: &str, value: &Value) -> Preview {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let blob = |key: &str| {
        value
            .get(key)
            .and_then(|b| b.get("ref"))
            .and_then(|r| r.get("$link"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match collection {
        "computer.aesthetic.painting" => Preview::Painting {
            thumbnail: blob("thumbnail"),
            image_url: text("imageUrl"),
        },
        "computer.aesthetic.tape" => Preview::Tape {
            video: blob("video"),
        },
        "computer.aesthetic.kidlisp" => Preview::Text {
            what: "KidLisp source",
            text: text("source").unwrap_or_default(),
        },
        // Some moods in the wild carry `text` instead of `mood`.
        "computer.aesthetic.mood" => Preview::Text {
            what: "Mood",
            text: text("mood").or_else(|| text("text")).unwrap_or_default(),
        },
        "computer.aesthetic.news" => Preview::Text {
            what: "News",
            text: format!(
                "{}\n\n{}",
                text("headline").unwrap_or_default(),
                text("body").unwrap_or_default()
            ),
        },
        _ => Preview::Json(serde_json::to_string_pretty(value).unwrap_or_default()),
    }
}

/// The PDS endpoint of `did`, without a trailing slash.
async fn pds_of(resolver: &Resolver, did: &str) -> Result<String, String> {
    let doc = resolver
        .resolve_did(did)
        .await
        .map_err(|e| format!("cannot resolve {did}: {e}"))?;
    doc.pds_endpoint()
        .map(|p| p.trim_end_matches('/').to_owned())
        .ok_or_else(|| format!("{did} names no PDS"))
}

/// A blob of `did` from its PDS, with the media type its bytes show; `Err` says why not.
pub async fn blob(
    resolver: &Resolver,
    http: &GuardedClient,
    did: &str,
    cid: &str,
) -> Result<(&'static str, Vec<u8>), String> {
    let pds = pds_of(resolver, did).await?;
    let url = format!("{pds}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}");
    let bytes = http
        .get_bytes(&url, MAX_BLOB_BYTES)
        .await
        .map_err(|e| format!("the author's PDS did not give it: {e}"))?;
    let mime = sniff(&bytes).ok_or("not an image or an MP4 video")?;
    Ok((mime, bytes))
}

/// The media type the first bytes show: PNG, JPEG, GIF, WebP or MP4; anything else `None`.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Some("image/png"),
        [0xff, 0xd8, 0xff, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some("image/gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("video/mp4"),
        _ => None,
    }
}

/// Whether `value` is safe to put in the query of a console URL as a DID or a CID (the
/// proxy's parameters): the syntax of either, no more.
pub fn is_plain_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 2048
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn media_types_come_from_the_bytes() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"\x89PNG\r\n\x1a\n rest", Some("image/png")),
            (b"\xff\xd8\xff\xe0", Some("image/jpeg")),
            (b"GIF89a...", Some("image/gif")),
            (b"RIFF\0\0\0\0WEBPVP8 ", Some("image/webp")),
            (b"\0\0\0\x18ftypmp42", Some("video/mp4")),
            (b"<svg xmlns=", None),
            (b"<html>", None),
            (b"", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(sniff(bytes), *want, "{bytes:?}");
        }
    }

    #[test]
    fn records_are_classified_by_collection() {
        let painting = json!({"thumbnail": {"$type": "blob", "ref": {"$link": "bafkreiabc"}}, "imageUrl": "https://x/y.png"});
        assert_eq!(
            classify("computer.aesthetic.painting", &painting),
            Preview::Painting {
                thumbnail: Some("bafkreiabc".into()),
                image_url: Some("https://x/y.png".into())
            }
        );
        assert_eq!(
            classify("computer.aesthetic.mood", &json!({"text": "hi"})),
            Preview::Text {
                what: "Mood",
                text: "hi".into()
            }
        );
        assert_eq!(
            classify("computer.aesthetic.tape", &json!({})),
            Preview::Tape { video: None }
        );
        assert!(matches!(
            classify("app.bsky.feed.post", &json!({"text": "x"})),
            Preview::Json(_)
        ));
        assert!(is_plain_id("did:plc:abc"));
        assert!(is_plain_id("did:web:localhost%3A8080"));
        assert!(!is_plain_id("a&b"));
        assert!(!is_plain_id(""));
    }
}
