// Wrong arguments to every public function: each raises a TypeError
// (ERR_INVALID_ARG_TYPE: the wrong type) or a RoomdagError (the right type, a
// bad value) whose message names the parameter — never a wasm trap
// ("memory access out of bounds", "unreachable") — and the module keeps
// working afterwards, with nothing stored by a refused call.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import * as api from "../../pkg/node.js";
import * as raw from "../../pkg/roomdag_wasm.js";

const { RoomdagError, RoomEngine, MemoryStore, KeyRing, FederationServer, RoomDirectory } = api;
const fixture = api.demoRoom(60);
const [serverA] = Object.keys(fixture.servers);
const seed = fixture.servers[serverA].signing_key_seed;
const seedBytes = new Uint8Array(Buffer.from(seed, "base64"));
const publicKey = Object.values(fixture.servers[serverA].verify_keys)[0];
const keys = api.pinKeys(new KeyRing(), Object.fromEntries(Object.entries(fixture.servers).map(([s, v]) => [s, v.verify_keys])));
const pdus = fixture.events.map((e) => e.pdu);
const rooms = () => new RoomDirectory({ createStore: () => new MemoryStore() });
const signingKey = { keyId: "ed25519:1", seed };
const storeOf = async (roomVersion) => {
  const s = new MemoryStore();
  await s.append([], { roomVersion, roomId: "!stored:x" });
  return s;
};
const engine = await RoomEngine.open({ store: new MemoryStore(), roomVersion: fixture.room_version });
await engine.ingest(pdus, keys);
const stored = { count: engine.eventCount, digest: engine.currentState().digest };

const T = TypeError;
const R = RoomdagError;
const TYPE = "ERR_INVALID_ARG_TYPE";

