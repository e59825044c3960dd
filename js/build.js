// build.js writes ../stepup.js, the one module that the Go package embeds
// and ScriptHandler serves, from the files of src/: node build.js. With
// --check it writes nothing and fails if ../stepup.js is not what it would
// write (CI runs it, and test/build.test.js does the same).
//
// It is a concatenation, not a bundler, for a subset of JavaScript that it
// checks: each file of src/ declares its top-level names with function,
// const or let, and names each other file it uses in one line
// `import { a, b } from "./file.js";` (and types in one line
// `/** @import { T } from "./file.js" */`). The files are laid out
// dependencies first, starting from src/index.js, whose only statements are
// `export { ... } from "./file.js";` lines: the names it lists keep their
// `export`, every other loses it. The import lines go, and so does each
// file's `// @ts-check`, but for one at the top. Anything else (another
// import or export form, a name declared twice, a file that nothing
// imports) fails the build. Its output is the same for the same files.

import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const SRC = join(here, "src");
export const OUT = join(here, "..", "stepup.js");

// Names in braces: plain identifiers, never "a as b".
const IMPORT = /^import \{((?:\s*\w+\s*,)*\s*\w+\s*)\} from "\.\/([\w-]+\.js)";$/;
const TYPE_IMPORT = /^\/\*\* @import \{((?:\s*\w+\s*,)*\s*\w+\s*)\} from "\.\/([\w-]+\.js)" \*\/$/;
const REEXPORT = /^export \{((?:\s*\w+\s*,)*\s*\w+\s*)\} from "\.\/([\w-]+\.js)";$/;
const DECLARATION = /^(export )?(?:async )?(?:function\*? |const |let )(\w+)/;

/**
 * bundle returns the text of stepup.js built from the files in src.
 *
 * @param {string} [src]
 * @returns {string}
 */
export function bundle(src = SRC) {
  const read = (/** @type {string} */ file) => readFileSync(join(src, file), "utf8").replace(/\r\n/g, "\n");
  const fail = (/** @type {string} */ msg) => {
    throw new Error(`js/build.js: ${msg}`);
  };

  // index.js: the header comment and the public names.
  const index = read("index.js").split("\n");
  const header = [];
  const roots = [];
  const exported = new Set();
  for (const [i, line] of index.entries()) {
    const m = REEXPORT.exec(line);
    if (m) {
      roots.push(m[2]);
      for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
        exported.add(name);
      }
    } else if (line.startsWith("//")) {
      if (roots.length > 0) {
        fail(`index.js:${i + 1}: a comment after the exports`);
      }
      header.push(line);
    } else if (line.trim() !== "") {
      fail(`index.js:${i + 1}: only comments and export { ... } from "./file.js" lines`);
    }
  }

  // The files, dependencies first.
  /** @type {string[]} */
  const order = [];
  /** @type {Set<string>} */
  const visiting = new Set();
  const visit = (/** @type {string} */ file) => {
    if (order.includes(file)) {
      return;
    }
    if (visiting.has(file)) {
      fail(`${file} imports itself through others`);
    }
    visiting.add(file);
    for (const line of read(file).split("\n")) {
      const m = IMPORT.exec(line) || TYPE_IMPORT.exec(line);
      if (m) {
        visit(m[2]);
      }
    }
    visiting.delete(file);
    order.push(file);
  };
  roots.forEach(visit);
  const stray = readdirSync(src).filter((f) => f.endsWith(".js") && f !== "index.js" && !order.includes(f));
  if (stray.length > 0) {
    fail(`nothing imports ${stray.join(", ")}`);
  }

  // Each file without its imports, and export only where index.js says.
  /** @type {Map<string, string>} */
  const declared = new Map();
  const parts = order.map((file) => {
    const out = [];
    for (const [i, line] of read(file).split("\n").entries()) {
      const where = `${file}:${i + 1}`;
      if ((i === 0 && line === "// @ts-check") || IMPORT.test(line) || TYPE_IMPORT.test(line)) {
        continue;
      }
      if (/^(import|export)\b/.test(line) && !DECLARATION.test(line)) {
        fail(`${where}: an import or export that this build does not take: ${line}`);
      }
      const m = DECLARATION.exec(line);
      if (m) {
        const name = m[2];
        if (declared.has(name)) {
          fail(`${where}: ${name} is declared in ${declared.get(name)} too`);
        }
        declared.set(name, where);
        if (m[1] && !exported.has(name)) {
          out.push(line.slice("export ".length));
          continue;
        }
        if (!m[1] && exported.has(name)) {
          fail(`${where}: index.js exports ${name}, which ${file} does not`);
        }
      }
      out.push(line);
    }
    return out.join("\n").trim();
  });
  for (const name of exported) {
    if (!declared.has(name)) {
      fail(`index.js exports ${name}, which no file declares`);
    }
  }

  return [
    ["// @ts-check", ...header.filter((l) => l !== "// @ts-check")].join("\n") +
      "\n//\n// Generated by js/build.js from js/src/ (" +
      order.join(", ") +
      "):\n// edit those, then run npm run build in js/. CI fails when this file is not\n// what they build.",
    ...parts,
  ].join("\n\n") + "\n";
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const text = bundle();
  if (process.argv.includes("--check")) {
    let now = "";
    try {
      now = readFileSync(OUT, "utf8");
    } catch {
      // missing: not up to date
    }
    if (now !== text) {
      console.error("stepup.js is not the build of js/src: run npm run build in js/ and commit it");
      process.exit(1);
    }
  } else {
    writeFileSync(OUT, text);
  }
}
