#!/usr/bin/env node
// `node scripts/bench-scale.mjs --rooms DIR [--sizes 20000,50000,150000] [--before BIN] [--runs 3]
//                               [--oracle-size 50000] [--oracle-runs 3] [--write]`
// The native replay against room size (issue 13, item 5): per-event cost and peak RSS of
// `roomdag replay ROOM --queries Q` on gen_room.py rooms of each size, best of --runs
// (interleaved with --before, an older build of the CLI, when given), and the Synapse
// oracle (expect.py) on one of them in the same run.
// Rooms and their queries are made in DIR when missing (gen_room.py, then expect.py; the
// 150k room takes about 15 min) with $ROOMDAG_ORACLE_PYTHON (a Python with Synapse).
// With --write, the results replace the generated section of docs/benchmarks.md.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import os from "node:os";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const roomsDir = opt("--rooms") && resolve(opt("--rooms"));
if (!roomsDir) throw new Error("--rooms DIR is required (rooms are large: keep them out of the repository)");
const sizes = opt("--sizes", "20000,50000,150000").split(",").map(Number);
const before = opt("--before");
const runs = Number(opt("--runs", "3"));
const oracleSize = Number(opt("--oracle-size", "50000"));
const oracleRuns = Number(opt("--oracle-runs", "3"));
const shared = process.env.ROOMDAG_SHARED ?? [join(root, "..", "shared"), join(root, "tests", "shared")].find((d) => existsSync(join(d, "oracle")));
const oracleDir = join(shared, "oracle");
const py = process.env.ROOMDAG_ORACLE_PYTHON;
if (!py) throw new Error("set ROOMDAG_ORACLE_PYTHON to a Python with Synapse (the oracle)");
mkdirSync(roomsDir, { recursive: true });

const out = [];
const say = (s = "") => {
  console.log(s);
  out.push(s);
};
function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: "utf8", maxBuffer: 1 << 28, ...opts });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr}`);
  return r;
}
/** One run under /usr/bin/time: wall and CPU seconds, peak RSS in KiB. */
function timeOnce(cmd, args, opts) {
  const r = sh("/usr/bin/time", ["-f", "%e %U %S %M", cmd, ...args], opts);
  const [wall, user, sys, kb] = r.stderr.trim().split("\n").at(-1).split(" ").map(Number);
  return { wall, cpu: user + sys, kb };
}
const best = (rs) => ({ ...rs.reduce((a, b) => (b.wall < a.wall ? b : a)), rss: Math.max(...rs.map((r) => r.kb)) });

const room = (n) => join(roomsDir, `big${n}.json.gz`);
const queries = (n) => join(roomsDir, `big${n}.queries.json.gz`);
for (const n of sizes) {
  if (!existsSync(room(n))) {
    console.error(`generating ${room(n)} …`);
    const args = ["--room-version", "11", "--seed", "1", "--events", String(n), "--servers", "10", "--users-per-server", "40"];
    sh(py, [join(oracleDir, "gen_room.py"), ...args, "-o", room(n)], { cwd: oracleDir });
  }
  if (!existsSync(queries(n))) {
    console.error(`queries for ${room(n)} …`);
    sh(py, [join(oracleDir, "expect.py"), room(n), "--gzip", "-o", roomsDir], { cwd: oracleDir });
  }
}
sh("cargo", ["build", "--release", "--bin", "roomdag"]);
const after = join(root, "target", "release", "roomdag");
const rawBytes = (n) => JSON.parse(gunzipSync(readFileSync(room(n)))).events.reduce((s, e) => s + Buffer.byteLength(JSON.stringify(e.pdu)), 0);

const load = () => os.loadavg().map((l) => l.toFixed(1)).join(" ");
say(`Run on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${os.cpus()[0].model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB; load average at the start ${load()}.`);
say(`Rooms: \`gen_room.py --room-version 11 --seed 1 --events N --servers 10 --users-per-server 40\`; each replay answers the room's 300 queries (expect.py's); best of ${runs} by wall time${before ? ", before and after interleaved" : ""}.`);
say();
const head = ["| room | raw PDU JSON |"];
if (before) head.push(" before: wall | µs/event | peak RSS |");
head.push(" after: wall | µs/event | CPU (user+sys) | peak RSS | RSS / PDU bytes |");
say(head.join(""));
say(`|---|---|${before ? "---|---|---|" : ""}---|---|---|---|---|`);
const perEvent = {};
for (const n of sizes) {
  const args = ["replay", room(n), "--queries", queries(n), "-o", "/dev/null"];
  const a = [];
  const b = [];
  for (let i = 0; i < runs; i++) {
    if (before) b.push(timeOnce(before, args));
    a.push(timeOnce(after, args));
  }
  const ra = best(a);
  const bytes = rawBytes(n);
  perEvent[n] = (ra.wall / n) * 1e6;
  const mib = (kb) => `${(kb / 1024).toFixed(0)} MiB`;
  let row = `| ${n.toLocaleString("en")} events | ${(bytes / 2 ** 20).toFixed(1)} MiB |`;
  if (before) {
    const rb = best(b);
    row += ` ${rb.wall.toFixed(2)} s | ${((rb.wall / n) * 1e6).toFixed(0)} | ${mib(rb.rss)} |`;
  }
  row += ` ${ra.wall.toFixed(2)} s | ${perEvent[n].toFixed(0)} | ${ra.cpu.toFixed(2)} s | ${mib(ra.rss)} | ${((ra.rss * 1024) / bytes).toFixed(2)}× |`;
  say(row);
}
const [lo, hi] = [Math.min(...sizes), Math.max(...sizes)];
say();
say(`Per-event cost at ${hi.toLocaleString("en")} / at ${lo.toLocaleString("en")}: ${(perEvent[hi] / perEvent[lo]).toFixed(2)} (target ≤ 1.2).`);

