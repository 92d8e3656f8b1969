#!/usr/bin/env node
// `npx roomdag …`: the native CLI's interface on the WebAssembly build.
import { readFileSync, writeFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { replayFixtureText, exportFixture } from "./node.js";

const USAGE = `roomdag (wasm) — a Matrix room-DAG engine

USAGE:
    roomdag replay FIXTURE --queries QUERIES [-o ANSWERS]
    roomdag export FIXTURE [--format json|dot] [--auth-edges] [-o OUT]
    roomdag help

EXIT STATUS:
    0 success, 1 bad input or I/O failure, 2 usage error
`;

class UsageError extends Error {}

function parse(args) {
  const o = { positional: [], queries: undefined, output: undefined, format: "json", authEdges: false };
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

function run(argv) {
  const [cmd, ...rest] = argv;
  if (!cmd) throw new UsageError("no command given");
  if (cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return;
  }
  const o = parse(rest);
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
  run(process.argv.slice(2));
} catch (e) {
  if (e instanceof UsageError) {
    process.stderr.write(`roomdag: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  process.stderr.write(`roomdag: ${e?.message ?? e}\n`);
  process.exit(1);
}
