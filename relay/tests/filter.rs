//! The AC-namespace filter: collection patterns, known actors, companions, whole-frame
//! decisions, runtime rule changes, and the real Bluesky corpus (which holds no AC records).

mod support;

use atelier_lexicons::data::{encode_dag_cbor, json_value_to_ipld};
use atelier_relay::filter::{Decision, EventKind, Filter, FilterError, FilterRules, KnownActors};
use atelier_relay::sync::frame::{self, Action, Frame};
use atelier_relay::sync::stream::{CommitEvent, OpEvent, RepoRecord, SyncEvent};
use atelier_relay::sync::verify::{SyncOutcome, SyncStatus};
use bytes::Bytes;
use serde_json::json;

const ARTIST: &str = "did:plc:artist000000000000000000";
const OTHER: &str = "did:plc:other0000000000000000000";
const STRANGER: &str = "did:plc:stranger00000000000000000";

/// A record's DAG-CBOR bytes from JSON.
fn record(value: serde_json::Value) -> Bytes {
    let ipld = json_value_to_ipld(&value).expect("record JSON converts");
    Bytes::from(encode_dag_cbor(&ipld).expect("record encodes"))
}

fn painting() -> Bytes {
    record(json!({
        "$type": "computer.aesthetic.painting",
        "slug": "2026.11.29.01.00.00.000",
        "code": "a3b",
        "imageUrl": "https://aesthetic.computer/media/paintings/a3b",
        "when": "2026-11-29T01:00:00.000Z",
        "ref": "65f0c0ffee0000000000beef",
    }))
}

fn mood() -> Bytes {
    record(json!({
        "$type": "computer.aesthetic.mood",
        "mood": "sunny",
        "when": "2026-11-29T01:00:00.000Z",
        "ref": "65f0c0ffee0000000000beef",
    }))
}

fn post() -> Bytes {
    record(json!({
        "$type": "app.bsky.feed.post",
        "text": "hello",
        "createdAt": "2026-11-29T01:00:00.000Z",
    }))
}

fn profile() -> Bytes {
    record(json!({ "$type": "app.bsky.actor.profile", "displayName": "Artist" }))
}

fn follow(collection: &str, subject: &str) -> Bytes {
    record(json!({
        "$type": collection,
        "subject": subject,
        "createdAt": "2026-11-29T01:00:00.000Z",
    }))
}

/// An op writing `record` (or deleting, when `record` is `None` and `action` is Delete).
fn op(action: Action, collection: &str, record: Option<Bytes>) -> OpEvent {
    OpEvent {
        action,
        collection: collection.to_owned(),
        rkey: "3l4tbn4iyhs2k".to_owned(),
        cid: record.as_ref().map(|_| "bafyreib2rxk3rh6kzwq".to_owned()),
        prev: None,
        record,
    }
}

fn create(collection: &str, record: Bytes) -> OpEvent {
    op(Action::Create, collection, Some(record))
}

fn commit(did: &str, ops: Vec<OpEvent>) -> SyncEvent {
    SyncEvent::Commit(CommitEvent {
        seq: 1,
        did: did.to_owned(),
        rev: "3l4tbn4iyhs2k".to_owned(),
        since: None,
        time: "2026-11-29T01:00:00.000Z".to_owned(),
        commit: "bafyreib2rxk3rh6kzwq".to_owned(),
        ops,
        status: SyncStatus::Synchronized,
        fully_verified: true,
        state: None,
        frame: Bytes::new(),
    })
}

fn identity(did: &str) -> SyncEvent {
    SyncEvent::Identity {
        seq: 2,
        did: did.to_owned(),
        handle: None,
        frame: Bytes::new(),
    }
}

fn account(did: &str) -> SyncEvent {
    SyncEvent::Account {
        seq: 3,
        did: did.to_owned(),
        active: false,
        status: Some("deactivated".to_owned()),
        frame: Bytes::new(),
    }
}

fn sync(did: &str) -> SyncEvent {
    SyncEvent::Sync {
        seq: 4,
        did: did.to_owned(),
        rev: "3l4tbn4iyhs2k".to_owned(),
        outcome: SyncOutcome::Unchanged,
        frame: Bytes::new(),
    }
}

