// The federation server: Request → Response for the federation endpoints.
//
// Order of work for every request (docs/security.md): route (no I/O) →
// declared body size → X-Matrix headers and the origin's key (fetched if
// needed) → the body, read with a cap → the signature → only then rooms,
// indexes and PDUs. A request that fails a step gets its error and nothing
// after that step runs.
import { wasm, call, ensureReady, json, toText, RoomdagError } from "./common.js";
import { RoomMirror } from "./mirror.js";
import { KeyFetcher, pinKeys, notariesFrom } from "./keys.js";
import { FederationClient } from "./client.js";
import { KeyRing } from "./keyring.js";
import * as check from "./check.js";

const jsonResponse = (status, body) =>
  new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

let limits;
/** The core's serving limits (`maxBodyBytes`, `maxTxnPdus`, `maxTxnIdBytes`, `maxReasonBytes`…). */
export function servingLimits() {
  limits ??= json(call(() => wasm.servingLimits()));
  return limits;
}

/** How long and how much `/state` and `/state_ids` answers are kept (Synapse's `ResponseCache`s for them: 30 s). */
/**
 * The size of the wasm module's memory in bytes: the most the engine has
 * held at once, every room of this isolate together (it never shrinks).
 */
export function wasmMemoryBytes() {
  return call(() => wasm.wasmMemoryBytes());
}

export const STATE_CACHE = { ttlMs: 30_000, maxEntries: 64, maxBytes: 16 * 1024 * 1024 };

/**
 * Longest per-PDU `error` in a `/send` answer, in bytes: core reasons are
 * at most 256 bytes, key-fetch explanations are appended to them; the cap
 * keeps a 50-PDU answer far below what a transaction log value holds.
 */
export const MAX_PDU_ERROR_BYTES = 1024;

const encoder = new TextEncoder();
/** `text` cut to at most `max` UTF-8 bytes on a character boundary, ending with `…` when cut. */
function bounded(text, max = MAX_PDU_ERROR_BYTES) {
  const s = String(text);
  if (encoder.encode(s).byteLength <= max) return s;
  let out = "";
  let bytes = 0;
  for (const ch of s) {
    const n = encoder.encode(ch).byteLength;
    if (bytes + n > max - 3) break;
    out += ch;
    bytes += n;
  }
  return `${out}…`;
}

const TOO_MANY_TRANSACTIONS = { status: 429, body: { errcode: "M_LIMIT_EXCEEDED", error: "Too many concurrent transactions" } };
const INTERNAL_ERROR = { errcode: "M_UNKNOWN", error: "Internal server error" };

/**
 * `acceptRoomsFrom` as a predicate: `"*"` (any origin), or server names as
 * an array or a comma-separated string. Default: none.
 */
export function roomsAcceptedFrom(spec) {
  const names = Array.isArray(spec) ? spec : String(spec ?? "").split(",");
  const set = new Set(names.map((s) => String(s).trim().toLowerCase()).filter(Boolean));
  if (set.has("*")) return () => true;
  return (origin) => set.has(origin.toLowerCase());
}

/**
 * A federation server for the rooms of a `RoomDirectory`:
 * `handleFederationRequest(request)` answers `/send`, `/event`, `/state`,
 * `/state_ids`, `/backfill`, `/get_missing_events`, `/timestamp_to_event`,
 * `/event_auth`, `/version` and `/_matrix/key/v2/server`.
 */
export class FederationServer {
  #participant;
  #opts;
  #ring;
  #keys;
  #acceptsRoomsFrom;
  #client;
  /** origin NUL txnId → the answer (in flight, or recent). */
  #txns = new Map();
  /** origin → the transaction ID being processed for it (one at a time, like Synapse). */
  #activeTxn = new Map();
  #stateCache = new AnswerCache(STATE_CACHE);

