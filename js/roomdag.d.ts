// Type declarations for the roomdag npm package: one API for every entry
// (Node ESM, browsers and bundlers, Cloudflare Workers); `node.d.cts` is the
// same declarations for CommonJS `require`. They need no DOM library: the
// few web types used (`Request`, `Response`, `fetch`, `URL`) are in
// `@types/node` too, and the rest are declared structurally here.

/** An event ID (`$…`). */
export type EventId = string;
/** A room ID (`!…`). */
export type RoomId = string;
/** A server name (`host[:port]`). */
export type ServerName = string;
/** A room version this engine hosts. */
export type RoomVersion = "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10" | "11" | "12";
/** A PDU: a JSON object, or its JSON text (kept byte for byte when given as text). */
export type Pdu = string | Record<string, unknown>;

/**
 * A compiled `WebAssembly.Module`. It is the global `WebAssembly.Module` where
 * the program's libraries declare one (DOM, WebWorker, Cloudflare's workers
 * types), any object otherwise (Node's types do not declare `WebAssembly`).
 */
export type WasmModule = typeof globalThis extends { WebAssembly: { Module: { prototype: infer M } } } ? M : object;

/**
 * Where `init()` finds the WebAssembly binary: its URL (or a URL string), a
 * `fetch` `Response` for it, its bytes, or the compiled module — or a
 * promise of any of these.
 */
export type InitInput = URL | string | Response | ArrayBuffer | ArrayBufferView | WasmModule;

/**
 * Loads the WebAssembly module. The browser/bundler entry needs it once,
 * before anything else (idempotent; a failed load can be retried); without
 * `input` it fetches `roomdag_wasm_bg.wasm` next to the module. In Node and
 * workerd the module is ready on import and `init()` does nothing.
 */
export function init(input?: InitInput | Promise<InitInput>): Promise<void>;

/**
 * Thrown by every function that runs the engine (and by `new KeyRing()`)
 * when the WebAssembly module is not initialised yet: `await init()` first.
 */
export class NotInitializedError extends Error {
  /** Always "NotInitializedError". */
  readonly name: "NotInitializedError";
  /** Always "ERR_NOT_INITIALIZED". */
  readonly code: "ERR_NOT_INITIALIZED";
}

/**
 * What a `RoomdagError` is about:
 * - `M_INVALID_PARAM`: an argument of the right type with a bad value (a seed
 *   that is not 32 bytes of base64, a key that is not an ed25519 key, a
 *   `roomVersion` that contradicts the room's stored version, a number out
 *   of range). The message names the parameter.
 * - `M_UNSUPPORTED_ROOM_VERSION`: a room version roomdag does not host (it
 *   hosts "3" to "12").
 * - `M_BAD_JSON`: JSON input (a PDU, a fixture, queries, a body) that does
 *   not parse or has the wrong shape.
 * - `M_NOT_FOUND`: `RoomEngine.open` on an empty store without a
 *   `roomVersion`; `eventDetails` of an event the room does not have.
 * - `M_UNAUTHORIZED`: a key response (`KeyRing.addServerKeys`,
 *   `addNotaryKeys`) that is malformed, not correctly signed, expired or for
 *   another server.
 * - `M_UNKNOWN`: a store failed (`ingest`: the write failed and the batch was
 *   undone; `open`: a stored record no longer replays as it was stored).
 */
export type RoomdagErrorCode =
  | "M_INVALID_PARAM"
  | "M_UNSUPPORTED_ROOM_VERSION"
  | "M_BAD_JSON"
  | "M_NOT_FOUND"
  | "M_UNAUTHORIZED"
  | "M_UNKNOWN";

/**
 * Errors the engine raises, with a stable `code`. Arguments of the wrong type
 * raise a `TypeError` instead (`code: "ERR_INVALID_ARG_TYPE"`), naming the
 * parameter; so does a `KeyRing` used after `free()` (`"ERR_INVALID_STATE"`). Compare `code`s, or `name === "RoomdagError"`, rather than
 * `instanceof` when ESM and CommonJS copies of roomdag may meet.
 */
export class RoomdagError extends Error {
  /** Always "RoomdagError". */
  readonly name: "RoomdagError";
  /** What went wrong (see `RoomdagErrorCode`). */
  readonly code: RoomdagErrorCode;
  /** The underlying error (a store's, the core's), when there is one. */
  readonly cause?: unknown;
}

/** What happened to one PDU. */
export type Outcome =
  | { eventId: EventId; status: "accepted"; redactedOnReceipt: boolean }
  | { eventId: EventId; status: "rejected"; reason: string; redactedOnReceipt: boolean }
  | { eventId: EventId | null; status: "dropped"; stage: "parse" | "signature" | "hash" | "missing" | "auth" | "limit" | "store"; reason: string }
  | { eventId: EventId; status: "duplicate" }
  /** A history event logged before its auth events: placed by a rebuild once they are stored. */
  | { eventId: EventId; status: "deferred" };

/** A stored PDU, as a store keeps it. */
export interface StoredRecord {
  /** Position in the store's log. */
  i: number;
  eventId: EventId;
  status: "accepted" | "rejected";
  /** The PDU exactly as received (absent from a `paged` record appended to a store with `pagedRecordsWithoutRaw`). */
  raw: string;
  /** How the event entered the room: in the timeline (the default) or as an outlier (state or auth chain only). */
  kind?: "timeline" | "outlier";
  /** Soft failed on receipt: placed, never a forward extremity. */
  softFailed?: boolean;
  /** The state before the event (event IDs), when it came from a verified remote answer. */
  state?: EventId[];
  /**
   * The PDU is also in the store's own page store (`store.pages`), written
   * in the same turn: a store may keep this record without `raw` and must
   * give `raw` back from its pages when it loads the record. A store that
   * says `pagedRecordsWithoutRaw` gets it without `raw` already.
   */
  paged?: boolean;
}

/** A rebuild marker in a store's log: every event before it is placed afresh when the log is replayed. */
export interface RebuildRecord {
  /** Position in the store's log. */
  i: number;
  rebuild: true;
}

/** One entry of a room's log. */
export type LogRecord = StoredRecord | RebuildRecord;

/** How a PDU is placed: live, from history (kept pending until its prev events are placed), or as an outlier. */
export type Placement = "timeline" | "live" | "history" | "outlier";

/** What a store remembers about its room. */
export interface RoomMeta {
  roomVersion?: string;
  roomId?: RoomId | null;
}

/**
 * A room's persistence: an append-only record log. Implement these two calls
 * to keep rooms anywhere; `append` must be atomic (all or nothing).
 */
