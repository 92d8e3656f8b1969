// The roomdag Worker: the Matrix federation history endpoints at the edge.
//
//   /_matrix/key/v2/server, /_matrix/federation/v1/*   → FederationServer
//        (authentication and routing here; each room's DAG lives in its own
//         Durable Object, the room's single writer)
//   /_roomdag/admin/*    import rooms, list rooms (bearer ADMIN_TOKEN)
//   /_roomdag/rooms/*    read-only inspector API for the visualizer
//   /.well-known/matrix/server   {"m.server": WELL_KNOWN_SERVER} when set, else 404
//   everything else      the visualizer (static assets from www/)
import { FederationServer, groupPdusByRoom, publicKeyOf, requiredSigners, type KeyRing } from "../../pkg/workerd.js";
import type { Outcome } from "../../pkg/roomdag.js";
import { federationClientOf } from "./client.js";
import { configOf, ConfigError, type Config, type Env } from "./config.js";
import { eventIndexShard, type RoomInfo, type RoomObject, type DirectoryObject, type TransactionObject, type TransactionResponse } from "./room.js";

export { RoomObject, DirectoryObject, EventIndexObject, TransactionObject } from "./room.js";

type RoomStub = DurableObjectStub<RoomObject>;

function roomStub(env: Env, roomId: string): RoomStub {
  return env.ROOMS.get(env.ROOMS.idFromName(roomId)) as unknown as RoomStub;
}

function directory(env: Env): DurableObjectStub<DirectoryObject> {
  return env.DIRECTORY.get(env.DIRECTORY.idFromName("directory")) as unknown as DurableObjectStub<DirectoryObject>;
}

