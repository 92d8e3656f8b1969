#!/usr/bin/env node
// `node scripts/loadtest.mjs [--seconds N] [--concurrency C]`: the Worker
// under load on loopback (wrangler dev / workerd), bounded in time and count.
//   1. v11-forky-2k sent as /send transactions by all its servers at once
//      (each server's PDUs in order, the servers concurrently; a PDU whose
//      prev events have not arrived yet is dropped, as a homeserver would,
//      and the servers then resend everything once, like a sender retrying):
//      every PDU Synapse stores must be stored exactly once, with Synapse's
//      current state;
//   2. sustained signed /backfill (limit 100) and /state_ids: throughput, p50, p99.
import { startWorker } from "../tests/worker/wrangler.mjs";
import { FederationClient } from "../tests/js/federation-client.mjs";
import { loadFixture, trustedKeysOf } from "../tests/js/fixtures.mjs";
import { signRequest } from "../pkg/node.js";

const opt = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = opt("--seconds", 10);
const CONCURRENCY = opt("--concurrency", 16);
const MAX_REQUESTS = 100_000;

const main = loadFixture("v11-forky-2k");
const trusted = trustedKeysOf(main.room);
const SERVER = "load.example";
const vars = {
  SERVER_NAME: SERVER,
  SIGNING_KEY: "ed25519:l dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE",
  ADMIN_TOKEN: "load-admin-token-0123456789",
  TRUSTED_KEYS: JSON.stringify(trusted),
  KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
  ACCEPT_ROOMS_FROM: "*",
};
const w = await startWorker({ vars });
try {
  // 1. Concurrent /send from every server of the room.
  const t0 = performance.now();
  const byOrigin = new Map();
  for (const e of main.room.events) {
    if (!byOrigin.has(e.origin)) byOrigin.set(e.origin, []);
    byOrigin.get(e.origin).push(e);
  }
  const send = (req) => fetch(new Request(w.url + new URL(req.url).pathname, req));
  const streams = [...byOrigin.values()].map((events) => new FederationClient({ send, destination: SERVER, fixture: { ...main.room, events } }));
  await Promise.all(streams.map((c) => c.sendAll()));
  const firstPass = (performance.now() - t0) / 1000;
  await new FederationClient({ send, destination: SERVER, fixture: main.room }).sendAll(); // the retry pass, in order
  const secs = (performance.now() - t0) / 1000;
  const info = (await (await fetch(`${w.url}/_roomdag/admin/rooms`, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` } })).json()).rooms.find((r) => r.roomId === main.room.room_id);
  const digest = (await (await fetch(`${w.url}/_roomdag/rooms/${encodeURIComponent(main.room.room_id)}/state`, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` } })).json()).digest;
  const want = main.expected.events.filter((e) => e.status !== "dropped").length;
  const ok = info?.eventCount === want && digest === main.expected.current_state_digest;
  const done = { done: { stored: info?.eventCount } };
  const sendLine = `Concurrent /send: ${main.room.events.length} PDUs from ${byOrigin.size} servers at once in ${firstPass.toFixed(1)} s, then one in-order resend pass (${secs.toFixed(1)} s in all): ${info?.eventCount}/${want} stored, current state ${digest === main.expected.current_state_digest ? "equal to Synapse's" : "DIFFERENT"} — ${ok ? "no event lost or duplicated" : "MISMATCH"}.`;
  if (!ok) process.exitCode = 1;

  const origin = main.expected.servers_in_room[0];
  const s = main.room.servers[origin];
  const keyId = Object.keys(s.verify_keys)[0];
  const accepted = main.expected.events.filter((e) => e.status === "accepted").map((e) => e.event_id);
  const room = encodeURIComponent(main.room.room_id);

  // Requests are pre-signed (the signature covers method, URI and parties only).
  const pool = (make) =>
    Array.from({ length: 256 }, (_, i) => {
      const target = make(accepted[(i * 7919) % accepted.length]);
      return { target, auth: signRequest({ origin, keyId, seed: s.signing_key_seed, destination: SERVER, method: "GET", target }) };
    });

  async function load(name, reqs) {
    const lat = [];
    let n = 0;
    let errors = 0;
    const until = Date.now() + SECONDS * 1000;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, c) => {
        for (let i = c; Date.now() < until && n < MAX_REQUESTS; i += CONCURRENCY) {
          const r = reqs[i % reqs.length];
          const t = performance.now();
          const res = await fetch(w.url + r.target, { headers: { authorization: r.auth } });
          await res.arrayBuffer();
          lat.push(performance.now() - t);
          n++;
          if (res.status !== 200) errors++;
        }
      }),
    );
    lat.sort((a, b) => a - b);
    const p = (q) => lat[Math.min(lat.length - 1, Math.round((lat.length - 1) * q))].toFixed(1);
    return `| ${name} | ${n} | ${(n / SECONDS).toFixed(0)} req/s | ${p(0.5)} ms | ${p(0.99)} ms | ${errors} |`;
  }

  console.log(sendLine + "\n");
  console.log(`Worker under wrangler dev (workerd) on loopback, ${CONCURRENCY} concurrent clients, ${SECONDS} s per endpoint, room v11-forky-2k (${done.done.stored} events).\n`);
  console.log("| endpoint | requests | throughput | p50 | p99 | non-200 |\n|---|---|---|---|---|---|");
  console.log(await load("/backfill limit 100", pool((e) => `/_matrix/federation/v1/backfill/${room}?v=${encodeURIComponent(e)}&limit=100`)));
  console.log(await load("/state_ids", pool((e) => `/_matrix/federation/v1/state_ids/${room}?event_id=${encodeURIComponent(e)}`)));

} finally {
  await w.stop();
}
