//! The Rust emitter: one module per lexicon under `src/generated/`, the module tree in
//! `mod.rs`, and `schemas.rs` embedding every lexicon document.
//!
//! An XRPC method (`query` or `procedure`) is not a type: its module holds a `Params` struct
//! (URL query parameters), `Input` and `Output` (request and response bodies: a struct for an
//! inline object, an alias for a ref) when the lexicon declares them, and `ERRORS`, the names
//! of the errors it declares.
//!
//! The output is plain text; `lib.rs` runs it through rustfmt so that what is checked in is
//! exactly what `cargo fmt` would produce.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{Result, bail};

use crate::lexicon::{
    Body, BodySchema, Def, DefKind, Lexicon, Method, Object, Property, Ref, Type, TypeKind, Xrpc,
};
use crate::naming::{pascal_case, rust_ident, screaming_snake_case, serde_camel_case, snake_case};
use crate::text::comment;
use crate::{GENERATED_DIR, HEADER};

/// Every Rust file, unformatted, keyed by path relative to the lexicon root.
pub(crate) fn files(lexicons: &[Lexicon]) -> Result<BTreeMap<String, String>> {
    let names = TypeNames::new(lexicons)?;
    let mut files = BTreeMap::new();
    for lex in lexicons {
        files.insert(module_file(lex), lexicon_module(lex, &names)?);
    }
    files.insert(format!("{GENERATED_DIR}/mod.rs"), mod_rs(lexicons)?);
    files.insert(format!("{GENERATED_DIR}/schemas.rs"), schemas_rs(lexicons));
    Ok(files)
}

/// The module path of a lexicon, e.g. `["com", "atproto", "repo", "strong_ref"]`.
fn module_path(nsid: &str) -> Vec<String> {
    nsid.split('.')
        .map(|seg| rust_ident(&snake_case(seg)))
        .collect()
}

/// The file a lexicon's module lives in, e.g. `src/generated/com/atproto/repo/strong_ref.rs`.
fn module_file(lex: &Lexicon) -> String {
    let path: Vec<String> = module_path(&lex.id)
        .iter()
        .map(|m| m.trim_start_matches("r#").to_owned())
        .collect();
    format!("{GENERATED_DIR}/{}.rs", path.join("/"))
}

/// The names of the XRPC items in a method's module.
const PARAMS: &str = "Params";
const INPUT: &str = "Input";
const OUTPUT: &str = "Output";
const ERRORS: &str = "ERRORS";

/// The body of an XRPC method that has a schema, and so a type.
fn typed(body: Option<&Body>) -> Option<(&Body, &BodySchema)> {
    body.and_then(|b| b.schema.as_ref().map(|s| (b, s)))
}

/// The names a def declares in its lexicon's module: one type or constant for most defs, the
/// `Params`/`Input`/`Output` types and `ERRORS` for an XRPC method.
fn def_items(lex: &Lexicon, def: &Def) -> Vec<String> {
    match &def.kind {
        DefKind::Token => vec![rust_ident(&screaming_snake_case(&def.name))],
        DefKind::Xrpc(x) => {
            let mut items = Vec::new();
            if x.params.is_some() {
                items.push(PARAMS.to_owned());
            }
            if typed(x.input.as_ref()).is_some() {
                items.push(INPUT.to_owned());
            }
            if typed(x.output.as_ref()).is_some() {
                items.push(OUTPUT.to_owned());
            }
            items.push(ERRORS.to_owned());
            items
        }
        _ if def.name == "main" => vec![rust_ident(&pascal_case(lex.name()))],
        _ => vec![rust_ident(&pascal_case(&def.name))],
    }
}

/// The Rust name of every def's type (XRPC methods, which are not types, have none).
struct TypeNames(BTreeMap<(String, String), String>);

