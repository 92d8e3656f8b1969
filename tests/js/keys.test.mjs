// Key fetching rules (issue 11 item 3), each asserted on the fetch spy's
// calls: only the signers the room version requires, only valid server
// names, at most once per server per window, a cap per transaction (the
// rest dropped with a reason), notary answers verified only with that
// notary's configured keys (never an old_verify_keys key), reasons in the
// /send answer, the 401 body and the log.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  FederationClient,
  FederationServer,
  KeyFetcher,
  KeyRing,
  MemoryStore,
  RoomDirectory,
  notariesFrom,
  publicKeyOf,
  requiredSigners,
  serverKeysResponse,
  signJson,
  signPdu,
  signRequest,
} from "../../pkg/node.js";

const seedOf = (name) => Buffer.alloc(32, name).toString("base64").replace(/=+$/, "");
const keyOf = (server) => ({ keyId: "ed25519:k", seed: seedOf(server) });
const id = (c) => "$" + c.repeat(43);
const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const OURS = { serverName: "ours.example", signingKey: { keyId: "ed25519:o", seed: seedOf("ours") } };

/** A message PDU of room version 10 from `server`, signed by it. */
function pduFrom(server, extra = {}) {
  const event = {
    room_id: "!room:a.example",
    sender: `@u:${server}`,
    type: "m.room.message",
    content: { body: "hi" },
    depth: 5,
    origin_server_ts: 1_000,
    prev_events: [id("a")],
    auth_events: [id("b")],
    ...extra,
  };
  return signPdu(event, { roomVersion: "10", server, ...keyOf(server) });
}

/** Key servers: every server answers its own keys, except those in `down`. */
function keyServers({ down = new Set(), notary } = {}) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    calls.push({ url, method: init.method ?? "GET", body: init.body });
    const u = new URL(url);
    if (u.pathname === "/.well-known/matrix/server") return new Response("", { status: 404 });
    if (u.pathname === "/_matrix/key/v2/server") {
      if (down.has(u.hostname)) return new Response("down", { status: 503 });
      return json(serverKeysResponse({ serverName: u.hostname, ...keyOf(u.hostname), now: 0, validityMs: 1e13 }));
    }
    if (u.pathname === "/_matrix/key/v2/query" && notary) return notary(JSON.parse(init.body));
    return new Response("", { status: 404 });
  };
  const keyFetches = () => calls.filter((c) => c.url.includes("/_matrix/key/")).map((c) => new URL(c.url).host);
  return { fetch, calls, keyFetches };
}

function fetcher(fetch, extra = {}) {
  const ring = new KeyRing();
  const client = new FederationClient({ ...OURS, fetch, log: () => {}, random: () => 0.5 });
  return { ring, keys: new KeyFetcher({ keyRing: ring, client, log: () => {}, ...extra }) };
}

test("requiredSigners: the sender's server, and the authorising server of a restricted join (v8+)", () => {
  const join = pduFrom("s1.example", {
    type: "m.room.member",
    state_key: "@u:s1.example",
    content: { membership: "join", join_authorised_via_users_server: "@a:auth.example" },
  }).pdu;
  assert.deepEqual(requiredSigners(join, "10"), ["s1.example", "auth.example"]);
  assert.deepEqual(requiredSigners(join, "7"), ["s1.example"], "no restricted joins before v8");
  assert.deepEqual(requiredSigners(pduFrom("s1.example").pdu, "10"), ["s1.example"]);
});

