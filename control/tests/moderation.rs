//! Moderation: reports in, queues, actions and the audit log.
//!
//! Every test uses real SQLite files in a temporary directory (the moderation store and the
//! labeler's store, as `atelier up` will), and the createReport test a real PLC and
//! reference PDS from the sandbox, whose tokens reach our router on 127.0.0.1.
//!
//! What this proves:
//! - createReport accepts a token the reporter's PDS minted for us and this method, stores
//!   the report in the unreviewed queue and answers the lexicon's output; it refuses other
//!   audiences, other methods, expired, garbage and missing tokens (401, with the XRPC error
//!   name) and invalid bodies (400 `InvalidRequest` naming the field);
//! - queue filters and pagination, per-subject grouping, reopening on a new report, muted
//!   reporters neither raising nor reopening, auto-flags not repeating;
//! - a bulk takedown issues one signed `!takedown` label per subject, resolves them and
//!   writes one audit entry each; restore negates; invalid requests change nothing; a
//!   failing labeler leaves a `failed` audit entry and untouched subjects;
//! - the audit log refuses UPDATE and DELETE from any connection, and exports every entry;
//! - a restart (stores closed and reopened) keeps everything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atelier_control::labeler::{LabelQuery, LabelStore, Labeler, SigningKey, UriPattern};
use atelier_control::moderation::{
    ActError, Action, Assignee, AuditEntry, AuditRange, ExportFormat, Moderation, ModerationStore,
    NewReport, Order, Outcome, QueueQuery, QueueState, ReasonType, Report, ReportSource, StepError,
    SubjectRef, report_audience, xrpc_router,
};
use atelier_relay::sync::identity::{Resolver, ResolverConfig};
use atelier_relay::sync::ssrf::{GuardedClient, SsrfPolicy};
use atelier_sandbox::{Account, Sandbox};
use data_encoding::BASE64URL_NOPAD;
use serde_json::{Value, json};
use sqlx::Connection;
use tempfile::TempDir;

/// Our labeler, which is also the service reports are addressed to.
const LABELER: &str = "did:web:labeler.atelier.test";
const SPAM: &str = "com.atproto.moderation.defs#reasonSpam";
const RUDE: &str = "com.atproto.moderation.defs#reasonRude";
const OTHER: &str = "com.atproto.moderation.defs#reasonOther";
const PAINTING: &str = "computer.aesthetic.painting";
const MOOD: &str = "computer.aesthetic.mood";
const CID: &str = "bafyreifxykqhed72s26cr4i64rxvrtofeqrly3j4vjzbkvo3ckkjbxjqtq";
const HOUR: Duration = Duration::from_secs(3600);

/// A DID for a test actor.
fn did(name: &str) -> String {
    format!("did:plc:{name:0<24}")
}

fn account(name: &str) -> SubjectRef {
    SubjectRef::account(&did(name)).unwrap()
}

fn record(author: &str, collection: &str, rkey: &str) -> SubjectRef {
    SubjectRef::record(&format!("at://{}/{collection}/{rkey}", did(author)), None).unwrap()
}

fn reason(value: &str) -> ReasonType {
    ReasonType::parse(value).unwrap()
}

fn now_us() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(now.unwrap().as_micros()).unwrap()
}

fn uris(subjects: &[SubjectRef]) -> Vec<&str> {
    subjects.iter().map(SubjectRef::uri).collect()
}

/// Moderation over fresh stores in a temporary directory.
struct Env {
    dir: TempDir,
    moderation: Moderation,
}

impl Env {
    async fn new() -> Env {
        let dir = TempDir::new().unwrap();
        let moderation = open(dir.path()).await;
        Env { dir, moderation }
    }

    /// Closes both stores and opens them again from their files: a restart.
    async fn restart(self) -> Env {
        self.moderation.store().close().await;
        self.moderation.labeler().store().close().await;
        let moderation = open(self.dir.path()).await;
        Env {
            dir: self.dir,
            moderation,
        }
    }

    fn store(&self) -> &ModerationStore {
        self.moderation.store()
    }

    fn db_path(&self) -> PathBuf {
        self.dir.path().join("admin/moderation.sqlite")
    }

    async fn report(&self, subject: &SubjectRef, reason_type: &str, reporter: &str) -> Report {
        let report = NewReport::appview(
            &did(reporter),
            subject.clone(),
            reason(reason_type),
            Some(format!("{reporter} says {reason_type}")),
        );
        self.store().add_report(report).await.unwrap()
    }

    /// The queue `state` (one page, newest first), as subject URIs.
    async fn queue(&self, state: QueueState) -> Vec<String> {
        self.list(&QueueQuery::new(state), now_us()).await
    }

