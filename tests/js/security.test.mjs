// Security of the serving layer (issue 11, docs/security.md), in Node: one
// case per defence of FederationServer, each asserting the exact status and
// that nothing was stored, fetched or loaded that the request had no right
// to (spies on fetch, on the directory — get/create/findEvent/createStore —
// on store loads and appends, and on room queries).
import { test } from "node:test";
import assert from "node:assert/strict";
import { FederationServer, RoomDirectory, MemoryStore, signPdu, signRequest, REJECTED_PER_ORIGIN, STATE_CACHE } from "../../pkg/node.js";
import { FederationClient } from "./federation-client.mjs";
import { loadFixture, trustedKeysOf } from "./fixtures.mjs";

const SERVER = "roomdag.test";
const OUR_KEY = { keyId: "ed25519:rd", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" };
const FED = "/_matrix/federation/v1";
const q = encodeURIComponent;

/** Spies on everything a request could touch. */
function makeSpies() {
  const s = { get: 0, create: 0, findEvent: 0, createStore: 0, load: 0, append: 0, query: 0, ingest: 0, fetch: [] };
  s.reset = () => {
    for (const k of Object.keys(s)) if (typeof s[k] === "number") s[k] = 0;
    s.fetch = [];
  };
  s.untouched = (msg) => {
    assert.deepEqual(
      { get: s.get, create: s.create, findEvent: s.findEvent, createStore: s.createStore, load: s.load, append: s.append, query: s.query, ingest: s.ingest, fetch: s.fetch },
      { get: 0, create: 0, findEvent: 0, createStore: 0, load: 0, append: 0, query: 0, ingest: 0, fetch: [] },
      msg,
    );
  };
  return s;
}

/** A FederationServer over a spied directory of MemoryStores (one per room, kept like a database). */
function makeServer(fixture, extra = {}) {
  const spy = makeSpies();
  const stores = new Map();
  const storeOf = (roomId) => {
    spy.createStore++;
    if (!stores.has(roomId)) {
      const m = new MemoryStore();
      stores.set(roomId, {
        load: () => (spy.load++, m.load()),
        append: (r, meta) => (spy.append++, extra.appendGate ? extra.appendGate().then(() => m.append(r, meta)) : m.append(r, meta)),
      });
    }
    return stores.get(roomId);
  };
  const inner = new RoomDirectory({ createStore: storeOf });
  const wrap = (e) =>
    e &&
    new Proxy(e, {
      get(t, k) {
        const v = Reflect.get(t, k, t);
        if (k === "query") return (...a) => (spy.query++, v.apply(t, a));
        if (k === "ingest") return (...a) => (spy.ingest++, v.apply(t, a));
        return typeof v === "function" ? v.bind(t) : v;
      },
    });
  const rooms = {
    get: async (id) => (spy.get++, wrap(await inner.get(id))),
    create: async (id, v) => (spy.create++, wrap(await inner.create(id, v))),
    findEvent: async (id) => (spy.findEvent++, wrap(await inner.findEvent(id))),
  };
  const fetch = async (url) => {
    spy.fetch.push(String(url));
    return new Response("", { status: 404 });
  };
  const { appendGate, ...opts } = extra;
  void appendGate;
  const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(fixture), fetch, ...opts });
  const client = new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture });
  return { server, client, spy, inner, stores };
}

const fixtureName = "v10-linear-200";

/** A server holding the fixture's room (rooms accepted from its servers), spies reset. */
async function populated(extra = {}) {
  const { room, expected } = loadFixture(fixtureName);
  const made = makeServer(room, { acceptRoomsFrom: Object.keys(room.servers), ...extra });
  await made.client.sendAll();
  made.spy.reset();
  return { ...made, room, expected };
}

function keyOf(room, server) {
  const s = room.servers[server];
  return { server, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed };
}

/** The room's current forward extremities and state, from the engine. */
async function tips(inner, roomId) {
  const engine = await inner.get(roomId);
  const g = engine.exportGraph();
  return { prev: g.forward_extremities.map((i) => g.events[i].event_id), state: engine.currentState().state, engine };
}

// ---------------------------------------------------------------------------
// Item 2: authentication before any work.

