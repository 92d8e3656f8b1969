// roomdag's JavaScript API: a thin layer over the WebAssembly core that adds
// what JS needs — asynchronous stores, the federation client and key
// fetching over `fetch`, and the
// `Request`/`Response` federation handler. No Matrix algorithm lives here:
// routing, authentication, every check and every answer come from the core.
// Every function checks its arguments (check.js) before calling the core.
import { wasm, call, ensureReady, json, toText } from "./common.js";
import * as check from "./check.js";
import { engineOver } from "./engine.js";

export { KeyRing } from "./keyring.js";
export { MemoryStore, IndexedDbStore, DurableObjectStore, sqlPages } from "./stores.js";
export { NotInitializedError, RoomdagError } from "./common.js";
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
export { FederationServer, groupPdusByRoom, STATE_CACHE, MAX_PDU_ERROR_BYTES, servingLimits, wasmMemoryBytes } from "./server.js";
export { RoomMirror, MirrorError, MemoryParking, MIRROR_LIMITS } from "./mirror.js";

/** The signing key fields every signing function takes. */
function signingKey(where, opts, serverField) {
  check.name(where, serverField, opts[serverField]);
  check.name(where, "keyId", opts.keyId);
  check.seed(where, "seed", opts.seed);
}

/** Signs a federation request as `origin`: the `Authorization` header value. */
export function signRequest(opts) {
  ensureReady();
  const where = "signRequest";
  check.object(where, "options", opts, "an object {origin, keyId, seed, destination, method, target, body?}");
  signingKey(where, opts, "origin");
  const { origin, keyId, seed, destination, method, target, body } = opts;
  check.name(where, "destination", destination);
  check.name(where, "method", method);
  check.string(where, "target", target);
  if (body !== undefined) check.pdu(where, "body", body);
  return call(`${where}: body`, "M_BAD_JSON", () =>
    wasm.signRequest(origin, keyId, seed, destination, method, target, body === undefined ? undefined : toText(body)),
  );
}

/** A server's `/_matrix/key/v2/server` answer, signed. */
export function serverKeysResponse(opts) {
  ensureReady();
  const where = "serverKeysResponse";
  check.object(where, "options", opts, "an object {serverName, keyId, seed, now?, validityMs?}");
  signingKey(where, opts, "serverName");
  const { serverName, keyId, seed, now = Date.now(), validityMs = 24 * 3600 * 1000 } = opts;
  check.number(where, "now", now);
  check.number(where, "validityMs", validityMs);
  return json(call(where, "M_INVALID_PARAM", () => wasm.serverKeysResponse(serverName, keyId, seed, now, validityMs)));
}

/** Signs a JSON object (spec "Signing JSON") as `server`; returns a signed copy. */
export function signJson(object, key) {
  ensureReady();
  const where = "signJson";
  check.object(where, "object", object, "a JSON object");
  check.object(where, "key", key, "an object {server, keyId, seed}");
  signingKey(where, key, "server");
  return json(call(`${where}: object`, "M_BAD_JSON", () => wasm.signJson(JSON.stringify(object), key.server, key.keyId, key.seed)));
}

/** The public key (unpadded base64) of a signing key seed. */
export function publicKeyOf(seed) {
  ensureReady();
  check.seed("publicKeyOf", "seed", seed);
  return call("publicKeyOf: seed", "M_INVALID_PARAM", () => wasm.publicKeyOf(seed));
}

/** Hashes and signs an event as `server`: `{eventId, pdu}` (tools and tests). */
export function signPdu(pdu, opts) {
  ensureReady();
  const where = "signPdu";
  check.pdu(where, "pdu", pdu);
  check.object(where, "options", opts, "an object {roomVersion, server, keyId, seed}");
  check.roomVersion(where, "roomVersion", opts.roomVersion);
  signingKey(where, opts, "server");
  const { roomVersion, server, keyId, seed } = opts;
  return json(call(`${where}: pdu`, "M_BAD_JSON", () => wasm.signPdu(toText(pdu), roomVersion, server, keyId, seed)));
}

/** The redacted form of a PDU (the room version's redaction algorithm). */
export function redactPdu(pdu, roomVersion) {
  ensureReady();
  check.pdu("redactPdu", "pdu", pdu);
  check.roomVersion("redactPdu", "roomVersion", roomVersion);
  return json(call("redactPdu: pdu", "M_BAD_JSON", () => wasm.redactPdu(toText(pdu), roomVersion)));
}

/** The event ID of a PDU in a room version. */
export function eventIdOf(pdu, roomVersion) {
  ensureReady();
  check.pdu("eventIdOf", "pdu", pdu);
  check.roomVersion("eventIdOf", "roomVersion", roomVersion);
  return call("eventIdOf: pdu", "M_BAD_JSON", () => wasm.pduEventId(toText(pdu), roomVersion));
}

/** Replays a fixture and answers its queries (`roomdag-answers/1` object). */
export function replayFixture(fixture, queries) {
  ensureReady();
  return json(replay("replayFixture", fixture, queries));
}

/**
 * Like `replayFixture`, returning the answers as JSON text (byte-identical to
 * the native CLI's). `verify(publicKey, message, signature)`, when given,
 * replaces the built-in ed25519 check (e.g. with the platform's crypto).
 */
export function replayFixtureText(fixture, queries, verify) {
  ensureReady();
  return replay("replayFixtureText", fixture, queries, verify);
}

function replay(where, fixture, queries, verify) {
  const f = check.jsonInput(where, "fixture", fixture);
  const q = check.jsonInput(where, "queries", queries);
  if (verify !== undefined) check.func(where, "verify", verify);
  return call(where, "M_BAD_JSON", () => wasm.replayFixture(f, q, verify));
}

/** A fixture's graph: `roomdag-graph/1` object (format "json") or DOT text. */
export function exportFixture(fixture, format = "json", authEdges = false) {
  ensureReady();
  const where = "exportFixture";
  const bytes = check.jsonInput(where, "fixture", fixture);
  if (format !== "json" && format !== "dot") throw check.typeError(where, "format", '"json" or "dot"', format);
  check.boolean(where, "authEdges", authEdges);
  const out = call(where, "M_BAD_JSON", () => wasm.exportFixture(bytes, format, authEdges));
  return format === "json" ? json(out) : out;
}

/** Most events `demoRoom` builds (a demo room is for looking at). */
const DEMO_ROOM_MAX_EVENTS = 10_000;

/** A synthetic demo room (a `matrix-dag-oracle/1` fixture object) of about `events` events. */
export function demoRoom(events = 200) {
  ensureReady();
  check.integer("demoRoom", "events", events, 1, DEMO_ROOM_MAX_EVENTS);
  return json(call("demoRoom: events", "M_INVALID_PARAM", () => wasm.demoRoom(events)));
}

/** A read-only room built from a fixture, for inspection. */
export function roomFromFixture(fixture) {
  ensureReady();
  const bytes = check.jsonInput("roomFromFixture", "fixture", fixture);
  const room = call("roomFromFixture", "M_BAD_JSON", () => wasm.roomFromFixture(bytes));
  return engineOver(room, { load: async () => ({ records: [] }), append: async () => {} });
}