/** [what, call, error class, code, the parameter the message must name] */
const table = [
  // RoomEngine.open
  ["open: a number room version", () => RoomEngine.open({ store: new MemoryStore(), roomVersion: 11 }), T, TYPE, "roomVersion"],
  ["open: a room version roomdag does not host", () => RoomEngine.open({ store: new MemoryStore(), roomVersion: "2" }), R, "M_UNSUPPORTED_ROOM_VERSION", "roomVersion"],
  ["open: no store", () => RoomEngine.open({ roomVersion: "11" }), T, TYPE, "store"],
  ["open: no options", () => RoomEngine.open(), T, TYPE, "options"],
  ["open: a store holding another version", async () => RoomEngine.open({ store: await storeOf("11"), roomVersion: "10" }), R, "M_INVALID_PARAM", "roomVersion"],
  ["open: an empty store and no version", () => RoomEngine.open({ store: new MemoryStore() }), R, "M_NOT_FOUND", "roomVersion"],
  ["open: a store whose records are not text", () => RoomEngine.open({ store: { load: async () => ({ roomVersion: "11", records: [{ raw: 5 }] }), append: async () => {} } }), T, TYPE, "records[0].raw"],
  ["open: a store with a number version", () => RoomEngine.open({ store: { load: async () => ({ roomVersion: 11, records: [] }), append: async () => {} } }), T, TYPE, "roomVersion"],
  ["new RoomEngine()", () => new RoomEngine(), T, "ERR_ILLEGAL_CONSTRUCTOR", "RoomEngine.open"],
  // RoomEngine methods
  ["ingest: a single PDU, not an array", () => engine.ingest(pdus[0], keys), T, TYPE, "pdus"],
  ["ingest: a number among the PDUs", () => engine.ingest([pdus[0], 5], keys), T, TYPE, "pdus[1]"],
  ["ingest: no key ring", () => engine.ingest(pdus), T, TYPE, "keyRing"],
  ["ingest: a plain object as key ring", () => engine.ingest(pdus, {}), T, TYPE, "keyRing"],
  ["ingestPlaced: one item, not an array", () => engine.ingestPlaced({ pdu: pdus[0], placement: "history" }, keys), T, TYPE, "items"],
  ["ingestPlaced: an unknown placement", () => engine.ingestPlaced([{ pdu: pdus[0], placement: "backfill" }], keys), T, TYPE, "items[0].placement"],
  ["ingestPlaced: a bare PDU as item", () => engine.ingestPlaced([pdus[0]], keys), T, TYPE, "items[0].pdu"],
  ["ingestPlaced: state that is not a list", () => engine.ingestPlaced([{ pdu: pdus[0], state: "$x" }], keys), T, TYPE, "items[0].state"],
  ["isOutlier: a number", () => engine.isOutlier(5), T, TYPE, "eventId"],
  ["query: a number method", () => engine.query(5, "/x", undefined, "a", "b"), T, TYPE, "method"],
  ["query: a string clock", () => engine.query("GET", "/x", undefined, "a", "b", "now"), T, TYPE, "nowMs"],
  ["stateIds: a number event ID", () => engine.stateIds(serverA, 5), T, TYPE, "eventId"],
  ["backfill: one event ID, not an array", () => engine.backfill(serverA, "$x", 10), T, TYPE, "v"],
  ["backfill: a string limit", () => engine.backfill(serverA, ["$x"], "10"), T, TYPE, "limit"],
  ["getMissingEvents: no request", () => engine.getMissingEvents(serverA), T, TYPE, "request"],
  ["getMissingEvents: a string for latestEvents", () => engine.getMissingEvents(serverA, { earliestEvents: [], latestEvents: "$x" }), T, TYPE, "latestEvents"],
  ["timestampToEvent: a bad direction", () => engine.timestampToEvent(serverA, 0, "forwards"), T, TYPE, "dir"],
  ["event: an object event ID", () => engine.event(serverA, {}), T, TYPE, "eventId"],
  ["eventAuth: a number origin", () => engine.eventAuth(5, "$x"), T, TYPE, "origin"],
  ["aclAllows: a number", () => engine.aclAllows(5), T, TYPE, "server"],
  ["admission: a number", () => engine.admission(5), T, TYPE, "origin"],
  ["hasEvent: undefined", () => engine.hasEvent(), T, TYPE, "eventId"],
  ["layout: an unknown row kind", () => engine.layout("time"), T, TYPE, "rows"],
  ["exportDot: a string flag", () => engine.exportDot("yes"), T, TYPE, "authEdges"],
  ["eventDetails: an event the room lacks", () => engine.eventDetails("$nope"), R, "M_NOT_FOUND", "eventId"],
  // RoomDirectory
  ["RoomDirectory: no createStore", () => new RoomDirectory({}), T, TYPE, "createStore"],
  ["RoomDirectory.get: a number", () => rooms().get(5), T, TYPE, "roomId"],
  ["RoomDirectory.create: a number version", () => rooms().create("!r:x", 11), T, TYPE, "roomVersion"],
  ["RoomDirectory.create: another version than the stored room's", async () => {
    const s = await storeOf("11");
    return new RoomDirectory({ createStore: () => s }).create("!stored:x", "10");
  }, R, "M_INVALID_PARAM", "roomVersion"],
  // KeyRing, pinKeys, KeyFetcher
  ["KeyRing.pin: a key object, not the key", () => new KeyRing().pin(serverA, "ed25519:1", { key: publicKey }), T, TYPE, "publicKey"],
  ["KeyRing.pin: a number key ID", () => new KeyRing().pin(serverA, 1, publicKey), T, TYPE, "keyId"],
  ["KeyRing.pin: not an ed25519 key", () => new KeyRing().pin(serverA, "ed25519:1", "abc"), R, "M_INVALID_PARAM", "publicKey"],
  ["KeyRing.pin: no server", () => new KeyRing().pin(undefined, "ed25519:1", publicKey), T, TYPE, "server"],
  ["KeyRing.addServerKeys: not a key response", () => new KeyRing().addServerKeys("{}", serverA, Date.now()), R, "M_UNAUTHORIZED", "response"],
  ["KeyRing.addServerKeys: a number", () => new KeyRing().addServerKeys(5, serverA, Date.now()), T, TYPE, "response"],
  ["KeyRing.hasRequestKey: a string clock", () => new KeyRing().hasRequestKey(serverA, "ed25519:1", "now"), T, TYPE, "nowMs"],
  ["KeyRing.pin: after free()", () => {
    const ring = new KeyRing();
    ring.free();
    ring.pin(serverA, "ed25519:1", publicKey);
  }, T, "ERR_INVALID_STATE", "freed"],
  ["ingest: a freed key ring", () => {
    const ring = new KeyRing();
    ring.free();
    return engine.ingest(pdus, ring);
  }, T, TYPE, "keyRing"],
  ["pinKeys: a fixture's servers map", () => api.pinKeys(new KeyRing(), fixture.servers), T, TYPE, "trustedKeys"],
  ["pinKeys: key objects", () => api.pinKeys(new KeyRing(), { [serverA]: { "ed25519:1": { key: publicKey } } }), T, TYPE, "trustedKeys"],
  ["pinKeys: a bad key", () => api.pinKeys(new KeyRing(), { [serverA]: { "ed25519:1": "abc" } }), R, "M_INVALID_PARAM", "trustedKeys"],
  ["pinKeys: no ring", () => api.pinKeys({}, {}), T, TYPE, "keyRing"],
  ["KeyFetcher: no key ring", () => new api.KeyFetcher({}), T, TYPE, "keyRing"],
  ["KeyFetcher: one notary, not a list", () => new api.KeyFetcher({ keyRing: new KeyRing(), notaryServers: "matrix.org" }), T, TYPE, "notaryServers"],
  // FederationServer
  ["FederationServer: a fixture's servers map as trustedKeys", () => new FederationServer({ serverName: "s", signingKey, rooms: rooms(), trustedKeys: fixture.servers }), T, TYPE, "trustedKeys"],
  ["FederationServer: the seed as bytes", () => new FederationServer({ serverName: "s", signingKey: { keyId: "ed25519:1", seed: seedBytes }, rooms: rooms() }), T, TYPE, "signingKey.seed"],
  ["FederationServer: a seed that is not 32 bytes", () => new FederationServer({ serverName: "s", signingKey: { keyId: "ed25519:1", seed: "abc" }, rooms: rooms() }), R, "M_INVALID_PARAM", "signingKey.seed"],
  ["FederationServer: no server name", () => new FederationServer({ signingKey, rooms: rooms() }), T, TYPE, "serverName"],
  ["FederationServer: an empty server name", () => new FederationServer({ serverName: "", signingKey, rooms: rooms() }), R, "M_INVALID_PARAM", "serverName"],
  ["FederationServer: no rooms", () => new FederationServer({ serverName: "s", signingKey }), T, TYPE, "rooms"],
  ["FederationServer: a number key ID", () => new FederationServer({ serverName: "s", signingKey: { keyId: 1, seed }, rooms: rooms() }), T, TYPE, "signingKey.keyId"],
  ["FederationServer: fetch that is not a function", () => new FederationServer({ serverName: "s", signingKey, rooms: rooms(), fetch: "https://x" }), T, TYPE, "fetch"],
  ["FederationServer: a raw object as key ring", () => new FederationServer({ serverName: "s", signingKey, rooms: rooms(), keyRing: {} }), T, TYPE, "keyRing"],
  ["FederationServer: no options", () => new FederationServer(), T, TYPE, "options"],
  // Signing and PDU functions
  ["signRequest: the seed as bytes", () => api.signRequest({ origin: "a", keyId: "ed25519:1", seed: seedBytes, destination: "b", method: "GET", target: "/" }), T, TYPE, "seed"],
  ["signRequest: a bad seed", () => api.signRequest({ origin: "a", keyId: "ed25519:1", seed: "abc", destination: "b", method: "GET", target: "/" }), R, "M_INVALID_PARAM", "seed"],
  ["signRequest: no destination", () => api.signRequest({ origin: "a", keyId: "ed25519:1", seed, method: "GET", target: "/" }), T, TYPE, "destination"],
  ["signRequest: a body that is not JSON", () => api.signRequest({ origin: "a", keyId: "ed25519:1", seed, destination: "b", method: "PUT", target: "/", body: "{x" }), R, "M_BAD_JSON", "body"],
  ["signRequest: no options", () => api.signRequest(), T, TYPE, "options"],
  ["serverKeysResponse: the seed as bytes", () => api.serverKeysResponse({ serverName: "a", keyId: "ed25519:1", seed: seedBytes }), T, TYPE, "seed"],
  ["serverKeysResponse: a string validity", () => api.serverKeysResponse({ serverName: "a", keyId: "ed25519:1", seed, validityMs: "1d" }), T, TYPE, "validityMs"],
  ["signJson: an array", () => api.signJson([1], { server: "a", keyId: "ed25519:1", seed }), T, TYPE, "object"],
  ["signJson: the seed as bytes", () => api.signJson({}, { server: "a", keyId: "ed25519:1", seed: seedBytes }), T, TYPE, "seed"],
  ["publicKeyOf: bytes", () => api.publicKeyOf(seedBytes), T, TYPE, "seed"],
  ["publicKeyOf: a number", () => api.publicKeyOf(5), T, TYPE, "seed"],
  ["publicKeyOf: not 32 bytes of base64", () => api.publicKeyOf("abc"), R, "M_INVALID_PARAM", "seed"],
  ["signPdu: a number room version", () => api.signPdu({ type: "m.room.message" }, { roomVersion: 11, server: "a", keyId: "ed25519:1", seed }), T, TYPE, "roomVersion"],
  ["signPdu: an array PDU", () => api.signPdu([], { roomVersion: "11", server: "a", keyId: "ed25519:1", seed }), T, TYPE, "pdu"],
  ["redactPdu: a number room version", () => api.redactPdu(pdus[0], 11), T, TYPE, "roomVersion"],
  ["redactPdu: text that is not JSON", () => api.redactPdu("{x", "11"), R, "M_BAD_JSON", "pdu"],
  ["eventIdOf: a number room version", () => api.eventIdOf(pdus[0], 12), T, TYPE, "roomVersion"],
  ["eventIdOf: room version 1", () => api.eventIdOf(pdus[0], "1"), R, "M_UNSUPPORTED_ROOM_VERSION", "roomVersion"],
  ["eventIdOf: no PDU", () => api.eventIdOf(undefined, "11"), T, TYPE, "pdu"],
  ["groupPdusByRoom: a single PDU", () => api.groupPdusByRoom(pdus[0]), T, TYPE, "pdus"],
  // Fixtures
  ["replayFixture: a number", () => api.replayFixture(5, "{}"), T, TYPE, "fixture"],
  ["replayFixture: queries that are not JSON", () => api.replayFixture(fixture, "{x"), R, "M_BAD_JSON", "queries"],
  ["replayFixtureText: a verify that is not a function", () => api.replayFixtureText(fixture, { format: "roomdag-queries/1", queries: [] }, true), T, TYPE, "verify"],
  ["exportFixture: an unknown format", () => api.exportFixture(fixture, "svg"), T, TYPE, "format"],
  ["exportFixture: not a fixture", () => api.exportFixture({ format: "x" }), R, "M_BAD_JSON", "fixture"],
  ["demoRoom: a string", () => api.demoRoom("10"), T, TYPE, "events"],
  ["demoRoom: too many events", () => api.demoRoom(1e12), R, "M_INVALID_PARAM", "events"],
  ["demoRoom: a fraction", () => api.demoRoom(1.5), R, "M_INVALID_PARAM", "events"],
  ["roomFromFixture: an empty object", () => api.roomFromFixture({}), R, "M_BAD_JSON", "fixture"],
  // Stores
  ["IndexedDbStore: no room", () => new api.IndexedDbStore({}), T, TYPE, "room"],
  ["IndexedDbStore: no indexedDB in Node", () => new api.IndexedDbStore({ room: "!r:x" }), T, TYPE, "indexedDB"],
  ["IndexedDbStore: no options", () => new api.IndexedDbStore(), T, TYPE, "options"],
  ["DurableObjectStore: not a storage", () => new api.DurableObjectStore({}), T, TYPE, "storage"],
];

