//! `atelier.yaml`: the error messages (file, line, column, key path) for a table of bad
//! files, secrets given inline or in files, the shipped example staying identical to what
//! `atelier init` writes, and `atelier init` / `atelier check` run as the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use atelier_control::config::{
    self, AtelierConfig, ConfigError, Profile, Secret, secrets::SECRETS,
};

const ATELIER: &str = env!("CARGO_BIN_EXE_atelier");

/// The example shipped in `deploy/`.
fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/atelier.example.yaml")
}

/// Writes `yaml` as `atelier.yaml` in a new directory and loads it.
fn load(yaml: &str) -> (tempfile::TempDir, Result<config::Loaded, ConfigError>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atelier.yaml");
    std::fs::write(&path, yaml).expect("write atelier.yaml");
    let loaded = config::load(&path);
    (dir, loaded)
}

/// The error `yaml` gives, with the temporary directory taken off the file name, so it
/// reads `atelier.yaml:L:C: key: reason`.
fn error_of(yaml: &str) -> String {
    let (dir, loaded) = load(yaml);
    let err = loaded.expect_err("the file is refused").to_string();
    let prefix = format!("{}/", dir.path().display());
    err.replace(&prefix, "")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn bad_files_are_refused_with_file_line_column_and_key() {
    // (what, the file, what the error must contain).
    let cases: &[(&str, &str, &str)] = &[
        (
            "wrong type",
            "services:\n  pds:\n    port: seventy\n",
            "atelier.yaml:3:11: services.pds.port: invalid type: string \"seventy\", expected u16",
        ),
        (
            "wrong enum value",
            "profile: staging\n",
            "atelier.yaml:1:10: profile: unknown variant `staging`, expected `sandbox` or `production`",
        ),
        (
            "unknown top-level key",
            "hostnam: example.com\n",
            "atelier.yaml:1:1: hostnam: unknown field `hostnam`, expected one of `profile`, `hostname`",
        ),
        (
            "unknown nested key",
            "services:\n  relay:\n    crawl:\n      max_hostz: 3\n",
            "atelier.yaml:4:7: services.relay.crawl.max_hostz: unknown field `max_hostz`, expected one of",
        ),
        (
            "unknown key in a list item",
            "services:\n  admin:\n    bootstrap:\n      - name: a\n        role: admin\n        rol: x\n",
            "atelier.yaml:6:9: services.admin.bootstrap[0].rol: unknown field `rol`",
        ),
        (
            "duplicate top-level key",
            "hostname: a.example\nhostname: b.example\n",
            "atelier.yaml:2:1: hostname: duplicate key",
        ),
        (
            "duplicate nested key",
            "services:\n  pds:\n    port: 1\n    port: 2\n",
            "atelier.yaml:4:5: services.pds.port: duplicate key",
        ),
        (
            "bad YAML syntax",
            "profile: [sandbox\n",
            "atelier.yaml:2:1: invalid YAML: did not find expected ',' or ']'",
        ),
        (
            "a tab for indentation",
            "services:\n\tpds: {}\n",
            "atelier.yaml:2:1: invalid YAML: found character that cannot start any token",
        ),
        (
            "a secret inline and in a file",
            "services:\n  pds:\n    smtp_url: smtps://u:p@mail.example:465\n    smtp_url_file: smtp\n",
            "atelier.yaml:3:5: services.pds.smtp_url: set both services.pds.smtp_url and services.pds.smtp_url_file; keep one",
        ),
        (
            "a secret file that is not there",
            "services:\n  appview:\n    store:\n      kind: postgres\n      url_file: missing\n",
            "atelier.yaml:5:7: services.appview.store.url_file: reading secret file",
        ),
        (
            "postgres without a URL",
            "services:\n  appview:\n    store:\n      kind: postgres\n",
            "atelier.yaml:3:5: services.appview.store.url: kind: postgres needs url or url_file",
        ),
        (
            "a postgres URL of another scheme",
            "services:\n  appview:\n    store:\n      kind: postgres\n      url: mysql://u:hunter2@db/x\n",
            "atelier.yaml:5:7: services.appview.store.url: must be a postgres:// or postgresql:// URL (the scheme is mysql)",
        ),
        (
            "two services on one port",
            "services:\n  appview:\n    port: 2583\n",
            "atelier.yaml:3:5: services.appview.port: port 2583 is already used by services.pds.port",
        ),
        (
            "a port clash through 0.0.0.0",
            "services:\n  admin:\n    bind: 0.0.0.0\n    port: 2584\n",
            "atelier.yaml:4:5: services.admin.port: port 2584 is already used by services.appview.port",
        ),
        (
            "a port clash with the relay",
            "services:\n  relay:\n    listen: 127.0.0.1:2585\n",
            // The key is not in the file: the position is its nearest section that is.
            "atelier.yaml:1:1: services.admin.port: port 2585 is already used by services.relay.listen",
        ),
        (
            "port 0",
            "services:\n  pds:\n    port: 0\n",
            "atelier.yaml:3:5: services.pds.port: port 0 is not allowed",
        ),
        (
            "production without TLS",
            "profile: production\nhostname: atelier.example.com\ntls:\n  behind_proxy: false\n",
            "atelier.yaml:3:1: tls: the production profile needs TLS",
        ),
        (
            "production on localhost",
            "profile: production\nhostname: localhost\ntls:\n  behind_proxy: true\n",
            "atelier.yaml:2:1: hostname: \"localhost\" is not a public hostname",
        ),
        (
            "production with the hostname left out",
            "profile: production\n",
            "atelier.yaml: hostname: \"localhost\" is not a public hostname",
        ),
        (
            "production with a local PLC",
            "profile: production\nhostname: atelier.example.com\ntls:\n  behind_proxy: true\nservices:\n  plc:\n    port: 2582\n",
            "atelier.yaml:6:3: services.plc: only the sandbox profile runs a local PLC directory",
        ),
        (
            "a certificate without its key",
            "tls:\n  cert_file: cert.pem\n",
            "atelier.yaml:1:1: tls.key_file: required with tls.cert_file",
        ),
        (
            "a hostname that is not a DNS name",
            "hostname: atelier_example.com\n",
            "atelier.yaml:1:1: hostname: \"atelier_example.com\" is not a DNS name",
        ),
        (
            "a relay filter pattern that is not an NSID",
            "services:\n  relay:\n    filter:\n      collections: [\"computer.aesthetic\"]\n",
            "atelier.yaml:4:7: services.relay.filter.collections: filter collection pattern \"computer.aesthetic\" is invalid",
        ),
        (
            "a relay filter wildcard in the middle",
            "services:\n  relay:\n    filter:\n      collections:\n        - computer.*.painting\n",
            "atelier.yaml:4:7: services.relay.filter.collections: filter collection pattern \"computer.*.painting\" is invalid",
        ),
        (
            "a crawler that is not a URL",
            "services:\n  pds:\n    crawlers:\n      - bsky.network\n",
            "atelier.yaml:4:9: services.pds.crawlers[0]: \"bsky.network\" is not an http(s) URL",
        ),
        (
            "a bootstrap user listed twice",
            "services:\n  admin:\n    bootstrap:\n      - name: ana\n        role: admin\n      - name: ana\n        role: triage\n",
            "atelier.yaml:6:9: services.admin.bootstrap[1].name: \"ana\" is listed twice",
        ),
        (
            "an AppView labeler that is not a DID",
            "services:\n  appview:\n    labelers:\n      - did: labeler.example\n",
            "atelier.yaml:4:9: services.appview.labelers[0].did: \"labeler.example\" is not a DID",
        ),
        (
            "a jetstream source not marked trusted",
            "services:\n  appview:\n    source:\n      url: wss://js.example/subscribe\n      kind: jetstream\n",
            "atelier.yaml:3:5: services.appview.source.trusted: a jetstream source carries no signatures",
        ),
        (
            "a source of an unknown kind",
            "services:\n  appview:\n    source:\n      url: wss://js.example/subscribe\n      kind: firehose\n",
            "services.appview.source.kind: unknown variant `firehose`, expected `subscribe_repos` or `jetstream`",
        ),
        (
            "a relay labeler URL that is not http",
            "services:\n  relay:\n    labelers:\n      - did: did:plc:abc\n        url: ftp://labeler.example\n",
            "atelier.yaml:5:9: services.relay.labelers[0].url: scheme \"ftp\" is not http or https",
        ),
    ];
    let mut failures = Vec::new();
    for &(what, yaml, expect) in cases {
        let got = error_of(yaml);
        if !got.contains(expect) {
            failures.push(format!("{what}:\n  expected: {expect}\n  got:      {got}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn an_empty_file_gives_the_sandbox_defaults() {
    for text in ["", "\n", "# only a comment\n", "---\n"] {
        let (_dir, loaded) = load(text);
        let loaded = loaded.expect("an empty file is valid");
        assert_eq!(loaded.config, AtelierConfig::sandbox(), "{text:?}");
        assert_eq!(loaded.config.profile, Profile::Sandbox);
        assert_eq!(loaded.config.hostname, "localhost");
        assert!(loaded.config.plc().is_some());
    }
}

#[test]
fn a_short_production_file_gets_the_production_defaults() {
    let yaml = "profile: production\nhostname: atelier.example.com\ntls:\n  behind_proxy: true\n";
    let (_dir, loaded) = load(yaml);
    let config = loaded.expect("valid").config;
    assert_eq!(
        config.services,
        AtelierConfig::production("atelier.example.com").services
    );
    assert!(config.plc().is_none());
    assert!(config.services.relay.is_none());
}

#[test]
fn secrets_come_inline_or_from_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atelier.yaml");
    let secret_file = dir.path().join("pg-url");
    std::fs::write(&secret_file, "postgres://atelier:s3cret@db/atelier\n").expect("write");
    chmod(&secret_file, 0o600);
    let yaml = "services:\n  appview:\n    store:\n      kind: postgres\n      url_file: pg-url\n";
    std::fs::write(&path, yaml).expect("write");

    // From a 0600 file, relative to the config's directory, without its newline.
    let loaded = config::load(&path).expect("a private secret file is accepted");
    let store = &loaded.config.services.appview.store;
    let url = store
        .postgres_url(&loaded.base_dir)
        .expect("readable")
        .expect("set");
    assert_eq!(url.expose(), "postgres://atelier:s3cret@db/atelier");

    // World-readable: refused, naming the file and the fix.
    chmod(&secret_file, 0o644);
    let err = config::load(&path)
        .expect_err("a world-readable secret file is refused")
        .to_string();
    let shown = secret_file.display();
    for part in [
        "atelier.yaml:5:7: services.appview.store.url_file: ",
        &format!("secret file {shown} is world-readable (mode 0644)"),
        &format!("chmod 600 {shown}"),
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    assert!(!err.contains("s3cret"), "the value is not shown: {err}");

    // Inline works too.
    let inline =
        "services:\n  appview:\n    store:\n      kind: postgres\n      url: postgres://db/x\n";
    std::fs::write(&path, inline).expect("write");
    config::load(&path).expect("an inline secret is accepted");
}

#[test]
fn a_world_readable_generated_secret_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("atelier.yaml");
    std::fs::write(&path, "").expect("write");
    let secrets = config::secrets::ensure_secrets(&dir.path().join("atelier-data"))
        .expect("secrets are generated");
    let key = secrets.path("labeler_key");
    chmod(&key, 0o644);
    let err = config::load(&path).expect_err("refused").to_string();
    assert!(err.contains("data_dir: "), "{err}");
    assert!(
        err.contains(&format!("secret file {} is world-readable", key.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
}

#[test]
fn debug_output_never_shows_a_secret() {
    let yaml = "services:\n  pds:\n    smtp_url: smtps://u:hunter2@mail.example:465\n  appview:\n    store:\n      kind: postgres\n      url: postgres://u:hunter2@db/x\n";
    let (_dir, loaded) = load(yaml);
    let loaded = loaded.expect("valid");
    assert_eq!(
        loaded
            .config
            .services
            .pds
            .smtp_url
            .as_ref()
            .map(Secret::expose),
        Some("smtps://u:hunter2@mail.example:465")
    );
    for shown in [
        format!("{loaded:?}"),
        format!("{loaded:#?}"),
        format!("{:?}", loaded.config),
        format!("{:?}", loaded.config.services.pds),
        format!("{:?}", loaded.config.services.appview.store),
        format!("{:?}", Secret::new("hunter2")),
        format!("{}", Secret::new("hunter2")),
    ] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(format!("{:?}", loaded.config).contains("[redacted]"));
}

#[test]
fn the_example_is_what_init_writes() {
    let rendered =
        config::init::render(&AtelierConfig::for_profile(Profile::Sandbox, None)).expect("render");
    let path = example_path();
    if std::env::var_os("ATELIER_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("write the example");
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == rendered,
        "{} differs from what `atelier init` writes. Regenerate it with\n\
         \n    ATELIER_BLESS=1 cargo test -p atelier-control --test config the_example\n\
         \nor `atelier init --no-secrets --force --out deploy/atelier.example.yaml`, and review the diff.",
        path.display()
    );
}

#[test]
fn the_example_parses_and_passes_check() {
    let path = example_path();
    let text = std::fs::read_to_string(&path).expect("the example is there");
    let parsed = config::parse(&text, "atelier.example.yaml").expect("it parses");
    assert_eq!(parsed, AtelierConfig::sandbox());
    // Checked from an empty directory, so no secrets of this checkout get in the way.
    let dir = tempfile::tempdir().expect("tempdir");
    config::parse_and_check(&text, "atelier.example.yaml", dir.path()).expect("it passes check");
}

/// Runs the real `atelier` in `dir`.
fn atelier(dir: &Path, args: &[&str]) -> Output {
    Command::new(ATELIER)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("atelier runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn init_then_check_with_the_real_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let out = atelier(root, &["init"]);
    assert!(out.status.success(), "{}", text(&out));
    let config_path = root.join("atelier.yaml");
    let written = std::fs::read_to_string(&config_path).expect("init wrote atelier.yaml");
    let example = std::fs::read_to_string(example_path()).expect("example");
    assert_eq!(written, example, "init writes the shipped example");

    // Every secret at 0600, in a 0700 directory.
    let secrets = root.join("atelier-data/secrets");
    assert_eq!(mode(&secrets), 0o700);
    let mut values = Vec::new();
    for &(name, _) in SECRETS {
        let file = secrets.join(name);
        assert_eq!(mode(&file), 0o600, "{name}");
        values.push(std::fs::read(&file).expect("read secret"));
    }
    // No secret value reaches the output.
    let all = text(&out);
    for value in &values {
        let value = String::from_utf8_lossy(value);
        assert!(
            !all.contains(value.trim_end()),
            "a secret is printed:\n{all}"
        );
    }

    let out = atelier(root, &["check"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("ok: atelier.yaml: sandbox profile, hostname localhost"),
        "{stdout}"
    );

    // A second `init` refuses to replace the file and leaves the secrets alone.
    std::fs::write(&config_path, "hostname: edited.example\n").expect("edit");
    let out = atelier(root, &["init"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("atelier.yaml already exists; pass --force to overwrite it"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&config_path).expect("read"),
        "hostname: edited.example\n"
    );
    let unchanged = |values: &[Vec<u8>]| {
        for (&(name, _), value) in SECRETS.iter().zip(values) {
            let now = std::fs::read(secrets.join(name)).expect("read secret");
            assert_eq!(&now, value, "{name} is kept");
        }
    };
    unchanged(&values);

    // With --force the file is rewritten, and the secrets are still kept.
    let out = atelier(root, &["init", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("secrets already in"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&config_path).expect("read"),
        example
    );
    unchanged(&values);
}

#[test]
fn check_with_the_real_binary_reports_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "services:\n  relay:\n    crawl:\n      max_hostz: 3\n",
    )
    .expect("write");
    let out = atelier(dir.path(), &["check", "--config", "bad.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml:4:7: services.relay.crawl.max_hostz: unknown field `max_hostz`"),
        "{stderr}"
    );

    let out = atelier(dir.path(), &["check", "--config", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reading missing.yaml"),
        "{}",
        text(&out)
    );
}

#[test]
fn production_init_writes_a_file_check_refuses_until_tls_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = atelier(
        dir.path(),
        &[
            "init",
            "--profile",
            "production",
            "--hostname",
            "atelier.example.com",
            "--no-secrets",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("before `atelier up`, fix: tls:"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("atelier-data").exists(), "--no-secrets");
    let out = atelier(dir.path(), &["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls: the production profile needs TLS"),
        "{stderr}"
    );
}

/// The key paths of a file in the block style `atelier init` writes: `a.b`, with the keys
/// of list items as `a[].b`.
fn key_paths(yaml: &str) -> Vec<String> {
    // (column of the key, its path); a list item adds an entry `a[]` one column to the left
    // of its keys.
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut paths = Vec::new();
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (item, content) = match trimmed.strip_prefix("- ") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let column = line.len() - content.len();
        let key = match content.split_once(": ") {
            Some((key, _)) => key,
            None => match content.strip_suffix(':') {
                Some(key) => key,
                None => continue,
            },
        };
        if item {
            while stack.last().is_some_and(|(c, _)| *c + 1 >= column) {
                stack.pop();
            }
            let list = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
            stack.push((column - 1, format!("{list}[]")));
        } else {
            while stack.last().is_some_and(|(c, _)| *c >= column) {
                stack.pop();
            }
        }
        let path = match stack.last() {
            Some((_, parent)) => format!("{parent}.{key}"),
            None => key.to_owned(),
        };
        stack.push((column, path.clone()));
        paths.push(path);
    }
    paths
}

#[test]
fn the_reference_page_lists_every_key() {
    let rendered = config::init::render(&AtelierConfig::sandbox()).expect("render");
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs/configuration.md");
    let paths = key_paths(&rendered);
    assert!(
        paths.contains(&"services.relay.upstreams[].url".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"services.admin.bootstrap[].role".to_owned()),
        "{paths:?}"
    );
    assert!(paths.contains(&"tls.behind_proxy".to_owned()), "{paths:?}");
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !page.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no row for {missing:?}; add one per key (section 7)"
    );
}
