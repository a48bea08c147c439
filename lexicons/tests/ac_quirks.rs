//! AC's records from the wild against the built-in `computer.aesthetic.*` lexicons.
//!
//! One raw example per known quirk (ac-records.md, "Quirks of the records in the wild"):
//! lenient mode accepts it and reports exactly the expected repair, strict mode rejects it
//! with an error naming the field. Then bad input: unknown NSIDs, malformed schemas, records
//! breaking a limit, and odd values that must fail cleanly rather than panic.

use atelier_lexicons::schema::{Catalog, SchemaError, parse_document};
use atelier_lexicons::validate::quirks::{QUIRKS, QuirkKind};
use atelier_lexicons::validate::{Mode, Repair, Rule, ValidationError};
use serde_json::{Value, json};

fn builtin() -> Catalog {
    Catalog::builtin().unwrap_or_else(|e| panic!("the built-in lexicons do not parse: {e}"))
}

const REF: &str = "6710f0c2a3b4c5d6e7f80912";
const WHEN: &str = "2024-10-17T20:00:00.000Z";
const CID: &str = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy";

fn painting() -> Value {
    json!({
        "$type": "computer.aesthetic.painting",
        "slug": "2024.10.17.20.00.00.000",
        "code": "a3b",
        "imageUrl": "https://aesthetic.computer/media/paintings/a3b",
        "when": WHEN,
        "ref": REF,
    })
}

fn kidlisp() -> Value {
    json!({
        "$type": "computer.aesthetic.kidlisp",
        "source": "(wipe blue)\n(ink yellow)\n(line 0 0 width height)",
        "code": "k9x",
        "when": WHEN,
        "ref": REF,
    })
}

fn mood() -> Value {
    json!({
        "$type": "computer.aesthetic.mood",
        "mood": "feeling painterly",
        "when": WHEN,
        "ref": REF,
    })
}

fn piece() -> Value {
    json!({
        "$type": "computer.aesthetic.piece",
        "slug": "wand",
        "when": WHEN,
        "ref": REF,
    })
}

fn blob(mime: &str, size: u64) -> Value {
    json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": mime, "size": size})
}

fn tape() -> Value {
    json!({
        "$type": "computer.aesthetic.tape",
        "slug": "wand-1729177200000",
        "code": "t4p",
        "when": WHEN,
        "video": blob("video/mp4", 3_000_000),
        "ref": REF,
    })
}

/// `record` with `key` set to `value`.
fn with(mut record: Value, key: &str, value: Value) -> Value {
    record[key] = value;
    record
}

/// `record` without `key`.
fn without(mut record: Value, key: &str) -> Value {
    if let Some(map) = record.as_object_mut() {
        map.remove(key);
    }
    record
}

/// One quirk as it appears in the wild.
struct QuirkCase {
    name: &'static str,
    nsid: &'static str,
    raw: Value,
    /// What lenient mode must report, exactly.
    repairs: Vec<Repair>,
    /// What lenient mode must return.
    repaired: Value,
    /// Where strict mode must point, and the field its message must name.
    strict_path: &'static str,
    strict_field: &'static str,
    /// Whether the spec's rules alone (standard mode) accept the raw record.
    standard_ok: bool,
}

fn undeclared(field: &str) -> Repair {
    Repair::UndeclaredField {
        path: "$".into(),
        field: field.into(),
        known_quirk: true,
    }
}

fn renamed(from: &str, to: &str) -> Repair {
    Repair::RenamedField {
        path: "$".into(),
        from: from.into(),
        to: to.into(),
    }
}

