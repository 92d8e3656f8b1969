// The Worker's configuration, from wrangler vars and secrets, checked once
// per isolate. Every problem is reported at once, with the variable's name.

export interface Env {
  ROOMS: DurableObjectNamespace;
  DIRECTORY: DurableObjectNamespace;
  /** Event ID → room ID, in `EVENT_INDEX_SHARDS` shards (for `GET /event`). */
  EVENT_INDEX: DurableObjectNamespace;
  /** Answered `/send` transactions, one object per origin server. */
  TRANSACTIONS: DurableObjectNamespace;
  ASSETS?: { fetch(request: Request): Promise<Response> };
  /** Our server name, e.g. `matrix.example.org`. */
  SERVER_NAME?: string;
  /** Our signing key: `ed25519:<version> <seed>` or Synapse's `ed25519 <version> <seed>` (seed: unpadded base64). */
  SIGNING_KEY?: string;
  /** Pinned origin keys, JSON: `{"server": {"ed25519:1": "<base64>"}}`. */
  TRUSTED_KEYS?: string;
  /**
   * Notary servers for key lookups: comma-separated, or a JSON array. Each
   * needs its keys in `TRUSTED_KEYS`: only those verify its answers.
   */
  NOTARY_SERVERS?: string;
  /** Bearer token of the admin API (at least 16 characters). */
  ADMIN_TOKEN?: string;
  /**
   * Who may use the read-only inspector API (`/_roomdag/rooms…`, `/_roomdag/config`):
   * unset or `closed` (default): bearer ADMIN_TOKEN only; `loopback`: also
   * requests addressed to a loopback host (127.0.0.1, localhost, [::1] — for
   * `npm start`); `open`: anyone (public: every stored PDU, also redacted ones).
   */
  INSPECTOR?: string;
  /**
   * Origins whose `/send` may start a room this server does not hold (with a
   * valid, correctly signed create event): comma-separated server names, or
   * `*` for any. Unset (default): none — PDUs for unknown rooms are ignored.
   */
  ACCEPT_ROOMS_FROM?: string;
  /** Base URL template used instead of server discovery (tests): `http://127.0.0.1:9000/{server}`. */
  KEY_SERVER_URL?: string;
  /** The room the visualizer opens at `/` when the address names none (npm start: the demo room). */
  DEFAULT_ROOM?: string;
  /** `true`: outbound requests may go to loopback/private addresses (tests, local development). */
  ALLOW_PRIVATE_ADDRESSES?: string;
  /** A DNS-over-HTTPS JSON endpoint (e.g. `https://cloudflare-dns.com/dns-query`) for SRV lookups in discovery. */
  DOH_URL?: string;
  /** Servers whose invites for our join user are accepted (then the room is joined): comma-separated, `*` for any; default none. */
  ACCEPT_INVITES_FROM?: string;
  /** Localpart of the user we join rooms as (default `roomdag`: `@roomdag:SERVER_NAME`). */
  JOIN_LOCALPART?: string;
  /**
   * Served as `GET /.well-known/matrix/server` → `{"m.server": WELL_KNOWN_SERVER}`
   * when set (404 otherwise): where other servers reach us, e.g.
   * `roomdag.example.org:443` (Cloudflare serves 443; without a port they use 8448).
   */
  WELL_KNOWN_SERVER?: string;
  /**
   * MiB of PDU texts a room object keeps in memory (default 8): the texts
   * live in the object's SQLite database, read back through a cache of
   * this size.
   */
  PAGE_CACHE_MIB?: string;
  /**
   * A room object writes a new image of its room (read back on its next
   * start instead of replaying its log) once this many records follow the
   * last one, or a sixteenth of the room if more (default 1000).
   */
  IMAGE_AFTER_RECORDS?: string;
}

