//! Strict DAG-CBOR: a table of hand-made inputs, one per rule, each with its specific error;
//! and the interop data-model fixtures, which must validate and hash to their CIDs.

mod support;

use atelier_relay::sync::cbor::{self, CborError, CidRef, Kind, MapKeys, Reader};

/// How a case is read: as one whole value, or as a map whose keys go through `MapKeys`.
#[derive(Clone, Copy)]
enum Via {
    Validate,
    Keys,
    Link,
    Int,
    Text,
}

/// A named input, how to read it, and the result expected.
type Case = (&'static str, Via, Vec<u8>, Result<(), CborError>);

fn check(name: &str, via: Via, input: &[u8], expect: Result<(), CborError>) {
    let got = match via {
        Via::Validate => cbor::validate_dag_cbor(input),
        Via::Keys => (|| {
            let mut r = Reader::new(input);
            let mut keys = MapKeys::new();
            for _ in 0..r.map_len()? {
                keys.next(&mut r)?;
                r.skip()?;
            }
            r.finish()
        })(),
        Via::Link => Reader::new(input).link().map(|_| ()),
        Via::Int => Reader::new(input).int().map(|_| ()),
        Via::Text => Reader::new(input).text().map(|_| ()),
    };
    assert_eq!(got, expect, "{name}: input {}", support::hex(input));
}

fn cid_link(prefix: u8, cid: &[u8]) -> Vec<u8> {
    let mut out = vec![0xd8, 0x2a, 0x58, (cid.len() + 1) as u8, prefix];
    out.extend_from_slice(cid);
    out
}

#[test]
fn every_strictness_rule_has_its_error() {
    use CborError::*;
    let cid = cbor::cid_bytes_for(cbor::DAG_CBOR, b"x");
    let good_link = cid_link(0x00, &cid);
    let bad_prefix = cid_link(0x01, &cid);
    let mut cidv0 = vec![0xd8, 0x2a, 0x58, 35, 0x00, 0x12, 0x20];
    cidv0.extend_from_slice(&[7; 32]);
    let mut short_cid = cid_link(0x00, &cid);
    short_cid.truncate(short_cid.len() - 1);
    let l = short_cid.len();
    short_cid[3] = (l - 4) as u8;

    let cases: Vec<Case> = vec![
        ("shortest int", Via::Validate, vec![0x17], Ok(())),
        ("valid link", Via::Validate, good_link.clone(), Ok(())),
        (
            "non-shortest int (1 byte)",
            Via::Validate,
            vec![0x18, 0x17],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest int (2 bytes)",
            Via::Validate,
            vec![0x19, 0x00, 0xff],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest int (4 bytes)",
            Via::Validate,
            vec![0x1a, 0, 0, 0xff, 0xff],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest int (8 bytes)",
            Via::Validate,
            vec![0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest negative",
            Via::Validate,
            vec![0x38, 0x00],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest length",
            Via::Validate,
            vec![0x78, 0x01, b'a'],
            Err(NonCanonicalInteger { at: 0 }),
        ),
        (
            "non-shortest array length",
            Via::Validate,
            vec![0x81, 0x98, 0x01, 0x00],
            Err(NonCanonicalInteger { at: 1 }),
        ),
        (
            "indefinite map",
            Via::Validate,
            vec![0xbf, 0x61, b'a', 0x01, 0xff],
            Err(IndefiniteLength { at: 0 }),
        ),
        (
            "indefinite array",
            Via::Validate,
            vec![0x9f, 0xff],
            Err(IndefiniteLength { at: 0 }),
        ),
        (
            "indefinite text",
            Via::Validate,
            vec![0x7f, 0x61, b'a', 0xff],
            Err(IndefiniteLength { at: 0 }),
        ),
        (
            "indefinite bytes",
            Via::Validate,
            vec![0x5f, 0xff],
            Err(IndefiniteLength { at: 0 }),
        ),
        (
            "stray break",
            Via::Validate,
            vec![0xff],
            Err(UnexpectedBreak { at: 0 }),
        ),
        (
            "half float",
            Via::Validate,
            vec![0xf9, 0x3c, 0x00],
            Err(Float { at: 0 }),
        ),
        (
            "single float",
            Via::Validate,
            vec![0xfa, 0x3f, 0x80, 0, 0],
            Err(Float { at: 0 }),
        ),
        (
            "double float in map",
            Via::Validate,
            vec![0xa1, 0x61, b'a', 0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
            Err(Float { at: 3 }),
        ),
        (
            "undefined",
            Via::Validate,
            vec![0xf7],
            Err(UnsupportedSimple { value: 23, at: 0 }),
        ),
        (
            "simple 16",
            Via::Validate,
            vec![0xf0],
            Err(UnsupportedSimple { value: 16, at: 0 }),
        ),
        (
            "two-byte simple",
            Via::Validate,
            vec![0xf8, 0x20],
            Err(UnsupportedSimple { value: 0x20, at: 0 }),
        ),
        (
            "reserved info",
            Via::Validate,
            vec![0x1c],
            Err(ReservedInfo { info: 28, at: 0 }),
        ),
        (
            "wrong key order (bytewise)",
            Via::Validate,
            vec![0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02],
            Err(MapKeyOrder {
                key: "a".into(),
                at: 4,
            }),
        ),
        (
            "wrong key order (length first)",
            Via::Validate,
            vec![0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02],
            Err(MapKeyOrder {
                key: "b".into(),
                at: 5,
            }),
        ),
        (
            "wrong key order via MapKeys",
            Via::Keys,
            vec![0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02],
            Err(MapKeyOrder {
                key: "a".into(),
                at: 4,
            }),
        ),
        (
            "duplicate key",
            Via::Validate,
            vec![0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02],
            Err(DuplicateKey {
                key: "a".into(),
                at: 4,
            }),
        ),
        (
            "duplicate key via MapKeys",
            Via::Keys,
            vec![0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02],
            Err(DuplicateKey {
                key: "a".into(),
                at: 4,
            }),
        ),
        (
            "non-text key",
            Via::Validate,
            vec![0xa1, 0x01, 0x02],
            Err(WrongType {
                expected: "text map key",
                found: Kind::Uint,
                at: 1,
            }),
        ),
        (
            "tag other than 42",
            Via::Validate,
            vec![0xc1, 0x00],
            Err(UnsupportedTag { tag: 1, at: 0 }),
        ),
        (
            "tag 42 as Reader::link wants",
            Via::Link,
            vec![0xd8, 0x2b, 0x40],
            Err(UnsupportedTag { tag: 43, at: 0 }),
        ),
        (
            "link without 0x00 prefix",
            Via::Validate,
            bad_prefix,
            Err(BadLink {
                at: 0,
                reason: "missing the 0x00 multibase prefix",
            }),
        ),
        (
            "link over text",
            Via::Validate,
            vec![0xd8, 0x2a, 0x61, b'a'],
            Err(BadLink {
                at: 0,
                reason: "tag 42 must hold a byte string",
            }),
        ),
        (
            "empty link",
            Via::Validate,
            vec![0xd8, 0x2a, 0x40],
            Err(BadLink {
                at: 0,
                reason: "empty byte string",
            }),
        ),
        (
            "CIDv0 link",
            Via::Validate,
            cidv0,
            Err(BadLink {
                at: 0,
                reason: "CIDv0 is not allowed",
            }),
        ),
        (
            "truncated CID in link",
            Via::Validate,
            short_cid,
            Err(BadLink {
                at: 0,
                reason: "truncated CID",
            }),
        ),
        (
            "truncated int",
            Via::Validate,
            vec![0x19, 0x01],
            Err(UnexpectedEof { at: 2 }),
        ),
        (
            "truncated array",
            Via::Validate,
            vec![0x82, 0x01],
            Err(LengthTooLarge { len: 2, at: 0 }),
        ),
        (
            "truncated map",
            Via::Validate,
            vec![0xa1, 0x61],
            Err(LengthTooLarge { len: 1, at: 0 }),
        ),
        (
            "truncated text",
            Via::Validate,
            vec![0x63, b'a', b'b'],
            Err(LengthTooLarge { len: 3, at: 0 }),
        ),
        (
            "truncated nested",
            Via::Validate,
            vec![0x81, 0x81],
            Err(LengthTooLarge { len: 1, at: 1 }),
        ),
        (
            "truncated map value",
            Via::Validate,
            vec![0xa1, 0x61, b'a'],
            Err(UnexpectedEof { at: 3 }),
        ),
        (
            "empty input",
            Via::Validate,
            vec![],
            Err(UnexpectedEof { at: 0 }),
        ),
        (
            "huge byte length",
            Via::Validate,
            vec![0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            Err(LengthTooLarge {
                len: i64::MAX as u64,
                at: 0,
            }),
        ),
        (
            "huge array length",
            Via::Validate,
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            Err(LengthTooLarge {
                len: u64::MAX,
                at: 0,
            }),
        ),
        (
            "huge map length",
            Via::Validate,
            vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x00],
            Err(LengthTooLarge {
                len: u32::MAX as u64,
                at: 0,
            }),
        ),
        (
            "invalid UTF-8",
            Via::Validate,
            vec![0x62, 0xc3, 0x28],
            Err(InvalidUtf8 { at: 0 }),
        ),
        (
            "invalid UTF-8 via text",
            Via::Text,
            vec![0x61, 0xff],
            Err(InvalidUtf8 { at: 0 }),
        ),
        (
            "trailing bytes",
            Via::Validate,
            vec![0x01, 0x02],
            Err(TrailingBytes { at: 1 }),
        ),
        (
            "uint beyond i64",
            Via::Int,
            vec![0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            Err(IntegerOverflow { at: 0 }),
        ),
        (
            "int wants a number",
            Via::Int,
            vec![0x61, b'a'],
            Err(WrongType {
                expected: "integer",
                found: Kind::Text,
                at: 0,
            }),
        ),
        (
            "too deep",
            Via::Validate,
            vec![0x81; cbor::MAX_DEPTH + 1]
                .into_iter()
                .chain([0x00])
                .collect(),
            Err(TooDeep {
                at: cbor::MAX_DEPTH,
            }),
        ),
        (
            "deep but allowed",
            Via::Validate,
            vec![0x81; cbor::MAX_DEPTH]
                .into_iter()
                .chain([0x00])
                .collect(),
            Ok(()),
        ),
    ];
    for (name, via, input, expect) in &cases {
        check(name, *via, input, expect.clone());
    }
    // Every error displays with its offset.
    let shown = CborError::MapKeyOrder {
        key: "a".into(),
        at: 4,
    }
    .to_string();
    assert!(shown.contains("byte 4"), "{shown}");
    println!("{} strictness cases", cases.len());
}

#[test]
fn typed_accessors() {
    // {"a": null, "b": <link>, "c": false}
    let cid = cbor::cid_bytes_for(cbor::RAW, b"blob");
    let mut buf = vec![0xa3, 0x61, b'a', 0xf6, 0x61, b'b'];
    buf.extend(cid_link(0, &cid));
    buf.extend([0x61, b'c', 0xf4]);
    let mut r = Reader::new(&buf);
    let mut keys = MapKeys::new();
    assert_eq!(r.map_len(), Ok(3));
    assert_eq!(keys.next(&mut r), Ok("a"));
    assert_eq!(r.peek_kind(), Ok(Kind::Simple));
    assert_eq!(r.try_null(), Ok(true));
    assert_eq!(keys.next(&mut r), Ok("b"));
    assert_eq!(r.try_null(), Ok(false));
    let start = r.position();
    let span = r.clone().value_span().expect("span");
    let link = r.link().expect("link");
    assert_eq!(span, &buf[start..r.position()]);
    assert_eq!(link.bytes(), &cid[..]);
    assert_eq!(link.codec(), cbor::RAW);
    assert!(link.to_string().starts_with("bafkrei"), "{link}");
    assert_eq!(CidRef::from_bytes(&cid), Ok(link));
    assert_eq!(keys.next(&mut r), Ok("c"));
    assert_eq!(r.bool(), Ok(false));
    assert!(r.is_empty());
    assert_eq!(r.remaining(), &[] as &[u8]);
}

#[test]
fn interop_data_model_fixtures_validate() {
    let path = support::interop_dir().join("data-model/data-model-fixtures.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixtures: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
    assert!(!fixtures.is_empty());
    for (i, f) in fixtures.iter().enumerate() {
        let b64 = f["cbor_base64"].as_str().expect("cbor_base64");
        let bytes = data_encoding::BASE64_NOPAD
            .decode(b64.trim_end_matches('=').as_bytes())
            .expect("base64");
        cbor::validate_dag_cbor(&bytes).unwrap_or_else(|e| panic!("fixture {i}: {e}"));
        let cid = cbor::cid_bytes_for(cbor::DAG_CBOR, &bytes);
        let cid = CidRef::from_bytes(&cid).expect("cid");
        assert_eq!(
            cid.to_string(),
            f["cid"].as_str().expect("cid"),
            "fixture {i}"
        );
        // The independent decoder agrees and re-encodes the same bytes.
        let value: ipld_core::ipld::Ipld = serde_ipld_dagcbor::from_slice(&bytes).expect("decodes");
        assert_eq!(
            serde_ipld_dagcbor::to_vec(&value).expect("encodes"),
            bytes,
            "fixture {i}"
        );
    }
    println!("{} data-model fixtures validate", fixtures.len());
}
