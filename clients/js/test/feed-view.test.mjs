// What `<atelier-feed>` shows for each record view (the pure part; the element itself
// needs a browser), and `pages` for cursor pagination.

import { test } from "node:test";
import assert from "node:assert/strict";

import { describe } from "../feed-view.mjs";
import { createClient } from "../atproto.mjs";

const base = { uri: "at://did:plc:x/c/r", cid: "bafyrei", did: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", repairs: [] };

test("cards: one per kind, links to aesthetic.computer, https images only", () => {
  const cases = [
    [
      { collection: "computer.aesthetic.painting", handle: "jeffrey.at.aesthetic.computer", createdAt: "2026-12-06T15:00:00Z",
        record: { code: "a3b", slug: "s", imageUrl: "https://aesthetic.computer/media/paintings/a3b" } },
      { kind: "painting", author: "@jeffrey.at.aesthetic.computer", title: "#a3b", link: "https://aesthetic.computer/#a3b",
        image: "https://aesthetic.computer/media/paintings/a3b", code: false, labels: [] },
    ],
    [
      { collection: "computer.aesthetic.painting", record: { code: "a3c", imageUrl: "http://insecure.example/a.png" } },
      { image: null, author: base.did },
    ],
    [
      { collection: "computer.aesthetic.kidlisp", record: { code: "k1", source: "(wipe blue)" } },
      { kind: "kidlisp", title: "$k1", text: "(wipe blue)", code: true, link: "https://aesthetic.computer/$k1" },
    ],
    [{ collection: "computer.aesthetic.mood", record: { text: "legacy mood field" } }, { kind: "mood", text: "legacy mood field" }],
    [{ collection: "computer.aesthetic.tape", record: { code: "t9", slug: "wand-1" } }, { title: "!t9", link: "https://aesthetic.computer/!t9" }],
    [{ collection: "computer.aesthetic.piece", record: { slug: "wand" } }, { title: "wand", link: "https://aesthetic.computer/wand" }],
    [
      { collection: "computer.aesthetic.mood", record: { mood: "x".repeat(300) },
        labels: [{ src: "did:plc:l", uri: "at://x", val: "!warn", cts: "2026-12-06T15:00:00Z" }, { src: "did:plc:m", uri: "at://x", val: "!warn", cts: "2026-12-06T15:00:00Z" }] },
      { labels: ["!warn"], text: `${"x".repeat(280)}…` },
    ],
  ];
  for (const [view, expect] of cases) {
    const card = describe({ ...base, ...view });
    for (const [k, v] of Object.entries(expect)) assert.deepEqual(card[k], v, `${view.collection}: ${k}`);
  }
});

test("pages follows cursors to the end and stops on a repeated one", async () => {
  const answers = { undefined: { records: [1], cursor: "a" }, a: { records: [2], cursor: "b" }, b: { records: [3] } };
  const client = createClient({ baseUrl: "https://atelier.example", fetch: async () => assert.fail("no fetch") });
  const got = [];
  for await (const page of client.pages(async ({ cursor }) => answers[cursor], { limit: 5 })) got.push(...page.records);
  assert.deepEqual(got, [1, 2, 3]);
  let calls = 0;
  for await (const _ of client.pages(async () => (calls++, { records: [], cursor: "same" }))) {
    if (calls > 5) break;
  }
  assert.equal(calls, 2);
});
