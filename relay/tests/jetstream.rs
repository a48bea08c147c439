//! The Jetstream encoding layer against the contract (shared/brief/jetstream.md): record
//! JSON byte for byte, events for hand-built and real (corpus) commits, subscriber options,
//! `options_update` messages and the per-event filter. All tables.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use atelier_lexicons::data::{
    cid_for_dag_cbor, decode_dag_cbor, encode_dag_cbor, ipld_to_json, json_value_to_ipld,
};
use atelier_relay::jetstream::{
    CollectionFilter, JetstreamEvent, MAX_RECORD_BYTES, OptionsError, OptionsUpdate, RecordError,
    Start, SubscribeOptions, TimeClock, UpdateError, encode_account, encode_commit,
    encode_identity, record_json,
};
use atelier_relay::sync::frame::{self, Action, Frame};
use atelier_relay::sync::stream::{CommitEvent, OpEvent};
use atelier_relay::sync::verify::SyncStatus;
use bytes::Bytes;
use ipld_core::ipld::Ipld;
use serde_json::json;

/// A CID string for links in hand-built records.
fn cid() -> String {
    cid_for_dag_cbor(b"jetstream test").to_string()
}

/// DAG-CBOR of a JSON value in the ATProto data model (`$link`, `$bytes` understood).
fn cbor_of(value: &serde_json::Value) -> Vec<u8> {
    let ipld = json_value_to_ipld(value).expect("test value is in the data model");
    encode_dag_cbor(&ipld).expect("test value encodes")
}

/// DAG-CBOR of arbitrary IPLD (for records the data-model helpers refuse to build).
fn cbor_of_ipld(ipld: &Ipld) -> Vec<u8> {
    serde_ipld_dagcbor::to_vec(ipld).expect("IPLD encodes")
}

