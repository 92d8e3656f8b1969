// Browser and bundler entry: call `await init()` once before using the API.
// `init()` fetches `roomdag_wasm_bg.wasm` next to this file; pass a URL, a
// Response, bytes or a compiled `WebAssembly.Module` (or a promise of one)
// to load it otherwise. Until it resolves, every function that needs the
// engine (and `new KeyRing()`) throws `NotInitializedError`.
import initWasm from "./roomdag_wasm.js";
import { markReady } from "./common.js";

export * from "./api.js";

let initialising;
/** Loads the WebAssembly module (idempotent; a failed load can be retried). */
export function init(input) {
  initialising ??= Promise.resolve(input)
    .then((resolved) => initWasm({ module_or_path: resolved ?? new URL("./roomdag_wasm_bg.wasm", import.meta.url) }))
    .then(
      () => markReady(),
      (e) => {
        initialising = undefined;
        throw e;
      },
    );
  return initialising;
}
