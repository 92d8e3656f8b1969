// A resident server for tests of the requesting side of federation: a
// roomdag RoomEngine holding a fixture room, answering make_join, send_join,
// make_leave, send_leave and the history endpoints as the fixture's server
// `name`, and creating new events signed by the fixture's keys. Failures can
// be injected per endpoint.
import { RoomEngine, MemoryStore, KeyRing, pinKeys, signPdu } from "../../pkg/node.js";
import { trustedKeysOf } from "./fixtures.mjs";

export class Resident {
  constructor(fixture, { name } = {}) {
    this.fixture = fixture;
    this.name = name ?? Object.keys(fixture.servers)[0];
    this.version = fixture.room_version;
    this.roomId = fixture.room_id;
    this.ring = pinKeys(new KeyRing(), trustedKeysOf(fixture));
    this.pdus = new Map(fixture.events.map((e) => [e.event_id, e.pdu]));
    /** endpoint name → (req) => answer | throws: overrides for failure tests. */
    this.faults = {};
    this.requests = [];
  }

  async load() {
    this.engine = await RoomEngine.open({ store: new MemoryStore(), roomVersion: this.version });
    await this.engine.ingest(this.fixture.events.map((e) => e.pdu), this.ring);
    return this;
  }

  /** Trusts another server's key (the joining server's). */
  trust(server, keyId, publicKey) {
    this.ring.pin(server, keyId, publicKey);
  }

  state() {
    return this.engine.currentState().state;
  }

  #depthOf(id) {
    return this.engine.eventDetails(id).depth;
  }

  /** The auth events of an event about to be created (spec "Auth events selection"). */
  #authEvents(type, stateKey, sender, content) {
    const s = this.state();
    const keys = ["m.room.create\u0000", "m.room.power_levels\u0000", `m.room.member\u0000${sender}`];
    if (type === "m.room.member") {
      keys.push(`m.room.member\u0000${stateKey}`);
      if (["join", "invite", "knock"].includes(content.membership)) keys.push("m.room.join_rules\u0000");
    }
    const ids = [...new Set(keys.map((k) => s[k]).filter(Boolean))];
    return this.version === "12" ? ids.filter((id) => id !== s["m.room.create\u0000"]) : ids;
  }

  /** An unsigned event on the current forward extremities. */
  template({ type, stateKey, sender, content }) {
    const prev = this.engine.forwardExtremities();
    const ev = {
      type,
      room_id: this.roomId,
      sender,
      content,
      prev_events: prev,
      auth_events: this.#authEvents(type, stateKey, sender, content),
      depth: Math.max(...prev.map((p) => this.#depthOf(p))) + 1,
      origin_server_ts: Date.now(),
      origin: sender.split(":").slice(1).join(":"),
    };
    if (stateKey !== undefined) ev.state_key = stateKey;
    return ev;
  }

  /** Creates, signs (with the sender's fixture server key) and stores a new event. */
  async create({ type, stateKey, sender, content }) {
    const server = sender.split(":").slice(1).join(":");
    const s = this.fixture.servers[server];
    const { eventId, pdu } = signPdu(this.template({ type, stateKey, sender, content }), {
      roomVersion: this.version,
      server,
      keyId: Object.keys(s.verify_keys)[0],
      seed: s.signing_key_seed,
    });
    const [o] = await this.engine.ingest([pdu], this.ring);
    if (o.status !== "accepted") throw new Error(`resident: ${type} ${eventId} was ${o.status}: ${o.reason}`);
    this.pdus.set(eventId, pdu);
    return { eventId, pdu };
  }

  /** A joined member of a server of the fixture, with the most power. */
  joinedMember() {
    const s = this.state();
    const create = this.engine.eventDetails(s["m.room.create\u0000"]);
    return create.sender;
  }

  /** The outbound client a RoomMirror uses, answering as this resident. */
  client(ourServer) {
    return {
      request: async (destination, { method, target, body }) => {
        this.requests.push({ destination, method, target });
        if (destination !== this.name) throw Object.assign(new Error(`${destination} is unreachable`), { code: "network" });
        const path = decodeURIComponent(target.split("?")[0]);
        const endpoint = path.split("/")[4];
        if (this.faults[endpoint]) return { status: 200, json: await this.faults[endpoint]({ method, target, body }) };
        const answer = await this.#answer(endpoint, path, method, target, body, ourServer);
        if (answer.status !== 200) throw Object.assign(new Error(`${destination} answered ${answer.status}: ${JSON.stringify(answer.body)}`), { code: "http", status: answer.status, body: answer.body });
        return { status: 200, json: answer.body };
      },
    };
  }

  async #answer(endpoint, path, method, target, body, ourServer) {
    const parts = path.split("/");
    switch (endpoint) {
      case "make_join":
      case "make_leave": {
        const user = parts[6];
        const membership = endpoint === "make_join" ? "join" : "leave";
        return { status: 200, body: { room_version: this.version, event: this.template({ type: "m.room.member", stateKey: user, sender: user, content: { membership } }) } };
      }
      case "send_join":
      case "send_leave": {
        const [o] = await this.engine.ingest([body], this.ring);
        if (o.status !== "accepted" && o.status !== "duplicate") return { status: 403, body: { errcode: "M_FORBIDDEN", error: o.reason ?? o.status } };
        this.pdus.set(o.eventId, body);
        if (endpoint === "send_leave") return { status: 200, body: {} };
        const st = this.engine.state(ourServer, o.eventId);
        if (st.status !== 200) return st;
        return { status: 200, body: { origin: this.name, state: st.body.pdus, auth_chain: st.body.auth_chain, members_omitted: false } };
      }
      default:
        return this.engine.query(method, target, body, ourServer, this.name);
    }
  }
}
