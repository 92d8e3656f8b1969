// With the DOM library: its types fit the structural ones of the
// declarations (a WebAssembly.Module for init, the real IDBFactory).
import { init, IndexedDbStore } from "roomdag";

async function browser(module: WebAssembly.Module, bytes: Uint8Array): Promise<void> {
  await init(module);
  await init(bytes);
  await init(fetch("/roomdag_wasm_bg.wasm"));
  await init(new URL("/roomdag_wasm_bg.wasm", location.href));
  new IndexedDbStore({ room: "!r:x", indexedDB: window.indexedDB, IDBKeyRange });
}
void browser;
