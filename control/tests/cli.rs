//! The real `atelier` binary: help, version, bad input, and `dev pds` running a sandbox
//! network in the foreground until it is interrupted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");

fn atelier(args: &[&str]) -> std::process::Output {
    Command::new(ATELIER)
        .args(args)
        .output()
        .expect("atelier runs")
}

#[test]
fn help_lists_the_commands() {
    let out = atelier(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["version", "up", "dev"] {
        assert!(
            text.contains(command),
            "--help mentions `{command}`:\n{text}"
        );
    }
}

#[test]
fn version_names_the_pinned_runtime() {
    let out = atelier(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("atelier {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("@atproto/pds 0.5."), "{text}");
    assert!(text.contains("Node.js:       22."), "{text}");
}

#[test]
fn unknown_commands_and_bad_ports_are_usage_errors() {
    for args in [
        &["frobnicate"][..],
        &["dev", "pds", "--pds-port", "seventy"][..],
        &["dev", "pds", "--pds-port", "70000"][..],
    ] {
        let out = atelier(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error:"), "{args:?}: {err}");
    }
}

#[test]
fn dev_pds_serves_a_sandbox_until_interrupted() {
    let mut child = Command::new(ATELIER)
        .args(["dev", "pds"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("atelier dev pds starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();

    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut plc, mut pds, mut hint) = (None, None, None);
    while plc.is_none() || pds.is_none() || hint.is_none() {
        assert!(Instant::now() < deadline, "URLs printed within 90 s");
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait().expect("wait");
            panic!("atelier dev pds exited early with {status}");
        };
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("PLC"), Some(url)) => plc = Some(url.to_owned()),
            (Some("PDS"), Some(url)) => pds = Some(url.to_owned()),
            (Some("Create"), _) => hint = Some(line.clone()),
            _ => {}
        }
    }
    let (plc, pds) = (plc.unwrap_or_default(), pds.unwrap_or_default());

    // The printed "create an account" hint works as written (with a real password).
    let hint = hint.unwrap_or_default();
    let body = hint
        .split_once("-d '")
        .and_then(|(_, rest)| rest.strip_suffix('\''))
        .expect("the hint carries a JSON body")
        .replace("\"...\"", "\"a-long-password\"");
    let created = {
        let url = format!("{pds}/xrpc/com.atproto.server.createAccount");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("pds answers");
                (
                    resp.status().as_u16(),
                    resp.text().await.unwrap_or_default(),
                )
            })
        })
        .join()
        .expect("request thread")
    };
    assert_eq!(
        created.0, 200,
        "the printed createAccount hint works: {}",
        created.1
    );

    let get = |url: String| {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async { reqwest::get(url).await.map(|r| r.status().as_u16()) })
        })
        .join()
        .expect("request thread")
    };
    assert_eq!(get(format!("{plc}/_health")).expect("plc answers"), 200);
    assert_eq!(
        get(format!("{pds}/xrpc/_health")).expect("pds answers"),
        200
    );

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    kill(pid, Signal::SIGINT).expect("SIGINT");
    let status = wait_exit(
        &mut child,
        Duration::from_secs(20),
        "atelier stops within 20 s of Ctrl-C",
    );
    assert!(status.success(), "clean exit on Ctrl-C: {status}");
    assert!(
        get(format!("{pds}/xrpc/_health")).is_err(),
        "the PDS stopped with atelier"
    );
    assert!(
        get(format!("{plc}/_health")).is_err(),
        "the PLC stopped with atelier"
    );
}

/// The corpus frame file (`ATELIER_FIXTURES` overrides the fixtures directory).
fn corpus_frames_file() -> std::path::PathBuf {
    let fixtures = std::env::var_os("ATELIER_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
        });
    let path = fixtures.join("firehose-corpus/frames.bin.zst");
    assert!(
        path.exists(),
        "firehose corpus missing at {}",
        path.display()
    );
    path
}

#[test]
fn relay_replay_and_record_round_trip_the_corpus() {
    let corpus = corpus_frames_file();
    let mut replay = Command::new(ATELIER)
        .args(["relay", "replay", "--listen", "127.0.0.1:0", "--frames"])
        .arg(&corpus)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("atelier relay replay starts");
    let mut lines = BufReader::new(replay.stdout.take().expect("stdout")).lines();
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = replay.kill();
            panic!("atelier relay replay exited before printing its URL");
        };
        if let Some(url) = line.trim().strip_prefix("firehose") {
            break url.trim().to_owned();
        }
    };

    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("recorded.bin.zst");
    let status = Command::new(ATELIER)
        .args([
            "relay", "record", "--count", "150", "--cursor", "0", "--from", &url, "--out",
        ])
        .arg(&out)
        .status()
        .expect("atelier relay record runs");
    let _ = kill(
        Pid::from_raw(i32::try_from(replay.id()).expect("pid")),
        Signal::SIGTERM,
    );
    let _ = replay.wait();
    assert!(status.success(), "record exits cleanly: {status}");

    let read = |path: &std::path::Path| {
        atelier_relay::sync::replay::FrameFile::read(path).expect("frame file reads")
    };
    let (original, recorded) = (read(&corpus), read(&out));
    assert_eq!(recorded.len(), 150);
    assert_eq!(
        recorded, original,
        "recorded frames are byte-identical to the corpus"
    );
}