fn pass(matched: &[usize]) -> Decision {
    Decision::Pass {
        matched_ops: matched.to_vec(),
    }
}

fn rules(collections: &[&str]) -> FilterRules {
    FilterRules {
        collections: collections.iter().map(|c| c.to_string()).collect(),
        companions: true,
    }
}

/// One step of a scenario: an event and the decision expected for it.
struct Step {
    name: &'static str,
    event: SyncEvent,
    expect: Decision,
}

fn step(name: &'static str, event: SyncEvent, expect: Decision) -> Step {
    Step {
        name,
        event,
        expect,
    }
}

/// Runs `steps` in order through one filter.
fn check(filter: &mut Filter, steps: Vec<Step>) {
    for s in steps {
        let got = filter.decide(&s.event);
        assert_eq!(got, s.expect, "step {:?}", s.name);
    }
}

#[test]
fn default_rules_scenario() {
    let mut filter = Filter::new(FilterRules::default()).expect("default rules are valid");
    assert_eq!(filter.rules().collections, ["computer.aesthetic.*"]);
    assert!(filter.rules().companions);
    check(
        &mut filter,
        vec![
            step("unknown identity drops", identity(ARTIST), Decision::Drop),
            step("unknown account drops", account(ARTIST), Decision::Drop),
            step("unknown sync drops", sync(ARTIST), Decision::Drop),
            step(
                "profile of an unknown actor drops",
                commit(ARTIST, vec![create("app.bsky.actor.profile", profile())]),
                Decision::Drop,
            ),
            step(
                "bsky follow of an unknown actor drops",
                commit(
                    STRANGER,
                    vec![create(
                        "app.bsky.graph.follow",
                        follow("app.bsky.graph.follow", ARTIST),
                    )],
                ),
                Decision::Drop,
            ),
            step(
                "AC painting passes",
                commit(
                    ARTIST,
                    vec![create("computer.aesthetic.painting", painting())],
                ),
                pass(&[0]),
            ),
            step(
                "post from a known actor drops",
                commit(ARTIST, vec![create("app.bsky.feed.post", post())]),
                Decision::Drop,
            ),
            step(
                "profile update of a known actor passes",
                commit(
                    ARTIST,
                    vec![op(
                        Action::Update,
                        "app.bsky.actor.profile",
                        Some(profile()),
                    )],
                ),
                pass(&[0]),
            ),
            step(
                "profile of another unknown actor drops",
                commit(OTHER, vec![create("app.bsky.actor.profile", profile())]),
                Decision::Drop,
            ),
            step(
                "bsky follow of a known actor passes, from an unknown follower",
                commit(
                    STRANGER,
                    vec![create(
                        "app.bsky.graph.follow",
                        follow("app.bsky.graph.follow", ARTIST),
                    )],
                ),
                pass(&[0]),
            ),
            step(
                "bsky follow of an unknown actor drops",
                commit(
                    ARTIST,
                    vec![create(
                        "app.bsky.graph.follow",
                        follow("app.bsky.graph.follow", OTHER),
                    )],
                ),
                Decision::Drop,
            ),
            step(
                "AC follow matches the collections outright",
                commit(
                    STRANGER,
                    vec![create(
                        "computer.aesthetic.graph.follow",
                        follow("computer.aesthetic.graph.follow", OTHER),
                    )],
                ),
                pass(&[0]),
            ),
            step("known identity passes", identity(ARTIST), pass(&[])),
            step("known account passes", account(ARTIST), pass(&[])),
            step("known sync passes", sync(ARTIST), pass(&[])),
            step(
                "mixed commit passes whole, matching only the AC op",
                commit(
                    ARTIST,
                    vec![
                        create("app.bsky.feed.post", post()),
                        create("app.bsky.feed.like", post()),
                        create("computer.aesthetic.mood", mood()),
                        op(Action::Delete, "app.bsky.feed.post", None),
                    ],
                ),
                pass(&[2]),
            ),
            step(
                "deleting an AC record passes",
                commit(
                    OTHER,
                    vec![op(Action::Delete, "computer.aesthetic.painting", None)],
                ),
                pass(&[0]),
            ),
            step(
                "a delete alone does not make an actor known",
                identity(OTHER),
                Decision::Drop,
            ),
        ],
    );
    // The stranger's AC follow made the stranger known.
    assert!(filter.known().contains(ARTIST));
    assert!(filter.known().contains(STRANGER));
    assert!(!filter.known().contains(OTHER));
    assert_eq!(filter.take_newly_known(), [ARTIST, STRANGER]);
    assert!(filter.take_newly_known().is_empty());

    let counts = filter.counts();
    assert_eq!(counts.passed(EventKind::Commit), 6);
    assert_eq!(counts.dropped(EventKind::Commit), 5);
    assert_eq!(counts.passed(EventKind::Identity), 1);
    assert_eq!(counts.dropped(EventKind::Identity), 2);
    assert_eq!(counts.passed(EventKind::Account), 1);
    assert_eq!(counts.dropped(EventKind::Sync), 1);
    assert_eq!(counts.ops_passed(), 6);
    assert_eq!(counts.ops_dropped(), 8);
    assert_eq!(counts.total_passed() + counts.total_dropped(), 18);
}

