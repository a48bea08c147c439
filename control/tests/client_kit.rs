//! The AC client kit (`clients/js/`) under the workspace's one test command:
//!
//! 1. **unit**: the kit's own tests (`node --test clients/js/test/*.test.mjs`) with the
//!    pinned Node 22;
//! 2. **live**: `clients/js/test/live/publish.live.mjs` in Node against a real AppView
//!    (sign-in, publishing, ingest) over the sandbox's PLC and PDS, two accounts signed in
//!    through the AppView's own pages: publish with progress, the feed, `confirmed` by
//!    ingest, a remix and its notification (live stream and list, through the session
//!    cookie), the typed errors on both sides of the wire;
//! 3. **browser**: the same stack in headless Chromium: the first account signs in as a
//!    person would (the AppView's `/login`, the PDS's own sign-in page with the password
//!    typed in, its consent page, back to `/account`), `/kit/demo` publishes a painting
//!    from a file chosen in its form,
//!    the progress bar completes and the painting appears in `<atelier-feed>`; when the
//!    second account remixes it, the page's live notification stream (a WebSocket the
//!    cookie authenticates) shows the remix; the page's strict content security policy is
//!    never violated.
//!
//! The two tests that start a stack take turns (one sandbox at a time is enough for a
//! two-core machine). Node (`./install.sh`) and Chromium (`./install.sh --dev`) are
//! required: without either the tests fail, they never skip. The browser test saves
//! `kit-demo.png` in `target/tmp/client-kit/`, and with `ATELIER_BLESS_SCREENSHOTS=1` also
//! in `docs/screenshots/`, which `docs/client-kit.md` embeds.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use atelier_appview::ingest::IngestConfig;
use atelier_appview::publish::{PublishConfig, default_scope};
use atelier_appview::safety::Policy;
use atelier_appview::service::{self, AppViewConfig};
use atelier_appview::store::StoreLocation;
use atelier_sandbox::oauth::{Jar, sign_in_through_appview};
use atelier_sandbox::{Account, Runtime, Sandbox};
use serde_json::json;
use tempfile::TempDir;

mod support;

use support::browser::Browser;

/// The kit's unit tests take a few seconds.
const UNIT_BUDGET: Duration = Duration::from_secs(60);
/// A stack's start (the sandbox: up to a minute on a loaded machine) and the scenario.
const STACK_BUDGET: Duration = Duration::from_secs(150);
/// The longest one browser step may take (a publish, a feed reload).
const STEP: Duration = Duration::from_secs(30);
/// The screenshot's size, small enough to commit.
const VIEWPORT: (u32, u32) = (1000, 900);
/// Set to `1` to copy the screenshot to `docs/screenshots/`.
const BLESS: &str = "ATELIER_BLESS_SCREENSHOTS";
/// A 1×1 PNG.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\
\0\0\0\rIDATx\xdac\xfc\xcf\xc0\xf0\x1f\0\x05\0\x02\x01\xff\xa7\xf5\xda\0\0\0\0IEND\xaeB`\x82";

/// Collects the page's content security policy violations in `window.__csp`.
const CSP_WATCH: &str = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                         e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));";

/// One stack at a time (see the module header); taken outside each test's time budget.
static STACKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The workspace's root (the control crate's parent).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the control crate is in the workspace")
}

/// The pinned Node 22 (`$ATELIER_HOME/node/...`); a missing one fails the test.
fn node() -> PathBuf {
    Runtime::locate()
        .unwrap_or_else(|e| panic!("the kit's tests need Node 22 from ./install.sh: {e}"))
        .node()
        .to_owned()
}

/// Runs `node args...` in the workspace with `env`; its output, whatever the status.
async fn run_node(args: &[PathBuf], env: &[(&str, String)]) -> Output {
    tokio::process::Command::new(node())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs")
}

/// Fails with Node's whole output unless it exited 0.
fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kits_unit_tests_pass() {
    tokio::time::timeout(UNIT_BUDGET, unit())
        .await
        .expect("the kit's unit tests finish in time");
}

async fn unit() {
    // `node --test` takes files, not directories: the glob is expanded here.
    let dir = workspace().join("clients/js/test");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("clients/js/test")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".test.mjs"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "the kit's tests: {files:?}");
    let mut args = vec![PathBuf::from("--test")];
    args.extend(files);
    let started = Instant::now();
    let output = run_node(&args, &[]).await;
    assert_success("node --test clients/js/test/*.test.mjs", &output);
    eprintln!("the kit's unit tests passed in {:?}", started.elapsed());
}

/// The sandbox, two signed-in accounts and the AppView under test.
struct Stack {
    sandbox: Sandbox,
    /// `http://127.0.0.1:PORT`.
    base: String,
    ada: (Account, Jar),
    bo: (Account, Jar),
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), atelier_appview::error::AppViewError>>,
    /// The AppView's databases and key; removed last.
    _dir: TempDir,
}

