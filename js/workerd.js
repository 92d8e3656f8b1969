// Cloudflare Workers (workerd) entry: Workers cannot compile WebAssembly from
// bytes at run time, so the module is imported (bundled by wrangler) and
// instantiated synchronously.
import wasmModule from "./roomdag_wasm_bg.wasm";
import { initSync } from "./roomdag_wasm.js";
import { markReady } from "./common.js";

initSync({ module: wasmModule });
markReady();

export * from "./api.js";
/** Already initialised in workerd. */
export async function init() {}
