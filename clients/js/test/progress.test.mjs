// Server-Sent Events: the parser (chunk boundaries anywhere, multi-line data, comments,
// CRLF) and upload progress from `GET /publish/progress/{key}` while `POST /publish/blob`
// runs, against a local node:http server standing in for the AppView.

import { test } from "node:test";
import assert from "node:assert/strict";

import { createClient, parseSSE } from "../atproto.mjs";
import { startServer, json, png, mp4, blobRef, delay } from "./support.mjs";

/** `text` as a stream of chunks cut every `size` bytes. */
async function* chunks(text, size) {
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(stream) {
  const out = [];
  for await (const ev of stream) out.push(ev);
  return out;
}

const STREAM =
  "\uFEFF: a comment, then a progress event\r\n" +
  "event: progress\r\n" +
  'data: {"phase":"receiving","bytes":10,"total":64}\r\n' +
  "\r\n" +
  "event: progress\n" +
  'data:{"phase":"uploading","bytes":64,"total":64}\n' +
  "\n" +
  "data: line one\n" +
  "data: line two\n" +
  "id: 7\n" +
  "\n" +
  "event: done\r" +
  'data: {"blob":{"size":64},"deduplicated":true}\r' +
  "\r" +
  "event: ignored-without-blank-line\n" +
  "data: never dispatched";

const EXPECTED = [
  { event: "progress", data: '{"phase":"receiving","bytes":10,"total":64}' },
  { event: "progress", data: '{"phase":"uploading","bytes":64,"total":64}' },
  { event: "message", data: "line one\nline two", id: "7" },
  { event: "done", data: '{"blob":{"size":64},"deduplicated":true}', id: "7" },
];

test("parseSSE: the same events whatever the chunking", async () => {
  for (const size of [1, 2, 3, 7, 64, 10_000]) {
    assert.deepEqual(await collect(parseSSE(chunks(STREAM, size))), EXPECTED, `chunks of ${size}`);
  }
});

test("parseSSE reads a WHATWG ReadableStream too", async () => {
  const stream = new Response(STREAM).body;
  assert.deepEqual(await collect(parseSSE(stream)), EXPECTED);
});

test("upload progress comes from the SSE endpoint while the POST runs", async () => {
  let release;
  const posted = new Promise((r) => (release = r));
  let sseFirst = false;
  const server = await startServer({
    "GET /publish/progress/*": async (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store" });
      res.write("event: waiting\ndata: {}\n\n");
      const send = (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      send("progress", { phase: "receiving", bytes: 32, total: 64 });
      await delay(10);
      send("progress", { phase: "receiving", bytes: 64, total: 64 });
      send("progress", { phase: "uploading", bytes: 64, total: 64 });
      await delay(10);
      release();
      send("done", { blob: blobRef("video/mp4", 64), deduplicated: false });
      res.end();
    },
    "POST /publish/blob": async (req, res) => {
      // The AppView serialises a session's requests: the stream must be open first.
      sseFirst = server.seen.some((r) => r.path.startsWith("/publish/progress/"));
      // Answers only after the progress stream has said everything.
      await posted;
      json(res, 200, { blob: blobRef("video/mp4", 64), deduplicated: false });
    },
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl });
    const events = [];
    const out = await client.uploadBlob(mp4(), {
      kind: "video",
      idempotencyKey: "tape-42",
      onProgress: (p) => events.push(`${p.phase} ${p.bytes}/${p.total}`),
    });
    assert.equal(out.blob.mimeType, "video/mp4");
    assert.ok(sseFirst, "the progress stream was opened before the upload");
    assert.deepEqual(events.slice(0, 3), ["receiving 32/64", "receiving 64/64", "uploading 64/64"]);
    const [watch] = server.to("GET", "/publish/progress/tape-42");
    assert.ok(watch, "the progress endpoint was asked for the upload's key");
    assert.equal(watch.headers.accept, "text/event-stream");
    assert.equal(server.to("POST", "/publish/blob")[0].headers["idempotency-key"], "tape-42");
  } finally {
    await server.close();
  }
});

test("a progress endpoint that is not there yet does not fail the upload", async () => {
  const server = await startServer({
    "POST /publish/blob": async (req, res) => {
      await delay(30);
      json(res, 200, { blob: blobRef("image/png", 64), deduplicated: true });
    },
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl, sleep: (ms, signal) => delay(5) });
    const out = await client.uploadBlob(png(), { onProgress: () => {} });
    assert.equal(out.deduplicated, true);
    assert.ok(server.seen.some((r) => r.path.startsWith("/publish/progress/")));
  } finally {
    await server.close();
  }
});

test("a publishTape reports its phases in order", async () => {
  const server = await startServer({
    "GET /publish/progress/*": (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end(`event: failed\ndata: {"error":"UpstreamFailed","message":"x"}\n\n`);
    },
    "POST /publish/blob": (req, res) => json(res, 200, { blob: blobRef("video/mp4", 64), deduplicated: false }),
    "POST /publish/record": (req, res) =>
      json(res, 200, { uri: "at://did:plc:x/computer.aesthetic.tape/3l", cid: "bafyrei", status: "pending", masked: [] }),
  });
  try {
    const client = createClient({ baseUrl: server.baseUrl });
    const phases = [];
    await client.publishTape({
      mp4: mp4(),
      slug: "wand-1729177200000",
      code: "t1",
      onProgress: (p) => phases.at(-1) !== p.phase && phases.push(p.phase),
    });
    assert.deepEqual(phases.slice(-2), ["record", "done"]);
    const record = JSON.parse(server.to("POST", "/publish/record")[0].body).record;
    assert.equal(record.video.mimeType, "video/mp4");
  } finally {
    await server.close();
  }
});

test("in a browser, the upload goes through XMLHttpRequest with its upload progress", async () => {
  const server = await startServer({
    "POST /publish/blob": (req, res) => json(res, 200, { blob: blobRef("image/png", req.body.length), deduplicated: false }),
  });
  // A stand-in for the browser's XMLHttpRequest, sending through fetch; the first attempt
  // fails as a network error does (onerror), so the retry must reuse the key.
  const attempts = [];
  class FakeXHR {
    constructor() {
      this.upload = {};
      this.headers = {};
    }
    open(method, url) {
      Object.assign(this, { method, url });
    }
    setRequestHeader(k, v) {
      this.headers[k] = v;
    }
    async send(body) {
      attempts.push({ xhr: this, withCredentials: this.withCredentials });
      if (attempts.length === 1) return this.onerror();
      this.upload.onprogress?.({ loaded: body.length / 2, total: body.length, lengthComputable: true });
      this.upload.onprogress?.({ loaded: body.length, total: body.length, lengthComputable: true });
      const r = await fetch(this.url, { method: this.method, headers: this.headers, body });
      this.status = r.status;
      this.responseText = await r.text();
      this.onload();
    }
  }
  try {
    const client = createClient({ baseUrl: server.baseUrl, XMLHttpRequest: FakeXHR, retry: { baseMs: 1 } });
    const events = [];
    const out = await client.uploadBlob(png(64), { onProgress: (p) => events.push(`${p.phase} ${p.bytes}/${p.total}`) });
    assert.equal(out.blob.size, 64);
    assert.equal(attempts.length, 2);
    assert.ok(attempts.every((a) => a.withCredentials === true));
    assert.equal(attempts[0].xhr.headers["idempotency-key"], attempts[1].xhr.headers["idempotency-key"]);
    assert.deepEqual(events.filter((e) => e.startsWith("sending")), ["sending 32/64", "sending 64/64"]);
  } finally {
    await server.close();
  }
});
