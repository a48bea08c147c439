// The AC client kit: how AC's JavaScript (a piece, the KidLisp runtime, an overlay) talks
// to an Atelier AppView. One ES module, no dependencies, no build step; it runs in browsers
// and in Node 22.
//
// `createClient({ baseUrl })` returns an object with four groups of calls:
//   - session:       login, session
//   - read:          atmosphere, authorFeed, following, record, remixes, profile, search,
//                    and `pages` for cursor pagination
//   - notifications: listNotifications, unreadCount, updateSeen, subscribeNotifications
//   - publish:       uploadBlob, createRecord, publishPainting, publishKidlisp, publishMood,
//                    publishPiece, publishTape, follow, remix, remove, status, waitFor
//
// Everything the network touches is injectable (`fetch`, `WebSocket`, `XMLHttpRequest`,
// `sleep`), so tests can point the client at a local server, and integration tests at a
// real `atelier up` stack.
//
// Errors: every failure is an `AtelierError` carrying the server's `{error, message}`
// (plus `field`, `limit`, `scope` when the server names them); checks made here before
// anything is sent throw `ValidationError`, a subclass with the same error names the server
// would use, so one `catch` handles both.

/**
 * @typedef {import("../../lexicons/ts/types.js").BlobRef} BlobRef
 * @typedef {import("../../lexicons/ts/com/atproto/repo/strongRef.js").StrongRef} StrongRef
 * @typedef {import("../../lexicons/ts/computer/aesthetic/painting.js").Painting} Painting
 * @typedef {import("../../lexicons/ts/computer/aesthetic/kidlisp.js").Kidlisp} Kidlisp
 * @typedef {import("../../lexicons/ts/computer/aesthetic/mood.js").Mood} Mood
 * @typedef {import("../../lexicons/ts/computer/aesthetic/piece.js").Piece} Piece
 * @typedef {import("../../lexicons/ts/computer/aesthetic/tape.js").Tape} Tape
 * @typedef {import("../../lexicons/ts/computer/aesthetic/graph/follow.js").Follow} Follow
 * @typedef {import("../../lexicons/ts/computer/aesthetic/feed/defs.js").RecordView} RecordView
 * @typedef {import("../../lexicons/ts/computer/aesthetic/feed/getAtmosphere.js").GetAtmosphereOutput} FeedPage
 * @typedef {import("../../lexicons/ts/computer/aesthetic/feed/getRemixes.js").GetRemixesOutput} RemixesOutput
 * @typedef {import("../../lexicons/ts/computer/aesthetic/actor/defs.js").ProfileView} ProfileView
 * @typedef {import("../../lexicons/ts/computer/aesthetic/notification/defs.js").NotificationView} NotificationView
 * @typedef {import("../../lexicons/ts/computer/aesthetic/notification/listNotifications.js").ListNotificationsOutput} NotificationsPage
 */

/**
 * @typedef {object} Progress
 * @property {"downloading"|"sending"|"receiving"|"uploading"|"record"|"done"} phase
 *   `downloading`: a tape's video is fetched from `videoUrl` (client side); `sending`: this
 *   browser's upload to the AppView (XMLHttpRequest); `receiving` and `uploading`: the
 *   AppView receiving the blob and passing it to the PDS (its SSE progress endpoint);
 *   `record`: the record is being created; `done`: finished.
 * @property {number} bytes  Bytes done in this phase.
 * @property {number} total  Bytes in this phase (0 when unknown).
 */

/** The record types and blobs the kit publishes, with the server's limits. One place. */
export const LIMITS = Object.freeze({
  /** Painting thumbnails: PNG or JPEG, at most 1 MiB (`appview.publish.max_image_bytes`). */
  thumbnailBytes: 1 << 20,
  /** Tape videos: MP4, at most 50 MiB (`appview.publish.max_video_bytes`). */
  videoBytes: 50 << 20,
  /** MIME types accepted per blob kind. */
  imageTypes: Object.freeze(["image/png", "image/jpeg"]),
  videoTypes: Object.freeze(["video/mp4"]),
  /** `Idempotency-Key`: 1 to 64 of these characters. */
  idempotencyKey: /^[A-Za-z0-9_-]{1,64}$/,
  /** Feed and notification pages (the lexicons' `limit`). */
  pageMin: 1,
  pageMax: 100,
  /** `searchRecords`' `q`, bytes. */
  searchMax: 200,
  /** Feed queries name at most this many collections. */
  collectionsMax: 10,
});

/** The collections `POST /publish/record` accepts. */
export const COLLECTIONS = Object.freeze({
  painting: "computer.aesthetic.painting",
  kidlisp: "computer.aesthetic.kidlisp",
  mood: "computer.aesthetic.mood",
  piece: "computer.aesthetic.piece",
  tape: "computer.aesthetic.tape",
  follow: "computer.aesthetic.graph.follow",
});

const strongRef = { type: "strongRef" };
const when = { type: "string", format: "datetime" };

/**
 * The lexicon constraints the kit checks before publishing, per collection: copied from
 * `lexicons/computer/aesthetic/*.json` (a test compares them). `maxLength` counts UTF-8
 * bytes, as in ATProto; `maxGraphemes` counts user-perceived characters. The server checks
 * records strictly (undeclared fields are refused), and so does this table.
 */
export const SCHEMAS = Object.freeze({
  "computer.aesthetic.painting": {
    required: ["slug", "code", "imageUrl", "when", "ref"],
    properties: {
      slug: { type: "string", maxLength: 128 },
      code: { type: "string", maxLength: 10 },
      thumbnail: { type: "blob", accept: LIMITS.imageTypes, maxSize: LIMITS.thumbnailBytes },
      imageUrl: { type: "string", format: "uri", maxLength: 512 },
      recordingUrl: { type: "string", format: "uri", maxLength: 512 },
      when,
      ref: { type: "string", maxLength: 24 },
      remixOf: strongRef,
    },
  },
  "computer.aesthetic.kidlisp": {
    required: ["source", "code", "when", "ref"],
    properties: {
      source: { type: "string", maxLength: 50000 },
      code: { type: "string", maxLength: 10 },
      when,
      ref: { type: "string", maxLength: 24 },
      remixOf: strongRef,
    },
  },
  "computer.aesthetic.mood": {
    required: ["mood", "when", "ref"],
    properties: {
      mood: { type: "string", maxLength: 5000 },
      when,
      ref: { type: "string" },
    },
  },
  "computer.aesthetic.piece": {
    required: ["slug", "when", "ref"],
    properties: {
      slug: { type: "string", maxLength: 100 },
      when,
      ref: { type: "string", maxLength: 24 },
      remixOf: strongRef,
    },
  },
  "computer.aesthetic.tape": {
    required: ["slug", "code", "when", "video"],
    properties: {
      slug: { type: "string" },
      code: { type: "string" },
      when,
      video: { type: "blob", accept: LIMITS.videoTypes, maxSize: LIMITS.videoBytes },
      ref: { type: "string" },
      remixOf: strongRef,
    },
  },
  "computer.aesthetic.graph.follow": {
    required: ["subject", "createdAt"],
    properties: {
      subject: { type: "string", format: "did" },
      createdAt: { type: "string", format: "datetime" },
    },
  },
});

