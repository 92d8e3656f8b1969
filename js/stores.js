// Room stores: an append-only log of records `{i, eventId, status, raw}` plus
// the room's `{roomVersion, roomId}`. Two calls, both asynchronous:
//
//   load()                 → { roomVersion?, roomId?, records: [...] } in order
//   append(records, meta)  → writes all records and the meta atomically, or
//                            rejects and writes nothing
//
// The engine replays records on open, so a store never interprets them.

import * as check from "./check.js";
import { RoomdagError } from "./common.js";

const metaOf = (meta) => ({ roomVersion: meta?.roomVersion, roomId: meta?.roomId ?? undefined });

/** Records in memory (the default; lost when the process ends). */
export class MemoryStore {
  #records = [];
  #meta = {};

  /** Every record, in arrival order, and the room's meta. */
  async load() {
    return { ...this.#meta, records: this.#records.slice() };
  }

  /** Appends records and sets the meta. */
  async append(records, meta) {
    this.#records.push(...records.map((r) => ({ ...r })));
    this.#meta = metaOf(meta);
  }
}

const DB_VERSION = 1;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/**
 * Records in IndexedDB (browsers; `fake-indexeddb` in Node). One database
 * holds many rooms: object store `records` keyed `[room, i]`, object store
 * `rooms` keyed by room. An append is one `readwrite` transaction over both,
 * resolved on `complete` and rejected on `error` or `abort`.
 */
export class IndexedDbStore {
  #db;
  #room;
  #keyRange;

  /**
   * @param {object} opts
   * @param {string} opts.room the room's key (its ID)
   * @param {string} [opts.database] database name (default "roomdag")
   * @param {IDBFactory} [opts.indexedDB] the factory (default `globalThis.indexedDB`)
   * @param {typeof IDBKeyRange} [opts.IDBKeyRange] its key-range class (default the global one)
   */
  constructor(opts) {
    check.object("IndexedDbStore", "options", opts, "an object {room, database?, indexedDB?, IDBKeyRange?}");
    const { room, database = "roomdag", indexedDB = globalThis.indexedDB, IDBKeyRange = globalThis.IDBKeyRange } = opts;
    check.name("IndexedDbStore", "room", room);
    check.name("IndexedDbStore", "database", database);
    if (!indexedDB || !IDBKeyRange) {
      throw check.typeError("IndexedDbStore", "indexedDB", "an IDBFactory (this runtime has no global indexedDB: pass one, e.g. from fake-indexeddb)", indexedDB);
    }
    check.methods("IndexedDbStore", "indexedDB", indexedDB, ["open"], "an IDBFactory");
    check.func("IndexedDbStore", "IDBKeyRange.bound", IDBKeyRange.bound);
    this.#room = room;
    this.#keyRange = IDBKeyRange;
    this.#db = IndexedDbStore.#open(indexedDB, database);
  }

  static #opened = new Map();

