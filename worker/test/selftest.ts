// A test-only Worker (worker/test/wrangler.jsonc): runs the store
// conformance suite of tests/js/store-suite.mjs against real Durable Object
// storage inside workerd. Never deployed.
import { DurableObject } from "cloudflare:workers";
import * as api from "../../pkg/workerd.js";
import { storeSuite } from "../../tests/js/store-suite.mjs";
import { EventIndexObject } from "../src/room.js";

interface Env {
  SUITE: DurableObjectNamespace;
  INDEX: DurableObjectNamespace;
}

/**
 * The Worker's event index shard, with what shards stored before it kept
 * the index in SQL: entries in the key-value storage.
 */
export class EventIndexCheck extends EventIndexObject {
  async check(): Promise<Record<string, unknown>> {
    // As the earlier shards wrote them.
    await this.ctx.storage.put({ $legacy: "!old:x" });
    await this.add("!a:x", ["$one", "$two"]);
    await this.add("!b:x", ["$two", "$three", ...Array.from({ length: 120 }, (_, i) => `$many${i}`)]);
    const find = async (ids: string[]) => Object.fromEntries(await Promise.all(ids.map(async (id) => [id, (await this.find(id)) ?? null])));
    return {
      found: await find(["$legacy", "$one", "$two", "$three", "$many0", "$many119", "$absent"]),
      rows: this.ctx.storage.sql.exec("SELECT count(*) AS n FROM event_room").one().n,
    };
  }
}

type Storage = DurableObjectStorage;

/** JSON with its objects' keys sorted (to compare PDUs whatever their key order). */
const canon = (v: unknown): unknown =>
  Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])])) : v;

/** One scratch object per store instance under test. */
export class ScratchStore extends DurableObject<Env> {
  failNext = false;
  async load() {
    return new api.DurableObjectStore(this.ctx.storage).load();
  }
  async append(records: unknown[], meta: unknown) {
    const storage: Storage = this.ctx.storage;
    if (this.failNext) {
      this.failNext = false;
      // Fail inside a transaction after the first write: nothing may remain.
      await storage.transaction(async (txn) => {
        await txn.put("r:partial", { i: -1 });
        throw new Error("injected failure after a partial write");
      });
    }
    return new api.DurableObjectStore(storage).append(records as never, meta as never);
  }
  breakNext() {
    this.failNext = true;
  }
  async wipe() {
    await this.ctx.storage.deleteAll();
  }

