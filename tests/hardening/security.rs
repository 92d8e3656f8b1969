//! The core side of the serving-layer security work (docs/security.md):
//! bounded reasons and dropped log, the room version fixed by what a room
//! stores, redacted server ACLs read as Synapse reads them, unknown rooms
//! answered as Synapse answers them, transaction grouping, the full check of
//! a create event that would start a room, and the header-only
//! authentication step.

use roomdag::http::xmatrix::{check_request_headers, RequestAuthError, XMatrix};
use roomdag::http::{self, route, Endpoint, Target, MAX_TXN_ID_BYTES};
use roomdag::room::{MAX_DROPPED_LOG_BYTES, MAX_REASON_BYTES};
use roomdag::signing::{hash_and_sign_event, ServerSigningKey};
use roomdag::{Outcome, PinnedKeys, Room, RoomVersionRules, Verification};
use serde_json::{json, Map, Value};

use super::common::{finish_pdu, Builder};

const SEED: &str = "dGhpcyBpcyB0aGUgcm9vbWRhZyB0ZXN0IHNlZWQhISE";

fn key(server: &str) -> ServerSigningKey {
    ServerSigningKey::from_seed_b64(server, "ed25519:1", SEED).unwrap()
}

fn pinned(servers: &[&str]) -> PinnedKeys {
    let mut keys = PinnedKeys::new();
    for s in servers {
        keys.insert(s, "ed25519:1", &key(s).public_key_b64()).unwrap();
    }
    keys
}

/// A signed create event by `@u:{server}`: for `!r:{server}` (before room
/// v12), or for the room its hash names (v12).
fn signed_create(server: &str, version: &str) -> (String, String) {
    let rules = RoomVersionRules::supported(version).unwrap();
    let mut ev: Map<String, Value> = json!({
        "type": "m.room.create", "state_key": "", "sender": format!("@u:{server}"),
        "content": {"room_version": version},
        "depth": 1, "origin_server_ts": 1_700_000_000_000i64, "prev_events": [], "auth_events": [],
    })
    .as_object()
    .unwrap()
    .clone();
    if version != "12" {
        ev.insert("room_id".into(), json!(format!("!r:{server}")));
    }
    if version.parse::<u32>().unwrap() < 11 {
        ev["content"]["creator"] = json!(format!("@u:{server}"));
    }
    let id = hash_and_sign_event(&mut ev, rules, &key(server));
    (serde_json::to_string(&ev).unwrap(), id)
}

#[test]
fn reasons_and_the_dropped_log_are_bounded_in_bytes() {
    let mut b = Builder::new_v11();
    let creator = b.creator.clone();
    // Each PDU names 20 missing prev events of 255 characters: the reason
    // quoting them would be over 5 KiB.
    let long: Vec<String> = (0..20).map(|i| format!("${i:0>254}")).collect();
    let prevs: Vec<&str> = long.iter().map(String::as_str).collect();
    let n = 2 * MAX_DROPPED_LOG_BYTES / MAX_REASON_BYTES + 100;
    for i in 0..n {
        let raw = b.pdu("m.room.message", None, &creator, json!({"i": i}), &prevs, &[]);
        match b.room.ingest(&raw, Verification::Unsigned) {
            Outcome::Dropped { reason, .. } => {
                assert!(reason.len() <= MAX_REASON_BYTES, "reason of {} bytes", reason.len())
            }
            other => panic!("expected a drop, got {other:?}"),
        }
    }
    let (log, total) = b.room.dropped();
    assert_eq!(total, n as u64);
    let bytes: usize = log.iter().map(|d| d.reason.len() + d.event_id.as_ref().map_or(0, String::len)).sum();
    assert!(bytes <= MAX_DROPPED_LOG_BYTES, "the shown log holds {bytes} bytes");
    assert!(log.len() < n, "old entries were forgotten");
    assert!(log.iter().all(|d| d.reason.ends_with('…')), "cut reasons say so");
}

#[test]
fn a_cut_reason_keeps_whole_characters() {
    let r = roomdag::room::bounded_reason("é".repeat(MAX_REASON_BYTES));
    assert!(r.len() <= MAX_REASON_BYTES && r.ends_with('…'));
    assert_eq!(roomdag::room::bounded_reason("short"), "short");
}

