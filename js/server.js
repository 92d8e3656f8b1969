// The federation server: Request → Response for the federation endpoints.
import { wasm, call, ensureReady, json, toText, RoomdagError } from "./common.js";
import { RoomMirror } from "./mirror.js";
import { KeyFetcher, pinKeys, notariesFrom } from "./keys.js";
import { FederationClient } from "./client.js";
import { KeyRing } from "./keyring.js";
import * as check from "./check.js";

const jsonResponse = (status, body) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

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
  #client;
  #txns = new Map();

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
   * @param {boolean} [opts.autoCreateRooms] accept a create event for an unknown room (default true)
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
   * @param {{get(origin: string, txnId: string): Promise<{status: number, body: unknown} | undefined>,
   *          put(origin: string, txnId: string, response: {status: number, body: unknown}): Promise<void>}} [opts.transactions]
   *        a durable log of answered transactions, so that a retried `PUT /send/{txnId}` gets the
   *        first answer even from another process (a Worker isolate) or after a restart
   */
  constructor(opts) {
    checkOptions(opts);
    this.#opts = {
      notaryServers: [],
      fetch: globalThis.fetch?.bind(globalThis),
      autoCreateRooms: true,
      now: () => Date.now(),
      keyFetchTimeoutMs: 10_000,
      txnCacheSize: 1000,
      ...opts,
    };
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
    if (route.endpoint === "version") return jsonResponse(200, json(wasm.versionBody()));

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
    if (route.endpoint === "invite") {
      if (auth.status) return jsonResponse(auth.status, auth.body);
      return this.#invite(origin, route, bodyText);
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
      const fetched = attempt === 0 ? await this.#keys.fetchKeys(r.needKey.server) : { ok: false, reason: "the fetched keys do not include it" };
      if (fetched.ok) continue;
      return {
        status: 401,
        body: { errcode: "M_UNAUTHORIZED", error: `No usable key ${r.needKey.keyId} for ${r.needKey.server}: ${fetched.reason}` },
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

  /**
   * Stores pushed PDUs: through the room itself when it fills its own gaps
   * (a Durable Object), else through the participant (gap filling), else as
   * they are (prev events must be held).
   */
  async #receive(engine, pdus, origin) {
    if (typeof engine.receive === "function") return engine.receive(pdus, origin, this.#ring);
    if (this.#participant && typeof engine.unplacedPrevEvents === "function") return (await this.#participant.receive(engine, pdus, origin)).outcomes;
    return engine.ingest(pdus, this.#ring);
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
      const checked = await this.#keys.ensureForPdus(g.pdus, await engine.roomVersion);
      const outcomes = checked.explain(checked.pdus.length ? await this.#receive(engine, checked.pdus, origin) : []);
      for (const o of outcomes) {
        if (!o.eventId) continue;
        results[o.eventId] = o.status === "accepted" || o.status === "duplicate" ? {} : { error: o.reason };
      }
    }
    return { status: 200, body: { pdus: results } };
  }
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
  if (opts.autoCreateRooms !== undefined) check.boolean(where, "autoCreateRooms", opts.autoCreateRooms);
  if (opts.keyFetchTimeoutMs !== undefined) check.number(where, "keyFetchTimeoutMs", opts.keyFetchTimeoutMs);
  if (opts.txnCacheSize !== undefined) check.integer(where, "txnCacheSize", opts.txnCacheSize, 0, Number.MAX_SAFE_INTEGER);
  if (opts.transactions !== undefined) check.methods(where, "transactions", opts.transactions, ["get", "put"], "a transaction log");
}

/**
 * Groups PDUs (JSON text) by room, keeping their order within each room.
 * A create event's room is derived (v12: from its hash); PDUs with no
 * recognisable room are left out. Returns `Map<roomId, {pdus, createVersion}>`.
 */
export function groupPdusByRoom(pdus) {
  ensureReady();
  check.pdus("groupPdusByRoom", "pdus", pdus);
  const groups = new Map();
  for (const pdu of pdus) {
    const raw = toText(pdu);
    const hint = json(call("groupPdusByRoom", "M_BAD_JSON", () => wasm.pduRoom(raw)));
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

