// `npm start`'s configuration: which value each Worker variable gets, and why.
//
//   generated defaults   (.roomdag/config.json: signing key, admin token; the demo
//                         room's server keys; settings for a loopback dev server)
//   ← worker/.dev.vars   the user's file, read but never written
//   ← the environment    every Worker variable, plus ROOMDAG_SERVER_NAME for SERVER_NAME
//
// TRUSTED_KEYS is merged (per server and key ID) across the three instead of
// replaced, so the demo room stays verifiable when the user pins more servers.
// The result goes to one file handed to `wrangler dev --env-file` (wrangler then
// does not read worker/.dev.vars itself).
import { parseEnv } from "node:util";

/** The comment in the worker/.dev.vars that `npm start` used to write on every start. */
export const GENERATED_MARKER = "The demo's servers (a.example, …) do not exist";

/** Values never printed (their source is). */
const SECRET = /TOKEN|SECRET|PASSWORD|SIGNING_KEY/;

/** Environment variables that name a Worker variable differently. */
export const ALIASES = { ROOMDAG_SERVER_NAME: "SERVER_NAME" };

export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * The Worker's variables, as `worker/src/config.ts` declares them: the string
 * members of its `Env` interface (bindings such as Durable Object namespaces
 * are not variables). That file is the one list.
 */
export function workerVarNames(configTs) {
  const body = /export interface Env\s*\{([\s\S]*?)\n\}/.exec(configTs)?.[1];
  if (!body) throw new ConfigError("worker/src/config.ts declares no `export interface Env { … }`");
  const names = [...body.matchAll(/^\s*([A-Z][A-Z0-9_]*)\??\s*:\s*string\s*;/gm)].map((m) => m[1]);
  if (!names.length) throw new ConfigError("worker/src/config.ts: Env declares no string variables");
  return names;
}

/** A dotenv file's variables (the format wrangler reads `.dev.vars` in). */
export function parseDevVars(text) {
  return parseEnv(text);
}

/** Whether a worker/.dev.vars is the one old `npm start`s generated (and rewrote on every start). */
export function isGeneratedDevVars(text) {
  return text.includes(GENERATED_MARKER);
}

/**
 * A dotenv line that wrangler's `--env-file` reader (dotenv, then
 * dotenv-expand) reads back as exactly `value`: `$` is escaped (dotenv-expand
 * would substitute `$NAME`, and turns `\$` into `$`), and the value is quoted
 * with a quote character it does not contain (dotenv has no escapes inside quotes).
 */
export function devVarsLine(name, value) {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new ConfigError(`${JSON.stringify(name)} is not a variable name`);
  const v = String(value).replaceAll("$", "\\$");
  const quote = ["'", "`", '"'].find((q) => !v.includes(q) && (q !== '"' || !/\\[nr]/.test(v)));
  if (!quote) throw new ConfigError(`${name}: a value with ', \` and " in it cannot be passed to wrangler dev`);
  return `${name}=${quote}${v}${quote}`;
}

export function formatDevVars(values, header = []) {
  return [...header.map((l) => `# ${l}`), ...Object.entries(values).map(([k, v]) => devVarsLine(k, v)), ""].join("\n");
}

