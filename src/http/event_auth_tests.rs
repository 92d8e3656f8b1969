//! `GET /event_auth/{roomId}/{eventId}` through [`room_query`], on a small v10
//! room with explicit auth events: alice (a.example) creates it, a
//! join-rules event is later redacted, bob (b.example) joins and talks, bob's
//! topic change is rejected, and an ACL denies c.example.

use super::*;
use crate::room::Verification;
use crate::room_version::RoomVersionRules;
use crate::signing::{hash_and_sign_event, PinnedKeys, ServerSigningKey};

const ALICE: &str = "@alice:a.example";
const BOB: &str = "@bob:b.example";

struct Fixture {
    room: Room,
    keys: Vec<ServerSigningKey>,
    pinned: PinnedKeys,
    ids: std::collections::HashMap<&'static str, String>,
    depth: i64,
    last: Option<String>,
}

impl Fixture {
    fn new() -> Self {
        let mut pinned = PinnedKeys::new();
        let keys: Vec<ServerSigningKey> = ["a.example", "b.example"]
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let seed = crate::signing::encode_base64(&[i as u8 + 1; 32]);
                let k = ServerSigningKey::from_seed_b64(s, "ed25519:1", &seed).unwrap();
                pinned.insert(s, "ed25519:1", &k.public_key_b64()).unwrap();
                k
            })
            .collect();
        let room = Room::new("10").unwrap();
        Self { room, keys, pinned, ids: Default::default(), depth: 0, last: None }
    }

    /// Adds an event on top of the last one, with the named auth events.
    fn add(&mut self, name: &'static str, sender: &str, ty: &str, sk: Option<&str>, content: Value, auth: &[&str]) {
        let rules = &RoomVersionRules::V10;
        self.depth += 1;
        let mut ev = Map::new();
        ev.insert("type".into(), json!(ty));
        ev.insert("sender".into(), json!(sender));
        ev.insert("room_id".into(), json!("!r:a.example"));
        if let Some(sk) = sk {
            ev.insert("state_key".into(), json!(sk));
        }
        if let Some(r) = content.get("redacts") {
            ev.insert("redacts".into(), r.clone()); // a top-level key before v11
        }
        ev.insert("content".into(), content);
        ev.insert("origin_server_ts".into(), json!(1_700_000_000_000i64 + self.depth * 1000));
        ev.insert("depth".into(), json!(self.depth));
        ev.insert("prev_events".into(), json!(self.last.iter().collect::<Vec<_>>()));
        ev.insert("auth_events".into(), json!(auth.iter().map(|a| &self.ids[a]).collect::<Vec<_>>()));
        let server = sender.split_once(':').unwrap().1;
        let key = self.keys.iter().find(|k| k.server_name == server).unwrap().clone();
        let id = hash_and_sign_event(&mut ev, rules, &key);
        let raw = serde_json::to_string(&ev).unwrap();
        self.room.ingest(&raw, Verification::Keys(&self.pinned));
        assert!(self.room.lookup(&id).unwrap().is_some(), "{name} stored");
        self.ids.insert(name, id.clone());
        self.last = Some(id);
    }

    fn idx(&self, name: &str) -> EventIdx {
        self.room.lookup(&self.ids[name]).unwrap().unwrap()
    }

    fn ask(&self, origin: &str, event_id: &str) -> Result<Value, HttpError> {
        let target = format!("/_matrix/federation/v1/event_auth/%21r%3Aa.example/{}", event_id.replace('$', "%24"));
        let t = Target::parse(&target).unwrap();
        let endpoint = route("GET", &t).unwrap();
        room_query(&self.room, &endpoint, &t, None, origin, "roomdag.test", 0)
    }
}

