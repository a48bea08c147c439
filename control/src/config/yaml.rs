//! Reading `atelier.yaml`: YAML through serde_norway, the key path of a type error through
//! serde_path_to_error, and a small locator that finds the line of a key path in the text
//! (for duplicate keys and for the errors of the semantic checks, which have no position of
//! their own).

use super::ConfigError;
use super::schema::{AtelierConfig, Profile};

/// Parses `text` (named `origin` in errors). An empty file, or one with only comments, gives
/// the sandbox defaults.
pub(super) fn parse(text: &str, origin: &str) -> Result<AtelierConfig, ConfigError> {
    // A first pass into a plain YAML value tells syntax errors and duplicate keys apart from
    // type errors, which the second pass reports with their key path.
    let document = match serde_norway::from_str::<serde_norway::Value>(text) {
        Ok(document) => document,
        Err(err) => return Err(yaml_error(text, origin, &err)),
    };
    let deserializer = serde_norway::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Option<AtelierConfig>>(deserializer) {
        Ok(config) => {
            let mut config = config.unwrap_or_default();
            // serde fills a missing `services` with the sandbox's services (a local PLC, a
            // loopback relay), which the production profile refuses; a production file
            // without the section gets the production defaults instead.
            if config.profile == Profile::Production && document.get("services").is_none() {
                config.services = AtelierConfig::production(&config.hostname).services;
            }
            Ok(config)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.inner();
            let (line, column) = inner
                .location()
                .map_or((None, None), |l| (Some(l.line()), Some(l.column())));
            let mut message = strip_location(&inner.to_string());
            // serde_norway prefixes its own (shorter) path; ours replaces it.
            if let Some((prefix, rest)) = message.split_once(": ")
                && !prefix.contains(' ')
                && path.starts_with(prefix)
            {
                message = rest.to_owned();
            }
            Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                line,
                column,
                key: if path == "." { String::new() } else { path },
                reason: message,
            })
        }
    }
}

/// A syntax error or a duplicate key, found by the first pass.
fn yaml_error(text: &str, origin: &str, err: &serde_norway::Error) -> ConfigError {
    let message = err.to_string();
    if let Some((prefix, key)) = duplicate_key(&message) {
        let mut path: Vec<Segment> = parse_path(&prefix);
        path.push(Segment::Key(key.clone()));
        let location = locate_nth(text, &path, 1);
        let key_path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        return ConfigError::Invalid {
            origin: origin.to_owned(),
            line: location.map(|l| l.0),
            column: location.map(|l| l.1),
            key: key_path,
            reason: "duplicate key".to_owned(),
        };
    }
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line: err.location().map_or(0, |l| l.line()),
        column: err.location().map_or(0, |l| l.column()),
        reason: strip_location(&message),
    }
}

/// `services: duplicate entry with key "port" at ...` -> (`services`, `port`).
fn duplicate_key(message: &str) -> Option<(String, String)> {
    let marker = "duplicate entry with key \"";
    let at = message.find(marker)?;
    let prefix = message[..at].trim_end().trim_end_matches(':').to_owned();
    let rest = &message[at + marker.len()..];
    let key = rest[..rest.find('"')?].to_owned();
    Some((prefix, key))
}

/// Drops serde_norway's first ` at line L column C` (the position is printed in front).
fn strip_location(message: &str) -> String {
    let Some(at) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[at + " at line ".len()..];
    let end = rest
        .find(" column ")
        .map(|c| {
            let after = &rest[c + " column ".len()..];
            c + " column ".len()
                + after
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(after.len())
        })
        .unwrap_or(0);
    format!("{}{}", &message[..at], &rest[end..])
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// `services.relay.upstreams[0].url` -> its segments.
fn parse_path(path: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            segments.push(Segment::Key(rest[..open].to_owned()));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    segments.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            segments.push(Segment::Key(rest.to_owned()));
        }
    }
    segments
}

/// One line of block-style YAML, as much as the locator needs.
#[derive(Debug)]
struct Line<'a> {
    /// Columns before the first character (or before the `- ` of a sequence item).
    indent: usize,
    /// Whether the line starts a sequence item (`- `).
    dash: bool,
    /// Column of the content after the indentation and any `- `.
    content_col: usize,
    /// The mapping key on this line, if any.
    key: Option<&'a str>,
    /// Blank or comment only.
    blank: bool,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .map(|raw| {
            let indent = raw.len() - raw.trim_start_matches(' ').len();
            let mut content = &raw[indent..];
            let blank = content.trim().is_empty() || content.starts_with('#');
            let dash = content == "-" || content.starts_with("- ");
            let mut content_col = indent;
            if dash {
                let after = content.get(1..).unwrap_or("");
                let pad = after.len() - after.trim_start_matches(' ').len();
                content = &after[pad..];
                content_col = indent + 1 + pad;
            }
            let key = content
                .find(':')
                .filter(|&c| content[c + 1..].is_empty() || content[c + 1..].starts_with(' '))
                .map(|c| content[..c].trim().trim_matches(['"', '\'']));
            Line {
                indent,
                dash,
                content_col,
                key,
                blank,
            }
        })
        .collect()
}

