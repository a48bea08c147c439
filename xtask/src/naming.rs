//! Turning lexicon names (NSID segments, def and property names) into Rust and TypeScript names.

/// Words Rust reserves (strict and reserved keywords of the 2024 edition).
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Keywords that cannot be raw identifiers, so they get a trailing underscore instead.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super"];

/// Splits a name into lower-case words at `_`, `-`, other punctuation and camelCase humps
/// (`pdfURL` -> `pdf`, `url`; `strongRef` -> `strong`, `ref`).
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !word.is_empty() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_is_lower)
            {
                words.push(std::mem::take(&mut word));
            }
        }
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `strongRef` -> `strong_ref`.
pub(crate) fn snake_case(name: &str) -> String {
    words(name).join("_")
}

/// `strongRef` -> `StrongRef`, `kidlisp` -> `Kidlisp`.
pub(crate) fn pascal_case(name: &str) -> String {
    words(name)
        .iter()
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `strongRef` -> `STRONG_REF`.
pub(crate) fn screaming_snake_case(name: &str) -> String {
    snake_case(name).to_ascii_uppercase()
}

/// Makes `name` (already snake_case or PascalCase) usable as a Rust identifier: keywords become
/// raw identifiers (`r#ref`), or get a trailing `_` where raw identifiers are not allowed, and
/// names that do not start with a letter get a leading `_`.
pub(crate) fn rust_ident(name: &str) -> String {
    let name = if name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.to_owned()
    } else {
        format!("_{name}")
    };
    if NOT_RAW.contains(&name.as_str()) {
        format!("{name}_")
    } else if RUST_KEYWORDS.contains(&name.as_str()) {
        format!("r#{name}")
    } else {
        name
    }
}

/// The name serde's `rename_all = "camelCase"` gives a field called `ident` (raw prefix
/// removed), so the generator knows when an explicit `rename` is needed.
pub(crate) fn serde_camel_case(ident: &str) -> String {
    let ident = ident.strip_prefix("r#").unwrap_or(ident);
    let mut pascal = String::new();
    let mut capitalize = true;
    for c in ident.chars() {
        if c == '_' {
            capitalize = true;
        } else if capitalize {
            pascal.push(c.to_ascii_uppercase());
            capitalize = false;
        } else {
            pascal.push(c);
        }
    }
    match pascal.chars().next() {
        Some(first) => first.to_ascii_lowercase().to_string() + &pascal[first.len_utf8()..],
        None => pascal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(input, snake_case, PascalCase, Rust field ident, serde name of that ident)`.
    const CASES: &[(&str, &str, &str, &str, &str)] = &[
        ("slug", "slug", "Slug", "slug", "slug"),
        ("imageUrl", "image_url", "ImageUrl", "image_url", "imageUrl"),
        (
            "strongRef",
            "strong_ref",
            "StrongRef",
            "strong_ref",
            "strongRef",
        ),
        ("pdfURL", "pdf_url", "PdfUrl", "pdf_url", "pdfUrl"),
        ("ref", "ref", "Ref", "r#ref", "ref"),
        ("self", "self", "Self", "self_", "self"),
        (
            "app-password",
            "app_password",
            "AppPassword",
            "app_password",
            "appPassword",
        ),
        ("v2Thing", "v2_thing", "V2Thing", "v2_thing", "v2Thing"),
        ("$type", "type", "Type", "r#type", "type"),
    ];

    #[test]
    fn names_convert() {
        for &(input, snake, pascal, ident, serde) in CASES {
            assert_eq!(snake_case(input), snake, "snake_case({input:?})");
            assert_eq!(pascal_case(input), pascal, "pascal_case({input:?})");
            assert_eq!(
                rust_ident(&snake_case(input)),
                ident,
                "rust_ident({input:?})"
            );
            assert_eq!(
                serde_camel_case(ident),
                serde,
                "serde_camel_case({ident:?})"
            );
        }
    }
}
