//! The TypeScript emitter: declarations (`.d.ts`) and NSID constants (`.js`) for AC's
//! JavaScript, which is plain ES modules without a build step.
//!
//! Each lexicon gets `ts/<nsid path>.d.ts` with its interfaces and `ts/<nsid path>.js` with its
//! constants, side by side, so JavaScript imports the `.js` file and its JSDoc names types with
//! `@typedef {import("…/painting.js").Painting}`. `ts/index.{js,d.ts}` re-export everything and
//! `ts/types.d.ts` declares the shared wire types (blob refs, CID links, bytes).
//!
//! An XRPC method (`query` or `procedure`) declares `<Name>Params`, `<Name>Input` and
//! `<Name>Output` interfaces (or aliases, for a body that is a ref), the `<Name>Error` union of
//! its error names, and an `ERRORS` constant listing them in the `.js` file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::lexicon::{Body, BodySchema, Def, DefKind, Lexicon, Object, Ref, Type, TypeKind, Xrpc};
use crate::naming::{pascal_case, screaming_snake_case};
use crate::text::comment;
use crate::{HEADER, TS_DIR};

/// Every TypeScript and JavaScript file, keyed by path relative to the lexicon root.
pub(crate) fn files(lexicons: &[Lexicon]) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for lex in lexicons {
        check_names(lex)?;
        let base = format!("{TS_DIR}/{}", lex.id.replace('.', "/"));
        files.insert(format!("{base}.d.ts"), declarations(lex, lexicons));
        files.insert(format!("{base}.js"), constants(lex));
    }
    files.insert(format!("{TS_DIR}/types.d.ts"), types_d_ts());
    files.insert(format!("{TS_DIR}/types.js"), types_js());
    files.insert(format!("{TS_DIR}/index.d.ts"), index_d_ts(lexicons));
    files.insert(format!("{TS_DIR}/index.js"), index_js(lexicons));
    files.insert(format!("{TS_DIR}/package.json"), package_json());
    Ok(files)
}

/// The TypeScript name of a def.
fn type_name(lex_name: &str, def: &Def) -> String {
    match def.kind {
        DefKind::Token => screaming_snake_case(&def.name),
        _ if def.name == "main" => pascal_case(lex_name),
        _ => pascal_case(&def.name),
    }
}

/// The name of the constant listing an XRPC method's error names.
const ERRORS: &str = "ERRORS";

/// The TypeScript types of an XRPC method named `lex_name`: `(params, input, output, error)`,
/// e.g. `GetFeedParams`, `GetFeedInput`, `GetFeedOutput` and `GetFeedError`; `params`,
/// `input` and `output` only when the method has them (with a schema, for bodies).
fn xrpc_names(
    lex_name: &str,
    x: &Xrpc,
) -> (Option<String>, Option<String>, Option<String>, String) {
    let base = pascal_case(lex_name);
    let typed = |body: &Option<Body>| body.as_ref().is_some_and(|b| b.schema.is_some());
    (
        x.params.as_ref().map(|_| format!("{base}Params")),
        typed(&x.input).then(|| format!("{base}Input")),
        typed(&x.output).then(|| format!("{base}Output")),
        format!("{base}Error"),
    )
}

/// The type names an XRPC method declares, in the order they are declared.
fn xrpc_type_names(lex_name: &str, x: &Xrpc) -> Vec<String> {
    let (params, input, output, error) = xrpc_names(lex_name, x);
    [params, input, output, Some(error)]
        .into_iter()
        .flatten()
        .collect()
}

/// Every name a def declares in its lexicon's files.
fn def_names(lex_name: &str, def: &Def) -> Vec<String> {
    match &def.kind {
        DefKind::Xrpc(x) => {
            let mut names = xrpc_type_names(lex_name, x);
            names.push(ERRORS.to_owned());
            names
        }
        _ => vec![type_name(lex_name, def)],
    }
}

