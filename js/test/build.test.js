// The embedded stepup.js is the build of js/src, and exports what
// js/src/index.js does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { bundle, OUT } from "../build.js";
import * as source from "../src/index.js";

test("stepup.js is up to date: what js/build.js makes of js/src", () => {
  assert.ok(
    readFileSync(OUT, "utf8") === bundle(),
    "stepup.js is not the build of js/src: run npm run build in js/ and commit it",
  );
});

test("stepup.js exports what js/src/index.js does, and loads without running anything", async (t) => {
  // A copy named .mjs: the repository's root has no package.json.
  const dir = mkdtempSync(join(tmpdir(), "stepup-"));
  t.after(() => rmSync(dir, { recursive: true }));
  const file = join(dir, "stepup.mjs");
  writeFileSync(file, readFileSync(OUT));
  let fetched = 0;
  const real = globalThis.fetch;
  globalThis.fetch = async () => {
    fetched++;
    return new Response();
  };
  t.after(() => {
    globalThis.fetch = real;
  });
  const built = await import(pathToFileURL(file).href);
  assert.deepEqual(Object.keys(built).sort(), Object.keys(source).sort());
  assert.deepEqual(Object.keys(built).sort(), [
    "LABELS",
    "MESSAGES",
    "bindReauthButton",
    "confirmDialog",
    "fetchWithStepUp",
    "reauthenticate",
    "reauthenticateExternal",
    "reauthenticateWithSecret",
    "stepUpDialog",
  ]);
  assert.equal(fetched, 0);
});

test("the build refuses what it cannot concatenate safely", () => {
  const dir = mkdtempSync(join(tmpdir(), "stepup-src-"));
  try {
    /** @param {Record<string, string>} files */
    const build = (files) => {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      for (const [name, text] of Object.entries(files)) {
        writeFileSync(join(dir, name), text);
      }
      return bundle(dir);
    };
    const index = 'export { f } from "./a.js";\n';
    const ok = build({ "index.js": index, "a.js": 'import { g } from "./b.js";\nexport function f() {\n  return g();\n}\n', "b.js": "export function g() {}\n" });
    assert.match(ok, /function g\(\) \{\}\n\nexport function f\(\)/, "b first, g no longer exported, f exported");
    assert.doesNotMatch(ok, /^import/m);
    assert.throws(() => build({ "index.js": index, "a.js": "export function f() {}\n", "b.js": "function f() {}\n" }), /nothing imports b.js/);
    assert.throws(
      () =>
        build({
          "index.js": index,
          "a.js": 'import { g } from "./b.js";\nimport { g as h } from "./b.js";\nexport function f() {}\n',
          "b.js": "export function g() {}\n",
        }),
      /does not take/,
    );
    assert.throws(
      () =>
        build({
          "index.js": index,
          "a.js": 'import { g } from "./b.js";\nexport function f() {}\nconst h = 1;\n',
          "b.js": "export function g() {}\nlet h = 2;\n",
        }),
      /a.js:3: h is declared in b.js:2 too/,
    );
    assert.throws(() => build({ "index.js": index, "a.js": "function f() {}\n" }), /index.js exports f, which a.js does not/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
