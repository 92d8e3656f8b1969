// Security of the serving layer (issue 11, docs/security.md) in workerd: the
// roomdag Worker under `wrangler dev`, wrapped by worker/test/spy.ts, which
// counts every Durable Object started or called, their storage writes,
// outbound fetches and token comparisons. Each case asserts the exact status
// and that nothing was stored, fetched or loaded that the request had no
// right to.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { signPdu, signRequest } from "../../pkg/node.js";
import { FederationClient } from "../js/federation-client.mjs";
import { loadFixture, trustedKeysOf, root, OUTSIDERS } from "../js/fixtures.mjs";
import { startWorker } from "./wrangler.mjs";

const SERVER = "roomdag.sec";
const FED = "/_matrix/federation/v1";
const q = encodeURIComponent;
const { room, expected } = loadFixture("v10-linear-200");
const servers = Object.keys(room.servers);
const TOKEN = "sec-admin-token-0123456789";
const vars = {
  SERVER_NAME: SERVER,
  SIGNING_KEY: "ed25519:sec dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE",
  ADMIN_TOKEN: TOKEN,
  TRUSTED_KEYS: JSON.stringify(trustedKeysOf(room)),
  ACCEPT_ROOMS_FROM: servers.join(","),
  KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
};
const config = join(root, "worker", "test", "spy.jsonc");

let worker;
let client;
const http = (url) => (req) => fetch(new Request(url + new URL(req.url).pathname + new URL(req.url).search, req));
const spy = async () => (await fetch(`${worker.url}/_spy`)).json();
const reset = () => fetch(`${worker.url}/_spy/reset`).then((r) => r.text());
/** Counters of Durable Objects and storage (everything but token comparisons). */
const touched = (s) => Object.fromEntries(Object.entries(s.counts).filter(([k]) => k !== "timingSafeEqual"));
const member = servers[0];
const accepted = expected.events.filter((e) => e.status === "accepted");
const ev = accepted[3].event_id;

before(async () => {
  worker = await startWorker({ vars, config });
  client = new FederationClient({ send: http(worker.url), destination: SERVER, fixture: room });
  const results = await client.sendAll();
  assert.deepEqual(results[accepted[5].event_id], {});
});
after(async () => worker?.stop());

// ---------------------------------------------------------------------------
// Item 1: the inspector.

test("inspector and admin API: closed by default — 401 M_MISSING_TOKEN / M_UNAUTHORIZED, no CORS, nothing loaded; the token opens them", async () => {
  const r = q(room.room_id);
  const paths = ["/_roomdag/rooms", "/_roomdag/config", `/_roomdag/rooms/${r}/graph`, `/_roomdag/rooms/${r}/state`, `/_roomdag/rooms/${r}/events/${q(ev)}`, "/_roomdag/admin/rooms"];
  await reset();
  let wrong = 0;
  for (const path of paths) {
    for (const [auth, errcode] of [
      [undefined, "M_MISSING_TOKEN"],
      ["Basic abc", "M_MISSING_TOKEN"],
      [`Bearer ${TOKEN.slice(0, -1)}x`, "M_UNAUTHORIZED"],
      [`Bearer ${TOKEN}0`, "M_UNAUTHORIZED"],
      ["Bearer x", "M_UNAUTHORIZED"],
    ]) {
      const res = await fetch(worker.url + path, { headers: { origin: "https://evil.example", ...(auth ? { authorization: auth } : {}) } });
      assert.equal(res.status, 401, `${path} with ${auth}`);
      const body = await res.json();
      assert.equal(body.errcode, errcode, `${path} with ${auth}`);
      assert.equal(typeof body.error, "string");
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="roomdag"');
      assert.equal(res.headers.get("access-control-allow-origin"), null);
      if (errcode === "M_UNAUTHORIZED") wrong++;
    }
  }
  const s = await spy();
  assert.deepEqual(touched(s), {}, "no room, directory or index object was started or called");
  assert.equal(s.counts.timingSafeEqual, wrong, "every wrong token was compared in constant time");
  // A preflight gets no CORS grant either.
  const pre = await fetch(`${worker.url}/_roomdag/rooms`, { method: "OPTIONS", headers: { origin: "https://evil.example", "access-control-request-method": "GET" } });
  assert.equal(pre.headers.get("access-control-allow-origin"), null);
  // With the token: the data, still without CORS headers.
  for (const path of paths) {
    const res = await fetch(worker.url + path, { headers: { authorization: `Bearer ${TOKEN}`, origin: "https://evil.example" } });
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("access-control-allow-origin"), null, path);
    await res.arrayBuffer();
  }
});

