#!/usr/bin/env node
// `npx roomdag …`: the native CLI's interface on the WebAssembly build.
import { readFileSync, writeFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { replayFixtureText, exportFixture } from "./node.js";

const USAGE = `roomdag (wasm) — a Matrix room-DAG engine

USAGE:
    roomdag replay FIXTURE --queries QUERIES [-o ANSWERS]
    roomdag export FIXTURE [--format json|dot] [--auth-edges] [-o OUT]
    roomdag join ROOM [--via SERVER]... [--url URL] [--token TOKEN]
    roomdag leave ROOM [--via SERVER]... [--url URL] [--token TOKEN]
    roomdag status ROOM [--url URL] [--token TOKEN]
    roomdag help

    join, leave and status drive a running roomdag Worker's admin API
    (--url, default $ROOMDAG_URL or http://127.0.0.1:8787; --token, default
    $ROOMDAG_ADMIN_TOKEN or .roomdag/config.json's adminToken): join prints
    its progress lines as they stream, until the history is backfilled.

EXIT STATUS:
    0 success, 1 bad input or I/O failure, 2 usage error
`;

class UsageError extends Error {}

function parse(args) {
  const o = { positional: [], queries: undefined, output: undefined, format: "json", authEdges: false, via: [], url: undefined, token: undefined };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw new UsageError(`${a} needs a value`);
      return args[++i];
    };
    if (a === "--queries" || a === "-q") o.queries = value();
    else if (a === "-o" || a === "--output") o.output = value();
    else if (a === "--format" || a === "-f") o.format = value();
    else if (a === "--auth-edges") o.authEdges = true;
    else if (a === "--via") o.via.push(value());
    else if (a === "--url") o.url = value();
    else if (a === "--token") o.token = value();
    else if (a === "--parallel") { /* the native CLI's threading option: nothing to do on wasm */ }
    else if (a.startsWith("-") && a.length > 1) throw new UsageError(`unknown option ${a}`);
    else o.positional.push(a);
  }
  return o;
}

function read(path) {
  const bytes = readFileSync(path);
  return path.endsWith(".gz") ? gunzipSync(bytes) : bytes;
}

function write(path, text) {
  if (path) writeFileSync(path, text);
  else process.stdout.write(text);
}

/** The admin API's base URL and token (options, environment, npm start's config). */
function adminOf(o) {
  const url = (o.url ?? process.env.ROOMDAG_URL ?? "http://127.0.0.1:8787").replace(/\/+$/, "");
  let token = o.token ?? process.env.ROOMDAG_ADMIN_TOKEN;
  if (!token) {
    try {
      token = JSON.parse(readFileSync(".roomdag/config.json", "utf8")).adminToken;
    } catch {
      /* none */
    }
  }
  if (!token) throw new UsageError("no admin token: pass --token, or set ROOMDAG_ADMIN_TOKEN");
  return { url, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } };
}

/** join / leave / status over a Worker's admin API; join streams NDJSON progress to stdout. */
async function admin(cmd, o) {
  if (o.positional.length !== 1) throw new UsageError(`${cmd} takes exactly one ROOM (!id:server or #alias:server)`);
  const [room] = o.positional;
  const { url, headers } = adminOf(o);
  let res;
  try {
    res =
      cmd === "status"
        ? await fetch(`${url}/_roomdag/admin/status/${encodeURIComponent(room)}`, { headers })
        : await fetch(`${url}/_roomdag/admin/${cmd}`, { method: "POST", headers, body: JSON.stringify({ room, via: o.via }) });
  } catch (e) {
    // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, a certificate…).
    const why = e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(e);
    throw new Error(`cannot reach the roomdag Worker at ${url} (${why}): is it running (npm start)? Pass --url or set ROOMDAG_URL`);
  }
  if (!res.ok) throw new Error(`${res.status}: ${await res.text()}`);
  if (cmd !== "join") {
    process.stdout.write(JSON.stringify(await res.json(), null, 2) + "\n");
    return;
  }
  let failed;
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk, { stream: true });
    const lines = buf.split("\n");
    buf = lines.pop();
    for (const line of lines.filter(Boolean)) {
      process.stdout.write(line + "\n");
      if (JSON.parse(line).error) failed = JSON.parse(line).error;
    }
  }
  if (failed) throw new Error(failed);
}

async function run(argv) {
  const [cmd, ...rest] = argv;
  if (!cmd) throw new UsageError("no command given");
  if (cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return;
  }
  const o = parse(rest);
  if (cmd === "join" || cmd === "leave" || cmd === "status") return admin(cmd, o);
  if (o.positional.length !== 1) throw new UsageError(`${cmd} takes exactly one FIXTURE`);
  const [fixture] = o.positional;
  if (cmd === "replay") {
    if (!o.queries) throw new UsageError("replay needs --queries QUERIES");
    write(o.output, replayFixtureText(read(fixture), read(o.queries)));
  } else if (cmd === "export") {
    if (o.format !== "json" && o.format !== "dot") throw new UsageError(`unknown format ${JSON.stringify(o.format)} (json or dot)`);
    const out = exportFixture(read(fixture), o.format, o.authEdges);
    write(o.output, o.format === "json" ? JSON.stringify(out) + "\n" : out);
  } else {
    throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
  }
}

try {
  await run(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`roomdag: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  process.stderr.write(`roomdag: ${e?.message ?? e}\n`);
  process.exit(1);
}
