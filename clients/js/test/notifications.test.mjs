// The live notification stream over a real WebSocket (Node 22's global one) against a
// minimal local WebSocket server (a stand-in for the AppView's
// `computer.aesthetic.notification.subscribe`): the bearer token goes in the upgrade, a
// dropped stream reconnects and resumes after the last notification, repeats are skipped.
// Also the per-viewer queries' auth headers, and the overlay's lines.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";

import { createClient } from "../atproto.mjs";
import { formatNotification } from "../overlay.mjs";
import { startServer, json, delay } from "./support.mjs";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** One unmasked WebSocket text frame. */
function textFrame(text) {
  const payload = Buffer.from(text);
  const head =
    payload.length < 126
      ? Buffer.from([0x81, payload.length])
      : Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, payload]);
}

/** A WebSocket server; `onConnect(n, req, send, drop)` scripts the nth connection. */
async function startWsServer(onConnect) {
  const server = http.createServer((req, res) => res.writeHead(404).end());
  const upgrades = [];
  // Upgraded sockets leave the server's own bookkeeping: close them by hand.
  const sockets = new Set();
  server.on("upgrade", (req, socket) => {
    upgrades.push(req);
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.on("error", () => {});
    onConnect(upgrades.length, req, (obj) => socket.write(textFrame(JSON.stringify(obj))), () => socket.destroy());
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}`,
    upgrades,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(r);
      }),
  };
}

const note = (id, reason = "remix") => ({
  id,
  reason,
  author: "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb",
  authorHandle: "bob.at.aesthetic.computer",
  uri: `at://did:plc:bbbbbbbbbbbbbbbbbbbbbbbb/computer.aesthetic.painting/3l${id}`,
  subject: "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/computer.aesthetic.painting/3la",
  indexedAt: "2026-12-06T15:00:00.000Z",
  isRead: false,
});

test("the stream reconnects after a drop and resumes after the last notification", async () => {
  const server = await startWsServer(async (n, req, send, drop) => {
    if (n === 1) {
      send(note(1));
      send(note(2, "follow"));
      await delay(20);
      drop();
    } else if (n === 2) {
      send(note(2, "follow")); // a repeat: must not be delivered twice
      send(note(3, "mention"));
    }
  });
  const lxms = [];
  const client = createClient({
    baseUrl: server.baseUrl,
    serviceAuth: (lxm) => (lxms.push(lxm), `token-${lxms.length}`),
  });
  const got = [];
  let reconnects = 0;
  const stream = client.subscribeNotifications({
    minMs: 10,
    maxMs: 20,
    onEvent: (n) => got.push(n.id),
    onReconnect: () => reconnects++,
  });
  try {
    for (let i = 0; i < 200 && got.length < 3; i++) await delay(10);
    assert.deepEqual(got, [1, 2, 3]);
    assert.equal(stream.cursor, 3);
    assert.ok(reconnects >= 1);
    const [first, second] = server.upgrades;
    assert.equal(new URL(first.url, "http://x").pathname, "/xrpc/computer.aesthetic.notification.subscribe");
    assert.equal(new URL(first.url, "http://x").searchParams.get("cursor"), null);
    assert.equal(new URL(second.url, "http://x").searchParams.get("cursor"), "2");
    // A fresh token per connection, for the stream's method.
    assert.equal(first.headers.authorization, "Bearer token-1");
    assert.equal(second.headers.authorization, "Bearer token-2");
    assert.deepEqual([...new Set(lxms)], ["computer.aesthetic.notification.subscribe"]);
  } finally {
    stream.close();
    await server.close();
  }
});

test("a given cursor is where the first connection resumes", async () => {
  const server = await startWsServer((n, req, send) => send(note(42)));
  const client = createClient({ baseUrl: server.baseUrl });
  const got = [];
  const stream = client.subscribeNotifications({ cursor: 41, onEvent: (n) => got.push(n.id) });
  try {
    for (let i = 0; i < 200 && !got.length; i++) await delay(10);
    assert.deepEqual(got, [42]);
    assert.equal(new URL(server.upgrades[0].url, "http://x").searchParams.get("cursor"), "41");
    assert.equal(server.upgrades[0].headers.authorization, undefined);
  } finally {
    stream.close();
    await server.close();
  }
});

