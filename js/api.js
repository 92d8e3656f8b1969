// roomdag's JavaScript API: a thin layer over the WebAssembly core that adds
// what JS needs — asynchronous stores, key fetching over `fetch`, and the
// `Request`/`Response` federation handler. No Matrix algorithm lives here:
// routing, authentication, every check and every answer come from the core.
import * as wasm from "./roomdag_wasm.js";

export { KeyRing } from "./roomdag_wasm.js";
export { MemoryStore, IndexedDbStore, DurableObjectStore } from "./stores.js";

/** Thrown when the wasm module is used before `init()` (browsers, bundlers). */
export class NotInitializedError extends Error {
  constructor() {
    super("roomdag: the WebAssembly module is not initialised yet; call `await init()` first");
    this.name = "NotInitializedError";
  }
}

function call(fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError && /undefined|null/.test(String(e.message)) && !wasmReady()) throw new NotInitializedError();
    throw e;
  }
}

let ready = false;
/** @internal entry points mark the module ready once initialised */
export function markReady() {
  ready = true;
}
function wasmReady() {
  return ready;
}

const json = (text) => JSON.parse(text);
const toText = (pdu) => (typeof pdu === "string" ? pdu : JSON.stringify(pdu));

/** Errors a store or engine raises, with a stable `code`. */
export class RoomdagError extends Error {
  constructor(code, message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RoomdagError";
    this.code = code;
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

  constructor(room, store) {
    this.#room = room;
    this.#store = store;
  }

  /**
   * Opens a room from its store, replaying the stored records (signatures are
   * not verified again). A new, empty room needs `roomVersion`.
   */
  static async open({ store, roomVersion }) {
    const loaded = await store.load();
    const version = loaded.roomVersion ?? roomVersion;
    if (!version) throw new RoomdagError("M_NOT_FOUND", "room not found in the store and no roomVersion given");
    const room = call(() => new wasm.Room(version));
    if (loaded.records.length > 0) {
      const outcomes = json(room.restore(loaded.records.map((r) => r.raw)));
      outcomes.forEach((o, i) => {
        const want = loaded.records[i].status;
        if (o.status !== want) {
          throw new RoomdagError("M_UNKNOWN", `stored record ${loaded.records[i].eventId} replayed as ${o.status}, not ${want}`);
        }
      });
    }
    return new RoomEngine(room, store);
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
   */
  ingest(pdus, keyRing) {
    return this.#serialise(async () => {
      const before = this.#room.eventCount;
      this.#room.begin();
      let outcomes;
      try {
        outcomes = json(this.#room.ingest(pdus.map(toText), keyRing));
      } catch (e) {
        this.#room.rollback();
        throw e;
      }
      const records = json(this.#room.records(before));
      if (records.length > 0) {
        try {
          await this.#store.append(records, { roomVersion: this.roomVersion, roomId: this.roomId });
        } catch (e) {
          this.#room.rollback();
          throw new RoomdagError("M_UNKNOWN", `store write failed; the batch was undone: ${e?.message ?? e}`, e);
        }
      }
      this.#room.commit();
      return outcomes;
    });
  }

  /** Answers a room federation query for an authenticated origin: `{status, body}`. */
  query(method, target, body, origin, serverName, nowMs = Date.now()) {
    const text = body === undefined || body === null ? undefined : toText(body);
    return json(this.#room.federationQuery(method, target, text, origin, serverName, nowMs));
  }

  /** `/state_ids` of an event, as `origin` would get it. */
  stateIds(origin, eventId) {
    return this.#q("GET", `state_ids/${enc(this.roomId)}?event_id=${enc(eventId)}`, undefined, origin);
  }
  /** `/state` of an event (full PDUs). */
  state(origin, eventId) {
    return this.#q("GET", `state/${enc(this.roomId)}?event_id=${enc(eventId)}`, undefined, origin);
  }
  /** `/backfill` from `v` (event IDs), at most `limit` events. */
  backfill(origin, v, limit) {
    const qs = v.map((e) => `v=${enc(e)}`).join("&");
    return this.#q("GET", `backfill/${enc(this.roomId)}?${qs}&limit=${limit}`, undefined, origin);
  }
  /** `/get_missing_events`. */
  getMissingEvents(origin, { earliestEvents, latestEvents, limit, minDepth }) {
    const body = { earliest_events: earliestEvents, latest_events: latestEvents };
    if (limit !== undefined) body.limit = limit;
    if (minDepth !== undefined) body.min_depth = minDepth;
    return this.#q("POST", `get_missing_events/${enc(this.roomId)}`, body, origin);
  }
  /** `/timestamp_to_event`. */
  timestampToEvent(origin, ts, dir) {
    return this.#q("GET", `timestamp_to_event/${enc(this.roomId)}?ts=${ts}&dir=${dir}`, undefined, origin);
  }
  /** `/event`. */
  event(origin, eventId) {
    return this.#q("GET", `event/${enc(eventId)}`, undefined, origin);
  }
  #q(method, path, body, origin) {
    return this.query(method, `/_matrix/federation/v1/${path}`, body, origin, "local");
  }

  /** Whether the room's server ACL admits `server`. */
  aclAllows(server) {
    return this.#room.aclAllows(server);
  }
  /** Whether an event is stored here. */
  hasEvent(eventId) {
    return this.#room.hasEvent(eventId);
  }
  /** The graph (`roomdag-graph/1`). */
  exportGraph() {
    return json(this.#room.exportGraph());
  }
  /** The lane layout: `Uint32Array` of `[lane, row]` per event (arrival order). */
  layout(rows = "depth") {
    return this.#room.layout(rows);
  }
  /** The graph as Graphviz DOT. */
  exportDot(authEdges = false) {
    return this.#room.exportDot(authEdges);
  }
  /** Everything known about one event (status, states, auth chain, visibility). */
  eventDetails(eventId) {
    return json(this.#room.eventDetails(eventId));
  }
  /** The current state and its digest. */
  currentState() {
    return json(this.#room.currentState());
  }
}

function enc(s) {
  return encodeURIComponent(s);
}

/**
 * The rooms a server hosts, each on its own store. `createStore(roomId)`
 * returns the store for a room (existing data is loaded on first use).
 */
export class RoomDirectory {
  #rooms = new Map();
  #createStore;

  constructor({ createStore }) {
    this.#createStore = createStore;
  }

  /** The room, if it exists (in memory or in its store). */
  async get(roomId) {
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
    const existing = await this.get(roomId);
    if (existing) return existing;
    const p = RoomEngine.open({ store: this.#createStore(roomId), roomVersion });
    this.#rooms.set(roomId, p);
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
    for (const e of await this.openRooms()) if (await e.hasEvent(eventId)) return e;
    return undefined;
  }
}

/**
 * Fetches servers' signing keys into a `KeyRing`: from the server itself
 * (`/_matrix/key/v2/server`), then from notaries (`/_matrix/key/v2/query`).
 * Every response is verified before use; concurrent fetches of one server
 * share one request; a server is not asked again within `retryAfterMs`.
 */
export class KeyFetcher {
  #ring;
  #opts;
  #inflight = new Map();
  #fetchedAt = new Map();

  constructor({ keyRing, fetch = globalThis.fetch?.bind(globalThis), keyServerUrl = (s) => `https://${s}`, notaryServers = [], now = () => Date.now(), timeoutMs = 10_000, retryAfterMs = 60_000 }) {
    this.#ring = keyRing;
    this.#opts = { fetch, keyServerUrl, notaryServers, now, timeoutMs, retryAfterMs };
  }

  /** Makes sure `server`'s keys are known; resolves to whether any were added. */
  fetchKeys(server) {
    let p = this.#inflight.get(server);
    if (!p) {
      // Asked recently (a key a PDU names may simply not exist): not again yet.
      const last = this.#fetchedAt.get(server);
      if (last !== undefined && this.#opts.now() - last < this.#opts.retryAfterMs) return Promise.resolve(false);
      this.#fetchedAt.set(server, this.#opts.now());
      p = this.#fetch(server).finally(() => this.#inflight.delete(server));
      this.#inflight.set(server, p);
    }
    return p;
  }

  /** Fetches the keys of every server that signed these PDUs with a key we lack. */
  async ensureForPdus(pdus) {
    const servers = new Set();
    const now = this.#opts.now();
    for (const pdu of pdus) {
      let sigs;
      try {
        sigs = (typeof pdu === "string" ? JSON.parse(pdu) : pdu)?.signatures;
      } catch {
        continue;
      }
      if (!sigs || typeof sigs !== "object") continue;
      for (const [server, keys] of Object.entries(sigs)) {
        if (keys && typeof keys === "object" && !Object.keys(keys).some((k) => this.#ring.hasRequestKey(server, k, now))) servers.add(server);
      }
    }
    await Promise.all([...servers].map((s) => this.fetchKeys(s)));
  }

  async #fetch(server) {
    const { fetch, keyServerUrl, notaryServers, timeoutMs, now } = this.#opts;
    if (!fetch) return false;
    const get = async (url, init) => {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), timeoutMs);
      try {
        const res = await fetch(url, { ...init, signal: ctl.signal });
        return res.ok ? await res.text() : undefined;
      } catch {
        return undefined;
      } finally {
        clearTimeout(timer);
      }
    };
    const direct = await get(`${keyServerUrl(server)}/_matrix/key/v2/server`);
    if (direct) {
      try {
        if (this.#ring.addServerKeys(direct, server, now()) > 0) return true;
      } catch {
        /* fall through to the notaries */
      }
    }
    for (const notary of notaryServers) {
      const text = await get(`${keyServerUrl(notary)}/_matrix/key/v2/query`, {
        method: "POST",
        body: JSON.stringify({ server_keys: { [server]: {} } }),
        headers: { "content-type": "application/json" },
      });
      if (!text) continue;
      try {
        if (this.#ring.addNotaryKeys(text, notary, now()) > 0) return true;
      } catch {
        /* try the next notary */
      }
    }
    return false;
  }
}

/** Parses `TRUSTED_KEYS`-style JSON (server → key ID → base64) into a ring. */
export function pinKeys(keyRing, trustedKeys) {
  for (const [server, keys] of Object.entries(trustedKeys ?? {})) {
    for (const [keyId, b64] of Object.entries(keys)) keyRing.pin(server, keyId, b64);
  }
  return keyRing;
}

const jsonResponse = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/**
 * A federation server for the rooms of a `RoomDirectory`:
 * `handleFederationRequest(request)` answers `/send`, `/event`, `/state`,
 * `/state_ids`, `/backfill`, `/get_missing_events`, `/timestamp_to_event`,
 * `/version` and `/_matrix/key/v2/server`.
 */
export class FederationServer {
  #opts;
  #ring;
  #keys;
  #txns = new Map();

  /**
   * @param {object} opts
   * @param {string} opts.serverName our server name
   * @param {{keyId: string, seed: string}} opts.signingKey our ed25519 key (seed: unpadded base64)
   * @param {RoomDirectory} opts.rooms the rooms
   * @param {Record<string, Record<string, string>>} [opts.trustedKeys] pinned keys: server → key ID → base64
   * @param {string[]} [opts.notaryServers] servers asked for keys when an origin cannot be reached
   * @param {typeof fetch} [opts.fetch] used to fetch keys
   * @param {(server: string) => string} [opts.keyServerUrl] base URL of a server (default `https://{server}`)
   * @param {boolean} [opts.autoCreateRooms] accept a create event for an unknown room (default true)
   * @param {() => number} [opts.now] clock, ms since the epoch
   * @param {number} [opts.txnCacheSize] answered transactions remembered in memory (default 1000)
   * @param {{get(origin: string, txnId: string): Promise<{status: number, body: unknown} | undefined>,
   *          put(origin: string, txnId: string, response: {status: number, body: unknown}): Promise<void>}} [opts.transactions]
   *        a durable log of answered transactions, so that a retried `PUT /send/{txnId}` gets the
   *        first answer even from another process (a Worker isolate) or after a restart
   */
  constructor(opts) {
    if (!opts?.serverName) throw new RoomdagError("M_UNKNOWN", "serverName is required");
    if (!opts.signingKey?.keyId || !opts.signingKey?.seed) throw new RoomdagError("M_UNKNOWN", "signingKey {keyId, seed} is required");
    if (!opts.rooms) throw new RoomdagError("M_UNKNOWN", "rooms (a RoomDirectory) is required");
    this.#opts = {
      notaryServers: [],
      fetch: globalThis.fetch?.bind(globalThis),
      keyServerUrl: (server) => `https://${server}`,
      autoCreateRooms: true,
      now: () => Date.now(),
      keyFetchTimeoutMs: 10_000,
      txnCacheSize: 1000,
      ...opts,
    };
    this.#ring = opts.keyRing ?? call(() => new wasm.KeyRing());
    call(() => wasm.publicKeyOf(opts.signingKey.seed)); // validates the seed now, not on the first request
    this.#ring.pin(opts.serverName, opts.signingKey.keyId, wasm.publicKeyOf(opts.signingKey.seed));
    pinKeys(this.#ring, opts.trustedKeys);
    const o = this.#opts;
    this.#keys = new KeyFetcher({ keyRing: this.#ring, fetch: o.fetch, keyServerUrl: o.keyServerUrl, notaryServers: o.notaryServers, now: o.now, timeoutMs: o.keyFetchTimeoutMs });
  }

  /** The key fetcher (shared with anything else that verifies signatures). */
  get keyFetcher() {
    return this.#keys;
  }

  /** The key ring (pinned and fetched keys). */
  get keyRing() {
    return this.#ring;
  }
  /** Our server name. */
  get serverName() {
    return this.#opts.serverName;
  }

  /** Answers one federation request. Never throws: failures become error responses. */
  async handleFederationRequest(request) {
    try {
      return await this.#handle(request);
    } catch (e) {
      return jsonResponse(500, { errcode: "M_UNKNOWN", error: String(e?.message ?? e) });
    }
  }

  async #handle(request) {
    const url = new URL(request.url);
    const target = url.pathname + url.search;
    const method = request.method.toUpperCase();
    const route = json(wasm.routeRequest(method, target));
    if (route.status) return jsonResponse(route.status, route.body);
    const now = this.#opts.now();
    if (route.endpoint === "server_keys") {
      const { serverName, signingKey } = this.#opts;
      return jsonResponse(200, json(wasm.serverKeysResponse(serverName, signingKey.keyId, signingKey.seed, now, 24 * 3600 * 1000)));
    }
    if (route.endpoint === "version") return jsonResponse(200, { server: { name: "roomdag", version: "0.1.0" } });

    const bodyText = method === "GET" ? "" : await request.text();
    const auth = await this.#authenticate(request, method, target, bodyText, now);
    // An origin whose key cannot be obtained is not authenticated; it still
    // gets the errors any caller would (404 unknown event, 403 not in the
    // room), but never data: a request that would succeed answers 401.
    if (auth.status && !auth.unknownKeyOf) return jsonResponse(auth.status, auth.body);
    const origin = auth.origin ?? auth.unknownKeyOf;
    if (route.endpoint === "send") {
      if (auth.status) return jsonResponse(auth.status, auth.body);
      return this.#send(origin, route.txnId, bodyText);
    }
    let engine;
    if (route.endpoint === "event") {
      engine = await this.#opts.rooms.findEvent(route.eventId);
      if (!engine) return jsonResponse(404, { errcode: "M_NOT_FOUND", error: `Could not find event ${route.eventId}` });
    } else {
      engine = await this.#opts.rooms.get(route.roomId);
      if (!engine) return jsonResponse(404, { errcode: "M_NOT_FOUND", error: `Unknown room ${route.roomId}` });
    }
    const r = await engine.query(method, target, bodyText || undefined, origin, this.#opts.serverName, now);
    if (auth.status && r.status === 200) return jsonResponse(auth.status, auth.body);
    return jsonResponse(r.status, r.body);
  }

  async #authenticate(request, method, target, bodyText, now) {
    const raw = request.headers.get("authorization");
    // Fetch joins repeated headers with ", ": split them back at each scheme.
    const headers = raw ? raw.split(/,\s*(?=X-Matrix\s)/i) : [];
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = json(wasm.authenticateRequest(headers, method, target, bodyText || undefined, this.#opts.serverName, this.#ring, now));
      if (!r.needKey) return r;
      if (attempt === 0 && (await this.#keys.fetchKeys(r.needKey.server))) continue;
      return {
        status: 401,
        body: { errcode: "M_UNAUTHORIZED", error: `No usable key ${r.needKey.keyId} for ${r.needKey.server}` },
        unknownKeyOf: r.needKey.server,
      };
    }
    return { status: 401, body: { errcode: "M_UNAUTHORIZED", error: "key fetch failed" } };
  }

  async #send(origin, txnId, bodyText) {
    const key = `${origin}\u0000${txnId}`;
    const cached = this.#txns.get(key);
    if (cached) {
      const { status, body } = await cached;
      return jsonResponse(status, body);
    }
    const log = this.#opts.transactions;
    const p = (async () => {
      const logged = await log?.get(origin, txnId);
      if (logged) return logged;
      const result = await this.#processTxn(origin, bodyText);
      if (result.status === 200) await log?.put(origin, txnId, result);
      return result;
    })();
    this.#txns.set(key, p);
    let result;
    try {
      result = await p;
    } catch (e) {
      this.#txns.delete(key);
      throw e;
    }
    if (result.status !== 200) this.#txns.delete(key);
    while (this.#txns.size > this.#opts.txnCacheSize) this.#txns.delete(this.#txns.keys().next().value);
    return jsonResponse(result.status, result.body);
  }

  async #processTxn(origin, bodyText) {
    const txn = json(wasm.parseTransaction(bodyText));
    if (txn.status) return txn;
    const results = {};
    for (const [roomId, g] of groupPdusByRoom(txn.pdus)) {
      let engine = await this.#opts.rooms.get(roomId);
      if (!engine && g.createVersion && this.#opts.autoCreateRooms) {
        try {
          engine = await this.#opts.rooms.create(roomId, g.createVersion);
        } catch {
          continue; // an unsupported room version: no entries, like an unknown room
        }
      }
      if (!engine) continue;
      if (!(await engine.aclAllows(origin))) {
        const version = await engine.roomVersion;
        for (const raw of g.pdus) {
          try {
            results[wasm.pduEventId(raw, version)] = { error: "Server is banned from room" };
          } catch {
            /* unparseable: no entry */
          }
        }
        continue;
      }
      await this.#keys.ensureForPdus(g.pdus);
      const outcomes = await engine.ingest(g.pdus, this.#ring);
      for (const o of outcomes) {
        if (!o.eventId) continue;
        results[o.eventId] = o.status === "accepted" || o.status === "duplicate" ? {} : { error: o.reason };
      }
    }
    return { status: 200, body: { pdus: results } };
  }
}

/**
 * Groups PDUs (JSON text) by room, keeping their order within each room.
 * A create event's room is derived (v12: from its hash); PDUs with no
 * recognisable room are left out. Returns `Map<roomId, {pdus, createVersion}>`.
 */
export function groupPdusByRoom(pdus) {
  const groups = new Map();
  for (const pdu of pdus) {
    const raw = toText(pdu);
    const hint = json(call(() => wasm.pduRoom(raw)));
    if (!hint) continue;
    let roomId = hint.roomId;
    if (!roomId && hint.createRoomVersion) {
      try {
        roomId = wasm.createEventRoomId(raw, hint.createRoomVersion);
      } catch {
        continue;
      }
    }
    if (!roomId) continue;
    if (!groups.has(roomId)) groups.set(roomId, { pdus: [], createVersion: undefined });
    const g = groups.get(roomId);
    g.pdus.push(raw);
    g.createVersion ??= hint.createRoomVersion ?? undefined;
  }
  return groups;
}

/** Signs a federation request as `origin`: the `Authorization` header value. */
export function signRequest({ origin, keyId, seed, destination, method, target, body }) {
  return call(() => wasm.signRequest(origin, keyId, seed, destination, method, target, body === undefined ? undefined : toText(body)));
}

/** A server's `/_matrix/key/v2/server` answer, signed. */
export function serverKeysResponse({ serverName, keyId, seed, now = Date.now(), validityMs = 24 * 3600 * 1000 }) {
  return json(call(() => wasm.serverKeysResponse(serverName, keyId, seed, now, validityMs)));
}

/** Signs a JSON object (spec "Signing JSON") as `server`; returns a signed copy. */
export function signJson(object, { server, keyId, seed }) {
  return json(call(() => wasm.signJson(JSON.stringify(object), server, keyId, seed)));
}

/** The public key (unpadded base64) of a signing key seed. */
export function publicKeyOf(seed) {
  return call(() => wasm.publicKeyOf(seed));
}

/** Hashes and signs an event as `server`: `{eventId, pdu}` (tools and tests). */
export function signPdu(pdu, { roomVersion, server, keyId, seed }) {
  return json(call(() => wasm.signPdu(toText(pdu), roomVersion, server, keyId, seed)));
}

/** The redacted form of a PDU (the room version's redaction algorithm). */
export function redactPdu(pdu, roomVersion) {
  return json(call(() => wasm.redactPdu(toText(pdu), roomVersion)));
}

/** The event ID of a PDU in a room version. */
export function eventIdOf(pdu, roomVersion) {
  return call(() => wasm.pduEventId(toText(pdu), roomVersion));
}

const bytesOf = (x) => (typeof x === "string" ? new TextEncoder().encode(x) : x);

/** Replays a fixture and answers its queries (`roomdag-answers/1` object). */
export function replayFixture(fixture, queries) {
  return json(replayFixtureText(fixture, queries));
}

/**
 * Like `replayFixture`, returning the answers as JSON text (byte-identical to
 * the native CLI's). `verify(publicKey, message, signature)`, when given,
 * replaces the built-in ed25519 check (e.g. with the platform's crypto).
 */
export function replayFixtureText(fixture, queries, verify) {
  return call(() => wasm.replayFixture(bytesOf(fixture), bytesOf(queries), verify));
}

/** A fixture's graph: `roomdag-graph/1` object (format "json") or DOT text. */
export function exportFixture(fixture, format = "json", authEdges = false) {
  const bytes = typeof fixture === "string" ? new TextEncoder().encode(fixture) : fixture;
  const out = call(() => wasm.exportFixture(bytes, format, authEdges));
  return format === "json" ? json(out) : out;
}

/** A synthetic demo room (a `matrix-dag-oracle/1` fixture object) of about `events` events. */
export function demoRoom(events = 200) {
  return json(call(() => wasm.demoRoom(events)));
}

/** A read-only room built from a fixture, for inspection. */
export function roomFromFixture(fixture) {
  const bytes = typeof fixture === "string" ? new TextEncoder().encode(fixture) : fixture;
  const room = call(() => wasm.roomFromFixture(bytes));
  return new RoomEngine(room, { load: async () => ({ records: [] }), append: async () => {} });
}
