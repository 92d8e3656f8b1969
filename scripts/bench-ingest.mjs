#!/usr/bin/env node
// `node scripts/bench-ingest.mjs [--events N] [--txn P] [--node] [--worker]`:
// ingest throughput, the way issue 13 measures it.
//   /send from one origin: the first N events of v11-20k (default 5,000) in
//   transactions of P PDUs (default 50), one transaction at a time, signed by
//   the room's first server (a server may relay other servers' PDUs; each PDU
//   is checked with its sender's key);
//   the admin import of the same events (the Worker only).
// --node: through FederationServer in this process (MemoryStore);
// --worker: through the Worker under wrangler dev (workerd, on-disk storage).
// --fixture PATH: another room (.json or .json.gz) instead of v11-20k;
// --ndjson: import it as NDJSON (one PDU per line, streamed by the Worker)
// rather than one fixture body. workerd's resident memory (all its
// processes, from /proc) is sampled during the import and the cold start.
// Neither flag: both. --import-only: the Worker's import (and cold start) only.
// Then the Worker's cold start: the imported room's storage under a new
// workerd, and the time to its first /state_ids answer.
// --state DIR: keep the Worker's storage in DIR; when DIR holds an imported
// room already, skip the import and measure the cold start only (repeatable).
// Prints PDUs/s. A single origin may have at most 100 rejected PDUs per room
// per 10 minutes (docs/security.md): past about 5,000 events of v11-20k the
// rest of its /send PDUs are refused, so use --import-only for bigger rooms.
import { FederationServer, RoomDirectory, MemoryStore, signRequest } from "../pkg/node.js";
import { loadFixture, trustedKeysOf } from "../tests/js/fixtures.mjs";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";

const opt = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const flags = new Set(process.argv.slice(2));
const N = opt("--events", 5000);
const TXN = opt("--txn", 50);
const both = !flags.has("--node") && !flags.has("--worker") && !flags.has("--import-only");

const fixturePath = process.argv.includes("--fixture") ? process.argv[process.argv.indexOf("--fixture") + 1] : null;
const room = fixturePath
  ? JSON.parse((fixturePath.endsWith(".gz") ? gunzipSync(readFileSync(fixturePath)) : readFileSync(fixturePath)).toString("utf8"))
  : loadFixture("v11-20k").room;
const NDJSON = flags.has("--ndjson");
const stateDir = process.argv.includes("--state") ? process.argv[process.argv.indexOf("--state") + 1] : null;

/** Resident memory of every workerd process (KiB), read from /proc. */
function workerdRss() {
  let kb = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "workerd") continue;
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return kb;
}
/** Samples workerdRss() every 100 ms until stopped; returns the peak. */
function rssPeak() {
  let peak = workerdRss();
  const t = setInterval(() => (peak = Math.max(peak, workerdRss())), 100);
  return () => {
    clearInterval(t);
    return Math.max(peak, workerdRss());
  };
}
const mib = (kb) => `${(kb / 1024).toFixed(0)} MiB`;
const events = room.events.slice(0, N);
const trusted = trustedKeysOf(room);
const origin = Object.keys(room.servers)[0];
const key = room.servers[origin];
const keyId = Object.keys(key.verify_keys)[0];
const SERVER = "bench.example";

/** Sends every transaction through `send`; returns {secs, statuses}. */
async function sendAll(send) {
  const statuses = {};
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0, txn = 0; i < events.length; i += TXN, txn++) {
    const body = JSON.stringify({ origin, origin_server_ts: Date.now(), pdus: events.slice(i, i + TXN).map((e) => e.pdu) });
    const target = `/_matrix/federation/v1/send/bench-${Date.now()}-${txn}`;
    const authorization = signRequest({ origin, keyId, seed: key.signing_key_seed, destination: SERVER, method: "PUT", target, body });
    const res = await send(new Request(`http://${SERVER}${target}`, { method: "PUT", headers: { authorization, "content-type": "application/json" }, body }));
    const answer = await res.json();
    if (res.status !== 200) throw new Error(`transaction ${txn}: HTTP ${res.status} ${JSON.stringify(answer)}`);
    for (const r of Object.values(answer.pdus)) {
      const k = r.error ? "error" : "ok";
      statuses[k] = (statuses[k] ?? 0) + 1;
    }
  }
  const c = process.cpuUsage(c0);
  return { secs: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6, statuses };
}

const line = (what, secs, extra = "") => console.log(`${what}: ${events.length} PDUs in ${secs.toFixed(2)} s = ${Math.round(events.length / secs)} PDUs/s ${extra}`);

