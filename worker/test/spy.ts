// Test-only Worker (worker/test/spy.jsonc): the roomdag Worker, unchanged,
// with counters on what a request can touch — Durable Objects started and
// called, their storage writes, outbound fetches, token comparisons — read
// and reset at /_spy. Also lets a test hold an origin's transaction lease
// (as another isolate would), make a room fail on purpose, and write a
// directory in the old one-value layout.
import worker, { RoomObject as Room, DirectoryObject as Directory, EventIndexObject as EventIndex, TransactionObject as Transactions } from "../src/index.js";
import type { Env } from "../src/config.js";

const counts: Record<string, number> = {};
let fetched: string[] = [];
const hit = (k: string) => void (counts[k] = (counts[k] ?? 0) + 1);
let failing = false;

const realFetch = globalThis.fetch;
globalThis.fetch = ((input: RequestInfo | URL, init?: RequestInit) => {
  fetched.push(input instanceof Request ? input.url : String(input));
  return realFetch(input, init);
}) as typeof fetch;
const timingSafeEqual = crypto.subtle.timingSafeEqual.bind(crypto.subtle);
(crypto.subtle as { timingSafeEqual: typeof timingSafeEqual }).timingSafeEqual = (a, b) => {
  hit("timingSafeEqual");
  return timingSafeEqual(a, b);
};

/** Counts `put`, `delete` and `transaction` calls on an object's storage. */
function spyStorage(ctx: DurableObjectState, name: string) {
  const st = ctx.storage as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const m of ["put", "delete", "deleteAll", "transaction"]) {
    const f = st[m].bind(st);
    st[m] = (...a: unknown[]) => (hit(`${name}.storage.write`), f(...a));
  }
}

export class RoomObject extends Room {
  constructor(ctx: DurableObjectState, env: Env) {
    hit("room.started");
    spyStorage(ctx, "room");
    super(ctx, env);
  }
  info() {
    hit("room.info");
    return super.info();
  }
  create(...a: Parameters<Room["create"]>) {
    hit("room.create");
    return super.create(...a);
  }
  ingest(...a: Parameters<Room["ingest"]>) {
    hit("room.ingest");
    return super.ingest(...a);
  }
  query(...a: Parameters<Room["query"]>) {
    hit("room.query");
    if (failing) throw new Error("secret internal detail: /var/lib/roomdag/disk7 exploded");
    return super.query(...a);
  }
  aclAllows(server: string) {
    hit("room.aclAllows");
    return super.aclAllows(server);
  }
  rejectionRefusal(origin: string) {
    hit("room.rejectionRefusal");
    return super.rejectionRefusal(origin);
  }
  admission(origin: string) {
    hit("room.admission");
    return super.admission(origin);
  }
  receive(...a: Parameters<Room["receive"]>) {
    hit("room.receive");
    return super.receive(...a);
  }
  stateAccess(origin: string) {
    hit("room.stateAccess");
    return super.stateAccess(origin);
  }
  graph() {
    hit("room.graph");
    if (failing) throw new Error("secret internal detail: /var/lib/roomdag/disk7 exploded");
    return super.graph();
  }
  currentState() {
    hit("room.currentState");
    return super.currentState();
  }
  eventDetails(eventId: string) {
    hit("room.eventDetails");
    return super.eventDetails(eventId);
  }
}

export class DirectoryObject extends Directory {
  constructor(ctx: DurableObjectState, env: Env) {
    hit("directory.started");
    spyStorage(ctx, "directory");
    super(ctx, env);
  }
  add(roomId: string, roomVersion: string) {
    hit("directory.add");
    return super.add(roomId, roomVersion);
  }
  get(roomId: string) {
    hit("directory.get");
    return super.get(roomId);
  }
  /** Test only: every stored key and value. */
  async raw() {
    return Object.fromEntries(await this.ctx.storage.list());
  }
  /** Test only: the directory as roomdag stored it before it was paginated. */
  async writeLegacy(rooms: Record<string, string>, indexed: Record<string, boolean>) {
    await this.ctx.storage.deleteAll();
    await this.ctx.storage.put({ rooms, indexed });
  }
}

export class EventIndexObject extends EventIndex {
  constructor(ctx: DurableObjectState, env: Env) {
    hit("index.started");
    spyStorage(ctx, "index");
    super(ctx, env);
  }
  find(eventId: string) {
    hit("index.find");
    return super.find(eventId);
  }
}

export class TransactionObject extends Transactions {
  constructor(ctx: DurableObjectState, env: Env) {
    hit("txn.started");
    spyStorage(ctx, "txn");
    super(ctx, env);
  }
}

function stub<T>(ns: DurableObjectNamespace, name: string): DurableObjectStub<T & Rpc.DurableObjectBranded> {
  return ns.get(ns.idFromName(name)) as unknown as DurableObjectStub<T & Rpc.DurableObjectBranded>;
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const url = new URL(request.url);
    const p = url.searchParams;
    switch (url.pathname) {
      case "/_spy":
        return Response.json({ counts, fetched });
      case "/_spy/reset":
        for (const k of Object.keys(counts)) delete counts[k];
        fetched = [];
        return new Response("ok");
      case "/_spy/fail":
        failing = p.get("on") === "1";
        return new Response("ok");
      case "/_spy/lease":
        return Response.json(await stub<Transactions>(env.TRANSACTIONS, p.get("origin")!).begin(p.get("txn")!));
      case "/_spy/unlease":
        await stub<Transactions>(env.TRANSACTIONS, p.get("origin")!).end(p.get("txn")!);
        return new Response("ok");
      case "/_spy/directory":
        return Response.json(await stub<DirectoryObject>(env.DIRECTORY, "directory").raw());
      case "/_spy/legacy-directory": {
        const body = (await request.json()) as { rooms: Record<string, string>; indexed: Record<string, boolean> };
        await stub<DirectoryObject>(env.DIRECTORY, "directory").writeLegacy(body.rooms, body.indexed);
        return new Response("ok");
      }
    }
    return worker.fetch(request, env, ctx as never);
  },
};
