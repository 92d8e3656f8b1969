// Browser and bundler entry: call `await init()` once before using the API.
// `init()` fetches `roomdag_wasm_bg.wasm` next to this file; pass a URL, a
// Response, bytes or a compiled `WebAssembly.Module` to load it otherwise.
import initWasm from "./roomdag_wasm.js";
import { markReady } from "./api.js";

export * from "./api.js";

let initialising;
/** Loads the WebAssembly module (idempotent). */
export function init(input) {
  initialising ??= initWasm(
    input === undefined ? { module_or_path: new URL("./roomdag_wasm_bg.wasm", import.meta.url) } : { module_or_path: input },
  ).then(() => markReady());
  return initialising;
}
