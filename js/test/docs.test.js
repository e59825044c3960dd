// docs/browser-client.md's table of reasons says where each comes from:
// every client reason of the code, and every error code of the server
// (errors.go), and no other.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { CLIENT_REASONS } from "../src/reasons.js";

const read = (/** @type {string} */ path) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");

test("the reasons table lists the client's reasons and the server's codes", () => {
  const doc = read("docs/browser-client.md");
  const section = doc.slice(doc.indexOf("## Reasons"), doc.indexOf("\n## ", doc.indexOf("## Reasons") + 1));
  /** @type {Record<string, string[]>} */
  const rows = { client: [], server: [] };
  for (const m of section.matchAll(/^\| `(\w+)` \| (client|server) \|/gm)) {
    rows[m[2]].push(m[1]);
  }
  assert.deepEqual([...rows.client].sort(), [...CLIENT_REASONS].sort());

  const codes = [...read("errors.go").matchAll(/^\s+code\w+\s+= "(\w+)"$/gm)].map((m) => m[1]);
  assert.ok(codes.length >= 10, `found ${codes.length} codes in errors.go`);
  assert.deepEqual([...rows.server].sort(), [...codes].sort());
});
