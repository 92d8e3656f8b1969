// The npm package as a user gets it: `npm pack ./pkg`, the tarball installed
// into a fresh project (with the user's tools: TypeScript, esbuild, Vite),
// then the same query (probe.mjs) run from Node ESM and CommonJS, TypeScript
// (`nodenext` and `bundler`), esbuild bundles for Node and for browsers, a
// Vite build, and a Cloudflare Worker; the browser builds run in Chromium.
// Every result must equal the one the built package gives in this process.
// Also: the exact tarball contents, attw on every entry, the `roomdag` bin,
// `npx roomdag` inside the repository, and the root's refusal to be packed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, mkdirSync, copyFileSync, statSync, rmSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const pkg = join(root, "pkg");
const work = mkdtempSync(join(tmpdir(), "roomdag-packaging-"));
const consumer = join(work, "consumer");
const env = { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

function sh(cmd, args, cwd, extraEnv = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...env, ...extraEnv }, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `${cmd} ${args.join(" ")} (in ${cwd}) exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const write = (path, text) => {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
};
const json = (value) => JSON.stringify(value, null, 2) + "\n";
const bin = (name) => join(consumer, "node_modules", ".bin", name);
/** A code block of the package README, marked `<!-- test: name -->` above it. */
function readmeBlock(name) {
  const m = new RegExp(`<!-- test: ${name} -->\\n\`\`\`js\\n([\\s\\S]*?)\`\`\`\\n`).exec(readFileSync(join(pkg, "README.md"), "utf8"));
  assert.ok(m, `README block ${name}`);
  return m[1];
}
/** The probe's result as printed by a project: the last line of its output. */
const resultOf = (stdout) => JSON.parse(stdout.trim().split("\n").pop());

/** The exact contents of the tarball. */
const TARBALL = [
  "LICENSE",
  "README.md",
  "api.js",
  "check.js",
  "cli.mjs",
  "client.js",
  "common.js",
  "engine.js",
  "keyring.js",
  "keys.js",
  "mirror.js",
  "node.cjs",
  "node.d.cts",
  "node.js",
  "package.json",
  "roomdag.d.ts",
  "roomdag_wasm.js",
  "roomdag_wasm_bg.wasm",
  "roomdag_wasm_bg.wasm.d.cts",
  "roomdag_wasm_bg.wasm.d.ts",
  "server.js",
  "stores.js",
  "web.js",
  "workerd.js",
];

let tarball;
/** The probe's result from the built package (pkg/node.js) in this process. */
let expected;
let demo;

before(async () => {
  assert.ok(existsSync(join(pkg, "roomdag_wasm_bg.wasm")), "pkg/ is built (npm run build)");
  const built = await import(join(pkg, "node.js"));
  expected = await (await import(join(here, "probe.mjs"))).default(built);
  demo = built.demoRoom(60);
  sh("npm", ["pack", "./pkg", "--pack-destination", work, "--silent"], root);
  tarball = join(work, readdirSync(work).find((f) => f.endsWith(".tgz")));
  // The user's tools, at the versions this repository tests with (so the
  // install is served from the npm cache).
  const version = (name) => JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
  write(join(consumer, "package.json"), json({
    name: "consumer",
    private: true,
    devDependencies: {
      roomdag: `file:${tarball}`,
      typescript: version("typescript"),
      "@types/node": version("@types/node"),
      esbuild: version("esbuild"),
      vite: version("vite"),
      hono: version("hono"),
    },
  }));
  sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], consumer);
  copyFileSync(join(here, "probe.mjs"), join(consumer, "probe.mjs"));
});

after(() => rmSync(work, { recursive: true, force: true }));

test("the tarball holds exactly the package's files", () => {
  const [info] = JSON.parse(sh("npm", ["pack", "./pkg", "--dry-run", "--json"], root));
  assert.deepEqual(info.files.map((f) => f.path).sort(), TARBALL);
  const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
  const rootManifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const cargo = readFileSync(join(root, "Cargo.toml"), "utf8");
  assert.equal(manifest.version, rootManifest.version, "js/package.json and package.json agree on the version");
  assert.equal(`version = "${manifest.version}"`, /^version = ".*"$/m.exec(cargo)?.[0], "and Cargo.toml");
  assert.equal(manifest.license, "Apache-2.0");
  assert.equal(/^license = "(.*)"$/m.exec(cargo)?.[1], manifest.license);
  assert.match(readFileSync(join(pkg, "LICENSE"), "utf8"), /Apache License\s+Version 2\.0/);
  assert.equal(manifest.repository.url, "git+https://github.com/roomdag/roomdag.git");
  assert.ok(manifest.homepage && manifest.bugs?.url);
  assert.match(readFileSync(join(pkg, "README.md"), "utf8"), /^# roomdag/, "the package README, not the project's");
});

test("the repository root refuses `npm pack` and says what to pack", () => {
  const r = spawnSync("npm", ["pack", "--dry-run"], { cwd: root, encoding: "utf8", env });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /npm pack \.\/pkg/);
});

