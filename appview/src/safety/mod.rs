//! AC's safety filter, rebuilt: finds profanity and slurs in user text, however it is
//! spelled, and masks or blocks it.
//!
//! Used by the publishing proxy (mask or block a mood, a KidLisp program, a news post
//! before it is written: [`SafetyFilter::apply`] with a [`Policy`]), by ingest and by the
//! admin console's auto-flags ([`SafetyFilter::check`] on indexed text). The design, the
//! list format and the policies are described for operators in docs/safety-filter.md.
//!
//! # How a text is checked
//!
//! 1. **Normalise** (`normalize.rs`): one pass over the text builds a stream of small
//!    units (`a`–`z`, a "may be `i` or `l`" unit, separators), each pointing back at the
//!    original bytes. It folds case, leetspeak (`0 1 3 4 5 7 8 9 @ $ ! |`), NFKD
//!    compatibility forms with their marks dropped (`ｆüćk`), Cyrillic/Greek look-alikes
//!    and small capitals; it drops zero-width characters, joins spaced-out single letters
//!    (`f u c k`, `f.u.c.k`, `f_u_c_k`) and collapses repeats (`fuuuuck`).
//! 2. **Match** once: a single Aho-Corasick automaton (DFA) holds every entry of the word
//!    list and of the allow-list, and runs over the stream with overlapping matches; there
//!    is no per-word loop and no regex.
//! 3. **Verify** each candidate: the runs its entry needs (a doubled letter must be
//!    doubled), its word boundaries (from the entry's `*` markers, see `list.rs`), and
//!    that it is made of real letters, at least as many as digits (`a$$` matches, `455`
//!    and the hex colour `a55` do not). A digit or `!` at a word's edge does not count as
//!    part of the word (`ass!` is the whole word `ass`).
//! 4. **Allow**: an allow-list match that covers a candidate cancels it (`Scunthorpe`).
//! 5. **Widen** each surviving match to the word it is in (`motherfucker`, not just its
//!    `fuck`), merge duplicates, and map it back to the original bytes.
//!
//! Masking replaces every character that produced a matched letter (with its combining
//! marks) with one `_`, so the masked text has as many characters as the original;
//! separators inside a spaced-out word, and invisible characters, are kept (`f.u.c.k`
//! becomes `_._._._`).
//!
//! **Architecture Invariant:** the filter only reads text; it knows nothing of records,
//! stores or HTTP. Callers decide what a match means (block, mask, flag).

mod list;
mod normalize;
mod policy;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

pub use list::EntryError;
pub use policy::{Blocked, Policy, UnknownPolicy};

use list::Entry;
use normalize::{Kind, Raws, SEP, Stream};

/// The built-in word list (`appview/safety/words.txt`).
pub const DEFAULT_WORDS: &str = include_str!("../../safety/words.txt");
/// The built-in allow-list (`appview/safety/allow.txt`).
pub const DEFAULT_ALLOW: &str = include_str!("../../safety/allow.txt");

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    /// A list entry is malformed; `file` and `line` say where.
    #[error("{file}:{line}: `{entry}` {reason}")]
    Entry {
        /// The list file (or `extra words` / `extra allow-list` for entries given in code).
        file: String,
        /// The 1-based line number (the entry's position for entries given in code).
        line: usize,
        /// The line as written, without its comment.
        entry: String,
        /// What is wrong with it.
        reason: EntryError,
    },
    /// A list file could not be read.
    #[error("cannot read the safety list {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The lists are too large for the matcher (far beyond any real word list).
    #[error("cannot build the safety filter's matcher: {0}")]
    Build(#[from] aho_corasick::BuildError),
}

/// One flagged word in a text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    /// The byte range in the original text, from the first to the last matched character
    /// (it includes any separators inside a spaced-out word such as `f u c k`).
    pub range: Range<usize>,
    /// The list entry that matched, lowercase and without its markers (`fuck`).
    pub word: Arc<str>,
}

impl Match {
    /// The matched part of `text` (the text the match was found in).
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.range.clone()).unwrap_or_default()
    }
}

