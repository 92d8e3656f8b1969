// The outbound FederationClient without a network: server discovery
// (IP literals, explicit ports, .well-known with caching, expiry, failures,
// redirects and size caps, SRV through a mock resolver), invalid names and
// private addresses (fetch never called), backoff, timeouts, response-size
// caps and signing. Every case asserts the fetch spy's calls.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  FederationClient,
  FederationRequestError,
  FederationServer,
  RoomDirectory,
  MemoryStore,
  publicKeyOf,
  isValidServerName,
  dohSrvResolver,
  dohHostResolver,
} from "../../pkg/node.js";

const OURS = { serverName: "ours.example", signingKey: { keyId: "ed25519:o", seed: "b3VycyBvdXJzIG91cnMgb3VycyBvdXJzIG91cnMgb3U" } };
const json = (body, init = {}) => new Response(JSON.stringify(body), { ...init, headers: { "content-type": "application/json", ...(init.headers ?? {}) } });

/** A fetch spy: `routes(url, init)` answers; every call is recorded. */
function spy(routes) {
  const calls = [];
  const fetch = async (url, init = {}, target) => {
    calls.push({ url, init, target });
    const r = await routes(url, init);
    if (!r) throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
    return r;
  };
  return { fetch, calls, urls: () => calls.map((c) => c.url) };
}

function clock(start = 1_700_000_000_000) {
  const c = { t: start, now: () => c.t, advance: (ms) => (c.t += ms) };
  return c;
}

function makeClient(fetch, extra = {}) {
  return new FederationClient({ ...OURS, fetch, log: () => {}, random: () => 0.5, ...extra });
}

const VERSION = "/_matrix/federation/v1/version";
const ok = () => json({ server: { name: "x" } });

async function rejects(promise, code) {
  const e = await promise.then(
    () => assert.fail(`expected ${code}`),
    (err) => err,
  );
  assert.ok(e instanceof FederationRequestError, `a FederationRequestError, not ${e}`);
  assert.equal(e.code, code, e.message);
  return e;
}

test("step 1: an IP literal is used as is, port or 8448; no .well-known", async () => {
  const s = spy(() => ok());
  const c = makeClient(s.fetch);
  await c.get("93.184.216.34", VERSION);
  await c.get("[2606:4700::1111]:8443", VERSION);
  assert.deepEqual(s.urls(), [`https://93.184.216.34:8448${VERSION}`, `https://[2606:4700::1111]:8443${VERSION}`]);
  assert.equal(s.calls[0].target.server.hostHeader, "93.184.216.34");
  assert.equal(s.calls[0].target.server.tlsServerName, "93.184.216.34");
  assert.equal(s.calls[0].target.server.via, "ip_literal");
});

test("step 2: an explicit port skips .well-known and SRV", async () => {
  const s = spy(() => ok());
  let srv = 0;
  const c = makeClient(s.fetch, { resolveSrv: async () => (srv++, { records: [] }) });
  await c.get("hs1.example:8448", VERSION);
  assert.deepEqual(s.urls(), [`https://hs1.example:8448${VERSION}`]);
  assert.equal(srv, 0);
  assert.equal(s.calls[0].target.server.hostHeader, "hs1.example:8448");
});

test("step 3: .well-known delegation, cached per Cache-Control, refetched when it expires", async () => {
  const t = clock();
  const s = spy((url) =>
    url === "https://example.org/.well-known/matrix/server"
      ? json({ "m.server": "matrix.example.org:443" }, { headers: { "cache-control": "max-age=600" } })
      : ok(),
  );
  const c = makeClient(s.fetch, { now: t.now });
  await c.get("example.org", VERSION);
  assert.deepEqual(s.urls(), ["https://example.org/.well-known/matrix/server", `https://matrix.example.org${VERSION}`]);
  const server = s.calls[1].target.server;
  assert.equal(server.hostHeader, "matrix.example.org:443");
  assert.equal(server.tlsServerName, "matrix.example.org");
  assert.equal(server.via, "well_known_explicit_port");
  // The X-Matrix destination is the server name, not the delegated host.
  assert.match(s.calls[1].init.headers.authorization, /destination="example\.org"/);
  assert.match(s.calls[1].init.headers.authorization, /origin="ours\.example"/);
  t.advance(7 * 60_000);
  await c.get("example.org", VERSION);
  assert.equal(s.calls.length, 3, "cached: no second .well-known fetch");
  t.advance(2 * 60_000); // 9 min: past 80 % of the 10 min
  await c.get("example.org", VERSION);
  assert.deepEqual(s.urls().slice(3), ["https://example.org/.well-known/matrix/server", `https://matrix.example.org${VERSION}`]);
});

