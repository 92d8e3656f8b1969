// worker/src/config.ts on its own (transpiled with the project's TypeScript,
// no workerd needed): each variable is validated and reported by name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { root } from "../js/fixtures.mjs";

const source = readFileSync(join(root, "worker/src/config.ts"), "utf8");
const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
const { parseConfig, ConfigError } = await import(`data:text/javascript;base64,${Buffer.from(js).toString("base64")}`);

const base = { SERVER_NAME: "roomdag.example.org", SIGNING_KEY: "ed25519:a dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE", ADMIN_TOKEN: "0123456789abcdef0123" };

test("WELL_KNOWN_SERVER: absent or blank → not served; a server name → served as given", () => {
  assert.equal(parseConfig(base).wellKnownServer, undefined);
  assert.equal(parseConfig({ ...base, WELL_KNOWN_SERVER: "  " }).wellKnownServer, undefined);
  for (const v of ["roomdag.example.org:443", "roomdag.example.org", "[::1]:8448", "127.0.0.1:443"]) {
    assert.equal(parseConfig({ ...base, WELL_KNOWN_SERVER: ` ${v} ` }).wellKnownServer, v);
  }
});

test("WELL_KNOWN_SERVER: anything else is a configuration error naming the variable", () => {
  for (const v of ["https://roomdag.example.org", "roomdag.example.org/x", "a b", "host:port", "x:123456"]) {
    assert.throws(
      () => parseConfig({ ...base, WELL_KNOWN_SERVER: v }),
      (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith("WELL_KNOWN_SERVER"),
      v,
    );
  }
});

test("INSPECTOR: unset or blank → closed; closed, loopback, open as given; anything else is a configuration error", () => {
  assert.equal(parseConfig(base).inspector, "closed");
  assert.equal(parseConfig({ ...base, INSPECTOR: " " }).inspector, "closed");
  for (const v of ["closed", "loopback", "open"]) assert.equal(parseConfig({ ...base, INSPECTOR: v }).inspector, v);
  for (const v of ["yes", "true", "OPEN", "public"]) {
    assert.throws(
      () => parseConfig({ ...base, INSPECTOR: v }),
      (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith("INSPECTOR must be"),
      v,
    );
  }
});

test("ACCEPT_ROOMS_FROM: unset → none; server names or * (comma-separated); anything else is a configuration error", () => {
  assert.deepEqual(parseConfig(base).acceptRoomsFrom, []);
  assert.deepEqual(parseConfig({ ...base, ACCEPT_ROOMS_FROM: " a.example , b.example:8448 " }).acceptRoomsFrom, ["a.example", "b.example:8448"]);
  assert.deepEqual(parseConfig({ ...base, ACCEPT_ROOMS_FROM: "*" }).acceptRoomsFrom, ["*"]);
  assert.throws(
    () => parseConfig({ ...base, ACCEPT_ROOMS_FROM: "a.example, https://evil.example/x" }),
    (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith("ACCEPT_ROOMS_FROM"),
  );
});

test("IMAGE_AFTER_RECORDS: unset or blank → 1000; a whole number from 1 → that; anything else is a configuration error", () => {
  assert.equal(parseConfig(base).imageAfterRecords, 1000);
  assert.equal(parseConfig({ ...base, IMAGE_AFTER_RECORDS: " " }).imageAfterRecords, 1000);
  assert.equal(parseConfig({ ...base, IMAGE_AFTER_RECORDS: "100" }).imageAfterRecords, 100);
  for (const v of ["0", "-5", "1.5", "1e3", "ten", "1234567890"]) {
    assert.throws(
      () => parseConfig({ ...base, IMAGE_AFTER_RECORDS: v }),
      (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith("IMAGE_AFTER_RECORDS"),
      v,
    );
  }
});

test("PAGE_CACHE_MIB: unset or blank → 8 MiB; a number of MiB from 0 to 1024 → bytes; anything else is a configuration error", () => {
  assert.equal(parseConfig(base).pageCacheBytes, 8 * 1024 * 1024);
  assert.equal(parseConfig({ ...base, PAGE_CACHE_MIB: " " }).pageCacheBytes, 8 * 1024 * 1024);
  assert.equal(parseConfig({ ...base, PAGE_CACHE_MIB: "0" }).pageCacheBytes, 0);
  assert.equal(parseConfig({ ...base, PAGE_CACHE_MIB: "0.5" }).pageCacheBytes, 512 * 1024);
  assert.equal(parseConfig({ ...base, PAGE_CACHE_MIB: "64" }).pageCacheBytes, 64 * 1024 * 1024);
  for (const v of ["-1", "2048", "8MB", "1e3", "NaN", "Infinity", "0x10"]) {
    assert.throws(
      () => parseConfig({ ...base, PAGE_CACHE_MIB: v }),
      (e) => e instanceof ConfigError && e.problems.length === 1 && e.problems[0].startsWith("PAGE_CACHE_MIB"),
      v,
    );
  }
});
