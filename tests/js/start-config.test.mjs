// npm start's configuration merge (scripts/config.mjs): generated defaults ←
// the user's worker/.dev.vars ← the environment, TRUSTED_KEYS merged, the old
// generated .dev.vars recognised, values written so wrangler reads them back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { root } from "./fixtures.mjs";
import {
  workerVarNames,
  resolveConfig,
  isGeneratedDevVars,
  parseDevVars,
  devVarsLine,
  formatDevVars,
  describeConfig,
  mergeTrustedKeys,
  ConfigError,
} from "../../scripts/config.mjs";

const configTs = readFileSync(join(root, "worker", "src", "config.ts"), "utf8");
const names = workerVarNames(configTs);

test("the Worker's variables come from worker/src/config.ts's Env (bindings left out)", () => {
  for (const v of ["SERVER_NAME", "SIGNING_KEY", "ADMIN_TOKEN", "TRUSTED_KEYS", "NOTARY_SERVERS", "INSPECTOR", "KEY_SERVER_URL", "DEFAULT_ROOM"]) {
    assert.ok(names.includes(v), `${v} is a Worker variable`);
  }
  for (const b of ["ROOMS", "DIRECTORY", "EVENT_INDEX", "TRANSACTIONS", "ASSETS"]) assert.ok(!names.includes(b), `${b} is a binding`);
  const synthetic = "export interface Env {\n  ROOMS: DurableObjectNamespace;\n  /** doc */\n  FOO?: string;\n  BAR: string;\n  n?: string;\n}\nexport interface Other {\n  BAZ?: string;\n}\n";
  assert.deepEqual(workerVarNames(synthetic), ["FOO", "BAR"]);
  assert.throws(() => workerVarNames("interface Nothing {}"), ConfigError);
});

test("the README's Configuration table documents every Worker variable", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("\n## Configuration"));
  assert.ok(section.length > 1 && readme.includes("\n## Configuration"), "README has a Configuration section");
  const table = section.slice(0, section.indexOf("\n## ", 5) > 0 ? section.indexOf("\n## ", 5) : undefined);
  for (const n of names) assert.match(table, new RegExp(`^\\| \`${n}\` \\|`, "m"), `${n} has a row`);
  for (const n of ["ROOMDAG_PORT", "ROOMDAG_HOST", "ROOMDAG_SERVER_NAME", "ROOMDAG_HTTPS_CERT", "ROOMDAG_HTTPS_KEY", "NODE_EXTRA_CA_CERTS"]) assert.match(table, new RegExp(n), `${n} is documented`);
});

const demoKeys = { "a.example": { "ed25519:a": "A".repeat(43) }, "b.example": { "ed25519:b": "B".repeat(43) } };
const defaults = {
  SERVER_NAME: "localhost:8787",
  SIGNING_KEY: "ed25519:dev " + "S".repeat(43),
  ADMIN_TOKEN: "generated-token-0123456789",
  TRUSTED_KEYS: JSON.stringify(demoKeys),
  KEY_SERVER_URL: "http://127.0.0.1:9/{server}",
  INSPECTOR: "loopback",
};

