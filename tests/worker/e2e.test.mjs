// The Worker end to end in workerd (`wrangler dev`): a fixture replayed
// through real signed `PUT /send` transactions from the fixture's servers,
// every query asked as a real signed HTTP request and scored like
// compare.py (100 %), the error paths, and a restart that keeps every event.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { signPdu } from "../../pkg/node.js";
import { FederationClient } from "../js/federation-client.mjs";
import { loadFixture, trustedKeysOf, norm } from "../js/fixtures.mjs";
import { startWorker } from "./wrangler.mjs";

const SERVER = "roomdag.e2e";
const NAME = process.env.ROOMDAG_E2E_FIXTURE ?? "v12-forky-1k";
const { room, expected } = loadFixture(NAME);
const vars = {
  SERVER_NAME: SERVER,
  SIGNING_KEY: "ed25519:e2e dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE",
  ADMIN_TOKEN: "e2e-admin-token-0123456789",
  TRUSTED_KEYS: JSON.stringify(trustedKeysOf(room)),
  INSPECTOR: "open",
  // The fixture's servers create the rooms of these tests over /send.
  ACCEPT_ROOMS_FROM: "*",
  // Key fetches go nowhere (no DNS here): fail fast on loopback.
  KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
  WELL_KNOWN_SERVER: "roomdag.e2e:443",
  // A fixture room is small: its image is due after 100 records (default 1,000).
  IMAGE_AFTER_RECORDS: "100",
};

let worker;
let client;
const http = (url) => (req) => fetch(new Request(url + new URL(req.url).pathname + new URL(req.url).search, req));

before(async () => {
  worker = await startWorker({ vars });
  client = new FederationClient({ send: http(worker.url), destination: SERVER, fixture: room });
});
after(async () => worker?.stop());

test(`${NAME}: /send transactions, then every query over HTTP matches Synapse (100 %)`, { timeout: 600_000 }, async () => {
  const results = await client.sendAll();
  for (const e of expected.events) {
    const r = results[e.event_id];
    if (e.status === "accepted") assert.deepEqual(r, {}, `${e.event_id}: ${JSON.stringify(r)}`);
    if (e.status === "rejected") assert.equal(typeof r?.error, "string", `${e.event_id} rejected: ${JSON.stringify(r)}`);
  }
  const mismatches = [];
  for (const qq of expected.queries) {
    const got = await client.answer(qq);
    const a = JSON.stringify(norm(qq.endpoint, qq.expect));
    const b = JSON.stringify(norm(qq.endpoint, got, qq.expect));
    if (a !== b) mismatches.push(`${qq.id} ${qq.endpoint}: want ${a.slice(0, 160)} got ${b.slice(0, 160)}`);
  }
  assert.deepEqual(mismatches, [], `${mismatches.length}/${expected.queries.length} differ`);
});