test("unauthenticated requests answer 401/400 before any room, index, store, body or key work", async () => {
  const { client, spy, room, expected } = await populated();
  const member = Object.keys(room.servers)[0];
  const ev = expected.events.find((e) => e.status === "accepted").event_id;
  const r = q(room.room_id);
  const targets = [
    ["GET", `${FED}/state_ids/${r}?event_id=${q(ev)}`],
    ["GET", `${FED}/state/${r}?event_id=${q(ev)}`],
    ["GET", `${FED}/backfill/${r}?v=${q(ev)}&limit=5`],
    ["POST", `${FED}/get_missing_events/${r}`, { earliest_events: [], latest_events: [ev] }],
    ["GET", `${FED}/timestamp_to_event/${r}?ts=1&dir=f`],
    ["GET", `${FED}/event/${q(ev)}`],
    ["GET", `${FED}/event_auth/${r}/${q(ev)}`],
    ["GET", `${FED}/state_ids/${q("!unknown:nowhere.example")}?event_id=%24x`],
    ["PUT", `${FED}/send/unauth-1`, { origin: member, origin_server_ts: 1, pdus: [room.events[3].pdu] }],
  ];
  const other = Object.keys(room.servers)[1];
  for (const [method, target, body] of targets) {
    const cases = [
      ["no Authorization", { sign: false }, 401, "M_UNAUTHORIZED"],
      ["another server's key", { authorization: signRequest({ origin: member, ...client.keyOf(other), destination: SERVER, method, target, body }) }, 401, "M_UNAUTHORIZED"],
      ["wrong destination", { destination: "elsewhere.example" }, 401, "M_UNAUTHORIZED"],
      ["malformed header", { authorization: 'X-Matrix origin="a.example",key=' }, 400, "M_UNAUTHORIZED"],
      ["a member's name, unknown key", { authorization: signRequest({ origin: member, keyId: "ed25519:unknown", seed: "A".repeat(43), destination: SERVER, method, target, body }) }, 401, "M_UNAUTHORIZED"],
    ];
    for (const [why, opts, status, errcode] of cases) {
      const res = await client.request(member, method, target, body, opts);
      assert.equal(res.status, status, `${why}: ${method} ${target}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.errcode, errcode);
      // The member's key is pinned: no key is fetched for these either.
      spy.untouched(`${why}: ${method} ${target}`);
    }
  }
  // An origin whose key cannot be found: only its key is looked up, nothing else.
  for (const [method, target, body] of targets) {
    const res = await client.request("unknown-origin.example", method, target, body);
    assert.equal(res.status, 401, `${method} ${target}`);
    // Discovery and the key endpoint of that name only.
    assert.ok(
      spy.fetch.every((u) => new URL(u).hostname === "unknown-origin.example" && ["/.well-known/matrix/server", "/_matrix/key/v2/server"].includes(new URL(u).pathname)),
      spy.fetch.join(),
    );
    spy.fetch = [];
    spy.untouched(`unknown origin: ${method} ${target}`);
  }
});

test("an unsigned request's body is not read at all; a signed one over the limit is refused unread", async () => {
  const { server, client, spy, room } = await populated();
  const member = Object.keys(room.servers)[0];
  const limit = 200 * 65_536;
  const streaming = () => {
    const st = { pulled: 0 };
    st.body = new ReadableStream(
      {
        pull(c) {
          st.pulled++;
          c.enqueue(new Uint8Array(1 << 20).fill(0x20));
          if (st.pulled > 20) c.close();
        },
      },
      { highWaterMark: 0 },
    );
    return st;
  };
  const target = `${FED}/send/big-body`;
  // No credentials: 401 before the body.
  const a = streaming();
  const r1 = await server.handleFederationRequest(new Request(`http://roomdag.test${target}`, { method: "PUT", body: a.body, duplex: "half" }));
  assert.equal(r1.status, 401);
  assert.equal(a.pulled, 0, "the body of an unauthenticated request is not read");
  // A declared length over the limit: 413 before anything, even authentication.
  const b = streaming();
  const auth = signRequest({ origin: member, ...client.keyOf(member), destination: SERVER, method: "PUT", target, body: { pdus: [] } });
  const r2 = await server.handleFederationRequest(
    new Request(`http://roomdag.test${target}`, { method: "PUT", body: b.body, duplex: "half", headers: { authorization: auth, "content-length": String(limit + 1) } }),
  );
  assert.equal(r2.status, 413);
  assert.equal((await r2.json()).errcode, "M_TOO_LARGE");
  assert.equal(b.pulled, 0);
  // No declared length, 21 MiB streamed: read up to the cap, then 413.
  const c = streaming();
  const r3 = await server.handleFederationRequest(
    new Request(`http://roomdag.test${target}`, { method: "PUT", body: c.body, duplex: "half", headers: { authorization: auth } }),
  );
  assert.equal(r3.status, 413);
  assert.ok(c.pulled <= Math.ceil(limit / (1 << 20)) + 2, `read ${c.pulled} MiB of a 21 MiB body`);
  spy.untouched("oversized bodies");
});

// ---------------------------------------------------------------------------
// Item 4: rooms from /send.

test("/send: PDUs for a room we do not hold are ignored unless the origin is accepted, and only a valid create event starts a room", async () => {
  const { room } = loadFixture(fixtureName);
  const creatorServer = room.events[0].origin;
  const create = room.events[0];
  const rest = room.events.slice(1, 10).filter((e) => e.origin === creatorServer);
  // Default: no origin may start rooms.
  const { client, spy } = makeServer(room);
  const body = { origin: creatorServer, origin_server_ts: 1, pdus: [create.pdu, ...rest.map((e) => e.pdu)] };
  const r = await client.request(creatorServer, "PUT", `${FED}/send/new-room`, body);
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.body.pdus), [create.event_id], "only the create event gets an entry; the others have no computable ID here");
  assert.match(r.body.pdus[create.event_id].error, /does not accept new rooms from/);
  assert.equal(spy.create, 0);
  assert.equal(spy.append, 0);
  assert.equal(spy.ingest, 0);
  // Non-create PDUs alone: no entries at all (Synapse), nothing stored.
  const r2 = await client.request(creatorServer, "PUT", `${FED}/send/no-create`, { origin: creatorServer, origin_server_ts: 1, pdus: rest.map((e) => e.pdu) });
  assert.deepEqual(r2.body, { pdus: {} });
  assert.equal(spy.append + spy.create + spy.ingest, 0);
  assert.equal(await client.request(creatorServer, "GET", `${FED}/state_ids/${q(room.room_id)}?event_id=${q(create.event_id)}`).then((x) => x.status), 403, "still unknown");

  // Accepted origins only: another server's create is refused.
  const other = Object.keys(room.servers).find((s) => s !== creatorServer);
  const only = makeServer(room, { acceptRoomsFrom: other });
  const r3 = await only.client.request(creatorServer, "PUT", `${FED}/send/not-listed`, body);
  assert.match(r3.body.pdus[create.event_id].error, /does not accept new rooms/);
  assert.equal(only.spy.create + only.spy.append, 0);

  // An accepted origin with a create event whose signature does not verify: refused, nothing created.
  const forged = structuredClone(create.pdu);
  const sigs = forged.signatures[creatorServer];
  sigs[Object.keys(sigs)[0]] = "A".repeat(86);
  const listed = makeServer(room, { acceptRoomsFrom: `${other}, ${creatorServer}` });
  const r4 = await listed.client.request(creatorServer, "PUT", `${FED}/send/forged`, { origin: creatorServer, origin_server_ts: 1, pdus: [forged] });
  assert.match(r4.body.pdus[create.event_id].error, /Create event refused/);
  assert.equal(listed.spy.create + listed.spy.append + listed.spy.ingest, 0);
  // The valid one starts the room; the create event is stored first.
  const r5 = await listed.client.request(creatorServer, "PUT", `${FED}/send/valid`, body);
  assert.deepEqual(r5.body.pdus[create.event_id], {});
  assert.equal(listed.spy.create, 1);
  assert.equal((await listed.inner.get(room.room_id)).roomId, room.room_id);
});

test("/send: a rejected create event starts nothing, and a held room's version never changes", async () => {
  // Built here: a v10 create whose sender's server is not the room ID's (auth rules reject it).
  const { room } = loadFixture(fixtureName);
  const [a, b] = Object.keys(room.servers);
  const ka = keyOf(room, a);
  const roomId = `!versioned:${b}`;
  const createFor = (version, sender, ts) =>
    signPdu(
      { type: "m.room.create", state_key: "", sender, room_id: roomId, content: { room_version: version, ...(Number(version) < 11 ? { creator: sender } : {}) }, depth: 1, origin_server_ts: ts, prev_events: [], auth_events: [] },
      { roomVersion: version, ...ka },
    );
  const { client, spy, inner } = makeServer(room, { acceptRoomsFrom: "*" });
  const rejected = createFor("9", `@u:${a}`, 1); // room ID's server is b: rejected by the auth rules
  const r1 = await client.request(a, "PUT", `${FED}/send/rejected-create`, { origin: a, origin_server_ts: 1, pdus: [rejected.pdu] });
  assert.match(r1.body.pdus[rejected.eventId].error, /Create event refused/);
  assert.equal(spy.create + spy.append + spy.ingest, 0, "a rejected create event creates and stores nothing");
  assert.equal(await inner.get(roomId), undefined);

  // b's valid v10 create starts the room at version 10.
  const kb = keyOf(room, b);
  const good = signPdu(
    { type: "m.room.create", state_key: "", sender: `@u:${b}`, room_id: roomId, content: { room_version: "10", creator: `@u:${b}` }, depth: 1, origin_server_ts: 2, prev_events: [], auth_events: [] },
    { roomVersion: "10", ...kb },
  );
  const r2 = await client.request(b, "PUT", `${FED}/send/good-create`, { origin: b, origin_server_ts: 1, pdus: [good.pdu] });
  assert.deepEqual(r2.body.pdus[good.eventId], {});
  const engine = await inner.get(roomId);
  assert.equal(engine.roomVersion, "10");
  spy.reset();
  // Another create for the held room, claiming version 9: not stored, the version stays.
  const again = signPdu(
    { type: "m.room.create", state_key: "", sender: `@u:${b}`, room_id: roomId, content: { room_version: "9", creator: `@u:${b}` }, depth: 1, origin_server_ts: 3, prev_events: [], auth_events: [] },
    { roomVersion: "9", ...kb },
  );
  const r3 = await client.request(b, "PUT", `${FED}/send/second-create`, { origin: b, origin_server_ts: 1, pdus: [again.pdu] });
  assert.equal(r3.status, 200);
  assert.equal(spy.append, 0, "nothing stored");
  assert.equal(engine.eventCount, 1);
  assert.equal(engine.roomVersion, "10");
  assert.equal((await inner.get(roomId)).roomVersion, "10");
});

// ---------------------------------------------------------------------------
// Item 5: rejected events per origin are bounded.

test("rejected events per origin per room are bounded; past the bound the origin's PDUs are refused and nothing is stored", async () => {
  let clock = Date.now();
  const { client, spy, room, inner } = await populated({ now: () => clock });
  const [, b] = Object.keys(room.servers);
  const kb = keyOf(room, b);
  const { prev, state, engine } = await tips(inner, room.room_id);
  const auth = [state["m.room.create\u0000"], state["m.room.power_levels\u0000"]];
  let n = 0;
  const intruder = () =>
    signPdu(
      { type: "m.room.message", sender: `@intruder:${b}`, room_id: room.room_id, content: { body: `no ${n++}` }, depth: 1000 + n, origin_server_ts: clock, prev_events: prev, auth_events: auth },
      { roomVersion: room.room_version, ...kb },
    );
  const limit = REJECTED_PER_ORIGIN.events;
  let txn = 0;
  const send = async (pdus) => (await client.request(b, "PUT", `${FED}/send/limit-${txn++}`, { origin: b, origin_server_ts: 1, pdus: pdus.map((p) => p.pdu) })).body.pdus;
  for (let sent = 0; sent < limit; sent += 50) {
    const batch = Array.from({ length: Math.min(50, limit - sent) }, intruder);
    const res = await send(batch);
    for (const p of batch) assert.match(res[p.eventId].error, /./, "rejected, with a reason");
  }
  const stored = engine.eventCount;
  const appends = spy.append;
  // Over the bound: refused with a clear error, not stored — also a PDU that would be accepted.
  const over = intruder();
  const res = await send([over]);
  assert.match(res[over.eventId].error, /Too many rejected events from/);
  assert.equal(engine.eventCount, stored, "nothing stored");
  assert.equal(spy.append, appends, "no store write");
  // Another origin is not affected, and after the window the origin is heard again.
  clock += REJECTED_PER_ORIGIN.windowMs;
  const later = intruder();
  const res2 = await send([later]);
  assert.doesNotMatch(res2[later.eventId].error, /Too many/);
  assert.equal(engine.eventCount, stored + 1);
});

// ---------------------------------------------------------------------------
// Item 6: load per origin.

test("one transaction per origin at a time: another one meanwhile gets 429 M_LIMIT_EXCEEDED and stores nothing; the same one is coalesced", async () => {
  let release;
  let gate = Promise.resolve();
  const { room } = loadFixture(fixtureName);
  const made = makeServer(room, { acceptRoomsFrom: "*", appendGate: () => gate });
  await made.client.sendAll();
  const { client, spy, inner } = made;
  const [a, b] = Object.keys(room.servers);
  const { prev, state, engine } = await tips(inner, room.room_id);
  const msg = (server, body) =>
    signPdu(
      { type: "m.room.message", sender: `@someone:${server}`, room_id: room.room_id, content: { body }, depth: 5000, origin_server_ts: Date.now(), prev_events: prev, auth_events: [state["m.room.create\u0000"], state["m.room.power_levels\u0000"]] },
      { roomVersion: room.room_version, ...keyOf(room, server) },
    );
  gate = new Promise((r) => (release = r));
  spy.reset();
  const count = engine.eventCount;
  const first = msg(a, "first");
  const t1 = client.request(a, "PUT", `${FED}/send/slow`, { origin: a, origin_server_ts: 1, pdus: [first.pdu] });
  const t1again = client.request(a, "PUT", `${FED}/send/slow`, { origin: a, origin_server_ts: 1, pdus: [first.pdu] });
  await new Promise((r) => setTimeout(r, 50)); // t1 is now waiting on its store write
  const second = msg(a, "second");
  const t2 = await client.request(a, "PUT", `${FED}/send/meanwhile`, { origin: a, origin_server_ts: 1, pdus: [second.pdu] });
  assert.equal(t2.status, 429);
  assert.deepEqual(t2.body, { errcode: "M_LIMIT_EXCEEDED", error: "Too many concurrent transactions" });
  release();
  const [r1, r1again] = await Promise.all([t1, t1again]);
  assert.equal(r1.status, 200);
  assert.deepEqual(r1again.body, r1.body, "the same transaction, in flight twice, is processed once");
  assert.equal(spy.ingest, 1);
  assert.equal(engine.eventCount, count + 1, "only the first transaction's PDU was stored");
  // Not remembered: the retry is processed.
  const t2retry = await client.request(a, "PUT", `${FED}/send/meanwhile`, { origin: a, origin_server_ts: 1, pdus: [second.pdu] });
  assert.equal(t2retry.status, 200);
  void b;
});

test("identical concurrent /state_ids and /state requests share one computation and its answer for 30 s; each caller's access is still checked", async () => {
  let clock = Date.now();
  const { client, spy, room, expected } = await populated({ now: () => clock });
  const member = Object.keys(room.servers)[0];
  const ev = expected.queries.find((x) => x.endpoint === "state_ids" && x.expect.status === 200).event_id;
  for (const ep of ["state_ids", "state"]) {
    spy.reset();
    const target = `${FED}/${ep}/${q(room.room_id)}?event_id=${q(ev)}`;
    const answers = await Promise.all(Array.from({ length: 5 }, () => client.request(member, "GET", target)));
    for (const a of answers) assert.equal(a.status, 200);
    for (const a of answers.slice(1)) assert.deepEqual(a.body, answers[0].body);
    assert.equal(spy.query, 1, `${ep}: five identical requests, one computation`);
    clock += STATE_CACHE.ttlMs - 1;
    assert.equal((await client.request(member, "GET", target)).status, 200);
    assert.equal(spy.query, 1, `${ep}: answered from the cache within ${STATE_CACHE.ttlMs} ms`);
    // A server not in the room still gets 403, cached answer or not.
    const denied = await client.request("stranger.example", "GET", target);
    assert.equal(denied.status, 403);
    assert.equal(denied.body.errcode, "M_FORBIDDEN");
    clock += 2;
    assert.equal((await client.request(member, "GET", target)).status, 200);
    assert.equal(spy.query, 2, `${ep}: recomputed after ${STATE_CACHE.ttlMs} ms`);
  }
});

// ---------------------------------------------------------------------------
// Item 7: smaller items.

test("a 500 never echoes the internal error; it goes to onError", async () => {
  const { room } = loadFixture(fixtureName);
  const logged = [];
  const server = new FederationServer({
    serverName: SERVER,
    signingKey: OUR_KEY,
    trustedKeys: trustedKeysOf(room),
    rooms: { get: async () => { throw new Error("disk /var/lib/secret-path exploded"); }, create: async () => {}, findEvent: async () => undefined },
    onError: (e) => logged.push(String(e?.message ?? e)),
  });
  const client = new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture: room });
  const member = Object.keys(room.servers)[0];
  const r = await client.request(member, "GET", `${FED}/state_ids/${q(room.room_id)}?event_id=%24x`);
  assert.equal(r.status, 500);
  assert.deepEqual(r.body, { errcode: "M_UNKNOWN", error: "Internal server error" });
  assert.deepEqual(logged, ["disk /var/lib/secret-path exploded"]);
});

