//! Safety filter throughput on realistic AC texts: moods (~100 bytes) and KidLisp sources
//! (~2 KB), mostly clean with a few flagged, as the publishing proxy and ingest see them.
//!
//! Prints, for each corpus and operation (`check`, `mask`, `is_clean`), MB/s and checks/s
//! over about a second of repeated passes, and the time to build the built-in filter.
//!
//! Run: `cargo bench -p atelier-appview --bench safety` (release build).

use std::hint::black_box;
use std::time::{Duration, Instant};

use atelier_appview::safety::SafetyFilter;

const MOODS: &str = include_str!("../safety/testdata/moods.txt");
const KIDLISP: &str = include_str!("../safety/testdata/kidlisp.lisp");

/// Words moods are made of; a few are listed words and their variants.
const WORDS: &[&str] = &[
    "feeling",
    "good",
    "about",
    "this",
    "painting",
    "today",
    "just",
    "finished",
    "a",
    "tape",
    "of",
    "the",
    "spiral",
    "garden",
    "sleepy",
    "going",
    "to",
    "draw",
    "one",
    "more",
    "thing",
    "anyone",
    "else",
    "think",
    "new",
    "brush",
    "is",
    "way",
    "too",
    "thick",
    "listening",
    "rain",
    "making",
    "tiny",
    "pixel",
    "frogs",
    "my",
    "cat",
    "walked",
    "on",
    "keyboard",
    "lol",
    "kidlisp",
    "repeat",
    "clicked!!",
    "coffee",
    "wand",
    "piece",
    "favourite",
    "class",
    "assistant",
    "cocktail",
    "Scunthorpe",
    "🎨",
    "café",
    "naïve",
    "日本",
    "@jeffrey",
    "3",
    "colours",
    "sunset",
    "glitch",
    "wip:",
    "city",
    "night",
    "with",
    "blinking",
    "windows",
];
const FLAGGED: &[&str] = &[
    "shit",
    "FUCK",
    "a$$",
    "f u c k",
    "sh1tty",
    "fuuuck",
    "ｆｕｃｋ",
];

/// SplitMix64, seeded: the same corpus every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// About 2,000 moods of about 100 bytes; one in twenty has a flagged word.
fn moods() -> Vec<String> {
    let mut rng = Rng(0xAC_0001);
    let mut out: Vec<String> = MOODS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    while out.len() < 2_000 {
        let mut mood = String::new();
        while mood.len() < 100 {
            if !mood.is_empty() {
                mood.push(' ');
            }
            let word = if rng.next().is_multiple_of(400) {
                rng.pick(FLAGGED)
            } else {
                rng.pick(WORDS)
            };
            mood.push_str(word);
        }
        out.push(mood);
    }
    out
}

/// 200 KidLisp sources of about 2 KB: the sample with its numbers varied; one in ten has
/// a flagged word in a comment.
fn sources() -> Vec<String> {
    let mut rng = Rng(0xAC_0002);
    (0..200u32)
        .map(|i| {
            let mut source = KIDLISP.replace("48", &(rng.next() % 100).to_string());
            if i.is_multiple_of(10) {
                source.push_str("; this shit is hard\n");
            }
            source
        })
        .collect()
}

/// Runs `op` over `texts` for about `budget`, and prints MB/s and checks/s.
fn measure(label: &str, texts: &[String], budget: Duration, op: impl Fn(&str) -> usize) {
    let bytes_per_pass: usize = texts.iter().map(String::len).sum();
    // Warm up once (and keep the result alive).
    let mut sink = 0usize;
    for text in texts {
        sink = sink.wrapping_add(op(black_box(text)));
    }
    let started = Instant::now();
    let mut passes = 0u64;
    while started.elapsed() < budget {
        for text in texts {
            sink = sink.wrapping_add(op(black_box(text)));
        }
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = bytes_per_pass as f64 * passes as f64;
    let checks = texts.len() as f64 * passes as f64;
    println!(
        "{label:<28} {:>8.1} MB/s {:>12.0} checks/s   ({} texts, {:.0} B avg, sink {})",
        bytes / secs / 1e6,
        checks / secs,
        texts.len(),
        bytes_per_pass as f64 / texts.len() as f64,
        black_box(sink) % 10,
    );
}

fn main() {
    let started = Instant::now();
    let filter = match SafetyFilter::try_builtin() {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("the built-in lists do not load: {error}");
            std::process::exit(1);
        }
    };
    println!(
        "build the built-in filter: {:.2} ms ({filter:?})",
        started.elapsed().as_secs_f64() * 1e3
    );

    let budget = Duration::from_secs(1);
    let moods = moods();
    let flagged = moods.iter().filter(|m| !filter.is_clean(m)).count();
    println!("moods: {} texts, {flagged} flagged", moods.len());
    measure("moods check", &moods, budget, |t| filter.check(t).len());
    measure("moods mask", &moods, budget, |t| filter.mask(t).len());
    measure("moods is_clean", &moods, budget, |t| {
        usize::from(filter.is_clean(t))
    });

    let sources = sources();
    let flagged = sources.iter().filter(|s| !filter.is_clean(s)).count();
    println!("kidlisp: {} sources, {flagged} flagged", sources.len());
    measure("kidlisp check", &sources, budget, |t| filter.check(t).len());
    measure("kidlisp mask", &sources, budget, |t| filter.mask(t).len());

    // One long text: every mood joined, five times over (about 1 MB).
    let long = vec![moods.join(" ").repeat(5)];
    measure("1 MB text check", &long, budget, |t| filter.check(t).len());
}
