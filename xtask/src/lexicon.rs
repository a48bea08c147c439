//! Reading lexicon documents into the small model the emitters work from.
//!
//! The JSON is walked by hand (with `serde_json::Value`) rather than through
//! `atelier-lexicons`, so that code generation never depends on its own output. Only what the
//! emitters need is kept; everything unsupported is refused with an error naming the file, the
//! def and the property, so a new lexicon feature fails loudly instead of generating wrong types.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value};

/// Top-level directories of `lexicons/` that hold code, not lexicon documents.
const NOT_LEXICON_DIRS: &[&str] = &[
    "benches",
    "examples",
    "fixtures",
    "node_modules",
    "src",
    "target",
    "testdata",
    "tests",
    "ts",
];

/// One lexicon document.
#[derive(Debug)]
pub(crate) struct Lexicon {
    /// The NSID, e.g. `computer.aesthetic.painting`.
    pub(crate) id: String,
    /// The document's `revision`, when it has one.
    pub(crate) revision: Option<u64>,
    /// The document-level description.
    pub(crate) description: Option<String>,
    /// Path of the JSON file relative to the lexicon root, with `/` separators.
    pub(crate) file: String,
    /// The defs, `main` first and then by name.
    pub(crate) defs: Vec<Def>,
}

impl Lexicon {
    /// The NSID's segments, e.g. `["computer", "aesthetic", "painting"]`.
    pub(crate) fn segments(&self) -> Vec<&str> {
        self.id.split('.').collect()
    }

    /// The NSID's last segment, which names the `main` def's type.
    pub(crate) fn name(&self) -> &str {
        self.id.rsplit('.').next().unwrap_or(&self.id)
    }
}

/// One named definition in a lexicon.
#[derive(Debug)]
pub(crate) struct Def {
    /// The def's name (`main` or a local name such as `source`).
    pub(crate) name: String,
    /// The def's description.
    pub(crate) description: Option<String>,
    /// What the def declares.
    pub(crate) kind: DefKind,
}

/// What a def declares.
#[derive(Debug)]
pub(crate) enum DefKind {
    /// A record type stored in repositories under a collection of the lexicon's NSID.
    Record {
        /// The record key type, e.g. `tid`.
        key: String,
        /// The record's fields.
        object: Object,
    },
    /// A named object type.
    Object(Object),
    /// A token: a named value with no data, used in `knownValues`.
    Token,
    /// A named non-object type (a string, array...), generated as a type alias.
    Alias(Type),
    /// An XRPC method: a `query` (HTTP GET) or a `procedure` (HTTP POST).
    Xrpc(Xrpc),
}

/// An XRPC method (`query` or `procedure`), which is always a lexicon's `main` def.
#[derive(Debug)]
pub(crate) struct Xrpc {
    /// Whether it is a query or a procedure.
    pub(crate) method: Method,
    /// The URL query parameters, when the method declares `parameters`.
    pub(crate) params: Option<Object>,
    /// The request body (procedures only).
    pub(crate) input: Option<Body>,
    /// The response body.
    pub(crate) output: Option<Body>,
    /// The errors the method declares, in the lexicon's order.
    pub(crate) errors: Vec<XrpcError>,
}

/// The two kinds of XRPC methods this generator handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `"type": "query"`, an HTTP GET.
    Query,
    /// `"type": "procedure"`, an HTTP POST.
    Procedure,
}

impl Method {
    /// The lexicon's word for the method: `query` or `procedure`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Method::Query => "query",
            Method::Procedure => "procedure",
        }
    }

    /// The HTTP method: `GET` or `POST`.
    pub(crate) fn http(self) -> &'static str {
        match self {
            Method::Query => "GET",
            Method::Procedure => "POST",
        }
    }
}

/// The request or response body of an XRPC method.
#[derive(Debug)]
pub(crate) struct Body {
    /// The MIME type, e.g. `application/json`.
    pub(crate) encoding: String,
    /// The body's description.
    pub(crate) description: Option<String>,
    /// The JSON schema of the body, when it has one.
    pub(crate) schema: Option<BodySchema>,
}

