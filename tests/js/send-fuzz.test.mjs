// A seeded random fuzz test of `PUT /send` through FederationServer:
// random and mutated transaction bodies (real PDUs of a fixture, damaged
// structurally and byte-wise, random JSON, non-UTF-8 bytes, oversized
// lists), signed correctly, wrongly or not at all, with odd transaction IDs,
// against a server holding the fixture's room, with `fetch` mocked.
// Oracles: never a throw, never a 500; every answer is JSON with a 2xx/4xx
// status Synapse could give; a refused request (not 200) changes no store
// and no room; a 200 maps event IDs to `{}` or a bounded `{error}`; nothing
// but key servers is ever fetched.
//
// ROOMDAG_FUZZ_SEED=<n> picks another seed; ROOMDAG_FUZZ_RUNS=<n> more bodies.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FederationServer, RoomDirectory, MemoryStore, signRequest, servingLimits } from "../../pkg/node.js";
import { loadFixture, trustedKeysOf } from "./fixtures.mjs";

const SERVER = "roomdag.test";
const OUR_KEY = { keyId: "ed25519:rd", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" };
const SEED = Number(process.env.ROOMDAG_FUZZ_SEED ?? 20261128);
const RUNS = Number(process.env.ROOMDAG_FUZZ_RUNS ?? 400);
const HELD = 30;

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const below = (n) => Math.floor(next() * n);
  return { next, below, pick: (xs) => xs[below(xs.length)], chance: (p) => next() < p };
}

const STRANGE = ["", " ", "\u0000", "\ud800", "🙂", "%", "../..", "$", "!", "@x:y", "a".repeat(300), -1, 1e308, 2 ** 53, true, null, [], {}, [[[[]]]]];

function randomJson(r, depth = 3) {
  switch (r.below(depth > 0 ? 7 : 4)) {
    case 0:
      return r.pick(STRANGE);
    case 1:
      return r.below(1e6) - 5e5;
    case 2:
      return r.pick(["m.room.message", "m.room.create", "m.room.member", "join", "12", "10"]);
    case 3:
      return r.chance(0.5);
    case 4:
      return Array.from({ length: r.below(4) }, () => randomJson(r, depth - 1));
    default: {
      const o = {};
      for (let i = r.below(5); i > 0; i--) o[r.pick(["type", "content", "room_id", "sender", "state_key", "prev_events", "auth_events", "depth", "hashes", "signatures", "x"])] = randomJson(r, depth - 1);
      return o;
    }
  }
}

/** A structural mutation of a PDU (a copy). */
function mutatePdu(r, pdu) {
  const p = structuredClone(pdu);
  for (let n = 1 + r.below(3); n > 0; n--) {
    const keys = Object.keys(p);
    switch (r.below(6)) {
      case 0:
        delete p[r.pick(keys)];
        break;
      case 1:
        p[r.pick(keys)] = randomJson(r);
        break;
      case 2:
        p.content = { ...(p.content ?? {}), [r.pick(["body", "membership", "room_version", "allow", "deny"])]: randomJson(r) };
        break;
      case 3:
        p.prev_events = Array.from({ length: r.below(25) }, () => `$${r.below(1e9)}`);
        break;
      case 4:
        p.room_id = r.pick([p.room_id, "!other:a.example", "", 5, `!${"x".repeat(300)}:y`]);
        break;
      default:
        p.depth = r.pick([0, -1, 2 ** 53, 1.5, "1", null]);
    }
  }
  return p;
}

/** Byte-level damage to text. */
function damage(r, text) {
  const b = Buffer.from(text);
  for (let n = 1 + r.below(4); n > 0 && b.length; n--) b[r.below(b.length)] = r.below(256);
  const cut = r.chance(0.3) ? r.below(b.length + 1) : b.length;
  return b.subarray(0, cut);
}

