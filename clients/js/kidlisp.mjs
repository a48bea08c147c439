// KidLisp's network primitives: `(share)`, `(atmosphere n)`, `(remix uri)`, `(notify fn)`,
// over the client kit (`atproto.mjs`) and a small host interface that AC's runtime provides.
//
// The table is data: each entry has its `arity`, a one-line `doc`, an `example` and the
// `fn` that runs it. `fn` takes the context first (`createContext`), then the KidLisp
// arguments; `bind(ctx)` gives the runtime plain functions to install under each name.
//
// The host interface (only the first three are required):
//   currentPainting() -> { png, slug, code, imageUrl, ref, recordingUrl?, when? } | null
//                        the painting on screen, with AC's own ids for it
//   currentSource()   -> { source, code, ref, when? } | null   the KidLisp program running
//   redirect(url)        send the person to `url` (the sign-in page)
//   handle?()         -> the AC handle to prefill on the sign-in page, when known
//   loadSource?(text)    run KidLisp text (what `(remix uri)` of a program does)
//   loadImage?(url)      open an image to paint over (what `(remix uri)` of a painting does)
//   progress?(p)         upload progress, `{phase, bytes, total}` (see atproto.mjs)

import { createClient, AtelierError, ValidationError, LIMITS } from "./atproto.mjs";

/**
 * @typedef {object} Host
 * @property {() => (object|null|Promise<object|null>)} currentPainting
 * @property {() => (object|null|Promise<object|null>)} currentSource
 * @property {(url: string) => void} redirect
 * @property {() => string|undefined} [handle]
 * @property {(source: string) => void} [loadSource]
 * @property {(url: string) => void} [loadImage]
 * @property {(p: import("./atproto.mjs").Progress) => void} [progress]
 */

/**
 * @typedef {object} Context
 * @property {ReturnType<typeof createClient>} client
 * @property {Host} host
 * @property {{remixOf: {uri: string, cid: string}|null, hooks: Set<Function>,
 *             stream: {close(): void, cursor?: number}|null, cursor?: number}} state
 *   What the primitives remember between calls: the pending remix reference for the next
 *   `(share)`, the `(notify)` hooks and their stream.
 */

/**
 * A context for the primitives: a client (or the `baseUrl` to make one) and the host.
 * @param {{client?: ReturnType<typeof createClient>, baseUrl?: string, host: Host}} options
 * @returns {Context}
 */
export function createContext({ client, baseUrl, host }) {
  if (!host || typeof host.redirect !== "function") {
    throw new ValidationError("InvalidRequest", "the host must provide redirect(url)");
  }
  return {
    client: client ?? createClient({ baseUrl }),
    host,
    state: { remixOf: null, hooks: new Set(), stream: null, cursor: undefined },
  };
}

/** Where the AppView's sign-in page is, sent to the host instead of navigating here. */
function signIn(ctx) {
  const url = ctx.client.login(ctx.host.handle?.(), { navigate: false });
  ctx.host.redirect(url);
  return { status: "signin", url };
}

/** KidLisp counts are numbers; this one is 1..max, default `otherwise`. */
function count(n, otherwise, max) {
  if (n === undefined || n === null) return otherwise;
  const v = Math.floor(Number(n));
  if (!Number.isFinite(v) || v < 1) {
    throw new ValidationError("InvalidRequest", `expected a positive number, got ${n}`);
  }
  return Math.min(v, max);
}

/** The most records `(atmosphere n)` reads (n is clamped to it). */
const ATMOSPHERE_MAX = 500;