test("step 3: without cache headers a delegation is kept about a day", async () => {
  const t = clock();
  const s = spy((url) => (url.includes("/.well-known/") ? json({ "m.server": "m.example.org" }) : ok()));
  const c = makeClient(s.fetch, { now: t.now });
  await c.get("example.org", VERSION);
  assert.equal(s.urls()[1], `https://m.example.org:8448${VERSION}`, "no port: SRV (none without a resolver), then 8448");
  t.advance(18 * 3600_000);
  await c.get("example.org", VERSION);
  assert.equal(s.urls().filter((u) => u.includes("/.well-known/")).length, 1);
  t.advance(8 * 3600_000);
  await c.get("example.org", VERSION);
  assert.equal(s.urls().filter((u) => u.includes("/.well-known/")).length, 2);
});

test("step 3 failures: 404, bad JSON, invalid m.server, oversized body → port 8448; failures cached about an hour", async () => {
  for (const [name, answer] of [
    ["a404.example", () => new Response("nope", { status: 404 })],
    ["badjson.example", () => new Response("{not json", { status: 200 })],
    ["invalid.example", () => json({ "m.server": "evil.example/path?x" })],
    ["huge.example", () => new Response("x".repeat(60 * 1024), { status: 200 })],
    ["down.example", () => undefined],
  ]) {
    const t = clock();
    const s = spy((url) => (url.includes("/.well-known/") ? answer() : ok()));
    const c = makeClient(s.fetch, { now: t.now });
    await c.get(name, VERSION);
    assert.deepEqual(s.urls(), [`https://${name}/.well-known/matrix/server`, `https://${name}:8448${VERSION}`], name);
    t.advance(40 * 60_000);
    await c.get(name, VERSION);
    assert.equal(s.calls.length, 3, `${name}: the failure is cached`);
    t.advance(30 * 60_000);
    await c.get(name, VERSION);
    assert.equal(s.calls.length, 5, `${name}: fetched again after the failure's cache period`);
    assert.ok((await c.resolve(name)).wellKnownError, "the resolution says why there is no delegation");
  }
});

test("step 3 redirects: followed over https; not to http, not to private addresses, not forever", async () => {
  const s = spy((url) => {
    if (url === "https://example.org/.well-known/matrix/server") return new Response(null, { status: 301, headers: { location: "https://www.example.org/wk" } });
    if (url === "https://www.example.org/wk") return json({ "m.server": "m.example.org:443" });
    return ok();
  });
  const c = makeClient(s.fetch);
  await c.get("example.org", VERSION);
  assert.deepEqual(s.urls(), ["https://example.org/.well-known/matrix/server", "https://www.example.org/wk", `https://m.example.org${VERSION}`]);
  assert.equal(s.calls[0].init.redirect, "manual", "the core, not fetch, decides about redirects");

  const s2 = spy((url) => {
    if (url === "https://a.example/.well-known/matrix/server") return new Response(null, { status: 302, headers: { location: "http://a.example/x" } });
    if (url === "https://b.example/.well-known/matrix/server") return new Response(null, { status: 302, headers: { location: "https://127.0.0.1/x" } });
    if (url === "https://c.example/.well-known/matrix/server") return new Response(null, { status: 302, headers: { location: "/.well-known/matrix/server" } });
    return ok();
  });
  const c2 = makeClient(s2.fetch);
  await c2.get("a.example", VERSION);
  await c2.get("b.example", VERSION);
  await c2.get("c.example", VERSION);
  const urls = s2.urls();
  assert.ok(!urls.some((u) => u.startsWith("http://")), "never plain HTTP");
  assert.ok(!urls.some((u) => u.includes("127.0.0.1")), "never a private address");
  assert.equal(urls.filter((u) => u === "https://c.example/.well-known/matrix/server").length, 21, "a redirect loop stops after 20 redirects");
  assert.ok(urls.includes(`https://a.example:8448${VERSION}`) && urls.includes(`https://b.example:8448${VERSION}`) && urls.includes(`https://c.example:8448${VERSION}`));
});

