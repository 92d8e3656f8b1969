#!/usr/bin/env node
// `node scripts/bench-live.mjs [--events 10000] [--gap 1000] [--room-version 11] [--with-roomdag] [--write]`
//
// Issue 12's performance baseline, measured on real Synapse 1.163.2 servers
// (the live harness, tests/live/): what Synapse itself takes for
//   1. hs2 joining an N-event room of hs1 and back-paginating it to the start
//      (/messages on hs2, which /backfills from hs1): time and events/s;
//   2. gap filling: hs2 down while hs1 posts G events, hs2 back, hs1 posts one
//      more: time until hs2 has the new event, and until it holds all G + 1;
// and, with --with-roomdag, roomdag's numbers beside them: the Worker (as
// roomdag.test:8443) joining the same room through `POST /_roomdag/admin/join`
// and backfilling it (needs issue 12's join).
//
// Servers: hs1.test:8446 and hs2.test:8447 (ROOMDAG_LIVE_PORTS), state in
// /dev/shm/roomdag-live-bench (ROOMDAG_LIVE_DIR), fresh each run, so a test
// run on 8448/8449 is not disturbed. Synapse from ROOMDAG_SYNAPSE_PYTHON (or
// .roomdag/oracle-venv, ../shared/oracle/.venv). Needs root (/etc/hosts).
// Sends are sequential (a linear DAG, as a busy room's history mostly is).
// With --write, the results replace the generated section of docs/benchmarks.md.
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
process.env.ROOMDAG_LIVE_PORTS ??= "hs1=8446,hs2=8447";
process.env.ROOMDAG_LIVE_DIR ??= existsSync("/dev/shm") ? "/dev/shm/roomdag-live-bench" : join(os.tmpdir(), "roomdag-live-bench");
process.env.ROOMDAG_LIVE_TTL ??= "14400";
const live = await import("../tests/live/harness.mjs");

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : dflt;
};
const N = Number(opt("events", 10000));
const G = Number(opt("gap", 1000));
const roomVersion = opt("room-version", "11");
const withRoomdag = argv.includes("--with-roomdag");
const write = argv.includes("--write");

const why = live.skipReason();
if (why) {
  console.error(`bench-live: cannot run: ${why}`);
  process.exit(2);
}

const out = [];
const say = (s = "") => {
  console.log(s);
  out.push(s);
};
const secs = (ms) => (ms / 1000).toFixed(1);
const now = () => performance.now();
const loadavg = () => os.loadavg().map((l) => l.toFixed(1)).join(" ");
const fromHs2 = (name, since) =>
  live.accessLog(name).slice(since).filter((l) => l.origin === live.serverName("hs2"));
const count = (lines, what) => lines.filter((l) => new RegExp(`^/_matrix/federation/v\\d+/${what}/`).test(l.path)).length;

/** Sends `n` messages one after another; returns their event IDs. */
async function post(user, room, n, label) {
  const ids = [];
  const t = now();
  for (let i = 0; i < n; i++) {
    ids.push(await user.send(room, `${label} ${i}`));
    if ((i + 1) % 1000 === 0) console.error(`  … ${label}: ${i + 1}/${n} sent, ${((i + 1) / ((now() - t) / 1000)).toFixed(0)}/s, load ${loadavg()}`);
  }
  return { ids, ms: now() - t };
}

/** Back-paginates /messages until `stopAt` (an event ID) is seen, or to the start; oldest first. */
async function paginateTo(user, room, stopAt) {
  const events = [];
  let token;
  let pages = 0;
  for (;;) {
    const r = await user.messages(room, token, { limit: 100 });
    pages++;
    events.push(...(r.chunk ?? []));
    if ((stopAt && r.chunk?.some((e) => e.event_id === stopAt)) || !r.end || r.end === token) break;
    token = r.end;
  }
  return { events: events.reverse(), pages };
}