test("inspector: a malformed % escape is 400, never 500; refused requests are not decoded at all", async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  for (const path of ["/_roomdag/rooms/%E0%A4%A/graph", "/_roomdag/rooms/%zz/state", "/_roomdag/rooms/!r:x/events/%", "/_roomdag/admin/rooms/%ff%fe"]) {
    const res = await fetch(worker.url + path, { headers: auth });
    assert.equal(res.status, 400, path);
    assert.deepEqual(await res.json(), { errcode: "M_INVALID_PARAM", error: "malformed percent-encoding in the path" });
    const anon = await fetch(worker.url + path);
    assert.equal(anon.status, 401, `${path} without a token`);
    await anon.arrayBuffer();
  }
});

test("INSPECTOR=loopback: open to requests addressed to 127.0.0.1, localhost or [::1] only; an unknown value is a configuration error", { timeout: 300_000 }, async () => {
  const w = await startWorker({ vars: { ...vars, INSPECTOR: "loopback" }, config });
  try {
    const port = new URL(w.url).port;
    const get = (host) =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port, path: "/_roomdag/rooms", headers: { host } }, (res) => {
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode, body, cors: res.headers["access-control-allow-origin"] }));
        });
        req.on("error", reject);
        req.end();
      });
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, "localhost"]) {
      const r = await get(host);
      assert.equal(r.status, 200, `Host: ${host}`);
      assert.equal(r.cors, undefined);
    }
    for (const host of [`evil.example:${port}`, "roomdag.example", `127.0.0.1.evil.example:${port}`, `localhost.evil.example`]) {
      const r = await get(host);
      assert.equal(r.status, 401, `Host: ${host} (a DNS-rebinding page, or a deployed Worker)`);
      assert.equal(JSON.parse(r.body).errcode, "M_MISSING_TOKEN");
    }
  } finally {
    await w.stop();
  }
  // An unknown INSPECTOR value is a configuration error, not an open door.
  const bad = await startWorker({ vars: { ...vars, INSPECTOR: "yes" }, config, readyPath: "/_spy" });
  try {
    const res = await fetch(`${bad.url}/_roomdag/rooms`);
    assert.equal(res.status, 503);
    const body = await res.json();
    assert.ok(body.problems.some((p) => p.startsWith("INSPECTOR must be")), JSON.stringify(body));
  } finally {
    await bad.stop();
  }
});

// ---------------------------------------------------------------------------
// Item 2: authentication before any work.

