// The outbound federation client: server discovery, X-Matrix-signed
// requests, timeouts, response-size caps, per-destination backoff and the
// private-address policy, over an injected `fetch` (Node, browsers, workerd).
// Every decision — is the name valid, which URL, which header, back off or
// not — is the core's (`src/client`); this file only performs the I/O.
import { wasm, call, json } from "./common.js";

/** Largest response body read by default: 32 MiB. */
export const DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024;
/** Default timeout of a whole request, discovery included: 30 s. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** Destinations whose backoff state is remembered (the oldest are forgotten). */
const MAX_BACKOFF_ENTRIES = 10_000;

/**
 * Why a federation request failed. `code` is one of:
 * - `invalid_server_name`: the destination is not a valid server name (nothing was fetched);
 * - `invalid_request`: a bad method, target or body (nothing was fetched);
 * - `private_address`: the destination resolves to a loopback, private, link-local or
 *   unspecified address and `allowPrivateAddresses` is off (nothing was fetched);
 * - `backing_off`: the destination failed recently and its backoff has not ended
 *   (`retryAt`: when it may be tried again; nothing was fetched);
 * - `timeout`: no complete answer within the timeout;
 * - `too_large`: the body exceeded the size cap (reading was aborted);
 * - `network`: DNS, connection or discovery failure;
 * - `tls`: a TLS failure (certificate, handshake);
 * - `http`: a non-2xx answer (`status`, `body`: parsed JSON, or text);
 * - `bad_json`: a 2xx answer whose body is not JSON.
 */
export class FederationRequestError extends Error {
  constructor(code, message, { destination, status, body, retryAt, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "FederationRequestError";
    this.code = code;
    this.destination = destination;
    if (status !== undefined) this.status = status;
    if (body !== undefined) this.body = body;
    if (retryAt !== undefined) this.retryAt = retryAt;
  }
}

/** Whether `name` is a valid server name (one the client would contact). */
export function isValidServerName(name) {
  return typeof name === "string" && call(() => wasm.serverNameError(name)) === undefined;
}

/** Why `name` is not a valid server name, or `undefined`. */
export function serverNameError(name) {
  if (typeof name !== "string") return "not a string";
  return call(() => wasm.serverNameError(name));
}

const TLS_CODES = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL|HOSTNAME_MISMATCH)/;

/** A fetch rejection as an error code: `tls` or `network`. */
function classify(e) {
  for (let c = e, i = 0; c && i < 4; c = c.cause, i++) {
    if (typeof c.code === "string" && TLS_CODES.test(c.code)) return "tls";
    if (/certificate|TLS handshake|SSL/i.test(String(c.message ?? ""))) return "tls";
  }
  return "network";
}

function describe(e) {
  const parts = [];
  for (let c = e, i = 0; c && i < 4; c = c.cause, i++) {
    const m = c.code && !String(c.message).includes(c.code) ? `${c.message} (${c.code})` : String(c.message ?? c);
    if (!parts.includes(m)) parts.push(m);
  }
  return parts.join(": ");
}

/** An IP literal as `URL.hostname` gives it (IPv4, or `[IPv6]`), without brackets. */
function ipLiteralOf(hostname) {
  if (hostname.startsWith("[") && hostname.endsWith("]")) return hostname.slice(1, -1);
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(hostname)) return hostname;
  return undefined;
}

/** Rejects when `signal` aborts (for fetch implementations that ignore signals). */
function untilAborted(promise, signal) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => (signal.removeEventListener("abort", onAbort), resolve(v)),
      (e) => (signal.removeEventListener("abort", onAbort), reject(e)),
    );
  });
}

class Timeout extends Error {}
class TooLarge extends Error {}

