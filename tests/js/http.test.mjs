// The federation handler over real signed requests made from the fixtures'
// server keys: every endpoint scored against Synapse's answers, and the
// authentication, ACL, limit and error paths.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FederationServer, RoomDirectory, MemoryStore, KeyRing, signPdu, serverKeysResponse, signJson, publicKeyOf } from "../../pkg/node.js";
import { FederationClient } from "./federation-client.mjs";
import { loadFixture, trustedKeysOf, norm } from "./fixtures.mjs";

const SERVER = "roomdag.test";
const OUR_KEY = { keyId: "ed25519:rd", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" };

function makeServer(fixture, extra = {}) {
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(fixture), acceptRoomsFrom: "*", ...extra });
  const client = new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture });
  return { server, rooms, client };
}

// v12-features-1k (ours, tests/shared/fixtures): knocks, restricted joins signed by
// two servers, third-party invites, ACLs, creators, and PDUs Synapse drops.
for (const name of ["v12-forky-1k", "v3-500", "v10-linear-200", "v12-features-1k"]) {
  test(`${name}: /send then every query matches Synapse`, async () => {
    const { room, expected } = loadFixture(name);
    const { client } = makeServer(room);
    const results = await client.sendAll();
    const wantStored = new Set(expected.events.filter((e) => e.status !== "dropped").map((e) => e.event_id));
    for (const e of expected.events) {
      const r = results[e.event_id];
      if (e.status === "accepted") assert.deepEqual(r, {}, `${e.event_id} should be accepted`);
      if (e.status === "rejected") assert.ok(r && typeof r.error === "string", `${e.event_id} should carry an error`);
      if (e.status === "dropped" && r) assert.equal(typeof r.error, "string", `${e.event_id} is dropped: an error`);
    }
    assert.ok(wantStored.size > 0);
    const mismatches = [];
    for (const qq of expected.queries) {
      const got = await client.answer(qq);
      const a = JSON.stringify(norm(qq.endpoint, qq.expect));
      const b = JSON.stringify(norm(qq.endpoint, got, qq.expect));
      if (a !== b) mismatches.push(`${qq.id} ${qq.endpoint}: want ${a.slice(0, 200)} got ${b.slice(0, 200)}`);
    }
    assert.deepEqual(mismatches, [], `${mismatches.length} of ${expected.queries.length} queries differ`);
  });
}

