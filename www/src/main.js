// The visualizer's page: wires sources, the engine, the graph and the panels.
//
// Loading a file draws the room at once from its PDUs (every event "not yet
// verified", lanes from the JS port of the engine's layout), while the wasm
// engine verifies it in a Web Worker; the verified graph, with the engine's
// own layout, then replaces it in place.
import { GraphView } from "./graph.js";
import { RoomModel, graphFromPdus, serverOf } from "./model.js";
import { LocalEngine, RemoteRoom, inspectorToken, setInspectorToken } from "./engine-client.js";
import { bytesOf, fetchBytes, parseRoomFile, fixtureOf, savedRooms, rememberSaved, deleteSaved } from "./sources.js";
import { h, evLink, eventPanel, historyAnswer, roomPanel, currentStatePanel } from "./panels.js";
import { toSvg, download, stemOf } from "./export.js";

const $ = (id) => document.getElementById(id);

const app = {
  model: null,
  /** LocalEngine (verified rooms) or RemoteRoom (a server's inspector API); null while unverified. */
  engine: null,
  local: new LocalEngine(),
  cursor: -1,
  detailsToken: 0,
  loadToken: 0,
  /** PDUs by event ID while a room is drawn unverified (for its JSON panel). */
  rawPdus: null,
  /** Loose PDUs waiting for a "trust signatures" decision. */
  pendingPdus: null,
  origins: [],
  filter: null,
  timing: { firstRenderMs: null, verifiedMs: null },
};
window.__roomdag = app.timing;

/** WebGL 2, and whether it runs on a real GPU (software WebGL starts slower than the canvas renderer draws a window). */
const webgl = (() => {
  try {
    const gl = document.createElement("canvas").getContext("webgl2");
    if (!gl) return { available: false, hardware: false };
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return { available: true, hardware: !/swiftshader|llvmpipe|software|softpipe/i.test(renderer), renderer };
  } catch {
    return { available: false, hardware: false };
  }
})();

const graph = new GraphView($("graph"), {
  onSelect: (i) => select(i),
  onFirstRender: () => {
    if (app.timing.firstRenderMs === null) {
      app.timing.firstRenderMs = Math.round(performance.now());
      performance.mark("roomdag:first-render");
    }
    document.body.dataset.drawn = "true";
  },
});
/** For tests and debugging: where an event's node is on the page (null when not drawn). */
app.timing.nodePosition = (eventId) => {
  const i = app.model?.idx.get(eventId);
  const node = i === undefined ? null : graph.cy.getElementById(`e${i}`);
  if (!node || node.empty()) return null;
  const rp = node.renderedPosition();
  const box = $("graph").getBoundingClientRect();
  return { x: box.left + rp.x, y: box.top + rp.y, drawn: graph.cy.nodes().length };
};
app.timing.graphStats = () => ({ ...graph.stats });
graph.onResolutionsNeeded = async (idxs) => {
  const engine = app.engine;
  const model = app.model;
  if (!engine || !model?.verified) return [];
  const ids = idxs.map((i) => model.events[i].event_id);
  const r = await engine.resolutions(ids);
  return idxs.map((i) => [i, r[model.events[i].event_id]]);
};

// ——— status ———

function setStatus(text, { error = false } = {}) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
  if (error) document.body.dataset.state = "error";
}

function showBanner(...content) {
  const b = $("banner");
  b.replaceChildren(...content);
  b.hidden = content.length === 0;
}

function fail(e, what) {
  if (e?.superseded) return;
  console.warn(`${what}:`, e);
  setStatus(`${what}: ${e?.message ?? e}`, { error: true });
}

// ——— loading ———