  static #open(factory, name) {
    const key = name;
    let p = IndexedDbStore.#opened.get(key);
    if (p && p.factory === factory) return p.db;
    const db = new Promise((resolve, reject) => {
      const req = factory.open(name, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains("records")) db.createObjectStore("records");
        if (!db.objectStoreNames.contains("rooms")) db.createObjectStore("rooms");
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error("IndexedDbStore: database upgrade blocked"));
    });
    IndexedDbStore.#opened.set(key, { factory, db });
    return db;
  }

  /** Closes the shared connection (tests; a later store reopens it). */
  static async closeAll() {
    for (const { db } of IndexedDbStore.#opened.values()) (await db.catch(() => undefined))?.close();
    IndexedDbStore.#opened.clear();
  }

  async load() {
    const db = await this.#db;
    const tx = db.transaction(["records", "rooms"], "readonly");
    const range = this.#keyRange.bound([this.#room, 0], [this.#room, Number.MAX_SAFE_INTEGER]);
    const [records, meta] = await Promise.all([
      request(tx.objectStore("records").getAll(range)),
      request(tx.objectStore("rooms").get(this.#room)),
    ]);
    return { ...(meta ?? {}), records };
  }

  async append(records, meta) {
    const db = await this.#db;
    await new Promise((resolve, reject) => {
      const tx = db.transaction(["records", "rooms"], "readwrite");
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDbStore: transaction error"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDbStore: transaction aborted"));
      try {
        const rs = tx.objectStore("records");
        for (const r of records) rs.put(r, [this.#room, r.i]);
        tx.objectStore("rooms").put(metaOf(meta), this.#room);
      } catch (e) {
        // A put that throws (a bad key, a value that cannot be cloned) must
        // not leave the earlier puts of the batch to commit.
        try {
          tx.abort();
        } catch {
          /* already finished */
        }
        reject(e);
      }
    });
  }
}

/**
 * A page store over a Durable Object's SQLite (`ctx.storage.sql`): one table
 * per engine table, rows keyed by text. Synchronous, like `sql.exec`. The
 * rows written while a batch is ingested commit with the batch's records (a
 * Durable Object commits the writes of one turn together), so once a room's
 * rows were written for every record (`markRowsComplete`, after the first
 * restore of a room stored before it had pages), a restore trusts them
 * (`rowsComplete`) and writes none. A put that finds the same row writes
 * nothing.
 */
export function sqlPages(sql) {
  if (!sql || typeof sql.exec !== "function") return null;
  sql.exec("CREATE TABLE IF NOT EXISTS pdu (event_id TEXT PRIMARY KEY, json TEXT NOT NULL)");
  sql.exec("CREATE TABLE IF NOT EXISTS pdu_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
  // The room's image (the engine's tables, read back instead of replaying
  // the log): binary parts of at most 1 MiB and a JSON meta row, written
  // straight away (an image is written in one turn, outside any batch).
  sql.exec("CREATE TABLE IF NOT EXISTS image (k TEXT PRIMARY KEY, v BLOB NOT NULL)");
  // The event IDs of each full block of the engine's event table (text,
  // keyed by a hash of the row: a row is never overwritten with other IDs),
  // written straight away like the image: a block's row is written once its
  // batch is stored, and read back instead of holding its IDs in memory.
  sql.exec("CREATE TABLE IF NOT EXISTS ids (k TEXT PRIMARY KEY, v TEXT NOT NULL)");
  // Each full block of the engine's event table, packed (binary, keyed by a
  // hash of the row, like ids): written once its batch is stored, and read
  // back instead of holding the records of its messages in memory.
  sql.exec("CREATE TABLE IF NOT EXISTS blocks (k TEXT PRIMARY KEY, v BLOB NOT NULL)");
  // The event ID index's entries of settled messages, in buckets by hash
  // (binary, keyed by a hash of the row, like ids): rewritten as the room
  // grows, read back to find a message by ID.
  sql.exec("CREATE TABLE IF NOT EXISTS id_buckets (k TEXT PRIMARY KEY, v BLOB NOT NULL)");
  // Segments of the states' pools (the state chunks' entries, the states'
  // chunk lists; binary, keyed by a hash of the row, like ids): written once
  // full and stored, read back to build a state.
  sql.exec("CREATE TABLE IF NOT EXISTS state_pools (k TEXT PRIMARY KEY, v BLOB NOT NULL)");
  const binary = (t) => t === "image" || t === "blocks" || t === "id_buckets" || t === "state_pools";
  const table = (t) => {
    if (t !== "pdu" && t !== "ids" && !binary(t)) throw new RoomdagError("M_UNKNOWN", `page store: no table ${JSON.stringify(t)}`);
    return t;
  };
  const bytes = (v) => (v instanceof Uint8Array ? v : typeof v === "string" ? new TextEncoder().encode(v) : new Uint8Array(v));
  // Puts are buffered and written in multi-row INSERTs by flush() (one
  // statement per 50 rows: a statement per row cost a fifth of an import).
  // RoomEngine flushes after each batch, before appending its records, so
  // rows and records commit together; a write that fails is reported by that
  // flush (the batch is then undone), never lost.
  const ROWS_PER_INSERT = 50;
  const MAX_PENDING_ROWS = 1000;
  let pending = [];
  let failed = null;
  const insert = (n) => `INSERT OR REPLACE INTO pdu (event_id, json) VALUES ${Array(n).fill("(?, ?)").join(", ")}`;
  const write = () => {
    try {
      while (pending.length > 0) {
        const rows = pending.splice(0, 2 * ROWS_PER_INSERT);
        sql.exec(insert(rows.length / 2), ...rows);
      }
    } catch (e) {
      pending = [];
      failed ??= e;
    }
  };
  return {
    flush() {
      write();
      if (failed) {
        const e = failed;
        failed = null;
        throw e;
      }
    },
    rowsComplete() {
      for (const _ of sql.exec("SELECT v FROM pdu_meta WHERE k = 'complete'")) return true;
      return false;
    },
    markRowsComplete() {
      sql.exec("INSERT OR IGNORE INTO pdu_meta (k, v) VALUES ('complete', '1')");
    },
    get(t, key) {
      table(t);
      if (binary(t)) {
        for (const row of sql.exec(`SELECT v FROM ${t} WHERE k = ?`, key)) return bytes(row.v);
        return null;
      }
      if (t === "ids") {
        for (const row of sql.exec("SELECT v FROM ids WHERE k = ?", key)) return row.v;
        return null;
      }
      write();
      if (failed) throw failed;
      for (const row of sql.exec("SELECT json FROM pdu WHERE event_id = ?", key)) return row.json;
      return null;
    },
    /** The rows of `keys` that exist, as a Map key → text (one query; at most 100 keys). */
    some(t, keys) {
      table(t);
      write();
      if (failed) throw failed;
      const rows = new Map();
      if (keys.length === 0) return rows;
      for (const row of sql.exec(`SELECT event_id, json FROM pdu WHERE event_id IN (${keys.map(() => "?").join(", ")})`, ...keys)) rows.set(row.event_id, row.json);
      return rows;
    },
    put(t, key, text) {
      table(t);
      if (binary(t)) {
        sql.exec(`INSERT OR REPLACE INTO ${t} (k, v) VALUES (?, ?)`, key, bytes(text));
        return;
      }
      if (t === "ids") {
        sql.exec("INSERT OR REPLACE INTO ids (k, v) VALUES (?, ?)", key, text);
        return;
      }
      pending.push(key, text);
      if (pending.length >= 2 * MAX_PENDING_ROWS) write();
    },
    /** The keys of a table of rows named by their hash (ids, blocks, state_pools…); null for the others. */
    keys(t) {
      table(t);
      if (t !== "ids" && (!binary(t) || t === "image")) return null;
      return [...sql.exec(`SELECT k FROM ${t}`)].map((row) => row.k);
    },
    delete(t, key) {
      table(t);
      if (t === "ids" || binary(t)) {
        sql.exec(`DELETE FROM ${t} WHERE k = ?`, key);
        return;
      }
      write();
      sql.exec("DELETE FROM pdu WHERE event_id = ?", key);
    },
  };
}

/** A paged record's PDU as read back, or a clear error when the page store lacks it. */
function rawOf(record, raw) {
  if (typeof raw !== "string") throw new RoomdagError("M_UNKNOWN", `DurableObjectStore: the PDU of record ${record.i} (${record.eventId}) is missing from the page store`);
  return raw;
}

/** `records` as an async iterable of arrays of at most `size`. */
async function* chunksOf(records, size) {
  for (let i = 0; i < records.length; i += size) yield records.slice(i, i + size);
}

/** The key saying the rebuild markers' positions are indexed (`m:…`). */
const MARKERS_INDEXED = "markers-indexed";
/** A rebuild marker's position, sorting in log order. */
const markerKey = (i) => `m:${String(i).padStart(12, "0")}`;

/** A record without its PDU text. */
function withoutRaw(r) {
  const { raw: _, ...rest } = r;
  return rest;
}

/** Keys sort in arrival order: zero-padded positions. */
const recordKey = (i) => `r:${String(i).padStart(12, "0")}`;
/** Durable Object storage writes at most this many keys atomically in one `put`. */
const DO_MAX_KEYS_PER_PUT = 128;

/**
 * Records in a Durable Object's storage (`ctx.storage`). The room's Durable
 * Object is its single writer; an append of up to 127 records is one atomic
 * `put`, larger ones run inside `storage.transaction`.
 */
export class DurableObjectStore {
  #storage;
  #pages;

  /** @param {DurableObjectStorage} storage `ctx.storage` of the room's Durable Object */
  constructor(storage) {
    this.#storage = check.methods("DurableObjectStore", "storage", storage, ["get", "list", "put", "transaction"], "a Durable Object's storage (ctx.storage)");
  }

  /**
   * The page store of the room's PDU texts in the object's SQLite database
   * (`ctx.storage.sql`), or null for an object without one (a key-value
   * Durable Object, a test double). `RoomEngine.open` uses it: the texts
   * then live in SQLite, not in the object's memory.
   */
  get pages() {
    if (this.#pages === undefined) this.#pages = sqlPages(this.#storage.sql);
    return this.#pages;
  }

  /** Records whose PDU is in `pages` are kept without it (and given it back on load). */
  get pagedRecordsWithoutRaw() {
    return true;
  }

  async load() {
    const meta = (await this.#storage.get("meta")) ?? {};
    const list = await this.#storage.list({ prefix: "r:" });
    return { ...meta, records: this.#withRaw([...list.values()]) };
  }

  /**
   * The log in parts, so that a restore never holds all of it: `head`, the
   * records before the last rebuild marker (placed afresh: all at once), and
   * `tail`, the records from that marker on, as an async iterable of arrays
   * of at most `chunk` records read from storage one array at a time. The
   * markers' positions are kept under their own keys (`m:…`); an object
   * written before they were is loaded whole once and its markers indexed.
   */
  async loadParts(chunk = 1000, { from } = {}) {
    const meta = (await this.#storage.get("meta")) ?? {};
    if ((await this.#storage.get(MARKERS_INDEXED)) !== true) {
      const { records } = await this.load();
      const keys = { [MARKERS_INDEXED]: true };
      for (const r of records) if (r?.rebuild === true) keys[markerKey(r.i)] = true;
      await this.#putAll(keys);
      const at = records.findLastIndex((r) => r?.rebuild === true);
      const tail = records.slice(Math.max(at, 0));
      return { ...meta, head: at < 0 ? [] : records.slice(0, at), tail: chunksOf(tail, chunk) };
    }
    const markers = [...(await this.#storage.list({ prefix: "m:" })).keys()];
    const last = markers.length === 0 ? -1 : Number(markers.at(-1).slice(2));
    // From a room image taken at `from`: only the records after it, unless
    // a rebuild came later (a rebuild places the whole log afresh).
    // The log is the source of truth: an image taken further than the log
    // goes (its records lost) is not used.
    const resume = Number.isSafeInteger(from) && from > last && (from === 0 || (await this.#storage.get(recordKey(from - 1))) !== undefined);
    const head = resume || last < 0 ? [] : this.#withRaw([...(await this.#storage.list({ prefix: "r:", end: recordKey(last) })).values()]);
    const storage = this.#storage;
    const withRaw = (records) => this.#withRaw(records);
    async function* tail() {
      let start = recordKey(resume ? from : Math.max(last, 0));
      for (;;) {
        const part = [...(await storage.list({ prefix: "r:", start, limit: chunk })).values()];
        if (part.length === 0) return;
        yield withRaw(part);
        if (part.length < chunk) return;
        start = recordKey(part.at(-1).i + 1);
      }
    }
    return { ...meta, head, tail: tail(), ...(resume ? { from } : {}) };
  }

  /**
   * Fills in the PDUs of paged records (which carry none) from the page
   * store, one query per 100 (a query per record cost a third of a cold start).
   */
  #withRaw(records) {
    const bare = records.filter((r) => r?.paged === true && typeof r.raw !== "string");
    for (let k = 0; k < bare.length; k += 100) {
      const part = bare.slice(k, k + 100);
      const rows = this.pages?.some("pdu", part.map((r) => r.eventId)) ?? new Map();
      for (const r of part) r.raw = rawOf(r, rows.get(r.eventId));
    }
    return records;
  }

  async #putAll(entries) {
    const keys = Object.keys(entries);
    if (keys.length <= DO_MAX_KEYS_PER_PUT) return this.#storage.put(entries);
    await this.#storage.transaction(async (txn) => {
      for (let k = 0; k < keys.length; k += DO_MAX_KEYS_PER_PUT) {
        const part = {};
        for (const key of keys.slice(k, k + DO_MAX_KEYS_PER_PUT)) part[key] = entries[key];
        await txn.put(part);
      }
    });
  }

  async append(records, meta) {
    const entries = { meta: metaOf(meta) };
    // A rebuild marker's position is kept under its own key too (loadParts).
    for (const r of records) if (r?.rebuild === true) entries[markerKey(r.i)] = true;
    // A record marked `paged` has its PDU in this object's page store (the
    // engine wrote it there in the same turn): keep it once, there.
    const paged = this.pages !== null;
    for (const r of records) entries[recordKey(r.i)] = paged && r.paged === true ? withoutRaw(r) : r;
    await this.#putAll(entries);
  }
}
