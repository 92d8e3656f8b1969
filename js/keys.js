// Signing keys of other servers: fetched with the federation client
// (discovery, X-Matrix, caps, the private-address policy), verified by the
// core before use.
import { wasm, call, json, toText, RoomdagError, ensureReady } from "./common.js";
import * as check from "./check.js";
import { isValidServerName, serverNameError } from "./client.js";

/** Servers whose keys one batch of PDUs (a transaction) may make us fetch. */
export const DEFAULT_MAX_SERVERS_PER_BATCH = 10;
/** Servers whose last fetch time is remembered (the oldest are forgotten). */
const MAX_FETCHED_AT = 10_000;

/**
 * Fetches servers' signing keys into a `KeyRing`, through a
 * `FederationClient`: first from the configured notaries
 * (`/_matrix/key/v2/query`; each answer is verified only with the keys
 * configured for that notary), then from the server itself
 * (`/_matrix/key/v2/server`), as Synapse's `Keyring` does. Concurrent fetches
 * of one server share one attempt; a server is fetched at most once per
 * `retryAfterMs`; only valid server names are ever fetched.
 */
export class KeyFetcher {
  #ring;
  #o;
  #inflight = new Map();
  #fetchedAt = new Map();

  /**
   * @param {object} opts
   * @param {KeyRing} opts.keyRing where verified keys go
   * @param {FederationClient} [opts.client] the federation client (without one, nothing is fetched)
   * @param {{serverName: string, verifyKeys: Record<string, string>}[]} [opts.notaryServers]
   *        notaries and the keys (key ID → unpadded base64) that verify their answers
   * @param {() => number} [opts.now] clock, ms since the epoch
   * @param {number} [opts.timeoutMs] per key request (default 10 s, as Synapse)
   * @param {number} [opts.retryAfterMs] a server is fetched at most once per this window (default 60 s)
   * @param {number} [opts.maxServersPerBatch] servers fetched for one `ensureForPdus` call (default 10)
   * @param {(entry: object) => void} [opts.log] failures, as `{level, code: "key_fetch", server, message}`
   */
  constructor(opts) {
    ensureReady();
    check.object("KeyFetcher", "options", opts, "an object {keyRing, client?, notaryServers?, now?, timeoutMs?, retryAfterMs?, maxServersPerBatch?, log?}");
    const { keyRing, client, notaryServers = [], now = () => Date.now(), timeoutMs = 10_000, retryAfterMs = 60_000, maxServersPerBatch = DEFAULT_MAX_SERVERS_PER_BATCH, log } = opts;
    check.keyRing("KeyFetcher", "keyRing", keyRing);
    if (!Array.isArray(notaryServers)) check.stringArray("KeyFetcher", "notaryServers", notaryServers);
    check.number("KeyFetcher", "timeoutMs", timeoutMs);
    check.number("KeyFetcher", "retryAfterMs", retryAfterMs);
    const notaries = notaryServers.map((n) => {
      if (!n || typeof n.serverName !== "string" || !n.verifyKeys || typeof n.verifyKeys !== "object" || Object.keys(n.verifyKeys).length === 0) {
        throw new RoomdagError("M_UNKNOWN", `KeyFetcher: each notary needs {serverName, verifyKeys: {keyId: base64}} (got ${JSON.stringify(n)?.slice(0, 100)})`);
      }
      if (!isValidServerName(n.serverName)) throw new RoomdagError("M_UNKNOWN", `KeyFetcher: notary ${JSON.stringify(n.serverName)} is not a valid server name`);
      return { serverName: n.serverName, keysJson: JSON.stringify(n.verifyKeys) };
    });
    this.#ring = keyRing;
    this.#o = { client, notaries, now, timeoutMs, retryAfterMs, maxServersPerBatch, log: log ?? ((e) => console.warn(e.message)) };
  }

  /** The ring keys are added to. */
  get keyRing() {
    return this.#ring;
  }

