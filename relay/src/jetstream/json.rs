//! Byte-level JSON writing with Go's `encoding/json` string escaping, as legacy Jetstream
//! (goccy/go-json with HTML escaping on) produced it.
//!
//! Everything here appends to a `Vec<u8>` and cannot fail: the callers have already checked
//! their input (strings are UTF-8 because the CBOR reader checked them).

/// Lowercase hex digits, as Go writes `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal, escaped the way Go's HTML-safe encoder does.
///
/// - `"` and `\` are backslash-escaped; `\n`, `\r` and `\t` use their short forms;
/// - other bytes below 0x20 and `<`, `>`, `&` become `\u00xx`;
/// - U+2028 and U+2029 become `\u2028` and `\u2029`;
/// - every other character, including other non-ASCII, is copied as is.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Start of the run of bytes not yet copied.
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f | b'<' | b'>' | b'&' => None,
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(&bytes[run..i]);
                out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                run = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[run..i]);
        match escape {
            Some(short) => out.extend_from_slice(short),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        i += 1;
        run = i;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends `"key":` with `key` escaped by [`push_str`].
pub(crate) fn push_key(out: &mut Vec<u8>, key: &str) {
    push_str(out, key);
    out.push(b':');
}

/// Appends a signed integer in decimal, exactly.
pub(crate) fn push_i64(out: &mut Vec<u8>, n: i64) {
    // 20 digits hold u64::MAX; the sign is written separately.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut m = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `true` or `false`.
pub(crate) fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// Appends the multibase base32 form of a binary CID (`b` + lowercase RFC 4648, no padding)
/// without the intermediate `String` that `Display` builds.
pub(crate) fn push_cid_base32(out: &mut Vec<u8>, cid: &[u8]) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    out.reserve(1 + (cid.len() * 8).div_ceil(5));
    out.push(b'b');
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &b in cid {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize]);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escaping() {
        let cases = [
            ("plain", r#""plain""#),
            ("a<b>c&d", r#""a\u003cb\u003ec\u0026d""#),
            ("q\"\\", r#""q\"\\""#),
            // DEL (0x7f) stays raw in Go.
            (
                "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
                "\"\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\u{7f}\"",
            ),
            ("\u{2028}x\u{2029}", r#""\u2028x\u2029""#),
            ("é日本🎉\u{2027}", "\"é日本🎉\u{2027}\""),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            push_str(&mut out, input);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn integers() {
        for n in [0, 1, -1, 42, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            push_i64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
