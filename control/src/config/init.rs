//! `atelier init`: the commented `atelier.yaml`, generated from the config struct itself.
//!
//! The values come from serializing an [`AtelierConfig`] (so every key is there, with its
//! default), and the comments from the struct's JSON schema, whose descriptions are the
//! fields' doc comments. `deploy/atelier.example.yaml` is this output for the sandbox
//! defaults; a test keeps the two identical.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

use super::schema::AtelierConfig;

/// Widest comment line, counting the indentation.
const WIDTH: usize = 92;

const HEADER: &str = "\
# atelier.yaml: the configuration of an Atelier installation (PDS, AppView, relay, admin).
#
# Written by `atelier init`: every key is here, with its default value and what it does.
# Check a change with `atelier check`. Reference: docs/configuration.md.
# Secrets are generated under DATA_DIR/secrets/ (mode 0600); a secret given in this file
# can instead be kept in a file: `x_file: PATH` in place of `x: VALUE`, never both.

";

/// Why `init` could not write the file.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The config could not be serialized (a bug).
    #[error("serializing the configuration: {0}")]
    Serialize(#[from] serde_norway::Error),
    /// The target exists and `--force` was not given.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The commented YAML text of `config`.
pub fn render(config: &AtelierConfig) -> Result<String, InitError> {
    let schema = schemars::schema_for!(AtelierConfig);
    let root = schema.as_value();
    let value = serde_norway::to_value(config)?;
    let mut out = String::from(HEADER);
    if let Yaml::Mapping(map) = &value {
        let renderer = Renderer { root };
        renderer.mapping(&mut out, map, root, 0, false, true)?;
    }
    Ok(out)
}

/// Writes `text` to `path`, refusing to replace a file unless `force`.
pub fn write(path: &Path, text: &str, force: bool) -> Result<(), InitError> {
    use std::io::Write as _;
    // `create_new` makes "does it exist" and "create it" one step, so a file that appears
    // in between is not overwritten either.
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let write_error = |source| InitError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            InitError::Exists {
                path: path.to_owned(),
            }
        } else {
            write_error(source)
        }
    })?;
    file.write_all(text.as_bytes()).map_err(write_error)
}

struct Renderer<'a> {
    /// The root schema, holding `$defs`.
    root: &'a Json,
}

impl Renderer<'_> {
    /// The schema a `$ref` points to, and the non-null branch of an `Option`.
    fn resolve<'s>(&'s self, schema: &'s Json) -> &'s Json {
        if let Some(Json::String(reference)) = schema.get("$ref")
            && let Some(name) = reference.strip_prefix("#/$defs/")
            && let Some(def) = self.root.get("$defs").and_then(|d| d.get(name))
        {
            return self.resolve(def);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Json::Array(branches)) = schema.get(key) {
                let non_null: Vec<&Json> = branches
                    .iter()
                    .filter(|b| b.get("type") != Some(&Json::String("null".into())))
                    .collect();
                if let [one] = non_null[..] {
                    return self.resolve(one);
                }
            }
        }
        schema
    }

    /// Writes the entries of `map` at `indent`; with `dash`, the first one starts a sequence
    /// item.
    fn mapping(
        &self,
        out: &mut String,
        map: &serde_norway::Mapping,
        schema: &Json,
        indent: usize,
        dash: bool,
        top: bool,
    ) -> Result<(), InitError> {
        let schema = self.resolve(schema);
        let properties = schema.get("properties");
        // A key that follows a section gets a blank line too, so it does not read as part
        // of the section above it.
        let mut after_section = false;
        for (i, (key, value)) in map.iter().enumerate() {
            let key = scalar(key)?;
            let property = properties.and_then(|p| p.get(&key)).unwrap_or(&Json::Null);
            let section = matches!(value, Yaml::Mapping(m) if !m.is_empty());
            if i > 0 && (top || section || after_section) {
                out.push('\n');
            }
            after_section = section;
            let pad = " ".repeat(indent);
            if let Some(Json::String(description)) = property.get("description") {
                comment(
                    out,
                    description,
                    if dash && i > 0 { indent + 2 } else { indent },
                );
            }
            let lead = if dash && i == 0 {
                format!("{pad}- ")
            } else if dash {
                format!("{pad}  ")
            } else {
                pad.clone()
            };
            let inner = if dash { indent + 2 } else { indent };
            match value {
                Yaml::Mapping(m) if !m.is_empty() => {
                    let _ = writeln!(out, "{lead}{key}:");
                    self.mapping(out, m, property, inner + 2, false, false)?;
                }
                Yaml::Mapping(_) => {
                    let _ = writeln!(out, "{lead}{key}: {{}}");
                }
                Yaml::Sequence(items) if items.is_empty() => {
                    let _ = writeln!(out, "{lead}{key}: []");
                }
                Yaml::Sequence(items) => {
                    let _ = writeln!(out, "{lead}{key}:");
                    let item_schema = self.resolve(property).get("items").unwrap_or(&Json::Null);
                    for item in items {
                        match item {
                            Yaml::Mapping(m) if !m.is_empty() => {
                                self.mapping(out, m, item_schema, inner + 2, true, false)?;
                            }
                            other => {
                                let _ =
                                    writeln!(out, "{}- {}", " ".repeat(inner + 2), scalar(other)?);
                            }
                        }
                    }
                }
                other => {
                    let _ = writeln!(out, "{lead}{key}: {}", scalar(other)?);
                }
            }
        }
        Ok(())
    }
}

/// A scalar as YAML text (quoted when it must be).
fn scalar(value: &Yaml) -> Result<String, InitError> {
    Ok(serde_norway::to_string(value)?.trim_end().to_owned())
}

/// `text` as `#` lines at `indent`, wrapped, one blank `#` line between paragraphs.
fn comment(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    let width = WIDTH.saturating_sub(indent + 2).max(40);
    for (p, paragraph) in text.split("\n\n").enumerate() {
        if p > 0 {
            let _ = writeln!(out, "{pad}#");
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                let _ = writeln!(out, "{pad}# {line}");
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            let _ = writeln!(out, "{pad}# {line}");
        }
    }
}
