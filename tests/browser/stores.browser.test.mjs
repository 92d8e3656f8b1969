// The store suite in headless Chromium: real IndexedDB, the `web` entry and
// a bundler (esbuild) build. Fails on any console error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, copyFileSync, writeFileSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { serve } from "./server.mjs";
import { launch } from "./chromium.mjs";
import { root, fixturesDir } from "../js/fixtures.mjs";

const here = dirname(fileURLToPath(import.meta.url));

test("store suite on the browser's IndexedDB (bundled with esbuild), and persistence across a reload", async () => {
  const out = mkdtempSync(join(tmpdir(), "roomdag-browser-"));
  await build({ entryPoints: [join(here, "store-page.js")], bundle: true, format: "esm", outfile: join(out, "page.js"), logLevel: "warning" });
  copyFileSync(join(root, "pkg", "roomdag_wasm_bg.wasm"), join(out, "roomdag_wasm_bg.wasm"));
  writeFileSync(join(out, "index.html"), '<!doctype html><meta charset="utf-8"><title>roomdag stores</title><link rel="icon" href="data:,"><script type="module" src="page.js"></script>');
  const server = await serve({ "/": out }, fixturesDir);
  const browser = await launch();
  const errors = [];
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(server.url + "/");
    await page.waitForFunction(() => window.__results, null, { timeout: 120_000 });
    const results = await page.evaluate(() => window.__results);
    const first = await page.evaluate(() => window.__persisted);
    assert.ok(results.length >= 10, `ran ${results.length} cases`);
    for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
    await page.reload();
    await page.waitForFunction(() => window.__results, null, { timeout: 120_000 });
    const second = await page.evaluate(() => window.__persisted);
    assert.equal(second.reopened, true, "the room was found in IndexedDB after the reload");
    assert.equal(second.count, first.count);
    assert.equal(second.digest, first.digest);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
    rmSync(out, { recursive: true, force: true });
  }
});