const cases = [
  {
    name: "nothing set: the defaults",
    want: { SERVER_NAME: "localhost:8787", INSPECTOR: "loopback" },
    from: { SERVER_NAME: "default", ADMIN_TOKEN: "default" },
  },
  {
    name: "the user's file wins over a default",
    user: { SERVER_NAME: "mine.example", NOTARY_SERVERS: "matrix.org" },
    want: { SERVER_NAME: "mine.example", NOTARY_SERVERS: "matrix.org", ADMIN_TOKEN: defaults.ADMIN_TOKEN },
    from: { SERVER_NAME: "file", NOTARY_SERVERS: "file", ADMIN_TOKEN: "default" },
  },
  {
    name: "the environment wins over the user's file",
    user: { SERVER_NAME: "mine.example", INSPECTOR: "open" },
    env: { SERVER_NAME: "env.example" },
    want: { SERVER_NAME: "env.example", INSPECTOR: "open" },
    from: { SERVER_NAME: "env", INSPECTOR: "file" },
  },
  {
    name: "an empty value in the environment still wins (KEY_SERVER_URL= fetches from real servers)",
    user: { KEY_SERVER_URL: "http://127.0.0.1:1234/{server}" },
    env: { KEY_SERVER_URL: "" },
    want: { KEY_SERVER_URL: "" },
    from: { KEY_SERVER_URL: "env" },
  },
  {
    name: "ROOMDAG_SERVER_NAME is SERVER_NAME",
    user: { SERVER_NAME: "mine.example" },
    env: { ROOMDAG_SERVER_NAME: "roomdag.test:8443" },
    want: { SERVER_NAME: "roomdag.test:8443" },
    from: { SERVER_NAME: "env" },
  },
  {
    name: "both names, same value: fine",
    env: { ROOMDAG_SERVER_NAME: "x.test", SERVER_NAME: "x.test" },
    want: { SERVER_NAME: "x.test" },
  },
  {
    name: "environment variables that are not Worker variables are not passed on; the user's file's are",
    user: { MY_OWN: "1" },
    env: { HOME: "/root", PATH: "/bin", MY_OTHER: "2" },
    want: { MY_OWN: "1" },
    absent: ["HOME", "PATH", "MY_OTHER"],
  },
  {
    name: "a Worker variable with no default, from the environment",
    env: { NOTARY_SERVERS: "matrix.org,example.org", DEFAULT_ROOM: "!r:x" },
    want: { NOTARY_SERVERS: "matrix.org,example.org", DEFAULT_ROOM: "!r:x" },
    from: { NOTARY_SERVERS: "env", DEFAULT_ROOM: "env" },
  },
];

for (const c of cases) {
  test(`config: ${c.name}`, () => {
    const { values, sources } = resolveConfig({ names, defaults, user: c.user, env: c.env });
    for (const [k, v] of Object.entries(c.want)) assert.equal(values[k], v, k);
    for (const [k, from] of Object.entries(c.from ?? {})) assert.equal(sources[k].at(-1).from, from, `${k} from`);
    for (const k of c.absent ?? []) assert.ok(!(k in values), `${k} not passed`);
  });
}

test("config: SERVER_NAME and ROOMDAG_SERVER_NAME that differ are an error naming both", () => {
  assert.throws(() => resolveConfig({ names, defaults, env: { ROOMDAG_SERVER_NAME: "a.test", SERVER_NAME: "b.test" } }), /ROOMDAG_SERVER_NAME=a\.test and SERVER_NAME=b\.test/);
});

test("config: TRUSTED_KEYS from the file and the environment are merged with the demo room's keys", () => {
  const user = { TRUSTED_KEYS: JSON.stringify({ "c.example": { "ed25519:c": "C".repeat(43) } }) };
  const env = { TRUSTED_KEYS: JSON.stringify({ "a.example": { "ed25519:a2": "D".repeat(43) }, "e.example": { "ed25519:e": "E".repeat(43) } }) };
  const { values, sources } = resolveConfig({ names, defaults, user, env });
  assert.deepEqual(JSON.parse(values.TRUSTED_KEYS), {
    "a.example": { "ed25519:a": "A".repeat(43), "ed25519:a2": "D".repeat(43) },
    "b.example": demoKeys["b.example"],
    "c.example": { "ed25519:c": "C".repeat(43) },
    "e.example": { "ed25519:e": "E".repeat(43) },
  });
  assert.deepEqual(sources.TRUSTED_KEYS.map((s) => s.from), ["default", "file", "env"]);
  // The same key ID from a later source wins.
  assert.deepEqual(mergeTrustedKeys({ s: { k: "1", j: "2" } }, { s: { k: "3" } }), { s: { k: "3", j: "2" } });
  // Only the environment:
  const only = resolveConfig({ names, defaults, env });
  assert.deepEqual(Object.keys(JSON.parse(only.values.TRUSTED_KEYS)).sort(), ["a.example", "b.example", "e.example"]);
});