test("attw: the types of every entry resolve, CommonJS types for require", () => {
  const r = spawnSync(join(root, "node_modules", ".bin", "attw"), [tarball, "--format", "table-flipped"], { encoding: "utf8", env });
  assert.equal(r.status, 0, `attw found problems:\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /No problems found/);
});

test("npx roomdag works inside the repository (pkg/cli.mjs is executable)", () => {
  assert.ok(statSync(join(pkg, "cli.mjs")).mode & 0o100, "pkg/cli.mjs has its execute bit");
  assert.match(sh("npx", ["--no-install", "roomdag", "help"], root), /roomdag replay FIXTURE/);
});

test("the installed roomdag bin runs the wasm CLI", () => {
  assert.match(sh(bin("roomdag"), ["help"], consumer), /roomdag replay FIXTURE/);
  const fixture = join(work, "demo.json");
  writeFileSync(fixture, JSON.stringify(demo));
  const graph = JSON.parse(sh(bin("roomdag"), ["export", fixture], consumer));
  assert.equal(graph.format, "roomdag-graph/1");
  assert.equal(graph.events.filter((e) => e.status === "accepted").length, expected.accepted);
});

test("Node ESM project", () => {
  write(join(consumer, "esm", "package.json"), json({ type: "module" }));
  write(join(consumer, "esm", "main.js"), `import * as roomdag from "roomdag";
import probe from "../probe.mjs";
console.log(JSON.stringify(await probe(roomdag)));
`);
  assert.deepEqual(resultOf(sh(process.execPath, ["main.js"], join(consumer, "esm"))), expected);
});

test("Node CommonJS project", () => {
  write(join(consumer, "cjs", "package.json"), json({ type: "commonjs" }));
  write(join(consumer, "cjs", "main.js"), `const roomdag = require("roomdag");
const { RoomdagError } = require("roomdag");
if (typeof RoomdagError !== "function") throw new Error("no named exports");
import("../probe.mjs").then(async ({ default: probe }) => console.log(JSON.stringify(await probe(roomdag))));
`);
  assert.deepEqual(resultOf(sh(process.execPath, ["main.js"], join(consumer, "cjs"))), expected);
});

test("README: the Node quick starts (ESM and CommonJS), as written", () => {
  write(join(consumer, "esm", "readme.js"), readmeBlock("node-esm"));
  const out = sh(process.execPath, ["readme.js"], join(consumer, "esm"));
  assert.match(out, /^\d+ accepted\n\d+ state events\n$/);
  write(join(consumer, "cjs", "readme.js"), readmeBlock("node-cjs"));
  assert.match(sh(process.execPath, ["readme.js"], join(consumer, "cjs")), /^[0-9a-f]{64}\n$/);
});

/**
 * A federation server and the checks the README's adapters must pass: the
 * key endpoint, the demo room sent in signed `PUT /send` transactions (so
 * the body reaches the server), a signed `/state_ids` (so the Authorization
 * header does) and an unsigned one (refused).
 */
const adapterSetup = `import { FederationServer, RoomDirectory, MemoryStore, demoRoom, signRequest } from "roomdag";
const fixture = demoRoom(60);
const server = new FederationServer({
  serverName: "roomdag.example",
  signingKey: { keyId: "ed25519:a1", seed: fixture.servers["alpha.example"].signing_key_seed },
  rooms: new RoomDirectory({ createStore: () => new MemoryStore() }),
  trustedKeys: Object.fromEntries(Object.entries(fixture.servers).map(([s, v]) => [s, v.verify_keys])),
  acceptRoomsFrom: Object.keys(fixture.servers), // the demo room arrives over /send
});
async function checks(call) {
  const origin = Object.keys(fixture.servers)[0];
  const key = { origin, keyId: Object.keys(fixture.servers[origin].verify_keys)[0], seed: fixture.servers[origin].signing_key_seed };
  const signed = (method, target, body) => ({
    method,
    headers: { authorization: signRequest({ ...key, destination: "roomdag.example", method, target, body }), "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const keys = (await call("/_matrix/key/v2/server", { method: "GET" })).status;
  const send = [];
  let accepted = 0;
  for (let i = 0; i < fixture.events.length; i += 50) {
    const target = "/_matrix/federation/v1/send/readme" + i;
    const txn = { origin, origin_server_ts: Date.now(), pdus: fixture.events.slice(i, i + 50).map((e) => e.pdu) };
    const r = await call(target, signed("PUT", target, txn));
    send.push(r.status);
    accepted += Object.values((await r.json()).pdus ?? {}).filter((x) => !x.error).length;
  }
  const last = fixture.events[fixture.events.length - 1].event_id;
  const target = "/_matrix/federation/v1/state_ids/" + encodeURIComponent(fixture.room_id) + "?event_id=" + encodeURIComponent(last);
  const ids = await (await call(target, signed("GET", target))).json();
  const unsigned = (await call(target, { method: "GET" })).status;
  return { keys, send, accepted, stateIds: ids.pdu_ids?.length, unsigned };
}
`;
const adapterWant = () => ({ keys: 200, send: [200, 200], accepted: expected.accepted, stateIds: expected.stateIds, unsigned: 401 });

test("README: the node:http adapter serves signed federation requests", () => {
  const block = readmeBlock("node-http");
  assert.match(block, /^createServer\(/m);
  assert.match(block, /\.listen\(8448\);/);
  const program = `${adapterSetup}
import { once } from "node:events";
${block.replace(/^createServer\(/m, "const http = createServer(").replace(".listen(8448);", ".listen(0, \"127.0.0.1\");")}
await once(http, "listening");
const base = "http://127.0.0.1:" + http.address().port;
console.log(JSON.stringify(await checks((target, init) => fetch(base + target, init))));
http.close();
`;
  write(join(consumer, "esm", "readme-http.js"), program);
  assert.deepEqual(resultOf(sh(process.execPath, ["readme-http.js"], join(consumer, "esm"))), adapterWant());
});

test("README: the Hono adapter serves signed federation requests", () => {
  const program = `${adapterSetup}
${readmeBlock("hono")}
console.log(JSON.stringify(await checks((target, init) => app.fetch(new Request("https://roomdag.example" + target, init)))));
`;
  write(join(consumer, "esm", "readme-hono.js"), program);
  assert.deepEqual(resultOf(sh(process.execPath, ["readme-hono.js"], join(consumer, "esm"))), adapterWant());
});

/** A typed copy of the probe's steps: TypeScript checks the calls against the published types. */
const typedApp = (importLine) => `${importLine}

async function main(): Promise<void> {
  await init();
  const fixture = demoRoom(60);
  const keys = new KeyRing();
  for (const [server, s] of Object.entries(fixture.servers)) {
    for (const [keyId, key] of Object.entries(s.verify_keys)) keys.pin(server, keyId, key);
  }
  const room = await RoomEngine.open({ store: new MemoryStore(), roomVersion: fixture.room_version as RoomVersion });
  const outcomes: Outcome[] = await room.ingest(fixture.events.map((e) => e.pdu), keys);
  const last = fixture.events[fixture.events.length - 1].event_id;
  const stateIds = room.stateIds(Object.keys(fixture.servers)[0], last);
  let badArgument: string | undefined;
  try {
    // @ts-expect-error: a room version is a string
    await RoomEngine.open({ store: new MemoryStore(), roomVersion: 11 });
  } catch (e) {
    if (e instanceof TypeError) badArgument = \`\${e.name} \${(e as TypeError & { code: string }).code}\`;
  }
  const code: RoomdagErrorCode = "M_INVALID_PARAM";
  console.log(JSON.stringify({
    accepted: outcomes.filter((o) => o.status === "accepted").length,
    stateIds: stateIds.status === 200 ? stateIds.body.pdu_ids.length : stateIds.status,
    digest: room.currentState().digest,
    badArgument,
    code,
  }));
}
void main();
`;
const typedImport = `import { init, demoRoom, KeyRing, RoomEngine, MemoryStore, type Outcome, type RoomVersion, type RoomdagErrorCode } from "roomdag";`;
const typedExpected = () => ({ accepted: expected.accepted, stateIds: expected.stateIds, digest: expected.digest, badArgument: expected.badArgument, code: "M_INVALID_PARAM" });

test("TypeScript, module nodenext (ESM and CommonJS output; the CommonJS types also under node16), no DOM library", () => {
  const dir = join(consumer, "ts-nodenext");
  const options = { strict: true, module: "nodenext", moduleResolution: "nodenext", target: "es2022", lib: ["es2022"], types: ["node"], skipLibCheck: false, outDir: "out" };
  write(join(dir, "package.json"), json({ type: "module" }));
  write(join(dir, "tsconfig.json"), json({ compilerOptions: options, files: ["app.ts"] }));
  write(join(dir, "app.ts"), typedApp(typedImport));
  sh(bin("tsc"), ["-p", "."], dir);
  assert.deepEqual(resultOf(sh(process.execPath, ["out/app.js"], dir)), typedExpected());
  // The same program as CommonJS (.cts): the require types are CommonJS ones.
  const cjs = join(consumer, "ts-nodenext-cjs");
  write(join(cjs, "package.json"), json({ type: "commonjs" }));
  write(join(cjs, "tsconfig.json"), json({ compilerOptions: options, files: ["app.cts"] }));
  write(join(cjs, "app.cts"), typedApp(`import { init, demoRoom, KeyRing, RoomEngine, MemoryStore } from "roomdag";
import type { Outcome, RoomVersion, RoomdagErrorCode } from "roomdag";`));
  sh(bin("tsc"), ["-p", "."], cjs);
  // TypeScript before 5.8 (and module node16 today) cannot require an ES
  // module: the CommonJS declarations must not lean on the ESM ones.
  sh(bin("tsc"), ["-p", ".", "--module", "node16", "--moduleResolution", "node16", "--noEmit"], cjs);
  const out = readFileSync(join(cjs, "out", "app.cjs"), "utf8");
  assert.match(out, /require\("roomdag"\)/, "compiled to a require");
  assert.deepEqual(resultOf(sh(process.execPath, ["out/app.cjs"], cjs)), typedExpected());
});

test("TypeScript, moduleResolution bundler", () => {
  const dir = join(consumer, "ts-bundler");
  write(join(dir, "package.json"), json({ type: "module" }));
  write(join(dir, "tsconfig.json"), json({
    compilerOptions: { strict: true, module: "esnext", moduleResolution: "bundler", target: "es2022", lib: ["es2022"], types: ["node"], skipLibCheck: false, outDir: "out" },
    files: ["app.ts"],
  }));
  write(join(dir, "app.ts"), typedApp(typedImport));
  sh(bin("tsc"), ["-p", "."], dir);
  assert.deepEqual(resultOf(sh(process.execPath, ["out/app.js"], dir)), typedExpected());
});

test("esbuild bundles for Node (ESM and CommonJS), the .wasm copied next to the bundle", () => {
  const dir = join(consumer, "esbuild-node");
  write(join(dir, "app.mjs"), `import * as roomdag from "roomdag";
import probe from "../probe.mjs";
console.log(JSON.stringify(await probe(roomdag)));
`);
  // A CommonJS bundle comes from CommonJS code: `require` picks roomdag's CommonJS entry.
  write(join(dir, "app.cjs"), `const roomdag = require("roomdag");
import("../probe.mjs").then(async ({ default: probe }) => console.log(JSON.stringify(await probe(roomdag))));
`);
  for (const format of ["esm", "cjs"]) {
    const out = join(dir, `out-${format}`);
    const entry = format === "esm" ? "app.mjs" : "app.cjs";
    const file = join(out, format === "esm" ? "app.mjs" : "app.cjs");
    sh(bin("esbuild"), [entry, "--bundle", "--platform=node", `--format=${format}`, `--outfile=${file}`, "--log-level=warning"], dir);
    copyFileSync(join(consumer, "node_modules", "roomdag", "roomdag_wasm_bg.wasm"), join(out, "roomdag_wasm_bg.wasm"));
    assert.ok(!readFileSync(file, "utf8").includes('from "roomdag"'), "roomdag is bundled in");
    assert.deepEqual(resultOf(sh(process.execPath, [file], dir)), expected, format);
  }
});

/** Builds for browsers, checked in Chromium below. */
const pages = {};

test("esbuild bundle for browsers with the .wasm recipe (file loader)", () => {
  const dir = join(consumer, "esbuild-browser");
  write(join(dir, "app.js"), `import * as roomdag from "roomdag";
import wasmUrl from "roomdag/roomdag_wasm_bg.wasm";
import probe from "../probe.mjs";
await roomdag.init(wasmUrl);
window.__result = await probe(roomdag);
`);
  const out = join(dir, "dist");
  sh(bin("esbuild"), ["app.js", "--bundle", "--platform=browser", "--format=esm", "--loader:.wasm=file", "--minify", `--outdir=${out}`, "--log-level=warning"], dir);
  assert.equal(readdirSync(out).filter((f) => f.endsWith(".wasm")).length, 1, "the .wasm is emitted as a file");
  assert.ok(!readFileSync(join(out, "app.js"), "utf8").includes("node:fs"), "no Node code in the browser bundle");
  write(join(out, "index.html"), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="app.js"></script>');
  pages["esbuild"] = { dir: out, result: () => window.__result, want: expected };
});

test("Vite build (the ?url import of the .wasm)", () => {
  const dir = join(consumer, "vite-app");
  write(join(dir, "package.json"), json({ type: "module", private: true }));
  write(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><script type="module" src="./main.js"></script>');
  write(join(dir, "main.js"), `import * as roomdag from "roomdag";
import wasmUrl from "roomdag/roomdag_wasm_bg.wasm?url";
import probe from "../probe.mjs";
await roomdag.init(wasmUrl);
window.__result = await probe(roomdag);
`);
  write(join(dir, "vite.config.js"), `export default { build: { target: "es2022" }, logLevel: "warn" };\n`);
  sh(bin("vite"), ["build"], dir);
  const out = join(dir, "dist");
  const assets = readdirSync(join(out, "assets"));
  assert.equal(assets.filter((f) => f.endsWith(".wasm")).length, 1, `one .wasm asset: ${assets}`);
  pages["vite"] = { dir: out, result: () => window.__result, want: expected };
});

test("README: the esbuild recipe, as written", () => {
  const dir = join(consumer, "readme-esbuild");
  write(join(dir, "app.js"), readmeBlock("esbuild-browser"));
  const command = /\/\/ app\.js — (esbuild .*)\n/.exec(readFileSync(join(dir, "app.js"), "utf8"))?.[1];
  assert.ok(command, "the block says how to build it");
  const [, ...args] = command.split(" ");
  sh(bin("esbuild"), [...args, "--log-level=warning"], dir);
  write(join(dir, "dist", "index.html"), '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><body><script type="module" src="app.js"></script>');
  pages["README esbuild"] = { dir: join(dir, "dist"), result: () => /events, state/.test(document.body.textContent) && document.body.textContent, want: (t) => /^\d+ events, state [0-9a-f]{64}$/.test(t) };
});

test("the browser builds run the query in Chromium", async () => {
  assert.deepEqual(Object.keys(pages).sort(), ["README esbuild", "esbuild", "vite"], "every build was made");
  const { serve } = await import(join(root, "tests", "browser", "server.mjs"));
  const { launch } = await import(join(root, "tests", "browser", "chromium.mjs"));
  const browser = await launch();
  try {
    for (const [name, { dir, result: read, want }] of Object.entries(pages)) {
      const server = await serve({ "/": dir }, dir);
      const errors = [];
      try {
        const page = await browser.newPage();
        page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
        page.on("pageerror", (e) => errors.push(String(e)));
        await page.goto(server.url + "/");
        await page.waitForFunction(read, null, { timeout: 60_000 }).catch(() => {});
        const result = await page.evaluate(read);
        assert.deepEqual(errors, [], `${name}: console errors`);
        if (typeof want === "function") assert.ok(want(result), `${name}: ${result}`);
        else assert.deepEqual(result, want, name);
        await page.close();
      } finally {
        server.close();
      }
    }
  } finally {
    await browser.close();
  }
});

test("a Cloudflare Worker (wrangler, the workerd condition)", async () => {
  const dir = join(consumer, "worker");
  write(join(dir, "worker.js"), `import * as roomdag from "roomdag";
import probe from "../probe.mjs";
export default {
  async fetch(request) {
    if (new URL(request.url).pathname !== "/probe") return new Response("not found", { status: 404 });
    return Response.json(await probe(roomdag));
  },
};
`);
  write(join(dir, "wrangler.jsonc"), json({ name: "consumer", main: "worker.js", compatibility_date: "2025-06-01" }));
  const { startWorker } = await import(join(root, "tests", "worker", "wrangler.mjs"));
  const worker = await startWorker({ vars: {}, config: join(dir, "wrangler.jsonc"), readyPath: "/probe" });
  try {
    const result = await (await fetch(`${worker.url}/probe`)).json();
    assert.deepEqual(result, expected);
  } finally {
    await worker.stop();
  }
});