/// The safety filter: the word list and allow-list compiled into one automaton.
///
/// Build it once and share it: cloning is an `Arc` clone, and it is `Send + Sync`.
/// [`SafetyFilter::default`] is the built-in lists, compiled once per process.
#[derive(Clone)]
pub struct SafetyFilter {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when the lists are empty (Aho-Corasick needs at least one pattern).
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern, the entries it stands for (several entries may fold to
    /// the same pattern, and one entry has a pattern per reading of its `i`s and `l`s).
    targets: Vec<Vec<usize>>,
    entries: Vec<Entry>,
}

impl fmt::Debug for SafetyFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed = self.inner.entries.iter().filter(|e| e.allow).count();
        f.debug_struct("SafetyFilter")
            .field("words", &(self.inner.entries.len() - allowed))
            .field("allowed", &allowed)
            .field("patterns", &self.inner.targets.len())
            .finish()
    }
}

impl Default for SafetyFilter {
    /// The built-in word list and allow-list.
    fn default() -> SafetyFilter {
        static BUILTIN: OnceLock<SafetyFilter> = OnceLock::new();
        BUILTIN
            .get_or_init(|| match SafetyFilter::try_builtin() {
                Ok(filter) => filter,
                Err(error) => {
                    // Unreachable with the shipped lists (a test builds them); fail open
                    // loudly rather than take the whole service down.
                    tracing::error!(%error, "the built-in safety lists do not load");
                    SafetyFilter::empty()
                }
            })
            .clone()
    }
}

impl SafetyFilter {
    /// A filter that matches nothing.
    pub fn empty() -> SafetyFilter {
        SafetyFilter {
            inner: Arc::new(Inner {
                automaton: None,
                targets: Vec::new(),
                entries: Vec::new(),
            }),
        }
    }

    /// Builds the built-in lists afresh, reporting any defect in them
    /// ([`SafetyFilter::default`] is the same filter, built once).
    pub fn try_builtin() -> Result<SafetyFilter, SafetyError> {
        SafetyFilterBuilder::builtin()?.build()
    }

    /// The built-in lists plus `words` and `allow`, one entry each in the list format
    /// (`*` markers allowed). Errors name `extra words` or `extra allow-list` and the
    /// entry's 1-based position.
    pub fn with_extra(words: &[&str], allow: &[&str]) -> Result<SafetyFilter, SafetyError> {
        let mut builder = SafetyFilterBuilder::builtin()?;
        builder.entries("extra words", words.iter().copied(), false)?;
        builder.entries("extra allow-list", allow.iter().copied(), true)?;
        builder.build()
    }

    /// The built-in lists plus the operator's list files.
    pub fn with_files<W, A>(words: &[W], allow: &[A]) -> Result<SafetyFilter, SafetyError>
    where
        W: AsRef<Path>,
        A: AsRef<Path>,
    {
        let mut builder = SafetyFilterBuilder::builtin()?;
        for path in words {
            builder.words_file(path.as_ref())?;
        }
        for path in allow {
            builder.allow_file(path.as_ref())?;
        }
        builder.build()
    }

    /// Starts from the built-in lists (or [`SafetyFilterBuilder::new`] for none).
    pub fn builder() -> Result<SafetyFilterBuilder, SafetyError> {
        SafetyFilterBuilder::builtin()
    }

    /// Every match in `text`, in text order, each widened to its word.
    pub fn check(&self, text: &str) -> Vec<Match> {
        self.find(text).matches()
    }

    /// Whether `text` has no match.
    pub fn is_clean(&self, text: &str) -> bool {
        self.find(text).hits.is_empty()
    }

    /// `text` with each matched character replaced by `_` (see the module docs): the same
    /// number of characters, everything else untouched.
    pub fn mask(&self, text: &str) -> String {
        self.find(text).mask(text)
    }

