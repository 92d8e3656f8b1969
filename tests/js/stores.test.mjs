// The store conformance suite on the in-memory store, IndexedDB
// (fake-indexeddb) and a Durable Object storage stand-in. The real Durable
// Object storage runs the same suite in workerd (worker tests), and the real
// IndexedDB in headless Chromium (browser tests).
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory, IDBKeyRange } from "fake-indexeddb";
import * as api from "../../pkg/node.js";
import { storeSuite, breakNextAppend, breakNextIndexedDbAppend } from "./store-suite.mjs";
import { loadFixture } from "./fixtures.mjs";

const fixture = loadFixture("v11-forky-2k").room;

/** An in-memory stand-in with the Durable Object storage API we use (put is atomic). */
class FakeDurableStorage {
  data = new Map();
  failNext = false;
  async get(k) {
    return structuredClone(this.data.get(k));
  }
  /** Like Durable Object storage: `start` inclusive, `end` exclusive, at most `limit`, in key order. */
  async list({ prefix = "", start, end, limit = Infinity }) {
    const keys = [...this.data.keys()].filter((k) => k.startsWith(prefix) && (start === undefined || k >= start) && (end === undefined || k < end)).sort();
    return new Map(keys.slice(0, limit).map((k) => [k, structuredClone(this.data.get(k))]));
  }
  async put(entries) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("storage write failed");
    }
    for (const [k, v] of Object.entries(entries)) this.data.set(k, structuredClone(v));
  }
  async transaction(fn) {
    const copy = new Map(this.data);
    try {
      return await fn({ put: (e) => this.put(e) });
    } catch (e) {
      this.data = copy;
      throw e;
    }
  }
}

const kinds = {
  memory: { make: () => new api.MemoryStore(), reopen: (s) => s, breakNext: breakNextAppend },
  indexeddb: (() => {
    let n = 0;
    const factory = new IDBFactory();
    return {
      make: () => new api.IndexedDbStore({ room: `!room${n++}:test`, indexedDB: factory, IDBKeyRange }),
      reopen: (s) => s,
      breakNext: breakNextIndexedDbAppend,
    };
  })(),
};

// A memory store with a page store (its `pdu` rows in `rows`, the other
// tables' in `other`).
function memoryStoreWithPages() {
  const s = new api.MemoryStore();
  const rows = new Map();
  const other = new Map();
  const of = (table) => (table === "pdu" ? rows : other);
  const at = (table, key) => (table === "pdu" ? key : `${table}/${key}`);
  s.pages = {
    get: (table, key) => of(table).get(at(table, key)) ?? null,
    put: (table, key, text) => void of(table).set(at(table, key), text),
    delete: (table, key) => void of(table).delete(at(table, key)),
  };
  return { s, rows };
}

// A memory store with a page store: the engine keeps its PDU texts there.
kinds["memory, PDU texts in a page store"] = {
  make: () => memoryStoreWithPages().s,
  reopen: (s) => s,
  breakNext: breakNextAppend,
};

// A memory store with a page store that keeps paged records without their
// PDU (as DurableObjectStore does): the engine hands them over so (`paged`,
// no `raw`), and the store gives `raw` back from its pages on load.
function barePagedStore() {
  const { s, rows } = memoryStoreWithPages();
  s.pagedRecordsWithoutRaw = true;
  s.handed = [];
  const append = s.append.bind(s);
  s.append = (records, meta) => {
    s.handed.push(...records);
    return append(records, meta);
  };
  const load = s.load.bind(s);
  s.load = async () => {
    const loaded = await load();
    return { ...loaded, records: loaded.records.map((r) => (r.paged ? { ...r, raw: rows.get(r.eventId) } : r)) };
  };
  return s;
}
kinds["memory, paged records kept without their PDU"] = { make: barePagedStore, reopen: (s) => s, breakNext: breakNextAppend };

