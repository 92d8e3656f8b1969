// A signed federation client for tests, like oracle/federate.py: sends a
// fixture's PDUs as `/send` transactions (≤ 50 consecutive PDUs of one
// origin each), asks its queries as signed requests, and turns the answers
// back into `roomdag-answers/1` entries (event IDs computed from the
// returned PDUs; `pruned` judged against the original and its redacted form).
import { signRequest, eventIdOf, redactPdu } from "../../pkg/node.js";
import { OUTSIDERS } from "./fixtures.mjs";

const TXN_PDUS = 50;
const q = encodeURIComponent;

export class FederationClient {
  /**
   * @param {object} o
   * @param {(req: Request) => Promise<Response>} o.send how a Request reaches the server
   * @param {string} o.destination the server's name
   * @param {object} o.fixture the room fixture
   */
  constructor({ send, destination, fixture }) {
    this.send = send;
    this.destination = destination;
    this.fx = fixture;
    this.byId = new Map(fixture.events.map((e) => [e.event_id, e]));
    this.txn = 0;
  }

  keyOf(origin) {
    const s = this.fx.servers[origin];
    if (!s && OUTSIDERS[origin]) return { keyId: OUTSIDERS[origin].keyId, seed: OUTSIDERS[origin].seed };
    if (!s) return { keyId: "ed25519:1", seed: "A".repeat(43) }; // a key nobody publishes
    return { keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed };
  }

  async request(origin, method, target, body, { sign = true, authorization, destination } = {}) {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers = { "content-type": "application/json" };
    if (authorization !== undefined) headers.authorization = authorization;
    else if (sign) {
      const { keyId, seed } = this.keyOf(origin);
      headers.authorization = signRequest({ origin, keyId, seed, destination: destination ?? this.destination, method, target, body: text });
    }
    const res = await this.send(new Request(`http://roomdag.test${target}`, { method, headers, body: text }));
    const raw = await res.text();
    let json;
    try {
      json = raw ? JSON.parse(raw) : null;
    } catch {
      json = { _raw: raw.slice(0, 200) };
    }
    return { status: res.status, body: json };
  }

  /** Sends every PDU of the fixture; returns the per-PDU results. */
  async sendAll() {
    const results = {};
    let batch = [];
    let origin;
    const flush = async () => {
      if (!batch.length) return;
      const txnId = `t${Date.now()}-${++this.txn}`;
      const body = { origin, origin_server_ts: Date.now(), pdus: batch.map((e) => e.pdu) };
      const r = await this.request(origin, "PUT", `/_matrix/federation/v1/send/${q(txnId)}`, body);
      for (const e of batch) results[e.event_id] = r.status === 200 ? (r.body.pdus[e.event_id] ?? null) : { _status: r.status };
      batch = [];
    };
    for (const e of this.fx.events) {
      if (e.origin !== origin || batch.length >= TXN_PDUS) {
        await flush();
        origin = e.origin;
      }
      batch.push(e);
    }
    await flush();
    return results;
  }

  prunedFlag(eid, pdu) {
    const orig = this.byId.get(eid);
    if (!orig) return null;
    const strip = (o) => {
      const { unsigned, event_id, ...rest } = o;
      return JSON.stringify(sortKeys(rest));
    };
    const got = strip(pdu);
    const isFull = got === strip(orig.pdu);
    const isPruned = got === strip(redactPdu(orig.pdu, this.fx.room_version));
    if (isFull && isPruned) return "either";
    if (isFull) return false;
    if (isPruned) return true;
    return "corrupt";
  }

  pduList(pdus) {
    return (pdus ?? []).map((p) => {
      let eid = null;
      try {
        eid = eventIdOf(p, this.fx.room_version);
      } catch {
        /* corrupt */
      }
      return { event_id: eid, pruned: eid ? this.prunedFlag(eid, p) : "corrupt" };
    });
  }

  /** Asks one query of a `roomdag-queries/1` file; returns its answer entry. */
  async answer(query) {
    const { endpoint: ep, origin: o } = query;
    const base = "/_matrix/federation/v1";
    const room = this.fx.room_id;
    let r;
    if (ep === "state_ids" || ep === "state") {
      r = await this.request(o, "GET", `${base}/${ep}/${q(room)}?event_id=${q(query.event_id)}`);
      if (r.status === 200) {
        if (ep === "state_ids") return { id: query.id, status: 200, pdu_ids: r.body.pdu_ids, auth_chain_ids: r.body.auth_chain_ids };
        return {
          id: query.id,
          status: 200,
          pdu_ids: r.body.pdus.map((p) => eventIdOf(p, this.fx.room_version)),
          auth_chain_ids: r.body.auth_chain.map((p) => eventIdOf(p, this.fx.room_version)),
        };
      }
    } else if (ep === "backfill") {
      const params = query.v.map((v) => `v=${q(v)}`).concat(`limit=${query.limit}`).join("&");
      r = await this.request(o, "GET", `${base}/backfill/${q(room)}?${params}`);
      if (r.status === 200) return { id: query.id, status: 200, pdus: this.pduList(r.body.pdus) };
    } else if (ep === "get_missing_events") {
      r = await this.request(o, "POST", `${base}/get_missing_events/${q(room)}`, query.body);
      if (r.status === 200) return { id: query.id, status: 200, events: this.pduList(r.body.events) };
    } else if (ep === "timestamp_to_event") {
      r = await this.request(o, "GET", `${base}/timestamp_to_event/${q(room)}?ts=${query.ts}&dir=${query.dir}`);
      if (r.status === 200) return { id: query.id, status: 200, event_id: r.body.event_id, origin_server_ts: r.body.origin_server_ts };
    } else if (ep === "event") {
      r = await this.request(o, "GET", `${base}/event/${q(query.event_id)}`);
      if (r.status === 200) {
        const got = this.pduList(r.body.pdus);
        return got.length === 1 ? { id: query.id, status: 200, ...got[0] } : { id: query.id, status: 200, event_id: null, pruned: "corrupt" };
      }
    } else {
      return { id: query.id, status: null };
    }
    return { id: query.id, status: r.status, errcode: r.body?.errcode ?? null };
  }
}

export function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}