impl TypeNames {
    /// Names every def, refusing two defs of one lexicon that would share a name.
    fn new(lexicons: &[Lexicon]) -> Result<Self> {
        let mut names = BTreeMap::new();
        for lex in lexicons {
            let mut seen = BTreeSet::new();
            for def in &lex.defs {
                let items = def_items(lex, def);
                for name in &items {
                    if !seen.insert(name.clone()) || name == "NSID" {
                        bail!(
                            "in {}: def `{}` would be named `{name}` in Rust, which is taken",
                            lex.file,
                            def.name
                        );
                    }
                }
                if !matches!(def.kind, DefKind::Xrpc(_)) {
                    let name = items.into_iter().next().unwrap_or_default();
                    names.insert((lex.id.clone(), def.name.clone()), name);
                }
            }
        }
        Ok(TypeNames(names))
    }

    /// The type name of a def.
    fn get(&self, nsid: &str, def: &str) -> &str {
        self.0
            .get(&(nsid.to_owned(), def.to_owned()))
            .map_or("", String::as_str)
    }
}

/// The imports of one generated module: other lexicons' types are imported by name unless the
/// name is taken, in which case they are written with their full path.
struct Imports<'a> {
    /// The lexicon being generated.
    nsid: &'a str,
    /// Names already used in the module (its own defs) or imported, with what they import.
    taken: BTreeMap<String, Option<String>>,
    /// Whether `Serialize`/`Deserialize` are needed.
    serde: bool,
}

impl<'a> Imports<'a> {
    fn new(lex: &'a Lexicon) -> Self {
        let taken = lex
            .defs
            .iter()
            .flat_map(|d| def_items(lex, d))
            .map(|name| (name, None))
            .chain([("NSID".to_owned(), None)])
            .collect();
        Imports {
            nsid: &lex.id,
            taken,
            serde: false,
        }
    }

    /// The name to write for `name` found at `path`, importing it if it is free.
    fn name(&mut self, path: &str, name: &str) -> String {
        let full = format!("{path}::{name}");
        match self.taken.get(name) {
            None => {
                self.taken.insert(name.to_owned(), Some(full));
                name.to_owned()
            }
            Some(Some(existing)) if *existing == full => name.to_owned(),
            Some(_) => full,
        }
    }

    /// The Rust type for a reference.
    fn reference(&mut self, r: &Ref, names: &TypeNames) -> String {
        let name = names.get(&r.nsid, &r.def);
        if r.nsid == self.nsid {
            return name.to_owned();
        }
        let path = format!("crate::generated::{}", module_path(&r.nsid).join("::"));
        self.name(&path, name)
    }

    /// The `use` lines.
    fn render(&self) -> String {
        let mut out = String::new();
        if self.serde {
            out.push_str("use serde::{Deserialize, Serialize};\n");
        }
        for full in self.taken.values().flatten() {
            let _ = writeln!(out, "use {full};");
        }
        out
    }
}

/// The Rust type of a field type.
fn rust_type(ty: &Type, imports: &mut Imports<'_>, names: &TypeNames) -> String {
    match &ty.kind {
        TypeKind::String => "String".to_owned(),
        TypeKind::Integer => "i64".to_owned(),
        TypeKind::Boolean => "bool".to_owned(),
        TypeKind::Blob => imports.name("crate::types", "BlobRef"),
        TypeKind::Bytes => imports.name("crate::types", "Bytes"),
        TypeKind::CidLink => imports.name("crate::types", "CidLink"),
        TypeKind::Unknown => "serde_json::Value".to_owned(),
        TypeKind::Array(items) => format!("Vec<{}>", rust_type(items, imports, names)),
        TypeKind::Ref(r) => imports.reference(r, names),
    }
}

