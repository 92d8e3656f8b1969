// `npm start` (scripts/start.mjs) end to end: a data directory of its own
// (ROOMDAG_HOME) and a user variables file of its own (ROOMDAG_DEV_VARS), so
// the developer's .roomdag/ and worker/.dev.vars are never touched.
//   1. HTTPS with a throwaway CA: the demo room imported with a progress line,
//      the first screen's data served, the user's file kept byte for byte and
//      its values used, the environment winning over it, TRUSTED_KEYS merged,
//      and the Worker's outbound fetch trusting NODE_EXTRA_CA_CERTS;
//   2. HTTP, as on a clone with no ../shared: an old generated .dev.vars moved
//      aside once, the demo room imported, the first screen (`/`, no room named)
//      drawing it in Chromium, the room kept across a restart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, existsSync, statSync, rmSync } from "node:fs";
import https, { createServer } from "node:https";
import http from "node:http";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { root } from "../js/fixtures.mjs";
import { freePort } from "./wrangler.mjs";
import { workerVarNames } from "../../scripts/config.mjs";
import { launch } from "../browser/chromium.mjs";

const api = await import(join(root, "pkg", "node.js"));
const dir = mkdtempSync(join(tmpdir(), "roomdag-start-"));
const names = workerVarNames(readFileSync(join(root, "worker", "src", "config.ts"), "utf8"));

/** The test's environment: none of the developer's Worker or npm start settings. */
function baseEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (names.includes(k) || k.startsWith("ROOMDAG_") || k === "NODE_EXTRA_CA_CERTS") delete env[k];
  return env;
}

