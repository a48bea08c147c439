//! A browser-like HTTP client for the admin console's tests: keeps the console's cookies
//! itself (so tests see every `Set-Cookie`), follows no redirects (so they see every
//! status), posts forms from the console's own `Origin`, and knows the console's sign-in
//! and password forms.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

/// The longest one request may take.
const WAIT: Duration = Duration::from_secs(20);

/// An answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub(crate) fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The CSRF token of the page's first form.
    pub(crate) fn csrf(&self) -> String {
        between(&self.body, "name=\"csrf\" value=\"", "\"")
            .unwrap_or_else(|| panic!("no CSRF field in:\n{}", self.body))
            .to_owned()
    }
}

pub(crate) fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// A browser-like client over plain HTTP that keeps the console's cookies itself (so the
/// tests see every `Set-Cookie`) and follows no redirects (so they see every status).
pub(crate) struct Agent {
    client: reqwest::Client,
    base: String,
    /// The `Origin` its forms are posted from: the console's own.
    pub(crate) origin: String,
    /// The cookies it holds, by name.
    pub(crate) cookies: BTreeMap<String, String>,
}

impl Agent {
    /// An agent for the console at `base` (`http://127.0.0.1:PORT`).
    pub(crate) fn new(base: &str) -> Agent {
        Agent {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(WAIT)
                .build()
                .expect("client"),
            base: base.to_owned(),
            origin: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    /// Points the agent at the console at `base` (after a restart, on a new port).
    pub(crate) fn reconnect(&mut self, base: &str) {
        self.base = base.to_owned();
        self.origin = base.to_owned();
    }

    pub(crate) async fn get(&mut self, path: &str) -> Answer {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts `form` as the console's forms do, with `origin` as the `Origin` header.
    pub(crate) async fn post_from(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: &str,
    ) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("origin", origin)
            .form(form);
        self.send(request).await
    }

    /// Posts `form` from the console's own origin.
    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let origin = self.origin.clone();
        self.post_from(path, form, &origin).await
    }

    pub(crate) async fn send(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie.join("; "))
        };
        let response = request.send().await.expect("the console answers");
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE).iter() {
            let set = set.to_str().expect("ASCII cookie");
            let pair = set.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Opens the sign-in page and signs in.
    pub(crate) async fn sign_in(&mut self, name: &str, password: &str) -> Answer {
        let page = self.get("/login").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let csrf = page.csrf();
        self.post(
            "/login",
            &[("csrf", &csrf), ("name", name), ("password", password)],
        )
        .await
    }

    /// Changes the signed-in user's password from `current` to `new`.
    pub(crate) async fn change_password(&mut self, current: &str, new: &str) {
        let page = self.get("/password").await;
        let csrf = page.csrf();
        let done = self
            .post(
                "/password",
                &[
                    ("csrf", &csrf),
                    ("current", current),
                    ("new", new),
                    ("confirm", new),
                ],
            )
            .await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), "/");
    }

    /// Signs the bootstrap admin in with `bootstrap` and has them choose `own`.
    pub(crate) async fn admin_ready(&mut self, bootstrap: &str, own: &str) {
        let signed_in = self.sign_in("admin", bootstrap).await;
        assert_eq!(signed_in.location(), "/password", "{}", signed_in.body);
        self.change_password(bootstrap, own).await;
    }

    /// Adds a user on the users page; returns their one-time password.
    pub(crate) async fn add_user(&mut self, name: &str, role: &str) -> String {
        let csrf = self.get("/users").await.csrf();
        let added = self
            .post(
                "/users",
                &[
                    ("csrf", &csrf),
                    ("name", name),
                    ("role", role),
                    ("labels", ""),
                ],
            )
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.body);
        between(&added.body, "id=\"new-password\">", "<")
            .expect("the one-time password is shown")
            .to_owned()
    }
}