/** Shows a room model (keeping the selected event when it is still there). */
function show(model) {
  const keep = app.cursor >= 0 && app.model ? app.model.events[app.cursor]?.event_id : undefined;
  app.model = model;
  model.setRows($("rows-select").value);
  graph.cursor = -1;
  graph.setModel(model, { focusEvent: keep });
  app.cursor = -1;
  const i = keep !== undefined && model.idx.has(keep) ? model.idx.get(keep) : model.n - 1;
  const scrub = $("scrubber");
  scrub.min = String(model.minRow);
  scrub.max = String(model.maxRow);
  scrub.disabled = false;
  fillFilters(model);
  renderRoomPanel();
  for (const id of ["export-png", "export-svg", "export-graph"]) $(id).disabled = false;
  $("export-ndjson").disabled = !model.verified && !app.rawPdus;
  $("export-dot").disabled = !(model.verified && app.engine === app.local);
  $("save-button").disabled = !model.verified || model.source === "saved";
  select(i, { reveal: false });
  document.body.dataset.state = model.verified ? "verified" : "drawn";
}

function chooseRenderer(n) {
  const pick = $("renderer-select").value;
  // auto: WebGL for big rooms on a real GPU; the window keeps the element count small enough for canvas otherwise.
  graph.setWebgl(pick === "webgl" ? webgl.available : pick === "auto" ? webgl.hardware && n > 5000 : false);
}

/** A new load supersedes any running one; `data-state` says "loading" until it is drawn or verified. */
function beginLoad() {
  document.body.dataset.state = "loading";
  return ++app.loadToken;
}

/** A file's bytes: a fixture, or loose PDUs. */
async function loadBytes(bytes, title, source) {
  const token = beginLoad();
  setStatus(`Reading ${title}…`);
  const parsed = parseRoomFile(bytes);
  performance.mark("roomdag:parsed");
  if (parsed.kind === "fixture") return loadFixture(parsed.fixture, bytes, title, source, token);
  return loadPdus(parsed, title, source, token);
}

async function loadFixture(fixture, bytes, title, source, token) {
  const entries = fixture.events.map((e) => ({ eventId: e.event_id, pdu: e.pdu }));
  app.engine = null;
  app.rawPdus = new Map(entries.map((e) => [e.eventId, e.pdu]));
  app.origins = Object.keys(fixture.servers ?? {}).sort();
  showBanner();
  chooseRenderer(entries.length);
  const model = new RoomModel(graphFromPdus(entries, { roomId: fixture.room_id, roomVersion: fixture.room_version }), { verified: false, source, title });
  performance.mark("roomdag:model");
  show(model);
  performance.mark("roomdag:shown");
  setStatus(`${title}: ${entries.length} events drawn; verifying signatures, hashes, auth rules and state with the engine…`);
  // Let the first picture reach the screen before the engine competes for the CPU.
  await nextPaint();
  const t = performance.now();
  const r = await app.local.load("loadFixture", { bytes: bytes.buffer }, { transfer: [bytes.buffer] });
  if (token !== app.loadToken) return;
  await verified(r, title, source, t);
}

async function verified(r, title, source, t0) {
  app.engine = app.local;
  app.rawPdus = null;
  const t1 = performance.now();
  const model = new RoomModel(r.graph, { layouts: r.layouts, verified: true, source, title });
  show(model);
  app.timing.verifiedMs = Math.round(performance.now());
  app.timing.swapMs = Math.round(performance.now() - t1);
  const took = ((performance.now() - t0) / 1000).toFixed(1);
  setStatus(`${title}: ${model.n} events verified in ${took} s (${model.graph.dropped_total} dropped). Click an event, or step with ← →.`);
  document.body.dataset.state = "verified";
  // Servers that can ask the engine (for dates and history): those in the room now.
  try {
    const cs = await app.engine.currentState();
    const joined = model.joinedServers(cs.state);
    if (joined.length) setOrigins(joined);
  } catch {
    /* keep the fixture's servers */
  }
}