/// Under narrower rules the AC follow is a companion, not a collection match.
#[test]
fn ac_follow_as_companion() {
    let mut filter = Filter::new(rules(&["computer.aesthetic.painting"])).expect("valid");
    let ac_follow = |subject| {
        create(
            "computer.aesthetic.graph.follow",
            follow("computer.aesthetic.graph.follow", subject),
        )
    };
    check(
        &mut filter,
        vec![
            step(
                "AC follow of an unknown actor drops",
                commit(STRANGER, vec![ac_follow(ARTIST)]),
                Decision::Drop,
            ),
            step(
                "painting makes the artist known",
                commit(
                    ARTIST,
                    vec![create("computer.aesthetic.painting", painting())],
                ),
                pass(&[0]),
            ),
            step(
                "AC follow of a known actor passes, from an unknown follower",
                commit(STRANGER, vec![ac_follow(ARTIST)]),
                pass(&[0]),
            ),
            step(
                "follow deletes carry no subject and drop",
                commit(
                    STRANGER,
                    vec![op(Action::Delete, "computer.aesthetic.graph.follow", None)],
                ),
                Decision::Drop,
            ),
        ],
    );
    assert!(!filter.known().contains(STRANGER));
}

/// "Known" is settled after the commit's matching ops: a first painting and the profile in
/// one commit both pass, and so does a self-follow; indices come back sorted and unique.
#[test]
fn known_within_one_commit() {
    let mut filter = Filter::new(FilterRules::default()).expect("valid");
    let event = commit(
        ARTIST,
        vec![
            create("computer.aesthetic.mood", mood()),
            create("app.bsky.actor.profile", profile()),
            create(
                "app.bsky.graph.follow",
                follow("app.bsky.graph.follow", ARTIST),
            ),
            create("app.bsky.feed.post", post()),
            create("computer.aesthetic.painting", painting()),
            create(
                "app.bsky.graph.follow",
                follow("app.bsky.graph.follow", ARTIST),
            ),
            create("computer.aesthetic.piece", mood()),
        ],
    );
    assert_eq!(filter.decide(&event), pass(&[0, 1, 2, 4, 5, 6]));
}

/// A resynced repository is judged like one commit of all its records.
#[test]
fn resynced_repository() {
    let mut filter = Filter::new(FilterRules::default()).expect("valid");
    let repo = |did: &str, records: Vec<(&str, Bytes)>| SyncEvent::Resynced {
        did: did.to_owned(),
        rev: "3l4tbn4iyhs2k".to_owned(),
        records: records
            .into_iter()
            .map(|(path, record)| RepoRecord {
                path: path.to_owned(),
                cid: "bafyreib2rxk3rh6kzwq".to_owned(),
                record,
            })
            .collect(),
    };
    let bsky_only = repo(
        OTHER,
        vec![
            ("app.bsky.actor.profile/self", profile()),
            ("app.bsky.feed.post/3l4tbn4iyhs2k", post()),
        ],
    );
    assert_eq!(filter.decide(&bsky_only), Decision::Drop);
    let with_art = repo(
        ARTIST,
        vec![
            ("app.bsky.actor.profile/self", profile()),
            ("app.bsky.feed.post/3l4tbn4iyhs2k", post()),
            ("computer.aesthetic.painting/3l4tbn4iyhs2k", painting()),
        ],
    );
    assert_eq!(filter.decide(&with_art), pass(&[0, 2]));
    assert!(filter.known().contains(ARTIST));
    assert_eq!(filter.counts().passed(EventKind::Resynced), 1);
    assert_eq!(filter.counts().dropped(EventKind::Resynced), 1);
}