export interface RoomStore {
  /** Every record, in arrival order, and the room's meta. */
  load(): Promise<RoomMeta & { records: LogRecord[] }>;
  /** Writes the records and meta atomically, or rejects and writes nothing. */
  append(records: LogRecord[], meta: RoomMeta): Promise<void>;
  /**
   * Optional: the log in parts, so that `RoomEngine.open` never holds all of
   * it: `head`, the records before the last rebuild marker, and `tail`, the
   * records from that marker on, in arrays of at most `chunk`. With `from`
   * (the log position of the room's image) and no rebuild marker at or
   * after it: `head` is empty, `tail` starts at `from`, and the answer
   * carries `from`.
   */
  loadParts?(chunk?: number, opts?: { from?: number }): Promise<RoomMeta & { head: LogRecord[]; tail: AsyncIterable<LogRecord[]>; from?: number }>;
  /** Optional: the store's own page store (see `RoomEngine.open`). */
  readonly pages?: PageStore | null;
  /**
   * Optional, with `pages`: true when the store keeps the records of
   * events whose PDU is in its pages without `raw` (and gives `raw` back
   * from its pages on load): `append` then gets them without `raw`, marked
   * `paged` (`DurableObjectStore` does this).
   */
  readonly pagedRecordsWithoutRaw?: boolean;
}

/** Records in memory (the default; lost when the process ends). */
export class MemoryStore implements RoomStore {
  /** An empty store. */
  constructor();
  /** Every record, in arrival order, and the room's meta. */
  load(): Promise<RoomMeta & { records: LogRecord[] }>;
  /** Appends records and sets the meta. */
  append(records: LogRecord[], meta: RoomMeta): Promise<void>;
}

/** The part of `IDBFactory` the store uses (the global `indexedDB` and fake-indexeddb's fit). */
export interface IDBFactoryLike {
  open(name: string, version?: number): unknown;
}
/** The part of the `IDBKeyRange` class the store uses. */
export interface IDBKeyRangeLike {
  bound(lower: unknown, upper: unknown, lowerOpen?: boolean, upperOpen?: boolean): unknown;
}

/**
 * Records in IndexedDB (browsers; `fake-indexeddb` in Node). One database
 * holds many rooms; an append is one transaction.
 */
export class IndexedDbStore implements RoomStore {
  /**
   * @param opts.room the room's key (its ID)
   * @param opts.database database name (default "roomdag")
   * @param opts.indexedDB the factory (default the global `indexedDB`)
   * @param opts.IDBKeyRange its key-range class (default the global one)
   */
  constructor(opts: { room: string; database?: string; indexedDB?: IDBFactoryLike; IDBKeyRange?: IDBKeyRangeLike });
  /** Closes the shared database connections (a later store reopens them). */
  static closeAll(): Promise<void>;
  /** Every record of the room, in arrival order, and its meta. */
  load(): Promise<RoomMeta & { records: LogRecord[] }>;
  /** Writes the records and the meta in one transaction. */
  append(records: LogRecord[], meta: RoomMeta): Promise<void>;
}

/** The subset of Cloudflare's `DurableObjectStorage` the store uses. */
export interface DurableObjectStorageLike {
  get<T = unknown>(key: string): Promise<T | undefined>;
  list<T = unknown>(options: { prefix: string; start?: string; end?: string; limit?: number }): Promise<Map<string, T>>;
  put(entries: Record<string, unknown>): Promise<void>;
  transaction<T>(closure: (txn: { put(entries: Record<string, unknown>): Promise<void> }) => Promise<T>): Promise<T>;
  /** A SQLite-backed Durable Object's database (`ctx.storage.sql`): the room's PDU texts are kept there. */
  sql?: { exec(query: string, ...bindings: unknown[]): Iterable<Record<string, unknown>> };
}

/**
 * A table of the page store: `"pdu"` (an event's PDU JSON by event ID,
 * text), `"ids"` (a block's event IDs, text), `"image"` (the room image's
 * parts), and rows named by a hash of their bytes: `"blocks"` (packed blocks
 * of events), `"id_buckets"` (the event ID index's buckets), `"state_pools"`
 * (segments of the states' chunk entries and chunk lists).
 */
export type PageTable = "pdu" | "ids" | "image" | "blocks" | "id_buckets" | "state_pools";

/**
 * Rows of the engine's tables outside wasm memory, read and written
 * synchronously. Rows of `"pdu"` and `"ids"` are text; the others bytes.
 */
export interface PageStore {
  /** The row, or null/undefined if there is none. */
  get(table: PageTable, key: string): string | Uint8Array | null | undefined;
  /** Writes (or overwrites) the row. */
  put(table: PageTable, key: string, value: string | Uint8Array): void;
  /** Deletes the row, if any. */
  delete(table: PageTable, key: string): void;
  /**
   * The keys of a table's rows, or null when the store cannot list them.
   * Optional: with it, rows of `"ids"`, `"blocks"`, `"id_buckets"` and
   * `"state_pools"` that the room no longer names (a rebuilt room's old
   * rows) are deleted once its image is committed.
   */
  keys?(table: PageTable): string[] | null;
  /**
   * Whether the store holds the row of every record of the room's log
   * (rows written atomically with their records): a restore then writes
   * none. Optional: without it, a restore writes every row.
   */
  rowsComplete?(): boolean;
  /** Called once every record's row is in the store (after a restore, or for a new room). */
  markRowsComplete?(): void;
  /**
   * Writes buffered puts (optional: a store may write each put at once).
   * `RoomEngine` calls it after each batch, before appending the batch's
   * records; a failed write thrown here undoes the batch.
   */
  flush?(): void;
}

/** A room image (`RoomEngine.saveImage`): the engine's tables in the page store. */
export interface ImageInfo {
  /** The image format. */
  format: number;
  /** Which generation of parts is current. */
  generation: number;
  /** Parts (rows of at most 1 MiB). */
  parts: number;
  /** Bytes in all parts. */
  bytes: number;
  /** The log position it was taken at: records from there on are replayed on open. */
  logLength: number;
  /** Events in the room. */
  events: number;
  /** The room version. */
  roomVersion: RoomVersion;
}

/** What a room's page cache holds and did. */
export interface PageStats {
  /** Bytes of PDU text held. */
  bytes: number;
  /** The limit (`cacheBytes`). */
  capacity: number;
  /** Rows held. */
  rows: number;
  /** Reads answered from memory. */
  hits: number;
  /** Reads that went to the page store. */
  misses: number;
}

/** A page store over a Durable Object's SQLite database, or null without one. */
export function sqlPages(sql: DurableObjectStorageLike["sql"]): PageStore | null;

/**
 * Records in a Durable Object's storage (`ctx.storage`): the room's Durable
 * Object is its single writer; large appends run in a storage transaction.
 */
export class DurableObjectStore implements RoomStore {
  /** @param storage `ctx.storage` of the room's Durable Object */
  constructor(storage: DurableObjectStorageLike);
  /** Every record, in arrival order, and the room's meta. */
  load(): Promise<RoomMeta & { records: LogRecord[] }>;
  /** Writes the records and the meta atomically. */
  append(records: LogRecord[], meta: RoomMeta): Promise<void>;
  /** The room's PDU texts in the object's SQLite database, or null when the storage has no `sql`. */
  readonly pages: PageStore | null;
  /** True: the records of events whose PDU is in `pages` are kept without it. */
  readonly pagedRecordsWithoutRaw: boolean;
  /**
   * The log in parts, read from storage a chunk at a time (`head`: before
   * the last rebuild marker; `tail`: from it on). An object written before
   * rebuild markers were indexed is read whole once and indexed. With
   * `from` (a room image's log position, no rebuild marker at or after
   * it), only the records from there on.
   */
  loadParts(chunk?: number, opts?: { from?: number }): Promise<RoomMeta & { head: LogRecord[]; tail: AsyncIterable<LogRecord[]>; from?: number }>;
}

