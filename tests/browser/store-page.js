// Runs the store conformance suite against the browser's real IndexedDB.
import * as api from "../../pkg/web.js";
import { storeSuite, breakNextAppend, breakNextIndexedDbAppend } from "../js/store-suite.mjs";

async function main() {
  const results = [];
  // Before init(): the clear error, not a TypeError from the wasm glue.
  try {
    new api.KeyRing();
    results.push({ name: "new KeyRing() before init()", ok: false, error: "did not throw" });
  } catch (e) {
    results.push({ name: "new KeyRing() before init()", ok: e instanceof api.NotInitializedError, error: String(e) });
  }
  await api.init(new URL("./roomdag_wasm_bg.wasm", location.href));
  const fixture = await (await fetch("/fixture/v11-forky-2k.json")).json();
  let n = 0;
  const kinds = {
    memory: { make: () => new api.MemoryStore(), reopen: (s) => s, breakNext: breakNextAppend },
    indexeddb: {
      make: () => new api.IndexedDbStore({ room: `!browser${n++}:test`, database: "roomdag-browser-test" }),
      // A new store object over the same database: what a page reload sees.
      reopen: (s) => s,
      breakNext: breakNextIndexedDbAppend,
    },
  };
  for (const [kind, k] of Object.entries(kinds)) {
    for (const [name, fn] of storeSuite({ api, fixture, ...k })) {
      try {
        await fn();
        results.push({ name: `${kind}: ${name}`, ok: true });
      } catch (e) {
        results.push({ name: `${kind}: ${name}`, ok: false, error: String(e?.stack ?? e) });
      }
    }
  }
  // Persistence across a reload: write once, then the test reloads the page.
  const store = new api.IndexedDbStore({ room: "!reload:test", database: "roomdag-browser-test" });
  const before = await store.load();
  if (before.records.length === 0) {
    const engine = await api.RoomEngine.open({ store, roomVersion: fixture.room_version });
    const keys = new api.KeyRing();
    for (const [server, s] of Object.entries(fixture.servers)) for (const [id, key] of Object.entries(s.verify_keys)) keys.pin(server, id, key);
    await engine.ingest(fixture.events.slice(0, 120).map((e) => e.pdu), keys);
    window.__persisted = { count: engine.eventCount, digest: engine.currentState().digest };
  } else {
    const engine = await api.RoomEngine.open({ store });
    window.__persisted = { count: engine.eventCount, digest: engine.currentState().digest, reopened: true };
  }
  window.__results = results;
}

main().catch((e) => {
  window.__results = [{ name: "page", ok: false, error: String(e?.stack ?? e) }];
});
