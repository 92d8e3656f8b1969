// A test-only Worker (worker/test/wrangler.jsonc): runs the store
// conformance suite of tests/js/store-suite.mjs against real Durable Object
// storage inside workerd. Never deployed.
import { DurableObject } from "cloudflare:workers";
import * as api from "../../pkg/workerd.js";
import { storeSuite } from "../../tests/js/store-suite.mjs";

interface Env {
  SUITE: DurableObjectNamespace;
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
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method === "GET") return new Response("ready");
    const fixture = await request.json();
    const path = new URL(request.url).pathname;
    if (path === "/paged" || path === "/migration") {
      const stub = env.SUITE.get(env.SUITE.idFromName(`${path}-${Date.now()}`)) as unknown as DurableObjectStub<ScratchStore>;
      try {
        const r = path === "/paged" ? await stub.pagedCheck(fixture as never) : await stub.migrationCheck(fixture as never);
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
