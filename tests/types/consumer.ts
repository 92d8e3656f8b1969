// Compiled with `tsc --noEmit --strict`: the published types describe the API
// precisely enough for real code (no `any` leaks: see the expectType checks).
import {
  FederationServer,
  RoomDirectory,
  RoomEngine,
  MemoryStore,
  IndexedDbStore,
  KeyRing,
  signRequest,
  replayFixture,
  FederationClient,
  FederationRequestError,
  KeyFetcher,
  requiredSigners,
  dohSrvResolver,
  type FederationErrorCode,
  type ResolvedServer,
  type KeyCheck,
  RoomdagError,
  init,
  demoRoom,
  roomFromFixture,
  type RoomdagErrorCode,
  type Outcome,
  type QueryResult,
  type StateIdsBody,
  type Graph,
  type RoomStore,
  type TransactionLog,
  type TransactionResponse,
  type PageStore,
  type PageTable,
} from "roomdag";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | void {}

async function demo(): Promise<void> {
  await init();
  try {
    roomFromFixture(demoRoom(100));
  } catch (e) {
    if (e instanceof RoomdagError) {
      const code: RoomdagErrorCode = e.code;
      // @ts-expect-error: the code is a closed union
      const wrong: typeof e.code = "M_NOT_A_CODE";
      void code;
      void wrong;
    }
  }
  // @ts-expect-error: engines come from RoomEngine.open
  new RoomEngine();
  const store: RoomStore = new MemoryStore();
  const engine = await RoomEngine.open({ store, roomVersion: "11" });
  // A page store of its own: rows by table and key, listed for the sweep.
  const rows = new Map<string, string | Uint8Array>();
  const pages: PageStore = {
    get: (table, key) => rows.get(`${table}/${key}`) ?? null,
    put: (table, key, value) => void rows.set(`${table}/${key}`, value),
    delete: (table, key) => void rows.delete(`${table}/${key}`),
    keys: (table: PageTable) => [...rows.keys()].filter((k) => k.startsWith(`${table}/`)).map((k) => k.slice(table.length + 1)),
  };
  await RoomEngine.open({ store: new MemoryStore(), roomVersion: "11", pages, cacheBytes: 1 << 20 });
  const keys = new KeyRing();
  keys.pin("a.example", "ed25519:1", "BhUp9CE0TtHbjiey7djXE4R5/3RscTx1//yx+jfQSU8");
  const outcomes: Outcome[] = await engine.ingest([{ type: "m.room.create" }], keys);
  for (const o of outcomes) {
    if (o.status === "rejected") expectType<Equal<typeof o.reason, string>>();
    if (o.status === "dropped") expectType<Equal<typeof o.stage, "parse" | "signature" | "hash" | "missing" | "auth" | "limit" | "store">>();
  }
  const ids: QueryResult<StateIdsBody> = engine.stateIds("a.example", "$x");
  if (ids.status === 200) expectType<Equal<typeof ids.body.pdu_ids, string[]>>();
  else expectType<Equal<typeof ids.body.errcode, string>>();
  const graph: Graph = engine.exportGraph();
  expectType<Equal<typeof graph.events[number]["prev"], number[]>>();
  const answered = new Map<string, TransactionResponse>();
  const log: TransactionLog = {
    get: async (origin, txnId) => answered.get(`${origin} ${txnId}`),
    put: async (origin, txnId, response) => {
      expectType<Equal<typeof response.status, number>>();
      answered.set(`${origin} ${txnId}`, response);
    },
  };
  const server = new FederationServer({
    serverName: "roomdag.example",
    signingKey: { keyId: "ed25519:1", seed: "x" },
    rooms: new RoomDirectory({ createStore: (roomId) => new IndexedDbStore({ room: roomId }) }),
    transactions: log,
  });
  const res: Response = await server.handleFederationRequest(new Request("https://roomdag.example/_matrix/federation/v1/version"));
  void res;
  const auth: string = signRequest({ origin: "a", keyId: "ed25519:1", seed: "s", destination: "b", method: "GET", target: "/" });
  void auth;
  const answers = replayFixture("{}", "{}");
  expectType<Equal<typeof answers.format, "roomdag-answers/1">>();

  const client = new FederationClient({
    serverName: "roomdag.example",
    signingKey: { keyId: "ed25519:1", seed: "x" },
    resolveSrv: dohSrvResolver({ url: "https://dns.example/dns-query" }),
    log: (e) => void e.message,
  });
  try {
    const v = await client.get<{ server: { name: string } }>("matrix.org", "/_matrix/federation/v1/version");
    expectType<Equal<typeof v.server.name, string>>();
    const r = await client.request("matrix.org", { method: "POST", target: "/_matrix/key/v2/query", body: { server_keys: {} }, timeoutMs: 5_000 });
    expectType<Equal<typeof r.status, number>>();
  } catch (e) {
    if (e instanceof FederationRequestError) expectType<Equal<typeof e.code, FederationErrorCode>>();
  }
  const where: ResolvedServer = await client.resolve("matrix.org");
  void where.urlBase;
  const fetcher = new KeyFetcher({ keyRing: new KeyRing(), client, notaryServers: [{ serverName: "n.example", verifyKeys: { "ed25519:1": "k" } }] });
  const checked: KeyCheck = await fetcher.ensureForPdus([{ type: "m.room.message" }], "11");
  const all: Outcome[] = checked.explain(await engine.ingest(checked.pdus, keys));
  void all;
  const signers: string[] = requiredSigners({ type: "m.room.message" }, "11");
  void signers;
}
void demo;
