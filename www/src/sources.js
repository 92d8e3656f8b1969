// Where rooms come from: files (fixture JSON, NDJSON of PDUs, a JSON array of
// PDUs, each optionally gzipped), URLs, and the list of rooms saved in this
// browser. The Worker's inspector API is in engine-client.js (RemoteRoom).

/** Bytes of a File, Response or ArrayBuffer, gunzipped when they are gzip. */
export async function bytesOf(input) {
  let buf;
  if (input instanceof ArrayBuffer) buf = input;
  else if (typeof input.arrayBuffer === "function") buf = await input.arrayBuffer();
  else throw new Error("not a file");
  let bytes = new Uint8Array(buf);
  if (bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser cannot gunzip (no DecompressionStream)");
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  }
  return bytes;
}

/** Fetches a URL's bytes (gunzipped). */
export async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return bytesOf(r);
}

/**
 * What a file holds:
 *   {kind: "fixture", fixture, bytes}            a matrix-dag-oracle/1 room
 *   {kind: "pdus", pdus: string[], keys?}        PDUs (NDJSON, a JSON array, or TARDIS-style lines)
 * Lines or items of the form {"pdu": {...}} or {"json": "..."} are unwrapped;
 * a line {"servers": {...}} or {"trusted_keys": {...}} supplies keys.
 */
export function parseRoomFile(bytes) {
  const text = new TextDecoder().decode(bytes);
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{")) {
    // One JSON document (a fixture), or NDJSON whose first line is an object.
    let doc;
    try {
      doc = JSON.parse(text);
    } catch {
      doc = undefined;
    }
    if (doc && doc.format === "matrix-dag-oracle/1") return { kind: "fixture", fixture: doc, bytes };
    if (doc && Array.isArray(doc.events)) return pdusOf(doc.events, keysOf(doc));
    if (doc && typeof doc === "object" && doc.type) return pdusOf([doc]);
    return ndjson(text);
  }
  if (trimmed.startsWith("[")) return pdusOf(JSON.parse(text));
  throw new Error("not a room file: expected a matrix-dag-oracle/1 fixture, NDJSON of PDUs, or a JSON array of PDUs");
}

function ndjson(text) {
  const items = [];
  let keys;
  let lineNo = 0;
  for (const line of text.split("\n")) {
    lineNo++;
    const t = line.trim();
    if (!t) continue;
    let o;
    try {
      o = JSON.parse(t);
    } catch (e) {
      throw new Error(`line ${lineNo}: not JSON (${e.message})`);
    }
    const k = keysOf(o);
    if (k && !o.type) {
      keys = { ...(keys ?? {}), ...k };
      continue;
    }
    items.push(o);
  }
  return pdusOf(items, keys);
}

function keysOf(o) {
  if (o?.trusted_keys && typeof o.trusted_keys === "object") return o.trusted_keys;
  if (o?.servers && typeof o.servers === "object") {
    return Object.fromEntries(Object.entries(o.servers).map(([s, v]) => [s, v?.verify_keys ?? v]));
  }
  return undefined;
}

function pdusOf(items, keys) {
  const pdus = [];
  for (const it of items) {
    let p = it;
    if (p && typeof p.json === "string") p = JSON.parse(p.json);
    else if (p && p.pdu && typeof p.pdu === "object") p = p.pdu;
    if (!p || typeof p !== "object" || typeof p.type !== "string") continue;
    pdus.push(JSON.stringify(p));
  }
  if (!pdus.length) throw new Error("no PDUs found in the file");
  return { kind: "pdus", pdus, keys };
}

/** A matrix-dag-oracle/1 fixture from PDUs and keys (so that roomFromFixture verifies them). */
export function fixtureOf({ pdus, ids, roomVersion, roomId, keys }) {
  const servers = Object.fromEntries(Object.entries(keys).map(([s, k]) => [s, { verify_keys: k }]));
  const events = pdus.map((p, k) => {
    const pdu = JSON.parse(p);
    const origin = typeof pdu.sender === "string" ? pdu.sender.slice(pdu.sender.indexOf(":") + 1) : undefined;
    return { event_id: ids[k] ?? "", origin, pdu };
  });
  return { format: "matrix-dag-oracle/1", room_version: roomVersion, room_id: roomId, servers, events };
}

// The rooms saved in this browser: their records live in IndexedDB
// (database "roomdag-www", written by IndexedDbStore in the engine worker);
// this index of them lives in localStorage.
const INDEX_KEY = "roomdag-www:saved-rooms";

export function savedRooms() {
  try {
    const list = JSON.parse(localStorage.getItem(INDEX_KEY) ?? "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

export function rememberSaved(entry) {
  const list = savedRooms().filter((r) => r.roomId !== entry.roomId);
  list.unshift({ ...entry, savedAt: Date.now() });
  localStorage.setItem(INDEX_KEY, JSON.stringify(list));
}

/** Forgets a saved room and deletes its records (the store's documented layout: records keyed [room, i], rooms keyed room). */
export async function deleteSaved(roomId) {
  localStorage.setItem(INDEX_KEY, JSON.stringify(savedRooms().filter((r) => r.roomId !== roomId)));
  await new Promise((resolve) => {
    const req = indexedDB.open("roomdag-www");
    // Never create the database here (IndexedDbStore creates it with its object stores).
    req.onupgradeneeded = () => req.transaction.abort();
    req.onerror = (ev) => {
      ev.preventDefault();
      resolve();
    };
    req.onsuccess = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains("records") || !db.objectStoreNames.contains("rooms")) {
        db.close();
        resolve();
        return;
      }
      const tx = db.transaction(["records", "rooms"], "readwrite");
      tx.objectStore("records").delete(IDBKeyRange.bound([roomId, 0], [roomId, Number.MAX_SAFE_INTEGER]));
      tx.objectStore("rooms").delete(roomId);
      tx.oncomplete = tx.onerror = tx.onabort = () => {
        db.close();
        resolve();
      };
    };
  });
}