/// The module of one lexicon.
fn lexicon_module(lex: &Lexicon, names: &TypeNames) -> Result<String> {
    let mut imports = Imports::new(lex);
    let mut body = String::new();
    comment(&mut body, "/// ", "The NSID of this lexicon.");
    let _ = writeln!(body, "pub const NSID: &str = {:?};", lex.id);
    for def in &lex.defs {
        body.push('\n');
        emit_def(&mut body, lex, def, names, &mut imports)?;
    }

    let mut out = format!("{HEADER}\n");
    let title = match &lex.description {
        Some(d) => format!("`{}`: {d}", lex.id),
        None => format!("`{}`.", lex.id),
    };
    comment(&mut out, "//! ", &title);
    out.push_str("//!\n");
    let revision = lex
        .revision
        .map_or(String::new(), |r| format!(" (revision {r})"));
    comment(
        &mut out,
        "//! ",
        &format!("Generated from `lexicons/{}`{revision}.", lex.file),
    );
    for def in &lex.defs {
        if let DefKind::Xrpc(x) = &def.kind {
            out.push_str("//!\n");
            comment(&mut out, "//! ", &xrpc_module_doc(lex, def, x));
        }
    }
    out.push('\n');
    let uses = imports.render();
    if !uses.is_empty() {
        out.push_str(&uses);
        out.push('\n');
    }
    out.push_str(&body);
    Ok(out)
}

/// The derives every generated struct carries.
const DERIVES: &str = "#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]";

/// Emits one def.
fn emit_def(
    out: &mut String,
    lex: &Lexicon,
    def: &Def,
    names: &TypeNames,
    imports: &mut Imports<'_>,
) -> Result<()> {
    let name = names.get(&lex.id, &def.name);
    let full_ref = Ref {
        nsid: lex.id.clone(),
        def: def.name.clone(),
    }
    .display();
    let description = def.description.as_deref().unwrap_or("");
    match &def.kind {
        DefKind::Record { key, object } => {
            imports.serde = true;
            let note = format!(
                "Record type `{}` (record key `{key}`). It serializes with `\"$type\": \"{}\"` \
                 (reading does not check `$type`: the collection decides the type and the \
                 validator checks it) and implements [`crate::types::Record`].",
                lex.id, lex.id
            );
            doc(out, "", &[description, &note]);
            let _ = writeln!(out, "{DERIVES}");
            let _ = writeln!(
                out,
                "#[serde(tag = \"$type\", rename = {:?}, rename_all = \"camelCase\")]",
                lex.id
            );
            emit_struct(out, name, object, names, imports);
            let _ = writeln!(
                out,
                "\nimpl {name} {{\n\
                 /// The NSID of the record's collection, also its `$type`.\n\
                 pub const NSID: &str = NSID;\n\
                 }}\n\n\
                 impl crate::types::Record for {name} {{\n\
                 const NSID: &'static str = NSID;\n\
                 }}"
            );
        }
        DefKind::Object(object) => {
            imports.serde = true;
            let note = format!("Object type `{full_ref}`.");
            doc(out, "", &[description, &note]);
            let _ = writeln!(out, "{DERIVES}");
            let _ = writeln!(out, "#[serde(rename_all = \"camelCase\")]");
            emit_struct(out, name, object, names, imports);
        }
        DefKind::Token => {
            let note = format!("Token `{full_ref}`.");
            doc(out, "", &[description, &note]);
            let _ = writeln!(out, "pub const {name}: &str = {full_ref:?};");
        }
        DefKind::Alias(ty) => {
            let note = format!("Schema: {}.", ty.summary());
            doc(out, "", &[description, &note]);
            let _ = writeln!(out, "pub type {name} = {};", rust_type(ty, imports, names));
        }
        DefKind::Xrpc(x) => emit_xrpc(out, lex, x, names, imports),
    }
    Ok(())
}

/// The module documentation of an XRPC method: what it is and which items stand for what.
fn xrpc_module_doc(lex: &Lexicon, def: &Def, x: &Xrpc) -> String {
    let head = x.headline(&lex.id, def.description.as_deref());
    let mut parts = Vec::new();
    if x.params.is_some() {
        parts.push(format!("[`{PARAMS}`] holds its URL query parameters."));
    }
    for (item, what, body) in [
        (INPUT, "request", x.input.as_ref()),
        (OUTPUT, "response", x.output.as_ref()),
    ] {
        match body {
            Some(Body {
                encoding,
                schema: Some(_),
                ..
            }) => parts.push(format!("[`{item}`] is its {what} body (`{encoding}`).")),
            Some(Body { encoding, .. }) => parts.push(format!(
                "Its {what} body is `{encoding}`, with no schema to generate a type from."
            )),
            None if what == "request" && x.method == Method::Query => {}
            None => parts.push(format!("It declares no {what} body.")),
        }
    }
    parts.push(format!(
        "[`{ERRORS}`] lists the names of the errors it declares."
    ));
    format!("{head}\n\n{}", parts.join(" "))
}