fn ipld_map(entries: Vec<(&str, Ipld)>) -> Ipld {
    Ipld::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn check_record(name: &str, cbor: &[u8], want: &str) {
    let got = record_json(cbor).unwrap_or_else(|e| panic!("{name}: refused: {e}"));
    let got = String::from_utf8(got).unwrap_or_else(|e| panic!("{name}: not UTF-8: {e}"));
    assert_eq!(got, want, "{name}");
}

#[test]
fn record_json_matches_legacy_bytes() {
    let cid = cid();
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        (
            "keys sorted bytewise at every depth",
            json!({
                "text": "x", "$type": "a.b.c", "langs": ["en"], "createdAt": "t",
                "nested": {"bb": 1, "a": 2, "ab": {"z": true, "y": null}},
                "list": [{"b": 1, "a": 2}, [], {}],
            }),
            r#"{"$type":"a.b.c","createdAt":"t","langs":["en"],"list":[{"a":2,"b":1},[],{}],"nested":{"a":2,"ab":{"y":null,"z":true},"bb":1},"text":"x"}"#.to_owned(),
        ),
        (
            "bytewise, not length-first nor case-folded",
            json!({"b": 1, "aa": 2, "Z": 3, "a": 4, "<": 5}),
            r#"{"\u003c":5,"Z":3,"a":4,"aa":2,"b":1}"#.to_owned(),
        ),
        (
            "links",
            json!({"l": {"$link": cid}, "ls": [{"$link": cid}]}),
            format!(r#"{{"l":{{"$link":"{cid}"}},"ls":[{{"$link":"{cid}"}}]}}"#),
        ),
        (
            "bytes: standard base64 without padding",
            json!({"b": {"$bytes": "aGVsbG8"}, "e": {"$bytes": ""}, "p": {"$bytes": "+/+/"}}),
            r#"{"b":{"$bytes":"aGVsbG8"},"e":{"$bytes":""},"p":{"$bytes":"+/+/"}}"#.to_owned(),
        ),
        (
            "blob keys in legacy struct order",
            json!({"image": {"$type": "blob", "ref": {"$link": cid}, "mimeType": "image/png", "size": 1234}, "alt": "a"}),
            format!(r#"{{"alt":"a","image":{{"$type":"blob","ref":{{"$link":"{cid}"}},"mimeType":"image/png","size":1234}}}}"#),
        ),
        (
            "legacy {cid, mimeType} blob is a plain map",
            json!({"b": {"mimeType": "image/jpeg", "cid": "bafkreixyz"}}),
            r#"{"b":{"cid":"bafkreixyz","mimeType":"image/jpeg"}}"#.to_owned(),
        ),
        (
            "Go escapes < > &",
            json!({"t": "a<b>c&d", "k&": "<script>"}),
            r#"{"k\u0026":"\u003cscript\u003e","t":"a\u003cb\u003ec\u0026d"}"#.to_owned(),
        ),
        (
            "U+2028 and U+2029 escaped",
            json!({"t": "x\u{2028}y\u{2029}z"}),
            r#"{"t":"x\u2028y\u2029z"}"#.to_owned(),
        ),
        (
            "controls, quotes and backslashes",
            json!({"t": "\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\"\\/\u{7f}"}),
            "{\"t\":\"\\u0000\\u0001\\u0008\\u000c\\n\\r\\t\\u001f\\\"\\\\/\u{7f}\"}".to_owned(),
        ),
        (
            "other non-ASCII stays raw",
            json!({"t": "héllo 日本語 🎉 \u{2027}\u{202a}"}),
            "{\"t\":\"héllo 日本語 🎉 \u{2027}\u{202a}\"}".to_owned(),
        ),
        (
            "exact int64",
            json!({"max": i64::MAX, "min": i64::MIN, "zero": 0, "neg": -1, "big": 9007199254740993_i64}),
            r#"{"big":9007199254740993,"max":9223372036854775807,"min":-9223372036854775808,"neg":-1,"zero":0}"#.to_owned(),
        ),
        (
            "booleans and null",
            json!({"f": false, "n": null, "t": true}),
            r#"{"f":false,"n":null,"t":true}"#.to_owned(),
        ),
        (
            "the invented record of jetstream.md §3",
            json!({"$type": "com.example.note", "createdAt": "2025-06-15T12:00:00.000Z", "text": "x < y"}),
            r#"{"$type":"com.example.note","createdAt":"2025-06-15T12:00:00.000Z","text":"x \u003c y"}"#.to_owned(),
        ),
    ];
    for (name, value, want) in &cases {
        check_record(name, &cbor_of(value), want);
    }
}

#[test]
fn records_failing_data_model_checks_are_refused() {
    let link = Ipld::Link(cid_for_dag_cbor(b"blob"));
    let blob = |extra: Vec<(&str, Ipld)>, drop: &str| {
        let mut fields = vec![
            ("$type", Ipld::String("blob".into())),
            ("ref", link.clone()),
            ("mimeType", Ipld::String("image/png".into())),
            ("size", Ipld::Integer(10)),
        ];
        fields.retain(|(k, _)| *k != drop);
        fields.extend(extra);
        ipld_map(vec![("b", ipld_map(fields))])
    };
    let mut nested = Ipld::Integer(1);
    for _ in 0..200 {
        nested = Ipld::List(vec![nested]);
    }
    let cases: Vec<(&str, Vec<u8>, RecordError)> = vec![
        (
            "float (half precision 1.5)",
            vec![0xa1, 0x61, b'a', 0xf9, 0x3e, 0x00],
            RecordError::Cbor(atelier_relay::sync::cbor::CborError::Float { at: 3 }),
        ),
        (
            "empty $type",
            cbor_of_ipld(&ipld_map(vec![("$type", Ipld::String(String::new()))])),
            RecordError::BadType,
        ),
        (
            "nested empty $type",
            cbor_of_ipld(&ipld_map(vec![(
                "x",
                ipld_map(vec![("$type", Ipld::String(String::new()))]),
            )])),
            RecordError::BadType,
        ),
        (
            "$type not a string",
            cbor_of_ipld(&ipld_map(vec![("$type", Ipld::Integer(1))])),
            RecordError::BadType,
        ),
        (
            "blob with three fields",
            cbor_of_ipld(&blob(vec![], "size")),
            RecordError::BadBlob("a blob has exactly four fields"),
        ),
        (
            "blob with five fields",
            cbor_of_ipld(&blob(vec![("extra", Ipld::Null)], "")),
            RecordError::BadBlob("a blob has exactly four fields"),
        ),
        (
            "blob with a string ref",
            cbor_of_ipld(&blob(vec![("ref", Ipld::String("bafy".into()))], "ref")),
            RecordError::BadBlob("ref must be a link"),
        ),
        (
            "blob with a renamed field",
            cbor_of_ipld(&blob(vec![("mime", Ipld::String("x".into()))], "mimeType")),
            RecordError::BadBlob("unexpected field"),
        ),
        (
            "top level not a map",
            cbor_of_ipld(&Ipld::List(vec![])),
            RecordError::NotAMap(atelier_relay::sync::cbor::Kind::Array),
        ),
        (
            "over 1 MiB",
            cbor_of_ipld(&ipld_map(vec![(
                "b",
                Ipld::Bytes(vec![0; MAX_RECORD_BYTES]),
            )])),
            RecordError::TooLarge {
                // Map header, key "b" and the byte string header take 8 bytes.
                len: MAX_RECORD_BYTES + 8,
            },
        ),
        (
            "nesting deeper than the reader allows",
            cbor_of_ipld(&ipld_map(vec![("n", nested)])),
            RecordError::TooDeep,
        ),
    ];
    for (name, cbor, want) in cases {
        let mut out = b"kept".to_vec();
        let got = atelier_relay::jetstream::RecordEncoder::default().encode(&cbor, &mut out);
        assert_eq!(got, Err(want), "{name}");
        assert_eq!(out, b"kept", "{name}: output restored");
    }
    // Exactly 1 MiB is still converted.
    let limit = cbor_of_ipld(&ipld_map(vec![(
        "b",
        Ipld::Bytes(vec![0; MAX_RECORD_BYTES - 8]),
    )]));
    assert_eq!(limit.len(), MAX_RECORD_BYTES);
    assert!(record_json(&limit).is_ok());
    // Unsorted or trailing CBOR is refused by the strict reader.
    assert!(matches!(
        record_json(&[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02]),
        Err(RecordError::Cbor(_))
    ));
    assert!(matches!(
        record_json(&[0xa0, 0x00]),
        Err(RecordError::Cbor(_))
    ));
}

/// A commit with the given ops and test defaults elsewhere.
fn commit(did: &str, rev: &str, ops: Vec<OpEvent>) -> CommitEvent {
    CommitEvent {
        seq: 1,
        did: did.to_owned(),
        rev: rev.to_owned(),
        since: None,
        time: "2025-06-15T12:00:00.000Z".to_owned(),
        commit: cid(),
        ops,
        status: SyncStatus::Synchronized,
        fully_verified: true,
        state: None,
        frame: Bytes::new(),
    }
}

fn op(
    action: Action,
    collection: &str,
    rkey: &str,
    cid: Option<&str>,
    record: Option<Vec<u8>>,
) -> OpEvent {
    OpEvent {
        action,
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid: cid.map(str::to_owned),
        prev: None,
        record: record.map(Bytes::from),
    }
}

/// A clock frozen before the given time, so it counts up from `last + 1`.
fn frozen_clock(last: i64) -> TimeClock {
    TimeClock::with_source(last, || 0)
}

#[test]
fn the_invented_commit_event_of_the_brief() {
    let record = cbor_of(&json!({
        "$type": "com.example.note", "createdAt": "2025-06-15T12:00:00.000Z", "text": "x < y"
    }));
    let c = commit(
        "did:plc:ex1",
        "3lexrev",
        vec![op(
            Action::Create,
            "com.example.note",
            "3lexrk",
            Some("bafyrei…"),
            Some(record),
        )],
    );
    let events = encode_commit(&c, &mut frozen_clock(1_750_000_000_000_000));
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        std::str::from_utf8(&e.json).unwrap(),
        r#"{"did":"did:plc:ex1","time_us":1750000000000001,"kind":"commit","commit":{"rev":"3lexrev","operation":"create","collection":"com.example.note","rkey":"3lexrk","record":{"$type":"com.example.note","createdAt":"2025-06-15T12:00:00.000Z","text":"x \u003c y"},"cid":"bafyrei…"}}"#
    );
    assert_eq!(e.time_us, 1_750_000_000_000_001);
    assert_eq!(e.did, "did:plc:ex1");
    assert_eq!(e.collection.as_deref(), Some("com.example.note"));
}

#[test]
fn commit_ops_become_events_in_order_with_skips() {
    let good = cbor_of(&json!({"$type": "a.b.c", "n": 1}));
    let bad = cbor_of_ipld(&ipld_map(vec![("$type", Ipld::String(String::new()))]));
    let c = commit(
        "did:plc:multi",
        "3rev",
        vec![
            op(
                Action::Create,
                "a.b.c",
                "k1",
                Some("bafy1"),
                Some(good.clone()),
            ),
            op(Action::Create, "a.b.c", "k2", None, Some(good.clone())),
            op(Action::Update, "a.b.c", "k3", Some("bafy3"), None),
            op(Action::Update, "a.b.c", "k4", Some("bafy4"), Some(bad)),
            op(Action::Delete, "a.b.d", "k5", None, None),
            op(Action::Update, "a.b.c", "k6", Some("bafy6"), Some(good)),
        ],
    );
    let events = encode_commit(&c, &mut frozen_clock(100));
    let got: Vec<(i64, &str)> = events
        .iter()
        .map(|e| (e.time_us, std::str::from_utf8(&e.json).unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                101,
                r#"{"did":"did:plc:multi","time_us":101,"kind":"commit","commit":{"rev":"3rev","operation":"create","collection":"a.b.c","rkey":"k1","record":{"$type":"a.b.c","n":1},"cid":"bafy1"}}"#
            ),
            (
                102,
                r#"{"did":"did:plc:multi","time_us":102,"kind":"commit","commit":{"rev":"3rev","operation":"delete","collection":"a.b.d","rkey":"k5"}}"#
            ),
            (
                103,
                r#"{"did":"did:plc:multi","time_us":103,"kind":"commit","commit":{"rev":"3rev","operation":"update","collection":"a.b.c","rkey":"k6","record":{"$type":"a.b.c","n":1},"cid":"bafy6"}}"#
            ),
        ]
    );
}

