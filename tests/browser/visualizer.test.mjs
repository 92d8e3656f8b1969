// The visualizer (www/) end to end in headless Chromium: build www/dist, serve
// it statically, load Synapse-judged fixtures, click, step, jump, save to
// IndexedDB, export, and measure the time to the first drawn graph. Fails on
// any console error.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, statSync, existsSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { join, extname } from "node:path";
import { tmpdir } from "node:os";
import { serve } from "./server.mjs";
import { launch } from "./chromium.mjs";
import { root, fixturesDir, readFixtureFile } from "../js/fixtures.mjs";

const out = mkdtempSync(join(tmpdir(), "roomdag-visualizer-"));
let server;
let browser;

before(async () => {
  const b = spawnSync(process.execPath, [join(root, "www", "build.mjs")], { cwd: root, encoding: "utf8" });
  assert.equal(b.status, 0, `www/build.mjs failed:\n${b.stdout}\n${b.stderr}`);
  server = await serve({ "/": join(root, "www", "dist") }, fixturesDir);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
  rmSync(out, { recursive: true, force: true });
});

/** A page that records console errors and uncaught exceptions. */
async function openPage(context) {
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  return { page, errors };
}

const stateOf = (page) => page.evaluate(() => document.body.dataset.state);
const waitState = (page, state, timeout = 120_000) => page.waitForFunction((s) => document.body.dataset.state === s, state, { timeout });
const text = (page, sel) => page.locator(sel).first().textContent();

test("JS lane layout (for server-sourced graphs) equals the engine's", async () => {
  const api = await import(join(root, "pkg", "node.js"));
  const { laneLayout } = await import(join(root, "www", "src", "layout.js"));
  const engine = api.roomFromFixture(readFixtureFile("v11-forky-2k"));
  const graph = engine.exportGraph();
  graph.events.forEach((e, k) => assert.equal(e.i, k));
  for (const rows of ["depth", "arrival"]) {
    assert.deepEqual(Array.from(laneLayout(graph.events, rows)), Array.from(engine.layout(rows)), `${rows} rows`);
  }
});