/// The TypeScript name of the def a reference points at.
fn ref_name(r: &Ref, lexicons: &[Lexicon]) -> String {
    let lex = lexicons.iter().find(|l| l.id == r.nsid);
    let def = lex.and_then(|l| l.defs.iter().find(|d| d.name == r.def));
    match (lex, def) {
        (Some(lex), Some(def)) => type_name(lex.name(), def),
        _ => pascal_case(&r.def),
    }
}

/// Refuses lexicons whose defs would share a TypeScript name.
fn check_names(lex: &Lexicon) -> Result<()> {
    let mut seen = BTreeMap::new();
    for def in &lex.defs {
        for name in def_names(lex.name(), def) {
            if name == "NSID" {
                bail!("in {}: def `{}` would be named `NSID`", lex.file, def.name);
            }
            if let Some(other) = seen.insert(name.clone(), &def.name) {
                bail!(
                    "in {}: defs `{other}` and `{}` would both be named `{name}` in TypeScript",
                    lex.file,
                    def.name
                );
            }
        }
    }
    Ok(())
}

/// The path from the directory of `from_nsid`'s file to `to` (a path under `ts/`).
fn relative(from_nsid: &str, to: &str) -> String {
    let depth = from_nsid.split('.').count() - 1;
    if depth == 0 {
        format!("./{to}")
    } else {
        format!("{}{to}", "../".repeat(depth))
    }
}

/// The `// @generated` header and a module comment.
fn header(out: &mut String, text: &str) {
    out.push_str(HEADER);
    out.push('\n');
    out.push_str("/**\n");
    comment(out, " * ", &text.replace("*/", "*\\/"));
    out.push_str(" * @module\n */\n");
}

/// A JSDoc block from paragraphs, skipping empty ones.
fn jsdoc(out: &mut String, indent: &str, paragraphs: &[&str]) {
    let text = paragraphs
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.replace("*/", "*\\/"))
        .collect::<Vec<_>>()
        .join("\n\n");
    if text.is_empty() {
        return;
    }
    let one_line = format!("{indent}/** {text} */");
    if !text.contains('\n') && one_line.len() <= 96 {
        let _ = writeln!(out, "{one_line}");
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    comment(out, &format!("{indent} * "), &text);
    let _ = writeln!(out, "{indent} */");
}

/// The description of a lexicon for module comments.
fn title(lex: &Lexicon) -> String {
    let revision = lex
        .revision
        .map_or(String::new(), |r| format!(" (revision {r})"));
    let description = lex
        .description
        .as_deref()
        .map_or(String::new(), |d| format!(": {d}"));
    let mut title = format!(
        "`{}`{description}\n\nGenerated from `lexicons/{}`{revision}.",
        lex.id, lex.file
    );
    for def in &lex.defs {
        if let DefKind::Xrpc(x) = &def.kind {
            title.push_str("\n\n");
            title.push_str(&x.headline(&lex.id, def.description.as_deref()));
        }
    }
    title
}

/// Type imports of one declaration file, aliased when two would share a name.
struct Imports {
    /// Names the file declares itself, which imports must not shadow.
    reserved: BTreeSet<String>,
    /// Local name -> (imported name, module path).
    by_local: BTreeMap<String, (String, String)>,
}

impl Imports {
    /// The local name for `name` from `module`, importing it.
    fn name(&mut self, name: &str, module: &str, alias_prefix: &str) -> String {
        let mut local = name.to_owned();
        loop {
            if self.reserved.contains(&local) {
                local = format!("{alias_prefix}{local}");
                continue;
            }
            match self.by_local.get(&local) {
                None => {
                    self.by_local
                        .insert(local.clone(), (name.to_owned(), module.to_owned()));
                    return local;
                }
                Some((n, m)) if n == name && m == module => return local,
                Some(_) => local = format!("{alias_prefix}{local}"),
            }
        }
    }

    /// The `import type` lines, grouped by module.
    fn render(&self) -> String {
        let mut by_module: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (local, (name, module)) in &self.by_local {
            let item = if local == name {
                name.clone()
            } else {
                format!("{name} as {local}")
            };
            by_module.entry(module).or_default().push(item);
        }
        let mut out = String::new();
        for (module, items) in by_module {
            let _ = writeln!(
                out,
                "import type {{ {} }} from \"{module}\";",
                items.join(", ")
            );
        }
        out
    }
}

