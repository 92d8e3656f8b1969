// The live-Synapse test harness: real Synapse homeservers (tests/live/live.py)
// and the Worker under `wrangler dev`, federating over TLS on loopback with a
// throwaway CA (tests/live/ca.sh).
//
//   hs1.test:8448, hs2.test:8449   Synapse (TLS for federation; plain HTTP on a
//                                  free port for the test clients)
//   roomdag.test:8443              the Worker (wrangler dev --local-protocol https)
//
// State lives in $ROOMDAG_LIVE_DIR (default /dev/shm/roomdag-live-test): the CA,
// certificates, one directory per Synapse, the Worker's storage. `scripts/test.mjs`
// (tier `live`) checks the prerequisites, makes the certificates, maps the names
// in /etc/hosts, starts hs1 and hs2, runs tests/live/*.test.mjs and stops
// everything. A test file run alone (`node --test tests/live/x.test.mjs`) starts
// what it needs and stops what it started.
import { spawnSync, spawn } from "node:child_process";
import { request as httpsRequest } from "node:https";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync, mkdirSync, accessSync, constants } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { signRequest, publicKeyOf } from "../../pkg/node.js";
import { startWorker } from "../worker/wrangler.mjs";

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, "..", "..");

export const LIVE_DIR =
  process.env.ROOMDAG_LIVE_DIR ?? join(existsSync("/dev/shm") && writable("/dev/shm") ? "/dev/shm" : tmpdir(), "roomdag-live-test");
/**
 * TLS ports (part of each server name); `ROOMDAG_LIVE_PORTS=hs1=8446,hs2=8447`
 * moves some (scripts/bench-live.mjs, beside a test run).
 */
export const PORTS = {
  roomdag: 8443,
  hs1: 8448,
  hs2: 8449,
  ...Object.fromEntries((process.env.ROOMDAG_LIVE_PORTS ?? "").split(",").filter(Boolean).map((kv) => kv.split("=")).map(([k, v]) => [k, Number(v)])),
};
export const HOSTS = ["hs1.test", "hs2.test", "roomdag.test"];
export const ROOMDAG = `roomdag.test:${PORTS.roomdag}`;
export const serverName = (name) => `${name}.test:${PORTS[name]}`;
export const ADMIN_TOKEN = "live-admin-token-0123456789";
/** Synapse stops by itself after this long, whatever happens to us. */
const SYNAPSE_TTL = Number(process.env.ROOMDAG_LIVE_TTL ?? 3600);