impl Stack {
    /// Starts the sandbox, creates `ada` and `bob`, starts an AppView with sign-in (the
    /// default publishing scope), publishing and ingest from the PDS's firehose, and signs
    /// both in through the AppView's pages.
    async fn start() -> Stack {
        let sandbox = Sandbox::start().await.expect("the sandbox starts");
        let ada = sandbox.create_account("ada").await.expect("ada");
        let bo = sandbox.create_account("bob").await.expect("bob");
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let oauth =
            support::loopback_oauth(dir.path(), &base, &default_scope(), &sandbox, &[&ada, &bo]);
        let mut ingest = IngestConfig::new(sandbox.subscribe_repos_url(None));
        ingest.plc_url = sandbox.plc_url().to_owned();
        ingest.allow_loopback = true;
        ingest.batch_wait = Duration::from_millis(20);
        let mut config = AppViewConfig::new(
            StoreLocation::Sqlite(dir.path().join("index.sqlite")),
            Some(ingest),
        );
        config.oauth = Some(oauth);
        config.publish = Some(PublishConfig {
            text_policy: Policy::Block,
            ..PublishConfig::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let mut jars = Vec::new();
        for account in [&ada, &bo] {
            let jar =
                sign_in_through_appview(&base, &account.handle, &account.password, &account.did)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("{} signs in through the AppView: {e}", account.handle)
                    });
            assert!(jar.get("atelier_session").is_some(), "a session cookie");
            jars.push(jar);
        }
        let bo_jar = jars.pop().expect("bo's jar");
        let ada_jar = jars.pop().expect("ada's jar");
        Stack {
            sandbox,
            base,
            ada: (ada, ada_jar),
            bo: (bo, bo_jar),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// Publishes, as bob, a painting that remixes `uri` (with its current CID); the
    /// remix's AT-URI.
    async fn remix_as_bob(&self, uri: &str) -> String {
        let http = reqwest::Client::builder()
            .timeout(STEP)
            .build()
            .expect("an HTTP client");
        let status: serde_json::Value = http
            .get(format!("{}/publish/status", self.base))
            .query(&[("uri", uri)])
            .send()
            .await
            .expect("/publish/status")
            .json()
            .await
            .expect("its JSON");
        let cid = status["cid"].as_str().expect("the painting's CID");
        let record = json!({
            "collection": "computer.aesthetic.painting",
            "record": {
                "slug": "2026.12.06.15.00.00.000",
                "code": "kbob",
                "imageUrl": "https://aesthetic.computer/media/paintings/kbob.png",
                "when": "2026-12-06T15:00:00.000Z",
                "ref": "6710f0c2a3b4c5d6e7f80912",
                "remixOf": { "uri": uri, "cid": cid },
            },
        });
        let answer: serde_json::Value = http
            .post(format!("{}/publish/record", self.base))
            .header("cookie", self.bo.1.header())
            .header("origin", &self.base)
            .json(&record)
            .send()
            .await
            .expect("/publish/record")
            .json()
            .await
            .expect("its JSON");
        answer["uri"]
            .as_str()
            .unwrap_or_else(|| panic!("the remix is published: {answer}"))
            .to_owned()
    }

    /// Stops the AppView (it must have run without error); the sandbox stops on drop.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("the AppView stops in time")
            .expect("the AppView task")
            .expect("the AppView ran without error");
        drop(self.sandbox);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_publishes_and_is_notified_against_a_real_appview() {
    let _turn = STACKS.lock().await;
    tokio::time::timeout(STACK_BUDGET, live())
        .await
        .expect("the live scenario finishes in time");
}

async fn live() {
    let started = Instant::now();
    let stack = Stack::start().await;
    eprintln!("stack up in {:?}", started.elapsed());
    let script = workspace().join("clients/js/test/live/publish.live.mjs");
    let env = [
        ("ATELIER_BASE", stack.base.clone()),
        ("ATELIER_A_COOKIE", stack.ada.1.header()),
        ("ATELIER_A_DID", stack.ada.0.did.clone()),
        ("ATELIER_B_COOKIE", stack.bo.1.header()),
        ("ATELIER_B_DID", stack.bo.0.did.clone()),
    ];
    let output = run_node(&[script], &env).await;
    assert_success("clients/js/test/live/publish.live.mjs", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("a JSON summary on stdout: {stdout}"));
    assert_eq!(summary["signedOut"]["status"], 401, "{summary}");
    assert!(summary["remix"]["notification"].is_u64(), "{summary}");
    eprintln!("live: {summary} (in {:?} in all)", started.elapsed());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_publishes_a_painting_in_a_real_browser() {
    let _turn = STACKS.lock().await;
    tokio::time::timeout(STACK_BUDGET, in_a_browser())
        .await
        .expect("the browser scenario finishes in time");
}

async fn in_a_browser() {
    let started = Instant::now();
    let stack = Stack::start().await;
    let shots = workspace().join("target/tmp/client-kit");
    let mut browser = Browser::launch(shots).await;
    browser.set_viewport(VIEWPORT.0, VIEWPORT.1).await;

    // Signed out, the page links to the AppView's sign-in page.
    browser.goto(&format!("{}/kit/demo", stack.base)).await;
    browser
        .wait_until(
            "the signed-out page",
            "!document.querySelector('#signed-out').hidden",
            STEP,
        )
        .await;
    let login = browser
        .eval("document.querySelector('#login').href")
        .await
        .unwrap_or_default();
    assert_eq!(login, json!(format!("{}/login", stack.base)));

    // Signed in: the cookie as the AppView set it for ada. Content security policy
    // violations are collected from the first script on (DevTools' own script is exempt).
    browser.call("Page.enable", json!({})).await;
    browser
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": CSP_WATCH }),
        )
        .await;
    // Signed in through the pages, in the browser: the AppView's form, the PDS's own
    // sign-in and consent pages, back with the session cookie.
    sign_in_in_the_browser(&mut browser, &stack.base, &stack.ada.0).await;
    let account = browser.text("#did").await;
    assert_eq!(account, stack.ada.0.did, "the account page names ada");
    browser.goto(&format!("{}/kit/demo", stack.base)).await;
    browser
        .wait_until(
            "the publish form",
            "document.querySelector('#publish').dataset.state === 'ready'",
            STEP,
        )
        .await;
    let who = browser.text("#session").await;
    assert!(who.starts_with("Signed in as"), "{who}");

    // Choose a PNG in the form and publish it.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("painting.png");
    std::fs::write(&file, PNG).expect("the PNG");
    browser
        .set_files("#publish input[type=file]", &[&file])
        .await;
    browser.fill("#publish", &[("code", "kdemo")]).await;
    assert_eq!(
        browser
            .eval("document.querySelector('#publish button[type=submit]').click(); true")
            .await,
        Some(json!(true))
    );
    browser
        .wait_until(
            "the publish settles",
            "['confirmed', 'repaired', 'failed'].includes(document.querySelector('#publish').dataset.state)",
            STEP,
        )
        .await;
    let state = browser
        .eval("JSON.stringify({...document.querySelector('#publish').dataset, result: document.querySelector('#result').textContent})")
        .await
        .unwrap_or_default();
    let state: serde_json::Value =
        serde_json::from_str(state.as_str().unwrap_or_default()).expect("the form's state");
    assert_eq!(state["state"], "confirmed", "{state}");
    let uri = state["uri"]
        .as_str()
        .expect("the new record's URI")
        .to_owned();
    assert!(
        uri.starts_with(&format!(
            "at://{}/computer.aesthetic.painting/",
            stack.ada.0.did
        )),
        "{uri}"
    );
    let bar = browser
        .eval("(() => { const p = document.querySelector('#progress'); return [p.value, p.max, p.dataset.phase]; })()")
        .await;
    assert_eq!(
        bar,
        Some(json!([1, 1, "done"])),
        "the progress bar completed"
    );

    // The feed below shows it: the card with the new URI, titled with the painting's code.
    let card = format!(
        "document.querySelector('#feed').shadowRoot.querySelector('article[data-uri=\"{uri}\"]')"
    );
    browser
        .wait_until(
            "the painting in <atelier-feed>",
            &format!("{card} !== null"),
            STEP,
        )
        .await;
    assert_eq!(
        browser
            .eval(&format!("{card}.querySelector('h2').textContent"))
            .await,
        Some(json!("#kdemo"))
    );
    // Bob remixes it (through the publishing API, as his own page would); the demo's live
    // notification stream, a WebSocket authenticated by ada's cookie, shows it.
    let remix = stack.remix_as_bob(&uri).await;
    browser
        .wait_until(
            "the remix notification on the page",
            &format!(
                "Array.from(document.querySelectorAll('#notifications li'))\
                 .some(li => li.textContent.startsWith('remix') && li.textContent.endsWith({}))",
                json!(remix)
            ),
            STEP,
        )
        .await;
    let violations = browser.eval("window.__csp").await;
    assert_eq!(
        violations,
        Some(json!([])),
        "no content security policy violations"
    );
    let shot = browser.screenshot("kit-demo.png").await;
    if std::env::var(BLESS).as_deref() == Ok("1") {
        let docs = workspace().join("docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        std::fs::copy(&shot, docs.join("kit-demo.png")).expect("copying the screenshot");
    }
    eprintln!("browser: {uri} in {:?}", started.elapsed());
    drop(browser);
    stack.stop().await;
}

/// Signs `account` in as a person would, in the browser: the AppView's `/login` form, the
/// PDS's own sign-in page (handle prefilled, password typed), its consent page
/// ("Authorize"), and back to the AppView's `/account`.
async fn sign_in_in_the_browser(browser: &mut Browser, base: &str, account: &Account) {
    browser.goto(&format!("{base}/login")).await;
    browser
        .fill("form[action='/login']", &[("handle", &account.handle)])
        .await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    browser
        .wait_until(
            "the PDS's sign-in page",
            "!!document.querySelector('input[type=password]')",
            STEP,
        )
        .await;
    // Typed into the focused field, as a keyboard would (the page is a React app).
    browser
        .eval("document.querySelector('input[type=password]').focus(); true")
        .await;
    browser
        .call("Input.insertText", json!({ "text": account.password }))
        .await;
    browser
        .eval("document.querySelector('button[type=submit]').click(); true")
        .await;
    browser
        .wait_until(
            "the PDS's consent page",
            "location.hash === '#step=consent' && [...document.querySelectorAll('button')].some(b => b.textContent.trim() === 'Authorize')",
            STEP,
        )
        .await;
    browser
        .eval("[...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Authorize').click(); true")
        .await;
    let account_page = format!("location.href === {}", json!(format!("{base}/account")));
    browser
        .wait_until("back on the AppView's account page", &account_page, STEP)
        .await;
}
