//! Shared helpers of the hardening tests: a deterministic PRNG, fixture
//! loading, hand-built unsigned PDUs and room snapshots.
//!
//! No dependency beyond what the main crate already has (`serde_json`,
//! `roomdag`): the main `Cargo.toml` is not ours to change.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use roomdag::fixture::{open, stream_room, FixtureHeader};
use roomdag::pdu::parse_pdu;
use roomdag::signing::{content_hash, encode_base64};
use roomdag::{Outcome, Room, RoomVersionRules, Verification};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Whether the long variants were asked for (`ROOMDAG_HARDENING_LONG=1`).
pub fn long() -> bool {
    std::env::var("ROOMDAG_HARDENING_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `small` by default, `big` with `ROOMDAG_HARDENING_LONG=1`.
pub fn size(small: usize, big: usize) -> usize {
    if long() {
        big
    } else {
        small
    }
}

pub use crate::shared::{fixtures_dir, shared_dir};

/// A room fixture, fully read: its header and every PDU as raw text.
pub struct Fixture {
    pub name: String,
    pub header: FixtureHeader,
    pub rules: &'static RoomVersionRules,
    pub pdus: Vec<String>,
}

impl Fixture {
    pub fn version(&self) -> &str {
        self.header.room_version.as_deref().unwrap()
    }
}

/// Loads `NAME.json` (or `NAME.json.gz`) from the fixtures directory.
pub fn load_fixture(name: &str) -> Fixture {
    let path = crate::shared::fixture_file(name)
        .unwrap_or_else(|| panic!("fixture {name} not found in {}", fixtures_dir().display()));
    let mut pdus = Vec::new();
    let header = stream_room(open(&path).expect("open fixture"), |_, _, ev| {
        pdus.push(ev.pdu.get().to_owned());
        Ok(())
    })
    .expect("read fixture");
    let rules = RoomVersionRules::supported(header.room_version.as_deref().unwrap()).expect("supported version");
    Fixture { name: name.into(), header, rules, pdus }
}

/// Lowercase hex.
pub fn hex(d: [u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Times a closure.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

/// What a room looks like from outside: enough to compare two rooms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub events: usize,
    /// Sorted extremity IDs.
    pub extremities: Vec<String>,
    pub current_state: String,
    /// Per stored event, in arrival order: (id, status, state before, state
    /// after, a hash of its PDU as the room reads it back).
    pub per_event: Vec<(String, &'static str, String, String, String)>,
    /// Applied redactions (target, redaction), sorted.
    pub redactions: Vec<(String, String)>,
    /// The timeline's least depth.
    pub min_depth: i64,
}

/// A snapshot of `room` (computes the current state through the
/// non-mutating cache, so taking a snapshot changes nothing).
pub fn snapshot(room: &Room) -> Snapshot {
    let mut extremities: Vec<String> = room.forward_extremities().map(|e| room.id(e).unwrap().to_owned()).collect();
    extremities.sort();
    let current = room.current_state_map().unwrap();
    let current_state = hex(roomdag::room::digest_of(current.iter().map(|(k, e)| {
        let (t, s) = room.key_name(k);
        (t, s, room.state_id(e))
    })));
    let per_event = room
        .events()
        .iter()
        .map(Result::unwrap)
        .map(|e| {
            (
                room.events().id(&e).unwrap().to_owned(),
                status_str(e.status),
                hex(room.state_digest(e.state_before).unwrap()),
                hex(room.state_digest(e.state_after).unwrap()),
                hex(<[u8; 32]>::from(Sha256::digest(room.raw(e.idx).unwrap().as_bytes()))),
            )
        })
        .collect();
    let mut redactions: Vec<(String, String)> = room
        .applied_redactions()
        .map(|(t, r)| (room.id(t).unwrap().to_owned(), room.id(r).unwrap().to_owned()))
        .collect();
    redactions.sort();
    Snapshot {
        events: room.events().len(),
        extremities,
        current_state,
        per_event,
        redactions,
        min_depth: room.min_depth(),
    }
}

/// `accepted` or `rejected`.
pub fn status_str(s: roomdag::EventStatus) -> &'static str {
    match s {
        roomdag::EventStatus::Accepted => "accepted",
        roomdag::EventStatus::Rejected => "rejected",
    }
}

/// Sets `hashes.sha256` to the event's real content hash, so it is not
/// redacted on receipt.
pub fn fix_hash(ev: &mut Map<String, Value>) {
    ev.remove("hashes");
    let h = encode_base64(&content_hash(ev));
    ev.insert("hashes".into(), json!({ "sha256": h }));
}

/// Serialises a PDU after fixing its content hash.
pub fn finish_pdu(mut ev: Map<String, Value>) -> String {
    fix_hash(&mut ev);
    serde_json::to_string(&Value::Object(ev)).expect("serialise")
}

/// The event ID a PDU gets in `rules` (None when it does not parse).
pub fn event_id_of(raw: &str, rules: &RoomVersionRules) -> Option<String> {
    parse_pdu(raw, rules).ok().map(|p| p.event_id.as_str().to_owned())
}

/// Builds a room of v11 PDUs without signatures, the way a scenario test
/// would: every event gets its correct content hash, and is ingested with
/// [`Verification::Unsigned`].
pub struct Builder {
    pub room: Room,
    pub rules: &'static RoomVersionRules,
    pub room_id: String,
    pub creator: String,
    pub create: String,
    pub creator_join: String,
    pub power_levels: String,
    pub join_rules: String,
    pub depth: i64,
    pub ts: i64,
    /// Every accepted/rejected event, in order.
    pub stored: Vec<String>,
    /// The PDUs of the stored events, in order.
    pub raws: Vec<String>,
}

impl Builder {
    /// A v11 room with create, the creator's join, power levels (creator
    /// 100) and public join rules.
    pub fn new_v11() -> Self {
        let rules = RoomVersionRules::supported("11").unwrap();
        let mut b = Builder {
            room: Room::new("11").unwrap(),
            rules,
            room_id: "!hardening:a.example".into(),
            creator: "@creator:a.example".into(),
            create: String::new(),
            creator_join: String::new(),
            power_levels: String::new(),
            join_rules: String::new(),
            depth: 0,
            ts: 1_700_000_000_000,
            stored: Vec::new(),
            raws: Vec::new(),
        };
        let creator = b.creator.clone();
        let raw = b.pdu("m.room.create", Some(""), &creator, json!({"room_version": "11"}), &[], &[]);
        b.create = b.add_ok(raw);
        let create = b.create.clone();
        let raw =
            b.pdu("m.room.member", Some(&creator), &creator, json!({"membership": "join"}), &[&create], &[&create]);
        b.creator_join = b.add_ok(raw);
        let join = b.creator_join.clone();
        let raw = b.pdu(
            "m.room.power_levels",
            Some(""),
            &creator,
            json!({"users": {creator.clone(): 100}, "users_default": 0, "state_default": 50, "events_default": 0,
                   "ban": 50, "kick": 50, "redact": 50, "invite": 0}),
            &[&join],
            &[&create, &join],
        );
        b.power_levels = b.add_ok(raw);
        let pl = b.power_levels.clone();
        let raw = b.pdu(
            "m.room.join_rules",
            Some(""),
            &creator,
            json!({"join_rule": "public"}),
            &[&pl],
            &[&create, &join, &pl],
        );
        b.join_rules = b.add_ok(raw);
        b
    }

    /// A PDU (as a JSON map, content hash not yet set).
    pub fn pdu_map(
        &mut self,
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev: &[&str],
        auth: &[&str],
    ) -> Map<String, Value> {
        self.depth += 1;
        self.ts += 1;
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        if let Some(k) = state_key {
            m.insert("state_key".into(), json!(k));
        }
        m.insert("sender".into(), json!(sender));
        m.insert("room_id".into(), json!(self.room_id));
        m.insert("content".into(), content);
        m.insert("depth".into(), json!(self.depth));
        m.insert("origin_server_ts".into(), json!(self.ts));
        m.insert("prev_events".into(), json!(prev));
        m.insert("auth_events".into(), json!(auth));
        m
    }

    /// A finished PDU text.
    pub fn pdu(
        &mut self,
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev: &[&str],
        auth: &[&str],
    ) -> String {
        let m = self.pdu_map(ty, state_key, sender, content, prev, auth);
        finish_pdu(m)
    }

    /// Ingests a PDU.
    pub fn add(&mut self, raw: &str) -> Outcome {
        let o = self.room.ingest(raw, Verification::Unsigned);
        if matches!(o, Outcome::Accepted { .. } | Outcome::Rejected { .. }) {
            self.stored.push(o.event_id().unwrap().as_str().to_owned());
            self.raws.push(raw.to_owned());
        }
        o
    }

    /// Ingests a PDU that must be accepted; returns its ID.
    pub fn add_ok(&mut self, raw: String) -> String {
        match self.add(&raw) {
            Outcome::Accepted { event_id, redacted_on_receipt: false } => event_id.as_str().to_owned(),
            other => panic!("expected acceptance, got {other:?} for {raw}"),
        }
    }

    /// A message from `sender` (who must be joined via `member`) after `prev`.
    pub fn message(&mut self, sender: &str, member: &str, prev: &[&str], body: &str) -> String {
        let (create, pl) = (self.create.clone(), self.power_levels.clone());
        self.pdu(
            "m.room.message",
            None,
            sender,
            json!({"msgtype": "m.text", "body": body}),
            prev,
            &[&create, &pl, member],
        )
    }

    /// A join of `user` (public join rules) after `prev`.
    pub fn join(&mut self, user: &str, prev: &[&str]) -> String {
        let (create, pl, jr) = (self.create.clone(), self.power_levels.clone(), self.join_rules.clone());
        self.pdu("m.room.member", Some(user), user, json!({"membership": "join"}), prev, &[&create, &pl, &jr])
    }

    /// A creator-sent state event after `prev`.
    pub fn creator_state(&mut self, ty: &str, key: &str, content: Value, prev: &[&str]) -> String {
        let (create, pl, join, creator) =
            (self.create.clone(), self.power_levels.clone(), self.creator_join.clone(), self.creator.clone());
        self.pdu(ty, Some(key), &creator, content, prev, &[&create, &pl, &join])
    }
}

impl Builder {
    /// The auth events the spec selects for an event with these prev
    /// events: create, power levels, the sender's membership, and for
    /// memberships the target's membership and (join/invite/knock) the join
    /// rules, all read from the state before the event.
    pub fn auth_for(
        &mut self,
        prev: &[&str],
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        membership: Option<&str>,
    ) -> Vec<String> {
        let idx: Vec<roomdag::EventIdx> = prev.iter().filter_map(|p| self.room.lookup(p).unwrap()).collect();
        let st = self.room.resolve_after(&idx).unwrap();
        let mut keys: Vec<(&str, &str)> =
            vec![("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)];
        if ty == "m.room.member" {
            if let Some(target) = state_key {
                keys.push(("m.room.member", target));
                if matches!(membership, Some("join" | "invite" | "knock")) {
                    keys.push(("m.room.join_rules", ""));
                }
            }
        }
        let state = self.room.state(st).unwrap();
        let mut out: Vec<String> = Vec::new();
        for (t, k) in keys {
            if let Some(e) = self.room.key_of(t, k).and_then(|key| state.get(key)) {
                let id = self.room.id(e).unwrap().to_owned();
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Builds, ingests and returns an event whose auth events are selected
    /// from the state before it.
    pub fn event(
        &mut self,
        ty: &str,
        state_key: Option<&str>,
        sender: &str,
        content: Value,
        prev: &[&str],
    ) -> (String, Outcome) {
        let membership = content.get("membership").and_then(Value::as_str).map(str::to_owned);
        let auth = self.auth_for(prev, ty, state_key, sender, membership.as_deref());
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let raw = self.pdu(ty, state_key, sender, content, prev, &auth);
        let o = self.add(&raw);
        (raw, o)
    }
}

/// A v11 room with long-lived forks: `n` events after the initial four,
/// on up to six branches that fork and merge, with joins, leaves, bans,
/// power-level changes, join-rule flips, topics and messages from users of
/// five servers. Every event's auth events are selected from its state
/// before, so most are accepted and the rest are rejected for real reasons
/// (a banned sender, a lost power level on another branch…). Returns the
/// builder (its room holds every event) and the PDUs in generation order,
/// which is a topological order.
pub fn forky_room(seed: u64, n: usize) -> (Builder, Vec<String>) {
    use super::mutate::Source;
    let mut rng = super::mutate::Rng::new(seed);
    let mut b = Builder::new_v11();
    let users: Vec<String> = (0..40).map(|i| format!("@u{i}:s{}.example", i % 5)).collect();
    let creator = b.creator.clone();
    let mut joined: Vec<String> = vec![creator.clone()];
    let mut mods: Vec<String> = vec![creator.clone()];
    let mut branches: Vec<String> = vec![b.join_rules.clone()];
    let mut accepted: Vec<String> = Vec::new();
    for step in 0..n {
        let bi = rng.below(branches.len());
        let tip = branches[bi].clone();
        let action = rng.below(100);
        let (raw, o) = if action < 8 && branches.len() < 6 && !accepted.is_empty() {
            // Fork from a recent accepted event.
            let from = accepted[accepted.len() - 1 - rng.below(accepted.len().min(30))].clone();
            let sender = joined[rng.below(joined.len())].clone();
            let r =
                b.event("m.room.message", None, &sender, serde_json::json!({"body": format!("fork {step}")}), &[&from]);
            branches.push(String::new());
            let last = branches.len() - 1;
            if let Outcome::Accepted { event_id, .. } = &r.1 {
                branches[last] = event_id.as_str().to_owned();
            } else {
                branches.pop();
            }
            r
        } else if action < 18 && branches.len() > 1 {
            // Merge two or three branches.
            let k = 2 + rng.below(2).min(branches.len() - 2);
            let mut picked: Vec<usize> = (0..branches.len()).collect();
            rng.shuffle(&mut picked);
            picked.truncate(k);
            picked.sort_unstable();
            let prev: Vec<String> = picked.iter().map(|&i| branches[i].clone()).collect();
            let prev_refs: Vec<&str> = prev.iter().map(String::as_str).collect();
            let sender = joined[rng.below(joined.len())].clone();
            let r = b.event(
                "m.room.message",
                None,
                &sender,
                serde_json::json!({"body": format!("merge {step}")}),
                &prev_refs,
            );
            if let Outcome::Accepted { event_id, .. } = &r.1 {
                for &i in picked.iter().rev() {
                    branches.remove(i);
                }
                branches.push(event_id.as_str().to_owned());
            }
            r
        } else {
            let r = if action < 30 {
                let u = users[rng.below(users.len())].clone();
                let r = b.event("m.room.member", Some(&u), &u, serde_json::json!({"membership": "join"}), &[&tip]);
                if matches!(r.1, Outcome::Accepted { .. }) && !joined.contains(&u) {
                    joined.push(u);
                }
                r
            } else if action < 36 {
                // Leave, kick or ban, by the user or a moderator.
                let u = joined[rng.below(joined.len())].clone();
                let m = mods[rng.below(mods.len())].clone();
                let (sender, membership) = match rng.below(3) {
                    0 => (u.clone(), "leave"),
                    1 => (m, "leave"),
                    _ => (m, "ban"),
                };
                let r =
                    b.event("m.room.member", Some(&u), &sender, serde_json::json!({"membership": membership}), &[&tip]);
                if matches!(r.1, Outcome::Accepted { .. }) && joined.len() > 1 {
                    joined.retain(|j| *j != u);
                }
                r
            } else if action < 44 {
                // Power levels: promote or demote someone.
                let m = mods[rng.below(mods.len())].clone();
                let u = joined[rng.below(joined.len())].clone();
                let level = *super::mutate::pick(&mut rng, &[0, 50, 100]);
                let mut users_map = serde_json::Map::new();
                users_map.insert(creator.clone(), serde_json::json!(100));
                for md in &mods {
                    users_map.insert(md.clone(), serde_json::json!(100));
                }
                users_map.insert(u.clone(), serde_json::json!(level));
                let content = serde_json::json!({"users": users_map, "users_default": 0, "state_default": 50,
                    "events_default": 0, "ban": 50, "kick": 50, "redact": 50, "invite": 0});
                let r = b.event("m.room.power_levels", Some(""), &m, content, &[&tip]);
                if matches!(r.1, Outcome::Accepted { .. }) && level == 100 && !mods.contains(&u) {
                    mods.push(u);
                }
                r
            } else if action < 48 {
                let m = mods[rng.below(mods.len())].clone();
                let rule = if rng.one_in(3) { "invite" } else { "public" };
                b.event("m.room.join_rules", Some(""), &m, serde_json::json!({"join_rule": rule}), &[&tip])
            } else if action < 60 {
                let u = joined[rng.below(joined.len())].clone();
                b.event("m.room.topic", Some(""), &u, serde_json::json!({"topic": format!("t{step}")}), &[&tip])
            } else if action < 64 && !accepted.is_empty() {
                let u = joined[rng.below(joined.len())].clone();
                let target = accepted[rng.below(accepted.len())].clone();
                b.event("m.room.redaction", None, &u, serde_json::json!({"redacts": target}), &[&tip])
            } else {
                let u = joined[rng.below(joined.len())].clone();
                b.event("m.room.message", None, &u, serde_json::json!({"body": format!("m{step}")}), &[&tip])
            };
            if let Outcome::Accepted { event_id, .. } = &r.1 {
                branches[bi] = event_id.as_str().to_owned();
            }
            r
        };
        if let Outcome::Accepted { event_id, .. } = &o {
            accepted.push(event_id.as_str().to_owned());
        }
        assert!(o.is_stored(), "generated events are stored: {o:?}");
        let _ = raw;
    }
    let pdus = b.raws.clone();
    (b, pdus)
}