/// Emits the items of an XRPC method: `Params`, `Input`, `Output` and `ERRORS`.
fn emit_xrpc(
    out: &mut String,
    lex: &Lexicon,
    x: &Xrpc,
    names: &TypeNames,
    imports: &mut Imports<'_>,
) {
    let what = format!("{} `{}`", x.method.word(), lex.id);
    if let Some(params) = &x.params {
        imports.serde = true;
        let note = format!(
            "The parameters of {what}, sent in the URL query string. Each field serializes \
             under its lexicon name; absent optional ones are left out."
        );
        doc(out, "", &[&note]);
        let _ = writeln!(out, "{DERIVES}");
        let _ = writeln!(out, "#[serde(rename_all = \"camelCase\")]");
        emit_struct(out, PARAMS, params, names, imports);
        out.push('\n');
    }
    for (item, what_body, body) in [
        (INPUT, "request body", x.input.as_ref()),
        (OUTPUT, "response body", x.output.as_ref()),
    ] {
        let Some((body, schema)) = typed(body) else {
            continue;
        };
        let description = body.description.as_deref().unwrap_or("");
        let note = format!("The {what_body} of {what} (`{}`).", body.encoding);
        match schema {
            BodySchema::Object(object) => {
                imports.serde = true;
                doc(out, "", &[description, &note]);
                let _ = writeln!(out, "{DERIVES}");
                let _ = writeln!(out, "#[serde(rename_all = \"camelCase\")]");
                emit_struct(out, item, object, names, imports);
            }
            BodySchema::Ref(r) => {
                let note = format!("{note} Schema: ref to `{}`.", r.display());
                doc(out, "", &[description, &note]);
                let ty = imports.reference(r, names);
                let _ = writeln!(out, "pub type {item} = {ty};");
            }
        }
        out.push('\n');
    }
    let mut note = format!(
        "The names of the errors {what} declares, as they appear in the `error` field of an \
         XRPC error response."
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
    doc(out, "", &[&note]);
    let list = x
        .errors
        .iter()
        .map(|e| format!("{:?}", e.name))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "pub const {ERRORS}: &[&str] = &[{list}];");
}

/// Emits a struct with one field per property.
fn emit_struct(
    out: &mut String,
    name: &str,
    object: &Object,
    names: &TypeNames,
    imports: &mut Imports<'_>,
) {
    let _ = writeln!(out, "pub struct {name} {{");
    for prop in &object.properties {
        emit_field(out, prop, names, imports);
    }
    out.push_str("}\n");
}

/// Emits one struct field.
fn emit_field(out: &mut String, prop: &Property, names: &TypeNames, imports: &mut Imports<'_>) {
    let ident = rust_ident(&snake_case(&prop.name));
    let ty = rust_type(&prop.ty, imports, names);
    let summary = format!("Schema: {}.", prop.ty.summary());
    doc(
        out,
        "    ",
        &[prop.description.as_deref().unwrap_or(""), &summary],
    );
    let mut attrs = Vec::new();
    if serde_camel_case(&ident) != prop.name {
        attrs.push(format!("rename = {:?}", prop.name));
    }
    let optional = !prop.required || prop.nullable;
    if !prop.required {
        attrs.push("skip_serializing_if = \"Option::is_none\"".to_owned());
    }
    if !attrs.is_empty() {
        let _ = writeln!(out, "    #[serde({})]", attrs.join(", "));
    }
    if optional {
        let _ = writeln!(out, "    pub {ident}: Option<{ty}>,");
    } else {
        let _ = writeln!(out, "    pub {ident}: {ty},");
    }
}

