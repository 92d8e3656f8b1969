// The roomdag Worker: the Matrix federation history endpoints at the edge.
//
//   /_matrix/key/v2/server, /_matrix/federation/v1/*   → FederationServer
//        (authentication and routing here; each room's DAG lives in its own
//         Durable Object, the room's single writer)
//   /_roomdag/admin/*    import rooms, list rooms (bearer ADMIN_TOKEN)
//   /_roomdag/rooms/*    read-only inspector API for the visualizer (bearer
//                        ADMIN_TOKEN unless INSPECTOR is loopback or open)
//   /.well-known/matrix/server   {"m.server": WELL_KNOWN_SERVER} when set, else 404
//   everything else      the visualizer (static assets from www/)
//
// No CORS headers anywhere: the inspector is read same-origin (the visualizer
// is served from here) or with a token.
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
   * `origin`: the server that sent them (its rejected events are bounded).
   */
  ingest(pdus: string[], keyRing: KeyRing, opts: { origin?: string } = {}): Promise<Outcome[]> {
    const verifiedKeys = keyRing.exportKeys(this.#signers(pdus));
    return this.stub.ingest(pdus, opts.origin === undefined ? { verifiedKeys } : { verifiedKeys, origin: opts.origin }) as Promise<Outcome[]>;
  }
  /** Why PDUs from `origin` are refused now (its bound of rejected events), or null. */
  rejectionRefusal(origin: string) {
    return this.stub.rejectionRefusal(origin);
  }
  /** The ACL and the rejection bound in one round trip. */
  admission(origin: string) {
    return this.stub.admission(origin);
  }
  stateAccess(origin: string) {
    return this.stub.stateAccess(origin);
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

/** Rooms known to this isolate: room ID → version (a hosted room is never removed). */
const knownRooms = new WeakMap<Env, Map<string, string>>();
const KNOWN_ROOMS_MAX = 10_000;

/**
 * Rooms on Durable Objects, found by room ID through the directory (so a
 * room ID nobody hosts starts no Durable Object), and, for /event, through
 * the event index.
 */
class DurableRooms {
  constructor(private env: Env) {}
  #known(): Map<string, string> {
    let m = knownRooms.get(this.env);
    if (!m) knownRooms.set(this.env, (m = new Map()));
    return m;
  }
  #remember(roomId: string, roomVersion: string) {
    const m = this.#known();
    m.set(roomId, roomVersion);
    if (m.size > KNOWN_ROOMS_MAX) m.delete(m.keys().next().value as string);
  }
  async get(roomId: string): Promise<RemoteRoom | undefined> {
    let version = this.#known().get(roomId);
    if (version === undefined) {
      version = await directory(this.env).get(roomId);
      if (version === undefined) return undefined;
      this.#remember(roomId, version);
    }
    return new RemoteRoom(roomStub(this.env, roomId), version);
  }
  /** Makes the room; with `createPdu`, only if that create event is accepted (undefined otherwise). */
  async create(roomId: string, roomVersion: string, createPdu?: string, trustKeys?: Record<string, Record<string, string>>): Promise<RemoteRoom | undefined> {
    const stub = roomStub(this.env, roomId);
    const info = (await stub.create(roomVersion, createPdu, trustKeys)) as RoomInfo & { refused?: string };
    if (!info.exists) return undefined;
    const version = info.roomVersion as string;
    await directory(this.env).add(roomId, version);
    this.#remember(roomId, version);
    return new RemoteRoom(stub, version);
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
  async begin(origin: string, txnId: string): Promise<{ response?: TransactionResponse; busy?: boolean }> {
    return (await this.#stub(origin).begin(txnId)) as { response?: TransactionResponse; busy?: boolean };
  }
  async end(origin: string, txnId: string): Promise<void> {
    await this.#stub(origin).end(txnId);
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
        acceptRoomsFrom: config.acceptRoomsFrom,
        onError: (e: unknown) => console.error("roomdag: internal error:", e),
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

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

const INTERNAL_ERROR = { errcode: "M_UNKNOWN", error: "Internal server error" };

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
}

/**
 * The bearer token check, in constant time: both sides are hashed to 32
 * bytes and compared with `crypto.subtle.timingSafeEqual`, so neither the
 * token's length nor its first differing byte shows in the timing.
 * Returns `null` when the token is right, else the 401 answer:
 * `M_MISSING_TOKEN` (no bearer token) or `M_UNAUTHORIZED` (a wrong one).
 */
async function tokenRefusal(request: Request, config: Config, what: string): Promise<Response | null> {
  const h = request.headers.get("authorization") ?? "";
  const m = /^Bearer +(.+)$/i.exec(h.trim());
  const challenge = { "www-authenticate": 'Bearer realm="roomdag"' };
  if (!m) return json(401, { errcode: "M_MISSING_TOKEN", error: `${what}: bearer ADMIN_TOKEN required` }, challenge);
  const [given, expected] = await Promise.all([sha256(m[1]), sha256(config.adminToken)]);
  if (crypto.subtle.timingSafeEqual(given, expected)) return null;
  return json(401, { errcode: "M_UNAUTHORIZED", error: `${what}: wrong bearer token` }, challenge);
}

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * Whether the inspector API answers this request without a token:
 * `INSPECTOR=open`, or `INSPECTOR=loopback` and the request is addressed to
 * a loopback host (its URL's hostname, from the Host header). The Host check
 * is what keeps a DNS-rebinding page or a deployed Worker closed; on a
 * machine where the dev server listens on a public interface anyone can
 * send `Host: localhost`, so `npm start` sets `loopback` only when it binds
 * to loopback.
 */
function inspectorOpenFor(url: URL, config: Config): boolean {
  if (config.inspector === "open") return true;
  return config.inspector === "loopback" && LOOPBACK_HOSTS.has(url.hostname);
}

/** How many PDUs go to a room's Durable Object per call (one atomic storage write each; about 0.1 s of CPU): 500 imports 10,000 PDUs twice as fast as 100 (fewer calls and event-index writes). */
const IMPORT_BATCH = 500;

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
      let list = g.pdus;
      if (!room && g.createVersion) {
        // Only an accepted create event makes the room; it goes first.
        const create = g.create as string;
        room = await rooms.create(roomId, g.createVersion, create, trust);
        list = [create, ...g.pdus.filter((p) => p !== create)];
      }
      if (!room) {
        counts.dropped += g.pdus.length;
        continue;
      }
      const outcomes = (await roomStub(env, roomId).ingest(list, trust ? { trustKeys: trust } : {})) as Outcome[];
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
      console.error("roomdag: import failed:", e);
      await emit({ error: "import failed (see the Worker's log)" });
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

/**
 * A page of the hosted rooms: `?from=<roomId>&limit=<n>` (default 100, at
 * most 1000); `next_batch` is the `from` of the next page, when there is one.
 */
async function listRooms(env: Env, url: URL): Promise<Response> {
  const from = url.searchParams.get("from") ?? undefined;
  const page = await directory(env).list(from, Number(url.searchParams.get("limit") ?? 100));
  const infos = await Promise.all(page.rooms.map(async (r) => ({ ...r, ...((await roomStub(env, r.roomId).info()) as RoomInfo) })));
  const rooms = infos.map(({ roomId, roomVersion, eventCount }) => ({ roomId, roomVersion, eventCount }));
  const defaultRoom = env.DEFAULT_ROOM?.trim() || undefined;
  return json(200, page.next === undefined ? { rooms, defaultRoom } : { rooms, next_batch: page.next, defaultRoom });
}

/** The path's segments after `/_roomdag/`, percent-decoded; `null` for a malformed escape. */
function segments(url: URL): string[] | null {
  try {
    return url.pathname.split("/").slice(2).map(decodeURIComponent);
  } catch {
    return null;
  }
}

const BAD_PATH = { errcode: "M_INVALID_PARAM", error: "malformed percent-encoding in the path" };

async function roomdagApi(request: Request, env: Env, config: Config, url: URL): Promise<Response> {
  // Credentials first: nothing is decoded, looked up or loaded for a refused request.
  if (url.pathname.startsWith("/_roomdag/admin/") || url.pathname === "/_roomdag/admin") {
    const refused = await tokenRefusal(request, config, "admin API");
    if (refused) return refused;
    const parts = segments(url);
    if (!parts) return json(400, BAD_PATH);
    if (parts[1] === "import" && request.method === "POST") return importRoom(request, env);
    if (parts[1] === "join" && request.method === "POST") return joinRoom(request, env, config);
    if (parts[1] === "leave" && request.method === "POST") return leaveRoom(request, env, config);
    if (parts[1] === "status" && parts[2] && request.method === "GET") {
      return json(200, (await roomStub(env, parts[2]).mirrorStatus()) as object);
    }
    if (parts[1] === "rooms" && request.method === "GET") return listRooms(env, url);
    return json(404, { errcode: "M_UNRECOGNIZED", error: "unknown admin endpoint" });
  }
  if (!inspectorOpenFor(url, config)) {
    const refused = await tokenRefusal(request, config, "inspector API");
    if (refused) return refused;
  }
  const parts = segments(url);
  if (!parts) return json(400, BAD_PATH);
  if (request.method !== "GET") return json(405, { errcode: "M_UNRECOGNIZED", error: "read-only API" });
  if (parts[0] === "config") return json(200, { serverName: config.serverName, keyId: config.signingKey.keyId, publicKey: publicKeyOf(config.signingKey.seed) });
  if (parts[0] === "rooms" && parts.length === 1) return listRooms(env, url);
  if (parts[0] === "rooms" && parts.length >= 3) {
    if ((await directory(env).get(parts[1])) === undefined) return json(404, { errcode: "M_NOT_FOUND", error: "unknown room" });
    const stub = roomStub(env, parts[1]);
    if (parts[2] === "graph") return json(200, await stub.graph());
    if (parts[2] === "state") return json(200, await stub.currentState());
    if (parts[2] === "events" && parts[3]) {
      if (!(await stub.hasEvent(parts[3]))) return json(404, { errcode: "M_NOT_FOUND", error: "unknown event" });
      return json(200, await stub.eventDetails(parts[3]));
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
    if (url.pathname.startsWith("/_roomdag/")) {
      try {
        return await roomdagApi(request, env, config, url);
      } catch (e) {
        console.error("roomdag: internal error:", e);
        return json(500, INTERNAL_ERROR);
      }
    }
    return federationServer(env, config).handleFederationRequest(request);
  },
} satisfies ExportedHandler<Env>;