/** `{server: {keyId: key}}` from JSON text, checked for shape; `where` names the source in errors. */
export function parseTrustedKeys(text, where) {
  if (!text?.trim()) return {};
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`TRUSTED_KEYS from ${where} is not JSON: ${e.message}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new ConfigError(`TRUSTED_KEYS from ${where} must be a JSON object {"server": {"ed25519:id": "<base64>"}}`);
  for (const [server, keys] of Object.entries(parsed)) {
    if (!keys || typeof keys !== "object" || Array.isArray(keys)) throw new ConfigError(`TRUSTED_KEYS from ${where}: the keys of ${server} must be an object {"ed25519:id": "<base64>"}`);
    for (const [id, key] of Object.entries(keys)) {
      if (typeof key !== "string") throw new ConfigError(`TRUSTED_KEYS from ${where}: ${server} ${id} must be a base64 string`);
    }
  }
  return parsed;
}

/** Key sets merged per server; a later set's key ID wins. */
export function mergeTrustedKeys(...sets) {
  const out = {};
  for (const set of sets) for (const [server, keys] of Object.entries(set)) out[server] = { ...(out[server] ?? {}), ...keys };
  return out;
}

/**
 * The effective variables.
 * @param {object} o
 * @param {string[]} o.names     every Worker variable (workerVarNames)
 * @param {Record<string,string>} o.defaults  generated defaults
 * @param {Record<string,string>} [o.user]    the user's worker/.dev.vars
 * @param {Record<string,string|undefined>} [o.env]  npm start's environment
 * @param {string} [o.userFile]  the user's file's name, for messages
 * @returns {{values: Record<string,string>, sources: Record<string,{from: string, via?: string}[]>}}
 *   `sources[name]`: where the value came from, lowest priority first (several
 *   for TRUSTED_KEYS); `from` is "default", "file" or "env"; `via` the
 *   environment variable's name when it is an alias.
 */
export function resolveConfig({ names, defaults, user = {}, env = {}, userFile = "worker/.dev.vars" }) {
  const known = new Set(names);
  const values = {};
  const sources = {};
  const set = (name, value, from, via) => {
    values[name] = value;
    sources[name] = [{ from, ...(via ? { via } : {}) }];
  };
  for (const [k, v] of Object.entries(defaults)) set(k, v, "default");
  // The user's file may hold any variable (wrangler passes them all on), known or not.
  for (const [k, v] of Object.entries(user)) if (k !== "TRUSTED_KEYS") set(k, v, "file");
  // From the environment only the Worker's own variables (a shell has many others).
  for (const [alias, name] of Object.entries(ALIASES)) {
    if (env[alias] === undefined) continue;
    if (env[name] !== undefined && env[name] !== env[alias]) {
      throw new ConfigError(`${alias}=${env[alias]} and ${name}=${env[name]} are both set and differ: set one`);
    }
    set(name, env[alias], "env", alias);
  }
  for (const name of names) if (name !== "TRUSTED_KEYS" && env[name] !== undefined) set(name, env[name], "env");

  if (known.has("TRUSTED_KEYS")) {
    const layers = [];
    if (defaults.TRUSTED_KEYS !== undefined) layers.push(["default", parseTrustedKeys(defaults.TRUSTED_KEYS, "the demo room")]);
    if (user.TRUSTED_KEYS !== undefined) layers.push(["file", parseTrustedKeys(user.TRUSTED_KEYS, userFile)]);
    if (env.TRUSTED_KEYS !== undefined) layers.push(["env", parseTrustedKeys(env.TRUSTED_KEYS, "the environment")]);
    if (layers.length) {
      values.TRUSTED_KEYS = JSON.stringify(mergeTrustedKeys(...layers.map(([, k]) => k)));
      sources.TRUSTED_KEYS = layers.map(([from]) => ({ from }));
    }
  }
  return { values, sources };
}

/** Whether a variable's value is secret (never printed). */
export function isSecret(name) {
  return SECRET.test(name);
}

/**
 * One line per variable not at its generated default: its name, its value
 * (secrets hidden; TRUSTED_KEYS as its servers) and where it came from.
 */
export function describeConfig({ values, sources }, { userFile = "worker/.dev.vars" } = {}) {
  const label = (s) => (s.from === "env" ? `environment${s.via ? ` (${s.via})` : ""}` : s.from === "file" ? userFile : "default");
  const lines = [];
  for (const [name, src] of Object.entries(sources)) {
    if (src.every((s) => s.from === "default")) continue;
    let shown;
    if (isSecret(name)) shown = "(secret)";
    else if (name === "TRUSTED_KEYS") shown = `${Object.keys(JSON.parse(values[name])).length} servers`;
    else shown = values[name] === "" ? "(empty)" : values[name];
    lines.push({ name, shown, from: src.map(label).join(" + ") });
  }
  const w = Math.max(0, ...lines.map((l) => l.name.length));
  const v = Math.min(40, Math.max(0, ...lines.map((l) => l.shown.length)));
  return lines.map((l) => `${l.name.padEnd(w)}  ${l.shown.padEnd(v)}  from ${l.from}`);
}