/// The schema of a JSON body.
#[derive(Debug)]
pub(crate) enum BodySchema {
    /// An object declared inline.
    Object(Object),
    /// A reference to an object (or other) def.
    Ref(Ref),
}

/// One error an XRPC method declares.
#[derive(Debug)]
pub(crate) struct XrpcError {
    /// The error's name, e.g. `NotFound`.
    pub(crate) name: String,
    /// The error's description.
    pub(crate) description: Option<String>,
}

impl Xrpc {
    /// The first sentence of the method's documentation: what it is, where it is served and
    /// its description, e.g. ``Query `a.b.c`, served at `GET /xrpc/a.b.c`: Gets things.``
    pub(crate) fn headline(&self, nsid: &str, description: Option<&str>) -> String {
        let word = match self.method {
            Method::Query => "Query",
            Method::Procedure => "Procedure",
        };
        let http = self.method.http();
        match description.filter(|d| !d.trim().is_empty()) {
            Some(d) => format!("{word} `{nsid}`, served at `{http} /xrpc/{nsid}`: {d}"),
            None => format!("{word} `{nsid}`, served at `{http} /xrpc/{nsid}`."),
        }
    }

    /// Every reference the method's bodies contain.
    pub(crate) fn refs(&self) -> Vec<&Ref> {
        let params = self.params.iter().flat_map(|p| p.refs());
        let bodies = [&self.input, &self.output]
            .into_iter()
            .flatten()
            .flat_map(|b| match &b.schema {
                None => Vec::new(),
                Some(BodySchema::Ref(r)) => vec![r],
                Some(BodySchema::Object(o)) => o.refs(),
            });
        params.chain(bodies).collect()
    }
}

/// The fields of an object or record.
#[derive(Debug)]
pub(crate) struct Object {
    /// The properties, sorted by name.
    pub(crate) properties: Vec<Property>,
}

impl Object {
    /// Every reference the object's properties contain.
    pub(crate) fn refs(&self) -> Vec<&Ref> {
        self.properties.iter().flat_map(|p| p.ty.refs()).collect()
    }
}

/// One property of an object.
#[derive(Debug)]
pub(crate) struct Property {
    /// The JSON name.
    pub(crate) name: String,
    /// The property's description.
    pub(crate) description: Option<String>,
    /// Whether the property is in the object's `required` list.
    pub(crate) required: bool,
    /// Whether the property is in the object's `nullable` list.
    pub(crate) nullable: bool,
    /// The property's type.
    pub(crate) ty: Type,
}

/// A field type, with its constraints written out for documentation.
#[derive(Debug)]
pub(crate) struct Type {
    /// The shape of the value.
    pub(crate) kind: TypeKind,
    /// Constraints such as `maxLength: 512`, in the order the emitters print them.
    pub(crate) constraints: Vec<String>,
}

/// The shape of a value.
#[derive(Debug)]
pub(crate) enum TypeKind {
    String,
    Integer,
    Boolean,
    Blob,
    Bytes,
    CidLink,
    Unknown,
    Array(Box<Type>),
    Ref(Ref),
}

/// A resolved reference to a def.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ref {
    /// NSID of the lexicon that holds the def.
    pub(crate) nsid: String,
    /// Name of the def in that lexicon.
    pub(crate) def: String,
}

impl Type {
    /// Every reference the type contains.
    pub(crate) fn refs(&self) -> Vec<&Ref> {
        match &self.kind {
            TypeKind::Ref(r) => vec![r],
            TypeKind::Array(items) => items.refs(),
            _ => Vec::new(),
        }
    }