#[test]
fn relay_replay_refuses_a_missing_frame_file() {
    let out = atelier(&[
        "relay",
        "replay",
        "--listen",
        "127.0.0.1:0",
        "--frames",
        "/nonexistent/frames.bin.zst",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/frames.bin.zst"),
        "names the file: {err}"
    );
}

#[test]
fn relay_with_a_missing_config_names_the_file_and_the_reason_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let out = atelier(&["relay", "--config", missing.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope.yaml"), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "the cause is printed once: {stderr}"
    );
}

/// Starts `atelier up` on data directory `data` (AppView on any free port) and returns it
/// with the PDS URL and the feed URL it printed.
fn start_up(data: &str) -> (std::process::Child, String, String) {
    let mut child = Command::new(ATELIER)
        .args(["up", "--appview-port", "0", "--data-dir", data])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("atelier up starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut pds, mut feed) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    while pds.is_none() || feed.is_none() {
        assert!(Instant::now() < deadline, "URLs printed within 90 s");
        let Some(Ok(line)) = lines.next() else {
            panic!("atelier up exited early: {:?}", child.wait());
        };
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("PDS"), Some(url)) => pds = Some(url.to_owned()),
            (Some("AppView"), Some(url)) => feed = Some(url.to_owned()),
            _ => {}
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, pds.unwrap_or_default(), feed.unwrap_or_default())
}

/// Signs in to `pds` as `handle` with an app password (as `atelier account create`
/// prints it) and writes a painting with code `code`; returns its URI.
async fn publish_painting(pds: &str, handle: &str, app_password: &str, code: &str) -> String {
    let http = reqwest::Client::new();
    let session: serde_json::Value = http
        .post(format!("{pds}/xrpc/com.atproto.server.createSession"))
        .json(&serde_json::json!({"identifier": handle, "password": app_password}))
        .send()
        .await
        .expect("createSession")
        .json()
        .await
        .expect("JSON");
    let created: serde_json::Value = http
        .post(format!("{pds}/xrpc/com.atproto.repo.createRecord"))
        .bearer_auth(
            session["accessJwt"]
                .as_str()
                .expect("signed in with the app password"),
        )
        .json(&serde_json::json!({
            "repo": session["did"],
            "collection": "computer.aesthetic.painting",
            "record": {
                "$type": "computer.aesthetic.painting",
                "slug": format!("2026.12.06.10.00.00.{code}"),
                "code": code,
                "imageUrl": format!("https://aesthetic.computer/media/paintings/{code}"),
                "when": "2026-12-06T10:00:00.000Z",
                "ref": "6710f0c2a3b4c5d6e7f80912",
            },
        }))
        .send()
        .await
        .expect("createRecord")
        .json()
        .await
        .expect("JSON");
    created["uri"].as_str().expect("record URI").to_owned()
}

/// Waits for `child` to exit, failing with `what` after `timeout`.
fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops an `atelier up` with SIGTERM and checks it exits cleanly.
fn stop_up(mut child: std::process::Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "a clean stop: {status}");
}

