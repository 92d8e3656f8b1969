// Issue 12's end-to-end tests against real Synapse: roomdag joins rooms on
// hs1, mirrors their history, fills its gaps, and serves the history to hs2
// when hs1 is down.
//
// Part of the live tier (tests/live/*.test.mjs).
// invites and gap filling (issue 12 items 1–5). To run it by hand:
//   ROOMDAG_TEST_ONLY=live ROOMDAG_LIVE_PENDING=run npm test
//   (or: ROOMDAG_SYNAPSE_PYTHON=… node --test tests/live/join.pending.mjs)
// To enable it in `npm test`: `git mv tests/live/join.pending.mjs tests/live/join.test.mjs`.
//
// What it relies on (issue 12):
//   POST /_roomdag/admin/join {"room", "via"} (Bearer ADMIN_TOKEN): NDJSON
//     progress lines ending in {"done": {…}} or {"error": "…"};
//   PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: accepted for
//     @roomdag:SERVER_NAME from a server in ACCEPT_INVITES_FROM, then joined
//     in the background;
//   GET /_roomdag/rooms (eventCount), GET /_roomdag/rooms/{roomId}/graph
//     (every stored event ID and its status);
//   outbound federation to 127.0.0.1 (the harness sets ALLOW_PRIVATE_ADDRESSES);
//   more Worker variables, if the join needs any: ROOMDAG_LIVE_JOIN_VARS (JSON).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { skipReason, synapse, stopSynapse, roomdag, stopAll, tlsRequest, federationRequest, synapseKey, MatrixUser, ROOMDAG, LIVE_DIR } from "./harness.mjs";

const skip = skipReason() ?? false;
const q = encodeURIComponent;
const JOIN_USER = `@roomdag:${ROOMDAG}`;
/** How many events hs1's rooms get: "a few hundred" (issue 12), fewer with ROOMDAG_LIVE_JOIN_EVENTS. */
const EVENTS = Number(process.env.ROOMDAG_LIVE_JOIN_EVENTS ?? 300);
const WAIT_MS = 300_000;

let hs1;
let worker;
let alice;
let carol;
const vars = () => ({ ACCEPT_INVITES_FROM: hs1.server_name, ...JSON.parse(process.env.ROOMDAG_LIVE_JOIN_VARS ?? "{}") });

before(async () => {
  if (skip) return;
  hs1 = await synapse("hs1");
  await synapse("hs2");
  worker = await roomdag({ vars: vars() });
  alice = await MatrixUser.register("hs1", "alice");
  carol = await MatrixUser.register("hs1", "carol");
});
after(() => stopAll());

// ---- helpers: hs1's view and roomdag's view ---------------------------------

/**
 * A room on hs1 with about `n` events: messages, topic and power-level
 * changes, a member who joins and is kicked, a redaction. Sequential sends
 * from hs1 only: a linear DAG, so every server orders it the same way.
 */
async function historyRoom(roomVersion, n = EVENTS) {
  const room = await alice.createRoom({ room_version: roomVersion, name: `join v${roomVersion}`, topic: "the first topic" });
  await carol.join(room);
  const third = Math.floor(n / 3);
  for (let i = 0; i < n; i++) {
    if (i === third) await alice.putState(room, "m.room.topic", { topic: `topic at ${i}` });
    if (i === 2 * third) {
      const pl = await alice.getState(room, "m.room.power_levels");
      pl.users[carol.userId] = 50;
      pl.events["m.room.topic"] = 50;
      await alice.putState(room, "m.room.power_levels", pl);
    }
    if (i === 2 * third + 5) await carol.putState(room, "m.room.topic", { topic: "carol's topic" });
    if (i === 2 * third + 10) await alice.redact(room, await carol.send(room, "a message to redact"), "the redaction");
    if (i === 2 * third + 15) await alice.kick(room, carol.userId, "the kick");
    await alice.send(room, `message ${i}`);
  }
  return room;
}

/** hs1's history of the room: every event ID, oldest first (its /messages order). */
async function hs1History(room) {
  return (await alice.paginate(room)).map((e) => e.event_id);
}

/** roomdag's stored events of the room (inspector API): `[{event_id, status, …}]`, arrival order. */
async function roomdagEvents(room) {
  const r = await tlsRequest(`${worker.url}/_roomdag/rooms/${q(room)}/graph`, { headers: { authorization: `Bearer ${worker.adminToken}` } });
  if (r.status === 404) return [];
  assert.equal(r.status, 200, r.text);
  return r.body.events;
}