test("only the required signers are fetched: never every name in signatures", async () => {
  const servers = keyServers();
  const { ring, keys } = fetcher(servers.fetch);
  const { pdu } = pduFrom("s1.example");
  // Extra signatures a sender can add at will: not our business.
  pdu.signatures["evil.example"] = { "ed25519:x": "AAAA" };
  pdu.signatures["host/path?x"] = { "ed25519:x": "AAAA" };
  pdu.signatures["127.0.0.1:8448"] = { "ed25519:x": "AAAA" };
  const checked = await keys.ensureForPdus([pdu], "10");
  assert.deepEqual(servers.keyFetches(), ["s1.example:8448"]);
  assert.ok(servers.calls.every((c) => new URL(c.url).hostname === "s1.example"), servers.calls.map((c) => c.url).join(", "));
  assert.equal(checked.failures.size, 0);
  assert.equal(checked.pdus.length, 1);
  assert.ok(ring.hasRequestKey("s1.example", "ed25519:k", 5));

  // A restricted join: the authoriser's keys too.
  const join = pduFrom("s2.example", {
    type: "m.room.member",
    state_key: "@u:s2.example",
    content: { membership: "join", join_authorised_via_users_server: "@a:auth.example" },
  }).pdu;
  join.signatures["auth.example"] = signPdu(join, { roomVersion: "10", server: "auth.example", ...keyOf("auth.example") }).pdu.signatures["auth.example"];
  await keys.ensureForPdus([join], "10");
  assert.deepEqual(servers.keyFetches().slice(1).sort(), ["auth.example:8448", "s2.example:8448"]);
  // Known keys are not fetched again.
  await keys.ensureForPdus([pdu, join], "10");
  assert.equal(servers.keyFetches().length, 3);
});

test("invalid server names are never fetched", async () => {
  const servers = keyServers();
  const { keys } = fetcher(servers.fetch);
  const bad = pduFrom("host/path?x").pdu;
  const checked = await keys.ensureForPdus([bad], "10");
  assert.equal(servers.calls.length, 0);
  assert.match(checked.failures.get("host/path?x"), /not a valid server name/);
  assert.deepEqual(await keys.fetchKeys("user@host"), { ok: false, added: 0, reason: '"user@host" is not a valid server name: server name contains \'@\', which is not allowed' });
  assert.equal(servers.calls.length, 0);
});

test("a server is fetched at most once per window; concurrent needs share one fetch", async () => {
  let t = 1_000_000;
  const servers = keyServers({ down: new Set(["down.example"]) });
  const { keys } = fetcher(servers.fetch, { now: () => t, retryAfterMs: 60_000 });
  const a = pduFrom("down.example").pdu;
  const [r1, r2] = await Promise.all([keys.ensureForPdus([a], "10"), keys.ensureForPdus([a], "10")]);
  assert.deepEqual(servers.keyFetches(), ["down.example:8448"], "one fetch for two concurrent transactions");
  assert.match(r1.failures.get("down.example"), /down\.example: HTTP 503/);
  assert.match(r2.failures.get("down.example"), /HTTP 503/);
  t += 30_000;
  const r3 = await keys.ensureForPdus([a], "10");
  assert.equal(servers.keyFetches().length, 1, "not again within the window");
  assert.match(r3.failures.get("down.example"), /fetched 30 s ago and failed: .*HTTP 503/);
  t += 31_000;
  await keys.ensureForPdus([a], "10");
  assert.equal(servers.keyFetches().length, 2, "again after the window");
});

