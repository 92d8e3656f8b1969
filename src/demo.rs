//! A small synthetic room for demos and smoke tests, built and checked by
//! the engine itself: three servers, joins, chatter, topic and power changes,
//! a network partition whose two sides make conflicting changes, the merge
//! that resolves them, a redaction, and one event that fails the auth rules.
//!
//! The output is a `matrix-dag-oracle/1` fixture (with every server's keys
//! and seeds), deterministic for a given size.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The demo room is built in memory: reading it back never fails.
const IN_MEMORY: &str = "the demo room is held in memory";

use crate::auth_rules::auth_types_for_event;
use crate::event::{Events, Facts, NewEvent, StoredEvent};
use crate::ids::{EventIdx, Name};
use crate::room::{Room, Verification};
use crate::room_version::RoomVersionRules;
use crate::signing::{encode_base64, hash_and_sign_event, PinnedKeys, ServerSigningKey};

const SERVERS: [&str; 3] = ["alpha.example", "beta.example", "gamma.example"];
const BASE_TS: i64 = 1_700_000_000_000;

struct Builder {
    room: Room,
    keys: Vec<ServerSigningKey>,
    pinned: PinnedKeys,
    events: Vec<Value>,
    ts: i64,
    room_id: String,
}

fn seed_for(server: &str) -> String {
    encode_base64(&Sha256::digest(format!("roomdag-demo/{server}").as_bytes()))
}

impl Builder {
    /// A stored event's ID (the builder's room keeps its IDs in memory: no
    /// page store, so reading one never fails).
    fn id(&self, e: EventIdx) -> String {
        self.room.id(e).expect("a room without a page store holds every ID").to_string()
    }

    fn key(&self, server: &str) -> &ServerSigningKey {
        self.keys.iter().find(|k| k.server_name == server).expect("a demo server")
    }

    /// Builds, signs and ingests an event on top of `prev`; returns its index.
    fn add(
        &mut self,
        sender: &str,
        ty: &str,
        state_key: Option<&str>,
        content: Value,
        prev: &[EventIdx],
    ) -> Option<EventIdx> {
        let rules = self.room.rules();
        let server = sender.split_once(':').map(|(_, s)| s).expect("demo senders are user IDs");
        self.ts += 1_000 + (self.events.len() as i64 * 7919) % 20_000;
        let depth = prev.iter().map(|p| self.room.event(*p).expect(IN_MEMORY).depth).max().unwrap_or(0) + 1;
        let mut ev = Map::new();
        ev.insert("type".into(), json!(ty));
        ev.insert("sender".into(), json!(sender));
        if let Some(sk) = state_key {
            ev.insert("state_key".into(), json!(sk));
        }
        ev.insert("content".into(), content);
        ev.insert("origin_server_ts".into(), json!(self.ts));
        ev.insert("depth".into(), json!(depth));
        ev.insert("prev_events".into(), json!(prev.iter().map(|p| self.id(*p)).collect::<Vec<_>>()));
        if !self.room_id.is_empty() {
            ev.insert("room_id".into(), json!(self.room_id));
        }
        // Auth events: the auth selection from the state before this event.
        let before = self.room.resolve_after(prev).expect(IN_MEMORY);
        let probe = self.probe(&ev);
        let mut auth: Vec<String> = Vec::new();
        if let Some(p) = &probe {
            for (t, k) in auth_types_for_event(p, rules).unwrap_or_default() {
                if rules.room_ids_as_hashes && t == "m.room.create" {
                    continue; // implied in room v12
                }
                if let Some(e) =
                    self.room.key_of(&t, &k).and_then(|key| self.room.state(before).expect(IN_MEMORY).get(key))
                {
                    auth.push(self.id(e));
                }
            }
        }
        ev.insert("auth_events".into(), json!(auth));
        let key = self.key(server).clone();
        let id = hash_and_sign_event(&mut ev, rules, &key);
        let raw = serde_json::to_string(&ev).expect("serialises");
        let outcome = self.room.ingest(&raw, Verification::Keys(&self.pinned));
        if self.room_id.is_empty() {
            self.room_id = self.room.room_id().unwrap_or_default().to_owned();
        }
        self.events.push(json!({"event_id": id, "origin": server, "pdu": ev, "meta": {"intent": outcome.status()}}));
        self.room.lookup(&id).expect("a room without a page store holds every ID")
    }

    /// A throwaway stored view of an event under construction, for the auth
    /// selection (which reads only its type, sender, state key and facts).
    fn probe(&self, ev: &Map<String, Value>) -> Option<StoredEvent> {
        let rules = self.room.rules();
        let mut scratch = Events::default();
        scratch
            .prepare(NewEvent {
                id: "$probe",
                raw: "",
                prev_events: &[],
                pdu_prev_count: 0,
                first_prev: None,
                outlier: false,
                auth_events: &[],
                sender: Name::new(ev.get("sender")?.as_str()?),
                event_type: Name::new(ev.get("type")?.as_str()?),
                state_key: ev.get("state_key").and_then(Value::as_str).map(Name::new),
                key: None,
                depth: 0,
                origin_server_ts: 0,
                facts: Facts::extract(ev, rules),
                state_before: crate::state_set::StateSetId::EMPTY,
                redacted_on_receipt: false,
            })
            .ok()
    }
}

/// The most events a demo room is built with through the wasm API (about 8 s
/// on a laptop core at that size; a demo room is for looking at).
pub const MAX_EVENTS: usize = 10_000;