fn quirk_cases() -> Vec<QuirkCase> {
    let painting_url = json!("https://aesthetic.computer/#a3b");
    let tape_url = json!("https://aesthetic.computer/!t4p");
    vec![
        QuirkCase {
            name: "painting with acUrl",
            nsid: "computer.aesthetic.painting",
            raw: with(painting(), "acUrl", painting_url.clone()),
            repairs: vec![undeclared("acUrl")],
            repaired: with(painting(), "acUrl", painting_url),
            strict_path: "$.acUrl",
            strict_field: "acUrl",
            standard_ok: true,
        },
        QuirkCase {
            name: "kidlisp with acUrl",
            nsid: "computer.aesthetic.kidlisp",
            raw: with(kidlisp(), "acUrl", json!("https://aesthetic.computer/$k9x")),
            repairs: vec![undeclared("acUrl")],
            repaired: with(kidlisp(), "acUrl", json!("https://aesthetic.computer/$k9x")),
            strict_path: "$.acUrl",
            strict_field: "acUrl",
            standard_ok: true,
        },
        QuirkCase {
            name: "mood with text instead of mood",
            nsid: "computer.aesthetic.mood",
            raw: with(without(mood(), "mood"), "text", json!("feeling painterly")),
            repairs: vec![renamed("text", "mood")],
            repaired: mood(),
            strict_path: "$.text",
            strict_field: "text",
            standard_ok: false,
        },
        QuirkCase {
            name: "piece with mongoId instead of ref",
            nsid: "computer.aesthetic.piece",
            raw: with(without(piece(), "ref"), "mongoId", json!(REF)),
            repairs: vec![renamed("mongoId", "ref")],
            repaired: piece(),
            strict_path: "$.mongoId",
            strict_field: "mongoId",
            standard_ok: false,
        },
        QuirkCase {
            name: "painting with mongoId instead of ref",
            nsid: "computer.aesthetic.painting",
            raw: with(without(painting(), "ref"), "mongoId", json!(REF)),
            repairs: vec![renamed("mongoId", "ref")],
            repaired: painting(),
            strict_path: "$.mongoId",
            strict_field: "mongoId",
            standard_ok: false,
        },
        QuirkCase {
            name: "tape without video",
            nsid: "computer.aesthetic.tape",
            raw: without(tape(), "video"),
            repairs: vec![Repair::MissingRequired {
                path: "$".into(),
                field: "video".into(),
            }],
            repaired: without(tape(), "video"),
            strict_path: "$",
            strict_field: "video",
            standard_ok: false,
        },
        QuirkCase {
            name: "tape with thumbnail blob",
            nsid: "computer.aesthetic.tape",
            raw: with(tape(), "thumbnail", blob("image/jpeg", 40_000)),
            repairs: vec![undeclared("thumbnail")],
            repaired: with(tape(), "thumbnail", blob("image/jpeg", 40_000)),
            strict_path: "$.thumbnail",
            strict_field: "thumbnail",
            standard_ok: true,
        },
        QuirkCase {
            name: "tape with acUrl",
            nsid: "computer.aesthetic.tape",
            raw: with(tape(), "acUrl", tape_url.clone()),
            repairs: vec![undeclared("acUrl")],
            repaired: with(tape(), "acUrl", tape_url),
            strict_path: "$.acUrl",
            strict_field: "acUrl",
            standard_ok: true,
        },
    ]
}

