// Where a room's answers come from. Two kinds, one asynchronous interface:
//
//   LocalEngine   the wasm engine in a Web Worker (files, the browser store)
//   RemoteRoom    a running roomdag Worker's read-only inspector API
//
// Both offer: details(eventId), resolutions(eventIds), currentState(),
// and (local only) history(), timestampToEvent(), ndjson(), dot().

/** RPC to engine-worker.js. A new load while one is running restarts the worker. */
export class LocalEngine {
  #worker = null;
  #next = 1;
  #pending = new Map();
  #busyLoad = false;
  kind = "local";

  #spawn() {
    this.#worker = new Worker(new URL("./engine-worker.js", import.meta.url), { type: "module", name: "roomdag-engine" });
    this.#worker.onmessage = (ev) => {
      const { id, ok, result, error, progress } = ev.data;
      const p = this.#pending.get(id);
      if (!p) return;
      if (progress) {
        p.onProgress?.(progress);
        return;
      }
      this.#pending.delete(id);
      if (ok) p.resolve(result);
      else p.reject(new Error(error));
    };
    this.#worker.onerror = (ev) => {
      ev.preventDefault();
      const err = new Error(`engine worker failed: ${ev.message ?? "unknown error"}`);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
  }

  call(op, args, { transfer = [], onProgress } = {}) {
    if (!this.#worker) this.#spawn();
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** Starts a load (loadFixture, loadTrusted, openSaved): a running one is abandoned. */
  async load(op, args, opts) {
    if (this.#busyLoad) this.restart();
    this.#busyLoad = true;
    try {
      return await this.call(op, args, opts);
    } finally {
      this.#busyLoad = false;
    }
  }

  restart() {
    this.#worker?.terminate();
    this.#worker = null;
    const err = new Error("superseded by a newer load");
    err.superseded = true;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  details(eventId) {
    return this.call("details", { eventId });
  }
  resolutions(eventIds) {
    return this.call("resolutions", { eventIds });
  }
  currentState() {
    return this.call("currentState");
  }
  history(kind, origin, eventId, limit) {
    return this.call("history", { kind, origin, eventId, limit });
  }
  timestampToEvent(origin, ts, dir) {
    return this.call("timestampToEvent", { origin, ts, dir });
  }
  ndjson() {
    return this.call("ndjson");
  }
  dot(authEdges) {
    return this.call("dot", { authEdges });
  }
}

const enc = encodeURIComponent;

// The inspector API may be closed (the Worker answers 401 without its admin
// token): the token the user typed is kept for this tab only.
const TOKEN_KEY = "roomdag-www:inspector-token";

export function inspectorToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

export function setInspectorToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function inspectorHeaders() {
  const token = inspectorToken();
  return token ? { accept: "application/json", authorization: `Bearer ${token}` } : { accept: "application/json" };
}

/** The inspector API refused us: it needs (another) token. */
export class UnauthorizedError extends Error {
  constructor(message) {
    super(message);
    this.name = "UnauthorizedError";
    this.unauthorized = true;
  }
}

/** A room on a running roomdag Worker (same origin), through `/_roomdag/rooms/…`. */
export class RemoteRoom {
  kind = "remote";
  #cache = new Map();

  constructor(roomId, base = "") {
    this.roomId = roomId;
    this.base = base;
  }

  /**
   * The server's rooms: `{rooms, defaultRoom?}`; `{rooms: [], unauthorized: true}`
   * when the inspector API wants a token; `{rooms: [], unavailable}` when there is no API.
   */
  static async list(base = "") {
    const r = await fetch(`${base}/_roomdag/rooms`, { headers: inspectorHeaders() });
    if (r.status === 401) return { rooms: [], unauthorized: true };
    if (!r.ok) return { rooms: [], unavailable: r.status };
    const text = await r.text();
    try {
      return JSON.parse(text);
    } catch {
      return { rooms: [], unavailable: "not JSON" };
    }
  }

  async #get(path) {
    const r = await fetch(`${this.base}/_roomdag/rooms/${enc(this.roomId)}${path}`, { headers: inspectorHeaders() });
    const body = await r.json().catch(() => null);
    if (r.status === 401) throw new UnauthorizedError(body?.error ?? "the inspector API needs a token");
    if (!r.ok) throw new Error(body?.error ?? `HTTP ${r.status}`);
    return body;
  }

  graph() {
    return this.#get("/graph");
  }
  details(eventId) {
    let p = this.#cache.get(eventId);
    if (!p) {
      p = this.#get(`/events/${enc(eventId)}`);
      this.#cache.set(eventId, p);
      p.catch(() => this.#cache.delete(eventId));
    }
    return p;
  }
  async resolutions(eventIds) {
    const out = {};
    await pool(eventIds, 6, async (e) => {
      const r = (await this.details(e)).resolution;
      out[e] = r ? { keys: r.conflicted_keys.length, full: r.full_conflicted_set } : null;
    });
    return out;
  }
  currentState() {
    return this.#get("/state");
  }
  /** Every event's PDU, fetched a few at a time. */
  async pdus(eventIds, onProgress) {
    const out = new Array(eventIds.length);
    let done = 0;
    await pool(eventIds.map((e, k) => [e, k]), 8, async ([e, k]) => {
      out[k] = (await this.details(e)).pdu;
      if (++done % 100 === 0) onProgress?.({ done, total: eventIds.length, what: "fetching PDUs" });
    });
    return out;
  }
  async ndjson(eventIds, onProgress) {
    return (await this.pdus(eventIds, onProgress)).map((p) => JSON.stringify(p)).join("\n") + "\n";
  }
}

/** Runs `fn` over `items`, at most `n` at a time. */
export async function pool(items, n, fn) {
  let k = 0;
  const worker = async () => {
    while (k < items.length) await fn(items[k++]);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}
