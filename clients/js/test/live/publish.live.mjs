// The kit against a real AppView: `control/tests/client_kit.rs` starts the sandbox (PLC +
// PDS), an AppView with sign-in, publishing and ingest, signs two accounts in through the
// AppView's own pages, and runs this script with:
//
//   ATELIER_BASE      the AppView's URL (http://127.0.0.1:PORT)
//   ATELIER_A_COOKIE  the first account's Cookie header (atelier_session=...)
//   ATELIER_A_DID     its DID
//   ATELIER_B_COOKIE  the second account's Cookie header
//   ATELIER_B_DID     its DID
//
// It is not a `*.test.mjs` file, so `node --test clients/js/test/*.test.mjs` does not pick
// it up: it needs the stack. Each check throws on failure (the exit status is what the Rust
// test asserts); at the end it prints a JSON summary on stdout.
//
// What it proves, with nothing of the kit mocked (only `fetch` and `WebSocket` are wrapped
// to send the session cookie, as a browser would):
// - no session: `session()` is null and a publish fails with `AuthRequired` (401);
// - the first account publishes a painting with a PNG thumbnail; `onProgress` reports the
//   AppView's Server-Sent Events (`receiving`/`uploading`), then `record` and `done`; the
//   painting is in the Atmosphere at once and `waitFor` sees it `confirmed` by ingest;
// - the second account remixes it by AT-URI (`remixOf` is the strong reference the lexicon
//   asks for), and the first gets a `remix` notification on the live stream (a WebSocket
//   authenticated by the cookie), in `listNotifications` and the unread count, which
//   `updateSeen` clears;
// - typed errors: an oversize PNG and a GIF are refused here (`ValidationError`, nothing
//   sent); the same bytes sent past the kit's checks get the server's 413 and 415, which
//   `errorFromResponse` maps to the same names; a profane mood is the server's
//   `TextBlocked` naming the field (`mood`); another origin is `Forbidden`.

import assert from "node:assert/strict";

import {
  AtelierError,
  LIMITS,
  ValidationError,
  createClient,
  errorFromResponse,
} from "../../atproto.mjs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (see the header of ${import.meta.url})`);
  return value;
};

const base = env("ATELIER_BASE");
const A = { cookie: env("ATELIER_A_COOKIE"), did: env("ATELIER_A_DID") };
const B = { cookie: env("ATELIER_B_COOKIE"), did: env("ATELIER_B_DID") };

/** A 1×1 PNG. */
const PNG = Uint8Array.from(
  Buffer.from(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
      "1f15c4890000000d4944415478da63fccfc0f01f0005000201ffa7f5da0000000049454e44ae426082",
    "hex",
  ),
);

/** A PNG of `size` bytes: the 1×1 image, then filler (the AppView sniffs, never decodes). */
function pngOf(size) {
  const out = new Uint8Array(size);
  out.set(PNG);
  out.fill(0x2a, PNG.length);
  return out;
}

/** How many requests each client sent, to prove client-side refusals send nothing. */
const sent = { count: 0 };

/**
 * A client for the account behind `cookie` (none: signed out): its `fetch` sends the
 * cookie, and on POSTs this AppView's own `Origin`, as a browser on the AppView's page
 * would; its WebSocket sends both in the upgrade.
 */
function clientFor(cookie, { origin = base } = {}) {
  const fetch = (url, init = {}) => {
    sent.count++;
    const headers = { ...(init.headers ?? {}) };
    if (cookie && url.startsWith(base)) headers.cookie = cookie;
    if ((init.method ?? "GET") !== "GET") headers.origin = origin;
    return globalThis.fetch(url, { ...init, headers });
  };
  class CookieWebSocket extends WebSocket {
    constructor(url, init) {
      const headers = { ...(init?.headers ?? {}), origin };
      if (cookie) headers.cookie = cookie;
      super(url, { ...(init ?? {}), headers });
    }
  }
  return createClient({ baseUrl: base, fetch, WebSocket: CookieWebSocket });
}

