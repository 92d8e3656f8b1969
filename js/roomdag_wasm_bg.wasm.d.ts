// Declaration for `import wasm from "roomdag/roomdag_wasm_bg.wasm"`.
import type { InitInput } from "./roomdag.js";

/**
 * roomdag's WebAssembly binary. What an import of it gives depends on the
 * tool: Cloudflare Workers (wrangler) give the compiled `WebAssembly.Module`;
 * esbuild gives its URL with the `file` loader (`--loader:.wasm=file`) and
 * its bytes with the `binary` loader; Vite needs the `?url` suffix
 * (`roomdag/roomdag_wasm_bg.wasm?url`). Pass what you get to `init()`.
 */
declare const wasm: InitInput;
export default wasm;