test("steps 4–6: SRV _matrix-fed._tcp, then _matrix._tcp, then 8448 (mock resolver)", async () => {
  const asked = [];
  const records = {
    "_matrix-fed._tcp.fed.example": [{ priority: 10, weight: 1, port: 8443, target: "host.fed.example." }],
    "_matrix._tcp.old.example": [{ priority: 5, weight: 0, port: 443, target: "legacy.old.example" }],
  };
  const resolveSrv = async (name) => (asked.push(name), { records: records[name] ?? [], ttl: 600 });
  const s = spy((url) => (url.includes("/.well-known/") ? new Response("", { status: 404 }) : ok()));
  const c = makeClient(s.fetch, { resolveSrv });
  await c.get("fed.example", VERSION);
  await c.get("old.example", VERSION);
  await c.get("none.example", VERSION);
  assert.deepEqual(asked, ["_matrix-fed._tcp.fed.example", "_matrix-fed._tcp.old.example", "_matrix._tcp.old.example", "_matrix-fed._tcp.none.example", "_matrix._tcp.none.example"]);
  const requests = s.calls.filter((x) => !x.url.includes("/.well-known/"));
  assert.deepEqual(requests.map((x) => x.url), [`https://host.fed.example:8443${VERSION}`, `https://legacy.old.example${VERSION}`, `https://none.example:8448${VERSION}`]);
  assert.equal(requests[0].target.server.hostHeader, "fed.example", "Host stays the server name");
  assert.equal(requests[0].target.server.tlsServerName, "fed.example", "the certificate must be valid for the server name");
  assert.equal(requests[0].target.server.via, "srv");
  // SRV answers are cached for their TTL.
  await c.get("fed.example", VERSION);
  assert.equal(asked.length, 5);
  // A resolver error fails the request (as Synapse), and backs the destination off.
  const c2 = makeClient(s.fetch, { resolveSrv: async () => Promise.reject(new Error("SERVFAIL")) });
  const e = await rejects(c2.get("broken.example", VERSION), "network");
  assert.match(e.message, /SERVFAIL/);
  await rejects(c2.get("broken.example", VERSION), "backing_off");
});

test("DNS-over-HTTPS SRV resolver parses the JSON API", async () => {
  const s = spy((url) => {
    const u = new URL(url);
    assert.equal(u.searchParams.get("type"), "SRV");
    if (u.searchParams.get("name") === "_matrix-fed._tcp.doh.example") {
      return json({ Status: 0, Answer: [{ name: "_matrix-fed._tcp.doh.example.", type: 33, TTL: 120, data: "10 5 8448 matrix.doh.example." }] });
    }
    return json({ Status: 3 });
  });
  const resolve = dohSrvResolver({ url: "https://dns.example/dns-query", fetch: s.fetch });
  assert.deepEqual(await resolve("_matrix-fed._tcp.doh.example"), { records: [{ priority: 10, weight: 5, port: 8448, target: "matrix.doh.example." }], ttl: 120 });
  assert.deepEqual(await resolve("_matrix._tcp.nx.example"), { records: [], ttl: 300 });
  assert.equal(s.calls[0].init.headers.accept, "application/dns-json");
});

