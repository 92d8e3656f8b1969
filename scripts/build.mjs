#!/usr/bin/env node
// `npm run build`: one .wasm and its loaders into pkg/, which is the npm
// package as published (`npm pack ./pkg`; the repository root is private).
//   1. cargo build --lib --target wasm32-unknown-unknown --release
//   2. wasm-bindgen --target web (the one glue module every entry shares)
//   3. wasm-opt (binaryen)
//   4. copy the JS layer, types, package.json and README from js/ and the
//      LICENSE; make the CommonJS Node entry and its (CommonJS) declarations;
//      mark the CLI executable
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, "pkg");
const bin = (name) => join(root, "node_modules", ".bin", name);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    console.error(`build: ${cmd} ${args.join(" ")} failed`);
    process.exit(1);
  }
}

run("cargo", ["build", "--lib", "--target", "wasm32-unknown-unknown", "--release"]);
rmSync(pkg, { recursive: true, force: true });
mkdirSync(pkg, { recursive: true });
// setup.sh installs wasm-bindgen into $CARGO_INSTALL_ROOT when that is set.
const wasmBindgen = [process.env.CARGO_INSTALL_ROOT && join(process.env.CARGO_INSTALL_ROOT, "bin", "wasm-bindgen")].find((p) => p && existsSync(p)) ?? "wasm-bindgen";
run(wasmBindgen, [
  "--target", "web",
  "--out-dir", pkg,
  "--out-name", "roomdag_wasm",
  join(root, "target/wasm32-unknown-unknown/release/roomdag.wasm"),
]);
const wasmFile = join(pkg, "roomdag_wasm_bg.wasm");
if (process.env.ROOMDAG_SKIP_WASM_OPT !== "1") {
  // A function with one caller is inlined only when small (`-ocimfs 50`;
  // binaryen's default inlines every one): V8 runs a wasm function in its
  // baseline tier until the optimizing tier has compiled it, and giant
  // functions took long to compile there. On the 5,000-event replay the
  // optimizing compiler's work fell from 0.71–0.83 s to 0.27–0.44 s and a
  // one-shot `node pkg/cli.mjs replay` from 0.65 to 0.54 s (median of six,
  // interleaved); warm calls unchanged (docs/benchmarks.md, "Eleventh session").
  const level = (process.env.ROOMDAG_WASM_OPT ?? "-O3 -ocimfs 50").split(/\s+/).filter(Boolean);
  run(bin("wasm-opt"), [...level, "--enable-bulk-memory", "--enable-nontrapping-float-to-int", "--enable-sign-ext",
    "--enable-mutable-globals", "--enable-reference-types", "--enable-multivalue", wasmFile, "-o", wasmFile]);
}
for (const f of readdirSync(join(root, "js"))) copyFileSync(join(root, "js", f), join(pkg, f));
copyFileSync(join(root, "LICENSE"), join(pkg, "LICENSE"));
chmodSync(join(pkg, "cli.mjs"), 0o755); // the `roomdag` bin (npx roomdag, node_modules/.bin)
run(bin("esbuild"), [join(pkg, "node.js"), "--bundle", "--platform=node", "--format=cjs", "--keep-names", "--log-level=warning",
  "--define:import.meta.url=__roomdag_import_meta_url", "--inject:" + join(root, "scripts/cjs-shim.js"),
  `--outfile=${join(pkg, "node.cjs")}`]);
// The declarations once more as a .d.cts: CommonJS types for `require`
// (re-exporting the ESM .d.ts from a .d.cts would make TypeScript treat a
// require of roomdag as a require of an ES module).
copyFileSync(join(pkg, "roomdag.d.ts"), join(pkg, "node.d.cts"));
const size = statSync(wasmFile).size;
const gz = gzipSync(readFileSync(wasmFile), { level: 9 }).length;
console.log(`build: pkg/roomdag_wasm_bg.wasm ${(size / 1024).toFixed(0)} KiB, ${(gz / 1024).toFixed(0)} KiB gzipped`);
