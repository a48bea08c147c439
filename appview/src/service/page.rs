//! `GET /`: the public Atmosphere page, the AC network as HTML for a person without a
//! client: the newest AC records (paintings with their image, KidLisp snippets, moods,
//! tapes, pieces, news), each linking to its page on aesthetic.computer, with older pages
//! through the feed's cursor.
//!
//! It reads the same feed query as `computer.aesthetic.feed.getAtmosphere`, so hidden
//! records (`!hide`, `!takedown`, `!suspend`, inactive authors) never show; any other label
//! on a record puts it behind a `<details>` click-through that names the labels, which
//! works without JavaScript. Text is escaped by the template engine. Images are loaded
//! from the record's own `imageUrl` only when it is an `https` URL, and the page's content
//! security policy allows nothing else: no script, no other origins.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::Shared;
use crate::store::{FeedQuery, RecordView, Store};

/// Records per page.
const PAGE: usize = 30;
/// The longest text excerpt shown (characters).
const EXCERPT: usize = 280;
/// Where AC's pages live.
const AC: &str = "https://aesthetic.computer";

/// One record as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    /// `painting`, `kidlisp`, `mood`, ...
    kind: String,
    /// `@handle`, or the DID.
    author: String,
    when: String,
    /// Its page on aesthetic.computer, when it has one.
    link: Option<String>,
    /// An https image to show (a painting's `imageUrl`).
    image: Option<String>,
    /// A title or short name (a code, a slug, a headline).
    title: String,
    /// Text to show (a mood, KidLisp source, a news body), cut to [`EXCERPT`].
    text: String,
    /// KidLisp source is shown as code.
    code: bool,
    /// Labels that put the record behind a click-through.
    labels: Vec<String>,
}

fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(EXCERPT).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

impl Item {
    fn from(view: &RecordView) -> Item {
        let record = &view.record;
        let field = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or("");
        let kind = view
            .collection
            .strip_prefix("computer.aesthetic.")
            .unwrap_or(&view.collection)
            .to_owned();
        let code = field("code");
        let slug = field("slug");
        let link = match kind.as_str() {
            "painting" if !code.is_empty() => Some(format!("{AC}/#{code}")),
            "kidlisp" if !code.is_empty() => Some(format!("{AC}/${code}")),
            "tape" if !code.is_empty() => Some(format!("{AC}/!{code}")),
            "piece" if !slug.is_empty() => Some(format!("{AC}/{slug}")),
            "news" | "paper" => Some(field("link"))
                .or(Some(field("pdfUrl")))
                .filter(|u| u.starts_with("https://"))
                .map(str::to_owned),
            _ => None,
        };
        let image = Some(field("imageUrl"))
            .filter(|u| kind == "painting" && u.starts_with("https://"))
            .map(str::to_owned);
        let (title, text) = match kind.as_str() {
            "painting" | "tape" => (format!("#{code}"), String::new()),
            "kidlisp" => (format!("${code}"), excerpt(field("source"))),
            // Some moods in the wild carry `text` instead of `mood`.
            "mood" => (
                String::new(),
                excerpt(if field("mood").is_empty() {
                    field("text")
                } else {
                    field("mood")
                }),
            ),
            "piece" => (slug.to_owned(), String::new()),
            "news" => (field("headline").to_owned(), excerpt(field("body"))),
            "paper" => (field("title").to_owned(), String::new()),
            _ => (String::new(), String::new()),
        };
        Item {
            code: kind == "kidlisp",
            kind,
            author: view
                .handle
                .as_ref()
                .map_or_else(|| view.did.clone(), |h| format!("@{h}")),
            when: view.created_at.clone().unwrap_or_default(),
            link,
            image,
            title,
            text,
            labels: view
                .labels
                .iter()
                .flatten()
                .map(|l| l.val.clone())
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "appview/atmosphere.html", config = "askama.toml")]
struct AtmospherePage {
    items: Vec<Item>,
    /// The query string of the next page.
    older: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageParams {
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /`.
pub(crate) async fn atmosphere(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<PageParams>,
) -> Response {
    let query = FeedQuery {
        cursor: params.cursor,
        limit: PAGE,
        ..FeedQuery::default()
    };
    let page = match shared.store.feed(&query).await {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "the Atmosphere page");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The Atmosphere could not be read just now.",
            )
                .into_response();
        }
    };
    let older = page.cursor.map(|c| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", &c)
            .finish()
    });
    let html = match (AtmospherePage {
        items: page.records.iter().map(Item::from).collect(),
        older,
    })
    .render()
    {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "rendering the Atmosphere page");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be drawn.",
            )
                .into_response();
        }
    };
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src https:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(collection: &str, record: Value) -> RecordView {
        RecordView {
            cid: "bafyreiexample".into(),
            collection: collection.into(),
            created_at: Some("2026-12-06T12:00:00Z".into()),
            did: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa".into(),
            handle: Some("ana.test".into()),
            labels: None,
            record,
            repairs: Vec::new(),
            uri: format!("at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/{collection}/1"),
        }
    }

    #[test]
    fn records_become_links_to_aesthetic_computer() {
        let cases = [
            (
                view(
                    "computer.aesthetic.painting",
                    json!({"code": "a3b", "imageUrl": "https://aesthetic.computer/media/paintings/a3b"}),
                ),
                Some("https://aesthetic.computer/#a3b"),
                Some("https://aesthetic.computer/media/paintings/a3b"),
            ),
            (
                view(
                    "computer.aesthetic.painting",
                    json!({"code": "x", "imageUrl": "http://insecure/x.png"}),
                ),
                Some("https://aesthetic.computer/#x"),
                None,
            ),
            (
                view(
                    "computer.aesthetic.kidlisp",
                    json!({"code": "k1", "source": "(wipe blue)"}),
                ),
                Some("https://aesthetic.computer/$k1"),
                None,
            ),
            (
                view("computer.aesthetic.tape", json!({"code": "t9"})),
                Some("https://aesthetic.computer/!t9"),
                None,
            ),
            (
                view("computer.aesthetic.piece", json!({"slug": "wand"})),
                Some("https://aesthetic.computer/wand"),
                None,
            ),
            (
                view(
                    "computer.aesthetic.news",
                    json!({"headline": "h", "link": "javascript:alert(1)"}),
                ),
                None,
                None,
            ),
            (
                view("computer.aesthetic.mood", json!({"text": "hi"})),
                None,
                None,
            ),
        ];
        for (view, link, image) in cases {
            let item = Item::from(&view);
            assert_eq!(item.link.as_deref(), link, "{item:?}");
            assert_eq!(item.image.as_deref(), image, "{item:?}");
            assert_eq!(item.author, "@ana.test");
        }
        let mood = Item::from(&view("computer.aesthetic.mood", json!({"text": "quirky"})));
        assert_eq!(mood.text, "quirky");
        let long = Item::from(&view(
            "computer.aesthetic.mood",
            json!({"mood": "x".repeat(300)}),
        ));
        assert_eq!(long.text.chars().count(), EXCERPT + 1);
    }
}