test("DNS-over-HTTPS host resolver: A and AAAA, cached for their TTL", async () => {
  let t = 0;
  const s = spy((url) => {
    const type = new URL(url).searchParams.get("type");
    return json({ Status: 0, Answer: type === "A" ? [{ type: 1, TTL: 60, data: "10.0.0.7" }] : [{ type: 28, TTL: 60, data: "2606:4700::1" }] });
  });
  const resolve = dohHostResolver({ url: "https://dns.example/dns-query", fetch: s.fetch, now: () => t });
  assert.deepEqual(await resolve("h.example"), ["10.0.0.7", "2606:4700::1"]);
  await resolve("h.example");
  assert.equal(s.calls.length, 2, "cached");
  t += 61_000;
  await resolve("h.example");
  assert.equal(s.calls.length, 4, "expired after its TTL");
  // As the client's resolveHost: the name resolving to 10.0.0.7 is refused.
  const requests = spy(() => ok());
  await rejects(makeClient(requests.fetch, { resolveHost: resolve }).get("h.example:8448", VERSION), "private_address");
  assert.equal(requests.calls.length, 0);
});

test("invalid server names are refused before anything is fetched", async () => {
  const s = spy(() => ok());
  const c = makeClient(s.fetch);
  for (const bad of ["host/path?x", "user@host", "a b", "a..b", "", "evil.example#x", "x:0", "1.2.3.999", "127.1", "[::1", "a".repeat(300)]) {
    await rejects(c.get(bad, VERSION), "invalid_server_name");
    assert.equal(isValidServerName(bad), false, bad);
  }
  await rejects(c.get(42, VERSION), "invalid_server_name");
  await rejects(c.get("ok.example", "/not-matrix"), "invalid_request");
  await rejects(c.get("ok.example", "/_matrix/x y"), "invalid_request");
  await rejects(c.request("ok.example", { method: "TRACE", target: VERSION }), "invalid_request");
  assert.equal(s.calls.length, 0, "fetch was never called");
});

test("private addresses are refused unless allowed: literals, localhost, delegations and resolved names", async () => {
  const s = spy((url) => (url === "https://delegates.example/.well-known/matrix/server" ? json({ "m.server": "127.0.0.1:8448" }) : ok()));
  const c = makeClient(s.fetch, { resolveHost: async (h) => (h === "rebind.example" ? ["93.184.216.34", "10.0.0.5"] : ["93.184.216.34"]) });
  for (const name of ["127.0.0.1:8448", "10.1.2.3", "[::1]:8448", "[::ffff:127.0.0.1]", "169.254.169.254", "0.0.0.0", "192.168.1.1:443", "[fe80::1]", "localhost:8448", "a.localhost:8448", "rebind.example:8448"]) {
    await rejects(c.get(name, VERSION), "private_address");
  }
  assert.equal(s.calls.length, 0, "fetch was never called");
  await rejects(c.get("delegates.example", VERSION), "private_address");
  assert.deepEqual(s.urls(), ["https://delegates.example/.well-known/matrix/server"], "only the public .well-known was fetched");
  assert.equal(c.backoffOf("127.0.0.1:8448"), undefined, "a refusal is not a failure of the destination");

  const allowed = spy(() => ok());
  const c2 = makeClient(allowed.fetch, { allowPrivateAddresses: true });
  await c2.get("127.0.0.1:8448", VERSION);
  await c2.get("localhost:8448", VERSION);
  assert.deepEqual(allowed.urls(), [`https://127.0.0.1:8448${VERSION}`, `https://localhost:8448${VERSION}`]);
});

