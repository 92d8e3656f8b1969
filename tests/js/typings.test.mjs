// The declarations (js/roomdag.d.ts) against the code: every runtime export
// is declared and every declared value exists; RoomdagError's code union
// lists exactly the codes the JS layer raises; RoomVersion lists the
// versions the core hosts; every export has a doc comment; the CommonJS
// declarations are a CommonJS copy, not a re-export of the ESM ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import * as api from "../../pkg/node.js";
import * as raw from "../../pkg/roomdag_wasm.js";
import { root } from "./fixtures.mjs";

const dts = readFileSync(join(root, "js", "roomdag.d.ts"), "utf8");
const union = (name) => {
  const m = new RegExp(`export type ${name} =([^;]+);`).exec(dts);
  assert.ok(m, `type ${name} declared`);
  return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]).sort();
};

test("every runtime export is declared, and every declared value exists", () => {
  const declared = [...dts.matchAll(/^export (?:declare )?(?:class|function|const) (\w+)/gm)].map((m) => m[1]);
  assert.deepEqual([...new Set(declared)].sort(), Object.keys(api).sort());
});

test("RoomdagErrorCode lists exactly the codes the JS layer raises", () => {
  const raised = new Set();
  for (const f of readdirSync(join(root, "js")).filter((f) => f.endsWith(".js"))) {
    const src = readFileSync(join(root, "js", f), "utf8");
    for (const m of src.matchAll(/new RoomdagError\(\s*"([A-Z_]+)"/g)) raised.add(m[1]);
    for (const m of src.matchAll(/\bcall\((?:[^,()]|\([^()]*\))+,\s*"([A-Z_]+)"/g)) raised.add(m[1]);
  }
  assert.ok(raised.size >= 5, `found ${[...raised]}`);
  assert.deepEqual(union("RoomdagErrorCode"), [...raised].sort());
});

test("RoomVersion lists the room versions the core hosts", () => {
  assert.deepEqual(union("RoomVersion"), [...raw.roomVersions()].sort());
});

test("every export of the declarations has a doc comment", () => {
  const lines = dts.split("\n");
  const missing = [];
  lines.forEach((line, i) => {
    if (!/^export /.test(line)) return;
    let j = i - 1;
    while (j >= 0 && lines[j].trim() === "") j--;
    if (!lines[j].trim().endsWith("*/")) missing.push(`${i + 1}: ${line}`);
  });
  assert.deepEqual(missing, []);
});

test("node.d.cts is the declarations themselves (CommonJS), not a re-export of the ESM file", () => {
  const cts = readFileSync(join(root, "pkg", "node.d.cts"), "utf8");
  assert.equal(cts, dts);
  assert.doesNotMatch(cts, /^(export|import)\b.*\bfrom\b/m);
});
