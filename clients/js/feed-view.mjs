// `<atelier-feed>`: the Atmosphere as a web component, for any page that wants AC's feed.
//
//   <script type="module" src="/clients/js/feed-view.mjs"></script>
//   <atelier-feed base-url="https://atelier.example" types="painting,kidlisp" limit="20"></atelier-feed>
//
// Attributes: `base-url` (required: the AppView), `types` (comma-separated short names or
// NSIDs; all when absent), `actor` (a DID: one artist's records), `limit` (page size, 1 to
// 100, default 20). It renders painting thumbnails, KidLisp snippets, moods, pieces and
// tapes, loads older pages as the end scrolls into view (IntersectionObserver), and puts
// every labelled record (`!warn`, `nudity`, ...) behind a blur with a click-through naming
// the labels; the AppView never serves `!hide`/`!takedown` records at all. Everything it
// needs is in this file: styles in its shadow root, no external CSS or JS.
//
// Record text is only ever set with `textContent`, never parsed as HTML; images load only
// from a record's `https` `imageUrl`, links only point at aesthetic.computer.
//
// Events: `atelier-feed-error` (detail: the `AtelierError`) when a page fails to load.

import { createClient } from "./atproto.mjs";

/** Where AC's pages live. */
const AC = "https://aesthetic.computer";
/** The longest text excerpt shown, in characters. */
const EXCERPT = 280;

/**
 * @typedef {import("../../lexicons/ts/computer/aesthetic/feed/defs.js").RecordView} RecordView
 */

/**
 * @typedef {object} Card
 * @property {string} uri  The record's AT-URI (the card's `data-uri`).
 * @property {string} kind  `painting`, `kidlisp`, `mood`, `piece`, `tape`, ...
 * @property {string} author  `@handle`, or the DID.
 * @property {string} when
 * @property {string|null} link  The record's page on aesthetic.computer.
 * @property {string|null} image  An https image to show.
 * @property {string} title
 * @property {string} text  Cut to {@link EXCERPT} characters.
 * @property {boolean} code  Whether `text` is KidLisp source.
 * @property {string[]} labels  Label values that put the card behind a click-through.
 */

function excerpt(text) {
  const chars = [...text];
  return chars.length > EXCERPT ? `${chars.slice(0, EXCERPT).join("")}…` : text;
}

/**
 * What a card shows for one record view; pure, so it is tested without a DOM. Mirrors the
 * AppView's own Atmosphere page (appview/src/service/page.rs).
 * @param {RecordView} view
 * @returns {Card}
 */
export function describe(view) {
  const record = view.record && typeof view.record === "object" ? view.record : {};
  const field = (name) => (typeof record[name] === "string" ? record[name] : "");
  const kind = view.collection.startsWith("computer.aesthetic.")
    ? view.collection.slice("computer.aesthetic.".length)
    : view.collection;
  const code = field("code");
  const slug = field("slug");
  const safe = (s) => encodeURIComponent(s);
  let link = null;
  if (kind === "painting" && code) link = `${AC}/#${safe(code)}`;
  else if (kind === "kidlisp" && code) link = `${AC}/$${safe(code)}`;
  else if (kind === "tape" && code) link = `${AC}/!${safe(code)}`;
  else if (kind === "piece" && slug) link = `${AC}/${safe(slug)}`;
  const imageUrl = field("imageUrl");
  const image = kind === "painting" && imageUrl.startsWith("https://") ? imageUrl : null;
  let title = "";
  let text = "";
  let isCode = false;
  switch (kind) {
    case "painting":
      title = code ? `#${code}` : slug;
      break;
    case "kidlisp":
      title = code ? `$${code}` : "";
      text = field("source");
      isCode = true;
      break;
    case "mood":
      text = field("mood") || field("text");
      break;
    case "piece":
      title = slug;
      break;
    case "tape":
      title = code ? `!${code}` : slug;
      break;
    default:
      title = field("headline") || field("title") || slug;
      text = field("body");
  }
  return {
    uri: view.uri,
    kind,
    author: view.handle ? `@${view.handle}` : view.did,
    when: view.createdAt ?? "",
    link,
    image,
    title,
    text: excerpt(text),
    code: isCode,
    labels: [...new Set((view.labels ?? []).map((l) => l.val))],
  };
}

const STYLE = `
:host { display: block; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; }
article { position: relative; background: #fff; border: 1px solid #e2e2e6; border-radius: 10px;
  padding: 1rem 1.25rem; margin: 0 0 1rem; overflow: hidden; }
.meta { color: #6b6b70; font-size: .85rem; }
.kind { display: inline-block; padding: 0 .45rem; border-radius: 4px; background: #f3f3f6;
  font-size: .8rem; margin-right: .4rem; }
h2 { font-size: 1.05rem; margin: .4rem 0 0; }
img { display: block; max-width: 100%; margin-top: .6rem; border-radius: 6px; image-rendering: pixelated; }
pre { white-space: pre-wrap; background: #f3f3f6; padding: .6rem .75rem; border-radius: 6px;
  font-size: .9rem; margin: .5rem 0 0; }
.text { white-space: pre-wrap; margin: .5rem 0 0; }
a { color: #3d3bbd; }
article.labelled .body { min-height: 3.5rem; }
.body.blurred { filter: blur(18px); pointer-events: none; user-select: none; }
.veil { position: absolute; inset: 2.2rem 0 0 0; display: flex; align-items: center; justify-content: center; }
.veil button, .status button { font: inherit; padding: .4rem .9rem; border-radius: 6px; border: 1px solid #c9c9d0;
  background: #fff; cursor: pointer; }
.status { text-align: center; color: #6b6b70; padding: 1rem; }
`;