function writable(p) {
  try {
    accessSync(p, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The Python that runs Synapse (set by scripts/test.mjs, or given by the developer). */
export function synapsePython() {
  return process.env.ROOMDAG_SYNAPSE_PYTHON ?? process.env.ROOMDAG_ORACLE_PYTHON ?? [join(root, ".roomdag/oracle-venv/bin/python"), join(root, "..", "shared/oracle/.venv/bin/python")].find(existsSync);
}

/** Names that /etc/hosts does not map to 127.0.0.1 yet. */
export function unmappedHosts(hosts = HOSTS) {
  const known = new Set(
    readFileSync("/etc/hosts", "utf8")
      .split("\n")
      .map((l) => l.replace(/#.*/, "").trim().split(/\s+/))
      .filter((w) => w[0] === "127.0.0.1")
      .flatMap((w) => w.slice(1)),
  );
  return hosts.filter((h) => !known.has(h));
}

/**
 * Why the live tests cannot run here (a sentence), or null. Checks only; the
 * tier (scripts/test.mjs) installs Synapse and maps the names first.
 */
export function skipReason() {
  const py = synapsePython();
  if (!py || !existsSync(py)) return "no Python with Synapse (set ROOMDAG_SYNAPSE_PYTHON, or run ROOMDAG_TEST_ONLY=live npm test, which installs it)";
  if (spawnSync("openssl", ["version"]).status !== 0) return "openssl is not installed (needed for the test CA)";
  const missing = unmappedHosts();
  if (missing.length && !writable("/etc/hosts")) return `/etc/hosts lacks '127.0.0.1 ${missing.join(" ")}' and is not writable (needs root)`;
  return null;
}

function python(args, { check = true } = {}) {
  const r = spawnSync("python3", [join(here, "live.py"), "--dir", LIVE_DIR, ...args], {
    encoding: "utf8",
    env: { ...process.env, ROOMDAG_SYNAPSE_PYTHON: synapsePython(), ROOMDAG_LIVE_DIR: LIVE_DIR },
  });
  if (check && r.status !== 0) throw new Error(`live.py ${args.join(" ")} failed (${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** The CA, the certificates and the /etc/hosts entries (idempotent). */
export function prepare() {
  mkdirSync(LIVE_DIR, { recursive: true });
  const r = spawnSync("bash", [join(here, "ca.sh"), LIVE_DIR, ...HOSTS], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ca.sh failed: ${r.stderr}`);
  if (unmappedHosts().length) python(["hosts", ...unmappedHosts()]);
  return { ca: join(LIVE_DIR, "ca", "ca.crt"), certs: join(LIVE_DIR, "certs") };
}

export const caPem = () => readFileSync(join(LIVE_DIR, "ca", "ca.crt"), "utf8");

const started = new Set();

/**
 * Starts Synapse NAME (hs1, hs2) on its port, or finds it running; returns its
 * info (`server_name`, `client_url`, `access_log`, `shared_secret`, `dir`, …).
 * `fresh` wipes its data first.
 */
export async function synapse(name, { fresh = false } = {}) {
  prepare();
  const port = PORTS[name];
  if (!port) throw new Error(`no port for ${name}`);
  const args = ["start", name, String(port), "--ttl", String(SYNAPSE_TTL), ...(fresh ? ["--fresh"] : [])];
  const running = readInfo(name);
  // A fixed plain-HTTP port for the client API keeps a restarted server's URL.
  args.push("--http-port", String(running?.http_port ?? (await freeLocalPort())));
  const out = await new Promise((resolve, reject) => {
    const p = spawn("python3", [join(here, "live.py"), "--dir", LIVE_DIR, ...args], {
      env: { ...process.env, ROOMDAG_SYNAPSE_PYTHON: synapsePython() },
    });
    let so = "";
    let se = "";
    p.stdout.on("data", (d) => (so += d));
    p.stderr.on("data", (d) => (se += d));
    p.on("exit", (code) => (code === 0 ? resolve(so) : reject(new Error(`live.py start ${name} failed (${code}):\n${se}${so}`))));
  });
  const info = JSON.parse(out);
  if (!info.already_running) started.add(name);
  return info;
}

function readInfo(name) {
  const p = join(LIVE_DIR, name, "info.json");
  return existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : null;
}

async function freeLocalPort() {
  const { freePort } = await import("../worker/wrangler.mjs");
  return freePort();
}

/** Stops Synapse NAME (by the PID live.py recorded). */
export function stopSynapse(name) {
  python(["stop", name]);
  started.delete(name);
}

/** Synapse NAME's signing key, as `{keyId, seed}` (to sign requests as that server). */
export function synapseKey(name) {
  const [alg, version, seed] = readFileSync(join(LIVE_DIR, name, "signing.key"), "utf8").trim().split(/\s+/);
  return { keyId: `${alg}:${version}`, seed };
}

/** A fresh signing key. */
export function newSigningKey(version = "live") {
  return { keyId: `ed25519:${version}`, seed: randomBytes(32).toString("base64").replace(/=+$/, "") };
}

/**
 * The Worker's signing key: made once per state directory and kept, like a
 * deployment's (Synapse caches the keys it fetched: a new key under the same
 * key ID would look forged to a server that saw the old one).
 */
export function roomdagKey() {
  const p = join(LIVE_DIR, "roomdag", "signing.key");
  if (!existsSync(p)) {
    mkdirSync(dirname(p), { recursive: true });
    const k = newSigningKey(`live_${randomBytes(2).toString("hex")}`);
    writeFileSync(p, `${k.keyId} ${k.seed}\n`);
  }
  const [keyId, seed] = readFileSync(p, "utf8").trim().split(/\s+/);
  return { keyId, seed };
}

const workers = new Set();

/**
 * Starts the Worker as roomdag.test:8443 over HTTPS (the roomdag.test
 * certificate), trusting the test CA for its outbound fetches. `vars` adds
 * Worker variables; `persistTo` reuses storage (a restart). Returns
 * `{url, persist, stop, output, serverName, signingKey, adminToken}`.
 */
export async function roomdag({ signingKey = roomdagKey(), vars = {}, persistTo } = {}) {
  const { ca, certs } = prepare();
  mkdirSync(join(LIVE_DIR, "roomdag"), { recursive: true });
  const w = await startWorker({
    vars: {
      SERVER_NAME: ROOMDAG,
      SIGNING_KEY: `${signingKey.keyId} ${signingKey.seed}`,
      ADMIN_TOKEN,
      INSPECTOR: "open",
      NOTARY_SERVERS: "",
      // hs1.test etc. are 127.0.0.1: outbound federation must be let reach loopback.
      ALLOW_PRIVATE_ADDRESSES: "true",
      ...vars,
    },
    persistTo: persistTo ?? join(LIVE_DIR, "roomdag", `state-${Date.now()}`),
    port: PORTS.roomdag,
    https: { cert: join(certs, "roomdag.test.crt"), key: join(certs, "roomdag.test.key"), ca: caPem(), host: "roomdag.test" },
    env: { NODE_EXTRA_CA_CERTS: ca },
    pidFile: join(LIVE_DIR, "roomdag", "wrangler.pgid"),
  });
  const handle = {
    ...w,
    serverName: ROOMDAG,
    signingKey,
    publicKey: publicKeyOf(signingKey.seed),
    adminToken: ADMIN_TOKEN,
    stop: async () => {
      workers.delete(handle);
      await w.stop();
    },
  };
  workers.add(handle);
  return handle;
}

/** Stops every Worker and every Synapse this process started. */
export async function stopAll() {
  for (const w of [...workers]) await w.stop();
  for (const name of [...started]) stopSynapse(name);
}

/**
 * One HTTPS request that trusts only the test CA. `url` is absolute. Returns
 * `{status, body, text, headers}` (body: parsed JSON, or null).
 */
export function tlsRequest(url, { method = "GET", headers = {}, body } = {}) {
  const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, ca: caPem(), headers: { ...(data ? { "content-type": "application/json" } : {}), ...headers }, timeout: 120_000 }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode, body: json, text, headers: res.headers });
      });
    });
    req.on("timeout", () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

/**
 * A federation request from `origin` (signed with `key`) to `destination`
 * (a server name with its port, reached over TLS at that address).
 */
export function federationRequest({ origin, key, destination, method = "GET", target, body }) {
  const text = body === undefined ? undefined : JSON.stringify(body);
  const authorization = signRequest({ origin, keyId: key.keyId, seed: key.seed, destination, method, target, body: text });
  return tlsRequest(`https://${destination}${target}`, { method, headers: { authorization }, body: text });
}

/** The requests in Synapse NAME's access.log (method, path, requesting server). */
export function accessLog(name) {
  const p = join(LIVE_DIR, name, "access.log");
  if (!existsSync(p)) return [];
  return readFileSync(p, "utf8")
    .split("\n")
    .map((l) => /\{([^}]*)\} Processed request: .*?"(\w+) (\S+) /.exec(l))
    .filter(Boolean)
    .map((m) => ({ origin: m[1], method: m[2], path: m[3] }));
}

/**
 * A client-server API user on a live Synapse (plain HTTP on loopback):
 * registered with the shared secret, or logged in when it exists.
 */
export class MatrixUser {
  static async register(server, username) {
    const info = readInfo(server);
    const u = new MatrixUser(info.client_url);
    const password = `${username}-password`;
    const { nonce } = await u.request("GET", "/_synapse/admin/v1/register");
    const mac = createHmac("sha1", info.shared_secret).update([nonce, username, password, "notadmin"].join("\0")).digest("hex");
    let r;
    try {
      r = await u.request("POST", "/_synapse/admin/v1/register", { nonce, username, password, admin: false, mac });
    } catch (e) {
      if (e.body?.errcode !== "M_USER_IN_USE") throw e;
      r = await u.request("POST", "/_matrix/client/v3/login", { type: "m.login.password", password, identifier: { type: "m.id.user", user: username } });
    }
    u.token = r.access_token;
    u.userId = r.user_id;
    u.serverName = r.user_id.split(":").slice(1).join(":");
    return u;
  }

  constructor(baseUrl) {
    this.baseUrl = baseUrl;
    this.txn = 0;
  }

  async request(method, path, body, query) {
    const qs = query ? "?" + new URLSearchParams(Object.entries(query).flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => [k, x]) : [[k, String(v)]]))) : "";
    for (let attempt = 0; ; attempt++) {
      const res = await fetch(`${this.baseUrl}${path}${qs}`, {
        method,
        headers: { "content-type": "application/json", ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      const json = text ? JSON.parse(text) : {};
      if (res.status === 429 && attempt < 20) {
        await new Promise((r) => setTimeout(r, json.retry_after_ms ?? 500));
        continue;
      }
      if (res.status >= 400) {
        const e = new Error(`${method} ${path} → ${res.status} ${text.slice(0, 300)}`);
        e.status = res.status;
        e.body = json;
        throw e;
      }
      return json;
    }
  }

  #room(roomId, rest) {
    return `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/${rest}`;
  }
  createRoom(body) {
    return this.request("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", ...body }).then((r) => r.room_id);
  }
  send(roomId, content, type = "m.room.message") {
    const txn = `${process.pid}.${Date.now()}.${++this.txn}`;
    const c = typeof content === "string" ? { msgtype: "m.text", body: content } : content;
    return this.request("PUT", this.#room(roomId, `send/${encodeURIComponent(type)}/${txn}`), c).then((r) => r.event_id);
  }
  putState(roomId, type, content, stateKey = "") {
    return this.request("PUT", this.#room(roomId, `state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}`), content).then((r) => r.event_id);
  }
  getState(roomId, type, stateKey = "") {
    return this.request("GET", this.#room(roomId, `state/${encodeURIComponent(type)}/${encodeURIComponent(stateKey)}`));
  }
  /** The room's current state: a list of state events. */
  state(roomId) {
    return this.request("GET", this.#room(roomId, "state"));
  }
  invite(roomId, userId) {
    return this.request("POST", this.#room(roomId, "invite"), { user_id: userId });
  }
  kick(roomId, userId, reason = "kicked") {
    return this.request("POST", this.#room(roomId, "kick"), { user_id: userId, reason });
  }
  redact(roomId, eventId, reason = "redacted") {
    return this.request("PUT", this.#room(roomId, `redact/${encodeURIComponent(eventId)}/${Date.now()}.${++this.txn}`), { reason }).then((r) => r.event_id);
  }
  join(roomIdOrAlias, via = []) {
    return this.request("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomIdOrAlias)}`, {}, via.length ? { server_name: via, via } : undefined).then((r) => r.room_id);
  }
  leave(roomId) {
    return this.request("POST", this.#room(roomId, "leave"), {});
  }
  /** Waits until this user's server has the event (e.g. sent from another server). */
  async waitForEvent(roomId, eventId, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.request("GET", this.#room(roomId, `event/${encodeURIComponent(eventId)}`));
      } catch (e) {
        if (e.status !== 404 || Date.now() > deadline) throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  joinedMembers(roomId) {
    return this.request("GET", this.#room(roomId, "joined_members")).then((r) => r.joined);
  }
  messages(roomId, from, { dir = "b", limit = 100 } = {}) {
    return this.request("GET", this.#room(roomId, "messages"), undefined, { dir, limit, ...(from ? { from } : {}) });
  }
  /** `/messages` backwards from the newest event to the start: every event, oldest first. */
  async paginate(roomId, { limit = 100, stats } = {}) {
    const events = [];
    let token;
    let pages = 0;
    for (;;) {
      const r = await this.messages(roomId, token, { limit });
      pages++;
      events.push(...(r.chunk ?? []));
      if (!r.end || r.end === token) break;
      token = r.end;
    }
    if (stats) stats.pages = pages;
    return events.reverse();
  }
}

/** The live tests' process cleanup: stop what we started when the process ends abnormally. */
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    stopAll().finally(() => process.exit(130));
  });
}