test("config: a TRUSTED_KEYS that is not {server: {keyId: base64}} is an error naming where it came from", () => {
  assert.throws(() => resolveConfig({ names, defaults, env: { TRUSTED_KEYS: "{nope" } }), /TRUSTED_KEYS from the environment is not JSON/);
  assert.throws(() => resolveConfig({ names, defaults, user: { TRUSTED_KEYS: '["a"]' }, userFile: "my.vars" }), /TRUSTED_KEYS from my\.vars must be a JSON object/);
  assert.throws(() => resolveConfig({ names, defaults, env: { TRUSTED_KEYS: '{"a.example": {"ed25519:1": 5}}' } }), /a\.example ed25519:1 must be a base64 string/);
  // A fixture's `servers` map is not a key set.
  assert.throws(() => resolveConfig({ names, defaults, env: { TRUSTED_KEYS: '{"a.example": {"verify_keys": {"ed25519:1": "x"}}}' } }), /must be a base64 string/);
});

// What `npm start` wrote into worker/.dev.vars before this change (its exact shape).
const oldGenerated = [
  'SERVER_NAME="localhost:8787"',
  'SIGNING_KEY="ed25519:dev abc"',
  'ADMIN_TOKEN="0123456789abcdef0123"',
  `TRUSTED_KEYS='${JSON.stringify(demoKeys)}'`,
  "// The demo's servers (a.example, …) do not exist: key lookups for keys no",
  "// fixture publishes fail at once on loopback instead of in DNS. Remove this",
  "// line to fetch keys from real servers.",
  "KEY_SERVER_URL='http://127.0.0.1:9/{server}'",
  "",
].join("\n");

test("the worker/.dev.vars an older npm start generated is recognised; a user's is not", () => {
  assert.equal(isGeneratedDevVars(oldGenerated), true);
  assert.equal(isGeneratedDevVars('SERVER_NAME="mine.example"\n# my notes: the demo servers do not exist\n'), false);
  assert.equal(isGeneratedDevVars(""), false);
});

test("written variables read back exactly (quotes, #, spaces, $, JSON, newlines)", () => {
  const values = {
    PLAIN: "abc",
    JSON_: JSON.stringify({ "a.example": { "ed25519:1": "x/y+z" } }),
    SINGLE: "it's",
    BOTH: `it's "quoted"`,
    HASH: "a # not a comment",
    SPACES: "  padded  ",
    EMPTY: "",
    TEMPLATE: "http://127.0.0.1:9/{server}",
    NEWLINE: "line 1\nline 2",
  };
  const text = formatDevVars(values, ["a header"]);
  assert.match(text, /^# a header\n/);
  assert.deepEqual(parseDevVars(text), values);
  assert.deepEqual(parseEnv(text), values);
  // dotenv-expand (wrangler's --env-file reader) substitutes $NAME and turns \$ into $: every $ is escaped.
  assert.equal(devVarsLine("T", "a$HOME${X}\\$b"), "T='a\\$HOME\\${X}\\\\$b'");
  assert.throws(() => devVarsLine("T", `'"\``), ConfigError);
  assert.throws(() => devVarsLine("NOT A NAME", "x"), ConfigError);
});

test("the start-up summary names each non-default value's source and hides secrets", () => {
  const r = resolveConfig({
    names,
    defaults,
    user: { SIGNING_KEY: "ed25519:mine " + "K".repeat(43), INSPECTOR: "open" },
    env: { ADMIN_TOKEN: "env-secret-token-123456", ROOMDAG_SERVER_NAME: "roomdag.test:8443", TRUSTED_KEYS: JSON.stringify({ "z.example": { "ed25519:z": "Z".repeat(43) } }) },
    userFile: "worker/.dev.vars",
  });
  const lines = describeConfig(r);
  const text = lines.join("\n");
  assert.ok(!text.includes("env-secret-token"), "no admin token");
  assert.ok(!text.includes("K".repeat(43)), "no signing key seed");
  assert.match(text, /ADMIN_TOKEN +\(secret\) +from environment/);
  assert.match(text, /SIGNING_KEY +\(secret\) +from worker\/\.dev\.vars/);
  assert.match(text, /SERVER_NAME +roomdag\.test:8443 +from environment \(ROOMDAG_SERVER_NAME\)/);
  assert.match(text, /INSPECTOR +open +from worker\/\.dev\.vars/);
  assert.match(text, /TRUSTED_KEYS +3 servers +from default \+ environment/);
  assert.ok(!/KEY_SERVER_URL/.test(text), "defaults are not listed");
});
