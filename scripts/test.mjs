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
//   live             real Synapse homeservers and the Worker (wrangler dev over
//                    HTTPS as roomdag.test:8443) federating over TLS on loopback
//                    (tests/live/; needs root for /etc/hosts, Python >= 3.11 and
//                    PyPI once, else skipped with one line saying why, or failed
//                    under ROOMDAG_REQUIRE_SYNAPSE=1)
// Set ROOMDAG_TEST_ONLY=tier1,tier2 to run a subset.
import { spawnSync, spawn } from "node:child_process";
import { existsSync, readdirSync, mkdtempSync, readFileSync, rmSync, accessSync, constants } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { fixtureRooms } from "../tests/js/fixtures.mjs";

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
    const out = mkdtempSync(join(tmpdir(), "roomdag-answers-"));
    const rooms = fixtureRooms();
    if (rooms.length === 0) throw new Error("no fixtures");
    for (const { file, name, ext, dir } of rooms) {
      const expected = join(dir, `${name}.expected${ext}`);
      if (!existsSync(expected)) continue;
      const answers = join(out, `${name}.answers.json`);
      console.log(`\n-- ${name}`);
      run(join(root, "target/release/roomdag"), ["replay", file, "--queries", join(dir, `${name}.queries${ext}`), "-o", answers]);
      run("python3", [join(sharedDir("oracle"), "compare.py"), expected, answers, "--show", "3"]);
      // The PDU texts in a scratch file behind the smallest cache, then also
      // the room written as an image and read back from it: the same bytes.
      for (const extra of [[], ["--image"]]) {
        const paged = join(out, `${name}.paged${extra.join("")}.json`);
        run(join(root, "target/release/roomdag"), ["replay", file, "--queries", join(dir, `${name}.queries${ext}`), "--cache-mib", "0", ...extra, "-o", paged]);
        if (!readFileSync(paged).equals(readFileSync(answers))) {
          console.error(`\n✗ ${name}: replay --cache-mib 0 ${extra.join(" ")} answered differently from the in-memory replay (${paged} vs ${answers})`);
          process.exit(1);
        }
      }
    }
    rmSync(out, { recursive: true, force: true }); // kept when a comparison fails (run exits)
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
    const base = ["python3.13", "python3.12", "python3.11", "python3"].find(
      (p) => spawnSync(p, ["-c", "import sys, venv; assert sys.version_info >= (3, 11)"]).status === 0,
    );
    if (!base) throw new Error("no Python >= 3.11 (with venv) to install Synapse with");
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

/**
 * The live tier: real Synapse (tests/live/live.py) and the Worker over TLS.
 * Checks what it needs and, lacking something, prints one line saying what
 * was skipped and why (fails under ROOMDAG_REQUIRE_SYNAPSE=1). Starts hs1 and hs2 (tests start the Worker, and more
 * servers as they need them), runs tests/live/*.test.mjs (the *.pending.mjs
 * files too with ROOMDAG_LIVE_PENDING=run), and stops everything in the end,
 * also on failure.
 */
async function liveTier() {
  const dir = join(root, "tests/live");
  const pending = readdirSync(dir).filter((f) => f.endsWith(".pending.mjs"));
  const files = readdirSync(dir)
    .filter((f) => f.endsWith(".test.mjs") || (process.env.ROOMDAG_LIVE_PENDING === "run" && f.endsWith(".pending.mjs")))
    .map((f) => join("tests/live", f));
  const skip = (why) => {
    if (process.env.ROOMDAG_REQUIRE_SYNAPSE === "1") throw new Error(`live: ${why}`);
    console.log(`\nSKIPPED live (${files.length} test files): ${why}`);
  };
  const hosts = ["hs1.test", "hs2.test", "roomdag.test"];
  const mapped = new Set(
    readFileSync("/etc/hosts", "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim().split(/\s+/)).filter((w) => w[0] === "127.0.0.1").flatMap((w) => w.slice(1)),
  );
  const unmapped = hosts.filter((h) => !mapped.has(h));
  let hostsWritable = true;
  try {
    accessSync("/etc/hosts", constants.W_OK);
  } catch {
    hostsWritable = false;
  }
  if (unmapped.length && !hostsWritable) return skip(`/etc/hosts lacks '127.0.0.1 ${unmapped.join(" ")}' and is not writable (not root)`);
  if (spawnSync("openssl", ["version"]).status !== 0) return skip("openssl is not installed (needed for the test CA)");
  if (!existsSync(join(root, "pkg/node.js"))) throw new Error("live: pkg/ is not built (npm run build, or the package tier)");
  const python = oraclePython("live");
  if (!python) return;

  const state = process.env.ROOMDAG_LIVE_DIR ?? join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "roomdag-live-test");
  rmSync(state, { recursive: true, force: true });
  const env = { ...process.env, ROOMDAG_SYNAPSE_PYTHON: python, ROOMDAG_LIVE_DIR: state };
  const livePy = (args) => spawnSync("python3", [join(dir, "live.py"), "--dir", state, ...args], { cwd: root, env, encoding: "utf8" });
  const t0 = Date.now();
  let status = 1;
  // Ctrl-C reaches the test processes too (they stop what they started); we
  // stay alive until they have, then clean up below.
  const interrupted = () => (status = 130);
  process.on("SIGINT", interrupted);
  process.on("SIGTERM", interrupted);
  try {
    const ca = spawnSync("bash", [join(dir, "ca.sh"), state, ...hosts], { encoding: "utf8" });
    if (ca.status !== 0) throw new Error(`ca.sh: ${ca.stderr}`);
    if (unmapped.length) {
      const r = livePy(["hosts", ...unmapped]);
      if (r.status !== 0) throw new Error(`live.py hosts: ${r.stderr}`);
    }
    // hs1 and hs2 in parallel (a few seconds each); the tests reuse them.
    const start = (name, port, httpPort) =>
      new Promise((resolve, reject) => {
        const p = spawn("python3", [join(dir, "live.py"), "--dir", state, "start", name, String(port), "--http-port", String(httpPort), "--ttl", "3600"], { env, stdio: ["ignore", "ignore", "pipe"] });
        let err = "";
        p.stderr.on("data", (d) => (err += d));
        p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`live.py start ${name}: ${err}`))));
      });
    await Promise.all([start("hs1", 8448, await freePort()), start("hs2", 8449, await freePort())]);
    console.log(`live: hs1.test:8448 and hs2.test:8449 up in ${((Date.now() - t0) / 1000).toFixed(1)} s (state in ${state})`);
    if (status === 130) throw new Error("live: interrupted");
    const r = spawnSync("node", ["--test", "--test-concurrency=1", ...files], { cwd: root, stdio: "inherit", env });
    if (status !== 130) status = r.status ?? 1;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    livePy(["stop", "--all"]);
    const pgid = join(state, "roomdag", "wrangler.pgid");
    if (existsSync(pgid)) {
      try {
        process.kill(-Number(readFileSync(pgid, "utf8")), "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  console.log(`live: ${((Date.now() - t0) / 1000).toFixed(0)} s${pending.length ? `; pending, not run: ${pending.join(", ")} (ROOMDAG_LIVE_PENDING=run runs them)` : ""}`);
  if (status !== 0) {
    console.error(`\n✗ live tests failed (logs in ${state}/hs*/homeserver.log)`);
    process.exit(1);
  }
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
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
  live: liveTier,
});

for (const [name, fn] of Object.entries(tiers)) {
  if (only && !only.includes(name)) continue;
  console.log(`\n=== ${name}`);
  await fn();
}
console.log("\n✓ all test tiers passed");
