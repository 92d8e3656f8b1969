// Rooms on stores: RoomEngine (one room, single writer, atomic batches) and
// RoomDirectory (the rooms a server hosts).
import { wasm, call, ensureReady, json, toText, RoomdagError } from "./common.js";
import * as check from "./check.js";

/** Only `RoomEngine.open` and `roomFromFixture` construct engines. */
const CONSTRUCT = Symbol("RoomEngine");

/** An engine over a core room (internal: `roomFromFixture`). */
export function engineOver(room, store) {
  return new RoomEngine(CONSTRUCT, room, store);
}

/**
 * Rejected events a room stores from one origin per window: past either
 * bound, the origin's further PDUs for the room are refused (not stored,
 * answered with an error) until the window ends. Rejected events are stored
 * (the spec keeps them), so without a bound one server could grow a room
 * without limit. `origins`: how many origins a room tracks at once.
 */
export const REJECTED_PER_ORIGIN = { events: 100, bytes: 1024 * 1024, windowMs: 10 * 60 * 1000, origins: 1000 };

/** Counts rejected events per origin in fixed windows (see `REJECTED_PER_ORIGIN`). */
export class RejectionLimiter {
  #limits;
  #byOrigin = new Map();

  constructor(limits = REJECTED_PER_ORIGIN) {
    this.#limits = limits;
  }