test(`/send fuzz: ${RUNS} random and mutated bodies (seed ${SEED}): no 500, no throw, refused requests change nothing`, { timeout: 600_000 }, async () => {
  const { room } = loadFixture("v10-linear-200");
  const r = prng(SEED);
  let appends = 0;
  const stores = new Map();
  const rooms = new RoomDirectory({
    createStore: (roomId) => {
      if (!stores.has(roomId)) {
        const m = new MemoryStore();
        stores.set(roomId, { load: () => m.load(), append: (rec, meta) => (appends++, m.append(rec, meta)) });
      }
      return stores.get(roomId);
    },
  });
  const fetched = [];
  const fetch = async (url) => {
    fetched.push(String(url));
    return r.chance(0.5) ? new Response("{nope", { status: 200 }) : new Response("", { status: 404 });
  };
  const servers = Object.keys(room.servers);
  const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(room), fetch, acceptRoomsFrom: servers });
  // unknown.example: a key nobody publishes (its fetches fail or return junk).
  const keyOf = (s) => (room.servers[s] ? { keyId: Object.keys(room.servers[s].verify_keys)[0], seed: room.servers[s].signing_key_seed } : { keyId: "ed25519:1", seed: "A".repeat(43) });
  const send = async (origin, txnId, bodyBytes, auth) => {
    const target = `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`;
    const headers = {};
    if (auth === "signed") {
      let parsed;
      try {
        parsed = JSON.parse(Buffer.from(bodyBytes).toString("utf8"));
      } catch {
        /* cannot be signed: sent with a signature over something else */
      }
      try {
        headers.authorization = signRequest({ origin, ...keyOf(origin), destination: SERVER, method: "PUT", target, body: parsed ?? { pdus: [] } });
      } catch {
        // Not JSON to the core (a lone surrogate): signed over something else.
        headers.authorization = signRequest({ origin, ...keyOf(origin), destination: SERVER, method: "PUT", target, body: { pdus: [] } });
      }
    } else if (auth === "wrong") {
      headers.authorization = signRequest({ origin, ...keyOf(r.pick(servers)), destination: SERVER, method: "PUT", target, body: { pdus: [] } });
    } else if (auth === "garbage") {
      // Damaged, but still a value a Request accepts (no controls, no edge spaces).
      const text = Buffer.from(damage(r, `X-Matrix origin="${origin}",key="ed25519:1",sig="AAAA"`)).toString("latin1");
      headers.authorization = text.replace(/[\u0000-\u001f\u007f]/g, "?").trim() || "X";
    }
    return server.handleFederationRequest(new Request(`http://roomdag.test${target}`, { method: "PUT", body: bodyBytes, headers }));
  };
  // The held room: its first events, sent as its servers would.
  const prefix = room.events.slice(0, HELD);
  for (let i = 0; i < prefix.length; i++) {
    const e = prefix[i];
    const res = await send(e.origin, `prefix-${i}`, Buffer.from(JSON.stringify({ origin: e.origin, origin_server_ts: 1, pdus: [e.pdu] })), "signed");
    assert.equal(res.status, 200);
  }
  const engine = await rooms.get(room.room_id);
  assert.ok(engine && engine.eventCount > 0);
  const later = room.events.slice(HELD, HELD + 80);
  const allowed = new Set([200, 400, 401, 403, 404, 405, 413, 429]);
  const maxReason = servingLimits().maxReasonBytes;
  const counts = {};
  let cursor = 0;
  for (let i = 0; i < RUNS; i++) {
    const origin = r.chance(0.9) ? r.pick(servers) : "unknown.example";
    // A transaction: real later events in order, mutated ones, random JSON, create events.
    const pdus = [];
    for (let n = r.pick([0, 1, 3, 10, 50, 51]); n > 0; n--) {
      const k = r.below(10);
      if (k < 5) pdus.push(later[cursor++ % later.length].pdu);
      else if (k < 7) pdus.push(mutatePdu(r, r.pick(later).pdu));
      else if (k < 8) pdus.push(r.chance(0.5) ? room.events[0].pdu : mutatePdu(r, room.events[0].pdu));
      else pdus.push(randomJson(r));
    }
    let body = { origin, origin_server_ts: r.below(1e13), pdus };
    if (r.chance(0.1)) body.edus = Array.from({ length: r.pick([0, 5, 101]) }, () => ({ edu_type: "m.typing", content: {} }));
    if (r.chance(0.05)) body = randomJson(r);
    let bytes = Buffer.from(JSON.stringify(body));
    const shape = r.below(20);
    if (shape === 0) bytes = damage(r, bytes.toString("utf8"));
    if (shape === 1) bytes = Buffer.from([0xff, 0xfe, 0x7b, 0x80]);
    if (shape === 2) bytes = Buffer.alloc(0);
    const txnId = r.pick([`t${i}`, `t${i}`, "same", "%2F..%2F", "🙂", "x".repeat(r.pick([10, 2048, 2049])), " "]);
    const auth = r.pick(["signed", "signed", "signed", "signed", "signed", "none", "wrong", "garbage"]);
    const before = { appends, events: engine.eventCount, rooms: stores.size };
    let res;
    try {
      res = await send(origin, txnId, bytes, auth);
    } catch (e) {
      assert.fail(`input ${i} threw: ${e?.stack ?? e}`);
    }
    counts[res.status] = (counts[res.status] ?? 0) + 1;
    assert.ok(allowed.has(res.status), `input ${i}: status ${res.status}`);
    const text = await res.text();
    const answer = JSON.parse(text);
    if (res.status !== 200) {
      assert.equal(typeof answer.errcode === "string" || res.status === 400, true, `input ${i}: ${text}`);
      assert.deepEqual({ appends, events: engine.eventCount }, { appends: before.appends, events: before.events }, `input ${i}: a refused request (${res.status}) changed a store`);
    } else {
      assert.equal(typeof answer.pdus, "object", text);
      for (const [id, v] of Object.entries(answer.pdus)) {
        assert.match(id, /^\$/);
        if (Object.keys(v).length) {
          assert.equal(typeof v.error, "string");
          assert.ok(Buffer.byteLength(v.error) <= maxReason + 200, `input ${i}: error of ${Buffer.byteLength(v.error)} bytes`);
        }
      }
    }
  }
  const keyUrl = (u) => ["/.well-known/matrix/server", "/_matrix/key/v2/server", "/_matrix/key/v2/query"].includes(new URL(u).pathname);
  assert.ok(fetched.every(keyUrl), `only keys (and their servers' discovery) are fetched: ${fetched.find((u) => !keyUrl(u))}`);
  assert.ok(counts[200] > RUNS / 4 && counts[400] > 0 && counts[401] > 0, JSON.stringify(counts));
  console.log(`send fuzz (seed ${SEED}): statuses ${JSON.stringify(counts)}; room now ${engine.eventCount} events`);
});