test("backoff: a failure stops requests for 10 min, then ×2; success resets; a 404 does not back off", async () => {
  const t = clock();
  let up = false;
  let status = 200;
  const s = spy(() => (up ? new Response(JSON.stringify({ errcode: "M_NOT_FOUND", error: "x" }), { status }) : undefined));
  const c = makeClient(s.fetch, { now: t.now });
  const net = await rejects(c.get("down.example:8448", VERSION), "network");
  assert.match(net.message, /ECONNREFUSED/);
  const off = await rejects(c.get("down.example:8448", VERSION), "backing_off");
  assert.equal(off.retryAt, t.now() + 10 * 60_000);
  assert.equal(s.calls.length, 1, "not contacted while backing off");
  t.advance(10 * 60_000);
  await rejects(c.get("down.example:8448", VERSION), "network");
  assert.equal(s.calls.length, 2);
  assert.equal(c.backoffOf("down.example:8448").retryInterval, 10 * 60_000 * 2 * 1.1, "×2 with Synapse's jitter (random 0.5 → ×1.1)");
  t.advance(21 * 60_000);
  // ignoreBackoff contacts it anyway (key fetching does); its failure does not lengthen the backoff.
  await rejects(c.get("down.example:8448", VERSION, { ignoreBackoff: true }), "network");
  assert.equal(s.calls.length, 3);
  assert.equal(c.backoffOf("down.example:8448").retryInterval, 10 * 60_000 * 2 * 1.1);
  t.advance(60_000);
  up = true;
  status = 404;
  const e = await rejects(c.get("down.example:8448", VERSION), "http");
  assert.equal(e.status, 404);
  assert.equal(e.body.errcode, "M_NOT_FOUND");
  status = 200;
  await c.get("down.example:8448", VERSION);
  assert.equal(c.backoffOf("down.example:8448"), undefined, "success resets");
  // 404s from a live server never start a backoff; 500s do.
  status = 404;
  await rejects(c.get("down.example:8448", VERSION), "http");
  await rejects(c.get("down.example:8448", VERSION), "http");
  status = 502;
  await rejects(c.get("down.example:8448", VERSION), "http");
  await rejects(c.get("down.example:8448", VERSION), "backing_off");
});

test("timeouts: a server that never answers, or answers too slowly", async () => {
  const hang = spy(() => new Promise(() => {}));
  const c = makeClient(hang.fetch, { timeoutMs: 50 });
  const started = Date.now();
  const e = await rejects(c.get("slow.example:8448", VERSION), "timeout");
  assert.ok(Date.now() - started < 5_000);
  assert.match(e.message, /50 ms/);
  assert.ok(hang.calls[0].init.signal.aborted, "the fetch was aborted");
  // A body that trickles past the deadline.
  const slowBody = spy(
    () =>
      new Response(
        new ReadableStream({
          async pull(ctl) {
            await new Promise((r) => setTimeout(r, 30));
            ctl.enqueue(new TextEncoder().encode(" "));
          },
        }),
      ),
  );
  await rejects(makeClient(slowBody.fetch, { timeoutMs: 100 }).get("slow.example:8448", VERSION), "timeout");
  // A per-request timeout.
  await rejects(makeClient(hang.fetch).get("slow2.example:8448", VERSION, { timeoutMs: 30 }), "timeout");
  // A .well-known that hangs counts against the request's timeout.
  await rejects(makeClient(hang.fetch, { timeoutMs: 50 }).get("wk.example", VERSION), "timeout");
});

test("size caps: a declared or streamed body over the cap is cut off", async () => {
  const big = spy(() => new Response("x".repeat(2000), { headers: { "content-length": "2000" } }));
  await rejects(makeClient(big.fetch, { maxResponseBytes: 1000 }).get("big.example:8448", VERSION), "too_large");
  let pulled = 0;
  let cancelled = false;
  const endless = spy(
    () =>
      new Response(
        new ReadableStream({
          pull(ctl) {
            pulled++;
            ctl.enqueue(new Uint8Array(4096));
          },
          cancel() {
            cancelled = true;
          },
        }),
      ),
  );
  const c = makeClient(endless.fetch);
  const e = await rejects(c.get("endless.example:8448", VERSION, { maxBytes: 64 * 1024 }), "too_large");
  assert.match(e.message, /65536/);
  assert.ok(pulled <= 20, `reading stopped at the cap (${pulled} chunks)`);
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(cancelled, "the stream was cancelled");
  const small = spy(() => json({ fine: true }));
  assert.deepEqual(await makeClient(small.fetch, { maxResponseBytes: 1000 }).get("small.example:8448", VERSION), { fine: true });
});