test("v11-forky-2k: load, click, state digest, keyboard, date jump, filter, backfill, save, export, screenshot", async (t) => {
  const fixture = JSON.parse(readFixtureFile("v11-forky-2k").toString("utf8"));
  const expected = JSON.parse(readFixtureFile("v11-forky-2k.expected").toString("utf8"));
  // An accepted event past the middle whose state changes, and its first prev event.
  const pick = expected.events.findIndex((e, k) => k > 1200 && e.status === "accepted" && e.state_before !== e.state_after);
  const want = expected.events[pick];
  const pdu = fixture.events.find((e) => e.event_id === want.event_id).pdu;
  const prevId = pdu.prev_events[0];

  const context = await browser.newContext({ viewport: { width: 1500, height: 900 }, acceptDownloads: true });
  const { page, errors } = await openPage(context);
  try {
    await page.goto(`${server.url}/?fixture=/fixture/v11-forky-2k.json`);
    await waitState(page, "verified");
    const timing = await page.evaluate(() => ({ ...window.__roomdag }));
    t.diagnostic(`v11-forky-2k: first render ${timing.firstRenderMs} ms, verified by the engine at ${timing.verifiedMs} ms`);
    assert.match(await text(page, "[data-testid=event-count]"), /^1988 /);

    // Jump next to the event, then click its node on the canvas.
    await page.fill("#jump-input", prevId);
    await page.press("#jump-input", "Enter");
    await page.waitForFunction((id) => window.__roomdag.nodePosition(id), want.event_id);
    const pos = await page.evaluate((id) => window.__roomdag.nodePosition(id), want.event_id);
    await page.mouse.click(pos.x, pos.y);
    await page.waitForFunction((id) => document.querySelector(".event-head .id")?.textContent.startsWith(id), want.event_id);
    assert.equal((await text(page, "[data-testid=state-before]")).trim(), want.state_before, "state before = the contract digest");
    assert.equal((await text(page, "[data-testid=state-after]")).trim(), want.state_after, "state after = the contract digest");
    const title = async () => (await text(page, "#event-title")).match(/#(\d+)/)[1];
    const at = Number(await title());

    // Step with the keyboard (graph focused): → j ← k.
    await page.focus("#graph");
    const stepTo = async (key, n) => {
      await page.keyboard.press(key);
      await page.waitForFunction((n) => document.querySelector("#event-title")?.textContent.includes(`#${n} `), n);
      assert.equal(await text(page, "#position"), `#${n} of 1988`);
    };
    await stepTo("ArrowRight", at + 1);
    await stepTo("j", at + 2);
    await stepTo("ArrowLeft", at + 1);
    await stepTo("k", at);

    // Jump to a date: the engine's /timestamp_to_event as the chosen server.
    const api = await import(join(root, "pkg", "node.js"));
    const engine = api.roomFromFixture(readFixtureFile("v11-forky-2k"));
    const origin = await page.locator("#origin-select").inputValue();
    const ts = fixture.events[700].pdu.origin_server_ts + 1000;
    const iso = new Date(Math.ceil(ts / 1000) * 1000).toISOString().slice(0, 19);
    const answer = engine.timestampToEvent(origin, Date.parse(iso + "Z"), "f");
    assert.equal(answer.status, 200);
    await page.fill("#date-input", iso);
    await page.click("#date-form button[type=submit]");
    await page.waitForFunction((id) => document.querySelector(".event-head .id")?.textContent.startsWith(id), answer.body.event_id);
    assert.match(await text(page, "#status"), /timestamp_to_event/);

    // Filter by type: stepping visits only matches.
    await page.selectOption("#filter-type", "m.room.power_levels");
    await page.waitForFunction(() => /matching events/.test(document.querySelector("#filter-count").textContent));
    await page.focus("#graph");
    await page.keyboard.press("ArrowRight");
    await page.waitForFunction(() => document.querySelector("#event-title .type")?.textContent.trim() === "m.room.power_levels");
    await page.selectOption("#filter-type", "");

    // What /backfill from this event gives a server: listed and outlined.
    await page.click("text=/backfill from here");
    await page.waitForSelector(".answer-list li");
    assert.ok((await page.locator(".answer-list li").count()) > 0);

    // Current state across the extremities equals the contract's.
    await page.click("#resolve-current");
    await page.waitForSelector("[data-testid=current-digest]");
    assert.equal((await text(page, "[data-testid=current-digest]")).trim(), expected.current_state_digest);

    // Screenshot.
    const shot = join(out, "visualizer-forky-2k.png");
    await page.screenshot({ path: shot });
    const png = readFileSync(shot);
    assert.ok(png.length > 10_000 && png.subarray(1, 4).toString() === "PNG", "a non-empty PNG");
    t.diagnostic(`screenshot: ${shot}`);

    // Exports: PNG of the view, SVG, NDJSON of the room.
    const save = async (button) => {
      const [dl] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
      const path = join(out, dl.suggestedFilename());
      await dl.saveAs(path);
      return path;
    };
    const pngPath = await save("#export-png");
    assert.equal(readFileSync(pngPath).subarray(1, 4).toString(), "PNG");
    const svg = readFileSync(await save("#export-svg"), "utf8");
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.ok((svg.match(/<circle|<rect|<polygon/g) ?? []).length > 20, "the SVG has nodes");
    const ndjsonPath = await save("#export-ndjson");
    const lines = readFileSync(ndjsonPath, "utf8").trim().split("\n");
    assert.equal(lines.length, 1988);
    assert.equal(api.eventIdOf(lines[0], "11"), fixture.events[0].event_id);

    // Save to the browser's IndexedDB; after a reload the room is listed and opens.
    await page.click("#save-button");
    await page.waitForFunction(() => /^Saved /.test(document.querySelector("#status").textContent), null, { timeout: 120_000 });
    await page.reload();
    await page.waitForSelector("#saved-room-list li button");
    assert.match(await text(page, "#saved-room-list li button"), new RegExp(fixture.room_id.replace(/[!.]/g, "\\$&")));
    await page.click("#saved-room-list li button");
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), /^1988 /);
    await page.click("#saved-room-list li button.small"); // Delete
    await page.waitForFunction(() => document.querySelector("#saved-room-list").textContent.includes("None yet."));

    // Drag and drop a fixture file onto the page.
    await page.evaluate(async () => {
      const bytes = await (await fetch("/fixture/v10-linear-200.json")).arrayBuffer();
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], "v10-linear-200.json", { type: "application/json" }));
      document.body.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("v10-linear-200.json:") && document.body.dataset.state === "verified");

    // NDJSON without keys: drawn unverified, then replayed trusting its signatures.
    const small = JSON.parse(readFixtureFile("v10-linear-200").toString("utf8"));
    const ndjson = join(out, "v10-linear-200.ndjson");
    writeFileSync(ndjson, small.events.map((e) => JSON.stringify(e.pdu)).join("\n") + "\n");
    await page.setInputFiles("#file-input", ndjson);
    await waitState(page, "drawn");
    await page.waitForSelector("#trust-button");
    await page.click("#trust-button");
    await waitState(page, "verified");
    // …and with a keys line, verified like a fixture.
    const keyed = join(out, "v10-linear-200-keys.ndjson");
    const keys = Object.fromEntries(Object.entries(small.servers).map(([s, v]) => [s, v.verify_keys]));
    writeFileSync(keyed, JSON.stringify({ trusted_keys: keys }) + "\n" + readFileSync(ndjson, "utf8"));
    await page.setInputFiles("#file-input", keyed);
    await page.waitForFunction(() => document.querySelector("#status").textContent.startsWith("v10-linear-200-keys.ndjson:") && document.body.dataset.state === "verified");
    const small2 = api.roomFromFixture(readFixtureFile("v10-linear-200")).exportGraph();
    assert.match(await text(page, "[data-testid=event-count]"), new RegExp(`^${small2.events.length} `));

    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("v11-20k: time to first render, and panning across the drawn window", async (t) => {
  const context = await browser.newContext({ viewport: { width: 1500, height: 900 } });
  const { page, errors } = await openPage(context);
  try {
    await page.goto(`${server.url}/?fixture=/fixture/v11-20k.json.gz`);
    await page.waitForFunction(() => window.__roomdag?.firstRenderMs, null, { timeout: 60_000 });
    const { firstRenderMs } = await page.evaluate(() => ({ ...window.__roomdag }));
    t.diagnostic(`v11-20k: time to first render ${firstRenderMs} ms (from navigation; target < 3000)`);
    const drawn = await page.evaluate(() => document.querySelector("#graph canvas") !== null);
    assert.ok(drawn);
    assert.ok(firstRenderMs < 15_000, `first render took ${firstRenderMs} ms`);

    // Drag the view upwards through history (re-windowing on the way) and record the longest frame.
    await page.evaluate(() => {
      window.__frames = [];
      let last = performance.now();
      const tick = (t) => {
        window.__frames.push(t - last);
        last = t;
        if (!window.__stopFrames) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    const box = await page.locator("#graph").boundingBox();
    const x = box.x + box.width / 2;
    await page.focus("#graph");
    await page.keyboard.press("-");
    await page.keyboard.press("-");
    const drawnRows = () => page.evaluate(() => document.querySelector("#scrubber").value);
    const startRow = Number(await drawnRows());
    for (let k = 0; k < 10; k++) {
      await page.mouse.move(x, box.y + 60);
      await page.mouse.down();
      await page.mouse.move(x, box.y + box.height - 40, { steps: 10 });
      await page.mouse.up();
    }
    // …and jump around with the row scrubber (each jump draws a new window).
    for (const row of [9000, 4000, 200, 12000]) {
      await page.evaluate((row) => {
        const s = document.querySelector("#scrubber");
        s.value = String(row);
        s.dispatchEvent(new Event("input"));
      }, row);
      await page.waitForTimeout(150);
    }
    t.diagnostic(`v11-20k: dragged from row ${startRow} up ${startRow - Number(await drawnRows())} rows before the scrubber jumps`);
    const frames = await page.evaluate(() => {
      window.__stopFrames = true;
      return window.__frames.slice(2);
    });
    const sorted = [...frames].sort((a, b) => a - b);
    const p95 = sorted[Math.floor(sorted.length * 0.95)];
    const stats = await page.evaluate(() => window.__roomdag.graphStats());
    t.diagnostic(`v11-20k: while panning: ${frames.length} frames, p95 ${p95.toFixed(1)} ms, max ${sorted.at(-1).toFixed(1)} ms; slowest window redraw ${stats.maxRenderMs.toFixed(0)} ms (now ${stats.nodes} nodes, ${stats.edges} edges drawn)`);

    await waitState(page, "verified", 240_000);
    const { verifiedMs } = await page.evaluate(() => ({ ...window.__roomdag }));
    t.diagnostic(`v11-20k: verified by the engine (in a Web Worker) at ${verifiedMs} ms`);
    assert.match(await text(page, "[data-testid=event-count]"), /^19836 /);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

/**
 * A stand-in for a running roomdag Worker: the static build plus the
 * read-only inspector API (`/_roomdag/rooms…`), answered by the engines the way
 * worker/src/index.ts answers it: `defaultRoom` as DEFAULT_ROOM gives it, and
 * 401 without `Authorization: Bearer <token>` when a token is set (a closed
 * inspector). `seen` records the Authorization header of every API request.
 */
function inspectorServer(engines, { defaultRoom, token } = {}) {
  engines = [engines].flat();
  const seen = [];
  const dist = join(root, "www", "dist");
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };
  const srv = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const json = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname.startsWith("/_roomdag/")) {
      seen.push(req.headers.authorization ?? null);
      if (token && req.headers.authorization !== `Bearer ${token}`) {
        return json(401, { errcode: "M_UNAUTHORIZED", error: "inspector API: bearer ADMIN_TOKEN required (or INSPECTOR=open)" });
      }
      const parts = url.pathname.split("/").slice(2).map(decodeURIComponent);
      if (parts[0] === "rooms" && parts.length === 1) {
        return json(200, { rooms: engines.map((e) => ({ roomId: e.roomId, roomVersion: e.roomVersion, eventCount: e.eventCount })), defaultRoom });
      }
      const engine = engines.find((e) => e.roomId === parts[1]);
      if (parts[0] !== "rooms" || !engine) return json(404, { errcode: "M_NOT_FOUND", error: "unknown room" });
      try {
        if (parts[2] === "graph") return json(200, engine.exportGraph());
        if (parts[2] === "state") return json(200, engine.currentState());
        if (parts[2] === "events" && parts[3]) return json(200, engine.eventDetails(parts[3]));
      } catch (e) {
        return json(404, { errcode: "M_NOT_FOUND", error: String(e.message) });
      }
      return json(404, { errcode: "M_UNRECOGNIZED", error: "unknown inspector endpoint" });
    }
    const file = join(dist, url.pathname === "/" ? "index.html" : url.pathname);
    if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) return res.writeHead(404).end("not found");
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${srv.address().port}`, seen, close: () => srv.close() })));
}

test("a room from a roomdag server's inspector API (#room=…), then saved to the browser", async () => {
  const api = await import(join(root, "pkg", "node.js"));
  const engine = api.roomFromFixture(readFixtureFile("v12-forky-1k"));
  const graph = engine.exportGraph();
  const expected = JSON.parse(readFixtureFile("v12-forky-1k.expected").toString("utf8"));
  const want = expected.events.find((e, k) => k > 500 && e.status === "accepted" && e.state_before !== e.state_after);
  const remote = await inspectorServer(engine);
  const context = await browser.newContext({ viewport: { width: 1500, height: 900 } });
  const { page, errors } = await openPage(context);
  try {
    await page.goto(`${remote.url}/#room=${encodeURIComponent(engine.roomId)}`);
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), new RegExp(`^${graph.events.length} `));
    assert.match(await text(page, "#server-room-list"), new RegExp(`${graph.events.length} events`));
    await page.fill("#jump-input", want.event_id);
    await page.press("#jump-input", "Enter");
    await page.waitForFunction((id) => document.querySelector(".event-head .id")?.textContent.startsWith(id), want.event_id);
    assert.equal((await text(page, "[data-testid=state-before]")).trim(), want.state_before);
    await page.click("#resolve-current");
    await page.waitForSelector("[data-testid=current-digest]");
    assert.equal((await text(page, "[data-testid=current-digest]")).trim(), expected.current_state_digest);
    // Federation queries need a local engine: said plainly.
    await page.click("text=/backfill from here");
    await page.waitForFunction(() => /need the engine in this page/.test(document.querySelector(".history-out").textContent));
    // Saved from the server into IndexedDB, then opened locally (with the engine's own checks).
    await page.click("#save-button");
    await page.waitForFunction(() => /^Saved /.test(document.querySelector("#status").textContent), null, { timeout: 120_000 });
    await page.goto(`${remote.url}/?saved=${encodeURIComponent(engine.roomId)}`);
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), new RegExp(`^${graph.events.length} `));
    await page.click("text=/backfill from here");
    await page.waitForSelector(".answer-list li");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    remote.close();
  }
});

