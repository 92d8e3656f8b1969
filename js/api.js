// roomdag's JavaScript API: a thin layer over the WebAssembly core that adds
// what JS needs — asynchronous stores, the federation client and key
// fetching over `fetch`, and the
// `Request`/`Response` federation handler. No Matrix algorithm lives here:
// routing, authentication, every check and every answer come from the core.
import { wasm, call, json, toText } from "./common.js";
import { RoomEngine } from "./engine.js";

export { KeyRing } from "./roomdag_wasm.js";
export { MemoryStore, IndexedDbStore, DurableObjectStore } from "./stores.js";
export { NotInitializedError, RoomdagError, markReady } from "./common.js";
export { RoomEngine, RoomDirectory, REJECTED_PER_ORIGIN } from "./engine.js";
export { KeyFetcher, pinKeys, notariesFrom, requiredSigners } from "./keys.js";
export {
  FederationClient,
  FederationRequestError,
  isValidServerName,
  serverNameError,
  dohSrvResolver,
  dohHostResolver,
  DEFAULT_TIMEOUT_MS,
  DEFAULT_MAX_RESPONSE_BYTES,
} from "./client.js";
export { FederationServer, groupPdusByRoom, STATE_CACHE, MAX_PDU_ERROR_BYTES, servingLimits } from "./server.js";
export { RoomMirror, MirrorError, MIRROR_LIMITS } from "./mirror.js";

/** Signs a federation request as `origin`: the `Authorization` header value. */
export function signRequest({ origin, keyId, seed, destination, method, target, body }) {
  return call(() => wasm.signRequest(origin, keyId, seed, destination, method, target, body === undefined ? undefined : toText(body)));
}

/** A server's `/_matrix/key/v2/server` answer, signed. */
export function serverKeysResponse({ serverName, keyId, seed, now = Date.now(), validityMs = 24 * 3600 * 1000 }) {
  return json(call(() => wasm.serverKeysResponse(serverName, keyId, seed, now, validityMs)));
}

/** Signs a JSON object (spec "Signing JSON") as `server`; returns a signed copy. */
export function signJson(object, { server, keyId, seed }) {
  return json(call(() => wasm.signJson(JSON.stringify(object), server, keyId, seed)));
}

/** The public key (unpadded base64) of a signing key seed. */
export function publicKeyOf(seed) {
  return call(() => wasm.publicKeyOf(seed));
}

/** Hashes and signs an event as `server`: `{eventId, pdu}` (tools and tests). */
export function signPdu(pdu, { roomVersion, server, keyId, seed }) {
  return json(call(() => wasm.signPdu(toText(pdu), roomVersion, server, keyId, seed)));
}

/** The redacted form of a PDU (the room version's redaction algorithm). */
export function redactPdu(pdu, roomVersion) {
  return json(call(() => wasm.redactPdu(toText(pdu), roomVersion)));
}

/** The event ID of a PDU in a room version. */
export function eventIdOf(pdu, roomVersion) {
  return call(() => wasm.pduEventId(toText(pdu), roomVersion));
}

const bytesOf = (x) => (typeof x === "string" ? new TextEncoder().encode(x) : x);

/** Replays a fixture and answers its queries (`roomdag-answers/1` object). */
export function replayFixture(fixture, queries) {
  return json(replayFixtureText(fixture, queries));
}

/**
 * Like `replayFixture`, returning the answers as JSON text (byte-identical to
 * the native CLI's). `verify(publicKey, message, signature)`, when given,
 * replaces the built-in ed25519 check (e.g. with the platform's crypto).
 */
export function replayFixtureText(fixture, queries, verify) {
  return call(() => wasm.replayFixture(bytesOf(fixture), bytesOf(queries), verify));
}

/** A fixture's graph: `roomdag-graph/1` object (format "json") or DOT text. */
export function exportFixture(fixture, format = "json", authEdges = false) {
  const bytes = typeof fixture === "string" ? new TextEncoder().encode(fixture) : fixture;
  const out = call(() => wasm.exportFixture(bytes, format, authEdges));
  return format === "json" ? json(out) : out;
}

/** A synthetic demo room (a `matrix-dag-oracle/1` fixture object) of about `events` events. */
export function demoRoom(events = 200) {
  return json(call(() => wasm.demoRoom(events)));
}

/** A read-only room built from a fixture, for inspection. */
export function roomFromFixture(fixture) {
  const bytes = typeof fixture === "string" ? new TextEncoder().encode(fixture) : fixture;
  const room = call(() => wasm.roomFromFixture(bytes));
  return new RoomEngine(room, { load: async () => ({ records: [] }), append: async () => {} });
}