export interface Config {
  serverName: string;
  signingKey: { keyId: string; seed: string };
  trustedKeys: Record<string, Record<string, string>>;
  notaryServers: string[];
  adminToken: string;
  inspector: "closed" | "loopback" | "open";
  acceptRoomsFrom: string[];
  /** Set only by `KEY_SERVER_URL`: the base URL of a server, instead of discovery. */
  keyServerUrl: ((server: string) => string) | undefined;
  allowPrivateAddresses: boolean;
  dohUrl: string | undefined;
  /** Servers whose invites are accepted (`["*"]`: any). */
  acceptInvitesFrom: string[];
  joinLocalpart: string;
  /** The `m.server` of `/.well-known/matrix/server`, if served. */
  wellKnownServer?: string;
  /** Bytes of PDU texts a room object caches (`PAGE_CACHE_MIB`). */
  pageCacheBytes: number;
  /** Records after a room's image that make a new one due (`IMAGE_AFTER_RECORDS`). */
  imageAfterRecords: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`roomdag: invalid configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

const B64 = /^[A-Za-z0-9+/]{43}=?$/;
const SERVER_NAME = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,255})(:\d{1,5})?$/;

export function parseConfig(env: Env): Config {
  const problems: string[] = [];
  const serverName = (env.SERVER_NAME ?? "").trim();
  if (!serverName) problems.push("SERVER_NAME is not set");
  else if (!SERVER_NAME.test(serverName)) problems.push(`SERVER_NAME ${JSON.stringify(serverName)} is not a valid server name`);

  let signingKey = { keyId: "", seed: "" };
  const sk = (env.SIGNING_KEY ?? "").trim();
  if (!sk) problems.push("SIGNING_KEY is not set (format: `ed25519:<version> <seed>`)");
  else {
    const parts = sk.split(/\s+/);
    const [keyId, seed] = parts.length === 3 && parts[0] === "ed25519" ? [`ed25519:${parts[1]}`, parts[2]] : [parts[0], parts[1]];
    if (!keyId?.startsWith("ed25519:") || keyId.length <= 8) problems.push("SIGNING_KEY must start with `ed25519:<version>`");
    else if (!seed || !B64.test(seed)) problems.push("SIGNING_KEY's seed must be 32 bytes of unpadded base64");
    else signingKey = { keyId, seed: seed.replace(/=$/, "") };
  }

  let trustedKeys: Record<string, Record<string, string>> = {};
  if (env.TRUSTED_KEYS?.trim()) {
    try {
      const parsed: unknown = JSON.parse(env.TRUSTED_KEYS);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      for (const [server, keys] of Object.entries(parsed as Record<string, unknown>)) {
        if (!keys || typeof keys !== "object") throw new Error(`keys of ${server} are not an object`);
        for (const [keyId, b64] of Object.entries(keys as Record<string, unknown>)) {
          if (typeof b64 !== "string" || !B64.test(b64)) throw new Error(`${server} ${keyId} is not a base64 ed25519 key`);
        }
      }
      trustedKeys = parsed as Record<string, Record<string, string>>;
    } catch (e) {
      problems.push(`TRUSTED_KEYS is not valid JSON of {server: {keyId: base64}}: ${(e as Error).message}`);
    }
  }

  let notaryServers: string[] = [];
  const notaries = (env.NOTARY_SERVERS ?? "").trim();
  if (notaries) {
    try {
      notaryServers = notaries.startsWith("[") ? (JSON.parse(notaries) as string[]) : notaries.split(",").map((s) => s.trim()).filter(Boolean);
      for (const n of notaryServers) if (typeof n !== "string" || !SERVER_NAME.test(n)) throw new Error(`${JSON.stringify(n)} is not a server name`);
      for (const n of notaryServers) if (!trustedKeys[n]) throw new Error(`notary ${n} has no keys in TRUSTED_KEYS (only they verify its answers)`);
    } catch (e) {
      problems.push(`NOTARY_SERVERS: ${(e as Error).message}`);
    }
  }

  const allowPrivate = (env.ALLOW_PRIVATE_ADDRESSES ?? "").trim().toLowerCase();
  if (allowPrivate && allowPrivate !== "true" && allowPrivate !== "false") problems.push("ALLOW_PRIVATE_ADDRESSES must be true or false");
  const dohUrl = (env.DOH_URL ?? "").trim() || undefined;
  if (dohUrl && !/^https:\/\/[^/]+/.test(dohUrl)) problems.push("DOH_URL must be an https:// URL");

  const acceptInvitesFrom = (env.ACCEPT_INVITES_FROM ?? "").split(",").map((x) => x.trim()).filter(Boolean);
  for (const n of acceptInvitesFrom) if (n !== "*" && !SERVER_NAME.test(n)) problems.push(`ACCEPT_INVITES_FROM: ${JSON.stringify(n)} is not a server name`);
  const joinLocalpart = (env.JOIN_LOCALPART ?? "").trim() || "roomdag";
  if (!/^[a-z0-9._=\-/+]+$/.test(joinLocalpart)) problems.push(`JOIN_LOCALPART ${JSON.stringify(joinLocalpart)} is not a valid user ID localpart (a-z, 0-9, ._=-/+)`);

  const adminToken = env.ADMIN_TOKEN ?? "";
  if (adminToken.length < 16) problems.push("ADMIN_TOKEN must be set to at least 16 characters");

  const inspector = (env.INSPECTOR ?? "").trim() || "closed";
  if (inspector !== "closed" && inspector !== "loopback" && inspector !== "open") {
    problems.push(`INSPECTOR must be closed (default), loopback or open, not ${JSON.stringify(inspector)}`);
  }

  const acceptRoomsFrom = (env.ACCEPT_ROOMS_FROM ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  for (const s of acceptRoomsFrom) {
    if (s !== "*" && !SERVER_NAME.test(s)) problems.push(`ACCEPT_ROOMS_FROM: ${JSON.stringify(s)} is not a server name (or *)`);
  }

  const wellKnownServer = (env.WELL_KNOWN_SERVER ?? "").trim() || undefined;
  if (wellKnownServer && !SERVER_NAME.test(wellKnownServer)) {
    problems.push(`WELL_KNOWN_SERVER ${JSON.stringify(wellKnownServer)} is not a server name (host, optionally :port, e.g. roomdag.example.org:443)`);
  }

  const pageCacheMib = (env.PAGE_CACHE_MIB ?? "").trim() || "8";
  const pageCache = Number(pageCacheMib);
  if (!/^\d+(\.\d+)?$/.test(pageCacheMib) || !(pageCache <= 1024)) problems.push(`PAGE_CACHE_MIB must be a number of MiB from 0 to 1024, not ${JSON.stringify(pageCacheMib)}`);

  const imageAfter = (env.IMAGE_AFTER_RECORDS ?? "").trim() || "1000";
  if (!/^\d{1,9}$/.test(imageAfter) || Number(imageAfter) < 1) problems.push(`IMAGE_AFTER_RECORDS must be a whole number of records from 1, not ${JSON.stringify(imageAfter)}`);

  if (problems.length) throw new ConfigError(problems);
  const template = env.KEY_SERVER_URL;
  return {
    serverName,
    signingKey,
    trustedKeys,
    notaryServers,
    adminToken,
    inspector: inspector as Config["inspector"],
    acceptRoomsFrom,
    keyServerUrl: template ? (server) => template.replaceAll("{server}", server) : undefined,
    allowPrivateAddresses: allowPrivate === "true",
    dohUrl,
    acceptInvitesFrom,
    joinLocalpart,
    wellKnownServer,
    pageCacheBytes: Math.round(pageCache * 1024 * 1024),
    imageAfterRecords: Number(imageAfter),
  };
}

let cached: { env: Env; config: Config | ConfigError } | undefined;

/** The config for this isolate (parsed once; errors are remembered too). */
export function configOf(env: Env): Config {
  if (!cached || cached.env !== env) {
    let config: Config | ConfigError;
    try {
      config = parseConfig(env);
    } catch (e) {
      config = e instanceof ConfigError ? e : new ConfigError([String(e)]);
      console.error(config.message);
    }
    cached = { env, config };
  }
  if (cached.config instanceof ConfigError) throw cached.config;
  return cached.config;
}
