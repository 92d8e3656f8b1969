// The store conformance suite on the in-memory store, IndexedDB
// (fake-indexeddb) and a Durable Object storage stand-in. The real Durable
// Object storage runs the same suite in workerd (worker tests), and the real
// IndexedDB in headless Chromium (browser tests).
import { test } from "node:test";
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
  async list({ prefix }) {
    return new Map([...this.data.entries()].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, structuredClone(v)]));
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

// A memory store with a page store: the engine keeps its PDU texts there.
kinds["memory, PDU texts in a page store"] = {
  make: () => {
    const s = new api.MemoryStore();
    const rows = new Map();
    s.pages = {
      get: (table, key) => (table === "pdu" ? rows.get(key) ?? null : null),
      put: (table, key, text) => void rows.set(key, text),
      delete: (table, key) => void rows.delete(key),
    };
    return s;
  },
  reopen: (s) => s,
  breakNext: breakNextAppend,
};

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