test("authentication: unsigned, wrongly signed, wrong destination, malformed, stranger", async () => {
  const { room } = loadFixture("v10-linear-200");
  const { client } = makeServer(room);
  await client.sendAll();
  const member = Object.keys(room.servers)[0];
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(room.events[5].event_id)}`;
  assert.equal((await client.request(member, "GET", target)).status, 200);
  const unsigned = await client.request(member, "GET", target, undefined, { sign: false });
  assert.equal(unsigned.status, 401);
  assert.equal(unsigned.body.errcode, "M_UNAUTHORIZED");
  const other = Object.keys(room.servers)[1];
  const forged = await client.request(member, "GET", target, undefined, {
    authorization: (await import("../../pkg/node.js")).signRequest({ origin: member, ...client.keyOf(other), destination: SERVER, method: "GET", target }),
  });
  assert.equal(forged.status, 401, "signed with another server's key");
  const wrongDest = await client.request(member, "GET", target, undefined, { destination: "elsewhere.example" });
  assert.equal(wrongDest.status, 401);
  const malformed = await client.request(member, "GET", target, undefined, { authorization: 'X-Matrix origin="a.example",key=' });
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.errcode, "M_UNAUTHORIZED");
  const duplicate = await client.request(member, "GET", target, undefined, {
    authorization: `X-Matrix origin="${member}",origin="${member}",key="ed25519:1",sig="AAAA"`,
  });
  assert.equal(duplicate.status, 400);
  const unknown = await client.request("unknown-origin.example", "GET", target);
  assert.equal(unknown.status, 401, "unknown-origin.example's key cannot be fetched: not authenticated");
  const stranger = await client.request("stranger.example", "GET", target);
  assert.equal(stranger.status, 403, "stranger.example is authenticated but not in the room");
  const posing = await client.request(member, "GET", target, undefined, {
    authorization: (await import("../../pkg/node.js")).signRequest({ origin: member, keyId: "ed25519:unknown", seed: "A".repeat(43), destination: SERVER, method: "GET", target }),
  });
  assert.equal(posing.status, 401, "a member's name with an unknown key gets no data");
  const bodyTampered = await client.request(member, "POST", `/_matrix/federation/v1/get_missing_events/${encodeURIComponent(room.room_id)}`,
    { earliest_events: [], latest_events: [room.events[9].event_id], limit: 5 },
    { authorization: (await import("../../pkg/node.js")).signRequest({ origin: member, ...client.keyOf(member), destination: SERVER, method: "POST",
      target: `/_matrix/federation/v1/get_missing_events/${encodeURIComponent(room.room_id)}`, body: { earliest_events: [], latest_events: [], limit: 5 } }) });
  assert.equal(bodyTampered.status, 401, "the signature covers the body");
});

test("errors: unknown room 403 (as Synapse), unknown event 404, unknown path 404, wrong method 405, bad params 400, oversized txn 400", async () => {
  const { room } = loadFixture("v10-linear-200");
  const { client } = makeServer(room);
  await client.sendAll();
  const o = Object.keys(room.servers)[0];
  const unknownRoom = await client.request(o, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent("!nope:x.example")}?event_id=%24x`);
  assert.equal(unknownRoom.status, 403);
  assert.equal(unknownRoom.body.errcode, "M_FORBIDDEN");
  assert.equal((await client.request(o, "GET", "/_matrix/federation/v1/event/%24unknown")).status, 404);
  const unknown = await client.request(o, "GET", "/_matrix/federation/v1/frobnicate");
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.errcode, "M_UNRECOGNIZED");
  assert.equal((await client.request(o, "POST", `/_matrix/federation/v1/event/%24x`, {})).status, 405);
  const noParam = await client.request(o, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}`);
  assert.equal(noParam.status, 400);
  assert.equal(noParam.body.errcode, "M_MISSING_PARAM");
  const badLimit = await client.request(o, "GET", `/_matrix/federation/v1/backfill/${encodeURIComponent(room.room_id)}?v=%24a&limit=0`);
  assert.equal(badLimit.status, 400);
  const badDir = await client.request(o, "GET", `/_matrix/federation/v1/timestamp_to_event/${encodeURIComponent(room.room_id)}?ts=1&dir=x`);
  assert.equal(badDir.status, 400);
  const pdus = Array.from({ length: 51 }, () => room.events[0].pdu);
  const big = await client.request(o, "PUT", "/_matrix/federation/v1/send/big", { origin: o, origin_server_ts: 1, pdus });
  assert.equal(big.status, 400);
  const edus = Array.from({ length: 101 }, () => ({ edu_type: "m.typing", content: {} }));
  assert.equal((await client.request(o, "PUT", "/_matrix/federation/v1/send/edus", { origin: o, origin_server_ts: 1, pdus: [], edus })).status, 400);
  const notJson = await client.send(new Request("http://roomdag.test/_matrix/federation/v1/send/x", { method: "PUT", body: "{nope" }));
  assert.equal(notJson.status, 401, "unauthenticated garbage is refused before it is parsed");
});

test("/send is idempotent per (origin, txnId) and never duplicates events", async () => {
  const { room } = loadFixture("v10-linear-200");
  const { client, rooms } = makeServer(room);
  const o = room.events[0].origin;
  const first = room.events.slice(0, 20).filter((e) => e.origin === o);
  const body = { origin: o, origin_server_ts: 1, pdus: first.map((e) => e.pdu) };
  const a = await client.request(o, "PUT", "/_matrix/federation/v1/send/same", body);
  const b = await client.request(o, "PUT", "/_matrix/federation/v1/send/same", body);
  assert.equal(a.status, 200);
  assert.deepEqual(a.body, b.body);
  const engine = await rooms.get(room.room_id);
  const count = engine.eventCount;
  const c = await client.request(o, "PUT", "/_matrix/federation/v1/send/other", body);
  assert.equal(c.status, 200);
  assert.equal(engine.eventCount, count, "re-sent PDUs are duplicates, not new events");
});

test("/send with a transaction log: a retry reaching another server instance gets the first answer", async () => {
  const { room, expected } = loadFixture("v10-linear-200");
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const saved = new Map();
  const log = {
    get: async (origin, txnId) => saved.get(`${origin} ${txnId}`),
    put: async (origin, txnId, response) => void saved.set(`${origin} ${txnId}`, structuredClone(response)),
  };
  const instance = (transactions) => {
    const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(room), transactions, acceptRoomsFrom: "*" });
    return new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture: room });
  };
  const r = expected.events.findIndex((e) => e.status === "rejected");
  assert.ok(r > 0, "the fixture has a rejected event");
  const a = instance(log);
  const o = room.events[r].origin;
  for (let i = 0; i < r; i += 50) {
    const pdus = room.events.slice(i, Math.min(i + 50, r)).map((e) => e.pdu);
    assert.equal((await a.request(o, "PUT", `/_matrix/federation/v1/send/prefix-${i}`, { origin: o, origin_server_ts: 1, pdus })).status, 200);
  }
  const body = { origin: o, origin_server_ts: 1, pdus: [room.events[r].pdu] };
  const first = await a.request(o, "PUT", "/_matrix/federation/v1/send/retry-me", body);
  assert.equal(typeof first.body.pdus[room.events[r].event_id]?.error, "string", JSON.stringify(first.body));
  // Another instance (another Worker isolate, or a restart) sharing the log: the same answer.
  const again = await instance(log).request(o, "PUT", "/_matrix/federation/v1/send/retry-me", body);
  assert.deepEqual(again.body, first.body);
  // Without the log, the PDU is a duplicate by then and the answer changes.
  const forgetful = await instance(undefined).request(o, "PUT", "/_matrix/federation/v1/send/retry-me", body);
  assert.deepEqual(forgetful.body.pdus[room.events[r].event_id], {});
  // Only successful answers are logged, under their origin.
  assert.deepEqual([...saved.keys()].filter((k) => k.endsWith(" retry-me")), [`${o} retry-me`]);
});

test("server ACL: a denied server gets 403 on queries and per-PDU errors on /send", async () => {
  const { room } = loadFixture("v10-linear-200");
  const { client, rooms } = makeServer(room);
  await client.sendAll();
  const engine = await rooms.get(room.room_id);
  // An admin (the creator) bans one of the member servers with an ACL.
  const creator = room.creators?.[0] ?? room.events[0].pdu.sender;
  const origin = creator.split(":")[1];
  const denied = Object.keys(room.servers).find((s) => s !== origin);
  const state = engine.currentState().state;
  const ext = engine.exportGraph().forward_extremities.map((i) => engine.exportGraph().events[i].event_id);
  const acl = {
    type: "m.room.server_acl", state_key: "", sender: creator, room_id: room.room_id,
    content: { allow: ["*"], deny: [denied], allow_ip_literals: false },
    origin_server_ts: Date.now(), depth: 100000, prev_events: ext,
    auth_events: [state["m.room.create\u0000"], state["m.room.power_levels\u0000"], state[`m.room.member\u0000${creator}`]].filter(Boolean),
  };
  const s = room.servers[origin];
  const signed = signPdu(acl, { roomVersion: room.room_version, server: origin, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed });
  const sent = await client.request(origin, "PUT", "/_matrix/federation/v1/send/acl", { origin, origin_server_ts: 1, pdus: [signed.pdu] });
  assert.deepEqual(sent.body.pdus[signed.eventId], {}, JSON.stringify(sent.body));
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(room.events[5].event_id)}`;
  const r = await client.request(denied, "GET", target);
  assert.equal(r.status, 403);
  assert.equal(r.body.errcode, "M_FORBIDDEN");
  assert.equal((await client.request(origin, "GET", target)).status, 200);
  const pdu = room.events.find((e) => e.origin === denied).pdu;
  const viaSend = await client.request(denied, "PUT", "/_matrix/federation/v1/send/denied", { origin: denied, origin_server_ts: 1, pdus: [pdu] });
  assert.equal(viaSend.status, 200);
  assert.match(Object.values(viaSend.body.pdus)[0].error, /banned/);
});