  /**
   * The engine inside this object with its PDU texts in the object's SQLite
   * (`DurableObjectStore.pages`) behind a 4 KiB cache: every stored PDU
   * reads back exactly, also after a failed write (rolled back: no rows
   * added), a restart and a rebuild; one row per stored event.
   */
  async pagedCheck(fixture: { room_version: string; servers: Record<string, { verify_keys: Record<string, string> }>; events: { pdu: unknown }[] }) {
    const store = new api.DurableObjectStore(this.ctx.storage);
    const pages = store.pages;
    if (!pages) throw new Error("a SQLite-backed object has no DurableObjectStore.pages");
    const keys = new api.KeyRing();
    for (const [server, s] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(s.verify_keys)) keys.pin(server, id, k);
    const pdus = fixture.events.slice(0, 400).map((e) => JSON.stringify(e.pdu));
    let failNext = false;
    let puts = 0;
    const counted = {
      get: (t: "pdu", k: string) => pages.get(t, k),
      put: (t: "pdu", k: string, v: string) => {
        puts++;
        pages.put(t, k, v);
      },
      delete: (t: "pdu", k: string) => pages.delete(t, k),
      rowsComplete: () => pages.rowsComplete!(),
      markRowsComplete: () => pages.markRowsComplete!(),
      flush: () => {
        pages.flush!();
        if (failFlush) {
          failFlush = false;
          throw new Error("injected page write failure");
        }
      },
    };
    let failFlush = false;
    const wrapped = {
      load: () => store.load(),
      append: async (records: never, meta: never) => {
        if (failNext) {
          failNext = false;
          throw new Error("injected append failure");
        }
        return store.append(records, meta);
      },
      pages: counted,
    };
    const rows = () => (this.ctx.storage.sql.exec("SELECT count(*) AS n FROM pdu").one() as { n: number }).n;
    const engine = await api.RoomEngine.open({ store: wrapped as never, roomVersion: fixture.room_version as never, cacheBytes: 4096 });
    const sent = new Map<string, string>();
    for (let i = 0; i < 300; i += 50) {
      const out = await engine.ingest(pdus.slice(i, i + 50), keys);
      out.forEach((o, n) => {
        if (o.status === "accepted" || o.status === "rejected") sent.set(o.eventId as string, pdus[i + n]);
      });
    }
    const readBack = (e: api.RoomEngine, what: string) => {
      for (const [id, pdu] of sent) {
        const got = JSON.stringify(canon(e.eventDetails(id).pdu));
        if (got !== JSON.stringify(canon(JSON.parse(pdu)))) throw new Error(`${what}: ${id} reads back ${got.slice(0, 100)}`);
      }
    };
    if (rows() !== engine.eventCount) throw new Error(`${rows()} rows for ${engine.eventCount} events`);
    readBack(engine, "as stored");
    const stats = engine.pageStats;
    if (!stats || stats.bytes > 4096 || stats.misses < sent.size) throw new Error(`the cache did not page: ${JSON.stringify(stats)}`);
    failNext = true;
    const before = rows();
    let failed = false;
    try {
      await engine.ingest(pdus.slice(300, 400), keys);
    } catch {
      failed = true;
    }
    if (!failed) throw new Error("the injected append failure was not reported");
    if (rows() !== before) throw new Error(`a rolled-back batch left ${rows() - before} rows`);
    const count = engine.eventCount;
    failNext = false;
    failFlush = true;
    let flushFailed = false;
    try {
      await engine.ingest(pdus.slice(300, 400), keys);
    } catch {
      flushFailed = true;
    }
    if (!flushFailed) throw new Error("the injected page write failure was not reported");
    if (rows() !== before || engine.eventCount !== count) throw new Error(`a batch whose rows failed left ${rows() - before} rows, ${engine.eventCount - count} events`);
    puts = 0;
    const again = await api.RoomEngine.open({ store: wrapped as never, cacheBytes: 4096 });
    readBack(again, "after a restart");
    await again.rebuild();
    readBack(again, "after a rebuild");
    if (rows() !== again.eventCount) throw new Error(`${rows()} rows for ${again.eventCount} events after the rebuild`);
    if (puts !== 0) throw new Error(`a restart and a rebuild wrote ${puts} rows (each row was written with its record)`);
    // Records of stored events keep their PDU in the page store only.
    const kept = [...(await this.ctx.storage.list<{ status?: string; raw?: string; paged?: boolean }>({ prefix: "r:" })).values()];
    const stored = kept.filter((r) => r.status === "accepted" || r.status === "rejected");
    if (stored.length === 0 || stored.some((r) => r.raw !== undefined || r.paged !== true)) throw new Error("stored records still carry their PDU");
    return { events: again.eventCount, rows: rows(), stats };
  }