/** Waits until roomdag holds every one of `ids` (accepted); returns its events. */
async function untilRoomdagHolds(room, ids, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await roomdagEvents(room);
    const held = new Set(events.filter((e) => e.status === "accepted").map((e) => e.event_id));
    const missing = ids.filter((id) => !held.has(id));
    if (!missing.length) return events;
    if (Date.now() > deadline) assert.fail(`roomdag lacks ${missing.length} of ${ids.length} events after ${timeoutMs / 1000} s, e.g. ${missing.slice(0, 3).join(", ")}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** POST /_roomdag/admin/join: the NDJSON lines, the last being {done} or {error}. */
async function adminJoin(room, via) {
  const r = await tlsRequest(`${worker.url}/_roomdag/admin/join`, {
    method: "POST",
    headers: { authorization: `Bearer ${worker.adminToken}` },
    body: { room, via },
  });
  assert.equal(r.status, 200, r.text);
  return r.text.trim().split("\n").map((l) => JSON.parse(l));
}

/** hs1's answer to a signed request from roomdag (roomdag is in the room). */
const askHs1 = (target) => federationRequest({ origin: ROOMDAG, key: worker.signingKey, destination: hs1.server_name, target });
/** roomdag's answer to a signed request from hs1. */
const askRoomdag = (target, method = "GET", body) => federationRequest({ origin: hs1.server_name, key: synapseKey("hs1"), destination: ROOMDAG, method, target, body });

/** /state_ids at `eventId` from hs1 and from roomdag: the same state and auth chain. */
async function sameStateIds(room, eventId) {
  const target = `/_matrix/federation/v1/state_ids/${q(room)}?event_id=${q(eventId)}`;
  const [s, r] = await Promise.all([askHs1(target), askRoomdag(target)]);
  assert.equal(s.status, 200, `hs1: ${s.text}`);
  assert.equal(r.status, 200, `roomdag: ${r.text}`);
  assert.deepEqual([...r.body.pdu_ids].sort(), [...s.body.pdu_ids].sort(), `state before ${eventId}`);
  assert.deepEqual([...r.body.auth_chain_ids].sort(), [...s.body.auth_chain_ids].sort(), `auth chain at ${eventId}`);
}

// ---- the scenarios ----------------------------------------------------------

for (const roomVersion of ["10", "11", "12"]) {
  test(`v${roomVersion}: hs1 invites ${JOIN_USER}; roomdag joins, backfills, and holds every event hs1 has; /state_ids at the newest event equals hs1's`, { skip, timeout: 900_000 }, async () => {
    const room = await historyRoom(roomVersion);
    await alice.invite(room, JOIN_USER); // hs1 → PUT /_matrix/federation/v2/invite on the Worker
    const deadline = Date.now() + WAIT_MS;
    while (!(await alice.joinedMembers(room))[JOIN_USER]) {
      if (Date.now() > deadline) assert.fail(`${JOIN_USER} did not join within ${WAIT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, 500));
    }
    // One more message after the join: the state before it is hs1's current state.
    const newest = await alice.send(room, "after roomdag joined");
    const ids = await hs1History(room);
    assert.equal(ids.at(-1), newest);
    // Synapse's own dummy events (which merge its forward extremities) are in
    // its DAG but never in /messages: compare the rest.
    const events = (await untilRoomdagHolds(room, ids)).filter((e) => e.type !== "org.matrix.dummy_event");
    const hs1Ids = new Set(ids);
    const extra = events.filter((e) => !hs1Ids.has(e.event_id)).map((e) => `${e.event_id} ${e.type} ${e.state_key ?? ""} ${e.status}`);
    assert.deepEqual(extra, [], "roomdag holds exactly hs1's events (none besides)");
    assert.deepEqual(new Set(events.map((e) => e.event_id)), hs1Ids, "roomdag holds exactly hs1's events");
    await sameStateIds(room, newest);
    const at = await askRoomdag(`/_matrix/federation/v1/state_ids/${q(room)}?event_id=${q(newest)}`);
    assert.deepEqual([...at.body.pdu_ids].sort(), (await alice.state(room)).map((e) => e.event_id).sort(), "hs1's current state");
    const listed = (await tlsRequest(`${worker.url}/_roomdag/rooms`)).body.rooms.find((r) => r.roomId === room);
    assert.equal(listed?.eventCount, (await roomdagEvents(room)).length);
  });
}

test("POST /_roomdag/admin/join streams progress and ends with done; a join via a server that is down is a clear error and stores nothing", { skip, timeout: 900_000 }, async () => {
  const room = await historyRoom("11", 50);
  const lines = await adminJoin(room, [hs1.server_name]);
  assert.ok(lines.length >= 2, "progress lines before the end");
  assert.ok(lines.at(-1).done, JSON.stringify(lines.at(-1)));
  await untilRoomdagHolds(room, await hs1History(room));

  const other = await historyRoom("11", 5);
  const down = await adminJoin(other, ["hs9.test:8450"]); // nothing listens there
  assert.equal(typeof down.at(-1).error, "string", JSON.stringify(down.at(-1)));
  assert.deepEqual(await roomdagEvents(other), [], "nothing stored for the room");
  assert.equal((await roomdagEvents(room)).length, (await hs1History(room)).length, "the first room is untouched");
});

test("an invite from a server not in ACCEPT_INVITES_FROM is refused, and roomdag does not join", { skip, timeout: 300_000 }, async () => {
  const bob = await MatrixUser.register("hs2", "bob");
  const room = await bob.createRoom({ room_version: "11", name: "not from hs1" });
  await assert.rejects(bob.invite(room, JOIN_USER), (e) => e.status >= 400, "hs2's invite fails: roomdag refused it");
  assert.deepEqual(await roomdagEvents(room), []);
});

test("gap: roomdag stopped, hs1 posts 30, roomdag restarted, hs1 posts 1 more (and a /send with only the newest PDU): roomdag holds all 31", { skip, timeout: 900_000 }, async () => {
  const room = await historyRoom("11", 40);
  const joined = await adminJoin(room, [hs1.server_name]);
  assert.ok(joined.at(-1).done, JSON.stringify(joined.at(-1)));
  await untilRoomdagHolds(room, await hs1History(room));
  const persist = worker.persist;
  await worker.stop();
  const missed = [];
  for (let i = 0; i < 30; i++) missed.push(await alice.send(room, `while roomdag is down ${i}`));
  worker = await roomdag({ vars: vars(), persistTo: persist });
  const newest = await alice.send(room, "after the restart");
  // hs1 may push its queue or only the newest event; this /send carries only
  // the newest PDU, whose prev events roomdag lacks: it must fetch the rest.
  const pdu = (await askHs1(`/_matrix/federation/v1/event/${q(newest)}`)).body.pdus[0];
  const sent = await askRoomdag(`/_matrix/federation/v1/send/gap-${Date.now()}`, "PUT", { origin: hs1.server_name, origin_server_ts: Date.now(), pdus: [pdu] });
  assert.equal(sent.status, 200, sent.text);
  await untilRoomdagHolds(room, [...missed, newest], 120_000);
  await untilRoomdagHolds(room, await hs1History(room), 10_000);
});

test("hs2 joins via hs1, hs1 stops: hs2 back-paginates to the start and sees exactly hs1's history in hs1's order, from roomdag's /backfill", { skip, timeout: 900_000 }, async () => {
  const room = await historyRoom("11", EVENTS);
  const joined = await adminJoin(room, [hs1.server_name]);
  assert.ok(joined.at(-1).done, JSON.stringify(joined.at(-1)));
  const bob = await MatrixUser.register("hs2", "bob");
  await bob.join(room, [hs1.server_name]);
  const history = await hs1History(room);
  await untilRoomdagHolds(room, history);
  stopSynapse("hs1");
  try {
    const onHs2 = (await bob.paginate(room)).map((e) => e.event_id);
    assert.equal(onHs2[0], history[0], "from the create event");
    assert.deepEqual(onHs2, history, "hs1's history, in hs1's order");
    // hs2's own log of its outbound requests: /backfill to roomdag.
    const log = readFileSync(join(LIVE_DIR, "hs2", "homeserver.log"), "utf8").split("\n");
    const backfills = log.filter((l) => l.includes(`[${ROOMDAG}]`) && l.includes("/_matrix/federation/v1/backfill/"));
    assert.ok(backfills.length > 0, "hs2 asked roomdag for /backfill");
  } finally {
    hs1 = await synapse("hs1");
  }
});