/**
 * Trusted server signing keys: pinned ones, and fetched ones that were
 * verified. Its memory is in the WebAssembly heap: `free()` a ring a
 * long-lived process drops.
 */
export class KeyRing {
  /** An empty ring (throws `NotInitializedError` before `init()` on the browser entry). */
  constructor();
  /** Pins `server`'s public key `keyId` (the key itself, unpadded base64). */
  pin(server: ServerName, keyId: string, publicKey: string): void;
  /** Verifies a `/_matrix/key/v2/server` response of `server` (JSON text or object) and adds its keys; returns how many. */
  addServerKeys(response: string | Record<string, unknown>, server: ServerName, nowMs: number): number;
  /**
   * Verifies and adds a notary's `/_matrix/key/v2/query` response: the
   * notary's signature is checked only with `notaryKeysJson` (JSON `{keyId:
   * base64}`, the keys configured for that notary), and only entries for
   * the servers `asked` about are used. Returns the number of keys added.
   */
  addNotaryKeys(response: string | Record<string, unknown>, notary: ServerName, notaryKeysJson: string, asked: ServerName[], nowMs: number): number;
  /** The keys of `servers` as JSON (`ExportedKey[]`), for `importKeys` on another ring. */
  exportKeys(servers: ServerName[]): string;
  /** Adds keys another ring exported (already verified there); returns how many. */
  importKeys(keysJson: string): number;
  /** Whether a key of `server` usable to authenticate a request at `nowMs` is known. */
  hasRequestKey(server: ServerName, keyId: string, nowMs: number): boolean;
  /** Number of keys held. */
  readonly size: number;
  /** Releases the ring's memory; the ring cannot be used afterwards. */
  free(): void;
}

/** An error answer body. */
export interface MatrixError {
  errcode: string;
  error: string;
}

/**
 * A query answer: the HTTP status and the JSON body the federation endpoint
 * returns, exactly as a `FederationServer` would send them. Queries never
 * throw for a bad request: a malformed one is a 400, an unknown event a 404,
 * a server not in the room a 403 — check `status` before reading `body`.
 */
export type QueryResult<T> = { status: 200; body: T } | { status: 400 | 403 | 404 | 405 | 413; body: MatrixError };

/** A PDU as served (full or redacted). */
export type ServedPdu = Record<string, unknown>;

/** `/state_ids` body. */
export interface StateIdsBody {
  pdu_ids: EventId[];
  auth_chain_ids: EventId[];
}
/** `/state` body. */
export interface StateBody {
  pdus: ServedPdu[];
  auth_chain: ServedPdu[];
}
/** `/backfill` and `/event` body: a transaction. */
export interface TransactionBody {
  origin: ServerName;
  origin_server_ts: number;
  pdus: ServedPdu[];
}
/** `/get_missing_events` body. */
export interface MissingEventsBody {
  events: ServedPdu[];
}
/** `/timestamp_to_event` body. */
export interface TimestampBody {
  event_id: EventId;
  origin_server_ts: number;
}
/** `/event_auth` body: the event's full auth chain. */
export interface EventAuthBody {
  auth_chain: ServedPdu[];
}

/** One event of the graph export. */
export interface GraphEvent {
  i: number;
  event_id: EventId;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  status: "accepted" | "rejected";
  rejection: string | null;
  redacted_on_receipt: boolean;
  /** Position of the redaction that applies, if any. */
  redacted_by: number | null;
  membership: string | null;
  is_redaction: boolean;
  /** Positions of the prev events. */
  prev: number[];
  /** Positions of the auth events. */
  auth: number[];
}

/** `roomdag-graph/1`. */
export interface Graph {
  format: "roomdag-graph/1";
  room_id: RoomId | null;
  room_version: string;
  events: GraphEvent[];
  forward_extremities: number[];
  dropped: { event_id: EventId | null; stage: string; reason: string }[];
  dropped_total: number;
}

/** A state: `"type\u0000state_key"` → event ID, with its contract digest. */
export interface StateSnapshot {
  digest: string;
  state: Record<string, EventId>;
}

/** Everything known about one event. */
export interface EventDetails {
  i: number;
  event_id: EventId;
  type: string;
  state_key: string | null;
  sender: string;
  depth: number;
  origin_server_ts: number;
  status: "accepted" | "rejected";
  rejection: string | null;
  redacted_on_receipt: boolean;
  redacted_by: EventId | null;
  pdu: Record<string, unknown>;
  pruned_pdu: Record<string, unknown>;
  prev_events: EventId[];
  auth_events: EventId[];
  auth_chain: EventId[];
  state_before: StateSnapshot;
  state_after: StateSnapshot;
  state_diff: { type: string; state_key: string; before: EventId | null; after: EventId | null }[];
  /** For each server with members: whether it sees the event unredacted. */
  visible_to: Record<ServerName, boolean>;
  /** How the state before was resolved, when the prev events disagreed. */
  resolution: {
    inputs: string[];
    conflicted_keys: [string, string][];
    full_conflicted_set: number;
    winners: (EventId | null)[];
  } | null;
}

/**
 * One room on a store. Ingests are serialised (a single writer) and atomic:
 * a batch whose records cannot be written is undone in memory too. Queries
 * answer as the federation endpoints would, for `origin`: history the origin
 * may not see is redacted or withheld, as Synapse does.
 */
