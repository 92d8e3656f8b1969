// Durable Objects: one `RoomObject` per room (the room's single writer, on
// SQLite-backed storage), one `DirectoryObject` listing the rooms, and
// `EVENT_INDEX_SHARDS` `EventIndexObject`s mapping event IDs to rooms (for
// `GET /event/{eventId}`, which names no room), and one `TransactionObject`
// per origin server remembering its answered `/send` transactions.
import { DurableObject } from "cloudflare:workers";
import { DurableObjectStore, KeyFetcher, KeyRing, MemoryStore, RoomEngine, RoomMirror, notariesFrom, pinKeys, wasmMemoryBytes } from "../../pkg/workerd.js";
import type { Outcome, QueryResult, Graph, EventDetails, StateSnapshot, LogRecord } from "../../pkg/roomdag.js";
import { federationClientOf } from "./client.js";
import { configOf, type Env } from "./config.js";

export interface RoomInfo {
  exists: boolean;
  roomId: string | null;
  roomVersion: string | null;
  eventCount: number;
}

/** Shards of the event → room index: an ingest writes to at most this many objects. */
export const EVENT_INDEX_SHARDS = 16;

/** The index shard holding an event ID (FNV-1a of its UTF-16 code units). */
export function eventIndexShard(env: Env, eventId: string): DurableObjectStub<EventIndexObject> {
  return shardStub(env, shardOf(eventId));
}

/** The event index shard of an event ID (an FNV-1a hash of it). */
function shardOf(eventId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < eventId.length; i++) h = Math.imul(h ^ eventId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % EVENT_INDEX_SHARDS;
}

function shardStub(env: Env, shard: number): DurableObjectStub<EventIndexObject> {
  return env.EVENT_INDEX.get(env.EVENT_INDEX.idFromName(`events-${shard}`)) as unknown as DurableObjectStub<EventIndexObject>;
}

function directoryStub(env: Env): DurableObjectStub<DirectoryObject> {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName("directory")) as unknown as DurableObjectStub<DirectoryObject>;
}

/** Records `eventIds` as events of `roomId`, one call per shard touched, in parallel. */
async function indexEvents(env: Env, roomId: string, eventIds: string[]): Promise<void> {
  const byShard = new Map<number, string[]>();
  for (const id of eventIds) {
    const shard = shardOf(id);
    let ids = byShard.get(shard);
    if (!ids) byShard.set(shard, (ids = []));
    ids.push(id);
  }
  await Promise.all([...byShard].map(([shard, ids]) => shardStub(env, shard).add(roomId, ids)));
}

/** Storage key: set once every stored event of the room is in the event index. */
const INDEXED = "roomdag:event-index:v1";
/** Storage key: what the room's federation participation wants and has done (`MirrorStatus`). */
const MIRROR = "roomdag:mirror:v1";
/** `/backfill` requests per alarm (100 events each): one alarm's work stays well within a request's CPU limit. */
const BACKFILL_REQUESTS_PER_ALARM = 20;
/** An image is written once the room has taken no events for this long (an import in progress is not slowed)… */
const IMAGE_QUIET_MS = 3000;
/** …unless the records after the last image outnumber the room's events (then at once: the images of a long import add up to about twice the last one). */
const imageUrgent = (lag: number, events: number) => lag >= Math.max(50_000, events);

/** Pushed PDUs whose prev events could not be fetched yet, kept in the room's storage for a later retry. */
class DurableParking {
  static readonly CAP = 1000;
  constructor(private storage: DurableObjectStorage) {}
  async put(_roomId: string, eventId: string, entry: { pdu: string; origin: string; at: number }): Promise<void> {
    const all = await this.storage.list({ prefix: "parked:" });
    if (all.size >= DurableParking.CAP) {
      const oldest = [...all.entries()].sort((a, b) => (a[1] as { at: number }).at - (b[1] as { at: number }).at)[0];
      if (oldest) await this.storage.delete(oldest[0]);
    }
    await this.storage.put(`parked:${eventId}`, entry);
  }
  async list(): Promise<{ eventId: string; pdu: string; origin: string; at: number }[]> {
    const all = await this.storage.list<{ pdu: string; origin: string; at: number }>({ prefix: "parked:" });
    return [...all.entries()].map(([k, v]) => ({ eventId: k.slice("parked:".length), ...v }));
  }
  async delete(_roomId: string, eventId: string): Promise<void> {
    await this.storage.delete(`parked:${eventId}`);
  }
}