    async fn list(&self, query: &QueueQuery, now_us: i64) -> Vec<String> {
        let page = self.store().queue(query, now_us).await.unwrap();
        page.subjects
            .iter()
            .map(|s| s.subject.uri().to_owned())
            .collect()
    }

    async fn act(&self, subjects: &[SubjectRef], action: Action) -> Result<Vec<i64>, ActError> {
        let acted = self
            .moderation
            .act("mod-a", subjects, &action, Some("per policy"))
            .await?;
        Ok(acted.subjects.iter().map(|s| s.audit_id).collect())
    }

    async fn audit(&self) -> Vec<AuditEntry> {
        self.store()
            .audit_entries(AuditRange::default(), None, 1000)
            .await
            .unwrap()
    }
}

/// The stores under `dir`, and a labeler whose key is kept there too.
async fn open(dir: &Path) -> Moderation {
    let (key, _) = SigningKey::load_or_generate(&dir.join("label.key")).unwrap();
    let labels = LabelStore::open(&dir.join("labels.sqlite")).await.unwrap();
    let labeler = Labeler::new(LABELER, key, labels).await.unwrap();
    let store = ModerationStore::open_in(dir).await.unwrap();
    Moderation::new(store, labeler)
}

// ---- createReport, end to end ----

/// The router under test, served on loopback, with its base URL.
async fn serve_reports(sandbox: &Sandbox, store: ModerationStore, service_did: &str) -> String {
    let guard = GuardedClient::new(SsrfPolicy::sandbox()).unwrap();
    let resolver = Resolver::new(ResolverConfig::sandbox(sandbox.plc_url()), guard);
    let router = xrpc_router(store, resolver, service_did);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// A service token from `account`'s PDS for `aud` and method `lxm`.
async fn token(account: &Account, aud: &str, lxm: &str) -> String {
    account
        .service_auth(aud, Some(lxm))
        .await
        .expect("getServiceAuth")
}

/// `token` with its `exp` moved to the past (the signature no longer matches, but expiry
/// is checked first, as in the reference verifier).
fn expired(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
    claims["exp"] = json!(claims["iat"].as_i64().unwrap() - 120);
    parts[1] = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    parts.join(".")
}

/// One createReport call and what must come back.
struct Call {
    name: &'static str,
    /// The `Authorization` header, if any.
    authorization: Option<String>,
    content_type: &'static str,
    body: String,
    status: u16,
    /// The XRPC error name and the start of its message, for refusals.
    error: Option<(&'static str, &'static str)>,
}

async fn check_call(http: &reqwest::Client, url: &str, call: &Call) -> Value {
    let mut request = http
        .post(format!("{url}/xrpc/com.atproto.moderation.createReport"))
        .header("content-type", call.content_type)
        .body(call.body.clone());
    if let Some(authorization) = &call.authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, call.status, "{}: {body}", call.name);
    if let Some((error, message)) = call.error {
        assert_eq!(body["error"], error, "{}: {body}", call.name);
        let text = body["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{}: {body}", call.name);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_report_with_real_service_tokens() {
    tokio::time::timeout(Duration::from_secs(180), create_report_scenario())
        .await
        .expect("the scenario finishes within 3 minutes");
}

async fn create_report_scenario() {
    let sandbox = Sandbox::start().await.expect("sandbox starts");
    let alice = sandbox.create_account("alice").await.expect("alice");
    let bob = sandbox.create_account("bob").await.expect("bob");
    let painting = alice
        .create_record(PAINTING, &json!({"$type": PAINTING, "title": "sunset"}))
        .await
        .expect("alice paints");
    let env = Env::new().await;
    let url = serve_reports(&sandbox, env.store().clone(), LABELER).await;
    let http = reqwest::Client::new();

    let lxm = "com.atproto.moderation.createReport";
    let audience = report_audience(LABELER);
    assert_eq!(audience, format!("{LABELER}#atproto_labeler"));
    let bearer = |token: String| Some(format!("Bearer {token}"));
    let record_report = json!({
        "reasonType": SPAM,
        "reason": "spam in the title",
        "subject": {"$type": "com.atproto.repo.strongRef", "uri": painting.uri, "cid": painting.cid},
    })
    .to_string();
    let account_report = json!({
        "reasonType": "tools.ozone.report.defs#reasonViolenceThreats",
        "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": alice.did},
    })
    .to_string();
    let with = |reason_type: &str, subject: Value, reason: Option<String>| {
        let mut body = json!({"reasonType": reason_type, "subject": subject});
        if let Some(reason) = reason {
            body["reason"] = json!(reason);
        }
        body.to_string()
    };
    let ok = |name, authorization, body: &String| Call {
        name,
        authorization,
        content_type: "application/json",
        body: body.clone(),
        status: 200,
        error: None,
    };
    let refused = |name, authorization, body: String, status, error, message| Call {
        name,
        authorization,
        content_type: "application/json",
        body,
        status,
        error: Some((error, message)),
    };

    // Accepted: our audience with the service fragment (the reference PDS's proxy today)
    // and the bare DID (its older form).
    let good = bearer(token(&bob, &audience, lxm).await);
    let output = check_call(
        &http,
        &url,
        &ok("record report", good.clone(), &record_report),
    )
    .await;
    assert!(output["id"].as_i64().is_some(), "{output}");
    assert_eq!(output["reasonType"], SPAM);
    assert_eq!(output["reason"], "spam in the title");
    assert_eq!(output["reportedBy"], bob.did.as_str());
    assert_eq!(
        output["subject"],
        json!({"$type": "com.atproto.repo.strongRef", "uri": painting.uri, "cid": painting.cid})
    );
    let created = output["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    let legacy = bearer(token(&bob, LABELER, lxm).await);
    let output = check_call(
        &http,
        &url,
        &ok("bare-DID audience", legacy, &account_report),
    )
    .await;
    assert_eq!(
        output["subject"],
        json!({"$type": "com.atproto.admin.defs#repoRef", "did": alice.did})
    );
    assert!(output.get("reason").is_none(), "{output}");

    // Refused: authentication first, then the body.
    let elsewhere = "did:web:elsewhere.atelier.test#atproto_labeler";
    let other_service = bearer(token(&bob, elsewhere, lxm).await);
    let other_method = bearer(token(&bob, &audience, "com.atproto.moderation.getReport").await);
    let stale = bearer(expired(&token(&bob, &audience, lxm).await));
    let calls = [
        refused(
            "another audience",
            other_service,
            record_report.clone(),
            401,
            "BadJwtAudience",
            "jwt audience",
        ),
        refused(
            "another method",
            other_method,
            record_report.clone(),
            401,
            "BadJwtLexiconMethod",
            "bad jwt lexicon method",
        ),
        refused(
            "expired",
            stale,
            record_report.clone(),
            401,
            "JwtExpired",
            "jwt expired",
        ),
        refused(
            "garbage",
            bearer("not.a.jwt".to_owned()),
            record_report.clone(),
            401,
            "BadJwt",
            "poorly formatted jwt",
        ),
        refused(
            "the PDS session token",
            bearer(bob.access_jwt().to_owned()),
            record_report.clone(),
            401,
            "BadJwtType",
            "invalid jwt type",
        ),
        refused(
            "no token",
            None,
            record_report.clone(),
            401,
            "AuthMissing",
            "authorization required",
        ),
        refused(
            "a bad reason type",
            good.clone(),
            with(
                "spam",
                json!({"$type": "com.atproto.admin.defs#repoRef", "did": alice.did}),
                None,
            ),
            400,
            "InvalidRequest",
            "reasonType:",
        ),
        refused(
            "a record subject without a CID",
            good.clone(),
            with(
                SPAM,
                json!({"$type": "com.atproto.repo.strongRef", "uri": painting.uri}),
                None,
            ),
            400,
            "InvalidRequest",
            "subject.cid: required",
        ),
        refused(
            "a subject that is not a DID",
            good.clone(),
            with(
                SPAM,
                json!({"$type": "com.atproto.admin.defs#repoRef", "did": "alice.test"}),
                None,
            ),
            400,
            "InvalidRequest",
            "subject.did:",
        ),
        refused(
            "a reason over the lexicon's limit",
            good.clone(),
            with(
                SPAM,
                json!({"$type": "com.atproto.admin.defs#repoRef", "did": alice.did}),
                Some("x".repeat(2001)),
            ),
            400,
            "InvalidRequest",
            "reason:",
        ),
        refused(
            "a body over the size limit",
            good.clone(),
            "x".repeat(300 * 1024),
            413,
            "PayloadTooLarge",
            "request body is larger",
        ),
        Call {
            content_type: "text/plain",
            ..refused(
                "not JSON",
                good.clone(),
                record_report.clone(),
                400,
                "InvalidRequest",
                "Content-Type:",
            )
        },
    ];
    for call in &calls {
        check_call(&http, &url, call).await;
    }

    // Both accepted reports are in the unreviewed queue, as their subjects; nothing else is.
    let queue = env.queue(QueueState::Unreviewed).await;
    assert_eq!(queue, [alice.did.as_str(), painting.uri.as_str()]);
    let view = env.store().subject_view(&painting.uri).await.unwrap();
    assert_eq!(view.subject.report_count, 1);
    assert_eq!(view.subject.subject.cid(), Some(painting.cid.as_str()));
    let report = &view.reports[0].reports[0];
    assert_eq!(
        report.source,
        ReportSource::Atproto {
            reporter: bob.did.clone()
        }
    );
    assert_eq!(report.reason.as_deref(), Some("spam in the title"));

    sandbox.shutdown().await;
}

// ---- queues ----

#[tokio::test]
async fn queue_filters_and_pages() {
    let env = Env::new().await;
    let s1 = record("alice", PAINTING, "1");
    let s2 = record("alice", MOOD, "1");
    let s3 = account("bob");
    let s4 = record("bob", PAINTING, "2");
    env.report(&s1, SPAM, "rita").await;
    env.report(&s2, SPAM, "rudy").await;
    env.report(&s3, OTHER, "rex").await;
    let flag = NewReport::auto_flag(s4.clone(), None, "f**k");
    env.store().add_report(flag).await.unwrap();
    // A later report on s1 joins it; it does not move s1 in the queue.
    env.report(&s1, RUDE, "rudy").await;
    env.act(
        std::slice::from_ref(&s1),
        Action::Assign {
            moderator: Some("mod-a".into()),
        },
    )
    .await
    .unwrap();

    let mut times = Vec::new();
    for subject in [&s1, &s2, &s3, &s4] {
        times.push(
            env.store()
                .subject(subject.uri())
                .await
                .unwrap()
                .state_since_us,
        );
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let now = times[3] + HOUR.as_micros() as i64;
    let age = |i: usize| Duration::from_micros((now - times[i]) as u64);

    let base = QueueQuery::new(QueueState::Unreviewed);
    let cases: Vec<(&str, QueueQuery, Vec<&SubjectRef>)> = vec![
        ("newest first", base.clone(), vec![&s4, &s3, &s2, &s1]),
        (
            "oldest first",
            QueueQuery {
                order: Order::OldestFirst,
                ..base.clone()
            },
            vec![&s1, &s2, &s3, &s4],
        ),
        (
            "records",
            QueueQuery {
                kind: Some(atelier_control::moderation::SubjectKind::Record),
                ..base.clone()
            },
            vec![&s4, &s2, &s1],
        ),
        (
            "paintings",
            QueueQuery {
                collection: Some(PAINTING.into()),
                ..base.clone()
            },
            vec![&s4, &s1],
        ),
        (
            "reason rude",
            QueueQuery {
                reason_type: Some(RUDE.into()),
                ..base.clone()
            },
            vec![&s1],
        ),
        (
            "reason spam",
            QueueQuery {
                reason_type: Some(SPAM.into()),
                ..base.clone()
            },
            vec![&s2, &s1],
        ),
        (
            "reporter rudy",
            QueueQuery {
                reporter: Some(did("rudy")),
                ..base.clone()
            },
            vec![&s2, &s1],
        ),
        (
            "assigned to mod-a",
            QueueQuery {
                assigned: Some(Assignee::Moderator("mod-a".into())),
                ..base.clone()
            },
            vec![&s1],
        ),
        (
            "unassigned",
            QueueQuery {
                assigned: Some(Assignee::Nobody),
                ..base.clone()
            },
            vec![&s4, &s3, &s2],
        ),
        (
            "at least as old as s2",
            QueueQuery {
                min_age: Some(age(1)),
                ..base.clone()
            },
            vec![&s2, &s1],
        ),
        (
            "at most as old as s2",
            QueueQuery {
                max_age: Some(age(1)),
                ..base.clone()
            },
            vec![&s4, &s3, &s2],
        ),
        (
            "between s3 and s2",
            QueueQuery {
                min_age: Some(age(2)),
                max_age: Some(age(1)),
                ..base.clone()
            },
            vec![&s3, &s2],
        ),
        (
            "labelled (nothing is yet)",
            QueueQuery {
                label: Some("spoiler".into()),
                ..base.clone()
            },
            vec![],
        ),
        (
            "escalated (empty)",
            QueueQuery::new(QueueState::Escalated),
            vec![],
        ),
    ];
    for (name, query, expect) in &cases {
        let expect: Vec<&str> = expect.iter().map(|s| s.uri()).collect();
        assert_eq!(env.list(query, now).await, expect, "{name}");
    }

    // Pages of one and of three, both ways, add up to the whole queue.
    for order in [Order::NewestFirst, Order::OldestFirst] {
        for limit in [1, 3] {
            let mut query = QueueQuery {
                order,
                limit,
                ..base.clone()
            };
            let whole = env
                .list(
                    &QueueQuery {
                        limit: 50,
                        ..query.clone()
                    },
                    now,
                )
                .await;
            let mut paged = Vec::new();
            loop {
                let page = env.store().queue(&query, now).await.unwrap();
                assert!(page.subjects.len() <= limit as usize);
                paged.extend(page.subjects.iter().map(|s| s.subject.uri().to_owned()));
                match page.cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "{order:?} by {limit}");
        }
    }
    let bad = QueueQuery {
        cursor: Some("nope".into()),
        ..base.clone()
    };
    assert!(env.store().queue(&bad, now).await.is_err());

    // The queue row and the subject view group s1's two reports.
    let listed = env.store().subject(s1.uri()).await.unwrap();
    assert_eq!(listed.report_count, 2);
    assert_eq!(listed.reason_types, [RUDE, SPAM]);
    assert_eq!(listed.assigned_to.as_deref(), Some("mod-a"));
    let view = env.store().subject_view(s1.uri()).await.unwrap();
    let groups: Vec<(&str, Vec<Option<&str>>)> = view
        .reports
        .iter()
        .map(|g| {
            let reporters = g.reports.iter().map(|r| r.source.reporter()).collect();
            (g.reason_type.as_str(), reporters)
        })
        .collect();
    assert_eq!(
        groups,
        [
            (RUDE, vec![Some(did("rudy").as_str())]),
            (SPAM, vec![Some(did("rita").as_str())])
        ]
    );
    assert_eq!(
        uris(
            &view
                .author_subjects
                .iter()
                .map(|s| s.subject.clone())
                .collect::<Vec<_>>()
        ),
        [s2.uri()]
    );
    assert_eq!(view.subject_history.len(), 1, "the assignment");
    assert_eq!(view.subject_history[0].action, "assign");
}

#[tokio::test]
async fn new_reports_reopen_and_muted_reporters_do_not() {
    let env = Env::new().await;
    let painting = record("alice", PAINTING, "1");
    let mood = record("alice", MOOD, "1");
    env.report(&painting, SPAM, "rita").await;
    env.report(&mood, SPAM, "mallory").await;
    env.act(&[painting.clone(), mood.clone()], Action::Acknowledge)
        .await
        .unwrap();
    assert_eq!(
        env.queue(QueueState::Unreviewed).await,
        Vec::<String>::new()
    );
    assert_eq!(env.queue(QueueState::Resolved).await.len(), 2);

    // A new report reopens a resolved subject, with a fresh time in the queue.
    let before = env.store().subject(painting.uri()).await.unwrap();
    env.report(&painting, RUDE, "rita").await;
    let after = env.store().subject(painting.uri()).await.unwrap();
    assert_eq!(after.state, Some(QueueState::Unreviewed));
    assert!(after.state_since_us > before.state_since_us);
    assert_eq!(after.report_count, 2);

    // Muted: mallory's reports are kept but raise nothing, on old or new subjects.
    env.act(&[account("mallory")], Action::MuteReporter)
        .await
        .unwrap();
    let muted = env.report(&mood, RUDE, "mallory").await;
    assert!(muted.muted);
    let fresh = record("carol", MOOD, "9");
    assert!(env.report(&fresh, SPAM, "mallory").await.muted);
    let mood_row = env.store().subject(mood.uri()).await.unwrap();
    assert_eq!(mood_row.state, Some(QueueState::Resolved));
    assert_eq!(mood_row.report_count, 1);
    assert_eq!(mood_row.reason_types, [SPAM]);
    assert_eq!(env.store().subject(fresh.uri()).await.unwrap().state, None);
    assert_eq!(env.queue(QueueState::Unreviewed).await, [painting.uri()]);
    let view = env.store().subject_view(mood.uri()).await.unwrap();
    let muted_flags: Vec<bool> = view
        .reports
        .iter()
        .flat_map(|g| &g.reports)
        .map(|r| r.muted)
        .collect();
    assert_eq!(muted_flags, [true, false]);
    // The reporter filter still finds them.
    let by_mallory = QueueQuery {
        reporter: Some(did("mallory")),
        ..QueueQuery::new(QueueState::Resolved)
    };
    assert_eq!(env.list(&by_mallory, now_us()).await, [mood.uri()]);

    // Unmuted, mallory's next report counts again.
    env.act(&[account("mallory")], Action::UnmuteReporter)
        .await
        .unwrap();
    assert!(!env.report(&mood, SPAM, "mallory").await.muted);
    assert_eq!(
        env.queue(QueueState::Unreviewed).await,
        [mood.uri(), painting.uri()]
    );

    // Reporter actions take accounts only.
    let error = env
        .act(std::slice::from_ref(&mood), Action::MuteReporter)
        .await
        .unwrap_err();
    assert!(matches!(error, ActError::AccountsOnly { .. }), "{error}");
}

#[tokio::test]
async fn auto_flags_come_once_and_escalation_is_kept_by_new_reports() {
    let env = Env::new().await;
    let kidlisp = record("dave", "computer.aesthetic.kidlisp", "1");
    let flag = || NewReport::auto_flag(kidlisp.clone(), None, "sh*t");
    let first = env.store().add_report(flag()).await.unwrap();
    let again = env.store().add_report(flag()).await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(first.source, ReportSource::AutoFlag);
    assert_eq!(first.reason_type.as_str(), OTHER);
    // A new version of the record is a new flag.
    let edited = SubjectRef::record(kidlisp.uri(), Some(CID)).unwrap();
    let other = NewReport::auto_flag(edited, None, "sh*t");
    assert_ne!(env.store().add_report(other).await.unwrap().id, first.id);

    env.act(std::slice::from_ref(&kidlisp), Action::Escalate)
        .await
        .unwrap();
    env.report(&kidlisp, SPAM, "rita").await;
    let row = env.store().subject(kidlisp.uri()).await.unwrap();
    assert_eq!(row.state, Some(QueueState::Escalated));
    assert_eq!(row.report_count, 3);
    assert_eq!(env.queue(QueueState::Escalated).await, [kidlisp.uri()]);

    // Invalid reports are refused with the field named.
    let long = NewReport::appview(
        &did("rita"),
        kidlisp.clone(),
        reason(SPAM),
        Some("🎨".repeat(2001)),
    );
    let error = env.store().add_report(long).await.unwrap_err();
    assert!(error.to_string().starts_with("reason:"), "{error}");
    let anonymous = NewReport::appview("rita", kidlisp.clone(), reason(SPAM), None);
    let error = env.store().add_report(anonymous).await.unwrap_err();
    assert!(error.to_string().starts_with("reportedBy:"), "{error}");
}

// ---- actions ----

#[tokio::test]
async fn bulk_takedown_and_restore() {
    let env = Env::new().await;
    let subjects = [
        record("alice", PAINTING, "1"),
        record("bob", MOOD, "2"),
        account("carol"),
    ];
    for subject in &subjects {
        env.report(subject, SPAM, "rita").await;
    }
    let labeler = env.moderation.labeler().clone();
    let current = |uri: &str| {
        let (labeler, uri) = (labeler.clone(), uri.to_owned());
        async move {
            labeler
                .store()
                .query(
                    &LabelQuery {
                        uri_patterns: vec![UriPattern::Exact(uri)],
                        sources: vec![LABELER.into()],
                        cursor: None,
                        limit: 50,
                    },
                    now_us(),
                )
                .await
                .unwrap()
        }
    };

    // Refused before anything happens: bad values, the reserved value, restoring what was
    // never taken down, no subjects.
    let refusals = [
        (
            Action::Label {
                value: "Nudity".into(),
            },
            "invalid label value",
        ),
        (
            Action::Label {
                value: "spoiler-".into(),
            },
            "invalid label value",
        ),
        (
            Action::Label {
                value: "!takedown".into(),
            },
            "\"!takedown\" is applied",
        ),
        (Action::Restore, "has no \"!takedown\" label"),
        (
            Action::NegateLabel {
                value: "spoiler".into(),
            },
            "has no \"spoiler\" label",
        ),
        (Action::Comment { text: " ".into() }, "the comment is empty"),
    ];
    for (action, message) in refusals {
        let error = env.act(&subjects, action.clone()).await.unwrap_err();
        assert!(error.to_string().contains(message), "{action:?}: {error}");
    }
    let error = env.act(&[], Action::Takedown).await.unwrap_err();
    assert!(matches!(error, ActError::NoSubjects), "{error}");
    assert!(env.audit().await.is_empty(), "refusals leave no trace");
    assert_eq!(labeler.latest_seq(), 0, "and issue no label");

    // Take down all three at once (one listed twice): a signed label each, resolved, audited.
    let mut selected = subjects.to_vec();
    selected.push(subjects[0].clone());
    let acted = env
        .moderation
        .act("mod-a", &selected, &Action::Takedown, Some("spam wave"))
        .await
        .unwrap();
    assert_eq!(acted.subjects.len(), 3);
    for (subject, done) in subjects.iter().zip(&acted.subjects) {
        assert_eq!(&done.subject, subject);
        let labels = current(subject.uri()).await;
        assert_eq!(labels.len(), 1, "{}", subject.uri());
        let label = &labels[0].label;
        assert_eq!(
            (label.val.as_str(), label.src.as_str()),
            ("!takedown", LABELER)
        );
        assert_eq!(label.cid, None);
        label.verify(labeler.public_key()).unwrap();
        assert_eq!(Some(&labels[0]), done.label.as_ref());
    }
    assert_eq!(
        env.queue(QueueState::Unreviewed).await,
        Vec::<String>::new()
    );
    assert_eq!(env.queue(QueueState::Resolved).await.len(), 3);
    let audit = env.audit().await;
    assert_eq!(audit.len(), 3);
    for (entry, done) in audit.iter().zip(&acted.subjects) {
        assert_eq!(entry.id, done.audit_id);
        assert_eq!(
            (entry.actor.as_str(), entry.action.as_str(), entry.outcome),
            ("mod-a", "takedown", Outcome::Done)
        );
        assert_eq!(entry.batch, acted.batch);
        assert_eq!(entry.subject, done.subject.uri());
        assert_eq!(entry.author, done.subject.author());
        assert_eq!(entry.note.as_deref(), Some("spam wave"));
        let label = done.label.as_ref().unwrap();
        assert_eq!(entry.details["label_seq"], label.seq);
        assert_eq!(
            entry.details["state"],
            json!({"from": "unreviewed", "to": "resolved"})
        );
    }
    let filter = QueueQuery {
        label: Some("!takedown".into()),
        ..QueueQuery::new(QueueState::Resolved)
    };
    assert_eq!(env.list(&filter, now_us()).await.len(), 3);

    // Restore: the negations retract the labels.
    let restored = env.act(&subjects, Action::Restore).await.unwrap();
    assert_eq!(restored.len(), 3);
    for subject in &subjects {
        assert!(current(subject.uri()).await.is_empty(), "{}", subject.uri());
        let latest = labeler
            .store()
            .current(LABELER, subject.uri(), "!takedown")
            .await
            .unwrap()
            .unwrap();
        assert!(latest.label.is_negation());
    }
    assert_eq!(env.list(&filter, now_us()).await, Vec::<String>::new());
    let actions: Vec<String> = env.audit().await.into_iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        ["takedown"; 3]
            .iter()
            .chain(&["restore"; 3])
            .copied()
            .collect::<Vec<_>>()
    );

    // Other labels: applied, filtered on, negated; the subject view shows them.
    env.act(
        &subjects[..1],
        Action::Label {
            value: "spoiler".into(),
        },
    )
    .await
    .unwrap();
    let view = env.store().subject_view(subjects[0].uri()).await.unwrap();
    assert_eq!(view.labels, ["spoiler"]);
    assert_eq!(
        view.subject_history
            .iter()
            .map(|e| e.action.as_str())
            .collect::<Vec<_>>(),
        ["label", "restore", "takedown"]
    );
    env.act(
        &subjects[..1],
        Action::NegateLabel {
            value: "spoiler".into(),
        },
    )
    .await
    .unwrap();
    assert!(current(subjects[0].uri()).await.is_empty());
}

#[tokio::test]
async fn a_failing_labeler_leaves_a_failed_entry_and_untouched_subjects() {
    let env = Env::new().await;
    let subjects = [
        record("alice", PAINTING, "1"),
        record("alice", PAINTING, "2"),
        account("alice"),
    ];
    for subject in &subjects {
        env.report(subject, SPAM, "rita").await;
    }
    // The labeler's database goes away: its first apply fails.
    env.moderation.labeler().store().close().await;
    let error = env.act(&subjects, Action::Takedown).await.unwrap_err();
    let ActError::Interrupted {
        done,
        failed,
        not_attempted,
        failure_logged,
        source,
    } = &error
    else {
        panic!("expected an interrupted action, got {error}");
    };
    assert!(done.is_empty());
    assert_eq!(failed, &subjects[0]);
    assert_eq!(not_attempted, &subjects[1..]);
    assert!(*failure_logged);
    assert!(matches!(**source, StepError::Labeler(_)), "{source}");

    let audit = env.audit().await;
    assert_eq!(audit.len(), 1);
    let entry = &audit[0];
    assert_eq!(
        (entry.action.as_str(), entry.outcome),
        ("takedown", Outcome::Failed)
    );
    assert_eq!(entry.subject, subjects[0].uri());
    assert_eq!(entry.details["not_attempted"], json!(uris(&subjects[1..])));
    assert!(
        entry.details["error"]
            .as_str()
            .unwrap()
            .starts_with("the labeler failed")
    );
    // Nothing moved.
    assert_eq!(env.queue(QueueState::Unreviewed).await.len(), 3);
}

// ---- the audit log ----

#[tokio::test]
async fn the_audit_log_is_append_only_and_exports_everything() {
    let env = Env::new().await;
    let painting = record("alice", PAINTING, "1");
    let bob = account("bob");
    env.report(&painting, SPAM, "rita").await;
    let mut ids = Vec::new();
    let both = [painting.clone(), bob.clone()];
    let assign = Action::Assign {
        moderator: Some("mod-b".into()),
    };
    ids.extend(env.act(&both, assign).await.unwrap());
    // A note with a quote and a line break, for the CSV.
    let comment = Action::Comment {
        text: "looks like spam again".into(),
    };
    let note = Some("needs a \"second\" look\nreally");
    let acted = env
        .moderation
        .act("mod-a", &both, &comment, note)
        .await
        .unwrap();
    ids.extend(acted.subjects.iter().map(|s| s.audit_id));
    let actions = [
        Action::Escalate,
        Action::Label {
            value: "spam".into(),
        },
        Action::Takedown,
        Action::Assign { moderator: None },
    ];
    for action in actions {
        ids.extend(env.act(&both, action).await.unwrap());
    }
    ids.extend(
        env.act(&[account("rita")], Action::MuteReporter)
            .await
            .unwrap(),
    );
    assert_eq!(ids.len(), 13);

    // Raw SQL against the file, from another connection: UPDATE and DELETE abort.
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite:{}", env.db_path().display()))
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'nobody'",
        "UPDATE audit_log SET note = NULL WHERE id = 1",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE id = 1",
    ] {
        let error = sqlx::query(sql).execute(&mut raw).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    raw.close().await.unwrap();

    // JSON Lines: every entry, in order, whole.
    let mut out = Vec::new();
    let count = env
        .store()
        .export_audit(AuditRange::default(), ExportFormat::JsonLines, &mut out)
        .await
        .unwrap();
    assert_eq!(count, 13);
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let exported: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(exported, ids);
    let comment = &lines[2];
    assert_eq!(comment["action"], "comment");
    assert_eq!(comment["actor"], "mod-a");
    assert_eq!(comment["subject"], painting.uri());
    assert_eq!(comment["details"]["text"], "looks like spam again");
    assert_eq!(comment["note"], "needs a \"second\" look\nreally");
    assert!(comment["at"].as_str().unwrap().ends_with('Z'));

    // CSV: a header and one record per entry (quoted fields may hold newlines).
    let mut out = Vec::new();
    env.store()
        .export_audit(AuditRange::default(), ExportFormat::Csv, &mut out)
        .await
        .unwrap();
    let csv = String::from_utf8(out).unwrap();
    assert!(csv.starts_with("id,at,actor,action,outcome,batch,subject,author,note,details\r\n"));
    assert_eq!(csv.matches("\r\n").count(), 14);
    assert!(
        csv.contains(",\"needs a \"\"second\"\" look\nreally\","),
        "{csv}"
    );

    // Time ranges: from an entry's time on, and before it.
    let audit = env.audit().await;
    let cut = audit[6].at_us;
    let from = AuditRange {
        from_us: Some(cut),
        to_us: None,
    };
    let before = AuditRange {
        from_us: None,
        to_us: Some(cut),
    };
    let after: Vec<AuditEntry> = env.store().audit_entries(from, None, 100).await.unwrap();
    let earlier: Vec<AuditEntry> = env.store().audit_entries(before, None, 100).await.unwrap();
    assert!(after.iter().all(|e| e.at_us >= cut) && earlier.iter().all(|e| e.at_us < cut));
    assert_eq!(after.len() + earlier.len(), 13);
    assert!(after.iter().any(|e| e.id == audit[6].id));
}

// ---- restart ----

#[tokio::test]
async fn a_restart_keeps_everything() {
    let env = Env::new().await;
    let painting = record("alice", PAINTING, "1");
    let mood = record("alice", MOOD, "1");
    env.report(&painting, SPAM, "rita").await;
    env.report(&mood, RUDE, "rita").await;
    env.act(std::slice::from_ref(&painting), Action::Takedown)
        .await
        .unwrap();
    env.act(
        std::slice::from_ref(&mood),
        Action::Comment {
            text: "watch this".into(),
        },
    )
    .await
    .unwrap();
    env.act(&[account("rita")], Action::MuteReporter)
        .await
        .unwrap();
    let view_before = env.store().subject_view(painting.uri()).await.unwrap();
    let audit_before = env.audit().await;
    let seq_before = env.moderation.labeler().latest_seq();

    let env = env.restart().await;
    assert_eq!(
        env.store().subject_view(painting.uri()).await.unwrap(),
        view_before
    );
    assert_eq!(env.audit().await, audit_before);
    assert_eq!(env.moderation.labeler().latest_seq(), seq_before);
    assert_eq!(env.queue(QueueState::Unreviewed).await, [mood.uri()]);
    assert_eq!(env.queue(QueueState::Resolved).await, [painting.uri()]);
    let comments = env.store().subject_view(mood.uri()).await.unwrap().comments;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].body, "watch this");
    // The mute holds, and new actions continue the log.
    assert!(env.report(&painting, SPAM, "rita").await.muted);
    let ids = env
        .act(std::slice::from_ref(&painting), Action::Restore)
        .await
        .unwrap();
    assert!(ids[0] > audit_before.last().unwrap().id);
}