#[test]
fn each_known_quirk_is_repaired_in_lenient_and_rejected_in_strict() {
    let catalog = builtin();
    let cases = quirk_cases();
    let mut failures = Vec::new();
    for case in &cases {
        // The untouched record passes every mode, cleanly.
        let clean = without(case.repaired.clone(), "acUrl");
        let clean = without(clean, "thumbnail");
        if case.name != "tape without video" {
            for mode in [Mode::Standard, Mode::Strict, Mode::Lenient] {
                match catalog.validate_record(case.nsid, &clean, mode) {
                    Ok(v) if v.is_clean() && v.record == clean => {}
                    other => failures.push(format!(
                        "{}: the clean record in {mode:?}: {other:?}",
                        case.name
                    )),
                }
            }
        }

        match catalog.validate_record(case.nsid, &case.raw, Mode::Lenient) {
            Ok(v) => {
                println!("  {}: lenient: {}", case.name, join(&v.repairs));
                if v.repairs != case.repairs {
                    failures.push(format!(
                        "{}: lenient repairs {:?}, expected {:?}",
                        case.name, v.repairs, case.repairs
                    ));
                }
                if v.record != case.repaired {
                    failures.push(format!(
                        "{}: lenient returned {}, expected {}",
                        case.name, v.record, case.repaired
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: lenient rejected: {e}", case.name)),
        }

        match catalog.validate_record(case.nsid, &case.raw, Mode::Strict) {
            Ok(_) => failures.push(format!("{}: strict accepted", case.name)),
            Err(e) => {
                println!("  {}: strict: {e}", case.name);
                let names_field = e.to_string().contains(&format!("`{}`", case.strict_field));
                let is_quirk = matches!(
                    e.rule(),
                    Some(Rule::KnownQuirk { quirk }) if quirk.field() == case.strict_field
                );
                if e.nsid() != case.nsid
                    || e.path() != Some(case.strict_path)
                    || !names_field
                    || !is_quirk
                {
                    failures.push(format!(
                        "{}: strict error should be a known quirk at {} naming `{}`: {e}",
                        case.name, case.strict_path, case.strict_field
                    ));
                }
            }
        }

        let standard = catalog.validate_record(case.nsid, &case.raw, Mode::Standard);
        if standard.is_ok() != case.standard_ok {
            failures.push(format!("{}: standard mode gave {standard:?}", case.name));
        }
        if let Ok(v) = standard
            && (!v.repairs.is_empty() || v.record != case.raw)
        {
            failures.push(format!("{}: standard mode changed the record", case.name));
        }
    }
    println!("AC quirks: {} cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

fn join(repairs: &[Repair]) -> String {
    repairs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn every_quirk_in_the_table_has_a_case() {
    let cases = quirk_cases();
    for quirk in QUIRKS {
        let covered = cases.iter().any(|case| {
            quirk.applies_to(case.nsid)
                && match quirk.kind {
                    QuirkKind::ExtraField { field } => case.raw.get(field).is_some(),
                    QuirkKind::RenamedField { from, .. } => case.raw.get(from).is_some(),
                    QuirkKind::MissingField { field } => case.raw.get(field).is_none(),
                }
        });
        assert!(covered, "no test case for quirk {quirk}");
    }
}

#[test]
fn a_tape_with_every_quirk_at_once() {
    let catalog = builtin();
    let raw = json!({
        "$type": "computer.aesthetic.tape",
        "slug": "wand-1729177200000",
        "code": "t4p",
        "when": WHEN,
        "mongoId": REF,
        "thumbnail": blob("image/jpeg", 40_000),
        "acUrl": "https://aesthetic.computer/!t4p",
    });
    let v = catalog
        .validate_record("computer.aesthetic.tape", &raw, Mode::Lenient)
        .unwrap_or_else(|e| panic!("lenient rejected a real-world tape: {e}"));
    println!("  {}", join(&v.repairs));
    assert_eq!(v.record["ref"], json!(REF));
    assert!(v.record.get("mongoId").is_none());
    assert_eq!(v.record["acUrl"], raw["acUrl"]);
    assert_eq!(v.repairs.len(), 4, "{:?}", v.repairs);
    assert!(v.repairs.contains(&renamed("mongoId", "ref")));
    assert!(v.repairs.contains(&undeclared("thumbnail")));
    assert!(v.repairs.contains(&undeclared("acUrl")));
    assert!(v.repairs.contains(&Repair::MissingRequired {
        path: "$".into(),
        field: "video".into()
    }));
}

#[test]
fn lenient_reports_but_keeps_unknown_undeclared_fields() {
    let catalog = builtin();
    let raw = with(piece(), "colour", json!("pink"));
    let v = catalog
        .validate_record("computer.aesthetic.piece", &raw, Mode::Lenient)
        .expect("undeclared fields are allowed by the spec");
    assert_eq!(
        v.repairs,
        vec![Repair::UndeclaredField {
            path: "$".into(),
            field: "colour".into(),
            known_quirk: false
        }]
    );
    assert_eq!(v.record, raw);
    let err = catalog
        .validate_record("computer.aesthetic.piece", &raw, Mode::Strict)
        .expect_err("strict rejects undeclared fields");
    assert_eq!(
        err.to_string(),
        "computer.aesthetic.piece: $.colour: undeclared field `colour` (not allowed in strict mode)"
    );
}

#[test]
fn lenient_still_fails_beyond_the_known_quirks() {
    let catalog = builtin();
    let bad = [
        // A renamed field still has to satisfy the declared field's rules.
        (
            "computer.aesthetic.mood",
            with(without(mood(), "mood"), "text", json!("x".repeat(5001))),
            "$.mood",
        ),
        // mongoId into a ref limited to 24 characters.
        (
            "computer.aesthetic.piece",
            with(without(piece(), "ref"), "mongoId", json!("x".repeat(25))),
            "$.ref",
        ),
        // A missing field that is not a known quirk.
        (
            "computer.aesthetic.painting",
            without(painting(), "code"),
            "$",
        ),
        // A tape's video, when present, is still checked.
        (
            "computer.aesthetic.tape",
            with(tape(), "video", blob("video/webm", 10)),
            "$.video",
        ),
        (
            "computer.aesthetic.tape",
            with(tape(), "video", blob("video/mp4", 60 * 1024 * 1024)),
            "$.video",
        ),
        // The wrong kind of thumbnail on a painting.
        (
            "computer.aesthetic.painting",
            with(painting(), "thumbnail", blob("image/gif", 10)),
            "$.thumbnail",
        ),
        (
            "computer.aesthetic.piece",
            with(piece(), "when", json!("yesterday")),
            "$.when",
        ),
    ];
    let mut failures = Vec::new();
    for (nsid, record, path) in &bad {
        match catalog.validate_record(nsid, record, Mode::Lenient) {
            Ok(v) => failures.push(format!("{nsid}: accepted {record} with {:?}", v.repairs)),
            Err(e) => {
                println!("  {e}");
                if e.path() != Some(*path) {
                    failures.push(format!("{nsid}: expected an error at {path}, got {e}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_record_over_a_limit_names_nsid_path_and_rule() {
    let catalog = builtin();
    let record = with(painting(), "code", json!("abcdefghijklmn"));
    for mode in [Mode::Standard, Mode::Strict, Mode::Lenient] {
        let err = catalog
            .validate_record("computer.aesthetic.painting", &record, mode)
            .expect_err("code is longer than 10");
        assert_eq!(
            err,
            ValidationError::Invalid {
                nsid: "computer.aesthetic.painting".into(),
                path: "$.code".into(),
                rule: Rule::StringTooLong { max: 10, got: 14 },
            }
        );
        assert_eq!(
            err.to_string(),
            "computer.aesthetic.painting: $.code: string longer than maxLength 10 (got 14)"
        );
    }
    // Lengths are UTF-8 bytes: 4 × 3-byte characters are 12 bytes.
    let record = with(painting(), "code", json!("ペイント"));
    let err = catalog
        .validate_record("computer.aesthetic.painting", &record, Mode::Standard)
        .expect_err("12 bytes");
    assert_eq!(err.rule(), Some(&Rule::StringTooLong { max: 10, got: 12 }));

    let news = json!({
        "$type": "computer.aesthetic.news",
        "headline": "AC ships Atelier",
        "when": WHEN,
        "tags": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"],
    });
    let err = catalog
        .validate_record("computer.aesthetic.news", &news, Mode::Strict)
        .expect_err("11 tags");
    assert_eq!(
        err.to_string(),
        "computer.aesthetic.news: $.tags: array longer than maxLength 10 (got 11)"
    );
    let news = with(news, "tags", json!(["ok", "x".repeat(65)]));
    let err = catalog
        .validate_record("computer.aesthetic.news", &news, Mode::Strict)
        .expect_err("a long tag");
    assert_eq!(err.path(), Some("$.tags[1]"));

    let paper = json!({
        "$type": "computer.aesthetic.paper",
        "title": "Aesthetic Computer",
        "slug": "aesthetic-computer-26-arxiv",
        "pdfUrl": "https://papers.aesthetic.computer/ac.pdf",
        "when": WHEN,
        "revisions": -1,
    });
    let err = catalog
        .validate_record("computer.aesthetic.paper", &paper, Mode::Strict)
        .expect_err("negative revisions");
    assert_eq!(err.rule(), Some(&Rule::BelowMinimum { min: 0, got: -1 }));
}

#[test]
fn unknown_nsid_and_non_records_are_their_own_errors() {
    let catalog = builtin();
    let err = catalog
        .validate_record("computer.aesthetic.sculpture", &painting(), Mode::Lenient)
        .expect_err("no such lexicon");
    assert_eq!(
        err,
        ValidationError::UnknownNsid {
            nsid: "computer.aesthetic.sculpture".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "unknown lexicon computer.aesthetic.sculpture"
    );

    let err = catalog
        .validate_record("com.atproto.repo.strongRef", &json!({}), Mode::Standard)
        .expect_err("strongRef is an object, not a record");
    assert!(matches!(err, ValidationError::NotARecord { .. }), "{err}");

    // The record's own $type must be the NSID.
    let err = catalog
        .validate_record("computer.aesthetic.piece", &painting(), Mode::Standard)
        .expect_err("a painting is not a piece");
    assert_eq!(err.path(), Some("$.$type"));
    let err = catalog
        .validate_record(
            "computer.aesthetic.piece",
            &without(piece(), "$type"),
            Mode::Lenient,
        )
        .expect_err("no $type");
    assert!(
        matches!(err.rule(), Some(Rule::MissingRecordType { .. })),
        "{err}"
    );
}

#[test]
fn malformed_and_invalid_schemas_are_typed_errors() {
    let err = parse_document(
        "{\n  \"lexicon\": 1,\n  \"id\": \"computer.aesthetic.x\",\n  \"defs\": {\n",
    )
    .expect_err("truncated JSON");
    match &err {
        SchemaError::Json { line, .. } => assert_eq!(*line, 5, "{err}"),
        other => panic!("expected a JSON error, got {other}"),
    }
    println!("  {err}");

    let bad_limit = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "record", "key": "tid",
        "record": {"type": "object", "properties": {"code": {"type": "string", "maxLength": -1}}}}}}"#;
    let err = parse_document(bad_limit).expect_err("negative maxLength");
    assert_eq!(
        err.to_string(),
        "computer.aesthetic.bad: defs.main.record.properties.code.maxLength: \
         expected a non-negative integer, got integer"
    );

    let bad_key = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "record", "key": "uuid", "record": {"type": "object", "properties": {}}}}}"#;
    assert!(matches!(
        parse_document(bad_key),
        Err(SchemaError::InvalidRecordKey { ref key, .. }) if key == "uuid"
    ));

    let bad_type = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "record", "key": "tid", "record": {"type": "object",
        "properties": {"when": {"type": "date"}}}}}}"#;
    let err = parse_document(bad_type).expect_err("no such type");
    assert_eq!(
        err.to_string(),
        "computer.aesthetic.bad: defs.main.record.properties.when: unknown type \"date\""
    );

    let bad_required = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "record", "key": "tid", "record": {"type": "object", "required": ["video"],
        "properties": {}}}}}"#;
    let err = parse_document(bad_required).expect_err("required names nothing");
    assert!(matches!(err, SchemaError::Constraint { .. }), "{err}");

    let bad_format = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "string", "format": "email"}}}"#;
    assert!(matches!(
        parse_document(bad_format),
        Err(SchemaError::UnknownFormat { .. })
    ));

    let bad_ref = r#"{"lexicon": 1, "id": "computer.aesthetic.bad", "defs": {"main": {
        "type": "object", "properties": {"x": {"type": "ref", "ref": "not an nsid"}}}}}"#;
    assert!(matches!(
        parse_document(bad_ref),
        Err(SchemaError::InvalidRef { .. })
    ));

    let mut catalog = builtin();
    let again = catalog
        .get("computer.aesthetic.mood")
        .cloned()
        .expect("mood is built in");
    assert!(matches!(
        catalog.add(again),
        Err(SchemaError::Duplicate { .. })
    ));
}