/// Whether the feed at `feed` lists `uri` within a minute.
async fn feed_has(feed: &str, uri: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: serde_json::Value = reqwest::get(feed)
            .await
            .expect("AppView answers")
            .json()
            .await
            .expect("JSON");
        let found = body["records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uri"] == uri));
        if found || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `atelier up` (the README's quick start): the sandbox plus the AppView, which indexes a
/// painting written to the sandbox PDS and serves it in the Atmosphere feed; a restart on
/// the same data directory serves it again at once, from the persisted index. Beside it:
/// `atelier status` (all healthy), `atelier account create` (its app password publishes a
/// painting that reaches the feed), `atelier down` (a clean stop), `status` when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_appview_over_the_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    let start = || start_up(data);
    let stop = stop_up;
    let (child, pds, feed) = start();
    let una = atelier_sandbox::Account::create_on(&pds, "una")
        .await
        .expect("an account on the sandbox PDS");
    let painting = una
        .create_record(
            "computer.aesthetic.painting",
            &serde_json::json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.04.18.00.00.000",
                "code": "u1a",
                "imageUrl": "https://aesthetic.computer/media/paintings/u1a",
                "when": "2026-12-04T18:00:00.000Z",
                "ref": "6710f0c2a3b4c5d6e7f80912",
            }),
        )
        .await
        .expect("painting");
    assert!(
        feed_has(&feed, &painting.uri).await,
        "the painting reaches the AppView feed at {feed}"
    );
    stop(child);

    let (mut child, pds, feed) = start();
    assert!(
        feed_has(&feed, &painting.uri).await,
        "still there after a restart"
    );

    // A second `up` on the same data directory is refused (one `up` per directory).
    let second = Command::new(ATELIER)
        .args(["up", "--appview-port", "0", "--data-dir", data])
        .output()
        .expect("atelier runs");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another atelier up (pid"),
        "{second:?}"
    );

    // `atelier status`: every service running and healthy.
    let status = atelier(&["status", "--json", "--data-dir", data]);
    assert!(status.status.success(), "{status:?}");
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let services: Vec<(&str, &str)> = report["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["health"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("plc", "healthy"),
            ("pds", "healthy"),
            ("appview", "healthy")
        ]
    );

    // `atelier account create`, then publish with its app password: the quick start.
    let created = atelier(&["account", "create", "ada", "--data-dir", data]);
    assert!(created.status.success(), "{created:?}");
    let text = String::from_utf8_lossy(&created.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let (handle, app_password) = (field("handle"), field("app password"));
    assert_eq!(handle, "ada.test");
    let uri = publish_painting(&pds, &handle, &app_password, "ada").await;
    assert!(
        feed_has(&feed, &uri).await,
        "ada's painting reaches the feed"
    );

    // `atelier logs`: the services' log lines, one service or both (prefixed).
    let logs = atelier(&["logs", "pds", "-n", "3", "--data-dir", data]);
    assert!(logs.status.success(), "{logs:?}");
    let text = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert_eq!(text.lines().count(), 3, "{text}");
    let both = atelier(&["logs", "--data-dir", data]);
    let text = String::from_utf8_lossy(&both.stdout).into_owned();
    assert!(
        text.lines().any(|l| l.starts_with("plc  | "))
            && text.lines().any(|l| l.starts_with("pds  | ")),
        "{text}"
    );
    let bad = atelier(&["logs", "relay", "--data-dir", data]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no logs for `relay`"));

    // `atelier down` stops it cleanly; then `status` says so and fails.
    let down = atelier(&["down", "--data-dir", data]);
    assert!(down.status.success(), "{down:?}");
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "a clean stop: {exit}");
    let status = atelier(&["status", "--data-dir", data]);
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("not running"),
        "{status:?}"
    );
    let again = atelier(&["account", "create", "bob", "--data-dir", data]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no `atelier up` is running"),
        "{again:?}"
    );
}

/// Reads `atelier status --json` for the `up` using `data`, if it answers.
fn status_json(data: &str) -> Option<serde_json::Value> {
    let out = atelier(&["status", "--json", "--data-dir", data]);
    serde_json::from_slice(&out.stdout).ok()
}

