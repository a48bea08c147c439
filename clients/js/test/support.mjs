// Test support: a real HTTP server on 127.0.0.1 (port 0) that answers with whatever each
// test scripts, and records every request it saw.
//
// It is a stand-in for the AppView ONLY for the kit's own tests (error shapes, SSE
// progress, retries): it answers the publishing contract's bodies as written, not the
// AppView's behaviour. Integration tests against a real `atelier up` stack are separate.

import http from "node:http";

/**
 * @typedef {{method: string, path: string, query: URLSearchParams, headers: http.IncomingHttpHeaders,
 *            body: Buffer}} Seen
 * @typedef {(req: Seen, res: http.ServerResponse, raw: http.IncomingMessage) => void|Promise<void>} Handler
 */

/**
 * Starts a server; `routes` maps `"METHOD /path"` (or `"METHOD /prefix/*"`) to a handler.
 * Unknown routes answer 404 with an XRPC error body.
 * @param {Record<string, Handler>} routes
 */
export async function startServer(routes) {
  /** @type {Seen[]} */
  const seen = [];
  const server = http.createServer(async (raw, res) => {
    const u = new URL(raw.url, "http://127.0.0.1");
    const chunks = [];
    for await (const c of raw) chunks.push(c);
    const req = { method: raw.method, path: u.pathname, query: u.searchParams, headers: raw.headers, body: Buffer.concat(chunks) };
    seen.push(req);
    const key = `${raw.method} ${u.pathname}`;
    const handler =
      routes[key] ??
      Object.entries(routes).find(([k]) => k.endsWith("/*") && key.startsWith(k.slice(0, -1)))?.[1];
    if (!handler) return json(res, 404, { error: "NotFound", message: `no route ${key}` });
    try {
      await handler(req, res, raw);
    } catch (e) {
      if (!res.headersSent) json(res, 500, { error: "InternalServerError", message: String(e) });
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    seen,
    /** Requests to one route. */
    to: (method, path) => seen.filter((r) => r.method === method && r.path === path),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

/** Answers `status` with a JSON body. */
export function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** A valid PNG's first bytes followed by `size - 8` zero bytes. */
export function png(size = 64) {
  const out = new Uint8Array(size);
  out.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return out;
}

/** An MP4's first bytes (an `ftyp` box) followed by zeros. */
export function mp4(size = 64) {
  const out = new Uint8Array(size);
  out.set([0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70, 0x69, 0x73, 0x6f, 0x6d]);
  return out;
}

/** A blob reference as the contract's 200 answer carries it. */
export function blobRef(mimeType, size) {
  return { $type: "blob", ref: { $link: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" }, mimeType, size };
}

/** Fields of a valid painting record (without the thumbnail). */
export const PAINTING = Object.freeze({
  slug: "2026.12.06.15.00.00.000",
  code: "a3b",
  imageUrl: "https://aesthetic.computer/media/paintings/a3b",
  ref: "64b7f0c2a1b2c3d4e5f60718",
  when: "2026-12-06T15:00:00.000Z",
});

export const URI = "at://did:plc:abcdefghijklmnopqrstuvwx/computer.aesthetic.painting/3lbbbbbbbbbbb";
export const CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";

/** Waits for `ms`. */
export const delay = (ms) => new Promise((r) => setTimeout(r, ms));