// ---------------------------------------------------------------------------------------
// Errors

/**
 * A failure the AppView reported (`status` is the HTTP status), or one found here before
 * anything was sent (`ValidationError`, `status` 0), or a network failure that outlasted
 * the retries (`error` is `NetworkError`, `status` 0).
 */
export class AtelierError extends Error {
  /**
   * @param {string} error  The error name: `BlobTooLarge`, `InvalidRecord`, `NotFound`, ...
   * @param {string} message  Words for a person.
   * @param {{status?: number, field?: string, limit?: number, scope?: string,
   *          body?: unknown, cause?: unknown}} [details]
   */
  constructor(error, message, details = {}) {
    super(message || error, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "AtelierError";
    /** HTTP status, or 0 when the request never got an answer. */
    this.status = details.status ?? 0;
    /** The protocol error name (the body's `error`). */
    this.error = error;
    /** The record field concerned, when one is (`InvalidRecord`, `TextBlocked`): its name,
     * or a dotted path (`remixOf.uri`); the server's `$.` prefix is dropped (see `body`). */
    if (details.field !== undefined) this.field = details.field;
    /** The size limit in bytes (`BlobTooLarge`). */
    if (details.limit !== undefined) this.limit = details.limit;
    /** The OAuth scope the session lacks (`ScopeMissing`). */
    if (details.scope !== undefined) this.scope = details.scope;
    /** The whole error body, for anything else the server said. */
    if (details.body !== undefined) this.body = details.body;
  }
}

/** A check made before sending failed: the request was not made. */
export class ValidationError extends AtelierError {
  /**
   * @param {string} error  The name the server would answer with (`BlobTooLarge`,
   *   `UnsupportedMediaType`, `InvalidRecord`, `InvalidRequest`).
   * @param {string} message
   * @param {{field?: string, limit?: number}} [details]
   */
  constructor(error, message, details = {}) {
    super(error, message, { ...details, status: 0 });
    this.name = "ValidationError";
  }
}

/** The error a non-2xx answer stands for; `body` is its parsed JSON, if any. */
export function errorFromResponse(status, body, text = "") {
  if (body && typeof body === "object" && typeof body.error === "string") {
    const { error, message, limit, scope } = body;
    // The AppView names a field by its JSON path (`$.mood`); the kit by its name (`mood`),
    // as its own checks do.
    const field = typeof body.field === "string" ? body.field.replace(/^\$\./, "") : body.field;
    return new AtelierError(error, typeof message === "string" ? message : error, {
      status,
      field,
      limit,
      scope,
      body,
    });
  }
  const name = status === 401 ? "AuthRequired" : status === 404 ? "NotFound" : "HttpError";
  return new AtelierError(name, `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`, {
    status,
  });
}

// ---------------------------------------------------------------------------------------
// Validation

const encoder = new TextEncoder();

/** UTF-8 length of `s`, the unit of ATProto's `maxLength`. */
export function utf8Length(s) {
  return encoder.encode(s).length;
}

/** User-perceived characters in `s`, the unit of ATProto's `maxGraphemes`. */
export function graphemeLength(s) {
  if (typeof Intl !== "undefined" && Intl.Segmenter) {
    let n = 0;
    for (const _ of new Intl.Segmenter().segment(s)) n++;
    return n;
  }
  return [...s].length;
}

const DATETIME =
  /^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,20})?(Z|[+-][0-2][0-9]:[0-5][0-9])$/;
const DID = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/;
const HANDLE =
  /^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;