#[test]
fn identity_and_account_events_carry_upstream_fields_verbatim() {
    let mut clock = frozen_clock(10);
    let cases: Vec<(JetstreamEvent, &str)> = vec![
        (
            encode_identity(
                &frame::Identity {
                    seq: 7,
                    did: "did:plc:a",
                    time: "2025-01-01T00:00:00Z",
                    handle: Some("a.<b>.test"),
                },
                &mut clock,
            ),
            r#"{"did":"did:plc:a","time_us":11,"kind":"identity","identity":{"did":"did:plc:a","handle":"a.\u003cb\u003e.test","seq":7,"time":"2025-01-01T00:00:00Z"}}"#,
        ),
        (
            encode_identity(
                &frame::Identity {
                    seq: 8,
                    did: "did:plc:a",
                    time: "t",
                    handle: None,
                },
                &mut clock,
            ),
            r#"{"did":"did:plc:a","time_us":12,"kind":"identity","identity":{"did":"did:plc:a","seq":8,"time":"t"}}"#,
        ),
        (
            encode_account(
                &frame::Account {
                    seq: 9,
                    did: "did:plc:b",
                    time: "t",
                    active: false,
                    status: Some("takendown"),
                },
                &mut clock,
            ),
            r#"{"did":"did:plc:b","time_us":13,"kind":"account","account":{"active":false,"did":"did:plc:b","seq":9,"status":"takendown","time":"t"}}"#,
        ),
        (
            encode_account(
                &frame::Account {
                    seq: 10,
                    did: "did:plc:b",
                    time: "t",
                    active: true,
                    status: None,
                },
                &mut clock,
            ),
            r#"{"did":"did:plc:b","time_us":14,"kind":"account","account":{"active":true,"did":"did:plc:b","seq":10,"time":"t"}}"#,
        ),
    ];
    for (event, want) in cases {
        assert_eq!(std::str::from_utf8(&event.json).unwrap(), want);
        assert_eq!(event.collection, None);
    }
}

