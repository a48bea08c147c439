//! Tests of `cargo xtask codegen`: the checked-in output is current, the check notices every
//! kind of drift (and `write` repairs it), and broken lexicons are refused with a useful error.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// A fresh, empty scratch directory for one test under Cargo's per-target temp directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("xtask-codegen")
        .join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies `from` to `to` recursively, leaving out hidden entries and `target`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A copy of this workspace's `lexicons/` (schemas and checked-in output) to break.
fn copy_of_lexicons(name: &str) -> PathBuf {
    let root = scratch(name).join("lexicons");
    copy_dir(&xtask::workspace_lexicons(), &root);
    root
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn paths(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

#[test]
fn checked_in_output_is_current() {
    let report = xtask::check(&xtask::workspace_lexicons()).unwrap();
    assert!(
        report.is_clean(),
        "the generated lexicon code is out of date:\n{report}"
    );
}

/// A change to a copy of `lexicons/` and the drift `check` must report for it.
struct Case {
    name: &'static str,
    edit: fn(&Path),
    stale: &'static [&'static str],
    missing: &'static [&'static str],
    extra: &'static [&'static str],
}

/// Files that list every lexicon and so change whenever one is added or removed.
const INDEXES: &[&str] = &[
    "src/generated/mod.rs",
    "src/generated/schemas.rs",
    "ts/index.d.ts",
    "ts/index.js",
];

const CASES: &[Case] = &[
    Case {
        name: "optional_field_added",
        edit: |root| {
            let path = root.join("computer/aesthetic/painting.json");
            let mut doc = read_json(&path);
            doc["defs"]["main"]["record"]["properties"]["title"] = json!({
                "type": "string",
                "maxLength": 300,
                "description": "A title the artist gave the painting.",
            });
            write_json(&path, &doc);
        },
        stale: &[
            "src/generated/computer/aesthetic/painting.rs",
            "ts/computer/aesthetic/painting.d.ts",
        ],
        missing: &[],
        extra: &[],
    },
    Case {
        name: "lexicon_description_changed",
        edit: |root| {
            let path = root.join("computer/aesthetic/mood.json");
            let mut doc = read_json(&path);
            doc["description"] = json!("A different description.");
            write_json(&path, &doc);
        },
        stale: &[
            "src/generated/computer/aesthetic/mood.rs",
            "ts/computer/aesthetic/mood.d.ts",
            "ts/computer/aesthetic/mood.js",
        ],
        missing: &[],
        extra: &[],
    },
    Case {
        name: "lexicon_added",
        edit: |root| {
            write_json(
                &root.join("computer/aesthetic/sketch.json"),
                &json!({
                    "lexicon": 1,
                    "id": "computer.aesthetic.sketch",
                    "description": "A sketch.",
                    "defs": {"main": {
                        "type": "record",
                        "key": "tid",
                        "description": "A sketch.",
                        "record": {"type": "object", "required": ["when"], "properties": {
                            "when": {"type": "string", "format": "datetime", "description": "When."},
                        }},
                    }},
                }),
            );
        },
        stale: INDEXES,
        missing: &[
            "src/generated/computer/aesthetic/sketch.rs",
            "ts/computer/aesthetic/sketch.d.ts",
            "ts/computer/aesthetic/sketch.js",
        ],
        extra: &[],
    },
    Case {
        name: "lexicon_removed",
        edit: |root| fs::remove_file(root.join("computer/aesthetic/paper.json")).unwrap(),
        stale: INDEXES,
        missing: &[],
        extra: &[
            "src/generated/computer/aesthetic/paper.rs",
            "ts/computer/aesthetic/paper.d.ts",
            "ts/computer/aesthetic/paper.js",
        ],
    },
    Case {
        name: "generated_file_edited_by_hand",
        edit: |root| {
            let path = root.join("src/generated/computer/aesthetic/tape.rs");
            let text = fs::read_to_string(&path).unwrap();
            fs::write(&path, text.replace("pub slug", "pub title")).unwrap();
        },
        stale: &["src/generated/computer/aesthetic/tape.rs"],
        missing: &[],
        extra: &[],
    },
    Case {
        name: "stray_files_in_output_dirs",
        edit: |root| {
            fs::write(root.join("src/generated/notes.rs"), "// mine\n").unwrap();
            fs::create_dir_all(root.join("ts/old")).unwrap();
            fs::write(root.join("ts/old/thing.d.ts"), "export {};\n").unwrap();
        },
        stale: &[],
        missing: &[],
        extra: &["src/generated/notes.rs", "ts/old/thing.d.ts"],
    },
];

#[test]
fn check_reports_exactly_the_files_a_change_affects() {
    for case in CASES {
        let root = copy_of_lexicons(case.name);
        let before = xtask::check(&root).unwrap();
        assert!(
            before.is_clean(),
            "{}: copy not clean:\n{before}",
            case.name
        );

        (case.edit)(&root);
        let report = xtask::check(&root).unwrap();
        assert_eq!(
            report.stale,
            paths(case.stale),
            "{}: stale\n{report}",
            case.name
        );
        assert_eq!(
            report.missing,
            paths(case.missing),
            "{}: missing",
            case.name
        );
        assert_eq!(report.extra, paths(case.extra), "{}: extra", case.name);
        assert!(
            report.to_string().contains("cargo xtask codegen"),
            "{}: the report must say how to fix it:\n{report}",
            case.name
        );

        let written = xtask::write(&root).unwrap();
        assert_eq!(
            written, report,
            "{}: write must fix what check found",
            case.name
        );
        let after = xtask::check(&root).unwrap();
        assert!(
            after.is_clean(),
            "{}: still stale after write:\n{after}",
            case.name
        );
        assert!(
            !root.join("ts/old").exists(),
            "{}: emptied directories are removed",
            case.name
        );
    }
}

#[test]
fn generation_is_deterministic() {
    let root = xtask::workspace_lexicons();
    assert_eq!(
        xtask::generate(&root).unwrap(),
        xtask::generate(&root).unwrap()
    );
}

/// Lexicon files the generator must refuse, with a phrase its error must contain.
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "unresolved_ref",
        r##"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "record",
            "key": "tid", "record": {"type": "object", "properties": {
            "other": {"type": "ref", "ref": "computer.aesthetic.missing"}}}}}}"##,
        "refers to `computer.aesthetic.missing`",
    ),
    (
        "path_disagrees_with_id",
        r#"{"lexicon": 1, "id": "computer.aesthetic.other", "defs": {}}"#,
        "must be at computer/aesthetic/other.json",
    ),
    (
        "union",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "object",
            "properties": {"u": {"type": "union", "refs": []}}}}}"#,
        "`union` types are not supported",
    ),
    (
        "not_a_lexicon",
        r#"{"name": "fixture"}"#,
        "`lexicon` must be 1",
    ),
    (
        "required_is_not_a_property",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "object",
            "required": ["ghost"], "properties": {}}}}"#,
        "`ghost` is listed in `required`",
    ),
];

#[test]
fn broken_lexicons_are_refused_with_their_location() {
    for (name, text, expected) in BROKEN {
        let root = scratch(&format!("broken-{name}"));
        fs::create_dir_all(root.join("computer/aesthetic")).unwrap();
        fs::write(root.join("computer/aesthetic/thing.json"), text).unwrap();
        let error = format!("{:#}", xtask::generate(&root).unwrap_err());
        assert!(error.contains(expected), "{name}: {error}");
        assert!(
            error.contains("thing.json"),
            "{name}: no file named in {error}"
        );
    }
}