async function loadPdus(parsed, title, source, token) {
  setStatus(`${title}: computing event IDs of ${parsed.pdus.length} PDUs…`);
  const prep = await app.local.call("prepare", { pdus: parsed.pdus });
  if (token !== app.loadToken) return;
  const entries = parsed.pdus.map((p, k) => ({ eventId: prep.ids[k], pdu: JSON.parse(p) }));
  app.engine = null;
  app.rawPdus = new Map(entries.map((e) => [e.eventId, e.pdu]));
  app.origins = [...new Set(entries.map((e) => serverOf(e.pdu.sender)).filter(Boolean))].sort();
  chooseRenderer(entries.length);
  show(new RoomModel(graphFromPdus(entries, prep), { verified: false, source, title }));
  if (parsed.keys && Object.keys(parsed.keys).length) {
    setStatus(`${title}: verifying with the keys in the file…`);
    const fixture = fixtureOf({ pdus: parsed.pdus, ids: prep.ids, roomVersion: prep.roomVersion, roomId: prep.roomId, keys: parsed.keys });
    const bytes = new TextEncoder().encode(JSON.stringify(fixture));
    const t = performance.now();
    const r = await app.local.load("loadFixture", { bytes: bytes.buffer }, { transfer: [bytes.buffer] });
    if (token !== app.loadToken) return;
    return verified(r, title, source, t);
  }
  app.pendingPdus = { pdus: parsed.pdus, ids: prep.ids, roomVersion: prep.roomVersion, title, source };
  setStatus(`${title}: ${entries.length} PDUs drawn, NOT verified.`);
  showBanner(
    h("strong", {}, "No signing keys in this file. "),
    "The graph is drawn from the PDUs as they are: nothing is checked, and state is unknown. ",
    "Trusting the signatures runs every other check (hashes, event IDs, auth rules, state resolution). ",
    "Or add a line ",
    h("code", {}, '{"trusted_keys": {"server": {"ed25519:1": "…"}}}'),
    " to the file to verify signatures too.",
    h("button", { type: "button", id: "trust-button", onclick: () => trustPending() }, "Trust signatures and check the rest"),
  );
}

async function trustPending() {
  const p = app.pendingPdus;
  if (!p) return;
  const token = beginLoad();
  showBanner();
  setStatus(`${p.title}: replaying ${p.pdus.length} PDUs with trusted signatures…`);
  try {
    const t = performance.now();
    const r = await app.local.load("loadTrusted", { pdus: p.pdus, ids: p.ids, roomVersion: p.roomVersion }, {
      onProgress: (x) => setStatus(`${p.title}: ${x.what}…`),
    });
    if (token !== app.loadToken) return;
    app.pendingPdus = null;
    await verified(r, `${p.title} (signatures trusted)`, p.source, t);
  } catch (e) {
    fail(e, "Trusted replay failed");
  }
}

async function loadFile(file) {
  document.body.dataset.state = "loading";
  try {
    await loadBytes(await bytesOf(file), file.name, "file");
  } catch (e) {
    fail(e, `Could not load ${file.name}`);
  }
}

async function loadUrl(url) {
  try {
    setStatus(`Fetching ${url}…`);
    const bytes = await fetchBytes(url);
    performance.mark("roomdag:fetched");
    await loadBytes(bytes, url.split("/").pop() || url, "url");
  } catch (e) {
    fail(e, `Could not load ${url}`);
  }
}

async function openSaved(roomId) {
  const token = beginLoad();
  try {
    setStatus(`Opening ${roomId} from this browser's store…`);
    app.engine = null;
    app.rawPdus = null;
    showBanner();
    const t = performance.now();
    const r = await app.local.load("openSaved", { roomId });
    if (token !== app.loadToken) return;
    chooseRenderer(r.graph.events.length);
    app.origins = [];
    await verified(r, `${roomId} (saved in this browser)`, "saved", t);
  } catch (e) {
    fail(e, `Could not open ${roomId}`);
  }
}

async function openRemote(roomId) {
  const token = beginLoad();
  try {
    setStatus(`Fetching ${roomId} from the server…`);
    showBanner();
    const remote = new RemoteRoom(roomId);
    const g = await remote.graph();
    if (token !== app.loadToken) return;
    app.engine = remote;
    app.rawPdus = null;
    app.origins = [...new Set(g.events.map((e) => serverOf(e.sender)).filter(Boolean))].sort();
    chooseRenderer(g.events.length);
    show(new RoomModel(g, { verified: true, source: "server", title: `${roomId} (this server)` }));
    app.timing.verifiedMs = Math.round(performance.now());
    setStatus(`${roomId}: ${g.events.length} events from the server's inspector API (read-only).`);
    if (location.hash !== `#room=${encodeURIComponent(roomId)}`) history.replaceState(null, "", `#room=${encodeURIComponent(roomId)}`);
  } catch (e) {
    if (e?.unauthorized && token === app.loadToken) askToken(() => openRemote(roomId));
    else fail(e, `Could not open ${roomId} from the server`);
  }
}

