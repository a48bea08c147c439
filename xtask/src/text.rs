//! Word-wrapping descriptions into comment blocks for both emitters.

/// How wide a comment line may get, prefix included.
const WIDTH: usize = 96;

/// Wraps `text` into lines that fit `WIDTH` after `prefix` (e.g. `    /// `), returning the
/// lines without the prefix. Line breaks in `text` are kept; a blank line separates paragraphs.
///
/// A line is never started with something Markdown would read as a list item, heading or
/// quote (`-`, `*`, `#`, `1.`...): the word stays on the previous line instead, even if that
/// line grows too long, so wrapping never changes what a description means.
pub(crate) fn wrap(text: &str, prefix: &str) -> Vec<String> {
    let width = WIDTH.saturating_sub(prefix.len()).max(40);
    let mut lines = Vec::new();
    for source_line in text.lines() {
        // A list item's wrapped lines are indented under its text, so Markdown (and
        // clippy's doc lints) keep them in the item.
        let hang = if source_line.starts_with("- ") {
            "  "
        } else {
            ""
        };
        let mut line = String::new();
        for word in unbreakable_words(source_line) {
            let word = word.as_str();
            if !line.trim().is_empty() && line.len() + 1 + word.len() > width && !starts_block(word)
            {
                lines.push(std::mem::take(&mut line));
                line.push_str(hang);
            }
            if !line.trim().is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// Splits a line at whitespace, except inside `code spans`, which stay whole.
fn unbreakable_words(line: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut open = false;
    for word in line.split_whitespace() {
        match words.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
        if word.matches('`').count() % 2 == 1 {
            open = !open;
        }
    }
    words
}

/// Whether `word` at the start of a line would begin a Markdown block.
fn starts_block(word: &str) -> bool {
    if matches!(word, "-" | "+" | "*" | ">" | "|") || word.starts_with('#') {
        return true;
    }
    let digits = word.trim_start_matches(|c: char| c.is_ascii_digit());
    digits.len() < word.len() && (digits == "." || digits == ")")
}

/// Writes `text` as a comment block, one `prefix`ed line per wrapped line (a bare, trimmed
/// prefix for blank lines).
pub(crate) fn comment(out: &mut String, prefix: &str, text: &str) {
    for line in wrap(text, prefix) {
        if line.is_empty() {
            out.push_str(prefix.trim_end());
        } else {
            out.push_str(prefix);
            out.push_str(&line);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_keeps_markdown_meaning() {
        let long = "word ".repeat(30);
        let lines = wrap(&long, "/// ");
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() + 4 <= WIDTH));

        // A word that would start a list item stays on the line before.
        let text = format!("{} - 1. # x", "a".repeat(88));
        assert_eq!(wrap(&text, "/// ")[1], "x");
        assert_eq!(wrap("one\n\ntwo", "/// "), ["one", "", "two"]);

        // Code spans are never split.
        let text = format!("{} `\"$type\": \"x\"` end", "a".repeat(85));
        assert_eq!(wrap(&text, "/// ")[1], "`\"$type\": \"x\"` end");

        // A list item's continuation lines hang under its text.
        let item = format!("- `Name`: {}", "word ".repeat(25));
        let lines = wrap(&item, "/// ");
        assert!(lines.len() > 1);
        assert!(
            lines[1..].iter().all(|l| l.starts_with("  word")),
            "{lines:?}"
        );
    }
}
