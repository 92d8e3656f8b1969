// The requesting side of federation (js/mirror.js) against a resident
// server holding a Synapse-judged fixture room (tests/js/resident.mjs):
// join + backfill to the create event, gap filling of pushed PDUs (short
// gaps by /get_missing_events, long ones by the remote state and a later
// backfill), and refusals that lose nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RoomMirror, RoomDirectory, MemoryStore, KeyRing, publicKeyOf, pinKeys } from "../../pkg/node.js";
import { loadFixture, trustedKeysOf } from "./fixtures.mjs";
import { Resident } from "./resident.mjs";

const OUR = "mirror.test";
const SEED = "bWlycm9yIHRlc3Qgc2VlZCAwMTIzNDU2Nzg5YWJjZGU";
const KEY_ID = "ed25519:m1";

async function setup(name, { limits } = {}) {
  const { room } = loadFixture(name);
  const resident = await new Resident(room).load();
  resident.trust(OUR, KEY_ID, publicKeyOf(SEED));
  const keyRing = pinKeys(new KeyRing(), trustedKeysOf(room));
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const log = [];
  const mirror = new RoomMirror({
    serverName: OUR,
    signingKey: { keyId: KEY_ID, seed: SEED },
    rooms,
    client: resident.client(OUR),
    keyRing,
    log: (l) => log.push(l),
    limits,
  });
  // Invite our user (the room may be invite-only by now).
  await resident.create({ type: "m.room.member", stateKey: mirror.userId, sender: resident.joinedMember(), content: { membership: "invite" } });
  return { room, resident, rooms, mirror, log };
}

/**
 * The resident's events that a server in the room can fetch (every
 * accepted event, and rejected events some event lists as a prev event: a
 * rejected leaf is on no path any server walks) that `engine` lacks.
 */
function sameRoom(resident, engine) {
  const theirs = resident.engine.exportGraph().events;
  const referenced = new Set(theirs.flatMap((e) => e.prev.map((i) => theirs[i].event_id)));
  const missing = theirs
    .filter((e) => e.status === "accepted" || referenced.has(e.event_id))
    .map((e) => e.event_id)
    .filter((id) => !engine.hasEvent(id) || engine.isOutlier(id));
  return { missing };
}

for (const name of ["v10-linear-200", "v12-forky-1k"]) {
  test(`${name}: join via the resident, then backfill to the create event: every event, the same state`, { timeout: 120_000 }, async () => {
    const { resident, rooms, mirror } = await setup(name);
    const progress = [];
    const joined = await mirror.join(resident.roomId, [resident.name], { onProgress: (p) => progress.push(p) });
    assert.equal(joined.roomVersion, resident.version);
    assert.ok(joined.backfill.complete, JSON.stringify(joined.backfill));
    assert.ok(progress.some((p) => p.phase === "make_join") && progress.some((p) => p.phase === "backfilled"));
    const engine = await rooms.get(resident.roomId);
    const { missing } = sameRoom(resident, engine);
    assert.deepEqual(missing, [], "every event the resident holds");
    // The same current state and forward extremities, and the same answers.
    assert.equal(engine.currentState().digest, resident.engine.currentState().digest);
    assert.deepEqual(engine.forwardExtremities().sort(), resident.engine.forwardExtremities().sort());
    for (const e of resident.fixture.events.filter((_, i) => i % 17 === 3)) {
      const a = engine.stateIds(resident.name, e.event_id);
      const b = resident.engine.stateIds(resident.name, e.event_id);
      assert.deepEqual([a.status, a.body?.pdu_ids?.sort()], [b.status, b.body?.pdu_ids?.sort()], e.event_id);
    }
    assert.equal(engine.pendingCount, 0);
  });
}

