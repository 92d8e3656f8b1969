// What a real backfilling server asks (issue 12, item 6), answered by the
// Worker exactly as Synapse answers it: a room made on hs1 (messages, topic
// and power-level changes, a kick, redactions of a message and of a member
// event), joined by bob on hs2. The harness's two Synapses federate (hs2
// back-paginates hs1's history through /backfill). Then the room's PDUs, as
// hs1 serves them, are imported into the Worker (which fetches hs1's and
// hs2's keys over TLS to check them), and the same signed requests from hs2
// go to hs1 and to the Worker: /event_auth, /state_ids, /state, /event,
// /backfill, /get_missing_events, and their errors, compared answer by answer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { eventIdOf } from "../../pkg/node.js";
import { skipReason, synapse, roomdag, stopAll, tlsRequest, federationRequest, synapseKey, MatrixUser, ROOMDAG, ADMIN_TOKEN, accessLog } from "./harness.mjs";

const skip = skipReason() ?? false;
const q = encodeURIComponent;
let hs1;
let hs2;
let worker;
let alice;
let carol;
let bob;

before(async () => {
  if (skip) return;
  [hs1, hs2] = await Promise.all([synapse("hs1"), synapse("hs2")]);
  worker = await roomdag();
  alice = await MatrixUser.register("hs1", "alice");
  carol = await MatrixUser.register("hs1", "carol");
  bob = await MatrixUser.register("hs2", "bob");
});
after(() => stopAll());

/** A room on hs1 with the features a real room has; bob on hs2 joins it. */
async function makeRoom(roomVersion) {
  const room = await alice.createRoom({ room_version: roomVersion, name: `history v${roomVersion}`, topic: "start" });
  for (let i = 0; i < 15; i++) await alice.send(room, `before ${i}`);
  await alice.putState(room, "m.room.topic", { topic: "second topic" });
  await carol.join(room);
  const carolJoin = (await alice.state(room)).find((e) => e.type === "m.room.member" && e.state_key === carol.userId).event_id;
  for (let i = 0; i < 5; i++) await carol.send(room, `carol ${i}`);
  const pl = await alice.getState(room, "m.room.power_levels");
  pl.users[carol.userId] = 50;
  pl.events["m.room.topic"] = 50;
  await alice.putState(room, "m.room.power_levels", pl);
  await carol.putState(room, "m.room.topic", { topic: "carol's topic" });
  const oops = await carol.send(room, "oops");
  await alice.redact(room, oops, "a message redaction");
  await alice.kick(room, carol.userId, "the kick");
  await alice.redact(room, carolJoin, "a member event redaction");
  for (let i = 0; i < 15; i++) await alice.send(room, `after ${i}`);
  await bob.join(room, [hs1.server_name]);
  // Each of bob's events reaches hs1 before the next event: a linear DAG, so
  // both servers order the history the same way (a fork's order depends on
  // each server's arrival order).
  for (let i = 0; i < 3; i++) await alice.waitForEvent(room, await bob.send(room, `bob ${i}`));
  for (let i = 0; i < 3; i++) await alice.send(room, `last ${i}`);
  return { room, carolJoin };
}

/**
 * Every PDU of the room as hs1 serves it to hs2 (/backfill pages from the
 * newest event), oldest first: in hs1's order (depth, then hs1's arrival), so
 * the Worker's arrival order (its tie-break within a depth) is hs1's.
 */
async function pdusFromHs1(room, roomVersion, newest) {
  const byId = new Map();
  let v = [newest];
  for (let page = 0; page < 100 && v.length; page++) {
    const target = `/_matrix/federation/v1/backfill/${q(room)}?${v.map((e) => `v=${q(e)}`).join("&")}&limit=100`;
    const r = await asHs2(hs1.server_name, "GET", target);
    assert.equal(r.status, 200, r.text);
    const before = byId.size;
    for (const p of r.body.pdus) byId.set(eventIdOf(p, roomVersion), p);
    if (byId.size === before) break;
    // continue from the prev events not yet held
    v = [...new Set(r.body.pdus.flatMap((p) => p.prev_events))].filter((e) => !byId.has(e));
  }
  // /backfill answers newest first: (depth, arrival) descending.
  const oldestFirst = [...byId.entries()].reverse().sort((a, b) => a[1].depth - b[1].depth);
  return new Map(oldestFirst);
}

