// The page's view of a room: a `roomdag-graph/1` Graph plus indexes built once
// in O(n) (children, rows, senders) so that stepping, windowing and filtering
// never walk the whole room.
import { laneLayout, lowerBound } from "./layout.js";

export class RoomModel {
  /**
   * @param {import("roomdag").Graph} graph
   * @param {object} o
   * @param {{depth?: Uint32Array, arrival?: Uint32Array}} [o.layouts] cells from the wasm engine
   * @param {boolean} o.verified  whether the graph comes from the engine (else: drawn from unchecked PDUs)
   * @param {string} o.source  "file", "url", "saved", "server", "ndjson"
   * @param {string} o.title
   */
  constructor(graph, { layouts = {}, verified, source, title }) {
    this.graph = graph;
    this.events = graph.events;
    this.n = graph.events.length;
    this.roomId = graph.room_id;
    this.roomVersion = graph.room_version;
    this.verified = verified;
    this.source = source;
    this.title = title;
    this.layouts = { ...layouts };
    this.layoutFrom = { depth: layouts.depth ? "wasm" : "js", arrival: layouts.arrival ? "wasm" : "js" };
    const n = this.n;
    this.idx = new Map();
    for (let i = 0; i < n; i++) this.idx.set(this.events[i].event_id, i);
    // Children in CSR form.
    const count = new Uint32Array(n + 1);
    for (const e of this.events) for (const p of e.prev) count[p + 1]++;
    for (let i = 0; i < n; i++) count[i + 1] += count[i];
    this.childStart = count;
    this.childList = new Uint32Array(count[n]);
    const fill = count.slice(0, n);
    for (let i = 0; i < n; i++) for (const p of this.events[i].prev) this.childList[fill[p]++] = i;
    this.extremities = new Set(graph.forward_extremities ?? []);
    // Who and what, for filters and for picking an origin server.
    this.senders = new Map();
    this.types = new Map();
    this.servers = new Map();
    for (const e of this.events) {
      this.senders.set(e.sender, (this.senders.get(e.sender) ?? 0) + 1);
      this.types.set(e.type, (this.types.get(e.type) ?? 0) + 1);
      const s = serverOf(e.sender);
      if (s) this.servers.set(s, (this.servers.get(s) ?? 0) + 1);
    }
    this.setRows("depth");
  }

  children(i) {
    return this.childList.subarray(this.childStart[i], this.childStart[i + 1]);
  }
  prev(i) {
    return this.events[i].prev;
  }

  /** Rows by "depth" or "arrival"; the layout is computed once per mode. */
  setRows(mode) {
    this.rows = mode;
    const cells = (this.layouts[mode] ??= laneLayout(this.events, mode));
    const n = this.n;
    this.lane = new Uint32Array(n);
    this.row = new Uint32Array(n);
    let maxLane = 0;
    let minRow = Infinity;
    let maxRow = 0;
    for (let i = 0; i < n; i++) {
      const l = cells[2 * i];
      const r = cells[2 * i + 1];
      this.lane[i] = l;
      this.row[i] = r;
      if (l > maxLane) maxLane = l;
      if (r < minRow) minRow = r;
      if (r > maxRow) maxRow = r;
    }
    this.maxLane = maxLane;
    this.minRow = n ? minRow : 0;
    this.maxRow = maxRow;
    let order;
    if (mode === "arrival") order = Uint32Array.from({ length: n }, (_, i) => i);
    else {
      order = Uint32Array.from({ length: n }, (_, i) => i);
      const row = this.row;
      order.sort((a, b) => row[a] - row[b] || a - b);
    }
    this.byRow = order;
    this.sortedRows = Uint32Array.from(order, (i) => this.row[i]);
  }

  /** Events whose row is in [lo, hi], in row order. */
  inRows(lo, hi) {
    return this.byRow.subarray(lowerBound(this.sortedRows, lo), lowerBound(this.sortedRows, hi + 1));
  }

  isState(i) {
    return this.events[i].state_key !== null && this.events[i].state_key !== undefined;
  }

  /** A short label: what the event is, and who sent it. */
  label(i) {
    const e = this.events[i];
    let what = e.type.startsWith("m.room.") ? e.type.slice(7) : e.type;
    if (e.membership) what += ` ${e.membership}`;
    else if (this.isState(i) && e.state_key !== "") what += ` ${shorten(e.state_key, 18)}`;
    return `${i} ${what}\n${shorten(e.sender, 22)}`;
  }

  /** Servers with a joined member in a state (`"type\0key" → event ID`), from the graph's membership facts. */
  joinedServers(state) {
    const out = new Set();
    for (const [key, id] of Object.entries(state ?? {})) {
      if (!key.startsWith("m.room.member\u0000")) continue;
      const i = this.idx.get(id);
      if (i !== undefined && this.events[i].membership === "join") out.add(serverOf(key.slice(14)));
    }
    return [...out].filter(Boolean).sort();
  }

  /** The event at or after a timestamp, by the graph's `origin_server_ts` (no engine needed). */
  nearestByTs(ts, dir = "f") {
    let best = -1;
    for (let i = 0; i < this.n; i++) {
      const t = this.events[i].origin_server_ts;
      if (dir === "f" ? t >= ts && (best < 0 || t < this.events[best].origin_server_ts) : t <= ts && (best < 0 || t > this.events[best].origin_server_ts)) best = i;
    }
    return best;
  }
}

export function serverOf(userId) {
  const k = typeof userId === "string" ? userId.indexOf(":") : -1;
  return k >= 0 ? userId.slice(k + 1) : null;
}

export function shorten(s, max) {
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/**
 * A graph drawn from PDUs alone, before (or without) the engine's verdict:
 * every event "unverified", edges from the PDUs' own prev_events/auth_events.
 * @param {{eventId: string|null, pdu: object}[]} entries  in arrival order
 */
export function graphFromPdus(entries, { roomId = null, roomVersion = "?" } = {}) {
  const idx = new Map();
  const kept = [];
  for (const en of entries) {
    if (!en.eventId || idx.has(en.eventId) || !en.pdu || typeof en.pdu !== "object") continue;
    idx.set(en.eventId, kept.length);
    kept.push(en);
  }
  const refs = (list) => (Array.isArray(list) ? list.map((x) => idx.get(Array.isArray(x) ? x[0] : x)).filter((k) => k !== undefined) : []);
  const hasChild = new Uint8Array(kept.length);
  const events = kept.map((en, i) => {
    const p = en.pdu;
    const prev = refs(p.prev_events).filter((k) => k < i);
    for (const k of prev) hasChild[k] = 1;
    return {
      i,
      event_id: en.eventId,
      type: String(p.type ?? "?"),
      state_key: typeof p.state_key === "string" ? p.state_key : null,
      sender: String(p.sender ?? "?"),
      depth: Number(p.depth) || 0,
      origin_server_ts: Number(p.origin_server_ts) || 0,
      status: "unverified",
      rejection: null,
      redacted_on_receipt: false,
      redacted_by: null,
      membership: p.type === "m.room.member" && typeof p.content?.membership === "string" ? p.content.membership : null,
      is_redaction: p.type === "m.room.redaction",
      prev,
      auth: refs(p.auth_events).filter((k) => k < i),
    };
  });
  const forward = [];
  for (let i = 0; i < events.length; i++) if (!hasChild[i]) forward.push(i);
  return {
    format: "roomdag-graph/1",
    room_id: roomId,
    room_version: roomVersion,
    events,
    forward_extremities: forward,
    dropped: [],
    dropped_total: 0,
  };
}
