#!/usr/bin/env node
// `npm test`: every test tier, in order, failing fast.
//   cargo-test       unit tests, ported vectors, the fixture replay vs Synapse
//   wasm32-build     the crate builds for wasm32-unknown-unknown
//   conformance-cli  the release CLI scored by the oracle's own compare.py
//   synapse-diff     differential fuzzing against Synapse itself (installs it
//                    into .roomdag/oracle-venv unless ROOMDAG_ORACLE_PYTHON is set)
//   package          npm run build: the .wasm and loaders into pkg/
//   types            the published TypeScript types, strict, without and with the DOM library
//   packaging        npm pack ./pkg installed into fresh projects: Node ESM/CJS,
//                    TypeScript, esbuild, Vite, Chromium, a Worker; attw; the tarball's files
//   node             the JS API in Node: stores, signed HTTP, CLI parity, arguments
//   browser          headless Chromium: bundled build, real IndexedDB, the visualizer
//   worker           workerd (wrangler dev): the Worker end to end, DO storage
// Set ROOMDAG_TEST_ONLY=tier1,tier2 to run a subset.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
/** One kind of shared test material: $ROOMDAG_SHARED/kind, ../shared/kind, or our copy (tests/shared/README.md). */
function sharedDir(kind) {
  if (process.env.ROOMDAG_SHARED) return join(process.env.ROOMDAG_SHARED, kind);
  const steering = join(root, "..", "shared", kind);
  return existsSync(steering) ? steering : join(root, "tests", "shared", kind);
}
const only = process.env.ROOMDAG_TEST_ONLY?.split(",");

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...opts });
  if (r.status !== 0) {
    console.error(`\n✗ ${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}`);
    process.exit(1);
  }
}

const tiers = {
  "cargo-test": () => run("cargo", ["test", "--all-targets"]),
  "wasm32-build": () => run("cargo", ["build", "--lib", "--target", "wasm32-unknown-unknown", "--release"]),
  "conformance-cli": () => {
    run("cargo", ["build", "--release", "--bin", "roomdag"]);
    const dir = process.env.ROOMDAG_FIXTURES ?? sharedDir("fixtures");
    const out = mkdtempSync(join(tmpdir(), "roomdag-answers-"));
    const rooms = readdirSync(dir).filter((f) => /\.json(\.gz)?$/.test(f) && !/\.(queries|expected)\./.test(f));
    if (rooms.length === 0) throw new Error(`no fixtures in ${dir}`);
    for (const f of rooms.sort()) {
      const name = f.replace(/\.json(\.gz)?$/, "");
      const ext = f.endsWith(".gz") ? ".json.gz" : ".json";
      const expected = join(dir, `${name}.expected${ext}`);
      if (!existsSync(expected)) continue;
      const answers = join(out, `${name}.answers.json`);
      console.log(`\n-- ${name}`);
      run(join(root, "target/release/roomdag"), ["replay", join(dir, f), "--queries", join(dir, `${name}.queries${ext}`), "-o", answers]);
      run("python3", [join(sharedDir("oracle"), "compare.py"), expected, answers, "--show", "3"]);
    }
  },
  "synapse-diff": () => {
    const python = oraclePython("synapse-diff");
    if (!python) return;
    const test = (filter, env) =>
      run("cargo", ["test", "--release", "--test", "hardening", filter, "--", "--ignored", "--nocapture"], {
        env: { ...process.env, ROOMDAG_ORACLE_PYTHON: python, ...env },
      });
    // Cheap mode: a few mutated + re-signed runs per fixture, a few fresh
    // generated rooms (high fork and bad rates). The long mode is in
    // tests/hardening/oracle_diff.rs.
    for (const fixture of ["v11-forky-2k", "v12-forky-1k", "v3-500"]) {
      test("oracle_diff::oracle_diff", { ROOMDAG_ORACLE_DIFF_FIXTURE: fixture, ROOMDAG_ORACLE_DIFF_RUNS: "3" });
    }
    test("oracle_diff::oracle_generated_rooms", { ROOMDAG_ORACLE_GEN_RUNS: "4" });
  },
};

