//! Headless Chromium driven over the DevTools protocol, for the console's browser tests.
//!
//! The client is the few dozen lines of [`Browser`], over the WebSocket client the other
//! tests use already: the console needs navigation, script evaluation and screenshots, not
//! a full CDP binding and its dependencies. Chromium must be installed (`./install.sh
//! --dev` installs Debian's `chromium`); without it [`Browser::launch`] fails the test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// The longest any single step may take (Chromium's start, a command, a page load).
const WAIT: Duration = Duration::from_secs(20);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Headless Chromium with one page, driven over the DevTools protocol.
pub(crate) struct Browser {
    socket: Socket,
    /// The page's DevTools session (commands are sent to the browser endpoint, flattened).
    session: String,
    next_id: u64,
    /// Killed on drop, before its profile directory is removed.
    _child: tokio::process::Child,
    _profile: TempDir,
    /// Where [`Browser::screenshot`] writes.
    screenshots: PathBuf,
}

impl Browser {
    /// Starts Chromium with a fresh profile and opens one blank page; screenshots go to
    /// `screenshots` (created if need be).
    pub(crate) async fn launch(screenshots: PathBuf) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start `chromium` ({err}): this test needs Debian's chromium \
                     package, which `./install.sh --dev` installs"
                )
            });
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.expect("chromium's stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint")
        })
        .await
        .expect("chromium starts in time");
        // Keep reading Chromium's log, so a full pipe never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&endpoint))
            .await
            .expect("DevTools connects in time")
            .expect("DevTools connects");
        std::fs::create_dir_all(&screenshots).expect("screenshot dir");
        let mut browser = Browser {
            socket,
            session: String::new(),
            next_id: 0,
            _child: child,
            _profile: profile,
            screenshots,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// Sends a command (to the page once attached) and returns its result.
    pub(crate) async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send to DevTools");
        let answer = tokio::time::timeout(WAIT, async {
            loop {
                let frame = self
                    .socket
                    .next()
                    .await
                    .expect("DevTools open")
                    .expect("DevTools frame");
                let Message::Text(text) = frame else { continue };
                let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
                // Events (no id) and other answers are not this command's.
                if value["id"] == json!(id) {
                    return value;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("DevTools answers {method} in time"));
        if let Some(error) = answer.get("error") {
            panic!("DevTools {method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Gives the page a viewport of `width` x `height` CSS pixels (screenshots are that
    /// size), whatever the window's.
    pub(crate) async fn set_viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": false,
            }),
        )
        .await;
    }

    /// Evaluates `expression` in the page; its value, or `None` if it threw (a page being
    /// replaced throws).
    pub(crate) async fn eval(&mut self, expression: &str) -> Option<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        if result.get("exceptionDetails").is_some() {
            return None;
        }
        Some(result["result"]["value"].clone())
    }

    /// The trimmed text of the first element matching `selector` (empty if none).
    pub(crate) async fn text(&mut self, selector: &str) -> String {
        let expression = format!(
            "document.querySelector({})?.textContent ?? ''",
            json!(selector)
        );
        let value = self.eval(&expression).await.unwrap_or_default();
        value.as_str().unwrap_or_default().trim().to_owned()
    }

    pub(crate) async fn path(&mut self) -> String {
        let value = self.eval("location.pathname").await.unwrap_or_default();
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Marks the current document, so [`Browser::wait_for_new_page`] can tell its
    /// successor apart even at the same address.
    async fn mark_page(&mut self) {
        self.eval("window.__replaced = true").await;
    }

    /// Waits until a new document (not the marked one) has loaded.
    async fn wait_for_new_page(&mut self) {
        let loaded = "document.readyState === 'complete' && window.__replaced !== true";
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.eval(loaded).await != Some(json!(true)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page loads in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn goto(&mut self, url: &str) {
        self.mark_page().await;
        let result = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            result.get("errorText").is_none(),
            "navigating to {url}: {result}"
        );
        self.wait_for_new_page().await;
    }

    /// Fills the fields of the form `form` (a selector) by name, without submitting it.
    pub(crate) async fn fill(&mut self, form: &str, fields: &[(&str, &str)]) {
        let fields: BTreeMap<&str, &str> = fields.iter().copied().collect();
        let script = format!(
            "(() => {{
                const form = document.querySelector({form});
                for (const [name, value] of Object.entries({fields})) {{
                    form.elements[name].value = value;
                }}
                return true;
            }})()",
            form = json!(form),
            fields = json!(fields),
        );
        assert_eq!(
            self.eval(&script).await,
            Some(json!(true)),
            "filling {form}"
        );
    }

    /// Fills the form `form` (a selector) as a person would and clicks its submit button,
    /// then waits for the answer page.
    pub(crate) async fn submit(&mut self, form: &str, fields: &[(&str, &str)]) {
        self.fill(form, fields).await;
        self.click(&format!("{form} button[type=submit]")).await;
    }

    /// Clicks the element `selector` and waits for the page it leads to.
    pub(crate) async fn click(&mut self, selector: &str) {
        self.mark_page().await;
        let script = format!("document.querySelector({}).click(); true", json!(selector));
        assert_eq!(
            self.eval(&script).await,
            Some(json!(true)),
            "clicking {selector}"
        );
        self.wait_for_new_page().await;
    }

    /// Clicks the checkbox `selector` (which leads nowhere) and returns whether it is now
    /// checked.
    pub(crate) async fn tick(&mut self, selector: &str) -> bool {
        let script = format!(
            "(() => {{ const box = document.querySelector({}); box.click(); return box.checked; }})()",
            json!(selector)
        );
        self.eval(&script).await == Some(json!(true))
    }

    /// Saves a PNG of the viewport as `name` in the screenshot directory; its path.
    pub(crate) async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = data_encoding::BASE64
            .decode(shot["data"].as_str().expect("PNG data").as_bytes())
            .expect("base64");
        let path = self.screenshots.join(name);
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Gives the browser the cookie `name=value` for `url` (HttpOnly, `SameSite=Lax`, as
    /// the AppView sets its session cookie), as if a sign-in there had set it.
    pub(crate) async fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        let result = self
            .call(
                "Network.setCookie",
                json!({
                    "url": url,
                    "name": name,
                    "value": value,
                    "httpOnly": true,
                    "sameSite": "Lax",
                }),
            )
            .await;
        // Older Chromium answers `success`; newer ones answer nothing and throw on failure.
        assert_ne!(result["success"], json!(false), "setting cookie {name}");
    }

    /// Puts the files at `paths` into the file input `selector`, as choosing them in the
    /// file picker would (the page gets its `change` event).
    pub(crate) async fn set_files(&mut self, selector: &str, paths: &[&std::path::Path]) {
        let document = self.call("DOM.getDocument", json!({ "depth": 0 })).await;
        let found = self
            .call(
                "DOM.querySelector",
                json!({ "nodeId": document["root"]["nodeId"], "selector": selector }),
            )
            .await;
        let node = found["nodeId"].as_u64().unwrap_or_default();
        assert_ne!(node, 0, "no element matches {selector}");
        let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        self.call(
            "DOM.setFileInputFiles",
            json!({ "nodeId": node, "files": files }),
        )
        .await;
    }

    /// Waits (at most `within`) until `expression` evaluates to `true` in the page; panics
    /// naming `what` otherwise.
    pub(crate) async fn wait_until(&mut self, what: &str, expression: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.eval(expression).await != Some(json!(true)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the sign-in page of the console at `base` (`http://127.0.0.1:PORT`) and signs
    /// in.
    pub(crate) async fn sign_in(&mut self, base: &str, name: &str, password: &str) {
        self.goto(&format!("{base}/login")).await;
        self.submit("#login", &[("name", name), ("password", password)])
            .await;
    }

    /// On the password page, changes the password from `current` to `new`.
    pub(crate) async fn change_password(&mut self, current: &str, new: &str) {
        assert_eq!(self.path().await, "/password");
        self.submit(
            "#password-form",
            &[("current", current), ("new", new), ("confirm", new)],
        )
        .await;
    }
}
