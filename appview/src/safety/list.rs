//! The word-list format: one entry per line, `#` comments, `*` markers for where an entry
//! may sit inside a longer word.
//!
//! ```text
//! # a comment; blank lines are skipped
//! ass         whole word only: `ass`, `a$$`, `asss`; not `class`, `assistant`
//! shit*       at the start of a word: `shit`, `shitty`, `shithead`
//! *shit       at the end of a word: `bullshit`, `dipshit`
//! *fuck*      anywhere inside a word: `motherfucker`, `clusterfuck`
//! ```
//!
//! The allow-list has the same format; an allowed entry that covers a match cancels it
//! (`scunthorpe` cancels `*cunt*`, `shitake*` cancels `shit*`).
//!
//! Entries are written in plain letters. Leetspeak, case, spacing, repeats and look-alike
//! characters are matched by the filter, not listed: an entry with a digit or punctuation
//! is refused, and so is one with a letter that does not read as `a`–`z`, since it could
//! never match. A doubled letter in an entry must be doubled in the text (`nigger` does not
//! match `Niger`), a single one may be repeated (`fuck` matches `fuuuck`).

use std::sync::Arc;

use super::normalize::{self, AMBIG, Kind, Stream};

/// Where an entry may match, from its `*` markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Boundary {
    /// `word`: the whole word.
    Whole,
    /// `word*`: at the start of a word.
    Start,
    /// `*word`: at the end of a word.
    End,
    /// `*word*`: anywhere inside a word.
    Anywhere,
}

impl Boundary {
    /// Whether a match must begin where its word begins.
    pub(crate) fn needs_start(self) -> bool {
        matches!(self, Boundary::Whole | Boundary::Start)
    }

    /// Whether a match must finish where its word finishes.
    pub(crate) fn needs_end(self) -> bool {
        matches!(self, Boundary::Whole | Boundary::End)
    }
}

/// Why one list entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Nothing but `*` markers.
    #[error("is empty apart from its `*` markers")]
    Empty,
    /// A `*` between letters.
    #[error("has a `*` inside the word (`*` goes only at its start or end)")]
    InnerStar,
    /// More than one word on the line.
    #[error("holds more than one word (one entry per line)")]
    Spaces,
    /// A digit, punctuation or symbol.
    #[error(
        "`{0}` is not a letter (write entries in plain letters: leetspeak, spacing and \
         repeats are matched on their own)"
    )]
    NotLetter(char),
    /// A letter that does not read as `a`–`z`.
    #[error("`{0}` does not read as a letter a-z, so the entry could never match")]
    Unreadable(char),
    /// A single letter.
    #[error("is shorter than 2 letters")]
    TooShort,
}

/// One parsed entry, normalised like text.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The entry as written, lowercased, without its markers: what a match reports.
    pub(crate) word: Arc<str>,
    pub(crate) boundary: Boundary,
    /// An allow-list entry (cancels the matches it covers) rather than a blocked word.
    pub(crate) allow: bool,
    /// The folded stream bytes (letters only; repeats collapsed).
    pub(crate) key: Vec<u8>,
    /// The run each byte of `key` needs in the text (2 for a doubled letter).
    pub(crate) runs: Vec<u8>,
}

impl Entry {
    /// The Aho-Corasick patterns for this entry: its key, and each way of reading its
    /// `i`s and `l`s as [`AMBIG`] (`shit` also as `sh#t`, for `sh1t` and `sh!t`). Only the
    /// first six `i`/`l` positions vary, so an entry has at most 64 patterns.
    pub(crate) fn patterns(&self) -> Vec<Vec<u8>> {
        let places: Vec<usize> = self
            .key
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'i' || b == b'l')
            .map(|(i, _)| i)
            .take(6)
            .collect();
        let mut out = Vec::with_capacity(1 << places.len());
        for mask in 0u32..(1 << places.len()) {
            let mut pattern = self.key.clone();
            for (bit, &place) in places.iter().enumerate() {
                if mask & (1 << bit) != 0 {
                    pattern[place] = AMBIG;
                }
            }
            out.push(pattern);
        }
        out
    }
}

/// Parses one line of a list: `Ok(None)` for a blank or comment line.
pub(crate) fn parse_line(line: &str, allow: bool) -> Result<Option<Entry>, EntryError> {
    let content = line
        .split_once('#')
        .map_or(line, |(before, _)| before)
        .trim();
    if content.is_empty() {
        return Ok(None);
    }
    parse_entry(content, allow).map(Some)
}

/// Parses one entry (markers and word, trimmed).
fn parse_entry(content: &str, allow: bool) -> Result<Entry, EntryError> {
    let (left, rest) = match content.strip_prefix('*') {
        Some(rest) => (true, rest),
        None => (false, content),
    };
    let (right, core) = match rest.strip_suffix('*') {
        Some(core) => (true, core),
        None => (false, rest),
    };
    if core.is_empty() {
        return Err(EntryError::Empty);
    }
    if core.contains('*') {
        return Err(EntryError::InnerStar);
    }
    let mut raws = normalize::Raws::default();
    normalize::scan(core, &mut raws);
    for raw in &raws.0 {
        let c = core
            .get(raw.start..)
            .and_then(|at| at.chars().next())
            .unwrap_or('?');
        match raw.kind {
            Kind::Letter => {}
            Kind::Other => return Err(EntryError::Unreadable(c)),
            Kind::Sep if c.is_whitespace() => return Err(EntryError::Spaces),
            Kind::Sep | Kind::Symbol | Kind::Digit => return Err(EntryError::NotLetter(c)),
        }
    }
    if raws.0.len() < 2 {
        return Err(EntryError::TooShort);
    }
    let stream = Stream::new(core);
    let boundary = match (left, right) {
        (false, false) => Boundary::Whole,
        (false, true) => Boundary::Start,
        (true, false) => Boundary::End,
        (true, true) => Boundary::Anywhere,
    };
    Ok(Entry {
        word: Arc::from(core.to_lowercase()),
        boundary,
        allow,
        runs: stream.units.iter().map(|unit| unit.run).collect(),
        key: stream.bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let entry = parse_line("  *Nigger*  # note", false);
        let Ok(Some(entry)) = entry else {
            panic!("{entry:?}");
        };
        assert_eq!(&*entry.word, "nigger");
        assert_eq!(entry.boundary, Boundary::Anywhere);
        assert_eq!(entry.key, b"niger");
        assert_eq!(entry.runs, [1, 1, 2, 1, 1]);
        assert_eq!(entry.patterns().len(), 2);
        assert!(matches!(parse_line("# only a comment", false), Ok(None)));
        assert!(matches!(parse_line("", false), Ok(None)));
    }

    #[test]
    fn refuses() {
        for (line, expect) in [
            ("**", EntryError::Empty),
            ("f*ck", EntryError::InnerStar),
            ("son of", EntryError::Spaces),
            ("sh1t", EntryError::NotLetter('1')),
            ("f-word", EntryError::NotLetter('-')),
            ("日本", EntryError::Unreadable('日')),
            ("x", EntryError::TooShort),
        ] {
            assert_eq!(parse_line(line, false).err(), Some(expect), "{line:?}");
        }
    }
}