/// Without companions only collection matches pass, and identity events never do.
#[test]
fn companions_off() {
    let mut filter = Filter::new(FilterRules {
        companions: false,
        ..FilterRules::default()
    })
    .expect("valid");
    check(
        &mut filter,
        vec![
            step(
                "painting passes",
                commit(
                    ARTIST,
                    vec![
                        create("computer.aesthetic.painting", painting()),
                        create("app.bsky.actor.profile", profile()),
                    ],
                ),
                pass(&[0]),
            ),
            step("identity drops", identity(ARTIST), Decision::Drop),
            step(
                "follow of a known actor drops",
                commit(
                    STRANGER,
                    vec![create(
                        "app.bsky.graph.follow",
                        follow("app.bsky.graph.follow", ARTIST),
                    )],
                ),
                Decision::Drop,
            ),
        ],
    );
}

/// Follow records whose subject cannot be read are not matched, and nothing panics.
#[test]
fn garbled_follow_subjects_do_not_match() {
    let known = KnownActors::from_iter([ARTIST.to_owned()]);
    let mut filter = Filter::with_known(FilterRules::default(), known).expect("valid");
    let good = follow("app.bsky.graph.follow", ARTIST);
    let cases: Vec<(&str, Bytes)> = vec![
        ("empty", Bytes::new()),
        ("not a map", record(json!(["subject", ARTIST]))),
        (
            "no subject",
            record(json!({ "createdAt": "2026-11-29T01:00:00.000Z" })),
        ),
        ("subject not text", record(json!({ "subject": 42 }))),
        (
            "subject is a strong ref",
            record(json!({ "subject": { "uri": "at://x", "cid": "y" } })),
        ),
        ("truncated", good.slice(..good.len() / 2)),
        ("one byte", good.slice(..1)),
        ("bad map header", Bytes::from_static(&[0xbf, 0xff])),
    ];
    for (name, bytes) in cases {
        let event = commit(STRANGER, vec![create("app.bsky.graph.follow", bytes)]);
        assert_eq!(filter.decide(&event), Decision::Drop, "{name}");
    }
    // Every prefix of a good record: never a panic, and only the whole one matches.
    for cut in 0..good.len() {
        let event = commit(
            STRANGER,
            vec![create("app.bsky.graph.follow", good.slice(..cut))],
        );
        let _ = filter.decide(&event);
    }
    let event = commit(STRANGER, vec![create("app.bsky.graph.follow", good)]);
    assert_eq!(filter.decide(&event), pass(&[0]));
}

