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

/// Files that list every lexicon and so change whenever one is added or removed: the
/// module tree, the embedded schemas, the TypeScript index and the reference page.
const INDEXES: &[&str] = &[
    "REFERENCE.md",
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
            "REFERENCE.md",
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
        "subscription",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {
            "type": "subscription"}}}"#,
        "`subscription` defs are not supported",
    ),
    (
        "query_param_is_a_ref",
        r##"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "parameters": {"type": "params", "properties": {
            "subject": {"type": "ref", "ref": "#view"}}}},
            "view": {"type": "object", "properties": {}}}}"##,
        "`parameters`: property `subject`: parameters can only be",
    ),
    (
        "query_params_not_params",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "parameters": {"type": "object", "properties": {}}}}}"#,
        "`parameters`: must be of type `params`",
    ),
    (
        "query_output_union",
        r##"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "output": {"encoding": "application/json",
            "schema": {"type": "union", "refs": ["#view"]}}},
            "view": {"type": "object", "properties": {}}}}"##,
        "`output`: `union` schemas are not supported",
    ),
    (
        "query_output_inline_object_property",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "output": {"encoding": "application/json", "schema": {"type": "object",
            "properties": {"nested": {"type": "object", "properties": {}}}}}}}}"#,
        "property `nested`: inline objects are not supported",
    ),
    (
        "query_with_input",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "input": {"encoding": "application/json"}}}}"#,
        "cannot declare `input`",
    ),
    (
        "schema_without_json",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {
            "type": "procedure", "input": {"encoding": "text/plain",
            "schema": {"type": "object", "properties": {}}}}}}"#,
        "`input`: a `schema` needs `encoding` `application/json`",
    ),
    (
        "query_not_main",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"get": {"type": "query"}}}"#,
        "def `get`: only `main` may be a query",
    ),
    (
        "ref_to_query",
        r##"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query"},
            "view": {"type": "object", "properties": {"q": {"type": "ref", "ref": "#main"}}}}}"##,
        "uses query `computer.aesthetic.thing` as a type",
    ),
    (
        "duplicate_error",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "errors": [{"name": "NotFound"}, {"name": "NotFound"}]}}}"#,
        "error `NotFound` is listed twice",
    ),
    (
        "def_named_like_an_xrpc_item",
        r#"{"lexicon": 1, "id": "computer.aesthetic.thing", "defs": {"main": {"type": "query",
            "output": {"encoding": "application/json", "schema": {"type": "object"}}},
            "output": {"type": "object", "properties": {}}}}"#,
        "would be named `Output` in Rust, which is taken",
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

/// A lexicon root of XRPC fixtures (queries, a procedure and the object defs they use) with
/// their generated output checked in beside them, under `src/generated/` and `ts/`.
fn xrpc_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xrpc")
}

/// The generated XRPC fixture output is current; `XTASK_BLESS=1 cargo test -p xtask` rewrites
/// it after an intended change to the emitters (review the diff).
#[test]
fn xrpc_fixture_output_is_current() {
    let root = xrpc_fixture();
    if std::env::var_os("XTASK_BLESS").is_some() {
        xtask::write(&root).unwrap();
    }
    let report = xtask::check(&root).unwrap();
    assert!(
        report.is_clean(),
        "the XRPC fixture output differs from the generator's (XTASK_BLESS=1 rewrites it):\n\
         {report}"
    );
}