test("the first screen: no room in the address opens the server's default room, else its only room, else a list to pick from", async () => {
  const api = await import(join(root, "pkg", "node.js"));
  const forky = api.roomFromFixture(readFixtureFile("v12-forky-1k"));
  const linear = api.roomFromFixture(readFixtureFile("v10-linear-200"));
  const count = (e) => new RegExp(`^${e.exportGraph().events.length} `);
  const context = await browser.newContext({ viewport: { width: 1300, height: 800 } });
  const { page, errors } = await openPage(context);
  const servers = [];
  try {
    // DEFAULT_ROOM names the second of two rooms.
    const withDefault = await inspectorServer([linear, forky], { defaultRoom: forky.roomId });
    servers.push(withDefault);
    await page.goto(`${withDefault.url}/`);
    await waitState(page, "verified");
    assert.equal(await page.evaluate(() => document.querySelector("#graph canvas") !== null), true, "a graph is drawn");
    assert.match(await text(page, "[data-testid=event-count]"), count(forky));
    assert.equal(new URL(page.url()).hash, `#room=${encodeURIComponent(forky.roomId)}`, "the address now names the room");

    // No default, one room: that room.
    const single = await inspectorServer(linear);
    servers.push(single);
    await page.goto(`${single.url}/`);
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), count(linear));

    // No default, two rooms: a list to pick from; picking one draws it.
    const two = await inspectorServer([linear, forky]);
    servers.push(two);
    await page.goto(`${two.url}/`);
    await page.waitForSelector("#banner button");
    assert.match(await text(page, "#status"), /2 rooms on this server: pick one/);
    assert.equal(await stateOf(page), "empty");
    await page.click(`#banner button[title="${forky.roomId}"]`);
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), count(forky));
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    for (const s of servers) s.close();
  }
});