#[test]
fn builtin_lexicons_are_complete_and_round_trip() {
    let catalog = builtin();
    for nsid in [
        "computer.aesthetic.painting",
        "computer.aesthetic.kidlisp",
        "computer.aesthetic.mood",
        "computer.aesthetic.piece",
        "computer.aesthetic.tape",
        "computer.aesthetic.news",
        "computer.aesthetic.paper",
    ] {
        let doc = catalog
            .get(nsid)
            .unwrap_or_else(|| panic!("{nsid} is not built in"));
        let record = doc
            .record()
            .unwrap_or_else(|| panic!("{nsid} is not a record"));
        assert_eq!(record.key, "tid", "{nsid}");
    }
    catalog
        .check_refs()
        .unwrap_or_else(|e| panic!("a built-in ref does not resolve: {e}"));
    for (nsid, json) in atelier_lexicons::generated::schemas::SCHEMAS {
        let original: Value = serde_json::from_str(json).expect("built-in schemas are JSON");
        let doc = catalog
            .get(nsid)
            .expect("every built-in schema is in the catalog");
        let back = serde_json::to_value(doc).expect("serializes");
        assert_eq!(back, original, "{nsid} does not round-trip");
    }
    println!("built-in lexicons: {}", catalog.len());
}

#[test]
fn remix_refs_resolve_through_the_catalog() {
    let catalog = builtin();
    let remix = json!({
        "uri": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/computer.aesthetic.painting/3kznmn7xqxl22",
        "cid": CID,
    });
    let record = with(painting(), "remixOf", remix);
    catalog
        .validate_record("computer.aesthetic.painting", &record, Mode::Strict)
        .unwrap_or_else(|e| panic!("a valid remixOf was rejected: {e}"));
    let record = with(painting(), "remixOf", json!({"uri": "nope", "cid": CID}));
    let err = catalog
        .validate_record("computer.aesthetic.painting", &record, Mode::Strict)
        .expect_err("bad at-uri");
    assert_eq!(err.path(), Some("$.remixOf.uri"));
}