/// The TypeScript type of a field type.
fn ts_type(ty: &Type, lex: &Lexicon, lexicons: &[Lexicon], imports: &mut Imports) -> String {
    let shared = |imports: &mut Imports, name: &str| {
        imports.name(name, &relative(&lex.id, "types.js"), "Lexicon")
    };
    match &ty.kind {
        TypeKind::String => "string".to_owned(),
        TypeKind::Integer => "number".to_owned(),
        TypeKind::Boolean => "boolean".to_owned(),
        TypeKind::Blob => shared(imports, "BlobRef"),
        TypeKind::Bytes => shared(imports, "Bytes"),
        TypeKind::CidLink => shared(imports, "CidLink"),
        TypeKind::Unknown => "unknown".to_owned(),
        TypeKind::Array(items) => {
            format!("{}[]", ts_type(items, lex, lexicons, imports))
        }
        TypeKind::Ref(r) => {
            let name = ref_name(r, lexicons);
            if r.nsid == lex.id {
                return name;
            }
            let module = relative(&lex.id, &format!("{}.js", r.nsid.replace('.', "/")));
            let prefix = r.nsid.split('.').map(pascal_case).collect::<String>();
            imports.name(&name, &module, &prefix)
        }
    }
}

/// Whether `name` can be written as a bare property name.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The `.d.ts` file of one lexicon.
fn declarations(lex: &Lexicon, lexicons: &[Lexicon]) -> String {
    let mut imports = Imports {
        reserved: lex
            .defs
            .iter()
            .flat_map(|d| def_names(lex.name(), d))
            .chain(["NSID".to_owned()])
            .collect(),
        by_local: BTreeMap::new(),
    };
    let mut body = String::new();
    jsdoc(&mut body, "", &["The NSID of this lexicon."]);
    let _ = writeln!(body, "export declare const NSID: {:?};", lex.id);
    for def in &lex.defs {
        body.push('\n');
        let name = type_name(lex.name(), def);
        let full_ref = Ref {
            nsid: lex.id.clone(),
            def: def.name.clone(),
        }
        .display();
        let description = def.description.as_deref().unwrap_or("");
        match &def.kind {
            DefKind::Record { key, object } => {
                let note = format!("Record type `{}` (record key `{key}`).", lex.id);
                jsdoc(&mut body, "", &[description, &note]);
                let type_doc = format!("The record's type, `{}`.", lex.id);
                let field = format!("$type: {:?};", lex.id);
                interface(
                    &mut body,
                    &name,
                    Some((&type_doc, &field)),
                    object,
                    |ty, i| ts_type(ty, lex, lexicons, i),
                    &mut imports,
                );
            }
            DefKind::Object(object) => {
                let note = format!("Object type `{full_ref}`.");
                jsdoc(&mut body, "", &[description, &note]);
                let type_doc = format!("The object's type, `{full_ref}`, when it is given.");
                let field = format!("$type?: {full_ref:?};");
                interface(
                    &mut body,
                    &name,
                    Some((&type_doc, &field)),
                    object,
                    |ty, i| ts_type(ty, lex, lexicons, i),
                    &mut imports,
                );
            }
            DefKind::Token => {
                let note = format!("Token `{full_ref}`.");
                jsdoc(&mut body, "", &[description, &note]);
                let _ = writeln!(body, "export declare const {name}: {full_ref:?};");
            }
            DefKind::Alias(ty) => {
                let note = format!("Schema: {}.", ty.summary());
                jsdoc(&mut body, "", &[description, &note]);
                let ty = ts_type(ty, lex, lexicons, &mut imports);
                let _ = writeln!(body, "export type {name} = {ty};");
            }
            DefKind::Xrpc(x) => xrpc_declarations(&mut body, lex, x, lexicons, &mut imports),
        }
    }
    let mut out = String::new();
    header(&mut out, &title(lex));
    out.push('\n');
    let uses = imports.render();
    if !uses.is_empty() {
        out.push_str(&uses);
        out.push('\n');
    }
    out.push_str(&body);
    out
}