#[test]
fn a_create_event_claiming_another_version_is_not_stored_in_a_room_that_holds_events() {
    // A v11 room whose first create event was rejected (its sender's server is
    // not the room ID's): stored, but the room has no accepted create yet.
    let mut b = Builder::new_v11();
    let mut room = Room::new("11").unwrap();
    let bad = b.pdu("m.room.create", Some(""), "@u:other.example", json!({"room_version": "11"}), &[], &[]);
    assert!(matches!(room.ingest(&bad, Verification::Unsigned), Outcome::Rejected { .. }));
    let count = room.events().len();
    let other = b.pdu("m.room.create", Some(""), &b.creator.clone(), json!({"room_version": "10"}), &[], &[]);
    match room.ingest(&other, Verification::Unsigned) {
        Outcome::Dropped { reason, .. } => assert!(reason.contains("room version"), "{reason}"),
        o => panic!("a create event for version 10 in a v11 room must be dropped, got {o:?}"),
    }
    assert_eq!(room.events().len(), count, "nothing stored");
    // The same version is still judged by the auth rules.
    let same = b.pdu("m.room.create", Some(""), &b.creator.clone(), json!({"room_version": "11"}), &[], &[]);
    assert!(matches!(room.ingest(&same, Verification::Unsigned), Outcome::Accepted { .. }));
}

#[test]
fn a_redacted_server_acl_is_read_with_empty_content_like_synapse() {
    let mut b = Builder::new_v11();
    let tip = b.join_rules.clone();
    let acl = b.creator_state("m.room.server_acl", "", json!({"allow": ["*"], "deny": ["evil.example"]}), &[&tip]);
    let acl = b.add_ok(acl);
    assert!(http::check_acl(&b.room, "good.example").is_ok());
    assert!(http::check_acl(&b.room, "evil.example").is_err());
    // The creator redacts the ACL event (v11: `redacts` in content).
    let (create, pl, join, creator) =
        (b.create.clone(), b.power_levels.clone(), b.creator_join.clone(), b.creator.clone());
    let redaction = b.pdu("m.room.redaction", None, &creator, json!({"redacts": acl}), &[&acl], &[&create, &pl, &join]);
    b.add_ok(redaction);
    let idx = b.room.lookup(&acl).unwrap().unwrap();
    assert!(b.room.redacted_by(idx).is_some(), "the redaction applies");
    // Synapse: `server_acl_evaluator_from_event` on the pruned event:
    // allow [] → no server matches, whatever its name.
    for server in ["good.example", "evil.example", "1.2.3.4"] {
        let e = http::check_acl(&b.room, server).unwrap_err();
        assert_eq!((e.status, e.errcode), (403, "M_FORBIDDEN"), "{server}");
    }
}

#[test]
fn unknown_rooms_answer_like_synapse() {
    let ask = |method: &str, target: &str, body: Option<Value>| {
        let t = Target::parse(target).unwrap();
        let ep = route(method, &t).unwrap();
        http::unknown_room_query(&ep, &t, body.as_ref(), "member.example", "us.example", 0)
    };
    let room = "%21nowhere%3Ax.example";
    for (method, target, body) in [
        ("GET", format!("/_matrix/federation/v1/state_ids/{room}?event_id=%24e"), None),
        ("GET", format!("/_matrix/federation/v1/state/{room}?event_id=%24e"), None),
        ("GET", format!("/_matrix/federation/v1/backfill/{room}?v=%24e&limit=10"), None),
        (
            "POST",
            format!("/_matrix/federation/v1/get_missing_events/{room}"),
            Some(json!({"earliest_events": [], "latest_events": ["$e"]})),
        ),
        ("GET", format!("/_matrix/federation/v1/timestamp_to_event/{room}?ts=1&dir=f"), None),
        ("GET", format!("/_matrix/federation/v1/event_auth/{room}/%24e"), None),
    ] {
        let e = ask(method, &target, body).unwrap_err();
        assert_eq!((e.status, e.errcode, e.error.as_str()), (403, "M_FORBIDDEN", "Host not in room."), "{target}");
    }
    // Parameters are checked first, as for a room we hold.
    let e = ask("GET", &format!("/_matrix/federation/v1/state_ids/{room}"), None).unwrap_err();
    assert_eq!((e.status, e.errcode), (400, "M_MISSING_PARAM"));
    let e = ask("GET", "/_matrix/federation/v1/event/%24e", None).unwrap_err();
    assert_eq!((e.status, e.errcode), (404, "M_NOT_FOUND"));
}

#[test]
fn transaction_ids_longer_than_2_kib_are_refused_by_the_router() {
    let ok = format!("/_matrix/federation/v1/send/{}", "t".repeat(MAX_TXN_ID_BYTES));
    assert!(matches!(route("PUT", &Target::parse(&ok).unwrap()), Ok(Endpoint::Send { .. })));
    let long = format!("/_matrix/federation/v1/send/{}", "t".repeat(MAX_TXN_ID_BYTES + 1));
    let e = route("PUT", &Target::parse(&long).unwrap()).unwrap_err();
    assert_eq!((e.status, e.errcode), (400, "M_INVALID_PARAM"));
}

