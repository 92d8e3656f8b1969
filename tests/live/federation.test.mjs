// The Worker and a real Synapse reach each other over TLS, both ways, with
// keys fetched from each other:
//   hs1 → Worker: hs1's notary endpoint answers roomdag's key, which hs1
//        fetched from the Worker (https://roomdag.test:8443/_matrix/key/v2/server);
//   Worker's key → hs1: a request signed with the Worker's key is accepted by
//        hs1, which can only have that key from the Worker (trusted_key_servers: []);
//   Worker → hs1: a request signed as hs1 makes the Worker fetch hs1's key
//        from https://hs1.test:8448 (workerd's fetch trusting the test CA).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { skipReason, synapse, roomdag, stopAll, tlsRequest, federationRequest, synapseKey, newSigningKey, MatrixUser, ROOMDAG, accessLog } from "./harness.mjs";

const skip = skipReason();
let hs1;
let worker;
let alice;

before(async () => {
  if (skip) return;
  hs1 = await synapse("hs1");
  worker = await roomdag();
  alice = await MatrixUser.register("hs1", "alice");
  await alice.request("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/displayname`, { displayname: "Alice on hs1" });
});
after(() => stopAll());

test("the Worker serves /version, its keys and (without WELL_KNOWN_SERVER) a 404 well-known, over TLS as roomdag.test:8443", { skip: skip ?? false }, async () => {
  const v = await tlsRequest(`${worker.url}/_matrix/federation/v1/version`);
  assert.equal(v.status, 200);
  // Spec: {"server": {"name": string, "version": string}}
  assert.deepEqual(Object.keys(v.body), ["server"]);
  assert.equal(v.body.server.name, "roomdag");
  assert.match(v.body.server.version, /^\d+\.\d+\.\d+/);
  const keys = await tlsRequest(`${worker.url}/_matrix/key/v2/server`);
  assert.equal(keys.status, 200);
  assert.equal(keys.body.server_name, ROOMDAG);
  assert.equal(keys.body.verify_keys[worker.signingKey.keyId].key, worker.publicKey);
  const wk = await tlsRequest(`${worker.url}/.well-known/matrix/server`);
  assert.equal(wk.status, 404);
  assert.equal(wk.body.errcode, "M_NOT_FOUND");
});

test("hs1's /version answers Synapse's own shape", { skip: skip ?? false }, async () => {
  const v = await tlsRequest(`https://${hs1.server_name}/_matrix/federation/v1/version`);
  assert.equal(v.status, 200);
  assert.equal(v.body.server.name, "Synapse");
  assert.match(v.body.server.version, /^1\.163\.2/);
});

test("hs1 → Worker: hs1's notary endpoint answers roomdag's key, fetched from the Worker over TLS", { skip: skip ?? false }, async () => {
  const r = await tlsRequest(`https://${hs1.server_name}/_matrix/key/v2/query`, {
    method: "POST",
    // Naming the key ID: a cache miss makes hs1 fetch it (with {} it answers only what it has).
    body: { server_keys: { [ROOMDAG]: { [worker.signingKey.keyId]: { minimum_valid_until_ts: Date.now() } } } },
  });
  assert.equal(r.status, 200, r.text);
  const [keys] = r.body.server_keys;
  assert.ok(keys, `hs1 returned no keys for ${ROOMDAG}: ${r.text}`);
  assert.equal(keys.server_name, ROOMDAG);
  assert.equal(keys.verify_keys[worker.signingKey.keyId].key, worker.publicKey);
  // Signed by us, and countersigned by hs1 as the notary.
  assert.ok(keys.signatures[ROOMDAG][worker.signingKey.keyId]);
  assert.ok(keys.signatures[hs1.server_name], "hs1's notary signature");
  // The GET form (all keys hs1 holds for us) answers the same key.
  const g = await tlsRequest(`https://${hs1.server_name}/_matrix/key/v2/query/${ROOMDAG}`);
  assert.equal(g.status, 200);
  assert.equal(g.body.server_keys[0].verify_keys[worker.signingKey.keyId].key, worker.publicKey);
});

test("Worker's key → hs1: hs1 accepts a federation request signed with roomdag's key, and refuses a wrong one", { skip: skip ?? false }, async () => {
  const target = `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(alice.userId)}`;
  const ok = await federationRequest({ origin: ROOMDAG, key: worker.signingKey, destination: hs1.server_name, target });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.displayname, "Alice on hs1");
  assert.ok(accessLog("hs1").some((l) => l.origin === ROOMDAG && l.path.startsWith("/_matrix/federation/v1/query/profile")), "hs1's access.log names roomdag as the requester");
  // Same key ID, another key: hs1 checks against the key it fetched from the Worker.
  const forged = await federationRequest({ origin: ROOMDAG, key: { ...newSigningKey(), keyId: worker.signingKey.keyId }, destination: hs1.server_name, target });
  assert.equal(forged.status, 401, forged.text);
  // A key ID the Worker does not publish: hs1 asks the Worker, finds nothing, refuses.
  const unknown = await federationRequest({ origin: ROOMDAG, key: newSigningKey("nope"), destination: hs1.server_name, target });
  assert.equal(unknown.status, 401, unknown.text);
});

test("Worker → hs1: a request signed as hs1 makes the Worker fetch hs1's key over TLS (and a forged one is refused)", { skip: skip ?? false }, async () => {
  // The Worker holds no room: a signed query for an unknown room is 403
  // "Host not in room." (as Synapse answers). A forged signature under hs1's
  // key ID is 401 only if the Worker holds hs1's real key (without it, it
  // could not tell).
  const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent("!nowhere:hs1.test:8448")}?event_id=%24x`;
  const signed = await federationRequest({ origin: hs1.server_name, key: synapseKey("hs1"), destination: ROOMDAG, target });
  assert.equal(signed.status, 403, signed.text);
  assert.equal(signed.body.errcode, "M_FORBIDDEN");
  const forged = await federationRequest({ origin: hs1.server_name, key: { ...newSigningKey(), keyId: synapseKey("hs1").keyId }, destination: ROOMDAG, target });
  assert.equal(forged.status, 401, forged.text);
  // hs1's access.log shows the Worker's key fetch (workerd's fetch has no server name to give).
  assert.ok(accessLog("hs1").some((l) => l.path === "/_matrix/key/v2/server" || l.path.startsWith("/_matrix/key/v2/server/")), "the Worker fetched hs1's key from hs1");
});