test("a txnId over 2 KiB is refused with 400 before any PDU is processed", async () => {
  const { client, spy, room } = await populated();
  const member = Object.keys(room.servers)[0];
  const r = await client.request(member, "PUT", `${FED}/send/${"t".repeat(2049)}`, { origin: member, origin_server_ts: 1, pdus: [room.events[0].pdu] });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, "M_INVALID_PARAM");
  spy.untouched("long txnId");
  const ok = await client.request(member, "PUT", `${FED}/send/${"t".repeat(2048)}`, { origin: member, origin_server_ts: 1, pdus: [] });
  assert.equal(ok.status, 200);
});

test("a redacted m.room.server_acl admits no server (Synapse reads the pruned event: allow defaults to [])", async () => {
  const { client, room, inner, expected } = await populated();
  const creator = room.creators?.[0] ?? room.events[0].pdu.sender;
  const origin = creator.split(":")[1];
  const k = keyOf(room, origin);
  const { prev, state } = await tips(inner, room.room_id);
  const aclAuth = [state["m.room.create\u0000"], state["m.room.power_levels\u0000"], state[`m.room.member\u0000${creator}`]].filter(Boolean);
  const acl = signPdu(
    { type: "m.room.server_acl", state_key: "", sender: creator, room_id: room.room_id, content: { allow: ["*"] }, origin_server_ts: Date.now(), depth: 100000, prev_events: prev, auth_events: aclAuth },
    { roomVersion: room.room_version, ...k },
  );
  const redaction = signPdu(
    { type: "m.room.redaction", sender: creator, room_id: room.room_id, redacts: acl.eventId, content: { redacts: acl.eventId }, origin_server_ts: Date.now(), depth: 100001, prev_events: [acl.eventId], auth_events: aclAuth },
    { roomVersion: room.room_version, ...k },
  );
  const ev = expected.queries.find((x) => x.endpoint === "state_ids" && x.expect.status === 200).event_id;
  const target = `${FED}/state_ids/${q(room.room_id)}?event_id=${q(ev)}`;
  const sent = await client.request(origin, "PUT", `${FED}/send/acl`, { origin, origin_server_ts: 1, pdus: [acl.pdu] });
  assert.deepEqual(sent.body.pdus[acl.eventId], {});
  assert.equal((await client.request(origin, "GET", target)).status, 200, "allowed by the ACL");
  const red = await client.request(origin, "PUT", `${FED}/send/redact-acl`, { origin, origin_server_ts: 1, pdus: [redaction.pdu] });
  assert.deepEqual(red.body.pdus[redaction.eventId], {});
  const r = await client.request(origin, "GET", target);
  assert.equal(r.status, 403);
  assert.deepEqual(r.body, { errcode: "M_FORBIDDEN", error: "Server is banned from room" });
});