test("keys: our key endpoint is self-signed; unknown origins' keys are fetched, verified and cached", async () => {
  const { room } = loadFixture("v10-linear-200");
  const [first, ...others] = Object.keys(room.servers);
  const trusted = trustedKeysOf(room);
  delete trusted[first]; // this server's key must be fetched
  let fetches = 0;
  const fetch = async (url) => {
    if (url === `https://${first}/.well-known/matrix/server`) return new Response("", { status: 404 }); // no delegation: port 8448
    fetches++;
    if (url === `https://${first}:8448/_matrix/key/v2/server`) {
      const s = room.servers[first];
      return new Response(JSON.stringify(serverKeysResponse({ serverName: first, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed })));
    }
    return new Response("", { status: 404 });
  };
  const { client } = makeServer(room, { trustedKeys: trusted, fetch });
  const keys = await client.request(first, "GET", "/_matrix/key/v2/server", undefined, { sign: false });
  assert.equal(keys.status, 200);
  const ring = new KeyRing();
  assert.equal(ring.addServerKeys(JSON.stringify(keys.body), SERVER, Date.now()), 1, "our key response verifies");
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(room.events[3].event_id)}`;
  const [a, b] = await Promise.all([client.request(first, "GET", target), client.request(first, "GET", target)]);
  assert.equal(a.status, 403, "authenticated (the room does not exist yet: Host not in room)");
  assert.equal(b.status, 403);
  assert.equal(fetches, 1, "concurrent fetches of one server's keys are coalesced");
  await client.sendAll();
  assert.equal((await client.request(first, "GET", target)).status, 200);
  assert.ok(fetches <= 2, `keys are cached, and a server is not asked again at once (${fetches} fetches)`);
  assert.ok(others.length > 0);
});

test("keys: when the origin cannot be reached, a notary's countersigned answer is used", async () => {
  const { room } = loadFixture("v10-linear-200");
  // A server that did not create the room (so the room exists without it).
  const first = Object.keys(room.servers).find((x) => x !== room.events[0].origin && room.events.some((e) => e.origin === x));
  const trusted = trustedKeysOf(room);
  delete trusted[first];
  const notary = { server: "notary.example", keyId: "ed25519:n", seed: "bm90YXJ5IG5vdGFyeSBub3Rhcnkgbm90YXJ5IG5vdGE" };
  trusted[notary.server] = { [notary.keyId]: publicKeyOf(notary.seed) };
  const s = room.servers[first];
  let notaryAsked = 0;
  const fetch = async (url, init) => {
    if (url === "https://notary.example:8448/_matrix/key/v2/query" && init?.method === "POST") {
      notaryAsked++;
      const asked = Object.keys(JSON.parse(init.body).server_keys)[0];
      const own = serverKeysResponse({ serverName: asked, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed });
      return new Response(JSON.stringify({ server_keys: [signJson(own, notary)] }));
    }
    return new Response("unreachable", { status: 502 });
  };
  const { client } = makeServer(room, { trustedKeys: trusted, fetch, notaryServers: [notary.server] });
  await client.sendAll();
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(room.events[3].event_id)}`;
  assert.equal((await client.request(first, "GET", target)).status, 200);
  assert.ok(notaryAsked >= 1, "the notary was asked");

  // A notary answer without the notary's signature is not trusted.
  const { client: c2 } = makeServer(room, {
    trustedKeys: trusted,
    notaryServers: [notary.server],
    fetch: async (url) =>
      url.endsWith("/_matrix/key/v2/query")
        ? new Response(JSON.stringify({ server_keys: [serverKeysResponse({ serverName: first, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed })] }))
        : new Response("", { status: 502 }),
  });
  const results = await c2.sendAll();
  const mine = room.events.filter((e) => e.origin === first);
  assert.ok(mine.length > 0 && mine.every((e) => results[e.event_id]?._status === 401), "the uncountersigned key was not trusted: its transactions are refused");
  assert.notEqual((await c2.request(first, "GET", target)).status, 200);
});
