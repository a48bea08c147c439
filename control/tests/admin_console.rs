//! The admin console's accounts and access, end to end: the real server on 127.0.0.1 with a
//! fresh data directory per test, driven
//! - by a real headless Chromium over the DevTools protocol, as a moderator would use it
//!   (screenshots of each page go to `target/tmp/admin-console/`);
//! - by plain HTTP for what a browser hides or would not send: status codes, cookie
//!   attributes, forms without a token or from another origin, sessions across a restart;
//! - and through the real `atelier admin` commands.
//!
//! The DevTools client is [`Browser`] in `support/browser.rs`. Chromium must be installed
//! (`./install.sh --dev` installs Debian's `chromium`); without it the browser test fails.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use atelier_control::admin::{
    self, AdminError, AdminServiceConfig, LoginLimits, SessionPolicy, UserStore,
};
use atelier_control::config::{BootstrapUser, Role};
use reqwest::StatusCode;
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod support;

use support::agent::{Agent, between};
use support::browser::Browser;

/// The longest any single step may take (a page load, a request, a server stop).
const WAIT: Duration = Duration::from_secs(20);

const BOOTSTRAP_PASSWORD: &str = "bootstrap-password-from-the-secret-file";
const ADMIN_PASSWORD: &str = "the admin's own password";

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");

// ---- the console ----

/// A data directory with the bootstrap password secret in it, as `atelier init` leaves it.
fn data_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&secrets)
        .expect("secrets dir");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secrets.join("admin_bootstrap_password"))
        .expect("secret file");
    std::io::Write::write_all(&mut file, format!("{BOOTSTRAP_PASSWORD}\n").as_bytes())
        .expect("write secret");
    dir
}

/// The sandbox-like console of the tests: the `admin` bootstrap user, plain-HTTP cookies,
/// and small sign-in limits (three failures lock a name for a minute).
fn config(dir: &Path) -> AdminServiceConfig {
    let mut config = AdminServiceConfig::new(dir.to_owned());
    config.bootstrap = vec![BootstrapUser {
        name: "admin".to_owned(),
        role: Role::Admin,
    }];
    config.secure_cookies = false;
    config.limits = LoginLimits {
        per_user: 3,
        per_address: 50,
        base_lockout: Duration::from_secs(60),
        max_lockout: Duration::from_secs(600),
        forget_after: Duration::from_secs(3600),
    };
    config
}

/// What stops a console: [`Console::stop`] completes it.
type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running console.
struct Console {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AdminError>>,
}

impl Console {
    async fn start(config: AdminServiceConfig) -> Console {
        Console::spawn(|listener, shutdown| admin::run(config, listener, shutdown)).await
    }

    /// The console with `public` routes beside it (as the console service serves XRPC).
    async fn start_with_public(config: AdminServiceConfig, public: axum::Router) -> Console {
        let state = admin::AdminState::open(&config).await.expect("open");
        Console::spawn(|listener, shutdown| {
            admin::serve_with_public(state, admin::accounts_pages(), public, listener, shutdown)
        })
        .await
    }

    async fn spawn<F>(serve: impl FnOnce(tokio::net::TcpListener, Shutdown) -> F) -> Console
    where
        F: Future<Output = Result<(), AdminError>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        // Requests made before the console has opened its database wait in the listen
        // backlog: no readiness polling needed.
        let task = tokio::spawn(serve(listener, shutdown));
        Console {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the console stops in time")
            .expect("the console task");
        result.expect("the console ran without error");
    }
}

/// Where the browser test's screenshots go.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-console")
}

// ---- the tests ----