    /// A one-line summary for doc comments: the type and its constraints.
    pub(crate) fn summary(&self) -> String {
        let head = match &self.kind {
            TypeKind::String => "`string`".to_owned(),
            TypeKind::Integer => "`integer`".to_owned(),
            TypeKind::Boolean => "`boolean`".to_owned(),
            TypeKind::Blob => "`blob`".to_owned(),
            TypeKind::Bytes => "`bytes`".to_owned(),
            TypeKind::CidLink => "`cid-link`".to_owned(),
            TypeKind::Unknown => "`unknown`".to_owned(),
            TypeKind::Array(_) => "`array`".to_owned(),
            TypeKind::Ref(r) => format!("ref to `{}`", r.display()),
        };
        let mut parts = vec![head];
        parts.extend(self.constraints.iter().map(|c| format!("`{c}`")));
        if let TypeKind::Array(items) = &self.kind {
            parts.push(format!("items: {}", items.summary()));
        }
        parts.join(", ")
    }
}

impl Ref {
    /// The reference as written in lexicons: `nsid` for `main`, `nsid#def` otherwise.
    pub(crate) fn display(&self) -> String {
        if self.def == "main" {
            self.nsid.clone()
        } else {
            format!("{}#{}", self.nsid, self.def)
        }
    }
}

/// Reads every lexicon under `root`, sorted by NSID, and checks that every reference resolves.
pub(crate) fn load_all(root: &Path) -> Result<Vec<Lexicon>> {
    let mut files = Vec::new();
    find_json(root, root, &mut files)?;
    let mut lexicons = files
        .iter()
        .map(|file| load(root, file))
        .collect::<Result<Vec<_>>>()?;
    lexicons.sort_by(|a, b| a.id.cmp(&b.id));
    for pair in lexicons.windows(2) {
        ensure!(
            pair[0].id != pair[1].id,
            "two lexicon files declare `{}`: {} and {}",
            pair[0].id,
            pair[0].file,
            pair[1].file
        );
    }
    check_refs(&lexicons)?;
    Ok(lexicons)
}