test("a send_join answer is stored in batches (joinBatch): each batch its own write, the same room; a join retried afterwards stores none of them again", { timeout: 120_000 }, async () => {
  const { resident, rooms, mirror } = await setup("v12-forky-1k", { limits: { joinBatch: 7 } });
  const progress = [];
  const joined = await mirror.join(resident.roomId, [resident.name], { onProgress: (p) => progress.push(p), backfill: false });
  const batches = progress.filter((p) => p.phase === "state");
  assert.equal(batches.length, Math.ceil(joined.authEvents / 7), JSON.stringify(batches.slice(0, 3)));
  assert.ok(batches.length > 2, `a few batches: ${batches.length}`);
  assert.equal(batches.at(-1).stored, joined.authEvents);
  const engine = await rooms.get(resident.roomId);
  const joinEvent = joined.eventId;
  const a = engine.stateIds(resident.name, joinEvent);
  assert.equal(a.status, 200);
  assert.equal(a.body.pdu_ids.length, joined.stateEvents);
  const count = engine.eventCount;
  // A second send_join through the same server: every state and auth event is stored already.
  await mirror.join(resident.roomId, [resident.name], { backfill: false });
  assert.ok(engine.eventCount - count <= 1, `a retried join stores at most its new join event (${engine.eventCount - count})`);
});

test("gap filling: a pushed PDU 30 events ahead is completed by /get_missing_events rounds", { timeout: 60_000 }, async () => {
  const { resident, rooms, mirror } = await setup("v10-linear-200");
  await mirror.join(resident.roomId, [resident.name]);
  const engine = await rooms.get(resident.roomId);
  const sender = resident.joinedMember();
  let last;
  for (let i = 0; i < 31; i++) last = await resident.create({ type: "m.room.message", sender, content: { body: `missed ${i}`, msgtype: "m.text" } });
  const before = resident.requests.length;
  const { outcomes } = await mirror.receive(engine, [JSON.stringify(last.pdu)], resident.name);
  assert.equal(outcomes[0].status, "accepted", JSON.stringify(outcomes[0]));
  const asked = resident.requests.slice(before).map((r) => r.target.split("/")[4].split("?")[0]);
  assert.ok(asked.filter((a) => a === "get_missing_events").length >= 3, asked.join(","));
  assert.ok(!asked.includes("state_ids"), "no remote state needed");
  assert.deepEqual(sameRoom(resident, engine).missing, []);
});

test("gap filling: a gap longer than the bound is placed with the remote state, then backfilled whole", { timeout: 60_000 }, async () => {
  const { resident, rooms, mirror } = await setup("v10-linear-200", { limits: { gapRounds: 2 } });
  await mirror.join(resident.roomId, [resident.name]);
  const engine = await rooms.get(resident.roomId);
  const sender = resident.joinedMember();
  await resident.create({ type: "m.room.topic", stateKey: "", sender, content: { topic: "during the gap" } });
  let last;
  for (let i = 0; i < 60; i++) last = await resident.create({ type: "m.room.message", sender, content: { body: `missed ${i}`, msgtype: "m.text" } });
  const { outcomes, holes } = await mirror.receive(engine, [JSON.stringify(last.pdu)], resident.name);
  assert.equal(outcomes[0].status, "accepted", JSON.stringify(outcomes[0]));
  assert.ok(holes > 0, "a hole is left for backfill");
  assert.ok(engine.backwardExtremities().length > 0);
  // The state at the new event is the resident's (the topic included).
  assert.equal(engine.currentState().digest, resident.engine.currentState().digest);
  const r = await mirror.backfill(resident.roomId);
  assert.ok(r.complete, JSON.stringify(r));
  assert.deepEqual(sameRoom(resident, engine).missing, []);
  assert.equal(engine.currentState().digest, resident.engine.currentState().digest);
});

test("gap filling against a remote that answers garbage, too much or nothing: the PDU is reported and kept, nothing stored is lost", { timeout: 60_000 }, async () => {
  for (const fault of [() => ({ events: "garbage" }), () => ({ events: Array(500).fill({ type: "x" }) }), () => ({ events: [] }), () => { throw new Error("down"); }]) {
    const { resident, rooms, mirror } = await setup("v10-linear-200");
    await mirror.join(resident.roomId, [resident.name]);
    const engine = await rooms.get(resident.roomId);
    const stored = engine.eventCount;
    const digest = engine.currentState().digest;
    const sender = resident.joinedMember();
    let last;
    for (let i = 0; i < 5; i++) last = await resident.create({ type: "m.room.message", sender, content: { body: `m ${i}`, msgtype: "m.text" } });
    resident.faults.get_missing_events = fault;
    resident.faults.state_ids = () => ({ nonsense: true });
    const { outcomes } = await mirror.receive(engine, [JSON.stringify(last.pdu)], resident.name);
    assert.equal(outcomes[0].status, "dropped");
    assert.match(outcomes[0].reason, /could not be fetched/);
    assert.ok(engine.eventCount >= stored, "nothing stored is lost");
    assert.equal(engine.currentState().digest, digest, "the room's state is unchanged");
    // Kept: once the history arrives, the PDU is placed.
    delete resident.faults.get_missing_events;
    delete resident.faults.state_ids;
    const r = await mirror.backfill(resident.roomId);
    assert.ok(r.complete, JSON.stringify(r));
    assert.equal(engine.currentState().digest, resident.engine.currentState().digest);
  }
});

