// The package as shipped: `npm pack`, install the tarball into a throwaway
// project, then import it from Node as ESM and as CommonJS and from the
// `roomdag` bin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { root, fixturesDir } from "./fixtures.mjs";

const work = mkdtempSync(join(tmpdir(), "roomdag-pack-"));
const sh = (cmd, args, cwd) => {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" } });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
};

let installed = false;
function install() {
  if (installed) return;
  sh("npm", ["pack", "--pack-destination", work, "--silent"], root);
  const tgz = readdirSync(work).find((f) => f.endsWith(".tgz"));
  writeFileSync(join(work, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }));
  sh("npm", ["install", "--no-save", "--offline", join(work, tgz)], work);
  installed = true;
}

const probe = (imp) => `
${imp}
const fx = JSON.parse(require("node:fs").readFileSync(${JSON.stringify(join(fixturesDir, "v10-linear-200.json"))}, "utf8"));
const q = require("node:fs").readFileSync(${JSON.stringify(join(fixturesDir, "v10-linear-200.queries.json"))});
const answers = api.replayFixture(JSON.stringify(fx), q);
if (answers.format !== "roomdag-answers/1" || answers.events.length !== fx.events.length) throw new Error("bad answers");
const ring = new api.KeyRing();
if (typeof api.FederationServer !== "function" || typeof api.IndexedDbStore !== "function") throw new Error("missing exports");
console.log("ok", answers.events.length);
`;

test("ESM import of the packed tarball", () => {
  install();
  writeFileSync(join(work, "esm.mjs"), probe(`import * as api from "roomdag"; import { createRequire } from "node:module"; const require = createRequire(import.meta.url);`));
  assert.match(sh(process.execPath, ["esm.mjs"], work), /^ok 200/);
});

test("CommonJS require of the packed tarball", () => {
  install();
  writeFileSync(join(work, "cjs.cjs"), probe(`const api = require("roomdag");`));
  assert.match(sh(process.execPath, ["cjs.cjs"], work), /^ok 200/);
});

test("the roomdag bin runs the wasm CLI", () => {
  install();
  assert.match(sh(join(work, "node_modules", ".bin", "roomdag"), ["help"], work), /roomdag replay FIXTURE/);
});

test("the tarball ships one .wasm, the loaders and the types", () => {
  const list = sh("npm", ["pack", "--dry-run", "--json"], root);
  const files = JSON.parse(list)[0].files.map((f) => f.path);
  for (const f of ["pkg/roomdag_wasm_bg.wasm", "pkg/node.js", "pkg/node.cjs", "pkg/web.js", "pkg/workerd.js", "pkg/roomdag.d.ts", "pkg/cli.mjs"]) {
    assert.ok(files.includes(f), `${f} in the tarball`);
  }
  assert.equal(files.filter((f) => f.endsWith(".wasm")).length, 1);
});