test("errors: unsigned/forged/wrong destination 401, oversized 400, unknown room 403, ACL-denied 403", async () => {
  const member = Object.keys(room.servers)[0];
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(expected.events.find((e) => e.status === "accepted" && e.event_id !== room.events[0].event_id).event_id)}`;
  assert.equal((await client.request(member, "GET", target)).status, 200);
  assert.equal((await client.request(member, "GET", target, undefined, { sign: false })).status, 401);
  assert.equal((await client.request(member, "GET", target, undefined, { destination: "other.example" })).status, 401);
  const other = Object.keys(room.servers)[1];
  const { signRequest } = await import("../../pkg/node.js");
  const forged = signRequest({ origin: member, ...client.keyOf(other), destination: SERVER, method: "GET", target });
  assert.equal((await client.request(member, "GET", target, undefined, { authorization: forged })).status, 401);
  const pdus = Array.from({ length: 51 }, () => room.events[0].pdu);
  assert.equal((await client.request(member, "PUT", "/_matrix/federation/v1/send/too-big", { origin: member, origin_server_ts: 1, pdus })).status, 400);
  const unknown = await client.request(member, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent("!unknown:nowhere.example")}?event_id=%24x`);
  assert.equal(unknown.status, 403, "Synapse: Host not in room");

  // An ACL from a creator denies one of the servers.
  const graph = await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/graph`)).json();
  const state = (await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/state`)).json()).state;
  const creator = room.creators?.[0] ?? room.events[0].pdu.sender;
  const origin = creator.split(":")[1];
  const denied = Object.keys(room.servers).find((s) => s !== origin && expected.servers_in_room.includes(s)) ?? Object.keys(room.servers).find((s) => s !== origin);
  const acl = {
    type: "m.room.server_acl", state_key: "", sender: creator, room_id: room.room_id,
    content: { allow: ["*"], deny: [denied], allow_ip_literals: false }, origin_server_ts: Date.now(), depth: 1_000_000,
    prev_events: graph.forward_extremities.map((i) => graph.events[i].event_id),
    auth_events: [state["m.room.power_levels\u0000"], state[`m.room.member\u0000${creator}`]].concat(room.room_version === "12" ? [] : [state["m.room.create\u0000"]]).filter(Boolean),
  };
  const s = room.servers[origin];
  const signed = signPdu(acl, { roomVersion: room.room_version, server: origin, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed });
  const sent = await client.request(origin, "PUT", "/_matrix/federation/v1/send/acl", { origin, origin_server_ts: 1, pdus: [signed.pdu] });
  assert.deepEqual(sent.body.pdus[signed.eventId], {}, JSON.stringify(sent.body));
  const r = await client.request(denied, "GET", target);
  assert.equal(r.status, 403);
  assert.equal(r.body.errcode, "M_FORBIDDEN");
});