/** The room's participation: a join wanted (after an invite), backfill progress. */
export interface MirrorStatus {
  /** A join to do (an accepted invite, or a join that failed and is retried). */
  join?: { via: string[]; attempts: number; lastError?: string };
  /** Backfill is wanted until complete (or stalled). */
  backfill?: { wanted: boolean; complete: boolean; stalled: boolean; fetched: number; requests: number; events: number; gaps: number; lastError?: string; updatedAt: number };
  /** Our membership, as far as we did it. */
  membership?: "join" | "leave";
}

/** One room: loads its records on start, then serves ingests and queries. */
export class RoomObject extends DurableObject<Env> {
  #engine: RoomEngine | undefined;
  #store: DurableObjectStore;
  /** Keys trusted for federation traffic: TRUSTED_KEYS, and keys fetched or verified for it. */
  #ring: KeyRing;
  #keys: KeyFetcher;
  #trustedKeys: Record<string, Record<string, string>>;
  #mirror: RoomMirror;
  /** Event IDs written since the last flush to the event index. */
  #unindexed: string[] = [];
  #pages: DurableObjectStore["pages"];
  #pageCacheBytes: number;
  /** When the room last took events (the image waits for a quiet moment). */
  #lastIngest = 0;
  /**
   * A new image is due once this many records follow the last one
   * (`IMAGE_AFTER_RECORDS`), or a sixteenth of the room's events if more (a
   * restart replays at most that many records; an image costs about its
   * size in storage writes).
   */
  #imageAfter: number;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const config = configOf(env);
    this.#trustedKeys = config.trustedKeys;
    this.#ring = pinKeys(new KeyRing(), config.trustedKeys);
    const client = federationClientOf(config);
    this.#keys = new KeyFetcher({
      keyRing: this.#ring,
      client,
      notaryServers: notariesFrom(config.notaryServers, config.trustedKeys),
    });
    // Every record the room writes goes to the event index (GET /event).
    const store = new DurableObjectStore(ctx.storage);
    // The PDU texts live in the object's SQLite database, not in its memory.
    this.#pages = store.pages;
    this.#pageCacheBytes = config.pageCacheBytes;
    this.#imageAfter = config.imageAfterRecords;
    this.#store = {
      load: () => store.load(),
      // The log in parts: a restart never holds all of it.
      loadParts: (chunk?: number, opts?: { from?: number }) => store.loadParts(chunk, opts),
      append: async (records: LogRecord[], meta: unknown) => {
        await store.append(records, meta as never);
        for (const r of records) if ("eventId" in r) this.#unindexed.push(r.eventId);
      },
      // The engine's page store is this store's: records of stored events keep their PDU there only.
      pages: store.pages,
    } as unknown as DurableObjectStore;
    // This object's room, as the participant sees it: this object holds one room.
    const rooms = {
      get: async () => this.#engine,
      create: async (roomId: string, roomVersion: string) => {
        await this.create(roomVersion);
        await directoryStub(env).add(roomId, roomVersion);
        return this.#engine;
      },
      findEvent: async () => undefined,
    };
    this.#mirror = new RoomMirror({
      serverName: config.serverName,
      signingKey: config.signingKey,
      rooms: rooms as never,
      client,
      keys: this.#keys,
      keyRing: this.#ring,
      joinLocalpart: config.joinLocalpart,
      parked: new DurableParking(ctx.storage),
      log: (l: Record<string, unknown>) => console.warn(JSON.stringify(l)),
    });
    ctx.blockConcurrencyWhile(async () => {
      const meta = await ctx.storage.get<{ roomVersion?: string }>("meta");
      if (!meta?.roomVersion) return;
      this.#engine = await RoomEngine.open({ store: this.#store, pages: store.pages, cacheBytes: config.pageCacheBytes });
      // A room opened by replaying its log (stored before images, or far
      // behind its image) gets a new image from the alarm: the next start
      // reads that instead.
      if (this.#imageDue().due && (await ctx.storage.getAlarm()) === null) await ctx.storage.setAlarm(Date.now() + IMAGE_QUIET_MS);
      // A room stored before the event index existed indexes itself once.
      const roomId = this.#engine.roomId;
      if (roomId && !(await ctx.storage.get<boolean>(INDEXED))) {
        const loaded = await store.load();
        await indexEvents(env, roomId, loaded.records.flatMap((r: LogRecord) => ("eventId" in r ? [r.eventId] : [])));
        await ctx.storage.put(INDEXED, true);
        await directoryStub(env).markIndexed(roomId);
      }
    });
  }

  info(): RoomInfo {
    const e = this.#engine;
    return { exists: !!e, roomId: e?.roomId ?? null, roomVersion: e?.roomVersion ?? null, eventCount: e?.eventCount ?? 0 };
  }

  /**
   * Makes the room (or returns the existing one). With `createPdu`, only if
   * that create event is accepted (checked on a scratch room first, with
   * `trustKeys` pinned): nothing is stored for one that is not. Without it,
   * the caller has checked the create event (`FederationServer` does).
   */
  async create(roomVersion: string, createPdu?: string, trustKeys?: Record<string, Record<string, string>>): Promise<RoomInfo & { refused?: string }> {
    if (!this.#engine) {
      if (createPdu !== undefined) {
        // An admin import's keys go in a ring of their own, as in `ingest`.
        const ring = trustKeys ? pinKeys(pinKeys(new KeyRing(), this.#trustedKeys), trustKeys) : this.#ring;
        try {
          if (!trustKeys) await this.#keys.ensureForPdus([createPdu], roomVersion);
          const scratch = await RoomEngine.open({ store: new MemoryStore(), roomVersion: roomVersion as "11" });
          const [o] = await scratch.ingest([createPdu], ring);
          if (o.status !== "accepted" || o.redactedOnReceipt) {
            return { ...this.info(), refused: o.status === "accepted" ? "content hash mismatch" : ((o as { reason?: string }).reason ?? o.status) };
          }
        } finally {
          if (trustKeys) ring.free();
        }
      }
      this.#engine = await RoomEngine.open({ store: this.#store, roomVersion: roomVersion as "11", pages: this.#pages, cacheBytes: this.#pageCacheBytes });
      await this.ctx.storage.put(INDEXED, true); // no events yet; each ingest indexes its own
    }
    return this.info();
  }

  #room(): RoomEngine {
    if (!this.#engine) throw new Error("room does not exist");
    return this.#engine;
  }

  /**
   * Receives PDUs (JSON text) in order, with the keys to check them:
   * - `verifiedKeys` (a `/send`): keys the FederationServer fetched and
   *   verified (`KeyRing.exportKeys`); nothing is fetched here;
   * - `trustKeys` (an admin import of a fixture): the fixture's keys, pinned
   *   in a ring of their own for this call only — they never become trusted
   *   for federation traffic;
   * - neither (an NDJSON import): missing keys are fetched, as for `/send`.
   * `origin`: the server that sent them over `/send` (its rejected events
   * are bounded per window).
   */
  async ingest(
    pdus: string[],
    opts: { verifiedKeys?: string; trustKeys?: Record<string, Record<string, string>>; origin?: string } = {},
  ): Promise<Outcome[]> {
    const room = this.#room();
    let outcomes: Outcome[];
    if (opts.trustKeys) {
      const importRing = pinKeys(pinKeys(new KeyRing(), this.#trustedKeys), opts.trustKeys);
      try {
        outcomes = await room.ingest(pdus, importRing);
      } finally {
        importRing.free();
      }
    } else if (opts.verifiedKeys !== undefined) {
      this.#ring.importKeys(opts.verifiedKeys);
      outcomes = await room.ingest(pdus, this.#ring, opts.origin === undefined ? {} : { origin: opts.origin, now: Date.now() });
    } else {
      const checked = await this.#keys.ensureForPdus(pdus, room.roomVersion);
      outcomes = checked.explain(checked.pdus.length ? await room.ingest(checked.pdus, this.#ring) : []);
    }
    // Duplicates too: a retry after a failed index write completes it.
    for (const o of outcomes) if (o.status === "duplicate" && o.eventId) this.#unindexed.push(o.eventId);
    await this.#flushIndex();
    await this.#imageLater();
    return outcomes;
  }

  /** Records after the room's image, and whether a new image is due. */
  #imageDue(): { lag: number; due: boolean; urgent: boolean } {
    const e = this.#engine;
    const lag = e?.imageLag ?? 0;
    const events = e?.eventCount ?? 0;
    return { lag, due: lag >= Math.max(this.#imageAfter, Math.floor(events / 16)), urgent: imageUrgent(lag, events) };
  }

  /** After events were stored: an alarm writes the image once it is due and the room is quiet. */
  async #imageLater(): Promise<void> {
    this.#lastIngest = Date.now();
    if (!this.#imageDue().due) return;
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now() + IMAGE_QUIET_MS);
  }

  /** The alarm's image work: write a due image now if the room is quiet (or far behind), else look again later. */
  async #imageWork(): Promise<void> {
    const { due, urgent } = this.#imageDue();
    if (!due || !this.#engine) return;
    const quietFor = Date.now() - this.#lastIngest;
    if (urgent || quietFor >= IMAGE_QUIET_MS) {
      const t0 = Date.now();
      const info = await this.#engine.saveImage();
      console.log(JSON.stringify({ image: { events: info.events, logLength: info.logLength, bytes: info.bytes, parts: info.parts, ms: Date.now() - t0 } }));
      return;
    }
    const next = this.#lastIngest + IMAGE_QUIET_MS;
    const set = await this.ctx.storage.getAlarm();
    if (set === null || set > next) await this.ctx.storage.setAlarm(next);
  }

  /** The room's image: where it stands (`RoomEngine.imageLag`), for the admin status. */
  imageStatus(): { lag: number | null; events: number } {
    return { lag: this.#engine?.imageLag ?? null, events: this.#engine?.eventCount ?? 0 };
  }

  /** Writes the events stored since the last flush to the event index. */
  async #flushIndex(): Promise<void> {
    const roomId = this.#engine?.roomId;
    if (!roomId || this.#unindexed.length === 0) return;
    const ids = this.#unindexed.splice(0);
    try {
      await indexEvents(this.env, roomId, ids);
    } catch (e) {
      this.#unindexed.push(...ids);
      throw e;
    }
  }

  async #status(): Promise<MirrorStatus> {
    return (await this.ctx.storage.get<MirrorStatus>(MIRROR)) ?? {};
  }

  async #setStatus(update: (s: MirrorStatus) => void): Promise<MirrorStatus> {
    const s = await this.#status();
    update(s);
    await this.ctx.storage.put(MIRROR, s);
    return s;
  }

  /**
   * PDUs pushed by `origin` (one `/send` transaction's PDUs of this room),
   * with the keys the FederationServer verified for them: gaps before them
   * are filled (`/get_missing_events`, the remote state), and holes left
   * are backfilled by the alarm.
   */
  async receive(pdus: string[], origin: string, opts: { verifiedKeys?: string } = {}): Promise<Outcome[]> {
    const room = this.#room();
    // A room we left takes no more events (the reference server drops events of rooms it is not in).
    if ((await this.#status()).membership === "leave") {
      return pdus.map(() => ({ eventId: null, status: "dropped", stage: "parse", reason: "this server left the room" }) as Outcome);
    }
    if (opts.verifiedKeys !== undefined) this.#ring.importKeys(opts.verifiedKeys);
    const { outcomes, holes } = await this.#mirror.receive(room, pdus, origin);
    for (const o of outcomes) if (o.status === "duplicate" && o.eventId) this.#unindexed.push(o.eventId);
    await this.#flushIndex();
    await this.#imageLater();
    if (holes > 0) await this.#wantBackfill();
    return outcomes as Outcome[];
  }

  async #wantBackfill(): Promise<void> {
    await this.#setStatus((s) => {
      s.backfill = { ...(s.backfill ?? { fetched: 0, requests: 0, events: 0, gaps: 0, stalled: false }), wanted: true, complete: false, updatedAt: Date.now() };
    });
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  /**
   * Joins the room through `via` (make_join → send_join; every returned
   * event checked and stored), then backfills its history in the
   * background, an alarm at a time. Returns the join's summary.
   */
  async join(roomId: string, via: string[]): Promise<Record<string, unknown>> {
    const joined = await this.#mirror.join(roomId, via, { backfill: false });
    await this.#flushIndex();
    this.#lastIngest = Date.now();
    await this.#setStatus((s) => {
      s.membership = "join";
      delete s.join;
    });
    await this.#wantBackfill();
    return joined;
  }

  /** An accepted invite: join through the inviting server, in the background. */
  async scheduleJoin(roomId: string, via: string[]): Promise<void> {
    await this.ctx.storage.put("roomdag:room-id", roomId);
    await this.#setStatus((s) => {
      s.join = { via, attempts: 0 };
    });
    await this.ctx.storage.setAlarm(Date.now());
  }

  /** Leaves the room (make_leave → send_leave); its history stays readable. */
  async leave(via: string[] = []): Promise<Record<string, unknown>> {
    const roomId = this.#room().roomId as string;
    const left = await this.#mirror.leave(roomId, { via });
    await this.#flushIndex();
    await this.#setStatus((s) => {
      s.membership = "leave";
      if (s.backfill) s.backfill.wanted = false;
    });
    return left;
  }

  /**
   * Participation status: the pending join, backfill progress; the room's
   * image; and the object's wasm memory (the most its engine has held at
   * once: a wasm memory never shrinks).
   */
  async mirrorStatus(): Promise<MirrorStatus & { image: { lag: number | null; events: number }; wasmMemoryBytes: number }> {
    return { ...(await this.#status()), image: this.imageStatus(), wasmMemoryBytes: wasmMemoryBytes() };
  }

  /**
   * The background work: a join an invite asked for (retried with backoff,
   * at most 5 times), then backfill, `BACKFILL_REQUESTS_PER_ALARM` requests
   * per alarm, until the room's history reaches its create event or no
   * server has what is missing; and the room's image once one is due.
   */
  async alarm(): Promise<void> {
    await this.#participation();
    await this.#imageWork();
  }

  async #participation(): Promise<void> {
    const status = await this.#status();
    if (status.join) {
      const roomId = this.#engine?.roomId ?? (await this.ctx.storage.get<string>("roomdag:room-id"));
      try {
        if (!roomId) throw new Error("no room ID for the pending join");
        await this.join(roomId, status.join.via);
      } catch (e) {
        const attempts = status.join.attempts + 1;
        await this.#setStatus((s) => {
          if (attempts >= 5) delete s.join;
          else s.join = { via: status.join!.via, attempts, lastError: String((e as Error)?.message ?? e) };
        });
        if (attempts < 5) await this.ctx.storage.setAlarm(Date.now() + 60_000 * 2 ** attempts);
        return;
      }
    }
    const s = await this.#status();
    if (!s.backfill?.wanted || !this.#engine?.roomId) return;
    try {
      const r = await this.#mirror.backfill(this.#engine.roomId, { maxRequests: BACKFILL_REQUESTS_PER_ALARM, finalRebuild: false });
      await this.#flushIndex();
      // Backfilling is taking events: the image waits until it is done (or far behind).
      if (r.fetched > 0) this.#lastIngest = Date.now();
      await this.#setStatus((st) => {
        const prev = st.backfill!;
        st.backfill = {
          wanted: !r.complete && !r.stalled,
          complete: r.complete,
          stalled: r.stalled,
          fetched: prev.fetched + r.fetched,
          requests: prev.requests + r.requests,
          events: r.events,
          gaps: r.remainingGaps,
          updatedAt: Date.now(),
        };
      });
      if (!r.complete && !r.stalled) await this.ctx.storage.setAlarm(Date.now() + 10);
    } catch (e) {
      await this.#setStatus((st) => {
        if (st.backfill) st.backfill.lastError = String((e as Error)?.message ?? e);
      });
      await this.ctx.storage.setAlarm(Date.now() + 30_000);
    }
  }

  query(method: string, target: string, body: string | undefined, origin: string, serverName: string, nowMs: number): QueryResult<unknown> {
    return this.#room().query(method, target, body, origin, serverName, nowMs);
  }

  aclAllows(server: string): boolean {
    return this.#room().aclAllows(server);
  }

  rejectionRefusal(origin: string): string | null {
    return this.#room().rejectionRefusal(origin, Date.now());
  }

  /** The server ACL and the origin's bound of rejected events, in one call (a `/send` asks before any work). */
  admission(origin: string): { aclAllows: boolean; refusal: string | null } {
    return this.#room().admission(origin, Date.now());
  }

  stateAccess(origin: string): { status: number; body: unknown } | null {
    return this.#room().stateAccess(origin);
  }

  hasEvent(eventId: string): boolean {
    return !!this.#engine?.hasEvent(eventId);
  }

  graph(): Graph {
    return this.#room().exportGraph();
  }

  eventDetails(eventId: string): EventDetails {
    return this.#room().eventDetails(eventId);
  }

  currentState(): StateSnapshot {
    return this.#room().currentState();
  }
}

