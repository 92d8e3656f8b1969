// The FederationClient over real TLS on loopback: a throwaway CA (openssl),
// a Node HTTPS server with a certificate for `localhost`, and the client in
// a child Node process that trusts the CA through NODE_EXTRA_CA_CERTS (as
// wrangler passes it to workerd). Checks: a signed request over TLS with an
// explicit port; a certificate for another name is a `tls` error; without
// allowPrivateAddresses nothing reaches the server. Skipped (with a line
// saying so) where openssl is missing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { createServer } from "node:https";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

const haveOpenssl = spawnSync("openssl", ["version"]).status === 0;
const pkg = fileURLToPath(new URL("../../pkg/node.js", import.meta.url));
let dir;
const servers = [];

/** A CA, and a leaf certificate for `names` (SAN DNS entries) signed by it. */
function issue(name, names) {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n`);
  const key = join(dir, `${name}.key`);
  execFileSync("openssl", ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${names[0]}`, "-keyout", key, "-out", join(dir, `${name}.csr`)], { stdio: "ignore" });
  execFileSync("openssl", ["x509", "-req", "-in", join(dir, `${name}.csr`), "-CA", join(dir, "ca.crt"), "-CAkey", join(dir, "ca.key"), "-CAcreateserial", "-days", "2", "-sha256", "-extfile", ext, "-out", join(dir, `${name}.crt`)], { stdio: "ignore" });
  return { key: readFileSync(key), cert: readFileSync(join(dir, `${name}.crt`)) };
}

async function serve(tls) {
  const requests = [];
  const server = createServer(tls, (req, res) => {
    requests.push({ url: req.url, authorization: req.headers.authorization, host: req.headers.host });
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ server: { name: "tls-test" } }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  return { port: server.address().port, requests };
}

/** Runs a request with the client in a child Node that trusts our CA. */
function clientRequest(destination, { allowPrivateAddresses }) {
  const script = `
    import { FederationClient } from ${JSON.stringify(pkg)};
    const c = new FederationClient({ serverName: "ours.example", signingKey: { keyId: "ed25519:o", seed: "b3VycyBvdXJzIG91cnMgb3VycyBvdXJzIG91cnMgb3U" },
      allowPrivateAddresses: ${allowPrivateAddresses}, timeoutMs: 10000, log: () => {} });
    try { console.log(JSON.stringify({ json: await c.get(${JSON.stringify(destination)}, "/_matrix/federation/v1/version") })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
  // Asynchronously: the server answers from this process's event loop.
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, "ca.crt") },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (child.kill("SIGKILL"), reject(new Error("client process timed out"))), 30_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`client process exited ${code}: ${err}`));
      resolve(JSON.parse(out.trim().split("\n").at(-1)));
    });
  });
}

before(() => {
  if (!haveOpenssl) return;
  dir = mkdtempSync(join(tmpdir(), "roomdag-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256", "-subj", "/CN=roomdag test CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout", join(dir, "ca.key"), "-out", join(dir, "ca.crt")], { stdio: "ignore" });
});
after(() => {
  for (const s of servers) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("real TLS: a signed request to localhost:PORT (explicit port, no .well-known)", { skip: !haveOpenssl && "openssl is not installed" }, async () => {
  const { port, requests } = await serve(issue("localhost", ["localhost"]));
  const r = await clientRequest(`localhost:${port}`, { allowPrivateAddresses: true });
  assert.deepEqual(r, { json: { server: { name: "tls-test" } } });
  assert.equal(requests.length, 1, "no .well-known for a name with a port");
  assert.equal(requests[0].url, "/_matrix/federation/v1/version");
  assert.match(requests[0].authorization, new RegExp(`^X-Matrix origin="ours\\.example",destination="localhost:${port}",key="ed25519:o",sig="`));
  assert.equal(requests[0].host, `localhost:${port}`);
});

test("real TLS: a certificate for another name is a tls error", { skip: !haveOpenssl && "openssl is not installed" }, async () => {
  const { port } = await serve(issue("wrong", ["wrong.example"]));
  const r = await clientRequest(`localhost:${port}`, { allowPrivateAddresses: true });
  assert.equal(r.code, "tls", r.message);
});

test("real TLS: without allowPrivateAddresses nothing reaches a loopback server", { skip: !haveOpenssl && "openssl is not installed" }, async () => {
  const { port, requests } = await serve(issue("localhost2", ["localhost"]));
  const r = await clientRequest(`localhost:${port}`, { allowPrivateAddresses: false });
  assert.equal(r.code, "private_address");
  assert.equal(requests.length, 0);
});