test("federation: an unauthenticated request is 401/400 before any room, directory, index or transaction object is touched", async () => {
  const r = q(room.room_id);
  const targets = [
    ["GET", `${FED}/state_ids/${r}?event_id=${q(ev)}`],
    ["GET", `${FED}/state/${r}?event_id=${q(ev)}`],
    ["GET", `${FED}/backfill/${r}?v=${q(ev)}&limit=5`],
    ["POST", `${FED}/get_missing_events/${r}`, { earliest_events: [], latest_events: [ev] }],
    ["GET", `${FED}/timestamp_to_event/${r}?ts=1&dir=f`],
    ["GET", `${FED}/event/${q(ev)}`],
    ["PUT", `${FED}/send/unauth`, { origin: member, origin_server_ts: 1, pdus: [room.events[1].pdu] }],
  ];
  await reset();
  for (const [method, target, body] of targets) {
    for (const [why, opts, status] of [
      ["unsigned", { sign: false }, 401],
      ["wrong destination", { destination: "elsewhere.example" }, 401],
      ["malformed", { authorization: 'X-Matrix origin="a.example",key=' }, 400],
      ["another server's key", { authorization: signRequest({ origin: member, ...client.keyOf(servers[1]), destination: SERVER, method, target, body }) }, 401],
    ]) {
      const res = await client.request(member, method, target, body, opts);
      assert.equal(res.status, status, `${why}: ${method} ${target}`);
    }
  }
  let s = await spy();
  assert.deepEqual(touched(s), {}, "nothing started, called or written");
  assert.deepEqual(s.fetched, [], "no key fetched for a pinned origin");
  // An origin whose key cannot be fetched: its key URL is tried, nothing else happens.
  for (const [method, target, body] of targets) {
    const res = await client.request("unknown-origin.example", method, target, body);
    assert.equal(res.status, 401, `${method} ${target}`);
  }
  s = await spy();
  assert.deepEqual(touched(s), {});
  assert.ok(s.fetched.every((u) => u === "http://127.0.0.1:9/unknown-origin.example/_matrix/key/v2/server"), s.fetched.join(" "));
});

// ---------------------------------------------------------------------------
// Item 4: rooms from /send.

test("/send: PDUs for unknown rooms start nothing unless ACCEPT_ROOMS_FROM lists the origin and the create event is valid", async () => {
  const stranger = "stranger.example";
  const sKey = { keyId: OUTSIDERS[stranger].keyId, seed: OUTSIDERS[stranger].seed };
  const create = (server, key, roomId, extra = {}) =>
    signPdu(
      { type: "m.room.create", state_key: "", sender: `@u:${server}`, room_id: roomId, content: { room_version: "10", creator: `@u:${server}`, ...extra }, depth: 1, origin_server_ts: 1_700_000_000_000, prev_events: [], auth_events: [] },
      { roomVersion: "10", server, ...key },
    );
  await reset();
  // Junk rooms: no entries, no object started.
  const junk = Array.from({ length: 20 }, (_, i) => ({ type: "m.room.message", room_id: `!junk${i}:${member}`, sender: `@u:${member}`, content: {}, depth: 2, origin_server_ts: 1, prev_events: [], auth_events: [] }));
  const r1 = await client.request(member, "PUT", `${FED}/send/junk`, { origin: member, origin_server_ts: 1, pdus: junk });
  assert.equal(r1.status, 200);
  assert.deepEqual(r1.body, { pdus: {} });
  // A valid create from an origin not in ACCEPT_ROOMS_FROM: refused, says why.
  const c1 = create(stranger, sKey, `!new:${stranger}`);
  const r2 = await client.request(stranger, "PUT", `${FED}/send/stranger-room`, { origin: stranger, origin_server_ts: 1, pdus: [c1.pdu] });
  assert.match(r2.body.pdus[c1.eventId].error, /does not accept new rooms from stranger\.example/);
  // An accepted origin whose create event fails the auth rules (room ID of another server).
  const mk = { keyId: client.keyOf(member).keyId, seed: client.keyOf(member).seed };
  const c2 = create(member, mk, `!other:${servers[1]}`);
  const r3 = await client.request(member, "PUT", `${FED}/send/rejected-create`, { origin: member, origin_server_ts: 1, pdus: [c2.pdu] });
  assert.match(r3.body.pdus[c2.eventId].error, /Create event refused/);
  const s = await spy();
  for (const k of ["room.started", "room.create", "room.ingest", "directory.add", "room.storage.write", "directory.storage.write", "index.storage.write"]) {
    assert.equal(s.counts[k], undefined, `${k}: ${JSON.stringify(s.counts)}`);
  }
  // The same origin's valid create event starts the room.
  const c3 = create(member, mk, `!fresh:${member}`);
  const r4 = await client.request(member, "PUT", `${FED}/send/good-create`, { origin: member, origin_server_ts: 1, pdus: [c3.pdu] });
  assert.deepEqual(r4.body.pdus[c3.eventId], {});
  const s2 = await spy();
  assert.equal(s2.counts["room.create"], 1);
  assert.equal(s2.counts["directory.add"], 1);
});

