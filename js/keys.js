// Signing keys of other servers: fetched over HTTP, verified by the core.
import * as check from "./check.js";
import { ensureReady } from "./common.js";
/**
 * Fetches servers' signing keys into a `KeyRing`: from the server itself
 * (`/_matrix/key/v2/server`), then from notaries (`/_matrix/key/v2/query`).
 * Every response is verified before use; concurrent fetches of one server
 * share one request; a server is not asked again within `retryAfterMs`.
 */
export class KeyFetcher {
  #ring;
  #opts;
  #inflight = new Map();
  #fetchedAt = new Map();

  constructor(opts) {
    ensureReady();
    check.object("KeyFetcher", "options", opts, "an object {keyRing, fetch?, keyServerUrl?, notaryServers?, now?, timeoutMs?, retryAfterMs?}");
    const { keyRing, fetch = globalThis.fetch?.bind(globalThis), keyServerUrl = (s) => `https://${s}`, notaryServers = [], now = () => Date.now(), timeoutMs = 10_000, retryAfterMs = 60_000 } = opts;
    check.keyRing("KeyFetcher", "keyRing", keyRing);
    for (const [n, f] of Object.entries({ fetch, keyServerUrl, now })) if (f !== undefined) check.func("KeyFetcher", n, f);
    check.stringArray("KeyFetcher", "notaryServers", notaryServers);
    check.number("KeyFetcher", "timeoutMs", timeoutMs);
    check.number("KeyFetcher", "retryAfterMs", retryAfterMs);
    this.#ring = keyRing;
    this.#opts = { fetch, keyServerUrl, notaryServers, now, timeoutMs, retryAfterMs };
  }

  /** Makes sure `server`'s keys are known; resolves to whether any were added. */
  fetchKeys(server) {
    let p = this.#inflight.get(server);
    if (!p) {
      // Asked recently (a key a PDU names may simply not exist): not again yet.
      const last = this.#fetchedAt.get(server);
      if (last !== undefined && this.#opts.now() - last < this.#opts.retryAfterMs) return Promise.resolve(false);
      this.#fetchedAt.set(server, this.#opts.now());
      p = this.#fetch(server).finally(() => this.#inflight.delete(server));
      this.#inflight.set(server, p);
    }
    return p;
  }

  /** Fetches the keys of every server that signed these PDUs with a key we lack. */
  async ensureForPdus(pdus) {
    const servers = new Set();
    const now = this.#opts.now();
    for (const pdu of pdus) {
      let sigs;
      try {
        sigs = (typeof pdu === "string" ? JSON.parse(pdu) : pdu)?.signatures;
      } catch {
        continue;
      }
      if (!sigs || typeof sigs !== "object") continue;
      for (const [server, keys] of Object.entries(sigs)) {
        if (keys && typeof keys === "object" && !Object.keys(keys).some((k) => this.#ring.hasRequestKey(server, k, now))) servers.add(server);
      }
    }
    await Promise.all([...servers].map((s) => this.fetchKeys(s)));
  }

  async #fetch(server) {
    const { fetch, keyServerUrl, notaryServers, timeoutMs, now } = this.#opts;
    if (!fetch) return false;
    const get = async (url, init) => {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), timeoutMs);
      try {
        const res = await fetch(url, { ...init, signal: ctl.signal });
        return res.ok ? await res.text() : undefined;
      } catch {
        return undefined;
      } finally {
        clearTimeout(timer);
      }
    };
    const direct = await get(`${keyServerUrl(server)}/_matrix/key/v2/server`);
    if (direct) {
      try {
        if (this.#ring.addServerKeys(direct, server, now()) > 0) return true;
      } catch {
        /* fall through to the notaries */
      }
    }
    for (const notary of notaryServers) {
      const text = await get(`${keyServerUrl(notary)}/_matrix/key/v2/query`, {
        method: "POST",
        body: JSON.stringify({ server_keys: { [server]: {} } }),
        headers: { "content-type": "application/json" },
      });
      if (!text) continue;
      try {
        if (this.#ring.addNotaryKeys(text, notary, now()) > 0) return true;
      } catch {
        /* try the next notary */
      }
    }
    return false;
  }
}

/** Parses `TRUSTED_KEYS`-style JSON (server → key ID → base64) into a ring. */
export function pinKeys(keyRing, trustedKeys) {
  ensureReady();
  check.keyRing("pinKeys", "keyRing", keyRing);
  check.trustedKeys("pinKeys", "trustedKeys", trustedKeys);
  for (const [server, keys] of Object.entries(trustedKeys ?? {})) {
    for (const [keyId, b64] of Object.entries(keys)) {
      try {
        keyRing.pin(server, keyId, b64);
      } catch (e) {
        throw check.invalid("pinKeys", `trustedKeys[${JSON.stringify(server)}][${JSON.stringify(keyId)}]`, `cannot be pinned: ${e.message}`);
      }
    }
  }
  return keyRing;
}