test("a closed inspector API: the page asks for the token, keeps it for the tab, then draws the room", async () => {
  const api = await import(join(root, "pkg", "node.js"));
  const engine = api.roomFromFixture(readFixtureFile("v10-linear-200"));
  const token = "inspector-token-0123456789";
  const remote = await inspectorServer(engine, { defaultRoom: engine.roomId, token });
  const context = await browser.newContext({ viewport: { width: 1300, height: 800 } });
  const { page, errors } = await openPage(context);
  try {
    await page.goto(`${remote.url}/`);
    await page.waitForSelector("#token-input");
    assert.equal(await stateOf(page), "token");
    assert.match(await text(page, "#status"), /needs a token/);
    // A wrong token: refused, asked again.
    await page.fill("#token-input", "wrong-token-000000000");
    await page.press("#token-input", "Enter");
    await page.waitForFunction(() => /refused/.test(document.querySelector("#status").textContent) && document.querySelector("#token-input"));
    // The right one: the graph.
    await page.fill("#token-input", token);
    await page.click("#token-form button[type=submit]");
    await waitState(page, "verified");
    assert.match(await text(page, "[data-testid=event-count]"), new RegExp(`^${engine.exportGraph().events.length} `));
    assert.equal(await page.evaluate(() => sessionStorage.getItem("roomdag-www:inspector-token")), token);
    assert.ok(remote.seen.includes(`Bearer ${token}`), "the token is sent as Authorization: Bearer");
    // Event details go through the same token.
    await page.focus("#graph");
    await page.keyboard.press("Home");
    await page.waitForSelector("[data-testid=state-after]");
    // A reload in the same tab asks no more.
    await page.reload();
    await waitState(page, "verified");
    assert.equal(await page.locator("#token-input").count(), 0);
    // Errors the page logged: only the browser's own lines for the refused requests.
    assert.deepEqual(errors.filter((e) => !/status of 401/.test(e)), []);
  } finally {
    await context.close();
    remote.close();
  }
});

test("the static build ships a quiet room list for the inspector probe", () => {
  const body = JSON.parse(readFileSync(join(root, "www", "dist", "_roomdag", "rooms"), "utf8"));
  assert.deepEqual(body.rooms, []);
  assert.ok(statSync(join(root, "www", "dist", "roomdag_wasm_bg.wasm")).size > 100_000);
});
