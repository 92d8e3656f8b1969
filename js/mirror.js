// Taking part in rooms over federation: joining, leaving, accepting
// invites, fetching the history we lack (backfill) and filling gaps before a
// pushed PDU (get_missing_events). Every request target and every answer
// check comes from the core (src/membership.rs, src/history.rs); this layer
// only sends requests, in the order the spec and the reference server use,
// within stated bounds.
import { wasm, call, json, RoomdagError } from "./common.js";

/** Bounds of one gap fill (per pushed PDU) and of one backfill run. */
export const MIRROR_LIMITS = Object.freeze({
  /** `/get_missing_events` rounds per pushed PDU (10 events each: the reference server's limit). */
  gapRounds: 10,
  /** Events fetched to fill one gap (beyond: the rest of the hole is backfilled later). */
  gapEvents: 200,
  /** Single events (`/event`) fetched per gap or per backfill run's end. */
  eventFetches: 100,
  /** Wall-clock budget of one gap fill, ms. */
  gapMs: 30_000,
  /** `/backfill` requests per backfill run (100 events each). */
  backfillRequests: 1_000,
  /** Rebuild (place history) after this many new history events. */
  rebuildEvery: 5_000,
  /** Pushed PDUs kept per room while their prev events cannot be fetched (the oldest are forgotten). */
  parkedPerRoom: 1_000,
  /**
   * A send_join answer's state and auth chain are verified and stored this
   * many events per batch (each batch its own atomic write): a big room's
   * join holds one batch's records at a time, and a join retried after a
   * restart finds the stored batches (duplicates, not verified again).
   */
  joinBatch: 2_000,
});

/**
 * Pushed PDUs whose prev events could not be fetched, kept for a later
 * retry (in memory; a host may keep them in its storage instead: the same
 * three calls).
 */