test("per-viewer queries send the service token and cookies", async () => {
  const server = await startServer({
    "GET /xrpc/computer.aesthetic.notification.listNotifications": (req, res) =>
      json(res, 200, { notifications: [note(5)], cursor: "5" }),
    "GET /xrpc/computer.aesthetic.notification.getUnreadCount": (req, res) => json(res, 200, { count: 3 }),
    "POST /xrpc/computer.aesthetic.notification.updateSeen": (req, res) => res.writeHead(200).end(),
  });
  try {
    const seenInit = [];
    const client = createClient({
      baseUrl: server.baseUrl,
      fetch: (url, init) => (seenInit.push(init), fetch(url, init)),
      serviceAuth: (lxm) => `jwt-for-${lxm}`,
    });
    const page = await client.listNotifications({ limit: 10 });
    assert.equal(page.notifications[0].id, 5);
    assert.equal(await client.unreadCount(), 3);
    await client.updateSeen(new Date("2026-12-06T15:00:00Z"));
    const [list, unread, seen] = server.seen;
    assert.equal(list.query.get("limit"), "10");
    assert.equal(list.headers.authorization, "Bearer jwt-for-computer.aesthetic.notification.listNotifications");
    assert.equal(unread.headers.authorization, "Bearer jwt-for-computer.aesthetic.notification.getUnreadCount");
    assert.deepEqual(JSON.parse(seen.body), { seenAt: "2026-12-06T15:00:00.000Z" });
    assert.ok(seenInit.every((i) => i.credentials === "include"));
  } finally {
    await server.close();
  }
});

test("the overlay prints one line per notification", () => {
  const lines = [note(1, "remix"), note(2, "mention"), note(3, "follow"), note(4, "moderation"), note(5, "something-new")].map(
    formatNotification,
  );
  assert.equal(lines.length, 5);
  assert.match(lines[0], /remix +@bob\.at\.aesthetic\.computer remixed at:\/\/.*3la as at:\/\/.*3l1$/);
  assert.match(lines[1], /mention +@bob\.at\.aesthetic\.computer mentioned you in at:\/\//);
  assert.match(lines[2], /follow +@bob\.at\.aesthetic\.computer follows you$/);
  assert.match(lines[3], /moderation/);
  assert.match(lines[4], /something-new @bob/);
  for (const line of lines) assert.ok(!line.includes("\n"));
});

test("the overlay command prints lines, keeps its cursor in --state, and resumes from it", async () => {
  const { spawn } = await import("node:child_process");
  const { mkdtempSync, readFileSync, writeFileSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(`${tmpdir()}/overlay-`);
  const state = `${dir}/cursor`;
  writeFileSync(state, "6\n");
  const server = await startWsServer((n, req, send, drop) => {
    send(note(7, "remix"));
    send(note(8, "follow"));
    if (n === 1) setTimeout(drop, 20);
  });
  const child = spawn(
    process.execPath,
    [new URL("../overlay.mjs", import.meta.url).pathname, "--appview", server.baseUrl, "--token-command", "echo tok-$ATELIER_LXM", "--state", state],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  try {
    for (let i = 0; i < 300 && server.upgrades.length < 2; i++) await delay(10);
    await delay(50);
    const lines = out.trim().split("\n");
    assert.equal(lines.length, 2, out);
    assert.match(lines[0], /remix/);
    assert.match(lines[1], /follow/);
    assert.equal(readFileSync(state, "utf8"), "8\n");
    const [first, second] = server.upgrades;
    assert.equal(new URL(first.url, "http://x").searchParams.get("cursor"), "6");
    assert.equal(new URL(second.url, "http://x").searchParams.get("cursor"), "8");
    assert.equal(first.headers.authorization, "Bearer tok-computer.aesthetic.notification.subscribe");
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    await server.close();
  }
});

test("without serviceAuth the per-viewer calls rely on the session cookie", async () => {
  const seen = [];
  const fetch = async (url, init) => {
    seen.push({ url, init });
    const body = url.includes("getUnreadCount") ? { count: 2 } : url.includes("listNotifications") ? { notifications: [] } : {};
    return new Response(JSON.stringify(body), { status: 200, headers: { "content-type": "application/json" } });
  };
  const client = createClient({ baseUrl: "http://127.0.0.1:9", fetch });
  assert.equal(await client.unreadCount(), 2);
  await client.listNotifications({ limit: 5 });
  await client.following({ limit: 5 });
  await client.updateSeen(new Date("2026-12-06T12:00:00.000Z"));
  assert.equal(seen.length, 4);
  for (const { url, init } of seen) {
    assert.equal(init.credentials, "include", url);
    assert.equal(init.headers.authorization, undefined, url);
  }
  // The AppView takes a cookie-authenticated updateSeen only as JSON.
  const seenCall = seen.at(-1);
  assert.equal(seenCall.init.method, "POST");
  assert.equal(seenCall.init.headers["content-type"], "application/json");
  assert.deepEqual(JSON.parse(seenCall.init.body), { seenAt: "2026-12-06T12:00:00.000Z" });
});