test("answers: non-2xx → http with status and body; a 2xx that is not JSON → bad_json", async () => {
  const s = spy((url) => (url.endsWith("/bad") ? new Response("<html>", { status: 200 }) : json({ errcode: "M_FORBIDDEN", error: "no" }, { status: 403 })));
  const c = makeClient(s.fetch);
  const e = await rejects(c.get("x.example:8448", "/_matrix/federation/v1/forbidden"), "http");
  assert.equal(e.status, 403);
  assert.deepEqual(e.body, { errcode: "M_FORBIDDEN", error: "no" });
  assert.match(e.message, /M_FORBIDDEN/);
  await rejects(c.get("x.example:8448", "/_matrix/federation/v1/bad"), "bad_json");
});

test("failures are logged with the server name and the reason", async () => {
  const entries = [];
  const s = spy(() => undefined);
  const c = new FederationClient({ ...OURS, fetch: s.fetch, log: (e) => entries.push(e), random: () => 0.5 });
  await rejects(c.get("gone.example:8448", VERSION), "network");
  const warn = entries.find((e) => e.level === "warn");
  assert.equal(warn.destination, "gone.example:8448");
  assert.equal(warn.code, "network");
  assert.match(warn.message, /gone\.example:8448.*ECONNREFUSED/);
});

test("requests are signed as our server: a roomdag FederationServer authenticates them", async () => {
  const rooms = new RoomDirectory({ createStore: () => new MemoryStore() });
  const server = new FederationServer({
    serverName: "dest.example:8448",
    signingKey: { keyId: "ed25519:d", seed: "ZGVzdCBkZXN0IGRlc3QgZGVzdCBkZXN0IGRlc3QgZGU" },
    rooms,
    trustedKeys: { [OURS.serverName]: { [OURS.signingKey.keyId]: publicKeyOf(OURS.signingKey.seed) } },
    fetch: async () => assert.fail("the server needs no key fetch"),
    log: () => {},
  });
  const s = spy((url, init) => server.handleFederationRequest(new Request(url, init)));
  const c = makeClient(s.fetch);
  const target = "/_matrix/federation/v1/state_ids/!nowhere%3Adest.example?event_id=%24e";
  const e = await rejects(c.get("dest.example:8448", target), "http");
  assert.equal(e.status, 403, "authenticated (then: unknown room, Host not in room as Synapse)");
  const body = { earliest_events: [], latest_events: ["$x"], limit: 5 };
  const p = await rejects(c.post("dest.example:8448", "/_matrix/federation/v1/get_missing_events/!nowhere%3Adest.example", body), "http");
  assert.equal(p.status, 403, "a signed body authenticates too");
  assert.equal(s.calls.at(-1).init.headers["content-type"], "application/json");
  assert.equal(s.calls.at(-1).init.body, JSON.stringify(body));
  const unsigned = await rejects(c.get("dest.example:8448", target, { signed: false }), "http");
  assert.equal(unsigned.status, 401);
  assert.ok(c.backoffOf("dest.example:8448"), "a 401 backs off (as Synapse: it will not accept us for a while)");
});

test("baseUrl override (KEY_SERVER_URL): no discovery, no address policy, names still validated", async () => {
  const s = spy(() => ok());
  const c = makeClient(s.fetch, { baseUrl: "http://127.0.0.1:9000/{server}" });
  await c.get("any.example", VERSION);
  assert.deepEqual(s.urls(), [`http://127.0.0.1:9000/any.example${VERSION}`]);
  await rejects(c.get("host/path?x", VERSION), "invalid_server_name");
  assert.equal(s.calls.length, 1);
});

test("constructor: wrong arguments are TypeErrors naming the option", () => {
  assert.throws(() => new FederationClient({}), /serverName/);
  assert.throws(() => new FederationClient({ serverName: "bad name", signingKey: OURS.signingKey }), /serverName/);
  assert.throws(() => new FederationClient({ serverName: "a.example" }), /signingKey/);
  assert.throws(() => new FederationClient({ ...OURS, baseUrl: 5 }), /baseUrl/);
});
