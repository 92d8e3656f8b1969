// Key fetching in the Worker (workerd): keys pinned by an admin import of a
// fixture do not become trusted for federation traffic, and a `/send` makes
// one key fetch per server (in the FederationServer), not a second one in
// the room's Durable Object. Key fetches go to a local key server that
// counts them (KEY_SERVER_URL).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { signPdu, signRequest } from "../../pkg/node.js";
import { loadFixture } from "../js/fixtures.mjs";
import { startWorker, freePort } from "./wrangler.mjs";

const SERVER = "roomdag.keys";
const { room } = loadFixture("v10-linear-200");
const CREATOR = room.events[0].origin;
const [S1, S2] = Object.keys(room.servers).filter((s) => s !== CREATOR);
const keyRequests = [];
let keyServer;
let worker;

before(async () => {
  const port = await freePort();
  keyServer = createServer((req, res) => {
    keyRequests.push(req.url);
    res.writeHead(404, { "content-type": "application/json" }).end('{"errcode":"M_NOT_FOUND","error":"no keys here"}');
  });
  await new Promise((r) => keyServer.listen(port, "127.0.0.1", r));
  worker = await startWorker({
    vars: {
      SERVER_NAME: SERVER,
      SIGNING_KEY: "ed25519:k dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE",
      ADMIN_TOKEN: "keys-admin-token-0123456789",
      INSPECTOR: "open",
      // Only the creator's server is trusted for federation; S1 and S2's keys come with the fixture only.
      TRUSTED_KEYS: JSON.stringify({ [CREATOR]: room.servers[CREATOR].verify_keys }),
      KEY_SERVER_URL: `http://127.0.0.1:${port}/{server}`,
    },
  });
});
after(async () => {
  await worker?.stop();
  keyServer?.close();
});

const keyOf = (server) => ({ keyId: Object.keys(room.servers[server].verify_keys)[0], seed: room.servers[server].signing_key_seed });
const fetchesOf = (server) => keyRequests.filter((u) => u.startsWith(`/${server}/`)).length;

async function send(origin, txnId, pdus) {
  const target = `/_matrix/federation/v1/send/${txnId}`;
  const body = JSON.stringify({ origin, origin_server_ts: Date.now(), pdus });
  const authorization = signRequest({ origin, ...keyOf(origin), destination: SERVER, method: "PUT", target, body });
  const res = await fetch(worker.url + target, { method: "PUT", body, headers: { authorization, "content-type": "application/json" } });
  return { status: res.status, body: await res.json() };
}

test("an admin import's fixture keys are not trusted for /send; one key fetch per server per transaction", { timeout: 180_000 }, async () => {
  const res = await fetch(`${worker.url}/_roomdag/admin/import`, {
    method: "POST",
    headers: { authorization: "Bearer keys-admin-token-0123456789", "content-type": "application/json" },
    body: JSON.stringify(room),
  });
  const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
  const done = lines.at(-1).done;
  assert.ok(done && done.accepted > 100, `the import used the fixture's keys: ${JSON.stringify(lines.at(-1))}`);
  assert.equal(keyRequests.length, 0, "the import fetched nothing");

  // S1's key came with the fixture only: its own transaction is not authenticated.
  const r1 = await send(S1, "k1", []);
  assert.equal(r1.status, 401);
  assert.match(r1.body.error, new RegExp(`No usable key .* for ${S1.replace(".", "\\.")}: .*HTTP 404`));
  assert.equal(fetchesOf(S1), 1);

  // A new PDU signed by S2, relayed by the creator's server (trusted).
  const graph = await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/graph`)).json();
  const state = (await (await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/state`)).json()).state;
  const sender = `@keys-test:${S2}`;
  const msg = signPdu(
    {
      type: "m.room.message", sender, room_id: room.room_id, content: { body: "signed by a key only the fixture had" },
      origin_server_ts: Date.now(), depth: 1_000, prev_events: graph.forward_extremities.map((i) => graph.events[i].event_id),
      auth_events: [state["m.room.create\u0000"], state["m.room.power_levels\u0000"]].filter(Boolean),
    },
    { roomVersion: room.room_version, server: S2, ...keyOf(S2) },
  );
  const before = keyRequests.length;
  const r2 = await send(CREATOR, "k2", [msg.pdu]);
  assert.equal(r2.status, 200);
  const result = r2.body.pdus[msg.eventId];
  assert.match(result?.error ?? "", new RegExp(`keys of ${S2.replace(".", "\\.")} could not be fetched: .*HTTP 404`), JSON.stringify(r2.body));
  assert.equal(fetchesOf(S2), 1, "one fetch: the room's object fetched nothing more");
  assert.equal(keyRequests.length, before + 1);
  const stored = await fetch(`${worker.url}/_roomdag/rooms/${encodeURIComponent(room.room_id)}/events/${encodeURIComponent(msg.eventId)}`);
  assert.equal(stored.status, 404, "the PDU was not stored");
});
