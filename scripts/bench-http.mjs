#!/usr/bin/env node
// /state_ids (and /backfill) through FederationServer.handleFederationRequest
// in Node, on a room loaded from a fixture: real signed requests, the whole
// HTTP path (routing, X-Matrix verification, the query, the JSON body).
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { FederationServer, RoomDirectory, MemoryStore, RoomEngine, KeyRing, signRequest, pinKeys } from "../pkg/node.js";

const path = process.argv[2];
const bytes = readFileSync(path);
const fixture = JSON.parse((path.endsWith(".gz") ? gunzipSync(bytes) : bytes).toString("utf8"));
const trusted = Object.fromEntries(Object.entries(fixture.servers).map(([s, v]) => [s, v.verify_keys]));
const store = new MemoryStore();
const engine = await RoomEngine.open({ store, roomVersion: fixture.room_version });
const ring = pinKeys(new KeyRing(), trusted);
const t0 = performance.now();
for (let i = 0; i < fixture.events.length; i += 50) await engine.ingest(fixture.events.slice(i, i + 50).map((e) => JSON.stringify(e.pdu)), ring);
const ingestMs = performance.now() - t0;
const rooms = new RoomDirectory({ createStore: () => store });
const server = new FederationServer({ serverName: "bench.example", signingKey: { keyId: "ed25519:b", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" }, rooms, trustedKeys: trusted });
const origin = engine.currentState().state ? Object.keys(fixture.servers).find((s) => engine.stateIds(s, fixture.events[5].event_id).status === 200) : undefined;
const s = fixture.servers[origin];
const keyId = Object.keys(s.verify_keys)[0];
const accepted = engine.exportGraph().events.filter((e) => e.status === "accepted").map((e) => e.event_id);

async function measure(make, n) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const target = make(i);
    const auth = signRequest({ origin, keyId, seed: s.signing_key_seed, destination: "bench.example", method: "GET", target });
    const t = performance.now();
    const res = await server.handleFederationRequest(new Request(`http://bench.example${target}`, { headers: { authorization: auth } }));
    await res.text();
    times.push(performance.now() - t);
    if (res.status !== 200) throw new Error(`${target}: ${res.status}`);
  }
  times.sort((a, b) => a - b);
  const p = (q) => times[Math.min(times.length - 1, Math.round((times.length - 1) * q))].toFixed(2);
  return `${n} | ${p(0.5)} ms | ${p(0.99)} ms | ${times.at(-1).toFixed(2)} ms`;
}
const room = encodeURIComponent(fixture.room_id);
await measure((i) => `/_matrix/federation/v1/state_ids/${room}?event_id=${encodeURIComponent(accepted[i])}`, 50); // warm up
console.log(`Node ${process.version}, wasm engine; room loaded through RoomEngine.ingest in ${(ingestMs / 1000).toFixed(1)} s.\n`);
console.log("| through handleFederationRequest (signed requests) | requests | median | p99 | max |\n|---|---|---|---|---|");
console.log(`| /state_ids, random events | ${await measure(() => `/_matrix/federation/v1/state_ids/${room}?event_id=${encodeURIComponent(accepted[Math.floor(Math.random() * accepted.length)])}`, 2000)} |`);
console.log(`| /backfill limit 100 | ${await measure(() => `/_matrix/federation/v1/backfill/${room}?v=${encodeURIComponent(accepted[Math.floor(Math.random() * accepted.length)])}&limit=100`, 500)} |`);
