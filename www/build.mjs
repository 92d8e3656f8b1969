#!/usr/bin/env node
// Builds the visualizer into www/dist: a static single-page app.
//   1. installs www's own dependencies (Cytoscape.js) when www/node_modules is missing;
//   2. bundles src/main.js (the page) and src/engine-worker.js (the wasm engine,
//      run in a Web Worker) with esbuild from the root node_modules;
//   3. copies the engine's wasm, styles.css and index.html (written last: `npm start`
//      compares its mtime with www/src to decide whether to rebuild);
//   4. writes dist/_roomdag/rooms, an empty room list: under `npm start` the Worker
//      answers that path itself; on a plain static server the page finds no rooms there
//      instead of a 404 (so the probe makes no console error).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, copyFileSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const www = dirname(fileURLToPath(import.meta.url));
const root = join(www, "..");
const dist = join(www, "dist");
const log = (...a) => console.log("[www]", ...a);

if (!existsSync(join(www, "node_modules", "cytoscape"))) {
  log("installing www dependencies…");
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const r = spawnSync(npm, ["install", "--prefix", www, "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error("[www] npm install failed");
    process.exit(1);
  }
}
const wasm = join(root, "pkg", "roomdag_wasm_bg.wasm");
if (!existsSync(wasm)) {
  log("pkg/ is missing: building the wasm package…");
  const r = spawnSync(process.execPath, [join(root, "scripts", "build.mjs")], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(1);
}

// esbuild comes from the root package's devDependencies.
const { build } = await import(createRequire(join(root, "package.json")).resolve("esbuild"));

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "_roomdag"), { recursive: true });
const t0 = Date.now();
await build({
  entryPoints: { main: join(www, "src", "main.js"), "engine-worker": join(www, "src", "engine-worker.js") },
  outdir: dist,
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: process.env.ROOMDAG_WWW_MINIFY !== "0",
  sourcemap: true,
  legalComments: "linked",
  alias: { roomdag: join(root, "pkg", "web.js") },
  nodePaths: [join(www, "node_modules")],
  logLevel: "warning",
});
copyFileSync(wasm, join(dist, "roomdag_wasm_bg.wasm"));
copyFileSync(join(www, "src", "styles.css"), join(dist, "styles.css"));
writeFileSync(join(dist, "_roomdag", "rooms"), JSON.stringify({ rooms: [], static: true }) + "\n");
writeFileSync(join(dist, "index.html"), readFileSync(join(www, "src", "index.html")));
log(`built www/dist in ${Date.now() - t0} ms`);