  /**
   * A room stored before it had pages (its records carry their PDUs, no
   * rows): the first open with pages writes every row once, later opens
   * trust them, and the PDUs read back exactly.
   */
  async migrationCheck(fixture: { room_version: string; servers: Record<string, { verify_keys: Record<string, string> }>; events: { pdu: unknown }[] }) {
    const store = new api.DurableObjectStore(this.ctx.storage);
    const pages = store.pages!;
    const keys = new api.KeyRing();
    for (const [server, s] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(s.verify_keys)) keys.pin(server, id, k);
    const pdus = fixture.events.slice(0, 200).map((e) => JSON.stringify(e.pdu));
    const old = await api.RoomEngine.open({ store, roomVersion: fixture.room_version as never, pages: null });
    const outcomes = await old.ingest(pdus, keys);
    const rows = () => (this.ctx.storage.sql.exec("SELECT count(*) AS n FROM pdu").one() as { n: number }).n;
    if (rows() !== 0) throw new Error("an engine without pages wrote rows");
    let puts = 0;
    const counted = { ...pages, put: (t: "pdu", k: string, v: string) => (puts++, pages.put(t, k, v)), get: pages.get, delete: pages.delete };
    const migrated = await api.RoomEngine.open({ store, pages: counted as never, cacheBytes: 4096 });
    if (rows() !== migrated.eventCount || puts < migrated.eventCount) throw new Error(`the migration wrote ${puts} rows, ${rows()} held, for ${migrated.eventCount} events`);
    const migrationPuts = puts;
    const reopened = await api.RoomEngine.open({ store, pages: counted as never, cacheBytes: 4096 });
    if (puts !== migrationPuts) throw new Error("the migration ran twice");
    outcomes.forEach((o, n) => {
      if (o.status !== "accepted" && o.status !== "rejected") return;
      const got = JSON.stringify(canon(reopened.eventDetails(o.eventId as string).pdu));
      if (got !== JSON.stringify(canon(JSON.parse(pdus[n])))) throw new Error(`${o.eventId} reads back ${got.slice(0, 100)}`);
    });
    return { events: reopened.eventCount, rows: rows(), migrationPuts };
  }

  /**
   * The states' pools in the object's SQLite: a room of thousands of state
   * changes, ingested in stored batches behind a 4 KiB cache, has its
   * states' full pool segments as rows of `state_pools` (written as each
   * batch is stored); its image names them (a row it does not name is
   * deleted once the image is committed), and the room read back answers
   * `/state_ids` as the room that wrote them (building its states from the
   * rows).
   */
  async poolsCheck(fixture: { room_version: string; servers: Record<string, { verify_keys: Record<string, string> }>; events: { pdu: unknown }[] }) {
    const store = new api.DurableObjectStore(this.ctx.storage);
    const keys = ringOf(fixture);
    const origin = Object.keys(fixture.servers)[0];
    const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
    const open = (roomVersion?: string) => api.RoomEngine.open({ store, roomVersion: roomVersion as never, cacheBytes: 4096 });
    const engine = await open(fixture.room_version);
    for (let i = 0; i < pdus.length; i += 500) await engine.ingest(pdus.slice(i, i + 500), keys);
    const rows = () => [...this.ctx.storage.sql.exec("SELECT COUNT(*) AS n FROM state_pools")][0].n as number;
    const statePools = rows();
    if (statePools === 0) throw new Error("no rows of the states' pools");
    // A row no room names (a rebuilt room's, a write that failed halfway):
    // deleted once the image is committed (the SQL store lists its keys).
    this.ctx.storage.sql.exec("INSERT INTO state_pools (k, v) VALUES (?, ?)", "0".repeat(32), new Uint8Array([1, 2, 3]));
    await engine.saveImage();
    if (rows() !== statePools) throw new Error(`after the image: ${rows()} rows of the states' pools, not ${statePools}`);
    const ids = pdus.filter((_, n) => n % 211 === 0).map((pdu) => api.eventIdOf(pdu, fixture.room_version as never));
    const sample = ids.filter((id) => engine.hasEvent(id));
    const answers = (e: api.RoomEngine) => JSON.stringify(sample.map((id) => e.stateIds(origin, id)));
    const want = answers(engine);
    const again = await open();
    if (again.imageLag !== 0) throw new Error(`the reopened room replayed ${again.imageLag} records`);
    const got = answers(again);
    if (got !== want) {
      let at = 0;
      while (got[at] === want[at]) at++;
      throw new Error(`the room read back answers differently at ${at}: ${want.slice(Math.max(0, at - 200), at + 200)} vs ${got.slice(Math.max(0, at - 200), at + 200)}`);
    }
    return { events: again.eventCount, statePools, rowsAfter: rows(), sample: sample.length };
  }