// ——— selection and details ———

function announce(i) {
  const m = app.model;
  const e = m.events[i];
  $("position").textContent = `#${i} of ${m.n}`;
  const status = e.status === "rejected" ? `rejected: ${e.rejection}` : e.status;
  $("announce").textContent = `Event #${i} of ${m.n}: ${e.type}${e.state_key ? ` (${e.state_key})` : ""} from ${e.sender}, ${status}.`;
}

async function select(i, { reveal = true } = {}) {
  const m = app.model;
  if (!m || i < 0 || i >= m.n) return;
  app.cursor = i;
  graph.answer.clear();
  graph.setCursor(i, { reveal });
  announce(i);
  const token = ++app.detailsToken;
  const e = m.events[i];
  if (!m.verified || !app.engine) {
    graph.inState.clear();
    graph.refreshClasses();
    const pdu = app.rawPdus?.get(e.event_id);
    $("event-panel").replaceChildren(
      h(
        "div",
        { class: "event-panel" },
        h("h2", {}, `Event #${i}`, h("span", { class: "type muted" }, ` ${e.type}`)),
        h("p", { class: "mono" }, e.event_id),
        h("p", {}, h("span", { class: "badge" }, "not verified"), " status, state and visibility come from the engine once the room is verified."),
        pdu ? h("pre", { class: "json", tabindex: "0" }, JSON.stringify(pdu, null, 2)) : null,
      ),
    );
    return;
  }
  try {
    const d = await app.engine.details(e.event_id);
    const prevs = d.resolution ? await Promise.all(d.prev_events.filter((id) => m.idx.has(id)).map((id) => app.engine.details(id))) : [];
    if (token !== app.detailsToken || app.model !== m) return;
    const inState = new Set();
    for (const id of Object.values(d.state_after.state)) {
      const k = m.idx.get(id);
      if (k !== undefined) inState.add(k);
    }
    graph.inState = inState;
    graph.refreshClasses();
    $("event-panel").replaceChildren(eventPanel(m, d, { servers: app.origins, onHistory: history_, prevs }));
  } catch (err) {
    if (token === app.detailsToken) $("event-panel").replaceChildren(h("p", { class: "error" }, `Details of ${e.event_id}: ${err.message}`));
  }
}

/** Steps in arrival order (through filter matches when a filter is set). */
function step(delta) {
  const m = app.model;
  if (!m) return;
  let i = app.cursor < 0 ? (delta > 0 ? -1 : m.n) : app.cursor;
  do i += delta;
  while (i >= 0 && i < m.n && app.filter && !app.filter(i));
  if (i >= 0 && i < m.n) select(i);
}