if (sizes.includes(oracleSize)) {
  const tmp = join(os.tmpdir(), "roomdag-bench-scale-oracle");
  mkdirSync(tmp, { recursive: true });
  const args = ["replay", room(oracleSize), "--queries", queries(oracleSize), "-o", "/dev/null"];
  const o = [];
  const a = [];
  const p = [];
  for (let i = 0; i < oracleRuns; i++) {
    o.push(timeOnce(py, [join(oracleDir, "expect.py"), room(oracleSize), "--gzip", "-o", tmp], { cwd: oracleDir }));
    a.push(timeOnce(after, args));
    p.push(timeOnce(after, [...args, "--parallel"]));
  }
  const ro = best(o);
  const ra = best(a);
  const rp = best(p);
  say();
  say(`| ${oracleSize.toLocaleString("en")}-event room, best of ${oracleRuns}, interleaved | wall | CPU (user+sys) | peak RSS |`);
  say("|---|---|---|---|");
  say(`| Synapse oracle (expect.py: the same replay and queries with Synapse's code) | ${ro.wall.toFixed(2)} s | ${ro.cpu.toFixed(2)} s | ${(ro.rss / 1024).toFixed(0)} MiB |`);
  say(`| roomdag native CLI | ${ra.wall.toFixed(2)} s | ${ra.cpu.toFixed(2)} s | ${(ra.rss / 1024).toFixed(0)} MiB |`);
  say(`| ratio | **${(ro.wall / ra.wall).toFixed(1)}×** | ${(ro.cpu / ra.cpu).toFixed(1)}× | |`);
  say(`| roomdag native CLI, --parallel (signatures on other threads) | ${rp.wall.toFixed(2)} s | ${rp.cpu.toFixed(2)} s | ${(rp.rss / 1024).toFixed(0)} MiB |`);
  say(`| ratio, --parallel | ${(ro.wall / rp.wall).toFixed(1)}× | | |`);
}
say();
say(`Load average at the end: ${load()}.`);

if (argv.includes("--write")) {
  const doc = join(root, "docs", "benchmarks.md");
  const text = readFileSync(doc, "utf8");
  const start = "<!-- bench-scale:start -->";
  const end = "<!-- bench-scale:end -->";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < 0) throw new Error("docs/benchmarks.md lacks the bench-scale markers");
  writeFileSync(doc, text.slice(0, a + start.length) + "\n" + out.join("\n") + "\n" + text.slice(b));
  console.log(`\nwrote ${doc}`);
}
