// Client-side checks: they fail before anything is sent, with the error names the server
// would use. The fetch here counts calls and must never be called.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import {
  createClient,
  ValidationError,
  AtelierError,
  LIMITS,
  SCHEMAS,
  sniffMediaType,
  validateRecord,
  isDatetime,
  isAtUri,
  isDid,
} from "../atproto.mjs";
import { png, mp4, PAINTING, URI } from "./support.mjs";

function offline() {
  const calls = [];
  const client = createClient({
    baseUrl: "http://127.0.0.1:9",
    retry: { attempts: 2, baseMs: 1 },
    fetch: async (url) => {
      calls.push(url);
      throw new Error("no request may be made in a validation test");
    },
  });
  return { client, calls };
}

/** Asserts `promise` rejects with a ValidationError matching `expect`. */
async function refused(promise, expect) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof ValidationError, `expected a ValidationError, got ${e}`);
    assert.ok(e instanceof AtelierError);
    assert.equal(e.status, 0);
    for (const [k, v] of Object.entries(expect)) assert.equal(e[k], v, `${k} of ${e.message}`);
    return true;
  });
}

test("an oversize PNG thumbnail is refused before upload", async () => {
  const { client, calls } = offline();
  await refused(client.publishPainting({ ...PAINTING, png: png(LIMITS.thumbnailBytes + 1) }), {
    error: "BlobTooLarge",
    limit: LIMITS.thumbnailBytes,
  });
  await refused(client.uploadBlob(new Blob([png(LIMITS.thumbnailBytes + 1)])), { error: "BlobTooLarge" });
  assert.equal(calls.length, 0);
});

test("a thumbnail of exactly the limit passes the size check", async () => {
  const { client, calls } = offline();
  // It gets as far as the network (which this fetch refuses).
  await assert.rejects(
    client.uploadBlob(png(LIMITS.thumbnailBytes), { idempotencyKey: "k" }),
    (e) => e.error === "NetworkError",
  );
  assert.equal(calls.length >= 1, true);
});

test("wrong magic bytes are refused, whatever the file claims", async () => {
  const { client, calls } = offline();
  const gif = new TextEncoder().encode("GIF89a-not-a-png-at-all");
  await refused(client.publishPainting({ ...PAINTING, png: gif }), { error: "UnsupportedMediaType" });
  await refused(client.uploadBlob(new Blob([gif], { type: "image/png" })), { error: "UnsupportedMediaType" });
  // An MP4 is not a thumbnail, and a PNG is not a tape.
  await refused(client.uploadBlob(mp4(), { kind: "image" }), { error: "UnsupportedMediaType" });
  await refused(
    client.publishTape({ slug: "wand-1729177200000", code: "x1", mp4: png() }),
    { error: "UnsupportedMediaType" },
  );
  assert.equal(calls.length, 0);
});

test("an oversize tape is refused before upload", async () => {
  const { client, calls } = offline();
  await refused(client.publishTape({ slug: "wand-1", code: "x1", mp4: mp4(LIMITS.videoBytes + 1) }), {
    error: "BlobTooLarge",
    limit: LIMITS.videoBytes,
  });
  assert.equal(calls.length, 0);
});

test("magic bytes: PNG, JPEG, MP4 (ftyp at offset 4), and nothing else", () => {
  const cases = [
    [png(), "image/png"],
    [new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0, 0, 0]), "image/jpeg"],
    [mp4(), "video/mp4"],
    [new Uint8Array([0x66, 0x74, 0x79, 0x70, 0, 0, 0, 0]), null], // ftyp at 0, not 4
    [new Uint8Array([0x89, 0x50, 0x4e, 0x47]), null], // truncated PNG signature
    [new Uint8Array([]), null],
  ];
  for (const [bytes, expect] of cases) assert.equal(sniffMediaType(bytes), expect, `${[...bytes]}`);
});

test("a mood over 5000 bytes is refused, counting UTF-8 bytes, not characters", async () => {
  const { client, calls } = offline();
  await refused(client.publishMood({ mood: "x".repeat(5001), ref: "r" }), { error: "InvalidRecord", field: "mood" });
  // 2501 characters, 5002 bytes.
  await refused(client.publishMood({ mood: "é".repeat(2501), ref: "r" }), { field: "mood" });
  assert.equal(calls.length, 0);
});

