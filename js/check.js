// Argument checks for the public API. Every public function checks its
// arguments here before anything reaches the wasm module (whose generated
// glue would otherwise turn a number where a string belongs into a
// "memory access out of bounds" trap). Two kinds of failure:
//   - the wrong type: `TypeError` (code "ERR_INVALID_ARG_TYPE"), naming the
//     parameter, what it must be and what it was;
//   - the right type, a bad value: `RoomdagError` "M_INVALID_PARAM" (or
//     "M_UNSUPPORTED_ROOM_VERSION"), naming the parameter.
import { wasm, RoomdagError, ensureReady } from "./common.js";

/** A short description of a value, for error messages. */
export function describe(v) {
  if (v === undefined) return "undefined";
  if (v === null) return "null";
  switch (typeof v) {
    case "string":
      return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v)}`;
    case "number":
    case "bigint":
    case "boolean":
      return `the ${typeof v} ${String(v)}`;
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
  }
  if (Array.isArray(v)) return `an array (length ${v.length})`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor?.name ?? "typed array"} (${v.byteLength} bytes)`;
  if (v instanceof ArrayBuffer) return `an ArrayBuffer (${v.byteLength} bytes)`;
  const name = v.constructor?.name;
  if (name && name !== "Object") return `a ${name}`;
  const keys = Object.keys(v);
  return keys.length === 0 ? "an empty object" : `an object {${keys.slice(0, 4).join(", ")}${keys.length > 4 ? ", …" : ""}}`;
}

/** A `TypeError` naming the parameter, what it must be and what it was. */
export function typeError(where, name, expected, value, hint) {
  const e = new TypeError(`${where}: ${name} must be ${expected}, not ${describe(value)}${hint ? `. ${hint}` : ""}`);
  e.code = "ERR_INVALID_ARG_TYPE";
  return e;
}

/** A `RoomdagError` "M_INVALID_PARAM" naming the parameter. */
export function invalid(where, name, problem) {
  return new RoomdagError("M_INVALID_PARAM", `${where}: ${name} ${problem}`);
}

export const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof ArrayBuffer);

export function string(where, name, v, hint) {
  if (typeof v !== "string") throw typeError(where, name, "a string", v, hint);
  return v;
}

export function optionalString(where, name, v) {
  return v === undefined ? v : string(where, name, v);
}

/** A non-empty string (a server name, an ID). */
export function name(where, param, v) {
  string(where, param, v);
  if (v.length === 0) throw invalid(where, param, "must not be empty");
  return v;
}

export function number(where, name, v) {
  if (typeof v !== "number" || Number.isNaN(v)) throw typeError(where, name, "a number", v);
  return v;
}

/** An integer in `[min, max]`. */
export function integer(where, name, v, min, max) {
  number(where, name, v);
  if (!Number.isInteger(v) || v < min || v > max) throw invalid(where, name, `must be an integer from ${min} to ${max}, not ${v}`);
  return v;
}

export function boolean(where, name, v) {
  if (typeof v !== "boolean") throw typeError(where, name, "a boolean", v);
  return v;
}

export function func(where, name, v) {
  if (typeof v !== "function") throw typeError(where, name, "a function", v);
  return v;
}

export function object(where, name, v, expected = "an object") {
  if (!isPlainObject(v)) throw typeError(where, name, expected, v);
  return v;
}

/** An object with these methods (a store, a room resolver, a transaction log). */
export function methods(where, name, v, names, expected) {
  if (v === null || typeof v !== "object" || names.some((m) => typeof v[m] !== "function")) {
    throw typeError(where, name, `${expected} (an object with methods ${names.join(", ")})`, v);
  }
  return v;
}

export function stringArray(where, name, v, hint) {
  if (!Array.isArray(v)) throw typeError(where, name, "an array of strings", v, hint);
  v.forEach((x, i) => string(where, `${name}[${i}]`, x));
  return v;
}

/** A PDU: its JSON text or a JSON object. */
export function pdu(where, name, v) {
  if (typeof v !== "string" && !isPlainObject(v)) throw typeError(where, name, "a PDU (a JSON object or its JSON text)", v);
  return v;
}

/** A list of PDUs. */
export function pdus(where, name, v) {
  if (!Array.isArray(v)) {
    const single = typeof v === "string" || isPlainObject(v);
    throw typeError(where, name, "an array of PDUs", v, single ? `For one PDU, pass [pdu]` : undefined);
  }
  v.forEach((x, i) => pdu(where, `${name}[${i}]`, x));
  return v;
}

