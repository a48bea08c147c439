//! End to end against a real PLC + PDS on loopback: create an account, upload a PNG
//! thumbnail, write a `computer.aesthetic.painting` record, read it back, and see its
//! `#commit` on `com.atproto.sync.subscribeRepos` with the record's block inside.

use std::io::Cursor;
use std::time::Duration;

use atelier_lexicons::data::ipld_to_json;
use atelier_sandbox::Sandbox;
use futures_util::StreamExt;
use ipld_core::ipld::Ipld;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const THUMBNAIL: &[u8] = include_bytes!("data/thumbnail.png");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn painting_with_thumbnail_round_trips_and_appears_on_the_firehose() {
    let sandbox = Sandbox::start().await.expect("sandbox starts (PLC + PDS)");
    let alice = sandbox.create_account("alice").await.expect("account");
    assert!(alice.did.starts_with("did:plc:"), "{}", alice.did);

    // The DID is registered on the sandbox PLC, which serves its document.
    let doc: Value = reqwest::get(format!("{}/{}", sandbox.plc_url(), alice.did))
        .await
        .expect("plc answers")
        .json()
        .await
        .expect("did document is JSON");
    assert_eq!(doc["id"], alice.did);

    // Listen first, so the commit cannot be missed.
    let (mut firehose, _) = tokio_tungstenite::connect_async(sandbox.subscribe_repos_url(None))
        .await
        .expect("subscribeRepos connects");

    let blob = alice
        .upload_blob(THUMBNAIL.to_vec(), "image/png")
        .await
        .expect("upload");
    assert_eq!(blob.blob["mimeType"], "image/png");
    assert_eq!(blob.blob["size"], THUMBNAIL.len());

    let painting = json!({
        "$type": "computer.aesthetic.painting",
        "slug": "2026.11.28.23.59.59.123",
        "code": "a3b",
        "thumbnail": blob.blob,
        "imageUrl": "https://aesthetic.computer/media/paintings/a3b",
        "when": "2026-11-28T23:59:59.123Z",
        "ref": "65a1b2c3d4e5f60718293a4b",
    });
    let catalog = atelier_lexicons::schema::Catalog::builtin().expect("builtin lexicons parse");
    catalog
        .validate_record(
            "computer.aesthetic.painting",
            &painting,
            atelier_lexicons::validate::Mode::Strict,
        )
        .expect("the painting is valid under Atelier's strict rules");

    let created = alice
        .create_record("computer.aesthetic.painting", &painting)
        .await
        .expect("createRecord");
    let rkey = created.uri.rsplit('/').next().expect("rkey").to_owned();
    assert_eq!(
        created.uri,
        format!("at://{}/computer.aesthetic.painting/{rkey}", alice.did)
    );

    // Read back: the same record, the same CID.
    let got = alice
        .get_record("computer.aesthetic.painting", &rkey)
        .await
        .expect("getRecord");
    assert_eq!(got["cid"], created.cid);
    assert_eq!(got["value"], painting);

    // The blob is served back byte for byte.
    let blob_cid = painting["thumbnail"]["ref"]["$link"]
        .as_str()
        .expect("blob cid");
    assert_eq!(alice.get_blob(blob_cid).await.expect("getBlob"), THUMBNAIL);

    // The firehose carries a #commit with a create op for the record, and the record block.
    let path = format!("computer.aesthetic.painting/{rkey}");
    let commit = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = firehose.next().await {
            let Message::Binary(bytes) = msg.expect("websocket frame") else {
                continue;
            };
            let (header, body) = split_frame(&bytes);
            if header.get("t") != Some(&json!("#commit")) {
                continue;
            }
            let ops = body["ops"].as_array().cloned().unwrap_or_default();
            if ops.iter().any(|op| op["path"] == path.as_str()) {
                return body;
            }
        }
        panic!("firehose closed before the painting's commit arrived");
    })
    .await
    .expect("the painting's #commit arrives within 10 s");

    assert_eq!(commit["repo"], alice.did);
    let op = commit["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|op| op["path"] == path.as_str()))
        .expect("op for the painting");
    assert_eq!(op["action"], "create");
    assert_eq!(op["cid"]["$link"], created.cid);

    // The record's block is in the commit's CAR slice and decodes to what we wrote.
    let car = commit["blocks"]["$bytes"]
        .as_str()
        .expect("blocks are bytes");
    let car = data_encoding::BASE64_NOPAD
        .decode(car.trim_end_matches('=').as_bytes())
        .expect("base64");
    let block = car_block(&car, &created.cid).expect("the record's block is in the CAR slice");
    let record: Ipld = serde_ipld_dagcbor::from_slice(&block).expect("record block is DAG-CBOR");
    assert_eq!(ipld_to_json(&record), painting);

    sandbox.shutdown().await;
}

/// Splits a firehose message into its header and body, both as ATProto JSON.
fn split_frame(bytes: &[u8]) -> (Value, Value) {
    let mut reader = Cursor::new(bytes);
    let header: Ipld = serde_ipld_dagcbor::de::from_reader_once(&mut reader).expect("frame header");
    let body: Ipld = serde_ipld_dagcbor::de::from_reader_once(&mut reader).expect("frame body");
    assert_eq!(
        reader.position() as usize,
        bytes.len(),
        "nothing after the body"
    );
    (ipld_to_json(&header), ipld_to_json(&body))
}

/// Finds the block with CID `want` in a CAR v1 file (just enough of CAR for this test; the
/// sync layer has the real, verifying reader).
fn car_block(car: &[u8], want: &str) -> Option<Vec<u8>> {
    let mut rest = car;
    let header_len = read_varint(&mut rest)?;
    rest = rest.get(header_len..)?;
    while !rest.is_empty() {
        let len = read_varint(&mut rest)?;
        let section = rest.get(..len)?;
        rest = &rest[len..];
        let mut cursor = Cursor::new(section);
        let cid = cid::Cid::read_bytes(&mut cursor).ok()?;
        if cid.to_string() == want {
            return Some(section[cursor.position() as usize..].to_vec());
        }
    }
    None
}

fn read_varint(buf: &mut &[u8]) -> Option<usize> {
    let mut value = 0usize;
    for (i, byte) in buf.iter().enumerate().take(9) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some(value);
        }
    }
    None
}