test("a restarted Worker still has every stored event, and answers a retried transaction as the first time", { timeout: 300_000 }, async () => {
  // A PDU from a user who never joined: stored as rejected, answered with an error.
  const graph = await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/graph`)).json();
  const state = (await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/state`)).json()).state;
  // The creator's server: not the one the ACL above denies.
  const origin = (room.creators?.[0] ?? room.events[0].pdu.sender).split(":")[1];
  const s = room.servers[origin];
  const stranger = signPdu(
    {
      type: "m.room.message", sender: `@stranger:${origin}`, room_id: room.room_id, content: { msgtype: "m.text", body: "let me in" },
      origin_server_ts: Date.now(), depth: 1_000_001, prev_events: graph.forward_extremities.map((i) => graph.events[i].event_id),
      auth_events: [state["m.room.power_levels\u0000"]].concat(room.room_version === "12" ? [] : [state["m.room.create\u0000"]]),
    },
    { roomVersion: room.room_version, server: origin, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed },
  );
  const txn = { origin, origin_server_ts: 1, pdus: [stranger.pdu] };
  const first = await client.request(origin, "PUT", "/_matrix/federation/v1/send/retried-after-restart", txn);
  assert.equal(typeof first.body.pdus?.[stranger.eventId]?.error, "string", JSON.stringify(first.body));

  const before = (await (await fetch(`${worker.url}/_roomdag/rooms`)).json()).rooms;
  const stored = expected.events.filter((e) => e.status !== "dropped").length;
  assert.ok(before.find((r) => r.roomId === room.room_id).eventCount >= stored);
  // The room object writes its image (its engine tables) once it is due and
  // the room is quiet; the restart below reads it instead of replaying the log.
  const fullStatus = async () =>
    (await fetch(`${worker.url}/_roomdag/admin/status/${encodeURIComponent(room.room_id)}`, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` } })).json();
  const status = async () => (await fullStatus()).image;
  const deadline = Date.now() + 60_000;
  let image;
  // Written (after the import, once quiet): fewer records after it than the room has.
  while (!((image = await status()).lag < image.events)) {
    assert.ok(Date.now() < deadline, `no image within 60 s: ${JSON.stringify(image)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  await worker.stop();
  worker = await startWorker({ vars, persistTo: worker.persist });
  client = new FederationClient({ send: http(worker.url), destination: SERVER, fixture: room });
  const after = (await (await fetch(`${worker.url}/_roomdag/rooms`)).json()).rooms;
  assert.deepEqual(after, before);
  assert.deepEqual(await status(), image, "reopened from its image: only the records after it replayed (a whole-log replay has no image: lag = every record)");
  const q = expected.queries.find((x) => x.endpoint === "state_ids" && x.expect.status === 200);
  const got = await client.answer(q);
  assert.equal(JSON.stringify(norm(q.endpoint, got, q.expect)), JSON.stringify(norm(q.endpoint, q.expect)));
  // The status reports the room object's wasm memory, in whole 64 KiB pages.
  const { wasmMemoryBytes } = await fullStatus();
  assert.ok(Number.isInteger(wasmMemoryBytes / 65_536) && wasmMemoryBytes >= 1 << 20, `wasmMemoryBytes ${wasmMemoryBytes}`);
  // The retry reaches a fresh isolate: the answer comes from the transaction log, not the duplicate PDU ({}).
  const retry = await client.request(origin, "PUT", "/_matrix/federation/v1/send/retried-after-restart", txn);
  assert.deepEqual(retry.body, first.body);
});

test("GET /event finds an event of any room through the event index; unknown IDs are 404", { timeout: 120_000 }, async () => {
  // A second room, made here and signed by one of the fixture's servers.
  const origin = Object.keys(room.servers)[0];
  const s = room.servers[origin];
  const key = { roomVersion: "11", server: origin, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed };
  const user = `@indexer:${origin}`;
  const roomId = `!event-index-test:${origin}`;
  const base = { room_id: roomId, sender: user, origin_server_ts: 1_700_000_000_000 };
  const create = signPdu({ ...base, type: "m.room.create", state_key: "", content: { room_version: "11" }, depth: 1, prev_events: [], auth_events: [] }, key);
  const join = signPdu(
    { ...base, type: "m.room.member", state_key: user, content: { membership: "join" }, depth: 2, prev_events: [create.eventId], auth_events: [create.eventId] },
    key,
  );
  const sent = await client.request(origin, "PUT", "/_matrix/federation/v1/send/event-index", { origin, origin_server_ts: 1, pdus: [create.pdu, join.pdu] });
  assert.equal(sent.status, 200);
  assert.deepEqual(sent.body.pdus, { [create.eventId]: {}, [join.eventId]: {} });

  const event = (id) => client.request(origin, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(id)}`);
  const r = await event(join.eventId);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.pdus[0].content, join.pdu.content);
  // …and the fixture room's events still resolve to the fixture room.
  const q = expected.queries.find((x) => x.endpoint === "event" && x.expect.status === 200);
  assert.equal(JSON.stringify(norm(q.endpoint, await client.answer(q), q.expect)), JSON.stringify(norm(q.endpoint, q.expect)));
  for (const id of ["$notAnEventAnywhere0000000000000000000000000", "$" + "A".repeat(43)]) {
    const r = await event(id);
    assert.equal(r.status, 404, JSON.stringify(r.body));
    assert.equal(r.body.errcode, "M_NOT_FOUND");
  }
});

test("admin API: bearer token required; NDJSON import streams progress", async () => {
  const denied = await fetch(`${worker.url}/_roomdag/admin/rooms`);
  assert.equal(denied.status, 401);
  const ok = await fetch(`${worker.url}/_roomdag/admin/rooms`, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` } });
  assert.equal(ok.status, 200);
  // Re-importing the room as NDJSON: every PDU is a duplicate or dropped again.
  const ndjson = room.events.slice(0, 120).map((e) => JSON.stringify(e.pdu)).join("\n");
  const res = await fetch(`${worker.url}/_roomdag/admin/import`, {
    method: "POST",
    headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}`, "content-type": "application/x-ndjson" },
    body: ndjson,
  });
  const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.progress), "progress lines");
  const done = lines.at(-1).done;
  assert.equal(done.imported, 120);
  assert.equal(done.accepted + done.rejected, 0, "nothing new");
});

test("GET /.well-known/matrix/server answers WELL_KNOWN_SERVER (the live tier checks the 404 without it)", async () => {
  const r = await fetch(`${worker.url}/.well-known/matrix/server`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^application\/json/);
  assert.deepEqual(await r.json(), { "m.server": "roomdag.e2e:443" });
  assert.equal((await fetch(`${worker.url}/.well-known/matrix/server`, { method: "POST" })).status, 405);
});