/// The PDS row of a status report.
fn pds_row(report: &serde_json::Value) -> serde_json::Value {
    report["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "pds"))
        .cloned()
        .unwrap_or_default()
}

/// The supervisor: a PDS killed with SIGKILL is started again and `status` counts the
/// restart; a PDS that cannot start (its port taken) is retried with backoff until the
/// crash-loop limit, then `up` stops and says which service and why.
#[test]
fn up_restarts_a_killed_pds_and_gives_up_on_a_crash_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path").to_owned();
    let stderr_path = dir.path().join("up.stderr");
    let mut child = Command::new(ATELIER)
        .args(["up", "--appview-port", "0", "--data-dir", &data])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("atelier up starts");
    let wait_for = |what: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(report) = status_json(&data)
                && check(&report)
            {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; up's stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let healthy = |r: &serde_json::Value| {
        r["services"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|s| s["health"] == "healthy"))
    };
    let report = wait_for("up to be healthy", &healthy);
    let first = pds_row(&report);
    let pid = first["pid"]
        .as_u64()
        .expect("the PDS runs as a child with a pid") as i32;
    assert_eq!(first["restarts"], 0);

    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 the PDS");
    let report = wait_for("the PDS to be restarted", &|r| {
        healthy(r) && pds_row(r)["restarts"] == 1
    });
    let again = pds_row(&report);
    let new_pid = again["pid"].as_u64().expect("pid") as i32;
    assert_ne!(new_pid, pid, "a new process");

    // Take the PDS's port, then kill it: every restart fails until the limit.
    let port: u16 = again["url"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("the PDS URL has a port");
    kill(Pid::from_raw(new_pid), Signal::SIGKILL).expect("kill -9 the PDS again");
    let deadline = Instant::now() + Duration::from_secs(5);
    let _squatter = loop {
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => break listener,
            Err(e) => {
                assert!(Instant::now() < deadline, "binding {port}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let status = wait_exit(
        &mut child,
        Duration::from_secs(180),
        "up gives up on a crash loop in time",
    );
    assert!(!status.success(), "a crash loop is a failure: {status}");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        stderr.contains(&format!(
            "pds exited {} times within",
            atelier_sandbox::CRASH_LIMIT
        )),
        "{stderr}"
    );
    assert!(status_json(&data).is_some_and(|r| r["running"] == false));
}

/// Runs the real `atelier` with `dir` as the working directory.
fn atelier_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(ATELIER)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("atelier runs")
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The Control plane issue's first loop, from a fresh directory: `atelier init` ->
/// `atelier up` (which reads ./atelier.yaml: PLC, PDS, the relay, the AppView and the admin
/// console with the labeler on the file's ports) -> `atelier account create` -> a painting written to the PDS reaches the
/// AppView's feed through the relay -> `atelier status --json` all healthy -> `atelier plan`
/// shows nothing to change; one relay setting changed: `plan` names it and only the relay,
/// and a second `atelier up` restarts only the relay -> `atelier down` leaves no process
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_up_account_publish_status_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let init = atelier_in(root, &["init"]);
    assert!(init.status.success(), "{init:?}");
    // The file's default ports, moved to free ones so tests and a developer's own
    // `atelier up` do not collide.
    let yaml_path = root.join("atelier.yaml");
    let mut yaml = std::fs::read_to_string(&yaml_path).expect("atelier.yaml");
    for default in ["2480", "2582", "2583", "2584", "2585"] {
        yaml = yaml.replace(default, &free_port().to_string());
    }
    std::fs::write(&yaml_path, yaml).expect("write");

    let stderr_path = root.join("up.stderr");
    let mut child = Command::new(ATELIER)
        .arg("up")
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("atelier up starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let out = atelier_in(root, &["status", "--json"]);
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON");
        }
        assert!(
            Instant::now() < deadline,
            "all healthy in time: {out:?}\nup's stderr:\n{}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let names: Vec<&str> = report["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["plc", "pds", "relay", "appview", "admin"]);
    let url = |name: &str| {
        report["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .and_then(|s| s["url"].as_str())
            .expect("url")
            .to_owned()
    };
    let (pds, appview, admin) = (url("pds"), url("appview"), url("admin"));
    // The console answers with its sign-in page, and the labeler it carries with labels.
    let login = reqwest::get(format!("{admin}/login"))
        .await
        .expect("console");
    assert_eq!(login.status(), 200);
    let labels = reqwest::get(format!(
        "{admin}/xrpc/com.atproto.label.queryLabels?uriPatterns=*"
    ))
    .await
    .expect("labeler");
    assert_eq!(labels.status(), 200);
    let children: Vec<i32> = report["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    assert_eq!(children.len(), 2, "the PLC and PDS run as child processes");

    let created = atelier_in(root, &["account", "create", "ivy"]);
    assert!(created.status.success(), "{created:?}");
    let text = String::from_utf8_lossy(&created.stdout).into_owned();
    let app_password = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("app password")
                .map(|v| v.trim().to_owned())
        })
        .expect("an app password");
    let uri = publish_painting(&pds, "ivy.test", &app_password, "ivy").await;
    let http = reqwest::Client::new();
    let feed = format!("{appview}/xrpc/computer.aesthetic.feed.getAtmosphere");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body: serde_json::Value = http
            .get(&feed)
            .send()
            .await
            .expect("AppView")
            .json()
            .await
            .expect("JSON");
        if body["records"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["uri"] == uri.as_str()))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the painting reaches the feed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health: serde_json::Value = http
        .get(format!("{appview}/xrpc/_health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert!(
        health["source"]
            .as_str()
            .is_some_and(|s| s.contains(&url("relay").replace("http://", ""))),
        "the AppView follows the relay: {health}"
    );

    // `atelier plan` against the running `up`: nothing to change; then one relay setting
    // changes: only the relay restarts, through a second `atelier up`.
    let plan = atelier_in(root, &["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.status.success(), "{plan:?}");
    for name in ["plc", "pds", "relay", "appview"] {
        assert!(
            text.contains(&format!("  {name:<8} leave (unchanged)")),
            "{name}: {text}"
        );
    }
    let same = atelier_in(root, &["up"]);
    assert!(
        String::from_utf8_lossy(&same.stdout).contains("nothing to do"),
        "{same:?}"
    );
    let yaml = std::fs::read_to_string(&yaml_path).expect("read");
    std::fs::write(
        &yaml_path,
        yaml.replace("retention_hours: 72", "retention_hours: 48"),
    )
    .expect("write");
    let plan = atelier_in(root, &["plan"]);
    let text = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(
        text.contains("  relay    restart (services.relay.log.retention_hours changed)"),
        "{text}"
    );
    for name in ["plc", "pds", "appview"] {
        assert!(
            text.contains(&format!("  {name:<8} leave (unchanged)")),
            "{name}: {text}"
        );
    }
    let apply = atelier_in(root, &["up"]);
    assert!(
        apply.status.success(),
        "{apply:?}\nup's stderr:\n{}",
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    assert!(
        String::from_utf8_lossy(&apply.stdout).contains("Applied."),
        "{apply:?}"
    );
    let after = atelier_in(root, &["status", "--json"]);
    assert!(
        after.status.success(),
        "all healthy after the reload: {after:?}"
    );
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).expect("JSON");
    let pids_after: Vec<i32> = after["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    assert_eq!(pids_after, children, "the PLC and PDS were left running");
    let plan = atelier_in(root, &["plan"]);
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("  relay    leave (unchanged)"),
        "{plan:?}"
    );

    let down = atelier_in(root, &["down"]);
    assert!(down.status.success(), "{down:?}");
    assert!(child.wait().expect("wait").success());
    for pid in children {
        assert!(
            kill(Pid::from_raw(pid), None).is_err(),
            "child {pid} is gone after down"
        );
    }
}

/// `atelier backup` -> wipe -> `atelier restore` -> `atelier up`: the same records are
/// served, by the PDS and by the AppView (its index came back too). A backup of a running
/// `up` and a restore over existing data are refused; a file that is not a backup is
/// named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_serves_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf-8 path").to_owned();
    let archive = dir.path().join("backup.tar.zst");
    let archive_arg = archive.to_str().expect("utf-8 path").to_owned();

    let (child, pds, feed) = start_up(&data);
    let zoe = atelier_sandbox::Account::create_on(&pds, "zoe")
        .await
        .expect("account");
    let painting = zoe
        .create_record(
            "computer.aesthetic.painting",
            &serde_json::json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2026.12.06.12.00.00.000",
                "code": "zoe",
                "imageUrl": "https://aesthetic.computer/media/paintings/zoe",
                "when": "2026-12-06T12:00:00.000Z",
                "ref": "6710f0c2a3b4c5d6e7f80912",
            }),
        )
        .await
        .expect("painting");
    assert!(feed_has(&feed, &painting.uri).await);
    let refused = atelier(&["backup", "--out", &archive_arg, "--data-dir", &data]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("atelier up is running"),
        "{refused:?}"
    );
    stop_up(child);

    let backup = atelier(&["backup", "--out", &archive_arg, "--data-dir", &data]);
    assert!(backup.status.success(), "{backup:?}");
    let occupied = atelier(&["restore", &archive_arg, "--data-dir", &data]);
    assert!(!occupied.status.success());
    assert!(
        String::from_utf8_lossy(&occupied.stderr).contains("is not empty"),
        "{occupied:?}"
    );
    let not_ours = dir.path().join("notes.txt");
    std::fs::write(&not_ours, "hello").expect("write");
    let bad = atelier(&[
        "restore",
        not_ours.to_str().expect("utf-8"),
        "--data-dir",
        &data,
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not an atelier backup"),
        "{bad:?}"
    );

    std::fs::remove_dir_all(&data_dir).expect("wipe");
    let restore = atelier(&["restore", &archive_arg, "--data-dir", &data]);
    assert!(restore.status.success(), "{restore:?}");
    let secret = data_dir.join("secrets/pds_admin_password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&secret)
            .expect("secret restored")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "secrets stay private");

    let (child, _pds, feed) = start_up(&data);
    let record = zoe
        .get_record(
            "computer.aesthetic.painting",
            painting.uri.rsplit('/').next().expect("rkey"),
        )
        .await
        .expect("the PDS serves the record again");
    assert_eq!(record["cid"], serde_json::json!(painting.cid));
    assert!(
        feed_has(&feed, &painting.uri).await,
        "the restored AppView index serves it"
    );
    stop_up(child);
}
