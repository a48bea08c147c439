//! The few DAG-CBOR writing primitives labels and `subscribeLabels` frames need.
//!
//! Labels and frames are small maps with a fixed set of keys, so they are written directly,
//! keys already in DAG-CBOR order (length first, then bytewise), every head in its shortest
//! form. Writing by hand keeps the signed bytes independent of any serde data model (no
//! risk of a struct being serialized in declaration order) and lets the tests check them
//! against `serde_ipld_dagcbor` as a second, independent encoder.

/// CBOR major type 0: unsigned integer.
const MAJOR_UINT: u8 = 0;
/// CBOR major type 1: negative integer.
const MAJOR_NINT: u8 = 1;
/// CBOR major type 2: byte string.
const MAJOR_BYTES: u8 = 2;
/// CBOR major type 3: text string.
const MAJOR_TEXT: u8 = 3;
/// CBOR major type 4: array.
const MAJOR_ARRAY: u8 = 4;
/// CBOR major type 5: map.
const MAJOR_MAP: u8 = 5;

/// Writes a head (major type and argument) in its shortest form.
pub(crate) fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let major = major << 5;
    match arg {
        0..=23 => out.push(major | arg as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Writes a text string.
pub(crate) fn text(out: &mut Vec<u8>, value: &str) {
    head(out, MAJOR_TEXT, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// Writes a byte string.
pub(crate) fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, MAJOR_BYTES, value.len() as u64);
    out.extend_from_slice(value);
}

/// Writes a signed integer.
pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        head(out, MAJOR_UINT, value.unsigned_abs());
    } else {
        // CBOR stores -1 - n for negative n.
        head(out, MAJOR_NINT, (-1 - value).unsigned_abs());
    }
}

/// Writes `true` or `false`.
pub(crate) fn boolean(out: &mut Vec<u8>, value: bool) {
    out.push(if value { 0xf5 } else { 0xf4 });
}

/// Writes the head of a map of `len` entries; the caller writes the entries in key order.
pub(crate) fn map(out: &mut Vec<u8>, len: usize) {
    head(out, MAJOR_MAP, len as u64);
}

/// Writes the head of an array of `len` items.
pub(crate) fn array(out: &mut Vec<u8>, len: usize) {
    head(out, MAJOR_ARRAY, len as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shortest_form() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (255, &[0x18, 0xff]),
            (256, &[0x19, 0x01, 0x00]),
            (65_536, &[0x1a, 0x00, 0x01, 0x00, 0x00]),
            (1 << 32, &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
            (-1, &[0x20]),
            (-25, &[0x38, 24]),
        ];
        for &(value, expect) in cases {
            let mut out = Vec::new();
            int(&mut out, value);
            assert_eq!(out, expect, "{value}");
        }
    }
}
