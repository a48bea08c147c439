// Error mapping: the contract's error bodies, answered by a local node:http server (a
// stand-in for the AppView for these error-shape tests only), become AtelierErrors with
// the body's name, message and extra fields.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";

import { createClient, AtelierError, ValidationError } from "../atproto.mjs";
import { startServer, json, png, mp4, PAINTING, URI, CID } from "./support.mjs";

/** What the server answers next, per route (set by each case). */
const next = new Map();
let server;
let client;

before(async () => {
  const answer = (route) => (req, res) => {
    const [status, body] = next.get(route) ?? [500, { error: "InternalServerError", message: "unscripted" }];
    if (typeof body === "string") {
      res.writeHead(status, { "content-type": "text/plain" });
      return res.end(body);
    }
    json(res, status, body);
  };
  server = await startServer({
    "POST /publish/blob": answer("blob"),
    "POST /publish/record": answer("record"),
    "POST /publish/delete": answer("delete"),
    "GET /publish/status": answer("status"),
    "GET /publish/session": answer("session"),
    "GET /xrpc/computer.aesthetic.feed.getRecord": answer("getRecord"),
    "GET /xrpc/computer.aesthetic.notification.getUnreadCount": answer("unread"),
  });
  client = createClient({ baseUrl: server.baseUrl, retry: { attempts: 1 } });
});

after(() => server.close());

/** [name, route, status, body, call, expected fields] */
const CASES = [
  ["blob too large", "blob", 413, { error: "BlobTooLarge", message: "The image is over 1048576 bytes.", limit: 1048576 },
    () => client.uploadBlob(png()), { error: "BlobTooLarge", limit: 1048576 }],
  ["unsupported media type", "blob", 415, { error: "UnsupportedMediaType", message: "Not an accepted type." },
    () => client.uploadBlob(mp4(), { kind: "video" }), { error: "UnsupportedMediaType" }],
  ["not signed in", "blob", 401, { error: "AuthRequired", message: "Sign in first." },
    () => client.uploadBlob(png()), { error: "AuthRequired" }],
  ["scope missing", "record", 403, { error: "ScopeMissing", message: "Sign in again.", scope: "repo:computer.aesthetic.mood" },
    () => client.publishMood({ mood: "hi", ref: "r" }), { error: "ScopeMissing", scope: "repo:computer.aesthetic.mood" }],
  ["upstream failed", "blob", 502, { error: "UpstreamFailed", message: "The PDS did not answer." },
    () => client.uploadBlob(png()), { error: "UpstreamFailed" }],
  ["invalid record", "record", 400, { error: "InvalidRecord", message: "$.code: too long", field: "code" },
    () => client.publishPainting(PAINTING), { error: "InvalidRecord", field: "code" }],
  ["invalid record, the field as a JSON path", "record", 400, { error: "InvalidRecord", message: "$.remixOf.cid: not a cid", field: "$.remixOf.cid" },
    () => client.publishPainting(PAINTING), { error: "InvalidRecord", field: "remixOf.cid" }],
  ["idempotency key reused", "record", 422, { error: "IdempotencyKeyReused", message: "The key was used for another request." },
    () => client.publishMood({ mood: "hi", ref: "r" }), { error: "IdempotencyKeyReused" }],
  ["pds unavailable", "blob", 503, { error: "PdsUnavailable", message: "The PDS could not be reached." },
    () => client.uploadBlob(png()), { error: "PdsUnavailable" }],
  ["another origin", "delete", 403, { error: "Forbidden", message: "requests from https://evil.example may not publish here" },
    () => client.remove(URI), { error: "Forbidden" }],
  ["text blocked", "record", 422, { error: "TextBlocked", message: "The mood has a blocked word.", field: "mood" },
    () => client.publishMood({ mood: "hi", ref: "r" }), { error: "TextBlocked", field: "mood" }],
  ["unknown collection", "record", 400, { error: "UnknownCollection", message: "No." },
    () => client.publishPiece({ slug: "wand", ref: "r" }), { error: "UnknownCollection" }],
  ["delete refused", "delete", 403, { error: "ScopeMissing", message: "No delete scope.", scope: "repo:*?action=delete" },
    () => client.remove(URI), { error: "ScopeMissing", scope: "repo:*?action=delete" }],
  ["xrpc not found", "getRecord", 404, { error: "NotFound", message: "The record is not indexed." },
    () => client.record(URI), { error: "NotFound" }],
  ["xrpc auth missing", "unread", 401, { error: "AuthMissing", message: "No bearer token." },
    () => client.unreadCount(), { error: "AuthMissing" }],
  ["a body that is not JSON", "status", 500, "Internal Server Error",
    () => client.status(URI), { error: "HttpError" }],
];

for (const [name, route, status, body, call, expect] of CASES) {
  test(`error mapping: ${name}`, async () => {
    next.set(route, [status, body]);
    await assert.rejects(call(), (e) => {
      assert.ok(e instanceof AtelierError, `got ${e}`);
      assert.ok(!(e instanceof ValidationError));
      assert.equal(e.name, "AtelierError");
      assert.equal(e.status, status);
      if (typeof body === "object") assert.equal(e.message, body.message);
      for (const [k, v] of Object.entries(expect)) assert.equal(e[k], v, k);
      return true;
    });
  });
}

test("session: 401 is no session; 200 is the user", async () => {
  next.set("session", [401, { error: "AuthRequired", message: "No session." }]);
  assert.equal(await client.session(), null);
  const me = { did: "did:plc:abcdefghijklmnopqrstuvwx", handle: "jeffrey.at.aesthetic.computer", scopes: ["atproto"] };
  next.set("session", [200, me]);
  assert.deepEqual(await client.session(), me);
  next.set("session", [500, { error: "InternalServerError", message: "boom" }]);
  await assert.rejects(client.session(), (e) => e.status === 500);
});

test("success bodies come back as written, and requests carry the contract's headers", async () => {
  next.set("blob", [200, { blob: { $type: "blob", ref: { $link: "bafkrei" }, mimeType: "image/png", size: 64 }, deduplicated: false }]);
  next.set("record", [200, { uri: URI, cid: CID, status: "pending", masked: [] }]);
  const out = await client.publishPainting({ ...PAINTING, png: png(), idempotencyKey: "paint-1" });
  assert.deepEqual(out, { uri: URI, cid: CID, status: "pending", masked: [] });
  const blob = server.to("POST", "/publish/blob").at(-1);
  assert.equal(blob.headers["content-type"], "image/png");
  assert.equal(blob.headers["idempotency-key"], "b-paint-1");
  assert.equal(blob.body.length, 64);
  const rec = server.to("POST", "/publish/record").at(-1);
  assert.equal(rec.headers["idempotency-key"], "r-paint-1");
  const sent = JSON.parse(rec.body);
  assert.equal(sent.collection, "computer.aesthetic.painting");
  assert.equal(sent.record.$type, "computer.aesthetic.painting");
  assert.deepEqual(sent.record.thumbnail.ref, { $link: "bafkrei" });
  assert.equal(sent.record.code, "a3b");

  next.set("status", [200, { uri: URI, cid: CID, status: "confirmed" }]);
  assert.equal((await client.waitFor(out)).status, "confirmed");
  const asked = server.to("GET", "/publish/status").at(-1).query;
  assert.equal(asked.get("uri"), URI);
  assert.equal(asked.get("cid"), CID);
});