test("missing required fields are named", async () => {
  const { client } = offline();
  const cases = [
    [client.publishKidlisp({ source: "(wipe blue)", ref: "r" }), "code"],
    [client.publishMood({ mood: "hi" }), "ref"],
    [client.publishPiece({ ref: "r" }), "slug"],
    [client.publishPainting({ ...PAINTING, imageUrl: undefined }), "imageUrl"],
    [client.createRecord("painting", { code: "a" }), "slug"],
  ];
  for (const [promise, field] of cases) await refused(promise, { error: "InvalidRecord", field });
});

test("formats and undeclared fields are checked", async () => {
  const { client } = offline();
  await refused(client.publishPainting({ ...PAINTING, imageUrl: "not a url" }), { field: "imageUrl" });
  await refused(client.publishPainting({ ...PAINTING, when: "2026-12-06 15:00" }), { field: "when" });
  await refused(client.publishPainting({ ...PAINTING, acUrl: "https://aesthetic.computer/#a3b" }), { field: "acUrl" });
  await refused(client.publishPainting({ ...PAINTING, code: "abcdefghijk" }), { field: "code" });
  await refused(client.publishPainting({ ...PAINTING, remixOf: { uri: "https://x", cid: "bafy" } }), {
    field: "remixOf.uri",
  });
  await refused(client.follow("alice"), { field: "subject" });
  await refused(client.remix({ uri: URI, cid: "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm" }, "mood", { mood: "x" }), {
    field: "remixOf",
  });
  await refused(client.createRecord("computer.aesthetic.news", { headline: "x" }), { error: "UnknownCollection" });
  await refused(client.remove("https://example.com/x"), { error: "InvalidRequest" });
  await refused(client.uploadBlob(png(), { idempotencyKey: "has spaces" }), { error: "InvalidRequest" });
  await refused(client.uploadBlob(png(), { idempotencyKey: "k".repeat(65) }), { error: "InvalidRequest" });
});

test("string formats", () => {
  for (const ok of ["2026-12-06T15:00:00Z", "2026-12-06T15:00:00.123+01:00"]) assert.ok(isDatetime(ok), ok);
  for (const bad of ["2026-12-06", "2026-12-06T15:00:00", "2026-12-06t15:00:00Z", "2026-12-06T15:00:00-00:00"]) {
    assert.ok(!isDatetime(bad), bad);
  }
  assert.ok(isAtUri(URI));
  assert.ok(isAtUri("at://alice.example/computer.aesthetic.mood/3l"));
  assert.ok(!isAtUri("at://alice/computer.aesthetic.mood/3l/extra"));
  assert.ok(isDid("did:plc:abcdefghijklmnopqrstuvwx") && isDid("did:web:atelier.example"));
  assert.ok(!isDid("did:plc:") && !isDid("alice.example"));
});

test("the kit's SCHEMAS agree with the lexicon JSON", () => {
  const root = fileURLToPath(new URL("../../../lexicons/", import.meta.url));
  for (const [nsid, schema] of Object.entries(SCHEMAS)) {
    const doc = JSON.parse(readFileSync(`${root}${nsid.replaceAll(".", "/")}.json`, "utf8"));
    const lex = doc.defs.main.record;
    assert.deepEqual([...schema.required].sort(), [...lex.required].sort(), `${nsid} required`);
    assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(lex.properties).sort(), `${nsid} fields`);
    for (const [name, rule] of Object.entries(lex.properties)) {
      const mine = schema.properties[name];
      assert.equal(mine.maxLength, rule.maxLength, `${nsid}.${name} maxLength`);
      assert.equal(mine.maxGraphemes, rule.maxGraphemes, `${nsid}.${name} maxGraphemes`);
      assert.equal(mine.format, rule.format, `${nsid}.${name} format`);
      if (rule.type === "blob") {
        assert.deepEqual([...mine.accept], rule.accept, `${nsid}.${name} accept`);
        assert.equal(mine.maxSize, rule.maxSize, `${nsid}.${name} maxSize`);
      }
      if (rule.type === "ref") assert.equal(rule.ref, "com.atproto.repo.strongRef");
    }
  }
});

test("validateRecord accepts a complete record with a blob reference", () => {
  validateRecord("computer.aesthetic.painting", {
    $type: "computer.aesthetic.painting",
    ...PAINTING,
    thumbnail: { $type: "blob", ref: { $link: "bafkrei" }, mimeType: "image/png", size: 10 },
  });
  assert.throws(
    () =>
      validateRecord("computer.aesthetic.painting", {
        ...PAINTING,
        thumbnail: { $type: "blob", ref: { $link: "bafkrei" }, mimeType: "image/gif", size: 10 },
      }),
    (e) => e.field === "thumbnail",
  );
});
