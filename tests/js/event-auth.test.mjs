// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} through the
// FederationServer, over signed requests: every accepted event's answer is
// its full auth chain, computed here independently from the fixture's PDUs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FederationServer, RoomDirectory, MemoryStore, eventIdOf } from "../../pkg/node.js";
import { FederationClient } from "./federation-client.mjs";
import { loadFixture, trustedKeysOf } from "./fixtures.mjs";

const SERVER = "roomdag.test";
const OUR_KEY = { keyId: "ed25519:rd", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" };
const q = encodeURIComponent;

/** The auth chain of `id` (strict ancestors over auth_events), from the PDUs. */
function authChainOf(id, byId, roomVersion, roomId) {
  const direct = (eid) => {
    const ids = [...(byId.get(eid)?.pdu.auth_events ?? [])];
    // Room v12: the create event is implied ($ + the room ID's hash).
    if (roomVersion === "12" && byId.get(eid)?.pdu.type !== "m.room.create") ids.push(`$${roomId.slice(1)}`);
    return ids;
  };
  const seen = new Set();
  const todo = direct(id);
  while (todo.length) {
    const a = todo.pop();
    if (seen.has(a)) continue;
    seen.add(a);
    todo.push(...direct(a));
  }
  return seen;
}

for (const name of ["v10-linear-200", "v12-forky-1k"]) {
  test(`${name}: /event_auth of every accepted event is its full auth chain`, async () => {
    const { room, expected } = loadFixture(name);
    const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
    const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(room), acceptRoomsFrom: "*" });
    const client = new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture: room });
    await client.sendAll();
    const byId = new Map(room.events.map((e) => [e.event_id, e]));
    const status = new Map(expected.events.map((e) => [e.event_id, e.status]));
    const member = expected.servers_in_room[0];
    const path = (id) => `/_matrix/federation/v1/event_auth/${q(room.room_id)}/${q(id)}`;
    let checked = 0;
    const ids = room.events.map((e) => e.event_id).filter((_, i) => i % 7 === 0 || i > room.events.length - 5);
    for (const id of ids) {
      const r = await client.request(member, "GET", path(id));
      if (status.get(id) !== "accepted") {
        assert.equal(r.status, 404, `${id} is ${status.get(id)}: not served`);
        assert.equal(r.body.errcode, "M_NOT_FOUND");
        continue;
      }
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const got = r.body.auth_chain.map((p) => eventIdOf(p, room.room_version));
      assert.deepEqual(new Set(got), authChainOf(id, byId, room.room_version, room.room_id), `auth chain of ${id}`);
      assert.equal(got.length, new Set(got).size, "no duplicates");
      checked++;
    }
    assert.ok(checked > 10, `${checked} events checked`);
    // The engine API asks the same query.
    const engine = await rooms.get(room.room_id);
    const last = room.events.findLast((e) => status.get(e.event_id) === "accepted").event_id;
    const direct = engine.eventAuth(member, last);
    assert.equal(direct.status, 200);
    assert.deepEqual(new Set(direct.body.auth_chain.map((p) => eventIdOf(p, room.room_version))), authChainOf(last, byId, room.room_version, room.room_id));
  });
}

test("/event_auth errors: 403 outsider (before 404), 404 unknown event, 403 unknown room, 401 unsigned, 405", async () => {
  const { room, expected } = loadFixture("v10-linear-200");
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const server = new FederationServer({ serverName: SERVER, signingKey: OUR_KEY, rooms, trustedKeys: trustedKeysOf(room), acceptRoomsFrom: "*" });
  const client = new FederationClient({ send: (r) => server.handleFederationRequest(r), destination: SERVER, fixture: room });
  await client.sendAll();
  const member = expected.servers_in_room[0];
  const id = room.events[20].event_id;
  const path = (r, e) => `/_matrix/federation/v1/event_auth/${q(r)}/${q(e)}`;
  const unknown = await client.request(member, "GET", path(room.room_id, "$nope"));
  assert.deepEqual([unknown.status, unknown.body.errcode, unknown.body.error], [404, "M_NOT_FOUND", "Could not find event $nope"]);
  // stranger.example has no member (and no key anyone can fetch): 403, whether the event exists or not
  for (const e of [id, "$nope"]) {
    const r = await client.request("stranger.example", "GET", path(room.room_id, e));
    assert.equal(r.status, 403);
  }
  const outsider = Object.keys(room.servers).find((s) => !expected.servers_in_room.includes(s));
  if (outsider) {
    const r = await client.request(outsider, "GET", path(room.room_id, id));
    assert.deepEqual([r.status, r.body.errcode, r.body.error], [403, "M_FORBIDDEN", "Host not in room."]);
  }
  // An unknown room: Synapse's on_event_auth asserts the host is in the room first (403).
  assert.equal((await client.request(member, "GET", path("!unknown:a.example", id))).status, 403);
  assert.equal((await client.request(member, "GET", path(room.room_id, id), undefined, { sign: false })).status, 401);
  assert.equal((await client.request(member, "POST", path(room.room_id, id), {})).status, 405);
  const ok = await client.request(member, "GET", path(room.room_id, id));
  assert.equal(ok.status, 200);
  assert.ok(ok.body.auth_chain.length > 0);
});