let hosted;
/** The room versions the core hosts (asked once). */
export function roomVersions() {
  ensureReady();
  hosted ??= wasm.roomVersions();
  return hosted;
}

/** A room version this engine hosts: a string such as "11". */
export function roomVersion(where, name, v) {
  if (typeof v === "number") throw typeError(where, name, `a string such as "${v}"`, v);
  string(where, name, v);
  if (!roomVersions().includes(v)) {
    throw new RoomdagError("M_UNSUPPORTED_ROOM_VERSION", `${where}: ${name} ${JSON.stringify(v)} is not a room version roomdag hosts (${roomVersions().join(", ")})`);
  }
  return v;
}

/** A signing key seed: 32 bytes in unpadded base64. */
export function seed(where, name, v) {
  if (typeof v !== "string") {
    const hint =
      ArrayBuffer.isView(v) || v instanceof ArrayBuffer
        ? "Encode the 32 seed bytes as unpadded base64 (Node: Buffer.from(bytes).toString(\"base64\").replace(/=+$/, \"\"))"
        : undefined;
    throw typeError(where, name, "a signing key seed (32 bytes in unpadded base64)", v, hint);
  }
  ensureReady();
  try {
    wasm.publicKeyOf(v);
  } catch {
    throw invalid(where, name, "is not a signing key seed (32 bytes in unpadded base64)");
  }
  return v;
}

/** Marks a KeyRing whose memory was released. */
export const FREED = Symbol.for("roomdag.KeyRing.freed");

/** Refuses a KeyRing after `free()` (its wasm memory is gone). */
export function live(where, ring) {
  if (ring?.[FREED]) {
    const e = new TypeError(`${where}: this KeyRing was freed (free() releases it for good); make a new one`);
    e.code = "ERR_INVALID_STATE";
    throw e;
  }
}

/** A KeyRing (of this copy of roomdag), not freed. */
export function keyRing(where, name, v) {
  if (!(v instanceof wasm.KeyRing)) {
    const other = v?.constructor?.[Symbol.for("roomdag.KeyRing")] === true;
    throw typeError(
      where,
      name,
      "a KeyRing",
      v,
      other ? "It is a KeyRing of another copy of roomdag: ESM `import` and CommonJS `require` load two separate copies, use one" : undefined,
    );
  }
  if (v[FREED]) throw typeError(where, name, "a KeyRing that is not freed", v, "free() released it for good; make a new one");
  return v;
}

const encoder = new TextEncoder();
/** Fixture or queries input: JSON text, its UTF-8 bytes, or the parsed object. */
export function jsonInput(where, name, v) {
  if (typeof v === "string") return encoder.encode(v);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (isPlainObject(v)) return encoder.encode(JSON.stringify(v));
  throw typeError(where, name, "JSON text, its UTF-8 bytes (a Uint8Array) or the parsed object", v);
}

/**
 * Pinned keys: server → key ID → unpadded base64 public key. Recognises the
 * common mistakes (a fixture's `servers` map, a key response's
 * `{key: "…"}` objects) and says how to fix them.
 */
export function trustedKeys(where, name, v) {
  if (v === undefined || v === null) return {};
  object(where, name, v, "an object server → key ID → unpadded base64 public key");
  for (const [server, keys] of Object.entries(v)) {
    const at = `${name}[${JSON.stringify(server)}]`;
    if (!isPlainObject(keys)) throw typeError(where, at, "an object key ID → unpadded base64 public key", keys);
    const fixtureServer = "verify_keys" in keys;
    for (const [keyId, key] of Object.entries(keys)) {
      if (typeof key === "string") continue;
      const hint = fixtureServer
        ? `${name} maps server → key ID → key, e.g. {"${server}": {"ed25519:1": "<base64>"}}; this looks like a fixture's servers map: pass each server's verify_keys, Object.fromEntries(Object.entries(servers).map(([s, v]) => [s, v.verify_keys]))`
        : isPlainObject(key) && typeof key.key === "string"
          ? `Pass the key itself (its "key" field), not the {key} object of a key response`
          : undefined;
      throw typeError(where, `${at}[${JSON.stringify(keyId)}]`, "an unpadded base64 public key string", key, hint);
    }
  }
  return v;
}