// ---------------------------------------------------------------------------
// Item 5: body size.

test("a body over the transaction limit is refused with 413 M_TOO_LARGE: by its Content-Length, or after the cap when streamed", async () => {
  const port = new URL(worker.url).port;
  const target = `${FED}/send/huge`;
  const auth = signRequest({ origin: member, ...client.keyOf(member), destination: SERVER, method: "PUT", target, body: { pdus: [] } });
  await reset();
  const send = (headers, write) =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: "127.0.0.1", port, path: target, method: "PUT", headers: { authorization: auth, ...headers } }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
      });
      req.on("error", reject);
      write(req);
    });
  const declared = await send({ "content-length": String(200 * 65_536 + 1) }, (req) => req.end("x".repeat(200 * 65_536 + 1)));
  assert.equal(declared.status, 413);
  assert.equal(declared.body.errcode, "M_TOO_LARGE");
  const chunk = Buffer.alloc(1 << 20, 0x20);
  const streamed = await send({ "transfer-encoding": "chunked" }, (req) => {
    for (let i = 0; i < 14; i++) req.write(chunk);
    req.end();
  });
  assert.equal(streamed.status, 413);
  assert.deepEqual(touched(await spy()), {});
});

// ---------------------------------------------------------------------------
// Item 6: load per origin.

test("one transaction per origin across isolates: while another holds the origin's lease, /send is 429 M_LIMIT_EXCEEDED and nothing is ingested", async () => {
  const origin = member;
  const lease = await (await fetch(`${worker.url}/_spy/lease?origin=${q(origin)}&txn=elsewhere`)).json();
  assert.deepEqual(lease, {}, "the lease is taken (as by another isolate)");
  await reset();
  const body = { origin, origin_server_ts: 1, pdus: [room.events[1].pdu] };
  const r = await client.request(origin, "PUT", `${FED}/send/while-busy`, body);
  assert.equal(r.status, 429);
  assert.deepEqual(r.body, { errcode: "M_LIMIT_EXCEEDED", error: "Too many concurrent transactions" });
  assert.equal((await spy()).counts["room.ingest"], undefined);
  // Another origin is not held up.
  const other = servers[1];
  const r2 = await client.request(other, "PUT", `${FED}/send/other-origin`, { origin: other, origin_server_ts: 1, pdus: [] });
  assert.equal(r2.status, 200);
  await fetch(`${worker.url}/_spy/unlease?origin=${q(origin)}&txn=elsewhere`);
  const retry = await client.request(origin, "PUT", `${FED}/send/while-busy`, body);
  assert.equal(retry.status, 200, "the 429 was not remembered");
});

test("identical concurrent /state_ids requests are computed once; a non-member still gets 403", async () => {
  const target = `${FED}/state_ids/${q(room.room_id)}?event_id=${q(accepted[7].event_id)}`;
  await reset();
  const answers = await Promise.all(Array.from({ length: 6 }, () => client.request(member, "GET", target)));
  for (const a of answers) assert.equal(a.status, 200);
  for (const a of answers.slice(1)) assert.deepEqual(a.body, answers[0].body);
  assert.equal((await client.request(member, "GET", target)).status, 200);
  assert.equal((await spy()).counts["room.query"], 1, "one computation for seven requests");
  const denied = await client.request("stranger.example", "GET", target);
  assert.equal(denied.status, 403);
  assert.equal(denied.body.errcode, "M_FORBIDDEN");
});

// ---------------------------------------------------------------------------
// Item 7: smaller items.

