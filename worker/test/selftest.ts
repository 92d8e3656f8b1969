// A test-only Worker (worker/test/wrangler.jsonc): runs the store
// conformance suite of tests/js/store-suite.mjs against real Durable Object
// storage inside workerd. Never deployed.
import { DurableObject } from "cloudflare:workers";
import * as api from "../../pkg/workerd.js";
import { storeSuite } from "../../tests/js/store-suite.mjs";

interface Env {
  SUITE: DurableObjectNamespace;
}

type Storage = DurableObjectStorage;

/** One scratch object per store instance under test. */
export class ScratchStore extends DurableObject<Env> {
  failNext = false;
  async load() {
    return new api.DurableObjectStore(this.ctx.storage).load();
  }
  async append(records: unknown[], meta: unknown) {
    const storage: Storage = this.ctx.storage;
    if (this.failNext) {
      this.failNext = false;
      // Fail inside a transaction after the first write: nothing may remain.
      await storage.transaction(async (txn) => {
        await txn.put("r:partial", { i: -1 });
        throw new Error("injected failure after a partial write");
      });
    }
    return new api.DurableObjectStore(storage).append(records as never, meta as never);
  }
  breakNext() {
    this.failNext = true;
  }
  async wipe() {
    await this.ctx.storage.deleteAll();
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    if (request.method === "GET") return new Response("ready");
    const fixture = await request.json();
    let n = 0;
    const stubs = new Map<object, DurableObjectStub<ScratchStore>>();
    // A store whose every call goes to a Durable Object: real storage, real RPC.
    const make = () => {
      const stub = env.SUITE.get(env.SUITE.idFromName(`store-${Date.now()}-${n++}`)) as unknown as DurableObjectStub<ScratchStore>;
      const store = { load: () => stub.load(), append: (r: unknown[], m: unknown) => stub.append(r, m) };
      stubs.set(store, stub);
      return store;
    };
    const reopen = (s: object) => {
      const stub = stubs.get(s)!;
      const again = { load: () => stub.load(), append: (r: unknown[], m: unknown) => stub.append(r, m) };
      stubs.set(again, stub);
      return again;
    };
    const breakNext = (s: object) => void stubs.get(s)!.breakNext();
    const results = [];
    for (const [name, fn] of storeSuite({ api, fixture, make, reopen, breakNext })) {
      try {
        await fn();
        results.push({ name, ok: true });
      } catch (e) {
        results.push({ name, ok: false, error: String((e as Error)?.stack ?? e) });
      }
    }
    return Response.json(results);
  },
};