export class RoomEngine {
  /** Engines come from `RoomEngine.open` (or `roomFromFixture`). */
  private constructor();
  /**
   * Opens a room from its store, replaying the stored records (signatures are
   * not verified again). An empty store needs `roomVersion` (a new room);
   * for a stored room, a `roomVersion` other than the stored one is an error.
   */
  /**
   * The PDU texts live in a page store instead of wasm memory when there is
   * one: `pages`, else the store's own `pages` (`DurableObjectStore` over a
   * SQLite-backed Durable Object); `pages: null` keeps them in memory.
   * `cacheBytes` bounds the texts held in memory (default 8 MiB).
   */
  static open(opts: { store: RoomStore; roomVersion?: RoomVersion; pages?: PageStore | null; cacheBytes?: number }): Promise<RoomEngine>;
  /** The page cache's counters, or null when the PDU texts are held in memory. */
  readonly pageStats: PageStats | null;
  /**
   * Records after the room's image (what a restart replays), or null when
   * the room keeps no image (its PDUs are not in its store's own page store).
   */
  readonly imageLag: number | null;
  /**
   * Writes the room's image (its engine tables) into its store's page
   * store, between batches; a restart reads it back and replays only the
   * records after it. Rejects for a room that keeps no image.
   */
  saveImage(): Promise<ImageInfo>;
  /** The room ID (once the create event is stored). */
  readonly roomId: RoomId | null;
  /** The room version. */
  readonly roomVersion: RoomVersion;
  /** Number of stored (accepted or rejected) events. */
  readonly eventCount: number;
  /** The store the room is kept in. */
  readonly store: RoomStore;
  /**
   * Receives PDUs (objects or JSON text) in order, checking signatures with
   * `keyRing`; one outcome per PDU. The stored ones are written to the store
   * as one atomic batch. With `origin`, that origin's rejected events are
   * bounded (`REJECTED_PER_ORIGIN`): past the bound its PDUs are dropped with
   * stage `limit` and nothing is stored.
   */
  ingest(pdus: Pdu[], keyRing: KeyRing, opts?: { origin?: ServerName; now?: number }): Promise<Outcome[]>;
  /** Whether `origin` may read the room's state (joined, then the ACL): `null`, or the error answer. */
  stateAccess(origin: ServerName): { status: number; body: MatrixError } | null;
  /** Why PDUs from `origin` are refused now (past its bound of rejected events), or `null`. */
  rejectionRefusal(origin: ServerName, now?: number): string | null;
  /** Whether PDUs pushed by `origin` are taken: the server ACL, then the origin's bound of rejected events, in one call. */
  admission(origin: ServerName, now?: number): Admission;
  /**
   * Receives PDUs placed as each says, as one atomic batch: `{pdu, placement}`, or `{pdu, state}` for a
   * timeline event whose state before comes from a verified remote answer (used where its prev events are not placed).
   */
  ingestPlaced(items: ({ pdu: Pdu; placement?: Placement } | { pdu: Pdu; state: EventId[] })[], keyRing: KeyRing, opts?: { origin?: ServerName; now?: number }): Promise<Outcome[]>;
  /** Places every stored event afresh (history events whose prev events are now known join the DAG); appends a rebuild marker. */
  rebuild(): Promise<void>;
  /** The backward extremities `[eventId, depth]`, newest gaps first: what to ask `/backfill` for. */
  backwardExtremities(): [EventId, number][];
  /** History events waiting for a rebuild to place them. */
  readonly pendingCount: number;
  /** Whether a stored event is an outlier (`undefined` when it is not stored). */
  isOutlier(eventId: EventId): boolean | undefined;
  /** History events logged before their auth events. */
  readonly deferredCount: number;
  /** Auth events that deferred history events wait for and no one has sent. */
  missingAuthEvents(): EventId[];
  /** A PDU's prev events that are not placed in the timeline here. */
  unplacedPrevEvents(pdu: Pdu): EventId[];
  /** The forward extremities. */
  forwardExtremities(): EventId[];
  /** Whether `server` has a joined member in the current state. */
  serverInRoom(server: ServerName): boolean;
  /** The least depth of the timeline (`min_depth` of `/get_missing_events`). */
  readonly minDepth: number;
  /** The servers with a joined member, by when they joined, without `except` (ourselves). */
  serversInRoomOrdered(except?: ServerName): ServerName[];
  /**
   * Answers a room federation request (`target`: the path and query, e.g.
   * `/_matrix/federation/v1/state_ids/…?event_id=…`) for an authenticated
   * `origin`, as server `serverName`.
   */
  query(method: string, target: string, body: Pdu | undefined, origin: ServerName, serverName: ServerName, nowMs?: number): QueryResult<unknown>;
  /** `/state_ids`: the state before `eventId` and its auth chain, as IDs. */
  stateIds(origin: ServerName, eventId: EventId): QueryResult<StateIdsBody>;
  /** `/state`: the state before `eventId` and its auth chain, as PDUs. */
  state(origin: ServerName, eventId: EventId): QueryResult<StateBody>;
  /** `/backfill`: up to `limit` events before (and including) the events `v`. */
  backfill(origin: ServerName, v: EventId[], limit: number): QueryResult<TransactionBody>;
  /** `/get_missing_events`: events between `earliestEvents` and `latestEvents`. */
  getMissingEvents(
    origin: ServerName,
    request: { earliestEvents: EventId[]; latestEvents: EventId[]; limit?: number; minDepth?: number },
  ): QueryResult<MissingEventsBody>;
  /** `/timestamp_to_event`: the event closest to `ts` in direction `dir` (forwards or backwards). */
  timestampToEvent(origin: ServerName, ts: number, dir: "f" | "b"): QueryResult<TimestampBody>;
  /** `/event`: one event. */
  event(origin: ServerName, eventId: EventId): QueryResult<TransactionBody>;
  /** `/event_auth`: the event's full auth chain (the event itself left out). */
  eventAuth(origin: ServerName, eventId: EventId): QueryResult<EventAuthBody>;
  /** Whether the room's server ACL admits `server` (true without an ACL). */
  aclAllows(server: ServerName): boolean;
  /** Whether the event is stored here. */
  hasEvent(eventId: EventId): boolean;
  /** The room graph (`roomdag-graph/1`). */
  exportGraph(): Graph;
  /** The room graph as Graphviz DOT (with auth edges if `authEdges`). */
  exportDot(authEdges?: boolean): string;
  /** The lane layout, O(n): `[lane, row]` per event in arrival order. Rows are depths or arrival positions. */
  layout(rows?: "depth" | "arrival"): Uint32Array;
  /** Everything known about one event (`M_NOT_FOUND` for an event the room does not have). */
  eventDetails(eventId: EventId): EventDetails;
  /** The current state and its digest. */
  currentState(): StateSnapshot;
}

/** Whether a room takes PDUs pushed by a server, before any work on them. */
export interface Admission {
  /** The room's server ACL admits the server. */
  aclAllows: boolean;
  /** Why its PDUs are refused now (past its bound of rejected events), or `null`. */
  refusal: string | null;
}

/** What a `FederationServer` needs of a room: a `RoomEngine`, or a proxy to one (e.g. in a Durable Object). */
export interface FederatedRoom {
  /** The room version. */
  readonly roomVersion: string | Promise<string>;
  /** Receives PDUs (JSON text) in order; `origin`: the server that sent them. */
  ingest(pdus: string[], keyRing: KeyRing, opts?: { origin?: ServerName; now?: number }): Promise<Outcome[]>;
  /** Why PDUs from `origin` are refused now (its bound of rejected events), or `null`. */
  rejectionRefusal?(origin: ServerName, now?: number): string | null | Promise<string | null>;
  /** `aclAllows` and `rejectionRefusal` in one call (one round trip to a room behind an RPC); used when present. */
  admission?(origin: ServerName, now?: number): Admission | Promise<Admission>;
  /** Without it, `/state` and `/state_ids` answers are not shared between requests. */
  stateAccess?(origin: ServerName): { status: number; body: MatrixError } | null | Promise<{ status: number; body: MatrixError } | null>;
  /** Answers a room federation request for an authenticated origin. */
  query(method: string, target: string, body: string | undefined, origin: ServerName, serverName: ServerName, nowMs?: number): QueryResult<unknown> | Promise<QueryResult<unknown>>;
  /** Whether the room's server ACL admits `server`. */
  aclAllows(server: ServerName): boolean | Promise<boolean>;
  /** Whether the event is stored here. */
  hasEvent(eventId: EventId): boolean | Promise<boolean>;
}