const started = new Date();
let failed = false;
try {
  const t0 = now();
  const [hs1] = await Promise.all([live.synapse("hs1", { fresh: true }), live.synapse("hs2", { fresh: true })]);
  console.error(`bench-live: hs1, hs2 fresh in ${secs(now() - t0)} s (state in ${process.env.ROOMDAG_LIVE_DIR})`);
  const alice = await live.MatrixUser.register("hs1", "alice");
  const bob = await live.MatrixUser.register("hs2", "bob");

  // 1. join + full back-pagination of an N-event room.
  const room = await alice.createRoom({ room_version: roomVersion, name: "bench" });
  const sent = await post(alice, room, N, "message");
  const logBefore = live.accessLog("hs1").length;
  let t = now();
  await bob.join(room, [hs1.server_name]);
  const joinMs = now() - t;
  t = now();
  const stats = {};
  const onHs2 = await bob.paginate(room, { stats });
  const pageMs = now() - t;
  const reqs = fromHs2("hs1", logBefore);
  const total = (await alice.paginate(room)).length; // with bob's join
  const againLog = live.accessLog("hs1").length;
  t = now();
  await bob.paginate(room);
  const againMs = now() - t;
  const againBackfills = count(fromHs2("hs1", againLog), "backfill");
  const complete = onHs2.length === total && onHs2[0].type === "m.room.create";
  if (!complete) failed = true;
  const loadAfterJoin = loadavg();

  let roomdagJoin;
  let roomdagGap;
  if (withRoomdag) {
    let worker = await live.roomdag();
    try {
      t = now();
      const r = await live.tlsRequest(`${worker.url}/_roomdag/admin/join`, {
        method: "POST",
        headers: { authorization: `Bearer ${worker.adminToken}` },
        body: { room, via: [hs1.server_name] },
      });
      const ms = now() - t;
      const last = r.text.trim().split("\n").map((l) => JSON.parse(l)).at(-1);
      if (r.status !== 200 || !last?.done) throw new Error(`roomdag join: ${r.status} ${r.text.slice(-300)}`);
      const rooms = (await live.tlsRequest(`${worker.url}/_roomdag/rooms`)).body.rooms;
      roomdagJoin = { ms, events: rooms.find((x) => x.roomId === room)?.eventCount };

      // roomdag's gap: the Worker down while hs1 posts G, back up, hs1 posts
      // one more (hs1 restarted too, so only the newest event is pushed):
      // time until roomdag holds all G + 1.
      const eventCount = async () => (await live.tlsRequest(`${worker.url}/_roomdag/rooms`)).body.rooms.find((x) => x.roomId === room)?.eventCount ?? 0;
      const persist = worker.persist;
      await worker.stop();
      const before = roomdagJoin.events;
      await post(alice, room, G, "missed by roomdag");
      live.stopSynapse("hs1");
      await live.synapse("hs1");
      worker = await live.roomdag({ persistTo: persist });
      t = now();
      await alice.send(room, "the one after (roomdag)");
      const deadline = Date.now() + 600_000;
      let have = await eventCount();
      while (have < before + G + 1 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 250));
        have = await eventCount();
      }
      roomdagGap = { ms: now() - t, have: have - before, want: G + 1 };
    } finally {
      await worker.stop();
    }
  }

  // 2. gap filling of G missed events, twice: hs1 keeps running (its
  // in-memory queue for hs2 delivers the missed events itself), and hs1
  // restarted during the outage (the queue is lost; Synapse's catch-up sends
  // only the newest event per room and hs2 must fetch the rest).
  const gaps = [];
  for (const restartHs1 of [false, true]) {
    const gapRoom = await alice.createRoom({ room_version: roomVersion, name: "bench gap" });
    await post(alice, gapRoom, 20, "before");
    await bob.join(gapRoom, [hs1.server_name]);
    const { ids: lastBefore } = await post(alice, gapRoom, 1, "last before the outage");
    await bob.waitForEvent(gapRoom, lastBefore[0]);
    live.stopSynapse("hs2");
    const missed = await post(alice, gapRoom, G, "missed");
    if (restartHs1) {
      live.stopSynapse("hs1");
      await live.synapse("hs1");
    }
    t = now();
    await live.synapse("hs2");
    const restartMs = now() - t;
    const hs1Log = live.accessLog("hs1").length;
    const hs2Log = live.accessLog("hs2").length;
    t = now();
    const newest = await alice.send(gapRoom, "the one after");
    await bob.waitForEvent(gapRoom, newest, 300_000);
    const arriveMs = now() - t;
    const filled = await paginateTo(bob, gapRoom, lastBefore[0]);
    const fillMs = now() - t;
    const want = new Set([...missed.ids, newest]);
    const have = new Set(filled.events.map((e) => e.event_id));
    // Not in the pagination: stored all the same? (GET /event on hs2)
    const absent = [...want].filter((e) => !have.has(e));
    let notStored = 0;
    for (const id of absent) {
      try {
        await bob.request("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(gapRoom)}/event/${encodeURIComponent(id)}`);
      } catch {
        notStored++;
      }
    }
    const missing = { absent: absent.length, notStored };
    if (notStored) failed = true;
    const pushed = live.accessLog("hs2").slice(hs2Log).filter((l) => l.origin === hs1.server_name && /^\/_matrix\/federation\/v1\/send\//.test(l.path)).length;
    gaps.push({ restartHs1, restartMs, arriveMs, fillMs, pages: filled.pages, missing, reqs: fromHs2("hs1", hs1Log), pushed });
  }

  const cpu = os.cpus();
  say(`Run on ${started.toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu[0]?.model.trim().split(/\s+/).slice(0, 2).join(" ")}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Synapse 1.163.2 (SQLite on tmpfs), room v${roomVersion}, load average after the join ${loadAfterJoin}.`);
  say(`Command: \`node scripts/bench-live.mjs --events ${N} --gap ${G} --room-version ${roomVersion}${withRoomdag ? " --with-roomdag" : ""}\`.`);
  say();
  say(`hs1 posted ${N.toLocaleString("en")} messages sequentially in ${secs(sent.ms)} s (${(N / (sent.ms / 1000)).toFixed(1)}/s); with bob's join the room holds ${total.toLocaleString("en")} events.`);
  say();
  say("| join + full back-pagination of the room | time | events/s | requests to hs1 |");
  say("|---|---|---|---|");
  say(`| Synapse hs2: join via hs1 (partial-state join) | ${secs(joinMs)} s | — | ${count(reqs, "make_join")} make_join, ${count(reqs, "send_join")} send_join |`);
  say(`| Synapse hs2: /messages back to the create event (${stats.pages} pages; hs2 /backfills from hs1) | ${secs(pageMs)} s | ${(onHs2.length / (pageMs / 1000)).toFixed(0)} | ${count(reqs, "backfill")} backfill, ${count(reqs, "state_ids")} state_ids, ${count(reqs, "event")} event, ${count(reqs, "get_missing_events")} get_missing_events |`);
  say(`| Synapse hs2: join + back-pagination | ${secs(joinMs + pageMs)} s | ${(onHs2.length / ((joinMs + pageMs) / 1000)).toFixed(0)} | |`);
  say(`| Synapse hs2: the same back-pagination again (hs2 holds the history) | ${secs(againMs)} s | ${(onHs2.length / (againMs / 1000)).toFixed(0)} | ${againBackfills} backfill |`);
  if (roomdagJoin) say(`| roomdag (Worker, wrangler dev): POST /_roomdag/admin/join until done | ${secs(roomdagJoin.ms)} s | ${(roomdagJoin.events / (roomdagJoin.ms / 1000)).toFixed(0)} | |`);
  say();
  say(`hs2 ${complete ? "saw all" : `saw ${onHs2.length} of`} ${total.toLocaleString("en")} events, from the create event on.`);
  say();
  say(`| gap filling: hs2 down while hs1 posts ${G.toLocaleString("en")}, hs2 back up, hs1 posts 1 more | until hs2 has the new event | until hs2 holds all ${(G + 1).toLocaleString("en")} | events/s | /send transactions hs1 → hs2 | requests hs2 → hs1 |`);
  say("|---|---|---|---|---|---|");
  for (const g of gaps) {
    const how = g.restartHs1 ? "hs1 restarted during the outage (catch-up: the newest event only)" : "hs1 kept running (its queue for hs2 delivers the missed events)";
    say(`| ${how}; hs2 restart ${secs(g.restartMs)} s | ${secs(g.arriveMs)} s | ${secs(g.fillMs)} s | ${((G + 1) / (g.fillMs / 1000)).toFixed(0)} | ${g.pushed} | ${count(g.reqs, "get_missing_events")} get_missing_events, ${count(g.reqs, "state_ids")} state_ids, ${count(g.reqs, "event")} event, ${count(g.reqs, "backfill")} backfill |`);
  }
  if (roomdagGap) {
    say(`| roomdag (Worker): down while hs1 posts ${G.toLocaleString("en")}, hs1 restarted (catch-up: the newest event only), roomdag back up, hs1 posts 1 more | — | ${secs(roomdagGap.ms)} s (${roomdagGap.have} of ${roomdagGap.want}) | ${(roomdagGap.have / (roomdagGap.ms / 1000)).toFixed(0)} | | |`);
  }
  say();
  const absent = gaps.map((g) => g.missing.absent);
  const notStored = gaps.map((g) => g.missing.notStored);
  say(`"Holds all": hs2's /messages, paged back (100 per page) from the newest event to the last one before the outage, ${absent.some(Boolean) ? `left out ${absent.join(" and ")} of the missed events (in the order of the rows), which hs2 ${notStored.some(Boolean) ? `lacks in ${notStored.join(" and ")} cases` : "holds all the same (GET /event finds them)"}` : "returns every missed event"}. hs1 retries a destination after 2–5 s here (tests/live/live.py), not Synapse's default minutes.`);
} finally {
  await live.stopAll();
  // the servers of a fresh run are ours: stop them even if they were reused
  for (const name of ["hs1", "hs2"]) {
    try {
      live.stopSynapse(name);
    } catch {
      /* not running */
    }
  }
}

if (write) {
  const doc = join(root, "docs/benchmarks.md");
  const text = readFileSync(doc, "utf8");
  const block = `<!-- bench-live:start -->\n${out.join("\n")}\n<!-- bench-live:end -->`;
  const re = /<!-- bench-live:start -->[\s\S]*<!-- bench-live:end -->/;
  if (!re.test(text)) throw new Error("docs/benchmarks.md has no bench-live markers");
  writeFileSync(doc, text.replace(re, block));
  console.error("bench-live: docs/benchmarks.md updated");
}
process.exit(failed ? 1 : 0);