  /**
   * @param {object} opts
   * @param {string} opts.serverName our server name
   * @param {{keyId: string, seed: string}} opts.signingKey our ed25519 key (seed: unpadded base64)
   * @param {RoomDirectory} opts.rooms the rooms
   * @param {Record<string, Record<string, string>>} [opts.trustedKeys] pinned keys: server → key ID → base64
   * @param {(string | {serverName: string, verifyKeys: Record<string, string>})[]} [opts.notaryServers]
   *        notaries asked for keys (before the server itself, as Synapse); a name alone takes its
   *        keys from `trustedKeys`; their answers are verified with those keys only
   * @param {FederationClient} [opts.federationClient] the client keys are fetched with (default: one
   *        built from `fetch`, `keyServerUrl`, `allowPrivateAddresses`, `resolveSrv`, `resolveHost`)
   * @param {typeof fetch} [opts.fetch] used to fetch keys
   * @param {string | ((server: string) => string)} [opts.keyServerUrl] base URL used instead of server
   *        discovery (a `{server}` template or a function; tests)
   * @param {boolean} [opts.allowPrivateAddresses] allow key fetches from loopback/private addresses
   * @param {number} [opts.maxKeyServersPerTransaction] servers whose keys one `/send` may make us fetch (10)
   * @param {(entry: object) => void} [opts.log] federation and key-fetch failures
   * @param {string | string[]} [opts.acceptRoomsFrom] origins whose `/send` may start a room we do not
   *        hold with a valid create event: server names (array or comma-separated), or `"*"` for any.
   *        Default: none — PDUs for rooms we do not hold are ignored.
   * @param {RoomMirror | boolean} [opts.participant] take part in rooms: fill gaps before pushed PDUs
   *        (`/get_missing_events`), accept invites and join (a `RoomMirror`, or `true` for one built
   *        from these options)
   * @param {string[] | "*"} [opts.acceptInvitesFrom] servers whose invites for our join user are
   *        accepted (default none: 403)
   * @param {string} [opts.joinLocalpart] our join user's localpart (default "roomdag")
   * @param {(accepted: {roomId: string, roomVersion: string, inviterServer: string}) => void} [opts.onInvite]
   *        called once an invite is accepted (default: join the room in the background)
   * @param {() => number} [opts.now] clock, ms since the epoch
   * @param {number} [opts.txnCacheSize] answered transactions remembered in memory (default 1000)
   * @param {(error: unknown, context: {request?: Request}) => void} [opts.onError] where internal
   *        errors go (default `console.error`); a 500 answer never carries them
   * @param {{get(origin: string, txnId: string): Promise<{status: number, body: unknown} | undefined>,
   *          put(origin: string, txnId: string, response: {status: number, body: unknown}): Promise<void>,
   *          begin?(origin: string, txnId: string): Promise<{response?: {status: number, body: unknown}, busy?: boolean}>,
   *          end?(origin: string, txnId: string): Promise<void>}} [opts.transactions]
   *        a durable log of answered transactions, so that a retried `PUT /send/{txnId}` gets the
   *        first answer even from another process (a Worker isolate) or after a restart; with
   *        `begin`/`end` it also lets one transaction per origin run at a time across processes
   */
  constructor(opts) {
    checkOptions(opts);
    this.#opts = {
      notaryServers: [],
      fetch: globalThis.fetch?.bind(globalThis),
      now: () => Date.now(),
      keyFetchTimeoutMs: 10_000,
      txnCacheSize: 1000,
      onError: (error) => console.error("roomdag: internal error:", error),
      ...opts,
    };
    this.#acceptsRoomsFrom = roomsAcceptedFrom(opts.acceptRoomsFrom);
    this.#ring = opts.keyRing ?? new KeyRing();
    this.#ring.pin(opts.serverName, opts.signingKey.keyId, wasm.publicKeyOf(opts.signingKey.seed));
    pinKeys(this.#ring, check.trustedKeys("FederationServer", "trustedKeys", opts.trustedKeys));
    const o = this.#opts;
    const client = (this.#client =
      o.federationClient ??
      new FederationClient({ serverName: o.serverName, signingKey: o.signingKey, fetch: o.fetch, baseUrl: o.keyServerUrl, allowPrivateAddresses: o.allowPrivateAddresses,
        resolveSrv: o.resolveSrv, resolveHost: o.resolveHost, now: o.now, log: o.log }));
    this.#keys = new KeyFetcher({ keyRing: this.#ring, client, notaryServers: notariesFrom(o.notaryServers, o.trustedKeys), now: o.now,
      timeoutMs: o.keyFetchTimeoutMs, maxServersPerBatch: o.maxKeyServersPerTransaction, log: o.log });
    this.#participant =
      o.participant === true
        ? new RoomMirror({ serverName: o.serverName, signingKey: o.signingKey, rooms: o.rooms, client, keys: this.#keys, keyRing: this.#ring, joinLocalpart: o.joinLocalpart, log: o.log })
        : o.participant || undefined;
  }

  /** The room participant (joins, gap filling, invites), when configured. */
  get participant() {
    return this.#participant;
  }

  /** The outbound federation client (key fetches; shared discovery cache and backoff). */
  get federationClient() {
    return this.#client;
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
      try {
        this.#opts.onError(e, { request });
      } catch {
        /* a failing logger must not turn a 500 into a throw */
      }
      return jsonResponse(500, INTERNAL_ERROR);
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
    if (route.endpoint === "version") return jsonResponse(200, json(wasm.versionBody()));

    // 1. A declared body over the limit is refused unread (Synapse: 413 at the HTTP layer).
    const max = servingLimits().maxBodyBytes;
    const declared = request.headers.get("content-length");
    if (method !== "GET" && declared !== null && Number(declared) > max) return tooLarge(max);
    // 2. Headers and key: a request that cannot authenticate costs no body read.
    const raw = request.headers.get("authorization");
    // Fetch joins repeated headers with ", ": split them back at each scheme.
    const headers = raw ? raw.split(/,\s*(?=X-Matrix\s)/i) : [];
    const pre = await this.#checkHeaders(headers, now);
    if (!pre.origin) return jsonResponse(pre.status, pre.body);
    // 3. The body, at most `max` bytes, then 4. the signature over it.
    let bodyText = "";
    if (method !== "GET") {
      const read = await readBody(request, max);
      if (read.status) return jsonResponse(read.status, read.body);
      bodyText = read.text;
    }
    const auth = json(wasm.authenticateRequest(headers, method, target, bodyText || undefined, this.#opts.serverName, this.#ring, now));
    if (!auth.origin) {
      if (auth.needKey) return jsonResponse(401, { errcode: "M_UNAUTHORIZED", error: `No usable key ${auth.needKey.keyId} for ${auth.needKey.server}` });
      return jsonResponse(auth.status, auth.body);
    }
    const origin = auth.origin;

    // Authenticated: now rooms, indexes and PDUs.
    if (route.endpoint === "send") return this.#send(origin, route.txnId, bodyText);
    if (route.endpoint === "invite") return this.#invite(origin, route, bodyText);
    const body = bodyText || undefined;
    if (route.endpoint === "event") {
      const engine = await this.#opts.rooms.findEvent(route.eventId);
      if (!engine) return jsonResponse(404, { errcode: "M_NOT_FOUND", error: `Could not find event ${route.eventId}` });
      const r = await engine.query(method, target, body, origin, this.#opts.serverName, now);
      return jsonResponse(r.status, r.body);
    }
    const engine = await this.#opts.rooms.get(route.roomId);
    if (!engine) {
      const r = json(wasm.unknownRoomQuery(method, target, body, origin, this.#opts.serverName, now));
      return jsonResponse(r.status, r.body);
    }
    if ((route.endpoint === "state" || route.endpoint === "state_ids") && engine.stateAccess) {
      const eventId = url.searchParams.get("event_id");
      if (eventId !== null) return this.#stateQuery(engine, route, eventId, method, target, origin, now);
    }
    const r = await engine.query(method, target, body, origin, this.#opts.serverName, now);
    return jsonResponse(r.status, r.body);
  }

  /** The header checks, fetching the origin's keys once if we lack them. */
  async #checkHeaders(headers, now) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = json(wasm.authenticateHeaders(headers, this.#opts.serverName, this.#ring, now));
      if (!r.needKey) return r;
      const fetched = attempt === 0 ? await this.#keys.fetchKeys(r.needKey.server) : { ok: false, reason: "the fetched keys do not include it" };
      if (fetched.ok) continue;
      return { status: 401, body: { errcode: "M_UNAUTHORIZED", error: `No usable key ${r.needKey.keyId} for ${r.needKey.server}: ${fetched.reason}` } };
    }
    return { status: 401, body: { errcode: "M_UNAUTHORIZED", error: "key fetch failed" } };
  }

  /**
   * `/state` and `/state_ids`: identical requests (room, event) share one
   * computation while it runs, and its 200 answer for `STATE_CACHE.ttlMs`
   * (Synapse `_state_resp_cache` / `_state_ids_resp_cache`, 30 s). Every
   * caller's own access (joined, ACL) is checked before a shared answer.
   */
  async #stateQuery(engine, route, eventId, method, target, origin, now) {
    const key = `${route.endpoint}\u0000${route.roomId}\u0000${eventId}`;
    const shared = this.#stateCache.get(key, now);
    if (shared) {
      const denied = await engine.stateAccess(origin);
      if (denied) return jsonResponse(denied.status, denied.body);
      const r = await shared;
      if (r.status === 200) return jsonResponse(200, r.text);
    }
    const p = Promise.resolve(engine.query(method, target, undefined, origin, this.#opts.serverName, now)).then((r) => ({
      status: r.status,
      text: JSON.stringify(r.body),
    }));
    if (!shared) this.#stateCache.start(key, p, now);
    const r = await p;
    return jsonResponse(r.status, r.text);
  }

  async #send(origin, txnId, bodyText) {
    const key = `${origin}\u0000${txnId}`;
    const cached = this.#txns.get(key);
    if (cached) {
      const { status, body } = await cached;
      return jsonResponse(status, body);
    }
    // One transaction per origin at a time (Synapse `on_incoming_transaction`:
    // another one in flight → 429, not remembered, so the sender retries).
    // Checked and set with no await in between.
    const active = this.#activeTxn.get(origin);
    if (active !== undefined && active !== txnId) return jsonResponse(TOO_MANY_TRANSACTIONS.status, TOO_MANY_TRANSACTIONS.body);
    this.#activeTxn.set(origin, txnId);
    const p = this.#runTxn(origin, txnId, bodyText).finally(() => {
      if (this.#activeTxn.get(origin) === txnId) this.#activeTxn.delete(origin);
    });
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

  /** One transaction: its logged answer, or a refusal while another of the origin's runs elsewhere, or its processing. */
  async #runTxn(origin, txnId, bodyText) {
    const log = this.#opts.transactions;
    let lease;
    if (log?.begin) lease = await log.begin(origin, txnId);
    else lease = { response: await log?.get(origin, txnId) };
    if (lease?.response) return lease.response;
    if (lease?.busy) return TOO_MANY_TRANSACTIONS;
    let result;
    try {
      result = await this.#processTxn(origin, bodyText);
    } catch (e) {
      await log?.end?.(origin, txnId).catch(() => {});
      throw e;
    }
    try {
      if (result.status === 200) await log?.put(origin, txnId, result);
      else await log?.end?.(origin, txnId);
    } catch (e) {
      // The PDUs are processed; a retry re-sends them and they are duplicates.
      this.#opts.onError(e, {});
    }
    return result;
  }

  /**
   * Stores pushed PDUs: through the room itself when it fills its own gaps
   * (a Durable Object), else through the participant (gap filling), else as
   * they are (prev events must be held).
   */
  async #receive(engine, pdus, origin, now) {
    if (typeof engine.receive === "function") return engine.receive(pdus, origin, this.#ring);
    if (this.#participant && typeof engine.unplacedPrevEvents === "function") return (await this.#participant.receive(engine, pdus, origin)).outcomes;
    return engine.ingest(pdus, this.#ring, { origin, now });
  }

  /**
   * `PUT /invite` (v1, v2): only for our join user, only from servers in
   * `acceptInvitesFrom` (403 otherwise, before anything else is done); the
   * inviter's keys are fetched, the invite checked and countersigned, and
   * the room joined in the background (`onInvite`).
   */
  async #invite(origin, route, bodyText) {
    const from = this.#opts.acceptInvitesFrom ?? [];
    const allowed = from === "*" || (Array.isArray(from) && (from.includes("*") || from.includes(origin)));
    if (!this.#participant || !allowed) {
      this.#opts.log?.({ level: "info", code: "invite_refused", server: origin, message: `invite to ${route.roomId} refused: ${origin} is not in ACCEPT_INVITES_FROM` });
      return jsonResponse(403, { errcode: "M_FORBIDDEN", error: `this server does not accept invites from ${origin}` });
    }
    let body;
    try {
      body = JSON.parse(bodyText);
    } catch {
      return jsonResponse(400, { errcode: "M_NOT_JSON", error: "the body is not JSON" });
    }
    const event = route.v2 ? body?.event : body;
    const version = route.v2 ? body?.room_version : "1";
    if (event && typeof version === "string") {
      try {
        await this.#keys.ensureForPdus([JSON.stringify(event)], version);
      } catch {
        /* an unsupported version or a broken event: acceptInvite says which */
      }
    }
    const r = this.#participant.acceptInvite({ body: bodyText, v2: route.v2, roomId: route.roomId, eventId: route.eventId, origin });
    if (r.accepted) {
      // onInvite schedules the join (it is awaited: in a Worker, work after
      // the answer may not run); by default the join runs in the background.
      const onInvite =
        this.#opts.onInvite ??
        ((a) => {
          this.#participant.join(a.roomId, [a.inviterServer]).catch((e) =>
            this.#opts.log?.({ level: "warn", code: "join_failed", server: a.inviterServer, message: `join of ${a.roomId} after an invite failed: ${e?.message ?? e}` }),
          );
        });
      await onInvite(r.accepted);
    }
    return jsonResponse(r.status, r.body);
  }

  async #processTxn(origin, bodyText) {
    const txn = json(wasm.parseTransaction(bodyText));
    if (txn.status) return txn;
    const results = {};
    const now = this.#opts.now();
    for (const g of json(wasm.groupPdus(txn.pdus))) {
      let pdus = g.pdus.map((i) => txn.pdus[i]);
      let engine = await this.#opts.rooms.get(g.roomId);
      if (!engine) {
        engine = await this.#startRoom(origin, g, txn.pdus, results);
        if (!engine) continue;
        // The create event first: it is what the rest of the room needs.
        pdus = [txn.pdus[g.create.index], ...g.pdus.filter((i) => i !== g.create.index).map((i) => txn.pdus[i])];
      }
      // Admission, before any work on the PDUs: the server ACL, then the
      // origin's bound of rejected events (gap filling included) — one call
      // when the room answers both (a Durable Object: one round trip).
      const admission = typeof engine.admission === "function" ? await engine.admission(origin, now) : { aclAllows: await engine.aclAllows(origin) };
      if (!admission.aclAllows) {
        const version = await engine.roomVersion;
        for (const raw of pdus) {
          try {
            results[wasm.pduEventId(raw, version)] = { error: "Server is banned from room" };
          } catch {
            /* unparseable: no entry */
          }
        }
        continue;
      }
      // An origin past its bound of rejected events: refused before any work (gap filling included).
      const refusal = "refusal" in admission ? admission.refusal : await engine.rejectionRefusal?.(origin, now);
      if (refusal) {
        const version = await engine.roomVersion;
        for (const raw of pdus) {
          try {
            results[wasm.pduEventId(raw, version)] = { error: bounded(refusal) };
          } catch {
            /* unparseable: no entry */
          }
        }
        continue;
      }
      const checked = await this.#keys.ensureForPdus(pdus, await engine.roomVersion);
      const outcomes = checked.explain(checked.pdus.length ? await this.#receive(engine, checked.pdus, origin, now) : []);
      for (const o of outcomes) {
        if (!o.eventId) continue;
        results[o.eventId] = o.status === "accepted" || o.status === "duplicate" ? {} : { error: bounded(o.reason) };
      }
    }
    return { status: 200, body: { pdus: results } };
  }

  /**
   * PDUs for a room we do not hold. Like Synapse (`_handle_pdus_in_txn`:
   * unknown room → skipped) they are ignored and get no answer entry — their
   * event IDs cannot even be computed without the room's version — except a
   * create event: it says why it did not start a room. Only an origin in
   * `acceptRoomsFrom` starts a room, and only with a create event that
   * passes every check (parse, signatures, hash, auth) before anything is
   * created or stored.
   */
  async #startRoom(origin, g, all, results) {
    if (!g.create) return undefined;
    const raw = all[g.create.index];
    const version = g.create.roomVersion;
    let eventId;
    try {
      eventId = wasm.pduEventId(raw, version);
    } catch {
      return undefined; // an unsupported room version, or no PDU at all: no entry
    }
    if (!this.#acceptsRoomsFrom(origin)) {
      results[eventId] = { error: bounded(`This server does not accept new rooms from ${origin}`) };
      return undefined;
    }
    const keys = await this.#keys.ensureForPdus([raw], version);
    const checked = keys.pdus.length ? json(wasm.checkCreateEvent(raw, version, this.#ring)) : { error: keys.refused[0]?.reason ?? "not checked" };
    if (checked.error || checked.roomId !== g.roomId) {
      const why = [...keys.failures].map(([s, r]) => `keys of ${s} could not be fetched: ${r}`);
      const reason = checked.error ?? `it is for ${checked.roomId}`;
      results[eventId] = { error: bounded(`Create event refused: ${reason}${why.length ? ` (${why.join("; ")})` : ""}`) };
      return undefined;
    }
    return this.#opts.rooms.create(g.roomId, version);
  }
}

/** 413 `M_TOO_LARGE`. */
function tooLarge(max) {
  return jsonResponse(413, { errcode: "M_TOO_LARGE", error: `Request body larger than ${max} bytes` });
}

/** The constructor's argument checks: a wrong option fails here, not on the first request. */
function checkOptions(opts) {
  ensureReady();
  const where = "FederationServer";
  check.object(where, "options", opts, "an object {serverName, signingKey, rooms, …}");
  check.name(where, "serverName", opts.serverName);
  check.object(where, "signingKey", opts.signingKey, "an object {keyId, seed}");
  check.name(where, "signingKey.keyId", opts.signingKey.keyId);
  check.seed(where, "signingKey.seed", opts.signingKey.seed);
  check.methods(where, "rooms", opts.rooms, ["get", "create", "findEvent"], "a RoomDirectory");
  // Notaries: server names (their keys from trustedKeys) or {serverName, verifyKeys}; notariesFrom checks each.
  if (opts.notaryServers !== undefined && !Array.isArray(opts.notaryServers)) check.stringArray(where, "notaryServers", opts.notaryServers);
  if (opts.keyRing !== undefined) check.keyRing(where, "keyRing", opts.keyRing);
  for (const f of ["fetch", "now", "onInvite"]) if (opts[f] !== undefined) check.func(where, f, opts[f]);
  if (opts.keyServerUrl !== undefined && typeof opts.keyServerUrl !== "string") check.func(where, "keyServerUrl", opts.keyServerUrl);
  if (opts.joinLocalpart !== undefined) check.string(where, "joinLocalpart", opts.joinLocalpart);
  if (opts.acceptInvitesFrom !== undefined && opts.acceptInvitesFrom !== "*") check.stringArray(where, "acceptInvitesFrom", opts.acceptInvitesFrom);
  if (opts.participant !== undefined && typeof opts.participant !== "boolean") check.methods(where, "participant", opts.participant, ["receive", "acceptInvite", "join"], "a RoomMirror or true");
  if (opts.autoCreateRooms !== undefined) throw check.invalid(where, "autoCreateRooms", "was replaced by acceptRoomsFrom (origins whose /send may start a room; default none)");
  if (opts.acceptRoomsFrom !== undefined && typeof opts.acceptRoomsFrom !== "string") check.stringArray(where, "acceptRoomsFrom", opts.acceptRoomsFrom);
  if (opts.onError !== undefined) check.func(where, "onError", opts.onError);
  if (opts.keyFetchTimeoutMs !== undefined) check.number(where, "keyFetchTimeoutMs", opts.keyFetchTimeoutMs);
  if (opts.txnCacheSize !== undefined) check.integer(where, "txnCacheSize", opts.txnCacheSize, 0, Number.MAX_SAFE_INTEGER);
  if (opts.transactions !== undefined) check.methods(where, "transactions", opts.transactions, ["get", "put"], "a transaction log");
}

/**
 * Reads a request body as UTF-8 text, at most `max` bytes: `{text}`, or
 * `{status, body}` (413 past the cap — the rest is not read; 400 for text
 * that is not UTF-8).
 */
async function readBody(request, max) {
  if (!request.body) return { text: "" };
  const reader = request.body.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      reader.cancel().catch(() => {});
      const r = tooLarge(max);
      return { status: r.status, body: await r.json() };
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.byteLength;
  }
  try {
    return { text: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
  } catch {
    return { status: 400, body: { errcode: "M_NOT_JSON", error: "Content not JSON: not UTF-8" } };
  }
}

/**
 * Answers shared by identical requests: an entry is a promise of
 * `{status, text}`; a 200 answer stays for `ttlMs`, others are forgotten
 * once settled. At most `maxEntries` entries and `maxBytes` of answer text
 * (the oldest go first; an answer bigger than `maxBytes` is not kept).
 */
class AnswerCache {
  #opts;
  #entries = new Map();
  #bytes = 0;

  constructor(opts) {
    this.#opts = opts;
  }

  get(key, now) {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires !== undefined && e.expires <= now) {
      this.#drop(key);
      return undefined;
    }
    return e.promise;
  }

  start(key, promise, now) {
    const entry = { promise, expires: undefined, bytes: 0 };
    this.#entries.set(key, entry);
    promise.then(
      (r) => {
        if (this.#entries.get(key) !== entry) return;
        if (r.status !== 200 || r.text.length > this.#opts.maxBytes) return this.#drop(key);
        entry.expires = now + this.#opts.ttlMs;
        entry.bytes = r.text.length;
        this.#bytes += entry.bytes;
        this.#trim();
      },
      () => this.#entries.get(key) === entry && this.#drop(key),
    );
    this.#trim();
  }

  #drop(key) {
    const e = this.#entries.get(key);
    if (!e) return;
    this.#bytes -= e.bytes;
    this.#entries.delete(key);
  }

  #trim() {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#opts.maxEntries && this.#bytes <= this.#opts.maxBytes) break;
      this.#drop(key);
    }
  }
}

/**
 * Groups PDUs (objects or JSON text) by room, keeping their order within
 * each room. A create event's room is derived (v12: from its hash); PDUs
 * with no recognisable room are left out. Returns
 * `Map<roomId, {pdus, createVersion, create}>` (`create`: the room's first
 * create event, as text).
 */
export function groupPdusByRoom(pdus) {
  ensureReady();
  check.pdus("groupPdusByRoom", "pdus", pdus);
  const raws = pdus.map(toText);
  const groups = new Map();
  for (const g of json(call("groupPdusByRoom", "M_BAD_JSON", () => wasm.groupPdus(raws)))) {
    groups.set(g.roomId, { pdus: g.pdus.map((i) => raws[i]), createVersion: g.create?.roomVersion ?? undefined, create: g.create ? raws[g.create.index] : undefined });
  }
  return groups;
}
