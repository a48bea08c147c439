// Retries: a network failure is retried with the SAME idempotency key (so the server can
// answer the retry with the first attempt's result), a bounded number of times; an answer,
// even an error, is never retried. The local node:http server (a stand-in for the
// AppView) drops connections without answering.

import { test } from "node:test";
import assert from "node:assert/strict";

import { createClient, AtelierError } from "../atproto.mjs";
import { startServer, json, png, blobRef, URI, CID } from "./support.mjs";

const fast = { attempts: 4, baseMs: 1, maxMs: 2 };

/** A handler that drops the first `drops` connections, then answers with `ok`. */
function flaky(drops, ok) {
  let n = 0;
  return (req, res, raw) => {
    if (n++ < drops) {
      raw.socket.destroy();
      return;
    }
    ok(req, res);
  };
}

test("a dropped record publish is retried with the same idempotency key", async () => {
  const server = await startServer({
    "POST /publish/record": flaky(1, (req, res) => json(res, 200, { uri: URI, cid: CID, status: "pending", masked: [] })),
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl, retry: fast });
    const out = await client.publishMood({ mood: "hello atmosphere", ref: "r1" });
    assert.equal(out.uri, URI);
    const tries = server.to("POST", "/publish/record");
    assert.equal(tries.length, 2);
    const [a, b] = tries.map((t) => t.headers["idempotency-key"]);
    assert.match(a, /^[A-Za-z0-9_-]{1,64}$/);
    assert.equal(a, b);
    assert.equal(tries[0].body.toString(), tries[1].body.toString());
  } finally {
    await server.close();
  }
});

test("a dropped blob upload is retried with the same key and the same bytes", async () => {
  const server = await startServer({
    "POST /publish/blob": flaky(2, (req, res) => json(res, 200, { blob: blobRef("image/png", req.body.length), deduplicated: true })),
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl, retry: fast });
    const out = await client.uploadBlob(new Blob([png(100)]));
    assert.equal(out.blob.size, 100);
    const tries = server.to("POST", "/publish/blob");
    assert.equal(tries.length, 3);
    assert.equal(new Set(tries.map((t) => t.headers["idempotency-key"])).size, 1);
    assert.ok(tries.every((t) => t.body.length === 100));
  } finally {
    await server.close();
  }
});

test("each publish call gets its own key", async () => {
  const server = await startServer({
    "POST /publish/delete": (req, res) => json(res, 200, { uri: JSON.parse(req.body).uri, deleted: true }),
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl, retry: fast });
    assert.deepEqual(await client.remove(URI), { uri: URI, deleted: true });
    await client.remove(URI);
    const keys = server.to("POST", "/publish/delete").map((t) => t.headers["idempotency-key"]);
    assert.equal(keys.length, 2);
    assert.notEqual(keys[0], keys[1]);
  } finally {
    await server.close();
  }
});

test("retries are bounded, and end in a NetworkError", async () => {
  const server = await startServer({ "POST /publish/record": flaky(Infinity, () => {}) });
  try {
    const client = createClient({ baseUrl: server.baseUrl, retry: fast });
    await assert.rejects(client.follow("did:plc:abcdefghijklmnopqrstuvwx"), (e) => {
      assert.ok(e instanceof AtelierError);
      assert.equal(e.error, "NetworkError");
      assert.equal(e.status, 0);
      return true;
    });
    assert.equal(server.to("POST", "/publish/record").length, fast.attempts);
  } finally {
    await server.close();
  }
});

test("an error answer is not retried", async () => {
  const server = await startServer({
    "POST /publish/record": (req, res) => json(res, 502, { error: "UpstreamFailed", message: "The PDS is down." }),
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl, retry: fast });
    await assert.rejects(client.publishPiece({ slug: "wand", ref: "r" }), (e) => e.error === "UpstreamFailed");
    assert.equal(server.to("POST", "/publish/record").length, 1);
  } finally {
    await server.close();
  }
});
