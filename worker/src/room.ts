// Durable Objects: one `RoomObject` per room (the room's single writer, on
// SQLite-backed storage), one `DirectoryObject` listing the rooms, and
// `EVENT_INDEX_SHARDS` `EventIndexObject`s mapping event IDs to rooms (for
// `GET /event/{eventId}`, which names no room), and one `TransactionObject`
// per origin server remembering its answered `/send` transactions.
import { DurableObject } from "cloudflare:workers";
import { DurableObjectStore, KeyFetcher, KeyRing, RoomEngine, notariesFrom, pinKeys } from "../../pkg/workerd.js";
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
  let h = 0x811c9dc5;
  for (let i = 0; i < eventId.length; i++) h = Math.imul(h ^ eventId.charCodeAt(i), 0x01000193);
  const shard = (h >>> 0) % EVENT_INDEX_SHARDS;
  return env.EVENT_INDEX.get(env.EVENT_INDEX.idFromName(`events-${shard}`)) as unknown as DurableObjectStub<EventIndexObject>;
}

function directoryStub(env: Env): DurableObjectStub<DirectoryObject> {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName("directory")) as unknown as DurableObjectStub<DirectoryObject>;
}

/** Records `eventIds` as events of `roomId`, one call per shard touched, in parallel. */
async function indexEvents(env: Env, roomId: string, eventIds: string[]): Promise<void> {
  const byShard = new Map<string, { stub: DurableObjectStub<EventIndexObject>; ids: string[] }>();
  for (const id of eventIds) {
    const stub = eventIndexShard(env, id);
    const key = stub.id.toString();
    let g = byShard.get(key);
    if (!g) byShard.set(key, (g = { stub, ids: [] }));
    g.ids.push(id);
  }
  await Promise.all([...byShard.values()].map((g) => g.stub.add(roomId, g.ids)));
}

/** Storage key: set once every stored event of the room is in the event index. */
const INDEXED = "roomdag:event-index:v1";