    /// Like [`mask`](Self::mask), borrowing `text` when it is clean.
    pub fn mask_cow<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let found = self.find(text);
        if found.hits.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(found.mask(text))
        }
    }

    /// Runs the automaton and keeps the verified, allowed-out, widened, merged matches.
    fn find(&self, text: &str) -> Found<'_> {
        let inner = &*self.inner;
        let Some(automaton) = &inner.automaton else {
            return Found::none(self);
        };
        let stream = Stream::new(text);
        let mut hits: Vec<Hit> = Vec::new();
        let mut allowed: Vec<(usize, usize)> = Vec::new();
        for m in automaton.find_overlapping_iter(stream.bytes.as_slice()) {
            let (start, end) = (m.start(), m.end());
            let Some(targets) = inner.targets.get(m.pattern().as_usize()) else {
                continue;
            };
            for &id in targets {
                let entry = &inner.entries[id];
                if !runs_hold(&stream, start, &entry.runs)
                    || (entry.boundary.needs_start() && !starts_word(&stream, start))
                    || (entry.boundary.needs_end() && !ends_word(&stream, end))
                {
                    continue;
                }
                if entry.allow {
                    allowed.push((start, end));
                } else if letters_hold(&stream, start, end) {
                    hits.push(Hit {
                        start,
                        end,
                        len: end - start,
                        entry: id,
                    });
                }
            }
        }
        if hits.is_empty() {
            return Found::none(self);
        }
        if !allowed.is_empty() {
            let cover = Cover::new(allowed);
            hits.retain(|hit| !cover.covers(hit.start, hit.end));
        }
        widen(&stream, &mut hits);
        Found {
            filter: self,
            stream,
            hits,
        }
    }
}

/// A verified match in stream units.
#[derive(Clone, Copy, Debug)]
struct Hit {
    start: usize,
    end: usize,
    /// The length of the entry's own match, before widening: of the entries that flag one
    /// word, the longest match names it (`bullshitting` is `bullshit`, not `shit`).
    len: usize,
    entry: usize,
}

/// The outcome of one [`SafetyFilter::find`].
struct Found<'f> {
    filter: &'f SafetyFilter,
    stream: Stream,
    /// Disjoint, in order.
    hits: Vec<Hit>,
}

