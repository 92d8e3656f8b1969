// The roomdag engine (Rust → wasm) in a Web Worker, so that verifying a large
// room (signatures, hashes, auth rules, state resolution: seconds for 20k
// events) never blocks the page. One room at a time; the page talks to it
// with {id, op, args} messages (see engine-client.js).
import { init, roomFromFixture, RoomEngine, IndexedDbStore, KeyRing, eventIdOf } from "roomdag";

const ready = init(new URL("./roomdag_wasm_bg.wasm", self.location.href));

/** The loaded room: its engine and where its PDUs came from. */
let room = null; // { engine, source, pdus: Map<eventId, string> | null, servers, store }

const SAVE_DB = "roomdag-www";
const INGEST_BATCH = 500;

function progress(id, done, total, what) {
  self.postMessage({ id, progress: { done, total, what } });
}

/** What the page needs after a load: the verified graph and both layouts. */
function summary(engine, extra = {}) {
  const t = performance.now();
  const graph = engine.exportGraph();
  const depth = engine.layout("depth");
  const arrival = engine.layout("arrival");
  return {
    graph,
    layouts: { depth, arrival },
    roomId: engine.roomId ?? graph.room_id,
    roomVersion: engine.roomVersion,
    exportMs: performance.now() - t,
    ...extra,
  };
}

