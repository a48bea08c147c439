#!/usr/bin/env node
// A notification overlay for a terminal or a stream: follows one user's live notification
// stream on an Atelier AppView and prints one line per notification (remix, mention,
// follow, and any reason the AppView adds later, such as moderation), resuming after
// disconnects from the last notification printed. With `--state FILE` the cursor also
// survives restarts.
//
//   ATELIER_APP_PASSWORD=... node overlay.mjs --appview https://atelier.example \
//       --pds https://pds.example --identifier alice.example [--state overlay.cursor]
//
// The stream needs an inter-service token for the user: the overlay signs in to the
// user's PDS with an app password (from the environment, never the command line) and asks
// it for a fresh `getServiceAuth` token (audience the AppView's DID, method
// `computer.aesthetic.notification.subscribe`) on every (re)connect. `--token-command CMD`
// instead runs CMD for each token (its stdout is the token).
//
// As a module: `follow({ appview, serviceAuth, onLine })` does the same with your own
// token source and output.

import { pathToFileURL } from "node:url";

import { createClient } from "./atproto.mjs";

/** The method the stream's tokens are for. */
export const SUBSCRIBE = "computer.aesthetic.notification.subscribe";

/**
 * One line for a notification.
 * @param {import("../../lexicons/ts/computer/aesthetic/notification/defs.js").NotificationView} n
 */
export function formatNotification(n) {
  const who = n.authorHandle ? `@${n.authorHandle}` : n.author;
  const at = n.indexedAt ?? "";
  const kind = n.record?.$type?.replace(/^computer\.aesthetic\./, "") ?? "";
  switch (n.reason) {
    case "remix":
      return `${at} remix    ${who} remixed ${n.subject ?? "your work"} as ${kind ? `a ${kind} ` : ""}${n.uri}`;
    case "mention":
      return `${at} mention  ${who} mentioned you in ${n.uri}`;
    case "follow":
      return `${at} follow   ${who} follows you`;
    case "moderation":
      return `${at} moderation ${n.subject ?? n.uri}: ${n.record?.val ?? n.record?.action ?? "changed"}`;
    default:
      return `${at} ${n.reason} ${who} ${n.uri}`;
  }
}

/**
 * Follows the stream and hands each notification's line to `onLine`.
 * @param {{appview: string, serviceAuth: (lxm: string) => Promise<string>, cursor?: number,
 *          onLine?: (line: string, n: object) => void, onCursor?: (id: number) => void,
 *          log?: (text: string) => void, WebSocket?: typeof WebSocket}} options
 * @returns {{close(): void, readonly cursor: number|undefined}}
 */
export function follow({ appview, serviceAuth, cursor, onLine = console.log, onCursor, log = () => {}, WebSocket }) {
  const client = createClient({ baseUrl: appview, serviceAuth, WebSocket, webSocketHeaders: true });
  return client.subscribeNotifications({
    cursor,
    onOpen: () => log(`connected to ${appview}`),
    onReconnect: ({ delayMs, error }) =>
      log(`disconnected${error?.message ? ` (${error.message})` : ""}; reconnecting in ${Math.round(delayMs / 100) / 10} s`),
    onEvent: (n) => {
      onLine(formatNotification(n), n);
      onCursor?.(n.id);
    },
  });
}

/**
 * A token source from a PDS app-password session: signs in once (again when the session
 * expires) and asks for a service token per call.
 */
export function pdsServiceAuth({ pds, identifier, password, aud, fetch = globalThis.fetch }) {
  const base = pds.replace(/\/+$/, "");
  let session = null;
  const call = async (path, init) => {
    const response = await fetch(`${base}/xrpc/${path}`, init);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const e = new Error(`${path}: ${response.status} ${body.error ?? ""} ${body.message ?? ""}`.trim());
      e.status = response.status;
      e.error = body.error;
      throw e;
    }
    return body;
  };
  const signIn = async () => {
    session = await call("com.atproto.server.createSession", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ identifier, password }),
    });
  };
  return async (lxm) => {
    if (!session) await signIn();
    const ask = () =>
      call(`com.atproto.server.getServiceAuth?aud=${encodeURIComponent(aud)}&lxm=${encodeURIComponent(lxm)}`, {
        headers: { authorization: `Bearer ${session.accessJwt}` },
      });
    try {
      return (await ask()).token;
    } catch (e) {
      if (e.error !== "ExpiredToken" && e.status !== 401) throw e;
      await signIn();
      return (await ask()).token;
    }
  };
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) throw new Error(`unexpected argument ${a}`);
    const [key, inline] = a.slice(2).split(/=(.*)/s);
    out[key] = inline ?? argv[++i];
    if (out[key] === undefined) throw new Error(`--${key} needs a value`);
  }
  return out;
}

const USAGE = `usage: node overlay.mjs --appview URL (--pds URL --identifier HANDLE | --token-command CMD)
                        [--aud DID] [--cursor ID] [--state FILE]
  ATELIER_APP_PASSWORD  the app password for --identifier (read from the environment only)
  --aud                 the AppView's DID (default did:web:<the AppView's hostname>)
  --state FILE          keep the last notification id in FILE, to resume after a restart`;

async function main(argv) {
  const { readFile, writeFile, rename } = await import("node:fs/promises");
  let args;
  try {
    args = parseArgs(argv);
  } catch (e) {
    console.error(`${e.message}\n${USAGE}`);
    return 2;
  }
  if (args.help || !args.appview) {
    console.error(USAGE);
    return args.help ? 0 : 2;
  }
  const aud = args.aud ?? `did:web:${new URL(args.appview).hostname}`;
  let serviceAuth;
  if (args["token-command"]) {
    const { execFile } = await import("node:child_process");
    serviceAuth = (lxm) =>
      new Promise((resolve, reject) =>
        execFile("/bin/sh", ["-c", args["token-command"]], { env: { ...process.env, ATELIER_LXM: lxm, ATELIER_AUD: aud } }, (err, stdout) =>
          err ? reject(err) : resolve(stdout.trim()),
        ),
      );
  } else if (args.pds && args.identifier) {
    const password = process.env.ATELIER_APP_PASSWORD;
    if (!password) {
      console.error("set ATELIER_APP_PASSWORD to the app password for --identifier");
      return 2;
    }
    serviceAuth = pdsServiceAuth({ pds: args.pds, identifier: args.identifier, password, aud });
  } else {
    console.error(USAGE);
    return 2;
  }
  let cursor = args.cursor === undefined ? undefined : Number(args.cursor);
  if (cursor === undefined && args.state) {
    const saved = await readFile(args.state, "utf8").catch(() => "");
    if (/^\d+\s*$/.test(saved)) cursor = Number(saved);
  }
  const save = args.state
    ? async (id) => {
        // Written whole then renamed, so a crash never leaves half a number.
        await writeFile(`${args.state}.tmp`, `${id}\n`);
        await rename(`${args.state}.tmp`, args.state);
      }
    : undefined;
  const stream = follow({
    appview: args.appview,
    serviceAuth,
    cursor,
    onLine: (line) => console.log(line),
    onCursor: save && ((id) => save(id).catch((e) => console.error(`saving the cursor: ${e.message}`))),
    log: (text) => console.error(text),
  });
  await new Promise((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  stream.close();
  return 0;
}

// Run as a script (not imported).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
