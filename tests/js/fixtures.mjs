// Loads the Synapse-judged fixtures: $ROOMDAG_FIXTURES, else ../shared/fixtures
// when it exists, else the project's own copy in tests/shared/fixtures.
import { readFileSync, existsSync, readdirSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** One kind of shared test material (`fixtures`, `oracle`): see tests/shared/README.md. */
export function sharedDir(kind) {
  if (process.env.ROOMDAG_SHARED) return join(process.env.ROOMDAG_SHARED, kind);
  const steering = join(root, "..", "shared", kind);
  return existsSync(steering) ? steering : join(root, "tests", "shared", kind);
}
export const fixturesDir = process.env.ROOMDAG_FIXTURES ?? sharedDir("fixtures");

/**
 * Every room fixture the suites replay, `{file, name, ext, dir}`: those of
 * `fixturesDir`, then the project's own copy's rooms not already listed (it
 * holds rooms of its own, e.g. the feature rooms). `$ROOMDAG_FIXTURES` alone
 * when set.
 */
export function fixtureRooms() {
  const own = join(root, "tests", "shared", "fixtures");
  const dirs = process.env.ROOMDAG_FIXTURES || fixturesDir === own ? [fixturesDir] : [fixturesDir, own];
  const seen = new Set();
  const out = [];
  for (const dir of dirs) {
    for (const f of readdirSync(dir).sort()) {
      if (!/\.json(\.gz)?$/.test(f) || /\.(queries|expected)\./.test(f)) continue;
      const ext = f.endsWith(".gz") ? ".json.gz" : ".json";
      const name = f.slice(0, -ext.length);
      if (seen.has(name) || !existsSync(join(dir, `${name}.queries${ext}`))) continue;
      seen.add(name);
      out.push({ file: join(dir, f), name, ext, dir });
    }
  }
  return out;
}

/** A named fixture file's bytes: from `fixturesDir`, else from the project's copy. */
export function readFixtureFile(name) {
  for (const p of [fixturesDir, join(root, "tests", "shared", "fixtures")].flatMap((d) => [".json", ".json.gz"].map((ext) => join(d, name + ext)))) {
    if (existsSync(p)) {
      const bytes = readFileSync(p);
      return p.endsWith(".gz") ? gunzipSync(bytes) : bytes;
    }
  }
  throw new Error(`fixture ${name} not found in ${fixturesDir}`);
}

export function loadFixture(name) {
  return {
    room: JSON.parse(readFixtureFile(name).toString("utf8")),
    queries: JSON.parse(readFixtureFile(`${name}.queries`).toString("utf8")),
    expected: JSON.parse(readFixtureFile(`${name}.expected`).toString("utf8")),
  };
}

/**
 * Servers that ask the fixtures' queries without being in the room
 * (`stranger.example`): authenticated, with keys only the tests know.
 */
export const OUTSIDERS = {
  "stranger.example": {
    keyId: "ed25519:s",
    seed: "cm9vbWRhZy10ZXN0OiBzdHJhbmdlci5leGFtcGxlISE",
    publicKey: "Dc+bU7FMqwzPT/NQnO4/sYvvtnlkpxLWgNUtOoyo8yM",
  },
};

/** The fixture's servers' keys, and the outsiders', as `trustedKeys`. */
export function trustedKeysOf(room) {
  const keys = Object.fromEntries(Object.entries(room.servers).map(([s, v]) => [s, v.verify_keys]));
  for (const [s, o] of Object.entries(OUTSIDERS)) keys[s] ??= { [o.keyId]: o.publicKey };
  return keys;
}

/** The compared fields of an answer, as oracle/compare.py normalises them. */
export function norm(endpoint, a, want) {
  if (!a || a.status !== 200) return [a?.status ?? null, a?.errcode ?? null];
  const sorted = (x) => [...(x ?? [])].sort();
  const pruned = (got, w) => (got === "either" ? Boolean(w) : got);
  switch (endpoint) {
    case "state_ids":
    case "state":
      return [200, sorted(a.pdu_ids), sorted(a.auth_chain_ids)];
    case "backfill":
    case "get_missing_events": {
      const field = endpoint === "backfill" ? "pdus" : "events";
      const wants = Object.fromEntries(((want ?? {})[field] ?? []).map((p) => [p.event_id, p.pruned]));
      return [200, (a[field] ?? []).map((p) => [p.event_id, pruned(p.pruned, wants[p.event_id])])];
    }
    case "timestamp_to_event":
      return [200, a.event_id, a.origin_server_ts];
    case "event":
      return [200, a.event_id, pruned(a.pruned, want?.pruned)];
    default:
      return [200, JSON.stringify(a)];
  }
}