impl<'f> Found<'f> {
    fn none(filter: &'f SafetyFilter) -> Found<'f> {
        Found {
            filter,
            stream: Stream::default(),
            hits: Vec::new(),
        }
    }

    /// The hits as original byte ranges and entry words.
    fn matches(&self) -> Vec<Match> {
        self.hits
            .iter()
            .map(|hit| Match {
                range: self.range(hit),
                word: self.filter.inner.entries[hit.entry].word.clone(),
            })
            .collect()
    }

    /// A hit's original byte range.
    fn range(&self, hit: &Hit) -> Range<usize> {
        let units = &self.stream.units;
        units[hit.start].start..units[hit.end - 1].end
    }

    /// `text` with the matched characters masked.
    fn mask(&self, text: &str) -> String {
        if self.hits.is_empty() {
            return text.to_owned();
        }
        // The original byte ranges to mask, in order: each hit's bytes are scanned again
        // and every character that made a letter is masked; the separators dropped inside
        // a spaced-out word, and invisible characters, are kept.
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut raws = Raws::default();
        for hit in &self.hits {
            let range = self.range(hit);
            let Some(part) = text.get(range.clone()) else {
                continue;
            };
            raws.0.clear();
            normalize::scan(part, &mut raws);
            for raw in raws.0.iter().filter(|raw| raw.kind != Kind::Sep) {
                let (start, end) = (range.start + raw.start, range.start + raw.end);
                match ranges.last_mut() {
                    Some(prev) if start <= prev.end => prev.end = prev.end.max(end),
                    _ => ranges.push(start..end),
                }
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut next = ranges.iter().peekable();
        for (at, c) in text.char_indices() {
            while next.peek().is_some_and(|r| r.end <= at) {
                next.next();
            }
            match next.peek() {
                Some(r) if r.start <= at => out.push('_'),
                _ => out.push(c),
            }
        }
        out
    }
}

/// Whether the stream's runs from `start` are at least the entry's `runs`.
fn runs_hold(stream: &Stream, start: usize, runs: &[u8]) -> bool {
    stream.units[start..]
        .iter()
        .zip(runs)
        .all(|(unit, &need)| unit.run >= need)
}

/// Whether a match is made of real letters, at least as many as digits: `a$$` and `sh1t`
/// are words, `455`, `a55` (a hex colour) and `$$$` are not.
fn letters_hold(stream: &Stream, start: usize, end: usize) -> bool {
    let (letters, digits) = stream.units[start..end]
        .iter()
        .fold((0u32, 0u32), |(l, d), unit| {
            (l + u32::from(unit.letters), d + u32::from(unit.digits))
        });
    letters > 0 && letters >= digits
}

/// How far a word-boundary check looks past weak units (digits, symbols) at a word's
/// edge: `!!!shit` starts a word, a match behind 64 digits does not. The bound keeps a
/// text of one enormous digit-and-letter word linear.
const MAX_WEAK_EDGE: usize = 64;

/// Whether a match starting at unit `start` starts its word: nothing but weak units lie
/// between it and the separator (or the text's start) before it.
fn starts_word(stream: &Stream, start: usize) -> bool {
    let before = &stream.units[..start];
    for (i, unit) in before.iter().rev().enumerate().take(MAX_WEAK_EDGE) {
        if stream.bytes[start - 1 - i] == SEP {
            return true;
        }
        if !unit.weak {
            return false;
        }
    }
    start <= MAX_WEAK_EDGE
}

/// Whether a match ending before unit `end` ends its word (weak units may follow it).
fn ends_word(stream: &Stream, end: usize) -> bool {
    let after = &stream.units[end..];
    for (i, unit) in after.iter().enumerate().take(MAX_WEAK_EDGE) {
        if stream.bytes[end + i] == SEP {
            return true;
        }
        if !unit.weak {
            return false;
        }
    }
    after.len() <= MAX_WEAK_EDGE
}

/// Allowed spans, for "is this hit inside one of them" in `O(log n)`.
struct Cover {
    /// Sorted by start.
    spans: Vec<(usize, usize)>,
    /// `reach[i]`: the furthest end among `spans[..=i]`.
    reach: Vec<usize>,
}

impl Cover {
    fn new(mut spans: Vec<(usize, usize)>) -> Cover {
        spans.sort_unstable();
        let mut furthest = 0;
        let reach = spans
            .iter()
            .map(|&(_, end)| {
                furthest = furthest.max(end);
                furthest
            })
            .collect();
        Cover { spans, reach }
    }

    fn covers(&self, start: usize, end: usize) -> bool {
        // The spans that start at or before `start`; one of them must reach `end`.
        let n = self.spans.partition_point(|&(s, _)| s <= start);
        n > 0 && self.reach[n - 1] >= end
    }
}

/// Widens each hit to its word (without the weak units at the word's edges), then sorts
/// and merges hits that share a word. Linear: each word is walked once.
fn widen(stream: &Stream, hits: &mut Vec<Hit>) {
    hits.sort_unstable_by_key(|hit| (hit.start, Reverse(hit.end)));
    let (bytes, units) = (&stream.bytes, &stream.units);
    // The end of the last word walked, and its strong part (without weak edge units).
    let mut word_end = 0;
    let mut strong = (0, 0);
    for hit in hits.iter_mut() {
        if hit.start >= word_end {
            let mut ws = hit.start;
            while ws > 0 && bytes[ws - 1] != SEP {
                ws -= 1;
            }
            let mut we = hit.end;
            while we < bytes.len() && bytes[we] != SEP {
                we += 1;
            }
            word_end = we;
            let mut ss = ws;
            while ss < we && units[ss].weak {
                ss += 1;
            }
            let mut se = we;
            while se > ss && units[se - 1].weak {
                se -= 1;
            }
            strong = (ss, se);
        }
        hit.start = hit.start.min(strong.0);
        hit.end = hit.end.max(strong.1);
    }
    hits.sort_unstable_by_key(|hit| (hit.start, Reverse(hit.end), Reverse(hit.len), hit.entry));
    let mut reach = 0;
    hits.retain(|hit| {
        let keep = hit.end > reach;
        reach = reach.max(hit.end);
        keep
    });
}

/// Builds a [`SafetyFilter`] from lists: the built-in ones, the operator's files, or
/// entries given in code.
#[derive(Debug, Clone, Default)]
pub struct SafetyFilterBuilder {
    entries: Vec<Entry>,
}

impl SafetyFilterBuilder {
    /// No lists at all.
    pub fn new() -> SafetyFilterBuilder {
        SafetyFilterBuilder::default()
    }

    /// The built-in word list and allow-list.
    pub fn builtin() -> Result<SafetyFilterBuilder, SafetyError> {
        let mut builder = SafetyFilterBuilder::new();
        builder.words("appview/safety/words.txt", DEFAULT_WORDS)?;
        builder.allow("appview/safety/allow.txt", DEFAULT_ALLOW)?;
        Ok(builder)
    }

    /// Adds the blocked words of a list text; `file` names it in errors.
    pub fn words(&mut self, file: &str, text: &str) -> Result<&mut Self, SafetyError> {
        self.entries(file, text.lines(), false)
    }

    /// Adds the allowed words of a list text; `file` names it in errors.
    pub fn allow(&mut self, file: &str, text: &str) -> Result<&mut Self, SafetyError> {
        self.entries(file, text.lines(), true)
    }

    /// Adds the blocked words of a list file.
    pub fn words_file(&mut self, path: &Path) -> Result<&mut Self, SafetyError> {
        let text = read(path)?;
        self.words(&path.display().to_string(), &text)
    }

    /// Adds the allowed words of a list file.
    pub fn allow_file(&mut self, path: &Path) -> Result<&mut Self, SafetyError> {
        let text = read(path)?;
        self.allow(&path.display().to_string(), &text)
    }

    fn entries<'l>(
        &mut self,
        file: &str,
        lines: impl Iterator<Item = &'l str>,
        allow: bool,
    ) -> Result<&mut Self, SafetyError> {
        for (i, line) in lines.enumerate() {
            match list::parse_line(line, allow) {
                Ok(Some(entry)) => self.entries.push(entry),
                Ok(None) => {}
                Err(reason) => {
                    return Err(SafetyError::Entry {
                        file: file.to_owned(),
                        line: i + 1,
                        entry: line.split_once('#').map_or(line, |(e, _)| e).trim().into(),
                        reason,
                    });
                }
            }
        }
        Ok(self)
    }

    /// Compiles the lists into one automaton.
    pub fn build(&self) -> Result<SafetyFilter, SafetyError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(self.entries.len());
        let mut seen = HashSet::new();
        for entry in &self.entries {
            // The same entry listed twice (built-in and operator's) is one entry.
            let key = (
                entry.key.clone(),
                entry.runs.clone(),
                entry.boundary,
                entry.allow,
            );
            if seen.insert(key) {
                entries.push(entry.clone());
            }
        }
        let mut ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut targets: Vec<Vec<usize>> = Vec::new();
        for (id, entry) in entries.iter().enumerate() {
            for pattern in entry.patterns() {
                let at = *ids.entry(pattern.clone()).or_insert_with(|| {
                    patterns.push(pattern);
                    targets.push(Vec::new());
                    targets.len() - 1
                });
                targets[at].push(id);
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            // A DFA is the fastest search; past its size limits, let the crate choose.
            let dfa = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&patterns);
            Some(match dfa {
                Ok(dfa) => dfa,
                Err(_) => AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)?,
            })
        };
        Ok(SafetyFilter {
            inner: Arc::new(Inner {
                automaton,
                targets,
                entries,
            }),
        })
    }
}

fn read(path: &Path) -> Result<String, SafetyError> {
    std::fs::read_to_string(path).map_err(|error| SafetyError::Read {
        path: path.to_owned(),
        error,
    })
}