/// Generated files of the XRPC fixtures and text each must contain: the shape of the output
/// pinned independently of the checked-in copy.
const XRPC_SHAPES: &[(&str, &[&str])] = &[
    (
        "src/generated/computer/aesthetic/feed/get_feed.rs",
        &[
            "//! Query `computer.aesthetic.feed.getFeed`, served at\n\
             //! `GET /xrpc/computer.aesthetic.feed.getFeed`: Gets an artist's feed, newest first.",
            "use crate::generated::computer::aesthetic::feed::defs::RecordView;\n",
            "pub const NSID: &str = \"computer.aesthetic.feed.getFeed\";",
            "#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]\n\
             #[serde(rename_all = \"camelCase\")]\npub struct Params {",
            "    /// Schema: `string`, `format: at-identifier`.\n    pub actor: String,",
            "    /// Schema: `integer`, `minimum: 1`, `maximum: 100`, `default: 50`.\n\
             \x20   #[serde(skip_serializing_if = \"Option::is_none\")]\n\
             \x20   pub limit: Option<i64>,",
            "pub include_hidden: Option<bool>,",
            "`knownValues: painting, tape, kidlisp`.",
            "pub kinds: Option<Vec<String>>,",
            "pub struct Output {",
            "pub feed: Vec<RecordView>,",
            "pub pinned: Option<RecordView>,",
            "pub debug: Option<serde_json::Value>,",
            "/// - `NotFound`: No artist has that handle or DID.\n/// - `BlockedActor`\n",
            "pub const ERRORS: &[&str] = &[\"NotFound\", \"BlockedActor\"];",
        ],
    ),
    (
        "src/generated/computer/aesthetic/feed/get_record.rs",
        &[
            "pub struct Params {",
            "pub uri: String,",
            "pub type Output = RecordView;",
            "pub const ERRORS: &[&str] = &[];",
        ],
    ),
    (
        "src/generated/computer/aesthetic/feed/get_archive.rs",
        &[
            "//! Its response body is `application/vnd.ipld.car`, with no schema",
            "pub const ERRORS: &[&str] = &[];",
        ],
    ),
    (
        "src/generated/computer/aesthetic/feed/hide.rs",
        &[
            "`POST /xrpc/computer.aesthetic.feed.hide`: Hides a record",
            "pub struct Params {",
            "pub dry_run: Option<bool>,",
            "pub struct Input {",
            "pub subject: StrongRef,",
            "pub struct Output {",
            "pub hidden: bool,",
        ],
    ),
    (
        "ts/computer/aesthetic/feed/getFeed.d.ts",
        &[
            "import type { RecordView } from \"../../../computer/aesthetic/feed/defs.js\";",
            "export interface GetFeedParams {",
            "  actor: string;",
            "  limit?: number;",
            "  includeHidden?: boolean;",
            "  kinds?: string[];",
            "export interface GetFeedOutput {",
            "  feed: RecordView[];",
            "  pinned?: RecordView;",
            "  debug?: unknown;",
            "export type GetFeedError = \"NotFound\" | \"BlockedActor\";",
            "export declare const ERRORS: readonly [\"NotFound\", \"BlockedActor\"];",
        ],
    ),
    (
        "ts/computer/aesthetic/feed/getFeed.js",
        &["export const ERRORS = Object.freeze([\"NotFound\", \"BlockedActor\"]);"],
    ),
    (
        "ts/computer/aesthetic/feed/getRecord.d.ts",
        &[
            "export type GetRecordOutput = RecordView;",
            "export type GetRecordError = never;",
        ],
    ),
    (
        "ts/computer/aesthetic/feed/hide.d.ts",
        &[
            "import type { StrongRef } from \"../../../com/atproto/repo/strongRef.js\";",
            "export interface HideInput {",
            "export interface HideOutput {",
        ],
    ),
    (
        "ts/index.d.ts",
        &[
            "export type { GetFeedParams, GetFeedOutput, GetFeedError } from \
             \"./computer/aesthetic/feed/getFeed.js\";",
        ],
    ),
];

#[test]
fn xrpc_output_has_the_expected_shape() {
    let generated = xtask::generate(&xrpc_fixture()).unwrap();
    for (path, snippets) in XRPC_SHAPES {
        let text = generated
            .get(Path::new(path))
            .unwrap_or_else(|| panic!("{path} is not generated"));
        for snippet in *snippets {
            assert!(
                text.contains(snippet),
                "{path} lacks\n{snippet}\n--- it reads ---\n{text}"
            );
        }
    }
}