/** Reads a body, at most `max` bytes; past that the read is cancelled. */
async function readCapped(res, max, signal) {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > max) {
    await res.body?.cancel().catch(() => {});
    throw new TooLarge(`declared ${declared} bytes, over the ${max}-byte cap`);
  }
  if (!res.body) {
    const buf = new Uint8Array(await untilAborted(res.arrayBuffer(), signal));
    if (buf.length > max) throw new TooLarge(`over the ${max}-byte cap`);
    return buf;
  }
  const reader = res.body.getReader();
  const chunks = [];
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await untilAborted(reader.read(), signal);
      if (done) break;
      total += value.byteLength;
      if (total > max) throw new TooLarge(`over the ${max}-byte cap`);
      chunks.push(value);
    }
  } catch (e) {
    reader.cancel().catch(() => {});
    throw e;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const decoder = new TextDecoder();

/**
 * A Matrix federation client: `request(destination, …)` finds the
 * destination's server as the spec's "Resolving server names" says (IP
 * literal; explicit port; `/.well-known/matrix/server`, cached; SRV when a
 * resolver is given; port 8448), signs the request with our key (X-Matrix;
 * `destination` is the server name, never the resolved host), and returns
 * the parsed JSON answer — or throws a `FederationRequestError`.
 *
 * Invalid server names are never fetched; loopback, private, link-local and
 * unspecified addresses are refused unless `allowPrivateAddresses`; each
 * request has a timeout (discovery included) and a response-size cap
 * enforced while the body streams; a destination that failed is not
 * contacted again until its backoff (Synapse's: 10 min, ×2 per failure, at
 * most 7 days) has passed, and success resets it.
 */
export class FederationClient {
  #o;
  #key;
  #discovery;
  #resolving = new Map();
  #backoff = new Map();

  /**
   * @param {object} opts see `FederationClientOptions` in `roomdag.d.ts`
   */
  constructor(opts) {
    if (!opts?.serverName || typeof opts.serverName !== "string") throw new TypeError("FederationClient: serverName (string) is required");
    if (!isValidServerName(opts.serverName)) throw new TypeError(`FederationClient: serverName ${JSON.stringify(opts.serverName)} is not a valid server name`);
    const { keyId, seed } = opts.signingKey ?? {};
    if (typeof keyId !== "string" || typeof seed !== "string") throw new TypeError("FederationClient: signingKey {keyId, seed} is required");
    call(() => wasm.publicKeyOf(seed)); // a bad seed fails now, not on the first request
    const fetch = opts.fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof fetch !== "function") throw new TypeError("FederationClient: no fetch available; pass opts.fetch");
    const baseUrl = opts.baseUrl;
    if (baseUrl !== undefined && typeof baseUrl !== "string" && typeof baseUrl !== "function") {
      throw new TypeError("FederationClient: baseUrl must be a URL template string ({server}) or a function");
    }
    this.#key = { keyId, seed };
    this.#o = {
      serverName: opts.serverName,
      fetch,
      allowPrivateAddresses: opts.allowPrivateAddresses === true,
      timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxResponseBytes: opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      resolveSrv: opts.resolveSrv,
      resolveHost: opts.resolveHost,
      baseUrl: typeof baseUrl === "string" ? (server) => baseUrl.replaceAll("{server}", server) : baseUrl,
      now: opts.now ?? (() => Date.now()),
      random: opts.random ?? Math.random,
      log: opts.log ?? defaultLog,
      userAgent: opts.userAgent ?? "roomdag",
    };
    this.#discovery = call(() => new wasm.ServerDiscovery());
  }

  /** Our server name (the `origin` of our requests). */
  get serverName() {
    return this.#o.serverName;
  }

  /** Whether private addresses may be contacted. */
  get allowPrivateAddresses() {
    return this.#o.allowPrivateAddresses;
  }

  /**
   * Sends a request and returns `{status, headers, json}` for a 2xx answer.
   * @param {string} destination the server name
   * @param {object} req `{method = "GET", target, body?, timeoutMs?, maxBytes?, signed = true,
   *   ignoreBackoff = false, backoffOn404 = false, quiet = false}` (`quiet`: the caller logs the failure)
   */
  async request(destination, req) {
    const { method = "GET", target, body, signed = true, ignoreBackoff = false, backoffOn404 = false, quiet = false } = req ?? {};
    const timeoutMs = req?.timeoutMs ?? this.#o.timeoutMs;
    const maxBytes = req?.maxBytes ?? this.#o.maxResponseBytes;
    const fail = (code, message, extra) => {
      const err = new FederationRequestError(code, message, { destination, ...extra });
      if (!quiet) this.#o.log({ level: code === "backing_off" ? "info" : "warn", code, destination, method, target, status: extra?.status,
        message: `roomdag: federation ${method} ${String(destination).slice(0, 300)} ${String(target).slice(0, 200)} failed (${code}): ${message}` });
      return err;
    };
    if (typeof destination !== "string") throw fail("invalid_server_name", "destination must be a string");
    if (typeof target !== "string") throw fail("invalid_request", "target must be a string");
    if (typeof method !== "string") throw fail("invalid_request", "method must be a string");
    let bodyText;
    if (body !== undefined) bodyText = typeof body === "string" ? body : JSON.stringify(body);
    // 1. The request, checked and signed by the core (an invalid destination stops here).
    const prepared = json(call(() => wasm.prepareRequest(this.#o.serverName, this.#key.keyId, this.#key.seed, destination,
      method.toUpperCase(), target, bodyText, signed)));
    if (prepared.error) throw fail(prepared.error.code, prepared.error.message);
    // 2. Backoff.
    const now = this.#o.now();
    const timings = this.#backoff.get(destination);
    if (timings && !ignoreBackoff) {
      const until = wasm.backingOffUntil(JSON.stringify(timings), now);
      if (until !== undefined) {
        throw fail("backing_off", `not retrying ${destination} until ${new Date(until).toISOString()} (it failed ${timings.retryInterval / 1000} s before)`, { retryAt: until });
      }
    }
    // 3. Discovery, the address policy, the request and its answer, all within the timeout.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Timeout(`no answer within ${timeoutMs} ms`)), timeoutMs);
    let status = 0;
    try {
      const target_ = await this.#resolveTarget(destination, ctl.signal);
      const url = new URL(target_.base.replace(/\/+$/, "") + prepared.target);
      await this.#checkAddress(url, target_.override);
      const headers = { "user-agent": this.#o.userAgent, accept: "application/json" };
      if (prepared.authorization) headers.authorization = prepared.authorization;
      if (prepared.body !== null && prepared.body !== undefined) headers["content-type"] = "application/json";
      const res = await untilAborted(
        this.#o.fetch(url.href, {
          method: prepared.method,
          headers,
          body: prepared.body ?? undefined,
          redirect: "manual",
          signal: ctl.signal,
        }, { server: target_.server }), // a third argument, for transports that pin the address, Host and SNI
        ctl.signal,
      );
      status = res.status;
      // The server answered: the backoff follows its status (Synapse reads the body after its limiter).
      this.#recordResult(destination, status, backoffOn404, ignoreBackoff);
      const bytes = await readCapped(res, maxBytes, ctl.signal);
      const text = decoder.decode(bytes);
      if (status < 200 || status > 299) {
        let parsed;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = text.slice(0, 1000);
        }
        const detail = parsed && typeof parsed === "object" && parsed.errcode ? `${parsed.errcode}: ${String(parsed.error ?? "").slice(0, 300)}` : String(text).slice(0, 200);
        throw fail("http", `HTTP ${status}${detail ? ` ${detail}` : ""}`, { status, body: parsed });
      }
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        throw fail("bad_json", `HTTP ${status} with a body that is not JSON: ${e.message}`, { status });
      }
      return { status, headers: res.headers, json: parsed };
    } catch (e) {
      if (e instanceof FederationRequestError) throw e;
      if (e instanceof PrivateAddress) throw fail("private_address", e.message); // never contacted: no backoff
      // No answer (a timeout, a connection, TLS or discovery failure): the
      // destination is down, as far as the backoff is concerned.
      if (status === 0) this.#recordResult(destination, 0, backoffOn404, ignoreBackoff);
      const reason = ctl.signal.aborted ? ctl.signal.reason : e;
      if (reason instanceof Timeout) throw fail("timeout", reason.message, { cause: e, status: status || undefined });
      if (e instanceof TooLarge) throw fail("too_large", `response body ${e.message}`, { status });
      if (e instanceof DiscoveryFailed) throw fail("network", e.message);
      throw fail(classify(e), describe(e), { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  /** `GET target` on `destination`: the answer's JSON. */
  async get(destination, target, opts) {
    return (await this.request(destination, { ...opts, method: "GET", target })).json;
  }

  /** `POST target` with a JSON body: the answer's JSON. */
  async post(destination, target, body, opts) {
    return (await this.request(destination, { ...opts, method: "POST", target, body })).json;
  }

  /** `PUT target` with a JSON body: the answer's JSON. */
  async put(destination, target, body, opts) {
    return (await this.request(destination, { ...opts, method: "PUT", target, body })).json;
  }

  /**
   * Where requests to `destination` go: `{serverName, connectHost, port, urlBase,
   * hostHeader, tlsServerName, via, delegated, wellKnownError}` (discovery, cached).
   */
  async resolve(destination, { timeoutMs } = {}) {
    if (serverNameError(destination) !== undefined) {
      throw new FederationRequestError("invalid_server_name", `${JSON.stringify(String(destination).slice(0, 300))} is not a valid server name: ${serverNameError(destination)}`, { destination });
    }
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Timeout("discovery timed out")), timeoutMs ?? this.#o.timeoutMs);
    try {
      return (await this.#resolveTarget(destination, ctl.signal)).server;
    } catch (e) {
      if (e instanceof DiscoveryFailed) throw new FederationRequestError("network", e.message, { destination });
      if (ctl.signal.aborted) throw new FederationRequestError("timeout", "discovery timed out", { destination });
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The destination's backoff, if it is backing off now: `{retryAt, retryInterval, failureTs}`. */
  backoffOf(destination) {
    const t = this.#backoff.get(destination);
    if (!t) return undefined;
    const until = wasm.backingOffUntil(JSON.stringify(t), this.#o.now());
    return until === undefined ? undefined : { retryAt: until, retryInterval: t.retryInterval, failureTs: t.failureTs };
  }

  /** Forgets a destination's backoff (e.g. it told us it is back: an incoming request). */
  resetBackoff(destination) {
    this.#backoff.delete(destination);
  }

  #recordResult(destination, status, backoffOn404, ignoreBackoff) {
    const before = this.#backoff.get(destination) ?? {};
    const after = json(wasm.backoffAfterRequest(JSON.stringify(before), status, this.#o.now(), this.#o.random(), backoffOn404, ignoreBackoff));
    this.#backoff.delete(destination);
    if (after) {
      this.#backoff.set(destination, after);
      if (this.#backoff.size > MAX_BACKOFF_ENTRIES) this.#backoff.delete(this.#backoff.keys().next().value);
      if (!before.retryInterval || after.retryInterval !== before.retryInterval) {
        this.#o.log({ level: "info", code: "backoff", destination, message: `roomdag: backing off ${destination} for ${Math.round(after.retryInterval / 1000)} s` });
      }
    }
  }

  /** The base URL and resolved server of a destination (an override, or discovery). */
  async #resolveTarget(destination, signal) {
    if (this.#o.baseUrl) {
      const base = this.#o.baseUrl(destination);
      return { base, override: true, server: { serverName: destination, urlBase: base, via: "override" } };
    }
    let p = this.#resolving.get(destination);
    if (!p) {
      p = this.#discover(destination, signal).finally(() => this.#resolving.delete(destination));
      this.#resolving.set(destination, p);
    }
    const server = await untilAborted(p, signal);
    return { base: server.urlBase, override: false, server };
  }

  async #discover(destination, signal) {
    const resolution = call(() => this.#discovery.resolve(destination, this.#o.now(), typeof this.#o.resolveSrv === "function"));
    try {
      for (let i = 0; i < 64; i++) {
        const step = json(resolution.step());
        if (step.kind === "resolved") return step.server;
        if (step.kind === "failed") throw new DiscoveryFailed(`discovery of ${destination} failed: ${step.reason}`);
        if (step.kind === "fetch") {
          const answer = await this.#fetchWellKnown(step.url, step.maxBytes, signal);
          resolution.onWellKnown(this.#discovery, JSON.stringify(answer), this.#o.now(), this.#o.random());
        } else if (step.kind === "srv") {
          let answer;
          try {
            const r = await untilAborted(Promise.resolve(this.#o.resolveSrv(step.name)), signal);
            answer = { records: r?.records ?? [], ttl: r?.ttl ?? 300 };
          } catch (e) {
            if (signal.aborted) throw e;
            answer = { error: describe(e) };
          }
          resolution.onSrv(this.#discovery, JSON.stringify(answer), this.#o.now(), this.#o.random());
        }
      }
      throw new DiscoveryFailed(`discovery of ${destination} did not finish`);
    } finally {
      resolution.free();
    }
  }

  /** One `.well-known` GET (no redirect following: the core decides), as the core's input. */
  async #fetchWellKnown(url, maxBytes, signal) {
    try {
      const u = new URL(url);
      if (u.protocol !== "https:") return { failed: `not https: ${url}` };
      await this.#checkAddress(u, false);
      const res = await untilAborted(
        this.#o.fetch(u.href, { method: "GET", headers: { "user-agent": this.#o.userAgent, accept: "application/json" }, redirect: "manual", signal }),
        signal,
      );
      const location = res.headers.get("location");
      const bytes = await readCapped(res, maxBytes, signal);
      return {
        status: res.status,
        location: location ? new URL(location, u).href : undefined,
        cacheControl: res.headers.get("cache-control") ?? undefined,
        expires: res.headers.get("expires") ?? undefined,
        body: decoder.decode(bytes),
      };
    } catch (e) {
      if (signal.aborted) throw signal.reason ?? e;
      return { failed: e instanceof TooLarge ? `body ${e.message}` : describe(e) };
    }
  }

  /**
   * Refuses URLs whose host is a loopback, private, link-local or unspecified
   * address (IP literals; `localhost`; names `resolveHost` resolves there),
   * unless `allowPrivateAddresses`. An explicit `baseUrl` override is the
   * operator's choice and is not checked.
   */
  async #checkAddress(url, override) {
    if (this.#o.allowPrivateAddresses || override) return;
    const host = url.hostname;
    const ip = ipLiteralOf(host);
    if (ip !== undefined) {
      if (wasm.isPrivateAddress(ip)) throw new PrivateAddress(`${host} is a private address (set allowPrivateAddresses to allow it)`);
      return;
    }
    if (wasm.isLocalhostName(host)) throw new PrivateAddress(`${host} is this machine (set allowPrivateAddresses to allow it)`);
    if (typeof this.#o.resolveHost === "function") {
      let addresses;
      try {
        addresses = await this.#o.resolveHost(host);
      } catch (e) {
        throw new DiscoveryFailed(`could not resolve ${host}: ${describe(e)}`);
      }
      const bad = (addresses ?? []).find((a) => {
        try {
          return wasm.isPrivateAddress(String(a));
        } catch {
          return true; // not an address: refuse
        }
      });
      if (bad !== undefined) throw new PrivateAddress(`${host} resolves to the private address ${bad} (set allowPrivateAddresses to allow it)`);
    }
  }
}

class PrivateAddress extends Error {}
class DiscoveryFailed extends Error {}

function defaultLog(entry) {
  if (entry.level === "warn") console.warn(entry.message);
}

/**
 * An SRV resolver over DNS-over-HTTPS (the JSON API of RFC 8484 servers such
 * as `https://cloudflare-dns.com/dns-query` or `https://dns.google/resolve`),
 * for `FederationClient`'s `resolveSrv`.
 */
export function dohSrvResolver({ url, fetch = globalThis.fetch?.bind(globalThis), timeoutMs = 5_000 }) {
  return async (name) => {
    const answers = await dohQuery(fetch, url, name, "SRV", timeoutMs);
    if (answers === null) return { records: [], ttl: 300 };
    const records = [];
    let ttl = 86_400;
    for (const a of answers) {
      if (a.type !== 33 || typeof a.data !== "string") continue;
      const [priority, weight, port, target] = a.data.trim().split(/\s+/);
      records.push({ priority: Number(priority), weight: Number(weight), port: Number(port), target: target ?? "" });
      ttl = Math.min(ttl, Number(a.TTL) || 0);
    }
    return { records, ttl: records.length ? ttl : 300 };
  };
}

/**
 * A host resolver over DNS-over-HTTPS (A and AAAA), for `FederationClient`'s
 * `resolveHost`. Answers are cached for their TTL (at most 1 h, 1,000 names).
 */
export function dohHostResolver({ url, fetch = globalThis.fetch?.bind(globalThis), timeoutMs = 5_000, now = () => Date.now() }) {
  const cache = new Map();
  return async (host) => {
    const hit = cache.get(host);
    if (hit && hit.until > now()) return hit.addresses;
    const [a, aaaa] = await Promise.all([dohQuery(fetch, url, host, "A", timeoutMs), dohQuery(fetch, url, host, "AAAA", timeoutMs)]);
    const answers = [...(a ?? []), ...(aaaa ?? [])].filter((x) => x.type === 1 || x.type === 28);
    const addresses = answers.map((x) => String(x.data));
    const ttl = Math.min(3600, ...answers.map((x) => Number(x.TTL) || 0));
    cache.delete(host);
    if (ttl > 0) cache.set(host, { addresses, until: now() + ttl * 1000 });
    if (cache.size > 1000) cache.delete(cache.keys().next().value);
    return addresses;
  };
}

/** A DoH JSON query: the answers, or `null` for NXDOMAIN. */
async function dohQuery(fetch, url, name, type, timeoutMs) {
  const u = new URL(url);
  u.searchParams.set("name", name);
  u.searchParams.set("type", type);
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new Error(`DNS-over-HTTPS query timed out after ${timeoutMs} ms`)), timeoutMs);
  try {
    const res = await fetch(u.href, { headers: { accept: "application/dns-json" }, signal: ctl.signal });
    if (!res.ok) throw new Error(`DNS-over-HTTPS server answered ${res.status}`);
    const body = JSON.parse(decoder.decode(await readCapped(res, 64 * 1024, ctl.signal)));
    if (body.Status === 3) return null; // NXDOMAIN
    if (body.Status !== 0) throw new Error(`DNS error status ${body.Status} for ${name} ${type}`);
    return Array.isArray(body.Answer) ? body.Answer : [];
  } finally {
    clearTimeout(timer);
  }
}