test("unknown rooms answer authenticated non-members like Synapse (403 Host not in room; /event 404), loading and creating nothing", async () => {
  const { client, spy, room } = await populated();
  const member = Object.keys(room.servers)[0];
  const r = q("!unknown:nowhere.example");
  for (const [method, target, body] of [
    ["GET", `${FED}/state_ids/${r}?event_id=%24x`],
    ["GET", `${FED}/state/${r}?event_id=%24x`],
    ["GET", `${FED}/backfill/${r}?v=%24x&limit=5`],
    ["POST", `${FED}/get_missing_events/${r}`, { earliest_events: [], latest_events: ["$x"] }],
    ["GET", `${FED}/timestamp_to_event/${r}?ts=1&dir=b`],
    ["GET", `${FED}/event_auth/${r}/%24x`],
  ]) {
    const res = await client.request(member, method, target, body);
    assert.equal(res.status, 403, target);
    assert.deepEqual(res.body, { errcode: "M_FORBIDDEN", error: "Host not in room." }, target);
  }
  const missing = await client.request(member, "GET", `${FED}/state_ids/${r}`);
  assert.equal(missing.status, 400, "parameters first, as Synapse's servlet");
  const ev = await client.request(member, "GET", `${FED}/event/%24nowhere`);
  assert.equal(ev.status, 404);
  assert.equal(spy.create + spy.append + spy.ingest + spy.query, 0);
  assert.deepEqual(spy.fetch, []);
});