#[test]
fn odd_input_fails_cleanly_in_every_mode() {
    let catalog = builtin();
    let odd = [
        json!(null),
        json!(true),
        json!(12),
        json!("computer.aesthetic.painting"),
        json!([painting()]),
        json!({}),
        json!({"$type": 5}),
        with(painting(), "code", json!(null)),
        with(painting(), "code", json!(1.5)),
        with(painting(), "code", json!({"$bytes": "AAAA"})),
        with(painting(), "thumbnail", json!({"$type": "blob"})),
        with(
            painting(),
            "thumbnail",
            json!({"cid": CID, "mimeType": "image/png"}),
        ),
        with(
            painting(),
            "thumbnail",
            blob("image/png", 10).as_object().map_or(json!(null), |b| {
                let mut b = b.clone();
                b.insert("ref".into(), json!({"$link": "not a cid"}));
                Value::Object(b)
            }),
        ),
        with(painting(), "remixOf", json!([])),
        with(
            without(mood(), "mood"),
            "text",
            json!(18446744073709551615u64),
        ),
        with(
            tape(),
            "video",
            json!({"$type": "blob", "ref": {"$link": CID}, "mimeType": "video/mp4", "size": -1}),
        ),
    ];
    let mut failures = Vec::new();
    for mode in [Mode::Standard, Mode::Strict, Mode::Lenient] {
        for (i, value) in odd.iter().enumerate() {
            for nsid in [
                "computer.aesthetic.painting",
                "computer.aesthetic.mood",
                "computer.aesthetic.tape",
            ] {
                if let Ok(v) = catalog.validate_record(nsid, value, mode) {
                    failures.push(format!(
                        "#{i} accepted as {nsid} in {mode:?}: {:?}",
                        v.record
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deep_recursive_data_hits_the_depth_limit_instead_of_the_stack() {
    let mut catalog = Catalog::new();
    catalog
        .add_json(
            r##"{"lexicon": 1, "id": "computer.aesthetic.test.tree", "defs": {
                "main": {"type": "record", "key": "any", "record": {"type": "object",
                    "properties": {"root": {"type": "ref", "ref": "#node"}}}},
                "node": {"type": "object", "properties": {"child": {"type": "ref", "ref": "#node"}}}
            }}"##,
        )
        .expect("a recursive schema is fine");
    let mut node = json!({});
    for _ in 0..1000 {
        node = json!({ "child": node });
    }
    let record = json!({"$type": "computer.aesthetic.test.tree", "root": node});
    let err = catalog
        .validate_record("computer.aesthetic.test.tree", &record, Mode::Standard)
        .expect_err("too deep");
    assert!(matches!(err.rule(), Some(Rule::TooDeep { .. })), "{err}");
}