/// Collects the `.json` files under `dir`, skipping code directories at the top of `root` and
/// hidden directories anywhere. Paths are relative to `root`.
fn find_json(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if dir == root && NOT_LEXICON_DIRS.contains(&name.as_ref()) {
                continue;
            }
            find_json(root, &path, out)?;
        } else if name.ends_with(".json") {
            out.push(path.strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// Reads one lexicon file; `file` is relative to `root`.
fn load(root: &Path, file: &Path) -> Result<Lexicon> {
    let file_str = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let text = fs::read_to_string(root.join(file))
        .with_context(|| format!("reading {}", root.join(file).display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("{file_str}: invalid JSON"))?;
    parse_doc(&doc, &file_str).with_context(|| format!("in {file_str}"))
}

/// Parses a lexicon document found at `file`.
fn parse_doc(doc: &Value, file: &str) -> Result<Lexicon> {
    let doc = doc
        .as_object()
        .context("the document is not a JSON object")?;
    ensure!(
        doc.get("lexicon") == Some(&Value::from(1)),
        "`lexicon` must be 1 (is this file a lexicon?)"
    );
    let id = str_field(doc, "id")?.context("`id` is missing")?;
    ensure!(
        is_nsid(id),
        "`id` {id:?} is not an NSID this generator accepts"
    );
    let expected = format!("{}.json", id.replace('.', "/"));
    ensure!(
        file == expected,
        "the file for `{id}` must be at {expected}, so that paths and NSIDs agree"
    );
    let revision = match doc.get("revision") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .context("`revision` must be a non-negative integer")?,
        ),
    };
    let description = str_field(doc, "description")?.map(str::to_owned);
    let defs_json = doc
        .get("defs")
        .and_then(Value::as_object)
        .context("`defs` is missing or not an object")?;
    let mut defs = defs_json
        .iter()
        .map(|(name, def)| parse_def(id, name, def).with_context(|| format!("def `{name}`")))
        .collect::<Result<Vec<_>>>()?;
    defs.sort_by(|a, b| (a.name != "main", &a.name).cmp(&(b.name != "main", &b.name)));
    for def in &defs {
        let kind = match &def.kind {
            DefKind::Record { .. } => "record",
            DefKind::Xrpc(x) => x.method.word(),
            _ => continue,
        };
        if def.name != "main" {
            bail!("def `{}`: only `main` may be a {kind}", def.name);
        }
    }
    Ok(Lexicon {
        id: id.to_owned(),
        revision,
        description,
        file: file.to_owned(),
        defs,
    })
}

/// Whether `s` is an NSID whose segments are plain ASCII names, at least three of them.
fn is_nsid(s: &str) -> bool {
    let segments: Vec<&str> = s.split('.').collect();
    segments.len() >= 3
        && segments.iter().all(|seg| {
            seg.starts_with(|c: char| c.is_ascii_alphabetic())
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Parses one def of lexicon `nsid`.
fn parse_def(nsid: &str, name: &str, def: &Value) -> Result<Def> {
    let obj = def.as_object().context("not a JSON object")?;
    let description = str_field(obj, "description")?.map(str::to_owned);
    let ty = str_field(obj, "type")?.context("`type` is missing")?;
    let kind = match ty {
        "record" => {
            let key = str_field(obj, "key")?.unwrap_or("any").to_owned();
            let record = obj.get("record").context("`record` is missing")?;
            let record = record.as_object().context("`record` is not an object")?;
            ensure!(
                str_field(record, "type")? == Some("object"),
                "`record` must be of type `object`"
            );
            DefKind::Record {
                key,
                object: parse_object(nsid, record)?,
            }
        }
        "object" => DefKind::Object(parse_object(nsid, obj)?),
        "token" => DefKind::Token,
        "query" => DefKind::Xrpc(parse_xrpc(nsid, Method::Query, obj)?),
        "procedure" => DefKind::Xrpc(parse_xrpc(nsid, Method::Procedure, obj)?),
        "subscription" | "permission-set" | "params" => {
            bail!("`{ty}` defs are not supported by `cargo xtask codegen` yet")
        }
        _ => DefKind::Alias(parse_type(nsid, obj)?),
    };
    Ok(Def {
        name: name.to_owned(),
        description,
        kind,
    })
}

/// Parses the `parameters`, `input`, `output` and `errors` of a query or procedure.
fn parse_xrpc(nsid: &str, method: Method, obj: &Map<String, Value>) -> Result<Xrpc> {
    let params = match obj.get("parameters") {
        None => None,
        Some(p) => Some(parse_params(nsid, p).context("`parameters`")?),
    };
    let input = match obj.get("input") {
        None => None,
        Some(_) if method == Method::Query => {
            bail!("a query has no request body, so it cannot declare `input`")
        }
        Some(b) => Some(parse_body(nsid, b).context("`input`")?),
    };
    let output = match obj.get("output") {
        None => None,
        Some(b) => Some(parse_body(nsid, b).context("`output`")?),
    };
    let errors = match obj.get("errors") {
        None => Vec::new(),
        Some(e) => parse_errors(e).context("`errors`")?,
    };
    Ok(Xrpc {
        method,
        params,
        input,
        output,
        errors,
    })
}

/// Parses a `params` object: properties that fit in a URL query string.
fn parse_params(nsid: &str, params: &Value) -> Result<Object> {
    let params = params.as_object().context("not a JSON object")?;
    ensure!(
        str_field(params, "type")? == Some("params"),
        "must be of type `params`"
    );
    let object = parse_object(nsid, params)?;
    for prop in &object.properties {
        let scalar = |ty: &Type| {
            matches!(
                ty.kind,
                TypeKind::String | TypeKind::Integer | TypeKind::Boolean | TypeKind::Unknown
            )
        };
        let fits = match &prop.ty.kind {
            TypeKind::Array(items) => scalar(items),
            _ => scalar(&prop.ty),
        };
        ensure!(
            fits,
            "property `{}`: parameters can only be boolean, integer, string or unknown, or arrays \
             of those, not {}",
            prop.name,
            prop.ty.summary()
        );
        ensure!(
            !prop.nullable,
            "property `{}`: parameters cannot be `nullable`",
            prop.name
        );
    }
    Ok(object)
}

/// Parses the `input` or `output` of an XRPC method.
fn parse_body(nsid: &str, body: &Value) -> Result<Body> {
    let body = body.as_object().context("not a JSON object")?;
    let encoding = str_field(body, "encoding")?
        .context("`encoding` is missing")?
        .to_owned();
    let description = str_field(body, "description")?.map(str::to_owned);
    let schema = match body.get("schema") {
        None => None,
        Some(schema) => {
            ensure!(
                encoding == "application/json",
                "a `schema` needs `encoding` `application/json`, not `{encoding}`"
            );
            let schema = schema.as_object().context("`schema` is not an object")?;
            let ty = str_field(schema, "type")?.context("`schema` has no `type`")?;
            Some(match ty {
                "object" => BodySchema::Object(parse_object(nsid, schema).context("`schema`")?),
                "ref" => {
                    let target = str_field(schema, "ref")?.context("`schema` has no `ref`")?;
                    BodySchema::Ref(resolve(nsid, target).context("`schema`")?)
                }
                "union" => bail!("`union` schemas are not supported by `cargo xtask codegen` yet"),
                other => bail!("`schema` must be an object, a ref or a union, not `{other}`"),
            })
        }
    };
    Ok(Body {
        encoding,
        description,
        schema,
    })
}

/// Parses the `errors` list of an XRPC method.
fn parse_errors(errors: &Value) -> Result<Vec<XrpcError>> {
    let errors = errors.as_array().context("not an array")?;
    let mut seen = BTreeSet::new();
    errors
        .iter()
        .map(|error| {
            let error = error
                .as_object()
                .context("every error must be an object with a `name`")?;
            let name = str_field(error, "name")?.context("an error has no `name`")?;
            ensure!(
                name.starts_with(|c: char| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "error name {name:?} must be an ASCII word such as `NotFound`"
            );
            ensure!(seen.insert(name), "error `{name}` is listed twice");
            Ok(XrpcError {
                name: name.to_owned(),
                description: str_field(error, "description")?.map(str::to_owned),
            })
        })
        .collect()
}

/// Parses the properties of an object type.
fn parse_object(nsid: &str, obj: &Map<String, Value>) -> Result<Object> {
    let props = match obj.get("properties") {
        None => Map::new(),
        Some(p) => p
            .as_object()
            .context("`properties` is not an object")?
            .clone(),
    };
    let required = name_list(obj, "required")?;
    let nullable = name_list(obj, "nullable")?;
    for name in required.iter().chain(&nullable) {
        ensure!(
            props.contains_key(name),
            "`{name}` is listed in `required` or `nullable` but is not a property"
        );
    }
    let properties = props
        .iter()
        .map(|(name, prop)| {
            parse_property(nsid, name, prop, &required, &nullable)
                .with_context(|| format!("property `{name}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Object { properties })
}

/// Parses one property of an object.
fn parse_property(
    nsid: &str,
    name: &str,
    prop: &Value,
    required: &BTreeSet<String>,
    nullable: &BTreeSet<String>,
) -> Result<Property> {
    let prop = prop.as_object().context("not a JSON object")?;
    Ok(Property {
        name: name.to_owned(),
        description: str_field(prop, "description")?.map(str::to_owned),
        required: required.contains(name),
        nullable: nullable.contains(name),
        ty: parse_type(nsid, prop)?,
    })
}

/// Reads a list of property names such as `required`.
fn name_list(obj: &Map<String, Value>, key: &str) -> Result<BTreeSet<String>> {
    match obj.get(key) {
        None => Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("`{key}` must list strings"))
            })
            .collect(),
        Some(_) => bail!("`{key}` must be an array"),
    }
}

/// Parses a field type (a property, array items, or a non-object def).
fn parse_type(nsid: &str, obj: &Map<String, Value>) -> Result<Type> {
    let ty = str_field(obj, "type")?.context("`type` is missing")?;
    let (kind, keys): (TypeKind, &[&str]) = match ty {
        "string" => (
            TypeKind::String,
            &[
                "format",
                "minLength",
                "maxLength",
                "minGraphemes",
                "maxGraphemes",
                "enum",
                "knownValues",
                "const",
                "default",
            ],
        ),
        "integer" => (
            TypeKind::Integer,
            &["minimum", "maximum", "enum", "const", "default"],
        ),
        "boolean" => (TypeKind::Boolean, &["const", "default"]),
        "blob" => (TypeKind::Blob, &["accept", "maxSize"]),
        "bytes" => (TypeKind::Bytes, &["minLength", "maxLength"]),
        "cid-link" => (TypeKind::CidLink, &[]),
        "unknown" => (TypeKind::Unknown, &[]),
        "array" => {
            let items = obj.get("items").context("array without `items`")?;
            let items = items.as_object().context("`items` is not an object")?;
            let items = parse_type(nsid, items).context("array items")?;
            (
                TypeKind::Array(Box::new(items)),
                &["minLength", "maxLength"],
            )
        }
        "ref" => {
            let target = str_field(obj, "ref")?.context("`ref` is missing")?;
            (TypeKind::Ref(resolve(nsid, target)?), &[])
        }
        "union" => bail!("`union` types are not supported by `cargo xtask codegen` yet"),
        "object" => bail!("inline objects are not supported: declare a def and `ref` it"),
        other => bail!("unknown type `{other}`"),
    };
    let constraints = keys
        .iter()
        .filter_map(|key| obj.get(*key).map(|v| format!("{key}: {}", constraint(v))))
        .collect();
    Ok(Type { kind, constraints })
}

/// Writes a constraint value for documentation: strings bare, lists comma-separated.
fn constraint(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(constraint).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Resolves a reference written inside lexicon `nsid`: `#def`, `other.nsid` or `other.nsid#def`.
fn resolve(nsid: &str, target: &str) -> Result<Ref> {
    let (lex, def) = match target.split_once('#') {
        Some(("", def)) => (nsid, def),
        Some((lex, def)) => (lex, def),
        None => (target, "main"),
    };
    ensure!(
        is_nsid(lex) && !def.is_empty(),
        "`{target}` is not a valid reference"
    );
    Ok(Ref {
        nsid: lex.to_owned(),
        def: def.to_owned(),
    })
}

/// Checks that every reference names a record, object or alias def that exists.
fn check_refs(lexicons: &[Lexicon]) -> Result<()> {
    let defs: BTreeMap<(&str, &str), &DefKind> = lexicons
        .iter()
        .flat_map(|lex| {
            lex.defs
                .iter()
                .map(move |d| ((lex.id.as_str(), d.name.as_str()), &d.kind))
        })
        .collect();
    for lex in lexicons {
        for def in &lex.defs {
            for r in def_refs(def) {
                match defs.get(&(r.nsid.as_str(), r.def.as_str())) {
                    None => bail!(
                        "in {}: def `{}` refers to `{}`, which no file under lexicons/ defines",
                        lex.file,
                        def.name,
                        r.display()
                    ),
                    Some(DefKind::Token) => bail!(
                        "in {}: def `{}` uses token `{}` as a type",
                        lex.file,
                        def.name,
                        r.display()
                    ),
                    Some(DefKind::Xrpc(x)) => bail!(
                        "in {}: def `{}` uses {} `{}` as a type",
                        lex.file,
                        def.name,
                        x.method.word(),
                        r.display()
                    ),
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// Every reference a def contains.
pub(crate) fn def_refs(def: &Def) -> Vec<&Ref> {
    match &def.kind {
        DefKind::Record { object, .. } | DefKind::Object(object) => object.refs(),
        DefKind::Alias(ty) => ty.refs(),
        DefKind::Xrpc(xrpc) => xrpc.refs(),
        DefKind::Token => Vec::new(),
    }
}

/// Reads an optional string member.
fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => bail!("`{key}` must be a string"),
    }
}