/** A room in its Durable Object, as the FederationServer sees it. */
class RemoteRoom {
  constructor(
    private stub: RoomStub,
    readonly roomVersion: string,
  ) {}
  /**
   * The FederationServer fetched the keys these PDUs need into its ring:
   * they go along (already verified), so the room's object fetches nothing.
   */
  ingest(pdus: string[], keyRing: KeyRing): Promise<Outcome[]> {
    const servers = new Set<string>();
    for (const pdu of pdus) {
      try {
        for (const s of requiredSigners(pdu, this.roomVersion)) servers.add(s);
      } catch {
        /* unparseable: the room drops it */
      }
    }
    return this.stub.ingest(pdus, { verifiedKeys: keyRing.exportKeys([...servers]) }) as Promise<Outcome[]>;
  }
  /** Pushed PDUs: the room's object fills gaps before them (it takes part in the room). */
  receive(pdus: string[], origin: string, keyRing: KeyRing): Promise<Outcome[]> {
    return this.stub.receive(pdus, origin, { verifiedKeys: keyRing.exportKeys(this.#signers(pdus)) }) as Promise<Outcome[]>;
  }
  #signers(pdus: string[]): string[] {
    const servers = new Set<string>();
    for (const pdu of pdus) {
      try {
        for (const s of requiredSigners(pdu, this.roomVersion)) servers.add(s);
      } catch {
        /* unparseable: the room drops it */
      }
    }
    return [...servers];
  }
  query(method: string, target: string, body: string | undefined, origin: string, serverName: string, nowMs: number) {
    return this.stub.query(method, target, body, origin, serverName, nowMs);
  }
  aclAllows(server: string) {
    return this.stub.aclAllows(server);
  }
  hasEvent(eventId: string) {
    return this.stub.hasEvent(eventId);
  }
}

/**
 * Environments in which every room is known to be in the event index: then
 * an index miss is a 404 without asking the directory. (Once complete, the
 * index stays complete: new rooms index every ingest.)
 */
const directoryComplete = new WeakSet<Env>();

/** Rooms on Durable Objects, found by room ID (and, for /event, through the event index). */
class DurableRooms {
  constructor(private env: Env) {}
  async get(roomId: string): Promise<RemoteRoom | undefined> {
    const stub = roomStub(this.env, roomId);
    const info = (await stub.info()) as RoomInfo;
    return info.exists ? new RemoteRoom(stub, info.roomVersion as string) : undefined;
  }
  async create(roomId: string, roomVersion: string): Promise<RemoteRoom> {
    const stub = roomStub(this.env, roomId);
    const info = (await stub.create(roomVersion)) as RoomInfo;
    await directory(this.env).add(roomId, roomVersion);
    return new RemoteRoom(stub, info.roomVersion as string);
  }
  /**
   * One call to the event's index shard. On a miss, only rooms not yet in
   * the index (stored before it existed, and not started since) are asked;
   * asking starts them, and a started room indexes itself.
   */
  async findEvent(eventId: string): Promise<RemoteRoom | undefined> {
    const roomId = await eventIndexShard(this.env, eventId).find(eventId);
    if (roomId) return this.get(roomId);
    if (directoryComplete.has(this.env)) return undefined;
    const pending = await directory(this.env).unindexed();
    if (pending.length === 0) {
      directoryComplete.add(this.env);
      return undefined;
    }
    const hits = await Promise.all(pending.map(async (r) => ((await roomStub(this.env, r.roomId).hasEvent(eventId)) ? r : undefined)));
    const hit = hits.find(Boolean);
    return hit ? new RemoteRoom(roomStub(this.env, hit.roomId), hit.roomVersion) : undefined;
  }
}

/** Answered transactions, in one Durable Object per origin server. */
class DurableTransactions {
  constructor(private env: Env) {}
  #stub(origin: string): DurableObjectStub<TransactionObject> {
    return this.env.TRANSACTIONS.get(this.env.TRANSACTIONS.idFromName(origin)) as unknown as DurableObjectStub<TransactionObject>;
  }
  async get(origin: string, txnId: string): Promise<TransactionResponse | undefined> {
    return (await this.#stub(origin).get(txnId)) as TransactionResponse | undefined;
  }
  async put(origin: string, txnId: string, response: TransactionResponse): Promise<void> {
    await this.#stub(origin).put(txnId, response);
  }
}

let server: { env: Env; fs: FederationServer } | undefined;

function federationServer(env: Env, config: Config): FederationServer {
  if (!server || server.env !== env) {
    server = {
      env,
      fs: new FederationServer({
        serverName: config.serverName,
        signingKey: config.signingKey,
        trustedKeys: config.trustedKeys,
        notaryServers: config.notaryServers,
        federationClient: federationClientOf(config),
        rooms: new DurableRooms(env) as never,
        transactions: new DurableTransactions(env),
        // Invites and aliases here; joins, gap filling and backfill in each room's object.
        participant: true,
        joinLocalpart: config.joinLocalpart,
        acceptInvitesFrom: config.acceptInvitesFrom,
        onInvite: (a: { roomId: string; inviterServer: string }) => roomStub(env, a.roomId).scheduleJoin(a.roomId, [a.inviterServer]),
      }),
    };
  }
  return server.fs;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", "access-control-allow-origin": "*" } });

function authorised(request: Request, config: Config): boolean {
  const h = request.headers.get("authorization") ?? "";
  return h === `Bearer ${config.adminToken}`;
}

/** How many PDUs go to a room's Durable Object per call (one atomic storage write each). */
const IMPORT_BATCH = 100;

/**
 * Imports PDUs, streaming progress as NDJSON lines. The body is a fixture
 * (`matrix-dag-oracle/1`, whose server keys are pinned for the import) or
 * NDJSON with one PDU per line.
 */
async function importRoom(request: Request, env: Env): Promise<Response> {
  const type = request.headers.get("content-type") ?? "";
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const enc = new TextEncoder();
  const emit = (o: unknown) => writer.write(enc.encode(JSON.stringify(o) + "\n"));
  const counts = { imported: 0, accepted: 0, rejected: 0, dropped: 0, duplicate: 0 };
  const rooms = new DurableRooms(env);

  const ingestBatch = async (pdus: string[], trust?: Record<string, Record<string, string>>) => {
    for (const [roomId, g] of groupPdusByRoom(pdus)) {
      let room = await rooms.get(roomId);
      if (!room && g.createVersion) room = await rooms.create(roomId, g.createVersion);
      if (!room) {
        counts.dropped += g.pdus.length;
        continue;
      }
      const outcomes = (await roomStub(env, roomId).ingest(g.pdus, trust ? { trustKeys: trust } : {})) as Outcome[];
      for (const o of outcomes) counts[o.status]++;
    }
    counts.imported += pdus.length;
    await emit({ progress: { ...counts } });
  };

  const work = (async () => {
    try {
      if (type.includes("ndjson")) {
        const reader = request.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        let batch: string[] = [];
        for (;;) {
          const { value, done } = await reader.read();
          if (value) buf += value;
          const lines = buf.split("\n");
          buf = done ? "" : (lines.pop() ?? "");
          for (const line of lines) {
            if (!line.trim()) continue;
            batch.push(line);
            if (batch.length >= IMPORT_BATCH) {
              await ingestBatch(batch);
              batch = [];
            }
          }
          if (done) break;
        }
        if (batch.length) await ingestBatch(batch);
      } else {
        const fixture = (await request.json()) as {
          format?: string;
          servers?: Record<string, { verify_keys: Record<string, string> }>;
          events?: { pdu: unknown }[];
        };
        if (fixture.format !== "matrix-dag-oracle/1" || !Array.isArray(fixture.events)) {
          await emit({ error: "expected a matrix-dag-oracle/1 fixture, or NDJSON (content-type application/x-ndjson)" });
          return;
        }
        const trust = Object.fromEntries(Object.entries(fixture.servers ?? {}).map(([s, v]) => [s, v.verify_keys]));
        const pdus = fixture.events.map((e) => JSON.stringify(e.pdu));
        for (let i = 0; i < pdus.length; i += IMPORT_BATCH) await ingestBatch(pdus.slice(i, i + IMPORT_BATCH), trust);
      }
      await emit({ done: { ...counts } });
    } catch (e) {
      await emit({ error: String((e as Error)?.message ?? e) });
    } finally {
      await writer.close();
    }
  })();
  void work;
  return new Response(readable, { headers: { "content-type": "application/x-ndjson" } });
}

/** An admin request's JSON body `{room, via?}`, checked. */
async function roomRequest(request: Request): Promise<{ room: string; via: string[] } | Response> {
  let body: { room?: unknown; via?: unknown };
  try {
    body = (await request.json()) as typeof body;
  } catch {
    return json(400, { errcode: "M_NOT_JSON", error: "the body must be JSON {room, via?}" });
  }
  const room = body?.room;
  const via = body?.via ?? [];
  if (typeof room !== "string" || !/^[!#][^:]+:.+$/.test(room)) return json(400, { errcode: "M_INVALID_PARAM", error: "room must be a room ID (!…:server) or alias (#…:server)" });
  if (!Array.isArray(via) || !via.every((v) => typeof v === "string")) return json(400, { errcode: "M_INVALID_PARAM", error: "via must be a list of server names" });
  return { room, via: via as string[] };
}

/**
 * `POST /_roomdag/admin/join {room, via}`: joins the room (an alias is
 * resolved first), then streams NDJSON progress while the room's object
 * backfills its history (which goes on, an alarm at a time, if the client
 * goes away), ending with `{done}` or `{error}`.
 */
async function joinRoom(request: Request, env: Env, config: Config): Promise<Response> {
  const req = await roomRequest(request);
  if (req instanceof Response) return req;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const writer = writable.getWriter();
  const enc = new TextEncoder();
  const emit = (o: unknown) => writer.write(enc.encode(JSON.stringify(o) + "\n"));
  const work = (async () => {
    try {
      let roomId = req.room;
      let via = req.via;
      if (roomId.startsWith("#")) {
        const r = await federationServer(env, config).participant!.resolveAlias(roomId);
        roomId = r.roomId;
        via = [...new Set([...via, ...r.servers])];
        await emit({ phase: "alias", alias: req.room, roomId, servers: r.servers });
      }
      await emit({ phase: "joining", roomId, via });
      const stub = roomStub(env, roomId);
      const joined = await stub.join(roomId, via);
      await emit({ phase: "joined", ...joined });
      const deadline = Date.now() + 15 * 60_000;
      let last = "";
      for (;;) {
        const status = (await stub.mirrorStatus()) as { backfill?: { complete: boolean; stalled: boolean; wanted: boolean } };
        const line = JSON.stringify(status.backfill ?? {});
        if (line !== last) await emit({ phase: "backfill", ...(status.backfill ?? {}) });
        last = line;
        if (!status.backfill?.wanted || Date.now() > deadline) {
          await emit({ done: { roomId, ...(status.backfill ?? {}) } });
          break;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    } catch (e) {
      await emit({ error: String((e as Error)?.message ?? e) }).catch(() => {});
    } finally {
      await writer.close().catch(() => {});
    }
  })();
  void work;
  return new Response(readable, { headers: { "content-type": "application/x-ndjson" } });
}

/** `POST /_roomdag/admin/leave {room, via?}`: make_leave → send_leave; the history stays readable. */
async function leaveRoom(request: Request, env: Env, config: Config): Promise<Response> {
  const req = await roomRequest(request);
  if (req instanceof Response) return req;
  let roomId = req.room;
  try {
    if (roomId.startsWith("#")) roomId = (await federationServer(env, config).participant!.resolveAlias(roomId)).roomId;
    const info = (await roomStub(env, roomId).info()) as RoomInfo;
    if (!info.exists) return json(404, { errcode: "M_NOT_FOUND", error: `room ${roomId} is not held here` });
    return json(200, (await roomStub(env, roomId).leave(req.via)) as object);
  } catch (e) {
    return json(502, { errcode: "M_UNKNOWN", error: String((e as Error)?.message ?? e) });
  }
}

async function listRooms(env: Env): Promise<Response> {
  const rooms = await directory(env).list();
  const infos = await Promise.all(rooms.map(async (r) => ({ ...r, ...((await roomStub(env, r.roomId).info()) as RoomInfo) })));
  const defaultRoom = env.DEFAULT_ROOM?.trim() || undefined;
  return json(200, { rooms: infos.map(({ roomId, roomVersion, eventCount }) => ({ roomId, roomVersion, eventCount })), defaultRoom });
}

async function roomdagApi(request: Request, env: Env, config: Config, url: URL): Promise<Response> {
  const parts = url.pathname.split("/").slice(2).map(decodeURIComponent); // after "_roomdag"
  if (parts[0] === "admin") {
    if (!authorised(request, config)) return json(401, { errcode: "M_UNAUTHORIZED", error: "admin API: bearer ADMIN_TOKEN required" });
    if (parts[1] === "import" && request.method === "POST") return importRoom(request, env);
    if (parts[1] === "join" && request.method === "POST") return joinRoom(request, env, config);
    if (parts[1] === "leave" && request.method === "POST") return leaveRoom(request, env, config);
    if (parts[1] === "status" && parts[2] && request.method === "GET") {
      return json(200, (await roomStub(env, parts[2]).mirrorStatus()) as object);
    }
    if (parts[1] === "rooms" && request.method === "GET") return listRooms(env);
    return json(404, { errcode: "M_UNRECOGNIZED", error: "unknown admin endpoint" });
  }
  if (!config.inspectorOpen && !authorised(request, config)) {
    return json(401, { errcode: "M_UNAUTHORIZED", error: "inspector API: bearer ADMIN_TOKEN required (or INSPECTOR=open)" });
  }
  if (request.method !== "GET") return json(405, { errcode: "M_UNRECOGNIZED", error: "read-only API" });
  if (parts[0] === "config") return json(200, { serverName: config.serverName, keyId: config.signingKey.keyId, publicKey: publicKeyOf(config.signingKey.seed) });
  if (parts[0] === "rooms" && parts.length === 1) return listRooms(env);
  if (parts[0] === "rooms" && parts.length >= 3) {
    const stub = roomStub(env, parts[1]);
    const info = (await stub.info()) as RoomInfo;
    if (!info.exists) return json(404, { errcode: "M_NOT_FOUND", error: "unknown room" });
    try {
      if (parts[2] === "graph") return json(200, await stub.graph());
      if (parts[2] === "state") return json(200, await stub.currentState());
      if (parts[2] === "events" && parts[3]) return json(200, await stub.eventDetails(parts[3]));
    } catch (e) {
      return json(404, { errcode: "M_NOT_FOUND", error: String((e as Error)?.message ?? e) });
    }
  }
  return json(404, { errcode: "M_UNRECOGNIZED", error: "unknown inspector endpoint" });
}

/** `GET /.well-known/matrix/server` (spec: server discovery): the delegated server name. */
function serverWellKnown(request: Request, config: Config): Response {
  if (request.method !== "GET" && request.method !== "HEAD") return json(405, { errcode: "M_UNRECOGNIZED", error: "GET only" });
  if (!config.wellKnownServer) return json(404, { errcode: "M_NOT_FOUND", error: "WELL_KNOWN_SERVER is not set" });
  return json(200, { "m.server": config.wellKnownServer });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const wellKnown = url.pathname === "/.well-known/matrix/server";
    const api = wellKnown || url.pathname.startsWith("/_matrix/") || url.pathname.startsWith("/_roomdag/");
    if (!api) {
      if (env.ASSETS) return env.ASSETS.fetch(request);
      return new Response("not found", { status: 404 });
    }
    let config: Config;
    try {
      config = configOf(env);
    } catch (e) {
      const problems = e instanceof ConfigError ? e.problems : [String(e)];
      return json(503, { errcode: "M_UNKNOWN", error: "roomdag is misconfigured", problems });
    }
    if (wellKnown) return serverWellKnown(request, config);
    if (url.pathname.startsWith("/_roomdag/")) return roomdagApi(request, env, config, url);
    return federationServer(env, config).handleFederationRequest(request);
  },
} satisfies ExportedHandler<Env>;