export const primitives = Object.freeze({
  share: {
    arity: { min: 0, max: 1 },
    doc:
      "Publishes the painting on screen (or, with \"kidlisp\" or when there is no painting, the " +
      "running program) to your ATProto repo, as a remix when (remix uri) came first. Without a " +
      "session it sends you to sign in and publishes nothing. Returns the new record's AT-URI.",
    example: "(share)  ; or (share \"kidlisp\")",
    /**
     * @param {Context} ctx
     * @param {"painting"|"kidlisp"} [what]
     */
    async fn(ctx, what) {
      if (what !== undefined && what !== "painting" && what !== "kidlisp") {
        throw new ValidationError("InvalidRequest", `(share) takes "painting" or "kidlisp", not ${what}`);
      }
      const me = await ctx.client.session();
      if (!me) return signIn(ctx);
      const painting = what === "kidlisp" ? null : await ctx.host.currentPainting();
      const remixOf = ctx.state.remixOf ?? undefined;
      const onProgress = ctx.host.progress?.bind(ctx.host);
      let out;
      try {
        if (painting) {
          out = await ctx.client.publishPainting({ ...painting, remixOf, onProgress });
        } else {
          if (what === "painting") {
            throw new ValidationError("InvalidRequest", "there is no painting to share");
          }
          const program = await ctx.host.currentSource();
          if (!program) throw new ValidationError("InvalidRequest", "there is nothing to share");
          out = await ctx.client.publishKidlisp({ ...program, remixOf });
        }
      } catch (e) {
        // The session ended between the check and the publish.
        if (e instanceof AtelierError && e.status === 401) return signIn(ctx);
        throw e;
      }
      ctx.state.remixOf = null;
      return out.uri;
    },
  },

  atmosphere: {
    arity: { min: 0, max: 1 },
    doc:
      "The latest n records of the Atmosphere, everyone's AC work, newest first (n defaults " +
      `to 10, at most ${ATMOSPHERE_MAX}). Each is a record view: uri, did, handle, collection, record.`,
    example: "(atmosphere 5)",
    /**
     * @param {Context} ctx
     * @param {number} [n]
     */
    async fn(ctx, n) {
      const want = count(n, 10, ATMOSPHERE_MAX);
      const out = [];
      const limit = Math.min(want, LIMITS.pageMax);
      for await (const page of ctx.client.pages(ctx.client.atmosphere, { limit })) {
        out.push(...page.records);
        if (out.length >= want) break;
      }
      return out.slice(0, want);
    },
  },

  remix: {
    arity: { min: 1, max: 1 },
    doc:
      "Loads a record to remix: a KidLisp program's source is run, a painting's image opened. " +
      "The next (share) publishes your work with remixOf pointing at it. Returns the source or image URL.",
    example: '(remix "at://did:plc:abc/computer.aesthetic.kidlisp/3kxyz")',
    /**
     * @param {Context} ctx
     * @param {string} uri
     */
    async fn(ctx, uri) {
      const view = await ctx.client.record(uri);
      const record = view.record ?? {};
      ctx.state.remixOf = { uri: view.uri, cid: view.cid };
      if (typeof record.source === "string") {
        ctx.host.loadSource?.(record.source);
        return record.source;
      }
      if (typeof record.imageUrl === "string") {
        ctx.host.loadImage?.(record.imageUrl);
        return record.imageUrl;
      }
      return view.uri;
    },
  },

  notify: {
    arity: { min: 1, max: 1 },
    doc:
      "Calls fn with each new notification (someone remixed your work, mentioned you, followed " +
      "you) as it happens: fn gets the reason, the author's handle and the record's uri. " +
      "Returns a function that unregisters fn.",
    example: '(notify (fn (reason who uri) (write reason who)))',
    /**
     * @param {Context} ctx
     * @param {(reason: string, who: string, uri: string, n: object) => void} hook
     */
    fn(ctx, hook) {
      if (typeof hook !== "function") {
        throw new ValidationError("InvalidRequest", "(notify) takes a function");
      }
      const { state } = ctx;
      state.hooks.add(hook);
      if (!state.stream) {
        state.stream = ctx.client.subscribeNotifications({
          cursor: state.cursor,
          onEvent(n) {
            state.cursor = n.id;
            for (const h of state.hooks) {
              try {
                h(n.reason, n.authorHandle ?? n.author, n.uri, n);
              } catch {
                // One failing hook must not stop the others or the stream.
              }
            }
          },
        });
      }
      return () => {
        state.hooks.delete(hook);
        if (state.hooks.size === 0 && state.stream) {
          state.cursor = state.stream.cursor ?? state.cursor;
          state.stream.close();
          state.stream = null;
        }
      };
    },
  },
});

/**
 * The primitives as plain functions over `ctx`, for the runtime to install by name.
 * @param {Context} ctx
 * @returns {Record<keyof typeof primitives, (...args: unknown[]) => unknown>}
 */
export function bind(ctx) {
  return Object.fromEntries(
    Object.entries(primitives).map(([name, p]) => [
      name,
      (...args) => {
        if (args.length < p.arity.min || args.length > p.arity.max) {
          throw new ValidationError(
            "InvalidRequest",
            `(${name}) takes ${p.arity.min === p.arity.max ? p.arity.min : `${p.arity.min} to ${p.arity.max}`} ` +
              `argument${p.arity.min === 1 && p.arity.max === 1 ? "" : "s"}, got ${args.length}`,
          );
        }
        return p.fn(ctx, ...args);
      },
    ]),
  );
}