test("at most 10 servers' keys per transaction: the rest are dropped with a reason, unchecked", async () => {
  const servers = keyServers();
  const { keys } = fetcher(servers.fetch);
  const pdus = Array.from({ length: 12 }, (_, i) => pduFrom(`s${i}.example`));
  const checked = await keys.ensureForPdus(pdus.map((p) => p.pdu), "10");
  assert.equal(new Set(servers.keyFetches()).size, 10);
  assert.equal(checked.pdus.length, 10);
  assert.deepEqual(checked.refused.map((r) => r.eventId), [pdus[10].eventId, pdus[11].eventId]);
  const outcomes = checked.explain(checked.pdus.map((_, i) => ({ eventId: pdus[i].eventId, status: "accepted", redactedOnReceipt: false })));
  assert.equal(outcomes.length, 12);
  assert.equal(outcomes[10].status, "dropped");
  assert.equal(outcomes[10].stage, "signature");
  assert.match(outcomes[10].reason, /not checked: s10\.example's keys .*more than 10 servers/);
  // A smaller cap, as configured.
  const s2 = keyServers();
  const { keys: k2 } = fetcher(s2.fetch, { maxServersPerBatch: 2 });
  const c2 = await k2.ensureForPdus(pdus.slice(0, 5).map((p) => p.pdu), "10");
  assert.equal(s2.keyFetches().length, 2);
  assert.equal(c2.refused.length, 3);
});

const NOTARY = { serverName: "notary.example", keyId: "ed25519:n", seed: seedOf("notary") };

test("notary answers are verified with that notary's configured keys only", async () => {
  const answerFor = (signer) => (body) => {
    const server = Object.keys(body.server_keys)[0];
    const own = serverKeysResponse({ serverName: server, ...keyOf(server), now: 0, validityMs: 1e13 });
    return json({ server_keys: [signJson(own, signer)] });
  };
  // Signed by the configured key: used, and the server itself is not asked.
  const good = keyServers({ down: new Set(["s1.example"]), notary: answerFor({ server: NOTARY.serverName, keyId: NOTARY.keyId, seed: NOTARY.seed }) });
  const { ring, keys } = fetcher(good.fetch, { notaryServers: [{ serverName: NOTARY.serverName, verifyKeys: { [NOTARY.keyId]: publicKeyOf(NOTARY.seed) } }] });
  assert.equal((await keys.fetchKeys("s1.example")).ok, true);
  assert.deepEqual(good.keyFetches(), ["notary.example:8448"], "the notary first, as Synapse");
  assert.ok(ring.hasRequestKey("s1.example", "ed25519:k", 5));

  // Signed by another key of the notary's name that is trusted in the ring
  // (pinned), but not configured for the notary: refused; the server is asked.
  const other = { server: NOTARY.serverName, keyId: "ed25519:other", seed: seedOf("other") };
  const bad = keyServers({ down: new Set(["s1.example"]), notary: answerFor(other) });
  const { ring: r2, keys: k2 } = fetcher(bad.fetch, { notaryServers: [{ serverName: NOTARY.serverName, verifyKeys: { [NOTARY.keyId]: publicKeyOf(NOTARY.seed) } }] });
  r2.pin(NOTARY.serverName, other.keyId, publicKeyOf(other.seed));
  const r = await k2.fetchKeys("s1.example");
  assert.equal(r.ok, false);
  assert.match(r.reason, /notary notary\.example: (KeyRing\.addNotaryKeys: response: )?key response for notary\.example is not correctly signed/);
  assert.deepEqual(bad.keyFetches(), ["notary.example:8448", "s1.example:8448"]);
  assert.equal(r2.hasRequestKey("s1.example", "ed25519:k", 5), false);
});

test("a notary's old_verify_keys key never verifies its answers", async () => {
  const old = { server: NOTARY.serverName, keyId: "ed25519:old", seed: seedOf("old") };
  // The notary's own key response lists its old key: a ring that fetched it holds it.
  const notaryOwn = signJson(
    {
      server_name: NOTARY.serverName,
      valid_until_ts: 1e13,
      verify_keys: { [NOTARY.keyId]: { key: publicKeyOf(NOTARY.seed) } },
      old_verify_keys: { [old.keyId]: { key: publicKeyOf(old.seed), expired_ts: 10 } },
    },
    { server: NOTARY.serverName, keyId: NOTARY.keyId, seed: NOTARY.seed },
  );
  const servers = keyServers({
    down: new Set(["s1.example"]),
    notary: (body) => {
      const server = Object.keys(body.server_keys)[0];
      return json({ server_keys: [signJson(serverKeysResponse({ serverName: server, ...keyOf(server), now: 0, validityMs: 1e13 }), old)] });
    },
  });
  const { ring, keys } = fetcher(servers.fetch, { notaryServers: [{ serverName: NOTARY.serverName, verifyKeys: { [NOTARY.keyId]: publicKeyOf(NOTARY.seed) } }] });
  assert.equal(ring.addServerKeys(JSON.stringify(notaryOwn), NOTARY.serverName, 5), 2, "current and old key in the ring");
  const r = await keys.fetchKeys("s1.example");
  assert.equal(r.ok, false);
  assert.match(r.reason, /not correctly signed/);
  assert.equal(ring.hasRequestKey("s1.example", "ed25519:k", 5), false);
});

test("notaries are configured with keys: a name alone takes them from trustedKeys, or is an error", () => {
  const pub = publicKeyOf(NOTARY.seed);
  assert.deepEqual(notariesFrom(["notary.example"], { "notary.example": { [NOTARY.keyId]: pub } }), [{ serverName: "notary.example", verifyKeys: { [NOTARY.keyId]: pub } }]);
  assert.throws(() => notariesFrom(["notary.example"], {}), /notary notary\.example has no pinned keys/);
  assert.throws(() => new KeyFetcher({ keyRing: new KeyRing(), notaryServers: [{ serverName: "n.example", verifyKeys: {} }] }), /verifyKeys/);
  assert.throws(() => new FederationServer({ ...OURS, rooms: new RoomDirectory({ createStore: () => new MemoryStore() }), notaryServers: ["matrix.org"] }), /matrix\.org has no pinned keys/);
});

test("/send: keys fetched once per transaction; a PDU whose keys cannot be fetched says why; the 401 says why", async () => {
  const entries = [];
  const servers = keyServers({ down: new Set(["down.example"]) });
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  // A room created by a.example (pinned), then a message from down.example (keys not fetchable).
  const create = signPdu(
    { room_id: "!r:a.example", sender: "@c:a.example", type: "m.room.create", state_key: "", content: { creator: "@c:a.example", room_version: "10" }, depth: 1, origin_server_ts: 1, prev_events: [], auth_events: [] },
    { roomVersion: "10", server: "a.example", ...keyOf("a.example") },
  );
  const server = new FederationServer({
    serverName: "dest.example:8448",
    signingKey: { keyId: "ed25519:d", seed: seedOf("dest") },
    rooms,
    trustedKeys: { "a.example": { "ed25519:k": publicKeyOf(seedOf("a.example")) } },
    fetch: servers.fetch,
    log: (e) => entries.push(e),
    acceptRoomsFrom: "a.example",
  });
  const send = async (origin, txn, pdus) => {
    const target = `/_matrix/federation/v1/send/${txn}`;
    const body = JSON.stringify({ origin, origin_server_ts: 1, pdus });
    const authorization = signRequest({ origin, ...keyOf(origin), destination: "dest.example:8448", method: "PUT", target, body });
    const res = await server.handleFederationRequest(new Request(`https://dest.example:8448${target}`, { method: "PUT", body, headers: { authorization } }));
    return { status: res.status, body: await res.json() };
  };
  const r1 = await send("a.example", "t1", [create.pdu]);
  assert.deepEqual(r1.body.pdus[create.eventId], {});
  assert.equal(servers.calls.length, 0, "pinned keys need no fetch");
  // a.example relays a PDU of down.example: the PDU needs down.example's keys.
  const msg = signPdu(
    { room_id: "!r:a.example", sender: "@m:down.example", type: "m.room.message", content: { body: "x" }, depth: 2, origin_server_ts: 2, prev_events: [create.eventId], auth_events: [create.eventId] },
    { roomVersion: "10", server: "down.example", ...keyOf("down.example") },
  );
  const r2 = await send("a.example", "t2", [msg.pdu]);
  assert.deepEqual(servers.keyFetches(), ["down.example:8448"], "fetched once for the transaction");
  assert.match(r2.body.pdus[msg.eventId].error, /keys of down\.example could not be fetched: .*HTTP 503/);
  assert.ok(entries.some((e) => e.code === "key_fetch" && e.server === "down.example" && /HTTP 503/.test(e.message)), "logged with the server and the reason");
  // A transaction from down.example itself: 401, saying why.
  const r3 = await send("down.example", "t3", []);
  assert.equal(r3.status, 401);
  assert.match(r3.body.error, /No usable key ed25519:k for down\.example: keys of down\.example were fetched \d+ s ago and failed: .*HTTP 503/);
  assert.equal(servers.keyFetches().length, 1, "not fetched again within the window");
});
