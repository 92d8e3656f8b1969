// Node entry (ESM): the WebAssembly module is compiled synchronously on import.
import { readFileSync } from "node:fs";
import { initSync } from "./roomdag_wasm.js";
import { markReady } from "./common.js";

initSync({ module: readFileSync(new URL("./roomdag_wasm_bg.wasm", import.meta.url)) });
markReady();

export * from "./api.js";
/** Already initialised in Node; kept so code written for browsers runs unchanged. */
export async function init() {}