/** Storage keys of the directory: one per room, so no value grows with the number of rooms. */
const ROOM_KEY = "room:";
const UNINDEXED_KEY = "unindexed:";
/** Rooms listed per page at most. */
export const DIRECTORY_PAGE_MAX = 1000;

/**
 * The rooms this server hosts: one storage value per room (`room:<id>` →
 * room version), listed in pages; `unindexed:<id>` marks rooms stored by a
 * roomdag without the event index, until their object next starts. A
 * directory stored the old way (one `rooms` value and one `indexed` value)
 * is moved to this layout when the object starts.
 */
export class DirectoryObject extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.blockConcurrencyWhile(() => this.#migrate());
  }

  async #migrate(): Promise<void> {
    const legacy = await this.ctx.storage.get<Record<string, string>>("rooms");
    if (!legacy) return;
    const indexed = (await this.ctx.storage.get<Record<string, boolean>>("indexed")) ?? {};
    const entries: Record<string, unknown> = {};
    for (const [roomId, version] of Object.entries(legacy)) {
      entries[ROOM_KEY + roomId] = version;
      if (indexed[roomId] !== true) entries[UNINDEXED_KEY + roomId] = true;
    }
    const keys = Object.keys(entries);
    // Storage calls take at most 128 keys; the old values go last, so an
    // interrupted move is redone on the next start.
    for (let i = 0; i < keys.length; i += 128) {
      await this.ctx.storage.put(Object.fromEntries(keys.slice(i, i + 128).map((k) => [k, entries[k]])));
    }
    await this.ctx.storage.delete(["rooms", "indexed"]);
  }

  async add(roomId: string, roomVersion: string): Promise<void> {
    if ((await this.ctx.storage.get(ROOM_KEY + roomId)) !== undefined) return;
    await this.ctx.storage.put(ROOM_KEY + roomId, roomVersion); // created empty: every ingest indexes its events
  }

  /** The room's version, if the room is hosted here. */
  async get(roomId: string): Promise<string | undefined> {
    return this.ctx.storage.get<string>(ROOM_KEY + roomId);
  }

  async markIndexed(roomId: string): Promise<void> {
    await this.ctx.storage.delete(UNINDEXED_KEY + roomId);
  }

  /** A page of rooms in room ID order, after `from` (exclusive); `next` when more follow. */
  async list(from?: string, limit = 100): Promise<{ rooms: { roomId: string; roomVersion: string }[]; next?: string }> {
    const n = Math.max(1, Math.min(DIRECTORY_PAGE_MAX, Math.floor(limit) || 100));
    const page = await this.ctx.storage.list<string>({ prefix: ROOM_KEY, limit: n + 1, ...(from === undefined ? {} : { startAfter: ROOM_KEY + from }) });
    const rooms = [...page].slice(0, n).map(([k, roomVersion]) => ({ roomId: k.slice(ROOM_KEY.length), roomVersion }));
    return page.size > n ? { rooms, next: rooms[rooms.length - 1].roomId } : { rooms };
  }

  /** Rooms whose events may be missing from the event index (normally none). */
  async unindexed(): Promise<{ roomId: string; roomVersion: string }[]> {
    const marks = await this.ctx.storage.list({ prefix: UNINDEXED_KEY, limit: DIRECTORY_PAGE_MAX });
    const ids = [...marks.keys()].map((k) => k.slice(UNINDEXED_KEY.length));
    const out: { roomId: string; roomVersion: string }[] = [];
    for (let i = 0; i < ids.length; i += 128) {
      const versions = await this.ctx.storage.get<string>(ids.slice(i, i + 128).map((id) => ROOM_KEY + id));
      for (const id of ids.slice(i, i + 128)) {
        const v = versions.get(ROOM_KEY + id);
        if (v !== undefined) out.push({ roomId: id, roomVersion: v });
      }
    }
    return out;
  }
}