/** One room: loads its records on start, then serves ingests and queries. */
export class RoomObject extends DurableObject<Env> {
  #engine: RoomEngine | undefined;
  #store: DurableObjectStore;
  /** Keys trusted for federation traffic: TRUSTED_KEYS, and keys fetched or verified for it. */
  #ring: KeyRing;
  #keys: KeyFetcher;
  #trustedKeys: Record<string, Record<string, string>>;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const config = configOf(env);
    this.#trustedKeys = config.trustedKeys;
    this.#ring = pinKeys(new KeyRing(), config.trustedKeys);
    this.#keys = new KeyFetcher({
      keyRing: this.#ring,
      client: federationClientOf(config),
      notaryServers: notariesFrom(config.notaryServers, config.trustedKeys),
    });
    this.#store = new DurableObjectStore(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const loaded = await this.#store.load();
      if (!loaded.roomVersion) return;
      this.#engine = await RoomEngine.open({ store: this.#store });
      // A room stored before the event index existed indexes itself once.
      const roomId = this.#engine.roomId;
      if (roomId && !(await ctx.storage.get<boolean>(INDEXED))) {
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

  async create(roomVersion: string): Promise<RoomInfo> {
    if (!this.#engine) {
      this.#engine = await RoomEngine.open({ store: this.#store, roomVersion: roomVersion as "11" });
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
   */
  async ingest(
    pdus: string[],
    opts: { verifiedKeys?: string; trustKeys?: Record<string, Record<string, string>> } = {},
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
      outcomes = await room.ingest(pdus, this.#ring);
    } else {
      const checked = await this.#keys.ensureForPdus(pdus, room.roomVersion);
      outcomes = checked.explain(checked.pdus.length ? await room.ingest(checked.pdus, this.#ring) : []);
    }
    // Duplicates too: a retry after a failed index write completes it.
    const stored = outcomes.flatMap((o) => (o.status === "dropped" || !o.eventId ? [] : [o.eventId]));
    if (stored.length && room.roomId) await indexEvents(this.env, room.roomId, stored);
    return outcomes;
  }

  query(method: string, target: string, body: string | undefined, origin: string, serverName: string, nowMs: number): QueryResult<unknown> {
    return this.#room().query(method, target, body, origin, serverName, nowMs);
  }

  aclAllows(server: string): boolean {
    return this.#room().aclAllows(server);
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

/**
 * The list of rooms this server hosts (room creation is rare: one object
 * suffices), and which of them are not yet in the event index (rooms stored
 * by a roomdag without one, until their object next starts).
 */
export class DirectoryObject extends DurableObject<Env> {
  async #rooms(): Promise<Record<string, string>> {
    return (await this.ctx.storage.get<Record<string, string>>("rooms")) ?? {};
  }

  async #indexed(): Promise<Record<string, boolean> | undefined> {
    return this.ctx.storage.get<Record<string, boolean>>("indexed");
  }

  async add(roomId: string, roomVersion: string): Promise<void> {
    const rooms = await this.#rooms();
    const indexed = (await this.#indexed()) ?? Object.fromEntries(Object.keys(rooms).map((r) => [r, false]));
    if (rooms[roomId]) return;
    rooms[roomId] = roomVersion;
    indexed[roomId] = true; // created empty: every ingest indexes its events
    await this.ctx.storage.put({ rooms, indexed });
  }

  async markIndexed(roomId: string): Promise<void> {
    const indexed = (await this.#indexed()) ?? {};
    indexed[roomId] = true;
    await this.ctx.storage.put("indexed", indexed);
  }

  async list(): Promise<{ roomId: string; roomVersion: string }[]> {
    return Object.entries(await this.#rooms()).map(([roomId, roomVersion]) => ({ roomId, roomVersion }));
  }

  /** Rooms whose events may be missing from the event index (normally none). */
  async unindexed(): Promise<{ roomId: string; roomVersion: string }[]> {
    const indexed = (await this.#indexed()) ?? {};
    return (await this.list()).filter((r) => indexed[r.roomId] !== true);
  }
}

/** One shard of the event ID → room ID index. */
export class EventIndexObject extends DurableObject<Env> {
  /** Records events of a room; an event ID already recorded keeps its first room. */
  async add(roomId: string, eventIds: string[]): Promise<void> {
    // Storage calls take at most 128 keys.
    for (let i = 0; i < eventIds.length; i += 128) {
      const ids = eventIds.slice(i, i + 128);
      const known = await this.ctx.storage.get<string>(ids);
      const fresh = ids.filter((id) => !known.has(id));
      if (fresh.length) await this.ctx.storage.put(Object.fromEntries(fresh.map((id) => [id, roomId])));
    }
  }

  async find(eventId: string): Promise<string | undefined> {
    return this.ctx.storage.get<string>(eventId);
  }
}

/** A transaction's answer. */
export interface TransactionResponse {
  status: number;
  body: unknown;
}

/**
 * The answered `/send` transactions of one origin server: its last
 * `TRANSACTIONS_KEPT` answers by transaction ID, so that a retry gets the
 * first answer whichever isolate it reaches (Synapse keeps them in
 * `received_transactions`, for a day).
 */
export class TransactionObject extends DurableObject<Env> {
  static readonly KEPT = 1000;

  async get(txnId: string): Promise<TransactionResponse | undefined> {
    return this.ctx.storage.get<TransactionResponse>(`t:${txnId}`);
  }

  async put(txnId: string, response: TransactionResponse): Promise<void> {
    if (await this.ctx.storage.get(`t:${txnId}`)) return; // the first answer stands
    const n = ((await this.ctx.storage.get<number>("n")) ?? 0) + 1;
    await this.ctx.storage.put({ [`t:${txnId}`]: response, [`s:${n}`]: txnId, n });
    const old = n - TransactionObject.KEPT;
    if (old > 0) {
      const oldId = await this.ctx.storage.get<string>(`s:${old}`);
      await this.ctx.storage.delete(oldId === undefined ? [`s:${old}`] : [`s:${old}`, `t:${oldId}`]);
    }
  }
}