fn room() -> Fixture {
    let mut f = Fixture::new();
    f.add("create", ALICE, "m.room.create", Some(""), json!({"creator": ALICE, "room_version": "10"}), &[]);
    f.add("alice", ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"}), &["create"]);
    let pl = json!({"users": {ALICE: 100}, "users_default": 0, "state_default": 50, "events_default": 0, "redact": 50});
    f.add("pl", ALICE, "m.room.power_levels", Some(""), pl, &["create", "alice"]);
    let jr = json!({"join_rule": "public", "note": "removed by the redaction"});
    f.add("join_rules", ALICE, "m.room.join_rules", Some(""), jr, &["create", "pl", "alice"]);
    f.add("topic", ALICE, "m.room.topic", Some(""), json!({"topic": "t"}), &["create", "pl", "alice"]);
    let redacts = f.ids["join_rules"].clone();
    f.add("redaction", ALICE, "m.room.redaction", None, json!({"redacts": redacts}), &["create", "pl", "alice"]);
    f.add("bob", BOB, "m.room.member", Some(BOB), json!({"membership": "join"}), &["create", "join_rules", "pl"]);
    let msg = json!({"msgtype": "m.text", "body": "hi"});
    f.add("message", BOB, "m.room.message", None, msg, &["create", "pl", "bob"]);
    f.add("bad_topic", BOB, "m.room.topic", Some(""), json!({"topic": "no"}), &["create", "pl", "bob"]);
    let acl = json!({"allow": ["*"], "deny": ["c.example"], "allow_ip_literals": false});
    f.add("acl", ALICE, "m.room.server_acl", Some(""), acl, &["create", "pl", "alice"]);
    assert!(f.room.event(f.idx("bad_topic")).unwrap().status == crate::event::EventStatus::Rejected);
    assert!(f.room.redacted_by(f.idx("join_rules")).is_some(), "the redaction applies");
    f
}

fn chain_ids(answer: &Value) -> Vec<String> {
    let pdus = answer["auth_chain"].as_array().expect("auth_chain is a list");
    pdus.iter()
        .map(|p| {
            let m = p.as_object().unwrap();
            let bytes = crate::signing::redacted_signing_bytes(&crate::redaction::redact(m, &RoomVersionRules::V10));
            crate::signing::event_id_for_reference_hash(&bytes, &RoomVersionRules::V10)
        })
        .collect()
}

#[test]
fn route_and_shape() {
    let t = Target::parse("/_matrix/federation/v1/event_auth/%21r%3Aa/%24e").unwrap();
    let want = Endpoint::EventAuth { room_id: "!r:a".into(), event_id: "$e".into() };
    assert_eq!(route("GET", &t).unwrap(), want);
    assert_eq!(want.room_id(), Some("!r:a"));
    assert!(want.needs_auth());
    assert_eq!(route("POST", &t).unwrap_err().status, 405);
    let short = Target::parse("/_matrix/federation/v1/event_auth/%21r%3Aa").unwrap();
    assert_eq!(route("GET", &short).unwrap_err().status, 404);
}

#[test]
fn full_auth_chain_in_arrival_order_without_the_event() {
    let f = room();
    let names = |ns: &[&str]| ns.iter().map(|n| f.ids[n].clone()).collect::<Vec<_>>();
    let a = f.ask("b.example", &f.ids["message"]).unwrap();
    // message → {create, pl, bob}; bob → {join_rules}; pl → {alice}
    assert_eq!(chain_ids(&a), names(&["create", "alice", "pl", "join_rules", "bob"]));
    let a = f.ask("a.example", &f.ids["pl"]).unwrap();
    assert_eq!(chain_ids(&a), names(&["create", "alice"]));
    let a = f.ask("a.example", &f.ids["create"]).unwrap();
    assert_eq!(a, json!({"auth_chain": []}));
    // a non-state event's chain, and never the topic (not an auth event)
    let a = f.ask("a.example", &f.ids["redaction"]).unwrap();
    assert_eq!(chain_ids(&a), names(&["create", "alice", "pl"]));
}

#[test]
fn redacted_auth_events_are_served_redacted() {
    let f = room();
    let a = f.ask("a.example", &f.ids["message"]).unwrap();
    let jr = &a["auth_chain"][3];
    assert_eq!(jr["type"], "m.room.join_rules");
    assert_eq!(jr["content"], json!({"join_rule": "public"}), "pruned content");
    assert_eq!(a["auth_chain"][2]["content"]["users"][ALICE], 100, "the rest whole");
    assert!(a["auth_chain"].as_array().unwrap().iter().all(|p| p.get("unsigned").is_none()));
}

#[test]
fn errors_in_the_reference_servers_order() {
    let f = room();
    // not in the room: 403 before anything else
    let e = f.ask("d.example", &f.ids["message"]).unwrap_err();
    assert_eq!((e.status, e.errcode, e.error.as_str()), (403, "M_FORBIDDEN", "Host not in room."));
    let e = f.ask("d.example", "$unknown").unwrap_err();
    assert_eq!(e.status, 403, "an outsider learns nothing about which events exist");
    // unknown and rejected events: 404
    let e = f.ask("a.example", "$unknown").unwrap_err();
    assert_eq!((e.status, e.errcode), (404, "M_NOT_FOUND"));
    assert_eq!(e.error, "Could not find event $unknown");
    let e = f.ask("b.example", &f.ids["bad_topic"]).unwrap_err();
    assert_eq!((e.status, e.errcode), (404, "M_NOT_FOUND"), "rejected events are not served");
    // the queries function on its own
    assert_eq!(queries::event_auth(&f.room, "d.example", &f.ids["pl"]), Err(QueryError::NotInRoom));
    assert!(matches!(queries::event_auth(&f.room, "a.example", "$nope"), Err(QueryError::NotFound(_))));
}

#[test]
fn server_acl_is_checked_after_membership_and_before_the_event() {
    // c.example is denied by the ACL and has no member: not in room comes first.
    let e = room().ask("c.example", "$unknown").unwrap_err();
    assert_eq!(e.error, "Host not in room.");
    // b.example has a member and is denied by a later ACL.
    let mut f = Fixture::new();
    f.add("create", ALICE, "m.room.create", Some(""), json!({"creator": ALICE, "room_version": "10"}), &[]);
    f.add("alice", ALICE, "m.room.member", Some(ALICE), json!({"membership": "join"}), &["create"]);
    let pl = json!({"users": {ALICE: 100}, "users_default": 0, "state_default": 50});
    f.add("pl", ALICE, "m.room.power_levels", Some(""), pl, &["create", "alice"]);
    f.add(
        "join_rules",
        ALICE,
        "m.room.join_rules",
        Some(""),
        json!({"join_rule": "public"}),
        &["create", "pl", "alice"],
    );
    f.add("bob", BOB, "m.room.member", Some(BOB), json!({"membership": "join"}), &["create", "join_rules", "pl"]);
    let acl = json!({"allow": ["*"], "deny": ["b.example"], "allow_ip_literals": false});
    f.add("acl", ALICE, "m.room.server_acl", Some(""), acl, &["create", "pl", "alice"]);
    let e = f.ask("b.example", "$unknown").unwrap_err();
    assert_eq!((e.status, e.error.as_str()), (403, "Server is banned from room"), "ACL before the event lookup");
    let e = f.ask("b.example", &f.ids["pl"]).unwrap_err();
    assert_eq!(e.status, 403);
    assert!(f.ask("a.example", &f.ids["bob"]).is_ok());
}

#[test]
fn outliers_have_their_auth_chain_served() {
    // A server that joined mid-history: the auth events are outliers, the
    // message is placed with a remote state.
    let full = room();
    let raw = |name: &str| full.room.raw(full.idx(name)).unwrap().to_string();
    let mut f = Fixture::new();
    for name in ["create", "alice", "pl", "join_rules", "bob"] {
        let out = f.room.ingest_as(&raw(name), crate::placement::Placement::Outlier, Verification::Keys(&full.pinned));
        assert!(f.room.lookup(&full.ids[name]).unwrap().is_some(), "{name}: {out:?}");
    }
    let state: Vec<String> =
        ["create", "alice", "pl", "join_rules", "bob"].iter().map(|n| full.ids[n].clone()).collect();
    f.room.ingest_as(&raw("message"), crate::placement::Placement::WithState(&state), Verification::Keys(&full.pinned));
    f.ids = full.ids.clone();
    assert!(f.room.is_outlier(f.idx("bob")).unwrap() && !f.room.is_outlier(f.idx("message")).unwrap());
    let names = |ns: &[&str]| ns.iter().map(|n| full.ids[n].clone()).collect::<Vec<_>>();
    let a = f.ask("b.example", &full.ids["bob"]).unwrap();
    assert_eq!(chain_ids(&a), names(&["create", "alice", "pl", "join_rules"]), "an outlier's chain");
    let a = f.ask("b.example", &full.ids["message"]).unwrap();
    assert_eq!(chain_ids(&a), names(&["create", "alice", "pl", "join_rules", "bob"]));
    // /state_ids has no state for an outlier; /event_auth still answers.
    assert!(matches!(queries::state_ids(&f.room, "b.example", &full.ids["bob"]), Err(QueryError::NotFound(_))));
}