#[test]
fn time_clock_never_repeats() {
    let mut clock = TimeClock::after(1000);
    // (wall clock reading, expected value)
    let table = [
        (500, 1001),
        (1001, 1002),
        (2000, 2000),
        (2000, 2001),
        (1999, 2002),
        (5000, 5000),
    ];
    for (now, want) in table {
        assert_eq!(clock.next_at(now), want, "wall clock at {now}");
    }
    let mut real = TimeClock::new();
    let mut last = 0;
    for _ in 0..1000 {
        let t = real.tick();
        assert!(t > last);
        last = t;
    }
}

#[test]
fn corpus_commits_encode_and_round_trip() {
    let frames = support::corpus_frames();
    let mut clock = TimeClock::new();
    let (mut commits, mut ops_total, mut skipped, mut events_total, mut records) = (0, 0, 0, 0, 0);
    let mut last_time = 0;
    for (i, bytes) in frames.iter().enumerate() {
        let Frame::Commit(fc) = frame::decode(bytes).unwrap_or_else(|e| panic!("frame {i}: {e}"))
        else {
            continue;
        };
        commits += 1;
        let car = fc.car().unwrap_or_else(|e| panic!("frame {i} CAR: {e}"));
        let mut ops = Vec::new();
        for o in &fc.ops {
            let (collection, rkey) = o.split_path().expect("collection/rkey");
            let record = o.cid.and_then(|c| car.get(&c)).map(<[u8]>::to_vec);
            if o.action != Action::Delete && record.is_none() {
                skipped += 1;
            }
            ops.push(op(
                o.action,
                collection,
                rkey,
                o.cid.map(|c| c.to_string()).as_deref(),
                record,
            ));
        }
        ops_total += ops.len();
        let c = commit(fc.repo, fc.rev, ops);
        let events = encode_commit(&c, &mut clock);
        events_total += events.len();
        let mut records_in = c
            .ops
            .iter()
            .filter(|o| o.record.is_some() && o.cid.is_some());
        for e in &events {
            assert!(e.time_us > last_time, "frame {i}: time_us increases");
            last_time = e.time_us;
            assert_eq!(e.did, fc.repo);
            let v: serde_json::Value = serde_json::from_slice(&e.json)
                .unwrap_or_else(|err| panic!("frame {i}: event is not JSON: {err}"));
            assert_eq!(v["time_us"], json!(e.time_us));
            assert_eq!(v["commit"]["rev"], json!(fc.rev));
            assert_eq!(v["commit"]["collection"].as_str(), e.collection.as_deref());
            let prefix = format!(
                r#"{{"did":{},"time_us":{},"kind":"commit","commit":{{"rev":"#,
                serde_json::to_string(fc.repo).unwrap(),
                e.time_us
            );
            assert!(
                std::str::from_utf8(&e.json).unwrap().starts_with(&prefix),
                "frame {i}: top-level order"
            );
            if v["commit"]["operation"] == "delete" {
                assert!(v["commit"].get("record").is_none() && v["commit"].get("cid").is_none());
                continue;
            }
            let o = records_in
                .next()
                .expect("an op with a record for each non-delete event");
            let ipld = decode_dag_cbor(o.record.as_deref().unwrap()).expect("record decodes");
            assert_eq!(
                v["commit"]["record"],
                ipld_to_json(&ipld),
                "frame {i}: record JSON"
            );
            assert_eq!(v["commit"]["cid"].as_str(), o.cid.as_deref());
            records += 1;
        }
    }
    assert_eq!(commits, 148, "corpus commit frames");
    assert_eq!(
        events_total,
        ops_total - skipped,
        "one event per op, minus skipped ops"
    );
    assert!(records > 0);
}

