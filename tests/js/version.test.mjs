// GET /_matrix/federation/v1/version: the spec's shape, with the package's version.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FederationServer, RoomDirectory, MemoryStore } from "../../pkg/node.js";
import { root } from "./fixtures.mjs";

test("/version answers {server: {name, version}} with the package's version, unauthenticated", async () => {
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const server = new FederationServer({ serverName: "roomdag.test", signingKey: { keyId: "ed25519:v", seed: "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE" }, rooms });
  const r = await server.handleFederationRequest(new Request("http://roomdag.test/_matrix/federation/v1/version"));
  assert.equal(r.status, 200);
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  assert.deepEqual(await r.json(), { server: { name: "roomdag", version } });
  const post = await server.handleFederationRequest(new Request("http://roomdag.test/_matrix/federation/v1/version", { method: "POST" }));
  assert.equal(post.status, 405);
});