#[tokio::test]
async fn a_moderator_team_uses_the_console_in_a_real_browser() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut browser = Browser::launch(screenshot_dir()).await;

    // Signed out, the console sends the browser to the sign-in page.
    browser.goto(&console.url("/")).await;
    assert_eq!(browser.path().await, "/login");
    browser.screenshot("01-sign-in.png").await;

    // The bootstrap admin signs in with the secret file's password and must choose a new
    // one before anything else.
    browser
        .sign_in(&console.url(""), "admin", BOOTSTRAP_PASSWORD)
        .await;
    assert_eq!(browser.path().await, "/password");
    assert!(
        browser
            .text("#must-change")
            .await
            .contains("Choose your own")
    );
    browser.goto(&console.url("/users")).await;
    assert_eq!(browser.path().await, "/password", "no way around it");
    browser.screenshot("02-choose-a-password.png").await;
    browser
        .change_password(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD)
        .await;
    assert_eq!(browser.path().await, "/");
    assert_eq!(browser.text("h1").await, "Dashboard");
    assert!(browser.text("#queues").await.contains("Unreviewed"));
    assert_eq!(browser.text("#signed-in-as").await, "admin (admin)");
    browser.screenshot("03-dashboard.png").await;

    // The admin adds a triage user, whose first password is shown once.
    browser.goto(&console.url("/users")).await;
    browser
        .submit("#add-user", &[("name", "tina"), ("role", "triage")])
        .await;
    assert!(
        browser
            .text("#notice")
            .await
            .contains("Added tina (triage).")
    );
    let tina_first = browser.text("#new-password").await;
    assert_eq!(tina_first.len(), 29, "a generated password: {tina_first:?}");
    browser.screenshot("04-users.png").await;
    browser.click("#sign-out").await;
    assert_eq!(browser.path().await, "/login");

    // The triage user signs in, chooses a password, and may not manage users.
    browser.sign_in(&console.url(""), "tina", &tina_first).await;
    browser
        .change_password(&tina_first, "tina's own password")
        .await;
    assert_eq!(browser.text("#signed-in-as").await, "tina (triage)");
    assert_eq!(
        browser.text("header nav").await,
        "Dashboard",
        "no Users link"
    );
    browser.goto(&console.url("/users")).await;
    assert_eq!(browser.text("h1").await, "Not allowed");
    assert!(
        browser
            .text("#message")
            .await
            .contains("Your role (triage) does not include managing users."),
    );
    browser.screenshot("05-not-allowed.png").await;
    browser.goto(&console.url("/")).await;
    browser.click("#sign-out").await;

    // A wrong password gets the plain error; the third in a row locks the account.
    browser
        .sign_in(&console.url(""), "tina", "not her password")
        .await;
    assert_eq!(browser.path().await, "/login");
    assert_eq!(browser.text("#error").await, "Wrong user name or password.");
    assert_eq!(
        browser.eval("document.querySelector('#name').value").await,
        Some(json!("tina")),
        "the name is kept"
    );
    browser.screenshot("06-wrong-password.png").await;
    browser
        .sign_in(&console.url(""), "tina", "still not it")
        .await;
    browser.sign_in(&console.url(""), "tina", "nor this").await;
    let locked = browser.text("#error").await;
    assert_eq!(
        locked,
        "This account is temporarily locked after too many failed sign-ins. Try again in \
         1 minute."
    );
    browser.screenshot("07-locked.png").await;
    // While locked, even the right password is refused (the time left may have ticked
    // down a second).
    browser
        .sign_in(&console.url(""), "tina", "tina's own password")
        .await;
    assert_eq!(browser.path().await, "/login");
    let still = browser.text("#error").await;
    assert!(
        still.starts_with("This account is temporarily locked"),
        "{still}"
    );

    drop(browser);
    console.stop().await;
}