/// The 1-based line and column of `path` in `text` (block-style YAML), or of the deepest
/// part of it that is there.
pub(super) fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    locate_nth(text, &parse_path(path), 0)
}

/// Like [`locate`], taking the `nth` (0-based) occurrence of the last key.
fn locate_nth(text: &str, path: &[Segment], nth: usize) -> Option<(usize, usize)> {
    let lines = lines(text);
    // Where the current block starts, the column its parent sits at, and whether the block
    // starts on a sequence item's line (whose content is the block's first key).
    let mut from = 0usize;
    let mut parent_col: isize = -1;
    let mut via_dash = false;
    let mut found = None;
    for (depth, segment) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        match segment {
            Segment::Key(key) => {
                let mut child_col = None;
                let mut seen = 0;
                let mut hit = None;
                for (idx, line) in lines.iter().enumerate().skip(from) {
                    if line.blank {
                        continue;
                    }
                    let first_of_item = via_dash && idx == from;
                    let col = if first_of_item {
                        line.content_col
                    } else {
                        line.indent
                    };
                    if !first_of_item && (col as isize) <= parent_col {
                        break;
                    }
                    if line.dash && !first_of_item {
                        continue;
                    }
                    let col = if first_of_item { line.content_col } else { col };
                    let expected = *child_col.get_or_insert(col);
                    if col != expected || line.key != Some(key.as_str()) {
                        continue;
                    }
                    if last && seen < nth {
                        seen += 1;
                        continue;
                    }
                    hit = Some((idx, col));
                    break;
                }
                let Some((idx, col)) = hit else {
                    return found;
                };
                found = Some((idx + 1, col + 1));
                from = idx + 1;
                parent_col = col as isize;
                via_dash = false;
            }
            Segment::Index(i) => {
                // Items may sit at the key's own column or deeper.
                let mut item_col = None;
                let mut count = 0;
                let mut hit = None;
                for (idx, line) in lines.iter().enumerate().skip(from) {
                    if line.blank {
                        continue;
                    }
                    if (line.indent as isize) < parent_col
                        || (line.indent as isize == parent_col && !line.dash)
                    {
                        break;
                    }
                    if !line.dash || *item_col.get_or_insert(line.indent) != line.indent {
                        continue;
                    }
                    if count == *i {
                        hit = Some(idx);
                        break;
                    }
                    count += 1;
                }
                let Some(idx) = hit else {
                    return found;
                };
                found = Some((idx + 1, lines[idx].content_col + 1));
                from = idx;
                parent_col = lines[idx].indent as isize;
                via_dash = true;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
profile: sandbox
services:
  pds:
    # the port
    port: 1
  relay:
    upstreams:
    - url: ws://a
      kind: pds
    - kind: relay
      url: ws://b
    filter:
      collections:
        - a.b.*
tls:
  behind_proxy: true
";

    #[test]
    fn finds_keys_and_items() {
        let cases = [
            ("profile", Some((2, 1))),
            ("services.pds.port", Some((6, 5))),
            ("services.relay.upstreams[0].url", Some((9, 7))),
            ("services.relay.upstreams[1].url", Some((12, 7))),
            ("services.relay.upstreams[1].kind", Some((11, 7))),
            ("services.relay.filter.collections", Some((14, 7))),
            ("services.relay.filter.collections[0]", Some((15, 11))),
            ("tls.behind_proxy", Some((17, 3))),
            // Absent keys give the deepest part that is there.
            ("services.pds.bind", Some((4, 3))),
            ("services.relay.filter.companions", Some((13, 5))),
            ("hostname", None),
        ];
        for (path, want) in cases {
            assert_eq!(locate(TEXT, path), want, "{path}");
        }
    }

    #[test]
    fn strips_the_position_serde_norway_appends() {
        assert_eq!(
            strip_location("a: invalid type: string \"x\", expected u16 at line 3 column 9"),
            "a: invalid type: string \"x\", expected u16"
        );
        assert_eq!(
            strip_location("found a tab at line 2 column 1, while scanning"),
            "found a tab, while scanning"
        );
    }
}
