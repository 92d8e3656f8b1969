// The public KeyRing: the core's key ring (a wasm-bindgen class) with its
// arguments checked and the not-initialised guard. A subclass, so an instance
// is what the core's functions expect wherever they take a key ring.
import { wasm, call, ensureReady, toText } from "./common.js";
import * as check from "./check.js";

/**
 * Trusted server signing keys: pinned ones, and fetched ones that were
 * verified (`addServerKeys`, `addNotaryKeys`). Free it with `free()` when a
 * long-lived process drops it (the memory is in the wasm heap).
 */
export class KeyRing extends wasm.KeyRing {
  /** A brand every copy of roomdag shares, to tell "a ring of another copy" from "not a ring". */
  static [Symbol.for("roomdag.KeyRing")] = true;

  constructor() {
    ensureReady();
    super();
  }

  /** Number of keys held. */
  get size() {
    check.live("KeyRing.size", this);
    return super.size;
  }

  /** Releases the ring's memory (in the wasm heap); the ring cannot be used afterwards. */
  free() {
    this[check.FREED] = true;
    super.free();
  }

  /** Pins `server`'s public key `keyId` (unpadded base64). */
  pin(server, keyId, publicKey) {
    const where = "KeyRing.pin";
    check.live(where, this);
    check.name(where, "server", server);
    check.name(where, "keyId", keyId);
    check.string(where, "publicKey", publicKey, typeof publicKey?.key === "string" ? 'Pass the key itself (its "key" field), not the {key} object of a key response' : undefined);
    call(`${where}: publicKey`, "M_INVALID_PARAM", () => super.pin(server, keyId, publicKey));
  }

  /** Verifies a `/_matrix/key/v2/server` response of `server` and adds its keys; returns how many. */
  addServerKeys(response, server, nowMs) {
    const where = "KeyRing.addServerKeys";
    check.live(where, this);
    const text = keyResponse(where, response);
    check.name(where, "server", server);
    check.number(where, "nowMs", nowMs);
    return call(`${where}: response`, "M_UNAUTHORIZED", () => super.addServerKeys(text, server, nowMs));
  }

  /**
   * Verifies a notary's `/_matrix/key/v2/query` response and adds its keys:
   * the notary's signature is checked only with `notaryKeysJson` (JSON
   * `{keyId: base64}`, the keys configured for that notary), and only the
   * servers `asked` about are taken. Returns how many keys were added.
   */
  addNotaryKeys(response, notary, notaryKeysJson, asked, nowMs) {
    const where = "KeyRing.addNotaryKeys";
    check.live(where, this);
    const text = keyResponse(where, response);
    check.name(where, "notary", notary);
    check.string(where, "notaryKeysJson", notaryKeysJson);
    check.stringArray(where, "asked", asked);
    check.number(where, "nowMs", nowMs);
    return call(`${where}: response`, "M_UNAUTHORIZED", () => super.addNotaryKeys(text, notary, notaryKeysJson, asked, nowMs));
  }

  /** The keys of `servers` as JSON, for `importKeys` on another ring. */
  exportKeys(servers) {
    check.live("KeyRing.exportKeys", this);
    check.stringArray("KeyRing.exportKeys", "servers", servers);
    return super.exportKeys(servers);
  }

  /** Adds keys another ring exported (verified there); returns how many. */
  importKeys(keysJson) {
    check.live("KeyRing.importKeys", this);
    check.string("KeyRing.importKeys", "keysJson", keysJson);
    return call("KeyRing.importKeys: keysJson", "M_BAD_JSON", () => super.importKeys(keysJson));
  }

  /** Whether a key of `server` usable to authenticate a request at `nowMs` is known. */
  hasRequestKey(server, keyId, nowMs) {
    const where = "KeyRing.hasRequestKey";
    check.live(where, this);
    check.string(where, "server", server);
    check.string(where, "keyId", keyId);
    check.number(where, "nowMs", nowMs);
    ensureReady();
    return super.hasRequestKey(server, keyId, nowMs);
  }
}

function keyResponse(where, response) {
  if (typeof response !== "string") check.object(where, "response", response, "a key response (JSON text or the parsed object)");
  return toText(response);
}
