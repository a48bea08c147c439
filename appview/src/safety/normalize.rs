//! Text to the filter's unit stream, keeping the way back to the original bytes.
//!
//! One pass, two layers:
//!
//! 1. [`scan`] reads the text once, character by character, and sends units to a
//!    [`Sink`]: each character becomes zero or more units of the filter's small alphabet
//!    (`a`–`z`, [`AMBIG`] for a `1`/`!`/`|` that may be an `i` or an `l`, [`OTHER`] for a
//!    letter or digit the filter cannot read) or a separator, with the byte range of the
//!    character it came from. ASCII goes through one table lookup; other characters
//!    are decomposed (NFKD) with their marks dropped, then looked up in a small table of
//!    look-alikes (Cyrillic and Greek letters, small capitals, `ß`, `æ`...). Zero-width and
//!    other invisible characters produce nothing, so they neither split nor hide a word; a
//!    combining mark joins the unit before it (it is part of that letter when masking).
//! 2. The folding sink builds, as the units come, the [`Stream`] that Aho-Corasick runs
//!    on: runs of separators become one space, the separators between single-letter words
//!    are dropped (`f u c k`, `f.u.c.k` and `f_u_c_k` all read `fuck`), and repeated
//!    letters collapse into one unit that counts its run (`fuuuuck` reads `fuck` with a
//!    `u` run of 5), so that an entry's doubled letters can still be told apart (`nigger`
//!    from `Niger`). Each unit keeps the original byte range it covers.
//!
//! The word lists go through the same scanner and folder, so the text and the patterns
//! always agree on what a letter is. Masking scans a match's bytes again with a sink that
//! keeps every character ([`Raws`]), to mask letters and keep the separators between them.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// The stream byte for a separator run (whitespace, punctuation, symbols).
pub(crate) const SEP: u8 = b' ';
/// The stream byte for `1`, `!` and `|`: an `i` or an `l`. Entries match it in either
/// place (their `i`s and `l`s get variants with this byte).
pub(crate) const AMBIG: u8 = b'#';
/// The stream byte for a letter or digit the filter cannot read (CJK, Arabic, a `2`...):
/// part of a word, but never part of a match.
pub(crate) const OTHER: u8 = b'*';

/// Separator runs longer than this (in characters) do not join single letters:
/// `f u c k` joins, `f     u` does not.
const MAX_JOIN_GAP: u8 = 3;

/// What a raw unit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A letter read as `a`–`z` (after case folding, NFKD and the look-alike table).
    Letter,
    /// A letter the filter cannot read: part of a word, never of a match.
    Other,
    /// A leet symbol (`@`, `$`, `!`, `|`): a letter inside a word, weak at its edges.
    Symbol,
    /// A digit (leet `0 1 3 4 5 7 8 9`, or another digit as [`OTHER`]).
    Digit,
    /// Whitespace, punctuation or any other symbol.
    Sep,
}

impl Kind {
    /// Digits and symbols are letters only inside a word: at a word's edge they do not
    /// stop a whole-word match (`ass!`, `shit1`) and a match needs real letters too.
    pub(crate) fn is_weak(self) -> bool {
        matches!(self, Kind::Symbol | Kind::Digit)
    }
}

/// How ASCII reads: one entry per byte, `(stream byte, kind)`.
static ASCII: [(u8, Kind); 128] = ascii_table();

const fn ascii_table() -> [(u8, Kind); 128] {
    let mut table = [(SEP, Kind::Sep); 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        if c.is_ascii_lowercase() {
            table[b] = (c, Kind::Letter);
        } else if c.is_ascii_uppercase() {
            table[b] = (c.to_ascii_lowercase(), Kind::Letter);
        }
        b += 1;
    }
    // Leetspeak digits. `1` may be an `i` or an `l`; `2` and `6` stand for no single letter
    // often enough to count, so they stay unreadable (a digit inside a word breaks a match).
    table[b'0' as usize] = (b'o', Kind::Digit);
    table[b'1' as usize] = (AMBIG, Kind::Digit);
    table[b'2' as usize] = (OTHER, Kind::Digit);
    table[b'3' as usize] = (b'e', Kind::Digit);
    table[b'4' as usize] = (b'a', Kind::Digit);
    table[b'5' as usize] = (b's', Kind::Digit);
    table[b'6' as usize] = (OTHER, Kind::Digit);
    table[b'7' as usize] = (b't', Kind::Digit);
    table[b'8' as usize] = (b'b', Kind::Digit);
    table[b'9' as usize] = (b'g', Kind::Digit);
    // Leetspeak symbols. `+` (t) and `(` (c) are left out: they are arithmetic and KidLisp.
    table[b'@' as usize] = (b'a', Kind::Symbol);
    table[b'$' as usize] = (b's', Kind::Symbol);
    table[b'!' as usize] = (AMBIG, Kind::Symbol);
    table[b'|' as usize] = (AMBIG, Kind::Symbol);
    table
}