  /**
   * Room images in the object's SQLite: after `saveImage`, a reopen reads
   * the image and replays only the records written after it, and answers
   * as the room that took them live; an image that cannot be read is
   * skipped (the log is replayed); after a rebuild the image is not used.
   */
  async imageCheck(fixture: { room_version: string; servers: Record<string, { verify_keys: Record<string, string> }>; events: { pdu: unknown }[] }) {
    const store = new api.DurableObjectStore(this.ctx.storage);
    const keys = ringOf(fixture);
    const origin = Object.keys(fixture.servers)[0];
    const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
    const counting = countingStore(store);
    const open = (roomVersion?: string) => api.RoomEngine.open({ store: counting as never, roomVersion: roomVersion as never, cacheBytes: 4096 });
    const engine = await open(fixture.room_version);
    const cut = Math.floor(pdus.length * 0.6);
    for (let i = 0; i < cut; i += 200) await engine.ingest(pdus.slice(i, Math.min(i + 200, cut)), keys);
    if (engine.imageLag === null || engine.imageLag <= 0) throw new Error(`imageLag before an image: ${engine.imageLag}`);
    const info = await engine.saveImage();
    if (engine.imageLag !== 0 || info.events !== engine.eventCount) throw new Error(`after saveImage: lag ${engine.imageLag}, ${JSON.stringify(info)}`);
    for (let i = cut; i < pdus.length; i += 200) await engine.ingest(pdus.slice(i, i + 200), keys);
    const after = engine.imageLag as number;
    // The room is big enough for a 4 KiB cache to page its blocks of
    // messages and its ID index's entries of settled messages (the sample
    // below looks messages up in the buckets).
    const rows = (t: string) => [...this.ctx.storage.sql.exec(`SELECT COUNT(*) AS n FROM ${t}`)][0].n as number;
    const paged = { ids: rows("ids"), blocks: rows("blocks"), idBuckets: rows("id_buckets") };
    if (paged.ids === 0 || paged.blocks === 0 || paged.idBuckets === 0) throw new Error(`rows of the paged tables: ${JSON.stringify(paged)}`);
    const ids = engine.forwardExtremities().concat(fixture.events.filter((_, n) => n % 97 === 0).map((e) => (e.pdu as { event_id?: string }).event_id ?? ""));
    const sample = [...new Set(ids)].filter((id) => id && engine.hasEvent(id));
    const answers = (e: api.RoomEngine) =>
      JSON.stringify({
        events: e.eventCount,
        forward: e.forwardExtremities().sort(),
        state: sample.map((id) => e.stateIds(origin, id)),
        // (the transaction's own origin_server_ts is the time of the answer)
        backfill: (e.backfill(origin, e.forwardExtremities(), 100).body as { pdus?: unknown }).pdus,
      });
    const want = answers(engine);
    const again = await open();
    if (counting.replayed !== after || again.imageLag !== after) throw new Error(`a reopen replayed ${counting.replayed} records (lag ${again.imageLag}), not the ${after} after the image`);
    const got = answers(again);
    if (got !== want) {
      let at = 0;
      while (got[at] === want[at]) at++;
      throw new Error(`the room read back from its image answers differently at ${at}: ${want.slice(Math.max(0, at - 200), at + 200)} vs ${got.slice(Math.max(0, at - 200), at + 200)}`);
    }
    const logLength = info.logLength + after;
    // An image that cannot be read: the log is replayed, same answers.
    this.ctx.storage.sql.exec("UPDATE image SET v = ? WHERE k != 'meta'", new Uint8Array([1, 2, 3]));
    const fallback = await open();
    if (counting.replayed !== logLength || fallback.imageLag !== logLength) throw new Error(`with a corrupt image, ${counting.replayed} of ${logLength} records were replayed`);
    if (answers(fallback) !== want) throw new Error("the room replayed past a corrupt image answers differently");
    // A new image, then a rebuild: the image predates the marker and is not used.
    await fallback.saveImage();
    await fallback.rebuild();
    const rebuilt = await open();
    if (counting.replayed !== logLength + 1) throw new Error(`after a rebuild, ${counting.replayed} of ${logLength + 1} records were replayed`);
    if (rebuilt.eventCount !== engine.eventCount) throw new Error("the rebuilt room lost events");
    // An image taken further than the log goes is not used: the log decides.
    const again2 = await rebuilt.saveImage();
    await this.ctx.storage.delete(`r:${String(again2.logLength - 1).padStart(12, "0")}`);
    const shorter = await open();
    if (shorter.imageLag !== again2.logLength - 1 || counting.replayed !== again2.logLength - 1) {
      throw new Error(`an image past the end of the log was used (lag ${shorter.imageLag}, ${counting.replayed} records replayed)`);
    }
    return { events: engine.eventCount, image: info, replayedAfterImage: after, paged };
  }
}