  /**
   * Makes sure `server`'s keys are known. Resolves to `{ok, added, reason?}`:
   * `ok` when keys were added; otherwise `reason` says why not (an invalid
   * name, fetched too recently, or each source's failure).
   */
  fetchKeys(server) {
    if (typeof server !== "string" || !isValidServerName(server)) {
      return Promise.resolve({ ok: false, added: 0, reason: `${JSON.stringify(String(server).slice(0, 300))} is not a valid server name: ${serverNameError(server)}` });
    }
    let p = this.#inflight.get(server);
    if (!p) {
      const now = this.#o.now();
      const last = this.#fetchedAt.get(server);
      if (last !== undefined && now - last.at < this.#o.retryAfterMs) {
        const ago = Math.round((now - last.at) / 1000);
        return Promise.resolve({ ok: false, added: 0, reason: `keys of ${server} were fetched ${ago} s ago${last.reason ? ` and failed: ${last.reason}` : ""}; not again within ${this.#o.retryAfterMs / 1000} s` });
      }
      p = this.#fetch(server)
        .catch((e) => ({ ok: false, added: 0, reason: String(e?.message ?? e) }))
        .then((r) => {
          this.#remember(server, { at: now, reason: r.ok ? undefined : r.reason });
          if (!r.ok) this.#o.log({ level: "warn", code: "key_fetch", server, message: `roomdag: no keys for ${server}: ${r.reason}` });
          return r;
        })
        .finally(() => this.#inflight.delete(server));
      this.#inflight.set(server, p);
    }
    return p;
  }

  #remember(server, entry) {
    this.#fetchedAt.delete(server); // re-inserted last: the map stays in fetch order
    this.#fetchedAt.set(server, entry);
    while (this.#fetchedAt.size > MAX_FETCHED_AT) this.#fetchedAt.delete(this.#fetchedAt.keys().next().value);
  }

  /**
   * Fetches the keys a batch of PDUs of one room needs: for each PDU only
   * the servers whose signatures its room version requires (the sender's
   * server; for a restricted join, the authorising server), only those
   * whose keys the ring lacks, only valid server names, and at most
   * `maxServersPerBatch` servers in all (in order of first need).
   *
   * Returns `{pdus, refused, failures, explain}`: `pdus` are the PDUs to
   * ingest; `refused` the others (`{index, eventId, reason}`: they need a
   * server past the cap, so they are not checked at all); `failures` maps each
   * server whose keys are still missing to why; `explain(outcomes)` takes the
   * outcomes of ingesting `pdus` (one per PDU) and returns one outcome per
   * PDU given here, in order: refused PDUs as dropped at the signature
   * stage, and key-fetch failures added to the reasons of dropped PDUs.
   */
  async ensureForPdus(pdus, roomVersion) {
    if (!Array.isArray(pdus)) throw new TypeError("ensureForPdus: pdus must be an array");
    if (typeof roomVersion !== "string") throw new TypeError("ensureForPdus: roomVersion (string) is required");
    const raws = pdus.map(toText);
    // One entry per PDU: null when every signer's key is held (most PDUs).
    const needs = json(call(() => wasm.pduKeyNeedsBatch(raws, roomVersion, this.#ring)));
    const failures = new Map();
    const wanted = [];
    for (const n of needs) {
      for (const server of n?.missing ?? []) {
        if (failures.has(server) || wanted.includes(server)) continue;
        if (!isValidServerName(server)) failures.set(server, `${JSON.stringify(server.slice(0, 300))} is not a valid server name`);
        else if (wanted.length >= this.#o.maxServersPerBatch) {
          failures.set(server, `not fetched: keys of more than ${this.#o.maxServersPerBatch} servers needed in one transaction`);
        } else wanted.push(server);
      }
    }
    const results = await Promise.all(wanted.map((s) => this.fetchKeys(s)));
    wanted.forEach((s, i) => {
      if (!results[i].ok) failures.set(s, results[i].reason);
    });
    const capped = (n) => (n?.missing ?? []).find((s) => failures.get(s)?.startsWith("not fetched: keys of more than"));
    const keep = [];
    const refused = [];
    needs.forEach((n, i) => {
      const over = capped(n);
      if (over !== undefined) refused.push({ index: i, eventId: n.eventId, reason: `not checked: ${over}'s keys ${failures.get(over).slice("not fetched: ".length)}` });
      else keep.push(i);
    });
    const explain = (outcomes) => {
      if (outcomes.length !== keep.length) throw new RoomdagError("M_UNKNOWN", `explain: ${outcomes.length} outcomes for ${keep.length} PDUs`);
      const all = new Array(raws.length);
      outcomes.forEach((o, j) => {
        const n = needs[keep[j]];
        const why = o?.status === "dropped" && o.stage === "signature" ? (n?.missing ?? []).filter((s) => failures.has(s)).map((s) => `keys of ${s} could not be fetched: ${failures.get(s)}`) : [];
        all[keep[j]] = why.length ? { ...o, reason: `${o.reason} (${why.join("; ")})` } : o;
      });
      for (const r of refused) all[r.index] = { eventId: r.eventId ?? null, status: "dropped", stage: "signature", reason: r.reason };
      return all;
    };
    return { pdus: keep.map((i) => raws[i]), refused, failures, explain };
  }

  async #fetch(server) {
    const { client, notaries, timeoutMs, now } = this.#o;
    if (!client) return { ok: false, added: 0, reason: "no federation client to fetch keys with" };
    const reasons = [];
    // Synapse's order: the notaries (trusted key servers) first, then the server itself.
    for (const notary of notaries) {
      try {
        const answer = await client.request(notary.serverName, {
          method: "POST",
          target: "/_matrix/key/v2/query",
          body: { server_keys: { [server]: {} } },
          timeoutMs,
          maxBytes: 1024 * 1024,
          quiet: true, // the summary below names each source's failure
        });
        const added = this.#ring.addNotaryKeys(JSON.stringify(answer.json), notary.serverName, notary.keysJson, [server], now());
        if (added > 0) return { ok: true, added };
        reasons.push(`notary ${notary.serverName}: no keys`);
      } catch (e) {
        reasons.push(`notary ${notary.serverName}: ${e?.message ?? e}`);
      }
    }
    try {
      const answer = await client.request(server, {
        method: "GET",
        target: "/_matrix/key/v2/server",
        timeoutMs,
        maxBytes: 1024 * 1024,
        // As Synapse: a key fetch is made even to a destination in backoff,
        // and its failure does not lengthen the backoff.
        ignoreBackoff: true,
        quiet: true,
      });
      const added = this.#ring.addServerKeys(JSON.stringify(answer.json), server, now());
      if (added > 0) return { ok: true, added };
      reasons.push(`${server}: no keys in its answer`);
    } catch (e) {
      reasons.push(`${server}: ${e?.message ?? e}`);
    }
    return { ok: false, added: 0, reason: reasons.join("; ") };
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

/**
 * Notaries as a `KeyFetcher` takes them: each entry is `{serverName,
 * verifyKeys}`, or a server name whose keys are the pinned `trustedKeys`
 * of that name (a name without pinned keys is a configuration error: a
 * notary's answers are only ever checked with keys configured for it).
 */
export function notariesFrom(notaryServers, trustedKeys) {
  return (notaryServers ?? []).map((n) => {
    if (typeof n !== "string") return n;
    const verifyKeys = trustedKeys?.[n];
    if (!verifyKeys || Object.keys(verifyKeys).length === 0) {
      throw new RoomdagError("M_UNKNOWN", `notary ${n} has no pinned keys: add its keys to trustedKeys (TRUSTED_KEYS)`);
    }
    return { serverName: n, verifyKeys };
  });
}

/**
 * The servers whose signatures a PDU needs in a room version (the sender's
 * server; for a restricted join, v8+, the `join_authorised_via_users_server`
 * server): the only servers whose keys a receiver fetches for it.
 */
export function requiredSigners(pdu, roomVersion) {
  return call(() => wasm.requiredSigners(toText(pdu), roomVersion));
}