/// The declarations of an XRPC method: its params, input and output interfaces (or aliases),
/// the union of its error names and the `ERRORS` constant.
fn xrpc_declarations(
    out: &mut String,
    lex: &Lexicon,
    x: &Xrpc,
    lexicons: &[Lexicon],
    imports: &mut Imports,
) {
    let what = format!("{} `{}`", x.method.word(), lex.id);
    let (params_name, input_name, output_name, error_name) = xrpc_names(lex.name(), x);
    if let (Some(name), Some(params)) = (params_name, &x.params) {
        let note = format!("The parameters of {what}, sent in the URL query string.");
        jsdoc(out, "", &[&note]);
        interface(
            out,
            &name,
            None,
            params,
            |ty, i| ts_type(ty, lex, lexicons, i),
            imports,
        );
        out.push('\n');
    }
    for (name, what_body, body) in [
        (input_name, "request body", &x.input),
        (output_name, "response body", &x.output),
    ] {
        let (Some(name), Some(body)) = (name, body) else {
            continue;
        };
        let description = body.description.as_deref().unwrap_or("");
        let note = format!("The {what_body} of {what} (`{}`).", body.encoding);
        match &body.schema {
            Some(BodySchema::Object(object)) => {
                jsdoc(out, "", &[description, &note]);
                interface(
                    out,
                    &name,
                    None,
                    object,
                    |ty, i| ts_type(ty, lex, lexicons, i),
                    imports,
                );
            }
            Some(BodySchema::Ref(r)) => {
                let note = format!("{note} Schema: ref to `{}`.", r.display());
                jsdoc(out, "", &[description, &note]);
                let ty = Type {
                    kind: TypeKind::Ref(r.clone()),
                    constraints: Vec::new(),
                };
                let ty = ts_type(&ty, lex, lexicons, imports);
                let _ = writeln!(out, "export type {name} = {ty};");
            }
            None => continue,
        }
        out.push('\n');
    }
    let mut note = format!(
        "The name of an error {what} declares, as it appears in the `error` field of an XRPC \
         error response."
    );
    if !x.errors.is_empty() {
        note.push('\n');
        for e in &x.errors {
            let _ = write!(note, "\n- `{}`", e.name);
            if let Some(d) = e.description.as_deref().filter(|d| !d.trim().is_empty()) {
                let _ = write!(note, ": {}", d.replace('\n', " "));
            }
        }
    }
    jsdoc(out, "", &[&note]);
    let union = if x.errors.is_empty() {
        "never".to_owned()
    } else {
        x.errors
            .iter()
            .map(|e| format!("{:?}", e.name))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let _ = writeln!(out, "export type {error_name} = {union};");
    out.push('\n');
    jsdoc(out, "", &[&errors_doc(&what)]);
    let _ = writeln!(
        out,
        "export declare const {ERRORS}: readonly [{}];",
        error_list(x)
    );
}

/// The documentation of an XRPC method's `ERRORS` constant.
fn errors_doc(what: &str) -> String {
    format!("The names of the errors {what} declares.")
}

/// An XRPC method's error names as a comma-separated list of string literals.
fn error_list(x: &Xrpc) -> String {
    x.errors
        .iter()
        .map(|e| format!("{:?}", e.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Emits an interface: the `$type` member when given, then one member per property.
fn interface(
    out: &mut String,
    name: &str,
    type_member: Option<(&str, &str)>,
    object: &Object,
    mut ty: impl FnMut(&Type, &mut Imports) -> String,
    imports: &mut Imports,
) {
    let _ = writeln!(out, "export interface {name} {{");
    if let Some((type_doc, type_field)) = type_member {
        jsdoc(out, "  ", &[type_doc]);
        let _ = writeln!(out, "  {type_field}");
    }
    for prop in &object.properties {
        let summary = format!("Schema: {}.", prop.ty.summary());
        jsdoc(
            out,
            "  ",
            &[prop.description.as_deref().unwrap_or(""), &summary],
        );
        let key = if is_identifier(&prop.name) {
            prop.name.clone()
        } else {
            format!("{:?}", prop.name)
        };
        let optional = if prop.required { "" } else { "?" };
        let mut rendered = ty(&prop.ty, imports);
        if prop.nullable {
            rendered.push_str(" | null");
        }
        let _ = writeln!(out, "  {key}{optional}: {rendered};");
    }
    out.push_str("}\n");
}

/// The `.js` file of one lexicon: its NSID and token constants.
fn constants(lex: &Lexicon) -> String {
    let mut out = String::new();
    header(&mut out, &title(lex));
    out.push('\n');
    jsdoc(&mut out, "", &["The NSID of this lexicon."]);
    let _ = writeln!(out, "export const NSID = {:?};", lex.id);
    for def in &lex.defs {
        if let DefKind::Xrpc(x) = &def.kind {
            let what = format!("{} `{}`", x.method.word(), lex.id);
            out.push('\n');
            jsdoc(&mut out, "", &[&errors_doc(&what)]);
            let _ = writeln!(
                out,
                "export const {ERRORS} = Object.freeze([{}]);",
                error_list(x)
            );
        }
        if let DefKind::Token = def.kind {
            let full_ref = format!("{}#{}", lex.id, def.name);
            out.push('\n');
            jsdoc(
                &mut out,
                "",
                &[
                    def.description.as_deref().unwrap_or(""),
                    &format!("Token `{full_ref}`."),
                ],
            );
            let name = type_name(lex.name(), def);
            let _ = writeln!(out, "export const {name} = {full_ref:?};");
        }
    }
    out
}

/// The module namespace name of a lexicon in `index`, e.g. `ComputerAestheticPainting`.
fn namespace(lex: &Lexicon) -> String {
    lex.segments().into_iter().map(pascal_case).collect()
}

/// `index.d.ts`: every lexicon as a namespace, the main types by name where unambiguous, the
/// shared wire types, `AnyRecord` and `NSIDS`.
fn index_d_ts(lexicons: &[Lexicon]) -> String {
    let mut out = String::new();
    header(&mut out, INDEX_DOC);
    out.push('\n');
    for lex in lexicons {
        let _ = writeln!(
            out,
            "export * as {} from \"./{}.js\";",
            namespace(lex),
            lex.id.replace('.', "/")
        );
    }
    out.push('\n');
    out.push_str("export type { BlobRef, Bytes, CidLink } from \"./types.js\";\n");
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for lex in lexicons {
        *count.entry(pascal_case(lex.name())).or_default() += 1;
        for def in &lex.defs {
            if let DefKind::Xrpc(x) = &def.kind {
                for name in xrpc_type_names(lex.name(), x) {
                    *count.entry(name).or_default() += 1;
                }
            }
        }
    }
    let shared = |name: &str| matches!(name, "BlobRef" | "Bytes" | "CidLink" | "AnyRecord");
    let mut records = Vec::new();
    for lex in lexicons {
        let Some(main) = lex.defs.iter().find(|d| d.name == "main") else {
            continue;
        };
        let module = format!("./{}.js", lex.id.replace('.', "/"));
        if let DefKind::Xrpc(x) = &main.kind {
            let names: Vec<String> = xrpc_type_names(lex.name(), x)
                .into_iter()
                .filter(|name| count.get(name) == Some(&1) && !shared(name))
                .collect();
            if !names.is_empty() {
                let _ = writeln!(
                    out,
                    "export type {{ {} }} from \"{module}\";",
                    names.join(", ")
                );
            }
            continue;
        }
        if matches!(main.kind, DefKind::Token) {
            continue;
        }
        let name = type_name(lex.name(), main);
        if count.get(&name) == Some(&1) && !shared(&name) {
            let _ = writeln!(out, "export type {{ {name} }} from \"{module}\";");
        }
        if matches!(main.kind, DefKind::Record { .. }) {
            records.push(format!("import(\"{module}\").{name}"));
        }
    }
    out.push('\n');
    jsdoc(
        &mut out,
        "",
        &["Every record type declared under `lexicons/`, told apart by `$type`."],
    );
    if records.is_empty() {
        out.push_str("export type AnyRecord = never;\n");
    } else {
        out.push_str("export type AnyRecord =\n");
        for r in &records {
            let _ = writeln!(out, "  | {r}");
        }
        out.pop();
        out.push_str(";\n");
    }
    out.push('\n');
    jsdoc(&mut out, "", &["Every lexicon's NSID, sorted."]);
    out.push_str("export declare const NSIDS: readonly [\n");
    for lex in lexicons {
        let _ = writeln!(out, "  {:?},", lex.id);
    }
    out.push_str("];\n");
    out
}

/// `index.js`: every lexicon's constants as a namespace, and `NSIDS`.
fn index_js(lexicons: &[Lexicon]) -> String {
    let mut out = String::new();
    header(&mut out, INDEX_DOC);
    out.push('\n');
    for lex in lexicons {
        let _ = writeln!(
            out,
            "export * as {} from \"./{}.js\";",
            namespace(lex),
            lex.id.replace('.', "/")
        );
    }
    out.push('\n');
    jsdoc(&mut out, "", &["Every lexicon's NSID, sorted."]);
    out.push_str("export const NSIDS = Object.freeze([\n");
    for lex in lexicons {
        let _ = writeln!(out, "  {:?},", lex.id);
    }
    out.push_str("]);\n");
    out
}

/// The module comment of `index.js` and `index.d.ts`.
const INDEX_DOC: &str = "Types and NSID constants for every lexicon under `lexicons/`.\n\n\
    Each lexicon is a namespace named after its NSID (`ComputerAestheticPainting`); the main \
    type of each is also exported by name where that name is unique. From plain JavaScript: \
    `import { NSIDS } from \"./index.js\"` at run time, and a JSDoc \
    `@typedef {import(\"./index.js\").Painting} Painting` for types.";

/// `types.d.ts`: the wire types shared by every lexicon.
fn types_d_ts() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "Wire types of the ATProto data model shared by every lexicon: blob references, CID \
         links and bytes, in their JSON form.",
    );
    out.push_str(
        r#"
/** A link to content by CID, `{"$link": "bafy…"}`. */
export interface CidLink {
  /** The CID, as a base32 string. */
  $link: string;
}

/** A reference to a blob stored alongside a repository. */
export interface BlobRef {
  /** Always `"blob"`. */
  $type: "blob";
  /** The CID of the blob's content. */
  ref: CidLink;
  /** The MIME type the blob was uploaded with, such as `image/png`. */
  mimeType: string;
  /** The blob's size in bytes. */
  size: number;
}

/** Raw bytes, `{"$bytes": "…"}`. */
export interface Bytes {
  /** The bytes, as unpadded base64. */
  $bytes: string;
}
"#,
    );
    out
}

/// `types.js`: nothing at run time; it exists so `types.d.ts` has a module to describe.
fn types_js() -> String {
    let mut out = String::new();
    header(
        &mut out,
        "Wire types shared by every lexicon; see `types.d.ts`. Nothing exists at run time.",
    );
    out.push_str("\nexport {};\n");
    out
}

/// `package.json`: marks the `.js` files as ES modules and points at the declarations.
fn package_json() -> String {
    let comment = HEADER.trim_start_matches("// ");
    format!(
        r#"{{
  "//": "{comment}",
  "name": "@atelier/lexicons",
  "private": true,
  "type": "module",
  "types": "./index.d.ts",
  "exports": {{
    ".": {{
      "types": "./index.d.ts",
      "default": "./index.js"
    }},
    "./*.js": {{
      "types": "./*.d.ts",
      "default": "./*.js"
    }}
  }}
}}
"#
    )
}
