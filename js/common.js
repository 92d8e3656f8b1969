// Shared internals of the JS layer: the error classes, the "is the wasm
// module initialised" guard, and small JSON helpers.
import * as wasm from "./roomdag_wasm.js";

/** Thrown when the wasm module is used before `init()` (browsers, bundlers). */
export class NotInitializedError extends Error {
  constructor() {
    super("roomdag: the WebAssembly module is not initialised yet; call `await init()` first");
    this.name = "NotInitializedError";
  }
}

export function call(fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError && /undefined|null/.test(String(e.message)) && !wasmReady()) throw new NotInitializedError();
    throw e;
  }
}

let ready = false;
/** @internal entry points mark the module ready once initialised */
export function markReady() {
  ready = true;
}
function wasmReady() {
  return ready;
}

export const json = (text) => JSON.parse(text);
export const toText = (pdu) => (typeof pdu === "string" ? pdu : JSON.stringify(pdu));

/** Errors a store or engine raises, with a stable `code`. */
export class RoomdagError extends Error {
  constructor(code, message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RoomdagError";
    this.code = code;
  }
}

export { wasm };