#[test]
fn pattern_validation() {
    let bad: &[(&str, &str)] = &[
        ("computer.*.x", "final segment"),
        ("computer.aesthetic.", "ends with a dot"),
        ("*", "bare `*`"),
        (".*", "needs an NSID prefix"),
        ("", "empty pattern"),
        ("computer..aesthetic.*", "empty segment"),
        ("computer.aesthetic*", "final segment"),
        ("computer.aesthetic", "not a valid NSID"),
        ("computer aesthetic.*", "letters, digits and hyphens"),
        ("-computer.aesthetic.*", "hyphen"),
        ("1computer.aesthetic.*", "starts with a digit"),
    ];
    for (pattern, reason) in bad {
        let err = Filter::new(rules(&["app.bsky.feed.post", pattern])).expect_err(pattern);
        match &err {
            FilterError::BadPattern {
                pattern: p,
                reason: r,
            } => {
                assert_eq!(p, pattern);
                assert!(r.contains(reason), "{pattern:?}: {r}");
            }
            other => panic!("{pattern:?}: unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&format!("{pattern:?}")), "{err}");
    }
    assert_eq!(
        Filter::new(rules(&[])).expect_err("empty"),
        FilterError::NoCollections
    );
    let good = [
        "computer.aesthetic.*",
        "computer.aesthetic.mood",
        "app.bsky.*",
        "app.*",
        "com.atproto.sync.*",
        "computer.aesthetic.graph.follow",
    ];
    for pattern in good {
        rules(&[pattern])
            .check()
            .unwrap_or_else(|e| panic!("{pattern}: {e}"));
    }
}

#[test]
fn rules_from_config() {
    let parsed: FilterRules = serde_json::from_value(json!({})).expect("defaults");
    assert_eq!(parsed, FilterRules::default());
    let parsed: FilterRules =
        serde_json::from_value(json!({ "collections": ["app.bsky.*"], "companions": false }))
            .expect("full");
    assert_eq!(parsed.collections, ["app.bsky.*"]);
    assert!(!parsed.companions);
    assert!(serde_json::from_value::<FilterRules>(json!({ "colections": [] })).is_err());
}

#[test]
fn set_rules_narrows_and_keeps_known() {
    let mut filter = Filter::new(FilterRules::default()).expect("valid");
    let paint = commit(
        ARTIST,
        vec![create("computer.aesthetic.painting", painting())],
    );
    let feel = commit(ARTIST, vec![create("computer.aesthetic.mood", mood())]);
    assert_eq!(filter.decide(&paint), pass(&[0]));
    assert_eq!(filter.decide(&feel), pass(&[0]));

    filter
        .set_rules(rules(&["computer.aesthetic.mood"]))
        .expect("valid");
    assert_eq!(filter.rules().collections, ["computer.aesthetic.mood"]);
    assert_eq!(filter.decide(&paint), Decision::Drop);
    assert_eq!(filter.decide(&feel), pass(&[0]));
    // The artist stays known under the new rules.
    assert_eq!(filter.decide(&identity(ARTIST)), pass(&[]));

    // Bad rules are refused and the old ones stay.
    assert!(filter.set_rules(rules(&["computer.*.x"])).is_err());
    assert_eq!(filter.rules().collections, ["computer.aesthetic.mood"]);
}

#[test]
fn known_actors_round_trip() {
    let mut known = KnownActors::new();
    assert!(known.is_empty());
    assert!(known.insert(OTHER));
    assert!(known.insert(ARTIST));
    assert!(!known.insert(ARTIST));
    assert_eq!(known.len(), 2);
    let saved = known.to_vec();
    assert_eq!(saved, [ARTIST, OTHER]);
    let loaded: KnownActors = saved.into_iter().collect();
    assert_eq!(loaded, known);
    let mut dids: Vec<&str> = loaded.iter().collect();
    dids.sort_unstable();
    assert_eq!(dids, [ARTIST, OTHER]);

    let mut filter = Filter::with_known(FilterRules::default(), loaded).expect("valid");
    assert_eq!(filter.decide(&account(OTHER)), pass(&[]));
    assert!(filter.take_newly_known().is_empty());
}

/// The corpus frames as the sync layer would deliver them (unverified: the filter does not
/// care about signatures).
fn corpus_events() -> Vec<SyncEvent> {
    let mut events = Vec::new();
    for raw in support::corpus_frames() {
        let bytes = Bytes::from(raw);
        let event = match frame::decode(&bytes) {
            Ok(Frame::Commit(c)) => {
                let car = c.car().expect("corpus CAR parses");
                let ops = c
                    .ops
                    .iter()
                    .map(|op| {
                        let (collection, rkey) = op.split_path().unwrap_or((op.path, ""));
                        OpEvent {
                            action: op.action,
                            collection: collection.to_owned(),
                            rkey: rkey.to_owned(),
                            cid: op.cid.map(|c| c.to_string()),
                            prev: op.prev.map(|c| c.to_string()),
                            record: op
                                .cid
                                .and_then(|cid| car.get(&cid))
                                .map(|r| bytes.slice_ref(r)),
                        }
                    })
                    .collect();
                SyncEvent::Commit(CommitEvent {
                    seq: c.seq,
                    did: c.repo.to_owned(),
                    rev: c.rev.to_owned(),
                    since: c.since.map(str::to_owned),
                    time: c.time.to_owned(),
                    commit: c.commit.to_string(),
                    ops,
                    status: SyncStatus::Synchronized,
                    fully_verified: false,
                    state: None,
                    frame: bytes.clone(),
                })
            }
            Ok(Frame::Identity(i)) => SyncEvent::Identity {
                seq: i.seq,
                did: i.did.to_owned(),
                handle: i.handle.map(str::to_owned),
                frame: bytes.clone(),
            },
            Ok(Frame::Account(a)) => SyncEvent::Account {
                seq: a.seq,
                did: a.did.to_owned(),
                active: a.active,
                status: a.status.map(str::to_owned),
                frame: bytes.clone(),
            },
            Ok(Frame::Sync(s)) => SyncEvent::Sync {
                seq: s.seq,
                did: s.did.to_owned(),
                rev: s.rev.to_owned(),
                outcome: SyncOutcome::Unchanged,
                frame: bytes.clone(),
            },
            Ok(_) => continue,
            Err(e) => panic!("corpus frame does not decode: {e}"),
        };
        events.push(event);
    }
    events
}

#[test]
fn corpus_drops_with_default_rules() {
    let events = corpus_events();
    assert!(!events.is_empty());
    let mut filter = Filter::new(FilterRules::default()).expect("valid");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(filter.decide(event), Decision::Drop, "corpus event {i}");
    }
    assert!(filter.known().is_empty());
    let counts = filter.counts();
    assert_eq!(counts.total_dropped(), events.len() as u64);
    println!(
        "default rules: {} corpus events dropped ({} commits with {} ops), none passed",
        counts.total_dropped(),
        counts.dropped(EventKind::Commit),
        counts.ops_dropped()
    );
}

/// With `app.bsky.*`, every corpus commit that touches an `app.bsky` record passes with
/// exactly those ops matched, and identity events pass for every actor seen writing one.
/// (Real traffic also holds commits of other namespaces, such as `fm.teal.*`, and identity
/// events of actors that did not commit in the corpus: those still drop.)
#[test]
fn corpus_passes_with_bsky_wildcard() {
    let events = corpus_events();
    let bsky_ops = |c: &CommitEvent| -> Vec<usize> {
        (0..c.ops.len())
            .filter(|&i| c.ops[i].collection.starts_with("app.bsky."))
            .collect()
    };
    // Who the filter should know after one pass: every author of an app.bsky write.
    let writers: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Commit(c)
                if c.ops.iter().any(|op| {
                    op.collection.starts_with("app.bsky.") && op.action != Action::Delete
                }) =>
            {
                Some(c.did.as_str())
            }
            _ => None,
        })
        .collect();
    let mut filter = Filter::new(rules(&["app.bsky.*"])).expect("valid");
    for event in &events {
        let _ = filter.decide(event);
    }
    assert_eq!(filter.known().len(), writers.len());
    // Second pass, with every writer known.
    let (mut passed, mut other_namespaces, mut silent_actors) = (0, 0, 0);
    for (i, event) in events.iter().enumerate() {
        let decision = filter.decide(event);
        let expect = match event {
            SyncEvent::Commit(c) => {
                let matched = bsky_ops(c);
                if matched.is_empty() {
                    other_namespaces += 1;
                    Decision::Drop
                } else {
                    pass(&matched)
                }
            }
            SyncEvent::Identity { did, .. }
            | SyncEvent::Account { did, .. }
            | SyncEvent::Sync { did, .. } => {
                if writers.contains(did.as_str()) {
                    pass(&[])
                } else {
                    silent_actors += 1;
                    Decision::Drop
                }
            }
            _ => Decision::Drop,
        };
        assert_eq!(decision, expect, "corpus event {i}");
        passed += usize::from(decision.is_pass());
    }
    println!(
        "app.bsky.*: {passed} of {} corpus events pass; {other_namespaces} commits of other \
         namespaces and {silent_actors} identity/account events of non-writers drop; \
         {} actors known",
        events.len(),
        writers.len()
    );
    assert!(
        passed > events.len() * 9 / 10,
        "{passed} of {}",
        events.len()
    );
}
