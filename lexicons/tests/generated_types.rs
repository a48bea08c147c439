//! The generated record types against realistic AC records: every record type round-trips
//! through serde unchanged and carries the NSID its schema declares.

use std::collections::BTreeSet;
use std::fmt::Debug;

use atelier_lexicons::generated::com::atproto::repo::strong_ref::StrongRef;
use atelier_lexicons::generated::computer::aesthetic::graph::follow::Follow;
use atelier_lexicons::generated::computer::aesthetic::kidlisp::Kidlisp;
use atelier_lexicons::generated::computer::aesthetic::mood::Mood;
use atelier_lexicons::generated::computer::aesthetic::news::News;
use atelier_lexicons::generated::computer::aesthetic::painting::Painting;
use atelier_lexicons::generated::computer::aesthetic::paper::Paper;
use atelier_lexicons::generated::computer::aesthetic::performance::{self, Performance};
use atelier_lexicons::generated::computer::aesthetic::piece::Piece;
use atelier_lexicons::generated::computer::aesthetic::tape::Tape;
use atelier_lexicons::generated::{com, computer, schemas::SCHEMAS};
use atelier_lexicons::types::{BlobRef, CidLink, Record};
use serde_json::{Value, json};

/// A CID of the raw codec, as blob refs carry.
const BLOB_CID: &str = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy";

/// A CID of a DAG-CBOR record, as strong refs carry.
const RECORD_CID: &str = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

/// Deserializes `record` as `T`, serializes it back and checks nothing changed, returning
/// the NSID of `T`.
fn round_trip<T: Record + Debug + PartialEq>(record: Value) -> &'static str {
    let typed: T = serde_json::from_value(record.clone())
        .unwrap_or_else(|e| panic!("{}: {e}\n{record:#}", T::NSID));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, record, "{} changed in a round trip", T::NSID);
    assert_eq!(back["$type"], T::NSID, "{} serializes its $type", T::NSID);
    let again: T = serde_json::from_value(back).unwrap();
    assert_eq!(again, typed);
    T::NSID
}

/// A [`round_trip`] for one record type.
type RoundTrip = fn(Value) -> &'static str;

/// One realistic record per record type, with the function that round-trips it.
fn records() -> Vec<(RoundTrip, Value)> {
    vec![
        (
            round_trip::<Painting>,
            json!({
                "$type": "computer.aesthetic.painting",
                "slug": "2023.12.15.23.57.06.646:LazA65bb",
                "code": "hQn",
                "thumbnail": {
                    "$type": "blob",
                    "ref": {"$link": BLOB_CID},
                    "mimeType": "image/png",
                    "size": 48213
                },
                "imageUrl": "https://aesthetic.computer/media/paintings/hQn",
                "recordingUrl": "https://art.aesthetic.computer/LazA65bb.zip",
                "when": "2023-12-15T23:57:06.646Z",
                "ref": "68e835ce87a610b33deb8fb5",
                "remixOf": {
                    "uri": "at://did:plc:tliuubv7lyv2uiknsjbf4ppw/computer.aesthetic.painting/3l6nqz2mdyc2k",
                    "cid": RECORD_CID
                }
            }),
        ),
        (
            round_trip::<Kidlisp>,
            json!({
                "$type": "computer.aesthetic.kidlisp",
                "source": "(wipe blue)\n(ink yellow)\n(line 0 0 width height)",
                "code": "cow",
                "when": "2025-03-02T10:11:12.000Z",
                "ref": "67c42f1e9b1d2a0012ab34cd"
            }),
        ),
        (
            round_trip::<Mood>,
            json!({
                "$type": "computer.aesthetic.mood",
                "mood": "painting all day",
                "when": "2024-06-01T08:00:00.000Z",
                "ref": "665ad3c0f1e2a3b4c5d6e7f8"
            }),
        ),
        (
            round_trip::<Piece>,
            json!({
                "$type": "computer.aesthetic.piece",
                "slug": "wand",
                "when": "2024-10-17T15:00:00.000Z",
                "ref": "671125a0b1c2d3e4f5a6b7c8"
            }),
        ),
        (
            round_trip::<Tape>,
            json!({
                "$type": "computer.aesthetic.tape",
                "slug": "wand-1729177200000",
                "code": "a3x",
                "when": "2024-10-17T15:00:00.000Z",
                "video": {
                    "$type": "blob",
                    "ref": {"$link": BLOB_CID},
                    "mimeType": "video/mp4",
                    "size": 7340032
                },
                "ref": "671125a0b1c2d3e4f5a6b7c9"
            }),
        ),
        (
            round_trip::<News>,
            json!({
                "$type": "computer.aesthetic.news",
                "headline": "KidLisp gets a remix button",
                "body": "Every $code now links to the programs it was remixed from.",
                "link": "https://aesthetic.computer/news",
                "when": "2026-01-05T12:00:00.000Z",
                "tags": ["kidlisp", "release"],
                "ref": "677a7f00a1b2c3d4e5f60718"
            }),
        ),
        (
            round_trip::<Paper>,
            json!({
                "$type": "computer.aesthetic.paper",
                "title": "Aesthetic Computer",
                "slug": "aesthetic-computer-26-arxiv",
                "pdfUrl": "https://papers.aesthetic.computer/aesthetic-computer-26-arxiv.pdf",
                "languages": ["en", "da"],
                "revisions": 3,
                "when": "2026-02-01T00:00:00.000Z",
                "ref": "aesthetic-computer-26"
            }),
        ),
        (
            round_trip::<Follow>,
            json!({
                "$type": "computer.aesthetic.graph.follow",
                "subject": "did:plc:tliuubv7lyv2uiknsjbf4ppw",
                "createdAt": "2026-03-01T09:30:00.000Z"
            }),
        ),
        (
            round_trip::<Performance>,
            json!({
                "$type": "computer.aesthetic.performance",
                "piece": "notepat",
                "startedAt": "2026-03-01T20:00:00.000Z",
                "endedAt": "2026-03-01T20:42:10.500Z",
                "tape": {
                    "uri": "at://did:plc:tliuubv7lyv2uiknsjbf4ppw/computer.aesthetic.tape/3l6nqz2mdyc2l",
                    "cid": RECORD_CID
                },
                "sources": [
                    {
                        "record": {
                            "uri": "at://did:plc:tliuubv7lyv2uiknsjbf4ppw/computer.aesthetic.kidlisp/3l6nqz2mdyc2m",
                            "cid": RECORD_CID
                        },
                        "code": "cow"
                    },
                    {"source": "(wipe black)"}
                ],
                "when": "2026-03-01T20:43:00.000Z"
            }),
        ),
    ]
}