/// Where [`scan`] sends what it reads, in text order.
pub(crate) trait Sink {
    /// One unit: a letter (`byte` in the filter's alphabet) or a separator ([`Kind::Sep`]),
    /// from the character at `start..end`. A character may send several units.
    fn unit(&mut self, byte: u8, kind: Kind, start: usize, end: usize);
    /// A combining mark at `start..end`: part of the letter right before it, if any.
    fn mark(&mut self, start: usize, end: usize);
}

/// Reads `text` into `sink`.
pub(crate) fn scan(text: &str, sink: &mut impl Sink) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            let (byte, kind) = ASCII[usize::from(b)];
            sink.unit(byte, kind, i, i + 1);
            i += 1;
            continue;
        }
        // `i` is always on a character boundary: it only moves by whole characters.
        let Some(c) = text.get(i..).and_then(|rest| rest.chars().next()) else {
            break;
        };
        let end = i + c.len_utf8();
        scan_char(c, i, end, sink);
        i = end;
    }
}

/// Reads one non-ASCII character.
fn scan_char(c: char, start: usize, end: usize, sink: &mut impl Sink) {
    if is_invisible(c) {
        return;
    }
    if is_combining_mark(c) {
        sink.mark(start, end);
        return;
    }
    decompose_compatible(c, |d| {
        if d.is_ascii() {
            let (byte, kind) = ASCII[d as usize];
            sink.unit(byte, kind, start, end);
        } else if is_combining_mark(d) || is_invisible(d) {
            // `é` is `e` + U+0301: the mark goes, the `e` stays.
        } else {
            for lower in d.to_lowercase() {
                if let Some(letters) = look_alike(lower) {
                    for &byte in letters {
                        sink.unit(byte, Kind::Letter, start, end);
                    }
                } else if lower.is_alphabetic() {
                    sink.unit(OTHER, Kind::Other, start, end);
                } else if lower.is_numeric() {
                    sink.unit(OTHER, Kind::Digit, start, end);
                } else {
                    sink.unit(SEP, Kind::Sep, start, end);
                }
            }
        }
    });
}

/// One unit as [`scan`] read it, with its character's byte range (and marks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Raw {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) kind: Kind,
}

/// A [`Sink`] that keeps every raw unit: for checking list entries and for masking.
#[derive(Debug, Default)]
pub(crate) struct Raws(pub(crate) Vec<Raw>);

impl Sink for Raws {
    fn unit(&mut self, _byte: u8, kind: Kind, start: usize, end: usize) {
        self.0.push(Raw { start, end, kind });
    }

    fn mark(&mut self, start: usize, end: usize) {
        if let Some(last) = self.0.last_mut()
            && last.kind != Kind::Sep
            && last.end == start
        {
            last.end = end;
        }
    }
}

/// One unit of the folded stream: a run of equal letters, or one separator run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    /// The original bytes: from the run's first character to its last (with its marks);
    /// dropped separators of a spaced-out word lie inside.
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// How many equal letters in a row (saturating): entries demand their own runs.
    pub(crate) run: u8,
    /// How many of them are real letters ([`Kind::Letter`] or [`Kind::Other`]) and how
    /// many digits (saturating).
    pub(crate) letters: u8,
    pub(crate) digits: u8,
    /// True when every one of them is a digit or symbol.
    pub(crate) weak: bool,
}

/// The folded text: `bytes[i]` is unit `units[i]`, in the filter's alphabet.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub(crate) bytes: Vec<u8>,
    pub(crate) units: Vec<Unit>,
}

impl Stream {
    /// Scans and folds `text` in one pass.
    pub(crate) fn new(text: &str) -> Stream {
        let mut folder = Folder {
            stream: Stream {
                bytes: Vec::with_capacity(text.len()),
                units: Vec::with_capacity(text.len()),
            },
            word: 0,
            prev_word: 0,
            joinable: false,
            gap: 0,
            last_end: usize::MAX,
        };
        scan(text, &mut folder);
        folder.end_word();
        folder.stream
    }
}

/// Folds units into a [`Stream`] as they come: separator runs become one [`SEP`], the
/// separator between two single-letter words is dropped, equal letters in a row become
/// one unit with a run.
struct Folder {
    stream: Stream,
    /// Letters in the word being read; 0 between words.
    word: u32,
    /// Letters in the word before the current separator run.
    prev_word: u32,
    /// Whether the separator run before the current word may be dropped: the word
    /// before it was a single letter and the run is short. It is dropped if the current
    /// word turns out to be a single letter too.
    joinable: bool,
    /// Characters in the current separator run (saturating).
    gap: u8,
    /// The end of the last unit's character, to tell a new character from another unit
    /// of the same one, and to attach marks.
    last_end: usize,
}