function asHs2(destination, method, target, body) {
  return federationRequest({ origin: hs2.server_name, key: synapseKey("hs2"), destination, method, target, body });
}

/** Canonical text of a served PDU, `unsigned` left out (Synapse adds `age` there). */
function canon(pdu) {
  const sort = (v) => (Array.isArray(v) ? v.map(sort) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v);
  const { unsigned: _, ...rest } = pdu;
  return JSON.stringify(sort(rest));
}

for (const roomVersion of ["10", "12"]) {
  test(`v${roomVersion}: hs2 back-paginates hs1's history; the Worker answers hs2's history requests exactly as hs1 does`, { skip, timeout: 600_000 }, async (t) => {
    const { room, carolJoin } = await makeRoom(roomVersion);
    const onHs1 = await alice.paginate(room);
    const ids = onHs1.map((e) => e.event_id);
    assert.equal(onHs1[0].type, "m.room.create");

    await t.test("the two Synapses federate: hs2 back-paginates exactly hs1's history through /backfill", async () => {
      await bob.waitForEvent(room, ids.at(-1));
      const onHs2 = await bob.paginate(room);
      assert.deepEqual(onHs2.map((e) => e.event_id), ids);
      assert.ok(accessLog("hs1").some((l) => l.origin === hs2.server_name && decodeURIComponent(l.path).startsWith(`/_matrix/federation/v1/backfill/${room}`)), "hs1's access.log shows hs2's /backfill");
    });

    // The room's PDUs as hs1 serves them, into the Worker (oldest first).
    const pdus = await pdusFromHs1(room, roomVersion, ids.at(-1));
    assert.deepEqual(new Set(pdus.keys()), new Set(ids), "hs1's /backfill served every event of its timeline");
    const ordered = [...pdus.values()];
    const imported = await tlsRequest(`${worker.url}/_roomdag/admin/import`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/x-ndjson" },
      body: ordered.map((p) => JSON.stringify(p)).join("\n"),
    });
    const done = imported.text.trim().split("\n").map((l) => JSON.parse(l)).at(-1);
    assert.deepEqual(done, { done: { imported: ids.length, accepted: ids.length, rejected: 0, dropped: 0, duplicate: 0 } }, imported.text.slice(-500));

    const both = async (method, target, body) => {
      const [a, b] = await Promise.all([asHs2(hs1.server_name, method, target, body), asHs2(ROOMDAG, method, target, body)]);
      return { synapse: a, roomdag: b };
    };
    const eventIdsOf = (list) => list.map((p) => eventIdOf(p, roomVersion));

    await t.test(`/event_auth of all ${ids.length} events: the same auth chains, the same (redacted) PDUs`, async () => {
      for (const id of ids) {
        const { synapse: s, roomdag: r } = await both("GET", `/_matrix/federation/v1/event_auth/${q(room)}/${q(id)}`);
        assert.equal(r.status, s.status, `${id}: ${r.text}`);
        assert.equal(s.status, 200);
        const want = new Map(s.body.auth_chain.map((p) => [eventIdOf(p, roomVersion), canon(p)]));
        const got = new Map(r.body.auth_chain.map((p) => [eventIdOf(p, roomVersion), canon(p)]));
        assert.deepEqual(new Set(got.keys()), new Set(want.keys()), `auth chain of ${id}`);
        for (const [eid, text] of want) assert.equal(got.get(eid), text, `${eid} in the auth chain of ${id}`);
      }
      // The kick's auth chain holds carol's join, whose redaction both apply.
      const kick = onHs1.find((e) => e.type === "m.room.member" && e.state_key === carol.userId && e.content.membership === "leave").event_id;
      const r = await asHs2(ROOMDAG, "GET", `/_matrix/federation/v1/event_auth/${q(room)}/${q(kick)}`);
      const join = r.body.auth_chain.find((p) => eventIdOf(p, roomVersion) === carolJoin);
      assert.deepEqual(join?.content, { membership: "join" }, "carol's join, redacted (no displayname)");
    });

    await t.test("/state_ids and /state at every 5th event: the same state and auth chain", async () => {
      for (const id of ids.filter((_, i) => i % 5 === 0 || i === ids.length - 1)) {
        const a = await both("GET", `/_matrix/federation/v1/state_ids/${q(room)}?event_id=${q(id)}`);
        assert.equal(a.roomdag.status, a.synapse.status, a.roomdag.text);
        assert.deepEqual([...a.roomdag.body.pdu_ids].sort(), [...a.synapse.body.pdu_ids].sort(), `state before ${id}`);
        assert.deepEqual([...a.roomdag.body.auth_chain_ids].sort(), [...a.synapse.body.auth_chain_ids].sort(), `auth chain at ${id}`);
      }
      const last = ids.at(-1);
      const s = await both("GET", `/_matrix/federation/v1/state/${q(room)}?event_id=${q(last)}`);
      assert.deepEqual(s.roomdag.body.pdus.map(canon).sort(), s.synapse.body.pdus.map(canon).sort());
      assert.deepEqual(s.roomdag.body.auth_chain.map(canon).sort(), s.synapse.body.auth_chain.map(canon).sort());
    });

    await t.test("/event of every event, /backfill and /get_missing_events: the same PDUs in the same order", async () => {
      for (const id of ids) {
        const e = await both("GET", `/_matrix/federation/v1/event/${q(id)}`);
        assert.equal(e.roomdag.status, 200, e.roomdag.text);
        assert.equal(canon(e.roomdag.body.pdus[0]), canon(e.synapse.body.pdus[0]), id);
      }
      for (const [v, limit] of [[ids.at(-1), 100], [ids[Math.floor(ids.length / 2)], 10], [ids[3], 5]]) {
        const b = await both("GET", `/_matrix/federation/v1/backfill/${q(room)}?v=${q(v)}&limit=${limit}`);
        assert.deepEqual(eventIdsOf(b.roomdag.body.pdus), eventIdsOf(b.synapse.body.pdus), `backfill from ${v}, limit ${limit}`);
      }
      const body = { earliest_events: [ids[10]], latest_events: [ids.at(-1)], limit: 10, min_depth: 0 };
      const g = await both("POST", `/_matrix/federation/v1/get_missing_events/${q(room)}`, body);
      assert.equal(g.roomdag.status, 200, g.roomdag.text);
      assert.deepEqual(eventIdsOf(g.roomdag.body.events), eventIdsOf(g.synapse.body.events));
    });

    await t.test("errors: a server not in the room (403), an unknown event (404)", async () => {
      const target = `/_matrix/federation/v1/event_auth/${q(room)}/${q(ids[5])}`;
      // roomdag has no member in the room: asked as roomdag, both refuse.
      const [s, r] = await Promise.all([
        federationRequest({ origin: ROOMDAG, key: worker.signingKey, destination: hs1.server_name, target }),
        federationRequest({ origin: ROOMDAG, key: worker.signingKey, destination: ROOMDAG, target }),
      ]);
      assert.deepEqual([r.status, r.body.errcode], [s.status, s.body.errcode]);
      assert.equal(s.status, 403);
      const unknown = await both("GET", `/_matrix/federation/v1/event_auth/${q(room)}/${q("$unknownEventId0000000000000000000000000000")}`);
      assert.deepEqual([unknown.roomdag.status, unknown.roomdag.body.errcode], [unknown.synapse.status, unknown.synapse.body.errcode]);
      assert.equal(unknown.synapse.status, 404);
    });
  });
}