/** The fixture's keys pinned in a ring. */
function ringOf(fixture: { servers: Record<string, { verify_keys: Record<string, string> }> }) {
  const keys = new api.KeyRing();
  for (const [server, s] of Object.entries(fixture.servers)) for (const [id, k] of Object.entries(s.verify_keys)) keys.pin(server, id, k);
  return keys;
}

/** A DurableObjectStore whose loadParts counts the records it hands out. */
function countingStore(store: api.DurableObjectStore) {
  const c = {
    replayed: 0,
    load: () => store.load(),
    append: (r: never, m: never) => store.append(r, m),
    pages: store.pages,
    async loadParts(chunk?: number, opts?: { from?: number }) {
      const p = await store.loadParts(chunk, opts);
      c.replayed = p.head.length;
      const tail = p.tail;
      return {
        ...p,
        tail: (async function* () {
          for await (const part of tail) {
            c.replayed += part.length;
            yield part;
          }
        })(),
      };
    },
  };
  return c;
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method === "GET") return new Response("ready");
    const path = new URL(request.url).pathname;
    if (path === "/event-index") {
      const stub = env.INDEX.get(env.INDEX.idFromName(`index-${Date.now()}`)) as unknown as DurableObjectStub<EventIndexCheck>;
      return Response.json(await stub.check());
    }
    const fixture = await request.json();
    if (path === "/paged" || path === "/migration" || path === "/image" || path === "/pools") {
      const stub = env.SUITE.get(env.SUITE.idFromName(`${path}-${Date.now()}`)) as unknown as DurableObjectStub<ScratchStore>;
      try {
        const r =
          path === "/paged"
            ? await stub.pagedCheck(fixture as never)
            : path === "/image"
              ? await stub.imageCheck(fixture as never)
              : path === "/pools"
                ? await stub.poolsCheck(fixture as never)
                : await stub.migrationCheck(fixture as never);
        return Response.json({ ok: true, ...r });
      } catch (e) {
        return Response.json({ ok: false, error: String((e as Error)?.stack ?? e) });
      }
    }
    let n = 0;
    const stubs = new Map<object, DurableObjectStub<ScratchStore>>();
    // A store whose every call goes to a Durable Object: real storage, real RPC.
    const make = () => {
      const stub = env.SUITE.get(env.SUITE.idFromName(`store-${Date.now()}-${n++}`)) as unknown as DurableObjectStub<ScratchStore>;
      const store = { load: () => stub.load(), append: (r: unknown[], m: unknown) => stub.append(r, m) };
      stubs.set(store, stub);
      return store;
    };
    const reopen = (s: object) => {
      const stub = stubs.get(s)!;
      const again = { load: () => stub.load(), append: (r: unknown[], m: unknown) => stub.append(r, m) };
      stubs.set(again, stub);
      return again;
    };
    const breakNext = (s: object) => void stubs.get(s)!.breakNext();
    const results = [];
    for (const [name, fn] of storeSuite({ api, fixture, make, reopen, breakNext })) {
      try {
        await fn();
        results.push({ name, ok: true });
      } catch (e) {
        results.push({ name, ok: false, error: String((e as Error)?.stack ?? e) });
      }
    }
    return Response.json(results);
  },
};