/**
 * One shard of the event ID → room ID index, a SQLite table. Shards
 * written before it kept the index in the key-value storage: those keys are
 * still read (an event ID names one room, so the two never disagree).
 */
export class EventIndexObject extends DurableObject<Env> {
  /** Rows per INSERT (two bound values each; a statement takes at most 100). */
  static readonly ROWS_PER_INSERT = 50;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS event_room (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL) WITHOUT ROWID");
  }

  /**
   * Records events of a room; an event ID already recorded keeps its first
   * room. One synchronous run of INSERTs (one commit): 500 events took 318
   * of 5,531 profile samples of an import as 128-key storage reads and puts.
   */
  async add(roomId: string, eventIds: string[]): Promise<void> {
    const sql = this.ctx.storage.sql;
    const n = EventIndexObject.ROWS_PER_INSERT;
    for (let i = 0; i < eventIds.length; i += n) {
      const ids = eventIds.slice(i, i + n);
      sql.exec(`INSERT OR IGNORE INTO event_room (event_id, room_id) VALUES ${ids.map(() => "(?, ?)").join(", ")}`, ...ids.flatMap((id) => [id, roomId]));
    }
  }

  async find(eventId: string): Promise<string | undefined> {
    const row = this.ctx.storage.sql.exec<{ room_id: string }>("SELECT room_id FROM event_room WHERE event_id = ?", eventId).toArray()[0];
    return row?.room_id ?? (await this.ctx.storage.get<string>(eventId));
  }
}