test("a store that keeps paged records without their PDU gets them so, and every other record with it", async () => {
  const keys = new api.KeyRing();
  for (const [server, sv] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(sv.verify_keys)) keys.pin(server, id, k);
  const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
  const s = barePagedStore();
  const engine = await api.RoomEngine.open({ store: s, roomVersion: fixture.room_version });
  for (let i = 0; i < 300; i += 50) await engine.ingest(pdus.slice(i, i + 50), keys);
  const stored = s.handed.filter((r) => r.status === "accepted" || r.status === "rejected");
  assert.ok(stored.length > 200, `${stored.length} stored`);
  for (const r of s.handed) {
    const paged = r.status === "accepted" || r.status === "rejected";
    assert.equal(r.paged === true, paged, `record ${r.i} (${r.status}) paged=${r.paged}`);
    assert.equal(typeof r.raw, paged ? "undefined" : "string", `record ${r.i} (${r.status})`);
  }
  // The same engine over a store that does not say so gets every PDU.
  const plain = barePagedStore();
  plain.pagedRecordsWithoutRaw = false;
  const other = await api.RoomEngine.open({ store: plain, roomVersion: fixture.room_version });
  await other.ingest(pdus.slice(0, 50), keys);
  assert.ok(plain.handed.every((r) => typeof r.raw === "string"), "raw kept for a store that keeps it");
  const again = await api.RoomEngine.open({ store: s });
  assert.equal(again.eventCount, engine.eventCount);
  assert.equal(again.currentState().digest, engine.currentState().digest);
});

// The stand-in needs its storage object to inject a failure; build the store by hand.
kinds["durable-object (stand-in)"] = (() => {
  const storages = new WeakMap();
  return {
    make: () => {
      const storage = new FakeDurableStorage();
      const s = new api.DurableObjectStore(storage);
      storages.set(s, storage);
      return s;
    },
    reopen: (s) => {
      const again = new api.DurableObjectStore(storages.get(s));
      storages.set(again, storages.get(s));
      return again;
    },
    breakNext: (s) => {
      storages.get(s).failNext = true;
    },
  };
})();

for (const [kind, k] of Object.entries(kinds)) {
  for (const [name, fn] of storeSuite({ api, fixture, ...k })) test(`${kind}: ${name}`, fn);
}

// DurableObjectStore.loadParts: the log in parts (head before the last
// rebuild marker, then chunks read from storage one at a time), and an
// object written before markers were indexed.
test("DurableObjectStore.loadParts: head before the last marker, the rest in chunks; an unindexed object is indexed once", async () => {
  const keys = new api.KeyRing();
  for (const [server, s] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(s.verify_keys)) keys.pin(server, id, k);
  const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
  const storage = new FakeDurableStorage();
  const store = new api.DurableObjectStore(storage);
  const engine = await api.RoomEngine.open({ store, roomVersion: fixture.room_version });
  await engine.ingest(pdus.slice(0, 300), keys);
  await engine.rebuild();
  for (let i = 300; i < 1500; i += 100) await engine.ingest(pdus.slice(i, i + 100), keys);
  const all = (await store.load()).records;
  const marker = all.findLastIndex((r) => r.rebuild === true);
  assert.ok(marker > 0, "a rebuild marker was stored");
  assert.deepEqual([...storage.data.keys()].filter((k) => k.startsWith("m:")), [`m:${String(all[marker].i).padStart(12, "0")}`]);

  const parts = await store.loadParts(400);
  assert.equal(parts.head.length, marker, "head: the records before the marker");
  const chunks = [];
  for await (const c of parts.tail) chunks.push(c);
  assert.ok(chunks.length >= 3 && chunks.every((c) => c.length <= 400), `chunks of at most 400: ${chunks.map((c) => c.length)}`);
  assert.deepEqual([...parts.head, ...chunks.flat()].map((r) => r.i), all.map((r) => r.i), "every record once, in order");
  assert.equal(chunks[0][0].rebuild, true, "the tail starts at the marker");

  // An object written before markers were indexed: loaded whole once, then indexed.
  for (const k of [...storage.data.keys()]) if (k.startsWith("m:") || k === "markers-indexed") storage.data.delete(k);
  const before = JSON.stringify([engine.eventCount, engine.currentState().digest, engine.forwardExtremities().sort()]);
  const again = await api.RoomEngine.open({ store: new api.DurableObjectStore(storage) });
  assert.equal(JSON.stringify([again.eventCount, again.currentState().digest, again.forwardExtremities().sort()]), before);
  assert.ok(storage.data.get("markers-indexed") === true && storage.data.has(`m:${String(all[marker].i).padStart(12, "0")}`), "indexed on that open");
  const third = await api.RoomEngine.open({ store: new api.DurableObjectStore(storage) });
  assert.equal(JSON.stringify([third.eventCount, third.currentState().digest, third.forwardExtremities().sort()]), before);
});
