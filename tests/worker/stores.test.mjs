// The store conformance suite on real Durable Object storage, in workerd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startWorker } from "./wrangler.mjs";
import { loadFixture, root } from "../js/fixtures.mjs";

test("Durable Object store: the shared store suite passes in workerd", { timeout: 300_000 }, async () => {
  const w = await startWorker({ vars: {}, config: join(root, "worker", "test", "wrangler.jsonc"), readyPath: "/" });
  try {
    const res = await fetch(w.url, { method: "POST", body: JSON.stringify(loadFixture("v11-forky-2k").room) });
    const results = await res.json();
    assert.ok(results.length >= 5, JSON.stringify(results));
    for (const r of results) assert.ok(r.ok, `${r.name}: ${r.error}`);
  } finally {
    await w.stop();
  }
});

test("Durable Object SQLite pages: a room object's PDU texts live in its SQLite database and read back exactly through a 4 KiB cache; restarts write no rows; records keep no PDU copy; a room stored without rows migrates once", { timeout: 300_000 }, async () => {
  const w = await startWorker({ vars: {}, config: join(root, "worker", "test", "wrangler.jsonc"), readyPath: "/" });
  try {
    const res = await fetch(new URL("/paged", w.url), { method: "POST", body: JSON.stringify(loadFixture("v11-forky-2k").room) });
    const r = await res.json();
    assert.ok(r.ok, r.error);
    assert.equal(r.rows, r.events, "one row per stored event");
    assert.ok(r.events >= 250, JSON.stringify(r));
    console.log(`# ${r.events} events, ${r.rows} rows, cache ${JSON.stringify(r.stats)}`);
    const m = await (await fetch(new URL("/migration", w.url), { method: "POST", body: JSON.stringify(loadFixture("v11-forky-2k").room) })).json();
    assert.ok(m.ok, m.error);
    assert.ok(m.migrationPuts >= m.events && m.rows === m.events && m.events > 150, `a room stored without rows gets every row once, on its first open: ${JSON.stringify(m)}`);
  } finally {
    await w.stop();
  }
});

test("the Worker's event index shard: SQL rows, an event ID keeps its first room, entries of the earlier key-value index still found", { timeout: 120_000 }, async () => {
  const w = await startWorker({ vars: {}, config: join(root, "worker", "test", "wrangler.jsonc"), readyPath: "/" });
  try {
    const r = await (await fetch(new URL("/event-index", w.url), { method: "POST" })).json();
    assert.deepEqual(r.found, { $legacy: "!old:x", $one: "!a:x", $two: "!a:x", $three: "!b:x", $many0: "!b:x", $many119: "!b:x", $absent: null });
    assert.equal(r.rows, 123);
  } finally {
    await w.stop();
  }
});

test("Durable Object SQLite room images: a reopen reads the image and replays only the records after it, answering as the room did; a corrupt image falls back to the log; a rebuild makes the image stale", { timeout: 300_000 }, async () => {
  const w = await startWorker({ vars: {}, config: join(root, "worker", "test", "wrangler.jsonc"), readyPath: "/" });
  try {
    const r = await (await fetch(new URL("/image", w.url), { method: "POST", body: JSON.stringify(loadFixture("v11-forky-2k").room) })).json();
    assert.ok(r.ok, r.error);
    assert.ok(r.events > 1000 && r.replayedAfterImage > 100 && r.replayedAfterImage < r.events / 2, JSON.stringify(r));
    assert.ok(r.paged.ids > 0 && r.paged.blocks > 0 && r.paged.idBuckets > 0, JSON.stringify(r.paged));
    console.log(`# ${r.events} events; image ${r.image.bytes} bytes in ${r.image.parts} part(s); ${r.replayedAfterImage} records replayed after it; rows ${JSON.stringify(r.paged)}`);
  } finally {
    await w.stop();
  }
});

test("Durable Object SQLite state pools: a room of thousands of state changes keeps its states' full pool segments as rows, named by its image; read back, it answers /state_ids as before", { timeout: 300_000 }, async () => {
  const w = await startWorker({ vars: {}, config: join(root, "worker", "test", "wrangler.jsonc"), readyPath: "/" });
  try {
    const r = await (await fetch(new URL("/pools", w.url), { method: "POST", body: JSON.stringify(loadFixture("v11-20k").room) })).json();
    assert.ok(r.ok, r.error);
    assert.ok(r.events > 19000 && r.statePools > 0 && r.rowsAfter >= r.statePools && r.sample > 50, JSON.stringify(r));
    console.log(`# ${r.events} events; ${r.statePools} rows of the states' pools; ${r.sample} /state_ids answers equal after a reopen`);
  } finally {
    await w.stop();
  }
});