/** `promise`'s rejection, which must be an `AtelierError`; fails if it resolves. */
async function rejection(promise, what) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof AtelierError, `${what}: not an AtelierError: ${e?.stack ?? e}`);
    return e;
  }
  assert.fail(`${what}: succeeded`);
}

/** Waits for `check()` to hold (polled), at most `ms`. */
async function eventually(what, check, ms = 30000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) assert.fail(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const painting = (code) => ({
  code,
  slug: `2026.12.06.15.00.00.${code}`,
  imageUrl: `https://aesthetic.computer/media/paintings/${code}.png`,
  ref: `6710f0c2a3b4c5d6e7f8${code.padStart(4, "0").slice(-4)}`,
});

const summary = {};
const started = Date.now();
const a = clientFor(A.cookie);
const b = clientFor(B.cookie);

// -- signed out ----------------------------------------------------------------------------

const anonymous = clientFor(undefined);
assert.equal(await anonymous.session(), null, "no cookie, no session");
const unauth = await rejection(anonymous.publishMood({ mood: "hello", ref: "r1" }), "publish without a session");
assert.equal(unauth.status, 401);
assert.equal(unauth.error, "AuthRequired");
assert.equal(anonymous.login("ada.test", { navigate: false }), `${base}/login?handle=ada.test`);
summary.signedOut = { status: unauth.status, error: unauth.error };

// -- the first account publishes a painting ------------------------------------------------

const me = await a.session();
assert.equal(me?.did, A.did, "the cookie's session is the first account");
assert.ok(me.scopes.includes("repo:computer.aesthetic.painting"), `scopes: ${me.scopes}`);

const progress = [];
const thumbnail = pngOf(512 * 1024);
const published = await a.publishPainting({
  png: thumbnail,
  ...painting("ka1"),
  onProgress: (p) => progress.push(p),
});
assert.match(published.uri, new RegExp(`^at://${A.did}/computer\\.aesthetic\\.painting/`));
assert.equal(published.status, "pending");
const phases = progress.map((p) => p.phase);
assert.ok(phases.includes("receiving"), `the AppView's SSE progress arrived: ${phases}`);
assert.deepEqual(phases.slice(-2), ["record", "done"], `phases: ${phases}`);
const received = progress.filter((p) => p.phase === "receiving").at(-1);
assert.ok(received.bytes > 0 && received.bytes <= thumbnail.length, JSON.stringify(received));
summary.publish = { uri: published.uri, cid: published.cid, status: published.status, phases };

const inFeed = await eventually("the painting in the Atmosphere", async () => {
  const { records } = await a.atmosphere({ limit: 50, types: ["painting"] });
  return records.find((r) => r.uri === published.uri);
});
assert.equal(inFeed.did, A.did);
assert.equal(inFeed.record.thumbnail.size, thumbnail.length);
assert.equal(inFeed.record.thumbnail.mimeType, "image/png");

const settled = await a.waitFor(published, { timeoutMs: 30000, everyMs: 200 });
assert.equal(settled.status, "confirmed", `status after ingest: ${JSON.stringify(settled)}`);
summary.confirmedAfterMs = Date.now() - started;

// -- the second account remixes it; the first is notified ----------------------------------

const unreadBefore = await a.unreadCount();
const live = [];
let opened;
const isOpen = new Promise((resolve) => (opened = resolve));
const stream = a.subscribeNotifications({ onEvent: (n) => live.push(n), onOpen: () => opened() });
await Promise.race([isOpen, new Promise((_, reject) => setTimeout(() => reject(new Error("the notification stream did not open")), 10000))]);

const remix = await b.remix(published.uri, "painting", { png: PNG, ...painting("kb2") });
assert.match(remix.uri, new RegExp(`^at://${B.did}/computer\\.aesthetic\\.painting/`));
const remixView = await eventually("the remix indexed", async () => {
  const view = await b.record(remix.uri).catch(() => null);
  return view?.record?.remixOf ? view : null;
});
assert.deepEqual(remixView.record.remixOf, { uri: published.uri, cid: published.cid });

const notified = await eventually("a remix notification on the live stream", () =>
  live.find((n) => n.reason === "remix" && n.uri === remix.uri),
);
stream.close();
assert.equal(notified.author, B.did);
assert.equal(notified.subject, published.uri);

const { notifications } = await a.listNotifications({ limit: 20 });
assert.ok(
  notifications.some((n) => n.reason === "remix" && n.uri === remix.uri && !n.isRead),
  `listNotifications: ${JSON.stringify(notifications)}`,
);
const unread = await a.unreadCount();
assert.ok(unread > unreadBefore, `unread ${unreadBefore} -> ${unread}`);
await a.updateSeen();
assert.equal(await a.unreadCount(), 0, "updateSeen clears the count");
const remixes = await a.remixes(published.uri, { direction: "children" });
assert.ok(remixes.remixes.some((r) => r.uri === remix.uri), `getRemixes: ${JSON.stringify(remixes)}`);
summary.remix = { uri: remix.uri, notification: notified.id, unread };

// -- typed errors --------------------------------------------------------------------------

const before = sent.count;
const oversize = pngOf(LIMITS.thumbnailBytes + 1);
const tooLarge = await rejection(a.publishPainting({ png: oversize, ...painting("ka3") }), "an oversize PNG");
assert.ok(tooLarge instanceof ValidationError);
assert.equal(tooLarge.error, "BlobTooLarge");
assert.equal(tooLarge.status, 0);
assert.equal(tooLarge.limit, LIMITS.thumbnailBytes);
const gif = Uint8Array.from(Buffer.from("GIF89a\x01\0\x01\0\0\0\0\0", "latin1"));
const wrongType = await rejection(a.uploadBlob(gif), "a GIF thumbnail");
assert.ok(wrongType instanceof ValidationError);
assert.equal(wrongType.error, "UnsupportedMediaType");
assert.equal(sent.count, before, "refused here: nothing was sent");

// The same bytes past the kit's checks: the server's own answers, mapped by the kit.
async function rawBlob(bytes, type) {
  const response = await globalThis.fetch(`${base}/publish/blob`, {
    method: "POST",
    headers: { cookie: A.cookie, origin: base, "content-type": type },
    body: bytes,
  });
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return errorFromResponse(response.status, body, text);
}
const serverTooLarge = await rawBlob(oversize, "image/png");
assert.equal(serverTooLarge.status, 413);
assert.equal(serverTooLarge.error, tooLarge.error, "the server's name is the kit's");
assert.equal(serverTooLarge.limit, LIMITS.thumbnailBytes, "the server's limit is the kit's");
const serverWrongType = await rawBlob(gif, "image/gif");
assert.equal(serverWrongType.status, 415);
assert.equal(serverWrongType.error, wrongType.error);
const lyingType = await rawBlob(gif, "image/png");
assert.equal(lyingType.status, 415, "a GIF sent as image/png is sniffed");

const blocked = await rejection(a.publishMood({ mood: "what the f u c k", ref: "r2" }), "a profane mood");
assert.equal(blocked.status, 422);
assert.equal(blocked.error, "TextBlocked");
assert.equal(blocked.field, "mood", "the server's $.mood is the kit's mood");

const elsewhere = clientFor(A.cookie, { origin: "http://evil.example" });
const forbidden = await rejection(elsewhere.publishMood({ mood: "hi", ref: "r3" }), "another origin");
assert.equal(forbidden.status, 403);
assert.equal(forbidden.error, "Forbidden");

summary.errors = {
  client: [tooLarge.error, wrongType.error],
  server: [
    [serverTooLarge.status, serverTooLarge.error],
    [serverWrongType.status, serverWrongType.error],
    [lyingType.status, lyingType.error],
    [blocked.status, blocked.error, blocked.field],
    [forbidden.status, forbidden.error],
  ],
};
summary.ms = Date.now() - started;
console.log(JSON.stringify(summary));