#[tokio::test]
async fn forms_without_the_session_token_are_refused() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut agent = Agent::new(&console.url(""));

    // Even the sign-in form needs its token.
    let page = agent.get("/login").await;
    let no_token = agent
        .post(
            "/login",
            &[("name", "admin"), ("password", BOOTSTRAP_PASSWORD)],
        )
        .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(
        no_token.body.contains("security token"),
        "{}",
        no_token.body
    );
    let wrong = agent
        .post(
            "/login",
            &[
                ("csrf", "0000000000000000000000000000000000000000000"),
                ("name", "admin"),
                ("password", BOOTSTRAP_PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_ne!(page.csrf(), "");

    agent.admin_ready(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD).await;
    let csrf = agent.get("/users").await.csrf();
    for form in [
        &[("name", "mallory"), ("role", "admin")][..],
        &[("csrf", ""), ("name", "mallory"), ("role", "admin")][..],
        &[("csrf", "forged"), ("name", "mallory"), ("role", "admin")][..],
    ] {
        let refused = agent.post("/users", form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{form:?}");
        assert!(
            refused.body.contains("was not carried out"),
            "{}",
            refused.body
        );
    }
    // Sign-out is a state change too.
    assert_eq!(
        agent.post("/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        agent.get("/").await.status,
        StatusCode::OK,
        "still signed in"
    );
    // A token from another session is no good either.
    let mut other = Agent::new(&console.url(""));
    other.sign_in("admin", ADMIN_PASSWORD).await;
    let other_csrf = other.get("/users").await.csrf();
    assert_ne!(other_csrf, csrf);
    let crossed = agent
        .post(
            "/users",
            &[
                ("csrf", &other_csrf),
                ("name", "mallory"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);

    let users = agent.get("/users").await;
    assert!(!users.body.contains("mallory"), "nothing was created");
    console.stop().await;
}

#[tokio::test]
async fn forms_from_another_origin_are_refused() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut agent = Agent::new(&console.url(""));
    agent.admin_ready(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD).await;
    let csrf = agent.get("/users").await.csrf();
    let form = [("csrf", csrf.as_str()), ("name", "eve"), ("role", "triage")];
    for origin in ["http://evil.example", "null", "https://127.0.0.1"] {
        let refused = agent.post_from("/users", &form, origin).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(
            refused.body.contains("came from another site"),
            "{}",
            refused.body
        );
    }
    // The same form from the console's own origin goes through.
    let added = agent.post("/users", &form).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Added eve (triage)."));
    console.stop().await;
}

#[tokio::test]
async fn public_routes_beside_the_console_take_no_part_in_its_sessions() {
    let dir = data_dir();
    let public = axum::Router::new().route(
        "/xrpc/com.example.ping",
        axum::routing::post(|| async { "pong" }),
    );
    let console = Console::start_with_public(config(dir.path()), public).await;
    let mut agent = Agent::new(&console.url(""));
    // A protocol endpoint is posted to without a session, a token or a same-site origin.
    let pong = agent
        .post_from("/xrpc/com.example.ping", &[], "https://elsewhere.example")
        .await;
    assert_eq!(pong.status, StatusCode::OK);
    assert_eq!(pong.body, "pong");
    assert!(!pong.headers.contains_key("content-security-policy"));
    // The console's own routes keep every check.
    let refused = agent
        .post("/users", &[("name", "x"), ("role", "admin")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(agent.get("/").await.location(), "/login");
    console.stop().await;
}

#[tokio::test]
async fn cookies_are_http_only_strict_and_secure_outside_the_sandbox() {
    for secure in [false, true] {
        let dir = data_dir();
        let mut config = config(dir.path());
        config.secure_cookies = secure;
        let console = Console::start(config).await;
        let mut agent = Agent::new(&console.url(""));
        if secure {
            // As behind a TLS proxy: the browser's origin is https. (A test client may send
            // a Secure cookie over plain HTTP; a browser would not.)
            agent.origin = console.url("").replace("http://", "https://");
        }
        let page = agent.get("/login").await;
        let login_cookie = page
            .set_cookie("atelier_admin_login")
            .expect("login cookie");
        let signed_in = agent.sign_in("admin", BOOTSTRAP_PASSWORD).await;
        let session_cookie = signed_in
            .set_cookie("atelier_admin")
            .expect("session cookie");
        for cookie in [&login_cookie, &session_cookie] {
            let attributes: Vec<&str> = cookie.split("; ").skip(1).collect();
            for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(attributes.contains(&wanted), "{cookie} has {wanted}");
            }
            assert_eq!(attributes.contains(&"Secure"), secure, "{cookie}");
        }
        assert!(session_cookie.contains("Max-Age=43200"), "{session_cookie}");
        assert!(
            signed_in
                .set_cookie("atelier_admin_login")
                .is_some_and(|c| c.contains("Max-Age=0")),
            "signing in clears the sign-in cookie"
        );
        console.stop().await;
    }
}

#[tokio::test]
async fn sessions_survive_a_restart_and_end_at_sign_out() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut agent = Agent::new(&console.url(""));
    agent.admin_ready(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD).await;
    assert_eq!(agent.get("/").await.status, StatusCode::OK);
    console.stop().await;

    let console = Console::start(config(dir.path())).await;
    agent.reconnect(&console.url(""));
    let dashboard = agent.get("/").await;
    assert_eq!(
        dashboard.status,
        StatusCode::OK,
        "signed in after the restart"
    );
    assert!(dashboard.body.contains("Dashboard"));

    let session = agent.cookies["atelier_admin"].clone();
    let csrf = dashboard.csrf();
    let out = agent.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert!(
        !agent.cookies.contains_key("atelier_admin"),
        "cookie cleared"
    );
    // The session is gone on the server, not only from the browser.
    agent.cookies.insert("atelier_admin".to_owned(), session);
    let after = agent.get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), "/login");
    console.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let dir = data_dir();
    let mut config = config(dir.path());
    config.sessions = SessionPolicy {
        idle: Duration::from_secs(1),
        absolute: Duration::from_secs(60),
    };
    let console = Console::start(config).await;
    let mut agent = Agent::new(&console.url(""));
    agent.admin_ready(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD).await;
    assert_eq!(agent.get("/").await.status, StatusCode::OK);
    // Times are whole seconds and a session ends after more than `idle`.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = agent.get("/").await;
    assert_eq!(after.location(), "/login", "{:?}", after.status);
    console.stop().await;
}

#[tokio::test]
async fn roles_are_enforced_on_the_server() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut admin = Agent::new(&console.url(""));
    admin.admin_ready(BOOTSTRAP_PASSWORD, ADMIN_PASSWORD).await;
    let first = admin.add_user("tom", "triage").await;

    let mut tom = Agent::new(&console.url(""));
    let signed_in = tom.sign_in("tom", &first).await;
    assert_eq!(signed_in.location(), "/password");
    // Until he chooses his own password, every page sends him to the password page.
    assert_eq!(tom.get("/").await.location(), "/password");
    tom.change_password(&first, "tom's chosen password").await;
    assert_eq!(tom.get("/").await.status, StatusCode::OK);

    let csrf = tom.get("/").await.csrf();
    assert_eq!(tom.get("/users").await.status, StatusCode::FORBIDDEN);
    for (path, form) in [
        (
            "/users",
            &[("csrf", csrf.as_str()), ("name", "x"), ("role", "admin")][..],
        ),
        (
            "/users/tom/role",
            &[("csrf", csrf.as_str()), ("role", "admin")][..],
        ),
        ("/users/admin/disable", &[("csrf", csrf.as_str())][..]),
        (
            "/users/admin/reset-password",
            &[("csrf", csrf.as_str())][..],
        ),
    ] {
        let refused = tom.post(path, form).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            refused.body.contains("does not include managing users"),
            "{}",
            refused.body
        );
    }

    // A role change applies at his next request; disabling ends his session at once.
    let csrf = admin.get("/users").await.csrf();
    let promoted = admin
        .post("/users/tom/role", &[("csrf", &csrf), ("role", "admin")])
        .await;
    assert!(
        promoted.body.contains("tom is now admin."),
        "{}",
        promoted.body
    );
    assert_eq!(tom.get("/users").await.status, StatusCode::OK);
    let disabled = admin.post("/users/tom/disable", &[("csrf", &csrf)]).await;
    assert!(disabled.body.contains("Disabled tom"), "{}", disabled.body);
    assert_eq!(tom.get("/").await.location(), "/login");
    let again = tom.sign_in("tom", "tom's chosen password").await;
    assert_eq!(
        again.status,
        StatusCode::UNAUTHORIZED,
        "a disabled user cannot sign in"
    );
    // An admin cannot disable themselves.
    let refused = admin.post("/users/admin/disable", &[("csrf", &csrf)]).await;
    assert!(refused.body.contains("You cannot disable yourself"));
    console.stop().await;
}

#[tokio::test]
async fn lockouts_last_across_restarts_and_reveal_no_names() {
    let dir = data_dir();
    let console = Console::start(config(dir.path())).await;
    let mut agent = Agent::new(&console.url(""));
    // An account and a name that is none get the same answers, lock included.
    let mut answers = Vec::new();
    for name in ["admin", "nobody-by-this-name"] {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let answer = agent.sign_in(name, "a wrong password").await;
            let error = between(&answer.body, "id=\"error\" role=\"alert\">", "<")
                .expect("an error")
                .to_owned();
            statuses.push((answer.status, error));
        }
        answers.push(statuses);
    }
    assert_eq!(answers[0], answers[1]);
    let wrong = "Wrong user name or password.".to_owned();
    assert_eq!(answers[0][0], (StatusCode::UNAUTHORIZED, wrong.clone()));
    assert_eq!(answers[0][1], (StatusCode::UNAUTHORIZED, wrong));
    let (status, locked) = &answers[0][2];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked.contains("temporarily locked") && locked.contains("1 minute"),
        "{locked}"
    );
    console.stop().await;

    let console = Console::start(config(dir.path())).await;
    agent.reconnect(&console.url(""));
    let answer = agent.sign_in("admin", BOOTSTRAP_PASSWORD).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS, "still locked");
    assert!(answer.headers.contains_key("retry-after"));
    console.stop().await;

    // A password reset (here from the command line's store) lifts the lock.
    let store = UserStore::open(&admin::store::database_path(dir.path()))
        .await
        .expect("open the store");
    let password = store.reset_password("admin").await.expect("reset");
    store.close().await;
    let console = Console::start(config(dir.path())).await;
    agent.reconnect(&console.url(""));
    let answer = agent.sign_in("admin", password.expose()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), "/password");
    console.stop().await;
}

