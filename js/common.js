// Shared internals of the JS layer: the error classes, the "is the wasm
// module initialised" guard, the wasm call wrapper and small JSON helpers.
// Nothing here is part of the public API except the two error classes
// (re-exported by api.js).
import * as wasm from "./roomdag_wasm.js";

/** Thrown when the engine is used before `init()` (the browser/bundler entry). */
export class NotInitializedError extends Error {
  constructor() {
    super("roomdag: the WebAssembly module is not initialised yet; call `await init()` first");
    this.name = "NotInitializedError";
    this.code = "ERR_NOT_INITIALIZED";
  }
}

/**
 * Errors the engine raises, with a stable `code` (see `RoomdagErrorCode` in
 * roomdag.d.ts for the list and what each means).
 */
export class RoomdagError extends Error {
  constructor(code, message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RoomdagError";
    this.code = code;
  }
}

let ready = false;
/** Entry points call this once the wasm module is instantiated (internal). */
export function markReady() {
  ready = true;
}
/** Throws `NotInitializedError` unless the wasm module is instantiated. */
export function ensureReady() {
  if (!ready) throw new NotInitializedError();
}

/**
 * Runs a wasm call. An error the core returns (a `JsError`, a plain `Error`)
 * becomes a `RoomdagError` with `code`, its message prefixed with `where`
 * (the API function and the parameter at fault). Errors the JS layer raised
 * itself pass through unchanged. (`call(fn)` alone, the older form, uses
 * code "M_UNKNOWN".)
 */
export function call(where, code, fn) {
  if (typeof where === "function") return call("roomdag", "M_UNKNOWN", where);
  ensureReady();
  try {
    return fn();
  } catch (e) {
    if (e instanceof RoomdagError || e instanceof TypeError || e instanceof NotInitializedError) throw e;
    if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) throw e; // a bug in roomdag: let it show
    throw new RoomdagError(code, `${where}: ${e?.message ?? e}`, e);
  }
}

export const json = (text) => JSON.parse(text);
export const toText = (pdu) => (typeof pdu === "string" ? pdu : JSON.stringify(pdu));

export { wasm };