if (both || flags.has("--node")) {
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const server = new FederationServer({ serverName: SERVER, signingKey: { keyId: "ed25519:b", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" }, rooms, trustedKeys: trusted, acceptRoomsFrom: "*" });
  const r = await sendAll((req) => server.handleFederationRequest(req));
  line(`Node FederationServer /send (${TXN} per transaction)`, r.secs, `(CPU ${r.cpu.toFixed(2)} s) ${JSON.stringify(r.statuses)}`);
}

if (both || flags.has("--worker") || flags.has("--import-only")) {
  const { startWorker } = await import("../tests/worker/wrangler.mjs");
  const vars = {
    SERVER_NAME: SERVER,
    SIGNING_KEY: "ed25519:b dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE",
    ADMIN_TOKEN: "bench-admin-token-0123456789",
    TRUSTED_KEYS: JSON.stringify(trusted),
    KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
    ACCEPT_ROOMS_FROM: "*",
    // The image is due after 1,000 records by default: a smaller room would
    // never get one, and the wait for it below would never end.
    IMAGE_AFTER_RECORDS: String(Math.max(1, Math.min(1000, Math.floor(N / 2)))),
  };
  /** The room's admin status (image lag, wasm memory) from a Worker at `url`. */
  const roomStatus = async (url) =>
    (await fetch(`${url}/_roomdag/admin/status/${encodeURIComponent(room.room_id)}`, { headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}` } })).json();
  const w = flags.has("--import-only") ? null : await startWorker({ vars });
  if (w) try {
    const send = (req) => fetch(new Request(w.url + new URL(req.url).pathname, req));
    const r = await sendAll(send);
    line(`Worker /send (${TXN} per transaction)`, r.secs, JSON.stringify(r.statuses));
  } finally {
    await w.stop();
  }
  const imported = stateDir !== null && existsSync(join(stateDir, "v3"));
  const w2 = imported ? null : await startWorker({ vars, persistTo: stateDir ?? undefined });
  if (w2) try {
    const idle = workerdRss();
    const peak = rssPeak();
    const t0 = performance.now();
    const res = await fetch(`${w2.url}/_roomdag/admin/import`, {
      method: "POST",
      headers: { authorization: `Bearer ${vars.ADMIN_TOKEN}`, "content-type": NDJSON ? "application/x-ndjson" : "application/json" },
      body: NDJSON ? events.map((e) => JSON.stringify(e.pdu)).join("\n") + "\n" : JSON.stringify({ ...room, events }),
    });
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
    const last = lines.at(-1);
    if (!last.done) throw new Error(`import: ${JSON.stringify(last)}`);
    line(`Worker admin import (${NDJSON ? "NDJSON" : "fixture"})`, (performance.now() - t0) / 1000, `${JSON.stringify(last.done)}; workerd RSS ${mib(idle)} idle, peak ${mib(peak())}`);
    // The room object writes its image once the room is quiet (an alarm):
    // wait for it, so that the restart below reads it back.
    const t1 = performance.now();
    for (let polls = 0; ; polls++) {
      const st = await roomStatus(w2.url);
      if (polls === 0) console.log(`Room object's wasm memory after the import: ${mib(st.wasmMemoryBytes / 1024)}`);
      if (st.image?.lag === 0) {
        console.log(`Room object's wasm memory after the import and its image: ${mib(st.wasmMemoryBytes / 1024)}`);
        break;
      }
      if (performance.now() - t1 > 300_000) throw new Error(`no image after 300 s: ${JSON.stringify(st)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    console.log(`Worker room image written ${((performance.now() - t1) / 1000).toFixed(2)} s after the import answered (the room object waits ${3} s for quiet); workerd RSS peak ${mib(peak())}`);
  } finally {
    await w2.stop();
  }
  // Cold start: the same storage, a new workerd; the first /state_ids at the newest event.
  const w3 = await startWorker({ vars, persistTo: w2?.persist ?? stateDir });
  try {
    const last = events.at(-1).event_id;
    const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(room.room_id)}?event_id=${encodeURIComponent(last)}`;
    const authorization = signRequest({ origin, keyId, seed: key.signing_key_seed, destination: SERVER, method: "GET", target });
    // As a homeserver asks: Synapse's federation client sends no
    // Accept-Encoding, while Node's fetch asks for gzip, which workerd then
    // spends ~30 ms on for this room's 1.2 MB answer (a repeat took 42-50 ms
    // with gzip, 11-17 ms without).
    const headers = { authorization, "accept-encoding": "identity" };
    const idle = workerdRss();
    const peak = rssPeak();
    const t0 = performance.now();
    const res = await fetch(w3.url + target, { headers });
    const body = await res.json();
    const first = performance.now() - t0;
    const afterFirst = peak();
    const t1 = performance.now();
    await (await fetch(w3.url + target, { headers })).text();
    const second = performance.now() - t1;
    const st = await roomStatus(w3.url);
    console.log(`Worker cold start (${events.length}-event room, restarted): first /state_ids ${res.status} (${body.pdu_ids?.length ?? 0} state events) after ${first.toFixed(0)} ms; the next one ${second.toFixed(1)} ms; workerd RSS ${mib(idle)} before, peak ${mib(afterFirst)}; the room object's wasm memory ${mib(st.wasmMemoryBytes / 1024)}`);
    const raw = events.reduce((n, e) => n + Buffer.byteLength(JSON.stringify(e.pdu)), 0);
    const stored = roomObjectBytes(w3.persist);
    if (process.env.BENCH_WORKER_LOG) console.log(w3.output());
    console.log(`Storage: the room object's SQLite files ${mib(stored / 1024)} for ${mib(raw / 1024)} of raw PDU JSON (${(stored / raw).toFixed(2)}×)`);
  } finally {
    await w3.stop();
  }
}

/** Bytes of the RoomObject Durable Objects' SQLite files under a persist directory. */
function roomObjectBytes(dir) {
  let total = 0;
  const walk = (d, inRoom) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p, inRoom || entry.name.includes("RoomObject"));
      else if (inRoom) total += statSync(p).size;
    }
  };
  walk(dir, false);
  return total;
}