async function history_(kind, origin, eventId, limit, out) {
  const m = app.model;
  if (app.engine !== app.local) {
    out.replaceChildren(h("p", { class: "muted" }, "History queries need the engine in this page: open the room from a file or from this browser's store (the server's inspector API is read-only)."));
    return;
  }
  out.replaceChildren(h("p", { class: "muted" }, "Asking the engine…"));
  try {
    const r = await app.local.history(kind, origin, eventId, limit);
    if (app.model !== m) return;
    graph.answer = new Set();
    if (r.status === 200) for (const e of r.events) if (m.idx.has(e.eventId)) graph.answer.add(m.idx.get(e.eventId));
    graph.render();
    out.replaceChildren(historyAnswer(m, kind === "backfill" ? "/backfill" : "/get_missing_events", origin, r));
  } catch (e) {
    out.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

function renderRoomPanel() {
  const m = app.model;
  $("room-panel").replaceChildren(
    roomPanel(m, {
      dropped: m.graph.dropped,
      onResolve: async () => {
        const box = $("current-state");
        box.replaceChildren(h("p", { class: "muted" }, "Resolving…"));
        try {
          const s = await app.engine.currentState();
          if (app.model !== m) return;
          const inState = new Set();
          for (const id of Object.values(s.state)) if (m.idx.has(id)) inState.add(m.idx.get(id));
          graph.inState = inState;
          graph.refreshClasses();
          box.replaceChildren(currentStatePanel(m, s));
        } catch (e) {
          box.replaceChildren(h("p", { class: "error" }, e.message));
        }
      },
    }),
  );
}

// ——— navigation controls ———

function setOrigins(servers) {
  app.origins = servers;
  const sel = $("origin-select");
  const keep = sel.value;
  sel.replaceChildren(...servers.map((s) => h("option", { value: s }, s)));
  if (servers.includes(keep)) sel.value = keep;
  const hs = document.getElementById("history-server");
  if (hs && !hs.options.length) hs.replaceChildren(...servers.map((s) => h("option", { value: s }, s)));
}

function fillFilters(m) {
  setOrigins(app.origins.length ? app.origins : [...m.servers.keys()].sort());
  const senders = [...m.senders.entries()].sort((a, b) => b[1] - a[1]).slice(0, 500);
  $("sender-list").replaceChildren(...senders.map(([s, n]) => h("option", { value: s }, `${n} events`)));
  const types = [...m.types.entries()].sort((a, b) => b[1] - a[1]);
  $("filter-type").replaceChildren(h("option", { value: "" }, "any type"), ...types.map(([t, n]) => h("option", { value: t }, `${t} (${n})`)));
  $("filter-sender").value = "";
  applyFilter();
}

function applyFilter() {
  const m = app.model;
  const sender = $("filter-sender").value.trim().toLowerCase();
  const type = $("filter-type").value;
  app.filter = !m || (!sender && !type) ? null : (i) => (!type || m.events[i].type === type) && (!sender || m.events[i].sender.toLowerCase().includes(sender));
  graph.filter = app.filter;
  const list = $("filter-matches");
  if (!app.filter) {
    $("filter-count").textContent = "";
    list.replaceChildren();
  } else {
    const matches = [];
    for (let i = 0; i < m.n; i++) if (app.filter(i)) matches.push(i);
    $("filter-count").textContent = `${matches.length} matching events${matches.length > 300 ? " (first 300 listed)" : ""}; ← → step through them.`;
    list.replaceChildren(...matches.slice(0, 300).map((i) => h("li", {}, evLink(m, m.events[i].event_id, `#${i} ${m.events[i].type.replace(/^m\.room\./, "")} ${m.events[i].sender}`))));
  }
  if (m) graph.render();
}

function jump(text) {
  const m = app.model;
  if (!m) return;
  const t = text.trim();
  let i;
  if (/^#?\d+$/.test(t)) i = Number(t.replace("#", ""));
  else if (m.idx.has(t)) i = m.idx.get(t);
  else {
    const lower = t.toLowerCase();
    i = m.events.findIndex((e) => e.event_id.toLowerCase().startsWith(lower) || e.event_id.slice(1).toLowerCase().startsWith(lower));
  }
  if (i === undefined || i < 0 || i >= m.n) {
    setStatus(`No event ${t} in this room.`, { error: false });
    return;
  }
  select(i);
  graph.centerOn(i);
}

async function jumpToDate(value) {
  const m = app.model;
  if (!m || !value) return;
  const ts = Date.parse(value.length === 16 ? `${value}:00Z` : `${value}Z`);
  if (Number.isNaN(ts)) return;
  const origin = $("origin-select").value;
  if (app.engine === app.local && origin) {
    try {
      const r = await app.local.timestampToEvent(origin, ts, "f");
      if (r.status === 200 && m.idx.has(r.body.event_id)) {
        const i = m.idx.get(r.body.event_id);
        select(i);
        graph.centerOn(i);
        setStatus(`/timestamp_to_event as ${origin}: ${r.body.event_id} at ${new Date(r.body.origin_server_ts).toISOString()}.`);
        return;
      }
      setStatus(`/timestamp_to_event as ${origin}: ${r.status} ${r.body?.errcode ?? ""} ${r.body?.error ?? ""}`, { error: false });
      return;
    } catch (e) {
      fail(e, "Date jump failed");
      return;
    }
  }
  const i = m.nearestByTs(ts, "f");
  if (i >= 0) {
    select(i);
    graph.centerOn(i);
    setStatus(`First event sent at or after ${new Date(ts).toISOString()} (by the graph's timestamps).`);
  } else setStatus("No event at or after that date.");
}

// ——— rooms lists ———

function renderSaved() {
  const list = savedRooms();
  $("saved-room-list").replaceChildren(
    ...(list.length
      ? list.map((r) =>
          h(
            "li",
            {},
            h("button", { type: "button", title: r.roomId, onclick: () => openSaved(r.roomId) }, `${r.roomId} · v${r.roomVersion} · ${r.eventCount} events`),
            h(
              "button",
              {
                type: "button",
                class: "small",
                "aria-label": `Delete ${r.roomId} from this browser`,
                onclick: async () => {
                  await deleteSaved(r.roomId);
                  renderSaved();
                },
              },
              "Delete",
            ),
          ),
        )
      : [h("li", { class: "muted small" }, "None yet.")]),
  );
}

async function saveToBrowser() {
  const m = app.model;
  if (!m?.verified || !m.roomId) return;
  const button = $("save-button");
  button.disabled = true;
  try {
    let r;
    if (app.engine === app.local) {
      setStatus(`Saving ${m.roomId} to this browser (every PDU is checked again)…`);
      r = await app.local.call("save", { roomId: m.roomId }, { onProgress: (x) => setStatus(`Saving: ${x.done} / ${x.total} PDUs…`) });
    } else {
      const ids = m.events.map((e) => e.event_id);
      const pdus = await app.engine.pdus(ids, (x) => setStatus(`Fetching PDUs: ${x.done} / ${x.total}…`));
      const records = m.events.map((e, k) => ({ eventId: e.event_id, status: e.status, raw: JSON.stringify(pdus[k]) }));
      r = await app.local.call("saveRecords", { roomId: m.roomId, roomVersion: m.roomVersion, records });
    }
    rememberSaved({ roomId: m.roomId, roomVersion: m.roomVersion, eventCount: r.stored });
    renderSaved();
    setStatus(r.already ? `${m.roomId} was already saved in this browser (${r.stored} events).` : `Saved ${m.roomId}: ${r.stored} events in this browser's IndexedDB.`);
  } catch (e) {
    fail(e, "Save failed");
  } finally {
    button.disabled = false;
  }
}

/** The server's room list (`{rooms, defaultRoom?, unauthorized?}`), shown under "On this server"; undefined without a server. */
async function probeServer() {
  try {
    const listing = await RemoteRoom.list();
    const rooms = listing.rooms ?? [];
    $("server-rooms").hidden = rooms.length === 0;
    $("server-room-list").replaceChildren(...rooms.map((r) => h("li", {}, roomButton(r))));
    return listing;
  } catch {
    return undefined;
  }
}

function roomButton(r) {
  return h("button", { type: "button", title: r.roomId, onclick: () => openRemote(r.roomId) }, `${r.roomId} · v${r.roomVersion} · ${r.eventCount} events`);
}

/**
 * The first screen: the room the address names, else the server's default
 * room (npm start: the demo room), else its only room, else its rooms to pick
 * from. A closed inspector API first asks for the token.
 */
async function openFromServer(wantRoom) {
  const listing = await probeServer();
  if (listing?.unauthorized) {
    askToken(() => openFromServer(wantRoom));
    return;
  }
  const rooms = listing?.rooms ?? [];
  if (wantRoom) {
    if (rooms.some((r) => r.roomId === wantRoom)) openRemote(wantRoom);
    else setStatus(`Room ${wantRoom} is not on this server${listing ? "" : " (no roomdag server here)"}.`, { error: !listing });
    return;
  }
  if (!rooms.length || app.loadToken > 0) return; // a static host (open a file), or the user already opened something
  const pick = rooms.find((r) => r.roomId === listing.defaultRoom) ?? (rooms.length === 1 ? rooms[0] : undefined);
  if (pick) {
    openRemote(pick.roomId);
    return;
  }
  setStatus(`${rooms.length} rooms on this server: pick one.`);
  showBanner(h("strong", {}, "Rooms on this server: "), ...rooms.slice(0, 20).map(roomButton));
}

/** A small form for the inspector API's token (kept in sessionStorage, sent as `Authorization: Bearer`). */
function askToken(retry) {
  const refused = Boolean(inspectorToken());
  document.body.dataset.state = "token";
  setStatus(refused ? "The server refused that token." : "This server's inspector API needs a token.", { error: refused });
  const input = h("input", { id: "token-input", type: "password", autocomplete: "off", spellcheck: "false", required: "", "aria-describedby": "token-help" });
  const form = h(
    "form",
    {
      id: "token-form",
      class: "row",
      onsubmit: (ev) => {
        ev.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        setInspectorToken(t);
        showBanner();
        setStatus("Trying the token…");
        retry();
      },
    },
    h("label", { for: "token-input" }, refused ? "Token refused; try again: " : "Token: "),
    input,
    h("button", { type: "submit" }, "Open"),
  );
  showBanner(
    form,
    h("p", { id: "token-help", class: "small" }, "The server's ADMIN_TOKEN (under ", h("code", {}, "npm start"), ": ", h("code", {}, "adminToken"), " in ", h("code", {}, ".roomdag/config.json"), "). It is kept in this tab only."),
  );
  input.focus();
}

// ——— exports ———

async function exportNdjson() {
  const m = app.model;
  try {
    let text;
    if (!m.verified && app.rawPdus) text = m.events.map((e) => JSON.stringify(app.rawPdus.get(e.event_id))).join("\n") + "\n";
    else if (app.engine === app.local) text = await app.local.ndjson();
    else text = await app.engine.ndjson(m.events.map((e) => e.event_id), (x) => setStatus(`Fetching PDUs: ${x.done} / ${x.total}…`));
    download(text, `${stemOf(m.roomId)}.ndjson`, "application/x-ndjson");
    setStatus(`Exported ${m.n} PDUs as NDJSON.`);
  } catch (e) {
    fail(e, "NDJSON export failed");
  }
}

// ——— wiring ———

function wire() {
  $("file-input").addEventListener("change", (ev) => {
    const f = ev.target.files?.[0];
    if (f) loadFile(f);
    ev.target.value = "";
  });
  $("url-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const u = $("url-input").value.trim();
    if (u) loadUrl(u);
  });
  // Drag and drop anywhere.
  let depth = 0;
  const hint = $("drop-hint");
  document.addEventListener("dragenter", (ev) => {
    if (!ev.dataTransfer?.types.includes("Files")) return;
    depth++;
    hint.hidden = false;
  });
  document.addEventListener("dragleave", () => {
    if (--depth <= 0) {
      depth = 0;
      hint.hidden = true;
    }
  });
  document.addEventListener("dragover", (ev) => ev.preventDefault());
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    depth = 0;
    hint.hidden = true;
    const f = ev.dataTransfer?.files?.[0];
    if (f) loadFile(f);
  });

  $("save-button").addEventListener("click", saveToBrowser);
  $("first-button").addEventListener("click", () => app.model && select(0));
  $("last-button").addEventListener("click", () => app.model && select(app.model.n - 1));
  $("prev-button").addEventListener("click", () => step(-1));
  $("next-button").addEventListener("click", () => step(1));
  $("jump-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    jump($("jump-input").value);
  });
  $("date-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    jumpToDate($("date-input").value);
  });
  $("filter-sender").addEventListener("input", debounce(applyFilter, 200));
  $("filter-type").addEventListener("change", applyFilter);

  $("rows-select").addEventListener("change", (ev) => {
    if (!app.model) return;
    graph.setRows(ev.target.value);
    $("scrubber").min = String(app.model.minRow);
    $("scrubber").max = String(app.model.maxRow);
  });
  $("auth-select").addEventListener("change", (ev) => {
    graph.authEdges = ev.target.value;
    graph.render();
  });
  $("redacts-check").addEventListener("change", (ev) => {
    graph.redactsEdges = ev.target.checked;
    graph.render();
  });
  $("collapse-check").addEventListener("change", (ev) => {
    graph.collapse = ev.target.checked;
    graph.expanded.clear();
    graph.render();
  });
  $("fade-check").addEventListener("change", (ev) => {
    graph.fadeFuture = ev.target.checked;
    graph.refreshClasses();
  });
  $("renderer-select").addEventListener("change", () => app.model && chooseRenderer(app.model.n));
  $("zoom-in").addEventListener("click", () => graph.zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => graph.zoomBy(0.8));
  $("fit-button").addEventListener("click", () => graph.fitWindow());

  const scrub = $("scrubber");
  scrub.addEventListener("input", () => app.model && graph.scrollToRow(Number(scrub.value)));
  graph.cy.on("viewport", throttle(() => {
    if (!app.model || document.activeElement === scrub) return;
    const { top, bottom } = graph.viewRows();
    scrub.value = String((top + bottom) >> 1);
  }, 150));

  $("export-png").addEventListener("click", async () => download(await graph.png(), `${stemOf(app.model.roomId)}.png`));
  $("export-svg").addEventListener("click", () => download(toSvg(graph.snapshot(), app.model.title), `${stemOf(app.model.roomId)}.svg`, "image/svg+xml"));
  $("export-ndjson").addEventListener("click", exportNdjson);
  $("export-dot").addEventListener("click", async () => download(await app.local.dot(graph.authEdges !== "none"), `${stemOf(app.model.roomId)}.dot`, "text/vnd.graphviz"));
  $("export-graph").addEventListener("click", () => download(JSON.stringify(app.model.graph), `${stemOf(app.model.roomId)}.graph.json`, "application/json"));

  // Event links anywhere in the panels.
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest?.("button.ev");
    if (!b || !app.model) return;
    const i = app.model.idx.get(b.dataset.event);
    if (i !== undefined) {
      select(i);
      graph.centerOn(i);
    }
  });

  const help = $("help-dialog");
  $("help-button").addEventListener("click", () => help.showModal());

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    if (help.open) return;
    const keys = {
      ArrowLeft: () => step(-1),
      ArrowRight: () => step(1),
      k: () => step(-1),
      j: () => step(1),
      Home: () => app.model && select(0),
      End: () => app.model && select(app.model.n - 1),
      "/": () => $("jump-input").focus(),
      "+": () => graph.zoomBy(1.25),
      "=": () => graph.zoomBy(1.25),
      "-": () => graph.zoomBy(0.8),
      c: () => app.cursor >= 0 && graph.centerOn(app.cursor),
      "?": () => help.showModal(),
      Enter: () => t === $("graph") && $("event-panel").focus(),
    };
    const fn = keys[ev.key];
    if (!fn) return;
    if (ev.key === "Enter" && t !== $("graph")) return;
    ev.preventDefault();
    fn();
  });
  window.addEventListener("hashchange", () => {
    const room = hashParam("room");
    if (room) openRemote(room);
  });
}

function nextPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve())));
}

function hashParam(name) {
  return new URLSearchParams(location.hash.slice(1)).get(name);
}

function debounce(fn, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

function throttle(fn, ms) {
  let last = 0;
  let t;
  return (...a) => {
    const now = Date.now();
    clearTimeout(t);
    if (now - last >= ms) {
      last = now;
      fn(...a);
    } else t = setTimeout(() => fn(...a), ms);
  };
}

// ——— start ———

wire();
renderSaved();
const params = new URLSearchParams(location.search);
if (["auto", "canvas", "webgl"].includes(params.get("renderer"))) $("renderer-select").value = params.get("renderer");
const wantRoom = hashParam("room");
if (params.get("fixture")) {
  probeServer();
  loadUrl(params.get("fixture"));
} else if (params.get("saved")) {
  probeServer();
  openSaved(params.get("saved"));
} else openFromServer(wantRoom);