  /** Why PDUs from `origin` are refused now, or `null`. */
  refusal(origin, now) {
    const e = this.#byOrigin.get(origin);
    if (!e || now - e.start >= this.#limits.windowMs) return null;
    const { events, bytes, windowMs } = this.#limits;
    if (e.events < events && e.bytes < bytes) return null;
    const wait = Math.ceil((e.start + windowMs - now) / 1000);
    return `Too many rejected events from ${origin} in this room (at most ${events} events or ${bytes} bytes per ${windowMs / 60_000} minutes); PDUs refused for ${wait} s`;
  }

  /** Counts one rejected event of `bytes` from `origin`. */
  count(origin, bytes, now) {
    let e = this.#byOrigin.get(origin);
    if (!e || now - e.start >= this.#limits.windowMs) {
      this.#byOrigin.delete(origin);
      e = { start: now, events: 0, bytes: 0 };
      this.#byOrigin.set(origin, e);
    }
    e.events += 1;
    e.bytes += bytes;
    if (this.#byOrigin.size > this.#limits.origins) {
      for (const [o, x] of this.#byOrigin) if (now - x.start >= this.#limits.windowMs) this.#byOrigin.delete(o);
      // Still too many: the oldest windows go first.
      for (const o of this.#byOrigin.keys()) {
        if (this.#byOrigin.size <= this.#limits.origins) break;
        this.#byOrigin.delete(o);
      }
    }
  }
}

/**
 * One room backed by a store. Ingests are serialised (single writer) and
 * atomic: a batch whose records cannot be written is undone in memory too.
 */
export class RoomEngine {
  #room;
  #store;
  #queue = Promise.resolve();
  #rejections = new RejectionLimiter();
  /** Records in the store's log (the next record's position). */
  #logLength;
  /** Where the PDU texts live, `{pages, cacheBytes}`, or null (in wasm memory). */
  #paging;
  /** The log position of the room's current image, or null when it has none usable. */
  #imageAt;

  /** @internal use `RoomEngine.open` */
  constructor(token, room, store, logLength = 0, paging = null, imageAt = null) {
    if (token !== CONSTRUCT) {
      const e = new TypeError("RoomEngine: not constructed with `new`; use `await RoomEngine.open({ store, roomVersion })`");
      e.code = "ERR_ILLEGAL_CONSTRUCTOR";
      throw e;
    }
    this.#room = room;
    this.#store = store;
    this.#logLength = logLength;
    this.#paging = paging;
    this.#imageAt = imageAt;
  }

  /**
   * Opens a room from its store, replaying its log of records (signatures
   * are not verified again; see the core's `placement` module for how
   * outliers, history and rebuild markers replay). A new, empty room needs
   * `roomVersion`; for a stored room, a `roomVersion` other than the stored
   * one is an error.
   *
   * The PDU texts (about the size of the room's raw PDUs) are kept in a
   * page store instead of wasm memory when there is one: `pages` (an object
   * with synchronous `get(table, key)`, `put(table, key, value)`,
   * `delete(table, key)`; values are text, or a `Uint8Array` for the
   * `image`, `blocks`, `id_buckets` and `state_pools` tables), else the store's own `pages` (a
   * `DurableObjectStore` over a SQLite-backed Durable Object has one);
   * `pages: null` keeps them in memory. `cacheBytes` bounds the texts held
   * in memory (default 8 MiB).
   */
  static async open(opts) {
    const where = "RoomEngine.open";
    ensureReady();
    check.object(where, "options", opts, "an object {store, roomVersion?, pages?, cacheBytes?}");
    const { store, roomVersion } = opts;
    check.methods(where, "store", store, ["load", "append"], "a room store");
    if (roomVersion !== undefined) check.roomVersion(where, "roomVersion", roomVersion);
    const paging = pagingOf(where, opts, store);
    // A room image (its engine tables, written into the store's own page
    // store by `saveImage`) is read back instead of replaying the log up to
    // where it was taken; only the records after it are replayed.
    const imaging = paging !== null && paging.pages === store.pages && typeof store.loadParts === "function";
    const image = imaging ? imageInfoOf(paging.pages) : null;
    // A store that gives its log in parts (`loadParts`: the records before
    // the last rebuild marker, then the rest in chunks) is restored without
    // ever holding the whole log.
    let parts = typeof store.loadParts === "function" ? await store.loadParts(RESTORE_CHUNK, image ? { from: image.logLength } : undefined) : null;
    const loaded = parts ? { ...parts, records: parts.head } : await store.load();
    if (loaded === null || typeof loaded !== "object" || !Array.isArray(loaded.records)) {
      throw check.typeError(where, "store.load()", "a promise of {roomVersion?, roomId?, records: [...]}", loaded);
    }
    if (loaded.roomVersion !== undefined && loaded.roomVersion !== null) check.string(where, "store.load().roomVersion", loaded.roomVersion);
    if (loaded.roomVersion && roomVersion !== undefined && loaded.roomVersion !== roomVersion) {
      const room = loaded.roomId ? ` ${loaded.roomId}` : "";
      throw check.invalid(where, "roomVersion", `is ${JSON.stringify(roomVersion)}, but the store holds room${room} of version ${JSON.stringify(loaded.roomVersion)}; leave roomVersion out to open the stored room`);
    }
    const version = loaded.roomVersion ?? roomVersion;
    if (!version) throw new RoomdagError("M_NOT_FOUND", `${where}: no room in the store and no roomVersion given to create one`);
    checkRecords(where, loaded.records);
    let room;
    let length = logLength(loaded.records);
    let imageAt = null;
    if (parts) {
      let restoring = null;
      if (image && parts.from === image.logLength && image.roomVersion === version) {
        try {
          restoring = wasm.Room.openImage(paging.pages, paging.cacheBytes).restoreResume(paging.pages.rowsComplete?.() === true);
          length = image.logLength;
          imageAt = image.logLength;
        } catch (e) {
          // The log is the source of truth: an image that cannot be read
          // is replaced by the next one, and the room replays its log.
          console.warn(`${where}: the room's image could not be read (${e?.message ?? e}); replaying its log`);
          parts = await store.loadParts(RESTORE_CHUNK);
          checkRecords(where, parts.head);
          length = logLength(parts.head);
        }
      }
      restoring ??= call(`${where}: the stored room could not be restored`, "M_UNKNOWN", () => startRestore(version, parts.head, paging));
      try {
        for await (const chunk of parts.tail) {
          if (!Array.isArray(chunk)) throw check.typeError(where, "store.loadParts().tail", "an async iterable of arrays of records", chunk);
          checkRecords(where, chunk);
          call(`${where}: the stored room could not be restored`, "M_UNKNOWN", () => restoring.push(chunk));
          if (chunk.length > 0) length = Math.max(length, (chunk.at(-1).i ?? length + chunk.length - 1) + 1);
        }
        room = call(`${where}: the stored room could not be restored`, "M_UNKNOWN", () => restoring.finish());
      } finally {
        restoring.free?.();
      }
    } else if (loaded.records.length > 0) {
      room = restoreRoom(version, loaded.records, paging);
    } else {
      room = call(`${where}: the store's roomVersion`, "M_UNSUPPORTED_ROOM_VERSION", () => new wasm.Room(version));
      if (paging) call(`${where}: pages`, "M_INVALID_PARAM", () => room.setPages(paging.pages, paging.cacheBytes));
    }
    // Every record's row is in the page store now (written by this restore,
    // or found there), and later rows are written with their records.
    if (paging) {
      call(`${where}: pages`, "M_UNKNOWN", () => paging.pages.flush?.());
      paging.pages.markRowsComplete?.();
    }
    if (imaging && imageAt === null) imageAt = 0;
    return new RoomEngine(CONSTRUCT, room, store, length, paging, imageAt);
  }

  /**
   * The page cache of the PDU texts (`{bytes, capacity, rows, hits,
   * misses}`), or null when they are held in wasm memory.
   */
  get pageStats() {
    return json(this.#room.pageStats());
  }

  /**
   * Records in the log after the room's image (what a restart replays), or
   * null when the room keeps no image (its PDUs are not in its store's own
   * page store). A host calls `saveImage` when this grows.
   */
  get imageLag() {
    return this.#imageAt === null ? null : this.#logLength - this.#imageAt;
  }

  /**
   * Writes the room's image (its engine tables) into its store's page store,
   * replacing the previous one, between batches: a restart then reads it
   * back and replays only the records written after it, instead of the
   * whole log. Resolves to `{format, generation, parts, bytes, logLength,
   * events, roomVersion}`.
   */
  saveImage() {
    return this.#serialise(async () => {
      if (this.#imageAt === null) throw new RoomdagError("M_UNKNOWN", "RoomEngine.saveImage: this room keeps no image (its PDUs are not in its store's page store)");
      const info = json(call("RoomEngine.saveImage", "M_UNKNOWN", () => this.#room.saveImage(this.#logLength)));
      this.#imageAt = info.logLength;
      return info;
    });
  }

  /** The room ID (once the create event is stored). */
  get roomId() {
    return this.#room.roomId ?? null;
  }
  /** The room version. */
  get roomVersion() {
    return this.#room.roomVersion;
  }
  /** Number of stored events. */
  get eventCount() {
    return this.#room.eventCount;
  }
  /** The store. */
  get store() {
    return this.#store;
  }

  #serialise(task) {
    const run = this.#queue.then(task, task);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Receives PDUs (objects or JSON text) in order; returns one outcome per
   * PDU. The stored ones are written to the store as one atomic batch.
   * With `origin` (the server that sent them), that origin's rejected
   * events are bounded (`REJECTED_PER_ORIGIN`): past the bound its PDUs are
   * refused — outcome `dropped`, stage `limit` — and nothing is stored.
   */
  ingest(pdus, keyRing, { origin, now = Date.now() } = {}) {
    try {
      check.pdus("RoomEngine.ingest", "pdus", pdus);
      check.keyRing("RoomEngine.ingest", "keyRing", keyRing);
      if (origin !== undefined) check.name("RoomEngine.ingest", "origin", origin);
    } catch (e) {
      return Promise.reject(e);
    }
    const items = pdus.map((pdu) => ({ pdu }));
    return this.#batch((room) => this.#ingestRuns(room, items, keyRing, origin, now));
  }

  /**
   * Receives PDUs placed as each says, as one atomic batch: `{pdu, placement}`
   * with placement `"timeline"` (live: its prev events must be placed),
   * `"history"` (backfilled or fetched missing events: kept pending until a
   * rebuild when its prev events are not placed), `"outlier"` (state or
   * auth chain), or `{pdu, state: [eventId…]}` (a timeline event whose state
   * before comes from a verified remote answer). Returns one outcome each.
   * With `origin` (the server that pushed them), its rejected events are
   * bounded as in `ingest`.
   */
  ingestPlaced(items, keyRing, { origin, now = Date.now() } = {}) {
    try {
      checkPlaced("RoomEngine.ingestPlaced", items);
      check.keyRing("RoomEngine.ingestPlaced", "keyRing", keyRing);
      if (origin !== undefined) check.name("RoomEngine.ingestPlaced", "origin", origin);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#batch((room) => this.#ingestRuns(room, items, keyRing, origin, now));
  }

  /** Runs `work(room)` as one batch: its records are appended atomically, or it is undone. */
  #batch(work) {
    return this.#serialise(async () => {
      this.#room.begin();
      let outcomes;
      try {
        outcomes = work(this.#room);
      } catch (e) {
        this.#room.rollback();
        throw e;
      }
      // Buffered page rows are written now, in the same turn as the records.
      try {
        this.#paging?.pages.flush?.();
      } catch (e) {
        this.#room.rollback();
        throw new RoomdagError("M_UNKNOWN", `page store write failed; the batch was undone: ${e?.message ?? e}`, e);
      }
      // A stored event's PDU is in the store's own page store now (flushed
      // above, committed with these records): its record is marked `paged`,
      // and comes without the PDU to a store that keeps it so (the PDU is
      // then not copied out of wasm and parsed only to be dropped).
      const shared = Boolean(this.#paging && this.#paging.pages === this.#store.pages);
      const records = json(this.#room.takeRecords(this.#logLength, shared && this.#store.pagedRecordsWithoutRaw === true));
      if (shared) for (const r of records) if (r.status === "accepted" || r.status === "rejected") r.paged = true;
      if (records.length > 0) {
        try {
          await this.#store.append(records, { roomVersion: this.roomVersion, roomId: this.roomId });
        } catch (e) {
          this.#room.rollback();
          throw new RoomdagError("M_UNKNOWN", `store write failed; the batch was undone: ${e?.message ?? e}`, e);
        }
        this.#logLength += records.length;
      }
      this.#room.commit();
      return outcomes;
    });
  }

  /**
   * Ingests `items` (`{pdu, placement?}` or `{pdu, state}`) in order. Runs of
   * PDUs with the same placement go to the engine together (signatures
   * checked in batches). With `origin`, its bound on rejected events holds
   * (`REJECTED_PER_ORIGIN`): a run stops right after a rejected PDU, which is
   * counted before the rest are looked at, and once `origin` is past its
   * bound its PDUs are refused — dropped, stage `limit`, nothing stored.
   */
  #ingestRuns(room, items, keyRing, origin, now) {
    const bounded = origin !== undefined;
    const out = [];
    let i = 0;
    const done = (o, raw) => {
      if (bounded && o.status === "rejected") this.#rejections.count(origin, utf8Length(raw), now);
      out.push(o);
      i++;
    };
    while (i < items.length) {
      const refusal = bounded ? this.#rejections.refusal(origin, now) : null;
      if (refusal) {
        out.push(this.#refused(toText(items[i].pdu), refusal));
        i++;
        continue;
      }
      if (items[i].state) {
        const raw = toText(items[i].pdu);
        done(json(room.ingestWithState(raw, items[i].state, keyRing)), raw);
        continue;
      }
      const placement = items[i].placement ?? "timeline";
      let end = i + 1;
      while (end < items.length && !items[end].state && (items[end].placement ?? "timeline") === placement) end++;
      const texts = items.slice(i, end).map((it) => toText(it.pdu));
      const outcomes = json(room.ingestAs(texts, placement, keyRing, bounded));
      outcomes.forEach((o, k) => done(o, texts[k]));
    }
    return out;
  }

  /** The outcome of a PDU refused because its sender is past its bound: dropped, stage `limit`, nothing stored. */
  #refused(raw, reason) {
    let eventId = null;
    try {
      eventId = wasm.pduEventId(raw, this.roomVersion);
    } catch {
      /* unparseable: no ID */
    }
    return { eventId, status: "dropped", stage: "limit", reason };
  }

  /** Why PDUs from `origin` are refused now (past its bound of rejected events, `REJECTED_PER_ORIGIN`), or `null`. */
  rejectionRefusal(origin, now = Date.now()) {
    return this.#rejections.refusal(origin, now);
  }

  /**
   * Whether PDUs pushed by `origin` are taken, before any work on them: the
   * room's server ACL (`aclAllows`), then the origin's bound of rejected
   * events (`refusal`: why it is refused, or `null`). One call, for a room
   * behind an RPC (a Durable Object).
   */
  admission(origin, now = Date.now()) {
    check.string("RoomEngine.admission", "origin", origin);
    return { aclAllows: this.#room.aclAllows(origin), refusal: this.#rejections.refusal(origin, now) };
  }

  /**
   * Whether `origin` may read the room's state (joined, then the ACL):
   * `null`, or the error answer `{status, body}`.
   */
  stateAccess(origin) {
    return json(this.#room.stateAccess(origin));
  }

  /**
   * Places every stored event afresh: history events whose prev events are
   * now known join the DAG, and states are computed from prev events where
   * they are known. The room is restored from its log plus a rebuild marker,
   * then the marker is appended; on any failure the room stays as it was.
   */
  rebuild() {
    return this.#serialise(async () => {
      const loaded = await this.#store.load();
      const marker = { i: logLength(loaded.records), rebuild: true };
      const next = call("RoomEngine.rebuild", "M_UNKNOWN", () => restoreRoom(this.roomVersion, [...loaded.records, marker], this.#paging));
      call("RoomEngine.rebuild: pages", "M_UNKNOWN", () => this.#paging?.pages.flush?.());
      try {
        await this.#store.append([marker], { roomVersion: this.roomVersion, roomId: next.roomId ?? this.roomId });
      } catch (e) {
        next.free?.();
        throw new RoomdagError("M_UNKNOWN", `store write failed; the rebuild was not applied: ${e?.message ?? e}`, e);
      }
      const old = this.#room;
      this.#room = next;
      this.#logLength = marker.i + 1;
      // The image predates the marker: a restart would place the log afresh.
      if (this.#imageAt !== null) this.#imageAt = 0;
      old.free?.();
    });
  }

  /** The backward extremities `[[eventId, depth], …]`, newest gaps first: what to ask `/backfill` for. */
  backwardExtremities() {
    return json(this.#room.backwardExtremities());
  }
  /** History events waiting for a rebuild to place them. */
  get pendingCount() {
    return this.#room.pendingCount;
  }
  /** Whether a stored event is an outlier (`undefined` if it is not stored). */
  isOutlier(eventId) {
    check.string("RoomEngine.isOutlier", "eventId", eventId);
    return this.#room.isOutlier(eventId);
  }
  /** History events logged before their auth events (placed by a rebuild once those are stored). */
  get deferredCount() {
    return this.#room.deferredCount;
  }
  /** Auth events that deferred history events wait for and no one has sent. */
  missingAuthEvents() {
    return this.#room.missingAuthEvents();
  }
  /** A PDU's prev events that are not placed in the timeline here. */
  unplacedPrevEvents(pdu) {
    return this.#room.unplacedPrevEvents(toText(pdu));
  }
  /** Whether `server` has a joined member in the current state. */
  serverInRoom(server) {
    return call("RoomEngine.serverInRoom", "M_UNKNOWN", () => this.#room.serverInRoom(server));
  }
  /** The forward extremities (event IDs). */
  forwardExtremities() {
    return this.#room.forwardExtremities();
  }
  /** The least depth of the timeline. */
  get minDepth() {
    return this.#room.minDepth;
  }
  /** The servers with a joined member, by when they joined, without `except`. */
  serversInRoomOrdered(except) {
    return call("RoomEngine.serversInRoomOrdered", "M_UNKNOWN", () => this.#room.serversInRoomOrdered(except ?? ""));
  }

  /** Answers a room federation query for an authenticated origin: `{status, body}`. */
  query(method, target, body, origin, serverName, nowMs = Date.now()) {
    const where = "RoomEngine.query";
    check.string(where, "method", method);
    check.string(where, "target", target);
    if (body !== undefined && body !== null) check.pdu(where, "body", body);
    check.string(where, "origin", origin);
    check.string(where, "serverName", serverName);
    check.number(where, "nowMs", nowMs);
    const text = body === undefined || body === null ? undefined : toText(body);
    return json(this.#room.federationQuery(method, target, text, origin, serverName, nowMs));
  }

  /** `/state_ids` of an event, as `origin` would get it. */
  stateIds(origin, eventId) {
    strings("RoomEngine.stateIds", { origin, eventId });
    return this.#q("GET", `state_ids/${enc(this.roomId)}?event_id=${enc(eventId)}`, undefined, origin);
  }
  /** `/state` of an event (full PDUs). */
  state(origin, eventId) {
    strings("RoomEngine.state", { origin, eventId });
    return this.#q("GET", `state/${enc(this.roomId)}?event_id=${enc(eventId)}`, undefined, origin);
  }
  /** `/backfill` from `v` (event IDs), at most `limit` events. */
  backfill(origin, v, limit) {
    const where = "RoomEngine.backfill";
    check.string(where, "origin", origin);
    check.stringArray(where, "v", v, typeof v === "string" ? "For one event, pass [eventId]" : undefined);
    check.number(where, "limit", limit);
    const qs = v.map((e) => `v=${enc(e)}`).join("&");
    return this.#q("GET", `backfill/${enc(this.roomId)}?${qs}&limit=${limit}`, undefined, origin);
  }
  /** `/get_missing_events`. */
  getMissingEvents(origin, request) {
    const where = "RoomEngine.getMissingEvents";
    check.string(where, "origin", origin);
    check.object(where, "request", request, "an object {earliestEvents, latestEvents, limit?, minDepth?}");
    const { earliestEvents, latestEvents, limit, minDepth } = request;
    check.stringArray(where, "earliestEvents", earliestEvents);
    check.stringArray(where, "latestEvents", latestEvents);
    if (limit !== undefined) check.number(where, "limit", limit);
    if (minDepth !== undefined) check.number(where, "minDepth", minDepth);
    const body = { earliest_events: earliestEvents, latest_events: latestEvents };
    if (limit !== undefined) body.limit = limit;
    if (minDepth !== undefined) body.min_depth = minDepth;
    return this.#q("POST", `get_missing_events/${enc(this.roomId)}`, body, origin);
  }
  /** `/timestamp_to_event`. */
  timestampToEvent(origin, ts, dir) {
    const where = "RoomEngine.timestampToEvent";
    check.string(where, "origin", origin);
    check.number(where, "ts", ts);
    if (dir !== "f" && dir !== "b") throw check.typeError(where, "dir", '"f" or "b"', dir);
    return this.#q("GET", `timestamp_to_event/${enc(this.roomId)}?ts=${ts}&dir=${dir}`, undefined, origin);
  }
  /** `/event`. */
  event(origin, eventId) {
    strings("RoomEngine.event", { origin, eventId });
    return this.#q("GET", `event/${enc(eventId)}`, undefined, origin);
  }
  /** `/event_auth`: the event's full auth chain. */
  eventAuth(origin, eventId) {
    strings("RoomEngine.eventAuth", { origin, eventId });
    return this.#q("GET", `event_auth/${enc(this.roomId)}/${enc(eventId)}`, undefined, origin);
  }
  #q(method, path, body, origin) {
    return this.query(method, `/_matrix/federation/v1/${path}`, body, origin, "local");
  }

  /** Whether the room's server ACL admits `server`. */
  aclAllows(server) {
    check.string("RoomEngine.aclAllows", "server", server);
    return this.#room.aclAllows(server);
  }
  /** Whether an event is stored here. */
  hasEvent(eventId) {
    check.string("RoomEngine.hasEvent", "eventId", eventId);
    return this.#room.hasEvent(eventId);
  }
  /** The graph (`roomdag-graph/1`). */
  exportGraph() {
    return json(this.#room.exportGraph());
  }
  /** The lane layout: `Uint32Array` of `[lane, row]` per event (arrival order). */
  layout(rows = "depth") {
    if (rows !== "depth" && rows !== "arrival") throw check.typeError("RoomEngine.layout", "rows", '"depth" or "arrival"', rows);
    return this.#room.layout(rows);
  }
  /** The graph as Graphviz DOT. */
  exportDot(authEdges = false) {
    check.boolean("RoomEngine.exportDot", "authEdges", authEdges);
    return this.#room.exportDot(authEdges);
  }
  /** Everything known about one event (status, states, auth chain, visibility). */
  eventDetails(eventId) {
    check.string("RoomEngine.eventDetails", "eventId", eventId);
    return json(call("RoomEngine.eventDetails: eventId", "M_NOT_FOUND", () => this.#room.eventDetails(eventId)));
  }
  /** The current state and its digest. */
  currentState() {
    return json(call("RoomEngine.currentState", "M_UNKNOWN", () => this.#room.currentState()));
  }
}

function enc(s) {
  return encodeURIComponent(s);
}

function strings(where, params) {
  for (const [name, v] of Object.entries(params)) check.string(where, name, v);
}

const PLACEMENTS = ["timeline", "live", "history", "outlier"];
/** `ingestPlaced` items: `{pdu, placement?}` or `{pdu, state: [eventId…]}`. */
function checkPlaced(where, items) {
  if (!Array.isArray(items)) throw check.typeError(where, "items", "an array of {pdu, placement?} or {pdu, state}", items, check.isPlainObject(items) ? "For one item, pass [item]" : undefined);
  items.forEach((it, i) => {
    check.object(where, `items[${i}]`, it, "an object {pdu, placement?} or {pdu, state}");
    check.pdu(where, `items[${i}].pdu`, it.pdu);
    if (it.state !== undefined) check.stringArray(where, `items[${i}].state`, it.state);
    else if (it.placement !== undefined && !PLACEMENTS.includes(it.placement)) {
      throw check.typeError(where, `items[${i}].placement`, '"timeline", "live", "history" or "outlier"', it.placement);
    }
  });
}

/** Where an engine keeps its PDU texts: `{pages, cacheBytes}`, or null for wasm memory. */
function pagingOf(where, opts, store) {
  const pages = opts.pages !== undefined ? opts.pages : store.pages;
  const cacheBytes = opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
  if (typeof cacheBytes !== "number" || !Number.isFinite(cacheBytes) || cacheBytes < 0) {
    throw check.typeError(where, "cacheBytes", "a number of bytes ≥ 0", cacheBytes);
  }
  if (pages === undefined || pages === null) return null;
  check.methods(where, "pages", pages, ["get", "put", "delete"], "a page store {get(table, key), put(table, key, text), delete(table, key)}");
  return { pages, cacheBytes };
}

/** Records replayed per crossing into wasm when a room is restored. */
const RESTORE_CHUNK = 1000;

/** The page cache when `cacheBytes` is not given. */
const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * A restore fed in parts (`RoomRestore`), `head` (the log before its last
 * rebuild marker) placed. A page store that says it holds the row of every
 * record (`rowsComplete()`) is trusted and not written to.
 */
function startRestore(version, head, paging) {
  const trustRows = paging?.pages.rowsComplete?.() === true;
  return wasm.Room.restoreStart(version, head, paging?.pages, paging?.cacheBytes, trustRows);
}

/** The image a page store holds (`Room.imageInfo`), or null when it has none or it cannot be read. */
function imageInfoOf(pages) {
  try {
    return JSON.parse(wasm.Room.imageInfo(pages));
  } catch (e) {
    console.warn(`RoomEngine.open: the room's image meta could not be read (${e?.message ?? e}); replaying its log`);
    return null;
  }
}

/** Every stored event's record carries its PDU text. */
function checkRecords(where, records) {
  records.forEach((r, i) => {
    if (r?.rebuild === true) return;
    if (typeof r?.raw !== "string") throw check.typeError(where, `store.load().records[${i}].raw`, "the PDU's JSON text", r?.raw);
  });
}

/**
 * A wasm Room rebuilt from a store's log (its PDU texts paged when `paging`
 * is given). A page store that says it holds the row of every record
 * (`rowsComplete()`: its rows are written atomically with the records) is
 * not written to; otherwise each restored event's row is written (once, the
 * first time a room stored before it had pages is opened).
 */
function restoreRoom(version, records, paging = null) {
  try {
    // The log up to its last rebuild marker is placed afresh (all at once);
    // the records after it cross into wasm a chunk at a time, so wasm memory
    // (which never shrinks) never holds the whole log.
    const marker = records.findLastIndex((r) => r?.rebuild === true);
    const restoring = startRestore(version, marker < 0 ? [] : records.slice(0, marker), paging);
    try {
      for (let i = Math.max(marker, 0); i < records.length; i += RESTORE_CHUNK) restoring.push(records.slice(i, i + RESTORE_CHUNK));
      return restoring.finish();
    } finally {
      restoring.free?.();
    }
  } catch (e) {
    throw new RoomdagError("M_UNKNOWN", `the stored room could not be restored: ${e?.message ?? e}`, e);
  }
}

/** The next position in a log (records carry their position `i`). */
function logLength(records) {
  return records.length === 0 ? 0 : Math.max(records.length, (records.at(-1).i ?? records.length - 1) + 1);
}

/**
 * The rooms a server hosts, each on its own store. `createStore(roomId)`
 * returns the store for a room (existing data is loaded on first use).
 */
export class RoomDirectory {
  #rooms = new Map();
  #createStore;

  constructor(opts) {
    check.object("RoomDirectory", "options", opts, "an object {createStore}");
    this.#createStore = check.func("RoomDirectory", "createStore", opts.createStore);
  }

  /** The room, if it exists (in memory or in its store). */
  async get(roomId) {
    check.string("RoomDirectory.get", "roomId", roomId);
    let p = this.#rooms.get(roomId);
    if (!p) {
      const store = this.#createStore(roomId);
      p = store.load().then(async (loaded) => {
        if (!loaded.roomVersion && loaded.records.length === 0) return undefined;
        return RoomEngine.open({ store });
      });
      this.#rooms.set(roomId, p);
      const engine = await p.catch((e) => {
        this.#rooms.delete(roomId);
        throw e;
      });
      if (!engine) this.#rooms.delete(roomId);
      return engine;
    }
    return p;
  }

  /** Creates an empty room (or returns the existing one). */
  async create(roomId, roomVersion) {
    const where = "RoomDirectory.create";
    check.string(where, "roomId", roomId);
    check.roomVersion(where, "roomVersion", roomVersion);
    const existing = await this.get(roomId);
    if (existing) {
      if (existing.roomVersion !== roomVersion) {
        throw check.invalid(where, "roomVersion", `is ${JSON.stringify(roomVersion)}, but room ${roomId} exists with version ${JSON.stringify(existing.roomVersion)}`);
      }
      return existing;
    }
    // Another create (or a load) may have started while `get` ran.
    const racing = this.#rooms.get(roomId);
    if (racing) return racing;
    const p = RoomEngine.open({ store: this.#createStore(roomId), roomVersion });
    this.#rooms.set(roomId, p);
    p.catch(() => this.#rooms.get(roomId) === p && this.#rooms.delete(roomId));
    return p;
  }

  /** Rooms open in memory. */
  async openRooms() {
    const out = [];
    for (const p of this.#rooms.values()) {
      const e = await p.catch(() => undefined);
      if (e) out.push(e);
    }
    return out;
  }

  /** The open room that stores `eventId`, if any. */
  async findEvent(eventId) {
    check.string("RoomDirectory.findEvent", "eventId", eventId);
    for (const e of await this.openRooms()) if (await e.hasEvent(eventId)) return e;
    return undefined;
  }
}

const encoder = new TextEncoder();
function utf8Length(s) {
  return encoder.encode(s).byteLength;
}