const Base = globalThis.HTMLElement ?? class {};

/** The `<atelier-feed>` element. */
export class AtelierFeed extends Base {
  static get observedAttributes() {
    return ["base-url", "types", "actor", "limit"];
  }

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = STYLE;
    this.list = document.createElement("div");
    this.list.setAttribute("role", "feed");
    this.status = document.createElement("div");
    this.status.className = "status";
    this.sentinel = document.createElement("div");
    this.shadowRoot.append(style, this.list, this.status, this.sentinel);
    this.cursor = undefined;
    this.done = false;
    this.loading = false;
    this.generation = 0;
  }

  connectedCallback() {
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.more();
      },
      { rootMargin: "600px" },
    );
    this.observer.observe(this.sentinel);
    this.reset();
  }

  disconnectedCallback() {
    this.observer?.disconnect();
    this.generation++;
  }

  attributeChangedCallback() {
    if (this.isConnected && this.observer) this.reset();
  }

  /** Starts over from the newest records (attributes changed). */
  reset() {
    this.generation++;
    this.list.replaceChildren();
    this.cursor = undefined;
    this.done = false;
    this.loading = false;
    const baseUrl = this.getAttribute("base-url");
    if (!baseUrl) {
      this.setStatus("Set base-url to an Atelier AppView.");
      return;
    }
    this.client = createClient({ baseUrl });
    this.more();
  }

  setStatus(text, retry) {
    this.status.replaceChildren();
    if (text) this.status.append(text);
    if (retry) {
      const button = document.createElement("button");
      button.textContent = "Try again";
      button.addEventListener("click", () => this.more());
      this.status.append(" ", button);
    }
  }

  /** Loads the next page, unless one is loading or the last one came. */
  async more() {
    if (this.loading || this.done || !this.client) return;
    this.loading = true;
    const generation = this.generation;
    this.setStatus("Loading…");
    const types = this.getAttribute("types");
    const actor = this.getAttribute("actor") || undefined;
    const limit = Math.min(100, Math.max(1, Number(this.getAttribute("limit")) || 20));
    try {
      const page = await this.client.atmosphere({
        limit,
        cursor: this.cursor,
        actor,
        types: types ? types.split(",").map((t) => t.trim()).filter(Boolean) : undefined,
      });
      if (generation !== this.generation) return;
      for (const view of page.records) this.list.append(this.card(describe(view)));
      this.cursor = page.cursor;
      this.done = !page.cursor;
      this.setStatus(this.done ? (this.list.childElementCount ? "" : "Nothing here yet.") : "");
      this.loading = false;
      // A short page may leave the sentinel in view: the observer will not fire again.
      if (!this.done && this.sentinelVisible()) queueMicrotask(() => this.more());
    } catch (error) {
      if (generation !== this.generation) return;
      this.loading = false;
      this.setStatus(`Could not load the feed: ${error.message}`, true);
      this.dispatchEvent(new CustomEvent("atelier-feed-error", { detail: error }));
    }
  }

  sentinelVisible() {
    const r = this.sentinel.getBoundingClientRect();
    return r.top < (globalThis.innerHeight ?? 0) + 600;
  }

  /** The card for one record. @param {Card} c */
  card(c) {
    const el = (tag, props = {}, ...children) => {
      const node = document.createElement(tag);
      Object.assign(node, props);
      node.append(...children);
      return node;
    };
    const article = el("article", { className: c.kind });
    article.dataset.kind = c.kind;
    if (c.uri) article.dataset.uri = c.uri;
    const meta = el("div", { className: "meta" }, el("span", { className: "kind", textContent: c.kind }));
    meta.append(c.when ? `${c.author} · ${c.when}` : c.author);
    const body = el("div", { className: "body" });
    if (c.title) {
      body.append(el("h2", {}, c.link ? el("a", { href: c.link, textContent: c.title, rel: "noopener" }) : c.title));
    } else if (c.link) {
      body.append(el("p", {}, el("a", { href: c.link, textContent: "Open on aesthetic.computer", rel: "noopener" })));
    }
    if (c.image) {
      const img = el("img", { src: c.image, alt: c.title || c.kind, loading: "lazy" });
      // An image that cannot load (gone, offline, refused) is left out, not shown broken.
      img.addEventListener("error", () => img.remove(), { once: true });
      body.append(img);
    }
    if (c.text) body.append(c.code ? el("pre", { textContent: c.text }) : el("p", { className: "text", textContent: c.text }));
    article.append(meta, body);
    if (c.labels.length) {
      article.classList.add("labelled");
      body.classList.add("blurred");
      body.setAttribute("aria-hidden", "true");
      const button = el("button", { type: "button", textContent: `Labelled ${c.labels.join(", ")}: show anyway` });
      const veil = el("div", { className: "veil" }, button);
      button.addEventListener("click", () => {
        body.classList.remove("blurred");
        body.removeAttribute("aria-hidden");
        veil.remove();
      });
      article.append(veil);
    }
    return article;
  }
}

if (globalThis.customElements && !globalThis.customElements.get("atelier-feed")) {
  globalThis.customElements.define("atelier-feed", AtelierFeed);
}