/** Runs scripts/start.mjs until it prints that it is running. */
async function startRoomdag(env) {
  const child = spawn(process.execPath, [join(root, "scripts", "start.mjs")], { cwd: root, env: { ...baseEnv(), ...env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const exited = new Promise((r) => child.once("exit", (code) => r(code)));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM"); // start.mjs stops wrangler
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL"); // its process group: wrangler and workerd too
      } catch {
        /* gone */
      }
    }, 20_000);
    await exited;
    clearTimeout(t);
  };
  const deadline = Date.now() + 150_000;
  while (!out.includes("roomdag is running on")) {
    if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`npm start did not get ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { output: () => out, stop, exited };
}

/** A GET/POST over HTTP(S); `ca` for HTTPS. */
function request(url, { ca, headers = {}, method = "GET", body } = {}) {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith("https:") ? https : http).request(url, { method, headers, ...(ca ? { ca } : {}) }, (res) => {
      let s = "";
      res.on("data", (d) => (s += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: s, json: () => JSON.parse(s) }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A throwaway CA and a certificate for roomdag.test, 127.0.0.1 and localhost (as ../shared/live/ca.sh makes them). */
function makeCerts() {
  const openssl = (...args) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    assert.equal(r.status, 0, `openssl ${args.join(" ")}: ${r.stderr}`);
  };
  openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=roomdag start test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  writeFileSync(join(dir, "leaf.ext"), ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=serverAuth",
    "subjectAltName=DNS:roomdag.test,DNS:localhost,IP:127.0.0.1"].join("\n") + "\n");
  openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=roomdag.test", "-keyout", "leaf.key", "-out", "leaf.csr");
  openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "leaf.ext", "-out", "leaf.crt");
  return { ca: join(dir, "ca.crt"), cert: join(dir, "leaf.crt"), key: join(dir, "leaf.key") };
}

const hasOpenssl = spawnSync("openssl", ["version"]).status === 0;

let keyServer;
before(() => {
  assert.ok(existsSync(join(root, "pkg", "roomdag_wasm_bg.wasm")), "pkg/ is built (npm run build)");
  // The visualizer's dependencies, installed (as `npm start` would) with this
  // process's environment: the tests below replace NODE_EXTRA_CA_CERTS with
  // their test CA, and on a machine whose registry is reached through a
  // proxy trusted by NODE_EXTRA_CA_CERTS, npm could not install them then.
  if (!existsSync(join(root, "www", "node_modules", "cytoscape"))) {
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const r = spawnSync(npm, ["install", "--prefix", join(root, "www"), "--no-audit", "--no-fund"], { cwd: root, stdio: "inherit" });
    assert.equal(r.status, 0, "npm install --prefix www");
  }
});
after(() => {
  keyServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("npm start over HTTPS: user file kept and used, environment wins, demo imported, first screen served, outbound TLS trusts NODE_EXTRA_CA_CERTS", { skip: !hasOpenssl && "no openssl to make a test CA" }, async (t) => {
  const certs = makeCerts();
  const caPem = readFileSync(certs.ca);
  const port = await freePort();
  const home = join(dir, "home-https");

  // A key server over HTTPS (signed by the test CA) for an origin no file pins.
  const seed = Buffer.alloc(32, 7).toString("base64").replace(/=+$/, "");
  const keyRequests = [];
  keyServer = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) => {
    keyRequests.push(req.url);
    if (req.url !== "/k.test/_matrix/key/v2/server") return res.writeHead(404).end("{}");
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(api.serverKeysResponse({ serverName: "k.test", keyId: "ed25519:k", seed })));
  });
  await new Promise((r) => keyServer.listen(0, "127.0.0.1", r));

  // The user's file: values that must be used, and must survive byte for byte.
  const userFile = join(dir, "user.dev.vars");
  // A second key for one of the demo room's servers: merged with the demo room's keys, not replacing them.
  const extraSeed = Buffer.alloc(32, 9).toString("base64").replace(/=+$/, "");
  // (The demo room is v11-forky-2k's, from a.example, or the generated one, from alpha.example.)
  const extraKey = Object.fromEntries(["a.example", "alpha.example"].map((s) => [s, { "ed25519:extra": api.publicKeyOf(extraSeed) }]));
  const userText = [
    "# my settings",
    'SERVER_NAME="user.example"',
    "INSPECTOR=open",
    `TRUSTED_KEYS='${JSON.stringify(extraKey)}'`,
    "ALLOW_PRIVATE_ADDRESSES=true",
    "",
  ].join("\n");
  writeFileSync(userFile, userText);
  // An admin token that exercises the quoting wrangler's --env-file reader needs.
  const adminToken = `t0k$HOME'n"#${"x".repeat(12)}`;

  const rd = await startRoomdag({
    ROOMDAG_HOME: home,
    ROOMDAG_DEV_VARS: userFile,
    ROOMDAG_PORT: String(port),
    ROOMDAG_SERVER_NAME: `roomdag.test:${port}`,
    ROOMDAG_HTTPS_CERT: certs.cert,
    ROOMDAG_HTTPS_KEY: certs.key,
    NODE_EXTRA_CA_CERTS: certs.ca,
    ADMIN_TOKEN: adminToken,
    KEY_SERVER_URL: `https://127.0.0.1:${keyServer.address().port}/{server}`,
  });
  try {
    const base = `https://127.0.0.1:${port}`;
    const out = rd.output();
    t.diagnostic(out.split("\n").filter((l) => l.startsWith("[roomdag]")).join("\n"));
    assert.match(out, new RegExp(`roomdag is running on ${base.replace(/\./g, "\\.")} as server "roomdag\\.test:${port}"`));
    assert.match(out, /Visualizer: +https:\/\//);
    // The summary says where values came from, and prints no secret.
    assert.match(out, new RegExp(`SERVER_NAME +roomdag\\.test:${port} +from environment \\(ROOMDAG_SERVER_NAME\\)`));
    assert.match(out, /INSPECTOR +open +from .*user\.dev\.vars/);
    assert.match(out, /ADMIN_TOKEN +\(secret\) +from environment/);
    assert.match(out, /TRUSTED_KEYS +\d+ servers +from default \+ .*user\.dev\.vars/);
    assert.ok(!out.includes(adminToken), "the admin token is not printed");
    // Import progress, as one line per update: "imported N/T (accepted …)".
    const demo = JSON.parse(readFileSync(join(home, "demo-room.json"), "utf8"));
    const shared = [join(root, "tests", "shared", "fixtures"), join(root, "..", "shared", "fixtures")].some((d) => existsSync(join(d, "v11-forky-2k.json")));
    assert.match(out, shared ? /demo room: .*v11-forky-2k\.json/ : /demo room: generated by roomdag/);
    assert.match(out, new RegExp(`imported ${demo.events.length}/${demo.events.length} \\(accepted \\d+, rejected \\d+, dropped \\d+`));

    // The user's file is untouched; the generated one is private.
    assert.equal(readFileSync(userFile, "utf8"), userText);
    assert.equal(statSync(join(home, "dev.vars")).mode & 0o777, 0o600);

    // TLS: our CA is needed (negative control), and enough.
    await assert.rejects(request(`${base}/_matrix/key/v2/server`), /self[- ]signed|unable to verify|certificate/i);
    const keys = await request(`${base}/_matrix/key/v2/server`, { ca: caPem });
    assert.equal(keys.status, 200);
    assert.equal(keys.json().server_name, `roomdag.test:${port}`, "the environment's SERVER_NAME wins over the user's file");

    // The admin token from the environment (with $, quotes and #) reached the Worker intact.
    const admin = await request(`${base}/_roomdag/admin/rooms`, { ca: caPem, headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(admin.status, 200, admin.body);
    const room = admin.json().rooms.find((r) => r.roomId === demo.room_id);
    assert.ok(room && room.eventCount > demo.events.length * 0.9, `demo room imported: ${admin.body}`);

    // The first screen's data: INSPECTOR=open from the user's file, the demo room as the default.
    const listing = await request(`${base}/_roomdag/rooms`, { ca: caPem });
    assert.equal(listing.status, 200, listing.body);
    assert.equal(listing.json().defaultRoom, demo.room_id);
    const page = await request(`${base}/`, { ca: caPem });
    assert.equal(page.status, 200);
    assert.match(page.body, /room-DAG visualizer/);
    const graph = await request(`${base}/_roomdag/rooms/${encodeURIComponent(demo.room_id)}/graph`, { ca: caPem });
    assert.equal(graph.status, 200);
    assert.equal(graph.json().events.length, room.eventCount);

    // TRUSTED_KEYS merged: the demo room's key and the user's second key for the same server both authenticate
    // (no other way to get them: KEY_SERVER_URL's server knows only k.test).
    const server = Object.keys(extraKey).find((name) => demo.servers[name]);
    assert.ok(server, `one of ${Object.keys(extraKey)} is among the demo room's servers`);
    const s = demo.servers[server];
    const eventId = demo.events[40].event_id;
    const target = `/_matrix/federation/v1/state_ids/${encodeURIComponent(demo.room_id)}?event_id=${encodeURIComponent(eventId)}`;
    const signed = (origin, keyId, seed) => ({ authorization: api.signRequest({ origin, keyId, seed, destination: `roomdag.test:${port}`, method: "GET", target }) });
    const asMember = await request(`${base}${target}`, { ca: caPem, headers: signed(server, Object.keys(s.verify_keys)[0], s.signing_key_seed) });
    assert.equal(asMember.status, 200, asMember.body);
    const pinned = await request(`${base}${target}`, { ca: caPem, headers: signed(server, "ed25519:extra", extraSeed) });
    assert.equal(pinned.status, 200, `the user's pinned key authenticates: ${pinned.body}`);

    // The Worker's outbound fetch (workerd) trusts NODE_EXTRA_CA_CERTS: k.test's key is fetched over TLS.
    const fetched = await request(`${base}${target}`, { ca: caPem, headers: signed("k.test", "ed25519:k", seed) });
    assert.ok(keyRequests.includes("/k.test/_matrix/key/v2/server"), `the key server was asked (${JSON.stringify(keyRequests)}; answer ${fetched.status} ${fetched.body})`);
    assert.equal(fetched.status, 403, `k.test is not in the room: ${fetched.body}`);
  } finally {
    await rd.stop();
  }
});

test("npm start on a clone without ../shared: an old generated .dev.vars moved aside once, the demo room imported and kept across a restart", async (t) => {
  const port = await freePort();
  const home = join(dir, "home-http");
  const userFile = join(dir, "old.dev.vars");
  const old = [
    `SERVER_NAME="localhost:${port}"`,
    'SIGNING_KEY="ed25519:dev AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"',
    'ADMIN_TOKEN="an-old-generated-token"',
    "// The demo's servers (a.example, …) do not exist: key lookups for keys no",
    "// fixture publishes fail at once on loopback instead of in DNS. Remove this",
    "// line to fetch keys from real servers.",
    "KEY_SERVER_URL='http://127.0.0.1:9/{server}'",
    "",
  ].join("\n");
  writeFileSync(userFile, old);
  const env = { ROOMDAG_HOME: home, ROOMDAG_DEV_VARS: userFile, ROOMDAG_PORT: String(port), ROOMDAG_SHARED: join(dir, "no-shared-here") };
  const repoCopy = existsSync(join(root, "tests", "shared", "fixtures", "v11-forky-2k.json"));

  let rd = await startRoomdag(env);
  let demo;
  try {
    const out = rd.output();
    assert.match(out, /moved .*old\.dev\.vars aside to .*old\.dev\.vars\.generated-old/);
    assert.ok(!existsSync(userFile), "the generated file is gone from the user's place");
    assert.equal(readFileSync(`${userFile}.generated-old`, "utf8"), old, "…and kept beside it");
    assert.match(out, repoCopy ? /demo room: tests\/shared\/fixtures\/v11-forky-2k\.json/ : /demo room: generated by roomdag/);
    assert.match(out, /build: pkg\/ and www\/dist are up to date|build \d\/\d: done in \d/);
    demo = JSON.parse(readFileSync(join(home, "demo-room.json"), "utf8"));
    const token = JSON.parse(readFileSync(join(home, "config.json"), "utf8")).adminToken;
    assert.ok(!out.includes(token), "the generated admin token is not printed");
    const base = `http://127.0.0.1:${port}`;
    const admin = await request(`${base}/_roomdag/admin/rooms`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(admin.status, 200, admin.body);
    assert.ok(admin.json().rooms.some((r) => r.roomId === demo.room_id && r.eventCount > 0), admin.body);
    // The first screen's data (INSPECTOR=loopback by default: with the token in any case).
    const listing = await request(`${base}/_roomdag/rooms`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(listing.json().defaultRoom, demo.room_id);
    const open = await request(`${base}/_roomdag/rooms`);
    t.diagnostic(`inspector from loopback without a token: HTTP ${open.status}${open.status === 401 ? " (this Worker does not know INSPECTOR=loopback yet)" : ""}`);

    // The first screen in a browser: the address as printed, no room named; a graph of the demo room
    // (through the token form when the inspector asks for one).
    const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
    if (!existsSync(chromium)) t.diagnostic(`skipped the browser check: no Chromium at ${chromium}`);
    else {
      const browser = await launch();
      try {
        const page = await browser.newPage();
        const errors = [];
        page.on("pageerror", (e) => errors.push(String(e)));
        await page.goto(`${base}/`);
        await page.waitForFunction(() => ["verified", "token", "error"].includes(document.body.dataset.state), null, { timeout: 60_000 });
        if ((await page.evaluate(() => document.body.dataset.state)) === "token") {
          await page.fill("#token-input", token);
          await page.press("#token-input", "Enter");
        }
        await page.waitForFunction(() => ["verified", "error"].includes(document.body.dataset.state), null, { timeout: 60_000 });
        assert.equal(await page.evaluate(() => document.body.dataset.state), "verified", await page.locator("#status").textContent());
        const eventCount = admin.json().rooms.find((r) => r.roomId === demo.room_id).eventCount;
        assert.match(await page.locator("[data-testid=event-count]").textContent(), new RegExp(`^${eventCount} `));
        assert.equal(new URL(page.url()).hash, `#room=${encodeURIComponent(demo.room_id)}`);
        assert.deepEqual(errors, []);
      } finally {
        await browser.close();
      }
    }
  } finally {
    await rd.stop();
  }

  // A restart: nothing moved again, nothing imported again, the room still there.
  rd = await startRoomdag(env);
  try {
    const out = rd.output();
    assert.doesNotMatch(out, /moved /);
    assert.doesNotMatch(out, /importing the demo room/);
    const token = JSON.parse(readFileSync(join(home, "config.json"), "utf8")).adminToken;
    const admin = await request(`http://127.0.0.1:${port}/_roomdag/admin/rooms`, { headers: { authorization: `Bearer ${token}` } });
    assert.ok(admin.json().rooms.some((r) => r.roomId === demo.room_id), admin.body);
  } finally {
    await rd.stop();
  }
});
