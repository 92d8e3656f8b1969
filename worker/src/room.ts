// Durable Objects: one `RoomObject` per room (the room's single writer, on
// SQLite-backed storage), and one `DirectoryObject` listing the rooms.
import { DurableObject } from "cloudflare:workers";
import { DurableObjectStore, KeyFetcher, KeyRing, RoomEngine, pinKeys } from "../../pkg/workerd.js";
import type { Outcome, QueryResult, Graph, EventDetails, StateSnapshot } from "../../pkg/roomdag.js";
import { configOf, type Env } from "./config.js";

export interface RoomInfo {
  exists: boolean;
  roomId: string | null;
  roomVersion: string | null;
  eventCount: number;
}

/** One room: loads its records on start, then serves ingests and queries. */
export class RoomObject extends DurableObject<Env> {
  #engine: RoomEngine | undefined;
  #store: DurableObjectStore;
  #ring: KeyRing;
  #keys: KeyFetcher;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const config = configOf(env);
    this.#ring = pinKeys(new KeyRing(), config.trustedKeys);
    this.#keys = new KeyFetcher({ keyRing: this.#ring, notaryServers: config.notaryServers, keyServerUrl: config.keyServerUrl });
    this.#store = new DurableObjectStore(ctx.storage);
    ctx.blockConcurrencyWhile(async () => {
      const loaded = await this.#store.load();
      if (loaded.roomVersion) this.#engine = await RoomEngine.open({ store: this.#store });
    });
  }

  info(): RoomInfo {
    const e = this.#engine;
    return { exists: !!e, roomId: e?.roomId ?? null, roomVersion: e?.roomVersion ?? null, eventCount: e?.eventCount ?? 0 };
  }

  async create(roomVersion: string): Promise<RoomInfo> {
    this.#engine ??= await RoomEngine.open({ store: this.#store, roomVersion: roomVersion as "11" });
    return this.info();
  }

  #room(): RoomEngine {
    if (!this.#engine) throw new Error("room does not exist");
    return this.#engine;
  }

  /**
   * Receives PDUs (JSON text) in order. `trustKeys` pins extra keys first
   * (an admin import of a fixture); otherwise missing keys are fetched.
   */
  async ingest(pdus: string[], trustKeys?: Record<string, Record<string, string>>): Promise<Outcome[]> {
    if (trustKeys) pinKeys(this.#ring, trustKeys);
    await this.#keys.ensureForPdus(pdus);
    return this.#room().ingest(pdus, this.#ring);
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

/** The list of rooms this server hosts (room creation is rare: one object suffices). */
export class DirectoryObject extends DurableObject<Env> {
  async add(roomId: string, roomVersion: string): Promise<void> {
    const rooms = ((await this.ctx.storage.get<Record<string, string>>("rooms")) ?? {}) as Record<string, string>;
    if (rooms[roomId]) return;
    rooms[roomId] = roomVersion;
    await this.ctx.storage.put("rooms", rooms);
  }

  async list(): Promise<{ roomId: string; roomVersion: string }[]> {
    const rooms = ((await this.ctx.storage.get<Record<string, string>>("rooms")) ?? {}) as Record<string, string>;
    return Object.entries(rooms).map(([roomId, roomVersion]) => ({ roomId, roomVersion }));
  }
}
