// Declaration for `require("roomdag/roomdag_wasm_bg.wasm")` (bundlers).
import type { InitInput } from "./node.cjs";

/**
 * roomdag's WebAssembly binary: its URL with esbuild's `file` loader, its
 * bytes with the `binary` loader, the compiled `WebAssembly.Module` in
 * Cloudflare Workers. Pass what you get to `init()`.
 */
declare const wasm: InitInput;
export = wasm;
