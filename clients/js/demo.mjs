// The script of the AppView's demo page (`/kit/demo`, served with this file as
// `/kit/demo.mjs`): the client kit used the way a piece would use it.
//
// - `session()` says who is signed in (the `atelier_session` cookie); signed out, the page
//   links to the AppView's sign-in page (`login(undefined, { navigate: false })`).
// - "Publish a painting": the thumbnail is the chosen file, or what the canvas shows
//   ("Draw one instead"); `publishPainting` uploads it and creates the record, and its
//   `onProgress` drives the `<progress>` bar; then `waitFor` polls the record's status and
//   the feed below is reloaded.
// - Notifications: the unread count and the live stream, through the session cookie.
// - `<atelier-feed>` shows the Atmosphere.
//
// For tests, the form carries what happened as data attributes: `data-state`
// (`publishing`, `published`, `confirmed`, `failed`), `data-uri`, `data-error`.

import { AtelierError, createClient, newIdempotencyKey } from "./atproto.mjs";

const $ = (selector) => document.querySelector(selector);

/** Where each phase of a publish puts the bar (0 to 1): [start, end]. */
const PHASES = {
  downloading: [0, 0.1],
  sending: [0, 0.45],
  receiving: [0, 0.45],
  uploading: [0.45, 0.9],
  record: [0.92, 0.95],
  done: [1, 1],
};

const client = createClient({ baseUrl: location.origin });
const form = $("#publish");
const canvas = $("#canvas");
const bar = $("#progress");
const result = $("#result");
const feed = $("#feed");

/** Draws a small random painting on the canvas (the thumbnail when no file is chosen). */
function draw() {
  const g = canvas.getContext("2d");
  const hue = Math.floor(Math.random() * 360);
  g.fillStyle = `hsl(${hue} 70% 92%)`;
  g.fillRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < 14; i++) {
    g.fillStyle = `hsl(${(hue + i * 25) % 360} 75% ${40 + (i % 4) * 8}%)`;
    g.beginPath();
    const r = 6 + Math.random() * 22;
    g.arc(Math.random() * canvas.width, Math.random() * canvas.height, r, 0, Math.PI * 2);
    g.fill();
  }
}

/** Shows the chosen file on the canvas (the file itself is what is uploaded). */
async function preview(file) {
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const g = canvas.getContext("2d");
    g.imageSmoothingEnabled = false;
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.drawImage(image, 0, 0, canvas.width, canvas.height);
  } catch {
    // Not an image the browser can show: the kit's checks will say why on publish.
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** A short code for the painting (AC's are 3 or more lowercase letters and digits). */
function randomCode() {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return Array.from(bytes, (b) => "abcdefghijkmnopqrstuvwxyz23456789"[b % 33]).join("");
}

/** AC's painting slug: the local time to the millisecond, dot-separated. */
function slugNow(d = new Date()) {
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return [d.getFullYear(), p(d.getMonth() + 1), p(d.getDate()), p(d.getHours()), p(d.getMinutes()), p(d.getSeconds()), p(d.getMilliseconds(), 3)].join(".");
}

function setResult(text, error = false) {
  result.textContent = text;
  result.classList.toggle("error", error);
}

/** Moves the bar for one progress event (never backwards within a publish). */
function onProgress({ phase, bytes, total }) {
  const [start, end] = PHASES[phase] ?? [0, 0];
  const fraction = total > 0 ? Math.min(1, bytes / total) : phase === "done" ? 1 : 0;
  bar.value = Math.max(bar.value, start + (end - start) * fraction);
  bar.textContent = `${Math.round(bar.value * 100)}%`;
  bar.dataset.phase = phase;
  bar.title = phase;
}

async function publish(event) {
  event.preventDefault();
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  bar.value = 0;
  delete bar.dataset.phase;
  delete form.dataset.uri;
  delete form.dataset.error;
  form.dataset.state = "publishing";
  setResult("Publishing…");
  try {
    const file = form.elements.file.files[0];
    const png = file ?? (await new Promise((resolve) => canvas.toBlob(resolve, "image/png")));
    const code = form.elements.code.value.trim();
    const published = await client.publishPainting({
      png,
      code,
      slug: slugNow(),
      imageUrl: `https://aesthetic.computer/media/paintings/${code}.png`,
      ref: newIdempotencyKey().replaceAll("-", "").slice(0, 24),
      onProgress,
    });
    form.dataset.uri = published.uri;
    form.dataset.state = "published";
    setResult(`Published ${published.uri} (${published.status})`);
    const settled = await client.waitFor(published, { timeoutMs: 30000 });
    form.dataset.state = settled.status;
    setResult(`Published ${published.uri} (${settled.status})`);
    feed.reset();
    form.elements.code.value = randomCode();
  } catch (e) {
    form.dataset.state = "failed";
    form.dataset.error = e instanceof AtelierError ? e.error : String(e?.name ?? "Error");
    const where = e.field ? ` (${e.field})` : "";
    setResult(`${e instanceof AtelierError ? e.error : "Error"}${where}: ${e.message}`, true);
  } finally {
    submit.disabled = false;
  }
}

/** The unread count and the live notification stream, through the session cookie. */
async function notifications() {
  const list = $("#notifications");
  const unread = $("#unread");
  $("#notices").hidden = false;
  try {
    const count = await client.unreadCount();
    unread.textContent = count ? `(${count} unread)` : "";
  } catch {
    unread.textContent = "";
  }
  const empty = document.createElement("li");
  empty.className = "muted";
  empty.textContent = "Nothing yet: remixes of your work, mentions and follows show up here as they happen.";
  list.append(empty);
  client.subscribeNotifications({
    onEvent(n) {
      empty.remove();
      const li = document.createElement("li");
      li.textContent = `${n.reason} · ${n.authorHandle ? `@${n.authorHandle}` : n.author} · ${n.uri}`;
      list.prepend(li);
    },
  });
}

async function main() {
  feed.setAttribute("base-url", location.origin);
  await import("./feed-view.mjs");
  let me = null;
  try {
    me = await client.session();
  } catch (e) {
    $("#session").textContent = `Could not check the session: ${e.message}`;
    return;
  }
  if (!me) {
    $("#session").textContent = "Signed out.";
    $("#login").href = client.login(undefined, { navigate: false });
    $("#signed-out").hidden = false;
    return;
  }
  $("#session").textContent = `Signed in as ${me.handle ? `@${me.handle}` : me.did}`;
  const account = document.createElement("a");
  account.href = "/account";
  account.textContent = "account";
  $("#session").append(" · ", account);
  form.elements.code.value = randomCode();
  draw();
  $("#draw").addEventListener("click", () => {
    form.elements.file.value = "";
    draw();
  });
  form.elements.file.addEventListener("change", () => {
    const file = form.elements.file.files[0];
    if (file) preview(file);
  });
  form.addEventListener("submit", publish);
  form.hidden = false;
  form.dataset.state = "ready";
  notifications();
}

main();