/// The NSIDs of the lexicons whose `main` def is a record.
fn record_schemas() -> BTreeSet<&'static str> {
    SCHEMAS
        .iter()
        .filter(|(_, text)| {
            let doc: Value = serde_json::from_str(text).unwrap();
            doc["defs"]["main"]["type"] == "record"
        })
        .map(|(nsid, _)| *nsid)
        .collect()
}

#[test]
fn every_record_type_round_trips_a_realistic_record() {
    let covered: BTreeSet<&str> = records()
        .into_iter()
        .map(|(round_trip, record)| round_trip(record))
        .collect();
    assert_eq!(
        covered,
        record_schemas(),
        "every record lexicon needs a round-trip fixture here"
    );
}

#[test]
fn nsid_constants_match_the_schema_ids() {
    for (nsid, text) in SCHEMAS {
        let doc: Value = serde_json::from_str(text).unwrap();
        assert_eq!(doc["id"], *nsid, "SCHEMAS key and document id differ");
    }
    let ids: BTreeSet<&str> = SCHEMAS.iter().map(|(nsid, _)| *nsid).collect();
    let constants = [
        (
            com::atproto::repo::strong_ref::NSID,
            "com.atproto.repo.strongRef",
        ),
        (computer::aesthetic::graph::follow::NSID, Follow::NSID),
        (computer::aesthetic::kidlisp::NSID, Kidlisp::NSID),
        (computer::aesthetic::mood::NSID, Mood::NSID),
        (computer::aesthetic::news::NSID, News::NSID),
        (computer::aesthetic::painting::NSID, Painting::NSID),
        (computer::aesthetic::paper::NSID, Paper::NSID),
        (computer::aesthetic::performance::NSID, Performance::NSID),
        (computer::aesthetic::piece::NSID, Piece::NSID),
        (computer::aesthetic::tape::NSID, Tape::NSID),
        (
            computer::aesthetic::actor::defs::NSID,
            "computer.aesthetic.actor.defs",
        ),
        (
            computer::aesthetic::actor::get_profile::NSID,
            "computer.aesthetic.actor.getProfile",
        ),
        (
            computer::aesthetic::feed::defs::NSID,
            "computer.aesthetic.feed.defs",
        ),
        (
            computer::aesthetic::feed::get_atmosphere::NSID,
            "computer.aesthetic.feed.getAtmosphere",
        ),
        (
            computer::aesthetic::feed::get_author_feed::NSID,
            "computer.aesthetic.feed.getAuthorFeed",
        ),
        (
            computer::aesthetic::feed::get_record::NSID,
            "computer.aesthetic.feed.getRecord",
        ),
        (
            computer::aesthetic::feed::get_following::NSID,
            "computer.aesthetic.feed.getFollowing",
        ),
        (
            computer::aesthetic::feed::get_remixes::NSID,
            "computer.aesthetic.feed.getRemixes",
        ),
        (
            computer::aesthetic::feed::search_records::NSID,
            "computer.aesthetic.feed.searchRecords",
        ),
        (
            computer::aesthetic::notification::defs::NSID,
            "computer.aesthetic.notification.defs",
        ),
        (
            computer::aesthetic::notification::get_unread_count::NSID,
            "computer.aesthetic.notification.getUnreadCount",
        ),
        (
            computer::aesthetic::notification::list_notifications::NSID,
            "computer.aesthetic.notification.listNotifications",
        ),
        (
            computer::aesthetic::notification::update_seen::NSID,
            "computer.aesthetic.notification.updateSeen",
        ),
    ];
    for (module_nsid, type_nsid) in constants {
        assert_eq!(module_nsid, type_nsid);
        assert!(ids.contains(module_nsid), "{module_nsid} is not in SCHEMAS");
    }
    assert_eq!(
        constants.len(),
        ids.len(),
        "a lexicon is missing from this test"
    );
    assert_eq!(<Painting as Record>::NSID, "computer.aesthetic.painting");
}