test("join via a server that is down, or that refuses: clear errors, nothing stored", async () => {
  const { resident, rooms, mirror } = await setup("v10-linear-200");
  await assert.rejects(mirror.join(resident.roomId, ["down.example"]), /down\.example.*unreachable/);
  assert.equal(await rooms.get(resident.roomId), undefined, "no room created");
  resident.faults.make_join = () => ({ room_version: resident.version, event: { type: "m.room.member", sender: "@someone:else", state_key: "@someone:else", room_id: resident.roomId, content: { membership: "join" } } });
  await assert.rejects(mirror.join(resident.roomId, [resident.name]), /template is not for @roomdag:mirror\.test/);
  resident.faults.make_join = () => ({ room_version: "99", event: {} });
  await assert.rejects(mirror.join(resident.roomId, [resident.name]), /room version "99" is not supported/);
  assert.equal(await rooms.get(resident.roomId), undefined, "no room created");
});

test("leave: make_leave → our signed leave → send_leave; our leave is stored, the history stays, later PDUs are not taken", { timeout: 60_000 }, async () => {
  const { resident, rooms, mirror } = await setup("v10-linear-200");
  await mirror.join(resident.roomId, [resident.name]);
  const engine = await rooms.get(resident.roomId);
  const before = engine.eventCount;
  const left = await mirror.leave(resident.roomId);
  assert.equal(left.outcome.status, "accepted", JSON.stringify(left));
  assert.equal(engine.eventCount, before + 1);
  const st = engine.currentState().state[`m.room.member\u0000${mirror.userId}`];
  assert.equal(st, left.eventId, "our membership is the leave");
  assert.equal(resident.engine.currentState().state[`m.room.member\u0000${mirror.userId}`], left.eventId, "the resident has it too");
  const later = await resident.create({ type: "m.room.message", sender: resident.joinedMember(), content: { body: "after we left", msgtype: "m.text" } });
  const { outcomes } = await mirror.receive(engine, [JSON.stringify(later.pdu)], resident.name);
  assert.equal(outcomes[0].status, "dropped");
  assert.match(outcomes[0].reason, /left this room/);
  assert.equal(engine.eventCount, before + 1, "nothing more stored");
});

test("backfill is resumable: stopped after a few requests, the room reopened from its store, a new participant finishes it", { timeout: 120_000 }, async () => {
  const { room } = loadFixture("v12-forky-1k");
  const resident = await new Resident(room).load();
  resident.trust(OUR, KEY_ID, publicKeyOf(SEED));
  const stores = new Map();
  const directory = () => new RoomDirectory({ createStore: (id) => stores.get(id) ?? stores.set(id, new MemoryStore()).get(id) });
  const participant = (rooms) =>
    new RoomMirror({ serverName: OUR, signingKey: { keyId: KEY_ID, seed: SEED }, rooms, client: resident.client(OUR), keyRing: pinKeys(new KeyRing(), trustedKeysOf(room)) });
  const first = participant(directory());
  await resident.create({ type: "m.room.member", stateKey: first.userId, sender: resident.joinedMember(), content: { membership: "invite" } });
  await first.join(resident.roomId, [resident.name], { backfill: false });
  const partial = await first.backfill(resident.roomId, { maxRequests: 2, finalRebuild: false });
  assert.equal(partial.complete, false, "two requests do not reach the create event");
  assert.ok(partial.fetched > 0);
  // A restart: a new directory over the same stores, a new participant.
  const rooms = directory();
  const reopened = await rooms.get(resident.roomId);
  assert.ok(reopened.pendingCount + reopened.deferredCount > 0, "history fetched before the restart is still held");
  const done = await participant(rooms).backfill(resident.roomId);
  assert.ok(done.complete, JSON.stringify(done));
  assert.deepEqual(sameRoom(resident, reopened).missing, []);
  assert.equal(reopened.currentState().digest, resident.engine.currentState().digest);
});