/// Builds the demo room: about `events` events (at least 40) in room v12.
pub fn demo_room(events: usize) -> Value {
    let rules = &RoomVersionRules::V12;
    let keys: Vec<ServerSigningKey> = SERVERS
        .iter()
        .map(|s| ServerSigningKey::from_seed_b64(s, "ed25519:1", &seed_for(s)).expect("a valid seed"))
        .collect();
    let mut pinned = PinnedKeys::new();
    for k in &keys {
        pinned.insert(&k.server_name, &k.key_id, &k.public_key_b64()).expect("a valid key");
    }
    let mut b = Builder {
        room: Room::new(rules.id).expect("v12 is hosted"),
        keys,
        pinned,
        events: Vec::new(),
        ts: BASE_TS,
        room_id: String::new(),
    };
    let alice = "@alice:alpha.example";
    let bob = "@bob:beta.example";
    let carol = "@carol:gamma.example";
    let dave = "@dave:beta.example";
    let create = b.add(alice, "m.room.create", Some(""), json!({"room_version": "12"}), &[]).expect("create");
    let mut tip = b
        .add(alice, "m.room.member", Some(alice), json!({"membership": "join", "displayname": "Alice"}), &[create])
        .expect("join");
    let pl = json!({"users": {bob: 50}, "users_default": 0, "events": {"m.room.power_levels": 100, "m.room.history_visibility": 100},
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0});
    tip = b.add(alice, "m.room.power_levels", Some(""), pl, &[tip]).expect("power levels");
    tip = b.add(alice, "m.room.join_rules", Some(""), json!({"join_rule": "public"}), &[tip]).expect("join rules");
    tip = b
        .add(alice, "m.room.history_visibility", Some(""), json!({"history_visibility": "shared"}), &[tip])
        .expect("hv");
    tip = b.add(alice, "m.room.name", Some(""), json!({"name": "roomdag demo"}), &[tip]).expect("name");
    for (u, name) in [(bob, "Bob"), (carol, "Carol"), (dave, "Dave")] {
        tip = b
            .add(u, "m.room.member", Some(u), json!({"membership": "join", "displayname": name}), &[tip])
            .expect("join");
    }
    let words = ["state", "resolution", "fork", "merge", "auth", "chain", "backfill", "edge", "wasm", "matrix"];
    let chat = |b: &mut Builder, tip: EventIdx, n: usize, who: &[&str]| -> EventIdx {
        let mut t = tip;
        for i in 0..n {
            let body = format!(
                "{} {} {}",
                words[(b.events.len() + i) % words.len()],
                words[(i * 3) % words.len()],
                b.events.len()
            );
            t = b
                .add(who[i % who.len()], "m.room.message", None, json!({"msgtype": "m.text", "body": body}), &[t])
                .unwrap_or(t);
        }
        t
    };
    let budget = events.max(40);
    tip = chat(&mut b, tip, (budget / 4).max(8), &[alice, bob, carol]);
    let oops = b
        .add(carol, "m.room.message", None, json!({"msgtype": "m.text", "body": "oops, wrong room"}), &[tip])
        .expect("message");
    tip = b
        .add(carol, "m.room.redaction", None, json!({"redacts": b.id(oops), "reason": "typo"}), &[oops])
        .expect("redaction");
    // A partition: alpha's side and beta/gamma's side change state concurrently.
    let fork = tip;
    let mut left = b.add(alice, "m.room.topic", Some(""), json!({"topic": "the alpha topic"}), &[fork]).expect("topic");
    let mut right = b.add(bob, "m.room.topic", Some(""), json!({"topic": "the beta topic"}), &[fork]).expect("topic");
    let pl2 = json!({"users": {bob: 0}, "users_default": 0, "events": {"m.room.power_levels": 100, "m.room.history_visibility": 100},
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0});
    left = b.add(alice, "m.room.power_levels", Some(""), pl2, &[left]).expect("demotion");
    left = chat(&mut b, left, (budget / 8).max(4), &[alice]);
    right = chat(&mut b, right, (budget / 8).max(4), &[bob, carol, dave]);
    right = b
        .add(
            bob,
            "m.room.member",
            Some(dave),
            json!({"membership": "leave", "reason": "kicked during the split"}),
            &[right],
        )
        .unwrap_or(right);
    // The merge: state resolution decides which side's changes stand.
    tip = b
        .add(
            carol,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": "the partition healed"}),
            &[left, right],
        )
        .expect("merge");
    // After the merge Bob is no longer a moderator: his topic change fails auth.
    let _ = b.add(bob, "m.room.topic", Some(""), json!({"topic": "bob tries again"}), &[tip]);
    let remaining = budget.saturating_sub(b.events.len());
    tip = chat(&mut b, tip, remaining, &[alice, carol]);
    let _ = tip;
    let servers: Map<String, Value> = b
        .keys
        .iter()
        .map(|k| {
            let users: Vec<&str> = [alice, bob, carol, dave].into_iter().filter(|u| u.ends_with(k.server_name.as_str())).collect();
            let seed = seed_for(&k.server_name);
            (
                k.server_name.clone(),
                json!({"verify_keys": {k.key_id.clone(): k.public_key_b64()}, "signing_key_seed": seed, "users": users}),
            )
        })
        .collect();
    json!({
        "format": "matrix-dag-oracle/1",
        "room_version": rules.id,
        "room_id": b.room_id,
        "generator": {"tool": "roomdag demo-room", "events": b.events.len()},
        "servers": servers,
        "events": b.events,
    })
}