impl Folder {
    /// Closes the word being read: a single letter after a joinable separator joins the
    /// word before it (`f u` reads `fu`).
    fn end_word(&mut self) {
        if self.word == 1 && self.joinable {
            let bytes = &mut self.stream.bytes;
            let units = &mut self.stream.units;
            // The word is one unit, right after its separator.
            let n = units.len();
            if n >= 3 && bytes[n - 2] == SEP {
                bytes.remove(n - 2);
                units.remove(n - 2);
                let n = n - 1;
                if bytes[n - 2] == bytes[n - 1] {
                    let last = units[n - 1];
                    bytes.pop();
                    units.pop();
                    merge(&mut units[n - 2], &last);
                }
            }
        }
        if self.word > 0 {
            self.prev_word = self.word;
        }
        self.word = 0;
    }
}

/// Adds `next`'s letters to the run `unit`.
fn merge(unit: &mut Unit, next: &Unit) {
    unit.end = next.end;
    unit.run = unit.run.saturating_add(next.run);
    unit.letters = unit.letters.saturating_add(next.letters);
    unit.digits = unit.digits.saturating_add(next.digits);
    unit.weak &= next.weak;
}

impl Sink for Folder {
    fn unit(&mut self, byte: u8, kind: Kind, start: usize, end: usize) {
        let new_char = end != self.last_end;
        self.last_end = end;
        if kind == Kind::Sep {
            if self.word > 0 {
                self.end_word();
            } else if let Some(last) = self.stream.units.last_mut()
                && self.stream.bytes.last() == Some(&SEP)
            {
                last.end = end;
                if new_char {
                    self.gap = self.gap.saturating_add(1);
                }
                return;
            } else {
                // The text starts with a separator.
                self.prev_word = 0;
            }
            self.gap = 1;
            self.stream.bytes.push(SEP);
            self.stream.units.push(Unit {
                start,
                end,
                run: 1,
                letters: 0,
                digits: 0,
                weak: false,
            });
            return;
        }
        if self.word == 0 {
            self.joinable = self.prev_word == 1 && self.gap <= MAX_JOIN_GAP;
        }
        self.word = self.word.saturating_add(1);
        let unit = Unit {
            start,
            end,
            run: 1,
            letters: u8::from(matches!(kind, Kind::Letter | Kind::Other)),
            digits: u8::from(kind == Kind::Digit),
            weak: kind.is_weak(),
        };
        if self.stream.bytes.last() == Some(&byte)
            && let Some(last) = self.stream.units.last_mut()
        {
            merge(last, &unit);
        } else {
            self.stream.bytes.push(byte);
            self.stream.units.push(unit);
        }
    }

    fn mark(&mut self, start: usize, end: usize) {
        if self.word > 0
            && self.last_end == start
            && let Some(last) = self.stream.units.last_mut()
        {
            last.end = end;
            self.last_end = end;
        }
    }
}