test("500 answers never echo internal errors (federation and inspector)", async () => {
  await fetch(`${worker.url}/_spy/fail?on=1`);
  try {
    const fed = await client.request(member, "GET", `${FED}/backfill/${q(room.room_id)}?v=${q(ev)}&limit=3`);
    assert.equal(fed.status, 500);
    assert.deepEqual(fed.body, { errcode: "M_UNKNOWN", error: "Internal server error" });
    const insp = await fetch(`${worker.url}/_roomdag/rooms/${q(room.room_id)}/graph`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(insp.status, 500);
    const text = await insp.text();
    assert.deepEqual(JSON.parse(text), { errcode: "M_UNKNOWN", error: "Internal server error" });
    assert.doesNotMatch(text, /secret|disk7/);
  } finally {
    await fetch(`${worker.url}/_spy/fail?on=0`);
  }
  const unknownEvent = await fetch(`${worker.url}/_roomdag/rooms/${q(room.room_id)}/events/%24nope`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(unknownEvent.status, 404);
});

test("a txnId over 2 KiB is 400 before anything runs", async () => {
  await reset();
  const r = await client.request(member, "PUT", `${FED}/send/${"t".repeat(2049)}`, { origin: member, origin_server_ts: 1, pdus: [room.events[1].pdu] });
  assert.equal(r.status, 400);
  assert.equal(r.body.errcode, "M_INVALID_PARAM");
  assert.deepEqual(touched(await spy()), {});
  const ok = await client.request(member, "PUT", `${FED}/send/${"t".repeat(2048)}`, { origin: member, origin_server_ts: 1, pdus: [] });
  assert.equal(ok.status, 200, "the longest allowed ID is logged (its storage key is a hash)");
});

test("unknown rooms: 403 Host not in room (as Synapse) without starting a room object", async () => {
  await reset();
  for (const [method, target, body] of [
    ["GET", `${FED}/state_ids/${q("!nowhere:x.example")}?event_id=%24x`],
    ["GET", `${FED}/backfill/${q("!nowhere:x.example")}?v=%24x&limit=2`],
    ["POST", `${FED}/get_missing_events/${q("!nowhere:x.example")}`, { earliest_events: [], latest_events: ["$x"] }],
    ["GET", `${FED}/timestamp_to_event/${q("!nowhere:x.example")}?ts=1&dir=f`],
  ]) {
    const r = await client.request(member, method, target, body);
    assert.equal(r.status, 403, target);
    assert.deepEqual(r.body, { errcode: "M_FORBIDDEN", error: "Host not in room." });
  }
  const s = await spy();
  assert.equal(s.counts["room.started"], undefined);
  assert.equal(s.counts["room.info"], undefined);
});

test("/send asks its room object twice: one admission (ACL and rejection bound) before any work, then the receive", async () => {
  await reset();
  const pdu = room.events[5].pdu;
  const res = await client.request(member, "PUT", `${FED}/send/admission-1`, { origin: member, origin_server_ts: 1, pdus: [pdu] });
  assert.equal(res.status, 200);
  assert.deepEqual(res.body.pdus[room.events[5].event_id], {}, JSON.stringify(res.body));
  const c = (await spy()).counts;
  assert.equal(c["room.admission"], 1, JSON.stringify(c));
  assert.equal(c["room.receive"], 1, JSON.stringify(c));
  assert.equal(c["room.aclAllows"], undefined, "no separate ACL call");
  assert.equal(c["room.rejectionRefusal"], undefined, "no separate rejection-bound call");
});

test("rejected events per origin are bounded in the room's Durable Object: past 100, the origin's PDUs are refused and nothing is stored", { timeout: 120_000 }, async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const r = q(room.room_id);
  const graph = await (await fetch(`${worker.url}/_roomdag/rooms/${r}/graph`, { headers: auth })).json();
  const state = (await (await fetch(`${worker.url}/_roomdag/rooms/${r}/state`, { headers: auth })).json()).state;
  const prev = graph.forward_extremities.map((i) => graph.events[i].event_id);
  const b = servers[1];
  const key = { server: b, ...client.keyOf(b) };
  let n = 0;
  const intruder = () =>
    signPdu(
      { type: "m.room.message", sender: `@intruder:${b}`, room_id: room.room_id, content: { body: `no ${n++}` }, depth: 10_000 + n, origin_server_ts: Date.now(), prev_events: prev, auth_events: [state["m.room.create\u0000"], state["m.room.power_levels\u0000"]] },
      { roomVersion: room.room_version, ...key },
    );
  for (let t = 0; t < 2; t++) {
    const batch = Array.from({ length: 50 }, intruder);
    const res = await client.request(b, "PUT", `${FED}/send/rejected-${t}`, { origin: b, origin_server_ts: 1, pdus: batch.map((x) => x.pdu) });
    // (The fixture's own rejected events from b count too: the bound may be reached in the second batch.)
    if (t === 0) for (const x of batch) assert.doesNotMatch(res.body.pdus[x.eventId].error, /Too many/);
  }
  const count = (await (await fetch(`${worker.url}/_roomdag/rooms`, { headers: auth })).json()).rooms.find((x) => x.roomId === room.room_id).eventCount;
  await reset();
  const over = intruder();
  const res = await client.request(b, "PUT", `${FED}/send/rejected-over`, { origin: b, origin_server_ts: 1, pdus: [over.pdu] });
  assert.equal(res.status, 200);
  assert.match(res.body.pdus[over.eventId].error, /Too many rejected events from/);
  assert.equal((await spy()).counts["room.storage.write"], undefined, "nothing written");
  const after = (await (await fetch(`${worker.url}/_roomdag/rooms`, { headers: auth })).json()).rooms.find((x) => x.roomId === room.room_id).eventCount;
  assert.equal(after, count);
});

// Last: restarts the Worker.
test("the room directory: one storage value per room, listed in pages; a directory in the old one-value layout is moved on start", { timeout: 300_000 }, async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const list = async (from, limit) => (await fetch(`${worker.url}/_roomdag/rooms?limit=${limit}${from ? `&from=${q(from)}` : ""}`, { headers: auth })).json();
  const all = [];
  let page = await list(undefined, 1);
  for (;;) {
    assert.ok(page.rooms.length <= 1);
    all.push(...page.rooms.map((r) => r.roomId));
    if (!page.next_batch) break;
    page = await list(page.next_batch, 1);
  }
  assert.ok(all.includes(room.room_id) && all.length >= 2, all.join());
  const raw = await (await fetch(`${worker.url}/_spy/directory`)).json();
  assert.deepEqual(Object.keys(raw).filter((k) => !k.startsWith("room:")), []);
  // The old layout: every room in one value.
  const rooms = Object.fromEntries(all.map((id) => [id, id === room.room_id ? room.room_version : "10"]));
  const indexed = Object.fromEntries(all.map((id) => [id, id === room.room_id]));
  await fetch(`${worker.url}/_spy/legacy-directory`, { method: "POST", body: JSON.stringify({ rooms, indexed }) });
  await worker.stop();
  worker = await startWorker({ vars, config, persistTo: worker.persist });
  client = new FederationClient({ send: http(worker.url), destination: SERVER, fixture: room });
  const after = (await list(undefined, 1000)).rooms.map((r) => r.roomId);
  assert.deepEqual(after.sort(), all.slice().sort());
  const moved = await (await fetch(`${worker.url}/_spy/directory`)).json();
  assert.equal(moved.rooms, undefined);
  assert.equal(moved.indexed, undefined);
  for (const id of all) {
    assert.equal(moved[`room:${id}`], rooms[id]);
    assert.equal(moved[`unindexed:${id}`], id === room.room_id ? undefined : true);
  }
  // The room is still served.
  const target = `${FED}/state_ids/${q(room.room_id)}?event_id=${q(ev)}`;
  assert.equal((await client.request(member, "GET", target)).status, 200);
});
