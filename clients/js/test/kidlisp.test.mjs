// The KidLisp primitives: the table's shape, `(share)` without a session sending the host
// to sign in, and with one publishing (as a remix after `(remix uri)`), `(atmosphere n)`
// across pages. The client talks to a local node:http server standing in for the AppView.

import { test } from "node:test";
import assert from "node:assert/strict";

import { primitives, createContext, bind } from "../kidlisp.mjs";
import { createClient } from "../atproto.mjs";
import { startServer, json, png, blobRef, PAINTING, URI, CID } from "./support.mjs";

const ME = { did: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", handle: "jeffrey.at.aesthetic.computer", scopes: ["atproto"] };
const KIDLISP_URI = "at://did:plc:bbbbbbbbbbbbbbbbbbbbbbbb/computer.aesthetic.kidlisp/3lkkkkkkkkkkk";

function host(overrides = {}) {
  const calls = { redirect: [], loadSource: [], loadImage: [] };
  return {
    calls,
    currentPainting: () => null,
    currentSource: () => null,
    redirect: (url) => calls.redirect.push(url),
    loadSource: (s) => calls.loadSource.push(s),
    loadImage: (u) => calls.loadImage.push(u),
    ...overrides,
  };
}

test("every primitive has arity, doc, example and fn", () => {
  assert.deepEqual(Object.keys(primitives).sort(), ["atmosphere", "notify", "remix", "share"]);
  for (const [name, p] of Object.entries(primitives)) {
    assert.ok(Number.isInteger(p.arity.min) && Number.isInteger(p.arity.max) && p.arity.min <= p.arity.max, name);
    assert.equal(typeof p.doc, "string", name);
    assert.ok(p.doc.length > 20, name);
    assert.equal(typeof p.example, "string", name);
    assert.ok(p.example.startsWith(`(${name}`), `${name}'s example calls it`);
    assert.equal(typeof p.fn, "function", name);
  }
});

test("(share) without a session sends the host to the sign-in page and publishes nothing", async () => {
  const server = await startServer({
    "GET /publish/session": (req, res) => json(res, 401, { error: "AuthRequired", message: "Sign in first." }),
  });
  try {
    const h = host({ currentPainting: () => ({ ...PAINTING, png: png() }), handle: () => "@jeffrey.at.aesthetic.computer" });
    const ctx = createContext({ baseUrl: server.baseUrl, host: h });
    const out = await bind(ctx).share();
    assert.equal(out.status, "signin");
    assert.deepEqual(h.calls.redirect, [`${server.baseUrl}/login?handle=jeffrey.at.aesthetic.computer`]);
    assert.deepEqual(server.seen.map((r) => r.path), ["/publish/session"]);
  } finally {
    await server.close();
  }
});

test("(share) with no handle known sends the host to the plain sign-in page", async () => {
  const calls = [];
  const client = createClient({
    baseUrl: "https://atelier.example",
    fetch: async (url) => (calls.push(url), new Response('{"error":"AuthRequired","message":"no"}', { status: 401 })),
  });
  const h = host();
  await primitives.share.fn(createContext({ client, host: h }));
  assert.deepEqual(h.calls.redirect, ["https://atelier.example/login"]);
  assert.equal(calls.length, 1);
});

test("(remix uri) then (share) publishes the program as a remix, once", async () => {
  const server = await startServer({
    "GET /publish/session": (req, res) => json(res, 200, ME),
    "GET /xrpc/computer.aesthetic.feed.getRecord": (req, res) =>
      json(res, 200, {
        record: {
          uri: req.query.get("uri"),
          cid: CID,
          did: "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
          collection: "computer.aesthetic.kidlisp",
          record: { $type: "computer.aesthetic.kidlisp", source: "(wipe blue)", code: "abc", when: PAINTING.when, ref: "r" },
          repairs: [],
        },
      }),
    "POST /publish/record": (req, res) => json(res, 200, { uri: URI, cid: CID, status: "pending", masked: [] }),
  });
  try {
    const h = host({ currentSource: () => ({ source: "(wipe red)", code: "xyz", ref: "64b7f0c2a1b2c3d4e5f60719" }) });
    const lisp = bind(createContext({ baseUrl: server.baseUrl, host: h }));
    assert.equal(await lisp.remix(KIDLISP_URI), "(wipe blue)");
    assert.deepEqual(h.calls.loadSource, ["(wipe blue)"]);
    assert.equal(await lisp.share(), URI);
    assert.equal(await lisp.share(), URI);
    const [first, second] = server.to("POST", "/publish/record").map((r) => JSON.parse(r.body));
    assert.equal(first.collection, "computer.aesthetic.kidlisp");
    assert.deepEqual(first.record.remixOf, { uri: KIDLISP_URI, cid: CID });
    assert.equal(first.record.source, "(wipe red)");
    assert.equal(second.record.remixOf, undefined, "the remix reference is used once");
  } finally {
    await server.close();
  }
});

test("(share) publishes the painting on screen with its thumbnail", async () => {
  const server = await startServer({
    "GET /publish/session": (req, res) => json(res, 200, ME),
    "POST /publish/blob": (req, res) => json(res, 200, { blob: blobRef("image/png", req.body.length), deduplicated: false }),
    "POST /publish/record": (req, res) => json(res, 200, { uri: URI, cid: CID, status: "pending", masked: [] }),
  });
  try {
    const h = host({ currentPainting: () => ({ ...PAINTING, png: png(128) }) });
    const uri = await bind(createContext({ baseUrl: server.baseUrl, host: h })).share();
    assert.equal(uri, URI);
    const sent = JSON.parse(server.to("POST", "/publish/record")[0].body);
    assert.equal(sent.collection, "computer.aesthetic.painting");
    assert.equal(sent.record.thumbnail.size, 128);
  } finally {
    await server.close();
  }
});

test("(atmosphere n) reads across pages and stops at n", async () => {
  const view = (i) => ({ uri: `${URI}${i}`, cid: CID, did: ME.did, collection: "computer.aesthetic.mood", record: { mood: `m${i}` }, repairs: [] });
  const server = await startServer({
    "GET /xrpc/computer.aesthetic.feed.getAtmosphere": (req, res) => {
      const from = Number(req.query.get("cursor") ?? 0);
      const limit = Number(req.query.get("limit"));
      const records = Array.from({ length: limit }, (_, i) => view(from + i));
      json(res, 200, { records, cursor: String(from + limit) });
    },
  });
  try {
    const lisp = bind(createContext({ baseUrl: server.baseUrl, host: host() }));
    const got = await lisp.atmosphere(150);
    assert.equal(got.length, 150);
    assert.equal(got[149].record.mood, "m149");
    assert.deepEqual(server.seen.map((r) => r.query.get("limit")), ["100", "100"]);
    assert.equal((await lisp.atmosphere()).length, 10);
    assert.throws(() => lisp.atmosphere(1, 2), /takes 0 to 1 arguments/);
  } finally {
    await server.close();
  }
});

test("docs/client-kit.md documents every primitive with its example", async () => {
  const { readFileSync } = await import("node:fs");
  const doc = readFileSync(new URL("../../../docs/client-kit.md", import.meta.url), "utf8");
  for (const [name, p] of Object.entries(primitives)) {
    assert.ok(doc.includes(`### \`(${name}`), `a section for (${name})`);
    assert.ok(doc.includes(p.example.split("  ;")[0]), `the example of (${name})`);
  }
});