/// Characters that render as nothing (Unicode's default-ignorable code points): dropped
/// without splitting the word they sit in.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The letters `a` to `z`, for the emoji letter blocks below.
const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// Letters that NFKD leaves alone but that read as Latin letters: Cyrillic and Greek
/// look-alikes, small capitals, Latin letters with built-in strokes, and the emoji letter
/// blocks (negative circled and squared letters, regional indicators). `c` is lowercase.
fn look_alike(c: char) -> Option<&'static [u8]> {
    let emoji_letter = |first: u32| {
        let at = usize::try_from(u32::from(c) - first).ok()?;
        ALPHABET.get(at..=at)
    };
    let letters: &'static [u8] = match c {
        // 🅐 to 🅩, 🅰 to 🆉, 🇦 to 🇿 (🇫🇺🇨🇰 is a pair of "flags").
        '\u{1F150}'..='\u{1F169}' => return emoji_letter(0x1F150),
        '\u{1F170}'..='\u{1F189}' => return emoji_letter(0x1F170),
        '\u{1F1E6}'..='\u{1F1FF}' => return emoji_letter(0x1F1E6),
        // Latin letters NFKD does not decompose.
        'ß' => b"ss",
        'æ' => b"ae",
        'œ' => b"oe",
        'ø' => b"o",
        'ð' | 'đ' => b"d",
        'ł' => b"l",
        'ı' => b"i",
        'ȷ' => b"j",
        'ħ' => b"h",
        'ŧ' => b"t",
        'ŋ' => b"n",
        'ƒ' => b"f",
        'ɑ' => b"a",
        'ɡ' => b"g",
        'ɩ' => b"i",
        // Small capitals (the "fancy text" generators' favourite).
        'ᴀ' => b"a",
        'ʙ' => b"b",
        'ᴄ' => b"c",
        'ᴅ' => b"d",
        'ᴇ' => b"e",
        'ꜰ' => b"f",
        'ɢ' => b"g",
        'ʜ' => b"h",
        'ɪ' => b"i",
        'ᴊ' => b"j",
        'ᴋ' => b"k",
        'ʟ' => b"l",
        'ᴍ' => b"m",
        'ɴ' => b"n",
        'ᴏ' => b"o",
        'ᴘ' => b"p",
        'ʀ' => b"r",
        'ꜱ' => b"s",
        'ᴛ' => b"t",
        'ᴜ' => b"u",
        'ᴠ' => b"v",
        'ᴡ' => b"w",
        'ʏ' => b"y",
        'ᴢ' => b"z",
        // Cyrillic look-alikes (by shape, not by sound).
        '\u{0430}' => b"a", // а
        '\u{0431}' => b"b", // б
        '\u{0432}' => b"b", // в
        '\u{0433}' => b"r", // г
        '\u{0435}' => b"e", // е
        '\u{043A}' => b"k", // к
        '\u{043C}' => b"m", // м
        '\u{043D}' => b"h", // н
        '\u{043E}' => b"o", // о
        '\u{043F}' => b"n", // п
        '\u{0440}' => b"p", // р
        '\u{0441}' => b"c", // с
        '\u{0442}' => b"t", // т
        '\u{0443}' => b"y", // у
        '\u{0445}' => b"x", // х
        '\u{0448}' => b"w", // ш
        '\u{044C}' => b"b", // ь
        '\u{0455}' => b"s", // ѕ
        '\u{0456}' => b"i", // і
        '\u{0458}' => b"j", // ј
        '\u{04AF}' => b"y", // ү
        '\u{04BB}' => b"h", // һ
        '\u{04CF}' => b"l", // ӏ
        '\u{0501}' => b"d", // ԁ
        '\u{051B}' => b"q", // ԛ
        '\u{051D}' => b"w", // ԝ
        // Greek look-alikes.
        '\u{03B1}' => b"a", // α
        '\u{03B2}' => b"b", // β
        '\u{03B3}' => b"y", // γ
        '\u{03B5}' => b"e", // ε
        '\u{03B7}' => b"n", // η
        '\u{03B9}' => b"i", // ι
        '\u{03BA}' => b"k", // κ
        '\u{03BC}' => b"u", // μ
        '\u{03BD}' => b"v", // ν
        '\u{03BF}' => b"o", // ο
        '\u{03C0}' => b"n", // π
        '\u{03C1}' => b"p", // ρ
        '\u{03C2}' => b"c", // ς
        '\u{03C4}' => b"t", // τ
        '\u{03C5}' => b"u", // υ
        '\u{03C7}' => b"x", // χ
        '\u{03C9}' => b"w", // ω
        _ => return None,
    };
    Some(letters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> String {
        String::from_utf8(Stream::new(text).bytes).unwrap_or_default()
    }

    #[test]
    fn folds() {
        for (text, expect) in [
            ("Hello, World!", "helo world#"),
            ("f u c k", "fuck"),
            ("f.u.c.k", "fuck"),
            ("f_u_c_k you", "fuck you"),
            ("a fuck", "a fuck"),
            ("fuuuuck", "fuck"),
            ("sh1t", "sh#t"),
            ("ｆｕｃｋ", "fuck"),
            ("fu\u{200B}ck", "fuck"),
            ("fück", "fuck"),
            ("fu\u{0308}ck", "fuck"),
            ("\u{0441}\u{0443}\u{043A}\u{0430}", "cyka"),
            ("ꜰᴜᴄᴋ", "fuck"),
            ("日本", "*"),
            ("a  b", "ab"),
            ("a     b", "a b"),
        ] {
            assert_eq!(stream(text), expect, "{text:?}");
        }
    }

    #[test]
    fn origins() {
        let s = Stream::new("xé\u{0301}y");
        let unit = &s.units[1];
        assert_eq!((unit.start, unit.end), (1, 5));
        let s = Stream::new("f u u c k");
        let spans: Vec<_> = s.units.iter().map(|u| (u.start, u.end, u.run)).collect();
        assert_eq!(spans, [(0, 1, 1), (2, 5, 2), (6, 7, 1), (8, 9, 1)]);
    }
}