#[test]
fn pdus_are_grouped_by_room_in_order() {
    let (create12, _) = signed_create("a.example", "12");
    let create12_room = http::check_create_event(&create12, "12", &pinned(&["a.example"])).unwrap().0;
    let m1 = r#"{"type":"m.room.message","room_id":"!one:x"}"#;
    let m2 = r#"{"type":"m.room.message","room_id":"!two:x"}"#;
    let m3 = r#"{"type":"m.room.message","room_id":"!one:x"}"#;
    let v12_msg = format!(r#"{{"type":"m.room.message","room_id":"{create12_room}"}}"#);
    let pdus = [m1, "[1]", m2, create12.as_str(), "nope", m3, v12_msg.as_str()];
    let groups = http::group_pdus(&pdus);
    type Group<'a> = (&'a str, &'a [usize], Option<(usize, &'a str)>);
    let got: Vec<Group<'_>> = groups
        .iter()
        .map(|g| (g.room_id.as_str(), g.pdus.as_slice(), g.create.as_ref().map(|(i, v)| (*i, v.as_str()))))
        .collect();
    assert_eq!(
        got,
        vec![
            ("!one:x", &[0usize, 5][..], None),
            ("!two:x", &[2usize][..], None),
            (create12_room.as_str(), &[3usize, 6][..], Some((3, "12"))),
        ]
    );
}

#[test]
fn a_create_event_starts_a_room_only_when_every_check_passes() {
    let keys = pinned(&["a.example"]);
    let (raw, id) = signed_create("a.example", "10");
    assert_eq!(http::check_create_event(&raw, "10", &keys), Ok(("!r:a.example".to_owned(), id)));
    // Unknown signing key.
    assert!(http::check_create_event(&raw, "10", &pinned(&[])).unwrap_err().contains("no known key"));
    // Content changed after signing: the hash no longer matches (Synapse would
    // keep the redacted form; a room is not started from one).
    let mut v: Value = serde_json::from_str(&raw).unwrap();
    v["content"]["extra"] = json!("added");
    let tampered = serde_json::to_string(&v).unwrap();
    assert!(http::check_create_event(&tampered, "10", &keys).is_err());
    // Auth rules: the sender's server is not the room ID's.
    let mut ev: Map<String, Value> = serde_json::from_str(&raw).unwrap();
    ev.insert("room_id".into(), json!("!r:b.example"));
    hash_and_sign_event(&mut ev, RoomVersionRules::supported("10").unwrap(), &key("a.example"));
    let wrong_room = serde_json::to_string(&ev).unwrap();
    assert!(http::check_create_event(&wrong_room, "10", &keys).is_err());
    // Not a create event; an unsupported version.
    let msg = finish_pdu(
        json!({"type": "m.room.message", "room_id": "!r:a.example", "sender": "@u:a.example",
        "content": {}, "depth": 2, "origin_server_ts": 1, "prev_events": [], "auth_events": []})
        .as_object()
        .unwrap()
        .clone(),
    );
    assert!(http::check_create_event(&msg, "10", &keys).is_err());
    assert!(http::check_create_event(&raw, "999", &keys).is_err());
}

#[test]
fn headers_are_checked_before_the_body() {
    let keys = pinned(&["a.example"]);
    let x = |origin: &str, destination: Option<&str>, key: &str| {
        XMatrix { origin: origin.into(), destination: destination.map(Into::into), key: key.into(), sig: "AAAA".into() }
            .to_header()
    };
    assert_eq!(check_request_headers(&[], "us.example", &keys), Err(RequestAuthError::Missing));
    assert_eq!(check_request_headers(&["Bearer x"], "us.example", &keys), Err(RequestAuthError::Missing));
    assert_eq!(
        check_request_headers(&[&x("a.example", Some("them.example"), "ed25519:1")], "us.example", &keys),
        Err(RequestAuthError::WrongDestination("them.example".into()))
    );
    assert_eq!(
        check_request_headers(&[&x("b.example", Some("us.example"), "ed25519:1")], "us.example", &keys),
        Err(RequestAuthError::UnknownKey { server: "b.example".into(), key_id: "ed25519:1".into() })
    );
    assert!(matches!(
        check_request_headers(&["X-Matrix origin="], "us.example", &keys),
        Err(RequestAuthError::Malformed(_))
    ));
    // A held key: the claimed origin, to be verified once the body is read.
    assert_eq!(
        check_request_headers(&[&x("a.example", None, "ed25519:1")], "us.example", &keys),
        Ok("a.example".into())
    );
}
