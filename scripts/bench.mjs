#!/usr/bin/env node
// `node scripts/bench.mjs [--worker] [--write]`: roomdag's benchmarks in one run.
//   native replay of v11-20k (time, peak RSS), sequential and --parallel;
//   the Synapse oracle (expect.py) on the same room, when Synapse is installed;
//   the wasm CLI in Node on the same room; the .wasm size;
//   cargo bench --bench engine (per-query latencies);
//   /state_ids through handleFederationRequest in Node on the 20k room;
//   with --worker: the Worker under load (scripts/loadtest.mjs).
// With --write, the results replace the generated section of docs/benchmarks.md.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// Shared test material: $ROOMDAG_SHARED, ../shared, or our copy (tests/shared/README.md).
const shared = process.env.ROOMDAG_SHARED ?? [join(root, "..", "shared"), join(root, "tests", "shared")].find((d) => existsSync(join(d, "fixtures")));
const fx = join(shared, "fixtures", "v11-20k.json.gz");
const qs = join(shared, "fixtures", "v11-20k.queries.json.gz");
const args = new Set(process.argv.slice(2));
const out = [];
const say = (s = "") => {
  console.log(s);
  out.push(s);
};

function sh(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, encoding: "utf8", maxBuffer: 1 << 28, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")}: ${r.stderr}`);
  return r;
}

/** Runs a command `n` times under /usr/bin/time; returns the best wall time and the worst peak RSS. */
function timed(n, cmd, argv, opts) {
  let best = Infinity;
  let rss = 0;
  for (let i = 0; i < n; i++) {
    const r = sh("/usr/bin/time", ["-f", "%e %M", cmd, ...argv], opts);
    const [secs, kb] = r.stderr.trim().split("\n").at(-1).split(" ").map(Number);
    best = Math.min(best, secs);
    rss = Math.max(rss, kb);
  }
  return { secs: best, mb: rss / 1024 };
}

const rawBytes = (() => {
  const data = JSON.parse(spawnSync("gzip", ["-dc", fx], { maxBuffer: 1 << 28 }).stdout);
  return data.events.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e.pdu)), 0);
})();

sh("cargo", ["build", "--release", "--bin", "roomdag"]);
// Always rebuild the package: a stale pkg/ would measure old code.
sh(process.execPath, ["scripts/build.mjs"]);

say(`Run on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${os.cpus()[0].model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}.`);
say(`Room: v11-20k (20,000 PDUs, ${(rawBytes / 2 ** 20).toFixed(1)} MiB of raw PDU JSON; 2× = ${((2 * rawBytes) / 2 ** 20).toFixed(1)} MiB).`);
say();
say("| replay of v11-20k (signatures included, all 400 queries answered) | wall time (best of 3) | peak RSS | RSS / raw PDU bytes |");
say("|---|---|---|---|");
const bin = join(root, "target", "release", "roomdag");
const nat = timed(3, bin, ["replay", fx, "--queries", qs, "-o", "/dev/null"]);
say(`| roomdag native CLI | ${nat.secs.toFixed(2)} s | ${nat.mb.toFixed(1)} MiB | ${((nat.mb * 2 ** 20) / rawBytes).toFixed(2)}× |`);
const par = timed(3, bin, ["replay", fx, "--queries", qs, "-o", "/dev/null", "--parallel"]);
say(`| roomdag native CLI, --parallel | ${par.secs.toFixed(2)} s | ${par.mb.toFixed(1)} MiB | ${((par.mb * 2 ** 20) / rawBytes).toFixed(2)}× |`);
const wasmRun = timed(3, process.execPath, [join(root, "pkg", "cli.mjs"), "replay", fx, "--queries", qs, "-o", "/dev/null"]);
say(`| roomdag wasm CLI in Node (${(wasmRun.secs / nat.secs).toFixed(2)}× native) | ${wasmRun.secs.toFixed(2)} s | ${wasmRun.mb.toFixed(1)} MiB | — |`);
// The oracle's Python: $ROOMDAG_ORACLE_PYTHON, oracle/setup.sh's venv, or the one `npm test` installs.
const py = [process.env.ROOMDAG_ORACLE_PYTHON, join(shared, "oracle", ".venv", "bin", "python"), join(root, ".roomdag", "oracle-venv", "bin", "python")].find(
  (p) => p && existsSync(p),
);
if (py) {
  const orc = timed(1, py, [join(shared, "oracle", "expect.py"), fx, "--queries", "400", "--seed", "17", "--gzip", "-o", os.tmpdir()], { cwd: join(shared, "oracle") });
  say(`| Synapse oracle (oracle/expect.py, Synapse's own code) | ${orc.secs.toFixed(2)} s | ${orc.mb.toFixed(1)} MiB | — |`);
}
const wasm = readFileSync(join(root, "pkg", "roomdag_wasm_bg.wasm"));
say();
say(`\`.wasm\`: ${(wasm.length / 1024).toFixed(0)} KiB, ${(gzipSync(wasm, { level: 9 }).length / 1024).toFixed(0)} KiB gzipped (target ≤ 400 KiB).`);
say();
say("Engine (cargo bench --bench engine):");
say();
const bench = sh("cargo", ["bench", "--bench", "engine"]).stdout;
for (const line of bench.split("\n")) if (line.startsWith("|") || line.startsWith("fixture")) say(line);
say();

// /state_ids through handleFederationRequest in Node.
const node = sh(process.execPath, [join(root, "scripts", "bench-http.mjs"), fx]).stdout.trim();
say(node);

if (args.has("--worker")) {
  say();
  say(sh(process.execPath, [join(root, "scripts", "loadtest.mjs")]).stdout.trim());
}

if (args.has("--write")) {
  const doc = join(root, "docs", "benchmarks.md");
  const text = readFileSync(doc, "utf8");
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < 0) throw new Error("docs/benchmarks.md lacks the bench markers");
  writeFileSync(doc, text.slice(0, a + start.length) + "\n" + out.join("\n") + "\n" + text.slice(b));
  console.log(`\nwrote ${doc} (${statSync(doc).size} bytes)`);
}