const NSID_RE =
  /^[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+(\.[a-zA-Z][a-zA-Z0-9]{0,62})$/;
const RKEY = /^[a-zA-Z0-9._:~-]{1,512}$/;
const URI = /^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$/;
const CID = /^[a-zA-Z0-9+/=]{8,256}$/;

/** Whether `s` is an ATProto datetime (RFC 3339 with seconds and a time zone). */
export function isDatetime(s) {
  return (
    typeof s === "string" &&
    s.length <= 64 &&
    DATETIME.test(s) &&
    !s.endsWith("-00:00") &&
    !Number.isNaN(Date.parse(s))
  );
}

/** Whether `s` is a DID. */
export function isDid(s) {
  return typeof s === "string" && s.length <= 2048 && DID.test(s);
}

/** Whether `s` is an AT-URI naming a record or collection (`at://did/nsid/rkey`). */
export function isAtUri(s) {
  if (typeof s !== "string" || s.length > 8192 || !s.startsWith("at://")) return false;
  const [authority, collection, rkey, ...rest] = s.slice(5).split("/");
  if (rest.length || !(isDid(authority) || HANDLE.test(authority))) return false;
  if (collection !== undefined && !NSID_RE.test(collection)) return false;
  if (rkey !== undefined && (!RKEY.test(rkey) || rkey === "." || rkey === "..")) return false;
  return true;
}

/** Whether `s` is a URI (`format: uri`). */
export function isUri(s) {
  return typeof s === "string" && s.length <= 8192 && URI.test(s);
}

const FORMATS = { datetime: isDatetime, did: isDid, "at-uri": isAtUri, uri: isUri };

function invalid(field, message) {
  return new ValidationError("InvalidRecord", `${field}: ${message}`, { field });
}

/**
 * Checks `record` against the kit's copy of the lexicon for `collection`, as the server
 * does before publishing; throws the first problem as a `ValidationError` naming the field.
 * A blob field may hold a `BlobRef`, or be absent while its upload is pending
 * (`{ pendingBlobs: ["thumbnail"] }`).
 * @param {string} collection
 * @param {Record<string, unknown>} record
 * @param {{pendingBlobs?: string[]}} [options]
 */
export function validateRecord(collection, record, options = {}) {
  const schema = SCHEMAS[collection];
  if (!schema) {
    throw new ValidationError("UnknownCollection", `not a collection the kit publishes: ${collection}`);
  }
  if (!record || typeof record !== "object" || Array.isArray(record)) {
    throw new ValidationError("InvalidRecord", "the record must be an object");
  }
  const pending = options.pendingBlobs ?? [];
  for (const name of schema.required) {
    if (record[name] === undefined && !pending.includes(name)) {
      throw invalid(name, "required field is missing");
    }
  }
  for (const [name, value] of Object.entries(record)) {
    if (name === "$type") {
      if (value !== collection) throw invalid(name, `must be ${collection}`);
      continue;
    }
    const rule = schema.properties[name];
    if (!rule) throw invalid(name, "not a field of this record type");
    if (value === undefined) continue;
    checkValue(name, rule, value);
  }
}

function checkValue(name, rule, value) {
  switch (rule.type) {
    case "string": {
      if (typeof value !== "string") throw invalid(name, "must be a string");
      if (rule.maxLength !== undefined) {
        const n = utf8Length(value);
        if (n > rule.maxLength) {
          throw invalid(name, `longer than maxLength ${rule.maxLength} (got ${n} bytes)`);
        }
      }
      if (rule.maxGraphemes !== undefined) {
        const n = graphemeLength(value);
        if (n > rule.maxGraphemes) {
          throw invalid(name, `longer than maxGraphemes ${rule.maxGraphemes} (got ${n})`);
        }
      }
      if (rule.format && !FORMATS[rule.format](value)) {
        throw invalid(name, `not a valid ${rule.format}: ${JSON.stringify(value.slice(0, 80))}`);
      }
      return;
    }
    case "blob": {
      const ok =
        value &&
        typeof value === "object" &&
        value.$type === "blob" &&
        value.ref &&
        typeof value.ref.$link === "string" &&
        typeof value.mimeType === "string" &&
        typeof value.size === "number";
      if (!ok) throw invalid(name, "must be a blob reference from uploadBlob");
      if (!rule.accept.includes(value.mimeType)) {
        throw invalid(name, `blob type ${value.mimeType} is not one of ${rule.accept.join(", ")}`);
      }
      if (value.size > rule.maxSize) throw invalid(name, `blob larger than ${rule.maxSize} bytes`);
      return;
    }
    case "strongRef": {
      if (!value || typeof value !== "object") throw invalid(name, "must be {uri, cid}");
      if (!isAtUri(value.uri)) throw invalid(`${name}.uri`, "not a valid at-uri");
      if (typeof value.cid !== "string" || !CID.test(value.cid)) {
        throw invalid(`${name}.cid`, "not a valid cid");
      }
      for (const key of Object.keys(value)) {
        if (key !== "uri" && key !== "cid" && key !== "$type") {
          throw invalid(`${name}.${key}`, "not a field of a strong reference");
        }
      }
      return;
    }
    default:
      throw invalid(name, `unsupported rule ${rule.type}`);
  }
}

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The media type of `head` (a blob's first bytes) by its magic bytes: PNG, JPEG, or MP4
 * (an ISO-BMFF `ftyp` box at offset 4); `null` when it is none of these.
 * @param {Uint8Array} head
 */
export function sniffMediaType(head) {
  if (head.length >= 8 && PNG_MAGIC.every((b, i) => head[i] === b)) return "image/png";
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) {
    return "image/jpeg";
  }
  if (
    head.length >= 8 &&
    head[4] === 0x66 && // f
    head[5] === 0x74 && // t
    head[6] === 0x79 && // y
    head[7] === 0x70 // p
  ) {
    return "video/mp4";
  }
  return null;
}

/** `data` as something `fetch` and XMLHttpRequest send, with its size and first bytes. */
async function bodyOf(data) {
  if (data instanceof Uint8Array) return { body: data, size: data.byteLength, head: data.subarray(0, 16) };
  if (data instanceof ArrayBuffer) {
    const bytes = new Uint8Array(data);
    return { body: bytes, size: bytes.byteLength, head: bytes.subarray(0, 16) };
  }
  if (typeof Blob !== "undefined" && data instanceof Blob) {
    const head = new Uint8Array(await data.slice(0, 16).arrayBuffer());
    return { body: data, size: data.size, head };
  }
  throw new ValidationError("InvalidRequest", "media must be a Blob, Uint8Array or ArrayBuffer");
}

/**
 * Checks a blob before upload: its type by magic bytes and its size, for `kind` `image`
 * (painting thumbnails) or `video` (tapes). Returns the sniffed MIME type.
 * @param {Blob|Uint8Array|ArrayBuffer} data
 * @param {"image"|"video"} kind
 */
export async function validateMedia(data, kind) {
  const { size, head } = await bodyOf(data);
  return checkMedia(size, head, kind);
}

function checkMedia(size, head, kind) {
  const accept = kind === "video" ? LIMITS.videoTypes : LIMITS.imageTypes;
  const limit = kind === "video" ? LIMITS.videoBytes : LIMITS.thumbnailBytes;
  const type = sniffMediaType(head);
  if (!type || !accept.includes(type)) {
    throw new ValidationError(
      "UnsupportedMediaType",
      `${kind === "video" ? "a tape must be an MP4 video" : "a thumbnail must be a PNG or JPEG image"}` +
        ` (the file's first bytes say ${type ?? "neither"})`,
    );
  }
  if (size > limit) {
    throw new ValidationError(
      "BlobTooLarge",
      `the ${kind === "video" ? "video" : "thumbnail"} is ${size} bytes; the limit is ${limit}`,
      { limit },
    );
  }
  if (size === 0) throw new ValidationError("InvalidRequest", "the file is empty");
  return type;
}

function checkKey(key) {
  if (!LIMITS.idempotencyKey.test(key)) {
    throw new ValidationError(
      "InvalidRequest",
      "an idempotency key is 1 to 64 characters of A-Z a-z 0-9 _ -",
    );
  }
  return key;
}

/** A fresh idempotency key (a UUID: 36 characters, within the contract's alphabet). */
export function newIdempotencyKey() {
  return globalThis.crypto.randomUUID();
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

/**
 * Parses a `text/event-stream` body into events, per the HTML standard: `event`, `data`
 * (several lines joined with `\n`), `id`, comments ignored, an event per blank line.
 * @param {AsyncIterable<Uint8Array>|ReadableStream<Uint8Array>} stream
 * @returns {AsyncGenerator<{event: string, data: string, id?: string}>}
 */
export async function* parseSSE(stream) {
  const decoder = new TextDecoder();
  let buffer = "";
  let event = "";
  let data = [];
  let id;
  const chunks = stream[Symbol.asyncIterator] ? stream : readerIterator(stream);
  let first = true;
  const lines = function* (final) {
    for (;;) {
      const m = /\r\n|\n|\r/.exec(buffer);
      // A lone `\r` at the end may be half of `\r\n`: wait for the next chunk.
      if (!m || (!final && m[0] === "\r" && m.index === buffer.length - 1)) return;
      const line = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      yield line;
    }
  };
  const take = function* (final) {
    for (const line of lines(final)) {
      if (line === "") {
        if (data.length) yield { event: event || "message", data: data.join("\n"), ...(id !== undefined ? { id } : {}) };
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
      else if (field === "id" && !value.includes("\0")) id = value;
    }
  };
  for await (const chunk of chunks) {
    let text = decoder.decode(chunk, { stream: true });
    if (first) {
      if (text.startsWith("\uFEFF")) text = text.slice(1);
      first = false;
    }
    buffer += text;
    yield* take(false);
  }
  buffer += decoder.decode();
  yield* take(true);
}

async function* readerIterator(stream) {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

// ---------------------------------------------------------------------------------------
// The client

const defaultSleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
  });

/** Whether `e` is a failure to get any answer (worth retrying with the same key). */
function isNetworkFailure(e) {
  return (
    (e instanceof TypeError && !(e instanceof AtelierError)) ||
    (e instanceof AtelierError && e.error === "NetworkError")
  );
}

const SHORT = (kind) => (kind.includes(".") ? kind : `computer.aesthetic.${kind}`);

/**
 * Makes a client for the AppView at `baseUrl`.
 * @param {object} options
 * @param {string} options.baseUrl  The AppView's public URL, such as `https://atelier.example`.
 * @param {typeof fetch} [options.fetch]  Defaults to the global `fetch`.
 * @param {typeof WebSocket} [options.WebSocket]  Defaults to the global `WebSocket`.
 * @param {typeof XMLHttpRequest|null} [options.XMLHttpRequest]  Used for upload progress in
 *   browsers; defaults to the global one when `fetch` is not injected; `null` turns it off.
 * @param {(lxm: string) => Promise<string|null>|string|null} [options.serviceAuth]  An
 *   inter-service JWT for a per-viewer method (`getServiceAuth` with `aud` the AppView's DID
 *   and `lxm` the method), sent as `Authorization: Bearer`. Without it the session cookie is
 *   what identifies the viewer.
 * @param {{attempts?: number, baseMs?: number, maxMs?: number}} [options.retry]  Publishing
 *   retries after network failures, with the same idempotency key: `attempts` in all
 *   (default 4), backoff from `baseMs` (250) doubling to `maxMs` (4000), with jitter.
 * @param {(ms: number, signal?: AbortSignal) => Promise<void>} [options.sleep]
 * @param {{assign(url: string): void}|null} [options.location]  Where `login` navigates;
 *   defaults to the browser's `location`.
 * @param {boolean} [options.webSocketHeaders]  Whether `new WebSocket(url, { headers })`
 *   works (Node 22's does; browsers' do not). Defaults to true in Node.
 */
export function createClient(options) {
  const baseUrl = String(options?.baseUrl ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(baseUrl)) {
    throw new ValidationError("InvalidRequest", "baseUrl must be an http(s) URL");
  }
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const WS = options.WebSocket ?? globalThis.WebSocket;
  const XHR =
    options.XMLHttpRequest === undefined
      ? options.fetch
        ? null
        : globalThis.XMLHttpRequest ?? null
      : options.XMLHttpRequest;
  const serviceAuth = options.serviceAuth;
  const retry = { attempts: 4, baseMs: 250, maxMs: 4000, ...(options.retry ?? {}) };
  const sleep = options.sleep ?? defaultSleep;
  const location =
    options.location === undefined ? globalThis.location ?? null : options.location;
  // Node's WebSocket (undici) takes `{ headers }` as its second argument; a browser's takes
  // only sub-protocols and cannot carry a bearer token.
  const wsHeaders = options.webSocketHeaders ?? Boolean(globalThis.process?.versions?.node);

  const url = (path, params) => {
    const u = new URL(baseUrl + path);
    for (const [k, v] of Object.entries(params ?? {})) {
      if (v === undefined || v === null) continue;
      for (const one of Array.isArray(v) ? v : [v]) u.searchParams.append(k, String(one));
    }
    return u.toString();
  };

  async function authHeaders(lxm) {
    if (!serviceAuth) return {};
    const token = await serviceAuth(lxm);
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  /** Sends one request; answers the parsed JSON body, or throws the mapped error. */
  async function request(path, { method = "GET", params, headers = {}, body, signal } = {}) {
    let response;
    try {
      response = await doFetch(url(path, params), {
        method,
        headers: { accept: "application/json", ...headers },
        body,
        credentials: "include",
        signal,
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new AtelierError("NetworkError", `could not reach ${baseUrl}: ${e?.message ?? e}`, {
        cause: e,
      });
    }
    const text = await response.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) throw errorFromResponse(response.status, json, text);
    return json;
  }

  /** `attempt()` again after network failures, up to `retry.attempts` times in all. */
  async function withRetry(attempt, signal) {
    for (let i = 1; ; i++) {
      try {
        return await attempt();
      } catch (e) {
        if (!isNetworkFailure(e) || i >= retry.attempts || signal?.aborted) throw e;
        const backoff = Math.min(retry.maxMs, retry.baseMs * 2 ** (i - 1));
        await sleep(backoff / 2 + Math.random() * (backoff / 2), signal);
      }
    }
  }

  const xrpc = (nsid, params, extra) => request(`/xrpc/${nsid}`, { params, ...extra });

  function feedParams({ limit, cursor, types, collections } = {}) {
    const list = collections ?? types;
    const names = list === undefined ? undefined : (Array.isArray(list) ? list : [list]).map(SHORT);
    if (names && names.length > LIMITS.collectionsMax) {
      throw new ValidationError("InvalidRequest", `at most ${LIMITS.collectionsMax} collections`);
    }
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= LIMITS.pageMin && limit <= LIMITS.pageMax)) {
      throw new ValidationError("InvalidRequest", `limit must be ${LIMITS.pageMin} to ${LIMITS.pageMax}`);
    }
    return { collections: names, limit, cursor };
  }

  // -- session ----------------------------------------------------------------------------

  /**
   * Starts sign-in: the URL of the AppView's sign-in page for `handle`; in a browser it
   * also navigates there (`{ navigate: false }` only returns it).
   * @param {string} [handle]  Such as `jeffrey.at.aesthetic.computer` (a leading `@` is dropped).
   */
  function login(handle, { navigate = true } = {}) {
    const h = handle ? String(handle).trim().replace(/^@/, "") : undefined;
    const to = url("/login", h ? { handle: h } : {});
    if (navigate && location) location.assign(to);
    return to;
  }

  /**
   * The signed-in user, or `null` when there is no session. `handle` is `null` until the
   * AppView has indexed the account; `published` lists the session's latest publishes.
   * @returns {Promise<{did: string, handle: string|null, scopes: string[],
   *   published: object[]}|null>}
   */
  async function session() {
    try {
      return await request("/publish/session");
    } catch (e) {
      if (e instanceof AtelierError && e.status === 401) return null;
      throw e;
    }
  }

  // -- read -------------------------------------------------------------------------------

  /**
   * The Atmosphere: every indexed AC record, newest first. With `actor`, that artist's
   * records only (`getAuthorFeed`). `types` are short names (`painting`) or NSIDs.
   * @param {{limit?: number, cursor?: string, types?: string[]|string, actor?: string}} [params]
   * @returns {Promise<FeedPage>}
   */
  async function atmosphere(params = {}) {
    if (params.actor !== undefined) return authorFeed(params.actor, params);
    return xrpc("computer.aesthetic.feed.getAtmosphere", feedParams(params));
  }

  /**
   * One artist's records, newest first.
   * @param {string} actor  The artist's DID.
   * @param {{limit?: number, cursor?: string, types?: string[]|string}} [params]
   * @returns {Promise<FeedPage>}
   */
  async function authorFeed(actor, params = {}) {
    if (!isDid(actor)) throw new ValidationError("InvalidRequest", "actor must be a DID");
    return xrpc("computer.aesthetic.feed.getAuthorFeed", { actor, ...feedParams(params) });
  }

  /**
   * Records by the accounts the viewer follows. The viewer is the session cookie's account
   * (from the AppView's own origin), or `serviceAuth`'s when given.
   * @param {{limit?: number, cursor?: string, types?: string[]|string}} [params]
   * @returns {Promise<FeedPage>}
   */
  async function following(params = {}) {
    const nsid = "computer.aesthetic.feed.getFollowing";
    return xrpc(nsid, feedParams(params), { headers: await authHeaders(nsid) });
  }

  /**
   * One indexed record.
   * @param {string} uri
   * @returns {Promise<RecordView>}
   */
  async function record(uri) {
    if (!isAtUri(uri)) throw new ValidationError("InvalidRequest", "uri must be an AT-URI");
    const out = await xrpc("computer.aesthetic.feed.getRecord", { uri });
    return out.record;
  }

  /**
   * The remix graph around `uri`. `direction`: `both` (the lexicon's whole answer),
   * `parent` (only `remixOf` and `parent`: what it remixes), `children` (only `remixes` and
   * `cursor`: what remixes it).
   * @param {string} uri
   * @param {{direction?: "both"|"parent"|"children", limit?: number, cursor?: string}} [params]
   * @returns {Promise<Partial<RemixesOutput>>}
   */
  async function remixes(uri, { direction = "both", limit, cursor } = {}) {
    if (!isAtUri(uri)) throw new ValidationError("InvalidRequest", "uri must be an AT-URI");
    if (!["both", "parent", "children"].includes(direction)) {
      throw new ValidationError("InvalidRequest", "direction is both, parent or children");
    }
    const out = await xrpc("computer.aesthetic.feed.getRemixes", {
      uri,
      ...feedParams({ limit, cursor }),
      collections: undefined,
    });
    if (direction === "parent") return { remixOf: out.remixOf, parent: out.parent };
    if (direction === "children") return { remixes: out.remixes, cursor: out.cursor };
    return out;
  }

  /**
   * An artist's profile and counts.
   * @param {string} actor  A DID.
   * @returns {Promise<ProfileView>}
   */
  async function profile(actor) {
    if (!isDid(actor)) throw new ValidationError("InvalidRequest", "actor must be a DID");
    return xrpc("computer.aesthetic.actor.getProfile", { actor });
  }

  /**
   * Records by code (`$abc` or `abc`), slug prefix or handle prefix.
   * @param {string} q
   * @param {{limit?: number, cursor?: string, types?: string[]|string}} [params]
   * @returns {Promise<FeedPage>}
   */
  async function search(q, params = {}) {
    const n = typeof q === "string" ? utf8Length(q) : 0;
    if (n < 1 || n > LIMITS.searchMax) {
      throw new ValidationError("InvalidRequest", `q must be 1 to ${LIMITS.searchMax} bytes`);
    }
    return xrpc("computer.aesthetic.feed.searchRecords", { q, ...feedParams(params) });
  }

  /**
   * Every page of a cursor-paginated call, in order: `fn(params)` then `fn({...params,
   * cursor})` until a page has no cursor (or repeats one).
   * `for await (const page of client.pages(client.atmosphere, { limit: 20 })) ...`
   * @template {{cursor?: string}} P
   * @param {(params: object) => Promise<P>} fn
   * @param {object} [params]
   * @returns {AsyncGenerator<P>}
   */
  async function* pages(fn, params = {}) {
    let cursor = params.cursor;
    const seen = new Set();
    for (;;) {
      const page = await fn({ ...params, cursor });
      yield page;
      if (!page?.cursor || seen.has(page.cursor)) return;
      seen.add(page.cursor);
      cursor = page.cursor;
    }
  }

  // -- notifications ----------------------------------------------------------------------

  /**
   * The viewer's notifications, newest first.
   * @param {{limit?: number, cursor?: string}} [params]
   * @returns {Promise<NotificationsPage>}
   */
  async function listNotifications({ limit, cursor } = {}) {
    const nsid = "computer.aesthetic.notification.listNotifications";
    const p = feedParams({ limit, cursor });
    return xrpc(nsid, { limit: p.limit, cursor: p.cursor }, { headers: await authHeaders(nsid) });
  }

  /** How many notifications are unread. @returns {Promise<number>} */
  async function unreadCount() {
    const nsid = "computer.aesthetic.notification.getUnreadCount";
    const out = await xrpc(nsid, {}, { headers: await authHeaders(nsid) });
    return out.count;
  }

  /**
   * Marks notifications seen up to `seenAt` (default now).
   * @param {Date|string} [seenAt]
   */
  async function updateSeen(seenAt = new Date()) {
    const nsid = "computer.aesthetic.notification.updateSeen";
    const at = seenAt instanceof Date ? seenAt.toISOString() : seenAt;
    if (!isDatetime(at)) throw new ValidationError("InvalidRequest", "seenAt must be a datetime");
    await request(`/xrpc/${nsid}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await authHeaders(nsid)) },
      body: JSON.stringify({ seenAt: at }),
    });
  }

  /**
   * The live notification stream (`computer.aesthetic.notification.subscribe`, a
   * WebSocket of `notificationView` JSON messages, oldest first). It reconnects after any
   * drop with backoff (1 s doubling to 30 s, with jitter, reset once a connection opens)
   * and resumes after the last notification received, so nothing is missed or repeated.
   * In Node the bearer token from `serviceAuth` goes in the upgrade request; browsers
   * cannot set headers on a WebSocket, so there the session cookie must identify the viewer.
   * @param {object} handlers
   * @param {(n: NotificationView) => void} handlers.onEvent
   * @param {number|string} [handlers.cursor]  Resume after this notification id.
   * @param {() => void} [handlers.onOpen]
   * @param {(info: {attempt: number, delayMs: number, error?: unknown}) => void} [handlers.onReconnect]
   * @returns {{close(): void, readonly cursor: number|undefined}}
   */
  function subscribeNotifications({ onEvent, cursor, onOpen, onReconnect, minMs = 1000, maxMs = 30000 } = {}) {
    if (typeof onEvent !== "function") throw new ValidationError("InvalidRequest", "onEvent is required");
    if (!WS) throw new ValidationError("InvalidRequest", "no WebSocket implementation");
    const nsid = "computer.aesthetic.notification.subscribe";
    let last = cursor === undefined || cursor === null ? undefined : Number(cursor);
    let closed = false;
    let socket = null;
    let attempt = 0;
    let timer = null;

    const connect = async () => {
      if (closed) return;
      const wsUrl = url(`/xrpc/${nsid}`, last === undefined ? {} : { cursor: last }).replace(/^http/, "ws");
      let headers = {};
      try {
        headers = wsHeaders ? await authHeaders(nsid) : {};
      } catch (error) {
        return retryLater(error);
      }
      if (closed) return;
      try {
        socket = Object.keys(headers).length ? new WS(wsUrl, { headers }) : new WS(wsUrl);
      } catch (error) {
        return retryLater(error);
      }
      let failure;
      socket.onopen = () => {
        attempt = 0;
        onOpen?.();
      };
      socket.onmessage = (message) => {
        if (typeof message.data !== "string") return;
        let n;
        try {
          n = JSON.parse(message.data);
        } catch {
          return;
        }
        if (!n || typeof n.id !== "number") return;
        if (last !== undefined && n.id <= last) return;
        last = n.id;
        onEvent(n);
      };
      socket.onerror = (error) => {
        failure = error;
      };
      socket.onclose = () => {
        socket = null;
        retryLater(failure);
      };
    };
    const retryLater = (error) => {
      if (closed) return;
      attempt++;
      const cap = Math.min(maxMs, minMs * 2 ** (attempt - 1));
      const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
      onReconnect?.({ attempt, delayMs, error });
      timer = setTimeout(connect, delayMs);
    };
    connect();
    return {
      close() {
        closed = true;
        clearTimeout(timer);
        socket?.close();
      },
      get cursor() {
        return last;
      },
    };
  }

  // -- publish ----------------------------------------------------------------------------

  /**
   * Follows the AppView's SSE progress for the upload with idempotency key `key` until it
   * says `done`/`failed` or `signal` aborts; reports each `progress` event. Answers the
   * final event's data (or `undefined`). Never throws: progress is a nicety, the POST's
   * answer is what counts. `ready()` is called once the stream is open (or could not be).
   */
  async function watchProgress(key, onProgress, signal, ready) {
    for (let tries = 0; tries < 40 && !signal.aborted; tries++) {
      let response;
      try {
        response = await doFetch(url(`/publish/progress/${encodeURIComponent(key)}`), {
          headers: { accept: "text/event-stream" },
          credentials: "include",
          signal,
        });
      } catch {
        ready();
        if (signal.aborted) return undefined;
        await sleep(250, signal);
        continue;
      }
      ready();
      if (!response.ok || !response.body) {
        // Not started yet (the POST may not have reached the server): look again soon.
        await response.body?.cancel().catch(() => {});
        await sleep(250, signal);
        continue;
      }
      try {
        for await (const ev of parseSSE(response.body)) {
          let data;
          try {
            data = JSON.parse(ev.data);
          } catch {
            continue;
          }
          if (ev.event === "progress") {
            onProgress?.({ phase: data.phase, bytes: data.bytes ?? 0, total: data.total ?? 0 });
          } else if (ev.event === "done" || ev.event === "failed") {
            return { event: ev.event, data };
          }
        }
      } catch {
        if (signal.aborted) return undefined;
      }
      await sleep(250, signal);
    }
    return undefined;
  }

  /** One upload attempt through XMLHttpRequest, reporting `sending` progress. */
  function xhrUpload(target, headers, body, onProgress, signal) {
    return new Promise((resolve, reject) => {
      const xhr = new XHR();
      signal?.addEventListener("abort", () => xhr.abort(), { once: true });
      xhr.open("POST", target);
      xhr.withCredentials = true;
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      if (xhr.upload && onProgress) {
        xhr.upload.onprogress = (e) =>
          onProgress({ phase: "sending", bytes: e.loaded, total: e.lengthComputable ? e.total : 0 });
      }
      xhr.onerror = () => reject(new AtelierError("NetworkError", `could not reach ${baseUrl}`));
      xhr.onabort = () => reject(new AtelierError("Aborted", "the upload was cancelled"));
      xhr.onload = () => {
        let json;
        try {
          json = JSON.parse(xhr.responseText);
        } catch {
          json = undefined;
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(json);
        else reject(errorFromResponse(xhr.status, json, xhr.responseText));
      };
      xhr.send(body);
    });
  }

  /**
   * Uploads a blob (`POST /publish/blob`) after checking its type and size here. Network
   * failures are retried with the same idempotency key, so a blob is never stored twice.
   * @param {Blob|Uint8Array|ArrayBuffer} data
   * @param {{kind?: "image"|"video", idempotencyKey?: string,
   *          onProgress?: (p: Progress) => void, signal?: AbortSignal}} [options]
   * @returns {Promise<{blob: BlobRef, deduplicated: boolean}>}
   */
  async function uploadBlob(data, { kind = "image", idempotencyKey, onProgress, signal } = {}) {
    const { body, size, head } = await bodyOf(data);
    const mimeType = checkMedia(size, head, kind);
    const key = checkKey(idempotencyKey ?? newIdempotencyKey());
    const headers = { "content-type": mimeType, "idempotency-key": key };
    const watching = new AbortController();
    const stop = () => watching.abort();
    signal?.addEventListener("abort", stop, { once: true });
    // The progress stream is opened first and the upload waits (up to a second) for it:
    // the AppView serialises requests per session, so a progress request that arrived
    // during the upload would only be answered after it.
    let ready = () => {};
    const opened = new Promise((resolve) => (ready = resolve));
    const progress = onProgress ? watchProgress(key, onProgress, watching.signal, ready) : null;
    if (progress) await Promise.race([opened, sleep(1000, watching.signal)]);
    try {
      const out = await withRetry(
        () =>
          XHR
            ? xhrUpload(url("/publish/blob"), headers, body, onProgress, signal)
            : request("/publish/blob", { method: "POST", headers, body, signal }),
        signal,
      );
      onProgress?.({ phase: "uploading", bytes: size, total: size });
      return out;
    } finally {
      stop();
      signal?.removeEventListener("abort", stop);
      await progress;
    }
  }

  /**
   * Creates a record in the signed-in user's repo (`POST /publish/record`) after checking
   * it against the lexicon here. The answer's `status` is `pending` until the AppView sees
   * the record come back from the network (see `status`, `waitFor`); `masked` names fields
   * the safety filter masked.
   * @param {string} collection  An NSID from `COLLECTIONS`, or its short name.
   * @param {Record<string, unknown>} record
   * @param {{idempotencyKey?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<{uri: string, cid: string, status: string, masked: string[]}>}
   */
  async function createRecord(collection, record, { idempotencyKey, signal } = {}) {
    const nsid = SHORT(collection);
    const clean = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined));
    validateRecord(nsid, clean);
    const key = checkKey(idempotencyKey ?? newIdempotencyKey());
    const body = JSON.stringify({ collection: nsid, record: { $type: nsid, ...clean } });
    return withRetry(
      () =>
        request("/publish/record", {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key },
          body,
          signal,
        }),
      signal,
    );
  }

  /** The record's fields with `when` defaulted to now. */
  const stamped = (fields) => ({ ...fields, when: fields.when ?? new Date().toISOString() });

  /** Keys for a two-step publish: one for the blob, one for the record. */
  function keysFor(idempotencyKey) {
    if (idempotencyKey === undefined) return { blob: newIdempotencyKey(), record: newIdempotencyKey() };
    checkKey(`b-${idempotencyKey}`);
    return { blob: `b-${idempotencyKey}`, record: `r-${idempotencyKey}` };
  }

  /**
   * Publishes a painting: uploads `png` as its thumbnail (PNG or JPEG, at most 1 MiB),
   * then creates the `computer.aesthetic.painting` record pointing at it. Every field is
   * checked before the upload starts.
   * @param {Omit<Painting, "$type"|"thumbnail"|"when"> & {png?: Blob|Uint8Array|ArrayBuffer,
   *   when?: string, onProgress?: (p: Progress) => void, idempotencyKey?: string,
   *   signal?: AbortSignal}} params
   */
  async function publishPainting({ png, onProgress, idempotencyKey, signal, ...fields }) {
    const record = stamped(fields);
    validateRecord(COLLECTIONS.painting, record);
    const keys = keysFor(idempotencyKey);
    if (png !== undefined) {
      await validateMedia(png, "image");
      const { blob } = await uploadBlob(png, { kind: "image", idempotencyKey: keys.blob, onProgress, signal });
      record.thumbnail = blob;
    }
    onProgress?.({ phase: "record", bytes: 0, total: 0 });
    const out = await createRecord(COLLECTIONS.painting, record, { idempotencyKey: keys.record, signal });
    onProgress?.({ phase: "done", bytes: 0, total: 0 });
    return out;
  }

  /**
   * Publishes a KidLisp program.
   * @param {Omit<Kidlisp, "$type"|"when"> & {when?: string, idempotencyKey?: string}} params
   */
  async function publishKidlisp({ idempotencyKey, signal, ...fields }) {
    return createRecord(COLLECTIONS.kidlisp, stamped(fields), { idempotencyKey, signal });
  }

  /**
   * Publishes a mood.
   * @param {Omit<Mood, "$type"|"when"> & {when?: string, idempotencyKey?: string}} params
   */
  async function publishMood({ idempotencyKey, signal, ...fields }) {
    return createRecord(COLLECTIONS.mood, stamped(fields), { idempotencyKey, signal });
  }

  /**
   * Publishes a piece.
   * @param {Omit<Piece, "$type"|"when"> & {when?: string, idempotencyKey?: string}} params
   */
  async function publishPiece({ idempotencyKey, signal, ...fields }) {
    return createRecord(COLLECTIONS.piece, stamped(fields), { idempotencyKey, signal });
  }

  /**
   * Publishes a tape: uploads the MP4 (given as `mp4`, or fetched from `videoUrl`; at most
   * 50 MiB), then creates the `computer.aesthetic.tape` record.
   * @param {Omit<Tape, "$type"|"video"|"when"> & {mp4?: Blob|Uint8Array|ArrayBuffer,
   *   videoUrl?: string, when?: string, onProgress?: (p: Progress) => void,
   *   idempotencyKey?: string, signal?: AbortSignal}} params
   */
  async function publishTape({ mp4, videoUrl, onProgress, idempotencyKey, signal, ...fields }) {
    const record = stamped(fields);
    validateRecord(COLLECTIONS.tape, record, { pendingBlobs: ["video"] });
    if ((mp4 === undefined) === (videoUrl === undefined)) {
      throw new ValidationError("InvalidRecord", "give the video as exactly one of mp4 or videoUrl", { field: "video" });
    }
    const keys = keysFor(idempotencyKey);
    const video = mp4 ?? (await download(videoUrl, onProgress, signal));
    await validateMedia(video, "video");
    const { blob } = await uploadBlob(video, { kind: "video", idempotencyKey: keys.blob, onProgress, signal });
    record.video = blob;
    onProgress?.({ phase: "record", bytes: 0, total: 0 });
    const out = await createRecord(COLLECTIONS.tape, record, { idempotencyKey: keys.record, signal });
    onProgress?.({ phase: "done", bytes: 0, total: 0 });
    return out;
  }

  /** Fetches `from` (no cookies: it is AC's storage, not the AppView), stopping at the limit. */
  async function download(from, onProgress, signal) {
    if (!isUri(from)) throw new ValidationError("InvalidRecord", "videoUrl must be a URL", { field: "video" });
    let response;
    try {
      response = await doFetch(from, { signal });
    } catch (e) {
      throw new AtelierError("NetworkError", `could not fetch ${from}: ${e?.message ?? e}`, { cause: e });
    }
    if (!response.ok) throw errorFromResponse(response.status, undefined, `fetching ${from}`);
    const total = Number(response.headers.get("content-length")) || 0;
    if (total > LIMITS.videoBytes) {
      await response.body?.cancel().catch(() => {});
      throw new ValidationError("BlobTooLarge", `the video is ${total} bytes; the limit is ${LIMITS.videoBytes}`, {
        limit: LIMITS.videoBytes,
      });
    }
    const parts = [];
    let bytes = 0;
    for await (const chunk of response.body) {
      bytes += chunk.byteLength;
      if (bytes > LIMITS.videoBytes) {
        throw new ValidationError("BlobTooLarge", `the video is over ${LIMITS.videoBytes} bytes`, {
          limit: LIMITS.videoBytes,
        });
      }
      parts.push(chunk);
      onProgress?.({ phase: "downloading", bytes, total });
    }
    const out = new Uint8Array(bytes);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }

  /**
   * Follows an artist.
   * @param {string} did
   */
  async function follow(did, { idempotencyKey, signal } = {}) {
    if (!isDid(did)) throw new ValidationError("InvalidRecord", "subject must be a DID", { field: "subject" });
    return createRecord(
      COLLECTIONS.follow,
      { subject: did, createdAt: new Date().toISOString() },
      { idempotencyKey, signal },
    );
  }

  /**
   * Publishes a remix of `of`: a record of type `kind` whose `remixOf` is a strong
   * reference to `of`. `of` is a strong reference, a record view (as the feed serves it),
   * or an AT-URI (then the record's current CID is looked up with `getRecord`).
   * @param {string|StrongRef|RecordView} of
   * @param {"painting"|"kidlisp"|"piece"|"tape"} kind
   * @param {object} params  What `publishPainting` etc. take.
   */
  async function remix(of, kind, params) {
    const remixOf = await strongRefOf(of);
    const publish = { painting: publishPainting, kidlisp: publishKidlisp, piece: publishPiece, tape: publishTape }[kind];
    if (!publish) {
      throw new ValidationError("InvalidRecord", `only a painting, kidlisp, piece or tape can be a remix (got ${kind})`, {
        field: "remixOf",
      });
    }
    return publish({ ...params, remixOf });
  }

  async function strongRefOf(of) {
    if (typeof of === "string") {
      const view = await record(of);
      return { uri: view.uri, cid: view.cid };
    }
    if (of && typeof of.uri === "string" && typeof of.cid === "string") return { uri: of.uri, cid: of.cid };
    throw new ValidationError("InvalidRecord", "remixOf must be an AT-URI or {uri, cid}", { field: "remixOf" });
  }

  /**
   * Deletes one of the signed-in user's records.
   * @param {string} uri
   * @returns {Promise<{uri: string, deleted: true}>}
   */
  async function remove(uri, { idempotencyKey, signal } = {}) {
    if (!isAtUri(uri)) throw new ValidationError("InvalidRequest", "uri must be an AT-URI");
    const key = checkKey(idempotencyKey ?? newIdempotencyKey());
    return withRetry(
      () =>
        request("/publish/delete", {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key },
          body: JSON.stringify({ uri }),
          signal,
        }),
      signal,
    );
  }

  /**
   * Where a published record stands: `pending` (written to the PDS, not yet seen back),
   * `confirmed` (indexed), `repaired` (indexed, but as a different version than `cid`,
   * the one `createRecord` answered), `missing` (not known).
   * @param {string} uri
   * @param {string} [cid]  The version that was published.
   * @returns {Promise<{uri: string, cid: string|null, status: "pending"|"confirmed"|"repaired"|"missing"}>}
   */
  async function status(uri, cid) {
    if (!isAtUri(uri)) throw new ValidationError("InvalidRequest", "uri must be an AT-URI");
    return request("/publish/status", { params: { uri, cid } });
  }

  /**
   * Polls `status` until the record is no longer `pending` (or `timeoutMs` passes, then
   * the last answer is returned). Takes what a publish answered (`{uri, cid}`) or a URI.
   * @param {string|{uri: string, cid?: string}} published
   */
  async function waitFor(published, { timeoutMs = 30000, everyMs = 500, signal } = {}) {
    const { uri, cid } = typeof published === "string" ? { uri: published } : published;
    const until = Date.now() + timeoutMs;
    for (;;) {
      const s = await status(uri, cid);
      if (s.status !== "pending" || Date.now() >= until || signal?.aborted) return s;
      await sleep(everyMs, signal);
    }
  }

  return {
    baseUrl,
    // session
    login,
    session,
    // read
    atmosphere,
    authorFeed,
    following,
    record,
    remixes,
    profile,
    search,
    pages,
    // notifications
    listNotifications,
    unreadCount,
    updateSeen,
    subscribeNotifications,
    // publish
    uploadBlob,
    createRecord,
    publishPainting,
    publishKidlisp,
    publishMood,
    publishPiece,
    publishTape,
    follow,
    remix,
    remove,
    status,
    waitFor,
  };
}