#[test]
fn records_are_built_with_defaults_and_serialize_their_type() {
    let tape = Tape {
        slug: "wand-1729177200000".to_owned(),
        code: "a3x".to_owned(),
        when: "2024-10-17T15:00:00.000Z".to_owned(),
        video: BlobRef {
            r#ref: CidLink {
                link: BLOB_CID.to_owned(),
            },
            mime_type: "video/mp4".to_owned(),
            size: 1024,
        },
        ..Tape::default()
    };
    assert_eq!(
        serde_json::to_value(&tape).unwrap(),
        json!({
            "$type": "computer.aesthetic.tape",
            "slug": "wand-1729177200000",
            "code": "a3x",
            "when": "2024-10-17T15:00:00.000Z",
            "video": {"$type": "blob", "ref": {"$link": BLOB_CID}, "mimeType": "video/mp4", "size": 1024}
        })
    );

    let source = performance::Source {
        record: Some(StrongRef {
            uri: "at://did:plc:x/computer.aesthetic.kidlisp/3l6nqz2mdyc2m".to_owned(),
            cid: RECORD_CID.to_owned(),
        }),
        ..performance::Source::default()
    };
    assert_eq!(
        serde_json::to_value(&source).unwrap(),
        json!({"record": {"uri": "at://did:plc:x/computer.aesthetic.kidlisp/3l6nqz2mdyc2m", "cid": RECORD_CID}})
    );
}

#[test]
fn undeclared_fields_from_the_wild_are_ignored() {
    // AC's painting records carry an undeclared `acUrl`; the typed view drops it.
    let painting: Painting = serde_json::from_value(json!({
        "$type": "computer.aesthetic.painting",
        "slug": "2023.12.15.23.57.06.646",
        "code": "hQn",
        "imageUrl": "https://aesthetic.computer/media/paintings/hQn",
        "when": "2023-12-15T23:57:06.646Z",
        "ref": "68e835ce87a610b33deb8fb5",
        "acUrl": "https://aesthetic.computer/#hQn"
    }))
    .unwrap();
    assert_eq!(painting.code, "hQn");
    assert!(
        serde_json::to_value(&painting)
            .unwrap()
            .get("acUrl")
            .is_none()
    );
}

#[test]
fn type_is_written_but_not_checked_when_reading() {
    // The collection decides a record's type and the validator checks `$type`; the serde types
    // only write it, so a record without one (or embedded without one) still reads.
    let piece: Piece = serde_json::from_value(
        json!({"slug": "wand", "when": "2024-10-17T15:00:00.000Z", "ref": "x"}),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&piece).unwrap()["$type"],
        "computer.aesthetic.piece"
    );
}