/** Where a `FederationServer` finds rooms. */
export interface RoomResolver {
  /** The room, if it exists. */
  get(roomId: RoomId): Promise<FederatedRoom | undefined>;
  /** Creates an empty room (a create event arrived for an unknown room). */
  create(roomId: RoomId, roomVersion: string): Promise<FederatedRoom>;
  /** The room that stores `eventId`, if any. */
  findEvent(eventId: EventId): Promise<FederatedRoom | undefined>;
}

/** A key as `KeyRing.exportKeys` gives it. */
export interface ExportedKey {
  server: ServerName;
  keyId: string;
  /** Unpadded base64. */
  key: string;
  /** `null` for a pinned key. */
  validUntilTs: number | null;
  /** An `old_verify_keys` entry (event signatures only). */
  old: boolean;
}

/** A notary (trusted key server) and the keys that verify its answers. */
export interface NotaryServer {
  serverName: ServerName;
  /** Key ID → unpadded base64. Only these verify the notary's answers. */
  verifyKeys: Record<string, string>;
}

/** The result of one `KeyFetcher.fetchKeys`. */
export interface KeyFetchResult {
  /** Keys were added. */
  ok: boolean;
  added: number;
  /** Why not (an invalid name, fetched too recently, each source's failure). */
  reason?: string;
}

/** What `KeyFetcher.ensureForPdus` decided for a batch of PDUs. */
export interface KeyCheck {
  /** The PDUs to ingest (JSON text), in order. */
  pdus: string[];
  /** PDUs not to ingest: they need keys of a server past the per-batch cap. */
  refused: { index: number; eventId?: EventId; reason: string }[];
  /** Servers whose keys are still missing, and why. */
  failures: Map<ServerName, string>;
  /**
   * Given the outcomes of ingesting `pdus` (one each), one outcome per PDU
   * passed to `ensureForPdus`, in order: refused PDUs as dropped (stage
   * `signature`), and key-fetch failures added to dropped PDUs' reasons.
   */
  explain(outcomes: Outcome[]): Outcome[];
}

/**
 * Fetches and verifies servers' signing keys into a key ring through a
 * `FederationClient`: notaries first (verified only with their configured
 * keys), then the server itself; only valid server names; at most once per
 * server per `retryAfterMs`.
 */
export class KeyFetcher {
  /**
   * @param opts.keyRing the ring to add keys to
   * @param opts.fetch the `fetch` to use (default the global one)
   * @param opts.keyServerUrl base URL of a server (default `https://{server}`)
   * @param opts.notaryServers servers asked when a server cannot be reached
   * @param opts.now clock, ms since the epoch
   * @param opts.timeoutMs per request (default 10 s)
   * @param opts.retryAfterMs a server is not asked again sooner (default 60 s)
   */
  constructor(opts: {
    keyRing: KeyRing;
    /** The client requests go through (without one, nothing is fetched). */
    client?: FederationClient;
    notaryServers?: NotaryServer[];
    now?: () => number;
    /** Per key request (default 10 000 ms, as Synapse). */
    timeoutMs?: number;
    /** A server is fetched at most once per this window (default 60 000 ms). */
    retryAfterMs?: number;
    /** Servers one `ensureForPdus` call may fetch (default 10). */
    maxServersPerBatch?: number;
    log?: (entry: FederationLogEntry) => void;
  });
  readonly keyRing: KeyRing;
  fetchKeys(server: ServerName): Promise<KeyFetchResult>;
  /**
   * Fetches the keys a batch of one room's PDUs needs: only the servers
   * whose signatures the room version requires (`requiredSigners`), only
   * those the ring lacks, only valid names, at most `maxServersPerBatch`.
   */
  ensureForPdus(pdus: Pdu[], roomVersion: string): Promise<KeyCheck>;
}

/**
 * Notaries for a `KeyFetcher`: a name alone takes its keys from
 * `trustedKeys` (throws if it has none there).
 */
export function notariesFrom(
  notaryServers: (ServerName | NotaryServer)[] | undefined,
  trustedKeys: Record<ServerName, Record<string, string>> | undefined,
): NotaryServer[];

/**
 * The servers whose signatures a PDU needs in a room version: the sender's
 * server (except for a third-party invite), and for a restricted join (v8+)
 * the server of `join_authorised_via_users_server`.
 */
export function requiredSigners(pdu: Pdu, roomVersion: string): ServerName[];

/** Codes of `FederationRequestError`. */
export type FederationErrorCode =
  | "invalid_server_name"
  | "invalid_request"
  | "private_address"
  | "backing_off"
  | "timeout"
  | "too_large"
  | "network"
  | "tls"
  | "http"
  | "bad_json";

/** Why a `FederationClient` request failed. */
export class FederationRequestError extends Error {
  readonly name: "FederationRequestError";
  readonly code: FederationErrorCode;
  /** The destination asked. */
  readonly destination: string | undefined;
  /** The HTTP status (`http`, `bad_json`, `too_large` after headers). */
  readonly status?: number;
  /** The answer's body (`http`): parsed JSON, or up to 1000 characters of text. */
  readonly body?: unknown;
  /** When the destination may be contacted again (`backing_off`), ms since the epoch. */
  readonly retryAt?: number;
}

/** A log entry of the federation client and key fetcher. */
export interface FederationLogEntry {
  level: "info" | "warn";
  /** A `FederationErrorCode`, `backoff`, or `key_fetch`. */
  code: string;
  destination?: ServerName;
  server?: ServerName;
  method?: string;
  target?: string;
  status?: number;
  /** One line, naming the server and the reason. */
  message: string;
}

/** An SRV record. */
export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  /** A host name (a trailing dot is ignored). */
  target: string;
}

/** Where a server's federation requests go (discovery's answer). */
export interface ResolvedServer {
  /** The server name asked about. */
  serverName: ServerName;
  /** The host connected to (an IP literal, `[IPv6]`, or a DNS name). */
  connectHost?: string;
  port?: number;
  /** `https://{connectHost}:{port}` (or the `baseUrl` override). */
  urlBase: string;
  /** The `Host` header the spec asks for. */
  hostHeader?: string;
  /** The name the TLS certificate must be valid for. */
  tlsServerName?: string;
  /**
   * The spec step: `ip_literal`, `explicit_port`, `well_known_ip_literal`,
   * `well_known_explicit_port`, `well_known_srv`, `well_known_deprecated_srv`,
   * `well_known_default_port`, `srv`, `deprecated_srv`, `default_port`, or
   * `override` (`baseUrl`).
   */
  via: string;
  /** The delegated server name, when `.well-known` delegated. */
  delegated?: string | null;
  /** Why `.well-known` gave no delegation, when it failed. */
  wellKnownError?: string | null;
}

