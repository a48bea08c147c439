//! A small deterministic mutation fuzzer for decoders, usable on stable Rust.
//!
//! [`mutate`] takes seed inputs (real corpus frames, CARs, blocks) and returns a variant made
//! by one to four stacked mutations: bit flips, interesting bytes, inserts, deletes, CBOR
//! header and length corruption, varint corruption, chunk duplication, splicing between
//! seeds, truncation, or random bytes. [`Rng`] is a seeded xorshift, so a failure reproduces
//! from the seed and iteration number (and the failing input's hex is printed anyway).

/// A xorshift64* pseudo-random generator: tiny, fast, deterministic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed (zero is replaced, since xorshift would stay at zero).
    pub(crate) fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` must be positive).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A random byte.
    pub(crate) fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// True with probability `1 / n`.
    pub(crate) fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Bytes that often sit on decoder edges: CBOR headers (1-, 2-, 4-, 8-byte arguments,
/// indefinite, break), floats, `undefined`, tag 42, varint continuation bits.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x2a, 0x38, 0x40, 0x58, 0x5a, 0x5b,
    0x5f, 0x60, 0x78, 0x7a, 0x7b, 0x7f, 0x80, 0x98, 0x9b, 0x9f, 0xa0, 0xb8, 0xbb, 0xbf, 0xd8, 0xd9,
    0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xff, 0x12, 0x71, 0x55,
];

/// One mutated input derived from `seeds` (which must not be empty).
pub(crate) fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seeds[rng.below(seeds.len())].clone();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, seeds, &mut out);
    }
    out
}

fn mutate_once(rng: &mut Rng, seeds: &[Vec<u8>], out: &mut Vec<u8>) {
    if out.is_empty() {
        let n = 1 + rng.below(16);
        out.extend((0..n).map(|_| rng.byte()));
        return;
    }
    let len = out.len();
    match rng.below(12) {
        // Flip one to eight bits.
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
        }
        // Overwrite a byte with an interesting one.
        1 => {
            let i = rng.below(len);
            out[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        // Small arithmetic on a byte (shifts lengths by a little).
        2 => {
            let i = rng.below(len);
            let delta = rng.below(33) as u8;
            out[i] = if rng.one_in(2) {
                out[i].wrapping_add(delta)
            } else {
                out[i].wrapping_sub(delta)
            };
        }
        // Insert random or interesting bytes.
        3 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    if rng.one_in(2) {
                        rng.byte()
                    } else {
                        INTERESTING[rng.below(INTERESTING.len())]
                    }
                })
                .collect();
            out.splice(i..i, bytes);
        }
        // Delete a range.
        4 => {
            let i = rng.below(len);
            let n = 1 + rng.below(len.min(64));
            out.drain(i..(i + n).min(len));
        }
        // Rewrite a CBOR header: same major type, another argument width or a huge length.
        5 => {
            let i = rng.below(len);
            let major = out[i] & 0xe0;
            let (info, arg): (u8, Vec<u8>) = match rng.below(6) {
                0 => (24, vec![rng.byte()]),
                1 => (25, vec![rng.byte(), rng.byte()]),
                2 => (26, vec![0xff, 0xff, 0xff, rng.byte()]),
                3 => (27, vec![0xff; 8]),
                4 => (31, vec![]),
                _ => (rng.below(24) as u8, vec![]),
            };
            let end = (i + 1 + arg.len()).min(len);
            let mut header = vec![major | info];
            header.extend(arg);
            out.splice(i..end, header);
        }
        // Corrupt a varint: long, non-minimal, or huge.
        6 => {
            let i = rng.below(len);
            let patterns: [&[u8]; 4] = [
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                &[0x80, 0x00],
                &[0xff, 0xff, 0xff, 0x7f],
                &[0x81, 0x80, 0x80, 0x80, 0x00],
            ];
            let p = patterns[rng.below(patterns.len())];
            let end = (i + rng.below(3)).min(len);
            out.splice(i..end, p.iter().copied());
        }
        // Duplicate a chunk elsewhere.
        7 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let chunk = out[i..i + n].to_vec();
            let at = rng.below(len + 1);
            out.splice(at..at, chunk);
        }
        // Splice: this input's prefix with another seed's suffix.
        8 => {
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        // Truncate.
        9 => {
            let cut = rng.below(len);
            out.truncate(cut);
        }
        // Replace a range with random bytes.
        10 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(32));
            for b in &mut out[i..i + n] {
                *b = rng.byte();
            }
        }
        // Rarely: a wholly random input.
        _ => {
            if rng.one_in(8) {
                let n = rng.below(64);
                *out = (0..n).map(|_| rng.byte()).collect();
            } else {
                let i = rng.below(len);
                out[i] = rng.byte();
            }
        }
    }
}

/// Inputs per fuzz target: `ATELIER_FUZZ_ITERS` (underscores allowed), default 20,000 so the
/// test suite stays fast; the long run sets it to 1,000,000.
pub(crate) fn iterations() -> usize {
    match std::env::var("ATELIER_FUZZ_ITERS") {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("ATELIER_FUZZ_ITERS={v:?} is not a number")),
        Err(_) => 20_000,
    }
}

/// The generator's seed: `ATELIER_FUZZ_SEED`, else `default` (each target file has its own).
pub(crate) fn seed(default: u64) -> u64 {
    match std::env::var("ATELIER_FUZZ_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("ATELIER_FUZZ_SEED={v:?} is not a number")),
        Err(_) => default,
    }
}
