// The package's CLI (wasm) answers exactly like the native CLI, byte for
// byte, on every fixture; and it fails like it on bad input.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, mkdtempSync, writeFileSync, existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { root, fixtureRooms } from "./fixtures.mjs";

const native = join(root, "target", "release", "roomdag");
const wasmCli = join(root, "pkg", "cli.mjs");
const out = mkdtempSync(join(tmpdir(), "roomdag-cli-"));
after(() => rmSync(out, { recursive: true, force: true }));

const rooms = fixtureRooms();

function run(cmd, args) {
  return spawnSync(cmd, args, { encoding: "buffer", maxBuffer: 1 << 30 });
}

test("the native CLI is built", () => assert.ok(existsSync(native), `${native} (run cargo build --release)`));

for (const { file, name, ext, dir } of rooms) {
  test(`${name}: wasm and native answers are identical`, () => {
    const q = join(dir, `${name}.queries${ext}`);
    const a = join(out, `${name}.native.json`);
    const b = join(out, `${name}.wasm.json`);
    const r1 = run(native, ["replay", file, "--queries", q, "-o", a]);
    assert.equal(r1.status, 0, r1.stderr.toString());
    const r2 = run(process.execPath, [wasmCli, "replay", file, "--queries", q, "-o", b]);
    assert.equal(r2.status, 0, r2.stderr.toString());
    assert.ok(readFileSync(a).equals(readFileSync(b)), "answers differ");
  });
}

test("bad input: one-line errors and the same exit codes", () => {
  const bad = join(out, "bad.json");
  writeFileSync(bad, '{"format": "nope"}');
  for (const cli of [[native], [process.execPath, wasmCli]]) {
    const [cmd, ...pre] = cli;
    const usage = run(cmd, [...pre, "replay"]);
    assert.equal(usage.status, 2, "usage error");
    const r = run(cmd, [...pre, "replay", bad, "--queries", bad]);
    assert.equal(r.status, 1, `bad file: ${r.stderr}`);
    const lines = r.stderr.toString().trim().split("\n");
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    const missing = run(cmd, [...pre, "replay", join(out, "missing.json"), "--queries", bad]);
    assert.equal(missing.status, 1);
  }
});

test("join/leave/status with no Worker listening: one line saying where it looked and why, exit 1", async () => {
  // A port nothing listens on: bind one, note it, close it.
  const { createServer } = await import("node:net");
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  for (const cmd of ["status", "leave", "join"]) {
    const r = run(process.execPath, [wasmCli, cmd, "!room:example.org", "--url", `http://127.0.0.1:${port}`, "--token", "t"]);
    assert.equal(r.status, 1, `${cmd}: ${r.stderr}`);
    const err = r.stderr.toString().trim();
    assert.equal(err.split("\n").length, 1, err);
    assert.match(err, new RegExp(`cannot reach the roomdag Worker at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
  }
});