/** The options of a `FederationClient`. */
export interface FederationClientOptions {
  /** Our server name: the `origin` of our requests. */
  serverName: ServerName;
  /** Our signing key: ID (`ed25519:…`) and 32-byte seed in unpadded base64. */
  signingKey: { keyId: string; seed: string };
  /**
   * The fetch to use (default `globalThis.fetch`). Called as
   * `fetch(url, init, { server: ResolvedServer })`: the third argument lets a
   * transport that can connect to `connectHost` with `tlsServerName` as SNI
   * and `hostHeader` as `Host` do so; the platform fetch ignores it.
   */
  fetch?: (url: string, init: RequestInit, target: { server: ResolvedServer }) => Promise<Response>;
  /** Allow loopback, private, link-local and unspecified addresses (default false; tests, `ALLOW_PRIVATE_ADDRESSES=true`). */
  allowPrivateAddresses?: boolean;
  /** Timeout of a whole request, discovery included (default 30 000 ms). */
  timeoutMs?: number;
  /** Largest response body (default 32 MiB); reading stops past it. */
  maxResponseBytes?: number;
  /**
   * SRV lookups (`_matrix-fed._tcp.…`, `_matrix._tcp.…`): `{records, ttl}`
   * (no records: an empty list); throw for a lookup failure. Without it,
   * discovery skips the SRV steps. See `dohSrvResolver`.
   */
  resolveSrv?: (name: string) => Promise<{ records: SrvRecord[]; ttl?: number }>;
  /**
   * Resolves a host name to addresses, so that names resolving to private
   * addresses are refused too (e.g. Node's `dns.promises.lookup` with `{all: true}`
   * mapped to addresses). Without it only IP literals and `localhost` are checked.
   */
  resolveHost?: (host: string) => Promise<string[]>;
  /**
   * A base URL used instead of discovery (tests, `KEY_SERVER_URL`): a
   * template with `{server}` or a function. Not subject to the address policy.
   */
  baseUrl?: string | ((serverName: ServerName) => string);
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Random numbers in [0, 1) (backoff and cache jitter, SRV weights). */
  random?: () => number;
  /** Where failures are logged (default: `console.warn` for `warn` entries). */
  log?: (entry: FederationLogEntry) => void;
  /** `User-Agent` (default `roomdag`). */
  userAgent?: string;
}

/** A federation request. */
export interface FederationRequest {
  /** Default `GET`. */
  method?: "GET" | "PUT" | "POST" | "DELETE";
  /** Path and query, starting `/_matrix/`, as sent and signed. */
  target: string;
  /** A JSON object (or its text). */
  body?: unknown;
  /** This request's timeout (ms), discovery included. */
  timeoutMs?: number;
  /** This request's response-size cap (bytes). */
  maxBytes?: number;
  /** Sign with X-Matrix (default true). */
  signed?: boolean;
  /** Make the request even while the destination backs off; a failure then does not lengthen the backoff. */
  ignoreBackoff?: boolean;
  /** Count a 404 as the destination being down (Synapse does for transactions). */
  backoffOn404?: boolean;
  /** Do not log this request's failure (the caller reports it). */
  quiet?: boolean;
}

/** A 2xx answer. */
export interface FederationResponse<T = unknown> {
  status: number;
  headers: Headers;
  json: T;
}

/**
 * The outbound federation client: server discovery (IP literal, explicit
 * port, cached `/.well-known/matrix/server`, SRV with `resolveSrv`, 8448),
 * X-Matrix-signed requests, timeouts, response-size caps, per-destination
 * backoff (Synapse's: 10 min, ×2 per failure, up to 7 days; success resets;
 * a live server's 4xx does not back off), and no request to private
 * addresses unless `allowPrivateAddresses`. Throws `FederationRequestError`.
 */
export class FederationClient {
  constructor(opts: FederationClientOptions);
  readonly serverName: ServerName;
  readonly allowPrivateAddresses: boolean;
  request<T = unknown>(destination: ServerName, req: FederationRequest): Promise<FederationResponse<T>>;
  get<T = unknown>(destination: ServerName, target: string, opts?: Omit<FederationRequest, "method" | "target" | "body">): Promise<T>;
  post<T = unknown>(destination: ServerName, target: string, body: unknown, opts?: Omit<FederationRequest, "method" | "target" | "body">): Promise<T>;
  put<T = unknown>(destination: ServerName, target: string, body: unknown, opts?: Omit<FederationRequest, "method" | "target" | "body">): Promise<T>;
  /** Where requests to `destination` go (discovery, cached). */
  resolve(destination: ServerName, opts?: { timeoutMs?: number }): Promise<ResolvedServer>;
  /** The destination's backoff, if it is backing off now. */
  backoffOf(destination: ServerName): { retryAt: number; retryInterval: number; failureTs: number | null } | undefined;
  /** Forgets a destination's backoff. */
  resetBackoff(destination: ServerName): void;
}

/** Whether `name` is a valid server name (one the client would contact). */
export function isValidServerName(name: unknown): boolean;
/** Why `name` is not a valid server name, or `undefined`. */
export function serverNameError(name: unknown): string | undefined;
/** An SRV resolver over DNS-over-HTTPS (JSON API), for `resolveSrv`. */
export function dohSrvResolver(opts: { url: string; fetch?: typeof fetch; timeoutMs?: number }): (name: string) => Promise<{ records: SrvRecord[]; ttl: number }>;
/** A host resolver over DNS-over-HTTPS (A and AAAA), for `resolveHost`; answers cached for their TTL (≤ 1 h). */
export function dohHostResolver(opts: { url: string; fetch?: typeof fetch; timeoutMs?: number; now?: () => number }): (host: string) => Promise<string[]>;
/** 30 000 ms. */
export const DEFAULT_TIMEOUT_MS: number;
/** 32 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES: number;


/**
 * Trusted keys: server → key ID → the public key (unpadded base64), e.g.
 * `{"a.example": {"ed25519:1": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ"}}`.
 * (A fixture's `servers` map is not one: take each server's `verify_keys`.)
 */
export type TrustedKeys = Record<ServerName, Record<string, string>>;

/** Pins trusted keys into a ring; returns the ring. */
export function pinKeys(keyRing: KeyRing, trustedKeys: TrustedKeys | undefined): KeyRing;

/**
 * The rooms a server hosts, each on its own store. `createStore(roomId)`
 * returns the store for a room (existing data is loaded on first use).
 */
export class RoomDirectory implements RoomResolver {
  /** @param opts.createStore the store of a room, by room ID */
  constructor(opts: { createStore: (roomId: RoomId) => RoomStore });
  /** The room, if it exists (open in memory, or in its store). */
  get(roomId: RoomId): Promise<RoomEngine | undefined>;
  /** Creates an empty room, or returns the existing one (of the same version: another is an error). */
  create(roomId: RoomId, roomVersion: RoomVersion): Promise<RoomEngine>;
  /** The rooms open in memory. */
  openRooms(): Promise<RoomEngine[]>;
  /** The open room that stores `eventId`, if any. */
  findEvent(eventId: EventId): Promise<RoomEngine | undefined>;
}