fn opts(f: impl FnOnce(&mut SubscribeOptions)) -> SubscribeOptions {
    let mut o = SubscribeOptions::default();
    f(&mut o);
    o
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn dids(items: &[&str]) -> HashSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn repeat_query(key: &str, values: impl Iterator<Item = String>) -> String {
    values
        .map(|v| format!("{key}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn subscribe_options_from_query() {
    let hundred = repeat_query(
        "wantedCollections",
        (0..100).map(|i| format!("com.example.c{i}")),
    );
    let hundred_one = repeat_query(
        "wantedCollections",
        (0..101).map(|i| format!("com.example.c{i}")),
    );
    // 10,000 unique DIDs, each twice: fine. 10,001 unique: too many.
    let ten_k = repeat_query(
        "wantedDids",
        (0..20_000).map(|i| format!("did:plc:u{}", i % 10_000)),
    );
    let ten_k_one = repeat_query("wantedDids", (0..10_001).map(|i| format!("did:plc:u{i}")));
    let ok = |o: SubscribeOptions| Ok::<_, &str>(o);
    let cases: Vec<(&str, Result<SubscribeOptions, &str>)> = vec![
        ("", ok(SubscribeOptions::default())),
        ("maxSize=5&foo=bar", ok(SubscribeOptions::default())),
        (
            "wantedCollections=app.bsky.feed.post&wantedCollections=app.bsky.graph.*",
            ok(opts(|o| {
                o.collections.exact = set(&["app.bsky.feed.post"]);
                o.collections.prefixes = set(&["app.bsky.graph."]);
            })),
        ),
        (
            "wantedCollections=app.bsky.*",
            ok(opts(|o| o.collections.prefixes = set(&["app.bsky."]))),
        ),
        (
            "wantedCollections=app.bsky.graph.%2A",
            ok(opts(|o| o.collections.prefixes = set(&["app.bsky.graph."]))),
        ),
        (
            "wantedCollections=app.bsky.feed.po*",
            Err("invalid subscriber options: invalid collection: app.bsky.feed.po*"),
        ),
        (
            "wantedCollections=app.bsky.feed.post,app.bsky.feed.like",
            Err(
                "invalid subscriber options: invalid collection: app.bsky.feed.post,app.bsky.feed.like",
            ),
        ),
        (
            "wantedCollections=",
            Err("invalid subscriber options: invalid collection: "),
        ),
        (
            &hundred_one,
            Err("invalid subscriber options: too many wanted collections"),
        ),
        (
            "wantedDids=did:plc:abc&wantedDids=did:plc:abc",
            ok(opts(|o| o.dids = dids(&["did:plc:abc"]))),
        ),
        (
            "wantedDids=did:web:example.com",
            ok(opts(|o| o.dids = dids(&["did:web:example.com"]))),
        ),
        ("wantedDids=notadid", Err("invalid subscriber options")),
        (
            &ten_k_one,
            Err("invalid subscriber options: too many wanted DIDs"),
        ),
        (
            "cursor=1750000000000000",
            ok(opts(|o| o.cursor = Some(1_750_000_000_000_000))),
        ),
        ("cursor=0", ok(opts(|o| o.cursor = Some(0)))),
        ("cursor=-5", ok(opts(|o| o.cursor = Some(-5)))),
        ("cursor=", ok(SubscribeOptions::default())),
        (
            "cursor=4102444800000000",
            ok(opts(|o| o.cursor = Some(4_102_444_800_000_000))),
        ),
        ("cursor=abc", Err("invalid cursor: abc")),
        ("cursor=1.5", Err("invalid cursor: 1.5")),
        (
            "cursor=99999999999999999999",
            Err("invalid cursor: 99999999999999999999"),
        ),
        ("compress=true", ok(opts(|o| o.compress = true))),
        ("compress=TRUE", ok(SubscribeOptions::default())),
        ("compress=1", ok(SubscribeOptions::default())),
        (
            "maxMessageSizeBytes=1000",
            ok(opts(|o| o.max_message_size = 1000)),
        ),
        ("maxMessageSizeBytes=-1", ok(SubscribeOptions::default())),
        ("maxMessageSizeBytes=abc", ok(SubscribeOptions::default())),
        ("maxMessageSizeBytes=", ok(SubscribeOptions::default())),
        ("requireHello=true", ok(opts(|o| o.require_hello = true))),
        ("requireHello=True", ok(SubscribeOptions::default())),
    ];
    for (query, want) in &cases {
        let got = SubscribeOptions::from_query(query).map_err(|e| e.to_string());
        assert_eq!(
            got,
            want.clone().map_err(str::to_owned),
            "{}",
            &query[..query.len().min(80)]
        );
    }
    let got = SubscribeOptions::from_query(&hundred).expect("100 collections are fine");
    assert_eq!(got.collections.exact.len(), 100);
    let got = SubscribeOptions::from_query(&ten_k).expect("10,000 unique DIDs are fine");
    assert_eq!(got.dids.len(), 10_000);
    assert_eq!(
        SubscribeOptions::from_query("wantedDids=bad"),
        Err(OptionsError::InvalidDid("bad".into()))
    );
}

#[test]
fn cursor_start_and_socket_encoding() {
    let now = 1_750_000_000_000_000;
    let table = [
        ("", Start::Live),
        (
            "cursor=1749999999000000",
            Start::From(1_749_999_999_000_000),
        ),
        ("cursor=1750000000000000", Start::From(now)),
        ("cursor=1750000000000001", Start::Live),
        ("cursor=0", Start::From(0)),
        ("cursor=-7", Start::From(-7)),
    ];
    for (query, want) in table {
        assert_eq!(
            SubscribeOptions::from_query(query).unwrap().start(now),
            want,
            "{query}"
        );
    }
    for (header, want) in [
        ("zstd", true),
        ("gzip, zstd", true),
        ("gzip", false),
        ("", false),
    ] {
        let mut o = SubscribeOptions::default();
        o.apply_socket_encoding(header);
        assert_eq!(o.compress, want, "{header:?}");
    }
}

#[test]
fn options_update_messages() {
    let too_many = format!(
        r#"{{"type":"options_update","payload":{{"wantedCollections":[{}]}}}}"#,
        (0..101)
            .map(|i| format!("\"a.b.c{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let update = |f: fn(&mut OptionsUpdate)| {
        let mut u = OptionsUpdate::default();
        f(&mut u);
        Ok::<_, String>(Some(u))
    };
    let cases: Vec<(&str, Result<Option<OptionsUpdate>, String>)> = vec![
        (
            r#"{"type":"options_update","payload":{"wantedCollections":["app.bsky.feed.post","app.bsky.graph.*"],"wantedDids":["did:plc:abc"],"maxMessageSizeBytes":500}}"#,
            update(|u| {
                u.collections.exact = set(&["app.bsky.feed.post"]);
                u.collections.prefixes = set(&["app.bsky.graph."]);
                u.dids = dids(&["did:plc:abc"]);
                u.max_message_size = 500;
            }),
        ),
        (r#"{"type":"options_update","payload":{}}"#, update(|_| {})),
        (r#"{"type":"options_update","payload":{"wantedCollections":[],"wantedDids":null}}"#, update(|_| {})),
        (r#"{"type":"options_update","payload":{"maxMessageSizeBytes":-3}}"#, update(|_| {})),
        (r#"{"type":"hello","payload":{"wantedCollections":["bad*"]}}"#, Ok(None)),
        (r#"{"payload":{}}"#, Ok(None)),
        (
            r#"{"type":"options_update","payload":{"wantedCollections":["bad*"]}}"#,
            Err("failed to parse subscriber options: invalid subscriber options: invalid collection: bad*".into()),
        ),
        (
            r#"{"type":"options_update","payload":{"wantedDids":["nope"]}}"#,
            Err("failed to parse subscriber options: invalid subscriber options".into()),
        ),
        (&too_many, Err("failed to parse subscriber options: invalid subscriber options: too many wanted collections".into())),
    ];
    for (message, want) in cases {
        let got = OptionsUpdate::from_message(message).map_err(|e| e.to_string());
        assert_eq!(got, want, "{message}");
    }
    for bad_json in [
        "not json",
        r#"{"type":"options_update"}"#,
        r#"{"type":"options_update","payload":null}"#,
        r#"{"type":"options_update","payload":{"wantedCollections":"app.bsky.feed.post"}}"#,
        r#"{"type":"options_update","payload":{"maxMessageSizeBytes":1.5}}"#,
        r#"["options_update"]"#,
    ] {
        let got = OptionsUpdate::from_message(bad_json);
        assert!(
            matches!(got, Err(UpdateError::BadJson(_))),
            "{bad_json}: {got:?}"
        );
        assert!(
            got.unwrap_err()
                .to_string()
                .starts_with("failed to unmarshal subscriber sourced message: ")
        );
    }
    let huge = " ".repeat(atelier_relay::jetstream::options::MAX_CLIENT_MESSAGE_BYTES + 1);
    assert_eq!(
        OptionsUpdate::from_message(&huge),
        Ok(None),
        "oversized messages are ignored"
    );

    // An update replaces the filters and size limit; cursor and compression stay.
    let mut o = SubscribeOptions::from_query(
        "cursor=5&compress=true&wantedDids=did:plc:x&maxMessageSizeBytes=9",
    )
    .unwrap();
    o.apply(
        OptionsUpdate::from_message(
            r#"{"type":"options_update","payload":{"wantedCollections":["a.b.c"]}}"#,
        )
        .unwrap()
        .unwrap(),
    );
    assert_eq!(
        o,
        opts(|w| {
            w.cursor = Some(5);
            w.compress = true;
            w.collections.exact = set(&["a.b.c"]);
        })
    );
}

#[test]
fn matches_truth_table() {
    let event = |did: &str, collection: Option<&str>, len: usize| JetstreamEvent {
        time_us: 1,
        did: did.to_owned(),
        collection: collection.map(str::to_owned),
        json: Bytes::from(vec![b' '; len]),
    };
    let events = [
        event("did:plc:a", Some("app.bsky.feed.post"), 100),
        event("did:plc:b", Some("app.bsky.graph.follow"), 100),
        event("did:plc:a", Some("app.bsky.graph"), 100),
        event("did:plc:a", None, 100),  // identity or account
        event("did:plc:b", None, 1000), // identity or account, large
    ];
    let table: [(&str, [bool; 5]); 8] = [
        ("", [true, true, true, true, true]),
        (
            "wantedCollections=app.bsky.feed.post",
            [true, false, false, true, true],
        ),
        (
            "wantedCollections=app.bsky.graph.*",
            [false, true, false, true, true],
        ),
        (
            "wantedCollections=app.bsky.*",
            [true, true, true, true, true],
        ),
        ("wantedDids=did:plc:a", [true, false, true, true, false]),
        (
            "wantedDids=did:plc:b&wantedCollections=app.bsky.feed.post",
            [false, false, false, false, true],
        ),
        ("maxMessageSizeBytes=100", [true, true, true, true, false]),
        (
            "maxMessageSizeBytes=99",
            [false, false, false, false, false],
        ),
    ];
    for (query, want) in table {
        let o = SubscribeOptions::from_query(query).unwrap();
        let got = events.each_ref().map(|e| o.matches(e));
        assert_eq!(got, want, "{query}");
    }
    let filter = CollectionFilter::parse(&["app.bsky.graph.*"]).unwrap();
    assert!(filter.matches("app.bsky.graph.follow"));
    assert!(!filter.matches("app.bsky.graph"));
    assert!(!filter.matches("app.bsky.graphx"));
}