/**
 * A Python that imports Synapse at the oracle's pinned version, installing it
 * from PyPI into .roomdag/oracle-venv when none is found. When it cannot be
 * installed, the tier is skipped with one line saying why — or fails, under
 * ROOMDAG_REQUIRE_SYNAPSE=1 (CI).
 */
function oraclePython(tier) {
  try {
    return findOrInstallSynapse(tier);
  } catch (e) {
    if (process.env.ROOMDAG_REQUIRE_SYNAPSE === "1") throw e;
    console.log(`\nSKIPPED ${tier}: Synapse is needed and could not be installed (${e.message}); set ROOMDAG_ORACLE_PYTHON to a Python with matrix-synapse to run it`);
    return null;
  }
}

function findOrInstallSynapse(tier) {
  if (process.env.ROOMDAG_ORACLE_PYTHON) return process.env.ROOMDAG_ORACLE_PYTHON;
  const pin = /SYNAPSE_VERSION:-([0-9.]+)/.exec(readFileSync(join(sharedDir("oracle"), "setup.sh"), "utf8"))?.[1] ?? "1.163.2";
  const works = (py) =>
    existsSync(py) &&
    spawnSync(py, ["-c", `import synapse, signedjson, canonicaljson, nacl; assert synapse.__version__.split()[0] == "${pin}"`]).status === 0;
  const sharedVenv = join(sharedDir("oracle"), ".venv/bin/python");
  if (works(sharedVenv)) return sharedVenv;
  const venv = join(root, ".roomdag/oracle-venv");
  const py = join(venv, "bin/python");
  if (!works(py)) {
    const base = ["python3.11", "python3.12", "python3"].find((p) => spawnSync(p, ["--version"]).status === 0);
    if (!base) throw new Error("no python3 to install Synapse with");
    console.log(`${tier}: installing matrix-synapse ${pin} from PyPI into ${venv}`);
    const step = (cmd, args) => {
      const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status ?? r.signal}`);
    };
    step(base, ["-m", "venv", venv]);
    step(py, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", `matrix-synapse==${pin}`, "signedjson", "canonicaljson", "PyNaCl"]);
    if (!works(py)) throw new Error(`${py} cannot import synapse ${pin}`);
  }
  return py;
}

Object.assign(tiers, {
  package: () => run("node", ["scripts/build.mjs"]),
  types: () => {
    run(join(root, "node_modules/.bin/tsc"), ["-p", "tests/types/tsconfig.json"]);
    run(join(root, "node_modules/.bin/tsc"), ["-p", "tests/types/tsconfig.dom.json"]);
  },
  packaging: () => run("node", ["--test", "--test-concurrency=1", "tests/packaging/package.test.mjs"]),
  node: () => {
    const files = readdirSync(join(root, "tests/js")).filter((f) => f.endsWith(".test.mjs")).map((f) => join("tests/js", f));
    run("node", ["--test", "--test-concurrency=1", ...files]);
  },
  worker: () => {
    const files = readdirSync(join(root, "tests/worker")).filter((f) => f.endsWith(".test.mjs")).map((f) => join("tests/worker", f));
    run("node", ["--test", "--test-concurrency=1", ...files]);
  },
  browser: () => {
    const files = readdirSync(join(root, "tests/browser")).filter((f) => f.endsWith(".test.mjs")).map((f) => join("tests/browser", f));
    run("node", ["--test", "--test-concurrency=1", ...files]);
  },
});

for (const [name, fn] of Object.entries(tiers)) {
  if (only && !only.includes(name)) continue;
  console.log(`\n=== ${name}`);
  fn();
}
console.log("\n✓ all test tiers passed");