/** The options of a `FederationServer`. */
export interface FederationServerOptions {
  serverName: ServerName;
  /** Our signing key: ID (`ed25519:…`) and 32-byte seed in unpadded base64. */
  signingKey: { keyId: string; seed: string };
  rooms: RoomResolver;
  /** Pinned origin keys: server → key ID → unpadded base64. */
  trustedKeys?: TrustedKeys;
  /**
   * Notaries asked for keys (before the server itself, as Synapse): a name
   * alone takes its keys from `trustedKeys`; answers are verified with those
   * keys only.
   */
  notaryServers?: (ServerName | NotaryServer)[];
  /** The key ring to use (default a new one); our own key and `trustedKeys` are pinned into it. */
  keyRing?: KeyRing;
  /** The client keys are fetched with (default: one built from the options below). */
  federationClient?: FederationClient;
  fetch?: typeof fetch;
  /** A base URL used instead of discovery: a `{server}` template or a function (tests). */
  keyServerUrl?: string | ((server: ServerName) => string);
  /** Allow key fetches from loopback/private addresses (default false). */
  allowPrivateAddresses?: boolean;
  resolveSrv?: FederationClientOptions["resolveSrv"];
  resolveHost?: FederationClientOptions["resolveHost"];
  /** Servers whose keys one `/send` may make us fetch (default 10); PDUs needing more are refused. */
  maxKeyServersPerTransaction?: number;
  /** Federation and key-fetch failures (default: `console.warn`). */
  log?: (entry: FederationLogEntry) => void;
  /**
   * Origins whose `/send` may start a room this server does not hold, with a
   * create event that passes every check: server names (array or
   * comma-separated), or `"*"` for any. Default: none (such PDUs are ignored).
   */
  acceptRoomsFrom?: string | ServerName[];
  /** Where internal errors go (default `console.error`); a 500 answer never carries them. */
  onError?: (error: unknown, context: { request?: Request }) => void;
  /** Clock, ms since the epoch. */
  now?: () => number;
  /** Timeout of one key request (default 10 s). */
  keyFetchTimeoutMs?: number;
  /** Answered transactions remembered in memory (default 1000). */
  txnCacheSize?: number;
  /**
   * A durable log of answered transactions: a retried `PUT /send/{txnId}`
   * from the same origin gets the first answer even when it reaches another
   * process (a Worker isolate) or a restarted one.
   */
  transactions?: TransactionLog;
}

/** A transaction's answer, as a `TransactionLog` keeps it. */
export interface TransactionResponse {
  status: number;
  body: unknown;
}

/** Where a `FederationServer` keeps the answers of `/send` transactions. */
export interface TransactionLog {
  /** The answer given to `origin`'s transaction `txnId`, if any. */
  get(origin: ServerName, txnId: string): Promise<TransactionResponse | undefined>;
  /** Records a 200 answer (and ends the transaction's lease, with `begin`). */
  put(origin: ServerName, txnId: string, response: TransactionResponse): Promise<void>;
  /**
   * Starts a transaction: its logged answer, `busy` while another transaction
   * of the origin runs (in any process: the server answers 429), or `{}`.
   */
  begin?(origin: ServerName, txnId: string): Promise<{ response?: TransactionResponse; busy?: boolean }>;
  /** Ends a transaction that got no 200 answer. */
  end?(origin: ServerName, txnId: string): Promise<void>;
}

/** Bounds of gap filling and backfilling (see `RoomMirror`). */
export const MIRROR_LIMITS: Readonly<{
  gapRounds: number;
  gapEvents: number;
  eventFetches: number;
  gapMs: number;
  backfillRequests: number;
  rebuildEvery: number;
  parkedPerRoom: number;
  /** A send_join answer's events are verified and stored this many per batch. */
  joinBatch: number;
}>;

/** A pushed PDU kept until its prev events can be placed. */
export interface ParkedPdu {
  pdu: string;
  origin: ServerName;
  /** When it was parked, ms since the epoch. */
  at: number;
}

/** Where a `RoomMirror` keeps pushed PDUs whose prev events could not be fetched (in memory; a host may use its storage). */
export class MemoryParking {
  constructor(cap?: number);
  put(roomId: RoomId, eventId: EventId, entry: ParkedPdu): Promise<void>;
  list(roomId: RoomId): Promise<(ParkedPdu & { eventId: EventId })[]>;
  delete(roomId: RoomId, eventId: EventId): Promise<void>;
}

/** Errors of federation participation (`name` is "MirrorError"). */
export class MirrorError extends RoomdagError {}

/** What a `RoomMirror` needs to send federation requests (e.g. a `FederationClient`). */
export interface OutboundClient {
  request(destination: ServerName, req: { method: string; target: string; body?: unknown }): Promise<{ status: number; json: any }>;
}

/** Progress of a join or backfill (`phase` says which step). */
export type MirrorProgress = { phase: string; [k: string]: unknown };

/** The result of a backfill run. */
export interface BackfillResult {
  complete: boolean;
  /** No server has what is still missing. */
  stalled: boolean;
  /** Parked PDUs placed at the end of the run. */
  parkedPlaced: number;
  fetched: number;
  requests: number;
  rebuilds: number;
  skipped: number;
  unreachable: EventId[];
  remainingGaps: number;
  events: number;
}

/**
 * A server taking part in rooms over federation: joins (make_join → send_join, every event checked),
 * backfills history to the create event, fills gaps before pushed PDUs, leaves, and accepts invites.
 */
export class RoomMirror {
  constructor(opts: {
    serverName: ServerName;
    signingKey: { keyId: string; seed: string };
    rooms: RoomDirectory;
    client: OutboundClient;
    keyRing: KeyRing;
    keys?: { ensureForPdus(pdus: string[], roomVersion?: string): Promise<unknown> };
    joinLocalpart?: string;
    log?: (line: Record<string, unknown>) => void;
    limits?: Partial<typeof MIRROR_LIMITS>;
    /** Where pushed PDUs that cannot be placed yet are kept (default in memory). */
    parked?: Pick<MemoryParking, "put" | "list" | "delete">;
  });
  /** The user rooms are joined as (`@roomdag:serverName` by default). */
  readonly userId: string;
  resolveAlias(alias: string): Promise<{ roomId: RoomId; servers: ServerName[] }>;
  join(room: RoomId | string, via?: ServerName[], opts?: { onProgress?: (p: MirrorProgress) => void; backfill?: boolean }): Promise<{ roomId: RoomId; roomVersion: string; eventId: EventId; via: ServerName; stateEvents: number; authEvents: number; dropped: number; backfill?: BackfillResult }>;
  backfill(roomId: RoomId, opts?: { onProgress?: (p: MirrorProgress) => void; prefer?: ServerName[]; maxRequests?: number; finalRebuild?: boolean }): Promise<BackfillResult>;
  /** Stores PDUs pushed by `origin`, filling gaps first; one outcome per PDU, and how many holes remain for backfill. */
  receive(engine: RoomEngine, pdus: string[], origin: ServerName): Promise<{ outcomes: Outcome[]; holes: number }>;
  leave(roomId: RoomId, opts?: { via?: ServerName[] }): Promise<{ roomId: RoomId; eventId: EventId; via: ServerName; outcome: Outcome }>;
  /** Places parked PDUs whose prev events are now placed; returns how many were stored. */
  retryParked(engine: RoomEngine): Promise<number>;
  acceptInvite(req: { body: string; v2: boolean; roomId: RoomId; eventId: EventId; origin: ServerName }): { status: number; body: unknown; accepted?: { roomId: RoomId; roomVersion: string; inviterServer: ServerName } };
}