/** A transaction's answer. */
export interface TransactionResponse {
  status: number;
  body: unknown;
}

/** How long a started transaction holds its origin's lease (an isolate that dies mid-transaction frees it then). */
export const TRANSACTION_LEASE_MS = 60_000;

async function answerKey(txnId: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(txnId)));
  return "h:" + [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The `/send` transactions of one origin server: its last `KEPT` answers
 * by transaction ID, so that a retry gets the first answer whichever
 * isolate it reaches (Synapse keeps them in `received_transactions`, for a
 * day), and the lease that lets one of its transactions run at a time
 * across isolates (Synapse `_active_transactions`: another one meanwhile →
 * 429). Answers are keyed by a SHA-256 of the transaction ID (a storage key
 * holds 2 KiB); answers stored under `t:<txnId>` by earlier versions are
 * still found.
 */
export class TransactionObject extends DurableObject<Env> {
  static readonly KEPT = 1000;

  async get(txnId: string): Promise<TransactionResponse | undefined> {
    const answer = await this.ctx.storage.get<TransactionResponse>(await answerKey(txnId));
    if (answer || new TextEncoder().encode(txnId).length > 2046) return answer;
    return this.ctx.storage.get<TransactionResponse>(`t:${txnId}`);
  }

  /** Its answer; `busy` while another transaction (or this one, elsewhere) holds the lease; else the lease is taken. */
  async begin(txnId: string): Promise<{ response?: TransactionResponse; busy?: boolean }> {
    const response = await this.get(txnId);
    if (response) return { response };
    const now = Date.now();
    const lease = await this.ctx.storage.get<{ txnId: string; until: number }>("lease");
    if (lease && lease.until > now) return { busy: true };
    await this.ctx.storage.put("lease", { txnId, until: now + TRANSACTION_LEASE_MS });
    return {};
  }

  /** Frees the lease of a transaction that got no 200 answer. */
  async end(txnId: string): Promise<void> {
    const lease = await this.ctx.storage.get<{ txnId: string }>("lease");
    if (lease?.txnId === txnId) await this.ctx.storage.delete("lease");
  }

  async put(txnId: string, response: TransactionResponse): Promise<void> {
    await this.end(txnId);
    if (await this.get(txnId)) return; // the first answer stands
    const key = await answerKey(txnId);
    const n = ((await this.ctx.storage.get<number>("n")) ?? 0) + 1;
    await this.ctx.storage.put({ [key]: response, [`q:${n}`]: key, n });
    const old = n - TransactionObject.KEPT;
    if (old > 0) {
      // `q:<n>` names the answer's key; `s:<n>` (earlier versions) its transaction ID.
      const seq = await this.ctx.storage.get<string>([`q:${old}`, `s:${old}`]);
      const drop = [`q:${old}`, `s:${old}`];
      const newer = seq.get(`q:${old}`);
      const older = seq.get(`s:${old}`);
      if (newer !== undefined) drop.push(newer);
      if (older !== undefined) drop.push(`t:${older}`);
      await this.ctx.storage.delete(drop);
    }
  }
}
