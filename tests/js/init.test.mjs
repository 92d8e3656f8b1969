// The browser/bundler entry before `init()`: everything that runs the engine,
// `new KeyRing()` included, throws NotInitializedError (not a TypeError from
// deep inside the wasm glue); a failed `init()` can be retried; after it,
// the same calls work. (node --test runs this file in its own process, so
// the Node entry, which initialises on import, is never loaded here.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as web from "../../pkg/web.js";

const wasm = readFileSync(new URL("../../pkg/roomdag_wasm_bg.wasm", import.meta.url));
const seed = "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE";

const calls = {
  "new KeyRing()": () => new web.KeyRing(),
  "RoomEngine.open": () => web.RoomEngine.open({ store: new web.MemoryStore(), roomVersion: "11" }),
  "FederationServer": () => new web.FederationServer({ serverName: "s", signingKey: { keyId: "ed25519:1", seed }, rooms: new web.RoomDirectory({ createStore: () => new web.MemoryStore() }) }),
  "KeyFetcher": () => new web.KeyFetcher({ keyRing: {} }),
  "pinKeys": () => web.pinKeys({}, {}),
  "groupPdusByRoom": () => web.groupPdusByRoom([]),
  "signRequest": () => web.signRequest({ origin: "a", keyId: "ed25519:1", seed, destination: "b", method: "GET", target: "/" }),
  "serverKeysResponse": () => web.serverKeysResponse({ serverName: "a", keyId: "ed25519:1", seed }),
  "signJson": () => web.signJson({}, { server: "a", keyId: "ed25519:1", seed }),
  "publicKeyOf": () => web.publicKeyOf(seed),
  // A wrong argument too: not initialised is said first.
  "publicKeyOf(5)": () => web.publicKeyOf(5),
  "signPdu": () => web.signPdu({}, { roomVersion: "11", server: "a", keyId: "ed25519:1", seed }),
  "redactPdu": () => web.redactPdu({}, "11"),
  "eventIdOf": () => web.eventIdOf({}, "11"),
  "replayFixture": () => web.replayFixture("{}", "{}"),
  "replayFixtureText": () => web.replayFixtureText("{}", "{}"),
  "exportFixture": () => web.exportFixture("{}"),
  "demoRoom": () => web.demoRoom(),
  "roomFromFixture": () => web.roomFromFixture("{}"),
};

test("before init(): every engine call throws NotInitializedError", async () => {
  for (const [name, fn] of Object.entries(calls)) {
    await assert.rejects(
      async () => fn(),
      (e) => e instanceof web.NotInitializedError && e.code === "ERR_NOT_INITIALIZED" && /await init\(\)/.test(e.message),
      name,
    );
  }
});

test("a failed init() rejects and can be retried; afterwards the calls work", async () => {
  await assert.rejects(web.init(new Uint8Array([0, 1, 2, 3])));
  assert.throws(() => new web.KeyRing(), web.NotInitializedError);
  await web.init(Promise.resolve(wasm)); // a promise of the bytes
  await web.init(wasm); // idempotent
  assert.equal(new web.KeyRing().size, 0);
  const fixture = web.demoRoom(40);
  const room = web.roomFromFixture(fixture);
  assert.equal(room.eventCount, fixture.events.length);
  assert.equal(web.publicKeyOf(fixture.servers[Object.keys(fixture.servers)[0]].signing_key_seed), Object.values(fixture.servers[Object.keys(fixture.servers)[0]].verify_keys)[0]);
});