#[tokio::test]
async fn one_address_guessing_many_names_is_locked() {
    let dir = data_dir();
    let mut config = config(dir.path());
    config.limits.per_address = 4;
    let console = Console::start(config).await;
    let mut agent = Agent::new(&console.url(""));
    for name in ["a", "b", "c"] {
        let answer = agent.sign_in(name, "guess").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let answer = agent.sign_in("d", "guess").await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        answer
            .body
            .contains("Sign-ins from your address are temporarily locked")
    );
    console.stop().await;
}

#[tokio::test]
async fn admin_commands_manage_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("atelier.yaml");
    std::fs::write(&config, "data_dir: data\n").expect("write config");
    let config = config.to_str().expect("UTF-8 path");
    let atelier = |args: &[&str]| {
        let mut command = std::process::Command::new(ATELIER);
        command.args(args).args(["--config", config]);
        command.output().expect("atelier runs")
    };

    let added = atelier(&[
        "admin",
        "add-user",
        "mo",
        "--role",
        "moderator",
        "--labels",
        "spam,nudity",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let first = String::from_utf8(added.stdout).expect("UTF-8");
    let first = first.trim();
    assert_eq!(first.len(), 29, "only the password on stdout: {first:?}");
    let note = String::from_utf8_lossy(&added.stderr);
    assert!(
        note.contains("Added mo (moderator, labels: spam, nudity)."),
        "{note}"
    );

    let again = atelier(&["admin", "add-user", "mo", "--role", "triage"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let bad_role = atelier(&["admin", "add-user", "x", "--role", "root"]);
    assert_eq!(bad_role.status.code(), Some(2), "a usage error");

    let listed = atelier(&["admin", "list-users"]);
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    let line = listed
        .lines()
        .find(|l| l.starts_with("mo "))
        .expect("mo is listed");
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "mo",
            "moderator",
            "must",
            "change",
            "password",
            "spam,nudity"
        ]
    );

    let reset = atelier(&["admin", "reset-password", "mo"]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let second = String::from_utf8(reset.stdout).expect("UTF-8");
    let second = second.trim();
    assert_ne!(second, first);
    let unknown = atelier(&["admin", "reset-password", "nobody"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("there is no user \"nobody\""));

    // The printed passwords are the real ones: the new works, the old no longer does.
    let store = UserStore::open(&admin::store::database_path(&dir.path().join("data")))
        .await
        .expect("open the store");
    let mo = store.verify_password("mo", second).await.expect("verify");
    let mo = mo.expect("the new password works");
    assert!(mo.must_change_password);
    assert_eq!(
        mo.allowed_labels,
        Some(vec!["spam".to_owned(), "nudity".to_owned()])
    );
    assert!(admin::can_apply_label(&mo, "spam"));
    assert!(!admin::can_apply_label(&mo, "!takedown"));
    assert_eq!(
        store.verify_password("mo", first).await.expect("verify"),
        None
    );
    store.close().await;
}