for (const [what, fn, cls, code, param] of table) {
  test(what, async () => {
    let error;
    try {
      await fn();
    } catch (e) {
      error = e;
    }
    assert.ok(error, "an error was raised");
    assert.ok(error instanceof cls, `${cls.name}, not ${error?.constructor?.name}: ${error?.message}`);
    assert.equal(error.code, code, error.message);
    assert.ok(error.message.includes(param), `the message names ${param}: ${error.message}`);
    assert.doesNotMatch(String(error.stack), /RuntimeError|unreachable|memory access out of bounds/);
  });
}

test("the fixture's servers map as trustedKeys: the message says how to fix it", () => {
  assert.throws(
    () => new FederationServer({ serverName: "s", signingKey, rooms: rooms(), trustedKeys: fixture.servers }),
    (e) => /fixture's servers map/.test(e.message) && /verify_keys/.test(e.message),
  );
});

test("a room opened with the wrong version names both versions", async () => {
  await assert.rejects(RoomEngine.open({ store: await storeOf("11"), roomVersion: "10" }), (e) => /"10"/.test(e.message) && /"11"/.test(e.message) && /!stored:x/.test(e.message));
});

test("a KeyRing of the CommonJS copy given to the ESM copy: the message says why", async () => {
  const cjs = createRequire(import.meta.url)("../../pkg/node.cjs");
  const ring = new cjs.KeyRing();
  await assert.rejects(engine.ingest([pdus[0]], ring), (e) => e instanceof TypeError && /another copy of roomdag/.test(e.message));
});

test("the core's own bounds answer with errors, not traps (raw wasm calls)", () => {
  assert.throws(() => raw.demoRoom(1_000_000), (e) => !(e instanceof WebAssembly.RuntimeError) && /at most 10000/.test(e.message));
  assert.deepEqual(raw.roomVersions(), ["3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
});

test("after every refused call the module works and nothing was stored", async () => {
  assert.equal(engine.eventCount, stored.count);
  assert.equal(engine.currentState().digest, stored.digest);
  const again = await RoomEngine.open({ store: new MemoryStore(), roomVersion: fixture.room_version });
  const outcomes = await again.ingest(pdus, keys);
  assert.equal(outcomes.filter((o) => o.status === "accepted").length, 59);
  assert.equal(again.currentState().digest, stored.digest);
  assert.equal(api.publicKeyOf(seed), publicKey);
});