/**
 * A federation server for the rooms of a `RoomDirectory` (or any
 * `RoomResolver`): `handleFederationRequest(request)` answers `PUT /send`,
 * `/event`, `/state`, `/state_ids`, `/backfill`, `/get_missing_events`,
 * `/timestamp_to_event`, `/version` and `/_matrix/key/v2/server`.
 */
export class FederationServer {
  /** Checks every option now: a wrong one throws here, not on the first request. */
  constructor(opts: FederationServerOptions);
  /** The key ring (pinned and fetched keys). */
  readonly keyRing: KeyRing;
  /** The key fetcher (shared with anything else that verifies signatures). */
  readonly keyFetcher: KeyFetcher;
  /** The outbound federation client keys are fetched with (reuse it: one discovery cache, one backoff state). */
  readonly federationClient: FederationClient;
  /** Our server name. */
  readonly serverName: ServerName;
  /** Answers one federation request (WHATWG `Request` → `Response`). Never throws: failures become error responses. */
  handleFederationRequest(request: Request): Promise<Response>;
}

/** Rejected events a room stores from one origin per window (past either bound: refused). */
export const REJECTED_PER_ORIGIN: { events: number; bytes: number; windowMs: number; origins: number };
/** Longest per-PDU `error` in a `/send` answer, in bytes. */
export const MAX_PDU_ERROR_BYTES: number;
/** How long and how much `/state` and `/state_ids` answers are shared. */
export const STATE_CACHE: { ttlMs: number; maxEntries: number; maxBytes: number };
/** The serving limits the JS layer enforces before calling into the core. */
export function servingLimits(): { maxBodyBytes: number; maxTxnPdus: number; maxTxnEdus: number; maxTxnIdBytes: number; maxReasonBytes: number };

/** The wasm module's memory in bytes: the most the engine has held at once (it never shrinks). */
export function wasmMemoryBytes(): number;

/** Groups PDUs by room (order kept within a room); a create event's room is derived. */
export function groupPdusByRoom(pdus: Pdu[]): Map<RoomId, { pdus: string[]; createVersion: string | undefined; create: string | undefined }>;

/**
 * Signs a federation request as `origin` (spec "Request Authentication"):
 * the `Authorization` header value, `X-Matrix origin=…,destination=…,key=…,sig=…`.
 * `target` is the path and query as sent; `body` the JSON body, if any.
 */
export function signRequest(opts: {
  origin: ServerName;
  keyId: string;
  seed: string;
  destination: ServerName;
  method: string;
  target: string;
  body?: Pdu;
}): string;

/** A server's signed `/_matrix/key/v2/server` answer. */
export function serverKeysResponse(opts: { serverName: ServerName; keyId: string; seed: string; now?: number; validityMs?: number }): {
  server_name: ServerName;
  valid_until_ts: number;
  verify_keys: Record<string, { key: string }>;
  old_verify_keys: Record<string, { key: string; expired_ts: number }>;
  signatures: Record<ServerName, Record<string, string>>;
};

/** Signs a JSON object (spec "Signing JSON") as `server`; returns a signed copy. */
export function signJson<T extends Record<string, unknown>>(object: T, key: { server: ServerName; keyId: string; seed: string }): T & {
  signatures: Record<ServerName, Record<string, string>>;
};
/** The public key of a signing key seed (unpadded base64). */
export function publicKeyOf(seed: string): string;
/** Hashes and signs an event as `server` (tools and tests). */
export function signPdu(
  pdu: Pdu,
  opts: { roomVersion: RoomVersion; server: ServerName; keyId: string; seed: string },
): { eventId: EventId; pdu: Record<string, unknown> };
/** The redacted form of a PDU (the room version's redaction algorithm). */
export function redactPdu(pdu: Pdu, roomVersion: RoomVersion): Record<string, unknown>;
/** The event ID of a PDU in a room version (its reference hash). */
export function eventIdOf(pdu: Pdu, roomVersion: RoomVersion): EventId;

/** `roomdag-answers/1`: a fixture's replay and the answers to its queries. */
export interface Answers {
  format: "roomdag-answers/1";
  room_id: RoomId | null;
  events: { event_id: EventId; status: "accepted" | "rejected" | "dropped"; state_before?: string; state_after?: string; reason?: string }[];
  forward_extremities: EventId[];
  current_state_digest: string;
  servers_in_room: ServerName[];
  answers: ({ id: string; status: number } & Record<string, unknown>)[];
}

/** JSON input: the text, its UTF-8 bytes, or the parsed object. */
export type JsonInput<T> = string | Uint8Array | ArrayBuffer | T;

/** Replays a fixture (`matrix-dag-oracle/1`) and answers its queries (`roomdag-queries/1`). */
export function replayFixture(fixture: JsonInput<RoomFixture>, queries: JsonInput<Record<string, unknown>>): Answers;
/**
 * Like `replayFixture`, as JSON text byte-identical to the native CLI's
 * output. `verify`, when given, replaces the built-in ed25519 check.
 */
export function replayFixtureText(
  fixture: JsonInput<RoomFixture>,
  queries: JsonInput<Record<string, unknown>>,
  verify?: (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array) => boolean,
): string;
/** A fixture's graph: the `roomdag-graph/1` object. */
export function exportFixture(fixture: JsonInput<RoomFixture>, format?: "json"): Graph;
/** A fixture's graph as Graphviz DOT (with auth edges if `authEdges`). */
export function exportFixture(fixture: JsonInput<RoomFixture>, format: "dot", authEdges?: boolean): string;
/** A `matrix-dag-oracle/1` room fixture. */
export interface RoomFixture {
  format: "matrix-dag-oracle/1";
  room_version: string;
  room_id: RoomId;
  servers: Record<ServerName, { verify_keys: Record<string, string>; signing_key_seed?: string; users?: string[] }>;
  events: { event_id: EventId; origin: ServerName; pdu: Record<string, unknown>; meta?: Record<string, unknown> }[];
}
/**
 * A synthetic demo room (three servers, forks, a merge, a redaction, a
 * rejection) of about `events` events (default 200; at least 40 are made; at
 * most 10000 may be asked for).
 */
export function demoRoom(events?: number): RoomFixture;
/** A room built from a fixture (signatures checked with its servers' keys), for inspection; its store keeps nothing. */
export function roomFromFixture(fixture: JsonInput<RoomFixture>): RoomEngine;