const ops = {
  /** A `matrix-dag-oracle/1` fixture (bytes): verified end to end by the wasm core. */
  async loadFixture(id, { bytes: buffer }) {
    const bytes = new Uint8Array(buffer);
    const text = new TextDecoder().decode(bytes);
    const fixture = JSON.parse(text);
    const t = performance.now();
    const engine = roomFromFixture(bytes);
    const verifyMs = performance.now() - t;
    const pdus = new Map();
    for (const e of fixture.events ?? []) pdus.set(e.event_id, JSON.stringify(e.pdu));
    const servers = Object.fromEntries(Object.entries(fixture.servers ?? {}).map(([s, v]) => [s, v.verify_keys ?? {}]));
    room = { engine, source: "fixture", pdus, servers };
    return summary(engine, { verifyMs, fixtureEvents: fixture.events?.length ?? 0 });
  },

  /** Event IDs and the room version of loose PDUs (NDJSON, JSON arrays, TARDIS dumps). */
  async prepare(id, { pdus }) {
    let roomVersion = null;
    let roomId = null;
    for (const p of pdus) {
      const o = JSON.parse(p);
      if (o.type === "m.room.create" && o.state_key === "") {
        roomVersion = String(o.content?.room_version ?? "1");
        roomId = o.room_id ?? null;
        break;
      }
    }
    if (!roomVersion) throw new Error("no m.room.create event among the PDUs: the room version is unknown");
    const ids = pdus.map((p) => {
      try {
        return eventIdOf(p, roomVersion);
      } catch {
        // Room versions 1 and 2 (which the engine does not host) carry their IDs.
        const claimed = JSON.parse(p).event_id;
        return typeof claimed === "string" ? claimed : null;
      }
    });
    if (!roomId) roomId = JSON.parse(pdus[0]).room_id ?? null;
    return { ids, roomVersion, roomId };
  },

  /**
   * Loose PDUs without keys, trusting their signatures: the records are
   * replayed through `RoomEngine.open` (which does not check signatures of
   * stored records, but runs every other check). The replay reports the
   * first record whose outcome differs from the claimed one; that record is
   * corrected (rejected, or left out when dropped) and the replay runs again.
   */
  async loadTrusted(id, { pdus, ids, roomVersion }) {
    let records = pdus.map((raw, k) => ({ i: k, eventId: ids[k], status: "accepted", raw })).filter((r) => r.eventId);
    let engine;
    for (let attempt = 0; ; attempt++) {
      const snapshot = records.map((r, i) => ({ ...r, i }));
      const store = { load: async () => ({ roomVersion, records: snapshot }), append: async () => {} };
      try {
        engine = await RoomEngine.open({ store, roomVersion });
        records = snapshot;
        break;
      } catch (e) {
        const m = /stored record (\S+) replayed as (\w+)/.exec(String(e?.message));
        if (!m || attempt > 2000) throw e;
        progress(id, attempt + 1, null, `replaying (${attempt + 1} corrections)`);
        const k = records.findIndex((r) => r.eventId === m[1]);
        if (k < 0) throw e;
        if (m[2] === "rejected") records[k].status = "rejected";
        else records.splice(k, 1);
      }
    }
    room = { engine, source: "trusted", pdus: new Map(records.map((r) => [r.eventId, r.raw])), servers: {}, records };
    return summary(engine, { trusted: true, stored: records.length });
  },

  /** A room saved in this browser's IndexedDB. */
  async openSaved(id, { roomId }) {
    const store = new IndexedDbStore({ room: roomId, database: SAVE_DB });
    const loaded = await store.load();
    if (!loaded.roomVersion && loaded.records.length === 0) throw new Error(`room ${roomId} is not saved in this browser`);
    const engine = await RoomEngine.open({ store });
    room = { engine, source: "saved", pdus: null, servers: {}, store };
    return summary(engine, { stored: loaded.records.length });
  },

  /**
   * Saves the loaded room to IndexedDB. Fixture rooms go through
   * `RoomEngine.ingest` with a key ring pinned from the fixture's servers
   * (so every signature is checked again); trusted rooms store their
   * replayed records as they are.
   */
  async save(id, { roomId }) {
    if (!room) throw new Error("no room loaded");
    const store = new IndexedDbStore({ room: roomId, database: SAVE_DB });
    const existing = await store.load();
    if (room.source === "trusted") {
      if (existing.records.length > 0) return { stored: existing.records.length, already: true };
      const records = room.records.map((r, i) => ({ i, eventId: r.eventId, status: r.status, raw: r.raw }));
      await store.append(records, { roomVersion: room.engine.roomVersion, roomId });
      return { stored: records.length };
    }
    if (!room.pdus) throw new Error("this room is already in the browser store");
    const engine = await RoomEngine.open({ store, roomVersion: room.engine.roomVersion });
    const keyRing = new KeyRing();
    try {
      for (const [server, keys] of Object.entries(room.servers)) for (const [keyId, b64] of Object.entries(keys)) keyRing.pin(server, keyId, b64);
      const pdus = [...room.pdus.values()];
      const counts = { accepted: 0, rejected: 0, dropped: 0, duplicate: 0 };
      for (let k = 0; k < pdus.length; k += INGEST_BATCH) {
        const outcomes = await engine.ingest(pdus.slice(k, k + INGEST_BATCH), keyRing);
        for (const o of outcomes) counts[o.status] = (counts[o.status] ?? 0) + 1;
        progress(id, Math.min(k + INGEST_BATCH, pdus.length), pdus.length, "saving");
      }
      return { stored: engine.eventCount, counts };
    } finally {
      keyRing.free();
    }
  },

  /** Stores given records as they are (rooms read from a server's inspector API). */
  async saveRecords(id, { roomId, roomVersion, records }) {
    const store = new IndexedDbStore({ room: roomId, database: SAVE_DB });
    const existing = await store.load();
    if (existing.records.length > 0) return { stored: existing.records.length, already: true };
    await store.append(records.map((r, i) => ({ ...r, i })), { roomVersion, roomId });
    return { stored: records.length };
  },

  async details(id, { eventId }) {
    return need().eventDetails(eventId);
  },

  /** For merge events: whether their prev states conflicted, and on what. */
  async resolutions(id, { eventIds }) {
    const engine = need();
    const out = {};
    for (const e of eventIds) {
      const r = engine.eventDetails(e).resolution;
      out[e] = r ? { keys: r.conflicted_keys.length, full: r.full_conflicted_set } : null;
    }
    return out;
  },

  async currentState() {
    return need().currentState();
  },

  /** `/backfill` or `/get_missing_events` as `origin` would get it, with the served events' IDs. */
  async history(id, { kind, origin, eventId, limit }) {
    const engine = need();
    const r =
      kind === "backfill"
        ? engine.backfill(origin, [eventId], limit)
        : engine.getMissingEvents(origin, { earliestEvents: [], latestEvents: [eventId], limit });
    if (r.status !== 200) return { status: r.status, error: r.body };
    const pdus = kind === "backfill" ? r.body.pdus : r.body.events;
    const version = engine.roomVersion;
    const events = pdus.map((p) => {
      const eventId = eventIdOf(p, version);
      return { eventId, type: p.type, redacted: isPruned(p, engine.eventDetails(eventId).pdu) };
    });
    return { status: 200, events };
  },

  async timestampToEvent(id, { origin, ts, dir }) {
    return need().timestampToEvent(origin, ts, dir);
  },

  /** The room's PDUs, one per line, in arrival order. */
  async ndjson() {
    const engine = need();
    if (room.store) {
      const { records } = await room.store.load();
      return records.map((r) => r.raw).join("\n") + "\n";
    }
    const graph = engine.exportGraph();
    return graph.events.map((e) => room.pdus?.get(e.event_id) ?? JSON.stringify(engine.eventDetails(e.event_id).pdu)).join("\n") + "\n";
  },

  async dot(id, { authEdges }) {
    return need().exportDot(Boolean(authEdges));
  },
};

/** Whether a served PDU is the redacted form: content keys were pruned away from the stored PDU's. */
function isPruned(served, stored) {
  return Object.keys(served.content ?? {}).length < Object.keys(stored?.content ?? {}).length;
}

function need() {
  if (!room) throw new Error("no room loaded");
  return room.engine;
}

self.onmessage = async (ev) => {
  const { id, op, args } = ev.data;
  try {
    await ready;
    const fn = ops[op];
    if (!fn) throw new Error(`unknown op ${op}`);
    const result = await fn(id, args ?? {});
    const transfer = result?.layouts ? [result.layouts.depth.buffer, result.layouts.arrival.buffer] : [];
    self.postMessage({ id, ok: true, result }, transfer);
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e?.message ?? e), code: e?.code });
  }
};