export class MemoryParking {
  #rooms = new Map();
  #cap;
  constructor(cap = MIRROR_LIMITS.parkedPerRoom) {
    this.#cap = cap;
  }
  async put(roomId, eventId, entry) {
    let m = this.#rooms.get(roomId);
    if (!m) this.#rooms.set(roomId, (m = new Map()));
    m.delete(eventId);
    m.set(eventId, entry);
    while (m.size > this.#cap) m.delete(m.keys().next().value);
  }
  async list(roomId) {
    return [...(this.#rooms.get(roomId) ?? new Map()).entries()].map(([eventId, e]) => ({ eventId, ...e }));
  }
  async delete(roomId, eventId) {
    this.#rooms.get(roomId)?.delete(eventId);
  }
}

/** Errors of federation participation, with a stable `code`. */
export class MirrorError extends RoomdagError {
  constructor(code, message, cause) {
    super(code, message, cause);
    this.name = "MirrorError";
  }
}

const errText = (e) => String(e?.message ?? e);

/**
 * Fetches the keys `pdus` need (the servers whose signatures their room
 * version requires). A key fetcher caps the servers fetched per call;
 * history from many servers is fetched over several calls, at most 20.
 */
async function ensureKeys(keys, pdus, version) {
  let todo = pdus;
  for (let round = 0; round < 20 && todo.length > 0; round++) {
    const r = await keys.ensureForPdus(todo, version);
    const refused = r?.refused ?? [];
    if (refused.length === 0 || refused.length === todo.length) return;
    todo = refused.map((x) => todo[x.index]);
  }
}

/** How many events `work` added to the room (stored, pending or deferred). */
async function progressOf(engine, work) {
  const count = () => engine.eventCount + engine.pendingCount + engine.deferredCount;
  const before = count();
  await work();
  return count() - before;
}

/**
 * A server taking part in rooms: `join`, `leave`, `backfill`, `receive`
 * (gap filling for pushed PDUs) and `acceptInvite`.
 *
 * @param {object} o
 * @param {string} o.serverName our server name
 * @param {{keyId: string, seed: string}} o.signingKey our signing key
 * @param {{get(roomId: string): Promise<any>, create(roomId: string, version: string): Promise<any>}} o.rooms the rooms (a RoomDirectory)
 * @param {{request(destination: string, req: {method: string, target: string, body?: unknown}): Promise<{status: number, json: any}>}} o.client outbound federation client
 * @param {{ensureForPdus(pdus: string[], roomVersion?: string): Promise<unknown>}} o.keys key fetcher for PDU signatures
 * @param {import("./roomdag_wasm.js").KeyRing} o.keyRing the key ring PDUs are verified with
 * @param {string} [o.joinLocalpart] our user's localpart (default "roomdag")
 * @param {(line: object) => void} [o.log] progress and failure log
 * @param {Partial<typeof MIRROR_LIMITS>} [o.limits]
 * @param {MemoryParking} [o.parked] where pushed PDUs that cannot be placed yet are kept (default in memory)
 */
export class RoomMirror {
  #o;
  #limits;
  #userId;
  #parked;
  /** Rooms we left: pushed PDUs for them are not taken (as the reference server drops events of rooms it is not in). */
  #left = new Set();

  constructor(o) {
    if (!o?.serverName || !o.signingKey || !o.rooms || !o.client || !o.keyRing) {
      throw new MirrorError("M_INVALID_PARAM", "RoomMirror needs serverName, signingKey, rooms, client and keyRing");
    }
    this.#o = { joinLocalpart: "roomdag", log: () => {}, keys: { ensureForPdus: async () => {} }, ...o };
    this.#limits = { ...MIRROR_LIMITS, ...(o.limits ?? {}) };
    this.#parked = o.parked ?? new MemoryParking(this.#limits.parkedPerRoom);
    // Our own events (the join) are verified with our key like any other.
    call(() => this.#o.keyRing.pin(o.serverName, o.signingKey.keyId, wasm.publicKeyOf(o.signingKey.seed)));
    this.#userId = call(() => wasm.joinUserId(this.#o.joinLocalpart, this.#o.serverName));
    if (!this.#userId) throw new MirrorError("M_INVALID_PARAM", `@${this.#o.joinLocalpart}:${this.#o.serverName} is not a valid user ID`);
  }

  /** The user we join rooms as. */
  get userId() {
    return this.#userId;
  }

  async #get(destination, target) {
    return (await this.#o.client.request(destination, { method: "GET", target })).json;
  }

  async #send(destination, method, target, body) {
    return (await this.#o.client.request(destination, { method, target, body })).json;
  }

  /** Resolves `#alias:server` with the alias's server: `{roomId, servers}`. */
  async resolveAlias(alias) {
    const server = alias.slice(alias.indexOf(":") + 1);
    if (!alias.startsWith("#") || !server) throw new MirrorError("M_INVALID_PARAM", `${alias} is not a room alias`);
    const r = await this.#get(server, `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(alias)}`);
    if (typeof r?.room_id !== "string") throw new MirrorError("M_NOT_FOUND", `${server} did not resolve ${alias}`);
    return { roomId: r.room_id, servers: Array.isArray(r.servers) ? r.servers.filter((s) => typeof s === "string") : [] };
  }

  /**
   * Joins a room (ID or alias) through `via` servers: make_join (offering
   * every room version we support), our signed join, send_join v2 with the
   * full state, every returned event checked and stored; then backfills the
   * room's history unless `backfill: false`. Progress goes to `onProgress`.
   */
  async join(room, via = [], { onProgress = () => {}, backfill = true } = {}) {
    let roomId = room;
    let servers = [...via];
    if (typeof room !== "string" || !/^[!#]/.test(room)) throw new MirrorError("M_INVALID_PARAM", "room must be a room ID (!…) or alias (#…)");
    if (room.startsWith("#")) {
      const r = await this.resolveAlias(room);
      roomId = r.roomId;
      servers = [...new Set([...servers, ...r.servers])];
      onProgress({ phase: "alias", alias: room, roomId, servers });
    }
    servers = servers.filter((s) => s !== this.#o.serverName);
    if (servers.length === 0) throw new MirrorError("M_INVALID_PARAM", "no server to join through (give via)");
    const failures = [];
    for (const server of servers) {
      try {
        const joined = await this.#joinVia(roomId, server, onProgress);
        this.#left.delete(roomId);
        onProgress({ phase: "joined", ...joined });
        if (backfill) joined.backfill = await this.backfill(roomId, { onProgress, prefer: [server] });
        return joined;
      } catch (e) {
        if (e instanceof MirrorError && e.code === "M_UNSUPPORTED_ROOM_VERSION") throw e;
        failures.push(`${server}: ${errText(e)}`);
        this.#o.log({ event: "join_failed", roomId, server, reason: errText(e) });
        onProgress({ phase: "join_failed", server, reason: errText(e) });
      }
    }
    throw new MirrorError("M_UNKNOWN", `could not join ${roomId}: ${failures.join("; ")}`);
  }

  async #joinVia(roomId, server, onProgress) {
    const { serverName, signingKey } = this.#o;
    const template = await this.#get(server, call(() => wasm.makeJoinTarget(roomId, this.#userId)));
    const built = json(call(() => wasm.buildMembershipEvent(JSON.stringify(template), roomId, this.#userId, "join", serverName, signingKey.keyId, signingKey.seed)));
    onProgress({ phase: "make_join", server, roomVersion: built.roomVersion, eventId: built.eventId });
    const answer = await this.#send(server, "PUT", call(() => wasm.sendJoinTarget(roomId, built.eventId)), built.pdu);
    const checked = json(call(() => wasm.checkSendJoinResponse(JSON.stringify(answer), built.roomVersion, built.eventId, JSON.stringify(built.pdu))));
    onProgress({ phase: "send_join", server, state: checked.stateIds.length, events: checked.outliers.length });
    const engine = await this.#room(roomId, built.roomVersion);
    await ensureKeys(this.#o.keys, [...checked.outliers, checked.event], built.roomVersion);
    const storeAll = async () => {
      const out = [];
      for (let i = 0; i < checked.outliers.length; i += this.#limits.joinBatch) {
        const batch = checked.outliers.slice(i, i + this.#limits.joinBatch);
        out.push(...(await engine.ingestPlaced(batch.map((pdu) => ({ pdu, placement: "outlier" })), this.#o.keyRing)));
        onProgress({ phase: "state", server, stored: Math.min(i + batch.length, checked.outliers.length), of: checked.outliers.length });
      }
      return out;
    };
    let outcomes = await storeAll();
    // An auth chain with holes: fetch what is missing (bounded), once.
    const missing = outcomes.filter((o) => o.status === "dropped" && o.stage === "missing");
    if (missing.length > 0) {
      await this.#fetchAuthChains(engine, server, missing.map((o) => o.eventId).filter(Boolean));
      outcomes = await storeAll();
    }
    const [join] = await engine.ingestPlaced([{ pdu: checked.event, state: checked.stateIds }], this.#o.keyRing);
    if (join.status !== "accepted" && join.status !== "duplicate") {
      throw new MirrorError("M_UNAUTHORIZED", `our join ${built.eventId} was ${join.status}: ${join.reason ?? ""}`);
    }
    const dropped = outcomes.filter((o) => o.status === "dropped").length;
    return { roomId, roomVersion: built.roomVersion, eventId: built.eventId, via: server, stateEvents: checked.stateIds.length, authEvents: checked.outliers.length, dropped };
  }

  async #room(roomId, version) {
    const existing = await this.#o.rooms.get(roomId);
    if (existing) {
      const v = await existing.roomVersion;
      if (v !== version) throw new MirrorError("M_UNSUPPORTED_ROOM_VERSION", `room ${roomId} is stored as version ${v}, not ${version}`);
      return existing;
    }
    return this.#o.rooms.create(roomId, version);
  }

  /** Fetches the auth chains of events (`/event_auth`) and stores them as outliers. */
  async #fetchAuthChains(engine, server, eventIds) {
    const version = await engine.roomVersion;
    for (const id of eventIds.slice(0, this.#limits.eventFetches)) {
      try {
        const r = await this.#get(server, call(() => wasm.eventAuthTarget(engine.roomId, id)));
        const f = json(call(() => wasm.checkEventAuthResponse(JSON.stringify(r), version, engine.roomId)));
        await this.#storeOutliers(engine, f.pdus);
      } catch (e) {
        this.#o.log({ event: "event_auth_failed", server, eventId: id, reason: errText(e) });
      }
    }
  }

  /** Stores PDUs (`{eventId, raw}`) as outliers, each after its auth events. */
  async #storeOutliers(engine, pdus) {
    if (pdus.length === 0) return [];
    const order = call(() => wasm.orderByAuth(pdus.map((p) => p.eventId), pdus.map((p) => p.raw)));
    const raws = [...order].map((i) => pdus[i].raw);
    await ensureKeys(this.#o.keys, raws, await engine.roomVersion);
    return engine.ingestPlaced(raws.map((pdu) => ({ pdu, placement: "outlier" })), this.#o.keyRing);
  }

  /** Fetches one event (`/event`) from the first server that has it. */
  async #fetchEvent(engine, servers, eventId) {
    const version = await engine.roomVersion;
    for (const server of servers) {
      try {
        const r = await this.#get(server, call(() => wasm.eventTarget(eventId)));
        return json(call(() => wasm.checkEventResponse(JSON.stringify(r), version, engine.roomId, eventId)));
      } catch (e) {
        this.#o.log({ event: "event_fetch_failed", server, eventId, reason: errText(e) });
      }
    }
    return undefined;
  }

  /**
   * Backfills a room's history from its other servers until the create
   * event: `/backfill` (100 events, up to 5 backward extremities, newest gaps
   * first) to the room's servers in the reference server's order (by when
   * they joined; `prefer` first), history stored as it comes and placed by
   * rebuilds; extremities no server backfills (e.g. rejected events) are
   * fetched with `/event`. Resumable: what is missing is read from the
   * room each time. `finalRebuild: false` places history only when the run
   * completes or stalls (callers that backfill in many short runs). Returns
   * `{complete, stalled, fetched, requests, …}`: `stalled` when no server
   * has what is still missing.
   */
  async backfill(roomId, { onProgress = () => {}, prefer = [], maxRequests = this.#limits.backfillRequests, finalRebuild = true } = {}) {
    const engine = await this.#o.rooms.get(roomId);
    if (!engine) throw new MirrorError("M_NOT_FOUND", `room ${roomId} is not held here`);
    const version = await engine.roomVersion;
    const stats = { fetched: 0, requests: 0, rebuilds: 0, skipped: 0, unreachable: [] };
    const stuck = new Set();
    let sinceRebuild = 0;
    const servers = () => [...new Set([...prefer, ...engine.serversInRoomOrdered(this.#o.serverName)])].filter((s) => s !== this.#o.serverName);
    const rebuild = async () => {
      if (engine.pendingCount === 0 && engine.deferredCount === 0) return;
      await engine.rebuild();
      stats.rebuilds++;
      sinceRebuild = 0;
      onProgress({ phase: "placed", events: engine.eventCount, pending: engine.pendingCount, deferred: engine.deferredCount });
    };
    while (stats.requests < maxRequests) {
      const ext = engine.backwardExtremities().map(([id]) => id).filter((id) => !stuck.has(id));
      if (ext.length === 0) break;
      const v = ext.slice(0, 5);
      let got = 0;
      for (const server of servers()) {
        if (stats.requests >= maxRequests) break;
        stats.requests++;
        try {
          const r = await this.#get(server, call(() => wasm.backfillTarget(roomId, v, 100)));
          const f = json(call(() => wasm.checkBackfillResponse(JSON.stringify(r), version, roomId, 100)));
          stats.skipped += f.skipped;
          const fresh = f.pdus.filter((p) => !engine.hasEvent(p.eventId) || engine.isOutlier(p.eventId));
          if (fresh.length === 0) continue;
          await ensureKeys(this.#o.keys, fresh.map((p) => p.raw), version);
          got = await progressOf(engine, () => engine.ingestPlaced(fresh.map((p) => ({ pdu: p.raw, placement: "history" })), this.#o.keyRing));
          stats.fetched += got;
          sinceRebuild += fresh.length;
          onProgress({ phase: "backfill", server, fetched: stats.fetched, events: engine.eventCount, gaps: ext.length });
          if (got > 0) break;
        } catch (e) {
          this.#o.log({ event: "backfill_failed", roomId, server, reason: errText(e) });
        }
      }
      if (got === 0) {
        // No server backfills these: fetch each with /event (a rejected
        // event is served there), else give up on it for this run.
        for (const id of v) {
          const p = stats.unreachable.length < this.#limits.eventFetches ? await this.#fetchEvent(engine, servers(), id) : undefined;
          let n = 0;
          if (p) {
            await ensureKeys(this.#o.keys, [p.raw], version);
            n = await progressOf(engine, () => engine.ingestPlaced([{ pdu: p.raw, placement: "history" }], this.#o.keyRing));
            stats.fetched += n;
            sinceRebuild += n;
          }
          if (n === 0) {
            stuck.add(id);
            stats.unreachable.push(id);
          }
        }
      }
      if (sinceRebuild >= this.#limits.rebuildEvery) await rebuild();
    }
    // Auth events history did not bring (other branches): fetch them.
    for (const id of engine.missingAuthEvents().slice(0, this.#limits.eventFetches)) {
      const p = await this.#fetchEvent(engine, servers(), id);
      if (p) await this.#storeOutliers(engine, [p]);
    }
    const stalled = stats.requests < maxRequests && engine.backwardExtremities().some(([id]) => stuck.has(id));
    if (finalRebuild || stalled || engine.backwardExtremities().length === 0) await rebuild();
    const remaining = engine.backwardExtremities().length;
    stats.parkedPlaced = await this.retryParked(engine);
    const complete = remaining === 0 && engine.pendingCount === 0 && engine.deferredCount === 0;
    const result = { ...stats, complete, stalled: !complete && stalled, remainingGaps: remaining, events: engine.eventCount };
    onProgress({ phase: "backfilled", ...result });
    return result;
  }

  /**
   * Stores PDUs pushed by `origin` (one `/send` transaction's PDUs of one
   * room), filling gaps first: PDUs in dependency order; for one whose prev
   * events are not placed, `/get_missing_events` to the origin (latest = the
   * PDU, earliest = our forward extremities, 10 events a round, the room's
   * least depth), and where history still does not connect, the state at
   * the earliest fetched event from `/state_ids` (+ `/event` for what we
   * lack), so that it is placed with that state; the hole below it is
   * reported for a later backfill. Bounded by `MIRROR_LIMITS`. Returns one
   * outcome per PDU (in the given order), and `holes` when history is missing.
   */
  async receive(engine, pdus, origin) {
    if (this.#left.has(engine.roomId)) {
      return { outcomes: pdus.map(() => ({ eventId: null, status: "dropped", stage: "parse", reason: `${this.#o.serverName} left this room` })), holes: 0 };
    }
    const version = await engine.roomVersion;
    const ids = pdus.map((p) => {
      try {
        return call(() => wasm.pduEventId(p, version));
      } catch {
        return undefined;
      }
    });
    // Dependency order within the batch.
    const order = call(() => wasm.orderForIngest(ids.map((i) => i ?? ""), pdus));
    const results = new Map();
    let holes = 0;
    const deadline = Date.now() + this.#limits.gapMs;
    // In a room we are joined to, receipt check 6 applies (soft failure).
    const placement = engine.serverInRoom(this.#o.serverName) ? "live" : "timeline";
    // PDUs whose prev events are placed (or earlier in the run) go in one
    // batch: one store write per run, not per PDU.
    let run = [];
    const runIds = new Set();
    const flush = async () => {
      if (run.length === 0) return;
      // As the origin's PDUs: its rejected events count against its bound (REJECTED_PER_ORIGIN).
      const outs = await engine.ingestPlaced(run.map((r) => ({ pdu: r.pdu, placement })), this.#o.keyRing, { origin });
      outs.forEach((o, k) => results.set(run[k].i, o));
      run = [];
      runIds.clear();
    };
    for (const i of order) {
      const pdu = pdus[i];
      let unplaced = [];
      try {
        unplaced = ids[i] ? engine.unplacedPrevEvents(pdu).filter((p) => !runIds.has(p)) : [];
      } catch {
        unplaced = [];
      }
      if (unplaced.length > 0 && !engine.hasEvent(ids[i])) {
        await flush();
        try {
          const r = await this.#fillGap(engine, pdu, ids[i], origin, deadline);
          holes += r.anchored;
        } catch (e) {
          this.#o.log({ event: "gap_fill_failed", roomId: engine.roomId, origin, eventId: ids[i], reason: errText(e) });
        }
        if (engine.unplacedPrevEvents(pdu).length > 0) {
          // Not stored (the reference server does not persist it either: it
          // answers "isn't divulging details about prev_events"), but parked
          // for a later retry: once history brings its prev events, it is
          // placed (`retryParked`).
          await this.#parked.put(engine.roomId, ids[i], { pdu, origin, at: Date.now() });
          results.set(i, { eventId: ids[i], status: "dropped", stage: "missing", reason: `prev events ${unplaced.join(", ")} could not be fetched from ${origin}; the PDU is kept and retried once they arrive` });
          holes++;
          continue;
        }
      }
      run.push({ i, pdu });
      if (ids[i]) runIds.add(ids[i]);
    }
    await flush();
    // PDUs parked earlier may connect now.
    if (results.size > 0) await this.retryParked(engine);
    return { outcomes: pdus.map((_, i) => results.get(i)), holes };
  }

  /**
   * Places parked PDUs whose prev events are now placed (after a backfill);
   * returns how many were stored.
   */
  async retryParked(engine) {
    let placed = 0;
    const parked = (await this.#parked.list(engine.roomId)).sort((a, b) => a.at - b.at);
    for (const p of parked) {
      let unplaced;
      try {
        unplaced = engine.unplacedPrevEvents(p.pdu);
      } catch {
        unplaced = [];
      }
      if (unplaced.length > 0) continue;
      const [o] = await engine.ingest([p.pdu], this.#o.keyRing);
      if (o.status === "accepted" || o.status === "rejected") placed++;
      await this.#parked.delete(engine.roomId, p.eventId);
    }
    return placed;
  }

  /** Fills the gap before one pushed PDU (see `receive`). */
  async #fillGap(engine, pdu, pduId, origin, deadline) {
    const version = await engine.roomVersion;
    const roomId = engine.roomId;
    const collected = new Map();
    const missingOf = (raw) => {
      const prevs = engine.unplacedPrevEvents(raw);
      return prevs.filter((p) => !collected.has(p));
    };
    let latest = [pduId];
    for (let round = 0; round < this.#limits.gapRounds && collected.size < this.#limits.gapEvents && Date.now() < deadline; round++) {
      const req = json(call(() => wasm.getMissingEventsRequest(roomId, engine.forwardExtremities(), latest, 10, engine.minDepth)));
      let f;
      try {
        const r = await this.#send(origin, "POST", req.target, req.body);
        f = json(call(() => wasm.checkGetMissingEventsResponse(JSON.stringify(r), version, roomId, 10)));
      } catch (e) {
        this.#o.log({ event: "get_missing_events_failed", roomId, origin, reason: errText(e) });
        break;
      }
      const fresh = f.pdus.filter((p) => !collected.has(p.eventId) && !(engine.hasEvent(p.eventId) && !engine.isOutlier(p.eventId)));
      if (fresh.length === 0) break;
      for (const p of fresh) collected.set(p.eventId, p);
      const open = [...collected.values()].filter((p) => missingOf(p.raw).length > 0);
      if (open.length === 0 && missingOf(pdu).length === 0) break;
      latest = open.sort((a, b) => a.depth - b.depth).slice(0, 10).map((p) => p.eventId);
      if (latest.length === 0) latest = [pduId];
    }
    // Oldest first; the roots whose prev events are still missing get the
    // remote state (Synapse: state at the missing prev events).
    const chain = [...collected.values()].sort((a, b) => a.depth - b.depth);
    const roots = chain.filter((p) => missingOf(p.raw).length > 0);
    if (chain.length === 0) roots.push({ eventId: pduId, raw: pdu });
    await ensureKeys(this.#o.keys, chain.map((p) => p.raw).concat([pdu]), version);
    let anchored = 0;
    for (const root of roots) {
      const state = await this.#remoteState(engine, origin, root.eventId, deadline);
      if (!state) continue;
      const [o] = await engine.ingestPlaced([{ pdu: root.raw, state }], this.#o.keyRing);
      if (o.status === "accepted" || o.status === "rejected") anchored++;
    }
    const rest = chain.filter((p) => !roots.includes(p));
    if (rest.length > 0) await engine.ingestPlaced(rest.map((p) => ({ pdu: p.raw, placement: "history" })), this.#o.keyRing);
    return { fetched: chain.length, anchored };
  }

  /** The state before `eventId` from `origin` (`/state_ids`), its events stored; undefined on failure. */
  async #remoteState(engine, origin, eventId, deadline) {
    const version = await engine.roomVersion;
    let ids;
    try {
      const r = await this.#get(origin, call(() => wasm.stateIdsTarget(engine.roomId, eventId)));
      ids = json(call(() => wasm.checkStateIdsResponse(JSON.stringify(r))));
    } catch (e) {
      this.#o.log({ event: "state_ids_failed", roomId: engine.roomId, origin, eventId, reason: errText(e) });
      return undefined;
    }
    const need = [...new Set([...ids.pduIds, ...ids.authChainIds])].filter((id) => !engine.hasEvent(id));
    if (need.length > this.#limits.eventFetches) {
      this.#o.log({ event: "state_too_large", roomId: engine.roomId, origin, eventId, missing: need.length });
      return undefined;
    }
    const fetched = [];
    for (const id of need) {
      if (Date.now() > deadline) return undefined;
      const p = await this.#fetchEvent(engine, [origin], id);
      if (p) fetched.push(p);
    }
    await this.#storeOutliers(engine, fetched);
    return ids.pduIds.every((id) => engine.hasEvent(id)) ? ids.pduIds : undefined;
  }

  /**
   * Leaves a room: make_leave → our signed leave → send_leave v2, through
   * the room's servers (by when they joined); our leave is stored. The
   * room's history stays readable.
   */
  async leave(roomId, { via = [] } = {}) {
    const engine = await this.#o.rooms.get(roomId);
    if (!engine) throw new MirrorError("M_NOT_FOUND", `room ${roomId} is not held here`);
    const { serverName, signingKey } = this.#o;
    const servers = [...new Set([...via, ...engine.serversInRoomOrdered(serverName)])].filter((s) => s !== serverName);
    const failures = [];
    for (const server of servers) {
      try {
        const template = await this.#get(server, call(() => wasm.makeLeaveTarget(roomId, this.#userId)));
        const built = json(call(() => wasm.buildMembershipEvent(JSON.stringify(template), roomId, this.#userId, "leave", serverName, signingKey.keyId, signingKey.seed)));
        await this.#send(server, "PUT", call(() => wasm.sendLeaveTarget(roomId, built.eventId)), built.pdu);
        const raw = JSON.stringify(built.pdu);
        const { outcomes } = await this.receive(engine, [raw], server);
        this.#left.add(roomId);
        return { roomId, eventId: built.eventId, via: server, outcome: outcomes[0] };
      } catch (e) {
        failures.push(`${server}: ${errText(e)}`);
      }
    }
    throw new MirrorError("M_UNKNOWN", `could not leave ${roomId}: ${failures.join("; ") || "no server in the room"}`);
  }

  /**
   * Checks an invite for our user from `origin` and countersigns it
   * (`PUT /invite` v1 or v2). Returns `{status, body}` to answer with, and
   * on success `accepted: {roomId, roomVersion, inviterServer}`.
   */
  acceptInvite({ body, v2, roomId, eventId, origin }) {
    const { serverName, signingKey } = this.#o;
    const r = json(call(() => wasm.acceptInvite(body, v2, roomId, eventId, this.#userId, origin, this.#o.keyRing, serverName, signingKey.keyId, signingKey.seed)));
    if (r.status) return r;
    return { status: 200, body: v2 ? { event: r.event } : [200, { event: r.event }], accepted: { roomId, roomVersion: r.roomVersion, inviterServer: r.inviterServer } };
  }
}