/// Writes a doc comment from paragraphs, skipping empty ones.
fn doc(out: &mut String, indent: &str, paragraphs: &[&str]) {
    let text = paragraphs
        .iter()
        .filter(|p| !p.trim().is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("\n\n");
    comment(out, &format!("{indent}/// "), &text);
}

/// A node of the module tree: its child modules, and whether it is itself a lexicon file.
#[derive(Default)]
struct ModuleNode {
    children: BTreeMap<String, ModuleNode>,
    /// The NSID of the lexicon this module holds, for leaves.
    lexicon: Option<String>,
    /// The NSID prefix this module stands for, e.g. `computer.aesthetic`.
    prefix: String,
}

/// `mod.rs`: the module tree, with `schemas` first.
fn mod_rs(lexicons: &[Lexicon]) -> Result<String> {
    let mut root = ModuleNode::default();
    for lex in lexicons {
        let mut node = &mut root;
        let path = module_path(&lex.id);
        let segments = lex.segments();
        for (i, module) in path.iter().enumerate() {
            node = node.children.entry(module.clone()).or_default();
            let prefix = segments[..=i].join(".");
            if !node.prefix.is_empty() && node.prefix != prefix {
                bail!(
                    "`{prefix}` and `{}` would share the Rust module `{module}`",
                    node.prefix
                );
            }
            node.prefix = prefix;
        }
        node.lexicon = Some(lex.id.clone());
    }
    let mut out = format!("{HEADER}\n");
    comment(
        &mut out,
        "//! ",
        "Rust types generated from the lexicons under `lexicons/`, one module per NSID.\n\n\
         A lexicon's module mirrors its NSID (`computer.aesthetic.painting` is \
         `computer::aesthetic::painting`) and holds an `NSID` constant and one type per def: \
         the `main` def's type is named after the NSID's last segment \
         (`computer::aesthetic::painting::Painting`), other defs after their own name. Record types serialize with their `$type`, carry an \
         associated `NSID` and implement [`crate::types::Record`]. [`schemas::SCHEMAS`] embeds \
         the lexicon documents themselves.\n\n\
         Regenerate with `cargo xtask codegen`; `cargo xtask codegen --check` (also run by the \
         xtask tests) fails when this tree is out of date.",
    );
    out.push_str("\npub mod schemas;\n\n");
    emit_tree(&mut out, &root)?;
    Ok(out)
}

/// Emits the child modules of `node`.
fn emit_tree(out: &mut String, node: &ModuleNode) -> Result<()> {
    for (module, child) in &node.children {
        match (&child.lexicon, child.children.is_empty()) {
            (Some(_), true) => {
                let _ = writeln!(out, "pub mod {module};");
            }
            (None, false) => {
                let _ = writeln!(out, "pub mod {module} {{");
                comment(
                    out,
                    "//! ",
                    &format!("Lexicons under `{}.*`.", child.prefix),
                );
                emit_tree(out, child)?;
                out.push_str("}\n");
            }
            (Some(nsid), false) => bail!(
                "`{nsid}` is both a lexicon and the prefix of others, which the module tree \
                 cannot hold"
            ),
            (None, true) => {}
        }
    }
    Ok(())
}

/// `schemas.rs`: every lexicon document, embedded with `include_str!`.
fn schemas_rs(lexicons: &[Lexicon]) -> String {
    let mut out = format!("{HEADER}\n");
    comment(
        &mut out,
        "//! ",
        "The lexicon documents themselves, embedded so that they are available offline.",
    );
    out.push('\n');
    comment(
        &mut out,
        "/// ",
        "Every lexicon document under `lexicons/`, as `(NSID, JSON text)`, sorted by NSID.",
    );
    out.push_str("pub static SCHEMAS: &[(&str, &str)] = &[\n");
    let up = "../".repeat(GENERATED_DIR.split('/').count());
    for lex in lexicons {
        let _ = writeln!(
            out,
            "    ({:?}, include_str!(\"{up}{}\")),",
            lex.id, lex.file
        );
    }
    out.push_str("];\n");
    out
}
